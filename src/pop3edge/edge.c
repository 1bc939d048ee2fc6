/*
 * edge.c - the POP3 edge proxy's sessions (see edge.h for the table).
 *
 * A session reads one client command at a time and does not read the
 * next until the reply to this one is complete, so pipelining clients
 * (RFC 2449 PIPELINING) get their replies in order, whether answered
 * locally or by the backend.  The backend connection is opened only when a
 * command must go there, and closed with the session.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "net/conn.h"
#include "net/listen.h"
#include "pop3/pop3_cmd.h"
#include "pop3/pop3c.h"
#include "pop3/pop3s.h"
#include "pop3edge/edge.h"
#include "pop3edge/utable.h"

#define EDGE_MOD		"pop3-proxy"
/* Under the demand rule alone the interval still ends after a day, in
 * case notifications are lost (seed: "a more robust system"). */
#define EDGE_DEMAND_SAFETY_MS	(24ULL * 3600 * 1000)

/* Where a session is (the user's entry has its own state). */
enum sess_state {
	S_AUTH,		/* authorization: USER, PASS, AUTH, QUIT */
	S_SASL,		/* AUTH PLAIN: waiting for the client's response */
	S_LOCAL,	/* transaction answered locally (terminated) */
	S_RELAY,	/* transaction relayed to the backend */
	S_CLOSING,	/* the last reply is being written */
};

/* What the session waits for from the backend (also the pop3c tag). */
enum back_step {
	B_NONE,		/* no connection */
	B_READY,	/* connected (or connecting), nothing due */
	B_USER,		/* USER sent */
	B_PASS,		/* PASS sent */
	B_REPLY,	/* a relayed command's status line */
	B_BODY,		/* a relayed multi-line body */
	B_STAT,		/* STAT of a held QUIT */
	B_QUIT,		/* QUIT sent */
};
#define TAG(b)		((void *)(uintptr_t)(b))
#define UNTAG(p)	((enum back_step)(uintptr_t)(p))

struct esess {
	struct edge		*e;
	struct pop3s		*ps;		/* the client */
	struct net_conn		*c;		/* its connection */
	struct pop3c		*b;		/* the backend, or NULL */
	struct event		*timer;		/* session timer (local) */
	struct esess		*prev, *next;
	enum sess_state		 st;
	enum back_step		 bs;
	bool			 busy;		/* a reply is pending */
	bool			 have_user;
	bool			 user_sent;	/* the backend has our USER */
	bool			 holds_lock;	/* this session locked the
						 * user's entry */
	uint64_t		 sent_at;	/* PASS sent: for latency */
	long			 stat_count;	/* STAT of a held QUIT */
	uint16_t		 notes_seen;	/* the entry's notes at login */
	bool			 opt_out;	/* the user is on the opt-out
						 * list: pass everything */
	uint32_t		 uid;		/* user entry, or UTABLE_NONE */
	unsigned		 auth_failures;
	size_t			 userlen;
	size_t			 passlen;
	char			 user[UTABLE_NAME_MAX + 1];
	char			 pass[POP3_LINE_MAX + 1];	/* cleansed
							 * after use */
	bool			 multiline;	/* the relayed command's
						 * +OK has a body */
};

struct edge {
	struct event_base		*base;
	const struct mr_config		*cfg;
	struct net_listener		*lis;
	struct net_listener		*lis_tls;	/* POP3S */
	SSL_CTX				*srv_ctx;	/* STLS, POP3S */
	SSL_CTX				*cli_ctx;	/* to the backend */
	char				 backend_host[256];	/* SNI */
	char				**opt_out;	/* sorted names */
	size_t				 nopt_out;
	uint64_t			 backend_open;	/* backend connections now */
	double				 latency_ms;	/* moving average of the
						 * backend's login replies */
	uint64_t			 epoch;		/* mr_clock_ms() at start:
						 * fast-check times count
						 * from here */
	struct utable			*users;
	struct event			*gc_ev;
	struct event			*stats_ev;
	struct timeval			 session_tv;	/* session_timeout */
	const struct timeval		*session_ctv;	/* the same, as one of
						 * the loop's common
						 * timeouts */
	struct esess			*sessions;	/* list */
	struct sockaddr_storage		 backend;
	socklen_t			 backend_len;
	struct edge_counters		 n;
};

static void sess_process(struct esess *s);
static void sess_close(struct esess *s);
static uint64_t edge_interval(const struct edge *e);

static const struct pop3c_cbs sess_backend_cbs;

/* ---------------------------------------------------------------- */
/* Replies                                                           */
/* ---------------------------------------------------------------- */

static void
sess_reply(struct esess *s, const char *text)
{
	char buf[256];
	size_t n = strlen(text);

	/* Our own texts, all short: no format to interpret. */
	if (n > sizeof(buf) - 2) {
		net_conn_sendf(s->c, "%s\r\n", text);
		return;
	}
	memcpy(buf, text, n);
	memcpy(buf + n, "\r\n", 2);
	net_conn_send(s->c, buf, n + 2);
}

/* sess_capa - our capabilities (RFC 2449), answered locally in every
 * state: the client talks to us, not to the backend. */
static void
sess_capa(struct esess *s)
{
	const struct mr_config *cfg = s->e->cfg;
	char delay[48] = "";

	/* RFC 2449 6.8: the least time between logins we would like. */
	if (cfg->pop3_proxy_rule != CONF_ATT_DEMAND)
		snprintf(delay, sizeof(delay), "LOGIN-DELAY %llu\r\n",
		    (unsigned long long)(edge_interval(s->e) / 1000));
	net_conn_sendf(s->c, "+OK Capability list follows\r\n"
	    "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
	    "%s%s%sIMPLEMENTATION mailroom\r\n.\r\n",
	    s->st == S_AUTH ? "USER\r\nSASL PLAIN\r\n" : "",
	    s->st == S_AUTH && s->e->srv_ctx != NULL &&
	    !net_conn_is_tls(s->c) ? "STLS\r\n" : "", delay);
}

/* ---------------------------------------------------------------- */
/* Attenuation rules (P4)                                            */
/* ---------------------------------------------------------------- */

/*
 * edge_interval - the attenuation interval n now (P4): static, or between
 * interval and interval_max by the backend's load, the higher of its
 * reply latency and its open sessions, each against its full-load mark.
 */
