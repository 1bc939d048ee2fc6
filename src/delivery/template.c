/*
 * template.c - compile an RFC 5322 template into segments and slots, and
 * render it per recipient (SPEC D2).
 *
 * A compiled template is a list of segments: static text (offsets into one
 * store), a field slot, or a header that holds placeholders.  Static text
 * is kept in CRLF form and split so that a line beginning with "." always
 * starts a segment, and no static line exceeds 998 octets; rendering then
 * only has to look at the first byte of a segment and the column it starts
 * at to dot-stuff and to keep the line limit, and can hand whole segments
 * to the evbuffer by reference.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <openssl/evp.h>

#include "core/mr_log.h"
#include "core/mr_utf8.h"
#include "core/xalloc.h"
#include "delivery/template.h"
#include "smtp/addr.h"

#define TMPL_LINE_MAX	998	/* RFC 5322 2.1.1, without CRLF */
#define TMPL_NAME_MAX	128	/* longest placeholder name */
#define TMPL_REF_MIN	256	/* smaller static segments are copied */
#define TMPL_EW_RAW	45	/* raw bytes per encoded word: 60 base64 */
#define TMPL_STAGE	8192

enum tmpl_seg_kind {
	TMPL_SEG_TEXT,		/* static bytes in the store */
	TMPL_SEG_SLOT,		/* a list field */
	TMPL_SEG_HEADER,	/* a header field with placeholders */
};

/* How a body slot's value is written. */
enum tmpl_ctx {
	TMPL_CTX_TEXT,		/* as is: newlines made CRLF */
	TMPL_CTX_QP,		/* quoted-printable, in a QP part */
};

/* Where a header segment lies within an address (address headers). */
enum tmpl_role {
	TMPL_ROLE_PLAIN,	/* unstructured text, or outside an address */
	TMPL_ROLE_PHRASE,	/* display name: before the '<' */
	TMPL_ROLE_ANGLE,	/* "<...>" and what follows */
	TMPL_ROLE_SEP,		/* the comma between two addresses */
};

struct tmpl_seg {
	uint8_t		kind;
	uint8_t		ctx;
	uint8_t		role;
	bool		has_eol;	/* TEXT: holds a CRLF */
	uint32_t	off;		/* TEXT: into store */
	uint32_t	len;
	uint32_t	first_line;	/* TEXT: octets before the first CRLF */
	uint32_t	last_line;	/* TEXT: octets after the last CRLF */
	uint32_t	max_line;	/* TEXT: longest line or part of one */
	uint32_t	index;		/* SLOT: column; HEADER: into hdrs */
};

struct tmpl_hdr {
	bool		 address;	/* an address-list header */
	bool		 part;		/* a MIME part's header */
	uint32_t	 name_off;	/* "Name" in the store */
	uint32_t	 name_len;
	struct tmpl_seg	*segs;		/* the value: TEXT and SLOT */
	size_t		 nsegs;
};

struct tmpl {
	char		*store;		/* static text, CRLF form */
	size_t		 store_len;
	struct tmpl_seg	*segs;
	size_t		 nsegs;
	struct tmpl_hdr	*hdrs;
	size_t		 nhdrs;
	bool		*used;		/* per column */
	bool		*in_body;	/* per column: used in the body */
	size_t		 ncols;
	char		**bounds;	/* MIME boundaries of the template */
	size_t		 nbounds;
	char		*from_addr;
	bool		 eight_bit;
	size_t		 static_size;
};

/* Scratch for building one header field. */
struct tmpl_hbufs {
	struct mr_buf	 val;		/* the value being assembled */
	struct mr_buf	 inner;		/* a phrase without its quotes */
	struct mr_buf	 ph;		/* a phrase, formatted */
};

struct tmpl_scratch {
	struct evbuffer	*out;
	unsigned	 col;		/* octets on the current output line */
	bool		 stuff;
	bool		 eight_bit;
	size_t		 n;		/* staged bytes */
	size_t		 total;
	struct mr_buf	 hdr;		/* a header being assembled */
	struct tmpl_hbufs hb;
	char		 stage[TMPL_STAGE];
};

/* Compilation state. */
struct tmpl_cc {
	struct tmpl	*t;
	struct mr_buf	 store;
	struct mr_buf	*err;
	struct mr_buf	*warn;
	const char *const *columns;
	size_t		 ncolumns;
	/* Segments being built: the message's, or a header's. */
	struct tmpl_seg	*segs;
	size_t		 nsegs, segcap;
	bool		 saw_from;
	bool		 in_body;	/* compiling a body line */
	bool		 saw_content_type;
	bool		 saw_mime_version;
	bool		 saw_cte;
};

/* A logical line of the template source, terminator removed. */
struct tmpl_line {
	const char	*p;
	size_t		 len;
	unsigned	 no;		/* 1-based line number */
};

static const char *const tmpl_address_headers[] = {
	"from", "sender", "reply-to", "to", "cc", "bcc", "resent-from",
	"resent-sender", "resent-to", "resent-cc", "resent-bcc", NULL,
};

/* ---------------------------------------------------------------- */
/* Compilation helpers                                              */
/* ---------------------------------------------------------------- */

static void
tmpl_cc_push(struct tmpl_cc *cc, const struct tmpl_seg *seg)
{
	if (cc->nsegs == cc->segcap) {
		cc->segcap = cc->segcap ? cc->segcap * 2 : 16;
		cc->segs = xreallocarray(cc->segs, cc->segcap,
		    sizeof(*cc->segs));
	}
	cc->segs[cc->nsegs++] = *seg;
}

/*
 * tmpl_cc_text - add static bytes; they join the previous TEXT segment when
 * there is one with the same role and the new bytes do not start a line
 * with ".".
 */
static void
tmpl_cc_text(struct tmpl_cc *cc, const char *p, size_t n, uint8_t role,
    bool line_start)
{
	struct tmpl_seg seg, *last;

	if (n == 0)
		return;
	last = cc->nsegs ? &cc->segs[cc->nsegs - 1] : NULL;
	if (last && last->kind == TMPL_SEG_TEXT && last->role == role &&
	    !(line_start && p[0] == '.') &&
	    last->off + last->len == cc->store.len) {
		mr_buf_append(&cc->store, p, n);
		last->len += (uint32_t)n;
		return;
	}
	memset(&seg, 0, sizeof(seg));
	seg.kind = TMPL_SEG_TEXT;
	seg.role = role;
	seg.off = (uint32_t)cc->store.len;
	seg.len = (uint32_t)n;
	mr_buf_append(&cc->store, p, n);
	tmpl_cc_push(cc, &seg);
}

