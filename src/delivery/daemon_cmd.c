/*
 * daemon_cmd.c - "mailroom daemon": run the store's campaigns when they
 * are due (SPEC D12, seed 004 [0029]-[0031], [0080]-[0081]).
 *
 * A monitor looks at the store every daemon.poll_interval.  Each campaign
 * that is due (scheduled with its start time past, or running under a
 * lease that ran out: a sender that died) and not already running here is
 * claimed (its lease) and run by a runner on a thread of its own, with the
 * settings recorded with the campaign.  The lease is what keeps two
 * senders off one campaign, in this process, in another one or on another
 * machine, and across a restart: a sender that died on this machine frees
 * its campaigns at once, one elsewhere when its lease runs out.
 *
 * SIGTERM or SIGINT stops the runners (transactions in flight finish,
 * progress is folded into the store) and gives their campaigns back as
 * scheduled, so that the next daemon goes on with them; a second signal
 * ends the process at once.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
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
#include "core/mr_clock.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "delivery/cstore.h"
#include "delivery/inject.h"
#include "delivery/runner.h"
#include "delivery/shape.h"
#include "pop3edge/pop3_serve.h"

#define DAEMON_SLOTS_MAX	64

/* One campaign being run by this daemon. */
struct daemon_slot {
	bool			 used;
	atomic_bool		 finished;	/* the thread is done */
	pthread_t		 thread;
	struct store_campaign	 rec;
	struct mr_config	 cfg;
	struct store		*store;		/* the runner's own */
	atomic_bool		 stop;
	enum runner_end		 end;
	int			 ex;
	struct mr_buf		 summary;
	struct mr_buf		 err;
};

static atomic_bool daemon_stop;
/* One shaper for everything the daemon sends: its limits per source and
 * destination hold across campaigns and the relay together. */
static struct shaper *daemon_shaper;

static void
daemon_usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mailroom daemon [--config FILE] [--store FILE] "
	    "[--smtp-listen ADDR:PORT]\n"
	    "                       [--route DOMAIN=HOST:PORT ...] "
	    "[--accounting FILE]\n"
	    "                       [-o section.key=value]\n\n"
	    "Runs in the foreground: sends the store's campaigns when they "
	    "are due\n(see mailroom campaign add --at), up to "
	    "daemon.max_campaigns at once,\neach with the settings recorded "
	    "with it.  A campaign whose sender died\n(this daemon, a "
	    "mailroom send, another machine's daemon) is taken over\nfrom "
	    "where its progress was recorded.  SIGTERM or SIGINT stops "
	    "cleanly:\ncampaigns in progress are given back as scheduled.\n"
	    "Traffic shaping ([shaping], [destination], [pool]) comes from "
	    "the daemon's\nown configuration and is shared: the limits per "
	    "source and destination\nhold for all its campaigns and the "
	    "relay together.\n"
	    "With pop3_proxy.listen set it also runs the POP3 proxy (edge or, "
	    "with\npop3_proxy.aggregate, aggregating) on a thread of its own; "
	    "its addresses\nare printed as \"listen: ...\" lines.\n"
	    "With inject.listen (--smtp-listen) it accepts mail over ESMTP "
	    "and relays it\nthrough the same delivery loops: a message is "
	    "answered 250 only once it is\nin the spool on disk; clients "
	    "outside inject.trusted_networks must AUTH as\na sending account "
	    "with a password (mailroom account add NAME --password).\n\n"
	    "  -c, --config FILE   configuration file (INI)\n"
	    "      --store FILE    the store (store.path)\n"
	    "      --smtp-listen ADDR:PORT  accept mail for relay "
	    "(inject.listen)\n"
	    "      --route DOMAIN=HOST:PORT  deliver DOMAIN's mail there "
	    "(dns.route)\n"
	    "      --accounting FILE  one record per outcome "
	    "(send.accounting_file)\n"
	    "  -o, --set K=V       override a parameter (section.key=value)\n"
	    "  -h, --help          this text\n");
}

static void
daemon_on_signal(int sig)
{
	static const char msg[] = "mailroom daemon: stopping: campaigns "
	    "finish what is in flight (signal again to quit now)\n";
	struct sigaction sa;
	ssize_t w;

	(void)sig;
	atomic_store(&daemon_stop, true);
	w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)w;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static void
