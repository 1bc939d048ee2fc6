/*
 * mr_buf.c - growable, NUL-terminated byte buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mr_buf.h"
#include "mr_log.h"
#include "xalloc.h"

void
mr_buf_release(struct mr_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
mr_buf_reserve(struct mr_buf *b, size_t n)
{
	size_t need, cap;

	if (n > (size_t)-1 / 2 - b->len)
		mr_panic("mr_buf: size overflow");
	need = b->len + n + 1;
	if (need <= b->cap)
		return;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void
mr_buf_append(struct mr_buf *b, const void *p, size_t n)
{
	mr_buf_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
mr_buf_puts(struct mr_buf *b, const char *s)
{
	mr_buf_append(b, s, strlen(s));
}

void
mr_buf_putc(struct mr_buf *b, char c)
{
	mr_buf_reserve(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}

void
mr_buf_vprintf(struct mr_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	mr_buf_reserve(b, 64);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	if (n < 0)
		mr_panic("mr_buf: bad format \"%s\"", fmt);
	if ((size_t)n >= b->cap - b->len) {
		mr_buf_reserve(b, (size_t)n);
		n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2);
	}
	va_end(ap2);
	b->len += (size_t)n;
}

void
mr_buf_printf(struct mr_buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mr_buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void
mr_buf_consume(struct mr_buf *b, size_t n)
{
	if (n >= b->len) {
		mr_buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

void
mr_buf_truncate(struct mr_buf *b, size_t n)
{
	if (n >= b->len)
		return;
	b->len = n;
	b->data[n] = '\0';
}

void
mr_buf_reset(struct mr_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

const char *
mr_buf_cstr(const struct mr_buf *b)
{
	return b->data ? b->data : "";
}
