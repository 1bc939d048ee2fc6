/*
 * registry_int.h - what registry.c (the common part: sealing, verifiers,
 * the login workers) shares with the backends: registry_store.c (the
 * store tables) and registry_ldap.c (a directory).  Not part of the
 * registry's interface: only src/registry/ and tests/unit/test_registry.c
 * include it.
 *
 * A backend opens what it reads from, then calls registry_new() with its
 * ops table and its state (r->backend, the backend's to free in its
 * close op).  The common part owns the seal key, the error sentence, the
 * dummy verifier that makes unknown users cost as much as known ones, and
 * the worker threads.
 *
 * Connections: a backend connection belongs to one thread.  conn_open
 * makes one for the thread that calls it: registry_new() makes r->conn
 * for the caller's thread (the blocking calls of registry.h use it), and
 * each worker thread makes its own when it starts.  A backend whose
 * handle may be shared between threads may return the same pointer and
 * lock inside.
 *
 * Sealed values: lookup and list return a user as it is stored, with
 * apop_secret and every account's secret still sealed (seal.h text, or
 * NULL); registry.c opens them with the AADs below.  A backend that
 * writes seals with the same AADs (registry_seal_*).
 */
#ifndef MR_REGISTRY_INT_H
#define MR_REGISTRY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mr_buf.h"
#include "registry/registry.h"
#include "registry/seal.h"

struct registry_worker;		/* registry.c's threads and queues */

/*
 * A backend's operations.  Every one is called with a connection made by
 * conn_open on the calling thread, returns 0 or a negative code of
 * registry.h and, on failure, puts a sentence in err (borrowed; never a
 * secret).  Strings passed in are borrowed; what a backend fills in is
 * owned by the struct (reg_user_release()).  The administration ops may
 * be NULL (a read-only backend): registry.c then returns -ENOTSUP.
 */
struct registry_ops {
	const char	*name;		/* "store", "ldap": for messages */

	void	*(*conn_open)(struct registry *r, struct mr_buf *err);
	void	 (*conn_close)(struct registry *r, void *conn);
	/* close - free r->backend (the connections are closed already). */
	void	 (*close)(struct registry *r);

	/* lookup - name's record, accounts in id order, secrets sealed. */
	int	 (*lookup)(struct registry *r, void *conn, const char *name,
		     struct reg_user *out, struct mr_buf *err);
	/* list - every user in name order, accounts filled in, secrets as
	 * stored (cb must not keep them); a value cb returns ends it. */
	int	 (*list)(struct registry *r, void *conn, reg_user_cb *cb,
		     void *arg, struct mr_buf *err);
	/*
	 * check_password - may be NULL.  For a user whose lookup gave no
	 * verifier (NULL), whether len bytes of password are name's, the
	 * backend's way (an LDAP bind): 0, -EACCES or -EIO.  Called with
	 * name NULL for an unknown user too (after the dummy verifier), so
	 * that it costs the same work.
	 */
	int	 (*check_password)(struct registry *r, void *conn,
		     const char *name, const char *password, size_t len,
		     struct mr_buf *err);

	/* Administration: values already checked, secrets already sealed
	 * or made into verifiers by registry.c.  user_change: NULL leaves a
	 * field, apop_sealed "" removes the APOP secret. */
	int	 (*user_add)(struct registry *r, void *conn, const char *name,
		     const char *verifier, const char *apop_sealed,
		     struct mr_buf *err);
	int	 (*user_change)(struct registry *r, void *conn,
		     const char *name, const char *verifier,
		     const char *apop_sealed, struct mr_buf *err);
	int	 (*user_remove)(struct registry *r, void *conn,
		     const char *name, struct mr_buf *err);
	/*
	 * account_add - insert *a (a->secret in clear; a->id set here) with
	 * its secret sealed by registry_seal_account() once the id is
	 * known, atomically.  account_change - a->id names it; NULL
	 * strings, port 0 and tls -1 leave a field; a->secret in clear.
	 */
	int	 (*account_add)(struct registry *r, void *conn,
		     struct reg_account *a, struct mr_buf *err);
	int	 (*account_change)(struct registry *r, void *conn,
		     const struct reg_account *a, struct mr_buf *err);
	int	 (*account_remove)(struct registry *r, void *conn, int64_t id,
		     struct mr_buf *err);
};

struct registry {
	const struct registry_ops	*ops;
	void				*backend;	/* the backend's */
	void				*conn;		/* the opener's */
	struct seal_key			*key;
	struct mr_buf			 error;		/* registry_error() */
	char				*dummy;		/* nobody's verifier */
	unsigned			 iter;		/* PBKDF2, new ones */
	unsigned			 nworkers;
	struct registry_worker		*worker;	/* NULL until a login */
	int				 open_code;	/* conn_open failed */
};

/*
 * registry_new - the common part around a backend: load key_file (create:
 * make it when missing), make r->conn with ops->conn_open.  backend is
 * transferred (ops->close frees it, on failure too).  NULL with a
 * sentence in err.
 */
struct registry *registry_new(const struct registry_ops *ops, void *backend,
    const char *key_file, bool create, struct mr_buf *err);
/*
 * registry_new_code - the same, with why it failed in *code_r: -ENOENT
 * (no key file), -ENOKEY (a key file refused: its permissions, size or
 * kind), or what conn_open's failure was (-EIO unless the backend set
 * r->open_code).
 */
struct registry *registry_new_code(const struct registry_ops *ops,
    void *backend, const char *key_file, bool create, struct mr_buf *err,
    int *code_r);

/*
 * registry_seal_account / registry_seal_apop - seal a secret for account
 * id or for name's APOP secret; a string the caller frees.  The AADs are
 * "account:<id>" and "apop:<name>": a value copied into another row does
 * not open.
 */
char *registry_seal_account(const struct registry *r, int64_t id,
    const char *secret);
char *registry_seal_apop(const struct registry *r, const char *name,
    const char *secret);

/*
 * registry_unseal - open u's sealed values in place (apop_secret and
 * each account's secret), wiping and freeing the sealed text.  -EIO with
 * a sentence in err when one does not open (another key file, changed).
 */
int registry_unseal(const struct registry *r, struct reg_user *u,
    struct mr_buf *err);

/* registry_free_str - wipe and free a string (NULL: nothing). */
void registry_free_str(char *s);

/* registry_valid_name() is in registry.h: the command checks names too. */

#endif
