/*
 * account.h - the passwords of sending accounts (SPEC D16, D17): which
 * passwords an account may be given, and the check that SMTP injection
 * makes when a client authenticates (AUTH PLAIN/LOGIN) as an account.
 *
 * An account in the store keeps at most a verifier of its password
 * (store_account.verifier, made with registry/verifier.h), never the
 * password; an account without one cannot authenticate.  New verifiers
 * take registry.pbkdf2_iterations iterations, the same knob as the POP3
 * registry's.
 *
 * Timing: account_check_password costs one verifier check whether the
 * account exists or not (an unknown account, or one without a password,
 * is checked against a dummy verifier of account_password_iterations()
 * iterations), so a client cannot tell a wrong name from a wrong
 * password, by the answer or by the time it takes.
 *
 * Threads: account_check_password blocks on the store and on the
 * deliberately slow verifier (tens of milliseconds): call it from a
 * worker thread with a struct store of its own (store.h), never from an
 * event loop.  The rest is thread-safe.
 *
 * Errors: 0 or a negative code of the store (store_error() says why).
 * Passwords are (pointer, length), borrowed for the call; nothing here
 * logs or keeps one.
 */
#ifndef MR_ACCOUNT_H
#define MR_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>

struct store;

/* The longest password an account may have, in bytes. */
#define ACCOUNT_PASSWORD_MAX	1024

/*
 * account_password_refusal - why pass[0..len) cannot be an account's
 * password (a static sentence: "it is empty", ...), or NULL when it can:
 * 1 to ACCOUNT_PASSWORD_MAX bytes, no NUL, CR or LF (a password goes
 * through SASL PLAIN, whose fields NUL separates, and lives in files and
 * on command lines as one line).
 */
const char *account_password_refusal(const char *pass, size_t len);

/*
 * account_password_iterations - the PBKDF2 iterations of the dummy
 * verifier that an unknown account is checked against: set it to
 * registry.pbkdf2_iterations at startup, before any check, so that an
 * unknown account costs what a known one does (0 or out of range: the
 * default, REG_PBKDF2_ITER).
 */
void account_password_iterations(unsigned iter);

/*
 * account_check_password - whether account name exists, has a password,
 * and pass[0..len) is it: *ok_r true only then.  An unknown account, one
 * without a password and a wrong password all give 0 with *ok_r false,
 * after the same work.  A store failure gives its code (and *ok_r
 * false): the caller answers "try again later", not "wrong password".
 */
int account_check_password(struct store *s, const char *name,
    const char *pass, size_t len, bool *ok_r);

#endif
