/*
 * xalloc.h - allocation that never returns NULL.
 *
 * Every function here aborts the process (through mr_panic) when memory is
 * exhausted (house style rule 18): memory is bounded by per-session and
 * per-queue caps, so running out is a bug or a misconfiguration, not a
 * runtime condition to recover from.  The caller owns what is returned and
 * releases it with free().
 */
#ifndef MR_XALLOC_H
#define MR_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
/* xreallocarray - realloc of nmemb * size, aborting on overflow. */
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* xmemdup - a NUL-terminated copy of n bytes at p. */
char *xmemdup(const void *p, size_t n);

#endif
