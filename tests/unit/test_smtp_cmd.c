/*
 * test_smtp_cmd.c - the SMTP server's command parser: verbs, MAIL/RCPT
 * paths and parameters, the line limit, what it refuses, base64 and the
 * SASL PLAIN/LOGIN responses, and the DATA line rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "smtps/smtp_cmd.h"

static enum smtp_parse
parse(const char *line, struct smtp_cmd *cmd)
{
	const char *why;

	return smtp_cmd_parse(line, strlen(line), cmd, &why);
}

static void
assert_span(const char *p, size_t n, const char *want)
{
	assert_int_equal(n, strlen(want));
	assert_memory_equal(p, want, n);
}

/* One row per rule: a line, the result, and the verb when it parses. */
static const struct {
	const char		*label;
	const char		*line;
	enum smtp_parse		 want;
	enum smtp_verb		 verb;
} cmd_table[] = {
	{ "EHLO", "EHLO client.test", SMTP_PARSE_OK, SMTP_EHLO },
	{ "lower case verb", "ehlo client.test", SMTP_PARSE_OK, SMTP_EHLO },
	{ "mixed case verb", "HeLo client.test", SMTP_PARSE_OK, SMTP_HELO },
	{ "address literal", "EHLO [127.0.0.1]", SMTP_PARSE_OK, SMTP_EHLO },
	{ "EHLO without a name", "EHLO", SMTP_PARSE_SYNTAX, SMTP_EHLO },
	{ "EHLO with spaces only", "EHLO   ", SMTP_PARSE_SYNTAX, SMTP_EHLO },
	{ "EHLO with a comment", "EHLO a.test (evil) by x", SMTP_PARSE_SYNTAX,
	    SMTP_EHLO },
	{ "HELO with a semicolon", "HELO a;b", SMTP_PARSE_SYNTAX, SMTP_HELO },
	{ "EHLO v6 literal", "EHLO [IPv6:::1]", SMTP_PARSE_OK, SMTP_EHLO },
	{ "EHLO with an underscore", "EHLO my_pc.lan", SMTP_PARSE_OK,
	    SMTP_EHLO },
	{ "DATA", "DATA", SMTP_PARSE_OK, SMTP_DATA },
	{ "DATA with an argument", "DATA x", SMTP_PARSE_SYNTAX, SMTP_DATA },
	{ "QUIT with a trailing space", "QUIT ", SMTP_PARSE_OK, SMTP_QUIT },
	{ "RSET with an argument", "RSET now", SMTP_PARSE_SYNTAX, SMTP_RSET },
	{ "NOOP with text", "NOOP hello", SMTP_PARSE_OK, SMTP_NOOP },
	{ "VRFY", "VRFY alice", SMTP_PARSE_OK, SMTP_VRFY },
	{ "VRFY without argument", "VRFY", SMTP_PARSE_SYNTAX, SMTP_VRFY },
	{ "EXPN", "EXPN list", SMTP_PARSE_OK, SMTP_EXPN },
	{ "HELP", "HELP", SMTP_PARSE_OK, SMTP_HELP },
	{ "STARTTLS", "starttls", SMTP_PARSE_OK, SMTP_STARTTLS },
	{ "STARTTLS with junk", "STARTTLS x", SMTP_PARSE_SYNTAX,
	    SMTP_STARTTLS },
	{ "AUTH PLAIN", "AUTH PLAIN", SMTP_PARSE_OK, SMTP_AUTH },
	{ "AUTH with initial response", "AUTH PLAIN AHUAcA==", SMTP_PARSE_OK,
	    SMTP_AUTH },
	{ "AUTH with an empty response", "AUTH LOGIN =", SMTP_PARSE_OK,
	    SMTP_AUTH },
	{ "AUTH without mechanism", "AUTH", SMTP_PARSE_SYNTAX, SMTP_AUTH },
	{ "AUTH with three words", "AUTH PLAIN a b", SMTP_PARSE_SYNTAX,
	    SMTP_AUTH },
	{ "AUTH mechanism too long", "AUTH ABCDEFGHIJKLMNOPQRSTU",
	    SMTP_PARSE_SYNTAX, SMTP_AUTH },
	{ "AUTH bad mechanism", "AUTH PL@IN", SMTP_PARSE_SYNTAX, SMTP_AUTH },
	{ "MAIL", "MAIL FROM:<a@b.test>", SMTP_PARSE_OK, SMTP_MAIL },
	{ "MAIL lower case", "mail from:<a@b.test>", SMTP_PARSE_OK,
	    SMTP_MAIL },
	{ "MAIL null sender", "MAIL FROM:<>", SMTP_PARSE_OK, SMTP_MAIL },
	{ "MAIL space after colon", "MAIL FROM: <a@b.test>", SMTP_PARSE_OK,
	    SMTP_MAIL },
	{ "MAIL bare address", "MAIL FROM:a@b.test", SMTP_PARSE_OK,
	    SMTP_MAIL },
	{ "MAIL without FROM", "MAIL <a@b.test>", SMTP_PARSE_SYNTAX,
	    SMTP_MAIL },
	{ "MAIL TO instead of FROM", "MAIL TO:<a@b.test>", SMTP_PARSE_SYNTAX,
	    SMTP_MAIL },
	{ "MAIL nothing after colon", "MAIL FROM:", SMTP_PARSE_SYNTAX,
	    SMTP_MAIL },
	{ "MAIL unclosed path", "MAIL FROM:<a@b.test", SMTP_PARSE_SYNTAX,
	    SMTP_MAIL },
	{ "MAIL garbage after path", "MAIL FROM:<a@b.test>x",
	    SMTP_PARSE_SYNTAX, SMTP_MAIL },
	{ "MAIL no domain", "MAIL FROM:<alice>", SMTP_PARSE_ADDR, SMTP_MAIL },
	{ "MAIL bad domain", "MAIL FROM:<a@-b.test>", SMTP_PARSE_ADDR,
	    SMTP_MAIL },
	{ "MAIL non-ASCII", "MAIL FROM:<\xc3\xa9@b.test>", SMTP_PARSE_ADDR,
	    SMTP_MAIL },
	{ "MAIL SIZE", "MAIL FROM:<a@b.test> SIZE=1000", SMTP_PARSE_OK,
	    SMTP_MAIL },
	{ "MAIL size lower case", "MAIL FROM:<a@b.test> size=1",
	    SMTP_PARSE_OK, SMTP_MAIL },
	{ "MAIL SIZE empty", "MAIL FROM:<a@b.test> SIZE=", SMTP_PARSE_SYNTAX,
	    SMTP_MAIL },
	{ "MAIL SIZE no value", "MAIL FROM:<a@b.test> SIZE",
	    SMTP_PARSE_SYNTAX, SMTP_MAIL },
	{ "MAIL SIZE not a number", "MAIL FROM:<a@b.test> SIZE=12k",
	    SMTP_PARSE_SYNTAX, SMTP_MAIL },
	{ "MAIL SIZE negative", "MAIL FROM:<a@b.test> SIZE=-1",
	    SMTP_PARSE_SYNTAX, SMTP_MAIL },
	{ "MAIL SIZE overflow",
	    "MAIL FROM:<a@b.test> SIZE=18446744073709551616",
	    SMTP_PARSE_SYNTAX, SMTP_MAIL },
	{ "MAIL SIZE twice", "MAIL FROM:<a@b.test> SIZE=1 SIZE=2",
	    SMTP_PARSE_SYNTAX, SMTP_MAIL },
	{ "MAIL BODY=8BITMIME", "MAIL FROM:<a@b.test> BODY=8BITMIME",
	    SMTP_PARSE_OK, SMTP_MAIL },
	{ "MAIL BODY=7bit", "MAIL FROM:<a@b.test> BODY=7bit", SMTP_PARSE_OK,
	    SMTP_MAIL },
	{ "MAIL BODY=BINARYMIME", "MAIL FROM:<a@b.test> BODY=BINARYMIME",
	    SMTP_PARSE_PARAM, SMTP_MAIL },
	{ "MAIL AUTH=<>", "MAIL FROM:<a@b.test> AUTH=<>", SMTP_PARSE_OK,
	    SMTP_MAIL },
	{ "MAIL unknown parameter", "MAIL FROM:<a@b.test> SMTPUTF8",
	    SMTP_PARSE_PARAM, SMTP_MAIL },
	{ "MAIL bad parameter name", "MAIL FROM:<a@b.test> S*ZE=1",
	    SMTP_PARSE_SYNTAX, SMTP_MAIL },
	{ "MAIL empty keyword", "MAIL FROM:<a@b.test> =1",
	    SMTP_PARSE_SYNTAX, SMTP_MAIL },
	{ "RCPT", "RCPT TO:<c@d.test>", SMTP_PARSE_OK, SMTP_RCPT },
	{ "RCPT Postmaster", "RCPT TO:<Postmaster>", SMTP_PARSE_OK,
	    SMTP_RCPT },
	{ "RCPT empty", "RCPT TO:<>", SMTP_PARSE_ADDR, SMTP_RCPT },
	{ "RCPT with NOTIFY", "RCPT TO:<c@d.test> NOTIFY=NEVER",
	    SMTP_PARSE_PARAM, SMTP_RCPT },
	{ "RCPT source route", "RCPT TO:<@relay.test,@x.test:c@d.test>",
	    SMTP_PARSE_OK, SMTP_RCPT },
	{ "RCPT bad source route", "RCPT TO:<@relay.test>", SMTP_PARSE_ADDR,
	    SMTP_RCPT },
	{ "MAIL route to nothing", "MAIL FROM:<@a.test,@b.test:>",
	    SMTP_PARSE_ADDR, SMTP_MAIL },
	{ "RCPT FROM instead of TO", "RCPT FROM:<c@d.test>",
	    SMTP_PARSE_SYNTAX, SMTP_RCPT },
	{ "RCPT quoted with >", "RCPT TO:<\"a>b\"@d.test>", SMTP_PARSE_OK,
	    SMTP_RCPT },
	{ "unknown verb", "XYZZY", SMTP_PARSE_UNKNOWN, SMTP_HELO },
	{ "empty line", "", SMTP_PARSE_UNKNOWN, SMTP_HELO },
	{ "verb prefix", "EHLOX a", SMTP_PARSE_UNKNOWN, SMTP_HELO },
	{ "BDAT not offered", "BDAT 10 LAST", SMTP_PARSE_UNKNOWN, SMTP_HELO },
	{ "CR inside", "NOOP a\rb", SMTP_PARSE_SYNTAX, SMTP_HELO },
};

