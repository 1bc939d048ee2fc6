/*
 * test_addr.c - smtp_addr_check(): one table row per RFC 5321 rule and per
 * reason for refusal, then the length limits exactly at and one past each
 * boundary, with addresses built to the length under test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/addr.h"

/* The reasons, spelled out once. */
#define E_EMPTY		"empty address"
#define E_UTF8		"non-ASCII character in address (needs SMTPUTF8, " \
			"not supported)"
#define E_NO_AT		"no @ in address"
#define E_LOCAL_EMPTY	"empty local part"
#define E_LDOT_FIRST	"local part starts with a dot"
#define E_LDOT_LAST	"local part ends with a dot"
#define E_LDOTS		"two consecutive dots in local part"
#define E_LCHAR		"invalid character in local part (quote it, or " \
			"remove it)"
#define E_QOPEN		"unterminated quoted local part"
#define E_QCHAR		"invalid character in quoted local part"
#define E_QAFTER	"text between quoted local part and @"
#define E_LOCAL_LONG	"local part longer than 64 octets"
#define E_DOM_EMPTY	"empty domain"
#define E_DOM_LONG	"domain longer than 255 octets"
#define E_DDOT_FIRST	"domain starts with a dot"
#define E_DDOT_LAST	"domain ends with a dot"
#define E_DDOTS		"two consecutive dots in domain"
#define E_DCHAR		"invalid character in domain (letters, digits, " \
			"hyphens and dots only)"
#define E_LABEL_LONG	"domain label longer than 63 octets"
#define E_HYPHEN_FIRST	"domain label starts with a hyphen"
#define E_HYPHEN_LAST	"domain label ends with a hyphen"
#define E_SINGLE	"domain has a single label (such as localhost): " \
			"refused for delivery"
#define E_LIT_OPEN	"address literal without closing ]"
#define E_LIT_AFTER	"text after the closing ] of address literal"
#define E_LIT_V4	"invalid IPv4 address literal"
#define E_LIT_V6	"invalid IPv6 address literal"
#define E_LIT_TAG	"unsupported address literal (only [IPv4] and " \
			"[IPv6:...])"
#define E_LONG		"address longer than 254 octets"

struct test_addr_row {
	const char	*label;
	const char	*input;
	size_t		 len;		/* 0: strlen(input) */
	const char	*expected;	/* NULL: valid */
	size_t		 at;		/* offset of '@' when valid */
};

