/*
 * smtpc.c - the SMTP client session: a state machine driven by replies,
 * with a FIFO of the replies still expected so that commands can be
 * pipelined.
 *
 * States only move forward (house style rule 26):
 *
 *   CONNECTING -> GREETING -> EHLO -+-> STARTTLS -> TLS -> EHLO (again)
 *                             |     +-> READY <-> (transactions)
 *                             +-> HELO -> READY
 *   READY -> QUIT -> DONE;  any state -> DONE on failure or timeout.
 *
 * In READY each command written pushes the reply it expects (MAIL, RCPT,
 * DATA, DOT, RSET) and each reply pops one.  A transaction is in its
 * command phase from MAIL until the reply to DATA; only one transaction is
 * in that phase at a time, so a failed one can be RSET before the next
 * MAIL goes out.  Each state and each expected reply has its own timeout
 * (RFC 5321 4.5.3.2).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/mr_err.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "net/conn.h"
#include "smtp/reply.h"
#include "smtpc/smtpc.h"

#define SMTPC_INFLIGHT_MAX	4

enum smtpc_state {
	SMTPC_CONNECTING,
	SMTPC_GREETING,
	SMTPC_EHLO,
	SMTPC_HELO,
	SMTPC_STARTTLS,
	SMTPC_TLS,
	SMTPC_READY,
	SMTPC_QUIT,
	SMTPC_DONE,
};

enum smtpc_exp_kind {
	SMTPC_EXP_MAIL,
	SMTPC_EXP_RCPT,
	SMTPC_EXP_DATA,
	SMTPC_EXP_DOT,
	SMTPC_EXP_RSET,
};

struct smtpc_exp {
	uint8_t			 kind;
	uint32_t		 rcpt;
	struct smtpc_txn	*txn;	/* NULL for RSET */
};

struct smtpc {
	struct event_base	*base;
	struct net_conn		*conn;
	struct event		*timer;
	const struct mr_config	*cfg;
	SSL_CTX			*tls_ctx;
	char			*helo;
	char			*mx_name;
	bool			 no_tls;
	const struct smtpc_ops	*ops;
	void			*arg;

	enum smtpc_state	 state;
	bool			 usable;
	bool			 quit_wanted;
	bool			 in_ready;
	struct smtp_reply	 reply;
	unsigned		 caps;
	unsigned long		 size_limit;
	unsigned long		 ntxns;

	struct smtpc_exp	*fifo;		/* ring of expected replies */
	size_t			 head, n, cap;
	struct smtpc_txn	*cmd_txn;	/* in its command phase */
	struct smtpc_txn	*inflight[SMTPC_INFLIGHT_MAX];
	size_t			 ninflight;

	struct mr_buf		 text;		/* scratch: one-line replies */
	struct evbuffer		*out;		/* commands not yet handed to
						 * the connection (coalesced:
						 * one TLS record a round) */
	char			 peer[64];
};

static const char *const smtpc_state_names[] = {
	"connecting", "greeting", "ehlo", "helo", "starttls", "tls",
	"ready", "quit", "done",
};

