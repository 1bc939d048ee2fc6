/*
 * account_cmd.c - "mailroom account": sending accounts, their allowances
 * (SPEC D16) and their passwords for SMTP AUTH (D17): add, change, list,
 * show, remove.
 *
 * An account allows so many messages per fixed period (UTC windows of
 * the period's length), or has no quota: then nothing is refused and use
 * is still counted, per day unless a period was set.  Senders reserve a
 * campaign's recipients when it starts and move them to "used" as they
 * reach a final state; this command shows those numbers for the current
 * period and edits the allowance, never the counters.  Every change is
 * one write transaction.
 *
 * A password never reaches the store, the terminal or the log: it
 * becomes a verifier (registry/verifier.h) before the store is written,
 * and every buffer that held it is wiped.  On the command line it shows
 * in ps(1), so it may come from the first line of a file or of standard
 * input instead.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include <openssl/crypto.h>

#include "commands.h"
#include "conf/conf.h"
#include "conf/conf_cli.h"
#include "core/mr_buf.h"
#include "core/mr_clock.h"
#include "core/xalloc.h"
#include "delivery/account.h"
#include "delivery/cstore.h"
#include "registry/verifier.h"
#include "store/store.h"

#define ACCOUNT_CMD_NAME_MAX	200
#define ACCOUNT_CMD_WARN_DEFAULT 80
/* The window that counts the use of an account without a quota. */
#define ACCOUNT_CMD_UNLIMITED_PERIOD 86400

enum {
	ACCOUNT_CMD_OPT_STORE = 256,
	ACCOUNT_CMD_OPT_ALLOWANCE,
	ACCOUNT_CMD_OPT_PERIOD,
	ACCOUNT_CMD_OPT_WARN,
	ACCOUNT_CMD_OPT_QUOTA,
	ACCOUNT_CMD_OPT_NO_QUOTA,
	ACCOUNT_CMD_OPT_PASSWORD,
	ACCOUNT_CMD_OPT_PASSWORD_FILE,
	ACCOUNT_CMD_OPT_NO_PASSWORD,
};

/* Which options a subcommand takes, besides --store, -c and -o. */
enum {
	ACCOUNT_CMD_TAKES_LIMITS = 1 << 0,	/* --quota, --allowance, ... */
	ACCOUNT_CMD_TAKES_PASSWORD = 1 << 1,	/* --password, -file */
	ACCOUNT_CMD_TAKES_NO = 1 << 2,		/* --no-quota, --no-password */
};

/* One run of a subcommand: what it owns, released by account_cmd(). */
struct account_cmd {
	const char		*prog;		/* "account add" */
	struct conf_cli		 cl;
	struct mr_config	 cfg;
	bool			 have_cfg;
	struct store		*store;
	struct mr_buf		 err;		/* why it failed */
	/* What the command line asked for. */
	const char		*name;
	bool			 has_allowance, has_period, has_warn;
	bool			 has_quota;	/* --quota N/PERIOD */
	bool			 no_quota, no_password;
	uint64_t		 allowance;
	int64_t			 period;	/* seconds */
	unsigned		 warn_pct;
	const char		*password_arg;	/* --password: borrowed */
	const char		*password_file;	/* --password-file */
	char			*password;	/* read: owned, wiped */
	size_t			 password_len;
};

struct account_cmd_verb {
	const char	*name;
	int		(*run)(struct account_cmd *ac);
	size_t		 nargs;		/* operands: the name, or none */
	unsigned	 takes;		/* ACCOUNT_CMD_TAKES_* */
	const char	*synopsis;
	const char	*help;
};

/* Accounts collected by a listing (the quota is read after it). */
struct account_cmd_names {
	char	**v;
	bool	 *password;	/* has one */
	size_t	  n;
};

/* The campaigns of one account that have not finished. */
struct account_cmd_users {
	const char	*account;
	struct mr_buf	 list;
	size_t		 n;
};

static int account_cmd_add(struct account_cmd *ac);
static int account_cmd_change(struct account_cmd *ac);
static int account_cmd_list(struct account_cmd *ac);
static int account_cmd_show(struct account_cmd *ac);
static int account_cmd_remove(struct account_cmd *ac);

