/*
 * mr_utf8.h - UTF-8 validation (RFC 3629).
 *
 * Pure functions over (pointer, length); no allocation; thread-safe.
 */
#ifndef MR_UTF8_H
#define MR_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/*
 * mr_utf8_valid - true when p[0..n) is well-formed UTF-8: no overlong
 * forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no
 * truncated sequence.  NUL bytes are valid UTF-8 but callers that need text
 * check for them separately.  On false, *bad_r (if not NULL) is the offset
 * of the first byte of the offending sequence.
 */
bool mr_utf8_valid(const char *p, size_t n, size_t *bad_r);

/* mr_is_ascii - true when every byte of p[0..n) is below 0x80. */
bool mr_is_ascii(const char *p, size_t n);

#endif
