/*
 * queue.h - the in-RAM queue map's parts (SPEC D3): compact queue entries,
 * a domain's queue (split into another queue past a maximum length), and a
 * heap of entries waiting for their next attempt.
 *
 * An entry is a 16-byte reference to a recipient, never a copy of a
 * message.  A struct dqueue holds ready entries in FIFO order in a chain of
 * ring buffers, each at most max_len entries long (the seed's "new queue
 * for the same domain" when one is full).  A struct rheap holds deferred
 * entries ordered by their next attempt time.
 *
 * Not thread-safe: each delivery loop owns its queues.  Memory is freed
 * as queues drain.
 */
#ifndef MR_QUEUE_H
#define MR_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct queue_entry {
	uint32_t	rcpt;		/* index in the recipient table */
	uint32_t	domain;		/* domain id */
	uint32_t	due;		/* next attempt, ms since the loop's
					 * epoch, wrapping: compare with
					 * queue_due_diff() */
	uint16_t	attempts;	/* the seed's visit count */
	uint16_t	flags;		/* reserved for later use */
};

/*
 * queue_due_diff - a - b for two due times, in serial-number arithmetic
 * (RFC 1982): right while they are less than 24 days apart, across the
 * 32-bit wrap every 49.7 days of a loop that runs for months (the relay).
 */
static inline int32_t
queue_due_diff(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b);
}

struct queue_seg;

struct dqueue {
	struct queue_seg *first;
	struct queue_seg *last;
	size_t		  len;		/* entries in all segments */
	uint32_t	  max_len;	/* per segment */
	uint32_t	  nsegs;
};

/* queue_match_cb - may entry e join the batch that starts with head? */
typedef bool queue_match_cb(void *arg, const struct queue_entry *head,
    const struct queue_entry *e);

void dqueue_init(struct dqueue *q, uint32_t max_len);
/* dqueue_release - free every segment (entries are dropped). */
void dqueue_release(struct dqueue *q);
void dqueue_push(struct dqueue *q, const struct queue_entry *e);
bool dqueue_pop(struct dqueue *q, struct queue_entry *e_r);
/* dqueue_peek - the first entry, or NULL when empty (borrowed until the
 * queue changes). */
const struct queue_entry *dqueue_peek(const struct dqueue *q);
/*
 * dqueue_pop_batch - pop the head and up to max - 1 more entries that
 * match it among the next `window` entries of the first segment (the rest
 * keep their places but for the order of the ones that moved up).  Returns
 * the number of entries written to out (0 when the queue is empty).
 */
size_t dqueue_pop_batch(struct dqueue *q, queue_match_cb *match, void *arg,
    size_t max, size_t window, struct queue_entry *out);
/* dqueue_bytes - memory held by the segments. */
size_t dqueue_bytes(const struct dqueue *q);

struct rheap {
	struct queue_entry	*v;
	size_t			 n, cap;
};

void rheap_init(struct rheap *h);
void rheap_release(struct rheap *h);
void rheap_push(struct rheap *h, const struct queue_entry *e);
/* rheap_peek - the entry due first, or NULL when empty (borrowed). */
const struct queue_entry *rheap_peek(const struct rheap *h);
void rheap_pop(struct rheap *h, struct queue_entry *e_r);
size_t rheap_bytes(const struct rheap *h);

#endif
