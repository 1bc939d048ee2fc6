/*
 * store_sqlite.c - the SQLite backend of the store (store.h): one database
 * file in WAL mode, its schema migrated forward on open, every statement
 * prepared once on open and finalized on close.
 *
 * Versioning: the database header carries both marks, so that no table
 * has to be read to know what a file is.  PRAGMA application_id says
 * "this is a mailroom store" (an SQLite file of another program, or one
 * whose user_version another program uses, is never taken for ours), and
 * PRAGMA user_version is the schema version.  Both are written in the
 * migration's transaction, so a crash leaves the old version or the new
 * one, never a half-migrated store that claims to be new.
 *
 * Durability: a snapshot is one transaction and commit() must mean that
 * it survives a power loss.  In WAL mode synchronous=NORMAL syncs the WAL
 * only at checkpoints, so a committed transaction can vanish with the
 * power (the store stays consistent but goes back in time, and a resumed
 * campaign would send again what the lost snapshot recorded as done).
 * synchronous=FULL syncs the WAL at every commit: one fsync per snapshot.
 *
 * Transactions: begin() is BEGIN IMMEDIATE, so a snapshot takes the write
 * lock before its first statement and waits for it (busy_timeout) at one
 * place only.  An operation made of several statements runs in its own
 * BEGIN IMMEDIATE ... COMMIT when no transaction is open, or inside a
 * SAVEPOINT within the caller's, so that it is atomic either way.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/mr_buf.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "store/store.h"
#include "store/store_int.h"

/*
 * Schema migrations: store_sqlite_migrations[i] takes a store from schema
 * i to i + 1, and all the steps a store needs run in one transaction on
 * open.  Append only: a step that shipped never changes; a new table,
 * column or index is a new step (and STORE_SQLITE_SCHEMA_VERSION + 1).
 *
 * Unsigned 64-bit counters are stored as SQLite's signed integers, bit
 * for bit, and compared in C only.  Times are unix seconds.
 */
static const char *const store_sqlite_migrations[] = {
	/* 0 -> 1: campaigns and their recovery state; accounts, quotas. */
	"CREATE TABLE campaigns ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"	/* ids never reused */
	"  name TEXT NOT NULL UNIQUE,"
	"  template_path TEXT,"
	"  list_path TEXT,"
	"  template_sha256 TEXT NOT NULL DEFAULT '',"
	"  list_sha256 TEXT NOT NULL DEFAULT '',"
	"  list_size INTEGER NOT NULL DEFAULT 0,"
	"  list_mtime INTEGER NOT NULL DEFAULT 0,"
	"  account TEXT,"
	"  options TEXT,"
	"  created_at INTEGER NOT NULL,"
	"  start_at INTEGER NOT NULL DEFAULT 0,"
	"  started_at INTEGER NOT NULL DEFAULT 0,"
	"  finished_at INTEGER NOT NULL DEFAULT 0,"
	"  stage INTEGER NOT NULL,"
	"  state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 4),"
	"  nrecipients INTEGER NOT NULL DEFAULT 0,"
	"  chunk_size INTEGER NOT NULL DEFAULT 0,"
	"  nchunks INTEGER NOT NULL DEFAULT 0,"
	"  list_rows INTEGER NOT NULL DEFAULT 0,"
	"  rejected INTEGER NOT NULL DEFAULT 0,"
	"  duplicates INTEGER NOT NULL DEFAULT 0,"
	"  delivered INTEGER NOT NULL DEFAULT 0,"
	"  bounced INTEGER NOT NULL DEFAULT 0,"
	"  deferrals INTEGER NOT NULL DEFAULT 0,"
	"  inflight_at_crash INTEGER NOT NULL DEFAULT 0,"
	"  generation INTEGER NOT NULL DEFAULT 0,"
	"  owner TEXT,"
	"  lease_until INTEGER NOT NULL DEFAULT 0,"
	"  summary TEXT"
	");"
	/* campaign_due: state = ? AND start_at <= ?, ordered by start_at. */
	"CREATE INDEX campaigns_due ON campaigns (state, start_at);"
	/*
	 * Bit vectors can be large (chunk_size / 8 bytes): a rowid table
	 * keeps them out of the primary-key b-tree's interior pages.
	 */
	"CREATE TABLE chunks ("
	"  campaign INTEGER NOT NULL"
	"    REFERENCES campaigns (id) ON DELETE CASCADE,"
	"  idx INTEGER NOT NULL,"
	"  bits BLOB NOT NULL,"
	"  ndone INTEGER NOT NULL DEFAULT 0,"
	"  visits BLOB,"		/* NULL: none */
	"  PRIMARY KEY (campaign, idx)"
	");"
	"CREATE TABLE journal_marks ("
	"  campaign INTEGER NOT NULL"
	"    REFERENCES campaigns (id) ON DELETE CASCADE,"
	"  generation INTEGER NOT NULL,"
	"  writer INTEGER NOT NULL,"
	"  seq INTEGER NOT NULL,"
	"  PRIMARY KEY (campaign, generation, writer)"
	") WITHOUT ROWID;"
	"CREATE TABLE accounts ("
	"  name TEXT PRIMARY KEY NOT NULL,"
	"  allowance INTEGER NOT NULL,"
	"  period INTEGER NOT NULL CHECK (period > 0),"
	"  warn_pct INTEGER NOT NULL CHECK (warn_pct BETWEEN 1 AND 100)"
	");"
	/* Usage goes with its account. */
	"CREATE TABLE quota_usage ("
	"  account TEXT NOT NULL"
	"    REFERENCES accounts (name) ON DELETE CASCADE,"
	"  period_start INTEGER NOT NULL,"
	"  used INTEGER NOT NULL,"
	"  PRIMARY KEY (account, period_start)"
	") WITHOUT ROWID;"
	/*
	 * A reservation goes with its campaign, but an account that
	 * campaigns still hold reservations of cannot be removed (NO
	 * ACTION, checked at the end of the statement, reports
	 * SQLITE_CONSTRAINT_FOREIGNKEY; RESTRICT would report a trigger).
	 */
	"CREATE TABLE quota_reservations ("
	"  campaign INTEGER PRIMARY KEY"
	"    REFERENCES campaigns (id) ON DELETE CASCADE,"
	"  account TEXT NOT NULL REFERENCES accounts (name),"
	"  period_start INTEGER NOT NULL,"
	"  reserved INTEGER NOT NULL"
	");"
	/* The sum of an account's reservations in a period. */
	"CREATE INDEX quota_reservations_account"
	"  ON quota_reservations (account, period_start);",
	/*
	 * 1 -> 2: the registry (SPEC A1): users of the POP3 proxy and their
	 * backend accounts.  Secrets are sealed (src/registry/seal.h) or
	 * verifiers; tls is enum reg_tls.  registry_meta holds the key
	 * file check.
	 */
	"CREATE TABLE registry_users ("
	"  name TEXT PRIMARY KEY NOT NULL,"
	"  verifier TEXT NOT NULL,"
	"  apop TEXT"			/* NULL: no APOP secret */
	");"
	"CREATE TABLE registry_accounts ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"	/* ids never reused:
							 * part of the AAD */
	"  user_name TEXT NOT NULL"
	"    REFERENCES registry_users (name) ON DELETE CASCADE,"
	"  host TEXT NOT NULL,"
	"  port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),"
	"  tls INTEGER NOT NULL CHECK (tls BETWEEN 0 AND 2),"
	"  login TEXT NOT NULL,"
	"  secret TEXT"		/* NULL only inside reg_account_add's txn */
	");"
	"CREATE INDEX registry_accounts_user"
	"  ON registry_accounts (user_name, id);"
	"CREATE TABLE registry_meta ("
	"  name TEXT PRIMARY KEY NOT NULL,"
	"  value TEXT NOT NULL"
	") WITHOUT ROWID;",
	/*
	 * 2 -> 3: a sending account's password for SMTP AUTH (D17), as a
	 * verifier (src/registry/verifier.h); NULL: none, the account cannot
	 * authenticate.  Existing accounts get none.
	 */
	"ALTER TABLE accounts ADD COLUMN verifier TEXT;",
};

_Static_assert(sizeof(store_sqlite_migrations) /
    sizeof(store_sqlite_migrations[0]) == STORE_SQLITE_SCHEMA_VERSION,
    "one migration step per schema version");

/*
 * The campaign columns, in the order of struct store_campaign.  Reads
 * select them in this order; writes bind field k to parameter ?k+1
 * (store_sqlite_bind_campaign), id being ?1.
 */
#define STORE_SQLITE_CAMPAIGN_COLS					\
	"id, name, template_path, list_path, template_sha256, "	\
	"list_sha256, list_size, list_mtime, account, options, "	\
	"created_at, start_at, started_at, finished_at, stage, state, "	\
	"nrecipients, chunk_size, nchunks, list_rows, rejected, "	\
	"duplicates, delivered, bounced, deferrals, inflight_at_crash, " \
	"generation, owner, lease_until, summary"

/* The registry's account columns, in the order of its struct. */
#define STORE_SQLITE_REG_ACCT_COLS					\
	"id, user_name, host, port, tls, login, secret"

/* The prepared statements, one per use. */
enum store_sqlite_st {
	STORE_SQLITE_BEGIN,
	STORE_SQLITE_BEGIN_READ,
	STORE_SQLITE_COMMIT,
	STORE_SQLITE_ROLLBACK,
	STORE_SQLITE_SAVEPOINT,
	STORE_SQLITE_RELEASE,
	STORE_SQLITE_ROLLBACK_TO,
	STORE_SQLITE_CAMP_INSERT,
	STORE_SQLITE_CAMP_BY_ID,
	STORE_SQLITE_CAMP_BY_NAME,
	STORE_SQLITE_CAMP_LIST,
	STORE_SQLITE_CAMP_UPDATE,
	STORE_SQLITE_CAMP_CLAIM,
	STORE_SQLITE_CAMP_HOLDER,
	STORE_SQLITE_CAMP_RELEASE,
	STORE_SQLITE_CAMP_DUE,
	STORE_SQLITE_CHUNK_CLEAR,
	STORE_SQLITE_CHUNK_INSERT,
	STORE_SQLITE_CHUNK_LOAD,
	STORE_SQLITE_CHUNK_SAVE,
	STORE_SQLITE_CHUNK_LEN,
	STORE_SQLITE_MARK_CLEAR,
	STORE_SQLITE_MARK_INSERT,
	STORE_SQLITE_MARK_LOAD,
	STORE_SQLITE_ACCT_PUT,
	STORE_SQLITE_ACCT_GET,
	STORE_SQLITE_ACCT_LIST,
	STORE_SQLITE_ACCT_REMOVE,
	STORE_SQLITE_QUOTA_USED,
	STORE_SQLITE_QUOTA_RESERVED,
	STORE_SQLITE_QUOTA_RESERVE,
	STORE_SQLITE_QUOTA_RES_GET,
	STORE_SQLITE_QUOTA_RES_TAKE,
	STORE_SQLITE_QUOTA_USE,
	STORE_SQLITE_QUOTA_RELEASE,
	STORE_SQLITE_REG_USER_ADD,
	STORE_SQLITE_REG_USER_GET,
	STORE_SQLITE_REG_USER_UPDATE,
	STORE_SQLITE_REG_USER_REMOVE,
	STORE_SQLITE_REG_USER_LIST,
	STORE_SQLITE_REG_ACCT_ADD,
	STORE_SQLITE_REG_ACCT_GET,
	STORE_SQLITE_REG_ACCT_UPDATE,
	STORE_SQLITE_REG_ACCT_REMOVE,
	STORE_SQLITE_REG_ACCT_OF,
	STORE_SQLITE_REG_ACCT_LIST,
	STORE_SQLITE_REG_META_GET,
	STORE_SQLITE_REG_META_PUT,
	STORE_SQLITE_NST
};

