/*
 * seal.c - the key file and AES-256-GCM sealing of secrets (seal.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/mr_buf.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "registry/seal.h"

#define SEAL_VERSION	"v1"
#define SEAL_ID_LEN	8		/* hex digits of the key's SHA-256 */
/* The most a sealed text may hold, decoded: secrets are short. */
#define SEAL_MAX_PLAIN	4096
#define SEAL_B64_ALPHABET						\
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

struct seal_key {
	unsigned char	key[SEAL_KEY_LEN];
	char		id[SEAL_ID_LEN + 1];
};

static void seal_fail(struct mr_buf *err, int *code_r, int code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static struct seal_key *seal_key_create(const char *path, struct mr_buf *err,
    int *code_r);
static struct seal_key *seal_key_read(int fd, const char *path,
    struct mr_buf *err, int *code_r);
static int seal_aead(const struct seal_key *k, bool enc, const char *aad,
    const unsigned char *nonce, const unsigned char *in, size_t len,
    unsigned char *out, unsigned char *tag);

static void
seal_fail(struct mr_buf *err, int *code_r, int code, const char *fmt, ...)
{
	va_list ap;

	if (code_r != NULL)
		*code_r = code;
	if (err == NULL)
		return;
	mr_buf_reset(err);
	va_start(ap, fmt);
	mr_buf_vprintf(err, fmt, ap);
	va_end(ap);
}

struct seal_key *
seal_key_from(const unsigned char key[SEAL_KEY_LEN])
{
	struct seal_key *k;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	size_t i;

	k = xcalloc(1, sizeof(*k));
	memcpy(k->key, key, SEAL_KEY_LEN);
	if (EVP_Digest(key, SEAL_KEY_LEN, md, &mdlen, EVP_sha256(), NULL) != 1)
		mr_panic("seal: SHA-256 failed");
	for (i = 0; i < SEAL_ID_LEN / 2; i++)
		snprintf(k->id + 2 * i, 3, "%02x", md[i]);
	return k;
}

/* seal_key_create - a new key file at path: O_EXCL, 0600, fsync'ed. */
static struct seal_key *
seal_key_create(const char *path, struct mr_buf *err, int *code_r)
{
	unsigned char key[SEAL_KEY_LEN];
	struct seal_key *k;
	ssize_t n;
	int fd, e;

	if (RAND_bytes(key, sizeof(key)) != 1) {
		seal_fail(err, code_r, -EIO, "key file %s: no randomness "
		    "to make a key", path);
		return NULL;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd == -1) {
		e = errno;
		OPENSSL_cleanse(key, sizeof(key));
		seal_fail(err, code_r, e == EEXIST ? -EEXIST : e == ENOENT ?
		    -ENOENT : e == EACCES || e == EPERM ? -EACCES : -EIO,
		    "key file %s: cannot create it: %s", path, strerror(e));
		return NULL;
	}
	n = write(fd, key, sizeof(key));
	e = n == -1 ? errno : EIO;
	if (n == (ssize_t)sizeof(key)) {
		if (fsync(fd) == 0)
			e = 0;
		else
			e = errno;
	}
	if (close(fd) == -1 && e == 0)
		e = errno;
	if (e != 0) {
		unlink(path);
		OPENSSL_cleanse(key, sizeof(key));
		seal_fail(err, code_r, -EIO, "key file %s: cannot write it: %s",
		    path, strerror(e));
		return NULL;
	}
	k = seal_key_from(key);
	OPENSSL_cleanse(key, sizeof(key));
	return k;
}

/* seal_key_read - check the open key file fd and read its key. */
static struct seal_key *
seal_key_read(int fd, const char *path, struct mr_buf *err, int *code_r)
{
	unsigned char key[SEAL_KEY_LEN + 1];
	struct seal_key *k;
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st) == -1) {
		seal_fail(err, code_r, -EIO, "key file %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		seal_fail(err, code_r, -EINVAL, "key file %s is not a regular "
		    "file", path);
		return NULL;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		seal_fail(err, code_r, -EACCES, "key file %s may be read by "
		    "group or others (mode %04o): make it 0600 (chmod 600)",
		    path, (unsigned)(st.st_mode & 07777));
		return NULL;
	}
	if (st.st_size != SEAL_KEY_LEN) {
		seal_fail(err, code_r, -EINVAL, "key file %s holds %lld bytes, "
		    "not a key of %d", path, (long long)st.st_size,
		    SEAL_KEY_LEN);
		return NULL;
	}
	n = read(fd, key, sizeof(key));
	if (n != SEAL_KEY_LEN) {
		OPENSSL_cleanse(key, sizeof(key));
		seal_fail(err, code_r, n == -1 ? -EIO : -EINVAL, "key file %s: "
		    "%s", path, n == -1 ? strerror(errno) :
		    "changed while it was read");
		return NULL;
	}
	k = seal_key_from(key);
	OPENSSL_cleanse(key, sizeof(key));
	return k;
}

