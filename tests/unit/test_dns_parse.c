/*
 * test_dns_parse.c - dns_parse() on hand-built answer packets: MX records
 * with compression pointers, several MX, null MX, CNAME chains, A and
 * AAAA, the SOA negative TTL of RFC 2308, and malformed packets (every
 * truncation, pointer loops, lying counts and lengths) refused safely.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "core/mr_err.h"
#include "dns/dns_parse.h"

#define QNAME_OFF	12	/* the question's name, for pointers */

struct test_pkt {
	unsigned char	b[2048];
	size_t		n;
};

static void
test_put8(struct test_pkt *p, unsigned v)
{
	assert_true(p->n < sizeof(p->b));
	p->b[p->n++] = (unsigned char)v;
}

static void
test_put16(struct test_pkt *p, unsigned v)
{
	test_put8(p, (v >> 8) & 0xff);
	test_put8(p, v & 0xff);
}

static void
test_put32(struct test_pkt *p, uint32_t v)
{
	test_put16(p, v >> 16);
	test_put16(p, v & 0xffff);
}

/* test_put_labels - "a.b" as labels; no terminator (add 0 or a pointer). */
static void
test_put_labels(struct test_pkt *p, const char *name)
{
	const char *dot;
	size_t n;

	while (*name != '\0') {
		dot = strchr(name, '.');
		n = dot != NULL ? (size_t)(dot - name) : strlen(name);
		test_put8(p, (unsigned)n);
		assert_true(p->n + n <= sizeof(p->b));
		memcpy(p->b + p->n, name, n);
		p->n += n;
		name += n;
		if (*name == '.')
			name++;
	}
}

static void
test_put_name(struct test_pkt *p, const char *name)
{
	test_put_labels(p, name);
	test_put8(p, 0);
}

static void
test_put_ptr(struct test_pkt *p, size_t off)
{
	test_put16(p, 0xc000 | (unsigned)off);
}

/* test_header - a response (QR) with rcode and the section counts. */
static void
test_header(struct test_pkt *p, unsigned rcode, unsigned qd, unsigned an,
    unsigned ns, unsigned ar)
{
	p->n = 0;
	test_put16(p, 0x1234);
	test_put16(p, 0x8180 | rcode);	/* QR RD RA */
	test_put16(p, qd);
	test_put16(p, an);
	test_put16(p, ns);
	test_put16(p, ar);
}

static void
test_question(struct test_pkt *p, const char *name, unsigned type)
{
	test_put_name(p, name);
	test_put16(p, type);
	test_put16(p, 1);
}

/* test_rr_start - type, class IN, ttl and a place for RDLENGTH. */
static size_t
test_rr_start(struct test_pkt *p, unsigned type, uint32_t ttl)
{
	size_t at;

	test_put16(p, type);
	test_put16(p, 1);
	test_put32(p, ttl);
	at = p->n;
	test_put16(p, 0);
	return at;
}

static void
test_rr_end(struct test_pkt *p, size_t at)
{
	size_t len = p->n - at - 2;

	p->b[at] = (unsigned char)(len >> 8);
	p->b[at + 1] = (unsigned char)(len & 0xff);
}

/* test_mx_ptr - owner: pointer to the question; exchange: labels + ptr. */
static void
test_mx_ptr(struct test_pkt *p, unsigned pref, uint32_t ttl,
    const char *label)
{
	size_t at;

	test_put_ptr(p, QNAME_OFF);
	at = test_rr_start(p, DNS_PARSE_TYPE_MX, ttl);
	test_put16(p, pref);
	test_put_labels(p, label);
	test_put_ptr(p, QNAME_OFF);
	test_rr_end(p, at);
}

static void
test_soa(struct test_pkt *p, const char *zone, uint32_t ttl,
    uint32_t minimum)
{
	size_t at;

	test_put_name(p, zone);
	at = test_rr_start(p, DNS_PARSE_TYPE_SOA, ttl);
	test_put_labels(p, "ns");
	test_put_ptr(p, QNAME_OFF);
	test_put_name(p, "hostmaster.example");
	test_put32(p, 2026112201);	/* serial */
	test_put32(p, 3600);		/* refresh */
	test_put32(p, 600);		/* retry */
	test_put32(p, 86400);		/* expire */
	test_put32(p, minimum);
	test_rr_end(p, at);
}

