/*
 * test_template.c - the message wrapper: compile errors, substitution,
 * CRLF, dot-stuffing, RFC 2047, line limits, MIME parts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <openssl/evp.h>

#include "delivery/template.h"

static const char *const cols[] = { "email", "name", "code", "city" };
#define NCOLS 4

struct rendered {
	char	*text;
	size_t	 len;
	bool	 eight_bit;
};

static struct tmpl *
compile_ok(const char *src)
{
	struct mr_buf err = MR_BUF_INIT;
	struct tmpl *t;

	t = tmpl_compile(src, strlen(src), cols, NCOLS, &err, NULL);
	if (t == NULL)
		fail_msg("compile failed: %s", mr_buf_cstr(&err));
	mr_buf_release(&err);
	return t;
}

static void
render(const struct tmpl *t, const char *const *vals, unsigned flags,
    struct rendered *out)
{
	struct csv_field f[NCOLS];
	struct tmpl_scratch *s = tmpl_scratch_new();
	struct evbuffer *b = evbuffer_new();
	struct tmpl_msg m = { "<id@test>", "Sun, 22 Nov 2026 10:00:00 +0000" };
	size_t i, n;

	for (i = 0; i < NCOLS; i++) {
		f[i].p = vals[i];
		f[i].len = strlen(vals[i]);
	}
	n = tmpl_render(t, s, f, NCOLS, &m, flags, b, &out->eight_bit);
	out->len = evbuffer_get_length(b);
	assert_int_equal(n, out->len);
	out->text = malloc(out->len + 1);
	evbuffer_remove(b, out->text, out->len);
	out->text[out->len] = '\0';
	evbuffer_free(b);
	tmpl_scratch_free(&s);
}

static const char *
body_of(const struct rendered *r)
{
	const char *p = strstr(r->text, "\r\n\r\n");

	assert_non_null(p);
	return p + 4;
}

/* Every line ends in CRLF, no bare CR or LF, none over 998 octets. */
static void
assert_wire_form(const struct rendered *r)
{
	size_t i, col = 0;

	for (i = 0; i < r->len; i++) {
		if (r->text[i] == '\r') {
			assert_true(i + 1 < r->len && r->text[i + 1] == '\n');
			i++;
			col = 0;
			continue;
		}
		assert_true(r->text[i] != '\n');
		col++;
		assert_true(col <= 998);
	}
	assert_int_equal(col, 0);
}

static void
test_substitution_and_crlf(void **state)
{
	static const char *vals[] = { "a@x.test", "Ann", "C1", "Oslo" };
	struct tmpl *t = compile_ok("From: S <s@x.test>\nTo: {{name}} "
	    "<{{email}}>\nSubject: Code {{ code }}\n\nHi {{name}},\n"
	    "code {{CODE}}.\n");
	struct rendered r;

	(void)state;
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_non_null(strstr(r.text, "Date: Sun, 22 Nov 2026 10:00:00 "
	    "+0000\r\nMessage-ID: <id@test>\r\n"));
	assert_non_null(strstr(r.text, "\r\nTo: Ann <a@x.test>\r\n"));
	assert_non_null(strstr(r.text, "\r\nSubject: Code C1\r\n"));
	assert_string_equal(body_of(&r), "Hi Ann,\r\ncode C1.\r\n");
	assert_wire_form(&r);
	assert_false(r.eight_bit);
	assert_true(tmpl_uses_column(t, 0));
	assert_false(tmpl_uses_column(t, 3));
	assert_string_equal(tmpl_from_address(t), "s@x.test");
	free(r.text);
	tmpl_free(&t);
}

struct compile_case {
	const char	*label;
	const char	*src;
	const char	*error;		/* expected substring */
};

static const struct compile_case compile_errors[] = {
	{ "unknown placeholder names itself and its line",
	  "From: a@x.test\n\nline 3\nHello {{nmae}}\n",
	  "template line 4: placeholder {{nmae}} has no column" },
	{ "unknown placeholder in a header",
	  "From: a@x.test\nSubject: {{zip}}\n\nx\n",
	  "template line 2: placeholder {{zip}}" },
	{ "no From header", "To: a@x.test\n\nbody\n",
	  "template has no From header" },
	{ "body without headers", "\nbody only\n",
	  "does not start with a header" },
	{ "a line that is not a header", "From: a@x.test\nnot a header\n\n",
	  "template line 2: not a header field" },
	{ "continuation first", " folded\nFrom: a@x.test\n\n",
	  "template line 1: continuation line" },
	{ "header not UTF-8", "From: a@x.test\nSubject: caf\xe9\n\n",
	  "template line 2: the Subject header holds bytes" },
	{ "empty template", "", "does not start with a header" },
};

