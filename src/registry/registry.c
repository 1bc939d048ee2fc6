/*
 * registry.c - the registry's common part (registry.h): records and their
 * release, sealing and unsealing around the backend's ops
 * (registry_int.h), the administration calls, and logging in from an
 * event loop on worker threads.
 *
 * Workers: registry_login_async() queues a ticket; the first call starts
 * r->nworkers threads, each with its own backend connection.  A worker
 * takes a ticket, looks the user up and checks the credential (the
 * verifier is slow on purpose, hence several workers), puts the ticket on
 * the done list of its event base's channel and writes a byte to the
 * channel's pipe.  The channel's read event, on the loop, runs the
 * callbacks.  A ticket moves QUEUED -> RUNNING -> DONE, never back;
 * cancelling a QUEUED ticket frees it at once, a RUNNING or DONE one is
 * marked and freed, without its callback, by whoever holds it next.
 * Tickets, queues and channels are guarded by the worker's mutex.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "core/mr_buf.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "registry/registry.h"
#include "registry/registry_int.h"
#include "registry/seal.h"

#define REGISTRY_NAME_MAX	255
#define REGISTRY_WORKERS_DEFAULT 2
#define REGISTRY_WORKERS_MAX	16
#define REGISTRY_APOP_HEX	32	/* MD5 in hex */
/* What the dummy verifier and APOP secret hide: nobody's password. */
#define REGISTRY_DUMMY		"mailroom registry: no such user"

enum registry_ticket_state {
	REGISTRY_TICKET_QUEUED,		/* on the worker's queue */
	REGISTRY_TICKET_RUNNING,	/* a worker has it */
	REGISTRY_TICKET_DONE,		/* on its channel's done list */
};

/* A loop's end of the workers: the pipe they wake it through. */
struct registry_channel {
	struct registry_worker	*w;
	struct event_base	*base;		/* borrowed */
	struct event		*ev;		/* read end, persistent */
	int			 fd[2];
	struct reg_ticket	*done;		/* finished, oldest first */
	struct reg_ticket	**done_tail;
	struct registry_channel	*next;
};

struct reg_ticket {
	struct registry_worker	*w;
	struct registry_channel	*ch;
	reg_login_cb		*cb;
	void			*arg;
	int			 state;		/* enum registry_ticket_state */
	bool			 cancelled;
	/* The request, copied and wiped after use. */
	int			 kind;
	char			*name;
	char			*password;
	size_t			 password_len;
	char			*timestamp;
	char			*digest;
	/* The answer. */
	int			 status;
	struct reg_user		 user;
	struct reg_ticket	*next;		/* on the queue or done list */
};

struct registry_worker {
	struct registry		*r;
	pthread_mutex_t		 lock;
	pthread_cond_t		 cond;
	bool			 stop;
	struct reg_ticket	*queue;		/* oldest first */
	struct reg_ticket	**queue_tail;
	struct registry_channel	*channels;
	pthread_t		 threads[REGISTRY_WORKERS_MAX];
	unsigned		 nthreads;
};

