/*
 * recovery.c - per-recipient state in RAM, its journalling by the loops,
 * snapshots into the store by the agent, and the rebuild after a crash.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/mr_err.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "recovery/recovery.h"
#include "recovery/visits.h"

#define RECOVERY_FINAL		0x8000u
#define RECOVERY_INFLIGHT	0x4000u
#define RECOVERY_BOUNCED	0x2000u
#define RECOVERY_ATTEMPTS	0x1fffu
#define RECOVERY_WRITERS_MAX	64

struct recovery {
	struct store		*store;
	int64_t			 campaign;
	uint32_t		 n;
	uint32_t		 chunk_size;
	uint32_t		 nchunks;
	char			*dir;
	size_t			 segment_size;
	int64_t			 generation;

	_Atomic uint16_t	*state;		/* per recipient */
	_Atomic uint8_t		*dirty;		/* per chunk: bits changed */

	pthread_mutex_t		 lock;		/* guards journals[] */
	struct journal		*journals[RECOVERY_WRITERS_MAX];
	uint32_t		 njournals;	/* highest writer + 1 */

	uint8_t			*bits;		/* a chunk's bit vector */
	uint16_t		*vals;		/* a chunk's visit values */
	uint8_t			*vblob;		/* their encoding */
	uint32_t		*vlen;		/* per chunk: its length as
						 * last written */
	int64_t			 bad_chunk;	/* by recovery_load_visits */
	uint64_t		 replayed_delivered;	/* by recovery_apply */
	uint64_t		 replayed_bounced;
};

bool
recovery_chunk_size_ok(uint32_t chunk_size)
{
	return chunk_size > 0 && chunk_size % 64 == 0 &&
	    chunk_size <= VISITS_CHUNK_MAX;
}

struct recovery *
recovery_new(const struct recovery_params *p)
{
	struct recovery *r = xcalloc(1, sizeof(*r));
	uint32_t i;

	MR_ASSERT(recovery_chunk_size_ok(p->chunk_size));
	r->store = p->store;
	r->campaign = p->campaign;
	r->n = p->nrecipients;
	r->chunk_size = p->chunk_size;
	r->nchunks = (p->nrecipients + p->chunk_size - 1) / p->chunk_size;
	r->dir = xstrdup(p->journal_dir);
	r->segment_size = p->segment_size;
	r->generation = p->generation;
	r->state = xcalloc(r->n ? r->n : 1, sizeof(*r->state));
	r->dirty = xcalloc(r->nchunks ? r->nchunks : 1, sizeof(*r->dirty));
	for (i = 0; i < r->n; i++)
		atomic_init(&r->state[i], 0);
	for (i = 0; i < r->nchunks; i++)
		atomic_init(&r->dirty[i], 1);	/* first snapshot: all */
	/* One chunk's worth, built chunk after chunk by each snapshot. */
	r->bits = xmalloc(r->chunk_size / 8);
	r->vals = xreallocarray(NULL, r->chunk_size, sizeof(*r->vals));
	r->vblob = xmalloc(visits_bound(r->chunk_size));
	r->vlen = xcalloc(r->nchunks ? r->nchunks : 1, sizeof(*r->vlen));
	pthread_mutex_init(&r->lock, NULL);
	return r;
}

void
recovery_free(struct recovery **rp)
{
	struct recovery *r = *rp;
	uint32_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->njournals; i++)
		journal_close(&r->journals[i]);
	pthread_mutex_destroy(&r->lock);
	free(r->state);
	free(r->dirty);
	free(r->bits);
	free(r->vals);
	free(r->vblob);
	free(r->vlen);
	free(r->dir);
	free(r);
	*rp = NULL;
}

/* ---------------------------------------------------------------- */
/* Rebuilding after a crash                                         */
/* ---------------------------------------------------------------- */

/* recovery_chunk_len - recipients in chunk c (the last may be short). */
static uint32_t
recovery_chunk_len(const struct recovery *r, uint32_t c)
{
	uint32_t first = c * r->chunk_size;

	return r->n - first < r->chunk_size ? r->n - first : r->chunk_size;
}

/* recovery_touch - rcpt's state changed: its chunk is written by the
 * next snapshot. */
static void
recovery_touch(struct recovery *r, uint32_t rcpt)
{
	atomic_store_explicit(&r->dirty[rcpt / r->chunk_size], 1,
	    memory_order_relaxed);
}

/* A chunk's visit state from the last snapshot (before its bit vector
 * is applied, which makes final whom it names). */
