/*
 * services/users/password.c - keeping passwords so that a stolen copy of the
 * store does not give them away.
 *
 * PBKDF2-HMAC-SHA256 (OpenSSL) with 16 random bytes of salt per password and
 * many iterations makes every guess expensive. The result names its own
 * parameters, "pbkdf2-sha256$600000$<salt, base64>$<hash, base64>", so the
 * count can be raised later and old accounts still verify.
 *
 * Verifying recomputes the hash and compares with CRYPTO_memcmp, whose time
 * does not depend on where the bytes differ. The stored text is parsed
 * strictly; a count outside [1000, 10000000] is refused, so a damaged record
 * cannot make a login run for minutes. No state: safe from any thread.
 */
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "users/password.h"

#define PASSWORD_SCHEME "pbkdf2-sha256$"
#define PASSWORD_SALT_BYTES 16     /* what password_hash() writes        */
#define PASSWORD_SALT_MIN_BYTES 8  /* what password_verify() accepts     */
#define PASSWORD_SALT_MAX_BYTES 64
#define PASSWORD_HASH_BYTES 32     /* SHA-256 output                     */

/* Padded base64 of n bytes: 4 characters per started group of 3. */
#define PASSWORD_BASE64_LENGTH(n) ((((n) + 2) / 3) * 4)

/* Runs PBKDF2-HMAC-SHA256 into out. Returns 0, or -1 when OpenSSL fails. */
static int password_derive(const char *password, const unsigned char *salt,
			   size_t salt_len, unsigned iterations,
			   unsigned char out[PASSWORD_HASH_BYTES])
{
	size_t password_len = strlen(password);

	if (password_len > INT_MAX || salt_len > INT_MAX ||
	    iterations > INT_MAX)
		return -1;
	if (PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, (int)salt_len,
			      (int)iterations, EVP_sha256(),
			      PASSWORD_HASH_BYTES, out) != 1)
		return -1;
	return 0;
}

static bool password_is_base64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Decodes exactly text_len characters of padded base64 into out. Returns
 * the number of bytes, or -1 when the text is not base64 or does not fit.
 *
 * EVP_DecodeBlock alone is too lenient for a stored secret: it skips
 * surrounding whitespace, and it counts each '=' of padding as a zero byte
 * of output. So the text is checked first (only the alphabet, '=' only as
 * the last one or two characters) and the padding subtracted after. */
static int password_base64_decode(const char *text, size_t text_len,
				  unsigned char *out, size_t out_size)
{
	size_t padding = 0;
	int decoded;

	if (text_len == 0 || text_len % 4 != 0 || text_len > INT_MAX)
		return -1;
	for (size_t i = 0; i < text_len; i++) {
		if (text[i] == '=') {
			if (i + 2 < text_len)
				return -1;
			padding++;
		} else if (padding > 0 || !password_is_base64_char(text[i])) {
			return -1;
		}
	}
	/* EVP_DecodeBlock writes 3 bytes per 4 characters, padding included. */
	if (text_len / 4 * 3 > out_size)
		return -1;
	decoded = EVP_DecodeBlock(out, (const unsigned char *)text,
				  (int)text_len);
	if (decoded < 0 || (size_t)decoded < padding)
		return -1;
	return decoded - (int)padding;
}

/* Reads the decimal iteration count at text, up to '$'. Returns 0 with
 * *iterations and *end (the '$') set, or -1 when it is not 1-8 digits in
 * the accepted range. */
static int password_parse_iterations(const char *text, unsigned *iterations,
				     const char **end)
{
	unsigned value = 0;
	size_t digits = 0;

	while (text[digits] >= '0' && text[digits] <= '9') {
		if (digits == 8)
			return -1;
		value = value * 10 + (unsigned)(text[digits] - '0');
		digits++;
	}
	if (digits == 0 || text[digits] != '$')
		return -1;
	if (value < PASSWORD_MIN_ITERATIONS || value > PASSWORD_MAX_ITERATIONS)
		return -1;
	*iterations = value;
	*end = text + digits;
	return 0;
}

int password_hash(const char *password, unsigned iterations, char *out,
		  size_t out_size)
{
	unsigned char salt[PASSWORD_SALT_BYTES];
	unsigned char hash[PASSWORD_HASH_BYTES];
	char salt_text[PASSWORD_BASE64_LENGTH(PASSWORD_SALT_BYTES) + 1];
	char hash_text[PASSWORD_BASE64_LENGTH(PASSWORD_HASH_BYTES) + 1];
	int written;
	int result = -1;

	if (out == NULL || out_size == 0)
		return -1;
	out[0] = '\0';
	/* A count password_verify() would refuse would lock the account out. */
	if (password == NULL || iterations < PASSWORD_MIN_ITERATIONS ||
	    iterations > PASSWORD_MAX_ITERATIONS)
		return -1;

	if (RAND_bytes(salt, sizeof(salt)) != 1)
		goto out;
	if (password_derive(password, salt, sizeof(salt), iterations, hash) != 0)
		goto out;

	/* EVP_EncodeBlock writes padded base64 and a NUL; the buffers above
	 * are sized for exactly that. */
	EVP_EncodeBlock((unsigned char *)salt_text, salt, sizeof(salt));
	EVP_EncodeBlock((unsigned char *)hash_text, hash, sizeof(hash));
	written = snprintf(out, out_size, PASSWORD_SCHEME "%u$%s$%s",
			   iterations, salt_text, hash_text);
	if (written < 0 || (size_t)written >= out_size) {
		out[0] = '\0';
		goto out;
	}
	result = 0;
out:
	OPENSSL_cleanse(hash, sizeof(hash));
	return result;
}

bool password_verify(const char *password, const char *encoded)
{
	unsigned iterations;
	const char *salt_text;
	const char *hash_text;
	const char *dollar;
	/* Room for what the largest accepted text decodes to, padding
	 * included (see password_base64_decode). */
	unsigned char salt[PASSWORD_SALT_MAX_BYTES + 2];
	unsigned char expected[PASSWORD_HASH_BYTES + 1];
	unsigned char actual[PASSWORD_HASH_BYTES];
	int salt_len;
	int expected_len;
	bool match = false;

	if (password == NULL || encoded == NULL)
		return false;

	/* 1. Parse "pbkdf2-sha256$<iterations>$<salt>$<hash>". */
	if (strncmp(encoded, PASSWORD_SCHEME, strlen(PASSWORD_SCHEME)) != 0)
		return false;
	if (password_parse_iterations(encoded + strlen(PASSWORD_SCHEME),
				      &iterations, &dollar) != 0)
		return false;
	salt_text = dollar + 1;
	dollar = strchr(salt_text, '$');
	if (dollar == NULL)
		return false;
	hash_text = dollar + 1;

	salt_len = password_base64_decode(salt_text,
					  (size_t)(dollar - salt_text), salt,
					  sizeof(salt));
	if (salt_len < PASSWORD_SALT_MIN_BYTES ||
	    salt_len > PASSWORD_SALT_MAX_BYTES)
		return false;
	expected_len = password_base64_decode(hash_text, strlen(hash_text),
					      expected, sizeof(expected));
	if (expected_len != PASSWORD_HASH_BYTES)
		return false;

	/* 2. Recompute and compare in constant time. */
	if (password_derive(password, salt, (size_t)salt_len, iterations,
			    actual) != 0)
		goto out;
	match = CRYPTO_memcmp(actual, expected, PASSWORD_HASH_BYTES) == 0;
out:
	OPENSSL_cleanse(actual, sizeof(actual));
	return match;
}
