/*
 * addr.c - RFC 5321 section 4.1.2 Mailbox syntax, checked in one pass
 * without allocation: the local part (Dot-string or Quoted-string), the
 * "@", then the domain (a host name of LDH labels, or an address literal
 * whose address inet_pton() parses), and the length limits of section
 * 4.5.3.1.  Each rule has its own static reason, so a reject file tells the
 * list owner exactly what is wrong with a row.  Two choices go beyond the
 * grammar, because a bulk sender cannot deliver to such addresses: a
 * single-label domain ("user@localhost") is refused, and so is an empty
 * quoted local part (""@example.com).  General address literals other
 * than IPv6 ("[tag:content]") are refused, as no standard tag but IPv6
 * exists, and an IPv4 literal with a leading zero ("[1.2.3.04]") is
 * refused as inet_pton() refuses it.  The total length is checked last,
 * so that an over-long local part or domain gets its own reason.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "core/mr_utf8.h"
#include "addr.h"

#define SMTP_ADDR_MAX		254	/* RFC 5321 4.5.3.1.3, with RFC 3696 */
#define SMTP_ADDR_LOCAL_MAX	64	/* RFC 5321 4.5.3.1.1 */
#define SMTP_ADDR_DOMAIN_MAX	255	/* RFC 5321 4.5.3.1.2 */
#define SMTP_ADDR_LABEL_MAX	63	/* RFC 1035 2.3.4 */

static const char *smtp_addr_local(const char *p, size_t n, size_t *at_r);
static const char *smtp_addr_domain(const char *p, size_t n);
static const char *smtp_addr_literal(const char *p, size_t n);
static bool smtp_addr_atext(unsigned char c);
static bool smtp_addr_ldh(unsigned char c);

static const char smtp_addr_e_empty[] = "empty address";
static const char smtp_addr_e_utf8[] =
    "non-ASCII character in address (needs SMTPUTF8, not supported)";
static const char smtp_addr_e_no_at[] = "no @ in address";
static const char smtp_addr_e_local_empty[] = "empty local part";
static const char smtp_addr_e_local_dot_first[] =
    "local part starts with a dot";
static const char smtp_addr_e_local_dot_last[] =
    "local part ends with a dot";
static const char smtp_addr_e_local_dots[] =
    "two consecutive dots in local part";
static const char smtp_addr_e_local_char[] =
    "invalid character in local part (quote it, or remove it)";
static const char smtp_addr_e_quoted_open[] =
    "unterminated quoted local part";
static const char smtp_addr_e_quoted_char[] =
    "invalid character in quoted local part";
static const char smtp_addr_e_quoted_after[] =
    "text between quoted local part and @";
static const char smtp_addr_e_local_long[] =
    "local part longer than 64 octets";
static const char smtp_addr_e_domain_empty[] = "empty domain";
static const char smtp_addr_e_domain_long[] =
    "domain longer than 255 octets";
static const char smtp_addr_e_domain_dot_first[] =
    "domain starts with a dot";
static const char smtp_addr_e_domain_dot_last[] =
    "domain ends with a dot";
static const char smtp_addr_e_domain_dots[] =
    "two consecutive dots in domain";
static const char smtp_addr_e_domain_char[] =
    "invalid character in domain (letters, digits, hyphens and dots only)";
static const char smtp_addr_e_label_long[] =
    "domain label longer than 63 octets";
static const char smtp_addr_e_label_hyphen_first[] =
    "domain label starts with a hyphen";
static const char smtp_addr_e_label_hyphen_last[] =
    "domain label ends with a hyphen";
static const char smtp_addr_e_single_label[] =
    "domain has a single label (such as localhost): refused for delivery";
static const char smtp_addr_e_literal_open[] =
    "address literal without closing ]";
static const char smtp_addr_e_literal_after[] =
    "text after the closing ] of address literal";
static const char smtp_addr_e_literal_v4[] = "invalid IPv4 address literal";
static const char smtp_addr_e_literal_v6[] = "invalid IPv6 address literal";
static const char smtp_addr_e_literal_tag[] =
    "unsupported address literal (only [IPv4] and [IPv6:...])";
static const char smtp_addr_e_long[] = "address longer than 254 octets";

/* RFC 5322 atext: ALPHA / DIGIT / one of !#$%&'*+-/=?^_`{|}~ */
static bool
smtp_addr_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool
smtp_addr_ldh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-';
}

/*
 * smtp_addr_local - check the local part at the start of p[0..n) and find
 * the "@" after it.
 */