static void
test_compile_errors(void **state)
{
	struct mr_buf err = MR_BUF_INIT;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(compile_errors) / sizeof(compile_errors[0]);
	    i++) {
		const struct compile_case *c = &compile_errors[i];
		struct tmpl *t;

		mr_buf_reset(&err);
		t = tmpl_compile(c->src, strlen(c->src), cols, NCOLS, &err,
		    NULL);
		if (t != NULL)
			fail_msg("%s: compiled", c->label);
		if (strstr(mr_buf_cstr(&err), c->error) == NULL)
			fail_msg("%s: error \"%s\"", c->label,
			    mr_buf_cstr(&err));
	}
	mr_buf_release(&err);
}

static void
test_not_placeholders(void **state)
{
	static const char *vals[] = { "a@x.test", "Ann", "C1", "Oslo" };
	struct tmpl *t = compile_ok("From: a@x.test\n\n{{ unclosed\n{{}} "
	    "{x}} {{a{b}}\n");
	struct rendered r;

	(void)state;
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_string_equal(body_of(&r), "{{ unclosed\r\n{{}} {x}} "
	    "{{a{b}}\r\n");
	free(r.text);
	tmpl_free(&t);
}

static void
test_message_id_and_date_replaced(void **state)
{
	static const char *vals[] = { "a@x.test", "Ann", "C1", "Oslo" };
	struct mr_buf warn = MR_BUF_INIT, err = MR_BUF_INIT;
	const char *src = "From: a@x.test\nMessage-ID: <old@x>\nDate: Mon, 1 "
	    "Jan 2001 00:00:00 +0000\n\nx\n";
	struct tmpl *t = tmpl_compile(src, strlen(src), cols, NCOLS, &err,
	    &warn);
	struct rendered r;

	(void)state;
	assert_non_null(t);
	assert_non_null(strstr(mr_buf_cstr(&warn), "line 2: Message-ID"));
	assert_non_null(strstr(mr_buf_cstr(&warn), "line 3: Date"));
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_null(strstr(r.text, "old@x"));
	assert_null(strstr(r.text, "2001"));
	free(r.text);
	tmpl_free(&t);
	mr_buf_release(&warn);
	mr_buf_release(&err);
}

static void
test_dot_stuffing(void **state)
{
	static const char *vals[] = { "a@x.test", ".lead", "x\n.dot\r\n.",
	    "" };
	struct tmpl *t = compile_ok("From: a@x.test\n\n.static\n{{name}} "
	    "and\n{{code}}\n{{city}}.after empty\n");
	struct rendered r;

	(void)state;
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_string_equal(body_of(&r), "..static\r\n..lead and\r\nx\r\n"
	    "..dot\r\n..\r\n..after empty\r\n");
	assert_wire_form(&r);
	free(r.text);
	render(t, vals, 0, &r);
	assert_string_equal(body_of(&r), ".static\r\n.lead and\r\nx\r\n"
	    ".dot\r\n.\r\n.after empty\r\n");
	free(r.text);
	tmpl_free(&t);
}

/* decode_words - the text of "=?UTF-8?B?...?=" words in s, concatenated. */
static void
decode_words(const char *s, char *out, size_t size)
{
	const char *p = s, *e;
	unsigned char buf[512];
	size_t n = 0;
	int k;

	while ((p = strstr(p, "=?UTF-8?B?")) != NULL) {
		p += 10;
		e = strstr(p, "?=");
		assert_non_null(e);
		assert_true(e - p + 12 <= 75);
		k = EVP_DecodeBlock(buf, (const unsigned char *)p,
		    (int)(e - p));
		assert_true(k >= 0);
		while (k > 0 && (e - p) >= 2 && e[-1] == '=' && buf[k - 1] ==
		    0) {
			/* EVP_DecodeBlock counts padding as zero bytes. */
			k--;
			e--;
		}
		assert_true(n + (size_t)k < size);
		memcpy(out + n, buf, (size_t)k);
		n += (size_t)k;
		p = strstr(p, "?=") + 2;
	}
	out[n] = '\0';
}

