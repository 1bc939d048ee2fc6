/*
 * relay.h - the message source of mail injected over SMTP (see msgsrc.h,
 * SPEC D17): recipients of spooled messages, handed to the delivery loops
 * like a campaign's, their messages read back from the spool.
 *
 * The relay keeps per live message its spool id, envelope sender and
 * count of recipients not yet final, and per recipient its message, its
 * index in the message's envelope, its domain and address: about 48
 * bytes plus the address.  Bodies stay in the spool.  Recipient indices
 * are recycled once final; the tables grow in chunks that never move, so
 * the delivery loops read entries without a lock (an entry is written
 * before its index is posted to a loop, and the post is under the loop's
 * inbox mutex).  Adding and finishing take the relay's mutex.
 *
 * When a recipient is final the relay marks it done in the spool, which
 * drops the message once its last recipient is final.
 *
 * Ownership: the caller owns the relay (relay_free()) and the spool,
 * which must outlive it.
 */
#ifndef MR_RELAY_H
#define MR_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "delivery/msgsrc.h"
#include "spool/spool.h"

struct relay;
struct dsn_rcpt;

/*
 * relay_bounce_cb - the last recipient of spooled message id became
 * final and those in r[0..n) bounced, the sender being mail_from (never
 * ""): the delivery status notification is the callback's to send.
 * Called on a delivery loop's thread with no relay lock held, before the
 * last recipient's final mark is written (the message is still in the
 * spool to read its header from).  Everything is borrowed for the call.
 */
typedef void relay_bounce_cb(void *arg, uint64_t id, const char *mail_from,
    uint64_t received_ms, const struct dsn_rcpt *r, size_t n);

/* relay_new - bounce may be NULL (bounces are then accounted only). */
struct relay *relay_new(struct spool *sp, relay_bounce_cb *bounce,
    void *bounce_arg);
void relay_free(struct relay **rp);
/* relay_source - the relay as a message source (for the campaign). */
void relay_source(struct relay *r, struct msgsrc *out);

/*
 * relay_add - the pending recipients of spooled message id: env.rcpt[i]
 * has index idx[i] in the message as spooled (idx NULL: 0, 1, ...).
 * They go out from source pool pool (shape.h): each domain's queue is
 * per pool, so a connection only carries mail of its own pool.  Writes
 * their recipient numbers to out[0..env->nrcpt).  Returns 0, or
 * MR_ERANGE_VALUE when the tables are full.
 */
int relay_add(struct relay *r, uint64_t id, const struct spool_envelope *env,
    const uint32_t *idx, unsigned pool, uint32_t *out);

/* relay_pending - recipients not final (the backlog), and messages. */
uint64_t relay_pending(const struct relay *r);
uint64_t relay_messages(const struct relay *r);

#endif
