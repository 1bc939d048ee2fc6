/*
 * runner.c - one campaign from its inputs to its summary: prepare,
 * recover, deliver (an engine per worker thread), keep the recovery state
 * and the lease, finish.
 *
 * The calling thread is the recovery agent: while the engines deliver it
 * makes the journals durable every recovery.sync_interval (group commit),
 * folds them into the store every recovery.snapshot_interval, renews the
 * lease, notices stop, pause and cancel requests, and reports progress.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/mr_hmap.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "delivery/acct.h"
#include "delivery/campaign.h"
#include "delivery/campsrc.h"
#include "delivery/csv.h"
#include "delivery/engine.h"
#include "delivery/list.h"
#include "delivery/pace.h"
#include "delivery/runner.h"
#include "delivery/shape.h"
#include "delivery/template.h"
#include "net/conn.h"
#include "recovery/recovery.h"
#include "smtp/addr.h"

#define RUNNER_WORKERS_MAX	64
#define RUNNER_TICK_MS		50

struct runner {
	const struct runner_opts *o;
	const struct mr_config	*cfg;
	struct campaign		 camp;
	struct campsrc		 cs;		/* the campaign as a source */
	struct list		*list;
	struct tmpl		*tmpl;
	char			*mail_from;
	char			 template_sha[65];

	char			*reject_path;
	FILE			*reject_fp;
	int			 reject_err;
	uint64_t		 nrejects;
	bool			 write_rejects;
	struct list_stats	 lst;

	struct engine		*engines[RUNNER_WORKERS_MAX];
	struct engine_stats	 est[RUNNER_WORKERS_MAX];
	pthread_t		 threads[RUNNER_WORKERS_MAX];
	unsigned		 nworkers;
	bool			 started;

	struct recovery		*rec;
	uint64_t		 t0;
	uint64_t		 total;		/* to finish in this run */
	uint64_t		 base_final;	/* final before this run */
	uint64_t		 base_delivered;
	uint64_t		 base_bounced;
	uint64_t		 base_deferrals;
	uint64_t		 consumed;	/* finals counted in the quota,
					 * since the campaign began */
	uint64_t		 inflight_at_crash;
	enum runner_end		 end;
	/* The reader (runner_feed()). */
	uint32_t		 feed_next;	/* next list index to read */
	uint64_t		 posted;	/* handed to the engines */
	bool			 reader_paused;

	/* The performance governor and the retry limit (D9, D6). */
	struct pace		 pace;
	bool			 subscribed;	/* to a shared shaper */
};

/* ---------------------------------------------------------------- */
/* Inputs                                                           */
/* ---------------------------------------------------------------- */

static void
runner_sha256(const void *p, size_t n, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[32];
	unsigned len = 0, i;

	EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
	for (i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

static int
runner_read_file(const char *path, size_t max, char **data_r, size_t *len_r,
    struct mr_buf *err)
{
	struct stat st;
	ssize_t n;
	size_t off = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		mr_buf_printf(err, "cannot open template %s: %s", path,
		    mr_strerror(r));
		return r;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		mr_buf_printf(err, "cannot read template %s: %s", path,
		    S_ISDIR(st.st_mode) ? "is a directory" :
		    "not a regular file");
		close(fd);
		return -EISDIR;
	}
	if ((size_t)st.st_size > max) {
		mr_buf_printf(err, "template %s is larger than "
		    "send.max_message_size", path);
		close(fd);
		return MR_ETOOLONG;
	}
	*data_r = xmalloc((size_t)st.st_size + 1);
	while (off < (size_t)st.st_size) {
		n = read(fd, *data_r + off, (size_t)st.st_size - off);
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			mr_buf_printf(err, "cannot read template %s: %s", path,
			    mr_strerror(r));
			free(*data_r);
			close(fd);
			return r;
		}
		off += (size_t)n;
	}
	(*data_r)[off] = '\0';
	*len_r = off;
	close(fd);
	return 0;
}

static int
runner_exit_for(int code)
{
	if (code == -ENOENT || code == -EACCES || code == -EISDIR ||
	    code == -EPERM || code == -ENOTDIR || code == -ELOOP)
		return EX_NOINPUT;
	if (code < 0 && code > -4096)
		return EX_IOERR;
	return EX_DATAERR;
}

/* runner_reject - a refused row: to the reject file and the accounting,
 * the first time the campaign is prepared only. */
static void
runner_reject(void *arg, unsigned line, const char *reason, const char *row,
    size_t row_len, const char *email, size_t email_len)
{
	struct runner *r = arg;
	struct mr_buf b = MR_BUF_INIT;
	struct acct_record rec;

	r->nrejects++;
	if (!r->write_rejects)
		return;
	if (r->reject_fp == NULL && r->reject_err == 0) {
		r->reject_fp = fopen(r->reject_path, "we");
		if (r->reject_fp == NULL)
			r->reject_err = -errno;
		else
			fputs("line,reason,row\n", r->reject_fp);
	}
	if (r->reject_fp != NULL) {
		mr_buf_printf(&b, "%u,", line);
		csv_write_field(&b, reason, strlen(reason));
		mr_buf_putc(&b, ',');
		csv_write_field(&b, row, row_len);
		mr_buf_putc(&b, '\n');
		if (fwrite(b.data, 1, b.len, r->reject_fp) != b.len &&
		    r->reject_err == 0)
			r->reject_err = -errno;
	}
	mr_buf_release(&b);
	if (r->camp.acct != NULL) {
		memset(&rec, 0, sizeof(rec));
		rec.type = ACCT_REJECTED;
		rec.rcpt = email;
		rec.rcpt_len = email_len;
		rec.line = line;
		rec.reply = reason;
		acct_write(r->camp.acct, &rec);
	}
}

