/*
 * smtpc.h - one SMTP client session to one destination host (SPEC D5):
 * greeting, EHLO (HELO as fallback), opportunistic or required STARTTLS,
 * then any number of transactions, pipelined (RFC 2920) when the server
 * offers PIPELINING, each recipient's reply classified.
 *
 * The session is driven by replies.  The owner (the delivery engine) hands
 * it transactions when it says it is ready; the session reports each
 * transaction back once every recipient has a result, and reports its own
 * end once.  With PIPELINING the next transaction's MAIL, RCPT and DATA
 * are written right behind the previous message's final dot, so a stream
 * of messages costs one write and one read each.
 *
 * Ownership: the owner creates the session with smtpc_new() and frees it
 * with smtpc_free(), either inside its `closed` callback or after it.  A
 * transaction (struct smtpc_txn) belongs to the owner; the session borrows
 * it from smtpc_send() until `done`.  Every callback runs on the loop;
 * after calling `closed` the session never touches itself again.
 *
 * Errors: results carry an SMTP code (0 when no reply was had), an
 * enhanced status code (the server's, or one made up here: 4.4.1 no
 * answer, 4.4.2 connection lost or timed out, 4.5.0 a reply that breaks
 * the protocol, 4.7.5 TLS) and a one-line text.  A 421 at any point ends
 * the session, and every recipient still pending is tried again later.
 * Replies of the wrong class (2xx or 3xx to DATA other than 354, 3xx to
 * MAIL, RCPT or the final dot) are protocol errors, never successes.
 *
 * An 8-bit message goes to a server without 8BITMIME as it is (as most
 * MTAs do); it is not converted.
 */
#ifndef MR_SMTPC_H
#define MR_SMTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "conf/conf.h"
#include "core/mr_buf.h"

struct event_base;
struct evbuffer;
struct smtpc;

struct smtpc_result {
	uint8_t		cls;	/* 2 delivered, 4 try again, 5 refused;
				 * 0 while pending */
	uint16_t	code;	/* SMTP reply code, 0 when none */
	char		esc[16];
	uint32_t	text;	/* offset of its text in the txn's texts */
};

struct smtpc_txn {
	/* Filled in by the owner; borrowed by the session. */
	const char		*mail_from;
	size_t			 nrcpts;
	const char		**rcpt;		/* addresses */
	struct evbuffer		*body;		/* dot-stuffed, CRLF, no final
						 * dot; drained when sent */
	size_t			 size;		/* for SIZE= */
	bool			 eight_bit;	/* for BODY=8BITMIME */

	/* Filled in by the session. */
	struct smtpc_result	*res;		/* nrcpts entries, owner's
						 * memory, zeroed */
	struct mr_buf		 texts;		/* NUL-separated reply texts */

	/* Private to the session. */
	unsigned		 sent_rcpts;
	unsigned		 accepted;
	bool			 mail_failed;
	bool			 body_sent;
};

/* smtpc_result_text - the text of a result (borrowed from txn). */
const char *smtpc_result_text(const struct smtpc_txn *txn,
    const struct smtpc_result *r);

/* Why a session ended. */
struct smtpc_end {
	int		 err;		/* 0 after a normal QUIT */
	bool		 usable;	/* it reached the ready state */
	bool		 tls_failed;	/* STARTTLS failed (policy may) */
	uint16_t	 code;		/* a reply that ended it, or 0 */
	char		 esc[16];
	const char	*text;		/* a sentence (borrowed) */
};

struct smtpc_ops {
	/* ready: smtpc_send() may be called now (also from here). */
	void	(*ready)(struct smtpc *s, void *arg);
	/* done: every recipient of txn has a result. */
	void	(*done)(struct smtpc *s, void *arg, struct smtpc_txn *txn);
	/* closed: the last callback; transactions were reported first. */
	void	(*closed)(struct smtpc *s, void *arg,
		    const struct smtpc_end *end);
};

struct smtpc_params {
	const struct mr_config	*cfg;		/* timeouts, limits, policy */
	SSL_CTX			*tls_ctx;	/* NULL: no TLS possible */
	const char		*helo;		/* our name */
	const char		*mx_name;	/* for SNI and verification */
	const struct sockaddr	*addr;
	socklen_t		 addrlen;
	bool			 no_tls;	/* skip STARTTLS (it failed) */
	const struct sockaddr	*src;		/* local address, or NULL */
	socklen_t		 srclen;
};

/*
 * smtpc_new - start a session: connect, read the greeting, EHLO,
 * STARTTLS.  p is copied (its strings too).  Returns NULL only when no
 * socket could be made, with *err_r.
 */
struct smtpc *smtpc_new(struct event_base *base, const struct smtpc_params *p,
    const struct smtpc_ops *ops, void *arg, int *err_r);
void smtpc_free(struct smtpc **sp);

/*
 * smtpc_send - start txn.  Allowed after `ready` (inside or after it) and
 * while smtpc_can_send() says so; returns -1 otherwise.
 */
int smtpc_send(struct smtpc *s, struct smtpc_txn *txn);
bool smtpc_can_send(const struct smtpc *s);
/* smtpc_quit - QUIT once the transactions in flight are done. */
void smtpc_quit(struct smtpc *s);

/*
 * smtpc_size_limit - the SIZE the server announced (RFC 1870), 0 for
 * none; the owner refuses bigger messages before smtpc_send().
 */
unsigned long smtpc_size_limit(const struct smtpc *s);

#endif
