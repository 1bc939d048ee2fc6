/*
 * conf_cli.c - command-line overrides and the load sequence.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "conf/conf_cli.h"
#include "core/mr_err.h"
#include "core/mr_log.h"
#include "core/xalloc.h"

void
conf_cli_set(struct conf_cli *cl, const char *key, const char *value)
{
	struct mr_buf b = MR_BUF_INIT;

	mr_buf_printf(&b, "%s=%s", key, value);
	cl->sets = xreallocarray(cl->sets, cl->nsets + 1, sizeof(*cl->sets));
	cl->sets[cl->nsets++] = b.data;
}

int
conf_cli_set_kv(struct conf_cli *cl, const char *kv)
{
	if (strchr(kv, '=') == NULL)
		return -1;
	cl->sets = xreallocarray(cl->sets, cl->nsets + 1, sizeof(*cl->sets));
	cl->sets[cl->nsets++] = xstrdup(kv);
	return 0;
}

void
conf_cli_release(struct conf_cli *cl)
{
	size_t i;

	for (i = 0; i < cl->nsets; i++)
		free(cl->sets[i]);
	free(cl->sets);
	cl->sets = NULL;
	cl->nsets = 0;
	free(cl->owned_path);
	cl->owned_path = NULL;
}

int
conf_cli_option(struct conf_cli *cl, int opt, char *arg, const char *prog)
{
	switch (opt) {
	case 'c':
		cl->config_path = arg;
		return 1;
	case 'o':
		if (conf_cli_set_kv(cl, arg) == 0)
			return 1;
		fprintf(stderr, "mailroom %s: -o wants section.key=value, not "
		    "\"%s\"\n", prog, arg);
		return -1;
	default:
		return 0;
	}
}

void
conf_cli_bad_option(const char *prog, char *const *argv)
{
	fprintf(stderr, "mailroom %s: unknown option or missing argument: "
	    "%s\n", prog, optind > 0 ? argv[optind - 1] : "?");
}

int
conf_cli_build(struct mr_config *cfg, const struct conf_cli *cl,
    struct mr_buf *err)
{
	size_t i;
	int r, ex = 0;

	conf_init(cfg);
	if (cl->config_path != NULL) {
		r = conf_load_file(cfg, cl->config_path, err);
		if (r != 0)
			ex = (r == -ENOENT || r == -EACCES) ? EX_NOINPUT
			    : EX_CONFIG;
	}
	for (i = 0; ex == 0 && i < cl->nsets; i++) {
		char *kv = xstrdup(cl->sets[i]);
		char *eq = strchr(kv, '=');

		*eq = '\0';
		r = conf_set(cfg, kv, eq + 1, err);
		free(kv);
		if (r != 0)
			ex = EX_CONFIG;
	}
	if (ex == 0 && conf_finish(cfg, err) != 0)
		ex = EX_CONFIG;
	if (ex != 0)
		conf_release(cfg);
	return ex;
}

int
conf_cli_load(struct mr_config *cfg, const struct conf_cli *cl,
    const char *prog)
{
	struct mr_buf err = MR_BUF_INIT;
	unsigned mask;
	int r, ex;

	ex = conf_cli_build(cfg, cl, &err);
	if (ex == 0) {
		(void)mr_log_parse_trace(cfg->general_log_trace, &mask);
		mr_log_set_level((enum mr_log_level)cfg->general_log_level);
		mr_log_set_trace(mask);
		r = mr_log_open(cfg->general_log_file);
		if (r != 0) {
			mr_buf_printf(&err, "cannot open log file %s: %s",
			    cfg->general_log_file, mr_strerror(r));
			conf_release(cfg);
			ex = EX_CANTCREAT;
		}
	}
	if (ex != 0)
		fprintf(stderr, "mailroom %s: %s\n", prog, mr_buf_cstr(&err));
	mr_buf_release(&err);
	return ex;
}
