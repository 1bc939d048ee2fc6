/*
 * pop3c.c - a POP3 client connection to a backend server (see pop3c.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>

#include "core/xalloc.h"
#include "net/conn.h"
#include "pop3/pop3c.h"

/* RFC 2449 4: a status line is at most 512 octets with its CRLF; body
 * lines of listings are short, message lines may not be (RAW only). */
#define POP3C_STATUS_MAX	510
#define POP3C_LINE_MAX		1000
#define POP3C_QUEUE		64
#define POP3C_CMD_MAX		510

enum pop3c_step {
	C_CONNECTING,
	C_TLS,		/* handshake: implicit, or after STLS */
	C_GREETING,
	C_STLS,		/* STLS sent */
	C_READY,	/* commands go */
	C_DEAD,		/* failed was called */
};

struct pop3c_cmd {
	enum pop3c_body	 body;
	struct evbuffer	*raw_to;
	void		*tag;
	bool		 sent;
	size_t		 len;
	char		 text[POP3C_CMD_MAX + 3];
};

struct pop3c {
	struct net_conn			*conn;
	const struct pop3c_cbs		*cbs;
	void				*arg;
	enum pop3c_step			 step;
	int				 tls;
	SSL_CTX				*ctx;
	char				 servername[256];
	bool				 verify;
	bool				 pipelining;
	bool				 in_body;	/* reading the head's body */
	bool				 body_start;	/* RAW: at a line start */
	bool				 have_client;
	bool				 xclient_ok;	/* greeting said [XCLIENT] */
	bool				 xclient_due;	/* its reply is next */
	unsigned			 timeout_ms;
	struct sockaddr_storage		 client;
	struct pop3c_cmd		 q[POP3C_QUEUE];
	size_t				 head, n;	/* ring */
	bool				*alive;		/* cleared by free */
};

static const struct net_conn_cbs pop3c_conn_cbs;
static void pop3c_input(struct pop3c *c);

/*
 * POP3C_CALLBACK - run a callback that may free c; then `gone` is true
 * when it did (c must not be touched).  Nested calls each have their own
 * flag, and a free seen by an inner one is passed to the outer ones.
 */
#define POP3C_CALLBACK(c, gone, call) do {				\
	bool alive_ = true, *outer_ = (c)->alive;			\
									\
	(c)->alive = &alive_;						\
	call;								\
	if (!alive_) {							\
		if (outer_ != NULL)					\
			*outer_ = false;				\
		(gone) = true;						\
	} else {							\
		(c)->alive = outer_;					\
		(gone) = false;						\
	}								\
} while (0)

bool
pop3c_is_ok(const char *p, size_t n)
{
	return n >= 3 && memcmp(p, "+OK", 3) == 0 && (n == 3 || p[3] == ' ');
}

/* pop3c_fail - once: the owner hears of it and frees us, or not yet. */
static void
pop3c_fail(struct pop3c *c, const char *why)
{
	bool gone;

	if (c->step == C_DEAD)
		return;
	c->step = C_DEAD;
	POP3C_CALLBACK(c, gone, c->cbs->failed(c, c->arg, why));
	(void)gone;
}

/* pop3c_wait - bound the server's silence while a reply is due. */
static void
pop3c_wait(struct pop3c *c)
{
	net_conn_read_timeout(c->conn, c->n > 0 || c->step != C_READY ?
	    c->timeout_ms : 0);
}

/* pop3c_flush - send what may go now: the next command, or all of them
 * when pipelining. */
static void
pop3c_flush(struct pop3c *c)
{
	size_t i;

	if (c->step != C_READY)
		return;
	for (i = 0; i < c->n; i++) {
		struct pop3c_cmd *q = &c->q[(c->head + i) % POP3C_QUEUE];

		if (q->sent) {
			if (!c->pipelining)
				break;
			continue;
		}
		if (i > 0 && !c->pipelining)
			break;
		net_conn_send(c->conn, q->text, q->len);
		OPENSSL_cleanse(q->text, sizeof(q->text));
		q->sent = true;
	}
	pop3c_wait(c);
}

