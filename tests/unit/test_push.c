/*
 * test_push.c - new-mail notification bodies from Dovecot: well-formed,
 * the malformed ones Dovecot is known to send, and what must be refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pop3edge/push.h"

static int
parse(const char *body, struct push_note *n)
{
	const char *why;

	return push_parse(body, strlen(body), n, &why);
}

static void
test_dovecot_bodies(void **state)
{
	struct push_note n;

	(void)state;
	assert_int_equal(parse("{\"user\":\"alice\",\"event\":\"messageNew\","
	    "\"folder\":\"INBOX\",\"imap-uidvalidity\":1795397722,"
	    "\"imap-uid\":2,\"from\":\"Bob <bob@example.test>\","
	    "\"subject\":\"Hello\",\"snippet\":\"Body\",\"unseen\":2}", &n), 0);
	assert_string_equal(n.user, "alice");
	assert_true(n.message_new);
	/* A broken "from" (a message without From) still names the user. */
	assert_int_equal(parse("{\"user\":\"bob@x.test\",\"event\":"
	    "\"messageNew\",\"from\":\"x\"y\",\"subject\":\"s\"}", &n), 0);
	assert_string_equal(n.user, "bob@x.test");
	/* Spaces, escapes, \u escapes (UTF-8 out), member order. */
	assert_int_equal(parse(" { \"event\" : \"messageNew\" , \"user\" : "
	    "\"j\\u00f6rg\\/x\" } ", &n), 0);
	assert_string_equal(n.user, "j\xc3\xb6rg/x");
	assert_int_equal(parse("{\"user\":\"a\",\"event\":\"flagsSet\"}", &n),
	    0);
	assert_false(n.message_new);
	/* "user" inside another member's value is not the member. */
	assert_int_equal(parse("{\"subject\":\"x \\\"user\\\":\\\"mallory\\\"\","
	    "\"user\":\"carol\"}", &n), 0);
	assert_string_equal(n.user, "carol");
}

static void
test_refusals(void **state)
{
	static const char *const bad[] = {
		"", "not json", "[\"user\"]", "{}", "{\"event\":\"messageNew\"}",
		"{\"user\":\"\"}", "{\"user\":17}", "{\"user\":\"a b\"}",
		"{\"user\":\"a\\nb\"}", "{\"user\":\"a\\u0000\"}",
		"{\"user\":\"unterminated", "{\"user\":\"\\ud800\"}",
		"{\"user\":\"a\x01\"}",
	};
	struct push_note n;
	char big[400];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], &n), -1);
	memset(big, 'u', sizeof(big));
	memcpy(big, "{\"user\":\"", 9);
	memcpy(big + 9 + PUSH_USER_MAX + 1, "\"}", 3);
	assert_int_equal(parse(big, &n), -1);
	memcpy(big + 9 + PUSH_USER_MAX, "\"}", 3);
	assert_int_equal(parse(big, &n), 0);
	assert_int_equal(n.userlen, PUSH_USER_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dovecot_bodies),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