static void
tmpl_cc_slot(struct tmpl_cc *cc, size_t col, uint8_t ctx, uint8_t role)
{
	struct tmpl_seg seg;

	memset(&seg, 0, sizeof(seg));
	seg.kind = TMPL_SEG_SLOT;
	seg.ctx = ctx;
	seg.role = role;
	seg.index = (uint32_t)col;
	tmpl_cc_push(cc, &seg);
	cc->t->used[col] = true;
	if (cc->in_body)
		cc->t->in_body[col] = true;
}

/* tmpl_seg_finish - compute the line facts of TEXT segments. */
static void
tmpl_seg_finish(const char *store, struct tmpl_seg *segs, size_t n)
{
	const char *p, *e, *nl;
	size_t i;

	for (i = 0; i < n; i++) {
		if (segs[i].kind != TMPL_SEG_TEXT)
			continue;
		p = store + segs[i].off;
		e = p + segs[i].len;
		nl = memchr(p, '\n', segs[i].len);
		if (nl == NULL) {
			segs[i].has_eol = false;
			segs[i].first_line = segs[i].last_line = segs[i].len;
			segs[i].max_line = segs[i].len;
			continue;
		}
		segs[i].has_eol = true;
		segs[i].first_line = (uint32_t)(nl - 1 - p);
		segs[i].max_line = segs[i].first_line;
		while ((nl = memchr(p, '\n', (size_t)(e - p))) != NULL) {
			if ((uint32_t)(nl - 1 - p) > segs[i].max_line)
				segs[i].max_line = (uint32_t)(nl - 1 - p);
			p = nl + 1;
		}
		segs[i].last_line = (uint32_t)(e - p);
		if (segs[i].last_line > segs[i].max_line)
			segs[i].max_line = segs[i].last_line;
	}
}

/*
 * tmpl_find_placeholder - find "{{ name }}" in p[0..n).  Returns the offset
 * of "{{" or n when there is none; *end_r is the offset after "}}" and the
 * trimmed name is (*name_r, *name_len_r).  "{{" that is not closed by "}}"
 * on the same line, or whose name is empty, too long or holds braces, is
 * not a placeholder.
 */
static size_t
tmpl_find_placeholder(const char *p, size_t n, size_t from, size_t *end_r,
    const char **name_r, size_t *name_len_r)
{
	size_t i, j, a, b;

	for (i = from; i + 1 < n; i++) {
		if (p[i] != '{' || p[i + 1] != '{')
			continue;
		for (j = i + 2; j + 1 < n; j++) {
			if (p[j] == '{')
				break;
			if (p[j] == '}') {
				if (p[j + 1] != '}')
					break;
				a = i + 2;
				b = j;
				while (a < b && (p[a] == ' ' || p[a] == '\t'))
					a++;
				while (b > a &&
				    (p[b - 1] == ' ' || p[b - 1] == '\t'))
					b--;
				if (a == b || b - a > TMPL_NAME_MAX)
					break;
				*name_r = p + a;
				*name_len_r = b - a;
				*end_r = j + 2;
				return i;
			}
		}
	}
	return n;
}

static bool
tmpl_has_placeholder(const char *p, size_t n)
{
	const char *name;
	size_t end, nlen;

	return tmpl_find_placeholder(p, n, 0, &end, &name, &nlen) != n;
}

static int
tmpl_column(const struct tmpl_cc *cc, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < cc->ncolumns; i++) {
		if (strlen(cc->columns[i]) == len &&
		    strncasecmp(cc->columns[i], name, len) == 0)
			return (int)i;
	}
	return -1;
}

/*
 * tmpl_cc_scan - add p[0..n) (one source line, or a header value) as text
 * and slots.  Returns 0, or -1 with err set for an unknown placeholder.
 */
static int
tmpl_cc_scan(struct tmpl_cc *cc, const char *p, size_t n, unsigned lineno,
    uint8_t ctx, uint8_t role, bool line_start)
{
	size_t pos = 0, at, end, nlen;
	const char *name;
	int col;

	while (pos < n) {
		at = tmpl_find_placeholder(p, n, pos, &end, &name, &nlen);
		tmpl_cc_text(cc, p + pos, at - pos, role,
		    line_start && pos == 0);
		if (at == n)
			break;
		col = tmpl_column(cc, name, nlen);
		if (col < 0) {
			mr_buf_printf(cc->err, "template line %u: placeholder "
			    "{{%.*s}} has no column in the list", lineno,
			    (int)nlen, name);
			return -1;
		}
		tmpl_cc_slot(cc, (size_t)col, ctx, role);
		pos = end;
	}
	return 0;
}

/*
 * tmpl_split_lines - cut text into lines at CRLF, LF or a lone CR.
 * Returns the number of lines; *lines_r is owned by the caller.
 */
static size_t
tmpl_split_lines(const char *text, size_t len, struct tmpl_line **lines_r)
{
	struct tmpl_line *v = NULL;
	size_t n = 0, cap = 0, i = 0, start;

	while (i < len) {
		start = i;
		while (i < len && text[i] != '\n' && text[i] != '\r')
			i++;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n].p = text + start;
		v[n].len = i - start;
		v[n].no = (unsigned)n + 1;
		n++;
		if (i + 1 < len && text[i] == '\r' && text[i + 1] == '\n')
			i += 2;
		else if (i < len)
			i++;
	}
	*lines_r = v;
	return n;
}

/* ---------------------------------------------------------------- */
/* Header encoding (RFC 2047) and folding                           */
/* ---------------------------------------------------------------- */

/* tmpl_utf8_cut - the largest cut <= max in p[0..n) at a char boundary. */
static size_t
tmpl_utf8_cut(const char *p, size_t n, size_t max)
{
	size_t k;

	if (n <= max)
		return n;
	k = max;
	while (k > 0 && ((unsigned char)p[k] & 0xc0) == 0x80)
		k--;
	return k ? k : max;
}

