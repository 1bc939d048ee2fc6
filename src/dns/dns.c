/*
 * dns.c - where mail for a domain goes: static routes, MX lookups (null MX,
 * implicit MX), the addresses of each host, a TTL cache and a negative
 * cache, on c-ares driven by the caller's libevent loop.  See dns.h.
 *
 * Event integration (as curl's lib/asyn-ares.c): c-ares reports the
 * sockets it wants watched through ARES_OPT_SOCK_STATE_CB; each gets one
 * persistent libevent event whose callback runs ares_process_fd() for that
 * socket.  One libevent timer follows ares_timeout() and runs
 * ares_process_fd(ARES_SOCKET_BAD, ARES_SOCKET_BAD), which handles
 * retransmissions and timeouts.  ares_getsock()/ares_fds() are not used
 * (deprecated; 16-socket cap).
 *
 * A lookup is a job per domain (d->jobs: concurrent requests for one
 * domain wait on the same job and share its queries):
 *
 *   route to a name:  A + AAAA of the route's host
 *   otherwise:        MX  -> NXDOMAIN: done (permanent)
 *                         -> temporary failure: done (temporary)
 *                         -> only "." exchanges: done (null MX)
 *                         -> NODATA: A + AAAA of the domain (implicit MX)
 *                         -> MX hosts: A + AAAA of the first 10 of them,
 *                            all in parallel
 *
 * The job ends when its last query has answered; it then builds one
 * immutable struct dns_result, puts it in the cache and hands a reference
 * to each waiting request.  Callbacks to requesters run from a zero-timeout
 * event (d->deliver), never from inside dns_lookup_mail() or c-ares.
 *
 * Addresses come from separate A and AAAA queries (ares_query), not from
 * ares_getaddrinfo(AF_UNSPEC), because (1) a host whose lookups failed
 * (temporary: retry) must be told apart from a host that has no address
 * (permanent), per family, and 1.18.1's getaddrinfo folds the two
 * families' outcomes into one status; (2) negative caching needs the SOA
 * of a NODATA answer (implicit MX), which getaddrinfo does not expose;
 * (3) every answer then goes through the one parser that is unit-tested
 * and fuzzed (dns_parse.c), and getaddrinfo's RFC 6724 sort, which opens a
 * UDP socket per address, is avoided: we put IPv4 before IPv6 ourselves.
 *
 * Ownership: a job outlives its queries (it is freed only when the last
 * one has answered, or by dns_free() after ares_destroy() has flushed
 * them), so a query's callback may point at its job.  Requests, which a
 * caller may cancel at any time, are found by id (house style rule 22).
 *
 * Cache: domain -> result, at most DNS_CACHE_MAX (10,000) entries, usually
 * under 1 KB each (at most 10 hosts of 2 x DNS_MAX_ADDRS addresses, about
 * 22 KB, for a pathological domain; Postfix tries 5 addresses in all by
 * default, so 8 per family loses nothing).  When it is full, expired
 * entries are dropped; if it is still over three quarters full, entries
 * are dropped in table order (effectively at random) until it is not, so
 * a sweep happens at most once per 2,500 insertions.  Expired entries are
 * also dropped when looked up.  TTLs: a positive result lives for the
 * lowest TTL of the records it used (MX, CNAME, A, AAAA; for an implicit
 * MX also the MX NODATA's negative TTL), clamped to [dns.min_ttl,
 * dns.max_ttl]; NXDOMAIN and "no MX, no
 * address" for min(SOA negative TTL, dns.negative_ttl); temporary failures
 * for at most DNS_TEMP_TTL_MS; a positive result missing a host or an
 * address family through a temporary failure also for at most that long,
 * so that a briefly unreachable preferred MX is asked again soon.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>
#include <event2/event.h>

#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/mr_hmap.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "dns/dns.h"
#include "dns/dns_parse.h"
#include "dns/route.h"

#define DNS_MAX_MX		10	/* MX hosts considered per domain */
#define DNS_MAX_ADDRS		8	/* addresses kept per host and family */
#define DNS_TEMP_TTL_MS		5000	/* longest caching of a failure */
#define DNS_CACHE_MAX		10000	/* cached domains */
#define DNS_NAME_MAX		253	/* RFC 1035 2.3.4, no final dot */
#define DNS_CLASS_IN		1

/* A circular doubly-linked list: unlinking needs no list head. */
struct dns_link {
	struct dns_link	*prev, *next;
};

#define DNS_CONTAINER(p, type, member)					\
	((type *)(void *)((char *)(p) - offsetof(type, member)))

/* A chained hash table from a domain to a job or a cached result. */
struct dns_ent {
	struct dns_ent	*next;
	uint64_t	 hash;
	void		*val;
	char		 key[];
};

struct dns_map {
	struct dns_ent	**b;
	size_t		  nb;		/* a power of two, or 0 */
	size_t		  n;
	size_t		  cursor;	/* eviction resumes here */
};

/* One socket that c-ares asked us to watch. */
struct dns_watch {
	struct dns_watch *next;
	struct dns	*d;
	ares_socket_t	 fd;
	short		 what;
	struct event	*ev;
};

/* A caller's request: waits on a job, then sits in d->ready. */
struct dns_req {
	struct dns_link	 all;		/* d->reqs */
	struct dns_link	 wait;		/* job->waiters or d->ready */
	uint64_t	 id;
	dns_mail_cb	*cb;
	void		*arg;
	const struct dns_result *res;	/* one reference, once ready */
};

enum { DNS_FAM_A, DNS_FAM_AAAA, DNS_NFAM };

/* A host being resolved: an MX host, a route's host, or the domain. */
struct dns_jhost {
	char		*name;
	unsigned	 pref;
	unsigned	 port;
	int		 status[DNS_NFAM];	/* 0, NOADDR, TEMP */
	const char	*why[DNS_NFAM];		/* static text */
	size_t		 naddrs[DNS_NFAM];
	struct dns_addr	*addrs[DNS_NFAM];
	uint32_t	 ttl;			/* seconds, lowest seen */
	uint32_t	 neg_ttl;		/* UINT32_MAX: no SOA */
	uint32_t	 order;			/* random tie-break */
};

struct dns_job {
	struct dns	*d;
	char		*domain;
	const struct route *route;	/* NULL: MX lookup */
	struct dns_link	 waiters;
	size_t		 pending;	/* queries in flight, plus guards */
	int		 status;	/* set when the MX answer ends it */
	char		*reason;	/* with status */
	bool		 implicit;
	uint32_t	 ttl;		/* MX and CNAME records used */
	uint32_t	 neg_ttl;	/* SOA of a negative MX answer */
	size_t		 nhosts;
	struct dns_jhost *hosts;
};

/* The argument of one ares_query(). */
struct dns_query {
	struct dns_job	*job;
	size_t		 host;		/* index in job->hosts */
	int		 fam;		/* DNS_FAM_*, or -1 for MX */
};

