/*
 * test_recovery.c - per-recipient recovery state: snapshots into a real
 * SQLite store and back (the chunk bit vectors, deferred attempts, the
 * counts), journal records after the last snapshot replayed on top, the
 * recipients in flight at a "crash" found and counted, journals pruned.
 */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "recovery/recovery.h"
#include "store/store.h"

#define N	10000
#define CHUNK	1024	/* 10 chunks, the last one short */

static char dir[64], dbpath[96], jdir[96];
static struct store *st;
static int64_t campaign;

static void
rm_rf(const char *d)
{
	char path[512];
	struct dirent *de;
	DIR *dh = opendir(d);

	while (dh && (de = readdir(dh)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", d, de->d_name);
		if (unlink(path) != 0)
			rm_rf(path);
	}
	if (dh)
		closedir(dh);
	rmdir(d);
}

static int
setup(void **state)
{
	struct mr_buf err = MR_BUF_INIT;
	struct store_campaign c;
	int code = 0;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mr-test-recovery-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(dbpath, sizeof(dbpath), "%s/st.db", dir);
	snprintf(jdir, sizeof(jdir), "%s/journal", dir);
	st = store_open(dbpath, STORE_CREATE, 1000, &err, &code);
	if (st == NULL)
		fail_msg("store_open: %s", mr_buf_cstr(&err));
	memset(&c, 0, sizeof(c));
	c.name = "c";
	c.template_path = "t";
	c.list_path = "l";
	c.stage = STORE_STAGE_DELIVERING;
	c.state = STORE_STATE_RUNNING;
	c.nrecipients = N;
	c.chunk_size = CHUNK;
	c.nchunks = (N + CHUNK - 1) / CHUNK;
	assert_int_equal(st->ops->campaign_insert(st, &c), 0);
	campaign = c.id;
	assert_int_equal(st->ops->chunks_init(st, campaign, c.nchunks, CHUNK,
	    N), 0);
	mr_buf_release(&err);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	store_close(&st);
	rm_rf(dir);
	return 0;
}

static struct recovery *
new_recovery(int64_t generation)
{
	struct recovery_params p;

	memset(&p, 0, sizeof(p));
	p.store = st;
	p.campaign = campaign;
	p.nrecipients = N;
	p.chunk_size = CHUNK;
	p.journal_dir = jdir;
	p.segment_size = 64 * 1024;
	p.generation = generation;
	return recovery_new(&p);
}

static struct journal *
writer(struct recovery *r, uint32_t w)
{
	struct mr_buf err = MR_BUF_INIT;
	struct journal *j;
	int code = 0;

	j = recovery_writer(r, w, &err, &code);
	if (j == NULL)
		fail_msg("recovery_writer: %s", mr_buf_cstr(&err));
	mr_buf_release(&err);
	return j;
}

struct counts {
	uint64_t	delivered, bounced;
	unsigned	calls;
};

static int
count_cb(void *arg, struct store *s, uint64_t delivered, uint64_t bounced)
{
	struct counts *c = arg;

	(void)s;
	c->delivered = delivered;
	c->bounced = bounced;
	c->calls++;
	return 0;
}

static void
test_snapshot_and_load(void **state)
{
	struct recovery *r = new_recovery(1), *again;
	struct journal *j0, *j1;
	struct recovery_load_stats ls;
	struct mr_buf err = MR_BUF_INIT;
	struct counts c = { 0, 0, 0 };
	uint32_t k;

	(void)state;
	j0 = writer(r, 0);
	j1 = writer(r, 1);
	/* Every third recipient delivered, every seventh bounced (after
	 * two attempts), 50 deferred with 3 attempts, one in flight. */
	for (k = 0; k < N; k++) {
		struct journal *j = k % 2 ? j1 : j0;

		if (k % 3 == 0)
			recovery_final(r, j, k, false, 1);
		else if (k % 7 == 0)
			recovery_final(r, j, k, true, 2);
	}
	for (k = 1; k <= 100; k += 2)
		if (k % 3 != 0 && k % 7 != 0)
			recovery_defer(r, j1, k, 3);
	recovery_intent(r, j0, 9998, 1);
	assert_int_equal(recovery_snapshot(r, count_cb, &c, &err), 0);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.delivered, (N + 2) / 3);
	assert_true(c.bounced > 0);
	recovery_free(&r);

	again = new_recovery(2);
	assert_int_equal(recovery_load(again, c.delivered, c.bounced, &ls,
	    &err), 0);
	assert_int_equal(ls.final, c.delivered + c.bounced);
	assert_int_equal(ls.delivered, c.delivered);
	assert_int_equal(ls.bounced, c.bounced);
	assert_int_equal(ls.inflight, 1);
	assert_int_equal(ls.inflight_rcpts[0], 9998);
	/* The snapshot covered every record: nothing to replay twice. */
	assert_int_equal(ls.replay.records, 0);
	for (k = 0; k < N; k++) {
		bool fin = k % 3 == 0 || k % 7 == 0;

		assert_int_equal(recovery_is_final(again, k), fin);
	}
	assert_int_equal(recovery_attempts(again, 5), 3);
	assert_int_equal(recovery_attempts(again, 9998), 1);
	assert_false(recovery_is_final(again, 9998));
	recovery_load_stats_release(&ls);
	recovery_free(&again);
	mr_buf_release(&err);
}

