/*
 * gateway_internal.h - what the gateway's own files share: the proxy step
 * (proxy.c) and the version catch-all (gateway_versions.c), which proxies
 * an API-Version request as the route of that version.
 */
#ifndef KIT_GATEWAY_INTERNAL_H
#define KIT_GATEWAY_INTERNAL_H

#include <curl/curl.h>

#include "kit/gateway.h"
#include "kit/request.h"

/* ---- upstream_http.c: the proxy's HTTP/1.1 client ---- */

/* A thread's pooled upstream connections (a per-thread resource). */
struct upstream_pool;
struct upstream_pool *upstream_pool_new(void);
/* Closes the idle connections (counted against their upstreams). */
void upstream_pool_free(struct upstream_pool *pool);

struct upstream_request {
	const struct kit_gateway_config *config; /* pool settings        */
	const char *method;
	const char *target;            /* "/path?query", encoded         */
	const struct curl_slist *headers; /* "Name: value" lines; an empty
	                                * value is left out              */
	const char *body;
	size_t body_len;
	bool send_body;                /* a body (and Content-Length)    */
	bool head_only;                /* HEAD: no body in the answer    */
	bool fresh_connection;         /* not a pooled one (pooling off) */
	bool close_after;              /* not back to the pool           */
	uint64_t deadline_ns;          /* the whole attempt's            */
};

enum upstream_outcome {
	UPSTREAM_OK,
	UPSTREAM_REFUSED,    /* no connection: nothing was sent          */
	UPSTREAM_TIMED_OUT,  /* the deadline passed                      */
	UPSTREAM_DROPPED,    /* closed before any byte of an answer      */
	UPSTREAM_BROKEN,     /* a partial or malformed answer            */
	UPSTREAM_TOO_LARGE,  /* a body over body_limit                   */
};

struct upstream_result {
	enum upstream_outcome outcome;
	bool reused;                   /* on a pooled connection         */
	int status;
	char *head;                    /* the answer's status line and header
	                                * lines, CR LF each, NUL-ended     */
	size_t head_len, head_capacity;
	char *body;
	size_t body_len, body_capacity, body_limit;
};

/* One attempt: a connection of pool's to instance (of upstream), the
 * request, the answer into result (its buffers grow and are the caller's
 * to free; set body_limit before). */
void upstream_exchange(struct upstream_pool *pool, struct kit_upstream *upstream,
		       const struct kit_upstream_instance *instance,
		       const struct upstream_request *request, struct upstream_result *result);

/* Sends req to route's upstream (or split variant) and answers with what
 * comes back, or with a 502/504 problem. Returns the status sent. */
int gateway_proxy_route(struct kit_request *req, const struct kit_gateway_route *route);

/* The handler of the "/api/..." catch-all; req->route_data is the config. */
int gateway_version_handler(struct kit_request *req);

#endif