/* The result of a route to an IP literal, built once. */
struct dns_lit {
	const struct route	*route;
	struct dns_result	*res;
};

struct dns {
	struct event_base	*base;
	const struct mr_config	*cfg;
	ares_channel		 channel;
	struct route_table	*routes;
	struct event		*timer;		/* follows ares_timeout() */
	struct event		*deliver;	/* runs d->ready */
	struct dns_watch	*watches;
	struct dns_map		 cache;		/* -> struct dns_result */
	struct dns_map		 jobs;		/* -> struct dns_job */
	struct dns_lit		*lits;
	size_t			 nlits;
	struct dns_link		 reqs;
	struct dns_link		 ready;
	uint64_t		 next_id;
	size_t			 npending;
	bool			 channel_ok;
	bool			 destroying;	/* in ares_destroy() */
	bool			 delivering;	/* in dns_deliver_cb() */
	bool			 free_wanted;	/* dns_free() from a callback */
};

static void dns_link_init(struct dns_link *l);
static void dns_link_add_tail(struct dns_link *head, struct dns_link *l);
static void dns_link_del(struct dns_link *l);
static bool dns_link_empty(const struct dns_link *head);

static struct dns_ent **dns_map_find(struct dns_map *m, const char *key);
static void *dns_map_get(struct dns_map *m, const char *key);
static void dns_map_put(struct dns_map *m, const char *key, void *val);
static void *dns_map_del(struct dns_map *m, const char *key);
static void dns_map_release(struct dns_map *m);

static void dns_once_init(void);
static int dns_norm(const char *domain, char *out, size_t outsize);
static int dns_set_servers(struct dns *d, struct mr_buf *err);
static void dns_sock_state_cb(void *data, ares_socket_t fd, int readable,
    int writable);
static void dns_watch_cb(evutil_socket_t fd, short what, void *arg);
static void dns_timer_cb(evutil_socket_t fd, short what, void *arg);
static void dns_timer_update(struct dns *d);
static void dns_deliver_cb(evutil_socket_t fd, short what, void *arg);
static void dns_destroy(struct dns *d);

static struct dns_result *dns_result_new(int status, char *reason);
static void dns_result_free(struct dns_result *res);
static const struct dns_result *dns_lit_result(struct dns *d,
    const struct route *r);
static void dns_cache_put(struct dns *d, const char *domain,
    const struct dns_result *res);
static void dns_cache_sweep(struct dns *d, uint64_t now);
static void dns_req_ready(struct dns *d, struct dns_req *req,
    const struct dns_result *res);
static void dns_req_free(struct dns *d, struct dns_req *req);

static struct dns_job *dns_job_new(struct dns *d, const char *domain,
    const struct route *route);
static void dns_job_start(struct dns_job *job);
static void dns_job_query(struct dns_job *job, const char *name, int type,
    size_t host, int fam);
static void dns_job_unpend(struct dns_job *job);
static void dns_query_cb(void *arg, int status, int timeouts,
    unsigned char *abuf, int alen);
static void dns_job_mx_answer(struct dns_job *job, int status,
    const struct dns_parse_answer *ans);
static void dns_job_addr_answer(struct dns_job *job, size_t hi, int fam,
    int status, const struct dns_parse_answer *ans);
static void dns_job_add_host(struct dns_job *job, const char *name,
    unsigned pref, unsigned port);
static void dns_job_query_host(struct dns_job *job, size_t hi);
static void dns_job_finish(struct dns_job *job);
static void dns_job_free(struct dns_job *job);

static pthread_once_t dns_once = PTHREAD_ONCE_INIT;

/* ---- lists and the hash table ---------------------------------------- */

static void
dns_link_init(struct dns_link *l)
{
	l->prev = l->next = l;
}

static void
dns_link_add_tail(struct dns_link *head, struct dns_link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

static void
dns_link_del(struct dns_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	dns_link_init(l);
}

static bool
dns_link_empty(const struct dns_link *head)
{
	return head->next == head;
}

/* dns_map_find - the link that points at key's entry, or at the NULL
 * that ends its chain. */
static struct dns_ent **
dns_map_find(struct dns_map *m, const char *key)
{
	uint64_t h = mr_hash(key, strlen(key));
	struct dns_ent **pp;

	if (m->nb == 0)
		return NULL;
	for (pp = &m->b[h & (m->nb - 1)]; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
			break;
	}
	return pp;
}

static void *
dns_map_get(struct dns_map *m, const char *key)
{
	struct dns_ent **pp = dns_map_find(m, key);

	return pp != NULL && *pp != NULL ? (*pp)->val : NULL;
}

/* dns_map_put - key must not be in the map. */
static void
dns_map_put(struct dns_map *m, const char *key, void *val)
{
	size_t klen = strlen(key), i, nb;
	struct dns_ent *e, **b;

	if (m->n >= m->nb) {
		nb = m->nb ? m->nb * 2 : 64;
		b = xcalloc(nb, sizeof(*b));
		for (i = 0; i < m->nb; i++) {
			while ((e = m->b[i]) != NULL) {
				m->b[i] = e->next;
				e->next = b[e->hash & (nb - 1)];
				b[e->hash & (nb - 1)] = e;
			}
		}
		free(m->b);
		m->b = b;
		m->nb = nb;
	}
	e = xmalloc(sizeof(*e) + klen + 1);
	memcpy(e->key, key, klen + 1);
	e->hash = mr_hash(key, klen);
	e->val = val;
	e->next = m->b[e->hash & (m->nb - 1)];
	m->b[e->hash & (m->nb - 1)] = e;
	m->n++;
}

static void *
dns_map_del(struct dns_map *m, const char *key)
{
	struct dns_ent **pp = dns_map_find(m, key), *e;
	void *val;

	if (pp == NULL || *pp == NULL)
		return NULL;
	e = *pp;
	*pp = e->next;
	val = e->val;
	free(e);
	m->n--;
	return val;
}

/* dns_map_release - free the entries; the caller has dealt with values. */
static void
dns_map_release(struct dns_map *m)
{
	struct dns_ent *e;
	size_t i;

	for (i = 0; i < m->nb; i++) {
		while ((e = m->b[i]) != NULL) {
			m->b[i] = e->next;
			free(e);
		}
	}
	free(m->b);
	memset(m, 0, sizeof(*m));
}

/* ---- setup and teardown ---------------------------------------------- */

/*
 * dns_once_init - ares_library_init() is not thread-safe and, on Linux,
 * allocates nothing: call it once per process and never clean up.
 */
static void
dns_once_init(void)
{
	int r = ares_library_init(ARES_LIB_INIT_ALL);

	if (r != ARES_SUCCESS)
		mr_panic("ares_library_init: %s", ares_strerror(r));
}

/*
 * dns_norm - domain lower-cased, without a final dot, into out; -1 unless it
 * is a host name (labels of 1 to 63 letters, digits, '-' or '_'; the list
 * loader refuses non-ASCII addresses) or an address literal in brackets.
 */
static int
dns_norm(const char *domain, char *out, size_t outsize)
{
	size_t len = strlen(domain), i, label = 0;

	if (domain[0] == '[') {
		/* An address literal (RFC 5321 4.1.3): checked when used. */
		if (len < 3 || len >= outsize || domain[len - 1] != ']')
			return -1;
		for (i = 0; i <= len; i++)
			out[i] = (char)tolower((unsigned char)domain[i]);
		return 0;
	}

	if (len > 1 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX || len >= outsize)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)domain[i];

		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return -1;
		} else {
			return -1;
		}
		out[i] = (char)tolower(c);
	}
	if (label == 0)
		return -1;
	out[len] = '\0';
	return 0;
}

