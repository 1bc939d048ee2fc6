/*
 * inject.h - SMTP injection, a role of `mailroom daemon` (SPEC D17, D8):
 * an ESMTP listener (src/smtps) whose messages go to the spool
 * (src/spool) and, once on disk, through the relay's delivery loops (the
 * same engines, shaper and queues as campaigns).
 *
 * What is written, and when (the promise behind a 250):
 *  1. At the client's final dot the message, with a Received header
 *     added and its envelope, is appended to the spool (page cache).
 *  2. The spool's sync thread fdatasyncs; one sync covers every message
 *     appended before it (group commit).  Only then is the client
 *     answered "250 2.0.0 queued as ID", and the recipients handed to the
 *     delivery loops.  An append that fails (disk full) is answered 452
 *     4.3.1 and leaves nothing behind.
 *  3. Each recipient that reaches a final state (delivered, bounced) is
 *     marked done in the spool; a message leaves the spool when its last
 *     recipient is final.  A crash loses at most the last second of done
 *     marks: those recipients are sent again, never lost.
 *  4. At start the spool is recovered and every recipient not final is
 *     queued again.
 *
 * Relay policy: clients in inject.trusted_networks may relay; everyone
 * else must AUTH (PLAIN or LOGIN, over TLS unless inject.plaintext_auth)
 * as a sending account of the store with a password.  Failed AUTH is
 * delayed per client address and ends the session after
 * inject.max_auth_failures.
 *
 * Backpressure (D8): while the recipients not yet final exceed
 * inject.backlog_max (or would take longer than inject.max_drain_time at
 * the current rate), new sessions get 421 4.3.2 and MAIL gets 452 4.3.1;
 * below inject.backlog_resume percent of it they are served again.  Each
 * change is logged; inject_status() shows the state.
 *
 * Threads: the listener's loop, one per delivery loop (engine), the
 * spool's sync thread, and an AUTH checker (PBKDF2 is slow).
 */
#ifndef MR_INJECT_H
#define MR_INJECT_H

#include <stdio.h>

#include "conf/conf.h"
#include "core/mr_buf.h"

struct injector;

struct shaper;

/*
 * inject_open - the spool (recovered), the relay, the delivery loops and
 * the listener, per cfg (borrowed, must outlive it).  The relay shapes
 * with shaper (borrowed, shared with the daemon's campaigns; it must
 * outlive the injector), or its own when NULL.  NULL with a message in
 * err and a sysexits code in *ex_r.
 */
struct injector *inject_open(const struct mr_config *cfg,
    struct shaper *shaper, struct mr_buf *err, int *ex_r);
/* inject_start - run the listener and the delivery loops on threads. */
int inject_start(struct injector *in, struct mr_buf *err);
/* inject_status - "key: value" lines: listener, backlog, thresholds. */
void inject_status(struct injector *in, struct mr_buf *out);
/* inject_close - stop accepting, finish what is in flight, close; the
 * spool keeps what is not final for the next start. */
void inject_close(struct injector **inp);

#endif
