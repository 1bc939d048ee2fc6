/*
 * spool.c - the SMTP injection spool: segment files of checksummed
 * records, a sync thread for group commit, recovery on open, and the
 * in-memory index of live messages.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/mr_hmap.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "spool/spool.h"

#define SPOOL_MOD		"spool"
#define SPOOL_SEG_MAGIC		"MRSPOOL1"
#define SPOOL_REC_MAGIC		0x5053524dU	/* "MRSP" */
#define SPOOL_VERSION		1
#define SPOOL_SEED		0x6d7273706f6f6cULL
#define SPOOL_HDR		32		/* segment and record headers */
#define SPOOL_FORMAT_MAX	(1U << 30)	/* largest payload ever read */
#define SPOOL_FORMAT_RCPTS	100000		/* most recipients ever read */
#define SPOOL_FIELD_MAX		4096		/* an envelope string */
#define SPOOL_LAZY_MS		1000		/* done marks wait this long */
#define SPOOL_NAME_LEN		26		/* "spool-" 16 hex ".seg" */
#define SPOOL_HEAD_GUESS	4096		/* header and envelope, first
						 * guess of spool_read_head() */

enum spool_rec_type {
	SPOOL_REC_MESSAGE = 1,
	SPOOL_REC_RCPT_DONE = 2,
};

/* On disk, in the machine's byte order. */
struct spool_seg_hdr {
	char		magic[8];
	uint64_t	seq;
	uint64_t	first_id;	/* the next id when it was made */
	uint64_t	check;		/* XXH3 of the 24 bytes above */
};

struct spool_rec_hdr {
	uint32_t	magic;
	uint8_t		type;
	uint8_t		version;
	uint16_t	flags;		/* 0 */
	uint32_t	len;		/* payload bytes after the header */
	uint32_t	reserved;	/* 0 */
	uint64_t	id;
	uint64_t	check;		/* XXH3: payload, then the above */
};

/* A MESSAGE payload starts with this, then fields, recipients, body. */
struct spool_msg_fix {
	uint64_t	received;
	uint32_t	flags;
	uint32_t	nrcpt;
	uint64_t	body_len;
};

struct spool_done_rec {
	uint32_t	idx;
	uint8_t		outcome;
	uint8_t		pad[3];
};

_Static_assert(sizeof(struct spool_seg_hdr) == SPOOL_HDR, "segment header");
_Static_assert(sizeof(struct spool_rec_hdr) == SPOOL_HDR, "record header");
_Static_assert(sizeof(struct spool_msg_fix) == 24, "message fields");
_Static_assert(sizeof(struct spool_done_rec) == 8, "done record");

/* A segment file.  Every field is under the spool's lock; fd is closed
 * only by the sync thread (when the segment is deleted) or at close. */
struct spool_seg {
	uint64_t	seq;
	int		fd;
	uint64_t	size;		/* its end: the next record's place */
	uint32_t	live;		/* messages homed here, not final */
	bool		current;	/* new messages go here */
	bool		dirty;		/* written since its last fdatasync */
	bool		urgent;		/* holds messages waiting for tickets */
	bool		sealed;		/* takes no more records */
	bool		damaged;	/* renamed, not deleted, when done */
};

/* A live message: where it is and which recipients are final. */
struct spool_msg {
	uint64_t		 id;		/* 0: a free slot */
	struct spool_seg	*seg;		/* its home */
	uint64_t		 off;		/* of its record in seg */
	uint32_t		 len;		/* of its record, with header */
	uint32_t		 nrcpt;
	uint32_t		 pending;
	uint32_t		 next_free;
	union {
		uint64_t	 word;		/* nrcpt <= 64 */
		uint64_t	*words;
	} done;
};

struct spool {
	char			*dir;
	int			 dirfd;		/* flock()ed */
	struct spool_params	 p;
	spool_notify_cb		*notify;
	void			*notify_arg;

	pthread_mutex_t		 mu;
	pthread_cond_t		 work_cv;	/* the sync thread waits */
	pthread_cond_t		 done_cv;	/* spool_sync() waits */
	pthread_t		 thread;
	bool			 thread_started;

	/* Everything below is under mu. */
	struct spool_seg	**segs;		/* by seq */
	size_t			 nsegs, segcap;
	struct spool_seg	*cur;
	uint64_t		 next_seq;
	uint64_t		 next_id;
	uint64_t		 appended;	/* the last ticket given */
	uint64_t		 synced_target;	/* the last ticket synced */
	uint64_t		 req_gen;	/* spool_sync() requests */
	uint64_t		 done_gen;	/* requests served */
	uint64_t		 lazy_due;	/* ms: sync done marks then */
	bool			 dir_dirty;	/* a segment was created */
	bool			 reap;		/* a segment may be deletable */
	bool			 stopping;
	int			 error;		/* sticky */

	struct spool_msg	*msgs;
	uint32_t		 nmsgs, msgcap, free_head;
	struct mr_hmap		*index;		/* id -> slot in msgs */
	uint64_t		 nlive, live_rcpts;
	struct spool_stats	 st;		/* counters */

	_Atomic uint64_t	 synced;	/* synced_target, published */
	_Atomic int		 aerror;	/* error, published */
};

/* ---------------------------------------------------------------- */
/* Formats                                                          */
/* ---------------------------------------------------------------- */

static void
spool_name(char *out, size_t size, uint64_t seq, const char *suffix)
{
	snprintf(out, size, "spool-%016" PRIx64 "%s", seq, suffix);
}

/* spool_parse_name - "spool-<16 hex>.seg" to its seq; false otherwise. */
static bool
spool_parse_name(const char *name, uint64_t *seq_r)
{
	uint64_t v = 0;
	int i;

	if (strlen(name) != SPOOL_NAME_LEN || strncmp(name, "spool-", 6) != 0 ||
	    strcmp(name + 22, ".seg") != 0)
		return false;
	for (i = 6; i < 22; i++) {
		if (name[i] >= '0' && name[i] <= '9')
			v = v << 4 | (uint64_t)(name[i] - '0');
		else if (name[i] >= 'a' && name[i] <= 'f')
			v = v << 4 | (uint64_t)(name[i] - 'a' + 10);
		else
			return false;
	}
	*seq_r = v;
	return v != 0;
}

static uint64_t
spool_seg_check(const struct spool_seg_hdr *h)
{
	return XXH3_64bits_withSeed(h, offsetof(struct spool_seg_hdr, check),
	    SPOOL_SEED);
}

/* spool_rec_finish - the check of a record whose payload went into st. */
static uint64_t
spool_rec_finish(XXH3_state_t *st, const struct spool_rec_hdr *h)
{
	XXH3_64bits_update(st, h, offsetof(struct spool_rec_hdr, check));
	return XXH3_64bits_digest(st);
}

