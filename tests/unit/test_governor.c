/*
 * test_governor.c - the governor's Table 2 equations against hand-computed
 * values, time-weighted sampling, bounds and edge cases; the retry limit's
 * rules and their hysteresis.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/mr_err.h"
#include "delivery/governor.h"

#define H	3600000ULL		/* one hour in ms */
#define S3	(3 * H)			/* the default interval */

/* cmocka 1.1.5 compares floats only; doubles get their own check. */
#define ASSERT_NEAR(a, b)	test_assert_near((a), (b), #a, __LINE__)

static void test_assert_near(double, double, const char *, int);
static void run_interval(struct governor *, uint64_t, size_t, uint64_t,
    struct governor_decision *);

static void
test_assert_near(double a, double b, const char *expr, int line)
{
	double diff = a > b ? a - b : b - a;

	if (!(diff <= 1e-9)) {
		print_error("line %d: %s = %.12f, expected %.12f\n", line,
		    expr, a, b);
		fail();
	}
}

/*
 * run_interval - one default-length interval starting at t0 with
 * `allocated` slots in use all along and `delivered` messages; the
 * decision goes to *dec_r.
 */
static void
run_interval(struct governor *g, uint64_t t0, size_t allocated,
    uint64_t delivered, struct governor_decision *dec_r)
{
	governor_sample(g, allocated, t0);
	governor_delivered(g, delivered);
	assert_false(governor_tick(g, t0 + g->p.interval_ms - 1, dec_r));
	assert_true(governor_tick(g, t0 + g->p.interval_ms, dec_r));
}

static void
test_defaults(void **state)
{
	struct governor_params p;
	struct governor g;

	(void)state;
	governor_params_default(&p);
	ASSERT_NEAR(p.target_rate_per_hour, 140000.0);
	ASSERT_NEAR(p.damping_per_day, 24.0);
	assert_int_equal(p.interval_ms, S3);
	assert_true(p.dynamic);
	assert_int_equal(governor_init(&g, &p, 0), 0);
	/* 24 slots a day shared over 8 intervals of 3 h. */
	ASSERT_NEAR(g.d, 3.0);
	assert_int_equal(governor_slots(&g), 200);
}

/*
 * The seed's example ([0068]): 200 slots, 186 allocated, 14 available;
 * one interval later 197 slots and 11 available.  Static damping (Csdam):
 * Ms = 450000 / 3 h = 150000/h, Pa = 186, Ea = 806.45, want = 173.6,
 * below 200 - 3, so C = max(197, 173.6) = 197.
 */
static void
test_csdam_200_to_197(void **state)
{
	struct governor_params p;
	struct governor g;
	struct governor_decision dec;

	(void)state;
	governor_params_default(&p);
	p.dynamic = false;
	assert_int_equal(governor_init(&g, &p, 0), 0);
	governor_sample(&g, 186, 0);
	assert_int_equal(governor_available(&g), 14);
	run_interval(&g, 0, 186, 450000, &dec);
	assert_int_equal(dec.interval, 1);
	assert_int_equal(dec.delivered, 450000);
	ASSERT_NEAR(dec.ms, 150000.0);
	ASSERT_NEAR(dec.pa, 186.0);
	ASSERT_NEAR(dec.ea, 150000.0 / 186.0);
	ASSERT_NEAR(dec.us, 186.0 / 200.0);
	ASSERT_NEAR(dec.want, 140000.0 * 186.0 / 150000.0);
	ASSERT_NEAR(dec.d, 3.0);
	ASSERT_NEAR(dec.c_prev, 200.0);
	ASSERT_NEAR(dec.c_new, 197.0);
	assert_int_equal(dec.slots, 197);
	assert_string_equal(dec.reason, GOVERNOR_SHRINK);
	assert_int_equal(governor_slots(&g), 197);
	assert_int_equal(governor_available(&g), 11);
}

/*
 * Growth capped by +d: Pa = 200, Ms = 100000/h, Ea = 500, want = 280;
 * min(203, max(197, 280)) = 203.
 */
