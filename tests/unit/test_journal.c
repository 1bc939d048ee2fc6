/*
 * test_journal.c - the recovery journal: append and replay, segment
 * rotation, marks, a torn or corrupt tail, a truncated file, pruning, and
 * a disk that refuses a new segment (RLIMIT_FSIZE stands in for it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "recovery/journal.h"

#define SEG	(64 * 1024)	/* the smallest: 4092 records */

struct seen {
	uint32_t	rcpt[40000];
	uint8_t		type[40000];
	uint16_t	attempts[40000];
	size_t		n;
};

static char dir[64];

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mr-test-journal-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int
teardown(void **state)
{
	char path[512];
	struct dirent *de;
	DIR *d = opendir(dir);

	(void)state;
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(dir);
	return 0;
}

static void
record(void *arg, uint32_t rcpt, uint8_t type, uint16_t attempts)
{
	struct seen *s = arg;

	assert_true(s->n < 40000);
	s->rcpt[s->n] = rcpt;
	s->type[s->n] = type;
	s->attempts[s->n] = attempts;
	s->n++;
}

static struct journal *
open_writer(int64_t gen, uint32_t writer)
{
	struct mr_buf err = MR_BUF_INIT;
	struct journal *j;
	int code = 0;

	j = journal_open(dir, 7, gen, writer, SEG, &err, &code);
	if (j == NULL)
		fail_msg("journal_open: %s", mr_buf_cstr(&err));
	mr_buf_release(&err);
	return j;
}

static void
replay(const struct journal_mark *marks, size_t n, struct seen *s,
    struct journal_replay_stats *st)
{
	memset(st, 0, sizeof(*st));
	s->n = 0;
	assert_int_equal(journal_replay(dir, 7, marks, n, record, s, st), 0);
}

static void
test_round_trip_and_rotation(void **state)
{
	static struct seen s;
	struct journal_replay_stats st;
	struct journal *j = open_writer(1, 0);
	uint32_t i;

	(void)state;
	/* 10,000 records span three 64 KB segments. */
	for (i = 0; i < 10000; i++) {
		assert_int_equal(journal_reserve(j, 1), 0);
		assert_int_equal(journal_append(j, i, JOURNAL_INTENT + i % 3,
		    (uint16_t)(i % 7)), i + 1);
	}
	assert_int_equal(journal_seq(j), 10000);
	assert_int_equal(journal_sync(j), 0);
	journal_close(&j);
	replay(NULL, 0, &s, &st);
	assert_int_equal(st.records, 10000);
	assert_int_equal(st.segments, 3);
	assert_int_equal(st.bad_tails, 0);
	for (i = 0; i < 10000; i++) {
		assert_int_equal(s.rcpt[i], i);
		assert_int_equal(s.type[i], JOURNAL_INTENT + i % 3);
		assert_int_equal(s.attempts[i], i % 7);
	}
	journal_replay_stats_release(&st);
}

static void
test_early_rotation_keeps_the_stream(void **state)
{
	static struct seen s;
	struct journal_replay_stats st;
	struct journal *j = open_writer(1, 0);
	uint32_t i;

	(void)state;
	/* A reservation that does not fit moves on and leaves unused,
	 * zeroed slots behind: replay must go on to the next segment. */
	for (i = 0; i < 4000; i++)
		journal_append(j, i, JOURNAL_DELIVERED, 1);
	assert_int_equal(journal_reserve(j, 1000), 0);
	for (i = 4000; i < 4500; i++)
		journal_append(j, i, JOURNAL_DELIVERED, 1);
	journal_close(&j);
	replay(NULL, 0, &s, &st);
	assert_int_equal(st.records, 4500);
	assert_int_equal(st.bad_tails, 0);
	assert_int_equal(s.rcpt[4499], 4499);
	journal_replay_stats_release(&st);
}

