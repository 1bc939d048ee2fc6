/*
 * test_spool.c - the SMTP injection spool: round trip through a reopen
 * (8-bit and large bodies), pending recipients after done marks, segment
 * deletion (out of order, without resurrecting anything), a torn tail
 * (cut mid-record, garbage appended), a damaged middle record, group
 * commit from several threads, limits, a full disk (RLIMIT_FSIZE stands
 * in for it), the directory lock and ids across reopens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/mr_err.h"
#include "spool/spool.h"

static char dir[64];

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mr-test-spool-XXXXXX");
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

static struct spool *
open_spool(const struct spool_params *p)
{
	struct mr_buf err = MR_BUF_INIT;
	struct spool *sp;
	int code = 0;

	sp = spool_open(dir, p, NULL, NULL, &err, &code);
	if (sp == NULL)
		fail_msg("spool_open: %s", mr_buf_cstr(&err));
	mr_buf_release(&err);
	return sp;
}

static uint64_t
append(struct spool *sp, const char *from, const char *const *rcpt,
    size_t nrcpt, const void *body, size_t len)
{
	struct spool_envelope env = {
		.received = 1700000000000ULL,
		.flags = 3,
		.account = "alice",
		.client = "[192.0.2.7]:40001",
		.mail_from = from,
		.rcpt = rcpt,
		.nrcpt = nrcpt,
	};
	struct mr_buf err = MR_BUF_INIT;
	uint64_t id = 0, ticket = 0;
	int r;

	r = spool_append_message(sp, &env, body, len, &err, &id, &ticket);
	if (r != 0)
		fail_msg("spool_append_message: %s", mr_buf_cstr(&err));
	assert_true(id > 0);
	assert_true(ticket > 0);
	mr_buf_release(&err);
	return id;
}

static void
done(struct spool *sp, uint64_t id, uint32_t idx)
{
	assert_int_equal(spool_rcpt_done(sp, id, idx, SPOOL_DELIVERED, NULL),
	    0);
}

/* What spool_recover() handed over, copied. */
struct got {
	uint64_t	id;
	char		from[64];
	char		account[64];
	char		client[64];
	uint32_t	flags;
	uint64_t	received;
	size_t		nrcpt, total;
	char		rcpt[8][64];
	uint32_t	idx[8];
	unsigned char	*body;
	size_t		body_len;
};

struct seen {
	struct got	*v;
	size_t		 n, cap;
};

static int
collect(void *arg, const struct spool_message *m)
{
	struct seen *s = arg;
	struct got *g;
	size_t i;

	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		assert_non_null(s->v);
	}
	g = &s->v[s->n++];
	memset(g, 0, sizeof(*g));
	g->id = m->id;
	snprintf(g->from, sizeof(g->from), "%s", m->env.mail_from);
	snprintf(g->account, sizeof(g->account), "%s", m->env.account);
	snprintf(g->client, sizeof(g->client), "%s", m->env.client);
	g->flags = m->env.flags;
	g->received = m->env.received;
	g->nrcpt = m->env.nrcpt;
	g->total = m->nrcpt_total;
	for (i = 0; i < m->env.nrcpt && i < 8; i++) {
		snprintf(g->rcpt[i], sizeof(g->rcpt[i]), "%s", m->env.rcpt[i]);
		g->idx[i] = m->rcpt_idx[i];
	}
	g->body = malloc(m->body_len + 1);
	assert_non_null(g->body);
	memcpy(g->body, m->body, m->body_len);
	g->body_len = m->body_len;
	return 0;
}

static void
recover(struct spool *sp, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	assert_int_equal(spool_recover(sp, collect, s), 0);
}