static int
recovery_load_visits(void *arg, uint32_t chunk, const uint8_t *blob,
    size_t len)
{
	struct recovery *r = arg;
	uint32_t i, n, first;
	uint16_t v;

	if (chunk >= r->nchunks ||
	    visits_decode(blob, len, r->vals, recovery_chunk_len(r, chunk))) {
		r->bad_chunk = chunk;
		return -EIO;
	}
	n = recovery_chunk_len(r, chunk);
	first = chunk * r->chunk_size;
	for (i = 0; i < n; i++) {
		if (r->vals[i] == 0)
			continue;
		v = (uint16_t)((r->vals[i] & VISITS_ATTEMPTS) >
		    RECOVERY_ATTEMPTS ? RECOVERY_ATTEMPTS :
		    r->vals[i] & VISITS_ATTEMPTS);
		if (r->vals[i] & VISITS_INFLIGHT)
			v |= RECOVERY_INFLIGHT;
		atomic_store_explicit(&r->state[first + i], v,
		    memory_order_relaxed);
	}
	return 0;
}

/* recovery_apply - one journal record, replayed (idempotent: FINAL is
 * sticky, attempts only grow). */
static void
recovery_apply(void *arg, uint32_t rcpt, uint8_t type, uint16_t attempts)
{
	struct recovery *r = arg;
	uint16_t v, a;

	if (rcpt >= r->n)
		return;
	v = atomic_load_explicit(&r->state[rcpt], memory_order_relaxed);
	if (v & RECOVERY_FINAL)
		return;
	a = v & RECOVERY_ATTEMPTS;
	if ((attempts & RECOVERY_ATTEMPTS) > a)
		a = attempts & RECOVERY_ATTEMPTS;
	switch (type) {
	case JOURNAL_INTENT:
		v = (uint16_t)(a | RECOVERY_INFLIGHT);
		break;
	case JOURNAL_DELIVERED:
	case JOURNAL_BOUNCED:
		v = (uint16_t)(a | RECOVERY_FINAL |
		    (type == JOURNAL_BOUNCED ? RECOVERY_BOUNCED : 0));
		if (type == JOURNAL_BOUNCED)
			r->replayed_bounced++;
		else
			r->replayed_delivered++;
		break;
	default:
		v = a;
		break;
	}
	atomic_store_explicit(&r->state[rcpt], v, memory_order_relaxed);
	recovery_touch(r, rcpt);
}

int
recovery_load(struct recovery *r, uint64_t delivered, uint64_t bounced,
    struct recovery_load_stats *st, struct mr_buf *err)
{
	struct store_mark smarks[RECOVERY_WRITERS_MAX * 4];
	struct journal_mark jmarks[RECOVERY_WRITERS_MAX * 4];
	size_t nbytes = (size_t)r->nchunks * (r->chunk_size / 8), nm = 0, i;
	uint8_t *bits;
	uint32_t k;
	uint16_t v;
	int code;

	memset(st, 0, sizeof(*st));
	bits = xcalloc(nbytes ? nbytes : 1, 1);
	r->bad_chunk = -1;
	code = r->store->ops->chunks_load(r->store, r->campaign, bits,
	    nbytes, recovery_load_visits, r);
	if (code != 0) {
		if (r->bad_chunk >= 0)
			mr_buf_printf(err, "campaign %lld: the recipient "
			    "state of chunk %lld in the store is corrupt",
			    (long long)r->campaign, (long long)r->bad_chunk);
		else
			mr_buf_printf(err, "%s", store_error(r->store));
		free(bits);
		return code;
	}
	for (k = 0; k < r->n; k++) {
		if (bits[k / 8] & (1u << (k % 8)))
			atomic_store_explicit(&r->state[k], RECOVERY_FINAL,
			    memory_order_relaxed);
	}
	free(bits);
	code = r->store->ops->marks_load(r->store, r->campaign, smarks,
	    sizeof(smarks) / sizeof(smarks[0]), &nm);
	if (code != 0) {
		mr_buf_printf(err, "%s", store_error(r->store));
		return code;
	}
	for (i = 0; i < nm; i++) {
		jmarks[i].generation = smarks[i].generation;
		jmarks[i].writer = smarks[i].writer;
		jmarks[i].seq = smarks[i].seq;
	}
	code = journal_replay(r->dir, r->campaign, jmarks, nm, recovery_apply,
	    r, &st->replay);
	if (code != 0) {
		mr_buf_printf(err, "cannot read journal directory %s: %s",
		    r->dir, mr_strerror(code));
		return code;
	}
	/* The snapshot's counts, plus what the journals add. */
	st->delivered = delivered + r->replayed_delivered;
	st->bounced = bounced + r->replayed_bounced;
	for (k = 0; k < r->n; k++) {
		v = atomic_load_explicit(&r->state[k], memory_order_relaxed);
		if (v & RECOVERY_FINAL) {
			st->final++;
		} else if (v & RECOVERY_INFLIGHT) {
			/* Its outcome was never recorded: send it again,
			 * and count it as a possible duplicate. */
			st->inflight_rcpts = xreallocarray(st->inflight_rcpts,
			    st->inflight + 1, sizeof(*st->inflight_rcpts));
			st->inflight_rcpts[st->inflight] = k;
			st->inflight++;
			atomic_store_explicit(&r->state[k],
			    v & RECOVERY_ATTEMPTS, memory_order_relaxed);
		} else if (v & RECOVERY_ATTEMPTS) {
			st->deferred++;
		}
	}
	return 0;
}

