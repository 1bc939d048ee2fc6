/*
 * mr_hmap.h - a compact open-addressing hash index from keys to uint32
 * values, for tables of millions of entries (list de-duplication, domain
 * interning).
 *
 * The map stores only 8 bytes a slot: 32 bits of the key's hash and the
 * value.  Keys stay with the caller, who supplies an equality callback that
 * compares the key of a stored value with a probe key; it is called only
 * when 32 hash bits already match.  Deletion shifts the entries after the
 * removed one back (no tombstones), so lookups stay as short after many
 * deletions as after none.  Load is kept at or below 3/4; the map never
 * shrinks.  Not thread-safe; the caller owns the map.
 */
#ifndef MR_HMAP_H
#define MR_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MR_HMAP_NONE UINT32_MAX

struct mr_hmap;

/* mr_hmap_eq_cb - does the key stored under value equal (key, len)? */
typedef bool mr_hmap_eq_cb(void *ctx, uint32_t value, const void *key,
    size_t len);

/* mr_hash - a 64-bit hash of n bytes (XXH3, seeded per process). */
uint64_t mr_hash(const void *p, size_t n);

/* mr_hmap_new - eq and ctx are borrowed for the map's lifetime. */
struct mr_hmap *mr_hmap_new(mr_hmap_eq_cb *eq, void *ctx);
void mr_hmap_free(struct mr_hmap **mp);

/* mr_hmap_find - the value stored for key, or MR_HMAP_NONE. */
uint32_t mr_hmap_find(const struct mr_hmap *m, uint64_t hash,
    const void *key, size_t len);
/*
 * mr_hmap_put - store value for key unless key is present.  Returns the
 * value already stored, or MR_HMAP_NONE when value was inserted.  value
 * must not be MR_HMAP_NONE.
 */
uint32_t mr_hmap_put(struct mr_hmap *m, uint64_t hash, const void *key,
    size_t len, uint32_t value);
/*
 * mr_hmap_del - remove key.  Returns the value it had, or MR_HMAP_NONE
 * when it was not there.  Other values keep their keys (values are the
 * caller's, never renumbered).
 */
uint32_t mr_hmap_del(struct mr_hmap *m, uint64_t hash, const void *key,
    size_t len);
size_t mr_hmap_count(const struct mr_hmap *m);
/* mr_hmap_bytes - memory held by the slot array. */
size_t mr_hmap_bytes(const struct mr_hmap *m);

#endif