/*
 * dns_set_servers - dns.resolver entries (ADDRESS, ADDRESS:PORT, [IPv6] or
 * [IPv6]:PORT; port 53 by default) as c-ares's CSV server list.
 */
static int
dns_set_servers(struct dns *d, struct mr_buf *err)
{
	const struct conf_list *l = &d->cfg->dns_resolver;
	struct mr_buf csv = MR_BUF_INIT;
	unsigned char bin[sizeof(struct in6_addr)];
	size_t i;
	int r;

	for (i = 0; i < l->n; i++) {
		const char *s = l->v[i], *close, *colon;
		char host[INET6_ADDRSTRLEN + 1];
		unsigned long port = 53;
		bool v6 = false, ok;
		size_t hlen;
		char *end;

		colon = NULL;
		if (*s == '[') {
			close = strchr(s, ']');
			hlen = close != NULL ? (size_t)(close - s - 1) : 0;
			ok = close != NULL && hlen < sizeof(host) &&
			    (close[1] == '\0' || close[1] == ':');
			if (ok) {
				memcpy(host, s + 1, hlen);
				colon = close[1] == ':' ? close + 1 : NULL;
			}
			v6 = true;
		} else {
			colon = strchr(s, ':');
			if (colon != NULL && strchr(colon + 1, ':') != NULL) {
				colon = NULL;	/* a bare IPv6 address */
				v6 = true;
			}
			hlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
			ok = hlen < sizeof(host);
			if (ok)
				memcpy(host, s, hlen);
		}
		if (ok) {
			host[hlen] = '\0';
			ok = inet_pton(v6 ? AF_INET6 : AF_INET, host, bin) == 1;
		}
		if (ok && colon != NULL) {
			port = strtoul(colon + 1, &end, 10);
			ok = colon[1] >= '0' && colon[1] <= '9' &&
			    *end == '\0' && port >= 1 && port <= 65535;
		}
		if (!ok) {
			mr_buf_printf(err, "dns.resolver \"%s\": expected an "
			    "IP address with an optional port (192.0.2.1:53, "
			    "[2001:db8::1]:53)", s);
			mr_buf_release(&csv);
			return MR_EINVAL_INPUT;
		}
		mr_buf_printf(&csv, "%s%s%s%s:%lu", i ? "," : "",
		    v6 ? "[" : "", host, v6 ? "]" : "", port);
	}
	if (l->n == 0)
		return 0;		/* resolv.conf, read by ares_init */
	r = ares_set_servers_ports_csv(d->channel, mr_buf_cstr(&csv));
	if (r != ARES_SUCCESS) {
		mr_buf_printf(err, "dns.resolver: c-ares refused \"%s\": %s",
		    mr_buf_cstr(&csv), ares_strerror(r));
		mr_buf_release(&csv);
		return MR_EINVAL_INPUT;
	}
	MR_TRACE(MR_TRACE_DNS, "dns", "servers=%s", mr_buf_cstr(&csv));
	mr_buf_release(&csv);
	return 0;
}

struct dns *
dns_new(struct event_base *base, const struct mr_config *cfg,
    struct mr_buf *err)
{
	struct ares_options opts;
	struct dns *d;
	int r;

	pthread_once(&dns_once, dns_once_init);
	d = xcalloc(1, sizeof(*d));
	d->base = base;
	d->cfg = cfg;
	d->next_id = 1;
	dns_link_init(&d->reqs);
	dns_link_init(&d->ready);
	d->routes = route_table_new(&cfg->dns_route, (unsigned)cfg->smtp_port,
	    err);
	if (d->routes == NULL) {
		dns_destroy(d);
		return NULL;
	}
	memset(&opts, 0, sizeof(opts));
	/*
	 * NOSEARCH: a mail domain is always fully qualified; resolv.conf's
	 * search list would send mail for "example" to example.corp.lan.
	 * NOALIASES: the HOSTALIASES variable must not redirect mail.
	 * Lookups "b": DNS only, never /etc/hosts, so that mail goes where
	 * the world's DNS says and a local hosts entry cannot silently
	 * divert it (ares_query never reads hosts; this also holds if a
	 * future change uses ares_getaddrinfo).
	 */
	opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	opts.timeout = (int)cfg->dns_timeout;
	opts.tries = (int)cfg->dns_tries;
	opts.lookups = (char *)"b";
	opts.sock_state_cb = dns_sock_state_cb;
	opts.sock_state_cb_data = d;
	r = ares_init_options(&d->channel, &opts, ARES_OPT_FLAGS |
	    ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS |
	    ARES_OPT_SOCK_STATE_CB);
	if (r != ARES_SUCCESS) {
		mr_buf_printf(err, "dns: cannot start c-ares: %s",
		    ares_strerror(r));
		dns_destroy(d);
		return NULL;
	}
	d->channel_ok = true;
	if (dns_set_servers(d, err) != 0) {
		dns_destroy(d);
		return NULL;
	}
	d->timer = evtimer_new(base, dns_timer_cb, d);
	d->deliver = evtimer_new(base, dns_deliver_cb, d);
	if (d->timer == NULL || d->deliver == NULL)
		mr_panic("dns: evtimer_new failed");
	return d;
}

void
dns_free(struct dns **dp)
{
	struct dns *d = *dp;

	if (d == NULL)
		return;
	*dp = NULL;
	while (!dns_link_empty(&d->reqs))
		dns_req_free(d, DNS_CONTAINER(d->reqs.next, struct dns_req,
		    all));
	if (d->delivering) {
		/* Called from a request's callback: dns_deliver_cb ends it. */
		d->free_wanted = true;
		return;
	}
	dns_destroy(d);
}