static void
pop3c_xclient(struct pop3c *c)
{
	char host[INET6_ADDRSTRLEN] = "";
	unsigned port = 0;

	if (c->client.ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)&c->client;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		port = ntohs(s4->sin_port);
	} else {
		const struct sockaddr_in6 *s6 = (const void *)&c->client;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
	}
	net_conn_sendf(c->conn, "XCLIENT ADDR=%s PORT=%u\r\n", host, port);
	c->xclient_due = true;
}

/*
 * pop3c_ready - greeted (and TLS done): XCLIENT when the server takes it,
 * hand over, then send what was queued.  The first command goes right
 * behind XCLIENT, not a round trip later: only a server whose greeting
 * says [XCLIENT] (Dovecot) gets it, and it reads its commands in order.
 */
static void
pop3c_ready(struct pop3c *c, const char *greeting, size_t len)
{
	bool gone = false;

	if (c->xclient_ok)
		pop3c_xclient(c);
	c->step = C_READY;
	if (c->cbs->ready != NULL)
		POP3C_CALLBACK(c, gone, c->cbs->ready(c, c->arg, greeting,
		    len));
	if (!gone)
		pop3c_flush(c);
}

/* pop3c_greeting - the server's first line (after TLS when implicit). */
static void
pop3c_greeting(struct pop3c *c, const char *p, size_t n)
{
	if (!pop3c_is_ok(p, n)) {
		pop3c_fail(c, "no +OK greeting");
		return;
	}
	/* Dovecot marks its greeting to a trusted proxy with [XCLIENT]
	 * (CAPA does not list it); elsewhere the verb would be unknown. */
	c->xclient_ok = c->have_client && memmem(p, n, "[XCLIENT]", 9) != NULL;
	if (c->tls == POP3C_TLS_STLS && !net_conn_is_tls(c->conn)) {
		net_conn_sendf(c->conn, "STLS\r\n");
		c->step = C_STLS;
		return;
	}
	pop3c_ready(c, p, n);
}

/*
 * pop3c_raw_body - move the head's body to raw_to up to and with its
 * terminating "."; true when complete.  The last four octets stay until
 * more come, so a terminator split across reads is still seen.
 */
static bool
pop3c_raw_body(struct pop3c *c, struct evbuffer *to)
{
	struct evbuffer *in = net_conn_input(c->conn);
	struct evbuffer_ptr pos;
	size_t len = evbuffer_get_length(in);
	unsigned char head[3];

	if (c->body_start && len >= 3) {
		evbuffer_copyout(in, head, 3);
		if (memcmp(head, ".\r\n", 3) == 0) {
			evbuffer_remove_buffer(in, to, 3);
			return true;
		}
	}
	pos = evbuffer_search(in, "\r\n.\r\n", 5, NULL);
	if (pos.pos >= 0) {
		evbuffer_remove_buffer(in, to, (size_t)pos.pos + 5);
		return true;
	}
	if (len > 4) {
		evbuffer_remove_buffer(in, to, len - 4);
		c->body_start = false;
	}
	return false;
}

/* pop3c_done - the head's reply is complete: the next one. */
static bool
pop3c_done(struct pop3c *c)
{
	struct pop3c_cmd *q = &c->q[c->head];
	void *tag = q->tag;
	bool gone;

	c->head = (c->head + 1) % POP3C_QUEUE;
	c->n--;
	c->in_body = false;
	POP3C_CALLBACK(c, gone, c->cbs->done(c, c->arg, tag));
	if (gone)
		return false;
	pop3c_flush(c);
	return c->step == C_READY;
}

/* pop3c_body - the head's body, as far as it has come; false when the
 * caller must stop (waiting, or we are gone). */
static bool
pop3c_body(struct pop3c *c)
{
	struct pop3c_cmd *q = &c->q[c->head];
	const char *p;
	size_t n;
	bool gone, end;

	if (q->body == POP3C_RAW) {
		end = pop3c_raw_body(c, q->raw_to);
		POP3C_CALLBACK(c, gone, c->cbs->moved(c, c->arg, q->tag));
		if (gone)
			return false;
		return end ? pop3c_done(c) : false;
	}
	for (;;) {
		switch (net_conn_line(c->conn, POP3C_LINE_MAX, &p, &n)) {
		case NET_LINE_AGAIN:
			return false;
		case NET_LINE_TOO_LONG:
			pop3c_fail(c, "listing line too long");
			return false;
		case NET_LINE_OK:
			break;
		}
		if (n == 1 && p[0] == '.') {
			net_conn_line_done(c->conn);
			return pop3c_done(c);
		}
		if (n > 0 && p[0] == '.') {
			p++;
			n--;
		}
		POP3C_CALLBACK(c, gone, c->cbs->line(c, c->arg, q->tag, p,
		    n));
		if (gone)
			return false;
		net_conn_line_done(c->conn);
		if (c->step == C_DEAD)
			return false;
	}
}

