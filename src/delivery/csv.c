/*
 * csv.c - RFC 4180 records out of a buffer in memory, without copying.  A
 * record whose first physical line holds no quote at all (nearly every row
 * of a recipient list) takes a fast path made of memchr() scans: find the
 * LF, check there is no quote and no bare CR, split at the commas.  Any
 * other record goes through the general loop, which walks field by field,
 * finds closing quotes with memchr(), unescapes "" into the scratch buffer
 * and names the first rule a bad record breaks.  Both paths look only at
 * the window [start, start + max_record), so a hostile file cannot make
 * one record cost more than max_record bytes of scanning (except that,
 * after a bad record, the scan for the next line runs to its LF).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/mr_buf.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "csv.h"

#define CSV_FIELDS_MIN	16

struct csv_parser {
	size_t			 max_record;
	struct csv_field	*fields;	/* owned */
	size_t			 nfields;
	size_t			 fields_cap;
	size_t			 nescaped;	/* fields now in scratch */
	struct mr_buf		 scratch;	/* owned: unescaped fields */
	const char		*error;		/* static; NULL on a record */
	size_t			 rec_start;
	size_t			 rec_end;
	unsigned		 lines;
};

static void csv_grow(struct csv_parser *cp);
static void csv_push(struct csv_parser *cp, const char *p, size_t len);
static unsigned csv_count_lf(const char *p, const char *e);
static void csv_unescape(struct csv_parser *cp, const char *p,
    const char *e);
static bool csv_fast(struct csv_parser *cp, const char *buf,
    const char *wend, const char *end, size_t *pos);

static const char csv_e_eof[] = "no record: end of input";
static const char csv_e_quote_in_field[] =
    "quote inside an unquoted field";
static const char csv_e_after_quote[] =
    "text after the closing quote of a field";
static const char csv_e_bare_cr[] =
    "bare CR outside quotes (not followed by LF)";
static const char csv_e_unterminated[] =
    "unterminated quoted field at end of input";
static const char csv_e_too_long[] =
    "record longer than the maximum record size";
static const char csv_e_quote_too_long[] =
    "quoted field still open at the maximum record size "
    "(unterminated quote?)";

/* Bytes that end an unquoted field or make it bad. */
static const unsigned char csv_special[256] = {
	['\n'] = 1, ['\r'] = 1, ['"'] = 1, [','] = 1,
};

struct csv_parser *
csv_parser_new(size_t max_record)
{
	struct csv_parser *cp;

	MR_ASSERT(max_record > 0);
	cp = xcalloc(1, sizeof(*cp));
	cp->max_record = max_record;
	cp->fields_cap = CSV_FIELDS_MIN;
	cp->fields = xreallocarray(NULL, cp->fields_cap,
	    sizeof(*cp->fields));
	return cp;
}

void
csv_parser_free(struct csv_parser **pp)
{
	struct csv_parser *cp = *pp;

	if (cp == NULL)
		return;
	mr_buf_release(&cp->scratch);
	free(cp->fields);
	free(cp);
	*pp = NULL;
}

static void
csv_grow(struct csv_parser *cp)
{
	cp->fields_cap *= 2;
	cp->fields = xreallocarray(cp->fields, cp->fields_cap,
	    sizeof(*cp->fields));
}

/* csv_push - add a field; p == NULL marks one that lies in scratch. */
static inline void
csv_push(struct csv_parser *cp, const char *p, size_t len)
{
	if (cp->nfields == cp->fields_cap)
		csv_grow(cp);
	cp->fields[cp->nfields].p = p;
	cp->fields[cp->nfields].len = len;
	cp->nfields++;
}

