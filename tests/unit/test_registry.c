/*
 * test_registry.c - the registry over a temporary store (registry.h):
 * verifiers, opening (key file made, missing, refused, the wrong one),
 * users and accounts with their secrets sealed in the store and opened
 * in memory, refusals, and logging in from an event loop on the workers
 * (right and wrong password, unknown user, APOP, cancelling).
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <openssl/evp.h>

#include "core/mr_buf.h"
#include "registry/registry.h"
#include "registry/registry_int.h"
#include "store/store.h"
#include "store/store_int.h"

#define T_ITER		1000	/* PBKDF2: fast for the tests */
#define T_TIMESTAMP	"<1896.697170952@dbc.mtview.ca.us>"

struct t_fx {
	char		 dir[64];
	char		 store[96];
	char		 key[96];
	struct registry	*r;
};

static int
t_setup(void **state)
{
	struct t_fx *fx = calloc(1, sizeof(*fx));
	struct mr_buf err = MR_BUF_INIT;
	int code;

	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/mr-registry-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->store, sizeof(fx->store), "%s/store.db", fx->dir);
	snprintf(fx->key, sizeof(fx->key), "%s/registry.key", fx->dir);
	fx->r = registry_open_store(fx->store, fx->key, true, &err, &code);
	if (fx->r == NULL)
		fail_msg("registry_open_store: %s", mr_buf_cstr(&err));
	assert_int_equal(code, 0);
	registry_tune(fx->r, 2, T_ITER);
	mr_buf_release(&err);
	*state = fx;
	return 0;
}

static int
t_teardown(void **state)
{
	struct t_fx *fx = *state;
	const char *const names[] = {
		"store.db", "store.db-wal", "store.db-shm", "registry.key",
		"other.key",
	};
	char p[160];
	size_t i;

	registry_close(&fx->r);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", fx->dir, names[i]);
		unlink(p);
	}
	rmdir(fx->dir);
	free(fx);
	return 0;
}

/* t_sql - the first column of the first row of sql in the store. */
static void
t_sql(const struct t_fx *fx, const char *sql, char *buf, size_t size)
{
	struct mr_buf err = MR_BUF_INIT;
	struct store *s;

	s = store_open(fx->store, 0, 1000, &err, NULL);
	assert_non_null(s);
	assert_int_equal(store_sqlite_test_sql(s, sql, buf, size), 0);
	store_close(&s);
	mr_buf_release(&err);
}

/* Verifiers. */

static void
test_verifier(void **state)
{
	static const char *const bad[] = {
		NULL, "", "$pbkdf2-sha256$", "$pbkdf2-sha1$1000$AAAA$AAAA",
		"$pbkdf2-sha256$0$c2FsdHNhbHRzYWx0c2FsdA==$AAAA",
		"$pbkdf2-sha256$999$c2FsdHNhbHRzYWx0c2FsdA==$"
		"c2FsdHNhbHRzYWx0c2FsdA==",
		"$pbkdf2-sha256$99999999$c2FsdHNhbHRzYWx0c2FsdA==$"
		"c2FsdHNhbHRzYWx0c2FsdA==",
		"$pbkdf2-sha256$01000$c2FsdHNhbHRzYWx0c2FsdA==$"
		"c2FsdHNhbHRzYWx0c2FsdA==",
		"$pbkdf2-sha256$1000$c2FsdA==$c2FsdHNhbHRzYWx0c2FsdA==",
		"$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA==$",
		"$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA==",
		"$pbkdf2-sha256$1000$$c2FsdHNhbHRzYWx0c2FsdA==",
		"$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA=$"
		"c2FsdHNhbHRzYWx0c2FsdA==",
	};
	char *v, *v2, *mid;
	size_t i;

	(void)state;
	v = reg_verifier_make("hunter2", 7, T_ITER);
	assert_non_null(v);
	assert_memory_equal(v, "$pbkdf2-sha256$1000$", 20);
	assert_null(strstr(v, "hunter2"));
	assert_true(reg_verifier_check(v, "hunter2", 7));
	assert_false(reg_verifier_check(v, "hunter3", 7));
	assert_false(reg_verifier_check(v, "hunter2", 6));
	assert_false(reg_verifier_check(v, "", 0));
	/* A fresh salt each time. */
	v2 = reg_verifier_make("hunter2", 7, T_ITER);
	assert_string_not_equal(v, v2);
	assert_true(reg_verifier_check(v2, "hunter2", 7));
	/* Binary passwords, NULs included. */
	free(v2);
	v2 = reg_verifier_make("a\0b", 3, T_ITER);
	assert_true(reg_verifier_check(v2, "a\0b", 3));
	assert_false(reg_verifier_check(v2, "a\0c", 3));
	free(v2);
	/* A changed hash does not match. */
	mid = strrchr(v, '$') + 2;
	*mid = *mid == 'A' ? 'B' : 'A';
	assert_false(reg_verifier_check(v, "hunter2", 7));
	free(v);
	v = reg_verifier_make("x", 1, 0);
	assert_memory_equal(v, "$pbkdf2-sha256$50000$", 21);
	free(v);
	assert_null(reg_verifier_make("x", 1, 10));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (reg_verifier_check(bad[i], "x", 1))
			fail_msg("verifier \"%s\" was taken", bad[i] != NULL ?
			    bad[i] : "(null)");
}

