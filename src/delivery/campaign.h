/*
 * campaign.h - what the delivery loops of one campaign share: the list,
 * the compiled template, the envelope sender, the accounting file, and
 * the live counters.
 *
 * Everything here is set up by the sending command before the loops start
 * and is read-only afterwards, except: the counters (atomics, any thread),
 * per-domain counters (each domain belongs to exactly one loop, and the
 * totals are read after the loops are joined), the accounting writer
 * (thread-safe) and the stop flag.
 */
#ifndef MR_CAMPAIGN_H
#define MR_CAMPAIGN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "conf/conf.h"
#include "delivery/acct.h"
#include "delivery/list.h"
#include "delivery/msgsrc.h"
#include "delivery/template.h"
#include "recovery/recovery.h"

struct campaign_domain_stats {
	uint32_t	delivered;
	uint32_t	bounced;
	uint32_t	deferrals;
};

struct campaign {
	const struct mr_config	*cfg;
	struct msgsrc		 src;		/* recipients and messages */
	size_t			 ndomains;	/* known at start (a hint) */
	size_t			 max_message_size; /* larger ones bounce */
	unsigned		 pool;		/* source pool (shape.h) */
	const struct list	*list;		/* a campaign's; NULL: relay */
	const struct tmpl	*tmpl;
	const char		*mail_from;
	char			 token[24];	/* unique per run */
	uint64_t		 start_mono_ms;
	SSL_CTX			*tls_ctx;	/* NULL: TLS off */
	struct acct		*acct;		/* NULL: no file */
	struct recovery		*rec;		/* NULL: no recovery state */
	const char		*forensics_dir;	/* NULL: none kept */
	bool			 batching;	/* fingerprints kept */
	bool			 endless;	/* the relay: run until stopped */
	atomic_bool		 feeding;	/* the reader has more to post */
	unsigned		 nworkers;	/* engines (delivery threads) */
	unsigned		 max_sessions;	/* all engines: what the file
						 * descriptor limit allows */
	struct campaign_domain_stats *dom;	/* by domain id, or NULL */
	struct shaper		*shaper;	/* destinations' limits */

	/* Set by the governor (the runner), read by the engines. */
	atomic_uint		 slots;		/* sessions, all engines */
	atomic_uint		 retry_limit;	/* attempts before bouncing */
	atomic_uint		 sessions;	/* open now, all engines */

	atomic_uint_fast64_t	 delivered;
	atomic_uint_fast64_t	 bounced;
	atomic_uint_fast64_t	 deferrals;
	atomic_uint_fast64_t	 forensics_kept;
	atomic_bool		 stop;		/* finish what is in flight */
};

#endif