/* tmpl_col - octets after the last line break in out. */
static size_t
tmpl_col(const struct mr_buf *out)
{
	const char *nl = out->len ? memrchr(out->data, '\n', out->len) : NULL;

	return nl ? out->len - (size_t)(nl + 1 - out->data) : out->len;
}

/*
 * tmpl_encode_words - append p[0..n) as RFC 2047 B-encoded words starting
 * at column col, folded with CRLF SP so that no line holding an encoded
 * word exceeds 76 octets (RFC 2047 2).  Each word holds whole characters.
 */
static void
tmpl_encode_words(struct mr_buf *out, const char *p, size_t n, size_t col)
{
	unsigned char b64[TMPL_EW_RAW * 2];
	size_t k, room;
	int w;

	while (n > 0) {
		/* "=?UTF-8?B?" and "?=" take 12; 4 base64 chars per 3. */
		room = col + 12 + 4 < 76 ? (76 - col - 12) / 4 * 3 : 0;
		if (room > TMPL_EW_RAW)
			room = TMPL_EW_RAW;
		k = room ? tmpl_utf8_cut(p, n, room) : 0;
		if (k == 0) {
			mr_buf_puts(out, "\r\n ");
			col = 1;
			continue;
		}
		w = EVP_EncodeBlock(b64, (const unsigned char *)p, (int)k);
		mr_buf_printf(out, "=?UTF-8?B?%.*s?=", w, (const char *)b64);
		col += (size_t)w + 12;
		p += k;
		n -= k;
		if (n > 0) {
			mr_buf_puts(out, "\r\n ");
			col = 1;
		}
	}
}

/*
 * tmpl_fold - append header text (no CRLF inside) to out, folding at
 * white space so that no line exceeds TMPL_LINE_MAX; a run with no white
 * space is cut (CRLF SP inserted), as Postfix does.  col is the column at
 * which text starts, and may already be at or past the limit.
 */
static void
tmpl_fold(struct mr_buf *out, const char *p, size_t n, size_t col)
{
	size_t k, ws;

	for (;;) {
		if (col >= TMPL_LINE_MAX) {
			mr_buf_puts(out, "\r\n ");
			col = 1;
		}
		if (col + n <= TMPL_LINE_MAX)
			break;
		k = TMPL_LINE_MAX - col;	/* > 0, and < n */
		for (ws = k; ws > 0 && p[ws] != ' ' && p[ws] != '\t'; ws--)
			;
		if (ws > 0)
			k = ws;
		mr_buf_append(out, p, k);
		mr_buf_puts(out, "\r\n");
		p += k;
		n -= k;
		if (*p == ' ' || *p == '\t') {
			col = 0;	/* the white space starts the line */
		} else {
			mr_buf_putc(out, ' ');
			col = 1;
		}
	}
	mr_buf_append(out, p, n);
}

static bool
tmpl_is_special(char c)
{
	return strchr("()<>[]:;@\\,.\"", c) != NULL;
}

/*
 * tmpl_phrase - append a display name: encoded words when it holds
 * non-ASCII, a quoted-string when it holds specials, else as is, folded
 * at white space when long.  p[0..n) may already be a quoted-string; its
 * quotes are removed first.  Returns false when the phrase is empty
 * (nothing appended).
 */
static bool
tmpl_phrase(struct mr_buf *out, const char *p, size_t n,
    struct tmpl_hbufs *hb)
{
	struct mr_buf *inner = &hb->inner, *ph = &hb->ph;
	bool special = false;
	size_t i;

	while (n > 0 && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	mr_buf_reset(inner);
	if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
		for (i = 1; i + 1 < n; i++) {
			if (p[i] == '\\' && i + 2 < n)
				i++;
			mr_buf_putc(inner, p[i]);
		}
	} else {
		mr_buf_append(inner, p, n);
	}
	if (inner->len == 0)
		return false;
	if (!mr_is_ascii(inner->data, inner->len)) {
		tmpl_encode_words(out, inner->data, inner->len, tmpl_col(out));
		return true;
	}
	for (i = 0; i < inner->len; i++)
		special |= tmpl_is_special(inner->data[i]);
	mr_buf_reset(ph);
	if (special) {
		mr_buf_putc(ph, '"');
		for (i = 0; i < inner->len; i++) {
			if (inner->data[i] == '"' || inner->data[i] == '\\')
				mr_buf_putc(ph, '\\');
			mr_buf_putc(ph, inner->data[i]);
		}
		mr_buf_putc(ph, '"');
	} else {
		mr_buf_append(ph, inner->data, inner->len);
	}
	tmpl_fold(out, ph->data, ph->len, tmpl_col(out));
	return true;
}

static void
tmpl_hbufs_release(struct tmpl_hbufs *hb)
{
	mr_buf_release(&hb->val);
	mr_buf_release(&hb->inner);
	mr_buf_release(&hb->ph);
}

/* tmpl_value_append - a header value byte run, newlines made spaces. */
static void
tmpl_value_append(struct mr_buf *b, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\r' || p[i] == '\n') {
			if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
				i++;
			mr_buf_putc(b, ' ');
		} else {
			mr_buf_putc(b, p[i]);
		}
	}
}

/*
 * tmpl_header_build - the whole header field "Name: value\r\n" into out.
 * The value comes from segs (static text and the recipient's fields;
 * their CR and LF become spaces, so that no value can add a header).
 */
static void
tmpl_header_build(const struct tmpl *t, const struct tmpl_hdr *h,
    const struct csv_field *fields, size_t nfields, struct mr_buf *out,
    struct tmpl_hbufs *hb)
{
	struct mr_buf *val = &hb->val;
	const struct tmpl_seg *s;
	const char *v;
	size_t i, start, col, n;
	uint8_t role;

