/*
 * pace.c - the governor and the retry limit driven from a delivery
 * source's counters (see pace.h).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/mr_err.h"
#include "core/mr_log.h"
#include "delivery/campaign.h"
#include "delivery/pace.h"

int
pace_init(struct pace *p, const struct mr_config *cfg, struct campaign *c,
    uint64_t now, struct mr_buf *err)
{
	struct governor_params gp;
	struct retry_limit_params rp;

	memset(p, 0, sizeof(*p));
	governor_params_default(&gp);
	gp.target_rate_per_hour = (double)cfg->governor_target_rate;
	gp.damping_per_day = (double)cfg->governor_damping;
	gp.interval_ms = (uint64_t)cfg->governor_interval;
	gp.dynamic = cfg->governor_dynamic_damping;
	gp.initial_slots = (double)cfg->governor_initial_slots;
	gp.min_slots = (double)cfg->governor_min_slots;
	gp.max_slots = (double)cfg->governor_max_slots;
	retry_limit_params_default(&rp);
	rp.high = (unsigned)cfg->queue_max_attempts;
	rp.low = cfg->queue_retry_limit_low < cfg->queue_max_attempts ?
	    (unsigned)cfg->queue_retry_limit_low : rp.high;
	rp.dfr_over = (double)cfg->queue_retry_dfr_high;
	rp.dfr_under = (double)cfg->queue_retry_dfr_low;
	rp.util_over = (double)cfg->queue_retry_utilization_high / 100.0;
	rp.util_under = (double)cfg->queue_retry_utilization_low / 100.0;
	if (governor_init(&p->gov, &gp, now) != 0 ||
	    retry_limit_init(&p->rl, &rp) != 0) {
		mr_buf_puts(err, "the [governor] or retry limit settings are "
		    "out of range");
		return MR_ERANGE_VALUE;
	}
	p->delivered = atomic_load(&c->delivered);
	p->attempts = p->delivered + atomic_load(&c->bounced) +
	    atomic_load(&c->deferrals);
	atomic_store(&c->slots, (unsigned)governor_slots(&p->gov));
	atomic_store(&c->retry_limit, rp.high);
	snprintf(p->line, sizeof(p->line), "interval=0 slots=%zu "
	    "retry_limit=%u reason=start", governor_slots(&p->gov), rp.high);
	return 0;
}

void
pace_tick(struct pace *p, struct campaign *c, uint64_t now,
    uint64_t remaining, uint64_t total)
{
	const struct mr_config *cfg = c->cfg;
	struct governor_decision dec;
	uint64_t delivered = atomic_load(&c->delivered);
	uint64_t attempts = delivered + atomic_load(&c->bounced) +
	    atomic_load(&c->deferrals);
	const char *why = NULL;
	char line[256];
	unsigned limit;

	governor_delivered(&p->gov, delivered - p->delivered);
	p->iv_successes += delivered - p->delivered;
	p->iv_attempts += attempts - p->attempts;
	p->delivered = delivered;
	p->attempts = attempts;
	governor_sample(&p->gov, atomic_load(&c->sessions), now);
	if (!governor_tick(&p->gov, now, &dec))
		return;
	atomic_store(&c->slots, (unsigned)dec.slots);
	limit = atomic_load(&c->retry_limit);
	if (cfg->queue_dynamic_retry)
		limit = retry_limit_update(&p->rl, p->iv_attempts,
		    p->iv_successes, dec.pa > 0 ? dec.us : -1.0, remaining,
		    total, &why);
	if (why != NULL) {
		mr_log_info("governor", "event=retry-limit limit=%u reason=%s "
		    "attempts=%llu successes=%llu", limit, why,
		    (unsigned long long)p->iv_attempts,
		    (unsigned long long)p->iv_successes);
		atomic_store(&c->retry_limit, limit);
	}
	p->iv_attempts = p->iv_successes = 0;
	if (governor_format(&dec, line, sizeof(line)) < 0)
		snprintf(line, sizeof(line), "interval=%llu slots=%zu",
		    (unsigned long long)dec.interval, dec.slots);
	snprintf(p->line, sizeof(p->line), "%s retry_limit=%u", line, limit);
	mr_log_info("governor", "%s", p->line);
}

const char *
pace_line(const struct pace *p)
{
	return p->line;
}