struct seal_key *
seal_key_load(const char *path, bool create, bool *created_r,
    struct mr_buf *err, int *code_r)
{
	struct seal_key *k;
	int fd, e, code;

	if (created_r != NULL)
		*created_r = false;
	if (path == NULL || *path == '\0') {
		seal_fail(err, code_r, -EINVAL, "no key file given");
		return NULL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1 && errno == ENOENT && create) {
		k = seal_key_create(path, err, &code);
		if (k != NULL && created_r != NULL)
			*created_r = true;
		if (k != NULL || code != -EEXIST) {
			if (k == NULL && code_r != NULL)
				*code_r = code;
			return k;
		}
		/* Another process made it first: read theirs. */
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd == -1) {
		e = errno;
		if (e == ENOENT)
			seal_fail(err, code_r, -ENOENT, "key file %s does not "
			    "exist", path);
		else
			seal_fail(err, code_r, e == EACCES || e == EPERM ?
			    -EACCES : e == ELOOP ? -EINVAL : -EIO,
			    "key file %s cannot be opened: %s", path,
			    e == ELOOP ? "it is a symbolic link" :
			    strerror(e));
		return NULL;
	}
	k = seal_key_read(fd, path, err, code_r);
	close(fd);
	return k;
}

void
seal_key_free(struct seal_key **kp)
{
	struct seal_key *k;

	if (kp == NULL || (k = *kp) == NULL)
		return;
	*kp = NULL;
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

const char *
seal_key_id(const struct seal_key *k)
{
	return k->id;
}

/*
 * seal_aead - AES-256-GCM of len bytes of in into out (the same length)
 * under k, nonce and aad; tag is written when sealing and checked when
 * opening.  0, or -EBADMSG when the tag does not match.
 */
static int
seal_aead(const struct seal_key *k, bool enc, const char *aad,
    const unsigned char *nonce, const unsigned char *in, size_t len,
    unsigned char *out, unsigned char *tag)
{
	EVP_CIPHER_CTX *ctx;
	int n, ok;

	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		return -ENOMEM;
	ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL,
	    enc ? 1 : 0) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_LEN,
	    NULL) == 1 &&
	    EVP_CipherInit_ex(ctx, NULL, NULL, k->key, nonce, -1) == 1 &&
	    EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)aad,
	    (int)strlen(aad)) == 1 &&
	    (len == 0 || EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1);
	if (ok && !enc)
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG,
		    SEAL_TAG_LEN, tag) == 1;
	if (ok)
		ok = EVP_CipherFinal_ex(ctx, out + len, &n) == 1;
	if (ok && enc)
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG,
		    SEAL_TAG_LEN, tag) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok ? 0 : -EBADMSG;
}

char *
seal_b64_encode(const void *p, size_t n)
{
	char *text;

	text = xmalloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)text, p, (int)n);
	return text;
}

int
seal_b64_decode(const char *text, size_t len, unsigned char *out,
    size_t max, size_t *n_r)
{
	unsigned char *raw;
	size_t i, pad, n;
	char *canon;
	int dn;

	*n_r = 0;
	if (len % 4 != 0)
		return -EINVAL;
	pad = 0;
	if (len >= 4 && text[len - 1] == '=')
		pad = text[len - 2] == '=' ? 2 : 1;
	for (i = 0; i < len - pad; i++)
		if (text[i] == '\0' || strchr(SEAL_B64_ALPHABET, text[i]) ==
		    NULL)
			return -EINVAL;
	n = len / 4 * 3 - pad;
	if (n > max)
		return -EINVAL;
	raw = xmalloc(len / 4 * 3 + 1);
	dn = EVP_DecodeBlock(raw, (const unsigned char *)text, (int)len);
	canon = NULL;
	if (dn >= 0 && (size_t)dn == len / 4 * 3) {
		/* Only the canonical text: no stray bits before the '='. */
		canon = seal_b64_encode(raw, n);
		if (memcmp(canon, text, len) == 0)
			memcpy(out, raw, n);
		else
			dn = -1;
		OPENSSL_cleanse(canon, len);
		free(canon);
	}
	OPENSSL_cleanse(raw, len / 4 * 3 + 1);
	free(raw);
	if (dn < 0 || (size_t)dn != len / 4 * 3)
		return -EINVAL;
	*n_r = n;
	return 0;
}

