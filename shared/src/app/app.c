/*
 * app.c - the application: server settings, the middleware chain, the route
 * table, and serve(), which runs one request through them (kit/app.h).
 *
 * A server core (server/civetweb.c or server/event_loop.c) builds the
 * request context and calls serve() through the one pointer it is given
 * (kit_server_config.serve, server/core.h), which resolves the client
 * address, matches the route, runs the chain, calls the handler and runs
 * the finish hooks in reverse. Nothing it allocates outlives the request.
 * kit_app_run() starts whichever core the app was given.
 *
 * Threads: the app is written by main() before kit_app_run() and only read
 * afterwards. Per-thread state (the store connection) is created on the
 * thread that uses it, the first time it asks, and freed when that thread
 * ends (kit_thread_release).
 */
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "app/internal.h"
#include "kit/config.h"
#include "kit/request.h"
#include "kit/response.h"
#include "kit/router.h"

void kit_app_fail(struct kit_app *app, const char *fmt, ...)
{
	va_list args;

	fprintf(stderr, "%s: ", app->name);
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fputc('\n', stderr);
	app->failed = true;
}

static void *open_store(void *config)
{
	return kit_store_open(config);
}

static void close_store(void *store)
{
	kit_store_close(store);
}

static void serve(void *app, struct kit_request *req);

struct kit_app *kit_app_new(const char *service_name, int default_port)
{
	struct kit_app *app = calloc(1, sizeof(*app));
	struct kit_server_config *config;
	const char *bind;

	if (app == NULL) {
		fprintf(stderr, "%s: out of memory\n", service_name);
		exit(1);
	}
	app->name = service_name;
	app->started_ns = kit_now_ns();
	app->server = &kit_civetweb_server; /* kit_app_use_event_loop() may swap it */
	config = &app->server_config;
	config->name = service_name;
	config->serve = serve;
	config->app = app;
	config->resources = app->resources;

	snprintf(app->instance_id, sizeof(app->instance_id), "%s",
		 kit_env_string("INSTANCE_ID", ""));
	bind = kit_env_string("BIND_ADDRESS", "127.0.0.1");
	if (strlen(bind) >= sizeof(config->bind_address) || strchr(bind, ':')) {
		fprintf(stderr, "BIND_ADDRESS: \"%s\" is not an IPv4 address\n", bind);
		app->failed = true;
	} else {
		strcpy(config->bind_address, bind);
	}
	if (kit_env_long("PORT", default_port, 1, 65535, &config->port) != 0 ||
	    kit_http_policy_from_env(&config->policy) != 0 ||
	    kit_client_address_config(app) != 0 ||
	    kit_store_config_from_env(&app->store_config) != 0)
		app->failed = true;
	app->store_slot = kit_app_thread_resource(app, open_store, close_store,
						  &app->store_config);
	return app;
}

void kit_app_free(struct kit_app *app)
{
	if (app == NULL)
		return;
	for (int i = app->middleware_count - 1; i >= 0; i--) {
		if (app->middleware[i]->destroy != NULL)
			app->middleware[i]->destroy(app->middleware_state[i]);
	}
	free(app);
}

void kit_use(struct kit_app *app, const struct kit_middleware *middleware)
{
	int slot = app->middleware_count;

	if (slot == KIT_MAX_MIDDLEWARE) {
		kit_app_fail(app, "more than %d middleware", KIT_MAX_MIDDLEWARE);
		return;
	}
	app->middleware[slot] = middleware;
	app->middleware_state[slot] = NULL;
	app->middleware_count++;
	if (middleware->init != NULL &&
	    middleware->init(app, &app->middleware_state[slot]) != 0)
		kit_app_fail(app, "middleware %s: bad configuration (see above)",
			     middleware->name);
}

void kit_route_add(struct kit_app *app, const struct kit_route_spec *spec)
{
	if (app->route_count == KIT_MAX_ROUTES) {
		kit_app_fail(app, "more than %d routes", KIT_MAX_ROUTES);
		return;
	}
	app->routes[app->route_count++] = *spec;
}

void kit_route(struct kit_app *app, const char *method, const char *pattern,
	       kit_handler_fn handler, enum kit_access access)
{
	kit_route_add(app, &(struct kit_route_spec){
		.method = method,
		.pattern = pattern,
		.handler = handler,
		.access = access,
	});
}

