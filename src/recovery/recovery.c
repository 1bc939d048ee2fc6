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

	uint8_t			*bits;		/* snapshot scratch */
	uint64_t		 replayed_delivered;	/* by recovery_apply */
	uint64_t		 replayed_bounced;
	struct store_rcpt	*rows;
	size_t			 nrows, rowcap;
};

struct recovery *
recovery_new(const struct recovery_params *p)
{
	struct recovery *r = xcalloc(1, sizeof(*r));
	uint32_t i;

	MR_ASSERT(p->chunk_size > 0 && p->chunk_size % 64 == 0);
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
	/* The bit vectors of all chunks, built by each snapshot. */
	r->bits = xcalloc((size_t)(r->nchunks ? r->nchunks : 1) *
	    (r->chunk_size / 8), 1);
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
	free(r->rows);
	free(r->dir);
	free(r);
	*rp = NULL;
}

/* ---------------------------------------------------------------- */
/* Rebuilding after a crash                                         */
/* ---------------------------------------------------------------- */

static int
recovery_load_rcpt(void *arg, const struct store_rcpt *row)
{
	struct recovery *r = arg;
	uint16_t v;

	if (row->rcpt >= r->n)
		return 0;	/* stale row: the list was checked unchanged */
	v = atomic_load_explicit(&r->state[row->rcpt], memory_order_relaxed);
	if (v & RECOVERY_FINAL)
		return 0;
	v = (uint16_t)((row->attempts & RECOVERY_ATTEMPTS) |
	    (row->inflight ? RECOVERY_INFLIGHT : 0));
	atomic_store_explicit(&r->state[row->rcpt], v, memory_order_relaxed);
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
		atomic_store_explicit(&r->dirty[rcpt / r->chunk_size], 1,
		    memory_order_relaxed);
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
	code = r->store->ops->chunks_load(r->store, r->campaign, bits,
	    nbytes);
	if (code != 0) {
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
	code = r->store->ops->rcpt_load(r->store, r->campaign,
	    recovery_load_rcpt, r);
	if (code == 0)
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
	atomic_store_explicit(&r->dirty[rcpt / r->chunk_size], 1,
	    memory_order_relaxed);
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
	journal_append(j, rcpt, JOURNAL_INTENT, attempt);
}

void
recovery_final(struct recovery *r, struct journal *j, uint32_t rcpt,
    bool bounced, uint16_t attempts)
{
	atomic_store_explicit(&r->state[rcpt],
	    (uint16_t)(recovery_clamp(attempts) | RECOVERY_FINAL |
	    (bounced ? RECOVERY_BOUNCED : 0)), memory_order_relaxed);
	atomic_store_explicit(&r->dirty[rcpt / r->chunk_size], 1,
	    memory_order_relaxed);
	journal_append(j, rcpt, bounced ? JOURNAL_BOUNCED : JOURNAL_DELIVERED,
	    attempts);
}

void
recovery_defer(struct recovery *r, struct journal *j, uint32_t rcpt,
    uint16_t attempts)
{
	atomic_store_explicit(&r->state[rcpt], recovery_clamp(attempts),
	    memory_order_relaxed);
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

static void
recovery_row(struct recovery *r, uint32_t rcpt, uint16_t v)
{
	if (r->nrows == r->rowcap) {
		r->rowcap = r->rowcap ? r->rowcap * 2 : 1024;
		r->rows = xreallocarray(r->rows, r->rowcap, sizeof(*r->rows));
	}
	r->rows[r->nrows].rcpt = rcpt;
	r->rows[r->nrows].attempts = v & RECOVERY_ATTEMPTS;
	r->rows[r->nrows].inflight = (v & RECOVERY_INFLIGHT) != 0;
	r->nrows++;
}

int
recovery_snapshot(struct recovery *r, recovery_snapshot_cb *cb, void *arg,
    struct mr_buf *err)
{
	struct store *s = r->store;
	struct store_mark marks[RECOVERY_WRITERS_MAX];
	struct journal_mark jm[RECOVERY_WRITERS_MAX];
	uint32_t i, c, k, ndone, nj;
	uint64_t delivered = 0, bounced = 0;
	uint8_t *dirty_now, *final_bits;
	uint16_t v;
	size_t nm = 0;
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
	final_bits = r->bits;
	memset(final_bits, 0, (size_t)r->nchunks * (r->chunk_size / 8));
	for (c = 0; c < r->nchunks; c++)
		dirty_now[c] = atomic_exchange_explicit(&r->dirty[c], 0,
		    memory_order_acq_rel);
	/* One scan: the sparse rows, and the counts, which thereby agree
	 * with the bit vectors written below (a recipient made final after
	 * the scan is in neither, and is replayed after a crash). */
	r->nrows = 0;
	for (k = 0; k < r->n; k++) {
		v = atomic_load_explicit(&r->state[k], memory_order_relaxed);
		if (v & RECOVERY_FINAL) {
			if (v & RECOVERY_BOUNCED)
				bounced++;
			else
				delivered++;
			final_bits[k / 8] |= (uint8_t)(1u << (k % 8));
		} else if (v & (RECOVERY_ATTEMPTS | RECOVERY_INFLIGHT)) {
			recovery_row(r, k, v);
		}
	}
	code = s->ops->begin(s);
	for (c = 0; code == 0 && c < r->nchunks; c++) {
		const uint8_t *cb8 = final_bits + (size_t)c *
		    (r->chunk_size / 8);

		if (!dirty_now[c])
			continue;
		ndone = 0;
		for (k = 0; k < r->chunk_size / 8; k++)
			ndone += (uint32_t)__builtin_popcount(cb8[k]);
		code = s->ops->chunk_save(s, r->campaign, c, cb8,
		    r->chunk_size / 8, ndone);
	}
	if (code == 0)
		code = s->ops->rcpt_replace(s, r->campaign, r->rows, r->nrows);
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
	return journal_disk_bytes(r->dir, r->campaign) +
	    (uint64_t)r->nchunks * (r->chunk_size / 8) +
	    (uint64_t)r->nrows * 8;
}