static void
seen_free(struct seen *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->v[i].body);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* files - names in dir ending in suffix, sorted; returns the count. */
static size_t
files(const char *suffix, char names[][64], size_t max)
{
	struct dirent *de;
	size_t n = 0, len, sl = strlen(suffix), i, j;
	char tmp[64];
	DIR *d = opendir(dir);

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (len < sl || len >= 64 ||
		    strcmp(de->d_name + len - sl, suffix) != 0)
			continue;
		if (n < max)
			memcpy(names[n], de->d_name, len + 1);
		n++;
	}
	closedir(d);
	for (i = 1; i < n && i < max; i++)
		for (j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			memcpy(tmp, names[j], 64);
			memcpy(names[j], names[j - 1], 64);
			memcpy(names[j - 1], tmp, 64);
		}
	return n;
}

static off_t
file_size(const char *name)
{
	char path[256];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(stat(path, &sb), 0);
	return sb.st_size;
}

static void
test_round_trip(void **state)
{
	static const char *const rcpt[] = { "bob@example.org",
	    "carol@example.net", "dave@example.com" };
	struct spool_message m;
	struct seen s;
	struct spool_stats st;
	struct spool *sp = open_spool(NULL);
	unsigned char eight[1024];
	unsigned char *big;
	size_t big_len = 5 * 1024 * 1024 + 17, i;
	uint64_t id1, id2, id3, id4;

	(void)state;
	for (i = 0; i < sizeof(eight); i++)
		eight[i] = (unsigned char)(1 + i % 255);	/* no NUL */
	big = malloc(big_len);
	assert_non_null(big);
	for (i = 0; i < big_len; i++)
		big[i] = (unsigned char)(i * 2654435761u >> 13);
	id1 = append(sp, "sender@example.com", rcpt, 3, "Subject: hi\r\n\r\n"
	    "hello\r\n", 22);
	id2 = append(sp, "", rcpt + 1, 1, eight, sizeof(eight));
	id3 = append(sp, "big@example.com", rcpt, 2, big, big_len);
	id4 = append(sp, "empty@example.com", rcpt, 1, "", 0);
	assert_true(id1 < id2 && id2 < id3 && id3 < id4);
	assert_int_equal(spool_sync(sp), 0);
	assert_int_equal(spool_synced(sp), 4);
	assert_int_equal(spool_durable(sp, 4), 1);
	assert_int_equal(spool_durable(sp, 5), 0);

	/* Read back before a reopen. */
	memset(&m, 0, sizeof(m));
	assert_int_equal(spool_read_message(sp, id3, &m, NULL), 0);
	assert_int_equal(m.body_len, big_len);
	assert_memory_equal(m.body, big, big_len);
	assert_int_equal(m.env.nrcpt, 2);
	assert_string_equal(m.env.rcpt[1], "carol@example.net");
	spool_message_release(&m);
	spool_close(&sp);

	sp = open_spool(NULL);
	spool_stats(sp, &st);
	assert_int_equal(st.recovered, 4);
	assert_int_equal(st.messages, 4);
	assert_int_equal(st.rcpts, 3 + 1 + 2 + 1);
	assert_int_equal(st.torn_tails, 0);
	assert_int_equal(st.damaged, 0);
	recover(sp, &s);
	assert_int_equal(s.n, 4);
	assert_int_equal(s.v[0].id, id1);
	assert_string_equal(s.v[0].from, "sender@example.com");
	assert_string_equal(s.v[0].account, "alice");
	assert_string_equal(s.v[0].client, "[192.0.2.7]:40001");
	assert_int_equal(s.v[0].flags, 3);
	assert_int_equal(s.v[0].received, 1700000000000ULL);
	assert_int_equal(s.v[0].nrcpt, 3);
	assert_string_equal(s.v[0].rcpt[2], "dave@example.com");
	assert_int_equal(s.v[0].idx[2], 2);
	assert_int_equal(s.v[0].body_len, 22);
	assert_memory_equal(s.v[0].body, "Subject: hi\r\n\r\nhello\r\n", 22);
	assert_int_equal(s.v[1].id, id2);
	assert_string_equal(s.v[1].from, "");
	assert_string_equal(s.v[1].rcpt[0], "carol@example.net");
	assert_int_equal(s.v[1].body_len, sizeof(eight));
	assert_memory_equal(s.v[1].body, eight, sizeof(eight));
	assert_int_equal(s.v[2].id, id3);
	assert_int_equal(s.v[2].body_len, big_len);
	assert_memory_equal(s.v[2].body, big, big_len);
	assert_int_equal(s.v[3].id, id4);
	assert_int_equal(s.v[3].body_len, 0);
	seen_free(&s);
	/* New ids follow the old ones. */
	assert_true(append(sp, "x@example.com", rcpt, 1, "x", 1) > id4);
	spool_close(&sp);
	free(big);
}

