/*
 * smtp_cmd.c - the SMTP server's command table and line parser, SASL
 * response decoding and DATA line rules (see smtp_cmd.h).
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "smtp/addr.h"
#include "smtps/smtp_cmd.h"

/* Argument shapes. */
enum smtp_args {
	SMTP_A_NONE,		/* nothing */
	SMTP_A_DOMAIN,		/* HELO/EHLO: the rest, required */
	SMTP_A_TEXT,		/* the rest, optional (NOOP, HELP) */
	SMTP_A_REQ_TEXT,	/* the rest, required (VRFY, EXPN) */
	SMTP_A_FROM,		/* FROM:<path> [params] */
	SMTP_A_TO,		/* TO:<path> [params] */
	SMTP_A_MECH,		/* mechanism [initial-response] */
};

static const struct {
	const char	*name;
	enum smtp_args	 args;
} smtp_verbs[SMTP_NVERBS] = {
	[SMTP_HELO] = { "HELO", SMTP_A_DOMAIN },
	[SMTP_EHLO] = { "EHLO", SMTP_A_DOMAIN },
	[SMTP_MAIL] = { "MAIL", SMTP_A_FROM },
	[SMTP_RCPT] = { "RCPT", SMTP_A_TO },
	[SMTP_DATA] = { "DATA", SMTP_A_NONE },
	[SMTP_RSET] = { "RSET", SMTP_A_NONE },
	[SMTP_NOOP] = { "NOOP", SMTP_A_TEXT },
	[SMTP_QUIT] = { "QUIT", SMTP_A_NONE },
	[SMTP_VRFY] = { "VRFY", SMTP_A_REQ_TEXT },
	[SMTP_EXPN] = { "EXPN", SMTP_A_REQ_TEXT },
	[SMTP_HELP] = { "HELP", SMTP_A_TEXT },
	[SMTP_STARTTLS] = { "STARTTLS", SMTP_A_NONE },
	[SMTP_AUTH] = { "AUTH", SMTP_A_MECH },
};

/* RFC 4422 3.1: a mechanism name is 1..20 of A-Z 0-9 - _. */
#define SMTP_MECH_MAX	20

const char *
smtp_verb_name(enum smtp_verb v)
{
	return v < SMTP_NVERBS ? smtp_verbs[v].name : "?";
}

static bool
smtp_is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* smtp_skip_spaces - past spaces and tabs from *i (bounded by n). */
static void
smtp_skip_spaces(const char *p, size_t n, size_t *i)
{
	while (*i < n && smtp_is_space(p[*i]))
		(*i)++;
}

/*
 * smtp_path - the path at p[*i..n): "<...>" (honouring quoted strings,
 * which may hold '>') or, tolerated, a bare address up to a space.  The
 * mailbox goes in cmd->addr with any source route ("@a,@b:") removed.
 */
static enum smtp_parse
smtp_path(const char *p, size_t n, size_t *i, struct smtp_cmd *cmd,
    const char **why_r)
{
	size_t start, end, j;
	bool quoted = false;
	const char *colon;

	if (*i < n && p[*i] == '<') {
		start = ++(*i);
		for (j = start; j < n; j++) {
			if (quoted && p[j] == '\\') {
				j++;		/* the quoted pair */
				continue;
			}
			if (p[j] == '"')
				quoted = !quoted;
			else if (p[j] == '>' && !quoted)
				break;
		}
		if (j >= n) {
			*why_r = "Syntax: missing '>' after the address";
			return SMTP_PARSE_SYNTAX;
		}
		end = j;
		*i = j + 1;
	} else {
		start = *i;
		while (*i < n && !smtp_is_space(p[*i]))
			(*i)++;
		end = *i;
		if (end == start) {
			*why_r = "Syntax: missing address";
			return SMTP_PARSE_SYNTAX;
		}
	}
	/* A source route "@one,@two:mailbox" is accepted and ignored. */
	if (end > start && p[start] == '@') {
		colon = memchr(p + start, ':', end - start);
		if (colon == NULL) {
			*why_r = "Syntax: bad source route";
			return SMTP_PARSE_ADDR;
		}
		start = (size_t)(colon - p) + 1;
		/* A route to nothing is not the null path "<>". */
		if (start == end) {
			*why_r = "Syntax: a source route needs a mailbox";
			return SMTP_PARSE_ADDR;
		}
	}
	cmd->addr = p + start;
	cmd->addrl = end - start;
	return SMTP_PARSE_OK;
}

