/*
 * registry.h - who may log in to the aggregating POP3 proxy and which
 * backend POP3 accounts each of them owns (SPEC A1; seed 002).
 *
 * Two sources fill the same records: the store (SQLite by default; the
 * tables live in src/store/) and an LDAP directory (registry_ldap.c, the
 * schema mapping in docs/REGISTRY.md).  The store registry is also
 * written to (by `mailroom registry`); the LDAP one is only read.
 *
 * Secrets: a user's login password is kept only as a salted, slow
 * verifier (PBKDF2-HMAC-SHA256, "$pbkdf2-sha256$ITER$SALT$HASH", base64).
 * What the proxy must replay - a backend account's secret and a user's
 * APOP secret - is sealed with AES-256-GCM under a key kept in a key file
 * apart from the data (seal.h); the records below carry them in clear,
 * in memory only, and *_release() wipes them.
 *
 * Threads: every call here may block (disk, network, the deliberately
 * slow verifier), so an event loop never calls registry_user_get or
 * registry_login directly: it uses registry_login_async(), which runs the
 * work on the registry's own worker thread and calls back on the loop.
 *
 * Errors: int functions return 0 or a negative code: -ENOENT (no such
 * user or account), -EEXIST (name taken), -EACCES (wrong password or
 * digest: callers must not tell a client which of unknown user and wrong
 * password it was), -EINVAL (a value refused: bad name, port, TLS mode),
 * -EIO (the store or directory failed, or a sealed secret did not open
 * with this key file).  registry_error() then holds a sentence for people
 * (never a secret).
 */
#ifndef MR_REGISTRY_H
#define MR_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mr_buf.h"
#include "registry/verifier.h"	/* verifiers of user passwords */

struct event_base;
struct mr_config;
struct registry;

/* How the proxy reaches a backend POP3 server. */
enum reg_tls {
	REG_TLS_NONE,		/* plain POP3 */
	REG_TLS_STLS,		/* plain, then STLS (RFC 2595), required */
	REG_TLS_POP3S,		/* TLS from the first byte */
};

struct reg_account {
	int64_t		 id;		/* unique in the registry */
	char		*user;		/* owning user's name */
	char		*host;		/* name or address literal */
	unsigned	 port;
	int		 tls;		/* enum reg_tls */
	char		*login;		/* the backend's user name */
	char		*secret;	/* the backend's password, in clear */
};

struct reg_user {
	char			*name;
	char			*verifier;	/* "$pbkdf2-sha256$..." */
	char			*apop_secret;	/* in clear; NULL: no APOP */
	struct reg_account	*accounts;	/* in id order */
	size_t			 naccounts;
};

/* reg_user_release - wipe the secrets and free what *u owns. */
void reg_user_release(struct reg_user *u);
void reg_account_release(struct reg_account *a);

/*
 * registry_valid_name - whether name may name a user: 1 to 255 bytes of
 * printable ASCII without white space (a POP3 USER argument).
 */
bool registry_valid_name(const char *name);

/* reg_tls_name / reg_tls_parse - "none", "stls", "pop3s". */
const char *reg_tls_name(int tls);
int reg_tls_parse(const char *text);	/* -1 when unknown */

/*
 * Opening.  registry_open_store - the registry in the store file path,
 * secrets sealed with the key in key_file.  create: make the store and
 * the key file (0600, 32 random bytes) when missing (what `mailroom
 * registry` does); otherwise a missing key file, or one that others can
 * read, is an error.  *code_r (may be NULL) says why it failed: -ENOENT
 * (no store, or no key file), -ENOKEY (a key file refused: readable by
 * others, of the wrong size, or not the one the store's secrets were
 * sealed with), -EACCES (the store cannot be read or written), -EBUSY
 * (locked), -EIO.  registry_open_ldap - the directory at uri
 * ("ldap://host:port"), searched under base_dn, bound as bind_dn with
 * bind_pw (both may be NULL: anonymous), secrets sealed with key_file.
 * NULL with a sentence in err.
 */
struct registry *registry_open_store(const char *path, const char *key_file,
    bool create, struct mr_buf *err, int *code_r);
struct registry *registry_open_ldap(const char *uri, const char *base_dn,
    const char *bind_dn, const char *bind_pw, const char *key_file,
    struct mr_buf *err);
