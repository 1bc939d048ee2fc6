/*
 * mr_sockaddr.c - format socket addresses.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

#include "core/mr_sockaddr.h"

char *
mr_sockaddr_format(const struct sockaddr *sa, char *out, size_t size)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(out, size, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(out, size, "%s:%u", host, ntohs(s4->sin_port));
	} else {
		snprintf(out, size, "(family %d)", sa->sa_family);
	}
	return out;
}
