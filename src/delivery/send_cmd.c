/*
 * send_cmd.c - "mailroom send": deliver one campaign in the foreground.
 *
 * Without --store, --campaign or --resume the run is ephemeral, as a
 * one-off tool.  With them the campaign is recorded in the store under its
 * name, keeps its recovery state there, and can be continued after a
 * crash with --resume NAME (or by the daemon).  The work itself is the
 * runner's (delivery/runner.h); this file is the command line, the lease,
 * the progress display and the summary.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "conf/conf.h"
#include "conf/conf_cli.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "delivery/cstore.h"
#include "delivery/runner.h"

#define SEND_TTY_REFRESH_MS	200

struct send_opts {
	const char	*template_path;
	const char	*list_path;
	const char	*campaign;	/* record under this name */
	const char	*resume;	/* continue this campaign */
	bool		 record;	/* --store given */
	bool		 no_progress;
};

static atomic_bool send_stop;

static void
send_usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mailroom send --template FILE --list FILE [options]\n"
	    "       mailroom send --store FILE --campaign NAME --template FILE "
	    "--list FILE [options]\n"
	    "       mailroom send [--store FILE] --resume NAME [options]\n\n"
	    "Delivers one personalized message to every recipient of the "
	    "list: the\ntemplate is an RFC 5322 message with {{column}} "
	    "placeholders, the list a\nCSV file with a header row and an "
	    "\"email\" column.  Progress goes to\nstandard error, the summary "
	    "to standard output.\n\n"
	    "With --store or --campaign the campaign is recorded in the "
	    "store and keeps\nits progress there: after a crash, --resume "
	    "NAME goes on where it stopped\n(it prints in-flight-at-crash: N, "
	    "the recipients that may get a second\ncopy).\n\n"
	    "  -t, --template FILE         message template\n"
	    "  -l, --list FILE             recipient list (CSV)\n"
	    "  -c, --config FILE           configuration file (INI); flags "
	    "win over it\n"
	    "  -o, --set SECTION.KEY=VALUE override any configuration key\n"
	    "      --store FILE            the store (store.path; default "
	    "/var/lib/mailroom/mailroom.db)\n"
	    "      --campaign NAME         record the campaign under NAME\n"
	    "      --resume NAME           continue campaign NAME\n"
	    "      --account NAME          count it against this sending "
	    "account's allowance\n"
	    "      --pool NAME             send from the source addresses of "
	    "[pool NAME]\n"
	    "      --route DOMAIN=HOST:PORT  send DOMAIN's mail to HOST:PORT "
	    "(repeatable;\n"
	    "                              * is every domain, .example.com "
	    "its subdomains)\n"
	    "      --resolver HOST:PORT    DNS server to ask (repeatable)\n"
	    "      --accounting FILE       append one record per recipient "
	    "outcome\n"
	    "      --accounting-format csv|json\n"
	    "      --reject-file FILE      rejected rows (default: LIST."
	    "rejects.csv)\n"
	    "      --forensics-dir DIR     keep messages refused with 5xx "
	    "here\n"
	    "      --from ADDRESS          envelope sender (default: the "
	    "template's From)\n"
	    "      --no-progress           no progress display\n"
	    "  -h, --help                  this text\n\n"
	    "Exit status: 0 when every recipient reached a final state "
	    "(delivered, or\nbounced, or out of retries); 64 bad usage; 65 bad "
	    "list or template, or a\ncampaign that cannot go on; 66 a file or "
	    "campaign that does not exist;\n73 an output file cannot be "
	    "created; 75 interrupted or paused (resume\nlater); 77 over the "
	    "account's allowance; 78 bad configuration.\nSee docs/CONFIG.md "
	    "for every key.\n");
}

