/*
 * operations.c - the endpoints an operator (or a load balancer, or
 * Prometheus) calls: GET /health, GET /health/details and GET /metrics.
 *
 * GET /health is liveness, for load balancers, container health checks
 * and readiness polls: 200 {"status":"ok","service":"<name>"} as soon as
 * the process serves, in constant time. It asks nothing of anyone (no
 * upstream, no Redis, no store) and says nothing about them, so anyone may
 * call it as often as they like: a flood of it costs what a flood of 404s
 * would. A dependency that is down is not a reason for a load balancer to
 * take this instance out (every instance shares the same Redis and the
 * same services, so taking them out cannot help); that is what the
 * detailed report and the metrics are for. (Kubernetes' /livez, Envoy's
 * /ready, Kong's /status/ready answer the same way.)
 *
 * GET /health/details is the operator's report: 200 {"status":"healthy"
 * or "degraded", ...} or 503 "unhealthy", uptime, memory and the result
 * of every check the process registered (the store's PING; on a gateway
 * each upstream's own /health, its URL and its connection-pool figures,
 * and the rate limiter's Redis). It needs the operator's credential,
 * "Authorization: Bearer <OPERATOR_TOKEN>" (401 without it; 403 for
 * everyone when OPERATOR_TOKEN is not set: the report is then off). The
 * checks cost a request to every upstream and a PING, so their result is
 * kept for HEALTH_CHECK_INTERVAL_MS (1000) and shared by every thread: a
 * flood costs at most one round of checks per interval, and while one
 * round runs, other callers get the previous one ("checks_age_seconds"
 * says how old).
 *
 * Reads:  OPERATOR_TOKEN (at least 32 bytes when set),
 *         HEALTH_CHECK_INTERVAL_MS (100..600000), once at start-up.
 *
 * /metrics renders the registry (metrics_registry.c) and adds the process's
 * own gauges, read from /proc at scrape time.
 *
 * All three routes are KIT_OPERATIONS: no user token, no rate limit. In
 * production /metrics belongs on an internal port or behind the network's
 * own ACL; the kit keeps it on the public port so a workshop can curl it.
 *
 * Threads: the report's cache is one per process, behind a mutex held
 * only to copy it in or out, never across a check (on an event-loop thread
 * a check yields to other requests, which must not wait on that lock).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "app/internal.h"
#include "kit/config.h"
#include "kit/metrics.h"
#include "kit/middleware.h"
#include "kit/request.h"
#include "kit/response.h"
#include "kit/store.h"

/* Resident set size now, from /proc/self/statm; 0 when unreadable. */
static long long resident_bytes(void)
{
	long long pages_total = 0, pages_resident = 0;
	FILE *statm = fopen("/proc/self/statm", "r");

	if (statm == NULL)
		return 0;
	if (fscanf(statm, "%lld %lld", &pages_total, &pages_resident) != 2)
		pages_resident = 0;
	fclose(statm);
	return pages_resident * sysconf(_SC_PAGESIZE);
}

static long long peak_resident_bytes(void)
{
	struct rusage usage;

	if (getrusage(RUSAGE_SELF, &usage) != 0)
		return 0;
	return (long long)usage.ru_maxrss * 1024; /* Linux reports KiB */
}

bool kit_store_health_check(struct kit_request *req, void *arg, cJSON *check)
{
	struct kit_store *store = kit_request_store(req);

	if (store != NULL && kit_store_ping(store) == KIT_STORE_OK)
		return true;
	cJSON_AddStringToObject(check, "detail",
				store != NULL ? kit_store_error(store) : "out of memory");
	return false;
}

#define OPERATOR_TOKEN_MIN 32

/* The detailed report's settings and its cache: one per process. */
struct health_state {
	bool token_set;                      /* OPERATOR_TOKEN given           */
	unsigned char token_digest[SHA256_DIGEST_LENGTH];
	long interval_ms;                    /* HEALTH_CHECK_INTERVAL_MS       */

	pthread_mutex_t lock;                /* guards the rest                */
	bool refreshing;                     /* a round of checks is running   */
	uint64_t checked_ns;                 /* when the cached round ended; 0 */
	char checked_at[32];                 /* the same, ISO 8601 UTC         */
	char *checks;                        /* its "checks" object, as JSON   */
	bool healthy, degraded;              /* its verdict                    */
};

