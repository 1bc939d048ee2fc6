/*
 * list.c - map the recipient list, check its rows, build the recipient
 * table, and find duplicate addresses.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/mr_err.h"
#include "core/mr_hmap.h"
#include "core/mr_log.h"
#include "core/mr_utf8.h"
#include "core/xalloc.h"
#include "delivery/list.h"
#include "smtp/addr.h"

struct list {
	const char	*map;		/* the file, read-only */
	size_t		 size;
	size_t		 data_start;	/* first byte after the header row */
	unsigned	 data_line;	/* its line number */
	size_t		 max_row;
	char		**columns;
	size_t		 ncolumns;
	size_t		 email_col;

	/* The recipient table: parallel arrays, one entry a recipient. */
	uint64_t	*off;
	uint32_t	*line;
	uint32_t	*dom;
	uint64_t	*fp;		/* NULL without fingerprints */
	uint32_t	 count, cap;

	/* Domains, lower-cased, interned. */
	char		**domains;
	uint32_t	 ndomains, domcap;
	struct mr_hmap	*domain_index;

	/* While loading: the de-duplication index and its scratch. */
	struct csv_parser *cp;
	struct mr_buf	 key;
};

static void
list_lower(struct mr_buf *b, const char *p, size_t n)
{
	size_t i;

	mr_buf_reset(b);
	mr_buf_reserve(b, n);
	for (i = 0; i < n; i++)
		b->data[i] = (char)tolower((unsigned char)p[i]);
	b->len = n;
	b->data[n] = '\0';
}

