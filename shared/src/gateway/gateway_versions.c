/*
 * gateway_versions.c - the gateway's "/api/..." catch-all, for route files
 * that list "versions" (phase3-advanced/gateway.json).
 *
 * kit_gateway_mount() adds it after every route, so a request reaches it
 * only when no route matched. It tells the three cases apart: a known
 * version without that route (404 "no route"), a version this gateway does
 * not serve (/api/v3/...: 404 "unknown API version", with the supported
 * versions listed), and an unversioned path (/api/shorten), which an
 * API-Version header may send to the public route of that version.
 *
 * Threads: reads the configuration only (read-only after start-up).
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "gateway/gateway_internal.h"
#include "kit/gateway.h"
#include "kit/request.h"
#include "kit/response.h"
#include "kit/router.h"

static bool is_listed_version(const struct kit_gateway_config *config,
			      const char *name, size_t len)
{
	for (int i = 0; i < config->version_count; i++) {
		if (strlen(config->versions[i]) == len &&
		    strncmp(config->versions[i], name, len) == 0)
			return true;
	}
	return false;
}

/* True when name[0..len) looks like a version: "v" and 1-9 digits. */
static bool looks_like_version(const char *name, size_t len)
{
	return len >= 2 && len <= 10 && name[0] == 'v' &&
	       strspn(name + 1, "0123456789") >= len - 1;
}

/* A 404 with "supported_versions": ["v1", "v2"]. */
static int version_problem(struct kit_request *req, const struct kit_gateway_config *config,
			   const char *detail)
{
	cJSON *extra = cJSON_CreateObject();
	cJSON *list = extra != NULL ? cJSON_AddArrayToObject(extra, "supported_versions") : NULL;

	for (int i = 0; list != NULL && i < config->version_count; i++)
		cJSON_AddItemToArray(list, cJSON_CreateString(config->versions[i]));
	return kit_problem_ext(req, 404, extra, "%s", detail);
}

/* An unversioned path with "API-Version: 2" (or "v2"): served by the route
 * of /api/v2<rest>. Auth and rate limiting have already run against the
 * catch-all, which is public with the default limits, so only a route
 * with that same access may be reached this way; for any other (a token
 * route, or one with its own policy such as login) the answer is 400
 * naming the versioned path, rather than a route whose checks were
 * skipped. */
static int serve_api_version(struct kit_request *req, const struct kit_gateway_config *config,
			     const char *value)
{
	const struct kit_gateway_route *target = NULL;
	const char *rest = req->path_rest, *target_rest = NULL, *saved_rest;
	char version[12], path[1024], detail[256];
	struct kit_param params[KIT_MAX_PARAMS];
	int count = 0, result;

	/* 1. "2", "v2" or "V2" -> "v2". */
	if (value[0] == 'v' || value[0] == 'V')
		value++;
	if (strlen(value) < 1 || strlen(value) > 9 ||
	    strspn(value, "0123456789") != strlen(value))
		return kit_problem(req, 400, "API-Version must be a version number, such as 2 or v2");
	snprintf(version, sizeof(version), "v%s", value);
	if (!is_listed_version(config, version, strlen(version))) {
		snprintf(detail, sizeof(detail), "unknown API version \"%s\"", version);
		return version_problem(req, config, detail);
	}

	/* 2. The route that /api/<version><rest> would reach, first match
	 *    first, as the dispatcher matches. */
	if ((size_t)snprintf(path, sizeof(path), "/api/%s%s", version, rest) >= sizeof(path))
		return kit_problem(req, 414, "the URI is too long");
	for (int i = 0; i < config->route_count && target == NULL; i++) {
		if (kit_route_match(config->routes[i].pattern, path, params, &count, &target_rest))
			target = &config->routes[i];
	}
	if (target == NULL) {
		snprintf(detail, sizeof(detail), "no route for %s %.200s", req->method, path);
		return version_problem(req, config, detail);
	}
	if (target->access != KIT_PUBLIC || target->rate_limit != NULL)
		return kit_problem(req, 400, "API-Version selects public routes only; call %s %s",
				   req->method, path);

	/* 3. Proxy as that route. path_rest points into path, which lives
	 *    only in this frame, so it is put back before returning; the
	 *    route pattern (config memory) stays, so metrics and the access
	 *    log name the route that served the request. */
	saved_rest = req->path_rest;
	req->path_rest = target_rest;
	req->route_pattern = target->pattern;
	kit_response_header(req, "Vary", "API-Version");
	result = gateway_proxy_route(req, target);
	req->path_rest = saved_rest;
	return result;
}

/* "/api/...", after every route: whatever reaches it matched no route. */
int gateway_version_handler(struct kit_request *req)
{
	const struct kit_gateway_config *config = req->route_data;
	const char *rest = req->path_rest != NULL ? req->path_rest : "";
	const char *segment = rest[0] == '/' ? rest + 1 : rest;
	size_t len = strcspn(segment, "/");
	const char *requested = kit_request_header(req, "API-Version");
	char detail[256];

	/* 1. /api/v1/nope: a known version without that route. */
	if (is_listed_version(config, segment, len)) {
		snprintf(detail, sizeof(detail), "no route for %s %.200s", req->method, req->path);
		return version_problem(req, config, detail);
	}
	/* 2. /api/v3/...: a version this gateway does not serve. */
	if (looks_like_version(segment, len)) {
		snprintf(detail, sizeof(detail), "unknown API version \"%.*s\"", (int)len, segment);
		return version_problem(req, config, detail);
	}
	/* 3. /api/shorten: no version in the path; the header may say one. */
	if (requested != NULL)
		return serve_api_version(req, config, requested);
	snprintf(detail, sizeof(detail),
		 "no API version in %.200s: put one in the path (/api/%s/...) or send API-Version",
		 req->path, config->versions[config->version_count - 1]);
	return version_problem(req, config, detail);
}