/* GET /health: liveness. Constant work, nothing about anything else. */
static int health_handler(struct kit_request *req)
{
	cJSON *body = cJSON_CreateObject();
	int status;

	if (body == NULL)
		return kit_problem(req, 500, "out of memory");
	cJSON_AddStringToObject(body, "status", "ok");
	cJSON_AddStringToObject(body, "service", req->app->name);
	kit_response_header(req, "Cache-Control", "no-store");
	status = kit_respond_json(req, 200, body);
	cJSON_Delete(body);
	return status;
}

/* Whether the request carries "Authorization: Bearer <OPERATOR_TOKEN>".
 * Digests are compared, in constant time, so neither the token's length
 * nor its first differing byte shows in the time a refusal takes. */
static bool is_operator(const struct health_state *state, const struct kit_request *req)
{
	const char *authorization = kit_request_header(req, "Authorization");
	unsigned char digest[SHA256_DIGEST_LENGTH];
	const char *token;

	if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
		return false;
	token = authorization + 7;
	while (*token == ' ')
		token++;
	SHA256((const unsigned char *)token, strlen(token), digest);
	return CRYPTO_memcmp(digest, state->token_digest, sizeof(digest)) == 0;
}

/* One round of every registered check, on this thread (a check may use
 * the thread's resources: its curl handles, its Redis connection). Stores
 * the result in the cache. Returns false when out of memory. */
static bool run_checks(struct health_state *state, struct kit_request *req)
{
	const struct kit_app *app = req->app;
	cJSON *checks = cJSON_CreateObject();
	bool healthy = true, degraded = false;
	char *text;

	if (checks == NULL)
		return false;
	for (int i = 0; i < app->health_count; i++) {
		cJSON *check = cJSON_AddObjectToObject(checks, app->health[i].name);
		cJSON *status_item = cJSON_AddStringToObject(check, "status", "up");
		bool ok = app->health[i].check(req, app->health[i].arg, check);

		if (!ok) {
			cJSON_SetValuestring(status_item, "down");
			if (app->health[i].critical)
				healthy = false;
			else
				degraded = true;
		}
	}
	text = cJSON_PrintUnformatted(checks);
	cJSON_Delete(checks);
	if (text == NULL)
		return false;

	pthread_mutex_lock(&state->lock);
	free(state->checks);
	state->checks = text;
	state->healthy = healthy;
	state->degraded = degraded;
	state->checked_ns = kit_now_ns();
	kit_utc_timestamp(time(NULL), state->checked_at, sizeof(state->checked_at));
	pthread_mutex_unlock(&state->lock);
	return true;
}

/* GET /health/details: the operator's report (see the top of the file). */
static int health_details_handler(struct kit_request *req)
{
	struct health_state *state = req->route_data;
	const struct kit_app *app = req->app;
	cJSON *body, *memory, *checks;
	char timestamp[32], checked_at[32];
	char *checks_text = NULL;
	bool healthy, degraded, refresh;
	uint64_t now_ns = kit_now_ns(), checked_ns;
	int status;

	/* 1. Who asks. */
	if (!state->token_set)
		return kit_problem(req, 403, "the detailed health report is off: this process has no OPERATOR_TOKEN");
	if (!is_operator(state, req)) {
		kit_response_header(req, "WWW-Authenticate", "Bearer realm=\"operations\"");
		return kit_problem(req, 401, "the detailed health report needs the operator's token (Authorization: Bearer <OPERATOR_TOKEN>)");
	}

	/* 2. A new round of checks only when the cached one is older than
	 *    the interval and no other caller is running one. */
	pthread_mutex_lock(&state->lock);
	refresh = !state->refreshing &&
		  (state->checked_ns == 0 ||
		   now_ns - state->checked_ns >= (uint64_t)state->interval_ms * 1000000u);
	if (refresh)
		state->refreshing = true;
	pthread_mutex_unlock(&state->lock);
	if (refresh) {
		bool done = run_checks(state, req);

		pthread_mutex_lock(&state->lock);
		state->refreshing = false;
		pthread_mutex_unlock(&state->lock);
		if (!done)
			return kit_problem(req, 500, "out of memory");
	}

	/* 3. A copy of the cached round. */
	pthread_mutex_lock(&state->lock);
	if (state->checks != NULL)
		checks_text = strdup(state->checks);
	healthy = state->healthy;
	degraded = state->degraded;
	checked_ns = state->checked_ns;
	snprintf(checked_at, sizeof(checked_at), "%s", state->checked_at);
	pthread_mutex_unlock(&state->lock);
	if (checks_text == NULL) {
		if (checked_ns != 0)
			return kit_problem(req, 500, "out of memory");
		/* The very first round is still running on another request. */
		kit_response_header(req, "Retry-After", "1");
		return kit_problem(req, 503, "the first health checks are still running; retry in a second");
	}
	checks = cJSON_Parse(checks_text);
	free(checks_text);
	body = cJSON_CreateObject();
	if (checks == NULL || body == NULL) {
		cJSON_Delete(checks);
		cJSON_Delete(body);
		return kit_problem(req, 500, "out of memory");
	}

	/* 4. The report: the checks as cached, the process as it is now. */
	kit_utc_timestamp(time(NULL), timestamp, sizeof(timestamp));
	cJSON_AddStringToObject(body, "status",
				!healthy ? "unhealthy" : degraded ? "degraded" : "healthy");
	cJSON_AddStringToObject(body, "service", app->name);
	cJSON_AddNumberToObject(body, "uptime_seconds", kit_app_uptime(app));
	cJSON_AddStringToObject(body, "timestamp", timestamp);
	memory = cJSON_AddObjectToObject(body, "memory");
	cJSON_AddNumberToObject(memory, "rss_bytes", (double)resident_bytes());
	cJSON_AddNumberToObject(memory, "peak_rss_bytes", (double)peak_resident_bytes());
	cJSON_AddStringToObject(body, "checked_at", checked_at);
	cJSON_AddNumberToObject(body, "checks_age_seconds",
				(double)(kit_now_ns() - checked_ns) / 1e9);
	cJSON_AddItemToObject(body, "checks", checks);

	kit_response_header(req, "Cache-Control", "no-store");
	status = kit_respond_json(req, healthy ? 200 : 503, body);
	cJSON_Delete(body);
	return status;
}

