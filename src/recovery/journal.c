/*
 * journal.c - append-only recipient journal in mapped segment files, its
 * group commit, replay and pruning.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/mr_err.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "recovery/journal.h"

#define JOURNAL_MAGIC		"MRJNL001"
#define JOURNAL_SEG_MIN		(64 * 1024)

/* On disk, little-endian as the machine is (the file never travels). */
struct journal_rec {
	uint32_t	seq;		/* low 32 bits of the sequence number */
	uint32_t	rcpt;
	uint16_t	attempts;
	uint8_t		type;
	uint8_t		pad;
	uint32_t	check;		/* XXH32 of the 12 bytes above */
};

struct journal_hdr {
	char		magic[8];
	int64_t		campaign;
	int64_t		generation;
	uint32_t	writer;
	uint32_t	segment;
	uint64_t	first_seq;
	uint64_t	size;		/* of the file, header included */
	uint32_t	check;		/* XXH32 of the fields above */
	uint8_t		pad[JOURNAL_HDR_SIZE - 52];
};

_Static_assert(sizeof(struct journal_rec) == JOURNAL_REC_SIZE,
    "journal record size");
_Static_assert(sizeof(struct journal_hdr) == JOURNAL_HDR_SIZE,
    "journal header size");

struct journal {
	char			*dir;
	int64_t			 campaign;
	int64_t			 generation;
	uint32_t		 writer;
	uint32_t		 seed;		/* of the record checksums */
	size_t			 seg_size;	/* bytes, header included */
	size_t			 nrecs;		/* records a segment holds */

	/* The current segment.  The writer fills it; the lock guards the
	 * switch to a new one against journal_sync(). */
	pthread_mutex_t		 lock;
	uint32_t		 segment;
	int			 fd;
	struct journal_rec	*recs;		/* mapping, after the header */
	void			*map;
	size_t			 used;		/* records written in it */
	int			 old_fd;	/* previous segment: synced once
						 * more, then closed */

	_Atomic uint64_t	 seq;		/* last sequence number written
						 * to the mapping */
	uint64_t		 appended;	/* last sequence number given */
	struct journal_rec	*pending;	/* waiting for disk space, in
						 * order, after seq */
	size_t			 npending, pendcap;
};

static uint32_t
journal_seed(int64_t campaign, int64_t generation, uint32_t writer)
{
	uint64_t v[3] = { (uint64_t)campaign, (uint64_t)generation, writer };

	return XXH32(v, sizeof(v), 0x6d726a6e);
}

static uint32_t
journal_rec_check(const struct journal_rec *r, uint32_t seed)
{
	return XXH32(r, offsetof(struct journal_rec, check), seed);
}

static uint32_t
journal_hdr_check(const struct journal_hdr *h)
{
	return XXH32(h, offsetof(struct journal_hdr, check), 0x6d726a68);
}

static void
journal_path(char *out, size_t size, const char *dir, int64_t campaign,
    int64_t generation, uint32_t writer, uint32_t segment)
{
	snprintf(out, size, "%s/c%" PRId64 "-g%" PRId64 "-w%" PRIu32 "-s%"
	    PRIu32 ".jnl", dir, campaign, generation, writer, segment);
}

/*
 * journal_new_segment - make, size, map and stamp segment number seg.
 * Returns 0 or -errno; on failure the current segment is untouched.
 */
static int
journal_new_segment(struct journal *j, uint32_t seg, struct mr_buf *err)
{
	char path[4096];
	struct journal_hdr *h;
	void *map;
	int fd, r;

	journal_path(path, sizeof(path), j->dir, j->campaign, j->generation,
	    j->writer, seg);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0) {
		r = -errno;
		if (err)
			mr_buf_printf(err, "cannot create journal %s: %s",
			    path, mr_strerror(r));
		return r;
	}
	/* Allocate every block now: a full disk shows here, not later as a
	 * SIGBUS on a page of the mapping. */
	r = posix_fallocate(fd, 0, (off_t)j->seg_size);
	if (r != 0) {
		if (err)
			mr_buf_printf(err, "cannot allocate journal %s (%zu "
			    "bytes): %s", path, j->seg_size, strerror(r));
		close(fd);
		unlink(path);
		return -r;
	}
	map = mmap(NULL, j->seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    0);
	if (map == MAP_FAILED) {
		r = -errno;
		if (err)
			mr_buf_printf(err, "cannot map journal %s: %s", path,
			    mr_strerror(r));
		close(fd);
		unlink(path);
		return r;
	}
	h = map;
	memcpy(h->magic, JOURNAL_MAGIC, 8);
	h->campaign = j->campaign;
	h->generation = j->generation;
	h->writer = j->writer;
	h->segment = seg;
	h->first_seq = atomic_load_explicit(&j->seq, memory_order_relaxed) +
	    1;
	h->size = j->seg_size;
	h->check = journal_hdr_check(h);

	pthread_mutex_lock(&j->lock);
	if (j->map != NULL) {
		munmap(j->map, j->seg_size);
		if (j->old_fd >= 0)
			close(j->old_fd);
		j->old_fd = j->fd;	/* synced at the next journal_sync() */
	}
	j->map = map;
	j->recs = (struct journal_rec *)((char *)map + JOURNAL_HDR_SIZE);
	j->fd = fd;
	j->segment = seg;
	j->used = 0;
	pthread_mutex_unlock(&j->lock);
	return 0;
}

