/*
 * forensics.c - write kept messages to files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "delivery/forensics.h"

int
forensics_keep(const char *dir, unsigned line, struct evbuffer *msg,
    char *path_r, size_t size)
{
	unsigned n;
	int fd = -1, r = 0;

	if (mkdir(dir, 0750) != 0 && errno != EEXIST)
		return -errno;
	for (n = 1; n < 1000 && fd < 0; n++) {
		if (n == 1)
			snprintf(path_r, size, "%s/%u.eml", dir, line);
		else
			snprintf(path_r, size, "%s/%u-%u.eml", dir, line, n);
		fd = open(path_r, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    0640);
		if (fd < 0 && errno != EEXIST)
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;
	while (evbuffer_get_length(msg) > 0) {
		if (evbuffer_write(msg, fd) < 0) {
			r = -errno;
			break;
		}
	}
	if (close(fd) != 0 && r == 0)
		r = -errno;
	return r;
}
