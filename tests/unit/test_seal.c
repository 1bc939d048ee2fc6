/*
 * test_seal.c - the registry's key file and sealing (seal.h): key files
 * made, read and refused; sealed values that open, and those that must
 * not (another key, a changed byte, another AAD, malformed text); base64.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/mr_buf.h"
#include "registry/seal.h"

struct t_fx {
	char	dir[64];
	char	path[96];	/* dir/key, not made */
};

static int
t_setup(void **state)
{
	struct t_fx *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/mr-seal-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/key", fx->dir);
	*state = fx;
	return 0;
}

static int
t_teardown(void **state)
{
	struct t_fx *fx = *state;
	char p[128];

	unlink(fx->path);
	snprintf(p, sizeof(p), "%s/link", fx->dir);
	unlink(p);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

/* t_write - a file of n bytes with mode. */
static void
t_write(const char *path, size_t n, mode_t mode)
{
	unsigned char b[64] = { 0 };
	int fd;

	assert_true(n <= sizeof(b));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b, n), (ssize_t)n);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* t_load_fails - loading path must fail with code, err naming it. */
static void
t_load_fails(const char *path, bool create, int code, const char *says)
{
	struct mr_buf err = MR_BUF_INIT;
	struct seal_key *k;
	int got = 0;

	k = seal_key_load(path, create, NULL, &err, &got);
	assert_null(k);
	assert_int_equal(got, code);
	if (strstr(mr_buf_cstr(&err), says) == NULL)
		fail_msg("\"%s\" does not say \"%s\"", mr_buf_cstr(&err), says);
	mr_buf_release(&err);
}

