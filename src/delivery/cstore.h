/*
 * cstore.h - campaign records in the store, as the commands that start
 * senders need them: opening the store named by the configuration, the
 * sender's lease (with a dead sender's lease taken over at once on the
 * same machine), and the settings a campaign was started with, recorded
 * so that a resumed or scheduled run uses them again.
 *
 * Functions run on the caller's thread and may block on the store.
 */
#ifndef MR_CSTORE_H
#define MR_CSTORE_H

#include <stdbool.h>

#include "conf/conf.h"
#include "conf/conf_cli.h"
#include "core/mr_buf.h"
#include "store/store.h"

/*
 * cstore_open - the store at cfg's store.path; with create, the file and
 * its directory are made when missing.  NULL with a message in err and a
 * sysexits code in *ex_r (EX_NOINPUT missing, EX_TEMPFAIL locked,
 * EX_CANTCREAT/EX_NOPERM read-only, EX_DATAERR not a store).
 */
struct store *cstore_open(const struct mr_config *cfg, bool create,
    struct mr_buf *err, int *ex_r);

/*
 * cstore_ex - the sysexits code for a store's error code: EX_NOINPUT
 * missing, EX_TEMPFAIL locked, EX_DATAERR exists or invalid, EX_NOPERM
 * read-only or denied, EX_CANTCREAT disk full, otherwise fallback.
 */
int cstore_ex(int code, int fallback);

/* cstore_owner - this process's name as a lease holder, "host:pid". */
const char *cstore_owner(void);

/*
 * cstore_claim - take campaign c's lease for this process.  A holder on
 * this machine whose process is gone loses it at once; a live one keeps
 * it: EX_TEMPFAIL with the holder named in err.
 */
int cstore_claim(struct store *s, struct store_campaign *c,
    const struct mr_config *cfg, struct mr_buf *err);

/*
 * cstore_record_options - the settings of cl to record with a campaign,
 * as the text kept in store_campaign.options (owned by the caller): the
 * config file and every path-valued override made absolute (the daemon
 * and later resumes run elsewhere), store.* and daemon.* left out (they
 * belong to the process that opens the store).  NULL with a message in
 * err when the working directory cannot be told.
 */
char *cstore_record_options(const struct conf_cli *cl, struct mr_buf *err);

/* cstore_abspath - path made absolute against the working directory,
 * not resolved (owned; NULL when the directory cannot be told). */
char *cstore_abspath(const char *path);
/*
 * cstore_apply_options - rebuild a command line from recorded options:
 * into out, the recorded config file unless cl names one, the recorded
 * overrides, then cl's own (which win).  Release out with
 * conf_cli_release().
 */
void cstore_apply_options(const char *options, const struct conf_cli *cl,
    struct conf_cli *out);

#endif
