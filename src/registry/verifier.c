/*
 * verifier.c - login password verifiers (verifier.h): PBKDF2-HMAC-SHA256
 * with a 16-byte random salt, kept as "$pbkdf2-sha256$ITER$SALT$HASH"
 * (SALT and HASH in base64), compared in constant time.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/xalloc.h"
#include "registry/seal.h"
#include "registry/verifier.h"

#define REG_VERIFIER_PREFIX	"$pbkdf2-sha256$"
#define REG_VERIFIER_SALT	16
#define REG_VERIFIER_HASH	32
/* Bounds on what a verifier may ask for: a stored verifier must not make
 * a login check take minutes, nor be too weak to mean anything. */
#define REG_VERIFIER_ITER_MIN	1000
#define REG_VERIFIER_ITER_MAX	10000000
#define REG_VERIFIER_FIELD_MAX	64	/* decoded bytes of salt or hash */

static bool reg_verifier_field(const char **pp, char stop,
    unsigned char *out, size_t *n_r);

char *
reg_verifier_make(const char *password, size_t len, unsigned iter)
{
	unsigned char salt[REG_VERIFIER_SALT], hash[REG_VERIFIER_HASH];
	char *s64, *h64, *v;
	size_t vlen;

	if (iter == 0)
		iter = REG_PBKDF2_ITER;
	if (iter < REG_VERIFIER_ITER_MIN || iter > REG_VERIFIER_ITER_MAX)
		return NULL;
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return NULL;
	if (PKCS5_PBKDF2_HMAC(password, (int)len, salt, sizeof(salt),
	    (int)iter, EVP_sha256(), sizeof(hash), hash) != 1)
		return NULL;
	s64 = seal_b64_encode(salt, sizeof(salt));
	h64 = seal_b64_encode(hash, sizeof(hash));
	OPENSSL_cleanse(hash, sizeof(hash));
	vlen = sizeof(REG_VERIFIER_PREFIX) + 12 + strlen(s64) + strlen(h64);
	v = xmalloc(vlen);
	snprintf(v, vlen, REG_VERIFIER_PREFIX "%u$%s$%s", iter, s64, h64);
	free(s64);
	free(h64);
	return v;
}

/*
 * reg_verifier_field - decode the base64 at *pp up to stop (a '$', or
 * '\0' for the last field) into out; move *pp past stop.
 */
static bool
reg_verifier_field(const char **pp, char stop, unsigned char *out,
    size_t *n_r)
{
	const char *p = *pp, *end;

	end = strchr(p, stop);
	if (end == NULL || end == p)
		return false;
	if (seal_b64_decode(p, (size_t)(end - p), out,
	    REG_VERIFIER_FIELD_MAX, n_r) != 0 || *n_r < REG_VERIFIER_SALT)
		return false;
	*pp = stop == '\0' ? end : end + 1;
	return true;
}

bool
reg_verifier_check(const char *verifier, const char *password, size_t len)
{
	unsigned char salt[REG_VERIFIER_FIELD_MAX];
	unsigned char want[REG_VERIFIER_FIELD_MAX];
	unsigned char got[REG_VERIFIER_FIELD_MAX];
	const char *p;
	size_t nsalt, nwant;
	unsigned long iter;
	char *end;
	bool ok;

	if (verifier == NULL || strncmp(verifier, REG_VERIFIER_PREFIX,
	    strlen(REG_VERIFIER_PREFIX)) != 0)
		return false;
	p = verifier + strlen(REG_VERIFIER_PREFIX);
	if (*p < '1' || *p > '9')
		return false;
	errno = 0;
	iter = strtoul(p, &end, 10);
	if (errno != 0 || *end != '$' || iter < REG_VERIFIER_ITER_MIN ||
	    iter > REG_VERIFIER_ITER_MAX)
		return false;
	p = end + 1;
	if (!reg_verifier_field(&p, '$', salt, &nsalt) ||
	    !reg_verifier_field(&p, '\0', want, &nwant))
		return false;
	ok = PKCS5_PBKDF2_HMAC(password, (int)len, salt, (int)nsalt,
	    (int)iter, EVP_sha256(), (int)nwant, got) == 1 &&
	    CRYPTO_memcmp(got, want, nwant) == 0;
	OPENSSL_cleanse(got, sizeof(got));
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}
