/*
 * conf_cli.h - turning a subcommand's command line into a loaded, checked
 * configuration.
 *
 * A subcommand collects overrides as "section.key=value" strings, in the
 * order given: its own flags (--route becomes dns.route=..., and so on) and
 * the generic -o section.key=value.  conf_cli_load() then builds the
 * configuration: defaults, the file (if any), the overrides, the
 * cross-checks, and applies the [general] logging settings.
 */
#ifndef MR_CONF_CLI_H
#define MR_CONF_CLI_H

#include "conf/conf.h"

struct conf_cli {
	const char	*config_path;	/* NULL: no file; borrowed, or
					 * owned_path */
	char		*owned_path;	/* owned */
	char		**sets;		/* owned "section.key=value" */
	size_t		 nsets;
};

/* The options every subcommand takes, for its getopt_long() table. */
#define CONF_CLI_LONGOPTS						\
	{ "config", required_argument, NULL, 'c' },			\
	{ "set", required_argument, NULL, 'o' }

/*
 * conf_cli_option - handle -c FILE and -o SECTION.KEY=VALUE.  Returns 1
 * when opt was one of them, 0 when it was not, -1 (after a message
 * naming prog) when its argument is bad.  arg is borrowed.
 */
int conf_cli_option(struct conf_cli *cl, int opt, char *arg,
    const char *prog);

/* conf_cli_set - record an override; key and value are copied. */
void conf_cli_set(struct conf_cli *cl, const char *key, const char *value);
/* conf_cli_set_kv - record "-o section.key=value" as given; -1 if no '='. */
int conf_cli_set_kv(struct conf_cli *cl, const char *kv);
void conf_cli_release(struct conf_cli *cl);

/*
 * conf_cli_bad_option - after getopt_long() (run with opterr = 0) returned
 * '?': say which argument was wrong, as "mailroom PROG: ...".
 */
void conf_cli_bad_option(const char *prog, char *const *argv);

/*
 * conf_cli_build - defaults, the file, the overrides, the cross-checks:
 * a configuration, and nothing else (the process's logging is left
 * alone).  0, or a sysexits code with the message in err.
 */
int conf_cli_build(struct mr_config *cfg, const struct conf_cli *cl,
    struct mr_buf *err);

/*
 * conf_cli_load - as above.  On failure prints "mailroom PROG: message" on
 * stderr and returns a sysexits code (EX_CONFIG, EX_NOINPUT); 0 on success.
 */
int conf_cli_load(struct mr_config *cfg, const struct conf_cli *cl,
    const char *prog);

#endif