static const struct account_cmd_verb account_cmd_verbs[] = {
	{ "add", account_cmd_add, 1, ACCOUNT_CMD_TAKES_LIMITS |
	  ACCOUNT_CMD_TAKES_PASSWORD,
	  "add NAME [--quota N/PERIOD] [--warn PCT]\n"
	  "    [--password P | --password-file FILE] [options]",
	  "Adds a sending account.  With a quota it allows N messages per "
	  "period (a\nduration: 1h, 1d, 30d; periods are fixed UTC windows "
	  "of that length);\nwithout one it has no limit (its use is still "
	  "counted, per day).  Campaigns\ncount against it with --account "
	  "NAME; a warning is printed when a campaign\nbrings the period's "
	  "use to PCT percent of the allowance (default 80).\nWith a "
	  "password, SMTP injection clients may authenticate as the account\n"
	  "(AUTH PLAIN or LOGIN); without one, they cannot.\n" },
	{ "change", account_cmd_change, 1, ACCOUNT_CMD_TAKES_LIMITS |
	  ACCOUNT_CMD_TAKES_PASSWORD | ACCOUNT_CMD_TAKES_NO,
	  "change NAME [--quota N/PERIOD | --no-quota]\n"
	  "    [--warn PCT] [--password P | --password-file FILE | "
	  "--no-password]\n    [options]",
	  "Changes an account's quota (allowance and period), warning share "
	  "or\npassword; what was used and reserved stays.  An account "
	  "without a quota gets\none with --quota (or --allowance and "
	  "--period together).\n" },
	{ "list", account_cmd_list, 0, 0, "list [options]",
	  "One line per account: name, allowance (\"unlimited\" without a "
	  "quota), period,\nwarning share, what is used and reserved in the "
	  "current period, and\nwhether it has a password (\"set\" or "
	  "\"none\"; never the password).\n" },
	{ "show", account_cmd_show, 1, 0, "show NAME [options]",
	  "Every field of one account as \"key: value\" lines, with the "
	  "current period's\nstart and end (UTC), used, reserved and "
	  "remaining messages, and\n\"password: set\" or \"password: "
	  "none\" (never the password).\n" },
	{ "remove", account_cmd_remove, 1, 0, "remove NAME [options]",
	  "Removes an account and its counters; refused while a campaign "
	  "holds a\nreservation of it.\n" },
};

#define ACCOUNT_CMD_NVERBS						\
	(sizeof(account_cmd_verbs) / sizeof(account_cmd_verbs[0]))

/* ---------------------------------------------------------------- */
/* Shared by the subcommands                                        */
/* ---------------------------------------------------------------- */

static void
account_cmd_usage(FILE *fp, const struct account_cmd_verb *v)
{
	size_t i;

	if (v == NULL) {
		fprintf(fp, "usage: mailroom account COMMAND [options]\n\n"
		    "Sending accounts: their allowances (SPEC D16) and their "
		    "passwords for SMTP\nAUTH (D17).  Commands:\n\n");
		for (i = 0; i < ACCOUNT_CMD_NVERBS; i++)
			fprintf(fp, "  mailroom account %s\n",
			    account_cmd_verbs[i].synopsis);
		fprintf(fp, "\nmailroom account COMMAND --help describes "
		    "each command.\n\nOptions of every command:\n");
	} else {
		fprintf(fp, "usage: mailroom account %s\n\n%s\n", v->synopsis,
		    v->help);
		if (v->takes & ACCOUNT_CMD_TAKES_LIMITS)
			fprintf(fp,
			    "      --quota N/PERIOD        N messages (1 or "
			    "more) per period, as 1000/1d:\n"
			    "                              the same as "
			    "--allowance N --period PERIOD\n"
			    "      --allowance N           messages per "
			    "period\n"
			    "      --period DURATION       the period: 3600s, "
			    "1h, 1d, 30d\n"
			    "      --warn PCT              warn at this share "
			    "of the allowance, 1..100\n");
		if (v->takes & ACCOUNT_CMD_TAKES_NO)
			fprintf(fp,
			    "      --no-quota              no limit any more "
			    "(use is still counted)\n");
		if (v->takes & ACCOUNT_CMD_TAKES_PASSWORD)
			fprintf(fp,
			    "      --password P            the password for "
			    "SMTP AUTH; \"-\": the first line\n"
			    "                              of standard input\n"
			    "      --password-file FILE    the password: the "
			    "first line of FILE\n");
		if (v->takes & ACCOUNT_CMD_TAKES_NO)
			fprintf(fp,
			    "      --no-password           remove the "
			    "password: the account cannot AUTH\n");
	}
	fprintf(fp,
	    "      --store FILE            the store (store.path; default "
	    "/var/lib/mailroom/mailroom.db)\n"
	    "  -c, --config FILE           configuration file (INI)\n"
	    "  -o, --set SECTION.KEY=VALUE override any configuration key\n"
	    "  -h, --help                  this text\n\n");
	if (v == NULL || (v->takes & ACCOUNT_CMD_TAKES_PASSWORD))
		fprintf(fp, "A password is 1 to %d bytes without NUL or line "
		    "breaks.  Given as an\nargument it shows in ps(1): "
		    "--password - and --password-file read it\nfrom the first "
		    "line of standard input or of a file instead (only that\n"
		    "line is used, without its line end; the rest is "
		    "ignored).  The store keeps\nonly a salted PBKDF2 verifier "
		    "of it (registry.pbkdf2_iterations).\n\n",
		    ACCOUNT_PASSWORD_MAX);
	fprintf(fp,
	    "Exit status: 0 done; 64 bad usage (a bad quota or password "
	    "argument\nincluded); 65 refused (the account exists, campaigns "
	    "hold reservations of\nit, or the password read from a file is "
	    "not one); 66 no such account,\nstore or password file; 75 the "
	    "store is locked by another process (try\nagain); 77 permission "
	    "denied; 78 bad configuration.\n");
}

/* account_cmd_fail - the store's sentence as the message; its status. */
static int
account_cmd_fail(struct account_cmd *ac, int code)
{
	mr_buf_reset(&ac->err);
	mr_buf_puts(&ac->err, store_error(ac->store));
	return cstore_ex(code, EX_IOERR);
}

