/*
 * inject.c - the SMTP injection role: listener, spool, relay, delivery
 * loops, AUTH checks and backpressure (see inject.h).
 *
 * Sessions run on the listener's loop.  A message that reached its final
 * dot is spooled there (a pwritev to the page cache) and waits on the
 * `waiting` list for the spool's sync thread to make it durable; the sync
 * thread's notifier activates sync_ev on the listener's loop, which
 * answers every waiting session whose ticket is now durable and hands the
 * recipients to the delivery loops (engine_post()).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/mr_hmap.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "delivery/account.h"
#include "delivery/acct.h"
#include "delivery/campaign.h"
#include "delivery/cstore.h"
#include "delivery/dsn.h"
#include "delivery/engine.h"
#include "delivery/inject.h"
#include "delivery/pace.h"
#include "delivery/relay.h"
#include "delivery/shape.h"
#include "net/cidr.h"
#include "net/conn.h"
#include "net/http.h"
#include "net/listen.h"
#include "smtps/smtps.h"
#include "spool/spool.h"
#include "store/store.h"

#define INJECT_WORKERS_MAX	64
#define INJECT_TICK_MS		200
#define INJECT_FAIL_SLOTS	4096	/* failed-AUTH memory, by address */
#define INJECT_AUTH_DELAY_MAX	15000
#define INJECT_HEADER_ROOM	4096	/* our Received header, at most */
#define INJECT_RECORD_MAX	((size_t)1 << 30)	/* the spool's bound */
#define SMTP_PATH_MAX		256	/* RFC 5321 4.5.3.1.3 */

struct isess;

/* A spooled message waiting for its sync (or for its session). */
struct iwait {
	struct isess		*is;		/* NULL: the client left */
	uint64_t		 id, ticket;
	char			*mail_from;
	char			*account;
	char			*client;
	char			**rcpt;
	size_t			 nrcpt;
	unsigned		 pool;		/* its source pool */
	TAILQ_ENTRY(iwait)	 link;
};

/* An AUTH check for the checker thread. */
struct iauth {
	struct isess		*is;		/* NULL: the client left */
	char			*user;
	char			*pass;
	size_t			 passl;
	bool			 ok;
	bool			 temp;		/* could not check: 454 */
	bool			 other;		/* to act as someone else */
	STAILQ_ENTRY(iauth)	 link;
};

struct isess {
	struct injector		*in;
	struct smtps		*s;
	struct iwait		*wait;
	struct iauth		*auth;
	unsigned		 pool;		/* the account's, from AUTH */
	LIST_ENTRY(isess)	 link;
};

struct ifail {
	uint64_t	 key;		/* hash of the address, 0: free */
	unsigned	 failures;
	uint64_t	 last;		/* mono ms */
};

struct injector {
	const struct mr_config	*cfg;
	struct event_base	*base;
	struct net_listener	*lis;
	struct evhttp		*http;		/* status endpoint, or NULL */
	char			 http_addr[64];
	SSL_CTX			*tls_srv;
	struct smtps_params	 sp_params;
	struct net_cidr		*trusted;
	size_t			 ntrusted;
	struct spool		*spool;
	char			*spool_dir;
	struct relay		*relay;
	struct campaign		 camp;
	struct pace		 pace;		/* its governor (tick) */
	struct shaper		*shared_shaper;	/* the daemon's, or NULL */
	struct engine		*engines[INJECT_WORKERS_MAX];
	pthread_t		 threads[INJECT_WORKERS_MAX];
	unsigned		 nworkers;
	bool			 engines_started;
	pthread_t		 lthread;
	bool			 lstarted;
	struct event		*sync_ev;
	struct event		*tick;
	TAILQ_HEAD(, iwait)	 waiting;
	LIST_HEAD(, isess)	 sessions;
	unsigned		 nsess;
	/* Backpressure. */
	bool			 paused;
	uint64_t		 last_delivered, last_rate_at;
	double			 rate;		/* deliveries per second */
	/* AUTH. */
	pthread_t		 athread;
	bool			 astarted;
	pthread_mutex_t		 amu;
	pthread_cond_t		 acond;
	STAILQ_HEAD(, iauth)	 ajobs, adone;
	bool			 astop;
	struct event		*auth_ev;
	struct ifail		 fails[INJECT_FAIL_SLOTS];
	/* Counters. */
	uint64_t		 accepted, refused;
	uint64_t		 recovered, recovered_rcpts;
};

static void inject_flush(struct injector *in);
static void inject_http_cb(struct evhttp_request *req, void *arg);

/* ---------------------------------------------------------------- */
/* Backpressure                                                     */
/* ---------------------------------------------------------------- */

/* inject_pressure - decide whether injection pauses (D8). */
static bool
inject_pressure(struct injector *in)
{
	const struct mr_config *cfg = in->cfg;
	uint64_t backlog = relay_pending(in->relay);
	uint64_t resume = (uint64_t)cfg->inject_backlog_max *
	    (uint64_t)cfg->inject_backlog_resume / 100;
	double drain = in->rate > 0 ? (double)backlog / in->rate * 1000 : 0;
	bool over, under;

	over = backlog >= (uint64_t)cfg->inject_backlog_max ||
	    (cfg->inject_max_drain_time > 0 && backlog > 0 &&
	    (in->rate <= 0 || drain > (double)cfg->inject_max_drain_time));
	under = backlog < resume && (cfg->inject_max_drain_time == 0 ||
	    backlog == 0 || (in->rate > 0 &&
	    drain < (double)cfg->inject_max_drain_time * 0.9));
	if (!in->paused && over) {
		in->paused = true;
		mr_log_warn("inject", "event=backpressure state=paused "
		    "backlog=%" PRIu64 " max=%lld drain_ms=%.0f", backlog,
		    cfg->inject_backlog_max, drain);
	} else if (in->paused && under) {
		in->paused = false;
		mr_log_warn("inject", "event=backpressure state=resumed "
		    "backlog=%" PRIu64 " resume_below=%" PRIu64, backlog,
		    resume);
	}
	return in->paused;
}

