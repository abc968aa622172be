/*
 * fuzz_jwt.c - libFuzzer target: the Authorization header through token
 * verification. Input: an Authorization header value, normally
 * "Bearer <token>".
 *
 * Three ways in, all the kit's own code:
 *   1. kit_jwt_verify() (shared/src/middleware/jwt.c) on the token (the
 *      input without its "Bearer " prefix) with a fixed HS256 key, at a
 *      fixed time (FUZZ_NOW), under two configurations: no issuer or
 *      audience, and issuer "kit" with audience "kit-api";
 *   2. the same, re-signed: the token's last part replaced by the key's
 *      signature of the rest, so mutated claims reach the claim checks;
 *      and an input starting with '{' taken as the claims themselves,
 *      signed here under the header the kit issues;
 *   3. the auth_jwt middleware (auth_jwt.c), per-thread cache included,
 *      in a kit_app whose one route, GET /me (authenticated), answers with
 *      the verified subject: the request goes through fuzz_serve()
 *      (fake_request.c) with the input as its Authorization header, when
 *      the input is a header value the head parser keeps as it is.
 * The seeds (tests/fuzz/corpus/jwt/) are valid tokens signed with
 * FUZZ_JWT_SECRET, so the fuzzer starts past the shape and algorithm checks
 * and mutates its way through the signature and claim checks.
 *
 * Properties, beyond "no crash, no sanitizer report":
 *   - a token that verifies has header alg "HS256" and a signature equal to
 *     HMAC-SHA256(key, header "." payload), computed here with OpenSSL;
 *     its exp (and nbf, if any) hold at FUZZ_NOW with the leeway; with the
 *     second configuration, its iss is "kit" and its aud is or holds
 *     "kit-api";
 *   - its identity: authenticated, a subject of 1..KIT_SUBJECT_MAX bytes
 *     equal to the payload's "sub", tier "premium" or "free" as the
 *     payload says; a refused token leaves the identity all zero;
 *   - verifying is deterministic, and the middleware agrees with
 *     kit_jwt_verify() at the time it ran: 200 with that subject, or 401,
 *     also when the answer came from its cache.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fake_request.h"
#include "fuzz.h"
#include "kit/app.h"
#include "kit/jwt.h"
#include "kit/middleware.h"
#include "kit/request.h"
#include "kit/response.h"

#define FUZZ_NOW ((time_t)1800000000) /* 2027-01-15T08:00:00Z */

static struct kit_jwt_config plain;   /* no iss, no aud */
static struct kit_jwt_config strict;  /* iss "kit", aud "kit-api" */
static struct kit_app *app;

static int me_handler(struct kit_request *req)
{
	return kit_respond(req, 200, "text/plain", req->user.subject,
			   strlen(req->user.subject));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_service_environment();
	memset(&plain, 0, sizeof(plain));
	plain.algorithm = JWT_ALG_HS256;
	plain.secret_len = strlen(FUZZ_JWT_SECRET);
	memcpy(plain.secret, FUZZ_JWT_SECRET, plain.secret_len);
	plain.leeway_seconds = 30;
	plain.ttl_seconds = 3600;
	strict = plain;
	strcpy(strict.issuer, "kit");
	strcpy(strict.audience, "kit-api");

	unsetenv("JWT_ISSUER");
	unsetenv("JWT_AUDIENCE");
	setenv("JWT_ALG", "HS256", 1);
	setenv("JWT_LEEWAY_SECONDS", "30", 1);
	app = kit_app_new("fuzz-jwt", 0);
	kit_use(app, &kit_auth_jwt);
	kit_route(app, "GET", "/me", me_handler, KIT_AUTHENTICATED);
	return 0;
}

/* Decodes base64url part[0..len) into a malloc'd NUL-terminated string. */
static char *decode_part(const char *part, size_t len)
{
	size_t padded = (len + 3) / 4 * 4;
	unsigned char *standard = malloc(padded + 1), *out = malloc(padded + 1);
	int n;

	if (standard == NULL || out == NULL)
		abort();
	for (size_t i = 0; i < padded; i++)
		standard[i] = i >= len ? '=' : part[i] == '-' ? '+' : part[i] == '_' ? '/' : part[i];
	n = EVP_DecodeBlock(out, standard, (int)padded);
	free(standard);
	FUZZ_CHECK(n >= 0, "an accepted token has a part that is not base64url");
	n -= (int)(padded - len);
	out[n] = '\0';
	return (char *)out;
}