static int
account_cmd_open(struct account_cmd *ac, bool create)
{
	int ex;

	ex = conf_cli_load(&ac->cfg, &ac->cl, ac->prog);
	if (ex != 0)
		return ex;
	ac->have_cfg = true;
	ac->store = cstore_open(&ac->cfg, create, &ac->err, &ex);
	return ac->store == NULL ? ex : 0;
}

/* account_cmd_duration - seconds in the largest unit that divides them. */
static const char *
account_cmd_duration(int64_t s, char *buf, size_t size)
{
	if (s > 0 && s % 86400 == 0)
		snprintf(buf, size, "%" PRId64 "d", s / 86400);
	else if (s > 0 && s % 3600 == 0)
		snprintf(buf, size, "%" PRId64 "h", s / 3600);
	else if (s > 0 && s % 60 == 0)
		snprintf(buf, size, "%" PRId64 "m", s / 60);
	else
		snprintf(buf, size, "%" PRId64 "s", s);
	return buf;
}

/* account_cmd_check_name - NULL when name may name an account. */
static const char *
account_cmd_check_name(const char *name)
{
	const unsigned char *p;

	if (*name == '\0')
		return "it is empty";
	if (strlen(name) > ACCOUNT_CMD_NAME_MAX)
		return "it is longer than 200 bytes";
	for (p = (const unsigned char *)name; *p != '\0'; p++)
		if (*p <= ' ' || *p == 0x7f)
			return "it holds a space or a control character";
	return NULL;
}

/*
 * account_cmd_quota - --quota N/PERIOD into ac: N from 1, PERIOD as
 * --period takes it.  0, or -1 after a message.
 */
static int
account_cmd_quota(struct account_cmd *ac, const char *arg)
{
	unsigned long long v;
	long long ms;
	const char *slash, *why = NULL;
	char *end;

	slash = strchr(arg, '/');
	errno = 0;
	v = strtoull(arg, &end, 10);
	if (slash == NULL)
		why = "no \"/\" between the messages and the period";
	else if (arg[0] < '0' || arg[0] > '9' || end != slash ||
	    errno != 0 || v > INT64_MAX)
		why = "the messages are not a number";
	else if (v == 0)
		why = "a quota of 0 messages lets nothing through";
	else if (conf_parse_duration(slash + 1, &ms) != 0 || ms < 1000 ||
	    ms % 1000 != 0)
		why = "the period is not whole seconds or more, as 3600s, 1h, "
		    "1d or 30d";
	if (why != NULL) {
		fprintf(stderr, "mailroom %s: --quota \"%s\": %s; give "
		    "N/PERIOD, as 1000/1d (N from 1 to %" PRId64 ")\n",
		    ac->prog, arg, why, INT64_MAX);
		return -1;
	}
	ac->allowance = v;
	ac->period = (int64_t)(ms / 1000);
	ac->has_quota = true;
	return 0;
}

/*
 * account_cmd_limit - one of --allowance, --period, --warn, --quota into
 * ac; 0, or -1 after a message.
 */
static int
account_cmd_limit(struct account_cmd *ac, int opt, const char *arg)
{
	unsigned long long v;
	long long ms;
	char *end;

	switch (opt) {
	case ACCOUNT_CMD_OPT_QUOTA:
		return account_cmd_quota(ac, arg);
	case ACCOUNT_CMD_OPT_ALLOWANCE:
		errno = 0;
		v = strtoull(arg, &end, 10);
		if (arg[0] < '0' || arg[0] > '9' || *end != '\0' ||
		    errno != 0 || v > INT64_MAX) {
			fprintf(stderr, "mailroom %s: --allowance \"%s\": "
			    "not a number of messages (0 to %" PRId64 ")\n",
			    ac->prog, arg, INT64_MAX);
			return -1;
		}
		ac->allowance = v;
		ac->has_allowance = true;
		return 0;
	case ACCOUNT_CMD_OPT_PERIOD:
		if (conf_parse_duration(arg, &ms) != 0 || ms < 1000 ||
		    ms % 1000 != 0) {
			fprintf(stderr, "mailroom %s: --period \"%s\": not a "
			    "period; give whole seconds or more, as 3600s, "
			    "1h, 1d or 30d\n", ac->prog, arg);
			return -1;
		}
		ac->period = (int64_t)(ms / 1000);
		ac->has_period = true;
		return 0;
	case ACCOUNT_CMD_OPT_WARN:
		errno = 0;
		v = strtoull(arg, &end, 10);
		if (*end == '%')
			end++;
		if (arg[0] < '0' || arg[0] > '9' || *end != '\0' ||
		    errno != 0 || v < 1 || v > 100) {
			fprintf(stderr, "mailroom %s: --warn \"%s\": not a "
			    "share of the allowance; give a percentage from 1 "
			    "to 100\n", ac->prog, arg);
			return -1;
		}
		ac->warn_pct = (unsigned)v;
		ac->has_warn = true;
		return 0;
	}
	return -1;
}

/*
 * account_cmd_args_check - options that do not go together, and a
 * password given as an argument.  0 or EX_USAGE after a message.
 */
