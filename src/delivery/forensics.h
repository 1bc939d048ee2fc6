/*
 * forensics.h - keep a refused message whole (SPEC D11, seed 003 [0065]).
 *
 * Files are written as DIR/LINE.eml (LINE: the recipient's line in the
 * list; a second refusal for the same line gets LINE-2.eml and so on), in
 * the form the recipient would have read (not dot-stuffed).  The directory
 * is created on first use.  Thread-safe: each call writes its own file.
 */
#ifndef MR_FORENSICS_H
#define MR_FORENSICS_H

#include <stddef.h>

/*
 * forensics_keep - write msg[0..len) to a new file in dir; its path goes
 * to path_r.  Returns 0 or -errno (-ENAMETOOLONG when the path does not
 * fit in size).
 */
int forensics_keep(const char *dir, unsigned line, const char *msg,
    size_t len, char *path_r, size_t size);

#endif
