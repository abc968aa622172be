/*
 * test_password.c - services/users/password.h: PBKDF2-HMAC-SHA256 hashing
 * and verification of the stored form
 *     pbkdf2-sha256$<iterations>$<salt, base64>$<hash, base64>
 *
 * Hashes use 1000 iterations so the suite stays fast; the stored form
 * carries its own count, so nothing else changes. One test recomputes the
 * hash with OpenSSL's PKCS5_PBKDF2_HMAC to show that the stored form really
 * is PBKDF2-SHA256 with the iterations it names.
 *
 * Run alone: make && build/tests/test_password
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "users/password.h"

#define ITERATIONS 1000
#define PASSWORD "correct horse battery staple"

static void hash_or_fail(const char *password, unsigned iterations,
			 char out[PASSWORD_ENCODED_MAX])
{
	memset(out, 0, PASSWORD_ENCODED_MAX);
	assert_int_equal(password_hash(password, iterations, out,
				       PASSWORD_ENCODED_MAX), 0);
	assert_non_null(memchr(out, '\0', PASSWORD_ENCODED_MAX));
}

/* Splits "a$b$c$d" into four parts (pointers into buf). */
static void split4(char *buf, char *parts[4])
{
	char *save = NULL;
	for (int i = 0; i < 4; i++) {
		parts[i] = strtok_r(i == 0 ? buf : NULL, "$", &save);
		assert_non_null(parts[i]);
	}
	assert_null(strtok_r(NULL, "$", &save));
}

/* Standard base64 (padded or not) -> bytes; returns the decoded length. */
static size_t base64_decode(const char *in, unsigned char *out, size_t out_size)
{
	char padded[256];
	size_t len = strlen(in);
	assert_true(len + 3 < sizeof(padded));
	memcpy(padded, in, len);
	while (len % 4 != 0)
		padded[len++] = '=';
	padded[len] = '\0';
	assert_true(len / 4 * 3 <= out_size);
	int n = EVP_DecodeBlock(out, (unsigned char *)padded, (int)len);
	assert_true(n >= 0);
	size_t pad = 0;
	while (pad < len && padded[len - 1 - pad] == '=')
		pad++;
	return (size_t)n - pad;
}

static void base64_encode(const unsigned char *in, size_t len, bool keep_padding,
			  char *out)
{
	int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	out[n] = '\0';
	if (!keep_padding) {
		char *pad = strchr(out, '=');
		if (pad != NULL)
			*pad = '\0';
	}
}

static void test_hash_then_verify(void **state)
{
	char encoded[PASSWORD_ENCODED_MAX];
	hash_or_fail(PASSWORD, ITERATIONS, encoded);
	assert_true(password_verify(PASSWORD, encoded));
}

/* Threat: a login with a wrong, partial or extended password succeeding. */
static void test_wrong_password(void **state)
{
	char encoded[PASSWORD_ENCODED_MAX];
	hash_or_fail(PASSWORD, ITERATIONS, encoded);
	assert_true(password_verify(PASSWORD, encoded)); /* control */
	assert_false(password_verify("correct horse battery stapl", encoded));
	assert_false(password_verify(PASSWORD "!", encoded));
	assert_false(password_verify("Correct horse battery staple", encoded));
	assert_false(password_verify("", encoded));
}

/* Threat: equal passwords giving equal hashes (no salt), so one cracked
 * hash cracks every account sharing the password. */
static void test_salted(void **state)
{
	char a[PASSWORD_ENCODED_MAX], b[PASSWORD_ENCODED_MAX];
	hash_or_fail(PASSWORD, ITERATIONS, a);
	hash_or_fail(PASSWORD, ITERATIONS, b);
	assert_string_not_equal(a, b);
	assert_true(password_verify(PASSWORD, a));
	assert_true(password_verify(PASSWORD, b));

	char *pa[4], *pb[4];
	split4(a, pa);
	split4(b, pb);
	assert_string_not_equal(pa[2], pb[2]); /* salts */
	assert_string_not_equal(pa[3], pb[3]); /* hashes */
}

static void test_encoded_form(void **state)
{
	char encoded[PASSWORD_ENCODED_MAX];
	hash_or_fail(PASSWORD, ITERATIONS, encoded);
	assert_true(strncmp(encoded, "pbkdf2-sha256$1000$",
			    strlen("pbkdf2-sha256$1000$")) == 0);
	assert_true(strlen(encoded) < PASSWORD_ENCODED_MAX);

	char *parts[4];
	split4(encoded, parts);
	unsigned char salt[64], hash[64];
	assert_int_equal(base64_decode(parts[2], salt, sizeof(salt)), 16);
	assert_int_equal(base64_decode(parts[3], hash, sizeof(hash)), 32);
}

/* The hash is PBKDF2-HMAC-SHA256(password, salt, iterations, 32 bytes),
 * both ways: the stored hash matches OpenSSL's, and a form built here
 * with another iteration count verifies. */
