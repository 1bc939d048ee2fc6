/*
 * notify.c - the NOTIFY line protocol and the HTTP endpoint (see notify.h).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "core/mr_log.h"
#include "core/mr_sockaddr.h"
#include "core/xalloc.h"
#include "net/cidr.h"
#include "net/conn.h"
#include "net/http.h"
#include "net/listen.h"
#include "pop3edge/edge.h"
#include "pop3edge/notify.h"
#include "pop3edge/push.h"

#define NOTIFY_MOD		"pop3-proxy"
#define NOTIFY_LINE_MAX		510
#define NOTIFY_MAX_CONNS	256
#define NOTIFY_IDLE_MS		60000
#define NOTIFY_MAX_FAILURES	3
#define NOTIFY_BODY_MAX		65536

struct nconn {
	struct edge_notify	*n;
	struct net_conn		*c;
	struct nconn		*prev, *next;
	unsigned		 failures;
	bool			 closing;
};

struct edge_notify {
	struct event_base	*base;
	struct edge		*e;
	const struct mr_config	*cfg;
	struct net_listener	*lis;
	struct evhttp		*http;
	struct nconn		*conns;
	unsigned		 nconns;
	struct net_cidr		*allow;
	size_t			 nallow;
	char			 http_addr[64];
};

/* notify_peer_ok - may this address notify at all? */
static bool
notify_peer_ok(struct edge_notify *n, const struct sockaddr *sa)
{
	if (!net_cidr_match(n->allow, n->nallow, sa))
		return false;
	return *n->cfg->pop3_proxy_notify_secret != '\0' ||
	    net_is_loopback(sa);
}

static bool
notify_secret_ok(struct edge_notify *n, const char *s, size_t len)
{
	const char *want = n->cfg->pop3_proxy_notify_secret;
	size_t wl = strlen(want);

	if (wl == 0)
		return len == 0;
	return len == wl && CRYPTO_memcmp(s, want, wl) == 0;
}

/* ---------------------------------------------------------------- */
/* The line protocol                                                 */
/* ---------------------------------------------------------------- */

static void
nconn_free(struct nconn *k)
{
	struct edge_notify *n = k->n;

	if (k->prev)
		k->prev->next = k->next;
	else
		n->conns = k->next;
	if (k->next)
		k->next->prev = k->prev;
	n->nconns--;
	net_conn_free(&k->c);
	free(k);
}

static void
nconn_close(struct nconn *k)
{
	k->closing = true;
	net_conn_reading(k->c, false);
	net_conn_watch_drain(k->c, 0);
}

static void
nconn_reply(struct nconn *k, const char *text)
{
	evbuffer_add_printf(net_conn_output(k->c), "%s\r\n", text);
}

/* nconn_line - "NOTIFY mailbox [secret]" or "QUIT". */
static void
nconn_line(struct nconn *k, const char *p, size_t len)
{
	struct edge_notify *n = k->n;
	const char *name, *sp, *secret = "";
	size_t nlen, slen = 0, i;

	if (len == 4 && strncasecmp(p, "QUIT", 4) == 0) {
		nconn_reply(k, "+OK bye");
		nconn_close(k);
		return;
	}
	if (len < 8 || strncasecmp(p, "NOTIFY ", 7) != 0) {
		edge_notify_refused(n->e);
		nconn_reply(k, "-ERR expected NOTIFY <mailbox>");
		goto failed;
	}
	name = p + 7;
	sp = memchr(name, ' ', len - 7);
	nlen = sp ? (size_t)(sp - name) : len - 7;
	if (sp != NULL) {
		secret = sp + 1;
		slen = len - 7 - nlen - 1;
	}
	for (i = 0; i < nlen; i++)
		if ((unsigned char)name[i] < 0x21 || name[i] == 0x7f)
			break;
	if (nlen == 0 || nlen > PUSH_USER_MAX || i < nlen) {
		edge_notify_refused(n->e);
		nconn_reply(k, "-ERR bad mailbox name");
		goto failed;
	}
	if (!notify_secret_ok(n, secret, slen)) {
		edge_notify_refused(n->e);
		mr_log_warn(NOTIFY_MOD, "event=notify-refused peer=%s "
		    "why=secret", net_conn_peer(k->c));
		nconn_reply(k, "-ERR not authorized");
		goto failed;
	}
	edge_notify(n->e, name, nlen);
	nconn_reply(k, "+OK");
	return;
failed:
	if (++k->failures >= NOTIFY_MAX_FAILURES)
		nconn_close(k);
}

static void
nconn_readable(struct net_conn *c, void *arg)
{
	struct nconn *k = arg;
	const char *p;
	size_t len;

	while (!k->closing) {
		switch (net_conn_line(c, NOTIFY_LINE_MAX, &p, &len)) {
		case NET_LINE_AGAIN:
			return;
		case NET_LINE_TOO_LONG:
			edge_notify_refused(k->n->e);
			nconn_reply(k, "-ERR line too long");
			nconn_close(k);
			return;
		case NET_LINE_OK:
			nconn_line(k, p, len);
			net_conn_line_done(c);
			break;
		}
	}
}

