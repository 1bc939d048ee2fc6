/*
 * route.c - static routes: parsing DOMAIN=HOST[:PORT] and the most
 * specific match (exact, then the longest ".suffix", then "*").
 *
 * The table is a plain array searched linearly: route tables are a handful
 * of lines (smart hosts, tests), and a match costs one pass per label.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/mr_err.h"
#include "core/xalloc.h"
#include "dns/route.h"

#define ROUTE_NAME_MAX	253	/* RFC 1035 2.3.4, without the final dot */
#define ROUTE_LABEL_MAX	63

struct route_table {
	struct route	*v;
	size_t		 n;
};

static int route_check_name(const char *s, size_t len, const char **why_r);
static int route_parse_port(const char *s, unsigned *port_r);
static int route_parse_host(const char *s, unsigned default_port,
    struct route *r, const char **why_r);
static int route_parse(const char *spec, unsigned default_port,
    struct route *r, const char **why_r);
static void route_clear(struct route *r);

/*
 * route_check_name - is s (len bytes) a host or domain name: labels of 1
 * to 63 letters, digits, '-' or '_' (service labels), 253 bytes at most.
 */
static int
route_check_name(const char *s, size_t len, const char **why_r)
{
	size_t i, label = 0;

	if (len == 0) {
		*why_r = "empty name";
		return MR_EINVAL_INPUT;
	}
	if (len > ROUTE_NAME_MAX) {
		*why_r = "name longer than 253 characters";
		return MR_EINVAL_INPUT;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0) {
				*why_r = "empty label in name";
				return MR_EINVAL_INPUT;
			}
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_') {
			*why_r = "invalid character in name";
			return MR_EINVAL_INPUT;
		}
		if (++label > ROUTE_LABEL_MAX) {
			*why_r = "label longer than 63 characters";
			return MR_EINVAL_INPUT;
		}
	}
	if (label == 0) {
		*why_r = "empty label in name";
		return MR_EINVAL_INPUT;
	}
	return 0;
}

/* route_parse_port - a decimal port 1..65535, digits only. */
static int
route_parse_port(const char *s, unsigned *port_r)
{
	unsigned long v = 0;
	size_t i;

	if (*s == '\0' || strlen(s) > 5)
		return MR_EINVAL_INPUT;
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9')
			return MR_EINVAL_INPUT;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return MR_EINVAL_INPUT;
	*port_r = (unsigned)v;
	return 0;
}

/*
 * route_parse_host - HOST[:PORT] where HOST is a name, an IPv4 address or
 * a bracketed IPv6 address.  Fills host, port and literal of r.
 */
static int
route_parse_host(const char *s, unsigned default_port, struct route *r,
    const char **why_r)
{
	unsigned char bin[sizeof(struct in6_addr)];
	const char *colon, *last;
	char *host;
	size_t hlen, i;

	r->port = default_port;
	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL) {
			*why_r = "missing ']' after IPv6 address";
			return MR_EINVAL_INPUT;
		}
		host = xstrndup(s + 1, (size_t)(close - s - 1));
		if (inet_pton(AF_INET6, host, bin) != 1) {
			free(host);
			*why_r = "not an IPv6 address in brackets";
			return MR_EINVAL_INPUT;
		}
		if (close[1] == ':') {
			if (route_parse_port(close + 2, &r->port) != 0) {
				free(host);
				*why_r = "bad port (1-65535)";
				return MR_EINVAL_INPUT;
			}
		} else if (close[1] != '\0') {
			free(host);
			*why_r = "unexpected text after ']'";
			return MR_EINVAL_INPUT;
		}
		r->host = host;
		r->literal = true;
		return 0;
	}
	colon = strchr(s, ':');
	if (colon != NULL && strchr(colon + 1, ':') != NULL) {
		*why_r = "an IPv6 address must be in brackets ([::1]:25)";
		return MR_EINVAL_INPUT;
	}
	hlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
	if (hlen == 0) {
		*why_r = "empty host";
		return MR_EINVAL_INPUT;
	}
	if (colon != NULL && route_parse_port(colon + 1, &r->port) != 0) {
		*why_r = "bad port (1-65535)";
		return MR_EINVAL_INPUT;
	}
	host = xstrndup(s, hlen);
	if (inet_pton(AF_INET, host, bin) == 1) {
		r->host = host;
		r->literal = true;
		return 0;
	}
	if (hlen > 0 && host[hlen - 1] == '.')
		host[--hlen] = '\0';	/* a fully qualified name */
	if (route_check_name(host, hlen, why_r) != 0) {
		free(host);
		return MR_EINVAL_INPUT;
	}
	/* A last label of digits only is a mistyped address, not a name. */
	last = strrchr(host, '.');
	last = last != NULL ? last + 1 : host;
	for (i = 0; last[i] != '\0' && isdigit((unsigned char)last[i]); i++)
		;
	if (last[i] == '\0') {
		free(host);
		*why_r = "not a valid IPv4 address or host name";
		return MR_EINVAL_INPUT;
	}
	for (i = 0; i < hlen; i++)
		host[i] = (char)tolower((unsigned char)host[i]);
	r->host = host;
	r->literal = false;
	return 0;
}

