/*
 * campaign_cmd.c - "mailroom campaign": the campaigns of the store, for
 * operators (SPEC D12): add one for the daemon to send, list them, show
 * one, pause, resume or cancel it.
 *
 * A thin client of the store.  It changes what should happen to a
 * campaign (its state, its start time) inside one write transaction, and
 * never its lease: only senders take and give back a lease, and a running
 * sender notices a pause or a cancel at its next snapshot.  "add" checks
 * the inputs (files, header row, placeholders, envelope sender) before
 * anything is recorded, so that the operator hears of a mistake at once
 * and not when the daemon starts the campaign, from another directory:
 * hence every path is recorded absolute.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "conf/conf.h"
#include "conf/conf_cli.h"
#include "core/mr_buf.h"
#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/xalloc.h"
#include "delivery/cstore.h"
#include "delivery/list.h"
#include "delivery/template.h"
#include "dns/route.h"
#include "smtp/addr.h"
#include "store/store.h"

#define CAMPAIGN_CMD_NAME_MAX	200

/* Long options without a short form. */
enum {
	CAMPAIGN_CMD_OPT_STORE = 256,
	CAMPAIGN_CMD_OPT_AT,
	CAMPAIGN_CMD_OPT_ACCOUNT,
	CAMPAIGN_CMD_OPT_POOL,
	CAMPAIGN_CMD_OPT_ROUTE,
	CAMPAIGN_CMD_OPT_RESOLVER,
	CAMPAIGN_CMD_OPT_ACCOUNTING,
	CAMPAIGN_CMD_OPT_ACCT_FORMAT,
	CAMPAIGN_CMD_OPT_REJECT,
	CAMPAIGN_CMD_OPT_FORENSICS,
	CAMPAIGN_CMD_OPT_FROM,
};

/* One run of a subcommand: what it owns, released by campaign_cmd(). */
struct campaign_cmd {
	const char		*prog;		/* "campaign add" */
	struct conf_cli		 cl;
	struct mr_config	 cfg;
	bool			 have_cfg;
	struct store		*store;
	struct mr_buf		 err;		/* why it failed */
};

struct campaign_cmd_verb {
	const char	*name;
	int		(*run)(struct campaign_cmd *, int, char **);
	const char	*synopsis;
	const char	*help;
};

/* A change of state, decided inside the write transaction. */
typedef int campaign_cmd_decide_fn(struct campaign_cmd *cc,
    struct store_campaign *c, int64_t now, bool *release_quota_r);

/* A row of "campaign list": copies of what it prints. */
struct campaign_cmd_row {
	char	*id;
	char	*name;
	char	*stage;
	char	*state;
	char	*start;
	char	*progress;
	char	*owner;
};

struct campaign_cmd_rows {
	struct campaign_cmd_row	*v;
	size_t			 n;
	int64_t			 now;
};

static int campaign_cmd_add(struct campaign_cmd *cc, int argc, char **argv);
static int campaign_cmd_list(struct campaign_cmd *cc, int argc, char **argv);
static int campaign_cmd_show(struct campaign_cmd *cc, int argc, char **argv);
static int campaign_cmd_pause(struct campaign_cmd *cc, int argc,
    char **argv);
static int campaign_cmd_resume(struct campaign_cmd *cc, int argc,
    char **argv);
static int campaign_cmd_cancel(struct campaign_cmd *cc, int argc,
    char **argv);
static char *campaign_cmd_strf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static const struct campaign_cmd_verb campaign_cmd_verbs[] = {
	{ "add", campaign_cmd_add,
	  "add --template FILE --list FILE [--name NAME] [--at TIME] "
	  "[options]",
	  "Records a campaign for the daemon to send at TIME (default: now), "
	  "after\nchecking its inputs: the template and the list can be "
	  "read, the list has\na header row with an \"email\" column, every "
	  "placeholder of the template\nnames a column, and there is an "
	  "envelope sender.  Paths are recorded\nabsolute; so are the "
	  "sending settings given here (routes, resolver,\nfiles), which "
	  "the sender uses when it starts.  Prints\n\"campaign NAME (id N) "
	  "scheduled for TIME\".\n\n"
	  "  -t, --template FILE         message template\n"
	  "  -l, --list FILE             recipient list (CSV)\n"
	  "  -n, --name NAME             the campaign's name (default: "
	  "campaign-YYYYmmdd-HHMMSS,\n"
	  "                              UTC); not all digits, no spaces\n"
	  "      --at TIME               now, +DURATION (+90s, +10m, +2h, "
	  "+1d),\n"
	  "                              2026-11-23T10:00:00Z (UTC) or "
	  "@EPOCH\n"
	  "      --account NAME          count it against this sending "
	  "account's allowance\n"
	  "      --pool NAME             send from the source addresses of "
	  "[pool NAME]\n"
	  "      --route DOMAIN=HOST:PORT  static route (repeatable; * is "
	  "every domain)\n"
	  "      --resolver HOST:PORT    DNS server to ask (repeatable)\n"
	  "      --accounting FILE       append one record per recipient "
	  "outcome\n"
	  "      --accounting-format csv|json\n"
	  "      --reject-file FILE      rejected rows (default: LIST."
	  "rejects.csv)\n"
	  "      --forensics-dir DIR     keep messages refused with 5xx "
	  "here\n"
	  "      --from ADDRESS          envelope sender (default: the "
	  "template's From)\n" },
	{ "list", campaign_cmd_list, "list [options]",
	  "One line per campaign: id, name, stage, state, start time (UTC), "
	  "delivered/\nbounced/recipients as of the last snapshot, and the "
	  "sender holding it.\n" },
	{ "show", campaign_cmd_show, "show NAME|ID [options]",
	  "Every field of one campaign as \"key: value\" lines (times in "
	  "UTC, \"-\" for\nwhat is not known yet), the recorded settings as "
	  "\"option: key=value\" lines\nand, once it is complete, the "
	  "delivery summary, indented, after \"summary:\"; while it\n"
	  "runs, the performance governor's last decision and the "
	  "destinations'\nlimits at the last snapshot, after \"status:\".\n" },
	{ "pause", campaign_cmd_pause, "pause NAME|ID [options]",
	  "Stops a scheduled or running campaign, keeping its progress: a "
	  "running\nsender stops at its next snapshot, a scheduled one is not "
	  "started.\n" },
	{ "resume", campaign_cmd_resume, "resume NAME|ID [options]",
	  "Schedules a paused campaign again, to start now.\n" },
	{ "cancel", campaign_cmd_cancel, "cancel NAME|ID [options]",
	  "Stops a campaign for good (a complete one cannot be cancelled) "
	  "and gives\nback what it had reserved of its account's allowance "
	  "once no sender holds\nit: cancel it again after its sender has "
	  "stopped to give back what that\nsender left.\n" },
};

