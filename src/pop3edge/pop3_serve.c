/*
 * pop3_serve.c - the POP3 proxy on an event loop of its own (see
 * pop3_serve.h).
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/mr_log.h"
#include "core/xalloc.h"
#include "net/listen.h"
#include "pop3agg/agg.h"
#include "pop3edge/edge.h"
#include "pop3edge/notify.h"
#include "pop3edge/pop3_serve.h"
#include "registry/registry.h"

struct pop3_serve {
	struct event_base	*base;
	struct edge		*e;	/* attenuating, or */
	struct edge_notify	*n;
	struct agg		*a;	/* aggregating */
	struct registry		*reg;
	FILE			*out;
	int			 wake[2];	/* pop3_serve_stop() -> loop */
	struct event		*wake_ev;
	pthread_t		 thread;
	bool			 threaded;
};

/*
 * pop3_serve_nofile - raise the descriptor limit to what is allowed; a
 * relayed session takes two descriptors, so max_sessions is lowered to
 * what the limit can serve (and said so).
 */
static void
pop3_serve_nofile(struct mr_config *cfg)
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
 * pop3_serve_check - the addresses and the allow-list, before anything
 * listens: a mistake there is a configuration error (78), not a
 * service that cannot start (69).
 */
static int
pop3_serve_check(const struct mr_config *cfg, struct mr_buf *err)
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

/*
 * pop3_serve_base - the event loop.  With epoll's change list, the read
 * and write interest a session turns on and off while handling one batch
 * of commands reaches the kernel as one epoll_ctl(2) at the next wait, not
 * one per change.  (Its one caveat, fds closed and dup'd within a batch,
 * does not arise: connections are closed through their bufferevents.)
 */
static struct event_base *
pop3_serve_base(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;

	if (ec == NULL)
		return NULL;
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	/* Nothing touches this loop from another thread (workers and stop
	 * requests come through pipes): no locks, though main() turned on
	 * libevent's thread support for the delivery loops. */
	event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	return base;
}

/* pop3_serve_registry - the registry the configuration names. */
static struct registry *
pop3_serve_registry(const struct mr_config *cfg, struct mr_buf *err)
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


/* pop3_serve_open_agg - the aggregating proxy and its registry. */
static int
pop3_serve_open_agg(struct pop3_serve *ps, const struct mr_config *cfg,
    struct mr_buf *err)
{
	struct agg_service acct;

	if ((ps->reg = pop3_serve_registry(cfg, err)) == NULL)
		return EX_CONFIG;
	if ((ps->a = agg_new(ps->base, cfg, ps->reg, err)) == NULL)
		return EX_CONFIG;
	if (*cfg->pop3_proxy_accounting_file != '\0') {
		if (agg_accounting_service(cfg->pop3_proxy_accounting_file,
		    &acct, err) != 0)
			return EX_CANTCREAT;
		agg_add_service(ps->a, &acct);
	}
	if (agg_start(ps->a, err) != 0)
		return EX_UNAVAILABLE;
	if (ps->out != NULL) {
		fprintf(ps->out, "listen: %s\n", agg_listen_addr(ps->a));
		if (*agg_listen_tls_addr(ps->a))
			fprintf(ps->out, "listen-tls: %s\n",
			    agg_listen_tls_addr(ps->a));
		if (*agg_http_addr(ps->a))
			fprintf(ps->out, "http-listen: %s\n",
			    agg_http_addr(ps->a));
	}
	mr_log_info("pop3-proxy", "event=start mode=aggregate listen=%s",
	    agg_listen_addr(ps->a));
	return 0;
}

/* pop3_serve_open_edge - the attenuating proxy and its endpoints. */
static int
pop3_serve_open_edge(struct pop3_serve *ps, const struct mr_config *cfg,
    struct mr_buf *err)
{
	if ((ps->e = edge_new(ps->base, cfg, err)) == NULL)
		return EX_CONFIG;
	if (edge_start(ps->e, err) != 0)
		return EX_UNAVAILABLE;
	if ((ps->n = edge_notify_new(ps->base, ps->e, cfg, err)) == NULL)
		return EX_UNAVAILABLE;
	if (ps->out != NULL) {
		fprintf(ps->out, "listen: %s\n", edge_listen_addr(ps->e));
		if (*edge_listen_tls_addr(ps->e))
			fprintf(ps->out, "listen-tls: %s\n",
			    edge_listen_tls_addr(ps->e));
		if (*edge_notify_line_addr(ps->n))
			fprintf(ps->out, "notify-listen: %s\n",
			    edge_notify_line_addr(ps->n));
		if (*edge_notify_http_addr(ps->n))
			fprintf(ps->out, "http-listen: %s\n",
			    edge_notify_http_addr(ps->n));
	}
	mr_log_info("pop3-proxy", "event=start listen=%s backend=%s "
	    "interval_ms=%lld", edge_listen_addr(ps->e),
	    cfg->pop3_proxy_backend, cfg->pop3_proxy_interval);
	return 0;
}

