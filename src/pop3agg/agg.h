/*
 * agg.h - the aggregating POP3 proxy (SPEC A2-A6; seed 002): a user logs
 * in once, against the registry (registry.h); the proxy logs in to each
 * of the user's backend accounts in parallel (pop3c.h), and presents one
 * mailbox made of all of theirs.
 *
 * The session is an explicit state machine:
 *
 *   state      event                      action
 *   AUTH       USER/PASS, APOP,           registry login on its worker;
 *              AUTH PLAIN                 -> LOGIN
 *   LOGIN      registry: wrong            -ERR after a delay that grows
 *                                         with the client address's
 *                                         failures -> AUTH (closed after
 *                                         max_auth_failures)
 *   LOGIN      registry: right            every account: resolve,
 *                                         connect, CAPA, USER, PASS,
 *                                         UIDL, LIST -> FANOUT
 *   FANOUT     every account ready or     the consolidated listing
 *              failed, or the deadline    (failed accounts are absent);
 *                                         +OK -> TRANSACTION
 *   TRANS      STAT LIST UIDL NOOP        from the listing, locally
 *              DELE RSET
 *   TRANS      RETR TOP                   to the owning backend, its
 *                                         body streamed -> RETR -> TRANS
 *   TRANS      QUIT                       each backend: its DELEs, then
 *                                         QUIT -> UPDATE
 *   UPDATE     every backend answered     +OK, or -ERR when some
 *              or failed                  deletions did not happen; the
 *                                         accounting record; close
 *   any        client gone               backends closed without QUIT:
 *                                         nothing is deleted (RFC 1939 6)
 *
 * Numbering is stable for the session: accounts in registry id order,
 * each account's messages in its own order.  A UIDL is the account's id,
 * a ".", and the backend's UIDL (hashed when that would pass RFC 1939's
 * 70 octets), so UIDLs stay unique across accounts.
 *
 * Further per-session services (A6) plug in through struct agg_service:
 * the accounting file is one.
 */
#ifndef MR_POP3AGG_AGG_H
#define MR_POP3AGG_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "core/mr_buf.h"

struct event_base;
struct evbuffer;
struct registry;
struct agg;

/* One backend account's part in a finished session. */
struct agg_backend_result {
	int64_t		 account;	/* registry id */
	const char	*host;
	unsigned	 port;
	bool		 reached;	/* logged in and listed */
	const char	*why;		/* when not reached, or it broke */
	uint32_t	 messages;	/* listed */
	uint32_t	 deletions;	/* asked at QUIT */
	uint32_t	 deleted;	/* confirmed by the backend's QUIT */
};

/* The accounting record of one session (A6). */
struct agg_record {
	const char			*user;		/* "" before login */
	const char			*client;	/* "addr:port" */
	bool				 logged_in;
	bool				 quit;		/* QUIT, not a drop */
	const struct agg_backend_result	*backends;
	size_t				 nbackends;
	uint64_t			 messages;	/* in the listing */
	uint64_t			 retrieved;	/* RETR completed */
	uint64_t			 retrieved_bytes;
	uint64_t			 deletions;	/* asked */
	uint64_t			 deleted;	/* applied */
	int64_t				 started;	/* unix ms */
	uint64_t			 duration_ms;
};

/*
 * struct agg_service - a per-session service.  Every hook is optional
 * and runs on the loop; arg is the service's own.
 */
struct agg_service {
	const char	*name;
	void		*arg;
	/* login: the registry accepted user from client. */
	void		(*login)(void *arg, const char *user,
			    const char *client);
	/* retrieved: a message went to the client in full. */
	void		(*retrieved)(void *arg, const char *user,
			    int64_t account, uint64_t bytes);
	/* session_end: the record, borrowed for the call. */
	void		(*session_end)(void *arg, const struct agg_record *r);
	/* free: the proxy is going away. */
	void		(*free)(void *arg);
};

struct agg_counters {
	uint64_t	sessions;
	uint64_t	sessions_refused;
	uint64_t	sessions_active;	/* gauge */
	uint64_t	logins;
	uint64_t	logins_failed;
	uint64_t	backends_reached;
	uint64_t	backends_failed;
	uint64_t	messages_retrieved;
	uint64_t	bytes_retrieved;
	uint64_t	deletions_applied;
	uint64_t	deletions_failed;
};

/*
 * agg_new - an aggregating proxy on base from the [pop3_proxy]
 * configuration, logging users in against reg (both borrowed for the
 * proxy's life).  NULL with a sentence in err.
 */
struct agg *agg_new(struct event_base *base, const struct mr_config *cfg,
    struct registry *reg, struct mr_buf *err);
/* agg_add_service - copied; up to 8 services. */
int agg_add_service(struct agg *a, const struct agg_service *svc);
/* agg_start - listen (and serve /metrics on http_listen).  0, or -1 with
 * a sentence in err. */
int agg_start(struct agg *a, struct mr_buf *err);
const char *agg_listen_addr(const struct agg *a);
const char *agg_listen_tls_addr(const struct agg *a);
const char *agg_http_addr(const struct agg *a);
const struct agg_counters *agg_counters(const struct agg *a);
/* agg_metrics - the counters in Prometheus text format. */
void agg_metrics(const struct agg *a, struct evbuffer *out);
/* agg_stop - stop listening, drop every session (no QUIT to backends,
 * so nothing is deleted). */
void agg_stop(struct agg *a);
void agg_free(struct agg **ap);

/*
 * agg_accounting_service - the accounting file as a service: one JSON
 * line per session.  NULL with a sentence in err when path cannot be
 * opened for appending.
 */
int agg_accounting_service(const char *path, struct agg_service *out,
    struct mr_buf *err);

#endif
