/*
 * registry_ldap.c - the registry read from an LDAP directory (SPEC A1):
 * a read-only backend of registry_int.h.  The schema is
 * docs/ldap/mailroom.ldif and its mapping docs/REGISTRY.md.
 *
 * A user is the one entry under the base DN that matches
 * (&(objectClass=mailroomUser)(uid=NAME)), NAME escaped as RFC 4515
 * says; its backend accounts are the mailroomAccount entries right
 * below it.  Sealed values (mailroomApopSecret, mailroomSecret) are
 * returned as they are; registry.c opens them, with the AADs
 * "apop:<uid>" and "account:<mailroomAccountId>".
 *
 * Passwords: an entry with a mailroomVerifier gives it as the user's
 * verifier; one without leaves the verifier NULL, and the password is
 * checked by a simple bind as the user's DN on a second connection of
 * the same thread (registry_ldap_check_password), that is against
 * userPassword, with whatever scheme and policy the directory applies.
 *
 * Connections: one per thread (conn_open), each made of a search handle,
 * bound as bind_dn at once, and a bind-check handle made when first
 * needed.  A handle that finds the server gone (LDAP_SERVER_DOWN) is
 * made again, once per operation, and one that could not be made is
 * tried again by the next operation.  Opening fails when the opener's
 * first connection does.  Every operation is bounded by the timeout
 * (connect, each request, and the server's own time limit).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <ldap.h>
#include <openssl/crypto.h>

#include "conf/conf.h"
#include "core/mr_buf.h"
#include "core/xalloc.h"
#include "registry/registry.h"
#include "registry/registry_int.h"

#define REGISTRY_LDAP_TIMEOUT_MS	10000
/* Page size of the listing's searches (RFC 2696). */
#define REGISTRY_LDAP_PAGE		500
/* A user's DN that no directory holds, for the bind check of nobody. */
#define REGISTRY_LDAP_NOBODY		"cn=mailroom-no-such-user"

struct registry_ldap {
	char		*uri;
	char		*base_dn;
	char		*bind_dn;	/* NULL: anonymous */
	char		*bind_pw;	/* wiped by close */
	unsigned	 timeout_ms;
};

struct registry_ldap_conn {
	LDAP		*ld;		/* searches; NULL: make it again */
	LDAP		*check_ld;	/* bind checks; NULL until needed */
	char		*last_name;	/* the last user looked up ... */
	char		*last_dn;	/* ... and its DN */
	char		*why;		/* why the first connect failed */
};

/* What one listing collects, then sorts by name and calls back with. */
struct registry_ldap_entry {
	struct reg_user	 user;
	char		*dn;
};
struct registry_ldap_list {
	struct registry_ldap_entry	*v;
	size_t				 n, cap;
};

