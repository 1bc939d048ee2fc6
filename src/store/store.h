/*
 * store.h - the persistent store: campaigns and their stage checkpoints,
 * list chunks with their progress bit vectors and the visit state of
 * their deferred and in-flight recipients, journal marks, sending accounts
 * and quota counters (SPEC D10, D12, D16; M5).
 *
 * One interface, a table of operations that a backend fills in: SQLite
 * (store_sqlite.c, the embedded default) now; PostgreSQL, for several
 * nodes, later, with the same semantics.  Only src/store/ includes
 * database headers.  The schema is versioned and migrated forward on
 * open.
 *
 * Threads: a struct store belongs to one thread at a time.  Every call
 * may block on the disk or on another process's lock, so none is ever
 * made from a delivery loop: the sending command's main thread (the
 * recovery agent) and the daemon's monitor make them.
 *
 * Errors: int functions return 0 or a negative code: -ENOENT (no such
 * campaign, account or store file), -EEXIST (name taken), -EBUSY (locked
 * by another process beyond the busy timeout, or a campaign leased to
 * another sender: only then is a holder reported), -EROFS/-EACCES
 * (read-only), -EDQUOT (quota refused), -ENOSPC (disk full), -EINVAL (a
 * value the schema refuses), -EIO (anything else, and every call after a
 * transaction that SQLite rolled back by itself).  store_error() then
 * holds a sentence for people.  *_get overwrite *out without freeing
 * it; callbacks must not call the same listing operation again.
 *
 * Ownership: strings in the structs below that the store fills in are
 * owned by the struct and freed with the matching *_release(); strings
 * the caller passes in are borrowed for the call.
 */
#ifndef MR_STORE_H
#define MR_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mr_buf.h"

struct store;

/*
 * Stage checkpoints of a campaign (seed 004 [0083]: P100 ... P699).  A
 * stage only moves forward; a sender that starts again skips what its
 * stage says is done.
 */
enum store_stage {
	STORE_STAGE_CREATED = 100,	/* recorded: inputs named and hashed */
	STORE_STAGE_PREPARED = 400,	/* list checked, rejects written,
					 * recipients counted, chunks made */
	STORE_STAGE_DELIVERING = 600,	/* delivery has started */
	STORE_STAGE_COMPLETE = 699,	/* every recipient final; summary */
};

/* What should happen to a campaign (changed by people and the monitor). */
enum store_state {
	STORE_STATE_SCHEDULED,	/* wait for start_at, then send */
	STORE_STATE_RUNNING,	/* a sender holds its lease */
	STORE_STATE_PAUSED,	/* stopped by request; resume to go on */
	STORE_STATE_CANCELLED,	/* stopped for good */
	STORE_STATE_DONE,	/* complete */
};

struct store_campaign {
	int64_t		 id;		/* set by campaign_insert */
	char		*name;		/* unique */
	char		*template_path;
	char		*list_path;
	char		 template_sha256[65];	/* hex */
	char		 list_sha256[65];
	int64_t		 list_size;
	int64_t		 list_mtime;	/* seconds */
	char		*account;	/* NULL or "": none */
	char		*options;	/* the sender's settings, "key=value"
					 * lines (routes, resolver, files...),
					 * reused when it resumes */
	int64_t		 created_at;	/* unix seconds, all of them */
	int64_t		 start_at;
	int64_t		 started_at;	/* 0: never */
	int64_t		 finished_at;	/* 0: not yet */
	int		 stage;		/* enum store_stage */
	int		 state;		/* enum store_state */
	uint32_t	 nrecipients;	/* accepted, after prepare */
	uint32_t	 chunk_size;	/* recipients per chunk */
	uint32_t	 nchunks;
	uint64_t	 rows;		/* list rows, rejects included */
	uint64_t	 rejected;	/* duplicates included */
	uint64_t	 duplicates;
	uint64_t	 delivered;	/* as of the last snapshot */
	uint64_t	 bounced;
	uint64_t	 deferrals;
	uint64_t	 inflight_at_crash;	/* total over all resumes */
	int64_t		 generation;	/* journal generation of the last run */
	char		*owner;		/* sender holding the lease, or NULL */
	int64_t		 lease_until;	/* unix seconds */
	char		*summary;	/* the delivery summary, when complete */
};

/* A journal mark: records of (generation, writer) up to seq are folded. */
struct store_mark {
	int64_t		generation;
	uint32_t	writer;
	uint64_t	seq;
};

/*
 * A sending account (D16, D17).  An allowance of STORE_ALLOWANCE_UNLIMITED
 * is no quota: every admission fits, and what is used is still counted
 * per period.  verifier is the account's password for SMTP AUTH as a
 * verifier (registry/verifier.h; account_put refuses anything that does
 * not start with '$', so a password in clear cannot be stored), or NULL:
 * no password, the account cannot authenticate.
 */
#define STORE_ALLOWANCE_UNLIMITED	UINT64_MAX

