/*
 * conn.h - one TCP connection on an event loop: non-blocking connect
 * (or a connection accepted by a listener), a bounded line reader,
 * buffered writes, and TLS on either side (STARTTLS, STLS, implicit).
 * This is the only place where transport TLS (libevent's OpenSSL
 * bufferevents) is used.
 *
 * Callbacks (struct net_conn_cbs) run on the loop.  After `failed` the
 * connection is dead: the owner frees it, and may do so inside any of the
 * callbacks; net_conn never touches itself after calling back.
 *
 * Lines come only from net_conn_line(), which never lets a line grow past
 * its limit even before an end of line arrives (house style rule 13).
 * Ownership: the owner of a struct net_conn frees it with net_conn_free().
 */
#ifndef MR_NET_CONN_H
#define MR_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "core/mr_buf.h"

struct event_base;
struct evbuffer;
struct net_conn;

enum net_line {
	NET_LINE_OK,		/* a line: see net_conn_line() */
	NET_LINE_AGAIN,		/* no complete line yet */
	NET_LINE_TOO_LONG,	/* over the limit: drop the connection */
};

struct net_conn_cbs {
	void	(*connected)(struct net_conn *c, void *arg);
	void	(*readable)(struct net_conn *c, void *arg);
	void	(*tls_done)(struct net_conn *c, void *arg);
	/*
	 * failed: err is a negative code (-errno, MR_ETIMEOUT, MR_ECLOSED,
	 * MR_ETLS) and what a sentence for logs and accounting.
	 */
	void	(*failed)(struct net_conn *c, void *arg, int err,
		    const char *what);
	/* drained: optional; see net_conn_watch_drain(). */
	void	(*drained)(struct net_conn *c, void *arg);
};

/*
 * net_conn_connect - start connecting to sa within timeout_ms.  cbs is
 * borrowed for the connection's life; arg is passed back.  Returns NULL
 * and *err_r when the socket cannot even be created (EMFILE); any later
 * failure, even of connect(2) itself, comes through `failed`.
 */
struct net_conn *net_conn_connect(struct event_base *base,
    const struct sockaddr *sa, socklen_t salen, unsigned timeout_ms,
    const struct net_conn_cbs *cbs, void *arg, int *err_r);
/* net_conn_connect_from - the same, from local address src (bound
 * before connecting; a bind failure is reported like a connect one). */
struct net_conn *net_conn_connect_from(struct event_base *base,
    const struct sockaddr *sa, socklen_t salen, const struct sockaddr *src,
    socklen_t srclen, unsigned timeout_ms, const struct net_conn_cbs *cbs,
    void *arg, int *err_r);
/*
 * net_conn_accept - take a descriptor accepted by a net_listener (the
 * caller's until this returns; then the connection's, even on failure;
 * its TCP_NODELAY comes from the listener).  No `connected`
 * callback follows: it is connected.  NULL when out of memory.
 */
struct net_conn *net_conn_accept(struct event_base *base, int fd,
    const struct sockaddr *peer, socklen_t peerlen,
    const struct net_conn_cbs *cbs, void *arg);
void net_conn_free(struct net_conn **cp);

/* net_conn_peer_addr - the peer's address (borrowed). */
const struct sockaddr *net_conn_peer_addr(const struct net_conn *c);

/* net_conn_peer - "127.0.0.1:25" or "[::1]:25" (borrowed; formatted at
 * the first call). */
const char *net_conn_peer(struct net_conn *c);

/*
 * net_conn_line - the next input line, without its CRLF (a bare LF is
 * accepted), borrowed until net_conn_line_done().  max bounds the line
 * without its terminator.
 */
enum net_line net_conn_line(struct net_conn *c, size_t max, const char **p_r,
    size_t *len_r);
/* net_conn_line_crlf - did the line net_conn_line() just returned end in
 * CRLF?  (false: a bare LF, which a strict protocol may refuse) */
bool net_conn_line_crlf(const struct net_conn *c);
void net_conn_line_done(struct net_conn *c);
size_t net_conn_input_len(const struct net_conn *c);
/* net_conn_input - the raw input, for relaying bytes that are not lines
 * (do not mix with a line borrowed from net_conn_line()). */