#define CAMPAIGN_CMD_NVERBS						\
	(sizeof(campaign_cmd_verbs) / sizeof(campaign_cmd_verbs[0]))

/* ---------------------------------------------------------------- */
/* Shared by the subcommands                                        */
/* ---------------------------------------------------------------- */

static void
campaign_cmd_usage(FILE *fp, const struct campaign_cmd_verb *v)
{
	size_t i;

	if (v == NULL) {
		fprintf(fp, "usage: mailroom campaign COMMAND [options]\n\n"
		    "The campaigns of the store (SPEC D12), sent by "
		    "mailroom daemon or by\nmailroom send --resume NAME.  "
		    "Commands:\n\n");
		for (i = 0; i < CAMPAIGN_CMD_NVERBS; i++)
			fprintf(fp, "  mailroom campaign %s\n",
			    campaign_cmd_verbs[i].synopsis);
		fprintf(fp, "\nmailroom campaign COMMAND --help describes "
		    "each command.\n");
	} else {
		fprintf(fp, "usage: mailroom campaign %s\n\n%s", v->synopsis,
		    v->help);
		if (v->run != campaign_cmd_add)
			fputc('\n', fp);
	}
	fprintf(fp, "%s"
	    "      --store FILE            the store (store.path; default "
	    "/var/lib/mailroom/mailroom.db)\n"
	    "  -c, --config FILE           configuration file (INI)\n"
	    "  -o, --set SECTION.KEY=VALUE override any configuration key\n"
	    "  -h, --help                  this text\n\n"
	    "Exit status: 0 done; 64 bad usage; 65 refused (wrong state, bad "
	    "input files,\nname taken); 66 no such campaign, file or store; "
	    "75 the store is locked\nby another process (try again); 77 "
	    "permission denied; 78 bad configuration.\n",
	    v == NULL ? "\nOptions of every command:\n" : "");
}

/*
 * campaign_cmd_common - the options every subcommand takes: 1 when opt
 * was one of them, 0 when not, -1 (after a message) when it was wrong.
 */
static int
campaign_cmd_common(struct campaign_cmd *cc, int opt, char *arg)
{
	int r;

	if ((r = conf_cli_option(&cc->cl, opt, arg, cc->prog)) != 0)
		return r;
	if (opt == CAMPAIGN_CMD_OPT_STORE) {
		conf_cli_set(&cc->cl, "store.path", arg);
		return 1;
	}
	return 0;
}

/* campaign_cmd_fail - the store's sentence as the message; its status. */
static int
campaign_cmd_fail(struct campaign_cmd *cc, int code)
{
	mr_buf_reset(&cc->err);
	mr_buf_puts(&cc->err, store_error(cc->store));
	return cstore_ex(code, EX_IOERR);
}

/* campaign_cmd_open - the configuration, then the store. */
static int
campaign_cmd_open(struct campaign_cmd *cc, bool create)
{
	int ex;

	ex = conf_cli_load(&cc->cfg, &cc->cl, cc->prog);
	if (ex != 0)
		return ex;
	cc->have_cfg = true;
	cc->store = cstore_open(&cc->cfg, create, &cc->err, &ex);
	return cc->store == NULL ? ex : 0;
}

/* campaign_cmd_leased - does a sender hold c's lease right now? */
static bool
campaign_cmd_leased(const struct store_campaign *c, int64_t now)
{
	return c->owner != NULL && *c->owner != '\0' &&
	    c->lease_until >= now;
}

static bool
campaign_cmd_complete(const struct store_campaign *c)
{
	return c->stage == STORE_STAGE_COMPLETE ||
	    c->state == STORE_STATE_DONE;
}

/*
 * campaign_cmd_simple_args - the options of a subcommand that takes only
 * the common ones and nargs operands (into *args_r).  Returns -1 after
 * --help (exit 0), else 0 or an exit status.
 */
static int
campaign_cmd_simple_args(struct campaign_cmd *cc,
    const struct campaign_cmd_verb *v, int argc, char **argv, size_t nargs,
    char ***args_r)
{
	static const struct option longopts[] = {
		{ "store", required_argument, NULL, CAMPAIGN_CMD_OPT_STORE },
		CONF_CLI_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:o:h", longopts, NULL)) != -1) {
		if ((r = campaign_cmd_common(cc, c, optarg)) != 0) {
			if (r > 0)
				continue;
			return EX_USAGE;
		}
		if (c == 'h') {
			campaign_cmd_usage(stdout, v);
			return -1;
		}
		conf_cli_bad_option(cc->prog, argv);
		fprintf(stderr, "(see mailroom campaign %s --help)\n",
		    v->name);
		return EX_USAGE;
	}
	if ((size_t)(argc - optind) != nargs) {
		if (argc - optind > (int)nargs)
			fprintf(stderr, "mailroom %s: unexpected argument "
			    "\"%s\"\n", cc->prog, argv[optind + (int)nargs]);
		else
			fprintf(stderr, "mailroom %s: which campaign? give "
			    "its name or id\n", cc->prog);
		fprintf(stderr, "usage: mailroom campaign %s\n", v->synopsis);
		return EX_USAGE;
	}
	*args_r = argv + optind;
	return 0;
}

