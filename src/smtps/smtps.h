/*
 * smtps.h - the server side of one ESMTP session (SPEC D17, SMTP
 * injection): greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT,
 * VRFY, HELP, STARTTLS (RFC 3207) and AUTH PLAIN/LOGIN (RFC 4954), with
 * PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152) and
 * enhanced status codes (RFC 2034, RFC 3463), as an explicit state
 * machine over net_conn.  Policy, accounts and spooling are the owner's
 * (struct smtps_ops); the session enforces the protocol and the limits.
 *
 * Callbacks (all on the loop, never from inside an smtps_* call):
 *
 *   connect  optional: accept the connection?  ans->code 0 greets with
 *            220; 421 answers it and closes; a 5xx (554) answers it and
 *            then refuses every command but QUIT (RFC 5321 3.1)
 *   mail     optional: MAIL FROM after its syntax and SIZE passed; 0
 *            accepts, or a 4xx/5xx (421 ends the session)
 *   rcpt     required: each RCPT TO (relay policy: smtps_auth_user(),
 *            smtps_peer_addr()); 0 accepts, 2xx accepts with that text,
 *            4xx/5xx refuses (421 ends the session)
 *   auth     optional (without it AUTH is not offered): check user and
 *            pass, then call smtps_auth_result(), now or later
 *   message  a complete message at the final dot: the owner spools it,
 *            then calls smtps_reply_message(), now or later; no command
 *            is read meanwhile (pipelined ones wait in the buffer)
 *   closed   once, last: the session is over (reason for logs); every
 *            smtps_* call on it is a no-op from then on but smtps_free()
 *
 * Ownership: the owner frees the session with smtps_free(), inside
 * `closed` or any time after it (once its own pending work is done: an
 * answer to a closed session is ignored).  It may also free it at any
 * other time except from inside a callback, and then gets no `closed`.
 * Strings handed to callbacks are borrowed for the call; the body given
 * to `message` becomes the owner's (evbuffer_free); the envelope stays
 * valid until smtps_reply_message() or smtps_free().
 *
 * Errors: protocol errors are replies (house style rule 16).  Every 5xx
 * reply to a command counts as an error; at max_errors the session ends
 * with 421.  The session log is one line per session end and per message
 * (mr_log, module "smtps"); AUTH arguments are never logged.
 */
#ifndef MR_SMTPS_H
#define MR_SMTPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "smtps/smtp_cmd.h"

struct event_base;
struct evbuffer;
struct smtps;

/* Replies the client has not read: commands wait above HIGH, go on below
 * LOW. */
#define SMTPS_OUT_HIGH		(64 * 1024)
#define SMTPS_OUT_LOW		(16 * 1024)
/* Input a client can make us hold (pipelined commands, DATA ahead). */
#define SMTPS_INPUT_MAX		(64 * 1024)

struct smtps_params {
	const char	*hostname;	/* in the greeting and EHLO; borrowed */
	SSL_CTX		*tls_ctx;	/* STARTTLS when set; borrowed */
	bool		 auth_plaintext_ok; /* AUTH offered without TLS */
	size_t		 max_message_size; /* SIZE; 0: no limit */
	unsigned	 max_rcpts;	/* per message; 452 4.5.3 beyond */
	unsigned	 max_errors;	/* 421 at this many; 0: no limit */
	unsigned	 max_junk;	/* NOOP, RSET, VRFY, HELP past this
					 * many count as errors; 0: none do */
	unsigned	 max_auth_failures; /* 421 4.7.0 at this many */
	unsigned	 idle_timeout_ms; /* for each line of the client */
	unsigned	 data_timeout_ms; /* for the whole of DATA; 0: none */
	unsigned	 greet_delay_ms; /* hold the greeting: input before it
					 * is a protocol violation */
};

/* smtps_params_default - RFC 5321 4.5.3 figures and Postfix-like limits
 * (hostname "localhost", no TLS). */
void smtps_params_default(struct smtps_params *p);

