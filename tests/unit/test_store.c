/*
 * test_store.c - the store over its SQLite backend, on temporary files:
 * opening (migration, refusals, read-only, locks), campaigns and their
 * leases, chunks, recipient state, journal marks, accounts and quotas,
 * and the time one snapshot-sized transaction takes.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
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
#include "store/store.h"
#include "store/store_int.h"

#define T_BUSY_MS	200
#define T_NOBODY	65534

/* The database header: user_version at 60, application_id at 68. */
#define T_HDR_VERSION	60
#define T_HDR_APPID	68

struct t_fx {
	char		 path[64];
	struct store	*s;
};

/* t_remove - the store file and what WAL leaves next to it. */
static void
t_remove(const char *path)
{
	char p[128];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

/* t_temp - a fresh name in /tmp; the file is made empty (or removed). */
static void
t_temp(char *path, size_t size, bool keep)
{
	int fd;

	snprintf(path, size, "/tmp/mr-store-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	if (!keep)
		unlink(path);
}

static struct store *
t_open(const char *path, int flags, int *code_r)
{
	struct mr_buf err = MR_BUF_INIT;
	struct store *s;
	int code = 1;

	s = store_open(path, flags, T_BUSY_MS, &err, &code);
	if (s == NULL && code_r == NULL)
		fail_msg("store_open(%s): %s", path, mr_buf_cstr(&err));
	if (code_r != NULL)
		*code_r = code;
	mr_buf_release(&err);
	return s;
}

/* t_open_err - open that must fail: its code, the message in err. */
static int
t_open_err(const char *path, int flags, struct mr_buf *err)
{
	struct store *s;
	int code = 0;

	mr_buf_reset(err);
	s = store_open(path, flags, T_BUSY_MS, err, &code);
	if (s != NULL) {
		store_close(&s);
		fail_msg("store_open(%s) succeeded", path);
	}
	return code;
}

static int
t_setup(void **state)
{
	struct t_fx *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	t_temp(fx->path, sizeof(fx->path), true);
	/* An existing empty file is a new store: no STORE_CREATE needed. */
	fx->s = t_open(fx->path, 0, NULL);
	*state = fx;
	return 0;
}

static int
t_teardown(void **state)
{
	struct t_fx *fx = *state;

	store_close(&fx->s);
	t_remove(fx->path);
	free(fx);
	return 0;
}

static uint32_t
t_hdr_get(const char *path, off_t off)
{
	unsigned char b[4];
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, 4, off), 4);
	close(fd);
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	    (uint32_t)b[2] << 8 | b[3];
}

static void
t_hdr_set(const char *path, off_t off, uint32_t v)
{
	unsigned char b[4] = { v >> 24, v >> 16, v >> 8, v };
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, b, 4, off), 4);
	close(fd);
}

/* t_campaign - a campaign with every field set; strings borrowed. */
static void
t_campaign(struct store_campaign *c, const char *name, int64_t start_at)
{
	memset(c, 0, sizeof(*c));
	c->name = (char *)name;
	c->template_path = "/srv/t/news.tmpl";
	c->list_path = "/srv/t/list.csv";
	memset(c->template_sha256, 'a', 64);
	memset(c->list_sha256, 'b', 64);
	c->list_size = 123456789;
	c->list_mtime = 1700000000;
	c->account = "acme";
	c->options = "routes=/etc/routes\nresolver=127.0.0.1:53\n";
	c->created_at = 1700000100;
	c->start_at = start_at;
	c->stage = STORE_STAGE_CREATED;
	c->state = STORE_STATE_SCHEDULED;
	c->nrecipients = 150;
	c->chunk_size = 64;
	c->nchunks = 3;
	c->rows = 160;
	c->rejected = 10;
	c->duplicates = 4;
	c->delivered = UINT64_C(0xfedcba9876543210);	/* past INT64_MAX */
	c->bounced = 2;
	c->deferrals = 3;
	c->inflight_at_crash = 1;
	c->generation = 7;
}

static int64_t
t_insert(struct store *s, const char *name, int64_t start_at)
{
	struct store_campaign c;

	t_campaign(&c, name, start_at);
	assert_int_equal(s->ops->campaign_insert(s, &c), 0);
	assert_true(c.id > 0);
	return c.id;
}

static void
t_assert_contains(const char *hay, const char *needle)
{
	if (strstr(hay, needle) == NULL)
		fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* Names. */

static void
test_names(void **state)
{
	static const struct {
		int		 value;
		const char	*name;
	} stages[] = {
		{ STORE_STAGE_CREATED, "created" },
		{ STORE_STAGE_PREPARED, "prepared" },
		{ STORE_STAGE_DELIVERING, "delivering" },
		{ STORE_STAGE_COMPLETE, "complete" },
		{ 500, "stage-500" },
		{ -1, "stage--1" },
	}, states[] = {
		{ STORE_STATE_SCHEDULED, "scheduled" },
		{ STORE_STATE_RUNNING, "running" },
		{ STORE_STATE_PAUSED, "paused" },
		{ STORE_STATE_CANCELLED, "cancelled" },
		{ STORE_STATE_DONE, "done" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(stages) / sizeof(stages[0]); i++)
		assert_string_equal(store_stage_name(stages[i].value),
		    stages[i].name);
	for (i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		assert_string_equal(store_state_name(states[i].value),
		    states[i].name);
		assert_int_equal(store_state_parse(states[i].name),
		    states[i].value);
	}
	assert_string_equal(store_state_name(9), "state-9");
	assert_int_equal(store_state_parse("Running"), -1);
	assert_int_equal(store_state_parse(""), -1);
	assert_int_equal(store_state_parse(NULL), -1);
}

/* Opening. */

static void
test_open_postgres(void **state)
{
	struct mr_buf err = MR_BUF_INIT;

	(void)state;
	assert_int_equal(t_open_err("postgres://mr:secret@db/mailroom", 0,
	    &err), -EPROTONOSUPPORT);
	t_assert_contains(mr_buf_cstr(&err), "PostgreSQL store not built yet");
	assert_null(strstr(mr_buf_cstr(&err), "secret"));
	assert_int_equal(t_open_err("", 0, &err), -EINVAL);
	mr_buf_release(&err);
}

static void
test_open_create_migrate_reopen(void **state)
{
	struct mr_buf err = MR_BUF_INIT;
	struct store_campaign c;
	struct store *s;
	char path[64];

	(void)state;
	t_temp(path, sizeof(path), false);
	/* Missing: only STORE_CREATE makes it. */
	assert_int_equal(t_open_err(path, 0, &err), -ENOENT);
	t_assert_contains(mr_buf_cstr(&err), "does not exist");
	t_assert_contains(mr_buf_cstr(&err), path);
	assert_int_equal(t_open_err(path, STORE_READONLY | STORE_CREATE,
	    &err), -ENOENT);
	assert_int_equal(access(path, F_OK), -1);

	s = t_open(path, STORE_CREATE, NULL);
	t_insert(s, "kept", 0);
	store_close(&s);
	assert_null(s);
	store_close(&s);		/* a closed store: nothing to do */
	assert_int_equal(t_hdr_get(path, T_HDR_VERSION),
	    STORE_SQLITE_SCHEMA_VERSION);
	assert_int_equal(t_hdr_get(path, T_HDR_APPID),
	    STORE_SQLITE_APPLICATION_ID);

	/* Reopening migrates nothing and keeps the data. */
	s = t_open(path, 0, NULL);
	assert_int_equal(s->ops->campaign_get(s, "kept", &c), 0);
	store_campaign_release(&c);
	store_close(&s);
	s = t_open(path, STORE_CREATE, NULL);
	store_close(&s);
	assert_int_equal(t_hdr_get(path, T_HDR_VERSION),
	    STORE_SQLITE_SCHEMA_VERSION);
	t_remove(path);
	mr_buf_release(&err);
}

static void
test_open_refusals(void **state)
{
	static const char junk[] = "This is not a database, it is a list of "
	    "addresses that someone named mailroom.db by mistake.\n";
	struct mr_buf err = MR_BUF_INIT;
	struct store *s;
	char path[64], want[256];
	int fd;

	(void)state;
	t_temp(path, sizeof(path), true);
	s = t_open(path, 0, NULL);
	store_close(&s);

	/* A newer schema. */
	t_hdr_set(path, T_HDR_VERSION, 7);
	assert_int_equal(t_open_err(path, 0, &err), -EIO);
	snprintf(want, sizeof(want), "store %s was written by a newer "
	    "mailroom (schema 7, this build knows %d)", path,
	    STORE_SQLITE_SCHEMA_VERSION);
	t_assert_contains(mr_buf_cstr(&err), want);
	assert_int_equal(t_open_err(path, STORE_READONLY, &err), -EIO);
	t_assert_contains(mr_buf_cstr(&err), want);
	assert_int_equal(t_hdr_get(path, T_HDR_VERSION), 7);	/* untouched */

	/*
	 * Another program's SQLite file (its application id), in rollback
	 * journal mode (header bytes 18, 19: 1; WAL: 2): refused, and left
	 * as it was, not switched to WAL.
	 */
	t_hdr_set(path, T_HDR_VERSION, STORE_SQLITE_SCHEMA_VERSION);
	t_hdr_set(path, T_HDR_APPID, 0x12345678);
	assert_int_equal(t_hdr_get(path, 16) & 0xffff, 0x0202);
	t_hdr_set(path, 16, (t_hdr_get(path, 16) & 0xffff0000) | 0x0101);
	assert_int_equal(t_open_err(path, 0, &err), -EIO);
	snprintf(want, sizeof(want), "%s is not a mailroom store", path);
	t_assert_contains(mr_buf_cstr(&err), want);
	assert_int_equal(t_hdr_get(path, 16) & 0xffff, 0x0101);
	/* Ours again: opening switches it back to WAL. */
	t_hdr_set(path, T_HDR_APPID, STORE_SQLITE_APPLICATION_ID);
	s = t_open(path, 0, NULL);
	assert_int_equal(t_hdr_get(path, 16) & 0xffff, 0x0202);
	store_close(&s);
	t_remove(path);

	/* Not SQLite at all. */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, junk, sizeof(junk) - 1),
	    (ssize_t)sizeof(junk) - 1);
	close(fd);
	assert_int_equal(t_open_err(path, 0, &err), -EIO);
	t_assert_contains(mr_buf_cstr(&err), "not a mailroom store");
	t_assert_contains(mr_buf_cstr(&err), path);
	assert_int_equal(t_open_err(path, STORE_READONLY, &err), -EIO);
	t_remove(path);

	/* Empty, read-only: nothing to read. */
	t_temp(path, sizeof(path), true);
	assert_int_equal(t_open_err(path, STORE_READONLY, &err), -EIO);
	t_assert_contains(mr_buf_cstr(&err), "not a mailroom store");
	t_remove(path);

	/* A directory. */
	assert_int_equal(t_open_err("/tmp", 0, &err), -EIO);
	mr_buf_release(&err);
}

