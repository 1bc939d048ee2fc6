/*
 * conf.h - the configuration: every parameter, its type, default, bounds
 * and documentation, declared once (conf_params.c), loaded from an INI file
 * (inih) and from command-line overrides, then immutable.
 *
 * Lifecycle: conf_init() fills in defaults; conf_load_file() and conf_set()
 * apply the file and the overrides; conf_finish() checks cross-parameter
 * rules.  After that the struct is only read, through a const pointer,
 * from any thread.  conf_release() frees the strings and lists it owns.
 *
 * Errors: loaders return 0 or a negative MR_E* code and write a message
 * naming the file, line and key into err (an mr_buf owned by the caller).
 */
#ifndef MR_CONF_H
#define MR_CONF_H

#include <stdbool.h>
#include <stdio.h>

#include "core/mr_buf.h"

struct conf_list {
	char	**v;		/* owned strings */
	size_t	  n;
};

enum conf_acct_format { CONF_ACCT_CSV, CONF_ACCT_JSON };
/* pop3_proxy.backend_tls: how the proxy talks to its backend. */
enum conf_backend_tls {
	CONF_BTLS_NONE,		/* plain POP3 */
	CONF_BTLS_STLS,		/* plain, then STLS (RFC 2595), required */
	CONF_BTLS_TLS,		/* TLS from the first byte (POP3S) */
};
/* pop3_proxy.rule: which events end a user's attenuation (seed 000). */
enum conf_attenuation {
	CONF_ATT_TIME_DEMAND,	/* the interval, or a new-mail notification */
	CONF_ATT_TIME,		/* the interval only */
	CONF_ATT_DEMAND,	/* a notification only */
};
/* registry.source: where the registry is read from (SPEC A1). */
enum conf_registry_source {
	CONF_REG_STORE,		/* the store (registry.store) */
	CONF_REG_LDAP,		/* an LDAP directory, read only */
};
/* queue.policy: which waiting domain a session serves next (SPEC D3). */
enum conf_queue_policy {
	CONF_QP_ROUND_ROBIN,	/* each in turn */
	CONF_QP_LONGEST,	/* the most entries first */
	CONF_QP_OLDEST,		/* the longest-waiting head entry first */
};
/* What a response rule does to the destination whose reply matched. */
enum conf_shape_action {
	CONF_SHAPE_THROTTLE,	/* as a 421: cut connections and rate */
	CONF_SHAPE_BACKOFF,	/* send nothing new for a while */
	CONF_SHAPE_SUSPEND,	/* that, and close its idle connections */
};

/*
 * A response rule (shaping.rule, or rule in a [destination] section):
 * "ACTION [DURATION] REGEX", the regex a POSIX extended one, matched
 * without regard to case against "CODE ESC TEXT" of a server's reply.
 */
struct conf_shape_rule {
	int		 action;	/* enum conf_shape_action */
	long long	 ms;		/* backoff, suspend: for how long */
	char		*regex;		/* owned */
};

/*
 * A [destination PATTERN] section: limits for every destination whose
 * domain or MX host name matches the glob PATTERN (first section wins).
 * Numbers left out are -1, adaptive left out is -1.
 */
struct conf_dest {
	char		*pattern;	/* owned, lower case */
	char		*where;		/* "file:line" of its header */
	long long	 max_connections;
	long long	 initial_connections;
	long long	 messages_per_connection;
	long long	 max_message_rate;	/* per hour */
	long long	 max_messages_per_hour;
	long long	 max_connection_rate;	/* per hour */
	int		 adaptive;
	struct conf_list rules;		/* validated rule strings */
};

/*
 * A [pool NAME] section: the local source addresses outgoing connections
 * of the campaigns and sending accounts it names are bound to, in turn
 * (PowerMTA's virtual MTA pool, KumoMTA's egress pool).  Everything else
 * goes out from shaping.source.  Validated when loaded: at least one
 * source, each an IPv4 or IPv6 address; an account or a campaign in at
 * most one pool.
 */
struct conf_pool {
	char		*name;		/* owned */
	char		*where;		/* "file:line" of its header */
	struct conf_list source;
	struct conf_list account;	/* sending account names */
	struct conf_list campaign;	/* campaign names */
};

enum conf_tls_policy {
	CONF_TLS_NONE,		/* never STARTTLS */
	CONF_TLS_MAY,		/* STARTTLS when offered, no verification */
	CONF_TLS_ENCRYPT,	/* STARTTLS required, no verification */
	CONF_TLS_VERIFY,	/* STARTTLS required, chain and name checked */
};

/*
 * struct mr_config - one field per parameter.  Durations are milliseconds,
 * sizes bytes.  Field names are section_key.
 */
