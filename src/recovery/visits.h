/*
 * visits.h - the visit state of one list chunk, as a snapshot keeps it
 * in the store (SPEC D10): for each recipient of the chunk that is not
 * final, its attempt count and whether it was in flight.
 *
 * A value per recipient: attempts | VISITS_INFLIGHT, 0 for nothing to
 * keep (never tried, or final).  The encoding is the smallest of three
 * forms, named by its first byte:
 *   VISITS_SPARSE   (offset, value) pairs, 16 bits each, little-endian,
 *                   offsets rising: 4 bytes a recipient with a value;
 *   VISITS_DENSE8   one byte a recipient, attempts | 0x80 when in flight
 *                   (only when every attempt count is below 128);
 *   VISITS_DENSE16  two bytes a recipient, the value, little-endian.
 * So a chunk's state never takes more than a byte a recipient (two when
 * counts pass 127), and nothing when no recipient of it has one.
 *
 * Pure functions, no allocation; chunks of at most VISITS_CHUNK_MAX
 * recipients (the sparse offsets are 16 bits).
 */
#ifndef MR_VISITS_H
#define MR_VISITS_H

#include <stddef.h>
#include <stdint.h>

#define VISITS_INFLIGHT		0x8000u
#define VISITS_ATTEMPTS		0x7fffu
#define VISITS_CHUNK_MAX	65536u

enum visits_form {
	VISITS_SPARSE = 1,
	VISITS_DENSE8 = 2,
	VISITS_DENSE16 = 3,
};

/* visits_bound - the most bytes visits_encode() writes for n values. */
size_t visits_bound(uint32_t n);

/*
 * visits_encode - v[0..n) into out (visits_bound(n) bytes).  Returns the
 * length; 0 when every value is 0 (nothing to keep).
 */
size_t visits_encode(const uint16_t *v, uint32_t n, uint8_t *out);

/*
 * visits_decode - the n values a blob of len bytes encodes, into v
 * (every other value 0).  0, or -EINVAL when the blob is not one that
 * visits_encode() makes for n values (v is then undefined).
 */
int visits_decode(const uint8_t *blob, size_t len, uint16_t *v, uint32_t n);

#endif
