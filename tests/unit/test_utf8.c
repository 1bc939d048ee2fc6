/*
 * test_utf8.c - mr_utf8_valid() and mr_is_ascii(): one table row per
 * RFC 3629 rule and per class of bad sequence, then every 1-, 2- and 3-byte
 * sequence (and a large sample of 4-byte ones) against a reference decoder
 * written the other way round (decode, then judge the code point).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/mr_utf8.h"

struct test_utf8_row {
	const char	*label;
	const char	*input;
	size_t		 len;		/* 0: strlen(input) */
	bool		 valid;
	size_t		 bad;		/* offset when !valid */
};

static const struct test_utf8_row test_utf8_rows[] = {
	/* Well-formed, with the boundaries of each length. */
	{ "empty", "", 0, true, 0 },
	{ "ASCII", "hello, world", 0, true, 0 },
	{ "NUL is valid UTF-8", "a\0b", 3, true, 0 },
	{ "U+007F last 1-byte", "\x7F", 0, true, 0 },
	{ "U+0080 first 2-byte", "\xC2\x80", 0, true, 0 },
	{ "U+07FF last 2-byte", "\xDF\xBF", 0, true, 0 },
	{ "U+0800 first 3-byte", "\xE0\xA0\x80", 0, true, 0 },
	{ "U+D7FF below surrogates", "\xED\x9F\xBF", 0, true, 0 },
	{ "U+E000 above surrogates", "\xEE\x80\x80", 0, true, 0 },
	{ "U+FFFD replacement char", "\xEF\xBF\xBD", 0, true, 0 },
	{ "U+FFFF last 3-byte", "\xEF\xBF\xBF", 0, true, 0 },
	{ "U+10000 first 4-byte", "\xF0\x90\x80\x80", 0, true, 0 },
	{ "U+10FFFF last code point", "\xF4\x8F\xBF\xBF", 0, true, 0 },
	{ "mixed lengths", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 ok",
	    0, true, 0 },
	{ "multi-byte across 8-byte words", "abcdefg\xC3\xA9hijklmn\xE2\x82"
	    "\xACopqrstu", 0, true, 0 },

	/* Above U+10FFFF. */
	{ "U+110000 first above range", "\xF4\x90\x80\x80", 0, false, 0 },
	{ "F4 BF BF BF", "\xF4\xBF\xBF\xBF", 0, false, 0 },
	{ "F5 lead byte", "\xF5\x80\x80\x80", 0, false, 0 },
	{ "F7 BF BF BF (U+1FFFFF)", "\xF7\xBF\xBF\xBF", 0, false, 0 },
	{ "5-byte form F8", "\xF8\x88\x80\x80\x80", 0, false, 0 },
	{ "6-byte form FC", "\xFC\x84\x80\x80\x80\x80", 0, false, 0 },
	{ "FE byte", "\xFE", 0, false, 0 },
	{ "FF byte", "\xFF", 0, false, 0 },

	/* Surrogates. */
	{ "U+D800 first surrogate", "\xED\xA0\x80", 0, false, 0 },
	{ "U+DBFF last high surrogate", "\xED\xAF\xBF", 0, false, 0 },
	{ "U+DC00 first low surrogate", "\xED\xB0\x80", 0, false, 0 },
	{ "U+DFFF last surrogate", "\xED\xBF\xBF", 0, false, 0 },
	{ "CESU-8 surrogate pair", "\xED\xA0\xBD\xED\xB2\xA9", 0, false,
	    0 },

	/* Overlong forms. */
	{ "overlong NUL C0 80", "\xC0\x80", 0, false, 0 },
	{ "overlong C1 BF (U+7F)", "\xC1\xBF", 0, false, 0 },
	{ "overlong '/' C0 AF", "x\xC0\xAF", 0, false, 1 },
	{ "overlong 3-byte E0 80 80", "\xE0\x80\x80", 0, false, 0 },
	{ "overlong 3-byte E0 9F BF (U+7FF)", "\xE0\x9F\xBF", 0, false, 0 },
	{ "overlong 4-byte F0 80 80 80", "\xF0\x80\x80\x80", 0, false, 0 },
	{ "overlong 4-byte F0 8F BF BF (U+FFFF)", "\xF0\x8F\xBF\xBF", 0,
	    false, 0 },

	/* Stray continuation bytes. */
	{ "lone 80", "\x80", 0, false, 0 },
	{ "lone BF", "\xBF", 0, false, 0 },
	{ "continuation after ASCII", "a\x80z", 0, false, 1 },
	{ "extra continuation", "\xC3\xA9\xA9", 0, false, 2 },

	/* Truncated sequences. */
	{ "2-byte missing 1", "\xC2", 0, false, 0 },
	{ "3-byte missing 1", "\xE0\xA0", 0, false, 0 },
	{ "3-byte missing 2", "\xE2", 0, false, 0 },
	{ "4-byte missing 1", "\xF0\x90\x80", 0, false, 0 },
	{ "4-byte missing 3", "\xF4", 0, false, 0 },
	{ "truncated after text", "abc\xE2\x82", 0, false, 3 },
	{ "truncated before NUL", "\xE2\x82\0", 3, false, 0 },

	/* A continuation byte that is not one. */
	{ "2-byte then ASCII", "\xC2\x41", 0, false, 0 },
	{ "3-byte bad 2nd", "\xE2\x28\xA1", 0, false, 0 },
	{ "3-byte bad 3rd", "\xE2\x82\x28", 0, false, 0 },
	{ "4-byte bad 2nd", "\xF0\x28\x8C\xBC", 0, false, 0 },
	{ "4-byte bad 3rd", "\xF0\x90\x28\xBC", 0, false, 0 },
	{ "4-byte bad 4th", "\xF0\x90\x8C\x28", 0, false, 0 },
	{ "lead instead of continuation", "\xC2\xC2\x80", 0, false, 0 },

	/* The offset is found after the 8-byte fast path. */
	{ "bad byte at 16", "abcdefghijklmnop\x80", 0, false, 16 },
	{ "bad byte at 7", "abcdefg\xFF", 0, false, 7 },
	{ "bad byte at 8", "abcdefgh\xFF", 0, false, 8 },
	{ "bad after multi-byte", "abcdefgh\xC3\xA9ijklmnopq\xFF", 0,
	    false, 19 },
};

