/*
 * test_jwt.c - kit/jwt.h: issuing and verifying tokens, and reading the JWT
 * configuration from the environment.
 *
 * Most tokens here are built by hand (base64url + HMAC with OpenSSL), not by
 * libjwt, so that a forged token is exactly what an attacker would send and
 * does not depend on the code under test. Every verification passes an
 * explicit `now`, so no test depends on the wall clock.
 *
 * Run alone: make && build/tests/test_jwt
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

#include <cjson/cJSON.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "kit/jwt.h"

#define NOW ((time_t)1800000000) /* 2027-01-15T08:00:00Z */
#define SECRET "0123456789abcdef0123456789abcdef" /* 32 bytes */
#define WRONG_SECRET "fedcba9876543210fedcba9876543210"

static const char HS256_HEADER[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* ---- helpers: build tokens without the code under test --------------- */

/* base64url without padding; malloc'd. */
static char *b64url(const void *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);
	assert_non_null(out);
	int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	assert_true(n >= 0);
	out[n] = '\0';
	for (int i = 0; i < n; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	char *pad = strchr(out, '=');
	if (pad != NULL)
		*pad = '\0';
	return out;
}

/* base64url (padded or not) -> malloc'd NUL-terminated bytes. */
static char *b64url_decode(const char *in, size_t in_len)
{
	char *std = calloc(in_len + 4, 1);
	assert_non_null(std);
	for (size_t i = 0; i < in_len; i++) {
		char c = in[i];
		std[i] = c == '-' ? '+' : c == '_' ? '/' : c;
	}
	size_t len = in_len;
	while (len % 4 != 0)
		std[len++] = '=';
	unsigned char *out = calloc(len + 1, 1);
	assert_non_null(out);
	int n = EVP_DecodeBlock(out, (unsigned char *)std, (int)len);
	assert_true(n >= 0);
	free(std);
	return (char *)out;
}

/* "header.payload.signature" with the signature made by md over the first
 * two parts, or "header.payload." (an empty signature) when md is NULL. */
static char *make_token(const char *header, const char *payload,
			const EVP_MD *md, const char *secret)
{
	char *h = b64url(header, strlen(header));
	char *p = b64url(payload, strlen(payload));
	size_t input_len = strlen(h) + 1 + strlen(p);
	char *input = malloc(input_len + 1);
	assert_non_null(input);
	snprintf(input, input_len + 1, "%s.%s", h, p);

	char *s = NULL;
	if (md != NULL) {
		unsigned char mac[EVP_MAX_MD_SIZE];
		unsigned int mac_len = 0;
		assert_non_null(HMAC(md, secret, (int)strlen(secret),
				     (unsigned char *)input, input_len, mac,
				     &mac_len));
		s = b64url(mac, mac_len);
	} else {
		s = strdup("");
	}
	size_t token_len = input_len + 1 + strlen(s);
	char *token = malloc(token_len + 1);
	assert_non_null(token);
	snprintf(token, token_len + 1, "%s.%s", input, s);
	free(h);
	free(p);
	free(s);
	free(input);
	return token;
}

/* printf into a malloc'd string (the test's own JSON, never user input). */
static char *payload_fmt(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static char *payload_fmt(const char *fmt, ...)
{
	char *out = NULL;
	va_list ap;
	va_start(ap, fmt);
	assert_true(vasprintf(&out, fmt, ap) >= 0);
	va_end(ap);
	return out;
}

static void config_init(struct kit_jwt_config *cfg, int algorithm)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->algorithm = algorithm;
	memcpy(cfg->secret, SECRET, strlen(SECRET));
	cfg->secret_len = strlen(SECRET);
	cfg->leeway_seconds = 30;
	cfg->ttl_seconds = 3600;
}

/* Verifies a hand-built token at NOW against an HS256 config. */
static enum kit_jwt_error verify_hs256(const char *header, const char *payload,
				       const EVP_MD *md, const char *secret,
				       struct kit_identity *identity)
{
	struct kit_jwt_config cfg;
	config_init(&cfg, JWT_ALG_HS256);
	char *token = make_token(header, payload, md, secret);
	enum kit_jwt_error rc = kit_jwt_verify(&cfg, token, NOW, identity);
	free(token);
	return rc;
}

/* A valid HS256 token for alice, exp NOW+600; the positive control. */
static enum kit_jwt_error verify_valid_control(void)
{
	struct kit_identity id;
	memset(&id, 0, sizeof(id));
	return verify_hs256(HS256_HEADER,
			    "{\"sub\":\"alice\",\"tier\":\"free\",\"exp\":1800000600}",
			    EVP_sha256(), SECRET, &id);
}

/* The claims of a token, decoded from its middle part. */
static cJSON *token_claims(const char *token)
{
	const char *dot1 = strchr(token, '.');
	assert_non_null(dot1);
	const char *dot2 = strchr(dot1 + 1, '.');
	assert_non_null(dot2);
	char *json = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	cJSON *claims = cJSON_Parse(json);
	free(json);
	assert_non_null(claims);
	return claims;
}

/* ---- issue + verify -------------------------------------------------- */

static void test_issued_token_verifies(void **state)
{
	struct kit_jwt_config cfg;
	config_init(&cfg, JWT_ALG_HS256);
	char *token = kit_jwt_issue(&cfg, "alice", "premium", NOW);
	assert_non_null(token);

	struct kit_identity id;
	memset(&id, 0, sizeof(id));
	assert_int_equal(kit_jwt_verify(&cfg, token, NOW, &id), KIT_JWT_OK);
	assert_string_equal(id.subject, "alice");
	assert_string_equal(id.tier, "premium");

	/* Still valid just before exp, refused well after it. */
	assert_int_equal(kit_jwt_verify(&cfg, token, NOW + 3600 - 1, &id),
			 KIT_JWT_OK);
	assert_int_equal(kit_jwt_verify(&cfg, token, NOW + 3600 + 31 + 60, &id),
			 KIT_JWT_EXPIRED);
	free(token);
}

static void test_issued_token_claims(void **state)
{
	struct kit_jwt_config cfg;
	config_init(&cfg, JWT_ALG_HS256);
	cfg.ttl_seconds = 900;
	strcpy(cfg.issuer, "kit-users");
	strcpy(cfg.audience, "kit-api");
	char *token = kit_jwt_issue(&cfg, "bob", "free", NOW);
	assert_non_null(token);

	char *header = b64url_decode(token, (size_t)(strchr(token, '.') - token));
	cJSON *hdr = cJSON_Parse(header);
	assert_non_null(hdr);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(hdr, "alg")),
			    "HS256");
	cJSON_Delete(hdr);
	free(header);

	cJSON *claims = token_claims(token);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(claims, "sub")), "bob");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(claims, "tier")), "free");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(claims, "iss")), "kit-users");
	cJSON *aud = cJSON_GetObjectItem(claims, "aud");
	assert_non_null(aud);
	/* aud may be a string or an array holding it (RFC 7519 4.1.3). */
	if (cJSON_IsArray(aud))
		aud = cJSON_GetArrayItem(aud, 0);
	assert_string_equal(cJSON_GetStringValue(aud), "kit-api");
	assert_true(cJSON_IsNumber(cJSON_GetObjectItem(claims, "iat")));
	assert_true(cJSON_IsNumber(cJSON_GetObjectItem(claims, "exp")));
	assert_true(cJSON_GetObjectItem(claims, "iat")->valuedouble == (double)NOW);
	assert_true(cJSON_GetObjectItem(claims, "exp")->valuedouble == (double)(NOW + 900));
	cJSON_Delete(claims);

	struct kit_identity id;
	memset(&id, 0, sizeof(id));
	assert_int_equal(kit_jwt_verify(&cfg, token, NOW, &id), KIT_JWT_OK);
	free(token);
}