	mr_buf_append(out, t->store + h->name_off, h->name_len);
	mr_buf_putc(out, ':');
	col = tmpl_col(out);
	if (!h->address) {
		mr_buf_reset(val);
		for (i = 0; i < h->nsegs; i++) {
			s = &h->segs[i];
			if (s->kind == TMPL_SEG_TEXT)
				mr_buf_append(val, t->store + s->off, s->len);
			else if (s->index < nfields)
				tmpl_value_append(val, fields[s->index].p,
				    fields[s->index].len);
		}
		/* A MIME part's header holds parameters that encoded words
		 * must not enter (RFC 2047 5): its UTF-8 stays as it is. */
		if (h->part || mr_is_ascii(mr_buf_cstr(val), val->len)) {
			tmpl_fold(out, mr_buf_cstr(val), val->len, col);
		} else {
			v = mr_buf_cstr(val);
			n = val->len;
			while (n > 0 && (*v == ' ' || *v == '\t')) {
				v++;
				n--;
			}
			mr_buf_putc(out, ' ');
			tmpl_encode_words(out, v, n, tmpl_col(out));
		}
		mr_buf_puts(out, "\r\n");
		return;
	}
	/*
	 * An address list: each address's phrase is assembled and encoded,
	 * quoted or folded as a whole; a line is folded before an angle
	 * address, never inside it.
	 */
	mr_buf_reset(val);
	for (i = 0; i < h->nsegs; i = start) {
		role = h->segs[i].role;
		for (start = i; start < h->nsegs &&
		    h->segs[start].role == role; start++) {
			s = &h->segs[start];
			if (s->kind == TMPL_SEG_TEXT)
				mr_buf_append(val, t->store + s->off, s->len);
			else if (s->index < nfields)
				tmpl_value_append(val, fields[s->index].p,
				    fields[s->index].len);
		}
		v = mr_buf_cstr(val);
		n = val->len;
		if (role == TMPL_ROLE_PHRASE) {
			mr_buf_putc(out, ' ');
			if (tmpl_phrase(out, v, n, hb))
				mr_buf_putc(out, ' ');
		} else if (role == TMPL_ROLE_ANGLE) {
			while (n > 0 && (*v == ' ' || *v == '\t')) {
				v++;
				n--;
			}
			col = tmpl_col(out);
			if (col > 1 && col + n > TMPL_LINE_MAX) {
				mr_buf_puts(out, "\r\n ");
				col = 1;
			}
			tmpl_fold(out, v, n, col);
		} else {
			tmpl_fold(out, v, n, tmpl_col(out));
		}
		mr_buf_reset(val);
	}
	mr_buf_puts(out, "\r\n");
}

/* ---------------------------------------------------------------- */
/* Compilation                                                      */
/* ---------------------------------------------------------------- */

static bool
tmpl_header_name_ok(const char *p, size_t n)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		if (p[i] < 33 || p[i] > 126 || p[i] == ':')
			return false;
	}
	return true;
}