static uint64_t
spool_rec_check(const struct spool_rec_hdr *h, const void *payload)
{
	XXH3_state_t st;

	memset(&st, 0, sizeof(st));	/* reset_withSeed reads it */
	XXH3_64bits_reset_withSeed(&st, SPOOL_SEED);
	XXH3_64bits_update(&st, payload, h->len);
	return spool_rec_finish(&st, h);
}

/* spool_rec_hdr_ok - is h a record header we write (its check aside)? */
static bool
spool_rec_hdr_ok(const struct spool_rec_hdr *h)
{
	return h->magic == SPOOL_REC_MAGIC && h->version == SPOOL_VERSION &&
	    h->flags == 0 && h->reserved == 0 &&
	    (h->type == SPOOL_REC_MESSAGE || h->type == SPOOL_REC_RCPT_DONE) &&
	    h->len <= SPOOL_FORMAT_MAX;
}

/*
 * spool_rec_ok - is there a whole, valid record at map[pos]?  Fills *h_r.
 */
static bool
spool_rec_ok(const unsigned char *map, size_t pos, size_t size,
    struct spool_rec_hdr *h_r)
{
	if (pos > size || size - pos < SPOOL_HDR)
		return false;
	memcpy(h_r, map + pos, SPOOL_HDR);
	if (!spool_rec_hdr_ok(h_r) || h_r->len > size - pos - SPOOL_HDR)
		return false;
	return spool_rec_check(h_r, map + pos + SPOOL_HDR) == h_r->check;
}

/*
 * spool_valid_after - does a valid record start anywhere in map[from..)?
 * Tells a torn tail (nothing valid after the damage: a crash during a
 * write) from damage inside the file.
 */
static bool
spool_valid_after(const unsigned char *map, size_t from, size_t size)
{
	uint32_t magic = SPOOL_REC_MAGIC;
	struct spool_rec_hdr h;
	const unsigned char *q;

	while (from < size && size - from >= SPOOL_HDR) {
		q = memmem(map + from, size - from, &magic, sizeof(magic));
		if (q == NULL)
			return false;
		if (spool_rec_ok(map, (size_t)(q - map), size, &h))
			return true;
		from = (size_t)(q - map) + 1;
	}
	return false;
}

/* A MESSAGE payload, taken apart. */
struct spool_parsed {
	struct spool_msg_fix	 fix;
	const char		*account;
	const char		*client;
	const char		*mail_from;
	const unsigned char	*rcpts;		/* the first recipient field */
	const unsigned char	*body;
};

/* spool_get_field - a u16 length, the bytes and a NUL; false if bad. */
static bool
spool_get_field(const unsigned char **pp, const unsigned char *end,
    const char **s_r)
{
	const unsigned char *p = *pp;
	uint16_t n;

	if (end - p < 2)
		return false;
	memcpy(&n, p, 2);
	p += 2;
	if ((size_t)(end - p) < (size_t)n + 1 || p[n] != '\0' ||
	    memchr(p, '\0', n) != NULL)
		return false;
	*s_r = (const char *)p;
	*pp = p + n + 1;
	return true;
}

/*
 * spool_parse_message - take apart a MESSAGE payload of len bytes of
 * which the first avail are at p: the envelope must lie within them, the
 * body may be cut (pm->body points at what there is of it).
 */
static bool
spool_parse_message(const unsigned char *p, size_t len, size_t avail,
    struct spool_parsed *pm)
{
	const unsigned char *start = p, *end = p + avail;
	const char *s;
	uint32_t i;

	if (avail > len || avail < sizeof(pm->fix))
		return false;
	memcpy(&pm->fix, p, sizeof(pm->fix));
	p += sizeof(pm->fix);
	if (pm->fix.nrcpt == 0 || pm->fix.nrcpt > SPOOL_FORMAT_RCPTS)
		return false;
	if (!spool_get_field(&p, end, &pm->account) ||
	    !spool_get_field(&p, end, &pm->client) ||
	    !spool_get_field(&p, end, &pm->mail_from))
		return false;
	pm->rcpts = p;
	for (i = 0; i < pm->fix.nrcpt; i++)
		if (!spool_get_field(&p, end, &s))
			return false;
	if (pm->fix.body_len != (uint64_t)(len - (size_t)(p - start)))
		return false;
	pm->body = p;
	return true;
}

/* spool_put_field - append s as a field; false when it is too long. */
static bool
spool_put_field(struct mr_buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	uint16_t n16 = (uint16_t)n;

	if (n > SPOOL_FIELD_MAX)
		return false;
	mr_buf_append(b, &n16, 2);
	mr_buf_append(b, s ? s : "", n + 1);
	return true;
}

/* ---------------------------------------------------------------- */
/* The index of live messages                                       */
/* ---------------------------------------------------------------- */

static bool
spool_index_eq(void *ctx, uint32_t value, const void *key, size_t len)
{
	struct spool *sp = ctx;
	uint64_t id;

	(void)len;
	memcpy(&id, key, sizeof(id));
	return sp->msgs[value].id == id;
}

static uint32_t
spool_find(struct spool *sp, uint64_t id)
{
	return mr_hmap_find(sp->index, mr_hash(&id, sizeof(id)), &id,
	    sizeof(id));
}

static uint64_t *
spool_bits(struct spool_msg *m)
{
	return m->nrcpt <= 64 ? &m->done.word : m->done.words;
}

static bool
spool_bit(struct spool_msg *m, uint32_t idx)
{
	return (spool_bits(m)[idx / 64] >> (idx % 64)) & 1;
}

/* spool_msg_add - index a live message homed in seg; its slot. */
static uint32_t
spool_msg_add(struct spool *sp, uint64_t id, struct spool_seg *seg,
    uint64_t off, uint32_t len, uint32_t nrcpt)
{
	struct spool_msg *m;
	uint32_t slot;

	if (sp->free_head != UINT32_MAX) {
		slot = sp->free_head;
		sp->free_head = sp->msgs[slot].next_free;
	} else {
		if (sp->nmsgs == sp->msgcap) {
			sp->msgcap = sp->msgcap ? sp->msgcap * 2 : 256;
			sp->msgs = xreallocarray(sp->msgs, sp->msgcap,
			    sizeof(*sp->msgs));
		}
		slot = sp->nmsgs++;
	}
	m = &sp->msgs[slot];
	memset(m, 0, sizeof(*m));
	m->id = id;
	m->seg = seg;
	m->off = off;
	m->len = len;
	m->nrcpt = m->pending = nrcpt;
	if (nrcpt > 64)
		m->done.words = xcalloc((nrcpt + 63) / 64, sizeof(uint64_t));
	MR_ASSERT(mr_hmap_put(sp->index, mr_hash(&id, sizeof(id)), &id,
	    sizeof(id), slot) == MR_HMAP_NONE);
	seg->live++;
	sp->nlive++;
	sp->live_rcpts += nrcpt;
	return slot;
}