static void
test_parse_ok(const struct test_pkt *p, struct dns_parse_answer *a)
{
	assert_int_equal(dns_parse(p->b, p->n, a), 0);
}

static void
test_parse_bad(const struct test_pkt *p)
{
	struct dns_parse_answer a;

	assert_int_equal(dns_parse(p->b, p->n, &a), MR_EINVAL_INPUT);
	/* Nothing stays allocated, and release is harmless. */
	assert_null(a.mx);
	assert_null(a.addrs);
	assert_null(a.qname);
	dns_parse_release(&a);
}

/* Every proper prefix of a packet must be refused, never read past. */
static void
test_all_truncations(const struct test_pkt *p)
{
	struct dns_parse_answer a;
	unsigned char copy[sizeof(p->b)];
	size_t n;

	for (n = 0; n < p->n; n++) {
		/* An exact-size copy lets ASan see any overread. */
		unsigned char *buf = n > 0 ? copy + sizeof(copy) - n : copy;

		memcpy(buf, p->b, n);
		assert_int_equal(dns_parse(buf, n, &a), MR_EINVAL_INPUT);
	}
}

static void
test_mx_compressed(void **state)
{
	struct dns_parse_answer a;
	struct test_pkt p;

	(void)state;
	test_header(&p, 0, 1, 1, 0, 0);
	test_question(&p, "Example.TEST", DNS_PARSE_TYPE_MX);
	test_mx_ptr(&p, 10, 3600, "MX1");
	test_parse_ok(&p, &a);
	assert_int_equal(a.rcode, DNS_PARSE_RCODE_NOERROR);
	assert_string_equal(a.qname, "example.test");
	assert_int_equal(a.qtype, DNS_PARSE_TYPE_MX);
	assert_int_equal(a.nmx, 1);
	assert_string_equal(a.mx[0].host, "mx1.example.test");
	assert_int_equal(a.mx[0].pref, 10);
	assert_int_equal(a.mx[0].ttl, 3600);
	assert_int_equal(a.cname_ttl, UINT32_MAX);
	assert_false(a.has_soa);
	dns_parse_release(&a);
	test_all_truncations(&p);
}

static void
test_mx_several(void **state)
{
	struct dns_parse_answer a;
	struct test_pkt p;
	size_t at, mx2;

	(void)state;
	test_header(&p, 0, 1, 4, 0, 1);
	test_question(&p, "example.test", DNS_PARSE_TYPE_MX);
	test_mx_ptr(&p, 20, 300, "backup");
	/* An uncompressed record whose exchange is pointed at later. */
	test_put_name(&p, "example.test");
	at = test_rr_start(&p, DNS_PARSE_TYPE_MX, 600);
	test_put16(&p, 10);
	mx2 = p.n;
	test_put_name(&p, "mx.other.test");
	test_rr_end(&p, at);
	/* Same preference, exchange entirely a pointer to a pointer. */
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_MX, 0x80000000u);
	test_put16(&p, 10);
	test_put_labels(&p, "mx3");
	test_put_ptr(&p, mx2 + 3);	/* "other.test" */
	test_rr_end(&p, at);
	/* Another owner's MX: not ours. */
	test_put_name(&p, "elsewhere.test");
	at = test_rr_start(&p, DNS_PARSE_TYPE_MX, 60);
	test_put16(&p, 0);
	test_put_name(&p, "mx.elsewhere.test");
	test_rr_end(&p, at);
	/* An additional record, not read. */
	test_put_name(&p, "mx.other.test");
	at = test_rr_start(&p, DNS_PARSE_TYPE_A, 60);
	test_put32(&p, 0x7f000002);
	test_rr_end(&p, at);

	test_parse_ok(&p, &a);
	assert_int_equal(a.nmx, 3);
	assert_string_equal(a.mx[0].host, "backup.example.test");
	assert_int_equal(a.mx[0].pref, 20);
	assert_int_equal(a.mx[0].ttl, 300);
	assert_string_equal(a.mx[1].host, "mx.other.test");
	assert_int_equal(a.mx[1].pref, 10);
	assert_int_equal(a.mx[1].ttl, 600);
	assert_string_equal(a.mx[2].host, "mx3.other.test");
	assert_int_equal(a.mx[2].ttl, 0);	/* RFC 2181 8: top bit */
	assert_int_equal(a.naddrs, 0);
	dns_parse_release(&a);

	/* The additional section is not read: cut short, it is no matter. */
	p.n -= 4;
	test_parse_ok(&p, &a);
	dns_parse_release(&a);
}

