/*
 * dns_parse.c - a DNS answer packet to MX, A, AAAA records and the SOA
 * negative TTL; see dns_parse.h.
 *
 * Two passes over the answer section: the first checks every record's
 * framing and notes where it lies, the second follows the CNAME chain from
 * the question's name and keeps the records of the type asked that belong
 * to a name on the chain.  Every offset is checked against the packet
 * length before it is read.
 */
#include <sys/socket.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ares.h>

#include "core/mr_err.h"
#include "core/xalloc.h"
#include "dns/dns_parse.h"

#define DNS_PARSE_HEADER	12
#define DNS_PARSE_CLASS_IN	1
#define DNS_PARSE_MAX_PACKET	65535
#define DNS_PARSE_MAX_NAME	255	/* octets on the wire, RFC 1035 */

/* A record's framing, noted in the first pass. */
struct dns_parse_rr {
	char		*owner;		/* owned, lower-case */
	unsigned	 type;
	unsigned	 class;
	uint32_t	 ttl;
	size_t		 rdoff;
	size_t		 rdlen;
};

static unsigned dns_parse_u16(const unsigned char *p);
static uint32_t dns_parse_u32(const unsigned char *p);
static uint32_t dns_parse_ttl(const unsigned char *p);
static size_t dns_parse_wire_len(const char *s);
static int dns_parse_name(const unsigned char *buf, size_t len, size_t off,
    char **name_r, size_t *enclen_r);
static int dns_parse_rrs(const unsigned char *buf, size_t len, size_t *off,
    size_t count, struct dns_parse_rr *rrs);
static void dns_parse_free_rrs(struct dns_parse_rr *rrs, size_t n);
static int dns_parse_answers(const unsigned char *buf, size_t len,
    const struct dns_parse_rr *rrs, size_t n, struct dns_parse_answer *a);
static int dns_parse_soa(const unsigned char *buf, size_t len,
    const struct dns_parse_rr *rrs, size_t n, struct dns_parse_answer *a);

static unsigned
dns_parse_u16(const unsigned char *p)
{
	return ((unsigned)p[0] << 8) | p[1];
}

static uint32_t
dns_parse_u32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	    ((uint32_t)p[2] << 8) | p[3];
}

/* dns_parse_ttl - RFC 2181 section 8: a TTL over 2^31 - 1 means 0. */
static uint32_t
dns_parse_ttl(const unsigned char *p)
{
	uint32_t ttl = dns_parse_u32(p);

	return ttl > 0x7fffffffu ? 0 : ttl;
}

/*
 * dns_parse_wire_len - the octets name s (as ares_expand_name() writes it,
 * with "\." and "\DDD" escapes) takes on the wire, uncompressed.
 */
static size_t
dns_parse_wire_len(const char *s)
{
	size_t n = 1;		/* the root label */
	bool start = true;

	for (; *s != '\0'; s++) {
		if (start) {
			n++;		/* a length octet */
			start = false;
		}
		if (*s == '.') {
			start = true;
			continue;
		}
		if (*s == '\\' && s[1] >= '0' && s[1] <= '9' && s[2] != '\0' &&
		    s[3] != '\0')
			s += 3;
		else if (*s == '\\' && s[1] != '\0')
			s++;
		n++;
	}
	return n;
}

/*
 * dns_parse_name - the name at off, lower-cased, without a final dot ("" for
 * the root), and the bytes it takes at off (a pointer counts 2).
 */
static int
dns_parse_name(const unsigned char *buf, size_t len, size_t off,
    char **name_r, size_t *enclen_r)
{
	char *s, *name;
	long enclen;
	size_t n, i;

	if (off >= len)
		return MR_EINVAL_INPUT;
	if (ares_expand_name(buf + off, buf, (int)len, &s, &enclen) !=
	    ARES_SUCCESS)
		return MR_EINVAL_INPUT;
	if (enclen <= 0 || (size_t)enclen > len - off) {
		ares_free_string(s);
		return MR_EINVAL_INPUT;
	}
	/* c-ares writes no final dot, the root as "", and escapes a dot
	 * inside a label as "\.". */
	if (dns_parse_wire_len(s) > DNS_PARSE_MAX_NAME) {
		/* RFC 1035 3.1; c-ares 1.18.1 does not check it. */
		ares_free_string(s);
		return MR_EINVAL_INPUT;
	}
	n = strlen(s);
	name = xstrndup(s, n);
	ares_free_string(s);
	for (i = 0; i < n; i++)
		name[i] = (char)tolower((unsigned char)name[i]);
	*name_r = name;
	*enclen_r = (size_t)enclen;
	return 0;
}