static void
test_tls_names(void **state)
{
	(void)state;
	assert_int_equal(reg_tls_parse("none"), REG_TLS_NONE);
	assert_int_equal(reg_tls_parse("stls"), REG_TLS_STLS);
	assert_int_equal(reg_tls_parse("pop3s"), REG_TLS_POP3S);
	assert_int_equal(reg_tls_parse("tls"), -1);
	assert_int_equal(reg_tls_parse(NULL), -1);
	assert_string_equal(reg_tls_name(REG_TLS_POP3S), "pop3s");
	assert_true(registry_valid_name("alice@example.com"));
	assert_false(registry_valid_name(""));
	assert_false(registry_valid_name("a b"));
	assert_false(registry_valid_name("a\x7f"));
}

/* Opening. */

static void
test_open(void **state)
{
	struct t_fx *fx = *state;
	struct mr_buf err = MR_BUF_INIT;
	char other[128], nostore[128];
	struct registry *r;
	struct stat sb;
	int code = 0, fd;
	unsigned char key[32];

	assert_int_equal(stat(fx->key, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_int_equal(sb.st_size, 32);
	/* Without create: a store that is not there. */
	snprintf(nostore, sizeof(nostore), "%s/none.db", fx->dir);
	assert_null(registry_open_store(nostore, fx->key, false, &err,
	    &code));
	assert_int_equal(code, -ENOENT);
	/* Another key file: named as such. */
	snprintf(other, sizeof(other), "%s/other.key", fx->dir);
	memset(key, 7, sizeof(key));
	fd = open(other, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, key, sizeof(key)), 32);
	close(fd);
	assert_null(registry_open_store(fx->store, other, false, &err, &code));
	assert_int_equal(code, -ENOKEY);
	assert_non_null(strstr(mr_buf_cstr(&err), "wrong key file"));
	/* Readable by others. */
	assert_int_equal(chmod(fx->key, 0644), 0);
	assert_null(registry_open_store(fx->store, fx->key, false, &err,
	    &code));
	assert_int_equal(code, -ENOKEY);
	assert_non_null(strstr(mr_buf_cstr(&err), "group or others"));
	assert_int_equal(chmod(fx->key, 0600), 0);
	/* A lost key file is not replaced, even with create. */
	assert_int_equal(unlink(other), 0);
	assert_null(registry_open_store(fx->store, other, true, &err, &code));
	assert_int_equal(code, -ENOENT);
	assert_int_equal(stat(other, &sb), -1);
	/* The right one, read only. */
	r = registry_open_store(fx->store, fx->key, false, &err, &code);
	assert_non_null(r);
	assert_int_equal(code, 0);
	registry_close(&r);
	assert_null(r);
	registry_close(NULL);
	mr_buf_release(&err);
}

/* Users and accounts. */

static int64_t
t_account(struct registry *r, const char *user, const char *host,
    unsigned port, int tls, const char *secret)
{
	struct reg_account a;

	memset(&a, 0, sizeof(a));
	a.user = (char *)user;
	a.host = (char *)host;
	a.port = port;
	a.tls = tls;
	a.login = (char *)"login";
	a.secret = (char *)secret;
	if (registry_account_add(r, &a) != 0)
		fail_msg("account_add: %s", registry_error(r));
	assert_true(a.id > 0);
	return a.id;
}

static void
test_users(void **state)
{
	struct t_fx *fx = *state;
	struct registry *r = fx->r;
	struct reg_user u;
	char buf[256];
	int64_t id1, id2;

	assert_int_equal(registry_user_add(r, "alice", "pw-alice", "apop-a"),
	    0);
	assert_int_equal(registry_user_add(r, "bob", "pw-bob", NULL), 0);
	assert_int_equal(registry_user_add(r, "alice", "x", NULL), -EEXIST);
	assert_non_null(strstr(registry_error(r), "alice exists"));
	assert_int_equal(registry_user_add(r, "a b", "x", NULL), -EINVAL);
	assert_int_equal(registry_user_add(r, "carol", "", NULL), -EINVAL);
	assert_int_equal(registry_user_add(r, "carol", NULL, NULL), -EINVAL);
	id1 = t_account(r, "alice", "pop.example.com", 995, REG_TLS_POP3S,
	    "backend-1");
	id2 = t_account(r, "alice", "10.0.0.1", 110, REG_TLS_STLS,
	    "backend-2");
	assert_true(id2 > id1);

	assert_int_equal(registry_user_get(r, "alice", &u), 0);
	assert_string_equal(u.name, "alice");
	assert_true(reg_verifier_check(u.verifier, "pw-alice", 8));
	assert_string_equal(u.apop_secret, "apop-a");
	assert_int_equal(u.naccounts, 2);
	assert_int_equal(u.accounts[0].id, id1);
	assert_string_equal(u.accounts[0].user, "alice");
	assert_string_equal(u.accounts[0].host, "pop.example.com");
	assert_int_equal(u.accounts[0].port, 995);
	assert_int_equal(u.accounts[0].tls, REG_TLS_POP3S);
	assert_string_equal(u.accounts[0].login, "login");
	assert_string_equal(u.accounts[0].secret, "backend-1");
	assert_string_equal(u.accounts[1].secret, "backend-2");
	reg_user_release(&u);
	assert_null(u.name);
	assert_int_equal(registry_user_get(r, "bob", &u), 0);
	assert_null(u.apop_secret);
	assert_int_equal(u.naccounts, 0);
	reg_user_release(&u);
	assert_int_equal(registry_user_get(r, "nobody", &u), -ENOENT);

	/* In the store: sealed, never in clear. */
	t_sql(fx, "SELECT group_concat(secret, ' ') FROM registry_accounts",
	    buf, sizeof(buf));
	assert_null(strstr(buf, "backend"));
	assert_memory_equal(buf, "v1:", 3);
	t_sql(fx, "SELECT apop || verifier FROM registry_users "
	    "WHERE name = 'alice'", buf, sizeof(buf));
	assert_null(strstr(buf, "apop-a"));
	assert_null(strstr(buf, "pw-alice"));
	reg_user_release(&u);
}

static void
test_refusals(void **state)
{
	struct t_fx *fx = *state;
	struct registry *r = fx->r;
	struct reg_account a;

	assert_int_equal(registry_user_add(r, "alice", "pw", NULL), 0);
	memset(&a, 0, sizeof(a));
	a.user = (char *)"nobody";
	a.host = (char *)"h";
	a.port = 110;
	a.login = (char *)"l";
	a.secret = (char *)"s";
	assert_int_equal(registry_account_add(r, &a), -ENOENT);
	assert_non_null(strstr(registry_error(r), "no user nobody"));
	a.user = (char *)"alice";
	a.port = 0;
	assert_int_equal(registry_account_add(r, &a), -EINVAL);
	a.port = 65536;
	assert_int_equal(registry_account_add(r, &a), -EINVAL);
	assert_non_null(strstr(registry_error(r), "port"));
	a.port = 110;
	a.tls = 3;
	assert_int_equal(registry_account_add(r, &a), -EINVAL);
	assert_non_null(strstr(registry_error(r), "TLS"));
	a.tls = REG_TLS_NONE;
	a.secret = NULL;
	assert_int_equal(registry_account_add(r, &a), -EINVAL);
	a.secret = (char *)"two\nlines";
	assert_int_equal(registry_account_add(r, &a), -EINVAL);
	a.secret = (char *)"s";
	a.host = (char *)"";
	assert_int_equal(registry_account_add(r, &a), -EINVAL);
	a.host = (char *)"h";
	assert_int_equal(registry_account_add(r, &a), 0);
	a.id = 999;
	assert_int_equal(registry_account_change(r, &a), -ENOENT);
	assert_int_equal(registry_account_remove(r, 999), -ENOENT);
	assert_int_equal(registry_user_change(r, "nobody", "x", NULL),
	    -ENOENT);
	assert_int_equal(registry_user_remove(r, "nobody"), -ENOENT);
}

static void
test_changes(void **state)
{
	struct t_fx *fx = *state;
	struct registry *r = fx->r;
	struct reg_account a;
	struct reg_user u;
	char buf[64];
	int64_t id;

	assert_int_equal(registry_user_add(r, "alice", "old", NULL), 0);
	id = t_account(r, "alice", "h1", 110, REG_TLS_NONE, "s1");
	/* Password only: the APOP secret stays absent; then added. */
	assert_int_equal(registry_user_change(r, "alice", "new", NULL), 0);
	assert_int_equal(registry_user_change(r, "alice", NULL, "ap"), 0);
	assert_int_equal(registry_user_get(r, "alice", &u), 0);
	assert_true(reg_verifier_check(u.verifier, "new", 3));
	assert_string_equal(u.apop_secret, "ap");
	reg_user_release(&u);
	/* "" removes the APOP secret. */
	assert_int_equal(registry_user_change(r, "alice", NULL, ""), 0);
	assert_int_equal(registry_user_get(r, "alice", &u), 0);
	assert_null(u.apop_secret);
	assert_true(reg_verifier_check(u.verifier, "new", 3));
	reg_user_release(&u);
	/* An account: what is given changes, the rest stays. */
	memset(&a, 0, sizeof(a));
	a.id = id;
	a.tls = -1;
	a.port = 995;
	assert_int_equal(registry_account_change(r, &a), 0);
	a.port = 0;
	a.tls = REG_TLS_POP3S;
	a.secret = (char *)"s2";
	assert_int_equal(registry_account_change(r, &a), 0);
	assert_int_equal(registry_user_get(r, "alice", &u), 0);
	assert_int_equal(u.naccounts, 1);
	assert_string_equal(u.accounts[0].host, "h1");
	assert_int_equal(u.accounts[0].port, 995);
	assert_int_equal(u.accounts[0].tls, REG_TLS_POP3S);
	assert_string_equal(u.accounts[0].secret, "s2");
	reg_user_release(&u);
	/* Removing the user takes the accounts. */
	assert_int_equal(registry_account_remove(r, id), 0);
	(void)t_account(r, "alice", "h1", 110, REG_TLS_NONE, "s1");
	assert_int_equal(registry_user_remove(r, "alice"), 0);
	t_sql(fx, "SELECT count(*) FROM registry_accounts", buf, sizeof(buf));
	assert_string_equal(buf, "0");
}

/* A sealed value copied into another row does not open there. */
static void
test_aad_binding(void **state)
{
	struct t_fx *fx = *state;
	struct registry *r = fx->r;
	struct reg_user u;
	char sql[256], buf[8];
	int64_t id1, id2;

	assert_int_equal(registry_user_add(r, "alice", "pw", "apop-a"), 0);
	assert_int_equal(registry_user_add(r, "bob", "pw", "apop-b"), 0);
	id1 = t_account(r, "alice", "h", 110, REG_TLS_NONE, "s1");
	id2 = t_account(r, "alice", "h", 110, REG_TLS_NONE, "s2");
	snprintf(sql, sizeof(sql), "UPDATE registry_accounts SET secret = "
	    "(SELECT secret FROM registry_accounts WHERE id = %lld) "
	    "WHERE id = %lld", (long long)id1, (long long)id2);
	t_sql(fx, sql, buf, sizeof(buf));
	assert_int_equal(registry_user_get(r, "alice", &u), -EIO);
	assert_non_null(strstr(registry_error(r), "does not open"));
	assert_null(u.name);
	assert_int_equal(registry_account_remove(r, id2), 0);
	assert_int_equal(registry_user_get(r, "alice", &u), 0);
	reg_user_release(&u);
	t_sql(fx, "UPDATE registry_users SET apop = (SELECT apop FROM "
	    "registry_users WHERE name = 'alice') WHERE name = 'bob'", buf,
	    sizeof(buf));
	assert_int_equal(registry_user_get(r, "bob", &u), -EIO);
}

struct t_list {
	char	names[64];
	size_t	naccounts;
	size_t	napop;
};

static int
t_list_cb(void *arg, const struct reg_user *u)
{
	struct t_list *l = arg;
	size_t i, n;

	n = strlen(l->names);
	snprintf(l->names + n, sizeof(l->names) - n, "%s,", u->name);
	l->naccounts += u->naccounts;
	if (u->apop_secret != NULL) {
		l->napop++;
		assert_memory_equal(u->apop_secret, "v1:", 3);
	}
	for (i = 0; i < u->naccounts; i++) {
		assert_string_equal(u->accounts[i].user, u->name);
		assert_memory_equal(u->accounts[i].secret, "v1:", 3);
	}
	return 0;
}

static void
test_list(void **state)
{
	struct t_fx *fx = *state;
	struct registry *r = fx->r;
	struct t_list l;

	memset(&l, 0, sizeof(l));
	assert_int_equal(registry_user_list(r, t_list_cb, &l), 0);
	assert_string_equal(l.names, "");
	assert_int_equal(registry_user_add(r, "carol", "pw", NULL), 0);
	assert_int_equal(registry_user_add(r, "alice", "pw", "ap"), 0);
	assert_int_equal(registry_user_add(r, "bob", "pw", NULL), 0);
	(void)t_account(r, "carol", "h", 110, REG_TLS_NONE, "s");
	(void)t_account(r, "alice", "h", 110, REG_TLS_NONE, "s");
	(void)t_account(r, "carol", "h", 110, REG_TLS_NONE, "s");
	assert_int_equal(registry_user_list(r, t_list_cb, &l), 0);
	assert_string_equal(l.names, "alice,bob,carol,");
	assert_int_equal(l.naccounts, 3);
	assert_int_equal(l.napop, 1);
}

/* Logging in from an event loop. */

struct t_login {
	struct event_base	*base;
	int			 pending;	/* callbacks still expected */
	int			 calls;
	int			 status;
	size_t			 naccounts;
	char			 secret[32];
	struct reg_user		 kept;		/* moved out by the callback */
};

static void
t_login_cb(void *arg, int status, struct reg_user *user)
{
	struct t_login *l = arg;

	l->calls++;
	l->status = status;
	if (status == 0) {
		assert_non_null(user);
		l->naccounts = user->naccounts;
		if (user->naccounts > 0)
			snprintf(l->secret, sizeof(l->secret), "%s",
			    user->accounts[0].secret);
		/* Keep the record: move it out. */
		reg_user_release(&l->kept);
		l->kept = *user;
		memset(user, 0, sizeof(*user));
	} else {
		assert_null(user);
	}
	if (--l->pending == 0)
		event_base_loopbreak(l->base);
}

static void
t_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	fail_msg("the login callbacks did not come within 10 s");
}

