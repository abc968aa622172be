/*
 * cors.c - middleware: Cross-Origin Resource Sharing.
 *
 * Position: before auth, because a browser's preflight (OPTIONS with
 * Access-Control-Request-Method) carries no token and must be answered
 * here, for any path, without reaching auth or a handler.
 * Reads:    Origin, Access-Control-Request-Method.
 * Writes:   Access-Control-* and Vary response headers.
 * Config:   CORS_ALLOWED_ORIGINS ("*" or a comma-separated list of exact
 *           origins; default "*"), CORS_ALLOW_CREDENTIALS (default false),
 *           CORS_MAX_AGE_SECONDS (600). "*" together with credentials is
 *           refused at start-up: it would let any site act as the user.
 *
 * A request from an origin not on the list is still served (CORS is the
 * browser's protection, not ours) but gets no Access-Control-Allow-Origin,
 * so the browser withholds the response; a preflight from it gets 403.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kit/config.h"
#include "kit/middleware.h"
#include "kit/request.h"
#include "kit/response.h"

#define CORS_MAX_ORIGINS 16

struct cors_config {
	bool allow_any_origin;                /* CORS_ALLOWED_ORIGINS=*  */
	char origins[CORS_MAX_ORIGINS][128];  /* the exact origins       */
	int origin_count;
	bool allow_credentials;               /* CORS_ALLOW_CREDENTIALS  */
	long max_age_seconds;                 /* CORS_MAX_AGE_SECONDS    */
};

static int parse_origins(struct cors_config *config, const char *list)
{
	const char *p = list;

	if (strcmp(list, "*") == 0) {
		config->allow_any_origin = true;
		return 0;
	}
	while (*p != '\0') {
		size_t len = strcspn(p, ",");

		while (len > 0 && *p == ' ') {
			p++;
			len--;
		}
		while (len > 0 && p[len - 1] == ' ')
			len--;
		if (len > 0) {
			if (config->origin_count == CORS_MAX_ORIGINS ||
			    len >= sizeof(config->origins[0])) {
				fprintf(stderr, "CORS_ALLOWED_ORIGINS: at most %d origins of under 128 characters\n",
					CORS_MAX_ORIGINS);
				return -1;
			}
			if (memchr(p, '*', len) != NULL) {
				fprintf(stderr, "CORS_ALLOWED_ORIGINS: \"*\" must stand alone, not inside a list\n");
				return -1;
			}
			memcpy(config->origins[config->origin_count], p, len);
			config->origins[config->origin_count][len] = '\0';
			config->origin_count++;
		}
		p += len;
		while (*p == ',' || *p == ' ')
			p++;
	}
	return 0;
}

static int cors_init(struct kit_app *app, void **state)
{
	struct cors_config *config = calloc(1, sizeof(*config));

	if (config == NULL)
		return -1;
	*state = config;
	if (parse_origins(config, kit_env_string("CORS_ALLOWED_ORIGINS", "*")) != 0 ||
	    kit_env_bool("CORS_ALLOW_CREDENTIALS", false, &config->allow_credentials) != 0 ||
	    kit_env_long("CORS_MAX_AGE_SECONDS", 600, 0, 86400, &config->max_age_seconds) != 0)
		return -1;
	if (config->allow_any_origin && config->allow_credentials) {
		fprintf(stderr, "CORS_ALLOW_CREDENTIALS: true is refused with CORS_ALLOWED_ORIGINS=*; list the origins\n");
		return -1;
	}
	return 0;
}

static bool origin_allowed(const struct cors_config *config, const char *origin)
{
	if (config->allow_any_origin)
		return true;
	for (int i = 0; i < config->origin_count; i++) {
		if (strcmp(config->origins[i], origin) == 0)
			return true;
	}
	return false;
}

static int cors_handle(struct kit_request *req, void *state)
{
	const struct cors_config *config = state;
	const char *origin = kit_request_header(req, "Origin");
	bool preflight = strcmp(req->method, "OPTIONS") == 0 &&
			 kit_request_header(req, "Access-Control-Request-Method") != NULL;

	if (!config->allow_any_origin)
		kit_response_header(req, "Vary", "Origin");
	if (origin == NULL)
		return KIT_NEXT;
	if (!origin_allowed(config, origin)) {
		if (preflight)
			return kit_problem(req, 403, "origin %s is not allowed", origin);
		return KIT_NEXT;
	}

	kit_response_header(req, "Access-Control-Allow-Origin",
			    config->allow_any_origin ? "*" : origin);
	if (config->allow_credentials)
		kit_response_header(req, "Access-Control-Allow-Credentials", "true");
	if (!preflight) {
		kit_response_header(req, "Access-Control-Expose-Headers",
				    "X-Request-Id, X-RateLimit-Limit, X-RateLimit-Remaining, "
				    "X-RateLimit-Reset, RateLimit, RateLimit-Policy, Retry-After");
		return KIT_NEXT;
	}
	kit_response_header(req, "Access-Control-Allow-Methods",
			    "GET, POST, PUT, PATCH, DELETE, OPTIONS");
	kit_response_header(req, "Access-Control-Allow-Headers",
			    "Authorization, Content-Type, X-Request-Id");
	kit_response_headerf(req, "Access-Control-Max-Age", "%ld",
			     config->max_age_seconds);
	return kit_respond_empty(req, 204);
}

const struct kit_middleware kit_cors = {
	.name = "cors",
	.loop_safe = true,
	.init = cors_init,
	.handle = cors_handle,
	.destroy = free,
};