/* spool_msg_final - the message's last recipient is final: drop it. */
static void
spool_msg_final(struct spool *sp, uint32_t slot)
{
	struct spool_msg *m = &sp->msgs[slot];
	uint64_t id = m->id;

	MR_ASSERT(mr_hmap_del(sp->index, mr_hash(&id, sizeof(id)), &id,
	    sizeof(id)) == slot);
	MR_ASSERT(m->seg->live > 0);
	if (--m->seg->live == 0 && !m->seg->current)
		sp->reap = true;
	sp->nlive--;
	if (m->nrcpt > 64)
		free(m->done.words);
	m->id = 0;
	m->next_free = sp->free_head;
	sp->free_head = slot;
}

/* spool_mark - set a recipient's done bit; true when it was not set. */
static bool
spool_mark(struct spool *sp, uint32_t slot, uint32_t idx)
{
	struct spool_msg *m = &sp->msgs[slot];

	if (spool_bit(m, idx))
		return false;
	spool_bits(m)[idx / 64] |= (uint64_t)1 << (idx % 64);
	m->pending--;
	sp->live_rcpts--;
	if (m->pending == 0)
		spool_msg_final(sp, slot);
	return true;
}

/* ---------------------------------------------------------------- */
/* Segments and the write path                                      */
/* ---------------------------------------------------------------- */

static void
spool_seg_push(struct spool *sp, struct spool_seg *seg)
{
	if (sp->nsegs == sp->segcap) {
		sp->segcap = sp->segcap ? sp->segcap * 2 : 16;
		sp->segs = xreallocarray(sp->segs, sp->segcap,
		    sizeof(*sp->segs));
	}
	sp->segs[sp->nsegs++] = seg;
}

/*
 * spool_seg_create - make the next segment and make it current (under the
 * lock, or before the thread runs).  0 or -errno; the current segment is
 * unchanged on failure.
 */
static int
spool_seg_create(struct spool *sp, struct mr_buf *err)
{
	struct spool_seg_hdr h;
	struct spool_seg *seg;
	char name[64];
	ssize_t n;
	int fd, r;

	spool_name(name, sizeof(name), sp->next_seq, ".seg");
	fd = openat(sp->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
	    0640);
	if (fd < 0) {
		r = -errno;
		if (err)
			mr_buf_printf(err, "cannot create spool segment "
			    "%s/%s: %s", sp->dir, name, mr_strerror(r));
		return r;
	}
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, SPOOL_SEG_MAGIC, 8);
	h.seq = sp->next_seq;
	h.first_id = sp->next_id;
	h.check = spool_seg_check(&h);
	do
		n = pwrite(fd, &h, sizeof(h), 0);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(h)) {
		r = n < 0 ? -errno : -ENOSPC;
		if (err)
			mr_buf_printf(err, "cannot write spool segment "
			    "%s/%s: %s", sp->dir, name, mr_strerror(r));
		close(fd);
		unlinkat(sp->dirfd, name, 0);
		return r;
	}
	seg = xcalloc(1, sizeof(*seg));
	seg->seq = sp->next_seq++;
	seg->fd = fd;
	seg->size = SPOOL_HDR;
	seg->current = true;
	seg->dirty = true;
	if (sp->cur != NULL) {
		/* Still urgent if its messages wait for their tickets. */
		sp->cur->current = false;
		if (sp->cur->live == 0)
			sp->reap = true;
	}
	sp->cur = seg;
	sp->dir_dirty = true;
	spool_seg_push(sp, seg);
	return 0;
}

/*
 * spool_write - write a whole record at seg's end (under the lock).  On
 * failure whatever part of it reached the file is cut off again; when
 * that fails too, the segment is sealed (nothing may follow the debris).
 */
