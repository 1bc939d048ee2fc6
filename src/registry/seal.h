/*
 * seal.h - secrets kept apart from their key: a key file of 32 random
 * bytes and AES-256-GCM sealing under it (SPEC A1).
 *
 * A sealed value is the text "v1:KEYID:BASE64", where KEYID is the first
 * 8 hex digits of SHA-256 of the key (so that a value sealed under
 * another key file is named as such, not taken for a damaged one) and
 * BASE64 holds the 12-byte random nonce, the ciphertext and the 16-byte
 * tag.  The caller's AAD (for example "account:42") is authenticated with
 * it: a value copied into another row does not open.
 *
 * Key files: created with O_EXCL and mode 0600; one that group or others
 * may read, that is not a regular file or that is not exactly 32 bytes is
 * refused.  The key lives in memory owned by struct seal_key and is wiped
 * by seal_key_free().
 *
 * Errors: int functions return 0 or a negative code (-ENOENT: no key
 * file; -EACCES: its permissions, or it cannot be read; -EINVAL: a key
 * file of the wrong size or kind, or a sealed text that is malformed;
 * -ENOKEY: sealed under another key file; -EBADMSG: it does not
 * authenticate (changed, or another AAD); -EIO: anything else) with a
 * sentence in err, which never holds a secret.  Thread-safe: a loaded key
 * is only read.
 */
#ifndef MR_SEAL_H
#define MR_SEAL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/mr_buf.h"

#define SEAL_KEY_LEN	32
#define SEAL_NONCE_LEN	12
#define SEAL_TAG_LEN	16

struct seal_key;

/*
 * seal_key_load - the key in path.  create: make the file when missing
 * (*created_r says whether it was; created_r may be NULL).  NULL with
 * *code_r and a sentence in err.  The result is the caller's
 * (seal_key_free()).
 */
struct seal_key *seal_key_load(const char *path, bool create,
    bool *created_r, struct mr_buf *err, int *code_r);
/* seal_key_from - a key from 32 bytes (tests); the caller wipes key. */
struct seal_key *seal_key_from(const unsigned char key[SEAL_KEY_LEN]);
void seal_key_free(struct seal_key **kp);
/* seal_key_id - the 8 hex digits naming the key; borrowed. */
const char *seal_key_id(const struct seal_key *k);

/*
 * seal_seal - plain (len bytes) sealed with aad (a C string), as a C
 * string the caller frees; NULL only when randomness failed.
 */
char *seal_seal(const struct seal_key *k, const char *aad, const void *plain,
    size_t len);
/*
 * seal_open - the sealed text opened with aad: *plain_r (NUL-terminated,
 * the caller's, to wipe and free) and its length in *len_r (may be NULL).
 */
int seal_open(const struct seal_key *k, const char *aad, const char *text,
    char **plain_r, size_t *len_r, struct mr_buf *err);

/*
 * Base64 (RFC 4648, padded), for the sealed text and the verifiers.
 * seal_b64_encode - n bytes at p as a C string the caller frees.
 * seal_b64_decode - len characters of text into out (room for max bytes),
 * the count in *n_r; -EINVAL when malformed or longer than max.
 */
char *seal_b64_encode(const void *p, size_t n);
int seal_b64_decode(const char *text, size_t len, unsigned char *out,
    size_t max, size_t *n_r);

#endif