/* smtp_number - SIZE's decimal value: 1..20 digits that fit 64 bits. */
static int
smtp_number(const char *p, size_t n, uint64_t *v_r)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || n > 20)
		return -1;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(p[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*v_r = v;
	return 0;
}

static bool
smtp_keyword_is(const char *k, size_t kl, const char *name)
{
	return strlen(name) == kl && strncasecmp(k, name, kl) == 0;
}

/*
 * smtp_params - the esmtp-params after a path (RFC 5321 4.1.2): keyword
 * ["=" value], separated by spaces.  MAIL knows SIZE, BODY and AUTH; RCPT
 * knows none (no DSN is offered).
 */
static enum smtp_parse
smtp_params(const char *p, size_t n, size_t i, bool mail,
    struct smtp_cmd *cmd, const char **why_r)
{
	const char *k, *v;
	size_t kl, vl, j;
	bool seen_body = false, seen_auth = false;

	for (;;) {
		smtp_skip_spaces(p, n, &i);
		if (i >= n)
			return SMTP_PARSE_OK;
		k = p + i;
		while (i < n && !smtp_is_space(p[i]) && p[i] != '=')
			i++;
		kl = (size_t)(p + i - k);
		v = NULL;
		vl = 0;
		if (i < n && p[i] == '=') {
			v = p + ++i;
			while (i < n && !smtp_is_space(p[i]))
				i++;
			vl = (size_t)(p + i - v);
		}
		if (kl == 0) {
			*why_r = "Syntax: bad parameter";
			return SMTP_PARSE_SYNTAX;
		}
		for (j = 0; j < kl; j++)
			if (!((k[j] >= 'A' && k[j] <= 'Z') ||
			    (k[j] >= 'a' && k[j] <= 'z') ||
			    (k[j] >= '0' && k[j] <= '9') || k[j] == '-')) {
				*why_r = "Syntax: bad parameter name";
				return SMTP_PARSE_SYNTAX;
			}
		if (!mail) {
			*why_r = "Unsupported RCPT TO parameter";
			return SMTP_PARSE_PARAM;
		}
		if (smtp_keyword_is(k, kl, "SIZE")) {
			if (cmd->has_size || v == NULL ||
			    smtp_number(v, vl, &cmd->size) != 0) {
				*why_r = "Syntax: bad SIZE parameter";
				return SMTP_PARSE_SYNTAX;
			}
			cmd->has_size = true;
		} else if (smtp_keyword_is(k, kl, "BODY")) {
			if (seen_body || v == NULL) {
				*why_r = "Syntax: bad BODY parameter";
				return SMTP_PARSE_SYNTAX;
			}
			seen_body = true;
			if (smtp_keyword_is(v, vl, "7BIT"))
				cmd->body = SMTP_BODY_7BIT;
			else if (smtp_keyword_is(v, vl, "8BITMIME"))
				cmd->body = SMTP_BODY_8BITMIME;
			else {
				*why_r = "Unsupported BODY parameter value";
				return SMTP_PARSE_PARAM;
			}
		} else if (smtp_keyword_is(k, kl, "AUTH")) {
			if (seen_auth || v == NULL || vl == 0) {
				*why_r = "Syntax: bad AUTH parameter";
				return SMTP_PARSE_SYNTAX;
			}
			seen_auth = true;
			cmd->auth = v;
			cmd->authl = vl;
		} else {
			*why_r = "Unsupported MAIL FROM parameter";
			return SMTP_PARSE_PARAM;
		}
	}
}

/* smtp_mail_rcpt - "FROM:<path> params" or "TO:<path> params". */
static enum smtp_parse
smtp_mail_rcpt(const char *p, size_t n, bool mail, struct smtp_cmd *cmd,
    const char **why_r)
{
	const char *kw = mail ? "FROM:" : "TO:";
	size_t kwl = strlen(kw), i = 0, at;
	enum smtp_parse pr;
	const char *bad;

	*why_r = mail ? "Syntax: MAIL FROM:<address>" :
	    "Syntax: RCPT TO:<address>";
	if (n < kwl || strncasecmp(p, kw, kwl) != 0)
		return SMTP_PARSE_SYNTAX;
	i = kwl;
	smtp_skip_spaces(p, n, &i);
	if ((pr = smtp_path(p, n, &i, cmd, why_r)) != SMTP_PARSE_OK)
		return pr;
	if (i < n && !smtp_is_space(p[i])) {
		*why_r = "Syntax: garbage after the address";
		return SMTP_PARSE_SYNTAX;
	}
	if (cmd->addrl == 0) {
		if (mail)	/* the null reverse-path */
			return smtp_params(p, n, i, mail, cmd, why_r);
		*why_r = "Syntax: empty recipient address";
		return SMTP_PARSE_ADDR;
	}
	/* RFC 5321 4.1.1.3: "Postmaster" without a domain is a recipient. */
	if (!mail && cmd->addrl == 10 &&
	    strncasecmp(cmd->addr, "postmaster", 10) == 0)
		return smtp_params(p, n, i, mail, cmd, why_r);
	if ((bad = smtp_addr_check(cmd->addr, cmd->addrl, &at)) != NULL) {
		*why_r = bad;
		return SMTP_PARSE_ADDR;
	}
	return smtp_params(p, n, i, mail, cmd, why_r);
}

/* smtp_mech - AUTH's "mechanism [initial-response]". */
static enum smtp_parse
smtp_mech(const char *p, size_t n, struct smtp_cmd *cmd, const char **why_r)
{
	size_t i = 0, j;

	*why_r = "Syntax: AUTH mechanism [initial-response]";
	while (i < n && !smtp_is_space(p[i]))
		i++;
	if (i == 0 || i > SMTP_MECH_MAX)
		return SMTP_PARSE_SYNTAX;
	for (j = 0; j < i; j++)
		if (!((p[j] >= 'A' && p[j] <= 'Z') ||
		    (p[j] >= 'a' && p[j] <= 'z') ||
		    (p[j] >= '0' && p[j] <= '9') || p[j] == '-' ||
		    p[j] == '_'))
			return SMTP_PARSE_SYNTAX;
	cmd->arg = p;
	cmd->argl = i;
	smtp_skip_spaces(p, n, &i);
	if (i == n)
		return SMTP_PARSE_OK;
	cmd->resp = p + i;
	while (i < n && !smtp_is_space(p[i]))
		i++;
	cmd->respl = (size_t)(p + i - cmd->resp);
	cmd->has_resp = true;
	smtp_skip_spaces(p, n, &i);
	return i == n ? SMTP_PARSE_OK : SMTP_PARSE_SYNTAX;
}

enum smtp_parse
smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd,
    const char **why_r)
{
	size_t vlen, i;
	const char *args;
	size_t alen;
	unsigned v;

	memset(cmd, 0, sizeof(*cmd));
	*why_r = "Error: command not recognized";
	if (len > SMTP_CMD_LINE_MAX) {
		*why_r = "Error: line too long";
		return SMTP_PARSE_SYNTAX;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c == '\0' || c == '\r' || c == '\n') {
			*why_r = "Error: control characters in the command";
			return SMTP_PARSE_SYNTAX;
		}
	}
	/* Trailing spaces are dropped (some clients send "QUIT "). */
	while (len > 0 && smtp_is_space(line[len - 1]))
		len--;
	for (vlen = 0; vlen < len && !smtp_is_space(line[vlen]); vlen++)
		;
	for (v = 0; v < SMTP_NVERBS; v++)
		if (smtp_keyword_is(line, vlen, smtp_verbs[v].name))
			break;
	if (v == SMTP_NVERBS)
		return SMTP_PARSE_UNKNOWN;
	cmd->verb = (enum smtp_verb)v;
	i = vlen;
	smtp_skip_spaces(line, len, &i);
	args = line + i;
	alen = len - i;
	switch (smtp_verbs[v].args) {
	case SMTP_A_NONE:
		if (alen != 0) {
			*why_r = "Syntax: no arguments allowed";
			return SMTP_PARSE_SYNTAX;
		}
		return SMTP_PARSE_OK;
	case SMTP_A_DOMAIN:
		/* A domain or an address literal: it goes into our Received
		 * header, so nothing else (no comment, no second word). */
		for (i = 0; i < alen; i++)
			if (!isalnum((unsigned char)args[i]) &&
			    strchr(".-_:[]", args[i]) == NULL)
				break;
		if (alen == 0 || alen > SMTP_DOMAIN_MAX || i < alen) {
			*why_r = v == SMTP_HELO ? "Syntax: HELO hostname" :
			    "Syntax: EHLO hostname";
			return SMTP_PARSE_SYNTAX;
		}
		break;
	case SMTP_A_REQ_TEXT:
		if (alen == 0) {
			*why_r = "Syntax: argument required";
			return SMTP_PARSE_SYNTAX;
		}
		break;
	case SMTP_A_TEXT:
		break;
	case SMTP_A_FROM:
	case SMTP_A_TO:
		return smtp_mail_rcpt(args, alen, v == SMTP_MAIL, cmd, why_r);
	case SMTP_A_MECH:
		return smtp_mech(args, alen, cmd, why_r);
	}
	cmd->arg = args;
	cmd->argl = alen;
	return SMTP_PARSE_OK;
}