static void
test_csdam_grow_capped(void **state)
{
	struct governor_params p;
	struct governor g;
	struct governor_decision dec;

	(void)state;
	governor_params_default(&p);
	p.dynamic = false;
	assert_int_equal(governor_init(&g, &p, 0), 0);
	run_interval(&g, 0, 200, 300000, &dec);
	ASSERT_NEAR(dec.ea, 500.0);
	ASSERT_NEAR(dec.want, 280.0);
	ASSERT_NEAR(dec.c_new, 203.0);
	assert_int_equal(dec.slots, 203);
	assert_string_equal(dec.reason, GOVERNOR_GROW);

	/* The next interval starts from 203 and caps at 206. */
	run_interval(&g, S3, 200, 300000, &dec);
	assert_int_equal(dec.interval, 2);
	ASSERT_NEAR(dec.c_prev, 203.0);
	ASSERT_NEAR(dec.c_new, 206.0);
}

/*
 * want inside [C - d, C + d] is taken as is: Pa = 201, Ms = 140000/h,
 * Ea = 140000 / 201, want = 201; and Pa = 198.5 gives 198.5 (shrink).
 */
static void
test_csdam_within_band(void **state)
{
	struct governor_params p;
	struct governor g;
	struct governor_decision dec;

	(void)state;
	governor_params_default(&p);
	p.dynamic = false;
	assert_int_equal(governor_init(&g, &p, 0), 0);
	run_interval(&g, 0, 201, 420000, &dec);
	ASSERT_NEAR(dec.want, 201.0);
	ASSERT_NEAR(dec.c_new, 201.0);
	assert_string_equal(dec.reason, GOVERNOR_GROW);

	/* Half the interval at 198, half at 199: Pa = 198.5. */
	governor_sample(&g, 198, S3);
	governor_sample(&g, 199, S3 + S3 / 2);
	governor_delivered(&g, 420000);
	assert_true(governor_tick(&g, 2 * S3, &dec));
	ASSERT_NEAR(dec.pa, 198.5);
	ASSERT_NEAR(dec.want, 198.5);
	ASSERT_NEAR(dec.c_new, 198.5);
	assert_int_equal(dec.slots, 198);
	assert_string_equal(dec.reason, GOVERNOR_SHRINK);

	/* want == C: hold (Pa = 200, Ea = 700, want = 200, all exact). */
	assert_int_equal(governor_init(&g, &p, 0), 0);
	run_interval(&g, 0, 200, 420000, &dec);
	assert_true(dec.c_new == 200.0);
	assert_string_equal(dec.reason, GOVERNOR_HOLD);
}

/*
 * Csdyn with Us = 0.5: Pa = 100 of C = 200, d * Us = 1.5.  Ms = 280000/h,
 * Ea = 2800, want = 50, so C = max(198.5, 50) = 198.5, bound 198.
 */
static void
test_csdyn_half_utilized(void **state)
{
	struct governor_params p;
	struct governor g;
	struct governor_decision dec;

	(void)state;
	governor_params_default(&p);
	assert_int_equal(governor_init(&g, &p, 0), 0);
	run_interval(&g, 0, 100, 840000, &dec);
	ASSERT_NEAR(dec.us, 0.5);
	ASSERT_NEAR(dec.d, 1.5);
	ASSERT_NEAR(dec.want, 50.0);
	ASSERT_NEAR(dec.c_new, 198.5);
	assert_int_equal(dec.slots, 198);
	assert_string_equal(dec.reason, GOVERNOR_SHRINK);

	/* Growth is damped the same way: Ms = 0 wants +inf, and the step is
	 * d * Us = 3 * (100 / 198.5). */
	run_interval(&g, S3, 100, 0, &dec);
	ASSERT_NEAR(dec.us, 100.0 / 198.5);
	ASSERT_NEAR(dec.c_new, 198.5 + 3.0 * 100.0 / 198.5);
	assert_string_equal(dec.reason, GOVERNOR_GROW);
}

/*
 * Time-weighted Pa: 100 slots for the first half of the interval and 200
 * for the second give Pa = 150 and Us = 150 / 200 = 0.75, so the dynamic
 * step is 2.25.  Ms = 150000/h, Ea = 1000, want = 140: C = 197.75.
 */
