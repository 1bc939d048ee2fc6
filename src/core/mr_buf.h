/*
 * mr_buf.h - the one growable byte buffer, for building strings away from
 * the socket path (socket I/O uses libevent's evbuffer).
 *
 * A struct mr_buf is binary-safe and always NUL-terminated: data[len] is
 * '\0' and len excludes it.  No header hides before data.  The buffer owns
 * data; mr_buf_release() frees it and leaves an empty, reusable buffer.  A
 * zero-initialised struct (MR_BUF_INIT) is a valid empty buffer.  Growth
 * aborts on exhaustion (xalloc.h).  Not thread-safe: one owner at a time.
 */
#ifndef MR_BUF_H
#define MR_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct mr_buf {
	char	*data;		/* owned; NULL only while cap == 0 */
	size_t	 len;		/* bytes in use, excluding the NUL */
	size_t	 cap;		/* bytes allocated */
};

#define MR_BUF_INIT { NULL, 0, 0 }

void mr_buf_release(struct mr_buf *b);
/* mr_buf_reserve - make room for n more bytes (plus the NUL). */
void mr_buf_reserve(struct mr_buf *b, size_t n);
void mr_buf_append(struct mr_buf *b, const void *p, size_t n);
void mr_buf_puts(struct mr_buf *b, const char *s);
void mr_buf_putc(struct mr_buf *b, char c);
void mr_buf_printf(struct mr_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void mr_buf_vprintf(struct mr_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* mr_buf_consume - drop n bytes from the front (all if n >= len). */
void mr_buf_consume(struct mr_buf *b, size_t n);
/* mr_buf_truncate - keep the first n bytes (n <= len). */
void mr_buf_truncate(struct mr_buf *b, size_t n);
/* mr_buf_reset - empty the buffer and keep its memory. */
void mr_buf_reset(struct mr_buf *b);
/* mr_buf_cstr - the contents as a C string; never NULL. */
const char *mr_buf_cstr(const struct mr_buf *b);

#endif
