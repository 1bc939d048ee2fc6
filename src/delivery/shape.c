/*
 * shape.c - destinations, their limits and the adaptive controller (see
 * shape.h for the rules it follows).
 *
 * Rates are token buckets refilled from the monotonic clock: the message
 * bucket holds a tenth of a second's worth (at least one), the hourly
 * one a minute's worth, the connection one a second's worth.  The
 * accepted rate is counted over the last second in ten slots of 100 ms
 * (a receiver's "per second" limit is usually such a window).
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/mr_hmap.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "delivery/acct.h"
#include "delivery/shape.h"

#define SHAPE_SLOTS		10	/* the rate window: one second */
#define SHAPE_SLOT_MS		100
#define SHAPE_CUT_GUARD_MS	2000	/* one rate cut per burst */
#define SHAPE_CONN_HOLD_MS	30000	/* no growth after a cut */
#define SHAPE_CONTENDED_MS	1000	/* a refusal this recent counts */
#define SHAPE_MIN_RATE		0.05	/* per second: one in 20 s */
#define SHAPE_RATE_FACTOR	0.85	/* of the accepted rate */
#define SHAPE_BURST_S		0.1	/* the message bucket's depth */
#define SHAPE_PROBE_STEP	1.1

struct shape_rule {
	regex_t		 re;
	int		 action;	/* enum conf_shape_action */
	uint64_t	 ms;
	char		*text;
};

struct shape_rules {
	struct shape_rule	*v;
	size_t			 n;
};

struct shape_bucket {
	double		 rate;		/* tokens per second, 0: unlimited */
	double		 burst;
	double		 tokens;
	uint64_t	 at;		/* last refill, mono ms */
};

struct shape_dest {
	pthread_mutex_t		 mu;
	struct shaper		*sh;
	char			*key;		/* name "|" source index */
	char			*name;
	unsigned		 src;
	const struct shape_rules *rules;	/* the [destination]'s */
	/* Caps. */
	unsigned		 max_conns;
	unsigned		 cfg_per_conn;	/* 0: none */
	double			 cfg_rate;	/* per second, 0: none */
	bool			 adaptive;
	/* State. */
	unsigned		 open;
	double			 limit;		/* connections allowed */
	bool			 cut_once;	/* out of slow start */
	unsigned		 learned_per_conn;
	double			 rate_cap;	/* learned, per s, 0: none */
	struct shape_bucket	 msgs, hourly, conns;
	/* Recipients accepted and sent in the last second, in tenths. */
	uint32_t		 acc[SHAPE_SLOTS], sent[SHAPE_SLOTS];
	uint64_t		 slot;		/* now / SHAPE_SLOT_MS of the last */
	uint64_t		 hold_until;	/* no growth before */
	uint64_t		 last_probe;
	uint64_t		 last_rate_cut, last_conn_cut;
	uint64_t		 paused_until;
	uint64_t		 denied_at;	/* a connection was refused */
	bool			 suspended;
	uint64_t		 cuts;
};

/* Who hears of changes: the shaper's user, or each campaign sharing it. */
#define SHAPE_SUBS_MAX	64

struct shape_sub {
	shape_change_cb		*cb;
	void			*arg;
};

struct shaper {
	const struct mr_config	*cfg;
	pthread_mutex_t		 subs_mu;	/* a leaf: taken under a
						 * destination's lock */
	struct shape_sub	 subs[SHAPE_SUBS_MAX];
	unsigned		 nsubs;
	struct shape_rules	 global;
	struct shape_rules	*dest_rules;	/* by cfg->shaping_dests index */
	struct sockaddr_storage	*src;
	unsigned		*srclen;
	char			**srcname;
	unsigned		 nsrc;
	/* Pools: 0 is shaping.source, p + 1 is cfg->pools[p]; each a list
	 * of indices into the source table (shared by pools that share an
	 * address, so its limits per destination are too). */
	unsigned		**pool;
	unsigned		*pool_n;
	unsigned		 npools;
	pthread_mutex_t		 mu;		/* the index and the array */
	struct mr_hmap		*index;
	struct shape_dest	**dests;
	size_t			 ndests;
};

/* ---------------------------------------------------------------- */

static int
shape_rules_compile(const struct conf_list *l, struct shape_rules *out,
    struct mr_buf *err)
{
	struct conf_shape_rule r;
	size_t i;
	int rc;

	out->v = xcalloc(l->n ? l->n : 1, sizeof(*out->v));
	out->n = 0;
	for (i = 0; i < l->n; i++) {
		if ((rc = conf_parse_shape_rule(l->v[i], &r, err)) != 0)
			return rc;
		rc = regcomp(&out->v[out->n].re, r.regex,
		    REG_EXTENDED | REG_ICASE | REG_NOSUB);
		conf_shape_rule_release(&r);
		if (rc != 0) {
			mr_buf_printf(err, "rule \"%s\" does not compile",
			    l->v[i]);
			return MR_EINVAL_INPUT;
		}
		out->v[out->n].action = r.action;
		out->v[out->n].ms = (uint64_t)r.ms;
		out->v[out->n].text = xstrdup(l->v[i]);
		out->n++;
	}
	return 0;
}