/*
 * registry_open_ldap_conf - registry_open_ldap() as cfg's registry.*
 * keys say: ldap_uri, ldap_base_dn, ldap_bind_dn, its password from the
 * first line of ldap_bind_password_file (refused when others may read
 * the file), ldap_timeout, key_file.  NULL with a sentence in err.
 */
struct registry *registry_open_ldap_conf(const struct mr_config *cfg,
    struct mr_buf *err);
void registry_close(struct registry **rp);
const char *registry_error(const struct registry *r);
/*
 * registry_tune - how many worker threads registry_login_async() starts
 * (0: leave it; default 2; at most 16; before the first login only), and
 * the PBKDF2 iterations of the verifiers that user_add and user_change
 * make (0: leave it; default REG_PBKDF2_ITER).
 */
void registry_tune(struct registry *r, unsigned workers,
    unsigned pbkdf2_iter);

/* Lookups (blocking).  *out is filled in, accounts included. */
int registry_user_get(struct registry *r, const char *name,
    struct reg_user *out);

/*
 * Administration (blocking; the store registry only, -ENOTSUP for LDAP).
 * user_add: password (required) becomes a verifier, apop_secret (may be
 * NULL) is sealed.  user_change: a NULL argument leaves that field as it
 * is; apop_secret "" removes it.  user_remove removes the user's accounts
 * too.  account_add sets a->id.  account_change: a->id names the account;
 * NULL strings and port 0 and tls -1 leave the field as it is.
 */
int registry_user_add(struct registry *r, const char *name,
    const char *password, const char *apop_secret);
int registry_user_change(struct registry *r, const char *name,
    const char *password, const char *apop_secret);
int registry_user_remove(struct registry *r, const char *name);
typedef int reg_user_cb(void *arg, const struct reg_user *u);
/* registry_user_list - cb for every user in name order, accounts filled
 * in, secrets NOT unsealed: apop_secret and each secret hold the sealed
 * text, or NULL when there is none (so "has an APOP secret" shows); *u is
 * borrowed for the call.  A value cb returns ends the listing. */
int registry_user_list(struct registry *r, reg_user_cb *cb, void *arg);
int registry_account_add(struct registry *r, struct reg_account *a);
int registry_account_change(struct registry *r, const struct reg_account *a);
int registry_account_remove(struct registry *r, int64_t id);

/*
 * Logging in from an event loop.  registry_login_async - on the
 * registry's worker thread, look name up and check the credential: a
 * password (kind REG_LOGIN_PASS: against the verifier) or an APOP digest
 * (REG_LOGIN_APOP: the 32 lower-case hex digits of MD5(timestamp secret),
 * RFC 1939 section 7); then cb(arg, status, user) runs on base's loop,
 * with status 0 and *user, secrets in clear, or -EACCES/-EIO and NULL.
 * *user is the registry's until cb returns: cb may take fields (setting
 * them to NULL) or move the whole struct out (then memset it to 0); what
 * is left is released after cb.  Unknown users cost as much time as
 * known ones.  The inputs are copied (and wiped after use).  The returned
 * ticket can be cancelled until cb has run: registry_login_cancel()
 * guarantees cb is not called.  NULL when the request could not be
 * queued (err says why).  Calls come from one loop thread at a time;
 * cb may queue or cancel logins but not close the registry.
 * registry_close() ends the workers (after the login each one runs) and
 * must come before event_base_free() of a base that logins used.
 */
enum reg_login_kind { REG_LOGIN_PASS, REG_LOGIN_APOP };
struct reg_login {
	int		 kind;		/* enum reg_login_kind */
	const char	*name;
	const char	*password;	/* PASS: the password */
	size_t		 password_len;
	const char	*timestamp;	/* APOP: the greeting's <...> */
	const char	*digest;	/* APOP: the client's digest */
};
struct reg_ticket;
typedef void reg_login_cb(void *arg, int status, struct reg_user *user);
struct reg_ticket *registry_login_async(struct registry *r,
    struct event_base *base, const struct reg_login *in, reg_login_cb *cb,
    void *arg, struct mr_buf *err);
void registry_login_cancel(struct reg_ticket *t);

#endif
