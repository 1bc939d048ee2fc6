/*
 * mr_sockaddr.h - socket addresses as text.
 *
 * Pure; thread-safe; no allocation.
 */
#ifndef MR_SOCKADDR_H
#define MR_SOCKADDR_H

#include <stddef.h>
#include <sys/socket.h>

/*
 * mr_sockaddr_format - "127.0.0.1:25" or "[::1]:25" for an AF_INET or
 * AF_INET6 address into out (64 bytes always suffice).  Returns out.
 */
char *mr_sockaddr_format(const struct sockaddr *sa, char *out, size_t size);

#endif
