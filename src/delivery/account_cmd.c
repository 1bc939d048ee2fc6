/*
 * account_cmd.c - "mailroom account": sending accounts and their
 * allowances (SPEC D16): add, change, list, show, remove.
 *
 * An account allows so many messages per fixed period (UTC windows of
 * the period's length).  Senders reserve a campaign's recipients when it
 * starts and move them to "used" as they reach a final state; this
 * command shows those numbers for the current period and edits the
 * allowance, never the counters.  Every change is one write transaction.
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

#include "commands.h"
#include "conf/conf.h"
#include "conf/conf_cli.h"
#include "core/mr_buf.h"
#include "core/mr_clock.h"
#include "core/xalloc.h"
#include "delivery/cstore.h"
#include "store/store.h"

#define ACCOUNT_CMD_NAME_MAX	200
#define ACCOUNT_CMD_WARN_DEFAULT 80

enum {
	ACCOUNT_CMD_OPT_STORE = 256,
	ACCOUNT_CMD_OPT_ALLOWANCE,
	ACCOUNT_CMD_OPT_PERIOD,
	ACCOUNT_CMD_OPT_WARN,
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
	uint64_t		 allowance;
	int64_t			 period;	/* seconds */
	unsigned		 warn_pct;
};

struct account_cmd_verb {
	const char	*name;
	int		(*run)(struct account_cmd *ac);
	size_t		 nargs;		/* operands: the name, or none */
	bool		 limits;	/* takes --allowance and so on */
	const char	*synopsis;
	const char	*help;
};

/* Account names collected by a listing (the quota is read after it). */
struct account_cmd_names {
	char	**v;
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
	{ "add", account_cmd_add, 1, true,
	  "add NAME --allowance N --period DURATION [--warn PCT] [options]",
	  "Adds a sending account that allows N messages per period (a "
	  "duration: 1h,\n1d, 30d; periods are fixed UTC windows of that "
	  "length).  Campaigns count\nagainst it with --account NAME; a "
	  "warning is printed when a campaign brings\nthe period's use to "
	  "PCT percent of the allowance (default 80).\n" },
	{ "change", account_cmd_change, 1, true,
	  "change NAME [--allowance N] [--period DURATION] [--warn PCT] "
	  "[options]",
	  "Changes an account's allowance, period or warning share; what "
	  "was used and\nreserved stays.\n" },
	{ "list", account_cmd_list, 0, false, "list [options]",
	  "One line per account: name, allowance, period, warning share, "
	  "and what is\nused and reserved in the current period.\n" },
	{ "show", account_cmd_show, 1, false, "show NAME [options]",
	  "Every field of one account as \"key: value\" lines, with the "
	  "current period's\nstart and end (UTC), used, reserved and "
	  "remaining messages.\n" },
	{ "remove", account_cmd_remove, 1, false, "remove NAME [options]",
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
		    "Sending accounts and their allowances (SPEC D16).  "
		    "Commands:\n\n");
		for (i = 0; i < ACCOUNT_CMD_NVERBS; i++)
			fprintf(fp, "  mailroom account %s\n",
			    account_cmd_verbs[i].synopsis);
		fprintf(fp, "\nmailroom account COMMAND --help describes "
		    "each command.\n\nOptions of every command:\n");
	} else {
		fprintf(fp, "usage: mailroom account %s\n\n%s\n", v->synopsis,
		    v->help);
		if (v->limits)
			fprintf(fp,
			    "      --allowance N           messages per "
			    "period\n"
			    "      --period DURATION       the period: 3600s, "
			    "1h, 1d, 30d\n"
			    "      --warn PCT              warn at this share "
			    "of the allowance, 1..100\n");
	}
	fprintf(fp,
	    "      --store FILE            the store (store.path; default "
	    "/var/lib/mailroom/mailroom.db)\n"
	    "  -c, --config FILE           configuration file (INI)\n"
	    "  -o, --set SECTION.KEY=VALUE override any configuration key\n"
	    "  -h, --help                  this text\n\n"
	    "Exit status: 0 done; 64 bad usage; 65 refused (the account "
	    "exists, or\ncampaigns hold reservations of it); 66 no such "
	    "account or store; 75 the\nstore is locked by another process "
	    "(try again); 77 permission denied;\n78 bad configuration.\n");
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
 * account_cmd_limit - one of --allowance, --period, --warn into ac; 0, or
 * -1 after a message.
 */