static void
test_null_mx(void **state)
{
	struct dns_parse_answer a;
	struct test_pkt p;
	size_t at;

	(void)state;
	test_header(&p, 0, 1, 1, 0, 0);
	test_question(&p, "nomail.test", DNS_PARSE_TYPE_MX);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_MX, 86400);
	test_put16(&p, 0);
	test_put8(&p, 0);		/* the root */
	test_rr_end(&p, at);
	test_parse_ok(&p, &a);
	assert_int_equal(a.nmx, 1);
	assert_string_equal(a.mx[0].host, "");
	assert_int_equal(a.mx[0].pref, 0);
	assert_int_equal(a.mx[0].ttl, 86400);
	dns_parse_release(&a);
	test_all_truncations(&p);
}

static void
test_cname_chain(void **state)
{
	struct dns_parse_answer a;
	struct test_pkt p;
	size_t at;

	(void)state;
	test_header(&p, 0, 1, 3, 0, 0);
	test_question(&p, "alias.test", DNS_PARSE_TYPE_MX);
	/* Out of order: the MX of the target first, then the CNAMEs. */
	test_put_name(&p, "real.test");
	at = test_rr_start(&p, DNS_PARSE_TYPE_MX, 900);
	test_put16(&p, 5);
	test_put_name(&p, "mx.real.test");
	test_rr_end(&p, at);
	test_put_name(&p, "mid.test");
	at = test_rr_start(&p, DNS_PARSE_TYPE_CNAME, 120);
	test_put_name(&p, "REAL.test");
	test_rr_end(&p, at);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_CNAME, 200);
	test_put_name(&p, "mid.test");
	test_rr_end(&p, at);
	test_parse_ok(&p, &a);
	assert_int_equal(a.nmx, 1);
	assert_string_equal(a.mx[0].host, "mx.real.test");
	assert_int_equal(a.cname_ttl, 120);
	dns_parse_release(&a);
	test_all_truncations(&p);
}

static void
test_cname_loop(void **state)
{
	struct dns_parse_answer a;
	struct test_pkt p;
	size_t at;

	(void)state;
	test_header(&p, 0, 1, 2, 0, 0);
	test_question(&p, "a.test", DNS_PARSE_TYPE_A);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_CNAME, 60);
	test_put_name(&p, "b.test");
	test_rr_end(&p, at);
	test_put_name(&p, "b.test");
	at = test_rr_start(&p, DNS_PARSE_TYPE_CNAME, 60);
	test_put_ptr(&p, QNAME_OFF);
	test_rr_end(&p, at);
	test_parse_ok(&p, &a);		/* ends, with nothing */
	assert_int_equal(a.naddrs, 0);
	dns_parse_release(&a);
}