/* With HS384 pinned, issue signs HS384 and verify accepts it; an HS256
 * token is then the wrong algorithm even with the right secret. */
static void test_hs384_pinned(void **state)
{
	struct kit_jwt_config cfg;
	config_init(&cfg, JWT_ALG_HS384);
	struct kit_identity id;
	memset(&id, 0, sizeof(id));

	char *issued = kit_jwt_issue(&cfg, "carol", "free", NOW);
	assert_non_null(issued);
	assert_int_equal(kit_jwt_verify(&cfg, issued, NOW, &id), KIT_JWT_OK);
	assert_string_equal(id.subject, "carol");
	free(issued);

	char *hs384 = make_token("{\"alg\":\"HS384\",\"typ\":\"JWT\"}",
				 "{\"sub\":\"carol\",\"exp\":1800000600}",
				 EVP_sha384(), SECRET);
	assert_int_equal(kit_jwt_verify(&cfg, hs384, NOW, &id), KIT_JWT_OK);
	free(hs384);

	char *hs256 = make_token(HS256_HEADER,
				 "{\"sub\":\"carol\",\"exp\":1800000600}",
				 EVP_sha256(), SECRET);
	assert_int_equal(kit_jwt_verify(&cfg, hs256, NOW, &id),
			 KIT_JWT_BAD_ALGORITHM);
	free(hs256);
}

/* ---- claims ---------------------------------------------------------- */

static void test_missing_tier_reads_free(void **state)
{
	struct kit_identity id;
	memset(&id, 0, sizeof(id));
	assert_int_equal(verify_hs256(HS256_HEADER,
				      "{\"sub\":\"bob\",\"exp\":1800000600}",
				      EVP_sha256(), SECRET, &id),
			 KIT_JWT_OK);
	assert_string_equal(id.subject, "bob");
	assert_string_equal(id.tier, "free");
}