void
recovery_load_stats_release(struct recovery_load_stats *st)
{
	journal_replay_stats_release(&st->replay);
	free(st->inflight_rcpts);
	st->inflight_rcpts = NULL;
}

void
recovery_settle(struct recovery *r, uint32_t rcpt, bool bounced)
{
	uint16_t v = atomic_load_explicit(&r->state[rcpt],
	    memory_order_relaxed);

	atomic_store_explicit(&r->state[rcpt], (uint16_t)((v &
	    RECOVERY_ATTEMPTS) | RECOVERY_FINAL | (bounced ? RECOVERY_BOUNCED :
	    0)), memory_order_relaxed);
	recovery_touch(r, rcpt);
}

/* ---------------------------------------------------------------- */
/* The loops' side                                                  */
/* ---------------------------------------------------------------- */

struct journal *
recovery_writer(struct recovery *r, uint32_t writer, struct mr_buf *err,
    int *code_r)
{
	struct journal *j;

	if (writer >= RECOVERY_WRITERS_MAX) {
		*code_r = -EINVAL;
		mr_buf_printf(err, "too many journal writers (%u)", writer);
		return NULL;
	}
	pthread_mutex_lock(&r->lock);
	j = r->journals[writer];
	pthread_mutex_unlock(&r->lock);
	if (j != NULL)
		return j;
	j = journal_open(r->dir, r->campaign, r->generation, writer,
	    r->segment_size, err, code_r);
	if (j == NULL)
		return NULL;
	pthread_mutex_lock(&r->lock);
	r->journals[writer] = j;
	if (writer + 1 > r->njournals)
		r->njournals = writer + 1;
	pthread_mutex_unlock(&r->lock);
	return j;
}

bool
recovery_is_final(const struct recovery *r, uint32_t rcpt)
{
	return (atomic_load_explicit(&r->state[rcpt], memory_order_relaxed) &
	    RECOVERY_FINAL) != 0;
}

uint16_t
recovery_attempts(const struct recovery *r, uint32_t rcpt)
{
	return atomic_load_explicit(&r->state[rcpt], memory_order_relaxed) &
	    RECOVERY_ATTEMPTS;
}

static uint16_t
recovery_clamp(uint16_t attempts)
{
	return attempts > RECOVERY_ATTEMPTS ? RECOVERY_ATTEMPTS : attempts;
}

void
recovery_intent(struct recovery *r, struct journal *j, uint32_t rcpt,
    uint16_t attempt)
{
	atomic_store_explicit(&r->state[rcpt],
	    (uint16_t)(recovery_clamp(attempt) | RECOVERY_INFLIGHT),
	    memory_order_relaxed);
	recovery_touch(r, rcpt);
	journal_append(j, rcpt, JOURNAL_INTENT, attempt);
}

void
recovery_final(struct recovery *r, struct journal *j, uint32_t rcpt,
    bool bounced, uint16_t attempts)
{
	atomic_store_explicit(&r->state[rcpt],
	    (uint16_t)(recovery_clamp(attempts) | RECOVERY_FINAL |
	    (bounced ? RECOVERY_BOUNCED : 0)), memory_order_relaxed);
	recovery_touch(r, rcpt);
	journal_append(j, rcpt, bounced ? JOURNAL_BOUNCED : JOURNAL_DELIVERED,
	    attempts);
}

void
recovery_defer(struct recovery *r, struct journal *j, uint32_t rcpt,
    uint16_t attempts)
{
	atomic_store_explicit(&r->state[rcpt], recovery_clamp(attempts),
	    memory_order_relaxed);
	recovery_touch(r, rcpt);
	journal_append(j, rcpt, JOURNAL_DEFER, attempts);
}

/* ---------------------------------------------------------------- */
/* The agent's side                                                 */
/* ---------------------------------------------------------------- */

int
recovery_sync(struct recovery *r)
{
	uint32_t i, n;
	int code, first = 0;

	pthread_mutex_lock(&r->lock);
	n = r->njournals;
	pthread_mutex_unlock(&r->lock);
	for (i = 0; i < n; i++) {
		if (r->journals[i] == NULL)
			continue;
		code = journal_sync(r->journals[i]);
		if (code != 0 && first == 0)
			first = code;
	}
	return first;
}

/*
 * recovery_chunk_scan - chunk c's states, read once: its bit vector into
 * r->bits, its visit values into r->vals, its final recipients counted.
 * Returns the chunk's count of final recipients.
 */