static void
test_command_table(void **state)
{
	struct smtp_cmd c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++) {
		enum smtp_parse got = parse(cmd_table[i].line, &c);

		if (got != cmd_table[i].want)
			fail_msg("%s: \"%s\" gave %d, want %d",
			    cmd_table[i].label, cmd_table[i].line, got,
			    cmd_table[i].want);
		if (got == SMTP_PARSE_OK && c.verb != cmd_table[i].verb)
			fail_msg("%s: verb %d", cmd_table[i].label, c.verb);
	}
	assert_string_equal(smtp_verb_name(SMTP_STARTTLS), "STARTTLS");
	assert_string_equal(smtp_verb_name(SMTP_NVERBS), "?");
}

static void
test_arguments(void **state)
{
	struct smtp_cmd c;

	(void)state;
	assert_int_equal(parse("EHLO client.test", &c), SMTP_PARSE_OK);
	assert_span(c.arg, c.argl, "client.test");
	assert_int_equal(parse("MAIL FROM:<a@b.test> SIZE=1000 BODY=8BITMIME "
	    "AUTH=a+2Bb@c", &c), SMTP_PARSE_OK);
	assert_span(c.addr, c.addrl, "a@b.test");
	assert_true(c.has_size);
	assert_int_equal(c.size, 1000);
	assert_int_equal(c.body, SMTP_BODY_8BITMIME);
	assert_span(c.auth, c.authl, "a+2Bb@c");
	assert_int_equal(parse("MAIL FROM:<>", &c), SMTP_PARSE_OK);
	assert_int_equal(c.addrl, 0);
	assert_false(c.has_size);
	assert_int_equal(c.body, SMTP_BODY_NONE);
	assert_int_equal(parse("MAIL FROM:<> SIZE=18446744073709551615", &c),
	    SMTP_PARSE_OK);
	assert_true(c.size == UINT64_MAX);
	assert_int_equal(parse("MAIL FROM:  <x@y.test>   SIZE=5  ", &c),
	    SMTP_PARSE_OK);
	assert_span(c.addr, c.addrl, "x@y.test");
	assert_int_equal(c.size, 5);
	assert_int_equal(parse("MAIL FROM:x@y.test BODY=7BIT", &c),
	    SMTP_PARSE_OK);
	assert_span(c.addr, c.addrl, "x@y.test");
	assert_int_equal(c.body, SMTP_BODY_7BIT);
	assert_int_equal(parse("RCPT TO:<@a.test,@b.test:c@d.test>", &c),
	    SMTP_PARSE_OK);
	assert_span(c.addr, c.addrl, "c@d.test");
	assert_int_equal(parse("rcpt to:<postmaster>", &c), SMTP_PARSE_OK);
	assert_span(c.addr, c.addrl, "postmaster");
	assert_int_equal(parse("RCPT TO:<\"a>b\"@d.test>", &c),
	    SMTP_PARSE_OK);
	assert_span(c.addr, c.addrl, "\"a>b\"@d.test");
	assert_int_equal(parse("AUTH login dXNlcg==", &c), SMTP_PARSE_OK);
	assert_span(c.arg, c.argl, "login");
	assert_true(c.has_resp);
	assert_span(c.resp, c.respl, "dXNlcg==");
	assert_int_equal(parse("AUTH PLAIN", &c), SMTP_PARSE_OK);
	assert_false(c.has_resp);
	assert_int_equal(parse("VRFY  bob  ", &c), SMTP_PARSE_OK);
	assert_span(c.arg, c.argl, "bob");
	assert_int_equal(parse("NOOP", &c), SMTP_PARSE_OK);
	assert_int_equal(c.argl, 0);
}

