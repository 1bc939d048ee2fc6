/*
 * relay.c - recipients of injected messages as a message source.
 *
 * Tables are arrays of fixed chunks (RELAY_CHUNK entries) found through a
 * fixed array of chunk pointers, so an entry never moves and readers need
 * no lock; free entries are chained through `next_free`.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/mr_hmap.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "delivery/dsn.h"
#include "delivery/relay.h"

#define RELAY_CHUNK_SHIFT	12
#define RELAY_CHUNK		(1u << RELAY_CHUNK_SHIFT)
#define RELAY_CHUNKS		16384		/* 64 M entries */
#define RELAY_NONE		UINT32_MAX
#define RELAY_DOMAIN_MAX	255		/* octets, RFC 5321 4.5.3.1.2 */

/* A recipient that bounced, kept for the notification. */
struct rfail {
	struct rfail	*next;
	struct dsn_rcpt	 r;		/* its strings owned */
};

struct rmsg {
	uint64_t	 spool_id;
	uint64_t	 received;	/* wall ms */
	char		*mail_from;
	uint32_t	 remaining;	/* recipients whose entry is held */
	uint32_t	 unresolved;	/* ... not yet final (the last one
					 * to become final sends the DSN) */
	uint32_t	 next_free;
	struct rfail	*fails;
};

struct rrcpt {
	uint32_t	 msg;
	uint32_t	 domain;
	uint32_t	 idx;		/* in the message as spooled */
	uint32_t	 next_free;
	char		*addr;
};

/* A domain, as the engines see it: its mail from one source pool. */
struct rdom {
	char		*name;		/* lower case */
	unsigned	 pool;
};

struct relay {
	pthread_mutex_t		 mu;
	struct spool		*sp;
	struct rmsg		*msgs[RELAY_CHUNKS];
	uint32_t		 nmsgs, msg_free;
	struct rrcpt		*rcpts[RELAY_CHUNKS];
	uint32_t		 nrcpts, rcpt_free;
	uint32_t		 rcpt_nfree;	/* entries on the free list */
	struct rdom		*doms[RELAY_CHUNKS];
	uint32_t		 ndomains;
	struct mr_hmap		*dindex;
	relay_bounce_cb		*bounce;
	void			*bounce_arg;
	atomic_uint_fast64_t	 pending;
	atomic_uint_fast64_t	 messages;
};

struct msgsrc_scratch {
	struct spool_message	 m;
	struct mr_buf		 err;
};

static struct rmsg *
relay_msg(const struct relay *r, uint32_t i)
{
	return &r->msgs[i >> RELAY_CHUNK_SHIFT][i & (RELAY_CHUNK - 1)];
}

static struct rrcpt *
relay_rcpt(const struct relay *r, uint32_t i)
{
	return &r->rcpts[i >> RELAY_CHUNK_SHIFT][i & (RELAY_CHUNK - 1)];
}

static struct rdom *
relay_dom(const struct relay *r, uint32_t i)
{
	return &r->doms[i >> RELAY_CHUNK_SHIFT][i & (RELAY_CHUNK - 1)];
}

static bool
relay_dom_eq(void *ctx, uint32_t value, const void *key, size_t len)
{
	const struct rdom *d = relay_dom(ctx, value), *k = key;

	(void)len;
	return d->pool == k->pool && strcmp(d->name, k->name) == 0;
}

/* relay_fails_free - a message's list of bounced recipients. */
static void
relay_fails_free(struct rfail *f)
{
	struct rfail *next;

	for (; f != NULL; f = next) {
		next = f->next;
		free((char *)f->r.addr);
		free((char *)f->r.status);
		free((char *)f->r.diag);
		free((char *)f->r.mx);
		free(f);
	}
}

struct relay *
relay_new(struct spool *sp, relay_bounce_cb *bounce, void *bounce_arg)
{
	struct relay *r = xcalloc(1, sizeof(*r));

	pthread_mutex_init(&r->mu, NULL);
	r->sp = sp;
	r->bounce = bounce;
	r->bounce_arg = bounce_arg;
	r->msg_free = r->rcpt_free = RELAY_NONE;
	r->dindex = mr_hmap_new(relay_dom_eq, r);
	return r;
}