static int
spool_write(struct spool *sp, struct spool_seg *seg, struct iovec *iov,
    int iovcnt, size_t total, struct mr_buf *err)
{
	off_t off = (off_t)seg->size;
	size_t done = 0;
	ssize_t n;
	int r;

	while (done < total) {
		n = pwritev(seg->fd, iov, iovcnt, off + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			goto fail;
		}
		done += (size_t)n;
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	seg->size += total;
	seg->dirty = true;
	return 0;
fail:
	if (err)
		mr_buf_printf(err, "cannot write a %zu-byte record to spool "
		    "segment %s/spool-%016" PRIx64 ".seg: %s", total, sp->dir,
		    seg->seq, mr_strerror(r));
	if (done > 0 && ftruncate(seg->fd, off) != 0) {
		mr_log_err(SPOOL_MOD, "event=truncate-failed seq=%016" PRIx64
		    " offset=%lld error=%s", seg->seq, (long long)off,
		    mr_strerror(-errno));
		seg->sealed = true;
	}
	return r;
}

/* spool_check_params - copy params with defaults into p; 0 or code. */
static int
spool_check_params(const struct spool_params *in, struct spool_params *p,
    struct mr_buf *err)
{
	static const struct spool_params defaults = {
		64 << 20, 64 << 20, 1000, 0
	};

	*p = in ? *in : defaults;
	if (p->segment_size == 0)
		p->segment_size = defaults.segment_size;
	if (p->max_record == 0)
		p->max_record = defaults.max_record;
	if (p->max_rcpts == 0)
		p->max_rcpts = defaults.max_rcpts;
	if (p->segment_size < (64 << 10) || p->segment_size > (1U << 30)) {
		mr_buf_printf(err, "spool segment_size %zu out of range "
		    "[64 KiB, 1 GiB]", p->segment_size);
		return MR_ERANGE_VALUE;
	}
	if (p->max_record < (4 << 10) || p->max_record > SPOOL_FORMAT_MAX) {
		mr_buf_printf(err, "spool max_record %zu out of range "
		    "[4 KiB, 1 GiB]", p->max_record);
		return MR_ERANGE_VALUE;
	}
	if (p->max_rcpts > SPOOL_FORMAT_RCPTS) {
		mr_buf_printf(err, "spool max_rcpts %zu out of range [1, %d]",
		    p->max_rcpts, SPOOL_FORMAT_RCPTS);
		return MR_ERANGE_VALUE;
	}
	if (p->commit_delay_us > 100000) {
		mr_buf_printf(err, "spool commit_delay_us %u out of range "
		    "[0, 100000]", p->commit_delay_us);
		return MR_ERANGE_VALUE;
	}
	return 0;
}

int
spool_append_message(struct spool *sp, const struct spool_envelope *env,
    const void *body, size_t body_len, struct mr_buf *err, uint64_t *id_r,
    uint64_t *ticket_r)
{
	struct mr_buf e = MR_BUF_INIT;
	struct spool_msg_fix fix;
	struct spool_rec_hdr h;
	struct iovec iov[3];
	XXH3_state_t xs;
	size_t i, total;
	uint64_t off;
	int r;

	if (env->nrcpt == 0) {
		if (err)
			mr_buf_puts(err, "spool: a message needs a recipient");
		return MR_EINVAL_INPUT;
	}
	if (env->nrcpt > sp->p.max_rcpts) {
		if (err)
			mr_buf_printf(err, "spool: %zu recipients, over the "
			    "limit of %zu", env->nrcpt, sp->p.max_rcpts);
		return MR_ERANGE_VALUE;
	}
	/* The envelope is built and everything is hashed before the lock:
	 * only the pwritev happens under it. */
	memset(&fix, 0, sizeof(fix));
	fix.received = env->received ? env->received : mr_wall_ms();
	fix.flags = env->flags;
	fix.nrcpt = (uint32_t)env->nrcpt;
	fix.body_len = body_len;
	mr_buf_append(&e, &fix, sizeof(fix));
	r = spool_put_field(&e, env->account) &&
	    spool_put_field(&e, env->client) &&
	    spool_put_field(&e, env->mail_from) ? 0 : MR_ETOOLONG;
	for (i = 0; r == 0 && i < env->nrcpt; i++)
		if (!spool_put_field(&e, env->rcpt[i]))
			r = MR_ETOOLONG;
	if (r != 0) {
		if (err)
			mr_buf_printf(err, "spool: an envelope field is over "
			    "%d bytes", SPOOL_FIELD_MAX);
		mr_buf_release(&e);
		return r;
	}
	if (body_len > sp->p.max_record ||
	    SPOOL_HDR + e.len + body_len > sp->p.max_record) {
		if (err)
			mr_buf_printf(err, "spool: a record of %zu bytes is "
			    "over the limit of %zu", SPOOL_HDR + e.len +
			    body_len, sp->p.max_record);
		mr_buf_release(&e);
		return MR_ETOOLONG;
	}
	total = SPOOL_HDR + e.len + body_len;
	memset(&xs, 0, sizeof(xs));
	XXH3_64bits_reset_withSeed(&xs, SPOOL_SEED);
	XXH3_64bits_update(&xs, e.data, e.len);
	XXH3_64bits_update(&xs, body, body_len);
	memset(&h, 0, sizeof(h));
	h.magic = SPOOL_REC_MAGIC;
	h.type = SPOOL_REC_MESSAGE;
	h.version = SPOOL_VERSION;
	h.len = (uint32_t)(e.len + body_len);

	pthread_mutex_lock(&sp->mu);
	r = sp->error;
	if (r != 0) {
		if (err)
			mr_buf_printf(err, "spool: failed earlier: %s",
			    mr_strerror(r));
		goto out;
	}
	if (sp->cur->sealed || (sp->cur->size > SPOOL_HDR &&
	    sp->cur->size + total > sp->p.segment_size)) {
		r = spool_seg_create(sp, err);
		if (r != 0)
			goto out;
	}
	h.id = sp->next_id;
	h.check = spool_rec_finish(&xs, &h);
	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = e.data;
	iov[1].iov_len = e.len;
	iov[2].iov_base = (void *)body;
	iov[2].iov_len = body_len;
	off = sp->cur->size;
	r = spool_write(sp, sp->cur, iov, body_len ? 3 : 2, total, err);
	if (r != 0)
		goto out;
	sp->next_id++;
	sp->cur->urgent = true;
	spool_msg_add(sp, h.id, sp->cur, off, (uint32_t)total,
	    (uint32_t)env->nrcpt);
	sp->st.appended++;
	*id_r = h.id;
	*ticket_r = ++sp->appended;
	pthread_cond_signal(&sp->work_cv);
out:
	pthread_mutex_unlock(&sp->mu);
	mr_buf_release(&e);
	return r;
}

int
spool_rcpt_done(struct spool *sp, uint64_t id, uint32_t idx,
    enum spool_outcome outcome, struct mr_buf *err)
{
	struct spool_done_rec d;
	struct spool_rec_hdr h;
	struct spool_seg *seg;
	struct spool_msg *m;
	struct iovec iov[2];
	uint32_t slot;
	int r = 0;

	pthread_mutex_lock(&sp->mu);
	slot = spool_find(sp, id);
	if (slot == MR_HMAP_NONE) {
		pthread_mutex_unlock(&sp->mu);
		if (err)
			mr_buf_printf(err, "spool: no live message %016" PRIx64,
			    id);
		return -ENOENT;
	}
	m = &sp->msgs[slot];
	if (idx >= m->nrcpt) {
		pthread_mutex_unlock(&sp->mu);
		if (err)
			mr_buf_printf(err, "spool: message %016" PRIx64 " has "
			    "no recipient %" PRIu32, id, idx);
		return MR_ERANGE_VALUE;
	}
	if (spool_bit(m, idx)) {
		pthread_mutex_unlock(&sp->mu);
		return 0;
	}
	seg = m->seg;
	if (sp->error != 0) {
		r = sp->error;
		if (err)
			mr_buf_printf(err, "spool: failed earlier: %s",
			    mr_strerror(r));
	} else if (!seg->sealed) {
		/* The record goes to the message's home segment: see the
		 * invariant in spool.h. */
		memset(&d, 0, sizeof(d));
		d.idx = idx;
		d.outcome = (uint8_t)outcome;
		memset(&h, 0, sizeof(h));
		h.magic = SPOOL_REC_MAGIC;
		h.type = SPOOL_REC_RCPT_DONE;
		h.version = SPOOL_VERSION;
		h.len = sizeof(d);
		h.id = id;
		h.check = spool_rec_check(&h, &d);
		iov[0].iov_base = &h;
		iov[0].iov_len = sizeof(h);
		iov[1].iov_base = &d;
		iov[1].iov_len = sizeof(d);
		r = spool_write(sp, seg, iov, 2, sizeof(h) + sizeof(d), err);
		if (r == 0 && sp->lazy_due == 0) {
			sp->lazy_due = mr_clock_ms() + SPOOL_LAZY_MS;
			pthread_cond_signal(&sp->work_cv);
		}
	}
	spool_mark(sp, slot, idx);
	if (sp->reap)
		pthread_cond_signal(&sp->work_cv);
	pthread_mutex_unlock(&sp->mu);
	return r;
}

/* ---------------------------------------------------------------- */
/* The sync thread                                                  */
/* ---------------------------------------------------------------- */

static uint64_t
spool_synced_load(const struct spool *sp)
{
	return atomic_load_explicit(&((struct spool *)sp)->synced,
	    memory_order_acquire);
}

uint64_t
spool_synced(const struct spool *sp)
{
	return spool_synced_load(sp);
}

int
spool_durable(const struct spool *sp, uint64_t ticket)
{
	if (ticket <= spool_synced_load(sp))
		return 1;
	return atomic_load_explicit(&((struct spool *)sp)->aerror,
	    memory_order_acquire);
}

static void
spool_fail(struct spool *sp, int r, const char *what)
{
	mr_log_err(SPOOL_MOD, "event=sync-failed dir=%s op=%s error=%s; the "
	    "spool refuses messages until it is reopened", mr_q(sp->dir,
	    (size_t)-1), what, mr_q(mr_strerror(r), (size_t)-1));
	if (sp->error == 0) {
		sp->error = r;
		atomic_store_explicit(&sp->aerror, r, memory_order_release);
	}
}

/*
 * spool_take_reaped - unlink from the list (under the lock) the segments
 * that are not current and hold no live message; they go to *v_r.
 */
static size_t
spool_take_reaped(struct spool *sp, struct spool_seg ***v_r)
{
	struct spool_seg **v = NULL;
	size_t i, j = 0, n = 0;

	*v_r = NULL;
	if (!sp->reap)
		return 0;
	sp->reap = false;
	for (i = 0; i < sp->nsegs; i++) {
		if (!sp->segs[i]->current && sp->segs[i]->live == 0) {
			v = xreallocarray(v, n + 1, sizeof(*v));
			v[n++] = sp->segs[i];
		} else {
			sp->segs[j++] = sp->segs[i];
		}
	}
	sp->nsegs = j;
	*v_r = v;
	return n;
}

/*
 * spool_reap - delete (or, when damaged, rename) segments taken off the
 * list, oldest first, without the lock.  A segment is synced before it
 * goes, so that if the unlink is lost in a crash, its done marks are not.
 * Returns 0 or the -errno of a failed fsync; counts fsyncs and deletions.
 */
static int
spool_reap(struct spool *sp, struct spool_seg **v, size_t n,
    uint64_t *fsyncs, uint64_t *deleted)
{
	char name[64], to[64];
	size_t i;
	int r = 0;

	for (i = 0; i < n; i++) {
		if (v[i]->dirty || v[i]->urgent) {
			(*fsyncs)++;
			if (fdatasync(v[i]->fd) != 0 && r == 0)
				r = -errno;
		}
		close(v[i]->fd);
		spool_name(name, sizeof(name), v[i]->seq, ".seg");
		if (v[i]->damaged) {
			spool_name(to, sizeof(to), v[i]->seq, ".damaged");
			if (renameat(sp->dirfd, name, sp->dirfd, to) != 0)
				mr_log_warn(SPOOL_MOD, "event=rename-failed "
				    "file=%s error=%s", name,
				    mr_strerror(-errno));
			else
				mr_log_warn(SPOOL_MOD, "event=damaged-segment-"
				    "kept file=%s", to);
		} else if (unlinkat(sp->dirfd, name, 0) != 0) {
			mr_log_warn(SPOOL_MOD, "event=unlink-failed file=%s "
			    "error=%s", name, mr_strerror(-errno));
		} else {
			mr_log_debug(SPOOL_MOD, "event=segment-deleted "
			    "file=%s", name);
		}
		(*deleted)++;
		free(v[i]);
	}
	if (n > 0) {
		(*fsyncs)++;
		if (fsync(sp->dirfd) != 0 && r == 0)
			r = -errno;
	}
	free(v);
	return r;
}

static bool
spool_any_dirty(const struct spool *sp)
{
	size_t i;

	for (i = 0; i < sp->nsegs; i++)
		if (sp->segs[i]->dirty || sp->segs[i]->urgent)
			return true;
	return false;
}

static void
spool_wait(struct spool *sp)
{
	struct timespec ts;
	uint64_t now, ms;

	if (sp->lazy_due == 0) {
		pthread_cond_wait(&sp->work_cv, &sp->mu);
		return;
	}
	now = mr_clock_ms();
	ms = sp->lazy_due > now ? sp->lazy_due - now : 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&sp->work_cv, &sp->mu, &ts);
}

