/*
 * governor.h - the delivery-rate performance governor and the dynamic
 * retry limit (SPEC D6; seed 004 [0063]-[0077], Tables 1 and 2).
 *
 * The governor closes the loop between how fast this server delivers and
 * how many delivery slots (the seed's MTA processes) it offers.  At the end
 * of every interval S it takes the messages delivered in the interval and
 * the time-weighted mean of the slots that were allocated, and computes:
 *
 *	Ms = delivered / S			messages per hour
 *	Pa = mean allocated slots over S
 *	Ea = Ms / Pa				messages per hour per slot
 *	Us = Pa / C_prev			utilization
 *	want = TARGET / Ea			slots that would meet the target
 *	C = min(C_prev + k, max(C_prev - k, want))
 *
 * where k = d (static damping, the seed's Csdam) or k = d * Us (dynamic
 * damping, Csdyn, the default).  C is then clamped to [min_slots,
 * max_slots].  C is kept as a double: damped steps scaled by Us are
 * fractional and must accumulate.  The concurrency bound handed out is
 * floor(C) (never more slots than the governor computed).
 *
 * On d: the seed writes d = AVAIL_PROCS_DAMPING_FACTOR / S, the factor
 * being the largest change allowed per day.  We read that as "the daily
 * allowance shared out over the intervals of a day", d = factor * S / 24 h:
 * 24 slots/day with S = 3 h gives d = 3, which is what the worked example
 * of [0068] needs (200 slots become 197 one interval later).  Dividing by S
 * in hours (24 / 3 = 8) would contradict both that example and the daily
 * cap of 24.
 *
 * Edge cases:
 *  - Pa == 0 (nothing allocated all interval): no evidence of efficiency.
 *    C is kept; Ea, Us, d and want are reported as 0, reason "idle".
 *  - Ms == 0 with Pa > 0: Ea = 0 and want is infinite, so the formula
 *    grows C by the full step k.  We keep what the formula says.
 *  - Us may exceed 1: allocations are never revoked when C shrinks below
 *    them ([0070]), and dynamic damping then widens the step in proportion.
 *  - The interval ends at the first governor_tick() at or after start + S;
 *    Ms and Pa use the span actually measured (start to that tick), while
 *    the step d stays the nominal per-interval one.  A late tick therefore
 *    never moves C by more than one step.
 *
 * The dynamic retry limit switches between a high and a low limit with
 * hysteresis on three signals: the delivery failure rate DFR = attempts /
 * successes, the utilization Us, and the stage of the campaign (remaining
 * recipients over total).  See retry_limit_update().
 *
 * Both are plain values owned by the caller, with no allocation, no I/O,
 * no clock (the caller passes monotonic milliseconds) and no locking: one
 * thread (one delivery loop) owns each.  No function is an event-loop
 * callback.  Errors: init functions return 0 or MR_ERANGE_VALUE
 * (core/mr_err.h) for parameters out of range; everything else cannot fail.
 */
#ifndef MR_GOVERNOR_H
#define MR_GOVERNOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bound of max_slots, so that floor(C) always fits a size_t. */
#define GOVERNOR_SLOTS_LIMIT	1000000.0

/* Reason strings of a decision (static; compare by value or strcmp). */
#define GOVERNOR_GROW		"grow"
#define GOVERNOR_SHRINK		"shrink"
#define GOVERNOR_HOLD		"hold"
#define GOVERNOR_IDLE		"idle"
#define GOVERNOR_CLAMPED	"clamped"

struct governor_params {
	double		target_rate_per_hour;	/* TARGET_DELIVERY_RATE, > 0 */
	double		damping_per_day;	/* AVAIL_PROCS_DAMPING_FACTOR,
						 * slots per day, >= 0 */
	uint64_t	interval_ms;		/* S, > 0 */
	bool		dynamic;		/* !DONT_USE_DYNAMIC_DAMPING */
	double		initial_slots;		/* C before the first interval,
						 * clamped to the bounds */
	double		min_slots;		/* >= 1 */
	double		max_slots;		/* >= min, <= SLOTS_LIMIT */
};

struct governor_decision {
	uint64_t	 interval;	/* 1 for the first interval */
	uint64_t	 delivered;	/* messages counted in the interval */
	double		 ms;		/* throughput, messages per hour */
	double		 pa;		/* mean allocated slots */
	double		 ea;		/* ms / pa; 0 when idle */
	double		 us;		/* pa / c_prev; 0 when idle */
	double		 d;		/* step used: d, or d * us */
	double		 want;		/* target / ea; may be +inf */
	double		 c_prev;
	double		 c_new;
	size_t		 slots;		/* floor(c_new) */
	const char	*reason;	/* GOVERNOR_*, static */
};

struct governor {
	struct governor_params	p;
	double			c;		/* current available slots */
	double			d;		/* nominal step per interval */
	uint64_t		interval;	/* intervals closed so far */
	uint64_t		start_ms;	/* start of the open interval */
	uint64_t		last_ms;	/* time of the last sample */
	size_t			allocated;	/* level since last_ms */
	double			area;		/* slot-ms in the interval */
	uint64_t		delivered;	/* in the open interval */
};

/*
 * governor_params_default - Table 1: 140,000 messages/hour, 24 slots/day,
 * S = 3 h, dynamic damping on; and ours: 200 initial slots (the scale of
 * the seed's example), bounds [1, 10000].
 */
