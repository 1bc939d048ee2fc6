/*
 * resolve_cmd.c - "mailroom resolve": where mail for each domain goes, as
 * the delivery engine sees it (static routes, MX, implicit MX, null MX,
 * addresses), for operators; in the spirit of Postfix's posttls-finger
 * and postmap -q.  All lookups run at once on one libevent loop; the
 * answers are printed in the order the domains were given.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sysexits.h>

#include <event2/event.h>

#include "commands.h"
#include "conf/conf.h"
#include "conf/conf_cli.h"
#include "core/mr_buf.h"
#include "core/mr_err.h"
#include "core/xalloc.h"
#include "dns/dns.h"

struct resolve_run;

struct resolve_slot {
	struct resolve_run	*run;
	const char		*domain;	/* borrowed from argv */
	const struct dns_result	*res;		/* one reference */
};

struct resolve_run {
	struct event_base	*base;
	size_t			 n;
	size_t			 done;
};

static void resolve_usage(FILE *fp);
static void resolve_done(void *arg, uint64_t reqid,
    const struct dns_result *res);
static void resolve_ttl(struct mr_buf *b, const struct dns_result *res);
static void resolve_print(FILE *fp, const char *domain,
    const struct dns_result *res);

static void
resolve_usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mailroom resolve [--config FILE] [-o section.key=value]\n"
	    "                        [--resolver HOST:PORT] "
	    "[--route DOMAIN=HOST[:PORT] ...]\n"
	    "                        DOMAIN...\n\n"
	    "Shows where mail for each DOMAIN goes: the static route or the "
	    "MX hosts\n(null MX, implicit MX), with preference, port, "
	    "addresses (IPv4 first) and\nthe time the answer is cached.  One "
	    "line per host:\n\n"
	    "  example.test mx=mx1.example.test pref=10 port=25 "
	    "addrs=192.0.2.1,2001:db8::1 ttl=300s\n"
	    "  bad.test status=nxdomain reason=\"...\" ttl=300s\n\n"
	    "Exits 0 when every domain has a host with an address, 1 "
	    "otherwise.\n\n"
	    "  -c, --config FILE        configuration file (INI)\n"
	    "  -o, --set K=V            override a parameter "
	    "(section.key=value)\n"
	    "      --resolver HOST:PORT DNS server to ask (dns.resolver; "
	    "repeatable)\n"
	    "      --route D=HOST:PORT  static route (dns.route; repeatable)\n"
	    "  -h, --help               this text\n");
}

static void
resolve_done(void *arg, uint64_t reqid, const struct dns_result *res)
{
	struct resolve_slot *slot = arg;

	dns_result_ref(res);
	slot->res = res;
	if (++slot->run->done == slot->run->n)
		event_base_loopexit(slot->run->base, NULL);
}

/* resolve_ttl - " ttl=300s", " ttl=1500ms", or " ttl=none" (no expiry). */
static void
resolve_ttl(struct mr_buf *b, const struct dns_result *res)
{
	if (res->expires_ms == UINT64_MAX)
		mr_buf_puts(b, " ttl=none");
	else if (res->ttl_ms % 1000 == 0)
		mr_buf_printf(b, " ttl=%" PRIu64 "s", res->ttl_ms / 1000);
	else
		mr_buf_printf(b, " ttl=%" PRIu64 "ms", res->ttl_ms);
}

