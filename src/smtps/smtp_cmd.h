/*
 * smtp_cmd.h - SMTP server commands (RFC 5321, with SIZE RFC 1870,
 * 8BITMIME RFC 6152, AUTH RFC 4954): a pure parser of one command line
 * into a verb and its arguments, the SASL PLAIN (RFC 4616) and LOGIN
 * responses, and the DATA line rules (dot-unstuffing, octets a message
 * must not hold).
 *
 * Framing is the caller's: it hands over one line without its CRLF, read
 * with a limit of SMTP_CMD_LINE_MAX (commands) or SMTP_TEXT_LINE_MAX (DATA).
 * Nothing is allocated: arguments point into the line, decoded SASL
 * fields into the caller's buffer (which the caller wipes).  Pure and
 * thread-safe.
 */
#ifndef MR_SMTP_CMD_H
#define MR_SMTP_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1.4: a command line is 512 octets with its CRLF. */
#define SMTP_CMD_LINE_MAX	510
/* RFC 5321 4.5.3.1.6: a text line is 1000 octets with its CRLF. */
#define SMTP_TEXT_LINE_MAX	998
/* RFC 5321 4.5.3.1.2: a domain is at most 255 octets. */
#define SMTP_DOMAIN_MAX		255
/* A SASL response line (base64 of credentials) may be longer than a
 * command line. */
#define SMTP_SASL_LINE_MAX	2048
/* RFC 4616 2: authzid, authcid and passwd are at most 255 octets each. */
#define SMTP_SASL_FIELD_MAX	255

enum smtp_verb {
	SMTP_HELO,
	SMTP_EHLO,
	SMTP_MAIL,
	SMTP_RCPT,
	SMTP_DATA,
	SMTP_RSET,
	SMTP_NOOP,
	SMTP_QUIT,
	SMTP_VRFY,
	SMTP_EXPN,
	SMTP_HELP,
	SMTP_STARTTLS,
	SMTP_AUTH,
	SMTP_NVERBS,
};

enum smtp_body {
	SMTP_BODY_NONE,		/* no BODY= parameter */
	SMTP_BODY_7BIT,
	SMTP_BODY_8BITMIME,
};

struct smtp_cmd {
	enum smtp_verb	 verb;
	/*
	 * HELO/EHLO: the domain; VRFY, EXPN, HELP, NOOP: the text (may be
	 * empty); AUTH: the mechanism.  Into the line, not terminated.
	 */
	const char	*arg;
	size_t		 argl;
	/* AUTH: the initial response ("=" for an empty one), when given. */
	const char	*resp;
	size_t		 respl;
	bool		 has_resp;
	/*
	 * MAIL, RCPT: the mailbox without angle brackets and source route;
	 * empty for the null reverse-path "<>" (MAIL only).
	 */
	const char	*addr;
	size_t		 addrl;
	/* MAIL parameters. */
	bool		 has_size;
	uint64_t	 size;		/* SIZE= (RFC 1870) */
	enum smtp_body	 body;		/* BODY= (RFC 6152) */
	const char	*auth;		/* AUTH= (RFC 4954 5), xtext or "<>" */
	size_t		 authl;
};

enum smtp_parse {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_UNKNOWN = -1,	/* no such command: 500 5.5.2 */
	SMTP_PARSE_SYNTAX = -2,		/* bad arguments: 501 5.5.4 */
	SMTP_PARSE_PARAM = -3,		/* a MAIL/RCPT parameter that is not
					 * offered: 555 5.5.4 */
	SMTP_PARSE_ADDR = -4,		/* a bad mailbox: 501 5.1.7 (MAIL)
					 * or 501 5.1.3 (RCPT) */
};

/*
 * smtp_cmd_parse - line (len bytes, no CRLF) into *cmd.  Verbs and the
 * FROM:/TO: keywords are case-insensitive; spaces after the colon and a
 * path without angle brackets are tolerated (as Postfix does with
 * strict_rfc821_envelopes = no); a source route is dropped (RFC 5321
 * 4.1.1.3 and appendix C); "RCPT TO:<Postmaster>" needs no domain.  On
 * error *why_r is a short sentence for the reply (static).
 */
enum smtp_parse smtp_cmd_parse(const char *line, size_t len,
    struct smtp_cmd *cmd, const char **why_r);

/* smtp_verb_name - "HELO", "EHLO", ... */
const char *smtp_verb_name(enum smtp_verb v);

/*
 * smtp_base64_decode - strict base64 (RFC 4648 4, padded): len a
 * multiple of 4, only the alphabet, "=" only as the last one or two
 * octets.  Writes at most outsize bytes to out and the count to *outl_r.
 * 0, or -1 when malformed or too big for out.
 */
int smtp_base64_decode(const char *in, size_t len, unsigned char *out,
    size_t outsize, size_t *outl_r);

enum smtp_sasl {
	SMTP_SASL_OK,
	SMTP_SASL_CANCEL,	/* "*": the client gave up (RFC 4954 4) */
	SMTP_SASL_MALFORMED,	/* bad base64, or not the mechanism's shape */
};

/* The fields of a decoded SASL response, pointing into the caller's
 * buffer (not terminated). */
struct smtp_sasl_creds {
	const char	*authzid;	/* PLAIN: "" when absent */
	size_t		 authzidl;
	const char	*user;
	size_t		 userl;
	const char	*pass;
	size_t		 passl;
};

/*
 * smtp_sasl_plain - decode a PLAIN response (RFC 4616: base64 of
 * "[authzid] NUL authcid NUL passwd"; "=" is an empty response, which is
 * malformed) into buf (bufsize at least 3 * SMTP_SASL_LINE_MAX / 4).
 * authcid and passwd must be 1..255 octets; no field may hold a control
 * character other than in the password.  The caller judges an authzid.
 */
enum smtp_sasl smtp_sasl_plain(const char *b64, size_t len,
    unsigned char *buf, size_t bufsize, struct smtp_sasl_creds *creds);

/*
 * smtp_sasl_login_field - decode one LOGIN response (a user name or a
 * password, base64) into buf: 1..255 octets without NUL, and for a name
 * (is_name) without any control octet either, as PLAIN's identities.
 * *field_r and *fieldl_r point into buf.
 */
enum smtp_sasl smtp_sasl_login_field(const char *b64, size_t len,
    bool is_name, unsigned char *buf, size_t bufsize, const char **field_r,
    size_t *fieldl_r);

enum smtp_data {
	SMTP_DATA_TEXT,		/* a line of the message */
	SMTP_DATA_END,		/* "." alone: the end of the message */
};

/*
 * smtp_data_unstuff - one DATA line (no CRLF): SMTP_DATA_END for ".",
 * else the text with a leading dot removed (RFC 5321 4.5.2) in
 * (*p_r, *len_r).
 */
enum smtp_data smtp_data_unstuff(const char *line, size_t len,
    const char **p_r, size_t *len_r);

/* What a text line holds that matters to a message's fate. */
enum {
	SMTP_LINE_NUL = 1u << 0,	/* a NUL octet */
	SMTP_LINE_CR = 1u << 1,		/* a CR inside the line (bare CR) */
	SMTP_LINE_8BIT = 1u << 2,	/* an octet over 127 */
};

/* smtp_line_flags - SMTP_LINE_* of a line without its line end. */
unsigned smtp_line_flags(const char *p, size_t n);

#endif