/* spool_read_head: the start of the body, its envelope whole (one
 * longer than the first guess at it), done marks honoured. */
static void
test_read_head(void **state)
{
	static const char small[] = "Subject: hi\r\n\r\nhello\r\n";
	char *rcpt[300];
	struct spool_message m;
	struct spool *sp = open_spool(NULL);
	unsigned char *big;
	size_t big_len = 200 * 1024, i;
	uint64_t id1, id2;

	(void)state;
	for (i = 0; i < 300; i++) {
		rcpt[i] = malloc(64);
		assert_non_null(rcpt[i]);
		snprintf(rcpt[i], 64, "recipient-%03zu@some-domain.example.org",
		    i);
	}
	big = malloc(big_len);
	assert_non_null(big);
	for (i = 0; i < big_len; i++)
		big[i] = (unsigned char)(i * 2654435761u >> 13);
	id1 = append(sp, "big@example.com", (const char *const *)rcpt, 300,
	    big, big_len);
	id2 = append(sp, "small@example.com", (const char *const *)rcpt, 1,
	    small, sizeof(small) - 1);
	assert_int_equal(spool_rcpt_done(sp, id1, 0, SPOOL_DELIVERED, NULL),
	    0);

	memset(&m, 0, sizeof(m));
	assert_int_equal(spool_read_head(sp, id1, 100, &m, NULL), 0);
	assert_int_equal(m.id, id1);
	assert_int_equal(m.body_len, 100);
	assert_memory_equal(m.body, big, 100);
	assert_true(m.raw_.len < 32 * 1024);	/* not the whole record */
	assert_string_equal(m.env.mail_from, "big@example.com");
	assert_string_equal(m.env.account, "alice");
	assert_int_equal(m.nrcpt_total, 300);
	assert_int_equal(m.env.nrcpt, 299);
	assert_int_equal(m.rcpt_idx[0], 1);
	assert_string_equal(m.env.rcpt[298], rcpt[299]);
	/* Reused for a message read whole: as spool_read_message(). */
	assert_int_equal(spool_read_head(sp, id2, 4096, &m, NULL), 0);
	assert_int_equal(m.body_len, sizeof(small) - 1);
	assert_memory_equal(m.body, small, sizeof(small) - 1);
	assert_int_equal(spool_read_head(sp, id2, 0, &m, NULL), 0);
	assert_int_equal(m.body_len, 0);
	assert_string_equal(m.env.rcpt[0], rcpt[0]);
	assert_int_equal(spool_read_head(sp, id2 + 100, 10, &m, NULL),
	    -ENOENT);
	spool_message_release(&m);
	spool_close(&sp);
	for (i = 0; i < 300; i++)
		free(rcpt[i]);
	free(big);
}