static void
test_limits_and_octets(void **state)
{
	char line[SMTP_CMD_LINE_MAX + 32];
	struct smtp_cmd c;
	const char *why;
	size_t n;

	(void)state;
	/* The line limit itself: 510 octets parse, 511 do not. */
	memset(line, 'a', sizeof(line));
	memcpy(line, "NOOP ", 5);
	assert_int_equal(smtp_cmd_parse(line, SMTP_CMD_LINE_MAX, &c, &why),
	    SMTP_PARSE_OK);
	assert_int_equal(smtp_cmd_parse(line, SMTP_CMD_LINE_MAX + 1, &c,
	    &why), SMTP_PARSE_SYNTAX);
	assert_string_equal(why, "Error: line too long");
	/* A NUL inside a command. */
	assert_int_equal(smtp_cmd_parse("NOOP a\0b", 8, &c, &why),
	    SMTP_PARSE_SYNTAX);
	assert_int_equal(smtp_cmd_parse("QUIT\n", 5, &c, &why),
	    SMTP_PARSE_SYNTAX);
	/* A domain over 255 octets. */
	memcpy(line, "EHLO ", 5);
	memset(line + 5, 'h', 256);
	assert_int_equal(smtp_cmd_parse(line, 5 + 255, &c, &why),
	    SMTP_PARSE_OK);
	assert_int_equal(smtp_cmd_parse(line, 5 + 256, &c, &why),
	    SMTP_PARSE_SYNTAX);
	/* A local part over 64 octets. */
	n = (size_t)snprintf(line, sizeof(line), "RCPT TO:<%065d@d.test>", 0);
	assert_int_equal(smtp_cmd_parse(line, n, &c, &why), SMTP_PARSE_ADDR);
	n = (size_t)snprintf(line, sizeof(line), "RCPT TO:<%064d@d.test>", 0);
	assert_int_equal(smtp_cmd_parse(line, n, &c, &why), SMTP_PARSE_OK);
}

