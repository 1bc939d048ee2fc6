/*
 * conn.c - bufferevent-based connections with a bounded line reader and
 * client STARTTLS through libevent's OpenSSL filter.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
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
#include "core/mr_sockaddr.h"
#include "core/xalloc.h"
#include "net/conn.h"

/* Replies held while corked (net_conn_cork): a few short lines. */
#define NET_CONN_HELD	512

struct net_conn {
	struct event_base		*base;
	struct bufferevent		*bev;
	const struct net_conn_cbs	*cbs;
	void				*arg;
	char				 peer[64];	/* formatted when
							 * first asked */
	struct sockaddr_storage		 peer_sa;
	struct event			*drain_ev;	/* report a drain */
	size_t				 drain_low;
	size_t				 line_consume;	/* line + EOL */
	bool				 line_crlf;	/* it ended in CRLF */
	struct event			*fail_ev;	/* connect(2) failed at
							 * once: report it */
	int				 connect_err;
	bool				 connecting;
	bool				 handshaking;
	bool				 tls;
	bool				 write_on;	/* EV_WRITE enabled */
	bool				 shut;		/* our FIN is out */
	unsigned			 write_timeout_ms;
	unsigned			 read_timeout_ms;
	unsigned			 corked;	/* net_conn_cork()
							 * depth */
	size_t				 held_len;
	char				 tls_desc[96];
	char				 held[NET_CONN_HELD];	/* corked
							 * replies */
};

static void net_conn_read_cb(struct bufferevent *bev, void *arg);
static void net_conn_event_cb(struct bufferevent *bev, short what,
    void *arg);
static void net_conn_fail_cb(evutil_socket_t fd, short what, void *arg);
static void net_conn_write_cb(struct bufferevent *bev, void *arg);
static void net_conn_uncork_now(struct net_conn *c);

/*
 * net_conn_common_timeout - ms as one of the loop's common timeouts: every
 * connection has the same few durations, and a timer in a common queue is
 * added and moved in O(1) instead of in the loop's heap (libevent's
 * event_base_init_common_timeout).  The plain value when the loop has no
 * room for another one.
 */
static const struct timeval *
net_conn_common_timeout(struct event_base *base, unsigned ms,
    struct timeval *tv)
{
	const struct timeval *ctv;

	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
	ctv = event_base_init_common_timeout(base, tv);
	return ctv != NULL ? ctv : tv;
}

static void
net_conn_set_timeouts(struct net_conn *c)
{
	struct timeval tv, rtv;
	const struct timeval *w, *r = NULL;

	w = net_conn_common_timeout(c->base, c->write_timeout_ms, &tv);
	if (c->read_timeout_ms)
		r = net_conn_common_timeout(c->base, c->read_timeout_ms, &rtv);
	bufferevent_set_timeouts(c->bev, r, w);
}

/*
 * net_conn_want_write - let the bufferevent write: an accepted connection
 * starts with reading only, so that no write event is armed (and disarmed
 * at once) for output that goes straight to the socket (net_conn_send).
 * Called whenever output is queued; once on, it stays on.
 */
static void
net_conn_want_write(struct net_conn *c)
{
	if (c->write_on)
		return;
	c->write_on = true;
	bufferevent_enable(c->bev, EV_WRITE);
}

/*
 * net_conn_new - a connection on fd (closed on failure) with peer sa: the
 * bufferevent, callbacks and timeouts.  NULL when out of memory.
 */
static struct net_conn *
net_conn_new(struct event_base *base, int fd, const struct sockaddr *sa,
    socklen_t salen, unsigned write_timeout_ms, bool nodelay,
    const struct net_conn_cbs *cbs, void *arg)
{
	struct net_conn *c = xcalloc(1, sizeof(*c));
	int one = 1;

	c->base = base;
	c->cbs = cbs;
	c->arg = arg;
	/* The peer's text is made only if a log or an error asks for it
	 * (net_conn_peer): most sessions never do. */
	if (salen <= sizeof(c->peer_sa))
		memcpy(&c->peer_sa, sa, salen);
	else
		mr_sockaddr_format(sa, c->peer, sizeof(c->peer));
	memcpy(c->tls_desc, "none", sizeof("none"));
	/* Pipelined commands are written as one segment already; do not
	 * let Nagle hold the last of them back.  (An accepted socket has it
	 * from its listener, net_listen.) */
	if (nodelay)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return NULL;
	}
	bufferevent_setcb(c->bev, net_conn_read_cb, NULL, net_conn_event_cb,
	    c);
	c->write_timeout_ms = write_timeout_ms;
	net_conn_set_timeouts(c);
	return c;
}