/* Threat: a token minted with a tier the kit does not know ("admin"),
 * hoping it maps to something privileged or lands in a header verbatim.
 * It is refused (once it read as free; a tier nobody issues means the
 * token was not made by the users service). */
static void test_unknown_tier_refused(void **state)
{
	struct kit_identity id;
	memset(&id, 0, sizeof(id));
	assert_int_equal(verify_hs256(HS256_HEADER,
				      "{\"sub\":\"bob\",\"tier\":\"premium\",\"exp\":1800000600}",
				      EVP_sha256(), SECRET, &id),
			 KIT_JWT_OK);
	assert_string_equal(id.tier, "premium"); /* positive control */

	static const char *const bad[] = {
		"{\"sub\":\"bob\",\"tier\":\"admin\",\"exp\":1800000600}",
		"{\"sub\":\"bob\",\"tier\":\"Premium\",\"exp\":1800000600}",
		"{\"sub\":\"bob\",\"tier\":\"free\\r\\nX-Injected: 1\",\"exp\":1800000600}",
		"{\"sub\":\"bob\",\"tier\":7,\"exp\":1800000600}",
		"{\"sub\":\"bob\",\"tier\":null,\"exp\":1800000600}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&id, 0, sizeof(id));
		if (verify_hs256(HS256_HEADER, bad[i], EVP_sha256(), SECRET, &id) != KIT_JWT_BAD_CLAIM)
			fail_msg("%s was not refused as KIT_JWT_BAD_CLAIM", bad[i]);
		assert_false(id.authenticated);
	}
}

/* Threat: whoever holds the key (a leaked secret, a careless tool) signs
 * a sub with CR LF in it; the gateway would copy it into X-User-Id, and
 * the CR LF would start a header line of its own upstream. sub must be a
 * username by the users service's rule (kit_username_is_valid). */
static void test_sub_must_be_a_username(void **state)
{
	static const char *const bad[] = {
		"alice\\r\\nX-Injected: 1", "alice\\n", "Alice", "al", "-alice",
		"alice bob", "al:ce", "\\u00e9lise",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 33 */
	};
	static const char *const good[] = { "alice", "a_b", "x.y-z", "007", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" };
	struct kit_identity id;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char *payload = payload_fmt("{\"sub\":\"%s\",\"exp\":1800000600}", good[i]);
		if (verify_hs256(HS256_HEADER, payload, EVP_sha256(), SECRET, &id) != KIT_JWT_OK)
			fail_msg("sub \"%s\" was refused (positive control)", good[i]);
		free(payload);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *payload = payload_fmt("{\"sub\":\"%s\",\"exp\":1800000600}", bad[i]);
		if (verify_hs256(HS256_HEADER, payload, EVP_sha256(), SECRET, &id) != KIT_JWT_BAD_CLAIM)
			fail_msg("sub \"%s\" was not refused as KIT_JWT_BAD_CLAIM", bad[i]);
		assert_false(id.authenticated);
		free(payload);
	}
	/* A NUL would end the C string early: "alice\u0000x" must not read
	 * as alice. */
	assert_int_equal(verify_hs256(HS256_HEADER,
				      "{\"sub\":\"alice\\u0000x\",\"exp\":1800000600}",
				      EVP_sha256(), SECRET, &id),
			 KIT_JWT_MALFORMED);
}

/* The rule itself, and the issuer never signing what verify refuses. */
static void test_username_rule_and_issue(void **state)
{
	struct kit_jwt_config cfg;

	assert_true(kit_username_is_valid("alice", 5));
	assert_true(kit_username_is_valid("alice\r\n", 5)); /* only len bytes */
	assert_false(kit_username_is_valid("alice\r\n", 7));
	assert_false(kit_username_is_valid("_alice", 6));
	assert_true(kit_tier_is_known("free"));
	assert_true(kit_tier_is_known("premium"));
	assert_false(kit_tier_is_known("admin"));
	assert_false(kit_tier_is_known(""));

	config_init(&cfg, JWT_ALG_HS256);
	char *token = kit_jwt_issue(&cfg, "alice", "free", NOW);
	assert_non_null(token); /* positive control */
	free(token);
	assert_null(kit_jwt_issue(&cfg, "alice\r\nX-Injected: 1", "free", NOW));
	assert_null(kit_jwt_issue(&cfg, "alice", "admin", NOW));
}

static void test_missing_exp(void **state)
{
	struct kit_identity id;
	assert_int_equal(verify_valid_control(), KIT_JWT_OK);
	assert_int_equal(verify_hs256(HS256_HEADER,
				      "{\"sub\":\"bob\",\"tier\":\"free\"}",
				      EVP_sha256(), SECRET, &id),
			 KIT_JWT_MISSING_CLAIM);
}

static void test_missing_sub(void **state)
{
	struct kit_identity id;
	assert_int_equal(verify_valid_control(), KIT_JWT_OK);
	assert_int_equal(verify_hs256(HS256_HEADER,
				      "{\"tier\":\"free\",\"exp\":1800000600}",
				      EVP_sha256(), SECRET, &id),
			 KIT_JWT_MISSING_CLAIM);
}