void
relay_free(struct relay **rp)
{
	struct relay *r = *rp;
	uint32_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->nmsgs; i++) {
		free(relay_msg(r, i)->mail_from);
		relay_fails_free(relay_msg(r, i)->fails);
	}
	for (i = 0; i < r->nrcpts; i++)
		free(relay_rcpt(r, i)->addr);
	for (i = 0; i < r->ndomains; i++)
		free(relay_dom(r, (uint32_t)i)->name);
	for (i = 0; i < RELAY_CHUNKS; i++) {
		free(r->msgs[i]);
		free(r->rcpts[i]);
		free(r->doms[i]);
	}
	mr_hmap_free(&r->dindex);
	pthread_mutex_destroy(&r->mu);
	free(r);
	*rp = NULL;
}

/* The next entry of a table, made when needed (lock held). */
static int
relay_slot(void **chunks, size_t size, uint32_t *n, uint32_t *free_head,
    uint32_t *nfree, size_t free_off, uint32_t *out)
{
	uint32_t i;

	if (*free_head != RELAY_NONE) {
		if (nfree != NULL)
			(*nfree)--;
		i = *free_head;
		*free_head = *(uint32_t *)((char *)chunks[i >>
		    RELAY_CHUNK_SHIFT] + (i & (RELAY_CHUNK - 1)) * size +
		    free_off);
		*out = i;
		return 0;
	}
	if (*n >= (uint32_t)RELAY_CHUNKS * RELAY_CHUNK)
		return MR_ERANGE_VALUE;
	if (chunks[*n >> RELAY_CHUNK_SHIFT] == NULL)
		chunks[*n >> RELAY_CHUNK_SHIFT] = xcalloc(RELAY_CHUNK, size);
	*out = (*n)++;
	return 0;
}

/*
 * relay_domain - the id of the domain of addr (lower case) for source
 * pool pool (lock held).  The name is lower-cased into a buffer on the
 * stack and copied only when the domain is new: a domain has at most
 * RELAY_DOMAIN_MAX octets (RFC 5321 4.5.3.1.2); a longer one, should
 * one come, is lower-cased on the heap instead.
 */
static uint32_t
relay_domain(struct relay *r, const char *addr, unsigned pool)
{
	const char *at = strrchr(addr, '@'), *name = at ? at + 1 : "";
	char stack[RELAY_DOMAIN_MAX + 1];
	struct rdom k, *d;
	uint32_t v;
	uint64_t h;
	size_t n = strlen(name), i;

	k.name = n < sizeof(stack) ? stack : xmalloc(n + 1);
	k.pool = pool;
	for (i = 0; i < n; i++)
		k.name[i] = (char)tolower((unsigned char)name[i]);
	k.name[n] = '\0';
	h = mr_hash(k.name, n) ^ ((uint64_t)pool * 0x9e3779b97f4a7c15ULL);
	v = mr_hmap_find(r->dindex, h, &k, sizeof(k));
	if (v != MR_HMAP_NONE) {
		if (k.name != stack)
			free(k.name);
		return v;
	}
	v = r->ndomains;
	if (r->doms[v >> RELAY_CHUNK_SHIFT] == NULL)
		r->doms[v >> RELAY_CHUNK_SHIFT] = xcalloc(RELAY_CHUNK,
		    sizeof(struct rdom));
	d = relay_dom(r, v);
	d->name = k.name == stack ? xstrdup(stack) : k.name;
	d->pool = pool;
	r->ndomains++;
	mr_hmap_put(r->dindex, h, d, sizeof(*d), v);
	return v;
}

int
relay_add(struct relay *r, uint64_t id, const struct spool_envelope *env,
    const uint32_t *idx, unsigned pool, uint32_t *out)
{
	uint32_t mi, ri;
	struct rmsg *m;
	struct rrcpt *rc;
	size_t i;
	int code = 0;

	pthread_mutex_lock(&r->mu);
	/* Room for all of them, or none is taken (the message stays in
	 * the spool for the next start). */
	if ((uint64_t)RELAY_CHUNKS * RELAY_CHUNK - r->nrcpts + r->rcpt_nfree <
	    env->nrcpt || (r->msg_free == RELAY_NONE &&
	    r->nmsgs >= (uint32_t)RELAY_CHUNKS * RELAY_CHUNK) ||
	    r->ndomains + env->nrcpt > (uint32_t)RELAY_CHUNKS * RELAY_CHUNK) {
		code = MR_ERANGE_VALUE;
		goto out;
	}
	if ((code = relay_slot((void **)r->msgs, sizeof(struct rmsg),
	    &r->nmsgs, &r->msg_free, NULL, offsetof(struct rmsg, next_free),
	    &mi)) != 0)
		goto out;
	m = relay_msg(r, mi);
	m->spool_id = id;
	m->received = env->received ? env->received : mr_wall_ms();
	m->mail_from = xstrdup(env->mail_from ? env->mail_from : "");
	m->remaining = 0;
	m->fails = NULL;
	for (i = 0; i < env->nrcpt; i++) {
		if ((code = relay_slot((void **)r->rcpts,
		    sizeof(struct rrcpt), &r->nrcpts, &r->rcpt_free,
		    &r->rcpt_nfree, offsetof(struct rrcpt, next_free),
		    &ri)) != 0)
			break;
		rc = relay_rcpt(r, ri);
		rc->msg = mi;
		rc->idx = idx ? idx[i] : (uint32_t)i;
		rc->addr = xstrdup(env->rcpt[i]);
		rc->domain = relay_domain(r, rc->addr, pool);
		out[i] = ri;
		m->remaining++;
	}
	m->unresolved = m->remaining;
	atomic_fetch_add(&r->pending, m->remaining);
	atomic_fetch_add(&r->messages, 1);
out:
	pthread_mutex_unlock(&r->mu);
	return code;
}

