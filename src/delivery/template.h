/*
 * template.h - the message wrapper (SPEC D2): an RFC 5322 template with
 * {{field}} placeholders, compiled once into shared segments and field
 * slots, rendered per recipient straight into an output evbuffer.
 *
 * Compilation resolves every placeholder against the list's column names
 * (case-insensitive), so a placeholder with no column is an error before
 * anything is sent.  It normalises line endings to CRLF, dot-stuffs the
 * static text, drops the template's own Message-ID and Date (each message
 * gets its own), RFC 2047-encodes non-ASCII header text, and notes which
 * MIME parts are quoted-printable so that values placed there are encoded
 * to match.  Body lines over 998 octets are broken as Postfix does (a CRLF
 * inserted; headers are folded instead) and reported as a warning.
 *
 * Values in headers have their CR and LF made spaces (no value can add a
 * header), and in the top-level header are RFC 2047-encoded when they are
 * not ASCII; a MIME part's header keeps UTF-8 as it is, since encoded
 * words may not stand in parameters.  A placeholder in a base64 part is an
 * error.
 *
 * Rendering adds large static segments to the evbuffer by reference (no
 * copy; the template must outlive the buffers) and copies only the bytes
 * that differ per recipient.  Rendering never fails: values were validated
 * (UTF-8) when the list was loaded.
 *
 * Ownership: tmpl_compile() returns a template owned by the caller, freed
 * with tmpl_free(); it is immutable and may be shared by threads.
 * Rendering needs a struct tmpl_scratch per thread.
 */
#ifndef MR_TEMPLATE_H
#define MR_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mr_buf.h"
#include "delivery/csv.h"

struct evbuffer;
struct tmpl;
struct tmpl_scratch;

/* The per-message values that are not list fields. */
struct tmpl_msg {
	const char	*message_id;	/* "<...@...>" */
	const char	*date;		/* RFC 5322 date-time */
};

enum tmpl_render_flags {
	TMPL_DOT_STUFF = 1 << 0,	/* SMTP DATA form: dot-stuffed */
};

/*
 * tmpl_compile - compile len bytes of template text against the list's
 * columns.  Returns NULL with a message in err ("template line 7:
 * placeholder {{nmae}} has no column in the list", "template has no From
 * header", ...).  Warnings (a long line broken) go to warn, one per line;
 * warn may be NULL.  text is copied; columns are borrowed for the call.
 */
struct tmpl *tmpl_compile(const char *text, size_t len,
    const char *const *columns, size_t ncolumns, struct mr_buf *err,
    struct mr_buf *warn);
void tmpl_free(struct tmpl **tp);

/*
 * tmpl_check_fields - can these fields be rendered without breaking the
 * message's MIME structure?  A value placed in the body of a multipart
 * template must not hold one of its boundaries (it would end a part
 * early).  Returns 0, or -1 with *col_r the offending column.
 */
int tmpl_check_fields(const struct tmpl *t, const struct csv_field *fields,
    size_t nfields, size_t *col_r);

/* tmpl_uses_column - does any placeholder refer to column i? */
bool tmpl_uses_column(const struct tmpl *t, size_t col);
/*
 * tmpl_from_address - the address of the template's From header when it
 * holds no placeholder and exactly one address (borrowed), else NULL.
 */
const char *tmpl_from_address(const struct tmpl *t);
/* tmpl_is_8bit - does the static text hold non-ASCII bytes? */
bool tmpl_is_8bit(const struct tmpl *t);
/* tmpl_static_size - bytes of static text (a size estimate's base). */
size_t tmpl_static_size(const struct tmpl *t);

struct tmpl_scratch *tmpl_scratch_new(void);
void tmpl_scratch_free(struct tmpl_scratch **sp);

/*
 * tmpl_render - append the message for one recipient to out: fields[] are
 * the recipient's list fields by column index (nfields of them, as the list
 * parser returned them; borrowed).  Returns the number of bytes appended;
 * *eight_bit_r (may be NULL) is set when the message holds non-ASCII.
 * Without TMPL_DOT_STUFF the output is the message as the recipient reads
 * it (for forensics).  The terminating "." line is not added.
 */
size_t tmpl_render(const struct tmpl *t, struct tmpl_scratch *s,
    const struct csv_field *fields, size_t nfields,
    const struct tmpl_msg *msg, unsigned flags, struct evbuffer *out,
    bool *eight_bit_r);

#endif
