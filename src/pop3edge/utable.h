/*
 * utable.h - the edge proxy's user table (SPEC P2, seed 000 "the user
 * table"): an entry per mailbox name seen, found in O(1) through a hash
 * index, and a binary heap of the entries ordered by expiry (the seed's
 * "ordered table", its timer list).
 *
 * An entry keeps a salted password verifier, never the password: the
 * first 16 bytes of HMAC-SHA256 keyed with a random secret made when the
 * table is (never stored, never logged), over the entry's random salt and
 * the password.  A memory dump or a log thus holds no password; checking
 * costs one HMAC, so a local answer stays cheap.
 *
 * Soft state: nothing is written anywhere; a new table starts empty.
 * Entries are numbered (uint32) and stay at their number until deleted.
 * Not thread-safe: one table per loop.
 */
#ifndef MR_UTABLE_H
#define MR_UTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTABLE_NONE		UINT32_MAX
#define UTABLE_NAME_MAX		128	/* octets of a mailbox name */
#define UTABLE_FAST_MAX		8	/* check times kept (fast-check rule) */

/* The user's state in the seed's table (None is "no entry"). */
enum utable_state {
	UT_IDLE,
	UT_AUTHORIZATION,
	UT_TRANSACTION,
};

struct utable_entry {
	char		*name;		/* owned, NUL-terminated */
	uint64_t	 empty_at;	/* mr_clock_ms() when the mailbox was
					 * last seen empty; 0: not known empty */
	uint64_t	 expires;	/* heap key: when the entry may go */
	uint32_t	 heap_pos;
	uint32_t	 checks;	/* checks since one went through */
	uint32_t	 refs;		/* sessions using the entry */
	uint16_t	 notes;		/* notifications so far (wraps) */
	uint8_t		 state;		/* enum utable_state */
	bool		 has_verifier;
	bool		 lock;		/* a session holds the mailbox */
	bool		 terminate;	/* that session is answered locally */
	uint8_t		 nfast;		/* times in fast[] */
	uint8_t		 salt[8];
	uint8_t		 verifier[16];
	uint32_t	 fast[UTABLE_FAST_MAX];	/* recent attenuated checks,
						 * ms on a wrapping clock,
						 * oldest first */
};

struct utable;

/* utable_new - a table of at most max entries. */
struct utable *utable_new(uint32_t max);
void utable_free(struct utable **tp);

/* utable_find - the entry for name, or UTABLE_NONE. */
uint32_t utable_find(struct utable *t, const char *name, size_t len);
/*
 * utable_add - a new entry for name (not present), Idle, expiring at
 * expires.  When the table is full, the entries closest to expiry that no
 * session uses (refs 0) are evicted first; UTABLE_NONE when every entry
 * is in use.
 */
uint32_t utable_add(struct utable *t, const char *name, size_t len,
    uint64_t expires);
struct utable_entry *utable_get(struct utable *t, uint32_t id);
void utable_del(struct utable *t, uint32_t id);

/* utable_set_password - a new salt and the verifier of password. */
void utable_set_password(struct utable *t, uint32_t id, const char *pw,
    size_t len);
/* utable_check_password - does pw match the verifier (constant time)? */
bool utable_check_password(struct utable *t, uint32_t id, const char *pw,
    size_t len);

/* utable_schedule - move the entry to its new expiry. */
void utable_schedule(struct utable *t, uint32_t id, uint64_t expires);
/* utable_next - the entry that expires first and when, or UTABLE_NONE. */
uint32_t utable_next(const struct utable *t, uint64_t *expires_r);

uint32_t utable_count(const struct utable *t);
uint32_t utable_max(const struct utable *t);
/* utable_bytes - memory held: entries, names, index and heap. */
size_t utable_bytes(const struct utable *t);

#endif