static int
account_cmd_limit(struct account_cmd *ac, int opt, const char *arg)
{
	unsigned long long v;
	long long ms;
	char *end;

	switch (opt) {
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
			if (!v->limits) {
				fprintf(stderr, "mailroom %s: %s takes no "
				    "limits (see mailroom account %s --help)\n",
				    ac->prog, v->name, v->name);
				return EX_USAGE;
			}
			if (account_cmd_limit(ac, c, optarg) != 0)
				return EX_USAGE;
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
	return 0;
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

static void
account_cmd_print_limits(const struct store_account *a)
{
	char period[32];

	printf("account %s: %" PRIu64 " messages per %s, warning at %u%%\n",
	    a->name, a->allowance, account_cmd_duration(a->period, period,
	    sizeof(period)), a->warn_pct);
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
	int code, ex;

	memset(&a, 0, sizeof(a));
	if ((code = s->ops->begin(s)) != 0)
		return account_cmd_fail(ac, code);
	code = s->ops->account_get(s, ac->name, &a);
	if (create && code == 0) {
		mr_buf_printf(&ac->err, "account %s already exists in store "
		    "%s (change it with mailroom account change %s)",
		    ac->name, ac->cfg.store_path, ac->name);
		ex = EX_DATAERR;
	} else if (create && code == -ENOENT) {
		a.name = xstrdup(ac->name);
		a.allowance = ac->allowance;
		a.period = ac->period;
		a.warn_pct = ac->has_warn ? ac->warn_pct :
		    ACCOUNT_CMD_WARN_DEFAULT;
		ex = 0;
	} else if (!create && code == -ENOENT) {
		mr_buf_printf(&ac->err, "no account %s in store %s", ac->name,
		    ac->cfg.store_path);
		ex = EX_NOINPUT;
	} else if (code != 0) {
		ex = account_cmd_fail(ac, code);
	} else {
		if (ac->has_allowance)
			a.allowance = ac->allowance;
		if (ac->has_period)
			a.period = ac->period;
		if (ac->has_warn)
			a.warn_pct = ac->warn_pct;
		ex = 0;
	}
	if (ex == 0 && (code = s->ops->account_put(s, &a)) != 0)
		ex = account_cmd_fail(ac, code);
	if (ex == 0 && (code = s->ops->commit(s)) != 0)
		ex = account_cmd_fail(ac, code);
	if (ex != 0)
		(void)s->ops->rollback(s);
	else
		account_cmd_print_limits(&a);
	store_account_release(&a);
	return ex;
}

/* ---------------------------------------------------------------- */
/* The subcommands                                                  */
/* ---------------------------------------------------------------- */

static int
account_cmd_add(struct account_cmd *ac)
{
	int ex;

	if (!ac->has_allowance || !ac->has_period) {
		fprintf(stderr, "mailroom %s: --allowance and --period are "
		    "required (see mailroom account add --help)\n", ac->prog);
		return EX_USAGE;
	}
	/* An account may be the first thing recorded: make the store. */
	if ((ex = account_cmd_open(ac, true)) != 0)
		return ex;
	return account_cmd_put(ac, true);
}

static int
account_cmd_change(struct account_cmd *ac)
{
	int ex;

	if (!ac->has_allowance && !ac->has_period && !ac->has_warn) {
		fprintf(stderr, "mailroom %s: nothing to change: give "
		    "--allowance, --period or --warn\n", ac->prog);
		return EX_USAGE;
	}
	if ((ex = account_cmd_open(ac, false)) != 0)
		return ex;
	return account_cmd_put(ac, false);
}

static int
account_cmd_names_cb(void *arg, const struct store_account *a)
{
	struct account_cmd_names *names = arg;

	names->v = xreallocarray(names->v, names->n + 1, sizeof(*names->v));
	names->v[names->n++] = xstrdup(a->name);
	return 0;
}

static int
account_cmd_list(struct account_cmd *ac)
{
	static const char *const head[] = {
		"NAME", "ALLOWANCE", "PERIOD", "WARN", "USED", "RESERVED",
	};
	struct account_cmd_names names = { NULL, 0 };
	struct store *s;
	struct store_quota q;
	char (*cell)[6][32] = NULL;
	size_t w[6], i, k;
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
		snprintf(cell[i][1], sizeof(cell[i][1]), "%" PRIu64,
		    q.allowance);
		account_cmd_duration(q.period, cell[i][2], sizeof(cell[i][2]));
		snprintf(cell[i][3], sizeof(cell[i][3]), "%u%%", q.warn_pct);
		snprintf(cell[i][4], sizeof(cell[i][4]), "%" PRIu64, q.used);
		snprintf(cell[i][5], sizeof(cell[i][5]), "%" PRIu64,
		    q.reserved);
	}
	if (code != 0) {
		ex = account_cmd_fail(ac, code);
		goto out;
	}
	for (k = 0; k < 6; k++)
		w[k] = strlen(head[k]);
	for (i = 0; i < names.n; i++) {
		if (strlen(names.v[i]) > w[0])
			w[0] = strlen(names.v[i]);
		for (k = 1; k < 6; k++)
			if (strlen(cell[i][k]) > w[k])
				w[k] = strlen(cell[i][k]);
	}
	printf("%-*s  %*s  %*s  %*s  %*s  %*s\n", (int)w[0], head[0],
	    (int)w[1], head[1], (int)w[2], head[2], (int)w[3], head[3],
	    (int)w[4], head[4], (int)w[5], head[5]);
	for (i = 0; i < names.n; i++)
		printf("%-*s  %*s  %*s  %*s  %*s  %*s\n", (int)w[0],
		    names.v[i], (int)w[1], cell[i][1], (int)w[2], cell[i][2],
		    (int)w[3], cell[i][3], (int)w[4], cell[i][4], (int)w[5],
		    cell[i][5]);
out:
	for (i = 0; i < names.n; i++)
		free(names.v[i]);
	free(names.v);
	free(cell);
	return ex;
}

static int
account_cmd_show(struct account_cmd *ac)
{
	struct store_quota q;
	char when[32];
	uint64_t taken;
	int code, ex;

	if ((ex = account_cmd_open(ac, false)) != 0)
		return ex;
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
	printf("allowance: %" PRIu64 "\n", q.allowance);
	printf("period: %s\n", account_cmd_duration(q.period, when,
	    sizeof(when)));
	printf("warn: %u%%\n", q.warn_pct);
	printf("period-start: %s\n", mr_iso8601(q.period_start, when,
	    sizeof(when)));
	printf("period-end: %s\n", mr_iso8601(q.period_start + q.period,
	    when, sizeof(when)));
	printf("used: %" PRIu64 "\n", q.used);
	printf("reserved: %" PRIu64 "\n", q.reserved);
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
	store_close(&ac.store);
	if (ac.have_cfg)
		conf_release(&ac.cfg);
	conf_cli_release(&ac.cl);
	mr_buf_release(&ac.err);
	return ex;
}