static const char *const store_sqlite_sql[STORE_SQLITE_NST] = {
	[STORE_SQLITE_BEGIN] = "BEGIN IMMEDIATE",
	[STORE_SQLITE_BEGIN_READ] = "BEGIN DEFERRED",
	[STORE_SQLITE_COMMIT] = "COMMIT",
	[STORE_SQLITE_ROLLBACK] = "ROLLBACK",
	[STORE_SQLITE_SAVEPOINT] = "SAVEPOINT store_op",
	[STORE_SQLITE_RELEASE] = "RELEASE store_op",
	[STORE_SQLITE_ROLLBACK_TO] = "ROLLBACK TO store_op",
	[STORE_SQLITE_CAMP_INSERT] =
	    "INSERT INTO campaigns (" STORE_SQLITE_CAMPAIGN_COLS ") VALUES ("
	    "NULL, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
	    "?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, "
	    "?28, ?29, ?30)",
	[STORE_SQLITE_CAMP_BY_ID] =
	    "SELECT " STORE_SQLITE_CAMPAIGN_COLS " FROM campaigns "
	    "WHERE id = ?1",
	[STORE_SQLITE_CAMP_BY_NAME] =
	    "SELECT " STORE_SQLITE_CAMPAIGN_COLS " FROM campaigns "
	    "WHERE name = ?1",
	[STORE_SQLITE_CAMP_LIST] =
	    "SELECT " STORE_SQLITE_CAMPAIGN_COLS " FROM campaigns "
	    "ORDER BY id",
	[STORE_SQLITE_CAMP_UPDATE] =
	    "UPDATE campaigns SET template_path = ?3, list_path = ?4, "
	    "template_sha256 = ?5, list_sha256 = ?6, list_size = ?7, "
	    "list_mtime = ?8, account = ?9, options = ?10, start_at = ?12, "
	    "started_at = ?13, finished_at = ?14, stage = ?15, state = ?16, "
	    "nrecipients = ?17, chunk_size = ?18, nchunks = ?19, "
	    "list_rows = ?20, rejected = ?21, duplicates = ?22, "
	    "delivered = ?23, bounced = ?24, deferrals = ?25, "
	    "inflight_at_crash = ?26, generation = ?27, summary = ?30 "
	    "WHERE id = ?1",
	[STORE_SQLITE_CAMP_CLAIM] =
	    "UPDATE campaigns SET owner = ?2, lease_until = ?3, state = ?5 "
	    "WHERE id = ?1 AND (owner IS NULL OR lease_until < ?4 "
	    "OR owner = ?2)",
	[STORE_SQLITE_CAMP_HOLDER] =
	    "SELECT owner, lease_until FROM campaigns WHERE id = ?1",
	[STORE_SQLITE_CAMP_RELEASE] =
	    "UPDATE campaigns SET owner = NULL, lease_until = 0, state = ?3 "
	    "WHERE id = ?1 AND owner = ?2",
	[STORE_SQLITE_CAMP_DUE] =
	    "SELECT id FROM campaigns "
	    "WHERE (state = ?2 AND start_at <= ?1) "
	    "OR (state = ?3 AND lease_until < ?1) "
	    "ORDER BY start_at, id LIMIT ?4",
	[STORE_SQLITE_CHUNK_CLEAR] = "DELETE FROM chunks WHERE campaign = ?1",
	[STORE_SQLITE_CHUNK_INSERT] =
	    "INSERT INTO chunks (campaign, idx, bits, ndone) "
	    "VALUES (?1, ?2, zeroblob(?3), 0)",
	[STORE_SQLITE_CHUNK_LOAD] =
	    "SELECT idx, bits, visits FROM chunks WHERE campaign = ?1 "
	    "ORDER BY idx",
	[STORE_SQLITE_CHUNK_SAVE] =
	    "UPDATE chunks SET bits = ?4, ndone = ?5, visits = ?6 "
	    "WHERE campaign = ?1 AND idx = ?2 AND length(bits) = ?3",
	[STORE_SQLITE_CHUNK_LEN] =
	    "SELECT length(bits) FROM chunks WHERE campaign = ?1 AND idx = ?2",
	[STORE_SQLITE_MARK_CLEAR] =
	    "DELETE FROM journal_marks WHERE campaign = ?1",
	[STORE_SQLITE_MARK_INSERT] =
	    "INSERT INTO journal_marks (campaign, generation, writer, seq) "
	    "VALUES (?1, ?2, ?3, ?4)",
	[STORE_SQLITE_MARK_LOAD] =
	    "SELECT generation, writer, seq FROM journal_marks "
	    "WHERE campaign = ?1 ORDER BY generation, writer",
	[STORE_SQLITE_ACCT_PUT] =
	    "INSERT INTO accounts (name, allowance, period, warn_pct, "
	    "verifier) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO "
	    "UPDATE SET allowance = excluded.allowance, "
	    "period = excluded.period, warn_pct = excluded.warn_pct, "
	    "verifier = excluded.verifier",
	[STORE_SQLITE_ACCT_GET] =
	    "SELECT name, allowance, period, warn_pct, verifier FROM accounts "
	    "WHERE name = ?1",
	[STORE_SQLITE_ACCT_LIST] =
	    "SELECT name, allowance, period, warn_pct, verifier FROM accounts "
	    "ORDER BY name",
	[STORE_SQLITE_ACCT_REMOVE] = "DELETE FROM accounts WHERE name = ?1",
	[STORE_SQLITE_QUOTA_USED] =
	    "SELECT used FROM quota_usage "
	    "WHERE account = ?1 AND period_start = ?2",
	/* ?3: the campaign to leave out, or NULL for none. */
	[STORE_SQLITE_QUOTA_RESERVED] =
	    "SELECT coalesce(sum(reserved), 0) FROM quota_reservations "
	    "WHERE account = ?1 AND period_start = ?2 AND campaign IS NOT ?3",
	[STORE_SQLITE_QUOTA_RESERVE] =
	    "INSERT INTO quota_reservations "
	    "(campaign, account, period_start, reserved) "
	    "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (campaign) DO UPDATE SET "
	    "account = excluded.account, "
	    "period_start = excluded.period_start, "
	    "reserved = excluded.reserved",
	[STORE_SQLITE_QUOTA_RES_GET] =
	    "SELECT account, period_start, reserved FROM quota_reservations "
	    "WHERE campaign = ?1",
	[STORE_SQLITE_QUOTA_RES_TAKE] =
	    "UPDATE quota_reservations SET reserved = reserved - ?2 "
	    "WHERE campaign = ?1",
	[STORE_SQLITE_QUOTA_USE] =
	    "INSERT INTO quota_usage (account, period_start, used) "
	    "VALUES (?1, ?2, ?3) ON CONFLICT (account, period_start) "
	    "DO UPDATE SET used = used + excluded.used",
	[STORE_SQLITE_QUOTA_RELEASE] =
	    "DELETE FROM quota_reservations WHERE campaign = ?1",
	[STORE_SQLITE_REG_USER_ADD] =
	    "INSERT INTO registry_users (name, verifier, apop) "
	    "VALUES (?1, ?2, ?3)",
	[STORE_SQLITE_REG_USER_GET] =
	    "SELECT name, verifier, apop FROM registry_users WHERE name = ?1",
	[STORE_SQLITE_REG_USER_UPDATE] =
	    "UPDATE registry_users SET verifier = ?2, apop = ?3 "
	    "WHERE name = ?1",
	[STORE_SQLITE_REG_USER_REMOVE] =
	    "DELETE FROM registry_users WHERE name = ?1",
	[STORE_SQLITE_REG_USER_LIST] =
	    "SELECT name, verifier, apop FROM registry_users ORDER BY name",
	[STORE_SQLITE_REG_ACCT_ADD] =
	    "INSERT INTO registry_accounts (" STORE_SQLITE_REG_ACCT_COLS ") "
	    "VALUES (NULL, ?2, ?3, ?4, ?5, ?6, ?7)",
	[STORE_SQLITE_REG_ACCT_GET] =
	    "SELECT " STORE_SQLITE_REG_ACCT_COLS " FROM registry_accounts "
	    "WHERE id = ?1",
	[STORE_SQLITE_REG_ACCT_UPDATE] =
	    "UPDATE registry_accounts SET host = ?3, port = ?4, tls = ?5, "
	    "login = ?6, secret = ?7 WHERE id = ?1",
	[STORE_SQLITE_REG_ACCT_REMOVE] =
	    "DELETE FROM registry_accounts WHERE id = ?1",
	[STORE_SQLITE_REG_ACCT_OF] =
	    "SELECT " STORE_SQLITE_REG_ACCT_COLS " FROM registry_accounts "
	    "WHERE user_name = ?1 ORDER BY id",
	[STORE_SQLITE_REG_ACCT_LIST] =
	    "SELECT " STORE_SQLITE_REG_ACCT_COLS " FROM registry_accounts "
	    "ORDER BY user_name, id",
	[STORE_SQLITE_REG_META_GET] =
	    "SELECT value FROM registry_meta WHERE name = ?1",
	[STORE_SQLITE_REG_META_PUT] =
	    "INSERT INTO registry_meta (name, value) VALUES (?1, ?2) "
	    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
};

struct store_sqlite {
	struct store	 base;		/* first: the interface's view */
	sqlite3		*db;		/* owned; closed by close() */
	sqlite3_stmt	*st[STORE_SQLITE_NST];	/* owned, prepared on open */
	int		 busy_ms;	/* for messages */
	bool		 readonly;
	bool		 user_txn;	/* begin() done, no commit/rollback */
};