static void
test_readonly_open(void **state)
{
	struct store_campaign c;
	struct store_account a = { "acme", 10, 60, 80, NULL };
	struct store *s;
	char path[64];

	(void)state;
	t_temp(path, sizeof(path), true);
	s = t_open(path, 0, NULL);
	t_insert(s, "ro", 0);
	store_close(&s);

	s = t_open(path, STORE_READONLY, NULL);
	assert_int_equal(s->ops->campaign_get(s, "ro", &c), 0);
	c.delivered = 5;
	assert_int_equal(s->ops->campaign_update(s, &c), -EROFS);
	t_assert_contains(store_error(s), "is read-only");
	t_assert_contains(store_error(s), path);
	t_assert_contains(store_error(s), "campaign_update");
	store_campaign_release(&c);
	assert_int_equal(s->ops->account_put(s, &a), -EROFS);
	/* A read transaction works; the error was reset by the call. */
	assert_int_equal(s->ops->begin(s), 0);
	assert_string_equal(store_error(s), "");
	assert_int_equal(s->ops->campaign_get(s, "ro", &c), 0);
	store_campaign_release(&c);
	assert_int_equal(s->ops->commit(s), 0);
	store_close(&s);
	t_remove(path);
}

/*
 * t_ro_child - in a child that cannot write dir (or file): store_open()
 * for writing must fail with a read-only error and say so.  Exit status:
 * 0 when it does.
 */
static int
t_ro_child(const char *path)
{
	struct mr_buf err = MR_BUF_INIT;
	struct store *s;
	int code = 0;

	s = store_open(path, 0, T_BUSY_MS, &err, &code);
	if (s != NULL)
		return 1;
	if (code != -EACCES && code != -EROFS)
		return 2;
	if (strstr(mr_buf_cstr(&err), "is read-only") == NULL ||
	    strstr(mr_buf_cstr(&err), path) == NULL)
		return 3;
	mr_buf_release(&err);
	return 0;
}

static int
t_ro_run(const char *path)
{
	pid_t pid;
	int status;

	if (geteuid() != 0)
		return t_ro_child(path);
	/*
	 * Root bypasses permissions, so access(2) would say yes: become
	 * nobody in a child and try there.
	 */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgroups(0, NULL) != 0 || setgid(T_NOBODY) != 0 ||
		    setuid(T_NOBODY) != 0)
			_exit(10);
		_exit(t_ro_child(path));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void
test_readonly_permissions(void **state)
{
	char dir[64], path[96];
	struct store *s;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mr-store-dir-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/mailroom.db", dir);
	s = t_open(path, STORE_CREATE, NULL);
	store_close(&s);

	/* The file is writable, its directory (-wal, -shm) is not. */
	assert_int_equal(chmod(path, 0666), 0);
	assert_int_equal(chmod(dir, 0555), 0);
	assert_int_equal(t_ro_run(path), 0);
	/* The file itself is not writable. */
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(chmod(path, 0444), 0);
	assert_int_equal(t_ro_run(path), 0);

	assert_int_equal(chmod(path, 0644), 0);
	t_remove(path);
	assert_int_equal(rmdir(dir), 0);
}

static double
t_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * A child holds the write lock for 2 s (an open transaction with a
 * write); the parent, with a 200 ms busy timeout, gets -EBUSY and
 * overwrites nothing.
 */
static void
test_locked(void **state)
{
	struct store_campaign c;
	struct store *s;
	char path[64], ok;
	int64_t id;
	double t0, dt;
	int pfd[2], status;
	pid_t pid;

	(void)state;
	t_temp(path, sizeof(path), true);
	s = t_open(path, 0, NULL);
	id = t_insert(s, "locked", 0);
	store_close(&s);

	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct mr_buf err = MR_BUF_INIT;
		int code;

		close(pfd[0]);
		s = store_open(path, 0, T_BUSY_MS, &err, &code);
		if (s == NULL || s->ops->begin(s) != 0 ||
		    s->ops->campaign_get(s, "locked", &c) != 0)
			_exit(1);
		c.delivered = 111;
		if (s->ops->campaign_update(s, &c) != 0)
			_exit(2);
		if (write(pfd[1], "x", 1) != 1)
			_exit(3);
		sleep(2);
		if (s->ops->commit(s) != 0)
			_exit(4);
		store_campaign_release(&c);
		store_close(&s);
		mr_buf_release(&err);
		_exit(0);
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], &ok, 1), 1);
	close(pfd[0]);

	/* Reading never waits for the writer (WAL). */
	s = t_open(path, 0, NULL);
	assert_int_equal(s->ops->campaign_get(s, "locked", &c), 0);
	assert_int_equal(c.delivered, UINT64_C(0xfedcba9876543210));
	c.delivered = 222;
	t0 = t_now();
	assert_int_equal(s->ops->campaign_update(s, &c), -EBUSY);
	dt = t_now() - t0;
	assert_true(dt >= 0.15 && dt < 1.5);
	t_assert_contains(store_error(s), path);
	t_assert_contains(store_error(s), "another process holds it");
	assert_int_equal(s->ops->begin(s), -EBUSY);
	assert_int_equal(s->ops->marks_replace(s, id, NULL, 0), -EBUSY);
	store_campaign_release(&c);

	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(s->ops->campaign_get(s, "locked", &c), 0);
	assert_int_equal(c.delivered, 111);	/* the child's, not ours */
	store_campaign_release(&c);
	store_close(&s);
	t_remove(path);
}