static void
shape_rules_free(struct shape_rules *rs)
{
	size_t i;

	for (i = 0; i < rs->n; i++) {
		regfree(&rs->v[i].re);
		free(rs->v[i].text);
	}
	free(rs->v);
	rs->v = NULL;
	rs->n = 0;
}

static bool
shape_dest_key_eq(void *ctx, uint32_t value, const void *key, size_t len)
{
	struct shaper *sh = ctx;
	const char *k = sh->dests[value]->key;

	return strlen(k) == len && memcmp(k, key, len) == 0;
}

static int
shape_parse_source(const char *s, struct sockaddr_storage *ss,
    unsigned *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		*len = sizeof(*sin6);
		return 0;
	}
	return MR_EINVAL_INPUT;
}

/*
 * shape_pool_sources - pool p's addresses l (from where, for errors):
 * each parsed, and entered in the source table unless a pool before had
 * it (the same address is one source, whatever pools name it).
 */
static int
shape_pool_sources(struct shaper *sh, unsigned p, const struct conf_list *l,
    const char *where, struct mr_buf *err)
{
	struct sockaddr_storage ss;
	unsigned len, i, j;

	sh->pool[p] = xcalloc(l->n ? l->n : 1, sizeof(**sh->pool));
	for (i = 0; i < l->n; i++) {
		if (shape_parse_source(l->v[i], &ss, &len) != 0) {
			mr_buf_printf(err, "%s: \"%s\" is not an IPv4 or IPv6 "
			    "address", where, l->v[i]);
			return MR_EINVAL_INPUT;
		}
		for (j = 0; j < sh->nsrc; j++)
			if (sh->srclen[j] == len &&
			    memcmp(&sh->src[j], &ss, len) == 0)
				break;
		if (j == sh->nsrc) {
			memcpy(&sh->src[j], &ss, len);
			sh->srclen[j] = len;
			sh->srcname[j] = xstrdup(l->v[i]);
			sh->nsrc++;
		}
		sh->pool[p][sh->pool_n[p]++] = j;
	}
	return 0;
}

struct shaper *
shaper_new(const struct mr_config *cfg, shape_change_cb *cb, void *cb_arg,
    struct mr_buf *err)
{
	struct shaper *sh = xcalloc(1, sizeof(*sh));
	size_t i, n;

	sh->cfg = cfg;
	pthread_mutex_init(&sh->subs_mu, NULL);
	if (cb != NULL)
		shaper_subscribe(sh, cb, cb_arg);
	pthread_mutex_init(&sh->mu, NULL);
	sh->index = mr_hmap_new(shape_dest_key_eq, sh);
	sh->dest_rules = xcalloc(cfg->shaping_ndests ? cfg->shaping_ndests : 1,
	    sizeof(*sh->dest_rules));
	if (shape_rules_compile(&cfg->shaping_rule, &sh->global, err) != 0)
		goto fail;
	for (i = 0; i < cfg->shaping_ndests; i++)
		if (shape_rules_compile(&cfg->shaping_dests[i].rules,
		    &sh->dest_rules[i], err) != 0)
			goto fail;
	if (*cfg->send_pool != '\0' &&
	    conf_pool_find(cfg, cfg->send_pool) == NULL) {
		mr_buf_printf(err, "send.pool: there is no [pool %s] section",
		    cfg->send_pool);
		goto fail;
	}
	n = cfg->shaping_source.n ? cfg->shaping_source.n : 1;
	for (i = 0; i < cfg->npools; i++)
		n += cfg->pools[i].source.n;
	sh->src = xcalloc(n, sizeof(*sh->src));
	sh->srclen = xcalloc(n, sizeof(*sh->srclen));
	sh->srcname = xcalloc(n, sizeof(*sh->srcname));
	sh->npools = (unsigned)cfg->npools + 1;
	sh->pool = xcalloc(sh->npools, sizeof(*sh->pool));
	sh->pool_n = xcalloc(sh->npools, sizeof(*sh->pool_n));
	if (cfg->shaping_source.n == 0) {
		sh->srcname[0] = xstrdup("");
		sh->nsrc = 1;
		sh->pool[0] = xcalloc(1, sizeof(**sh->pool));
		sh->pool_n[0] = 1;
	} else if (shape_pool_sources(sh, 0, &cfg->shaping_source,
	    "shaping.source", err) != 0)
		goto fail;
	for (i = 0; i < cfg->npools; i++)
		if (shape_pool_sources(sh, (unsigned)i + 1,
		    &cfg->pools[i].source, cfg->pools[i].where, err) != 0)
			goto fail;
	return sh;
fail:
	shaper_free(&sh);
	return NULL;
}

