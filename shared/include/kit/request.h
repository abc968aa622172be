/*
 * kit/request.h - the request context every middleware and handler shares.
 *
 * One struct kit_request lives on the stack a request runs on (a civetweb
 * worker's, or the request's coroutine on an event-loop thread) for the
 * length of one request. The server core fills the first block, the app
 * (src/app/app.c) the second, middleware the rest; everything it points to
 * is freed when the response has gone out. Nothing here is a civetweb or
 * event-loop type: the core's connection is an opaque pointer that only
 * the core's transport reads (src/server/core.h).
 *
 * Identity: the monolith's JWT middleware and a service's identity-header
 * middleware fill the same req->user, so a handler never knows which phase
 * it runs in.
 */
#ifndef KIT_REQUEST_H
#define KIT_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kit/app.h"

struct kit_http_head;
struct kit_transport;
struct cJSON;
struct kit_store;
struct kit_rate_limit_config;
struct kit_cache_policy;
struct kit_span;

#define KIT_REQUEST_ID_MAX 64 /* longest X-Request-Id we accept from a client */
#define KIT_SUBJECT_MAX 64    /* longest user id (JWT sub) we accept         */
#define KIT_TIER_MAX 16
#define KIT_MAX_PARAMS 4
#define KIT_RESPONSE_HEADERS_MAX 4096 /* room for a proxied response's headers */

struct kit_identity {
	bool authenticated;
	char subject[KIT_SUBJECT_MAX + 1]; /* JWT "sub": the username      */
	char tier[KIT_TIER_MAX + 1];       /* "free" or "premium"           */
	double expires_at;  /* the token's exp (0: identity not from a JWT) */
	double not_before;  /* its nbf, or 0                                */
};

struct kit_param {
	char name[32];     /* from the route pattern, without the ':'      */
	char value[128];   /* URL-decoded; longer segments do not match     */
};

struct kit_request {
	/* Filled by the server core before the app sees the request. */
	const struct kit_transport *transport; /* the core's body and send  */
	void *conn;               /* the core's connection: only for transport */
	const struct kit_http_head *http; /* the parsed head: the headers,
	                           * Content-Length, chunked, keep-alive      */
	const char *method;       /* "GET", "POST", ...                      */
	const char *path;         /* decoded, normalized, without the query  */
	const char *query;        /* raw query string, or NULL               */
	char peer[48];            /* the socket's peer address               */
	uint64_t start_ns;        /* monotonic clock at arrival              */
	int refusal;              /* not 0: the core refused the request with
	                           * this status before the app saw it (a
	                           * malformed head, too slow); the app answers
	                           * it with refusal_detail and no handler    */
	const char *refusal_detail;

	/* Filled by the app (src/app/app.c) before the first middleware. */
	struct kit_app *app;
	char client_ip[48];       /* the peer, or X-Forwarded-For from a
	                           * trusted proxy (TRUSTED_PROXIES)          */

	/* Route match: route_pattern is NULL when nothing matched;
	 * route_status is then 404, or 405 when the path matched another
	 * method. access is the matched route's. */
	const char *route_pattern;
	enum kit_access access;
	int route_status;
	kit_handler_fn handler;
	const struct kit_rate_limit_config *rate_limit; /* the route's, or NULL */
	const struct kit_cache_policy *cache; /* the route's, or NULL: not cached */
	void *route_data;         /* kit_route_spec.data                      */
	struct kit_param params[KIT_MAX_PARAMS];
	int param_count;
	const char *path_rest;    /* prefix routes: the path after the prefix */

	/* Filled by middleware. */
	char request_id[KIT_REQUEST_ID_MAX + 1]; /* request_id.c           */
	char trace_id[33];        /* tracing.c; "" when tracing is off       */
	struct kit_span *span;    /* tracing.c: the server span, or NULL     */
	struct kit_identity user;                 /* auth_jwt.c / identity  */
	const char *service;      /* metrics "service" label; app name by default */

	/* The request body, read on first use (kit_request_body): not a byte
	 * of it is read before a handler asks, so a request that auth or the
	 * rate limit refuses never costs its body. */
	char *body;
	size_t body_len;
	bool body_read;
	struct cJSON *json;       /* parsed by kit_request_json, freed after */

	/* Set by a middleware that needs the body after it has gone out
	 * (the response cache stores it in its finish hook): kit_respond()
	 * then keeps a copy in kept_*, freed after the finish hooks. */
	bool keep_response;
	char *kept_body;
	size_t kept_len;
	char *kept_content_type;

	/* The response, as sent (kit_respond). */
	int status;
	size_t bytes_sent;
	/* The cores zero everything above this line for each request. */
	char extra_headers[KIT_RESPONSE_HEADERS_MAX]; /* "Name: value\r\n"... */
	size_t extra_headers_len;
};

/* A request header's value, or NULL. name is case-insensitive. */
const char *kit_request_header(const struct kit_request *req, const char *name);

/* The number of request headers, and the i-th one's name and value
 * (0 <= i < count), as the client sent them: for passing them on. */
int kit_request_header_count(const struct kit_request *req);
void kit_request_header_at(const struct kit_request *req, int i,
			   const char **name, const char **value);

/* The value of route parameter name (":name" in the pattern), or NULL. */
const char *kit_request_param(const struct kit_request *req, const char *name);

/* Reads the whole body (at most MAX_BODY_BYTES) into req->body. Returns
 * KIT_NEXT when it is there (possibly empty), or answers and returns the
 * status: 413 too large (before reading, when Content-Length says so),
 * 400 short or malformed, 408 not arrived within REQUEST_TIMEOUT_MS. On an
 * event-loop thread the request yields while the body arrives. */
int kit_request_body(struct kit_request *req);

/* Reads the body and parses it as one JSON object into *out (owned by req,
 * freed after the response). Returns KIT_NEXT, or answers with a problem and
 * returns its status: 415 when Content-Type is present and not JSON, 413
 * when too large, 400 when empty, malformed or not an object. */
int kit_request_json(struct kit_request *req, struct cJSON **out);

/* The string member name of a JSON object into *value (owned by object).
 * Returns KIT_NEXT; or answers 400 ("<name> is required", "<name> must be
 * a string") and returns 400. When required is false, a missing or null
 * member gives *value = NULL and KIT_NEXT. */
int kit_json_string(struct kit_request *req, const struct cJSON *object,
		    const char *name, bool required, const char **value);

/* The store (Redis connection or memory) owned by the calling worker thread,
 * opened on first use from REDIS_URL / STORE (see kit/store.h). Never NULL. */
struct kit_store *kit_request_store(struct kit_request *req);

/* A new request id (UUID v4, 36 characters and a NUL) into out: what
 * request_id.c gives a request that did not bring a sane one. */
void kit_new_request_id(char out[37]);

/* Nanoseconds on the monotonic clock. */
uint64_t kit_now_ns(void);

/* when as ISO 8601 UTC, "2026-11-28T04:00:00Z", into out (at least 21
 * bytes). Returns 0, or -1 when it does not fit. */
int kit_utc_timestamp(long long when, char *out, size_t size);

#endif