static void registry_ldap_fail(const struct registry_ldap *be,
    struct mr_buf *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void registry_ldap_ld_error(LDAP *ld, int rc, struct mr_buf *b);
static LDAP *registry_ldap_handle(const struct registry_ldap *be,
    struct mr_buf *err);
static int registry_ldap_bind(const struct registry_ldap *be, LDAP *ld,
    const char *dn, const char *pw, size_t len, struct mr_buf *err);
static int registry_ldap_connect(const struct registry_ldap *be,
    struct registry_ldap_conn *c, struct mr_buf *err);
static void registry_ldap_drop(LDAP **ldp);
static void registry_ldap_escape(struct mr_buf *b, const char *value);
static int registry_ldap_search(const struct registry_ldap *be,
    struct registry_ldap_conn *c, const char *base, int scope,
    const char *filter, char **attrs, int sizelimit, LDAPControl **ctrls,
    LDAPMessage **res_r, struct mr_buf *err);
static int registry_ldap_value(const struct registry_ldap *be, LDAP *ld,
    LDAPMessage *e, const char *dn, const char *attr, char **value_r,
    struct mr_buf *err);
static int registry_ldap_number(const struct registry_ldap *be,
    const char *dn, const char *attr, const char *text, long long min,
    long long max, long long *n_r, struct mr_buf *err);
static char *registry_ldap_dn(LDAP *ld, LDAPMessage *e);
static int registry_ldap_user(const struct registry_ldap *be, LDAP *ld,
    LDAPMessage *e, const char *dn, const char *name, struct reg_user *out,
    struct mr_buf *err);
static int registry_ldap_account(const struct registry_ldap *be, LDAP *ld,
    LDAPMessage *e, const char *user, struct reg_account *a,
    struct mr_buf *err);
static int registry_ldap_accounts(const struct registry_ldap *be,
    struct registry_ldap_conn *c, const char *dn, struct reg_user *u,
    struct mr_buf *err);
static int registry_ldap_account_cmp(const void *a, const void *b);
static int registry_ldap_find(const struct registry_ldap *be,
    struct registry_ldap_conn *c, const char *name, struct reg_user *out,
    char **dn_r, struct mr_buf *err);
static int registry_ldap_page(const struct registry_ldap *be,
    struct registry_ldap_conn *c, LDAPMessage *res,
    struct registry_ldap_list *l, struct berval *cookie, struct mr_buf *err);
static int registry_ldap_collect(const struct registry_ldap *be,
    struct registry_ldap_conn *c, struct registry_ldap_list *l,
    struct mr_buf *err);
static int registry_ldap_entry_cmp(const void *a, const void *b);
static void registry_ldap_list_release(struct registry_ldap_list *l);

static void *registry_ldap_conn_open(struct registry *r, struct mr_buf *err);
static void registry_ldap_conn_close(struct registry *r, void *conn);
static void registry_ldap_close(struct registry *r);
static int registry_ldap_lookup(struct registry *r, void *conn,
    const char *name, struct reg_user *out, struct mr_buf *err);
static int registry_ldap_list(struct registry *r, void *conn,
    reg_user_cb *cb, void *arg, struct mr_buf *err);
static int registry_ldap_check_password(struct registry *r, void *conn,
    const char *name, const char *password, size_t len, struct mr_buf *err);
static struct registry *registry_ldap_open(const char *uri,
    const char *base_dn, const char *bind_dn, const char *bind_pw,
    unsigned timeout_ms, const char *key_file, struct mr_buf *err);
static char *registry_ldap_password(const char *path, struct mr_buf *err);

static const struct registry_ops registry_ldap_ops = {
	.name = "ldap",
	.conn_open = registry_ldap_conn_open,
	.conn_close = registry_ldap_conn_close,
	.close = registry_ldap_close,
	.lookup = registry_ldap_lookup,
	.list = registry_ldap_list,
	.check_password = registry_ldap_check_password,
	/* The administration ops stay NULL: -ENOTSUP. */
};

static char *registry_ldap_user_attrs[] = {
	"uid", "mailroomVerifier", "mailroomApopSecret", NULL,
};
static char *registry_ldap_account_attrs[] = {
	"mailroomAccountId", "mailroomHost", "mailroomPort", "mailroomTls",
	"mailroomLogin", "mailroomSecret", NULL,
};

static void
registry_ldap_fail(const struct registry_ldap *be, struct mr_buf *err,
    const char *fmt, ...)
{
	va_list ap;

	mr_buf_reset(err);
	mr_buf_printf(err, "LDAP directory %s: ", be->uri);
	va_start(ap, fmt);
	mr_buf_vprintf(err, fmt, ap);
	va_end(ap);
}

/* registry_ldap_ld_error - rc in words, plus the server's own message. */
static void
registry_ldap_ld_error(LDAP *ld, int rc, struct mr_buf *b)
{
	char *diag = NULL;

	mr_buf_puts(b, ldap_err2string(rc));
	if (ld != NULL && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE,
	    &diag) == LDAP_OPT_SUCCESS && diag != NULL) {
		if (diag[0] != '\0')
			mr_buf_printf(b, " (%s)", diag);
		ldap_memfree(diag);
	}
}

/* registry_ldap_handle - a handle on be->uri with our options, unbound. */
static LDAP *
registry_ldap_handle(const struct registry_ldap *be, struct mr_buf *err)
{
	LDAP *ld = NULL;
	struct timeval tv;
	int rc, version = LDAP_VERSION3;

	rc = ldap_initialize(&ld, be->uri);
	if (rc != LDAP_SUCCESS) {
		registry_ldap_fail(be, err, "%s", ldap_err2string(rc));
		return NULL;
	}
	tv.tv_sec = be->timeout_ms / 1000;
	tv.tv_usec = (be->timeout_ms % 1000) * 1000;
	if (ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version) !=
	    LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv) !=
	    LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) !=
	    LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_RESTART, LDAP_OPT_ON) !=
	    LDAP_OPT_SUCCESS) {
		registry_ldap_fail(be, err, "cannot set the client options");
		ldap_unbind_ext(ld, NULL, NULL);
		return NULL;
	}
	return ld;
}

/*
 * registry_ldap_bind - a simple bind on ld as dn with len bytes of pw
 * (dn NULL: anonymous).  0; -EACCES when the directory refused the
 * credentials; -EIO otherwise (err says why; it never holds pw).
 */
static int
registry_ldap_bind(const struct registry_ldap *be, LDAP *ld, const char *dn,
    const char *pw, size_t len, struct mr_buf *err)
{
	struct berval cred;
	int rc;

	cred.bv_val = (char *)(pw != NULL ? pw : "");
	cred.bv_len = pw != NULL ? len : 0;
	rc = ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL,
	    NULL);
	if (rc == LDAP_SUCCESS)
		return 0;
	registry_ldap_fail(be, err, "bind as %s failed: ",
	    dn != NULL ? dn : "anonymous");
	registry_ldap_ld_error(ld, rc, err);
	if (rc == LDAP_INVALID_CREDENTIALS || rc == LDAP_INAPPROPRIATE_AUTH ||
	    rc == LDAP_UNWILLING_TO_PERFORM)
		return -EACCES;
	return -EIO;
}