static uint64_t
edge_interval(const struct edge *e)
{
	const struct mr_config *cfg = e->cfg;
	double load, l2;

	if (cfg->pop3_proxy_interval_max <= cfg->pop3_proxy_interval)
		return (uint64_t)cfg->pop3_proxy_interval;
	load = e->latency_ms / (double)cfg->pop3_proxy_load_latency;
	l2 = (double)e->backend_open / (double)cfg->pop3_proxy_load_sessions;
	if (l2 > load)
		load = l2;
	if (load > 1)
		load = 1;
	return (uint64_t)cfg->pop3_proxy_interval + (uint64_t)(load *
	    (double)(cfg->pop3_proxy_interval_max - cfg->pop3_proxy_interval));
}

/*
 * edge_attenuated - may this check be answered locally?  The mailbox was
 * seen empty less than the interval ago and no notification came since
 * (empty_at is cleared by one); the one-in-m rule lets every m-th check
 * through anyway.
 */
static bool
edge_attenuated(struct edge *e, struct utable_entry *u, uint64_t now)
{
	const struct mr_config *cfg = e->cfg;
	uint64_t n = cfg->pop3_proxy_rule == CONF_ATT_DEMAND ?
	    EDGE_DEMAND_SAFETY_MS : edge_interval(e);

	if (u->empty_at == 0 || now - u->empty_at >= n)
		return false;
	if (cfg->pop3_proxy_one_in > 0 &&
	    u->checks + 1 >= (uint64_t)cfg->pop3_proxy_one_in)
		return false;
	return true;
}

/*
 * edge_fast_check - the fast-check rule (P6, seed "The Fast Check Case"),
 * for a check that would be answered locally: record it; when the last
 * fast_checks of them fall within fast_window, let this one through if
 * their spacing is irregular (a person insisting) and keep answering
 * locally if it is regular (a client polling too often).  The intervals'
 * coefficient of variation decides; checks less than a second apart on
 * average are never a person's.
 */
static bool
edge_fast_check(struct edge *e, struct utable_entry *u, uint64_t now)
{
	const struct mr_config *cfg = e->cfg;
	unsigned k = (unsigned)cfg->pop3_proxy_fast_checks, i;
	uint32_t t = (uint32_t)(now - e->epoch);
	double mean, var = 0, d;

	if (k < 2)
		return false;
	if (u->nfast == k) {
		memmove(u->fast, u->fast + 1, (k - 1) * sizeof(u->fast[0]));
		u->nfast--;
	}
	u->fast[u->nfast++] = t;
	if (u->nfast < k ||
	    (uint32_t)(t - u->fast[0]) > (uint64_t)cfg->pop3_proxy_fast_window)
		return false;
	mean = (double)(uint32_t)(t - u->fast[0]) / (k - 1);
	for (i = 1; i < k; i++) {
		d = (double)(uint32_t)(u->fast[i] - u->fast[i - 1]) - mean;
		var += d * d;
	}
	var /= k - 1;
	/* Under a second apart on average is no person clicking. */
	if (mean < 1000 || var * 10000 < (double)cfg->pop3_proxy_fast_regular_cv *
	    (double)cfg->pop3_proxy_fast_regular_cv * mean * mean) {
		e->n.checks_automated++;
		return false;
	}
	u->nfast = 0;
	e->n.checks_fast_passed++;
	return true;
}

/* edge_opted_out - is name on the opt-out list? */
static int
edge_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
edge_opted_out(struct edge *e, const char *name)
{
	return e->nopt_out > 0 && bsearch(&name, e->opt_out, e->nopt_out,
	    sizeof(*e->opt_out), edge_name_cmp) != NULL;
}

/* edge_expiry - when an idle entry may leave the table: once nothing it
 * knows can answer a check any more. */
static uint64_t
edge_expiry(struct edge *e, uint64_t now)
{
	const struct mr_config *cfg = e->cfg;

	uint64_t n = (uint64_t)(cfg->pop3_proxy_interval_max >
	    cfg->pop3_proxy_interval ? cfg->pop3_proxy_interval_max :
	    cfg->pop3_proxy_interval);

	return now + (cfg->pop3_proxy_rule == CONF_ATT_DEMAND ?
	    EDGE_DEMAND_SAFETY_MS : n);
}

/* ---------------------------------------------------------------- */
/* Sessions and the user table                                       */
/* ---------------------------------------------------------------- */

/* sess_backend_close - drop the backend connection (no QUIT), if any. */
static void
sess_backend_close(struct esess *s)
{
	if (s->b == NULL)
		return;
	pop3c_free(&s->b);
	s->e->backend_open--;
}

/* sess_release_user - the session lets go of its entry: unlocked, Idle
 * unless another session is at it, scheduled to expire. */
static void
sess_release_user(struct esess *s)
{
	struct edge *e = s->e;
	struct utable_entry *u;

	if (s->uid == UTABLE_NONE)
		return;
	u = utable_get(e->users, s->uid);
	if (u->refs > 0)
		u->refs--;
	/* Only the session that holds the lock lets it go. */
	if (s->holds_lock) {
		u->lock = false;
		u->terminate = false;
		s->holds_lock = false;
	}
	if (u->refs == 0) {
		u->state = UT_IDLE;
		utable_schedule(e->users, s->uid,
		    edge_expiry(e, mr_clock_ms()));
	}
	s->uid = UTABLE_NONE;
}

static void
sess_free(struct esess *s)
{
	struct edge *e = s->e;

	sess_release_user(s);
	if (s->prev)
		s->prev->next = s->next;
	else
		e->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	pop3s_free(&s->ps);
	sess_backend_close(s);
	if (s->timer)
		event_free(s->timer);
	OPENSSL_cleanse(s->pass, sizeof(s->pass));
	e->n.sessions_active--;
	free(s);
}

/* sess_close - write what is pending, then close (sess_free from the
 * drained callback); the backend is dropped at once, without QUIT. */
static void
sess_close(struct esess *s)
{
	if (s->st == S_CLOSING)
		return;
	sess_release_user(s);
	s->st = S_CLOSING;
	sess_backend_close(s);
	s->bs = B_NONE;
	pop3s_close(s->ps);
}