/* How an operation of several statements is made atomic. */
enum store_sqlite_txn {
	STORE_SQLITE_TXN_OWN,		/* BEGIN IMMEDIATE ... COMMIT */
	STORE_SQLITE_TXN_NESTED,	/* SAVEPOINT in the caller's */
};

static const struct store_ops store_sqlite_ops;

/*
 * store_sqlite_enter - the backend behind s, with s->error reset: every
 * operation starts here, so store_error() tells about the last one.
 */
static struct store_sqlite *
store_sqlite_enter(struct store *s)
{
	mr_buf_reset(&s->error);
	return (struct store_sqlite *)s;
}

/* store_sqlite_dirname - the directory of path; the caller frees it. */
static char *
store_sqlite_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

/*
 * store_sqlite_cantopen - SQLITE_CANTOPEN: say whether the file is
 * missing, forbidden, or something else.
 */
static int
store_sqlite_cantopen(struct store_sqlite *ss, const char *op,
    const char *why)
{
	struct store *s = &ss->base;
	struct stat sb;
	int e = stat(s->path, &sb) == -1 ? errno : 0;

	if (e == ENOENT)
		return store_fail(s, -ENOENT, "store %s does not exist",
		    s->path);
	if (e == EACCES)
		return store_fail(s, -EACCES, "store %s: %s: permission "
		    "denied (%s)", s->path, op, why);
	return store_fail(s, -EACCES, "store %s: %s: cannot open the "
	    "database or its -wal/-shm files (%s)", s->path, op, why);
}

/*
 * store_sqlite_err - map SQLite result code rc of operation op to one of
 * the store's codes, with a sentence in s->error.
 */
static int
store_sqlite_err(struct store_sqlite *ss, const char *op, int rc)
{
	struct store *s = &ss->base;
	const char *why;

	why = ss->db != NULL ? sqlite3_errmsg(ss->db) : sqlite3_errstr(rc);
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return store_fail(s, -EBUSY, "store %s is locked: another "
		    "process holds it (%s gave up after %d ms)", s->path, op,
		    ss->busy_ms);
	case SQLITE_READONLY:
		return store_fail(s, -EROFS, "store %s is read-only: %s "
		    "cannot write (%s)", s->path, op, why);
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return store_fail(s, -EACCES, "store %s: %s: permission "
		    "denied (%s)", s->path, op, why);
	case SQLITE_CANTOPEN:
		return store_sqlite_cantopen(ss, op, why);
	case SQLITE_FULL:
		return store_fail(s, -ENOSPC, "store %s: %s: the disk is full "
		    "(%s)", s->path, op, why);
	case SQLITE_CONSTRAINT:
		if (rc == SQLITE_CONSTRAINT_UNIQUE ||
		    rc == SQLITE_CONSTRAINT_PRIMARYKEY)
			return store_fail(s, -EEXIST, "store %s: %s: already "
			    "exists (%s)", s->path, op, why);
		if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
			return store_fail(s, -ENOENT, "store %s: %s: no such "
			    "campaign or account (%s)", s->path, op, why);
		return store_fail(s, -EINVAL, "store %s: %s: value refused "
		    "(%s)", s->path, op, why);
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return store_fail(s, -EIO, "store %s: %s: not a mailroom store "
		    "or corrupt (%s)", s->path, op, why);
	default:
		return store_fail(s, -EIO, "store %s: %s: %s", s->path, op,
		    why);
	}
}

/* store_sqlite_reset - make st ready for its next use. */
static void
store_sqlite_reset(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/*
 * store_sqlite_run - step a bound statement to its end, then reset it.
 * A write is refused while the caller's transaction is lost (SQLite
 * rolls back by itself on some errors, such as a full disk): it would
 * otherwise commit alone, and a snapshot would be saved in part.
 */
static int
store_sqlite_run(struct store_sqlite *ss, sqlite3_stmt *st, const char *op)
{
	int rc;

	if (ss->user_txn && !sqlite3_stmt_readonly(st) &&
	    sqlite3_get_autocommit(ss->db)) {
		store_sqlite_reset(st);
		return store_fail(&ss->base, -EIO, "store %s: %s: the "
		    "transaction was rolled back by an earlier error",
		    ss->base.path, op);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	rc = rc == SQLITE_DONE ? 0 : store_sqlite_err(ss, op, rc);
	store_sqlite_reset(st);
	return rc;
}

/* store_sqlite_quiet - run st for cleanup, keeping the error as it is. */
static void
store_sqlite_quiet(sqlite3_stmt *st)
{
	while (sqlite3_step(st) == SQLITE_ROW)
		;
	store_sqlite_reset(st);
}

/*
 * store_sqlite_op_begin - make the statements that follow one atomic
 * unit; write says whether they write (take the write lock now) or only
 * read (see one state of the store).
 */
static int
store_sqlite_op_begin(struct store_sqlite *ss, const char *op, bool write,
    enum store_sqlite_txn *txn_r)
{
	if (sqlite3_get_autocommit(ss->db)) {
		*txn_r = STORE_SQLITE_TXN_OWN;
		return store_sqlite_run(ss, ss->st[ss->readonly || !write ?
		    STORE_SQLITE_BEGIN_READ : STORE_SQLITE_BEGIN], op);
	}
	*txn_r = STORE_SQLITE_TXN_NESTED;
	return store_sqlite_run(ss, ss->st[STORE_SQLITE_SAVEPOINT], op);
}

/*
 * store_sqlite_op_end - commit what store_sqlite_op_begin() opened when rc
 * is 0, else undo it; returns rc or the commit's error.
 */
static int
store_sqlite_op_end(struct store_sqlite *ss, const char *op,
    enum store_sqlite_txn txn, int rc)
{
	if (rc == 0) {
		rc = store_sqlite_run(ss, ss->st[txn == STORE_SQLITE_TXN_OWN ?
		    STORE_SQLITE_COMMIT : STORE_SQLITE_RELEASE], op);
		if (rc == 0)
			return 0;
	}
	if (txn == STORE_SQLITE_TXN_OWN) {
		/* Some errors (I/O, disk full) have rolled back already. */
		if (!sqlite3_get_autocommit(ss->db))
			store_sqlite_quiet(ss->st[STORE_SQLITE_ROLLBACK]);
	} else {
		store_sqlite_quiet(ss->st[STORE_SQLITE_ROLLBACK_TO]);
		store_sqlite_quiet(ss->st[STORE_SQLITE_RELEASE]);
	}
	return rc;
}

/* store_sqlite_bind_str - NULL binds NULL; the string is borrowed. */
static void
store_sqlite_bind_str(sqlite3_stmt *st, int i, const char *str)
{
	if (str == NULL)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_text(st, i, str, -1, SQLITE_STATIC);
}

/* store_sqlite_col_str - a copy of column i (owned), or NULL. */
static char *
store_sqlite_col_str(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	if (t == NULL)
		return NULL;
	return xmemdup(t, (size_t)sqlite3_column_bytes(st, i));
}

static int
store_sqlite_check_state(struct store *s, const char *op, int state)
{
	if (state >= STORE_STATE_SCHEDULED && state <= STORE_STATE_DONE)
		return 0;
	return store_fail(s, -EINVAL, "store %s: %s: no campaign state %d",
	    s->path, op, state);
}

/* Opening. */

static int
store_sqlite_access_code(int e)
{
	return e == EROFS ? -EROFS : -EACCES;
}

/*
 * store_sqlite_check_file - what can be told before SQLite opens the file:
 * missing, unreadable, or not writable when writing is wanted.  SQLite
 * would quietly open an unwritable file read-only, and WAL needs to make
 * the -wal and -shm files next to it, hence access(2) on both.
 */
static int
store_sqlite_check_file(struct store_sqlite *ss, int flags)
{
	struct store *s = &ss->base;
	struct stat sb;
	char *dir;
	int rc = 0, e;

	if (stat(s->path, &sb) == -1) {
		e = errno;
		if (e != ENOENT)
			return store_fail(s, store_sqlite_access_code(e),
			    "store %s cannot be reached: %s", s->path,
			    strerror(e));
		if (!(flags & STORE_CREATE) || ss->readonly)
			return store_fail(s, -ENOENT,
			    "store %s does not exist", s->path);
		dir = store_sqlite_dirname(s->path);
		if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) == -1) {
			e = errno;
			rc = store_fail(s, e == ENOENT ? -ENOENT :
			    store_sqlite_access_code(e), "cannot create store "
			    "%s: directory %s: %s", s->path, dir, strerror(e));
		}
		free(dir);
		return rc;
	}
	if (!S_ISREG(sb.st_mode))
		return store_fail(s, -EIO, "%s is not a mailroom store (not a "
		    "regular file)", s->path);
	if (faccessat(AT_FDCWD, s->path, R_OK, AT_EACCESS) == -1) {
		e = errno;
		return store_fail(s, store_sqlite_access_code(e), "store %s is "
		    "not readable: %s", s->path, strerror(e));
	}
	if (ss->readonly)
		return 0;
	if (faccessat(AT_FDCWD, s->path, W_OK, AT_EACCESS) == -1) {
		e = errno;
		return store_fail(s, store_sqlite_access_code(e), "store %s is "
		    "read-only (%s): open it read-only or make it writable",
		    s->path, strerror(e));
	}
	dir = store_sqlite_dirname(s->path);
	if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) == -1) {
		e = errno;
		rc = store_fail(s, store_sqlite_access_code(e), "store %s is "
		    "read-only: its directory %s is not writable (%s), and "
		    "WAL needs to make %s-wal and %s-shm there", s->path, dir,
		    strerror(e), s->path, s->path);
	}
	free(dir);
	return rc;
}