daemon_progress(void *arg, const struct runner_progress *p, bool final)
{
	struct daemon_slot *slot = arg;
	double el = (double)p->elapsed_ms / 1000.0;

	mr_log_info("daemon", "campaign=%s event=%s done=%" PRIu64 " total=%"
	    PRIu64 " delivered=%" PRIu64 " bounced=%" PRIu64 " deferrals=%"
	    PRIu64 " rate=%.1f", mr_q(slot->rec.name, (size_t)-1),
	    final ? "ended" : "progress", p->done, p->total, p->delivered,
	    p->bounced, p->deferrals, el > 0 ? (double)p->done / el : 0.0);
}

static void *
daemon_run(void *arg)
{
	struct daemon_slot *slot = arg;
	struct runner_opts ro;

	memset(&ro, 0, sizeof(ro));
	ro.cfg = &slot->cfg;
	ro.template_path = slot->rec.template_path;
	ro.list_path = slot->rec.list_path;
	ro.store = slot->store;
	ro.rec = &slot->rec;
	ro.owner = cstore_owner();
	ro.progress = daemon_progress;
	ro.progress_arg = slot;
	ro.progress_interval_ms = (uint64_t)slot->cfg.send_progress_interval;
	ro.stop = &slot->stop;
	ro.out = stdout;
	ro.prog = "daemon";
	ro.shaper = daemon_shaper;
	slot->ex = runner_run(&ro, &slot->end, &slot->summary, &slot->err);
	atomic_store(&slot->finished, true);
	return NULL;
}

/*
 * daemon_campaign_cli - a campaign's command line: its recorded config
 * file (else the daemon's), the daemon's overrides, then its own
 * recorded ones, which win.
 */
static void
daemon_campaign_cli(const struct store_campaign *rec,
    const struct conf_cli *dcl, struct conf_cli *out)
{
	struct conf_cli none;
	size_t i;

	memset(&none, 0, sizeof(none));
	cstore_apply_options(rec->options, &none, out);
	if (out->config_path == NULL)
		out->config_path = dcl->config_path;
	/* The daemon's overrides go first, so the campaign's win. */
	out->sets = xreallocarray(out->sets, out->nsets + dcl->nsets,
	    sizeof(*out->sets));
	memmove(out->sets + dcl->nsets, out->sets,
	    out->nsets * sizeof(*out->sets));
	for (i = 0; i < dcl->nsets; i++)
		out->sets[i] = xstrdup(dcl->sets[i]);
	out->nsets += dcl->nsets;
}

static bool
daemon_running(struct daemon_slot *slots, int64_t id)
{
	size_t i;

	for (i = 0; i < DAEMON_SLOTS_MAX; i++)
		if (slots[i].used && slots[i].rec.id == id)
			return true;
	return false;
}

static void
daemon_slot_free(struct daemon_slot *slot)
{
	store_close(&slot->store);
	store_campaign_release(&slot->rec);
	conf_release(&slot->cfg);
	mr_buf_release(&slot->summary);
	mr_buf_release(&slot->err);
	memset(slot, 0, sizeof(*slot));
}

/*
 * daemon_start - claim campaign id and run it in slot; false when it is
 * not to be run (gone, leased by a live sender, bad settings).
 */
