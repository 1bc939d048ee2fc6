/*
 * conn.c - bufferevent-based connections with a bounded line reader and
 * client STARTTLS through libevent's OpenSSL filter.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/mr_err.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "net/conn.h"

struct net_conn {
	struct event_base		*base;
	struct bufferevent		*bev;
	const struct net_conn_cbs	*cbs;
	void				*arg;
	char				 peer[64];
	size_t				 line_consume;	/* line + EOL */
	bool				 connecting;
	bool				 handshaking;
	bool				 tls;
	bool				 want_drained;
	unsigned			 write_timeout_ms;
	char				 tls_desc[96];
};

static void net_conn_read_cb(struct bufferevent *bev, void *arg);
static void net_conn_write_cb(struct bufferevent *bev, void *arg);
static void net_conn_event_cb(struct bufferevent *bev, short what,
    void *arg);

static void
net_conn_format_peer(const struct sockaddr *sa, char *out, size_t size)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(out, size, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(out, size, "%s:%u", host, ntohs(s4->sin_port));
	}
}

static void
net_conn_set_timeouts(struct net_conn *c)
{
	struct timeval tv;

	tv.tv_sec = c->write_timeout_ms / 1000;
	tv.tv_usec = (c->write_timeout_ms % 1000) * 1000;
	bufferevent_set_timeouts(c->bev, NULL, &tv);
}

struct net_conn *
net_conn_connect(struct event_base *base, const struct sockaddr *sa,
    socklen_t salen, unsigned timeout_ms, const struct net_conn_cbs *cbs,
    void *arg, int *err_r)
{
	struct net_conn *c = xcalloc(1, sizeof(*c));
	evutil_socket_t fd;
	int one = 1;

	c->base = base;
	c->cbs = cbs;
	c->arg = arg;
	net_conn_format_peer(sa, c->peer, sizeof(c->peer));
	snprintf(c->tls_desc, sizeof(c->tls_desc), "none");
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0) {
		*err_r = -errno;
		free(c);
		return NULL;
	}
	/* Pipelined commands are written as one segment already; do not
	 * let Nagle hold the last of them back. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		*err_r = -ENOMEM;
		return NULL;
	}
	bufferevent_setcb(c->bev, net_conn_read_cb, net_conn_write_cb,
	    net_conn_event_cb, c);
	c->write_timeout_ms = timeout_ms;
	net_conn_set_timeouts(c);
	c->connecting = true;
	if (bufferevent_socket_connect(c->bev, sa, (int)salen) != 0) {
		/* libevent reports a synchronous failure through the event
		 * callback as well, after this returns; keep going. */
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return c;
}

void
net_conn_free(struct net_conn **cp)
{
	struct net_conn *c = *cp;

	if (c == NULL)
		return;
	if (c->bev)
		bufferevent_free(c->bev);
	free(c);
	*cp = NULL;
}

const char *
net_conn_peer(const struct net_conn *c)
{
	return c->peer;
}

enum net_line
net_conn_line(struct net_conn *c, size_t max, const char **p_r,
    size_t *len_r)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t have = evbuffer_get_length(in), look;
	const char *p, *nl;
	size_t n;

	c->line_consume = 0;
	if (have == 0)
		return NET_LINE_AGAIN;
	/* Look at no more than the limit, CRLF included. */
	look = have < max + 2 ? have : max + 2;
	p = (const char *)evbuffer_pullup(in, (ssize_t)look);
	nl = memchr(p, '\n', look);
	if (nl == NULL)
		return have > max + 1 ? NET_LINE_TOO_LONG : NET_LINE_AGAIN;
	n = (size_t)(nl - p);
	c->line_consume = n + 1;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (n > max)
		return NET_LINE_TOO_LONG;
	*p_r = p;
	*len_r = n;
	return NET_LINE_OK;
}

void
net_conn_line_done(struct net_conn *c)
{
	if (c->line_consume) {
		evbuffer_drain(bufferevent_get_input(c->bev), c->line_consume);
		c->line_consume = 0;
	}
}

size_t
net_conn_input_len(const struct net_conn *c)
{
	return evbuffer_get_length(bufferevent_get_input(c->bev));
}

struct evbuffer *
net_conn_output(struct net_conn *c)
{
	return bufferevent_get_output(c->bev);
}