/* dns_destroy - the teardown, once no request and no callback is live. */
static void
dns_destroy(struct dns *d)
{
	struct dns_watch *w;
	struct dns_ent *e;
	size_t i;

	while (!dns_link_empty(&d->reqs))
		dns_req_free(d, DNS_CONTAINER(d->reqs.next, struct dns_req,
		    all));
	/*
	 * ares_destroy() calls every pending query back with
	 * ARES_EDESTRUCTION and reports its sockets closed: dns_query_cb and
	 * dns_sock_state_cb only release memory while destroying is set.
	 */
	d->destroying = true;
	if (d->channel_ok)
		ares_destroy(d->channel);
	for (i = 0; i < d->jobs.nb; i++)
		for (e = d->jobs.b[i]; e != NULL; e = e->next)
			dns_job_free(e->val);
	dns_map_release(&d->jobs);
	for (i = 0; i < d->cache.nb; i++) {
		for (e = d->cache.b[i]; e != NULL; e = e->next) {
			const struct dns_result *res = e->val;

			dns_result_unref(&res);
		}
	}
	dns_map_release(&d->cache);
	while ((w = d->watches) != NULL) {
		d->watches = w->next;
		event_free(w->ev);
		free(w);
	}
	for (i = 0; i < d->nlits; i++) {
		const struct dns_result *res = d->lits[i].res;

		dns_result_unref(&res);
	}
	free(d->lits);
	if (d->timer != NULL)
		event_free(d->timer);
	if (d->deliver != NULL)
		event_free(d->deliver);
	route_table_free(&d->routes);
	free(d);
}

/* ---- c-ares on libevent ---------------------------------------------- */

/*
 * dns_sock_state_cb - c-ares opened, changed or closed a socket (from
 * ares_query(), ares_process_fd() or ares_destroy()).
 */
static void
dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_watch *w, **pp;
	short what;

	for (pp = &d->watches; (w = *pp) != NULL; pp = &w->next)
		if (w->fd == fd)
			break;
	if (!readable && !writable) {
		if (w != NULL) {
			*pp = w->next;
			event_free(w->ev);	/* may be running: allowed */
			free(w);
		}
		return;
	}
	if (d->destroying)
		return;
	what = (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0) |
	    EV_PERSIST);
	if (w != NULL && w->what == what)
		return;
	if (w == NULL) {
		w = xcalloc(1, sizeof(*w));
		w->d = d;
		w->fd = fd;
		w->next = d->watches;
		d->watches = w;
	} else {
		event_free(w->ev);
	}
	w->what = what;
	w->ev = event_new(d->base, fd, what, dns_watch_cb, w);
	if (w->ev == NULL || event_add(w->ev, NULL) != 0)
		mr_panic("dns: cannot watch socket %d", (int)fd);
}

static void
dns_watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_watch *w = arg;
	struct dns *d = w->d;	/* w may be freed by ares_process_fd() */

	ares_process_fd(d->channel,
	    (what & EV_READ) ? (ares_socket_t)fd : ARES_SOCKET_BAD,
	    (what & EV_WRITE) ? (ares_socket_t)fd : ARES_SOCKET_BAD);
	dns_timer_update(d);
}

static void
dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;

	ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_timer_update(d);
}

/* dns_timer_update - arm the timer for c-ares's next deadline, if any. */
static void
dns_timer_update(struct dns *d)
{
	struct timeval tv, *tvp;

	if (d->destroying)
		return;
	tvp = ares_timeout(d->channel, NULL, &tv);
	if (tvp == NULL)
		evtimer_del(d->timer);
	else
		evtimer_add(d->timer, tvp);
}

/* ---- results, cache, requests ---------------------------------------- */

/* dns_result_new - reason is transferred; one reference for the caller. */
static struct dns_result *
dns_result_new(int status, char *reason)
{
	struct dns_result *res = xcalloc(1, sizeof(*res));

	res->status = status;
	res->reason = reason;
	res->refs = 1;
	return res;
}

static void
dns_result_free(struct dns_result *res)
{
	size_t i;

	for (i = 0; i < res->nhosts; i++) {
		free(res->hosts[i].name);
		free(res->hosts[i].addrs);
	}
	free(res->hosts);
	free(res->reason);
	free(res);
}

void
dns_result_ref(const struct dns_result *res)
{
	struct dns_result *r = (struct dns_result *)res;

	MR_ASSERT(r->refs > 0);
	r->refs++;
}

void
dns_result_unref(const struct dns_result **resp)
{
	struct dns_result *r = (struct dns_result *)*resp;

	if (r == NULL)
		return;
	*resp = NULL;
	MR_ASSERT(r->refs > 0);
	if (--r->refs == 0)
		dns_result_free(r);
}

/*
 * dns_addr_literal - where mail for an address-literal domain goes: that
 * address, at smtp.port (RFC 5321 5.1).  key is lower-cased: "[1.2.3.4]"
 * or "[ipv6:...]".  Returns a new result (the caller's reference).
 */
static struct dns_result *
dns_addr_literal(struct dns *d, const char *key)
{
	struct dns_result *res;
	struct dns_addr *a;
	struct mr_buf b = MR_BUF_INIT;
	char host[64];
	size_t n = strlen(key) - 2;
	bool v6 = n > 5 && strncmp(key + 1, "ipv6:", 5) == 0;
	unsigned port = (unsigned)d->cfg->smtp_port;

	if (v6)
		n -= 5;
	if (n >= sizeof(host))
		goto bad;
	memcpy(host, key + 1 + (v6 ? 5 : 0), n);
	host[n] = '\0';
	a = xcalloc(1, sizeof(*a));
	if (v6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		a->len = sizeof(*sin6);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			free(a);
			goto bad;
		}
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		a->len = sizeof(*sin);
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
			free(a);
			goto bad;
		}
	}
	mr_buf_printf(&b, "address literal %s", key);
	res = dns_result_new(0, b.data);
	res->expires_ms = UINT64_MAX;
	res->nhosts = 1;
	res->hosts = xcalloc(1, sizeof(*res->hosts));
	res->hosts[0].name = xstrdup(host);
	res->hosts[0].port = port;
	res->hosts[0].naddrs = 1;
	res->hosts[0].addrs = a;
	return res;
bad:
	mr_buf_printf(&b, "%s is not a valid address literal", key);
	return dns_result_new(MR_EDNS_NXDOMAIN, b.data);
}

/* dns_lit_result - the result of a route to an IP literal (borrowed). */
static const struct dns_result *
dns_lit_result(struct dns *d, const struct route *r)
{
	struct dns_result *res;
	struct dns_addr *a;
	struct mr_buf b = MR_BUF_INIT;
	size_t i;

	for (i = 0; i < d->nlits; i++)
		if (d->lits[i].route == r)
			return d->lits[i].res;
	mr_buf_printf(&b, "static route %s=%s%s%s:%u", r->pattern,
	    strchr(r->host, ':') ? "[" : "", r->host,
	    strchr(r->host, ':') ? "]" : "", r->port);
	res = dns_result_new(0, b.data);
	res->routed = true;
	res->expires_ms = UINT64_MAX;
	res->nhosts = 1;
	res->hosts = xcalloc(1, sizeof(*res->hosts));
	res->hosts[0].name = xstrdup(r->host);
	res->hosts[0].port = r->port;
	res->hosts[0].naddrs = 1;
	res->hosts[0].addrs = a = xcalloc(1, sizeof(*a));
	if (strchr(r->host, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)r->port);
		if (inet_pton(AF_INET6, r->host, &sin6->sin6_addr) != 1)
			mr_panic("dns: route host %s is not IPv6", r->host);
		a->len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)r->port);
		if (inet_pton(AF_INET, r->host, &sin->sin_addr) != 1)
			mr_panic("dns: route host %s is not IPv4", r->host);
		a->len = sizeof(*sin);
	}
	d->lits = xreallocarray(d->lits, d->nlits + 1, sizeof(*d->lits));
	d->lits[d->nlits].route = r;
	d->lits[d->nlits].res = res;
	d->nlits++;
	return res;
}