/* registry_ldap_connect - c->ld made and bound as be->bind_dn. */
static int
registry_ldap_connect(const struct registry_ldap *be,
    struct registry_ldap_conn *c, struct mr_buf *err)
{
	int rc;

	registry_ldap_drop(&c->ld);
	c->ld = registry_ldap_handle(be, err);
	if (c->ld == NULL)
		return -EIO;
	rc = registry_ldap_bind(be, c->ld, be->bind_dn, be->bind_pw,
	    be->bind_pw != NULL ? strlen(be->bind_pw) : 0, err);
	if (rc < 0) {
		registry_ldap_drop(&c->ld);
		/* Our own credentials refused: the directory's fault or the
		 * configuration's, not a login's. */
		return -EIO;
	}
	return 0;
}

static void
registry_ldap_drop(LDAP **ldp)
{
	if (*ldp != NULL) {
		ldap_unbind_ext(*ldp, NULL, NULL);
		*ldp = NULL;
	}
}

/*
 * registry_ldap_escape - value as an RFC 4515 assertion value: '*', '(',
 * ')', '\' and NUL must be written \XX; we also write so every byte that
 * is not printable ASCII, so that no value can end the filter early or
 * add a wildcard.
 */
static void
registry_ldap_escape(struct mr_buf *b, const char *value)
{
	const unsigned char *p;

	for (p = (const unsigned char *)value; *p != '\0'; p++) {
		if (*p == '*' || *p == '(' || *p == ')' || *p == '\\' ||
		    *p < 0x20 || *p > 0x7e)
			mr_buf_printf(b, "\\%02x", *p);
		else
			mr_buf_putc(b, (char)*p);
	}
}

/*
 * registry_ldap_search - a search on c, bounded by the timeout, made
 * again once on a new connection when the server went away.  *res_r is
 * the caller's (ldap_msgfree) on success (LDAP_SUCCESS, or
 * LDAP_SIZELIMIT_EXCEEDED when sizelimit cut it: the return is then 1).
 */
static int
registry_ldap_search(const struct registry_ldap *be,
    struct registry_ldap_conn *c, const char *base, int scope,
    const char *filter, char **attrs, int sizelimit, LDAPControl **ctrls,
    LDAPMessage **res_r, struct mr_buf *err)
{
	LDAPMessage *res;
	struct timeval tv;
	int attempt, rc;

	*res_r = NULL;
	for (attempt = 0; ; attempt++) {
		if (c->ld == NULL && registry_ldap_connect(be, c, err) < 0)
			return -EIO;
		tv.tv_sec = be->timeout_ms / 1000;
		tv.tv_usec = (be->timeout_ms % 1000) * 1000;
		res = NULL;
		rc = ldap_search_ext_s(c->ld, base, scope, filter, attrs, 0,
		    ctrls, NULL, &tv, sizelimit, &res);
		if (rc == LDAP_SUCCESS || rc == LDAP_SIZELIMIT_EXCEEDED) {
			*res_r = res;
			return rc == LDAP_SUCCESS ? 0 : 1;
		}
		ldap_msgfree(res);
		if (rc == LDAP_SERVER_DOWN && attempt == 0) {
			registry_ldap_drop(&c->ld);
			continue;
		}
		break;
	}
	if (rc == LDAP_NO_SUCH_OBJECT) {
		registry_ldap_fail(be, err, "search under %s: the entry does "
		    "not exist", base);
	} else if (rc == LDAP_TIMEOUT || rc == LDAP_TIMELIMIT_EXCEEDED) {
		registry_ldap_fail(be, err, "search under %s: no answer "
		    "within %u ms", base, be->timeout_ms);
	} else {
		registry_ldap_fail(be, err, "search under %s failed: ", base);
		registry_ldap_ld_error(c->ld, rc, err);
	}
	if (rc == LDAP_SERVER_DOWN || rc == LDAP_TIMEOUT)
		registry_ldap_drop(&c->ld);
	return -EIO;
}

/*
 * registry_ldap_value - e's first value of attr as a C string the caller
 * frees, or NULL (0) when e has none; -EIO when it holds a NUL byte.
 */
static int
registry_ldap_value(const struct registry_ldap *be, LDAP *ld, LDAPMessage *e,
    const char *dn, const char *attr, char **value_r, struct mr_buf *err)
{
	struct berval **v;

	*value_r = NULL;
	v = ldap_get_values_len(ld, e, attr);
	if (v == NULL)
		return 0;
	if (v[0] == NULL) {
		ldap_value_free_len(v);
		return 0;
	}
	if (memchr(v[0]->bv_val, '\0', v[0]->bv_len) != NULL) {
		ldap_value_free_len(v);
		registry_ldap_fail(be, err, "entry %s: %s holds a NUL byte",
		    dn, attr);
		return -EIO;
	}
	*value_r = xmemdup(v[0]->bv_val, v[0]->bv_len);
	ldap_value_free_len(v);
	return 0;
}

