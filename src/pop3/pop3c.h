/*
 * pop3c.h - a POP3 client connection to a backend server (RFC 1939,
 * RFC 2449, RFC 2595): connect, TLS from the first byte or after STLS,
 * the greeting, XCLIENT with the end client's address when the greeting
 * says the server trusts us (Dovecot's "[XCLIENT]"), then commands whose
 * replies come back in order through callbacks.
 *
 * A command's reply is its status line (`status`), then, for a command
 * sent with a body kind and answered +OK, its multi-line body: line by
 * line with the dot-stuffing undone (POP3C_LINES, for listings), or moved
 * raw, dot-stuffed and with its terminating ".", into a buffer the caller
 * names (POP3C_RAW, for relaying a message without holding it).  `done`
 * ends every reply.  Commands queue; they are sent one at a time unless
 * pop3c_pipelining() allows sending them together (RFC 2449 PIPELINING).
 *
 * Timeouts: while a reply is due, the server may be silent at most
 * timeout_ms; idle, for as long as the owner likes.  After `failed` the
 * connection is dead; the owner frees it with pop3c_free(), which may be
 * called from any callback.
 */
#ifndef MR_POP3_POP3C_H
#define MR_POP3_POP3C_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

struct event_base;
struct evbuffer;
struct pop3c;

enum pop3c_tls {
	POP3C_TLS_NONE,		/* plain */
	POP3C_TLS_STLS,		/* plain, then STLS: required */
	POP3C_TLS_IMPLICIT,	/* TLS before the greeting (POP3S) */
};

enum pop3c_body {
	POP3C_NONE,		/* a status line only */
	POP3C_LINES,		/* +OK: a body, given line by line */
	POP3C_RAW,		/* +OK: a body, moved raw into raw_to */
};

struct pop3c_params {
	const struct sockaddr	*addr;
	socklen_t		 addrlen;
	int			 tls;		/* enum pop3c_tls */
	SSL_CTX			*ctx;		/* client context, for TLS */
	const char		*servername;	/* SNI and verification */
	bool			 verify;
	unsigned		 timeout_ms;	/* connect and each reply */
	const struct sockaddr	*client;	/* for XCLIENT, or NULL */
};

struct pop3c_cbs {
	/* ready (optional): greeted (and TLS, XCLIENT done); commands
	 * queued before go now.  line: needed for POP3C_LINES only. */
	void	(*ready)(struct pop3c *c, void *arg, const char *greeting,
		    size_t len);
	void	(*status)(struct pop3c *c, void *arg, void *tag, bool ok,
		    const char *line, size_t len);
	/* line: POP3C_LINES body lines, unstuffed, without CRLF. */
	void	(*line)(struct pop3c *c, void *arg, void *tag,
		    const char *line, size_t len);
	/* moved: POP3C_RAW bytes were appended to raw_to (flow control:
	 * the owner may pause with pop3c_reading()). */
	void	(*moved)(struct pop3c *c, void *arg, void *tag);
	void	(*done)(struct pop3c *c, void *arg, void *tag);
	/* failed: why is a sentence for logs (no secret in it). */
	void	(*failed)(struct pop3c *c, void *arg, const char *why);
};

/*
 * pop3c_open - start connecting.  cbs is borrowed for the connection's
 * life.  NULL (and *why_r, static) when not even a socket can be had.
 */
struct pop3c *pop3c_open(struct event_base *base,
    const struct pop3c_params *p, const struct pop3c_cbs *cbs, void *arg,
    const char **why_r);
void pop3c_free(struct pop3c **cp);

/*
 * pop3c_send - queue the command text (no CRLF; a line of at most 510
 * octets) with what its reply carries; tag comes back in the callbacks.
 * For POP3C_RAW, raw_to (borrowed until `done`) receives the body.
 * Returns -1 when the command is too long or the queue is full (64).
 * The text may hold a password: it is wiped from our memory once sent.
 */
int pop3c_send(struct pop3c *c, enum pop3c_body body,
    struct evbuffer *raw_to, void *tag, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* pop3c_pipelining - send queued commands without waiting for replies. */
void pop3c_pipelining(struct pop3c *c, bool on);
/* pop3c_reading - stop or restart reading (flow control of RAW). */
void pop3c_reading(struct pop3c *c, bool on);
/* pop3c_pending - commands sent or queued whose reply is not done. */
size_t pop3c_pending(const struct pop3c *c);
/* pop3c_is_ok - is this status line "+OK"? */
bool pop3c_is_ok(const char *line, size_t len);

#endif
