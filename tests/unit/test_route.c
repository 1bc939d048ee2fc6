/*
 * test_route.c - static routes: one table row per accepted syntax and per
 * reason for refusal, then precedence (exact, longest suffix, "*") and
 * case-insensitive matching.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dns/route.h"

#define E_FORM		"expected DOMAIN=HOST[:PORT]"
#define E_DOM_EMPTY	"empty domain"
#define E_HOST_EMPTY	"empty host"
#define E_PORT		"bad port (1-65535)"
#define E_V6_BARE	"an IPv6 address must be in brackets ([::1]:25)"
#define E_V6_CLOSE	"missing ']' after IPv6 address"
#define E_V6_BAD	"not an IPv6 address in brackets"
#define E_V6_AFTER	"unexpected text after ']'"
#define E_CHAR		"invalid character in name"
#define E_NAME_EMPTY	"empty name"
#define E_LABEL_EMPTY	"empty label in name"
#define E_LABEL_LONG	"label longer than 63 characters"
#define E_NAME_LONG	"name longer than 253 characters"
#define E_NUMERIC	"not a valid IPv4 address or host name"
#define E_STAR		"write .example.com, not *.example.com, for every " \
			"subdomain"
#define E_DUP		"is already defined"

struct test_route_row {
	const char	*label;
	const char	*input;
	const char	*pattern;	/* NULL: refused */
	const char	*host;		/* or the expected error text */
	unsigned	 port;
	bool		 literal;
};

#define L63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define L64 L63 "a"

static const struct test_route_row test_route_rows[] = {
	/* Accepted: host forms. */
	{ "name, default port", "example.com=relay.test", "example.com",
	    "relay.test", 25, false },
	{ "name with port", "example.com=relay.test:2525", "example.com",
	    "relay.test", 2525, false },
	{ "IPv4", "example.com=192.0.2.1", "example.com", "192.0.2.1", 25,
	    true },
	{ "IPv4 with port", "example.com=192.0.2.1:587", "example.com",
	    "192.0.2.1", 587, true },
	{ "IPv6 in brackets", "example.com=[2001:db8::1]", "example.com",
	    "2001:db8::1", 25, true },
	{ "IPv6 with port", "example.com=[::1]:2525", "example.com", "::1",
	    2525, true },
	{ "v4-mapped IPv6", "x.test=[::ffff:192.0.2.1]:26", "x.test",
	    "::ffff:192.0.2.1", 26, true },
	{ "port 1", "x.test=h.test:1", "x.test", "h.test", 1, false },
	{ "port 65535", "x.test=h.test:65535", "x.test", "h.test", 65535,
	    false },
	{ "host name folded to lower case", "x.test=Relay.TEST", "x.test",
	    "relay.test", 25, false },
	{ "fully qualified host name", "x.test=relay.test.", "x.test",
	    "relay.test", 25, false },
	{ "single-label host name", "x.test=localhost:2525", "x.test",
	    "localhost", 2525, false },
	{ "underscore and hyphen", "x.test=_smtp-1.relay.test", "x.test",
	    "_smtp-1.relay.test", 25, false },
	{ "digits with a letter label", "x.test=1.2.3.example", "x.test",
	    "1.2.3.example", 25, false },

	/* Accepted: domain forms. */
	{ "star", "*=relay.test", "*", "relay.test", 25, false },
	{ "suffix", ".example.com=relay.test", ".example.com", "relay.test",
	    25, false },
	{ "domain folded to lower case", "EXAMPLE.Com=relay.test",
	    "example.com", "relay.test", 25, false },
	{ "domain with final dot", "example.com.=relay.test", "example.com",
	    "relay.test", 25, false },
	{ "63-octet label", L63 ".test=relay.test", L63 ".test",
	    "relay.test", 25, false },

	/* Refused. */
	{ "no equals sign", "example.com", NULL, E_FORM, 0, false },
	{ "empty domain", "=relay.test", NULL, E_DOM_EMPTY, 0, false },
	{ "empty host", "example.com=", NULL, E_HOST_EMPTY, 0, false },
	{ "port only", "example.com=:25", NULL, E_HOST_EMPTY, 0, false },
	{ "empty port", "example.com=relay.test:", NULL, E_PORT, 0, false },
	{ "port 0", "example.com=relay.test:0", NULL, E_PORT, 0, false },
	{ "port 65536", "example.com=relay.test:65536", NULL, E_PORT, 0,
	    false },
	{ "port not a number", "example.com=relay.test:smtp", NULL, E_PORT,
	    0, false },
	{ "port with sign", "example.com=relay.test:+25", NULL, E_PORT, 0,
	    false },
	{ "port too long", "example.com=relay.test:000025", NULL, E_PORT, 0,
	    false },
	{ "bare IPv6", "example.com=::1", NULL, E_V6_BARE, 0, false },
	{ "bare IPv6 with port", "example.com=2001:db8::1:25", NULL,
	    E_V6_BARE, 0, false },
	{ "unclosed bracket", "example.com=[::1", NULL, E_V6_CLOSE, 0,
	    false },
	{ "IPv4 in brackets", "example.com=[192.0.2.1]", NULL, E_V6_BAD, 0,
	    false },
	{ "name in brackets", "example.com=[relay.test]:25", NULL, E_V6_BAD,
	    0, false },
	{ "text after bracket", "example.com=[::1]25", NULL, E_V6_AFTER, 0,
	    false },
	{ "bad port after bracket", "example.com=[::1]:0", NULL, E_PORT, 0,
	    false },
	{ "bad IPv4", "example.com=192.0.2.256", NULL, E_NUMERIC, 0, false },
	{ "short IPv4", "example.com=192.0.2", NULL, E_NUMERIC, 0, false },
	{ "space in host", "example.com=relay test", NULL, E_CHAR, 0, false },
	{ "space in domain", "exa mple.com=relay.test", NULL, E_CHAR, 0,
	    false },
	{ "double dot in host", "example.com=relay..test", NULL,
	    E_LABEL_EMPTY, 0, false },
	{ "double dot in domain", "example..com=relay.test", NULL,
	    E_LABEL_EMPTY, 0, false },
	{ "lone dot domain", ".=relay.test", NULL, E_NAME_EMPTY, 0, false },
	{ "suffix with empty label", "..example.com=relay.test", NULL,
	    E_LABEL_EMPTY, 0, false },
	{ "64-octet label", L64 ".test=relay.test", NULL, E_LABEL_LONG, 0,
	    false },
	{ "wildcard label", "*.example.com=relay.test", NULL, E_STAR, 0,
	    false },
	{ "two equals signs", "a.test=b.test=c.test", NULL, E_CHAR, 0,
	    false },
};

