/*
 * smtps.c - the server side of an ESMTP session (see smtps.h).
 *
 * States (every change goes through smtps_enter_state()):
 *
 *   GREETING --connect hook--> CONNECTED (220), REFUSED (5xx: only QUIT
 *       is served) or CLOSING (421)
 *   CONNECTED --EHLO/HELO--> READY --MAIL--> MAIL --RCPT--> RCPT
 *   RCPT --DATA--> DATA --final dot--> QUEUED --smtps_reply_message()-->
 *       READY; a message refused at its dot (size, NUL, bare CR, long
 *       line) goes straight back to READY
 *   READY --AUTH--> AUTH (SASL lines) --> AUTH_CHECK --smtps_auth_result()
 *       and its delay--> READY
 *   READY --STARTTLS--> TLS --handshake--> CONNECTED (RFC 3207 4.2: what
 *       was learnt in plain text is forgotten, EHLO and AUTH included)
 *   MAIL, RCPT --RSET, EHLO, HELO--> READY
 *   any --QUIT, a 421, a limit, a protocol violation--> CLOSING (the last
 *       reply drains) --> CLOSED;  any --connection lost--> CLOSED
 *
 * Input is taken line by line from net_conn's bounded reader: commands
 * (512 octets with CRLF), DATA lines (1000) and SASL responses.  Lines
 * are only read in the states of SMTPS_INPUT_STATES; in the others the
 * client's pipelined input waits in the buffer (bounded by
 * SMTPS_INPUT_MAX), and replies that the client does not read stop the
 * loop above SMTPS_OUT_HIGH.
 *
 * Decisions, with what Postfix does (SPEC D17):
 * - Input before the greeting, or a pipelined group that goes on after a
 *   command that must end one (RFC 2920 3.1: EHLO, HELO, DATA, VRFY,
 *   EXPN, NOOP; AUTH unless PLAIN with an initial response, RFC 4954 4),
 *   or any pipelining before EHLO offered PIPELINING, is answered
 *   "554 5.5.0 Error: SMTP protocol synchronization" and the session is
 *   closed, as Postfix does with smtpd_forbid_unauth_pipelining = yes
 *   (the default from 3.9; the setting exists since 3.5.20, 3.6.10,
 *   3.7.6, 3.8.1).  Greeting late (greet_delay_ms) catches early talkers.
 * - STARTTLS with plain text behind it: that text is discarded, never
 *   executed, and TLS starts (CVE-2011-0411; Postfix's fix is the same).
 * - A bare LF (a line that ends in LF alone), in a command or in DATA, is
 *   answered "550 5.5.2 Error: bare <LF> received" and the session is
 *   closed, any message under way discarded: Postfix 3.9's
 *   smtpd_forbid_bare_newline = reject (reject code 550).  Only CRLF ends
 *   a line, so only CRLF.CRLF ends a message (no SMTP smuggling).
 * - A NUL or a bare CR in a message, a text line over 1000 octets, or a
 *   message over the SIZE limit: the message is refused at its final dot
 *   (550 5.6.0, 500 5.5.2, 552 5.3.4) and the session goes on.  Nothing
 *   more of a refused message is buffered.
 * - A command line over 512 octets: 500 5.5.2, the line skipped, the
 *   session goes on (counted as an error).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "net/conn.h"
#include "smtps/smtps.h"

#define SMTPS_MOD	"smtps"

enum smtps_state {
	SMTPS_GREETING,
	SMTPS_REFUSED,
	SMTPS_CONNECTED,
	SMTPS_READY,
	SMTPS_MAIL,
	SMTPS_RCPT,
	SMTPS_DATA,
	SMTPS_QUEUED,
	SMTPS_AUTH,
	SMTPS_AUTH_CHECK,
	SMTPS_TLS,
	SMTPS_CLOSING,
	SMTPS_CLOSED,
};

#define SMTPS_S(st)	(1u << (st))
/* Where commands are taken. */
#define SMTPS_CMD_STATES						\
	(SMTPS_S(SMTPS_CONNECTED) | SMTPS_S(SMTPS_READY) |		\
	 SMTPS_S(SMTPS_MAIL) | SMTPS_S(SMTPS_RCPT))
/* Where the client's lines are read. */
#define SMTPS_INPUT_STATES						\
	(SMTPS_CMD_STATES | SMTPS_S(SMTPS_REFUSED) |			\
	 SMTPS_S(SMTPS_DATA) | SMTPS_S(SMTPS_AUTH))

static const char *const smtps_state_names[] = {
	"greeting", "refused", "connected", "ready", "mail", "rcpt", "data",
	"queued", "auth", "auth-check", "tls", "closing", "closed",
};

enum smtps_sasl_step {
	SMTPS_SASL_PLAIN,		/* waiting for the PLAIN response */
	SMTPS_SASL_LOGIN_USER,		/* waiting for the user name */
	SMTPS_SASL_LOGIN_PASS,		/* waiting for the password */
};

/* Why a message is refused at its final dot (the first listed wins). */
enum {
	SMTPS_MSG_TOO_BIG = 1u << 0,
	SMTPS_MSG_LONG_LINE = 1u << 1,
	SMTPS_MSG_NUL = 1u << 2,
	SMTPS_MSG_BARE_CR = 1u << 3,
};

/* What a line handler did. */
enum smtps_step {
	SMTPS_STEP_AGAIN,	/* no complete line: wait for input */
	SMTPS_STEP_DONE,	/* a line was handled */
};

struct smtps {
	char			 id[17];
	struct event_base	*base;
	struct net_conn		*c;
	struct smtps_params	 p;
	char			 host[SMTP_DOMAIN_MAX + 1]; /* p.hostname */
	const struct smtps_ops	*ops;
	void			*arg;
	enum smtps_state	 state;
	struct event		*idle_ev;	/* a line within idle_timeout */
	struct event		*data_ev;	/* DATA within data_timeout */
	struct event		*wake_ev;	/* greet, resume, AUTH delay */
	uint64_t		 t0;
	char			 reason[160];	/* why it ends */

	/* The session. */
	bool			 esmtp;		/* EHLO: PIPELINING offered */
	bool			 eof;		/* the client sent all */
	bool			 skip_line;	/* drop input through next LF */
	bool			 skip_cr;	/* ... the last byte dropped: CR */
	char			 helo[SMTP_DOMAIN_MAX + 1];
	char			*auth_user;
	unsigned		 errors;
	unsigned		 junk;
	unsigned		 auth_failures;
	unsigned		 nmsgs;

	/* A SASL exchange and its verdict. */
	enum smtps_sasl_step	 sasl;
	char			*sasl_user;	/* LOGIN: the name, meanwhile */
	char			*pending_user;	/* being checked by the owner */
	bool			 verdict_set;
	enum smtps_auth_status	 verdict;

	/* The transaction. */
	char			*sender;
	char			**rcpts;
	size_t			 nrcpts;
	size_t			 rcpts_cap;
	uint64_t		 size_decl;
	enum smtp_body		 body_type;
	struct evbuffer		*body;		/* NULL once given away */
	size_t			 body_len;
	unsigned		 msg_flags;	/* SMTPS_MSG_*: refused */
	bool			 eight_bit;
	struct smtps_envelope	 env;
};

struct smtps_verb {
	unsigned	 states;	/* where it may run */
	bool		 last;		/* must end a pipelined group */
	bool		 junk;		/* counts towards max_junk */
	const char	*seq;		/* 503 text elsewhere */
	void		(*proceed)(struct smtps *s, const struct smtp_cmd *cmd);
};

