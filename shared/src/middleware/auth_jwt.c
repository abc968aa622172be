/*
 * auth_jwt.c - middleware: authentication by a Bearer JWT.
 *
 * Position: after CORS (a preflight carries no token) and before rate
 * limiting (which keys authenticated callers by user).
 * Reads:    the route's access (only KIT_AUTHENTICATED routes are checked;
 *           public and operations routes pass untouched) and the
 *           Authorization header.
 * Writes:   req->user (subject and tier) on success; on failure answers 401
 *           with WWW-Authenticate (RFC 6750) and a problem saying why.
 * Config:   JWT_* (see jwt.c and docs/configuration.md), read once.
 *
 * A miss (404/405) is not checked: an unknown path answers 404 whether or
 * not a token came with it, as Kong and Envoy do.
 *
 * Verified tokens are remembered, per worker thread, in a small cache
 * (AUTH_CACHE_SLOTS entries, keyed by the whole token), as Envoy's
 * jwt_authn does: a client sends the same token for an hour, and parsing
 * and HMAC-checking it again on every request was an eighth of the
 * gateway's CPU (docs/performance.md). Only tokens that passed
 * kit_jwt_verify() go in; a hit must be the very same bytes, so a forged
 * token cannot match; and exp/nbf are checked again on every hit, since
 * time is all that changes for a verified token. JWT_CACHE=off disables it.
 *
 * Threads: the configuration is read-only; each worker owns its cache (a
 * per-thread resource), so no lock is taken.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kit/config.h"
#include "kit/jwt.h"
#include "kit/middleware.h"
#include "kit/noncrypto.h"
#include "kit/request.h"
#include "kit/response.h"

#define AUTH_CACHE_SLOTS 64 /* per worker thread; a slot is reused on collision */

struct auth_cache_slot {
	uint64_t hash;
	char *token;                 /* malloc'd copy; NULL when empty */
	struct kit_identity identity;
};

struct auth_cache {
	struct auth_cache_slot slots[AUTH_CACHE_SLOTS];
};

struct auth_jwt_state {
	struct kit_jwt_config config;
	bool cache_enabled;          /* JWT_CACHE (default on)  */
	int cache_slot;              /* the per-thread resource */
};

static void *auth_cache_create(void *arg)
{
	return calloc(1, sizeof(struct auth_cache));
}

static void auth_cache_destroy(void *resource)
{
	struct auth_cache *cache = resource;

	for (int i = 0; i < AUTH_CACHE_SLOTS; i++)
		free(cache->slots[i].token);
	free(cache);
}

static int auth_jwt_init(struct kit_app *app, void **state)
{
	struct auth_jwt_state *self = calloc(1, sizeof(*self));

	if (self == NULL)
		return -1;
	*state = self;
	if (kit_jwt_config_from_env(&self->config) != 0 ||
	    kit_env_bool("JWT_CACHE", true, &self->cache_enabled) != 0)
		return -1;
	self->cache_slot = kit_app_thread_resource(app, auth_cache_create,
						   auth_cache_destroy, NULL);
	return self->cache_slot >= 0 ? 0 : -1;
}

/* Verifies token, or finds it in this thread's cache of verified ones. */
static enum kit_jwt_error verify_cached(struct auth_jwt_state *self,
					struct kit_request *req, const char *token)
{
	struct auth_cache *cache = NULL;
	struct auth_cache_slot *slot = NULL;
	uint64_t hash = 0;
	time_t now = time(NULL);
	enum kit_jwt_error error;

	if (self->cache_enabled)
		cache = kit_thread_resource(req, self->cache_slot);
	if (cache != NULL) {
		hash = kit_hash_string(token);
		slot = &cache->slots[hash % AUTH_CACHE_SLOTS];
		if (slot->token != NULL && slot->hash == hash &&
		    strcmp(slot->token, token) == 0) {
			if (!kit_jwt_still_valid(&self->config, &slot->identity, now))
				return kit_jwt_verify(&self->config, token, now, &req->user);
			req->user = slot->identity;
			return KIT_JWT_OK;
		}
	}

	error = kit_jwt_verify(&self->config, token, now, &req->user);
	if (error == KIT_JWT_OK && slot != NULL) {
		char *copy = strdup(token);
		if (copy != NULL) {
			free(slot->token);
			slot->token = copy;
			slot->hash = hash;
			slot->identity = req->user;
		}
	}
	return error;
}

static void auth_jwt_destroy(void *state)
{
	free(state);
}

static int refuse(struct kit_request *req, const char *error, const char *detail)
{
	if (error != NULL)
		kit_response_headerf(req, "WWW-Authenticate",
				     "Bearer realm=\"api\", error=\"%s\"", error);
	else
		kit_response_header(req, "WWW-Authenticate", "Bearer realm=\"api\"");
	return kit_problem(req, 401, "%s", detail);
}

static int auth_jwt_handle(struct kit_request *req, void *state)
{
	struct auth_jwt_state *self = state;
	const char *authorization;
	enum kit_jwt_error error;

	if (req->route_pattern == NULL || req->access != KIT_AUTHENTICATED)
		return KIT_NEXT;

	authorization = kit_request_header(req, "Authorization");
	if (authorization == NULL)
		return refuse(req, NULL, "this route needs a Bearer token in the Authorization header");
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
		return refuse(req, "invalid_request", "the Authorization header must be \"Bearer <token>\"");

	const char *token = authorization + 7;
	while (*token == ' ')
		token++;
	error = verify_cached(self, req, token);
	if (error != KIT_JWT_OK)
		return refuse(req, "invalid_token", kit_jwt_error_text(error));
	return KIT_NEXT;
}

const struct kit_middleware kit_auth_jwt = {
	.name = "auth_jwt",
	.loop_safe = true,
	.init = auth_jwt_init,
	.handle = auth_jwt_handle,
	.destroy = auth_jwt_destroy,
};