/* sess_find_user - the session's entry for s->user: found (Idle ->
 * Authorization) or made.  Returns false when the table is full of held
 * entries (the session then goes on without one: no attenuation). */
static bool
sess_take_user(struct esess *s, bool *existed_r)
{
	struct edge *e = s->e;
	struct utable_entry *u;
	uint64_t now = mr_clock_ms();
	uint32_t before = utable_count(e->users), id;

	id = utable_find(e->users, s->user, s->userlen);
	*existed_r = id != UTABLE_NONE;
	if (id == UTABLE_NONE) {
		id = utable_add(e->users, s->user, s->userlen,
		    now + (uint64_t)e->cfg->pop3_proxy_backend_timeout * 2);
		if (id == UTABLE_NONE) {
			e->n.table_full++;
			return false;
		}
		if (utable_count(e->users) <= before)
			e->n.table_evictions += before + 1 -
			    utable_count(e->users);
	}
	u = utable_get(e->users, id);
	u->refs++;
	if (!u->lock)
		u->state = UT_AUTHORIZATION;
	s->uid = id;
	e->n.users = utable_count(e->users);
	return true;
}

/* ---------------------------------------------------------------- */
/* The backend                                                       */
/* ---------------------------------------------------------------- */

/* sess_backend_send - "VERB arg" to the backend; its reply is awaited
 * in step next.  The backend connection bounds the wait. */
static void
sess_backend_send(struct esess *s, enum back_step next, const char *verb,
    const char *arg, size_t len)
{
	s->bs = next;
	if (pop3c_send(s->b, POP3C_NONE, NULL, TAG(next), "%s %.*s", verb,
	    (int)len, arg) != 0)
		mr_log_warn(EDGE_MOD, "event=backend-error error=%s",
		    "\"a command too long for the backend\"");
	if (next == B_PASS) {
		s->sent_at = mr_clock_ms();
		s->e->n.checks_passed++;
	}
}

/*
 * sess_backend_open - connect (TLS, greeting and XCLIENT are pop3c's)
 * with our USER queued behind; what follows its reply is decided by
 * sess_backend_status().
 */
static int
sess_backend_open(struct esess *s)
{
	struct edge *e = s->e;
	const struct mr_config *cfg = e->cfg;
	struct pop3c_params p;
	const char *why = NULL;

	memset(&p, 0, sizeof(p));
	p.addr = (const struct sockaddr *)&e->backend;
	p.addrlen = e->backend_len;
	p.tls = cfg->pop3_proxy_backend_tls == CONF_BTLS_TLS ?
	    POP3C_TLS_IMPLICIT : cfg->pop3_proxy_backend_tls ==
	    CONF_BTLS_STLS ? POP3C_TLS_STLS : POP3C_TLS_NONE;
	p.ctx = e->cli_ctx;
	p.servername = e->backend_host;
	p.verify = cfg->pop3_proxy_backend_tls_verify;
	p.timeout_ms = (unsigned)cfg->pop3_proxy_backend_timeout;
	p.client = cfg->pop3_proxy_xclient ? net_conn_peer_addr(s->c) : NULL;
	s->b = pop3c_open(e->base, &p, &sess_backend_cbs, s, &why);
	if (s->b == NULL) {
		mr_log_warn(EDGE_MOD, "event=backend-error error=%s",
		    mr_q(why, (size_t)-1));
		return -1;
	}
	e->n.backend_sessions++;
	e->backend_open++;
	s->user_sent = false;
	sess_backend_send(s, B_USER, "USER", s->user, s->userlen);
	return 0;
}

/*
 * sess_forget_login - a login attempt ended without success: the entry
 * (and any lock taken for the attempt) is let go, and the client starts
 * again with USER or AUTH (RFC 1939 4).
 */
static void
sess_forget_login(struct esess *s)
{
	sess_release_user(s);
	s->have_user = false;
	s->user_sent = false;
	s->passlen = 0;
	OPENSSL_cleanse(s->pass, sizeof(s->pass));
}

/*
 * sess_backend_unavailable - during a login the backend cannot be had:
 * a clear -ERR (never a local +OK for what it did not confirm).  Called
 * from the command being handled, so it does not read further commands.
 */
static void
sess_backend_unavailable(struct esess *s)
{
	struct edge *e = s->e;

	e->n.backend_errors++;
	e->n.logins_refused++;
	sess_backend_close(s);
	s->bs = B_NONE;
	sess_forget_login(s);
	sess_reply(s, "-ERR [SYS/TEMP] the mail server is not available, "
	    "try again later");
	s->busy = false;
}

/* sess_backend_fail - the backend broke off (from its callbacks): tell
 * the client, clearly. */
static void
sess_backend_fail(struct esess *s, const char *why)
{
	struct edge *e = s->e;
	bool in_login = s->st == S_AUTH || s->st == S_SASL;

	mr_log_warn(EDGE_MOD, "event=backend-error client=%s user=%s "
	    "error=%s", net_conn_peer(s->c), mr_q(s->user, s->userlen),
	    mr_q(why, (size_t)-1));
	if (in_login) {
		if (!s->busy) {
			/* Nothing asked of it: drop it quietly, a new one
			 * is opened for the next login. */
			sess_backend_close(s);
			s->bs = B_NONE;
			s->user_sent = false;
			return;
		}
		sess_backend_unavailable(s);
		sess_process(s);
		return;
	}
	e->n.backend_errors++;
	sess_backend_close(s);
	s->bs = B_NONE;
	/* A body cut short is followed by this line: the client sees no
	 * terminating dot, and the connection ends. */
	sess_reply(s, "-ERR [SYS/TEMP] lost the connection to the mail "
	    "server");
	sess_close(s);
}

/* sess_relay_status - the backend's status line to the client as is. */
static void
sess_relay_status(struct esess *s, const char *p, size_t n)
{
	net_conn_sendf(s->c, "%.*s\r\n", (int)n, p);
}

/* sess_login_ok - the backend said +OK to PASS: remember the verifier
 * and enter the relayed transaction. */