static unsigned
csv_count_lf(const char *p, const char *e)
{
	unsigned n = 0;

	while ((p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		n++;
		p++;
	}
	return n;
}

/*
 * csv_unescape - append p..e (the text between the quotes of a field whose
 * every quote is doubled) to scratch with "" turned into ".  Scratch may
 * move, so the field records no pointer yet: see csv_next().
 */
static void
csv_unescape(struct csv_parser *cp, const char *p, const char *e)
{
	struct mr_buf *b = &cp->scratch;
	const char *q;
	size_t n;

	mr_buf_reserve(b, (size_t)(e - p));
	while (p < e) {
		q = memchr(p, '"', (size_t)(e - p));
		n = q != NULL ? (size_t)(q + 1 - p) : (size_t)(e - p);
		memcpy(b->data + b->len, p, n);
		b->len += n;
		p += n + (q != NULL);	/* skip the second quote */
	}
	b->data[b->len] = '\0';
}

/*
 * csv_fast - the fast path: take the record at buf + *pos if its first line
 * holds no quote and no bare CR and ends within the window.  Returns false,
 * having touched nothing but the field count, to send the record down the
 * general path (which also reports every kind of bad record).
 */
static bool
csv_fast(struct csv_parser *cp, const char *buf, const char *wend,
    const char *end, size_t *pos)
{
	const char *s = buf + *pos, *nl, *e, *p, *c;
	size_t term = 1;

	nl = memchr(s, '\n', (size_t)(wend - s));
	if (nl == NULL) {
		if (wend != end)
			return false;
		e = end;
		term = 0;
	} else
		e = nl;
	if (memchr(s, '"', (size_t)(e - s)) != NULL)
		return false;
	if (term == 1 && e > s && e[-1] == '\r') {
		e--;
		term = 2;
	}
	if (memchr(s, '\r', (size_t)(e - s)) != NULL)
		return false;
	for (p = s; (c = memchr(p, ',', (size_t)(e - p))) != NULL; p = c + 1)
		csv_push(cp, p, (size_t)(c - p));
	csv_push(cp, p, (size_t)(e - p));
	cp->rec_end = (size_t)(e - buf);
	*pos = cp->rec_end + term;
	return true;
}

enum csv_result
csv_next(struct csv_parser *cp, const char *buf, size_t len, size_t *pos)
{
	const char *s, *end, *wend, *p, *q, *c;
	const char *err;
	size_t start = *pos, i, off;
	bool esc;

	MR_ASSERT(start <= len);
	cp->nfields = 0;
	cp->nescaped = 0;
	mr_buf_reset(&cp->scratch);
	cp->error = NULL;
	cp->rec_start = cp->rec_end = start;
	cp->lines = 0;
	if (start == len) {
		cp->error = csv_e_eof;
		return CSV_EOF;
	}
	cp->lines = 1;
	s = buf + start;
	end = buf + len;
	wend = len - start > cp->max_record ? s + cp->max_record : end;
	if (csv_fast(cp, buf, wend, end, pos))
		return CSV_RECORD;

	/* The general path: p is at the start of a field. */
	cp->nfields = 0;
	p = s;
	for (;;) {
		if (p < wend && *p == '"') {
			q = p + 1;
			esc = false;
			for (;;) {
				c = memchr(q, '"', (size_t)(wend - q));
				if (c == NULL) {
					err = wend == end ? csv_e_unterminated :
					    csv_e_quote_too_long;
					goto bad;
				}
				cp->lines += csv_count_lf(q, c);
				if (c + 1 < wend && c[1] == '"') {
					esc = true;
					q = c + 2;
					continue;
				}
				break;
			}
			if (esc) {
				off = cp->scratch.len;
				csv_unescape(cp, p + 1, c);
				csv_push(cp, NULL, cp->scratch.len - off);
				cp->nescaped++;
			} else
				csv_push(cp, p + 1, (size_t)(c - p - 1));
			p = c + 1;
		} else {
			for (q = p; q < wend && !csv_special[(unsigned char)*q];
			    q++)
				;
			csv_push(cp, p, (size_t)(q - p));
			if (q < wend && *q == '"') {
				err = csv_e_quote_in_field;
				goto bad;
			}
			p = q;
		}

		/* p is just past a field. */
		if (p == wend) {
			if (wend == end)
				break;
			err = csv_e_too_long;
			goto bad;
		}
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p == '\n') {
			cp->rec_end = (size_t)(p - buf);
			*pos = cp->rec_end + 1;
			goto record;
		}
		if (*p == '\r') {
			if (p + 1 < end && p[1] == '\n') {
				if (p + 1 == wend) {
					err = csv_e_too_long;
					goto bad;
				}
				cp->rec_end = (size_t)(p - buf);
				*pos = cp->rec_end + 2;
				goto record;
			}
			err = csv_e_bare_cr;
			goto bad;
		}
		/* Only a closing quote can be followed by anything else. */
		err = csv_e_after_quote;
		goto bad;
	}
	cp->rec_end = len;
	*pos = len;

record:
	/* Scratch is complete and will not move: point the fields at it. */
	if (cp->nescaped > 0) {
		off = 0;
		for (i = 0; i < cp->nfields; i++) {
			if (cp->fields[i].p != NULL)
				continue;
			cp->fields[i].p = cp->scratch.data + off;
			off += cp->fields[i].len;
		}
		MR_ASSERT(off == cp->scratch.len);
	}
	return CSV_RECORD;

bad:
	/* Resume after the first line; its range is the bad record's. */
	cp->error = err;
	cp->nfields = 0;
	cp->nescaped = 0;
	mr_buf_reset(&cp->scratch);
	cp->lines = 1;
	p = memchr(s, '\n', (size_t)(end - s));
	if (p == NULL) {
		cp->rec_end = len;
		*pos = len;
	} else {
		*pos = (size_t)(p + 1 - buf);
		if (p > s && p[-1] == '\r')
			p--;
		cp->rec_end = (size_t)(p - buf);
	}
	return CSV_BAD;
}

size_t
csv_nfields(const struct csv_parser *cp)
{
	return cp->nfields;
}

const struct csv_field *
csv_fields(const struct csv_parser *cp)
{
	return cp->fields;
}

/*
 * csv_error - after CSV_EOF the reason says so (a caller that wanted a
 * header row may print it); after CSV_RECORD it is NULL.
 */
const char *
csv_error(const struct csv_parser *cp)
{
	return cp->error;
}

size_t
csv_record_start(const struct csv_parser *cp)
{
	return cp->rec_start;
}

size_t
csv_record_end(const struct csv_parser *cp)
{
	return cp->rec_end;
}

unsigned
csv_lines(const struct csv_parser *cp)
{
	return cp->lines;
}

void
csv_write_field(struct mr_buf *out, const char *s, size_t n)
{
	const char *e = s + n, *q;
	size_t i;

	for (i = 0; i < n; i++)
		if (csv_special[(unsigned char)s[i]])
			break;
	if (i == n) {
		mr_buf_append(out, s, n);
		return;
	}
	mr_buf_reserve(out, n + 2 + 1);
	mr_buf_putc(out, '"');
	while (s < e) {
		q = memchr(s, '"', (size_t)(e - s));
		if (q == NULL) {
			mr_buf_append(out, s, (size_t)(e - s));
			break;
		}
		mr_buf_append(out, s, (size_t)(q + 1 - s));
		mr_buf_putc(out, '"');
		s = q + 1;
	}
	mr_buf_putc(out, '"');
}