static const struct campaign_cmd_verb *
campaign_cmd_verb_of(int (*run)(struct campaign_cmd *, int, char **))
{
	size_t i;

	for (i = 0; i < CAMPAIGN_CMD_NVERBS; i++)
		if (campaign_cmd_verbs[i].run == run)
			return &campaign_cmd_verbs[i];
	return NULL;
}

/* ---------------------------------------------------------------- */
/* add                                                              */
/* ---------------------------------------------------------------- */

/*
 * campaign_cmd_parse_time - TIME of --at into unix seconds: "now",
 * "+DURATION", "YYYY-MM-DDTHH:MM:SSZ" (or "+00:00" for "Z") and "@EPOCH".
 * Returns 0, or -1 when it is none of them.
 */
static int
campaign_cmd_parse_time(const char *s, int64_t now, int64_t *t_r)
{
	static const int width[6] = { 4, 2, 2, 2, 2, 2 };
	static const char sep[6] = { '-', '-', 'T', ':', ':', '\0' };
	long long ms, v;
	int f[6], i, k;
	struct tm tm;
	time_t t;
	char *end;

	if (strcmp(s, "now") == 0) {
		*t_r = now;
		return 0;
	}
	if (s[0] == '+') {
		if (s[1] < '0' || s[1] > '9' ||
		    conf_parse_duration(s + 1, &ms) != 0)
			return -1;
		*t_r = now + (int64_t)((ms + 999) / 1000);
		return 0;
	}
	if (s[0] == '@') {
		if (!store_all_digits(s + 1))
			return -1;
		errno = 0;
		v = strtoll(s + 1, &end, 10);
		if (errno != 0)
			return -1;
		*t_r = (int64_t)v;
		return 0;
	}
	/* ISO 8601, UTC, to the second. */
	for (i = 0; i < 6; i++) {
		f[i] = 0;
		for (k = 0; k < width[i]; k++, s++) {
			if (*s < '0' || *s > '9')
				return -1;
			f[i] = f[i] * 10 + (*s - '0');
		}
		if (sep[i] != '\0') {
			if (*s != sep[i] && !(sep[i] == 'T' && *s == 't'))
				return -1;
			s++;
		}
	}
	if (strcmp(s, "Z") != 0 && strcmp(s, "z") != 0 &&
	    strcmp(s, "+00:00") != 0)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = f[0] - 1900;
	tm.tm_mon = f[1] - 1;
	tm.tm_mday = f[2];
	tm.tm_hour = f[3];
	tm.tm_min = f[4];
	tm.tm_sec = f[5];
	t = timegm(&tm);
	/* timegm() normalises 2026-02-30: refuse what moved. */
	if (t == (time_t)-1 || tm.tm_year != f[0] - 1900 ||
	    tm.tm_mon != f[1] - 1 || tm.tm_mday != f[2] ||
	    tm.tm_hour != f[3] || tm.tm_min != f[4] || tm.tm_sec != f[5])
		return -1;
	*t_r = (int64_t)t;
	return 0;
}

/* campaign_cmd_check_name - NULL when name may name a campaign. */
static const char *
campaign_cmd_check_name(const char *name)
{
	const unsigned char *p;

	if (*name == '\0')
		return "it is empty";
	if (strlen(name) > CAMPAIGN_CMD_NAME_MAX)
		return "it is longer than 200 bytes";
	if (store_all_digits(name))
		return "it is all digits, which reads as a campaign id";
	for (p = (const unsigned char *)name; *p != '\0'; p++)
		if (*p <= ' ' || *p == 0x7f)
			return "it holds a space or a control character";
	return NULL;
}

/*
 * campaign_cmd_real - the canonical absolute path of an input file
 * (owned) in *abs_r; 0 or EX_NOINPUT with a message.
 */
static int
campaign_cmd_real(struct campaign_cmd *cc, const char *what,
    const char *path, char **abs_r)
{
	*abs_r = realpath(path, NULL);
	if (*abs_r != NULL)
		return 0;
	mr_buf_printf(&cc->err, "cannot open %s %s: %s", what, path,
	    mr_strerror(-errno));
	return EX_NOINPUT;
}

/* campaign_cmd_read - the whole template file; 0 or an exit status. */
static int
campaign_cmd_read(struct campaign_cmd *cc, const char *path, size_t max,
    char **data_r, size_t *len_r)
{
	struct stat st;
	size_t off = 0;
	ssize_t n;
	int fd;

	*data_r = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		mr_buf_printf(&cc->err, "cannot open template %s: %s", path,
		    mr_strerror(-errno));
		return EX_NOINPUT;
	}
	if (fstat(fd, &st) != 0) {
		mr_buf_printf(&cc->err, "cannot read template %s: %s", path,
		    mr_strerror(-errno));
		close(fd);
		return EX_NOINPUT;
	}
	if (!S_ISREG(st.st_mode)) {
		mr_buf_printf(&cc->err, "cannot read template %s: %s", path,
		    S_ISDIR(st.st_mode) ? "it is a directory" :
		    "not a regular file");
		close(fd);
		return EX_NOINPUT;
	}
	if ((uint64_t)st.st_size > (uint64_t)max) {
		mr_buf_printf(&cc->err, "template %s is larger than "
		    "send.max_message_size (%zu bytes)", path, max);
		close(fd);
		return EX_DATAERR;
	}
	*data_r = xmalloc((size_t)st.st_size + 1);
	while (off < (size_t)st.st_size) {
		n = read(fd, *data_r + off, (size_t)st.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			mr_buf_printf(&cc->err, "cannot read template %s: %s",
			    path, n < 0 ? mr_strerror(-errno) :
			    "it shrank while being read");
			close(fd);
			free(*data_r);
			*data_r = NULL;
			return EX_NOINPUT;
		}
		off += (size_t)n;
	}
	close(fd);
	(*data_r)[off] = '\0';
	*len_r = off;
	return 0;
}

