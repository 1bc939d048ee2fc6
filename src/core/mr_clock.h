/*
 * mr_clock.h - time sources and the RFC 5322 date format.
 *
 * mr_clock_ms() is monotonic (timers, rates, ages); mr_wall_ms() is the
 * wall clock (records shown to people).  All functions are thread-safe.
 */
#ifndef MR_CLOCK_H
#define MR_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

uint64_t mr_clock_ms(void);
uint64_t mr_wall_ms(void);
/*
 * mr_rfc5322_date - "Sun, 22 Nov 2026 10:00:00 +0000" for t (UTC) into
 * buf; returns the length, or 0 when size is too small (32 suffices).
 */
size_t mr_rfc5322_date(time_t t, char *buf, size_t size);
/*
 * mr_iso8601 - t (seconds) as "2026-11-22T10:00:00Z" into buf (21 bytes
 * suffice), or "-" when t is 0 (not set); returns buf.
 */
const char *mr_iso8601(int64_t t, char *buf, size_t size);
/* mr_iso8601_ms - "2026-11-22T10:00:00.123Z"; 0 when size < 25. */
size_t mr_iso8601_ms(uint64_t wall_ms, char *buf, size_t size);

#endif
