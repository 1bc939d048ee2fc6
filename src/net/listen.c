/*
 * listen.c - listening sockets (libevent's evconnlistener) and address
 * parsing.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "core/mr_sockaddr.h"
#include "core/xalloc.h"
#include "net/listen.h"

/* How long to stop accepting after EMFILE/ENFILE. */
#define NET_LISTEN_PAUSE_MS	100

struct net_listener {
	struct evconnlistener	*lev;
	struct event		*resume;
	net_accept_cb		*cb;
	void			*arg;
	char			 addr[64];
};

int
net_addr_parse(const char *text, unsigned default_port, int passive,
    struct sockaddr_storage *ss, socklen_t *len_r, struct mr_buf *err)
{
	struct addrinfo hints, *res = NULL;
	char host[256], port[16];
	const char *colon, *h = text, *close;
	size_t hlen;
	int rc;

	snprintf(port, sizeof(port), "%u", default_port);
	if (*text == '[') {
		close = strchr(text, ']');
		if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
			mr_buf_printf(err, "bad address \"%s\": an IPv6 "
			    "address goes in brackets, [::1]:110", text);
			return -1;
		}
		h = text + 1;
		hlen = (size_t)(close - h);
		colon = close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = strrchr(text, ':');
		if (colon != NULL && strchr(text, ':') != colon) {
			mr_buf_printf(err, "bad address \"%s\": an IPv6 "
			    "address goes in brackets, [::1]:110", text);
			return -1;
		}
		hlen = colon ? (size_t)(colon - text) : strlen(text);
	}
	if (colon != NULL) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(colon + 1, &end, 10);
		if (colon[1] < '0' || colon[1] > '9' || *end != '\0' ||
		    errno != 0 || (v == 0 && !passive) || v > 65535) {
			mr_buf_printf(err, "bad port in \"%s\" (%s-65535)",
			    text, passive ? "0" : "1");
			return -1;
		}
		snprintf(port, sizeof(port), "%lu", v);
	}
	if (hlen >= sizeof(host)) {
		mr_buf_printf(err, "bad address \"%s\": host name too long",
		    text);
		return -1;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (!passive && (hlen == 0 || strcmp(host, "*") == 0)) {
		mr_buf_printf(err, "bad address \"%s\": no host", text);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	rc = getaddrinfo(hlen == 0 || strcmp(host, "*") == 0 ? NULL : host,
	    port, &hints, &res);
	if (rc != 0 || res == NULL) {
		mr_buf_printf(err, "cannot resolve \"%s\": %s", text,
		    rc ? gai_strerror(rc) : "no address");
		if (res)
			freeaddrinfo(res);
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len_r = (socklen_t)res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void
net_listen_resume(evutil_socket_t fd, short what, void *arg)
{
	struct net_listener *l = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(l->lev);
}

static void
net_listen_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct net_listener *l = arg;

	(void)lev;
	l->cb(fd, sa, (socklen_t)salen, l->arg);
}

static void
net_listen_error(struct evconnlistener *lev, void *arg)
{
	struct net_listener *l = arg;
	struct timeval tv = { 0, NET_LISTEN_PAUSE_MS * 1000 };
	int e = EVUTIL_SOCKET_ERROR();

	(void)lev;
	/* Out of descriptors: the socket stays readable, so pause rather
	 * than spin; connections wait in the backlog meanwhile. */
	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		evconnlistener_disable(l->lev);
		evtimer_add(l->resume, &tv);
	}
}

struct net_listener *
net_listen(struct event_base *base, const char *addr, unsigned default_port,
    int backlog, net_accept_cb *cb, void *arg, struct mr_buf *err)
{
	struct net_listener *l;
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, zero = 0;

	if (net_addr_parse(addr, default_port, 1, &ss, &len, err) != 0)
		return NULL;
	l = xcalloc(1, sizeof(*l));
	l->cb = cb;
	l->arg = arg;
	l->lev = evconnlistener_new_bind(base, net_listen_accept, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
	    LEV_OPT_CLOSE_ON_EXEC, backlog, (struct sockaddr *)&ss, (int)len);
	if (l->lev == NULL) {
		mr_buf_printf(err, "cannot listen on %s: %s", addr,
		    strerror(errno));
		free(l);
		return NULL;
	}
	/* Accepted sockets inherit both (Linux): no setsockopt(2) for each
	 * connection (net_conn_accept).  Every protocol served here answers
	 * each command at once, so the answer can carry the ACK of the
	 * command: without TCP_QUICKACK off, a new connection starts in
	 * quick-ACK mode and ACKs the client's first command in a segment
	 * of its own, one of the 16 a POP3 check costs.  The kernel leaves
	 * this mode by itself when an ACK does have to wait (its delayed-ACK
	 * timer), so bulk input (SMTP DATA) is not slowed. */
	(void)setsockopt(evconnlistener_get_fd(l->lev), IPPROTO_TCP,
	    TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(evconnlistener_get_fd(l->lev), IPPROTO_TCP,
	    TCP_QUICKACK, &zero, sizeof(zero));
	evconnlistener_set_error_cb(l->lev, net_listen_error);
	l->resume = evtimer_new(base, net_listen_resume, l);
	len = sizeof(ss);
	if (getsockname(evconnlistener_get_fd(l->lev), (struct sockaddr *)&ss,
	    &len) == 0)
		mr_sockaddr_format((struct sockaddr *)&ss, l->addr,
		    sizeof(l->addr));
	return l;
}

void
net_listener_free(struct net_listener **lp)
{
	struct net_listener *l = *lp;

	if (l == NULL)
		return;
	evconnlistener_free(l->lev);
	event_free(l->resume);
	free(l);
	*lp = NULL;
}

const char *
net_listener_addr(const struct net_listener *l)
{
	return l->addr;
}