/*
 * Base64 is decoded here rather than with OpenSSL's EVP_DecodeBlock(),
 * which trims whitespace around its input, counts the padding as decoded
 * zero octets (each caller must subtract it again, as pop3_sasl_plain()
 * does) and takes no output size.  This decoder refuses anything but the
 * padded alphabet, bounds its output, and is short enough to test fully.
 */
static int
smtp_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
smtp_base64_decode(const char *in, size_t len, unsigned char *out,
    size_t outsize, size_t *outl_r)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i, o = 0, pad = 0, k;
	int q[4];

	if (len % 4 != 0)
		return -1;
	if (len > 0 && p[len - 1] == '=')
		pad = len >= 2 && p[len - 2] == '=' ? 2 : 1;
	if (len / 4 * 3 - pad > outsize)
		return -1;
	for (i = 0; i < len; i += 4) {
		for (k = 0; k < 4; k++) {
			if (p[i + k] == '=' && i + 4 == len && k >= 4 - pad)
				q[k] = 0;
			else if ((q[k] = smtp_b64_value(p[i + k])) < 0)
				return -1;
		}
		out[o++] = (unsigned char)(q[0] << 2 | q[1] >> 4);
		if (i + 4 < len || pad < 2)
			out[o++] = (unsigned char)((q[1] & 0xf) << 4 |
			    q[2] >> 2);
		if (i + 4 < len || pad < 1)
			out[o++] = (unsigned char)((q[2] & 0x3) << 6 | q[3]);
	}
	*outl_r = o;
	return 0;
}