struct net_conn *
net_conn_connect(struct event_base *base, const struct sockaddr *sa,
    socklen_t salen, unsigned timeout_ms, const struct net_conn_cbs *cbs,
    void *arg, int *err_r)
{
	return net_conn_connect_from(base, sa, salen, NULL, 0, timeout_ms,
	    cbs, arg, err_r);
}

struct net_conn *
net_conn_connect_from(struct event_base *base, const struct sockaddr *sa,
    socklen_t salen, const struct sockaddr *src, socklen_t srclen,
    unsigned timeout_ms, const struct net_conn_cbs *cbs, void *arg,
    int *err_r)
{
	struct net_conn *c;
	evutil_socket_t fd;
	int one = 1;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0) {
		*err_r = -errno;
		return NULL;
	}
	c = net_conn_new(base, fd, sa, salen, timeout_ms, true, cbs, arg);
	if (c == NULL) {
		*err_r = -ENOMEM;
		return NULL;
	}
	c->connecting = true;
	/*
	 * connect(2) here rather than in libevent, which loses the errno of
	 * a connect that fails at once (ENETUNREACH, EADDRNOTAVAIL): that
	 * failure is reported from the loop, never from inside this call.
	 */
	if (src != NULL) {
#ifdef IP_BIND_ADDRESS_NO_PORT
		/* The port is chosen at connect(2), per destination: many
		 * more connections from one source address. */
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
#else
		(void)one;
#endif
	}
	if ((src != NULL && bind(fd, src, srclen) != 0) ||
	    (connect(fd, sa, salen) != 0 && errno != EINPROGRESS)) {
		c->connect_err = errno;
		c->fail_ev = event_new(base, -1, 0, net_conn_fail_cb, c);
		event_active(c->fail_ev, EV_TIMEOUT, 1);
		return c;
	}
	bufferevent_socket_connect(c->bev, NULL, 0);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->write_on = true;
	return c;
}

struct net_conn *
net_conn_accept(struct event_base *base, int fd, const struct sockaddr *peer,
    socklen_t peerlen, const struct net_conn_cbs *cbs, void *arg)
{
	struct net_conn *c;

	c = net_conn_new(base, fd, peer, peerlen, 60000, false, cbs, arg);
	if (c != NULL)
		bufferevent_enable(c->bev, EV_READ);
	return c;
}

void
net_conn_free(struct net_conn **cp)
{
	struct net_conn *c = *cp;

	if (c == NULL)
		return;
	/* Held replies go where queued ones would: a last try, no wait. */
	net_conn_uncork_now(c);
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->fail_ev)
		event_free(c->fail_ev);
	if (c->drain_ev)
		event_free(c->drain_ev);
	free(c);
	*cp = NULL;
}

const char *
net_conn_peer(struct net_conn *c)
{
	if (c->peer[0] == '\0')
		mr_sockaddr_format((const struct sockaddr *)&c->peer_sa,
		    c->peer, sizeof(c->peer));
	return c->peer;
}

const struct sockaddr *
net_conn_peer_addr(const struct net_conn *c)
{
	return (const struct sockaddr *)&c->peer_sa;
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
	c->line_crlf = n > 0 && p[n - 1] == '\r';
	if (c->line_crlf)
		n--;
	if (n > max)
		return NET_LINE_TOO_LONG;
	*p_r = p;
	*len_r = n;
	return NET_LINE_OK;
}

