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
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kit/jwt.h"
#include "kit/middleware.h"
#include "kit/request.h"
#include "kit/response.h"

static int auth_jwt_init(struct kit_app *app, void **state)
{
	struct kit_jwt_config *config = calloc(1, sizeof(*config));

	if (config == NULL)
		return -1;
	*state = config;
	return kit_jwt_config_from_env(config);
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
	const struct kit_jwt_config *config = state;
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
	error = kit_jwt_verify(config, token, time(NULL), &req->user);
	if (error != KIT_JWT_OK)
		return refuse(req, "invalid_token", kit_jwt_error_text(error));
	return KIT_NEXT;
}

const struct kit_middleware kit_auth_jwt = {
	.name = "auth_jwt",
	.init = auth_jwt_init,
	.handle = auth_jwt_handle,
	.destroy = free,
};
