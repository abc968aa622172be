/*
 * kit/app.h - an application: a server core, a middleware chain and a route
 * table.
 *
 * The chain is ours (civetweb has none, and the event loop is the kit's
 * own). Every request goes through one dispatcher (src/app/app.c):
 *
 *   1. build a struct kit_request (method, path, request id, client ip)
 *   2. match the route table (a miss is remembered, not answered yet)
 *   3. run each middleware's handle() in kit_use() order; one that answers
 *      (auth 401, rate limit 429, CORS preflight 204) ends the chain
 *   4. answer 404/405 for a miss, or call the route's handler
 *   5. run each middleware's finish() in reverse order (metrics, access log)
 *
 * A phase's main.c is then the architecture: kit_use() lines in order, then
 * the routes (or the services that mount them).
 *
 * Threads: kit_use(), kit_route() and kit_app_on_*() are called from main()
 * before kit_app_run(); after that the app is read-only and every serving
 * thread reads it without locks.
 *
 * THE CONTRACT A MIDDLEWARE OR HANDLER RUNS UNDER. An app is served by one
 * of two server cores (src/server/core.h), chosen in main():
 *   - civetweb (the default; SERVER_CORE=threads): a worker thread per
 *     open connection, one request at a time on it, on the worker's own
 *     stack (civetweb's default, about 8 MiB). Blocking is allowed: a
 *     handler may wait on a store, compute a password hash, sleep.
 *   - the event loop (kit_app_use_event_loop(); SERVER_CORE=events): a few
 *     threads, each running many requests interleaved, each request on a
 *     coroutine with a 128 KiB stack (so no large arrays on the stack). A
 *     request may wait only through kit/wait.h (kit_wait_fd,
 *     kit_http_perform, ...), where it yields; anything else that blocks
 *     stops every request of that thread. So every middleware and route
 *     of an app on the event loop must be marked loop_safe, and
 *     kit_app_run() refuses to start otherwise; at run time the loop logs
 *     a request that holds its thread over LOOP_STALL_MS.
 * "Per thread" (kit_app_thread_resource) means per serving thread: on
 * civetweb one request uses it at a time; on the event loop every request
 * of that loop thread shares it, so a resource must not be held by one
 * request across a wait unless it is made for that (the Redis pipe of
 * kit/redis_io.h is; a handle taken off a per-thread list is the
 * request's own).
 * The request body is read only when a handler asks (kit_request_body),
 * on both cores: a request refused earlier in the chain never costs its
 * body.
 */
#ifndef KIT_APP_H
#define KIT_APP_H

#include <stdbool.h>
#include <stddef.h>

struct kit_app;
struct kit_request;

/* A middleware's handle() returns KIT_NEXT to pass the request on, or the
 * final HTTP status after it has answered (kit_respond()/kit_problem()). */
enum { KIT_NEXT = 0 };

/* Who may call a route; the auth and rate-limit middleware read it. */
enum kit_access {
	KIT_PUBLIC,        /* anyone; rate limited by client IP            */
	KIT_AUTHENTICATED, /* needs a verified user; rate limited per user */
	KIT_OPERATIONS,    /* /health, /metrics: no auth, no rate limit    */
};

/* A route handler answers the request and returns the status it sent. */
typedef int (*kit_handler_fn)(struct kit_request *req);

/*
 * A middleware, nginx-module style: one per file in shared/src, a config
 * struct of its own read once by init().
 *
 *   init     optional. Reads configuration (environment) into a state
 *            object it allocates and returns through *state. Returns 0, or
 *            -1 after printing what is wrong: start-up then stops.
 *   handle   required. KIT_NEXT or a final status after answering.
 *   finish   optional. Runs after the response was sent, in reverse order,
 *            also for requests an earlier middleware answered.
 *   destroy  optional. Frees the state when the app is freed.
 *   loop_safe  true when handle() and finish() wait only through kit/wait.h
 *            (or not at all): the event-loop core runs only such middleware.
 */
struct kit_middleware {
	const char *name;
	bool loop_safe;
	int (*init)(struct kit_app *app, void **state);
	int (*handle)(struct kit_request *req, void *state);
	void (*finish)(struct kit_request *req, void *state);
	void (*destroy)(void *state);
};

/* Creates an app named service_name ("monolith", "gateway", "users", ...),
 * served by civetweb, reading the server settings from the environment
 * (docs/configuration.md): PORT (default_port when unset), BIND_ADDRESS
 * (127.0.0.1), and the HTTP policy both cores apply: MAX_HEADER_BYTES,
 * MAX_BODY_BYTES, REQUEST_TIMEOUT_MS, KEEP_ALIVE_TIMEOUT_MS, LISTEN_BACKLOG,
 * MAX_CONNECTIONS (src/server/http_policy.c). Never returns NULL: a bad
 * setting is kept and makes kit_app_run() stop before listening. Free with
 * kit_app_free(). */