static void
sess_login_ok(struct esess *s, const char *p, size_t n)
{
	struct edge *e = s->e;
	struct utable_entry *u;

	if (s->uid != UTABLE_NONE) {
		u = utable_get(e->users, s->uid);
		if (!utable_check_password(e->users, s->uid, s->pass,
		    s->passlen))
			utable_set_password(e->users, s->uid, s->pass,
			    s->passlen);
		u->state = UT_TRANSACTION;
		u->lock = true;
		u->terminate = false;
		s->holds_lock = true;
		u->checks = 0;
		u->nfast = 0;
		s->notes_seen = u->notes;
	}
	OPENSSL_cleanse(s->pass, sizeof(s->pass));
	s->st = S_RELAY;
	s->bs = B_READY;
	s->busy = false;
	sess_relay_status(s, p, n);
	mr_log_info(EDGE_MOD, "event=login client=%s user=%s answer=backend",
	    net_conn_peer(s->c), mr_q(s->user, s->userlen));
}

static void
sess_login_failed(struct esess *s, const char *p, size_t n)
{
	struct edge *e = s->e;

	e->n.logins_refused++;
	s->auth_failures++;
	mr_log_info(EDGE_MOD, "event=login-failed client=%s user=%s",
	    net_conn_peer(s->c), mr_q(s->user, s->userlen));
	/* RFC 1939: after a failed PASS the client starts again with USER. */
	sess_forget_login(s);
	s->bs = B_READY;
	s->busy = false;
	s->st = S_AUTH;
	sess_relay_status(s, p, n);
	if (s->auth_failures >= (unsigned)e->cfg->pop3_proxy_max_auth_failures) {
		sess_reply(s, "-ERR [AUTH] too many failed logins");
		sess_close(s);
	}
}

/* sess_stat_count - messages in a STAT reply "+OK nn mm", or -1. */
static long
sess_stat_count(const char *p, size_t n)
{
	long v = 0;
	size_t i = 4;

	if (!pop3c_is_ok(p, n) || n < 5)
		return -1;
	if (p[i] < '0' || p[i] > '9')
		return -1;
	for (; i < n && p[i] >= '0' && p[i] <= '9' && v < 100000000; i++)
		v = v * 10 + (p[i] - '0');
	return v;
}

/*
 * sess_backend_status - the backend's status line to what the session
 * sent.  A relayed command's body (if any) and its end come through
 * sess_backend_moved() and sess_backend_done().
 */
static void
sess_backend_status(struct pop3c *c, void *arg, void *tag, bool ok,
    const char *p, size_t n)
{
	struct esess *s = arg;
	struct edge *e = s->e;

	(void)c;
	switch (UNTAG(tag)) {
	case B_USER:
		if (s->passlen == 0) {
			/* The client's own USER (None state): its answer is
			 * the backend's. */
			sess_relay_status(s, p, n);
			s->user_sent = ok;
			if (!ok)
				sess_forget_login(s);
			s->bs = B_READY;
			s->busy = false;
			sess_process(s);
			return;
		}
		if (!ok) {
			sess_login_failed(s, p, n);
			sess_process(s);
			return;
		}
		s->user_sent = true;
		sess_backend_send(s, B_PASS, "PASS", s->pass, s->passlen);
		return;
	case B_PASS:
		if (ok) {
			/* Latency of good logins only: failures are delayed
			 * on purpose by the backend. */
			e->latency_ms = 0.8 * e->latency_ms + 0.2 *
			    (double)(mr_clock_ms() - s->sent_at);
			sess_login_ok(s, p, n);
		} else
			sess_login_failed(s, p, n);
		sess_process(s);
		return;
	case B_REPLY:
		sess_relay_status(s, p, n);
		if (ok && s->multiline)
			s->bs = B_BODY;
		return;
	case B_STAT:
		s->stat_count = sess_stat_count(p, n);
		s->bs = B_QUIT;
		(void)pop3c_send(s->b, POP3C_NONE, NULL, TAG(B_QUIT), "QUIT");
		return;
	case B_QUIT:
		/* The seed: no message left stamps the mailbox empty now;
		 * anything else forgets.  Only once the backend confirmed the
		 * QUIT, and only if no notification came since the login
		 * (its STAT shows the mailbox as it was at the login). */
		if (s->uid != UTABLE_NONE) {
			struct utable_entry *u = utable_get(e->users, s->uid);

			u->empty_at = ok && s->stat_count == 0 &&
			    u->notes == s->notes_seen ? mr_clock_ms() : 0;
		}
		sess_relay_status(s, p, n);
		s->busy = false;
		sess_close(s);
		return;
	default:
		return;
	}
}

/* sess_backend_moved - body octets went to the client: a client that
 * does not read them pauses the backend. */
static void
sess_backend_moved(struct pop3c *c, void *arg, void *tag)
{
	struct esess *s = arg;

	(void)tag;
	if (net_conn_output_len(s->c) > POP3S_OUT_HIGH) {
		pop3c_reading(c, false);
		net_conn_watch_drain(s->c, POP3S_OUT_LOW);
	}
}

static void
sess_backend_done(struct pop3c *c, void *arg, void *tag)
{
	struct esess *s = arg;

	(void)c;
	if (UNTAG(tag) != B_REPLY)
		return;
	s->bs = B_READY;
	s->busy = false;
	sess_process(s);
}

static void
sess_backend_failed(struct pop3c *c, void *arg, const char *why)
{
	struct esess *s = arg;

	(void)c;
	if (s->bs == B_QUIT) {
		/* No reply to QUIT: whether the deletions were made is not
		 * known, so no +OK. */
		if (s->busy)
			sess_reply(s, "-ERR [SYS/TEMP] the mail server did not "
			    "confirm the QUIT");
		sess_backend_close(s);
		s->bs = B_NONE;
		sess_close(s);
		return;
	}
	sess_backend_fail(s, why);
}

static const struct pop3c_cbs sess_backend_cbs = {
	.status = sess_backend_status,
	.moved = sess_backend_moved,
	.done = sess_backend_done,
	.failed = sess_backend_failed,
};