static void
test_base64(void **state)
{
	static const struct {
		const char	*in;
		int		 rc;
		const char	*out;
	} rows[] = {
		{ "", 0, "" },
		{ "YQ==", 0, "a" },
		{ "YWI=", 0, "ab" },
		{ "YWJj", 0, "abc" },
		{ "YWJjZA==", 0, "abcd" },
		{ "dXNlcg==", 0, "user" },
		{ "YQ=", -1, NULL },		/* not a multiple of 4 */
		{ "YQ", -1, NULL },
		{ "Y===", -1, NULL },		/* three pads */
		{ "Y=Jj", -1, NULL },		/* a pad inside */
		{ "YQ==YWJj", -1, NULL },	/* pad, then more */
		{ "YW J", -1, NULL },		/* a space */
		{ "YWJ\n", -1, NULL },
		{ "YW-j", -1, NULL },		/* base64url */
		{ "====", -1, NULL },
	};
	unsigned char out[16];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int rc = smtp_base64_decode(rows[i].in, strlen(rows[i].in), out,
		    sizeof(out), &n);

		if (rc != rows[i].rc)
			fail_msg("\"%s\": rc %d", rows[i].in, rc);
		if (rc == 0) {
			assert_int_equal(n, strlen(rows[i].out));
			assert_memory_equal(out, rows[i].out, n);
		}
	}
	/* The output bound. */
	assert_int_equal(smtp_base64_decode("YWJj", 4, out, 2, &n), -1);
	assert_int_equal(smtp_base64_decode("YWI=", 4, out, 2, &n), 0);
	/* Every byte value survives. */
	{
		static const char all[] = "AAECAwQFBgcICQoLDA0ODw==";

		assert_int_equal(smtp_base64_decode(all, strlen(all), out,
		    sizeof(out), &n), 0);
		assert_int_equal(n, 16);
		for (i = 0; i < 16; i++)
			assert_int_equal(out[i], i);
	}
}