static void smtps_cmd_helo(struct smtps *s, const struct smtp_cmd *cmd);
static void smtps_cmd_mail(struct smtps *s, const struct smtp_cmd *cmd);
static void smtps_cmd_rcpt(struct smtps *s, const struct smtp_cmd *cmd);
static void smtps_cmd_data(struct smtps *s, const struct smtp_cmd *cmd);
static void smtps_cmd_rset(struct smtps *s, const struct smtp_cmd *cmd);
static void smtps_cmd_noop(struct smtps *s, const struct smtp_cmd *cmd);
static void smtps_cmd_quit(struct smtps *s, const struct smtp_cmd *cmd);
static void smtps_cmd_vrfy(struct smtps *s, const struct smtp_cmd *cmd);
static void smtps_cmd_expn(struct smtps *s, const struct smtp_cmd *cmd);
static void smtps_cmd_help(struct smtps *s, const struct smtp_cmd *cmd);
static void smtps_cmd_starttls(struct smtps *s, const struct smtp_cmd *cmd);
static void smtps_cmd_auth(struct smtps *s, const struct smtp_cmd *cmd);
static void smtps_process(struct smtps *s);
static void smtps_vreply(struct smtps *s, int code, const char *esc,
    const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));
static void smtps_reply(struct smtps *s, int code, const char *esc,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void smtps_fail(struct smtps *s, int code, const char *esc,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define SMTPS_ANY	SMTPS_CMD_STATES
#define SMTPS_TXN	(SMTPS_S(SMTPS_MAIL) | SMTPS_S(SMTPS_RCPT))

static const struct smtps_verb smtps_verbs[SMTP_NVERBS] = {
	[SMTP_HELO] = { SMTPS_ANY, true, false, NULL, smtps_cmd_helo },
	[SMTP_EHLO] = { SMTPS_ANY, true, false, NULL, smtps_cmd_helo },
	[SMTP_MAIL] = { SMTPS_S(SMTPS_READY), false, false,
	    "Error: nested MAIL command", smtps_cmd_mail },
	[SMTP_RCPT] = { SMTPS_TXN, false, false,
	    "Error: need MAIL command", smtps_cmd_rcpt },
	[SMTP_DATA] = { SMTPS_TXN, true, false,
	    "Error: need RCPT command", smtps_cmd_data },
	[SMTP_RSET] = { SMTPS_ANY, false, true, NULL, smtps_cmd_rset },
	[SMTP_NOOP] = { SMTPS_ANY, true, true, NULL, smtps_cmd_noop },
	[SMTP_QUIT] = { SMTPS_ANY | SMTPS_S(SMTPS_REFUSED), false, false,
	    NULL, smtps_cmd_quit },
	[SMTP_VRFY] = { SMTPS_ANY, true, true, NULL, smtps_cmd_vrfy },
	[SMTP_EXPN] = { SMTPS_ANY, true, true, NULL, smtps_cmd_expn },
	[SMTP_HELP] = { SMTPS_ANY, false, true, NULL, smtps_cmd_help },
	[SMTP_STARTTLS] = { SMTPS_S(SMTPS_READY), true, false,
	    "Error: MAIL transaction in progress", smtps_cmd_starttls },
	[SMTP_AUTH] = { SMTPS_S(SMTPS_READY), true, false,
	    "Error: MAIL transaction in progress", smtps_cmd_auth },
};

/* The LOGIN prompts (RFC 4954 has no LOGIN; this is what every client
 * expects): base64 of "Username:" and "Password:". */
static const char smtps_login_user[] = "VXNlcm5hbWU6";
static const char smtps_login_pass[] = "UGFzc3dvcmQ6";

static atomic_uint_fast32_t smtps_seq;

/* ------------------------------------------------------------ helpers */

void
smtps_params_default(struct smtps_params *p)
{
	memset(p, 0, sizeof(*p));
	p->hostname = "localhost";
	p->max_message_size = 10240000;	/* Postfix message_size_limit */
	p->max_rcpts = 1000;		/* Postfix smtpd_recipient_limit */
	p->max_errors = 20;		/* Postfix smtpd_hard_error_limit */
	p->max_junk = 100;		/* Postfix smtpd_junk_command_limit */
	p->max_auth_failures = 3;
	p->idle_timeout_ms = 300000;	/* RFC 5321 4.5.3.2.7: 5 minutes */
	p->data_timeout_ms = 600000;
}

static const char *
smtps_strstate(enum smtps_state st)
{
	return smtps_state_names[st];
}

static void
smtps_timer_ms(struct event *ev, unsigned ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(ev, &tv);
}

static void
smtps_enter_state(struct smtps *s, enum smtps_state st)
{
	if (s->state != st)
		MR_TRACE(MR_TRACE_SMTP, SMTPS_MOD, "id=%s state=%s->%s",
		    s->id, smtps_strstate(s->state), smtps_strstate(st));
	if (s->state == SMTPS_DATA && st != SMTPS_DATA)
		evtimer_del(s->data_ev);
	else if (st == SMTPS_DATA && s->state != SMTPS_DATA &&
	    s->p.data_timeout_ms)
		smtps_timer_ms(s->data_ev, s->p.data_timeout_ms);
	s->state = st;
	/* The client is waited for in these states only. */
	if (SMTPS_S(st) & (SMTPS_INPUT_STATES | SMTPS_S(SMTPS_TLS))) {
		if (s->p.idle_timeout_ms &&
		    !evtimer_pending(s->idle_ev, NULL))
			smtps_timer_ms(s->idle_ev, s->p.idle_timeout_ms);
	} else {
		evtimer_del(s->idle_ev);
	}
	if (st == SMTPS_CLOSING || st == SMTPS_CLOSED)
		evtimer_del(s->wake_ev);
}

/* smtps_clean - a hook's text made safe for a reply line. */
static void
smtps_clean(const char *in, char *out, size_t size)
{
	size_t i;

	for (i = 0; in[i] != '\0' && i + 1 < size; i++) {
		unsigned char c = (unsigned char)in[i];

		out[i] = c < 0x20 || c >= 0x7f ? ' ' : (char)c;
	}
	out[i] = '\0';
}

/*
 * smtps_send - one reply.  While more of the client's pipelined group
 * waits, replies gather in the output and leave together when the loop
 * writes (RFC 2920 3.2); the last one of a group goes at once.
 */
static void
smtps_send(struct smtps *s, const char *buf, size_t len)
{
	if (net_conn_input_len(s->c) > 0)
		evbuffer_add(net_conn_output(s->c), buf, len);
	else
		net_conn_send(s->c, buf, len);
}

static void
smtps_vreply(struct smtps *s, int code, const char *esc, const char *fmt,
    va_list ap)
{
	char buf[SMTP_CMD_LINE_MAX + 2];
	int n, m;

	/* An enhanced code is "c.sss.ddd" (RFC 3463): anything longer, or
	 * with other characters, from a hook is left out. */
	if (esc != NULL && *esc != '\0' && strlen(esc) <= 11 &&
	    strspn(esc, "0123456789.") == strlen(esc))
		n = snprintf(buf, sizeof(buf), "%d %s ", code, esc);
	else
		n = snprintf(buf, sizeof(buf), "%d ", code);
	m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 2, fmt, ap);
	/* A text too long is cut: replies stay within 512 octets. */
	if (m < 0)
		m = 0;
	if ((size_t)(n + m) > sizeof(buf) - 3)
		m = (int)(sizeof(buf) - 3) - n;
	n += m;
	MR_TRACE(MR_TRACE_SMTP, SMTPS_MOD, "id=%s send=%s", s->id,
	    mr_q(buf, (size_t)n));
	buf[n++] = '\r';
	buf[n++] = '\n';
	smtps_send(s, buf, (size_t)n);
}

static void
smtps_reply(struct smtps *s, int code, const char *esc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtps_vreply(s, code, esc, fmt, ap);
	va_end(ap);
}

/* smtps_fail - a reply that counts as the client's error. */
static void
smtps_fail(struct smtps *s, int code, const char *esc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtps_vreply(s, code, esc, fmt, ap);
	va_end(ap);
	s->errors++;
}

/*
 * smtps_answer - send a hook's answer (code 0: the default) and return
 * the code sent; count: a 5xx is the client's error.  A code outside
 * 200..599 is the owner's bug, answered 451.
 */
static int
smtps_answer(struct smtps *s, const struct smtps_answer *ans, int defcode,
    const char *defesc, const char *deftext, bool count)
{
	char text[400];
	int code = ans->code ? ans->code : defcode;
	const char *esc = ans->esc;

	if (code < 200 || code > 599) {
		mr_log_err(SMTPS_MOD, "id=%s event=bad-answer code=%d", s->id,
		    code);
		code = 451;
		esc = "4.3.0";
		smtps_clean("Error: internal error", text, sizeof(text));
	} else {
		smtps_clean(ans->text ? ans->text : deftext, text,
		    sizeof(text));
		/* No esc given: the default's when of its class, else
		 * the class's own (RFC 3463 X.0.0). */
		if (esc == NULL)
			esc = code / 100 == defcode / 100 ? defesc :
			    code / 100 == 2 ? "2.0.0" : code / 100 == 4 ?
			    "4.0.0" : "5.0.0";
	}
	if (code >= 500 && count)
		smtps_fail(s, code, esc, "%s", text);
	else
		smtps_reply(s, code, esc, "%s", text);
	return code;
}

/* smtps_close - stop reading; `closed` follows once the replies are out. */
static void
smtps_close(struct smtps *s, const char *reason)
{
	if (s->state == SMTPS_CLOSING || s->state == SMTPS_CLOSED)
		return;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	smtps_enter_state(s, SMTPS_CLOSING);
	net_conn_reading(s->c, false);
	net_conn_watch_drain(s->c, 0);
}

/* smtps_end - the session is over: log it and tell the owner, who may
 * free it; called only from net_conn's and the timers' callbacks, and
 * nothing touches s after it. */
static void
smtps_end(struct smtps *s, const char *reason)
{
	char why[sizeof(s->reason)];

	snprintf(why, sizeof(why), "%s", reason);
	mr_log_info(SMTPS_MOD, "id=%s event=end peer=%s reason=%s state=%s "
	    "messages=%u errors=%u auth=%s tls=%s duration_ms=%" PRIu64,
	    s->id, net_conn_peer(s->c), mr_q(why, (size_t)-1),
	    smtps_strstate(s->state), s->nmsgs, s->errors,
	    s->auth_user ? mr_q(s->auth_user, (size_t)-1) : "-",
	    net_conn_is_tls(s->c) ? net_conn_tls_desc(s->c) : "no",
	    mr_clock_ms() - s->t0);
	smtps_enter_state(s, SMTPS_CLOSED);
	evtimer_del(s->data_ev);
	net_conn_reading(s->c, false);
	s->ops->closed(s, s->arg, why);
}

/* smtps_txn_reset - forget the transaction (RSET, EHLO, after a message). */
static void
smtps_txn_reset(struct smtps *s)
{
	size_t i;

	free(s->sender);
	s->sender = NULL;
	for (i = 0; i < s->nrcpts; i++)
		free(s->rcpts[i]);
	s->nrcpts = 0;
	if (s->body != NULL) {
		evbuffer_free(s->body);
		s->body = NULL;
	}
	s->body_len = 0;
	s->size_decl = 0;
	s->body_type = SMTP_BODY_NONE;
	s->msg_flags = 0;
	s->eight_bit = false;
}

/* smtps_env - the envelope as it stands, for a hook. */
static const struct smtps_envelope *
smtps_env(struct smtps *s)
{
	s->env.helo = s->helo;
	s->env.esmtp = s->esmtp;
	s->env.sender = s->sender ? s->sender : "";
	s->env.size = s->size_decl;
	s->env.body_type = s->body_type;
	s->env.eight_bit = s->eight_bit;
	s->env.rcpts = (const char *const *)s->rcpts;
	s->env.nrcpts = s->nrcpts;
	s->env.body_len = s->body_len;
	s->env.auth_user = s->auth_user;
	s->env.tls = net_conn_is_tls(s->c);
	s->env.peer = net_conn_peer(s->c);
	return &s->env;
}

/* smtps_sync_error - a pipelining violation (see the top of the file). */
static void
smtps_sync_error(struct smtps *s, const char *after)
{
	struct evbuffer *in = net_conn_input(s->c);
	size_t n = evbuffer_get_length(in);
	unsigned char *p = n ? evbuffer_pullup(in, n < 32 ? (ssize_t)n : 32) :
	    (unsigned char *)"";

	mr_log_info(SMTPS_MOD, "id=%s event=pipelining-violation peer=%s "
	    "after=%s input=%s", s->id, net_conn_peer(s->c), after,
	    mr_q((const char *)p, n < 32 ? n : 32));
	smtps_fail(s, 554, "5.5.0", "Error: SMTP protocol synchronization");
	smtps_close(s, "pipelining violation");
}

/* smtps_bare_lf - a line that ended in LF alone: refused, session over. */
static void
smtps_bare_lf(struct smtps *s)
{
	mr_log_info(SMTPS_MOD, "id=%s event=bare-lf peer=%s state=%s", s->id,
	    net_conn_peer(s->c), smtps_strstate(s->state));
	smtps_fail(s, 550, "5.5.2", "Error: bare <LF> received");
	smtps_close(s, "bare LF received");
}

/*
 * smtps_skip - drop input through the next LF (the rest of an over-long
 * line); false while no LF has come yet.  The skipped line must end in
 * CRLF too: a bare LF here would let a long line smuggle a final dot
 * and commands behind it, so it ends the session as anywhere else.
 */
static bool
smtps_skip(struct smtps *s)
{
	struct evbuffer *in = net_conn_input(s->c);
	struct evbuffer_ptr at = evbuffer_search(in, "\n", 1, NULL);
	size_t len = evbuffer_get_length(in);
	char before = s->skip_cr ? '\r' : '\0';

	if (at.pos < 0) {
		if (len > 0) {
			evbuffer_ptr_set(in, &at, len - 1, EVBUFFER_PTR_SET);
			(void)evbuffer_copyout_from(in, &at, &before, 1);
			s->skip_cr = before == '\r';
		}
		evbuffer_drain(in, len);
		return false;
	}
	if (at.pos > 0) {
		struct evbuffer_ptr prev;

		evbuffer_ptr_set(in, &prev, (size_t)at.pos - 1,
		    EVBUFFER_PTR_SET);
		(void)evbuffer_copyout_from(in, &prev, &before, 1);
	}
	evbuffer_drain(in, (size_t)at.pos + 1);
	s->skip_line = false;
	s->skip_cr = false;
	if (before != '\r')
		smtps_bare_lf(s);
	return true;
}

/* ------------------------------------------------------------ commands */

static void
smtps_cmd_helo(struct smtps *s, const struct smtp_cmd *cmd)
{
	const char *lines[8];
	char size[48], buf[SMTP_CMD_LINE_MAX + SMTP_DOMAIN_MAX];
	size_t n = 0, i, off = 0;
	bool tls = net_conn_is_tls(s->c);
	int len;

	smtps_txn_reset(s);
	memcpy(s->helo, cmd->arg, cmd->argl);
	s->helo[cmd->argl] = '\0';
	s->esmtp = cmd->verb == SMTP_EHLO;
	smtps_enter_state(s, SMTPS_READY);
	if (!s->esmtp) {
		smtps_reply(s, 250, NULL, "%s", s->p.hostname);
		return;
	}
	lines[n++] = s->p.hostname;
	lines[n++] = "PIPELINING";
	if (s->p.max_message_size) {
		snprintf(size, sizeof(size), "SIZE %zu",
		    s->p.max_message_size);
		lines[n++] = size;
	} else {
		lines[n++] = "SIZE";
	}
	lines[n++] = "8BITMIME";
	lines[n++] = "ENHANCEDSTATUSCODES";
	if (s->p.tls_ctx != NULL && !tls)
		lines[n++] = "STARTTLS";
	if (s->ops->auth != NULL && s->auth_user == NULL &&
	    (tls || s->p.auth_plaintext_ok))
		lines[n++] = "AUTH PLAIN LOGIN";
	for (i = 0; i < n; i++) {
		len = snprintf(buf + off, sizeof(buf) - off, "250%c%s\r\n",
		    i + 1 < n ? '-' : ' ', lines[i]);
		if (len < 0 || (size_t)len >= sizeof(buf) - off)
			mr_panic("EHLO reply too long");
		MR_TRACE(MR_TRACE_SMTP, SMTPS_MOD, "id=%s send=%s", s->id,
		    mr_q(buf + off, (size_t)len - 2));
		off += (size_t)len;
	}
	smtps_send(s, buf, off);
}

static void
smtps_cmd_mail(struct smtps *s, const struct smtp_cmd *cmd)
{
	struct smtps_answer ans = { 0 };
	int code;

	if (cmd->has_size && s->p.max_message_size &&
	    cmd->size > s->p.max_message_size) {
		smtps_reply(s, 552, "5.3.4", "Error: message file too big");
		return;
	}
	s->sender = xmemdup(cmd->addr, cmd->addrl);
	s->size_decl = cmd->has_size ? cmd->size : 0;
	s->body_type = cmd->body;
	if (s->ops->mail != NULL)
		s->ops->mail(s, s->arg, smtps_env(s), &ans);
	if (ans.code != 0 && ans.code / 100 != 2) {
		smtps_txn_reset(s);
		code = smtps_answer(s, &ans, 451, "4.3.0", "Error: try again",
		    true);
		if (code == 421)
			smtps_close(s, "421 at MAIL");
		return;
	}
	smtps_answer(s, &ans, 250, "2.1.0", "Ok", false);
	smtps_enter_state(s, SMTPS_MAIL);
}

static void
smtps_cmd_rcpt(struct smtps *s, const struct smtp_cmd *cmd)
{
	struct smtps_answer ans = { 0 };
	char *rcpt;
	int code;

	if (s->p.max_rcpts && s->nrcpts >= s->p.max_rcpts) {
		/* RFC 5321 4.5.3.1.10: the client sends the rest later. */
		smtps_reply(s, 452, "4.5.3", "Error: too many recipients");
		return;
	}
	rcpt = xmemdup(cmd->addr, cmd->addrl);
	s->ops->rcpt(s, s->arg, smtps_env(s), rcpt, &ans);
	if (ans.code != 0 && ans.code / 100 != 2) {
		free(rcpt);
		code = smtps_answer(s, &ans, 554, "5.7.1",
		    "Error: recipient refused", true);
		if (code == 421)
			smtps_close(s, "421 at RCPT");
		return;
	}
	if (s->nrcpts == s->rcpts_cap) {
		s->rcpts_cap = s->rcpts_cap ? s->rcpts_cap * 2 : 8;
		s->rcpts = xreallocarray(s->rcpts, s->rcpts_cap,
		    sizeof(*s->rcpts));
	}
	s->rcpts[s->nrcpts++] = rcpt;
	smtps_answer(s, &ans, 250, "2.1.5", "Ok", false);
	smtps_enter_state(s, SMTPS_RCPT);
}

static void
smtps_cmd_data(struct smtps *s, const struct smtp_cmd *cmd)
{
	(void)cmd;
	if (s->nrcpts == 0) {
		smtps_fail(s, 554, "5.5.1", "Error: no valid recipients");
		return;
	}
	s->body = evbuffer_new();
	if (s->body == NULL)
		mr_panic("out of memory");
	s->body_len = 0;
	s->msg_flags = 0;
	s->eight_bit = false;
	smtps_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
	smtps_enter_state(s, SMTPS_DATA);
}

static void
smtps_cmd_rset(struct smtps *s, const struct smtp_cmd *cmd)
{
	(void)cmd;
	smtps_txn_reset(s);
	if (s->state != SMTPS_CONNECTED)
		smtps_enter_state(s, SMTPS_READY);
	smtps_reply(s, 250, "2.0.0", "Ok");
}

static void
smtps_cmd_noop(struct smtps *s, const struct smtp_cmd *cmd)
{
	(void)cmd;
	smtps_reply(s, 250, "2.0.0", "Ok");
}

static void
smtps_cmd_quit(struct smtps *s, const struct smtp_cmd *cmd)
{
	(void)cmd;
	smtps_reply(s, 221, "2.0.0", "Bye");
	smtps_close(s, "quit");
}

static void
smtps_cmd_vrfy(struct smtps *s, const struct smtp_cmd *cmd)
{
	(void)cmd;
	/* RFC 5321 3.5.3: 252 when the address is not verified. */
	smtps_reply(s, 252, "2.0.0", "Cannot VRFY user, but will accept "
	    "message and attempt delivery");
}

static void
smtps_cmd_expn(struct smtps *s, const struct smtp_cmd *cmd)
{
	(void)cmd;
	smtps_fail(s, 502, "5.5.1", "Error: command not implemented");
}

static void
smtps_cmd_help(struct smtps *s, const struct smtp_cmd *cmd)
{
	(void)cmd;
	smtps_reply(s, 214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET "
	    "NOOP QUIT VRFY HELP%s%s",
	    s->p.tls_ctx != NULL ? " STARTTLS" : "",
	    s->ops->auth != NULL ? " AUTH" : "");
}

static void
smtps_cmd_starttls(struct smtps *s, const struct smtp_cmd *cmd)
{
	struct evbuffer *in = net_conn_input(s->c);
	size_t n;

	(void)cmd;
	if (s->p.tls_ctx == NULL) {
		smtps_fail(s, 502, "5.5.1", "Error: command not implemented");
		return;
	}
	if (net_conn_is_tls(s->c)) {
		smtps_fail(s, 554, "5.5.1", "Error: TLS already active");
		return;
	}
	/* Plain text sent behind STARTTLS never reaches the TLS session
	 * (RFC 3207 6, CVE-2011-0411): it is dropped, and logged. */
	if ((n = evbuffer_get_length(in)) > 0) {
		mr_log_warn(SMTPS_MOD, "id=%s event=starttls-injection peer=%s "
		    "discarded=%zu", s->id, net_conn_peer(s->c), n);
		evbuffer_drain(in, n);
	}
	smtps_reply(s, 220, "2.0.0", "Ready to start TLS");
	if (net_conn_accepttls(s->c, s->p.tls_ctx) != 0) {
		smtps_close(s, "TLS could not start");
		return;
	}
	smtps_enter_state(s, SMTPS_TLS);
}

/*
 * smtps_auth_check - hand a finished SASL exchange to the owner; the
 * verdict comes back through smtps_auth_result().
 */
static void
smtps_auth_check(struct smtps *s, const char *mech, const char *authzid,
    size_t authzidl, const char *user, size_t userl, const char *pass,
    size_t passl)
{
	char zbuf[SMTP_SASL_FIELD_MAX + 1], ubuf[SMTP_SASL_FIELD_MAX + 1];
	char pbuf[SMTP_SASL_FIELD_MAX + 1];
	struct smtps_auth_req req;

	MR_ASSERT(authzidl < sizeof(zbuf) && userl < sizeof(ubuf) &&
	    passl < sizeof(pbuf));
	memcpy(zbuf, authzid, authzidl);
	zbuf[authzidl] = '\0';
	memcpy(ubuf, user, userl);
	ubuf[userl] = '\0';
	memcpy(pbuf, pass, passl);
	pbuf[passl] = '\0';
	free(s->pending_user);
	s->pending_user = xstrdup(ubuf);
	s->verdict_set = false;
	smtps_enter_state(s, SMTPS_AUTH_CHECK);
	req.mech = mech;
	req.authzid = zbuf;
	req.user = ubuf;
	req.pass = pbuf;
	req.passl = passl;
	s->ops->auth(s, s->arg, &req);
	OPENSSL_cleanse(pbuf, sizeof(pbuf));
}

/* smtps_sasl_bad - the exchange failed before a check: back to READY. */
static void
smtps_sasl_bad(struct smtps *s, enum smtp_sasl r)
{
	if (s->sasl_user != NULL) {
		OPENSSL_cleanse(s->sasl_user, strlen(s->sasl_user));
		free(s->sasl_user);
		s->sasl_user = NULL;
	}
	smtps_enter_state(s, SMTPS_READY);
	if (r == SMTP_SASL_CANCEL)
		smtps_fail(s, 501, "5.7.0", "Authentication aborted");
	else
		smtps_fail(s, 501, "5.5.2", "Cannot decode the response");
}

/* smtps_sasl_response - one base64 response (initial or continued). */
static void
smtps_sasl_response(struct smtps *s, const char *b64, size_t len)
{
	unsigned char buf[SMTP_SASL_LINE_MAX];
	struct smtp_sasl_creds cr;
	enum smtp_sasl r;
	const char *f;
	size_t fl;

	switch (s->sasl) {
	case SMTPS_SASL_PLAIN:
		r = smtp_sasl_plain(b64, len, buf, sizeof(buf), &cr);
		if (r != SMTP_SASL_OK) {
			smtps_sasl_bad(s, r);
			break;
		}
		smtps_auth_check(s, "PLAIN", cr.authzid, cr.authzidl, cr.user,
		    cr.userl, cr.pass, cr.passl);
		break;
	case SMTPS_SASL_LOGIN_USER:
		r = smtp_sasl_login_field(b64, len, true, buf, sizeof(buf), &f,
		    &fl);
		if (r != SMTP_SASL_OK) {
			smtps_sasl_bad(s, r);
			break;
		}
		free(s->sasl_user);
		s->sasl_user = xmemdup(f, fl);
		s->sasl = SMTPS_SASL_LOGIN_PASS;
		smtps_enter_state(s, SMTPS_AUTH);
		smtps_reply(s, 334, NULL, "%s", smtps_login_pass);
		break;
	case SMTPS_SASL_LOGIN_PASS:
		r = smtp_sasl_login_field(b64, len, false, buf, sizeof(buf), &f,
		    &fl);
		if (r != SMTP_SASL_OK) {
			smtps_sasl_bad(s, r);
			break;
		}
		smtps_auth_check(s, "LOGIN", "", 0, s->sasl_user,
		    strlen(s->sasl_user), f, fl);
		OPENSSL_cleanse(s->sasl_user, strlen(s->sasl_user));
		free(s->sasl_user);
		s->sasl_user = NULL;
		break;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
}

static void
smtps_cmd_auth(struct smtps *s, const struct smtp_cmd *cmd)
{
	if (s->ops->auth == NULL) {
		smtps_fail(s, 503, "5.5.1",
		    "Error: authentication not enabled");
		return;
	}
	if (!net_conn_is_tls(s->c) && !s->p.auth_plaintext_ok) {
		smtps_fail(s, 538, "5.7.11", "Encryption required for "
		    "requested authentication mechanism");
		return;
	}
	if (s->auth_user != NULL) {
		smtps_fail(s, 503, "5.5.1", "Error: already authenticated");
		return;
	}
	if (cmd->argl == 5 && strncasecmp(cmd->arg, "PLAIN", 5) == 0)
		s->sasl = SMTPS_SASL_PLAIN;
	else if (cmd->argl == 5 && strncasecmp(cmd->arg, "LOGIN", 5) == 0)
		s->sasl = SMTPS_SASL_LOGIN_USER;
	else {
		smtps_fail(s, 504, "5.5.4", "Unrecognized authentication type");
		return;
	}
	if (cmd->has_resp) {
		/* "=" is an empty initial response (RFC 4954 4). */
		smtps_sasl_response(s, cmd->resp,
		    cmd->respl == 1 && cmd->resp[0] == '=' ? 0 : cmd->respl);
		return;
	}
	smtps_enter_state(s, SMTPS_AUTH);
	smtps_reply(s, 334, NULL, "%s", s->sasl == SMTPS_SASL_PLAIN ? "" :
	    smtps_login_user);
}

/* smtps_auth_finish - the owner's verdict, once its delay has passed. */
static void
smtps_auth_finish(struct smtps *s)
{
	char *user = s->pending_user;

	s->pending_user = NULL;
	s->verdict_set = false;
	smtps_enter_state(s, SMTPS_READY);
	switch (s->verdict) {
	case SMTPS_AUTH_OK:
		s->auth_user = user;
		mr_log_info(SMTPS_MOD, "id=%s event=auth peer=%s user=%s",
		    s->id, net_conn_peer(s->c), mr_q(user, (size_t)-1));
		smtps_reply(s, 235, "2.7.0", "Authentication successful");
		return;
	case SMTPS_AUTH_TEMPFAIL:
		mr_log_info(SMTPS_MOD, "id=%s event=auth-tempfail peer=%s "
		    "user=%s", s->id, net_conn_peer(s->c),
		    mr_q(user, (size_t)-1));
		smtps_reply(s, 454, "4.7.0", "Temporary authentication "
		    "failure");
		break;
	case SMTPS_AUTH_FAIL:
		s->auth_failures++;
		mr_log_info(SMTPS_MOD, "id=%s event=auth-failed peer=%s "
		    "user=%s failures=%u", s->id, net_conn_peer(s->c),
		    mr_q(user, (size_t)-1), s->auth_failures);
		if (s->p.max_auth_failures &&
		    s->auth_failures >= s->p.max_auth_failures) {
			smtps_reply(s, 421, "4.7.0", "%s Error: too many "
			    "authentication failures", s->p.hostname);
			smtps_close(s, "too many authentication failures");
			break;
		}
		smtps_fail(s, 535, "5.7.8", "Error: authentication failed");
		break;
	}
	free(user);
}

/* ------------------------------------------------------------ lines */

static void
smtps_parse_error(struct smtps *s, enum smtp_parse pr,
    const struct smtp_cmd *cmd, const char *why)
{
	switch (pr) {
	case SMTP_PARSE_OK:
		break;
	case SMTP_PARSE_UNKNOWN:
		smtps_fail(s, 500, "5.5.2", "Error: command not recognized");
		break;
	case SMTP_PARSE_SYNTAX:
		smtps_fail(s, 501, "5.5.4", "%s", why);
		break;
	case SMTP_PARSE_PARAM:
		smtps_fail(s, 555, "5.5.4", "%s", why);
		break;
	case SMTP_PARSE_ADDR:
		if (cmd->verb == SMTP_MAIL)
			smtps_fail(s, 501, "5.1.7", "Bad sender address "
			    "syntax: %s", why);
		else
			smtps_fail(s, 501, "5.1.3", "Bad recipient address "
			    "syntax: %s", why);
		break;
	}
}

/* smtps_ends_group - must cmd be the last of a pipelined group? */
static bool
smtps_ends_group(const struct smtps *s, const struct smtp_cmd *cmd)
{
	if (!s->esmtp)
		return true;	/* PIPELINING was not offered */
	/* RFC 4954 4: AUTH with an initial response that completes in
	 * one round trip (PLAIN) may be followed by more commands. */
	if (cmd->verb == SMTP_AUTH && cmd->has_resp && cmd->argl == 5 &&
	    strncasecmp(cmd->arg, "PLAIN", 5) == 0)
		return false;
	return smtps_verbs[cmd->verb].last;
}

static enum smtps_step
smtps_command_line(struct smtps *s)
{
	char line[SMTP_CMD_LINE_MAX + 1];
	const struct smtps_verb *v;
	struct smtp_cmd cmd;
	enum smtp_parse pr;
	const char *p, *why;
	size_t n;

	switch (net_conn_line(s->c, SMTP_CMD_LINE_MAX, &p, &n)) {
	case NET_LINE_AGAIN:
		return SMTPS_STEP_AGAIN;
	case NET_LINE_TOO_LONG:
		s->skip_line = true;
		smtps_fail(s, 500, "5.5.2", "Error: line too long");
		return SMTPS_STEP_DONE;
	case NET_LINE_OK:
		break;
	}
	if (!net_conn_line_crlf(s->c)) {
		net_conn_line_done(s->c);
		smtps_bare_lf(s);
		return SMTPS_STEP_DONE;
	}
	/* A copy, and the input moves on before the command acts: after
	 * STARTTLS the connection reads through TLS. */
	memcpy(line, p, n);
	line[n] = '\0';
	net_conn_line_done(s->c);
	pr = smtp_cmd_parse(line, n, &cmd, &why);
	if (pr == SMTP_PARSE_OK && cmd.verb == SMTP_AUTH)
		MR_TRACE(MR_TRACE_SMTP, SMTPS_MOD, "id=%s recv=\"AUTH %.*s%s\"",
		    s->id, (int)cmd.argl, cmd.arg,
		    cmd.has_resp ? " ********" : "");
	else
		MR_TRACE(MR_TRACE_SMTP, SMTPS_MOD, "id=%s recv=%s", s->id,
		    mr_q(line, n));
	if (s->state == SMTPS_REFUSED && (pr != SMTP_PARSE_OK ||
	    cmd.verb != SMTP_QUIT)) {
		/* RFC 5321 3.1: after a 554 greeting, 503 to all but QUIT. */
		smtps_fail(s, 503, "5.5.1", "Error: no SMTP service here");
		goto out;
	}
	if (pr != SMTP_PARSE_OK) {
		smtps_parse_error(s, pr, &cmd, why);
		goto out;
	}
	v = &smtps_verbs[cmd.verb];
	if (net_conn_input_len(s->c) > 0 && cmd.verb != SMTP_QUIT &&
	    cmd.verb != SMTP_STARTTLS && smtps_ends_group(s, &cmd)) {
		smtps_sync_error(s, smtp_verb_name(cmd.verb));
		goto out;
	}
	if (!(SMTPS_S(s->state) & v->states)) {
		smtps_fail(s, 503, "5.5.1", "%s", s->state == SMTPS_CONNECTED ?
		    "Error: send HELO/EHLO first" : v->seq ? v->seq :
		    "Error: bad sequence of commands");
		goto out;
	}
	if (v->junk && s->p.max_junk && ++s->junk > s->p.max_junk)
		s->errors++;
	v->proceed(s, &cmd);
out:
	OPENSSL_cleanse(line, n);
	return SMTPS_STEP_DONE;
}

static enum smtps_step
smtps_sasl_line(struct smtps *s)
{
	char line[SMTP_SASL_LINE_MAX + 1];
	const char *p;
	size_t n;

	switch (net_conn_line(s->c, SMTP_SASL_LINE_MAX, &p, &n)) {
	case NET_LINE_AGAIN:
		return SMTPS_STEP_AGAIN;
	case NET_LINE_TOO_LONG:
		s->skip_line = true;
		smtps_sasl_bad(s, SMTP_SASL_MALFORMED);	/* 501: no 5.5.6 */
		return SMTPS_STEP_DONE;
	case NET_LINE_OK:
		break;
	}
	if (!net_conn_line_crlf(s->c)) {
		net_conn_line_done(s->c);
		smtps_bare_lf(s);
		return SMTPS_STEP_DONE;
	}
	memcpy(line, p, n);
	line[n] = '\0';
	net_conn_line_done(s->c);
	MR_TRACE(MR_TRACE_SMTP, SMTPS_MOD, "id=%s recv=\"********\"", s->id);
	smtps_sasl_response(s, line, n);
	OPENSSL_cleanse(line, n);
	return SMTPS_STEP_DONE;
}

/* smtps_msg_refuse - the message will be refused at its dot: keep
 * nothing more of it. */
static void
smtps_msg_refuse(struct smtps *s, unsigned why)
{
	s->msg_flags |= why;
	if (s->body != NULL)
		evbuffer_drain(s->body, evbuffer_get_length(s->body));
}

/* smtps_data_end - the final dot: refuse the message or hand it over. */
static void
smtps_data_end(struct smtps *s)
{
	struct evbuffer *body;
	const char *why = NULL;

	if (s->msg_flags & SMTPS_MSG_TOO_BIG) {
		why = "too big";
		smtps_reply(s, 552, "5.3.4", "Error: message file too big");
	} else if (s->msg_flags & SMTPS_MSG_LONG_LINE) {
		why = "line too long";
		smtps_reply(s, 500, "5.5.2", "Error: message line longer than "
		    "1000 octets");
	} else if (s->msg_flags & SMTPS_MSG_NUL) {
		why = "NUL";
		smtps_reply(s, 550, "5.6.0", "Error: NUL octet in message");
	} else if (s->msg_flags & SMTPS_MSG_BARE_CR) {
		why = "bare CR";
		smtps_reply(s, 550, "5.6.0", "Error: bare <CR> received");
	}
	if (why != NULL) {
		mr_log_info(SMTPS_MOD, "id=%s event=message-refused peer=%s "
		    "from=%s rcpts=%zu reason=%s", s->id, net_conn_peer(s->c),
		    mr_q(s->sender, (size_t)-1), s->nrcpts,
		    mr_q(why, (size_t)-1));
		smtps_txn_reset(s);
		smtps_enter_state(s, SMTPS_READY);
		return;
	}
	body = s->body;
	s->body = NULL;
	smtps_enter_state(s, SMTPS_QUEUED);
	s->ops->message(s, s->arg, smtps_env(s), body);
}

static enum smtps_step
smtps_data_line(struct smtps *s)
{
	const char *p, *t;
	size_t n, tl;
	unsigned f;

	switch (net_conn_line(s->c, SMTP_TEXT_LINE_MAX, &p, &n)) {
	case NET_LINE_AGAIN:
		return SMTPS_STEP_AGAIN;
	case NET_LINE_TOO_LONG:
		smtps_msg_refuse(s, SMTPS_MSG_LONG_LINE);
		s->skip_line = true;
		return SMTPS_STEP_DONE;
	case NET_LINE_OK:
		break;
	}
	if (!net_conn_line_crlf(s->c)) {
		net_conn_line_done(s->c);
		smtps_bare_lf(s);
		return SMTPS_STEP_DONE;
	}
	if (smtp_data_unstuff(p, n, &t, &tl) == SMTP_DATA_END) {
		net_conn_line_done(s->c);
		smtps_data_end(s);
		return SMTPS_STEP_DONE;
	}
	f = smtp_line_flags(t, tl);
	if (f & SMTP_LINE_NUL)
		smtps_msg_refuse(s, SMTPS_MSG_NUL);
	if (f & SMTP_LINE_CR)
		smtps_msg_refuse(s, SMTPS_MSG_BARE_CR);
	if (f & SMTP_LINE_8BIT)
		s->eight_bit = true;
	if (s->msg_flags == 0 && s->p.max_message_size &&
	    s->body_len + tl + 2 > s->p.max_message_size)
		smtps_msg_refuse(s, SMTPS_MSG_TOO_BIG);
	if (s->msg_flags == 0) {
		evbuffer_add(s->body, t, tl);
		evbuffer_add(s->body, "\r\n", 2);
		s->body_len += tl + 2;
	}
	net_conn_line_done(s->c);
	return SMTPS_STEP_DONE;
}

/*
 * smtps_process - handle every complete line while the state takes input
 * (PIPELINING), the replies are read, and no limit has ended it.
 */
static void
smtps_process(struct smtps *s)
{
	enum smtps_step r;
	bool took = false;

	while (SMTPS_S(s->state) & SMTPS_INPUT_STATES) {
		/* A client that sends and does not read: its replies
		 * wait, and so do its further commands. */
		if (net_conn_output_len(s->c) > SMTPS_OUT_HIGH) {
			net_conn_watch_drain(s->c, SMTPS_OUT_LOW);
			return;
		}
		if (s->skip_line) {
			if (!smtps_skip(s))
				break;
			took = true;
			continue;
		}
		if (s->state == SMTPS_DATA)
			r = smtps_data_line(s);
		else if (s->state == SMTPS_AUTH)
			r = smtps_sasl_line(s);
		else
			r = smtps_command_line(s);
		if (r == SMTPS_STEP_AGAIN)
			break;
		took = true;
		if (s->p.max_errors && s->errors >= s->p.max_errors &&
		    s->state != SMTPS_CLOSING) {
			smtps_reply(s, 421, "4.7.0",
			    "%s Error: too many errors", s->p.hostname);
			smtps_close(s, "too many errors");
		}
	}
	if (!(SMTPS_S(s->state) & SMTPS_INPUT_STATES))
		return;
	/* Half-closed and every complete line handled: done (a message
	 * without its final dot is not taken). */
	if (s->eof) {
		smtps_close(s, "connection closed by client");
		return;
	}
	if (took && s->p.idle_timeout_ms)
		smtps_timer_ms(s->idle_ev, s->p.idle_timeout_ms);
}

/* ------------------------------------------------------------ events */

static void
smtps_greet(struct smtps *s)
{
	struct smtps_answer ans = { 0 };
	int code;

	if (net_conn_input_len(s->c) > 0) {
		smtps_sync_error(s, "CONNECT");
		return;
	}
	if (s->ops->connect != NULL)
		s->ops->connect(s, s->arg, &ans);
	if (ans.code == 0 || ans.code / 100 == 2) {
		smtps_enter_state(s, SMTPS_CONNECTED);
		smtps_reply(s, 220, NULL, "%s ESMTP", s->p.hostname);
		return;
	}
	if (ans.code / 100 == 5) {
		mr_log_info(SMTPS_MOD, "id=%s event=refused peer=%s code=%d",
		    s->id, net_conn_peer(s->c), ans.code);
		smtps_enter_state(s, SMTPS_REFUSED);
		smtps_answer(s, &ans, 554, "5.7.1", "Error: access denied",
		    false);
		return;
	}
	code = smtps_answer(s, &ans, 421, "4.3.2",
	    "Service not available, closing transmission channel", false);
	mr_log_info(SMTPS_MOD, "id=%s event=refused peer=%s code=%d", s->id,
	    net_conn_peer(s->c), code);
	smtps_close(s, "refused at connect");
}

static void
smtps_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtps *s = arg;

	(void)fd;
	(void)what;
	if (s->state == SMTPS_GREETING)
		smtps_greet(s);
	else if (s->state == SMTPS_AUTH_CHECK && s->verdict_set)
		smtps_auth_finish(s);
	smtps_process(s);
}

static void
smtps_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtps *s = arg;

	(void)fd;
	(void)what;
	if (s->state == SMTPS_TLS) {
		smtps_end(s, "timeout during the TLS handshake");
		return;
	}
	mr_log_info(SMTPS_MOD, "id=%s event=timeout peer=%s state=%s", s->id,
	    net_conn_peer(s->c), smtps_strstate(s->state));
	smtps_reply(s, 421, "4.4.2", "%s Error: timeout exceeded",
	    s->p.hostname);
	smtps_close(s, "idle timeout");
}