static void collect_process_metrics(void *arg)
{
	static struct kit_metric *resident, *start_time;
	const struct kit_app *app = arg;

	if (resident == NULL) {
		resident = kit_metric_register(KIT_GAUGE, "process_resident_memory_bytes",
					       "Resident memory size in bytes.", NULL, NULL, 0);
		start_time = kit_metric_register(KIT_GAUGE, "process_start_time_seconds",
						 "Start time of the process since the Unix epoch in seconds.",
						 NULL, NULL, 0);
	}
	kit_metric_set(resident, NULL, (double)resident_bytes());
	kit_metric_set(start_time, NULL, (double)time(NULL) - kit_app_uptime(app));
}

static int metrics_handler(struct kit_request *req)
{
	size_t len = 0;
	char *text = kit_metrics_render(&len);
	int status;

	if (text == NULL)
		return kit_problem(req, 500, "out of memory rendering metrics");
	status = kit_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8",
			     text, len);
	free(text);
	return status;
}

/* The process's one detailed-report state: static, so it lives as long as
 * the process (the /health/details route points at it) and the cached
 * report stays reachable for LeakSanitizer. */
static struct health_state health_state = { .lock = PTHREAD_MUTEX_INITIALIZER };

void kit_mount_operations(struct kit_app *app)
{
	const char *token = kit_env_string("OPERATOR_TOKEN", NULL);
	struct health_state *state = &health_state;

	if (kit_env_long("HEALTH_CHECK_INTERVAL_MS", 1000, 100, 600000, &state->interval_ms) != 0)
		kit_app_fail(app, "HEALTH_CHECK_INTERVAL_MS: bad value (see above)");
	if (token != NULL) {
		if (strlen(token) < OPERATOR_TOKEN_MIN)
			kit_app_fail(app, "OPERATOR_TOKEN: %zu bytes is too short to resist guessing; use at least %d (e.g. `openssl rand -hex 32`)",
				     strlen(token), OPERATOR_TOKEN_MIN);
		SHA256((const unsigned char *)token, strlen(token), state->token_digest);
		state->token_set = true;
	}
	/* All three wait only through kit/wait.h (the checks a gateway
	 * registers do); an app with a store, whose check blocks, is kept off
	 * the event loop anyway (kit_app_run). */
	kit_route_add(app, &(struct kit_route_spec){
		.method = "GET", .pattern = "/health", .handler = health_handler,
		.access = KIT_OPERATIONS, .loop_safe = true,
	});
	kit_route_add(app, &(struct kit_route_spec){
		.method = "GET",
		.pattern = "/health/details",
		.handler = health_details_handler,
		.access = KIT_OPERATIONS,
		.data = state,
		.loop_safe = true,
	});
	kit_route_add(app, &(struct kit_route_spec){
		.method = "GET", .pattern = "/metrics", .handler = metrics_handler,
		.access = KIT_OPERATIONS, .loop_safe = true,
	});
	kit_metrics_on_render(collect_process_metrics, app);
}
