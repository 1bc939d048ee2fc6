/*
 * agg.c - the aggregating POP3 proxy (see agg.h for the state machine).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/mr_hmap.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "net/cidr.h"
#include "net/conn.h"
#include "net/http.h"
#include "net/listen.h"
#include "pop3/pop3_cmd.h"
#include "pop3/pop3c.h"
#include "pop3/pop3s.h"
#include "pop3agg/agg.h"
#include "registry/registry.h"

#define AGG_MOD			"pop3-agg"
#define AGG_MAX_MESSAGES	100000	/* per backend account */
#define AGG_UIDL_MAX		70	/* RFC 1939 7 */
#define AGG_MAX_SERVICES	8
/* The leg of the notice message (A5): no backend. */
#define AGG_NOTICE		UINT32_MAX
/* Failed logins per client address: a lossy table of this many slots,
 * forgotten after AGG_FAIL_WINDOW_MS without a failure. */
#define AGG_FAIL_SLOTS		4096
#define AGG_FAIL_WINDOW_MS	(15 * 60 * 1000)
#define AGG_FAIL_DELAY_MAX_MS	15000

enum sess_state {
	S_AUTH,		/* USER, PASS, APOP, AUTH, CAPA, STLS, QUIT */
	S_SASL,		/* AUTH PLAIN: the client's response is due */
	S_LOGIN,	/* the registry is checking */
	S_DELAY,	/* a failed login's -ERR is held back */
	S_FANOUT,	/* logging in to the backends */
	S_TRANS,	/* the consolidated mailbox */
	S_RETR,		/* a body is being streamed */
	S_UPDATE,	/* deletions and QUIT at the backends */
	S_CLOSING,	/* the last reply is being written */
};

enum leg_state {
	L_RESOLVE,	/* looking the host up */
	L_SETUP,	/* connect, CAPA, USER, PASS, UIDL, LIST */
	L_READY,	/* listed; idle */
	L_BUSY,		/* a RETR or TOP is streaming */
	L_UPDATE,	/* DELEs and QUIT sent */
	L_DONE,		/* QUIT answered */
	L_FAILED,
};

/* What a backend reply answers (the pop3c tag). */
enum leg_cmd { T_CAPA = 1, T_USER, T_PASS, T_UIDL, T_LIST, T_RETR, T_DELE,
	T_QUIT };
#define TAG(t)		((void *)(uintptr_t)(t))
#define UNTAG(p)	((enum leg_cmd)(uintptr_t)(p))

struct bmsg {			/* a backend's message, by its number */
	uint32_t	 size;
	bool		 listed;
	char		*uidl;
};

struct asess;

struct leg {
	struct asess			*s;
	struct reg_account		 acct;	/* secret wiped once sent */
	struct pop3c			*c;
	struct evdns_getaddrinfo_request *dns;
	enum leg_state			 st;
	bool				 pipelining;
	bool				 uidl_ok;
	bool				 retr_ok;	/* the RETR's status */
	bool				 reached;	/* logged in and listed */
	char				 why[160];
	struct bmsg			*msgs;		/* [n - 1] */
	uint32_t			 nmsgs;
	uint32_t			 listed;
	uint32_t			 deletions;	/* DELE sent at QUIT */
	uint32_t			 dele_next;	/* next mark to queue */
	bool				 quit_queued;
	uint32_t			 dele_ok;
	uint32_t			 deleted;	/* confirmed by QUIT */
};

struct amsg {			/* the consolidated listing */
	uint32_t	leg;
	uint32_t	num;		/* the backend's number */
	uint32_t	size;
	bool		deleted;
};

struct agg;

struct asess {
	struct agg		*a;
	struct pop3s		*ps;		/* the client */
	struct net_conn		*c;		/* its connection */
	struct asess		*prev, *next;
	enum sess_state		 st;
	bool			 busy;
	bool			 logged_in;
	bool			 quit;
	bool			 retr_started;
	bool			 have_user;
	struct reg_ticket	*ticket;
	struct event		*timer;		/* delay, fan-out deadline */
	char			 stamp[192];	/* APOP timestamp */
	char			 user[POP3_NAME_MAX + 1];
	struct leg		*legs;
	size_t			 nlegs;
	size_t			 pending;	/* legs not settled */
	struct amsg		*msgs;
	uint32_t		 nmsgs;
	uint32_t		 retr_msg;	/* index into msgs */
	unsigned		 auth_failures;
	uint64_t		 started;	/* mr_clock_ms */
	int64_t			 started_wall;
	uint64_t		 retrieved, retrieved_bytes;
	struct mr_buf		 notice;	/* the notice message, or empty */
	char			 notice_uidl[48];
};

struct failslot {
	unsigned char	ip[16];
	uint32_t	failures;
	uint64_t	last_ms;
};

struct agg {
	struct event_base		*base;
	const struct mr_config		*cfg;
	struct registry			*reg;
	struct evdns_base		*dns;
	struct net_listener		*lis, *lis_tls;
	SSL_CTX				*srv_ctx;	/* STLS, POP3S */
	SSL_CTX				*cli_ctx;	/* backends with TLS */
	struct evhttp			*http;		/* /metrics, loopback */
	char				 http_addr[80];
	struct asess			*sessions;
	struct agg_service		 svc[AGG_MAX_SERVICES];
	size_t				 nsvc;
	uint64_t			 stamps;
	char				 hostname[128];
	struct failslot			*fails;
	struct agg_counters		 n;
};

static void sess_process(struct asess *s);
static void sess_close(struct asess *s);
static void sess_fanout_done(struct asess *s);
static void sess_update_done(struct asess *s);
static void leg_queue_update(struct leg *l);
static const struct pop3c_cbs leg_cbs;

/* ---------------------------------------------------------------- */
/* Replies                                                           */
/* ---------------------------------------------------------------- */

static void
sess_reply(struct asess *s, const char *text)
{
	net_conn_sendf(s->c, "%s\r\n", text);
}

static void
sess_capa(struct asess *s)
{
	net_conn_sendf(s->c, "+OK Capability list follows\r\n"
	    "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
	    "%s%sIMPLEMENTATION mailroom\r\n.\r\n",
	    s->st == S_AUTH ? "USER\r\nSASL PLAIN\r\n" : "",
	    s->st == S_AUTH && s->a->srv_ctx != NULL &&
	    !net_conn_is_tls(s->c) ? "STLS\r\n" : "");
}

/* ---------------------------------------------------------------- */
/* Failed logins per client address                                  */
/* ---------------------------------------------------------------- */

static void
agg_client_ip(const struct sockaddr *sa, unsigned char ip[16])
{
	memset(ip, 0, 16);
	if (sa->sa_family == AF_INET)
		memcpy(ip, &((const struct sockaddr_in *)(const void *)sa)->
		    sin_addr, 4);
	else if (sa->sa_family == AF_INET6)
		memcpy(ip, &((const struct sockaddr_in6 *)(const void *)sa)->
		    sin6_addr, 16);
}

static struct failslot *
agg_fail_slot(struct agg *a, const struct sockaddr *sa, bool make)
{
	unsigned char ip[16];
	struct failslot *f;
	uint64_t now = mr_clock_ms();

	agg_client_ip(sa, ip);
	f = &a->fails[mr_hash(ip, sizeof(ip)) % AGG_FAIL_SLOTS];
	if (memcmp(f->ip, ip, 16) != 0 || now - f->last_ms >
	    AGG_FAIL_WINDOW_MS) {
		if (!make)
			return NULL;
		memcpy(f->ip, ip, 16);
		f->failures = 0;
	}
	return f;
}