static int
account_cmd_args_check(struct account_cmd *ac)
{
	const char *why;

	if (ac->has_quota && (ac->has_allowance || ac->has_period)) {
		fprintf(stderr, "mailroom %s: give --quota N/PERIOD or "
		    "--allowance N --period DURATION, not both\n", ac->prog);
		return EX_USAGE;
	}
	if (ac->no_quota && (ac->has_quota || ac->has_allowance ||
	    ac->has_period)) {
		fprintf(stderr, "mailroom %s: --no-quota removes the quota: "
		    "it goes with no --quota, --allowance or --period\n",
		    ac->prog);
		return EX_USAGE;
	}
	if (ac->password_arg != NULL && ac->password_file != NULL) {
		fprintf(stderr, "mailroom %s: give --password or "
		    "--password-file, not both\n", ac->prog);
		return EX_USAGE;
	}
	if (ac->no_password && (ac->password_arg != NULL ||
	    ac->password_file != NULL)) {
		fprintf(stderr, "mailroom %s: --no-password removes the "
		    "password: it goes with no --password or "
		    "--password-file\n", ac->prog);
		return EX_USAGE;
	}
	if (ac->password_arg != NULL && strcmp(ac->password_arg, "-") != 0 &&
	    (why = account_password_refusal(ac->password_arg,
	    strlen(ac->password_arg))) != NULL) {
		fprintf(stderr, "mailroom %s: --password refused: %s (a "
		    "password is 1 to %d bytes without line breaks)\n",
		    ac->prog, why, ACCOUNT_PASSWORD_MAX);
		return EX_USAGE;
	}
	if (ac->has_quota)
		ac->has_allowance = ac->has_period = true;
	return 0;
}

/*
 * account_cmd_read_password - the first line of ac's password file ("-":
 * standard input) into ac->password, without its line end (LF or CRLF).
 * Reads at most one line and a little more, byte by byte, so that a file
 * without line breaks cannot make it hold much.  0 or an exit status,
 * with a message.
 */
static int
account_cmd_read_password(struct account_cmd *ac, const char *file)
{
	char line[ACCOUNT_PASSWORD_MAX + 2];	/* CR, and one byte over */
	const char *from, *fname, *why = NULL;
	bool in = strcmp(file, "-") == 0, eol = false, over = false;
	FILE *fp;
	size_t n = 0;
	int ch, e;

	/* Messages start "password file F" or "password from ...". */
	from = in ? "password from standard input" : "password file ";
	fname = in ? "" : file;
	fp = in ? stdin : fopen(file, "re");
	if (fp == NULL) {
		e = errno;
		mr_buf_printf(&ac->err, "%s%s: %s", from, fname, strerror(e));
		return e == ENOENT ? EX_NOINPUT : e == EACCES ? EX_NOPERM :
		    EX_IOERR;
	}
	/* No stdio buffer holds a copy, nor reads past the line. */
	setvbuf(fp, NULL, _IONBF, 0);
	while ((ch = getc(fp)) != EOF) {
		if (ch == '\n') {
			eol = true;
			break;
		}
		if (n == sizeof(line)) {
			over = true;
			break;
		}
		line[n++] = (char)ch;
	}
	e = ferror(fp) ? (errno != 0 ? errno : EIO) : 0;
	if (!in)
		fclose(fp);
	if (e != 0) {
		OPENSSL_cleanse(line, sizeof(line));
		mr_buf_printf(&ac->err, "%s%s: %s", from, fname, strerror(e));
		return EX_IOERR;
	}
	if (n > 0 && line[n - 1] == '\r' && !over)
		n--;
	if (over)
		why = "its first line is too long";
	else if (n == 0)
		why = eol ? "its first line is empty" : "it is empty";
	else
		why = account_password_refusal(line, n);
	if (why != NULL) {
		OPENSSL_cleanse(line, sizeof(line));
		mr_buf_printf(&ac->err, "%s%s refused: %s (only the first "
		    "line is used, without its line end: 1 to %d bytes, no "
		    "NUL)", from, fname, why, ACCOUNT_PASSWORD_MAX);
		return EX_DATAERR;
	}
	ac->password = xmemdup(line, n);
	ac->password_len = n;
	OPENSSL_cleanse(line, sizeof(line));
	return 0;
}

/*
 * account_cmd_password - the new password, if one was given, into
 * ac->password.  0 or an exit status.
 */
static int
account_cmd_password(struct account_cmd *ac)
{
	if (ac->password_file != NULL)
		return account_cmd_read_password(ac, ac->password_file);
	if (ac->password_arg == NULL)
		return 0;
	if (strcmp(ac->password_arg, "-") == 0)
		return account_cmd_read_password(ac, "-");
	ac->password_len = strlen(ac->password_arg);
	ac->password = xmemdup(ac->password_arg, ac->password_len);
	return 0;
}

/*
 * account_cmd_args - the command line of verb v into ac.  Returns -1
 * after --help (exit 0), else 0 or an exit status.
 */
