/*
 * acct.h - the accounting file (SPEC D11): one record per recipient
 * outcome, as CSV (RFC 4180, with a header row) or JSON lines.
 *
 * Columns, in this order: time, type, recipient, line, domain, mx, host,
 * attempt, code, dsn, reply, message_id, forensics.  A file that already
 * holds records is appended to without a second header (a resumed
 * campaign goes on in the same file).
 *
 * Records are formatted into the caller's buffer (acct_format) and written
 * with acct_append(), one write(2) on a file opened O_APPEND: a batch
 * never interleaves with another thread's, needs no lock, and is in the
 * page cache when the call returns, so a killed process loses no record
 * it appended (the recovery journal relies on that: an outcome is
 * accounted before it is journalled).  A process killed inside a write
 * can leave a torn last line: acct_open() cuts it off (its recipient was
 * not yet journalled, and is sent again).
 */
#ifndef MR_ACCT_H
#define MR_ACCT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "core/mr_buf.h"

enum acct_type {
	ACCT_DELIVERED,
	ACCT_DEFERRED,
	ACCT_BOUNCED,
	ACCT_REJECTED,
	ACCT_BACKOFF,		/* a destination's limits were cut (D7) */
};

struct acct_record {
	uint64_t	 wall_ms;	/* 0: now */
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
/* acct_close - returns 0 or the first write error (-errno). */
int acct_close(struct acct **ap);
/* acct_format - append r as one line to out. */
void acct_format(const struct acct *a, const struct acct_record *r,
    struct mr_buf *out);
/* acct_append - write out[0..n) (whole lines); thread-safe. */
void acct_append(struct acct *a, const char *p, size_t n);
/* acct_write - acct_format() and acct_append() of one record. */
void acct_write(struct acct *a, const struct acct_record *r);
/* acct_error - the first write error so far (-errno) or 0. */
int acct_error(const struct acct *a);
int acct_sync(struct acct *a);
const char *acct_type_name(enum acct_type t);

/* acct_final_cb - a delivered or bounced record: its recipient, as
 * written (borrowed for the call). */
typedef void acct_final_cb(void *arg, const char *rcpt, size_t len,
    bool bounced);

/*
 * acct_scan_finals - read the accounting file at path (in format) and call
 * cb for each delivered or bounced record: after a crash, the outcomes
 * that reached the file but not the journal.  Returns 0, or -errno when
 * the file cannot be read (a missing file is no record: 0).
 */
int acct_scan_finals(const char *path, int format, acct_final_cb *cb,
    void *arg);

#endif