/* agg_fail_delay - how long the -ERR to a failed login from this client
 * address waits: the base delay, doubled with each recent failure. */
static uint64_t
agg_fail_delay(struct agg *a, const struct sockaddr *sa)
{
	struct failslot *f = agg_fail_slot(a, sa, true);
	uint64_t d = (uint64_t)a->cfg->pop3_proxy_auth_delay;
	uint32_t i;

	f->failures++;
	f->last_ms = mr_clock_ms();
	for (i = 1; i < f->failures && d < AGG_FAIL_DELAY_MAX_MS; i++)
		d *= 2;
	return d < AGG_FAIL_DELAY_MAX_MS ? d : AGG_FAIL_DELAY_MAX_MS;
}

/* ---------------------------------------------------------------- */
/* The end of a session                                              */
/* ---------------------------------------------------------------- */

static void
leg_release(struct leg *l)
{
	uint32_t i;

	if (l->dns != NULL) {
		evdns_getaddrinfo_cancel(l->dns);
		l->dns = NULL;
	}
	pop3c_free(&l->c);
	for (i = 0; i < l->nmsgs; i++)
		free(l->msgs[i].uidl);
	free(l->msgs);
	l->msgs = NULL;
	l->nmsgs = 0;
	reg_account_release(&l->acct);
}

/* sess_record - the accounting record to every service. */
static void
sess_record(struct asess *s)
{
	struct agg *a = s->a;
	struct agg_backend_result *b = NULL;
	struct agg_record r;
	size_t i;

	memset(&r, 0, sizeof(r));
	r.user = s->have_user || s->logged_in ? s->user : "";
	r.client = net_conn_peer(s->c);
	r.logged_in = s->logged_in;
	r.quit = s->quit;
	if (s->nlegs > 0)
		b = xcalloc(s->nlegs, sizeof(*b));
	for (i = 0; i < s->nlegs; i++) {
		struct leg *l = &s->legs[i];

		b[i].account = l->acct.id;
		b[i].host = l->acct.host ? l->acct.host : "";
		b[i].port = l->acct.port;
		b[i].reached = l->reached;
		b[i].why = l->why[0] ? l->why : NULL;
		b[i].messages = l->listed;
		b[i].deletions = l->deletions;
		b[i].deleted = l->deleted;
		r.deletions += l->deletions;
		r.deleted += l->deleted;
	}
	r.backends = b;
	r.nbackends = s->nlegs;
	r.messages = s->nmsgs;
	r.retrieved = s->retrieved;
	r.retrieved_bytes = s->retrieved_bytes;
	r.started = s->started_wall;
	r.duration_ms = mr_clock_ms() - s->started;
	for (i = 0; i < a->nsvc; i++)
		if (a->svc[i].session_end != NULL)
			a->svc[i].session_end(a->svc[i].arg, &r);
	free(b);
}

static void
sess_free(struct asess *s)
{
	struct agg *a = s->a;
	size_t i;

	if (s->ticket != NULL)
		registry_login_cancel(s->ticket);
	if (s->have_user || s->logged_in || s->auth_failures > 0)
		sess_record(s);
	for (i = 0; i < s->nlegs; i++)
		leg_release(&s->legs[i]);
	free(s->legs);
	free(s->msgs);
	mr_buf_release(&s->notice);
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->prev)
		s->prev->next = s->next;
	else
		a->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	pop3s_free(&s->ps);
	a->n.sessions_active--;
	free(s);
}

/* sess_close - let the last reply go, then free. */
static void
sess_close(struct asess *s)
{
	if (s->st == S_CLOSING)
		return;
	s->st = S_CLOSING;
	s->busy = true;
	pop3s_close(s->ps);
}

/* ---------------------------------------------------------------- */
/* Backend accounts (legs)                                           */
/* ---------------------------------------------------------------- */

