/*
 * test_account.c - the passwords of sending accounts (delivery/account.h)
 * over a temporary store: which passwords are refused, the check (right,
 * wrong, unknown account, account without a password, over-long and
 * binary input, a store that fails), and that an unknown account costs
 * as much time as a known one.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/mr_buf.h"
#include "delivery/account.h"
#include "registry/verifier.h"
#include "store/store.h"
#include "store/store_int.h"

#define T_ITER		1000	/* PBKDF2: fast for the tests */
#define T_SLOW_ITER	40000	/* for the timing test: tens of ms */
#define T_BUSY_MS	200

struct t_fx {
	char		 path[64];
	struct store	*s;
};

static int
t_setup(void **state)
{
	struct t_fx *fx = calloc(1, sizeof(*fx));
	struct mr_buf err = MR_BUF_INIT;
	int code, fd;

	assert_non_null(fx);
	snprintf(fx->path, sizeof(fx->path), "/tmp/mr-account-XXXXXX");
	fd = mkstemp(fx->path);
	assert_true(fd >= 0);
	close(fd);
	fx->s = store_open(fx->path, 0, T_BUSY_MS, &err, &code);
	if (fx->s == NULL)
		fail_msg("store_open: %s", mr_buf_cstr(&err));
	mr_buf_release(&err);
	account_password_iterations(T_ITER);
	*state = fx;
	return 0;
}

static int
t_teardown(void **state)
{
	struct t_fx *fx = *state;
	char p[96];

	store_close(&fx->s);
	unlink(fx->path);
	snprintf(p, sizeof(p), "%s-wal", fx->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", fx->path);
	unlink(p);
	free(fx);
	account_password_iterations(0);
	return 0;
}

/* t_put - account name with a verifier of pass (NULL: no password). */
static void
t_put(struct store *s, const char *name, const char *pass, size_t len,
    unsigned iter)
{
	struct store_account a;

	memset(&a, 0, sizeof(a));
	a.name = (char *)name;
	a.allowance = STORE_ALLOWANCE_UNLIMITED;
	a.period = 86400;
	a.warn_pct = 80;
	if (pass != NULL)
		assert_non_null(a.verifier = reg_verifier_make(pass, len,
		    iter));
	assert_int_equal(s->ops->account_put(s, &a), 0);
	free(a.verifier);
}

/* t_check - account_check_password() that must succeed: *ok_r. */
static bool
t_check(struct store *s, const char *name, const char *pass, size_t len)
{
	bool ok = true;

	assert_int_equal(account_check_password(s, name, pass, len, &ok), 0);
	return ok;
}

static void
test_password_refusal(void **state)
{
	static char longest[ACCOUNT_PASSWORD_MAX + 1];
	static const struct {
		const char	*label;
		const char	*pass;
		size_t		 len;	/* 0: strlen, unless empty */
		const char	*why;	/* NULL: taken */
	} rows[] = {
		{ "one byte", "x", 0, NULL },
		{ "spaces and UTF-8", "correct horse \xc3\xa9", 0, NULL },
		{ "tab and DEL are bytes like others", "a\tb\x7f", 0, NULL },
		{ "empty", "", 0, "it is empty" },
		{ "NUL inside", "a\0b", 3, "NUL" },
		{ "NUL at the end", "ab\0", 3, "NUL" },
		{ "LF", "a\nb", 0, "line break" },
		{ "CR", "ab\r", 0, "line break" },
		{ "CRLF", "ab\r\n", 0, "line break" },
	};
	const char *why;
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		len = rows[i].len ? rows[i].len : strlen(rows[i].pass);
		why = account_password_refusal(rows[i].pass, len);
		if (rows[i].why == NULL && why != NULL)
			fail_msg("%s: refused: %s", rows[i].label, why);
		if (rows[i].why != NULL && (why == NULL ||
		    strstr(why, rows[i].why) == NULL))
			fail_msg("%s: \"%s\", not \"%s\"", rows[i].label,
			    why ? why : "(taken)", rows[i].why);
	}
	/* The bound: ACCOUNT_PASSWORD_MAX bytes, not one more. */
	memset(longest, 'p', sizeof(longest));
	assert_null(account_password_refusal(longest, ACCOUNT_PASSWORD_MAX));
	why = account_password_refusal(longest, ACCOUNT_PASSWORD_MAX + 1);
	assert_non_null(why);
	assert_non_null(strstr(why, "longer than 1024 bytes"));
}