/*
 * campaign_cmd_check_inputs - what the sender would refuse when it
 * starts: the list's header row, the template against its columns, the
 * envelope sender.  The rows are not read (that is the sender's job).
 */
static int
campaign_cmd_check_inputs(struct campaign_cmd *cc, const char *tpath,
    const char *lpath)
{
	const struct mr_config *cfg = &cc->cfg;
	struct mr_buf terr = MR_BUF_INIT, warn = MR_BUF_INIT;
	struct list *l;
	struct tmpl *t = NULL;
	const char *from, *why, *p, *e;
	char *text = NULL;
	size_t len = 0, at;
	int code, ex;

	l = list_open(lpath, (size_t)cfg->send_max_row_size, &cc->err, &code);
	if (l == NULL)
		return code < 0 && code > -4096 ? EX_NOINPUT : EX_DATAERR;
	ex = campaign_cmd_read(cc, tpath, (size_t)cfg->send_max_message_size,
	    &text, &len);
	if (ex == 0) {
		t = tmpl_compile(text, len, list_columns(l), list_ncolumns(l),
		    &terr, &warn);
		if (t == NULL) {
			mr_buf_printf(&cc->err, "template %s (with the columns "
			    "of list %s): %s", tpath, lpath,
			    mr_buf_cstr(&terr));
			ex = EX_DATAERR;
		}
	}
	for (p = mr_buf_cstr(&warn); *p != '\0'; p = *e ? e + 1 : e) {
		e = strchr(p, '\n');
		if (e == NULL)
			e = p + strlen(p);
		fprintf(stderr, "mailroom %s: warning: %.*s\n", cc->prog,
		    (int)(e - p), p);
	}
	if (ex == 0) {
		from = *cfg->send_mail_from ? cfg->send_mail_from :
		    tmpl_from_address(t);
		if (from == NULL) {
			mr_buf_printf(&cc->err, "no envelope sender: the From "
			    "header of template %s holds a placeholder or "
			    "several addresses; give --from", tpath);
			ex = EX_DATAERR;
		} else if ((why = smtp_addr_check(from, strlen(from),
		    &at)) != NULL) {
			mr_buf_printf(&cc->err, "envelope sender \"%s\": %s",
			    from, why);
			ex = EX_DATAERR;
		}
	}
	tmpl_free(&t);
	list_free(&l);
	free(text);
	mr_buf_release(&terr);
	mr_buf_release(&warn);
	return ex;
}

/* campaign_cmd_check_routes - the static routes must parse. */
static int
campaign_cmd_check_routes(struct campaign_cmd *cc)
{
	struct route_table *t;

	t = route_table_new(&cc->cfg.dns_route, (unsigned)cc->cfg.smtp_port,
	    &cc->err);
	if (t == NULL)
		return EX_CONFIG;
	route_table_free(&t);
	return 0;
}

/* campaign_cmd_check_account - the account named must exist. */
static int
campaign_cmd_check_account(struct campaign_cmd *cc, const char *account)
{
	struct store_account a;
	int code;

	code = cc->store->ops->account_get(cc->store, account, &a);
	if (code == 0) {
		store_account_release(&a);
		return 0;
	}
	if (code != -ENOENT)
		return campaign_cmd_fail(cc, code);
	mr_buf_printf(&cc->err, "no account %s in store %s (add it with "
	    "mailroom account add %s --allowance N --period DURATION)",
	    account, cc->cfg.store_path, account);
	return EX_NOINPUT;
}