static bool audience_holds(const cJSON *aud, const char *want)
{
	const cJSON *item;

	if (cJSON_IsString(aud))
		return strcmp(aud->valuestring, want) == 0;
	cJSON_ArrayForEach(item, aud) {
		if (cJSON_IsString(item) && strcmp(item->valuestring, want) == 0)
			return true;
	}
	return false;
}

/* in[0..len) in base64url without padding, into out (4 * len / 3 + 4). */
static void base64url(const unsigned char *in, size_t len, char *out)
{
	int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);

	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (int i = 0; i < n; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
}

/* The HS256 signature of input[0..len) with cfg's key, base64url, into
 * out (at least 44 bytes). */
static void sign(const struct kit_jwt_config *cfg, const char *input, size_t len, char *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;

	HMAC(EVP_sha256(), cfg->secret, (int)cfg->secret_len, (const unsigned char *)input, len,
	     mac, &mac_len);
	base64url(mac, mac_len, out);
}

/* What must be true of a token cfg accepted at now. */
static void check_accepted(const struct kit_jwt_config *cfg, const char *token,
			   time_t now, const struct kit_identity *who)
{
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 != NULL ? strchr(dot1 + 1, '.') : NULL;
	char expect[128];

	FUZZ_CHECK(dot2 != NULL && strchr(dot2 + 1, '.') == NULL,
		   "accepted a token without three parts: %s", token);

	/* The signature is the key's, over exactly the first two parts. */
	sign(cfg, token, (size_t)(dot2 - token), expect);
	FUZZ_CHECK(strcmp(dot2 + 1, expect) == 0,
		   "accepted signature %s; HMAC-SHA256 of the token is %s", dot2 + 1, expect);

	char *header_text = decode_part(token, (size_t)(dot1 - token));
	char *payload_text = decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	cJSON *header = cJSON_Parse(header_text);
	cJSON *payload = cJSON_Parse(payload_text);
	FUZZ_CHECK(header != NULL && payload != NULL, "accepted parts that are not JSON");
	const cJSON *alg = cJSON_GetObjectItemCaseSensitive(header, "alg");
	FUZZ_CHECK(cJSON_IsString(alg) && strcmp(alg->valuestring, "HS256") == 0,
		   "accepted header %s", header_text);

	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(payload, "exp");
	const cJSON *nbf = cJSON_GetObjectItemCaseSensitive(payload, "nbf");
	const cJSON *sub = cJSON_GetObjectItemCaseSensitive(payload, "sub");
	const cJSON *tier = cJSON_GetObjectItemCaseSensitive(payload, "tier");
	FUZZ_CHECK(cJSON_IsNumber(exp) &&
		   (double)now <= exp->valuedouble + (double)cfg->leeway_seconds,
		   "accepted at %lld: %s", (long long)now, payload_text);
	FUZZ_CHECK(nbf == NULL || (cJSON_IsNumber(nbf) &&
				   nbf->valuedouble <= (double)now + (double)cfg->leeway_seconds),
		   "accepted before nbf: %s", payload_text);
	if (cfg->issuer[0] != '\0') {
		const cJSON *iss = cJSON_GetObjectItemCaseSensitive(payload, "iss");
		FUZZ_CHECK(cJSON_IsString(iss) && strcmp(iss->valuestring, cfg->issuer) == 0,
			   "accepted issuer: %s", payload_text);
		FUZZ_CHECK(audience_holds(cJSON_GetObjectItemCaseSensitive(payload, "aud"),
					  cfg->audience),
			   "accepted audience: %s", payload_text);
	}

	FUZZ_CHECK(who->authenticated, "accepted but not authenticated");
	size_t sub_len = strnlen(who->subject, sizeof(who->subject));
	FUZZ_CHECK(sub_len >= 1 && sub_len <= KIT_SUBJECT_MAX, "subject of %zu bytes", sub_len);
	FUZZ_CHECK(cJSON_IsString(sub) && strcmp(sub->valuestring, who->subject) == 0,
		   "subject \"%s\" is not the payload's: %s", who->subject, payload_text);
	bool premium = cJSON_IsString(tier) && strcmp(tier->valuestring, "premium") == 0;
	FUZZ_CHECK(strcmp(who->tier, premium ? "premium" : "free") == 0, "tier \"%s\" for %s",
		   who->tier, payload_text);
	FUZZ_CHECK(who->expires_at == exp->valuedouble, "expires_at is not exp");
	cJSON_Delete(header);
	cJSON_Delete(payload);
	free(header_text);
	free(payload_text);
}