struct mr_config {
	/* [general] */
	char		*general_hostname;
	long long	 general_workers;
	int		 general_log_level;	/* enum mr_log_level */
	char		*general_log_file;
	char		*general_log_trace;

	/* [send] */
	char		*send_mail_from;
	char		*send_message_id_domain;
	char		*send_accounting_file;
	int		 send_accounting_format;
	char		*send_reject_file;
	char		*send_forensics_dir;
	long long	 send_forensics_max;
	long long	 send_progress_interval;
	long long	 send_max_rcpt_per_message;
	long long	 send_max_row_size;
	long long	 send_max_message_size;
	long long	 send_max_backlog;

	char		*send_account;
	char		*send_pool;

	/* [store] */
	char		*store_path;
	long long	 store_busy_timeout;
	long long	 store_lease_time;

	/* [recovery] */
	char		*recovery_journal_dir;
	long long	 recovery_chunk_size;
	long long	 recovery_segment_size;
	long long	 recovery_sync_interval;
	long long	 recovery_snapshot_interval;

	/* [daemon] */
	long long	 daemon_poll_interval;
	long long	 daemon_max_campaigns;

	/* [dns] */
	struct conf_list dns_resolver;
	struct conf_list dns_route;
	long long	 dns_timeout;
	long long	 dns_tries;
	long long	 dns_min_ttl;
	long long	 dns_max_ttl;
	long long	 dns_negative_ttl;

	/* [smtp] */
	long long	 smtp_port;
	long long	 smtp_connect_timeout;
	long long	 smtp_greeting_timeout;
	long long	 smtp_ehlo_timeout;
	long long	 smtp_starttls_timeout;
	long long	 smtp_mail_timeout;
	long long	 smtp_rcpt_timeout;
	long long	 smtp_data_timeout;
	long long	 smtp_data_block_timeout;
	long long	 smtp_data_done_timeout;
	long long	 smtp_quit_timeout;
	long long	 smtp_idle_timeout;
	long long	 smtp_max_connections;
	long long	 smtp_initial_connections;
	long long	 smtp_max_messages_per_connection;
	long long	 smtp_reply_line_max;
	bool		 smtp_pipelining;
	int		 smtp_tls_policy;
	char		*smtp_tls_ca_file;

	/* [queue] */
	long long	 queue_max_length;
	int		 queue_policy;		/* enum conf_queue_policy */
	long long	 queue_age_cap;
	bool		 queue_dynamic_retry;
	long long	 queue_retry_limit_low;
	long long	 queue_retry_dfr_high;
	long long	 queue_retry_dfr_low;
	long long	 queue_retry_utilization_high;	/* percent */
	long long	 queue_retry_utilization_low;
	long long	 queue_retry_base;
	long long	 queue_retry_max_interval;
	long long	 queue_max_attempts;
	long long	 queue_max_age;
	long long	 queue_host_down_time;

	/* [shaping] (rates are per hour) */
	bool		 shaping_group_by_mx;
	bool		 shaping_adaptive;
	long long	 shaping_max_message_rate;
	long long	 shaping_max_messages_per_hour;
	long long	 shaping_max_connection_rate;
	long long	 shaping_slow_reply;
	long long	 shaping_probe_interval;
	struct conf_list shaping_rule;
	struct conf_list shaping_source;
	struct conf_dest *shaping_dests;	/* [destination ...] */
	size_t		 shaping_ndests;
	struct conf_pool *pools;		/* [pool ...] */
	size_t		 npools;

	/* [inject] (SPEC D17, D8) */
	char		*inject_listen;
	char		*inject_http_listen;
	char		*inject_tls_cert;
	char		*inject_tls_key;
	struct conf_list inject_trusted_networks;
	char		*inject_spool_dir;	/* "": store.path + ".spool" */
	long long	 inject_max_message_size;
	long long	 inject_max_recipients;
	long long	 inject_max_connections;
	long long	 inject_max_auth_failures;
	long long	 inject_auth_delay;
	bool		 inject_plaintext_auth;
	long long	 inject_idle_timeout;
	long long	 inject_data_timeout;
	long long	 inject_backlog_max;
	long long	 inject_backlog_resume;	/* percent of max */
	long long	 inject_max_drain_time;	/* 0: not used */

	/* [governor] (SPEC D9, seed 004 Table 1) */
	long long	 governor_target_rate;	/* messages per hour */
	long long	 governor_damping;	/* slots per day */
	long long	 governor_interval;
	bool		 governor_dynamic_damping;
	long long	 governor_initial_slots;
	long long	 governor_min_slots;
	long long	 governor_max_slots;