static void
test_done_marks_leave_pending(void **state)
{
	static const char *const rcpt[] = { "r0@example.org", "r1@example.org",
	    "r2@example.org", "r3@example.org", "r4@example.org" };
	struct mr_buf err = MR_BUF_INIT;
	struct spool_message m;
	struct spool_stats st;
	struct seen s;
	struct spool *sp = open_spool(NULL);
	uint64_t id, other;

	(void)state;
	id = append(sp, "a@example.com", rcpt, 5, "body\r\n", 6);
	other = append(sp, "b@example.com", rcpt, 1, "body\r\n", 6);
	done(sp, id, 0);
	assert_int_equal(spool_rcpt_done(sp, id, 2, SPOOL_BOUNCED, NULL), 0);
	done(sp, id, 4);
	done(sp, id, 4);		/* twice: no error */
	done(sp, other, 0);		/* final: gone */
	spool_close(&sp);

	sp = open_spool(NULL);
	recover(sp, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.v[0].id, id);
	assert_int_equal(s.v[0].total, 5);
	assert_int_equal(s.v[0].nrcpt, 2);
	assert_string_equal(s.v[0].rcpt[0], "r1@example.org");
	assert_int_equal(s.v[0].idx[0], 1);
	assert_string_equal(s.v[0].rcpt[1], "r3@example.org");
	assert_int_equal(s.v[0].idx[1], 3);
	seen_free(&s);
	spool_stats(sp, &st);
	assert_int_equal(st.rcpts, 2);

	assert_int_equal(spool_rcpt_done(sp, id, 5, SPOOL_DELIVERED, &err),
	    MR_ERANGE_VALUE);
	assert_non_null(strstr(mr_buf_cstr(&err), "no recipient 5"));
	assert_int_equal(spool_rcpt_done(sp, other, 0, SPOOL_DELIVERED, NULL),
	    -ENOENT);
	done(sp, id, 3);
	done(sp, id, 1);
	memset(&m, 0, sizeof(m));
	assert_int_equal(spool_read_message(sp, id, &m, NULL), -ENOENT);
	spool_message_release(&m);
	spool_stats(sp, &st);
	assert_int_equal(st.messages, 0);
	assert_int_equal(st.rcpts, 0);
	spool_close(&sp);

	sp = open_spool(NULL);
	recover(sp, &s);
	assert_int_equal(s.n, 0);
	seen_free(&s);
	spool_close(&sp);
	mr_buf_release(&err);
}

static void
test_segments_deleted_when_final(void **state)
{
	static const char *const rcpt[] = { "a@example.org",
	    "b@example.org" };
	struct spool_params p = { .segment_size = 64 * 1024 };
	char names[64][64];
	char body[1000];
	struct spool_stats st;
	struct seen s;
	struct spool *sp = open_spool(&p);
	uint64_t ids[300], keep;
	size_t i, nseg;

	(void)state;
	memset(body, 'm', sizeof(body));
	/* About 60 messages a segment: five segments. */
	for (i = 0; i < 300; i++)
		ids[i] = append(sp, "s@example.com", rcpt, 2, body,
		    sizeof(body));
	keep = ids[3];			/* in the first segment */
	assert_int_equal(spool_sync(sp), 0);
	spool_stats(sp, &st);
	nseg = st.segments;
	assert_true(nseg >= 5);
	assert_int_equal(files(".seg", names, 64), nseg);

	/* The first recipient of each, while the last segment is current:
	 * the marks go to each message's own segment. */
	for (i = 0; i < 300; i++)
		done(sp, ids[i], 0);
	/* All of them but one in the first segment become final: every
	 * segment but the first and the current one goes. */
	for (i = 0; i < 299; i++)
		if (ids[i] != keep)
			done(sp, ids[i], 1);
	assert_int_equal(spool_sync(sp), 0);
	spool_stats(sp, &st);
	assert_int_equal(st.messages, 2);
	assert_int_equal(st.segments, 2);
	assert_int_equal(st.deleted, nseg - 2);
	assert_int_equal(files(".seg", names, 64), 2);
	assert_string_equal(names[0], "spool-0000000000000001.seg");
	spool_close(&sp);

	/* Nothing comes back to life: the first segment still holds the
	 * done records of its message. */
	sp = open_spool(&p);
	recover(sp, &s);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.v[0].id, keep);
	assert_int_equal(s.v[0].nrcpt, 1);
	assert_int_equal(s.v[0].idx[0], 1);
	assert_int_equal(s.v[1].id, ids[299]);
	seen_free(&s);
	done(sp, keep, 1);
	done(sp, ids[299], 1);
	assert_int_equal(spool_sync(sp), 0);
	/* Only the current segment is left. */
	assert_int_equal(files(".seg", names, 64), 1);
	spool_stats(sp, &st);
	assert_int_equal(st.segments, 1);
	assert_int_equal(st.messages, 0);
	spool_close(&sp);
}

