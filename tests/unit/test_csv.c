/*
 * test_csv.c - the RFC 4180 record parser.  The main table feeds each input
 * to csv_next() until CSV_EOF and compares a rendering of what came out:
 * a record is "[f1|f2]" (with "x2" after it when it spans 2 lines), a bad
 * record is "<kind>".  What follows a bad record shows where parsing
 * resumed.  Every row also checks the invariants any caller relies on.
 * Further tests cover positions, zero copy, the scratch fix-up, line
 * numbering and csv_write_field().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/mr_buf.h"
#include "delivery/csv.h"

#define TEST_CSV_MAX	1024

struct test_csv_row {
	const char	*label;
	const char	*input;
	size_t		 max_record;	/* 0: TEST_CSV_MAX */
	const char	*expected;
};

/* The error kinds of the rendering, and their text. */
static const struct {
	const char	*kind;
	const char	*text;
} test_csv_errors[] = {
	{ "quote", "quote inside an unquoted field" },
	{ "after", "text after the closing quote of a field" },
	{ "cr", "bare CR outside quotes (not followed by LF)" },
	{ "unterm", "unterminated quoted field at end of input" },
	{ "long", "record longer than the maximum record size" },
	{ "qlong", "quoted field still open at the maximum record size "
	    "(unterminated quote?)" },
};