/* smtp_sasl_name_ok - an identity: 1..255 octets, no control octet. */
static bool
smtp_sasl_name_ok(const unsigned char *p, size_t n, bool may_be_empty)
{
	size_t i;

	if ((n == 0 && !may_be_empty) || n > SMTP_SASL_FIELD_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
	return true;
}

enum smtp_sasl
smtp_sasl_plain(const char *b64, size_t len, unsigned char *buf,
    size_t bufsize, struct smtp_sasl_creds *creds)
{
	const unsigned char *authc, *pass, *end;
	size_t n;

	memset(creds, 0, sizeof(*creds));
	if (len == 1 && b64[0] == '*')
		return SMTP_SASL_CANCEL;
	if (len == 0 || (len == 1 && b64[0] == '='))
		return SMTP_SASL_MALFORMED;
	if (smtp_base64_decode(b64, len, buf, bufsize, &n) != 0)
		return SMTP_SASL_MALFORMED;
	end = buf + n;
	authc = memchr(buf, '\0', n);
	if (authc == NULL)
		return SMTP_SASL_MALFORMED;
	authc++;
	pass = memchr(authc, '\0', (size_t)(end - authc));
	if (pass == NULL)
		return SMTP_SASL_MALFORMED;
	pass++;
	/* Exactly two NULs: none in the password. */
	if (memchr(pass, '\0', (size_t)(end - pass)) != NULL)
		return SMTP_SASL_MALFORMED;
	creds->authzid = (const char *)buf;
	creds->authzidl = (size_t)(authc - 1 - buf);
	creds->user = (const char *)authc;
	creds->userl = (size_t)(pass - 1 - authc);
	creds->pass = (const char *)pass;
	creds->passl = (size_t)(end - pass);
	if (!smtp_sasl_name_ok(buf, creds->authzidl, true) ||
	    !smtp_sasl_name_ok(authc, creds->userl, false) ||
	    creds->passl == 0 || creds->passl > SMTP_SASL_FIELD_MAX) {
		memset(creds, 0, sizeof(*creds));
		return SMTP_SASL_MALFORMED;
	}
	return SMTP_SASL_OK;
}

enum smtp_sasl
smtp_sasl_login_field(const char *b64, size_t len, bool is_name,
    unsigned char *buf, size_t bufsize, const char **field_r,
    size_t *fieldl_r)
{
	size_t n;

	if (len == 1 && b64[0] == '*')
		return SMTP_SASL_CANCEL;
	if (len == 0 || smtp_base64_decode(b64, len, buf, bufsize, &n) != 0)
		return SMTP_SASL_MALFORMED;
	if (n == 0 || n > SMTP_SASL_FIELD_MAX || memchr(buf, '\0', n) != NULL)
		return SMTP_SASL_MALFORMED;
	/* A name goes into logs and the spool: the same rule as PLAIN's. */
	if (is_name && !smtp_sasl_name_ok(buf, n, false))
		return SMTP_SASL_MALFORMED;
	*field_r = (const char *)buf;
	*fieldl_r = n;
	return SMTP_SASL_OK;
}

enum smtp_data
smtp_data_unstuff(const char *line, size_t len, const char **p_r,
    size_t *len_r)
{
	if (len == 1 && line[0] == '.')
		return SMTP_DATA_END;
	if (len > 0 && line[0] == '.') {
		*p_r = line + 1;
		*len_r = len - 1;
	} else {
		*p_r = line;
		*len_r = len;
	}
	return SMTP_DATA_TEXT;
}

unsigned
smtp_line_flags(const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	unsigned f = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (u[i] == '\0')
			f |= SMTP_LINE_NUL;
		else if (u[i] == '\r')
			f |= SMTP_LINE_CR;
		else if (u[i] > 127)
			f |= SMTP_LINE_8BIT;
	}
	return f;
}