/* t_run - run the loop until l->pending callbacks came. */
static void
t_run(struct t_login *l)
{
	struct timeval tv = { 10, 0 };
	struct event *timer;

	timer = evtimer_new(l->base, t_timeout_cb, NULL);
	evtimer_add(timer, &tv);
	if (l->pending > 0)
		event_base_dispatch(l->base);
	event_free(timer);
}

/* t_login - one login through the workers: its status in l. */
static void
t_login(struct registry *r, struct t_login *l, int kind, const char *name,
    const char *cred)
{
	struct mr_buf err = MR_BUF_INIT;
	struct reg_login in;

	memset(&in, 0, sizeof(in));
	in.kind = kind;
	in.name = name;
	if (kind == REG_LOGIN_PASS) {
		in.password = cred;
		in.password_len = strlen(cred);
	} else {
		in.timestamp = T_TIMESTAMP;
		in.digest = cred;
	}
	l->calls = 0;
	l->status = 1;
	l->pending = 1;
	if (registry_login_async(r, l->base, &in, t_login_cb, l, &err) == NULL)
		fail_msg("login_async: %s", mr_buf_cstr(&err));
	t_run(l);
	assert_int_equal(l->calls, 1);
	mr_buf_release(&err);
}

/* t_apop - the digest of T_TIMESTAMP and secret, in hex. */
static void
t_apop(const char *secret, char hex[33], bool upper)
{
	unsigned char md[16];
	char in[128];
	unsigned int n;
	int i;

	snprintf(in, sizeof(in), "%s%s", T_TIMESTAMP, secret);
	assert_int_equal(EVP_Digest(in, strlen(in), md, &n, EVP_md5(), NULL),
	    1);
	for (i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, upper ? "%02X" : "%02x", md[i]);
}

