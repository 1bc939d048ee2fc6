/*
 * notify.h - how new-mail notifications and metrics reach the edge proxy
 * (SPEC P5, P10):
 *
 *   - the NOTIFY line protocol on pop3_proxy.notify_listen (the seed's
 *     "custom SMTP extension"): "NOTIFY <mailbox>" or, when a secret is
 *     set, "NOTIFY <mailbox> <secret>", one per line, each answered +OK or
 *     -ERR; "QUIT" ends the connection;
 *   - HTTP on pop3_proxy.http_listen (libevent's evhttp): GET /metrics
 *     (Prometheus text), and PUT or POST of Dovecot's push_notification
 *     JSON (OX driver) on any other path; with a secret set, HTTP basic
 *     authentication must carry it as the password.
 *
 * Both accept only peers in pop3_proxy.notify_allow, and without a secret
 * only loopback peers.  Secrets are compared in constant time and never
 * logged.
 */
#ifndef MR_POP3EDGE_NOTIFY_H
#define MR_POP3EDGE_NOTIFY_H

#include "conf/conf.h"
#include "core/mr_buf.h"

struct event_base;
struct edge;
struct edge_notify;

/* edge_notify_check - is the notification configuration (the
 * allow-list) valid?  0, or -1 with a sentence in err. */
int edge_notify_check(const struct mr_config *cfg, struct mr_buf *err);
/* edge_notify_new - start the configured endpoints (none is an empty
 * address).  NULL with a sentence in err. */
struct edge_notify *edge_notify_new(struct event_base *base, struct edge *e,
    const struct mr_config *cfg, struct mr_buf *err);
void edge_notify_free(struct edge_notify **np);
/* The bound addresses, "" when off (borrowed). */
const char *edge_notify_line_addr(const struct edge_notify *n);
const char *edge_notify_http_addr(const struct edge_notify *n);

#endif