static void
nconn_failed(struct net_conn *c, void *arg, int err, const char *what)
{
	(void)c;
	(void)err;
	(void)what;
	nconn_free(arg);
}

static void
nconn_drained(struct net_conn *c, void *arg)
{
	struct nconn *k = arg;

	(void)c;
	if (k->closing)
		nconn_free(k);
}

static const struct net_conn_cbs nconn_cbs = {
	.readable = nconn_readable,
	.failed = nconn_failed,
	.drained = nconn_drained,
};

static void
notify_accept(int fd, const struct sockaddr *peer, socklen_t peerlen,
    void *arg)
{
	static const char no[] = "-ERR not allowed\r\n";
	static const char busy[] = "-ERR too many connections\r\n";
	struct edge_notify *n = arg;
	struct nconn *k;
	char addr[64];
	ssize_t w;

	if (!notify_peer_ok(n, peer) || n->nconns >= NOTIFY_MAX_CONNS) {
		edge_notify_refused(n->e);
		mr_log_warn(NOTIFY_MOD, "event=notify-refused peer=%s why=%s",
		    mr_sockaddr_format(peer, addr, sizeof(addr)),
		    n->nconns >= NOTIFY_MAX_CONNS ? "busy" : "address");
		w = n->nconns >= NOTIFY_MAX_CONNS ?
		    write(fd, busy, sizeof(busy) - 1) :
		    write(fd, no, sizeof(no) - 1);
		(void)w;
		close(fd);
		return;
	}
	k = xcalloc(1, sizeof(*k));
	k->n = n;
	k->c = net_conn_accept(n->base, fd, peer, peerlen, &nconn_cbs, k);
	if (k->c == NULL) {
		free(k);
		return;
	}
	net_conn_read_timeout(k->c, NOTIFY_IDLE_MS);
	k->next = n->conns;
	if (k->next)
		k->next->prev = k;
	n->conns = k;
	n->nconns++;
	nconn_reply(k, "+OK mailroom notify ready");
}

/* ---------------------------------------------------------------- */
/* HTTP                                                              */
/* ---------------------------------------------------------------- */

/* http_peer - the request's peer as a socket address. */
static bool
http_peer(struct evhttp_request *req, struct sockaddr_storage *ss)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	const struct sockaddr *sa;

	if (conn == NULL)
		return false;
	sa = evhttp_connection_get_addr(conn);
	if (sa == NULL || (sa->sa_family != AF_INET &&
	    sa->sa_family != AF_INET6))
		return false;
	memcpy(ss, sa, sa->sa_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
	return true;
}

/* http_auth_ok - with a secret: "Authorization: Basic b64(any:secret)". */
static bool
http_auth_ok(struct edge_notify *n, struct evhttp_request *req)
{
	const char *h, *colon;
	unsigned char dec[256];
	size_t hl;
	int dl;
	bool ok;

	if (*n->cfg->pop3_proxy_notify_secret == '\0')
		return true;
	h = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	if (h == NULL || strncasecmp(h, "Basic ", 6) != 0)
		return false;
	h += 6;
	hl = strlen(h);
	if (hl == 0 || hl % 4 != 0 || hl / 4 * 3 >= sizeof(dec))
		return false;
	dl = EVP_DecodeBlock(dec, (const unsigned char *)h, (int)hl);
	if (dl < 0)
		return false;
	while (hl > 0 && h[hl - 1] == '=' && dl > 0) {
		dl--;
		hl--;
	}
	colon = memchr(dec, ':', (size_t)dl);
	if (colon == NULL)
		return false;
	ok = notify_secret_ok(n, colon + 1,
	    (size_t)dl - (size_t)(colon + 1 - (const char *)dec));
	OPENSSL_cleanse(dec, sizeof(dec));
	return ok;
}

static void
http_reply(struct evhttp_request *req, int code, const char *reason,
    const char *text)
{
	struct evbuffer *b = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; charset=utf-8");
	if (text != NULL)
		evbuffer_add_printf(b, "%s\n", text);
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
}