static void
test_login(void **state)
{
	struct t_fx *fx = *state;
	struct registry *r = fx->r;
	struct t_login l;
	char hex[33];

	memset(&l, 0, sizeof(l));
	l.base = event_base_new();
	assert_non_null(l.base);
	assert_int_equal(registry_user_add(r, "alice", "pw-alice", "tanstaaf"),
	    0);
	assert_int_equal(registry_user_add(r, "bob", "pw-bob", NULL), 0);
	(void)t_account(r, "alice", "h", 110, REG_TLS_NONE, "backend-1");

	t_login(r, &l, REG_LOGIN_PASS, "alice", "pw-alice");
	assert_int_equal(l.status, 0);
	assert_int_equal(l.naccounts, 1);
	assert_string_equal(l.secret, "backend-1");
	assert_string_equal(l.kept.name, "alice");
	assert_string_equal(l.kept.apop_secret, "tanstaaf");
	t_login(r, &l, REG_LOGIN_PASS, "alice", "pw-bob");
	assert_int_equal(l.status, -EACCES);
	t_login(r, &l, REG_LOGIN_PASS, "alice", "");
	assert_int_equal(l.status, -EACCES);
	t_login(r, &l, REG_LOGIN_PASS, "nobody", "pw-alice");
	assert_int_equal(l.status, -EACCES);
	t_login(r, &l, REG_LOGIN_PASS, "bob", "pw-bob");
	assert_int_equal(l.status, 0);

	/* APOP: RFC 1939's example digest, and upper-case hex. */
	t_login(r, &l, REG_LOGIN_APOP, "alice",
	    "c4c9334bac560ecc979e58001b3e22fb");
	assert_int_equal(l.status, 0);
	assert_string_equal(l.secret, "backend-1");
	t_apop("tanstaaf", hex, true);
	t_login(r, &l, REG_LOGIN_APOP, "alice", hex);
	assert_int_equal(l.status, 0);
	t_apop("wrong", hex, false);
	t_login(r, &l, REG_LOGIN_APOP, "alice", hex);
	assert_int_equal(l.status, -EACCES);
	t_login(r, &l, REG_LOGIN_APOP, "alice",
	    "c4c9334bac560ecc979e58001b3e22f");
	assert_int_equal(l.status, -EACCES);
	t_login(r, &l, REG_LOGIN_APOP, "alice",
	    "c4c9334bac560ecc979e58001b3e22fb0");
	assert_int_equal(l.status, -EACCES);
	/* No APOP secret, or no such user: refused the same way. */
	t_apop("", hex, false);
	t_login(r, &l, REG_LOGIN_APOP, "bob", hex);
	assert_int_equal(l.status, -EACCES);
	t_login(r, &l, REG_LOGIN_APOP, "nobody", hex);
	assert_int_equal(l.status, -EACCES);

	reg_user_release(&l.kept);
	registry_close(&fx->r);
	event_base_free(l.base);
}

