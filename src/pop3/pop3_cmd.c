/*
 * pop3_cmd.c - the POP3 command table and line parser (see pop3_cmd.h).
 */
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "pop3/pop3_cmd.h"

/* Argument shapes. */
enum pop3_args {
	A_NONE,		/* nothing */
	A_NAME,		/* one word */
	A_REST,		/* the rest of the line, at least one octet */
	A_TWO_WORDS,	/* APOP name digest */
	A_MECH,		/* AUTH mechanism [initial-response] */
	A_MSG,		/* one message number */
	A_OPT_MSG,	/* an optional message number */
	A_MSG_N,	/* TOP msg n */
};

static const struct {
	const char	*name;
	enum pop3_args	 args;
} pop3_verbs[POP3_NVERBS] = {
	[POP3_USER] = { "USER", A_NAME },
	[POP3_PASS] = { "PASS", A_REST },
	[POP3_APOP] = { "APOP", A_TWO_WORDS },
	[POP3_AUTH] = { "AUTH", A_MECH },
	[POP3_STAT] = { "STAT", A_NONE },
	[POP3_LIST] = { "LIST", A_OPT_MSG },
	[POP3_RETR] = { "RETR", A_MSG },
	[POP3_DELE] = { "DELE", A_MSG },
	[POP3_NOOP] = { "NOOP", A_NONE },
	[POP3_RSET] = { "RSET", A_NONE },
	[POP3_QUIT] = { "QUIT", A_NONE },
	[POP3_TOP] = { "TOP", A_MSG_N },
	[POP3_UIDL] = { "UIDL", A_OPT_MSG },
	[POP3_CAPA] = { "CAPA", A_NONE },
	[POP3_STLS] = { "STLS", A_NONE },
};

const char *
pop3_verb_name(enum pop3_verb v)
{
	return v < POP3_NVERBS ? pop3_verbs[v].name : "?";
}

/* pop3_number - a message number or line count: digits, no sign, fits
 * 32 bits.  msg: must be at least 1 (RFC 1939 numbers from 1). */
static int
pop3_number(const char *p, size_t n, int msg, uint32_t *v_r)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || n > 10)
		return -1;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (v > UINT32_MAX || (msg && v == 0))
		return -1;
	*v_r = (uint32_t)v;
	return 0;
}

/* pop3_words - split on single spaces (RFC 1939: one space between
 * keyword and argument); empty words are errors. */
static int
pop3_words(const char *p, size_t n, struct pop3_cmd *cmd, unsigned max)
{
	const char *sp;

	cmd->argc = 0;
	while (n > 0) {
		if (cmd->argc == max)
			return -1;
		sp = memchr(p, ' ', n);
		cmd->argv[cmd->argc] = p;
		cmd->argl[cmd->argc] = sp ? (size_t)(sp - p) : n;
		if (cmd->argl[cmd->argc] == 0)
			return -1;
		cmd->argc++;
		if (sp == NULL)
			break;
		n -= (size_t)(sp - p) + 1;
		p = sp + 1;
		if (n == 0)
			return -1;	/* a trailing space */
	}
	return 0;
}

