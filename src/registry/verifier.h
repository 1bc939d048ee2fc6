/*
 * verifier.h - password verifiers: what is kept instead of a login
 * password, for the users of the POP3 registry (registry.h) and for the
 * sending accounts that authenticate to SMTP injection
 * (delivery/account.h).
 *
 * A verifier is PBKDF2-HMAC-SHA256 of the password with a 16-byte random
 * salt, as the text "$pbkdf2-sha256$ITER$SALT$HASH" (SALT and HASH in
 * base64).  It carries its own iteration count, so verifiers made before
 * a change of the count keep theirs and still check.
 *
 * Ownership: reg_verifier_make returns a string the caller frees;
 * everything else is borrowed for the call.  Passwords are (pointer,
 * length) and may hold any byte.
 *
 * Threads: thread-safe, and slow on purpose (REG_PBKDF2_ITER iterations
 * take tens of milliseconds): never call these from an event loop.
 */
#ifndef MR_VERIFIER_H
#define MR_VERIFIER_H

#include <stdbool.h>
#include <stddef.h>

/* The default iteration count (registry.pbkdf2_iterations). */
#define REG_PBKDF2_ITER	50000

/*
 * reg_verifier_make - a new verifier of password with a fresh random salt
 * and iter iterations (0: REG_PBKDF2_ITER); NULL when iter is outside
 * 1000..10000000 or randomness failed.
 */
char *reg_verifier_make(const char *password, size_t len, unsigned iter);

/*
 * reg_verifier_check - whether password matches verifier, in constant
 * time for a given verifier (its iteration count sets the time); false
 * for a malformed verifier, at once.
 */
bool reg_verifier_check(const char *verifier, const char *password,
    size_t len);

#endif