static void
inject_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct injector *in = arg;
	uint64_t now = mr_clock_ms();
	uint64_t d = atomic_load(&in->camp.delivered) +
	    atomic_load(&in->camp.bounced);
	double inst;

	(void)fd;
	(void)what;
	if (in->last_rate_at != 0 && now > in->last_rate_at) {
		inst = (double)(d - in->last_delivered) * 1000.0 /
		    (double)(now - in->last_rate_at);
		/* A few seconds' memory. */
		in->rate = in->rate * 0.8 + inst * 0.2;
	}
	in->last_rate_at = now;
	in->last_delivered = d;
	pace_tick(&in->pace, &in->camp, now, 0, 0);
	(void)inject_pressure(in);
	inject_flush(in);
}

/* ---------------------------------------------------------------- */
/* Spooled messages                                                 */
/* ---------------------------------------------------------------- */

static void
inject_wait_free(struct iwait *w)
{
	size_t i;

	for (i = 0; i < w->nrcpt; i++)
		free(w->rcpt[i]);
	free(w->rcpt);
	free(w->mail_from);
	free(w->account);
	free(w->client);
	free(w);
}

/*
 * inject_pool - the source pool of mail sent as account: the pool naming
 * it ([pool] account = NAME), or 0 (shaping.source) for none or "".  A
 * scan of every pool's accounts: once per session (at AUTH) or per
 * recovered message, never per message sent.
 */
static unsigned
inject_pool(const struct injector *in, const char *account)
{
	return shaper_pool_of(in->camp.shaper, conf_pool_naming(in->cfg, NULL,
	    account));
}

/* inject_deliver - hand message id's recipients, from source pool pool
 * (inject_pool()), to the delivery loops. */
static int
inject_deliver(struct injector *in, uint64_t id,
    const struct spool_envelope *env, const uint32_t *idx, unsigned pool)
{
	uint32_t *out = xcalloc(env->nrcpt ? env->nrcpt : 1, sizeof(*out));
	struct msgsrc *src = &in->camp.src;
	size_t i;
	int code;

	code = relay_add(in->relay, id, env, idx, pool, out);
	if (code == 0)
		for (i = 0; i < env->nrcpt; i++)
			engine_post(in->engines[src->ops->domain(src->arg,
			    out[i]) % in->nworkers], &out[i], NULL, 1);
	free(out);
	return code;
}

/* inject_flush - answer the sessions whose messages are now durable. */
static void
inject_flush(struct injector *in)
{
	struct spool_envelope env;
	struct iwait *w, *next;
	char text[96];
	int d;

	for (w = TAILQ_FIRST(&in->waiting); w != NULL; w = next) {
		next = TAILQ_NEXT(w, link);
		d = spool_durable(in->spool, w->ticket);
		if (d == 0)
			continue;
		TAILQ_REMOVE(&in->waiting, w, link);
		if (d > 0) {
			memset(&env, 0, sizeof(env));
			env.mail_from = w->mail_from;
			env.account = w->account;
			env.client = w->client;
			env.rcpt = (const char *const *)w->rcpt;
			env.nrcpt = w->nrcpt;
			if (inject_deliver(in, w->id, &env, NULL, w->pool) !=
			    0)
				mr_log_err("inject", "event=relay-full id=%016"
				    PRIx64 " note=\"kept in the spool for the "
				    "next start\"", w->id);
			in->accepted++;
			snprintf(text, sizeof(text), "Ok: queued as %016" PRIx64,
			    w->id);
			if (w->is != NULL)
				smtps_reply_message(w->is->s, 250, "2.0.0",
				    text);
		} else if (w->is != NULL) {
			in->refused++;
			smtps_reply_message(w->is->s, 451, "4.3.0", "Local "
			    "error in processing: the spool cannot be "
			    "written, try again later");
		}
		if (w->is != NULL)
			w->is->wait = NULL;
		inject_wait_free(w);
	}
}

static void
inject_sync_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	inject_flush(arg);
}

/* inject_notify - the spool's sync thread made tickets durable. */
static void
inject_notify(void *arg)
{
	struct injector *in = arg;

	event_active(in->sync_ev, EV_READ, 1);
}

/* ---------------------------------------------------------------- */
/* AUTH                                                             */
/* ---------------------------------------------------------------- */

/* inject_fail_slot - the failed-AUTH count of the client's address (a
 * slot taken over by another address forgets the older one). */
static struct ifail *
inject_fail_slot(struct injector *in, const struct smtps *s)
{
	const char *peer = smtps_peer(s), *colon = strrchr(peer, ':');
	size_t n = colon ? (size_t)(colon - peer) : strlen(peer);
	uint64_t key = mr_hash(peer, n) | 1;
	struct ifail *f = &in->fails[key % INJECT_FAIL_SLOTS];

	if (f->key != key) {
		memset(f, 0, sizeof(*f));
		f->key = key;
	} else if (mr_clock_ms() - f->last > 3600000) {
		f->failures = 0;
	}
	return f;
}