	/* [pop3_proxy] */
	char		*pop3_proxy_listen;
	char		*pop3_proxy_listen_tls;
	char		*pop3_proxy_tls_cert;
	char		*pop3_proxy_tls_key;
	char		*pop3_proxy_backend;
	int		 pop3_proxy_backend_tls;	/* enum conf_backend_tls */
	bool		 pop3_proxy_backend_tls_verify;
	char		*pop3_proxy_backend_ca_file;
	long long	 pop3_proxy_interval;
	long long	 pop3_proxy_interval_max;
	long long	 pop3_proxy_load_latency;
	long long	 pop3_proxy_load_sessions;
	int		 pop3_proxy_rule;	/* enum conf_attenuation */
	long long	 pop3_proxy_one_in;
	long long	 pop3_proxy_fast_checks;
	long long	 pop3_proxy_fast_window;
	long long	 pop3_proxy_fast_regular_cv;
	struct conf_list pop3_proxy_opt_out;
	long long	 pop3_proxy_session_timeout;
	long long	 pop3_proxy_idle_timeout;
	long long	 pop3_proxy_backend_timeout;
	long long	 pop3_proxy_max_users;
	long long	 pop3_proxy_max_sessions;
	long long	 pop3_proxy_max_auth_failures;
	bool		 pop3_proxy_aggregate;
	long long	 pop3_proxy_auth_delay;
	char		*pop3_proxy_accounting_file;
	bool		 pop3_proxy_notice;
	bool		 pop3_proxy_xclient;
	long long	 pop3_proxy_gc_interval;
	long long	 pop3_proxy_stats_interval;
	char		*pop3_proxy_notify_listen;
	char		*pop3_proxy_notify_secret;
	struct conf_list pop3_proxy_notify_allow;
	char		*pop3_proxy_http_listen;

	/* [registry] */
	char		*registry_store;	/* "": store.path */
	char		*registry_key_file;
	long long	 registry_pbkdf2_iterations;
	long long	 registry_workers;
	int		 registry_source;	/* enum conf_registry_source */
	char		*registry_ldap_uri;
	char		*registry_ldap_base_dn;
	char		*registry_ldap_bind_dn;
	char		*registry_ldap_bind_password_file;
	long long	 registry_ldap_timeout;
};

void conf_init(struct mr_config *cfg);
void conf_release(struct mr_config *cfg);
/* conf_load_file - apply an INI file; unknown keys and bad values fail. */
int conf_load_file(struct mr_config *cfg, const char *path,
    struct mr_buf *err);
/*
 * conf_set - apply one "section.key" = value (a command-line override).
 * Overriding a list parameter replaces its file values on the first call
 * and appends on later calls.
 */
int conf_set(struct mr_config *cfg, const char *key, const char *value,
    struct mr_buf *err);
/* conf_finish - checks that involve several parameters. */
int conf_finish(struct mr_config *cfg, struct mr_buf *err);

/* conf_write_doc - the Markdown reference of every parameter. */
void conf_write_doc(FILE *fp);
/* conf_write_effective - every parameter with its current value, as INI. */
void conf_write_effective(const struct mr_config *cfg, FILE *fp);

/* Value parsers, shared with the command line. */
int conf_parse_duration(const char *s, long long *ms_r);
int conf_parse_size(const char *s, long long *bytes_r);
int conf_parse_bool(const char *s, bool *b_r);
/* conf_parse_rate - "N", "N/s", "N/m" or "N/h" as a number per hour. */
int conf_parse_rate(const char *s, long long *per_hour_r);
/*
 * conf_parse_shape_rule - one response rule (see struct conf_shape_rule);
 * the regex is compiled to check it.  r's regex is owned by the caller
 * (conf_shape_rule_release()).
 */
int conf_parse_shape_rule(const char *s, struct conf_shape_rule *r,
    struct mr_buf *err);
void conf_shape_rule_release(struct conf_shape_rule *r);
/* conf_pool_find - the [pool] section called name, or NULL. */
const struct conf_pool *conf_pool_find(const struct mr_config *cfg,
    const char *name);
/*
 * conf_pool_for - the pool a campaign sends from: send.pool when set,
 * else the pool naming the campaign, else the one naming the account
 * (either may be NULL or ""); NULL for shaping.source.
 */
const struct conf_pool *conf_pool_for(const struct mr_config *cfg,
    const char *campaign, const char *account);
/* conf_pool_naming - the same without send.pool (mail injected over
 * SMTP goes by its account only). */
const struct conf_pool *conf_pool_naming(const struct mr_config *cfg,
    const char *campaign, const char *account);
/* conf_dest_match - the first [destination] section matching name. */
const struct conf_dest *conf_dest_match(const struct mr_config *cfg,
    const char *name);

#endif
