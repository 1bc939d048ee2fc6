/*
 * csv.h - a pure, zero-copy RFC 4180 record parser over bytes in memory
 * (the mapped recipient list).
 *
 * Records end with CRLF or LF; the last record may lack a terminator.
 * Fields are separated by commas; a field may be enclosed in double quotes,
 * inside which commas, CR, LF and doubled quotes ("") are data.  A field's
 * bytes are returned as a slice of the input when they appear there
 * verbatim (unquoted fields, and quoted fields without "" escapes: the
 * slice is the text between the quotes); only a field with "" escapes is
 * copied, unescaped, into the parser's scratch space.
 *
 * Bad records are reported, not repaired: a quote inside an unquoted field,
 * text after a closing quote, a bare CR outside quotes, an unterminated
 * quoted field, a record longer than max_record bytes.  After a bad record
 * parsing resumes at the start of the next physical line after the bad
 * record's first line, so one bad row never swallows the rest of a file
 * (an unterminated quote is detected when the record would exceed
 * max_record or reach the end of input).
 *
 * The parser never allocates per record once warmed up; it owns its field
 * array and scratch space, which stay valid until the next csv_next() call.
 * Not thread-safe: one parser per thread.
 */
#ifndef MR_CSV_H
#define MR_CSV_H

#include <stddef.h>

struct csv_field {
	const char	*p;	/* borrowed: into the input or the scratch */
	size_t		 len;
};

enum csv_result {
	CSV_RECORD,	/* a well-formed record: see csv_fields() */
	CSV_BAD,	/* a malformed record: see csv_error() */
	CSV_EOF,	/* *pos == len: no more records */
};

struct csv_parser;

/* csv_parser_new - max_record bounds a record's bytes, terminator included. */
struct csv_parser *csv_parser_new(size_t max_record);
void csv_parser_free(struct csv_parser **pp);

/*
 * csv_next - parse the record that starts at buf[*pos]; len is the length
 * of the whole input.  On CSV_RECORD and CSV_BAD, *pos moves past what was
 * consumed (see above for CSV_BAD), csv_record_start()/csv_record_end()
 * give the byte range of the record (terminator excluded) and csv_lines()
 * the number of physical lines consumed (at least 1), so that the caller
 * can keep line numbers.  buf is borrowed and must outlive the slices.
 */
enum csv_result csv_next(struct csv_parser *cp, const char *buf, size_t len,
    size_t *pos);

size_t csv_nfields(const struct csv_parser *cp);
/* csv_fields - the fields of the last CSV_RECORD (borrowed). */
const struct csv_field *csv_fields(const struct csv_parser *cp);
/* csv_error - why the last record was CSV_BAD (a static string). */
const char *csv_error(const struct csv_parser *cp);
size_t csv_record_start(const struct csv_parser *cp);
size_t csv_record_end(const struct csv_parser *cp);
unsigned csv_lines(const struct csv_parser *cp);

/*
 * csv_write_field - append s[0..n) to out as one CSV field, quoted (with
 * doubled quotes) when it holds a comma, quote, CR or LF.  Used by the
 * writers of reject and accounting files.
 */
struct mr_buf;
void csv_write_field(struct mr_buf *out, const char *s, size_t n);

#endif