static void
test_rfc2047_unstructured(void **state)
{
	static const char long_name[] = "Zoë Ærøskøbing-Ünïcødé with a "
	    "very long name that needs several encoded words";
	static const char *vals[] = { "a@x.test", long_name, "C1", "" };
	struct tmpl *t = compile_ok("From: a@x.test\nSubject: Hello "
	    "{{name}}, news\n\nx\n");
	struct rendered r;
	char subj[1024], dec[512];
	const char *p, *e;

	(void)state;
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_false(r.eight_bit);
	p = strstr(r.text, "Subject: ");
	e = strstr(p, "\r\n\r\n");
	memcpy(subj, p, (size_t)(e - p));
	subj[e - p] = '\0';
	decode_words(subj, dec, sizeof(dec));
	assert_string_equal(dec, "Hello Zoë Ærøskøbing-Ünïcødé with a very "
	    "long name that needs several encoded words, news");
	/* Folded: every line of it within 76 octets. */
	for (p = subj; (e = strstr(p, "\r\n")) != NULL; p = e + 2)
		assert_true(e - p <= 76);
	assert_true(strlen(p) <= 76);
	assert_wire_form(&r);
	free(r.text);
	tmpl_free(&t);
}

static void
test_rfc2047_address_phrase(void **state)
{
	static const char *vals[] = { "a@x.test", "José", "Doe, John",
	    "" };
	struct tmpl *t = compile_ok("From: a@x.test\nTo: \"{{name}}\" "
	    "<{{email}}>, {{code}} <b@x.test>\n\nx\n");
	struct rendered r;
	char dec[128];
	const char *p;

	(void)state;
	render(t, vals, TMPL_DOT_STUFF, &r);
	p = strstr(r.text, "\r\nTo: =?UTF-8?B?");
	assert_non_null(p);
	assert_non_null(strstr(p, "?= <a@x.test>, \"Doe, John\" "
	    "<b@x.test>\r\n"));
	decode_words(p, dec, sizeof(dec));
	assert_string_equal(dec, "José");
	free(r.text);
	tmpl_free(&t);
}

static void
test_static_non_ascii_header(void **state)
{
	static const char *vals[] = { "a@x.test", "", "", "" };
	struct tmpl *t = compile_ok("From: Café <a@x.test>\nSubject: Crème "
	    "brûlée\n\nx\n");
	struct rendered r;
	char dec[128];

	(void)state;
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_null(strstr(r.text, "Crème"));
	decode_words(strstr(r.text, "Subject:"), dec, sizeof(dec));
	assert_string_equal(dec, "Crème brûlée");
	assert_string_equal(tmpl_from_address(t), "a@x.test");
	free(r.text);
	tmpl_free(&t);
}

static void
test_newline_in_header_value(void **state)
{
	static const char *vals[] = { "a@x.test", "evil\r\nBcc: x@y.test",
	    "", "" };
	struct tmpl *t = compile_ok("From: a@x.test\nSubject: {{name}}\n\n"
	    "x\n");
	struct rendered r;

	(void)state;
	render(t, vals, TMPL_DOT_STUFF, &r);
	/* No header injection: the value stays on the Subject line. */
	assert_non_null(strstr(r.text, "Subject: evil Bcc: x@y.test\r\n"));
	assert_null(strstr(r.text, "\r\nBcc:"));
	free(r.text);
	tmpl_free(&t);
}

static void
test_long_lines(void **state)
{
	static char big[3000], line[1500], src[2000];
	const char *vals[] = { "a@x.test", big, "", "" };
	struct mr_buf warn = MR_BUF_INIT, err = MR_BUF_INIT;
	struct tmpl *t;
	struct rendered r;

	(void)state;
	memset(big, 'v', sizeof(big) - 1);
	big[1000] = '.';	/* lands at a line start after the break */
	memset(line, 's', sizeof(line) - 1);
	snprintf(src, sizeof(src), "From: a@x.test\nSubject: {{name}}\n\n%s"
	    "\n{{name}}\n", line);
	t = tmpl_compile(src, strlen(src), cols, NCOLS, &err, &warn);
	assert_non_null(t);
	assert_non_null(strstr(mr_buf_cstr(&warn), "template line 4 is 1499 "
	    "octets long"));
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_wire_form(&r);
	free(r.text);
	render(t, vals, 0, &r);
	assert_wire_form(&r);
	free(r.text);
	tmpl_free(&t);
	mr_buf_release(&warn);
	mr_buf_release(&err);
}