static void add_health_entry(struct kit_app *app, const char *name,
			     kit_health_check_fn check, void *arg, bool critical)
{
	if (app->health_count == KIT_MAX_HEALTH_CHECKS) {
		kit_app_fail(app, "more than %d health checks", KIT_MAX_HEALTH_CHECKS);
		return;
	}
	app->health[app->health_count++] =
		(struct kit_health_entry){ name, check, arg, critical };
}

void kit_app_health_check(struct kit_app *app, const char *name,
			  kit_health_check_fn check, void *arg)
{
	add_health_entry(app, name, check, arg, true);
}

void kit_app_health_report(struct kit_app *app, const char *name,
			   kit_health_check_fn check, void *arg)
{
	add_health_entry(app, name, check, arg, false);
}

void kit_app_use_store(struct kit_app *app)
{
	if (app->uses_store)
		return;
	app->uses_store = true;
	kit_app_health_check(app, "store", kit_store_health_check, NULL);
}

int kit_app_thread_resource(struct kit_app *app, void *(*create)(void *arg),
			    void (*destroy)(void *resource), void *arg)
{
	if (app->resource_count == KIT_MAX_THREAD_RESOURCES) {
		kit_app_fail(app, "more than %d per-thread resources", KIT_MAX_THREAD_RESOURCES);
		return -1;
	}
	app->resources[app->resource_count] =
		(struct kit_thread_resource_entry){ create, destroy, arg };
	app->server_config.resource_count = app->resource_count + 1;
	return app->resource_count++;
}

void kit_app_use_event_loop(struct kit_app *app)
{
	const char *core = kit_env_string("SERVER_CORE", "events");

	if (strcmp(core, "threads") == 0)
		return; /* civetweb's thread per connection stays */
	if (strcmp(core, "events") != 0) {
		kit_app_fail(app, "SERVER_CORE: \"%s\" is neither events nor threads", core);
		return;
	}
	app->server = &kit_event_loop_server;
}

void kit_loop_set_max_idle(struct kit_app *app, long connections)
{
	app->server_config.loop_max_idle = connections;
}

const char *kit_app_name(const struct kit_app *app) { return app->name; }
size_t kit_app_max_body(const struct kit_app *app)
{
	return (size_t)app->server_config.policy.max_body_bytes;
}
int kit_app_port(const struct kit_app *app) { return (int)app->server_config.port; }

double kit_app_uptime(const struct kit_app *app)
{
	return (double)(kit_now_ns() - app->started_ns) / 1e9;
}

/* ---- the request's way through the process ---- */

/* Finds the route for method and path. On a miss, route_status is 404, or
 * 405 with the methods the path does accept written into allow. */
static void match_route(struct kit_request *req, char *allow, size_t allow_size)
{
	const struct kit_app *app = req->app;
	bool is_head = strcmp(req->method, "HEAD") == 0;
	size_t used = 0;

	req->route_status = 404;
	allow[0] = '\0';
	for (int i = 0; i < app->route_count; i++) {
		const struct kit_route_spec *route = &app->routes[i];

		if (!kit_route_match(route->pattern, req->path, req->params,
				     &req->param_count, &req->path_rest))
			continue;
		if (strcmp(route->method, "*") == 0 ||
		    strcmp(route->method, req->method) == 0 ||
		    (is_head && strcmp(route->method, "GET") == 0)) {
			req->route_pattern = route->pattern;
			req->access = route->access;
			req->handler = route->handler;
			req->rate_limit = route->rate_limit;
			req->cache = route->cache;
			req->route_data = route->data;
			req->route_status = 0;
			return;
		}
		req->route_status = 405;
		if (strstr(allow, route->method) == NULL) {
			int n = snprintf(allow + used, allow_size - used, "%s%s",
					 used ? ", " : "", route->method);
			if (n > 0 && (size_t)n < allow_size - used)
				used += (size_t)n;
		}
	}
	req->param_count = 0;
}

/* The handler of a request the server core refused before the app saw it
 * (malformed, too large, too slow: server/core.h). */
static int answer_refusal(struct kit_request *req)
{
	return kit_problem(req, req->refusal, "%s", req->refusal_detail);
}

/*
 * The one way a server core calls up into the app (kit_serve_fn in
 * server/core.h): one request through the route, the chain, the handler
 * and the finish hooks. The core has filled the request's first block
 * (transport, head, method, path, peer); everything the request allocated
 * is freed here.
 */