struct store_account {
	char		*name;
	uint64_t	 allowance;	/* messages per period */
	int64_t		 period;	/* seconds */
	unsigned	 warn_pct;	/* warn at this share, 1..100 */
	char		*verifier;	/* "$pbkdf2-sha256$..." or NULL */
};

/* An account's numbers in the current period. */
struct store_quota {
	uint64_t	allowance;
	int64_t		period;
	int64_t		period_start;	/* unix seconds */
	uint64_t	used;		/* recipients with a final outcome */
	uint64_t	reserved;	/* admitted, not yet final (all
					 * campaigns of the account) */
	uint64_t	need;		/* asked for by this admission */
	unsigned	warn_pct;
};

/*
 * The registry (SPEC A1; src/registry/): users of the aggregating POP3
 * proxy and their backend accounts.  Secrets arrive sealed (the text of
 * src/registry/seal.h) or as verifiers: the store never holds one in
 * clear and never opens one.
 */
struct store_reg_user {
	char		*name;		/* unique */
	char		*verifier;	/* "$pbkdf2-sha256$..." */
	char		*apop;		/* sealed APOP secret; NULL: none */
};

struct store_reg_account {
	int64_t		 id;		/* set by reg_account_add; never
					 * reused */
	char		*user;		/* the owning user's name */
	char		*host;
	unsigned	 port;		/* 1..65535 */
	int		 tls;		/* 0..2: enum reg_tls */
	char		*login;
	char		*secret;	/* sealed; NULL only between
					 * reg_account_add and the update
					 * that seals it, in one transaction */
};

typedef int store_campaign_cb(void *arg, const struct store_campaign *c);
/* A chunk's visit state, as chunk_save was given it (len > 0). */
typedef int store_visits_cb(void *arg, uint32_t chunk, const uint8_t *v,
    size_t len);
typedef int store_account_cb(void *arg, const struct store_account *a);
typedef int store_reg_user_cb(void *arg, const struct store_reg_user *u);
typedef int store_reg_account_cb(void *arg,
    const struct store_reg_account *a);

enum store_open_flags {
	STORE_CREATE = 1 << 0,		/* make the file if it is missing */
	STORE_READONLY = 1 << 1,
};

struct store_ops {
	void	(*close)(struct store *s);

	/* Transactions: begin/commit make several calls atomic (a
	 * snapshot is one transaction).  Outside one, each call is its
	 * own transaction. */
	int	(*begin)(struct store *s);
	int	(*commit)(struct store *s);
	int	(*rollback)(struct store *s);

	/* Campaigns. */
	int	(*campaign_insert)(struct store *s, struct store_campaign *c);
	/* campaign_get - by name, or by id when key is all digits. */
	int	(*campaign_get)(struct store *s, const char *key,
		    struct store_campaign *out);
	int	(*campaign_list)(struct store *s, store_campaign_cb *cb,
		    void *arg);
	/* campaign_update - every field but id, name, created_at and the
	 * lease (owner, lease_until): only claim and release touch it, so
	 * that a sender that lost its lease cannot take it back. */
	int	(*campaign_update)(struct store *s,
		    const struct store_campaign *c);
	/*
	 * campaign_claim - take the lease of campaign id for owner until
	 * lease_until, atomically: it succeeds when nobody holds it, when
	 * the lease ran out before now, or when owner already holds it (a
	 * renewal).  Otherwise -EBUSY, with the holder in *holder_r (owned
	 * by the caller).  On success the state becomes RUNNING.
	 */
	int	(*campaign_claim)(struct store *s, int64_t id,
		    const char *owner, int64_t lease_until, int64_t now,
		    char **holder_r);
	/* campaign_release - drop owner's lease and set state. */
	int	(*campaign_release)(struct store *s, int64_t id,
		    const char *owner, int state);
	/*
	 * campaign_due - ids of campaigns to start now: SCHEDULED with
	 * start_at <= now, or RUNNING with a lease that ran out (a sender
	 * that died), oldest start_at first; at most max of them.
	 */
	int	(*campaign_due)(struct store *s, int64_t now, int64_t *ids,
		    size_t max, size_t *n_r);

	/*
	 * Chunks: bit vectors of the recipients that reached a final state,
	 * chunk_size recipients each (the last may be shorter), and each
	 * chunk's visit state: the attempt counts and in-flight flags of its
	 * recipients that are not final, an opaque blob the recovery module
	 * encodes (none when every such count is zero).
	 */
	int	(*chunks_init)(struct store *s, int64_t campaign,
		    uint32_t nchunks, uint32_t chunk_size,
		    uint32_t nrecipients);
	/* chunks_load - all bit vectors, chunk after chunk, into bits
	 * (nrecipients bits rounded up to whole chunks of bytes); then
	 * cb(arg, chunk, blob, len) for each chunk that has visit state, in
	 * chunk order (cb may be NULL; a value it returns ends the load). */
	int	(*chunks_load)(struct store *s, int64_t campaign,
		    uint8_t *bits, size_t nbytes, store_visits_cb *cb,
		    void *arg);
	/* chunk_save - one chunk's bits (chunk_size / 8 bytes), their count
	 * of ones, and its visit state (NULL or len 0: none). */
	int	(*chunk_save)(struct store *s, int64_t campaign,
		    uint32_t chunk, const uint8_t *bits, size_t nbytes,
		    uint32_t ndone, const uint8_t *visits, size_t nvisits);

