/*
 * engine.h - one delivery loop (SPEC D3-D6): the recipients of the domains
 * it owns, queued per domain in RAM; DNS for those domains; a pool of SMTP
 * sessions per destination host (IP and port); retries with backoff.
 *
 * A campaign runs one engine per worker thread; each domain belongs to
 * exactly one engine, so nothing inside an engine is shared or locked.
 * Outcomes go to the campaign (counters, accounting file) and, when the
 * campaign keeps recovery state, to this engine's journal: an INTENT
 * before a message is handed to a server, a FINAL or DEFER after its
 * outcome is in the accounting file.  Without disk space for the journal
 * the engine starts nothing new until there is.
 *
 * Lifecycle: engine_new(), then engine_run() on the engine's own thread,
 * fed with engine_post() (before or while it runs) by the campaign's
 * reader or the relay's listener, until every recipient reached a final
 * state and the reader is done (campaign.feeding cleared), or the
 * campaign's stop flag was raised and the transactions in flight
 * finished; an endless campaign (the relay) runs until stopped.  Then
 * engine_free().
 */
#ifndef MR_ENGINE_H
#define MR_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/mr_buf.h"
#include "delivery/campaign.h"

struct engine;

struct engine_stats {
	uint64_t	queue_bytes;	/* peak bytes held by queues */
	uint64_t	queued_peak;	/* peak recipients in queues */
	uint64_t	sessions;	/* SMTP sessions opened */
};

/*
 * engine_new - an engine for camp (borrowed; must outlive it).  NULL with
 * a message in err when its resolver cannot be set up.
 */
struct engine *engine_new(struct campaign *camp, unsigned id,
    struct mr_buf *err);
void engine_free(struct engine **ep);
/*
 * engine_post - queue recipients from another thread (the relay's
 * listener, the runner's reader) with their attempts so far (NULL: 0):
 * they join the engine's queues on its loop.  n may be 0: a wake-up
 * (the reader finished).  Thread-safe.
 */
void engine_post(struct engine *e, const uint32_t *rcpts,
    const uint16_t *attempts, size_t n);
/* engine_run - deliver; returns when done (see above), or for an endless
 * campaign (the relay) when it is stopped. */
void engine_run(struct engine *e);
void engine_get_stats(const struct engine *e, struct engine_stats *st);

#endif