static enum kit_jwt_error verify(const struct kit_jwt_config *cfg, const char *token,
				 time_t now, struct kit_identity *who)
{
	static const struct kit_identity zero;
	enum kit_jwt_error error = kit_jwt_verify(cfg, token, now, who);
	struct kit_identity again;

	FUZZ_CHECK(kit_jwt_verify(cfg, token, now, &again) == error &&
		   memcmp(&again, who, sizeof(again)) == 0, "verifying twice differs");
	if (error == KIT_JWT_OK)
		check_accepted(cfg, token, now, who);
	else
		FUZZ_CHECK(memcmp(who, &zero, sizeof(zero)) == 0,
			   "refused (%d) but the identity is not cleared", error);
	return error;
}

/* The token the middleware verifies: after "Bearer " and any spaces. */
static const char *bearer_token(const char *value)
{
	if (strncasecmp(value, "Bearer ", 7) != 0)
		return NULL;
	value += 7;
	while (*value == ' ')
		value++;
	return value;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *value = fuzz_string(data, size);
	size_t len = strlen(value);
	const char *token = bearer_token(value);
	struct kit_identity who;

	/* 1. kit_jwt_verify, at a fixed time, under both configurations. */
	verify(&plain, token != NULL ? token : value, FUZZ_NOW, &who);
	verify(&strict, token != NULL ? token : value, FUZZ_NOW, &who);

	/* 2. Re-signed: a mutated header or payload breaks the signature, and
	 * would never reach the claim checks; here the token's last part is
	 * replaced by the key's signature of what precedes it. And claims as
	 * JSON: an input starting with '{' is a payload, signed under the
	 * header the kit issues, so the fuzzer mutates claims, not base64. */
	const char *t = token != NULL ? token : value;
	const char *last = strrchr(t, '.');
	char *resigned = malloc(len * 2 + 128);
	if (resigned == NULL)
		abort();
	if (last != NULL && last != t) {
		memcpy(resigned, t, (size_t)(last - t) + 1);
		sign(&plain, t, (size_t)(last - t), resigned + (last - t) + 1);
		verify(&plain, resigned, FUZZ_NOW, &who);
		verify(&strict, resigned, FUZZ_NOW, &who);
	}
	if (value[0] == '{' && len < 6000) {
		static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
		base64url((const unsigned char *)header, sizeof(header) - 1, resigned);
		size_t n = strlen(resigned);
		resigned[n++] = '.';
		base64url((const unsigned char *)value, len, resigned + n);
		n += strlen(resigned + n);
		resigned[n] = '.';
		sign(&plain, resigned, n, resigned + n + 1);
		verify(&plain, resigned, FUZZ_NOW, &who);
		verify(&strict, resigned, FUZZ_NOW, &who);
	}
	free(resigned);

	/* 3. The middleware, now. Verified before and after: when both say
	 * the same, the middleware, in between, must say it too. */
	if (len == size && fuzz_header_keeps(value, len) && len < 16000) {
		static const char start[] = "GET /me HTTP/1.1\r\nHost: kit\r\nAuthorization: ";
		char *head = malloc(sizeof(start) + len + 4);
		struct kit_identity before, after;
		struct fuzz_response response;
		enum kit_jwt_error e1 = KIT_JWT_MALFORMED, e2 = KIT_JWT_MALFORMED;

		if (head == NULL)
			abort();
		memcpy(head, start, sizeof(start) - 1);
		memcpy(head + sizeof(start) - 1, value, len);
		memcpy(head + sizeof(start) - 1 + len, "\r\n\r\n", 4);
		if (token != NULL)
			e1 = verify(&plain, token, time(NULL), &before);
		int status = fuzz_serve(app, head, sizeof(start) - 1 + len + 4, NULL, 0, &response);
		if (token != NULL)
			e2 = verify(&plain, token, time(NULL), &after);
		if (status >= 0 && e1 == e2) {
			if (e1 == KIT_JWT_OK)
				FUZZ_CHECK(status == 200 && response.body_len == strlen(before.subject) &&
					   memcmp(response.body, before.subject, response.body_len) == 0,
					   "the middleware answered %d to a valid token", status);
			else
				FUZZ_CHECK(status == 401, "the middleware answered %d to a token "
					   "kit_jwt_verify refuses (%d)", status, e1);
		}
		fuzz_response_free(&response);
		free(head);
	}
	free(value);
	return 0;
}
