/*
 * pop3s.h - the client side of a POP3 server session, shared by the edge
 * proxy and the aggregating proxy: the accepted connection with its idle
 * timer and input limit, the greeting (after TLS on a POP3S port), the
 * command loop (lines of at most 255 octets, parsed by pop3_cmd), STLS,
 * replies held back while the client does not read them, a client that
 * half-closes after its last commands, and closing after the last reply.
 *
 * The owner keeps its own state machine and is called back (struct
 * pop3s_ops, all on the loop):
 *
 *   greet    send the greeting (once; after TLS on a POP3S port)
 *   ready    may the next command be taken now?  (false while one waits
 *            for a backend or a registry)
 *   line     optional: a raw line before parsing; true when consumed
 *            (a SASL continuation)
 *   command  one parsed command; line is the raw text, borrowed
 *   bad      a line that did not parse: the owner answers it
 *   drained  optional: the client read its replies down to the low mark;
 *            true when the owner resumed something of its own (a relayed
 *            body), false to go on with the client's commands
 *   gone     the connection is over (closed after its last reply, or
 *            dropped): the owner frees its session and, with it, this
 *            one (pop3s_free)
 *
 * The owner calls pop3s_process() whenever it becomes ready again.
 */
#ifndef MR_POP3_POP3S_H
#define MR_POP3_POP3S_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "pop3/pop3_cmd.h"

struct event_base;
struct net_conn;
struct pop3s;

/* Replies the client has not read: commands wait above HIGH, and go on
 * again below LOW. */
#define POP3S_OUT_HIGH	(256 * 1024)
#define POP3S_OUT_LOW	(64 * 1024)
/* Input a client can make us hold (pipelined commands). */
#define POP3S_INPUT_MAX	(16 * 1024)

struct pop3s_ops {
	void	(*greet)(void *arg);
	bool	(*ready)(void *arg);
	bool	(*line)(void *arg, const char *line, size_t len);
	void	(*command)(void *arg, const struct pop3_cmd *cmd,
		    const char *line, size_t len);
	void	(*bad)(void *arg, enum pop3_parse pr, const char *why);
	bool	(*drained)(void *arg);
	void	(*gone)(void *arg);
};

/*
 * pop3s_refuse - answer a connection over the session limit with a
 * temporary -ERR and close it (fd is ours then).
 */
void pop3s_refuse(int fd);
/*
 * pop3s_accept - a session on the accepted fd (ours from now on, even
 * on failure); ops is borrowed for the session's life.  Nothing is sent
 * until pop3s_start().  NULL only when out of memory (fd closed).
 */
struct pop3s *pop3s_accept(struct event_base *base, int fd,
    const struct sockaddr *peer, socklen_t peerlen, unsigned idle_ms,
    const struct pop3s_ops *ops, void *arg);
/*
 * pop3s_start - greet now, or with implicit set (a POP3S port) after the
 * TLS handshake with that context; a handshake that cannot start ends in
 * `gone`.
 */
void pop3s_start(struct pop3s *s, SSL_CTX *implicit);
void pop3s_free(struct pop3s **sp);

/* pop3s_conn - the connection, for replies (net_conn_send*). */
struct net_conn *pop3s_conn(struct pop3s *s);
/* pop3s_process - take the client's commands while the owner is ready. */
void pop3s_process(struct pop3s *s);
/*
 * pop3s_stls - answer STLS (+OK) and start TLS with ctx; commands wait
 * until it is done.  The owner checks first that STLS is allowed now.
 */
void pop3s_stls(struct pop3s *s, SSL_CTX *ctx);
/* pop3s_close - stop reading; `gone` follows once the replies are out. */
void pop3s_close(struct pop3s *s);
bool pop3s_closing(const struct pop3s *s);

#endif