/* One-segment spool with n equal messages; returns its file name. */
static void
fill_one_segment(size_t n, uint64_t *ids, char *name)
{
	static const char *const rcpt[] = { "r@example.org" };
	char names[8][64];
	char body[200];
	struct spool *sp = open_spool(NULL);
	size_t i;

	memset(body, 'b', sizeof(body));
	for (i = 0; i < n; i++)
		ids[i] = append(sp, "s@example.com", rcpt, 1, body,
		    sizeof(body));
	spool_close(&sp);
	assert_int_equal(files(".seg", names, 8), 1);
	snprintf(name, 64, "%s", names[0]);
}

static void
cut(const char *name, off_t size)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(truncate(path, size), 0);
}

static void
write_at(const char *name, off_t off, const void *p, size_t n)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT, 0640);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, p, n, off), (ssize_t)n);
	close(fd);
}

static void
test_torn_tail(void **state)
{
	static const char *const rcpt[] = { "r@example.org" };
	struct spool_stats st;
	struct seen s;
	struct spool *sp;
	char name[64];
	unsigned char junk[300];
	uint64_t ids[10], id;
	off_t size, rec;
	size_t i;

	(void)state;
	fill_one_segment(10, ids, name);
	size = file_size(name);
	rec = (size - 32) / 10;
	assert_int_equal(32 + rec * 10, size);
	/* A crash in the middle of writing the tenth record. */
	cut(name, 32 + rec * 9 + rec / 2);
	sp = open_spool(NULL);
	spool_stats(sp, &st);
	assert_int_equal(st.torn_tails, 1);
	assert_int_equal(st.ignored_bytes, rec / 2);
	assert_int_equal(st.damaged, 0);
	assert_int_equal(file_size(name), 32 + rec * 9);
	recover(sp, &s);
	assert_int_equal(s.n, 9);
	assert_int_equal(s.v[8].id, ids[8]);
	seen_free(&s);
	/* Appends and done marks (into the cut segment) work. */
	id = append(sp, "new@example.com", rcpt, 1, "new", 3);
	assert_true(id > ids[9]);	/* not the torn one's id */
	done(sp, ids[0], 0);
	spool_close(&sp);

	sp = open_spool(NULL);
	spool_stats(sp, &st);
	assert_int_equal(st.torn_tails, 0);
	recover(sp, &s);
	assert_int_equal(s.n, 9);
	assert_int_equal(s.v[0].id, ids[1]);
	assert_int_equal(s.v[8].id, id);
	assert_memory_equal(s.v[8].body, "new", 3);
	seen_free(&s);
	spool_close(&sp);

	/* Garbage after the last record, with a record's magic in it. */
	size = file_size(name);
	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 7 + 1);
	memcpy(junk + 10, "MRSP", 4);
	write_at(name, size, junk, sizeof(junk));
	sp = open_spool(NULL);
	spool_stats(sp, &st);
	assert_int_equal(st.torn_tails, 1);
	assert_int_equal(st.ignored_bytes, sizeof(junk));
	assert_int_equal(file_size(name), size);
	recover(sp, &s);
	assert_int_equal(s.n, 9);
	seen_free(&s);
	id = append(sp, "after@example.com", rcpt, 1, "after", 5);
	spool_close(&sp);
	sp = open_spool(NULL);
	recover(sp, &s);
	assert_int_equal(s.n, 10);
	assert_int_equal(s.v[9].id, id);
	seen_free(&s);
	spool_close(&sp);
}