static void
test_login_refused(void **state)
{
	struct t_fx *fx = *state;
	struct mr_buf err = MR_BUF_INIT;
	struct event_base *base = event_base_new();
	struct reg_login in;

	memset(&in, 0, sizeof(in));
	in.kind = REG_LOGIN_PASS;
	assert_null(registry_login_async(fx->r, base, &in, t_login_cb, NULL,
	    &err));
	assert_true(err.len > 0);
	in.kind = REG_LOGIN_APOP;
	in.name = "alice";
	assert_null(registry_login_async(fx->r, base, &in, t_login_cb, NULL,
	    &err));
	registry_close(&fx->r);
	event_base_free(base);
	mr_buf_release(&err);
}

/*
 * Cancelling: of many logins queued at once, every other one cancelled
 * at once (queued or running by then): exactly the others call back.
 */
static void
test_cancel(void **state)
{
	struct t_fx *fx = *state;
	struct registry *r = fx->r;
	struct mr_buf err = MR_BUF_INIT;
	struct reg_ticket *t[20];
	struct t_login l;
	struct reg_login in;
	size_t i;

	memset(&l, 0, sizeof(l));
	l.base = event_base_new();
	assert_int_equal(registry_user_add(r, "alice", "pw", NULL), 0);
	memset(&in, 0, sizeof(in));
	in.kind = REG_LOGIN_PASS;
	in.name = "alice";
	in.password = "pw";
	in.password_len = 2;
	for (i = 0; i < 20; i++) {
		t[i] = registry_login_async(r, l.base, &in, t_login_cb, &l,
		    &err);
		assert_non_null(t[i]);
	}
	for (i = 0; i < 20; i += 2)
		registry_login_cancel(t[i]);
	l.pending = 10;
	t_run(&l);
	assert_int_equal(l.calls, 10);
	assert_int_equal(l.status, 0);
	/* Let the loop see anything late: nothing more comes. */
	event_base_loop(l.base, EVLOOP_NONBLOCK);
	assert_int_equal(l.calls, 10);
	/* Cancelled after the work is done, before the loop ran cb. */
	l.pending = 1;
	t[0] = registry_login_async(r, l.base, &in, t_login_cb, &l, &err);
	usleep(200000);
	registry_login_cancel(t[0]);
	event_base_loop(l.base, EVLOOP_NONBLOCK);
	assert_int_equal(l.calls, 10);
	/* Queued and never run: closing frees it without calling back. */
	t[0] = registry_login_async(r, l.base, &in, t_login_cb, &l, &err);
	assert_non_null(t[0]);
	registry_close(&fx->r);
	event_base_loop(l.base, EVLOOP_NONBLOCK);
	assert_int_equal(l.calls, 10);
	reg_user_release(&l.kept);
	event_base_free(l.base);
	mr_buf_release(&err);
}