static int
registry_ldap_number(const struct registry_ldap *be, const char *dn,
    const char *attr, const char *text, long long min, long long max,
    long long *n_r, struct mr_buf *err)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || n < min || n > max) {
		registry_ldap_fail(be, err, "entry %s: %s \"%s\" is not a "
		    "number from %lld to %lld", dn, attr, text, min, max);
		return -EIO;
	}
	*n_r = n;
	return 0;
}

/* registry_ldap_dn - e's DN as a string the caller frees. */
static char *
registry_ldap_dn(LDAP *ld, LDAPMessage *e)
{
	char *dn, *copy;

	dn = ldap_get_dn(ld, e);
	if (dn == NULL)
		return NULL;
	copy = xstrdup(dn);
	ldap_memfree(dn);
	return copy;
}

/*
 * registry_ldap_user - out (zeroed by the caller) from a mailroomUser
 * entry, without accounts.  name: the name looked up, to pick the uid
 * value it matched (an entry may have several); NULL takes the first.
 * The name returned is the directory's spelling of it.
 */
static int
registry_ldap_user(const struct registry_ldap *be, LDAP *ld, LDAPMessage *e,
    const char *dn, const char *name, struct reg_user *out,
    struct mr_buf *err)
{
	struct berval **v;
	size_t i;
	int rc;

	v = ldap_get_values_len(ld, e, "uid");
	if (v == NULL || v[0] == NULL) {
		ldap_value_free_len(v);
		registry_ldap_fail(be, err, "entry %s: no uid", dn);
		return -EIO;
	}
	for (i = 0; name != NULL && v[i] != NULL; i++) {
		if (strlen(name) == v[i]->bv_len &&
		    strncasecmp(name, v[i]->bv_val, v[i]->bv_len) == 0)
			break;
	}
	if (name == NULL || v[i] == NULL)
		i = 0;
	out->name = xmemdup(v[i]->bv_val, v[i]->bv_len);
	ldap_value_free_len(v);
	if (!registry_valid_name(out->name)) {
		registry_ldap_fail(be, err, "entry %s: its uid is not a "
		    "valid user name", dn);
		return -EIO;
	}
	rc = registry_ldap_value(be, ld, e, dn, "mailroomVerifier",
	    &out->verifier, err);
	if (rc == 0)
		rc = registry_ldap_value(be, ld, e, dn, "mailroomApopSecret",
		    &out->apop_secret, err);
	return rc;
}

/* registry_ldap_account - *a (zeroed by the caller) from an entry. */
static int
registry_ldap_account(const struct registry_ldap *be, LDAP *ld,
    LDAPMessage *e, const char *user, struct reg_account *a,
    struct mr_buf *err)
{
	char *dn, *id = NULL, *port = NULL, *tls = NULL;
	long long n;
	int rc;

	dn = registry_ldap_dn(ld, e);
	if (dn == NULL) {
		registry_ldap_fail(be, err, "an account entry without a DN");
		return -EIO;
	}
	a->user = xstrdup(user);
	if ((rc = registry_ldap_value(be, ld, e, dn, "mailroomAccountId", &id,
	    err)) < 0 ||
	    (rc = registry_ldap_value(be, ld, e, dn, "mailroomHost", &a->host,
	    err)) < 0 ||
	    (rc = registry_ldap_value(be, ld, e, dn, "mailroomPort", &port,
	    err)) < 0 ||
	    (rc = registry_ldap_value(be, ld, e, dn, "mailroomTls", &tls,
	    err)) < 0 ||
	    (rc = registry_ldap_value(be, ld, e, dn, "mailroomLogin",
	    &a->login, err)) < 0 ||
	    (rc = registry_ldap_value(be, ld, e, dn, "mailroomSecret",
	    &a->secret, err)) < 0)
		goto out;
	rc = -EIO;
	if (id == NULL || a->host == NULL || a->login == NULL ||
	    a->secret == NULL) {
		registry_ldap_fail(be, err, "entry %s lacks %s (or the bind "
		    "DN may not read it)", dn, id == NULL ?
		    "mailroomAccountId" : a->host == NULL ? "mailroomHost" :
		    a->login == NULL ? "mailroomLogin" : "mailroomSecret");
		goto out;
	}
	if (a->host[0] == '\0' || a->login[0] == '\0') {
		registry_ldap_fail(be, err, "entry %s: an empty %s", dn,
		    a->host[0] == '\0' ? "mailroomHost" : "mailroomLogin");
		goto out;
	}
	if (registry_ldap_number(be, dn, "mailroomAccountId", id, 1,
	    INT64_MAX, &n, err) < 0)
		goto out;
	a->id = n;
	/* No mailroomTls: TLS from the first byte, never plain text. */
	a->tls = REG_TLS_POP3S;
	if (tls != NULL) {
		for (n = 0; tls[n] != '\0'; n++) {
			if (tls[n] >= 'A' && tls[n] <= 'Z')
				tls[n] = (char)(tls[n] - 'A' + 'a');
		}
		a->tls = reg_tls_parse(tls);
		if (a->tls < 0) {
			registry_ldap_fail(be, err, "entry %s: mailroomTls "
			    "\"%s\" is not none, stls or pop3s", dn, tls);
			goto out;
		}
	}
	a->port = a->tls == REG_TLS_POP3S ? 995 : 110;
	if (port != NULL) {
		if (registry_ldap_number(be, dn, "mailroomPort", port, 1,
		    65535, &n, err) < 0)
			goto out;
		a->port = (unsigned)n;
	}
	rc = 0;
out:
	free(id);
	free(port);
	free(tls);
	free(dn);
	return rc;
}