static const char *
smtp_addr_local(const char *p, size_t n, size_t *at_r)
{
	unsigned char c;
	size_t i;

	if (p[0] == '"') {
		/* Quoted-string: qtextSMTP is 32-126 but " and \. */
		for (i = 1; i < n; i++) {
			c = (unsigned char)p[i];
			if (c == '"')
				break;
			if (c == '\\') {
				if (++i == n)
					return smtp_addr_e_quoted_open;
				c = (unsigned char)p[i];
			}
			if (c < 32 || c > 126)
				return smtp_addr_e_quoted_char;
		}
		if (i == n)
			return smtp_addr_e_quoted_open;
		if (i == 1)
			return smtp_addr_e_local_empty;
		if (++i == n)
			return smtp_addr_e_no_at;
		if (p[i] != '@')
			return smtp_addr_e_quoted_after;
	} else {
		/* Dot-string: Atom *("." Atom). */
		for (i = 0; i < n && p[i] != '@'; i++) {
			c = (unsigned char)p[i];
			if (c == '.') {
				if (i == 0)
					return smtp_addr_e_local_dot_first;
				if (p[i - 1] == '.')
					return smtp_addr_e_local_dots;
			} else if (!smtp_addr_atext(c))
				return smtp_addr_e_local_char;
		}
		if (i == n)
			return smtp_addr_e_no_at;
		if (i == 0)
			return smtp_addr_e_local_empty;
		if (p[i - 1] == '.')
			return smtp_addr_e_local_dot_last;
	}
	if (i > SMTP_ADDR_LOCAL_MAX)
		return smtp_addr_e_local_long;
	*at_r = i;
	return NULL;
}

/*
 * smtp_addr_literal - p[0..n) is "[...]": an IPv4 address in dotted
 * decimal or "IPv6:" and an IPv6 address, each as inet_pton() takes it.
 */
static const char *
smtp_addr_literal(const char *p, size_t n)
{
	char text[INET6_ADDRSTRLEN];
	unsigned char addr[sizeof(struct in6_addr)];
	const char *close, *err;
	size_t len, i;
	int af;

	close = memchr(p, ']', n);
	if (close == NULL)
		return smtp_addr_e_literal_open;
	if (close != p + n - 1)
		return smtp_addr_e_literal_after;
	p++;
	len = n - 2;
	if (len >= 5 && strncasecmp(p, "IPv6:", 5) == 0) {
		af = AF_INET6;
		err = smtp_addr_e_literal_v6;
		p += 5;
		len -= 5;
	} else if (memchr(p, ':', len) != NULL)
		return smtp_addr_e_literal_tag;
	else {
		af = AF_INET;
		err = smtp_addr_e_literal_v4;
	}
	if (len >= sizeof(text))
		return err;
	/* inet_pton() would stop at a NUL: let only its alphabet through. */
	for (i = 0; i < len; i++)
		if (p[i] == '\0' ||
		    strchr("0123456789abcdefABCDEF.:", p[i]) == NULL)
			return err;
	memcpy(text, p, len);
	text[len] = '\0';
	if (inet_pton(af, text, addr) != 1)
		return err;
	return NULL;
}

/* smtp_addr_domain - check p[0..n), what follows the "@". */
static const char *
smtp_addr_domain(const char *p, size_t n)
{
	size_t i, label = 0, labels = 0;
	unsigned char c;

	if (n == 0)
		return smtp_addr_e_domain_empty;
	if (p[0] == '[')
		return smtp_addr_literal(p, n);
	if (n > SMTP_ADDR_DOMAIN_MAX)
		return smtp_addr_e_domain_long;
	/* label is the start of the current label. */
	for (i = 0; i <= n; i++) {
		c = i < n ? (unsigned char)p[i] : '.';
		if (c != '.') {
			if (!smtp_addr_ldh(c))
				return smtp_addr_e_domain_char;
			continue;
		}
		if (i == label) {
			if (i == 0)
				return smtp_addr_e_domain_dot_first;
			if (i == n)
				return smtp_addr_e_domain_dot_last;
			return smtp_addr_e_domain_dots;
		}
		if (i - label > SMTP_ADDR_LABEL_MAX)
			return smtp_addr_e_label_long;
		if (p[label] == '-')
			return smtp_addr_e_label_hyphen_first;
		if (p[i - 1] == '-')
			return smtp_addr_e_label_hyphen_last;
		labels++;
		label = i + 1;
	}
	if (labels < 2)
		return smtp_addr_e_single_label;
	return NULL;
}

const char *
smtp_addr_check(const char *p, size_t n, size_t *at_r)
{
	const char *err;
	size_t at;

	if (n == 0)
		return smtp_addr_e_empty;
	if (!mr_is_ascii(p, n))
		return smtp_addr_e_utf8;
	if ((err = smtp_addr_local(p, n, &at)) != NULL)
		return err;
	if ((err = smtp_addr_domain(p + at + 1, n - at - 1)) != NULL)
		return err;
	/* Last, so that the local part and domain limits are reachable. */
	if (n > SMTP_ADDR_MAX)
		return smtp_addr_e_long;
	if (at_r != NULL)
		*at_r = at;
	return NULL;
}
