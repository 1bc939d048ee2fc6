/*
 * fuzz_dns_parse.c - libFuzzer target for dns_parse(): any bytes, as a DNS
 * answer.  A refused packet leaves nothing allocated; an accepted one
 * holds only records of the type asked, names in lower case of at most
 * 255 octets, TTLs capped at 2^31 - 1 (RFC 2181 section 8), and parses to
 * the same answer twice.
 */
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "core/mr_log.h"
#include "dns/dns_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_check_name(const char *s)
{
	size_t n = strlen(s), i;

	MR_ASSERT(n <= 4 * 255);	/* every octet may be escaped: \DDD */
	for (i = 0; i < n; i++)
		MR_ASSERT(s[i] < 'A' || s[i] > 'Z');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_parse_answer a, b;
	size_t i;

	if (dns_parse(data, size, &a) != 0) {
		MR_ASSERT(a.qname == NULL && a.mx == NULL && a.addrs == NULL);
		return 0;
	}
	MR_ASSERT(a.qname != NULL);
	fuzz_check_name(a.qname);
	MR_ASSERT(a.rcode <= 15);
	MR_ASSERT(a.nmx == 0 || a.qtype == DNS_PARSE_TYPE_MX);
	MR_ASSERT(a.naddrs == 0 || a.qtype == DNS_PARSE_TYPE_A ||
	    a.qtype == DNS_PARSE_TYPE_AAAA);
	for (i = 0; i < a.nmx; i++) {
		fuzz_check_name(a.mx[i].host);
		MR_ASSERT(a.mx[i].pref <= 0xffff);
		MR_ASSERT(a.mx[i].ttl <= 0x7fffffffu);
	}
	for (i = 0; i < a.naddrs; i++) {
		MR_ASSERT(a.addrs[i].family == (a.qtype == DNS_PARSE_TYPE_A ?
		    AF_INET : AF_INET6));
		MR_ASSERT(a.addrs[i].ttl <= 0x7fffffffu);
	}
	MR_ASSERT(a.cname_ttl == UINT32_MAX || a.cname_ttl <= 0x7fffffffu);
	MR_ASSERT(!a.has_soa || a.negative_ttl <= 0x7fffffffu);

	MR_ASSERT(dns_parse(data, size, &b) == 0);
	MR_ASSERT(a.nmx == b.nmx && a.naddrs == b.naddrs &&
	    a.has_soa == b.has_soa && a.negative_ttl == b.negative_ttl);
	for (i = 0; i < a.nmx; i++)
		MR_ASSERT(strcmp(a.mx[i].host, b.mx[i].host) == 0);
	if (a.naddrs > 0)
		MR_ASSERT(memcmp(a.addrs, b.addrs, a.naddrs *
		    sizeof(*a.addrs)) == 0);
	dns_parse_release(&b);
	dns_parse_release(&a);
	return 0;
}
