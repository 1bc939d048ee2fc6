/*
 * listen.h - listening sockets on an event loop, and "host:port" text to
 * a socket address.
 *
 * A listener accepts connections (non-blocking, close-on-exec, and with
 * TCP_NODELAY, which they inherit from the listening socket) and hands
 * each one to its callback with the peer's address; the callback owns the
 * descriptor from then on.  When accept(2) fails for want of descriptors
 * (EMFILE, ENFILE), the listener stops accepting for a moment instead of
 * spinning on a readable socket it cannot serve.
 */
#ifndef MR_NET_LISTEN_H
#define MR_NET_LISTEN_H

#include <sys/socket.h>

#include "core/mr_buf.h"

struct event_base;
struct net_listener;

/* net_accept_cb - a new connection: fd is the callee's to close. */
typedef void net_accept_cb(int fd, const struct sockaddr *peer,
    socklen_t peerlen, void *arg);

/*
 * net_addr_parse - "host:port", "[v6]:port" or "host" (then
 * default_port) into *ss; a host name is looked up once, now (getaddrinfo;
 * the first address wins).  passive: an empty host or "*" means every
 * address, and port 0 lets the kernel choose.  0, or -1 with a sentence
 * in err.
 */
int net_addr_parse(const char *text, unsigned default_port, int passive,
    struct sockaddr_storage *ss, socklen_t *len_r, struct mr_buf *err);

/*
 * net_listen - listen on addr (as net_addr_parse, passive) with
 * SO_REUSEADDR and the given backlog.  NULL with a sentence in err.
 */
struct net_listener *net_listen(struct event_base *base, const char *addr,
    unsigned default_port, int backlog, net_accept_cb *cb, void *arg,
    struct mr_buf *err);
void net_listener_free(struct net_listener **lp);

/* net_listener_addr - the bound address, "127.0.0.1:1100" (borrowed). */
const char *net_listener_addr(const struct net_listener *l);

#endif