static int
account_cmd_args(struct account_cmd *ac, const struct account_cmd_verb *v,
    int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "allowance", required_argument, NULL,
		  ACCOUNT_CMD_OPT_ALLOWANCE },
		{ "period", required_argument, NULL, ACCOUNT_CMD_OPT_PERIOD },
		{ "warn", required_argument, NULL, ACCOUNT_CMD_OPT_WARN },
		{ "quota", required_argument, NULL, ACCOUNT_CMD_OPT_QUOTA },
		{ "no-quota", no_argument, NULL, ACCOUNT_CMD_OPT_NO_QUOTA },
		{ "password", required_argument, NULL,
		  ACCOUNT_CMD_OPT_PASSWORD },
		{ "password-file", required_argument, NULL,
		  ACCOUNT_CMD_OPT_PASSWORD_FILE },
		{ "no-password", no_argument, NULL,
		  ACCOUNT_CMD_OPT_NO_PASSWORD },
		{ "store", required_argument, NULL, ACCOUNT_CMD_OPT_STORE },
		CONF_CLI_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *why;
	int c, r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:o:h", longopts, NULL)) != -1) {
		if ((r = conf_cli_option(&ac->cl, c, optarg, ac->prog)) != 0) {
			if (r > 0)
				continue;
			return EX_USAGE;
		}
		switch (c) {
		case ACCOUNT_CMD_OPT_STORE:
			conf_cli_set(&ac->cl, "store.path", optarg);
			break;
		case ACCOUNT_CMD_OPT_ALLOWANCE:
		case ACCOUNT_CMD_OPT_PERIOD:
		case ACCOUNT_CMD_OPT_WARN:
		case ACCOUNT_CMD_OPT_QUOTA:
			if (!(v->takes & ACCOUNT_CMD_TAKES_LIMITS)) {
				fprintf(stderr, "mailroom %s: %s takes no "
				    "limits (see mailroom account %s --help)\n",
				    ac->prog, v->name, v->name);
				return EX_USAGE;
			}
			if (account_cmd_limit(ac, c, optarg) != 0)
				return EX_USAGE;
			break;
		case ACCOUNT_CMD_OPT_PASSWORD:
		case ACCOUNT_CMD_OPT_PASSWORD_FILE:
			if (!(v->takes & ACCOUNT_CMD_TAKES_PASSWORD)) {
				fprintf(stderr, "mailroom %s: %s takes no "
				    "password (see mailroom account %s "
				    "--help)\n", ac->prog, v->name, v->name);
				return EX_USAGE;
			}
			if (c == ACCOUNT_CMD_OPT_PASSWORD)
				ac->password_arg = optarg;
			else
				ac->password_file = optarg;
			break;
		case ACCOUNT_CMD_OPT_NO_QUOTA:
		case ACCOUNT_CMD_OPT_NO_PASSWORD:
			if (!(v->takes & ACCOUNT_CMD_TAKES_NO)) {
				fprintf(stderr, "mailroom %s: --no-quota and "
				    "--no-password go with change only (a new "
				    "account has neither unless given one)\n",
				    ac->prog);
				return EX_USAGE;
			}
			if (c == ACCOUNT_CMD_OPT_NO_QUOTA)
				ac->no_quota = true;
			else
				ac->no_password = true;
			break;
		case 'h':
			account_cmd_usage(stdout, v);
			return -1;
		default:
			conf_cli_bad_option(ac->prog, argv);
			fprintf(stderr, "(see mailroom account %s --help)\n",
			    v->name);
			return EX_USAGE;
		}
	}
	if ((size_t)(argc - optind) != v->nargs) {
		if (argc - optind > (int)v->nargs)
			fprintf(stderr, "mailroom %s: unexpected argument "
			    "\"%s\"\n", ac->prog, argv[optind + (int)v->nargs]);
		else
			fprintf(stderr, "mailroom %s: which account? give its "
			    "name\n", ac->prog);
		fprintf(stderr, "usage: mailroom account %s\n", v->synopsis);
		return EX_USAGE;
	}
	if (v->nargs == 0)
		return 0;
	ac->name = argv[optind];
	if ((why = account_cmd_check_name(ac->name)) != NULL) {
		fprintf(stderr, "mailroom %s: account name \"%s\" refused: "
		    "%s\n", ac->prog, ac->name, why);
		return EX_USAGE;
	}
	return account_cmd_args_check(ac);
}

/* account_cmd_get - the account, or EX_NOINPUT "no account X ...". */
static int
account_cmd_get(struct account_cmd *ac, struct store_account *a)
{
	int code;

	code = ac->store->ops->account_get(ac->store, ac->name, a);
	if (code == -ENOENT) {
		mr_buf_printf(&ac->err, "no account %s in store %s", ac->name,
		    ac->cfg.store_path);
		return EX_NOINPUT;
	}
	return code == 0 ? 0 : account_cmd_fail(ac, code);
}

/* account_cmd_print - what the account is now, in one line. */
static void
account_cmd_print(const struct store_account *a)
{
	char period[32];

	if (a->allowance == STORE_ALLOWANCE_UNLIMITED)
		printf("account %s: no quota (unlimited)", a->name);
	else
		printf("account %s: %" PRIu64 " messages per %s, warning at "
		    "%u%%", a->name, a->allowance, account_cmd_duration(
		    a->period, period, sizeof(period)), a->warn_pct);
	printf(", %s\n", a->verifier != NULL ? "password set" :
	    "no password");
}