static void *
inject_auth_thread(void *arg)
{
	struct injector *in = arg;
	struct mr_buf err = MR_BUF_INIT;
	struct store *st = NULL;
	struct iauth *job;
	int ex = 0;
	bool ok;

	pthread_mutex_lock(&in->amu);
	for (;;) {
		while (!in->astop && STAILQ_EMPTY(&in->ajobs))
			pthread_cond_wait(&in->acond, &in->amu);
		if (in->astop)
			break;
		job = STAILQ_FIRST(&in->ajobs);
		STAILQ_REMOVE_HEAD(&in->ajobs, link);
		pthread_mutex_unlock(&in->amu);
		if (st == NULL) {
			mr_buf_reset(&err);
			st = cstore_open(in->cfg, false, &err, &ex);
			if (st == NULL)
				mr_log_err("inject", "event=auth-store "
				    "error=%s", mr_q(mr_buf_cstr(&err),
				    (size_t)-1));
		}
		ok = false;
		job->temp = st == NULL ||
		    account_check_password(st, job->user, job->pass,
		    job->passl, &ok) != 0;
		/* Acting as another account is not ours to grant: refused
		 * as a failure, after the same work. */
		job->ok = ok && !job->other;
		OPENSSL_cleanse(job->pass, job->passl);
		pthread_mutex_lock(&in->amu);
		STAILQ_INSERT_TAIL(&in->adone, job, link);
		event_active(in->auth_ev, EV_READ, 1);
	}
	pthread_mutex_unlock(&in->amu);
	store_close(&st);
	mr_buf_release(&err);
	return NULL;
}

static void
inject_auth_job_free(struct iauth *job)
{
	OPENSSL_cleanse(job->pass, job->passl);
	free(job->pass);
	free(job->user);
	free(job);
}

/* inject_auth_done_cb - answers from the checker (on the loop). */
static void
inject_auth_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct injector *in = arg;
	STAILQ_HEAD(, iauth) done;
	struct iauth *job;
	struct ifail *f;
	unsigned delay;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&in->amu);
	STAILQ_INIT(&done);
	STAILQ_CONCAT(&done, &in->adone);
	pthread_mutex_unlock(&in->amu);
	while ((job = STAILQ_FIRST(&done)) != NULL) {
		STAILQ_REMOVE_HEAD(&done, link);
		if (job->is != NULL) {
			job->is->auth = NULL;
			f = inject_fail_slot(in, job->is->s);
			if (job->temp) {
				smtps_auth_result(job->is->s,
				    SMTPS_AUTH_TEMPFAIL, 0);
			} else if (job->ok) {
				f->failures = 0;
				job->is->pool = inject_pool(in, job->user);
				mr_log_info("inject", "session=%s event=auth "
				    "user=%s", smtps_id(job->is->s),
				    mr_q(job->user, (size_t)-1));
				smtps_auth_result(job->is->s, SMTPS_AUTH_OK, 0);
			} else {
				f->failures++;
				f->last = mr_clock_ms();
				delay = (unsigned)in->cfg->inject_auth_delay;
				if (f->failures > 1)
					delay <<= f->failures - 1 > 4 ? 4 :
					    f->failures - 1;
				if (delay > INJECT_AUTH_DELAY_MAX)
					delay = INJECT_AUTH_DELAY_MAX;
				mr_log_warn("inject", "session=%s event=auth-"
				    "failed user=%s failures=%u delay_ms=%u",
				    smtps_id(job->is->s),
				    mr_q(job->user, (size_t)-1), f->failures,
				    delay);
				smtps_auth_result(job->is->s, SMTPS_AUTH_FAIL,
				    delay);
			}
		}
		inject_auth_job_free(job);
	}
}

/* ---------------------------------------------------------------- */
/* Sessions                                                         */
/* ---------------------------------------------------------------- */

static void
inject_on_connect(struct smtps *s, void *arg, struct smtps_answer *ans)
{
	struct isess *is = arg;
	struct injector *in = is->in;

	(void)s;
	if (in->nsess > (unsigned)in->cfg->inject_max_connections) {
		ans->code = 421;
		ans->esc = "4.7.0";
		ans->text = "Too many connections, try again later";
	} else if (inject_pressure(in)) {
		ans->code = 421;
		ans->esc = "4.3.2";
		ans->text = "System busy: delivery backlog, try again later";
	}
}

static void
inject_on_mail(struct smtps *s, void *arg, const struct smtps_envelope *env,
    struct smtps_answer *ans)
{
	struct isess *is = arg;

	(void)s;
	(void)env;
	if (inject_pressure(is->in)) {
		ans->code = 452;
		ans->esc = "4.3.1";
		ans->text = "Insufficient system resources: delivery backlog, "
		    "try again later";
	}
}

static void
inject_on_rcpt(struct smtps *s, void *arg, const struct smtps_envelope *env,
    const char *rcpt, struct smtps_answer *ans)
{
	struct isess *is = arg;
	struct injector *in = is->in;
	const char *at = strrchr(rcpt, '@');

	if (at == NULL || at[1] == '\0') {
		ans->code = 550;
		ans->esc = "5.1.3";
		ans->text = "Recipient address needs a domain";
		return;
	}
	if (env->auth_user != NULL || net_cidr_match(in->trusted,
	    in->ntrusted, smtps_peer_addr(s)))
		return;
	ans->code = 554;
	ans->esc = "5.7.1";
	ans->text = "Relay access denied: authenticate first";
}