static void
test_marks_skip_and_streams_order(void **state)
{
	static struct seen s;
	struct journal_replay_stats st;
	struct journal *a = open_writer(2, 0), *b = open_writer(2, 1);
	struct journal *old = open_writer(1, 0);
	struct journal_mark marks[] = { { 2, 0, 3 } };
	uint32_t i;

	(void)state;
	for (i = 0; i < 5; i++) {
		journal_append(a, 100 + i, JOURNAL_DELIVERED, 1);
		journal_append(b, 200 + i, JOURNAL_DEFER, 2);
		journal_append(old, 300 + i, JOURNAL_INTENT, 1);
	}
	journal_close(&a);
	journal_close(&b);
	journal_close(&old);
	replay(marks, 1, &s, &st);
	/* Generation 1 first, then writer 0 past its mark, then writer 1. */
	assert_int_equal(st.records, 5 + 2 + 5);
	assert_int_equal(st.skipped, 3);
	assert_int_equal(s.rcpt[0], 300);
	assert_int_equal(s.rcpt[5], 103);
	assert_int_equal(s.rcpt[7], 200);
	journal_replay_stats_release(&st);
}

/* corrupt - overwrite the file's record number `rec` (0-based). */
static void
corrupt(const char *name, size_t rec, const char *bytes, size_t n)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, n, (off_t)(JOURNAL_HDR_SIZE +
	    rec * JOURNAL_REC_SIZE)), (ssize_t)n);
	close(fd);
}

static void
test_corrupt_tail_stops_the_stream(void **state)
{
	static struct seen s;
	struct journal_replay_stats st;
	struct journal *j = open_writer(1, 0);
	uint32_t i;

	(void)state;
	for (i = 0; i < 100; i++)
		journal_append(j, i, JOURNAL_DELIVERED, 1);
	journal_close(&j);
	/* A torn write: half a record of garbage at record 60. */
	corrupt("c7-g1-w0-s1.jnl", 60, "\xde\xad\xbe\xef\x01\x02\x03\x04", 8);
	replay(NULL, 0, &s, &st);
	assert_int_equal(st.records, 60);
	assert_int_equal(st.bad_tails, 1);
	assert_non_null(strstr(mr_buf_cstr(&st.report), "corrupt record"));
	assert_non_null(strstr(mr_buf_cstr(&st.report), "after record 60"));
	journal_replay_stats_release(&st);
}

static void
test_valid_record_from_another_stream_is_refused(void **state)
{
	static struct seen s;
	struct journal_replay_stats st;
	struct journal *a = open_writer(1, 0), *b = open_writer(1, 1);
	char path[128];
	char rec[JOURNAL_REC_SIZE];
	int fd;

	(void)state;
	journal_append(a, 1, JOURNAL_DELIVERED, 1);
	journal_append(b, 2, JOURNAL_DELIVERED, 1);
	journal_append(b, 3, JOURNAL_DELIVERED, 1);
	journal_close(&a);
	journal_close(&b);
	/* Writer 1's second record, copied into writer 0's stream. */
	snprintf(path, sizeof(path), "%s/c7-g1-w1-s1.jnl", dir);
	fd = open(path, O_RDONLY);
	assert_int_equal(pread(fd, rec, sizeof(rec), JOURNAL_HDR_SIZE +
	    JOURNAL_REC_SIZE), (ssize_t)sizeof(rec));
	close(fd);
	corrupt("c7-g1-w0-s1.jnl", 1, rec, sizeof(rec));
	replay(NULL, 0, &s, &st);
	assert_int_equal(st.records, 1 + 2);
	assert_int_equal(st.bad_tails, 1);
	journal_replay_stats_release(&st);
}

