/*
 * conf_params.c - every configuration parameter, declared once: section,
 * name, type, default, bounds and documentation.  docs/CONFIG.md is
 * generated from this table (mailroom config --doc) and a test keeps the
 * two identical.
 */
#include <stddef.h>

#include "conf_int.h"

#define OFF(f)	offsetof(struct mr_config, f)
#define SEC	1000LL
#define MIN	(60 * SEC)
#define HOUR	(60 * MIN)
#define DAY	(24 * HOUR)
#define KB	1024LL
#define MB	(1024 * KB)
#define GB	(1024 * MB)

static const char *const conf_log_levels[] = {
	"err", "warn", "info", "debug", NULL,
};
static const char *const conf_acct_formats[] = { "csv", "json", NULL };
static const char *const conf_attenuations[] = {
	"time+demand", "time", "demand", NULL,
};
static const char *const conf_backend_tls[] = {
	"none", "stls", "tls", NULL,
};
static const char *const conf_tls_policies[] = {
	"none", "may", "encrypt", "verify", NULL,
};
static const char *const conf_queue_policies[] = {
	"round-robin", "longest", "oldest", NULL,
};
static const char *const conf_registry_sources[] = { "store", "ldap", NULL };
const struct conf_param conf_params[] = {
	/* [general] */
	{ "general", "hostname", CONF_STRING, "", 0, 0, NULL,
	  OFF(general_hostname),
	  "Name used in EHLO and Message-ID; empty means the machine's host "
	  "name." },
	{ "general", "workers", CONF_INT, "0", 0, 64, NULL,
	  OFF(general_workers),
	  "Delivery threads, each with its own event loop; domains are "
	  "sharded among them. 0 means one per online CPU but one (at least "
	  "one), leaving a core to the kernel's network stack." },
	{ "general", "log_level", CONF_ENUM, "warn", 0, 0, conf_log_levels,
	  OFF(general_log_level),
	  "Lowest level logged." },
	{ "general", "log_file", CONF_STRING, "", 0, 0, NULL,
	  OFF(general_log_file),
	  "Append log lines to this file; empty means standard error." },
	{ "general", "log_trace", CONF_STRING, "", 0, 0, NULL,
	  OFF(general_log_trace),
	  "Comma-separated trace categories to log: smtp, dns, queue, tls, "
	  "conf, all." },

	/* [send] */
	{ "send", "mail_from", CONF_STRING, "", 0, 0, NULL,
	  OFF(send_mail_from),
	  "Envelope sender (MAIL FROM). Empty means the address in the "
	  "template's From header, which must then hold no placeholder." },
	{ "send", "message_id_domain", CONF_STRING, "", 0, 0, NULL,
	  OFF(send_message_id_domain),
	  "Right-hand side of generated Message-IDs; empty means the host "
	  "name." },
	{ "send", "accounting_file", CONF_STRING, "", 0, 0, NULL,
	  OFF(send_accounting_file),
	  "Append one record per recipient outcome to this file; empty "
	  "means none (the summary is still printed)." },
	{ "send", "accounting_format", CONF_ENUM, "csv", 0, 0,
	  conf_acct_formats, OFF(send_accounting_format),
	  "csv (RFC 4180 with a header row) or json (one object per line)." },
	{ "send", "reject_file", CONF_STRING, "", 0, 0, NULL,
	  OFF(send_reject_file),
	  "Where rejected list rows go (line, reason, row). Empty means the "
	  "list's path with .rejects.csv appended." },
	{ "send", "forensics_dir", CONF_STRING, "mailroom-forensics", 0, 0,
	  NULL, OFF(send_forensics_dir),
	  "Directory that keeps, whole, each message refused with a 5xx "
	  "reply; created when first needed. Empty disables it." },
	{ "send", "forensics_max", CONF_INT, "1000", 0, 10000000, NULL,
	  OFF(send_forensics_max),
	  "At most this many messages are kept per run, so that a domain "
	  "refusing everything cannot fill the disk." },
	{ "send", "progress_interval", CONF_DURATION, "5s", 100, HOUR, NULL,
	  OFF(send_progress_interval),
	  "How often a progress line is printed when standard error is not "
	  "a terminal (on a terminal the line is redrawn live)." },
	{ "send", "max_rcpt_per_message", CONF_INT, "50", 1, 1000, NULL,
	  OFF(send_max_rcpt_per_message),
	  "Recipients of one domain whose messages would be byte-identical "
	  "share one transaction, up to this many RCPT TO." },
	{ "send", "max_row_size", CONF_SIZE, "64k", 256, 16 * MB, NULL,
	  OFF(send_max_row_size),
	  "Longest list row accepted; longer rows are rejected." },
	{ "send", "max_message_size", CONF_SIZE, "25M", 1 * KB, 1 * GB, NULL,
	  OFF(send_max_message_size),
	  "Largest rendered message; a recipient whose message would be "
	  "larger is rejected before sending." },
	{ "send", "max_backlog", CONF_INT, "1000000", 100, 1000000000, NULL,
	  OFF(send_max_backlog),
	  "Recipients handed to the delivery loops and not yet final above "
	  "which the campaign's reader stops reading the list; it reads on "
	  "below 90 % of it (backpressure, SPEC D8)." },

	{ "send", "account", CONF_STRING, "", 0, 0, NULL, OFF(send_account),
	  "Sending account whose allowance the campaign counts against "
	  "(mailroom account); empty means none." },
	{ "send", "pool", CONF_STRING, "", 0, 0, NULL, OFF(send_pool),
	  "The [pool NAME] whose source addresses the campaign's "
	  "connections are bound to; empty: the pool that names the "
	  "campaign or its account, else shaping.source." },

	/* [store] */
	{ "store", "path", CONF_STRING, "/var/lib/mailroom/mailroom.db", 0, 0,
	  NULL, OFF(store_path),
	  "The SQLite store: campaigns, their progress, accounts and quotas. "
	  "Made (with its directory) when a campaign is first recorded." },
	{ "store", "busy_timeout", CONF_DURATION, "5s", 0, 10 * MIN, NULL,
	  OFF(store_busy_timeout),
	  "How long to wait for another process's lock on the store before "
	  "giving up with an error." },
	{ "store", "lease_time", CONF_DURATION, "30s", 2 * SEC, HOUR, NULL,
	  OFF(store_lease_time),
	  "A sender holds its campaign for this long and renews the lease "
	  "every third of it; a sender that dies frees it when it runs out "
	  "(at once on the same machine)." },

	/* [recovery] */
	{ "recovery", "journal_dir", CONF_STRING, "", 0, 0, NULL,
	  OFF(recovery_journal_dir),
	  "Directory of the recovery journals; empty means the store's path "
	  "with .journal appended." },
	{ "recovery", "chunk_size", CONF_INT, "4096", 64, 65536, NULL,
	  OFF(recovery_chunk_size),
	  "Recipients per list chunk, the unit of progress kept in the "
	  "store (a multiple of 64)." },
	{ "recovery", "segment_size", CONF_SIZE, "8M", 64 * KB, 1 * GB, NULL,
	  OFF(recovery_segment_size),
	  "Size of a journal segment file, allocated whole when it is made "
	  "(16 bytes a record, two or three records a recipient)." },
	{ "recovery", "sync_interval", CONF_DURATION, "100ms", 1, 10 * SEC,
	  NULL, OFF(recovery_sync_interval),
	  "Group commit: the journals are made durable (fdatasync) this "
	  "often.  A power loss can lose at most this much of them; a "
	  "killed process loses nothing." },
	{ "recovery", "snapshot_interval", CONF_DURATION, "5s", 100, HOUR,
	  NULL, OFF(recovery_snapshot_interval),
	  "Progress is folded from the journals into the store this often, "
	  "and the folded journal segments removed." },

	/* [daemon] */
	{ "daemon", "poll_interval", CONF_DURATION, "1s", 100, MIN, NULL,
	  OFF(daemon_poll_interval),
	  "How often the daemon looks for campaigns that are due." },
	{ "daemon", "max_campaigns", CONF_INT, "4", 1, 64, NULL,
	  OFF(daemon_max_campaigns),
	  "Campaigns the daemon sends at the same time, each with its own "
	  "delivery threads." },

	/* [dns] */
	{ "dns", "resolver", CONF_LIST, "", 0, 0, NULL, OFF(dns_resolver),
	  "Name server as HOST:PORT (repeatable). None means the system's "
	  "resolv.conf." },
	{ "dns", "route", CONF_LIST, "", 0, 0, NULL, OFF(dns_route),
	  "Static route DOMAIN=HOST:PORT (repeatable) used instead of MX "
	  "lookups; DOMAIN * matches every domain, .example.com every "
	  "subdomain of example.com." },
	{ "dns", "timeout", CONF_DURATION, "5s", 100, MIN, NULL,
	  OFF(dns_timeout),
	  "Time to wait for one DNS server before trying again." },
	{ "dns", "tries", CONF_INT, "3", 1, 10, NULL, OFF(dns_tries),
	  "Attempts per DNS query before it fails temporarily." },
	{ "dns", "min_ttl", CONF_DURATION, "30s", 0, DAY, NULL,
	  OFF(dns_min_ttl),
	  "Answers are cached at least this long, whatever their TTL." },
	{ "dns", "max_ttl", CONF_DURATION, "1d", SEC, 7 * DAY, NULL,
	  OFF(dns_max_ttl),
	  "Answers are cached at most this long." },
	{ "dns", "negative_ttl", CONF_DURATION, "5m", 0, DAY, NULL,
	  OFF(dns_negative_ttl),
	  "Longest time a non-existent domain or a failed lookup is cached "
	  "(the zone's SOA minimum is used when it is shorter)." },

	/* [smtp] */
	{ "smtp", "port", CONF_INT, "25", 1, 65535, NULL, OFF(smtp_port),
	  "Port of MX hosts found through DNS." },
	{ "smtp", "connect_timeout", CONF_DURATION, "30s", 100, 10 * MIN,
	  NULL, OFF(smtp_connect_timeout),
	  "Time allowed for the TCP connection to be established." },
	{ "smtp", "greeting_timeout", CONF_DURATION, "5m", 100, HOUR, NULL,
	  OFF(smtp_greeting_timeout),
	  "Wait for the 220 greeting (RFC 5321 4.5.3.2.1: 5 minutes)." },
	{ "smtp", "ehlo_timeout", CONF_DURATION, "5m", 100, HOUR, NULL,
	  OFF(smtp_ehlo_timeout), "Wait for the EHLO or HELO reply." },
	{ "smtp", "starttls_timeout", CONF_DURATION, "2m", 100, HOUR, NULL,
	  OFF(smtp_starttls_timeout),
	  "Wait for the STARTTLS reply and the TLS handshake." },
	{ "smtp", "mail_timeout", CONF_DURATION, "5m", 100, HOUR, NULL,
	  OFF(smtp_mail_timeout),
	  "Wait for the MAIL reply (RFC 5321 4.5.3.2.2: 5 minutes)." },
	{ "smtp", "rcpt_timeout", CONF_DURATION, "5m", 100, HOUR, NULL,
	  OFF(smtp_rcpt_timeout),
	  "Wait for each RCPT reply (RFC 5321 4.5.3.2.3: 5 minutes)." },
	{ "smtp", "data_timeout", CONF_DURATION, "2m", 100, HOUR, NULL,
	  OFF(smtp_data_timeout),
	  "Wait for the 354 reply to DATA (RFC 5321 4.5.3.2.4: 2 minutes)." },
	{ "smtp", "data_block_timeout", CONF_DURATION, "3m", 100, HOUR, NULL,
	  OFF(smtp_data_block_timeout),
	  "Longest stall while sending message data (RFC 5321 4.5.3.2.5: 3 "
	  "minutes)." },
	{ "smtp", "data_done_timeout", CONF_DURATION, "10m", 100, HOUR, NULL,
	  OFF(smtp_data_done_timeout),
	  "Wait for the reply to the final dot (RFC 5321 4.5.3.2.6: 10 "
	  "minutes)." },
	{ "smtp", "quit_timeout", CONF_DURATION, "30s", 100, HOUR, NULL,
	  OFF(smtp_quit_timeout), "Wait for the QUIT reply." },
	{ "smtp", "idle_timeout", CONF_DURATION, "10s", 100, HOUR, NULL,
	  OFF(smtp_idle_timeout),
	  "An open connection with no work is closed after this long." },
	{ "smtp", "max_connections", CONF_INT, "20", 1, 10000, NULL,
	  OFF(smtp_max_connections),
	  "Most simultaneous connections to one destination host (IP and "
	  "port), across all workers." },
	{ "smtp", "initial_connections", CONF_INT, "5", 1, 10000, NULL,
	  OFF(smtp_initial_connections),
	  "Sessions first opened to a destination host; each session that "
	  "works allows one more, up to max_connections (a host that refuses "
	  "more stops the growth)." },
	{ "smtp", "max_messages_per_connection", CONF_INT, "1000", 1,
	  100000000, NULL, OFF(smtp_max_messages_per_connection),
	  "A connection is closed after this many transactions." },
	{ "smtp", "reply_line_max", CONF_SIZE, "2k", 512, 64 * KB, NULL,
	  OFF(smtp_reply_line_max),
	  "Longest reply line accepted from a server (RFC 5321 4.5.3.1.5 "
	  "sets 512 as the minimum a client must accept)." },
	{ "smtp", "pipelining", CONF_BOOL, "yes", 0, 0, NULL,
	  OFF(smtp_pipelining),
	  "Use PIPELINING (RFC 2920) when the server offers it." },
	{ "smtp", "tls_policy", CONF_ENUM, "may", 0, 0, conf_tls_policies,
	  OFF(smtp_tls_policy),
	  "none: never STARTTLS. may: STARTTLS when offered, certificate not "
	  "checked, plain text if the handshake fails. encrypt: TLS required, "
	  "certificate not checked. verify: TLS required, chain and MX host "
	  "name checked." },
	{ "smtp", "tls_ca_file", CONF_STRING, "", 0, 0, NULL,
	  OFF(smtp_tls_ca_file),
	  "PEM file of trusted CAs for tls_policy = verify; empty means the "
	  "system's store." },

	/* [queue] */
	{ "queue", "max_length", CONF_INT, "100000", 16, 100000000, NULL,
	  OFF(queue_max_length),
	  "A domain's queue is split into another queue past this many "
	  "entries." },
	{ "queue", "retry_base", CONF_DURATION, "5m", 100, DAY, NULL,
	  OFF(queue_retry_base),
	  "Wait before the first retry of a temporary failure; each later "
	  "retry waits twice as long." },
	{ "queue", "retry_max_interval", CONF_DURATION, "1h", 100, 7 * DAY,
	  NULL, OFF(queue_retry_max_interval),
	  "The longest wait between two attempts." },
	{ "queue", "max_attempts", CONF_INT, "10", 1, 1000, NULL,
	  OFF(queue_max_attempts),
	  "A recipient still failing temporarily after this many attempts "
	  "bounces." },
	{ "queue", "max_age", CONF_DURATION, "2d", SEC, 30 * DAY, NULL,
	  OFF(queue_max_age),
	  "A recipient not delivered this long after the send started "
	  "bounces." },
	{ "queue", "host_down_time", CONF_DURATION, "1m", 100, DAY, NULL,
	  OFF(queue_host_down_time),
	  "After a failed connection a host is skipped this long (the next "
	  "MX is used)." },
	{ "queue", "policy", CONF_ENUM, "round-robin", 0, 0,
	  conf_queue_policies, OFF(queue_policy),
	  "Which of the domains waiting for a destination a free session "
	  "serves next: each in turn, the one with the most entries, or the "
	  "one whose first entry has waited longest." },
	{ "queue", "age_cap", CONF_DURATION, "5m", SEC, DAY, NULL,
	  OFF(queue_age_cap),
	  "Under any policy, a domain not served for this long goes first, "
	  "so that no queue starves (seed 003: \"unless that longest queue "
	  "had not been processed for X minutes\")." },
	{ "queue", "dynamic_retry", CONF_BOOL, "yes", 0, 0, NULL,
	  OFF(queue_dynamic_retry),
	  "Adjust the retry limit at each governor interval: max_attempts "
	  "normally, retry_limit_low while the delivery failure rate "
	  "(attempts / successes) or the utilization of delivery slots is "
	  "high (seed 004 [0071]-[0077])." },
	{ "queue", "retry_limit_low", CONF_INT, "5", 1, 1000, NULL,
	  OFF(queue_retry_limit_low),
	  "The retry limit while failures or utilization are high (at most "
	  "max_attempts)." },
	{ "queue", "retry_dfr_high", CONF_INT, "7", 1, 1000, NULL,
	  OFF(queue_retry_dfr_high),
	  "A delivery failure rate above this lowers the retry limit." },
	{ "queue", "retry_dfr_low", CONF_INT, "4", 1, 1000, NULL,
	  OFF(queue_retry_dfr_low),
	  "A delivery failure rate below this raises it again." },
	{ "queue", "retry_utilization_high", CONF_INT, "100", 1, 1000, NULL,
	  OFF(queue_retry_utilization_high),
	  "Utilization of delivery slots (percent) above which the retry "
	  "limit is lowered, whatever the failure rate." },
	{ "queue", "retry_utilization_low", CONF_INT, "80", 1, 1000, NULL,
	  OFF(queue_retry_utilization_low),
	  "Utilization (percent) below which the failure rate decides "
	  "again." },

	/* [shaping] */
	{ "shaping", "group_by_mx", CONF_BOOL, "yes", 0, 0, NULL,
	  OFF(shaping_group_by_mx),
	  "Domains whose MX host sets are the same share one destination: "
	  "one set of connections and limits (queues stay per domain)." },
	{ "shaping", "adaptive", CONF_BOOL, "yes", 0, 0, NULL,
	  OFF(shaping_adaptive),
	  "Grow a destination's connections while its replies are fast and "
	  "positive; cut connections and rate on 421, 4.7.x, 450/451, "
	  "timeouts and connection failures, and learn its limit on "
	  "messages per connection." },
	{ "shaping", "max_message_rate", CONF_RATE, "0", 0, 1000000000,
	  NULL, OFF(shaping_max_message_rate),
	  "Most recipients per second (N/s), minute (N/m) or hour (N/h) to "
	  "one destination; 0: no limit." },
	{ "shaping", "max_messages_per_hour", CONF_INT, "0", 0, 1000000000,
	  NULL, OFF(shaping_max_messages_per_hour),
	  "Most recipients to one destination in an hour, spread evenly; 0: "
	  "no limit." },
	{ "shaping", "max_connection_rate", CONF_RATE, "0", 0, 1000000000,
	  NULL, OFF(shaping_max_connection_rate),
	  "Most new connections to one destination per second, minute or "
	  "hour; 0: no limit." },
	{ "shaping", "slow_reply", CONF_DURATION, "2s", 1, HOUR, NULL,
	  OFF(shaping_slow_reply),
	  "A transaction answered slower than this does not let its "
	  "destination grow." },
	{ "shaping", "probe_interval", CONF_DURATION, "5m", SEC, DAY, NULL,
	  OFF(shaping_probe_interval),
	  "After a cut, a destination keeps its lowered limits this long "
	  "before it tries more again." },
	{ "shaping", "rule", CONF_LIST, "", 0, 0, NULL, OFF(shaping_rule),
	  "A response rule for every destination: \"throttle REGEX\", "
	  "\"backoff DURATION REGEX\" or \"suspend DURATION REGEX\", the "
	  "regex (POSIX extended, any case) matched against \"CODE ESC "
	  "TEXT\" of each reply." },
	{ "shaping", "source", CONF_LIST, "", 0, 0, NULL,
	  OFF(shaping_source),
	  "Local addresses outgoing connections are bound to, taken in "
	  "turn; each has its own limits per destination. Empty: the "
	  "system's choice." },

	/* [inject] */
	{ "inject", "listen", CONF_STRING, "", 0, 0, NULL,
	  OFF(inject_listen),
	  "Address the daemon accepts mail on over ESMTP for relay, "
	  "ADDR:PORT (port 25 when left out); empty: no SMTP injection." },
	{ "inject", "http_listen", CONF_STRING, "", 0, 0, NULL,
	  OFF(inject_http_listen),
	  "Address of the injection's HTTP status endpoint, ADDR:PORT: GET "
	  "/status (backlog, backpressure, governor, destinations) and GET "
	  "/metrics (Prometheus), for clients in inject.trusted_networks "
	  "only; empty: none." },
	{ "inject", "tls_cert", CONF_STRING, "", 0, 0, NULL,
	  OFF(inject_tls_cert),
	  "PEM certificate chain for STARTTLS; with tls_key. Empty: no "
	  "STARTTLS (and AUTH only with plaintext_auth)." },
	{ "inject", "tls_key", CONF_STRING, "", 0, 0, NULL,
	  OFF(inject_tls_key), "PEM private key for STARTTLS." },
	{ "inject", "trusted_networks", CONF_LIST, "127.0.0.0/8 ::1/128", 0,
	  0, NULL, OFF(inject_trusted_networks),
	  "Clients in these networks (address/prefix, several per line) may "
	  "relay without AUTH, like Postfix's mynetworks; everyone else must "
	  "authenticate." },
	{ "inject", "spool_dir", CONF_STRING, "", 0, 0, NULL,
	  OFF(inject_spool_dir),
	  "Directory of the spool of accepted messages; empty: the store's "
	  "path with \".spool\" added." },
	{ "inject", "max_message_size", CONF_SIZE, "35M", 1 * KB, 1 * GB,
	  NULL, OFF(inject_max_message_size),
	  "Largest message accepted (announced as SIZE)." },
	{ "inject", "max_recipients", CONF_INT, "1000", 1, 100000, NULL,
	  OFF(inject_max_recipients),
	  "Recipients per message; more get 452 4.5.3." },
	{ "inject", "max_connections", CONF_INT, "1000", 1, 100000, NULL,
	  OFF(inject_max_connections),
	  "Simultaneous client connections; more get 421." },
	{ "inject", "max_auth_failures", CONF_INT, "3", 1, 100, NULL,
	  OFF(inject_max_auth_failures),
	  "Failed AUTH attempts before a session is closed with 421." },
	{ "inject", "auth_delay", CONF_DURATION, "1s", 0, MIN, NULL,
	  OFF(inject_auth_delay),
	  "A failed AUTH is answered after this, doubled for each further "
	  "failure from the same address (at most 15 s)." },
	{ "inject", "plaintext_auth", CONF_BOOL, "no", 0, 0, NULL,
	  OFF(inject_plaintext_auth),
	  "Offer AUTH without TLS (for tests on loopback only)." },
	{ "inject", "idle_timeout", CONF_DURATION, "5m", SEC, HOUR, NULL,
	  OFF(inject_idle_timeout),
	  "A client silent this long in a session is disconnected (RFC "
	  "5321 4.5.3.2.7)." },
	{ "inject", "data_timeout", CONF_DURATION, "10m", SEC, HOUR, NULL,
	  OFF(inject_data_timeout),
	  "Longest a client may take to send one message's DATA." },
	{ "inject", "backlog_max", CONF_INT, "100000", 1, 100000000, NULL,
	  OFF(inject_backlog_max),
	  "Recipients of injected mail not yet final above which injection "
	  "pauses (new sessions 421, MAIL 452: backpressure, SPEC D8)." },
	{ "inject", "backlog_resume", CONF_INT, "90", 1, 100, NULL,
	  OFF(inject_backlog_resume),
	  "Injection resumes when the backlog is below this percentage of "
	  "backlog_max." },
	{ "inject", "max_drain_time", CONF_DURATION, "0", 0, DAY, NULL,
	  OFF(inject_max_drain_time),
	  "Also pause while the backlog would take longer than this to "
	  "deliver at the current delivery rate; 0: not used." },

	/* [governor] */
	{ "governor", "target_rate", CONF_RATE, "140000/h", 1, 1000000000,
	  NULL, OFF(governor_target_rate),
	  "TARGET_DELIVERY_RATE of seed 004 Table 1: the delivery rate the "
	  "governor steers the number of delivery slots towards." },
	{ "governor", "damping", CONF_INT, "24", 0, 1000000, NULL,
	  OFF(governor_damping),
	  "AVAIL_PROCS_DAMPING_FACTOR: the most the number of slots may "
	  "change in a day, spread over the day's intervals." },
	{ "governor", "interval", CONF_DURATION, "3h", SEC, DAY, NULL,
	  OFF(governor_interval),
	  "The sample interval S: slots are recomputed once per interval." },
	{ "governor", "dynamic_damping", CONF_BOOL, "yes", 0, 0, NULL,
	  OFF(governor_dynamic_damping),
	  "Scale the step by utilization (Csdyn); no: the plain damped step "
	  "(Csdam). DONT_USE_DYNAMIC_DAMPING is the opposite of this." },
	{ "governor", "initial_slots", CONF_INT, "200", 1, 1000000, NULL,
	  OFF(governor_initial_slots),
	  "Delivery slots (simultaneous SMTP sessions) granted in the first "
	  "interval." },
	{ "governor", "min_slots", CONF_INT, "1", 1, 1000000, NULL,
	  OFF(governor_min_slots), "The governor never grants fewer." },
	{ "governor", "max_slots", CONF_INT, "10000", 1, 1000000, NULL,
	  OFF(governor_max_slots), "The governor never grants more." },

	/* [pop3_proxy] */
	{ "pop3_proxy", "listen", CONF_STRING, "", 0, 0, NULL,
	  OFF(pop3_proxy_listen),
	  "Address the POP3 edge proxy listens on, ADDR:PORT (port 110 when "
	  "left out); required for pop3-proxy." },
	{ "pop3_proxy", "listen_tls", CONF_STRING, "", 0, 0, NULL,
	  OFF(pop3_proxy_listen_tls),
	  "Address for POP3 over TLS from the first byte (POP3S, port 995 "
	  "when left out); empty: none. Needs tls_cert and tls_key." },
	{ "pop3_proxy", "tls_cert", CONF_STRING, "", 0, 0, NULL,
	  OFF(pop3_proxy_tls_cert),
	  "PEM certificate chain of the proxy; with tls_key, STLS is offered "
	  "on the plain listener." },
	{ "pop3_proxy", "tls_key", CONF_STRING, "", 0, 0, NULL,
	  OFF(pop3_proxy_tls_key),
	  "PEM private key of tls_cert." },
	{ "pop3_proxy", "backend", CONF_STRING, "", 0, 0, NULL,
	  OFF(pop3_proxy_backend),
	  "The POP3 server behind the proxy, HOST:PORT (port 110 when left "
	  "out, 995 with backend_tls = tls); required for pop3-proxy." },
	{ "pop3_proxy", "backend_tls", CONF_ENUM, "none", 0, 0,
	  conf_backend_tls, OFF(pop3_proxy_backend_tls),
	  "TLS to the backend: none, stls (STLS after the greeting, "
	  "required) or tls (from the first byte)." },
	{ "pop3_proxy", "backend_tls_verify", CONF_BOOL, "yes", 0, 0, NULL,
	  OFF(pop3_proxy_backend_tls_verify),
	  "Check the backend's certificate chain and name (the host of "
	  "pop3_proxy.backend)." },
	{ "pop3_proxy", "backend_ca_file", CONF_STRING, "", 0, 0, NULL,
	  OFF(pop3_proxy_backend_ca_file),
	  "PEM file of CAs trusted for the backend; empty: the system's "
	  "store." },
	{ "pop3_proxy", "interval", CONF_DURATION, "5m", SEC, DAY, NULL,
	  OFF(pop3_proxy_interval),
	  "Attenuation interval n: after a check found the mailbox empty, the "
	  "user's checks are answered \"no mail\" locally this long." },
	{ "pop3_proxy", "interval_max", CONF_DURATION, "0", 0, DAY, NULL,
	  OFF(pop3_proxy_interval_max),
	  "When set above interval, the interval is dynamic: interval when "
	  "the backend is idle, up to interval_max as its load grows (reply "
	  "latency against load_latency, open backend sessions against "
	  "load_sessions, whichever is higher); 0: a static interval." },
	{ "pop3_proxy", "load_latency", CONF_DURATION, "500ms", 1, MIN, NULL,
	  OFF(pop3_proxy_load_latency),
	  "Backend reply latency (a moving average of the login replies) "
	  "taken as full load." },
	{ "pop3_proxy", "load_sessions", CONF_INT, "500", 1, 1000000, NULL,
	  OFF(pop3_proxy_load_sessions),
	  "Open backend sessions taken as full load." },
	{ "pop3_proxy", "rule", CONF_ENUM, "time+demand", 0, 0,
	  conf_attenuations, OFF(pop3_proxy_rule),
	  "What lets a user's next check through: time+demand (the interval "
	  "ran out, or a new-mail notification came; the seed's preferred "
	  "rule), time, or demand (notifications only; the interval is then "
	  "only a safety net of one day)." },
	{ "pop3_proxy", "one_in", CONF_INT, "0", 0, 1000000, NULL,
	  OFF(pop3_proxy_one_in),
	  "When set to m, also let one check in m through while attenuated "
	  "(the seed's count rule); 0 turns it off." },
	{ "pop3_proxy", "fast_checks", CONF_INT, "3", 0, 8, NULL,
	  OFF(pop3_proxy_fast_checks),
	  "Fast-check rule: this many checks within fast_window while "
	  "attenuated let the last one through, unless their spacing is "
	  "regular (an automated client); 0 turns the rule off." },
	{ "pop3_proxy", "fast_window", CONF_DURATION, "30s", SEC, HOUR, NULL,
	  OFF(pop3_proxy_fast_window),
	  "The window of the fast-check rule." },
	{ "pop3_proxy", "fast_regular_cv", CONF_INT, "15", 0, 100, NULL,
	  OFF(pop3_proxy_fast_regular_cv),
	  "Fast checks whose intervals vary less than this (coefficient of "
	  "variation, in percent) are taken as automated and stay answered "
	  "locally." },
	{ "pop3_proxy", "opt_out", CONF_LIST, "", 0, 0, NULL,
	  OFF(pop3_proxy_opt_out),
	  "Mailbox names never attenuated: all their commands go to the "
	  "backend (repeat the key, or separate names with commas)." },
	{ "pop3_proxy", "session_timeout", CONF_DURATION, "2m", SEC, HOUR,
	  NULL, OFF(pop3_proxy_session_timeout),
	  "Session timer of a locally answered session: it is closed this "
	  "long after its login." },
	{ "pop3_proxy", "idle_timeout", CONF_DURATION, "10m", SEC, DAY, NULL,
	  OFF(pop3_proxy_idle_timeout),
	  "A client silent this long is disconnected (RFC 1939's autologout "
	  "timer, at least 10 minutes by the RFC)." },
	{ "pop3_proxy", "backend_timeout", CONF_DURATION, "30s", 100, HOUR,
	  NULL, OFF(pop3_proxy_backend_timeout),
	  "Longest wait for the backend to connect or answer." },
	{ "pop3_proxy", "max_users", CONF_INT, "1000000", 1, 100000000, NULL,
	  OFF(pop3_proxy_max_users),
	  "Entries in the user table; when it is full the idle entries "
	  "nearest to expiry are evicted." },
	{ "pop3_proxy", "max_sessions", CONF_INT, "10000", 1, 1000000, NULL,
	  OFF(pop3_proxy_max_sessions),
	  "Client connections at once; more are refused with -ERR [SYS/TEMP]." },
	{ "pop3_proxy", "max_auth_failures", CONF_INT, "3", 1, 100, NULL,
	  OFF(pop3_proxy_max_auth_failures),
	  "Failed logins on one connection before it is closed." },
	{ "pop3_proxy", "aggregate", CONF_BOOL, "no", 0, 0, NULL,
	  OFF(pop3_proxy_aggregate),
	  "Aggregate instead of attenuating (--aggregate): users log in "
	  "against the registry ([registry]) and see one mailbox made of all "
	  "their backend accounts." },
	{ "pop3_proxy", "auth_delay", CONF_DURATION, "1s", 0, 15 * SEC, NULL,
	  OFF(pop3_proxy_auth_delay),
	  "Aggregation: how long the -ERR to a failed login waits; doubled "
	  "with each further failure from the same client address in 15 "
	  "minutes, up to 15 s." },
	{ "pop3_proxy", "accounting_file", CONF_STRING, "", 0, 0, NULL,
	  OFF(pop3_proxy_accounting_file),
	  "Aggregation: append one JSON line per session here (user, client, "
	  "backends reached and failed and why, messages and octets "
	  "retrieved, deletions asked and applied, duration).  Empty: none." },
	{ "pop3_proxy", "notice", CONF_BOOL, "no", 0, 0, NULL,
	  OFF(pop3_proxy_notice),
	  "Aggregation: when some of a user's accounts cannot be reached, add "
	  "a short message at the end of the listing saying which and why "
	  "(one a day for the same accounts)." },
	{ "pop3_proxy", "xclient", CONF_BOOL, "yes", 0, 0, NULL,
	  OFF(pop3_proxy_xclient),
	  "Pass the client's address to the backend with XCLIENT when it "
	  "offers it (Dovecot with login_trusted_networks), so its logs and "
	  "auth penalties name the client, not the proxy." },
	{ "pop3_proxy", "gc_interval", CONF_DURATION, "1m", SEC, DAY, NULL,
	  OFF(pop3_proxy_gc_interval),
	  "How often entries past their expiry are removed from the user "
	  "table." },
	{ "pop3_proxy", "stats_interval", CONF_DURATION, "1m", SEC, DAY, NULL,
	  OFF(pop3_proxy_stats_interval),
	  "How often the counters are written to the log." },
	{ "pop3_proxy", "notify_listen", CONF_STRING, "", 0, 0, NULL,
	  OFF(pop3_proxy_notify_listen),
	  "Address of the NOTIFY line protocol (new-mail notifications); "
	  "empty: off." },
	{ "pop3_proxy", "notify_secret", CONF_STRING, "", 0, 0, NULL,
	  OFF(pop3_proxy_notify_secret),
	  "Shared secret that notifications must carry (NOTIFY MAILBOX "
	  "SECRET; the password of HTTP basic authentication). Empty: "
	  "notifications are accepted from loopback only. Never logged." },
	{ "pop3_proxy", "notify_allow", CONF_LIST, "127.0.0.0/8,::1/128", 0,
	  0, NULL, OFF(pop3_proxy_notify_allow),
	  "Networks (CIDR) notifications are accepted from, on both the "
	  "NOTIFY and the HTTP endpoint." },
	{ "pop3_proxy", "http_listen", CONF_STRING, "", 0, 0, NULL,
	  OFF(pop3_proxy_http_listen),
	  "Address of the HTTP endpoint: /metrics (Prometheus text) and "
	  "new-mail notifications from Dovecot's push_notification plugin "
	  "(OX driver, PUT with JSON); empty: off." },

	/* [registry] */
	{ "registry", "store", CONF_STRING, "", 0, 0, NULL,
	  OFF(registry_store),
	  "The store that holds the registry (users of the aggregating POP3 "
	  "proxy and their backend accounts); empty: store.path." },
	{ "registry", "key_file", CONF_STRING,
	  "/etc/mailroom/registry.key", 0, 0, NULL, OFF(registry_key_file),
	  "Key file of the registry: 32 random bytes, mode 0600, kept apart "
	  "from the store. Backend and APOP secrets are sealed with it "
	  "(AES-256-GCM); `mailroom registry` makes it when a new registry "
	  "has none. A lost key file loses the secrets." },
	{ "registry", "pbkdf2_iterations", CONF_INT, "50000", 1000, 10000000,
	  NULL, OFF(registry_pbkdf2_iterations),
	  "PBKDF2-HMAC-SHA256 iterations of the password verifiers made from "
	  "now on, for POP3 logins and sending accounts' SMTP AUTH alike "
	  "(those made before keep theirs)." },
	{ "registry", "workers", CONF_INT, "2", 1, 16, NULL,
	  OFF(registry_workers),
	  "Threads that check logins against the registry (the verifier is "
	  "slow on purpose), each with its own connection to the store." },
	{ "registry", "source", CONF_ENUM, "store", 0, 0,
	  conf_registry_sources, OFF(registry_source),
	  "Where the registry is read from: store, or ldap (a directory "
	  "with mailroom's schema, docs/REGISTRY.md; read only: it is "
	  "changed with the directory's own tools, and `mailroom registry` "
	  "only lists it). Sealed values in either are opened with "
	  "registry.key_file." },
	{ "registry", "ldap_uri", CONF_STRING, "", 0, 0, NULL,
	  OFF(registry_ldap_uri),
	  "The directory, as ldap://HOST:PORT or ldaps://HOST:PORT (TLS "
	  "from the first byte, the server's certificate checked against "
	  "the CAs of ldap.conf(5)). Required with source = ldap." },
	{ "registry", "ldap_base_dn", CONF_STRING, "", 0, 0, NULL,
	  OFF(registry_ldap_base_dn),
	  "Where users are searched for (the whole subtree), e.g. "
	  "ou=people,dc=example,dc=com. Required with source = ldap." },
	{ "registry", "ldap_bind_dn", CONF_STRING, "", 0, 0, NULL,
	  OFF(registry_ldap_bind_dn),
	  "The DN mailroom binds as to search; it must be able to read the "
	  "sealed attributes and mailroomVerifier. Empty: anonymous." },
	{ "registry", "ldap_bind_password_file", CONF_STRING, "", 0, 0, NULL,
	  OFF(registry_ldap_bind_password_file),
	  "File whose first line is ldap_bind_dn's password (never the "
	  "password itself in the configuration); refused if others may "
	  "read it." },
	{ "registry", "ldap_timeout", CONF_DURATION, "10s", 100, 5 * MIN,
	  NULL, OFF(registry_ldap_timeout),
	  "Longest wait for the directory: to connect, and for each bind "
	  "or search; the directory is also asked to stop a search then." },
};

const size_t conf_nparams = sizeof(conf_params) / sizeof(conf_params[0]);