static void
inject_on_auth(struct smtps *s, void *arg, const struct smtps_auth_req *req)
{
	struct isess *is = arg;
	struct injector *in = is->in;
	struct iauth *job;

	(void)s;
	job = xcalloc(1, sizeof(*job));
	job->is = is;
	job->user = xstrdup(req->user);
	job->other = req->authzid != NULL && *req->authzid != '\0' &&
	    strcmp(req->authzid, req->user) != 0;
	job->pass = xmalloc(req->passl + 1);
	memcpy(job->pass, req->pass, req->passl);
	job->pass[req->passl] = '\0';
	job->passl = req->passl;
	is->auth = job;
	pthread_mutex_lock(&in->amu);
	STAILQ_INSERT_TAIL(&in->ajobs, job, link);
	pthread_cond_signal(&in->acond);
	pthread_mutex_unlock(&in->amu);
}

static void
inject_on_message(struct smtps *s, void *arg,
    const struct smtps_envelope *env, struct evbuffer *body)
{
	struct isess *is = arg;
	struct injector *in = is->in;
	struct spool_envelope senv;
	struct mr_buf hdr = MR_BUF_INIT, err = MR_BUF_INIT;
	struct iwait *w;
	char date[64];
	const unsigned char *p;
	uint64_t id = 0, ticket = 0;
	size_t i, len;
	int code;

	mr_rfc5322_date(time(NULL), date, sizeof(date));
	mr_buf_printf(&hdr, "Received: from %s (%s)\r\n\tby %s (mailroom) "
	    "with %s%s%s id %s", *env->helo ? env->helo : "unknown",
	    env->peer, in->cfg->general_hostname, env->esmtp ? "ESMTP" :
	    "SMTP", env->tls ? "S" : "", env->auth_user ? "A" : "",
	    smtps_id(s));
	if (env->nrcpts == 1)
		mr_buf_printf(&hdr, "\r\n\tfor <%s>", env->rcpts[0]);
	mr_buf_printf(&hdr, ";\r\n\t%s\r\n", date);
	evbuffer_prepend(body, hdr.data, hdr.len);
	len = evbuffer_get_length(body);
	p = evbuffer_pullup(body, -1);
	memset(&senv, 0, sizeof(senv));
	senv.account = env->auth_user ? env->auth_user : "";
	senv.client = env->peer;
	senv.mail_from = env->sender;
	senv.rcpt = env->rcpts;
	senv.nrcpt = env->nrcpts;
	code = spool_append_message(in->spool, &senv, p, len, &err, &id,
	    &ticket);
	evbuffer_free(body);
	mr_buf_release(&hdr);
	if (code != 0) {
		in->refused++;
		mr_log_err("inject", "session=%s event=spool-failed error=%s",
		    smtps_id(s), mr_q(mr_buf_cstr(&err), (size_t)-1));
		mr_buf_release(&err);
		if (code == -ENOSPC || code == -EDQUOT || code == -EFBIG)
			smtps_reply_message(s, 452, "4.3.1", "Insufficient "
			    "system storage, try again later");
		else if (code == MR_ETOOLONG)
			smtps_reply_message(s, 552, "5.3.4", "Message too big "
			    "for the spool");
		else
			smtps_reply_message(s, 451, "4.3.0", "Local error in "
			    "processing, try again later");
		return;
	}
	mr_buf_release(&err);
	w = xcalloc(1, sizeof(*w));
	w->is = is;
	w->id = id;
	w->ticket = ticket;
	w->mail_from = xstrdup(env->sender);
	w->account = xstrdup(senv.account);
	w->client = xstrdup(env->peer);
	w->rcpt = xcalloc(env->nrcpts ? env->nrcpts : 1, sizeof(*w->rcpt));
	for (i = 0; i < env->nrcpts; i++)
		w->rcpt[i] = xstrdup(env->rcpts[i]);
	w->nrcpt = env->nrcpts;
	/* The pool found at AUTH; a session not (or no longer, after
	 * STARTTLS) authenticated sends as account "", from pool 0. */
	w->pool = env->auth_user != NULL ? is->pool : 0;
	is->wait = w;
	TAILQ_INSERT_TAIL(&in->waiting, w, link);
	inject_flush(in);
}

static void
inject_on_closed(struct smtps *s, void *arg, const char *reason)
{
	struct isess *is = arg;
	struct injector *in = is->in;

	(void)reason;
	/* A message spooled but not yet answered stays: it will be
	 * delivered (the client, not told 250, may send it again). */
	if (is->wait != NULL)
		is->wait->is = NULL;
	if (is->auth != NULL) {
		pthread_mutex_lock(&in->amu);
		is->auth->is = NULL;
		pthread_mutex_unlock(&in->amu);
	}
	LIST_REMOVE(is, link);
	in->nsess--;
	smtps_free(&s);
	free(is);
}

static const struct smtps_ops inject_smtps_ops = {
	.connect = inject_on_connect,
	.mail = inject_on_mail,
	.rcpt = inject_on_rcpt,
	.auth = inject_on_auth,
	.message = inject_on_message,
	.closed = inject_on_closed,
};