/* dns_cache_put - cache res under domain (takes its own reference). */
static void
dns_cache_put(struct dns *d, const char *domain,
    const struct dns_result *res)
{
	const struct dns_result *old;

	old = dns_map_del(&d->cache, domain);
	dns_result_unref(&old);
	if (res->ttl_ms == 0)
		return;
	if (d->cache.n >= DNS_CACHE_MAX)
		dns_cache_sweep(d, mr_clock_ms());
	dns_result_ref(res);
	dns_map_put(&d->cache, domain, (void *)res);
	MR_TRACE(MR_TRACE_DNS, "dns", "domain=%s cache=put ttl_ms=%" PRIu64
	    " entries=%zu", domain, res->ttl_ms, d->cache.n);
}

/* dns_cache_sweep - drop expired entries, then others down to 3/4 full. */
static void
dns_cache_sweep(struct dns *d, uint64_t now)
{
	struct dns_map *m = &d->cache;
	struct dns_ent **pp, *e;
	size_t i, before = m->n;

	for (i = 0; i < m->nb; i++) {
		for (pp = &m->b[i]; (e = *pp) != NULL;) {
			const struct dns_result *res = e->val;

			if (res->expires_ms > now) {
				pp = &e->next;
				continue;
			}
			*pp = e->next;
			dns_result_unref(&res);
			free(e);
			m->n--;
		}
	}
	for (i = 0; m->n > DNS_CACHE_MAX / 4 * 3 && i < m->nb; i++) {
		size_t bi = (m->cursor + i) & (m->nb - 1);

		while (m->n > DNS_CACHE_MAX / 4 * 3 && (e = m->b[bi]) != NULL) {
			const struct dns_result *res = e->val;

			m->b[bi] = e->next;
			dns_result_unref(&res);
			free(e);
			m->n--;
		}
		m->cursor = bi + 1;
	}
	mr_log_debug("dns", "cache=sweep before=%zu after=%zu", before, m->n);
}

/* dns_req_ready - res (one reference, transferred) goes to req's caller
 * on the next loop iteration. */
static void
dns_req_ready(struct dns *d, struct dns_req *req,
    const struct dns_result *res)
{
	static const struct timeval zero = { 0, 0 };

	dns_link_del(&req->wait);
	req->res = res;
	dns_link_add_tail(&d->ready, &req->wait);
	evtimer_add(d->deliver, &zero);
}

/* dns_req_free - forget req without calling back. */
static void
dns_req_free(struct dns *d, struct dns_req *req)
{
	dns_link_del(&req->all);
	dns_link_del(&req->wait);
	dns_result_unref(&req->res);
	d->npending--;
	free(req);
}

/*
 * dns_deliver_cb - call back the requests that are ready.  A callback may
 * look up, cancel, or free the resolver: requests made during the run wait
 * for the next one, and dns_free() is finished here.
 */
static void
dns_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;
	struct dns_link batch;
	struct dns_req *req;
	const struct dns_result *res;
	dns_mail_cb *cb;
	uint64_t id;
	void *cbarg;

	dns_link_init(&batch);
	if (!dns_link_empty(&d->ready)) {
		batch.next = d->ready.next;
		batch.prev = d->ready.prev;
		batch.next->prev = &batch;
		batch.prev->next = &batch;
		dns_link_init(&d->ready);
	}
	d->delivering = true;
	while (!d->free_wanted && !dns_link_empty(&batch)) {
		req = DNS_CONTAINER(batch.next, struct dns_req, wait);
		cb = req->cb;
		cbarg = req->arg;
		id = req->id;
		res = req->res;
		req->res = NULL;
		dns_req_free(d, req);
		cb(cbarg, id, res);
		dns_result_unref(&res);
	}
	d->delivering = false;
	if (d->free_wanted)
		dns_destroy(d);
}

const struct dns_result *
dns_cached_mail(struct dns *d, const char *domain)
{
	char key[DNS_NAME_MAX + 1];
	const struct route *r;
	const struct dns_result *res;

	if (dns_norm(domain, key, sizeof(key)) != 0)
		return NULL;
	r = route_match(d->routes, key);
	if (r != NULL && r->literal)
		return dns_lit_result(d, r);
	res = dns_map_get(&d->cache, key);
	if (res == NULL && r == NULL && key[0] == '[') {
		/* Kept in the cache, which owns the reference. */
		res = dns_addr_literal(d, key);
		dns_map_put(&d->cache, key, (void *)res);
	}
	if (res != NULL && res->expires_ms <= mr_clock_ms()) {
		res = dns_map_del(&d->cache, key);
		dns_result_unref(&res);
		MR_TRACE(MR_TRACE_DNS, "dns", "domain=%s cache=expired", key);
		return NULL;
	}
	return res;
}

uint64_t
dns_lookup_mail(struct dns *d, const char *domain, dns_mail_cb *cb,
    void *arg)
{
	char key[DNS_NAME_MAX + 1];
	struct dns_req *req = xcalloc(1, sizeof(*req));
	const struct dns_result *lit;
	const struct route *r;
	struct dns_job *job;
	struct mr_buf b = MR_BUF_INIT;
	bool fresh = false;

	req->id = d->next_id++;
	req->cb = cb;
	req->arg = arg;
	dns_link_init(&req->wait);
	dns_link_add_tail(&d->reqs, &req->all);
	d->npending++;
	if (dns_norm(domain, key, sizeof(key)) != 0) {
		mr_buf_printf(&b, "MX lookup for %s: not a valid domain name",
		    mr_q(domain, (size_t)-1));
		dns_req_ready(d, req, dns_result_new(MR_EDNS_NXDOMAIN,
		    b.data));
		return req->id;
	}
	r = route_match(d->routes, key);
	if (r != NULL && r->literal) {
		lit = dns_lit_result(d, r);
		dns_result_ref(lit);
		dns_req_ready(d, req, lit);
		return req->id;
	}
	if (r == NULL && key[0] == '[') {
		dns_req_ready(d, req, dns_addr_literal(d, key));
		return req->id;
	}
	job = dns_map_get(&d->jobs, key);
	if (job == NULL) {
		job = dns_job_new(d, key, r);
		fresh = true;
	}
	dns_link_add_tail(&job->waiters, &req->wait);
	MR_TRACE(MR_TRACE_DNS, "dns", "req=%" PRIu64 " domain=%s lookup=%s",
	    req->id, key, fresh ? "new" : "shared");
	/* The job may end inside dns_job_start(): req is already waiting. */
	if (fresh)
		dns_job_start(job);
	return req->id;
}

