/*
 * test_reply.c - SMTP reply lines, multi-line replies, enhanced status
 * codes and EHLO capabilities.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/reply.h"

struct reply_case {
	const char	*label;
	const char	*lines[4];	/* fed in order; NULL ends */
	enum smtp_reply_status last;	/* status after the last line */
	int		 code;
	const char	*esc;
	const char	*oneline;
};

static const struct reply_case reply_cases[] = {
	{ "simple", { "250 OK" }, SMTP_REPLY_DONE, 250, "", "OK" },
	{ "bare code", { "250" }, SMTP_REPLY_DONE, 250, "", "" },
	{ "enhanced", { "550 5.1.1 <x@y>: User unknown" }, SMTP_REPLY_DONE,
	  550, "5.1.1", "5.1.1 <x@y>: User unknown" },
	{ "three-digit detail", { "451 4.7.650 slow down" }, SMTP_REPLY_DONE,
	  451, "4.7.650", "4.7.650 slow down" },
	{ "not enhanced: 4 digits", { "250 2.0.1000 x" }, SMTP_REPLY_DONE,
	  250, "", "2.0.1000 x" },
	{ "not enhanced: no space", { "250 2.0.0x" }, SMTP_REPLY_DONE, 250,
	  "", "2.0.0x" },
	{ "multi-line", { "250-first", "250-second", "250 third" },
	  SMTP_REPLY_DONE, 250, "", "first / second / third" },
	{ "continuation pending", { "250-first" }, SMTP_REPLY_MORE, 250, "",
	  NULL },
	{ "code mismatch", { "250-first", "251 second" }, SMTP_REPLY_BAD, 0,
	  NULL, NULL },
	{ "not digits", { "25x OK" }, SMTP_REPLY_BAD, 0, NULL, NULL },
	{ "short", { "25" }, SMTP_REPLY_BAD, 0, NULL, NULL },
	{ "bad separator", { "250_OK" }, SMTP_REPLY_BAD, 0, NULL, NULL },
	{ "code out of range", { "199 x" }, SMTP_REPLY_BAD, 0, NULL, NULL },
	{ "control characters flattened", { "550 a\tb" }, SMTP_REPLY_DONE,
	  550, "", "a b" },
};

static void
test_reply_table(void **state)
{
	struct smtp_reply r;
	struct mr_buf one = MR_BUF_INIT;
	enum smtp_reply_status st = SMTP_REPLY_BAD;
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
		const struct reply_case *c = &reply_cases[i];

		smtp_reply_init(&r);
		for (j = 0; j < 4 && c->lines[j]; j++)
			st = smtp_reply_feed(&r, c->lines[j],
			    strlen(c->lines[j]));
		if (st != c->last)
			fail_msg("%s: status %d", c->label, st);
		if (st == SMTP_REPLY_DONE) {
			assert_int_equal(r.code, c->code);
			assert_string_equal(r.esc, c->esc);
			smtp_reply_oneline(&r, &one, 1024);
			assert_string_equal(mr_buf_cstr(&one), c->oneline);
		}
		smtp_reply_release(&r);
	}
	mr_buf_release(&one);
}

static void
test_reply_reuse_and_limits(void **state)
{
	struct smtp_reply r;
	struct mr_buf one = MR_BUF_INIT;
	int i;

	(void)state;
	smtp_reply_init(&r);
	assert_int_equal(smtp_reply_feed(&r, "220 hi", 6), SMTP_REPLY_DONE);
	assert_int_equal(smtp_reply_feed(&r, "354 go", 6), SMTP_REPLY_DONE);
	assert_int_equal(r.code, 354);
	assert_int_equal(smtp_reply_class(&r), 3);
	for (i = 0; i < SMTP_REPLY_LINES_MAX; i++)
		assert_int_equal(smtp_reply_feed(&r, "250-x", 5),
		    SMTP_REPLY_MORE);
	assert_int_equal(smtp_reply_feed(&r, "250-x", 5), SMTP_REPLY_BAD);
	smtp_reply_release(&r);
	smtp_reply_init(&r);
	smtp_reply_feed(&r, "250 abcdefghij", 14);
	smtp_reply_oneline(&r, &one, 8);
	assert_string_equal(mr_buf_cstr(&one), "abcde...");
	smtp_reply_release(&r);
	mr_buf_release(&one);
}

static void
test_ehlo_caps(void **state)
{
	static const char *lines[] = {
		"250-mx.example.test Hello", "250-PIPELINING",
		"250-SIZE 10240000", "250-8bitmime", "250-STARTTLS",
		"250-ENHANCEDSTATUSCODES", "250-PIPELININGX", "250 DSN",
	};
	struct smtp_reply r;
	unsigned long size;
	unsigned caps;
	size_t i;

	(void)state;
	smtp_reply_init(&r);
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		smtp_reply_feed(&r, lines[i], strlen(lines[i]));
	caps = smtp_ehlo_caps(&r, &size);
	assert_int_equal(caps, SMTP_CAP_PIPELINING | SMTP_CAP_SIZE |
	    SMTP_CAP_8BITMIME | SMTP_CAP_STARTTLS |
	    SMTP_CAP_ENHANCEDSTATUSCODES | SMTP_CAP_DSN);
	assert_int_equal(size, 10240000);
	smtp_reply_release(&r);
	/* The greeting line is a host name, never a keyword. */
	smtp_reply_init(&r);
	smtp_reply_feed(&r, "250 PIPELINING", 14);
	assert_int_equal(smtp_ehlo_caps(&r, &size), 0);
	smtp_reply_release(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_table),
		cmocka_unit_test(test_reply_reuse_and_limits),
		cmocka_unit_test(test_ehlo_caps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