char *
seal_seal(const struct seal_key *k, const char *aad, const void *plain,
    size_t len)
{
	unsigned char *raw;
	size_t rawlen, tlen;
	char *b64, *text;

	if (len > SEAL_MAX_PLAIN)
		return NULL;
	rawlen = SEAL_NONCE_LEN + len + SEAL_TAG_LEN;
	raw = xmalloc(rawlen);
	if (RAND_bytes(raw, SEAL_NONCE_LEN) != 1 ||
	    seal_aead(k, true, aad, raw, plain, len, raw + SEAL_NONCE_LEN,
	    raw + SEAL_NONCE_LEN + len) != 0) {
		OPENSSL_cleanse(raw, rawlen);
		free(raw);
		return NULL;
	}
	b64 = seal_b64_encode(raw, rawlen);
	OPENSSL_cleanse(raw, rawlen);
	free(raw);
	tlen = sizeof(SEAL_VERSION) + SEAL_ID_LEN + 1 + strlen(b64) + 1;
	text = xmalloc(tlen);
	snprintf(text, tlen, SEAL_VERSION ":%s:%s", k->id, b64);
	free(b64);
	return text;
}

int
seal_open(const struct seal_key *k, const char *aad, const char *text,
    char **plain_r, size_t *len_r, struct mr_buf *err)
{
	const char *p, *b64;
	unsigned char *raw;
	size_t rawmax, rawlen, len;
	char *plain;
	int rc;

	*plain_r = NULL;
	p = text;
	if (strncmp(p, SEAL_VERSION ":", sizeof(SEAL_VERSION)) != 0) {
		seal_fail(err, NULL, 0, "sealed value: not a %s sealed value",
		    SEAL_VERSION);
		return -EINVAL;
	}
	p += sizeof(SEAL_VERSION);
	if (strlen(p) < SEAL_ID_LEN + 1 || p[SEAL_ID_LEN] != ':' ||
	    strspn(p, "0123456789abcdef") != SEAL_ID_LEN) {
		seal_fail(err, NULL, 0, "sealed value: malformed key id");
		return -EINVAL;
	}
	if (memcmp(p, k->id, SEAL_ID_LEN) != 0) {
		seal_fail(err, NULL, 0, "sealed value: sealed with another key "
		    "file (key %.*s; this key file is %s)", SEAL_ID_LEN, p,
		    k->id);
		return -ENOKEY;
	}
	b64 = p + SEAL_ID_LEN + 1;
	rawmax = SEAL_NONCE_LEN + SEAL_MAX_PLAIN + SEAL_TAG_LEN;
	raw = xmalloc(rawmax);
	if (seal_b64_decode(b64, strlen(b64), raw, rawmax, &rawlen) != 0 ||
	    rawlen < SEAL_NONCE_LEN + SEAL_TAG_LEN) {
		free(raw);
		seal_fail(err, NULL, 0, "sealed value: malformed (bad base64 "
		    "or too short)");
		return -EINVAL;
	}
	len = rawlen - SEAL_NONCE_LEN - SEAL_TAG_LEN;
	plain = xmalloc(len + 1);
	rc = seal_aead(k, false, aad, raw, raw + SEAL_NONCE_LEN, len,
	    (unsigned char *)plain, raw + SEAL_NONCE_LEN + len);
	OPENSSL_cleanse(raw, rawmax);
	free(raw);
	if (rc != 0) {
		OPENSSL_cleanse(plain, len + 1);
		free(plain);
		seal_fail(err, NULL, 0, "sealed value: does not open with this "
		    "key file (changed, or copied from another record)");
		return -EBADMSG;
	}
	plain[len] = '\0';
	*plain_r = plain;
	if (len_r != NULL)
		*len_r = len;
	return 0;
}
