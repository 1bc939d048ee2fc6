/*
 * mr_utf8.c - UTF-8 validation by the table of well-formed byte sequences
 * in RFC 3629 section 4, and an ASCII test.  Both skip runs of ASCII eight
 * bytes at a time, since they run on every field of large recipient lists;
 * a multi-byte sequence is then checked byte by byte against the ranges
 * allowed for its lead byte, which rules out overlong forms, surrogates and
 * code points above U+10FFFF without decoding them.
 */
#include <stdint.h>
#include <string.h>

#include "mr_utf8.h"

#define MR_UTF8_HIGH	UINT64_C(0x8080808080808080)

static size_t mr_utf8_ascii_run(const unsigned char *s, size_t n);

/*
 * mr_utf8_ascii_run - the length of the run of ASCII bytes at s[0..n):
 * whole 8-byte words first (memcpy keeps unaligned loads well defined),
 * then byte by byte.
 */
static size_t
mr_utf8_ascii_run(const unsigned char *s, size_t n)
{
	uint64_t w;
	size_t i = 0;

	while (n - i >= 8) {
		memcpy(&w, s + i, sizeof(w));
		if (w & MR_UTF8_HIGH)
			break;
		i += 8;
	}
	while (i < n && s[i] < 0x80)
		i++;
	return i;
}

bool
mr_utf8_valid(const char *p, size_t n, size_t *bad_r)
{
	const unsigned char *s = (const unsigned char *)p;
	unsigned char c, lo, hi;
	size_t i = 0, need, k;

	for (;;) {
		i += mr_utf8_ascii_run(s + i, n - i);
		if (i == n)
			return true;
		/*
		 * s[i] is a lead byte.  lo..hi is the range of the second
		 * byte (RFC 3629 section 4); later bytes are 80..BF.
		 */
		c = s[i];
		lo = 0x80;
		hi = 0xBF;
		if (c >= 0xC2 && c <= 0xDF)
			need = 1;
		else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			if (c == 0xE0)
				lo = 0xA0;	/* overlong below U+0800 */
			else if (c == 0xED)
				hi = 0x9F;	/* surrogates D800..DFFF */
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			if (c == 0xF0)
				lo = 0x90;	/* overlong below U+10000 */
			else if (c == 0xF4)
				hi = 0x8F;	/* above U+10FFFF */
		} else
			goto bad;	/* 80..C1 (stray or overlong), F5..FF */
		if (n - i - 1 < need)
			goto bad;	/* truncated at the end of input */
		if (s[i + 1] < lo || s[i + 1] > hi)
			goto bad;
		for (k = 2; k <= need; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				goto bad;
		i += need + 1;
	}
bad:
	if (bad_r != NULL)
		*bad_r = i;
	return false;
}

bool
mr_is_ascii(const char *p, size_t n)
{
	return mr_utf8_ascii_run((const unsigned char *)p, n) == n;
}
