/*
 * mr_hmap.c - open addressing with linear probing over 8-byte slots.
 *
 * A slot's bucket is derived from its stored 32-bit hash fragment alone
 * (Fibonacci hashing), so the table grows without asking the caller for
 * keys again.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "mr_hmap.h"
#include "mr_log.h"
#include "xalloc.h"

struct mr_hmap_slot {
	uint32_t	frag;
	uint32_t	value;	/* MR_HMAP_NONE when the slot is free */
};

struct mr_hmap {
	struct mr_hmap_slot	*slots;
	unsigned		 bits;
	size_t			 count;
	mr_hmap_eq_cb		*eq;
	void			*ctx;
};

static uint64_t mr_hash_seed;

/* A seed per process keeps a crafted list from choosing our collisions.
 * It is set before main() runs, so threads only ever read it. */
__attribute__((constructor)) static void
mr_hash_init(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	mr_hash_seed = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^
	    ((uint64_t)getpid() << 16) ^ 0x9e3779b97f4a7c15ull;
}

uint64_t
mr_hash(const void *p, size_t n)
{
	return XXH3_64bits_withSeed(p, n, mr_hash_seed);
}

static size_t
mr_hmap_bucket(uint32_t frag, unsigned bits)
{
	return (size_t)((frag * 2654435769u) >> (32 - bits));
}

static void
mr_hmap_alloc(struct mr_hmap *m, unsigned bits)
{
	size_t i, n = (size_t)1 << bits;

	m->slots = xreallocarray(NULL, n, sizeof(*m->slots));
	for (i = 0; i < n; i++)
		m->slots[i].value = MR_HMAP_NONE;
	m->bits = bits;
}

struct mr_hmap *
mr_hmap_new(mr_hmap_eq_cb *eq, void *ctx)
{
	struct mr_hmap *m = xcalloc(1, sizeof(*m));

	m->eq = eq;
	m->ctx = ctx;
	mr_hmap_alloc(m, 4);
	return m;
}

void
mr_hmap_free(struct mr_hmap **mp)
{
	if (*mp == NULL)
		return;
	free((*mp)->slots);
	free(*mp);
	*mp = NULL;
}

static void
mr_hmap_grow(struct mr_hmap *m)
{
	struct mr_hmap_slot *old = m->slots;
	size_t i, j, n = (size_t)1 << m->bits, mask;

	if (m->bits >= 31)
		mr_panic("mr_hmap: table full");
	mr_hmap_alloc(m, m->bits + 1);
	mask = ((size_t)1 << m->bits) - 1;
	for (i = 0; i < n; i++) {
		if (old[i].value == MR_HMAP_NONE)
			continue;
		j = mr_hmap_bucket(old[i].frag, m->bits);
		while (m->slots[j].value != MR_HMAP_NONE)
			j = (j + 1) & mask;
		m->slots[j] = old[i];
	}
	free(old);
}

uint32_t
mr_hmap_find(const struct mr_hmap *m, uint64_t hash, const void *key,
    size_t len)
{
	uint32_t frag = (uint32_t)(hash >> 32);
	size_t mask = ((size_t)1 << m->bits) - 1;
	size_t j = mr_hmap_bucket(frag, m->bits);

	for (; m->slots[j].value != MR_HMAP_NONE; j = (j + 1) & mask) {
		if (m->slots[j].frag == frag &&
		    m->eq(m->ctx, m->slots[j].value, key, len))
			return m->slots[j].value;
	}
	return MR_HMAP_NONE;
}

uint32_t
mr_hmap_put(struct mr_hmap *m, uint64_t hash, const void *key, size_t len,
    uint32_t value)
{
	uint32_t frag = (uint32_t)(hash >> 32);
	size_t mask, j;

	MR_ASSERT(value != MR_HMAP_NONE);
	if ((m->count + 1) * 4 > ((size_t)3 << m->bits))
		mr_hmap_grow(m);
	mask = ((size_t)1 << m->bits) - 1;
	for (j = mr_hmap_bucket(frag, m->bits);
	    m->slots[j].value != MR_HMAP_NONE; j = (j + 1) & mask) {
		if (m->slots[j].frag == frag &&
		    m->eq(m->ctx, m->slots[j].value, key, len))
			return m->slots[j].value;
	}
	m->slots[j].frag = frag;
	m->slots[j].value = value;
	m->count++;
	return MR_HMAP_NONE;
}

uint32_t
mr_hmap_del(struct mr_hmap *m, uint64_t hash, const void *key, size_t len)
{
	uint32_t frag = (uint32_t)(hash >> 32), value;
	size_t mask = ((size_t)1 << m->bits) - 1;
	size_t hole, j, home;

	for (hole = mr_hmap_bucket(frag, m->bits);
	    m->slots[hole].value != MR_HMAP_NONE; hole = (hole + 1) & mask) {
		if (m->slots[hole].frag == frag &&
		    m->eq(m->ctx, m->slots[hole].value, key, len))
			break;
	}
	value = m->slots[hole].value;
	if (value == MR_HMAP_NONE)
		return MR_HMAP_NONE;
	/*
	 * Backward shift: an entry after the hole moves into it unless its
	 * home bucket lies cyclically in (hole, j], where it can be found
	 * without passing the hole.
	 */
	for (j = (hole + 1) & mask; m->slots[j].value != MR_HMAP_NONE;
	    j = (j + 1) & mask) {
		home = mr_hmap_bucket(m->slots[j].frag, m->bits);
		if (hole <= j ? (hole < home && home <= j) :
		    (hole < home || home <= j))
			continue;
		m->slots[hole] = m->slots[j];
		hole = j;
	}
	m->slots[hole].value = MR_HMAP_NONE;
	m->count--;
	return value;
}

size_t
mr_hmap_count(const struct mr_hmap *m)
{
	return m->count;
}

size_t
mr_hmap_bytes(const struct mr_hmap *m)
{
	return sizeof(*m->slots) << m->bits;
}
