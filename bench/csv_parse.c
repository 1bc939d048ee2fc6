/*
 * csv_parse.c - hand-run micro-benchmark of the CSV parser: generate a
 * recipient list of 1,000,000 rows (email plus 3 fields) in memory, parse
 * it, and print rows per second; once with plain fields (the fast path),
 * once with every field quoted and some escaped (the general path), and
 * once with the per-row checks the campaign reader makes (UTF-8 on every
 * field, the address check on the email).  Not part of the test suite.
 *
 * Build and run, from the top of the tree after `ninja -C build`:
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Isrc bench/csv_parse.c \
 *       build/src/libmailroom.a -o /tmp/csv_parse && /tmp/csv_parse
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mr_buf.h"
#include "core/mr_utf8.h"
#include "delivery/csv.h"
#include "smtp/addr.h"

#define BENCH_ROWS	1000000
#define BENCH_RUNS	5

static double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
bench_generate(struct mr_buf *b, int quoted)
{
	static const char *const first[] = { "Anna", "Bernd", "Chlo\xC3\xA9",
	    "Dmitri", "Eve" };
	static const char *const city[] = { "Berlin", "S\xC3\xA3o Paulo",
	    "New York, NY", "Lyon" };
	size_t i;

	mr_buf_reset(b);
	mr_buf_puts(b, "email,first_name,last_name,city\r\n");
	for (i = 0; i < BENCH_ROWS; i++) {
		if (quoted)
			mr_buf_printf(b, "\"user%zu@example%zu.com\",\"%s\","
			    "\"O\"\"Brien%zu\",\"%s\"\r\n", i, i % 977,
			    first[i % 5], i % 13, city[i % 4]);
		else
			mr_buf_printf(b, "user%zu@example%zu.com,%s,"
			    "Smith%zu,%s\r\n", i, i % 977, first[i % 5],
			    i % 13, i % 4 == 2 ? "Paris" : city[i % 4]);
	}
}

static void
bench_run(const char *label, const struct mr_buf *in, int check)
{
	struct csv_parser *cp = csv_parser_new(65536);
	const struct csv_field *f;
	double t0, best = 1e9, dt;
	size_t pos, rows, bad, i;
	int run;

	for (run = 0; run < BENCH_RUNS; run++) {
		pos = rows = bad = 0;
		t0 = bench_now();
		while (csv_next(cp, in->data, in->len, &pos) != CSV_EOF) {
			rows++;
			if (!check)
				continue;
			f = csv_fields(cp);
			for (i = 0; i < csv_nfields(cp); i++)
				if (!mr_utf8_valid(f[i].p, f[i].len, NULL))
					bad++;
			if (smtp_addr_check(f[0].p, f[0].len, NULL) != NULL)
				bad++;
		}
		dt = bench_now() - t0;
		if (dt < best)
			best = dt;
	}
	printf("%-28s %zu rows, %.1f MB: %.3f s, %.2f M rows/s, "
	    "%.0f MB/s (%zu bad)\n", label, rows, in->len / 1e6, best,
	    rows / best / 1e6, in->len / best / 1e6, bad);
	csv_parser_free(&cp);
}

int
main(void)
{
	struct mr_buf in = MR_BUF_INIT;

	bench_generate(&in, 0);
	bench_run("plain (fast path)", &in, 0);
	bench_run("plain + utf8 + addr", &in, 1);
	bench_generate(&in, 1);
	bench_run("quoted, escapes (general)", &in, 0);
	bench_run("quoted + utf8 + addr", &in, 1);
	mr_buf_release(&in);
	return 0;
}
