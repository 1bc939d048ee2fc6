/*
 * pop3_proxy_cmd.c - "mailroom pop3-proxy": the POP3 edge proxy in the
 * foreground, on one event loop, until SIGTERM or SIGINT.  Flags override
 * the configuration file, so it runs with no file at all.
 */
#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <event2/event.h>

#include "commands.h"
#include "conf/conf.h"
#include "conf/conf_cli.h"
#include "core/mr_buf.h"
#include "core/mr_log.h"
#include "net/listen.h"
#include "registry/registry.h"
#include "pop3agg/agg.h"
#include "pop3edge/edge.h"
#include "pop3edge/notify.h"

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

/*
 * pop3_proxy_nofile - raise the descriptor limit to what is allowed; a
 * relayed session takes two descriptors, so max_sessions is lowered to
 * what the limit can serve (and said so).
 */
static void
pop3_proxy_nofile(struct mr_config *cfg)
{
	struct rlimit rl;
	long long fit;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY)
		return;
	fit = ((long long)rl.rlim_cur - 64) / 2;
	if (fit < 1)
		fit = 1;
	if (cfg->pop3_proxy_max_sessions > fit) {
		mr_log_info("pop3-proxy", "event=fd-limit limit=%llu "
		    "max_sessions=%lld lowered_to=%lld",
		    (unsigned long long)rl.rlim_cur,
		    cfg->pop3_proxy_max_sessions, fit);
		cfg->pop3_proxy_max_sessions = fit;
	}
}

/*
 * pop3_proxy_check - the addresses and the allow-list, before anything
 * listens: a mistake there is a configuration error (78), not a
 * service that cannot start (69).
 */
static int
pop3_proxy_check(const struct mr_config *cfg, struct mr_buf *err)
{
	const struct {
		const char	*key;
		const char	*value;
	} addrs[] = {
		{ "pop3_proxy.listen", cfg->pop3_proxy_listen },
		{ "pop3_proxy.listen_tls", cfg->pop3_proxy_listen_tls },
		{ "pop3_proxy.notify_listen", cfg->pop3_proxy_notify_listen },
		{ "pop3_proxy.http_listen", cfg->pop3_proxy_http_listen },
	};
	struct sockaddr_storage ss;
	socklen_t len;
	size_t i;

	for (i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		if (*addrs[i].value == '\0')
			continue;
		if (net_addr_parse(addrs[i].value, 1, 1, &ss, &len, err) != 0) {
			mr_buf_printf(err, " (%s)", addrs[i].key);
			return -1;
		}
	}
	return edge_notify_check(cfg, err);
}