static void
inject_accept(int fd, const struct sockaddr *peer, socklen_t peerlen,
    void *arg)
{
	struct injector *in = arg;
	struct isess *is = xcalloc(1, sizeof(*is));

	is->in = in;
	LIST_INSERT_HEAD(&in->sessions, is, link);
	in->nsess++;
	is->s = smtps_accept(in->base, fd, peer, peerlen, &in->sp_params,
	    &inject_smtps_ops, is);
	if (is->s == NULL) {
		LIST_REMOVE(is, link);
		in->nsess--;
		free(is);
	}
}

/* ---------------------------------------------------------------- */
/* Setup                                                            */
/* ---------------------------------------------------------------- */

static int
inject_trusted(struct injector *in, struct mr_buf *err)
{
	const struct conf_list *l = &in->cfg->inject_trusted_networks;
	const char *p, *e;
	size_t i, n;

	for (i = 0; i < l->n; i++) {
		for (p = l->v[i]; *p; p = e) {
			p += strspn(p, " \t,");
			n = strcspn(p, " \t,");
			e = p + n;
			if (n == 0)
				break;
			in->trusted = xreallocarray(in->trusted,
			    in->ntrusted + 1, sizeof(*in->trusted));
			if (net_cidr_parse(p, n, &in->trusted[in->ntrusted])
			    != 0) {
				mr_buf_printf(err, "inject.trusted_networks: "
				    "\"%.*s\" is not an address/prefix",
				    (int)n, p);
				return -1;
			}
			in->ntrusted++;
		}
	}
	return 0;
}

/*
 * inject_bounce - the relay's bounce callback (relay.h): a delivery
 * status notification to the sender, spooled and relayed like any
 * message (null sender, source pool 0).  On a delivery loop's thread.
 */
static void
inject_bounce(void *arg, uint64_t id, const char *mail_from,
    uint64_t received_ms, const struct dsn_rcpt *r, size_t n)
{
	static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
	    "opqrstuvwxyz0123456789";
	struct injector *in = arg;
	struct spool_message orig;
	struct spool_envelope env;
	struct dsn_report rep;
	struct mr_buf msg = MR_BUF_INIT, err = MR_BUF_INIT;
	unsigned char rnd[12];
	char token[sizeof(rnd) + 1], qid[20];
	const char *rcpt[1];
	uint64_t nid, ticket;
	size_t i;
	int code;

	memset(&orig, 0, sizeof(orig));
	memset(&rep, 0, sizeof(rep));
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		mr_panic("inject: no random bytes");
	for (i = 0; i < sizeof(rnd); i++)
		token[i] = alnum[rnd[i] % (sizeof(alnum) - 1)];
	token[sizeof(rnd)] = '\0';
	snprintf(qid, sizeof(qid), "%016" PRIx64, id);
	/* The original's header, if it can be read; the report goes out
	 * without it otherwise.  Only the head of the body is read: all the
	 * report quotes of a message of up to inject.max_message_size. */
	if (spool_read_head(in->spool, id, DSN_MESSAGE_MAX, &orig,
	    &err) == 0) {
		rep.message = orig.body;
		rep.message_len = orig.body_len;
	}
	rep.hostname = in->cfg->general_hostname;
	rep.mail_from = mail_from;
	rep.queue_id = qid;
	rep.arrival = (time_t)(received_ms / 1000);
	rep.now = time(NULL);
	rep.token = token;
	rep.rcpts = r;
	rep.nrcpts = n;
	dsn_build(&rep, &msg);
	spool_message_release(&orig);
	memset(&env, 0, sizeof(env));
	rcpt[0] = mail_from;
	env.account = "";
	env.client = "";
	env.mail_from = "";
	env.rcpt = rcpt;
	env.nrcpt = 1;
	mr_buf_reset(&err);
	code = spool_append_message(in->spool, &env, msg.data, msg.len, &err,
	    &nid, &ticket);
	if (code == 0)
		code = inject_deliver(in, nid, &env, NULL, 0);
	if (code != 0)
		mr_log_err("inject", "event=dsn-failed id=%s to=%s error=%s",
		    qid, mr_q(mail_from, (size_t)-1), mr_q(mr_buf_cstr(&err),
		    (size_t)-1));
	else
		mr_log_info("inject", "event=dsn id=%s to=%s dsn_id=%016"
		    PRIx64 " failed=%zu", qid, mr_q(mail_from, (size_t)-1),
		    nid, n);
	mr_buf_release(&msg);
	mr_buf_release(&err);
}

static int
inject_recover_cb(void *arg, const struct spool_message *m)
{
	struct injector *in = arg;

	if (inject_deliver(in, m->id, &m->env, m->rcpt_idx,
	    inject_pool(in, m->env.account)) != 0)
		mr_log_err("inject", "event=recover-full id=%016" PRIx64,
		    m->id);
	return 0;
}

struct injector *
inject_open(const struct mr_config *cfg, struct shaper *shaper,
    struct mr_buf *err, int *ex_r)
{
	struct injector *in = xcalloc(1, sizeof(*in));
	struct campaign *c = &in->camp;
	struct spool_stats sst;
	struct spool_params spp;
	struct rlimit rl;
	unsigned char rnd[6];
	unsigned i, w;
	long ncpu;
	int code = 0;