/* pop3c_status - a status line while a command of ours is at the head. */
static bool
pop3c_status(struct pop3c *c, const char *p, size_t n)
{
	struct pop3c_cmd *q = &c->q[c->head];
	bool ok = pop3c_is_ok(p, n), gone;

	POP3C_CALLBACK(c, gone, c->cbs->status(c, c->arg, q->tag, ok, p,
	    n));
	if (gone || c->step == C_DEAD)
		return false;
	if (ok && q->body != POP3C_NONE) {
		c->in_body = true;
		c->body_start = true;
		return true;
	}
	return pop3c_done(c);
}

static void
pop3c_input_loop(struct pop3c *c, const bool *alive)
{
	char line[POP3C_STATUS_MAX + 1];
	const char *p;
	size_t n;

	while (*alive && c->step != C_DEAD) {
		if (c->step == C_CONNECTING || c->step == C_TLS)
			return;
		if (c->in_body) {
			if (!pop3c_body(c))
				return;
			continue;
		}
		switch (net_conn_line(c->conn, POP3C_STATUS_MAX, &p, &n)) {
		case NET_LINE_AGAIN:
			return;
		case NET_LINE_TOO_LONG:
			pop3c_fail(c, "reply line too long");
			return;
		case NET_LINE_OK:
			break;
		}
		/* A copy: the callbacks may free us with the input. */
		memcpy(line, p, n);
		line[n] = '\0';
		net_conn_line_done(c->conn);
		switch (c->step) {
		case C_GREETING:
			pop3c_greeting(c, line, n);
			break;
		case C_STLS:
			if (!pop3c_is_ok(line, n)) {
				pop3c_fail(c, "the server refused STLS");
				return;
			}
			if (net_conn_starttls(c->conn, c->ctx, c->servername,
			    c->verify) != 0) {
				pop3c_fail(c, "data after the STLS reply");
				return;
			}
			c->step = C_TLS;
			return;
		case C_READY:
			if (c->xclient_due) {
				/* Refused or not: at worst the server sees our
				 * address. */
				c->xclient_due = false;
				break;
			}
			if (c->n == 0 || !c->q[c->head].sent) {
				pop3c_fail(c, "a reply nobody asked for");
				return;
			}
			if (!pop3c_status(c, line, n))
				return;
			break;
		default:
			return;
		}
	}
}

/* pop3c_input - act on what the server sent, as far as it goes; c may be
 * gone afterwards (the callers' own flags say so). */
static void
pop3c_input(struct pop3c *c)
{
	bool gone;

	POP3C_CALLBACK(c, gone, pop3c_input_loop(c, c->alive));
	(void)gone;
}

static void
pop3c_connected(struct net_conn *nc, void *arg)
{
	struct pop3c *c = arg;

	(void)nc;
	if (c->step != C_CONNECTING)
		return;
	if (c->tls == POP3C_TLS_IMPLICIT) {
		if (net_conn_starttls(c->conn, c->ctx, c->servername,
		    c->verify) != 0) {
			pop3c_fail(c, "cannot start TLS");
			return;
		}
		c->step = C_TLS;
		return;
	}
	c->step = C_GREETING;
	pop3c_input(c);
}

static void
pop3c_tls_done(struct net_conn *nc, void *arg)
{
	struct pop3c *c = arg;

	(void)nc;
	if (c->tls == POP3C_TLS_IMPLICIT) {
		c->step = C_GREETING;
		pop3c_input(c);
		return;
	}
	/* After STLS the session goes on without a new greeting. */
	pop3c_ready(c, "", 0);
}