#define TEST_NROWS (sizeof(test_route_rows) / sizeof(test_route_rows[0]))

static struct route_table *
test_route_table(const char *const *specs, size_t n, struct mr_buf *err)
{
	struct conf_list l = { (char **)specs, n };

	return route_table_new(&l, 25, err);
}

static void
test_route_syntax(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < TEST_NROWS; i++) {
		const struct test_route_row *row = &test_route_rows[i];
		struct mr_buf err = MR_BUF_INIT;
		struct route_table *t;
		const struct route *r;
		const char *dom;

		print_message("row: %s\n", row->label);
		t = test_route_table(&row->input, 1, &err);
		if (row->pattern == NULL) {
			assert_null(t);
			assert_non_null(strstr(mr_buf_cstr(&err), row->host));
			/* The message names the route. */
			assert_non_null(strstr(mr_buf_cstr(&err), row->input));
			mr_buf_release(&err);
			continue;
		}
		assert_non_null(t);
		assert_int_equal(err.len, 0);
		/* An exact domain matches itself; the others by example. */
		dom = row->pattern[0] == '*' ? "any.where" :
		    row->pattern[0] == '.' ? "sub.example.com" : row->pattern;
		r = route_match(t, dom);
		assert_non_null(r);
		assert_string_equal(r->pattern, row->pattern);
		assert_string_equal(r->host, row->host);
		assert_int_equal(r->port, row->port);
		assert_int_equal(r->literal, row->literal);
		route_table_free(&t);
		assert_null(t);
	}
}

static void
test_route_long_name(void **state)
{
	struct mr_buf err = MR_BUF_INIT;
	char spec[600];
	const char *p = spec;
	struct route_table *t;
	size_t n;

	(void)state;
	/* 253 octets: 63.63.63.61 */
	n = (size_t)snprintf(spec, sizeof(spec), "%s.%s.%s.%.61s=relay.test",
	    L63, L63, L63, L63);
	assert_true(n < sizeof(spec));
	t = test_route_table(&p, 1, &err);
	assert_non_null(t);
	route_table_free(&t);
	/* 254 octets: one too many. */
	snprintf(spec, sizeof(spec), "%s.%s.%s.%.62s=relay.test", L63, L63,
	    L63, L63);
	t = test_route_table(&p, 1, &err);
	assert_null(t);
	assert_non_null(strstr(mr_buf_cstr(&err), E_NAME_LONG));
	mr_buf_release(&err);
}

