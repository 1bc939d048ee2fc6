/*
 * registry_store.c - the registry kept in the store (registry.h,
 * registry_open_store): the ops of registry_int.h over the store's
 * registry tables (store.h reg_*).  Each thread has its own struct store;
 * a change of several statements is one store transaction.
 *
 * The key file check: the store keeps a value sealed with the key file it
 * was first written with (registry_meta "keycheck"), so that opening it
 * with another key file fails at once, with a sentence saying so, rather
 * than at the first secret that does not open.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/mr_buf.h"
#include "core/xalloc.h"
#include "registry/registry.h"
#include "registry/registry_int.h"
#include "registry/seal.h"
#include "store/store.h"

#define REGISTRY_STORE_BUSY_MS	5000
#define REGISTRY_STORE_KEYCHECK	"keycheck"
#define REGISTRY_STORE_KEYAAD	"registry:keycheck"
#define REGISTRY_STORE_KEYTEXT	"mailroom registry"

struct registry_store {
	char	*path;
	bool	 create;
};

/* Accounts collected by a listing, in the store's order. */
struct registry_store_accts {
	struct reg_account	*v;
	size_t			 n, cap;
	size_t			 next;		/* merging: first unused */
};

struct registry_store_list {
	struct registry_store_accts	 accts;
	reg_user_cb			*cb;
	void				*arg;
};

static const struct registry_ops registry_store_ops;

static int registry_store_code(int code);

/* registry_store_fail - the store's sentence in err, the store's code. */
static int
registry_store_fail(struct store *s, int rc, struct mr_buf *err)
{
	mr_buf_reset(err);
	mr_buf_puts(err, store_error(s));
	return rc;
}

static void *
registry_store_conn_open(struct registry *r, struct mr_buf *err)
{
	struct registry_store *rs = r->backend;
	struct store *s;
	int code;

	s = store_open(rs->path, rs->create ? STORE_CREATE : 0,
	    REGISTRY_STORE_BUSY_MS, err, &code);
	if (s == NULL)
		r->open_code = registry_store_code(code);
	return s;
}

static void
registry_store_conn_close(struct registry *r, void *conn)
{
	struct store *s = conn;

	(void)r;
	store_close(&s);
}

static void
registry_store_close(struct registry *r)
{
	struct registry_store *rs = r->backend;

	if (rs == NULL)
		return;
	free(rs->path);
	free(rs);
	r->backend = NULL;
}

/* registry_store_account - a store account's fields moved into a. */
static void
registry_store_account(struct store_reg_account *sa, struct reg_account *a)
{
	a->id = sa->id;
	a->user = sa->user;
	a->host = sa->host;
	a->port = sa->port;
	a->tls = sa->tls;
	a->login = sa->login;
	a->secret = sa->secret;
	memset(sa, 0, sizeof(*sa));
}