static bool
daemon_start(struct store *s, const struct conf_cli *dcl,
    const struct mr_config *dcfg, struct daemon_slot *slot, int64_t id)
{
	struct mr_buf err = MR_BUF_INIT;
	struct conf_cli cl = { 0 };
	char key[32];
	int code, ex;

	memset(slot, 0, sizeof(*slot));
	snprintf(key, sizeof(key), "%" PRId64, id);
	if (s->ops->campaign_get(s, key, &slot->rec) != 0)
		return false;
	if (slot->rec.stage == STORE_STAGE_COMPLETE) {
		store_campaign_release(&slot->rec);
		return false;
	}
	daemon_campaign_cli(&slot->rec, dcl, &cl);
	ex = conf_cli_build(&slot->cfg, &cl, &err);
	conf_cli_release(&cl);
	if (ex != 0) {
		/* Its settings no longer load: it cannot run, say why once
		 * and leave it paused for people to mend. */
		mr_log_err("daemon", "campaign=%s event=refused reason=%s",
		    mr_q(slot->rec.name, (size_t)-1),
		    mr_q(mr_buf_cstr(&err), (size_t)-1));
		slot->rec.state = STORE_STATE_PAUSED;
		(void)s->ops->campaign_update(s, &slot->rec);
		store_campaign_release(&slot->rec);
		mr_buf_release(&err);
		return false;
	}
	ex = cstore_claim(s, &slot->rec, dcfg, &err);
	if (ex != 0) {
		mr_log_debug("daemon", "campaign=%s event=skipped reason=%s",
		    mr_q(slot->rec.name, (size_t)-1),
		    mr_q(mr_buf_cstr(&err), (size_t)-1));
		daemon_slot_free(slot);
		mr_buf_release(&err);
		return false;
	}
	slot->store = cstore_open(&slot->cfg, false, &err, &code);
	if (slot->store == NULL) {
		mr_log_err("daemon", "campaign=%s event=store error=%s",
		    mr_q(slot->rec.name, (size_t)-1),
		    mr_q(mr_buf_cstr(&err), (size_t)-1));
		(void)s->ops->campaign_release(s, slot->rec.id,
		    cstore_owner(), STORE_STATE_SCHEDULED);
		daemon_slot_free(slot);
		mr_buf_release(&err);
		return false;
	}
	mr_buf_release(&err);
	slot->used = true;
	atomic_init(&slot->stop, false);
	atomic_init(&slot->finished, false);
	printf("campaign %s started (id %" PRId64 ", stage %s)\n",
	    slot->rec.name, slot->rec.id, store_stage_name(slot->rec.stage));
	fflush(stdout);
	mr_log_info("daemon", "campaign=%s event=started stage=%s",
	    mr_q(slot->rec.name, (size_t)-1),
	    store_stage_name(slot->rec.stage));
	pthread_create(&slot->thread, NULL, daemon_run, slot);
	return true;
}

/* daemon_reap - a runner ended: give its campaign the state it earned. */
static void
daemon_reap(struct store *s, struct daemon_slot *slot)
{
	int state;

	pthread_join(slot->thread, NULL);
	if (slot->ex != 0) {
		/* It could not run (a changed list, a quota refused): it
		 * waits paused for people, with the reason logged. */
		mr_log_err("daemon", "campaign=%s event=failed reason=%s",
		    mr_q(slot->rec.name, (size_t)-1),
		    mr_q(mr_buf_cstr(&slot->err), (size_t)-1));
		printf("campaign %s failed: %s\n", slot->rec.name,
		    mr_buf_cstr(&slot->err));
		state = STORE_STATE_PAUSED;
	} else {
		switch (slot->end) {
		case RUNNER_COMPLETE:
			state = STORE_STATE_DONE;
			printf("campaign %s complete\n%s", slot->rec.name,
			    mr_buf_cstr(&slot->summary));
			break;
		case RUNNER_CANCELLED:
			state = STORE_STATE_CANCELLED;
			printf("campaign %s cancelled\n", slot->rec.name);
			break;
		case RUNNER_LOST_LEASE:
			state = -1;
			printf("campaign %s taken over by another sender\n",
			    slot->rec.name);
			break;
		default:
			/* A pause request keeps it paused; our own stop
			 * gives it back to whoever runs next. */
			state = slot->rec.state == STORE_STATE_PAUSED ?
			    STORE_STATE_PAUSED : STORE_STATE_SCHEDULED;
			printf("campaign %s %s\n", slot->rec.name,
			    state == STORE_STATE_PAUSED ? "paused" :
			    "stopped; it will go on at the next start");
			break;
		}
	}
	fflush(stdout);
	if (state >= 0 && s->ops->campaign_release(s, slot->rec.id,
	    cstore_owner(), state) != 0)
		mr_log_err("daemon", "campaign=%s event=release error=%s",
		    mr_q(slot->rec.name, (size_t)-1),
		    mr_q(store_error(s), (size_t)-1));
	daemon_slot_free(slot);
}

