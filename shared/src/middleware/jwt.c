/*
 * jwt.c - issuing and verifying JSON Web Tokens (kit/jwt.h).
 *
 * libjwt 1.10 does the signing and the signature check. Everything else is
 * ours, because libjwt 1.10 does none of it:
 *
 *   1. shape: three base64url parts, at most KIT_JWT_MAX_LENGTH bytes
 *   2. the header's "alg" must be the configured one, checked before libjwt
 *      runs: libjwt accepts "none" when given no key and HMACs with any key
 *      it is handed, so "alg":"none" and algorithm-confusion tokens must
 *      never reach it
 *   3. the signature (jwt_decode with the pinned key)
 *   4. claims, read from the payload with cJSON: exp required, nbf
 *      honoured, both with leeway; iss and aud when configured; sub
 *      required and a valid username, tier absent (free) or a known one:
 *      a signed token is still refused when its claims could not be
 *      passed on safely (a sub with CR LF would be a header of its own)
 *
 * The username rule itself (kit_username_is_valid) lives here too, once,
 * for the users service, the token and the identity headers alike.
 *
 * The configuration is read once at start-up; verify and issue only read
 * it, so they are safe from any thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <jwt.h>
#include <openssl/evp.h>

#include "kit/config.h"
#include "kit/text.h"
#include "kit/jwt.h"

#define KIT_JWT_MAX_LENGTH 8192
#define MIN_SECRET_BYTES 32

static const struct {
	const char *name;
	jwt_alg_t alg;
} algorithms[] = {
	{ "HS256", JWT_ALG_HS256 },
	{ "HS384", JWT_ALG_HS384 },
	{ "HS512", JWT_ALG_HS512 },
};

static const char *algorithm_name(int alg)
{
	for (size_t i = 0; i < sizeof(algorithms) / sizeof(algorithms[0]); i++) {
		if ((int)algorithms[i].alg == alg)
			return algorithms[i].name;
	}
	return "?";
}

int kit_jwt_config_from_env(struct kit_jwt_config *cfg)
{
	const char *secret = kit_env_string("JWT_SECRET", NULL);
	const char *alg = kit_env_string("JWT_ALG", "HS256");
	const char *issuer = kit_env_string("JWT_ISSUER", "");
	const char *audience = kit_env_string("JWT_AUDIENCE", "");
	bool insecure = false;

	memset(cfg, 0, sizeof(*cfg));
	cfg->algorithm = -1;
	for (size_t i = 0; i < sizeof(algorithms) / sizeof(algorithms[0]); i++) {
		if (strcmp(alg, algorithms[i].name) == 0)
			cfg->algorithm = algorithms[i].alg;
	}
	if (cfg->algorithm < 0) {
		fprintf(stderr, "JWT_ALG: \"%s\" is not one of HS256, HS384, HS512\n", alg);
		return -1;
	}
	if (kit_env_bool("ALLOW_INSECURE_DEV_SECRET", false, &insecure) != 0)
		return -1;
	if (secret == NULL) {
		fprintf(stderr, "JWT_SECRET: not set (use at least %d random bytes, e.g. `openssl rand -hex 32`)\n",
			MIN_SECRET_BYTES);
		return -1;
	}
	if (strlen(secret) >= sizeof(cfg->secret)) {
		fprintf(stderr, "JWT_SECRET: longer than %zu bytes\n", sizeof(cfg->secret) - 1);
		return -1;
	}
	if (strlen(secret) < MIN_SECRET_BYTES) {
		if (!insecure) {
			fprintf(stderr, "JWT_SECRET: %zu bytes is too short to resist guessing; use at least %d (or ALLOW_INSECURE_DEV_SECRET=true for development)\n",
				strlen(secret), MIN_SECRET_BYTES);
			return -1;
		}
		fprintf(stderr, "JWT_SECRET: only %zu bytes, accepted because ALLOW_INSECURE_DEV_SECRET=true: development only\n",
			strlen(secret));
	}
	if (strlen(issuer) >= sizeof(cfg->issuer) || strlen(audience) >= sizeof(cfg->audience)) {
		fprintf(stderr, "JWT_ISSUER/JWT_AUDIENCE: longer than 127 bytes\n");
		return -1;
	}
	memcpy(cfg->secret, secret, strlen(secret));
	cfg->secret_len = strlen(secret);
	strcpy(cfg->issuer, issuer);
	strcpy(cfg->audience, audience);
	if (kit_env_long("JWT_LEEWAY_SECONDS", 30, 0, 300, &cfg->leeway_seconds) != 0 ||
	    kit_env_long("JWT_TTL_SECONDS", 3600, 60, 30L * 86400, &cfg->ttl_seconds) != 0)
		return -1;
	return 0;
}

const char *kit_jwt_error_text(enum kit_jwt_error error)
{
	switch (error) {
	case KIT_JWT_OK: return "valid";
	case KIT_JWT_MALFORMED: return "the token is not a well-formed JWT";
	case KIT_JWT_BAD_ALGORITHM: return "the token's algorithm is not the one this server accepts";
	case KIT_JWT_BAD_SIGNATURE: return "the token's signature does not verify";
	case KIT_JWT_EXPIRED: return "the token has expired";
	case KIT_JWT_NOT_YET_VALID: return "the token is not valid yet (nbf)";
	case KIT_JWT_MISSING_CLAIM: return "the token lacks a required claim (exp, sub)";
	case KIT_JWT_BAD_ISSUER: return "the token's issuer is not accepted";
	case KIT_JWT_BAD_AUDIENCE: return "the token is not meant for this audience";
	case KIT_JWT_BAD_CLAIM: return "the token's sub is not a valid username or its tier is unknown";
	}
	return "invalid token";
}

/* Decodes one base64url part (no padding) into a malloc'd NUL-terminated
 * buffer. NULL when the part is not base64url. */