/*
 * An answer chosen by a hook.  code 0 takes the default (a 2xx); text
 * and esc are borrowed until the hook returns; NULL takes a default; CR,
 * LF and other control characters in text are replaced.
 */
struct smtps_answer {
	int		 code;
	const char	*esc;		/* "5.7.1" */
	const char	*text;
};

/* The transaction so far (borrowed: see the ownership paragraph). */
struct smtps_envelope {
	const char		*helo;		/* "" before EHLO/HELO */
	bool			 esmtp;		/* EHLO rather than HELO */
	const char		*sender;	/* "" for <> */
	uint64_t		 size;		/* declared SIZE=, 0 if none */
	enum smtp_body		 body_type;	/* declared BODY= */
	bool			 eight_bit;	/* the body has octets > 127 */
	const char *const	*rcpts;		/* accepted recipients */
	size_t			 nrcpts;
	size_t			 body_len;	/* at `message` */
	const char		*auth_user;	/* NULL unless authenticated */
	bool			 tls;
	const char		*peer;		/* "127.0.0.1:4321" */
};

/* What a SASL exchange produced, for the `auth` hook (borrowed, wiped
 * after the call). */
struct smtps_auth_req {
	const char	*mech;		/* "PLAIN" or "LOGIN" */
	const char	*authzid;	/* "" unless PLAIN gave one */
	const char	*user;
	const char	*pass;
	size_t		 passl;
};

enum smtps_auth_status {
	SMTPS_AUTH_OK,		/* 235 2.7.0 */
	SMTPS_AUTH_FAIL,	/* 535 5.7.8, counts towards the limit */
	SMTPS_AUTH_TEMPFAIL,	/* 454 4.7.0 */
};

struct smtps_ops {
	void	(*connect)(struct smtps *s, void *arg,
		    struct smtps_answer *ans);
	void	(*mail)(struct smtps *s, void *arg,
		    const struct smtps_envelope *env, struct smtps_answer *ans);
	void	(*rcpt)(struct smtps *s, void *arg,
		    const struct smtps_envelope *env, const char *rcpt,
		    struct smtps_answer *ans);
	void	(*auth)(struct smtps *s, void *arg,
		    const struct smtps_auth_req *req);
	void	(*message)(struct smtps *s, void *arg,
		    const struct smtps_envelope *env, struct evbuffer *body);
	void	(*closed)(struct smtps *s, void *arg, const char *reason);
};

/*
 * smtps_accept - a session on the accepted fd (ours from now on, even
 * on failure).  params is copied (its pointers borrowed for the session's
 * life), ops borrowed.  The `connect` hook and the greeting follow from
 * the loop (after greet_delay_ms).  NULL only when out of memory.
 */
struct smtps *smtps_accept(struct event_base *base, int fd,
    const struct sockaddr *peer, socklen_t peerlen,
    const struct smtps_params *params, const struct smtps_ops *ops,
    void *arg);
void smtps_free(struct smtps **sp);

/*
 * smtps_reply_message - the owner's answer to `message`: 250 once the
 * message is safely spooled, or 4xx/5xx (421 ends the session).  esc and
 * text may be NULL (defaults); they are copied.
 */
void smtps_reply_message(struct smtps *s, int code, const char *esc,
    const char *text);
/*
 * smtps_auth_result - the owner's answer to `auth`, replied after
 * delay_ms (a failure's penalty; the session reads nothing meanwhile).
 */
void smtps_auth_result(struct smtps *s, enum smtps_auth_status st,
    unsigned delay_ms);
/* smtps_shutdown - answer 421 4.3.2 now and close (server stopping). */
void smtps_shutdown(struct smtps *s);

/* A unique id for logs: "0000018c2f3a0001". */
const char *smtps_id(const struct smtps *s);
const char *smtps_peer(const struct smtps *s);
const struct sockaddr *smtps_peer_addr(const struct smtps *s);
/* smtps_auth_user - the authenticated identity, or NULL. */
const char *smtps_auth_user(const struct smtps *s);
bool smtps_is_tls(const struct smtps *s);

#endif
