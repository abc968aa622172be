/*
 * kit/app.h - an application: a civetweb server, a middleware chain and a
 * route table.
 *
 * civetweb has no handler chaining of its own, so the chain is ours. Every
 * request goes through one dispatcher (src/app/app.c):
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
 * before kit_app_run(); after that the app is read-only and every worker
 * thread reads it without locks.
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
 */
struct kit_middleware {
	const char *name;
	int (*init)(struct kit_app *app, void **state);
	int (*handle)(struct kit_request *req, void *state);
	void (*finish)(struct kit_request *req, void *state);
	void (*destroy)(void *state);
};

/* Creates an app named service_name ("monolith", "gateway", "users", ...),
 * reading the server settings from the environment (docs/configuration.md):
 * PORT (default_port when unset), BIND_ADDRESS (127.0.0.1), WORKER_THREADS
 * (64: civetweb spends one thread on each open connection, idle keep-alive
 * ones included), MAX_BODY_BYTES (65536). Never returns NULL: a bad setting is kept
 * and makes kit_app_run() stop before listening. Free with kit_app_free(). */
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

/* The same with everything a gateway route carries. */
struct kit_route_spec {
	const char *method;
	const char *pattern;
	kit_handler_fn handler;
	enum kit_access access;
	/* The limits for this route; NULL: the rate limiter's defaults. */
	const struct kit_rate_limit_config *rate_limit;
	/* Handed to the handler as req->route_data (e.g. the upstream). */
	void *data;
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
 * shared by threads running at once, so each civetweb worker owns its own:
 * create(arg) runs on the worker the first time it asks (may return NULL,
 * and is then asked again next time), destroy(resource) when the worker
 * exits. Register before kit_app_run(); the returned slot is what
 * kit_thread_resource() takes. -1 (and start-up fails) when slots run out.
 */
int kit_app_thread_resource(struct kit_app *app, void *(*create)(void *arg),
			    void (*destroy)(void *resource), void *arg);
void *kit_thread_resource(struct kit_request *req, int slot);

/* Marks start-up as failed (a config error found outside a middleware, e.g.
 * by a service's mount function); kit_app_run() then returns 1. The message
 * is printed to stderr once, prefixed with the service name. */
void kit_app_fail(struct kit_app *app, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Opens the listening socket and serves until SIGINT or SIGTERM.
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