	/* Journal marks: replaced whole by each snapshot. */
	int	(*marks_replace)(struct store *s, int64_t campaign,
		    const struct store_mark *v, size_t n);
	/* marks_load - into v (at most max), count in *n_r. */
	int	(*marks_load)(struct store *s, int64_t campaign,
		    struct store_mark *v, size_t max, size_t *n_r);

	/* Accounts. */
	int	(*account_put)(struct store *s, const struct store_account *a);
	int	(*account_get)(struct store *s, const char *name,
		    struct store_account *out);
	int	(*account_list)(struct store *s, store_account_cb *cb,
		    void *arg);
	int	(*account_remove)(struct store *s, const char *name);

	/*
	 * Quotas (D16).  Periods are fixed windows: period_start =
	 * now - now % period (UTC).  quota_admit reserves need messages of
	 * account for campaign in the current period, atomically, unless
	 * used + reserved + need would pass the allowance: then -EDQUOT.
	 * A campaign's earlier reservation (a resumed campaign) is replaced,
	 * not added to.  *q_r gets the numbers either way.
	 * quota_consume moves n of the campaign's reservation to used (the
	 * period of its reservation); quota_release drops what is left of
	 * it.  quota_get reports the account's current period.
	 */
	int	(*quota_admit)(struct store *s, const char *account,
		    int64_t campaign, uint64_t need, int64_t now,
		    struct store_quota *q_r);
	int	(*quota_consume)(struct store *s, int64_t campaign,
		    uint64_t n);
	int	(*quota_release)(struct store *s, int64_t campaign);
	int	(*quota_get)(struct store *s, const char *account, int64_t now,
		    struct store_quota *q_r);

	/*
	 * The registry.  reg_user_update and reg_account_update replace
	 * every field but the key (name; id and user), so a change is
	 * get, edit, update in one transaction.  Removing a user removes
	 * its accounts.  reg_account_add of a user that does not exist is
	 * -ENOENT.  reg_account_list - user's accounts, or everyone's
	 * (user NULL), by user then id.  reg_meta - small named values of
	 * the registry (the key file check), put replaces.
	 */
	int	(*reg_user_add)(struct store *s,
		    const struct store_reg_user *u);
	int	(*reg_user_get)(struct store *s, const char *name,
		    struct store_reg_user *out);
	int	(*reg_user_update)(struct store *s,
		    const struct store_reg_user *u);
	int	(*reg_user_remove)(struct store *s, const char *name);
	int	(*reg_user_list)(struct store *s, store_reg_user_cb *cb,
		    void *arg);
	int	(*reg_account_add)(struct store *s,
		    struct store_reg_account *a);
	int	(*reg_account_get)(struct store *s, int64_t id,
		    struct store_reg_account *out);
	int	(*reg_account_update)(struct store *s,
		    const struct store_reg_account *a);
	int	(*reg_account_remove)(struct store *s, int64_t id);
	int	(*reg_account_list)(struct store *s, const char *user,
		    store_reg_account_cb *cb, void *arg);
	/* reg_meta_get - *value_r owned by the caller; -ENOENT: none. */
	int	(*reg_meta_get)(struct store *s, const char *name,
		    char **value_r);
	int	(*reg_meta_put)(struct store *s, const char *name,
		    const char *value);
};

struct store {
	const struct store_ops	*ops;
	struct mr_buf		 error;		/* last error, for people */
	char			*path;
};

/*
 * store_open - open the store at path (an SQLite file now; a "postgres:"
 * URI later), migrating its schema forward.  NULL with *code_r and a
 * message in err when it cannot be opened: missing (without
 * STORE_CREATE), unreadable, read-only when writing is wanted, locked by
 * another process, not a mailroom store, or from a newer mailroom.
 */
struct store *store_open(const char *path, int flags, int busy_timeout_ms,
    struct mr_buf *err, int *code_r);
void store_close(struct store **sp);
const char *store_error(const struct store *s);

void store_campaign_release(struct store_campaign *c);
/* These wipe the verifier and the sealed values too. */
void store_account_release(struct store_account *a);
void store_reg_user_release(struct store_reg_user *u);
void store_reg_account_release(struct store_reg_account *a);

const char *store_stage_name(int stage);
/*
 * store_all_digits - is s a non-empty run of decimal digits?  Such a key
 * names a campaign by its id, so no campaign may be named so.
 */
bool store_all_digits(const char *s);
const char *store_state_name(int state);
/* store_state_parse - a state's name to its value; -1 when unknown. */
int store_state_parse(const char *name);

#endif
