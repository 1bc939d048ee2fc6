/*
 * reply.c - parse SMTP replies line by line.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/mr_log.h"
#include "core/mr_utf8.h"
#include "smtp/reply.h"

void
smtp_reply_init(struct smtp_reply *r)
{
	memset(r, 0, sizeof(*r));
}

void
smtp_reply_release(struct smtp_reply *r)
{
	mr_buf_release(&r->text);
	memset(r, 0, sizeof(*r));
}

size_t
smtp_esc_parse(const char *p, size_t n, char *out)
{
	size_t i = 0, k, digits;

	/* class "." subject "." detail: 1 digit, 1-3 digits, 1-3 digits. */
	if (n < 5 || (p[0] != '2' && p[0] != '4' && p[0] != '5') ||
	    p[1] != '.')
		return 0;
	i = 2;
	for (k = 0; k < 2; k++) {
		digits = 0;
		while (i < n && isdigit((unsigned char)p[i]) && digits < 4) {
			i++;
			digits++;
		}
		if (digits == 0 || digits > 3)
			return 0;
		if (k == 0) {
			if (i >= n || p[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && p[i] != ' ' && p[i] != '\t')
		return 0;
	memcpy(out, p, i);
	out[i] = '\0';
	return i;
}

enum smtp_reply_status
smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len)
{
	int code;
	bool last;
	const char *text;
	size_t tlen;

	if (len < 3 || !isdigit((unsigned char)line[0]) ||
	    !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]))
		return SMTP_REPLY_BAD;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (code < 200 || code > 599)
		return SMTP_REPLY_BAD;
	if (len == 3) {
		last = true;
	} else if (line[3] == ' ') {
		last = true;
	} else if (line[3] == '-') {
		last = false;
	} else {
		return SMTP_REPLY_BAD;
	}
	if (r->nlines == 0) {
		r->code = code;
		r->esc[0] = '\0';
		mr_buf_reset(&r->text);
	} else if (code != r->code) {
		return SMTP_REPLY_BAD;
	}
	if (++r->nlines > SMTP_REPLY_LINES_MAX)
		return SMTP_REPLY_BAD;
	text = len > 4 ? line + 4 : "";
	tlen = len > 4 ? len - 4 : 0;
	if (r->nlines == 1)
		smtp_esc_parse(text, tlen, r->esc);
	if (r->text.len < SMTP_REPLY_TEXT_MAX) {
		if (r->nlines > 1)
			mr_buf_putc(&r->text, '\n');
		if (tlen > SMTP_REPLY_TEXT_MAX - r->text.len)
			tlen = SMTP_REPLY_TEXT_MAX - r->text.len;
		mr_buf_append(&r->text, text, tlen);
	}
	if (!last)
		return SMTP_REPLY_MORE;
	r->nlines = 0;	/* the next line starts a new reply */
	return SMTP_REPLY_DONE;
}

int
smtp_reply_class(const struct smtp_reply *r)
{
	return r->code / 100;
}

/* smtp_reply_utf8_len - the length of a sequence led by c, or 0. */
static size_t
smtp_reply_utf8_len(unsigned char c)
{
	if (c >= 0xc2 && c <= 0xdf)
		return 2;
	if (c >= 0xe0 && c <= 0xef)
		return 3;
	if (c >= 0xf0 && c <= 0xf4)
		return 4;
	return 0;
}

void
smtp_reply_oneline(const struct smtp_reply *r, struct mr_buf *out,
    size_t max)
{
	size_t i, n;
	char c;

	mr_buf_reset(out);
	for (i = 0; i < r->text.len; i++) {
		if (out->len + 3 >= max) {
			mr_buf_puts(out, "...");
			return;
		}
		c = r->text.data[i];
		if (c == '\n') {
			mr_buf_puts(out, " / ");
		} else if ((unsigned char)c < ' ' || c == 0x7f) {
			mr_buf_putc(out, ' ');
		} else if ((unsigned char)c < 0x80) {
			mr_buf_putc(out, c);
		} else {
			/* Servers send any bytes: keep whole UTF-8
			 * characters, make the rest '?', so that what we
			 * write (JSON, logs) is valid UTF-8. */
			n = smtp_reply_utf8_len((unsigned char)c);
			if (n > 0 && i + n <= r->text.len &&
			    mr_utf8_valid(r->text.data + i, n, NULL)) {
				mr_buf_append(out, r->text.data + i, n);
				i += n - 1;
			} else {
				mr_buf_putc(out, '?');
			}
		}
	}
}

unsigned
smtp_ehlo_caps(const struct smtp_reply *r, unsigned long *size_r)
{
	static const struct {
		const char	*kw;
		unsigned	 bit;
	} kws[] = {
		{ "PIPELINING", SMTP_CAP_PIPELINING },
		{ "SIZE", SMTP_CAP_SIZE },
		{ "8BITMIME", SMTP_CAP_8BITMIME },
		{ "ENHANCEDSTATUSCODES", SMTP_CAP_ENHANCEDSTATUSCODES },
		{ "STARTTLS", SMTP_CAP_STARTTLS },
		{ "SMTPUTF8", SMTP_CAP_SMTPUTF8 },
		{ "DSN", SMTP_CAP_DSN },
		{ "CHUNKING", SMTP_CAP_CHUNKING },
	};
	const char *p = mr_buf_cstr(&r->text), *e, *line;
	unsigned caps = 0;
	size_t i, kl, ll;
	bool first = true;

	*size_r = 0;
	while (*p) {
		line = p;
		e = strchr(p, '\n');
		ll = e ? (size_t)(e - p) : strlen(p);
		p = e ? e + 1 : p + ll;
		if (first) {
			first = false;	/* the greeting line: a host name */
			continue;
		}
		for (i = 0; i < sizeof(kws) / sizeof(kws[0]); i++) {
			kl = strlen(kws[i].kw);
			if (ll < kl || strncasecmp(line, kws[i].kw, kl) != 0 ||
			    (ll > kl && line[kl] != ' '))
				continue;
			caps |= kws[i].bit;
			if (kws[i].bit == SMTP_CAP_SIZE && ll > kl + 1)
				*size_r = strtoul(line + kl + 1, NULL, 10);
		}
	}
	return caps;
}
