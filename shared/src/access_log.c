/*
 * access_log.c - middleware: one JSON line per request on stdout.
 *
 * Position: second, so its finish() runs last, after every other finish
 * hook, and logs the final status.
 * Reads:    the whole request context (method, path, route, status, user,
 *           request id, timings). Writes nothing on it.
 * Config:   ACCESS_LOG=on|off (default on; off for benchmarks).
 *
 * The line is built with cJSON (the path and user agent are what a client
 * sent) and written with one write(2), so lines from different threads
 * never interleave.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "kit/config.h"
#include "kit/middleware.h"
#include "kit/request.h"

struct access_log_config {
	bool enabled; /* ACCESS_LOG */
};

static int access_log_init(struct kit_app *app, void **state)
{
	struct access_log_config *config = calloc(1, sizeof(*config));

	if (config == NULL)
		return -1;
	*state = config;
	return kit_env_bool("ACCESS_LOG", true, &config->enabled);
}

static void iso8601_now(char *out, size_t size)
{
	struct timeval now;
	struct tm tm;

	gettimeofday(&now, NULL);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)(now.tv_usec / 1000));
}

static int access_log_handle(struct kit_request *req, void *state)
{
	return KIT_NEXT;
}

static void access_log_finish(struct kit_request *req, void *state)
{
	const struct access_log_config *config = state;
	double duration_ms;
	char time_text[64];
	cJSON *line;
	char *text;

	if (!config->enabled)
		return;
	duration_ms = (double)(kit_now_ns() - req->start_ns) / 1e6;
	line = cJSON_CreateObject();
	if (line == NULL)
		return;
	iso8601_now(time_text, sizeof(time_text));
	cJSON_AddStringToObject(line, "time", time_text);
	cJSON_AddStringToObject(line, "service", kit_app_name(req->app));
	if (strcmp(req->service, kit_app_name(req->app)) != 0)
		cJSON_AddStringToObject(line, "upstream", req->service); /* gateway */
	cJSON_AddStringToObject(line, "request_id", req->request_id);
	if (req->trace_id[0] != '\0')
		cJSON_AddStringToObject(line, "trace_id", req->trace_id);
	cJSON_AddStringToObject(line, "method", req->method);
	cJSON_AddStringToObject(line, "path", req->path);
	if (req->route_pattern != NULL)
		cJSON_AddStringToObject(line, "route", req->route_pattern);
	else
		cJSON_AddNullToObject(line, "route");
	cJSON_AddNumberToObject(line, "status", req->status);
	cJSON_AddNumberToObject(line, "duration_ms",
				(double)(long long)(duration_ms * 1000) / 1000);
	cJSON_AddNumberToObject(line, "bytes_sent", (double)req->bytes_sent);
	cJSON_AddStringToObject(line, "client_ip", req->client_ip);
	if (req->user.authenticated)
		cJSON_AddStringToObject(line, "user", req->user.subject);
	else
		cJSON_AddNullToObject(line, "user");

	text = cJSON_PrintUnformatted(line);
	cJSON_Delete(line);
	if (text == NULL)
		return;
	size_t len = strlen(text);
	text[len] = '\n'; /* replaces the NUL: written by length below */
	if (write(STDOUT_FILENO, text, len + 1) < 0) {
		/* stdout gone: nothing useful to do from a worker thread */
	}
	cJSON_free(text);
}

const struct kit_middleware kit_access_log = {
	.name = "access_log",
	.init = access_log_init,
	.handle = access_log_handle,
	.finish = access_log_finish,
	.destroy = free,
};
