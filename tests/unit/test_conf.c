/*
 * test_conf.c - the configuration: defaults, file syntax, bounds, unknown
 * keys, duplicates, overrides, units.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "core/mr_err.h"

static char *
write_file(const char *text)
{
	static char path[64];
	FILE *fp;
	int fd;

	snprintf(path, sizeof(path), "/tmp/mr-test-conf-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	fputs(text, fp);
	fclose(fp);
	return path;
}

struct file_case {
	const char	*label;
	const char	*text;
	int		 code;		/* 0: loads */
	const char	*error;		/* substring of the message */
};

static const struct file_case file_cases[] = {
	{ "valid", "[smtp]\nport = 2525\n# comment\n; comment\n"
	  "[queue]\nretry_base = 250ms\n", 0, NULL },
	{ "unknown key names file line and key", "[smtp]\nport = 25\n"
	  "portt = 1\n", MR_EUNKNOWN_KEY, ":3: unknown key \"portt\" in "
	  "[smtp]" },
	{ "unknown section", "[nope]\nport = 1\n", MR_EUNKNOWN_KEY,
	  ":2: unknown key" },
	{ "key outside a section", "port = 1\n", MR_EUNKNOWN_KEY,
	  "outside a [section]" },
	{ "out of range", "[smtp]\nport = 70000\n", MR_ERANGE_VALUE,
	  ":2: smtp.port: bad value \"70000\": expected an integer from 1 "
	  "to 65535" },
	{ "not a number", "[smtp]\nport = x\n", MR_EINVAL_INPUT,
	  "smtp.port: bad value" },
	{ "bad duration unit", "[queue]\nretry_base = 5y\n",
	  MR_EINVAL_INPUT, "units ms, s, m, h, d" },
	{ "bad enum", "[smtp]\ntls_policy = maybe\n", MR_EINVAL_INPUT,
	  "one of none, may, encrypt, verify" },
	{ "bad bool", "[smtp]\npipelining = perhaps\n", MR_EINVAL_INPUT,
	  "yes or no" },
	{ "set twice", "[smtp]\nport = 25\nport = 26\n", MR_EINVAL_INPUT,
	  ":3: smtp.port is set twice" },
	{ "syntax", "[smtp]\nport\n", MR_EINVAL_INPUT, ":2: syntax error" },
	{ "overlong line", "[smtp]\nport = 25 ;"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "\n", MR_ETOOLONG, ":2: line longer than" },
};

static void
test_files(void **state)
{
	struct mr_buf err = MR_BUF_INIT;
	struct mr_config cfg;
	size_t i;
	int r;

	(void)state;
	for (i = 0; i < sizeof(file_cases) / sizeof(file_cases[0]); i++) {
		const struct file_case *c = &file_cases[i];
		char *path = write_file(c->text);

		mr_buf_reset(&err);
		conf_init(&cfg);
		r = conf_load_file(&cfg, path, &err);
		unlink(path);
		if (r != c->code)
			fail_msg("%s: code %d (%s)", c->label, r,
			    mr_buf_cstr(&err));
		if (c->error && strstr(mr_buf_cstr(&err), c->error) == NULL)
			fail_msg("%s: message \"%s\"", c->label,
			    mr_buf_cstr(&err));
		if (r == 0) {
			assert_int_equal(cfg.smtp_port, 2525);
			assert_int_equal(cfg.queue_retry_base, 250);
		}
		conf_release(&cfg);
	}
	mr_buf_release(&err);
}

static void
test_defaults_and_overrides(void **state)
{
	struct mr_buf err = MR_BUF_INIT;
	struct mr_config cfg;
	char *path;

	(void)state;
	conf_init(&cfg);
	assert_int_equal(cfg.smtp_port, 25);
	assert_int_equal(cfg.smtp_data_done_timeout, 10 * 60 * 1000);
	assert_int_equal(cfg.smtp_greeting_timeout, 5 * 60 * 1000);
	assert_int_equal(cfg.smtp_data_timeout, 2 * 60 * 1000);
	assert_int_equal(cfg.smtp_data_block_timeout, 3 * 60 * 1000);
	assert_true(cfg.smtp_pipelining);
	assert_int_equal(cfg.dns_route.n, 0);
	path = write_file("[dns]\nroute = a.test=127.0.0.1:25\n"
	    "route = b.test=127.0.0.2:25\n[smtp]\nport = 26\n");
	assert_int_equal(conf_load_file(&cfg, path, &err), 0);
	unlink(path);
	assert_int_equal(cfg.dns_route.n, 2);
	/* The first override of a list replaces the file's values, later
	 * ones append; a scalar override wins. */
	assert_int_equal(conf_set(&cfg, "dns.route", "*=127.0.0.9:25", &err),
	    0);
	assert_int_equal(conf_set(&cfg, "dns.route", "x.test=127.0.0.8:25",
	    &err), 0);
	assert_int_equal(cfg.dns_route.n, 2);
	assert_string_equal(cfg.dns_route.v[0], "*=127.0.0.9:25");
	assert_int_equal(conf_set(&cfg, "smtp.port", "27", &err), 0);
	assert_int_equal(cfg.smtp_port, 27);
	assert_int_equal(conf_set(&cfg, "smtp.nope", "1", &err),
	    MR_EUNKNOWN_KEY);
	assert_int_equal(conf_set(&cfg, "noseparator", "1", &err),
	    MR_EUNKNOWN_KEY);
	assert_int_equal(conf_finish(&cfg, &err), 0);
	assert_true(cfg.general_hostname[0] != '\0');
	conf_release(&cfg);
	mr_buf_release(&err);
}

static void
test_cross_checks(void **state)
{
	struct mr_buf err = MR_BUF_INIT;
	struct mr_config cfg;

	(void)state;
	conf_init(&cfg);
	assert_int_equal(conf_set(&cfg, "queue.retry_base", "2h", &err), 0);
	assert_int_equal(conf_set(&cfg, "queue.retry_max_interval", "1h",
	    &err), 0);
	assert_int_equal(conf_finish(&cfg, &err), MR_ERANGE_VALUE);
	assert_non_null(strstr(mr_buf_cstr(&err), "retry_max_interval"));
	conf_release(&cfg);
	mr_buf_release(&err);
}

static void
test_units(void **state)
{
	long long v;

	(void)state;
	assert_int_equal(conf_parse_duration("250ms", &v), 0);
	assert_int_equal(v, 250);
	assert_int_equal(conf_parse_duration("30", &v), 0);
	assert_int_equal(v, 30000);
	assert_int_equal(conf_parse_duration("5m", &v), 0);
	assert_int_equal(v, 300000);
	assert_int_equal(conf_parse_duration("2d", &v), 0);
	assert_int_equal(v, 172800000);
	assert_int_equal(conf_parse_duration("-1s", &v), MR_EINVAL_INPUT);
	assert_int_equal(conf_parse_duration("1 s x", &v), MR_EINVAL_INPUT);
	assert_int_equal(conf_parse_duration("99999999999999999999s", &v),
	    MR_ERANGE_VALUE);
	assert_int_equal(conf_parse_size("64k", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(conf_parse_size("2G", &v), 0);
	assert_int_equal(v, 2147483648LL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_defaults_and_overrides),
		cmocka_unit_test(test_cross_checks),
		cmocka_unit_test(test_units),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
