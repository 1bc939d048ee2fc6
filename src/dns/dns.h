/*
 * dns.h - where mail for a domain goes: static routes, or MX lookups with
 * implicit MX and null MX, then the addresses (A, AAAA) of each host,
 * through c-ares on the caller's libevent loop, with a TTL cache and a
 * negative cache.
 *
 * One struct dns per event loop (thread); nothing here is thread-safe.
 * Results are immutable and reference-counted: the cache holds one
 * reference, and a caller that keeps a result past its callback takes its
 * own with dns_result_ref().
 *
 * Callbacks run on the loop, never from inside dns_lookup_mail().  After
 * dns_cancel() or dns_free() a request's callback is never called (house
 * style rule 22: an async answer finds its requester by id).
 */
#ifndef MR_DNS_H
#define MR_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "core/mr_buf.h"

struct event_base;

struct dns_addr {
	struct sockaddr_storage	ss;	/* port already set */
	socklen_t		len;
};

struct dns_host {
	char		*name;		/* MX host, route host, or the domain
					 * itself for an implicit MX */
	unsigned	 pref;		/* MX preference (0 for routes) */
	unsigned	 port;
	int		 status;	/* 0 or MR_EDNS_* for this host */
	size_t		 naddrs;	/* IPv4 first, then IPv6 */
	struct dns_addr	*addrs;
};

struct dns_result {
	/*
	 * 0: hosts[] holds at least one host with an address.
	 * MR_EDNS_NXDOMAIN, MR_EDNS_NULLMX, MR_EDNS_NOADDR (no MX and no
	 * address record): permanent.  MR_EDNS_TEMP: try again later.
	 */
	int		 status;
	char		*reason;	/* for people: "MX lookup for x: ..." */
	size_t		 nhosts;	/* preference order; ties shuffled */
	struct dns_host	*hosts;
	uint64_t	 expires_ms;	/* mr_clock_ms() time of expiry */
	uint64_t	 ttl_ms;	/* the TTL it was cached with */
	bool		 routed;	/* from a static route */
	bool		 implicit_mx;	/* no MX: the domain's own address */
	unsigned	 refs;		/* internal */
};

/* dns_mail_cb - res is borrowed for the duration of the call. */
typedef void dns_mail_cb(void *arg, uint64_t reqid,
    const struct dns_result *res);

/*
 * dns_new - a resolver on base using cfg's [dns] settings (servers, routes,
 * timeouts, TTL bounds) and smtp.port.  cfg is borrowed and must outlive
 * the resolver.  On failure returns NULL with a message in err.
 */
struct dns *dns_new(struct event_base *base, const struct mr_config *cfg,
    struct mr_buf *err);
/* dns_free - cancels every pending request without calling back. */
void dns_free(struct dns **dp);

/*
 * dns_cached_mail - an unexpired cached result for domain (a static route
 * to an IP literal is always "cached"), or NULL.  Borrowed: valid until the
 * next call into this module; take a reference to keep it.
 */
const struct dns_result *dns_cached_mail(struct dns *d, const char *domain);

/*
 * dns_lookup_mail - resolve domain afresh (bypassing, then refreshing the
 * cache); concurrent lookups of one domain share one set of queries.
 * Returns a request id (never 0) for dns_cancel().
 */
uint64_t dns_lookup_mail(struct dns *d, const char *domain, dns_mail_cb *cb,
    void *arg);
void dns_cancel(struct dns *d, uint64_t reqid);

void dns_result_ref(const struct dns_result *res);
void dns_result_unref(const struct dns_result **resp);

/*
 * dns_status_name - a result's status as a token: ok, temp, nxdomain,
 * nullmx, noaddr.
 */
const char *dns_status_name(int status);

/* dns_pending - requests in flight (for shutdown and tests). */
size_t dns_pending(const struct dns *d);

#endif
