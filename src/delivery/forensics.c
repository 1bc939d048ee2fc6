/*
 * forensics.c - write kept messages to files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "delivery/forensics.h"

int
forensics_keep(const char *dir, unsigned line, const char *msg, size_t len,
    char *path_r, size_t size)
{
	size_t off = 0;
	ssize_t w;
	unsigned n;
	int fd = -1, r = 0, k;

	if (mkdir(dir, 0750) != 0 && errno != EEXIST)
		return -errno;
	for (n = 1; n < 1000 && fd < 0; n++) {
		if (n == 1)
			k = snprintf(path_r, size, "%s/%u.eml", dir, line);
		else
			k = snprintf(path_r, size, "%s/%u-%u.eml", dir, line, n);
		if (k < 0 || (size_t)k >= size)
			return -ENAMETOOLONG;
		fd = open(path_r, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    0640);
		if (fd < 0 && errno != EEXIST)
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;
	while (off < len) {
		w = write(fd, msg + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		off += (size_t)w;
	}
	if (close(fd) != 0 && r == 0)
		r = -errno;
	return r;
}
