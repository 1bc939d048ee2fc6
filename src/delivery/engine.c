/*
 * engine.c - the delivery loop: domains, hosts, sessions, retries.
 *
 * A domain (struct edomain) holds its queue of ready entries and, once
 * resolved, its targets: one struct ehost per address of each MX host, in
 * preference order.  A domain with entries is attached to the first target
 * that is not marked down, on that host's list of wanting domains.  A host
 * opens sessions (up to smtp.max_connections, shared out among the
 * engines) while domains want it; a session that can take a transaction
 * takes one from the next wanting domain (round-robin), batching
 * recipients whose messages would be byte-identical.
 *
 * Failures: a session that fails before it is ready (refused, timed out,
 * a 4xx/5xx greeting) marks its host down for queue.host_down_time when no
 * other session to it works, and its domains move to their next target;
 * a domain left with no target defers its queue (each entry's attempt
 * counted) and waits for a host to come back.  Failures inside a
 * transaction defer or bounce its recipients by their replies.  Deferred
 * entries wait in a heap for their next attempt.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/mr_hmap.h"
#include "core/mr_log.h"
#include "core/mr_sockaddr.h"
#include "core/xalloc.h"
#include "delivery/engine.h"
#include "delivery/forensics.h"
#include "delivery/shape.h"
#include "dns/dns.h"
#include "queue/queue.h"
#include "recovery/recovery.h"
#include "smtpc/smtpc.h"

#define ENGINE_TICK_MS		100
#define ENGINE_BATCH_WINDOW	256	/* entries looked at for a batch */
#define ENGINE_HOST_FAILS	5	/* failures in a row: host down */

struct ehost;
struct esess;

enum edomain_state {
	EDOM_IDLE,		/* not resolved, or resolution expired */
	EDOM_RESOLVING,
	EDOM_READY,		/* targets known */
	EDOM_FAILED,		/* permanent DNS failure: bounce entries */
};

struct edomain {
	struct engine		*e;
	uint32_t		 id;
	const char		*name;		/* borrowed from the list */
	unsigned		 pool;		/* source pool (shape.h) */
	struct dqueue		 q;
	enum edomain_state	 state;
	uint64_t		 dns_req;	/* a lookup in flight, or 0 */
	uint64_t		 expires;	/* mono ms of the DNS answer */
	uint64_t		 ttl;		/* ms it was cached for */
	bool			 refreshing;	/* lookup while still READY */
	int			 fail_status;	/* EDOM_FAILED: MR_EDNS_* */
	char			*fail_reason;
	struct ehost		**targets;
	size_t			 ntargets;
	struct ehost		*host;		/* attached to, or NULL */
	TAILQ_ENTRY(edomain)	 host_link;
	uint64_t		 served;	/* last given a session, ms */
	uint64_t		 kicked;	/* e->kicks when last kicked */
	uint64_t		 wait_until;	/* all targets down: mono ms */
	LIST_ENTRY(edomain)	 wait_link;
	bool			 waiting;
};

TAILQ_HEAD(edomain_list, edomain);
TAILQ_HEAD(esess_list, esess);

/*
 * A host is one address of a destination (struct shape_dest: an MX set,
 * or a domain, see shape.h), so that two destinations sharing an address
 * keep their own connections and limits.
 */
struct ehost {
	char			*key;		/* "destination|ip:port" */
	char			 addr[64];	/* "ip:port" */
	char			*mx;		/* host name, for SNI and logs */
	unsigned		 pool;		/* source pool it serves */
	struct shape_dest	**sd;		/* by the pool's sources */
	unsigned		 next_src;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	struct edomain_list	 wanting;
	uint64_t		 queued;	/* entries of wanting domains */
	struct esess_list	 sessions;
	struct esess_list	 idle;
	unsigned		 nsess;		/* open, connecting included */
	unsigned		 nusable;	/* sessions that reached ready */
	uint64_t		 down_until;	/* mono ms */
	uint64_t		 wake_at;	/* the shaper said "later" */
	unsigned		 fails;		/* sessions failed in a row */
	LIST_ENTRY(ehost)	 wake_link;
	uint64_t		 no_tls_until;
	char			*last_error;
	char			 last_esc[16];
	unsigned		 last_code;
};

struct esess {
	struct engine		*e;
	struct ehost		*h;
	struct smtpc		*s;
	struct shape_dest	*sd;		/* its source's destination */
	unsigned		 ntxn;		/* transactions given */
	unsigned		 delivered;	/* ... with a recipient taken */
	bool			 idle;
	bool			 usable;
	TAILQ_ENTRY(esess)	 link;
	TAILQ_ENTRY(esess)	 idle_link;
};

struct etxn {
	struct smtpc_txn	 txn;		/* first: the session sees this */
	struct edomain		*dom;
	struct ehost		*host;
	struct shape_dest	*sd;
	uint64_t		 started;	/* mono ms */
	struct queue_entry	*ent;
	const char		**rcpt;
	struct smtpc_result	*res;
	struct mr_buf		 addrs;		/* NUL-separated */
	size_t			 cap;
	char			 msgid[320];
	char			 date[40];
	struct etxn		*next_free;
};

LIST_HEAD(edomain_wait_list, edomain);
LIST_HEAD(ehost_wake_list, ehost);

struct engine_jop {
	uint32_t	rcpt;
	uint8_t		type;		/* JOURNAL_DELIVERED, _BOUNCED, _DEFER */
	uint16_t	attempts;
};

struct engine {
	unsigned		 id;
	struct campaign		*camp;
	const struct mr_config	*cfg;
	struct event_base	*base;
	struct dns		*dns;
	const struct msgsrc	*src;		/* the campaign's */
	struct msgsrc_scratch	*sc;		/* ours */
	struct edomain		**doms;		/* by domain id; NULL: not ours */
	size_t			 ndoms;
	struct ehost		**hosts;
	size_t			 nhosts;
	struct mr_hmap		*host_index;
	struct rheap		 retry;
	struct event		*retry_timer;
	uint32_t		 retry_armed;	/* due of the armed timer */
	bool			 retry_is_armed;
	struct event		*tick;
	struct edomain_wait_list waiting;
	struct ehost_wake_list	 waking;	/* hosts the shaper held */
	/* Recipients posted from other threads (engine_post()). */
	pthread_mutex_t		 inbox_mu;
	uint64_t		*inbox;		/* rcpt | attempts << 32 */
	size_t			 ninbox, inbox_cap;
	struct event		*inbox_ev;
	uint64_t		 kicks;		/* inbox rounds, from 1 */
	struct event		*wake_timer;	/* for the soonest of them */
	uint64_t		 wake_armed;	/* mono ms it is set for */
	struct etxn		*free_txns;
	uint64_t		 epoch;		/* mono ms at engine_new */
	uint64_t		 pending;	/* recipients not final */
	uint64_t		 queued;	/* entries in domain queues */
	unsigned		 nsess;
	unsigned		 workers;
	uint64_t		 slots_short;	/* mono ms: a host found none */
	bool			 stopping;
	time_t			 date_sec;
	char			 date[40];
	struct mr_buf		 tmp;
	struct mr_buf		 fx;		/* forensics rendering */
	struct mr_buf		 acctbuf;	/* accounting lines to write */
	struct engine_jop	*jops;		/* journal records to write */
	size_t			 njops, jopcap;
	struct journal		*journal;	/* NULL: no recovery */
	bool			 paused;	/* the journal has no disk */
	struct engine_stats	 stats;
};

static void engine_kick_domain(struct engine *e, struct edomain *d);
static void engine_kick_host(struct engine *e, struct ehost *h);
static void engine_check_done(struct engine *e);
static void engine_inbox_cb(evutil_socket_t fd, short what, void *arg);
static void engine_jop(struct engine *e, uint32_t rcpt, uint8_t type,
    uint16_t attempts);
static void engine_commit(struct engine *e, bool force);
static void engine_host_down(struct engine *e, struct ehost *h,
    const struct smtpc_end *end);

static const struct smtpc_ops engine_smtpc_ops;

/* ---------------------------------------------------------------- */
/* Small helpers                                                    */
/* ---------------------------------------------------------------- */

static uint64_t
engine_now(const struct engine *e)
{
	return mr_clock_ms() - e->epoch;
}

static const char *
engine_date(struct engine *e)
{
	time_t now = time(NULL);

	if (now != e->date_sec) {
		e->date_sec = now;
		mr_rfc5322_date(now, e->date, sizeof(e->date));
	}
	return e->date;
}