static void
http_request(struct evhttp_request *req, void *arg)
{
	struct edge_notify *n = arg;
	struct sockaddr_storage ss;
	struct evbuffer *body, *out;
	struct push_note note;
	const char *uri = evhttp_request_get_uri(req), *why;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	char addr[64];
	size_t len;

	if (!http_peer(req, &ss) || !notify_peer_ok(n,
	    (struct sockaddr *)&ss)) {
		edge_notify_refused(n->e);
		http_reply(req, 403, "Forbidden", "not allowed");
		return;
	}
	if (cmd == EVHTTP_REQ_GET && strcmp(uri, "/metrics") == 0) {
		out = evbuffer_new();
		edge_metrics(n->e, out);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Type", "text/plain; version=0.0.4");
		evhttp_send_reply(req, 200, "OK", out);
		evbuffer_free(out);
		return;
	}
	if (cmd != EVHTTP_REQ_PUT && cmd != EVHTTP_REQ_POST) {
		http_reply(req, 404, "Not Found", "GET /metrics, or PUT a "
		    "notification");
		return;
	}
	mr_sockaddr_format((struct sockaddr *)&ss, addr, sizeof(addr));
	if (!http_auth_ok(n, req)) {
		edge_notify_refused(n->e);
		mr_log_warn(NOTIFY_MOD, "event=notify-refused peer=%s "
		    "why=secret", addr);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Basic realm=\"mailroom\"");
		http_reply(req, 401, "Unauthorized", "not authorized");
		return;
	}
	body = evhttp_request_get_input_buffer(req);
	len = evbuffer_get_length(body);
	if (push_parse((const char *)evbuffer_pullup(body, (ssize_t)len), len,
	    &note, &why) != 0) {
		edge_notify_refused(n->e);
		mr_log_warn(NOTIFY_MOD, "event=notify-refused peer=%s why=%s",
		    addr, mr_q(why, (size_t)-1));
		http_reply(req, 400, "Bad Request", why);
		return;
	}
	if (note.message_new)
		edge_notify(n->e, note.user, note.userlen);
	evhttp_send_reply(req, 204, "No Content", NULL);
}

static int
notify_http_start(struct edge_notify *n, const char *text,
    struct mr_buf *err)
{
	n->http = net_http_listen(n->base, text, 80, NOTIFY_BODY_MAX,
	    n->http_addr, sizeof(n->http_addr), err);
	if (n->http == NULL)
		return -1;
	evhttp_set_allowed_methods(n->http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_POST);
	evhttp_set_gencb(n->http, http_request, n);
	return 0;
}

/* notify_allow_parse - the allow-list: entries, each possibly a
 * comma-separated list. */
static int
notify_allow_parse(struct edge_notify *n, const struct conf_list *l,
    struct mr_buf *err)
{
	size_t i;
	const char *p, *e;

	for (i = 0; i < l->n; i++) {
		for (p = l->v[i]; *p; p = *e ? e + 1 : e) {
			while (*p == ' ')
				p++;
			e = p + strcspn(p, ",");
			if (e == p)
				continue;
			n->allow = xreallocarray(n->allow, n->nallow + 1,
			    sizeof(*n->allow));
			while (e > p && e[-1] == ' ')
				e--;
			if (net_cidr_parse(p, (size_t)(e - p),
			    &n->allow[n->nallow]) != 0) {
				mr_buf_printf(err, "pop3_proxy.notify_allow: "
				    "\"%.*s\" is not an address or network",
				    (int)(e - p), p);
				return -1;
			}
			n->nallow++;
			e += strcspn(e, ",");
		}
	}
	return 0;
}

int
edge_notify_check(const struct mr_config *cfg, struct mr_buf *err)
{
	struct edge_notify n;
	int rc;

	memset(&n, 0, sizeof(n));
	rc = notify_allow_parse(&n, &cfg->pop3_proxy_notify_allow, err);
	free(n.allow);
	return rc;
}

struct edge_notify *
edge_notify_new(struct event_base *base, struct edge *e,
    const struct mr_config *cfg, struct mr_buf *err)
{
	struct edge_notify *n = xcalloc(1, sizeof(*n));

	n->base = base;
	n->e = e;
	n->cfg = cfg;
	if (notify_allow_parse(n, &cfg->pop3_proxy_notify_allow, err) != 0)
		goto fail;
	if (*cfg->pop3_proxy_notify_listen != '\0') {
		n->lis = net_listen(base, cfg->pop3_proxy_notify_listen, 2500,
		    64, notify_accept, n, err);
		if (n->lis == NULL)
			goto fail;
	}
	if (*cfg->pop3_proxy_http_listen != '\0' &&
	    notify_http_start(n, cfg->pop3_proxy_http_listen, err) != 0)
		goto fail;
	return n;
fail:
	edge_notify_free(&n);
	return NULL;
}

void
edge_notify_free(struct edge_notify **np)
{
	struct edge_notify *n = *np;

	if (n == NULL)
		return;
	while (n->conns != NULL)
		nconn_free(n->conns);
	net_listener_free(&n->lis);
	if (n->http)
		evhttp_free(n->http);
	free(n->allow);
	free(n);
	*np = NULL;
}

const char *
edge_notify_line_addr(const struct edge_notify *n)
{
	return n->lis ? net_listener_addr(n->lis) : "";
}

const char *
edge_notify_http_addr(const struct edge_notify *n)
{
	return n->http_addr;
}