static void
test_torn_header(void **state)
{
	struct spool_stats st;
	struct seen s;
	struct spool *sp;
	char names[8][64], name[64];
	uint64_t ids[3];

	(void)state;
	fill_one_segment(3, ids, name);
	/* A segment whose creation was torn: half a header. */
	write_at("spool-00000000000000ff.seg", 0, "MRSPOOL1\x01\x02", 10);
	sp = open_spool(NULL);
	spool_stats(sp, &st);
	assert_int_equal(st.torn_tails, 1);
	assert_int_equal(st.messages, 3);
	recover(sp, &s);
	assert_int_equal(s.n, 3);
	seen_free(&s);
	spool_close(&sp);
	/* Removed, and the next segment comes after it. */
	assert_int_equal(files(".seg", names, 8), 2);
	assert_string_equal(names[0], name);
	assert_string_equal(names[1], "spool-0000000000000100.seg");
}

static void
test_damaged_middle_record(void **state)
{
	static const char *const rcpt[] = { "r@example.org" };
	struct spool_stats st;
	struct seen s;
	struct spool *sp;
	char names[8][64], name[64];
	uint64_t ids[10], later[3];
	off_t size, rec;
	size_t i;

	(void)state;
	fill_one_segment(10, ids, name);
	size = file_size(name);
	rec = (size - 32) / 10;
	/* Messages in a later segment. */
	sp = open_spool(NULL);
	for (i = 0; i < 3; i++)
		later[i] = append(sp, "l@example.com", rcpt, 1, "later", 5);
	spool_close(&sp);
	/* One byte of the fifth record's body flips. */
	write_at(name, 32 + rec * 4 + rec - 10, "X", 1);
	sp = open_spool(NULL);
	spool_stats(sp, &st);
	assert_int_equal(st.damaged, 1);
	assert_int_equal(st.torn_tails, 0);
	assert_int_equal(st.ignored_bytes, rec * 6);
	/* The file is kept as it was. */
	assert_int_equal(file_size(name), size);
	recover(sp, &s);
	assert_int_equal(s.n, 4 + 3);
	assert_int_equal(s.v[3].id, ids[3]);
	assert_int_equal(s.v[4].id, later[0]);
	seen_free(&s);
	/* Appends work; once its messages are final, the damaged file is
	 * set aside for an operator, not deleted. */
	append(sp, "n@example.com", rcpt, 1, "n", 1);
	for (i = 0; i < 4; i++)
		done(sp, ids[i], 0);
	assert_int_equal(spool_sync(sp), 0);
	assert_int_equal(files(".damaged", names, 8), 1);
	spool_stats(sp, &st);
	assert_int_equal(st.damaged, 0);
	spool_close(&sp);
	sp = open_spool(NULL);
	recover(sp, &s);
	assert_int_equal(s.n, 3 + 1);
	assert_int_equal(s.v[0].id, later[0]);
	seen_free(&s);
	spool_close(&sp);
}

/* Group commit: sessions on several threads, each waiting for its ticket
 * before its next message, as an SMTP session waits before its 250. */
#define GC_THREADS	8
#define GC_EACH		1000

struct gc {
	struct spool	*sp;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	unsigned	 notified;
};