static void serve(void *arg, struct kit_request *req)
{
	struct kit_app *app = arg;
	char allow[128];
	int ran = 0;     /* middleware whose handle() ran */
	int status = KIT_NEXT;

	/* 1. The rest of the context. */
	req->app = app;
	req->service = app->name;
	kit_client_address_resolve(req, req->peer);
	if (app->instance_id[0] != '\0') /* which of several copies answered */
		kit_response_header(req, "X-Instance", app->instance_id);

	/* 2. The route (a miss is answered after the chain, so that CORS
	 * preflights and the request id still apply to it). A refused
	 * request has none: it is answered with its refusal, and passes the
	 * chain as an operations request (no auth, no rate limit), so the
	 * request id, the access log and the metrics still see it. */
	if (req->refusal != 0) {
		/* Nothing of a refused request is trusted: no method (so the
		 * refusal has a body even for a HEAD), path or query reaches
		 * the log, the metrics or the problem's "instance". */
		req->method = "-";
		req->path = "";
		req->query = NULL;
		allow[0] = '\0';
		req->handler = answer_refusal;
		req->access = KIT_OPERATIONS;
	} else {
		match_route(req, allow, sizeof(allow));
	}

	/* 3. The chain. */
	while (ran < app->middleware_count && status == KIT_NEXT) {
		status = app->middleware[ran]->handle(req, app->middleware_state[ran]);
		ran++;
	}

	/* 4. The handler, or why there is none. */
	if (status == KIT_NEXT) {
		if (req->route_status == 405) {
			kit_response_header(req, "Allow", allow);
			kit_problem(req, 405, "%s is not allowed here; allowed: %s",
				    req->method, allow);
		} else if (req->route_status == 404) {
			kit_problem(req, 404, "no route for %s %s", req->method, req->path);
		} else {
			req->handler(req);
		}
	}
	if (req->status == 0) /* a handler that forgot to answer is our bug */
		kit_problem(req, 500, "the handler sent no response");

	/* 5. The finish hooks, last middleware first. */
	for (int i = ran - 1; i >= 0; i--) {
		if (app->middleware[i]->finish != NULL)
			app->middleware[i]->finish(req, app->middleware_state[i]);
	}

	free(req->body);
	free(req->kept_body);
	free(req->kept_content_type);
	cJSON_Delete(req->json);
}

void *kit_thread_resource(struct kit_request *req, int slot)
{
	return kit_thread_slot(slot);
}

struct kit_store *kit_request_store(struct kit_request *req)
{
	return kit_thread_resource(req, req->app->store_slot);
}

/* On a core where one thread serves many requests, a middleware or handler
 * that blocks stops all of them: refuse to start with anything not marked
 * loop_safe (kit/app.h). Returns 0, or -1 after saying what and why. */
static int check_loop_safe(struct kit_app *app)
{
	int status = 0;

	for (int i = 0; i < app->middleware_count; i++) {
		if (app->middleware[i]->loop_safe)
			continue;
		kit_app_fail(app, "middleware %s is not marked loop_safe: it may block an "
			     "event-loop thread (run this app with SERVER_CORE=threads)",
			     app->middleware[i]->name);
		status = -1;
	}
	for (int i = 0; i < app->route_count; i++) {
		if (app->routes[i].loop_safe)
			continue;
		kit_app_fail(app, "route %s %s is not marked loop_safe: its handler may "
			     "block an event-loop thread (run this app with SERVER_CORE=threads)",
			     app->routes[i].method, app->routes[i].pattern);
		status = -1;
	}
	if (app->uses_store) {
		kit_app_fail(app, "the store makes blocking calls: an app that keeps data "
			     "runs on SERVER_CORE=threads");
		status = -1;
	}
	return status;
}

int kit_app_run(struct kit_app *app)
{
	sigset_t stop_signals;

	if (!app->failed && app->server->configure(&app->server_config) != 0)
		app->failed = true;
	if (!app->failed && app->server->shares_threads && check_loop_safe(app) != 0)
		app->failed = true;
	if (app->failed) {
		fprintf(stderr, "%s: not starting: configuration errors above\n",
			app->name);
		return 1;
	}
	if (app->uses_store && app->store_config.kind == KIT_STORE_MEMORY)
		fprintf(stderr, "%s: STORE=memory: data lives in this process only; "
			"NOTHING PERSISTS across a restart\n", app->name);

	/* Every thread inherits this mask, so SIGINT/SIGTERM reach only the
	 * core's sigwait(), and shutdown happens there, not inside a signal
	 * handler. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);
	return app->server->run(&app->server_config, &stop_signals);
}