enum pop3_parse
pop3_cmd_parse(const char *line, size_t len, struct pop3_cmd *cmd,
    const char **why_r)
{
	const char *sp, *args;
	size_t vlen, alen, i;
	unsigned v;

	memset(cmd, 0, sizeof(*cmd));
	*why_r = "unknown command";
	if (len > POP3_LINE_MAX) {
		*why_r = "command line too long";
		return POP3_SYNTAX;
	}
	for (i = 0; i < len; i++) {
		if (line[i] == '\0' || line[i] == '\r' || line[i] == '\n') {
			*why_r = "control characters in the command";
			return POP3_SYNTAX;
		}
	}
	sp = memchr(line, ' ', len);
	vlen = sp ? (size_t)(sp - line) : len;
	args = sp ? sp + 1 : line + len;
	alen = sp ? len - vlen - 1 : 0;
	for (v = 0; v < POP3_NVERBS; v++)
		if (strlen(pop3_verbs[v].name) == vlen &&
		    strncasecmp(pop3_verbs[v].name, line, vlen) == 0)
			break;
	if (v == POP3_NVERBS)
		return POP3_UNKNOWN;
	cmd->verb = (enum pop3_verb)v;
	*why_r = "invalid arguments";
	if (sp != NULL && alen == 0 && pop3_verbs[v].args != A_REST)
		return POP3_SYNTAX;	/* "STAT " */
	switch (pop3_verbs[v].args) {
	case A_NONE:
		return alen == 0 ? POP3_OK : POP3_SYNTAX;
	case A_REST:
		if (alen == 0)
			return POP3_SYNTAX;
		cmd->rest = args;
		cmd->restl = alen;
		return POP3_OK;
	case A_NAME:
		if (pop3_words(args, alen, cmd, 1) != 0 || cmd->argc != 1)
			return POP3_SYNTAX;
		break;
	case A_TWO_WORDS:
		if (pop3_words(args, alen, cmd, 2) != 0 || cmd->argc != 2)
			return POP3_SYNTAX;
		break;
	case A_MECH:
		if (pop3_words(args, alen, cmd, 2) != 0 || cmd->argc < 1 ||
		    cmd->argl[0] > POP3_ARG_MAX)
			return POP3_SYNTAX;
		return POP3_OK;	/* the SASL response may be long */
	case A_MSG:
	case A_OPT_MSG:
	case A_MSG_N:
		if (pop3_words(args, alen, cmd, 2) != 0)
			return POP3_SYNTAX;
		if (pop3_verbs[v].args == A_MSG && cmd->argc != 1)
			return POP3_SYNTAX;
		if (pop3_verbs[v].args == A_OPT_MSG && cmd->argc > 1)
			return POP3_SYNTAX;
		if (pop3_verbs[v].args == A_MSG_N && cmd->argc != 2)
			return POP3_SYNTAX;
		for (i = 0; i < cmd->argc; i++)
			if (pop3_number(cmd->argv[i], cmd->argl[i], i == 0,
			    &cmd->num[i]) != 0)
				return POP3_SYNTAX;
		return POP3_OK;
	}
	for (i = 0; i < cmd->argc; i++)
		if (cmd->argl[i] > (i == 0 ? POP3_NAME_MAX : POP3_ARG_MAX)) {
			*why_r = "argument too long";
			return POP3_SYNTAX;
		}
	return POP3_OK;
}

int
pop3_multiline(const struct pop3_cmd *cmd)
{
	switch (cmd->verb) {
	case POP3_LIST:
	case POP3_UIDL:
		return cmd->argc == 0;
	case POP3_RETR:
	case POP3_TOP:
	case POP3_CAPA:
		return 1;
	default:
		return 0;
	}
}

enum pop3_plain
pop3_sasl_plain(const char *b64, size_t len, unsigned char *buf,
    size_t bufsize, const char **user, size_t *userl, const char **pw,
    size_t *pwl)
{
	const unsigned char *authz, *authc, *pass, *end;
	size_t pad = 0, idlen;
	int n;

	if (len == 1 && b64[0] == '*')
		return POP3_PLAIN_CANCEL;
	if (len == 0 || len % 4 != 0 || len / 4 * 3 > bufsize)
		return POP3_PLAIN_MALFORMED;
	n = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)len);
	if (b64[len - 1] == '=')
		pad++;
	if (len >= 2 && b64[len - 2] == '=')
		pad++;
	if (n < 0 || (size_t)n < pad)
		return POP3_PLAIN_MALFORMED;
	n -= (int)pad;
	authz = buf;
	end = buf + n;
	authc = memchr(authz, '\0', (size_t)(end - authz));
	pass = authc ? memchr(authc + 1, '\0', (size_t)(end - authc - 1)) :
	    NULL;
	if (authc == NULL || pass == NULL)
		return POP3_PLAIN_MALFORMED;
	authc++;
	pass++;
	idlen = (size_t)(pass - 1 - authc);
	/* Acting for another identity (authzid) is not offered. */
	if (authc - 1 != authz && ((size_t)(authc - 1 - authz) != idlen ||
	    memcmp(authz, authc, idlen) != 0))
		return POP3_PLAIN_IDENTITY;
	if (idlen == 0 || idlen > POP3_NAME_MAX || pass == end ||
	    memchr(authc, '\r', (size_t)(end - authc)) ||
	    memchr(authc, '\n', (size_t)(end - authc)) ||
	    memchr(authc, ' ', idlen))
		return POP3_PLAIN_IDENTITY;
	*user = (const char *)authc;
	*userl = idlen;
	*pw = (const char *)pass;
	*pwl = (size_t)(end - pass);
	return POP3_PLAIN_OK;
}
