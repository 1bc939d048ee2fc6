/*
 * fuzz_csv.c - libFuzzer target for the CSV record parser.  The first byte
 * of the input chooses max_record (0 means 64 KiB), the rest is the file.
 * Every csv_next() result is checked against the contract in csv.h: the
 * position strictly increases, record ranges and line counts match the
 * bytes, field slices lie inside the record or (for unescaped fields) in
 * one contiguous scratch area, bad records resume after their first line,
 * and each record survives a csv_write_field() round trip.
 */
#include <stdint.h>
#include <string.h>

#include "core/mr_buf.h"
#include "core/mr_log.h"
#include "delivery/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_csv_record(struct csv_parser *cp, const char *buf,
    size_t len, size_t old, size_t pos);
static void fuzz_csv_round_trip(const struct csv_parser *cp);

/* Check one CSV_RECORD that started at old and moved the position to pos. */
static void
fuzz_csv_record(struct csv_parser *cp, const char *buf, size_t len,
    size_t old, size_t pos)
{
	const struct csv_field *f = csv_fields(cp);
	size_t start = csv_record_start(cp), end = csv_record_end(cp);
	size_t i, term = pos - end;
	uintptr_t b = (uintptr_t)buf, p;
	const char *next = NULL;
	unsigned lf = 0, sum = 0;

	MR_ASSERT(csv_error(cp) == NULL);
	MR_ASSERT(csv_nfields(cp) >= 1);
	/* The terminator: none at the end of input, LF or CRLF. */
	MR_ASSERT((term == 0 && pos == len) ||
	    (term == 1 && buf[end] == '\n') ||
	    (term == 2 && buf[end] == '\r' && buf[end + 1] == '\n'));
	for (i = start; i < end; i++)
		lf += buf[i] == '\n';
	MR_ASSERT(csv_lines(cp) == lf + 1);
	for (i = 0; i < csv_nfields(cp); i++) {
		p = (uintptr_t)f[i].p;
		MR_ASSERT(f[i].p != NULL);
		if (p >= b && p <= b + len) {
			MR_ASSERT(p >= b + start && p + f[i].len <= b + end);
			continue;
		}
		/* In scratch: fields follow each other, none is empty. */
		MR_ASSERT(f[i].len > 0);
		MR_ASSERT(next == NULL || f[i].p == next);
		next = f[i].p + f[i].len;
		/* Read every byte, so that ASan sees a stale pointer. */
		while (p < (uintptr_t)next)
			sum += *(const unsigned char *)p++;
		MR_ASSERT(memchr(f[i].p, '"', f[i].len) != NULL);
	}
	(void)sum;
	(void)old;
}

/* Writing the fields back and parsing them again gives the same fields. */
static void
fuzz_csv_round_trip(const struct csv_parser *cp)
{
	const struct csv_field *f = csv_fields(cp), *g;
	struct mr_buf out = MR_BUF_INIT;
	struct csv_parser *rp;
	size_t i, pos = 0, n = csv_nfields(cp);

	for (i = 0; i < n; i++) {
		if (i > 0)
			mr_buf_putc(&out, ',');
		csv_write_field(&out, f[i].p, f[i].len);
	}
	mr_buf_puts(&out, "\r\n");
	rp = csv_parser_new(out.len);
	MR_ASSERT(csv_next(rp, out.data, out.len, &pos) == CSV_RECORD);
	MR_ASSERT(pos == out.len);
	MR_ASSERT(csv_nfields(rp) == n);
	g = csv_fields(rp);
	for (i = 0; i < n; i++)
		MR_ASSERT(g[i].len == f[i].len &&
		    memcmp(g[i].p, f[i].p, f[i].len) == 0);
	csv_parser_free(&rp);
	mr_buf_release(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct csv_parser *cp;
	const char *buf, *nl;
	size_t len, pos = 0, old, max_record;
	enum csv_result r;
	unsigned lines = 0;

	if (size == 0)
		return 0;
	max_record = data[0] ? data[0] : 65536;
	buf = (const char *)data + 1;
	len = size - 1;
	cp = csv_parser_new(max_record);
	for (;;) {
		old = pos;
		r = csv_next(cp, buf, len, &pos);
		if (r == CSV_EOF) {
			MR_ASSERT(old == len && pos == len);
			break;
		}
		MR_ASSERT(pos > old && pos <= len);
		MR_ASSERT(pos - old <= max_record || r == CSV_BAD);
		MR_ASSERT(csv_record_start(cp) == old);
		MR_ASSERT(csv_record_end(cp) >= old &&
		    csv_record_end(cp) <= pos);
		MR_ASSERT(csv_lines(cp) >= 1);
		lines += csv_lines(cp);
		if (r == CSV_RECORD) {
			fuzz_csv_record(cp, buf, len, old, pos);
			fuzz_csv_round_trip(cp);
			continue;
		}
		MR_ASSERT(r == CSV_BAD);
		MR_ASSERT(csv_error(cp) != NULL && csv_error(cp)[0] != '\0');
		MR_ASSERT(csv_lines(cp) == 1 && csv_nfields(cp) == 0);
		nl = memchr(buf + old, '\n', len - old);
		MR_ASSERT(pos == (nl != NULL ? (size_t)(nl + 1 - buf) : len));
	}
	/* Every physical line was consumed exactly once. */
	for (old = 0; old < len; old++)
		lines -= buf[old] == '\n';
	MR_ASSERT(lines == (len > 0 && buf[len - 1] != '\n'));
	csv_parser_free(&cp);
	return 0;
}