static const struct test_csv_row test_csv_rows[] = {
	/* Terminators. */
	{ "LF records", "a,b,c\nd,e,f\n", 0, "[a|b|c][d|e|f]" },
	{ "CRLF records", "a,b\r\nc,d\r\n", 0, "[a|b][c|d]" },
	{ "mixed LF and CRLF", "a\r\nb\nc\r\n", 0, "[a][b][c]" },
	{ "last record without terminator", "a,b\nc,d", 0, "[a|b][c|d]" },
	{ "single record, no terminator", "x", 0, "[x]" },
	{ "empty input", "", 0, "" },

	/* Empty fields and lines. */
	{ "empty fields", ",,\n", 0, "[||]" },
	{ "empty last field", "a,\n", 0, "[a|]" },
	{ "empty last field at EOF", "a,", 0, "[a|]" },
	{ "empty first field", ",a\n", 0, "[|a]" },
	{ "empty line is one empty field", "a\n\nb\n", 0, "[a][][b]" },
	{ "empty CRLF line", "\r\n", 0, "[]" },
	{ "only LF", "\n", 0, "[]" },

	/* Quoted fields. */
	{ "quoted field", "\"a\",b\n", 0, "[a|b]" },
	{ "quoted comma", "\"a,b\",c\n", 0, "[a,b|c]" },
	{ "quoted empty field", "\"\",x\n", 0, "[|x]" },
	{ "all fields quoted", "\"a\",\"b\",\"c\"\r\n", 0, "[a|b|c]" },
	{ "escaped quotes", "\"say \"\"hi\"\"\",x\n", 0, "[say \"hi\"|x]" },
	{ "field of one escaped quote", "\"\"\"\"\n", 0, "[\"]" },
	{ "escaped quote at start and end", "\"\"\"a\"\"\"\n", 0,
	    "[\"a\"]" },
	{ "quoted LF spans two lines", "\"a\nb\",c\nd\n", 0,
	    "[a\nb|c]x2[d]" },
	{ "quoted CRLF kept as data", "\"a\r\nb\"\r\n", 0, "[a\r\nb]x2" },
	{ "quoted bare CR is data", "\"a\rb\"\n", 0, "[a\rb]" },
	{ "three lines in one record", "\"1\n2\",\"3\n4\"\nz\n", 0,
	    "[1\n2|3\n4]x3[z]" },
	{ "quoted LF with escapes", "\"a\"\"\n\"\"b\"\n", 0,
	    "[a\"\n\"b]x2" },
	{ "quoted last record, no terminator", "x,\"y\"", 0, "[x|y]" },
	{ "quoted last record, LF inside", "\"y\nz\"", 0, "[y\nz]x2" },

	/* Bytes the parser does not interpret. */
	{ "BOM is field data", "\xEF\xBB\xBF" "email,name\n", 0,
	    "[\xEF\xBB\xBF" "email|name]" },
	{ "BOM before a quote is a bad record", "\xEF\xBB\xBF\"email\"\nx\n",
	    0, "<quote>[x]" },
	{ "spaces are data", " a , b \n", 0, "[ a | b ]" },
	{ "UTF-8 is data", "j\xC3\xB6rg,\xE2\x82\xAC\n", 0,
	    "[j\xC3\xB6rg|\xE2\x82\xAC]" },

	/* Bad records, and where parsing resumes. */
	{ "quote inside unquoted field", "ab\"c,d\nx\n", 0, "<quote>[x]" },
	{ "quote ending unquoted field", "a\",b\nx\n", 0, "<quote>[x]" },
	{ "quote in second field", "a,b\"\nx\n", 0, "<quote>[x]" },
	{ "text after closing quote", "\"a\"b,c\nx\n", 0, "<after>[x]" },
	{ "space after closing quote", "\"a\" ,c\nx\n", 0, "<after>[x]" },
	{ "bare CR inside unquoted field", "a\rb\nx\n", 0, "<cr>[x]" },
	{ "bare CR after quoted field", "\"a\"\rb\nx\n", 0, "<cr>[x]" },
	{ "CR CR LF", "a\r\r\nx\n", 0, "<cr>[x]" },
	{ "CR at end of input", "a\r", 0, "<cr>" },
	{ "bad record with CRLF", "a\"b\r\nc\r\n", 0, "<quote>[c]" },
	{ "unterminated quote at EOF", "x\n\"abc\ndef\n", 0,
	    "[x]<unterm>[def]" },
	{ "unterminated quote, no LF", "\"abc", 0, "<unterm>" },
	{ "lone quote", "\"", 0, "<unterm>" },
	{ "bad on 2nd line resumes at 2nd line", "\"a\nb\"c\nd\n", 0,
	    "<after><quote>[d]" },
	{ "bad record at EOF without LF", "a\nb\"", 0, "[a]<quote>" },
	{ "good records around bad ones", "1\n\"2\n3\"\n\"4\"x\n5", 0,
	    "[1][2\n3]x2<after>[5]" },

	/* max_record: the terminator counts. */
	{ "LF record exactly max_record", "abc\nd\n", 4, "[abc][d]" },
	{ "LF record one past max_record", "abcd\ne\n", 4, "<long>[e]" },
	{ "CRLF record exactly max_record", "abc\r\nd", 5, "[abc][d]" },
	{ "CRLF record one past max_record", "abc\r\nd", 4, "<long>[d]" },
	{ "last record exactly max_record", "abc", 3, "[abc]" },
	{ "last record one past max_record", "abcd", 3, "<long>" },
	{ "quoted record exactly max_record", "\"a,b\"\n", 6, "[a,b]" },
	{ "quoted record one past max_record", "\"a,b\"\nx\n", 5,
	    "<long>[x]" },
	{ "quoted CRLF record exactly max", "\"a\"\r\n", 5, "[a]" },
	{ "quoted CRLF record one past max", "\"a\"\r\n", 4, "<long>" },
	{ "quote open at max_record", "\"abcdef\"\nx\n", 4, "<qlong>[x]" },
	{ "escape straddling max_record", "\"a\"\"b\"\n", 3, "<long>" },
	{ "multi-line record past max", "\"a\nbbbbbbbbbb\"\nc\n", 8,
	    "<qlong><long>[c]" },
	{ "max_record 1", "\n\na\n", 1, "[][]<long>" },
	{ "long line with many fields", "a,b,c,d,e,f,g\nh\n", 10,
	    "<long>[h]" },
};

static const char *
test_csv_kind(const char *err)
{
	size_t i;

	for (i = 0; i < sizeof(test_csv_errors) / sizeof(*test_csv_errors);
	    i++)
		if (err != NULL && strcmp(err, test_csv_errors[i].text) == 0)
			return test_csv_errors[i].kind;
	return "?";
}

/* Physical lines in p[0..n): LFs, plus an unterminated last line. */
static unsigned
test_csv_physical_lines(const char *p, size_t n)
{
	unsigned lines = 0;
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] == '\n')
			lines++;
	if (n > 0 && p[n - 1] != '\n')
		lines++;
	return lines;
}

/*
 * test_csv_render - parse all of buf and render the results; check the
 * invariants on the way.
 */