static int
registry_ldap_account_cmp(const void *a, const void *b)
{
	const struct reg_account *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* registry_ldap_accounts - u's accounts: the entries right below dn. */
static int
registry_ldap_accounts(const struct registry_ldap *be,
    struct registry_ldap_conn *c, const char *dn, struct reg_user *u,
    struct mr_buf *err)
{
	LDAPMessage *res, *e;
	size_t i, n;
	int rc;

	rc = registry_ldap_search(be, c, dn, LDAP_SCOPE_ONELEVEL,
	    "(objectClass=mailroomAccount)", registry_ldap_account_attrs, 0,
	    NULL, &res, err);
	if (rc < 0)
		return rc;
	n = (size_t)ldap_count_entries(c->ld, res);
	u->accounts = n > 0 ? xcalloc(n, sizeof(*u->accounts)) : NULL;
	rc = 0;
	for (e = ldap_first_entry(c->ld, res), i = 0; e != NULL && i < n;
	    e = ldap_next_entry(c->ld, e), i++) {
		u->naccounts = i + 1;
		rc = registry_ldap_account(be, c->ld, e, u->name,
		    &u->accounts[i], err);
		if (rc < 0)
			break;
	}
	ldap_msgfree(res);
	if (rc < 0)
		return rc;
	if (u->naccounts > 1)
		qsort(u->accounts, u->naccounts, sizeof(*u->accounts),
		    registry_ldap_account_cmp);
	for (i = 1; i < u->naccounts; i++) {
		if (u->accounts[i].id == u->accounts[i - 1].id) {
			registry_ldap_fail(be, err, "user %s has two accounts "
			    "with mailroomAccountId %" PRId64, u->name,
			    u->accounts[i].id);
			return -EIO;
		}
	}
	return 0;
}

/*
 * registry_ldap_find - the entry of user name: *out (accounts not filled
 * in) and, when dn_r is not NULL, its DN (the caller's).  -ENOENT when
 * no entry matches, -EIO when more than one does.
 */
static int
registry_ldap_find(const struct registry_ldap *be,
    struct registry_ldap_conn *c, const char *name, struct reg_user *out,
    char **dn_r, struct mr_buf *err)
{
	struct mr_buf filter = MR_BUF_INIT;
	LDAPMessage *res, *e;
	char *dn = NULL;
	int n, rc;

	memset(out, 0, sizeof(*out));
	if (dn_r != NULL)
		*dn_r = NULL;
	/* A name no registry may hold is nobody's; never sent. */
	if (!registry_valid_name(name)) {
		registry_ldap_fail(be, err, "no such user");
		return -ENOENT;
	}
	mr_buf_puts(&filter, "(&(objectClass=mailroomUser)(uid=");
	registry_ldap_escape(&filter, name);
	mr_buf_puts(&filter, "))");
	rc = registry_ldap_search(be, c, be->base_dn, LDAP_SCOPE_SUBTREE,
	    mr_buf_cstr(&filter), registry_ldap_user_attrs, 2, NULL, &res,
	    err);
	mr_buf_release(&filter);
	if (rc < 0)
		return rc;
	n = ldap_count_entries(c->ld, res);
	if (n == 0) {
		ldap_msgfree(res);
		registry_ldap_fail(be, err, "no user %s under %s", name,
		    be->base_dn);
		return -ENOENT;
	}
	if (n > 1 || rc == 1) {
		ldap_msgfree(res);
		registry_ldap_fail(be, err, "more than one entry under %s has "
		    "uid %s: refused", be->base_dn, name);
		return -EIO;
	}
	e = ldap_first_entry(c->ld, res);
	dn = registry_ldap_dn(c->ld, e);
	rc = dn == NULL ? -EIO : registry_ldap_user(be, c->ld, e, dn, name,
	    out, err);
	if (dn == NULL)
		registry_ldap_fail(be, err, "user %s: no DN", name);
	ldap_msgfree(res);
	if (rc < 0) {
		free(dn);
		reg_user_release(out);
		memset(out, 0, sizeof(*out));
		return rc;
	}
	if (dn_r != NULL)
		*dn_r = dn;
	else
		free(dn);
	return 0;
}

/* ------------------------------------------------------------ the ops */

static void *
registry_ldap_conn_open(struct registry *r, struct mr_buf *err)
{
	struct registry_ldap *be = r->backend;
	struct registry_ldap_conn *c;

	/*
	 * A directory that cannot be reached now is tried again by each
	 * operation, so that a worker started while it was down does not
	 * stay without it; registry_ldap_open() alone refuses a first
	 * connection that failed.
	 */
	c = xcalloc(1, sizeof(*c));
	if (registry_ldap_connect(be, c, err) < 0)
		c->why = xstrdup(mr_buf_cstr(err));
	return c;
}

static void
registry_ldap_conn_close(struct registry *r, void *conn)
{
	struct registry_ldap_conn *c = conn;

	(void)r;
	if (c == NULL)
		return;
	registry_ldap_drop(&c->ld);
	registry_ldap_drop(&c->check_ld);
	free(c->last_name);
	free(c->last_dn);
	free(c->why);
	free(c);
}

static void
registry_ldap_close(struct registry *r)
{
	struct registry_ldap *be = r->backend;

	if (be == NULL)
		return;
	free(be->uri);
	free(be->base_dn);
	free(be->bind_dn);
	registry_free_str(be->bind_pw);
	free(be);
	r->backend = NULL;
}

static int
registry_ldap_lookup(struct registry *r, void *conn, const char *name,
    struct reg_user *out, struct mr_buf *err)
{
	struct registry_ldap *be = r->backend;
	struct registry_ldap_conn *c = conn;
	char *dn;
	int rc;

	rc = registry_ldap_find(be, c, name, out, &dn, err);
	if (rc < 0)
		return rc;
	rc = registry_ldap_accounts(be, c, dn, out, err);
	if (rc < 0) {
		free(dn);
		reg_user_release(out);
		memset(out, 0, sizeof(*out));
		return rc;
	}
	/* Kept for the bind check that usually follows on this thread. */
	free(c->last_name);
	free(c->last_dn);
	c->last_name = xstrdup(out->name);
	c->last_dn = dn;
	return 0;
}

/*
 * registry_ldap_page - the users of one page of the listing into l, and
 * in *cookie (the caller's, ber_memfree) where the next page starts
 * (empty: this was the last).  Frees res.
 */
static int
registry_ldap_page(const struct registry_ldap *be,
    struct registry_ldap_conn *c, LDAPMessage *res,
    struct registry_ldap_list *l, struct berval *cookie, struct mr_buf *err)
{
	LDAPControl **rctrls = NULL, *resp;
	LDAPMessage *e;
	ber_int_t count;
	char *dn;
	int rc, lrc = LDAP_SUCCESS;

	for (e = ldap_first_entry(c->ld, res); e != NULL;
	    e = ldap_next_entry(c->ld, e)) {
		if ((dn = registry_ldap_dn(c->ld, e)) == NULL)
			continue;
		if (l->n == l->cap) {
			l->cap = l->cap == 0 ? 16 : l->cap * 2;
			l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
		}
		memset(&l->v[l->n], 0, sizeof(l->v[l->n]));
		l->v[l->n].dn = dn;
		l->n++;
		rc = registry_ldap_user(be, c->ld, e, dn, NULL,
		    &l->v[l->n - 1].user, err);
		if (rc < 0) {
			ldap_msgfree(res);
			return rc;
		}
	}
	rc = ldap_parse_result(c->ld, res, &lrc, NULL, NULL, NULL, &rctrls,
	    1);
	if (rc != LDAP_SUCCESS || lrc != LDAP_SUCCESS) {
		registry_ldap_fail(be, err, "listing users failed: ");
		registry_ldap_ld_error(c->ld, rc != LDAP_SUCCESS ? rc : lrc,
		    err);
		if (lrc == LDAP_SIZELIMIT_EXCEEDED)
			mr_buf_puts(err, "; the bind DN needs the limit "
			    "size.prtotal=unlimited (docs/REGISTRY.md)");
		ldap_controls_free(rctrls);
		return -EIO;
	}
	resp = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, rctrls, NULL);
	if (resp != NULL && ldap_parse_pageresponse_control(c->ld, resp,
	    &count, cookie) != LDAP_SUCCESS) {
		cookie->bv_val = NULL;
		cookie->bv_len = 0;
	}
	ldap_controls_free(rctrls);
	return 0;
}