static void
test_time_weighted_pa(void **state)
{
	struct governor_params p;
	struct governor g;
	struct governor_decision dec;

	(void)state;
	governor_params_default(&p);
	assert_int_equal(governor_init(&g, &p, 0), 0);
	governor_sample(&g, 100, 0);
	governor_delivered(&g, 200000);
	governor_sample(&g, 200, S3 / 2);
	/* Repeated samples at one level change nothing. */
	governor_sample(&g, 200, S3 / 2 + H / 2);
	governor_delivered(&g, 250000);
	/* A sample from the past counts as no time elapsed. */
	governor_sample(&g, 200, S3 / 4);
	assert_true(governor_tick(&g, S3, &dec));
	ASSERT_NEAR(dec.pa, 150.0);
	ASSERT_NEAR(dec.ms, 150000.0);
	ASSERT_NEAR(dec.ea, 1000.0);
	ASSERT_NEAR(dec.us, 0.75);
	ASSERT_NEAR(dec.d, 2.25);
	ASSERT_NEAR(dec.c_new, 197.75);
	assert_int_equal(dec.slots, 197);

	/* The level carries into the next interval: 200 all along. */
	governor_delivered(&g, 450000);
	assert_true(governor_tick(&g, 2 * S3, &dec));
	ASSERT_NEAR(dec.pa, 200.0);
	assert_int_equal(dec.delivered, 450000);
}

/* Bounds: a step that would cross max_slots or min_slots is clamped. */
static void
test_clamp(void **state)
{
	struct governor_params p;
	struct governor g;
	struct governor_decision dec;

	(void)state;
	governor_params_default(&p);
	p.dynamic = false;
	p.max_slots = 201.0;
	assert_int_equal(governor_init(&g, &p, 0), 0);
	run_interval(&g, 0, 200, 0, &dec);	/* would grow to 203 */
	ASSERT_NEAR(dec.c_new, 201.0);
	assert_int_equal(dec.slots, 201);
	assert_string_equal(dec.reason, GOVERNOR_CLAMPED);

	governor_params_default(&p);
	p.dynamic = false;
	p.min_slots = 199.0;
	assert_int_equal(governor_init(&g, &p, 0), 0);
	run_interval(&g, 0, 186, 450000, &dec);	/* would shrink to 197 */
	ASSERT_NEAR(dec.c_new, 199.0);
	assert_string_equal(dec.reason, GOVERNOR_CLAMPED);

	/* The initial value is clamped too. */
	governor_params_default(&p);
	p.initial_slots = 5000.0;
	p.max_slots = 300.0;
	assert_int_equal(governor_init(&g, &p, 0), 0);
	assert_int_equal(governor_slots(&g), 300);
}

/* Pa == 0: no evidence, C kept, reason idle, even with deliveries. */
static void
test_idle(void **state)
{
	struct governor_params p;
	struct governor g;
	struct governor_decision dec;
	char line[256];

	(void)state;
	governor_params_default(&p);
	assert_int_equal(governor_init(&g, &p, 0), 0);
	assert_true(governor_tick(&g, S3, &dec));
	assert_string_equal(dec.reason, GOVERNOR_IDLE);
	ASSERT_NEAR(dec.pa, 0.0);
	ASSERT_NEAR(dec.ea, 0.0);
	ASSERT_NEAR(dec.us, 0.0);
	ASSERT_NEAR(dec.d, 0.0);
	ASSERT_NEAR(dec.c_new, 200.0);
	assert_int_equal(dec.slots, 200);
	assert_true(governor_format(&dec, line, sizeof(line)) > 0);

	governor_delivered(&g, 10);
	assert_true(governor_tick(&g, 2 * S3, NULL));
	assert_int_equal(governor_slots(&g), 200);
	assert_int_equal(governor_available(&g), 200);
}

/* Ms == 0 with slots allocated: want is infinite, grow by the step. */
static void
test_no_deliveries_grows(void **state)
{
	struct governor_params p;
	struct governor g;
	struct governor_decision dec;

	(void)state;
	governor_params_default(&p);
	assert_int_equal(governor_init(&g, &p, 0), 0);
	run_interval(&g, 0, 200, 0, &dec);
	ASSERT_NEAR(dec.ms, 0.0);
	ASSERT_NEAR(dec.ea, 0.0);
	assert_true(dec.want > 1e300);
	ASSERT_NEAR(dec.us, 1.0);
	ASSERT_NEAR(dec.c_new, 203.0);
	assert_string_equal(dec.reason, GOVERNOR_GROW);
}

/* d for S = 1 h: 24 / 24 = 1 per interval; Ms per hour of the interval. */
static void
test_interval_one_hour(void **state)
{
	struct governor_params p;
	struct governor g;
	struct governor_decision dec;

	(void)state;
	governor_params_default(&p);
	p.interval_ms = H;
	p.dynamic = false;
	assert_int_equal(governor_init(&g, &p, 1000), 0);
	ASSERT_NEAR(g.d, 1.0);
	run_interval(&g, 1000, 200, 100000, &dec);
	ASSERT_NEAR(dec.ms, 100000.0);
	ASSERT_NEAR(dec.want, 280.0);
	ASSERT_NEAR(dec.d, 1.0);
	ASSERT_NEAR(dec.c_new, 201.0);
}