static void
smtps_data_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtps *s = arg;

	(void)fd;
	(void)what;
	if (s->state != SMTPS_DATA)
		return;
	mr_log_info(SMTPS_MOD, "id=%s event=data-timeout peer=%s bytes=%zu",
	    s->id, net_conn_peer(s->c), s->body_len);
	smtps_reply(s, 421, "4.4.2", "%s Error: DATA time limit exceeded",
	    s->p.hostname);
	smtps_close(s, "DATA time limit");
}

static void
smtps_readable(struct net_conn *c, void *arg)
{
	struct smtps *s = arg;

	(void)c;
	if (s->state == SMTPS_GREETING) {
		/* Talking before the greeting (see the top of the file). */
		if (net_conn_input_len(s->c) > 0)
			smtps_sync_error(s, "CONNECT");
		return;
	}
	smtps_process(s);
}

static void
smtps_failed(struct net_conn *c, void *arg, int err, const char *what)
{
	struct smtps *s = arg;

	(void)c;
	if (s->state == SMTPS_CLOSED)
		return;
	/*
	 * A client that wrote its last commands and half-closed still has
	 * them carried out and answered; one that waits for the owner's
	 * answer (spooling, an AUTH check) keeps the session until then.
	 */
	if (err == MR_ECLOSED && !s->eof && s->state != SMTPS_CLOSING &&
	    s->state != SMTPS_TLS && s->state != SMTPS_GREETING &&
	    (!(SMTPS_S(s->state) & SMTPS_INPUT_STATES) ||
	    net_conn_input_len(s->c) > 0)) {
		s->eof = true;
		smtps_process(s);
		return;
	}
	smtps_end(s, what);
}

