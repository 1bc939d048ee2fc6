/*
 * msgsrc.h - where a delivery loop's recipients and their messages come
 * from.  Two sources exist: a campaign (a mapped list and a template,
 * campsrc.c) and the relay (messages injected over SMTP and kept in the
 * spool, relay.c).  The engine knows recipients only as 32-bit indices
 * into its source, and asks the source for everything else.
 *
 * A source is shared by every delivery loop of a campaign (or of the
 * relay): every operation may be called from several threads at once,
 * each with its own scratch (made by scratch_new on the loop's thread).
 * What a recipient's operations return stays valid while the recipient
 * is not final (`final` may recycle it).
 */
#ifndef MR_MSGSRC_H
#define MR_MSGSRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct msgsrc_scratch;

/* render's failures. */
#define MSGSRC_PERM	(-1)	/* the message is gone or damaged */
#define MSGSRC_TEMP	(-2)	/* it cannot be read now */

/* How a recipient became final, for final(). */
struct msgsrc_final {
	bool		 bounced;	/* else delivered */
	unsigned	 code;		/* the server's reply code, 0: none */
	const char	*dsn;		/* enhanced status code, or NULL */
	const char	*reply;		/* the reply's text, or our reason */
	const char	*mx;		/* the server that answered, or NULL */
};

/* What a rendering adds to every message (per transaction). */
struct msgsrc_stamp {
	const char	*message_id;	/* "<...@...>" */
	const char	*date;		/* RFC 5322 date-time */
};

struct msgsrc_ops {
	struct msgsrc_scratch *(*scratch_new)(void *arg);
	void	(*scratch_free)(void *arg, struct msgsrc_scratch *sc);
	/* The domain id of recipient r, and a domain's name (stable). */
	uint32_t (*domain)(void *arg, uint32_t r);
	const char *(*domain_name)(void *arg, uint32_t id);
	/* The source pool a domain's mail goes out from (shape.h; optional:
	 * without it, the campaign's). */
	unsigned (*domain_pool)(void *arg, uint32_t id);
	/* Recipient r's address (borrowed until sc is used again). */
	void	(*address)(void *arg, struct msgsrc_scratch *sc, uint32_t r,
		    const char **p_r, size_t *n_r);
	/* Its line in the list, for the accounting file (0: none). */
	unsigned (*line)(void *arg, uint32_t r);
	/* Equal and non-zero: the two recipients get byte-identical
	 * messages (one transaction may carry both). */
	uint64_t (*fingerprint)(void *arg, uint32_t r);
	/* The envelope sender for r ("" for <>). */
	const char *(*mail_from)(void *arg, uint32_t r);
	/*
	 * render - r's message into out, dot-stuffed with CRLF line ends
	 * when stuff is set (else as the recipient reads it).  Returns 0
	 * with *size_r and *eight_r, or MSGSRC_PERM (the recipient bounces)
	 * or MSGSRC_TEMP (tried again later) with a reason (borrowed from
	 * sc) in *why_r.
	 */
	int	(*render)(void *arg, struct msgsrc_scratch *sc, uint32_t r,
		    const struct msgsrc_stamp *st, bool stuff,
		    struct evbuffer *out, size_t *size_r, bool *eight_r,
		    const char **why_r);
	/* received - wall-clock ms when r's message was accepted, the start
	 * of its queue.max_age (optional: without it, the campaign's start
	 * is). */
	uint64_t (*received)(void *arg, uint32_t r);
	/* queue_id - the id the source gave r's message (the relay's spool
	 * id, told to the client in its 250), for the accounting file's
	 * message_id column (optional: without it, the Message-ID the
	 * engine stamps). */
	uint64_t (*queue_id)(void *arg, uint32_t r);
	/* final - r was delivered or bounced for good (optional). */
	void	(*final)(void *arg, uint32_t r, const struct msgsrc_final *f);
	/* Stamps: the source's own Message-ID and Date, or the stamp's. */
	bool	 stamps;
};

struct msgsrc {
	const struct msgsrc_ops	*ops;
	void			*arg;
};

#endif