static void
test_csv_render(const char *label, const char *buf, size_t len,
    size_t max_record, struct mr_buf *out)
{
	struct csv_parser *cp = csv_parser_new(max_record);
	const struct csv_field *f;
	enum csv_result r;
	size_t pos = 0, old, i;
	unsigned lines = 0;

	for (;;) {
		old = pos;
		r = csv_next(cp, buf, len, &pos);
		if (r == CSV_EOF) {
			if (old != len || pos != len)
				fail_msg("%s: EOF at %zu of %zu", label, old,
				    len);
			break;
		}
		if (pos <= old || pos > len)
			fail_msg("%s: pos %zu after %zu", label, pos, old);
		if (csv_record_start(cp) != old ||
		    csv_record_end(cp) < old || csv_record_end(cp) > pos)
			fail_msg("%s: range %zu..%zu, pos %zu..%zu", label,
			    csv_record_start(cp), csv_record_end(cp), old,
			    pos);
		if (csv_lines(cp) < 1)
			fail_msg("%s: lines %u", label, csv_lines(cp));
		lines += csv_lines(cp);
		if (r == CSV_BAD) {
			if (csv_error(cp) == NULL || csv_lines(cp) != 1 ||
			    csv_nfields(cp) != 0)
				fail_msg("%s: bad record state", label);
			mr_buf_printf(out, "<%s>",
			    test_csv_kind(csv_error(cp)));
			continue;
		}
		if (csv_error(cp) != NULL || csv_nfields(cp) < 1)
			fail_msg("%s: record state", label);
		f = csv_fields(cp);
		mr_buf_putc(out, '[');
		for (i = 0; i < csv_nfields(cp); i++) {
			if (i > 0)
				mr_buf_putc(out, '|');
			mr_buf_append(out, f[i].p, f[i].len);
		}
		mr_buf_putc(out, ']');
		if (csv_lines(cp) > 1)
			mr_buf_printf(out, "x%u", csv_lines(cp));
	}
	if (lines != test_csv_physical_lines(buf, len))
		fail_msg("%s: %u lines counted, input has %u", label, lines,
		    test_csv_physical_lines(buf, len));
	csv_parser_free(&cp);
	assert_null(cp);
}

static void
test_csv_table(void **state)
{
	const struct test_csv_row *r;
	struct mr_buf out = MR_BUF_INIT;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(test_csv_rows) / sizeof(*r); i++) {
		r = &test_csv_rows[i];
		mr_buf_reset(&out);
		test_csv_render(r->label, r->input, strlen(r->input),
		    r->max_record ? r->max_record : TEST_CSV_MAX, &out);
		if (strcmp(mr_buf_cstr(&out), r->expected) != 0)
			fail_msg("%s: got '%s', want '%s'", r->label,
			    mr_buf_cstr(&out), r->expected);
	}
	mr_buf_release(&out);
}

/* Record ranges and positions, good and bad, LF and CRLF. */
static void
test_csv_positions(void **state)
{
	static const char in[] = "ab,c\r\n\"x\ny\"\nb\"ad\r\nlast";
	static const struct {
		enum csv_result	 r;
		size_t		 start, end, pos;
		unsigned	 lines;
	} want[] = {
		{ CSV_RECORD, 0, 4, 6, 1 },	/* ab,c CRLF */
		{ CSV_RECORD, 6, 11, 12, 2 },	/* "x LF y" LF */
		{ CSV_BAD, 12, 16, 18, 1 },	/* b"ad CRLF */
		{ CSV_RECORD, 18, 22, 22, 1 },	/* last */
		{ CSV_EOF, 22, 22, 22, 0 },
		{ CSV_EOF, 22, 22, 22, 0 },	/* EOF again */
	};
	struct csv_parser *cp = csv_parser_new(TEST_CSV_MAX);
	size_t pos = 0, i;

	(void)state;
	for (i = 0; i < sizeof(want) / sizeof(*want); i++) {
		assert_int_equal(csv_next(cp, in, sizeof(in) - 1, &pos),
		    want[i].r);
		assert_int_equal(csv_record_start(cp), want[i].start);
		assert_int_equal(csv_record_end(cp), want[i].end);
		assert_int_equal(pos, want[i].pos);
		assert_int_equal(csv_lines(cp), want[i].lines);
		/* After EOF, too, csv_error() is a printable reason. */
		if (want[i].r == CSV_RECORD)
			assert_null(csv_error(cp));
		else
			assert_non_null(csv_error(cp));
	}
	csv_parser_free(&cp);
	csv_parser_free(&cp);	/* NULL is a no-op */
}