/*
 * spool_round - one round of the sync thread, entered and left with the
 * lock held: fdatasync the segments holding messages whose tickets wait
 * (all dirty ones when full), the directory when a segment was made,
 * publish the tickets, notify, delete finished segments.
 */
static void
spool_round(struct spool *sp, bool urgent, bool full)
{
	struct spool_seg **reaped;
	int *fds = NULL;
	size_t nfds = 0, nreaped, i;
	uint64_t target, serving, fsyncs = 0, deleted = 0, before;
	bool dir, advanced = false;
	struct timespec ts;
	int r = 0, r2;

	if (urgent && !full && sp->p.commit_delay_us > 0) {
		/* Let more sessions join this round. */
		pthread_mutex_unlock(&sp->mu);
		ts.tv_sec = 0;
		ts.tv_nsec = (long)sp->p.commit_delay_us * 1000L;
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		pthread_mutex_lock(&sp->mu);
	}
	target = sp->appended;
	serving = sp->req_gen;
	nreaped = spool_take_reaped(sp, &reaped);
	for (i = 0; i < sp->nsegs; i++) {
		struct spool_seg *s = sp->segs[i];

		if (s->urgent || (full && s->dirty)) {
			fds = xreallocarray(fds, nfds + 1, sizeof(*fds));
			fds[nfds++] = s->fd;
			s->urgent = s->dirty = false;
		}
	}
	if (full)
		sp->lazy_due = 0;
	dir = sp->dir_dirty;
	sp->dir_dirty = false;
	pthread_mutex_unlock(&sp->mu);

	/* Only this thread closes segment fds: these stay valid. */
	for (i = 0; i < nfds; i++) {
		fsyncs++;
		if (fdatasync(fds[i]) != 0 && r == 0)
			r = -errno;
	}
	if (dir) {
		fsyncs++;
		if (fsync(sp->dirfd) != 0 && r == 0)
			r = -errno;
	}
	free(fds);

	/* Publish first: sessions waiting for their 250 go on while the
	 * finished segments are deleted. */
	pthread_mutex_lock(&sp->mu);
	if (r != 0) {
		spool_fail(sp, r, "fdatasync");
	} else if (target > sp->synced_target) {
		before = sp->synced_target;
		sp->st.syncs++;
		sp->st.synced += target - before;
		sp->synced_target = target;
		atomic_store_explicit(&sp->synced, target,
		    memory_order_release);
		advanced = true;
	}
	pthread_mutex_unlock(&sp->mu);
	if ((advanced || r != 0) && sp->notify != NULL)
		sp->notify(sp->notify_arg);
	r2 = spool_reap(sp, reaped, nreaped, &fsyncs, &deleted);

	pthread_mutex_lock(&sp->mu);
	if (r == 0 && r2 != 0) {
		spool_fail(sp, r2, "fdatasync before unlink");
		if (sp->notify != NULL) {
			pthread_mutex_unlock(&sp->mu);
			sp->notify(sp->notify_arg);
			pthread_mutex_lock(&sp->mu);
		}
	}
	sp->st.fsyncs += fsyncs;
	sp->st.deleted += deleted;
	sp->done_gen = serving;
	pthread_cond_broadcast(&sp->done_cv);
}

