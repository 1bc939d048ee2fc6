/*
 * store.c - store_open() dispatch to a backend, and what every backend
 * shares: the common struct, error sentences, names of stages and states.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/mr_buf.h"
#include "core/xalloc.h"
#include "store/store.h"
#include "store/store_int.h"

#define STORE_PG_PREFIX	"postgres:"

static const char *const store_state_names[] = {
	[STORE_STATE_SCHEDULED] = "scheduled",
	[STORE_STATE_RUNNING] = "running",
	[STORE_STATE_PAUSED] = "paused",
	[STORE_STATE_CANCELLED] = "cancelled",
	[STORE_STATE_DONE] = "done",
};

#define STORE_NSTATES							\
	(sizeof(store_state_names) / sizeof(store_state_names[0]))

struct store *
store_open(const char *path, int flags, int busy_timeout_ms,
    struct mr_buf *err, int *code_r)
{
	if (path == NULL || *path == '\0') {
		store_open_fail(err, code_r, -EINVAL, "no store path given");
		return NULL;
	}
	if (strncmp(path, STORE_PG_PREFIX, strlen(STORE_PG_PREFIX)) == 0) {
		/* The URI may hold a password: never echo it (rule 30). */
		store_open_fail(err, code_r, -EPROTONOSUPPORT,
		    "store " STORE_PG_PREFIX "...: PostgreSQL store not built "
		    "yet");
		return NULL;
	}
	if (busy_timeout_ms < 0)
		busy_timeout_ms = 0;
	return store_sqlite_open(path, flags, busy_timeout_ms, err, code_r);
}

void
store_close(struct store **sp)
{
	struct store *s;

	if (sp == NULL || (s = *sp) == NULL)
		return;
	*sp = NULL;
	s->ops->close(s);
}

const char *
store_error(const struct store *s)
{
	return mr_buf_cstr(&s->error);
}

void
store_base_init(struct store *s, const struct store_ops *ops,
    const char *path)
{
	s->ops = ops;
	memset(&s->error, 0, sizeof(s->error));
	s->path = xstrdup(path);
}

void
store_base_release(struct store *s)
{
	mr_buf_release(&s->error);
	free(s->path);
	s->path = NULL;
}

int
store_fail(struct store *s, int code, const char *fmt, ...)
{
	va_list ap;

	mr_buf_reset(&s->error);
	va_start(ap, fmt);
	mr_buf_vprintf(&s->error, fmt, ap);
	va_end(ap);
	return code;
}

void
store_open_fail(struct mr_buf *err, int *code_r, int code, const char *fmt,
    ...)
{
	va_list ap;

	if (code_r != NULL)
		*code_r = code;
	if (err == NULL)
		return;
	mr_buf_reset(err);
	va_start(ap, fmt);
	mr_buf_vprintf(err, fmt, ap);
	va_end(ap);
}

void
store_campaign_release(struct store_campaign *c)
{
	if (c == NULL)
		return;
	free(c->name);
	free(c->template_path);
	free(c->list_path);
	free(c->account);
	free(c->options);
	free(c->owner);
	free(c->summary);
	memset(c, 0, sizeof(*c));
}

/* store_wipe_free - zero a string's bytes, then free it. */
static void
store_wipe_free(char *str)
{
	if (str == NULL)
		return;
	OPENSSL_cleanse(str, strlen(str));
	free(str);
}

void
store_account_release(struct store_account *a)
{
	if (a == NULL)
		return;
	free(a->name);
	store_wipe_free(a->verifier);
	memset(a, 0, sizeof(*a));
}

void
store_reg_user_release(struct store_reg_user *u)
{
	if (u == NULL)
		return;
	free(u->name);
	store_wipe_free(u->verifier);
	store_wipe_free(u->apop);
	memset(u, 0, sizeof(*u));
}

void
store_reg_account_release(struct store_reg_account *a)
{
	if (a == NULL)
		return;
	free(a->user);
	free(a->host);
	free(a->login);
	store_wipe_free(a->secret);
	memset(a, 0, sizeof(*a));
}

bool
store_all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

const char *
store_stage_name(int stage)
{
	/* One buffer per thread: valid until this thread's next call. */
	static _Thread_local char buf[32];

	switch (stage) {
	case STORE_STAGE_CREATED:
		return "created";
	case STORE_STAGE_PREPARED:
		return "prepared";
	case STORE_STAGE_DELIVERING:
		return "delivering";
	case STORE_STAGE_COMPLETE:
		return "complete";
	}
	snprintf(buf, sizeof(buf), "stage-%d", stage);
	return buf;
}

const char *
store_state_name(int state)
{
	/* One buffer per thread: valid until this thread's next call. */
	static _Thread_local char buf[32];

	if (state >= 0 && (size_t)state < STORE_NSTATES)
		return store_state_names[state];
	snprintf(buf, sizeof(buf), "state-%d", state);
	return buf;
}

int
store_state_parse(const char *name)
{
	size_t i;

	if (name == NULL)
		return -1;
	for (i = 0; i < STORE_NSTATES; i++)
		if (strcmp(name, store_state_names[i]) == 0)
			return (int)i;
	return -1;
}