void governor_params_default(struct governor_params *p_r);

/*
 * governor_init - start the first interval at now_ms with nothing
 * allocated and C = initial_slots (clamped).  p is copied.  Returns 0, or
 * MR_ERANGE_VALUE (g untouched) when a parameter is out of range.
 */
int governor_init(struct governor *g, const struct governor_params *p,
    uint64_t now_ms);

/*
 * governor_sample - from now_ms on, `allocated` slots are in use.  The
 * level is a step function: each sample holds until the next one, and
 * the interval's Pa is its time average.  Call it whenever allocation
 * changes (or periodically).  A now_ms earlier than the last sample counts
 * as no time elapsed.
 */
void governor_sample(struct governor *g, size_t allocated, uint64_t now_ms);

/* governor_delivered - count n messages delivered successfully. */
void governor_delivered(struct governor *g, uint64_t n);

/*
 * governor_tick - when the open interval has lasted at least S at now_ms,
 * close it: compute the decision into *out_r (may be NULL), update C,
 * start the next interval at now_ms (allocation level carried over) and
 * return true.  Otherwise return false and leave *out_r alone.
 */
bool governor_tick(struct governor *g, uint64_t now_ms,
    struct governor_decision *out_r);

/* governor_slots - the current concurrency bound, floor(C). */
size_t governor_slots(const struct governor *g);

/*
 * governor_available - slots free for reservation: governor_slots() minus
 * the last sampled allocation, or 0 when allocation is at or over it
 * (allocated slots are never taken back, [0068], [0070]).
 */
size_t governor_available(const struct governor *g);

/*
 * governor_format - one key=value line (no newline) for the log, e.g.
 * "interval=3 ms=120000.0/h pa=180.0 ea=666.7 us=0.90 d=2.70 want=210.0
 * slots=200.00->202.70 cap=202 reason=grow".  Returns the length, or -1
 * when it does not fit in n bytes (buf then holds a truncated line).
 */
int governor_format(const struct governor_decision *dec, char *buf,
    size_t n);

/*
 * The dynamic retry limit ([0071]-[0077]).  The limit is `low` while any
 * of these holds, and `high` otherwise:
 *  - utilization: set when Us > util_over, cleared when Us < util_under
 *    (kept in between: hysteresis);
 *  - DFR: set when DFR > dfr_over, cleared when DFR < dfr_under (kept in
 *    between);
 *  - late stage: remaining / total < late_fraction (0 turns it off).
 * This is [0075]'s combination: above the first utilization limit the
 * utilization rule decides (low, whatever the DFR); below it the DFR rule
 * decides, except that a lowering caused by utilization is held until
 * utilization falls below the second limit.  Each rule keeps its own
 * hysteresis state, so one rule's recovery never lifts the other's
 * lowering.
 */
#define RETRY_LIMIT_LATE	"late_stage"
#define RETRY_LIMIT_EARLY	"early_stage"
#define RETRY_LIMIT_UTIL_OVER	"utilization_over"
#define RETRY_LIMIT_UTIL_UNDER	"utilization_under"
#define RETRY_LIMIT_DFR_OVER	"dfr_over"
#define RETRY_LIMIT_DFR_UNDER	"dfr_under"

struct retry_limit_params {
	unsigned	high;		/* 10; >= low */
	unsigned	low;		/* 5 */
	double		dfr_over;	/* 7: above, lower the limit */
	double		dfr_under;	/* 4: below, raise it; <= dfr_over */
	double		util_over;	/* 1.00: above, lower the limit */
	double		util_under;	/* 0.80: below, raise it; <= over */
	double		late_fraction;	/* 0 (off); in [0, 1] */
};

struct retry_limit {
	struct retry_limit_params	p;
	unsigned			limit;
	bool				util_low;	/* utilization rule
							 * wants low */
	bool				dfr_low;	/* DFR rule wants low */
};

/* retry_limit_params_default - the seed's examples: 10/5, DFR 7/4, Us
 * 100 %/80 %, late stage off. */
void retry_limit_params_default(struct retry_limit_params *p_r);

/*
 * retry_limit_init - start at the high limit with no rule lowering it.
 * p is copied.  Returns 0 or MR_ERANGE_VALUE (rl untouched).
 */
int retry_limit_init(struct retry_limit *rl,
    const struct retry_limit_params *p);

/*
 * retry_limit_update - feed one window's evidence and return the limit.
 * attempts and successes are the counts over the window the caller
 * chooses (normally the governor's interval, not running totals), so the
 * DFR follows current conditions.  DFR = attempts / successes; with no
 * successes it is infinite when attempts > 0, and when attempts == 0 too
 * there is no evidence and the DFR rule keeps its state.  utilization is
 * Us (1.0 = 100 %); pass a negative value (or NaN) when unknown, and the
 * utilization rule keeps its state.  remaining and total are recipients
 * of the campaign; total == 0 turns the late-stage rule off for this call.
 * *reason_r (when reason_r is not NULL) is set to a static RETRY_LIMIT_*
 * string when the limit changed, NULL otherwise.
 */
unsigned retry_limit_update(struct retry_limit *rl, uint64_t attempts,
    uint64_t successes, double utilization, uint64_t remaining,
    uint64_t total, const char **reason_r);

#endif