/*
 * registry_ldap_collect - every mailroomUser entry under the base DN,
 * page by page (RFC 2696), so that the server's size limit does not cut
 * the list (given a limit on pages that allows it: docs/REGISTRY.md).
 */
static int
registry_ldap_collect(const struct registry_ldap *be,
    struct registry_ldap_conn *c, struct registry_ldap_list *l,
    struct mr_buf *err)
{
	struct berval cookie = { 0, NULL };
	LDAPControl *page, *ctrls[2];
	LDAPMessage *res;
	int rc;

	do {
		if (c->ld == NULL && registry_ldap_connect(be, c, err) < 0) {
			rc = -EIO;
			break;
		}
		page = NULL;
		if (ldap_create_page_control(c->ld, REGISTRY_LDAP_PAGE,
		    cookie.bv_len > 0 ? &cookie : NULL, 1, &page) !=
		    LDAP_SUCCESS) {
			registry_ldap_fail(be, err, "cannot page the list");
			rc = -EIO;
			break;
		}
		ctrls[0] = page;
		ctrls[1] = NULL;
		rc = registry_ldap_search(be, c, be->base_dn,
		    LDAP_SCOPE_SUBTREE, "(objectClass=mailroomUser)",
		    registry_ldap_user_attrs, 0, ctrls, &res, err);
		ldap_control_free(page);
		ber_memfree(cookie.bv_val);
		cookie.bv_val = NULL;
		cookie.bv_len = 0;
		if (rc < 0)
			break;
		rc = registry_ldap_page(be, c, res, l, &cookie, err);
	} while (rc == 0 && cookie.bv_len > 0);
	ber_memfree(cookie.bv_val);
	return rc < 0 ? rc : 0;
}

