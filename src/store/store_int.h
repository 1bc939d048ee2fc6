/*
 * store_int.h - what store.c shares with the backends (store_sqlite.c,
 * later store_pg.c).  Not part of the store's interface: only src/store/
 * and the unit tests include it.
 *
 * A backend embeds struct store as the first member of its own struct,
 * fills it with store_base_init() and frees it with store_base_release()
 * from its close operation, which also frees the backend struct.
 */
#ifndef MR_STORE_INT_H
#define MR_STORE_INT_H

#include "store/store.h"

/*
 * The SQLite backend's schema: the version this build migrates to, and
 * the application id that marks a file as a mailroom store (both in the
 * database header: PRAGMA user_version and PRAGMA application_id).
 */
#define STORE_SQLITE_SCHEMA_VERSION	3
#define STORE_SQLITE_APPLICATION_ID	0x4d526d31	/* "MRm1" */

/*
 * store_sqlite_open - the SQLite backend of store_open(); same contract.
 * path is borrowed; the result is owned by the caller (store_close()).
 */
struct store *store_sqlite_open(const char *path, int flags,
    int busy_timeout_ms, struct mr_buf *err, int *code_r);

/*
 * store_sqlite_test_sql - for tests only: run sql (one statement) on the
 * SQLite store s and put its first row's first column, as text, in
 * buf (size bytes; "" when there is no row).  Returns 0 or a store code.
 */
int store_sqlite_test_sql(struct store *s, const char *sql, char *buf,
    size_t size);

/*
 * store_sqlite_test_create - for tests only: make a new store file at
 * path as an older mailroom left it, at schema version (1 up to
 * STORE_SQLITE_SCHEMA_VERSION; the shipped migration steps up to it),
 * then run sql (any number of statements; may be NULL) to fill it.
 * Returns 0, or -EEXIST when path exists, -EINVAL for a version this
 * build does not know, -EIO with a sentence in err.
 */
int store_sqlite_test_create(const char *path, int version, const char *sql,
    struct mr_buf *err);

/* store_base_init - fill the common part; path is copied. */
void store_base_init(struct store *s, const struct store_ops *ops,
    const char *path);
/* store_base_release - free the common part (not s itself). */
void store_base_release(struct store *s);
/*
 * store_fail - reset s->error to a sentence (printf format) and return
 * code, so that an operation can end with "return store_fail(...)".
 */
int store_fail(struct store *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* store_open_fail - the same for store_open(): err and code_r may be NULL. */
void store_open_fail(struct mr_buf *err, int *code_r, int code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