	in->cfg = cfg;
	/* Unknown accounts cost one verifier check of this many rounds, as
	 * known ones do: no timing tells them apart. */
	account_password_iterations((unsigned)cfg->registry_pbkdf2_iterations);
	TAILQ_INIT(&in->waiting);
	LIST_INIT(&in->sessions);
	STAILQ_INIT(&in->ajobs);
	STAILQ_INIT(&in->adone);
	pthread_mutex_init(&in->amu, NULL);
	pthread_cond_init(&in->acond, NULL);
	*ex_r = EX_CONFIG;
	if (inject_trusted(in, err) != 0)
		goto fail;
	in->base = event_base_new();
	if (in->base == NULL) {
		mr_buf_puts(err, "cannot create an event loop");
		*ex_r = EX_OSERR;
		goto fail;
	}
	in->sync_ev = event_new(in->base, -1, 0, inject_sync_cb, in);
	in->auth_ev = event_new(in->base, -1, 0, inject_auth_done_cb, in);
	if (*cfg->inject_tls_cert != '\0') {
		in->tls_srv = net_tls_server_ctx(cfg->inject_tls_cert,
		    cfg->inject_tls_key, err);
		if (in->tls_srv == NULL)
			goto fail;
	}
	smtps_params_default(&in->sp_params);
	in->sp_params.hostname = cfg->general_hostname;
	in->sp_params.tls_ctx = in->tls_srv;
	in->sp_params.auth_plaintext_ok = cfg->inject_plaintext_auth;
	in->sp_params.max_message_size = (size_t)cfg->inject_max_message_size;
	in->sp_params.max_rcpts = (unsigned)cfg->inject_max_recipients;
	in->sp_params.max_auth_failures =
	    (unsigned)cfg->inject_max_auth_failures;
	in->sp_params.idle_timeout_ms = (unsigned)cfg->inject_idle_timeout;
	in->sp_params.data_timeout_ms = (unsigned)cfg->inject_data_timeout;
	/* The spool, recovered. */
	if (*cfg->inject_spool_dir != '\0') {
		in->spool_dir = xstrdup(cfg->inject_spool_dir);
	} else {
		struct mr_buf b = MR_BUF_INIT;

		mr_buf_printf(&b, "%s.spool", cfg->store_path);
		in->spool_dir = b.data;
	}
	/* The spool takes what the listener accepts: the message with its
	 * Received header, and its envelope. */
	memset(&spp, 0, sizeof(spp));
	spp.max_rcpts = (size_t)cfg->inject_max_recipients;
	spp.max_record = (size_t)cfg->inject_max_message_size +
	    INJECT_HEADER_ROOM + spp.max_rcpts * (SMTP_PATH_MAX + 4);
	if (spp.max_record > INJECT_RECORD_MAX)
		spp.max_record = INJECT_RECORD_MAX;
	in->spool = spool_open(in->spool_dir, &spp, inject_notify, in, err,
	    &code);
	if (in->spool == NULL) {
		*ex_r = EX_CANTCREAT;
		goto fail;
	}
	in->relay = relay_new(in->spool, inject_bounce, in);
	/* The relay's campaign: endless, its own shaper and loops. */
	c->cfg = cfg;
	relay_source(in->relay, &c->src);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, 0, sizeof(rnd));
	snprintf(c->token, sizeof(c->token), "relay.%02x%02x%02x%02x%02x%02x",
	    rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
	c->start_mono_ms = mr_clock_ms();
	c->batching = true;
	c->endless = true;
	c->max_message_size = (size_t)cfg->inject_max_message_size +
	    INJECT_HEADER_ROOM;
	if (*cfg->send_accounting_file != '\0') {
		c->acct = acct_open(cfg->send_accounting_file,
		    cfg->send_accounting_format, err);
		if (c->acct == NULL) {
			*ex_r = EX_CANTCREAT;
			goto fail;
		}
	}
	if (cfg->smtp_tls_policy != CONF_TLS_NONE) {
		c->tls_ctx = net_tls_client_ctx(cfg->smtp_tls_policy ==
		    CONF_TLS_VERIFY, cfg->smtp_tls_ca_file, err);
		if (c->tls_ctx == NULL)
			goto fail;
	}
	if ((in->shared_shaper = shaper) != NULL) {
		c->shaper = shaper;
		if (c->acct != NULL)
			(void)shaper_subscribe(shaper, shape_acct_cb, c->acct);
	} else
		c->shaper = shaper_new(cfg, shape_acct_cb, c->acct, err);
	if (c->shaper == NULL)
		goto fail;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 256 + 64)
		c->max_sessions = (unsigned)(rl.rlim_cur > 1000000 ? 1000000 :
		    rl.rlim_cur - 256) / 2;
	else
		c->max_sessions = 256;
	/* The relay's engines are paced as a campaign's are (D9, D6). */
	if (pace_init(&in->pace, cfg, c, mr_clock_ms(), err) != 0) {
		*ex_r = EX_CONFIG;
		goto fail;
	}
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	w = cfg->general_workers > 0 ? (unsigned)cfg->general_workers :
	    (unsigned)(ncpu > 1 ? ncpu - 1 : 1);
	if (w > INJECT_WORKERS_MAX)
		w = INJECT_WORKERS_MAX;
	c->nworkers = w;
	for (i = 0; i < w; i++) {
		in->engines[i] = engine_new(c, i, err);
		if (in->engines[i] == NULL)
			goto fail;
		in->nworkers = i + 1;
	}
	code = spool_recover(in->spool, inject_recover_cb, in);
	if (code != 0)
		mr_log_err("inject", "event=recover error=%s note=\"messages "
		    "that could not be read stay in the spool\"",
		    mr_q(mr_strerror(code), (size_t)-1));
	spool_stats(in->spool, &sst);
	in->recovered = sst.recovered;
	in->recovered_rcpts = relay_pending(in->relay);
	mr_log_info("inject", "event=spool dir=%s recovered_messages=%" PRIu64
	    " pending_rcpts=%" PRIu64 " torn_tails=%u", mr_q(in->spool_dir,
	    (size_t)-1), sst.recovered, relay_pending(in->relay),
	    sst.torn_tails);
	in->lis = net_listen(in->base, cfg->inject_listen, 25, 512,
	    inject_accept, in, err);
	if (in->lis == NULL) {
		*ex_r = EX_UNAVAILABLE;
		goto fail;
	}
	if (*cfg->inject_http_listen != '\0') {
		in->http = net_http_listen(in->base, cfg->inject_http_listen,
		    80, 0, in->http_addr, sizeof(in->http_addr), err);
		if (in->http == NULL) {
			mr_buf_puts(err, " (inject.http_listen)");
			*ex_r = EX_UNAVAILABLE;
			goto fail;
		}
		evhttp_set_allowed_methods(in->http, EVHTTP_REQ_GET);
		evhttp_set_gencb(in->http, inject_http_cb, in);
	}
	in->tick = event_new(in->base, -1, EV_PERSIST, inject_tick_cb, in);
	*ex_r = 0;
	return in;
