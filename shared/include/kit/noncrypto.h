/*
 * kit/noncrypto.h - fast numbers that need to be unique or well spread, not
 * secret: random ids (request ids, span ids) and a string hash for the
 * kit's in-memory tables. Never use them for anything an attacker must not
 * guess or steer (tokens, salts: OpenSSL's RAND_bytes is for those).
 *
 * Threads: the generator's state is per thread (seeded from getrandom() on
 * first use), so any thread may call both without a lock.
 */
#ifndef KIT_NONCRYPTO_H
#define KIT_NONCRYPTO_H

#include <stdint.h>

/* The next number of this thread's xorshift128+ generator; never 0 (which
 * Jaeger reads as "no id"). */
uint64_t kit_random_u64(void);

/* FNV-1a of a NUL-terminated string. */
uint64_t kit_hash_string(const char *s);

#endif