struct test_ascii_row {
	const char	*label;
	const char	*input;
	size_t		 len;
	bool		 ascii;
};

static const struct test_ascii_row test_ascii_rows[] = {
	{ "empty", "", 0, true },
	{ "short", "abc", 3, true },
	{ "7F is ASCII", "\x7F", 1, true },
	{ "NUL is ASCII", "a\0b", 3, true },
	{ "80 is not", "\x80", 1, false },
	{ "FF is not", "\xFF", 1, false },
	{ "exactly 8", "abcdefgh", 8, true },
	{ "high bit in word", "abc\xC3\xA9" "fgh", 8, false },
	{ "high bit in tail", "abcdefgh\xE9", 9, false },
	{ "long ASCII", "the quick brown fox jumps over the lazy dog", 43,
	    true },
};

/*
 * test_utf8_ref - reference: decode by bit pattern, then refuse overlong,
 * surrogate and out-of-range code points.
 */
static bool
test_utf8_ref(const unsigned char *s, size_t n, size_t *bad_r)
{
	static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t i = 0, len, k;
	uint32_t cp;

	while (i < n) {
		if (s[i] < 0x80)
			len = 1, cp = s[i];
		else if ((s[i] & 0xE0) == 0xC0)
			len = 2, cp = s[i] & 0x1F;
		else if ((s[i] & 0xF0) == 0xE0)
			len = 3, cp = s[i] & 0x0F;
		else if ((s[i] & 0xF8) == 0xF0)
			len = 4, cp = s[i] & 0x07;
		else
			goto bad;
		if (n - i < len)
			goto bad;
		for (k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				goto bad;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		if (cp < min[len] || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			goto bad;
		i += len;
	}
	return true;
bad:
	*bad_r = i;
	return false;
}

static void
test_utf8_table(void **state)
{
	const struct test_utf8_row *r;
	size_t i, n, bad;
	bool got;

	(void)state;
	for (i = 0; i < sizeof(test_utf8_rows) / sizeof(*r); i++) {
		r = &test_utf8_rows[i];
		n = r->len ? r->len : strlen(r->input);
		bad = (size_t)-1;
		got = mr_utf8_valid(r->input, n, &bad);
		if (got != r->valid)
			fail_msg("%s: valid %d, want %d", r->label, got,
			    r->valid);
		if (!got && bad != r->bad)
			fail_msg("%s: bad offset %zu, want %zu", r->label,
			    bad, r->bad);
		if (got && bad != (size_t)-1)
			fail_msg("%s: bad_r written on success", r->label);
		/* bad_r may be NULL. */
		assert_true(mr_utf8_valid(r->input, n, NULL) == r->valid);
	}
}

/* Compare the implementation with the reference on one sequence. */
static void
test_utf8_compare(const unsigned char *s, size_t n)
{
	size_t bad = 0, rbad = 0;
	bool got, want;

	got = mr_utf8_valid((const char *)s, n, &bad);
	want = test_utf8_ref(s, n, &rbad);
	if (got != want || (!got && bad != rbad))
		fail_msg("%02X %02X %02X %02X (n=%zu): got %d@%zu, want "
		    "%d@%zu", s[0], n > 1 ? s[1] : 0, n > 2 ? s[2] : 0,
		    n > 3 ? s[3] : 0, n, got, bad, want, rbad);
}

static void
test_utf8_exhaustive(void **state)
{
	static const unsigned char edge[] = {
		0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0,
		0xC2, 0xE0, 0xF0, 0xFF,
	};
	unsigned char s[4];
	uint32_t v;
	size_t a, b;

	(void)state;
	for (v = 0; v < 0x1000000; v++) {
		s[0] = (unsigned char)(v >> 16);
		s[1] = (unsigned char)(v >> 8);
		s[2] = (unsigned char)v;
		if (v < 0x100)
			test_utf8_compare(s + 2, 1);
		if (v < 0x10000)
			test_utf8_compare(s + 1, 2);
		test_utf8_compare(s, 3);
	}
	for (v = 0xF00000; v < 0x1000000; v++) {
		s[0] = (unsigned char)(v >> 16);
		s[1] = (unsigned char)(v >> 8);
		s[2] = (unsigned char)v;
		for (a = 0; a < sizeof(edge); a++) {
			s[3] = edge[a];
			test_utf8_compare(s, 4);
		}
	}
	/* Every 4-byte lead with every second byte and edge tails. */
	for (v = 0xF0; v <= 0xFF; v++)
		for (a = 0; a < 256; a++)
			for (b = 0; b < sizeof(edge); b++) {
				s[0] = (unsigned char)v;
				s[1] = (unsigned char)a;
				s[2] = edge[b];
				s[3] = 0x80;
				test_utf8_compare(s, 4);
			}
}

static void
test_utf8_ascii_table(void **state)
{
	const struct test_ascii_row *r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(test_ascii_rows) / sizeof(*r); i++) {
		r = &test_ascii_rows[i];
		if (mr_is_ascii(r->input, r->len) != r->ascii)
			fail_msg("%s: want %d", r->label, r->ascii);
	}
}

/* One high byte at every position and alignment of a 40-byte buffer. */
static void
test_utf8_ascii_positions(void **state)
{
	char buf[48];
	size_t off, len, hi;

	(void)state;
	memset(buf, 'a', sizeof(buf));
	for (off = 0; off < 8; off++)
		for (len = 0; len <= 40; len++) {
			assert_true(mr_is_ascii(buf + off, len));
			assert_true(mr_utf8_valid(buf + off, len, NULL));
			for (hi = 0; hi < len; hi++) {
				buf[off + hi] = (char)0x80;
				assert_false(mr_is_ascii(buf + off, len));
				/* Outside the range it must not count. */
				assert_true(mr_is_ascii(buf + off, hi));
				buf[off + hi] = 'a';
			}
		}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_table),
		cmocka_unit_test(test_utf8_exhaustive),
		cmocka_unit_test(test_utf8_ascii_table),
		cmocka_unit_test(test_utf8_ascii_positions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