/* sess_login_backend - USER (unless sent) and PASS to the backend. */
static void
sess_login_backend(struct esess *s)
{
	struct edge *e = s->e;

	s->busy = true;
	/* The mailbox is this session's while its login is under way: a
	 * second session's PASS meanwhile gets [IN-USE] (seed: lock flag). */
	if (s->uid != UTABLE_NONE && !s->holds_lock) {
		utable_get(e->users, s->uid)->lock = true;
		s->holds_lock = true;
	}
	if (s->b == NULL) {
		if (sess_backend_open(s) != 0)
			sess_backend_unavailable(s);
		return;	/* USER is queued; PASS follows its +OK */
	}
	if (s->user_sent)
		sess_backend_send(s, B_PASS, "PASS", s->pass,
		    s->passlen);
	else
		sess_backend_send(s, B_USER, "USER", s->user,
		    s->userlen);
}

/* ---------------------------------------------------------------- */
/* Client commands                                                   */
/* ---------------------------------------------------------------- */

static void
sess_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct esess *s = arg;

	(void)fd;
	(void)what;
	if (s->st == S_CLOSING)
		return;
	/* The seed's Session Timeout Event: end the locally answered
	 * session, unlock. */
	sess_reply(s, "-ERR [SYS/TEMP] session timed out");
	sess_close(s);
}

/* sess_pass - the seed's Authorization state, event PASS. */
static void
sess_pass(struct esess *s, const char *pw, size_t len)
{
	struct edge *e = s->e;
	struct utable_entry *u = NULL;
	uint64_t now = mr_clock_ms();

	e->n.checks++;
	if (s->opt_out)
		e->n.checks_opt_out++;
	if (s->uid != UTABLE_NONE)
		u = utable_get(e->users, s->uid);
	if (u != NULL && u->lock) {
		e->n.logins_refused++;
		sess_reply(s, "-ERR [IN-USE] Your mail box is locked by "
		    "another POP3 session");
		return;
	}
	memcpy(s->pass, pw, len);
	s->passlen = len;
	/* The cheap test first: most checks that are not attenuated need
	 * no HMAC here (the backend judges the password). */
	if (u != NULL && edge_attenuated(e, u, now) &&
	    utable_check_password(e->users, s->uid, pw, len) &&
	    !edge_fast_check(e, u, now)) {
		OPENSSL_cleanse(s->pass, sizeof(s->pass));
		u->terminate = true;
		u->lock = true;
		s->holds_lock = true;
		u->state = UT_TRANSACTION;
		u->checks++;
			e->n.checks_local++;
		s->st = S_LOCAL;
		s->timer = evtimer_new(e->base, sess_timer_cb, s);
		evtimer_add(s->timer, e->session_ctv);
		/* The backend, if USER opened it, is not needed. */
		sess_backend_close(s);
		s->bs = B_NONE;
		sess_reply(s, "+OK maildrop ready");
		mr_log_debug(EDGE_MOD, "event=login client=%s user=%s "
		    "answer=local", net_conn_peer(s->c),
		    mr_q(s->user, s->userlen));
		return;
	}
	sess_login_backend(s);
}

/* sess_auth_plain - RFC 4616 message (base64) to USER and PASS. */
static void
sess_auth_plain(struct esess *s, const char *b64, size_t len)
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
		s->e->n.logins_refused++;
		OPENSSL_cleanse(buf, sizeof(buf));
		sess_reply(s, "-ERR [AUTH] malformed PLAIN response");
		return;
	case POP3_PLAIN_IDENTITY:
		s->e->n.logins_refused++;
		OPENSSL_cleanse(buf, sizeof(buf));
		sess_reply(s, "-ERR [AUTH] unsupported or empty identity");
		return;
	case POP3_PLAIN_OK:
		break;
	}
	/* AUTH starts a login afresh, for the identity it names only. */
	sess_release_user(s);
	sess_backend_close(s);
	s->bs = B_NONE;
	s->user_sent = false;
	s->userlen = userl;
	memcpy(s->user, user, userl);
	s->user[s->userlen] = '\0';
	s->have_user = true;
	s->opt_out = edge_opted_out(s->e, s->user);
	if (!s->opt_out) {
		bool existed;

		(void)sess_take_user(s, &existed);
	}
	sess_pass(s, pw, pwl);
	OPENSSL_cleanse(buf, sizeof(buf));
}

/* sess_user - the seed's None and Idle states, event USER. */
static void
sess_user(struct esess *s, const char *name, size_t len)
{
	bool existed = false;

	/* USER starts a login afresh: whatever entry or backend an earlier
	 * attempt had is let go. */
	sess_release_user(s);
	sess_backend_close(s);
	s->bs = B_NONE;
	s->user_sent = false;
	memcpy(s->user, name, len);
	s->user[len] = '\0';
	s->userlen = len;
	s->have_user = true;
	s->passlen = 0;
	s->opt_out = edge_opted_out(s->e, s->user);
	if (s->opt_out || !sess_take_user(s, &existed) || !existed) {
		/* None: the entry is new (or none could be had); the backend
		 * answers USER. */
		s->busy = true;
		if (sess_backend_open(s) != 0)
			sess_backend_unavailable(s);
		return;
	}
	/* Idle: we answer. */
	sess_reply(s, "+OK");
}

/* sess_local_cmd - the seed's Transaction state, terminated. */
static void
sess_local_cmd(struct esess *s, const struct pop3_cmd *cmd)
{
	switch (cmd->verb) {
	case POP3_STAT:
		sess_reply(s, "+OK 0 0");
		break;
	case POP3_LIST:
		sess_reply(s, cmd->argc ? "-ERR no such message" :
		    "+OK 0 messages\r\n.");
		break;
	case POP3_UIDL:
		sess_reply(s, cmd->argc ? "-ERR no such message" : "+OK\r\n.");
		break;
	case POP3_RETR:
	case POP3_DELE:
	case POP3_TOP:
		sess_reply(s, "-ERR no such message");
		break;
	case POP3_NOOP:
	case POP3_RSET:
		sess_reply(s, "+OK");
		break;
	case POP3_QUIT:
		sess_reply(s, "+OK bye");
		sess_close(s);
		break;
	case POP3_CAPA:
		sess_capa(s);
		break;
	default:
		sess_reply(s, "-ERR command not valid in this state");
		break;
	}
}