static bool
tmpl_name_is(const char *p, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

/*
 * tmpl_param - the value of parameter "name" in a header value like
 * 'multipart/mixed; boundary="x"' into out (empty when absent).
 */
static void
tmpl_param(const char *v, size_t n, const char *name, struct mr_buf *out)
{
	size_t i, nl = strlen(name), j;

	mr_buf_reset(out);
	for (i = 0; i + nl < n; i++) {
		if (v[i] != ';')
			continue;
		j = i + 1;
		while (j < n && (v[j] == ' ' || v[j] == '\t'))
			j++;
		if (j + nl >= n || strncasecmp(v + j, name, nl) != 0)
			continue;
		j += nl;
		while (j < n && (v[j] == ' ' || v[j] == '\t'))
			j++;
		if (j >= n || v[j] != '=')
			continue;
		j++;
		while (j < n && (v[j] == ' ' || v[j] == '\t'))
			j++;
		if (j < n && v[j] == '"') {
			for (j++; j < n && v[j] != '"'; j++) {
				if (v[j] == '\\' && j + 1 < n)
					j++;
				mr_buf_putc(out, v[j]);
			}
		} else {
			while (j < n && v[j] != ';' && v[j] != ' ' &&
			    v[j] != '\t')
				mr_buf_putc(out, v[j++]);
		}
		return;
	}
}

static void
tmpl_add_boundary(struct tmpl *t, const char *b)
{
	t->bounds = xreallocarray(t->bounds, t->nbounds + 1,
	    sizeof(*t->bounds));
	t->bounds[t->nbounds++] = xstrdup(b);
}

/* What a header section says about the body that follows it. */
struct tmpl_mime {
	bool		 qp;		/* Content-Transfer-Encoding: QP */
	bool		 b64;		/* Content-Transfer-Encoding: base64 */
	struct mr_buf	 boundary;	/* when multipart */
};

static void
tmpl_mime_header(struct tmpl_mime *m, const char *name, size_t nlen,
    const char *v, size_t vlen)
{
	size_t i = 0;

	while (i < vlen && (v[i] == ' ' || v[i] == '\t'))
		i++;
	if (tmpl_name_is(name, nlen, "content-transfer-encoding")) {
		m->qp = vlen - i >= 16 &&
		    strncasecmp(v + i, "quoted-printable", 16) == 0;
		m->b64 = vlen - i >= 6 && strncasecmp(v + i, "base64", 6) == 0;
	}
	else if (tmpl_name_is(name, nlen, "content-type") &&
	    vlen - i >= 10 && strncasecmp(v + i, "multipart/", 10) == 0)
		tmpl_param(v, vlen, "boundary", &m->boundary);
}

/*
 * tmpl_unfold - join a header's source lines [first, last] into one value
 * (RFC 5322 unfolding: the line breaks are removed, white space kept).
 */
static void
tmpl_unfold(const struct tmpl_line *lines, size_t first, size_t last,
    size_t skip, struct mr_buf *out)
{
	size_t i;

	mr_buf_reset(out);
	mr_buf_append(out, lines[first].p + skip, lines[first].len - skip);
	for (i = first + 1; i <= last; i++)
		mr_buf_append(out, lines[i].p, lines[i].len);
}

/*
 * tmpl_cc_address_header - compile an address-list value with
 * placeholders: the value is cut into addresses at top-level commas of the
 * template text (a field's value never cuts an address), and each address
 * into its phrase (before '<') and the rest.
 */
static int
tmpl_cc_address_value(struct tmpl_cc *cc, const char *v, size_t n,
    unsigned lineno)
{
	size_t i = 0, start = 0, lt;
	int depth_q = 0, depth_p = 0, depth_a = 0;

	for (i = 0; i <= n; i++) {
		char c = i < n ? v[i] : ',';

		if (i < n && c == '\\' && depth_q) {
			i++;
			continue;
		}
		if (c == '"')
			depth_q = !depth_q;
		else if (!depth_q && c == '(')
			depth_p++;
		else if (!depth_q && c == ')' && depth_p)
			depth_p--;
		else if (!depth_q && !depth_p && c == '<')
			depth_a++;
		else if (!depth_q && !depth_p && c == '>' && depth_a)
			depth_a--;
		if (c != ',' || depth_q || depth_p || depth_a)
			continue;
		/* One address: v[start..i). */
		lt = start;
		depth_q = 0;
		while (lt < i) {
			if (v[lt] == '"')
				depth_q = !depth_q;
			else if (v[lt] == '<' && !depth_q)
				break;
			lt++;
		}
		depth_q = 0;
		if (lt < i) {
			if (tmpl_cc_scan(cc, v + start, lt - start, lineno,
			    TMPL_CTX_TEXT, TMPL_ROLE_PHRASE, false) != 0 ||
			    tmpl_cc_scan(cc, v + lt, i - lt, lineno,
			    TMPL_CTX_TEXT, TMPL_ROLE_ANGLE, false) != 0)
				return -1;
		} else if (tmpl_cc_scan(cc, v + start, i - start, lineno,
		    TMPL_CTX_TEXT, TMPL_ROLE_PLAIN, false) != 0) {
			return -1;
		}
		if (i < n)
			tmpl_cc_text(cc, ",", 1, TMPL_ROLE_SEP, false);
		start = i + 1;
	}
	return 0;
}

/*
 * tmpl_from - note the envelope sender a From header offers: its single
 * address when the value holds no placeholder.
 */
static void
tmpl_from(struct tmpl_cc *cc, const char *v, size_t n)
{
	const char *lt, *gt, *p = v;
	size_t len = n, at;

	cc->saw_from = true;
	if (memchr(v, ',', n) != NULL)
		return;
	lt = memchr(v, '<', n);
	gt = lt ? memchr(lt, '>', n - (size_t)(lt - v)) : NULL;
	if (lt && gt) {
		p = lt + 1;
		len = (size_t)(gt - lt - 1);
	}
	while (len > 0 && (*p == ' ' || *p == '\t')) {
		p++;
		len--;
	}
	while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
		len--;
	if (smtp_addr_check(p, len, &at) == NULL)
		cc->t->from_addr = xmemdup(p, len);
}

/*
 * tmpl_cc_header - compile one header field (source lines first..last).
 * mime collects what the body needs to know; top says whether this is the
 * message's own header (where Message-ID and Date are dropped and From is
 * checked) or a MIME part's.
 */
static int
tmpl_cc_header(struct tmpl_cc *cc, const struct tmpl_line *lines,
    size_t first, size_t last, struct tmpl_mime *mime, bool top)
{
	const struct tmpl_line *l = &lines[first];
	const char *colon = memchr(l->p, ':', l->len);
	struct mr_buf val = MR_BUF_INIT;
	size_t nlen, i, bad;
	const char *name = l->p;
	bool has_ph;
	int r = 0;

	if (colon == NULL || !tmpl_header_name_ok(l->p,
	    nlen = (size_t)(colon - l->p))) {
		mr_buf_printf(cc->err, "template line %u: not a header field "
		    "(expected Name: value)", l->no);
		return -1;
	}
	tmpl_unfold(lines, first, last, nlen + 1, &val);
	tmpl_mime_header(mime, name, nlen, mr_buf_cstr(&val), val.len);
	if (top && (tmpl_name_is(name, nlen, "message-id") ||
	    tmpl_name_is(name, nlen, "date"))) {
		if (cc->warn)
			mr_buf_printf(cc->warn, "template line %u: %.*s header "
			    "replaced by one generated per message\n", l->no,
			    (int)nlen, name);
		goto out;
	}
	has_ph = tmpl_has_placeholder(mr_buf_cstr(&val), val.len);
	if (!top && !has_ph) {
		/* A MIME part's static header: kept as written. */
		for (i = first; i <= last; i++) {
			tmpl_cc_text(cc, lines[i].p, lines[i].len,
			    TMPL_ROLE_PLAIN, true);
			tmpl_cc_text(cc, "\r\n", 2, TMPL_ROLE_PLAIN, false);
		}
		goto out;
	}
	if (!top)
		goto dynamic;
	if (!mr_utf8_valid(mr_buf_cstr(&val), val.len, &bad)) {
		mr_buf_printf(cc->err, "template line %u: the %.*s header holds "
		    "bytes that are not UTF-8", l->no, (int)nlen, name);
		r = -1;
		goto out;
	}
	if (tmpl_name_is(name, nlen, "content-type"))
		cc->saw_content_type = true;
	if (tmpl_name_is(name, nlen, "mime-version"))
		cc->saw_mime_version = true;
	if (tmpl_name_is(name, nlen, "content-transfer-encoding"))
		cc->saw_cte = true;
	if (tmpl_name_is(name, nlen, "from") && !has_ph)
		tmpl_from(cc, mr_buf_cstr(&val), val.len);
	else if (tmpl_name_is(name, nlen, "from"))
		cc->saw_from = true;
	if (!has_ph && mr_is_ascii(mr_buf_cstr(&val), val.len)) {
		/* Static and plain: kept as written, folding and all. */
		for (i = first; i <= last; i++) {
			tmpl_cc_text(cc, lines[i].p, lines[i].len,
			    TMPL_ROLE_PLAIN, true);
			tmpl_cc_text(cc, "\r\n", 2, TMPL_ROLE_PLAIN, false);
		}
		goto out;
	}
dynamic:
	{
		/* A header compiled on its own: built per recipient (or once,
		 * now, when it is static but needs encoding). */
		struct tmpl_hdr h;
		struct tmpl_seg hseg;
		struct tmpl_seg *save = cc->segs;
		size_t save_n = cc->nsegs, save_cap = cc->segcap, k;

		memset(&h, 0, sizeof(h));
		h.name_off = (uint32_t)cc->store.len;
		h.name_len = (uint32_t)nlen;
		h.part = !top;
		mr_buf_append(&cc->store, name, nlen);
		for (k = 0; top && tmpl_address_headers[k]; k++)
			if (tmpl_name_is(name, nlen, tmpl_address_headers[k]))
				h.address = true;
		cc->segs = NULL;
		cc->nsegs = cc->segcap = 0;
		if (h.address)
			r = tmpl_cc_address_value(cc, mr_buf_cstr(&val),
			    val.len, l->no);
		else
			r = tmpl_cc_scan(cc, mr_buf_cstr(&val), val.len, l->no,
			    TMPL_CTX_TEXT, TMPL_ROLE_PLAIN, false);
		h.segs = cc->segs;
		h.nsegs = cc->nsegs;
		cc->segs = save;
		cc->nsegs = save_n;
		cc->segcap = save_cap;
		if (r != 0) {
			free(h.segs);
			goto out;
		}
		if (!has_ph) {
			/* Static but non-ASCII: encode once, now. */
			struct mr_buf hb = MR_BUF_INIT;
			struct tmpl_hbufs bufs;

			memset(&bufs, 0, sizeof(bufs));
			/* Offsets stay valid: the store is read, not moved,
			 * while building, and appended to only afterwards. */
			cc->t->store = cc->store.data;
			tmpl_header_build(cc->t, &h, NULL, 0, &hb, &bufs);
			cc->t->store = NULL;
			tmpl_cc_text(cc, hb.data, hb.len, TMPL_ROLE_PLAIN, true);
			mr_buf_release(&hb);
			tmpl_hbufs_release(&bufs);
			free(h.segs);
			goto out;
		}
		cc->t->hdrs = xreallocarray(cc->t->hdrs, cc->t->nhdrs + 1,
		    sizeof(*cc->t->hdrs));
		cc->t->hdrs[cc->t->nhdrs] = h;
		memset(&hseg, 0, sizeof(hseg));
		hseg.kind = TMPL_SEG_HEADER;
		hseg.index = (uint32_t)cc->t->nhdrs++;
		tmpl_cc_push(cc, &hseg);
	}
out:
	mr_buf_release(&val);
	return r;
}

/*
 * tmpl_cc_headers - compile the header block that starts at line *ip, up
 * to and including its blank line.  Returns 0 or -1.
 */
static int
tmpl_cc_headers(struct tmpl_cc *cc, const struct tmpl_line *lines,
    size_t nlines, size_t *ip, struct tmpl_mime *mime, bool top)
{
	size_t i = *ip, last;

	while (i < nlines && lines[i].len > 0) {
		if (lines[i].p[0] == ' ' || lines[i].p[0] == '\t') {
			mr_buf_printf(cc->err, "template line %u: continuation "
			    "line with no header field before it",
			    lines[i].no);
			return -1;
		}
		for (last = i; last + 1 < nlines && lines[last + 1].len > 0 &&
		    (lines[last + 1].p[0] == ' ' ||
		    lines[last + 1].p[0] == '\t'); last++)
			;
		if (tmpl_cc_header(cc, lines, i, last, mime, top) != 0)
			return -1;
		i = last + 1;
	}
	*ip = i;
	return 0;
}

/*
 * tmpl_cc_body_line - one body line: text and slots, long static runs
 * broken at TMPL_LINE_MAX, then CRLF.
 */
static int
tmpl_cc_body_line(struct tmpl_cc *cc, const struct tmpl_line *l,
    const struct tmpl_mime *m)
{
	size_t pos = 0;
	uint8_t ctx = m->qp ? TMPL_CTX_QP : TMPL_CTX_TEXT;
	int r;

	if (m->b64 && tmpl_has_placeholder(l->p, l->len)) {
		mr_buf_printf(cc->err, "template line %u: a placeholder in a "
		    "base64 part cannot be filled in (make the part 8bit or "
		    "quoted-printable)", l->no);
		return -1;
	}

	if (l->len > TMPL_LINE_MAX && !tmpl_has_placeholder(l->p, l->len)) {
		if (cc->warn)
			mr_buf_printf(cc->warn, "template line %u is %zu octets "
			    "long; broken at %d as RFC 5322 requires (use "
			    "quoted-printable to avoid this)\n", l->no, l->len,
			    TMPL_LINE_MAX);
		while (l->len - pos > TMPL_LINE_MAX) {
			tmpl_cc_text(cc, l->p + pos, TMPL_LINE_MAX,
			    TMPL_ROLE_PLAIN, true);
			tmpl_cc_text(cc, "\r\n", 2, TMPL_ROLE_PLAIN, false);
			pos += TMPL_LINE_MAX;
		}
		tmpl_cc_text(cc, l->p + pos, l->len - pos, TMPL_ROLE_PLAIN,
		    true);
	} else {
		cc->in_body = true;
		r = tmpl_cc_scan(cc, l->p, l->len, l->no, ctx, TMPL_ROLE_PLAIN,
		    true);
		cc->in_body = false;
		if (r != 0)
			return -1;
	}
	tmpl_cc_text(cc, "\r\n", 2, TMPL_ROLE_PLAIN, false);
	return 0;
}

#define TMPL_MIME_DEPTH 16

/*
 * tmpl_cc_body - compile the body lines from *ip on.  Boundaries of the
 * multipart structure are followed (to the depth of TMPL_MIME_DEPTH) so
 * that each part's transfer encoding is known for its slots.
 */
static int
tmpl_cc_body(struct tmpl_cc *cc, const struct tmpl_line *lines,
    size_t nlines, size_t i, struct tmpl_mime *top)
{
	char *bounds[TMPL_MIME_DEPTH];
	size_t nb = 0, k, blen = 0;
	struct tmpl_mime mode = { top->qp, top->b64, MR_BUF_INIT };
	bool is_bound;
	int r = 0;

	if (top->boundary.len) {
		bounds[nb++] = xstrdup(top->boundary.data);
		tmpl_add_boundary(cc->t, top->boundary.data);
	}
	for (; i < nlines && r == 0; i++) {
		const struct tmpl_line *l = &lines[i];

		is_bound = false;
		for (k = nb; k-- > 0;) {
			blen = strlen(bounds[k]);
			if (l->len >= blen + 2 && l->p[0] == '-' &&
			    l->p[1] == '-' &&
			    memcmp(l->p + 2, bounds[k], blen) == 0) {
				is_bound = true;
				break;
			}
		}
		if (!is_bound) {
			r = tmpl_cc_body_line(cc, l, &mode);
			continue;
		}
		/* Leave nested multiparts that this boundary closes. */
		while (nb > k + 1)
			free(bounds[--nb]);
		tmpl_cc_text(cc, l->p, l->len, TMPL_ROLE_PLAIN, true);
		tmpl_cc_text(cc, "\r\n", 2, TMPL_ROLE_PLAIN, false);
		if (l->len >= blen + 4 && l->p[blen + 2] == '-' &&
		    l->p[blen + 3] == '-') {
			free(bounds[--nb]);	/* closing delimiter */
			mode.qp = mode.b64 = false;
			continue;
		}
		/* A part: its header, then its body. */
		{
			struct tmpl_mime pm = { false, false, MR_BUF_INIT };

			i++;
			r = tmpl_cc_headers(cc, lines, nlines, &i, &pm, false);
			if (r == 0 && i < nlines)
				tmpl_cc_text(cc, "\r\n", 2, TMPL_ROLE_PLAIN,
				    false);
			mode.qp = pm.qp;
			mode.b64 = pm.b64;
			if (pm.boundary.len && nb < TMPL_MIME_DEPTH) {
				bounds[nb++] = xstrdup(pm.boundary.data);
				tmpl_add_boundary(cc->t, pm.boundary.data);
			}
			mr_buf_release(&pm.boundary);
		}
	}
	while (nb > 0)
		free(bounds[--nb]);
	return r;
}

struct tmpl *
tmpl_compile(const char *text, size_t len, const char *const *columns,
    size_t ncolumns, struct mr_buf *err, struct mr_buf *warn)
{
	struct tmpl_line *lines = NULL;
	struct tmpl_mime top = { false, false, MR_BUF_INIT };
	struct tmpl_cc cc;
	size_t nlines, i = 0;
	struct tmpl *t;

	t = xcalloc(1, sizeof(*t));
	t->ncols = ncolumns;
	t->used = xcalloc(ncolumns ? ncolumns : 1, sizeof(*t->used));
	t->in_body = xcalloc(ncolumns ? ncolumns : 1, sizeof(*t->in_body));
	memset(&cc, 0, sizeof(cc));
	cc.t = t;
	cc.err = err;
	cc.warn = warn;
	cc.columns = columns;
	cc.ncolumns = ncolumns;

	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
		text += 3;
		len -= 3;
	}
	nlines = tmpl_split_lines(text, len, &lines);
	if (nlines == 0 || lines[0].len == 0) {
		mr_buf_puts(err, "template does not start with a header "
		    "field (an RFC 5322 message is expected)");
		goto fail;
	}
	if (tmpl_cc_headers(&cc, lines, nlines, &i, &top, true) != 0)
		goto fail;
	if (!cc.saw_from) {
		mr_buf_puts(err, "template has no From header");
		goto fail;
	}
	if (!cc.saw_content_type) {
		/* Values may be UTF-8: say so rather than leave the reader
		 * to assume US-ASCII (RFC 2045 5.2). */
		if (!cc.saw_mime_version)
			tmpl_cc_text(&cc, "MIME-Version: 1.0\r\n", 19,
			    TMPL_ROLE_PLAIN, true);
		tmpl_cc_text(&cc, "Content-Type: text/plain; charset=UTF-8\r\n",
		    41, TMPL_ROLE_PLAIN, true);
		if (!cc.saw_cte)
			tmpl_cc_text(&cc, "Content-Transfer-Encoding: 8bit\r\n",
			    33, TMPL_ROLE_PLAIN, true);
	}
	tmpl_cc_text(&cc, "\r\n", 2, TMPL_ROLE_PLAIN, false);
	if (i < nlines)
		i++;	/* the blank line */
	if (tmpl_cc_body(&cc, lines, nlines, i, &top) != 0)
		goto fail;

	t->store = cc.store.data ? cc.store.data : xstrdup("");
	t->store_len = cc.store.len;
	t->segs = cc.segs;
	t->nsegs = cc.nsegs;
	tmpl_seg_finish(t->store, t->segs, t->nsegs);
	for (i = 0; i < t->nhdrs; i++)
		tmpl_seg_finish(t->store, t->hdrs[i].segs, t->hdrs[i].nsegs);
	t->eight_bit = !mr_is_ascii(t->store, t->store_len);
	for (i = 0; i < t->nsegs; i++)
		if (t->segs[i].kind == TMPL_SEG_TEXT)
			t->static_size += t->segs[i].len;
	free(lines);
	mr_buf_release(&top.boundary);
	return t;
fail:
	free(lines);
	mr_buf_release(&top.boundary);
	mr_buf_release(&cc.store);
	free(cc.segs);
	t->store = NULL;
	tmpl_free(&t);
	return NULL;
}