static void
pop3c_readable(struct net_conn *nc, void *arg)
{
	struct pop3c *c = arg;

	(void)nc;
	/* On loopback the greeting may arrive before the connect event. */
	if (c->step == C_CONNECTING && c->tls != POP3C_TLS_IMPLICIT)
		c->step = C_GREETING;
	pop3c_input(c);
}

static void
pop3c_conn_failed(struct net_conn *nc, void *arg, int err, const char *what)
{
	struct pop3c *c = arg;
	bool gone;

	(void)nc;
	(void)err;
	/* What came before the end is still the server's answer. */
	if (net_conn_input_len(c->conn) > 0 && c->step != C_DEAD) {
		POP3C_CALLBACK(c, gone, pop3c_input(c));
		if (gone)
			return;
	}
	pop3c_fail(c, what);
}

static const struct net_conn_cbs pop3c_conn_cbs = {
	.connected = pop3c_connected,
	.readable = pop3c_readable,
	.tls_done = pop3c_tls_done,
	.failed = pop3c_conn_failed,
};

struct pop3c *
pop3c_open(struct event_base *base, const struct pop3c_params *p,
    const struct pop3c_cbs *cbs, void *arg, const char **why_r)
{
	struct pop3c *c = xcalloc(1, sizeof(*c));
	int err = 0;

	c->cbs = cbs;
	c->arg = arg;
	c->tls = p->tls;
	c->ctx = p->ctx;
	c->verify = p->verify;
	c->timeout_ms = p->timeout_ms;
	snprintf(c->servername, sizeof(c->servername), "%s",
	    p->servername ? p->servername : "");
	if (p->client != NULL && (p->client->sa_family == AF_INET ||
	    p->client->sa_family == AF_INET6)) {
		memcpy(&c->client, p->client, p->client->sa_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
		c->have_client = true;
	}
	c->step = C_CONNECTING;
	c->conn = net_conn_connect(base, p->addr, p->addrlen, p->timeout_ms,
	    &pop3c_conn_cbs, c, &err);
	if (c->conn == NULL) {
		*why_r = "cannot create a socket";
		free(c);
		return NULL;
	}
	net_conn_read_timeout(c->conn, p->timeout_ms);
	return c;
}

void
pop3c_free(struct pop3c **cp)
{
	struct pop3c *c = *cp;
	size_t i;

	if (c == NULL)
		return;
	*cp = NULL;
	if (c->alive != NULL)
		*c->alive = false;
	net_conn_free(&c->conn);
	for (i = 0; i < POP3C_QUEUE; i++)
		OPENSSL_cleanse(c->q[i].text, sizeof(c->q[i].text));
	free(c);
}

int
pop3c_send(struct pop3c *c, enum pop3c_body body, struct evbuffer *raw_to,
    void *tag, const char *fmt, ...)
{
	struct pop3c_cmd *q;
	va_list ap;
	int n;

	if (c->n == POP3C_QUEUE || c->step == C_DEAD)
		return -1;
	q = &c->q[(c->head + c->n) % POP3C_QUEUE];
	va_start(ap, fmt);
	n = vsnprintf(q->text, POP3C_CMD_MAX + 1, fmt, ap);
	va_end(ap);
	if (n < 0 || n > POP3C_CMD_MAX || memchr(q->text, '\r', (size_t)n) ||
	    memchr(q->text, '\n', (size_t)n)) {
		OPENSSL_cleanse(q->text, sizeof(q->text));
		return -1;
	}
	memcpy(q->text + n, "\r\n", 3);
	q->len = (size_t)n + 2;
	q->body = body;
	q->raw_to = raw_to;
	q->tag = tag;
	q->sent = false;
	c->n++;
	pop3c_flush(c);
	return 0;
}

void
pop3c_pipelining(struct pop3c *c, bool on)
{
	c->pipelining = on;
	pop3c_flush(c);
}

void
pop3c_reading(struct pop3c *c, bool on)
{
	if (c->step == C_DEAD)
		return;
	net_conn_reading(c->conn, on);
	/* Restarted: what already waits in our buffer is taken now. */
	if (on && net_conn_input_len(c->conn) > 0)
		pop3c_input(c);
}

size_t
pop3c_pending(const struct pop3c *c)
{
	return c->n;
}