/* sess_relay_cmd - the seed's Transaction state, not terminated. */
static void
sess_relay_cmd(struct esess *s, const struct pop3_cmd *cmd, const char *line,
    size_t len)
{
	switch (cmd->verb) {
	case POP3_QUIT:
		/* Held: STAT first, to learn whether the mailbox is empty
		 * (unless nothing is kept for the user: opted out, or no
		 * room in the table). */
		s->busy = true;
		s->bs = s->uid == UTABLE_NONE ? B_QUIT : B_STAT;
		(void)pop3c_send(s->b, POP3C_NONE, NULL, TAG(s->bs),
		    s->bs == B_QUIT ? "QUIT" : "STAT");
		return;
	case POP3_CAPA:
		sess_capa(s);
		return;
	case POP3_STAT:
	case POP3_LIST:
	case POP3_RETR:
	case POP3_DELE:
	case POP3_NOOP:
	case POP3_RSET:
	case POP3_TOP:
	case POP3_UIDL:
		break;
	default:
		sess_reply(s, "-ERR command not valid in this state");
		return;
	}
	s->multiline = pop3_multiline(cmd);
	s->busy = true;
	s->bs = B_REPLY;
	(void)pop3c_send(s->b, s->multiline ? POP3C_RAW : POP3C_NONE,
	    net_conn_output(s->c), TAG(B_REPLY), "%.*s", (int)len, line);
}

/* sess_auth_cmd - the Authorization state. */
static void
sess_auth_cmd(struct esess *s, const struct pop3_cmd *cmd)
{
	switch (cmd->verb) {
	case POP3_CAPA:
		sess_capa(s);
		return;
	case POP3_USER:
		sess_user(s, cmd->argv[0], cmd->argl[0]);
		return;
	case POP3_PASS:
		if (!s->have_user) {
			sess_reply(s, "-ERR USER first");
			return;
		}
		sess_pass(s, cmd->rest, cmd->restl);
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
	case POP3_APOP:
		sess_reply(s, "-ERR APOP is not supported here, use USER and "
		    "PASS or AUTH PLAIN");
		return;
	case POP3_QUIT:
		/* Authorization, QUIT: unlock, Idle (sess_close releases). */
		sess_reply(s, "+OK bye");
		sess_close(s);
		return;
	default:
		sess_reply(s, "-ERR command not valid in this state");
		return;
	}
}

/* sess_stls - RFC 2595: TLS before the login, on the plain listener. */
static void
sess_stls(struct esess *s)
{
	if (s->e->srv_ctx == NULL) {
		sess_reply(s, "-ERR STLS is not available");
		return;
	}
	if (net_conn_is_tls(s->c) || s->have_user) {
		sess_reply(s, "-ERR STLS only once, before USER");
		return;
	}
	pop3s_stls(s->ps, s->e->srv_ctx);
}

/* sess_process - handle the client's commands until one waits for the
 * backend or none is left. */
static void
sess_process(struct esess *s)
{
	pop3s_process(s->ps);
}

static bool
sess_ready(void *arg)
{
	const struct esess *s = arg;

	return !s->busy && s->st != S_CLOSING;
}

/* sess_line - the AUTH PLAIN response, the one line not a command. */
static bool
sess_line(void *arg, const char *p, size_t n)
{
	struct esess *s = arg;

	if (s->st != S_SASL)
		return false;
	s->st = S_AUTH;
	sess_auth_plain(s, p, n);
	return true;
}

static void
sess_bad(void *arg, enum pop3_parse pr, const char *why)
{
	struct esess *s = arg;

	if (s->st == S_LOCAL || s->st == S_RELAY) {
		sess_reply(s, pr == POP3_UNKNOWN ? "-ERR unknown command" :
		    "-ERR invalid arguments");
		return;
	}
	net_conn_sendf(s->c, "-ERR %s\r\n", why);
}

static void
sess_command(void *arg, const struct pop3_cmd *cmd, const char *line,
    size_t len)
{
	struct esess *s = arg;

	if (cmd->verb == POP3_STLS && s->st == S_AUTH) {
		sess_stls(s);
		return;
	}
	switch (s->st) {
	case S_AUTH:
		sess_auth_cmd(s, cmd);
		break;
	case S_LOCAL:
		sess_local_cmd(s, cmd);
		break;
	case S_RELAY:
		sess_relay_cmd(s, cmd, line, len);
		break;
	default:
		break;
	}
}

static void
sess_gone(void *arg)
{
	struct esess *s = arg;

	mr_log_debug(EDGE_MOD, "event=client-gone client=%s",
	    net_conn_peer(s->c));
	/* A client that goes without QUIT: the backend is dropped without
	 * QUIT too, so nothing it marked deleted is deleted (RFC 1939). */
	sess_free(s);
}

/* sess_drained - a relayed body paused on a slow client goes on. */
static bool
sess_drained(void *arg)
{
	struct esess *s = arg;

	if (s->b == NULL || s->bs != B_BODY)
		return false;
	pop3c_reading(s->b, true);
	return true;
}

static void
sess_greet(void *arg)
{
	/* No APOP timestamp: an attenuating proxy can neither check APOP
	 * nor pass it on (the digest binds the backend's own greeting). */
	sess_reply(arg, "+OK POP3 ready");
}

static const struct pop3s_ops sess_client_ops = {
	.greet = sess_greet,
	.ready = sess_ready,
	.line = sess_line,
	.command = sess_command,
	.bad = sess_bad,
	.drained = sess_drained,
	.gone = sess_gone,
};

/* ---------------------------------------------------------------- */
/* The proxy                                                         */
/* ---------------------------------------------------------------- */

