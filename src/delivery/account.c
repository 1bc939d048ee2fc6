/*
 * account.c - the passwords of sending accounts (account.h): what a
 * password may be, and the constant-time check against the verifier the
 * store keeps.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "delivery/account.h"
#include "registry/verifier.h"
#include "store/store.h"

/* The bounds reg_verifier_make() takes. */
#define ACCOUNT_ITER_MIN	1000
#define ACCOUNT_ITER_MAX	10000000

/*
 * The dummy verifier: a well-formed verifier (16-byte salt, 32-byte hash)
 * of no password anyone knows, so that checking it costs what checking a
 * real one of the same iteration count does.  Its count is filled in.
 */
#define ACCOUNT_DUMMY_FMT						\
	"$pbkdf2-sha256$%u$bWFpbHJvb206bm9ib2R5IQ==$"			\
	"QBGVj7TSkcVxLVhQghwmwGa/qcPKnE30NVs31ArAxEw="

_Static_assert(ACCOUNT_PASSWORD_MAX == 1024,
    "account_password_refusal() names the bound");

static _Atomic unsigned account_dummy_iter = REG_PBKDF2_ITER;

const char *
account_password_refusal(const char *pass, size_t len)
{
	if (len == 0)
		return "it is empty";
	if (len > ACCOUNT_PASSWORD_MAX)
		return "it is longer than 1024 bytes";
	if (memchr(pass, '\0', len) != NULL)
		return "it holds a NUL byte";
	if (memchr(pass, '\n', len) != NULL || memchr(pass, '\r', len) != NULL)
		return "it holds a line break";
	return NULL;
}

void
account_password_iterations(unsigned iter)
{
	if (iter < ACCOUNT_ITER_MIN || iter > ACCOUNT_ITER_MAX)
		iter = REG_PBKDF2_ITER;
	atomic_store(&account_dummy_iter, iter);
}

int
account_check_password(struct store *s, const char *name, const char *pass,
    size_t len, bool *ok_r)
{
	struct store_account a;
	char dummy[160];
	const char *verifier;
	bool usable, ok;
	int code;

	*ok_r = false;
	memset(&a, 0, sizeof(a));
	code = name != NULL ? s->ops->account_get(s, name, &a) : -ENOENT;
	if (code != 0 && code != -ENOENT)
		return code;
	/* Nothing settable is longer: check a prefix, for the time only. */
	usable = code == 0 && a.verifier != NULL &&
	    len <= ACCOUNT_PASSWORD_MAX;
	if (len > ACCOUNT_PASSWORD_MAX)
		len = ACCOUNT_PASSWORD_MAX;
	if (pass == NULL) {
		pass = "";
		len = 0;
	}
	snprintf(dummy, sizeof(dummy), ACCOUNT_DUMMY_FMT,
	    atomic_load(&account_dummy_iter));
	verifier = usable ? a.verifier : dummy;
	ok = reg_verifier_check(verifier, pass, len);
	*ok_r = usable && ok;
	store_account_release(&a);
	return 0;
}
