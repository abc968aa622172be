/*
 * gateway_split.c - which variant of an A/B test or canary a caller gets
 * (kit/gateway.h: struct kit_split, kit_split_choose).
 *
 * The proxy (proxy.c) asks here for every request on a route that names a
 * "split": it passes the caller's key (the verified user, else the kit_ab
 * cookie, else the client IP) and gets a variant index. The answer depends
 * on nothing but the split's name, its weights and the key, so every
 * gateway instance, before and after a restart, sends a caller to the same
 * variant: no table of assignments, no shared state. That is why rand() is
 * no use here, and why the hash is written out rather than taken from a
 * library whose seed might change between processes.
 *
 * Pure functions: no state, any thread.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kit/gateway.h"

#define FNV_OFFSET_BASIS 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv1a_add(uint64_t hash, const char *s)
{
	for (; *s != '\0'; s++) {
		hash ^= (unsigned char)*s;
		hash *= FNV_PRIME;
	}
	return hash;
}

/* MurmurHash3's 64-bit finalizer. FNV-1a alone mixes upwards only: the low
 * bits of its result depend on the low bits of the input alone, and a
 * bucket is taken from the low end (hash % 10000). After this step every
 * input bit can flip any output bit. */
static uint64_t fmix64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

unsigned kit_split_bucket(const char *split_name, const char *key)
{
	uint64_t hash = FNV_OFFSET_BASIS;

	/* "<split name>:<key>": the name salts the key, so two splits put the
	 * same caller in independent buckets. */
	hash = fnv1a_add(hash, split_name);
	hash = fnv1a_add(hash, ":");
	hash = fnv1a_add(hash, key != NULL ? key : "");
	return (unsigned)(fmix64(hash) % KIT_SPLIT_BUCKETS);
}

int kit_split_choose(const struct kit_split *split, const char *key)
{
	long total = 0, below = 0;
	unsigned bucket;

	for (int i = 0; i < split->variant_count; i++) {
		if (split->variants[i].weight > 0)
			total += split->variants[i].weight;
	}
	if (total <= 0)
		return -1;

	/* Variant i owns the buckets from the end of variant i-1's range up
	 * to KIT_SPLIT_BUCKETS * (weights 0..i) / total. The last range ends
	 * at KIT_SPLIT_BUCKETS exactly, so every bucket has an owner. */
	bucket = kit_split_bucket(split->name, key);
	for (int i = 0; i < split->variant_count; i++) {
		if (split->variants[i].weight <= 0)
			continue;
		below += split->variants[i].weight;
		if ((long)bucket < below * KIT_SPLIT_BUCKETS / total)
			return i;
	}
	return -1; /* not reached: the last range ends at KIT_SPLIT_BUCKETS */
}

bool kit_split_cookie(const char *cookie_header, char *out, size_t size)
{
	static const char name[] = KIT_SPLIT_COOKIE;
	const size_t name_len = sizeof(name) - 1;
	const char *p = cookie_header;

	if (size > 0)
		out[0] = '\0';
	/* RFC 6265 5.4: "name=value" pairs separated by "; " (we also take
	 * a bare ';' and extra spaces). The name is matched whole and
	 * case-sensitively: "xkit_ab" and "KIT_AB" are other cookies. */
	while (p != NULL && *p != '\0') {
		size_t pair_len;

		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		pair_len = strcspn(p, ";");
		if (pair_len > name_len && strncmp(p, name, name_len) == 0 &&
		    p[name_len] == '=') {
			const char *value = p + name_len + 1;
			size_t value_len = pair_len - name_len - 1;

			while (value_len > 0 && (value[value_len - 1] == ' ' ||
						 value[value_len - 1] == '\t'))
				value_len--;
			if (value_len == 0 || value_len >= size)
				return false;
			memcpy(out, value, value_len);
			out[value_len] = '\0';
			return true;
		}
		p += pair_len;
	}
	return false;
}