static int
campaign_cmd_add(struct campaign_cmd *cc, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "template", required_argument, NULL, 't' },
		{ "list", required_argument, NULL, 'l' },
		{ "name", required_argument, NULL, 'n' },
		{ "at", required_argument, NULL, CAMPAIGN_CMD_OPT_AT },
		{ "account", required_argument, NULL,
		  CAMPAIGN_CMD_OPT_ACCOUNT },
		{ "pool", required_argument, NULL, CAMPAIGN_CMD_OPT_POOL },
		{ "route", required_argument, NULL, CAMPAIGN_CMD_OPT_ROUTE },
		{ "resolver", required_argument, NULL,
		  CAMPAIGN_CMD_OPT_RESOLVER },
		{ "accounting", required_argument, NULL,
		  CAMPAIGN_CMD_OPT_ACCOUNTING },
		{ "accounting-format", required_argument, NULL,
		  CAMPAIGN_CMD_OPT_ACCT_FORMAT },
		{ "reject-file", required_argument, NULL,
		  CAMPAIGN_CMD_OPT_REJECT },
		{ "forensics-dir", required_argument, NULL,
		  CAMPAIGN_CMD_OPT_FORENSICS },
		{ "from", required_argument, NULL, CAMPAIGN_CMD_OPT_FROM },
		{ "store", required_argument, NULL, CAMPAIGN_CMD_OPT_STORE },
		CONF_CLI_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct campaign_cmd_verb *v =
	    campaign_cmd_verb_of(campaign_cmd_add);
	const char *tpath = NULL, *lpath = NULL, *name = NULL, *at = NULL;
	const char *why;
	struct store_campaign rec;
	char defname[64], when[32], *tabs = NULL, *labs = NULL;
	int64_t now = (int64_t)time(NULL), start;
	int c, r, ex = 0, code;
	time_t tnow = (time_t)now;
	struct tm tm;

	memset(&rec, 0, sizeof(rec));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "t:l:n:c:o:h", longopts,
	    NULL)) != -1) {
		if ((r = campaign_cmd_common(cc, c, optarg)) != 0) {
			if (r > 0)
				continue;
			return EX_USAGE;
		}
		switch (c) {
		case 't':
			tpath = optarg;
			break;
		case 'l':
			lpath = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case CAMPAIGN_CMD_OPT_AT:
			at = optarg;
			break;
		case CAMPAIGN_CMD_OPT_ACCOUNT:
			conf_cli_set(&cc->cl, "send.account", optarg);
			break;
		case CAMPAIGN_CMD_OPT_POOL:
			conf_cli_set(&cc->cl, "send.pool", optarg);
			break;
		case CAMPAIGN_CMD_OPT_ROUTE:
			conf_cli_set(&cc->cl, "dns.route", optarg);
			break;
		case CAMPAIGN_CMD_OPT_RESOLVER:
			conf_cli_set(&cc->cl, "dns.resolver", optarg);
			break;
		case CAMPAIGN_CMD_OPT_ACCOUNTING:
			conf_cli_set(&cc->cl, "send.accounting_file", optarg);
			break;
		case CAMPAIGN_CMD_OPT_ACCT_FORMAT:
			conf_cli_set(&cc->cl, "send.accounting_format",
			    optarg);
			break;
		case CAMPAIGN_CMD_OPT_REJECT:
			conf_cli_set(&cc->cl, "send.reject_file", optarg);
			break;
		case CAMPAIGN_CMD_OPT_FORENSICS:
			conf_cli_set(&cc->cl, "send.forensics_dir", optarg);
			break;
		case CAMPAIGN_CMD_OPT_FROM:
			conf_cli_set(&cc->cl, "send.mail_from", optarg);
			break;
		case 'h':
			campaign_cmd_usage(stdout, v);
			return 0;
		default:
			conf_cli_bad_option(cc->prog, argv);
			fprintf(stderr, "(see mailroom campaign add --help)\n");
			return EX_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mailroom %s: unexpected argument \"%s\"\n",
		    cc->prog, argv[optind]);
		return EX_USAGE;
	}
	if (tpath == NULL || lpath == NULL) {
		fprintf(stderr, "mailroom %s: --template and --list are "
		    "required (see mailroom campaign add --help)\n", cc->prog);
		return EX_USAGE;
	}
	if (at != NULL && campaign_cmd_parse_time(at, now, &start) != 0) {
		fprintf(stderr, "mailroom %s: --at \"%s\": not a time; give "
		    "now, +DURATION (+90s, +10m, +2h, +1d), "
		    "2026-11-23T10:00:00Z (UTC) or @EPOCH\n", cc->prog, at);
		return EX_USAGE;
	}
	if (at == NULL)
		start = now;
	if (name == NULL) {
		gmtime_r(&tnow, &tm);
		strftime(defname, sizeof(defname), "campaign-%Y%m%d-%H%M%S",
		    &tm);
		name = defname;
	}
	if ((why = campaign_cmd_check_name(name)) != NULL) {
		mr_buf_printf(&cc->err, "campaign name \"%s\" refused: %s",
		    name, why);
		return EX_DATAERR;
	}
	ex = conf_cli_load(&cc->cfg, &cc->cl, cc->prog);
	if (ex != 0)
		return ex;
	cc->have_cfg = true;

	if ((ex = campaign_cmd_check_routes(cc)) != 0 ||
	    (ex = campaign_cmd_real(cc, "template", tpath, &tabs)) != 0 ||
	    (ex = campaign_cmd_real(cc, "list", lpath, &labs)) != 0 ||
	    (ex = campaign_cmd_check_inputs(cc, tabs, labs)) != 0)
		goto out;
	cc->store = cstore_open(&cc->cfg, true, &cc->err, &ex);
	if (cc->store == NULL)
		goto out;
	if (*cc->cfg.send_account != '\0' &&
	    (ex = campaign_cmd_check_account(cc,
	    cc->cfg.send_account)) != 0)
		goto out;

	rec.name = xstrdup(name);
	rec.template_path = tabs;
	rec.list_path = labs;
	tabs = labs = NULL;
	rec.account = *cc->cfg.send_account ?
	    xstrdup(cc->cfg.send_account) : NULL;
	rec.options = cstore_record_options(&cc->cl, &cc->err);
	if (rec.options == NULL) {
		ex = EX_OSERR;
		goto out;
	}
	rec.created_at = now;
	rec.start_at = start;
	rec.stage = STORE_STAGE_CREATED;
	rec.state = STORE_STATE_SCHEDULED;
	code = cc->store->ops->campaign_insert(cc->store, &rec);
	if (code == -EEXIST) {
		mr_buf_printf(&cc->err, "campaign %s already exists in store "
		    "%s: choose another --name", name, cc->cfg.store_path);
		ex = EX_DATAERR;
		goto out;
	}
	if (code != 0) {
		ex = campaign_cmd_fail(cc, code);
		goto out;
	}
	printf("campaign %s (id %" PRId64 ") scheduled for %s\n", rec.name,
	    rec.id, mr_iso8601(start, when, sizeof(when)));
	if (start < now)
		fprintf(stderr, "mailroom %s: note: %s is in the past: the "
		    "daemon starts the campaign at once\n", cc->prog, when);