bool
net_conn_line_crlf(const struct net_conn *c)
{
	return c->line_crlf;
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
net_conn_input(struct net_conn *c)
{
	return bufferevent_get_input(c->bev);
}

struct evbuffer *
net_conn_output(struct net_conn *c)
{
	/* The caller appends: behind what is held, and written. */
	net_conn_uncork_now(c);
	net_conn_want_write(c);
	return bufferevent_get_output(c->bev);
}

/* net_conn_direct - may output go straight to the socket now? */
static bool
net_conn_direct(struct net_conn *c)
{
	return !c->tls && !c->handshaking && !c->connecting &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
}

/* net_conn_send_now - net_conn_send without the cork; flags for send(2)
 * (MSG_MORE: more follows at once, the FIN). */
static void
net_conn_send_now(struct net_conn *c, const void *p, size_t len, int flags)
{
	ssize_t n = 0;

	/* Nothing goes out after our FIN (nor could). */
	if (c->shut)
		return;
	if (net_conn_direct(c)) {
		n = send(bufferevent_getfd(c->bev), p, len,
		    MSG_DONTWAIT | MSG_NOSIGNAL | flags);
		/* EAGAIN, or an error the queued write will report. */
		if (n < 0)
			n = 0;
	}
	if ((size_t)n < len) {
		evbuffer_add(bufferevent_get_output(c->bev),
		    (const char *)p + n, len - (size_t)n);
		net_conn_want_write(c);
	}
}

/* net_conn_uncork_now - what is held goes on (to the socket, or queued
 * behind what is queued). */
static void
net_conn_uncork_now(struct net_conn *c)
{
	size_t n = c->held_len;

	if (n == 0)
		return;
	c->held_len = 0;
	net_conn_send_now(c, c->held, n, 0);
}

void
net_conn_send(struct net_conn *c, const void *p, size_t len)
{
	if (c->corked > 0 && len <= sizeof(c->held) - c->held_len &&
	    !c->shut && net_conn_direct(c)) {
		memcpy(c->held + c->held_len, p, len);
		c->held_len += len;
		return;
	}
	net_conn_uncork_now(c);
	net_conn_send_now(c, p, len, 0);
}

void
net_conn_cork(struct net_conn *c)
{
	c->corked++;
}

void
net_conn_uncork(struct net_conn *c)
{
	MR_ASSERT(c->corked > 0);
	if (--c->corked == 0)
		net_conn_uncork_now(c);
}

void
net_conn_shutdown(struct net_conn *c)
{
	size_t n = c->held_len;

	if (c->shut)
		return;
	if (!net_conn_direct(c)) {
		/* Queued output or TLS: the FIN waits for the close. */
		net_conn_uncork_now(c);
		return;
	}
	if (n > 0) {
		/* MSG_MORE holds the bytes back for the FIN to join. */
		c->held_len = 0;
		net_conn_send_now(c, c->held, n, MSG_MORE);
		if (!net_conn_direct(c))
			return;	/* a short write: the rest is queued */
	}
	if (shutdown(bufferevent_getfd(c->bev), SHUT_WR) == 0)
		c->shut = true;
}

void
net_conn_sendf(struct net_conn *c, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(buf)) {
		net_conn_send(c, buf, (size_t)n);
		return;
	}
	/* Too long for the stack: queued, behind anything queued before. */
	if (c->shut)
		return;
	net_conn_uncork_now(c);
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
	net_conn_want_write(c);
}

void
net_conn_write_timeout(struct net_conn *c, unsigned ms)
{
	c->write_timeout_ms = ms;
	net_conn_set_timeouts(c);
}

void
net_conn_read_timeout(struct net_conn *c, unsigned ms)
{
	c->read_timeout_ms = ms;
	net_conn_set_timeouts(c);
}

void
net_conn_reading(struct net_conn *c, bool on)
{
	if (on)
		bufferevent_enable(c->bev, EV_READ);
	else
		bufferevent_disable(c->bev, EV_READ);
}

size_t
net_conn_output_len(const struct net_conn *c)
{
	struct bufferevent *under = bufferevent_get_underlying(c->bev);
	size_t n = evbuffer_get_length(bufferevent_get_output(c->bev)) +
	    c->held_len;

	/* With TLS, also the records made but not yet taken by the socket. */
	if (under != NULL)
		n += evbuffer_get_length(bufferevent_get_output(under));
	return n;
}

void
net_conn_input_limit(struct net_conn *c, size_t max)
{
	bufferevent_setwatermark(c->bev, EV_READ, 0, max);
}

static void
net_conn_drained_now(evutil_socket_t fd, short what, void *arg)
{
	struct net_conn *c = arg;
	struct timeval tv = { 0, 5000 };

	(void)fd;
	(void)what;
	/* Drained to nothing means on the wire, TLS records included: a
	 * caller that closes next must not cut its last reply. */
	if (net_conn_output_len(c) > c->drain_low) {
		evtimer_add(c->drain_ev, &tv);
		return;
	}
	c->cbs->drained(c, c->arg);
}

static void
net_conn_drain_soon(struct net_conn *c)
{
	if (c->drain_ev == NULL)
		c->drain_ev = evtimer_new(c->base, net_conn_drained_now, c);
	event_active(c->drain_ev, EV_TIMEOUT, 1);
}