static int
registry_ldap_entry_cmp(const void *a, const void *b)
{
	const struct registry_ldap_entry *x = a, *y = b;

	return strcmp(x->user.name, y->user.name);
}

static void
registry_ldap_list_release(struct registry_ldap_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		reg_user_release(&l->v[i].user);
		free(l->v[i].dn);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int
registry_ldap_list(struct registry *r, void *conn, reg_user_cb *cb,
    void *arg, struct mr_buf *err)
{
	struct registry_ldap *be = r->backend;
	struct registry_ldap_conn *c = conn;
	struct registry_ldap_list l = { NULL, 0, 0 };
	size_t i;
	int rc;

	rc = registry_ldap_collect(be, c, &l, err);
	if (rc == 0 && l.n > 1)
		qsort(l.v, l.n, sizeof(*l.v), registry_ldap_entry_cmp);
	for (i = 0; rc == 0 && i < l.n; i++) {
		rc = registry_ldap_accounts(be, c, l.v[i].dn, &l.v[i].user,
		    err);
		if (rc == 0)
			rc = cb(arg, &l.v[i].user);
	}
	registry_ldap_list_release(&l);
	return rc;
}

/* ------------------------------------------------------- bind checks */

/*
 * registry_ldap_check_password - whether len bytes of password are
 * user name's, by a simple bind as the user's DN on c's second handle;
 * name NULL binds as a DN that does not exist, so that an unknown user
 * costs a bind too.  0, -EACCES (wrong password, no such user, or an
 * empty password: a simple bind without one is "unauthenticated" and
 * would succeed, RFC 4513 section 5.1.2), -EIO.
 */
static int
registry_ldap_check_password(struct registry *r, void *conn,
    const char *name, const char *password, size_t len, struct mr_buf *err)
{
	struct registry_ldap *be = r->backend;
	struct registry_ldap_conn *c = conn;
	struct mr_buf nobody = MR_BUF_INIT;
	struct reg_user u;
	const char *dn = NULL;
	char *found = NULL;
	int attempt, rc;

	/* uid matches without regard to case, as the search did. */
	if (name != NULL && c->last_name != NULL &&
	    strcasecmp(c->last_name, name) == 0) {
		dn = c->last_dn;
	} else if (name != NULL) {
		rc = registry_ldap_find(be, c, name, &u, &found, err);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		if (rc == 0)
			reg_user_release(&u);
		dn = found;
	}
	if (dn == NULL) {
		mr_buf_printf(&nobody, "%s,%s", REGISTRY_LDAP_NOBODY,
		    be->base_dn);
		dn = mr_buf_cstr(&nobody);
	}
	rc = -EIO;
	for (attempt = 0; attempt < 2; attempt++) {
		if (c->check_ld == NULL &&
		    (c->check_ld = registry_ldap_handle(be, err)) == NULL)
			break;
		if (len == 0) {
			/* Refused before it reaches the directory. */
			rc = -EACCES;
			break;
		}
		rc = registry_ldap_bind(be, c->check_ld, dn, password, len,
		    err);
		if (rc == 0 || rc == -EACCES)
			break;
		registry_ldap_drop(&c->check_ld);
	}
	free(found);
	mr_buf_release(&nobody);
	if (rc == -EACCES) {
		mr_buf_reset(err);
		mr_buf_puts(err, "wrong password or no such user");
	}
	return rc;
}

/* ------------------------------------------------------------ opening */

static struct registry *
registry_ldap_open(const char *uri, const char *base_dn, const char *bind_dn,
    const char *bind_pw, unsigned timeout_ms, const char *key_file,
    struct mr_buf *err)
{
	struct registry_ldap *be;
	struct registry_ldap_conn *c;
	struct registry *r;
	LDAPURLDesc *lud = NULL;

	mr_buf_reset(err);
	if (uri == NULL || uri[0] == '\0' ||
	    ldap_url_parse(uri, &lud) != LDAP_URL_SUCCESS) {
		mr_buf_printf(err, "LDAP directory: \"%s\" is not an LDAP URI "
		    "(ldap://HOST:PORT or ldaps://HOST:PORT)",
		    uri != NULL ? uri : "");
		return NULL;
	}
	ldap_free_urldesc(lud);
	if (base_dn == NULL || base_dn[0] == '\0') {
		mr_buf_printf(err, "LDAP directory %s: no base DN", uri);
		return NULL;
	}
	if (bind_dn != NULL && bind_dn[0] != '\0' &&
	    (bind_pw == NULL || bind_pw[0] == '\0')) {
		mr_buf_printf(err, "LDAP directory %s: a bind DN (%s) but no "
		    "password to bind with", uri, bind_dn);
		return NULL;
	}
	be = xcalloc(1, sizeof(*be));
	be->uri = xstrdup(uri);
	be->base_dn = xstrdup(base_dn);
	if (bind_dn != NULL && bind_dn[0] != '\0') {
		be->bind_dn = xstrdup(bind_dn);
		be->bind_pw = xstrdup(bind_pw);
	}
	be->timeout_ms = timeout_ms;
	r = registry_new(&registry_ldap_ops, be, key_file, false, err);
	if (r != NULL && (c = r->conn)->ld == NULL) {
		/* Unreachable, or our credentials refused: say so now. */
		mr_buf_reset(err);
		mr_buf_puts(err, c->why != NULL ? c->why : "no connection");
		registry_close(&r);
	}
	return r;
}

struct registry *
registry_open_ldap(const char *uri, const char *base_dn, const char *bind_dn,
    const char *bind_pw, const char *key_file, struct mr_buf *err)
{
	return registry_ldap_open(uri, base_dn, bind_dn, bind_pw,
	    REGISTRY_LDAP_TIMEOUT_MS, key_file, err);
}

/*
 * registry_ldap_password - the first line of path, without its end of
 * line, as a string to wipe; NULL with a sentence in err.
 */
static char *
registry_ldap_password(const char *path, struct mr_buf *err)
{
	struct stat sb;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *fp;

	if ((fp = fopen(path, "re")) == NULL) {
		mr_buf_printf(err, "LDAP bind password file %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	if (fstat(fileno(fp), &sb) == -1 || !S_ISREG(sb.st_mode) ||
	    (sb.st_mode & (S_IROTH | S_IWOTH)) != 0) {
		mr_buf_printf(err, "LDAP bind password file %s: not a regular "
		    "file, or others may read it (chmod o-rw)", path);
		fclose(fp);
		return NULL;
	}
	n = getline(&line, &cap, fp);
	fclose(fp);
	if (n <= 0) {
		free(line);
		mr_buf_printf(err, "LDAP bind password file %s is empty",
		    path);
		return NULL;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	/* What getline's buffer held past the line is wiped too. */
	OPENSSL_cleanse(line + n, cap - (size_t)n);
	return line;
}

struct registry *
registry_open_ldap_conf(const struct mr_config *cfg, struct mr_buf *err)
{
	const char *file = cfg->registry_ldap_bind_password_file;
	struct registry *r;
	char *pw = NULL;

	mr_buf_reset(err);
	if (cfg->registry_ldap_uri[0] == '\0' ||
	    cfg->registry_ldap_base_dn[0] == '\0') {
		mr_buf_puts(err, "registry.source = ldap needs "
		    "registry.ldap_uri and registry.ldap_base_dn");
		return NULL;
	}
	if (cfg->registry_ldap_bind_dn[0] != '\0' && file[0] == '\0') {
		mr_buf_puts(err, "registry.ldap_bind_dn needs "
		    "registry.ldap_bind_password_file");
		return NULL;
	}
	if (file[0] != '\0' && (pw = registry_ldap_password(file,
	    err)) == NULL)
		return NULL;
	r = registry_ldap_open(cfg->registry_ldap_uri,
	    cfg->registry_ldap_base_dn, cfg->registry_ldap_bind_dn, pw,
	    (unsigned)cfg->registry_ldap_timeout, cfg->registry_key_file, err);
	registry_free_str(pw);
	return r;
}