void
tmpl_free(struct tmpl **tp)
{
	struct tmpl *t = *tp;
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->nhdrs; i++)
		free(t->hdrs[i].segs);
	free(t->hdrs);
	free(t->segs);
	free(t->store);
	free(t->used);
	free(t->in_body);
	for (i = 0; i < t->nbounds; i++)
		free(t->bounds[i]);
	free(t->bounds);
	free(t->from_addr);
	free(t);
	*tp = NULL;
}

int
tmpl_check_fields(const struct tmpl *t, const struct csv_field *fields,
    size_t nfields, size_t *col_r)
{
	size_t c, b;

	for (c = 0; c < nfields && c < t->ncols; c++) {
		if (!t->in_body[c])
			continue;
		for (b = 0; b < t->nbounds; b++) {
			if (memmem(fields[c].p, fields[c].len, t->bounds[b],
			    strlen(t->bounds[b])) != NULL) {
				*col_r = c;
				return -1;
			}
		}
	}
	return 0;
}

bool
tmpl_uses_column(const struct tmpl *t, size_t col)
{
	return col < t->ncols && t->used[col];
}

const char *
tmpl_from_address(const struct tmpl *t)
{
	return t->from_addr;
}

bool
tmpl_is_8bit(const struct tmpl *t)
{
	return t->eight_bit;
}

