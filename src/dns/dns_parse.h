/*
 * dns_parse.h - the answer to one DNS query (RFC 1035 section 4) as data:
 * the MX, A or AAAA records of the name asked (after following CNAMEs),
 * each with its TTL, and the negative-caching TTL of RFC 2308 section 5
 * from an SOA record in the authority section.
 *
 * Pure: no I/O, no globals, no logging; the packet is only read.  Names
 * are expanded with ares_expand_name() (compression pointers, loops and
 * escapes handled there) and returned lower-cased, without the final dot;
 * the root name is "".  A TTL with its top bit set counts as 0 (RFC 2181
 * section 8).  Records of another class than IN, of other types, or owned
 * by names outside the CNAME chain are skipped; the additional section is
 * not read.
 *
 * Ownership: dns_parse() fills *ans_r, which then owns its strings and
 * arrays; dns_parse_release() frees them.  On error nothing stays
 * allocated.  Tested by tests/unit/test_dns_parse.c and fuzzed by
 * tests/fuzz/fuzz_dns_parse.c.
 *
 * Errors: dns_parse() returns 0, or MR_EINVAL_INPUT for a packet that is
 * truncated, not a response, does not hold exactly one question, or has a
 * record whose data does not match its type and length.
 */
#ifndef MR_DNS_PARSE_H
#define MR_DNS_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_PARSE_TYPE_A	1
#define DNS_PARSE_TYPE_CNAME	5
#define DNS_PARSE_TYPE_SOA	6
#define DNS_PARSE_TYPE_MX	15
#define DNS_PARSE_TYPE_AAAA	28

#define DNS_PARSE_RCODE_NOERROR		0
#define DNS_PARSE_RCODE_SERVFAIL	2
#define DNS_PARSE_RCODE_NXDOMAIN	3
#define DNS_PARSE_RCODE_REFUSED		5

/* DNS_PARSE_MAX_CNAME - longest CNAME chain followed. */
#define DNS_PARSE_MAX_CNAME	8

struct dns_parse_mx {
	char		*host;		/* owned; "" is the root (null MX) */
	unsigned	 pref;
	uint32_t	 ttl;
};

struct dns_parse_addr {
	int		 family;	/* AF_INET or AF_INET6 */
	unsigned char	 addr[16];	/* 4 or 16 bytes used */
	uint32_t	 ttl;
};

struct dns_parse_answer {
	unsigned		 rcode;		/* header RCODE */
	char			*qname;		/* owned: the question's name */
	unsigned		 qtype;
	size_t			 nmx;		/* when qtype is MX */
	struct dns_parse_mx	*mx;		/* owned, answer order */
	size_t			 naddrs;	/* when qtype is A or AAAA */
	struct dns_parse_addr	*addrs;		/* owned, answer order */
	uint32_t		 cname_ttl;	/* lowest TTL of the CNAMEs
						 * followed; UINT32_MAX: none */
	bool			 has_soa;
	uint32_t		 negative_ttl;	/* min(SOA TTL, SOA MINIMUM) */
};

/* dns_parse - parse len bytes at buf (borrowed) into *ans_r. */
int dns_parse(const unsigned char *buf, size_t len,
    struct dns_parse_answer *ans_r);
void dns_parse_release(struct dns_parse_answer *ans);

#endif