/* store_sqlite_exec - run SQL once (opening and migrating only). */
static int
store_sqlite_exec(struct store_sqlite *ss, const char *op, const char *sql)
{
	int rc = sqlite3_exec(ss->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : store_sqlite_err(ss, op, rc);
}

/*
 * store_sqlite_pragma - run a pragma that returns one row; its first
 * column in *v_r (an integer) or txt (text, up to size bytes).
 */
static int
store_sqlite_pragma(struct store_sqlite *ss, const char *sql, int64_t *v_r,
    char *txt, size_t size)
{
	sqlite3_stmt *st;
	const unsigned char *t;
	int rc;

	rc = sqlite3_prepare_v2(ss->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return store_sqlite_err(ss, "open", rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (v_r != NULL)
			*v_r = sqlite3_column_int64(st, 0);
		if (txt != NULL) {
			t = sqlite3_column_text(st, 0);
			snprintf(txt, size, "%s", t != NULL ? (char *)t : "");
		}
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = store_fail(&ss->base, -EIO, "store %s: open: %s returned "
		    "nothing", ss->base.path, sql);
	} else {
		rc = store_sqlite_err(ss, "open", rc);
	}
	sqlite3_finalize(st);
	return rc;
}

/*
 * store_sqlite_version - what the file is: 0 (new: no mailroom marks and
 * no tables) or its schema version in *version_r, else an error.
 */
static int
store_sqlite_version(struct store_sqlite *ss, int64_t *version_r)
{
	const char *path = ss->base.path;
	int64_t app, version, nobjects;
	int rc;

	if ((rc = store_sqlite_pragma(ss, "PRAGMA application_id", &app,
	    NULL, 0)) != 0 ||
	    (rc = store_sqlite_pragma(ss, "PRAGMA user_version", &version,
	    NULL, 0)) != 0 ||
	    (rc = store_sqlite_pragma(ss, "SELECT count(*) FROM sqlite_master",
	    &nobjects, NULL, 0)) != 0)
		return rc;
	if (app == 0 && version == 0 && nobjects == 0) {
		*version_r = 0;
		return 0;
	}
	if (app != STORE_SQLITE_APPLICATION_ID || version <= 0)
		return store_fail(&ss->base, -EIO, "%s is not a mailroom store",
		    path);
	if (version > STORE_SQLITE_SCHEMA_VERSION)
		return store_fail(&ss->base, -EIO, "store %s was written by a "
		    "newer mailroom (schema %" PRId64 ", this build knows %d)",
		    path, version, STORE_SQLITE_SCHEMA_VERSION);
	*version_r = version;
	return 0;
}

/*
 * store_sqlite_migrate - bring the schema from version to this build's in
 * one transaction.  The version is read again under the write lock:
 * another process may have migrated the file while this one waited.
 */
static int
store_sqlite_migrate(struct store_sqlite *ss, int64_t version)
{
	char sql[128];
	int64_t v;
	int rc;

	if (version == STORE_SQLITE_SCHEMA_VERSION)
		return 0;
	if (ss->readonly)
		return store_fail(&ss->base, version == 0 ? -EIO : -EROFS,
		    version == 0 ? "%s is not a mailroom store (it is empty)" :
		    "store %s needs its schema migrated: open it once for "
		    "writing", ss->base.path);
	if ((rc = store_sqlite_exec(ss, "migrate", "BEGIN IMMEDIATE")) != 0)
		return rc;
	if ((rc = store_sqlite_version(ss, &version)) != 0)
		goto fail;
	for (v = version; v < STORE_SQLITE_SCHEMA_VERSION; v++)
		if ((rc = store_sqlite_exec(ss, "migrate",
		    store_sqlite_migrations[v])) != 0)
			goto fail;
	snprintf(sql, sizeof(sql), "PRAGMA application_id = %d; "
	    "PRAGMA user_version = %d", STORE_SQLITE_APPLICATION_ID,
	    STORE_SQLITE_SCHEMA_VERSION);
	if ((rc = store_sqlite_exec(ss, "migrate", sql)) != 0 ||
	    (rc = store_sqlite_exec(ss, "migrate", "COMMIT")) != 0)
		goto fail;
	return 0;
fail:
	if (!sqlite3_get_autocommit(ss->db))
		sqlite3_exec(ss->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/*
 * store_sqlite_setup - connection settings, before anything is written:
 * WAL (readers never wait for the writer; a monitor can read while a
 * sender snapshots), synchronous=FULL (see the top of this file), foreign
 * keys enforced (SQLite has them off by default, per connection).
 */
static int
store_sqlite_setup(struct store_sqlite *ss)
{
	char mode[16];
	int rc;

	if (!ss->readonly) {
		rc = store_sqlite_pragma(ss, "PRAGMA journal_mode = WAL", NULL,
		    mode, sizeof(mode));
		if (rc != 0)
			return rc;
		if (strcasecmp(mode, "wal") != 0)
			return store_fail(&ss->base, -EIO, "store %s: open: "
			    "cannot use WAL (journal mode stays %s)",
			    ss->base.path, mode);
	}
	return store_sqlite_exec(ss, "open", "PRAGMA synchronous = FULL; "
	    "PRAGMA foreign_keys = ON");
}

static int
store_sqlite_connect(struct store_sqlite *ss, int flags)
{
	int oflags, rc;

	oflags = SQLITE_OPEN_NOMUTEX;	/* one thread at a time (store.h) */
	if (ss->readonly)
		oflags |= SQLITE_OPEN_READONLY;
	else
		oflags |= SQLITE_OPEN_READWRITE |
		    (flags & STORE_CREATE ? SQLITE_OPEN_CREATE : 0);
	rc = sqlite3_open_v2(ss->base.path, &ss->db, oflags, NULL);
	if (ss->db != NULL)
		sqlite3_extended_result_codes(ss->db, 1);
	if (rc != SQLITE_OK)
		return store_sqlite_err(ss, "open", rc);
	sqlite3_busy_timeout(ss->db, ss->busy_ms);
	if (!ss->readonly && sqlite3_db_readonly(ss->db, "main") == 1)
		return store_fail(&ss->base, -EROFS, "store %s is read-only: "
		    "SQLite could open it for reading only", ss->base.path);
	return 0;
}

static int
store_sqlite_prepare(struct store_sqlite *ss)
{
	int i, rc;

	for (i = 0; i < STORE_SQLITE_NST; i++) {
		rc = sqlite3_prepare_v3(ss->db, store_sqlite_sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &ss->st[i], NULL);
		if (rc != SQLITE_OK)
			return store_sqlite_err(ss, "prepare", rc);
	}
	return 0;
}

struct store *
store_sqlite_open(const char *path, int flags, int busy_timeout_ms,
    struct mr_buf *err, int *code_r)
{
	struct store_sqlite *ss;
	int64_t version;
	int rc;

	ss = xcalloc(1, sizeof(*ss));
	store_base_init(&ss->base, &store_sqlite_ops, path);
	ss->busy_ms = busy_timeout_ms;
	ss->readonly = (flags & STORE_READONLY) != 0;
	/* Nothing is written before the file is known to be ours. */
	if ((rc = store_sqlite_check_file(ss, flags)) != 0 ||
	    (rc = store_sqlite_connect(ss, flags)) != 0 ||
	    (rc = store_sqlite_version(ss, &version)) != 0 ||
	    (rc = store_sqlite_setup(ss)) != 0 ||
	    (rc = store_sqlite_migrate(ss, version)) != 0 ||
	    (rc = store_sqlite_prepare(ss)) != 0) {
		store_open_fail(err, code_r, rc, "%s",
		    mr_buf_cstr(&ss->base.error));
		ss->base.ops->close(&ss->base);
		return NULL;
	}
	if (code_r != NULL)
		*code_r = 0;
	return &ss->base;
}

static void
store_sqlite_close(struct store *s)
{
	struct store_sqlite *ss = (struct store_sqlite *)s;
	int i;

	for (i = 0; i < STORE_SQLITE_NST; i++)
		sqlite3_finalize(ss->st[i]);
	/*
	 * Every statement is finalized, so the connection closes now (an
	 * open transaction is rolled back; the last connection checkpoints
	 * and removes the -wal and -shm files).
	 */
	if (ss->db != NULL)
		sqlite3_close_v2(ss->db);
	store_base_release(s);
	free(ss);
}

/* Transactions. */

static int
store_sqlite_begin(struct store *s)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	int rc;

	if (ss->user_txn && !sqlite3_get_autocommit(ss->db))
		return store_fail(s, -EIO, "store %s: begin: a transaction is "
		    "already open", s->path);
	rc = store_sqlite_run(ss, ss->st[ss->readonly ?
	    STORE_SQLITE_BEGIN_READ : STORE_SQLITE_BEGIN], "begin");
	ss->user_txn = rc == 0;
	return rc;
}

static int
store_sqlite_commit(struct store *s)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	int rc;

	if (!ss->user_txn)
		return store_fail(s, -EIO, "store %s: commit: no transaction "
		    "is open", s->path);
	ss->user_txn = false;
	if (sqlite3_get_autocommit(ss->db))
		return store_fail(s, -EIO, "store %s: commit: the transaction "
		    "was rolled back by an earlier error", s->path);
	rc = store_sqlite_run(ss, ss->st[STORE_SQLITE_COMMIT], "commit");
	/* A commit that failed is undone: no transaction stays open. */
	if (rc != 0 && !sqlite3_get_autocommit(ss->db))
		store_sqlite_quiet(ss->st[STORE_SQLITE_ROLLBACK]);
	return rc;
}

static int
store_sqlite_rollback(struct store *s)
{
	struct store_sqlite *ss = store_sqlite_enter(s);

	ss->user_txn = false;
	if (sqlite3_get_autocommit(ss->db))
		return 0;	/* nothing open, or rolled back already */
	return store_sqlite_run(ss, ss->st[STORE_SQLITE_ROLLBACK], "rollback");
}

/* Campaigns. */

static void
store_sqlite_bind_campaign(sqlite3_stmt *st, const struct store_campaign *c)
{
	const char *account;

	account = c->account != NULL && *c->account != '\0' ? c->account :
	    NULL;
	sqlite3_bind_int64(st, 1, c->id);
	store_sqlite_bind_str(st, 2, c->name);
	store_sqlite_bind_str(st, 3, c->template_path);
	store_sqlite_bind_str(st, 4, c->list_path);
	sqlite3_bind_text(st, 5, c->template_sha256,
	    (int)strnlen(c->template_sha256, 64), SQLITE_STATIC);
	sqlite3_bind_text(st, 6, c->list_sha256,
	    (int)strnlen(c->list_sha256, 64), SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, c->list_size);
	sqlite3_bind_int64(st, 8, c->list_mtime);
	store_sqlite_bind_str(st, 9, account);
	store_sqlite_bind_str(st, 10, c->options);
	sqlite3_bind_int64(st, 11, c->created_at);
	sqlite3_bind_int64(st, 12, c->start_at);
	sqlite3_bind_int64(st, 13, c->started_at);
	sqlite3_bind_int64(st, 14, c->finished_at);
	sqlite3_bind_int(st, 15, c->stage);
	sqlite3_bind_int(st, 16, c->state);
	sqlite3_bind_int64(st, 17, c->nrecipients);
	sqlite3_bind_int64(st, 18, c->chunk_size);
	sqlite3_bind_int64(st, 19, c->nchunks);
	sqlite3_bind_int64(st, 20, (int64_t)c->rows);
	sqlite3_bind_int64(st, 21, (int64_t)c->rejected);
	sqlite3_bind_int64(st, 22, (int64_t)c->duplicates);
	sqlite3_bind_int64(st, 23, (int64_t)c->delivered);
	sqlite3_bind_int64(st, 24, (int64_t)c->bounced);
	sqlite3_bind_int64(st, 25, (int64_t)c->deferrals);
	sqlite3_bind_int64(st, 26, (int64_t)c->inflight_at_crash);
	sqlite3_bind_int64(st, 27, c->generation);
	store_sqlite_bind_str(st, 28, c->owner);
	sqlite3_bind_int64(st, 29, c->lease_until);
	store_sqlite_bind_str(st, 30, c->summary);
}

static void
store_sqlite_col_hash(sqlite3_stmt *st, int i, char hash[65])
{
	const unsigned char *t = sqlite3_column_text(st, i);
	size_t n = t != NULL ? (size_t)sqlite3_column_bytes(st, i) : 0;

	if (n > 64)
		n = 64;
	if (n > 0)
		memcpy(hash, t, n);
	hash[n] = '\0';
}

/* store_sqlite_read_campaign - the current row into c (strings owned). */
static void
store_sqlite_read_campaign(sqlite3_stmt *st, struct store_campaign *c)
{
	memset(c, 0, sizeof(*c));
	c->id = sqlite3_column_int64(st, 0);
	c->name = store_sqlite_col_str(st, 1);
	c->template_path = store_sqlite_col_str(st, 2);
	c->list_path = store_sqlite_col_str(st, 3);
	store_sqlite_col_hash(st, 4, c->template_sha256);
	store_sqlite_col_hash(st, 5, c->list_sha256);
	c->list_size = sqlite3_column_int64(st, 6);
	c->list_mtime = sqlite3_column_int64(st, 7);
	c->account = store_sqlite_col_str(st, 8);
	c->options = store_sqlite_col_str(st, 9);
	c->created_at = sqlite3_column_int64(st, 10);
	c->start_at = sqlite3_column_int64(st, 11);
	c->started_at = sqlite3_column_int64(st, 12);
	c->finished_at = sqlite3_column_int64(st, 13);
	c->stage = sqlite3_column_int(st, 14);
	c->state = sqlite3_column_int(st, 15);
	c->nrecipients = (uint32_t)sqlite3_column_int64(st, 16);
	c->chunk_size = (uint32_t)sqlite3_column_int64(st, 17);
	c->nchunks = (uint32_t)sqlite3_column_int64(st, 18);
	c->rows = (uint64_t)sqlite3_column_int64(st, 19);
	c->rejected = (uint64_t)sqlite3_column_int64(st, 20);
	c->duplicates = (uint64_t)sqlite3_column_int64(st, 21);
	c->delivered = (uint64_t)sqlite3_column_int64(st, 22);
	c->bounced = (uint64_t)sqlite3_column_int64(st, 23);
	c->deferrals = (uint64_t)sqlite3_column_int64(st, 24);
	c->inflight_at_crash = (uint64_t)sqlite3_column_int64(st, 25);
	c->generation = sqlite3_column_int64(st, 26);
	c->owner = store_sqlite_col_str(st, 27);
	c->lease_until = sqlite3_column_int64(st, 28);
	c->summary = store_sqlite_col_str(st, 29);
}

static int
store_sqlite_campaign_insert(struct store *s, struct store_campaign *c)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_CAMP_INSERT];
	int rc;

	if (c->name == NULL || *c->name == '\0')
		return store_fail(s, -EINVAL, "store %s: campaign_insert: a "
		    "campaign needs a name", s->path);
	if (store_all_digits(c->name))
		return store_fail(s, -EINVAL, "store %s: campaign_insert: "
		    "campaign name %s is all digits, which reads as an id",
		    s->path, c->name);
	if ((rc = store_sqlite_check_state(s, "campaign_insert",
	    c->state)) != 0)
		return rc;
	store_sqlite_bind_campaign(st, c);
	rc = store_sqlite_run(ss, st, "campaign_insert");
	if (rc == -EEXIST)
		return store_fail(s, rc, "store %s: campaign_insert: a "
		    "campaign named %s exists", s->path, c->name);
	if (rc == 0)
		c->id = sqlite3_last_insert_rowid(ss->db);
	return rc;
}

