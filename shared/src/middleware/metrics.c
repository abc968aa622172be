/*
 * metrics.c - middleware: the RED metrics of every request, in Prometheus
 * names the guide uses.
 *
 * Position: third, after request id and access log, so its finish() sees
 * the final status of requests that auth or rate limiting refused.
 * Reads:    method, route pattern, status, start time, req->service.
 * Writes:   http_requests_total{method,route,status_code,service},
 *           http_request_duration_seconds{method,route,service} (buckets
 *           from 100 µs: most requests here take well under a millisecond),
 *           http_requests_in_flight{service} (this process's name).
 *
 * The route label is the matched pattern ("/expand/:code"), or "unmatched"
 * for 404s: raw paths would give every short code its own series, and a
 * scanner could grow the registry without end.
 */
#include <stdio.h>
#include <string.h>

#include "kit/metrics.h"
#include "kit/middleware.h"
#include "kit/request.h"

struct request_metrics {
	struct kit_metric *requests;
	struct kit_metric *duration;
	struct kit_metric *in_flight;
};

static struct request_metrics metrics;

static int metrics_init(struct kit_app *app, void **state)
{
	metrics.requests = kit_metric_register(
		KIT_COUNTER, "http_requests_total", "Total number of HTTP requests.",
		(const char *const[]){ "method", "route", "status_code", "service", NULL },
		NULL, 0);
	metrics.duration = kit_metric_register(
		KIT_HISTOGRAM, "http_request_duration_seconds",
		"Duration of HTTP requests in seconds.",
		(const char *const[]){ "method", "route", "service", NULL }, NULL, 0);
	metrics.in_flight = kit_metric_register(
		KIT_GAUGE, "http_requests_in_flight",
		"Requests being served right now.",
		(const char *const[]){ "service", NULL }, NULL, 0);
	if (metrics.requests == NULL || metrics.duration == NULL ||
	    metrics.in_flight == NULL)
		return -1;
	/* Show the gauge at 0 from the first scrape on. */
	kit_metric_add(metrics.in_flight, (const char *const[]){ kit_app_name(app) }, 0);
	return 0;
}

/* Methods outside this list are counted as OTHER: the label stays bounded
 * whatever a client puts in its request line. */
static const char *method_label(const char *method)
{
	static const char *const known[] = {
		"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
	};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strcmp(method, known[i]) == 0)
			return known[i];
	}
	return "OTHER";
}

static int metrics_handle(struct kit_request *req, void *state)
{
	kit_metric_add(metrics.in_flight,
		       (const char *const[]){ kit_app_name(req->app) }, 1);
	return KIT_NEXT;
}

static void metrics_finish(struct kit_request *req, void *state)
{
	const char *method = method_label(req->method);
	const char *route = req->route_pattern != NULL ? req->route_pattern : "unmatched";
	double seconds = (double)(kit_now_ns() - req->start_ns) / 1e9;
	char status[8];

	snprintf(status, sizeof(status), "%d", req->status);
	kit_metric_add(metrics.in_flight,
		       (const char *const[]){ kit_app_name(req->app) }, -1);
	kit_metric_add(metrics.requests,
		       (const char *const[]){ method, route, status, req->service }, 1);
	kit_metric_observe(metrics.duration,
			   (const char *const[]){ method, route, req->service }, seconds);
}

const struct kit_middleware kit_metrics = {
	.name = "metrics",
	.loop_safe = true,
	.init = metrics_init,
	.handle = metrics_handle,
	.finish = metrics_finish,
};