static bool
engine_host_eq(void *ctx, uint32_t value, const void *key, size_t len)
{
	struct engine *e = ctx;

	return strlen(e->hosts[value]->key) == len &&
	    memcmp(e->hosts[value]->key, key, len) == 0;
}

/*
 * engine_host - the host for address a of MX host mx, serving domain's
 * destination (whose MX hosts are mxs[0..nmx)) from source pool pool,
 * made on first use.
 */
static struct ehost *
engine_host(struct engine *e, unsigned pool, const char *domain,
    const char *const *mxs, size_t nmx, const struct dns_addr *a,
    const char *mx)
{
	struct shaper *sh = e->camp->shaper;
	struct shape_dest *sd0;
	char addr[64];
	struct mr_buf key = MR_BUF_INIT;
	uint32_t v;
	uint64_t h;
	unsigned i;
	struct ehost *host;

	mr_sockaddr_format((const struct sockaddr *)&a->ss, addr, sizeof(addr));
	sd0 = shaper_dest(sh, domain, mxs, nmx, shaper_pool_source(sh, pool,
	    0));
	if (pool != 0)
		mr_buf_printf(&key, "%u#", pool);
	mr_buf_printf(&key, "%s|%s", shape_dest_name(sd0), addr);
	h = mr_hash(key.data, key.len);
	v = mr_hmap_find(e->host_index, h, key.data, key.len);
	if (v != MR_HMAP_NONE) {
		mr_buf_release(&key);
		return e->hosts[v];
	}
	host = xcalloc(1, sizeof(*host));
	host->key = xstrdup(mr_buf_cstr(&key));
	snprintf(host->addr, sizeof(host->addr), "%s", addr);
	host->mx = xstrdup(mx);
	host->pool = pool;
	host->sd = xcalloc(shaper_pool_nsources(sh, pool), sizeof(*host->sd));
	host->sd[0] = sd0;
	for (i = 1; i < shaper_pool_nsources(sh, pool); i++)
		host->sd[i] = shaper_dest(sh, domain, mxs, nmx,
		    shaper_pool_source(sh, pool, i));
	memcpy(&host->ss, &a->ss, a->len);
	host->sslen = a->len;
	TAILQ_INIT(&host->wanting);
	TAILQ_INIT(&host->sessions);
	TAILQ_INIT(&host->idle);
	e->hosts = xreallocarray(e->hosts, e->nhosts + 1, sizeof(*e->hosts));
	e->hosts[e->nhosts] = host;
	mr_hmap_put(e->host_index, h, key.data, key.len, (uint32_t)e->nhosts);
	e->nhosts++;
	mr_buf_release(&key);
	return host;
}

static struct edomain *
engine_domain(struct engine *e, uint32_t id)
{
	struct edomain *d;
	size_t n;

	if (id >= e->ndoms) {
		/* A source whose domains grow (the relay). */
		n = e->ndoms ? e->ndoms : 64;
		while (n <= id)
			n *= 2;
		e->doms = xreallocarray(e->doms, n, sizeof(*e->doms));
		memset(e->doms + e->ndoms, 0, (n - e->ndoms) *
		    sizeof(*e->doms));
		e->ndoms = n;
	}
	if ((d = e->doms[id]) != NULL)
		return d;
	d = xcalloc(1, sizeof(*d));
	d->e = e;
	d->id = id;
	d->name = e->src->ops->domain_name(e->src->arg, id);
	d->pool = e->src->ops->domain_pool != NULL ?
	    e->src->ops->domain_pool(e->src->arg, id) : e->camp->pool;
	dqueue_init(&d->q, (uint32_t)e->cfg->queue_max_length);
	e->doms[id] = d;
	return d;
}

static void
engine_note_queue(struct engine *e)
{
	if (e->queued > e->stats.queued_peak)
		e->stats.queued_peak = e->queued;
}

/* ---------------------------------------------------------------- */
/* Outcomes                                                         */
/* ---------------------------------------------------------------- */

struct engine_outcome {
	enum acct_type	 type;
	const char	*rcpt;		/* NULL: read it from the list */
	const char	*mx;
	const char	*host;
	unsigned	 code;
	const char	*dsn;
	const char	*reply;
	const char	*message_id;
	const char	*forensics;
};

/* engine_record - account for one outcome of entry ent. */
static void
engine_record(struct engine *e, const struct queue_entry *ent,
    const struct engine_outcome *o)
{
	struct campaign *c = e->camp;
	struct campaign_domain_stats *ds = c->dom ? &c->dom[ent->domain] :
	    NULL;
	struct acct_record r;

	switch (o->type) {
	case ACCT_DELIVERED:
		atomic_fetch_add_explicit(&c->delivered, 1,
		    memory_order_relaxed);
		if (ds)
			ds->delivered++;
		break;
	case ACCT_BOUNCED:
		atomic_fetch_add_explicit(&c->bounced, 1,
		    memory_order_relaxed);
		if (ds)
			ds->bounced++;
		break;
	case ACCT_DEFERRED:
		atomic_fetch_add_explicit(&c->deferrals, 1,
		    memory_order_relaxed);
		if (ds)
			ds->deferrals++;
		break;
	case ACCT_REJECTED:
	case ACCT_BACKOFF:
		break;
	}
	if (o->type != ACCT_DEFERRED) {
		MR_ASSERT(e->pending > 0);
		e->pending--;
	}
	if (c->rec != NULL && o->type != ACCT_REJECTED)
		engine_jop(e, ent->rcpt, o->type == ACCT_DEFERRED ?
		    JOURNAL_DEFER : o->type == ACCT_BOUNCED ? JOURNAL_BOUNCED :
		    JOURNAL_DELIVERED, ent->attempts);
	if (c->acct != NULL) {
		memset(&r, 0, sizeof(r));
		r.type = o->type;
		if (o->rcpt != NULL) {
			r.rcpt = o->rcpt;
			r.rcpt_len = strlen(o->rcpt);
		} else {
			e->src->ops->address(e->src->arg, e->sc, ent->rcpt,
			    &r.rcpt, &r.rcpt_len);
		}
		r.line = e->src->ops->line(e->src->arg, ent->rcpt);
		r.domain = e->src->ops->domain_name(e->src->arg, ent->domain);
		r.mx = o->mx;
		r.host = o->host;
		r.attempt = ent->attempts;
		r.code = o->code;
		r.dsn = o->dsn;
		r.reply = o->reply;
		r.message_id = o->message_id;
		r.forensics = o->forensics;
		acct_format(c->acct, &r, &e->acctbuf);
	}
	if ((o->type == ACCT_DELIVERED || o->type == ACCT_BOUNCED) &&
	    e->src->ops->final != NULL) {
		struct msgsrc_final fin;

		fin.bounced = o->type == ACCT_BOUNCED;
		fin.code = o->code;
		fin.dsn = o->dsn;
		fin.reply = o->reply;
		fin.mx = o->mx;
		e->src->ops->final(e->src->arg, ent->rcpt, &fin);
	}
}

/*
 * engine_jop - a journal record to write once the outcome's accounting
 * line is out (engine_commit): after a crash an outcome in the journal
 * is always in the accounting file too.
 */
static void
engine_jop(struct engine *e, uint32_t rcpt, uint8_t type, uint16_t attempts)
{
	if (e->njops == e->jopcap) {
		e->jopcap = e->jopcap ? e->jopcap * 2 : 256;
		e->jops = xreallocarray(e->jops, e->jopcap, sizeof(*e->jops));
	}
	e->jops[e->njops].rcpt = rcpt;
	e->jops[e->njops].type = type;
	e->jops[e->njops].attempts = attempts;
	e->njops++;
}

/*
 * engine_commit - write the outcomes recorded so far: accounting lines
 * first (one write), then their journal records.  Without recovery the
 * lines wait until 64 KB gather (or force: the tick, the end).
 */
static void
engine_commit(struct engine *e, bool force)
{
	struct campaign *c = e->camp;
	size_t i;

	if (c->acct != NULL && e->acctbuf.len > 0 &&
	    (force || c->rec != NULL || e->acctbuf.len >= 65536)) {
		acct_append(c->acct, e->acctbuf.data, e->acctbuf.len);
		mr_buf_reset(&e->acctbuf);
	}
	for (i = 0; i < e->njops; i++) {
		if (e->jops[i].type != JOURNAL_DEFER)
			recovery_final(c->rec, e->journal, e->jops[i].rcpt,
			    e->jops[i].type == JOURNAL_BOUNCED,
			    e->jops[i].attempts);
		else
			recovery_defer(c->rec, e->journal, e->jops[i].rcpt,
			    e->jops[i].attempts);
	}
	e->njops = 0;
}

