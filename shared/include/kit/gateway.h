/*
 * kit/gateway.h - the gateway's configuration and its proxy.
 *
 * The route table comes from a JSON file (phase2-gateway/gateway.json):
 * upstreams by name, connection-pool settings, named rate-limit policies,
 * and routes (path prefix -> upstream, prefix rewrite, who may call it, its
 * policy and timeout). kit_gateway_mount() turns each route into a kit
 * route ("<prefix>/...", any method) whose handler is the proxy.
 *
 * The proxy (proxy.c) sends the request on with libcurl. Each civetweb
 * worker owns one curl easy handle (a per-thread resource): libcurl does not
 * let running threads share one connection cache, and a handle per worker
 * keeps up to pool.max_idle_per_thread keep-alive connections, reused
 * request after request. Pool statistics per upstream are counted from
 * libcurl's open/close socket callbacks.
 *
 * Threads: the configuration is loaded by main() and read-only after; pool
 * statistics are atomics.
 */
#ifndef KIT_GATEWAY_H
#define KIT_GATEWAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "kit/app.h"
#include "kit/rate_limit.h"

#define KIT_GATEWAY_MAX_UPSTREAMS 16
#define KIT_GATEWAY_MAX_ROUTES 48
#define KIT_GATEWAY_MAX_POLICIES 8

/* Connection-pool counters of one upstream, like the guide's agentkeepalive
 * getCurrentStatus(). open = created - closed; idle = open - in_use. */
struct kit_pool_stats {
	atomic_long created;  /* connections opened                    */
	atomic_long errors;   /* connection attempts that failed        */
	atomic_long closed;   /* connections closed (either side)       */
	atomic_long in_use;   /* requests on the wire right now         */
	atomic_long requests; /* requests sent (retries included)       */
};

struct kit_upstream {
	char name[32];         /* "url-shortener"                          */
	char url[256];         /* "http://127.0.0.1:8081", no trailing '/' */
	struct kit_pool_stats pool;
};

struct kit_gateway_route {
	char prefix[128];      /* "/api/v1/shorten"                        */
	char pattern[136];     /* "/api/v1/shorten/..." (the kit route)   */
	char rewrite[128];     /* "/shorten": replaces the prefix upstream */
	struct kit_upstream *upstream;
	enum kit_access access;
	const struct kit_rate_limit_config *rate_limit; /* NULL: RATE_LIMIT_* */
	long timeout_ms;       /* whole exchange, retry included (5000)     */
};

struct kit_gateway_config {
	char path[256];                       /* the file, for messages */
	struct kit_upstream upstreams[KIT_GATEWAY_MAX_UPSTREAMS];
	int upstream_count;
	struct kit_rate_limit_config policies[KIT_GATEWAY_MAX_POLICIES];
	int policy_count;
	struct kit_gateway_route routes[KIT_GATEWAY_MAX_ROUTES];
	int route_count;

	/* "pool": {...} */
	long max_idle_per_thread;   /* connections a worker keeps (4)        */
	long max_idle_per_upstream; /* open connections to one upstream, all
	                             * workers together, above which a used
	                             * connection is closed, not kept (8)     */
	long idle_timeout_seconds;  /* closed after idling this long (20);
	                             * shorter than the upstream's keep-alive */
	long connect_timeout_ms;    /* (500)                                  */
	long max_response_bytes;    /* larger upstream bodies: 502 (8 MiB)    */
};

/*
 * Parses the JSON text of a gateway file. Upstream URLs may be overridden
 * by environment variables named in the file ("url_env"), so one file
 * serves compose (service names) and native runs (loopback ports).
 * Returns 0, or -1 with a message naming the file, the field and the
 * problem in error ("gateway.json: routes[2].upstream: no upstream named
 * \"billing\"").
 */
int kit_gateway_config_parse(const char *path, const char *text,
			     struct kit_gateway_config *config, char *error,
			     size_t error_size);

/* Reads and parses the file; on failure prints the message and calls
 * kit_app_fail(). Returns the config (malloc'd, lives as long as the
 * process) or NULL. */
struct kit_gateway_config *kit_gateway_config_load(struct kit_app *app,
						   const char *path);

/* Adds every route of config to app as a proxy route, registers the curl
 * handle per worker thread, the pool metrics and a health report per
 * upstream (its /health and its pool statistics). */
void kit_gateway_mount(struct kit_app *app, struct kit_gateway_config *config);

/* The header filter, exposed for unit tests: true when a request header
 * must not be forwarded upstream (hop-by-hop, Host, Content-Length, Expect,
 * any X-User-*, and the forwarding and request-id headers the gateway sets
 * itself), or a response header not passed back (hop-by-hop,
 * Content-Length, Date, Server, X-Request-Id: the gateway writes its own). connection is
 * the message's Connection header (its tokens are hop-by-hop too), or NULL. */
bool kit_proxy_drop_request_header(const char *name, const char *connection);
bool kit_proxy_drop_response_header(const char *name, const char *connection);

#endif
