/*
 * registry_cmd.c - "mailroom registry": the users of the aggregating POP3
 * proxy and their backend POP3 accounts (SPEC A1), kept in the store:
 * user add/change/remove/list, account add/change/remove/list.
 *
 * Secrets given here never reach the terminal, the log or the store in
 * clear: a password becomes a verifier, a backend or APOP secret is
 * sealed with the key file (registry.key_file), made on first use.  As a
 * command-line argument a secret shows in ps(1); the --*-file options
 * read it from the first line of a file, or of standard input ("-").
 * Every buffer that held one is wiped before it is freed.
 */
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <openssl/crypto.h>

#include "commands.h"
#include "conf/conf.h"
#include "conf/conf_cli.h"
#include "core/mr_buf.h"
#include "core/xalloc.h"
#include "registry/registry.h"
#include "registry/seal.h"

#define REGISTRY_CMD_SECRET_MAX	1024	/* bytes of a secret from a file */

enum {
	REGISTRY_CMD_OPT_STORE = 256,
	REGISTRY_CMD_OPT_KEY_FILE,
	REGISTRY_CMD_OPT_PASSWORD,
	REGISTRY_CMD_OPT_PASSWORD_FILE,
	REGISTRY_CMD_OPT_APOP,
	REGISTRY_CMD_OPT_APOP_FILE,
	REGISTRY_CMD_OPT_HOST,
	REGISTRY_CMD_OPT_PORT,
	REGISTRY_CMD_OPT_LOGIN,
	REGISTRY_CMD_OPT_SECRET,
	REGISTRY_CMD_OPT_SECRET_FILE,
	REGISTRY_CMD_OPT_TLS,
};

/* Which options a verb takes. */
enum {
	REGISTRY_CMD_TAKES_USER = 1 << 0,	/* --password, --apop-secret */
	REGISTRY_CMD_TAKES_ACCT = 1 << 1,	/* --host ... --tls */
};

/* The secrets a command line may carry: argument or file, then value. */
enum registry_cmd_secret {
	REGISTRY_CMD_PASSWORD,
	REGISTRY_CMD_APOP,
	REGISTRY_CMD_SECRET,
	REGISTRY_CMD_NSECRETS
};

struct registry_cmd_secret_src {
	const char	*arg;		/* --password P: borrowed */
	const char	*file;		/* --password-file F: borrowed */
	char		*value;		/* what was read: owned, wiped */
};

/* One run of a subcommand: what it owns, released by registry_cmd(). */
struct registry_cmd {
	const char		*prog;		/* "registry user add" */
	struct conf_cli		 cl;
	struct mr_config	 cfg;
	bool			 have_cfg;
	struct registry		*reg;
	struct mr_buf		 err;		/* why it failed */
	const char		*store_path;	/* borrowed from cfg */
	/* What the command line asked for. */
	const char		*operand;	/* NAME or ID, or NULL */
	int64_t			 id;
	struct registry_cmd_secret_src secrets[REGISTRY_CMD_NSECRETS];
	const char		*host;
	const char		*login;
	const char		*port_arg;	/* as given, checked later */
	const char		*tls_arg;
	unsigned		 port;		/* 0: not given */
	int			 tls;		/* -1: not given */
	/* account list: whether NAME was seen. */
	bool			 found;
};

struct registry_cmd_verb {
	const char	*object;	/* "user", "account" */
	const char	*name;
	int		(*run)(struct registry_cmd *rc);
	int		 nargs;		/* operands after it; -1: 0 or 1 */
	int		 takes;		/* REGISTRY_CMD_TAKES_* */
	bool		 by_id;		/* the operand is an account id */
	const char	*synopsis;
	const char	*help;
};

static int registry_cmd_user_add(struct registry_cmd *rc);
static int registry_cmd_user_change(struct registry_cmd *rc);
static int registry_cmd_user_remove(struct registry_cmd *rc);
static int registry_cmd_user_list(struct registry_cmd *rc);
static int registry_cmd_account_add(struct registry_cmd *rc);
static int registry_cmd_account_change(struct registry_cmd *rc);
static int registry_cmd_account_remove(struct registry_cmd *rc);
static int registry_cmd_account_list(struct registry_cmd *rc);
static int registry_cmd_seal(struct registry_cmd *rc);

