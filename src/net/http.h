/*
 * http.h - an HTTP endpoint on an event loop (libevent's evhttp), bound
 * to an address in the form every listener of ours takes.  The caller
 * sets the handlers on the returned server; limits on headers and body
 * and a request timeout are set here, so no endpoint forgets them.
 *
 * Ownership: the server is the caller's (evhttp_free()), on base's
 * thread.
 */
#ifndef MR_NET_HTTP_H
#define MR_NET_HTTP_H

#include <stddef.h>

#include "core/mr_buf.h"

struct event_base;
struct evhttp;

/*
 * net_http_listen - an evhttp server listening on text ("host:port",
 * "[v6]:port", or a host and default_port; port 0: the kernel's choice)
 * accepting at most max_body
 * bytes of request body; the address it got goes into addr_r (size
 * bytes).  NULL with a sentence in err.
 */
struct evhttp *net_http_listen(struct event_base *base, const char *text,
    unsigned default_port, size_t max_body, char *addr_r, size_t size,
    struct mr_buf *err);

#endif
