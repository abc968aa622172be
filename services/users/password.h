/*
 * services/users/password.h - password hashing with PBKDF2-HMAC-SHA256
 * (OpenSSL), a random 16-byte salt per password, and a constant-time
 * comparison.
 *
 * The stored form carries its own parameters, so the iteration count can be
 * raised later without breaking old accounts:
 *     pbkdf2-sha256$<iterations>$<salt, base64>$<hash, base64>
 */
#ifndef SERVICES_USERS_PASSWORD_H
#define SERVICES_USERS_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWORD_DEFAULT_ITERATIONS 600000 /* OWASP 2023 for PBKDF2-SHA256 */
#define PASSWORD_ENCODED_MAX 160
/* The iteration counts password_hash() writes and password_verify() reads:
 * below the minimum is no protection, above the maximum a damaged record
 * would make a login run for minutes. */
#define PASSWORD_MIN_ITERATIONS 1000
#define PASSWORD_MAX_ITERATIONS 10000000

/* Hashes password into out (at least PASSWORD_ENCODED_MAX bytes).
 * iterations must be within [PASSWORD_MIN_ITERATIONS, PASSWORD_MAX_ITERATIONS]
 * (encoded values outside it never verify either).
 * Returns 0, or -1 for iterations out of range or when OpenSSL fails (no
 * entropy, out of memory). */
int password_hash(const char *password, unsigned iterations, char *out,
		  size_t out_size);

/* True when password matches encoded. False for a malformed encoded value.
 * Takes as long as the encoded iteration count demands whatever the answer. */
bool password_verify(const char *password, const char *encoded);

#endif