static const struct registry_cmd_verb registry_cmd_verbs[] = {
	{ "user", "add", registry_cmd_user_add, 1, REGISTRY_CMD_TAKES_USER,
	  false,
	  "user add NAME --password P | --password-file F "
	  "[--apop-secret S | --apop-secret-file F]",
	  "Adds a user who may log in to the POP3 proxy.  The password is "
	  "kept only as\na salted PBKDF2 verifier; the APOP secret (for "
	  "clients that log in with\nAPOP, which needs it in clear) is sealed "
	  "with the key file.  A new registry\ngets a new key file, said on "
	  "standard error.\n" },
	{ "user", "change", registry_cmd_user_change, 1,
	  REGISTRY_CMD_TAKES_USER, false,
	  "user change NAME [--password P | --password-file F] "
	  "[--apop-secret S | --apop-secret-file F]",
	  "Changes a user's password or APOP secret; an empty APOP secret "
	  "(--apop-secret '')\nremoves it.\n" },
	{ "user", "remove", registry_cmd_user_remove, 1, 0, false,
	  "user remove NAME",
	  "Removes a user and every backend account of theirs.\n" },
	{ "user", "list", registry_cmd_user_list, 0, 0, false, "user list",
	  "One line per user: name, whether an APOP secret is set, and how "
	  "many backend\naccounts they have.  No secret is shown.\n" },
	{ "account", "add", registry_cmd_account_add, 1,
	  REGISTRY_CMD_TAKES_ACCT, false,
	  "account add NAME --host H --port P --login L --secret S | "
	  "--secret-file F\n    [--tls none|stls|pop3s]",
	  "Adds a backend POP3 account to user NAME and prints its id.  The "
	  "proxy logs in\nthere as L with secret S (sealed with the key "
	  "file); --tls says how it\nconnects: none (plain), stls (plain, "
	  "then STLS, required) or pop3s (TLS\nfrom the first byte); "
	  "default none.\n" },
	{ "account", "change", registry_cmd_account_change, 1,
	  REGISTRY_CMD_TAKES_ACCT, true,
	  "account change ID [--host H] [--port P] [--login L] "
	  "[--secret S | --secret-file F]\n    [--tls none|stls|pop3s]",
	  "Changes what is given of backend account ID.\n" },
	{ "account", "remove", registry_cmd_account_remove, 1, 0, true,
	  "account remove ID", "Removes backend account ID.\n" },
	{ "account", "list", registry_cmd_account_list, -1, 0, false,
	  "account list [NAME]",
	  "One line per backend account (of user NAME, or of everyone): id, "
	  "user, host,\nport, TLS mode and login.  No secret is shown.\n" },
	{ "user", "seal", registry_cmd_seal, 1, REGISTRY_CMD_TAKES_USER,
	  false,
	  "user seal NAME [--password-file F] [--apop-secret-file F]",
	  "For an LDAP directory (docs/REGISTRY.md): prints, as LDIF lines, "
	  "the verifier\nof the password (mailroomVerifier) and the APOP "
	  "secret sealed for user NAME\n(mailroomApopSecret; NAME spelt as "
	  "the entry's uid) with the key file,\nmade when missing.\n" },
	{ "account", "seal", registry_cmd_seal, 1, REGISTRY_CMD_TAKES_ACCT,
	  true, "account seal ID --secret-file F",
	  "For an LDAP directory (docs/REGISTRY.md): prints, as an LDIF line, "
	  "the secret\nsealed for the entry with mailroomAccountId ID "
	  "(mailroomSecret) with the key\nfile, made when missing.\n" },
};

#define REGISTRY_CMD_NVERBS						\
	(sizeof(registry_cmd_verbs) / sizeof(registry_cmd_verbs[0]))

/* ---------------------------------------------------------------- */
/* Shared by the subcommands                                        */
/* ---------------------------------------------------------------- */

static void
registry_cmd_usage(FILE *fp, const struct registry_cmd_verb *v)
{
	size_t i;

	if (v == NULL) {
		fprintf(fp, "usage: mailroom registry [options] OBJECT COMMAND "
		    "[arguments]\n\nThe users of the aggregating POP3 proxy "
		    "and their backend POP3 accounts\n(SPEC A1).  "
		    "Commands:\n\n");
		for (i = 0; i < REGISTRY_CMD_NVERBS; i++)
			fprintf(fp, "  mailroom registry %s\n",
			    registry_cmd_verbs[i].synopsis);
		fprintf(fp, "\nmailroom registry OBJECT COMMAND --help "
		    "describes each command.\n");
	} else {
		fprintf(fp, "usage: mailroom registry [options] %s\n\n%s",
		    v->synopsis, v->help);
	}
	fprintf(fp,
	    "\nOptions:\n"
	    "      --store FILE            the store (registry.store, else "
	    "store.path)\n"
	    "      --key-file FILE         the key file (registry.key_file; "
	    "default\n"
	    "                              /etc/mailroom/registry.key)\n"
	    "  -c, --config FILE           configuration file (INI)\n"
	    "  -o, --set SECTION.KEY=VALUE override any configuration key\n"
	    "  -h, --help                  this text\n\n"
	    "Secrets given as arguments (--password, --apop-secret, --secret) "
	    "show in\nps(1): --password-file, --apop-secret-file and "
	    "--secret-file read the first\nline of a file instead, or of "
	    "standard input for \"-\".\n\n"
	    "Exit status: 0 done; 64 bad usage (a bad port or TLS mode "
	    "included); 65\nrefused (the user exists, a value the registry "
	    "does not take); 66 no such\nuser, account, store or key file; "
	    "69 the LDAP directory cannot be used,\nor is read only; 74 I/O "
	    "error; 75 the store is locked\n(try again); 77 "
	    "permission denied; 78 bad configuration or key file\n"
	    "(readable by others, of the wrong size, or not the one the "
	    "registry was\nsealed with).\n");
}