static void *
spool_sync_main(void *arg)
{
	struct spool *sp = arg;
	bool urgent, full;

	pthread_mutex_lock(&sp->mu);
	for (;;) {
		if (sp->error != 0) {
			/* Nothing can be made durable any more. */
			pthread_cond_broadcast(&sp->done_cv);
			if (sp->stopping)
				break;
			pthread_cond_wait(&sp->work_cv, &sp->mu);
			continue;
		}
		urgent = sp->appended > sp->synced_target || sp->dir_dirty;
		full = sp->req_gen > sp->done_gen ||
		    (sp->lazy_due != 0 && mr_clock_ms() >= sp->lazy_due) ||
		    (sp->stopping && spool_any_dirty(sp));
		if (urgent || full || sp->reap) {
			spool_round(sp, urgent, full);
			continue;
		}
		if (sp->stopping)
			break;
		spool_wait(sp);
	}
	pthread_mutex_unlock(&sp->mu);
	return NULL;
}

int
spool_sync(struct spool *sp)
{
	uint64_t gen;
	int r;

	pthread_mutex_lock(&sp->mu);
	gen = ++sp->req_gen;
	pthread_cond_signal(&sp->work_cv);
	while (sp->done_gen < gen && sp->error == 0)
		pthread_cond_wait(&sp->done_cv, &sp->mu);
	r = sp->error;
	pthread_mutex_unlock(&sp->mu);
	return r;
}

/* ---------------------------------------------------------------- */
/* Reading back                                                     */
/* ---------------------------------------------------------------- */

void
spool_message_release(struct spool_message *m)
{
	mr_buf_release(&m->raw_);
	free(m->vec_);
	memset(m, 0, sizeof(*m));
}

/*
 * spool_fill - point m's fields into its raw record, of which raw_ holds
 * the first raw_.len of rec_len bytes, the body cut to max_body; false if
 * bad or, when the record is not all there, if its envelope is not.  A
 * whole record is verified; the check of a cut one covers bytes not
 * read, so only its structure is.
 */
static bool
spool_fill(struct spool_message *m, uint64_t id, const uint64_t *bits,
    size_t rec_len, size_t max_body)
{
	const unsigned char *raw = (const unsigned char *)m->raw_.data;
	const unsigned char *p, *end;
	struct spool_parsed pm;
	struct spool_rec_hdr h;
	const char **rcpt;
	uint32_t *idx;
	size_t need, got, n = 0;
	uint32_t i;

	if (m->raw_.len == rec_len) {
		if (!spool_rec_ok(raw, 0, m->raw_.len, &h))
			return false;
	} else {
		if (m->raw_.len < SPOOL_HDR)
			return false;
		memcpy(&h, raw, SPOOL_HDR);
		if (!spool_rec_hdr_ok(&h))
			return false;
	}
	if (h.id != id || h.type != SPOOL_REC_MESSAGE ||
	    SPOOL_HDR + h.len != rec_len || !spool_parse_message(raw +
	    SPOOL_HDR, h.len, m->raw_.len - SPOOL_HDR, &pm))
		return false;
	need = pm.fix.nrcpt * (sizeof(char *) + sizeof(uint32_t));
	if (m->veccap_ < need) {
		free(m->vec_);
		m->vec_ = xmalloc(need);
		m->veccap_ = need;
	}
	rcpt = m->vec_;
	idx = (uint32_t *)(rcpt + pm.fix.nrcpt);
	p = pm.rcpts;
	end = pm.body;
	for (i = 0; i < pm.fix.nrcpt; i++) {
		const char *s;

		MR_ASSERT(spool_get_field(&p, end, &s));
		if ((bits[i / 64] >> (i % 64)) & 1)
			continue;
		rcpt[n] = s;
		idx[n++] = i;
	}
	got = m->raw_.len - (size_t)(pm.body - raw);
	m->id = id;
	m->env.received = pm.fix.received;
	m->env.flags = pm.fix.flags;
	m->env.account = pm.account;
	m->env.client = pm.client;
	m->env.mail_from = pm.mail_from;
	m->env.rcpt = rcpt;
	m->env.nrcpt = n;
	m->rcpt_idx = idx;
	m->nrcpt_total = pm.fix.nrcpt;
	m->body = pm.body;
	m->body_len = got < max_body ? got : max_body;
	return true;
}

/* spool_pread - read the record at off on to want bytes in b. */
static int
spool_pread(int fd, uint64_t off, size_t want, struct mr_buf *b)
{
	ssize_t n;

	mr_buf_reserve(b, want - b->len);
	while (b->len < want) {
		n = pread(fd, b->data + b->len, want - b->len,
		    (off_t)(off + b->len));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		b->len += (size_t)n;
	}
	b->data[b->len] = '\0';
	return 0;
}

/* spool_head_len - of a record of len bytes, guess bytes of header and
 * envelope and max_body of body, or all of it. */
static size_t
spool_head_len(size_t len, size_t guess, size_t max_body)
{
	if (guess >= len || max_body >= len - guess)
		return len;
	return guess + max_body;
}

int
spool_read_message(struct spool *sp, uint64_t id, struct spool_message *m,
    struct mr_buf *err)
{
	return spool_read_head(sp, id, SIZE_MAX, m, err);
}

int
spool_read_head(struct spool *sp, uint64_t id, size_t max_body,
    struct spool_message *m, struct mr_buf *err)
{
	struct spool_msg *sm;
	uint64_t *bits, off, seq;
	size_t nwords, len, want, guess = SPOOL_HEAD_GUESS;
	uint32_t slot;
	int fd, r = 0;

	pthread_mutex_lock(&sp->mu);
	slot = spool_find(sp, id);
	if (slot == MR_HMAP_NONE) {
		pthread_mutex_unlock(&sp->mu);
		if (err)
			mr_buf_printf(err, "spool: no live message %016" PRIx64,
			    id);
		return -ENOENT;
	}
	sm = &sp->msgs[slot];
	/* A copy of the fd: the segment may be deleted while we read. */
	fd = fcntl(sm->seg->fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		pthread_mutex_unlock(&sp->mu);
		if (err)
			mr_buf_printf(err, "spool: cannot read message %016"
			    PRIx64 ": %s", id, mr_strerror(r));
		return r;
	}
	nwords = (sm->nrcpt + 63) / 64;
	bits = xmalloc(nwords * sizeof(*bits));
	memcpy(bits, spool_bits(sm), nwords * sizeof(*bits));
	off = sm->off;
	len = sm->len;
	seq = sm->seg->seq;
	pthread_mutex_unlock(&sp->mu);

