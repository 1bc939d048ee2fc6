/*
 * pace.h - what paces a delivery source's engines (SPEC D9, D6): the
 * performance governor's delivery slots and the dynamic retry limit,
 * applied every governor.interval from the counters the engines keep in
 * struct campaign.  A campaign's runner and the relay (SMTP injection)
 * each own one, so both are bound the same way.
 *
 * Ownership: a struct pace is the caller's; it keeps no pointer to the
 * campaign between calls.  Thread-safety: one thread calls pace_tick()
 * (the runner's agent, the listener's loop); the engines only read the
 * campaign's atomics it writes (slots, retry_limit).
 */
#ifndef MR_PACE_H
#define MR_PACE_H

#include <stdint.h>

#include "conf/conf.h"
#include "core/mr_buf.h"
#include "delivery/governor.h"

struct campaign;

struct pace {
	struct governor		 gov;
	struct retry_limit	 rl;
	uint64_t		 delivered;	/* counters at the last look */
	uint64_t		 attempts;
	uint64_t		 iv_attempts;	/* in the open interval */
	uint64_t		 iv_successes;
	char			 line[320];	/* the last decision */
};

/*
 * pace_init - the governor and retry limit of cfg's [governor] and
 * [queue] keys; sets c's slots and retry limit.  0, or MR_ERANGE_VALUE
 * with a message in err.
 */
int pace_init(struct pace *p, const struct mr_config *cfg,
    struct campaign *c, uint64_t now, struct mr_buf *err);

/*
 * pace_tick - feed what c's engines did since the last call; at the end
 * of an interval apply the governor's decision and the retry limit's to
 * c, and log them.  remaining and total (recipients not final, and all;
 * 0 and 0 for an endless source) feed the retry limit's late stage.
 */
void pace_tick(struct pace *p, struct campaign *c, uint64_t now,
    uint64_t remaining, uint64_t total);

/* pace_line - the last decision, "interval=N ms=... slots=a->b ...
 * retry_limit=N": for status output. */
const char *pace_line(const struct pace *p);

#endif