/* dns_parse_rrs - frame count records from *off on into rrs[]. */
static int
dns_parse_rrs(const unsigned char *buf, size_t len, size_t *off,
    size_t count, struct dns_parse_rr *rrs)
{
	size_t i, enclen, o = *off;

	for (i = 0; i < count; i++) {
		struct dns_parse_rr *rr = &rrs[i];

		if (dns_parse_name(buf, len, o, &rr->owner, &enclen) != 0)
			return MR_EINVAL_INPUT;
		o += enclen;
		if (len - o < 10)
			return MR_EINVAL_INPUT;
		rr->type = dns_parse_u16(buf + o);
		rr->class = dns_parse_u16(buf + o + 2);
		rr->ttl = dns_parse_ttl(buf + o + 4);
		rr->rdlen = dns_parse_u16(buf + o + 8);
		o += 10;
		if (rr->rdlen > len - o)
			return MR_EINVAL_INPUT;
		rr->rdoff = o;
		o += rr->rdlen;
	}
	*off = o;
	return 0;
}

static void
dns_parse_free_rrs(struct dns_parse_rr *rrs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(rrs[i].owner);
	free(rrs);
}

/*
 * dns_parse_answers - follow the CNAMEs from the question's name, then keep
 * the records of the type asked owned by a name on the chain.
 */
static int
dns_parse_answers(const unsigned char *buf, size_t len,
    const struct dns_parse_rr *rrs, size_t n, struct dns_parse_answer *a)
{
	char *chain[DNS_PARSE_MAX_CNAME + 1];
	size_t nchain = 1, i, j, enclen;
	bool on_chain;
	int r = 0;

	chain[0] = a->qname;
	while (nchain < DNS_PARSE_MAX_CNAME + 1) {
		const char *cur = chain[nchain - 1];

		for (i = 0; i < n; i++) {
			if (rrs[i].type == DNS_PARSE_TYPE_CNAME &&
			    rrs[i].class == DNS_PARSE_CLASS_IN &&
			    strcmp(rrs[i].owner, cur) == 0)
				break;
		}
		if (i == n)
			break;
		if (dns_parse_name(buf, len, rrs[i].rdoff, &chain[nchain],
		    &enclen) != 0) {
			r = MR_EINVAL_INPUT;
			goto out;
		}
		if (enclen != rrs[i].rdlen) {
			free(chain[nchain]);
			r = MR_EINVAL_INPUT;
			goto out;
		}
		if (rrs[i].ttl < a->cname_ttl)
			a->cname_ttl = rrs[i].ttl;
		/* A loop ends here: its target is already on the chain. */
		for (j = 0; j < nchain; j++)
			if (strcmp(chain[j], chain[nchain]) == 0)
				break;
		nchain++;
		if (j < nchain - 1)
			break;
	}

	for (i = 0; i < n; i++) {
		const struct dns_parse_rr *rr = &rrs[i];

		if (rr->class != DNS_PARSE_CLASS_IN || rr->type != a->qtype)
			continue;
		on_chain = false;
		for (j = 0; j < nchain && !on_chain; j++)
			on_chain = strcmp(rr->owner, chain[j]) == 0;
		if (!on_chain)
			continue;
		if (rr->type == DNS_PARSE_TYPE_MX) {
			struct dns_parse_mx *mx;

			if (rr->rdlen < 3) {
				r = MR_EINVAL_INPUT;
				goto out;
			}
			a->mx = xreallocarray(a->mx, a->nmx + 1,
			    sizeof(*a->mx));
			mx = &a->mx[a->nmx];
			mx->pref = dns_parse_u16(buf + rr->rdoff);
			mx->ttl = rr->ttl;
			if (dns_parse_name(buf, len, rr->rdoff + 2, &mx->host,
			    &enclen) != 0) {
				r = MR_EINVAL_INPUT;
				goto out;
			}
			a->nmx++;
			if (enclen != rr->rdlen - 2) {
				r = MR_EINVAL_INPUT;
				goto out;
			}
		} else {
			struct dns_parse_addr *ad;
			size_t alen = rr->type == DNS_PARSE_TYPE_A ? 4 : 16;

			if (rr->rdlen != alen) {
				r = MR_EINVAL_INPUT;
				goto out;
			}
			a->addrs = xreallocarray(a->addrs, a->naddrs + 1,
			    sizeof(*a->addrs));
			ad = &a->addrs[a->naddrs++];
			memset(ad, 0, sizeof(*ad));
			ad->family = alen == 4 ? AF_INET : AF_INET6;
			memcpy(ad->addr, buf + rr->rdoff, alen);
			ad->ttl = rr->ttl;
		}
	}
out:
	for (j = 1; j < nchain; j++)
		free(chain[j]);
	return r;
}