static uint64_t
engine_backoff(const struct engine *e, unsigned attempts)
{
	uint64_t d = (uint64_t)e->cfg->queue_retry_base;
	unsigned i;

	for (i = 1; i < attempts && d < (uint64_t)e->cfg->
	    queue_retry_max_interval; i++)
		d *= 2;
	if (d > (uint64_t)e->cfg->queue_retry_max_interval)
		d = (uint64_t)e->cfg->queue_retry_max_interval;
	return d;
}

static void
engine_arm_retry(struct engine *e)
{
	const struct queue_entry *top = rheap_peek(&e->retry);
	int32_t wait;
	struct timeval tv;

	if (top == NULL)
		return;
	if (e->retry_is_armed && queue_due_diff(e->retry_armed, top->due) <=
	    0 && evtimer_pending(e->retry_timer, NULL))
		return;
	wait = queue_due_diff(top->due, (uint32_t)engine_now(e));
	if (wait < 0)
		wait = 0;
	tv.tv_sec = (time_t)(wait / 1000);
	tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
	evtimer_add(e->retry_timer, &tv);
	e->retry_armed = top->due;
	e->retry_is_armed = true;
}

/*
 * engine_defer - a temporary failure of entry ent (its attempt already
 * counted): a deferred record, then either a retry later or, past the
 * limits, a final bounce.
 */
static void
engine_defer(struct engine *e, struct queue_entry ent,
    const struct engine_outcome *o)
{
	struct engine_outcome fin;
	uint64_t now = engine_now(e), next;
	const char *why = NULL;

	engine_record(e, &ent, o);
	next = now + engine_backoff(e, ent.attempts);
	if (ent.attempts >= atomic_load_explicit(&e->camp->retry_limit,
	    memory_order_relaxed))
		why = "attempts";
	else if (e->src->ops->received != NULL ? mr_wall_ms() + (next - now) >=
	    e->src->ops->received(e->src->arg, ent.rcpt) +
	    (uint64_t)e->cfg->queue_max_age : next + e->epoch >=
	    e->camp->start_mono_ms + (uint64_t)e->cfg->queue_max_age)
		why = "age";
	if (why == NULL && !e->stopping) {
		ent.due = (uint32_t)next;
		rheap_push(&e->retry, &ent);
		engine_arm_retry(e);
		return;
	}
	if (e->stopping) {
		/* Not final: left for a later run (counted unfinished). */
		e->pending--;
		return;
	}
	fin = *o;
	fin.type = ACCT_BOUNCED;
	mr_buf_reset(&e->tmp);
	mr_buf_printf(&e->tmp, "retry limit reached (queue.max_%s) after %u "
	    "attempt%s; last reply: %s", why, ent.attempts,
	    ent.attempts == 1 ? "" : "s", o->reply ? o->reply : "");
	fin.reply = mr_buf_cstr(&e->tmp);
	engine_record(e, &ent, &fin);
}

/* engine_fail_queue - every entry queued for d fails the same way. */
static void
engine_fail_queue(struct engine *e, struct edomain *d, bool permanent,
    const struct engine_outcome *o)
{
	struct queue_entry ent;

	if (d->host) {
		d->host->queued -= d->q.len;
		TAILQ_REMOVE(&d->host->wanting, d, host_link);
		d->host = NULL;
	}
	while (dqueue_pop(&d->q, &ent)) {
		e->queued--;
		ent.attempts++;
		if (permanent)
			engine_record(e, &ent, o);
		else
			engine_defer(e, ent, o);
	}
	engine_commit(e, false);
	engine_check_done(e);
}

/* ---------------------------------------------------------------- */
/* Domains: DNS and attachment to hosts                             */
/* ---------------------------------------------------------------- */

static void
engine_detach(struct edomain *d)
{
	if (d->host == NULL)
		return;
	d->host->queued -= d->q.len;
	TAILQ_REMOVE(&d->host->wanting, d, host_link);
	d->host = NULL;
}

static void
engine_wait(struct engine *e, struct edomain *d, uint64_t until)
{
	d->wait_until = until;
	if (!d->waiting) {
		LIST_INSERT_HEAD(&e->waiting, d, wait_link);
		d->waiting = true;
	}
}

/*
 * engine_attach - put d on the list of its first usable target.  With no
 * usable target: if some failed just now (failed_host), the queue is
 * deferred with that host's error; otherwise d waits for the first host to
 * come back.
 */
static void
engine_attach(struct engine *e, struct edomain *d, struct ehost *failed)
{
	uint64_t now = mr_clock_ms(), soonest = UINT64_MAX;
	struct ehost *h = NULL;
	struct engine_outcome o;
	size_t i;

	for (i = 0; i < d->ntargets; i++) {
		if (d->targets[i]->down_until <= now) {
			h = d->targets[i];
			break;
		}
		if (d->targets[i]->down_until < soonest)
			soonest = d->targets[i]->down_until;
	}
	if (h == NULL) {
		engine_detach(d);
		if (failed != NULL) {
			memset(&o, 0, sizeof(o));
			o.type = ACCT_DEFERRED;
			o.mx = failed->mx;
			o.host = failed->addr;
			o.code = failed->last_code;
			o.dsn = failed->last_esc[0] ? failed->last_esc :
			    "4.4.1";
			o.reply = failed->last_error;
			engine_fail_queue(e, d, false, &o);
		}
		engine_wait(e, d, soonest);
		return;
	}
	if (d->host == h)
		return;
	engine_detach(d);
	d->host = h;
	if (d->served == 0)
		d->served = mr_clock_ms();
	h->queued += d->q.len;
	TAILQ_INSERT_TAIL(&h->wanting, d, host_link);
	engine_kick_host(e, h);
}

static void
engine_dns_done(void *arg, uint64_t reqid, const struct dns_result *res);

/* engine_mx_name - "host", or "host:port" off the standard port. */
static char *
engine_mx_name(const struct dns_host *h, unsigned smtp_port)
{
	struct mr_buf b = MR_BUF_INIT;

	if (h->port == 0 || h->port == smtp_port)
		return xstrdup(h->name);
	mr_buf_printf(&b, "%s:%u", h->name, h->port);
	return b.data;
}

/* engine_apply_dns - use a resolution result for d. */
static void
engine_apply_dns(struct engine *e, struct edomain *d,
    const struct dns_result *res)
{
	struct engine_outcome o;
	const char **mxs;
	size_t i, j;

	free(d->targets);
	d->targets = NULL;
	d->ntargets = 0;
	d->expires = res->expires_ms;
	d->ttl = res->ttl_ms;
	memset(&o, 0, sizeof(o));
	o.reply = res->reason;
	switch (res->status) {
	case 0:
		break;
	case MR_EDNS_TEMP:
		o.type = ACCT_DEFERRED;
		o.dsn = "4.4.3";
		d->state = EDOM_IDLE;
		engine_fail_queue(e, d, false, &o);
		return;
	default:
		d->state = EDOM_FAILED;
		d->fail_status = res->status;
		free(d->fail_reason);
		d->fail_reason = xstrdup(res->reason ? res->reason :
		    "permanent DNS failure");
		o.type = ACCT_BOUNCED;
		o.dsn = res->status == MR_EDNS_NULLMX ? "5.1.10" : "5.1.2";
		o.reply = d->fail_reason;
		engine_fail_queue(e, d, true, &o);
		return;
	}
	for (i = 0; i < res->nhosts; i++)
		d->ntargets += res->hosts[i].naddrs;
	d->targets = xcalloc(d->ntargets ? d->ntargets : 1,
	    sizeof(*d->targets));
	d->ntargets = 0;
	/* The destination is named by its MX hosts; a port other than
	 * SMTP's makes a different destination (routes on loopback). */
	mxs = xcalloc(res->nhosts ? res->nhosts : 1, sizeof(*mxs));
	for (i = 0; i < res->nhosts; i++)
		mxs[i] = engine_mx_name(&res->hosts[i],
		    (unsigned)e->cfg->smtp_port);
	for (i = 0; i < res->nhosts; i++)
		for (j = 0; j < res->hosts[i].naddrs; j++)
			d->targets[d->ntargets++] = engine_host(e, d->pool,
			    d->name, mxs, res->nhosts,
			    &res->hosts[i].addrs[j], res->hosts[i].name);
	for (i = 0; i < res->nhosts; i++)
		free((char *)mxs[i]);
	free(mxs);
	d->state = EDOM_READY;
	if (d->ntargets == 0) {
		o.type = ACCT_DEFERRED;
		o.dsn = "4.4.3";
		o.reply = "no MX host has an address";
		d->state = EDOM_IDLE;
		engine_fail_queue(e, d, false, &o);
		return;
	}
	engine_attach(e, d, NULL);
}

