/*
 * access_log.c - middleware: one JSON line per request on stdout.
 *
 * Position: second, so its finish() runs last, after every other finish
 * hook, and logs the final status.
 * Reads:    the whole request context (method, path, route, status, user,
 *           request id, timings). Writes nothing on it.
 * Config:   ACCESS_LOG=on|off (default on; bench/run.sh keeps it on).
 *
 * The line is JSON escaped by hand here rather than built with cJSON: a
 * tree of a dozen nodes, each malloc'ed, and cJSON's number printing (a
 * sprintf and an sscanf per number) cost about 5% of the gateway's CPU on
 * every request (docs/performance.md). The path is what a client sent, so
 * every string goes through put_string(), which escapes what JSON requires.
 * The line is written whole (kit_write_stdout: on an event-loop thread,
 * with the other lines of the loop's round in one write(2)), so lines from
 * different threads never interleave.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "kit/config.h"
#include "kit/wait.h"
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

/* The line being built: on the stack, moved to the heap when a long path
 * needs more. ok turns false when memory runs out; the line is then not
 * written at all rather than written cut. */
struct line {
	char *text;
	size_t len, size;
	bool ok;
	char stack[1024];
};

static void put(struct line *line, const char *bytes, size_t n)
{
	if (!line->ok)
		return;
	if (line->len + n + 1 > line->size) {
		size_t size = (line->len + n + 1) * 2;
		char *bigger = line->text == line->stack ? malloc(size)
							  : realloc(line->text, size);

		if (bigger == NULL) {
			line->ok = false;
			return;
		}
		if (line->text == line->stack)
			memcpy(bigger, line->stack, line->len);
		line->text = bigger;
		line->size = size;
	}
	memcpy(line->text + line->len, bytes, n);
	line->len += n;
}

static void putf(struct line *line, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void putf(struct line *line, const char *fmt, ...)
{
	char text[64];
	va_list args;
	int n;

	va_start(args, fmt);
	n = vsnprintf(text, sizeof(text), fmt, args);
	va_end(args);
	if (n > 0 && (size_t)n < sizeof(text))
		put(line, text, (size_t)n);
}

/* value as a JSON string, or null when value is NULL: quote, backslash and
 * the control characters escaped (RFC 8259, 7); other bytes, UTF-8
 * included, as they are. */
static void put_string(struct line *line, const char *value)
{
	static const char hex[] = "0123456789abcdef";
	const char *run;

	if (value == NULL) {
		put(line, "null", 4);
		return;
	}
	put(line, "\"", 1);
	for (run = value; *value != '\0'; value++) {
		unsigned char c = (unsigned char)*value;
		char escape[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(line, run, (size_t)(value - run));
		run = value + 1;
		if (c == '"' || c == '\\') {
			escape[1] = (char)c;
			put(line, escape, 2);
		} else {
			put(line, escape, sizeof(escape));
		}
	}
	put(line, run, (size_t)(value - run));
	put(line, "\"", 1);
}

/* ,"name": */
static void put_name(struct line *line, const char *name)
{
	put(line, ",\"", 2);
	put(line, name, strlen(name));
	put(line, "\":", 2);
}

static int access_log_handle(struct kit_request *req, void *state)
{
	return KIT_NEXT;
}

static void access_log_finish(struct kit_request *req, void *state)
{
	const struct access_log_config *config = state;
	struct line line = { .ok = true };
	unsigned long long duration_us;
	struct timeval now;
	struct tm tm;

	if (!config->enabled)
		return;
	duration_us = (kit_now_ns() - req->start_ns) / 1000;
	line.text = line.stack;
	line.size = sizeof(line.stack);

	gettimeofday(&now, NULL);
	gmtime_r(&now.tv_sec, &tm);
	putf(&line, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
	     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	     tm.tm_sec, (int)(now.tv_usec / 1000));
	put_name(&line, "service");
	put_string(&line, kit_app_name(req->app));
	if (strcmp(req->service, kit_app_name(req->app)) != 0) {
		put_name(&line, "upstream"); /* a gateway's route */
		put_string(&line, req->service);
	}
	put_name(&line, "request_id");
	put_string(&line, req->request_id);
	if (req->trace_id[0] != '\0') {
		put_name(&line, "trace_id");
		put_string(&line, req->trace_id);
	}
	put_name(&line, "method");
	put_string(&line, req->method);
	put_name(&line, "path");
	put_string(&line, req->path);
	put_name(&line, "route");
	put_string(&line, req->route_pattern);
	put_name(&line, "status");
	putf(&line, "%d", req->status);
	put_name(&line, "duration_ms");
	putf(&line, "%llu.%03llu", duration_us / 1000, duration_us % 1000);
	put_name(&line, "bytes_sent");
	putf(&line, "%zu", req->bytes_sent);
	put_name(&line, "client_ip");
	put_string(&line, req->client_ip);
	put_name(&line, "user");
	put_string(&line, req->user.authenticated ? req->user.subject : NULL);
	put(&line, "}\n", 2);

	if (line.ok)
		kit_write_stdout(line.text, line.len);
	if (line.text != line.stack)
		free(line.text);
}

const struct kit_middleware kit_access_log = {
	.name = "access_log",
	.loop_safe = true,
	.init = access_log_init,
	.handle = access_log_handle,
	.finish = access_log_finish,
	.destroy = free,
};