/* Campaigns. */

static int
t_collect_names(void *arg, const struct store_campaign *c)
{
	struct mr_buf *b = arg;

	mr_buf_printf(b, "%s,", c->name);
	return 0;
}

static int
t_stop_at_two(void *arg, const struct store_campaign *c)
{
	int *n = arg;

	(void)c;
	return ++*n == 2 ? 42 : 0;
}

static void
test_campaign_crud(void **state)
{
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_campaign c, g, dup;
	struct mr_buf b = MR_BUF_INIT;
	char key[32];
	int n = 0;

	t_campaign(&c, "spring-news", 100);
	assert_int_equal(s->ops->campaign_insert(s, &c), 0);
	assert_int_equal(c.id, 1);
	t_insert(s, "summer-news", 200);

	/* By name and by id: every field comes back. */
	snprintf(key, sizeof(key), "%lld", (long long)c.id);
	assert_int_equal(s->ops->campaign_get(s, key, &g), 0);
	store_campaign_release(&g);
	assert_int_equal(s->ops->campaign_get(s, "spring-news", &g), 0);
	assert_int_equal(g.id, c.id);
	assert_string_equal(g.name, c.name);
	assert_string_equal(g.template_path, c.template_path);
	assert_string_equal(g.list_path, c.list_path);
	assert_memory_equal(g.template_sha256, c.template_sha256, 65);
	assert_memory_equal(g.list_sha256, c.list_sha256, 65);
	assert_int_equal(g.list_size, c.list_size);
	assert_int_equal(g.list_mtime, c.list_mtime);
	assert_string_equal(g.account, c.account);
	assert_string_equal(g.options, c.options);
	assert_int_equal(g.created_at, c.created_at);
	assert_int_equal(g.start_at, 100);
	assert_int_equal(g.started_at, 0);
	assert_int_equal(g.stage, STORE_STAGE_CREATED);
	assert_int_equal(g.state, STORE_STATE_SCHEDULED);
	assert_int_equal(g.nrecipients, 150);
	assert_int_equal(g.chunk_size, 64);
	assert_int_equal(g.nchunks, 3);
	assert_int_equal(g.rows, 160);
	assert_int_equal(g.rejected, 10);
	assert_int_equal(g.duplicates, 4);
	assert_true(g.delivered == UINT64_C(0xfedcba9876543210));
	assert_int_equal(g.bounced, 2);
	assert_int_equal(g.deferrals, 3);
	assert_int_equal(g.inflight_at_crash, 1);
	assert_int_equal(g.generation, 7);
	assert_null(g.owner);
	assert_int_equal(g.lease_until, 0);
	assert_null(g.summary);

	/* Update: everything but id, name and created_at. */
	g.name[0] = 'S';
	g.created_at = 1;
	free(g.template_path);
	g.template_path = strdup("/srv/t/other.tmpl");
	free(g.account);
	g.account = strdup("");		/* "" is none */
	g.stage = STORE_STAGE_DELIVERING;
	g.state = STORE_STATE_PAUSED;
	g.started_at = 150;
	g.delivered = 99;
	g.summary = strdup("delivered=99");
	assert_int_equal(s->ops->campaign_update(s, &g), 0);
	store_campaign_release(&g);
	assert_int_equal(s->ops->campaign_get(s, "Spring-news", &g), -ENOENT);
	t_assert_contains(store_error(s), "no campaign Spring-news");
	assert_int_equal(s->ops->campaign_get(s, key, &g), 0);
	assert_string_equal(g.name, "spring-news");
	assert_int_equal(g.created_at, c.created_at);
	assert_string_equal(g.template_path, "/srv/t/other.tmpl");
	assert_null(g.account);
	assert_int_equal(g.stage, STORE_STAGE_DELIVERING);
	assert_int_equal(g.state, STORE_STATE_PAUSED);
	assert_int_equal(g.started_at, 150);
	assert_int_equal(g.delivered, 99);
	assert_string_equal(g.summary, "delivered=99");
	g.state = 17;
	assert_int_equal(s->ops->campaign_update(s, &g), -EINVAL);
	g.state = STORE_STATE_DONE;
	g.id = 999;
	assert_int_equal(s->ops->campaign_update(s, &g), -ENOENT);
	store_campaign_release(&g);

	/* Names: unique, not all digits; unknown keys. */
	t_campaign(&dup, "summer-news", 0);
	assert_int_equal(s->ops->campaign_insert(s, &dup), -EEXIST);
	t_assert_contains(store_error(s), "summer-news");
	t_assert_contains(store_error(s), fx->path);
	t_campaign(&dup, "2024", 0);
	assert_int_equal(s->ops->campaign_insert(s, &dup), -EINVAL);
	t_campaign(&dup, "", 0);
	assert_int_equal(s->ops->campaign_insert(s, &dup), -EINVAL);
	assert_int_equal(s->ops->campaign_get(s, "999", &g), -ENOENT);
	assert_int_equal(s->ops->campaign_get(s,
	    "99999999999999999999999", &g), -ENOENT);
	assert_int_equal(s->ops->campaign_get(s, "autumn", &g), -ENOENT);

	/* List: by id; a callback's non-zero return stops it. */
	t_insert(s, "autumn-news", 50);
	assert_int_equal(s->ops->campaign_list(s, t_collect_names, &b), 0);
	assert_string_equal(mr_buf_cstr(&b),
	    "spring-news,summer-news,autumn-news,");
	assert_int_equal(s->ops->campaign_list(s, t_stop_at_two, &n), 42);
	assert_int_equal(n, 2);
	mr_buf_release(&b);
}

static void
test_campaign_lease(void **state)
{
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_campaign g;
	char *holder = (char *)"junk";
	int64_t id;

	id = t_insert(s, "leased", 0);
	assert_int_equal(s->ops->campaign_claim(s, id, "host-a:1", 1030, 1000,
	    &holder), 0);
	assert_null(holder);
	assert_int_equal(s->ops->campaign_get(s, "leased", &g), 0);
	assert_int_equal(g.state, STORE_STATE_RUNNING);
	assert_string_equal(g.owner, "host-a:1");
	assert_int_equal(g.lease_until, 1030);
	store_campaign_release(&g);

	/* Held: refused, with the holder. */
	assert_int_equal(s->ops->campaign_claim(s, id, "host-b:2", 1040, 1010,
	    &holder), -EBUSY);
	assert_string_equal(holder, "host-a:1");
	t_assert_contains(store_error(s), "leased to host-a:1 until 1030");
	free(holder);
	/* Still held at the last second of the lease. */
	assert_int_equal(s->ops->campaign_claim(s, id, "host-b:2", 1060, 1030,
	    NULL), -EBUSY);
	/* Renewal by the holder. */
	assert_int_equal(s->ops->campaign_claim(s, id, "host-a:1", 1050, 1020,
	    &holder), 0);
	assert_null(holder);
	/* Taken over once the lease ran out. */
	assert_int_equal(s->ops->campaign_claim(s, id, "host-b:2", 1081, 1051,
	    &holder), 0);
	assert_int_equal(s->ops->campaign_claim(s, id, "host-a:1", 1090, 1060,
	    &holder), -EBUSY);
	assert_string_equal(holder, "host-b:2");
	free(holder);
	assert_int_equal(s->ops->campaign_claim(s, 999, "host-a:1", 1090, 1060,
	    &holder), -ENOENT);
	assert_null(holder);

	/* Release: only by the holder. */
	assert_int_equal(s->ops->campaign_release(s, id, "host-a:1",
	    STORE_STATE_PAUSED), -EBUSY);
	t_assert_contains(store_error(s), "host-b:2");
	assert_int_equal(s->ops->campaign_release(s, id, "host-b:2",
	    STORE_STATE_PAUSED), 0);
	assert_int_equal(s->ops->campaign_get(s, "leased", &g), 0);
	assert_int_equal(g.state, STORE_STATE_PAUSED);
	assert_null(g.owner);
	assert_int_equal(g.lease_until, 0);
	store_campaign_release(&g);
	assert_int_equal(s->ops->campaign_release(s, id, "host-b:2",
	    STORE_STATE_DONE), -EBUSY);
	assert_int_equal(s->ops->campaign_release(s, 999, "host-b:2",
	    STORE_STATE_DONE), -ENOENT);
	assert_int_equal(s->ops->campaign_release(s, id, "host-b:2", -1),
	    -EINVAL);
}