static int registry_fail(struct registry *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int registry_code(int rc);
static int registry_worker_start(struct registry *r, struct mr_buf *err);
static void registry_worker_stop(struct registry *r);
static void *registry_worker_main(void *arg);
static void registry_ticket_run(struct registry *r, void *conn,
    struct reg_ticket *t);
static void registry_ticket_free(struct reg_ticket *t);
static struct registry_channel *registry_channel_get(struct registry_worker *w,
    struct event_base *base, struct mr_buf *err);
static void registry_channel_cb(evutil_socket_t fd, short what, void *arg);
static bool registry_apop_check(const char *timestamp, const char *secret,
    const char *digest);

/* Records. */

void
registry_free_str(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

void
reg_account_release(struct reg_account *a)
{
	if (a == NULL)
		return;
	free(a->user);
	free(a->host);
	free(a->login);
	registry_free_str(a->secret);
	memset(a, 0, sizeof(*a));
}

void
reg_user_release(struct reg_user *u)
{
	size_t i;

	if (u == NULL)
		return;
	free(u->name);
	registry_free_str(u->verifier);
	registry_free_str(u->apop_secret);
	for (i = 0; i < u->naccounts; i++)
		reg_account_release(&u->accounts[i]);
	free(u->accounts);
	memset(u, 0, sizeof(*u));
}

static const char *const registry_tls_names[] = {
	[REG_TLS_NONE] = "none",
	[REG_TLS_STLS] = "stls",
	[REG_TLS_POP3S] = "pop3s",
};

#define REGISTRY_NTLS							\
	(sizeof(registry_tls_names) / sizeof(registry_tls_names[0]))

const char *
reg_tls_name(int tls)
{
	if (tls < 0 || (size_t)tls >= REGISTRY_NTLS)
		return "?";
	return registry_tls_names[tls];
}

int
reg_tls_parse(const char *text)
{
	size_t i;

	if (text == NULL)
		return -1;
	for (i = 0; i < REGISTRY_NTLS; i++)
		if (strcmp(text, registry_tls_names[i]) == 0)
			return (int)i;
	return -1;
}

bool
registry_valid_name(const char *name)
{
	size_t i;

	if (name == NULL || *name == '\0')
		return false;
	for (i = 0; name[i] != '\0'; i++)
		if (i >= REGISTRY_NAME_MAX || name[i] <= ' ' || name[i] > '~')
			return false;
	return true;
}

/* Opening and closing. */

static int
registry_fail(struct registry *r, int code, const char *fmt, ...)
{
	va_list ap;

	mr_buf_reset(&r->error);
	va_start(ap, fmt);
	mr_buf_vprintf(&r->error, fmt, ap);
	va_end(ap);
	return code;
}

/* registry_code - a backend's or the store's code as one of registry.h. */
static int
registry_code(int rc)
{
	switch (rc) {
	case 0:
	case -ENOENT:
	case -EEXIST:
	case -EACCES:
	case -EINVAL:
	case -ENOTSUP:
		return rc;
	default:
		return -EIO;
	}
}

struct registry *
registry_new(const struct registry_ops *ops, void *backend,
    const char *key_file, bool create, struct mr_buf *err)
{
	return registry_new_code(ops, backend, key_file, create, err, NULL);
}

struct registry *
registry_new_code(const struct registry_ops *ops, void *backend,
    const char *key_file, bool create, struct mr_buf *err, int *code_r)
{
	struct registry *r;
	int code;

	r = xcalloc(1, sizeof(*r));
	r->ops = ops;
	r->backend = backend;
	r->iter = REG_PBKDF2_ITER;
	r->nworkers = REGISTRY_WORKERS_DEFAULT;
	r->open_code = -EIO;
	mr_buf_reset(err);
	r->conn = ops->conn_open(r, err);
	if (r->conn == NULL) {
		code = r->open_code;
		goto fail;
	}
	r->key = seal_key_load(key_file, create, NULL, err, &code);
	if (r->key == NULL) {
		if (code == -EACCES || code == -EINVAL)
			code = -ENOKEY;
		else if (code != -ENOENT)
			code = -EIO;
		goto fail;
	}
	if (code_r != NULL)
		*code_r = 0;
	return r;
fail:
	if (code_r != NULL)
		*code_r = code;
	registry_close(&r);
	return NULL;
}

void
registry_tune(struct registry *r, unsigned workers, unsigned pbkdf2_iter)
{
	if (workers > REGISTRY_WORKERS_MAX)
		workers = REGISTRY_WORKERS_MAX;
	if (workers > 0 && r->worker == NULL)
		r->nworkers = workers;
	if (pbkdf2_iter > 0)
		r->iter = pbkdf2_iter;
}

void
registry_close(struct registry **rp)
{
	struct registry *r;

	if (rp == NULL || (r = *rp) == NULL)
		return;
	*rp = NULL;
	registry_worker_stop(r);
	if (r->conn != NULL)
		r->ops->conn_close(r, r->conn);
	r->ops->close(r);
	seal_key_free(&r->key);
	registry_free_str(r->dummy);
	mr_buf_release(&r->error);
	free(r);
}

const char *
registry_error(const struct registry *r)
{
	return mr_buf_cstr(&r->error);
}

/* Sealing. */

char *
registry_seal_account(const struct registry *r, int64_t id,
    const char *secret)
{
	char aad[64];

	snprintf(aad, sizeof(aad), "account:%" PRId64, id);
	return seal_seal(r->key, aad, secret, strlen(secret));
}

char *
registry_seal_apop(const struct registry *r, const char *name,
    const char *secret)
{
	struct mr_buf aad = MR_BUF_INIT;
	char *sealed;

	mr_buf_printf(&aad, "apop:%s", name);
	sealed = seal_seal(r->key, mr_buf_cstr(&aad), secret, strlen(secret));
	mr_buf_release(&aad);
	return sealed;
}

int
registry_unseal(const struct registry *r, struct reg_user *u,
    struct mr_buf *err)
{
	struct mr_buf aad = MR_BUF_INIT, why = MR_BUF_INIT;
	char *plain;
	size_t i;
	int rc = 0;

	if (u->apop_secret != NULL) {
		mr_buf_printf(&aad, "apop:%s", u->name);
		rc = seal_open(r->key, mr_buf_cstr(&aad), u->apop_secret,
		    &plain, NULL, &why);
		if (rc != 0) {
			mr_buf_reset(err);
			mr_buf_printf(err, "user %s: APOP secret: %s", u->name,
			    mr_buf_cstr(&why));
			goto out;
		}
		registry_free_str(u->apop_secret);
		u->apop_secret = plain;
	}
	for (i = 0; i < u->naccounts; i++) {
		if (u->accounts[i].secret == NULL)
			continue;
		mr_buf_reset(&aad);
		mr_buf_printf(&aad, "account:%" PRId64, u->accounts[i].id);
		rc = seal_open(r->key, mr_buf_cstr(&aad),
		    u->accounts[i].secret, &plain, NULL, &why);
		if (rc != 0) {
			mr_buf_reset(err);
			mr_buf_printf(err, "user %s: account %" PRId64 ": %s",
			    u->name, u->accounts[i].id, mr_buf_cstr(&why));
			goto out;
		}
		registry_free_str(u->accounts[i].secret);
		u->accounts[i].secret = plain;
	}
out:
	mr_buf_release(&aad);
	mr_buf_release(&why);
	return rc == 0 ? 0 : -EIO;
}

/* Lookups and administration (the opener's thread). */

int
registry_user_get(struct registry *r, const char *name, struct reg_user *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	mr_buf_reset(&r->error);
	if (!registry_valid_name(name))
		return registry_fail(r, -ENOENT, "no user %s", name != NULL ?
		    name : "(none)");
	rc = r->ops->lookup(r, r->conn, name, out, &r->error);
	if (rc == 0)
		rc = registry_unseal(r, out, &r->error);
	if (rc != 0)
		reg_user_release(out);
	return registry_code(rc);
}

int
registry_user_list(struct registry *r, reg_user_cb *cb, void *arg)
{
	mr_buf_reset(&r->error);
	return registry_code(r->ops->list(r, r->conn, cb, arg, &r->error));
}

/* registry_admin - whether the backend can be written to. */
static int
registry_admin(struct registry *r, const void *op)
{
	mr_buf_reset(&r->error);
	if (op == NULL)
		return registry_fail(r, -ENOTSUP, "the %s registry is read "
		    "only: change it where it is kept", r->ops->name);
	return 0;
}

int
registry_user_add(struct registry *r, const char *name, const char *password,
    const char *apop_secret)
{
	char *verifier, *apop = NULL;
	int rc;

	if ((rc = registry_admin(r, (const void *)r->ops->user_add)) != 0)
		return rc;
	if (!registry_valid_name(name))
		return registry_fail(r, -EINVAL, "user name %s: 1 to %d "
		    "printable characters without spaces", name != NULL ?
		    mr_q(name, (size_t)-1) : "(none)", REGISTRY_NAME_MAX);
	if (password == NULL || *password == '\0')
		return registry_fail(r, -EINVAL, "user %s: a password is "
		    "required", name);
	if ((verifier = reg_verifier_make(password, strlen(password),
	    r->iter)) == NULL)
		return registry_fail(r, -EIO, "user %s: cannot make a password "
		    "verifier (no randomness?)", name);
	if (apop_secret != NULL && *apop_secret != '\0' &&
	    (apop = registry_seal_apop(r, name, apop_secret)) == NULL) {
		free(verifier);
		return registry_fail(r, -EINVAL, "user %s: cannot seal the "
		    "APOP secret (too long?)", name);
	}
	rc = r->ops->user_add(r, r->conn, name, verifier, apop, &r->error);
	registry_free_str(verifier);
	registry_free_str(apop);
	return registry_code(rc);
}

int
registry_user_change(struct registry *r, const char *name,
    const char *password, const char *apop_secret)
{
	char *verifier = NULL, *apop = NULL;
	int rc;

	if ((rc = registry_admin(r, (const void *)r->ops->user_change)) != 0)
		return rc;
	if (!registry_valid_name(name))
		return registry_fail(r, -ENOENT, "no user %s", name != NULL ?
		    mr_q(name, (size_t)-1) : "(none)");
	if (password != NULL && *password == '\0')
		return registry_fail(r, -EINVAL, "user %s: the password may "
		    "not be empty", name);
	if (password != NULL && (verifier = reg_verifier_make(password,
	    strlen(password), r->iter)) == NULL)
		return registry_fail(r, -EIO, "user %s: cannot make a password "
		    "verifier (no randomness?)", name);
	if (apop_secret != NULL && *apop_secret == '\0') {
		apop = xstrdup("");
	} else if (apop_secret != NULL &&
	    (apop = registry_seal_apop(r, name, apop_secret)) == NULL) {
		registry_free_str(verifier);
		return registry_fail(r, -EINVAL, "user %s: cannot seal the "
		    "APOP secret (too long?)", name);
	}
	rc = r->ops->user_change(r, r->conn, name, verifier, apop, &r->error);
	registry_free_str(verifier);
	registry_free_str(apop);
	return registry_code(rc);
}

int
registry_user_remove(struct registry *r, const char *name)
{
	int rc;

	if ((rc = registry_admin(r, (const void *)r->ops->user_remove)) != 0)
		return rc;
	if (!registry_valid_name(name))
		return registry_fail(r, -ENOENT, "no user %s", name != NULL ?
		    mr_q(name, (size_t)-1) : "(none)");
	return registry_code(r->ops->user_remove(r, r->conn, name,
	    &r->error));
}

/*
 * registry_check_account - the values of a that are set; for a change
 * (adding false) NULL strings, port 0 and tls -1 are "leave it".
 */
static int
registry_check_account(struct registry *r, const struct reg_account *a,
    bool adding)
{
	if (adding && (a->host == NULL || a->login == NULL ||
	    a->secret == NULL))
		return registry_fail(r, -EINVAL, "an account needs a host, a "
		    "login and a secret");
	if (a->host != NULL && (*a->host == '\0' || strlen(a->host) > 255 ||
	    strpbrk(a->host, " \t\r\n/") != NULL))
		return registry_fail(r, -EINVAL, "host %s: not a host name or "
		    "address", mr_q(a->host, (size_t)-1));
	if ((adding || a->port != 0) && (a->port < 1 || a->port > 65535))
		return registry_fail(r, -EINVAL, "port %u: not 1..65535",
		    a->port);
	if ((adding || a->tls != -1) && (a->tls < REG_TLS_NONE ||
	    a->tls > REG_TLS_POP3S))
		return registry_fail(r, -EINVAL, "TLS mode %d: not none, stls "
		    "or pop3s", a->tls);
	if (a->login != NULL && (*a->login == '\0' ||
	    strpbrk(a->login, "\r\n") != NULL))
		return registry_fail(r, -EINVAL, "login %s: empty, or holds a "
		    "line break", mr_q(a->login, (size_t)-1));
	if (a->secret != NULL && (*a->secret == '\0' ||
	    strpbrk(a->secret, "\r\n") != NULL))
		return registry_fail(r, -EINVAL, "the secret is empty or holds "
		    "a line break");
	return 0;
}

int
registry_account_add(struct registry *r, struct reg_account *a)
{
	int rc;

	if ((rc = registry_admin(r, (const void *)r->ops->account_add)) != 0)
		return rc;
	if (!registry_valid_name(a->user))
		return registry_fail(r, -ENOENT, "no user %s", a->user != NULL ?
		    mr_q(a->user, (size_t)-1) : "(none)");
	if ((rc = registry_check_account(r, a, true)) != 0)
		return rc;
	return registry_code(r->ops->account_add(r, r->conn, a, &r->error));
}

int
registry_account_change(struct registry *r, const struct reg_account *a)
{
	int rc;

	if ((rc = registry_admin(r,
	    (const void *)r->ops->account_change)) != 0)
		return rc;
	if ((rc = registry_check_account(r, a, false)) != 0)
		return rc;
	return registry_code(r->ops->account_change(r, r->conn, a,
	    &r->error));
}

int
registry_account_remove(struct registry *r, int64_t id)
{
	int rc;

	if ((rc = registry_admin(r,
	    (const void *)r->ops->account_remove)) != 0)
		return rc;
	return registry_code(r->ops->account_remove(r, r->conn, id,
	    &r->error));
}

/* Logging in: the workers. */

static void
registry_ticket_free(struct reg_ticket *t)
{
	free(t->name);
	if (t->password != NULL) {
		OPENSSL_cleanse(t->password, t->password_len);
		free(t->password);
	}
	free(t->timestamp);
	registry_free_str(t->digest);
	reg_user_release(&t->user);
	free(t);
}

static int
registry_worker_start(struct registry *r, struct mr_buf *err)
{
	struct registry_worker *w;
	unsigned i;
	int e;

	if (r->dummy == NULL && (r->dummy = reg_verifier_make(REGISTRY_DUMMY,
	    strlen(REGISTRY_DUMMY), r->iter)) == NULL) {
		mr_buf_printf(err, "registry: cannot make the dummy verifier");
		return -EIO;
	}
	w = xcalloc(1, sizeof(*w));
	w->r = r;
	w->queue_tail = &w->queue;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	r->worker = w;
	for (i = 0; i < r->nworkers; i++) {
		e = pthread_create(&w->threads[i], NULL, registry_worker_main,
		    w);
		if (e != 0) {
			registry_worker_stop(r);
			mr_buf_printf(err, "registry: cannot start a worker "
			    "thread: %s", strerror(e));
			return -EIO;
		}
		w->nthreads++;
	}
	return 0;
}

/*
 * registry_worker_stop - end the threads (after the ticket each one runs)
 * and free what is left, calling no callback.
 */
static void
registry_worker_stop(struct registry *r)
{
	struct registry_worker *w = r->worker;
	struct registry_channel *ch;
	struct reg_ticket *t;
	unsigned i;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	for (i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	while ((t = w->queue) != NULL) {
		w->queue = t->next;
		registry_ticket_free(t);
	}
	while ((ch = w->channels) != NULL) {
		w->channels = ch->next;
		while ((t = ch->done) != NULL) {
			ch->done = t->next;
			registry_ticket_free(t);
		}
		event_free(ch->ev);
		close(ch->fd[0]);
		close(ch->fd[1]);
		free(ch);
	}
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
	r->worker = NULL;
}

static void *
registry_worker_main(void *arg)
{
	struct registry_worker *w = arg;
	struct registry *r = w->r;
	struct mr_buf err = MR_BUF_INIT;
	struct reg_ticket *t;
	void *conn;
	char c = 1;

	conn = r->ops->conn_open(r, &err);
	if (conn == NULL)
		mr_log_err("registry", "worker cannot open the %s registry: %s",
		    r->ops->name, mr_q(mr_buf_cstr(&err), (size_t)-1));
	mr_buf_release(&err);
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->stop && w->queue == NULL)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stop)
			break;
		t = w->queue;
		if ((w->queue = t->next) == NULL)
			w->queue_tail = &w->queue;
		t->next = NULL;
		t->state = REGISTRY_TICKET_RUNNING;
		pthread_mutex_unlock(&w->lock);

		if (conn != NULL)
			registry_ticket_run(r, conn, t);
		else
			t->status = -EIO;

		pthread_mutex_lock(&w->lock);
		if (t->cancelled) {
			registry_ticket_free(t);
			continue;
		}
		t->state = REGISTRY_TICKET_DONE;
		*t->ch->done_tail = t;
		t->ch->done_tail = &t->next;
		/* A full pipe already wakes the loop. */
		if (write(t->ch->fd[1], &c, 1) == -1 && errno != EAGAIN)
			mr_log_err("registry", "cannot wake the loop: %s",
			    strerror(errno));
	}
	pthread_mutex_unlock(&w->lock);
	if (conn != NULL)
		r->ops->conn_close(r, conn);
	return NULL;
}