/*
 * A late tick closes the interval at the tick: Ms and Pa over the span
 * measured, the step still one interval's.  Time going backwards ends
 * nothing.
 */
static void
test_late_tick(void **state)
{
	struct governor_params p;
	struct governor g;
	struct governor_decision dec;

	(void)state;
	governor_params_default(&p);
	p.dynamic = false;
	assert_int_equal(governor_init(&g, &p, 10 * H), 0);
	assert_false(governor_tick(&g, 9 * H, &dec));
	governor_sample(&g, 100, 10 * H);
	governor_delivered(&g, 600000);
	assert_true(governor_tick(&g, 14 * H, &dec));	/* 4 h, not 3 */
	ASSERT_NEAR(dec.ms, 150000.0);
	ASSERT_NEAR(dec.pa, 100.0);
	ASSERT_NEAR(dec.c_new, 197.0);
	/* The next interval runs from 14 h. */
	assert_false(governor_tick(&g, 16 * H, &dec));
	assert_true(governor_tick(&g, 17 * H, &dec));
	assert_int_equal(dec.interval, 2);
}

static void
test_available_never_negative(void **state)
{
	struct governor_params p;
	struct governor g;

	(void)state;
	governor_params_default(&p);
	assert_int_equal(governor_init(&g, &p, 0), 0);
	governor_sample(&g, 250, 0);
	assert_int_equal(governor_available(&g), 0);
	governor_sample(&g, 200, 1);
	assert_int_equal(governor_available(&g), 0);
	governor_sample(&g, 199, 2);
	assert_int_equal(governor_available(&g), 1);
}

static void
test_bad_params(void **state)
{
	struct governor_params p;
	struct governor g;

	(void)state;
	governor_params_default(&p);
	p.interval_ms = 0;
	assert_int_equal(governor_init(&g, &p, 0), MR_ERANGE_VALUE);
	governor_params_default(&p);
	p.min_slots = 0.5;
	assert_int_equal(governor_init(&g, &p, 0), MR_ERANGE_VALUE);
	governor_params_default(&p);
	p.max_slots = 0.5 * p.min_slots;
	assert_int_equal(governor_init(&g, &p, 0), MR_ERANGE_VALUE);
	governor_params_default(&p);
	p.max_slots = 2 * GOVERNOR_SLOTS_LIMIT;
	assert_int_equal(governor_init(&g, &p, 0), MR_ERANGE_VALUE);
	governor_params_default(&p);
	p.target_rate_per_hour = 0;
	assert_int_equal(governor_init(&g, &p, 0), MR_ERANGE_VALUE);
	governor_params_default(&p);
	p.damping_per_day = -1;
	assert_int_equal(governor_init(&g, &p, 0), MR_ERANGE_VALUE);
}

static void
test_format(void **state)
{
	struct governor_decision dec;
	char line[256], small[16];
	const char *want = "interval=3 ms=120000.0/h pa=180.0 ea=666.7 "
	    "us=0.90 d=2.70 want=210.0 slots=200.00->202.70 cap=202 "
	    "reason=grow";

	(void)state;
	memset(&dec, 0, sizeof(dec));
	dec.interval = 3;
	dec.ms = 120000.0;
	dec.pa = 180.0;
	dec.ea = 120000.0 / 180.0;
	dec.us = 0.9;
	dec.d = 2.7;
	dec.want = 210.0;
	dec.c_prev = 200.0;
	dec.c_new = 202.7;
	dec.slots = 202;
	dec.reason = GOVERNOR_GROW;
	assert_int_equal(governor_format(&dec, line, sizeof(line)),
	    (int)strlen(want));
	assert_string_equal(line, want);
	assert_int_equal(governor_format(&dec, small, sizeof(small)), -1);
}

/* Retry limit. */