static void
resolve_print(FILE *fp, const char *domain, const struct dns_result *res)
{
	struct mr_buf b = MR_BUF_INIT;
	char addr[INET6_ADDRSTRLEN];
	const char *p;
	size_t i, j;

	if (res->status != 0) {
		mr_buf_printf(&b, "%s status=%s reason=\"", domain,
		    dns_status_name(res->status));
		for (p = res->reason; p != NULL && *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				mr_buf_putc(&b, '\\');
			mr_buf_putc(&b, *p);
		}
		mr_buf_putc(&b, '"');
		resolve_ttl(&b, res);
		fprintf(fp, "%s\n", mr_buf_cstr(&b));
	}
	for (i = 0; i < res->nhosts; i++) {
		const struct dns_host *h = &res->hosts[i];

		mr_buf_reset(&b);
		mr_buf_printf(&b, "%s mx=%s pref=%u port=%u", domain, h->name,
		    h->pref, h->port);
		for (j = 0; j < h->naddrs; j++) {
			const struct sockaddr_storage *ss = &h->addrs[j].ss;
			const void *a = ss->ss_family == AF_INET6 ?
			    (const void *)&((const struct sockaddr_in6 *)
			    ss)->sin6_addr : (const void *)&((const struct
			    sockaddr_in *)ss)->sin_addr;

			if (inet_ntop(ss->ss_family, a, addr, sizeof(addr)) ==
			    NULL)
				continue;
			mr_buf_printf(&b, "%s%s", j ? "," : " addrs=", addr);
		}
		if (h->status != 0)
			mr_buf_printf(&b, " status=%s",
			    dns_status_name(h->status));
		if (res->status == 0)
			resolve_ttl(&b, res);
		if (res->routed)
			mr_buf_puts(&b, " routed=yes");
		if (res->implicit_mx)
			mr_buf_puts(&b, " implicit_mx=yes");
		fprintf(fp, "%s\n", mr_buf_cstr(&b));
	}
	mr_buf_release(&b);
}

int
resolve_cmd(int argc, char **argv)
{
	enum { OPT_RESOLVER = 256, OPT_ROUTE };
	static const struct option longopts[] = {
		CONF_CLI_LONGOPTS,
		{ "resolver", required_argument, NULL, OPT_RESOLVER },
		{ "route", required_argument, NULL, OPT_ROUTE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct conf_cli cl = { 0 };
	struct mr_buf err = MR_BUF_INIT;
	struct resolve_run run = { 0 };
	struct resolve_slot *slots;
	struct mr_config cfg;
	struct dns *d;
	size_t i;
	int c, ex, r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:o:h", longopts, NULL)) != -1) {
		if ((r = conf_cli_option(&cl, c, optarg, "resolve")) != 0) {
			if (r > 0)
				continue;
			conf_cli_release(&cl);
			return EX_USAGE;
		}
		switch (c) {
		case OPT_RESOLVER:
			conf_cli_set(&cl, "dns.resolver", optarg);
			break;
		case OPT_ROUTE:
			conf_cli_set(&cl, "dns.route", optarg);
			break;
		case 'h':
			resolve_usage(stdout);
			conf_cli_release(&cl);
			return 0;
		default:
			conf_cli_bad_option("resolve", argv);
			resolve_usage(stderr);
			conf_cli_release(&cl);
			return EX_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "mailroom resolve: no domain given\n");
		resolve_usage(stderr);
		conf_cli_release(&cl);
		return EX_USAGE;
	}
	ex = conf_cli_load(&cfg, &cl, "resolve");
	conf_cli_release(&cl);
	if (ex != 0)
		return ex;

	run.base = event_base_new();
	if (run.base == NULL) {
		fprintf(stderr, "mailroom resolve: cannot create an event "
		    "loop\n");
		conf_release(&cfg);
		return EX_OSERR;
	}
	d = dns_new(run.base, &cfg, &err);
	if (d == NULL) {
		fprintf(stderr, "mailroom resolve: %s\n", mr_buf_cstr(&err));
		mr_buf_release(&err);
		event_base_free(run.base);
		conf_release(&cfg);
		return EX_CONFIG;
	}
	run.n = (size_t)(argc - optind);
	slots = xcalloc(run.n, sizeof(*slots));
	for (i = 0; i < run.n; i++) {
		slots[i].run = &run;
		slots[i].domain = argv[optind + (int)i];
		(void)dns_lookup_mail(d, slots[i].domain, resolve_done,
		    &slots[i]);
	}
	event_base_dispatch(run.base);

	ex = 0;
	for (i = 0; i < run.n; i++) {
		if (slots[i].res == NULL) {
			printf("%s status=temp reason=\"no answer\"\n",
			    slots[i].domain);
			ex = 1;
			continue;
		}
		resolve_print(stdout, slots[i].domain, slots[i].res);
		if (slots[i].res->status != 0)
			ex = 1;
		dns_result_unref(&slots[i].res);
	}
	fflush(stdout);
	free(slots);
	dns_free(&d);
	event_base_free(run.base);
	conf_release(&cfg);
	return ex;
}