/*
 * registry_apop_check - whether digest is MD5(timestamp secret) in hex
 * (RFC 1939 section 7; upper-case digits accepted), in constant time
 * for a given length of digest.
 */
static bool
registry_apop_check(const char *timestamp, const char *secret,
    const char *digest)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	char want[REGISTRY_APOP_HEX + 1], got[REGISTRY_APOP_HEX];
	struct mr_buf in = MR_BUF_INIT;
	unsigned int mdlen = 0;
	size_t i, dlen;
	bool ok;

	/* One allocation: no copy of the secret is left behind by growth. */
	mr_buf_reserve(&in, strlen(timestamp) + strlen(secret));
	mr_buf_puts(&in, timestamp);
	mr_buf_puts(&in, secret);
	ok = EVP_Digest(in.data, in.len, md, &mdlen, EVP_md5(), NULL) == 1 &&
	    mdlen * 2 == REGISTRY_APOP_HEX;
	OPENSSL_cleanse(in.data, in.len);
	mr_buf_release(&in);
	for (i = 0; i < REGISTRY_APOP_HEX / 2; i++)
		snprintf(want + 2 * i, 3, "%02x", ok ? md[i] : 0);
	dlen = strlen(digest);
	for (i = 0; i < REGISTRY_APOP_HEX; i++)
		got[i] = (char)tolower((unsigned char)(i < dlen ? digest[i] :
		    '\0'));
	ok = CRYPTO_memcmp(want, got, REGISTRY_APOP_HEX) == 0 && ok &&
	    dlen == REGISTRY_APOP_HEX;
	OPENSSL_cleanse(md, sizeof(md));
	OPENSSL_cleanse(want, sizeof(want));
	OPENSSL_cleanse(got, sizeof(got));
	return ok;
}