/* runner_check_row - a row the template cannot render safely is refused. */
static const char *
runner_check_row(void *arg, const struct csv_field *fields, size_t nfields,
    char *buf, size_t size)
{
	struct runner *r = arg;
	size_t col;

	if (tmpl_check_fields(r->tmpl, fields, nfields, &col) == 0)
		return NULL;
	snprintf(buf, size, "value in column \"%s\" holds a MIME boundary "
	    "of the template", list_columns(r->list)[col]);
	return buf;
}

/*
 * runner_check_inputs - a campaign resumes only on the inputs it began
 * with: the same list and template bytes (size first, then SHA-256).
 */
static int
runner_check_inputs(struct runner *r, struct mr_buf *err)
{
	struct store_campaign *c = r->o->rec;
	const char *p;
	char sha[65];
	size_t n;

	list_data(r->list, &p, &n);
	if (*c->list_sha256 == '\0') {
		runner_sha256(p, n, c->list_sha256);
		c->list_size = (int64_t)n;
		memcpy(c->template_sha256, r->template_sha, 65);
		return 0;
	}
	if ((int64_t)n != c->list_size) {
		mr_buf_printf(err, "list %s changed since campaign %s began "
		    "(%lld bytes then, %zu now): refusing to go on with a "
		    "different list", r->o->list_path, c->name,
		    (long long)c->list_size, n);
		return EX_DATAERR;
	}
	runner_sha256(p, n, sha);
	if (strcmp(sha, c->list_sha256) != 0) {
		mr_buf_printf(err, "list %s changed since campaign %s began "
		    "(same size, different SHA-256): refusing to go on with a "
		    "different list", r->o->list_path, c->name);
		return EX_DATAERR;
	}
	if (strcmp(r->template_sha, c->template_sha256) != 0) {
		mr_buf_printf(err, "template %s changed since campaign %s "
		    "began (different SHA-256): refusing to send a different "
		    "message", r->o->template_path, c->name);
		return EX_DATAERR;
	}
	return 0;
}

