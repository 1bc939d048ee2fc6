/*
 * addr.h - RFC 5321 mailbox syntax (local-part@domain), as used in MAIL
 * FROM and RCPT TO.
 *
 * Pure functions; thread-safe; no allocation.
 */
#ifndef MR_SMTP_ADDR_H
#define MR_SMTP_ADDR_H

#include <stddef.h>

/*
 * smtp_addr_check - validate p[0..n) as an RFC 5321 Mailbox: a Dot-string
 * or Quoted-string local part (at most 64 octets), "@", and a Domain (host
 * name of LDH labels, each 1..63 octets, at most 255 in all, not starting
 * or ending with a hyphen; or an address literal [IPv4] or [IPv6:...]),
 * at most 254 octets in all.  Non-ASCII is refused (it would need
 * SMTPUTF8).  Leading and trailing spaces are the caller's business.
 *
 * Returns NULL when valid, with *at_r the offset of the '@' that separates
 * local part and domain; otherwise a static, human-readable reason
 * ("no @ in address", "local part longer than 64 octets", ...).
 */
const char *smtp_addr_check(const char *p, size_t n, size_t *at_r);

#endif