/* registry_cmd_ex - the exit status for a registry code. */
static int
registry_cmd_ex(int code)
{
	switch (code) {
	case 0:
		return 0;
	case -ENOENT:
		return EX_NOINPUT;
	case -EEXIST:
	case -EINVAL:
		return EX_DATAERR;
	case -ENOKEY:
		return EX_CONFIG;
	case -EACCES:
		return EX_NOPERM;
	case -EBUSY:
		return EX_TEMPFAIL;
	case -ENOTSUP:
		return EX_UNAVAILABLE;
	default:
		return EX_IOERR;
	}
}

/* registry_cmd_fail - the registry's sentence as the message. */
static int
registry_cmd_fail(struct registry_cmd *rc, int code)
{
	mr_buf_reset(&rc->err);
	mr_buf_puts(&rc->err, registry_error(rc->reg));
	return registry_cmd_ex(code);
}

/*
 * registry_cmd_read_secret - the first line of file ("-": standard
 * input) into *value_r, without its line end.  0 or an exit status.
 */
static int
registry_cmd_read_secret(struct registry_cmd *rc, const char *what,
    const char *file, char **value_r)
{
	FILE *fp;
	char *line = NULL;
	size_t cap = 0, len;
	ssize_t n;
	int e;

	*value_r = NULL;
	fp = strcmp(file, "-") == 0 ? stdin : fopen(file, "re");
	if (fp == NULL) {
		e = errno;
		mr_buf_printf(&rc->err, "%s file %s: %s", what, file,
		    strerror(e));
		return e == ENOENT ? EX_NOINPUT : e == EACCES ? EX_NOPERM :
		    EX_IOERR;
	}
	n = getline(&line, &cap, fp);
	if (fp != stdin)
		fclose(fp);
	if (n < 0) {
		free(line);
		mr_buf_printf(&rc->err, "%s file %s is empty", what,
		    strcmp(file, "-") == 0 ? "(standard input)" : file);
		return EX_DATAERR;
	}
	len = (size_t)n;
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > REGISTRY_CMD_SECRET_MAX || memchr(line, '\0', len) != NULL) {
		OPENSSL_cleanse(line, cap);
		free(line);
		mr_buf_printf(&rc->err, "%s file %s: the first line is longer "
		    "than %d bytes or holds a NUL byte", what, file,
		    REGISTRY_CMD_SECRET_MAX);
		return EX_DATAERR;
	}
	*value_r = xmemdup(line, len);
	OPENSSL_cleanse(line, cap);
	free(line);
	return 0;
}

/*
 * registry_cmd_secrets - read the secrets given by file; each ends up
 * in value (NULL: not given).  0 or an exit status.
 */
static int
registry_cmd_secrets(struct registry_cmd *rc)
{
	static const char *const what[REGISTRY_CMD_NSECRETS] = {
		"password", "APOP secret", "secret",
	};
	struct registry_cmd_secret_src *s;
	bool stdin_used = false;
	int i, ex;

	for (i = 0; i < REGISTRY_CMD_NSECRETS; i++) {
		s = &rc->secrets[i];
		if (s->file != NULL && strcmp(s->file, "-") == 0) {
			if (stdin_used) {
				fprintf(stderr, "mailroom %s: only one secret "
				    "can come from standard input\n",
				    rc->prog);
				return EX_USAGE;
			}
			stdin_used = true;
		}
		if (s->file != NULL) {
			if ((ex = registry_cmd_read_secret(rc, what[i],
			    s->file, &s->value)) != 0)
				return ex;
		} else if (s->arg != NULL) {
			s->value = xstrdup(s->arg);
		}
	}
	return 0;
}

static void
registry_cmd_wipe(struct registry_cmd *rc)
{
	int i;

	for (i = 0; i < REGISTRY_CMD_NSECRETS; i++) {
		if (rc->secrets[i].value != NULL) {
			OPENSSL_cleanse(rc->secrets[i].value,
			    strlen(rc->secrets[i].value));
			free(rc->secrets[i].value);
			rc->secrets[i].value = NULL;
		}
	}
}

/*
 * registry_cmd_open - the configuration, then the registry.  create
 * (the add commands): make the store and, for a new registry, the key
 * file, said on standard error.
 */