static void smtpc_arm(struct smtpc *s);
static void smtpc_end(struct smtpc *s, int err, const struct smtp_reply *r,
    const char *esc, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void smtpc_maybe_ready(struct smtpc *s);
static void smtpc_flush(struct smtpc *s);
static void smtpc_connected(struct net_conn *c, void *arg);

static const char *
smtpc_strstate(enum smtpc_state st)
{
	return smtpc_state_names[st];
}

static void
smtpc_enter_state(struct smtpc *s, enum smtpc_state st)
{
	MR_TRACE(MR_TRACE_SMTP, "smtpc", "peer=%s state=%s->%s", s->peer,
	    smtpc_strstate(s->state), smtpc_strstate(st));
	s->state = st;
	smtpc_arm(s);
}

const char *
smtpc_result_text(const struct smtpc_txn *txn, const struct smtpc_result *r)
{
	return txn->texts.data ? txn->texts.data + r->text : "";
}

/* smtpc_write - a command line; CRLF is added. */
static void
smtpc_write(struct smtpc *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
smtpc_write(struct smtpc *s, const char *fmt, ...)
{
	struct evbuffer *out = s->out;
	va_list ap;

	va_start(ap, fmt);
	if (mr_trace_enabled(MR_TRACE_SMTP)) {
		char line[600];
		va_list ap2;

		va_copy(ap2, ap);
		vsnprintf(line, sizeof(line), fmt, ap2);
		va_end(ap2);
		mr_trace(MR_TRACE_SMTP, "smtpc", "peer=%s > %s", s->peer,
		    mr_q(line, (size_t)-1));
	}
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

/* smtpc_flush - hand what was written this round to the connection. */
static void
smtpc_flush(struct smtpc *s)
{
	if (evbuffer_get_length(s->out) > 0)
		evbuffer_add_buffer(net_conn_output(s->conn), s->out);
}

static void
smtpc_expect(struct smtpc *s, uint8_t kind, struct smtpc_txn *txn,
    uint32_t rcpt)
{
	size_t i;

	if (s->n == s->cap) {
		struct smtpc_exp *v;

		v = xreallocarray(NULL, s->cap ? s->cap * 2 : 16, sizeof(*v));
		for (i = 0; i < s->n; i++)
			v[i] = s->fifo[(s->head + i) % s->cap];
		free(s->fifo);
		s->fifo = v;
		s->head = 0;
		s->cap = s->cap ? s->cap * 2 : 16;
	}
	s->fifo[(s->head + s->n) % s->cap] =
	    (struct smtpc_exp){ kind, rcpt, txn };
	s->n++;
}

static unsigned
smtpc_timeout_ms(const struct smtpc *s)
{
	const struct mr_config *c = s->cfg;

	switch (s->state) {
	case SMTPC_CONNECTING:
		return (unsigned)c->smtp_connect_timeout;
	case SMTPC_GREETING:
		return (unsigned)c->smtp_greeting_timeout;
	case SMTPC_EHLO:
	case SMTPC_HELO:
		return (unsigned)c->smtp_ehlo_timeout;
	case SMTPC_STARTTLS:
	case SMTPC_TLS:
		return (unsigned)c->smtp_starttls_timeout;
	case SMTPC_QUIT:
		return (unsigned)c->smtp_quit_timeout;
	case SMTPC_DONE:
		return 0;
	case SMTPC_READY:
		break;
	}
	if (s->n == 0)
		return (unsigned)c->smtp_idle_timeout;
	switch (s->fifo[s->head].kind) {
	case SMTPC_EXP_MAIL:
	case SMTPC_EXP_RSET:
		return (unsigned)c->smtp_mail_timeout;
	case SMTPC_EXP_RCPT:
		return (unsigned)c->smtp_rcpt_timeout;
	case SMTPC_EXP_DATA:
		return (unsigned)c->smtp_data_timeout;
	default:
		return (unsigned)c->smtp_data_done_timeout;
	}
}

static void
smtpc_arm(struct smtpc *s)
{
	unsigned ms = smtpc_timeout_ms(s);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (ms == 0)
		evtimer_del(s->timer);
	else
		evtimer_add(s->timer, &tv);
}

static const char *
smtpc_waiting_for(const struct smtpc *s)
{
	if (s->state != SMTPC_READY)
		return smtpc_strstate(s->state);
	if (s->n == 0)
		return "idle";
	switch (s->fifo[s->head].kind) {
	case SMTPC_EXP_MAIL:
		return "MAIL FROM";
	case SMTPC_EXP_RCPT:
		return "RCPT TO";
	case SMTPC_EXP_DATA:
		return "DATA";
	case SMTPC_EXP_DOT:
		return "end of data";
	default:
		return "RSET";
	}
}

static void
smtpc_quit_now(struct smtpc *s)
{
	smtpc_write(s, "QUIT");
	smtpc_enter_state(s, SMTPC_QUIT);
}

static void
smtpc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtpc *s = arg;

	(void)fd;
	(void)what;
	if (s->state == SMTPC_READY && s->n == 0) {
		/* Idle for smtp.idle_timeout: leave politely. */
		smtpc_quit_now(s);
		smtpc_flush(s);
		return;
	}
	if (s->state == SMTPC_QUIT) {
		smtpc_end(s, 0, NULL, NULL, "QUIT timed out");
		return;
	}
	if (s->state == SMTPC_TLS) {
		/* A stalled handshake is a TLS failure: with policy may the
		 * owner tries again in plain text. */
		smtpc_end(s, MR_ETLS, NULL, "4.7.5", "TLS handshake with %s "
		    "timed out", s->peer);
		return;
	}
	smtpc_end(s, MR_ETIMEOUT, NULL,
	    s->state <= SMTPC_GREETING ? "4.4.1" : "4.4.2",
	    "timeout waiting for the reply to %s from %s",
	    smtpc_waiting_for(s), s->peer);
}

/* smtpc_set_result - a recipient's result, unless it has one already. */
static void
smtpc_set_result(struct smtpc_txn *txn, size_t i, const struct smtp_reply *r,
    int cls, uint16_t code, const char *esc, const char *text)
{
	struct smtpc_result *res = &txn->res[i];

	if (res->cls != 0)
		return;
	res->cls = (uint8_t)cls;
	res->code = code;
	snprintf(res->esc, sizeof(res->esc), "%s", esc ? esc : "");
	if (r != NULL && r->esc[0] == '\0' && esc == NULL) {
		/* No enhanced code from the server: derive the class one. */
		snprintf(res->esc, sizeof(res->esc), "%d.0.0", cls);
	}
	res->text = (uint32_t)txn->texts.len;
	mr_buf_puts(&txn->texts, text);
	mr_buf_putc(&txn->texts, '\0');
}

static void
smtpc_set_reply(struct smtpc *s, struct smtpc_txn *txn, size_t i,
    const struct smtp_reply *r)
{
	smtp_reply_oneline(r, &s->text, 1024);
	smtpc_set_result(txn, i, r, smtp_reply_class(r),
	    (uint16_t)r->code, r->esc[0] ? r->esc : NULL,
	    mr_buf_cstr(&s->text));
}

static void
smtpc_inflight_remove(struct smtpc *s, struct smtpc_txn *txn)
{
	size_t i;

	for (i = 0; i < s->ninflight; i++) {
		if (s->inflight[i] == txn) {
			s->inflight[i] = s->inflight[--s->ninflight];
			return;
		}
	}
}

/* smtpc_finish_txn - report txn; RSET first when the server still holds
 * a transaction open. */
static void
smtpc_finish_txn(struct smtpc *s, struct smtpc_txn *txn, bool need_rset)
{
	if (s->cmd_txn == txn)
		s->cmd_txn = NULL;
	if (need_rset) {
		smtpc_write(s, "RSET");
		smtpc_expect(s, SMTPC_EXP_RSET, NULL, 0);
	}
	smtpc_inflight_remove(s, txn);
	s->ops->done(s, s->arg, txn);
}

/*
 * smtpc_end - the session is over: pending recipients get a temporary
 * result (the reply r when one ended it, else esc and the sentence), the
 * owner hears of each transaction and then of the end.  Nothing touches
 * s afterwards.
 */
static void
smtpc_end(struct smtpc *s, int err, const struct smtp_reply *r,
    const char *esc, const char *fmt, ...)
{
	enum smtpc_state was = s->state;
	struct smtpc_end end;
	struct smtpc_txn *txn;
	char why[512];
	va_list ap;
	size_t i;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	smtpc_enter_state(s, SMTPC_DONE);
	s->n = 0;
	s->cmd_txn = NULL;
	while (s->ninflight > 0) {
		txn = s->inflight[--s->ninflight];
		for (i = 0; i < txn->nrcpts; i++) {
			if (r != NULL && smtp_reply_class(r) >= 4)
				smtpc_set_result(txn, i, r, 4,
				    (uint16_t)r->code, r->esc[0] ? r->esc :
				    "4.4.2", why);
			else
				smtpc_set_result(txn, i, NULL, 4, 0,
				    esc ? esc : "4.4.2", why);
		}
		s->ops->done(s, s->arg, txn);
	}
	memset(&end, 0, sizeof(end));
	end.err = err;
	end.usable = s->usable;
	end.tls_failed = err == MR_ETLS;
	end.text = why;
	if (r != NULL) {
		end.code = (uint16_t)r->code;
		snprintf(end.esc, sizeof(end.esc), "%s", r->esc);
	} else if (esc != NULL) {
		snprintf(end.esc, sizeof(end.esc), "%s", esc);
	}
	if (err != 0 || r != NULL)
		mr_log_info("smtpc", "peer=%s event=end state=%s reason=%s",
		    s->peer, smtpc_strstate(was), mr_q(why, (size_t)-1));
	s->ops->closed(s, s->arg, &end);
}

static void
smtpc_send_ehlo(struct smtpc *s)
{
	smtpc_write(s, "EHLO %s", s->helo);
	smtpc_enter_state(s, SMTPC_EHLO);
}

static void
smtpc_enter_ready(struct smtpc *s)
{
	s->usable = true;
	smtpc_enter_state(s, SMTPC_READY);
	mr_log_debug("smtpc", "peer=%s event=ready tls=%s caps=0x%x",
	    s->peer, net_conn_tls_desc(s->conn), s->caps);
	smtpc_maybe_ready(s);
}

static bool
smtpc_pipelining(const struct smtpc *s)
{
	return s->cfg->smtp_pipelining && (s->caps & SMTP_CAP_PIPELINING);
}

bool
smtpc_can_send(const struct smtpc *s)
{
	return s->state == SMTPC_READY && !s->quit_wanted &&
	    s->cmd_txn == NULL &&
	    s->ntxns < (unsigned long)s->cfg->smtp_max_messages_per_connection &&
	    s->ninflight < SMTPC_INFLIGHT_MAX &&
	    (s->n == 0 || smtpc_pipelining(s));
}

/*
 * smtpc_maybe_ready - offer the owner a slot, and when it has nothing for
 * us: leave if we are done, else wait (the idle timer runs when nothing
 * is expected).
 */
static void
smtpc_maybe_ready(struct smtpc *s)
{
	if (s->state != SMTPC_READY || s->in_ready)
		return;
	if (smtpc_can_send(s)) {
		s->in_ready = true;
		s->ops->ready(s, s->arg);
		s->in_ready = false;
	}
	if (s->state == SMTPC_READY && s->n == 0 && s->cmd_txn == NULL &&
	    (s->quit_wanted || s->ntxns >=
	    (unsigned long)s->cfg->smtp_max_messages_per_connection))
		smtpc_quit_now(s);
	else if (s->state == SMTPC_READY)
		smtpc_arm(s);
}

int
smtpc_send(struct smtpc *s, struct smtpc_txn *txn)
{
	bool pipe = smtpc_pipelining(s);
	char params[64];
	size_t i;

	if (!smtpc_can_send(s))
		return -1;
	s->ntxns++;
	txn->sent_rcpts = 0;
	txn->accepted = 0;
	txn->mail_failed = false;
	txn->body_sent = false;
	s->inflight[s->ninflight++] = txn;
	s->cmd_txn = txn;
	params[0] = '\0';
	if (s->caps & SMTP_CAP_SIZE)
		snprintf(params, sizeof(params), " SIZE=%zu", txn->size);
	if (txn->eight_bit && (s->caps & SMTP_CAP_8BITMIME))
		snprintf(params + strlen(params), sizeof(params) -
		    strlen(params), " BODY=8BITMIME");
	smtpc_write(s, "MAIL FROM:<%s>%s", txn->mail_from, params);
	smtpc_expect(s, SMTPC_EXP_MAIL, txn, 0);
	if (pipe) {
		for (i = 0; i < txn->nrcpts; i++) {
			smtpc_write(s, "RCPT TO:<%s>", txn->rcpt[i]);
			smtpc_expect(s, SMTPC_EXP_RCPT, txn, (uint32_t)i);
		}
		txn->sent_rcpts = (unsigned)txn->nrcpts;
		smtpc_write(s, "DATA");
		smtpc_expect(s, SMTPC_EXP_DATA, txn, 0);
	}
	if (!s->in_ready) {
		/* Called from outside a reply round: nothing else will flush
		 * or re-arm for us. */
		smtpc_flush(s);
		smtpc_arm(s);
	}
	return 0;
}

void
smtpc_quit(struct smtpc *s)
{
	s->quit_wanted = true;
	if (s->state == SMTPC_READY && s->n == 0 && s->cmd_txn == NULL &&
	    !s->in_ready) {
		smtpc_quit_now(s);
		smtpc_flush(s);
	}
}

/*
 * smtpc_reply_fits - is r a reply that the command it answers may get?
 * Anything else (a 2xx to DATA, a 3xx to MAIL, RCPT or the final dot) is
 * a protocol error: taking it for a success could report mail delivered
 * that was never sent.
 */
static bool
smtpc_reply_fits(uint8_t kind, const struct smtp_reply *r)
{
	int cls = smtp_reply_class(r);

	if (kind == SMTPC_EXP_DATA)
		return r->code == 354 || cls == 4 || cls == 5;
	return cls == 2 || cls == 4 || cls == 5;
}

/*
 * smtpc_on_txn_reply - a reply in READY, matched with what it answers.
 * Returns false when the session has ended.
 */
static bool
smtpc_on_txn_reply(struct smtpc *s, const struct smtp_reply *r)
{
	struct smtpc_exp e = s->fifo[s->head];
	struct smtpc_txn *txn = e.txn;
	int cls = smtp_reply_class(r);
	bool pipe = smtpc_pipelining(s);
	size_t i;

	if (!smtpc_reply_fits(e.kind, r)) {
		smtp_reply_oneline(r, &s->text, 1024);
		smtpc_end(s, MR_EPROTO, NULL, "4.5.0", "%s answered %s with "
		    "%d %s, which breaks the protocol", s->peer,
		    smtpc_waiting_for(s), r->code, mr_buf_cstr(&s->text));
		return false;
	}
	if (r->code == 421) {
		/* The server is closing the channel (RFC 5321 3.8): what is
		 * pending is tried again later. */
		smtp_reply_oneline(r, &s->text, 1024);
		smtpc_end(s, MR_EPROTO, r, NULL, "%s closes the session: %d "
		    "%s", s->peer, r->code, mr_buf_cstr(&s->text));
		return false;
	}
	s->head = (s->head + 1) % s->cap;
	s->n--;
	switch (e.kind) {
	case SMTPC_EXP_MAIL:
		if (cls != 2) {
			txn->mail_failed = true;
			for (i = 0; i < txn->nrcpts; i++)
				smtpc_set_reply(s, txn, i, r);
			if (!pipe)
				smtpc_finish_txn(s, txn, false);
			break;
		}
		if (!pipe) {
			smtpc_write(s, "RCPT TO:<%s>", txn->rcpt[0]);
			smtpc_expect(s, SMTPC_EXP_RCPT, txn, 0);
			txn->sent_rcpts = 1;
		}
		break;
	case SMTPC_EXP_RCPT:
		if (!txn->mail_failed) {
			if (cls == 2)
				txn->accepted++;
			else
				smtpc_set_reply(s, txn, e.rcpt, r);
		}
		if (pipe)
			break;
		if (txn->sent_rcpts < txn->nrcpts) {
			smtpc_write(s, "RCPT TO:<%s>",
			    txn->rcpt[txn->sent_rcpts]);
			smtpc_expect(s, SMTPC_EXP_RCPT, txn, txn->sent_rcpts);
			txn->sent_rcpts++;
		} else if (txn->accepted > 0) {
			smtpc_write(s, "DATA");
			smtpc_expect(s, SMTPC_EXP_DATA, txn, 0);
		} else {
			smtpc_finish_txn(s, txn, true);
		}
		break;
	case SMTPC_EXP_DATA:
		if (r->code != 354) {
			if (!txn->mail_failed)
				for (i = 0; i < txn->nrcpts; i++)
					smtpc_set_reply(s, txn, i, r);
			smtpc_finish_txn(s, txn, !txn->mail_failed);
			break;
		}
		if (txn->accepted > 0 && !txn->mail_failed) {
			evbuffer_add_buffer(s->out, txn->body);
			txn->body_sent = true;
		}
		/* With no recipient left the server should not have said
		 * 354; end the empty message all the same. */
		evbuffer_add(s->out, ".\r\n", 3);
		MR_TRACE(MR_TRACE_SMTP, "smtpc", "peer=%s > (message, %zu "
		    "bytes) .", s->peer, txn->size);
		smtpc_expect(s, SMTPC_EXP_DOT, txn, 0);
		s->cmd_txn = NULL;
		break;
	case SMTPC_EXP_DOT:
		if (txn->body_sent)
			for (i = 0; i < txn->nrcpts; i++)
				smtpc_set_reply(s, txn, i, r);
		smtpc_finish_txn(s, txn, false);
		break;
	case SMTPC_EXP_RSET:
		if (cls != 2)
			s->quit_wanted = true;
		break;
	}
	return true;
}

/*
 * smtpc_after_hello - the server greeted our EHLO or HELO: STARTTLS when
 * the policy wants it and the server offers it, else ready (or the end,
 * when TLS is required and not to be had).  Returns false when the
 * session has ended.
 */
static bool
smtpc_after_hello(struct smtpc *s)
{
	int policy = s->cfg->smtp_tls_policy;

	if (!net_conn_is_tls(s->conn) && policy != CONF_TLS_NONE &&
	    s->tls_ctx != NULL && !s->no_tls &&
	    (s->caps & SMTP_CAP_STARTTLS)) {
		smtpc_write(s, "STARTTLS");
		smtpc_enter_state(s, SMTPC_STARTTLS);
		return true;
	}
	if (policy >= CONF_TLS_ENCRYPT && !net_conn_is_tls(s->conn)) {
		smtpc_end(s, MR_ETLS, NULL, "4.7.5", "TLS is required "
		    "(smtp.tls_policy) but %s does not offer STARTTLS",
		    s->peer);
		return false;
	}
	smtpc_enter_ready(s);
	return s->state != SMTPC_DONE;
}

/*
 * smtpc_on_reply - one complete reply.  Returns false when the session
 * has ended (and may be freed): the caller must not touch s.
 */
static bool
smtpc_on_reply(struct smtpc *s, const struct smtp_reply *r)
{
	int cls = smtp_reply_class(r);
	int policy = s->cfg->smtp_tls_policy;

	if (mr_trace_enabled(MR_TRACE_SMTP)) {
		smtp_reply_oneline(r, &s->text, 512);
		mr_trace(MR_TRACE_SMTP, "smtpc", "peer=%s < %d %s", s->peer,
		    r->code, mr_q(mr_buf_cstr(&s->text), (size_t)-1));
	}
	switch (s->state) {
	case SMTPC_GREETING:
		if (cls != 2) {
			smtp_reply_oneline(r, &s->text, 1024);
			smtpc_end(s, MR_EPROTO, r, NULL, "%s refused to talk "
			    "to me: %d %s", s->peer, r->code,
			    mr_buf_cstr(&s->text));
			return false;
		}
		smtpc_send_ehlo(s);
		return true;
	case SMTPC_EHLO:
		if (cls == 2) {
			s->caps = smtp_ehlo_caps(r, &s->size_limit);
			return smtpc_after_hello(s);
		}
		if (cls == 5) {
			/* An old server: RFC 5321 4.1.4 lets us try HELO. */
			smtpc_write(s, "HELO %s", s->helo);
			smtpc_enter_state(s, SMTPC_HELO);
			return true;
		}
		smtp_reply_oneline(r, &s->text, 1024);
		smtpc_end(s, MR_EPROTO, r, NULL, "%s refused EHLO: %d %s",
		    s->peer, r->code, mr_buf_cstr(&s->text));
		return false;
	case SMTPC_HELO:
		if (cls != 2) {
			smtp_reply_oneline(r, &s->text, 1024);
			smtpc_end(s, MR_EPROTO, r, NULL, "%s refused HELO: %d %s",
			    s->peer, r->code, mr_buf_cstr(&s->text));
			return false;
		}
		s->caps = 0;
		s->size_limit = 0;
		return smtpc_after_hello(s);
	case SMTPC_STARTTLS:
		if (r->code != 220) {
			if (policy >= CONF_TLS_ENCRYPT) {
				smtp_reply_oneline(r, &s->text, 1024);
				smtpc_end(s, MR_ETLS, r, "4.7.5", "TLS is "
				    "required but %s refused STARTTLS: %d %s",
				    s->peer, r->code, mr_buf_cstr(&s->text));
				return false;
			}
			smtpc_enter_ready(s);
			return s->state != SMTPC_DONE;
		}
		if (net_conn_starttls(s->conn, s->tls_ctx, s->mx_name,
		    policy == CONF_TLS_VERIFY) != 0) {
			smtpc_end(s, MR_ETLS, NULL, "4.7.5", "%s sent data "
			    "after its 220 to STARTTLS, or TLS could not "
			    "start", s->peer);
			return false;
		}
		smtpc_enter_state(s, SMTPC_TLS);
		return true;
	case SMTPC_READY:
		if (s->n == 0) {
			smtp_reply_oneline(r, &s->text, 1024);
			smtpc_end(s, MR_EPROTO, r, NULL, "%s said, unasked: "
			    "%d %s", s->peer, r->code, mr_buf_cstr(&s->text));
			return false;
		}
		if (!smtpc_on_txn_reply(s, r))
			return false;
		if (s->state == SMTPC_READY) {
			smtpc_maybe_ready(s);
			return s->state != SMTPC_DONE;
		}
		return true;
	case SMTPC_QUIT:
		smtpc_end(s, 0, NULL, NULL, "QUIT");
		return false;
	default:
		smtpc_end(s, MR_EPROTO, r, NULL, "%s sent a reply while %s",
		    s->peer, smtpc_strstate(s->state));
		return false;
	}
}

static void
smtpc_readable(struct net_conn *c, void *arg)
{
	struct smtpc *s = arg;
	enum smtp_reply_status st;
	const char *line;
	size_t len;

	/* libevent may report data before it reports the connection. */
	if (s->state == SMTPC_CONNECTING)
		smtpc_connected(c, s);
	for (;;) {
		switch (net_conn_line(s->conn,
		    (size_t)s->cfg->smtp_reply_line_max, &line, &len)) {
		case NET_LINE_AGAIN:
			smtpc_flush(s);
			return;
		case NET_LINE_TOO_LONG:
			smtpc_end(s, MR_EPROTO, NULL, NULL, "%s sent a reply "
			    "line longer than %lld octets", s->peer,
			    s->cfg->smtp_reply_line_max);
			return;
		case NET_LINE_OK:
			break;
		}
		st = smtp_reply_feed(&s->reply, line, len);
		if (st == SMTP_REPLY_BAD) {
			smtpc_end(s, MR_EPROTO, NULL, NULL, "%s sent something "
			    "that is not an SMTP reply: %s", s->peer,
			    mr_q(line, len));
			return;
		}
		net_conn_line_done(s->conn);
		if (st == SMTP_REPLY_MORE)
			continue;
		if (s->state == SMTPC_TLS) {
			smtpc_end(s, MR_EPROTO, &s->reply, NULL, "%s sent a "
			    "reply during the TLS handshake", s->peer);
			return;
		}
		if (!smtpc_on_reply(s, &s->reply))
			return;
	}
}

static void
smtpc_connected(struct net_conn *c, void *arg)
{
	struct smtpc *s = arg;

	if (s->state != SMTPC_CONNECTING)
		return;
	net_conn_write_timeout(c, (unsigned)s->cfg->smtp_data_block_timeout);
	smtpc_enter_state(s, SMTPC_GREETING);
}

static void
smtpc_tls_done(struct net_conn *c, void *arg)
{
	struct smtpc *s = arg;

	mr_log_debug("smtpc", "peer=%s event=tls %s", s->peer,
	    net_conn_tls_desc(c));
	smtpc_send_ehlo(s);
	smtpc_flush(s);
}

static void
smtpc_failed(struct net_conn *c, void *arg, int err, const char *what)
{
	struct smtpc *s = arg;

	(void)c;
	if (s->state == SMTPC_QUIT) {
		smtpc_end(s, 0, NULL, NULL, "closed after QUIT");
		return;
	}
	if (err == MR_ETLS || s->state == SMTPC_TLS) {
		smtpc_end(s, MR_ETLS, NULL, "4.7.5", "%s", what);
		return;
	}
	smtpc_end(s, err, NULL, s->state <= SMTPC_GREETING ? "4.4.1" :
	    "4.4.2", "%s%s", what, s->state == SMTPC_READY && s->n ?
	    (s->fifo[s->head].kind == SMTPC_EXP_DOT ? " while sending the "
	    "message" : " during the transaction") : "");
}

static const struct net_conn_cbs smtpc_conn_cbs = {
	.connected = smtpc_connected,
	.readable = smtpc_readable,
	.tls_done = smtpc_tls_done,
	.failed = smtpc_failed,
};

struct smtpc *
smtpc_new(struct event_base *base, const struct smtpc_params *p,
    const struct smtpc_ops *ops, void *arg, int *err_r)
{
	struct smtpc *s = xcalloc(1, sizeof(*s));

	s->base = base;
	s->cfg = p->cfg;
	s->tls_ctx = p->tls_ctx;
	s->helo = xstrdup(p->helo);
	s->mx_name = xstrdup(p->mx_name ? p->mx_name : "");
	s->no_tls = p->no_tls;
	s->ops = ops;
	s->arg = arg;
	s->state = SMTPC_CONNECTING;
	smtp_reply_init(&s->reply);
	s->out = evbuffer_new();
	s->timer = evtimer_new(base, smtpc_timer_cb, s);
	s->conn = net_conn_connect_from(base, p->addr, p->addrlen, p->src,
	    p->srclen, (unsigned)p->cfg->smtp_connect_timeout, &smtpc_conn_cbs,
	    s, err_r);
	if (s->conn == NULL) {
		smtpc_free(&s);
		return NULL;
	}
	snprintf(s->peer, sizeof(s->peer), "%s", net_conn_peer(s->conn));
	smtpc_arm(s);
	return s;
}

void
smtpc_free(struct smtpc **sp)
{
	struct smtpc *s = *sp;

	if (s == NULL)
		return;
	net_conn_free(&s->conn);
	if (s->timer)
		event_free(s->timer);
	smtp_reply_release(&s->reply);
	mr_buf_release(&s->text);
	if (s->out)
		evbuffer_free(s->out);
	free(s->fifo);
	free(s->helo);
	free(s->mx_name);
	free(s);
	*sp = NULL;
}

unsigned long
smtpc_size_limit(const struct smtpc *s)
{
	return s->size_limit;
}