static void
test_retry_dfr_hysteresis(void **state)
{
	struct retry_limit_params p;
	struct retry_limit rl;
	const char *why;

	(void)state;
	retry_limit_params_default(&p);
	assert_int_equal(retry_limit_init(&rl, &p), 0);
	assert_int_equal(rl.limit, 10);
	/* DFR 7 is not above 7. */
	assert_int_equal(retry_limit_update(&rl, 70, 10, 0.5, 100, 100,
	    &why), 10);
	assert_null(why);
	/* DFR 8 > 7: 10 -> 5. */
	assert_int_equal(retry_limit_update(&rl, 80, 10, 0.5, 100, 100,
	    &why), 5);
	assert_string_equal(why, RETRY_LIMIT_DFR_OVER);
	/* DFR 5, and 4 exactly: between the limits, stays 5. */
	assert_int_equal(retry_limit_update(&rl, 50, 10, 0.5, 100, 100,
	    &why), 5);
	assert_null(why);
	assert_int_equal(retry_limit_update(&rl, 40, 10, 0.5, 100, 100,
	    &why), 5);
	assert_null(why);
	/* DFR 3 < 4: back to 10. */
	assert_int_equal(retry_limit_update(&rl, 30, 10, 0.5, 100, 100,
	    &why), 10);
	assert_string_equal(why, RETRY_LIMIT_DFR_UNDER);
	/* DFR 5 from the high side: stays 10. */
	assert_int_equal(retry_limit_update(&rl, 50, 10, 0.5, 100, 100,
	    &why), 10);
	assert_null(why);
}

static void
test_retry_utilization_hysteresis(void **state)
{
	struct retry_limit_params p;
	struct retry_limit rl;
	const char *why;

	(void)state;
	retry_limit_params_default(&p);
	assert_int_equal(retry_limit_init(&rl, &p), 0);
	/* 100 % is not above 100 %. */
	assert_int_equal(retry_limit_update(&rl, 20, 10, 1.0, 100, 100,
	    &why), 10);
	assert_int_equal(retry_limit_update(&rl, 20, 10, 1.05, 100, 100,
	    &why), 5);
	assert_string_equal(why, RETRY_LIMIT_UTIL_OVER);
	assert_int_equal(retry_limit_update(&rl, 20, 10, 0.9, 100, 100,
	    &why), 5);
	assert_null(why);
	assert_int_equal(retry_limit_update(&rl, 20, 10, 0.8, 100, 100,
	    &why), 5);
	assert_int_equal(retry_limit_update(&rl, 20, 10, 0.75, 100, 100,
	    &why), 10);
	assert_string_equal(why, RETRY_LIMIT_UTIL_UNDER);
	/* Unknown utilization (negative) keeps the rule's state. */
	assert_int_equal(retry_limit_update(&rl, 20, 10, 1.2, 100, 100,
	    NULL), 5);
	assert_int_equal(retry_limit_update(&rl, 20, 10, -1.0, 100, 100,
	    &why), 5);
	assert_null(why);
}

/* Above the utilization limit, utilization decides whatever the DFR. */
static void
test_retry_utilization_overrides_dfr(void **state)
{
	struct retry_limit_params p;
	struct retry_limit rl;
	const char *why;

	(void)state;
	retry_limit_params_default(&p);
	assert_int_equal(retry_limit_init(&rl, &p), 0);
	/* DFR 1 says high; Us 1.1 says low. */
	assert_int_equal(retry_limit_update(&rl, 10, 10, 1.1, 100, 100,
	    &why), 5);
	assert_string_equal(why, RETRY_LIMIT_UTIL_OVER);
	assert_int_equal(retry_limit_update(&rl, 10, 10, 1.1, 100, 100,
	    &why), 5);

	/* Below the limit DFR decides, but one rule's recovery does not
	 * lift the other's lowering. */
	assert_int_equal(retry_limit_init(&rl, &p), 0);
	assert_int_equal(retry_limit_update(&rl, 80, 10, 0.5, 100, 100,
	    &why), 5);
	assert_string_equal(why, RETRY_LIMIT_DFR_OVER);
	assert_int_equal(retry_limit_update(&rl, 50, 10, 0.5, 100, 100,
	    &why), 5);	/* Us low, DFR in its band: still 5 */
	assert_null(why);
	assert_int_equal(retry_limit_update(&rl, 30, 10, 0.5, 100, 100,
	    &why), 10);
	assert_string_equal(why, RETRY_LIMIT_DFR_UNDER);
}