/*
 * account_cmd_edit - the command line's changes to a (just read, for
 * change).  0 or an exit status with a message.
 */
static int
account_cmd_edit(struct account_cmd *ac, struct store_account *a,
    char **verifier)
{
	if (a->allowance == STORE_ALLOWANCE_UNLIMITED &&
	    ac->has_allowance != ac->has_period) {
		mr_buf_printf(&ac->err, "account %s has no quota: give one "
		    "with --quota N/PERIOD (or --allowance and --period "
		    "together)", ac->name);
		return EX_USAGE;
	}
	if (ac->no_quota)
		a->allowance = STORE_ALLOWANCE_UNLIMITED;
	if (ac->has_allowance)
		a->allowance = ac->allowance;
	if (ac->has_period)
		a->period = ac->period;
	if (ac->has_warn)
		a->warn_pct = ac->warn_pct;
	if (*verifier != NULL || ac->no_password) {
		if (a->verifier != NULL)
			OPENSSL_cleanse(a->verifier, strlen(a->verifier));
		free(a->verifier);
		a->verifier = *verifier;
		*verifier = NULL;
	}
	return 0;
}

/*
 * account_cmd_put - write a (after reading it, for change) inside one
 * write transaction: 0 or an exit status.
 */
static int
account_cmd_put(struct account_cmd *ac, bool create)
{
	struct store *s = ac->store;
	struct store_account a;
	char *verifier = NULL;
	int code, ex;

	memset(&a, 0, sizeof(a));
	/* The slow part, before the store is locked. */
	if (ac->password != NULL) {
		verifier = reg_verifier_make(ac->password, ac->password_len,
		    (unsigned)ac->cfg.registry_pbkdf2_iterations);
		if (verifier == NULL) {
			mr_buf_printf(&ac->err, "cannot make a verifier of the "
			    "password (no randomness?)");
			return EX_OSERR;
		}
	}
	if ((code = s->ops->begin(s)) != 0) {
		free(verifier);
		return account_cmd_fail(ac, code);
	}
	code = s->ops->account_get(s, ac->name, &a);
	if (create && code == 0) {
		mr_buf_printf(&ac->err, "account %s already exists in store "
		    "%s (change it with mailroom account change %s)",
		    ac->name, ac->cfg.store_path, ac->name);
		ex = EX_DATAERR;
	} else if (create && code == -ENOENT) {
		/* Without a quota: unlimited, use counted per day. */
		a.name = xstrdup(ac->name);
		a.allowance = ac->has_allowance ? ac->allowance :
		    STORE_ALLOWANCE_UNLIMITED;
		a.period = ac->has_period ? ac->period :
		    ACCOUNT_CMD_UNLIMITED_PERIOD;
		a.warn_pct = ac->has_warn ? ac->warn_pct :
		    ACCOUNT_CMD_WARN_DEFAULT;
		a.verifier = verifier;
		verifier = NULL;
		ex = 0;
	} else if (!create && code == -ENOENT) {
		mr_buf_printf(&ac->err, "no account %s in store %s", ac->name,
		    ac->cfg.store_path);
		ex = EX_NOINPUT;
	} else if (code != 0) {
		ex = account_cmd_fail(ac, code);
	} else {
		ex = account_cmd_edit(ac, &a, &verifier);
	}
	if (ex == 0 && (code = s->ops->account_put(s, &a)) != 0)
		ex = account_cmd_fail(ac, code);
	if (ex == 0 && (code = s->ops->commit(s)) != 0)
		ex = account_cmd_fail(ac, code);
	if (ex != 0)
		(void)s->ops->rollback(s);
	else
		account_cmd_print(&a);
	store_account_release(&a);
	free(verifier);
	return ex;
}

/* ---------------------------------------------------------------- */
/* The subcommands                                                  */
/* ---------------------------------------------------------------- */

static int
account_cmd_add(struct account_cmd *ac)
{
	int ex;

	if (ac->has_allowance != ac->has_period) {
		fprintf(stderr, "mailroom %s: --allowance and --period go "
		    "together (or give --quota N/PERIOD; without either the "
		    "account has no quota; see mailroom account add --help)\n",
		    ac->prog);
		return EX_USAGE;
	}
	/* The password first: standard input is not read after a failure. */
	if ((ex = account_cmd_password(ac)) != 0)
		return ex;
	/* An account may be the first thing recorded: make the store. */
	if ((ex = account_cmd_open(ac, true)) != 0)
		return ex;
	return account_cmd_put(ac, true);
}

static int
account_cmd_change(struct account_cmd *ac)
{
	int ex;

	if (!ac->has_allowance && !ac->has_period && !ac->has_warn &&
	    !ac->no_quota && ac->password_arg == NULL &&
	    ac->password_file == NULL && !ac->no_password) {
		fprintf(stderr, "mailroom %s: nothing to change: give "
		    "--quota, --allowance, --period, --no-quota, --warn, "
		    "--password, --password-file or --no-password\n",
		    ac->prog);
		return EX_USAGE;
	}
	if ((ex = account_cmd_password(ac)) != 0)
		return ex;
	if ((ex = account_cmd_open(ac, false)) != 0)
		return ex;
	return account_cmd_put(ac, false);
}