fail:
	inject_close(&in);
	return NULL;
}

static void *
inject_engine_thread(void *arg)
{
	engine_run(arg);
	return NULL;
}

static void *
inject_listener_thread(void *arg)
{
	struct injector *in = arg;

	event_base_dispatch(in->base);
	return NULL;
}

int
inject_start(struct injector *in, struct mr_buf *err)
{
	struct timeval tv = { 0, INJECT_TICK_MS * 1000 };
	unsigned i;

	evtimer_add(in->tick, &tv);
	if (pthread_create(&in->athread, NULL, inject_auth_thread, in) != 0) {
		mr_buf_puts(err, "cannot start the AUTH thread");
		return -1;
	}
	in->astarted = true;
	for (i = 0; i < in->nworkers; i++) {
		if (pthread_create(&in->threads[i], NULL, inject_engine_thread,
		    in->engines[i]) != 0) {
			mr_buf_puts(err, "cannot start a delivery thread");
			return -1;
		}
	}
	in->engines_started = true;
	if (pthread_create(&in->lthread, NULL, inject_listener_thread,
	    in) != 0) {
		mr_buf_puts(err, "cannot start the listener thread");
		return -1;
	}
	in->lstarted = true;
	return 0;
}

void
inject_status(struct injector *in, struct mr_buf *out)
{
	const struct mr_config *cfg = in->cfg;
	struct spool_stats st;

	spool_stats(in->spool, &st);
	mr_buf_printf(out, "smtp-listen: %s\n", net_listener_addr(in->lis));
	if (in->http != NULL)
		mr_buf_printf(out, "http-listen: %s\n", in->http_addr);
	mr_buf_printf(out, "spool: %s (%" PRIu64 " messages, %" PRIu64
	    " bytes)\n", in->spool_dir, st.messages, st.bytes);
	mr_buf_printf(out, "recovered: %" PRIu64 " messages, %" PRIu64
	    " recipients to deliver\n", in->recovered, in->recovered_rcpts);
	mr_buf_printf(out, "governor: %s\n", pace_line(&in->pace));
	mr_buf_printf(out, "backlog: %" PRIu64 " recipients (pause at %lld, "
	    "resume below %lld%%%s)\n", relay_pending(in->relay),
	    cfg->inject_backlog_max, cfg->inject_backlog_resume,
	    cfg->inject_max_drain_time ? ", or by drain time" : "");
}

/*
 * inject_http_cb - GET /status: the state as "key: value" lines (what
 * the daemon prints at start, now, with backpressure, counters and the
 * destinations); GET /metrics: counters and gauges for Prometheus.
 * Trusted networks only.  On the listener's loop, like the tick that
 * updates what it reads.
 */
