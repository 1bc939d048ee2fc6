/*
 * acct.c - format and append accounting records.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <unistd.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/mr_log.h"
#include "core/mr_utf8.h"
#include "core/xalloc.h"
#include "delivery/acct.h"
#include "delivery/csv.h"

struct acct {
	int		 fd;		/* O_APPEND */
	int		 format;
	_Atomic int	 error;		/* first write error, -errno */
};

static const char *const acct_type_names[] = {
	"delivered", "deferred", "bounced", "rejected", "backoff",
};

static const char acct_header[] = "time,type,recipient,line,domain,mx,host,"
    "attempt,code,dsn,reply,message_id,forensics\n";

const char *
acct_type_name(enum acct_type t)
{
	return acct_type_names[t];
}

/*
 * acct_cut_torn_line - a file that does not end in a newline was cut in
 * the middle of a record by a killed process: drop that partial line.
 */
static int
acct_cut_torn_line(int fd, off_t size, const char *path)
{
	char buf[4096];
	off_t end = size, from;
	ssize_t n, i;

	while (end > 0) {
		from = end > (off_t)sizeof(buf) ? end - (off_t)sizeof(buf) : 0;
		n = pread(fd, buf, (size_t)(end - from), from);
		if (n <= 0)
			return -1;
		if (end == size && buf[n - 1] == '\n')
			return 0;
		for (i = n; i > 0; i--) {
			if (buf[i - 1] == '\n') {
				mr_log_warn("acct", "file=%s event=torn-line "
				    "bytes=%lld action=removed", mr_q(path,
				    (size_t)-1), (long long)(size - (from +
				    i)));
				return ftruncate(fd, from + i);
			}
		}
		end = from;
	}
	return ftruncate(fd, 0);
}

struct acct *
acct_open(const char *path, int format, struct mr_buf *err)
{
	struct acct *a;
	struct stat st;
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0 || fstat(fd, &st) != 0) {
		mr_buf_printf(err, "cannot open accounting file %s: %s", path,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (st.st_size > 0 && acct_cut_torn_line(fd, st.st_size, path) != 0) {
		mr_buf_printf(err, "cannot repair accounting file %s: %s", path,
		    strerror(errno));
		close(fd);
		return NULL;
	}
	a = xcalloc(1, sizeof(*a));
	a->fd = fd;
	a->format = format;
	atomic_init(&a->error, 0);
	if (format == CONF_ACCT_CSV && st.st_size == 0)
		acct_append(a, acct_header, sizeof(acct_header) - 1);
	return a;
}

void
acct_append(struct acct *a, const char *p, size_t n)
{
	ssize_t w;
	int e = 0;

	while (n > 0) {
		w = write(a->fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			e = -errno;
			break;
		}
		p += w;
		n -= (size_t)w;
	}
	if (e != 0) {
		int zero = 0;

		atomic_compare_exchange_strong(&a->error, &zero, e);
	}
}

int
acct_error(const struct acct *a)
{
	return atomic_load(&((struct acct *)a)->error);
}

int
acct_sync(struct acct *a)
{
	return fdatasync(a->fd) == 0 ? 0 : -errno;
}

int
acct_close(struct acct **ap)
{
	struct acct *a = *ap;
	int r;

	if (a == NULL)
		return 0;
	r = acct_error(a);
	if (close(a->fd) != 0 && r == 0)
		r = -errno;
	free(a);
	*ap = NULL;
	return r;
}

/* acct_utf8_len - length of the valid UTF-8 character at p, or 0. */
static size_t
acct_utf8_len(const char *p, size_t n)
{
	unsigned char c = (unsigned char)*p;
	size_t k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;

	return k && k <= n && mr_utf8_valid(p, k, NULL) ? k : 0;
}

static void
acct_json_string(struct mr_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, k;
	unsigned char c;

	mr_buf_putc(b, '"');
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			mr_buf_putc(b, '\\');
			mr_buf_putc(b, (char)c);
		} else if (c < 0x20 || c == 0x7f) {
			mr_buf_puts(b, "\\u00");
			mr_buf_putc(b, hex[c >> 4]);
			mr_buf_putc(b, hex[c & 15]);
		} else if (c < 0x80) {
			mr_buf_putc(b, (char)c);
		} else if ((k = acct_utf8_len(s + i, n - i)) > 0) {
			mr_buf_append(b, s + i, k);	/* UTF-8 as is */
			i += k - 1;
		} else {
			/* JSON is UTF-8: a byte that is not (a rejected
			 * row's address may hold any) is replaced. */
			mr_buf_puts(b, "\\ufffd");
		}
	}
	mr_buf_putc(b, '"');
}