/* Threat: a correctly signed token whose claims have the wrong JSON type
 * (exp as a string, sub as a number) or a sub too long for the identity
 * buffer (truncating it could turn "alice<60 x's>" into someone else).
 * None of them may verify. */
static void test_bad_claim_types_refused(void **state)
{
	struct kit_identity id;
	assert_int_equal(verify_valid_control(), KIT_JWT_OK);
	assert_int_not_equal(verify_hs256(HS256_HEADER,
					  "{\"sub\":\"bob\",\"exp\":\"1800000600\"}",
					  EVP_sha256(), SECRET, &id),
			     KIT_JWT_OK);
	assert_int_not_equal(verify_hs256(HS256_HEADER,
					  "{\"sub\":42,\"exp\":1800000600}",
					  EVP_sha256(), SECRET, &id),
			     KIT_JWT_OK);
	assert_int_not_equal(verify_hs256(HS256_HEADER,
					  "{\"sub\":\"\",\"exp\":1800000600}",
					  EVP_sha256(), SECRET, &id),
			     KIT_JWT_OK);

	char long_sub[KIT_SUBJECT_MAX + 2];
	memset(long_sub, 'a', sizeof(long_sub) - 1);
	long_sub[sizeof(long_sub) - 1] = '\0'; /* KIT_SUBJECT_MAX + 1 bytes */
	char *payload = payload_fmt("{\"sub\":\"%s\",\"exp\":1800000600}", long_sub);
	assert_int_not_equal(verify_hs256(HS256_HEADER, payload, EVP_sha256(),
					  SECRET, &id),
			     KIT_JWT_OK);
	free(payload);
}

/* ---- algorithm confusion --------------------------------------------- */

/* Threat: "alg":"none" with an empty signature, which libjwt 1.10 accepts
 * when no key is given: anyone could mint any identity. */
static void test_alg_none_refused(void **state)
{
	struct kit_identity id;
	assert_int_equal(verify_valid_control(), KIT_JWT_OK);
	const char *payload = "{\"sub\":\"alice\",\"tier\":\"premium\",\"exp\":1800000600}";
	assert_int_equal(verify_hs256("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload,
				      NULL, SECRET, &id),
			 KIT_JWT_BAD_ALGORITHM);
	assert_int_equal(verify_hs256("{\"alg\":\"None\",\"typ\":\"JWT\"}", payload,
				      NULL, SECRET, &id),
			 KIT_JWT_BAD_ALGORITHM);
	assert_int_equal(verify_hs256("{\"alg\":\"NONE\"}", payload, NULL,
				      SECRET, &id),
			 KIT_JWT_BAD_ALGORITHM);
	/* "none" in the header but a real HS256 signature: still refused, the
	 * header must name the pinned algorithm. */
	assert_int_equal(verify_hs256("{\"alg\":\"none\"}", payload, EVP_sha256(),
				      SECRET, &id),
			 KIT_JWT_BAD_ALGORITHM);
}

/* Threat: a token signed correctly with the shared secret but under an
 * algorithm other than the pinned one (HS512 while HS256 is configured);
 * letting the token pick the algorithm is how algorithm confusion starts. */
static void test_other_hmac_algorithm_refused(void **state)
{
	struct kit_identity id;
	assert_int_equal(verify_valid_control(), KIT_JWT_OK);
	assert_int_equal(verify_hs256("{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
				      "{\"sub\":\"alice\",\"exp\":1800000600}",
				      EVP_sha512(), SECRET, &id),
			 KIT_JWT_BAD_ALGORITHM);
	assert_int_equal(verify_hs256("{\"alg\":\"HS384\",\"typ\":\"JWT\"}",
				      "{\"sub\":\"alice\",\"exp\":1800000600}",
				      EVP_sha384(), SECRET, &id),
			 KIT_JWT_BAD_ALGORITHM);
}

/* Threat: the RS256/HS256 confusion - an asymmetric algorithm named in the
 * header so that a verifier might treat the secret as a public key. */
static void test_rs256_refused(void **state)
{
	struct kit_identity id;
	assert_int_equal(verify_valid_control(), KIT_JWT_OK);
	assert_int_equal(verify_hs256("{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
				      "{\"sub\":\"alice\",\"exp\":1800000600}",
				      EVP_sha256(), SECRET, &id),
			 KIT_JWT_BAD_ALGORITHM);
	assert_int_equal(verify_hs256("{\"alg\":\"ES256\"}",
				      "{\"sub\":\"alice\",\"exp\":1800000600}",
				      EVP_sha256(), SECRET, &id),
			 KIT_JWT_BAD_ALGORITHM);
}

/* Threat: a header with no alg, or alg of the wrong type, slipping past a
 * check that only compares strings when one is present. */