static void
test_key_create(void **state)
{
	struct t_fx *fx = *state;
	struct mr_buf err = MR_BUF_INIT;
	struct seal_key *k, *k2;
	struct stat sb;
	bool created;
	int code;

	t_load_fails(fx->path, false, -ENOENT, "does not exist");
	k = seal_key_load(fx->path, true, &created, &err, &code);
	assert_non_null(k);
	assert_true(created);
	assert_int_equal(stat(fx->path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_int_equal(sb.st_size, SEAL_KEY_LEN);
	assert_int_equal(strlen(seal_key_id(k)), 8);
	/* Made once: the next load reads the same key. */
	k2 = seal_key_load(fx->path, true, &created, &err, &code);
	assert_non_null(k2);
	assert_false(created);
	assert_string_equal(seal_key_id(k), seal_key_id(k2));
	seal_key_free(&k);
	seal_key_free(&k2);
	assert_null(k);
	seal_key_free(NULL);
	mr_buf_release(&err);
}

static void
test_key_refused(void **state)
{
	struct t_fx *fx = *state;
	char link[128];

	t_write(fx->path, SEAL_KEY_LEN, 0640);
	t_load_fails(fx->path, false, -EACCES, "read by group or others");
	t_load_fails(fx->path, true, -EACCES, "chmod 600");
	t_write(fx->path, SEAL_KEY_LEN, 0604);
	t_load_fails(fx->path, false, -EACCES, "mode 0604");
	t_write(fx->path, 16, 0600);
	t_load_fails(fx->path, false, -EINVAL, "holds 16 bytes");
	t_write(fx->path, SEAL_KEY_LEN + 1, 0600);
	t_load_fails(fx->path, true, -EINVAL, "holds 33 bytes");
	t_write(fx->path, 0, 0600);
	t_load_fails(fx->path, true, -EINVAL, "holds 0 bytes");
	t_load_fails(fx->dir, false, -EINVAL, "not a regular file");
	t_write(fx->path, SEAL_KEY_LEN, 0600);
	snprintf(link, sizeof(link), "%s/link", fx->dir);
	assert_int_equal(symlink(fx->path, link), 0);
	t_load_fails(link, false, -EINVAL, "symbolic link");
	t_load_fails("", false, -EINVAL, "no key file");
	t_load_fails("/nonexistent-dir/key", true, -ENOENT, "cannot create");
}

static struct seal_key *
t_key(unsigned char fill)
{
	unsigned char raw[SEAL_KEY_LEN];

	memset(raw, fill, sizeof(raw));
	return seal_key_from(raw);
}

/* t_open - open text with k and aad: the code; *plain_r on success. */
static int
t_open(const struct seal_key *k, const char *aad, const char *text,
    char **plain_r)
{
	struct mr_buf err = MR_BUF_INIT;
	char *plain = NULL;
	size_t len = 0;
	int rc;

	rc = seal_open(k, aad, text, &plain, &len, &err);
	if (rc == 0) {
		assert_int_equal(len, strlen(plain));
		assert_int_equal(err.len, 0);
	} else {
		assert_null(plain);
		assert_true(err.len > 0);
	}
	if (plain_r != NULL)
		*plain_r = plain;
	else
		free(plain);
	mr_buf_release(&err);
	return rc;
}

static void
test_round_trip(void **state)
{
	static const char *const secrets[] = {
		"s3cr3t", "", "with spaces and \xc3\xa9", "a:b:c=",
	};
	struct seal_key *k = t_key(1);
	char *text, *text2, *plain, want[8];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		text = seal_seal(k, "account:1", secrets[i],
		    strlen(secrets[i]));
		assert_non_null(text);
		snprintf(want, sizeof(want), "v1:%.3s", seal_key_id(k));
		assert_memory_equal(text, want, 6);
		assert_null(strstr(text, secrets[i][0] != '\0' ? secrets[i] :
		    "\x01"));
		assert_int_equal(t_open(k, "account:1", text, &plain), 0);
		assert_string_equal(plain, secrets[i]);
		free(plain);
		/* A fresh nonce each time. */
		text2 = seal_seal(k, "account:1", secrets[i],
		    strlen(secrets[i]));
		assert_string_not_equal(text, text2);
		free(text);
		free(text2);
	}
	seal_key_free(&k);
}

static void
test_refusals(void **state)
{
	struct seal_key *k = t_key(1), *other = t_key(2);
	char *text, *bad;
	size_t i, n;

	(void)state;
	text = seal_seal(k, "apop:alice", "secret", 6);
	assert_non_null(text);
	assert_int_equal(t_open(other, "apop:alice", text, NULL), -ENOKEY);
	assert_int_equal(t_open(k, "apop:bob", text, NULL), -EBADMSG);
	assert_int_equal(t_open(k, "account:1", text, NULL), -EBADMSG);
	assert_int_equal(t_open(k, "", text, NULL), -EBADMSG);
	/* Any one character of the payload changed. */
	n = strlen(text);
	for (i = 3 + 8 + 1; i < n; i++) {
		if (text[i] == '=')
			continue;
		bad = strdup(text);
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		assert_int_not_equal(t_open(k, "apop:alice", bad, NULL), 0);
		free(bad);
	}
	free(text);
	seal_key_free(&k);
	seal_key_free(&other);
}

/* t_subst - tmpl with its "%s" (if any) replaced by id. */
static void
t_subst(char *buf, size_t size, const char *tmpl, const char *id)
{
	const char *p = strstr(tmpl, "%s");

	if (p == NULL)
		snprintf(buf, size, "%s", tmpl);
	else
		snprintf(buf, size, "%.*s%s%s", (int)(p - tmpl), tmpl, id,
		    p + 2);
}

static void
test_bad_formats(void **state)
{
	static const struct {
		const char	*label;
		const char	*text;	/* %s: the key id */
		int		 code;
	} rows[] = {
		{ "empty", "", -EINVAL },
		{ "no version", "%s:AAAA", -EINVAL },
		{ "another version",
		  "v2:%s:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", -EINVAL },
		{ "short key id", "v1:abc:AAAA", -EINVAL },
		{ "key id not hex", "v1:ABCDEFGH:AAAA", -EINVAL },
		{ "no payload separator", "v1:%s", -EINVAL },
		{ "empty payload", "v1:%s:", -EINVAL },
		{ "payload not a multiple of 4", "v1:%s:AAAAA", -EINVAL },
		{ "payload with a bad character",
		  "v1:%s:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*", -EINVAL },
		{ "payload with '=' inside",
		  "v1:%s:AAAAAAAAAAAAAAAA=AAAAAAAAAAAAAAAAAAAA", -EINVAL },
		{ "payload shorter than nonce and tag", "v1:%s:AAAAAAAA",
		  -EINVAL },
		{ "nonce and tag of zeros", "v1:%s:"
		  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", -EBADMSG },
		{ "another key's id", "v1:00000000:AAAA", -ENOKEY },
	};
	struct seal_key *k = t_key(3);
	char text[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		t_subst(text, sizeof(text), rows[i].text, seal_key_id(k));
		if (t_open(k, "x", text, NULL) != rows[i].code)
			fail_msg("%s: \"%s\": not %d", rows[i].label, text,
			    rows[i].code);
	}
	seal_key_free(&k);
}

static void
test_base64(void **state)
{
	static const struct {
		const char	*in;
		const char	*out;	/* NULL: refused */
	} rows[] = {
		{ "", "" },
		{ "Zg==", "f" },
		{ "Zm8=", "fo" },
		{ "Zm9v", "foo" },
		{ "Zm9vYg==", "foob" },
		{ "Zm9", NULL },
		{ "Zm9v=", NULL },
		{ "Z===", NULL },
		{ "Zm9v\n", NULL },
		{ "Zm-v", NULL },
		{ "Zm9vYmFyYmF6", NULL },	/* longer than max */
	};
	unsigned char out[8];
	char *enc;
	size_t i, n;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		rc = seal_b64_decode(rows[i].in, strlen(rows[i].in), out, 8,
		    &n);
		if (rows[i].out == NULL) {
			if (rc != -EINVAL)
				fail_msg("\"%s\" was taken", rows[i].in);
			continue;
		}
		if (rc != 0)
			fail_msg("\"%s\" was refused", rows[i].in);
		assert_int_equal(n, strlen(rows[i].out));
		assert_memory_equal(out, rows[i].out, n);
		enc = seal_b64_encode(rows[i].out, n);
		assert_string_equal(enc, rows[i].in);
		free(enc);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_key_create, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_key_refused, t_setup,
		    t_teardown),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_bad_formats),
		cmocka_unit_test(test_base64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