static void
smtps_drained(struct net_conn *c, void *arg)
{
	struct smtps *s = arg;

	(void)c;
	if (s->state == SMTPS_CLOSING) {
		smtps_end(s, s->reason);
		return;
	}
	smtps_process(s);
}

static void
smtps_tls_done(struct net_conn *c, void *arg)
{
	struct smtps *s = arg;

	(void)c;
	/* RFC 3207 4.2: start again from before EHLO. */
	smtps_txn_reset(s);
	s->helo[0] = '\0';
	s->esmtp = false;
	free(s->auth_user);
	s->auth_user = NULL;
	net_conn_input_limit(s->c, SMTPS_INPUT_MAX);	/* the filter's now */
	MR_TRACE(MR_TRACE_TLS, SMTPS_MOD, "id=%s tls=%s", s->id,
	    net_conn_tls_desc(s->c));
	smtps_enter_state(s, SMTPS_CONNECTED);
	smtps_process(s);
}

static const struct net_conn_cbs smtps_cbs = {
	.readable = smtps_readable,
	.failed = smtps_failed,
	.drained = smtps_drained,
	.tls_done = smtps_tls_done,
};

/* ------------------------------------------------------------ interface */

struct smtps *
smtps_accept(struct event_base *base, int fd, const struct sockaddr *peer,
    socklen_t peerlen, const struct smtps_params *params,
    const struct smtps_ops *ops, void *arg)
{
	struct smtps *s = xcalloc(1, sizeof(*s));
	uint32_t seq = (uint32_t)atomic_fetch_add(&smtps_seq, 1);

	MR_ASSERT(ops->rcpt != NULL && ops->message != NULL &&
	    ops->closed != NULL);
	snprintf(s->id, sizeof(s->id), "%08" PRIx32 "%08" PRIx32,
	    (uint32_t)(mr_wall_ms() / 1000), seq);
	s->base = base;
	s->p = *params;
	/* Cut to a domain's length: replies stay within their limit. */
	snprintf(s->host, sizeof(s->host), "%s",
	    s->p.hostname && *s->p.hostname ? s->p.hostname : "localhost");
	s->p.hostname = s->host;
	s->ops = ops;
	s->arg = arg;
	s->t0 = mr_clock_ms();
	s->state = SMTPS_GREETING;
	s->c = net_conn_accept(base, fd, peer, peerlen, &smtps_cbs, s);
	if (s->c == NULL) {
		free(s);
		return NULL;
	}
	net_conn_input_limit(s->c, SMTPS_INPUT_MAX);
	if (s->p.idle_timeout_ms)
		net_conn_write_timeout(s->c, s->p.idle_timeout_ms);
	s->idle_ev = evtimer_new(base, smtps_idle_cb, s);
	s->data_ev = evtimer_new(base, smtps_data_cb, s);
	s->wake_ev = evtimer_new(base, smtps_wake_cb, s);
	if (s->idle_ev == NULL || s->data_ev == NULL || s->wake_ev == NULL)
		mr_panic("out of memory");
	MR_TRACE(MR_TRACE_SMTP, SMTPS_MOD, "id=%s event=connect peer=%s",
	    s->id, net_conn_peer(s->c));
	smtps_timer_ms(s->wake_ev, s->p.greet_delay_ms);
	return s;
}

