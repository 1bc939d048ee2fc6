/*
 * reply.h - SMTP replies (RFC 5321 4.2): a pure, resumable parser fed one
 * line at a time, enhanced status codes (RFC 3463, RFC 2034) and EHLO
 * capabilities.
 *
 * A reply is one or more lines "ddd-text" ending with "ddd text" (or a
 * bare "ddd").  The parser owns the reply it assembles; it is reset by the
 * next line after a complete reply.  Pure: no I/O, no allocation beyond
 * the reply's text buffer.  Not thread-safe; one parser per connection.
 */
#ifndef MR_SMTP_REPLY_H
#define MR_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "core/mr_buf.h"

#define SMTP_REPLY_TEXT_MAX	4096	/* longer texts are cut */
#define SMTP_REPLY_LINES_MAX	128	/* more lines make a reply invalid */

struct smtp_reply {
	int		code;		/* 200..599 */
	char		esc[16];	/* "5.1.1", or "" when absent */
	unsigned	nlines;
	struct mr_buf	text;		/* lines' texts joined with '\n' */
};

enum smtp_reply_status {
	SMTP_REPLY_DONE,	/* the reply is complete */
	SMTP_REPLY_MORE,	/* a continuation line: feed the next one */
	SMTP_REPLY_BAD,		/* not an SMTP reply line */
};

/* SMTP EHLO capabilities that the client uses. */
enum smtp_cap {
	SMTP_CAP_PIPELINING = 1u << 0,
	SMTP_CAP_SIZE = 1u << 1,
	SMTP_CAP_8BITMIME = 1u << 2,
	SMTP_CAP_ENHANCEDSTATUSCODES = 1u << 3,
	SMTP_CAP_STARTTLS = 1u << 4,
	SMTP_CAP_SMTPUTF8 = 1u << 5,
	SMTP_CAP_DSN = 1u << 6,
	SMTP_CAP_CHUNKING = 1u << 7,
};

void smtp_reply_init(struct smtp_reply *r);
void smtp_reply_release(struct smtp_reply *r);
/*
 * smtp_reply_feed - one line (no CRLF).  After SMTP_REPLY_DONE the reply
 * is in r until the next call; after SMTP_REPLY_BAD r is undefined and the
 * connection should be dropped.
 */
enum smtp_reply_status smtp_reply_feed(struct smtp_reply *r, const char *line,
    size_t len);
/* smtp_reply_class - 2, 3, 4 or 5. */
int smtp_reply_class(const struct smtp_reply *r);
/*
 * smtp_reply_oneline - the text as one line: lines joined with " / ", at
 * most max bytes (cut with "..."), written to out (reset first).  Control
 * characters become spaces and bytes that are not UTF-8 become '?'.
 */
void smtp_reply_oneline(const struct smtp_reply *r, struct mr_buf *out,
    size_t max);
/*
 * smtp_ehlo_caps - the capabilities of a 250 reply to EHLO; *size_r is the
 * SIZE limit (0: none given).
 */
unsigned smtp_ehlo_caps(const struct smtp_reply *r, unsigned long *size_r);
/*
 * smtp_esc_parse - an enhanced status code "c.sss.ddd" at p; returns its
 * length (0 if none) and copies it to out (16 bytes).
 */
size_t smtp_esc_parse(const char *p, size_t n, char *out);

#endif
