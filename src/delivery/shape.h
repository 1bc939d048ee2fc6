/*
 * shape.h - traffic shaping per destination (SPEC D7; D3's grouping by
 * MX).  A destination is what one set of limits applies to: the MX host
 * set of a domain (with shaping.group_by_mx, domains whose MX sets are the
 * same share it, as KumoMTA's "site" does), or the domain itself, times
 * the local source address the connections come from (shaping.source).
 *
 * Each destination has configured caps (smtp.max_connections,
 * smtp.max_messages_per_connection, shaping.max_message_rate,
 * max_messages_per_hour, max_connection_rate; overridden by the first
 * [destination PATTERN] matching the domain or an MX name) and, when
 * adaptive, a controller that moves within them:
 *
 *   connections  start at initial_connections; +1 per positive and fast
 *                transaction until the first cut (slow start), then
 *                +1/limit per such transaction; halved (at least 1) on a
 *                connection refused, timed out or answered 421 before any
 *                message (the server wants fewer connections).
 *   rate         none at first; a deferral that says "slow down" (450,
 *                451, or 4.7.x other than a 421) sets it to 85 % of the
 *                rate the destination was accepting (counted over the
 *                last second), or halves it;
 *                the bucket holds a tenth of a second's worth, so no
 *                second ever carries more than 0.85 * 1.1 of that rate.
 *   per session  a 421 after n messages on one connection teaches the
 *                destination "n per connection".
 *   growth       none for shaping.probe_interval after a cut; then the
 *                rate grows 10 % per interval without throttling.
 *   rules        a reply matching a response rule throttles (as above),
 *                backs off (nothing new for a while) or suspends (that,
 *                and idle connections are closed).
 *
 * Every change of a destination's limits is logged with its reason and
 * reported to the change callback (the accounting file's "backoff"
 * records).  A slow or failing destination only ever limits itself: the
 * engines ask before each new connection and each transaction, and
 * nothing waits on a destination that says no.
 *
 * Thread-safety: a shaper is shared by the delivery loops of a campaign;
 * each destination has its own mutex, held for a few arithmetic
 * operations.  Destinations live as long as the shaper.
 */
#ifndef MR_SHAPE_H
#define MR_SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

struct shaper;
struct shape_dest;

/* A change of a destination's limits, for the accounting file. */
struct shape_change {
	const char	*dest;		/* destination name */
	const char	*source;	/* local address, or "" */
	const char	*what;		/* "connections", "rate", ... */
	const char	*before;	/* e.g. "8", "unlimited" */
	const char	*after;
	const char	*reason;	/* the reply or event that caused it */
	unsigned	 code;		/* its SMTP code, 0 for none */
	const char	*dsn;		/* its enhanced code, or "" */
};

/* shape_change_cb - called with the destination's lock held: copy what
 * is needed and return; never call back into the shaper. */
typedef void shape_change_cb(void *arg, const struct shape_change *ch);

/* shape_acct_cb - a change callback writing a "backoff" record to the
 * accounting file arg (a struct acct *, or NULL for none). */
shape_change_cb shape_acct_cb;

/*
 * shaper_new - a shaper for cfg (borrowed; must outlive it).  NULL with a
 * message in err when a rule does not compile or a source address is not
 * an address.
 */
struct shaper *shaper_new(const struct mr_config *cfg, shape_change_cb *cb,
    void *cb_arg, struct mr_buf *err);
void shaper_free(struct shaper **shp);
/*
 * shaper_subscribe - cb(arg) hears of every change as well (a campaign
 * sharing the daemon's shaper, for its accounting file); false when
 * SHAPE_SUBS_MAX listen already.  shaper_unsubscribe() before arg goes.
 */
bool shaper_subscribe(struct shaper *sh, shape_change_cb *cb, void *arg);
void shaper_unsubscribe(struct shaper *sh, shape_change_cb *cb, void *arg);

/*
 * Source pools ([pool NAME] sections): pool 0 is shaping.source; a
 * campaign's or an account's is shaper_pool_of(conf_pool_for(...)).  A
 * pool's sources are indices into the shaper's source table: an address
 * named by two pools is one source, with one set of limits.
 */
