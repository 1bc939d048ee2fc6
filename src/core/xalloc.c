/*
 * xalloc.c - allocation wrappers that abort on exhaustion.
 */
#include <stdlib.h>
#include <string.h>

#include "mr_log.h"
#include "xalloc.h"

void *
xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		mr_panic("out of memory allocating %zu bytes", size);
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		mr_panic("out of memory allocating %zu x %zu bytes", nmemb,
		    size);
	return p;
}

void *
xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size ? size : 1);

	if (p == NULL)
		mr_panic("out of memory reallocating %zu bytes", size);
	return p;
}

void *
xreallocarray(void *ptr, size_t nmemb, size_t size)
{
	void *p;

	if (size != 0 && nmemb > (size_t)-1 / size)
		mr_panic("allocation overflow: %zu x %zu", nmemb, size);
	p = reallocarray(ptr, nmemb ? nmemb : 1, size ? size : 1);
	if (p == NULL)
		mr_panic("out of memory reallocating %zu x %zu bytes", nmemb,
		    size);
	return p;
}

char *
xstrdup(const char *s)
{
	return xmemdup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	return xmemdup(s, strnlen(s, n));
}

char *
xmemdup(const void *p, size_t n)
{
	char *s = xmalloc(n + 1);

	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}
