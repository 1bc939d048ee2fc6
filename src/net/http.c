/*
 * http.c - an HTTP endpoint bound to one of our addresses (see http.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/http.h>

#include "core/mr_sockaddr.h"
#include "net/http.h"
#include "net/listen.h"

#define NET_HTTP_HEADERS_MAX	16384
#define NET_HTTP_TIMEOUT_S	30

struct evhttp *
net_http_listen(struct event_base *base, const char *text,
    unsigned default_port, size_t max_body, char *addr_r, size_t size,
    struct mr_buf *err)
{
	struct sockaddr_storage ss;
	struct evhttp_bound_socket *bs;
	struct evhttp *http;
	char host[INET6_ADDRSTRLEN];
	socklen_t len;
	unsigned port;

	if (net_addr_parse(text, default_port, 1, &ss, &len, err) != 0)
		return NULL;
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		port = ntohs(s4->sin_port);
	}
	if ((http = evhttp_new(base)) == NULL) {
		mr_buf_printf(err, "cannot make an HTTP server for %s", text);
		return NULL;
	}
	evhttp_set_max_body_size(http, (ev_ssize_t)max_body);
	evhttp_set_max_headers_size(http, NET_HTTP_HEADERS_MAX);
	evhttp_set_timeout(http, NET_HTTP_TIMEOUT_S);
	bs = evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)port);
	if (bs == NULL) {
		mr_buf_printf(err, "cannot listen on %s for HTTP", text);
		evhttp_free(http);
		return NULL;
	}
	len = sizeof(ss);
	if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss,
	    &len) == 0)
		mr_sockaddr_format((struct sockaddr *)&ss, addr_r, size);
	else
		addr_r[0] = '\0';
	return http;
}