/*
 * dns_parse_soa - RFC 2308 section 5: a negative answer is cached for the
 * lesser of the SOA record's TTL and its MINIMUM field.  The first SOA of
 * class IN in the authority section counts.
 */
static int
dns_parse_soa(const unsigned char *buf, size_t len,
    const struct dns_parse_rr *rrs, size_t n, struct dns_parse_answer *a)
{
	size_t i, off, enclen;
	uint32_t minimum;
	char *name;

	for (i = 0; i < n; i++) {
		if (rrs[i].type == DNS_PARSE_TYPE_SOA &&
		    rrs[i].class == DNS_PARSE_CLASS_IN)
			break;
	}
	if (i == n)
		return 0;
	/* MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM. */
	off = rrs[i].rdoff;
	if (dns_parse_name(buf, len, off, &name, &enclen) != 0)
		return MR_EINVAL_INPUT;
	free(name);
	off += enclen;
	if (off >= rrs[i].rdoff + rrs[i].rdlen ||
	    dns_parse_name(buf, len, off, &name, &enclen) != 0)
		return MR_EINVAL_INPUT;
	free(name);
	off += enclen;
	if (off + 20 != rrs[i].rdoff + rrs[i].rdlen)
		return MR_EINVAL_INPUT;
	minimum = dns_parse_ttl(buf + off + 16);
	a->has_soa = true;
	a->negative_ttl = rrs[i].ttl < minimum ? rrs[i].ttl : minimum;
	return 0;
}

int
dns_parse(const unsigned char *buf, size_t len,
    struct dns_parse_answer *ans_r)
{
	struct dns_parse_rr *rrs = NULL;
	size_t qd, an, ns, off, enclen, nrrs = 0;
	int r = MR_EINVAL_INPUT;

	memset(ans_r, 0, sizeof(*ans_r));
	ans_r->cname_ttl = UINT32_MAX;
	if (len < DNS_PARSE_HEADER || len > DNS_PARSE_MAX_PACKET)
		return MR_EINVAL_INPUT;
	if ((buf[2] & 0x80) == 0)		/* QR: not a response */
		return MR_EINVAL_INPUT;
	ans_r->rcode = buf[3] & 0x0f;
	qd = dns_parse_u16(buf + 4);
	an = dns_parse_u16(buf + 6);
	ns = dns_parse_u16(buf + 8);
	if (qd != 1)
		return MR_EINVAL_INPUT;
	off = DNS_PARSE_HEADER;
	if (dns_parse_name(buf, len, off, &ans_r->qname, &enclen) != 0)
		return MR_EINVAL_INPUT;
	off += enclen;
	if (len - off < 4)
		goto out;
	ans_r->qtype = dns_parse_u16(buf + off);
	off += 4;
	/* Each record takes at least 11 bytes: a count beyond that lies. */
	if (an + ns > (len - off) / 11)
		goto out;
	rrs = xcalloc(an + ns + 1, sizeof(*rrs));
	nrrs = an + ns;
	r = dns_parse_rrs(buf, len, &off, an, rrs);
	if (r == 0)
		r = dns_parse_rrs(buf, len, &off, ns, rrs + an);
	if (r == 0 && (ans_r->qtype == DNS_PARSE_TYPE_MX ||
	    ans_r->qtype == DNS_PARSE_TYPE_A ||
	    ans_r->qtype == DNS_PARSE_TYPE_AAAA))
		r = dns_parse_answers(buf, len, rrs, an, ans_r);
	if (r == 0)
		r = dns_parse_soa(buf, len, rrs + an, ns, ans_r);
out:
	dns_parse_free_rrs(rrs, nrrs);
	if (r != 0)
		dns_parse_release(ans_r);
	return r;
}

void
dns_parse_release(struct dns_parse_answer *ans)
{
	size_t i;

	for (i = 0; i < ans->nmx; i++)
		free(ans->mx[i].host);
	free(ans->mx);
	free(ans->addrs);
	free(ans->qname);
	memset(ans, 0, sizeof(*ans));
	ans->cname_ttl = UINT32_MAX;
}