/* leg_fail - this account is out of the session, with a reason. */
static void leg_fail(struct leg *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
leg_fail(struct leg *l, const char *fmt, ...)
{
	struct asess *s = l->s;
	enum leg_state was = l->st;
	va_list ap;

	if (l->why[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(l->why, sizeof(l->why), fmt, ap);
		va_end(ap);
	}
	l->st = L_FAILED;
	pop3c_free(&l->c);
	mr_log_info(AGG_MOD, "event=backend-failed user=%s account=%lld "
	    "host=%s why=%s", mr_q(s->user, (size_t)-1),
	    (long long)l->acct.id, mr_q(l->acct.host, (size_t)-1),
	    mr_q(l->why, (size_t)-1));
	if (was == L_RESOLVE || was == L_SETUP) {
		s->a->n.backends_failed++;
		if (s->st == S_FANOUT && --s->pending == 0)
			sess_fanout_done(s);
		return;
	}
	if (was == L_UPDATE) {
		l->deleted = 0;
		if (s->st == S_UPDATE && --s->pending == 0)
			sess_update_done(s);
		return;
	}
	if (was == L_BUSY && s->st == S_RETR) {
		if (s->retr_started) {
			/* Part of the body went out: the client cannot be
			 * told in band.  Ending the connection without QUIT
			 * loses nothing (no deletion happens). */
			sess_close(s);
			return;
		}
		s->st = S_TRANS;
		s->busy = false;
		sess_reply(s, "-ERR [SYS/TEMP] lost the connection to the "
		    "server of that message");
		sess_process(s);
	}
}

static void
leg_ready_cb(struct pop3c *c, void *arg, const char *greeting, size_t len)
{
	struct leg *l = arg;

	(void)greeting;
	(void)len;
	/* CAPA first: with PIPELINING the rest goes in one round trip. */
	if (pop3c_send(c, POP3C_LINES, NULL, TAG(T_CAPA), "CAPA") != 0)
		leg_fail(l, "%s", "cannot queue a command");
}

/* leg_login - USER, PASS, UIDL, LIST (pipelined when allowed); the
 * secret is wiped from the account once it is queued. */
static void
leg_login(struct leg *l)
{
	struct pop3c *c = l->c;
	int rc;

	pop3c_pipelining(c, l->pipelining);
	rc = pop3c_send(c, POP3C_NONE, NULL, TAG(T_USER), "USER %s",
	    l->acct.login);
	if (rc == 0)
		rc = pop3c_send(c, POP3C_NONE, NULL, TAG(T_PASS), "PASS %s",
		    l->acct.secret ? l->acct.secret : "");
	if (l->acct.secret != NULL) {
		OPENSSL_cleanse(l->acct.secret, strlen(l->acct.secret));
		free(l->acct.secret);
		l->acct.secret = NULL;
	}
	if (rc == 0)
		rc = pop3c_send(c, POP3C_LINES, NULL, TAG(T_UIDL), "UIDL");
	if (rc == 0)
		rc = pop3c_send(c, POP3C_LINES, NULL, TAG(T_LIST), "LIST");
	if (rc != 0)
		leg_fail(l, "%s", "the login is too long to send");
}

/* leg_number - "n rest": n (1..AGG_MAX_MESSAGES) and rest, or 0. */
static uint32_t
leg_number(const char *p, size_t n, const char **rest, size_t *restl)
{
	uint32_t v = 0;
	size_t i = 0;

	while (i < n && p[i] >= '0' && p[i] <= '9' && v <= AGG_MAX_MESSAGES)
		v = v * 10 + (uint32_t)(p[i++] - '0');
	if (i == 0 || i >= n || p[i] != ' ' || v == 0 ||
	    v > AGG_MAX_MESSAGES)
		return 0;
	while (i < n && p[i] == ' ')
		i++;
	*rest = p + i;
	*restl = n - i;
	return v;
}

static struct bmsg *
leg_msg(struct leg *l, uint32_t num)
{
	if (num > l->nmsgs) {
		uint32_t want = l->nmsgs ? l->nmsgs : 64;

		while (want < num)
			want *= 2;
		l->msgs = xreallocarray(l->msgs, want, sizeof(*l->msgs));
		memset(l->msgs + l->nmsgs, 0, (want - l->nmsgs) *
		    sizeof(*l->msgs));
		l->nmsgs = want;
	}
	return &l->msgs[num - 1];
}

static void
leg_line_cb(struct pop3c *c, void *arg, void *tag, const char *p, size_t n)
{
	struct leg *l = arg;
	const char *rest;
	size_t restl, i;
	uint32_t num;
	struct bmsg *m;

	(void)c;
	switch (UNTAG(tag)) {
	case T_CAPA:
		if (n == 10 && strncasecmp(p, "PIPELINING", 10) == 0)
			l->pipelining = true;
		return;
	case T_UIDL:
		if ((num = leg_number(p, n, &rest, &restl)) == 0 ||
		    restl == 0 || restl > AGG_UIDL_MAX)
			break;
		for (i = 0; i < restl; i++)
			if (rest[i] < 0x21 || rest[i] > 0x7e)
				break;
		if (i < restl)
			break;
		m = leg_msg(l, num);
		free(m->uidl);
		m->uidl = xstrndup(rest, restl);
		return;
	case T_LIST:
		if ((num = leg_number(p, n, &rest, &restl)) == 0)
			break;
		m = leg_msg(l, num);
		m->size = (uint32_t)strtoul(rest, NULL, 10);
		if (!m->listed)
			l->listed++;
		m->listed = true;
		return;
	default:
		return;
	}
	leg_fail(l, "a malformed listing line: %s", mr_q(p, n));
}

static void
leg_status_cb(struct pop3c *c, void *arg, void *tag, bool ok,
    const char *p, size_t n)
{
	struct leg *l = arg;
	struct asess *s = l->s;

	(void)c;
	switch (UNTAG(tag)) {
	case T_CAPA:
		return;		/* -ERR: no capabilities, no pipelining */
	case T_USER:
	case T_PASS:
		if (!ok)
			leg_fail(l, "the server refused the login: %s",
			    mr_q(p, n));
		return;
	case T_UIDL:
		l->uidl_ok = ok;
		return;
	case T_LIST:
		if (!ok)
			leg_fail(l, "the server refused LIST: %s", mr_q(p, n));
		return;
	case T_RETR:
		l->retr_ok = ok;
		if (!ok) {
			/* Deleted by someone else meanwhile, say. */
			net_conn_sendf(s->c, "-ERR %s\r\n", n > 5 &&
			    p[0] == '-' ? mr_q(p + 5, n - 5) : "no such "
			    "message on its server");
			return;
		}
		s->retr_started = true;
		net_conn_sendf(s->c, "+OK %u octets\r\n",
		    s->msgs[s->retr_msg].size);
		return;
	case T_DELE:
		if (ok)
			l->dele_ok++;
		else
			mr_log_info(AGG_MOD, "event=dele-refused user=%s "
			    "account=%lld reply=%s", mr_q(s->user, (size_t)-1),
			    (long long)l->acct.id, mr_q(p, n));
		return;
	case T_QUIT:
		/* Only the QUIT's +OK makes the deletions happen. */
		l->deleted = ok ? l->dele_ok : 0;
		if (!ok && l->deletions > 0)
			snprintf(l->why, sizeof(l->why), "the server refused "
			    "QUIT: %s", mr_q(p, n));
		return;
	}
}

static void
leg_moved_cb(struct pop3c *c, void *arg, void *tag)
{
	struct leg *l = arg;
	struct asess *s = l->s;

	(void)tag;
	if (net_conn_output_len(s->c) > POP3S_OUT_HIGH) {
		pop3c_reading(c, false);
		net_conn_watch_drain(s->c, POP3S_OUT_LOW);
	}
}

static void
leg_done_cb(struct pop3c *c, void *arg, void *tag)
{
	struct leg *l = arg;
	struct asess *s = l->s;

	(void)c;
	switch (UNTAG(tag)) {
	case T_CAPA:
		leg_login(l);
		return;
	case T_LIST:
		if (l->st != L_SETUP)
			return;
		l->st = L_READY;
		l->reached = true;
		s->a->n.backends_reached++;
		if (s->st == S_FANOUT && --s->pending == 0)
			sess_fanout_done(s);
		return;
	case T_RETR: {
		struct amsg *m = &s->msgs[s->retr_msg];
		size_t i;

		l->st = L_READY;
		s->st = S_TRANS;
		s->busy = false;
		if (l->retr_ok) {
			s->retrieved++;
			s->retrieved_bytes += m->size;
			s->a->n.messages_retrieved++;
			s->a->n.bytes_retrieved += m->size;
			for (i = 0; i < s->a->nsvc; i++)
				if (s->a->svc[i].retrieved != NULL)
					s->a->svc[i].retrieved(
					    s->a->svc[i].arg, s->user,
					    l->acct.id, m->size);
		}
		sess_process(s);
		return;
	}
	case T_DELE:
		leg_queue_update(l);
		return;
	case T_QUIT:
		l->st = L_DONE;
		pop3c_free(&l->c);
		if (s->st == S_UPDATE && --s->pending == 0)
			sess_update_done(s);
		return;
	default:
		return;
	}
}

static void
leg_failed_cb(struct pop3c *c, void *arg, const char *why)
{
	struct leg *l = arg;

	(void)c;
	if (l->st == L_DONE || l->st == L_FAILED)
		return;
	if (l->st == L_READY) {
		/* Idle and gone (the server's own idle timer, say): its
		 * messages stay listed; fetching them says why. */
		snprintf(l->why, sizeof(l->why), "%s", why);
		l->st = L_FAILED;
		pop3c_free(&l->c);
		return;
	}
	leg_fail(l, "%s", why);
}

static const struct pop3c_cbs leg_cbs = {
	.ready = leg_ready_cb,
	.status = leg_status_cb,
	.line = leg_line_cb,
	.moved = leg_moved_cb,
	.done = leg_done_cb,
	.failed = leg_failed_cb,
};

/* leg_connect - the host's address is known: connect. */
static void
leg_connect(struct leg *l, const struct sockaddr *sa, socklen_t salen)
{
	struct asess *s = l->s;
	struct agg *a = s->a;
	struct pop3c_params p;
	const char *why = NULL;

	memset(&p, 0, sizeof(p));
	p.addr = sa;
	p.addrlen = salen;
	p.tls = l->acct.tls == REG_TLS_POP3S ? POP3C_TLS_IMPLICIT :
	    l->acct.tls == REG_TLS_STLS ? POP3C_TLS_STLS : POP3C_TLS_NONE;
	p.ctx = a->cli_ctx;
	p.servername = l->acct.host;
	p.verify = a->cfg->pop3_proxy_backend_tls_verify;
	p.timeout_ms = (unsigned)a->cfg->pop3_proxy_backend_timeout;
	p.client = a->cfg->pop3_proxy_xclient ? net_conn_peer_addr(s->c) :
	    NULL;
	l->st = L_SETUP;
	l->c = pop3c_open(a->base, &p, &leg_cbs, l, &why);
	if (l->c == NULL)
		leg_fail(l, "%s", why);
}

static void
leg_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
	struct leg *l = arg;

	l->dns = NULL;
	if (err == EVUTIL_EAI_CANCEL)
		return;
	if (err != 0 || res == NULL) {
		leg_fail(l, "cannot resolve the host: %s",
		    evutil_gai_strerror(err));
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	leg_connect(l, res->ai_addr, (socklen_t)res->ai_addrlen);
	evutil_freeaddrinfo(res);
}

/* leg_start - address literals at once, names through evdns. */
static void
leg_start(struct leg *l)
{
	struct agg *a = l->s->a;
	struct evutil_addrinfo hints, *res = NULL;
	char port[8];

	snprintf(port, sizeof(port), "%u", l->acct.port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
	l->st = L_RESOLVE;
	if (evutil_getaddrinfo(l->acct.host, port, &hints, &res) == 0) {
		leg_connect(l, res->ai_addr, (socklen_t)res->ai_addrlen);
		evutil_freeaddrinfo(res);
		return;
	}
	if (a->dns == NULL)
		a->dns = evdns_base_new(a->base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (a->dns == NULL) {
		leg_fail(l, "%s", "no resolver (/etc/resolv.conf)");
		return;
	}
	hints.ai_flags = EVUTIL_AI_NUMERICSERV | EVUTIL_AI_ADDRCONFIG;
	l->dns = evdns_getaddrinfo(a->dns, l->acct.host, port, &hints,
	    leg_resolved, l);
}

/* ---------------------------------------------------------------- */
/* Fan-out and the consolidated listing                              */
/* ---------------------------------------------------------------- */

static void
sess_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct asess *s = arg;
	size_t i;

	(void)fd;
	(void)what;
	if (s->st != S_FANOUT)
		return;
	for (i = 0; i < s->nlegs && s->st == S_FANOUT; i++)
		if (s->legs[i].st == L_RESOLVE || s->legs[i].st == L_SETUP)
			leg_fail(&s->legs[i], "%s", "no listing within "
			    "the backend timeout");
}

/* notice_text - a reason into the notice: printable ASCII only. */
static void
notice_text(struct mr_buf *b, const char *t)
{
	for (; *t != '\0'; t++)
		mr_buf_putc(b, *t >= 0x20 && *t < 0x7f ? *t : '?');
}

/*
 * sess_notice - with pop3_proxy.notice set, a message at the end of the
 * listing telling the user which accounts could not be reached and why
 * (A5).  Its UIDL is the same for the same user, accounts and day, so a
 * client that leaves mail on the server sees it once a day at most.
 */
static void
sess_notice(struct asess *s)
{
	struct mr_buf *b = &s->notice;
	unsigned char md[32];
	unsigned mdlen = 0, k;
	char date[40], day[16];
	time_t now = time(NULL);
	struct tm tm;
	EVP_MD_CTX *ctx;
	size_t i, failed = 0, at;

	for (i = 0; i < s->nlegs; i++)
		if (s->legs[i].st != L_READY)
			failed++;
	if (failed == 0 || !s->a->cfg->pop3_proxy_notice)
		return;
	gmtime_r(&now, &tm);
	strftime(day, sizeof(day), "%Y%m%d", &tm);
	mr_rfc5322_date(now, date, sizeof(date));
	ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, s->user, strlen(s->user) + 1);
	EVP_DigestUpdate(ctx, day, strlen(day));
	for (i = 0; i < s->nlegs; i++)
		if (s->legs[i].st != L_READY)
			EVP_DigestUpdate(ctx, &s->legs[i].acct.id,
			    sizeof(s->legs[i].acct.id));
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	at = (size_t)snprintf(s->notice_uidl, sizeof(s->notice_uidl),
	    "notice.");
	for (k = 0; k < 16; k++)
		at += (size_t)snprintf(s->notice_uidl + at,
		    sizeof(s->notice_uidl) - at, "%02x", md[k]);
	mr_buf_printf(b, "From: Mail collector <postmaster@%s>\r\n"
	    "To: ", s->a->hostname);
	notice_text(b, s->user);
	mr_buf_printf(b, "\r\nSubject: %zu of your %zu mail accounts could "
	    "not be reached\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii"
	    "\r\n\r\nMessages from these accounts are not in this listing; "
	    "they stay on\r\ntheir servers and will be fetched once the "
	    "accounts can be reached.\r\n\r\n", failed, s->nlegs, date,
	    s->notice_uidl, s->a->hostname);
	for (i = 0; i < s->nlegs; i++) {
		const struct leg *l = &s->legs[i];

		if (l->st == L_READY)
			continue;
		mr_buf_puts(b, "  ");
		notice_text(b, l->acct.login ? l->acct.login : "");
		mr_buf_puts(b, " at ");
		notice_text(b, l->acct.host ? l->acct.host : "");
		mr_buf_printf(b, ":%u: ", l->acct.port);
		notice_text(b, l->why[0] ? l->why : "not reached");
		mr_buf_puts(b, "\r\n");
	}
}

/* sess_fanout_done - every account answered or failed: the listing. */
static void
sess_fanout_done(struct asess *s)
{
	uint32_t i, j, n = 0, reached = 0;
	uint64_t octets = 0;

	evtimer_del(s->timer);
	sess_notice(s);
	for (i = 0; i < s->nlegs; i++)
		if (s->legs[i].st == L_READY)
			n += s->legs[i].listed;
	n += s->notice.len > 0;
	s->msgs = n ? xcalloc(n, sizeof(*s->msgs)) : NULL;
	for (i = 0; i < s->nlegs; i++) {
		struct leg *l = &s->legs[i];

		if (l->st != L_READY)
			continue;
		reached++;
		for (j = 0; j < l->nmsgs; j++) {
			if (!l->msgs[j].listed)
				continue;
			s->msgs[s->nmsgs].leg = i;
			s->msgs[s->nmsgs].num = j + 1;
			s->msgs[s->nmsgs].size = l->msgs[j].size;
			octets += l->msgs[j].size;
			s->nmsgs++;
		}
	}
	if (s->notice.len > 0) {
		s->msgs[s->nmsgs].leg = AGG_NOTICE;
		s->msgs[s->nmsgs].size = (uint32_t)s->notice.len;
		octets += s->notice.len;
		s->nmsgs++;
	}
	s->st = S_TRANS;
	s->busy = false;
	mr_log_info(AGG_MOD, "event=login client=%s user=%s accounts=%zu "
	    "reached=%u messages=%u", net_conn_peer(s->c),
	    mr_q(s->user, (size_t)-1), s->nlegs, reached, s->nmsgs);
	net_conn_sendf(s->c, "+OK %u messages (%llu octets) from %u of %zu "
	    "accounts\r\n", s->nmsgs, (unsigned long long)octets, reached,
	    s->nlegs);
	sess_process(s);
}

/* sess_fanout - the registry said yes: log in everywhere at once. */
static void
sess_fanout(struct asess *s, struct reg_user *u)
{
	struct agg *a = s->a;
	struct timeval tv;
	size_t i;

	s->logged_in = true;
	a->n.logins++;
	for (i = 0; i < a->nsvc; i++)
		if (a->svc[i].login != NULL)
			a->svc[i].login(a->svc[i].arg, s->user,
			    net_conn_peer(s->c));
	s->st = S_FANOUT;
	s->nlegs = u->naccounts;
	s->legs = s->nlegs ? xcalloc(s->nlegs, sizeof(*s->legs)) : NULL;
	for (i = 0; i < s->nlegs; i++) {
		s->legs[i].s = s;
		s->legs[i].acct = u->accounts[i];	/* moved */
		memset(&u->accounts[i], 0, sizeof(u->accounts[i]));
	}
	s->pending = s->nlegs;
	if (s->nlegs == 0) {
		sess_fanout_done(s);
		return;
	}
	tv.tv_sec = a->cfg->pop3_proxy_backend_timeout / 1000;
	tv.tv_usec = (a->cfg->pop3_proxy_backend_timeout % 1000) * 1000;
	evtimer_assign(s->timer, a->base, sess_deadline, s);
	evtimer_add(s->timer, &tv);
	for (i = 0; i < s->nlegs && s->st == S_FANOUT; i++)
		leg_start(&s->legs[i]);
}

/* ---------------------------------------------------------------- */
/* Logging in                                                        */
/* ---------------------------------------------------------------- */

static void
sess_delay_done(evutil_socket_t fd, short what, void *arg)
{
	struct asess *s = arg;

	(void)fd;
	(void)what;
	s->st = S_AUTH;
	s->busy = false;
	sess_reply(s, "-ERR [AUTH] invalid user name or password");
	if (s->auth_failures >=
	    (unsigned)s->a->cfg->pop3_proxy_max_auth_failures) {
		sess_reply(s, "-ERR [AUTH] too many failed logins");
		sess_close(s);
		return;
	}
	sess_process(s);
}

/*
 * sess_user_busy - is the user logged in in another session?  A walk
 * over the sessions, once per successful login: cheap beside the
 * verifier the login has just cost.
 */
static bool
sess_user_busy(const struct asess *s)
{
	const struct asess *o;

	for (o = s->a->sessions; o != NULL; o = o->next)
		if (o != s && o->logged_in && o->st != S_CLOSING &&
		    strcmp(o->user, s->user) == 0)
			return true;
	return false;
}

static void
sess_login_cb(void *arg, int status, struct reg_user *u)
{
	struct asess *s = arg;
	struct agg *a = s->a;
	struct timeval tv;
	uint64_t d;

	s->ticket = NULL;
	if (status == 0 && sess_user_busy(s)) {
		/* RFC 1939 8: one session per maildrop; two would each
		 * delete what the other still lists. */
		mr_log_info(AGG_MOD, "event=login-refused client=%s user=%s "
		    "why=in-use", net_conn_peer(s->c), mr_q(s->user,
		    (size_t)-1));
		s->st = S_AUTH;
		s->busy = false;
		s->have_user = false;
		sess_reply(s, "-ERR [IN-USE] this mailbox is open in another "
		    "session");
		sess_process(s);
		return;
	}
	if (status == 0) {
		sess_fanout(s, u);
		return;
	}
	if (status != -EACCES) {
		mr_log_warn(AGG_MOD, "event=registry-error user=%s",
		    mr_q(s->user, (size_t)-1));
		s->st = S_AUTH;
		s->busy = false;
		s->have_user = false;
		sess_reply(s, "-ERR [SYS/TEMP] cannot check logins now, try "
		    "again later");
		sess_process(s);
		return;
	}
	a->n.logins_failed++;
	s->auth_failures++;
	s->have_user = false;
	d = agg_fail_delay(a, net_conn_peer_addr(s->c));
	mr_log_info(AGG_MOD, "event=login-failed client=%s user=%s "
	    "delay_ms=%llu", net_conn_peer(s->c), mr_q(s->user, (size_t)-1),
	    (unsigned long long)d);
	s->st = S_DELAY;
	tv.tv_sec = (time_t)(d / 1000);
	tv.tv_usec = (suseconds_t)(d % 1000) * 1000;
	evtimer_assign(s->timer, a->base, sess_delay_done, s);
	evtimer_add(s->timer, &tv);
}

/* sess_login - hand the credential to the registry's worker. */
static void
sess_login(struct asess *s, const struct reg_login *in)
{
	struct mr_buf err = MR_BUF_INIT;

	s->st = S_LOGIN;
	s->busy = true;
	s->ticket = registry_login_async(s->a->reg, s->a->base, in,
	    sess_login_cb, s, &err);
	if (s->ticket == NULL) {
		mr_log_warn(AGG_MOD, "event=registry-error error=%s",
		    mr_q(mr_buf_cstr(&err), (size_t)-1));
		s->st = S_AUTH;
		s->busy = false;
		sess_reply(s, "-ERR [SYS/TEMP] cannot check logins now, try "
		    "again later");
	}
	mr_buf_release(&err);
}

static bool
sess_set_user(struct asess *s, const char *name, size_t len)
{
	if (len == 0 || len > POP3_NAME_MAX)
		return false;
	memcpy(s->user, name, len);
	s->user[len] = '\0';
	s->have_user = registry_valid_name(s->user);
	return s->have_user;
}

static void
sess_pass(struct asess *s, const char *pw, size_t len)
{
	struct reg_login in;

	memset(&in, 0, sizeof(in));
	in.kind = REG_LOGIN_PASS;
	in.name = s->user;
	in.password = pw;
	in.password_len = len;
	sess_login(s, &in);
}

static void
sess_apop(struct asess *s, const struct pop3_cmd *cmd)
{
	struct reg_login in;
	char digest[33];

	/* A malformed APOP names nobody: a PASS after it needs a USER. */
	if (cmd->argc != 2 || cmd->argl[1] != 32 ||
	    !sess_set_user(s, cmd->argv[0], cmd->argl[0])) {
		s->have_user = false;
		sess_reply(s, "-ERR [AUTH] APOP name digest");
		return;
	}
	memcpy(digest, cmd->argv[1], 32);
	digest[32] = '\0';
	memset(&in, 0, sizeof(in));
	in.kind = REG_LOGIN_APOP;
	in.name = s->user;
	in.timestamp = s->stamp;
	in.digest = digest;
	sess_login(s, &in);
}

static void
sess_auth_plain(struct asess *s, const char *b64, size_t len)
{
	unsigned char buf[POP3_LINE_MAX];
	const char *user, *pw;
	size_t userl, pwl;

	switch (pop3_sasl_plain(b64, len, buf, sizeof(buf), &user, &userl,
	    &pw, &pwl)) {
	case POP3_PLAIN_CANCEL:
		sess_reply(s, "-ERR authentication cancelled");
		return;
	case POP3_PLAIN_MALFORMED:
		sess_reply(s, "-ERR [AUTH] malformed PLAIN response");
		break;
	case POP3_PLAIN_IDENTITY:
		sess_reply(s, "-ERR [AUTH] unsupported or empty identity");
		break;
	case POP3_PLAIN_OK:
		if (!sess_set_user(s, user, userl)) {
			sess_reply(s, "-ERR [AUTH] unsupported identity");
			break;
		}
		sess_pass(s, pw, pwl);
		break;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
}

static void
sess_stls(struct asess *s)
{
	if (s->a->srv_ctx == NULL) {
		sess_reply(s, "-ERR STLS is not available");
		return;
	}
	if (net_conn_is_tls(s->c) || s->have_user) {
		sess_reply(s, "-ERR STLS only once, before USER");
		return;
	}
	pop3s_stls(s->ps, s->a->srv_ctx);
}

static void
sess_auth_cmd(struct asess *s, const struct pop3_cmd *cmd)
{
	switch (cmd->verb) {
	case POP3_CAPA:
		sess_capa(s);
		return;
	case POP3_STLS:
		sess_stls(s);
		return;
	case POP3_USER:
		if (!sess_set_user(s, cmd->argv[0], cmd->argl[0])) {
			sess_reply(s, "-ERR [AUTH] invalid user name");
			return;
		}
		sess_reply(s, "+OK");
		return;
	case POP3_PASS:
		if (!s->have_user) {
			sess_reply(s, "-ERR USER first");
			return;
		}
		sess_pass(s, cmd->rest, cmd->restl);
		return;
	case POP3_APOP:
		sess_apop(s, cmd);
		return;
	case POP3_AUTH:
		if (cmd->argl[0] != 5 ||
		    strncasecmp(cmd->argv[0], "PLAIN", 5) != 0) {
			sess_reply(s, "-ERR [AUTH] only PLAIN is supported");
			return;
		}
		if (cmd->argc == 2) {
			sess_auth_plain(s, cmd->argv[1], cmd->argl[1]);
			return;
		}
		s->st = S_SASL;
		sess_reply(s, "+ ");
		return;
	case POP3_QUIT:
		sess_reply(s, "+OK bye");
		sess_close(s);
		return;
	default:
		sess_reply(s, "-ERR command not valid in this state");
		return;
	}
}

/* ---------------------------------------------------------------- */
/* The transaction state                                             */
/* ---------------------------------------------------------------- */

/* sess_uidl - the consolidated UIDL of message i. */
static void
sess_uidl(struct asess *s, uint32_t i, char *out, size_t size)
{
	const struct amsg *m = &s->msgs[i];
	const struct leg *l;
	const char *u;
	unsigned char md[32];
	unsigned mdlen = 0;
	int n;

	if (m->leg == AGG_NOTICE) {
		snprintf(out, size, "%s", s->notice_uidl);
		return;
	}
	l = &s->legs[m->leg];
	u = l->msgs[m->num - 1].uidl;
	if (u == NULL) {
		/* The server gave none: its number and size, the best
		 * there is. */
		snprintf(out, size, "%lld.n%u-%u", (long long)l->acct.id,
		    m->num, m->size);
		return;
	}
	n = snprintf(out, size, "%lld.%s", (long long)l->acct.id, u);
	if (n >= 0 && (size_t)n <= AGG_UIDL_MAX)
		return;
	EVP_Digest(u, strlen(u), md, &mdlen, EVP_sha256(), NULL);
	n = snprintf(out, size, "%lld.h", (long long)l->acct.id);
	for (unsigned k = 0; k < 16 && (size_t)n + 2 < size; k++)
		n += snprintf(out + n, size - (size_t)n, "%02x", md[k]);
}

/* sess_msg - the message a client's number names, or NULL (-ERR sent). */
static struct amsg *
sess_msg(struct asess *s, const struct pop3_cmd *cmd)
{
	uint32_t k = cmd->num[0];

	if (k == 0 || k > s->nmsgs) {
		sess_reply(s, "-ERR no such message");
		return NULL;
	}
	if (s->msgs[k - 1].deleted) {
		sess_reply(s, "-ERR message already deleted");
		return NULL;
	}
	return &s->msgs[k - 1];
}

static void
sess_listing(struct asess *s, bool uidl)
{
	struct evbuffer *out = net_conn_output(s->c);
	char u[AGG_UIDL_MAX + 48];
	uint32_t i;

	/* Queued behind anything sent before: order is kept. */
	evbuffer_add(out, "+OK\r\n", 5);
	for (i = 0; i < s->nmsgs; i++) {
		if (s->msgs[i].deleted)
			continue;
		if (uidl) {
			sess_uidl(s, i, u, sizeof(u));
			evbuffer_add_printf(out, "%u %s\r\n", i + 1, u);
		} else
			evbuffer_add_printf(out, "%u %u\r\n", i + 1,
			    s->msgs[i].size);
	}
	evbuffer_add(out, ".\r\n", 3);
}

/* sess_notice_retr - the notice message, whole (RETR) or its header
 * and first lines (TOP); it holds no line that starts with ".". */
static void
sess_notice_retr(struct asess *s, const struct pop3_cmd *cmd)
{
	const char *p = s->notice.data, *end = p + s->notice.len;
	const char *body = strstr(p, "\r\n\r\n");
	struct evbuffer *out = net_conn_output(s->c);
	uint32_t lines;

	evbuffer_add_printf(out, "+OK %zu octets\r\n", s->notice.len);
	if (cmd->verb == POP3_TOP && body != NULL) {
		body += 4;
		for (lines = cmd->num[1]; lines > 0 && body < end; lines--)
			body = strstr(body, "\r\n") + 2;
		end = body;
	}
	evbuffer_add(out, p, (size_t)(end - p));
	evbuffer_add(out, ".\r\n", 3);
}

/* sess_retr - RETR or TOP to the owning backend; its body streams. */
static void
sess_retr(struct asess *s, const struct pop3_cmd *cmd)
{
	struct amsg *m;
	struct leg *l;
	int rc;

	if ((m = sess_msg(s, cmd)) == NULL)
		return;
	if (m->leg == AGG_NOTICE) {
		sess_notice_retr(s, cmd);
		return;
	}
	l = &s->legs[m->leg];
	if (l->st != L_READY) {
		sess_reply(s, "-ERR [SYS/TEMP] the server of that message is "
		    "not reachable now");
		return;
	}
	if (cmd->verb == POP3_TOP)
		rc = pop3c_send(l->c, POP3C_RAW, net_conn_output(s->c),
		    TAG(T_RETR), "TOP %u %u", m->num, cmd->num[1]);
	else
		rc = pop3c_send(l->c, POP3C_RAW, net_conn_output(s->c),
		    TAG(T_RETR), "RETR %u", m->num);
	if (rc != 0) {
		sess_reply(s, "-ERR [SYS/TEMP] cannot ask the server now");
		return;
	}
	s->retr_msg = (uint32_t)(m - s->msgs);
	s->retr_started = false;
	l->retr_ok = false;
	l->st = L_BUSY;
	s->st = S_RETR;
	s->busy = true;
}

/*
 * leg_queue_update - queue this backend's DELEs, as many as its command
 * queue takes (more follow as replies come back), then its QUIT.
 */
static void
leg_queue_update(struct leg *l)
{
	struct asess *s = l->s;
	uint32_t k = (uint32_t)(l - s->legs);

	for (; l->dele_next < s->nmsgs; l->dele_next++) {
		const struct amsg *m = &s->msgs[l->dele_next];

		if (!m->deleted || m->leg != k)
			continue;
		if (pop3c_send(l->c, POP3C_NONE, NULL, TAG(T_DELE), "DELE %u",
		    m->num) != 0)
			return;		/* full: on with the next reply */
	}
	if (!l->quit_queued && pop3c_send(l->c, POP3C_NONE, NULL,
	    TAG(T_QUIT), "QUIT") == 0)
		l->quit_queued = true;
}

/* sess_update_done - every backend answered its QUIT or failed. */
static void
sess_update_done(struct asess *s)
{
	struct agg *a = s->a;
	uint64_t asked = 0, done = 0;
	size_t i;

	for (i = 0; i < s->nlegs; i++) {
		asked += s->legs[i].deletions;
		done += s->legs[i].deleted;
	}
	a->n.deletions_applied += done;
	a->n.deletions_failed += asked - done;
	s->quit = true;
	if (done == asked)
		sess_reply(s, "+OK bye");
	else
		net_conn_sendf(s->c, "-ERR [SYS/TEMP] some deleted messages "
		    "not removed (%llu of %llu)\r\n",
		    (unsigned long long)(asked - done),
		    (unsigned long long)asked);
	sess_close(s);
}

/* sess_quit - the UPDATE state: each backend gets its DELEs, then QUIT. */
static void
sess_quit(struct asess *s)
{
	uint32_t i;
	size_t k;

	s->st = S_UPDATE;
	s->busy = true;
	s->pending = 0;
	for (i = 0; i < s->nmsgs; i++)
		if (s->msgs[i].deleted && s->msgs[i].leg != AGG_NOTICE)
			s->legs[s->msgs[i].leg].deletions++;
	for (k = 0; k < s->nlegs; k++) {
		struct leg *l = &s->legs[k];

		if (l->st != L_READY) {
			/* Gone before QUIT: its marked messages stay. */
			if (l->deletions > 0 && l->why[0] == '\0')
				snprintf(l->why, sizeof(l->why), "%s",
				    "not connected at QUIT");
			continue;
		}
		l->st = L_UPDATE;
		s->pending++;
		leg_queue_update(l);
		if (pop3c_pending(l->c) == 0)
			leg_fail(l, "%s", "cannot queue the deletions");
	}
	if (s->pending == 0 && s->st == S_UPDATE)
		sess_update_done(s);
}

static void
sess_trans_cmd(struct asess *s, const struct pop3_cmd *cmd)
{
	struct amsg *m;
	uint32_t i, n = 0;
	uint64_t octets = 0;
	char u[AGG_UIDL_MAX + 48];

	switch (cmd->verb) {
	case POP3_CAPA:
		sess_capa(s);
		return;
	case POP3_STAT:
		for (i = 0; i < s->nmsgs; i++)
			if (!s->msgs[i].deleted) {
				n++;
				octets += s->msgs[i].size;
			}
		net_conn_sendf(s->c, "+OK %u %llu\r\n", n,
		    (unsigned long long)octets);
		return;
	case POP3_LIST:
	case POP3_UIDL:
		if (cmd->argc == 0) {
			sess_listing(s, cmd->verb == POP3_UIDL);
			return;
		}
		if ((m = sess_msg(s, cmd)) == NULL)
			return;
		if (cmd->verb == POP3_LIST) {
			net_conn_sendf(s->c, "+OK %u %u\r\n", cmd->num[0],
			    m->size);
			return;
		}
		sess_uidl(s, cmd->num[0] - 1, u, sizeof(u));
		net_conn_sendf(s->c, "+OK %u %s\r\n", cmd->num[0], u);
		return;
	case POP3_DELE:
		if ((m = sess_msg(s, cmd)) == NULL)
			return;
		m->deleted = true;
		net_conn_sendf(s->c, "+OK message %u deleted\r\n",
		    cmd->num[0]);
		return;
	case POP3_RSET:
		for (i = 0; i < s->nmsgs; i++)
			s->msgs[i].deleted = false;
		sess_reply(s, "+OK");
		return;
	case POP3_NOOP:
		sess_reply(s, "+OK");
		return;
	case POP3_RETR:
	case POP3_TOP:
		sess_retr(s, cmd);
		return;
	case POP3_QUIT:
		sess_quit(s);
		return;
	default:
		sess_reply(s, "-ERR command not valid in this state");
		return;
	}
}

/* ---------------------------------------------------------------- */
/* The client                                                        */
/* ---------------------------------------------------------------- */

static void
sess_process(struct asess *s)
{
	pop3s_process(s->ps);
}

static void
sess_greet(void *arg)
{
	struct asess *s = arg;

	net_conn_sendf(s->c, "+OK mailroom POP3 ready %s\r\n", s->stamp);
}

static bool
sess_ready(void *arg)
{
	const struct asess *s = arg;

	return !s->busy && s->st != S_CLOSING;
}

/* sess_line - the AUTH PLAIN response, the one line not a command. */
static bool
sess_line(void *arg, const char *p, size_t n)
{
	struct asess *s = arg;

	if (s->st != S_SASL)
		return false;
	s->st = S_AUTH;
	sess_auth_plain(s, p, n);
	return true;
}

static void
sess_command(void *arg, const struct pop3_cmd *cmd, const char *line,
    size_t len)
{
	struct asess *s = arg;

	(void)line;
	(void)len;
	if (s->st == S_AUTH)
		sess_auth_cmd(s, cmd);
	else
		sess_trans_cmd(s, cmd);
}

static void
sess_bad(void *arg, enum pop3_parse pr, const char *why)
{
	struct asess *s = arg;

	(void)pr;
	net_conn_sendf(s->c, "-ERR %s\r\n", why);
}

/* sess_drained - a body paused on a slow client goes on. */
static bool
sess_drained(void *arg)
{
	struct asess *s = arg;
	size_t i;

	if (s->st != S_RETR)
		return false;
	for (i = 0; i < s->nlegs; i++)
		if (s->legs[i].st == L_BUSY && s->legs[i].c != NULL)
			pop3c_reading(s->legs[i].c, true);
	return true;
}

static void
sess_gone(void *arg)
{
	struct asess *s = arg;

	mr_log_debug(AGG_MOD, "event=client-gone client=%s state=%d",
	    net_conn_peer(s->c), (int)s->st);
	sess_free(s);
}

static const struct pop3s_ops sess_ops = {
	.greet = sess_greet,
	.ready = sess_ready,
	.line = sess_line,
	.command = sess_command,
	.bad = sess_bad,
	.drained = sess_drained,
	.gone = sess_gone,
};

static void
agg_accept_any(int fd, const struct sockaddr *peer, socklen_t peerlen,
    void *arg, bool implicit_tls)
{
	struct agg *a = arg;
	struct asess *s;

	if (a->n.sessions_active >= (uint64_t)a->cfg->pop3_proxy_max_sessions) {
		a->n.sessions_refused++;
		pop3s_refuse(fd);
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->a = a;
	s->ps = pop3s_accept(a->base, fd, peer, peerlen,
	    (unsigned)a->cfg->pop3_proxy_idle_timeout, &sess_ops, s);
	if (s->ps == NULL) {
		free(s);
		return;
	}
	s->c = pop3s_conn(s->ps);
	s->timer = evtimer_new(a->base, sess_deadline, s);
	s->started = mr_clock_ms();
	s->started_wall = (int64_t)time(NULL) * 1000;
	/* RFC 1939 7: unique for this greeting. */
	snprintf(s->stamp, sizeof(s->stamp), "<%ld.%llu.%lld@%s>",
	    (long)getpid(), (unsigned long long)++a->stamps,
	    (long long)time(NULL), a->hostname);
	s->next = a->sessions;
	if (s->next)
		s->next->prev = s;
	a->sessions = s;
	a->n.sessions++;
	a->n.sessions_active++;
	pop3s_start(s->ps, implicit_tls ? a->srv_ctx : NULL);
}

static void
agg_accept(int fd, const struct sockaddr *peer, socklen_t peerlen,
    void *arg)
{
	agg_accept_any(fd, peer, peerlen, arg, false);
}

static void
agg_accept_tls(int fd, const struct sockaddr *peer, socklen_t peerlen,
    void *arg)
{
	agg_accept_any(fd, peer, peerlen, arg, true);
}

/* ---------------------------------------------------------------- */
/* /metrics                                                          */
/* ---------------------------------------------------------------- */

void
agg_metrics(const struct agg *a, struct evbuffer *out)
{
	static const struct {
		const char	*name, *type, *help;
		size_t		 off;
	} m[] = {
#define C(f, t, h) { "mailroom_pop3_aggregate_" #f, t, h,		\
	offsetof(struct agg_counters, f) }
		C(sessions, "counter", "Client connections accepted."),
		C(sessions_refused, "counter", "Connections over max_sessions."),
		C(sessions_active, "gauge", "Client connections now."),
		C(logins, "counter", "Logins the registry accepted."),
		C(logins_failed, "counter", "Logins the registry refused."),
		C(backends_reached, "counter", "Backend accounts listed."),
		C(backends_failed, "counter", "Backend accounts that failed."),
		C(messages_retrieved, "counter", "Messages sent in full."),
		C(bytes_retrieved, "counter", "Octets of those messages."),
		C(deletions_applied, "counter", "Deletions backends confirmed."),
		C(deletions_failed, "counter", "Deletions that did not happen."),
#undef C
	};
	size_t i;

	for (i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s "
		    "%llu\n", m[i].name, m[i].help, m[i].name, m[i].type,
		    m[i].name, (unsigned long long)*(const uint64_t *)
		    (const void *)((const char *)&a->n + m[i].off));
}

static void
agg_http_cb(struct evhttp_request *req, void *arg)
{
	struct agg *a = arg;
	const struct sockaddr *sa = evhttp_connection_get_addr(
	    evhttp_request_get_connection(req));
	struct evbuffer *out;

	/* Counters name no user, but the endpoint is for the machine's own
	 * monitoring: loopback only. */
	if (sa == NULL || !net_is_loopback(sa)) {
		evhttp_send_error(req, 403, "Forbidden");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET ||
	    strcmp(evhttp_request_get_uri(req), "/metrics") != 0) {
		evhttp_send_error(req, 404, "GET /metrics");
		return;
	}
	out = evbuffer_new();
	agg_metrics(a, out);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

/* ---------------------------------------------------------------- */
/* The proxy                                                         */
/* ---------------------------------------------------------------- */

struct agg *
agg_new(struct event_base *base, const struct mr_config *cfg,
    struct registry *reg, struct mr_buf *err)
{
	struct agg *a;

	if (*cfg->pop3_proxy_listen == '\0') {
		mr_buf_puts(err, "no listening address: give --listen "
		    "ADDR:PORT or pop3_proxy.listen");
		return NULL;
	}
	if (*cfg->pop3_proxy_listen_tls != '\0' &&
	    (*cfg->pop3_proxy_tls_cert == '\0' ||
	    *cfg->pop3_proxy_tls_key == '\0')) {
		mr_buf_puts(err, "pop3_proxy.listen_tls needs "
		    "pop3_proxy.tls_cert and pop3_proxy.tls_key");
		return NULL;
	}
	a = xcalloc(1, sizeof(*a));
	a->base = base;
	a->cfg = cfg;
	a->reg = reg;
	a->fails = xcalloc(AGG_FAIL_SLOTS, sizeof(*a->fails));
	if (gethostname(a->hostname, sizeof(a->hostname) - 1) != 0 ||
	    a->hostname[0] == '\0')
		snprintf(a->hostname, sizeof(a->hostname), "localhost");
	if (*cfg->pop3_proxy_tls_cert != '\0' &&
	    (a->srv_ctx = net_tls_server_ctx(cfg->pop3_proxy_tls_cert,
	    cfg->pop3_proxy_tls_key, err)) == NULL)
		goto fail;
	if ((a->cli_ctx = net_tls_client_ctx(cfg->pop3_proxy_backend_tls_verify,
	    cfg->pop3_proxy_backend_ca_file, err)) == NULL)
		goto fail;
	return a;
fail:
	agg_free(&a);
	return NULL;
}

int
agg_add_service(struct agg *a, const struct agg_service *svc)
{
	if (a->nsvc == AGG_MAX_SERVICES)
		return -1;
	a->svc[a->nsvc++] = *svc;
	return 0;
}

int
agg_start(struct agg *a, struct mr_buf *err)
{
	const struct mr_config *cfg = a->cfg;

	a->lis = net_listen(a->base, cfg->pop3_proxy_listen, 110, 1024,
	    agg_accept, a, err);
	if (a->lis == NULL)
		return -1;
	if (*cfg->pop3_proxy_listen_tls != '\0' &&
	    (a->lis_tls = net_listen(a->base, cfg->pop3_proxy_listen_tls,
	    995, 1024, agg_accept_tls, a, err)) == NULL)
		return -1;
	if (*cfg->pop3_proxy_http_listen == '\0')
		return 0;
	a->http = net_http_listen(a->base, cfg->pop3_proxy_http_listen, 0,
	    4096, a->http_addr, sizeof(a->http_addr), err);
	if (a->http == NULL)
		return -1;
	evhttp_set_gencb(a->http, agg_http_cb, a);
	return 0;
}

const char *
agg_listen_addr(const struct agg *a)
{
	return a->lis ? net_listener_addr(a->lis) : "";
}

const char *
agg_listen_tls_addr(const struct agg *a)
{
	return a->lis_tls ? net_listener_addr(a->lis_tls) : "";
}

const char *
agg_http_addr(const struct agg *a)
{
	return a->http_addr;
}

const struct agg_counters *
agg_counters(const struct agg *a)
{
	return &a->n;
}

void
agg_stop(struct agg *a)
{
	net_listener_free(&a->lis);
	net_listener_free(&a->lis_tls);
	while (a->sessions != NULL)
		sess_free(a->sessions);
}

void
agg_free(struct agg **ap)
{
	struct agg *a = *ap;
	size_t i;

	if (a == NULL)
		return;
	*ap = NULL;
	agg_stop(a);
	for (i = 0; i < a->nsvc; i++)
		if (a->svc[i].free != NULL)
			a->svc[i].free(a->svc[i].arg);
	if (a->http != NULL)
		evhttp_free(a->http);
	if (a->dns != NULL)
		evdns_base_free(a->dns, 1);
	if (a->srv_ctx != NULL)
		SSL_CTX_free(a->srv_ctx);
	if (a->cli_ctx != NULL)
		SSL_CTX_free(a->cli_ctx);
	free(a->fails);
	free(a);
}

/* ---------------------------------------------------------------- */
/* The accounting file (a service)                                   */
/* ---------------------------------------------------------------- */

/* acct_json - s as a JSON string body (quotes, backslashes and control
 * characters escaped). */
static void
acct_json(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
}

static void
acct_session_end(void *arg, const struct agg_record *r)
{
	FILE *f = arg;
	size_t i;

	fprintf(f, "{\"time\":%lld,\"user\":\"", (long long)r->started / 1000);
	acct_json(f, r->user);
	fprintf(f, "\",\"client\":\"");
	acct_json(f, r->client);
	fprintf(f, "\",\"logged_in\":%s,\"quit\":%s,\"messages\":%llu,"
	    "\"retrieved\":%llu,\"retrieved_bytes\":%llu,\"deletions\":%llu,"
	    "\"deleted\":%llu,\"duration_ms\":%llu,\"backends\":[",
	    r->logged_in ? "true" : "false", r->quit ? "true" : "false",
	    (unsigned long long)r->messages, (unsigned long long)r->retrieved,
	    (unsigned long long)r->retrieved_bytes,
	    (unsigned long long)r->deletions, (unsigned long long)r->deleted,
	    (unsigned long long)r->duration_ms);
	for (i = 0; i < r->nbackends; i++) {
		const struct agg_backend_result *b = &r->backends[i];

		fprintf(f, "%s{\"account\":%lld,\"host\":\"", i ? "," : "",
		    (long long)b->account);
		acct_json(f, b->host);
		fprintf(f, "\",\"port\":%u,\"reached\":%s,\"messages\":%u,"
		    "\"deletions\":%u,\"deleted\":%u", b->port,
		    b->reached ? "true" : "false", b->messages, b->deletions,
		    b->deleted);
		if (b->why != NULL) {
			fprintf(f, ",\"error\":\"");
			acct_json(f, b->why);
			fputc('"', f);
		}
		fputc('}', f);
	}
	fprintf(f, "]}\n");
	fflush(f);
}

static void
acct_free(void *arg)
{
	fclose(arg);
}

int
agg_accounting_service(const char *path, struct agg_service *out,
    struct mr_buf *err)
{
	FILE *f = fopen(path, "a");

	if (f == NULL) {
		mr_buf_printf(err, "cannot open the accounting file %s: %s",
		    path, strerror(errno));
		return -1;
	}
	memset(out, 0, sizeof(*out));
	out->name = "accounting";
	out->arg = f;
	out->session_end = acct_session_end;
	out->free = acct_free;
	return 0;
}
