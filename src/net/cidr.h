/*
 * cidr.h - address allow-lists: "127.0.0.0/8", "::1/128", "10.1.2.3"
 * (a whole address), matched against a peer's socket address.  An IPv4
 * peer seen as an IPv4-mapped IPv6 address matches IPv4 entries.  Pure.
 */
#ifndef MR_NET_CIDR_H
#define MR_NET_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct net_cidr {
	int	 family;	/* AF_INET or AF_INET6 */
	uint8_t	 addr[16];
	unsigned bits;
};

/* net_cidr_parse - text into *c; -1 when it is not an address/prefix. */
int net_cidr_parse(const char *text, size_t len, struct net_cidr *c);
bool net_cidr_match(const struct net_cidr *list, size_t n,
    const struct sockaddr *sa);
/* net_is_loopback - 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104. */
bool net_is_loopback(const struct sockaddr *sa);

#endif