/*
 * registry_ticket_run - on a worker: look t->name up and check the
 * credential, the same work whether the user exists or not.
 */
static void
registry_ticket_run(struct registry *r, void *conn, struct reg_ticket *t)
{
	struct mr_buf err = MR_BUF_INIT;
	const char *verifier, *secret;
	bool known, ok;
	int rc, prc;

	rc = r->ops->lookup(r, conn, t->name, &t->user, &err);
	known = rc == 0;
	if (rc != 0 && rc != -ENOENT)
		mr_log_warn("registry", "login lookup failed user=%s err=%s",
		    mr_q(t->name, (size_t)-1),
		    mr_q(mr_buf_cstr(&err), (size_t)-1));
	if (known && (rc = registry_unseal(r, &t->user, &err)) != 0)
		mr_log_warn("registry", "login user=%s err=%s",
		    mr_q(t->name, (size_t)-1),
		    mr_q(mr_buf_cstr(&err), (size_t)-1));
	if (t->kind == REG_LOGIN_PASS && known && t->user.verifier == NULL &&
	    r->ops->check_password != NULL) {
		prc = r->ops->check_password(r, conn, t->name, t->password,
		    t->password_len, &err);
		ok = prc == 0;
		if (prc != 0 && prc != -EACCES && rc == 0) {
			rc = -EIO;
			mr_log_warn("registry", "login password check failed "
			    "user=%s err=%s", mr_q(t->name, (size_t)-1),
			    mr_q(mr_buf_cstr(&err), (size_t)-1));
		}
	} else if (t->kind == REG_LOGIN_PASS) {
		verifier = known ? t->user.verifier : r->dummy;
		ok = reg_verifier_check(verifier, t->password,
		    t->password_len);
		if (!known && r->ops->check_password != NULL)
			(void)r->ops->check_password(r, conn, NULL,
			    t->password, t->password_len, &err);
	} else {
		secret = known && t->user.apop_secret != NULL ?
		    t->user.apop_secret : REGISTRY_DUMMY;
		ok = registry_apop_check(t->timestamp, secret, t->digest) &&
		    known && t->user.apop_secret != NULL;
	}
	mr_buf_release(&err);
	if (rc != 0 && rc != -ENOENT)
		t->status = -EIO;
	else
		t->status = known && ok ? 0 : -EACCES;
	if (t->status != 0)
		reg_user_release(&t->user);
	/* The credential is not needed any more. */
	if (t->password != NULL)
		OPENSSL_cleanse(t->password, t->password_len);
	if (t->digest != NULL)
		OPENSSL_cleanse(t->digest, strlen(t->digest));
}