size_t
tmpl_static_size(const struct tmpl *t)
{
	return t->static_size;
}

/* ---------------------------------------------------------------- */
/* Rendering                                                        */
/* ---------------------------------------------------------------- */

struct tmpl_scratch *
tmpl_scratch_new(void)
{
	return xcalloc(1, sizeof(struct tmpl_scratch));
}

void
tmpl_scratch_free(struct tmpl_scratch **sp)
{
	if (*sp == NULL)
		return;
	mr_buf_release(&(*sp)->hdr);
	tmpl_hbufs_release(&(*sp)->hb);
	free(*sp);
	*sp = NULL;
}

static void
tmpl_flush(struct tmpl_scratch *s)
{
	if (s->n) {
		evbuffer_add(s->out, s->stage, s->n);
		s->total += s->n;
		s->n = 0;
	}
}

static inline void
tmpl_put(struct tmpl_scratch *s, char c)
{
	if (s->n == TMPL_STAGE)
		tmpl_flush(s);
	s->stage[s->n++] = c;
}

/*
 * tmpl_emit - CRLF-form bytes to the output, one at a time: dot-stuffing
 * at the start of a line and a CRLF inserted where a line would pass
 * TMPL_LINE_MAX.  The stuffing dot counts in the column whether or not it
 * is written, so that stuffed and unstuffed renderings break alike.
 */
