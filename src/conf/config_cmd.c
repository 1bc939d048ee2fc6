/*
 * config_cmd.c - "mailroom config": the parameter reference (--doc), the
 * effective configuration, and checking a file (--check).
 */
#include <getopt.h>
#include <stdio.h>
#include <sysexits.h>

#include "commands.h"
#include "conf/conf.h"
#include "conf/conf_cli.h"

static void
config_usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mailroom config [--config FILE] [-o section.key=value]\n"
	    "       mailroom config --doc\n\n"
	    "Loads the configuration (defaults, then FILE, then -o "
	    "overrides), checks it,\nand prints every parameter with its "
	    "effective value in the file's syntax.\nExits non-zero with the "
	    "file and line of the first error.\n\n"
	    "  -c, --config FILE   configuration file (INI)\n"
	    "  -o, --set K=V       override a parameter (section.key=value)\n"
	    "      --doc           print the Markdown reference of every "
	    "parameter\n"
	    "  -h, --help          this text\n");
}

int
config_cmd(int argc, char **argv)
{
	static const struct option longopts[] = {
		CONF_CLI_LONGOPTS,
		{ "doc", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct conf_cli cl = { 0 };
	struct mr_config cfg;
	int c, ex, r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:o:h", longopts, NULL)) != -1) {
		if ((r = conf_cli_option(&cl, c, optarg, "config")) != 0) {
			if (r > 0)
				continue;
			conf_cli_release(&cl);
			return EX_USAGE;
		}
		switch (c) {
		case 'D':
			conf_write_doc(stdout);
			conf_cli_release(&cl);
			return 0;
		case 'h':
			config_usage(stdout);
			conf_cli_release(&cl);
			return 0;
		default:
			conf_cli_bad_option("config", argv);
			config_usage(stderr);
			conf_cli_release(&cl);
			return EX_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mailroom config: unexpected argument \"%s\"\n",
		    argv[optind]);
		conf_cli_release(&cl);
		return EX_USAGE;
	}
	ex = conf_cli_load(&cfg, &cl, "config");
	conf_cli_release(&cl);
	if (ex != 0)
		return ex;
	conf_write_effective(&cfg, stdout);
	conf_release(&cfg);
	return 0;
}