static void
test_quoted_printable_part(void **state)
{
	static const char *vals[] = { "a@x.test", "Zoë = 1.", "C", "" };
	struct tmpl *t = compile_ok(
	    "From: a@x.test\n"
	    "MIME-Version: 1.0\n"
	    "Content-Type: multipart/alternative; boundary=\"BB\"\n"
	    "\n"
	    "--BB\n"
	    "Content-Type: text/plain; charset=utf-8\n"
	    "Content-Transfer-Encoding: 8bit\n"
	    "\n"
	    "plain {{name}}\n"
	    "--BB\n"
	    "Content-Type: text/html; charset=utf-8\n"
	    "Content-Transfer-Encoding: quoted-printable\n"
	    "\n"
	    "<p>{{name}}</p>\n"
	    "--BB--\n"
	    "epilogue {{name}}\n");
	struct rendered r;

	(void)state;
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_non_null(strstr(r.text, "\r\nplain Zoë = 1.\r\n"));
	assert_non_null(strstr(r.text, "\r\n<p>Zo=C3=AB =3D 1=2E</p>\r\n"));
	assert_non_null(strstr(r.text, "\r\nepilogue Zoë = 1.\r\n"));
	/* The template declared its own MIME structure: nothing added. */
	assert_null(strstr(r.text, "charset=UTF-8\r\nContent-Transfer"));
	assert_true(r.eight_bit);
	assert_wire_form(&r);
	free(r.text);
	tmpl_free(&t);
}

static void
test_qp_soft_breaks(void **state)
{
	static char big[400];
	const char *vals[] = { "a@x.test", big, "", "" };
	struct tmpl *t = compile_ok("From: a@x.test\nContent-Type: text/plain"
	    "\nContent-Transfer-Encoding: quoted-printable\n\n{{name}}\n");
	struct rendered r;
	const char *p, *e;

	(void)state;
	memset(big, 0xc3, sizeof(big) - 1);
	render(t, vals, TMPL_DOT_STUFF, &r);
	for (p = body_of(&r); (e = strstr(p, "\r\n")) != NULL; p = e + 2)
		assert_true(e - p <= 76);
	free(r.text);
	tmpl_free(&t);
}

static void
test_mime_headers_added(void **state)
{
	static const char *vals[] = { "a@x.test", "Zoë", "", "" };
	struct tmpl *t = compile_ok("From: a@x.test\n\nHi {{name}}\n");
	struct rendered r;

	(void)state;
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_non_null(strstr(r.text, "MIME-Version: 1.0\r\nContent-Type: "
	    "text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n"
	    "\r\n"));
	assert_true(r.eight_bit);
	free(r.text);
	tmpl_free(&t);
}

static void
test_no_body(void **state)
{
	static const char *vals[] = { "a@x.test", "", "", "" };
	struct tmpl *t = compile_ok("From: a@x.test\nSubject: s");
	struct rendered r;

	(void)state;
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_non_null(strstr(r.text, "Subject: s\r\n"));
	assert_wire_form(&r);
	free(r.text);
	tmpl_free(&t);
}


static void
test_long_display_name(void **state)
{
	static char ascii[1300], utf8[1300];
	const char *vals[] = { "a@x.test", ascii, "", "" };
	struct tmpl *t = compile_ok("From: a@x.test\nTo: {{name}} "
	    "<{{email}}>\n\nx\n");
	struct rendered r;
	size_t i;

	(void)state;
	/* A name far past the line limit, with and without spaces. */
	for (i = 0; i < sizeof(ascii) - 1; i++)
		ascii[i] = i % 50 == 49 ? ' ' : 'n';
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_wire_form(&r);
	assert_non_null(strstr(r.text, "<a@x.test>\r\n"));
	free(r.text);
	memset(ascii, 'm', sizeof(ascii) - 1);
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_wire_form(&r);
	assert_non_null(strstr(r.text, "<a@x.test>\r\n"));
	free(r.text);
	for (i = 0; i + 2 < sizeof(utf8); i += 2)
		memcpy(utf8 + i, "\xc3\xa9", 2);
	vals[1] = utf8;
	render(t, vals, TMPL_DOT_STUFF, &r);
	assert_wire_form(&r);
	assert_non_null(strstr(r.text, "<a@x.test>\r\n"));
	free(r.text);
	tmpl_free(&t);
}

