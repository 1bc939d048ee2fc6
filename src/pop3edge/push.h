/*
 * push.h - the body of a new-mail notification from Dovecot's
 * push_notification plugin (OX driver): JSON such as
 *   {"user":"alice","event":"messageNew","folder":"INBOX",...}
 *
 * Dovecot is known to send malformed JSON (a message without From can
 * break the "from" member), so this is not a strict parser: it finds the
 * top-level string members "user" and "event" and ignores the rest.  A
 * strict JSON library would refuse exactly the notifications that matter
 * (the user's new mail), so none is used here.  Pure; no allocation.
 */
#ifndef MR_POP3EDGE_PUSH_H
#define MR_POP3EDGE_PUSH_H

#include <stddef.h>

#define PUSH_USER_MAX	128

struct push_note {
	char	user[PUSH_USER_MAX + 1];	/* NUL-terminated, UTF-8 */
	size_t	userlen;
	int	message_new;	/* event is "messageNew" */
};

/*
 * push_parse - body (len bytes) into *note.  0, or -1 with *why_r a
 * static sentence: not an object, no "user" string, a user name that is
 * empty, too long or holds control characters.
 */
int push_parse(const char *body, size_t len, struct push_note *note,
    const char **why_r);

#endif