struct journal *
journal_open(const char *dir, int64_t campaign, int64_t generation,
    uint32_t writer, size_t segment_size, struct mr_buf *err, int *code_r)
{
	struct journal *j = xcalloc(1, sizeof(*j));
	int r;

	if (segment_size < JOURNAL_SEG_MIN)
		segment_size = JOURNAL_SEG_MIN;
	j->dir = xstrdup(dir);
	j->campaign = campaign;
	j->generation = generation;
	j->writer = writer;
	j->seed = journal_seed(campaign, generation, writer);
	j->nrecs = (segment_size - JOURNAL_HDR_SIZE) / JOURNAL_REC_SIZE;
	j->seg_size = JOURNAL_HDR_SIZE + j->nrecs * JOURNAL_REC_SIZE;
	j->fd = j->old_fd = -1;
	pthread_mutex_init(&j->lock, NULL);
	atomic_init(&j->seq, 0);
	if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
		*code_r = -errno;
		mr_buf_printf(err, "cannot create journal directory %s: %s",
		    dir, mr_strerror(*code_r));
		journal_close(&j);
		return NULL;
	}
	r = journal_new_segment(j, 1, err);
	if (r != 0) {
		*code_r = r;
		journal_close(&j);
		return NULL;
	}
	return j;
}

int
journal_sync(struct journal *j)
{
	int r = 0;

	pthread_mutex_lock(&j->lock);
	if (j->old_fd >= 0) {
		if (fdatasync(j->old_fd) != 0)
			r = -errno;
		close(j->old_fd);
		j->old_fd = -1;
	}
	if (j->fd >= 0 && fdatasync(j->fd) != 0 && r == 0)
		r = -errno;
	pthread_mutex_unlock(&j->lock);
	return r;
}

void
journal_close(struct journal **jp)
{
	struct journal *j = *jp;

	if (j == NULL)
		return;
	if (j->fd >= 0)
		journal_sync(j);
	if (j->map != NULL)
		munmap(j->map, j->seg_size);
	if (j->fd >= 0)
		close(j->fd);
	if (j->old_fd >= 0)
		close(j->old_fd);
	pthread_mutex_destroy(&j->lock);
	free(j->pending);
	free(j->dir);
	free(j);
	*jp = NULL;
}

/* journal_put - write the next record into the mapping and publish it. */
static void
journal_put(struct journal *j, const struct journal_rec *r)
{
	uint64_t seq = atomic_load_explicit(&j->seq, memory_order_relaxed);

	j->recs[j->used++] = *r;
	/* Release: whatever the caller stored before appending (the
	 * recipient's state) is visible to whoever sees this sequence. */
	atomic_store_explicit(&j->seq, seq + 1, memory_order_release);
}

int
journal_reserve(struct journal *j, size_t n)
{
	size_t i = 0;
	int r;

	if (n > j->nrecs / 2)
		n = j->nrecs / 2;	/* no one asks for more: see header */
	for (;;) {
		/* Records that waited for space go first, in their order. */
		while (i < j->npending && j->used < j->nrecs)
			journal_put(j, &j->pending[i++]);
		if (i == j->npending && j->nrecs - j->used >= n)
			break;
		r = journal_new_segment(j, j->segment + 1, NULL);
		if (r != 0) {
			if (i > 0 && i < j->npending)
				memmove(j->pending, j->pending + i,
				    (j->npending - i) * sizeof(*j->pending));
			j->npending -= i;
			return r;
		}
	}
	j->npending = 0;
	return 0;
}