void
dns_cancel(struct dns *d, uint64_t reqid)
{
	struct dns_link *l;

	for (l = d->reqs.next; l != &d->reqs; l = l->next) {
		struct dns_req *req = DNS_CONTAINER(l, struct dns_req, all);

		if (req->id == reqid) {
			MR_TRACE(MR_TRACE_DNS, "dns", "req=%" PRIu64
			    " cancelled", reqid);
			dns_req_free(d, req);
			return;
		}
	}
}

size_t
dns_pending(const struct dns *d)
{
	return d->npending;
}

/* ---- jobs ------------------------------------------------------------ */

static struct dns_job *
dns_job_new(struct dns *d, const char *domain, const struct route *route)
{
	struct dns_job *job = xcalloc(1, sizeof(*job));

	job->d = d;
	job->domain = xstrdup(domain);
	job->route = route;
	job->ttl = UINT32_MAX;
	job->neg_ttl = UINT32_MAX;
	dns_link_init(&job->waiters);
	dns_map_put(&d->jobs, domain, job);
	return job;
}

static void
dns_job_start(struct dns_job *job)
{
	job->pending++;		/* guard: queries may answer at once */
	if (job->route != NULL) {
		dns_job_add_host(job, job->route->host, 0, job->route->port);
		dns_job_query_host(job, 0);
	} else {
		dns_job_query(job, job->domain, DNS_PARSE_TYPE_MX, 0, -1);
	}
	dns_job_unpend(job);
}

static void
dns_job_query(struct dns_job *job, const char *name, int type, size_t host,
    int fam)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));

	q->job = job;
	q->host = host;
	q->fam = fam;
	job->pending++;
	MR_TRACE(MR_TRACE_DNS, "dns", "domain=%s query=%s type=%s",
	    job->domain, name, type == DNS_PARSE_TYPE_MX ? "MX" :
	    type == DNS_PARSE_TYPE_A ? "A" : "AAAA");
	ares_query(job->d->channel, name, DNS_CLASS_IN, type, dns_query_cb,
	    q);
	dns_timer_update(job->d);
}

/* dns_job_unpend - one query or guard fewer; the last one ends the job. */
static void
dns_job_unpend(struct dns_job *job)
{
	MR_ASSERT(job->pending > 0);
	if (--job->pending == 0 && !job->d->destroying)
		dns_job_finish(job);
}

/* dns_ares_name - c-ares's status as a log token. */
static const char *
dns_ares_name(int status)
{
	switch (status) {
	case ARES_SUCCESS:
		return "ok";
	case ARES_ENODATA:
		return "nodata";
	case ARES_ENOTFOUND:
		return "nxdomain";
	case ARES_ESERVFAIL:
		return "servfail";
	case ARES_EREFUSED:
		return "refused";
	case ARES_ETIMEOUT:
		return "timeout";
	case ARES_ECONNREFUSED:
		return "connrefused";
	case ARES_EFORMERR:
		return "formerr";
	case ARES_EBADRESP:
		return "badresp";
	default:
		return "error";
	}
}

const char *
dns_status_name(int status)
{
	switch (status) {
	case 0:
		return "ok";
	case MR_EDNS_NXDOMAIN:
		return "nxdomain";
	case MR_EDNS_NULLMX:
		return "nullmx";
	case MR_EDNS_NOADDR:
		return "noaddr";
	default:
		return "temp";
	}
}

/* dns_failure - c-ares's status for a failed query, for people. */
static const char *
dns_failure(int status)
{
	switch (status) {
	case ARES_ESERVFAIL:
		return "server failure (SERVFAIL)";
	case ARES_EREFUSED:
		return "query refused (REFUSED)";
	case ARES_ETIMEOUT:
		return "no answer from the DNS servers (timeout)";
	case ARES_ECONNREFUSED:
		/*
		 * c-ares 1.18.1 tries the next server on SERVFAIL and
		 * REFUSED and, once all have failed, reports this status,
		 * not ARES_ESERVFAIL: ARES_FLAG_NOCHECKRESP would keep the
		 * rcode but give up the failover, which matters more.
		 */
		return "no DNS server answered (unreachable, or SERVFAIL or "
		    "REFUSED)";
	case ARES_EFORMERR:
		return "query rejected as malformed (FORMERR)";
	case ARES_EBADRESP:
		return "malformed answer from the DNS server";
	default:
		return ares_strerror(status);
	}
}

static void
dns_query_cb(void *arg, int status, int timeouts, unsigned char *abuf,
    int alen)
{
	struct dns_query *q = arg;
	struct dns_job *job = q->job;
	struct dns_parse_answer ans;
	bool parsed = false;

	if (status == ARES_EDESTRUCTION || job->d->destroying) {
		/* Torn down by dns_free(): the job is freed after this. */
		job->pending--;
		free(q);
		return;
	}
	if (abuf != NULL && alen > 0)
		parsed = dns_parse(abuf, (size_t)alen, &ans) == 0;
	if (!parsed)
		memset(&ans, 0, sizeof(ans));
	MR_TRACE(MR_TRACE_DNS, "dns", "domain=%s answer=%s type=%s "
	    "status=%s rcode=%u records=%zu soa_ttl=%lld timeouts=%d",
	    job->domain, parsed ? ans.qname : "-", q->fam < 0 ? "MX" :
	    q->fam == DNS_FAM_A ? "A" : "AAAA", dns_ares_name(status),
	    ans.rcode, ans.nmx + ans.naddrs,
	    ans.has_soa ? (long long)ans.negative_ttl : -1LL, timeouts);
	if (status == ARES_SUCCESS && !parsed)
		status = ARES_EBADRESP;
	if (q->fam < 0)
		dns_job_mx_answer(job, status, parsed ? &ans : NULL);
	else
		dns_job_addr_answer(job, q->host, q->fam, status,
		    parsed ? &ans : NULL);
	if (parsed)
		dns_parse_release(&ans);
	free(q);
	dns_job_unpend(job);
}

static void
dns_job_add_host(struct dns_job *job, const char *name, unsigned pref,
    unsigned port)
{
	struct dns_jhost *h;
	int f;

	job->hosts = xreallocarray(job->hosts, job->nhosts + 1,
	    sizeof(*job->hosts));
	h = &job->hosts[job->nhosts++];
	memset(h, 0, sizeof(*h));
	h->name = xstrdup(name);
	h->pref = pref;
	h->port = port;
	h->ttl = UINT32_MAX;
	h->neg_ttl = UINT32_MAX;
	h->order = arc4random();
	for (f = 0; f < DNS_NFAM; f++)
		h->status[f] = MR_EDNS_TEMP;	/* until answered */
}

static void
dns_job_query_host(struct dns_job *job, size_t hi)
{
	dns_job_query(job, job->hosts[hi].name, DNS_PARSE_TYPE_A, hi,
	    DNS_FAM_A);
	dns_job_query(job, job->hosts[hi].name, DNS_PARSE_TYPE_AAAA, hi,
	    DNS_FAM_AAAA);
}