uint64_t
relay_pending(const struct relay *r)
{
	return atomic_load(&r->pending);
}

uint64_t
relay_messages(const struct relay *r)
{
	return atomic_load(&r->messages);
}

/* ---------------------------------------------------------------- */
/* The message source                                               */
/* ---------------------------------------------------------------- */

static struct msgsrc_scratch *
relay_scratch_new(void *arg)
{
	(void)arg;
	return xcalloc(1, sizeof(struct msgsrc_scratch));
}

static void
relay_scratch_free(void *arg, struct msgsrc_scratch *sc)
{
	(void)arg;
	if (sc == NULL)
		return;
	spool_message_release(&sc->m);
	mr_buf_release(&sc->err);
	free(sc);
}

static uint32_t
relay_src_domain(void *arg, uint32_t i)
{
	return relay_rcpt(arg, i)->domain;
}

static const char *
relay_src_domain_name(void *arg, uint32_t id)
{
	return relay_dom(arg, id)->name;
}

static unsigned
relay_src_domain_pool(void *arg, uint32_t id)
{
	return relay_dom(arg, id)->pool;
}

static void
relay_src_address(void *arg, struct msgsrc_scratch *sc, uint32_t i,
    const char **p_r, size_t *n_r)
{
	(void)sc;
	*p_r = relay_rcpt(arg, i)->addr;
	*n_r = strlen(*p_r);
}

static unsigned
relay_src_line(void *arg, uint32_t i)
{
	(void)arg;
	(void)i;
	return 0;
}

static uint64_t
relay_src_fingerprint(void *arg, uint32_t i)
{
	return (uint64_t)relay_rcpt(arg, i)->msg + 1;
}

static const char *
relay_src_mail_from(void *arg, uint32_t i)
{
	struct relay *r = arg;

	return relay_msg(r, relay_rcpt(r, i)->msg)->mail_from;
}

/*
 * relay_stuff - body (CRLF lines, as received after dot-unstuffing) in
 * SMTP DATA form when stuff: a line starting with "." gets another.
 * The last line gets its CRLF when it has none.
 */
static void
relay_stuff(const unsigned char *b, size_t n, bool stuff,
    struct evbuffer *out, bool *eight_r)
{
	size_t i, from = 0;
	bool bol = true, eight = false;

	for (i = 0; i < n; i++) {
		if (b[i] & 0x80)
			eight = true;
		if (bol && stuff && b[i] == '.') {
			evbuffer_add(out, b + from, i - from);
			evbuffer_add(out, ".", 1);
			from = i;
		}
		bol = b[i] == '\n';
	}
	evbuffer_add(out, b + from, n - from);
	if (n == 0 || b[n - 1] != '\n')
		evbuffer_add(out, "\r\n", 2);
	*eight_r = eight;
}

static int
relay_src_render(void *arg, struct msgsrc_scratch *sc, uint32_t i,
    const struct msgsrc_stamp *st, bool stuff, struct evbuffer *out,
    size_t *size_r, bool *eight_r, const char **why_r)
{
	struct relay *r = arg;
	uint64_t id = relay_msg(r, relay_rcpt(r, i)->msg)->spool_id;
	size_t before = evbuffer_get_length(out);
	int code;

	(void)st;

	mr_buf_reset(&sc->err);
	if ((code = spool_read_message(r->sp, id, &sc->m, &sc->err)) != 0) {
		*why_r = mr_buf_cstr(&sc->err);
		return code == -ENOENT || code == MR_EINVAL_INPUT ?
		    MSGSRC_PERM : MSGSRC_TEMP;
	}
	relay_stuff(sc->m.body, sc->m.body_len, stuff, out, eight_r);
	*size_r = evbuffer_get_length(out) - before;
	return 0;
}