void
shaper_free(struct shaper **shp)
{
	struct shaper *sh = *shp;
	size_t i;

	if (sh == NULL)
		return;
	for (i = 0; i < sh->ndests; i++) {
		pthread_mutex_destroy(&sh->dests[i]->mu);
		free(sh->dests[i]->key);
		free(sh->dests[i]->name);
		free(sh->dests[i]);
	}
	free(sh->dests);
	mr_hmap_free(&sh->index);
	shape_rules_free(&sh->global);
	for (i = 0; i < sh->cfg->shaping_ndests; i++)
		shape_rules_free(&sh->dest_rules[i]);
	free(sh->dest_rules);
	for (i = 0; i < sh->nsrc; i++)
		free(sh->srcname[i]);
	for (i = 0; i < sh->npools; i++)
		free(sh->pool[i]);
	free(sh->pool);
	free(sh->pool_n);
	free(sh->srcname);
	free(sh->src);
	free(sh->srclen);
	pthread_mutex_destroy(&sh->mu);
	pthread_mutex_destroy(&sh->subs_mu);
	free(sh);
	*shp = NULL;
}

unsigned
shaper_pool_of(const struct shaper *sh, const struct conf_pool *pl)
{
	size_t i;

	if (pl == NULL)
		return 0;
	i = (size_t)(pl - sh->cfg->pools);
	MR_ASSERT(i < sh->cfg->npools);
	return (unsigned)i + 1;
}

int
shaper_pool_named(const struct shaper *sh, const char *name)
{
	const struct conf_pool *pl;

	if (name == NULL || *name == '\0')
		return 0;
	if ((pl = conf_pool_find(sh->cfg, name)) == NULL)
		return -1;
	return (int)shaper_pool_of(sh, pl);
}

const char *
shaper_pool_name(const struct shaper *sh, unsigned pool)
{
	MR_ASSERT(pool < sh->npools);
	return pool == 0 ? "" : sh->cfg->pools[pool - 1].name;
}

unsigned
shaper_pool_nsources(const struct shaper *sh, unsigned pool)
{
	MR_ASSERT(pool < sh->npools);
	return sh->pool_n[pool];
}

unsigned
shaper_pool_source(const struct shaper *sh, unsigned pool, unsigned i)
{
	MR_ASSERT(pool < sh->npools && i < sh->pool_n[pool]);
	return sh->pool[pool][i];
}

const struct sockaddr *
shaper_source(const struct shaper *sh, unsigned i, unsigned *len_r)
{
	if (i >= sh->nsrc || sh->srclen[i] == 0)
		return NULL;
	*len_r = sh->srclen[i];
	return (const struct sockaddr *)&sh->src[i];
}

/* ---------------------------------------------------------------- */
/* Buckets and estimates                                            */
/* ---------------------------------------------------------------- */

static void
bucket_set(struct shape_bucket *b, double rate, double burst_secs,
    uint64_t now)
{
	b->rate = rate;
	b->burst = rate * burst_secs < 1.0 ? 1.0 : rate * burst_secs;
	if (b->at == 0) {
		b->tokens = b->burst;
		b->at = now;
	}
	if (b->tokens > b->burst)
		b->tokens = b->burst;
}

static void
bucket_refill(struct shape_bucket *b, uint64_t now)
{
	if (b->rate <= 0)
		return;
	if (now > b->at) {
		b->tokens += b->rate * (double)(now - b->at) / 1000.0;
		if (b->tokens > b->burst)
			b->tokens = b->burst;
	}
	b->at = now;
}

/* bucket_wait - ms until one token is there. */
static uint64_t
bucket_wait(const struct shape_bucket *b)
{
	if (b->rate <= 0 || b->tokens >= 1.0)
		return 0;
	return (uint64_t)ceil((1.0 - b->tokens) * 1000.0 / b->rate);
}

/* shape_window - move the one-second window of counts to now. */
static void
shape_window(struct shape_dest *d, uint64_t now)
{
	uint64_t slot = now / SHAPE_SLOT_MS, k;

	if (slot <= d->slot)
		return;
	for (k = d->slot + 1; k <= slot && k <= d->slot + SHAPE_SLOTS; k++) {
		d->acc[k % SHAPE_SLOTS] = 0;
		d->sent[k % SHAPE_SLOTS] = 0;
	}
	d->slot = slot;
}

/* shape_rate_of - recipients per second in the window. */
static double
shape_rate_of(const uint32_t *v)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < SHAPE_SLOTS; i++)
		sum += v[i];
	return (double)sum * 1000.0 / (SHAPE_SLOTS * SHAPE_SLOT_MS);
}

static double
shape_eff_rate(const struct shape_dest *d)
{
	if (d->cfg_rate > 0 && d->rate_cap > 0)
		return d->cfg_rate < d->rate_cap ? d->cfg_rate : d->rate_cap;
	return d->cfg_rate > 0 ? d->cfg_rate : d->rate_cap;
}

static void
shape_rate_text(double r, char *buf, size_t n)
{
	if (r <= 0)
		snprintf(buf, n, "unlimited");
	else if (r >= 1)
		snprintf(buf, n, "%.1f/s", r);
	else
		snprintf(buf, n, "%.1f/m", r * 60);
}