/* Campaigns of a sender that died on this machine, whatever its lease. */
struct daemon_orphans {
	int64_t		ids[DAEMON_SLOTS_MAX];
	size_t		n;
};

static int
daemon_orphan_cb(void *arg, const struct store_campaign *c)
{
	struct daemon_orphans *o = arg;
	const char *me = cstore_owner(), *colon;

	if (c->state != STORE_STATE_RUNNING || c->owner == NULL ||
	    strcmp(c->owner, me) == 0 || o->n == DAEMON_SLOTS_MAX)
		return 0;
	colon = strrchr(c->owner, ':');
	/* Same machine: cstore_claim() checks whether it is alive. */
	if (colon != NULL && strncmp(c->owner, me, (size_t)(colon -
	    c->owner)) == 0 && me[colon - c->owner] == ':')
		o->ids[o->n++] = c->id;
	return 0;
}

/* daemon_poll - start what is due, within daemon.max_campaigns. */
static void
daemon_poll(struct store *s, const struct conf_cli *dcl,
    const struct mr_config *cfg, struct daemon_slot *slots)
{
	struct daemon_orphans orphans;
	int64_t ids[DAEMON_SLOTS_MAX];
	size_t n = 0, i, j, used = 0;

	for (i = 0; i < DAEMON_SLOTS_MAX; i++)
		used += slots[i].used;
	if (used >= (size_t)cfg->daemon_max_campaigns)
		return;
	if (s->ops->campaign_due(s, (int64_t)time(NULL), ids,
	    DAEMON_SLOTS_MAX, &n) != 0) {
		mr_log_warn("daemon", "event=poll error=%s",
		    mr_q(store_error(s), (size_t)-1));
		return;
	}
	memset(&orphans, 0, sizeof(orphans));
	(void)s->ops->campaign_list(s, daemon_orphan_cb, &orphans);
	for (i = 0; i < orphans.n && n < DAEMON_SLOTS_MAX; i++) {
		for (j = 0; j < n && ids[j] != orphans.ids[i]; j++)
			;
		if (j == n)
			ids[n++] = orphans.ids[i];
	}
	for (i = 0; i < n && used < (size_t)cfg->daemon_max_campaigns; i++) {
		if (daemon_running(slots, ids[i]))
			continue;
		for (j = 0; j < DAEMON_SLOTS_MAX && slots[j].used; j++)
			;
		if (j < DAEMON_SLOTS_MAX &&
		    daemon_start(s, dcl, cfg, &slots[j], ids[i]))
			used++;
	}
}