	/* The envelope's length is known once it is read: a guess at it,
	 * doubled until the envelope fits (or the record is all read). */
	mr_buf_reset(&m->raw_);
	for (;;) {
		want = spool_head_len(len, guess, max_body);
		if ((r = spool_pread(fd, off, want, &m->raw_)) != 0)
			break;
		if (spool_fill(m, id, bits, len, max_body))
			break;
		if (want == len) {
			r = MR_EINVAL_INPUT;
			break;
		}
		guess = guess > len / 2 ? len : guess * 2;
	}
	close(fd);
	free(bits);
	if (r != 0) {
		mr_buf_reset(&m->raw_);
		if (err)
			mr_buf_printf(err, "spool: message %016" PRIx64 " in "
			    "segment %016" PRIx64 " at byte %" PRIu64 ": %s",
			    id, seq, off, r == MR_EINVAL_INPUT ?
			    "the record does not verify" : mr_strerror(r));
	}
	return r;
}

static int
spool_id_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int
spool_recover(struct spool *sp, spool_recover_cb *cb, void *arg)
{
	struct spool_message m;
	struct mr_buf err = MR_BUF_INIT;
	uint64_t *ids;
	size_t n = 0, i;
	uint32_t s;
	int r, first = 0;

	pthread_mutex_lock(&sp->mu);
	ids = xreallocarray(NULL, sp->nlive + 1, sizeof(*ids));
	for (s = 0; s < sp->nmsgs; s++)
		if (sp->msgs[s].id != 0)
			ids[n++] = sp->msgs[s].id;
	pthread_mutex_unlock(&sp->mu);
	qsort(ids, n, sizeof(*ids), spool_id_cmp);
	memset(&m, 0, sizeof(m));
	for (i = 0; i < n; i++) {
		mr_buf_reset(&err);
		r = spool_read_message(sp, ids[i], &m, &err);
		if (r == -ENOENT)
			continue;	/* final in the meantime */
		if (r != 0) {
			mr_log_err(SPOOL_MOD, "event=recover-failed id=%016"
			    PRIx64 " error=%s", ids[i],
			    mr_q(mr_buf_cstr(&err), (size_t)-1));
			if (first == 0)
				first = r;
			continue;
		}
		r = cb(arg, &m);
		if (r != 0) {
			first = r;
			break;
		}
	}
	spool_message_release(&m);
	mr_buf_release(&err);
	free(ids);
	return first;
}

void
spool_stats(struct spool *sp, struct spool_stats *st_r)
{
	size_t i;

	pthread_mutex_lock(&sp->mu);
	*st_r = sp->st;
	st_r->bytes = 0;
	st_r->damaged = 0;
	for (i = 0; i < sp->nsegs; i++) {
		st_r->bytes += sp->segs[i]->size;
		st_r->damaged += sp->segs[i]->damaged;
	}
	st_r->segments = (uint32_t)sp->nsegs;
	st_r->messages = sp->nlive;
	st_r->rcpts = sp->live_rcpts;
	pthread_mutex_unlock(&sp->mu);
}

/* ---------------------------------------------------------------- */
/* Opening: recovery                                                */
/* ---------------------------------------------------------------- */

/* spool_apply - one valid record of seg during recovery; false if it
 * makes no sense (the segment then ends there, as after a bad check). */
static bool
spool_apply(struct spool *sp, struct spool_seg *seg,
    const struct spool_rec_hdr *h, const unsigned char *payload,
    uint64_t off, uint64_t *max_id)
{
	struct spool_parsed pm;
	struct spool_done_rec d;
	uint32_t slot;

	if (h->id > *max_id)
		*max_id = h->id;
	if (h->type == SPOOL_REC_MESSAGE) {
		if (!spool_parse_message(payload, h->len, h->len, &pm) ||
		    h->id == 0)
			return false;
		if (spool_find(sp, h->id) != MR_HMAP_NONE) {
			mr_log_err(SPOOL_MOD, "event=duplicate-id id=%016"
			    PRIx64 " seq=%016" PRIx64 " offset=%" PRIu64,
			    h->id, seg->seq, off);
			return true;
		}
		spool_msg_add(sp, h->id, seg, off, SPOOL_HDR + h->len,
		    pm.fix.nrcpt);
		return true;
	}
	if (h->len != sizeof(d))
		return false;
	memcpy(&d, payload, sizeof(d));
	slot = spool_find(sp, h->id);
	/* Every done record is written to its message's home, after it. */
	if (slot == MR_HMAP_NONE || sp->msgs[slot].seg != seg ||
	    d.idx >= sp->msgs[slot].nrcpt) {
		mr_log_warn(SPOOL_MOD, "event=stray-done id=%016" PRIx64
		    " seq=%016" PRIx64 " offset=%" PRIu64, h->id, seg->seq,
		    off);
		return true;
	}
	spool_mark(sp, slot, d.idx);
	return true;
}

/*
 * spool_scan - read segment seq: verify its records, index its messages,
 * cut a torn tail, mark damage.  0, or -errno when the file cannot be
 * read at all (the spool does not open: messages would be lost).
 */
static int
spool_scan(struct spool *sp, uint64_t seq, uint64_t *max_id,
    uint64_t *first_id, struct mr_buf *err)
{
	const unsigned char *map = NULL;
	struct spool_seg_hdr sh;
	struct spool_rec_hdr h;
	struct spool_seg *seg;
	struct stat sb;
	char name[64];
	size_t size, pos;
	int fd, r;

	spool_name(name, sizeof(name), seq, ".seg");
	fd = openat(sp->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		r = -errno;
		mr_buf_printf(err, "cannot open spool segment %s/%s: %s",
		    sp->dir, name, mr_strerror(r));
		if (fd >= 0)
			close(fd);
		return r;
	}
	size = (size_t)sb.st_size;
	if (size > 0) {
		map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			r = -errno;
			mr_buf_printf(err, "cannot map spool segment %s/%s: %s",
			    sp->dir, name, mr_strerror(r));
			close(fd);
			return r;
		}
	}
	seg = xcalloc(1, sizeof(*seg));
	seg->seq = seq;
	seg->fd = fd;
	seg->size = size;
	spool_seg_push(sp, seg);
	if (size >= SPOOL_HDR)
		memcpy(&sh, map, sizeof(sh));
	if (size < SPOOL_HDR || memcmp(sh.magic, SPOOL_SEG_MAGIC, 8) != 0 ||
	    sh.check != spool_seg_check(&sh) || sh.seq != seq) {
		pos = 0;
	} else {
		if (sh.first_id > *first_id)
			*first_id = sh.first_id;
		pos = SPOOL_HDR;
		while (pos < size && spool_rec_ok(map, pos, size, &h) &&
		    spool_apply(sp, seg, &h, map + pos + SPOOL_HDR, pos,
		    max_id))
			pos += SPOOL_HDR + h.len;
	}
	if (pos < size) {
		sp->st.ignored_bytes += size - pos;
		if (spool_valid_after(map, pos + 1, size)) {
			/* Valid records after a bad one: not a crash during
			 * a write.  Keep the file as it is. */
			mr_log_err(SPOOL_MOD, "event=damaged-segment file=%s "
			    "offset=%zu ignored=%zu; messages after it are "
			    "lost", name, pos, size - pos);
			seg->damaged = seg->sealed = true;
		} else {
			mr_log_warn(SPOOL_MOD, "event=torn-tail file=%s "
			    "offset=%zu ignored=%zu", name, pos, size - pos);
			sp->st.torn_tails++;
			if (ftruncate(fd, (off_t)pos) != 0 ||
			    fdatasync(fd) != 0) {
				mr_log_err(SPOOL_MOD, "event=truncate-failed "
				    "file=%s error=%s", name,
				    mr_strerror(-errno));
				seg->sealed = true;
			} else {
				seg->size = pos;
			}
		}
	}
	if (map != NULL)
		munmap((void *)map, size);
	if (seg->live == 0)
		sp->reap = true;
	return 0;
}

