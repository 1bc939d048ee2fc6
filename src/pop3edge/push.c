/*
 * push.c - find "user" and "event" in a push notification (see push.h).
 */
#include <string.h>

#include "pop3edge/push.h"

static int
push_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int
push_hex(const char *p, unsigned *v_r)
{
	unsigned v = 0, i;

	for (i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*v_r = v;
	return 0;
}

/*
 * push_string - the JSON string starting after its opening quote at p
 * (end bounds the body), unescaped into out (at most max octets).
 * Returns its length, or -1 when it is malformed, too long, or holds a
 * control character (which a mailbox name never does).
 */
static long
push_string(const char *p, const char *end, char *out, size_t max)
{
	size_t n = 0;
	unsigned cp;
	char c;

	while (p < end && *p != '"') {
		c = *p++;
		if ((unsigned char)c < 0x20)
			return -1;
		if (c == '\\') {
			if (p >= end)
				return -1;
			c = *p++;
			switch (c) {
			case '"': case '\\': case '/':
				break;
			case 'u':
				if (end - p < 4 || push_hex(p, &cp) != 0)
					return -1;
				p += 4;
				/* Names are what the mail server logs in: no
				 * controls, no surrogates. */
				if (cp < 0x20 || (cp >= 0xd800 && cp < 0xe000))
					return -1;
				if (cp < 0x80) {
					c = (char)cp;
					break;
				}
				if (n + (cp < 0x800 ? 2 : 3) > max)
					return -1;
				if (cp < 0x800) {
					out[n++] = (char)(0xc0 | cp >> 6);
				} else {
					out[n++] = (char)(0xe0 | cp >> 12);
					out[n++] = (char)(0x80 | (cp >> 6 & 0x3f));
				}
				out[n++] = (char)(0x80 | (cp & 0x3f));
				continue;
			default:
				return -1;	/* \b \f \n \r \t: controls */
			}
		}
		if (n >= max)
			return -1;
		out[n++] = c;
	}
	if (p >= end)
		return -1;
	return (long)n;
}

/*
 * push_member - the string value of the top-level member key, into out;
 * -1 when there is none (or it is not a well-formed string).  A key
 * counts only after '{' or ',' so that text inside another member's value
 * is not taken for it.
 */
static long
push_member(const char *body, size_t len, const char *key, char *out,
    size_t max)
{
	const char *end = body + len, *p = body, *q, *back;
	size_t klen = strlen(key);

	while ((q = memmem(p, (size_t)(end - p), key, klen)) != NULL) {
		p = q + klen;
		back = q;
		while (back > body && push_ws(back[-1]))
			back--;
		if (back == body || (back[-1] != '{' && back[-1] != ','))
			continue;
		while (p < end && push_ws(*p))
			p++;
		if (p >= end || *p != ':')
			continue;
		p++;
		while (p < end && push_ws(*p))
			p++;
		if (p >= end || *p != '"')
			return -1;
		return push_string(p + 1, end, out, max);
	}
	return -1;
}

int
push_parse(const char *body, size_t len, struct push_note *note,
    const char **why_r)
{
	char event[32];
	long n;
	size_t i = 0;

	memset(note, 0, sizeof(*note));
	while (i < len && push_ws(body[i]))
		i++;
	if (i == len || body[i] != '{') {
		*why_r = "the body is not a JSON object";
		return -1;
	}
	n = push_member(body, len, "\"user\"", note->user, PUSH_USER_MAX);
	if (n <= 0) {
		*why_r = n == 0 ? "an empty \"user\"" :
		    "no \"user\" string, or one too long or malformed";
		return -1;
	}
	note->userlen = (size_t)n;
	note->user[n] = '\0';
	for (i = 0; i < note->userlen; i++)
		if (note->user[i] == ' ' || note->user[i] == 0x7f) {
			*why_r = "a \"user\" with spaces or controls";
			return -1;
		}
	n = push_member(body, len, "\"event\"", event, sizeof(event) - 1);
	note->message_new = n == 10 && memcmp(event, "messageNew", 10) == 0;
	return 0;
}