static int
store_sqlite_campaign_get(struct store *s, const char *key,
    struct store_campaign *out)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st;
	long long id;
	int rc;

	memset(out, 0, sizeof(*out));
	if (store_all_digits(key)) {
		errno = 0;
		id = strtoll(key, NULL, 10);
		if (errno != 0)
			return store_fail(s, -ENOENT, "store %s: no campaign "
			    "%s", s->path, key);
		st = ss->st[STORE_SQLITE_CAMP_BY_ID];
		sqlite3_bind_int64(st, 1, id);
	} else {
		st = ss->st[STORE_SQLITE_CAMP_BY_NAME];
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		store_sqlite_read_campaign(st, out);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = store_fail(s, -ENOENT, "store %s: no campaign %s",
		    s->path, key);
	} else {
		rc = store_sqlite_err(ss, "campaign_get", rc);
	}
	store_sqlite_reset(st);
	return rc;
}

/*
 * store_sqlite_rows - step st to its end, handing each row to row(st,
 * arg); a non-zero return stops there and is returned.  0, or the error
 * of the step (named by what).
 */
static int
store_sqlite_rows(struct store_sqlite *ss, sqlite3_stmt *st, const char *what,
    int (*row)(sqlite3_stmt *, void *), void *arg)
{
	int rc, cbrc = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if ((cbrc = row(st, arg)) != 0)
			break;
	if (cbrc != 0)
		rc = cbrc;
	else if (rc == SQLITE_DONE)
		rc = 0;
	else
		rc = store_sqlite_err(ss, what, rc);
	store_sqlite_reset(st);
	return rc;
}

struct store_sqlite_list {
	store_campaign_cb	*camp;
	store_account_cb	*acct;
	void			*arg;
};

static int
store_sqlite_campaign_row(sqlite3_stmt *st, void *arg)
{
	struct store_sqlite_list *l = arg;
	struct store_campaign c;
	int rc;

	store_sqlite_read_campaign(st, &c);
	rc = l->camp(l->arg, &c);
	store_campaign_release(&c);
	return rc;
}

/*
 * store_sqlite_campaign_list - every campaign.  The campaign that cb gets
 * is borrowed for the call.  cb must not list campaigns again (the
 * statement is in use), and should collect what it wants to change and
 * change it after the listing.
 */
static int
store_sqlite_campaign_list(struct store *s, store_campaign_cb *cb,
    void *arg)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	struct store_sqlite_list l = { .camp = cb, .arg = arg };

	return store_sqlite_rows(ss, ss->st[STORE_SQLITE_CAMP_LIST],
	    "campaign_list", store_sqlite_campaign_row, &l);
}

static int
store_sqlite_campaign_update(struct store *s, const struct store_campaign *c)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_CAMP_UPDATE];
	int rc;

	if ((rc = store_sqlite_check_state(s, "campaign_update",
	    c->state)) != 0)
		return rc;
	store_sqlite_bind_campaign(st, c);
	if ((rc = store_sqlite_run(ss, st, "campaign_update")) != 0)
		return rc;
	if (sqlite3_changes(ss->db) == 0)
		return store_fail(s, -ENOENT, "store %s: campaign_update: no "
		    "campaign %" PRId64, s->path, c->id);
	return 0;
}

/*
 * store_sqlite_holder - who holds campaign id: -ENOENT when there is no
 * such campaign, else 0 with the owner (owned, or NULL) in *owner_r.
 */
static int
store_sqlite_holder(struct store_sqlite *ss, const char *op, int64_t id,
    char **owner_r, int64_t *until_r)
{
	sqlite3_stmt *st = ss->st[STORE_SQLITE_CAMP_HOLDER];
	int rc;

	*owner_r = NULL;
	*until_r = 0;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*owner_r = store_sqlite_col_str(st, 0);
		*until_r = sqlite3_column_int64(st, 1);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = store_fail(&ss->base, -ENOENT, "store %s: %s: no "
		    "campaign %" PRId64, ss->base.path, op, id);
	} else {
		rc = store_sqlite_err(ss, op, rc);
	}
	store_sqlite_reset(st);
	return rc;
}

static int
store_sqlite_campaign_claim(struct store *s, int64_t id, const char *owner,
    int64_t lease_until, int64_t now, char **holder_r)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_CAMP_CLAIM];
	enum store_sqlite_txn txn;
	char *holder = NULL;
	int64_t until;
	int rc;

	if (holder_r != NULL)
		*holder_r = NULL;
	if (owner == NULL || *owner == '\0')
		return store_fail(s, -EINVAL, "store %s: campaign_claim: no "
		    "owner named", s->path);
	if ((rc = store_sqlite_op_begin(ss, "campaign_claim", true, &txn)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, lease_until);
	sqlite3_bind_int64(st, 4, now);
	sqlite3_bind_int(st, 5, STORE_STATE_RUNNING);
	rc = store_sqlite_run(ss, st, "campaign_claim");
	if (rc == 0 && sqlite3_changes(ss->db) == 0) {
		rc = store_sqlite_holder(ss, "campaign_claim", id, &holder,
		    &until);
		if (rc == 0)
			rc = store_fail(s, -EBUSY, "store %s: campaign %" PRId64
			    " is leased to %s until %" PRId64, s->path, id,
			    holder != NULL ? holder : "(nobody)", until);
	}
	rc = store_sqlite_op_end(ss, "campaign_claim", txn, rc);
	if (rc == -EBUSY && holder_r != NULL)
		*holder_r = holder;
	else
		free(holder);
	return rc;
}

static int
store_sqlite_campaign_release(struct store *s, int64_t id, const char *owner,
    int state)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_CAMP_RELEASE];
	char *holder;
	int64_t until;
	int rc;

	if ((rc = store_sqlite_check_state(s, "campaign_release",
	    state)) != 0)
		return rc;
	if (owner == NULL)
		owner = "";
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, state);
	if ((rc = store_sqlite_run(ss, st, "campaign_release")) != 0)
		return rc;
	if (sqlite3_changes(ss->db) == 1)
		return 0;
	rc = store_sqlite_holder(ss, "campaign_release", id, &holder, &until);
	if (rc == 0)
		rc = store_fail(s, -EBUSY, "store %s: campaign_release: "
		    "campaign %" PRId64 " is not leased to %s (holder: %s)",
		    s->path, id, owner, holder != NULL ? holder : "nobody");
	free(holder);
	return rc;
}