unsigned shaper_pool_of(const struct shaper *sh, const struct conf_pool *pl);
/* shaper_pool_named - pool NAME of the shaper's configuration (NULL or
 * "": 0, shaping.source), or -1 when it has none of that name. */
int shaper_pool_named(const struct shaper *sh, const char *name);
const char *shaper_pool_name(const struct shaper *sh, unsigned pool);
unsigned shaper_pool_nsources(const struct shaper *sh, unsigned pool);
unsigned shaper_pool_source(const struct shaper *sh, unsigned pool,
    unsigned i);
/* shaper_source - source i's address, or NULL for the system's choice. */
const struct sockaddr *shaper_source(const struct shaper *sh, unsigned i,
    unsigned *len_r);

/*
 * shaper_dest - the destination of a domain whose MX hosts (or static
 * route target) are mx[0..nmx), for source src; made on first use.
 * Borrowed for the shaper's life.
 */
struct shape_dest *shaper_dest(struct shaper *sh, const char *domain,
    const char *const *mx, size_t nmx, unsigned src);
const char *shape_dest_name(const struct shape_dest *d);

/*
 * shape_conn_acquire - may a new connection be opened now?  On yes the
 * connection is counted (shape_conn_release() when it closes).  On no,
 * *wake_r is the monotonic ms at which asking again makes sense (or 0
 * when only a closing connection can change the answer).
 */
bool shape_conn_acquire(struct shape_dest *d, uint64_t now, uint64_t *wake_r);
void shape_conn_release(struct shape_dest *d);
/* shape_contended - was a connection refused for lack of room in the
 * last second?  An idle connection then makes room. */
bool shape_contended(struct shape_dest *d, uint64_t now);

/*
 * shape_take - recipients that may be sent now, at most want (0 with
 * *wake_r as above).  shape_give_back() returns what was not used.
 */
unsigned shape_take(struct shape_dest *d, uint64_t now, unsigned want,
    uint64_t *wake_r);
void shape_give_back(struct shape_dest *d, unsigned n);

/* shape_per_connection - transactions one connection may carry (0: no
 * limit of the destination's own). */
unsigned shape_per_connection(struct shape_dest *d);
/* shape_suspended - a suspend rule holds the destination: close idle
 * connections. */
bool shape_suspended(struct shape_dest *d, uint64_t now);

/*
 * shape_txn - the outcome of one transaction: ok recipients accepted,
 * deferred ones refused temporarily (with the first such reply), after
 * latency_ms from the first command to the last reply.
 */
void shape_txn(struct shape_dest *d, uint64_t now, unsigned ok,
    unsigned deferred, uint64_t latency_ms, unsigned code, const char *dsn,
    const char *text);
/* shape_reply - any other reply worth matching against the rules (the
 * greeting, a refusal at MAIL); permanent ones included. */
void shape_reply(struct shape_dest *d, uint64_t now, unsigned code,
    const char *dsn, const char *text);

/*
 * shape_conn_end - a connection ended: usable says whether it reached
 * the ready state, delivered how many transactions it carried, code and
 * text the reply that ended it (421) or 0, timed_out whether a timeout or
 * a refused connect did.
 */
void shape_conn_end(struct shape_dest *d, uint64_t now, bool usable,
    unsigned delivered, unsigned code, const char *dsn, const char *text,
    bool failed);

/* What `mailroom campaign show` and logs print about a destination. */
struct shape_status {
	char		 name[160];
	char		 source[64];
	unsigned	 connections;	/* open now */
	double		 conn_limit;
	unsigned	 max_connections;
	double		 rate;		/* per second, 0: none */
	unsigned	 per_connection;	/* 0: none */
	uint64_t	 paused_ms;	/* left of a backoff or suspend */
	uint64_t	 cuts;
	double		 accepted_rate;	/* estimate, per second */
};

/* shaper_status - up to max destinations' status; returns how many
 * destinations there are. */
size_t shaper_status(struct shaper *sh, uint64_t now, struct shape_status *st,
    size_t max);
/* shaper_status_text - "destinations: N" and a "destination: ..." line
 * for each of the first max, appended to out (summaries, status). */
void shaper_status_text(struct shaper *sh, uint64_t now, size_t max,
    struct mr_buf *out);

#endif
