/*
 * pop3s.c - the client side of a POP3 server session (see pop3s.h).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/mr_err.h"
#include "core/xalloc.h"
#include "net/conn.h"
#include "pop3/pop3s.h"

struct pop3s {
	struct net_conn		*c;
	const struct pop3s_ops	*ops;
	void			*arg;
	bool			 greeted;
	bool			 tls_pending;	/* a handshake under way */
	bool			 eof;		/* the client sent all it will */
	bool			 closing;
};

void
pop3s_refuse(int fd)
{
	static const char busy[] = "-ERR [SYS/TEMP] too many connections, "
	    "try again later\r\n";
	ssize_t w;

	w = write(fd, busy, sizeof(busy) - 1);
	(void)w;
	close(fd);
}

struct net_conn *
pop3s_conn(struct pop3s *s)
{
	return s->c;
}

bool
pop3s_closing(const struct pop3s *s)
{
	return s->closing;
}

void
pop3s_close(struct pop3s *s)
{
	if (s->closing)
		return;
	s->closing = true;
	net_conn_reading(s->c, false);
	/* The last reply and the FIN in one segment, when they can be. */
	net_conn_shutdown(s->c);
	net_conn_watch_drain(s->c, 0);
}

static void
pop3s_greet(struct pop3s *s)
{
	s->greeted = true;
	s->ops->greet(s->arg);
}

void
pop3s_process(struct pop3s *s)
{
	char line[POP3_LINE_MAX + 1];
	struct pop3_cmd cmd;
	const char *p, *why;
	size_t n;
	enum pop3_parse pr;
	bool more = true;

	/* The replies to what is handled here leave in one send(2): with
	 * the FIN when the session ends (pop3s_close). */
	net_conn_cork(s->c);
	while (more && !s->closing && !s->tls_pending &&
	    s->ops->ready(s->arg)) {
		/* A client that sends and does not read: its replies wait,
		 * and so do its further commands. */
		if (net_conn_output_len(s->c) > POP3S_OUT_HIGH) {
			net_conn_watch_drain(s->c, POP3S_OUT_LOW);
			break;
		}
		switch (net_conn_line(s->c, POP3_LINE_MAX, &p, &n)) {
		case NET_LINE_AGAIN:
			/* Half-closed and every command answered: done (a
			 * missing QUIT means no update, RFC 1939 6). */
			if (s->eof)
				pop3s_close(s);
			more = false;
			continue;
		case NET_LINE_TOO_LONG:
			net_conn_sendf(s->c, "-ERR command line too long (255 "
			    "octets at most)\r\n");
			pop3s_close(s);
			more = false;
			continue;
		case NET_LINE_OK:
			break;
		}
		/* A copy, and the input moves on before the owner acts:
		 * after STLS the connection reads through TLS. */
		memcpy(line, p, n);
		line[n] = '\0';
		net_conn_line_done(s->c);
		if (s->ops->line == NULL || !s->ops->line(s->arg, line, n)) {
			pr = pop3_cmd_parse(line, n, &cmd, &why);
			if (pr != POP3_OK)
				s->ops->bad(s->arg, pr, why);
			else
				s->ops->command(s->arg, &cmd, line, n);
		}
		/* It may have held a password. */
		OPENSSL_cleanse(line, n);
	}
	net_conn_uncork(s->c);
}

void
pop3s_stls(struct pop3s *s, SSL_CTX *ctx)
{
	net_conn_sendf(s->c, "+OK Begin TLS negotiation\r\n");
	/* Commands sent after STLS in plain text are not taken into the
	 * TLS session (RFC 2595 4): such a client is dropped. */
	if (net_conn_accepttls(s->c, ctx) != 0) {
		pop3s_close(s);
		return;
	}
	s->tls_pending = true;
}

static void
pop3s_readable(struct net_conn *c, void *arg)
{
	(void)c;
	pop3s_process(arg);
}

static void
pop3s_failed(struct net_conn *c, void *arg, int err, const char *what)
{
	struct pop3s *s = arg;

	(void)c;
	(void)what;
	/* A client that wrote its last commands (QUIT among them) and
	 * half-closed still has them carried out and answered. */
	if (err == MR_ECLOSED && !s->eof && !s->closing && s->greeted &&
	    (!s->ops->ready(s->arg) || net_conn_input_len(s->c) > 0)) {
		s->eof = true;
		pop3s_process(s);
		return;
	}
	s->ops->gone(s->arg);
}

static void
pop3s_drained(struct net_conn *c, void *arg)
{
	struct pop3s *s = arg;

	(void)c;
	if (s->closing) {
		s->ops->gone(s->arg);
		return;
	}
	if (s->ops->drained != NULL && s->ops->drained(s->arg))
		return;
	pop3s_process(s);
}

static void
pop3s_tls_done(struct net_conn *c, void *arg)
{
	struct pop3s *s = arg;

	(void)c;
	s->tls_pending = false;
	/* The limit is the TLS filter's now. */
	net_conn_input_limit(s->c, POP3S_INPUT_MAX);
	if (!s->greeted)
		pop3s_greet(s);
	pop3s_process(s);
}

static const struct net_conn_cbs pop3s_cbs = {
	.readable = pop3s_readable,
	.failed = pop3s_failed,
	.drained = pop3s_drained,
	.tls_done = pop3s_tls_done,
};

struct pop3s *
pop3s_accept(struct event_base *base, int fd, const struct sockaddr *peer,
    socklen_t peerlen, unsigned idle_ms, const struct pop3s_ops *ops,
    void *arg)
{
	struct pop3s *s = xcalloc(1, sizeof(*s));

	s->ops = ops;
	s->arg = arg;
	s->c = net_conn_accept(base, fd, peer, peerlen, &pop3s_cbs, s);
	if (s->c == NULL) {
		free(s);
		return NULL;
	}
	net_conn_read_timeout(s->c, idle_ms);
	net_conn_input_limit(s->c, POP3S_INPUT_MAX);
	return s;
}

void
pop3s_start(struct pop3s *s, SSL_CTX *implicit)
{
	if (implicit == NULL) {
		pop3s_greet(s);
		pop3s_process(s);
		return;
	}
	s->tls_pending = true;
	if (net_conn_accepttls(s->c, implicit) != 0)
		pop3s_close(s);
}

void
pop3s_free(struct pop3s **sp)
{
	struct pop3s *s = *sp;

	if (s == NULL)
		return;
	*sp = NULL;
	net_conn_free(&s->c);
	free(s);
}