static int
store_sqlite_campaign_due(struct store *s, int64_t now, int64_t *ids,
    size_t max, size_t *n_r)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_CAMP_DUE];
	size_t n = 0;
	int rc;

	*n_r = 0;
	if (max == 0)
		return 0;
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int(st, 2, STORE_STATE_SCHEDULED);
	sqlite3_bind_int(st, 3, STORE_STATE_RUNNING);
	sqlite3_bind_int64(st, 4, max > INT64_MAX ? INT64_MAX : (int64_t)max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < max)
		ids[n++] = sqlite3_column_int64(st, 0);
	rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 :
	    store_sqlite_err(ss, "campaign_due", rc);
	store_sqlite_reset(st);
	*n_r = n;
	return rc;
}

/* Chunks. */

static int
store_sqlite_chunks_init(struct store *s, int64_t campaign,
    uint32_t nchunks, uint32_t chunk_size, uint32_t nrecipients)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_CHUNK_INSERT];
	enum store_sqlite_txn txn;
	uint32_t want, i;
	char *holder;
	int64_t until;
	int rc;

	if (chunk_size == 0 || chunk_size % 8 != 0)
		return store_fail(s, -EINVAL, "store %s: chunks_init: chunk "
		    "size %" PRIu32 " is not a positive multiple of 8",
		    s->path, chunk_size);
	want = nrecipients == 0 ? 0 : (nrecipients - 1) / chunk_size + 1;
	if (nchunks != want)
		return store_fail(s, -EINVAL, "store %s: chunks_init: %" PRIu32
		    " recipients make %" PRIu32 " chunks of %" PRIu32 ", not %"
		    PRIu32, s->path, nrecipients, want, chunk_size, nchunks);
	if ((rc = store_sqlite_op_begin(ss, "chunks_init", true, &txn)) != 0)
		return rc;
	rc = store_sqlite_holder(ss, "chunks_init", campaign, &holder, &until);
	free(holder);
	if (rc == 0) {
		sqlite3_bind_int64(ss->st[STORE_SQLITE_CHUNK_CLEAR], 1,
		    campaign);
		rc = store_sqlite_run(ss, ss->st[STORE_SQLITE_CHUNK_CLEAR],
		    "chunks_init");
	}
	for (i = 0; rc == 0 && i < nchunks; i++) {
		sqlite3_bind_int64(st, 1, campaign);
		sqlite3_bind_int64(st, 2, i);
		sqlite3_bind_int64(st, 3, chunk_size / 8);
		rc = store_sqlite_run(ss, st, "chunks_init");
	}
	return store_sqlite_op_end(ss, "chunks_init", txn, rc);
}

static int
store_sqlite_chunks_load(struct store *s, int64_t campaign, uint8_t *bits,
    size_t nbytes, store_visits_cb *cb, void *arg)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_CHUNK_LOAD];
	const void *blob;
	size_t off = 0, len;
	int64_t idx = 0;
	int rc, cbrc;

	sqlite3_bind_int64(st, 1, campaign);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		blob = sqlite3_column_blob(st, 1);
		len = (size_t)sqlite3_column_bytes(st, 1);
		if (sqlite3_column_int64(st, 0) != idx) {
			rc = store_fail(s, -EIO, "store %s: chunks_load: "
			    "campaign %" PRId64 " lacks chunk %" PRId64,
			    s->path, campaign, idx);
			goto out;
		}
		if (len > nbytes - off) {
			rc = store_fail(s, -EIO, "store %s: chunks_load: the "
			    "chunks of campaign %" PRId64 " hold more than "
			    "%zu bytes", s->path, campaign, nbytes);
			goto out;
		}
		if (len > 0)
			memcpy(bits + off, blob, len);
		off += len;
		blob = sqlite3_column_blob(st, 2);
		len = (size_t)sqlite3_column_bytes(st, 2);
		if (cb != NULL && len > 0 &&
		    (cbrc = cb(arg, (uint32_t)idx, blob, len)) != 0) {
			rc = cbrc;
			goto out;
		}
		idx++;
	}
	if (rc != SQLITE_DONE) {
		rc = store_sqlite_err(ss, "chunks_load", rc);
		goto out;
	}
	rc = 0;
	if (idx == 0 && nbytes > 0)
		rc = store_fail(s, -ENOENT, "store %s: chunks_load: campaign %"
		    PRId64 " has no chunks", s->path, campaign);
	else if (off != nbytes)
		rc = store_fail(s, -EIO, "store %s: chunks_load: the chunks "
		    "of campaign %" PRId64 " hold %zu bytes, not %zu", s->path,
		    campaign, off, nbytes);
out:
	store_sqlite_reset(st);
	return rc;
}

static int
store_sqlite_chunk_save(struct store *s, int64_t campaign, uint32_t chunk,
    const uint8_t *bits, size_t nbytes, uint32_t ndone,
    const uint8_t *visits, size_t nvisits)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_CHUNK_SAVE];
	int64_t len;
	int rc;

	if (nbytes > INT32_MAX || nvisits > INT32_MAX)
		return store_fail(s, -EINVAL, "store %s: chunk_save: %zu "
		    "bytes is too large a chunk", s->path, nbytes > nvisits ?
		    nbytes : nvisits);
	sqlite3_bind_int64(st, 1, campaign);
	sqlite3_bind_int64(st, 2, chunk);
	sqlite3_bind_int64(st, 3, (int64_t)nbytes);
	sqlite3_bind_blob(st, 4, bits, (int)nbytes, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, ndone);
	if (visits != NULL && nvisits > 0)
		sqlite3_bind_blob(st, 6, visits, (int)nvisits, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 6);
	if ((rc = store_sqlite_run(ss, st, "chunk_save")) != 0)
		return rc;
	if (sqlite3_changes(ss->db) == 1)
		return 0;

	/* Nothing changed: say why. */
	st = ss->st[STORE_SQLITE_CHUNK_LEN];
	sqlite3_bind_int64(st, 1, campaign);
	sqlite3_bind_int64(st, 2, chunk);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		len = sqlite3_column_int64(st, 0);
		rc = store_fail(s, -EIO, "store %s: chunk_save: chunk %"
		    PRIu32 " of campaign %" PRId64 " holds %" PRId64 " bytes, "
		    "not %zu", s->path, chunk, campaign, len, nbytes);
	} else if (rc == SQLITE_DONE) {
		rc = store_fail(s, -ENOENT, "store %s: chunk_save: campaign %"
		    PRId64 " has no chunk %" PRIu32, s->path, campaign, chunk);
	} else {
		rc = store_sqlite_err(ss, "chunk_save", rc);
	}
	store_sqlite_reset(st);
	return rc;
}

/* Journal marks. */

static int
store_sqlite_marks_replace(struct store *s, int64_t campaign,
    const struct store_mark *v, size_t n)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_MARK_INSERT];
	enum store_sqlite_txn txn;
	size_t i;
	int rc;

	if ((rc = store_sqlite_op_begin(ss, "marks_replace", true, &txn)) != 0)
		return rc;
	sqlite3_bind_int64(ss->st[STORE_SQLITE_MARK_CLEAR], 1, campaign);
	rc = store_sqlite_run(ss, ss->st[STORE_SQLITE_MARK_CLEAR],
	    "marks_replace");
	for (i = 0; rc == 0 && i < n; i++) {
		sqlite3_bind_int64(st, 1, campaign);
		sqlite3_bind_int64(st, 2, v[i].generation);
		sqlite3_bind_int64(st, 3, v[i].writer);
		sqlite3_bind_int64(st, 4, (int64_t)v[i].seq);
		rc = store_sqlite_run(ss, st, "marks_replace");
	}
	return store_sqlite_op_end(ss, "marks_replace", txn, rc);
}

static int
store_sqlite_marks_load(struct store *s, int64_t campaign,
    struct store_mark *v, size_t max, size_t *n_r)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_MARK_LOAD];
	size_t n = 0;
	int rc;

	*n_r = 0;
	sqlite3_bind_int64(st, 1, campaign);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == max) {
			rc = store_fail(s, -ENOBUFS, "store %s: marks_load: "
			    "campaign %" PRId64 " has more than %zu marks",
			    s->path, campaign, max);
			goto out;
		}
		v[n].generation = sqlite3_column_int64(st, 0);
		v[n].writer = (uint32_t)sqlite3_column_int64(st, 1);
		v[n].seq = (uint64_t)sqlite3_column_int64(st, 2);
		n++;
	}
	rc = rc == SQLITE_DONE ? 0 : store_sqlite_err(ss, "marks_load", rc);
out:
	store_sqlite_reset(st);
	*n_r = n;
	return rc;
}

/* Accounts. */

static void
store_sqlite_read_account(sqlite3_stmt *st, struct store_account *a)
{
	a->name = store_sqlite_col_str(st, 0);
	a->allowance = (uint64_t)sqlite3_column_int64(st, 1);
	a->period = sqlite3_column_int64(st, 2);
	a->warn_pct = (unsigned)sqlite3_column_int(st, 3);
	a->verifier = store_sqlite_col_str(st, 4);
}

static int
store_sqlite_account_put(struct store *s, const struct store_account *a)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_ACCT_PUT];

	if (a->name == NULL || *a->name == '\0')
		return store_fail(s, -EINVAL, "store %s: account_put: an "
		    "account needs a name", s->path);
	if (a->period <= 0 || a->warn_pct < 1 || a->warn_pct > 100)
		return store_fail(s, -EINVAL, "store %s: account_put: account "
		    "%s: the period must be positive (it is %" PRId64 ") and "
		    "the warning share 1..100 (it is %u)", s->path, a->name,
		    a->period, a->warn_pct);
	/* Never a password in clear: a verifier starts with its scheme. */
	if (a->verifier != NULL && a->verifier[0] != '$')
		return store_fail(s, -EINVAL, "store %s: account_put: account "
		    "%s: the password must be given as a verifier", s->path,
		    a->name);
	sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)a->allowance);
	sqlite3_bind_int64(st, 3, a->period);
	sqlite3_bind_int(st, 4, (int)a->warn_pct);
	store_sqlite_bind_str(st, 5, a->verifier);
	return store_sqlite_run(ss, st, "account_put");
}

static int
store_sqlite_account_get(struct store *s, const char *name,
    struct store_account *out)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_ACCT_GET];
	int rc;

	memset(out, 0, sizeof(*out));
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		store_sqlite_read_account(st, out);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = store_fail(s, -ENOENT, "store %s: no account %s",
		    s->path, name);
	} else {
		rc = store_sqlite_err(ss, "account_get", rc);
	}
	store_sqlite_reset(st);
	return rc;
}

static int
store_sqlite_account_row(sqlite3_stmt *st, void *arg)
{
	struct store_sqlite_list *l = arg;
	struct store_account a;
	int rc;

	store_sqlite_read_account(st, &a);
	rc = l->acct(l->arg, &a);
	store_account_release(&a);
	return rc;
}

