/*
 * pop3_cmd.h - POP3 commands (RFC 1939, RFC 2449, RFC 2595, RFC 5034): a
 * pure parser of one command line into a verb and its arguments, with
 * the limits of RFC 2449 section 4 enforced.
 *
 * Framing is the caller's: it hands over one line without its CRLF, read
 * with a limit of POP3_LINE_MAX.  Nothing is allocated; the arguments
 * point into the line.
 */
#ifndef MR_POP3_CMD_H
#define MR_POP3_CMD_H

#include <stddef.h>
#include <stdint.h>

/* RFC 2449 4: a command is at most 255 octets with its CRLF. */
#define POP3_LINE_MAX	253
/* RFC 2449 4: an argument is at most 40 octets (PASS and AUTH excepted:
 * passwords may be longer and hold spaces, SASL responses are base64). */
#define POP3_ARG_MAX	40
/* Mailbox names (USER, APOP) are often addresses longer than 40 octets:
 * accepted up to this length. */
#define POP3_NAME_MAX	128

enum pop3_verb {
	POP3_USER,
	POP3_PASS,
	POP3_APOP,
	POP3_AUTH,
	POP3_STAT,
	POP3_LIST,
	POP3_RETR,
	POP3_DELE,
	POP3_NOOP,
	POP3_RSET,
	POP3_QUIT,
	POP3_TOP,
	POP3_UIDL,
	POP3_CAPA,
	POP3_STLS,
	POP3_NVERBS,
};

struct pop3_cmd {
	enum pop3_verb	 verb;
	unsigned	 argc;
	const char	*argv[2];	/* into the line, not terminated */
	size_t		 argl[2];
	uint32_t	 num[2];	/* numeric arguments, when numeric */
	/* PASS: the whole rest of the line (a password may hold spaces). */
	const char	*rest;
	size_t		 restl;
};

enum pop3_parse {
	POP3_OK = 0,
	POP3_UNKNOWN = -1,	/* no such command */
	POP3_SYNTAX = -2,	/* known command, bad arguments */
};

/*
 * pop3_cmd_parse - line (len bytes, no CRLF) into *cmd.  On error *why_r
 * is a short sentence for the "-ERR" reply (static).
 */
enum pop3_parse pop3_cmd_parse(const char *line, size_t len,
    struct pop3_cmd *cmd, const char **why_r);

/*
 * pop3_sasl_plain - decode an AUTH PLAIN response (RFC 4616: base64 of
 * "authzid NUL authcid NUL password") into buf (bufsize at least
 * POP3_LINE_MAX).  On POP3_PLAIN_OK the identity (*user, *userl) and the
 * password point into buf, which the caller wipes after use.  An
 * authorization identity other than the authentication one, an empty or
 * over-long (POP3_NAME_MAX) identity with a space, CR or LF in it, or an
 * empty password is POP3_PLAIN_IDENTITY; "*" is POP3_PLAIN_CANCEL.
 */
enum pop3_plain {
	POP3_PLAIN_OK,
	POP3_PLAIN_CANCEL,
	POP3_PLAIN_MALFORMED,
	POP3_PLAIN_IDENTITY,
};
enum pop3_plain pop3_sasl_plain(const char *b64, size_t len,
    unsigned char *buf, size_t bufsize, const char **user, size_t *userl,
    const char **pw, size_t *pwl);

/* pop3_verb_name - "USER", "PASS", ... */
const char *pop3_verb_name(enum pop3_verb v);

/*
 * pop3_multiline - does a +OK reply to cmd carry a multi-line body
 * (LIST and UIDL without an argument, RETR, TOP, CAPA)?
 */
int pop3_multiline(const struct pop3_cmd *cmd);

#endif