static void
test_sasl_plain(void **state)
{
	unsigned char buf[3 * SMTP_SASL_LINE_MAX / 4];
	struct smtp_sasl_creds cr;

	(void)state;
	/* "\0u\0p" */
	assert_int_equal(smtp_sasl_plain("AHUAcA==", 8, buf, sizeof(buf), &cr),
	    SMTP_SASL_OK);
	assert_int_equal(cr.authzidl, 0);
	assert_span(cr.user, cr.userl, "u");
	assert_span(cr.pass, cr.passl, "p");
	/* "admin\0alice\0secret pw" (an authzid) */
	assert_int_equal(smtp_sasl_plain("YWRtaW4AYWxpY2UAc2VjcmV0IHB3", 28,
	    buf, sizeof(buf), &cr), SMTP_SASL_OK);
	assert_span(cr.authzid, cr.authzidl, "admin");
	assert_span(cr.user, cr.userl, "alice");
	assert_span(cr.pass, cr.passl, "secret pw");
	assert_int_equal(smtp_sasl_plain("*", 1, buf, sizeof(buf), &cr),
	    SMTP_SASL_CANCEL);
	/* Empty, "=", bad base64. */
	assert_int_equal(smtp_sasl_plain("", 0, buf, sizeof(buf), &cr),
	    SMTP_SASL_MALFORMED);
	assert_int_equal(smtp_sasl_plain("=", 1, buf, sizeof(buf), &cr),
	    SMTP_SASL_MALFORMED);
	assert_int_equal(smtp_sasl_plain("AHUAcA=", 7, buf, sizeof(buf), &cr),
	    SMTP_SASL_MALFORMED);
	assert_int_equal(smtp_sasl_plain("AHUAc!==", 8, buf, sizeof(buf),
	    &cr), SMTP_SASL_MALFORMED);
	/* "u\0p": one NUL only. */
	assert_int_equal(smtp_sasl_plain("dQBw", 4, buf, sizeof(buf), &cr),
	    SMTP_SASL_MALFORMED);
	/* "\0\0p": no user. */
	assert_int_equal(smtp_sasl_plain("AABw", 4, buf, sizeof(buf), &cr),
	    SMTP_SASL_MALFORMED);
	/* "\0u\0": no password. */
	assert_int_equal(smtp_sasl_plain("AHUA", 4, buf, sizeof(buf), &cr),
	    SMTP_SASL_MALFORMED);
	/* "\0u\0p\0q": a NUL in the password. */
	assert_int_equal(smtp_sasl_plain("AHUAcABx", 8, buf, sizeof(buf), &cr),
	    SMTP_SASL_MALFORMED);
	/* "\0u\nv\0p": a control character in the user. */
	assert_int_equal(smtp_sasl_plain("AHUKdgBw", 8, buf, sizeof(buf), &cr),
	    SMTP_SASL_MALFORMED);
	/* Too big for the buffer. */
	assert_int_equal(smtp_sasl_plain("AHUAcA==", 8, buf, 1, &cr),
	    SMTP_SASL_MALFORMED);
}