static void
test_addresses(void **state)
{
	static const unsigned char v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0,
	    0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
	struct dns_parse_answer a;
	struct test_pkt p;
	size_t at;

	(void)state;
	test_header(&p, 0, 1, 3, 0, 0);
	test_question(&p, "mx.test", DNS_PARSE_TYPE_A);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_A, 30);
	test_put32(&p, 0xc0000201);
	test_rr_end(&p, at);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_A, 20);
	test_put32(&p, 0xc0000202);
	test_rr_end(&p, at);
	/* An AAAA in an A answer is not what was asked: skipped. */
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_AAAA, 20);
	memcpy(p.b + p.n, v6, 16);
	p.n += 16;
	test_rr_end(&p, at);
	test_parse_ok(&p, &a);
	assert_int_equal(a.naddrs, 2);
	assert_int_equal(a.addrs[0].family, AF_INET);
	assert_memory_equal(a.addrs[0].addr, "\xc0\x00\x02\x01", 4);
	assert_int_equal(a.addrs[0].ttl, 30);
	assert_memory_equal(a.addrs[1].addr, "\xc0\x00\x02\x02", 4);
	assert_int_equal(a.addrs[1].ttl, 20);
	dns_parse_release(&a);
	test_all_truncations(&p);

	test_header(&p, 0, 1, 1, 0, 0);
	test_question(&p, "mx.test", DNS_PARSE_TYPE_AAAA);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_AAAA, 40);
	memcpy(p.b + p.n, v6, 16);
	p.n += 16;
	test_rr_end(&p, at);
	test_parse_ok(&p, &a);
	assert_int_equal(a.naddrs, 1);
	assert_int_equal(a.addrs[0].family, AF_INET6);
	assert_memory_equal(a.addrs[0].addr, v6, 16);
	dns_parse_release(&a);
}

static void
test_negative_soa(void **state)
{
	struct dns_parse_answer a;
	struct test_pkt p;

	(void)state;
	/* NXDOMAIN: MINIMUM lower than the SOA's TTL. */
	test_header(&p, DNS_PARSE_RCODE_NXDOMAIN, 1, 0, 1, 0);
	test_question(&p, "gone.example.test", DNS_PARSE_TYPE_MX);
	test_soa(&p, "example.test", 3600, 300);
	test_parse_ok(&p, &a);
	assert_int_equal(a.rcode, DNS_PARSE_RCODE_NXDOMAIN);
	assert_int_equal(a.nmx, 0);
	assert_true(a.has_soa);
	assert_int_equal(a.negative_ttl, 300);
	dns_parse_release(&a);
	test_all_truncations(&p);

	/* NODATA: the SOA's TTL lower than MINIMUM. */
	test_header(&p, 0, 1, 0, 1, 0);
	test_question(&p, "example.test", DNS_PARSE_TYPE_MX);
	test_soa(&p, "example.test", 60, 86400);
	test_parse_ok(&p, &a);
	assert_int_equal(a.rcode, 0);
	assert_true(a.has_soa);
	assert_int_equal(a.negative_ttl, 60);
	dns_parse_release(&a);

	/* No SOA at all. */
	test_header(&p, DNS_PARSE_RCODE_NXDOMAIN, 1, 0, 0, 0);
	test_question(&p, "gone.test", DNS_PARSE_TYPE_MX);
	test_parse_ok(&p, &a);
	assert_false(a.has_soa);
	dns_parse_release(&a);
}

static void
test_bad_soa(void **state)
{
	struct test_pkt p;
	size_t at;

	(void)state;
	/* SOA RDATA one byte short of its five numbers. */
	test_header(&p, DNS_PARSE_RCODE_NXDOMAIN, 1, 0, 1, 0);
	test_question(&p, "x.test", DNS_PARSE_TYPE_MX);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_SOA, 60);
	test_put8(&p, 0);
	test_put8(&p, 0);
	test_put32(&p, 1);
	test_put32(&p, 2);
	test_put32(&p, 3);
	test_put32(&p, 4);
	test_put16(&p, 5);
	test_put8(&p, 0);
	test_rr_end(&p, at);
	test_parse_bad(&p);
}

