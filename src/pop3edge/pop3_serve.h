/*
 * pop3_serve.h - the POP3 proxy, attenuating (edge.h) or aggregating
 * (agg.h) as pop3_proxy.aggregate says, with its notification and metrics
 * endpoints, on an event loop of its own: what `mailroom pop3-proxy` runs
 * in the foreground and `mailroom daemon` runs as a role on a thread.
 *
 * Ownership: the configuration is borrowed for the proxy's life (open may
 * lower pop3_proxy.max_sessions to what the descriptor limit serves).
 */
#ifndef MR_POP3EDGE_POP3_SERVE_H
#define MR_POP3EDGE_POP3_SERVE_H

#include <stdbool.h>
#include <stdio.h>

#include "conf/conf.h"
#include "core/mr_buf.h"

struct pop3_serve;

/*
 * pop3_serve_open - check the configuration, make the loop, the proxy and
 * its endpoints, and listen; print the bound addresses ("listen: ...",
 * "listen-tls: ...", "notify-listen: ...", "http-listen: ...") on out
 * (NULL: not).  NULL with a sentence in err and the exit status in *ex_r:
 * EX_CONFIG for a configuration mistake, EX_UNAVAILABLE when an address
 * cannot be bound, EX_CANTCREAT for the accounting file, EX_OSERR.
 */
struct pop3_serve *pop3_serve_open(struct mr_config *cfg, FILE *out,
    struct mr_buf *err, int *ex_r);
/* pop3_serve_run - serve in this thread until pop3_serve_stop(), or with
 * signals, until SIGTERM or SIGINT. */
void pop3_serve_run(struct pop3_serve *ps, bool signals);
/* pop3_serve_thread - serve on a thread of its own.  0, or -1. */
int pop3_serve_thread(struct pop3_serve *ps);
/* pop3_serve_stop - from any thread: the loop ends soon. */
void pop3_serve_stop(struct pop3_serve *ps);
/* pop3_serve_close - stop, join the thread if any, free everything. */
void pop3_serve_close(struct pop3_serve **psp);

#endif