/* engine_dns_done - an answer for d (which lives as long as its engine;
 * dns_free() cancels what is pending before the engine goes). */
static void
engine_dns_done(void *arg, uint64_t reqid, const struct dns_result *res)
{
	struct edomain *d = arg;
	struct engine *e = d->e;

	(void)reqid;
	d->dns_req = 0;
	if (d->refreshing) {
		d->refreshing = false;
		if (res->status == MR_EDNS_TEMP) {
			/* Keep delivering to what we know; ask again soon. */
			d->expires = mr_clock_ms() + 60000;
			if (d->q.len > 0 && d->host == NULL && !d->waiting)
				engine_attach(e, d, NULL);
			return;
		}
	}
	d->state = EDOM_IDLE;
	engine_apply_dns(e, d, res);
	engine_check_done(e);
}

/*
 * engine_refresh - look a busy domain up again before its answer expires
 * (in the last tenth of its TTL), so that delivery never waits on DNS.
 */
static void
engine_refresh(struct engine *e, struct edomain *d)
{
	uint64_t margin = d->ttl / 10 > 1000 ? d->ttl / 10 : 1000;

	if (d->state != EDOM_READY || d->dns_req != 0 ||
	    d->expires == UINT64_MAX || mr_clock_ms() + margin < d->expires)
		return;
	d->refreshing = true;
	d->dns_req = dns_lookup_mail(e->dns, d->name, engine_dns_done, d);
}

/*
 * engine_kick_domain - get d's entries moving: resolve it if needed,
 * attach it to a host, or fail its queue.
 */
static void
engine_kick_domain(struct engine *e, struct edomain *d)
{
	const struct dns_result *res;
	struct engine_outcome o;
	uint64_t now = mr_clock_ms();

	if (d->q.len == 0)
		return;
	if (d->dns_req != 0) {
		/* A lookup is in flight: a refresh keeps the old targets
		 * working meanwhile. */
		if (d->state == EDOM_READY && d->host)
			engine_kick_host(e, d->host);
		else if (d->state == EDOM_READY && !d->waiting)
			engine_attach(e, d, NULL);
		return;
	}
	if (d->state == EDOM_FAILED && now < d->expires) {
		memset(&o, 0, sizeof(o));
		o.type = ACCT_BOUNCED;
		o.dsn = d->fail_status == MR_EDNS_NULLMX ? "5.1.10" : "5.1.2";
		o.reply = d->fail_reason;
		engine_fail_queue(e, d, true, &o);
		return;
	}
	if (d->state == EDOM_READY && now < d->expires) {
		if (d->host == NULL && !d->waiting)
			engine_attach(e, d, NULL);
		else if (d->host)
			engine_kick_host(e, d->host);
		return;
	}
	res = dns_cached_mail(e->dns, d->name);
	if (res != NULL) {
		engine_apply_dns(e, d, res);
		return;
	}
	d->state = EDOM_RESOLVING;
	d->dns_req = dns_lookup_mail(e->dns, d->name, engine_dns_done, d);
}

/* ---------------------------------------------------------------- */
/* Transactions                                                     */
/* ---------------------------------------------------------------- */

static struct etxn *
engine_txn_get(struct engine *e)
{
	struct etxn *t = e->free_txns;
	size_t cap = (size_t)e->cfg->send_max_rcpt_per_message;

	if (t != NULL) {
		e->free_txns = t->next_free;
	} else {
		t = xcalloc(1, sizeof(*t));
		t->cap = cap;
		t->ent = xcalloc(cap, sizeof(*t->ent));
		t->rcpt = xcalloc(cap, sizeof(*t->rcpt));
		t->res = xcalloc(cap, sizeof(*t->res));
		t->txn.body = evbuffer_new();
	}
	mr_buf_reset(&t->addrs);
	mr_buf_reset(&t->txn.texts);
	evbuffer_drain(t->txn.body, evbuffer_get_length(t->txn.body));
	t->txn.res = t->res;
	t->txn.rcpt = t->rcpt;
	return t;
}

static void
engine_txn_put(struct engine *e, struct etxn *t)
{
	t->next_free = e->free_txns;
	e->free_txns = t;
}

static void
engine_txn_free_all(struct engine *e)
{
	struct etxn *t;

	while ((t = e->free_txns) != NULL) {
		e->free_txns = t->next_free;
		free(t->ent);
		free(t->rcpt);
		free(t->res);
		mr_buf_release(&t->addrs);
		mr_buf_release(&t->txn.texts);
		evbuffer_free(t->txn.body);
		free(t);
	}
}

static bool
engine_batch_match(void *arg, const struct queue_entry *head,
    const struct queue_entry *x)
{
	struct engine *e = arg;
	uint64_t a = e->src->ops->fingerprint(e->src->arg, head->rcpt);

	return a != 0 && a == e->src->ops->fingerprint(e->src->arg,
	    x->rcpt) && head->attempts == x->attempts;
}

/*
 * engine_build - a transaction for the n entries in ents (same domain),
 * rendered from the first one's fields.  The message is checked against
 * send.max_message_size; returns NULL (after bouncing the entries) when
 * it is too big.
 */
static struct etxn *
engine_build(struct engine *e, struct edomain *d, struct ehost *h,
    const struct queue_entry *ents, size_t n)
{
	struct campaign *c = e->camp;
	const struct msgsrc *src = e->src;
	struct etxn *t = engine_txn_get(e);
	size_t i, off[1024], alen;
	const char *addr, *why = NULL;
	struct msgsrc_stamp st;
	bool eight = false;
	int rc;

	MR_ASSERT(n <= t->cap && n <= 1024);
	memset(t->res, 0, n * sizeof(*t->res));
	t->dom = d;
	t->host = h;
	if (src->ops->queue_id != NULL)
		snprintf(t->msgid, sizeof(t->msgid), "%016llx",
		    (unsigned long long)src->ops->queue_id(src->arg,
		    ents[0].rcpt));
	else if ((size_t)snprintf(t->msgid, sizeof(t->msgid),
	    "<%s.%u.%u@%s>", c->token, ents[0].rcpt, ents[0].attempts + 1u,
	    e->cfg->send_message_id_domain) >= sizeof(t->msgid))
		mr_panic("Message-ID longer than %zu", sizeof(t->msgid));
	snprintf(t->date, sizeof(t->date), "%s", engine_date(e));
	for (i = 0; i < n; i++) {
		t->ent[i] = ents[i];
		src->ops->address(src->arg, e->sc, ents[i].rcpt, &addr, &alen);
		off[i] = t->addrs.len;
		mr_buf_append(&t->addrs, addr, alen);
		mr_buf_putc(&t->addrs, '\0');
	}
	for (i = 0; i < n; i++)
		t->rcpt[i] = t->addrs.data + off[i];
	/* The batch shares one rendering (its messages are identical). */
	st.message_id = t->msgid;
	st.date = t->date;
	rc = src->ops->render(src->arg, e->sc, ents[n - 1].rcpt, &st, true,
	    t->txn.body, &t->txn.size, &eight, &why);
	t->txn.nrcpts = n;
	t->txn.mail_from = src->ops->mail_from(src->arg, ents[0].rcpt);
	t->txn.eight_bit = eight;
	if (rc == MSGSRC_TEMP) {
		/* The source could not read it now (a full descriptor table,
		 * an I/O error): tried again later, never bounced for it. */
		struct engine_outcome o;

		memset(&o, 0, sizeof(o));
		o.type = ACCT_DEFERRED;
		o.dsn = "4.3.0";
		mr_buf_reset(&e->tmp);
		mr_buf_printf(&e->tmp, "message cannot be read now: %s",
		    why ? why : "unknown error");
		o.reply = mr_buf_cstr(&e->tmp);
		for (i = 0; i < n; i++) {
			t->ent[i].attempts++;
			o.rcpt = t->rcpt[i];
			engine_defer(e, t->ent[i], &o);
		}
		engine_txn_put(e, t);
		engine_commit(e, false);
		return NULL;
	}
	if (rc != 0 || t->txn.size > e->camp->max_message_size) {
		struct engine_outcome o;

		memset(&o, 0, sizeof(o));
		o.type = ACCT_BOUNCED;
		o.dsn = rc != 0 ? "5.3.0" : "5.3.4";
		mr_buf_reset(&e->tmp);
		if (rc != 0)
			mr_buf_printf(&e->tmp, "message cannot be read: %s",
			    why ? why : "unknown error");
		else
			mr_buf_printf(&e->tmp, "message of %zu bytes exceeds "
			    "the size limit of %zu", t->txn.size,
			    e->camp->max_message_size);
		o.reply = mr_buf_cstr(&e->tmp);
		for (i = 0; i < n; i++) {
			t->ent[i].attempts++;
			o.rcpt = t->rcpt[i];
			engine_record(e, &t->ent[i], &o);
		}
		engine_txn_put(e, t);
		engine_commit(e, false);
		return NULL;
	}
	return t;
}