static void
gc_notify(void *arg)
{
	struct gc *g = arg;

	pthread_mutex_lock(&g->mu);
	g->notified++;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static void *
gc_session(void *arg)
{
	static const char *const rcpt[] = { "r@example.org" };
	struct spool_envelope env = {
		.client = "[192.0.2.1]",
		.mail_from = "s@example.com",
		.rcpt = rcpt,
		.nrcpt = 1,
	};
	struct gc *g = arg;
	uint64_t id, ticket;
	int i, r;

	for (i = 0; i < GC_EACH; i++) {
		r = spool_append_message(g->sp, &env, "hello\r\n", 7, NULL,
		    &id, &ticket);
		if (r != 0)
			return (void *)1;
		pthread_mutex_lock(&g->mu);
		while ((r = spool_durable(g->sp, ticket)) == 0)
			pthread_cond_wait(&g->cv, &g->mu);
		pthread_mutex_unlock(&g->mu);
		if (r != 1)
			return (void *)1;
	}
	return NULL;
}

static void
test_group_commit(void **state)
{
	struct spool_params p = { .commit_delay_us = 1000 };
	struct mr_buf err = MR_BUF_INIT;
	pthread_t th[GC_THREADS];
	struct spool_stats st;
	struct gc g;
	void *ret;
	int code = 0, i;
	const uint64_t total = GC_THREADS * GC_EACH;

	(void)state;
	memset(&g, 0, sizeof(g));
	pthread_mutex_init(&g.mu, NULL);
	pthread_cond_init(&g.cv, NULL);
	g.sp = spool_open(dir, &p, gc_notify, &g, &err, &code);
	if (g.sp == NULL)
		fail_msg("spool_open: %s", mr_buf_cstr(&err));
	for (i = 0; i < GC_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, gc_session, &g),
		    0);
	for (i = 0; i < GC_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], &ret), 0);
		assert_null(ret);
	}
	spool_stats(g.sp, &st);
	print_message("group commit: %" PRIu64 " messages, %" PRIu64
	    " rounds, %" PRIu64 " fsync calls, %.1f messages a round\n",
	    total, st.syncs, st.fsyncs, (double)st.synced / (double)st.syncs);
	assert_int_equal(st.appended, total);
	assert_int_equal(st.synced, total);
	assert_true(st.syncs < total / 2);
	assert_true(st.fsyncs < total / 2);
	assert_true(g.notified >= st.syncs);
	spool_close(&g.sp);
	g.sp = open_spool(NULL);
	spool_stats(g.sp, &st);
	assert_int_equal(st.recovered, total);
	spool_close(&g.sp);
	pthread_cond_destroy(&g.cv);
	pthread_mutex_destroy(&g.mu);
	mr_buf_release(&err);
}

static void
test_limits(void **state)
{
	static const char *rcpt[12];
	struct spool_params p = { .max_record = 8192, .max_rcpts = 10 };
	struct spool_params bad = { .segment_size = 1000 };
	struct spool_envelope env = { .mail_from = "s@example.com" };
	struct mr_buf err = MR_BUF_INIT;
	struct spool_stats st, st2;
	char body[9000], longaddr[5000];
	struct spool *sp;
	uint64_t id = 0, ticket = 0;
	int code = 0;
	size_t i;

	(void)state;
	for (i = 0; i < 12; i++)
		rcpt[i] = "r@example.org";
	memset(body, 'x', sizeof(body));
	assert_null(spool_open(dir, &bad, NULL, NULL, &err, &code));
	assert_int_equal(code, MR_ERANGE_VALUE);
	assert_non_null(strstr(mr_buf_cstr(&err), "segment_size"));
	mr_buf_reset(&err);

	sp = open_spool(&p);
	spool_stats(sp, &st);
	env.rcpt = rcpt;
	env.nrcpt = 11;
	assert_int_equal(spool_append_message(sp, &env, "x", 1, &err, &id,
	    &ticket), MR_ERANGE_VALUE);
	assert_non_null(strstr(mr_buf_cstr(&err), "11 recipients, over the "
	    "limit of 10"));
	mr_buf_reset(&err);
	env.nrcpt = 0;
	assert_int_equal(spool_append_message(sp, &env, "x", 1, &err, &id,
	    &ticket), MR_EINVAL_INPUT);
	mr_buf_reset(&err);
	env.nrcpt = 10;
	assert_int_equal(spool_append_message(sp, &env, body, sizeof(body),
	    &err, &id, &ticket), MR_ETOOLONG);
	assert_non_null(strstr(mr_buf_cstr(&err), "over the limit of 8192"));
	mr_buf_reset(&err);
	memset(longaddr, 'a', sizeof(longaddr) - 1);
	longaddr[sizeof(longaddr) - 1] = '\0';
	env.mail_from = longaddr;
	assert_int_equal(spool_append_message(sp, &env, "x", 1, &err, &id,
	    &ticket), MR_ETOOLONG);
	mr_buf_reset(&err);
	/* Nothing of them reached the disk. */
	spool_stats(sp, &st2);
	assert_int_equal(st2.bytes, st.bytes);
	assert_int_equal(st2.messages, 0);
	/* Just under the limits is fine. */
	env.mail_from = "s@example.com";
	assert_int_equal(spool_append_message(sp, &env, body, 7000, &err, &id,
	    &ticket), 0);
	spool_close(&sp);
	mr_buf_release(&err);
}