static void
inject_http_cb(struct evhttp_request *req, void *arg)
{
	struct injector *in = arg;
	struct campaign *c = &in->camp;
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	const struct sockaddr *peer = conn ?
	    evhttp_connection_get_addr(conn) : NULL;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(
	    req));
	struct evbuffer *body = evbuffer_new();
	struct mr_buf b = MR_BUF_INIT;
	int code = 200;

	if (peer == NULL || !net_cidr_match(in->trusted, in->ntrusted,
	    peer)) {
		code = 403;
		mr_buf_puts(&b, "not allowed\n");
	} else if (path != NULL && strcmp(path, "/status") == 0) {
		inject_status(in, &b);
		mr_buf_printf(&b, "state: %s\ndelivery-rate: %.1f/s\n"
		    "sessions-in: %u\naccepted: %" PRIu64 "\nrefused: %"
		    PRIu64 "\ndelivered: %" PRIu64 "\nbounced: %" PRIu64
		    "\ndeferrals: %" PRIu64 "\nsessions-out: %u\n",
		    in->paused ? "paused" : "accepting", in->rate, in->nsess,
		    in->accepted, in->refused, (uint64_t)atomic_load(
		    &c->delivered), (uint64_t)atomic_load(&c->bounced),
		    (uint64_t)atomic_load(&c->deferrals),
		    (unsigned)atomic_load(&c->sessions));
		shaper_status_text(c->shaper, mr_clock_ms(), 50, &b);
	} else if (path != NULL && strcmp(path, "/metrics") == 0) {
		mr_buf_printf(&b,
		    "# TYPE mailroom_inject_backlog gauge\n"
		    "mailroom_inject_backlog %" PRIu64 "\n"
		    "# TYPE mailroom_inject_paused gauge\n"
		    "mailroom_inject_paused %d\n"
		    "# TYPE mailroom_inject_sessions gauge\n"
		    "mailroom_inject_sessions %u\n"
		    "# TYPE mailroom_inject_accepted_total counter\n"
		    "mailroom_inject_accepted_total %" PRIu64 "\n"
		    "# TYPE mailroom_inject_refused_total counter\n"
		    "mailroom_inject_refused_total %" PRIu64 "\n"
		    "# TYPE mailroom_relay_delivered_total counter\n"
		    "mailroom_relay_delivered_total %" PRIu64 "\n"
		    "# TYPE mailroom_relay_bounced_total counter\n"
		    "mailroom_relay_bounced_total %" PRIu64 "\n"
		    "# TYPE mailroom_relay_deferrals_total counter\n"
		    "mailroom_relay_deferrals_total %" PRIu64 "\n"
		    "# TYPE mailroom_relay_sessions gauge\n"
		    "mailroom_relay_sessions %u\n"
		    "# TYPE mailroom_relay_slots gauge\n"
		    "mailroom_relay_slots %u\n",
		    relay_pending(in->relay), in->paused ? 1 : 0, in->nsess,
		    in->accepted, in->refused,
		    (uint64_t)atomic_load(&c->delivered),
		    (uint64_t)atomic_load(&c->bounced),
		    (uint64_t)atomic_load(&c->deferrals),
		    (unsigned)atomic_load(&c->sessions),
		    (unsigned)atomic_load(&c->slots));
	} else {
		code = 404;
		mr_buf_puts(&b, "GET /status or /metrics\n");
	}
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evbuffer_add(body, b.data, b.len);
	evhttp_send_reply(req, code, code == 200 ? "OK" : code == 403 ?
	    "Forbidden" : "Not Found", body);
	evbuffer_free(body);
	mr_buf_release(&b);
}

/* inject_shutdown_cb - on the listener's loop: stop listening, tell the
 * clients, leave the loop once they are gone. */
static void
inject_shutdown_cb(evutil_socket_t fd, short what, void *arg)
{
	struct injector *in = arg;
	struct isess *is, *next;

	(void)fd;
	(void)what;
	net_listener_free(&in->lis);
	if (in->http != NULL) {
		evhttp_free(in->http);
		in->http = NULL;
	}
	for (is = LIST_FIRST(&in->sessions); is != NULL; is = next) {
		next = LIST_NEXT(is, link);
		smtps_shutdown(is->s);
	}
	inject_flush(in);
	event_base_loopexit(in->base, NULL);
}

void
inject_close(struct injector **inp)
{
	struct injector *in = *inp;
	struct isess *is;
	struct iwait *w;
	struct iauth *job;
	unsigned i;

	if (in == NULL)
		return;
	if (in->lstarted) {
		struct timeval now = { 0, 0 };

		event_base_once(in->base, -1, EV_TIMEOUT, inject_shutdown_cb,
		    in, &now);
		pthread_join(in->lthread, NULL);
	}
	if (in->astarted) {
		pthread_mutex_lock(&in->amu);
		in->astop = true;
		pthread_cond_signal(&in->acond);
		pthread_mutex_unlock(&in->amu);
		pthread_join(in->athread, NULL);
	}
	atomic_store(&in->camp.stop, true);
	if (in->engines_started)
		for (i = 0; i < in->nworkers; i++)
			pthread_join(in->threads[i], NULL);
	for (i = 0; i < in->nworkers; i++)
		engine_free(&in->engines[i]);
	while ((is = LIST_FIRST(&in->sessions)) != NULL) {
		LIST_REMOVE(is, link);
		smtps_free(&is->s);
		free(is);
	}
	while ((w = TAILQ_FIRST(&in->waiting)) != NULL) {
		TAILQ_REMOVE(&in->waiting, w, link);
		inject_wait_free(w);
	}
	while ((job = STAILQ_FIRST(&in->ajobs)) != NULL) {
		STAILQ_REMOVE_HEAD(&in->ajobs, link);
		inject_auth_job_free(job);
	}
	while ((job = STAILQ_FIRST(&in->adone)) != NULL) {
		STAILQ_REMOVE_HEAD(&in->adone, link);
		inject_auth_job_free(job);
	}
	relay_free(&in->relay);
	spool_close(&in->spool);
	if (in->shared_shaper != NULL)
		shaper_unsubscribe(in->shared_shaper, shape_acct_cb,
		    in->camp.acct);
	else
		shaper_free(&in->camp.shaper);
	if (in->camp.acct != NULL)
		(void)acct_close(&in->camp.acct);
	if (in->camp.tls_ctx)
		SSL_CTX_free(in->camp.tls_ctx);
	if (in->tls_srv)
		SSL_CTX_free(in->tls_srv);
	net_listener_free(&in->lis);
	if (in->http != NULL)
		evhttp_free(in->http);
	if (in->tick)
		event_free(in->tick);
	if (in->sync_ev)
		event_free(in->sync_ev);
	if (in->auth_ev)
		event_free(in->auth_ev);
	if (in->base)
		event_base_free(in->base);
	free(in->trusted);
	free(in->spool_dir);
	pthread_mutex_destroy(&in->amu);
	pthread_cond_destroy(&in->acond);
	free(in);
	*inp = NULL;
}
