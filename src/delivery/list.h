/*
 * list.h - the recipient list (SPEC D1): a CSV file mapped read-only, its
 * columns, and a compact table of the recipients accepted from it.
 *
 * The file is mapped, never copied: the table holds, per accepted
 * recipient, the row's offset in the map, its line number, its domain and
 * (when the template allows batching) a fingerprint of the fields the
 * template uses; rows are parsed again, from the map, when a message is
 * rendered.  A row is refused (and reported through the reject callback
 * with its line and a reason) for a wrong field count, invalid UTF-8, an
 * invalid or empty address, or a duplicate address (compared
 * case-insensitively; the first occurrence is kept).
 *
 * Ownership: list_open() returns a list owned by the caller (list_free()).
 * After list_load() the list is immutable and may be read by any number of
 * threads, each with its own struct csv_parser for list_fields().
 */
#ifndef MR_LIST_H
#define MR_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mr_buf.h"
#include "delivery/csv.h"

struct list;

struct list_stats {
	uint64_t	rows;		/* data rows seen, blank lines excluded */
	uint64_t	accepted;
	uint64_t	rejected;	/* duplicates included */
	uint64_t	duplicates;
	uint64_t	blank;		/* empty lines skipped */
};

/*
 * list_reject_cb - a refused row: its first line, the reason, the raw row
 * text (borrowed), and the address as written if one could be read.
 */
typedef void list_reject_cb(void *arg, unsigned line, const char *reason,
    const char *row, size_t row_len, const char *email, size_t email_len);

/*
 * list_open - map path and read its header row.  Returns NULL with a
 * message in err and *code_r set: -errno when the file cannot be opened or
 * mapped, MR_EEMPTY for an empty file, MR_EINVAL_INPUT for a bad header (not
 * CSV, no "email" column, an empty or repeated column name).
 */
struct list *list_open(const char *path, size_t max_row, struct mr_buf *err,
    int *code_r);
void list_free(struct list **lp);

size_t list_ncolumns(const struct list *l);
/* list_columns - the column names, trimmed (borrowed). */
const char *const *list_columns(const struct list *l);
size_t list_email_column(const struct list *l);

/*
 * list_check_cb - may a row that passed the list's own checks be sent?
 * NULL, or why not (written into buf, or static).
 */
typedef const char *list_check_cb(void *arg, const struct csv_field *fields,
    size_t nfields, char *buf, size_t size);

/*
 * list_load - read every row.  fp_columns (ncolumns flags; NULL for none)
 * names the columns whose values make a row's fingerprint; with NULL no
 * fingerprints are kept.  check (may be NULL) is asked about each row
 * after the list's own checks.  Returns 0, or a negative code for an I/O
 * error.
 */
int list_load(struct list *l, const bool *fp_columns, list_check_cb *check,
    list_reject_cb *cb, void *arg, struct list_stats *st);

uint32_t list_count(const struct list *l);
uint32_t list_line(const struct list *l, uint32_t i);
uint32_t list_domain(const struct list *l, uint32_t i);
/* list_fingerprint - 0 when fingerprints are not kept. */
uint64_t list_fingerprint(const struct list *l, uint32_t i);
size_t list_ndomains(const struct list *l);
const char *list_domain_name(const struct list *l, uint32_t d);

/*
 * list_fields - parse recipient i's row again with cp; returns its fields
 * (borrowed from cp and the map, valid until cp's next use).
 */
const struct csv_field *list_fields(const struct list *l,
    struct csv_parser *cp, uint32_t i, size_t *n_r);
/* list_email - recipient's address from its fields: trimmed slice. */
void list_email(const struct list *l, const struct csv_field *fields,
    const char **p_r, size_t *len_r);
/* list_bytes - memory held by the recipient table (not the map). */
size_t list_bytes(const struct list *l);
/* list_file_size - size of the mapped file. */
size_t list_file_size(const struct list *l);
/* list_data - the mapped file (borrowed, read-only). */
void list_data(const struct list *l, const char **p_r, size_t *n_r);

#endif
