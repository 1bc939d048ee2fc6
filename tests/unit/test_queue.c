/*
 * test_queue.c - domain queues (FIFO order, splitting, batching) and the
 * retry heap (order by due time).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "queue/queue.h"

static void
test_fifo_across_segments(void **state)
{
	struct dqueue q;
	struct queue_entry e;
	uint32_t i;

	(void)state;
	dqueue_init(&q, 100);
	for (i = 0; i < 1000; i++) {
		memset(&e, 0, sizeof(e));
		e.rcpt = i;
		dqueue_push(&q, &e);
	}
	assert_int_equal(q.len, 1000);
	assert_int_equal(q.nsegs, 10);	/* split past max_len */
	for (i = 0; i < 500; i++) {
		assert_true(dqueue_pop(&q, &e));
		assert_int_equal(e.rcpt, i);
	}
	for (i = 1000; i < 1300; i++) {
		e.rcpt = i;
		dqueue_push(&q, &e);
	}
	for (i = 500; i < 1300; i++) {
		assert_true(dqueue_pop(&q, &e));
		assert_int_equal(e.rcpt, i);
	}
	assert_false(dqueue_pop(&q, &e));
	assert_int_equal(q.nsegs, 0);
	assert_int_equal(dqueue_bytes(&q), 0);
	dqueue_release(&q);
}

static void
test_ring_wraps(void **state)
{
	struct dqueue q;
	struct queue_entry e;
	uint32_t i, next = 0, out = 0;

	(void)state;
	dqueue_init(&q, 1 << 20);
	/* Interleave so that the ring wraps before it grows. */
	for (i = 0; i < 10000; i++) {
		e.rcpt = next++;
		dqueue_push(&q, &e);
		if (i % 3 == 0) {
			assert_true(dqueue_pop(&q, &e));
			assert_int_equal(e.rcpt, out++);
		}
	}
	while (dqueue_pop(&q, &e))
		assert_int_equal(e.rcpt, out++);
	assert_int_equal(out, next);
	dqueue_release(&q);
}

static bool
match_even(void *arg, const struct queue_entry *head,
    const struct queue_entry *e)
{
	(void)arg;
	return (head->rcpt % 2) == (e->rcpt % 2);
}

static void
test_batch(void **state)
{
	struct dqueue q;
	struct queue_entry e, out[8];
	uint32_t i, seen = 0;
	size_t n, k;

	(void)state;
	dqueue_init(&q, 1000);
	for (i = 0; i < 20; i++) {
		e.rcpt = i;
		dqueue_push(&q, &e);
	}
	n = dqueue_pop_batch(&q, match_even, NULL, 4, 256, out);
	assert_int_equal(n, 4);
	for (k = 0; k < n; k++)
		assert_int_equal(out[k].rcpt % 2, 0);
	assert_int_equal(q.len, 16);
	/* The window bounds how far a batch looks: the head and at most
	 * one more. */
	n = dqueue_pop_batch(&q, match_even, NULL, 8, 1, out);
	assert_true(n >= 1 && n <= 2);
	/* Nothing is lost or duplicated. */
	seen = 4 + (uint32_t)n;
	while ((n = dqueue_pop_batch(&q, match_even, NULL, 8, 256, out)) > 0)
		seen += (uint32_t)n;
	assert_int_equal(seen, 20);
	dqueue_release(&q);
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void
test_heap_order(void **state)
{
	struct rheap h;
	struct queue_entry e;
	uint32_t dues[5000], i;

	(void)state;
	rheap_init(&h);
	srand(7);
	for (i = 0; i < 5000; i++) {
		dues[i] = (uint32_t)rand() % 100000;
		memset(&e, 0, sizeof(e));
		e.due = dues[i];
		e.rcpt = i;
		rheap_push(&h, &e);
	}
	qsort(dues, 5000, sizeof(dues[0]), cmp_u32);
	for (i = 0; i < 5000; i++) {
		assert_int_equal(rheap_peek(&h)->due, dues[i]);
		rheap_pop(&h, &e);
		assert_int_equal(e.due, dues[i]);
	}
	assert_null(rheap_peek(&h));
	rheap_release(&h);
}

/* Due times that wrap past 2^32 ms (a relay loop 49.7 days up) still
 * come out in time order. */
static void
test_heap_across_wrap(void **state)
{
	struct rheap h;
	struct queue_entry e;
	uint32_t base = UINT32_MAX - 50000, i;
	int64_t last = -1, t;

	(void)state;
	rheap_init(&h);
	srand(11);
	for (i = 0; i < 2000; i++) {
		memset(&e, 0, sizeof(e));
		e.rcpt = (uint32_t)(rand() % 100000);	/* ms after base */
		e.due = base + e.rcpt;			/* wraps past 50000 */
		rheap_push(&h, &e);
	}
	for (i = 0; i < 2000; i++) {
		rheap_pop(&h, &e);
		t = e.rcpt;
		assert_true(t >= last);
		last = t;
	}
	assert_true(queue_due_diff(base + 60000, base) == 60000);
	assert_true(queue_due_diff(base, base + 60000) == -60000);
	rheap_release(&h);
}

static void
test_entry_is_compact(void **state)
{
	(void)state;
	assert_int_equal(sizeof(struct queue_entry), 16);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_across_segments),
		cmocka_unit_test(test_ring_wraps),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_heap_order),
		cmocka_unit_test(test_heap_across_wrap),
		cmocka_unit_test(test_entry_is_compact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