/* A caller numbers lines by adding csv_lines() after each result. */
static void
test_csv_line_numbers(void **state)
{
	static const char in[] =
	    "email,name\n"			/* line 1 */
	    "a@x.org,\"Ann\nSmith\"\n"		/* lines 2-3 */
	    "b@x.org,B\"ob\n"			/* line 4: bad */
	    "c@x.org,\"C\n\nC\"\r\n"		/* lines 5-7 */
	    "d@x.org,\"unterminated\n"		/* line 8: bad */
	    "e@x.org,E";			/* line 9 */
	static const unsigned first[] = { 1, 2, 4, 5, 8, 9 };
	struct csv_parser *cp = csv_parser_new(TEST_CSV_MAX);
	size_t pos = 0, i = 0;
	unsigned line = 1;

	(void)state;
	while (csv_next(cp, in, sizeof(in) - 1, &pos) != CSV_EOF) {
		assert_true(i < sizeof(first) / sizeof(*first));
		assert_int_equal(line, first[i]);
		line += csv_lines(cp);
		i++;
	}
	assert_int_equal(i, sizeof(first) / sizeof(*first));
	assert_int_equal(line, 10);
	csv_parser_free(&cp);
}

/* Unescaped fields are slices of the input: no copy. */
static void
test_csv_zero_copy(void **state)
{
	static const char in[] = "plain,\"quoted\",\"q,c\",\"e\"\"s\",,\"\"\n";
	static const struct {
		ptrdiff_t	 off;	/* -1: in scratch */
		const char	*text;
	} want[] = {
		{ 0, "plain" }, { 7, "quoted" }, { 16, "q,c" },
		{ -1, "e\"s" }, { 28, "" }, { 30, "" },
	};
	struct csv_parser *cp = csv_parser_new(TEST_CSV_MAX);
	const struct csv_field *f;
	size_t pos = 0, i;

	(void)state;
	assert_int_equal(csv_next(cp, in, sizeof(in) - 1, &pos), CSV_RECORD);
	assert_int_equal(csv_nfields(cp), sizeof(want) / sizeof(*want));
	f = csv_fields(cp);
	for (i = 0; i < csv_nfields(cp); i++) {
		assert_int_equal(f[i].len, strlen(want[i].text));
		assert_memory_equal(f[i].p, want[i].text, f[i].len);
		if (want[i].off >= 0)
			assert_ptr_equal(f[i].p, in + want[i].off);
		else
			assert_true(f[i].p < in || f[i].p >= in + sizeof(in));
	}
	csv_parser_free(&cp);
}

/*
 * Many escaped fields in one record: scratch grows (and moves) while the
 * record is parsed; every field must still point at its own text.
 */
static void
test_csv_scratch_fixup(void **state)
{
	struct mr_buf in = MR_BUF_INIT, want = MR_BUF_INIT;
	struct csv_parser *cp = csv_parser_new(1 << 20);
	const struct csv_field *f;
	size_t pos = 0, i, j, k, n = 300;

	(void)state;
	for (i = 0; i < n; i++) {
		if (i > 0)
			mr_buf_putc(&in, ',');
		if (i % 3 == 2) {
			mr_buf_printf(&in, "plain%zu", i);
			continue;
		}
		mr_buf_printf(&in, "\"f%zu \"\"", i);
		for (j = 0; j < i; j++)
			mr_buf_putc(&in, 'a' + (char)(j % 26));
		mr_buf_puts(&in, "\"\"\"");
	}
	mr_buf_puts(&in, "\r\n");
	for (j = 0; j < 2; j++) {
		/* Twice: the second record reuses warm buffers. */
		pos = 0;
		assert_int_equal(csv_next(cp, in.data, in.len, &pos),
		    CSV_RECORD);
		assert_int_equal(pos, in.len);
		assert_int_equal(csv_nfields(cp), n);
		f = csv_fields(cp);
		for (i = 0; i < n; i++) {
			mr_buf_reset(&want);
			if (i % 3 == 2)
				mr_buf_printf(&want, "plain%zu", i);
			else {
				mr_buf_printf(&want, "f%zu \"", i);
				for (k = 0; k < i; k++)
					mr_buf_putc(&want,
					    'a' + (char)(k % 26));
				mr_buf_putc(&want, '"');
			}
			assert_int_equal(f[i].len, want.len);
			assert_memory_equal(f[i].p, want.data, want.len);
		}
	}
	csv_parser_free(&cp);
	mr_buf_release(&in);
	mr_buf_release(&want);
}