static void
test_check(void **state)
{
	static char longest[ACCOUNT_PASSWORD_MAX + 1];
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	bool ok = true;

	t_put(s, "acme", "hunter2", 7, T_ITER);
	t_put(s, "bin", "a\0b", 3, T_ITER);
	t_put(s, "none", NULL, 0, 0);
	memset(longest, 'p', sizeof(longest));
	t_put(s, "long", longest, ACCOUNT_PASSWORD_MAX, T_ITER);

	assert_true(t_check(s, "acme", "hunter2", 7));
	assert_false(t_check(s, "acme", "hunter3", 7));
	assert_false(t_check(s, "acme", "hunter2", 6));	/* a prefix */
	assert_false(t_check(s, "acme", "hunter22", 8));
	assert_false(t_check(s, "acme", "", 0));
	assert_false(t_check(s, "acme", NULL, 0));
	assert_false(t_check(s, "ACME", "hunter2", 7));	/* names are exact */
	/* Unknown, or no password: the same answer. */
	assert_false(t_check(s, "nobody", "hunter2", 7));
	assert_false(t_check(s, "", "hunter2", 7));
	assert_false(t_check(s, NULL, "hunter2", 7));
	assert_false(t_check(s, "none", "", 0));
	assert_false(t_check(s, "none", "hunter2", 7));
	/* Passwords are bytes with a length. */
	assert_true(t_check(s, "bin", "a\0b", 3));
	assert_false(t_check(s, "bin", "a\0c", 3));
	assert_false(t_check(s, "bin", "a", 1));
	/* The longest there can be; one byte more is never right. */
	assert_true(t_check(s, "long", longest, ACCOUNT_PASSWORD_MAX));
	assert_false(t_check(s, "long", longest, ACCOUNT_PASSWORD_MAX + 1));

	/* A verifier made with another count still checks. */
	t_put(s, "acme", "hunter2", 7, 2 * T_ITER);
	assert_true(t_check(s, "acme", "hunter2", 7));

	/* A store that fails: its error, never a yes. */
	assert_int_equal(store_sqlite_test_sql(s, "ALTER TABLE accounts "
	    "RENAME TO accounts_gone", NULL, 0), 0);
	assert_true(account_check_password(s, "acme", "hunter2", 7, &ok) < 0);
	assert_false(ok);
	assert_string_not_equal(store_error(s), "");
}

static double
t_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define T_ROUNDS	7

/*
 * t_min_times - for each of the n names, the fastest of T_ROUNDS checks
 * (the least disturbed by other processes), the names taking turns so
 * that a busy moment of the machine does not fall on one of them only.
 */
static void
t_min_times(struct store *s, const char *const *names, size_t n,
    double *best)
{
	double t0, dt;
	size_t i;
	int round;

	for (i = 0; i < n; i++)
		best[i] = 1e9;
	for (round = 0; round < T_ROUNDS; round++) {
		for (i = 0; i < n; i++) {
			t0 = t_now();
			assert_false(t_check(s, names[i], "wrong", 5));
			dt = t_now() - t0;
			if (dt < best[i])
				best[i] = dt;
		}
	}
}

/*
 * Unknown account, account without a password, wrong password: about
 * the same time, since each costs one check of the same iteration count
 * (the dummy's is account_password_iterations()).  A dummy that did not
 * parse would answer at once, far faster.
 */
static void
test_check_timing(void **state)
{
	static const char *const names[] = { "acme", "nobody", "none" };
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	double t[3], ratio;
	size_t i;

	account_password_iterations(T_SLOW_ITER);
	t_put(s, "acme", "hunter2", 7, T_SLOW_ITER);
	t_put(s, "none", NULL, 0, 0);
	t_min_times(s, names, 3, t);
	print_message("check, fastest of %d (%d iterations): wrong password "
	    "%.2f ms, unknown account %.2f ms, no password %.2f ms\n",
	    T_ROUNDS, T_SLOW_ITER, t[0] * 1e3, t[1] * 1e3, t[2] * 1e3);
	/* Loose bounds: CI machines are shared, and a busy neighbour can
	 * halve one name's best time.  What must never happen is an answer
	 * without a check (a ratio near 0, as a dummy that did not parse
	 * would give); the equal cost is by construction (one check of the
	 * same iteration count, above). */
	for (i = 1; i < 3; i++) {
		ratio = t[i] / t[0];
		if (ratio < 0.3 || ratio > 3.0)
			fail_msg("%s: %.2f of the time of a wrong password",
			    names[i], ratio);
	}

	/* The dummy follows the count it is given. */
	account_password_iterations(T_SLOW_ITER / 8);
	t_min_times(s, names, 2, t);
	ratio = t[1] / t[0];
	if (ratio > 0.5)
		fail_msg("unknown at 1/8 of the iterations: %.2f of known",
		    ratio);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_password_refusal),
		cmocka_unit_test_setup_teardown(test_check, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_check_timing, t_setup,
		    t_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