uint64_t
journal_append(struct journal *j, uint32_t rcpt, uint8_t type,
    uint16_t attempts)
{
	uint64_t seq = ++j->appended;
	struct journal_rec r;

	memset(&r, 0, sizeof(r));
	r.seq = (uint32_t)seq;
	r.rcpt = rcpt;
	r.attempts = attempts;
	r.type = type;
	r.check = journal_rec_check(&r, j->seed);
	/* Out of room: a new segment, or (disk full) memory. */
	if (j->npending == 0 && j->used == j->nrecs)
		(void)journal_new_segment(j, j->segment + 1, NULL);
	if (j->npending == 0 && j->used < j->nrecs) {
		journal_put(j, &r);
		return seq;
	}
	if (j->npending == j->pendcap) {
		j->pendcap = j->pendcap ? j->pendcap * 2 : 1024;
		j->pending = xreallocarray(j->pending, j->pendcap,
		    sizeof(*j->pending));
	}
	j->pending[j->npending++] = r;
	return seq;
}

bool
journal_full(const struct journal *j)
{
	return j->npending > 0;
}

uint64_t
journal_seq(const struct journal *j)
{
	return atomic_load_explicit(&((struct journal *)j)->seq,
	    memory_order_acquire);
}

uint32_t
journal_writer(const struct journal *j)
{
	return j->writer;
}

int64_t
journal_generation(const struct journal *j)
{
	return j->generation;
}

/* ---------------------------------------------------------------- */
/* Replay and pruning                                               */
/* ---------------------------------------------------------------- */

struct journal_file {
	char		*name;
	int64_t		 generation;
	uint32_t	 writer;
	uint32_t	 segment;
};

static int
journal_file_cmp(const void *a, const void *b)
{
	const struct journal_file *x = a, *y = b;

	if (x->generation != y->generation)
		return x->generation < y->generation ? -1 : 1;
	if (x->writer != y->writer)
		return x->writer < y->writer ? -1 : 1;
	return x->segment < y->segment ? -1 : x->segment > y->segment;
}

/* journal_list - campaign's segment files in dir, sorted; -errno. */
static int
journal_list(const char *dir, int64_t campaign, struct journal_file **v_r,
    size_t *n_r)
{
	struct journal_file *v = NULL;
	struct dirent *de;
	size_t n = 0, cap = 0;
	int64_t c, g;
	uint32_t w, s;
	int used;
	DIR *d;

	*v_r = NULL;
	*n_r = 0;
	d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) != NULL) {
		used = 0;
		if (sscanf(de->d_name, "c%" SCNd64 "-g%" SCNd64 "-w%" SCNu32
		    "-s%" SCNu32 ".jnl%n", &c, &g, &w, &s, &used) != 4 ||
		    de->d_name[used] != '\0' || c != campaign)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n].name = xstrdup(de->d_name);
		v[n].generation = g;
		v[n].writer = w;
		v[n].segment = s;
		n++;
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), journal_file_cmp);
	*v_r = v;
	*n_r = n;
	return 0;
}

static void
journal_list_free(struct journal_file *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

static const struct journal_mark *
journal_find_mark(const struct journal_mark *marks, size_t n, int64_t g,
    uint32_t w)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (marks[i].generation == g && marks[i].writer == w)
			return &marks[i];
	return NULL;
}

static bool
journal_is_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

/*
 * journal_replay_file - apply one segment's records.  *next is the
 * sequence number expected next in its stream (0: take the header's);
 * *ended is set when the stream ended inside it.
 */
static void
journal_replay_file(const char *dir, const struct journal_file *f,
    int64_t campaign, const struct journal_mark *mark, uint64_t *next,
    bool *ended, journal_replay_cb *cb, void *arg,
    struct journal_replay_stats *st)
{
	struct journal_hdr h;
	struct journal_rec r;
	char path[4096];
	uint32_t seed = journal_seed(campaign, f->generation, f->writer);
	uint64_t seq;
	size_t nread;
	off_t off = JOURNAL_HDR_SIZE;
	struct stat sb;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, f->name);
	fp = fopen(path, "re");
	if (fp == NULL || fstat(fileno(fp), &sb) != 0) {
		mr_buf_printf(&st->report, "journal %s: cannot read: %s\n",
		    path, strerror(errno));
		st->bad_tails++;
		*ended = true;
		if (fp)
			fclose(fp);
		return;
	}
	st->segments++;
	if (fread(&h, sizeof(h), 1, fp) != 1 ||
	    memcmp(h.magic, JOURNAL_MAGIC, 8) != 0 ||
	    h.check != journal_hdr_check(&h) || h.campaign != campaign ||
	    h.generation != f->generation || h.writer != f->writer ||
	    (*next != 0 && h.first_seq != *next)) {
		mr_buf_printf(&st->report, "journal %s: bad header or a gap "
		    "in the stream; the stream ends before it\n", path);
		st->bad_tails++;
		st->bad_bytes += (uint64_t)sb.st_size;
		*ended = true;
		fclose(fp);
		return;
	}
	seq = h.first_seq;
	for (;;) {
		nread = fread(&r, 1, sizeof(r), fp);
		if (nread == 0 && (uint64_t)sb.st_size >= h.size)
			break;		/* the segment is full */
		if (nread < sizeof(r)) {
			mr_buf_printf(&st->report, "journal %s: truncated at "
			    "byte %lld of %" PRIu64 "; records after %" PRIu64
			    " are lost\n", path, (long long)sb.st_size, h.size,
			    seq - 1);
			st->bad_tails++;
			st->bad_bytes += nread;
			*ended = true;
			break;
		}
		if (journal_is_zero(&r, sizeof(r)))
			break;		/* unused space: the segment ends */
		if (r.check != journal_rec_check(&r, seed) ||
		    r.seq != (uint32_t)seq || r.type < JOURNAL_INTENT ||
		    r.type > JOURNAL_BOUNCED) {
			mr_buf_printf(&st->report, "journal %s: corrupt record "
			    "at byte %lld; %lld bytes after record %" PRIu64
			    " ignored\n", path, (long long)off,
			    (long long)(sb.st_size - off), seq - 1);
			st->bad_tails++;
			st->bad_bytes += (uint64_t)(sb.st_size - off);
			*ended = true;
			break;
		}
		if (mark != NULL && seq <= mark->seq) {
			st->skipped++;
		} else {
			cb(arg, r.rcpt, r.type, r.attempts);
			st->records++;
		}
		seq++;
		off += (off_t)sizeof(r);
	}
	*next = seq;
	fclose(fp);
}

