/*
 * runner.h - running one campaign to its end: prepare it (template, list,
 * rejects), rebuild its state after a crash, deliver it through one engine
 * per worker thread, keep its recovery state (journal group commit,
 * snapshots, the lease, quota), and write its summary (SPEC D1-D6, D10,
 * D11, D16; seed 004 [0030]-[0033], [0083]).
 *
 * Without a store a run is ephemeral: nothing survives it.  With one, the
 * campaign's record says how far it got (its stage) and the runner skips
 * what is done: a prepared campaign's rejects are not written again, a
 * delivering campaign's recipients resume from the last snapshot and the
 * journals, a complete campaign is never sent again.
 *
 * runner_run() blocks until the campaign is complete or stopped.  It uses
 * the store from the calling thread only (the recovery agent); the
 * engines run on threads of their own.  The caller holds the campaign's
 * lease (the runner renews it) and sets the campaign's state afterwards.
 */
#ifndef MR_RUNNER_H
#define MR_RUNNER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "conf/conf.h"
#include "core/mr_buf.h"
#include "store/store.h"

struct shaper;

struct runner_progress {
	uint64_t	total;		/* recipients to reach a final state */
	uint64_t	done;		/* reached it in this run */
	uint64_t	delivered;	/* this run */
	uint64_t	bounced;
	uint64_t	deferrals;
	uint64_t	elapsed_ms;
};

/* runner_progress_cb - called every progress interval, and once at the
 * end with final set. */
typedef void runner_progress_cb(void *arg, const struct runner_progress *p,
    bool final);

struct runner_opts {
	const struct mr_config	*cfg;		/* borrowed, all below too */
	const char		*template_path;
	const char		*list_path;
	struct store		*store;		/* NULL: ephemeral run */
	struct store_campaign	*rec;		/* kept current by the run */
	const char		*owner;		/* the lease holder's name */
	runner_progress_cb	*progress;	/* may be NULL */
	void			*progress_arg;
	uint64_t		 progress_interval_ms;
	atomic_bool		*stop;		/* raised to stop the run */
	FILE			*out;		/* notes: in-flight-at-crash */
	const char		*prog;		/* for messages: "send" */
	/* The daemon's shaper, shared by all it sends (NULL: the run
	 * makes its own from cfg). */
	struct shaper		*shaper;
};

enum runner_end {
	RUNNER_COMPLETE,	/* every recipient is final */
	RUNNER_STOPPED,		/* *stop was raised, or a pause request */
	RUNNER_CANCELLED,	/* a cancel request */
	RUNNER_LOST_LEASE,	/* another sender took the campaign */
};

/*
 * runner_run - run the campaign.  Returns 0 with *end_r, the summary in
 * summary; or a sysexits code (EX_DATAERR bad list or template or a list
 * changed since the campaign began, EX_NOINPUT a file that cannot be read,
 * EX_CANTCREAT an output, EX_NOPERM a quota refusal, EX_CONFIG, EX_IOERR
 * the store) with a message in err.
 */
int runner_run(const struct runner_opts *o, enum runner_end *end_r,
    struct mr_buf *summary, struct mr_buf *err);

#endif