/*
 * engine_too_big - the server's SIZE (RFC 1870) is less than the message:
 * its recipients bounce, as the server would refuse it with 552.
 */
static void
engine_too_big(struct engine *e, struct etxn *t, unsigned long limit)
{
	struct engine_outcome o;
	size_t i;

	memset(&o, 0, sizeof(o));
	o.type = ACCT_BOUNCED;
	o.mx = t->host->mx;
	o.host = t->host->addr;
	o.code = 552;
	o.dsn = "5.3.4";
	o.message_id = t->msgid;
	mr_buf_reset(&e->tmp);
	mr_buf_printf(&e->tmp, "message of %zu bytes exceeds the size limit "
	    "of %lu bytes that %s announced", t->txn.size, limit, t->host->addr);
	o.reply = mr_buf_cstr(&e->tmp);
	for (i = 0; i < t->txn.nrcpts; i++) {
		t->ent[i].attempts++;
		o.rcpt = t->rcpt[i];
		engine_record(e, &t->ent[i], &o);
	}
	engine_txn_put(e, t);
	engine_commit(e, false);
}

/*
 * engine_pick - the wanting domain of h that a session serves next, by
 * queue.policy, with queue.age_cap first: a domain not served for that
 * long goes before any other (SPEC D3; seed 003 [0038]).  Looks at the
 * first ENGINE_PICK_SCAN domains only, so a pick costs at most that.
 * Empty domains met on the way are detached.
 */
#define ENGINE_PICK_SCAN	256
static struct edomain *
engine_pick(struct engine *e, struct ehost *h)
{
	uint64_t now = mr_clock_ms(), cap = (uint64_t)e->cfg->queue_age_cap;
	struct edomain *d, *next, *best = NULL;
	const struct queue_entry *a, *b;
	unsigned n = 0;

	for (d = TAILQ_FIRST(&h->wanting); d != NULL && n < ENGINE_PICK_SCAN;
	    d = next, n++) {
		next = TAILQ_NEXT(d, host_link);
		if (d->q.len == 0) {
			engine_detach(d);
			continue;
		}
		if (now - d->served >= cap)
			return d;
		if (best == NULL) {
			best = d;
			if (e->cfg->queue_policy == CONF_QP_ROUND_ROBIN &&
			    n >= 16)
				break;
			continue;
		}
		switch (e->cfg->queue_policy) {
		case CONF_QP_LONGEST:
			if (d->q.len > best->q.len)
				best = d;
			break;
		case CONF_QP_OLDEST:
			a = dqueue_peek(&d->q);
			b = dqueue_peek(&best->q);
			if (queue_due_diff(a->due, b->due) < 0)
				best = d;
			break;
		default:
			break;
		}
	}
	return best;
}

/* engine_arm_wake - make sure the wake timer fires by mono ms `at`. */
static void
engine_arm_wake(struct engine *e, uint64_t at)
{
	uint64_t now = mr_clock_ms(), wait;
	struct timeval tv;

	if (e->wake_armed != 0 && e->wake_armed <= at &&
	    evtimer_pending(e->wake_timer, NULL))
		return;
	wait = at > now ? at - now : 0;
	tv.tv_sec = (time_t)(wait / 1000);
	tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
	evtimer_add(e->wake_timer, &tv);
	e->wake_armed = at;
}

/* engine_hold - the shaper said "not now" for h: ask again at wake (0:
 * at the next tick). */
static void
engine_hold(struct engine *e, struct ehost *h, uint64_t wake)
{
	uint64_t now = mr_clock_ms();

	if (wake == 0 || wake < now)
		wake = now + ENGINE_TICK_MS;
	if (h->wake_at != 0) {
		if (wake < h->wake_at)
			h->wake_at = wake;
		return;
	}
	h->wake_at = wake;
	LIST_INSERT_HEAD(&e->waking, h, wake_link);
	engine_arm_wake(e, wake);
}

/*
 * engine_feed - give session es a transaction from the next wanting domain
 * of its host, as far as its destination's limits allow.  Returns false
 * when there is no work for it now.
 */
static bool
engine_feed(struct engine *e, struct esess *es)
{
	struct ehost *h = es->h;
	struct queue_entry ents[1024];
	struct edomain *d;
	struct etxn *t;
	unsigned long limit;
	unsigned per_conn, allowed;
	uint64_t now, wake;
	size_t n, max = (size_t)e->cfg->send_max_rcpt_per_message;

	if (max > 1024)
		max = 1024;
	if (!smtpc_can_send(es->s) || e->paused)
		return false;
	if (e->journal != NULL &&
	    journal_reserve(e->journal, 4 * max) != 0) {
		/* No disk for the journal: start nothing that it could not
		 * record; the tick asks again. */
		e->paused = true;
		mr_log_warn("engine", "engine=%u event=paused reason=\"no "
		    "disk space for the recovery journal\"", e->id);
		return false;
	}
	per_conn = shape_per_connection(es->sd);
	if (per_conn != 0 && es->ntxn >= per_conn) {
		/* The destination takes no more on one connection: a new
		 * one carries on. */
		smtpc_quit(es->s);
		return false;
	}
	while (!e->stopping && h->queued > 0) {
		now = mr_clock_ms();
		allowed = shape_take(es->sd, now, e->camp->batching ?
		    (unsigned)max : 1, &wake);
		if (allowed == 0) {
			engine_hold(e, h, wake);
			return false;
		}
		if ((d = engine_pick(e, h)) == NULL) {
			shape_give_back(es->sd, allowed);
			return false;
		}
		n = e->camp->batching ? dqueue_pop_batch(&d->q,
		    engine_batch_match, e, allowed, ENGINE_BATCH_WINDOW, ents) :
		    (dqueue_pop(&d->q, &ents[0]) ? 1 : 0);
		if (n < allowed)
			shape_give_back(es->sd, allowed - (unsigned)n);
		d->served = now;
		h->queued -= n;
		e->queued -= n;
		TAILQ_REMOVE(&h->wanting, d, host_link);
		if (d->q.len > 0)
			TAILQ_INSERT_TAIL(&h->wanting, d, host_link);
		else
			d->host = NULL;
		engine_refresh(e, d);
		t = engine_build(e, d, h, ents, n);
		if (t == NULL)
			continue;
		limit = smtpc_size_limit(es->s);
		if (limit != 0 && t->txn.size > limit) {
			engine_too_big(e, t, limit);
			continue;
		}
		t->sd = es->sd;
		t->started = now;
		if (e->journal != NULL)
			for (n = 0; n < t->txn.nrcpts; n++)
				recovery_intent(e->camp->rec, e->journal,
				    t->ent[n].rcpt, t->ent[n].attempts + 1);
		if (smtpc_send(es->s, &t->txn) != 0)
			mr_panic("session refused a transaction after "
			    "smtpc_can_send()");
		es->ntxn++;
		return true;
	}
	return false;
}

/* ---------------------------------------------------------------- */
/* Hosts and sessions                                               */
/* ---------------------------------------------------------------- */

/*
 * engine_open_session - a session to h from its pool's source src, whose
 * destination counted it already (shape_conn_acquire()).
 */