static uint64_t
relay_src_queue_id(void *arg, uint32_t i)
{
	struct relay *r = arg;

	return relay_msg(r, relay_rcpt(r, i)->msg)->spool_id;
}

static uint64_t
relay_src_received(void *arg, uint32_t i)
{
	struct relay *r = arg;

	return relay_msg(r, relay_rcpt(r, i)->msg)->received;
}

/*
 * relay_notify - the last recipient of m is final: when some bounced and
 * there is a sender to tell (never for a null sender: no notification
 * about a notification), hand the bounces to the relay's callback.
 * Called with no lock held; fails is the caller's to free.
 */
static void
relay_notify(struct relay *r, const struct rmsg *m, struct rfail *fails)
{
	struct dsn_rcpt *v;
	struct rfail *f;
	size_t n = 0, i;

	if (fails == NULL || r->bounce == NULL || *m->mail_from == '\0')
		return;
	for (f = fails; f != NULL; f = f->next)
		n++;
	v = xcalloc(n, sizeof(*v));
	/* The list is newest first: the report lists them as they came. */
	for (f = fails, i = n; f != NULL; f = f->next)
		v[--i] = f->r;
	r->bounce(r->bounce_arg, m->spool_id, m->mail_from, m->received, v,
	    n);
	free(v);
}

static void
relay_src_final(void *arg, uint32_t i, const struct msgsrc_final *fin)
{
	struct relay *r = arg;
	struct rrcpt *rc;
	struct rmsg *m;
	struct rfail *f = NULL, *fails = NULL;
	struct mr_buf err = MR_BUF_INIT;
	bool last;

	/* The entry is the caller's until freed below, and its message
	 * stays while it counts: the spool's write needs no relay lock. */
	rc = relay_rcpt(r, i);
	m = relay_msg(r, rc->msg);
	if (fin->bounced) {
		f = xcalloc(1, sizeof(*f));
		f->r.addr = xstrdup(rc->addr);
		f->r.status = xstrdup(fin->dsn ? fin->dsn : "");
		f->r.code = fin->code;
		f->r.diag = xstrdup(fin->reply ? fin->reply : "");
		f->r.mx = fin->mx ? xstrdup(fin->mx) : NULL;
	}
	pthread_mutex_lock(&r->mu);
	if (f != NULL) {
		f->next = m->fails;
		m->fails = f;
	}
	if ((last = --m->unresolved == 0)) {
		fails = m->fails;
		m->fails = NULL;
	}
	pthread_mutex_unlock(&r->mu);
	/* The notification goes into the spool before the last final mark,
	 * so a crash in between sends the message again rather than lose
	 * the notification. */
	if (last) {
		relay_notify(r, m, fails);
		relay_fails_free(fails);
	}
	if (spool_rcpt_done(r->sp, m->spool_id, rc->idx, fin->bounced ?
	    SPOOL_BOUNCED : SPOOL_DELIVERED, &err) != 0)
		mr_log_warn("relay", "event=done id=%llu error=%s",
		    (unsigned long long)m->spool_id,
		    mr_q(mr_buf_cstr(&err), (size_t)-1));
	pthread_mutex_lock(&r->mu);
	free(rc->addr);
	rc->addr = NULL;
	rc->next_free = r->rcpt_free;
	r->rcpt_free = i;
	r->rcpt_nfree++;
	atomic_fetch_sub(&r->pending, 1);
	if (--m->remaining == 0) {
		free(m->mail_from);
		m->mail_from = NULL;
		m->next_free = r->msg_free;
		r->msg_free = rc->msg;
		atomic_fetch_sub(&r->messages, 1);
	}
	pthread_mutex_unlock(&r->mu);
	mr_buf_release(&err);
}

static const struct msgsrc_ops relay_ops = {
	.scratch_new = relay_scratch_new,
	.scratch_free = relay_scratch_free,
	.domain = relay_src_domain,
	.domain_name = relay_src_domain_name,
	.domain_pool = relay_src_domain_pool,
	.address = relay_src_address,
	.line = relay_src_line,
	.fingerprint = relay_src_fingerprint,
	.mail_from = relay_src_mail_from,
	.render = relay_src_render,
	.received = relay_src_received,
	.queue_id = relay_src_queue_id,
	.final = relay_src_final,
	.stamps = false,
};

void
relay_source(struct relay *r, struct msgsrc *out)
{
	out->ops = &relay_ops;
	out->arg = r;
}