static void
test_sasl_login(void **state)
{
	unsigned char buf[64];
	const char *f;
	size_t fl;

	(void)state;
	assert_int_equal(smtp_sasl_login_field("dXNlcg==", 8, true, buf,
	    sizeof(buf), &f, &fl), SMTP_SASL_OK);
	assert_span(f, fl, "user");
	assert_int_equal(smtp_sasl_login_field("*", 1, true, buf, sizeof(buf),
	    &f, &fl), SMTP_SASL_CANCEL);
	assert_int_equal(smtp_sasl_login_field("", 0, true, buf, sizeof(buf),
	    &f, &fl), SMTP_SASL_MALFORMED);
	assert_int_equal(smtp_sasl_login_field("dXNl", 3, true, buf,
	    sizeof(buf), &f, &fl), SMTP_SASL_MALFORMED);
	/* "u\0" */
	assert_int_equal(smtp_sasl_login_field("dQA=", 4, false, buf,
	    sizeof(buf), &f, &fl), SMTP_SASL_MALFORMED);
	/* "u\r\nx" and "u\x7f": no control octet in a name ... */
	assert_int_equal(smtp_sasl_login_field("dQ0KeA==", 8, true, buf,
	    sizeof(buf), &f, &fl), SMTP_SASL_MALFORMED);
	assert_int_equal(smtp_sasl_login_field("dX8=", 4, true, buf,
	    sizeof(buf), &f, &fl), SMTP_SASL_MALFORMED);
	/* ... but a password may hold one. */
	assert_int_equal(smtp_sasl_login_field("dX8=", 4, false, buf,
	    sizeof(buf), &f, &fl), SMTP_SASL_OK);
	assert_span(f, fl, "u\x7f");
}

static void
test_data_lines(void **state)
{
	static const struct {
		const char	*line;
		enum smtp_data	 kind;
		const char	*text;
	} rows[] = {
		{ ".", SMTP_DATA_END, NULL },
		{ "..", SMTP_DATA_TEXT, "." },
		{ "...", SMTP_DATA_TEXT, ".." },
		{ ".hidden", SMTP_DATA_TEXT, "hidden" },
		{ "a.", SMTP_DATA_TEXT, "a." },
		{ "", SMTP_DATA_TEXT, "" },
		{ " .", SMTP_DATA_TEXT, " ." },
		{ "Subject: x", SMTP_DATA_TEXT, "Subject: x" },
	};
	const char *t;
	size_t i, tl;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		enum smtp_data k = smtp_data_unstuff(rows[i].line,
		    strlen(rows[i].line), &t, &tl);

		assert_int_equal(k, rows[i].kind);
		if (k == SMTP_DATA_TEXT)
			assert_span(t, tl, rows[i].text);
	}
}

static void
test_line_flags(void **state)
{
	(void)state;
	assert_int_equal(smtp_line_flags("plain text", 10), 0);
	assert_int_equal(smtp_line_flags("", 0), 0);
	assert_int_equal(smtp_line_flags("a\0b", 3), SMTP_LINE_NUL);
	assert_int_equal(smtp_line_flags("a\rb", 3), SMTP_LINE_CR);
	/* A CR left at the end: the line ended in CR CR LF. */
	assert_int_equal(smtp_line_flags("a\r", 2), SMTP_LINE_CR);
	assert_int_equal(smtp_line_flags("caf\xc3\xa9", 5), SMTP_LINE_8BIT);
	assert_int_equal(smtp_line_flags("\xff\0\r", 3),
	    SMTP_LINE_8BIT | SMTP_LINE_NUL | SMTP_LINE_CR);
	/* A LF is not judged here: net_conn frames lines on it. */
	assert_int_equal(smtp_line_flags("a\nb", 3), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_table),
		cmocka_unit_test(test_arguments),
		cmocka_unit_test(test_limits_and_octets),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_sasl_plain),
		cmocka_unit_test(test_sasl_login),
		cmocka_unit_test(test_data_lines),
		cmocka_unit_test(test_line_flags),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
