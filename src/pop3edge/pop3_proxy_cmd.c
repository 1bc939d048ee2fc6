/*
 * pop3_proxy_cmd.c - "mailroom pop3-proxy": the POP3 edge proxy in the
 * foreground, on one event loop, until SIGTERM or SIGINT.  Flags override
 * the configuration file, so it runs with no file at all.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>


#include "commands.h"
#include "conf/conf.h"
#include "conf/conf_cli.h"
#include "core/mr_buf.h"
#include "pop3edge/pop3_serve.h"

static void
pop3_proxy_usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mailroom pop3-proxy --listen ADDR:PORT --backend HOST:PORT\n"
	    "                           [--interval SECONDS] "
	    "[--notify-listen ADDR:PORT]\n"
	    "                           [--notify-secret S] "
	    "[--http-listen ADDR:PORT]\n"
	    "                           [--config FILE] [-o "
	    "section.key=value]\n"
	    "       mailroom pop3-proxy --aggregate --store FILE --key-file "
	    "FILE\n"
	    "                           --listen ADDR:PORT [--config FILE] "
	    "[-o ...]\n\n"
	    "Runs the POP3 edge proxy: a user whose mailbox was found empty "
	    "less than the\ninterval ago is answered \"no mail\" locally; "
	    "other checks, and every check\nafter a new-mail notification, "
	    "go to the backend POP3 server.  Runs in the\nforeground until "
	    "SIGTERM or SIGINT; logs key=value lines (general.log_level).\n\n"
	    "  -l, --listen ADDR:PORT       where clients connect "
	    "(pop3_proxy.listen)\n"
	    "  -b, --backend HOST:PORT      the POP3 server "
	    "(pop3_proxy.backend)\n"
	    "  -i, --interval SECONDS       attenuation interval "
	    "(pop3_proxy.interval)\n"
	    "      --notify-listen ADDR:PORT  NOTIFY <mailbox> [<secret>] "
	    "lines\n"
	    "      --notify-secret S        secret notifications must carry\n"
	    "      --http-listen ADDR:PORT  /metrics and Dovecot push "
	    "notifications\n"
	    "      --aggregate              aggregate the user's accounts in "
	    "the registry\n"
	    "                               instead (pop3_proxy.aggregate)\n"
	    "      --store FILE             the registry's store "
	    "(registry.store)\n"
	    "      --key-file FILE          the key its secrets are sealed "
	    "with\n"
	    "                               (registry.key_file)\n"
	    "  -c, --config FILE            configuration file (INI)\n"
	    "  -o, --set K=V                override a parameter "
	    "(section.key=value)\n"
	    "  -h, --help                   this text\n\n"
	    "The listening addresses are printed on standard output once "
	    "bound (\"listen: ...\").\n");
}

int
pop3_proxy_cmd(int argc, char **argv)
{
	enum { OPT_NOTIFY_LISTEN = 256, OPT_NOTIFY_SECRET, OPT_HTTP_LISTEN,
		OPT_AGGREGATE, OPT_STORE, OPT_KEY_FILE };
	static const struct option longopts[] = {
		CONF_CLI_LONGOPTS,
		{ "listen", required_argument, NULL, 'l' },
		{ "backend", required_argument, NULL, 'b' },
		{ "interval", required_argument, NULL, 'i' },
		{ "notify-listen", required_argument, NULL, OPT_NOTIFY_LISTEN },
		{ "notify-secret", required_argument, NULL, OPT_NOTIFY_SECRET },
		{ "http-listen", required_argument, NULL, OPT_HTTP_LISTEN },
		{ "aggregate", no_argument, NULL, OPT_AGGREGATE },
		{ "store", required_argument, NULL, OPT_STORE },
		{ "key-file", required_argument, NULL, OPT_KEY_FILE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct conf_cli cl = { 0 };
	struct mr_buf err = MR_BUF_INIT;
	struct mr_config cfg;
	struct pop3_serve *ps;
	int c, ex, r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:o:l:b:i:h", longopts,
	    NULL)) != -1) {
		if ((r = conf_cli_option(&cl, c, optarg, "pop3-proxy")) != 0) {
			if (r > 0)
				continue;
			conf_cli_release(&cl);
			return EX_USAGE;
		}
		switch (c) {
		case 'l':
			conf_cli_set(&cl, "pop3_proxy.listen", optarg);
			break;
		case 'b':
			conf_cli_set(&cl, "pop3_proxy.backend", optarg);
			break;
		case 'i':
			/* A bare number is seconds, as the contract says;
			 * a unit (90s, 5m) is allowed. */
			conf_cli_set(&cl, "pop3_proxy.interval", optarg);
			break;
		case OPT_NOTIFY_LISTEN:
			conf_cli_set(&cl, "pop3_proxy.notify_listen", optarg);
			break;
		case OPT_NOTIFY_SECRET:
			conf_cli_set(&cl, "pop3_proxy.notify_secret", optarg);
			/* Out of the process list (ps) as far as we can. */
			memset(optarg, 'x', strlen(optarg));
			break;
		case OPT_HTTP_LISTEN:
			conf_cli_set(&cl, "pop3_proxy.http_listen", optarg);
			break;
		case OPT_AGGREGATE:
			conf_cli_set(&cl, "pop3_proxy.aggregate", "yes");
			break;
		case OPT_STORE:
			conf_cli_set(&cl, "registry.store", optarg);
			break;
		case OPT_KEY_FILE:
			conf_cli_set(&cl, "registry.key_file", optarg);
			break;
		case 'h':
			pop3_proxy_usage(stdout);
			conf_cli_release(&cl);
			return 0;
		default:
			conf_cli_bad_option("pop3-proxy", argv);
			pop3_proxy_usage(stderr);
			conf_cli_release(&cl);
			return EX_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mailroom pop3-proxy: unexpected argument "
		    "\"%s\"\n", argv[optind]);
		pop3_proxy_usage(stderr);
		conf_cli_release(&cl);
		return EX_USAGE;
	}
	ex = conf_cli_load(&cfg, &cl, "pop3-proxy");
	conf_cli_release(&cl);
	if (ex != 0)
		return ex;
	signal(SIGPIPE, SIG_IGN);
	ps = pop3_serve_open(&cfg, stdout, &err, &ex);
	if (ps == NULL) {
		fprintf(stderr, "mailroom pop3-proxy: %s\n", mr_buf_cstr(&err));
	} else {
		pop3_serve_run(ps, true);
		pop3_serve_close(&ps);
		ex = 0;
	}
	mr_buf_release(&err);
	conf_release(&cfg);
	return ex;
}