/* runner_prepare - inputs, rejects and (with a store) the chunks. */
static int
runner_prepare(struct runner *r, struct mr_buf *err)
{
	const struct mr_config *cfg = r->cfg;
	struct store_campaign *c = r->o->rec;
	struct store *s = r->o->store;
	struct mr_buf warn = MR_BUF_INIT;
	char *text = NULL;
	size_t len = 0, at, i;
	bool *fp_cols = NULL;
	const char *from;
	int code, ex = 0;

	r->list = list_open(r->o->list_path, (size_t)cfg->send_max_row_size,
	    err, &code);
	if (r->list == NULL)
		return runner_exit_for(code);
	code = runner_read_file(r->o->template_path,
	    (size_t)cfg->send_max_message_size, &text, &len, err);
	if (code != 0)
		return runner_exit_for(code);
	runner_sha256(text, len, r->template_sha);
	r->tmpl = tmpl_compile(text, len, list_columns(r->list),
	    list_ncolumns(r->list), err, &warn);
	free(text);
	if (warn.len)
		fprintf(stderr, "%s", warn.data);
	mr_buf_release(&warn);
	if (r->tmpl == NULL)
		return EX_DATAERR;
	if (s != NULL && (ex = runner_check_inputs(r, err)) != 0)
		return ex;
	from = *cfg->send_mail_from ? cfg->send_mail_from :
	    tmpl_from_address(r->tmpl);
	if (from == NULL) {
		mr_buf_puts(err, "no envelope sender: the template's From "
		    "header holds a placeholder or several addresses; give "
		    "--from");
		return EX_DATAERR;
	}
	if (smtp_addr_check(from, strlen(from), &at) != NULL) {
		mr_buf_printf(err, "envelope sender \"%s\": %s", from,
		    smtp_addr_check(from, strlen(from), &at));
		return EX_DATAERR;
	}
	r->mail_from = xstrdup(from);
	if (*cfg->send_accounting_file) {
		r->camp.acct = acct_open(cfg->send_accounting_file,
		    cfg->send_accounting_format, err);
		if (r->camp.acct == NULL)
			return EX_CANTCREAT;
	}
	if (*cfg->send_reject_file) {
		r->reject_path = xstrdup(cfg->send_reject_file);
	} else {
		mr_buf_printf(&warn, "%s.rejects.csv", r->o->list_path);
		r->reject_path = warn.data;
	}
	/* Rejects are written when the list is first prepared, never again
	 * for a campaign that got past that. */
	r->write_rejects = s == NULL || c->stage < STORE_STAGE_PREPARED;
	/* Batching needs fingerprints of the fields the template uses; a
	 * template that uses the address makes every message unique. */
	if (cfg->send_max_rcpt_per_message > 1 &&
	    !tmpl_uses_column(r->tmpl, list_email_column(r->list))) {
		fp_cols = xcalloc(list_ncolumns(r->list), sizeof(*fp_cols));
		for (i = 0; i < list_ncolumns(r->list); i++)
			fp_cols[i] = tmpl_uses_column(r->tmpl, i);
		r->camp.batching = true;
	}
	code = list_load(r->list, fp_cols, runner_check_row, runner_reject, r,
	    &r->lst);
	free(fp_cols);
	if (r->reject_fp != NULL && fclose(r->reject_fp) != 0 &&
	    r->reject_err == 0)
		r->reject_err = -errno;
	r->reject_fp = NULL;
	if (r->reject_err != 0) {
		mr_buf_printf(err, "cannot write reject file %s: %s",
		    r->reject_path, mr_strerror(r->reject_err));
		return EX_CANTCREAT;
	}
	if (code != 0) {
		mr_buf_printf(err, "cannot read list %s: %s", r->o->list_path,
		    mr_strerror(code));
		return EX_IOERR;
	}
	if (list_count(r->list) == 0) {
		if (r->lst.rows == 0)
			mr_buf_printf(err, "list %s has no recipients (only a "
			    "header row)", r->o->list_path);
		else
			mr_buf_printf(err, "list %s has no valid recipient: "
			    "%llu rows rejected, see %s", r->o->list_path,
			    (unsigned long long)r->lst.rejected,
			    r->reject_path);
		return EX_DATAERR;
	}
	if (s == NULL)
		return 0;
	if (c->stage >= STORE_STAGE_PREPARED) {
		if (c->nrecipients != list_count(r->list)) {
			mr_buf_printf(err, "list %s now yields %u recipients, "
			    "campaign %s had %u: refusing to go on",
			    r->o->list_path, list_count(r->list), c->name,
			    c->nrecipients);
			return EX_DATAERR;
		}
		return 0;
	}
	/* Checkpoint P400: the list is checked and cut into chunks. */
	c->nrecipients = list_count(r->list);
	c->chunk_size = (uint32_t)cfg->recovery_chunk_size;
	c->nchunks = (c->nrecipients + c->chunk_size - 1) / c->chunk_size;
	c->rows = r->lst.rows;
	c->rejected = r->lst.rejected;
	c->duplicates = r->lst.duplicates;
	c->stage = STORE_STAGE_PREPARED;
	code = s->ops->begin(s);
	if (code == 0)
		code = s->ops->chunks_init(s, c->id, c->nchunks, c->chunk_size,
		    c->nrecipients);
	if (code == 0)
		code = s->ops->campaign_update(s, c);
	if (code == 0)
		code = s->ops->commit(s);
	if (code != 0) {
		(void)s->ops->rollback(s);
		mr_buf_printf(err, "%s", store_error(s));
		return EX_IOERR;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* Recovery state, quota, snapshots                                 */
/* ---------------------------------------------------------------- */

static void runner_status(struct runner *r, struct mr_buf *out);

static uint64_t
runner_finals(const struct runner *r)
{
	return atomic_load(&r->camp.delivered) + atomic_load(&r->camp.bounced);
}

/* runner_snapshot_cb - the campaign's counters, any pause or cancel
 * request made meanwhile, and the quota, in the snapshot's transaction. */
static int
runner_snapshot_cb(void *arg, struct store *s, uint64_t delivered,
    uint64_t bounced)
{
	struct runner *r = arg;
	struct store_campaign *c = r->o->rec, now;
	uint64_t finals = delivered + bounced;
	int code;

	memset(&now, 0, sizeof(now));
	code = s->ops->campaign_get(s, c->name, &now);
	if (code != 0)
		return code;
	/* A request from `mailroom campaign pause|cancel`: keep it. */
	if (now.state == STORE_STATE_PAUSED ||
	    now.state == STORE_STATE_CANCELLED) {
		c->state = now.state;
		if (r->end == RUNNER_COMPLETE)
			r->end = now.state == STORE_STATE_CANCELLED ?
			    RUNNER_CANCELLED : RUNNER_STOPPED;
	}
	c->lease_until = now.lease_until;
	store_campaign_release(&now);
	c->delivered = delivered;
	c->bounced = bounced;
	c->deferrals = r->base_deferrals + atomic_load(&r->camp.deferrals);
	/* While it runs, the summary field holds the governor's last
	 * decision and the destinations (campaign show prints them). */
	if (r->started) {
		struct mr_buf st = MR_BUF_INIT;

		runner_status(r, &st);
		free(c->summary);
		c->summary = st.data;
	}
	code = s->ops->campaign_update(s, c);
	if (code == 0 && c->account && *c->account && finals > r->consumed) {
		code = s->ops->quota_consume(s, c->id, finals - r->consumed);
		if (code == 0)
			r->consumed = finals;
	}
	return code;
}

/*
 * runner_admit - D16: the account's allowance must cover what is left to
 * send; it is reserved now and consumed as recipients become final.
 */
static int
runner_admit(struct runner *r, uint64_t need, struct mr_buf *err)
{
	struct store_campaign *c = r->o->rec;
	struct store *s = r->o->store;
	struct store_quota q;
	char when[40];
	uint64_t after;
	int code;

	if (c->account == NULL || *c->account == '\0')
		return 0;
	memset(&q, 0, sizeof(q));
	code = s->ops->quota_admit(s, c->account, c->id, need,
	    (int64_t)time(NULL), &q);
	mr_iso8601_ms((uint64_t)q.period_start * 1000, when, sizeof(when));
	if (code == -EDQUOT) {
		mr_buf_printf(err, "account %s: allowance of %" PRIu64
		    " messages per %" PRId64 "s period (from %s) exceeded: %"
		    PRIu64 " used, %" PRIu64 " reserved by other campaigns, "
		    "campaign %s needs %" PRIu64, c->account, q.allowance,
		    q.period, when, q.used, q.reserved, c->name, need);
		return EX_NOPERM;
	}
	if (code != 0) {
		mr_buf_printf(err, "%s", store_error(s));
		return code == -ENOENT ? EX_CONFIG : EX_IOERR;
	}
	after = q.used + q.reserved + need;
	if (q.allowance > 0 && q.allowance != STORE_ALLOWANCE_UNLIMITED &&
	    after * 100 >= (uint64_t)q.warn_pct *
	    q.allowance)
		fprintf(stderr, "mailroom %s: warning: account %s has %" PRIu64
		    " of %" PRIu64 " messages (%" PRIu64 "%%) used or reserved "
		    "in the period from %s\n", r->o->prog, c->account, after,
		    q.allowance, after * 100 / q.allowance, when);
	return 0;
}

/* The in-flight recipients, by lower-cased address, for the scan. */
struct runner_settle {
	struct runner			*r;
	struct recovery_load_stats	*st;
	struct mr_hmap			*index;
	struct csv_parser		*cp;
	struct mr_buf			 key;
	struct mr_buf			 tmp;
	uint64_t			 settled;
};

static void
runner_lower(struct mr_buf *b, const char *p, size_t n)
{
	size_t i;

	mr_buf_reset(b);
	for (i = 0; i < n; i++)
		mr_buf_putc(b, (char)tolower((unsigned char)p[i]));
}

static bool
runner_settle_eq(void *arg, uint32_t value, const void *key, size_t len)
{
	struct runner_settle *rs = arg;
	const struct csv_field *f;
	const char *p;
	size_t n, nf;

	f = list_fields(rs->r->list, rs->cp, rs->st->inflight_rcpts[value],
	    &nf);
	if (f == NULL)
		return false;
	list_email(rs->r->list, f, &p, &n);
	runner_lower(&rs->tmp, p, n);
	return n == len && memcmp(rs->tmp.data, key, len) == 0;
}

static void
runner_settle_one(void *arg, const char *rcpt, size_t len, bool bounced)
{
	struct runner_settle *rs = arg;
	struct store_campaign *c = rs->r->o->rec;
	uint32_t i, k;

	runner_lower(&rs->key, rcpt, len);
	i = mr_hmap_find(rs->index, mr_hash(rs->key.data, len), rs->key.data,
	    len);
	if (i == MR_HMAP_NONE)
		return;
	k = rs->st->inflight_rcpts[i];
	if (recovery_is_final(rs->r->rec, k))
		return;
	recovery_settle(rs->r->rec, k, bounced);
	if (bounced)
		c->bounced++;
	else
		c->delivered++;
	rs->settled++;
}

/*
 * runner_settle_inflight - an in-flight recipient whose outcome reached
 * the accounting file (written before the journal) before the crash is
 * not in flight: its outcome is taken from there, so that it is neither
 * sent nor accounted twice.  What stays in st->inflight_rcpts is what is
 * really unknown.
 */
static void
runner_settle_inflight(struct runner *r, struct recovery_load_stats *st)
{
	struct runner_settle rs;
	struct csv_parser *cp;
	const struct csv_field *f;
	const char *p;
	uint64_t i, kept = 0;
	size_t n, nf;
	int code;

	if (st->inflight == 0 || r->camp.acct == NULL)
		return;
	memset(&rs, 0, sizeof(rs));
	rs.r = r;
	rs.st = st;
	rs.cp = csv_parser_new((size_t)r->cfg->send_max_row_size);
	rs.index = mr_hmap_new(runner_settle_eq, &rs);
	/* Keys are copied out of cp before mr_hmap_put() may ask
	 * runner_settle_eq(), which parses with rs.cp. */
	cp = csv_parser_new((size_t)r->cfg->send_max_row_size);
	for (i = 0; i < st->inflight; i++) {
		f = list_fields(r->list, cp, st->inflight_rcpts[i], &nf);
		if (f == NULL)
			continue;
		list_email(r->list, f, &p, &n);
		runner_lower(&rs.key, p, n);
		mr_hmap_put(rs.index, mr_hash(rs.key.data, n), rs.key.data, n,
		    (uint32_t)i);
	}
	csv_parser_free(&cp);
	code = acct_scan_finals(r->cfg->send_accounting_file,
	    r->cfg->send_accounting_format, runner_settle_one, &rs);
	if (code != 0)
		fprintf(stderr, "mailroom %s: warning: cannot read %s to settle "
		    "the recipients in flight: %s\n", r->o->prog,
		    r->cfg->send_accounting_file, mr_strerror(code));
	for (i = 0; i < st->inflight; i++)
		if (!recovery_is_final(r->rec, st->inflight_rcpts[i]))
			st->inflight_rcpts[kept++] = st->inflight_rcpts[i];
	st->inflight = kept;
	st->final += rs.settled;
	mr_hmap_free(&rs.index);
	csv_parser_free(&rs.cp);
	mr_buf_release(&rs.key);
	mr_buf_release(&rs.tmp);
}

/*
 * runner_account_inflight - a deferred record for each recipient that
 * was in flight at the crash: its message may have arrived, and it is
 * sent again (the accounting file thus names every possible duplicate).
 */
static void
runner_account_inflight(struct runner *r,
    const struct recovery_load_stats *st)
{
	struct acct_record rec;
	struct csv_parser *cp;
	const struct csv_field *f;
	uint64_t i;
	size_t nf;

	if (r->camp.acct == NULL)
		return;
	cp = csv_parser_new((size_t)r->cfg->send_max_row_size);
	for (i = 0; i < st->inflight; i++) {
		uint32_t k = st->inflight_rcpts[i];

		f = list_fields(r->list, cp, k, &nf);
		if (f == NULL)
			continue;
		memset(&rec, 0, sizeof(rec));
		rec.type = ACCT_DEFERRED;
		list_email(r->list, f, &rec.rcpt, &rec.rcpt_len);
		rec.line = list_line(r->list, k);
		rec.domain = list_domain_name(r->list, list_domain(r->list,
		    k));
		rec.attempt = recovery_attempts(r->rec, k);
		rec.dsn = "4.4.7";
		rec.reply = "in flight at a crash: its outcome is unknown, so "
		    "it is sent again (a possible duplicate)";
		acct_write(r->camp.acct, &rec);
	}
	csv_parser_free(&cp);
}

/*
 * runner_recover - the recovery state of this run: fresh, or rebuilt
 * from the last snapshot and the journals (with the in-flight count
 * printed); then the quota, checkpoint P600 and a first snapshot.
 */
static int
runner_recover(struct runner *r, struct mr_buf *err)
{
	const struct mr_config *cfg = r->cfg;
	struct store_campaign *c = r->o->rec;
	struct store *s = r->o->store;
	struct recovery_params p;
	struct recovery_load_stats st;
	uint64_t counted = c->delivered + c->bounced;
	uint32_t k;
	int code;

	if (!recovery_chunk_size_ok(c->chunk_size)) {
		mr_buf_printf(err, "campaign %s: the store records a chunk "
		    "size of %u recipients, which is not a multiple of 64 "
		    "from 64 to 65536", c->name, c->chunk_size);
		return EX_DATAERR;
	}
	memset(&p, 0, sizeof(p));
	p.store = s;
	p.campaign = c->id;
	p.nrecipients = c->nrecipients;
	p.chunk_size = c->chunk_size;
	p.journal_dir = cfg->recovery_journal_dir;
	p.segment_size = (size_t)cfg->recovery_segment_size;
	p.generation = c->generation + 1;
	r->rec = recovery_new(&p);
	r->camp.rec = r->rec;
	if (c->stage >= STORE_STAGE_DELIVERING) {
		code = recovery_load(r->rec, c->delivered, c->bounced, &st,
		    err);
		if (code != 0) {
			recovery_load_stats_release(&st);
			return EX_IOERR;
		}
		if (st.replay.report.len)
			fprintf(stderr, "mailroom %s: warning: %s", r->o->prog,
			    st.replay.report.data);
		c->delivered = st.delivered;
		c->bounced = st.bounced;
		runner_settle_inflight(r, &st);
		r->inflight_at_crash = st.inflight;
		c->inflight_at_crash += st.inflight;
		fprintf(r->o->out, "in-flight-at-crash: %" PRIu64 "\n",
		    st.inflight);
		fflush(r->o->out);
		runner_account_inflight(r, &st);
		fprintf(r->o->out, "resumed: %" PRIu64 " final, %" PRIu64
		    " deferred, %" PRIu64 " journal records replayed%s\n",
		    st.final, st.deferred, st.replay.records,
		    st.replay.bad_tails ? " (a damaged journal tail was "
		    "ignored)" : "");
		fflush(r->o->out);
		recovery_load_stats_release(&st);
	}
	for (k = 0; k < c->nrecipients; k++)
		if (recovery_is_final(r->rec, k))
			r->base_final++;
	/* The quota has counted what the last snapshot counted; finals
	 * found since (journals, accounting file) are consumed by the first
	 * snapshot below, so they are part of the need. */
	code = runner_admit(r, c->nrecipients - counted, err);
	if (code != 0)
		return code;
	r->consumed = counted;
	r->base_delivered = c->delivered;
	r->base_bounced = c->bounced;
	r->base_deferrals = c->deferrals;
	c->stage = STORE_STAGE_DELIVERING;
	c->generation = p.generation;
	if (c->started_at == 0)
		c->started_at = (int64_t)time(NULL);
	/* Fold what was replayed and forget the older journals. */
	code = recovery_snapshot(r->rec, runner_snapshot_cb, r, err);
	return code == 0 ? 0 : EX_IOERR;
}

/* ---------------------------------------------------------------- */
/* Delivery                                                         */
/* ---------------------------------------------------------------- */

static void *
runner_worker(void *arg)
{
	engine_run(arg);
	return NULL;
}

static void
runner_report(struct runner *r, bool final)
{
	struct runner_progress p;

	if (r->o->progress == NULL)
		return;
	p.total = r->total;
	p.delivered = atomic_load(&r->camp.delivered);
	p.bounced = atomic_load(&r->camp.bounced);
	p.deferrals = atomic_load(&r->camp.deferrals);
	p.done = p.delivered + p.bounced;
	p.elapsed_ms = mr_clock_ms() - r->t0;
	r->o->progress(r->o->progress_arg, &p, final);
}

/*
 * runner_feed - the campaign's reader (D8): post recipients to their
 * engines while fewer than send.max_backlog are posted and not final;
 * once over it, wait until the backlog is below 90 % of it.  Clears
 * camp.feeding (and wakes the engines) after the last one, or when the
 * campaign stops.
 */
static void
runner_feed(struct runner *r)
{
	struct campaign *c = &r->camp;
	uint64_t max = (uint64_t)r->cfg->send_max_backlog, backlog, room;
	uint32_t n = list_count(r->list), k;
	uint32_t *rc[RUNNER_WORKERS_MAX];
	uint16_t *at[RUNNER_WORKERS_MAX];
	size_t cnt[RUNNER_WORKERS_MAX], cap;
	unsigned i, w = r->nworkers;

	if (!atomic_load(&c->feeding))
		return;
	if (atomic_load(&c->stop))
		goto done;
	backlog = r->posted - runner_finals(r);
	if (r->reader_paused && backlog * 10 >= max * 9)
		return;
	if (r->reader_paused) {
		r->reader_paused = false;
		mr_log_info("runner", "event=backpressure state=resumed "
		    "reader=list backlog=%" PRIu64, backlog);
	}
	if (backlog >= max)
		return;
	room = max - backlog;
	cap = room < 65536 ? (size_t)room : 65536;
	for (i = 0; i < w; i++) {
		rc[i] = xcalloc(cap, sizeof(**rc));
		at[i] = xcalloc(cap, sizeof(**at));
		cnt[i] = 0;
	}
	for (k = r->feed_next; k < n && room > 0; k++) {
		if (r->rec != NULL && recovery_is_final(r->rec, k))
			continue;
		i = list_domain(r->list, k) % w;
		rc[i][cnt[i]] = k;
		at[i][cnt[i]] = r->rec ? recovery_attempts(r->rec, k) : 0;
		room--;
		r->posted++;
		if (++cnt[i] == cap) {
			engine_post(r->engines[i], rc[i], at[i], cnt[i]);
			cnt[i] = 0;
		}
	}
	r->feed_next = k;
	for (i = 0; i < w; i++) {
		if (cnt[i] > 0)
			engine_post(r->engines[i], rc[i], at[i], cnt[i]);
		free(rc[i]);
		free(at[i]);
	}
	if (k < n) {
		if (!r->reader_paused && r->posted - runner_finals(r) >= max) {
			r->reader_paused = true;
			mr_log_info("runner", "event=backpressure state=paused "
			    "reader=list backlog=%" PRIu64 " max=%" PRIu64
			    " read=%u of %u", r->posted - runner_finals(r),
			    max, k, n);
		}
		return;
	}
done:
	atomic_store_explicit(&c->feeding, false, memory_order_release);
	for (i = 0; i < w; i++)
		engine_post(r->engines[i], NULL, NULL, 0);
}

/* runner_start - the engines, each with its share of the domains. */
static int
runner_start(struct runner *r, struct mr_buf *err)
{
	const struct mr_config *cfg = r->cfg;
	struct campaign *c = &r->camp;
	struct rlimit rl;
	long ncpu;
	unsigned i, w;
	uint32_t k;

	/* Sessions need descriptors: take the hard limit, keep some for
	 * files and DNS, and let the engines share the rest. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			(void)setrlimit(RLIMIT_NOFILE, &rl);
			(void)getrlimit(RLIMIT_NOFILE, &rl);
		}
		c->max_sessions = rl.rlim_cur > 256 + 64 ?
		    (unsigned)(rl.rlim_cur > 1000000 ? 1000000 :
		    rl.rlim_cur - 256) : 64;
	} else {
		c->max_sessions = 512;
	}
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	w = cfg->general_workers > 0 ? (unsigned)cfg->general_workers :
	    (unsigned)(ncpu > 1 ? ncpu - 1 : 1);
	if (w > RUNNER_WORKERS_MAX)
		w = RUNNER_WORKERS_MAX;
	if (w > list_ndomains(r->list))
		w = (unsigned)list_ndomains(r->list);
	c->nworkers = w;
	for (i = 0; i < w; i++) {
		r->engines[i] = engine_new(c, i, err);
		if (r->engines[i] == NULL) {
			r->nworkers = i;
			return EX_CONFIG;
		}
		r->nworkers = i + 1;
	}
	for (k = 0; k < list_count(r->list); k++)
		if (r->rec == NULL || !recovery_is_final(r->rec, k))
			r->total++;
	/* The reader hands out up to send.max_backlog recipients now, the
	 * rest as they become final (runner_feed()). */
	atomic_store(&c->feeding, true);
	runner_feed(r);
	r->t0 = mr_clock_ms();
	for (i = 0; i < w; i++)
		pthread_create(&r->threads[i], NULL, runner_worker,
		    r->engines[i]);
	r->started = true;
	return 0;
}

/*
 * runner_lease - renew the lease; false when another sender has taken
 * the campaign (our lease ran out): then we must stop at once.
 */
static bool
runner_lease(struct runner *r)
{
	struct store_campaign *c = r->o->rec;
	struct store *s = r->o->store;
	int64_t now = (int64_t)time(NULL);
	char *holder = NULL;
	int code;

	code = s->ops->campaign_claim(s, c->id, r->o->owner, now +
	    r->cfg->store_lease_time / 1000, now, &holder);
	if (code == -EBUSY) {
		mr_log_err("runner", "campaign=%s event=lease-lost holder=%s",
		    mr_q(c->name, (size_t)-1), mr_q(holder, (size_t)-1));
		free(holder);
		return false;
	}
	free(holder);
	if (code != 0)
		mr_log_warn("runner", "campaign=%s event=lease error=%s",
		    mr_q(c->name, (size_t)-1),
		    mr_q(store_error(s), (size_t)-1));
	return true;
}

/* ---------------------------------------------------------------- */
/* Pace: the governor, the retry limit, the destinations' changes   */
/* ---------------------------------------------------------------- */

/*
 * runner_pace - the governor and the retry limit (pace.h), fed with the
 * campaign's stage for the retry limit's late rule.
 */
static void
runner_pace(struct runner *r, uint64_t now)
{
	uint64_t finals = runner_finals(r);

	pace_tick(&r->pace, &r->camp, now, r->total - (finals < r->total ?
	    finals : r->total), r->total);
}

/* runner_status - the governor's last decision and the destinations, as
 * "key: value" lines (the summary, and campaign show while it runs). */
static void
runner_status(struct runner *r, struct mr_buf *out)
{
	mr_buf_printf(out, "governor: %s\n", pace_line(&r->pace));
	if (r->camp.shaper != NULL)
		shaper_status_text(r->camp.shaper, mr_clock_ms(), 10, out);
}

/*
 * runner_wait - the agent's loop while the engines deliver: progress,
 * group commit, snapshots, lease, stop.
 */
static void
runner_wait(struct runner *r)
{
	const struct mr_config *cfg = r->cfg;
	struct campaign *c = &r->camp;
	struct mr_buf err = MR_BUF_INIT;
	uint64_t now, last_progress = 0, last_sync, last_snap, last_lease;
	struct timespec ts = { 0, RUNNER_TICK_MS * 1000 * 1000 };
	unsigned i;

	last_sync = last_snap = last_lease = mr_clock_ms();
	for (;;) {
		if (atomic_load(r->o->stop) && !atomic_load(&c->stop)) {
			if (r->end == RUNNER_COMPLETE)
				r->end = RUNNER_STOPPED;
			atomic_store(&c->stop, true);
		}
		if (runner_finals(r) >= r->total || atomic_load(&c->stop))
			break;
		now = mr_clock_ms();
		runner_pace(r, now);
		runner_feed(r);
		if (now - last_progress >= r->o->progress_interval_ms) {
			runner_report(r, false);
			last_progress = now;
		}
		if (r->rec != NULL && now - last_sync >=
		    (uint64_t)cfg->recovery_sync_interval) {
			if (recovery_sync(r->rec) != 0)
				mr_log_err("runner", "event=journal-sync "
				    "error=%s", mr_q(strerror(errno),
				    (size_t)-1));
			last_sync = now;
		}
		if (r->rec != NULL && now - last_snap >=
		    (uint64_t)cfg->recovery_snapshot_interval) {
			mr_buf_reset(&err);
			if (recovery_snapshot(r->rec, runner_snapshot_cb, r,
			    &err) != 0)
				mr_log_err("runner", "event=snapshot error=%s",
				    mr_q(mr_buf_cstr(&err), (size_t)-1));
			last_snap = now;
			if (r->end != RUNNER_COMPLETE)
				atomic_store(&c->stop, true);
		}
		if (r->o->store != NULL && now - last_lease >=
		    (uint64_t)cfg->store_lease_time / 3) {
			if (!runner_lease(r)) {
				r->end = RUNNER_LOST_LEASE;
				atomic_store(&c->stop, true);
			}
			last_lease = now;
		}
		nanosleep(&ts, NULL);
	}
	/* Stopped with recipients left unread: the engines must not wait
	 * for them. */
	runner_feed(r);
	for (i = 0; i < r->nworkers; i++)
		pthread_join(r->threads[i], NULL);
	r->started = false;
	for (i = 0; i < r->nworkers; i++)
		engine_get_stats(r->engines[i], &r->est[i]);
	runner_report(r, true);
	mr_buf_release(&err);
}

/* ---------------------------------------------------------------- */
/* The summary                                                      */
/* ---------------------------------------------------------------- */

struct runner_domain_row {
	uint32_t	id;
	uint64_t	n;
};

static int
runner_domain_cmp(const void *a, const void *b)
{
	const struct runner_domain_row *x = a, *y = b;

	return x->n < y->n ? 1 : x->n > y->n ? -1 : 0;
}

static void
runner_summary(struct runner *r, struct mr_buf *out)
{
	struct campaign *c = &r->camp;
	const struct store_campaign *rec = r->o->rec;
	double el = (double)(mr_clock_ms() - r->t0) / 1000.0;
	uint64_t done = runner_finals(r);
	uint64_t qbytes = 0, qpeak = 0, sessions = 0;
	size_t nd = list_ndomains(r->list), i, top;
	struct runner_domain_row *rows;
	struct rusage ru;
	unsigned w;

	for (w = 0; w < r->nworkers; w++) {
		qbytes += r->est[w].queue_bytes;
		qpeak += r->est[w].queued_peak;
		sessions += r->est[w].sessions;
	}
	mr_buf_printf(out, "campaign: %s\n", rec ? rec->name : c->token);
	mr_buf_printf(out, "list: %s (%llu rows)\n", r->o->list_path,
	    (unsigned long long)r->lst.rows);
	mr_buf_printf(out, "recipients: %u\n", list_count(r->list));
	mr_buf_printf(out, "delivered: %llu\n", (unsigned long long)
	    (r->base_delivered + atomic_load(&c->delivered)));
	mr_buf_printf(out, "bounced: %llu\n", (unsigned long long)
	    (r->base_bounced + atomic_load(&c->bounced)));
	mr_buf_printf(out, "rejected: %llu\n",
	    (unsigned long long)r->lst.rejected);
	mr_buf_printf(out, "duplicates: %llu\n",
	    (unsigned long long)r->lst.duplicates);
	mr_buf_printf(out, "deferrals: %llu\n", (unsigned long long)
	    (r->base_deferrals + atomic_load(&c->deferrals)));
	if (r->total > done)
		mr_buf_printf(out, "unfinished: %llu\n",
		    (unsigned long long)(r->total - done));
	if (rec != NULL)
		mr_buf_printf(out, "in-flight-at-crash-total: %llu\n",
		    (unsigned long long)rec->inflight_at_crash);
	mr_buf_printf(out, "duration: %.3f s\n", el);
	mr_buf_printf(out, "rate: %.1f msg/s\n", el > 0 ? (double)done / el :
	    0.0);
	mr_buf_printf(out, "sessions: %llu\n", (unsigned long long)sessions);
	if (qpeak > 0)
		mr_buf_printf(out, "memory: %zu bytes/recipient (table %zu, "
		    "queue %.1f)\n", list_bytes(r->list) / list_count(r->list) +
		    (size_t)(qbytes / qpeak), list_bytes(r->list) /
		    list_count(r->list), (double)qbytes / (double)qpeak);
	if (r->rec != NULL)
		mr_buf_printf(out, "recovery-state: %llu bytes on disk\n",
		    (unsigned long long)recovery_state_bytes(r->rec));
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		mr_buf_printf(out, "peak-rss: %ld kB\n", ru.ru_maxrss);
	if (*r->cfg->send_accounting_file)
		mr_buf_printf(out, "accounting: %s\n",
		    r->cfg->send_accounting_file);
	if (r->nrejects && r->write_rejects)
		mr_buf_printf(out, "rejects: %s (%llu rows)\n", r->reject_path,
		    (unsigned long long)r->nrejects);
	if (atomic_load(&c->forensics_kept) && c->forensics_dir)
		mr_buf_printf(out, "forensics: %s\n", c->forensics_dir);
	runner_status(r, out);
	/* The ten busiest domains of this run. */
	rows = xcalloc(nd ? nd : 1, sizeof(*rows));
	for (i = 0; i < nd; i++) {
		rows[i].id = (uint32_t)i;
		rows[i].n = (uint64_t)c->dom[i].delivered + c->dom[i].bounced;
	}
	qsort(rows, nd, sizeof(*rows), runner_domain_cmp);
	top = nd < 10 ? nd : 10;
	mr_buf_printf(out, "domains: %zu\n", nd);
	for (i = 0; i < top; i++) {
		const struct campaign_domain_stats *s = &c->dom[rows[i].id];

		mr_buf_printf(out, "domain: %s delivered=%u bounced=%u "
		    "deferrals=%u\n", list_domain_name(r->list, rows[i].id),
		    s->delivered, s->bounced, s->deferrals);
	}
	free(rows);
}

/* ---------------------------------------------------------------- */
/* The whole run                                                    */
/* ---------------------------------------------------------------- */

/* runner_finish - the last snapshot; checkpoint P699 when all is final. */
static int
runner_finish(struct runner *r, struct mr_buf *summary, struct mr_buf *err)
{
	struct store_campaign *c = r->o->rec;
	struct store *s = r->o->store;
	int code;

	if (r->end == RUNNER_COMPLETE && runner_finals(r) < r->total)
		r->end = RUNNER_STOPPED;
	runner_summary(r, summary);
	if (s == NULL || r->end == RUNNER_LOST_LEASE)
		return 0;
	if (r->end == RUNNER_COMPLETE) {
		c->stage = STORE_STAGE_COMPLETE;
		c->state = STORE_STATE_DONE;
		c->finished_at = (int64_t)time(NULL);
		free(c->summary);
		c->summary = xstrdup(mr_buf_cstr(summary));
	}
	code = recovery_snapshot(r->rec, runner_snapshot_cb, r, err);
	if (code == 0 && (r->end == RUNNER_COMPLETE ||
	    r->end == RUNNER_CANCELLED) && c->account && *c->account)
		(void)s->ops->quota_release(s, c->id);
	if (code == 0 && r->end == RUNNER_COMPLETE)
		recovery_drop_journals(r->rec);
	return code == 0 ? 0 : EX_IOERR;
}

static void
runner_release(struct runner *r)
{
	unsigned i;

	if (r->started) {
		atomic_store(&r->camp.stop, true);
		for (i = 0; i < r->nworkers; i++)
			pthread_join(r->threads[i], NULL);
	}
	for (i = 0; i < r->nworkers; i++)
		engine_free(&r->engines[i]);
	recovery_free(&r->rec);
	/* A shared shaper outlives the run: it stops writing to our
	 * accounting file before that closes. */
	if (r->o->shaper != NULL && r->subscribed)
		shaper_unsubscribe(r->o->shaper, shape_acct_cb, r->camp.acct);
	if (r->camp.acct != NULL) {
		int code = acct_close(&r->camp.acct);

		if (code != 0)
			fprintf(stderr, "mailroom %s: writing the accounting "
			    "file %s failed: %s\n", r->o->prog,
			    r->cfg->send_accounting_file, mr_strerror(code));
	}
	if (r->camp.tls_ctx)
		SSL_CTX_free(r->camp.tls_ctx);
	if (r->o->shaper == NULL)
		shaper_free(&r->camp.shaper);
	free(r->camp.dom);
	tmpl_free(&r->tmpl);
	list_free(&r->list);
	free(r->mail_from);
	free(r->reject_path);
}

int
runner_run(const struct runner_opts *o, enum runner_end *end_r,
    struct mr_buf *summary, struct mr_buf *err)
{
	struct runner r;
	const struct conf_pool *pool;
	int pi;
	unsigned char rnd[6];
	int ex;

	memset(&r, 0, sizeof(r));
	r.o = o;
	r.cfg = o->cfg;
	r.end = RUNNER_COMPLETE;
	r.camp.cfg = o->cfg;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, 0, sizeof(rnd));
	snprintf(r.camp.token, sizeof(r.camp.token),
	    "%llx.%02x%02x%02x%02x%02x%02x",
	    (unsigned long long)time(NULL), rnd[0], rnd[1], rnd[2], rnd[3],
	    rnd[4], rnd[5]);
	ex = runner_prepare(&r, err);
	if (ex == 0 && o->store != NULL)
		ex = runner_recover(&r, err);
	if (ex != 0)
		goto out;
	r.camp.list = r.list;
	r.camp.tmpl = r.tmpl;
	r.camp.mail_from = r.mail_from;
	r.cs.list = r.list;
	r.cs.tmpl = r.tmpl;
	r.cs.mail_from = r.mail_from;
	r.cs.max_row = (size_t)r.cfg->send_max_row_size;
	campsrc_init(&r.cs, &r.camp.src);
	r.camp.ndomains = list_ndomains(r.list);
	r.camp.max_message_size = (size_t)r.cfg->send_max_message_size;
	r.camp.start_mono_ms = mr_clock_ms();
	r.camp.forensics_dir = *r.cfg->send_forensics_dir ?
	    r.cfg->send_forensics_dir : NULL;
	r.camp.dom = xcalloc(list_ndomains(r.list) ? list_ndomains(r.list) :
	    1, sizeof(*r.camp.dom));
	if (r.cfg->smtp_tls_policy != CONF_TLS_NONE) {
		r.camp.tls_ctx = net_tls_client_ctx(
		    r.cfg->smtp_tls_policy == CONF_TLS_VERIFY,
		    r.cfg->smtp_tls_ca_file, err);
		if (r.camp.tls_ctx == NULL) {
			ex = EX_CONFIG;
			goto out;
		}
	}
	/* The daemon's shaper, shared by everything it sends (limits per
	 * source and destination hold across campaigns), or our own. */
	if (o->shaper != NULL) {
		r.camp.shaper = o->shaper;
		r.subscribed = r.camp.acct == NULL ||
		    shaper_subscribe(o->shaper, shape_acct_cb, r.camp.acct);
	} else
		r.camp.shaper = shaper_new(r.cfg, shape_acct_cb, r.camp.acct,
		    err);
	if (r.camp.shaper == NULL) {
		ex = EX_CONFIG;
		goto out;
	}
	/* The source pool: send.pool, or the one naming the campaign or
	 * its account, else shaping.source. */
	pool = conf_pool_for(r.cfg, o->rec != NULL ? o->rec->name : NULL,
	    o->rec != NULL && o->rec->account != NULL && *o->rec->account ?
	    o->rec->account : r.cfg->send_account);
	if ((pi = shaper_pool_named(r.camp.shaper, pool != NULL ? pool->name :
	    *r.cfg->send_pool ? r.cfg->send_pool : NULL)) < 0) {
		mr_buf_printf(err, "send.pool: there is no [pool %s] section "
		    "in the daemon's configuration", pool != NULL ?
		    pool->name : r.cfg->send_pool);
		ex = EX_CONFIG;
		goto out;
	}
	r.camp.pool = (unsigned)pi;
	if (pool != NULL)
		mr_log_info("send", "event=pool pool=%s sources=%u",
		    pool->name, shaper_pool_nsources(r.camp.shaper,
		    r.camp.pool));
	if (pace_init(&r.pace, r.cfg, &r.camp, mr_clock_ms(), err) != 0) {
		ex = EX_CONFIG;
		goto out;
	}
	ex = runner_start(&r, err);
	if (ex != 0)
		goto out;
	runner_wait(&r);
	ex = runner_finish(&r, summary, err);
out:
	*end_r = r.end;
	runner_release(&r);
	return ex;
}
