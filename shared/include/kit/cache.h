/*
 * kit/cache.h - the gateway's response cache: a route's policy, and the
 * rules that decide what is stored (src/middleware/response_cache.c).
 *
 * A route opts in in gateway.json: "cache": {"ttl_seconds": 60}. The
 * middleware kit_response_cache (kit/middleware.h) then answers a GET or
 * HEAD from Redis when it can (X-Cache: HIT, with Age), and otherwise
 * lets it through to the service (X-Cache: MISS) and stores a 200 answer
 * for the next caller. Every gateway instance shares the one Redis, so a
 * link read through api-gateway-1 is a hit on api-gateway-3.
 *
 * The key: the path and the query, and on an authenticated route the
 * verified user too: one user's /users/me is never another's. A write
 * (POST, PUT, PATCH, DELETE answered 2xx) drops every cached variant of
 * that path (of that user, on an authenticated route).
 *
 * The service decides with Cache-Control; the client may ask for fresh:
 *   response no-store, no-cache  not stored
 *   response private             stored only on an authenticated route
 *                                (its key holds the user)
 *   response s-maxage / max-age  stored for that long, at most ttl_seconds
 *   response Vary or Set-Cookie  not stored (the key would not tell the
 *                                variants apart; a cookie is one caller's)
 *   a body over 1 MiB, a status  not stored
 *   other than 200
 *   request no-cache (or Pragma) not read from the cache (X-Cache: BYPASS),
 *                                the fresh answer is stored
 *   request no-store             neither read nor stored (BYPASS)
 *   public route + Authorization not read nor stored (BYPASS): a shared
 *                                cache must not answer for a credential
 *                                the gateway did not check
 */
#ifndef KIT_CACHE_H
#define KIT_CACHE_H

#include <stdbool.h>

struct kit_cache_policy {
	long ttl_seconds;        /* 1..86400: the longest an answer is kept    */
	char route[128];         /* the route's prefix: the metric's label     */
	const char *service;     /* the upstream's name, for the metrics of a
	                          * hit (which never reaches the proxy)        */
};

/* The directives of a Cache-Control value this cache reads (RFC 9111). */
struct kit_cache_control {
	bool no_store, no_cache, is_private, is_public;
	long max_age;            /* -1 when absent */
	long s_maxage;           /* -1 when absent */
};

/* Parses a Cache-Control value (NULL: none); unknown directives are
 * ignored, a malformed number makes that directive absent. */
void kit_cache_control_parse(const char *value, struct kit_cache_control *out);

/* How long a response may be stored under policy, from its Cache-Control
 * (NULL: none), on a route that is authenticated or not: 0 for "not
 * stored", else seconds (at most policy->ttl_seconds). */
long kit_cache_ttl(const struct kit_cache_policy *policy, bool authenticated,
		   const char *response_cache_control);

#endif