static int
account_cmd_names_cb(void *arg, const struct store_account *a)
{
	struct account_cmd_names *names = arg;

	names->v = xreallocarray(names->v, names->n + 1, sizeof(*names->v));
	names->password = xreallocarray(names->password, names->n + 1,
	    sizeof(*names->password));
	names->password[names->n] = a->verifier != NULL;
	names->v[names->n++] = xstrdup(a->name);
	return 0;
}

static int
account_cmd_list(struct account_cmd *ac)
{
	static const char *const head[] = {
		"NAME", "ALLOWANCE", "PERIOD", "WARN", "USED", "RESERVED",
		"PASSWORD",
	};
	enum { ACCOUNT_CMD_NCOLS = sizeof(head) / sizeof(head[0]) };
	struct account_cmd_names names = { NULL, NULL, 0 };
	struct store *s;
	struct store_quota q;
	char (*cell)[ACCOUNT_CMD_NCOLS][32] = NULL;
	size_t w[ACCOUNT_CMD_NCOLS], i, k;
	int64_t now;
	int code, ex = 0;

	if ((ex = account_cmd_open(ac, false)) != 0)
		return ex;
	s = ac->store;
	code = s->ops->account_list(s, account_cmd_names_cb, &names);
	now = (int64_t)time(NULL);
	if (names.n > 0)
		cell = xcalloc(names.n, sizeof(*cell));
	for (i = 0; code == 0 && i < names.n; i++) {
		if ((code = s->ops->quota_get(s, names.v[i], now, &q)) != 0)
			break;
		if (q.allowance == STORE_ALLOWANCE_UNLIMITED)
			snprintf(cell[i][1], sizeof(cell[i][1]), "unlimited");
		else
			snprintf(cell[i][1], sizeof(cell[i][1]), "%" PRIu64,
			    q.allowance);
		account_cmd_duration(q.period, cell[i][2], sizeof(cell[i][2]));
		snprintf(cell[i][3], sizeof(cell[i][3]), "%u%%", q.warn_pct);
		snprintf(cell[i][4], sizeof(cell[i][4]), "%" PRIu64, q.used);
		snprintf(cell[i][5], sizeof(cell[i][5]), "%" PRIu64,
		    q.reserved);
		snprintf(cell[i][6], sizeof(cell[i][6]), "%s",
		    names.password[i] ? "set" : "none");
	}
	if (code != 0) {
		ex = account_cmd_fail(ac, code);
		goto out;
	}
	for (k = 0; k < ACCOUNT_CMD_NCOLS; k++)
		w[k] = strlen(head[k]);
	for (i = 0; i < names.n; i++) {
		if (strlen(names.v[i]) > w[0])
			w[0] = strlen(names.v[i]);
		for (k = 1; k < ACCOUNT_CMD_NCOLS; k++)
			if (strlen(cell[i][k]) > w[k])
				w[k] = strlen(cell[i][k]);
	}
	/* The name left-aligned, the rest right-aligned. */
	printf("%-*s  %*s  %*s  %*s  %*s  %*s  %*s\n", (int)w[0], head[0],
	    (int)w[1], head[1], (int)w[2], head[2], (int)w[3], head[3],
	    (int)w[4], head[4], (int)w[5], head[5], (int)w[6], head[6]);
	for (i = 0; i < names.n; i++)
		printf("%-*s  %*s  %*s  %*s  %*s  %*s  %*s\n", (int)w[0],
		    names.v[i], (int)w[1], cell[i][1], (int)w[2], cell[i][2],
		    (int)w[3], cell[i][3], (int)w[4], cell[i][4], (int)w[5],
		    cell[i][5], (int)w[6], cell[i][6]);
out:
	for (i = 0; i < names.n; i++)
		free(names.v[i]);
	free(names.v);
	free(names.password);
	free(cell);
	return ex;
}

static int
account_cmd_show(struct account_cmd *ac)
{
	struct store_account a;
	struct store_quota q;
	char when[32];
	uint64_t taken;
	bool password;
	int code, ex;

	if ((ex = account_cmd_open(ac, false)) != 0)
		return ex;
	/* Two reads, no transaction: show works while a sender writes. */
	if ((ex = account_cmd_get(ac, &a)) != 0)
		return ex;
	password = a.verifier != NULL;
	store_account_release(&a);
	code = ac->store->ops->quota_get(ac->store, ac->name,
	    (int64_t)time(NULL), &q);
	if (code == -ENOENT) {
		mr_buf_printf(&ac->err, "no account %s in store %s", ac->name,
		    ac->cfg.store_path);
		return EX_NOINPUT;
	}
	if (code != 0)
		return account_cmd_fail(ac, code);
	taken = q.used + q.reserved;
	printf("name: %s\n", ac->name);
	if (q.allowance == STORE_ALLOWANCE_UNLIMITED)
		printf("allowance: unlimited\n");
	else
		printf("allowance: %" PRIu64 "\n", q.allowance);
	printf("period: %s\n", account_cmd_duration(q.period, when,
	    sizeof(when)));
	printf("warn: %u%%\n", q.warn_pct);
	printf("password: %s\n", password ? "set" : "none");
	printf("period-start: %s\n", mr_iso8601(q.period_start, when,
	    sizeof(when)));
	printf("period-end: %s\n", mr_iso8601(q.period_start + q.period,
	    when, sizeof(when)));
	printf("used: %" PRIu64 "\n", q.used);
	printf("reserved: %" PRIu64 "\n", q.reserved);
	if (q.allowance == STORE_ALLOWANCE_UNLIMITED)
		printf("remaining: unlimited\n");
	else
		printf("remaining: %" PRIu64 "\n", taken < q.allowance ?
		    q.allowance - taken : 0);
	return 0;
}