static const struct test_addr_row test_addr_rows[] = {
	/* Valid: Dot-string local parts. */
	{ "simple", "user@example.com", 0, NULL, 4 },
	{ "dotted local part", "first.last@example.com", 0, NULL, 10 },
	{ "every atext special", "!#$%&'*+-/=?^_`{|}~@example.com", 0, NULL,
	    19 },
	{ "one-octet local part", "a@example.com", 0, NULL, 1 },
	{ "upper case", "USER@EXAMPLE.COM", 0, NULL, 4 },
	{ "plus tag", "user+tag@example.com", 0, NULL, 8 },

	/* Valid: Quoted-string local parts. */
	{ "quoted", "\"john\"@example.com", 0, NULL, 6 },
	{ "quoted space and @", "\"john doe@x\"@example.com", 0, NULL, 12 },
	{ "quoted escaped quote", "\"a\\\"b\"@example.com", 0, NULL, 6 },
	{ "quoted escaped backslash", "\"a\\\\b\"@example.com", 0, NULL, 6 },
	{ "quoted dots", "\"..\"@example.com", 0, NULL, 4 },
	{ "quoted-pair of a letter", "\"\\a\"@example.com", 0, NULL, 4 },

	/* Valid: domains. */
	{ "hyphens inside labels", "a@mail-1.ex--ample.co.uk", 0, NULL, 1 },
	{ "digits in labels", "a@123.456", 0, NULL, 1 },
	{ "one-octet labels", "a@b.c", 0, NULL, 1 },
	{ "IPv4 literal", "a@[192.0.2.1]", 0, NULL, 1 },
	{ "IPv6 literal", "a@[IPv6:2001:db8::1]", 0, NULL, 1 },
	{ "IPv6 tag in lower case", "a@[ipv6:::1]", 0, NULL, 1 },
	{ "IPv6 with IPv4 tail", "a@[IPv6:::ffff:192.0.2.1]", 0, NULL, 1 },
	{ "IPv6 in full", "a@[IPv6:1:2:3:4:5:6:7:8]", 0, NULL, 1 },
	{ "@ in quotes, then literal", "\"@\"@[10.0.0.1]", 0, NULL, 3 },

	/* Whole address. */
	{ "empty", "", 0, E_EMPTY, 0 },
	{ "UTF-8 in local part", "j\xC3\xB6rg@example.com", 0, E_UTF8, 0 },
	{ "UTF-8 in domain", "a@b\xC3\xBC" "cher.de", 0, E_UTF8, 0 },
	{ "Latin-1 byte", "caf\xE9@example.com", 0, E_UTF8, 0 },
	{ "no @", "user.example.com", 0, E_NO_AT, 0 },
	{ "quoted, no @", "\"user\"", 0, E_NO_AT, 0 },

	/* Local part. */
	{ "empty local part", "@example.com", 0, E_LOCAL_EMPTY, 0 },
	{ "empty quoted local part", "\"\"@example.com", 0, E_LOCAL_EMPTY,
	    0 },
	{ "leading dot", ".user@example.com", 0, E_LDOT_FIRST, 0 },
	{ "lone dot", ".@example.com", 0, E_LDOT_FIRST, 0 },
	{ "trailing dot", "user.@example.com", 0, E_LDOT_LAST, 0 },
	{ "two dots", "us..er@example.com", 0, E_LDOTS, 0 },
	{ "space", "us er@example.com", 0, E_LCHAR, 0 },
	{ "parenthesis (comment)", "user(c)@example.com", 0, E_LCHAR, 0 },
	{ "angle bracket", "<user@example.com", 0, E_LCHAR, 0 },
	{ "comma", "a,b@example.com", 0, E_LCHAR, 0 },
	{ "tab", "us\ter@example.com", 0, E_LCHAR, 0 },
	{ "NUL", "us\0er@example.com", 17, E_LCHAR, 0 },
	{ "DEL", "us\x7F" "er@example.com", 0, E_LCHAR, 0 },
	{ "backslash unquoted", "a\\b@example.com", 0, E_LCHAR, 0 },
	{ "quote inside dot-string", "a\"b\"@example.com", 0, E_LCHAR, 0 },
	{ "unterminated quote", "\"user@example.com", 0, E_QOPEN, 0 },
	{ "backslash at end", "\"user\\", 0, E_QOPEN, 0 },
	{ "escaped closing quote", "\"user\\\"@example.com", 0, E_QOPEN, 0 },
	{ "tab in quotes", "\"a\tb\"@example.com", 0, E_QCHAR, 0 },
	{ "quoted-pair of a tab", "\"a\\\tb\"@example.com", 0, E_QCHAR, 0 },
	{ "CR in quotes", "\"a\rb\"@example.com", 0, E_QCHAR, 0 },
	{ "text after quotes", "\"a\"b@example.com", 0, E_QAFTER, 0 },
	{ "dot after quotes", "\"a\".b@example.com", 0, E_QAFTER, 0 },

	/* Domain. */
	{ "empty domain", "user@", 0, E_DOM_EMPTY, 0 },
	{ "domain leading dot", "user@.example.com", 0, E_DDOT_FIRST, 0 },
	{ "domain only a dot", "user@.", 0, E_DDOT_FIRST, 0 },
	{ "domain trailing dot (root)", "user@example.com.", 0, E_DDOT_LAST,
	    0 },
	{ "domain two dots", "user@example..com", 0, E_DDOTS, 0 },
	{ "underscore in domain", "user@exa_mple.com", 0, E_DCHAR, 0 },
	{ "space in domain", "user@exa mple.com", 0, E_DCHAR, 0 },
	{ "second @", "a@b@example.com", 0, E_DCHAR, 0 },
	{ "NUL in domain", "user@exam\0ple.com", 17, E_DCHAR, 0 },
	{ "trailing angle bracket", "user@example.com>", 0, E_DCHAR, 0 },
	{ "leading hyphen", "user@-example.com", 0, E_HYPHEN_FIRST, 0 },
	{ "leading hyphen, last label", "user@example.-com", 0,
	    E_HYPHEN_FIRST, 0 },
	{ "trailing hyphen", "user@example-.com", 0, E_HYPHEN_LAST, 0 },
	{ "trailing hyphen, last label", "user@example.com-", 0,
	    E_HYPHEN_LAST, 0 },
	{ "label of one hyphen", "user@-.com", 0, E_HYPHEN_FIRST, 0 },
	{ "single label localhost", "user@localhost", 0, E_SINGLE, 0 },
	{ "single one-octet label", "user@a", 0, E_SINGLE, 0 },

	/* Address literals. */
	{ "literal not closed", "a@[192.0.2.1", 0, E_LIT_OPEN, 0 },
	{ "literal only [", "a@[", 0, E_LIT_OPEN, 0 },
	{ "text after literal", "a@[192.0.2.1]x", 0, E_LIT_AFTER, 0 },
	{ "two closing brackets", "a@[192.0.2.1]]", 0, E_LIT_AFTER, 0 },
	{ "IPv4 octet 256", "a@[192.0.2.256]", 0, E_LIT_V4, 0 },
	{ "IPv4 three parts", "a@[192.0.2]", 0, E_LIT_V4, 0 },
	{ "IPv4 five parts", "a@[1.2.3.4.5]", 0, E_LIT_V4, 0 },
	{ "IPv4 leading zero (inet_pton)", "a@[1.2.3.04]", 0, E_LIT_V4, 0 },
	{ "empty literal", "a@[]", 0, E_LIT_V4, 0 },
	{ "host name in brackets", "a@[example.com]", 0, E_LIT_V4, 0 },
	{ "NUL inside IPv4 literal", "a@[1.0.2.1\0]", 12, E_LIT_V4, 0 },
	{ "space inside IPv4 literal", "a@[1.0.2.1 ]", 0, E_LIT_V4, 0 },
	{ "NUL inside IPv6 literal", "a@[IPv6:::1\0]", 13, E_LIT_V6, 0 },
	{ "IPv6 bad hex", "a@[IPv6:2001:db8::g]", 0, E_LIT_V6, 0 },
	{ "IPv6 two ::", "a@[IPv6:1::2::3]", 0, E_LIT_V6, 0 },
	{ "IPv6 nine groups", "a@[IPv6:1:2:3:4:5:6:7:8:9]", 0, E_LIT_V6, 0 },
	{ "IPv6 tag with IPv4", "a@[IPv6:192.0.2.1]", 0, E_LIT_V6, 0 },
	{ "IPv6 empty", "a@[IPv6:]", 0, E_LIT_V6, 0 },
	{ "IPv6 zone id", "a@[IPv6:fe80::1%eth0]", 0, E_LIT_V6, 0 },
	{ "IPv6 too long for inet_pton", "a@[IPv6:0000:0000:0000:0000:0000:"
	    "0000:0000:0000:0000:0000]", 0, E_LIT_V6, 0 },
	{ "IPv6 without its tag", "a@[2001:db8::1]", 0, E_LIT_TAG, 0 },
	{ "general literal tag", "a@[x-tag:content]", 0, E_LIT_TAG, 0 },
};

