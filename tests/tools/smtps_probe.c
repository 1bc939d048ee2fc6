/*
 * smtps_probe.c - a test-only SMTP server over smtps (smtps.h), run by
 * the integration tests (tests/integration/test_smtps_probe.py).  It is
 * built for the tests and never installed.
 *
 * usage: smtps_probe --listen ADDR --out FILE [options]
 *   --tls-cert FILE --tls-key FILE   offer STARTTLS
 *   --auth-plaintext                 offer AUTH without TLS
 *   --untrusted                      the peer is not a trusted network:
 *                                    only authenticated clients relay
 *   --max-size N --max-rcpts N --max-errors N --max-auth-failures N
 *   --idle-ms N --data-ms N --greet-delay-ms N
 *   --auth-delay-ms N                first failure's delay, doubled for
 *                                    each further one from the address
 *   --reply-delay-ms N               answer each message that much later
 *   --refuse CODE                    answer every connection CODE
 *   --hostname NAME
 *
 * Policy: the user "u" with password "p" logs in ("temp" gets a temporary
 * failure); RCPT is accepted from a loopback peer (unless --untrusted) or
 * an authenticated one, else 554 5.7.1 Relay access denied; a sender
 * "busy@..." gets 452 at MAIL and "down@..." 421; a message to a
 * recipient "reject@..." is answered 554 at its dot.  Every accepted
 * message appends one JSON line to FILE: envelope, body length and the
 * body's SHA-256.  The bound address is printed as "listening ADDR".
 * SIGTERM or SIGINT stops it, every session freed (for leak checks).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "core/mr_buf.h"
#include "core/mr_log.h"
#include "core/mr_sockaddr.h"
#include "core/xalloc.h"
#include "net/cidr.h"
#include "net/conn.h"
#include "net/listen.h"
#include "smtps/smtps.h"

/* One session; freed once closed and no answer of ours is pending. */
struct probe_sess {
	struct probe		*probe;
	struct smtps		*s;
	struct event		*answer_ev;	/* a delayed message answer */
	int			 answer_code;
	bool			 closed;
	struct probe_sess	*next, *prev;
};

/* Authentication failures per client address (the port left out). */
struct probe_fail {
	char			 addr[64];
	unsigned		 n;
	struct probe_fail	*next;
};

struct probe {
	struct event_base	*base;
	struct smtps_params	 params;
	FILE			*out;
	bool			 untrusted;
	unsigned		 auth_delay_ms;
	unsigned		 reply_delay_ms;
	int			 refuse;
	unsigned long		 nmsg;
	struct probe_sess	*sessions;
	struct probe_fail	*fails;
};

static void
probe_sess_free(struct probe_sess *ps)
{
	if (ps->prev)
		ps->prev->next = ps->next;
	else
		ps->probe->sessions = ps->next;
	if (ps->next)
		ps->next->prev = ps->prev;
	if (ps->answer_ev)
		event_free(ps->answer_ev);
	smtps_free(&ps->s);
	free(ps);
}

static void
probe_connect(struct smtps *s, void *arg, struct smtps_answer *ans)
{
	struct probe_sess *ps = arg;

	(void)s;
	if (ps->probe->refuse) {
		ans->code = ps->probe->refuse;
		ans->text = "Error: the probe refuses you";
	}
}

static void
probe_mail(struct smtps *s, void *arg, const struct smtps_envelope *env,
    struct smtps_answer *ans)
{
	(void)s;
	(void)arg;
	if (strncasecmp(env->sender, "busy@", 5) == 0) {
		ans->code = 452;
		ans->esc = "4.3.1";
		ans->text = "Insufficient system storage, try later";
	} else if (strncasecmp(env->sender, "down@", 5) == 0) {
		ans->code = 421;
		ans->esc = "4.3.2";
		ans->text = "probe going down";
	}
}