/* No successes: infinite DFR with attempts, no evidence without. */
static void
test_retry_no_successes(void **state)
{
	struct retry_limit_params p;
	struct retry_limit rl;
	const char *why;

	(void)state;
	retry_limit_params_default(&p);
	assert_int_equal(retry_limit_init(&rl, &p), 0);
	assert_int_equal(retry_limit_update(&rl, 0, 0, 0.5, 100, 100,
	    &why), 10);
	assert_null(why);
	assert_int_equal(retry_limit_update(&rl, 5, 0, 0.5, 100, 100,
	    &why), 5);
	assert_string_equal(why, RETRY_LIMIT_DFR_OVER);
	assert_int_equal(retry_limit_update(&rl, 0, 0, 0.5, 100, 100,
	    &why), 5);
	assert_null(why);
	assert_int_equal(retry_limit_update(&rl, 12, 4, 0.5, 100, 100,
	    &why), 10);
	assert_string_equal(why, RETRY_LIMIT_DFR_UNDER);
}

/* Late stage: remaining / total below late_fraction gives the low limit. */
static void
test_retry_late_stage(void **state)
{
	struct retry_limit_params p;
	struct retry_limit rl;
	const char *why;

	(void)state;
	retry_limit_params_default(&p);
	/* Off by default. */
	assert_int_equal(retry_limit_init(&rl, &p), 0);
	assert_int_equal(retry_limit_update(&rl, 10, 10, 0.5, 1, 1000,
	    &why), 10);

	p.late_fraction = 0.1;
	assert_int_equal(retry_limit_init(&rl, &p), 0);
	assert_int_equal(retry_limit_update(&rl, 10, 10, 0.5, 100, 1000,
	    &why), 10);		/* 10 % is not below 10 % */
	assert_null(why);
	assert_int_equal(retry_limit_update(&rl, 10, 10, 0.5, 99, 1000,
	    &why), 5);
	assert_string_equal(why, RETRY_LIMIT_LATE);
	/* Good DFR and utilization do not lift it. */
	assert_int_equal(retry_limit_update(&rl, 10, 10, 0.1, 50, 1000,
	    &why), 5);
	assert_null(why);
	/* More recipients added: early again. */
	assert_int_equal(retry_limit_update(&rl, 10, 10, 0.1, 500, 2000,
	    &why), 10);
	assert_string_equal(why, RETRY_LIMIT_EARLY);
	/* total == 0: the rule is off. */
	assert_int_equal(retry_limit_update(&rl, 10, 10, 0.1, 0, 0, &why),
	    10);

	/* Late and another rule: the late stage is named. */
	assert_int_equal(retry_limit_update(&rl, 80, 10, 1.5, 1, 1000,
	    &why), 5);
	assert_string_equal(why, RETRY_LIMIT_LATE);
}

static void
test_retry_bad_params(void **state)
{
	struct retry_limit_params p;
	struct retry_limit rl;

	(void)state;
	retry_limit_params_default(&p);
	p.low = 11;
	assert_int_equal(retry_limit_init(&rl, &p), MR_ERANGE_VALUE);
	retry_limit_params_default(&p);
	p.dfr_under = 8;
	assert_int_equal(retry_limit_init(&rl, &p), MR_ERANGE_VALUE);
	retry_limit_params_default(&p);
	p.util_under = 1.5;
	assert_int_equal(retry_limit_init(&rl, &p), MR_ERANGE_VALUE);
	retry_limit_params_default(&p);
	p.late_fraction = 1.5;
	assert_int_equal(retry_limit_init(&rl, &p), MR_ERANGE_VALUE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_csdam_200_to_197),
		cmocka_unit_test(test_csdam_grow_capped),
		cmocka_unit_test(test_csdam_within_band),
		cmocka_unit_test(test_csdyn_half_utilized),
		cmocka_unit_test(test_time_weighted_pa),
		cmocka_unit_test(test_clamp),
		cmocka_unit_test(test_idle),
		cmocka_unit_test(test_no_deliveries_grows),
		cmocka_unit_test(test_interval_one_hour),
		cmocka_unit_test(test_late_tick),
		cmocka_unit_test(test_available_never_negative),
		cmocka_unit_test(test_bad_params),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_retry_dfr_hysteresis),
		cmocka_unit_test(test_retry_utilization_hysteresis),
		cmocka_unit_test(test_retry_utilization_overrides_dfr),
		cmocka_unit_test(test_retry_no_successes),
		cmocka_unit_test(test_retry_late_stage),
		cmocka_unit_test(test_retry_bad_params),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