static void
pop3_serve_wake(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_serve *ps = arg;
	char b[16];
	ssize_t r;

	(void)what;
	r = read(fd, b, sizeof(b));
	(void)r;
	event_base_loopbreak(ps->base);
}

static void
pop3_serve_signal(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

struct pop3_serve *
pop3_serve_open(struct mr_config *cfg, FILE *out, struct mr_buf *err,
    int *ex_r)
{
	struct pop3_serve *ps;
	int ex;

	if (pop3_serve_check(cfg, err) != 0) {
		*ex_r = EX_CONFIG;
		return NULL;
	}
	pop3_serve_nofile(cfg);
	ps = xcalloc(1, sizeof(*ps));
	ps->out = out;
	ps->wake[0] = ps->wake[1] = -1;
	if ((ps->base = pop3_serve_base()) == NULL ||
	    pipe2(ps->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		mr_buf_puts(err, "cannot create an event loop");
		ex = EX_OSERR;
		goto fail;
	}
	ex = cfg->pop3_proxy_aggregate ? pop3_serve_open_agg(ps, cfg, err) :
	    pop3_serve_open_edge(ps, cfg, err);
	if (ex != 0)
		goto fail;
	if (out != NULL)
		fflush(out);
	ps->wake_ev = event_new(ps->base, ps->wake[0], EV_READ | EV_PERSIST,
	    pop3_serve_wake, ps);
	event_add(ps->wake_ev, NULL);
	return ps;
fail:
	*ex_r = ex;
	pop3_serve_close(&ps);
	return NULL;
}

void
pop3_serve_run(struct pop3_serve *ps, bool signals)
{
	struct event *sigterm = NULL, *sigint = NULL;

	if (signals) {
		sigterm = evsignal_new(ps->base, SIGTERM, pop3_serve_signal,
		    ps->base);
		sigint = evsignal_new(ps->base, SIGINT, pop3_serve_signal,
		    ps->base);
		evsignal_add(sigterm, NULL);
		evsignal_add(sigint, NULL);
	}
	event_base_dispatch(ps->base);
	if (ps->e != NULL)
		edge_log_counters(ps->e);
	if (sigterm != NULL)
		event_free(sigterm);
	if (sigint != NULL)
		event_free(sigint);
}

static void *
pop3_serve_main(void *arg)
{
	pop3_serve_run(arg, false);
	return NULL;
}

int
pop3_serve_thread(struct pop3_serve *ps)
{
	if (pthread_create(&ps->thread, NULL, pop3_serve_main, ps) != 0)
		return -1;
	ps->threaded = true;
	return 0;
}

void
pop3_serve_stop(struct pop3_serve *ps)
{
	ssize_t w;

	if (ps->wake[1] >= 0) {
		w = write(ps->wake[1], "x", 1);
		(void)w;
	}
}

void
pop3_serve_close(struct pop3_serve **psp)
{
	struct pop3_serve *ps = *psp;

	if (ps == NULL)
		return;
	*psp = NULL;
	if (ps->threaded) {
		pop3_serve_stop(ps);
		pthread_join(ps->thread, NULL);
	}
	edge_notify_free(&ps->n);
	edge_free(&ps->e);
	agg_free(&ps->a);
	/* The registry's workers end before the loop they answer goes. */
	registry_close(&ps->reg);
	if (ps->wake_ev != NULL)
		event_free(ps->wake_ev);
	if (ps->base != NULL)
		event_base_free(ps->base);
	if (ps->wake[0] >= 0)
		close(ps->wake[0]);
	if (ps->wake[1] >= 0)
		close(ps->wake[1]);
	free(ps);
}