static void
probe_rcpt(struct smtps *s, void *arg, const struct smtps_envelope *env,
    const char *rcpt, struct smtps_answer *ans)
{
	struct probe_sess *ps = arg;

	(void)env;
	(void)rcpt;
	if (smtps_auth_user(s) != NULL)
		return;
	if (!ps->probe->untrusted && net_is_loopback(smtps_peer_addr(s)))
		return;
	ans->code = 554;
	ans->esc = "5.7.1";
	ans->text = "Relay access denied";
}

/* probe_host - "127.0.0.1" of "127.0.0.1:4242", "::1" of "[::1]:25". */
static void
probe_host(const char *peer, char *out, size_t size)
{
	const char *colon = strrchr(peer, ':');
	size_t n = colon ? (size_t)(colon - peer) : strlen(peer);

	if (n >= size)
		n = size - 1;
	memcpy(out, peer, n);
	out[n] = '\0';
}

static void
probe_auth(struct smtps *s, void *arg, const struct smtps_auth_req *req)
{
	struct probe_sess *ps = arg;
	struct probe *pr = ps->probe;
	struct probe_fail *f;
	char host[64];
	unsigned delay;

	if (strcmp(req->user, "temp") == 0) {
		smtps_auth_result(s, SMTPS_AUTH_TEMPFAIL, 0);
		return;
	}
	if (req->authzid[0] == '\0' && strcmp(req->user, "u") == 0 &&
	    req->passl == 1 && req->pass[0] == 'p') {
		smtps_auth_result(s, SMTPS_AUTH_OK, 0);
		return;
	}
	probe_host(smtps_peer(s), host, sizeof(host));
	for (f = pr->fails; f != NULL; f = f->next)
		if (strcmp(f->addr, host) == 0)
			break;
	if (f == NULL) {
		f = xcalloc(1, sizeof(*f));
		snprintf(f->addr, sizeof(f->addr), "%s", host);
		f->next = pr->fails;
		pr->fails = f;
	}
	/* Doubling per failure from the address, at most 64 times. */
	delay = pr->auth_delay_ms << (f->n < 6 ? f->n : 6);
	f->n++;
	smtps_auth_result(s, SMTPS_AUTH_FAIL, delay);
}