static int
spool_seq_cmp(const void *a, const void *b)
{
	return spool_id_cmp(a, b);
}

/* spool_list - the seqs of dir's segment files, sorted; -errno. */
static int
spool_list(struct spool *sp, uint64_t **v_r, size_t *n_r)
{
	uint64_t *v = NULL, seq;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd;

	fd = openat(sp->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d)) != NULL) {
		if (!spool_parse_name(de->d_name, &seq))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n++] = seq;
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), spool_seq_cmp);
	*v_r = v;
	*n_r = n;
	return 0;
}

static void
spool_destroy(struct spool *sp)
{
	size_t i;
	uint32_t s;

	for (i = 0; i < sp->nsegs; i++) {
		close(sp->segs[i]->fd);
		free(sp->segs[i]);
	}
	for (s = 0; s < sp->nmsgs; s++)
		if (sp->msgs[s].id != 0 && sp->msgs[s].nrcpt > 64)
			free(sp->msgs[s].done.words);
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	mr_hmap_free(&sp->index);
	pthread_cond_destroy(&sp->work_cv);
	pthread_cond_destroy(&sp->done_cv);
	pthread_mutex_destroy(&sp->mu);
	free(sp->segs);
	free(sp->msgs);
	free(sp->dir);
	free(sp);
}

struct spool *
spool_open(const char *dir, const struct spool_params *params,
    spool_notify_cb *notify, void *arg, struct mr_buf *err, int *code_r)
{
	struct spool *sp = xcalloc(1, sizeof(*sp));
	struct spool_seg **reaped;
	pthread_condattr_t ca;
	uint64_t *seqs = NULL, max_id = 0, first_id = 1, fsyncs = 0;
	uint64_t deleted = 0;
	size_t nseqs = 0, i, nreaped;
	int r;

	sp->dirfd = -1;
	sp->free_head = UINT32_MAX;
	sp->dir = xstrdup(dir);
	sp->notify = notify;
	sp->notify_arg = arg;
	sp->index = mr_hmap_new(spool_index_eq, sp);
	pthread_mutex_init(&sp->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sp->work_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&sp->done_cv, NULL);
	atomic_init(&sp->synced, 0);
	atomic_init(&sp->aerror, 0);
	r = spool_check_params(params, &sp->p, err);
	if (r != 0)
		goto fail;
	if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
		r = -errno;
		mr_buf_printf(err, "cannot create spool directory %s: %s", dir,
		    mr_strerror(r));
		goto fail;
	}
	sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dirfd < 0) {
		r = -errno;
		mr_buf_printf(err, "cannot open spool directory %s: %s", dir,
		    mr_strerror(r));
		goto fail;
	}
	if (flock(sp->dirfd, LOCK_EX | LOCK_NB) != 0) {
		r = -errno;
		mr_buf_printf(err, "spool directory %s is in use by another "
		    "process: %s", dir, mr_strerror(r));
		goto fail;
	}
	r = spool_list(sp, &seqs, &nseqs);
	if (r != 0) {
		mr_buf_printf(err, "cannot read spool directory %s: %s", dir,
		    mr_strerror(r));
		goto fail;
	}
	for (i = 0; i < nseqs; i++) {
		r = spool_scan(sp, seqs[i], &max_id, &first_id, err);
		if (r != 0)
			goto fail;
	}
	/* Ids go on after every id on disk and after the first id of the
	 * newest segment (whose records may all be gone); each open starts a
	 * new range (seq << 32), past the ids of records a crash tore. */
	sp->next_seq = nseqs > 0 ? seqs[nseqs - 1] + 1 : 1;
	sp->next_id = max_id + 1 > first_id ? max_id + 1 : first_id;
	if (sp->next_seq < (1ULL << 31) && sp->next_id <= sp->next_seq << 32)
		sp->next_id = (sp->next_seq << 32) + 1;
	free(seqs);
	seqs = NULL;
	/* Appends go to a new segment, made durable before older ones go. */
	r = spool_seg_create(sp, err);
	if (r != 0)
		goto fail;
	if (fdatasync(sp->cur->fd) != 0 || fsync(sp->dirfd) != 0) {
		r = -errno;
		mr_buf_printf(err, "cannot sync spool directory %s: %s", dir,
		    mr_strerror(r));
		goto fail;
	}
	sp->cur->dirty = false;
	sp->dir_dirty = false;
	nreaped = spool_take_reaped(sp, &reaped);
	r = spool_reap(sp, reaped, nreaped, &fsyncs, &deleted);
	if (r != 0) {
		mr_buf_printf(err, "cannot sync spool directory %s: %s", dir,
		    mr_strerror(r));
		goto fail;
	}
	sp->st.recovered = sp->nlive;
	mr_log_info(SPOOL_MOD, "event=open dir=%s segments=%zu messages=%"
	    PRIu64 " rcpts=%" PRIu64 " torn=%u ignored=%" PRIu64
	    " next_id=%016" PRIx64, mr_q(dir, (size_t)-1), sp->nsegs,
	    sp->nlive, sp->live_rcpts, sp->st.torn_tails,
	    sp->st.ignored_bytes, sp->next_id);
	r = pthread_create(&sp->thread, NULL, spool_sync_main, sp);
	if (r != 0) {
		r = -r;
		mr_buf_printf(err, "cannot start the spool sync thread: %s",
		    mr_strerror(r));
		goto fail;
	}
	sp->thread_started = true;
	return sp;
fail:
	free(seqs);
	*code_r = r;
	spool_destroy(sp);
	return NULL;
}

void
spool_close(struct spool **spp)
{
	struct spool *sp = *spp;

	if (sp == NULL)
		return;
	if (sp->thread_started) {
		pthread_mutex_lock(&sp->mu);
		sp->stopping = true;
		pthread_cond_signal(&sp->work_cv);
		pthread_mutex_unlock(&sp->mu);
		pthread_join(sp->thread, NULL);
	}
	mr_log_info(SPOOL_MOD, "event=close dir=%s messages=%" PRIu64
	    " syncs=%" PRIu64 " synced=%" PRIu64, mr_q(sp->dir, (size_t)-1),
	    sp->nlive, sp->st.syncs, sp->st.synced);
	spool_destroy(sp);
	*spp = NULL;
}
