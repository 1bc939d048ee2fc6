/*
 * test_pop3_cmd.c - the POP3 command parser: verbs, argument shapes, the
 * RFC 2449 limits, and what it refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pop3/pop3_cmd.h"

static enum pop3_parse
parse(const char *line, struct pop3_cmd *cmd)
{
	const char *why;

	return pop3_cmd_parse(line, strlen(line), cmd, &why);
}

static void
test_verbs_and_arguments(void **state)
{
	struct pop3_cmd c;

	(void)state;
	assert_int_equal(parse("user alice@example.test", &c), POP3_OK);
	assert_int_equal(c.verb, POP3_USER);
	assert_int_equal(c.argl[0], strlen("alice@example.test"));
	assert_int_equal(parse("PASS with spaces inside", &c), POP3_OK);
	assert_int_equal(c.restl, strlen("with spaces inside"));
	assert_int_equal(parse("STAT", &c), POP3_OK);
	assert_int_equal(parse("LIST", &c), POP3_OK);
	assert_int_equal(c.argc, 0);
	assert_true(pop3_multiline(&c));
	assert_int_equal(parse("LIST 7", &c), POP3_OK);
	assert_int_equal(c.num[0], 7);
	assert_false(pop3_multiline(&c));
	assert_int_equal(parse("TOP 2 0", &c), POP3_OK);
	assert_int_equal(c.num[1], 0);
	assert_true(pop3_multiline(&c));
	assert_int_equal(parse("AUTH PLAIN AGFsaWNlAHB3MQ==", &c), POP3_OK);
	assert_int_equal(c.argc, 2);
	assert_int_equal(parse("AUTH PLAIN", &c), POP3_OK);
	assert_int_equal(parse("capa", &c), POP3_OK);
	assert_true(pop3_multiline(&c));
	assert_int_equal(parse("UIDL 4294967295", &c), POP3_OK);
	assert_string_equal(pop3_verb_name(POP3_STLS), "STLS");
}

static void
test_refusals(void **state)
{
	static const char *const syntax[] = {
		"RETR", "RETR 0", "RETR x", "RETR 1 2", "DELE -1",
		"LIST 4294967296", "TOP 1", "STAT ", "STAT x", "USER",
		"USER a  b", "USER a ", "PASS", "NOOP 1", "QUIT now",
		"APOP alice", "USER a\rb",
	};
	struct pop3_cmd c;
	char name[200], line[300];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++)
		assert_int_equal(parse(syntax[i], &c), POP3_SYNTAX);
	assert_int_equal(parse("XYZZY", &c), POP3_UNKNOWN);
	assert_int_equal(parse("", &c), POP3_UNKNOWN);
	assert_int_equal(parse("STATS", &c), POP3_UNKNOWN);
	/* A name up to 128 octets, not more. */
	memset(name, 'n', sizeof(name));
	snprintf(line, sizeof(line), "USER %.128s", name);
	assert_int_equal(parse(line, &c), POP3_OK);
	snprintf(line, sizeof(line), "USER %.129s", name);
	assert_int_equal(parse(line, &c), POP3_SYNTAX);
	/* The line limit itself. */
	memset(line, 'a', sizeof(line));
	memcpy(line, "PASS ", 5);
	line[POP3_LINE_MAX + 1] = '\0';
	assert_int_equal(parse(line, &c), POP3_SYNTAX);
	line[POP3_LINE_MAX] = '\0';
	assert_int_equal(parse(line, &c), POP3_OK);
	/* A NUL inside the line. */
	assert_int_equal(pop3_cmd_parse("USER a\0b", 8, &c,
	    &(const char *){ NULL }), POP3_SYNTAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs_and_arguments),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