/* shape_changed - log a change and report it (lock held). */
static void
shape_changed(struct shape_dest *d, const char *what, const char *before,
    const char *after, const char *reason, unsigned code, const char *dsn,
    bool report)
{
	struct shape_change ch;
	unsigned i;

	mr_log_info("shape", "dest=%s source=%s event=limit what=%s "
	    "from=%s to=%s reason=%s", d->name,
	    d->sh->srcname[d->src][0] ? d->sh->srcname[d->src] : "-", what,
	    before, after, mr_q(reason, (size_t)-1));
	if (!report)
		return;
	memset(&ch, 0, sizeof(ch));
	ch.dest = d->name;
	ch.source = d->sh->srcname[d->src];
	ch.what = what;
	ch.before = before;
	ch.after = after;
	ch.reason = reason;
	ch.code = code;
	ch.dsn = dsn ? dsn : "";
	pthread_mutex_lock(&d->sh->subs_mu);
	for (i = 0; i < d->sh->nsubs; i++)
		d->sh->subs[i].cb(d->sh->subs[i].arg, &ch);
	pthread_mutex_unlock(&d->sh->subs_mu);
}

bool
shaper_subscribe(struct shaper *sh, shape_change_cb *cb, void *arg)
{
	bool ok;

	pthread_mutex_lock(&sh->subs_mu);
	if ((ok = sh->nsubs < SHAPE_SUBS_MAX)) {
		sh->subs[sh->nsubs].cb = cb;
		sh->subs[sh->nsubs].arg = arg;
		sh->nsubs++;
	}
	pthread_mutex_unlock(&sh->subs_mu);
	return ok;
}

void
shaper_unsubscribe(struct shaper *sh, shape_change_cb *cb, void *arg)
{
	unsigned i;

	pthread_mutex_lock(&sh->subs_mu);
	for (i = 0; i < sh->nsubs; i++) {
		if (sh->subs[i].cb == cb && sh->subs[i].arg == arg) {
			sh->subs[i] = sh->subs[--sh->nsubs];
			break;
		}
	}
	pthread_mutex_unlock(&sh->subs_mu);
}

/* ---------------------------------------------------------------- */
/* Destinations                                                     */
/* ---------------------------------------------------------------- */