static bool
engine_open_session(struct engine *e, struct ehost *h, unsigned src)
{
	struct smtpc_params p;
	struct esess *es = xcalloc(1, sizeof(*es));
	unsigned srclen = 0;
	int err = 0;

	memset(&p, 0, sizeof(p));
	p.cfg = e->cfg;
	p.tls_ctx = e->camp->tls_ctx;
	p.helo = e->cfg->general_hostname;
	p.mx_name = h->mx;
	p.addr = (const struct sockaddr *)&h->ss;
	p.addrlen = h->sslen;
	p.no_tls = h->no_tls_until > mr_clock_ms();
	p.src = shaper_source(e->camp->shaper, shaper_pool_source(
	    e->camp->shaper, h->pool, src), &srclen);
	p.srclen = srclen;
	es->e = e;
	es->h = h;
	es->sd = h->sd[src];
	es->s = smtpc_new(e->base, &p, &engine_smtpc_ops, es, &err);
	if (es->s == NULL) {
		struct smtpc_end end;
		char why[256];

		shape_conn_release(es->sd);
		free(es);
		/* No socket (out of descriptors): a temporary failure of
		 * this host, not a reason to spin. */
		snprintf(why, sizeof(why), "cannot open a connection to %s: "
		    "%s", h->addr, mr_strerror(err));
		memset(&end, 0, sizeof(end));
		end.err = err;
		snprintf(end.esc, sizeof(end.esc), "4.4.1");
		end.text = why;
		if (h->nsess == 0)
			engine_host_down(e, h, &end);
		return false;
	}
	TAILQ_INSERT_TAIL(&h->sessions, es, link);
	h->nsess++;
	e->nsess++;
	atomic_fetch_add_explicit(&e->camp->sessions, 1, memory_order_relaxed);
	e->stats.sessions++;
	return true;
}

/*
 * engine_slots_short - a host wants a session and every slot is taken:
 * idle sessions of hosts with nothing queued quit, so that a destination
 * that finished its share does not keep slots until smtp.idle_timeout
 * (at most once per tick).
 */
static void
engine_slots_short(struct engine *e)
{
	uint64_t now = mr_clock_ms();
	struct esess *es, *next;
	size_t i;

	if (now - e->slots_short < ENGINE_TICK_MS)
		return;
	e->slots_short = now;
	for (i = 0; i < e->nhosts; i++) {
		if (e->hosts[i]->queued > 0)
			continue;
		for (es = TAILQ_FIRST(&e->hosts[i]->idle); es != NULL;
		    es = next) {
			next = TAILQ_NEXT(es, idle_link);
			smtpc_quit(es->s);
		}
	}
}

/* engine_max_sessions - this engine's share of the delivery slots the
 * governor grants and the descriptors allow. */
static unsigned
engine_max_sessions(const struct engine *e)
{
	unsigned slots = atomic_load_explicit(&e->camp->slots,
	    memory_order_relaxed), m;

	m = e->camp->max_sessions;
	if (slots != 0 && slots < m)
		m = slots;
	m /= e->workers;
	return m ? m : 1;
}

/*
 * engine_open_more - open a session to h from the next source whose
 * destination allows one.  False when none does (h is then held until
 * the shaper's next "maybe").
 */
static bool
engine_open_more(struct engine *e, struct ehost *h)
{
	const struct shaper *sh = e->camp->shaper;
	unsigned nsrc = shaper_pool_nsources(sh, h->pool), i, src, fit = 0;
	uint64_t now = mr_clock_ms(), wake, soonest = 0;
	const struct sockaddr *sa;
	unsigned len;

	for (i = 0; i < nsrc; i++) {
		src = (h->next_src + i) % nsrc;
		/* An IPv4 source cannot reach an IPv6 host, nor the reverse. */
		sa = shaper_source(sh, shaper_pool_source(sh, h->pool, src),
		    &len);
		if (sa != NULL && sa->sa_family != h->ss.ss_family)
			continue;
		fit++;
		if (shape_conn_acquire(h->sd[src], now, &wake)) {
			h->next_src = (src + 1) % nsrc;
			return engine_open_session(e, h, src);
		}
		if (wake != 0 && (soonest == 0 || wake < soonest))
			soonest = wake;
	}
	if (fit == 0) {
		struct smtpc_end end;
		char why[256];

		/* Not from another address: a pool is what the operator
		 * allows this mail to leave from. */
		snprintf(why, sizeof(why), "no source address of %s's "
		    "family in the source pool", h->addr);
		memset(&end, 0, sizeof(end));
		end.err = -EAFNOSUPPORT;
		snprintf(end.esc, sizeof(end.esc), "4.4.1");
		end.text = why;
		if (h->nsess == 0)
			engine_host_down(e, h, &end);
		return false;
	}
	/* Without a time, only a closing session can make room; it may be
	 * another engine's, so ask again at the tick. */
	engine_hold(e, h, soonest);
	return false;
}

/*
 * engine_kick_host - put idle sessions to work, and open sessions while
 * the host's queued entries call for more (within its limit).
 */
static void
engine_kick_host(struct engine *e, struct ehost *h)
{
	uint64_t max_rcpt = (uint64_t)e->cfg->send_max_rcpt_per_message, want;
	struct esess *es;

	while (h->queued > 0 && (es = TAILQ_FIRST(&h->idle)) != NULL) {
		TAILQ_REMOVE(&h->idle, es, idle_link);
		es->idle = false;
		if (!smtpc_can_send(es->s))
			continue;
		if (!engine_feed(e, es)) {
			TAILQ_INSERT_HEAD(&h->idle, es, idle_link);
			es->idle = true;
			break;
		}
	}
	/* Held by its shaper (a rate, a back-off, its connection limit) or
	 * short of slots: a new session would only wait too; the wake
	 * timer or the tick kicks it again. */
	if (e->stopping || e->paused || h->down_until > mr_clock_ms() ||
	    h->wake_at != 0)
		return;
	/* Sessions for the transactions queued, not for each recipient:
	 * batched recipients share one. */
	want = e->camp->batching ? (h->queued + max_rcpt - 1) / max_rcpt :
	    h->queued;
	while (h->nsess < want && h->down_until <= mr_clock_ms()) {
		if (e->nsess >= engine_max_sessions(e)) {
			/* Every slot is taken: ask again at the tick, and
			 * make room from sessions that have nothing to do. */
			engine_hold(e, h, 0);
			engine_slots_short(e);
			break;
		}
		if (!engine_open_more(e, h))
			break;
	}
}

/* engine_host_down - h failed: mark it and move its domains on. */
static void
engine_host_down(struct engine *e, struct ehost *h,
    const struct smtpc_end *end)
{
	struct edomain *d;

	h->down_until = mr_clock_ms() + (uint64_t)e->cfg->queue_host_down_time;
	h->fails = 0;
	free(h->last_error);
	h->last_error = xstrdup(end->text);
	h->last_code = end->code;
	snprintf(h->last_esc, sizeof(h->last_esc), "%s", end->esc);
	mr_log_warn("engine", "host=%s mx=%s event=down for=%lldms reason=%s",
	    h->addr, h->mx, e->cfg->queue_host_down_time,
	    mr_q(end->text, (size_t)-1));
	while ((d = TAILQ_FIRST(&h->wanting)) != NULL) {
		engine_detach(d);
		engine_attach(e, d, h);
	}
}

static void
engine_sess_ready(struct smtpc *s, void *arg)
{
	struct esess *es = arg;
	struct engine *e = es->e;

	(void)s;
	if (!es->usable) {
		es->usable = true;
		es->h->nusable++;
		es->h->fails = 0;
		engine_kick_host(e, es->h);
	}
	if (engine_feed(e, es))
		return;
	if (!es->idle) {
		TAILQ_INSERT_TAIL(&es->h->idle, es, idle_link);
		es->idle = true;
	}
	/* An idle session keeps a place its destination may owe to another
	 * delivery loop: it goes when one asked for it. */
	if (e->stopping || e->pending == 0 ||
	    shape_suspended(es->sd, mr_clock_ms()) ||
	    (es->h->queued == 0 && (shape_contended(es->sd, mr_clock_ms()) ||
	    mr_clock_ms() - e->slots_short < 1000)))
		smtpc_quit(s);
}

/*
 * engine_keep_forensics - keep t's message whole for its recipient i.  The
 * message is rendered again (as the recipient would read it, not
 * dot-stuffed) once per transaction, into fx (empty: not yet rendered).
 */
static void
engine_keep_forensics(struct engine *e, struct etxn *t, size_t i,
    struct mr_buf *fx, char *path, size_t size)
{
	struct campaign *c = e->camp;
	struct evbuffer *msg;
	struct msgsrc_stamp m;
	const char *why;
	size_t len;
	bool eight;
	int r;

