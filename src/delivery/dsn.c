/*
 * dsn.c - delivery status notifications (see dsn.h).
 */
#include <string.h>

#include "core/mr_clock.h"
#include "delivery/dsn.h"

/* dsn_text - s with control characters (CR and LF above all) made
 * spaces, at most max bytes. */
static void
dsn_text(struct mr_buf *out, const char *s, size_t max)
{
	size_t i;

	for (i = 0; s != NULL && s[i] != '\0' && i < max; i++) {
		unsigned char c = (unsigned char)s[i];

		mr_buf_putc(out, c < 0x20 || c == 0x7f ? ' ' : (char)c);
	}
}

/* dsn_headers_len - the original's header, without the blank line,
 * cut to DSN_HEADERS_MAX at a line end. */
static size_t
dsn_headers_len(const unsigned char *m, size_t n)
{
	size_t i, cut = 0;

	for (i = 0; i < n && i < DSN_HEADERS_MAX; i++) {
		if (m[i] != '\n')
			continue;
		if (i + 1 < n && (m[i + 1] == '\n' || (m[i + 1] == '\r' &&
		    i + 2 < n && m[i + 2] == '\n')))
			return i + 1;
		cut = i + 1;
	}
	return i == n ? n : cut;
}

/* dsn_put_headers - the original header, with CRLF line ends. */
static void
dsn_put_headers(struct mr_buf *out, const unsigned char *m, size_t n)
{
	size_t i, len = dsn_headers_len(m, n);

	for (i = 0; i < len; i++) {
		if (m[i] == '\r')
			continue;
		if (m[i] == '\n')
			mr_buf_puts(out, "\r\n");
		else
			mr_buf_putc(out, (char)m[i]);
	}
	if (len > 0 && m[len - 1] != '\n')
		mr_buf_puts(out, "\r\n");
}

void
dsn_build(const struct dsn_report *rep, struct mr_buf *out)
{
	char now[64], arrival[64];
	const struct dsn_rcpt *r;
	size_t i;

	mr_rfc5322_date(rep->now, now, sizeof(now));
	mr_rfc5322_date(rep->arrival, arrival, sizeof(arrival));
	mr_buf_printf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
	    "To: <", rep->hostname);
	dsn_text(out, rep->mail_from, 512);
	mr_buf_printf(out, ">\r\nSubject: Undelivered Mail Returned to Sender"
	    "\r\nDate: %s\r\nMessage-ID: <dsn.%s@%s>\r\n"
	    "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;"
	    "\r\n\tboundary=\"%s/%s\"\r\n\r\n"
	    "This is a MIME-encapsulated message.\r\n\r\n", now, rep->token,
	    rep->hostname, rep->token, rep->hostname);

	/* For people. */
	mr_buf_printf(out, "--%s/%s\r\nContent-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
	    "This is the mail system at host %s.\r\n\r\n"
	    "Your message could not be delivered to %s of its recipients.\r\n"
	    "It will not be tried again.\r\n\r\n", rep->token, rep->hostname,
	    rep->hostname, rep->nrcpts == 1 ? "one" : "some");
	for (i = 0; i < rep->nrcpts; i++) {
		r = &rep->rcpts[i];
		mr_buf_puts(out, "<");
		dsn_text(out, r->addr, 512);
		mr_buf_puts(out, ">: ");
		if (r->mx != NULL && *r->mx) {
			mr_buf_puts(out, "host ");
			dsn_text(out, r->mx, 256);
			mr_buf_puts(out, " said: ");
		}
		if (r->code != 0)
			mr_buf_printf(out, "%u ", r->code);
		dsn_text(out, r->diag, 900);
		mr_buf_puts(out, "\r\n");
	}

	/* For programs (RFC 3464 section 2). */
	mr_buf_printf(out, "\r\n--%s/%s\r\nContent-Description: Delivery "
	    "report\r\nContent-Type: message/delivery-status\r\n\r\n"
	    "Reporting-MTA: dns; %s\r\nX-Mailroom-Queue-ID: %s\r\n"
	    "Arrival-Date: %s\r\n", rep->token, rep->hostname, rep->hostname,
	    rep->queue_id, arrival);
	for (i = 0; i < rep->nrcpts; i++) {
		r = &rep->rcpts[i];
		mr_buf_puts(out, "\r\nFinal-Recipient: rfc822; ");
		dsn_text(out, r->addr, 512);
		mr_buf_puts(out, "\r\nAction: failed\r\nStatus: ");
		dsn_text(out, r->status != NULL && *r->status ? r->status :
		    "5.0.0", 16);
		if (r->mx != NULL && *r->mx) {
			mr_buf_puts(out, "\r\nRemote-MTA: dns; ");
			dsn_text(out, r->mx, 256);
		}
		if (r->code != 0) {
			mr_buf_printf(out, "\r\nDiagnostic-Code: smtp; %u ",
			    r->code);
			dsn_text(out, r->diag, 900);
		} else {
			mr_buf_puts(out, "\r\nDiagnostic-Code: X-mailroom; ");
			dsn_text(out, r->diag, 900);
		}
		mr_buf_printf(out, "\r\nLast-Attempt-Date: %s\r\n", now);
	}

	/* What was sent, its header only. */
	mr_buf_printf(out, "\r\n--%s/%s\r\nContent-Description: Undelivered "
	    "Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n",
	    rep->token, rep->hostname);
	dsn_put_headers(out, rep->message, rep->message_len);
	mr_buf_printf(out, "\r\n--%s/%s--\r\n", rep->token, rep->hostname);
}