out:
	free(tabs);
	free(labs);
	store_campaign_release(&rec);
	return ex;
}

/* ---------------------------------------------------------------- */
/* list, show                                                       */
/* ---------------------------------------------------------------- */

static char *
campaign_cmd_strf(const char *fmt, ...)
{
	struct mr_buf b = MR_BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	mr_buf_vprintf(&b, fmt, ap);
	va_end(ap);
	return b.data != NULL ? b.data : xstrdup("");
}

static int
campaign_cmd_list_cb(void *arg, const struct store_campaign *c)
{
	struct campaign_cmd_rows *rows = arg;
	struct campaign_cmd_row *r;
	char when[32];

	rows->v = xreallocarray(rows->v, rows->n + 1, sizeof(*rows->v));
	r = &rows->v[rows->n++];
	r->id = campaign_cmd_strf("%" PRId64, c->id);
	r->name = xstrdup(c->name ? c->name : "-");
	r->stage = xstrdup(store_stage_name(c->stage));
	r->state = xstrdup(store_state_name(c->state));
	r->start = xstrdup(mr_iso8601(c->start_at, when, sizeof(when)));
	if (c->stage >= STORE_STAGE_PREPARED)
		r->progress = campaign_cmd_strf("%" PRIu64 "/%" PRIu64 "/%"
		    PRIu32, c->delivered, c->bounced, c->nrecipients);
	else
		r->progress = xstrdup("-/-/-");
	if (c->owner == NULL || *c->owner == '\0')
		r->owner = xstrdup("-");
	else
		r->owner = campaign_cmd_strf("%s%s", c->owner,
		    c->lease_until < rows->now ? " (lease ran out)" : "");
	return 0;
}

static void
campaign_cmd_rows_release(struct campaign_cmd_rows *rows)
{
	size_t i;

	for (i = 0; i < rows->n; i++) {
		free(rows->v[i].id);
		free(rows->v[i].name);
		free(rows->v[i].stage);
		free(rows->v[i].state);
		free(rows->v[i].start);
		free(rows->v[i].progress);
		free(rows->v[i].owner);
	}
	free(rows->v);
	rows->v = NULL;
	rows->n = 0;
}

static int
campaign_cmd_list(struct campaign_cmd *cc, int argc, char **argv)
{
	static const char *const head[] = {
		"ID", "NAME", "STAGE", "STATE", "START",
		"DELIVERED/BOUNCED/RECIPIENTS", "OWNER",
	};
	struct campaign_cmd_rows rows = { NULL, 0, 0 };
	size_t w[7], i, k;
	char **args;
	int ex, code;

	ex = campaign_cmd_simple_args(cc, campaign_cmd_verb_of(
	    campaign_cmd_list), argc, argv, 0, &args);
	if (ex != 0)
		return ex < 0 ? 0 : ex;
	if ((ex = campaign_cmd_open(cc, false)) != 0)
		return ex;
	rows.now = (int64_t)time(NULL);
	code = cc->store->ops->campaign_list(cc->store, campaign_cmd_list_cb,
	    &rows);
	if (code != 0) {
		campaign_cmd_rows_release(&rows);
		return campaign_cmd_fail(cc, code);
	}
	for (k = 0; k < 7; k++)
		w[k] = strlen(head[k]);
	for (i = 0; i < rows.n; i++) {
		const char *f[7] = { rows.v[i].id, rows.v[i].name,
		    rows.v[i].stage, rows.v[i].state, rows.v[i].start,
		    rows.v[i].progress, rows.v[i].owner };

		for (k = 0; k < 7; k++)
			if (strlen(f[k]) > w[k])
				w[k] = strlen(f[k]);
	}
	printf("%*s  %-*s  %-*s  %-*s  %-*s  %*s  %s\n", (int)w[0], head[0],
	    (int)w[1], head[1], (int)w[2], head[2], (int)w[3], head[3],
	    (int)w[4], head[4], (int)w[5], head[5], head[6]);
	for (i = 0; i < rows.n; i++)
		printf("%*s  %-*s  %-*s  %-*s  %-*s  %*s  %s\n", (int)w[0],
		    rows.v[i].id, (int)w[1], rows.v[i].name, (int)w[2],
		    rows.v[i].stage, (int)w[3], rows.v[i].state, (int)w[4],
		    rows.v[i].start, (int)w[5], rows.v[i].progress,
		    rows.v[i].owner);
	campaign_cmd_rows_release(&rows);
	return 0;
}

/* campaign_cmd_get - campaign key, or EX_NOINPUT "no campaign X ...". */
static int
campaign_cmd_get(struct campaign_cmd *cc, const char *key,
    struct store_campaign *c)
{
	int code;

	code = cc->store->ops->campaign_get(cc->store, key, c);
	if (code == -ENOENT) {
		mr_buf_printf(&cc->err, "no campaign %s in store %s", key,
		    cc->cfg.store_path);
		return EX_NOINPUT;
	}
	return code == 0 ? 0 : campaign_cmd_fail(cc, code);
}

