/*
 * recovery.h - a campaign's recovery state (SPEC D10, seed 003 [0049],
 * [0053]): what each recipient has reached, kept in RAM by the delivery
 * loops, journalled as it changes, and folded into the store by
 * snapshots; and, after a crash, the same state rebuilt from the last
 * snapshot and the journals' tails.
 *
 * Per recipient the state is 16 bits: FINAL (delivered or bounced: never
 * sent again), BOUNCED (which of the two), INFLIGHT (handed to a server,
 * outcome not yet known) and the attempt count.  The campaign's counts of
 * delivered and bounced recipients are derived from it by each snapshot,
 * in the same scan as the bit vectors, so that they stay exact across
 * crashes.  A loop changes only its own recipients, stores the
 * state first and appends the journal record after it; a snapshot reads
 * each journal's position first and the states after, so that it never
 * folds a record whose state it did not see.
 *
 * The in-flight window: after a crash, the recipients whose last journal
 * record is an INTENT are sent again and counted as possible duplicates.
 * They are at most the recipients of the transactions in flight; for a
 * process crash the count is exact (records are in the page cache before
 * a message's DATA goes out); after a power loss, records younger than the
 * last journal sync (recovery.sync_interval) may be lost, and the
 * recipients they named are sent again without being counted.
 *
 * Threads: recovery_new/load/snapshot/sync/free on the agent's thread
 * (the one that owns the store); recovery_intent/final/defer on the loop
 * that owns the recipient and its journal; the read functions anywhere.
 */
#ifndef MR_RECOVERY_H
#define MR_RECOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mr_buf.h"
#include "recovery/journal.h"
#include "store/store.h"

struct recovery;

struct recovery_params {
	struct store	*store;		/* borrowed, the agent's */
	int64_t		 campaign;
	uint32_t	 nrecipients;
	uint32_t	 chunk_size;	/* recovery_chunk_size_ok() */
	const char	*journal_dir;	/* copied */
	size_t		 segment_size;
	int64_t		 generation;	/* this run's */
};

struct recovery_load_stats {
	uint64_t	final;		/* recipients already final */
	uint64_t	delivered;	/* of them, as counted by the last
					 * snapshot plus the journals */
	uint64_t	bounced;
	uint64_t	deferred;	/* with attempts, not final */
	uint64_t	inflight;	/* in flight at the crash: resent */
	uint32_t	*inflight_rcpts; /* which (owned; release frees) */
	struct journal_replay_stats replay;
};

/* recovery_chunk_size_ok - whether recovery_new() takes this chunk size
 * (a multiple of 64, at most 65536). */
bool recovery_chunk_size_ok(uint32_t chunk_size);
struct recovery *recovery_new(const struct recovery_params *p);
/* recovery_free - closes the journals; their files stay. */
void recovery_free(struct recovery **rp);

/*
 * recovery_load - rebuild the state of an earlier run: the store's last
 * snapshot (with the counts it found, delivered and bounced), then every
 * journal record it does not cover.  In-flight recipients lose the flag
 * (they will be sent again) and are counted.
 * Returns 0 or a negative code with a message in err.
 */
int recovery_load(struct recovery *r, uint64_t delivered, uint64_t bounced,
    struct recovery_load_stats *st, struct mr_buf *err);
void recovery_load_stats_release(struct recovery_load_stats *st);

/*
 * recovery_settle - after recovery_load() and before the loops start: an
 * in-flight recipient whose outcome is known all the same (its accounting
 * line got out before the crash) is final.  Agent's thread only.
 */
void recovery_settle(struct recovery *r, uint32_t rcpt, bool bounced);

/*
 * recovery_writer - the journal of loop `writer` for this generation
 * (opened on first call; owned by r).  NULL with *code_r and err when the
 * journal cannot be made.
 */
struct journal *recovery_writer(struct recovery *r, uint32_t writer,
    struct mr_buf *err, int *code_r);

bool recovery_is_final(const struct recovery *r, uint32_t rcpt);
uint16_t recovery_attempts(const struct recovery *r, uint32_t rcpt);

/* The loops' side: the state changes, then its record is appended. */
void recovery_intent(struct recovery *r, struct journal *j, uint32_t rcpt,
    uint16_t attempt);
void recovery_final(struct recovery *r, struct journal *j, uint32_t rcpt,
    bool bounced, uint16_t attempts);
void recovery_defer(struct recovery *r, struct journal *j, uint32_t rcpt,
    uint16_t attempts);

/* recovery_sync - group commit: make every journal durable. */
int recovery_sync(struct recovery *r);

/*
 * recovery_snapshot_cb - more writes inside the snapshot's transaction
 * (the campaign's counters, quota consumption), given the counts the
 * snapshot found: recipients delivered and bounced in all.  0 or a
 * negative code.
 */
typedef int recovery_snapshot_cb(void *arg, struct store *s,
    uint64_t delivered, uint64_t bounced);

/*
 * recovery_snapshot - fold the state into the store in one transaction:
 * the chunks that changed (bit vector and visit state: the attempt counts
 * of deferred recipients and the in-flight flags), each journal's mark, and what cb adds; then remove the
 * journal segments that are now folded.  0, or a negative code with a
 * message in err (the store is then as before).
 */
int recovery_snapshot(struct recovery *r, recovery_snapshot_cb *cb,
    void *arg, struct mr_buf *err);
/* recovery_drop_journals - remove every segment of the campaign. */
void recovery_drop_journals(struct recovery *r);

/* recovery_state_bytes - bytes the recovery state takes on disk: the
 * journal files now, plus the chunks' bit vectors and visit state as the
 * last snapshot wrote them. */
uint64_t recovery_state_bytes(struct recovery *r);

#endif