static int
store_sqlite_account_list(struct store *s, store_account_cb *cb, void *arg)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	struct store_sqlite_list l = { .acct = cb, .arg = arg };

	return store_sqlite_rows(ss, ss->st[STORE_SQLITE_ACCT_LIST],
	    "account_list", store_sqlite_account_row, &l);
}

static int
store_sqlite_account_remove(struct store *s, const char *name)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_ACCT_REMOVE];
	int rc;

	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = store_sqlite_run(ss, st, "account_remove");
	if (rc == -ENOENT)	/* the foreign key of a reservation */
		return store_fail(s, -EBUSY, "store %s: account_remove: "
		    "campaigns hold reservations of account %s", s->path,
		    name);
	if (rc == 0 && sqlite3_changes(ss->db) == 0)
		rc = store_fail(s, -ENOENT, "store %s: no account %s",
		    s->path, name);
	return rc;
}

/* Quotas. */

/* store_sqlite_period_start - the fixed window holding now (UTC). */
static int64_t
store_sqlite_period_start(int64_t now, int64_t period)
{
	int64_t r = now % period;

	return now - (r < 0 ? r + period : r);
}

/*
 * store_sqlite_quota - the account's numbers in the period holding now;
 * reserved leaves out campaign's own reservation (campaign 0: none).
 */
static int
store_sqlite_quota(struct store_sqlite *ss, const char *op,
    const char *account, int64_t campaign, int64_t now,
    struct store_quota *q)
{
	struct store *s = &ss->base;
	sqlite3_stmt *st;
	struct store_account a;
	int rc;

	memset(q, 0, sizeof(*q));
	st = ss->st[STORE_SQLITE_ACCT_GET];
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		store_sqlite_read_account(st, &a);
		q->allowance = a.allowance;
		q->period = a.period;
		q->warn_pct = a.warn_pct;
		store_account_release(&a);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = store_fail(s, -ENOENT, "store %s: %s: no account %s",
		    s->path, op, account);
	} else {
		rc = store_sqlite_err(ss, op, rc);
	}
	store_sqlite_reset(st);
	if (rc != 0)
		return rc;
	if (q->period <= 0)
		return store_fail(s, -EIO, "store %s: %s: account %s has "
		    "period %" PRId64, s->path, op, account, q->period);
	q->period_start = store_sqlite_period_start(now, q->period);

	st = ss->st[STORE_SQLITE_QUOTA_USED];
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, q->period_start);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		q->used = (uint64_t)sqlite3_column_int64(st, 0);
	rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 :
	    store_sqlite_err(ss, op, rc);
	store_sqlite_reset(st);
	if (rc != 0)
		return rc;

	st = ss->st[STORE_SQLITE_QUOTA_RESERVED];
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, q->period_start);
	if (campaign != 0)
		sqlite3_bind_int64(st, 3, campaign);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		q->reserved = (uint64_t)sqlite3_column_int64(st, 0);
	rc = rc == SQLITE_ROW ? 0 : store_sqlite_err(ss, op, rc);
	store_sqlite_reset(st);
	return rc;
}

/* store_sqlite_quota_fits - used + reserved + need <= allowance. */
static bool
store_sqlite_quota_fits(const struct store_quota *q)
{
	if (q->used > q->allowance)
		return false;
	if (q->reserved > q->allowance - q->used)
		return false;
	return q->need <= q->allowance - q->used - q->reserved;
}

/*
 * In *q_r, reserved is what the account's other campaigns hold, so that
 * used + reserved + need is what the admission asks the allowance for.
 */
static int
store_sqlite_quota_admit(struct store *s, const char *account,
    int64_t campaign, uint64_t need, int64_t now, struct store_quota *q_r)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_QUOTA_RESERVE];
	enum store_sqlite_txn txn;
	struct store_quota q;
	int rc;

	memset(q_r, 0, sizeof(*q_r));
	if (need > INT64_MAX)
		return store_fail(s, -EINVAL, "store %s: quota_admit: %" PRIu64
		    " messages is out of range", s->path, need);
	if ((rc = store_sqlite_op_begin(ss, "quota_admit", true, &txn)) != 0)
		return rc;
	rc = store_sqlite_quota(ss, "quota_admit", account, campaign, now,
	    &q);
	if (rc == 0) {
		q.need = need;
		*q_r = q;
		if (!store_sqlite_quota_fits(&q))
			rc = store_fail(s, -EDQUOT, "store %s: account %s: "
			    "quota refused: used %" PRIu64 " + reserved %"
			    PRIu64 " + need %" PRIu64 " > allowance %" PRIu64
			    " for the period of %" PRId64 " s from %" PRId64,
			    s->path, account, q.used, q.reserved, q.need,
			    q.allowance, q.period, q.period_start);
	}
	if (rc == 0) {
		sqlite3_bind_int64(st, 1, campaign);
		sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, q.period_start);
		sqlite3_bind_int64(st, 4, (int64_t)need);
		rc = store_sqlite_run(ss, st, "quota_admit");
		if (rc == -ENOENT)	/* the campaign's foreign key */
			rc = store_fail(s, rc, "store %s: quota_admit: no "
			    "campaign %" PRId64, s->path, campaign);
	}
	return store_sqlite_op_end(ss, "quota_admit", txn, rc);
}

static int
store_sqlite_quota_consume(struct store *s, int64_t campaign, uint64_t n)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_QUOTA_RES_GET];
	enum store_sqlite_txn txn;
	char *account = NULL;
	int64_t period_start = 0;
	uint64_t reserved = 0, take;
	int rc;

	if (n == 0)
		return 0;
	if (n > INT64_MAX)
		return store_fail(s, -EINVAL, "store %s: quota_consume: %"
		    PRIu64 " messages is out of range", s->path, n);
	if ((rc = store_sqlite_op_begin(ss, "quota_consume", true, &txn)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, campaign);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		account = store_sqlite_col_str(st, 0);
		period_start = sqlite3_column_int64(st, 1);
		reserved = (uint64_t)sqlite3_column_int64(st, 2);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = store_fail(s, -ENOENT, "store %s: quota_consume: "
		    "campaign %" PRId64 " holds no quota reservation", s->path,
		    campaign);
	} else {
		rc = store_sqlite_err(ss, "quota_consume", rc);
	}
	store_sqlite_reset(st);

	/* Past the reservation, consumption still counts in used. */
	take = n < reserved ? n : reserved;
	if (rc == 0 && take > 0) {
		st = ss->st[STORE_SQLITE_QUOTA_RES_TAKE];
		sqlite3_bind_int64(st, 1, campaign);
		sqlite3_bind_int64(st, 2, (int64_t)take);
		rc = store_sqlite_run(ss, st, "quota_consume");
	}
	if (rc == 0) {
		st = ss->st[STORE_SQLITE_QUOTA_USE];
		sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, period_start);
		sqlite3_bind_int64(st, 3, (int64_t)n);
		rc = store_sqlite_run(ss, st, "quota_consume");
	}
	rc = store_sqlite_op_end(ss, "quota_consume", txn, rc);
	free(account);
	return rc;
}

static int
store_sqlite_quota_release(struct store *s, int64_t campaign)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_QUOTA_RELEASE];

	sqlite3_bind_int64(st, 1, campaign);
	return store_sqlite_run(ss, st, "quota_release");
}

static int
store_sqlite_quota_get(struct store *s, const char *account, int64_t now,
    struct store_quota *q_r)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	enum store_sqlite_txn txn;
	int rc;

	/* One read transaction: the three numbers are of one moment. */
	if ((rc = store_sqlite_op_begin(ss, "quota_get", false, &txn)) != 0)
		return rc;
	rc = store_sqlite_quota(ss, "quota_get", account, 0, now, q_r);
	return store_sqlite_op_end(ss, "quota_get", txn, rc);
}

/* The registry. */

/* store_sqlite_reg_name - a user name must be non-empty text. */
static int
store_sqlite_reg_name(struct store *s, const char *op, const char *name)
{
	if (name == NULL || *name == '\0')
		return store_fail(s, -EINVAL, "store %s: %s: no user name "
		    "given", s->path, op);
	return 0;
}

static void
store_sqlite_read_reg_user(sqlite3_stmt *st, struct store_reg_user *u)
{
	u->name = store_sqlite_col_str(st, 0);
	u->verifier = store_sqlite_col_str(st, 1);
	u->apop = store_sqlite_col_str(st, 2);
}

static void
store_sqlite_read_reg_account(sqlite3_stmt *st, struct store_reg_account *a)
{
	a->id = sqlite3_column_int64(st, 0);
	a->user = store_sqlite_col_str(st, 1);
	a->host = store_sqlite_col_str(st, 2);
	a->port = (unsigned)sqlite3_column_int(st, 3);
	a->tls = sqlite3_column_int(st, 4);
	a->login = store_sqlite_col_str(st, 5);
	a->secret = store_sqlite_col_str(st, 6);
}

/* store_sqlite_check_reg_account - the fields the schema checks, first. */
static int
store_sqlite_check_reg_account(struct store *s, const char *op,
    const struct store_reg_account *a)
{
	if (a->host == NULL || *a->host == '\0' || a->login == NULL ||
	    *a->login == '\0')
		return store_fail(s, -EINVAL, "store %s: %s: an account needs "
		    "a host and a login", s->path, op);
	if (a->port < 1 || a->port > 65535)
		return store_fail(s, -EINVAL, "store %s: %s: port %u is not "
		    "1..65535", s->path, op, a->port);
	if (a->tls < 0 || a->tls > 2)
		return store_fail(s, -EINVAL, "store %s: %s: no TLS mode %d",
		    s->path, op, a->tls);
	return 0;
}

static int
store_sqlite_reg_user_add(struct store *s, const struct store_reg_user *u)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_REG_USER_ADD];
	int rc;

	if ((rc = store_sqlite_reg_name(s, "reg_user_add", u->name)) != 0)
		return rc;
	if (u->verifier == NULL || *u->verifier == '\0')
		return store_fail(s, -EINVAL, "store %s: reg_user_add: user %s "
		    "needs a verifier", s->path, u->name);
	sqlite3_bind_text(st, 1, u->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, u->verifier, -1, SQLITE_STATIC);
	store_sqlite_bind_str(st, 3, u->apop);
	rc = store_sqlite_run(ss, st, "reg_user_add");
	if (rc == -EEXIST)
		return store_fail(s, rc, "store %s: user %s exists already",
		    s->path, u->name);
	return rc;
}

static int
store_sqlite_reg_user_get(struct store *s, const char *name,
    struct store_reg_user *out)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_REG_USER_GET];
	int rc;

	memset(out, 0, sizeof(*out));
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		store_sqlite_read_reg_user(st, out);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = store_fail(s, -ENOENT, "store %s: no user %s", s->path,
		    name);
	} else {
		rc = store_sqlite_err(ss, "reg_user_get", rc);
	}
	store_sqlite_reset(st);
	return rc;
}

