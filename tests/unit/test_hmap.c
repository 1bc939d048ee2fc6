/*
 * test_hmap.c - the compact hash index: insert, find, duplicates, growth,
 * and equality decided by the caller's keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/mr_hmap.h"

#define N 200000

static char keys[N][16];

static bool
eq(void *ctx, uint32_t value, const void *key, size_t len)
{
	(void)ctx;
	return strlen(keys[value]) == len && memcmp(keys[value], key, len) == 0;
}

/*
 * Delete every third key, then every key: the others stay findable after
 * each removal (the backward shift never strands an entry behind a hole,
 * including across the table's wrap-around), and a deleted key can be
 * inserted again.
 */
static void
test_delete(void **state)
{
	struct mr_hmap *m = mr_hmap_new(eq, NULL);
	uint32_t i, j, n = 5000;
	size_t len;

	(void)state;
	for (i = 0; i < n; i++) {
		snprintf(keys[i], sizeof(keys[i]), "d%u", i);
		len = strlen(keys[i]);
		mr_hmap_put(m, mr_hash(keys[i], len), keys[i], len, i);
	}
	for (i = 0; i < n; i += 3) {
		len = strlen(keys[i]);
		assert_int_equal(mr_hmap_del(m, mr_hash(keys[i], len), keys[i],
		    len), i);
		assert_int_equal(mr_hmap_del(m, mr_hash(keys[i], len), keys[i],
		    len), MR_HMAP_NONE);
	}
	assert_int_equal(mr_hmap_count(m), n - (n + 2) / 3);
	for (i = 0; i < n; i++) {
		len = strlen(keys[i]);
		assert_int_equal(mr_hmap_find(m, mr_hash(keys[i], len),
		    keys[i], len), i % 3 == 0 ? MR_HMAP_NONE : i);
	}
	for (i = 0; i < n; i += 3) {
		len = strlen(keys[i]);
		assert_int_equal(mr_hmap_put(m, mr_hash(keys[i], len), keys[i],
		    len, i), MR_HMAP_NONE);
	}
	for (i = 0; i < n; i++) {
		len = strlen(keys[i]);
		assert_int_equal(mr_hmap_del(m, mr_hash(keys[i], len), keys[i],
		    len), i);
		for (j = i + 1; j < n; j += 7) {
			len = strlen(keys[j]);
			assert_int_equal(mr_hmap_find(m, mr_hash(keys[j], len),
			    keys[j], len), j);
		}
	}
	assert_int_equal(mr_hmap_count(m), 0);
	mr_hmap_free(&m);
}

static void
test_insert_find(void **state)
{
	struct mr_hmap *m = mr_hmap_new(eq, NULL);
	uint32_t i;
	size_t len;

	(void)state;
	for (i = 0; i < N; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%u", i);
		len = strlen(keys[i]);
		assert_int_equal(mr_hmap_put(m, mr_hash(keys[i], len), keys[i],
		    len, i), MR_HMAP_NONE);
	}
	assert_int_equal(mr_hmap_count(m), N);
	/* At most 3/4 full, 8 bytes a slot. */
	assert_true(mr_hmap_bytes(m) <= (size_t)N * 8 * 8 / 3);
	for (i = 0; i < N; i++) {
		len = strlen(keys[i]);
		assert_int_equal(mr_hmap_find(m, mr_hash(keys[i], len),
		    keys[i], len), i);
		/* A second insert returns the first value, stores nothing. */
		assert_int_equal(mr_hmap_put(m, mr_hash(keys[i], len),
		    keys[i], len, 7), i);
	}
	assert_int_equal(mr_hmap_count(m), N);
	assert_int_equal(mr_hmap_find(m, mr_hash("nope", 4), "nope", 4),
	    MR_HMAP_NONE);
	mr_hmap_free(&m);
	assert_null(m);
	mr_hmap_free(&m);
}

static void
test_same_hash_different_keys(void **state)
{
	struct mr_hmap *m = mr_hmap_new(eq, NULL);

	(void)state;
	/* Forced collisions: equality must decide. */
	snprintf(keys[0], sizeof(keys[0]), "alpha");
	snprintf(keys[1], sizeof(keys[1]), "beta");
	assert_int_equal(mr_hmap_put(m, 42, "alpha", 5, 0), MR_HMAP_NONE);
	assert_int_equal(mr_hmap_put(m, 42, "beta", 4, 1), MR_HMAP_NONE);
	assert_int_equal(mr_hmap_find(m, 42, "alpha", 5), 0);
	assert_int_equal(mr_hmap_find(m, 42, "beta", 4), 1);
	mr_hmap_free(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_insert_find),
		cmocka_unit_test(test_delete),
		cmocka_unit_test(test_same_hash_different_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