static void
test_malformed(void **state)
{
	struct test_pkt p;
	size_t at;

	(void)state;
	/* Shorter than a header. */
	p.n = 11;
	memset(p.b, 0, p.n);
	test_parse_bad(&p);

	/* A query, not a response. */
	test_header(&p, 0, 1, 0, 0, 0);
	p.b[2] &= 0x7f;
	test_question(&p, "x.test", DNS_PARSE_TYPE_MX);
	test_parse_bad(&p);

	/* No question; two questions. */
	test_header(&p, 0, 0, 0, 0, 0);
	test_parse_bad(&p);
	test_header(&p, 0, 2, 0, 0, 0);
	test_question(&p, "x.test", DNS_PARSE_TYPE_MX);
	test_question(&p, "y.test", DNS_PARSE_TYPE_MX);
	test_parse_bad(&p);

	/* An answer count the packet cannot hold. */
	test_header(&p, 0, 1, 0xffff, 0, 0);
	test_question(&p, "x.test", DNS_PARSE_TYPE_MX);
	test_mx_ptr(&p, 10, 60, "mx");
	test_parse_bad(&p);

	/* A pointer to itself in the question. */
	test_header(&p, 0, 1, 0, 0, 0);
	test_put_ptr(&p, QNAME_OFF);
	test_put16(&p, DNS_PARSE_TYPE_MX);
	test_put16(&p, 1);
	test_parse_bad(&p);

	/* Two pointers pointing at each other, in an owner name. */
	test_header(&p, 0, 1, 1, 0, 0);
	test_question(&p, "x.test", DNS_PARSE_TYPE_MX);
	at = p.n;
	test_put_ptr(&p, at + 2);
	test_put_ptr(&p, at);
	test_put16(&p, DNS_PARSE_TYPE_MX);
	test_put16(&p, 1);
	test_put32(&p, 60);
	test_put16(&p, 0);
	test_parse_bad(&p);

	/* A pointer past the end of the packet. */
	test_header(&p, 0, 1, 1, 0, 0);
	test_question(&p, "x.test", DNS_PARSE_TYPE_MX);
	test_put_ptr(&p, 0x3ff);
	at = test_rr_start(&p, DNS_PARSE_TYPE_MX, 60);
	test_put16(&p, 10);
	test_put8(&p, 0);
	test_rr_end(&p, at);
	test_parse_bad(&p);

	/* A label length with the reserved 01 bits (0x40). */
	test_header(&p, 0, 1, 0, 0, 0);
	test_put8(&p, 0x41);
	test_put8(&p, 'x');
	test_put8(&p, 0);
	test_put16(&p, DNS_PARSE_TYPE_MX);
	test_put16(&p, 1);
	test_parse_bad(&p);

	/* RDLENGTH one past the end. */
	test_header(&p, 0, 1, 1, 0, 0);
	test_question(&p, "x.test", DNS_PARSE_TYPE_MX);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_MX, 60);
	test_put16(&p, 10);
	test_put_ptr(&p, QNAME_OFF);
	test_rr_end(&p, at);
	p.b[at + 1] += 1;
	test_parse_bad(&p);

	/* MX RDATA longer than its name. */
	test_header(&p, 0, 1, 1, 0, 0);
	test_question(&p, "x.test", DNS_PARSE_TYPE_MX);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_MX, 60);
	test_put16(&p, 10);
	test_put_ptr(&p, QNAME_OFF);
	test_put8(&p, 0);		/* a stray byte */
	test_rr_end(&p, at);
	test_parse_bad(&p);

	/* MX RDATA with a preference only. */
	test_header(&p, 0, 1, 1, 0, 0);
	test_question(&p, "x.test", DNS_PARSE_TYPE_MX);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_MX, 60);
	test_put16(&p, 10);
	test_rr_end(&p, at);
	test_parse_bad(&p);

	/* An A record of 5 bytes; an AAAA of 4. */
	test_header(&p, 0, 1, 1, 0, 0);
	test_question(&p, "x.test", DNS_PARSE_TYPE_A);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_A, 60);
	test_put32(&p, 0x7f000001);
	test_put8(&p, 0);
	test_rr_end(&p, at);
	test_parse_bad(&p);
	test_header(&p, 0, 1, 1, 0, 0);
	test_question(&p, "x.test", DNS_PARSE_TYPE_AAAA);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_AAAA, 60);
	test_put32(&p, 0x7f000001);
	test_rr_end(&p, at);
	test_parse_bad(&p);

	/* A CNAME whose target overruns its RDATA. */
	test_header(&p, 0, 1, 1, 0, 0);
	test_question(&p, "x.test", DNS_PARSE_TYPE_A);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_CNAME, 60);
	test_put_name(&p, "y.test");
	test_rr_end(&p, at);
	p.b[at + 1] -= 1;
	test_parse_bad(&p);
}