static void
probe_json_str(FILE *fp, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', fp);
	for (; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(fp, "\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			fprintf(fp, "\\u%04x", *p);
		else
			fputc(*p, fp);
	}
	fputc('"', fp);
}

static void
probe_sha256(struct evbuffer *body, char hex[65])
{
	unsigned char md[32];
	struct evbuffer_iovec v[16];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	struct evbuffer_ptr at;
	int i, n;

	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	evbuffer_ptr_set(body, &at, 0, EVBUFFER_PTR_SET);
	for (;;) {
		n = evbuffer_peek(body, -1, &at, v, 16);
		if (n <= 0)
			break;
		for (i = 0; i < n && i < 16; i++) {
			EVP_DigestUpdate(ctx, v[i].iov_base, v[i].iov_len);
			evbuffer_ptr_set(body, &at, v[i].iov_len,
			    EVBUFFER_PTR_ADD);
		}
		if (n <= 16)
			break;
	}
	EVP_DigestFinal_ex(ctx, md, NULL);
	EVP_MD_CTX_free(ctx);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void
probe_answer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe_sess *ps = arg;

	(void)fd;
	(void)what;
	smtps_reply_message(ps->s, ps->answer_code, NULL, NULL);
	if (ps->closed)
		probe_sess_free(ps);
}

static void
probe_message(struct smtps *s, void *arg, const struct smtps_envelope *env,
    struct evbuffer *body)
{
	struct probe_sess *ps = arg;
	struct probe *pr = ps->probe;
	struct timeval tv;
	char hex[65];
	size_t i;
	int code = 250;

	for (i = 0; i < env->nrcpts; i++)
		if (strncasecmp(env->rcpts[i], "reject@", 7) == 0)
			code = 554;
	if (code == 250) {
		probe_sha256(body, hex);
		fprintf(pr->out, "{\"n\": %lu, \"session\": ", ++pr->nmsg);
		probe_json_str(pr->out, smtps_id(s));
		fprintf(pr->out, ", \"helo\": ");
		probe_json_str(pr->out, env->helo);
		fprintf(pr->out, ", \"esmtp\": %s, \"from\": ",
		    env->esmtp ? "true" : "false");
		probe_json_str(pr->out, env->sender);
		fprintf(pr->out, ", \"rcpts\": [");
		for (i = 0; i < env->nrcpts; i++) {
			if (i)
				fputs(", ", pr->out);
			probe_json_str(pr->out, env->rcpts[i]);
		}
		fprintf(pr->out, "], \"size\": %zu, \"declared\": %" PRIu64
		    ", \"body\": \"%s\", \"eight_bit\": %s, \"sha256\": "
		    "\"%s\", \"auth\": ", env->body_len, env->size,
		    env->body_type == SMTP_BODY_8BITMIME ? "8BITMIME" :
		    env->body_type == SMTP_BODY_7BIT ? "7BIT" : "",
		    env->eight_bit ? "true" : "false", hex);
		if (env->auth_user)
			probe_json_str(pr->out, env->auth_user);
		else
			fputs("null", pr->out);
		fprintf(pr->out, ", \"tls\": %s}\n", env->tls ? "true" :
		    "false");
		fflush(pr->out);
	}
	evbuffer_free(body);
	if (pr->reply_delay_ms == 0) {
		smtps_reply_message(s, code, NULL, NULL);
		return;
	}
	ps->answer_code = code;
	tv.tv_sec = pr->reply_delay_ms / 1000;
	tv.tv_usec = (pr->reply_delay_ms % 1000) * 1000;
	evtimer_add(ps->answer_ev, &tv);
}

static void
probe_closed(struct smtps *s, void *arg, const char *reason)
{
	struct probe_sess *ps = arg;

	(void)s;
	(void)reason;
	ps->closed = true;
	/* A delayed answer still to come frees it (rule: the owner frees
	 * once its own pending work is done). */
	if (!evtimer_pending(ps->answer_ev, NULL))
		probe_sess_free(ps);
}

static const struct smtps_ops probe_ops = {
	.connect = probe_connect,
	.mail = probe_mail,
	.rcpt = probe_rcpt,
	.auth = probe_auth,
	.message = probe_message,
	.closed = probe_closed,
};

static void
probe_accept(int fd, const struct sockaddr *peer, socklen_t peerlen,
    void *arg)
{
	struct probe *pr = arg;
	struct probe_sess *ps = xcalloc(1, sizeof(*ps));

	ps->probe = pr;
	ps->answer_ev = evtimer_new(pr->base, probe_answer_cb, ps);
	ps->s = smtps_accept(pr->base, fd, peer, peerlen, &pr->params,
	    &probe_ops, ps);
	if (ps->s == NULL) {
		event_free(ps->answer_ev);
		free(ps);
		return;
	}
	ps->next = pr->sessions;
	if (pr->sessions)
		pr->sessions->prev = ps;
	pr->sessions = ps;
}

static void
probe_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopbreak(arg);
}

static void
probe_usage(void)
{
	fprintf(stderr, "usage: smtps_probe --listen ADDR --out FILE "
	    "[options] (see the source)\n");
	exit(2);
}

static unsigned long
probe_num(const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end != '\0' || end == s)
		probe_usage();
	return v;
}