int
journal_replay(const char *dir, int64_t campaign,
    const struct journal_mark *marks, size_t nmarks, journal_replay_cb *cb,
    void *arg, struct journal_replay_stats *st)
{
	struct journal_file *v;
	size_t n, i;
	uint64_t next = 0;
	bool ended = false;
	int r;

	r = journal_list(dir, campaign, &v, &n);
	if (r != 0)
		return r;
	for (i = 0; i < n; i++) {
		if (i == 0 || v[i].generation != v[i - 1].generation ||
		    v[i].writer != v[i - 1].writer) {
			next = 0;	/* a new stream */
			ended = false;
		} else if (v[i].segment != v[i - 1].segment + 1 && !ended) {
			mr_buf_printf(&st->report, "journal %s: segment "
			    "missing before it; the stream ends there\n",
			    v[i].name);
			st->bad_tails++;
			ended = true;
		}
		if (ended)
			continue;
		journal_replay_file(dir, &v[i], campaign,
		    journal_find_mark(marks, nmarks, v[i].generation,
		    v[i].writer), &next, &ended, cb, arg, st);
	}
	journal_list_free(v, n);
	return 0;
}

void
journal_replay_stats_release(struct journal_replay_stats *st)
{
	mr_buf_release(&st->report);
}

/* journal_first_seq - the first sequence number of a segment file. */
static uint64_t
journal_first_seq(const char *dir, const char *name)
{
	struct journal_hdr h;
	char path[4096];
	FILE *fp;
	uint64_t seq = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "re");
	if (fp == NULL)
		return 0;
	if (fread(&h, sizeof(h), 1, fp) == 1 &&
	    h.check == journal_hdr_check(&h))
		seq = h.first_seq;
	fclose(fp);
	return seq;
}

int
journal_prune(const char *dir, int64_t campaign, int64_t keep_generation,
    const struct journal_mark *marks, size_t nmarks)
{
	struct journal_file *v;
	const struct journal_mark *m;
	char path[4096];
	size_t n, i;
	int removed = 0;
	bool drop;

	if (journal_list(dir, campaign, &v, &n) != 0)
		return 0;
	for (i = 0; i < n; i++) {
		drop = false;
		if (v[i].generation < keep_generation) {
			drop = true;
		} else if (i + 1 < n &&
		    v[i + 1].generation == v[i].generation &&
		    v[i + 1].writer == v[i].writer) {
			/* Every record of this segment comes before the
			 * next segment's first one. */
			m = journal_find_mark(marks, nmarks, v[i].generation,
			    v[i].writer);
			drop = m != NULL && journal_first_seq(dir,
			    v[i + 1].name) <= m->seq + 1;
		}
		if (!drop)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, v[i].name);
		if (unlink(path) == 0)
			removed++;
	}
	journal_list_free(v, n);
	return removed;
}

uint64_t
journal_disk_bytes(const char *dir, int64_t campaign)
{
	struct journal_file *v;
	struct stat sb;
	char path[4096];
	uint64_t total = 0;
	size_t n, i;

	if (journal_list(dir, campaign, &v, &n) != 0)
		return 0;
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, v[i].name);
		if (stat(path, &sb) == 0)
			total += (uint64_t)sb.st_blocks * 512;
	}
	journal_list_free(v, n);
	return total;
}