	path[0] = '\0';
	if (c->forensics_dir == NULL ||
	    atomic_fetch_add(&c->forensics_kept, 1) >=
	    (uint64_t)e->cfg->send_forensics_max)
		return;
	if (fx->len == 0) {
		msg = evbuffer_new();
		m.message_id = t->msgid;
		m.date = t->date;
		if (e->src->ops->render(e->src->arg, e->sc, t->ent[i].rcpt, &m,
		    false, msg, &len, &eight, &why) != 0) {
			evbuffer_free(msg);
			return;
		}
		mr_buf_reserve(fx, evbuffer_get_length(msg));
		fx->len = evbuffer_remove(msg, fx->data, evbuffer_get_length(msg));
		fx->data[fx->len] = '\0';
		evbuffer_free(msg);
	}
	r = forensics_keep(c->forensics_dir,
	    e->src->ops->line(e->src->arg, t->ent[i].rcpt), fx->data, fx->len,
	    path, size);
	if (r != 0) {
		mr_log_warn("engine", "event=forensics dir=%s error=%s",
		    mr_q(c->forensics_dir, (size_t)-1),
		    mr_q(mr_strerror(r), (size_t)-1));
		path[0] = '\0';
	}
}

static void
engine_sess_done(struct smtpc *s, void *arg, struct smtpc_txn *txn)
{
	struct esess *es = arg;
	struct engine *e = es->e;
	struct etxn *t = (struct etxn *)txn;
	struct engine_outcome o;
	struct queue_entry ent;
	char path[512];
	size_t i;
	unsigned ok = 0, deferred = 0;
	const struct smtpc_result *first_defer = NULL;
	uint64_t now = mr_clock_ms();

	(void)s;
	for (i = 0; i < txn->nrcpts; i++) {
		if (txn->res[i].cls == 2) {
			ok++;
		} else if (txn->res[i].cls != 5) {
			deferred++;
			if (first_defer == NULL)
				first_defer = &txn->res[i];
		}
	}
	if (ok > 0)
		es->delivered++;
	shape_txn(t->sd, now, ok, deferred, now - t->started,
	    first_defer ? first_defer->code : 0, first_defer ?
	    first_defer->esc : NULL, first_defer ? smtpc_result_text(txn,
	    first_defer) : NULL);
	for (i = 0; i < txn->nrcpts; i++) {
		const struct smtpc_result *r = &txn->res[i];

		ent = t->ent[i];
		ent.attempts++;
		memset(&o, 0, sizeof(o));
		o.rcpt = t->rcpt[i];
		o.mx = t->host->mx;
		o.host = t->host->addr;
		o.code = r->code;
		o.dsn = r->esc;
		o.reply = smtpc_result_text(txn, r);
		o.message_id = t->msgid;
		switch (r->cls) {
		case 2:
			o.type = ACCT_DELIVERED;
			engine_record(e, &ent, &o);
			break;
		case 5:
			o.type = ACCT_BOUNCED;
			engine_keep_forensics(e, t, i, &e->fx, path,
			    sizeof(path));
			o.forensics = path;
			engine_record(e, &ent, &o);
			break;
		default:
			o.type = ACCT_DEFERRED;
			engine_defer(e, ent, &o);
			break;
		}
	}
	mr_buf_reset(&e->fx);
	engine_txn_put(e, t);
	engine_commit(e, false);
	/* The destination may allow more sessions now. */
	if (es->h->queued > 0 && es->h->nsess < es->h->queued)
		engine_kick_host(e, es->h);
	engine_check_done(e);
}

static void
engine_sess_closed(struct smtpc *s, void *arg, const struct smtpc_end *end)
{
	struct esess *es = arg;
	struct engine *e = es->e;
	struct ehost *h = es->h;

	TAILQ_REMOVE(&h->sessions, es, link);
	if (es->idle)
		TAILQ_REMOVE(&h->idle, es, idle_link);
	h->nsess--;
	e->nsess--;
	atomic_fetch_sub_explicit(&e->camp->sessions, 1, memory_order_relaxed);
	if (es->usable)
		h->nusable--;
	shape_conn_release(es->sd);
	shape_conn_end(es->sd, mr_clock_ms(), end->usable, es->delivered,
	    end->code, end->esc, end->text, !(end->tls_failed &&
	    e->cfg->smtp_tls_policy == CONF_TLS_MAY) && (!end->usable ||
	    end->err == MR_ETIMEOUT));
	smtpc_free(&s);
	free(es);
	if (!end->usable) {
		if (end->tls_failed &&
		    e->cfg->smtp_tls_policy == CONF_TLS_MAY) {
			/* Opportunistic TLS failed: plain text next time. */
			h->no_tls_until = mr_clock_ms() +
			    (uint64_t)e->cfg->queue_host_down_time;
			mr_log_warn("engine", "host=%s event=tls-failed "
			    "next=plaintext reason=%s", h->addr,
			    mr_q(end->text, (size_t)-1));
		} else if (h->nusable == 0 && (h->nsess == 0 ||
		    ++h->fails >= ENGINE_HOST_FAILS)) {
			/* The last session failed and none worked (or many
			 * failed while none worked): the host is down, its
			 * domains move on. */
			engine_host_down(e, h, end);
		}
		/* Otherwise others are open: a refusal now says "not that
		 * many", as a 421 to the 21st connection does; the shaper
		 * cut the destination's connections above. */
	}
	if (h->down_until <= mr_clock_ms())
		engine_kick_host(e, h);
	engine_check_done(e);
}

static const struct smtpc_ops engine_smtpc_ops = {
	.ready = engine_sess_ready,
	.done = engine_sess_done,
	.closed = engine_sess_closed,
};

/* ---------------------------------------------------------------- */
/* The loop                                                         */
/* ---------------------------------------------------------------- */

static void
engine_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	const struct queue_entry *top;
	struct queue_entry ent;
	struct edomain *d;
	uint64_t now = engine_now(e);

	(void)fd;
	(void)what;
	e->retry_is_armed = false;
	while ((top = rheap_peek(&e->retry)) != NULL &&
	    queue_due_diff(top->due, (uint32_t)now) <= 0) {
		rheap_pop(&e->retry, &ent);
		d = e->doms[ent.domain];
		dqueue_push(&d->q, &ent);
		e->queued++;
		if (d->host)
			d->host->queued++;
		engine_kick_domain(e, d);
	}
	engine_note_queue(e);
	engine_arm_retry(e);
}

/*
 * engine_wake_hosts - hosts the shaper or the slot count held: their
 * idle sessions get work again and new ones may open.  Run by the tick,
 * and by the wake timer when the soonest is sooner than the tick.
 */
static void
engine_wake_hosts(struct engine *e, uint64_t now)
{
	struct ehost *h, *hnext;

	uint64_t soonest = 0;

	for (h = LIST_FIRST(&e->waking); h != NULL; h = hnext) {
		hnext = LIST_NEXT(h, wake_link);
		if (h->wake_at > now)
			continue;
		LIST_REMOVE(h, wake_link);
		h->wake_at = 0;
		if (!e->stopping)
			engine_kick_host(e, h);
	}
	/* Hosts kicked above may be back on the list: re-arm for all. */
	LIST_FOREACH(h, &e->waking, wake_link)
		if (soonest == 0 || h->wake_at < soonest)
			soonest = h->wake_at;
	if (soonest != 0)
		engine_arm_wake(e, soonest);
}

static void
engine_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;

	(void)fd;
	(void)what;
	e->wake_armed = 0;
	engine_wake_hosts(e, mr_clock_ms());
}