static void
campaign_cmd_print(const struct store_campaign *c, int64_t now)
{
	char when[32];
	const char *p, *e;
	uint64_t finals = c->delivered + c->bounced;
	int64_t el;
	bool counted = c->stage >= STORE_STAGE_PREPARED;

	printf("id: %" PRId64 "\n", c->id);
	printf("name: %s\n", c->name);
	printf("stage: %s\n", store_stage_name(c->stage));
	printf("state: %s\n", store_state_name(c->state));
	printf("template: %s\n", c->template_path ? c->template_path : "-");
	printf("list: %s\n", c->list_path ? c->list_path : "-");
	printf("account: %s\n", c->account && *c->account ? c->account : "-");
	printf("created: %s\n", mr_iso8601(c->created_at, when,
	    sizeof(when)));
	printf("start: %s\n", mr_iso8601(c->start_at, when,
	    sizeof(when)));
	printf("started: %s\n", mr_iso8601(c->started_at, when,
	    sizeof(when)));
	printf("finished: %s\n", mr_iso8601(c->finished_at, when,
	    sizeof(when)));
	if (counted) {
		printf("recipients: %" PRIu32 "\n", c->nrecipients);
		printf("rows: %" PRIu64 "\n", c->rows);
		printf("rejected: %" PRIu64 "\n", c->rejected);
		printf("duplicates: %" PRIu64 "\n", c->duplicates);
	} else {
		/* The list is read when the campaign first starts. */
		printf("recipients: -\nrows: -\nrejected: -\nduplicates: -\n");
	}
	printf("delivered: %" PRIu64 "\n", c->delivered);
	printf("bounced: %" PRIu64 "\n", c->bounced);
	printf("deferrals: %" PRIu64 "\n", c->deferrals);
	if (counted)
		printf("pending: %" PRIu64 "\n", finals < c->nrecipients ?
		    c->nrecipients - finals : 0);
	else
		printf("pending: -\n");
	printf("in-flight-at-crash-total: %" PRIu64 "\n",
	    c->inflight_at_crash);
	printf("owner: %s\n", c->owner && *c->owner ? c->owner : "-");
	printf("lease-until: %s%s\n", mr_iso8601(c->owner && *c->owner ?
	    c->lease_until : 0, when, sizeof(when)), c->owner && *c->owner &&
	    c->lease_until < now ? " (ran out)" : "");
	if (c->started_at != 0) {
		el = (c->finished_at ? c->finished_at : now) - c->started_at;
		printf("rate: %.1f msg/s\n", (double)finals /
		    (double)(el > 0 ? el : 1));
	} else {
		printf("rate: -\n");
	}
	for (p = c->options ? c->options : ""; *p; p = *e ? e + 1 : e) {
		e = strchr(p, '\n');
		if (e == NULL)
			e = p + strlen(p);
		if (e > p)
			printf("option: %.*s\n", (int)(e - p), p);
	}
	if (c->summary != NULL && *c->summary) {
		/* Complete: the delivery summary; running: the governor's
		 * last decision and the destinations at the last snapshot. */
		printf("%s:\n", campaign_cmd_complete(c) ? "summary" :
		    "status");
		for (p = c->summary; *p; p = *e ? e + 1 : e) {
			e = strchr(p, '\n');
			if (e == NULL)
				e = p + strlen(p);
			printf("  %.*s\n", (int)(e - p), p);
		}
	}
}

static int
campaign_cmd_show(struct campaign_cmd *cc, int argc, char **argv)
{
	struct store_campaign c;
	char **args;
	int ex;

	ex = campaign_cmd_simple_args(cc, campaign_cmd_verb_of(
	    campaign_cmd_show), argc, argv, 1, &args);
	if (ex != 0)
		return ex < 0 ? 0 : ex;
	if ((ex = campaign_cmd_open(cc, false)) != 0)
		return ex;
	if ((ex = campaign_cmd_get(cc, args[0], &c)) != 0)
		return ex;
	campaign_cmd_print(&c, (int64_t)time(NULL));
	store_campaign_release(&c);
	return 0;
}

/* ---------------------------------------------------------------- */
/* pause, resume, cancel                                            */
/* ---------------------------------------------------------------- */

static int
campaign_cmd_decide_pause(struct campaign_cmd *cc, struct store_campaign *c,
    int64_t now, bool *release_quota_r)
{
	if (campaign_cmd_complete(c)) {
		mr_buf_printf(&cc->err, "campaign %s is complete: there is "
		    "nothing to pause", c->name);
		return EX_DATAERR;
	}
	if (c->state != STORE_STATE_SCHEDULED &&
	    c->state != STORE_STATE_RUNNING) {
		mr_buf_printf(&cc->err, "campaign %s is %s: only a scheduled "
		    "or running campaign can be paused", c->name,
		    store_state_name(c->state));
		return EX_DATAERR;
	}
	c->state = STORE_STATE_PAUSED;
	return 0;
}

static int
campaign_cmd_decide_resume(struct campaign_cmd *cc,
    struct store_campaign *c, int64_t now, bool *release_quota_r)
{
	char when[32];

	if (campaign_cmd_complete(c)) {
		mr_buf_printf(&cc->err, "campaign %s is complete: a finished "
		    "campaign is never sent again", c->name);
		return EX_DATAERR;
	}
	if (c->state == STORE_STATE_CANCELLED) {
		mr_buf_printf(&cc->err, "campaign %s was cancelled: a "
		    "cancelled campaign is never resumed (add it again under "
		    "another name)", c->name);
		return EX_DATAERR;
	}
	if (c->state != STORE_STATE_PAUSED) {
		mr_buf_printf(&cc->err, "campaign %s is %s, not paused: only "
		    "a paused campaign can be resumed", c->name,
		    store_state_name(c->state));
		return EX_DATAERR;
	}
	if (campaign_cmd_leased(c, now)) {
		/* Its sender would put PAUSED back when it lets go. */
		mr_buf_printf(&cc->err, "campaign %s is paused but its sender "
		    "%s has not stopped yet (its lease runs until %s): "
		    "resume it once the sender has stopped", c->name,
		    c->owner, mr_iso8601(c->lease_until, when,
		    sizeof(when)));
		return EX_TEMPFAIL;
	}
	c->state = STORE_STATE_SCHEDULED;
	c->start_at = now;
	return 0;
}

