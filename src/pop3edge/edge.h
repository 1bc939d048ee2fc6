/*
 * edge.h - the POP3 edge proxy (SPEC P1-P4, P7, P10; seed 000): client
 * sessions that are answered "no mail" locally while the user's mailbox
 * is known to be empty, and relayed to the backend POP3 server otherwise.
 *
 * One struct edge runs on one event loop: its listener, its sessions, its
 * user table and its counters.  Notifications (notify.h) end a user's
 * attenuation through edge_notify().
 *
 * The session is an explicit state machine, the seed's table row by row:
 *
 *   user's entry   event             action
 *   none           USER              create entry, USER to the backend
 *   Idle           USER              +OK locally -> Authorization
 *   Authorization  PASS, locked      -ERR [IN-USE]
 *   Authorization  PASS = verifier,  terminate, lock, session timer,
 *                  mailbox known     +OK locally -> Transaction (local)
 *                  empty < n ago
 *   Authorization  PASS otherwise    USER+PASS to the backend; its +OK
 *                                    (only) sets the verifier -> Transaction
 *                                    (relayed); its -ERR is relayed
 *   Authorization  QUIT              unlock -> Idle
 *   Transaction    STAT LIST UIDL    local: +OK 0 0, empty listing, or
 *     (local)      RETR DELE TOP     -ERR no such message; NOOP RSET +OK
 *   Transaction    QUIT              local: +OK, unlock -> Idle; relayed:
 *                                    held while STAT asks the backend how
 *                                    many messages are left (0: stamp the
 *                                    mailbox empty), then QUIT relayed
 *   Transaction    session timer     the connection is closed, unlock
 */
#ifndef MR_POP3EDGE_EDGE_H
#define MR_POP3EDGE_EDGE_H

#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "core/mr_buf.h"

struct event_base;
struct evbuffer;
struct edge;

/* Counters (P10): monotonic, except the gauges marked. */
struct edge_counters {
	uint64_t	sessions;		/* client connections accepted */
	uint64_t	sessions_refused;	/* over max_sessions */
	uint64_t	checks;			/* logins asked (PASS, AUTH) */
	uint64_t	checks_local;		/* answered "no mail" locally */
	uint64_t	checks_passed;		/* sent to the backend */
	uint64_t	checks_fast_passed;	/* fast-check rule: through */
	uint64_t	checks_automated;	/* fast-check rule: regular */
	uint64_t	checks_opt_out;		/* opted-out users */
	uint64_t	backend_sessions;	/* backend connections opened */
	uint64_t	backend_errors;		/* unreachable, timed out, broken */
	uint64_t	logins_refused;		/* -ERR to a login, any cause */
	uint64_t	notifications;		/* accepted */
	uint64_t	notifications_refused;	/* malformed or unauthorized */
	uint64_t	table_evictions;	/* entries evicted when full */
	uint64_t	table_full;		/* logins with no entry to be had */
	uint64_t	sessions_active;	/* gauge */
	uint64_t	users;			/* gauge: user table entries */
};

/*
 * edge_new - a proxy on base from the [pop3_proxy] configuration (cfg is
 * borrowed for the proxy's life).  The backend address is resolved now.
 * NULL with a sentence in err.
 */
struct edge *edge_new(struct event_base *base, const struct mr_config *cfg,
    struct mr_buf *err);
/* edge_start - listen.  0, or -1 with a sentence in err. */
int edge_start(struct edge *e, struct mr_buf *err);
/* edge_listen_addr - the bound listening address (for logs and tests). */
const char *edge_listen_addr(const struct edge *e);
/* edge_listen_tls_addr - the POP3S address, "" when none. */
const char *edge_listen_tls_addr(const struct edge *e);
/* edge_stop - stop accepting, close every session (no QUIT is sent on
 * the client's behalf, so nothing is deleted). */
void edge_stop(struct edge *e);
void edge_free(struct edge **ep);

/*
 * edge_notify - new mail for mailbox: under the demand rule, the user's
 * next check goes to the backend.  Counts it.
 */
void edge_notify(struct edge *e, const char *mailbox, size_t len);
/* edge_notify_refused - count a refused notification. */
void edge_notify_refused(struct edge *e);

const struct edge_counters *edge_counters(struct edge *e);
/* edge_metrics - the counters in Prometheus text format into out. */
void edge_metrics(struct edge *e, struct evbuffer *out);
/* edge_log_counters - one key=value log line of the counters. */
void edge_log_counters(struct edge *e);

#endif