static int
shape_cmp_str(const void *a, const void *b)
{
	return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* shape_dest_config - caps from the configuration and the first
 * [destination] section matching the domain or an MX name. */
static void
shape_dest_config(struct shaper *sh, struct shape_dest *d,
    const char *domain, const char *const *mx, size_t nmx, uint64_t now)
{
	const struct mr_config *cfg = sh->cfg;
	const struct conf_dest *cd = NULL;
	size_t i;
	long long max_conns = cfg->smtp_max_connections;
	long long init = cfg->smtp_initial_connections;
	long long per_conn = 0, rate = cfg->shaping_max_message_rate;
	long long hourly = cfg->shaping_max_messages_per_hour;
	long long crate = cfg->shaping_max_connection_rate;
	bool adaptive = cfg->shaping_adaptive;

	cd = conf_dest_match(cfg, domain);
	for (i = 0; cd == NULL && i < nmx; i++)
		cd = conf_dest_match(cfg, mx[i]);
	if (cd != NULL) {
		if (cd->max_connections >= 0)
			max_conns = cd->max_connections;
		if (cd->initial_connections >= 0)
			init = cd->initial_connections;
		if (cd->messages_per_connection >= 0)
			per_conn = cd->messages_per_connection;
		if (cd->max_message_rate >= 0)
			rate = cd->max_message_rate;
		if (cd->max_messages_per_hour >= 0)
			hourly = cd->max_messages_per_hour;
		if (cd->max_connection_rate >= 0)
			crate = cd->max_connection_rate;
		if (cd->adaptive >= 0)
			adaptive = cd->adaptive;
		d->rules = &sh->dest_rules[cd - cfg->shaping_dests];
	}
	/* max_connections = 0 in a [destination] holds it entirely. */
	d->max_conns = (unsigned)max_conns;
	if (init > max_conns)
		init = max_conns;
	d->limit = adaptive ? (double)(init ? init : 1) : (double)max_conns;
	d->cfg_per_conn = (unsigned)per_conn;
	d->cfg_rate = (double)rate / 3600.0;
	d->adaptive = adaptive;
	bucket_set(&d->msgs, d->cfg_rate, SHAPE_BURST_S, now);
	bucket_set(&d->hourly, (double)hourly / 3600.0, 60, now);
	bucket_set(&d->conns, (double)crate / 3600.0, 1, now);
	mr_log_info("shape", "dest=%s source=%s event=new section=%s "
	    "max_connections=%u initial=%.0f rate=%lld/h hourly=%lld "
	    "connection_rate=%lld/h adaptive=%s", d->name,
	    sh->srcname[d->src][0] ? sh->srcname[d->src] : "-",
	    cd ? cd->where : "-", d->max_conns, d->limit, rate, hourly, crate,
	    adaptive ? "yes" : "no");
}

struct shape_dest *
shaper_dest(struct shaper *sh, const char *domain, const char *const *mx,
    size_t nmx, unsigned src)
{
	struct mr_buf name = MR_BUF_INIT, key = MR_BUF_INIT;
	const char **sorted;
	struct shape_dest *d;
	uint32_t v;
	uint64_t h;
	size_t i;

	MR_ASSERT(src < sh->nsrc);
	if (sh->cfg->shaping_group_by_mx && nmx > 0) {
		sorted = xcalloc(nmx, sizeof(*sorted));
		memcpy(sorted, mx, nmx * sizeof(*sorted));
		qsort(sorted, nmx, sizeof(*sorted), shape_cmp_str);
		for (i = 0; i < nmx; i++) {
			if (i > 0 && strcasecmp(sorted[i], sorted[i - 1]) == 0)
				continue;
			mr_buf_printf(&name, "%s%s", name.len ? "," : "",
			    sorted[i]);
		}
		free(sorted);
	} else {
		mr_buf_puts(&name, domain);
	}
	for (i = 0; i < name.len; i++)
		if (name.data[i] >= 'A' && name.data[i] <= 'Z')
			name.data[i] = (char)(name.data[i] - 'A' + 'a');
	mr_buf_printf(&key, "%s|%u", mr_buf_cstr(&name), src);
	h = mr_hash(key.data, key.len);
	pthread_mutex_lock(&sh->mu);
	v = mr_hmap_find(sh->index, h, key.data, key.len);
	if (v != MR_HMAP_NONE) {
		d = sh->dests[v];
		pthread_mutex_unlock(&sh->mu);
		mr_buf_release(&name);
		mr_buf_release(&key);
		return d;
	}
	d = xcalloc(1, sizeof(*d));
	pthread_mutex_init(&d->mu, NULL);
	d->sh = sh;
	d->key = xstrdup(mr_buf_cstr(&key));
	d->name = xstrdup(mr_buf_cstr(&name));
	d->src = src;
	shape_dest_config(sh, d, domain, mx, nmx, mr_clock_ms());
	sh->dests = xreallocarray(sh->dests, sh->ndests + 1,
	    sizeof(*sh->dests));
	sh->dests[sh->ndests] = d;
	mr_hmap_put(sh->index, h, key.data, key.len, (uint32_t)sh->ndests);
	sh->ndests++;
	pthread_mutex_unlock(&sh->mu);
	mr_buf_release(&name);
	mr_buf_release(&key);
	return d;
}

const char *
shape_dest_name(const struct shape_dest *d)
{
	return d->name;
}

/* ---------------------------------------------------------------- */
/* Asking                                                           */
/* ---------------------------------------------------------------- */

static bool
shape_paused(struct shape_dest *d, uint64_t now, uint64_t *wake_r)
{
	if (d->paused_until == 0)
		return false;
	if (now >= d->paused_until) {
		d->paused_until = 0;
		d->suspended = false;
		shape_changed(d, "pause", "paused", "resumed", "the back-off "
		    "period ended", 0, NULL, false);
		return false;
	}
	*wake_r = d->paused_until;
	return true;
}

bool
shape_conn_acquire(struct shape_dest *d, uint64_t now, uint64_t *wake_r)
{
	bool ok = false;

	*wake_r = 0;
	pthread_mutex_lock(&d->mu);
	if (shape_paused(d, now, wake_r))
		goto out;
	if ((double)d->open + 1 > d->limit + 1e-9 || d->open >= d->max_conns) {
		d->denied_at = now;
		goto out;
	}
	bucket_refill(&d->conns, now);
	if (d->conns.rate > 0 && d->conns.tokens < 1.0) {
		*wake_r = now + bucket_wait(&d->conns);
		goto out;
	}
	if (d->conns.rate > 0)
		d->conns.tokens -= 1.0;
	d->open++;
	ok = true;
out:
	pthread_mutex_unlock(&d->mu);
	return ok;
}

bool
shape_contended(struct shape_dest *d, uint64_t now)
{
	bool c;

	pthread_mutex_lock(&d->mu);
	c = d->denied_at != 0 && now - d->denied_at < SHAPE_CONTENDED_MS;
	pthread_mutex_unlock(&d->mu);
	return c;
}

void
shape_conn_release(struct shape_dest *d)
{
	pthread_mutex_lock(&d->mu);
	MR_ASSERT(d->open > 0);
	d->open--;
	pthread_mutex_unlock(&d->mu);
}

/* shape_probe - after a quiet probe interval, try a little more. */
static void
shape_probe(struct shape_dest *d, uint64_t now)
{
	char a[32], b[32];
	double r;

	if (!d->adaptive || now < d->hold_until ||
	    now - d->last_probe < (uint64_t)d->sh->cfg->shaping_probe_interval)
		return;
	d->last_probe = now;
	if (d->rate_cap > 0) {
		shape_rate_text(d->rate_cap, a, sizeof(a));
		r = d->rate_cap * SHAPE_PROBE_STEP;
		d->rate_cap = r > 1e6 ? 0 : r;
		bucket_set(&d->msgs, shape_eff_rate(d), SHAPE_BURST_S, now);
		shape_rate_text(d->rate_cap, b, sizeof(b));
		shape_changed(d, "rate", a, b, "no throttling for a probe "
		    "interval", 0, NULL, false);
	}
	if (d->learned_per_conn > 0) {
		snprintf(a, sizeof(a), "%u", d->learned_per_conn);
		d->learned_per_conn += (d->learned_per_conn + 9) / 10;
		snprintf(b, sizeof(b), "%u", d->learned_per_conn);
		shape_changed(d, "per_connection", a, b, "no throttling for a "
		    "probe interval", 0, NULL, false);
	}
}

unsigned
shape_take(struct shape_dest *d, uint64_t now, unsigned want,
    uint64_t *wake_r)
{
	unsigned n = want;
	double t;

	*wake_r = 0;
	pthread_mutex_lock(&d->mu);
	if (shape_paused(d, now, wake_r)) {
		n = 0;
		goto out;
	}
	shape_probe(d, now);
	bucket_refill(&d->msgs, now);
	bucket_refill(&d->hourly, now);
	t = 1e18;
	if (d->msgs.rate > 0)
		t = d->msgs.tokens;
	if (d->hourly.rate > 0 && d->hourly.tokens < t)
		t = d->hourly.tokens;
	if (t < 1.0) {
		uint64_t w1 = d->msgs.rate > 0 ? bucket_wait(&d->msgs) : 0;
		uint64_t w2 = d->hourly.rate > 0 ? bucket_wait(&d->hourly) : 0;

		*wake_r = now + (w1 > w2 ? w1 : w2);
		n = 0;
		goto out;
	}
	if ((double)n > t)
		n = (unsigned)t;
	if (d->msgs.rate > 0)
		d->msgs.tokens -= n;
	if (d->hourly.rate > 0)
		d->hourly.tokens -= n;
	shape_window(d, now);
	d->sent[d->slot % SHAPE_SLOTS] += n;
out:
	pthread_mutex_unlock(&d->mu);
	return n;
}

void
shape_give_back(struct shape_dest *d, unsigned n)
{
	pthread_mutex_lock(&d->mu);
	if (d->msgs.rate > 0)
		d->msgs.tokens += n;
	if (d->hourly.rate > 0)
		d->hourly.tokens += n;
	if (d->sent[d->slot % SHAPE_SLOTS] >= n)
		d->sent[d->slot % SHAPE_SLOTS] -= n;
	pthread_mutex_unlock(&d->mu);
}

unsigned
shape_per_connection(struct shape_dest *d)
{
	unsigned n;

	pthread_mutex_lock(&d->mu);
	n = d->cfg_per_conn;
	if (d->learned_per_conn > 0 && (n == 0 || d->learned_per_conn < n))
		n = d->learned_per_conn;
	pthread_mutex_unlock(&d->mu);
	return n;
}

bool
shape_suspended(struct shape_dest *d, uint64_t now)
{
	bool s;

	pthread_mutex_lock(&d->mu);
	s = d->suspended && now < d->paused_until;
	pthread_mutex_unlock(&d->mu);
	return s;
}

/* ---------------------------------------------------------------- */
/* Learning                                                         */
/* ---------------------------------------------------------------- */

/*
 * shape_cut_conns - the server wants fewer connections: halve the limit,
 * and never leave it above what is open now ("not that many", as a 421
 * to the 21st connection says), so that a destination where nothing
 * works drains to its last session (then the engine marks it down).
 * Growth waits SHAPE_CONN_HOLD_MS.
 */
static void
shape_cut_conns(struct shape_dest *d, uint64_t now, const char *reason,
    unsigned code, const char *dsn)
{
	char a[32], b[32];
	double l;

	if (!d->adaptive)
		return;
	l = floor(d->limit / 2);
	if (l > (double)d->open)
		l = (double)d->open;
	if (l < 1)
		l = 1;
	d->cut_once = true;
	d->hold_until = now + SHAPE_CONN_HOLD_MS;
	if ((unsigned)l >= (unsigned)d->limit)
		return;
	snprintf(a, sizeof(a), "%u", (unsigned)d->limit);
	snprintf(b, sizeof(b), "%u", (unsigned)l);
	d->limit = l;
	d->cuts++;
	d->last_conn_cut = now;
	shape_changed(d, "connections", a, b, reason, code, dsn, true);
}

/* shape_cut_rate - the server wants fewer messages per second. */
static void
shape_cut_rate(struct shape_dest *d, uint64_t now, const char *reason,
    unsigned code, const char *dsn)
{
	char a[32], b[32];
	double r, cur, acc;

	if (!d->adaptive || now - d->last_rate_cut < SHAPE_CUT_GUARD_MS)
		return;
	shape_window(d, now);
	acc = shape_rate_of(d->acc);
	d->last_rate_cut = now;
	d->cut_once = true;
	d->hold_until = now + (uint64_t)d->sh->cfg->shaping_probe_interval;
	d->last_probe = now;
	cur = shape_eff_rate(d);
	if (acc >= SHAPE_MIN_RATE)
		r = acc * SHAPE_RATE_FACTOR;
	else
		r = (cur > 0 ? cur : shape_rate_of(d->sent)) / 2;
	if (r < SHAPE_MIN_RATE)
		r = SHAPE_MIN_RATE;
	if (cur > 0 && r >= cur)
		r = cur * SHAPE_RATE_FACTOR;
	shape_rate_text(cur, a, sizeof(a));
	d->rate_cap = r;
	bucket_set(&d->msgs, shape_eff_rate(d), SHAPE_BURST_S, now);
	/* What the bucket held was for the old rate. */
	if (d->msgs.tokens > 1.0)
		d->msgs.tokens = 1.0;
	shape_rate_text(shape_eff_rate(d), b, sizeof(b));
	d->cuts++;
	shape_changed(d, "rate", a, b, reason, code, dsn, true);
}

/* shape_match - the first rule matching the reply, or NULL. */
static const struct shape_rule *
shape_match(const struct shape_dest *d, unsigned code, const char *dsn,
    const char *text, char *line, size_t n)
{
	const struct shape_rules *sets[2] = { d->rules, &d->sh->global };
	size_t i, j;

	snprintf(line, n, "%u %s %s", code, dsn ? dsn : "", text ? text : "");
	for (i = 0; i < 2; i++) {
		if (sets[i] == NULL)
			continue;
		for (j = 0; j < sets[i]->n; j++)
			if (regexec(&sets[i]->v[j].re, line, 0, NULL, 0) == 0)
				return &sets[i]->v[j];
	}
	return NULL;
}

/*
 * shape_apply_rules - a rule's action for this reply.  Returns true when
 * a rule matched (and was applied), false when the defaults decide.
 */
static bool
shape_apply_rules(struct shape_dest *d, uint64_t now, unsigned code,
    const char *dsn, const char *text, bool in_txn)
{
	const struct shape_rule *r;
	char line[600], why[700], a[32];

	if (code == 0 || (d->rules == NULL && d->sh->global.n == 0))
		return false;
	r = shape_match(d, code, dsn, text, line, sizeof(line));
	if (r == NULL)
		return false;
	snprintf(why, sizeof(why), "rule \"%s\" matched \"%s\"", r->text,
	    line);
	switch (r->action) {
	case CONF_SHAPE_THROTTLE:
		if (in_txn)
			shape_cut_rate(d, now, why, code, dsn);
		else
			shape_cut_conns(d, now, why, code, dsn);
		break;
	case CONF_SHAPE_BACKOFF:
	case CONF_SHAPE_SUSPEND:
		if (d->paused_until > now + r->ms / 2)
			break;
		d->paused_until = now + r->ms;
		d->suspended = r->action == CONF_SHAPE_SUSPEND;
		d->cuts++;
		snprintf(a, sizeof(a), "%s %llus", r->action ==
		    CONF_SHAPE_SUSPEND ? "suspended" : "paused",
		    (unsigned long long)(r->ms / 1000));
		shape_changed(d, "pause", "sending", a, why, code, dsn, true);
		break;
	}
	return true;
}

/* shape_reason - "CODE ESC TEXT" of a reply, without repeating the code
 * or the enhanced code when the text starts with them. */
static void
shape_reason(char *buf, size_t n, unsigned code, const char *dsn,
    const char *text)
{
	char c[8];
	size_t cl, dl = dsn ? strlen(dsn) : 0;

	if (text == NULL)
		text = "";
	cl = (size_t)snprintf(c, sizeof(c), "%u", code);
	if (strncmp(text, c, cl) == 0 && (text[cl] == ' ' || text[cl] == '-'))
		text += cl + 1;
	if (dl > 0 && strncmp(text, dsn, dl) == 0 && text[dl] == ' ')
		text += dl + 1;
	snprintf(buf, n, "%u%s%s %s", code, dl ? " " : "", dl ? dsn : "",
	    text);
}

/* shape_slow_down - does a temporary reply inside a transaction ask
 * for a lower rate?  (421 is the connection's business.) */
static bool
shape_slow_down(unsigned code, const char *dsn)
{
	if (code == 450 || code == 451)
		return true;
	return code / 100 == 4 && code != 421 && dsn != NULL &&
	    strncmp(dsn, "4.7.", 4) == 0;
}

void
shape_txn(struct shape_dest *d, uint64_t now, unsigned ok,
    unsigned deferred, uint64_t latency_ms, unsigned code, const char *dsn,
    const char *text)
{
	char a[32], b[32], why[600];

	pthread_mutex_lock(&d->mu);
	shape_window(d, now);
	d->acc[d->slot % SHAPE_SLOTS] += ok;
	if (deferred > 0) {
		if (!shape_apply_rules(d, now, code, dsn, text, true) &&
		    shape_slow_down(code, dsn)) {
			shape_reason(why, sizeof(why), code, dsn, text);
			shape_cut_rate(d, now, why, code, dsn);
		}
	} else if (d->adaptive && ok > 0 && now >= d->hold_until &&
	    latency_ms < (uint64_t)d->sh->cfg->shaping_slow_reply &&
	    d->limit < (double)d->max_conns) {
		unsigned before = (unsigned)d->limit;

		d->limit += d->cut_once ? 1.0 / d->limit : 1.0;
		if (d->limit > (double)d->max_conns)
			d->limit = (double)d->max_conns;
		if ((unsigned)d->limit != before) {
			snprintf(a, sizeof(a), "%u", before);
			snprintf(b, sizeof(b), "%u", (unsigned)d->limit);
			shape_changed(d, "connections", a, b, d->cut_once ?
			    "replies fast and positive" : "slow start", 0,
			    NULL, false);
		}
	}
	pthread_mutex_unlock(&d->mu);
}

void
shape_reply(struct shape_dest *d, uint64_t now, unsigned code,
    const char *dsn, const char *text)
{
	pthread_mutex_lock(&d->mu);
	shape_apply_rules(d, now, code, dsn, text, false);
	pthread_mutex_unlock(&d->mu);
}

void
shape_conn_end(struct shape_dest *d, uint64_t now, bool usable,
    unsigned delivered, unsigned code, const char *dsn, const char *text,
    bool failed)
{
	char a[32], b[32], why[600];

	pthread_mutex_lock(&d->mu);
	if (code == 0 || text == NULL)
		snprintf(why, sizeof(why), "%s", text ? text : "no reply");
	else
		shape_reason(why, sizeof(why), code, dsn, text);
	if (code != 0 && shape_apply_rules(d, now, code, dsn, text, false))
		goto out;
	if (code == 421 && usable && delivered > 0) {
		/* "Too many messages on this connection": the next ones
		 * stop one short of it. */
		if (d->adaptive && (d->learned_per_conn == 0 ||
		    delivered < d->learned_per_conn)) {
			snprintf(a, sizeof(a), "%u", d->learned_per_conn ?
			    d->learned_per_conn : d->cfg_per_conn);
			if (strcmp(a, "0") == 0)
				snprintf(a, sizeof(a), "unlimited");
			d->learned_per_conn = delivered;
			snprintf(b, sizeof(b), "%u", delivered);
			d->cuts++;
			d->hold_until = now +
			    (uint64_t)d->sh->cfg->shaping_probe_interval;
			d->last_probe = now;
			shape_changed(d, "per_connection", a, b, why, code, dsn,
			    true);
		}
	} else if (failed || code == 421) {
		shape_cut_conns(d, now, why, code, dsn);
	}
out:
	pthread_mutex_unlock(&d->mu);
}

size_t
shaper_status(struct shaper *sh, uint64_t now, struct shape_status *st,
    size_t max)
{
	size_t i, n;

	pthread_mutex_lock(&sh->mu);
	n = sh->ndests;
	for (i = 0; i < n && i < max; i++) {
		struct shape_dest *d = sh->dests[i];

		pthread_mutex_lock(&d->mu);
		memset(&st[i], 0, sizeof(st[i]));
		snprintf(st[i].name, sizeof(st[i].name), "%s", d->name);
		snprintf(st[i].source, sizeof(st[i].source), "%s",
		    sh->srcname[d->src]);
		st[i].connections = d->open;
		st[i].conn_limit = d->limit;
		st[i].max_connections = d->max_conns;
		st[i].rate = shape_eff_rate(d);
		st[i].per_connection = d->cfg_per_conn;
		if (d->learned_per_conn && (st[i].per_connection == 0 ||
		    d->learned_per_conn < st[i].per_connection))
			st[i].per_connection = d->learned_per_conn;
		st[i].paused_ms = d->paused_until > now ? d->paused_until -
		    now : 0;
		st[i].cuts = d->cuts;
		shape_window(d, now);
		st[i].accepted_rate = shape_rate_of(d->acc);
		pthread_mutex_unlock(&d->mu);
	}
	pthread_mutex_unlock(&sh->mu);
	return n;
}

void
shape_acct_cb(void *arg, const struct shape_change *ch)
{
	struct acct *a = arg;
	struct acct_record rec;
	char reply[768];

	if (a == NULL)
		return;
	snprintf(reply, sizeof(reply), "%s %s -> %s%s%s: %s", ch->what,
	    ch->before, ch->after, *ch->source ? " from source " : "",
	    ch->source, ch->reason);
	memset(&rec, 0, sizeof(rec));
	rec.type = ACCT_BACKOFF;
	rec.domain = ch->dest;
	rec.code = ch->code;
	rec.dsn = ch->dsn;
	rec.reply = reply;
	acct_write(a, &rec);
}

void
shaper_status_text(struct shaper *sh, uint64_t now, size_t max,
    struct mr_buf *out)
{
	struct shape_status *st = xcalloc(max ? max : 1, sizeof(*st));
	size_t n, i;
	char rate[32];

	n = shaper_status(sh, now, st, max);
	mr_buf_printf(out, "destinations: %zu\n", n);
	for (i = 0; i < n && i < max; i++) {
		if (st[i].rate > 0)
			snprintf(rate, sizeof(rate), "%.2f/s", st[i].rate);
		else
			snprintf(rate, sizeof(rate), "unlimited");
		mr_buf_printf(out, "destination: %s%s%s connections=%u "
		    "limit=%.1f max=%u rate=%s per_connection=%u cuts=%llu "
		    "paused=%llums accepted=%.1f/s\n", st[i].name,
		    st[i].source[0] ? " source=" : "", st[i].source,
		    st[i].connections, st[i].conn_limit, st[i].max_connections,
		    rate, st[i].per_connection, (unsigned long long)st[i].cuts,
		    (unsigned long long)st[i].paused_ms, st[i].accepted_rate);
	}
	free(st);
}