void
net_conn_watch_drain(struct net_conn *c, size_t low)
{
	net_conn_uncork_now(c);
	c->drain_low = low;
	/* With TLS the filter's own output may be empty already while its
	 * records wait below: no write callback would come then, so the
	 * poll in net_conn_drained_now() waits for those. */
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) <= low) {
		net_conn_drain_soon(c);
		return;
	}
	bufferevent_setwatermark(c->bev, EV_WRITE, low, 0);
	bufferevent_setcb(c->bev, net_conn_read_cb, net_conn_write_cb,
	    net_conn_event_cb, c);
}

static void
net_conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct net_conn *c = arg;

	/* Once: the owner asks again if it wants to know again. */
	bufferevent_setcb(bev, net_conn_read_cb, NULL, net_conn_event_cb, c);
	net_conn_drain_soon(c);
}

static void
net_conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct net_conn *c = arg;

	(void)bev;
	c->cbs->readable(c, c->arg);
}

static void
net_conn_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	struct net_conn *c = arg;
	char msg[256];

	(void)fd;
	(void)what;
	snprintf(msg, sizeof(msg), "connect to %s: %s", net_conn_peer(c),
	    strerror(c->connect_err));
	c->cbs->failed(c, c->arg, -c->connect_err, msg);
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
	snprintf(buf, size, "TLS with %s: %s", net_conn_peer(c), what);
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
		    c->connecting ? "connect to" : (what & BEV_EVENT_READING) ?
		    "read from" : "write to", net_conn_peer(c));
	} else if (c->handshaking ||
	    (c->tls && (what & BEV_EVENT_ERROR) && err == 0)) {
		code = MR_ETLS;
		net_conn_tls_error(c, msg, sizeof(msg));
	} else if (what & BEV_EVENT_EOF) {
		code = MR_ECLOSED;
		snprintf(msg, sizeof(msg), "connection closed by %s",
		    net_conn_peer(c));
	} else {
		code = err ? -err : MR_ECLOSED;
		snprintf(msg, sizeof(msg), "%s %s: %s",
		    c->connecting ? "connect to" : "connection with",
		    net_conn_peer(c),
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

/* net_conn_tls_wrap - put a TLS filter over the connection's bufferevent. */
static int
net_conn_tls_wrap(struct net_conn *c, SSL *ssl, enum bufferevent_ssl_state st)
{
	struct bufferevent *tls;

	tls = bufferevent_openssl_filter_new(c->base, c->bev, ssl, st,
	    BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		SSL_free(ssl);
		return MR_ETLS;
	}
	/* Many peers close without close_notify; that is not an attack on
	 * a finished SMTP or POP3 session. */
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	c->bev = tls;
	c->handshaking = true;
	c->write_on = true;	/* the filter is enabled below */
	bufferevent_setcb(c->bev, net_conn_read_cb, NULL, net_conn_event_cb,
	    c);
	net_conn_set_timeouts(c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return 0;
}

SSL_CTX *
net_tls_server_ctx(const char *cert_file, const char *key_file,
    struct mr_buf *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		mr_buf_puts(err, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		mr_buf_printf(err, "cannot load the certificate chain %s",
		    cert_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		mr_buf_printf(err, "cannot load the key %s, or it does not "
		    "match the certificate", key_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int
net_conn_accepttls(struct net_conn *c, SSL_CTX *ctx)
{
	SSL *ssl;

	/* What is held (the +OK to STLS) goes out in plain text first. */
	net_conn_uncork_now(c);
	if (net_conn_input_len(c) != 0)
		return MR_EPROTO;
	if ((ssl = SSL_new(ctx)) == NULL)
		return MR_ETLS;
	return net_conn_tls_wrap(c, ssl, BUFFEREVENT_SSL_ACCEPTING);
}

int
net_conn_starttls(struct net_conn *c, SSL_CTX *ctx, const char *servername,
    bool verify)
{
	SSL *ssl;

	net_conn_uncork_now(c);
	if (net_conn_input_len(c) != 0)
		return MR_EPROTO;
	ssl = SSL_new(ctx);
	if (ssl == NULL)
		return MR_ETLS;
	if (servername && *servername) {
		struct in6_addr ip;

		/* SNI names hosts, never addresses (RFC 6066 3). */
		if (inet_pton(AF_INET, servername, &ip) == 1 ||
		    inet_pton(AF_INET6, servername, &ip) == 1) {
			if (verify)
				X509_VERIFY_PARAM_set1_ip_asc(
				    SSL_get0_param(ssl), servername);
		} else {
			SSL_set_tlsext_host_name(ssl, servername);
			if (verify)
				SSL_set1_host(ssl, servername);
		}
	}
	return net_conn_tls_wrap(c, ssl, BUFFEREVENT_SSL_CONNECTING);
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