static void
list_trim(const char **p, size_t *n)
{
	while (*n > 0 && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

struct list *
list_open(const char *path, size_t max_row, struct mr_buf *err, int *code_r)
{
	struct list *l;
	struct stat st;
	const struct csv_field *f;
	size_t pos, i, j, n;
	int fd;
	bool found = false;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*code_r = -errno;
		mr_buf_printf(err, "cannot open list %s: %s", path,
		    mr_strerror(*code_r));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		*code_r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		mr_buf_printf(err, "cannot read list %s: %s", path,
		    S_ISDIR(st.st_mode) ? "is a directory" :
		    "not a regular file");
		close(fd);
		return NULL;
	}
	if (st.st_size == 0) {
		*code_r = MR_EEMPTY;
		mr_buf_printf(err, "list %s is empty (no header row)", path);
		close(fd);
		return NULL;
	}
	l = xcalloc(1, sizeof(*l));
	l->size = (size_t)st.st_size;
	l->max_row = max_row;
	l->map = mmap(NULL, l->size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (l->map == MAP_FAILED) {
		*code_r = -errno;
		mr_buf_printf(err, "cannot map list %s: %s", path,
		    mr_strerror(*code_r));
		l->map = NULL;
		list_free(&l);
		return NULL;
	}
	l->cp = csv_parser_new(max_row);
	pos = 0;
	if (l->size >= 3 && memcmp(l->map, "\xef\xbb\xbf", 3) == 0)
		pos = 3;	/* UTF-8 byte order mark */
	if (csv_next(l->cp, l->map, l->size, &pos) != CSV_RECORD) {
		*code_r = MR_EINVAL_INPUT;
		mr_buf_printf(err, "list %s line 1: bad header row: %s", path,
		    csv_error(l->cp));
		list_free(&l);
		return NULL;
	}
	l->data_start = pos;
	l->data_line = 1 + csv_lines(l->cp);
	n = csv_nfields(l->cp);
	f = csv_fields(l->cp);
	l->columns = xcalloc(n, sizeof(*l->columns));
	l->ncolumns = n;
	for (i = 0; i < n; i++) {
		const char *p = f[i].p;
		size_t len = f[i].len;

		list_trim(&p, &len);
		l->columns[i] = xmemdup(p, len);
		if (len == 0 || !mr_utf8_valid(p, len, NULL)) {
			*code_r = MR_EINVAL_INPUT;
			mr_buf_printf(err, "list %s line 1: column %zu has %s "
			    "name", path, i + 1, len ? "a non-UTF-8" :
			    "an empty");
			list_free(&l);
			return NULL;
		}
		for (j = 0; j < i; j++) {
			if (strcasecmp(l->columns[j], l->columns[i]) == 0) {
				*code_r = MR_EINVAL_INPUT;
				mr_buf_printf(err, "list %s line 1: column "
				    "\"%s\" appears twice", path,
				    l->columns[i]);
				list_free(&l);
				return NULL;
			}
		}
		if (strcasecmp(l->columns[i], "email") == 0) {
			l->email_col = i;
			found = true;
		}
	}
	if (!found) {
		*code_r = MR_EINVAL_INPUT;
		mr_buf_printf(err, "list %s line 1: no \"email\" column in "
		    "the header row", path);
		list_free(&l);
		return NULL;
	}
	return l;
}

void
list_free(struct list **lp)
{
	struct list *l = *lp;
	size_t i;

	if (l == NULL)
		return;
	if (l->map)
		munmap((void *)l->map, l->size);
	for (i = 0; i < l->ncolumns; i++)
		free(l->columns[i]);
	free(l->columns);
	free(l->off);
	free(l->line);
	free(l->dom);
	free(l->fp);
	for (i = 0; i < l->ndomains; i++)
		free(l->domains[i]);
	free(l->domains);
	mr_hmap_free(&l->domain_index);
	csv_parser_free(&l->cp);
	mr_buf_release(&l->key);
	free(l);
	*lp = NULL;
}

size_t
list_ncolumns(const struct list *l)
{
	return l->ncolumns;
}

const char *const *
list_columns(const struct list *l)
{
	return (const char *const *)l->columns;
}

size_t
list_email_column(const struct list *l)
{
	return l->email_col;
}

static bool
list_domain_eq(void *ctx, uint32_t value, const void *key, size_t len)
{
	struct list *l = ctx;

	return strlen(l->domains[value]) == len &&
	    memcmp(l->domains[value], key, len) == 0;
}

/* list_intern - the id of a lower-cased domain name, added if new. */
static uint32_t
list_intern(struct list *l, const char *name, size_t len)
{
	uint64_t h = mr_hash(name, len);
	uint32_t id;

	id = mr_hmap_find(l->domain_index, h, name, len);
	if (id != MR_HMAP_NONE)
		return id;
	if (l->ndomains == l->domcap) {
		l->domcap = l->domcap ? l->domcap * 2 : 64;
		l->domains = xreallocarray(l->domains, l->domcap,
		    sizeof(*l->domains));
	}
	id = l->ndomains++;
	l->domains[id] = xmemdup(name, len);
	mr_hmap_put(l->domain_index, h, name, len, id);
	return id;
}

/* The de-duplication index compares a stored recipient's address, read
 * again from the map, with the probe (both lower-cased). */
struct list_dedup {
	struct list		*l;
	struct csv_parser	*cp;
	struct mr_buf		 tmp;
};

static bool
list_dedup_eq(void *ctx, uint32_t value, const void *key, size_t len)
{
	struct list_dedup *dd = ctx;
	const struct csv_field *f;
	const char *p;
	size_t n, nf;

	f = list_fields(dd->l, dd->cp, value, &nf);
	if (f == NULL)
		return false;
	list_email(dd->l, f, &p, &n);
	if (n != len)
		return false;
	list_lower(&dd->tmp, p, n);
	return memcmp(dd->tmp.data, key, len) == 0;
}

static void
list_grow(struct list *l, bool fp)
{
	l->cap = l->cap ? l->cap + l->cap / 2 : 4096;
	l->off = xreallocarray(l->off, l->cap, sizeof(*l->off));
	l->line = xreallocarray(l->line, l->cap, sizeof(*l->line));
	l->dom = xreallocarray(l->dom, l->cap, sizeof(*l->dom));
	if (fp)
		l->fp = xreallocarray(l->fp, l->cap, sizeof(*l->fp));
}

static uint64_t
list_fp(const struct csv_field *f, size_t n, const bool *cols)
{
	XXH3_state_t st;
	uint64_t len;
	size_t i;

	XXH3_64bits_reset(&st);
	for (i = 0; i < n; i++) {
		if (!cols[i])
			continue;
		len = f[i].len;
		XXH3_64bits_update(&st, &len, sizeof(len));
		XXH3_64bits_update(&st, f[i].p, f[i].len);
	}
	return XXH3_64bits_digest(&st) | 1;	/* never 0 */
}

int
list_load(struct list *l, const bool *fp_columns, list_check_cb *check,
    list_reject_cb *cb, void *arg, struct list_stats *st)
{
	struct list_dedup dd = { l, csv_parser_new(l->max_row), MR_BUF_INIT };
	struct mr_hmap *seen = mr_hmap_new(list_dedup_eq, &dd);
	const struct csv_field *f;
	const char *email, *reason;
	char reason_buf[96];
	size_t pos = l->data_start, n, elen, at, i, bad;
	unsigned line = l->data_line, rline;
	enum csv_result r;
	uint32_t prev;
	uint64_t h;

	memset(st, 0, sizeof(*st));
	l->domain_index = mr_hmap_new(list_domain_eq, l);
	madvise((void *)l->map, l->size, MADV_SEQUENTIAL);
	while ((r = csv_next(l->cp, l->map, l->size, &pos)) != CSV_EOF) {
		size_t rs = csv_record_start(l->cp), re = csv_record_end(l->cp);

		rline = line;
		line += csv_lines(l->cp);
		if (r == CSV_BAD) {
			st->rows++;
			st->rejected++;
			cb(arg, rline, csv_error(l->cp), l->map + rs, re - rs,
			    NULL, 0);
			continue;
		}
		n = csv_nfields(l->cp);
		f = csv_fields(l->cp);
		if (n == 1 && f[0].len == 0) {
			st->blank++;
			continue;
		}
		st->rows++;
		reason = NULL;
		email = NULL;
		elen = 0;
		if (n != l->ncolumns) {
			snprintf(reason_buf, sizeof(reason_buf), "expected %zu "
			    "fields, found %zu", l->ncolumns, n);
			reason = reason_buf;
		} else {
			list_email(l, f, &email, &elen);
			for (i = 0; i < n && reason == NULL; i++) {
				if (!mr_utf8_valid(f[i].p, f[i].len, &bad)) {
					snprintf(reason_buf, sizeof(reason_buf),
					    "invalid UTF-8 in column \"%s\" at "
					    "byte %zu", l->columns[i], bad + 1);
					reason = reason_buf;
				} else if (memchr(f[i].p, '\0', f[i].len)) {
					snprintf(reason_buf, sizeof(reason_buf),
					    "NUL byte in column \"%s\"",
					    l->columns[i]);
					reason = reason_buf;
				}
			}
			if (reason == NULL && elen == 0)
				reason = "empty address";
			if (reason == NULL)
				reason = smtp_addr_check(email, elen, &at);
			if (reason == NULL && check != NULL)
				reason = check(arg, f, n, reason_buf,
				    sizeof(reason_buf));
		}
		if (reason != NULL) {
			st->rejected++;
			cb(arg, rline, reason, l->map + rs, re - rs, email,
			    elen);
			continue;
		}
		list_lower(&l->key, email, elen);
		h = mr_hash(l->key.data, elen);
		if (l->count == l->cap)
			list_grow(l, fp_columns != NULL);
		prev = mr_hmap_put(seen, h, l->key.data, elen, l->count);
		if (prev != MR_HMAP_NONE) {
			snprintf(reason_buf, sizeof(reason_buf),
			    "duplicate of line %u", l->line[prev]);
			st->rejected++;
			st->duplicates++;
			cb(arg, rline, reason_buf, l->map + rs, re - rs, email,
			    elen);
			continue;
		}
		/* at: the '@' in email; the domain follows, lower-cased in
		 * key at the same offset. */
		l->off[l->count] = rs;
		l->line[l->count] = rline;
		l->dom[l->count] = list_intern(l, l->key.data + at + 1,
		    elen - at - 1);
		if (fp_columns != NULL)
			l->fp[l->count] = list_fp(f, n, fp_columns);
		l->count++;
		st->accepted++;
	}
	madvise((void *)l->map, l->size, MADV_NORMAL);
	mr_hmap_free(&seen);
	csv_parser_free(&dd.cp);
	mr_buf_release(&dd.tmp);
	return 0;
}

uint32_t
list_count(const struct list *l)
{
	return l->count;
}

uint32_t
list_line(const struct list *l, uint32_t i)
{
	return l->line[i];
}

uint32_t
list_domain(const struct list *l, uint32_t i)
{
	return l->dom[i];
}

uint64_t
list_fingerprint(const struct list *l, uint32_t i)
{
	return l->fp ? l->fp[i] : 0;
}

size_t
list_ndomains(const struct list *l)
{
	return l->ndomains;
}

const char *
list_domain_name(const struct list *l, uint32_t d)
{
	return l->domains[d];
}

const struct csv_field *
list_fields(const struct list *l, struct csv_parser *cp, uint32_t i,
    size_t *n_r)
{
	size_t pos = l->off[i];

	if (csv_next(cp, l->map, l->size, &pos) != CSV_RECORD) {
		*n_r = 0;
		return NULL;	/* the map changed under us: a bug */
	}
	*n_r = csv_nfields(cp);
	return csv_fields(cp);
}

void
list_email(const struct list *l, const struct csv_field *fields,
    const char **p_r, size_t *len_r)
{
	*p_r = fields[l->email_col].p;
	*len_r = fields[l->email_col].len;
	list_trim(p_r, len_r);
}

size_t
list_bytes(const struct list *l)
{
	size_t per = sizeof(*l->off) + sizeof(*l->line) + sizeof(*l->dom) +
	    (l->fp ? sizeof(*l->fp) : 0);

	return (size_t)l->cap * per;
}

size_t
list_file_size(const struct list *l)
{
	return l->size;
}

void
list_data(const struct list *l, const char **p_r, size_t *n_r)
{
	*p_r = l->map;
	*n_r = l->size;
}