static void
edge_accept_any(int fd, const struct sockaddr *peer, socklen_t peerlen,
    void *arg, bool implicit_tls)
{
	struct edge *e = arg;
	struct esess *s;

	if (e->n.sessions_active >= (uint64_t)e->cfg->pop3_proxy_max_sessions) {
		e->n.sessions_refused++;
		pop3s_refuse(fd);
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->e = e;
	s->uid = UTABLE_NONE;
	s->ps = pop3s_accept(e->base, fd, peer, peerlen,
	    (unsigned)e->cfg->pop3_proxy_idle_timeout, &sess_client_ops, s);
	if (s->ps == NULL) {
		free(s);
		return;
	}
	s->c = pop3s_conn(s->ps);
	s->next = e->sessions;
	if (s->next)
		s->next->prev = s;
	e->sessions = s;
	e->n.sessions++;
	e->n.sessions_active++;
	pop3s_start(s->ps, implicit_tls ? e->srv_ctx : NULL);
}

static void
edge_accept(int fd, const struct sockaddr *peer, socklen_t peerlen,
    void *arg)
{
	edge_accept_any(fd, peer, peerlen, arg, false);
}

static void
edge_accept_tls(int fd, const struct sockaddr *peer, socklen_t peerlen,
    void *arg)
{
	edge_accept_any(fd, peer, peerlen, arg, true);
}

/* edge_gc - entries past their expiry leave the table (P7). */
static void
edge_gc(evutil_socket_t fd, short what, void *arg)
{
	struct edge *e = arg;
	struct utable_entry *u;
	uint64_t now = mr_clock_ms(), exp;
	uint32_t id;
	struct timeval tv;

	(void)fd;
	(void)what;
	while ((id = utable_next(e->users, &exp)) != UTABLE_NONE &&
	    exp <= now) {
		u = utable_get(e->users, id);
		if (u->refs > 0) {
			/* In use: look again when its session is over. */
			utable_schedule(e->users, id, now +
			    (uint64_t)e->cfg->pop3_proxy_gc_interval);
			continue;
		}
		utable_del(e->users, id);
	}
	e->n.users = utable_count(e->users);
	tv.tv_sec = e->cfg->pop3_proxy_gc_interval / 1000;
	tv.tv_usec = (e->cfg->pop3_proxy_gc_interval % 1000) * 1000;
	evtimer_add(e->gc_ev, &tv);
}

static void
edge_stats(evutil_socket_t fd, short what, void *arg)
{
	struct edge *e = arg;
	struct timeval tv;

	(void)fd;
	(void)what;
	edge_log_counters(e);
	tv.tv_sec = e->cfg->pop3_proxy_stats_interval / 1000;
	tv.tv_usec = (e->cfg->pop3_proxy_stats_interval % 1000) * 1000;
	evtimer_add(e->stats_ev, &tv);
}

/* edge_opt_out_load - the opt-out names (comma-separated within an
 * entry too), sorted for bsearch. */
static void
edge_opt_out_load(struct edge *e, const struct conf_list *l)
{
	const char *p, *end;
	size_t i;

	for (i = 0; i < l->n; i++) {
		for (p = l->v[i]; *p; p = *end ? end + 1 : end) {
			while (*p == ' ')
				p++;
			end = p + strcspn(p, ",");
			if (end == p)
				continue;
			e->opt_out = xreallocarray(e->opt_out, e->nopt_out + 1,
			    sizeof(*e->opt_out));
			e->opt_out[e->nopt_out] = xstrndup(p,
			    (size_t)(end - p));
			e->nopt_out++;
		}
	}
	if (e->nopt_out > 1)
		qsort(e->opt_out, e->nopt_out, sizeof(*e->opt_out),
		    edge_name_cmp);
}

/* edge_backend_host - the host part of "host:port" or "[v6]:port", for
 * SNI and the certificate's name. */
static void
edge_backend_host(const char *text, char *out, size_t size)
{
	const char *end;
	size_t n;

	if (*text == '[') {
		text++;
		end = strchr(text, ']');
	} else {
		end = strrchr(text, ':');
	}
	n = end ? (size_t)(end - text) : strlen(text);
	if (n >= size)
		n = size - 1;
	memcpy(out, text, n);
	out[n] = '\0';
}

struct edge *
edge_new(struct event_base *base, const struct mr_config *cfg,
    struct mr_buf *err)
{
	struct edge *e;

	if (*cfg->pop3_proxy_listen == '\0') {
		mr_buf_puts(err, "no listening address: give --listen "
		    "ADDR:PORT or pop3_proxy.listen");
		return NULL;
	}
	if (*cfg->pop3_proxy_backend == '\0') {
		mr_buf_puts(err, "no backend: give --backend HOST:PORT or "
		    "pop3_proxy.backend");
		return NULL;
	}
	if (*cfg->pop3_proxy_listen_tls != '\0' &&
	    (*cfg->pop3_proxy_tls_cert == '\0' ||
	    *cfg->pop3_proxy_tls_key == '\0')) {
		mr_buf_puts(err, "pop3_proxy.listen_tls needs "
		    "pop3_proxy.tls_cert and pop3_proxy.tls_key");
		return NULL;
	}
	e = xcalloc(1, sizeof(*e));
	e->base = base;
	e->cfg = cfg;
	if (net_addr_parse(cfg->pop3_proxy_backend,
	    cfg->pop3_proxy_backend_tls == CONF_BTLS_TLS ? 995 : 110, 0,
	    &e->backend, &e->backend_len, err) != 0)
		goto fail;
	edge_backend_host(cfg->pop3_proxy_backend, e->backend_host,
	    sizeof(e->backend_host));
	edge_opt_out_load(e, &cfg->pop3_proxy_opt_out);
	e->epoch = mr_clock_ms();
	if (*cfg->pop3_proxy_tls_cert != '\0' &&
	    (e->srv_ctx = net_tls_server_ctx(cfg->pop3_proxy_tls_cert,
	    cfg->pop3_proxy_tls_key, err)) == NULL)
		goto fail;
	if (cfg->pop3_proxy_backend_tls != CONF_BTLS_NONE &&
	    (e->cli_ctx = net_tls_client_ctx(cfg->pop3_proxy_backend_tls_verify,
	    cfg->pop3_proxy_backend_ca_file, err)) == NULL)
		goto fail;
	e->users = utable_new((uint32_t)cfg->pop3_proxy_max_users);
	/* Every local session has the same timer: a common timeout is
	 * added and removed in O(1), not in the loop's heap. */
	e->session_tv.tv_sec = cfg->pop3_proxy_session_timeout / 1000;
	e->session_tv.tv_usec = (cfg->pop3_proxy_session_timeout % 1000) *
	    1000;
	e->session_ctv = event_base_init_common_timeout(base, &e->session_tv);
	if (e->session_ctv == NULL)
		e->session_ctv = &e->session_tv;
	e->gc_ev = evtimer_new(base, edge_gc, e);
	e->stats_ev = evtimer_new(base, edge_stats, e);
	return e;
fail:
	if (e->srv_ctx)
		SSL_CTX_free(e->srv_ctx);
	if (e->cli_ctx)
		SSL_CTX_free(e->cli_ctx);
	for (size_t i = 0; i < e->nopt_out; i++)
		free(e->opt_out[i]);
	free(e->opt_out);
	free(e);
	return NULL;
}

int
edge_start(struct edge *e, struct mr_buf *err)
{
	struct timeval tv;

	e->lis = net_listen(e->base, e->cfg->pop3_proxy_listen, 110, 1024,
	    edge_accept, e, err);
	if (e->lis == NULL)
		return -1;
	if (*e->cfg->pop3_proxy_listen_tls != '\0') {
		e->lis_tls = net_listen(e->base, e->cfg->pop3_proxy_listen_tls,
		    995, 1024, edge_accept_tls, e, err);
		if (e->lis_tls == NULL)
			return -1;
	}
	tv.tv_sec = e->cfg->pop3_proxy_gc_interval / 1000;
	tv.tv_usec = (e->cfg->pop3_proxy_gc_interval % 1000) * 1000;
	evtimer_add(e->gc_ev, &tv);
	tv.tv_sec = e->cfg->pop3_proxy_stats_interval / 1000;
	tv.tv_usec = (e->cfg->pop3_proxy_stats_interval % 1000) * 1000;
	evtimer_add(e->stats_ev, &tv);
	return 0;
}

const char *
edge_listen_addr(const struct edge *e)
{
	return e->lis ? net_listener_addr(e->lis) : "";
}

const char *
edge_listen_tls_addr(const struct edge *e)
{
	return e->lis_tls ? net_listener_addr(e->lis_tls) : "";
}

void
edge_stop(struct edge *e)
{
	net_listener_free(&e->lis);
	net_listener_free(&e->lis_tls);
	while (e->sessions != NULL)
		sess_free(e->sessions);
	evtimer_del(e->gc_ev);
	evtimer_del(e->stats_ev);
}

void
edge_free(struct edge **ep)
{
	struct edge *e = *ep;

	if (e == NULL)
		return;
	edge_stop(e);
	event_free(e->gc_ev);
	event_free(e->stats_ev);
	utable_free(&e->users);
	for (size_t i = 0; i < e->nopt_out; i++)
		free(e->opt_out[i]);
	free(e->opt_out);
	if (e->srv_ctx)
		SSL_CTX_free(e->srv_ctx);
	if (e->cli_ctx)
		SSL_CTX_free(e->cli_ctx);
	free(e);
	*ep = NULL;
}

void
edge_notify(struct edge *e, const char *mailbox, size_t len)
{
	uint32_t id;

	e->n.notifications++;
	if (e->cfg->pop3_proxy_rule == CONF_ATT_TIME)
		return;
	id = utable_find(e->users, mailbox, len);
	if (id == UTABLE_NONE)
		return;	/* not attenuated: its next check goes through */
	/* Demand rule: the next check goes to the backend (and a session
	 * now open will not stamp the mailbox empty at its QUIT). */
	utable_get(e->users, id)->empty_at = 0;
	utable_get(e->users, id)->notes++;
	mr_log_debug(EDGE_MOD, "event=notify user=%s", mr_q(mailbox, len));
}

void
edge_notify_refused(struct edge *e)
{
	e->n.notifications_refused++;
}

const struct edge_counters *
edge_counters(struct edge *e)
{
	e->n.users = utable_count(e->users);
	return &e->n;
}

void
edge_metrics(struct edge *e, struct evbuffer *out)
{
	static const struct {
		const char	*name;
		const char	*type;
		const char	*help;
		size_t		 off;
	} m[] = {
#define C(f, t, h) { "mailroom_pop3_proxy_" #f, t, h, \
	offsetof(struct edge_counters, f) }
		C(sessions, "counter", "Client connections accepted."),
		C(sessions_refused, "counter",
		    "Client connections refused over max_sessions."),
		C(checks, "counter", "Mailbox checks (logins) seen."),
		C(checks_local, "counter",
		    "Checks answered locally: mailbox known empty."),
		C(checks_passed, "counter",
		    "Checks passed to the backend."),
		C(checks_fast_passed, "counter",
		    "Fast checks let through (irregular, a person)."),
		C(checks_automated, "counter",
		    "Fast checks kept local (regular, an automated client)."),
		C(checks_opt_out, "counter",
		    "Checks of opted-out users (always passed)."),
		C(backend_sessions, "counter",
		    "Backend connections opened."),
		C(backend_errors, "counter",
		    "Backend connections that failed or broke."),
		C(logins_refused, "counter", "Logins answered -ERR."),
		C(notifications, "counter",
		    "New-mail notifications accepted."),
		C(notifications_refused, "counter",
		    "Notifications refused: malformed or unauthorized."),
		C(table_evictions, "counter",
		    "User table entries evicted because it was full."),
		C(table_full, "counter",
		    "Logins that found the user table full of held entries."),
		C(sessions_active, "gauge", "Client connections now."),
		C(users, "gauge", "Entries in the user table."),
#undef C
	};
	const struct edge_counters *n = edge_counters(e);
	size_t i;

	for (i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s "
		    "%" PRIu64 "\n", m[i].name, m[i].help, m[i].name,
		    m[i].type, m[i].name,
		    *(const uint64_t *)((const char *)n + m[i].off));
	evbuffer_add_printf(out, "# HELP mailroom_pop3_proxy_user_table_bytes "
	    "Memory held by the user table.\n# TYPE "
	    "mailroom_pop3_proxy_user_table_bytes gauge\n"
	    "mailroom_pop3_proxy_user_table_bytes %zu\n",
	    utable_bytes(e->users));
}

void
edge_log_counters(struct edge *e)
{
	const struct edge_counters *n = edge_counters(e);

	mr_log_info(EDGE_MOD, "event=counters checks=%" PRIu64 " local=%"
	    PRIu64 " passed=%" PRIu64 " backend_sessions=%" PRIu64
	    " notifications=%" PRIu64 " notifications_refused=%" PRIu64
	    " logins_refused=%" PRIu64 " sessions_active=%" PRIu64
	    " users=%" PRIu64, n->checks, n->checks_local, n->checks_passed,
	    n->backend_sessions, n->notifications, n->notifications_refused,
	    n->logins_refused, n->sessions_active, n->users);
}
