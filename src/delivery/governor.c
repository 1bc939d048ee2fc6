/*
 * governor.c - the Table 2 equations over time-weighted samples, and the
 * retry limit's hysteresis rules.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/mr_err.h"
#include "delivery/governor.h"

#define GOVERNOR_MS_PER_HOUR	3600000.0
#define GOVERNOR_MS_PER_DAY	86400000.0
/* Absorbs rounding in C before flooring it (197 - 1e-13 is still 197). */
#define GOVERNOR_FLOOR_EPS	1e-9

static double governor_min(double, double);
static double governor_max(double, double);
static size_t governor_floor(double);
static void governor_integrate(struct governor *, uint64_t);

static double
governor_min(double a, double b)
{
	return a < b ? a : b;
}

static double
governor_max(double a, double b)
{
	return a > b ? a : b;
}

/* governor_floor - floor of a C already clamped to [1, SLOTS_LIMIT]. */
static size_t
governor_floor(double c)
{
	return (size_t)(c + GOVERNOR_FLOOR_EPS);
}

/* governor_integrate - add the current level's area up to now_ms. */
static void
governor_integrate(struct governor *g, uint64_t now_ms)
{
	if (now_ms <= g->last_ms)
		return;
	g->area += (double)g->allocated * (double)(now_ms - g->last_ms);
	g->last_ms = now_ms;
}

void
governor_params_default(struct governor_params *p_r)
{
	memset(p_r, 0, sizeof(*p_r));
	p_r->target_rate_per_hour = 140000.0;
	p_r->damping_per_day = 24.0;
	p_r->interval_ms = 3 * 3600 * 1000ULL;
	p_r->dynamic = true;
	p_r->initial_slots = 200.0;
	p_r->min_slots = 1.0;
	p_r->max_slots = 10000.0;
}

int
governor_init(struct governor *g, const struct governor_params *p,
    uint64_t now_ms)
{
	/* Written so that NaN fails every test. */
	if (!(p->target_rate_per_hour > 0) ||
	    !isfinite(p->target_rate_per_hour))
		return MR_ERANGE_VALUE;
	if (!(p->damping_per_day >= 0) || !isfinite(p->damping_per_day))
		return MR_ERANGE_VALUE;
	if (p->interval_ms == 0)
		return MR_ERANGE_VALUE;
	if (!(p->min_slots >= 1) || !(p->max_slots >= p->min_slots) ||
	    !(p->max_slots <= GOVERNOR_SLOTS_LIMIT))
		return MR_ERANGE_VALUE;
	if (!isfinite(p->initial_slots))
		return MR_ERANGE_VALUE;

	memset(g, 0, sizeof(*g));
	g->p = *p;
	g->c = governor_max(p->min_slots,
	    governor_min(p->max_slots, p->initial_slots));
	g->d = p->damping_per_day * (double)p->interval_ms /
	    GOVERNOR_MS_PER_DAY;
	g->start_ms = g->last_ms = now_ms;
	return 0;
}

void
governor_sample(struct governor *g, size_t allocated, uint64_t now_ms)
{
	governor_integrate(g, now_ms);
	g->allocated = allocated;
}

void
governor_delivered(struct governor *g, uint64_t n)
{
	g->delivered += n;
}

bool
governor_tick(struct governor *g, uint64_t now_ms,
    struct governor_decision *out_r)
{
	struct governor_decision dec;
	double span, c, k;

	if (now_ms < g->start_ms || now_ms - g->start_ms < g->p.interval_ms)
		return false;

	governor_integrate(g, now_ms);
	span = (double)(now_ms - g->start_ms);

	memset(&dec, 0, sizeof(dec));
	dec.interval = ++g->interval;
	dec.delivered = g->delivered;
	dec.ms = (double)g->delivered / (span / GOVERNOR_MS_PER_HOUR);
	dec.pa = g->area / span;
	dec.c_prev = g->c;

	if (dec.pa <= 0) {
		/* Nothing allocated: no evidence, keep C. */
		dec.c_new = g->c;
		dec.reason = GOVERNOR_IDLE;
	} else {
		dec.ea = dec.ms / dec.pa;
		dec.us = dec.pa / g->c;
		/* Ea == 0: the target needs infinitely many slots. */
		dec.want = dec.ea > 0 ? g->p.target_rate_per_hour / dec.ea :
		    HUGE_VAL;
		k = g->p.dynamic ? g->d * dec.us : g->d;
		dec.d = k;
		c = governor_min(g->c + k, governor_max(g->c - k, dec.want));
		dec.c_new = governor_max(g->p.min_slots,
		    governor_min(g->p.max_slots, c));
		if (dec.c_new != c)
			dec.reason = GOVERNOR_CLAMPED;
		else if (c > g->c)
			dec.reason = GOVERNOR_GROW;
		else if (c < g->c)
			dec.reason = GOVERNOR_SHRINK;
		else
			dec.reason = GOVERNOR_HOLD;
	}
	g->c = dec.c_new;
	dec.slots = governor_floor(g->c);