static int
registry_cmd_open(struct registry_cmd *rc, bool create)
{
	const char *key_file;
	struct stat sb;
	bool had_key;
	int ex, code;

	ex = conf_cli_load(&rc->cfg, &rc->cl, rc->prog);
	if (ex != 0)
		return ex;
	rc->have_cfg = true;
	rc->store_path = rc->cfg.registry_store[0] != '\0' ?
	    rc->cfg.registry_store : rc->cfg.store_path;
	key_file = rc->cfg.registry_key_file;
	if (key_file[0] == '\0') {
		mr_buf_printf(&rc->err, "no key file: set registry.key_file "
		    "or give --key-file");
		return EX_CONFIG;
	}
	if (rc->cfg.registry_source == CONF_REG_LDAP) {
		/* Read only: the commands that change it get -ENOTSUP. */
		rc->reg = registry_open_ldap_conf(&rc->cfg, &rc->err);
		return rc->reg == NULL ? EX_UNAVAILABLE : 0;
	}
	had_key = lstat(key_file, &sb) == 0 || errno != ENOENT;
	rc->reg = registry_open_store(rc->store_path, key_file, create,
	    &rc->err, &code);
	if (rc->reg == NULL)
		return registry_cmd_ex(code);
	registry_tune(rc->reg, (unsigned)rc->cfg.registry_workers,
	    (unsigned)rc->cfg.registry_pbkdf2_iterations);
	if (!had_key)
		fprintf(stderr, "mailroom %s: made a new key file %s (mode "
		    "0600): keep it apart from the store and back it up; "
		    "without it the sealed secrets cannot be opened\n",
		    rc->prog, key_file);
	return 0;
}

/* registry_cmd_port - "1".."65535" to a port; 0 when it is not one. */
static unsigned
registry_cmd_port(const char *arg)
{
	unsigned long v;
	char *end;

	if (arg[0] < '0' || arg[0] > '9')
		return 0;
	errno = 0;
	v = strtoul(arg, &end, 10);
	if (*end != '\0' || errno != 0 || v < 1 || v > 65535)
		return 0;
	return (unsigned)v;
}

/* registry_cmd_option - one of the command's own options into rc. */
static int
registry_cmd_option(struct registry_cmd *rc, int c, const char *arg)
{
	switch (c) {
	case REGISTRY_CMD_OPT_STORE:
		conf_cli_set(&rc->cl, "registry.store", arg);
		return 0;
	case REGISTRY_CMD_OPT_KEY_FILE:
		conf_cli_set(&rc->cl, "registry.key_file", arg);
		return 0;
	case REGISTRY_CMD_OPT_PASSWORD:
		rc->secrets[REGISTRY_CMD_PASSWORD].arg = arg;
		return 0;
	case REGISTRY_CMD_OPT_PASSWORD_FILE:
		rc->secrets[REGISTRY_CMD_PASSWORD].file = arg;
		return 0;
	case REGISTRY_CMD_OPT_APOP:
		rc->secrets[REGISTRY_CMD_APOP].arg = arg;
		return 0;
	case REGISTRY_CMD_OPT_APOP_FILE:
		rc->secrets[REGISTRY_CMD_APOP].file = arg;
		return 0;
	case REGISTRY_CMD_OPT_SECRET:
		rc->secrets[REGISTRY_CMD_SECRET].arg = arg;
		return 0;
	case REGISTRY_CMD_OPT_SECRET_FILE:
		rc->secrets[REGISTRY_CMD_SECRET].file = arg;
		return 0;
	case REGISTRY_CMD_OPT_HOST:
		rc->host = arg;
		return 0;
	case REGISTRY_CMD_OPT_LOGIN:
		rc->login = arg;
		return 0;
	case REGISTRY_CMD_OPT_PORT:
		rc->port_arg = arg;
		return 0;
	case REGISTRY_CMD_OPT_TLS:
		rc->tls_arg = arg;
		return 0;
	}
	return EX_USAGE;
}

/* registry_cmd_values - --port and --tls, once the verb is known. */
static int
registry_cmd_values(struct registry_cmd *rc)
{
	if (rc->port_arg != NULL &&
	    (rc->port = registry_cmd_port(rc->port_arg)) == 0) {
		fprintf(stderr, "mailroom %s: --port \"%s\": not a port (1 to "
		    "65535)\n", rc->prog, rc->port_arg);
		return EX_USAGE;
	}
	if (rc->tls_arg != NULL &&
	    (rc->tls = reg_tls_parse(rc->tls_arg)) == -1) {
		fprintf(stderr, "mailroom %s: --tls \"%s\": not a TLS mode "
		    "(none, stls or pop3s)\n", rc->prog, rc->tls_arg);
		return EX_USAGE;
	}
	return 0;
}