static void
test_disk_full(void **state)
{
	static const char *const rcpt[] = { "r@example.org" };
	struct spool_envelope env = {
		.mail_from = "s@example.com",
		.rcpt = rcpt,
		.nrcpt = 1,
	};
	struct mr_buf err = MR_BUF_INIT;
	struct rlimit rl, small;
	struct spool_stats st;
	struct seen s;
	struct spool *sp = open_spool(NULL);
	char names[8][64], body[20000];
	uint64_t id, ticket, first;
	off_t size;
	int r;

	(void)state;
	memset(body, 'z', sizeof(body));
	first = append(sp, "s@example.com", rcpt, 1, "one", 3);
	assert_int_equal(spool_sync(sp), 0);
	assert_int_equal(files(".seg", names, 8), 1);
	size = file_size(names[0]);
	/* The file may grow by 4 KB: the record gets half-way. */
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &rl);
	small = rl;
	small.rlim_cur = (rlim_t)size + 4096;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	r = spool_append_message(sp, &env, body, sizeof(body), &err, &id,
	    &ticket);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
	assert_int_equal(r, -EFBIG);
	assert_non_null(strstr(mr_buf_cstr(&err), "cannot write"));
	/* Cut back: no half record for recovery to stumble on. */
	assert_int_equal(file_size(names[0]), size);
	spool_stats(sp, &st);
	assert_int_equal(st.messages, 1);
	/* Room again. */
	id = append(sp, "s@example.com", rcpt, 1, body, sizeof(body));
	spool_close(&sp);
	sp = open_spool(NULL);
	spool_stats(sp, &st);
	assert_int_equal(st.torn_tails, 0);
	assert_int_equal(st.damaged, 0);
	recover(sp, &s);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.v[0].id, first);
	assert_int_equal(s.v[1].id, id);
	assert_int_equal(s.v[1].body_len, sizeof(body));
	seen_free(&s);
	spool_close(&sp);
	mr_buf_release(&err);
}

static void
test_lock_and_ids(void **state)
{
	static const char *const rcpt[] = { "r@example.org" };
	struct mr_buf err = MR_BUF_INIT;
	struct spool *sp = open_spool(NULL), *sp2;
	char names[8][64];
	uint64_t id1, id2;
	int code = 0;

	(void)state;
	sp2 = spool_open(dir, NULL, NULL, NULL, &err, &code);
	assert_null(sp2);
	assert_non_null(strstr(mr_buf_cstr(&err), "in use"));
	id1 = append(sp, "s@example.com", rcpt, 1, "x", 1);
	done(sp, id1, 0);
	spool_close(&sp);
	/* Reopened twice: every record is gone, the id is not reused. */
	sp = open_spool(NULL);
	spool_close(&sp);
	assert_int_equal(files(".seg", names, 8), 1);
	sp = open_spool(NULL);
	id2 = append(sp, "s@example.com", rcpt, 1, "x", 1);
	assert_true(id2 > id1);
	spool_close(&sp);
	mr_buf_release(&err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_read_head, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_done_marks_leave_pending,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_segments_deleted_when_final, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_torn_header, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_damaged_middle_record,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_lock_and_ids, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
