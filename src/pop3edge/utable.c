/*
 * utable.c - the user table: entries in one array with a free list, an
 * mr_hmap from name to entry number, a min-heap of entry numbers by
 * expiry.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "core/mr_hmap.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "pop3edge/utable.h"

struct utable {
	struct utable_entry	*e;
	uint32_t		 n;		/* slots used in e[] */
	uint32_t		 cap;
	uint32_t		 max;
	uint32_t		 count;
	uint32_t		 free_head;	/* free slots chain through
						 * heap_pos */
	struct mr_hmap		*index;
	uint32_t		*heap;		/* entry numbers */
	size_t			 names;		/* bytes of names */
	EVP_MAC			*mac;		/* HMAC, fetched once */
	EVP_MAC_CTX		*mac_ctx;	/* keyed with a random key
						 * made per table (held
						 * only in here) */
};

static bool
utable_eq(void *ctx, uint32_t value, const void *key, size_t len)
{
	struct utable *t = ctx;
	const char *name = t->e[value].name;

	return strlen(name) == len && memcmp(name, key, len) == 0;
}

/*
 * utable_mac_new - the HMAC-SHA256 context, keyed once: each verifier
 * then only re-initialises it (no algorithm fetch, no key schedule, no
 * allocation per check).
 */
static void
utable_mac_new(struct utable *t)
{
	uint8_t key[32];
	char digest[] = "SHA256";
	OSSL_PARAM params[2];

	if (RAND_bytes(key, sizeof(key)) != 1)
		mr_panic("utable: no random bytes for the verifier key");
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((t->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
	    (t->mac_ctx = EVP_MAC_CTX_new(t->mac)) == NULL ||
	    EVP_MAC_init(t->mac_ctx, key, sizeof(key), params) != 1)
		mr_panic("utable: no HMAC-SHA256 for the verifiers");
	OPENSSL_cleanse(key, sizeof(key));
}

struct utable *
utable_new(uint32_t max)
{
	struct utable *t = xcalloc(1, sizeof(*t));

	t->max = max;
	t->free_head = UTABLE_NONE;
	t->index = mr_hmap_new(utable_eq, t);
	utable_mac_new(t);
	return t;
}

void
utable_free(struct utable **tp)
{
	struct utable *t = *tp;
	uint32_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++)
		free(t->e[i].name);
	free(t->e);
	free(t->heap);
	mr_hmap_free(&t->index);
	EVP_MAC_CTX_free(t->mac_ctx);
	EVP_MAC_free(t->mac);
	free(t);
	*tp = NULL;
}

/* ---------------------------------------------------------------- */
/* The heap                                                          */
/* ---------------------------------------------------------------- */

static void
utable_heap_set(struct utable *t, uint32_t pos, uint32_t id)
{
	t->heap[pos] = id;
	t->e[id].heap_pos = pos;
}

static void
utable_heap_up(struct utable *t, uint32_t pos)
{
	uint32_t id = t->heap[pos], parent;

	while (pos > 0) {
		parent = (pos - 1) / 2;
		if (t->e[t->heap[parent]].expires <= t->e[id].expires)
			break;
		utable_heap_set(t, pos, t->heap[parent]);
		pos = parent;
	}
	utable_heap_set(t, pos, id);
}

static void
utable_heap_down(struct utable *t, uint32_t pos)
{
	uint32_t id = t->heap[pos], child;

	for (;;) {
		child = 2 * pos + 1;
		if (child >= t->count)
			break;
		if (child + 1 < t->count && t->e[t->heap[child + 1]].expires <
		    t->e[t->heap[child]].expires)
			child++;
		if (t->e[id].expires <= t->e[t->heap[child]].expires)
			break;
		utable_heap_set(t, pos, t->heap[child]);
		pos = child;
	}
	utable_heap_set(t, pos, id);
}

void
utable_schedule(struct utable *t, uint32_t id, uint64_t expires)
{
	uint64_t old = t->e[id].expires;

	t->e[id].expires = expires;
	if (expires < old)
		utable_heap_up(t, t->e[id].heap_pos);
	else
		utable_heap_down(t, t->e[id].heap_pos);
}

uint32_t
utable_next(const struct utable *t, uint64_t *expires_r)
{
	if (t->count == 0)
		return UTABLE_NONE;
	*expires_r = t->e[t->heap[0]].expires;
	return t->heap[0];
}

/* ---------------------------------------------------------------- */
/* Entries                                                           */
/* ---------------------------------------------------------------- */

uint32_t
utable_find(struct utable *t, const char *name, size_t len)
{
	return mr_hmap_find(t->index, mr_hash(name, len), name, len);
}

