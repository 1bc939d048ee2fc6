/*
 * route.h - static routes: mail for a domain goes to a fixed HOST:PORT
 * instead of its MX hosts (smart hosts, tests).
 *
 * A route is written DOMAIN=HOST:PORT (":PORT" optional: smtp.port).
 * DOMAIN is an exact domain, ".example.com" for every subdomain of
 * example.com (not example.com itself), or "*" for every domain.  HOST is a
 * name, an IPv4 address or a bracketed IPv6 address ([::1]:2525).  The
 * most specific route wins: exact, then the longest suffix, then "*".
 * Matching is case-insensitive.
 *
 * The table is immutable after route_table_new() and may be shared by
 * threads.  Strings in struct route are owned by the table.
 */
#ifndef MR_DNS_ROUTE_H
#define MR_DNS_ROUTE_H

#include <stdbool.h>

#include "conf/conf.h"
#include "core/mr_buf.h"

struct route {
	char		*pattern;	/* as configured, lower-cased */
	char		*host;		/* name or address, no brackets */
	unsigned	 port;
	bool		 literal;	/* host is an IP address */
};

struct route_table;

/*
 * route_table_new - parse every string in routes (each DOMAIN=HOST[:PORT]);
 * default_port applies when PORT is absent.  On a syntax error returns NULL
 * and writes a message naming the bad route into err.
 */
struct route_table *route_table_new(const struct conf_list *routes,
    unsigned default_port, struct mr_buf *err);
void route_table_free(struct route_table **tp);
/* route_match - the route for domain, or NULL (borrowed from the table). */
const struct route *route_match(const struct route_table *t,
    const char *domain);

#endif