static void test_missing_or_odd_alg_refused(void **state)
{
	struct kit_identity id;
	assert_int_equal(verify_valid_control(), KIT_JWT_OK);
	const char *payload = "{\"sub\":\"alice\",\"exp\":1800000600}";
	assert_int_not_equal(verify_hs256("{\"typ\":\"JWT\"}", payload,
					  EVP_sha256(), SECRET, &id),
			     KIT_JWT_OK);
	assert_int_not_equal(verify_hs256("{\"alg\":256}", payload,
					  EVP_sha256(), SECRET, &id),
			     KIT_JWT_OK);
	assert_int_not_equal(verify_hs256("{\"alg\":\"hs256\"}", payload,
					  EVP_sha256(), SECRET, &id),
			     KIT_JWT_OK);
}

/* ---- signatures ------------------------------------------------------ */

/* Threat: a user edits their own token (sub, tier) and keeps the old
 * signature, or drops the signature altogether. */
static void test_tampered_payload_refused(void **state)
{
	struct kit_jwt_config cfg;
	config_init(&cfg, JWT_ALG_HS256);
	struct kit_identity id;
	memset(&id, 0, sizeof(id));

	char *good = make_token(HS256_HEADER,
				"{\"sub\":\"alice\",\"tier\":\"free\",\"exp\":1800000600}",
				EVP_sha256(), SECRET);
	if (good == NULL)
		fail_msg("could not build the token"); /* and tells the compiler */
	assert_int_equal(kit_jwt_verify(&cfg, good, NOW, &id), KIT_JWT_OK);

	/* Same header and signature, payload upgraded to premium. */
	static const char premium[] =
		"{\"sub\":\"alice\",\"tier\":\"premium\",\"exp\":1800000600}";
	char *forged_payload = b64url(premium, strlen(premium));
	size_t header_len = strcspn(good, ".");
	size_t signature_at = strlen(good);
	while (signature_at > 0 && good[signature_at - 1] != '.')
		signature_at--;
	assert_true(signature_at > header_len + 1);
	char *forged = NULL;
	assert_true(asprintf(&forged, "%.*s.%s.%s", (int)header_len, good,
			     forged_payload, good + signature_at) > 0);
	assert_int_equal(kit_jwt_verify(&cfg, forged, NOW, &id),
			 KIT_JWT_BAD_SIGNATURE);

	/* One character of the signature changed (not the last one, whose low
	 * bits are padding a lenient decoder may ignore). */
	char *flipped = strdup(good);
	char *sig = strrchr(flipped, '.') + 1;
	sig[5] = sig[5] == 'A' ? 'B' : 'A';
	assert_int_equal(kit_jwt_verify(&cfg, flipped, NOW, &id),
			 KIT_JWT_BAD_SIGNATURE);

	/* The signature stripped, the header still naming HS256. */
	char *stripped = strdup(good);
	strrchr(stripped, '.')[1] = '\0';
	assert_int_equal(kit_jwt_verify(&cfg, stripped, NOW, &id),
			 KIT_JWT_BAD_SIGNATURE);

	free(good);
	free(forged_payload);
	free(forged);
	free(flipped);
	free(stripped);
}

/* Threat: a token signed with a key that is not ours. */
static void test_wrong_secret_refused(void **state)
{
	struct kit_identity id;
	assert_int_equal(verify_valid_control(), KIT_JWT_OK);
	assert_int_equal(verify_hs256(HS256_HEADER,
				      "{\"sub\":\"alice\",\"exp\":1800000600}",
				      EVP_sha256(), WRONG_SECRET, &id),
			 KIT_JWT_BAD_SIGNATURE);

	/* An issued token checked under another secret. */
	struct kit_jwt_config cfg;
	config_init(&cfg, JWT_ALG_HS256);
	char *token = kit_jwt_issue(&cfg, "alice", "free", NOW);
	assert_non_null(token);
	memcpy(cfg.secret, WRONG_SECRET, strlen(WRONG_SECRET));
	assert_int_equal(kit_jwt_verify(&cfg, token, NOW, &id),
			 KIT_JWT_BAD_SIGNATURE);
	free(token);
}

/* ---- time ------------------------------------------------------------ */

/* Threat: replaying an expired token. The leeway is 30 s. */
static void test_expired_beyond_leeway(void **state)
{
	struct kit_identity id;
	assert_int_equal(verify_valid_control(), KIT_JWT_OK);
	char *payload = payload_fmt("{\"sub\":\"alice\",\"exp\":%lld}",
				    (long long)(NOW - 100));
	assert_int_equal(verify_hs256(HS256_HEADER, payload, EVP_sha256(),
				      SECRET, &id),
			 KIT_JWT_EXPIRED);
	free(payload);
}