struct utable_entry *
utable_get(struct utable *t, uint32_t id)
{
	MR_ASSERT(id < t->n && t->e[id].name != NULL);
	return &t->e[id];
}

void
utable_del(struct utable *t, uint32_t id)
{
	struct utable_entry *u = utable_get(t, id);
	uint32_t pos = u->heap_pos, last;
	size_t len = strlen(u->name);

	mr_hmap_del(t->index, mr_hash(u->name, len), u->name, len);
	/* Out of the heap: the last element fills the hole. */
	last = t->heap[--t->count];
	if (pos < t->count) {
		utable_heap_set(t, pos, last);
		utable_heap_down(t, pos);
		utable_heap_up(t, t->e[last].heap_pos);
	}
	t->names -= len + 1;
	free(u->name);
	OPENSSL_cleanse(u, sizeof(*u));
	u->name = NULL;
	u->heap_pos = t->free_head;
	t->free_head = id;
}

uint32_t
utable_add(struct utable *t, const char *name, size_t len, uint64_t expires)
{
	struct utable_entry *u;
	uint32_t id, pos;

	MR_ASSERT(len <= UTABLE_NAME_MAX);
	/* Full: evict an entry no session uses, the first such in heap
	 * order (near the top: near expiry). */
	while (t->count >= t->max) {
		for (pos = 0; pos < t->count; pos++)
			if (t->e[t->heap[pos]].refs == 0)
				break;
		if (pos == t->count)
			return UTABLE_NONE;
		utable_del(t, t->heap[pos]);
	}
	if (t->free_head != UTABLE_NONE) {
		id = t->free_head;
		t->free_head = t->e[id].heap_pos;
	} else {
		if (t->n == t->cap) {
			t->cap = t->cap ? t->cap + t->cap / 2 : 64;
			if (t->cap > t->max)
				t->cap = t->max;
			t->e = xreallocarray(t->e, t->cap, sizeof(*t->e));
			t->heap = xreallocarray(t->heap, t->cap,
			    sizeof(*t->heap));
		}
		id = t->n++;
	}
	u = &t->e[id];
	memset(u, 0, sizeof(*u));
	u->name = xmalloc(len + 1);
	memcpy(u->name, name, len);
	u->name[len] = '\0';
	t->names += len + 1;
	u->state = UT_IDLE;
	u->expires = expires;
	mr_hmap_put(t->index, mr_hash(name, len), name, len, id);
	utable_heap_set(t, t->count++, id);
	utable_heap_up(t, u->heap_pos);
	return id;
}

/* ---------------------------------------------------------------- */
/* Verifiers                                                         */
/* ---------------------------------------------------------------- */

/* utable_mac - the verifier: HMAC-SHA256(key, salt || password), cut to
 * 16 bytes. */
static void
utable_mac(struct utable *t, const uint8_t salt[8], const char *pw,
    size_t len, uint8_t out[16])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	size_t mdlen = 0;

	/* No key: the same key again, its pads already computed. */
	if (EVP_MAC_init(t->mac_ctx, NULL, 0, NULL) != 1 ||
	    EVP_MAC_update(t->mac_ctx, salt, 8) != 1 ||
	    EVP_MAC_update(t->mac_ctx, (const unsigned char *)pw, len) != 1 ||
	    EVP_MAC_final(t->mac_ctx, md, &mdlen, sizeof(md)) != 1 ||
	    mdlen < 16)
		mr_panic("utable: HMAC-SHA256 failed");
	memcpy(out, md, 16);
	OPENSSL_cleanse(md, sizeof(md));
}

void
utable_set_password(struct utable *t, uint32_t id, const char *pw,
    size_t len)
{
	struct utable_entry *u = utable_get(t, id);

	if (RAND_bytes(u->salt, sizeof(u->salt)) != 1)
		mr_panic("utable: no random bytes for a salt");
	utable_mac(t, u->salt, pw, len, u->verifier);
	u->has_verifier = true;
}

bool
utable_check_password(struct utable *t, uint32_t id, const char *pw,
    size_t len)
{
	struct utable_entry *u = utable_get(t, id);
	uint8_t v[16];
	bool ok;

	if (!u->has_verifier)
		return false;
	utable_mac(t, u->salt, pw, len, v);
	ok = CRYPTO_memcmp(v, u->verifier, sizeof(v)) == 0;
	OPENSSL_cleanse(v, sizeof(v));
	return ok;
}

uint32_t
utable_count(const struct utable *t)
{
	return t->count;
}

uint32_t
utable_max(const struct utable *t)
{
	return t->max;
}

size_t
utable_bytes(const struct utable *t)
{
	return (size_t)t->cap * sizeof(*t->e) + t->names +
	    mr_hmap_bytes(t->index) + (size_t)t->cap * sizeof(*t->heap);
}
