/*
 * test_visits.c - the encoding of a chunk's visit state: each of the
 * three forms chosen when it is the smallest, round trips, and every
 * malformed blob refused.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "recovery/visits.h"

#define N	4096

static uint16_t v[N], back[N];
static uint8_t out[1 + 2 * N];

static size_t
roundtrip(uint32_t n)
{
	size_t len = visits_encode(v, n, out);

	assert_true(len <= visits_bound(n));
	if (len > 0) {
		memset(back, 0xee, sizeof(back));
		assert_int_equal(visits_decode(out, len, back, n), 0);
		assert_memory_equal(back, v, n * sizeof(*v));
	}
	return len;
}

static void
test_empty(void **state)
{
	(void)state;
	memset(v, 0, sizeof(v));
	assert_int_equal(visits_encode(v, N, out), 0);
	assert_int_equal(visits_encode(v, 0, out), 0);
}

static void
test_sparse(void **state)
{
	(void)state;
	memset(v, 0, sizeof(v));
	v[0] = 1;
	v[17] = 3 | VISITS_INFLIGHT;
	v[N - 1] = 1000;	/* large counts cost nothing extra here */
	assert_int_equal(roundtrip(N), 1 + 3 * 4);
	assert_int_equal(out[0], VISITS_SPARSE);
	/* Offsets and values little-endian. */
	assert_int_equal(out[5], 17);
	assert_int_equal(out[6], 0);
	assert_int_equal(out[7], 3);
	assert_int_equal(out[8], 0x80);
}

static void
test_dense8(void **state)
{
	uint32_t i;

	(void)state;
	for (i = 0; i < N; i++)
		v[i] = (uint16_t)(i % 3 == 0 ? 0 : (i % 127) |
		    (i % 5 == 0 ? VISITS_INFLIGHT : 0));
	v[1] = VISITS_INFLIGHT;		/* in flight, no attempt yet */
	v[2] = 127;
	assert_int_equal(roundtrip(N), 1 + N);
	assert_int_equal(out[0], VISITS_DENSE8);
	/* A quarter set: sparse would be exactly as large; a bit more
	 * and the dense form wins. */
	memset(v, 0, sizeof(v));
	for (i = 0; i < N / 4; i++)
		v[i * 4] = 2;
	assert_int_equal(roundtrip(N), 1 + N);
	assert_int_equal(out[0], VISITS_SPARSE);
	v[1] = 2;
	assert_int_equal(roundtrip(N), 1 + N);
	assert_int_equal(out[0], VISITS_DENSE8);
}

static void
test_dense16(void **state)
{
	uint32_t i;

	(void)state;
	for (i = 0; i < N; i++)
		v[i] = (uint16_t)(i + 1);	/* counts past 127 */
	v[9] |= VISITS_INFLIGHT;
	assert_int_equal(roundtrip(N), 1 + 2 * N);
	assert_int_equal(out[0], VISITS_DENSE16);
	/* A short last chunk, whose counts (1 to 100) fit a byte. */
	assert_int_equal(roundtrip(100), 1 + 100);
	assert_int_equal(out[0], VISITS_DENSE8);
}

static void
test_malformed(void **state)
{
	static const uint8_t bad_tag[] = { 9, 0, 0 },
	    sparse_torn[] = { VISITS_SPARSE, 1, 0, 1 },
	    sparse_none[] = { VISITS_SPARSE },
	    sparse_order[] = { VISITS_SPARSE, 5, 0, 1, 0, 5, 0, 1, 0 },
	    sparse_past[] = { VISITS_SPARSE, 0x10, 0, 1, 0 },
	    sparse_zero[] = { VISITS_SPARSE, 1, 0, 0, 0 },
	    dense8_short[] = { VISITS_DENSE8, 1, 2, 3 },
	    dense16_long[] = { VISITS_DENSE16, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0,
		6, 0, 7, 0, 8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0, 0 };
	static const struct {
		const uint8_t	*blob;
		size_t		 len;
	} bad[] = {
		{ bad_tag, 0 },
		{ bad_tag, sizeof(bad_tag) },
		{ sparse_torn, sizeof(sparse_torn) },
		{ sparse_none, sizeof(sparse_none) },
		{ sparse_order, sizeof(sparse_order) },
		{ sparse_past, sizeof(sparse_past) },
		{ sparse_zero, sizeof(sparse_zero) },
		{ dense8_short, sizeof(dense8_short) },
		{ dense16_long, sizeof(dense16_long) },
	};
	uint16_t w[32];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(visits_decode(bad[i].blob, bad[i].len, w, 16),
		    -EINVAL);
	/* The same bytes are right for another chunk length. */
	assert_int_equal(visits_decode(dense8_short, sizeof(dense8_short), w,
	    3), 0);
	assert_int_equal(w[2], 3);
	assert_int_equal(visits_decode(sparse_past, sizeof(sparse_past), w,
	    17), 0);
	assert_int_equal(w[16], 1);
	assert_int_equal(visits_decode(dense8_short, sizeof(dense8_short), w,
	    VISITS_CHUNK_MAX + 1), -EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_sparse),
		cmocka_unit_test(test_dense8),
		cmocka_unit_test(test_dense16),
		cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
