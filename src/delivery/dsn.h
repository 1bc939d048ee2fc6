/*
 * dsn.h - delivery status notifications (RFC 3464): the message sent
 * back to the envelope sender of relayed mail whose recipients failed
 * for good (RFC 5321 6.1: a server that accepted a message and cannot
 * deliver it must say so).  A multipart/report of three parts: a text
 * for people, the message/delivery-status fields per recipient, and the
 * original message's header (text/rfc822-headers; never the body).
 *
 * Pure: the caller supplies everything, including the time and a
 * random token for the boundary and the Message-ID.  Every text that
 * came from elsewhere (a server's reply, an address) has its control
 * characters replaced, so it cannot end a header field.
 */
#ifndef MR_DSN_H
#define MR_DSN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/mr_buf.h"

/* The most of the original header quoted; longer ones are cut at a line
 * boundary. */
#define DSN_HEADERS_MAX	(32 * 1024)
/* The most of the original that dsn_build() looks at (the header's cut
 * looks two octets past DSN_HEADERS_MAX for the blank line): a caller
 * may supply just that much. */
#define DSN_MESSAGE_MAX	(DSN_HEADERS_MAX + 2)

struct dsn_rcpt {
	const char	*addr;		/* the forward-path as given */
	const char	*status;	/* "5.1.1"; NULL or "": 5.0.0 */
	unsigned	 code;		/* the server's reply code, 0: none */
	const char	*diag;		/* its text, or our reason */
	const char	*mx;		/* the server that answered, or NULL */
};

struct dsn_report {
	const char		*hostname;	/* the reporting MTA */
	const char		*mail_from;	/* the original sender */
	const char		*queue_id;	/* ours, as told in the 250 */
	time_t			 arrival;	/* when it was accepted */
	time_t			 now;
	const char		*token;		/* random, [A-Za-z0-9] */
	const unsigned char	*message;	/* the original, for its header
						 * (DSN_MESSAGE_MAX octets of it
						 * suffice) */
	size_t			 message_len;
	const struct dsn_rcpt	*rcpts;
	size_t			 nrcpts;
};

/* dsn_build - the whole notification, CRLF line ends, appended to out. */
void dsn_build(const struct dsn_report *rep, struct mr_buf *out);

#endif