size_t
net_conn_output_len(const struct net_conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

void
net_conn_write_timeout(struct net_conn *c, unsigned ms)
{
	c->write_timeout_ms = ms;
	net_conn_set_timeouts(c);
}

void
net_conn_want_drained(struct net_conn *c, bool on)
{
	c->want_drained = on;
}

static void
net_conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct net_conn *c = arg;

	(void)bev;
	c->cbs->readable(c, c->arg);
}

static void
net_conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct net_conn *c = arg;

	(void)bev;
	if (c->want_drained && c->cbs->drained) {
		c->want_drained = false;
		c->cbs->drained(c, c->arg);
	}
}

static void
net_conn_tls_error(struct net_conn *c, char *buf, size_t size)
{
	unsigned long e;
	const char *what = "handshake failed";
	char ebuf[256];

	while ((e = bufferevent_get_openssl_error(c->bev)) != 0) {
		ERR_error_string_n(e, ebuf, sizeof(ebuf));
		what = ebuf;
	}
	snprintf(buf, size, "TLS with %s: %s", c->peer, what);
}

static void
net_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct net_conn *c = arg;
	char msg[384];
	int err, code;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		if (c->handshaking) {
			SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

			c->handshaking = false;
			c->tls = true;
			snprintf(c->tls_desc, sizeof(c->tls_desc), "%s:%s",
			    SSL_get_version(ssl), SSL_get_cipher_name(ssl));
			c->cbs->tls_done(c, c->arg);
			return;
		}
		c->connecting = false;
		c->cbs->connected(c, c->arg);
		return;
	}
	err = EVUTIL_SOCKET_ERROR();
	if (what & BEV_EVENT_TIMEOUT) {
		code = MR_ETIMEOUT;
		snprintf(msg, sizeof(msg), "%s %s timed out",
		    c->connecting ? "connect to" : "write to", c->peer);
	} else if (c->handshaking ||
	    (c->tls && (what & BEV_EVENT_ERROR) && err == 0)) {
		code = MR_ETLS;
		net_conn_tls_error(c, msg, sizeof(msg));
	} else if (what & BEV_EVENT_EOF) {
		code = MR_ECLOSED;
		snprintf(msg, sizeof(msg), "connection closed by %s", c->peer);
	} else {
		code = err ? -err : MR_ECLOSED;
		snprintf(msg, sizeof(msg), "%s %s: %s",
		    c->connecting ? "connect to" : "connection with", c->peer,
		    err ? evutil_socket_error_to_string(err) : "error");
	}
	c->cbs->failed(c, c->arg, code, msg);
}

SSL_CTX *
net_tls_client_ctx(bool verify, const char *ca_file, struct mr_buf *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		mr_buf_puts(err, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		if (ca_file && *ca_file) {
			if (SSL_CTX_load_verify_locations(ctx, ca_file,
			    NULL) != 1) {
				mr_buf_printf(err, "cannot load CA file %s",
				    ca_file);
				SSL_CTX_free(ctx);
				return NULL;
			}
		} else {
			SSL_CTX_set_default_verify_paths(ctx);
		}
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
}

int
net_conn_starttls(struct net_conn *c, SSL_CTX *ctx, const char *servername,
    bool verify)
{
	struct bufferevent *tls;
	SSL *ssl;

	if (net_conn_input_len(c) != 0)
		return MR_EPROTO;
	ssl = SSL_new(ctx);
	if (ssl == NULL)
		return MR_ETLS;
	if (servername && *servername) {
		SSL_set_tlsext_host_name(ssl, servername);
		if (verify)
			SSL_set1_host(ssl, servername);
	}
	tls = bufferevent_openssl_filter_new(c->base, c->bev, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		SSL_free(ssl);
		return MR_ETLS;
	}
	/* Many servers close without close_notify; that is not an attack
	 * on a finished SMTP session. */
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	c->bev = tls;
	c->handshaking = true;
	bufferevent_setcb(c->bev, net_conn_read_cb, net_conn_write_cb,
	    net_conn_event_cb, c);
	net_conn_set_timeouts(c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return 0;
}

bool
net_conn_is_tls(const struct net_conn *c)
{
	return c->tls;
}

const char *
net_conn_tls_desc(const struct net_conn *c)
{
	return c->tls_desc;
}