static void
test_part_header_values(void **state)
{
	static const char *vals[] = { "a@x.test",
	    "f.pdf\"\nContent-Type: text/html\nX-Injected: yes\n\n<b>",
	    "", "" };
	struct tmpl *t = compile_ok(
	    "From: a@x.test\n"
	    "Content-Type: multipart/mixed; boundary=BB\n"
	    "\n"
	    "--BB\n"
	    "Content-Type: text/plain\n"
	    "Content-Disposition: inline; filename=\"{{name}}\"\n"
	    "\n"
	    "body\n"
	    "--BB--\n");
	struct rendered r;

	(void)state;
	render(t, vals, TMPL_DOT_STUFF, &r);
	/* The value stays on its header line: it adds no header and no
	 * body. */
	assert_null(strstr(r.text, "\r\nX-Injected"));
	assert_null(strstr(r.text, "\r\nContent-Type: text/html"));
	assert_non_null(strstr(r.text, "\r\nContent-Disposition: inline; "
	    "filename=\"f.pdf\" Content-Type: text/html X-Injected: yes  "
	    "<b>\"\r\n\r\nbody\r\n"));
	assert_wire_form(&r);
	free(r.text);
	tmpl_free(&t);
}

static void
test_base64_part_placeholder(void **state)
{
	struct mr_buf err = MR_BUF_INIT;
	const char *src = "From: a@x.test\n"
	    "Content-Type: multipart/mixed; boundary=BB\n\n"
	    "--BB\nContent-Transfer-Encoding: base64\n\nQUJD{{name}}\n"
	    "--BB--\n";

	(void)state;
	assert_null(tmpl_compile(src, strlen(src), cols, NCOLS, &err, NULL));
	assert_non_null(strstr(mr_buf_cstr(&err), "template line 7: a "
	    "placeholder in a base64 part"));
	mr_buf_release(&err);
}

static void
test_boundary_in_value(void **state)
{
	struct tmpl *t = compile_ok(
	    "From: a@x.test\nSubject: {{code}}\n"
	    "Content-Type: multipart/alternative; boundary=\"=_b1\"\n\n"
	    "--=_b1\n\nHi {{name}}\n--=_b1--\n");
	struct csv_field f[NCOLS] = {
		{ "a@x.test", 8 }, { "ok", 2 }, { "--=_b1", 6 }, { "", 0 },
	};
	size_t col = 99;

	(void)state;
	/* In a header the boundary is harmless: no line can start with
	 * it. */
	assert_int_equal(tmpl_check_fields(t, f, NCOLS, &col), 0);
	f[1].p = "x\n--=_b1--\nforged";
	f[1].len = strlen(f[1].p);
	assert_int_equal(tmpl_check_fields(t, f, NCOLS, &col), -1);
	assert_int_equal(col, 1);
	tmpl_free(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_substitution_and_crlf),
		cmocka_unit_test(test_compile_errors),
		cmocka_unit_test(test_not_placeholders),
		cmocka_unit_test(test_message_id_and_date_replaced),
		cmocka_unit_test(test_dot_stuffing),
		cmocka_unit_test(test_rfc2047_unstructured),
		cmocka_unit_test(test_rfc2047_address_phrase),
		cmocka_unit_test(test_static_non_ascii_header),
		cmocka_unit_test(test_newline_in_header_value),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_quoted_printable_part),
		cmocka_unit_test(test_qp_soft_breaks),
		cmocka_unit_test(test_mime_headers_added),
		cmocka_unit_test(test_no_body),
		cmocka_unit_test(test_long_display_name),
		cmocka_unit_test(test_part_header_values),
		cmocka_unit_test(test_base64_part_placeholder),
		cmocka_unit_test(test_boundary_in_value),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