/* Logging in: the loop's side. */

static struct registry_channel *
registry_channel_get(struct registry_worker *w, struct event_base *base,
    struct mr_buf *err)
{
	struct registry_channel *ch;

	for (ch = w->channels; ch != NULL; ch = ch->next)
		if (ch->base == base)
			return ch;
	ch = xcalloc(1, sizeof(*ch));
	ch->w = w;
	ch->base = base;
	ch->done_tail = &ch->done;
	if (pipe2(ch->fd, O_NONBLOCK | O_CLOEXEC) == -1) {
		mr_buf_printf(err, "registry: cannot make a pipe: %s",
		    strerror(errno));
		free(ch);
		return NULL;
	}
	ch->ev = event_new(base, ch->fd[0], EV_READ | EV_PERSIST,
	    registry_channel_cb, ch);
	if (ch->ev == NULL || event_add(ch->ev, NULL) == -1) {
		mr_buf_printf(err, "registry: cannot watch the workers' pipe");
		if (ch->ev != NULL)
			event_free(ch->ev);
		close(ch->fd[0]);
		close(ch->fd[1]);
		free(ch);
		return NULL;
	}
	ch->next = w->channels;
	w->channels = ch;
	return ch;
}

/*
 * registry_channel_cb - the workers finished tickets: run the callbacks
 * of those not cancelled.  A callback may queue or cancel tickets (of
 * this list too), but must not close the registry.
 */
