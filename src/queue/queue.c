/*
 * queue.c - ring-buffer segments for domain queues, and a binary min-heap
 * for deferred entries.
 */
#include <stdlib.h>
#include <string.h>

#include "core/mr_log.h"
#include "core/xalloc.h"
#include "queue/queue.h"

#define QUEUE_SEG_MIN	16

struct queue_seg {
	struct queue_seg	*next;
	uint32_t		 head;	/* index of the first entry */
	uint32_t		 len;
	uint32_t		 cap;	/* a power of two */
	struct queue_entry	 e[];
};

static struct queue_seg *
queue_seg_new(uint32_t cap)
{
	struct queue_seg *s;

	s = xmalloc(sizeof(*s) + (size_t)cap * sizeof(s->e[0]));
	s->next = NULL;
	s->head = s->len = 0;
	s->cap = cap;
	return s;
}

/* queue_seg_grow - double a full segment's ring, unrolling it. */
static struct queue_seg *
queue_seg_grow(struct queue_seg *s)
{
	struct queue_seg *g = queue_seg_new(s->cap * 2);
	uint32_t first = s->cap - s->head;

	if (first > s->len)
		first = s->len;
	memcpy(g->e, s->e + s->head, first * sizeof(s->e[0]));
	memcpy(g->e + first, s->e, (s->len - first) * sizeof(s->e[0]));
	g->len = s->len;
	g->next = s->next;
	free(s);
	return g;
}

void
dqueue_init(struct dqueue *q, uint32_t max_len)
{
	memset(q, 0, sizeof(*q));
	q->max_len = max_len < QUEUE_SEG_MIN ? QUEUE_SEG_MIN : max_len;
}

void
dqueue_release(struct dqueue *q)
{
	struct queue_seg *s, *next;

	for (s = q->first; s != NULL; s = next) {
		next = s->next;
		free(s);
	}
	q->first = q->last = NULL;
	q->len = 0;
	q->nsegs = 0;
}

void
dqueue_push(struct dqueue *q, const struct queue_entry *e)
{
	struct queue_seg *s = q->last, *g;

	if (s == NULL || s->len >= q->max_len) {
		g = queue_seg_new(QUEUE_SEG_MIN);
		if (s)
			s->next = g;
		else
			q->first = g;
		q->last = s = g;
		q->nsegs++;
	} else if (s->len == s->cap) {
		g = queue_seg_grow(s);
		/* Relink: find who pointed at s. */
		if (q->first == s) {
			q->first = g;
		} else {
			struct queue_seg *p = q->first;

			while (p->next != s)
				p = p->next;
			p->next = g;
		}
		q->last = s = g;
	}
	s->e[(s->head + s->len) & (s->cap - 1)] = *e;
	s->len++;
	q->len++;
}

const struct queue_entry *
dqueue_peek(const struct dqueue *q)
{
	const struct queue_seg *s = q->first;

	return s == NULL ? NULL : &s->e[s->head];
}

bool
dqueue_pop(struct dqueue *q, struct queue_entry *e_r)
{
	struct queue_seg *s = q->first;

	if (s == NULL)
		return false;
	*e_r = s->e[s->head];
	s->head = (s->head + 1) & (s->cap - 1);
	s->len--;
	q->len--;
	if (s->len == 0) {
		/* A drained queue is extinguished (seed [0041]). */
		q->first = s->next;
		if (q->last == s)
			q->last = NULL;
		free(s);
		q->nsegs--;
	}
	return true;
}

size_t
dqueue_pop_batch(struct dqueue *q, queue_match_cb *match, void *arg,
    size_t max, size_t window, struct queue_entry *out)
{
	struct queue_seg *s = q->first;
	struct queue_entry tmp;
	size_t n = 0, j;
	uint32_t mask, a, b;

	if (s == NULL || max == 0)
		return 0;
	mask = s->cap - 1;
	/* Move matching entries up behind the head, then pop them all. */
	for (j = 1, n = 1; j < s->len && j <= window && n < max; j++) {
		a = (s->head + (uint32_t)n) & mask;
		b = (s->head + (uint32_t)j) & mask;
		if (!match(arg, &s->e[s->head], &s->e[b]))
			continue;
		if (a != b) {
			tmp = s->e[a];
			s->e[a] = s->e[b];
			s->e[b] = tmp;
		}
		n++;
	}
	for (j = 0; j < n; j++)
		dqueue_pop(q, &out[j]);
	return n;
}

size_t
dqueue_bytes(const struct dqueue *q)
{
	const struct queue_seg *s;
	size_t b = 0;

	for (s = q->first; s != NULL; s = s->next)
		b += sizeof(*s) + (size_t)s->cap * sizeof(s->e[0]);
	return b;
}

void
rheap_init(struct rheap *h)
{
	memset(h, 0, sizeof(*h));
}

void
rheap_release(struct rheap *h)
{
	free(h->v);
	memset(h, 0, sizeof(*h));
}

void
rheap_push(struct rheap *h, const struct queue_entry *e)
{
	size_t i, p;

	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 64;
		h->v = xreallocarray(h->v, h->cap, sizeof(*h->v));
	}
	i = h->n++;
	while (i > 0) {
		p = (i - 1) / 2;
		if (queue_due_diff(h->v[p].due, e->due) <= 0)
			break;
		h->v[i] = h->v[p];
		i = p;
	}
	h->v[i] = *e;
}

const struct queue_entry *
rheap_peek(const struct rheap *h)
{
	return h->n ? &h->v[0] : NULL;
}

void
rheap_pop(struct rheap *h, struct queue_entry *e_r)
{
	struct queue_entry last;
	size_t i = 0, c;

	MR_ASSERT(h->n > 0);
	*e_r = h->v[0];
	last = h->v[--h->n];
	for (;;) {
		c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n &&
		    queue_due_diff(h->v[c + 1].due, h->v[c].due) < 0)
			c++;
		if (queue_due_diff(last.due, h->v[c].due) <= 0)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
	if (h->cap > 1024 && h->n < h->cap / 4) {
		h->cap /= 2;
		h->v = xreallocarray(h->v, h->cap, sizeof(*h->v));
	}
}

size_t
rheap_bytes(const struct rheap *h)
{
	return h->cap * sizeof(*h->v);
}