int
daemon_cmd(int argc, char **argv)
{
	static const struct option longopts[] = {
		CONF_CLI_LONGOPTS,
		{ "store", required_argument, NULL, 'S' },
		{ "smtp-listen", required_argument, NULL, 'L' },
		{ "route", required_argument, NULL, 'R' },
		{ "accounting", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct daemon_slot slots[DAEMON_SLOTS_MAX];
	struct conf_cli cl = { 0 };
	struct mr_config cfg;
	struct mr_buf err = MR_BUF_INIT;
	struct store *s = NULL;
	struct pop3_serve *pop3 = NULL;
	struct injector *inj = NULL;
	struct sigaction sa;
	struct timespec ts;
	size_t i, busy;
	int c, r, ex = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:o:h", longopts, NULL)) != -1) {
		if ((r = conf_cli_option(&cl, c, optarg, "daemon")) != 0) {
			if (r > 0)
				continue;
			conf_cli_release(&cl);
			return EX_USAGE;
		}
		switch (c) {
		case 'S':
			conf_cli_set(&cl, "store.path", optarg);
			break;
		case 'L':
			conf_cli_set(&cl, "inject.listen", optarg);
			break;
		case 'R':
			conf_cli_set(&cl, "dns.route", optarg);
			break;
		case 'A':
			conf_cli_set(&cl, "send.accounting_file", optarg);
			break;
		case 'h':
			daemon_usage(stdout);
			conf_cli_release(&cl);
			return 0;
		default:
			conf_cli_bad_option("daemon", argv);
			daemon_usage(stderr);
			conf_cli_release(&cl);
			return EX_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mailroom daemon: unexpected argument "
		    "\"%s\"\n", argv[optind]);
		conf_cli_release(&cl);
		return EX_USAGE;
	}
	ex = conf_cli_load(&cfg, &cl, "daemon");
	if (ex != 0) {
		conf_cli_release(&cl);
		return ex;
	}
	s = cstore_open(&cfg, true, &err, &ex);
	if (s == NULL) {
		fprintf(stderr, "mailroom daemon: %s\n", mr_buf_cstr(&err));
		goto out;
	}
	daemon_shaper = shaper_new(&cfg, NULL, NULL, &err);
	if (daemon_shaper == NULL) {
		fprintf(stderr, "mailroom daemon: %s\n", mr_buf_cstr(&err));
		ex = EX_CONFIG;
		goto out;
	}
	/* The POP3 proxy role, when configured: its own loop and thread. */
	if (*cfg.pop3_proxy_listen != '\0') {
		signal(SIGPIPE, SIG_IGN);
		pop3 = pop3_serve_open(&cfg, stdout, &err, &ex);
		if (pop3 == NULL || pop3_serve_thread(pop3) != 0) {
			fprintf(stderr, "mailroom daemon: pop3 proxy: %s\n",
			    pop3 ? "cannot start its thread" :
			    mr_buf_cstr(&err));
			if (pop3 != NULL)
				ex = EX_OSERR;
			pop3_serve_close(&pop3);
			goto out;
		}
	}
	/* SMTP injection, when configured: spool, relay, listener. */
	if (*cfg.inject_listen != '\0') {
		signal(SIGPIPE, SIG_IGN);
		signal(SIGXFSZ, SIG_IGN);
		inj = inject_open(&cfg, daemon_shaper, &err, &ex);
		if (inj == NULL || inject_start(inj, &err) != 0) {
			fprintf(stderr, "mailroom daemon: smtp injection: %s\n",
			    mr_buf_cstr(&err));
			if (inj != NULL)
				ex = EX_OSERR;
			inject_close(&inj);
			pop3_serve_close(&pop3);
			goto out;
		}
		mr_buf_reset(&err);
		inject_status(inj, &err);
		fputs(mr_buf_cstr(&err), stdout);
		mr_buf_reset(&err);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = daemon_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	printf("mailroom daemon %s: store %s, up to %lld campaigns at once\n",
	    MR_VERSION, cfg.store_path, cfg.daemon_max_campaigns);
	fflush(stdout);
	ts.tv_sec = (time_t)(cfg.daemon_poll_interval / 1000);
	ts.tv_nsec = (long)(cfg.daemon_poll_interval % 1000) * 1000000L;
	while (!atomic_load(&daemon_stop)) {
		for (i = 0; i < DAEMON_SLOTS_MAX; i++)
			if (slots[i].used && atomic_load(&slots[i].finished))
				daemon_reap(s, &slots[i]);
		daemon_poll(s, &cl, &cfg, slots);
		nanosleep(&ts, NULL);
	}
	/* Stop: every runner finishes what is in flight and folds its
	 * progress; its campaign waits, scheduled, for the next daemon. */
	for (i = 0; i < DAEMON_SLOTS_MAX; i++)
		if (slots[i].used)
			atomic_store(&slots[i].stop, true);
	do {
		busy = 0;
		for (i = 0; i < DAEMON_SLOTS_MAX; i++) {
			if (!slots[i].used)
				continue;
			if (atomic_load(&slots[i].finished))
				daemon_reap(s, &slots[i]);
			else
				busy++;
		}
		if (busy) {
			ts.tv_sec = 0;
			ts.tv_nsec = 50 * 1000000L;
			nanosleep(&ts, NULL);
		}
	} while (busy);
	inject_close(&inj);
	pop3_serve_close(&pop3);
	printf("mailroom daemon: stopped\n");
out:
	shaper_free(&daemon_shaper);
	store_close(&s);
	conf_release(&cfg);
	conf_cli_release(&cl);
	mr_buf_release(&err);
	return ex;
}
