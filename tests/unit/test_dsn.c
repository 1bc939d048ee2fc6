/*
 * test_dsn.c - the delivery status notification: its structure, text
 * from elsewhere that cannot break out of a header field, the original
 * header quoted without the body, long headers cut at a line, and the
 * head of the original (DSN_MESSAGE_MAX) as good as all of it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "delivery/dsn.h"

static const char ORIG[] =
    "Received: from c (127.0.0.1)\r\n\tby mr.test\r\n"
    "Subject: hello\r\n\r\nsecret body line\r\n";

static char *
build(const struct dsn_rcpt *r, size_t n, const char *m, size_t mlen)
{
	struct dsn_report rep;
	struct mr_buf out = MR_BUF_INIT;

	memset(&rep, 0, sizeof(rep));
	rep.hostname = "mr.test";
	rep.mail_from = "app@sender.test";
	rep.queue_id = "00000000000000ab";
	rep.arrival = 1795000000;
	rep.now = 1795000600;
	rep.token = "TOKEN123";
	rep.message = (const unsigned char *)m;
	rep.message_len = mlen;
	rep.rcpts = r;
	rep.nrcpts = n;
	dsn_build(&rep, &out);
	return out.data;
}

static void
test_structure(void **state)
{
	struct dsn_rcpt r[2] = {
		{ "a@x.test", "5.1.1", 550, "5.1.1 <a@x.test>: no such user",
		  "mx.x.test" },
		{ "b@x.test", NULL, 0, "message of 9 bytes exceeds the size "
		  "limit of 1", NULL },
	};
	char *s = build(r, 2, ORIG, sizeof(ORIG) - 1);

	(void)state;
	assert_non_null(strstr(s, "To: <app@sender.test>\r\n"));
	assert_non_null(strstr(s, "report-type=delivery-status;"));
	assert_non_null(strstr(s, "boundary=\"TOKEN123/mr.test\""));
	assert_non_null(strstr(s, "Reporting-MTA: dns; mr.test\r\n"));
	assert_non_null(strstr(s, "Final-Recipient: rfc822; a@x.test\r\n"
	    "Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.x.test\r\n"
	    "Diagnostic-Code: smtp; 550 5.1.1 <a@x.test>: no such user\r\n"));
	/* No status from a server: 5.0.0 and our own diagnostic type. */
	assert_non_null(strstr(s, "Final-Recipient: rfc822; b@x.test\r\n"
	    "Action: failed\r\nStatus: 5.0.0\r\nDiagnostic-Code: X-mailroom; "
	    "message of 9 bytes"));
	assert_non_null(strstr(s, "Subject: hello\r\n"));
	assert_null(strstr(s, "secret body line"));
	assert_non_null(strstr(s, "\r\n--TOKEN123/mr.test--\r\n"));
	/* Every line ends in CRLF. */
	for (const char *p = s; (p = strchr(p, '\n')) != NULL; p++)
		assert_true(p > s && p[-1] == '\r');
	free(s);
}

static void
test_reply_cannot_inject_fields(void **state)
{
	struct dsn_rcpt r = { "a@x.test\r\nBcc: evil@x.test", "5.1.1", 550,
	    "no\r\nX-Injected: yes", NULL };
	char *s = build(&r, 1, ORIG, sizeof(ORIG) - 1);

	(void)state;
	assert_null(strstr(s, "\nX-Injected"));
	assert_null(strstr(s, "\nBcc:"));
	assert_non_null(strstr(s, "smtp; 550 no  X-Injected: yes\r\n"));
	free(s);
}

static void
test_long_header_cut_at_a_line(void **state)
{
	size_t n = (DSN_HEADERS_MAX * 2 / 10) * 10, i;
	char *m = malloc(n + 1), *s, *h;
	struct dsn_rcpt r = { "a@x.test", "5.1.1", 550, "x", NULL };

	(void)state;
	for (i = 0; i < n; i += 10)
		memcpy(m + i, "X-Pad: 12\n", 10);	/* LF only: made CRLF */
	m[n] = '\0';
	s = build(&r, 1, m, n);
	h = strstr(s, "text/rfc822-headers\r\n\r\n");
	assert_non_null(h);
	/* Whole lines only, at most the limit (plus the CRs added). */
	assert_true(strlen(h) < DSN_HEADERS_MAX * 12 / 10 + 200);
	assert_non_null(strstr(h, "X-Pad: 12\r\n\r\n--TOKEN123/mr.test--"));
	free(s);
	free(m);
}

/* DSN_MESSAGE_MAX octets of the original make the same report as all
 * of it, wherever near the cut the header ends (LF or CRLF). */
static void
test_message_max_suffices(void **state)
{
	struct dsn_rcpt r = { "a@x.test", "5.1.1", 550, "no such user", NULL };
	size_t n = DSN_HEADERS_MAX * 2, p, i;
	char *m = malloc(n), *whole, *head;
	int crlf;

	(void)state;
	assert_non_null(m);
	for (crlf = 0; crlf < 2; crlf++) {
		for (p = DSN_HEADERS_MAX - 4; p < DSN_HEADERS_MAX + 4; p++) {
			for (i = 0; i < n; i++)
				m[i] = i % 50 == 49 ? '\n' : 'a';
			m[p] = '\n';
			if (crlf) {
				m[p + 1] = '\r';
				m[p + 2] = '\n';
			} else
				m[p + 1] = '\n';
			whole = build(&r, 1, m, n);
			head = build(&r, 1, m, DSN_MESSAGE_MAX);
			assert_string_equal(whole, head);
			free(whole);
			free(head);
		}
	}
	free(m);
}

static void
test_no_original(void **state)
{
	struct dsn_rcpt r = { "a@x.test", "5.1.1", 550, "x", NULL };
	char *s = build(&r, 1, NULL, 0);

	(void)state;
	assert_non_null(strstr(s, "text/rfc822-headers\r\n\r\n\r\n"
	    "--TOKEN123/mr.test--\r\n"));
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_structure),
		cmocka_unit_test(test_reply_cannot_inject_fields),
		cmocka_unit_test(test_long_header_cut_at_a_line),
		cmocka_unit_test(test_no_original),
		cmocka_unit_test(test_message_max_suffices),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