/* dns_mx_cmp - preference order, the random tie-break for equals. */
static int
dns_mx_cmp(const void *a, const void *b)
{
	const struct dns_jhost *x = a, *y = b;

	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	if (x->order != y->order)
		return x->order < y->order ? -1 : 1;
	return 0;
}

static void
dns_job_mx_answer(struct dns_job *job, int status,
    const struct dns_parse_answer *ans)
{
	const struct mr_config *cfg = job->d->cfg;
	struct mr_buf b = MR_BUF_INIT;
	uint32_t ttl = UINT32_MAX;
	size_t i, j, nreal = 0;

	if (ans != NULL && ans->has_soa)
		job->neg_ttl = ans->negative_ttl;
	if (status == ARES_SUCCESS && ans->nmx == 0)
		status = ARES_ENODATA;	/* only CNAMEs, or other types */
	switch (status) {
	case ARES_SUCCESS:
		break;
	case ARES_ENOTFOUND:
		job->status = MR_EDNS_NXDOMAIN;
		mr_buf_printf(&b, "MX lookup for %s: domain does not exist "
		    "(NXDOMAIN)", job->domain);
		job->reason = b.data;
		return;
	case ARES_ENODATA:
		/* RFC 5321 5.1: no MX, the domain itself is the host. */
		job->implicit = true;
		dns_job_add_host(job, job->domain, 0, (unsigned)cfg->smtp_port);
		dns_job_query_host(job, 0);
		return;
	default:
		job->status = MR_EDNS_TEMP;
		mr_buf_printf(&b, "MX lookup for %s: %s", job->domain,
		    dns_failure(status));
		job->reason = b.data;
		return;
	}

	for (i = 0; i < ans->nmx; i++) {
		if (ans->mx[i].ttl < ttl)
			ttl = ans->mx[i].ttl;
		if (ans->mx[i].host[0] != '\0')
			nreal++;
	}
	if (ans->cname_ttl < ttl)
		ttl = ans->cname_ttl;
	job->ttl = ttl;
	if (nreal == 0) {
		/* RFC 7505: "." alone; "." beside real hosts is ignored. */
		job->status = MR_EDNS_NULLMX;
		mr_buf_printf(&b, "MX lookup for %s: the domain accepts no "
		    "mail (null MX, RFC 7505)", job->domain);
		job->reason = b.data;
		return;
	}
	for (i = 0; i < ans->nmx; i++) {
		const struct dns_parse_mx *mx = &ans->mx[i];

		if (mx->host[0] == '\0')
			continue;
		for (j = 0; j < job->nhosts; j++)
			if (strcmp(job->hosts[j].name, mx->host) == 0)
				break;
		if (j < job->nhosts) {
			/* The same host twice: its best preference counts. */
			if (mx->pref < job->hosts[j].pref)
				job->hosts[j].pref = mx->pref;
			continue;
		}
		dns_job_add_host(job, mx->host, mx->pref,
		    (unsigned)cfg->smtp_port);
	}
	qsort(job->hosts, job->nhosts, sizeof(*job->hosts), dns_mx_cmp);
	while (job->nhosts > DNS_MAX_MX)
		free(job->hosts[--job->nhosts].name);
	for (i = 0; i < job->nhosts; i++)
		dns_job_query_host(job, i);
}

static void
dns_job_addr_answer(struct dns_job *job, size_t hi, int fam, int status,
    const struct dns_parse_answer *ans)
{
	struct dns_jhost *h = &job->hosts[hi];
	int af = fam == DNS_FAM_A ? AF_INET : AF_INET6;
	size_t i;

	if (ans != NULL && ans->has_soa && ans->negative_ttl < h->neg_ttl)
		h->neg_ttl = ans->negative_ttl;
	if (status == ARES_SUCCESS && ans->naddrs == 0)
		status = ARES_ENODATA;
	switch (status) {
	case ARES_SUCCESS:
		break;
	case ARES_ENOTFOUND:
		h->status[fam] = MR_EDNS_NOADDR;
		h->why[fam] = "does not exist (NXDOMAIN)";
		return;
	case ARES_ENODATA:
		h->status[fam] = MR_EDNS_NOADDR;
		h->why[fam] = "has no A or AAAA record";
		return;
	default:
		h->status[fam] = MR_EDNS_TEMP;
		h->why[fam] = dns_failure(status);
		return;
	}
	h->status[fam] = 0;
	h->addrs[fam] = xcalloc(ans->naddrs < DNS_MAX_ADDRS ? ans->naddrs :
	    DNS_MAX_ADDRS, sizeof(struct dns_addr));
	for (i = 0; i < ans->naddrs && h->naddrs[fam] < DNS_MAX_ADDRS; i++) {
		const struct dns_parse_addr *pa = &ans->addrs[i];
		struct dns_addr *a = &h->addrs[fam][h->naddrs[fam]];

		if (pa->family != af)
			continue;
		if (af == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

			sin->sin_family = AF_INET;
			sin->sin_port = htons((uint16_t)h->port);
			memcpy(&sin->sin_addr, pa->addr, 4);
			a->len = sizeof(*sin);
		} else {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;

			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons((uint16_t)h->port);
			memcpy(&s6->sin6_addr, pa->addr, 16);
			a->len = sizeof(*s6);
		}
		if (pa->ttl < h->ttl)
			h->ttl = pa->ttl;
		h->naddrs[fam]++;
	}
	if (ans->cname_ttl < h->ttl)
		h->ttl = ans->cname_ttl;
}

/* dns_clamp_ms - a record TTL (seconds) as a cache lifetime. */
static uint64_t
dns_clamp_ms(const struct mr_config *cfg, uint32_t ttl)
{
	uint64_t ms = ttl == UINT32_MAX ? (uint64_t)cfg->dns_max_ttl :
	    (uint64_t)ttl * 1000;

	if (ms < (uint64_t)cfg->dns_min_ttl)
		ms = (uint64_t)cfg->dns_min_ttl;
	if (ms > (uint64_t)cfg->dns_max_ttl)
		ms = (uint64_t)cfg->dns_max_ttl;
	return ms;
}

/* dns_negative_ms - RFC 2308 TTL (UINT32_MAX: no SOA) within negative_ttl. */
static uint64_t
dns_negative_ms(const struct mr_config *cfg, uint32_t soa_ttl)
{
	uint64_t ms = (uint64_t)cfg->dns_negative_ttl;

	if (soa_ttl != UINT32_MAX && (uint64_t)soa_ttl * 1000 < ms)
		ms = (uint64_t)soa_ttl * 1000;
	return ms;
}

/* dns_host_why - why host h has no address, for a reason text. */
static const char *
dns_host_why(const struct dns_jhost *h)
{
	if (h->status[DNS_FAM_A] == MR_EDNS_TEMP)
		return h->why[DNS_FAM_A];
	if (h->status[DNS_FAM_AAAA] == MR_EDNS_TEMP)
		return h->why[DNS_FAM_AAAA];
	return h->why[DNS_FAM_A] != NULL ? h->why[DNS_FAM_A] :
	    "has no address";
}