static int
registry_store_acct_row(void *arg, const struct store_reg_account *sa)
{
	struct registry_store_accts *l = arg;
	struct store_reg_account copy = *sa;

	if (l->n == l->cap) {
		l->cap = l->cap == 0 ? 4 : l->cap * 2;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	/* The listing frees its row: keep copies. */
	copy.user = xstrdup(sa->user);
	copy.host = xstrdup(sa->host);
	copy.login = xstrdup(sa->login);
	copy.secret = sa->secret != NULL ? xstrdup(sa->secret) : NULL;
	registry_store_account(&copy, &l->v[l->n++]);
	return 0;
}

static void
registry_store_accts_release(struct registry_store_accts *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		reg_account_release(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int
registry_store_lookup(struct registry *r, void *conn, const char *name,
    struct reg_user *out, struct mr_buf *err)
{
	struct store *s = conn;
	struct store_reg_user su;
	struct registry_store_accts l = { 0 };
	int rc;

	(void)r;
	memset(out, 0, sizeof(*out));
	if ((rc = s->ops->reg_user_get(s, name, &su)) != 0)
		return registry_store_fail(s, rc, err);
	out->name = su.name;
	out->verifier = su.verifier;
	out->apop_secret = su.apop;
	if ((rc = s->ops->reg_account_list(s, name, registry_store_acct_row,
	    &l)) != 0) {
		registry_store_accts_release(&l);
		reg_user_release(out);
		return registry_store_fail(s, rc, err);
	}
	out->accounts = l.v;
	out->naccounts = l.n;
	return 0;
}

/*
 * registry_store_user_row - a user of the listing, with the accounts of
 * the collected list that are its own (both are in name order).
 */
static int
registry_store_user_row(void *arg, const struct store_reg_user *su)
{
	struct registry_store_list *l = arg;
	struct registry_store_accts *a = &l->accts;
	struct reg_user u;
	size_t first;

	while (a->next < a->n && strcmp(a->v[a->next].user, su->name) < 0)
		a->next++;
	first = a->next;
	while (a->next < a->n && strcmp(a->v[a->next].user, su->name) == 0)
		a->next++;
	u.name = su->name;
	u.verifier = su->verifier;
	u.apop_secret = su->apop;
	u.accounts = a->next > first ? &a->v[first] : NULL;
	u.naccounts = a->next - first;
	return l->cb(l->arg, &u);
}

static int
registry_store_list(struct registry *r, void *conn, reg_user_cb *cb,
    void *arg, struct mr_buf *err)
{
	struct store *s = conn;
	struct registry_store_list l = { .cb = cb, .arg = arg };
	int rc;

	(void)r;
	if ((rc = s->ops->begin(s)) != 0)
		return registry_store_fail(s, rc, err);
	rc = s->ops->reg_account_list(s, NULL, registry_store_acct_row,
	    &l.accts);
	if (rc == 0)
		rc = s->ops->reg_user_list(s, registry_store_user_row, &l);
	if (rc < 0 && *store_error(s) != '\0')
		registry_store_fail(s, rc, err);
	s->ops->rollback(s);
	registry_store_accts_release(&l.accts);
	return rc;
}

static int
registry_store_user_add(struct registry *r, void *conn, const char *name,
    const char *verifier, const char *apop_sealed, struct mr_buf *err)
{
	struct store *s = conn;
	struct store_reg_user su;
	int rc;

	(void)r;
	su.name = (char *)name;
	su.verifier = (char *)verifier;
	su.apop = (char *)apop_sealed;
	if ((rc = s->ops->reg_user_add(s, &su)) != 0) {
		registry_store_fail(s, rc, err);
		if (rc == -EEXIST) {
			mr_buf_reset(err);
			mr_buf_printf(err, "user %s exists already", name);
		}
	}
	return rc;
}

/* registry_store_end - commit when rc is 0, else roll back; rc or the
 * commit's error, with the sentence in err. */
static int
registry_store_end(struct store *s, int rc, struct mr_buf *err)
{
	if (rc == 0 && (rc = s->ops->commit(s)) == 0)
		return 0;
	if (*store_error(s) != '\0')
		registry_store_fail(s, rc, err);
	s->ops->rollback(s);
	return rc;
}

static int
registry_store_user_change(struct registry *r, void *conn, const char *name,
    const char *verifier, const char *apop_sealed, struct mr_buf *err)
{
	struct store *s = conn;
	struct store_reg_user su = { 0 };
	char *old_verifier, *old_apop;
	int rc;

	(void)r;
	if ((rc = s->ops->begin(s)) != 0)
		return registry_store_fail(s, rc, err);
	if ((rc = s->ops->reg_user_get(s, name, &su)) == 0) {
		old_verifier = su.verifier;
		old_apop = su.apop;
		if (verifier != NULL)
			su.verifier = (char *)verifier;
		if (apop_sealed != NULL)
			su.apop = *apop_sealed == '\0' ? NULL :
			    (char *)apop_sealed;
		rc = s->ops->reg_user_update(s, &su);
		su.verifier = old_verifier;
		su.apop = old_apop;
	}
	store_reg_user_release(&su);
	return registry_store_end(s, rc, err);
}

static int
registry_store_user_remove(struct registry *r, void *conn, const char *name,
    struct mr_buf *err)
{
	struct store *s = conn;
	int rc;

	(void)r;
	if ((rc = s->ops->reg_user_remove(s, name)) != 0)
		return registry_store_fail(s, rc, err);
	return 0;
}

/*
 * registry_store_account_add - insert without the secret, seal it with
 * the id the row got, then store it: one transaction.
 */
static int
registry_store_account_add(struct registry *r, void *conn,
    struct reg_account *a, struct mr_buf *err)
{
	struct store *s = conn;
	struct store_reg_account sa;
	int rc;

	sa.id = 0;
	sa.user = a->user;
	sa.host = a->host;
	sa.port = a->port;
	sa.tls = a->tls;
	sa.login = a->login;
	sa.secret = NULL;
	if ((rc = s->ops->begin(s)) != 0)
		return registry_store_fail(s, rc, err);
	if ((rc = s->ops->reg_account_add(s, &sa)) == 0) {
		sa.secret = registry_seal_account(r, sa.id, a->secret);
		if (sa.secret == NULL) {
			s->ops->rollback(s);
			mr_buf_reset(err);
			mr_buf_printf(err, "cannot seal the secret (too "
			    "long?)");
			return -EINVAL;
		}
		rc = s->ops->reg_account_update(s, &sa);
		registry_free_str(sa.secret);
	}
	if (rc == -ENOENT && sa.id == 0) {
		s->ops->rollback(s);
		mr_buf_reset(err);
		mr_buf_printf(err, "no user %s", a->user);
		return rc;
	}
	if ((rc = registry_store_end(s, rc, err)) == 0)
		a->id = sa.id;
	return rc;
}

static int
registry_store_account_change(struct registry *r, void *conn,
    const struct reg_account *a, struct mr_buf *err)
{
	struct store *s = conn;
	struct store_reg_account sa;
	char *host, *login, *secret, *sealed = NULL;
	int rc;

	if ((rc = s->ops->begin(s)) != 0)
		return registry_store_fail(s, rc, err);
	if ((rc = s->ops->reg_account_get(s, a->id, &sa)) != 0) {
		registry_store_end(s, rc, err);
		if (rc == -ENOENT) {
			mr_buf_reset(err);
			mr_buf_printf(err, "no account %" PRId64, a->id);
		}
		return rc;
	}
	if (a->secret != NULL &&
	    (sealed = registry_seal_account(r, a->id, a->secret)) == NULL) {
		store_reg_account_release(&sa);
		s->ops->rollback(s);
		mr_buf_reset(err);
		mr_buf_printf(err, "cannot seal the secret (too long?)");
		return -EINVAL;
	}
	host = sa.host;
	login = sa.login;
	secret = sa.secret;
	if (a->host != NULL)
		sa.host = a->host;
	if (a->login != NULL)
		sa.login = a->login;
	if (sealed != NULL)
		sa.secret = sealed;
	if (a->port != 0)
		sa.port = a->port;
	if (a->tls != -1)
		sa.tls = a->tls;
	rc = s->ops->reg_account_update(s, &sa);
	sa.host = host;
	sa.login = login;
	sa.secret = secret;
	store_reg_account_release(&sa);
	registry_free_str(sealed);
	return registry_store_end(s, rc, err);
}

static int
registry_store_account_remove(struct registry *r, void *conn, int64_t id,
    struct mr_buf *err)
{
	struct store *s = conn;
	int rc;

	(void)r;
	if ((rc = s->ops->reg_account_remove(s, id)) != 0) {
		registry_store_fail(s, rc, err);
		if (rc == -ENOENT) {
			mr_buf_reset(err);
			mr_buf_printf(err, "no account %" PRId64, id);
		}
	}
	return rc;
}

/*
 * registry_store_keycheck - whether the store's secrets were sealed with
 * r's key file (-ENOKEY when not); a store without the mark gets it when
 * writing.
 */
static int
registry_store_keycheck(struct registry *r, const char *key_file,
    bool create, struct mr_buf *err)
{
	struct store *s = r->conn;
	struct mr_buf why = MR_BUF_INIT;
	char *value, *plain;
	int rc;

	rc = s->ops->reg_meta_get(s, REGISTRY_STORE_KEYCHECK, &value);
	if (rc == -ENOENT) {
		if (!create)
			return 0;
		value = seal_seal(r->key, REGISTRY_STORE_KEYAAD,
		    REGISTRY_STORE_KEYTEXT, strlen(REGISTRY_STORE_KEYTEXT));
		if (value == NULL) {
			mr_buf_reset(err);
			mr_buf_printf(err, "key file %s: cannot seal (no "
			    "randomness?)", key_file);
			return -EIO;
		}
		rc = s->ops->reg_meta_put(s, REGISTRY_STORE_KEYCHECK, value);
		free(value);
		return rc == 0 ? 0 : registry_store_fail(s, rc, err);
	}
	if (rc != 0)
		return registry_store_fail(s, rc, err);
	rc = seal_open(r->key, REGISTRY_STORE_KEYAAD, value, &plain, NULL,
	    &why);
	if (rc == 0) {
		registry_free_str(plain);
	} else if (rc == -ENOKEY) {
		/* "v1:KEYID:...": name both keys. */
		mr_buf_reset(err);
		mr_buf_printf(err, "key file %s is the wrong key file: the "
		    "registry in %s was sealed with another (key %.8s; this "
		    "file is key %s)", key_file, s->path,
		    strlen(value) > 11 ? value + 3 : "?", seal_key_id(r->key));
	} else {
		mr_buf_reset(err);
		mr_buf_printf(err, "key file %s does not open the registry in "
		    "%s: %s", key_file, s->path, mr_buf_cstr(&why));
	}
	free(value);
	mr_buf_release(&why);
	return rc == 0 ? 0 : -ENOKEY;
}

/* registry_store_code - a store_open() code as registry_open_store's. */
static int
registry_store_code(int code)
{
	switch (code) {
	case -ENOENT:
	case -EBUSY:
		return code;
	case -EACCES:
	case -EROFS:
		return -EACCES;
	default:
		return -EIO;
	}
}

/*
 * registry_store_marked - open the store once to see whether it holds
 * the key file mark: a key file is made only for a registry that has
 * none, never in place of a lost one.
 */
static int
registry_store_marked(const char *path, bool create, bool *marked_r,
    struct mr_buf *err)
{
	struct store *s;
	char *value;
	int code;

	*marked_r = false;
	s = store_open(path, create ? STORE_CREATE : 0,
	    REGISTRY_STORE_BUSY_MS, err, &code);
	if (s == NULL)
		return registry_store_code(code);
	code = s->ops->reg_meta_get(s, REGISTRY_STORE_KEYCHECK, &value);
	if (code == 0)
		*marked_r = true;
	free(value);
	if (code != 0 && code != -ENOENT) {
		registry_store_fail(s, code, err);
		code = registry_store_code(code);
	} else {
		code = 0;
	}
	store_close(&s);
	return code;
}

struct registry *
registry_open_store(const char *path, const char *key_file, bool create,
    struct mr_buf *err, int *code_r)
{
	struct registry_store *rs;
	struct registry *r;
	bool marked;
	int code;

	if ((code = registry_store_marked(path, create, &marked, err)) != 0)
		goto fail;
	rs = xcalloc(1, sizeof(*rs));
	rs->path = xstrdup(path);
	rs->create = create;
	r = registry_new_code(&registry_store_ops, rs, key_file,
	    create && !marked, err, &code);
	if (r == NULL) {
		if (code == -ENOENT && marked) {
			mr_buf_reset(err);
			mr_buf_printf(err, "key file %s does not exist, and "
			    "the registry in %s holds secrets sealed with a "
			    "key file: name that one (a new key cannot open "
			    "them)", key_file, path);
		}
		goto fail;
	}
	if ((code = registry_store_keycheck(r, key_file, create, err)) != 0) {
		if (code != -ENOKEY)
			code = registry_store_code(code);
		registry_close(&r);
		goto fail;
	}
	if (code_r != NULL)
		*code_r = 0;
	return r;
fail:
	if (code_r != NULL)
		*code_r = code;
	return NULL;
}

static const struct registry_ops registry_store_ops = {
	.name = "store",
	.conn_open = registry_store_conn_open,
	.conn_close = registry_store_conn_close,
	.close = registry_store_close,
	.lookup = registry_store_lookup,
	.list = registry_store_list,
	.user_add = registry_store_user_add,
	.user_change = registry_store_user_change,
	.user_remove = registry_store_user_remove,
	.account_add = registry_store_account_add,
	.account_change = registry_store_account_change,
	.account_remove = registry_store_account_remove,
};