static void
test_campaign_due(void **state)
{
	static const struct {
		const char	*name;
		int64_t		 start_at;
		int		 state;
		int64_t		 lease_until;
		bool		 due;
	} rows[] = {
		{ "later", 300, STORE_STATE_SCHEDULED, 0, true },
		{ "sooner", 100, STORE_STATE_SCHEDULED, 0, true },
		{ "between", 200, STORE_STATE_SCHEDULED, 0, true },
		{ "on-time", 1000, STORE_STATE_SCHEDULED, 0, true },
		{ "future", 1001, STORE_STATE_SCHEDULED, 0, false },
		{ "paused", 50, STORE_STATE_PAUSED, 0, false },
		{ "dead-sender", 10, STORE_STATE_RUNNING, 999, true },
		{ "live-sender", 20, STORE_STATE_RUNNING, 1000, false },
		{ "cancelled", 5, STORE_STATE_CANCELLED, 0, false },
		{ "done", 5, STORE_STATE_DONE, 0, false },
	};
	/* Expected order: by start_at. */
	static const char *const order[] = {
		"dead-sender", "sooner", "between", "later", "on-time",
	};
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_campaign c, g;
	int64_t ids[16];
	size_t i, n;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		t_campaign(&c, rows[i].name, rows[i].start_at);
		c.state = rows[i].state;
		c.owner = rows[i].lease_until ? "x" : NULL;
		c.lease_until = rows[i].lease_until;
		assert_int_equal(s->ops->campaign_insert(s, &c), 0);
	}
	assert_int_equal(s->ops->campaign_due(s, 1000, ids, 16, &n), 0);
	assert_int_equal(n, sizeof(order) / sizeof(order[0]));
	for (i = 0; i < n; i++) {
		char key[32];

		snprintf(key, sizeof(key), "%lld", (long long)ids[i]);
		assert_int_equal(s->ops->campaign_get(s, key, &g), 0);
		assert_string_equal(g.name, order[i]);
		store_campaign_release(&g);
	}
	assert_int_equal(s->ops->campaign_due(s, 1000, ids, 2, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(s->ops->campaign_due(s, 1000, ids, 0, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(s->ops->campaign_due(s, 0, ids, 16, &n), 0);
	assert_int_equal(n, 0);
}

/* Chunks. */

static int
t_chunks_load(struct store *s, int64_t id, uint8_t *bits, size_t n)
{
	return s->ops->chunks_load(s, id, bits, n, NULL, NULL);
}

static int
t_chunk_save(struct store *s, int64_t id, uint32_t c, const uint8_t *bits,
    size_t n, uint32_t ndone)
{
	return s->ops->chunk_save(s, id, c, bits, n, ndone, NULL, 0);
}

static void
test_chunks(void **state)
{
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	uint8_t bits[3 * 8], want[3 * 8], big[10 * 512];
	int64_t id;
	size_t i;

	id = t_insert(s, "chunky", 0);
	/* 150 recipients, 64 a chunk: 3 chunks of 8 bytes, the last too. */
	assert_int_equal(s->ops->chunks_init(s, id, 3, 64, 150), 0);
	memset(bits, 0xee, sizeof(bits));
	assert_int_equal(t_chunks_load(s, id, bits, sizeof(bits)), 0);
	memset(want, 0, sizeof(want));
	assert_memory_equal(bits, want, sizeof(bits));

	memset(want + 8, 0x5a, 8);
	assert_int_equal(t_chunk_save(s, id, 1, want + 8, 8, 32), 0);
	want[16] = 0x81;
	assert_int_equal(t_chunk_save(s, id, 2, want + 16, 8, 2), 0);
	assert_int_equal(t_chunks_load(s, id, bits, sizeof(bits)), 0);
	assert_memory_equal(bits, want, sizeof(bits));

	/* Sizes must match. */
	assert_int_equal(t_chunk_save(s, id, 1, want, 7, 0), -EIO);
	t_assert_contains(store_error(s), "holds 8 bytes, not 7");
	assert_int_equal(t_chunk_save(s, id, 3, want, 8, 0), -ENOENT);
	assert_int_equal(t_chunks_load(s, id, bits, 16), -EIO);
	assert_int_equal(t_chunks_load(s, id, bits, 24), 0);
	assert_int_equal(t_chunks_load(s, 999, bits, 24), -ENOENT);
	assert_int_equal(t_chunks_load(s, 999, bits, 0), 0);

	/* Bad geometry; unknown campaign. */
	assert_int_equal(s->ops->chunks_init(s, id, 2, 64, 150), -EINVAL);
	assert_int_equal(s->ops->chunks_init(s, id, 13, 12, 150), -EINVAL);
	assert_int_equal(s->ops->chunks_init(s, id, 0, 0, 0), -EINVAL);
	assert_int_equal(s->ops->chunks_init(s, 999, 3, 64, 150), -ENOENT);
	assert_int_equal(t_chunks_load(s, id, bits, 24), 0);
	assert_memory_equal(bits, want, sizeof(bits));	/* unchanged */

	/* Made again: 10 chunks of 4096 recipients, all zero. */
	assert_int_equal(s->ops->chunks_init(s, id, 10, 4096, 40000), 0);
	for (i = 0; i < 10; i++) {
		memset(big + i * 512, (int)i + 1, 512);
		assert_int_equal(t_chunk_save(s, id, (uint32_t)i,
		    big + i * 512, 512, 4096), 0);
	}
	memset(bits, 0, sizeof(bits));
	{
		uint8_t back[10 * 512];

		assert_int_equal(t_chunks_load(s, id, back,
		    sizeof(back)), 0);
		assert_memory_equal(back, big, sizeof(big));
	}
	assert_int_equal(s->ops->chunks_init(s, id, 0, 64, 0), 0);
	assert_int_equal(t_chunks_load(s, id, bits, 0), 0);
}

/* Visit state: opaque blobs per chunk, kept with the bit vectors. */

struct t_visits {
	uint32_t	chunk[8];
	uint8_t		blob[8][8];
	size_t		len[8];
	size_t		n;
	size_t		stop_at;	/* 0: never */
};

static int
t_collect_visits(void *arg, uint32_t chunk, const uint8_t *v, size_t len)
{
	struct t_visits *t = arg;

	if (t->n == 8 || len > 8)
		return -1;
	t->chunk[t->n] = chunk;
	memcpy(t->blob[t->n], v, len);
	t->len[t->n++] = len;
	return t->stop_at != 0 && t->n == t->stop_at ? 7 : 0;
}

static void
t_load_visits(struct store *s, int64_t id, struct t_visits *t)
{
	uint8_t bits[3 * 8];

	memset(t, 0, sizeof(*t));
	assert_int_equal(s->ops->chunks_load(s, id, bits, sizeof(bits),
	    t_collect_visits, t), 0);
}

static void
test_visits(void **state)
{
	static const uint8_t zero[8], one[8] = { 1 };
	static const uint8_t a[] = { 1, 2, 3 }, b[] = { 9, 8, 7, 6, 5 };
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct t_visits t;
	uint8_t bits[3 * 8];
	int64_t id;

	id = t_insert(s, "visits", 0);
	assert_int_equal(s->ops->chunks_init(s, id, 3, 64, 150), 0);
	t_load_visits(s, id, &t);
	assert_int_equal(t.n, 0);

	assert_int_equal(s->ops->chunk_save(s, id, 2, zero, 8, 0, a, 3), 0);
	assert_int_equal(s->ops->chunk_save(s, id, 0, one, 8, 1, b, 5), 0);
	t_load_visits(s, id, &t);
	assert_int_equal(t.n, 2);
	/* In chunk order, as saved. */
	assert_int_equal(t.chunk[0], 0);
	assert_int_equal(t.len[0], 5);
	assert_memory_equal(t.blob[0], b, 5);
	assert_int_equal(t.chunk[1], 2);
	assert_int_equal(t.len[1], 3);
	assert_memory_equal(t.blob[1], a, 3);
	assert_int_equal(s->ops->chunks_load(s, id, bits, sizeof(bits), NULL,
	    NULL), 0);
	assert_int_equal(bits[0], 1);

	/* Inside a transaction that is rolled back: nothing changes. */
	assert_int_equal(s->ops->begin(s), 0);
	assert_int_equal(s->ops->chunk_save(s, id, 2, zero, 8, 0, NULL, 0),
	    0);
	t_load_visits(s, id, &t);
	assert_int_equal(t.n, 1);
	assert_int_equal(s->ops->rollback(s), 0);
	t_load_visits(s, id, &t);
	assert_int_equal(t.n, 2);

	/* Cleared (NULL, or a length of 0), committed. */
	assert_int_equal(s->ops->begin(s), 0);
	assert_int_equal(s->ops->chunk_save(s, id, 2, zero, 8, 0, NULL, 0),
	    0);
	assert_int_equal(s->ops->chunk_save(s, id, 0, one, 8, 1, b, 0), 0);
	assert_int_equal(s->ops->chunk_save(s, id, 1, zero, 8, 0, a, 3), 0);
	assert_int_equal(s->ops->commit(s), 0);
	t_load_visits(s, id, &t);
	assert_int_equal(t.n, 1);
	assert_int_equal(t.chunk[0], 1);

	/* A failed save changes nothing. */
	assert_int_equal(s->ops->chunk_save(s, id, 1, zero, 7, 0, b, 5),
	    -EIO);
	t_load_visits(s, id, &t);
	assert_int_equal(t.n, 1);
	assert_memory_equal(t.blob[0], a, 3);

	/* The callback stops the load; its value comes back. */
	assert_int_equal(s->ops->chunk_save(s, id, 2, zero, 8, 0, b, 5), 0);
	memset(&t, 0, sizeof(t));
	t.stop_at = 1;
	assert_int_equal(s->ops->chunks_load(s, id, bits, sizeof(bits),
	    t_collect_visits, &t), 7);
	assert_int_equal(t.n, 1);

	/* Chunks made again have none. */
	assert_int_equal(s->ops->chunks_init(s, id, 3, 64, 150), 0);
	t_load_visits(s, id, &t);
	assert_int_equal(t.n, 0);

	/* Transaction misuse. */
	assert_int_equal(s->ops->commit(s), -EIO);
	assert_int_equal(s->ops->begin(s), 0);
	assert_int_equal(s->ops->begin(s), -EIO);
	assert_int_equal(s->ops->rollback(s), 0);
	assert_int_equal(s->ops->rollback(s), 0);
}

/* Journal marks. */

static void
test_marks(void **state)
{
	static const struct store_mark marks[] = {
		{ 2, 1, 500 }, { 1, 0, 10 }, { 2, 0, UINT64_MAX }, { 1, 1, 20 },
	};
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_mark v[8];
	int64_t id;
	size_t n;

	id = t_insert(s, "marked", 0);
	assert_int_equal(s->ops->marks_replace(s, id, marks, 4), 0);
	assert_int_equal(s->ops->marks_load(s, id, v, 8, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(v[0].generation, 1);
	assert_int_equal(v[0].writer, 0);
	assert_int_equal(v[0].seq, 10);
	assert_int_equal(v[1].writer, 1);
	assert_int_equal(v[2].generation, 2);
	assert_true(v[2].seq == UINT64_MAX);
	assert_int_equal(v[3].seq, 500);
	/* Too many for the caller's array: said, not cut silently. */
	assert_int_equal(s->ops->marks_load(s, id, v, 3, &n), -ENOBUFS);
	assert_int_equal(n, 3);
	assert_int_equal(s->ops->marks_replace(s, id, marks, 1), 0);
	assert_int_equal(s->ops->marks_load(s, id, v, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].seq, 500);
	assert_int_equal(s->ops->marks_replace(s, id, marks + 1, 0), 0);
	assert_int_equal(s->ops->marks_load(s, id, v, 8, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(s->ops->marks_replace(s, 999, marks, 1), -ENOENT);
}

/* Accounts. */

static int
t_collect_accounts(void *arg, const struct store_account *a)
{
	mr_buf_printf(arg, "%s:%llu,", a->name,
	    (unsigned long long)a->allowance);
	return 0;
}

static void
test_accounts(void **state)
{
	static const struct {
		struct store_account	a;
		int			rc;
	} rows[] = {
		{ { "zeta", 1000, 86400, 80, NULL }, 0 },
		{ { "acme", 500, 3600, 90, NULL }, 0 },
		{ { "acme", 700, 3600, 75, NULL }, 0 },	/* replaces */
		{ { "", 1, 1, 1, NULL }, -EINVAL },
		{ { "bad-period", 1, 0, 50, NULL }, -EINVAL },
		{ { "bad-warn", 1, 60, 0, NULL }, -EINVAL },
		{ { "bad-warn", 1, 60, 101, NULL }, -EINVAL },
	};
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_account a;
	struct store_quota q;
	struct mr_buf b = MR_BUF_INIT;
	size_t i;
	int64_t id;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		assert_int_equal(s->ops->account_put(s, &rows[i].a),
		    rows[i].rc);
	assert_int_equal(s->ops->account_get(s, "acme", &a), 0);
	assert_string_equal(a.name, "acme");
	assert_int_equal(a.allowance, 700);
	assert_int_equal(a.period, 3600);
	assert_int_equal(a.warn_pct, 75);
	store_account_release(&a);
	assert_null(a.name);
	assert_int_equal(s->ops->account_get(s, "nobody", &a), -ENOENT);
	t_assert_contains(store_error(s), "no account nobody");
	assert_int_equal(s->ops->account_list(s, t_collect_accounts, &b), 0);
	assert_string_equal(mr_buf_cstr(&b), "acme:700,zeta:1000,");

	/* Not removed while a campaign holds a reservation of it. */
	id = t_insert(s, "acme-news", 0);
	assert_int_equal(s->ops->quota_admit(s, "zeta", id, 10, 0, &q), 0);
	assert_int_equal(s->ops->account_remove(s, "zeta"), -EBUSY);
	t_assert_contains(store_error(s), "campaigns hold reservations");
	assert_int_equal(s->ops->quota_release(s, id), 0);
	assert_int_equal(s->ops->account_remove(s, "zeta"), 0);
	assert_int_equal(s->ops->account_remove(s, "zeta"), -ENOENT);
	mr_buf_reset(&b);
	assert_int_equal(s->ops->account_list(s, t_collect_accounts, &b), 0);
	assert_string_equal(mr_buf_cstr(&b), "acme:700,");
	mr_buf_release(&b);
}

/* Quotas. */

#define T_T0		1699999200	/* a multiple of 3600 */
#define T_HOUR		3600

static void
t_quota_is(struct store *s, int64_t now, uint64_t used, uint64_t reserved)
{
	struct store_quota q;

	assert_int_equal(s->ops->quota_get(s, "acme", now, &q), 0);
	assert_int_equal(q.allowance, 100);
	assert_int_equal(q.period, T_HOUR);
	assert_int_equal(q.period_start, now - now % T_HOUR);
	assert_int_equal(q.warn_pct, 80);
	assert_int_equal(q.need, 0);
	assert_int_equal(q.used, used);
	assert_int_equal(q.reserved, reserved);
}

static void
test_quota_admit(void **state)
{
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_account a = { "acme", 100, T_HOUR, 80, NULL };
	struct store_quota q;
	int64_t c1, c2, now = T_T0 + 10;

	assert_int_equal(s->ops->account_put(s, &a), 0);
	c1 = t_insert(s, "one", 0);
	c2 = t_insert(s, "two", 0);
	t_quota_is(s, now, 0, 0);

	/* Fits. */
	assert_int_equal(s->ops->quota_admit(s, "acme", c1, 60, now, &q), 0);
	assert_int_equal(q.allowance, 100);
	assert_int_equal(q.period_start, T_T0);
	assert_int_equal(q.used, 0);
	assert_int_equal(q.reserved, 0);
	assert_int_equal(q.need, 60);
	t_quota_is(s, now, 0, 60);

	/* Refused, with the numbers; nothing changed. */
	assert_int_equal(s->ops->quota_admit(s, "acme", c2, 50, now, &q),
	    -EDQUOT);
	assert_int_equal(q.reserved, 60);
	assert_int_equal(q.need, 50);
	assert_int_equal(q.allowance, 100);
	t_assert_contains(store_error(s), "account acme");
	t_assert_contains(store_error(s), "reserved 60 + need 50 > allowance "
	    "100");
	t_quota_is(s, now, 0, 60);

	/* Two campaigns of one account; exactly full. */
	assert_int_equal(s->ops->quota_admit(s, "acme", c2, 40, now, &q), 0);
	t_quota_is(s, now, 0, 100);
	/* Re-admission replaces the campaign's reservation. */
	assert_int_equal(s->ops->quota_admit(s, "acme", c1, 30, now, &q), 0);
	assert_int_equal(q.reserved, 40);	/* the others' */
	t_quota_is(s, now, 0, 70);
	assert_int_equal(s->ops->quota_admit(s, "acme", c1, 61, now, &q),
	    -EDQUOT);
	t_quota_is(s, now, 0, 70);

	/* Inside a transaction that is rolled back. */
	assert_int_equal(s->ops->begin(s), 0);
	assert_int_equal(s->ops->quota_admit(s, "acme", c1, 60, now, &q), 0);
	t_quota_is(s, now, 0, 100);
	assert_int_equal(s->ops->rollback(s), 0);
	t_quota_is(s, now, 0, 70);

	/* Unknown account or campaign. */
	assert_int_equal(s->ops->quota_admit(s, "nobody", c1, 1, now, &q),
	    -ENOENT);
	assert_int_equal(s->ops->quota_get(s, "nobody", now, &q), -ENOENT);
	assert_int_equal(s->ops->quota_admit(s, "acme", 999, 1, now, &q),
	    -ENOENT);
	t_quota_is(s, now, 0, 70);
}

static void
test_quota_consume(void **state)
{
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_account a = { "acme", 100, T_HOUR, 80, NULL };
	struct store_quota q;
	int64_t c1, c2, now = T_T0 + 10;

	assert_int_equal(s->ops->account_put(s, &a), 0);
	c1 = t_insert(s, "one", 0);
	c2 = t_insert(s, "two", 0);
	assert_int_equal(s->ops->quota_admit(s, "acme", c1, 30, now, &q), 0);
	assert_int_equal(s->ops->quota_admit(s, "acme", c2, 40, now, &q), 0);

	/* Moves from reserved to used. */
	assert_int_equal(s->ops->quota_consume(s, c1, 20), 0);
	t_quota_is(s, now, 20, 50);
	assert_int_equal(s->ops->quota_consume(s, c1, 0), 0);
	t_quota_is(s, now, 20, 50);
	/* Past the reservation: all counts in used, reserved goes to 0. */
	assert_int_equal(s->ops->quota_consume(s, c1, 15), 0);
	t_quota_is(s, now, 35, 40);
	assert_int_equal(s->ops->quota_consume(s, c1, 5), 0);
	t_quota_is(s, now, 40, 40);
	/* A later admission sees what was used. */
	assert_int_equal(s->ops->quota_admit(s, "acme", c1, 21, now, &q),
	    -EDQUOT);
	assert_int_equal(q.used, 40);
	assert_int_equal(s->ops->quota_admit(s, "acme", c1, 20, now, &q), 0);
	t_quota_is(s, now, 40, 60);

	/* Release drops what is left. */
	assert_int_equal(s->ops->quota_release(s, c2), 0);
	t_quota_is(s, now, 40, 20);
	assert_int_equal(s->ops->quota_release(s, c2), 0);
	assert_int_equal(s->ops->quota_consume(s, c2, 1), -ENOENT);
	t_assert_contains(store_error(s), "no quota reservation");
	t_quota_is(s, now, 40, 20);

	/* Inside a snapshot that is rolled back. */
	assert_int_equal(s->ops->begin(s), 0);
	assert_int_equal(s->ops->quota_consume(s, c1, 5), 0);
	assert_int_equal(s->ops->rollback(s), 0);
	t_quota_is(s, now, 40, 20);
}

static void
test_quota_rollover(void **state)
{
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_account a = { "acme", 100, T_HOUR, 80, NULL };
	struct store_quota q;
	int64_t c1, c2, t = T_T0 + 3000;

	assert_int_equal(s->ops->account_put(s, &a), 0);
	c1 = t_insert(s, "one", 0);
	c2 = t_insert(s, "two", 0);
	assert_int_equal(s->ops->quota_admit(s, "acme", c1, 100, t, &q), 0);
	assert_int_equal(q.period_start, T_T0);
	assert_int_equal(s->ops->quota_consume(s, c1, 30), 0);
	t_quota_is(s, t, 30, 70);
	assert_int_equal(s->ops->quota_admit(s, "acme", c2, 1, t, &q),
	    -EDQUOT);

	/* The next period starts empty. */
	t_quota_is(s, t + T_HOUR, 0, 0);
	t_quota_is(s, T_T0 + T_HOUR, 0, 0);
	t_quota_is(s, T_T0 + T_HOUR - 1, 30, 70);
	assert_int_equal(s->ops->quota_admit(s, "acme", c2, 100, t + T_HOUR,
	    &q), 0);
	assert_int_equal(q.period_start, T_T0 + T_HOUR);
	assert_int_equal(q.reserved, 0);

	/* c1 still consumes in the period it was admitted in. */
	assert_int_equal(s->ops->quota_consume(s, c1, 10), 0);
	t_quota_is(s, t, 40, 60);
	t_quota_is(s, t + T_HOUR, 0, 100);
	/* Admitted again, its reservation moves to the new period. */
	assert_int_equal(s->ops->quota_release(s, c2), 0);
	assert_int_equal(s->ops->quota_admit(s, "acme", c1, 60, t + T_HOUR,
	    &q), 0);
	t_quota_is(s, t, 40, 0);
	t_quota_is(s, t + T_HOUR, 0, 60);
}

static int
t_collect_verifiers(void *arg, const struct store_account *a)
{
	mr_buf_printf(arg, "%s:%s,", a->name, a->verifier != NULL ?
	    a->verifier : "-");
	return 0;
}

/* An account's password: a verifier or none, never anything in clear. */
static void
test_account_verifier(void **state)
{
	static const char v1[] = "$pbkdf2-sha256$1000$c2FsdA==$aGFzaA==";
	static const char v2[] = "$pbkdf2-sha256$2000$c2FsdDI=$aGFzaDI=";
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_account a = { "acme", 100, 3600, 80, (char *)v1 };
	struct store_account b = { "beta", 5, 60, 50, NULL };
	struct store_account got;
	struct store_quota q;
	struct mr_buf l = MR_BUF_INIT;

	assert_int_equal(s->ops->account_put(s, &a), 0);
	assert_int_equal(s->ops->account_put(s, &b), 0);
	assert_int_equal(s->ops->account_get(s, "acme", &got), 0);
	assert_string_equal(got.verifier, v1);
	assert_int_equal(got.allowance, 100);
	store_account_release(&got);
	assert_null(got.verifier);
	assert_int_equal(s->ops->account_get(s, "beta", &got), 0);
	assert_null(got.verifier);
	store_account_release(&got);
	assert_int_equal(s->ops->account_list(s, t_collect_verifiers, &l), 0);
	assert_string_equal(mr_buf_cstr(&l), "acme:$pbkdf2-sha256$1000$"
	    "c2FsdA==$aGFzaA==,beta:-,");

	/* A password in clear, or an empty one, is refused; nothing moves. */
	a.verifier = "hunter2";
	assert_int_equal(s->ops->account_put(s, &a), -EINVAL);
	t_assert_contains(store_error(s), "must be given as a verifier");
	a.verifier = "";
	assert_int_equal(s->ops->account_put(s, &a), -EINVAL);
	assert_int_equal(s->ops->account_get(s, "acme", &got), 0);
	assert_string_equal(got.verifier, v1);
	store_account_release(&got);

	/* Replaced, then removed; the quota reads as before. */
	a.verifier = (char *)v2;
	assert_int_equal(s->ops->account_put(s, &a), 0);
	assert_int_equal(s->ops->account_get(s, "acme", &got), 0);
	assert_string_equal(got.verifier, v2);
	store_account_release(&got);
	a.verifier = NULL;
	assert_int_equal(s->ops->account_put(s, &a), 0);
	assert_int_equal(s->ops->account_get(s, "acme", &got), 0);
	assert_null(got.verifier);
	store_account_release(&got);
	assert_int_equal(s->ops->quota_get(s, "acme", T_T0, &q), 0);
	assert_int_equal(q.allowance, 100);
	mr_buf_release(&l);
}

/*
 * No quota: STORE_ALLOWANCE_UNLIMITED admits any need, however much is
 * used and reserved, and still counts what is used.
 */
static void
test_quota_unlimited(void **state)
{
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_account a = { "free", STORE_ALLOWANCE_UNLIMITED, 86400,
	    80, NULL };
	struct store_account got;
	struct store_quota q;
	int64_t c1, c2, now = T_T0 + 10;

	assert_int_equal(s->ops->account_put(s, &a), 0);
	assert_int_equal(s->ops->account_get(s, "free", &got), 0);
	assert_true(got.allowance == STORE_ALLOWANCE_UNLIMITED);
	store_account_release(&got);
	c1 = t_insert(s, "one", 0);
	c2 = t_insert(s, "two", 0);
	assert_int_equal(s->ops->quota_admit(s, "free", c1, INT64_MAX, now,
	    &q), 0);
	assert_true(q.allowance == STORE_ALLOWANCE_UNLIMITED);
	assert_int_equal(s->ops->quota_admit(s, "free", c2, INT64_MAX, now,
	    &q), 0);
	assert_true(q.reserved == INT64_MAX);
	assert_int_equal(s->ops->quota_admit(s, "free", c1, 1000, now, &q),
	    0);
	assert_int_equal(s->ops->quota_consume(s, c1, 1000), 0);
	assert_int_equal(s->ops->quota_get(s, "free", now, &q), 0);
	assert_true(q.allowance == STORE_ALLOWANCE_UNLIMITED);
	assert_int_equal(q.used, 1000);
	assert_true(q.reserved == INT64_MAX);
}

/* Connection settings and schema, through the test hook. */

static void
t_sql_is(struct store *s, const char *sql, const char *want)
{
	char buf[256];

	assert_int_equal(store_sqlite_test_sql(s, sql, buf, sizeof(buf)), 0);
	if (strcmp(buf, want) != 0)
		fail_msg("%s: \"%s\", not \"%s\"", sql, buf, want);
}

static void
test_settings(void **state)
{
	static const struct {
		const char	*sql;
		const char	*want;
	} rows[] = {
		{ "PRAGMA journal_mode", "wal" },
		{ "PRAGMA synchronous", "2" },		/* FULL */
		{ "PRAGMA foreign_keys", "1" },
		{ "PRAGMA busy_timeout", "200" },
		{ "PRAGMA integrity_check", "ok" },
		{ "PRAGMA foreign_key_check", "" },
		{ "SELECT group_concat(name, ',') FROM (SELECT name FROM "
		  "sqlite_master WHERE type = 'table' ORDER BY name)",
		  "accounts,campaigns,chunks,journal_marks,quota_reservations,"
		  "quota_usage,registry_accounts,registry_meta,registry_users,"
		  "sqlite_sequence" },
		{ "SELECT group_concat(name, ',') FROM (SELECT name FROM "
		  "sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
		  "ORDER BY name)",
		  "campaigns_due,quota_reservations_account,"
		  "registry_accounts_user" },
	};
	struct t_fx *fx = *state;
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		t_sql_is(fx->s, rows[i].sql, rows[i].want);
}

/* Deleting a campaign (no operation yet) takes its rows with it. */
/*
 * A store that an older mailroom left (made by the shipped migration
 * steps up to its schema, then filled): opening it for writing migrates
 * it and keeps what it holds, and its accounts have no password.
 * Read-only, it is refused and left as it was.
 */
static void
test_migrate_old_schema(void **state)
{
	static const char fill[] =
	    "INSERT INTO accounts (name, allowance, period, warn_pct) "
	    "VALUES ('acme', 1000, 86400, 90), ('beta', 5, 3600, 80);"
	    "INSERT INTO quota_usage (account, period_start, used) "
	    "VALUES ('acme', 1699920000, 42);"
	    "INSERT INTO campaigns (name, created_at, stage, state, account) "
	    "VALUES ('old', 1700000000, 100, 0, 'acme');";
	static const char v[] = "$pbkdf2-sha256$1000$c2FsdA==$aGFzaA==";
	struct mr_buf err = MR_BUF_INIT, l = MR_BUF_INIT;
	struct store_account a;
	struct store_campaign c;
	struct store_quota q;
	struct store *s;
	char path[64], want[16];
	int version;

	(void)state;
	snprintf(want, sizeof(want), "%d", STORE_SQLITE_SCHEMA_VERSION);
	for (version = 1; version < STORE_SQLITE_SCHEMA_VERSION; version++) {
		t_temp(path, sizeof(path), false);
		if (store_sqlite_test_create(path, version, fill, &err) != 0)
			fail_msg("%s", mr_buf_cstr(&err));
		assert_int_equal(t_hdr_get(path, T_HDR_VERSION), version);
		assert_int_equal(t_open_err(path, STORE_READONLY, &err),
		    -EROFS);
		t_assert_contains(mr_buf_cstr(&err), "needs its schema "
		    "migrated");
		assert_int_equal(t_hdr_get(path, T_HDR_VERSION), version);

		s = t_open(path, 0, NULL);
		t_sql_is(s, "PRAGMA user_version", want);
		t_sql_is(s, "PRAGMA integrity_check", "ok");
		t_sql_is(s, "PRAGMA foreign_key_check", "");
		assert_int_equal(s->ops->account_get(s, "acme", &a), 0);
		assert_int_equal(a.allowance, 1000);
		assert_int_equal(a.period, 86400);
		assert_int_equal(a.warn_pct, 90);
		assert_null(a.verifier);
		store_account_release(&a);
		mr_buf_reset(&l);
		assert_int_equal(s->ops->account_list(s, t_collect_verifiers,
		    &l), 0);
		assert_string_equal(mr_buf_cstr(&l), "acme:-,beta:-,");
		assert_int_equal(s->ops->quota_get(s, "acme", 1699920010, &q),
		    0);
		assert_int_equal(q.used, 42);
		assert_int_equal(s->ops->campaign_get(s, "old", &c), 0);
		assert_string_equal(c.account, "acme");
		store_campaign_release(&c);
		/* The new column takes a verifier. */
		assert_int_equal(s->ops->account_get(s, "beta", &a), 0);
		free(a.verifier);
		a.verifier = strdup(v);
		assert_int_equal(s->ops->account_put(s, &a), 0);
		store_account_release(&a);
		store_close(&s);
		assert_int_equal(t_hdr_get(path, T_HDR_VERSION),
		    STORE_SQLITE_SCHEMA_VERSION);

		s = t_open(path, STORE_READONLY, NULL);
		assert_int_equal(s->ops->account_get(s, "beta", &a), 0);
		assert_string_equal(a.verifier, v);
		assert_int_equal(a.allowance, 5);
		store_account_release(&a);
		store_close(&s);
		t_remove(path);
	}
	/* The hook itself: no file over another, no unknown schema. */
	t_temp(path, sizeof(path), true);
	assert_int_equal(store_sqlite_test_create(path, 1, NULL, &err),
	    -EEXIST);
	t_remove(path);
	assert_int_equal(store_sqlite_test_create(path, 0, NULL, &err),
	    -EINVAL);
	assert_int_equal(store_sqlite_test_create(path,
	    STORE_SQLITE_SCHEMA_VERSION + 1, NULL, &err), -EINVAL);
	mr_buf_release(&err);
	mr_buf_release(&l);
}

static void
test_cascade(void **state)
{
	static const char *const tables[] = {
		"chunks", "journal_marks", "quota_reservations",
	};
	static const uint8_t bits[8], v[] = { 1, 0, 0, 1, 0x80 };
	static const struct store_mark m = { 1, 0, 5 };
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_account a = { "acme", 100, T_HOUR, 80, NULL };
	struct store_quota q;
	char sql[128];
	int64_t id, keep;
	size_t i;

	assert_int_equal(s->ops->account_put(s, &a), 0);
	keep = t_insert(s, "kept", 0);
	id = t_insert(s, "gone", 0);
	assert_int_equal(s->ops->chunks_init(s, id, 1, 64, 10), 0);
	assert_int_equal(s->ops->chunk_save(s, id, 0, bits, 8, 0, v, 5), 0);
	assert_int_equal(s->ops->marks_replace(s, id, &m, 1), 0);
	assert_int_equal(s->ops->quota_admit(s, "acme", id, 10, T_T0, &q), 0);
	assert_int_equal(s->ops->quota_consume(s, id, 4), 0);
	assert_int_equal(s->ops->chunks_init(s, keep, 1, 64, 10), 0);
	assert_int_equal(s->ops->chunk_save(s, keep, 0, bits, 8, 0, v, 5),
	    0);
	snprintf(sql, sizeof(sql), "DELETE FROM campaigns WHERE id = %lld",
	    (long long)id);
	t_sql_is(s, sql, "");
	for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE "
		    "campaign = %lld", tables[i], (long long)id);
		t_sql_is(s, sql, "0");
	}
	t_sql_is(s, "SELECT count(*) FROM chunks WHERE visits IS NOT NULL",
	    "1");
	t_quota_is(s, T_T0, 4, 0);	/* what was used stays used */
}

/*
 * A full disk (max_page_count) in the middle of a snapshot: the failed
 * operation changes nothing, and the snapshot cannot be committed in
 * part.
 */
static void
test_disk_full(void **state)
{
	enum { BIG = 512 * 1024 };
	static const uint8_t bits[8], before[] = { 1, 0, 0, 9, 0 };
	static const struct store_mark m = { 1, 0, 5 };
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_mark marks[1];
	struct t_visits t;
	char pages[32], sql[64];
	uint8_t *big;
	int64_t id;
	size_t n;

	id = t_insert(s, "full", 0);
	assert_int_equal(s->ops->chunks_init(s, id, 3, 64, 150), 0);
	assert_int_equal(s->ops->chunk_save(s, id, 1, bits, 8, 0, before, 5),
	    0);
	big = calloc(1, BIG);
	assert_non_null(big);
	assert_int_equal(store_sqlite_test_sql(s, "PRAGMA page_count", pages,
	    sizeof(pages)), 0);
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %s", pages);
	assert_int_equal(store_sqlite_test_sql(s, sql, pages, sizeof(pages)),
	    0);

	assert_int_equal(s->ops->begin(s), 0);
	assert_int_equal(s->ops->chunk_save(s, id, 2, bits, 8, 0, big, BIG),
	    -ENOSPC);
	t_assert_contains(store_error(s), "disk is full");
	/*
	 * SQLite rolled the whole transaction back (a one-row UPDATE has
	 * no statement journal): what follows must not commit on its own.
	 */
	assert_int_equal(s->ops->marks_replace(s, id, &m, 1), -EIO);
	t_assert_contains(store_error(s), "rolled back by an earlier error");
	assert_int_equal(s->ops->commit(s), -EIO);
	assert_int_equal(s->ops->rollback(s), 0);
	t_load_visits(s, id, &t);
	assert_int_equal(t.n, 1);
	assert_int_equal(t.chunk[0], 1);
	assert_memory_equal(t.blob[0], before, 5);
	assert_int_equal(s->ops->marks_load(s, id, marks, 1, &n), 0);
	assert_int_equal(n, 0);
	free(big);
}

/* One snapshot-sized transaction, committed, timed over 100 runs. */
static void
test_snapshot_timing(void **state)
{
	enum { RUNS = 100, CHUNKS = 10, VIS = 1 + 4096 };
	struct t_fx *fx = *state;
	struct store *s = fx->s;
	struct store_account a = { "acme", 10000000, 86400, 80, NULL };
	struct store_campaign c;
	struct store_mark marks[4];
	static uint8_t vis[VIS];
	struct store_quota q;
	static uint8_t bits[CHUNKS * 512];
	uint8_t back[sizeof(bits)];
	double t0, dt;
	int64_t id;
	int run, i;

	assert_int_equal(s->ops->account_put(s, &a), 0);
	id = t_insert(s, "timed", 0);
	assert_int_equal(s->ops->chunks_init(s, id, CHUNKS, 4096,
	    CHUNKS * 4096), 0);
	assert_int_equal(s->ops->quota_admit(s, "acme", id, 1000000, T_T0,
	    &q), 0);
	assert_int_equal(s->ops->campaign_get(s, "timed", &c), 0);

	t0 = t_now();
	for (run = 0; run < RUNS; run++) {
		/* Every chunk's visit state in its densest form (a
		 * byte a recipient): the worst case. */
		memset(vis, run + 1, sizeof(vis));
		vis[0] = 2;
		for (i = 0; i < 4; i++) {
			marks[i].generation = 1;
			marks[i].writer = (uint32_t)i;
			marks[i].seq = (uint64_t)run * 1000 + (uint64_t)i;
		}
		memset(bits, run, sizeof(bits));
		c.delivered = (uint64_t)run;
		assert_int_equal(s->ops->begin(s), 0);
		for (i = 0; i < CHUNKS; i++)
			assert_int_equal(s->ops->chunk_save(s, id,
			    (uint32_t)i, bits + i * 512, 512, 4096, vis,
			    sizeof(vis)), 0);
		assert_int_equal(s->ops->marks_replace(s, id, marks, 4), 0);
		assert_int_equal(s->ops->campaign_update(s, &c), 0);
		assert_int_equal(s->ops->quota_consume(s, id, 100), 0);
		assert_int_equal(s->ops->commit(s), 0);
	}
	dt = t_now() - t0;
	print_message("snapshot (10 chunks of 512 B bits + %d B visits, 4 "
	    "marks, campaign, quota; synchronous=FULL): %.3f ms average "
	    "over %d\n", VIS, dt * 1000 / RUNS, RUNS);

	assert_int_equal(t_chunks_load(s, id, back, sizeof(back)), 0);
	assert_memory_equal(back, bits, sizeof(bits));
	assert_int_equal(s->ops->quota_get(s, "acme", T_T0, &q), 0);
	assert_int_equal(q.used, RUNS * 100);
	store_campaign_release(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_open_postgres),
		cmocka_unit_test(test_open_create_migrate_reopen),
		cmocka_unit_test(test_open_refusals),
		cmocka_unit_test(test_readonly_open),
		cmocka_unit_test(test_readonly_permissions),
		cmocka_unit_test(test_locked),
		cmocka_unit_test_setup_teardown(test_campaign_crud, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_campaign_lease, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_campaign_due, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_chunks, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_visits, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_marks, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_accounts, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_account_verifier, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_quota_unlimited, t_setup,
		    t_teardown),
		cmocka_unit_test(test_migrate_old_schema),
		cmocka_unit_test_setup_teardown(test_quota_admit, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_quota_consume, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_quota_rollover, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_settings, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_cascade, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_disk_full, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_timing, t_setup,
		    t_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