/* dns_job_finish - the last query has answered: build, cache, hand out. */
static void
dns_job_finish(struct dns_job *job)
{
	struct dns *d = job->d;
	const struct mr_config *cfg = d->cfg;
	struct mr_buf b = MR_BUF_INIT;
	struct dns_result *res;
	const struct dns_result *own;
	struct dns_link *l;
	uint32_t ttl = job->ttl, neg = job->neg_ttl, mxneg = job->neg_ttl;
	size_t i, usable = 0;
	bool temp = false;
	int f;

	res = dns_result_new(job->status, job->reason);
	job->reason = NULL;
	res->routed = job->route != NULL;
	res->implicit_mx = job->implicit;
	res->nhosts = job->nhosts;
	res->hosts = job->nhosts ? xcalloc(job->nhosts, sizeof(*res->hosts))
	    : NULL;
	for (i = 0; i < job->nhosts; i++) {
		struct dns_jhost *h = &job->hosts[i];
		struct dns_host *rh = &res->hosts[i];

		rh->name = h->name;
		h->name = NULL;
		rh->pref = h->pref;
		rh->port = h->port;
		rh->naddrs = h->naddrs[DNS_FAM_A] + h->naddrs[DNS_FAM_AAAA];
		if (rh->naddrs > 0) {
			rh->addrs = xcalloc(rh->naddrs, sizeof(*rh->addrs));
			if (h->naddrs[DNS_FAM_A] > 0)
				memcpy(rh->addrs, h->addrs[DNS_FAM_A],
				    h->naddrs[DNS_FAM_A] *
				    sizeof(*rh->addrs));
			if (h->naddrs[DNS_FAM_AAAA] > 0)
				memcpy(rh->addrs + h->naddrs[DNS_FAM_A],
				    h->addrs[DNS_FAM_AAAA],
				    h->naddrs[DNS_FAM_AAAA] *
				    sizeof(*rh->addrs));
		}
		for (f = 0; f < DNS_NFAM; f++)
			if (h->status[f] == MR_EDNS_TEMP)
				temp = true;
		if (rh->naddrs > 0) {
			rh->status = 0;
			usable++;
			if (h->ttl < ttl)
				ttl = h->ttl;
		} else {
			rh->status = h->status[DNS_FAM_A] == MR_EDNS_TEMP ||
			    h->status[DNS_FAM_AAAA] == MR_EDNS_TEMP ?
			    MR_EDNS_TEMP : MR_EDNS_NOADDR;
		}
		if (h->neg_ttl < neg)
			neg = h->neg_ttl;
	}

	if (res->status == MR_EDNS_NXDOMAIN) {
		res->ttl_ms = dns_negative_ms(cfg, neg);
	} else if (res->status == MR_EDNS_NULLMX) {
		res->ttl_ms = dns_clamp_ms(cfg, ttl);
	} else if (res->status != 0) {
		res->ttl_ms = DNS_TEMP_TTL_MS;
	} else if (usable > 0) {
		if (job->route != NULL) {
			mr_buf_printf(&b, "static route %s=%s:%u",
			    job->route->pattern, job->route->host,
			    job->route->port);
		} else if (job->implicit) {
			mr_buf_printf(&b, "MX lookup for %s: no MX record, "
			    "mail goes to the domain's own address (implicit "
			    "MX, RFC 5321 5.1)", job->domain);
			/* Ask for MX records again once the NODATA expires. */
			mxneg = (uint32_t)(dns_negative_ms(cfg, mxneg) / 1000);
			if (mxneg < ttl)
				ttl = mxneg;
		} else {
			mr_buf_printf(&b, "MX lookup for %s: %zu of %zu MX "
			    "hosts have an address", job->domain, usable,
			    job->nhosts);
		}
		res->reason = b.data;
		res->ttl_ms = dns_clamp_ms(cfg, ttl);
		if (temp && res->ttl_ms > DNS_TEMP_TTL_MS)
			res->ttl_ms = DNS_TEMP_TTL_MS;
	} else if (job->implicit && !temp) {
		res->status = MR_EDNS_NOADDR;
		mr_buf_printf(&b, "MX lookup for %s: no MX record and no "
		    "address record (no mail server)", job->domain);
		res->reason = b.data;
		res->ttl_ms = dns_negative_ms(cfg, neg);
	} else {
		/* Nobody to deliver to, maybe for a moment: try again. */
		res->status = MR_EDNS_TEMP;
		if (job->route != NULL)
			mr_buf_printf(&b, "static route %s=%s:%u: %s %s",
			    job->route->pattern, job->route->host,
			    job->route->port, job->route->host,
			    dns_host_why(&job->hosts[0]));
		else if (job->implicit)
			mr_buf_printf(&b, "MX lookup for %s: no MX record, and "
			    "the address lookup failed: %s", job->domain,
			    dns_host_why(&job->hosts[0]));
		else {
			mr_buf_printf(&b, "MX lookup for %s: no MX host has "
			    "an address:", job->domain);
			for (i = 0; i < job->nhosts; i++)
				mr_buf_printf(&b, "%s %s %s", i ? "," : "",
				    res->hosts[i].name,
				    dns_host_why(&job->hosts[i]));
		}
		res->reason = b.data;
		res->ttl_ms = DNS_TEMP_TTL_MS;
	}
	if (res->status == MR_EDNS_TEMP &&
	    res->ttl_ms > (uint64_t)cfg->dns_negative_ttl)
		res->ttl_ms = (uint64_t)cfg->dns_negative_ttl;
	res->expires_ms = mr_clock_ms() + res->ttl_ms;
	mr_log_debug("dns", "domain=%s status=%s hosts=%zu usable=%zu "
	    "ttl_ms=%" PRIu64 " reason=%s", job->domain,
	    dns_status_name(res->status), res->nhosts,
	    usable, res->ttl_ms, mr_q(res->reason, (size_t)-1));

	dns_cache_put(d, job->domain, res);
	while ((l = job->waiters.next) != &job->waiters) {
		struct dns_req *req = DNS_CONTAINER(l, struct dns_req, wait);

		dns_result_ref(res);
		dns_req_ready(d, req, res);
	}
	own = res;
	dns_result_unref(&own);
	(void)dns_map_del(&d->jobs, job->domain);
	dns_job_free(job);
}

/* dns_job_free - waiters must already be gone (ready or freed). */
static void
dns_job_free(struct dns_job *job)
{
	size_t i;
	int f;

	while (!dns_link_empty(&job->waiters))
		dns_link_del(job->waiters.next);
	for (i = 0; i < job->nhosts; i++) {
		free(job->hosts[i].name);
		for (f = 0; f < DNS_NFAM; f++)
			free(job->hosts[i].addrs[f]);
	}
	free(job->hosts);
	free(job->reason);
	free(job->domain);
	free(job);
}