static void test_interoperates_with_openssl(void **state)
{
	char encoded[PASSWORD_ENCODED_MAX];
	hash_or_fail(PASSWORD, ITERATIONS, encoded);
	char copy[PASSWORD_ENCODED_MAX];
	strcpy(copy, encoded);
	char *parts[4];
	split4(copy, parts);
	unsigned char salt[64], stored[64], expected[32];
	size_t salt_len = base64_decode(parts[2], salt, sizeof(salt));
	assert_int_equal(base64_decode(parts[3], stored, sizeof(stored)), 32);
	assert_int_equal(PKCS5_PBKDF2_HMAC(PASSWORD, (int)strlen(PASSWORD), salt,
					   (int)salt_len, ITERATIONS, EVP_sha256(),
					   32, expected), 1);
	assert_memory_equal(stored, expected, 32);

	/* Our own form, 2000 iterations, padded like the implementation's. */
	bool padded = strchr(parts[2], '=') != NULL;
	unsigned char my_salt[16];
	for (int i = 0; i < 16; i++)
		my_salt[i] = (unsigned char)(i * 17 + 3);
	unsigned char my_hash[32];
	assert_int_equal(PKCS5_PBKDF2_HMAC("hunter2hunter2", 14, my_salt, 16, 2000,
					   EVP_sha256(), 32, my_hash), 1);
	char salt64[64], hash64[64], mine[PASSWORD_ENCODED_MAX];
	base64_encode(my_salt, 16, padded, salt64);
	base64_encode(my_hash, 32, padded, hash64);
	snprintf(mine, sizeof(mine), "pbkdf2-sha256$2000$%s$%s", salt64, hash64);
	assert_true(password_verify("hunter2hunter2", mine));
	assert_false(password_verify("hunter2hunter3", mine));

	/* The same salt and hash under a different count must not verify:
	 * the iteration count is really used. */
	snprintf(mine, sizeof(mine), "pbkdf2-sha256$2001$%s$%s", salt64, hash64);
	assert_false(password_verify("hunter2hunter2", mine));
}

/* Threat: a corrupt or hostile stored value crashing login or verifying
 * every password. Each must be false, and never crash. */
static void test_malformed_encoded(void **state)
{
	char encoded[PASSWORD_ENCODED_MAX];
	hash_or_fail(PASSWORD, ITERATIONS, encoded);
	assert_true(password_verify(PASSWORD, encoded)); /* control */
	char copy[PASSWORD_ENCODED_MAX];
	strcpy(copy, encoded);
	char *p[4];
	split4(copy, p);

	char truncated_hash[64];
	snprintf(truncated_hash, sizeof(truncated_hash), "%.*s",
		 (int)strlen(p[3]) - 8, p[3]);

	char bad[16][PASSWORD_ENCODED_MAX + 64];
	int n = 0;
	snprintf(bad[n++], sizeof(bad[0]), "%s", "");
	snprintf(bad[n++], sizeof(bad[0]), "%s", "pbkdf2-sha256");
	snprintf(bad[n++], sizeof(bad[0]), "pbkdf2-sha256$%s", p[1]);
	snprintf(bad[n++], sizeof(bad[0]), "pbkdf2-sha256$%s$%s", p[1], p[2]);
	snprintf(bad[n++], sizeof(bad[0]), "pbkdf2-sha256$%s$%s$", p[1], p[2]);
	snprintf(bad[n++], sizeof(bad[0]), "pbkdf2-sha256$%s$!!!!$%s", p[1], p[3]);
	snprintf(bad[n++], sizeof(bad[0]), "pbkdf2-sha256$%s$%s$%s", p[1], p[2],
		 truncated_hash);
	snprintf(bad[n++], sizeof(bad[0]), "pbkdf2-sha256$0$%s$%s", p[2], p[3]);
	snprintf(bad[n++], sizeof(bad[0]), "pbkdf2-sha256$-1$%s$%s", p[2], p[3]);
	snprintf(bad[n++], sizeof(bad[0]), "pbkdf2-sha256$abc$%s$%s", p[2], p[3]);
	snprintf(bad[n++], sizeof(bad[0]), "pbkdf2-sha256$99999999999999999999$%s$%s",
		 p[2], p[3]);
	snprintf(bad[n++], sizeof(bad[0]), "pbkdf2-sha256$4294968296$%s$%s",
		 p[2], p[3]); /* 1000 + 2^32: wraps to 1000 in 32 bits */
	snprintf(bad[n++], sizeof(bad[0]), "pbkdf2-sha1$%s$%s$%s", p[1], p[2], p[3]);
	snprintf(bad[n++], sizeof(bad[0]), "%s$extra", encoded);
	snprintf(bad[n++], sizeof(bad[0]), "$$$");

	for (int i = 0; i < n; i++) {
		if (password_verify(PASSWORD, bad[i]))
			fail_msg("accepted malformed \"%s\"", bad[i]);
	}
}

/* An optional argument runs only the tests whose names match it
 * (cmocka's pattern: '*' and '?' wildcards). */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash_then_verify),
		cmocka_unit_test(test_wrong_password),
		cmocka_unit_test(test_salted),
		cmocka_unit_test(test_encoded_form),
		cmocka_unit_test(test_interoperates_with_openssl),
		cmocka_unit_test(test_malformed_encoded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