static void test_expired_within_leeway(void **state)
{
	struct kit_identity id;
	char *payload = payload_fmt("{\"sub\":\"alice\",\"exp\":%lld}",
				    (long long)(NOW - 10));
	assert_int_equal(verify_hs256(HS256_HEADER, payload, EVP_sha256(),
				      SECRET, &id),
			 KIT_JWT_OK);
	free(payload);
}

static void test_not_yet_valid(void **state)
{
	struct kit_identity id;
	char *later = payload_fmt("{\"sub\":\"alice\",\"exp\":%lld,\"nbf\":%lld}",
				  (long long)(NOW + 3600), (long long)(NOW + 100));
	assert_int_equal(verify_hs256(HS256_HEADER, later, EVP_sha256(), SECRET,
				      &id),
			 KIT_JWT_NOT_YET_VALID);
	free(later);

	/* nbf 10 s ahead is clock skew, within the leeway. */
	char *skew = payload_fmt("{\"sub\":\"alice\",\"exp\":%lld,\"nbf\":%lld}",
				 (long long)(NOW + 3600), (long long)(NOW + 10));
	assert_int_equal(verify_hs256(HS256_HEADER, skew, EVP_sha256(), SECRET,
				      &id),
			 KIT_JWT_OK);
	free(skew);
}

/* ---- malformed input ------------------------------------------------- */

/* Threat: parser abuse - truncated, extra-part, non-base64 or huge tokens
 * must be refused as malformed, never crash or verify. */
static void test_garbage_is_malformed(void **state)
{
	struct kit_jwt_config cfg;
	config_init(&cfg, JWT_ALG_HS256);
	struct kit_identity id;
	assert_int_equal(verify_valid_control(), KIT_JWT_OK);

	const char *garbage[] = {
		"", ".", "..", "a", "a.b", "a.b.c.d", "!!!.@@@.###",
		"eyJhbGciOiJIUzI1NiJ9", /* a header alone */
		"e30.e30.e30.e30",
	};
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		enum kit_jwt_error rc = kit_jwt_verify(&cfg, garbage[i], NOW, &id);
		if (rc != KIT_JWT_MALFORMED)
			fail_msg("\"%s\": expected MALFORMED (%d), got %d",
				 garbage[i], KIT_JWT_MALFORMED, rc);
	}

	/* 10 KB of base64url letters. */
	char *big = malloc(10241);
	assert_non_null(big);
	memset(big, 'a', 10240);
	big[10240] = '\0';
	big[4000] = '.';
	big[8000] = '.';
	assert_int_equal(kit_jwt_verify(&cfg, big, NOW, &id), KIT_JWT_MALFORMED);
	free(big);
}

/* Threat: a memory-exhaustion or buffer-bound probe with a well-formed,
 * correctly signed 10 KB token; the header lists "too long" as malformed. */
static void test_oversized_signed_token_is_malformed(void **state)
{
	struct kit_identity id;
	assert_int_equal(verify_valid_control(), KIT_JWT_OK);
	char pad[8000];
	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	char *payload = payload_fmt("{\"sub\":\"alice\",\"exp\":1800000600,\"pad\":\"%s\"}",
				    pad);
	assert_int_equal(verify_hs256(HS256_HEADER, payload, EVP_sha256(),
				      SECRET, &id),
			 KIT_JWT_MALFORMED);
	free(payload);
}

/* Correctly signed, but the parts are not JSON objects. */
static void test_non_json_parts_are_malformed(void **state)
{
	struct kit_identity id;
	assert_int_equal(verify_valid_control(), KIT_JWT_OK);
	assert_int_equal(verify_hs256(HS256_HEADER, "not json", EVP_sha256(),
				      SECRET, &id),
			 KIT_JWT_MALFORMED);
	assert_int_equal(verify_hs256(HS256_HEADER, "[1,2,3]", EVP_sha256(),
				      SECRET, &id),
			 KIT_JWT_MALFORMED);
	assert_int_equal(verify_hs256("{\"alg\":\"HS256\"", /* truncated */
				      "{\"sub\":\"alice\",\"exp\":1800000600}",
				      EVP_sha256(), SECRET, &id),
			 KIT_JWT_MALFORMED);
}

/* ---- issuer and audience --------------------------------------------- */

static enum kit_jwt_error verify_with_iss_aud(const char *payload)
{
	struct kit_jwt_config cfg;
	config_init(&cfg, JWT_ALG_HS256);
	strcpy(cfg.issuer, "kit-users");
	strcpy(cfg.audience, "kit-api");
	struct kit_identity id;
	memset(&id, 0, sizeof(id));
	char *token = make_token(HS256_HEADER, payload, EVP_sha256(), SECRET);
	enum kit_jwt_error rc = kit_jwt_verify(&cfg, token, NOW, &id);
	free(token);
	return rc;
}

/* Threat: a token minted for another service or by another issuer that
 * happens to share the secret. */