static void
registry_channel_cb(evutil_socket_t fd, short what, void *arg)
{
	struct registry_channel *ch = arg;
	struct registry_worker *w = ch->w;
	struct reg_ticket *t;
	char buf[64];

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	for (;;) {
		pthread_mutex_lock(&w->lock);
		if ((t = ch->done) != NULL) {
			if ((ch->done = t->next) == NULL)
				ch->done_tail = &ch->done;
			t->next = NULL;
		}
		pthread_mutex_unlock(&w->lock);
		if (t == NULL)
			return;
		if (!t->cancelled)
			t->cb(t->arg, t->status, t->status == 0 ? &t->user :
			    NULL);
		registry_ticket_free(t);
	}
}

struct reg_ticket *
registry_login_async(struct registry *r, struct event_base *base,
    const struct reg_login *in, reg_login_cb *cb, void *arg,
    struct mr_buf *err)
{
	struct registry_channel *ch;
	struct reg_ticket *t;

	mr_buf_reset(err);
	if (in->name == NULL || (in->kind == REG_LOGIN_PASS ?
	    in->password == NULL : in->kind != REG_LOGIN_APOP ||
	    in->timestamp == NULL || in->digest == NULL)) {
		mr_buf_printf(err, "registry: an incomplete login request");
		return NULL;
	}
	if (r->worker == NULL && registry_worker_start(r, err) != 0)
		return NULL;
	pthread_mutex_lock(&r->worker->lock);
	ch = registry_channel_get(r->worker, base, err);
	pthread_mutex_unlock(&r->worker->lock);
	if (ch == NULL)
		return NULL;
	t = xcalloc(1, sizeof(*t));
	t->w = r->worker;
	t->ch = ch;
	t->cb = cb;
	t->arg = arg;
	t->kind = in->kind;
	t->name = xstrdup(in->name);
	if (in->kind == REG_LOGIN_PASS) {
		t->password = xmemdup(in->password, in->password_len);
		t->password_len = in->password_len;
	} else {
		t->timestamp = xstrdup(in->timestamp);
		t->digest = xstrdup(in->digest);
	}
	t->state = REGISTRY_TICKET_QUEUED;
	pthread_mutex_lock(&t->w->lock);
	*t->w->queue_tail = t;
	t->w->queue_tail = &t->next;
	pthread_cond_signal(&t->w->cond);
	pthread_mutex_unlock(&t->w->lock);
	return t;
}

void
registry_login_cancel(struct reg_ticket *t)
{
	struct registry_worker *w;
	struct reg_ticket **tp;

	if (t == NULL)
		return;
	w = t->w;
	pthread_mutex_lock(&w->lock);
	if (t->state == REGISTRY_TICKET_QUEUED) {
		for (tp = &w->queue; *tp != t; tp = &(*tp)->next)
			MR_ASSERT(*tp != NULL);
		if ((*tp = t->next) == NULL)
			w->queue_tail = tp;
		pthread_mutex_unlock(&w->lock);
		registry_ticket_free(t);
		return;
	}
	t->cancelled = true;
	pthread_mutex_unlock(&w->lock);
}
