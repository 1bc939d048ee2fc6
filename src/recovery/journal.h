/*
 * journal.h - the recovery journal (SPEC D10): an append-only log of what
 * happened to recipients, one stream per delivery loop, written into
 * preallocated, memory-mapped segment files.
 *
 * A record is 16 bytes: its sequence number in the stream, the recipient,
 * its attempt count, its type, and a checksum (XXH32 seeded with the
 * stream's identity, so that a record of another stream, a torn write or
 * garbage never passes).  Records reach the page cache by memcpy into the
 * mapping, before the caller goes on: a killed process loses nothing that
 * was appended.  journal_sync() (the recovery agent's group commit, from
 * another thread) makes them durable against a power loss.
 *
 * A stream is (campaign, generation, writer): each run of a campaign is a
 * new generation, each delivery loop of it a writer.  Its segments are
 * files "c<campaign>-g<generation>-w<writer>-s<segment>.jnl" in the
 * journal directory, each with a 64-byte header; segments are allocated
 * whole (posix_fallocate), so a full disk shows when a segment is made,
 * never as a lost write.
 *
 * Threads: the writer appends on its own thread; journal_seq() and
 * journal_sync() may be called from another thread at any time.
 * Ownership: the writer's owner closes it; files stay until
 * journal_prune() removes the folded ones.
 */
#ifndef MR_JOURNAL_H
#define MR_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mr_buf.h"

enum journal_type {
	JOURNAL_INTENT = 1,	/* about to be sent (attempt number) */
	JOURNAL_DELIVERED = 2,	/* final: never sent again */
	JOURNAL_DEFER = 3,	/* failed for now (attempts so far) */
	JOURNAL_BOUNCED = 4,	/* final: never sent again */
};

#define JOURNAL_REC_SIZE	16
#define JOURNAL_HDR_SIZE	64

struct journal;

/*
 * journal_open - a writer for stream (campaign, generation, writer) in dir,
 * with segments of segment_size bytes (rounded to whole records).  Its
 * first segment is made at once.  NULL with *code_r (-ENOSPC, -EACCES...)
 * and a message in err.
 */
struct journal *journal_open(const char *dir, int64_t campaign,
    int64_t generation, uint32_t writer, size_t segment_size,
    struct mr_buf *err, int *code_r);
/* journal_close - sync and unmap; the files stay. */
void journal_close(struct journal **jp);

/*
 * journal_reserve - write out records waiting in memory and make sure n
 * more fit in the current segment (n is capped at half a segment), moving
 * to new segments as needed.  0, or a negative code when a new segment
 * cannot be made (disk full): the caller then starts nothing new and asks
 * again later.
 */
int journal_reserve(struct journal *j, size_t n);
/*
 * journal_append - one record; returns its sequence number.  Without room
 * (a reservation was not made or a new segment failed) the record waits
 * in memory until journal_reserve() succeeds: it is then not safe from a
 * crash, which costs a resend, never a skip.
 */
uint64_t journal_append(struct journal *j, uint32_t rcpt, uint8_t type,
    uint16_t attempts);
/* journal_full - records are waiting in memory for disk space. */
bool journal_full(const struct journal *j);
/* journal_seq - the last sequence number written to the mapping
 * (acquire: what it covers is visible to the caller). */
uint64_t journal_seq(const struct journal *j);
/* journal_sync - make what was appended durable (fdatasync). */
int journal_sync(struct journal *j);
uint32_t journal_writer(const struct journal *j);
int64_t journal_generation(const struct journal *j);

/* A stream's progress that a snapshot has folded into the store. */
struct journal_mark {
	int64_t		generation;
	uint32_t	writer;
	uint64_t	seq;
};

struct journal_replay_stats {
	uint64_t	records;	/* applied */
	uint64_t	skipped;	/* already folded (at or below a mark) */
	unsigned	segments;
	unsigned	bad_tails;	/* segments that ended in garbage */
	uint64_t	bad_bytes;	/* bytes of garbage ignored */
	struct mr_buf	report;		/* a line per bad tail, for people */
};

typedef void journal_replay_cb(void *arg, uint32_t rcpt, uint8_t type,
    uint16_t attempts);

/*
 * journal_replay - every record of campaign's streams in dir, in order
 * (generation, writer, sequence), skipping those a mark covers.  A stream
 * ends at its first zeroed record (unused space) or at a record that is
 * not valid (a torn or corrupt tail: counted and reported, the rest of
 * that stream ignored).  Returns 0, or -errno when dir cannot be read.
 */
int journal_replay(const char *dir, int64_t campaign,
    const struct journal_mark *marks, size_t nmarks, journal_replay_cb *cb,
    void *arg, struct journal_replay_stats *st);
void journal_replay_stats_release(struct journal_replay_stats *st);

/*
 * journal_prune - remove campaign's segment files that a snapshot has
 * folded: those of generations older than keep_generation, and those of
 * keep_generation whose records all lie at or below their stream's mark
 * (never a stream's last segment).  Returns the number removed.
 */
int journal_prune(const char *dir, int64_t campaign, int64_t keep_generation,
    const struct journal_mark *marks, size_t nmarks);
/* journal_disk_bytes - bytes of campaign's segment files in dir. */
uint64_t journal_disk_bytes(const char *dir, int64_t campaign);

#endif