static void test_issuer_checked(void **state)
{
	assert_int_equal(verify_with_iss_aud("{\"sub\":\"ann\",\"exp\":1800000600,"
					     "\"iss\":\"kit-users\",\"aud\":\"kit-api\"}"),
			 KIT_JWT_OK);
	assert_int_equal(verify_with_iss_aud("{\"sub\":\"ann\",\"exp\":1800000600,"
					     "\"iss\":\"evil\",\"aud\":\"kit-api\"}"),
			 KIT_JWT_BAD_ISSUER);
	assert_int_equal(verify_with_iss_aud("{\"sub\":\"ann\",\"exp\":1800000600,"
					     "\"aud\":\"kit-api\"}"),
			 KIT_JWT_BAD_ISSUER);
}

static void test_audience_checked(void **state)
{
	assert_int_equal(verify_with_iss_aud("{\"sub\":\"ann\",\"exp\":1800000600,"
					     "\"iss\":\"kit-users\",\"aud\":\"kit-api\"}"),
			 KIT_JWT_OK);
	assert_int_equal(verify_with_iss_aud("{\"sub\":\"ann\",\"exp\":1800000600,"
					     "\"iss\":\"kit-users\",\"aud\":\"other\"}"),
			 KIT_JWT_BAD_AUDIENCE);
	assert_int_equal(verify_with_iss_aud("{\"sub\":\"ann\",\"exp\":1800000600,"
					     "\"iss\":\"kit-users\"}"),
			 KIT_JWT_BAD_AUDIENCE);
	assert_int_equal(verify_with_iss_aud("{\"sub\":\"ann\",\"exp\":1800000600,"
					     "\"iss\":\"kit-users\",\"aud\":[\"other\",\"kit-api\"]}"),
			 KIT_JWT_OK);
	assert_int_equal(verify_with_iss_aud("{\"sub\":\"ann\",\"exp\":1800000600,"
					     "\"iss\":\"kit-users\",\"aud\":[\"other\",\"more\"]}"),
			 KIT_JWT_BAD_AUDIENCE);
	/* A prefix is not a match. */
	assert_int_equal(verify_with_iss_aud("{\"sub\":\"ann\",\"exp\":1800000600,"
					     "\"iss\":\"kit-users\",\"aud\":\"kit-api-admin\"}"),
			 KIT_JWT_BAD_AUDIENCE);
}

/* When neither is configured, iss and aud in a token are not checked. */
static void test_issuer_audience_unchecked_when_unset(void **state)
{
	struct kit_identity id;
	assert_int_equal(verify_hs256(HS256_HEADER,
				      "{\"sub\":\"ann\",\"exp\":1800000600,"
				      "\"iss\":\"anyone\",\"aud\":\"anything\"}",
				      EVP_sha256(), SECRET, &id),
			 KIT_JWT_OK);
}

/* ---- kit_jwt_error_text ---------------------------------------------- */

static void test_error_text(void **state)
{
	for (int e = KIT_JWT_OK; e <= KIT_JWT_BAD_AUDIENCE; e++) {
		const char *text = kit_jwt_error_text((enum kit_jwt_error)e);
		assert_non_null(text);
		assert_true(strlen(text) > 0);
	}
	assert_string_not_equal(kit_jwt_error_text(KIT_JWT_EXPIRED),
				kit_jwt_error_text(KIT_JWT_BAD_SIGNATURE));
}

/* ---- configuration from the environment ------------------------------ */