static uint32_t
recovery_chunk_scan(struct recovery *r, uint32_t c, uint64_t *delivered,
    uint64_t *bounced)
{
	uint32_t i, n = recovery_chunk_len(r, c), first = c * r->chunk_size;
	uint32_t ndone = 0;
	uint16_t v;

	memset(r->bits, 0, r->chunk_size / 8);
	for (i = 0; i < n; i++) {
		v = atomic_load_explicit(&r->state[first + i],
		    memory_order_relaxed);
		r->vals[i] = 0;
		if (v & RECOVERY_FINAL) {
			if (v & RECOVERY_BOUNCED)
				(*bounced)++;
			else
				(*delivered)++;
			r->bits[i / 8] |= (uint8_t)(1u << (i % 8));
			ndone++;
		} else if (v & (RECOVERY_ATTEMPTS | RECOVERY_INFLIGHT)) {
			r->vals[i] = (uint16_t)((v & RECOVERY_ATTEMPTS) |
			    (v & RECOVERY_INFLIGHT ? VISITS_INFLIGHT : 0));
		}
	}
	return ndone;
}

int
recovery_snapshot(struct recovery *r, recovery_snapshot_cb *cb, void *arg,
    struct mr_buf *err)
{
	struct store *s = r->store;
	struct store_mark marks[RECOVERY_WRITERS_MAX];
	struct journal_mark jm[RECOVERY_WRITERS_MAX];
	uint32_t i, c, ndone, nj;
	uint64_t delivered = 0, bounced = 0;
	uint8_t *dirty_now;
	size_t nm = 0, vlen;
	int code;

	/* Positions first, states after (see the header). */
	pthread_mutex_lock(&r->lock);
	nj = r->njournals;
	pthread_mutex_unlock(&r->lock);
	for (i = 0; i < nj; i++) {
		if (r->journals[i] == NULL)
			continue;
		marks[nm].generation = r->generation;
		marks[nm].writer = i;
		marks[nm].seq = journal_seq(r->journals[i]);
		nm++;
	}
	dirty_now = xcalloc(r->nchunks ? r->nchunks : 1, 1);
	for (c = 0; c < r->nchunks; c++)
		dirty_now[c] = atomic_exchange_explicit(&r->dirty[c], 0,
		    memory_order_acq_rel);
	/*
	 * One read of each state: the counts, the bit vectors and the
	 * visit state all come from it, and so agree (a recipient changed
	 * after its chunk was read is in none of them, and is replayed
	 * from the journal after a crash).  Only changed chunks are
	 * written.
	 */
	code = s->ops->begin(s);
	for (c = 0; code == 0 && c < r->nchunks; c++) {
		ndone = recovery_chunk_scan(r, c, &delivered, &bounced);
		if (!dirty_now[c])
			continue;
		vlen = visits_encode(r->vals, recovery_chunk_len(r, c),
		    r->vblob);
		code = s->ops->chunk_save(s, r->campaign, c, r->bits,
		    r->chunk_size / 8, ndone, r->vblob, vlen);
		r->vlen[c] = (uint32_t)vlen;
	}
	if (code == 0)
		code = s->ops->marks_replace(s, r->campaign, marks, nm);
	if (code == 0 && cb != NULL)
		code = cb(arg, s, delivered, bounced);
	if (code == 0)
		code = s->ops->commit(s);
	if (code != 0) {
		mr_buf_printf(err, "snapshot of campaign %lld failed: %s",
		    (long long)r->campaign, store_error(s));
		(void)s->ops->rollback(s);
		/* Nothing was folded: mark the chunks changed again. */
		for (c = 0; c < r->nchunks; c++)
			if (dirty_now[c])
				atomic_store_explicit(&r->dirty[c], 1,
				    memory_order_relaxed);
		free(dirty_now);
		return code;
	}
	free(dirty_now);
	for (i = 0; i < nm; i++) {
		jm[i].generation = marks[i].generation;
		jm[i].writer = marks[i].writer;
		jm[i].seq = marks[i].seq;
	}
	(void)journal_prune(r->dir, r->campaign, r->generation, jm, nm);
	return 0;
}

void
recovery_drop_journals(struct recovery *r)
{
	uint32_t i;

	for (i = 0; i < r->njournals; i++)
		journal_close(&r->journals[i]);
	r->njournals = 0;
	(void)journal_prune(r->dir, r->campaign, INT64_MAX, NULL, 0);
}

uint64_t
recovery_state_bytes(struct recovery *r)
{
	uint64_t sum = journal_disk_bytes(r->dir, r->campaign) +
	    (uint64_t)r->nchunks * (r->chunk_size / 8);
	uint32_t c;

	for (c = 0; c < r->nchunks; c++)
		sum += r->vlen[c];
	return sum;
}
