/*
 * acct.h - the accounting file (SPEC D11): one record per recipient
 * outcome, as CSV (RFC 4180, with a header row) or JSON lines.
 *
 * Columns, in this order: time, type, recipient, line, domain, mx, host,
 * attempt, code, dsn, reply, message_id, forensics.  A file that already
 * holds records is appended to without a second header.
 *
 * acct_write() may be called from any thread: records are formatted
 * outside the lock and appended to a stdio buffer under it.  Buffered
 * records reach the file on acct_flush() (the owner calls it every
 * second) and on acct_close().
 */
#ifndef MR_ACCT_H
#define MR_ACCT_H

#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "core/mr_buf.h"

enum acct_type {
	ACCT_DELIVERED,
	ACCT_DEFERRED,
	ACCT_BOUNCED,
	ACCT_REJECTED,
};

struct acct_record {
	uint64_t	 wall_ms;
	enum acct_type	 type;
	const char	*rcpt;		/* all strings borrowed; NULL = "" */
	size_t		 rcpt_len;
	unsigned	 line;
	const char	*domain;
	const char	*mx;
	const char	*host;
	unsigned	 attempt;
	unsigned	 code;		/* 0: empty column */
	const char	*dsn;
	const char	*reply;
	const char	*message_id;
	const char	*forensics;
};

struct acct;

/*
 * acct_open - open path for appending in format (CONF_ACCT_CSV or
 * CONF_ACCT_JSON).  NULL with a message in err.
 */
struct acct *acct_open(const char *path, int format, struct mr_buf *err);
/* acct_close - flush and close; returns 0 or -errno of a write error. */
int acct_close(struct acct **ap);
void acct_write(struct acct *a, const struct acct_record *r);
int acct_flush(struct acct *a);
const char *acct_type_name(enum acct_type t);

#endif