/* NUL bytes are data; the input need not be NUL-terminated. */
static void
test_csv_nul(void **state)
{
	static const char in[] = { 'a', '\0', 'b', ',', '"', '\0', '"', '\n',
		'c' };
	struct csv_parser *cp = csv_parser_new(TEST_CSV_MAX);
	const struct csv_field *f;
	size_t pos = 0;

	(void)state;
	assert_int_equal(csv_next(cp, in, sizeof(in), &pos), CSV_RECORD);
	f = csv_fields(cp);
	assert_int_equal(csv_nfields(cp), 2);
	assert_int_equal(f[0].len, 3);
	assert_memory_equal(f[0].p, "a\0b", 3);
	assert_int_equal(f[1].len, 1);
	assert_int_equal(f[1].p[0], '\0');
	assert_int_equal(csv_next(cp, in, sizeof(in), &pos), CSV_RECORD);
	assert_int_equal(csv_fields(cp)[0].len, 1);
	assert_int_equal(csv_next(cp, in, sizeof(in), &pos), CSV_EOF);
	csv_parser_free(&cp);
}

/* The field array is reused once it is large enough. */
static void
test_csv_warm(void **state)
{
	struct mr_buf in = MR_BUF_INIT;
	struct csv_parser *cp = csv_parser_new(1 << 16);
	const struct csv_field *f;
	size_t pos = 0, i;

	(void)state;
	for (i = 0; i < 1000; i++)
		mr_buf_puts(&in, i ? ",x" : "x");
	mr_buf_puts(&in, "\na,b\nc,d\n");
	assert_int_equal(csv_next(cp, in.data, in.len, &pos), CSV_RECORD);
	assert_int_equal(csv_nfields(cp), 1000);
	f = csv_fields(cp);
	assert_int_equal(csv_next(cp, in.data, in.len, &pos), CSV_RECORD);
	assert_ptr_equal(csv_fields(cp), f);
	assert_int_equal(csv_next(cp, in.data, in.len, &pos), CSV_RECORD);
	assert_ptr_equal(csv_fields(cp), f);
	csv_parser_free(&cp);
	mr_buf_release(&in);
}

struct test_csv_write_row {
	const char	*label;
	const char	*input;
	const char	*expected;
};

static const struct test_csv_write_row test_csv_write_rows[] = {
	{ "plain", "abc", "abc" },
	{ "empty", "", "" },
	{ "space is not quoted", " a b ", " a b " },
	{ "comma", "a,b", "\"a,b\"" },
	{ "quote", "a\"b", "\"a\"\"b\"" },
	{ "only quotes", "\"\"", "\"\"\"\"\"\"" },
	{ "LF", "a\nb", "\"a\nb\"" },
	{ "CR", "a\rb", "\"a\rb\"" },
	{ "CRLF", "a\r\n", "\"a\r\n\"" },
	{ "UTF-8", "\xC3\xA9", "\xC3\xA9" },
};

static void
test_csv_write_field(void **state)
{
	const struct test_csv_write_row *r;
	struct mr_buf out = MR_BUF_INIT, line = MR_BUF_INIT;
	struct csv_parser *cp = csv_parser_new(TEST_CSV_MAX);
	const struct csv_field *f;
	size_t i, n = sizeof(test_csv_write_rows) / sizeof(*r), pos = 0;

	(void)state;
	for (i = 0; i < n; i++) {
		r = &test_csv_write_rows[i];
		mr_buf_reset(&out);
		mr_buf_puts(&out, "pre");
		csv_write_field(&out, r->input, strlen(r->input));
		if (strcmp(out.data + 3, r->expected) != 0)
			fail_msg("%s: got '%s'", r->label, out.data + 3);
		/* Build one record of all rows, for the round trip. */
		if (i > 0)
			mr_buf_putc(&line, ',');
		csv_write_field(&line, r->input, strlen(r->input));
	}
	mr_buf_puts(&line, "\r\n");
	assert_int_equal(csv_next(cp, line.data, line.len, &pos), CSV_RECORD);
	assert_int_equal(pos, line.len);
	assert_int_equal(csv_nfields(cp), n);
	f = csv_fields(cp);
	for (i = 0; i < n; i++) {
		r = &test_csv_write_rows[i];
		if (f[i].len != strlen(r->input) ||
		    memcmp(f[i].p, r->input, f[i].len) != 0)
			fail_msg("%s: round trip '%.*s'", r->label,
			    (int)f[i].len, f[i].p);
	}
	csv_parser_free(&cp);
	mr_buf_release(&out);
	mr_buf_release(&line);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csv_table),
		cmocka_unit_test(test_csv_positions),
		cmocka_unit_test(test_csv_line_numbers),
		cmocka_unit_test(test_csv_zero_copy),
		cmocka_unit_test(test_csv_scratch_fixup),
		cmocka_unit_test(test_csv_nul),
		cmocka_unit_test(test_csv_warm),
		cmocka_unit_test(test_csv_write_field),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