static int
campaign_cmd_decide_cancel(struct campaign_cmd *cc,
    struct store_campaign *c, int64_t now, bool *release_quota_r)
{
	if (campaign_cmd_complete(c)) {
		mr_buf_printf(&cc->err, "campaign %s is complete: there is "
		    "nothing to cancel", c->name);
		return EX_DATAERR;
	}
	c->state = STORE_STATE_CANCELLED;
	/*
	 * Nobody will send the rest: give back the account's reservation,
	 * unless a sender still runs (it counts its last outcomes against
	 * the reservation at its last snapshot).  Cancelling again once the
	 * sender is gone gives back what it left.
	 */
	*release_quota_r = c->account != NULL && *c->account != '\0' &&
	    !campaign_cmd_leased(c, now);
	return 0;
}

/*
 * campaign_cmd_change - the common part of pause, resume and cancel: one
 * write transaction that reads the campaign, lets decide change it (or
 * refuse), and writes it back.  The lease is never touched.
 */
static int
campaign_cmd_change(struct campaign_cmd *cc, int argc, char **argv,
    int (*run)(struct campaign_cmd *, int, char **),
    campaign_cmd_decide_fn *decide)
{
	const struct campaign_cmd_verb *v = campaign_cmd_verb_of(run);
	struct store *s;
	struct store_campaign c;
	bool release_quota = false, leased;
	char when[32], **args;
	int64_t now;
	int ex, code, old_state;

	memset(&c, 0, sizeof(c));
	ex = campaign_cmd_simple_args(cc, v, argc, argv, 1, &args);
	if (ex != 0)
		return ex < 0 ? 0 : ex;
	if ((ex = campaign_cmd_open(cc, false)) != 0)
		return ex;
	s = cc->store;
	if ((code = s->ops->begin(s)) != 0)
		return campaign_cmd_fail(cc, code);
	now = (int64_t)time(NULL);
	ex = campaign_cmd_get(cc, args[0], &c);
	old_state = c.state;
	if (ex == 0)
		ex = decide(cc, &c, now, &release_quota);
	if (ex == 0 && (code = s->ops->campaign_update(s, &c)) != 0)
		ex = campaign_cmd_fail(cc, code);
	if (ex == 0 && release_quota &&
	    (code = s->ops->quota_release(s, c.id)) != 0)
		ex = campaign_cmd_fail(cc, code);
	if (ex == 0 && (code = s->ops->commit(s)) != 0)
		ex = campaign_cmd_fail(cc, code);
	if (ex != 0) {
		(void)s->ops->rollback(s);
		store_campaign_release(&c);
		return ex;
	}
	leased = campaign_cmd_leased(&c, now);
	if (decide == campaign_cmd_decide_resume)
		printf("campaign %s resumed: scheduled for %s", c.name,
		    mr_iso8601(c.start_at, when, sizeof(when)));
	else if (old_state == c.state)
		printf("campaign %s was already %s", c.name,
		    store_state_name(c.state));
	else
		printf("campaign %s %s", c.name, store_state_name(c.state));
	if (leased && decide != campaign_cmd_decide_resume)
		printf(": its sender %s stops at its next snapshot%s", c.owner,
		    c.state == STORE_STATE_PAUSED ? ", keeping its progress" :
		    "");
	if (release_quota)
		printf("; what it had reserved of account %s is given back",
		    c.account);
	putchar('\n');
	store_campaign_release(&c);
	return 0;
}

static int
campaign_cmd_pause(struct campaign_cmd *cc, int argc, char **argv)
{
	return campaign_cmd_change(cc, argc, argv, campaign_cmd_pause,
	    campaign_cmd_decide_pause);
}

static int
campaign_cmd_resume(struct campaign_cmd *cc, int argc, char **argv)
{
	return campaign_cmd_change(cc, argc, argv, campaign_cmd_resume,
	    campaign_cmd_decide_resume);
}

static int
campaign_cmd_cancel(struct campaign_cmd *cc, int argc, char **argv)
{
	return campaign_cmd_change(cc, argc, argv, campaign_cmd_cancel,
	    campaign_cmd_decide_cancel);
}

/* ---------------------------------------------------------------- */
/* Dispatch                                                         */
/* ---------------------------------------------------------------- */

int
campaign_cmd(int argc, char **argv)
{
	const struct campaign_cmd_verb *v = NULL;
	struct campaign_cmd cc;
	char prog[64];
	size_t i;
	int ex;

	if (argc < 2) {
		campaign_cmd_usage(stderr, NULL);
		return EX_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		campaign_cmd_usage(stdout, NULL);
		return 0;
	}
	for (i = 0; i < CAMPAIGN_CMD_NVERBS; i++)
		if (strcmp(argv[1], campaign_cmd_verbs[i].name) == 0)
			v = &campaign_cmd_verbs[i];
	if (v == NULL) {
		fprintf(stderr, "mailroom campaign: unknown command \"%s\" "
		    "(see mailroom campaign --help)\n", argv[1]);
		return EX_USAGE;
	}
	memset(&cc, 0, sizeof(cc));
	snprintf(prog, sizeof(prog), "campaign %s", v->name);
	cc.prog = prog;
	ex = v->run(&cc, argc - 1, argv + 1);
	if (ex != 0 && cc.err.len)
		fprintf(stderr, "mailroom %s: %s\n", cc.prog,
		    mr_buf_cstr(&cc.err));
	store_close(&cc.store);
	if (cc.have_cfg)
		conf_release(&cc.cfg);
	conf_cli_release(&cc.cl);
	mr_buf_release(&cc.err);
	return ex;
}