static char *base64url_decode(const char *part, size_t len)
{
	size_t padded = (len + 3) / 4 * 4;
	unsigned char *standard, *out;
	int n;

	if (len % 4 == 1)
		return NULL;
	standard = malloc(padded + 1);
	out = malloc(padded / 4 * 3 + 1);
	if (standard == NULL || out == NULL) {
		free(standard);
		free(out);
		return NULL;
	}
	for (size_t i = 0; i < len; i++)
		standard[i] = part[i] == '-' ? '+' : part[i] == '_' ? '/' : part[i];
	for (size_t i = len; i < padded; i++)
		standard[i] = '=';
	n = EVP_DecodeBlock(out, standard, (int)padded);
	free(standard);
	if (n < 0) {
		free(out);
		return NULL;
	}
	n -= (int)(padded - len); /* EVP_DecodeBlock counts the padding */
	out[n] = '\0';
	if (memchr(out, '\0', (size_t)n) != NULL) { /* JSON has no NUL */
		free(out);
		return NULL;
	}
	return (char *)out;
}

/* Parses a base64url part as one JSON object. */
static cJSON *decode_json_part(const char *part, size_t len)
{
	char *text = base64url_decode(part, len);
	cJSON *json;

	if (text == NULL)
		return NULL;
	/* cJSON turns the escape \u0000 (and \u00zz) into a NUL inside a C
	 * string, so a sub "alice\u0000x" would read as "alice": refuse it. */
	if (!kit_json_escapes_are_sound(text, strlen(text))) {
		free(text);
		return NULL;
	}
	json = cJSON_Parse(text);
	free(text);
	if (json != NULL && !cJSON_IsObject(json)) {
		cJSON_Delete(json);
		return NULL;
	}
	return json;
}

static bool audience_matches(const cJSON *aud, const char *expected)
{
	const cJSON *item;

	if (cJSON_IsString(aud))
		return strcmp(aud->valuestring, expected) == 0;
	if (!cJSON_IsArray(aud))
		return false;
	cJSON_ArrayForEach(item, aud) {
		if (cJSON_IsString(item) && strcmp(item->valuestring, expected) == 0)
			return true;
	}
	return false;
}

static enum kit_jwt_error check_claims(const struct kit_jwt_config *cfg,
				       const cJSON *claims, time_t now,
				       struct kit_identity *identity)
{
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(claims, "exp");
	const cJSON *nbf = cJSON_GetObjectItemCaseSensitive(claims, "nbf");
	const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
	const cJSON *tier = cJSON_GetObjectItemCaseSensitive(claims, "tier");
	const cJSON *iss = cJSON_GetObjectItemCaseSensitive(claims, "iss");

	if (!cJSON_IsNumber(exp))
		return KIT_JWT_MISSING_CLAIM;
	if ((double)now > exp->valuedouble + (double)cfg->leeway_seconds)
		return KIT_JWT_EXPIRED;
	if (nbf != NULL) {
		if (!cJSON_IsNumber(nbf))
			return KIT_JWT_MALFORMED;
		if ((double)now + (double)cfg->leeway_seconds < nbf->valuedouble)
			return KIT_JWT_NOT_YET_VALID;
	}
	if (cfg->issuer[0] != '\0' &&
	    !(cJSON_IsString(iss) && strcmp(iss->valuestring, cfg->issuer) == 0))
		return KIT_JWT_BAD_ISSUER;
	if (cfg->audience[0] != '\0' &&
	    !audience_matches(cJSON_GetObjectItemCaseSensitive(claims, "aud"), cfg->audience))
		return KIT_JWT_BAD_AUDIENCE;
	if (!cJSON_IsString(sub) || sub->valuestring[0] == '\0')
		return KIT_JWT_MISSING_CLAIM;
	if (!kit_username_is_valid(sub->valuestring, strlen(sub->valuestring)))
		return KIT_JWT_BAD_CLAIM;
	if (tier != NULL && !(cJSON_IsString(tier) && kit_tier_is_known(tier->valuestring)))
		return KIT_JWT_BAD_CLAIM;