/* account_cmd_users_cb - campaigns of the account that have not ended. */
static int
account_cmd_users_cb(void *arg, const struct store_campaign *c)
{
	struct account_cmd_users *u = arg;

	if (c->account == NULL || strcmp(c->account, u->account) != 0 ||
	    c->state == STORE_STATE_DONE ||
	    c->stage == STORE_STAGE_COMPLETE)
		return 0;
	mr_buf_printf(&u->list, "%s%s (%s)", u->n ? ", " : "", c->name,
	    store_state_name(c->state));
	u->n++;
	return 0;
}

static int
account_cmd_remove(struct account_cmd *ac)
{
	struct account_cmd_users u;
	struct store *s;
	struct store_account a;
	int code, ex;

	if ((ex = account_cmd_open(ac, false)) != 0)
		return ex;
	s = ac->store;
	if ((code = s->ops->begin(s)) != 0)
		return account_cmd_fail(ac, code);
	/* Inside the write transaction, -EBUSY below is not the lock. */
	if ((ex = account_cmd_get(ac, &a)) == 0) {
		store_account_release(&a);
		code = s->ops->account_remove(s, ac->name);
		if (code == -EBUSY) {
			ex = EX_DATAERR;
		} else if (code != 0) {
			ex = account_cmd_fail(ac, code);
		} else if ((code = s->ops->commit(s)) != 0) {
			ex = account_cmd_fail(ac, code);
		}
	}
	if (ex != 0)
		(void)s->ops->rollback(s);
	memset(&u, 0, sizeof(u));
	u.account = ac->name;
	if (ex == EX_DATAERR) {
		(void)s->ops->campaign_list(s, account_cmd_users_cb, &u);
		mr_buf_printf(&ac->err, "account %s cannot be removed: "
		    "campaigns hold reservations of it%s%s; it can go once "
		    "they are complete or cancelled (a cancelled campaign "
		    "gives its reservation back when no sender holds it: "
		    "cancel it again after a sender that was killed)",
		    ac->name, u.n ? ": " : "", mr_buf_cstr(&u.list));
	} else if (ex == 0) {
		printf("account %s removed\n", ac->name);
		(void)s->ops->campaign_list(s, account_cmd_users_cb, &u);
		if (u.n)
			fprintf(stderr, "mailroom %s: warning: campaign%s %s "
			    "count%s against account %s, which no longer "
			    "exists: %s will be refused when %s start%s\n",
			    ac->prog, u.n > 1 ? "s" : "", mr_buf_cstr(&u.list),
			    u.n > 1 ? "" : "s", ac->name, u.n > 1 ? "they" :
			    "it", u.n > 1 ? "they" : "it", u.n > 1 ? "" : "s");
	}
	mr_buf_release(&u.list);
	return ex;
}

/* ---------------------------------------------------------------- */
/* Dispatch                                                         */
/* ---------------------------------------------------------------- */

int
account_cmd(int argc, char **argv)
{
	const struct account_cmd_verb *v = NULL;
	struct account_cmd ac;
	char prog[64];
	size_t i;
	int ex;

	if (argc < 2) {
		account_cmd_usage(stderr, NULL);
		return EX_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		account_cmd_usage(stdout, NULL);
		return 0;
	}
	for (i = 0; i < ACCOUNT_CMD_NVERBS; i++)
		if (strcmp(argv[1], account_cmd_verbs[i].name) == 0)
			v = &account_cmd_verbs[i];
	if (v == NULL) {
		fprintf(stderr, "mailroom account: unknown command \"%s\" "
		    "(see mailroom account --help)\n", argv[1]);
		return EX_USAGE;
	}
	memset(&ac, 0, sizeof(ac));
	snprintf(prog, sizeof(prog), "account %s", v->name);
	ac.prog = prog;
	ex = account_cmd_args(&ac, v, argc - 1, argv + 1);
	if (ex == 0)
		ex = v->run(&ac);
	else if (ex < 0)
		ex = 0;
	if (ex != 0 && ac.err.len)
		fprintf(stderr, "mailroom %s: %s\n", ac.prog,
		    mr_buf_cstr(&ac.err));
	if (ac.password != NULL) {
		OPENSSL_cleanse(ac.password, ac.password_len);
		free(ac.password);
	}
	store_close(&ac.store);
	if (ac.have_cfg)
		conf_release(&ac.cfg);
	conf_cli_release(&ac.cl);
	mr_buf_release(&ac.err);
	return ex;
}