static void
test_truncated_file(void **state)
{
	static struct seen s;
	struct journal_replay_stats st;
	struct journal *j = open_writer(1, 0);
	char path[128];
	uint32_t i;

	(void)state;
	for (i = 0; i < 50; i++)
		journal_append(j, i, JOURNAL_DELIVERED, 1);
	journal_close(&j);
	snprintf(path, sizeof(path), "%s/c7-g1-w0-s1.jnl", dir);
	/* Cut in the middle of record 40. */
	assert_int_equal(truncate(path, JOURNAL_HDR_SIZE + 40 *
	    JOURNAL_REC_SIZE + 5), 0);
	replay(NULL, 0, &s, &st);
	assert_int_equal(st.records, 40);
	assert_int_equal(st.bad_tails, 1);
	assert_non_null(strstr(mr_buf_cstr(&st.report), "truncated"));
	journal_replay_stats_release(&st);
	/* Cut at a record boundary: still reported. */
	assert_int_equal(truncate(path, JOURNAL_HDR_SIZE + 30 *
	    JOURNAL_REC_SIZE), 0);
	replay(NULL, 0, &s, &st);
	assert_int_equal(st.records, 30);
	assert_int_equal(st.bad_tails, 1);
	journal_replay_stats_release(&st);
}

static unsigned
count_files(void)
{
	struct dirent *de;
	unsigned n = 0;
	DIR *d = opendir(dir);

	while ((de = readdir(d)) != NULL)
		n += strstr(de->d_name, ".jnl") != NULL;
	closedir(d);
	return n;
}

static void
test_prune(void **state)
{
	struct journal *old = open_writer(1, 0), *j = open_writer(2, 0);
	struct journal_mark mark = { 2, 0, 0 };
	uint32_t i;

	(void)state;
	journal_append(old, 1, JOURNAL_DELIVERED, 1);
	journal_close(&old);
	for (i = 0; i < 9000; i++)	/* three segments */
		journal_append(j, i, JOURNAL_DELIVERED, 1);
	assert_int_equal(count_files(), 4);
	/* Generation 1 goes; the folded first segment of generation 2. */
	mark.seq = 4092;
	assert_int_equal(journal_prune(dir, 7, 2, &mark, 1), 2);
	assert_int_equal(count_files(), 2);
	/* Never the last segment of a stream. */
	mark.seq = 9000;
	assert_int_equal(journal_prune(dir, 7, 2, &mark, 1), 1);
	assert_int_equal(count_files(), 1);
	journal_close(&j);
	assert_int_equal(journal_prune(dir, 7, INT64_MAX, NULL, 0), 1);
	assert_int_equal(count_files(), 0);
}

static void
test_disk_full_waits_in_memory(void **state)
{
	static struct seen s;
	struct journal_replay_stats st;
	struct journal *j = open_writer(1, 0);
	struct rlimit rl, small;
	uint32_t i;

	(void)state;
	/* No room for a second segment: file size limit of one. */
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &rl);
	small = rl;
	small.rlim_cur = SEG - 1;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	for (i = 0; i < 4092; i++)
		journal_append(j, i, JOURNAL_DELIVERED, 1);
	assert_false(journal_full(j));
	assert_true(journal_reserve(j, 10) < 0);
	for (i = 4092; i < 4200; i++)
		journal_append(j, i, JOURNAL_DELIVERED, 1);
	assert_true(journal_full(j));
	assert_int_equal(journal_seq(j), 4092);	/* the rest waits */
	/* Space again: the waiting records go out first, in order. */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
	assert_int_equal(journal_reserve(j, 10), 0);
	assert_false(journal_full(j));
	assert_int_equal(journal_seq(j), 4200);
	journal_append(j, 9999, JOURNAL_DELIVERED, 1);
	journal_close(&j);
	replay(NULL, 0, &s, &st);
	assert_int_equal(st.records, 4201);
	assert_int_equal(st.bad_tails, 0);
	assert_int_equal(s.rcpt[4199], 4199);
	assert_int_equal(s.rcpt[4200], 9999);
	journal_replay_stats_release(&st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_and_rotation,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_early_rotation_keeps_the_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_marks_skip_and_streams_order, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_corrupt_tail_stops_the_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_valid_record_from_another_stream_is_refused, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_truncated_file, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full_waits_in_memory,
		    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