int
main(int argc, char **argv)
{
	struct probe pr;
	struct mr_buf err = MR_BUF_INIT;
	struct net_listener *l;
	struct event *sigterm, *sigint;
	const char *listen = NULL, *out = NULL, *cert = NULL, *key = NULL;
	SSL_CTX *ctx = NULL;
	int i;

	memset(&pr, 0, sizeof(pr));
	smtps_params_default(&pr.params);
	pr.params.hostname = "probe.test";
	pr.auth_delay_ms = 100;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--auth-plaintext") == 0) {
			pr.params.auth_plaintext_ok = true;
			continue;
		}
		if (strcmp(a, "--untrusted") == 0) {
			pr.untrusted = true;
			continue;
		}
		if (v == NULL)
			probe_usage();
		i++;
		if (strcmp(a, "--listen") == 0)
			listen = v;
		else if (strcmp(a, "--out") == 0)
			out = v;
		else if (strcmp(a, "--tls-cert") == 0)
			cert = v;
		else if (strcmp(a, "--tls-key") == 0)
			key = v;
		else if (strcmp(a, "--hostname") == 0)
			pr.params.hostname = v;
		else if (strcmp(a, "--max-size") == 0)
			pr.params.max_message_size = probe_num(v);
		else if (strcmp(a, "--max-rcpts") == 0)
			pr.params.max_rcpts = (unsigned)probe_num(v);
		else if (strcmp(a, "--max-errors") == 0)
			pr.params.max_errors = (unsigned)probe_num(v);
		else if (strcmp(a, "--max-auth-failures") == 0)
			pr.params.max_auth_failures = (unsigned)probe_num(v);
		else if (strcmp(a, "--idle-ms") == 0)
			pr.params.idle_timeout_ms = (unsigned)probe_num(v);
		else if (strcmp(a, "--data-ms") == 0)
			pr.params.data_timeout_ms = (unsigned)probe_num(v);
		else if (strcmp(a, "--greet-delay-ms") == 0)
			pr.params.greet_delay_ms = (unsigned)probe_num(v);
		else if (strcmp(a, "--auth-delay-ms") == 0)
			pr.auth_delay_ms = (unsigned)probe_num(v);
		else if (strcmp(a, "--reply-delay-ms") == 0)
			pr.reply_delay_ms = (unsigned)probe_num(v);
		else if (strcmp(a, "--refuse") == 0)
			pr.refuse = (int)probe_num(v);
		else
			probe_usage();
	}
	if (listen == NULL || out == NULL || (cert == NULL) != (key == NULL))
		probe_usage();
	mr_log_set_level(MR_LOG_INFO);
	if (getenv("SMTPS_PROBE_TRACE") != NULL)
		mr_log_set_trace(MR_TRACE_SMTP | MR_TRACE_TLS);
	if (cert != NULL) {
		ctx = net_tls_server_ctx(cert, key, &err);
		if (ctx == NULL) {
			fprintf(stderr, "smtps_probe: %s\n", mr_buf_cstr(&err));
			return 1;
		}
		pr.params.tls_ctx = ctx;
	}
	pr.out = fopen(out, "a");
	if (pr.out == NULL) {
		fprintf(stderr, "smtps_probe: %s: %s\n", out, strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	pr.base = event_base_new();
	l = net_listen(pr.base, listen, 25, 128, probe_accept, &pr, &err);
	if (l == NULL) {
		fprintf(stderr, "smtps_probe: %s\n", mr_buf_cstr(&err));
		return 1;
	}
	sigterm = evsignal_new(pr.base, SIGTERM, probe_signal, pr.base);
	sigint = evsignal_new(pr.base, SIGINT, probe_signal, pr.base);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	printf("listening %s\n", net_listener_addr(l));
	fflush(stdout);
	event_base_dispatch(pr.base);
	/* A second signal while freeing must not kill the leak check. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	while (pr.sessions != NULL)
		probe_sess_free(pr.sessions);
	while (pr.fails != NULL) {
		struct probe_fail *f = pr.fails;

		pr.fails = f->next;
		free(f);
	}
	net_listener_free(&l);
	event_free(sigterm);
	event_free(sigint);
	event_base_free(pr.base);
	SSL_CTX_free(ctx);
	fclose(pr.out);
	mr_buf_release(&err);
	return 0;
}