static void
pop3_proxy_signal(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/*
 * pop3_proxy_base - the event loop.  With epoll's change list, the read
 * and write interest a session turns on and off while handling one batch
 * of commands reaches the kernel as one epoll_ctl(2) at the next wait, not
 * one per change.  (Its one caveat, fds closed and dup'd within a batch,
 * does not arise: connections are closed through their bufferevents.)
 */
static struct event_base *
pop3_proxy_base(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;

	if (ec == NULL)
		return NULL;
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	return base;
}

/* pop3_proxy_registry - the registry the configuration names. */
static struct registry *
pop3_proxy_registry(const struct mr_config *cfg, struct mr_buf *err)
{
	struct registry *reg;
	const char *store = *cfg->registry_store ? cfg->registry_store :
	    cfg->store_path;

	if (cfg->registry_source == CONF_REG_LDAP)
		reg = registry_open_ldap_conf(cfg, err);
	else if (*cfg->registry_key_file == '\0') {
		mr_buf_puts(err, "no key file: give --key-file FILE or "
		    "registry.key_file");
		return NULL;
	} else
		reg = registry_open_store(store, cfg->registry_key_file, false,
		    err, NULL);
	if (reg != NULL)
		registry_tune(reg, (unsigned)cfg->registry_workers, 0);
	return reg;
}

static int
pop3_proxy_aggregate(const struct mr_config *cfg)
{
	struct mr_buf err = MR_BUF_INIT;
	struct event_base *base = NULL;
	struct event *sigterm, *sigint;
	struct registry *reg;
	struct agg *a = NULL;
	struct agg_service acct;
	int ex = EX_CONFIG;

	if ((reg = pop3_proxy_registry(cfg, &err)) == NULL)
		goto out;
	if ((base = pop3_proxy_base()) == NULL) {
		mr_buf_puts(&err, "cannot create an event loop");
		ex = EX_OSERR;
		goto out;
	}
	if ((a = agg_new(base, cfg, reg, &err)) == NULL)
		goto out;
	if (*cfg->pop3_proxy_accounting_file != '\0') {
		if (agg_accounting_service(cfg->pop3_proxy_accounting_file,
		    &acct, &err) != 0) {
			ex = EX_CANTCREAT;
			goto out;
		}
		agg_add_service(a, &acct);
	}
	if (agg_start(a, &err) != 0) {
		ex = EX_UNAVAILABLE;
		goto out;
	}
	printf("listen: %s\n", agg_listen_addr(a));
	if (*agg_listen_tls_addr(a))
		printf("listen-tls: %s\n", agg_listen_tls_addr(a));
	if (*agg_http_addr(a))
		printf("http-listen: %s\n", agg_http_addr(a));
	fflush(stdout);
	mr_log_info("pop3-proxy", "event=start mode=aggregate listen=%s",
	    agg_listen_addr(a));
	sigterm = evsignal_new(base, SIGTERM, pop3_proxy_signal, base);
	sigint = evsignal_new(base, SIGINT, pop3_proxy_signal, base);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	event_base_dispatch(base);
	event_free(sigterm);
	event_free(sigint);
	ex = 0;
out:
	if (ex != 0)
		fprintf(stderr, "mailroom pop3-proxy: %s\n", mr_buf_cstr(&err));
	agg_free(&a);
	/* The registry's workers end before the loop they answer goes. */
	registry_close(&reg);
	if (base != NULL)
		event_base_free(base);
	mr_buf_release(&err);
	return ex;
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
	struct event_base *base;
	struct event *sigterm, *sigint;
	struct edge *e;
	struct edge_notify *n;
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
	if (pop3_proxy_check(&cfg, &err) != 0) {
		fprintf(stderr, "mailroom pop3-proxy: %s\n", mr_buf_cstr(&err));
		mr_buf_release(&err);
		conf_release(&cfg);
		return EX_CONFIG;
	}
	signal(SIGPIPE, SIG_IGN);
	pop3_proxy_nofile(&cfg);
	if (cfg.pop3_proxy_aggregate) {
		ex = pop3_proxy_aggregate(&cfg);
		conf_release(&cfg);
		return ex;
	}
	base = pop3_proxy_base();
	if (base == NULL) {
		fprintf(stderr, "mailroom pop3-proxy: cannot create an event "
		    "loop\n");
		conf_release(&cfg);
		return EX_OSERR;
	}
	e = edge_new(base, &cfg, &err);
	if (e == NULL || edge_start(e, &err) != 0) {
		fprintf(stderr, "mailroom pop3-proxy: %s\n", mr_buf_cstr(&err));
		ex = e == NULL ? EX_CONFIG : EX_UNAVAILABLE;
		goto out;
	}
	n = edge_notify_new(base, e, &cfg, &err);
	if (n == NULL) {
		fprintf(stderr, "mailroom pop3-proxy: %s\n", mr_buf_cstr(&err));
		ex = EX_UNAVAILABLE;
		goto out;
	}
	printf("listen: %s\n", edge_listen_addr(e));
	if (*edge_listen_tls_addr(e))
		printf("listen-tls: %s\n", edge_listen_tls_addr(e));
	if (*edge_notify_line_addr(n))
		printf("notify-listen: %s\n", edge_notify_line_addr(n));
	if (*edge_notify_http_addr(n))
		printf("http-listen: %s\n", edge_notify_http_addr(n));
	fflush(stdout);
	mr_log_info("pop3-proxy", "event=start listen=%s backend=%s "
	    "interval_ms=%lld", edge_listen_addr(e), cfg.pop3_proxy_backend,
	    cfg.pop3_proxy_interval);
	sigterm = evsignal_new(base, SIGTERM, pop3_proxy_signal, base);
	sigint = evsignal_new(base, SIGINT, pop3_proxy_signal, base);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	event_base_dispatch(base);
	edge_log_counters(e);
	event_free(sigterm);
	event_free(sigint);
	edge_notify_free(&n);
	ex = 0;
out:
	edge_free(&e);
	event_base_free(base);
	mr_buf_release(&err);
	conf_release(&cfg);
	return ex;
}