	/* The next interval starts now, at the current allocation level. */
	g->start_ms = now_ms;
	g->area = 0;
	g->delivered = 0;

	if (out_r != NULL)
		*out_r = dec;
	return true;
}

size_t
governor_slots(const struct governor *g)
{
	return governor_floor(g->c);
}

size_t
governor_available(const struct governor *g)
{
	size_t slots = governor_slots(g);

	return g->allocated >= slots ? 0 : slots - g->allocated;
}

int
governor_format(const struct governor_decision *dec, char *buf, size_t n)
{
	int r;

	r = snprintf(buf, n, "interval=%llu ms=%.1f/h pa=%.1f ea=%.1f "
	    "us=%.2f d=%.2f want=%.1f slots=%.2f->%.2f cap=%zu reason=%s",
	    (unsigned long long)dec->interval, dec->ms, dec->pa, dec->ea,
	    dec->us, dec->d, dec->want, dec->c_prev, dec->c_new, dec->slots,
	    dec->reason);
	if (r < 0 || (size_t)r >= n)
		return -1;
	return r;
}

void
retry_limit_params_default(struct retry_limit_params *p_r)
{
	memset(p_r, 0, sizeof(*p_r));
	p_r->high = 10;
	p_r->low = 5;
	p_r->dfr_over = 7.0;
	p_r->dfr_under = 4.0;
	p_r->util_over = 1.0;
	p_r->util_under = 0.8;
	p_r->late_fraction = 0.0;
}

int
retry_limit_init(struct retry_limit *rl, const struct retry_limit_params *p)
{
	if (p->low > p->high)
		return MR_ERANGE_VALUE;
	if (!(p->dfr_under <= p->dfr_over) || !isfinite(p->dfr_over))
		return MR_ERANGE_VALUE;
	if (!(p->util_under <= p->util_over) || !isfinite(p->util_over))
		return MR_ERANGE_VALUE;
	if (!(p->late_fraction >= 0 && p->late_fraction <= 1))
		return MR_ERANGE_VALUE;

	memset(rl, 0, sizeof(*rl));
	rl->p = *p;
	rl->limit = p->high;
	return 0;
}

unsigned
retry_limit_update(struct retry_limit *rl, uint64_t attempts,
    uint64_t successes, double utilization, uint64_t remaining,
    uint64_t total, const char **reason_r)
{
	const struct retry_limit_params *p = &rl->p;
	bool was_util = rl->util_low, was_dfr = rl->dfr_low, late = false;
	const char *reason = NULL;
	unsigned limit;
	double dfr;

	/* Utilization: NaN and negative values fail both tests. */
	if (utilization > p->util_over)
		rl->util_low = true;
	else if (utilization >= 0 && utilization < p->util_under)
		rl->util_low = false;

	/* DFR: no successes is infinite, no attempts is no evidence. */
	if (attempts > 0 || successes > 0) {
		dfr = successes > 0 ? (double)attempts / (double)successes :
		    HUGE_VAL;
		if (dfr > p->dfr_over)
			rl->dfr_low = true;
		else if (dfr < p->dfr_under)
			rl->dfr_low = false;
	}

	/* Late stage: remaining / total < fraction, without dividing. */
	if (p->late_fraction > 0 && total > 0 && remaining <= total)
		late = (double)remaining < p->late_fraction * (double)total;

	limit = (late || rl->util_low || rl->dfr_low) ? p->low : p->high;
	if (limit != rl->limit) {
		if (limit == p->low && late)
			reason = RETRY_LIMIT_LATE;
		else if (limit == p->low && rl->util_low)
			reason = RETRY_LIMIT_UTIL_OVER;
		else if (limit == p->low)
			reason = RETRY_LIMIT_DFR_OVER;
		else if (was_dfr)
			reason = RETRY_LIMIT_DFR_UNDER;
		else if (was_util)
			reason = RETRY_LIMIT_UTIL_UNDER;
		else
			reason = RETRY_LIMIT_EARLY;
		rl->limit = limit;
	}
	if (reason_r != NULL)
		*reason_r = reason;
	return limit;
}