struct evbuffer *net_conn_input(struct net_conn *c);

/* net_conn_output - append here to send; written as the socket allows. */
struct evbuffer *net_conn_output(struct net_conn *c);
/*
 * net_conn_send / net_conn_sendf - send len bytes (or a formatted text):
 * straight to the socket when nothing is queued before them and there is
 * no TLS, the rest queued like net_conn_output().  A short reply then
 * costs one send(2) instead of a write event armed and disarmed around a
 * writev(2).  Errors surface through `failed`, as for queued output.
 */
void net_conn_send(struct net_conn *c, const void *p, size_t len);
void net_conn_sendf(struct net_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * net_conn_cork / net_conn_uncork - while corked (calls nest), short
 * replies that would go straight to the socket are held (512 octets at
 * most) and go in one send(2) at the last uncork: the replies to a batch
 * of pipelined commands leave together.  Anything that queues output or
 * asks about it (net_conn_output, net_conn_output_len counts them,
 * net_conn_watch_drain, TLS) lets the held replies go on first, so their
 * order is kept.
 */
void net_conn_cork(struct net_conn *c);
void net_conn_uncork(struct net_conn *c);
/*
 * net_conn_shutdown - the owner sends nothing more (it closes once
 * drained): on a plain connection with nothing queued, the held replies
 * and the FIN leave in one segment (send(2) with MSG_MORE, then
 * shutdown(2) SHUT_WR), and whatever is sent afterwards is dropped.
 * Otherwise (TLS, queued output) only the held replies go on, and the FIN
 * waits for net_conn_free() as before.
 */
void net_conn_shutdown(struct net_conn *c);
/* net_conn_write_timeout - longest stall of a pending write. */
void net_conn_write_timeout(struct net_conn *c, unsigned ms);
/* net_conn_read_timeout - longest silence of the peer (0: none); on
 * expiry, `failed` with MR_ETIMEOUT. */
void net_conn_read_timeout(struct net_conn *c, unsigned ms);
/* net_conn_reading - stop or restart reading (flow control). */
void net_conn_reading(struct net_conn *c, bool on);
/*
 * net_conn_watch_drain - call `drained` once, when the output holds at
 * most low bytes (at once if it already does, from the loop).
 */
void net_conn_watch_drain(struct net_conn *c, size_t low);
/* net_conn_output_len - bytes not yet handed to the kernel (with TLS,
 * the records not yet written included). */
size_t net_conn_output_len(const struct net_conn *c);
/* net_conn_input_limit - stop reading while max bytes wait unread (the
 * rest waits in the kernel): bounds what a peer can make us hold. */
void net_conn_input_limit(struct net_conn *c, size_t max);

/*
 * net_tls_client_ctx - a client context: verify the peer's chain against
 * ca_file (or the system store when NULL or empty) when verify is set;
 * accept any certificate otherwise.  NULL with a message in err.
 */
SSL_CTX *net_tls_client_ctx(bool verify, const char *ca_file,
    struct mr_buf *err);
/*
 * net_conn_starttls - start a client handshake on the connection (after
 * the server's 220 to STARTTLS).  servername goes in SNI and, with verify,
 * must match the certificate.  Any input already buffered is refused
 * (RFC 3207 6: plain text must not survive into the TLS session): returns
 * MR_EPROTO then.  `tls_done` or `failed` follows.
 */
int net_conn_starttls(struct net_conn *c, SSL_CTX *ctx,
    const char *servername, bool verify);
/*
 * net_tls_server_ctx - a server context with the certificate chain and key
 * from PEM files.  NULL with a message in err.
 */
SSL_CTX *net_tls_server_ctx(const char *cert_file, const char *key_file,
    struct mr_buf *err);
/*
 * net_conn_accepttls - start a server handshake (POP3S at once, or after
 * "+OK" to STLS).  Buffered plain input is refused as in
 * net_conn_starttls().  `tls_done` or `failed` follows.
 */
int net_conn_accepttls(struct net_conn *c, SSL_CTX *ctx);
bool net_conn_is_tls(const struct net_conn *c);
/* net_conn_tls_desc - "TLSv1.3:TLS_AES_256_GCM_SHA384" or "none". */
const char *net_conn_tls_desc(const struct net_conn *c);

#endif