static void
tmpl_emit(struct tmpl_scratch *s, const char *p, size_t n)
{
	size_t i;
	char c;

	for (i = 0; i < n; i++) {
		c = p[i];
		if (c == '\r' && i + 1 < n && p[i + 1] == '\n') {
			tmpl_put(s, '\r');
			tmpl_put(s, '\n');
			s->col = 0;
			i++;
			continue;
		}
		if (s->col >= TMPL_LINE_MAX) {
			tmpl_put(s, '\r');
			tmpl_put(s, '\n');
			s->col = 0;
		}
		if (s->col == 0 && c == '.') {
			if (s->stuff)
				tmpl_put(s, '.');
			s->col++;
		}
		tmpl_put(s, c);
		s->col++;
	}
}

/* tmpl_emit_value - a body value in a plain part: newlines become CRLF. */
static void
tmpl_emit_value(struct tmpl_scratch *s, const char *p, size_t n)
{
	size_t i, run = 0;

	for (i = 0; i < n; i++) {
		if ((unsigned char)p[i] >= 0x80)
			s->eight_bit = true;
		if (p[i] != '\r' && p[i] != '\n')
			continue;
		tmpl_emit(s, p + run, i - run);
		tmpl_emit(s, "\r\n", 2);
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
			i++;
		run = i + 1;
	}
	tmpl_emit(s, p + run, n - run);
}

/*
 * tmpl_emit_qp - a value inside a quoted-printable part (RFC 2045 6.7):
 * encoded, with soft line breaks keeping lines within 76 octets, and its
 * newlines as hard line breaks.
 */
static void
tmpl_emit_qp(struct tmpl_scratch *s, const char *p, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	char enc[3];
	size_t i, k;
	unsigned char c;
	bool eol;

	for (i = 0; i < n; i++) {
		c = (unsigned char)p[i];
		if (c == '\r' || c == '\n') {
			if (c == '\r' && i + 1 < n && p[i + 1] == '\n')
				i++;
			tmpl_emit(s, "\r\n", 2);
			continue;
		}
		eol = i + 1 == n || p[i + 1] == '\r' || p[i + 1] == '\n';
		if ((c >= 33 && c <= 126 && c != '=' && c != '.') ||
		    ((c == ' ' || c == '\t') && !eol)) {
			enc[0] = (char)c;
			k = 1;
		} else {
			/* '.' is encoded too: never a lone dot line. */
			enc[0] = '=';
			enc[1] = hex[c >> 4];
			enc[2] = hex[c & 15];
			k = 3;
		}
		if (s->col + k > 75)
			tmpl_emit(s, "=\r\n", 3);
		tmpl_emit(s, enc, k);
	}
}

static void
tmpl_emit_segs(const struct tmpl *t, struct tmpl_scratch *s,
    const struct csv_field *fields, size_t nfields)
{
	const struct tmpl_seg *g;
	const struct csv_field *f;
	size_t i;

	for (i = 0; i < t->nsegs; i++) {
		g = &t->segs[i];
		switch (g->kind) {
		case TMPL_SEG_TEXT:
			if (g->len >= TMPL_REF_MIN &&
			    s->col + g->first_line <= TMPL_LINE_MAX &&
			    g->max_line <= TMPL_LINE_MAX &&
			    (s->col != 0 || t->store[g->off] != '.')) {
				tmpl_flush(s);
				evbuffer_add_reference(s->out,
				    t->store + g->off, g->len, NULL, NULL);
				s->total += g->len;
				s->col = g->has_eol ? g->last_line :
				    s->col + g->len;
			} else {
				tmpl_emit(s, t->store + g->off, g->len);
			}
			break;
		case TMPL_SEG_SLOT:
			if (g->index >= nfields)
				break;
			f = &fields[g->index];
			if (g->ctx == TMPL_CTX_QP)
				tmpl_emit_qp(s, f->p, f->len);
			else
				tmpl_emit_value(s, f->p, f->len);
			break;
		case TMPL_SEG_HEADER:
			mr_buf_reset(&s->hdr);
			tmpl_header_build(t, &t->hdrs[g->index], fields,
			    nfields, &s->hdr, &s->hb);
			tmpl_emit(s, s->hdr.data, s->hdr.len);
			break;
		}
	}
}

size_t
tmpl_render(const struct tmpl *t, struct tmpl_scratch *s,
    const struct csv_field *fields, size_t nfields,
    const struct tmpl_msg *msg, unsigned flags, struct evbuffer *out,
    bool *eight_bit_r)
{
	s->out = out;
	s->col = 0;
	s->n = 0;
	s->total = 0;
	s->stuff = (flags & TMPL_DOT_STUFF) != 0;
	s->eight_bit = t->eight_bit;
	mr_buf_reset(&s->hdr);
	mr_buf_printf(&s->hdr, "Date: %s\r\nMessage-ID: %s\r\n", msg->date,
	    msg->message_id);
	tmpl_emit(s, s->hdr.data, s->hdr.len);
	tmpl_emit_segs(t, s, fields, nfields);
	if (s->col != 0)
		tmpl_emit(s, "\r\n", 2);
	tmpl_flush(s);
	if (eight_bit_r)
		*eight_bit_r = s->eight_bit;
	return s->total;
}
