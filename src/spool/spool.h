/*
 * spool.h - the durable spool for messages injected over SMTP (SPEC D17):
 * a message answered with 250 is on disk before the 250 goes out, and it
 * leaves the disk once every recipient of it is final.
 *
 * FILES.  A directory of segment files "spool-<seq, 16 hex>.seg", each a
 * 32-byte header (magic "MRSPOOL1", seq, first id, XXH3 check) followed
 * by records, written with pwritev(2) and never rewritten.  A record is a
 * 32-byte header (magic, type, version, payload length, message id, XXH3
 * of payload and header) and its payload:
 *   MESSAGE   received (ms), flags, recipient count, body length, the
 *             account, client, MAIL FROM and each RCPT TO as u16 length +
 *             bytes + NUL, then the body as received (after dot-unstuffing);
 *   RCPT_DONE recipient index and outcome (delivered, bounced).
 * Integers are in the machine's byte order (the files never travel).
 *
 * WHAT IS WRITTEN, AND WHEN.
 *  1. spool_append_message() writes the MESSAGE record into the current
 *     segment (page cache) and returns its id and a commit ticket.  A kill
 *     -9 from here on loses nothing; a power loss may.
 *  2. The spool's sync thread fdatasyncs the current segment (and a
 *     segment just rotated out, and the directory when a segment was
 *     created) and then publishes the highest ticket that the sync covered:
 *     one fdatasync covers every message appended before it (group
 *     commit).  It then calls the notifier.
 *  3. The caller answers 250 only when spool_durable(ticket) is 1; on 0 it
 *     waits for the notifier; on a negative code it answers 451.
 *  4. spool_rcpt_done() appends a RCPT_DONE record to the message's own
 *     segment (its "home").  It is not synced by itself: the sync thread
 *     syncs segments holding done marks within a second (sooner when a
 *     group commit syncs that segment anyway), and a segment is synced
 *     before it is deleted.  A crash may lose the last second of done
 *     marks: those recipients are delivered again (at least once, never
 *     lost).
 *  5. A segment other than the current one is deleted (fdatasync, unlink,
 *     fsync of the directory) once every message in it is final.
 * INVARIANT: every record about a message lives in its home segment, so
 * no segment is ever needed to interpret another, and deleting a segment
 * deletes exactly the messages that are final.  (Done records in later
 * segments, as a single log would have them, make an old segment's
 * messages come back to life when a later segment goes first.)
 *
 * RECOVERY.  spool_open() reads every segment, verifies every checksum and
 * rebuilds the live messages and their pending recipients.  A record that
 * does not verify ends its segment: if nothing valid follows, it is a torn
 * tail (a crash during a write) and the file is truncated there; if valid
 * records follow, the segment is damaged: what follows is ignored (and
 * logged), the segment gets no more records, its messages' done marks are
 * kept in memory only, and once they are all final the file is renamed
 * "spool-<seq>.damaged" for an operator.  Appends always go to a new
 * segment.  Ids never repeat while the directory's files survive, not
 * even those of records a crash tore: each open starts a new range.
 *
 * LIMITS.  The in-memory index holds about 64 bytes per live message
 * (and a bit per recipient past 64); bodies stay on disk, read back with
 * spool_read_message().  One fd stays open per segment with live
 * messages.  Records over max_record bytes and messages over max_rcpts
 * recipients are refused.
 *
 * THREADS.  Every function but spool_open() and spool_close() may be
 * called from any thread.  A mutex guards the index and the file ends; it
 * is held for one pwritev (append, done; plus creating a segment when one
 * is full) or a lookup, never for an fsync.
 * Appends and done marks write to the page cache only, so event-loop
 * threads may call them; spool_read_message(), spool_read_head() and
 * spool_recover() read files, spool_sync() waits for an fsync: not from
 * an event loop.
 * Nothing here is an event-loop callback; the notifier runs on the sync
 * thread.
 *
 * ERRORS.  int functions return 0 or a negative code (mr_err.h): -ENOSPC,
 * -EDQUOT or -EFBIG on a full disk (answer 452 4.3.1), MR_ETOOLONG for an
 * oversized record (552 5.3.4), MR_ERANGE_VALUE for too many recipients,
 * -EIO and the like otherwise (451 4.3.0), and append a reason to err
 * when err is not NULL.  A failed write is cut off again (ftruncate), so
 * recovery never sees half a record.  A failed fsync is sticky: the spool
 * then refuses every append until it is reopened (the kernel may have
 * dropped the pages).  Ownership: the caller owns every argument; the
 * spool copies what it keeps.
 */
#ifndef MR_SPOOL_H
#define MR_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "core/mr_buf.h"

enum spool_outcome {
	SPOOL_DELIVERED = 1,
	SPOOL_BOUNCED = 2,
};

/* Zero fields take the defaults shown; out-of-range values are refused. */
struct spool_params {
	size_t		segment_size;	/* rotate past this: 64 MiB [64 KiB,
					 * 1 GiB] */
	size_t		max_record;	/* bytes, header included: 64 MiB
					 * [4 KiB, 1 GiB] */
	size_t		max_rcpts;	/* per message: 1000 [1, 100000] */
	unsigned	commit_delay_us;/* the sync thread waits this long
					 * before a round, so more sessions
					 * share its fsync: 0 [0, 100000] */
};