static void
acct_field(const struct acct *a, struct mr_buf *b, const char *key, const char *s,
    size_t n, bool first)
{
	if (s == NULL) {
		s = "";
		n = 0;
	} else if (n == (size_t)-1) {
		n = strlen(s);
	}
	if (a->format == CONF_ACCT_JSON) {
		mr_buf_printf(b, "%s\"%s\":", first ? "{" : ",", key);
		acct_json_string(b, s, n);
	} else {
		if (!first)
			mr_buf_putc(b, ',');
		csv_write_field(b, s, n);
	}
}

static void
acct_number(const struct acct *a, struct mr_buf *b, const char *key, unsigned v,
    bool empty_if_zero)
{
	if (a->format == CONF_ACCT_JSON) {
		if (empty_if_zero && v == 0)
			mr_buf_printf(b, ",\"%s\":null", key);
		else
			mr_buf_printf(b, ",\"%s\":%u", key, v);
	} else if (empty_if_zero && v == 0) {
		mr_buf_putc(b, ',');
	} else {
		mr_buf_printf(b, ",%u", v);
	}
}

void
acct_format(const struct acct *a, const struct acct_record *r,
    struct mr_buf *b)
{
	char ts[32];

	mr_iso8601_ms(r->wall_ms ? r->wall_ms : mr_wall_ms(), ts, sizeof(ts));
	acct_field(a, b, "time", ts, (size_t)-1, true);
	acct_field(a, b, "type", acct_type_names[r->type], (size_t)-1, false);
	acct_field(a, b, "recipient", r->rcpt, r->rcpt ? r->rcpt_len : 0,
	    false);
	acct_number(a, b, "line", r->line, true);	/* lines start at 1 */
	acct_field(a, b, "domain", r->domain, (size_t)-1, false);
	acct_field(a, b, "mx", r->mx, (size_t)-1, false);
	acct_field(a, b, "host", r->host, (size_t)-1, false);
	acct_number(a, b, "attempt", r->attempt, true);
	acct_number(a, b, "code", r->code, true);
	acct_field(a, b, "dsn", r->dsn, (size_t)-1, false);
	acct_field(a, b, "reply", r->reply, (size_t)-1, false);
	acct_field(a, b, "message_id", r->message_id, (size_t)-1, false);
	acct_field(a, b, "forensics", r->forensics, (size_t)-1, false);
	mr_buf_puts(b, a->format == CONF_ACCT_JSON ? "}\n" : "\n");
}

void
acct_write(struct acct *a, const struct acct_record *r)
{
	struct mr_buf b = MR_BUF_INIT;

	acct_format(a, r, &b);
	acct_append(a, b.data, b.len);
	mr_buf_release(&b);
}

/* acct_json_field - the string value of "key" in a JSON line we wrote
 * (escapes kept as they are: an address holds none that matter). */
static bool
acct_json_field(const char *p, size_t n, const char *key, const char **v_r,
    size_t *len_r)
{
	char pat[32];
	const char *v, *e, *end = p + n;
	size_t kl;

	kl = (size_t)snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	v = memmem(p, n, pat, kl);
	if (v == NULL)
		return false;
	v += kl;
	for (e = v; e < end && *e != '"'; e++)
		if (*e == '\\' && e + 1 < end)
			e++;
	*v_r = v;
	*len_r = (size_t)(e - v);
	return e < end;
}

int
acct_scan_finals(const char *path, int format, acct_final_cb *cb, void *arg)
{
	struct csv_parser *cp;
	const struct csv_field *f;
	enum csv_result cr;
	const char *map, *line, *nl, *type, *rcpt;
	size_t pos, tlen, rlen;
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) != 0 || st.st_size == 0) {
		close(fd);
		return 0;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return -errno;
	if (format == CONF_ACCT_JSON) {
		for (line = map; line < map + st.st_size; line = nl + 1) {
			nl = memchr(line, '\n', (size_t)(map + st.st_size -
			    line));
			if (nl == NULL)
				break;
			if (!acct_json_field(line, (size_t)(nl - line), "type",
			    &type, &tlen) || !acct_json_field(line,
			    (size_t)(nl - line), "recipient", &rcpt, &rlen))
				continue;
			if (tlen == 9 && memcmp(type, "delivered", 9) == 0)
				cb(arg, rcpt, rlen, false);
			else if (tlen == 7 && memcmp(type, "bounced", 7) == 0)
				cb(arg, rcpt, rlen, true);
		}
	} else {
		cp = csv_parser_new(1 << 20);
		pos = 0;
		while ((cr = csv_next(cp, map, (size_t)st.st_size, &pos)) !=
		    CSV_EOF) {
			if (cr != CSV_RECORD || csv_nfields(cp) < 3)
				continue;
			f = csv_fields(cp);
			if (f[1].len == 9 && memcmp(f[1].p, "delivered", 9) == 0)
				cb(arg, f[2].p, f[2].len, false);
			else if (f[1].len == 7 &&
			    memcmp(f[1].p, "bounced", 7) == 0)
				cb(arg, f[2].p, f[2].len, true);
		}
		csv_parser_free(&cp);
	}
	munmap((void *)map, (size_t)st.st_size);
	return 0;
}
