/*
 * visits.c - the encoding of a chunk's visit state (see visits.h).
 */
#include <errno.h>
#include <string.h>

#include "core/mr_log.h"
#include "recovery/visits.h"

size_t
visits_bound(uint32_t n)
{
	return 1 + 2 * (size_t)n;
}

static void
visits_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v & 0xff);
	p[1] = (uint8_t)(v >> 8);
}

static uint16_t
visits_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

size_t
visits_encode(const uint16_t *v, uint32_t n, uint8_t *out)
{
	size_t set = 0, sparse, dense;
	uint16_t amax = 0;
	uint32_t i;
	uint8_t *p = out + 1;

	MR_ASSERT(n <= VISITS_CHUNK_MAX);
	for (i = 0; i < n; i++) {
		if (v[i] == 0)
			continue;
		set++;
		if ((v[i] & VISITS_ATTEMPTS) > amax)
			amax = v[i] & VISITS_ATTEMPTS;
	}
	if (set == 0)
		return 0;
	sparse = 4 * set;
	dense = amax < 0x80 ? n : 2 * (size_t)n;
	if (sparse <= dense) {
		out[0] = VISITS_SPARSE;
		for (i = 0; i < n; i++) {
			if (v[i] == 0)
				continue;
			visits_put16(p, (uint16_t)i);
			visits_put16(p + 2, v[i]);
			p += 4;
		}
	} else if (amax < 0x80) {
		out[0] = VISITS_DENSE8;
		for (i = 0; i < n; i++)
			*p++ = (uint8_t)((v[i] & 0x7f) |
			    (v[i] & VISITS_INFLIGHT ? 0x80 : 0));
	} else {
		out[0] = VISITS_DENSE16;
		for (i = 0; i < n; i++, p += 2)
			visits_put16(p, v[i]);
	}
	return (size_t)(p - out);
}

int
visits_decode(const uint8_t *blob, size_t len, uint16_t *v, uint32_t n)
{
	const uint8_t *p = blob + 1;
	uint32_t i, off;
	int64_t last = -1;

	if (len < 1 || n > VISITS_CHUNK_MAX)
		return -EINVAL;
	memset(v, 0, (size_t)n * sizeof(*v));
	switch (blob[0]) {
	case VISITS_SPARSE:
		if ((len - 1) % 4 != 0 || len == 1)
			return -EINVAL;
		for (; p < blob + len; p += 4) {
			off = visits_get16(p);
			if (off >= n || (int64_t)off <= last)
				return -EINVAL;
			if ((v[off] = visits_get16(p + 2)) == 0)
				return -EINVAL;
			last = off;
		}
		return 0;
	case VISITS_DENSE8:
		if (len - 1 != n)
			return -EINVAL;
		for (i = 0; i < n; i++)
			v[i] = (uint16_t)((p[i] & 0x7f) |
			    (p[i] & 0x80 ? VISITS_INFLIGHT : 0));
		return 0;
	case VISITS_DENSE16:
		if (len - 1 != 2 * (size_t)n)
			return -EINVAL;
		for (i = 0; i < n; i++)
			v[i] = visits_get16(p + 2 * i);
		return 0;
	default:
		return -EINVAL;
	}
}