static void
test_journal_after_snapshot_is_replayed(void **state)
{
	struct recovery *r = new_recovery(1), *again;
	struct journal *j;
	struct recovery_load_stats ls;
	struct mr_buf err = MR_BUF_INIT;
	struct counts c = { 0, 0, 0 };
	uint32_t k;

	(void)state;
	j = writer(r, 0);
	for (k = 0; k < 100; k++)
		recovery_final(r, j, k, false, 1);
	assert_int_equal(recovery_snapshot(r, count_cb, &c, &err), 0);
	/* After the snapshot: more outcomes, an intent without outcome,
	 * an intent then its outcome, a deferral; then a "crash" (no
	 * snapshot, the journal left as it is). */
	for (k = 100; k < 150; k++)
		recovery_final(r, j, k, k % 2 == 0, 1);
	recovery_intent(r, j, 200, 1);
	recovery_intent(r, j, 201, 1);
	recovery_final(r, j, 201, false, 1);
	recovery_defer(r, j, 300, 4);
	recovery_free(&r);

	again = new_recovery(2);
	assert_int_equal(recovery_load(again, c.delivered, c.bounced, &ls,
	    &err), 0);
	assert_int_equal(ls.final, 151);
	assert_int_equal(ls.delivered, 100 + 25 + 1);
	assert_int_equal(ls.bounced, 25);
	assert_int_equal(ls.inflight, 1);
	assert_int_equal(ls.inflight_rcpts[0], 200);
	assert_int_equal(ls.deferred, 1);	/* 300; 200 counts in flight */
	assert_int_equal(recovery_attempts(again, 300), 4);
	assert_true(recovery_is_final(again, 149));
	assert_false(recovery_is_final(again, 150));
	recovery_load_stats_release(&ls);
	/* A first snapshot of the new run folds it all and removes the
	 * old generation's journal. */
	assert_int_equal(recovery_snapshot(again, count_cb, &c, &err), 0);
	assert_int_equal(c.delivered, 126);
	recovery_free(&again);
	again = new_recovery(3);
	assert_int_equal(recovery_load(again, c.delivered, c.bounced, &ls,
	    &err), 0);
	assert_int_equal(ls.replay.records, 0);
	assert_int_equal(ls.final, 151);
	assert_int_equal(ls.inflight, 0);
	recovery_load_stats_release(&ls);
	recovery_free(&again);
	mr_buf_release(&err);
}

static void
test_final_is_sticky_on_replay(void **state)
{
	struct recovery *r = new_recovery(1), *again;
	struct journal *j;
	struct recovery_load_stats ls;
	struct mr_buf err = MR_BUF_INIT;

	(void)state;
	j = writer(r, 0);
	/* An INTENT after a FINAL (a bug, or a stale stream) must not make
	 * a final recipient pending again. */
	recovery_final(r, j, 7, false, 1);
	recovery_intent(r, j, 7, 2);
	recovery_free(&r);
	again = new_recovery(2);
	assert_int_equal(recovery_load(again, 0, 0, &ls, &err), 0);
	assert_true(recovery_is_final(again, 7));
	assert_int_equal(ls.inflight, 0);
	recovery_load_stats_release(&ls);
	recovery_free(&again);
	mr_buf_release(&err);
}