/* registry_cmd_takes - which group option c belongs to (0: every verb). */
static int
registry_cmd_takes(int c)
{
	switch (c) {
	case REGISTRY_CMD_OPT_PASSWORD:
	case REGISTRY_CMD_OPT_PASSWORD_FILE:
	case REGISTRY_CMD_OPT_APOP:
	case REGISTRY_CMD_OPT_APOP_FILE:
		return REGISTRY_CMD_TAKES_USER;
	case REGISTRY_CMD_OPT_HOST:
	case REGISTRY_CMD_OPT_PORT:
	case REGISTRY_CMD_OPT_LOGIN:
	case REGISTRY_CMD_OPT_SECRET:
	case REGISTRY_CMD_OPT_SECRET_FILE:
	case REGISTRY_CMD_OPT_TLS:
		return REGISTRY_CMD_TAKES_ACCT;
	default:
		return 0;
	}
}

/*
 * registry_cmd_parse - options (anywhere on the line) and operands:
 * OBJECT COMMAND [NAME|ID].  *v_r is the verb.  Returns -1 after --help
 * (exit 0), else 0 or an exit status.
 */
static int
registry_cmd_parse(struct registry_cmd *rc, int argc, char **argv,
    const struct registry_cmd_verb **v_r, char *prog, size_t progsize)
{
	static const struct option longopts[] = {
		{ "store", required_argument, NULL, REGISTRY_CMD_OPT_STORE },
		{ "key-file", required_argument, NULL,
		  REGISTRY_CMD_OPT_KEY_FILE },
		{ "password", required_argument, NULL,
		  REGISTRY_CMD_OPT_PASSWORD },
		{ "password-file", required_argument, NULL,
		  REGISTRY_CMD_OPT_PASSWORD_FILE },
		{ "apop-secret", required_argument, NULL,
		  REGISTRY_CMD_OPT_APOP },
		{ "apop-secret-file", required_argument, NULL,
		  REGISTRY_CMD_OPT_APOP_FILE },
		{ "host", required_argument, NULL, REGISTRY_CMD_OPT_HOST },
		{ "port", required_argument, NULL, REGISTRY_CMD_OPT_PORT },
		{ "login", required_argument, NULL, REGISTRY_CMD_OPT_LOGIN },
		{ "secret", required_argument, NULL, REGISTRY_CMD_OPT_SECRET },
		{ "secret-file", required_argument, NULL,
		  REGISTRY_CMD_OPT_SECRET_FILE },
		{ "tls", required_argument, NULL, REGISTRY_CMD_OPT_TLS },
		CONF_CLI_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct registry_cmd_verb *v = NULL;
	int c, r, nops, takes = 0, i;
	bool help = false;
	char **ops;
	unsigned long long id;
	char *end;

	*v_r = NULL;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:o:h", longopts, NULL)) != -1) {
		if ((r = conf_cli_option(&rc->cl, c, optarg, rc->prog)) != 0) {
			if (r > 0)
				continue;
			return EX_USAGE;
		}
		if (c == 'h') {
			help = true;
			continue;
		}
		if (c == '?' || c == ':') {
			conf_cli_bad_option(rc->prog, argv);
			fprintf(stderr, "(see mailroom registry --help)\n");
			return EX_USAGE;
		}
		takes |= registry_cmd_takes(c);
		if ((r = registry_cmd_option(rc, c, optarg)) != 0)
			return r;
	}
	ops = argv + optind;
	nops = argc - optind;
	if (nops >= 2)
		for (i = 0; i < (int)REGISTRY_CMD_NVERBS; i++)
			if (strcmp(ops[0], registry_cmd_verbs[i].object) == 0 &&
			    strcmp(ops[1], registry_cmd_verbs[i].name) == 0)
				v = &registry_cmd_verbs[i];
	if (v == NULL && help) {
		registry_cmd_usage(stdout, NULL);
		return -1;
	}
	if (v == NULL) {
		if (nops == 0)
			fprintf(stderr, "mailroom %s: what? give an object and "
			    "a command, as \"user add NAME\"\n", rc->prog);
		else if (strcmp(ops[0], "user") != 0 &&
		    strcmp(ops[0], "account") != 0)
			fprintf(stderr, "mailroom %s: unknown object \"%s\" "
			    "(user or account)\n", rc->prog, ops[0]);
		else
			fprintf(stderr, "mailroom %s: unknown command "
			    "\"%s%s%s\"\n", rc->prog, ops[0], nops > 1 ?
			    " " : "", nops > 1 ? ops[1] : "");
		fprintf(stderr, "(see mailroom registry --help)\n");
		return EX_USAGE;
	}
	*v_r = v;
	snprintf(prog, progsize, "registry %s %s", v->object, v->name);
	rc->prog = prog;
	if (help) {
		registry_cmd_usage(stdout, v);
		return -1;
	}
	if ((takes & ~v->takes) != 0) {
		fprintf(stderr, "mailroom %s: %s options do not go with this "
		    "command (see mailroom registry %s %s --help)\n", rc->prog,
		    (takes & ~v->takes) == REGISTRY_CMD_TAKES_USER ?
		    "user (--password, --apop-secret)" :
		    "account (--host, --port, --login, --secret, --tls)",
		    v->object, v->name);
		return EX_USAGE;
	}
	if ((r = registry_cmd_values(rc)) != 0)
		return r;
	for (i = 0; i < REGISTRY_CMD_NSECRETS; i++)
		if (rc->secrets[i].arg != NULL && rc->secrets[i].file != NULL) {
			fprintf(stderr, "mailroom %s: give a secret as an "
			    "argument or as a file, not both\n", rc->prog);
			return EX_USAGE;
		}
	nops -= 2;
	if (nops > (v->nargs < 0 ? 1 : v->nargs) || (v->nargs > 0 &&
	    nops < v->nargs)) {
		if (nops > (v->nargs < 0 ? 1 : v->nargs))
			fprintf(stderr, "mailroom %s: unexpected argument "
			    "\"%s\"\n", rc->prog,
			    ops[2 + (v->nargs < 0 ? 1 : v->nargs)]);
		else
			fprintf(stderr, "mailroom %s: which %s? give its %s\n",
			    rc->prog, v->by_id ? "account" : "user",
			    v->by_id ? "id" : "name");
		fprintf(stderr, "usage: mailroom registry %s\n", v->synopsis);
		return EX_USAGE;
	}
	if (nops == 0)
		return 0;
	rc->operand = ops[2];
	if (v->by_id) {
		errno = 0;
		id = strtoull(rc->operand, &end, 10);
		if (rc->operand[0] < '0' || rc->operand[0] > '9' ||
		    *end != '\0' || errno != 0 || id < 1 || id > INT64_MAX) {
			fprintf(stderr, "mailroom %s: \"%s\" is not an account "
			    "id (account list shows them)\n", rc->prog,
			    rc->operand);
			return EX_USAGE;
		}
		rc->id = (int64_t)id;
	} else if (!registry_valid_name(rc->operand)) {
		fprintf(stderr, "mailroom %s: user name \"%s\" refused: 1 to "
		    "255 printable characters without spaces\n", rc->prog,
		    rc->operand);
		return EX_USAGE;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* The subcommands                                                  */
/* ---------------------------------------------------------------- */

static int
registry_cmd_user_add(struct registry_cmd *rc)
{
	const char *pw, *apop;
	int ex, code;

	if (rc->secrets[REGISTRY_CMD_PASSWORD].arg == NULL &&
	    rc->secrets[REGISTRY_CMD_PASSWORD].file == NULL) {
		fprintf(stderr, "mailroom %s: a password is required: give "
		    "--password or --password-file\n", rc->prog);
		return EX_USAGE;
	}
	if ((ex = registry_cmd_secrets(rc)) != 0 ||
	    (ex = registry_cmd_open(rc, true)) != 0)
		return ex;
	pw = rc->secrets[REGISTRY_CMD_PASSWORD].value;
	apop = rc->secrets[REGISTRY_CMD_APOP].value;
	if ((code = registry_user_add(rc->reg, rc->operand, pw, apop)) != 0)
		return registry_cmd_fail(rc, code);
	printf("user %s added%s\n", rc->operand, apop != NULL &&
	    *apop != '\0' ? " (with an APOP secret)" : "");
	return 0;
}

static int
registry_cmd_user_change(struct registry_cmd *rc)
{
	int ex, code;

	if (rc->secrets[REGISTRY_CMD_PASSWORD].arg == NULL &&
	    rc->secrets[REGISTRY_CMD_PASSWORD].file == NULL &&
	    rc->secrets[REGISTRY_CMD_APOP].arg == NULL &&
	    rc->secrets[REGISTRY_CMD_APOP].file == NULL) {
		fprintf(stderr, "mailroom %s: nothing to change: give "
		    "--password or --apop-secret (or their -file forms)\n",
		    rc->prog);
		return EX_USAGE;
	}
	if ((ex = registry_cmd_secrets(rc)) != 0 ||
	    (ex = registry_cmd_open(rc, false)) != 0)
		return ex;
	code = registry_user_change(rc->reg, rc->operand,
	    rc->secrets[REGISTRY_CMD_PASSWORD].value,
	    rc->secrets[REGISTRY_CMD_APOP].value);
	if (code != 0)
		return registry_cmd_fail(rc, code);
	printf("user %s changed\n", rc->operand);
	return 0;
}

static int
registry_cmd_user_remove(struct registry_cmd *rc)
{
	int ex, code;

	if ((ex = registry_cmd_open(rc, false)) != 0)
		return ex;
	if ((code = registry_user_remove(rc->reg, rc->operand)) != 0)
		return registry_cmd_fail(rc, code);
	printf("user %s removed, with their backend accounts\n", rc->operand);
	return 0;
}

static int
registry_cmd_user_row(void *arg, const struct reg_user *u)
{
	(void)arg;
	printf("%-24s %-4s %zu\n", u->name, u->apop_secret != NULL ? "yes" :
	    "no", u->naccounts);
	return 0;
}

static int
registry_cmd_user_list(struct registry_cmd *rc)
{
	int ex, code;

	if ((ex = registry_cmd_open(rc, false)) != 0)
		return ex;
	printf("%-24s %-4s %s\n", "NAME", "APOP", "ACCOUNTS");
	if ((code = registry_user_list(rc->reg, registry_cmd_user_row,
	    NULL)) != 0)
		return registry_cmd_fail(rc, code);
	return 0;
}

static int
registry_cmd_account_add(struct registry_cmd *rc)
{
	struct reg_account a;
	int ex, code;

	if (rc->host == NULL || rc->port == 0 || rc->login == NULL ||
	    (rc->secrets[REGISTRY_CMD_SECRET].arg == NULL &&
	    rc->secrets[REGISTRY_CMD_SECRET].file == NULL)) {
		fprintf(stderr, "mailroom %s: --host, --port, --login and "
		    "--secret (or --secret-file) are required\n", rc->prog);
		return EX_USAGE;
	}
	if ((ex = registry_cmd_secrets(rc)) != 0 ||
	    (ex = registry_cmd_open(rc, false)) != 0)
		return ex;
	memset(&a, 0, sizeof(a));
	a.user = (char *)rc->operand;
	a.host = (char *)rc->host;
	a.port = rc->port;
	a.tls = rc->tls == -1 ? REG_TLS_NONE : rc->tls;
	a.login = (char *)rc->login;
	a.secret = rc->secrets[REGISTRY_CMD_SECRET].value;
	if ((code = registry_account_add(rc->reg, &a)) != 0)
		return registry_cmd_fail(rc, code);
	printf("%" PRId64 "\n", a.id);
	return 0;
}

static int
registry_cmd_account_change(struct registry_cmd *rc)
{
	struct reg_account a;
	int ex, code;

	if (rc->host == NULL && rc->port == 0 && rc->login == NULL &&
	    rc->tls == -1 && rc->secrets[REGISTRY_CMD_SECRET].arg == NULL &&
	    rc->secrets[REGISTRY_CMD_SECRET].file == NULL) {
		fprintf(stderr, "mailroom %s: nothing to change: give --host, "
		    "--port, --login, --secret or --tls\n", rc->prog);
		return EX_USAGE;
	}
	if ((ex = registry_cmd_secrets(rc)) != 0 ||
	    (ex = registry_cmd_open(rc, false)) != 0)
		return ex;
	memset(&a, 0, sizeof(a));
	a.id = rc->id;
	a.host = (char *)rc->host;
	a.port = rc->port;
	a.tls = rc->tls;
	a.login = (char *)rc->login;
	a.secret = rc->secrets[REGISTRY_CMD_SECRET].value;
	if ((code = registry_account_change(rc->reg, &a)) != 0)
		return registry_cmd_fail(rc, code);
	printf("account %" PRId64 " changed\n", rc->id);
	return 0;
}

static int
registry_cmd_account_remove(struct registry_cmd *rc)
{
	int ex, code;

	if ((ex = registry_cmd_open(rc, false)) != 0)
		return ex;
	if ((code = registry_account_remove(rc->reg, rc->id)) != 0)
		return registry_cmd_fail(rc, code);
	printf("account %" PRId64 " removed\n", rc->id);
	return 0;
}

static int
registry_cmd_account_row(void *arg, const struct reg_user *u)
{
	struct registry_cmd *rc = arg;
	const struct reg_account *a;
	size_t i;

	if (rc->operand != NULL && strcmp(rc->operand, u->name) != 0)
		return 0;
	rc->found = true;
	for (i = 0; i < u->naccounts; i++) {
		a = &u->accounts[i];
		printf("%-6" PRId64 " %-16s %-28s %-5u %-5s %s\n", a->id,
		    u->name, a->host, a->port, reg_tls_name(a->tls), a->login);
	}
	return 0;
}

static int
registry_cmd_account_list(struct registry_cmd *rc)
{
	int ex, code;

	if ((ex = registry_cmd_open(rc, false)) != 0)
		return ex;
	printf("%-6s %-16s %-28s %-5s %-5s %s\n", "ID", "USER", "HOST", "PORT",
	    "TLS", "LOGIN");
	if ((code = registry_user_list(rc->reg, registry_cmd_account_row,
	    rc)) != 0)
		return registry_cmd_fail(rc, code);
	if (rc->operand != NULL && !rc->found) {
		mr_buf_printf(&rc->err, "no user %s", rc->operand);
		return EX_NOINPUT;
	}
	return 0;
}

/*
 * registry_cmd_seal - user seal and account seal: the values of an LDAP
 * entry, made as the registry opens them (AADs "apop:NAME" and
 * "account:ID", registry_int.h), printed as LDIF lines.
 */
static int
registry_cmd_seal(struct registry_cmd *rc)
{
	static const char *const attr[3] = {
		"mailroomVerifier", "mailroomApopSecret", "mailroomSecret",
	};
	const char *in[3];
	struct mr_buf aad = MR_BUF_INIT;
	struct seal_key *k;
	char *out[3] = { NULL, NULL, NULL };
	bool account = rc->id != 0, made = false;
	int ex, code, i;

	if ((ex = registry_cmd_secrets(rc)) != 0)
		return ex;
	in[0] = rc->secrets[REGISTRY_CMD_PASSWORD].value;
	in[1] = rc->secrets[REGISTRY_CMD_APOP].value;
	in[2] = rc->secrets[REGISTRY_CMD_SECRET].value;
	if (rc->host != NULL || rc->port != 0 || rc->login != NULL ||
	    rc->tls != -1 || (account ? in[2] == NULL : in[0] == NULL &&
	    in[1] == NULL)) {
		fprintf(stderr, "mailroom %s: give only what to seal: "
		    "--secret-file (account), --password-file or "
		    "--apop-secret-file (user)\n", rc->prog);
		return EX_USAGE;
	}
	for (i = 0; i < 3; i++)
		if (in[i] != NULL && in[i][0] == '\0') {
			mr_buf_printf(&rc->err, "an empty secret for %s",
			    attr[i]);
			return EX_DATAERR;
		}
	if ((ex = conf_cli_load(&rc->cfg, &rc->cl, rc->prog)) != 0)
		return ex;
	rc->have_cfg = true;
	k = seal_key_load(rc->cfg.registry_key_file, true, &made, &rc->err,
	    &code);
	if (k == NULL)
		return code == -EINVAL ? EX_CONFIG : registry_cmd_ex(code);
	if (made)
		fprintf(stderr, "mailroom %s: made a new key file %s (mode "
		    "0600): mailroom needs it to open what the directory "
		    "holds; keep it apart and back it up\n", rc->prog,
		    rc->cfg.registry_key_file);
	if (account)
		mr_buf_printf(&aad, "account:%" PRId64, rc->id);
	else
		mr_buf_printf(&aad, "apop:%s", rc->operand);
	if (in[0] != NULL)
		out[0] = reg_verifier_make(in[0], strlen(in[0]),
		    (unsigned)rc->cfg.registry_pbkdf2_iterations);
	for (i = 1; i < 3; i++)
		if (in[i] != NULL)
			out[i] = seal_seal(k, mr_buf_cstr(&aad), in[i],
			    strlen(in[i]));
	seal_key_free(&k);
	mr_buf_release(&aad);
	for (i = 0; i < 3; i++)
		if (in[i] != NULL && out[i] == NULL)
			ex = EX_SOFTWARE;
	if (ex != 0)
		mr_buf_puts(&rc->err, "cannot seal (no randomness?)");
	for (i = 0; i < 3; i++) {
		if (ex == 0 && out[i] != NULL)
			printf("%s: %s\n", attr[i], out[i]);
		free(out[i]);
	}
	return ex;
}

/* ---------------------------------------------------------------- */
/* Dispatch                                                         */
/* ---------------------------------------------------------------- */

int
registry_cmd(int argc, char **argv)
{
	const struct registry_cmd_verb *v = NULL;
	struct registry_cmd rc;
	char prog[64];
	int ex;

	if (argc < 2) {
		registry_cmd_usage(stderr, NULL);
		return EX_USAGE;
	}
	memset(&rc, 0, sizeof(rc));
	rc.prog = "registry";
	rc.tls = -1;
	ex = registry_cmd_parse(&rc, argc, argv, &v, prog, sizeof(prog));
	if (ex == 0)
		ex = v->run(&rc);
	else if (ex < 0)
		ex = 0;
	if (ex != 0 && rc.err.len)
		fprintf(stderr, "mailroom %s: %s\n", rc.prog,
		    mr_buf_cstr(&rc.err));
	registry_cmd_wipe(&rc);
	registry_close(&rc.reg);
	if (rc.have_cfg)
		conf_release(&rc.cfg);
	conf_cli_release(&rc.cl);
	mr_buf_release(&rc.err);
	return ex;
}