static void
send_on_signal(int sig)
{
	static const char msg[] = "\r\033[Kmailroom send: stopping: "
	    "finishing the transactions in flight (signal again to quit "
	    "now)\n";
	struct sigaction sa;
	ssize_t w;

	(void)sig;
	w = write(STDERR_FILENO, msg + (isatty(STDERR_FILENO) ? 0 : 4),
	    sizeof(msg) - 1 - (isatty(STDERR_FILENO) ? 0 : 4));
	(void)w;
	atomic_store(&send_stop, true);
	/* A second signal ends the process at once. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static void
send_format_duration(double s, char *buf, size_t size)
{
	unsigned long t = (unsigned long)(s + 0.5);

	if (t >= 3600)
		snprintf(buf, size, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60,
		    t % 60);
	else
		snprintf(buf, size, "%lu:%02lu", t / 60, t % 60);
}

/* send_progress - one progress report; live (redrawn) on a terminal. */
static void
send_progress(void *arg, const struct runner_progress *p, bool final)
{
	bool live = *(bool *)arg;
	double el = (double)p->elapsed_ms / 1000.0;
	double rate = el > 0 ? (double)p->done / el : 0;
	char eta[32] = "-";

	if (rate > 0 && p->done < p->total)
		send_format_duration((double)(p->total - p->done) / rate, eta,
		    sizeof(eta));
	fprintf(stderr, "%s%llu/%llu done (%.1f%%) %.0f msg/s delivered %llu "
	    "bounced %llu deferrals %llu eta %s%s",
	    live ? "\r\033[K" : "", (unsigned long long)p->done,
	    (unsigned long long)p->total,
	    p->total ? 100.0 * (double)p->done / (double)p->total : 100.0,
	    rate, (unsigned long long)p->delivered,
	    (unsigned long long)p->bounced, (unsigned long long)p->deferrals,
	    eta, live && !final ? "" : "\n");
	fflush(stderr);
}

/*
 * send_campaign - the campaign record to run: a new one (--campaign, or
 * --store alone: a name is made up) or an existing one (--resume).  On
 * success rec is filled and leased by this process.
 */
static int
send_campaign(struct store *s, const struct send_opts *o,
    const struct conf_cli *cl, const struct mr_config *cfg,
    struct store_campaign *rec, struct mr_buf *err)
{
	char name[64];
	int code;

	if (o->resume != NULL) {
		code = s->ops->campaign_get(s, o->resume, rec);
		if (code == -ENOENT) {
			mr_buf_printf(err, "no campaign %s in store %s",
			    o->resume, cfg->store_path);
			return EX_NOINPUT;
		}
		if (code != 0) {
			mr_buf_printf(err, "%s", store_error(s));
			return code == -EBUSY ? EX_TEMPFAIL : EX_IOERR;
		}
		if (rec->stage == STORE_STAGE_COMPLETE ||
		    rec->state == STORE_STATE_DONE) {
			mr_buf_printf(err, "campaign %s is complete: a finished "
			    "campaign is never sent again", rec->name);
			return EX_DATAERR;
		}
		if (rec->state == STORE_STATE_CANCELLED) {
			mr_buf_printf(err, "campaign %s was cancelled",
			    rec->name);
			return EX_DATAERR;
		}
	} else {
		if (o->campaign == NULL) {
			time_t now = time(NULL);
			struct tm tm;

			gmtime_r(&now, &tm);
			strftime(name, sizeof(name), "send-%Y%m%d-%H%M%S",
			    &tm);
		}
		memset(rec, 0, sizeof(*rec));
		rec->name = xstrdup(o->campaign ? o->campaign : name);
		/* Absolute: a resume or the daemon runs elsewhere. */
		rec->template_path = realpath(o->template_path, NULL);
		rec->list_path = realpath(o->list_path, NULL);
		if (rec->template_path == NULL || rec->list_path == NULL) {
			mr_buf_printf(err, "cannot open %s: %s",
			    rec->template_path ? o->list_path :
			    o->template_path, strerror(errno));
			return EX_NOINPUT;
		}
		rec->account = xstrdup(cfg->send_account);
		rec->options = cstore_record_options(cl, err);
		if (rec->options == NULL)
			return EX_OSERR;
		rec->created_at = rec->start_at = (int64_t)time(NULL);
		rec->stage = STORE_STAGE_CREATED;
		rec->state = STORE_STATE_SCHEDULED;
		code = s->ops->campaign_insert(s, rec);
		if (code == -EEXIST) {
			mr_buf_printf(err, "campaign %s already exists: "
			    "continue it with --resume %s", rec->name,
			    rec->name);
			return EX_DATAERR;
		}
		if (code != 0) {
			mr_buf_printf(err, "%s", store_error(s));
			return code == -EBUSY ? EX_TEMPFAIL : EX_IOERR;
		}
	}
	return cstore_claim(s, rec, cfg, err);
}

/* send_release_lease - the campaign's state after this run. */
static void
send_release_lease(struct store *s, struct store_campaign *rec,
    enum runner_end end)
{
	int state;

	switch (end) {
	case RUNNER_COMPLETE:
		state = STORE_STATE_DONE;
		break;
	case RUNNER_CANCELLED:
		state = STORE_STATE_CANCELLED;
		break;
	case RUNNER_LOST_LEASE:
		return;
	default:
		state = STORE_STATE_PAUSED;
		break;
	}
	if (s->ops->campaign_release(s, rec->id, cstore_owner(), state) != 0)
		fprintf(stderr, "mailroom send: %s\n", store_error(s));
}

int
send_cmd(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "template", required_argument, NULL, 't' },
		{ "list", required_argument, NULL, 'l' },
		CONF_CLI_LONGOPTS,
		{ "store", required_argument, NULL, 'S' },
		{ "campaign", required_argument, NULL, 'C' },
		{ "resume", required_argument, NULL, 'U' },
		{ "account", required_argument, NULL, 'a' },
		{ "pool", required_argument, NULL, 'p' },
		{ "route", required_argument, NULL, 'R' },
		{ "resolver", required_argument, NULL, 'N' },
		{ "accounting", required_argument, NULL, 'A' },
		{ "accounting-format", required_argument, NULL, 'F' },
		{ "reject-file", required_argument, NULL, 'J' },
		{ "forensics-dir", required_argument, NULL, 'X' },
		{ "from", required_argument, NULL, 'f' },
		{ "no-progress", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct send_opts o;
	struct conf_cli cl = { 0 }, full = { 0 };
	struct mr_config cfg;
	struct mr_buf err = MR_BUF_INIT, summary = MR_BUF_INIT;
	struct store_campaign rec;
	struct runner_opts ro;
	struct store *store = NULL;
	struct sigaction sa;
	enum runner_end end = RUNNER_COMPLETE;
	bool live, have_cfg = false, have_rec = false;
	int c, ex = 0, r;

	memset(&o, 0, sizeof(o));
	memset(&rec, 0, sizeof(rec));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "t:l:c:o:h", longopts,
	    NULL)) != -1) {
		if ((r = conf_cli_option(&cl, c, optarg, "send")) != 0) {
			if (r > 0)
				continue;
			ex = EX_USAGE;
			goto done;
		}
		switch (c) {
		case 't':
			o.template_path = optarg;
			break;
		case 'l':
			o.list_path = optarg;
			break;
		case 'S':
			conf_cli_set(&cl, "store.path", optarg);
			o.record = true;
			break;
		case 'C':
			o.campaign = optarg;
			break;
		case 'U':
			o.resume = optarg;
			break;
		case 'a':
			conf_cli_set(&cl, "send.account", optarg);
			break;
		case 'p':
			conf_cli_set(&cl, "send.pool", optarg);
			break;
		case 'R':
			conf_cli_set(&cl, "dns.route", optarg);
			break;
		case 'N':
			conf_cli_set(&cl, "dns.resolver", optarg);
			break;
		case 'A':
			conf_cli_set(&cl, "send.accounting_file", optarg);
			break;
		case 'F':
			conf_cli_set(&cl, "send.accounting_format", optarg);
			break;
		case 'J':
			conf_cli_set(&cl, "send.reject_file", optarg);
			break;
		case 'X':
			conf_cli_set(&cl, "send.forensics_dir", optarg);
			break;
		case 'f':
			conf_cli_set(&cl, "send.mail_from", optarg);
			break;
		case 'P':
			o.no_progress = true;
			break;
		case 'h':
			send_usage(stdout);
			goto done;
		default:
			conf_cli_bad_option("send", argv);
			fprintf(stderr, "(see mailroom send --help)\n");
			ex = EX_USAGE;
			goto done;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mailroom send: unexpected argument \"%s\"\n",
		    argv[optind]);
		ex = EX_USAGE;
		goto done;
	}
	if (o.resume != NULL && (o.template_path || o.list_path ||
	    o.campaign)) {
		fprintf(stderr, "mailroom send: --resume takes the template "
		    "and list recorded with the campaign\n");
		ex = EX_USAGE;
		goto done;
	}
	if (o.resume == NULL && (o.template_path == NULL ||
	    o.list_path == NULL)) {
		fprintf(stderr, "mailroom send: --template and --list are "
		    "required (see mailroom send --help)\n");
		ex = EX_USAGE;
		goto done;
	}
	ex = conf_cli_load(&cfg, &cl, "send");
	if (ex != 0)
		goto done;
	have_cfg = true;
	if (o.resume != NULL || o.campaign != NULL || o.record) {
		store = cstore_open(&cfg, o.resume == NULL, &err, &ex);
		if (store == NULL)
			goto out;
		ex = send_campaign(store, &o, &cl, &cfg, &rec, &err);
		have_rec = rec.name != NULL;
		if (ex != 0)
			goto out;
		if (o.resume != NULL) {
			/* The settings it began with, under today's flags. */
			cstore_apply_options(rec.options, &cl, &full);
			conf_release(&cfg);
			have_cfg = false;
			ex = conf_cli_load(&cfg, &full, "send");
			if (ex != 0)
				goto out;
			have_cfg = true;
		}
	}
	if (strchr(cfg.general_hostname, '.') == NULL)
		fprintf(stderr, "mailroom send: warning: general.hostname "
		    "\"%s\" is not a fully qualified domain name; many "
		    "receivers refuse such an EHLO (set general.hostname)\n",
		    cfg.general_hostname);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = send_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	live = !o.no_progress && isatty(STDERR_FILENO);
	if (live)
		mr_log_set_tty_clear(true);
	memset(&ro, 0, sizeof(ro));
	ro.cfg = &cfg;
	ro.template_path = have_rec ? rec.template_path : o.template_path;
	ro.list_path = have_rec ? rec.list_path : o.list_path;
	ro.store = store;
	ro.rec = store ? &rec : NULL;
	ro.owner = cstore_owner();
	ro.progress = o.no_progress ? NULL : send_progress;
	ro.progress_arg = &live;
	ro.progress_interval_ms = live ? SEND_TTY_REFRESH_MS :
	    (uint64_t)cfg.send_progress_interval;
	ro.stop = &send_stop;
	ro.out = stdout;
	ro.prog = "send";
	ex = runner_run(&ro, &end, &summary, &err);
	if (live)
		mr_log_set_tty_clear(false);
	if (store != NULL)
		send_release_lease(store, &rec, ex == 0 ? end :
		    RUNNER_STOPPED);
	if (ex != 0)
		goto out;
	fputs(mr_buf_cstr(&summary), stdout);
	if (end != RUNNER_COMPLETE) {
		fprintf(stderr, "mailroom send: %s; recipients not finished "
		    "are counted as unfinished%s%s\n",
		    end == RUNNER_CANCELLED ? "cancelled" :
		    end == RUNNER_LOST_LEASE ? "another sender took the "
		    "campaign" : "interrupted",
		    store && end != RUNNER_CANCELLED ? "; continue with "
		    "--resume " : "", store && end != RUNNER_CANCELLED ?
		    rec.name : "");
		ex = EX_TEMPFAIL;
	}
out:
	if (ex != 0 && err.len)
		fprintf(stderr, "mailroom send: %s\n", mr_buf_cstr(&err));
	if (have_rec)
		store_campaign_release(&rec);
	store_close(&store);
	if (have_cfg)
		conf_release(&cfg);
done:
	mr_buf_release(&err);
	mr_buf_release(&summary);
	conf_cli_release(&cl);
	conf_cli_release(&full);
	return ex;
}