static int
store_sqlite_reg_user_update(struct store *s, const struct store_reg_user *u)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_REG_USER_UPDATE];
	int rc;

	if (u->verifier == NULL || *u->verifier == '\0')
		return store_fail(s, -EINVAL, "store %s: reg_user_update: "
		    "user %s needs a verifier", s->path, u->name);
	sqlite3_bind_text(st, 1, u->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, u->verifier, -1, SQLITE_STATIC);
	store_sqlite_bind_str(st, 3, u->apop);
	if ((rc = store_sqlite_run(ss, st, "reg_user_update")) != 0)
		return rc;
	if (sqlite3_changes(ss->db) == 0)
		return store_fail(s, -ENOENT, "store %s: no user %s", s->path,
		    u->name);
	return 0;
}

static int
store_sqlite_reg_user_remove(struct store *s, const char *name)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_REG_USER_REMOVE];
	int rc;

	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if ((rc = store_sqlite_run(ss, st, "reg_user_remove")) != 0)
		return rc;
	if (sqlite3_changes(ss->db) == 0)
		return store_fail(s, -ENOENT, "store %s: no user %s", s->path,
		    name);
	return 0;
}

struct store_sqlite_reg_list {
	store_reg_user_cb	*user;
	store_reg_account_cb	*acct;
	void			*arg;
};

static int
store_sqlite_reg_user_row(sqlite3_stmt *st, void *arg)
{
	struct store_sqlite_reg_list *l = arg;
	struct store_reg_user u;
	int rc;

	store_sqlite_read_reg_user(st, &u);
	rc = l->user(l->arg, &u);
	store_reg_user_release(&u);
	return rc;
}

static int
store_sqlite_reg_user_list(struct store *s, store_reg_user_cb *cb, void *arg)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	struct store_sqlite_reg_list l = { .user = cb, .arg = arg };

	return store_sqlite_rows(ss, ss->st[STORE_SQLITE_REG_USER_LIST],
	    "reg_user_list", store_sqlite_reg_user_row, &l);
}

static int
store_sqlite_reg_account_add(struct store *s, struct store_reg_account *a)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_REG_ACCT_ADD];
	int rc;

	if ((rc = store_sqlite_reg_name(s, "reg_account_add", a->user)) != 0 ||
	    (rc = store_sqlite_check_reg_account(s, "reg_account_add",
	    a)) != 0)
		return rc;
	sqlite3_bind_text(st, 2, a->user, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->host, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, (int)a->port);
	sqlite3_bind_int(st, 5, a->tls);
	sqlite3_bind_text(st, 6, a->login, -1, SQLITE_STATIC);
	store_sqlite_bind_str(st, 7, a->secret);
	rc = store_sqlite_run(ss, st, "reg_account_add");
	if (rc == -ENOENT)	/* the foreign key: no such user */
		return store_fail(s, rc, "store %s: no user %s", s->path,
		    a->user);
	if (rc == 0)
		a->id = sqlite3_last_insert_rowid(ss->db);
	return rc;
}

static int
store_sqlite_reg_account_get(struct store *s, int64_t id,
    struct store_reg_account *out)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_REG_ACCT_GET];
	int rc;

	memset(out, 0, sizeof(*out));
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		store_sqlite_read_reg_account(st, out);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = store_fail(s, -ENOENT, "store %s: no account %" PRId64,
		    s->path, id);
	} else {
		rc = store_sqlite_err(ss, "reg_account_get", rc);
	}
	store_sqlite_reset(st);
	return rc;
}

static int
store_sqlite_reg_account_update(struct store *s,
    const struct store_reg_account *a)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_REG_ACCT_UPDATE];
	int rc;

	if ((rc = store_sqlite_check_reg_account(s, "reg_account_update",
	    a)) != 0)
		return rc;
	if (a->secret == NULL)
		return store_fail(s, -EINVAL, "store %s: reg_account_update: "
		    "account %" PRId64 " needs a secret", s->path, a->id);
	sqlite3_bind_int64(st, 1, a->id);
	sqlite3_bind_text(st, 3, a->host, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, (int)a->port);
	sqlite3_bind_int(st, 5, a->tls);
	sqlite3_bind_text(st, 6, a->login, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, a->secret, -1, SQLITE_STATIC);
	if ((rc = store_sqlite_run(ss, st, "reg_account_update")) != 0)
		return rc;
	if (sqlite3_changes(ss->db) == 0)
		return store_fail(s, -ENOENT, "store %s: no account %" PRId64,
		    s->path, a->id);
	return 0;
}

static int
store_sqlite_reg_account_remove(struct store *s, int64_t id)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_REG_ACCT_REMOVE];
	int rc;

	sqlite3_bind_int64(st, 1, id);
	if ((rc = store_sqlite_run(ss, st, "reg_account_remove")) != 0)
		return rc;
	if (sqlite3_changes(ss->db) == 0)
		return store_fail(s, -ENOENT, "store %s: no account %" PRId64,
		    s->path, id);
	return 0;
}

static int
store_sqlite_reg_account_row(sqlite3_stmt *st, void *arg)
{
	struct store_sqlite_reg_list *l = arg;
	struct store_reg_account a;
	int rc;

	store_sqlite_read_reg_account(st, &a);
	rc = l->acct(l->arg, &a);
	store_reg_account_release(&a);
	return rc;
}

static int
store_sqlite_reg_account_list(struct store *s, const char *user,
    store_reg_account_cb *cb, void *arg)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	struct store_sqlite_reg_list l = { .acct = cb, .arg = arg };
	sqlite3_stmt *st;

	if (user != NULL) {
		st = ss->st[STORE_SQLITE_REG_ACCT_OF];
		sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
	} else {
		st = ss->st[STORE_SQLITE_REG_ACCT_LIST];
	}
	return store_sqlite_rows(ss, st, "reg_account_list",
	    store_sqlite_reg_account_row, &l);
}

static int
store_sqlite_reg_meta_get(struct store *s, const char *name, char **value_r)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_REG_META_GET];
	int rc;

	*value_r = NULL;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*value_r = store_sqlite_col_str(st, 0);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = store_fail(s, -ENOENT, "store %s: no registry value %s",
		    s->path, name);
	} else {
		rc = store_sqlite_err(ss, "reg_meta_get", rc);
	}
	store_sqlite_reset(st);
	return rc;
}

static int
store_sqlite_reg_meta_put(struct store *s, const char *name,
    const char *value)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st = ss->st[STORE_SQLITE_REG_META_PUT];

	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	return store_sqlite_run(ss, st, "reg_meta_put");
}

int
store_sqlite_test_sql(struct store *s, const char *sql, char *buf,
    size_t size)
{
	struct store_sqlite *ss = store_sqlite_enter(s);
	sqlite3_stmt *st;
	const unsigned char *t;
	int rc;

	MR_ASSERT(s->ops == &store_sqlite_ops);
	if (size > 0)
		buf[0] = '\0';
	rc = sqlite3_prepare_v2(ss->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return store_sqlite_err(ss, "test_sql", rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && size > 0) {
		t = sqlite3_column_text(st, 0);
		snprintf(buf, size, "%s", t != NULL ? (const char *)t : "");
	}
	rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 :
	    store_sqlite_err(ss, "test_sql", rc);
	sqlite3_finalize(st);
	return rc;
}

int
store_sqlite_test_create(const char *path, int version, const char *sql,
    struct mr_buf *err)
{
	sqlite3 *db = NULL;
	char pragmas[128];
	int i, rc;

	if (version < 1 || version > STORE_SQLITE_SCHEMA_VERSION) {
		mr_buf_printf(err, "schema %d is not one this build knows",
		    version);
		return -EINVAL;
	}
	if (access(path, F_OK) == 0) {
		mr_buf_printf(err, "%s exists", path);
		return -EEXIST;
	}
	snprintf(pragmas, sizeof(pragmas), "PRAGMA application_id = %d; "
	    "PRAGMA user_version = %d", STORE_SQLITE_APPLICATION_ID, version);
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL; "
		    "PRAGMA foreign_keys = ON; BEGIN IMMEDIATE", NULL, NULL,
		    NULL);
	for (i = 0; rc == SQLITE_OK && i < version; i++)
		rc = sqlite3_exec(db, store_sqlite_migrations[i], NULL, NULL,
		    NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, pragmas, NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc == SQLITE_OK && sql != NULL)
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		mr_buf_printf(err, "%s: schema %d: %s", path, version,
		    db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	sqlite3_close_v2(db);
	return rc == SQLITE_OK ? 0 : -EIO;
}

static const struct store_ops store_sqlite_ops = {
	.close = store_sqlite_close,
	.begin = store_sqlite_begin,
	.commit = store_sqlite_commit,
	.rollback = store_sqlite_rollback,
	.campaign_insert = store_sqlite_campaign_insert,
	.campaign_get = store_sqlite_campaign_get,
	.campaign_list = store_sqlite_campaign_list,
	.campaign_update = store_sqlite_campaign_update,
	.campaign_claim = store_sqlite_campaign_claim,
	.campaign_release = store_sqlite_campaign_release,
	.campaign_due = store_sqlite_campaign_due,
	.chunks_init = store_sqlite_chunks_init,
	.chunks_load = store_sqlite_chunks_load,
	.chunk_save = store_sqlite_chunk_save,
	.marks_replace = store_sqlite_marks_replace,
	.marks_load = store_sqlite_marks_load,
	.account_put = store_sqlite_account_put,
	.account_get = store_sqlite_account_get,
	.account_list = store_sqlite_account_list,
	.account_remove = store_sqlite_account_remove,
	.quota_admit = store_sqlite_quota_admit,
	.quota_consume = store_sqlite_quota_consume,
	.quota_release = store_sqlite_quota_release,
	.quota_get = store_sqlite_quota_get,
	.reg_user_add = store_sqlite_reg_user_add,
	.reg_user_get = store_sqlite_reg_user_get,
	.reg_user_update = store_sqlite_reg_user_update,
	.reg_user_remove = store_sqlite_reg_user_remove,
	.reg_user_list = store_sqlite_reg_user_list,
	.reg_account_add = store_sqlite_reg_account_add,
	.reg_account_get = store_sqlite_reg_account_get,
	.reg_account_update = store_sqlite_reg_account_update,
	.reg_account_remove = store_sqlite_reg_account_remove,
	.reg_account_list = store_sqlite_reg_account_list,
	.reg_meta_get = store_sqlite_reg_meta_get,
	.reg_meta_put = store_sqlite_reg_meta_put,
};
