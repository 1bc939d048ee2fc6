/*
 * mr_log.c - key=value log lines written atomically with one write(2).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "mr_log.h"

#define MR_LOG_LINE_MAX	4096
#define MR_Q_SLOTS	8
#define MR_Q_MAX	256

static int mr_log_fd = STDERR_FILENO;
static enum mr_log_level mr_log_level_cur = MR_LOG_INFO;
static unsigned mr_log_trace_mask;
static bool mr_log_clear;

static const char *const mr_log_level_names[] = {
	"err", "warn", "info", "debug",
};

static const struct {
	const char	*name;
	unsigned	 bit;
} mr_log_trace_names[] = {
	{ "smtp", MR_TRACE_SMTP },
	{ "dns", MR_TRACE_DNS },
	{ "queue", MR_TRACE_QUEUE },
	{ "tls", MR_TRACE_TLS },
	{ "conf", MR_TRACE_CONF },
	{ "all", ~0u },
};

void
mr_log_set_level(enum mr_log_level level)
{
	mr_log_level_cur = level;
}

enum mr_log_level
mr_log_get_level(void)
{
	return mr_log_level_cur;
}

void
mr_log_set_trace(unsigned mask)
{
	mr_log_trace_mask = mask;
}

int
mr_log_parse_level(const char *name, enum mr_log_level *level_r)
{
	size_t i;

	for (i = 0; i < sizeof(mr_log_level_names) /
	    sizeof(mr_log_level_names[0]); i++) {
		if (strcasecmp(name, mr_log_level_names[i]) == 0) {
			*level_r = (enum mr_log_level)i;
			return 0;
		}
	}
	return -1;
}

int
mr_log_parse_trace(const char *list, unsigned *mask_r)
{
	const char *p = list, *e;
	unsigned mask = 0;
	size_t i, n;
	bool found;

	while (*p) {
		while (*p == ',' || *p == ' ')
			p++;
		if (*p == '\0')
			break;
		e = p + strcspn(p, ", ");
		n = (size_t)(e - p);
		found = false;
		for (i = 0; i < sizeof(mr_log_trace_names) /
		    sizeof(mr_log_trace_names[0]); i++) {
			if (strlen(mr_log_trace_names[i].name) == n &&
			    strncasecmp(p, mr_log_trace_names[i].name, n) == 0) {
				mask |= mr_log_trace_names[i].bit;
				found = true;
			}
		}
		if (!found)
			return -1;
		p = e;
	}
	*mask_r = mask;
	return 0;
}

int
mr_log_open(const char *path)
{
	int fd;

	if (path == NULL || *path == '\0') {
		mr_log_fd = STDERR_FILENO;
		return 0;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	mr_log_fd = fd;
	return 0;
}

void
mr_log_set_tty_clear(bool on)
{
	mr_log_clear = on;
}

bool
mr_log_to_tty(void)
{
	return isatty(mr_log_fd) == 1;
}

bool
mr_log_enabled(enum mr_log_level level)
{
	return level <= mr_log_level_cur;
}

bool
mr_trace_enabled(enum mr_trace cat)
{
	return (mr_log_trace_mask & (unsigned)cat) != 0;
}

static void mr_log_write(const char *level, const char *module,
    const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

static void
mr_log_write(const char *level, const char *module, const char *fmt,
    va_list ap)
{
	char line[MR_LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	size_t n = 0, off;
	ssize_t w;
	int r;

	if (mr_log_clear)
		n = (size_t)snprintf(line, sizeof(line), "\r\033[K");
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n += strftime(line + n, sizeof(line) - n, "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s ",
	    ts.tv_nsec / 1000000, level, module);
	n += (size_t)r;
	r = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	if (r < 0)
		r = 0;
	if ((size_t)r >= sizeof(line) - n - 1) {
		/* Truncated: mark it so that nobody mistakes it for whole. */
		n = sizeof(line) - 5;
		memcpy(line + n, "...", 3);
		n += 3;
	} else {
		n += (size_t)r;
	}
	line[n++] = '\n';
	for (off = 0; off < n; off += (size_t)w) {
		w = write(mr_log_fd, line + off, n - off);
		if (w < 0) {
			if (errno == EINTR) {
				w = 0;
				continue;
			}
			return;
		}
	}
}

void
mr_log(enum mr_log_level level, const char *module, const char *fmt, ...)
{
	va_list ap;

	if (!mr_log_enabled(level))
		return;
	va_start(ap, fmt);
	mr_log_write(mr_log_level_names[level], module, fmt, ap);
	va_end(ap);
}

void
mr_trace(enum mr_trace cat, const char *module, const char *fmt, ...)
{
	va_list ap;

	if (!mr_trace_enabled(cat))
		return;
	va_start(ap, fmt);
	mr_log_write("trace", module, fmt, ap);
	va_end(ap);
}

const char *
mr_q(const char *s, size_t n)
{
	static _Thread_local char slots[MR_Q_SLOTS][MR_Q_MAX * 4 + 8];
	static _Thread_local unsigned next;
	static const char hex[] = "0123456789abcdef";
	char *out = slots[next++ % MR_Q_SLOTS], *o = out;
	bool bare = true;
	size_t i, lim;
	unsigned char c;

	if (s == NULL)
		return "-";
	if (n == (size_t)-1)
		n = strlen(s);
	lim = n > MR_Q_MAX ? MR_Q_MAX : n;
	for (i = 0; i < lim; i++) {
		c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f || c == '"' || c == '=' ||
		    c == '\\')
			bare = false;
	}
	if (bare && n == lim && n > 0) {
		memcpy(out, s, n);
		out[n] = '\0';
		return out;
	}
	*o++ = '"';
	for (i = 0; i < lim; i++) {
		c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c < ' ' || c == 0x7f) {
			*o++ = '\\';
			*o++ = 'x';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)c;	/* UTF-8 passes through */
		}
	}
	if (lim < n) {
		memcpy(o, "...", 3);
		o += 3;
	}
	*o++ = '"';
	*o = '\0';
	return out;
}

void
mr_panic_at(const char *file, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mr_log(MR_LOG_ERR, "panic", "file=%s line=%d msg=%s", file, line,
	    mr_q(msg, (size_t)-1));
	abort();
}
