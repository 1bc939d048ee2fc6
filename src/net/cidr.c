/*
 * cidr.c - prefix matching of socket addresses (see cidr.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "net/cidr.h"

int
net_cidr_parse(const char *text, size_t len, struct net_cidr *c)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	unsigned long bits;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, text, len);
	buf[len] = '\0';
	memset(c, 0, sizeof(*c));
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		c->bits = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		c->bits = 128;
	} else {
		return -1;
	}
	if (slash != NULL) {
		if (*slash < '0' || *slash > '9')
			return -1;
		bits = strtoul(slash, &end, 10);
		if (*end != '\0' || bits > c->bits)
			return -1;
		c->bits = (unsigned)bits;
	}
	return 0;
}

static bool
net_prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	uint8_t mask;

	if (memcmp(a, b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

/* net_sa_bytes - the address's bytes and family; a v4-mapped v6 address
 * counts as v4. */
static int
net_sa_bytes(const struct sockaddr *sa, const uint8_t **p_r)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };

	if (sa->sa_family == AF_INET) {
		*p_r = (const uint8_t *)&((const struct sockaddr_in *)
		    (const void *)sa)->sin_addr;
		return AF_INET;
	}
	if (sa->sa_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)
		    (const void *)sa)->sin6_addr.s6_addr;

		if (memcmp(a, mapped, 12) == 0) {
			*p_r = a + 12;
			return AF_INET;
		}
		*p_r = a;
		return AF_INET6;
	}
	return -1;
}

bool
net_cidr_match(const struct net_cidr *list, size_t n,
    const struct sockaddr *sa)
{
	const uint8_t *a = NULL;
	int fam = net_sa_bytes(sa, &a);
	size_t i;

	for (i = 0; i < n; i++)
		if (list[i].family == fam &&
		    net_prefix_eq(list[i].addr, a, list[i].bits))
			return true;
	return false;
}

bool
net_is_loopback(const struct sockaddr *sa)
{
	static const uint8_t one[16] = { [15] = 1 };
	const uint8_t *a = NULL;
	int fam = net_sa_bytes(sa, &a);

	if (fam == AF_INET)
		return a[0] == 127;
	return fam == AF_INET6 && memcmp(a, one, 16) == 0;
}