/*
 * Length boundaries.  The address is built as a local part of local_len
 * octets ('l', or '"' + 'q'... + '"' when quoted) and a domain of
 * domain_len octets: labels of label_len octets and dots, then ".com".
 */
struct test_addr_len_row {
	const char	*label;
	size_t		 local_len;
	int		 quoted;
	size_t		 label_len;
	size_t		 domain_len;
	const char	*expected;
};

static const struct test_addr_len_row test_addr_len_rows[] = {
	{ "local part 64", 64, 0, 50, 11, NULL },
	{ "local part 65", 65, 0, 50, 11, E_LOCAL_LONG },
	{ "quoted local part 64 with quotes", 64, 1, 50, 11, NULL },
	{ "quoted local part 65 with quotes", 65, 1, 50, 11, E_LOCAL_LONG },
	{ "label 63", 1, 0, 63, 67, NULL },
	{ "label 64", 1, 0, 64, 68, E_LABEL_LONG },
	{ "domain 252, address 254", 1, 0, 63, 252, NULL },
	{ "domain 255 passes, address 257 fails", 1, 0, 63, 255, E_LONG },
	{ "domain 256", 1, 0, 63, 256, E_DOM_LONG },
	{ "address 254 (64 + 1 + 189)", 64, 0, 63, 189, NULL },
	{ "address 255 (64 + 1 + 190)", 64, 0, 63, 190, E_LONG },
	{ "quoted address 254", 64, 1, 63, 189, NULL },
	{ "quoted address 255", 64, 1, 63, 190, E_LONG },
};

