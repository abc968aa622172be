/*
 * noncrypto.c - the kit's one random-id generator and one string hash
 * (kit/noncrypto.h), shared by request ids, trace ids, and the hash tables
 * of the metrics registry, the memory store, the memory rate limiter and
 * the JWT cache. (gateway_split.c keeps a hash of its own on purpose: a
 * caller's variant must never change because this one did.)
 */
#include <stdint.h>
#include <sys/random.h>

#include "kit/noncrypto.h"

uint64_t kit_random_u64(void)
{
	static __thread uint64_t state[2];
	uint64_t s1, s0, value;

	if (state[0] == 0 && state[1] == 0) {
		if (getrandom(state, sizeof(state), 0) != sizeof(state) ||
		    (state[0] == 0 && state[1] == 0))
			state[0] = (uint64_t)(uintptr_t)&state | 1u;
	}
	do { /* xorshift128+ */
		s1 = state[0];
		s0 = state[1];
		state[0] = s0;
		s1 ^= s1 << 23;
		state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
		value = state[1] + s0;
	} while (value == 0);
	return value;
}

uint64_t kit_hash_string(const char *s)
{
	uint64_t hash = 14695981039346656037ull; /* FNV-1a, 64 bits */

	for (; *s != '\0'; s++)
		hash = (hash ^ (unsigned char)*s) * 1099511628211ull;
	return hash;
}