static int clear_jwt_env(void **state)
{
	const char *names[] = {
		"JWT_SECRET", "JWT_ALG", "JWT_ISSUER", "JWT_AUDIENCE",
		"JWT_LEEWAY_SECONDS", "JWT_TTL_SECONDS",
		"ALLOW_INSECURE_DEV_SECRET",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unsetenv(names[i]);
	return 0;
}

static void test_config_secret_required(void **state)
{
	struct kit_jwt_config cfg;
	assert_int_equal(kit_jwt_config_from_env(&cfg), -1);
	setenv("JWT_SECRET", "", 1);
	assert_int_equal(kit_jwt_config_from_env(&cfg), -1);
}

static void test_config_defaults(void **state)
{
	struct kit_jwt_config cfg;
	setenv("JWT_SECRET", SECRET, 1);
	assert_int_equal(kit_jwt_config_from_env(&cfg), 0);
	assert_int_equal(cfg.algorithm, JWT_ALG_HS256);
	assert_int_equal(cfg.secret_len, strlen(SECRET));
	assert_memory_equal(cfg.secret, SECRET, strlen(SECRET));
	assert_string_equal(cfg.issuer, "");
	assert_string_equal(cfg.audience, "");
	assert_int_equal(cfg.leeway_seconds, 30);
	assert_int_equal(cfg.ttl_seconds, 3600);
}

/* Threat: a short, guessable HMAC key in production. */
static void test_config_short_secret(void **state)
{
	struct kit_jwt_config cfg;
	setenv("JWT_SECRET", "0123456789abcdef0123456789abcde", 1); /* 31 */
	assert_int_equal(kit_jwt_config_from_env(&cfg), -1);

	setenv("ALLOW_INSECURE_DEV_SECRET", "false", 1);
	assert_int_equal(kit_jwt_config_from_env(&cfg), -1);

	setenv("ALLOW_INSECURE_DEV_SECRET", "true", 1);
	assert_int_equal(kit_jwt_config_from_env(&cfg), 0);
	assert_int_equal(cfg.secret_len, 31);

	setenv("ALLOW_INSECURE_DEV_SECRET", "1", 1); /* the header's spelling */
	assert_int_equal(kit_jwt_config_from_env(&cfg), 0);
}

/* Threat: configuring the verifier into accepting unsigned or asymmetric
 * tokens. */
static void test_config_algorithm(void **state)
{
	struct kit_jwt_config cfg;
	setenv("JWT_SECRET", SECRET, 1);

	setenv("JWT_ALG", "none", 1);
	assert_int_equal(kit_jwt_config_from_env(&cfg), -1);
	setenv("JWT_ALG", "RS256", 1);
	assert_int_equal(kit_jwt_config_from_env(&cfg), -1);
	setenv("JWT_ALG", "HS1024", 1);
	assert_int_equal(kit_jwt_config_from_env(&cfg), -1);

	setenv("JWT_ALG", "HS384", 1);
	assert_int_equal(kit_jwt_config_from_env(&cfg), 0);
	assert_int_equal(cfg.algorithm, JWT_ALG_HS384);
	setenv("JWT_ALG", "HS512", 1);
	assert_int_equal(kit_jwt_config_from_env(&cfg), 0);
	assert_int_equal(cfg.algorithm, JWT_ALG_HS512);
}

static void test_config_issuer_audience_leeway_ttl(void **state)
{
	struct kit_jwt_config cfg;
	setenv("JWT_SECRET", SECRET, 1);
	setenv("JWT_ISSUER", "kit-users", 1);
	setenv("JWT_AUDIENCE", "kit-api", 1);
	setenv("JWT_LEEWAY_SECONDS", "5", 1);
	setenv("JWT_TTL_SECONDS", "600", 1);
	assert_int_equal(kit_jwt_config_from_env(&cfg), 0);
	assert_string_equal(cfg.issuer, "kit-users");
	assert_string_equal(cfg.audience, "kit-api");
	assert_int_equal(cfg.leeway_seconds, 5);
	assert_int_equal(cfg.ttl_seconds, 600);

	setenv("JWT_LEEWAY_SECONDS", "abc", 1);
	assert_int_equal(kit_jwt_config_from_env(&cfg), -1);
	setenv("JWT_LEEWAY_SECONDS", "5", 1);
	setenv("JWT_TTL_SECONDS", "-1", 1);
	assert_int_equal(kit_jwt_config_from_env(&cfg), -1);
}

/* Tests that set variables start and end with none of them set. */
#define ENV_TEST(test) \
	cmocka_unit_test_setup_teardown(test, clear_jwt_env, clear_jwt_env)

/* An optional argument runs only the tests whose names match it
 * (cmocka's pattern: '*' and '?' wildcards). */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_issued_token_verifies),
		cmocka_unit_test(test_issued_token_claims),
		cmocka_unit_test(test_hs384_pinned),
		cmocka_unit_test(test_missing_tier_reads_free),
		cmocka_unit_test(test_unknown_tier_refused),
		cmocka_unit_test(test_sub_must_be_a_username),
		cmocka_unit_test(test_username_rule_and_issue),
		cmocka_unit_test(test_missing_exp),
		cmocka_unit_test(test_missing_sub),
		cmocka_unit_test(test_bad_claim_types_refused),
		cmocka_unit_test(test_alg_none_refused),
		cmocka_unit_test(test_other_hmac_algorithm_refused),
		cmocka_unit_test(test_rs256_refused),
		cmocka_unit_test(test_missing_or_odd_alg_refused),
		cmocka_unit_test(test_tampered_payload_refused),
		cmocka_unit_test(test_wrong_secret_refused),
		cmocka_unit_test(test_expired_beyond_leeway),
		cmocka_unit_test(test_expired_within_leeway),
		cmocka_unit_test(test_not_yet_valid),
		cmocka_unit_test(test_garbage_is_malformed),
		cmocka_unit_test(test_oversized_signed_token_is_malformed),
		cmocka_unit_test(test_non_json_parts_are_malformed),
		cmocka_unit_test(test_issuer_checked),
		cmocka_unit_test(test_audience_checked),
		cmocka_unit_test(test_issuer_audience_unchecked_when_unset),
		cmocka_unit_test(test_error_text),
		ENV_TEST(test_config_secret_required),
		ENV_TEST(test_config_defaults),
		ENV_TEST(test_config_short_secret),
		ENV_TEST(test_config_algorithm),
		ENV_TEST(test_config_issuer_audience_leeway_ttl),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
