/*
 * mr_log.h - structured logging: one event per line, key=value.
 *
 * A line reads "TIME LEVEL MODULE key=value ..."; callers pass the module
 * and a printf format that starts with the session or campaign id where
 * one exists (house style rule 29).  Values that may hold spaces go through
 * mr_q(), which quotes and escapes them.  Credentials are never passed in:
 * callers mask them (rule 30).
 *
 * Each line is formatted in a thread-local buffer and written with a single
 * write(2), so lines from several threads never interleave.  Configuration
 * (level, trace mask, destination) is set in main before threads start and
 * read-only afterwards.
 */
#ifndef MR_LOG_H
#define MR_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum mr_log_level {
	MR_LOG_ERR = 0,
	MR_LOG_WARN,
	MR_LOG_INFO,
	MR_LOG_DEBUG,
};

/* Trace categories: debug output switched on per subsystem at run time. */
enum mr_trace {
	MR_TRACE_SMTP = 1u << 0,	/* every SMTP line sent and received */
	MR_TRACE_DNS = 1u << 1,		/* queries, answers and cache */
	MR_TRACE_QUEUE = 1u << 2,	/* queue and scheduler decisions */
	MR_TRACE_TLS = 1u << 3,		/* TLS handshakes */
	MR_TRACE_CONF = 1u << 4,	/* configuration as loaded */
};

void mr_log_set_level(enum mr_log_level level);
enum mr_log_level mr_log_get_level(void);
/* mr_log_set_trace - enable categories; 0 disables all. */
void mr_log_set_trace(unsigned mask);
/* mr_log_parse_trace - "smtp,dns" to a mask; -1 on an unknown name. */
int mr_log_parse_trace(const char *list, unsigned *mask_r);
/* mr_log_parse_level - "err|warn|info|debug"; -1 when unknown. */
int mr_log_parse_level(const char *name, enum mr_log_level *level_r);
/*
 * mr_log_open - send log lines to path (appended), or to stderr when path
 * is NULL or empty.  Returns 0 or a negated errno.
 */
int mr_log_open(const char *path);
/* mr_log_set_tty_clear - prefix lines with "clear line" (live progress). */
void mr_log_set_tty_clear(bool on);
bool mr_log_to_tty(void);

bool mr_log_enabled(enum mr_log_level level);
bool mr_trace_enabled(enum mr_trace cat);

void mr_log(enum mr_log_level level, const char *module, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));
void mr_trace(enum mr_trace cat, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define mr_log_err(mod, ...)	mr_log(MR_LOG_ERR, (mod), __VA_ARGS__)
#define mr_log_warn(mod, ...)	mr_log(MR_LOG_WARN, (mod), __VA_ARGS__)
#define mr_log_info(mod, ...)	mr_log(MR_LOG_INFO, (mod), __VA_ARGS__)
#define mr_log_debug(mod, ...)						\
	do {								\
		if (mr_log_enabled(MR_LOG_DEBUG))			\
			mr_log(MR_LOG_DEBUG, (mod), __VA_ARGS__);	\
	} while (0)
#define MR_TRACE(cat, mod, ...)						\
	do {								\
		if (mr_trace_enabled(cat))				\
			mr_trace((cat), (mod), __VA_ARGS__);		\
	} while (0)

/*
 * mr_q - s (n bytes; n == (size_t)-1 means strlen) as a log value: bare if
 * it holds only safe characters, otherwise in double quotes with \", \\ and
 * \xNN escapes; values over 256 bytes are cut and marked "...".  Returns a
 * thread-local buffer that stays valid for the next 7 calls in the thread.
 */
const char *mr_q(const char *s, size_t n);

/* mr_panic - log file, line and message at level err, then abort(). */
#define mr_panic(...) mr_panic_at(__FILE__, __LINE__, __VA_ARGS__)
void mr_panic_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

/* MR_ASSERT - a broken invariant is a bug: panic (rule 17). */
#define MR_ASSERT(cond)							\
	do {								\
		if (!(cond))						\
			mr_panic_at(__FILE__, __LINE__,			\
			    "assertion failed: %s", #cond);		\
	} while (0)

#endif