/* test_put_label_of - one label of n octets c. */
static void
test_put_label_of(struct test_pkt *p, size_t n, unsigned char c)
{
	test_put8(p, (unsigned)n);
	assert_true(p->n + n <= sizeof(p->b));
	memset(p->b + p->n, c, n);
	p->n += n;
}

/*
 * RFC 1035 3.1: a name is at most 255 octets on the wire.  c-ares 1.18.1
 * does not check it; the fuzzer found such a name (built from pointers,
 * of characters c-ares writes as \DDD) accepted.
 */
static void
test_name_length(void **state)
{
	static const unsigned char chars[] = { 'a', 0x15 };
	struct dns_parse_answer a;
	struct test_pkt p;
	size_t at, first, last, i;

	(void)state;
	for (i = 0; i < sizeof(chars); i++) {
		for (last = 61; last <= 62; last++) {
			/* 3 x (1 + 63) + (1 + last) + 1: 255, then 256. */
			test_header(&p, 0, 1, 1, 0, 0);
			test_question(&p, "x.test", DNS_PARSE_TYPE_MX);
			test_put_ptr(&p, QNAME_OFF);
			at = test_rr_start(&p, DNS_PARSE_TYPE_MX, 60);
			test_put16(&p, 10);
			test_put_label_of(&p, 63, chars[i]);
			test_put_label_of(&p, 63, chars[i]);
			test_put_label_of(&p, 63, chars[i]);
			test_put_label_of(&p, last, chars[i]);
			test_put8(&p, 0);
			test_rr_end(&p, at);
			if (last == 61) {
				test_parse_ok(&p, &a);
				assert_int_equal(a.nmx, 1);
				dns_parse_release(&a);
			} else {
				test_parse_bad(&p);
			}
		}
	}

	/* 257 octets: three labels, then a pointer back to the third. */
	test_header(&p, 0, 1, 1, 0, 0);
	test_question(&p, "x.test", DNS_PARSE_TYPE_MX);
	test_put_ptr(&p, QNAME_OFF);
	at = test_rr_start(&p, DNS_PARSE_TYPE_MX, 60);
	test_put16(&p, 10);
	first = p.n;
	test_put_label_of(&p, 63, 0x15);
	test_put_label_of(&p, 63, 0x15);
	test_put_label_of(&p, 63, 0x15);
	test_put8(&p, 0);
	test_rr_end(&p, at);
	test_parse_ok(&p, &a);		/* 193 octets: fine */
	dns_parse_release(&a);
	p.n -= 1;
	test_put_ptr(&p, first + 2 * 64);
	test_rr_end(&p, at);
	test_parse_bad(&p);
}

/* Every byte of a valid packet set to a few values: no crash, no leak. */
static void
test_mutations(void **state)
{
	static const unsigned vals[] = { 0x00, 0x01, 0x3f, 0x40, 0x7f, 0xc0,
	    0xc0 | 0x0c, 0xff };
	struct dns_parse_answer a;
	struct test_pkt p, m;
	size_t i, j;

	(void)state;
	test_header(&p, 0, 1, 2, 1, 0);
	test_question(&p, "example.test", DNS_PARSE_TYPE_MX);
	test_mx_ptr(&p, 10, 60, "mx1");
	test_mx_ptr(&p, 20, 60, "mx2");
	test_soa(&p, "example.test", 60, 60);
	for (i = 0; i < p.n; i++) {
		for (j = 0; j < sizeof(vals) / sizeof(vals[0]); j++) {
			m = p;
			m.b[i] = (unsigned char)vals[j];
			if (dns_parse(m.b, m.n, &a) == 0)
				dns_parse_release(&a);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mx_compressed),
		cmocka_unit_test(test_mx_several),
		cmocka_unit_test(test_null_mx),
		cmocka_unit_test(test_cname_chain),
		cmocka_unit_test(test_cname_loop),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_negative_soa),
		cmocka_unit_test(test_bad_soa),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_name_length),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