/*
 * Every recipient deferred (a large domain greylisting the whole list):
 * the snapshot keeps each attempt count in at most a byte a recipient
 * plus the bit vectors, and a chunk that did not change since keeps
 * what the snapshot before wrote.
 */
static void
test_many_deferred(void **state)
{
	struct recovery *r = new_recovery(1), *again;
	struct journal *j;
	struct recovery_load_stats ls;
	struct mr_buf err = MR_BUF_INIT;
	struct counts c = { 0, 0, 0 };
	uint64_t bytes;
	uint32_t k;

	(void)state;
	j = writer(r, 0);
	for (k = 0; k < N; k++)
		recovery_defer(r, j, k, (uint16_t)(1 + k % 100));
	recovery_intent(r, j, 42, 7);
	assert_int_equal(recovery_snapshot(r, count_cb, &c, &err), 0);
	/* The journal is folded: what is left is the store's part. */
	recovery_drop_journals(r);
	bytes = recovery_state_bytes(r);
	print_message("%u deferred recipients: %llu bytes of state\n", N,
	    (unsigned long long)bytes);
	/* A byte a recipient, a whole chunk of bits per chunk (the last
	 * one is short but stored whole) and a form byte per chunk. */
	assert_true(bytes <= N + ((N + CHUNK - 1) / CHUNK) * (CHUNK / 8 + 1));
	/* Later, only chunk 5 changes; a count past 127 there. */
	j = writer(r, 1);
	recovery_defer(r, j, 5 * CHUNK + 3, 300);
	recovery_final(r, j, 5 * CHUNK + 4, false, 1);
	assert_int_equal(recovery_snapshot(r, count_cb, &c, &err), 0);
	assert_int_equal(c.delivered, 1);
	recovery_free(&r);

	again = new_recovery(3);
	assert_int_equal(recovery_load(again, c.delivered, c.bounced, &ls,
	    &err), 0);
	assert_int_equal(ls.replay.records, 0);
	assert_int_equal(ls.final, 1);
	assert_int_equal(ls.inflight, 1);
	assert_int_equal(ls.inflight_rcpts[0], 42);
	assert_int_equal(ls.deferred, N - 2);
	for (k = 0; k < N; k++) {
		if (k == 42)
			assert_int_equal(recovery_attempts(again, k), 7);
		else if (k == 5 * CHUNK + 3)
			assert_int_equal(recovery_attempts(again, k), 300);
		else if (k == 5 * CHUNK + 4)
			assert_true(recovery_is_final(again, k));
		else
			assert_int_equal(recovery_attempts(again, k),
			    1 + k % 100);
	}
	recovery_load_stats_release(&ls);
	recovery_free(&again);
	mr_buf_release(&err);
}

/* A visit blob the store gives back damaged: the load fails, naming the
 * chunk, instead of guessing attempt counts. */
static void
test_corrupt_visits(void **state)
{
	static const uint8_t bits[CHUNK / 8];
	static const uint8_t bad[] = { 1, 0xff, 0xff, 1, 0 };	/* past n */
	struct recovery *r = new_recovery(1);
	struct recovery_load_stats ls;
	struct mr_buf err = MR_BUF_INIT;

	(void)state;
	assert_int_equal(st->ops->chunk_save(st, campaign, 3, bits,
	    sizeof(bits), 0, bad, sizeof(bad)), 0);
	assert_int_equal(recovery_load(r, 0, 0, &ls, &err), -EIO);
	assert_non_null(strstr(mr_buf_cstr(&err), "state of chunk 3"));
	recovery_load_stats_release(&ls);
	recovery_free(&r);
	mr_buf_release(&err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snapshot_and_load, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_journal_after_snapshot_is_replayed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_final_is_sticky_on_replay,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_deferred, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_visits, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
