/*
 * fuzz_addr.c - libFuzzer target for smtp_addr_check(), and for the UTF-8
 * checks it relies on.  An accepted address must meet the limits of
 * RFC 5321 (lengths, an "@" at *at_r, ASCII only); a refused one must come
 * with a non-empty reason.  mr_utf8_valid() and mr_is_ascii() must agree
 * where their contracts overlap.
 */
#include <stdint.h>
#include <string.h>

#include "core/mr_log.h"
#include "core/mr_utf8.h"
#include "smtp/addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *err;
	size_t at = (size_t)-1, bad = (size_t)-1;
	bool ascii, utf8;

	ascii = mr_is_ascii(p, size);
	utf8 = mr_utf8_valid(p, size, &bad);
	MR_ASSERT(!ascii || utf8);
	MR_ASSERT(utf8 || bad < size);
	if (!utf8)
		MR_ASSERT(mr_utf8_valid(p, bad, NULL));

	err = smtp_addr_check(p, size, &at);
	if (err != NULL) {
		MR_ASSERT(strlen(err) > 0);
		return 0;
	}
	MR_ASSERT(ascii);
	MR_ASSERT(size <= 254);
	MR_ASSERT(at >= 1 && at <= 64 && at + 1 < size);
	MR_ASSERT(p[at] == '@');
	MR_ASSERT(memchr(p + at + 1, '@', size - at - 1) == NULL);
	MR_ASSERT(memchr(p, '\0', size) == NULL);
	MR_ASSERT(p[size - 1] != '.');
	return 0;
}