static int
test_addr_same(const char *got, const char *want)
{
	if (got == NULL || want == NULL)
		return got == want;
	return strcmp(got, want) == 0;
}

static void
test_addr_table(void **state)
{
	const struct test_addr_row *r;
	const char *got;
	size_t i, n, at;

	(void)state;
	for (i = 0; i < sizeof(test_addr_rows) / sizeof(*r); i++) {
		r = &test_addr_rows[i];
		n = r->len ? r->len : strlen(r->input);
		at = (size_t)-1;
		got = smtp_addr_check(r->input, n, &at);
		if (!test_addr_same(got, r->expected))
			fail_msg("%s: got '%s', want '%s'", r->label,
			    got ? got : "valid",
			    r->expected ? r->expected : "valid");
		if (got == NULL && at != r->at)
			fail_msg("%s: @ at %zu, want %zu", r->label, at,
			    r->at);
		/* at_r may be NULL. */
		assert_true(test_addr_same(smtp_addr_check(r->input, n, NULL),
		    r->expected));
	}
}

static void
test_addr_lengths(void **state)
{
	const struct test_addr_len_row *r;
	char buf[600];
	const char *got;
	size_t i, k, n, d, start, at;

	(void)state;
	for (i = 0; i < sizeof(test_addr_len_rows) / sizeof(*r); i++) {
		r = &test_addr_len_rows[i];
		n = 0;
		for (k = 0; k < r->local_len; k++)
			buf[n++] = 'l';
		if (r->quoted) {
			buf[0] = '"';
			buf[r->local_len - 1] = '"';
		}
		buf[n++] = '@';
		start = n;
		/* Labels and dots up to domain_len - 4, then ".com". */
		for (d = 0; d < r->domain_len - 4; d++)
			buf[n++] = d % (r->label_len + 1) == r->label_len ?
			    '.' : 'd';
		assert_true(buf[n - 1] != '.');
		memcpy(buf + n, ".com", 4);
		n += 4;
		assert_int_equal(n - start, r->domain_len);
		assert_int_equal(n, r->local_len + 1 + r->domain_len);
		got = smtp_addr_check(buf, n, &at);
		if (!test_addr_same(got, r->expected))
			fail_msg("%s: got '%s', want '%s'", r->label,
			    got ? got : "valid",
			    r->expected ? r->expected : "valid");
		if (got == NULL)
			assert_int_equal(at, r->local_len);
	}
}

/* Each reason is distinct, so a reject file names one rule. */
static void
test_addr_distinct(void **state)
{
	const char *seen[64];
	const char *got;
	size_t i, j, nseen = 0;

	(void)state;
	for (i = 0; i < sizeof(test_addr_rows) / sizeof(*test_addr_rows);
	    i++) {
		got = smtp_addr_check(test_addr_rows[i].input,
		    test_addr_rows[i].len ? test_addr_rows[i].len :
		    strlen(test_addr_rows[i].input), NULL);
		if (got == NULL)
			continue;
		for (j = 0; j < nseen; j++)
			if (seen[j] == got)
				break;
		if (j < nseen)
			continue;
		/* A new reason: its text must differ from the others. */
		for (j = 0; j < nseen; j++)
			if (strcmp(seen[j], got) == 0)
				fail_msg("two rules share '%s'", got);
		assert_true(nseen < sizeof(seen) / sizeof(*seen));
		seen[nseen++] = got;
	}
	/* Every refusal but the length ones appears in the table. */
	assert_int_equal(nseen, 28 - 4);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_table),
		cmocka_unit_test(test_addr_lengths),
		cmocka_unit_test(test_addr_distinct),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