void
smtps_free(struct smtps **sp)
{
	struct smtps *s = *sp;

	if (s == NULL)
		return;
	*sp = NULL;
	if (s->state != SMTPS_CLOSED)
		mr_log_info(SMTPS_MOD, "id=%s event=end peer=%s reason=freed "
		    "state=%s messages=%u", s->id, net_conn_peer(s->c),
		    smtps_strstate(s->state), s->nmsgs);
	smtps_txn_reset(s);
	free(s->rcpts);
	if (s->sasl_user != NULL) {
		OPENSSL_cleanse(s->sasl_user, strlen(s->sasl_user));
		free(s->sasl_user);
	}
	free(s->pending_user);
	free(s->auth_user);
	if (s->idle_ev)
		event_free(s->idle_ev);
	if (s->data_ev)
		event_free(s->data_ev);
	if (s->wake_ev)
		event_free(s->wake_ev);
	net_conn_free(&s->c);
	free(s);
}

void
smtps_reply_message(struct smtps *s, int code, const char *esc,
    const char *text)
{
	struct smtps_answer ans = { code, esc, text };
	const char *defesc = "2.0.0", *deftext = "Ok: queued";
	int sent;

	if (s->state == SMTPS_CLOSING || s->state == SMTPS_CLOSED)
		return;
	MR_ASSERT(s->state == SMTPS_QUEUED);
	if (code / 100 == 4) {
		defesc = "4.3.0";
		deftext = "Error: try again later";
	} else if (code / 100 == 5) {
		defesc = "5.3.0";
		deftext = "Error: message refused";
	}
	/* The owner's refusal is not the client's error. */
	sent = smtps_answer(s, &ans, 250, defesc, deftext, false);
	mr_log_info(SMTPS_MOD, "id=%s event=message peer=%s from=%s rcpts=%zu "
	    "size=%zu user=%s tls=%s reply=%d", s->id, net_conn_peer(s->c),
	    mr_q(s->sender, (size_t)-1), s->nrcpts, s->body_len,
	    s->auth_user ? mr_q(s->auth_user, (size_t)-1) : "-",
	    net_conn_is_tls(s->c) ? "yes" : "no", sent);
	if (sent / 100 == 2)
		s->nmsgs++;
	smtps_txn_reset(s);
	if (sent == 421) {
		smtps_close(s, "421 after DATA");
		return;
	}
	smtps_enter_state(s, SMTPS_READY);
	/* Pipelined commands go on from the loop, never from in here. */
	smtps_timer_ms(s->wake_ev, 0);
}

void
smtps_auth_result(struct smtps *s, enum smtps_auth_status st,
    unsigned delay_ms)
{
	if (s->state != SMTPS_AUTH_CHECK || s->verdict_set)
		return;		/* closed meanwhile */
	s->verdict = st;
	s->verdict_set = true;
	smtps_timer_ms(s->wake_ev, delay_ms);
}

void
smtps_shutdown(struct smtps *s)
{
	if (s->state == SMTPS_CLOSING || s->state == SMTPS_CLOSED)
		return;
	if (s->state != SMTPS_TLS)
		smtps_reply(s, 421, "4.3.2", "%s Service shutting down",
		    s->p.hostname);
	smtps_close(s, "shutdown");
}

const char *
smtps_id(const struct smtps *s)
{
	return s->id;
}

const char *
smtps_peer(const struct smtps *s)
{
	return net_conn_peer(s->c);
}

const struct sockaddr *
smtps_peer_addr(const struct smtps *s)
{
	return net_conn_peer_addr(s->c);
}

const char *
smtps_auth_user(const struct smtps *s)
{
	return s->auth_user;
}

bool
smtps_is_tls(const struct smtps *s)
{
	return net_conn_is_tls(s->c);
}