struct kit_app *kit_app_new(const char *service_name, int default_port);
void kit_app_free(struct kit_app *app);

/* Appends a middleware to the chain and runs its init(). */
void kit_use(struct kit_app *app, const struct kit_middleware *middleware);

/* Adds a route. pattern is a path whose segments may be ":name" parameters,
 * e.g. "/expand/:code", and whose last segment may be "...": "/api/v1/auth/..."
 * matches "/api/v1/auth" and every path below it (kit/router.h). method is
 * "GET", "POST", ... or "*" for any (HEAD is answered by GET routes).
 * pattern must be a string literal or outlive the app. */
void kit_route(struct kit_app *app, const char *method, const char *pattern,
	       kit_handler_fn handler, enum kit_access access);

struct kit_rate_limit_config;
struct kit_cache_policy;

/* The same with everything a gateway route carries. */
struct kit_route_spec {
	const char *method;
	const char *pattern;
	kit_handler_fn handler;
	enum kit_access access;
	/* The limits for this route; NULL: the rate limiter's defaults. */
	const struct kit_rate_limit_config *rate_limit;
	/* Its response-cache policy (kit/cache.h); NULL: not cached. */
	const struct kit_cache_policy *cache;
	/* Handed to the handler as req->route_data (e.g. the upstream). */
	void *data;
	/* The handler waits only through kit/wait.h (the gateway's proxy,
	 * the operations endpoints): it may run on the event-loop core.
	 * kit_route() leaves it false. */
	bool loop_safe;
};
void kit_route_add(struct kit_app *app, const struct kit_route_spec *spec);

/* A health check reported by /health under checks.<name>. Returns true
 * when healthy; may add members (a "detail" string, pool statistics) to
 * the check's JSON object, which already has "status". Checks run on the
 * worker thread serving /health, so they may use that thread's resources. */
struct cJSON;
typedef bool (*kit_health_check_fn)(struct kit_request *req, void *arg,
				    struct cJSON *check);
/* A failing check makes /health answer 503 "unhealthy": this process
 * cannot serve (its own database is gone). */
void kit_app_health_check(struct kit_app *app, const char *name,
			  kit_health_check_fn check, void *arg);
/* A failing report makes /health say "degraded" but still answer 200:
 * something behind this process is down (one upstream of a gateway), and
 * a load balancer must not take every gateway out because of it. */
void kit_app_health_report(struct kit_app *app, const char *name,
			   kit_health_check_fn check, void *arg);

/* Says this process keeps data in the store (kit/store.h): /health then
 * checks it, and STORE=memory is announced at start-up. Services call it
 * from their mount function; calling it twice is harmless. */
void kit_app_use_store(struct kit_app *app);

/*
 * Per-thread resources: a curl handle, a Redis connection. Neither may be
 * shared by threads running at once, so each serving thread owns its own
 * (a civetweb worker, or an event-loop thread: see the contract above for
 * what sharing means there): create(arg) runs on the thread the first time
 * it asks (may return NULL, and is then asked again next time),
 * destroy(resource) when the thread ends. Register before kit_app_run();
 * the returned slot is what kit_thread_resource() takes. -1 (and start-up
 * fails) when slots run out.
 */
int kit_app_thread_resource(struct kit_app *app, void *(*create)(void *arg),
			    void (*destroy)(void *resource), void *arg);
void *kit_thread_resource(struct kit_request *req, int slot);

/* Marks start-up as failed (a config error found outside a middleware, e.g.
 * by a service's mount function); kit_app_run() then returns 1. The message
 * is printed to stderr once, prefixed with the service name. */
void kit_app_fail(struct kit_app *app, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Serves the app on the event-loop core instead of civetweb: LOOP_THREADS
 * threads (one per CPU), each serving many connections, unless
 * SERVER_CORE=threads says otherwise. Every middleware and route must then
 * be loop_safe (see the contract above). Call before kit_app_run(). */
void kit_app_use_event_loop(struct kit_app *app);

/* How many idle upstream connections each event-loop thread's curl multi
 * handle keeps (libcurl's default otherwise). Call before kit_app_run(). */
void kit_loop_set_max_idle(struct kit_app *app, long connections);

/* Opens the listening socket and serves until SIGINT or SIGTERM; then stops
 * accepting, lets the requests in flight finish (within a bound) and
 * returns.
 * Returns the process exit code: 0 after a clean stop, 1 when start-up
 * failed (config error, port in use). */
int kit_app_run(struct kit_app *app);

/* Read-only accessors, for middleware and services. */
const char *kit_app_name(const struct kit_app *app);
size_t kit_app_max_body(const struct kit_app *app);
int kit_app_port(const struct kit_app *app);
/* Seconds since kit_app_new(), monotonic. */
double kit_app_uptime(const struct kit_app *app);

#endif