static void
test_route_duplicate(void **state)
{
	const char *specs[] = { "a.test=h1.test", "A.TEST.=h2.test" };
	struct mr_buf err = MR_BUF_INIT;

	(void)state;
	assert_null(test_route_table(specs, 2, &err));
	assert_non_null(strstr(mr_buf_cstr(&err), E_DUP));
	assert_non_null(strstr(mr_buf_cstr(&err), "A.TEST.=h2.test"));
	mr_buf_release(&err);
}

/* The first bad route fails the table, whatever comes before it. */
static void
test_route_bad_among_good(void **state)
{
	const char *specs[] = { "a.test=h1.test", "b.test=h2.test:99999",
	    "c.test=h3.test" };
	struct mr_buf err = MR_BUF_INIT;

	(void)state;
	assert_null(test_route_table(specs, 3, &err));
	assert_string_equal(mr_buf_cstr(&err),
	    "dns.route \"b.test=h2.test:99999\": " E_PORT);
	mr_buf_release(&err);
}

struct test_match_row {
	const char	*domain;
	const char	*pattern;	/* NULL: no route */
};

static void
test_route_precedence(void **state)
{
	static const char *specs[] = {
		"*=star.test",
		".example.com=sub.test",
		".b.example.com=subsub.test",
		"a.b.example.com=exact.test",
		"example.com=apex.test",
		".org=org.test",
	};
	static const struct test_match_row rows[] = {
		{ "a.b.example.com", "a.b.example.com" },	/* exact */
		{ "A.B.Example.COM", "a.b.example.com" },	/* any case */
		{ "a.b.example.com.", "a.b.example.com" },	/* final dot */
		{ "c.b.example.com", ".b.example.com" },	/* longest */
		{ "x.c.b.example.com", ".b.example.com" },
		{ "b.example.com", ".example.com" },	/* not itself */
		{ "z.example.com", ".example.com" },
		{ "example.com", "example.com" },	/* exact apex */
		{ "EXAMPLE.COM", "example.com" },
		{ "xexample.com", "*" },		/* label boundary */
		{ "com", "*" },
		{ "wikipedia.org", ".org" },
		{ "org", "*" },
		{ "other.test", "*" },
	};
	struct mr_buf err = MR_BUF_INIT;
	struct route_table *t;
	const struct route *r;
	size_t i;

	(void)state;
	t = test_route_table(specs, sizeof(specs) / sizeof(specs[0]), &err);
	assert_non_null(t);
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		print_message("domain: %s\n", rows[i].domain);
		r = route_match(t, rows[i].domain);
		assert_non_null(r);
		assert_string_equal(r->pattern, rows[i].pattern);
	}
	route_table_free(&t);
}

static void
test_route_no_star(void **state)
{
	static const char *specs[] = {
		".example.com=sub.test",
		"example.net=[::1]:2525",
	};
	struct mr_buf err = MR_BUF_INIT;
	struct route_table *t;
	const struct route *r;

	(void)state;
	t = test_route_table(specs, 2, &err);
	assert_non_null(t);
	assert_null(route_match(t, "example.com"));
	assert_null(route_match(t, "example.org"));
	assert_null(route_match(t, ""));
	assert_null(route_match(t, "."));
	assert_null(route_match(t, "com"));
	r = route_match(t, "Example.NET");
	assert_non_null(r);
	assert_string_equal(r->host, "::1");
	assert_int_equal(r->port, 2525);
	route_table_free(&t);
}

static void
test_route_empty(void **state)
{
	struct mr_buf err = MR_BUF_INIT;
	struct route_table *t;

	(void)state;
	t = test_route_table(NULL, 0, &err);
	assert_non_null(t);
	assert_null(route_match(t, "example.com"));
	route_table_free(&t);
	route_table_free(&t);		/* NULL: nothing */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_syntax),
		cmocka_unit_test(test_route_long_name),
		cmocka_unit_test(test_route_duplicate),
		cmocka_unit_test(test_route_bad_among_good),
		cmocka_unit_test(test_route_precedence),
		cmocka_unit_test(test_route_no_star),
		cmocka_unit_test(test_route_empty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
