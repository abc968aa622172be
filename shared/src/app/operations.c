/*
 * operations.c - the endpoints an operator (or a load balancer, or
 * Prometheus) calls: GET /health and GET /metrics.
 *
 * /health answers 200 {"status":"healthy", ...} with uptime, memory and the
 * result of every check the process registered: 503 "unhealthy" when one
 * of its own checks fails (the store's PING), so a load balancer takes the
 * instance out; 200 "degraded" when only a report fails (a gateway's
 * upstream is down, which no other gateway instance would fix).
 *
 * /metrics renders the registry (metrics_registry.c) and adds the process's
 * own gauges, read from /proc at scrape time.
 *
 * Both routes are KIT_OPERATIONS: no token, no rate limit. In production
 * they belong on an internal port or behind the network's own ACL; the kit
 * keeps them on the public port so a workshop can curl them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "app/internal.h"
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

static int health_handler(struct kit_request *req)
{
	const struct kit_app *app = req->app;
	cJSON *body = cJSON_CreateObject();
	cJSON *memory, *checks;
	char timestamp[32];
	time_t now = time(NULL);
	struct tm tm;
	bool healthy = true, degraded = false;
	int status;

	if (body == NULL)
		return kit_problem(req, 500, "out of memory");
	gmtime_r(&now, &tm);
	strftime(timestamp, sizeof(timestamp), "%Y-%m-%dT%H:%M:%SZ", &tm);

	checks = cJSON_CreateObject();
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

	cJSON_AddStringToObject(body, "status",
				!healthy ? "unhealthy" : degraded ? "degraded" : "healthy");
	cJSON_AddStringToObject(body, "service", app->name);
	cJSON_AddNumberToObject(body, "uptime_seconds", kit_app_uptime(app));
	cJSON_AddStringToObject(body, "timestamp", timestamp);
	memory = cJSON_AddObjectToObject(body, "memory");
	cJSON_AddNumberToObject(memory, "rss_bytes", (double)resident_bytes());
	cJSON_AddNumberToObject(memory, "peak_rss_bytes", (double)peak_resident_bytes());
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

void kit_mount_operations(struct kit_app *app)
{
	/* Both wait only through kit/wait.h (the checks a gateway registers
	 * do); an app with a store (whose check blocks) is kept off the event
	 * loop anyway (kit_app_run). */
	kit_route_add(app, &(struct kit_route_spec){
		.method = "GET", .pattern = "/health", .handler = health_handler,
		.access = KIT_OPERATIONS, .loop_safe = true,
	});
	kit_route_add(app, &(struct kit_route_spec){
		.method = "GET", .pattern = "/metrics", .handler = metrics_handler,
		.access = KIT_OPERATIONS, .loop_safe = true,
	});
	kit_metrics_on_render(collect_process_metrics, app);
}