	identity->authenticated = true;
	identity->expires_at = exp->valuedouble;
	identity->not_before = nbf != NULL ? nbf->valuedouble : 0;
	snprintf(identity->subject, sizeof(identity->subject), "%s", sub->valuestring);
	snprintf(identity->tier, sizeof(identity->tier), "%s",
		 tier != NULL ? tier->valuestring : "free");
	return KIT_JWT_OK;
}

bool kit_username_is_valid(const char *name, size_t len)
{
	if (len < KIT_USERNAME_MIN || len > KIT_USERNAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			continue;
		if (i > 0 && (c == '_' || c == '.' || c == '-'))
			continue;
		return false;
	}
	return true;
}

bool kit_tier_is_known(const char *tier)
{
	return strcmp(tier, "free") == 0 || strcmp(tier, "premium") == 0;
}

bool kit_jwt_still_valid(const struct kit_jwt_config *cfg,
			 const struct kit_identity *identity, time_t now)
{
	/* The same comparisons as check_claims(). */
	return (double)now <= identity->expires_at + (double)cfg->leeway_seconds &&
	       (double)now + (double)cfg->leeway_seconds >= identity->not_before;
}

enum kit_jwt_error kit_jwt_verify(const struct kit_jwt_config *cfg,
				  const char *token, time_t now,
				  struct kit_identity *identity)
{
	static const char base64url[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	enum kit_jwt_error result = KIT_JWT_MALFORMED;
	size_t len = strlen(token);
	const char *dot1, *dot2;
	cJSON *header = NULL, *claims = NULL;
	const cJSON *alg;
	jwt_t *jwt = NULL;

	memset(identity, 0, sizeof(*identity));

	/* 1. Shape. */
	if (len == 0 || len > KIT_JWT_MAX_LENGTH)
		goto out;
	dot1 = strchr(token, '.');
	dot2 = dot1 != NULL ? strchr(dot1 + 1, '.') : NULL;
	if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL ||
	    dot1 == token || dot2 == dot1 + 1)
		goto out;
	if (strspn(token, base64url) != (size_t)(dot1 - token) ||
	    strspn(dot1 + 1, base64url) != (size_t)(dot2 - dot1 - 1) ||
	    strspn(dot2 + 1, base64url) != strlen(dot2 + 1))
		goto out;
	header = decode_json_part(token, (size_t)(dot1 - token));
	claims = decode_json_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	if (header == NULL || claims == NULL)
		goto out;

	/* 2. The pinned algorithm, before libjwt sees the token. */
	alg = cJSON_GetObjectItemCaseSensitive(header, "alg");
	if (!cJSON_IsString(alg) ||
	    strcmp(alg->valuestring, algorithm_name(cfg->algorithm)) != 0) {
		result = KIT_JWT_BAD_ALGORITHM;
		goto out;
	}

	/* 3. The signature. */
	if (dot2[1] == '\0' ||
	    jwt_decode(&jwt, token, cfg->secret, (int)cfg->secret_len) != 0 ||
	    (int)jwt_get_alg(jwt) != cfg->algorithm) {
		result = KIT_JWT_BAD_SIGNATURE;
		goto out;
	}

	/* 4. The claims. */
	result = check_claims(cfg, claims, now, identity);
out:
	if (result != KIT_JWT_OK)
		memset(identity, 0, sizeof(*identity));
	jwt_free(jwt);
	cJSON_Delete(header);
	cJSON_Delete(claims);
	return result;
}

char *kit_jwt_issue(const struct kit_jwt_config *cfg, const char *subject,
		    const char *tier, time_t now)
{
	jwt_t *jwt = NULL;
	char *token = NULL;

	/* Never sign what kit_jwt_verify() would refuse. */
	if (!kit_username_is_valid(subject, strlen(subject)) || !kit_tier_is_known(tier))
		return NULL;
	if (jwt_new(&jwt) != 0)
		return NULL;
	if (jwt_add_grant(jwt, "sub", subject) != 0 ||
	    jwt_add_grant(jwt, "tier", tier) != 0 ||
	    jwt_add_grant_int(jwt, "iat", (long)now) != 0 ||
	    jwt_add_grant_int(jwt, "exp", (long)(now + cfg->ttl_seconds)) != 0 ||
	    (cfg->issuer[0] != '\0' && jwt_add_grant(jwt, "iss", cfg->issuer) != 0) ||
	    (cfg->audience[0] != '\0' && jwt_add_grant(jwt, "aud", cfg->audience) != 0) ||
	    jwt_set_alg(jwt, (jwt_alg_t)cfg->algorithm, cfg->secret, (int)cfg->secret_len) != 0)
		goto out;
	token = jwt_encode_str(jwt);
out:
	jwt_free(jwt);
	return token;
}