/* route_parse - one DOMAIN=HOST[:PORT] into r (zeroed by the caller). */
static int
route_parse(const char *spec, unsigned default_port, struct route *r,
    const char **why_r)
{
	const char *eq = strchr(spec, '=');
	const char *dom;
	size_t dlen, i;

	if (eq == NULL) {
		*why_r = "expected DOMAIN=HOST[:PORT]";
		return MR_EINVAL_INPUT;
	}
	dom = spec;
	dlen = (size_t)(eq - spec);
	if (dlen == 0) {
		*why_r = "empty domain";
		return MR_EINVAL_INPUT;
	}
	if (dlen > 1 && dom[dlen - 1] == '.')
		dlen--;			/* "example.com." is example.com */
	if (dlen > 1 && dom[0] == '*') {
		*why_r = "write .example.com, not *.example.com, for every "
		    "subdomain";
		return MR_EINVAL_INPUT;
	}
	if (!(dlen == 1 && dom[0] == '*')) {
		if (dom[0] == '.') {
			if (route_check_name(dom + 1, dlen - 1, why_r) != 0)
				return MR_EINVAL_INPUT;
		} else if (route_check_name(dom, dlen, why_r) != 0) {
			return MR_EINVAL_INPUT;
		}
	}
	if (eq[1] == '\0') {
		*why_r = "empty host";
		return MR_EINVAL_INPUT;
	}
	if (route_parse_host(eq + 1, default_port, r, why_r) != 0)
		return MR_EINVAL_INPUT;
	r->pattern = xstrndup(dom, dlen);
	for (i = 0; i < dlen; i++)
		r->pattern[i] = (char)tolower((unsigned char)r->pattern[i]);
	return 0;
}

static void
route_clear(struct route *r)
{
	free(r->pattern);
	free(r->host);
	r->pattern = r->host = NULL;
}

struct route_table *
route_table_new(const struct conf_list *routes, unsigned default_port,
    struct mr_buf *err)
{
	struct route_table *t = xcalloc(1, sizeof(*t));
	const char *why;
	size_t i, j;

	t->v = xcalloc(routes->n > 0 ? routes->n : 1, sizeof(*t->v));
	for (i = 0; i < routes->n; i++) {
		struct route *r = &t->v[t->n];

		if (route_parse(routes->v[i], default_port, r, &why) != 0) {
			mr_buf_printf(err, "dns.route \"%s\": %s",
			    routes->v[i], why);
			route_clear(r);
			route_table_free(&t);
			return NULL;
		}
		for (j = 0; j < t->n; j++) {
			if (strcmp(t->v[j].pattern, r->pattern) == 0) {
				mr_buf_printf(err, "dns.route \"%s\": a route "
				    "for %s is already defined", routes->v[i],
				    r->pattern);
				route_clear(r);
				route_table_free(&t);
				return NULL;
			}
		}
		t->n++;
	}
	return t;
}

void
route_table_free(struct route_table **tp)
{
	struct route_table *t = *tp;
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++)
		route_clear(&t->v[i]);
	free(t->v);
	free(t);
	*tp = NULL;
}

const struct route *
route_match(const struct route_table *t, const char *domain)
{
	const struct route *star = NULL, *best = NULL;
	size_t len, best_len = 0, plen, i;

	if (t == NULL || t->n == 0)
		return NULL;
	len = strlen(domain);
	if (len > 1 && domain[len - 1] == '.')
		len--;
	if (len == 0)
		return NULL;
	for (i = 0; i < t->n; i++) {
		const struct route *r = &t->v[i];

		plen = strlen(r->pattern);
		if (r->pattern[0] == '*' && plen == 1) {
			star = r;
		} else if (r->pattern[0] == '.') {
			/* ".b.c" matches "a.b.c", never "b.c" itself. */
			if (len > plen && plen > best_len &&
			    strncasecmp(domain + len - plen, r->pattern,
			    plen) == 0) {
				best = r;
				best_len = plen;
			}
		} else if (plen == len &&
		    strncasecmp(domain, r->pattern, len) == 0) {
			return r;
		}
	}
	return best != NULL ? best : star;
}