static void
engine_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	struct edomain *d, *next;
	uint64_t now = mr_clock_ms();
	size_t i;

	(void)fd;
	(void)what;
	engine_commit(e, true);
	if (e->paused && journal_reserve(e->journal, 4 * (size_t)e->cfg->
	    send_max_rcpt_per_message) == 0) {
		e->paused = false;
		mr_log_warn("engine", "engine=%u event=resumed", e->id);
		for (i = 0; i < e->nhosts; i++)
			engine_kick_host(e, e->hosts[i]);
	}
	engine_check_done(e);
	if (!e->stopping && atomic_load(&e->camp->stop)) {
		struct queue_entry ent;

		e->stopping = true;
		mr_log_info("engine", "engine=%u event=stopping", e->id);
		/* Queued entries stay unfinished; sessions finish what they
		 * have in flight, then quit. */
		for (i = 0; i < e->ndoms; i++) {
			d = e->doms[i];
			if (d == NULL)
				continue;
			engine_detach(d);
			while (dqueue_pop(&d->q, &ent)) {
				e->queued--;
				e->pending--;
			}
		}
		while (rheap_peek(&e->retry) != NULL) {
			rheap_pop(&e->retry, &ent);
			e->pending--;
		}
		for (i = 0; i < e->nhosts; i++) {
			struct esess *es;

			TAILQ_FOREACH(es, &e->hosts[i]->idle, idle_link)
				smtpc_quit(es->s);
		}
		engine_check_done(e);
	}
	for (d = LIST_FIRST(&e->waiting); d != NULL; d = next) {
		next = LIST_NEXT(d, wait_link);
		if (d->wait_until > now)
			continue;
		LIST_REMOVE(d, wait_link);
		d->waiting = false;
		engine_kick_domain(e, d);
	}
	engine_wake_hosts(e, now);
}

static void
engine_check_done(struct engine *e)
{
	size_t i;
	struct esess *es, *next;

	if (e->pending != 0 || (e->camp->endless && !e->stopping) ||
	    atomic_load_explicit(&e->camp->feeding, memory_order_acquire))
		return;
	for (i = 0; i < e->nhosts; i++) {
		for (es = TAILQ_FIRST(&e->hosts[i]->idle); es != NULL;
		    es = next) {
			next = TAILQ_NEXT(es, idle_link);
			smtpc_quit(es->s);
		}
	}
	if (e->nsess == 0 && dns_pending(e->dns) == 0)
		event_base_loopbreak(e->base);
}

struct engine *
engine_new(struct campaign *camp, unsigned id, struct mr_buf *err)
{
	struct engine *e = xcalloc(1, sizeof(*e));
	struct timeval tick = { 0, ENGINE_TICK_MS * 1000 };
	unsigned workers = camp->nworkers ? camp->nworkers : 1;

	e->id = id;
	e->camp = camp;
	e->cfg = camp->cfg;
	e->epoch = mr_clock_ms();
	e->base = event_base_new();
	if (e->base == NULL) {
		mr_buf_puts(err, "cannot create an event loop");
		free(e);
		return NULL;
	}
	e->dns = dns_new(e->base, e->cfg, err);
	if (e->dns == NULL) {
		event_base_free(e->base);
		free(e);
		return NULL;
	}
	if (camp->rec != NULL) {
		int code = 0;

		e->journal = recovery_writer(camp->rec, id, err, &code);
		if (e->journal == NULL) {
			dns_free(&e->dns);
			event_base_free(e->base);
			free(e);
			return NULL;
		}
	}
	e->src = &camp->src;
	e->sc = e->src->ops->scratch_new(e->src->arg);
	e->ndoms = camp->ndomains;
	e->doms = xcalloc(e->ndoms ? e->ndoms : 1, sizeof(*e->doms));
	e->host_index = mr_hmap_new(engine_host_eq, e);
	rheap_init(&e->retry);
	LIST_INIT(&e->waiting);
	LIST_INIT(&e->waking);
	e->retry_timer = evtimer_new(e->base, engine_retry_cb, e);
	e->wake_timer = evtimer_new(e->base, engine_wake_cb, e);
	pthread_mutex_init(&e->inbox_mu, NULL);
	e->inbox_ev = event_new(e->base, -1, 0, engine_inbox_cb, e);
	e->kicks = 1;
	e->tick = event_new(e->base, -1, EV_PERSIST, engine_tick_cb, e);
	evtimer_add(e->tick, &tick);
	e->workers = workers;
	return e;
}

/* engine_enqueue - recipient rcpt joins its domain's queue. */
static struct edomain *
engine_enqueue(struct engine *e, uint32_t rcpt, uint16_t attempts)
{
	struct queue_entry ent;
	struct edomain *d;

	memset(&ent, 0, sizeof(ent));
	ent.rcpt = rcpt;
	ent.attempts = attempts;
	ent.due = (uint32_t)engine_now(e);	/* its age, for queue.policy */
	ent.domain = e->src->ops->domain(e->src->arg, rcpt);
	d = engine_domain(e, ent.domain);
	dqueue_push(&d->q, &ent);
	e->queued++;
	e->pending++;
	return d;
}


/* engine_inbox_cb - take what other threads posted (on the loop). */
static void
engine_inbox_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	struct edomain *d;
	uint64_t *v;
	size_t n, i;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&e->inbox_mu);
	v = e->inbox;
	n = e->ninbox;
	e->inbox = NULL;
	e->ninbox = e->inbox_cap = 0;
	pthread_mutex_unlock(&e->inbox_mu);
	/* Each joins its domain's queue (and its host's count, when the
	 * domain is attached), then each domain touched is kicked once. */
	for (i = 0; i < n; i++) {
		d = engine_enqueue(e, (uint32_t)v[i], (uint16_t)(v[i] >> 32));
		if (d->host != NULL)
			d->host->queued++;
		v[i] = d->id;
	}
	engine_note_queue(e);
	for (i = 0; i < n; i++) {
		d = e->doms[v[i]];
		if (d->kicked == e->kicks)
			continue;
		d->kicked = e->kicks;
		engine_kick_domain(e, d);
	}
	e->kicks++;
	free(v);
	/* An empty post after the last: the reader is done. */
	engine_check_done(e);
}

void
engine_post(struct engine *e, const uint32_t *rcpts,
    const uint16_t *attempts, size_t n)
{
	size_t i;
	bool wake;

	pthread_mutex_lock(&e->inbox_mu);
	if (e->ninbox + n > e->inbox_cap) {
		e->inbox_cap = (e->ninbox + n) * 2;
		e->inbox = xreallocarray(e->inbox, e->inbox_cap,
		    sizeof(*e->inbox));
	}
	for (i = 0; i < n; i++)
		e->inbox[e->ninbox + i] = rcpts[i] | (attempts ?
		    (uint64_t)attempts[i] << 32 : 0);
	wake = e->ninbox == 0;
	e->ninbox += n;
	pthread_mutex_unlock(&e->inbox_mu);
	if (wake)
		event_active(e->inbox_ev, EV_READ, 1);
}

void
engine_run(struct engine *e)
{
	size_t i, qb = 0;

	/* What was posted before the loop runs joins the queues now (and
	 * its domains are kicked). */
	engine_inbox_cb(-1, 0, e);
	for (i = 0; i < e->ndoms; i++) {
		if (e->doms[i] != NULL)
			qb += dqueue_bytes(&e->doms[i]->q);
	}
	e->stats.queue_bytes = qb;
	engine_note_queue(e);
	if (e->pending > 0 || e->camp->endless ||
	    atomic_load(&e->camp->feeding))
		event_base_dispatch(e->base);
}

void
engine_get_stats(const struct engine *e, struct engine_stats *st)
{
	*st = e->stats;
}

void
engine_free(struct engine **ep)
{
	struct engine *e = *ep;
	struct esess *es;
	size_t i;

	if (e == NULL)
		return;
	for (i = 0; i < e->nhosts; i++) {
		struct ehost *h = e->hosts[i];

		while ((es = TAILQ_FIRST(&h->sessions)) != NULL) {
			TAILQ_REMOVE(&h->sessions, es, link);
			smtpc_free(&es->s);
			free(es);
		}
		free(h->mx);
		free(h->key);
		free(h->sd);
		free(h->last_error);
		free(h);
	}
	free(e->hosts);
	for (i = 0; i < e->ndoms; i++) {
		struct edomain *d = e->doms[i];

		if (d == NULL)
			continue;
		dqueue_release(&d->q);
		free(d->targets);
		free(d->fail_reason);
		free(d);
	}
	free(e->doms);
	mr_hmap_free(&e->host_index);
	rheap_release(&e->retry);
	engine_txn_free_all(e);
	dns_free(&e->dns);
	e->src->ops->scratch_free(e->src->arg, e->sc);
	engine_commit(e, true);
	mr_buf_release(&e->tmp);
	mr_buf_release(&e->fx);
	mr_buf_release(&e->acctbuf);
	free(e->jops);
	event_free(e->retry_timer);
	event_free(e->wake_timer);
	event_free(e->inbox_ev);
	free(e->inbox);
	pthread_mutex_destroy(&e->inbox_mu);
	event_free(e->tick);
	event_base_free(e->base);
	free(e);
	*ep = NULL;
}
