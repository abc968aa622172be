/*
 * kit/jwt.h - issuing and verifying JSON Web Tokens with libjwt 1.10.
 *
 * libjwt 1.10 validates no claim of its own, accepts "alg":"none" when no
 * key is given, and HMACs with whatever key it is handed; so this module
 * pins the algorithm by configuration and checks it in the token header
 * itself before libjwt sees the token, then checks exp (required), nbf, iss
 * and aud with a small leeway.
 *
 * The configuration is read once at start-up and read-only after, so one
 * struct kit_jwt_config is shared by every thread.
 */
#ifndef KIT_JWT_H
#define KIT_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "kit/request.h"

struct kit_jwt_config {
	int algorithm;              /* jwt_alg_t: JWT_ALG (HS256|HS384|HS512) */
	unsigned char secret[512];  /* JWT_SECRET                             */
	size_t secret_len;
	char issuer[128];           /* JWT_ISSUER; "" = not checked/not set   */
	char audience[128];         /* JWT_AUDIENCE; "" = not checked/not set */
	long leeway_seconds;        /* JWT_LEEWAY_SECONDS, default 30         */
	long ttl_seconds;           /* JWT_TTL_SECONDS, default 3600 (issue)  */
};

/* Reads JWT_SECRET (required, at least 32 bytes unless
 * ALLOW_INSECURE_DEV_SECRET=1), JWT_ALG, JWT_ISSUER, JWT_AUDIENCE,
 * JWT_LEEWAY_SECONDS, JWT_TTL_SECONDS. Returns 0, or -1 after printing the
 * variable and what is wrong with it. */
int kit_jwt_config_from_env(struct kit_jwt_config *cfg);

/* Why a token was refused; kit_jwt_error_text() says it in words. */
enum kit_jwt_error {
	KIT_JWT_OK = 0,
	KIT_JWT_MALFORMED,     /* not three base64url parts, bad JSON, too long */
	KIT_JWT_BAD_ALGORITHM, /* header alg is not the pinned one (e.g. none)  */
	KIT_JWT_BAD_SIGNATURE,
	KIT_JWT_EXPIRED,
	KIT_JWT_NOT_YET_VALID, /* nbf in the future                             */
	KIT_JWT_MISSING_CLAIM, /* no exp, or no sub                             */
	KIT_JWT_BAD_ISSUER,
	KIT_JWT_BAD_AUDIENCE,
	KIT_JWT_BAD_CLAIM,     /* sub not a valid username, tier not a known one */
};
const char *kit_jwt_error_text(enum kit_jwt_error error);

/* Verifies token at time now and fills *identity (sub and tier; exp and
 * nbf, so a cache can re-check them later with kit_jwt_still_valid). sub
 * must be a valid username (kit_username_is_valid) and tier, when present,
 * a known one (kit_tier_is_known); a missing tier reads as "free". Either
 * broken is KIT_JWT_BAD_CLAIM, even with a good signature: whoever holds
 * the key must still not be able to put "alice\r\nX-Injected: 1" into the
 * X-User-Id a gateway sends on. */
enum kit_jwt_error kit_jwt_verify(const struct kit_jwt_config *cfg,
				  const char *token, time_t now,
				  struct kit_identity *identity);

/* Whether an identity kit_jwt_verify accepted is still within its exp and
 * nbf (with the leeway) at now: all that can change for a verified token. */
bool kit_jwt_still_valid(const struct kit_jwt_config *cfg,
			 const struct kit_identity *identity, time_t now);

/* Signs a token for subject with claims sub, tier, iat, exp (now + ttl) and
 * iss/aud when configured. Returns a malloc'd string, or NULL when out of
 * memory or when subject is not a valid username or tier not a known one. */
char *kit_jwt_issue(const struct kit_jwt_config *cfg, const char *subject,
		    const char *tier, time_t now);

/*
 * Who a caller can be: the one rule for a username, used by the users
 * service when an account is registered, by kit_jwt_verify() for a token's
 * sub and by kit_identity_headers for the X-User-Id a gateway passes on.
 *
 *   ^[a-z0-9][a-z0-9_.-]{2,31}$   (3-32 bytes; docs/api.md)
 *
 * Nothing in it can break a header line, a log line or a store key.
 */
#define KIT_USERNAME_MIN 3
#define KIT_USERNAME_MAX 32

/* Whether the len bytes at name are a username by the rule above. */
bool kit_username_is_valid(const char *name, size_t len);

/* Whether tier is one the kit knows: "free" or "premium". */
bool kit_tier_is_known(const char *tier);

#endif