static double
t_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * An unknown user costs a verifier check too: with slow verifiers, the
 * fastest refusal of an unknown name is not much faster than that of a
 * known one (a loose bound: timing on a shared machine).
 */
static void
test_login_timing(void **state)
{
	struct t_fx *fx = *state;
	struct registry *r = fx->r;
	struct t_login l;
	double t0, known = 1e9, unknown = 1e9, d;
	int i;

	memset(&l, 0, sizeof(l));
	l.base = event_base_new();
	registry_tune(r, 0, 100000);
	assert_int_equal(registry_user_add(r, "alice", "pw", NULL), 0);
	for (i = 0; i < 3; i++) {
		t0 = t_now();
		t_login(r, &l, REG_LOGIN_PASS, "alice", "wrong");
		d = t_now() - t0;
		known = d < known ? d : known;
		t0 = t_now();
		t_login(r, &l, REG_LOGIN_PASS, "nobody", "wrong");
		d = t_now() - t0;
		unknown = d < unknown ? d : unknown;
	}
	print_message("login refusal: known user %.1f ms, unknown %.1f ms\n",
	    known * 1e3, unknown * 1e3);
	assert_true(unknown > known / 2);
	registry_close(&fx->r);
	event_base_free(l.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verifier),
		cmocka_unit_test(test_tls_names),
		cmocka_unit_test_setup_teardown(test_open, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_users, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_refusals, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_changes, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_aad_binding, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_list, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_login, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_login_refused, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_cancel, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_login_timing, t_setup,
		    t_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