/* A message's envelope: what the SMTP session learned about it. */
struct spool_envelope {
	uint64_t	 received;	/* wall clock, ms; 0: now */
	uint32_t	 flags;		/* the caller's (8BITMIME...) */
	const char	*account;	/* authenticated sender, "" if none */
	const char	*client;	/* client address, as text */
	const char	*mail_from;	/* reverse-path, "" for <> */
	const char *const *rcpt;	/* forward-paths [nrcpt] */
	size_t		 nrcpt;
};

/*
 * A message read back: env (with the pending recipients only), their
 * indices in the original list, and the body.  Every pointer points into
 * storage that the struct owns until spool_message_release(); the struct
 * may be reused for the next read.  Zero-initialise it first.
 */
struct spool_message {
	uint64_t		 id;
	struct spool_envelope	 env;
	const uint32_t		*rcpt_idx;	/* [env.nrcpt] */
	size_t			 nrcpt_total;	/* recipients when spooled */
	const unsigned char	*body;
	size_t			 body_len;
	/* Private. */
	struct mr_buf		 raw_;
	void			*vec_;
	size_t			 veccap_;
};

struct spool_stats {
	uint64_t	bytes;		/* in segment files */
	uint64_t	messages;	/* live (not final) */
	uint64_t	rcpts;		/* pending recipients */
	uint32_t	segments;
	uint32_t	damaged;	/* segments kept after a bad record */
	uint64_t	appended;	/* messages appended since open */
	uint64_t	syncs;		/* group-commit rounds */
	uint64_t	synced;		/* messages those rounds covered: a
					 * round's share is synced / syncs */
	uint64_t	fsyncs;		/* every fdatasync/fsync call */
	uint64_t	deleted;	/* segments deleted since open */
	/* Found by spool_open(). */
	uint64_t	recovered;	/* live messages */
	uint32_t	torn_tails;	/* files truncated */
	uint64_t	ignored_bytes;	/* cut off or skipped */
};

struct spool;

/*
 * spool_notify_cb - the sync thread made tickets durable, or the spool
 * failed.  Runs on the sync thread with no spool lock held: it must be
 * thread-safe and cheap (event_active() on the loop that waits), and may
 * call spool_synced(), spool_durable() and spool_stats() only.
 */
typedef void spool_notify_cb(void *arg);

/*
 * spool_open - open (or create) the spool in dir, recover it, start its
 * sync thread.  params may be NULL (defaults); notify may be NULL; both
 * are borrowed (notify and arg for the spool's life).  The directory is
 * locked (flock) against a second process.  NULL with *code_r and a
 * message in err on failure.
 */
struct spool *spool_open(const char *dir, const struct spool_params *params,
    spool_notify_cb *notify, void *arg, struct mr_buf *err, int *code_r);
/* spool_close - sync everything, stop the thread, free; *sp = NULL. */
void spool_close(struct spool **sp);

/*
 * spool_append_message - spool a message (env and body are copied to the
 * page cache).  On success *id_r is its id and *ticket_r its commit
 * ticket; on failure nothing of it stays on disk.
 */
int spool_append_message(struct spool *sp, const struct spool_envelope *env,
    const void *body, size_t body_len, struct mr_buf *err, uint64_t *id_r,
    uint64_t *ticket_r);
/* spool_synced - the highest ticket known durable (acquire load). */
uint64_t spool_synced(const struct spool *sp);
/* spool_durable - 1 when ticket is durable, 0 not yet, or the sticky
 * negative code of a failed spool. */
int spool_durable(const struct spool *sp, uint64_t ticket);
/* spool_sync - make everything appended so far durable, now; blocks. */
int spool_sync(struct spool *sp);

/*
 * spool_rcpt_done - recipient idx of message id is final.  The mark holds
 * in memory at once (the message leaves the spool when its last recipient
 * is final); the record is written to the page cache.  0; or a negative
 * code when the record could not be written (the mark then holds in
 * memory only: after a crash the recipient is delivered again); -ENOENT
 * when id is not live; MR_ERANGE_VALUE when idx is out of range.  Marking
 * a recipient twice is not an error.
 */
int spool_rcpt_done(struct spool *sp, uint64_t id, uint32_t idx,
    enum spool_outcome outcome, struct mr_buf *err);

/*
 * spool_read_message - read live message id from disk into *m, with its
 * pending recipients, verifying its checksum.  -ENOENT when id is not
 * live, MR_EINVAL_INPUT when the record no longer verifies, -errno.
 */
int spool_read_message(struct spool *sp, uint64_t id,
    struct spool_message *m, struct mr_buf *err);
/*
 * spool_read_head - spool_read_message() for a look at the start of the
 * body (the header a bounce quotes): m->body holds at most max_body
 * bytes of it, m->body_len says how many, and only about that much of
 * the record is read from disk.  A record read whole is verified as by
 * spool_read_message(); the checksum of a longer one covers bytes not
 * read, so only its structure is checked.  Same errors.
 */
int spool_read_head(struct spool *sp, uint64_t id, size_t max_body,
    struct spool_message *m, struct mr_buf *err);
void spool_message_release(struct spool_message *m);

/*
 * spool_recover_cb - one live message; m is borrowed for the call.
 * Returns 0 to go on; anything else stops spool_recover(), which returns
 * it.
 */
typedef int spool_recover_cb(void *arg, const struct spool_message *m);
/*
 * spool_recover - call cb for every live message, in id order (after
 * spool_open(), before new appends are delivered).  A message that
 * cannot be read is logged and skipped; the first such code is returned
 * when cb never stopped the walk.
 */
int spool_recover(struct spool *sp, spool_recover_cb *cb, void *arg);

void spool_stats(struct spool *sp, struct spool_stats *st_r);

#endif
