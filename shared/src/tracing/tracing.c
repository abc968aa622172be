/*
 * tracing.c - middleware: a Jaeger server span for every request, and the
 * span functions of kit/tracing.h (client spans for calls to other
 * services, tags, propagation headers).
 *
 * Position: right after the request id and before the access log, so the
 * access log's finish() (which runs after ours) still sees req->trace_id,
 * and the span covers every later middleware and the handler.
 * Reads:    the uber-trace-id request header (else W3C traceparent); the
 *           method, path and matched route pattern.
 * Writes:   req->span (the server span), req->trace_id and the X-Trace-ID
 *           response header, on every request, sampled or not.
 * Config:   TRACE_SAMPLER off | const | probabilistic (off), TRACE_SAMPLER_
 *           PARAM (1; const takes 0 or 1, probabilistic 0..1), INSTANCE_ID,
 *           and the reporter's variables (trace_reporter.h).
 *
 * Sampling, as Jaeger clients do it: a caller's decision (the sampled bit
 * of its flags) is kept for the whole trace; the sampler decides only for
 * traces that start here. "off" means this process reports nothing (no
 * reporter thread, no socket) but still answers X-Trace-ID and passes the
 * caller's context on unchanged. An unsampled span costs an id and one
 * small allocation: tags are not even stored.
 *
 * Errors: the guide marks a span error=true for status >= 400. We do it
 * for >= 500 only: a 404 or a 401 is the client's mistake, and the service
 * did its job; marking those would fill Jaeger's error view with noise and
 * hide the 5xx that need a look. (The status code tag shows the 4xx.)
 *
 * Threads: the configuration is written by init() on main()'s thread
 * before any worker starts, then read-only. A span belongs to the thread
 * that opened it until it is finished and handed to the reporter. Ids come
 * from kit_random_u64() (a per-thread xorshift128+; never 0).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "tracing/jaeger_thrift.h"
#include "kit/config.h"
#include "kit/middleware.h"
#include "kit/noncrypto.h"
#include "kit/request.h"
#include "kit/response.h"
#include "kit/text.h"
#include "kit/tracing.h"
#include "tracing/trace_reporter.h"

/* The process tag "kit.version" (the guide tags 'api-gateway.version'). */
#ifndef KIT_VERSION
#define KIT_VERSION "1.0.0"
#endif
#define TRACE_COMPONENT "api-gateway-kit"

enum trace_sampler {
	TRACE_SAMPLER_OFF,           /* report nothing                        */
	TRACE_SAMPLER_CONST,         /* every new trace, or none (param 1/0)  */
	TRACE_SAMPLER_PROBABILISTIC, /* a share of the new traces (param)     */
};

struct tracing_config {
	enum trace_sampler sampler;  /* TRACE_SAMPLER                         */
	double sampler_param;        /* TRACE_SAMPLER_PARAM                   */
	struct trace_reporter_config reporter; /* TRACE_REPORTER, JAEGER_*    */
	bool curl_initialized;       /* ours to curl_global_cleanup()         */
	bool reporter_started;       /* ours to trace_reporter_stop()         */
};

/* A span: its context always; what Jaeger will get only when recorded. */
struct kit_span {
	struct kit_trace_context context;
	uint64_t start_ns;           /* monotonic: the duration is measured on it */
	struct jaeger_span *record;  /* NULL when not sampled or not reporting */
};

/* ---- ids and clocks ---- */

/* Microseconds since the epoch: Jaeger's startTime and log timestamps. */
static int64_t trace_now_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

/* ---- headers ---- */

/* text[0..len) as 1..16 hex digits into *out. */
static bool parse_hex64(const char *text, size_t len, uint64_t *out)
{
	uint64_t value = 0;

	if (len == 0 || len > 16)
		return false;
	for (size_t i = 0; i < len; i++) {
		int digit = kit_hex_digit(text[i]);

		if (digit < 0)
			return false;
		value = (value << 4) | (uint64_t)digit;
	}
	*out = value;
	return true;
}

/* A trace id of 1..32 hex digits: the last 16 are the low half. */
static bool parse_trace_id(const char *text, size_t len, uint64_t *high, uint64_t *low)
{
	if (len == 0 || len > 32)
		return false;
	*high = 0;
	if (len > 16) {
		if (!parse_hex64(text, len - 16, high))
			return false;
		text += len - 16;
		len = 16;
	}
	return parse_hex64(text, len, low);
}

bool kit_trace_parse_uber(const char *value, struct kit_trace_context *out)
{
	char text[KIT_TRACE_HEADER_MAX];
	const char *field[4];
	size_t field_len[4];
	size_t len = 0, fields = 0;
	struct kit_trace_context ctx = { 0 };
	uint64_t flags;

	if (value == NULL)
		return false;
	/* 1. Undo the URL encoding of ':' ("%3A"); anything else encoded, or
	 *    a value longer than the longest valid one, is refused. */
	for (const char *p = value; *p != '\0'; p++) {
		char c = *p;

		if (c == '%') {
			if (p[1] != '3' || (p[2] != 'A' && p[2] != 'a'))
				return false;
			c = ':';
			p += 2;
		}
		if (len + 1 == sizeof(text))
			return false;
		text[len++] = c;
	}
	text[len] = '\0';

	/* 2. Exactly four fields: trace:span:parent:flags. */
	field[0] = text;
	for (size_t i = 0; i <= len; i++) {
		if (text[i] != ':' && text[i] != '\0')
			continue;
		if (fields == 4)
			return false;
		field_len[fields] = (size_t)(&text[i] - field[fields]);
		fields++;
		if (fields < 4)
			field[fields] = &text[i + 1];
	}
	if (fields != 4)
		return false;

	/* 3. Hex of the right lengths; a trace and a span must not be 0. */
	if (!parse_trace_id(field[0], field_len[0], &ctx.trace_id_high, &ctx.trace_id_low) ||
	    !parse_hex64(field[1], field_len[1], &ctx.span_id) ||
	    !parse_hex64(field[2], field_len[2], &ctx.parent_id) ||
	    field_len[3] > 2 || !parse_hex64(field[3], field_len[3], &flags))
		return false;
	if ((ctx.trace_id_high == 0 && ctx.trace_id_low == 0) || ctx.span_id == 0)
		return false;
	ctx.flags = (uint8_t)flags;
	*out = ctx;
	return true;
}

/* len lower-case hex digits (W3C allows no upper case). */
static bool is_lower_hex(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (!((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f')))
			return false;
	}
	return true;
}

bool kit_trace_parse_traceparent(const char *value, struct kit_trace_context *out)
{
	/* "vv-" 32 "-" 16 "-" ff: 55 characters; a later version may add
	 * "-..." fields after them, version 00 may not. */
	enum { LENGTH = 55 };
	struct kit_trace_context ctx = { 0 };
	uint64_t flags;
	size_t len;

	if (value == NULL)
		return false;
	len = strnlen(value, 512);
	if (len < LENGTH || len == 512)
		return false;
	if (!is_lower_hex(value, 2) || strncmp(value, "ff", 2) == 0 ||
	    (strncmp(value, "00", 2) == 0 && len != LENGTH) ||
	    (len > LENGTH && value[LENGTH] != '-'))
		return false;
	if (value[2] != '-' || value[35] != '-' || value[52] != '-' ||
	    !is_lower_hex(value + 3, 32) || !is_lower_hex(value + 36, 16) ||
	    !is_lower_hex(value + 53, 2))
		return false;
	if (!parse_trace_id(value + 3, 32, &ctx.trace_id_high, &ctx.trace_id_low) ||
	    !parse_hex64(value + 36, 16, &ctx.span_id) ||
	    !parse_hex64(value + 53, 2, &flags))
		return false;
	if ((ctx.trace_id_high == 0 && ctx.trace_id_low == 0) || ctx.span_id == 0)
		return false;
	ctx.flags = (uint8_t)(flags & 0x01); /* W3C defines "sampled" only */
	*out = ctx;
	return true;
}

void kit_trace_format_id(const struct kit_trace_context *ctx, char out[33])
{
	if (ctx->trace_id_high != 0)
		snprintf(out, 33, "%016llx%016llx", (unsigned long long)ctx->trace_id_high,
			 (unsigned long long)ctx->trace_id_low);
	else
		snprintf(out, 33, "%016llx", (unsigned long long)ctx->trace_id_low);
}

/* As Jaeger's Go client writes it: ids zero-padded, flags plain hex. */
void kit_trace_format_uber(const struct kit_trace_context *ctx, char *out)
{
	char trace_id[33];

	kit_trace_format_id(ctx, trace_id);
	snprintf(out, KIT_TRACE_HEADER_MAX, "%s:%016llx:%016llx:%x", trace_id,
		 (unsigned long long)ctx->span_id, (unsigned long long)ctx->parent_id,
		 (unsigned)ctx->flags);
}

/* ---- spans ---- */

/* Opens a span with context, started at start_ns (monotonic) which was
 * start_us (wall clock). It is recorded when the trace is sampled and this
 * process reports. NULL when out of memory. */
static struct kit_span *span_open(const struct kit_trace_context *context,
				  const char *operation, uint64_t start_ns,
				  int64_t start_us)
{
	struct kit_span *span = calloc(1, sizeof(*span));

	if (span == NULL)
		return NULL;
	span->context = *context;
	span->start_ns = start_ns;
	if ((context->flags & 0x01) == 0 || !trace_reporter_running())
		return span;
	span->record = jaeger_span_new(operation);
	if (span->record == NULL)
		return span; /* out of memory: the trace goes on, unrecorded */
	span->record->trace_id_high = context->trace_id_high;
	span->record->trace_id_low = context->trace_id_low;
	span->record->span_id = context->span_id;
	span->record->parent_span_id = context->parent_id;
	span->record->flags = context->flags;
	span->record->start_time = start_us;
	return span;
}

/* Status tags, the end time, the hand-over to the reporter; frees span. */
static void span_finish(struct kit_span *span, int status)
{
	char message[32];

	if (span == NULL)
		return;
	if (span->record != NULL) {
		if (status > 0)
			jaeger_span_tag_long(span->record, "http.status_code", status);
		if (status >= 500 || status <= 0) {
			jaeger_span_tag_bool(span->record, "error", true);
			if (status > 0)
				snprintf(message, sizeof(message), "HTTP %d", status);
			else
				snprintf(message, sizeof(message), "no response");
			jaeger_span_log(span->record, trace_now_us(), "error", message);
		}
		span->record->duration = (int64_t)((kit_now_ns() - span->start_ns) / 1000u);
		trace_reporter_submit(span->record); /* the reporter's now */
	}
	free(span);
}

struct kit_span *kit_request_span(struct kit_request *req)
{
	return req->span;
}

void kit_span_tag_string(struct kit_span *span, const char *key, const char *value)
{
	if (span != NULL && span->record != NULL && value != NULL)
		jaeger_span_tag_string(span->record, key, value);
}

void kit_span_tag_int(struct kit_span *span, const char *key, long long value)
{
	if (span != NULL && span->record != NULL)
		jaeger_span_tag_long(span->record, key, value);
}

void kit_span_tag_bool(struct kit_span *span, const char *key, bool value)
{
	if (span != NULL && span->record != NULL)
		jaeger_span_tag_bool(span->record, key, value);
}

void kit_span_log_error(struct kit_span *span, const char *message)
{
	if (span != NULL && span->record != NULL)
		jaeger_span_log(span->record, trace_now_us(), "error", message);
}

bool kit_span_context(const struct kit_span *span, struct kit_trace_context *out)
{
	if (span == NULL)
		return false;
	*out = span->context;
	return true;
}

struct kit_span *kit_trace_client_start_from(const struct kit_trace_context *parent,
					     const char *operation,
					     const char *peer_service,
					     const char *method, const char *url,
					     char *header_out)
{
	struct kit_trace_context context;
	struct kit_span *span;

	header_out[0] = '\0';
	if (parent == NULL || (parent->trace_id_high == 0 && parent->trace_id_low == 0))
		return NULL;
	context = *parent;
	context.parent_id = parent->span_id;
	context.span_id = kit_random_u64();
	span = span_open(&context, operation, kit_now_ns(), trace_now_us());
	if (span == NULL)
		return NULL;
	kit_span_tag_string(span, "span.kind", "client");
	kit_span_tag_string(span, "component", TRACE_COMPONENT);
	kit_span_tag_string(span, "peer.service", peer_service);
	kit_span_tag_string(span, "http.method", method);
	kit_span_tag_string(span, "http.url", url);
	kit_trace_format_uber(&context, header_out);
	return span;
}

struct kit_span *kit_trace_client_start(struct kit_request *req,
					const char *operation,
					const char *peer_service,
					const char *method, const char *url,
					char *header_out)
{
	if (req->span == NULL) {
		header_out[0] = '\0';
		return NULL;
	}
	return kit_trace_client_start_from(&req->span->context, operation,
					   peer_service, method, url, header_out);
}

void kit_trace_client_finish(struct kit_span *span, int status)
{
	span_finish(span, status);
}

/* ---- the middleware ---- */

static const char *sampler_name(enum trace_sampler sampler)
{
	switch (sampler) {
	case TRACE_SAMPLER_OFF:           return "off";
	case TRACE_SAMPLER_CONST:         return "const";
	case TRACE_SAMPLER_PROBABILISTIC: return "probabilistic";
	}
	return "?";
}

/* TRACE_SAMPLER and TRACE_SAMPLER_PARAM. Returns 0, or -1 after printing
 * the variable and what is wrong. */
static int read_sampler(struct tracing_config *config)
{
	const char *name = kit_env_string("TRACE_SAMPLER", "off");
	const char *param = kit_env_string("TRACE_SAMPLER_PARAM", NULL);
	char *end = NULL;

	if (strcmp(name, "off") == 0) {
		config->sampler = TRACE_SAMPLER_OFF;
	} else if (strcmp(name, "const") == 0) {
		config->sampler = TRACE_SAMPLER_CONST;
	} else if (strcmp(name, "probabilistic") == 0) {
		config->sampler = TRACE_SAMPLER_PROBABILISTIC;
	} else {
		fprintf(stderr, "TRACE_SAMPLER: \"%s\" is not one of off, const, probabilistic\n",
			name);
		return -1;
	}
	config->sampler_param = 1;
	if (param == NULL)
		return 0;
	config->sampler_param = strtod(param, &end);
	if (end == param || *end != '\0' || !isfinite(config->sampler_param) ||
	    config->sampler_param < 0 || config->sampler_param > 1) {
		fprintf(stderr, "TRACE_SAMPLER_PARAM: \"%s\" is not a number from 0 to 1\n",
			param);
		return -1;
	}
	if (config->sampler == TRACE_SAMPLER_CONST &&
	    config->sampler_param != 0 && config->sampler_param != 1) {
		fprintf(stderr, "TRACE_SAMPLER_PARAM: \"%s\": the const sampler takes 1 (every trace) or 0 (none)\n",
			param);
		return -1;
	}
	return 0;
}

/* The process Jaeger shows: the app's name, tagged with which copy
 * (INSTANCE_ID, else <hostname>:<port>), the host and the kit's version. */
static struct jaeger_process *tracing_process(struct kit_app *app)
{
	struct jaeger_process *process = jaeger_process_new(kit_app_name(app));
	char hostname[256];
	char instance[320];

	if (process == NULL)
		return NULL;
	if (gethostname(hostname, sizeof(hostname)) != 0)
		snprintf(hostname, sizeof(hostname), "unknown");
	hostname[sizeof(hostname) - 1] = '\0';
	snprintf(instance, sizeof(instance), "%s",
		 kit_env_string("INSTANCE_ID", ""));
	if (instance[0] == '\0')
		snprintf(instance, sizeof(instance), "%s:%d", hostname, kit_app_port(app));
	if (jaeger_process_tag(process, "instance", instance) != 0 ||
	    jaeger_process_tag(process, "hostname", hostname) != 0 ||
	    jaeger_process_tag(process, "kit.version", KIT_VERSION) != 0) {
		jaeger_process_free(process);
		return NULL;
	}
	return process;
}

static void tracing_destroy(void *state)
{
	struct tracing_config *config = state;

	if (config == NULL)
		return;
	if (config->reporter_started)
		trace_reporter_stop(); /* sends what is still queued */
	if (config->curl_initialized)
		curl_global_cleanup();
	free(config);
}

/*
 * Runs on main()'s thread before the server starts: reads the
 * configuration (a bad value fails start-up even when tracing is off, so a
 * typo is found before the day it matters), and unless TRACE_SAMPLER=off
 * starts the reporter. For TRACE_REPORTER=http it calls curl_global_init()
 * here, because that is not thread-safe and the reporter thread then uses
 * libcurl.
 */
static int tracing_init(struct kit_app *app, void **state)
{
	struct tracing_config *config = calloc(1, sizeof(*config));
	struct jaeger_process *process;
	CURLcode code;

	if (config == NULL)
		return -1;
	*state = config;
	if (read_sampler(config) != 0 ||
	    trace_reporter_config_from_env(&config->reporter) != 0)
		return -1;
	if (config->sampler == TRACE_SAMPLER_OFF)
		return 0;

	if (config->reporter.kind == TRACE_REPORTER_HTTP) {
		code = curl_global_init(CURL_GLOBAL_DEFAULT);
		if (code != CURLE_OK) {
			fprintf(stderr, "tracing: curl_global_init: %s\n", curl_easy_strerror(code));
			return -1;
		}
		config->curl_initialized = true;
	}
	process = tracing_process(app);
	if (process == NULL) {
		fprintf(stderr, "tracing: out of memory\n");
		return -1;
	}
	if (trace_reporter_start(&config->reporter, process) != 0)
		return -1;
	config->reporter_started = true;
	if (config->reporter.kind == TRACE_REPORTER_HTTP)
		fprintf(stderr, "%s: tracing: sampler %s %g, reporting to %s\n",
			kit_app_name(app), sampler_name(config->sampler),
			config->sampler_param, config->reporter.collector_url);
	else
		fprintf(stderr, "%s: tracing: sampler %s %g, reporting to %s:%ld (%s)\n",
			kit_app_name(app), sampler_name(config->sampler),
			config->sampler_param, config->reporter.agent_host,
			config->reporter.agent_port,
			config->reporter.kind == TRACE_REPORTER_UDP_COMPACT
				? "udp-compact" : "udp-binary");
	return 0;
}

/* The sampler's decision for a trace that starts here. probabilistic
 * decides on the trace id, as Jaeger's sampler does: every process that
 * sees the id would decide the same. */
static bool sample_new_trace(const struct tracing_config *config, uint64_t trace_id_low)
{
	switch (config->sampler) {
	case TRACE_SAMPLER_OFF:
		return false;
	case TRACE_SAMPLER_CONST:
		return config->sampler_param != 0;
	case TRACE_SAMPLER_PROBABILISTIC:
		/* The id's top 53 bits as a fraction in [0, 1). */
		return (double)(trace_id_low >> 11) * 0x1p-53 < config->sampler_param;
	}
	return false;
}

static int tracing_handle(struct kit_request *req, void *state)
{
	const struct tracing_config *config = state;
	struct kit_trace_context caller, context = { 0 };
	bool continued;
	char operation[160];

	/* 1. The caller's trace (uber-trace-id first: the kit's own
	 *    format), or a new one that the sampler decides on. A malformed
	 *    header is ignored: the request starts a new trace. */
	continued = kit_trace_parse_uber(kit_request_header(req, "uber-trace-id"), &caller) ||
		    kit_trace_parse_traceparent(kit_request_header(req, "traceparent"), &caller);
	if (continued) {
		context.trace_id_high = caller.trace_id_high;
		context.trace_id_low = caller.trace_id_low;
		context.parent_id = caller.span_id;
		context.flags = caller.flags;
	} else {
		context.trace_id_low = kit_random_u64();
		context.flags = sample_new_trace(config, context.trace_id_low) ? 0x01 : 0;
	}
	context.span_id = kit_random_u64();

	/* 2. The id on the request (access log) and on the response. */
	kit_trace_format_id(&context, req->trace_id);
	kit_response_header(req, "X-Trace-ID", req->trace_id);

	/* 3. The server span, named by the route pattern, not the path: a
	 *    span name per short code would make Jaeger's list useless. */
	snprintf(operation, sizeof(operation), "%s %s", req->method,
		 req->route_pattern != NULL ? req->route_pattern : "unmatched");
	req->span = span_open(&context, operation, req->start_ns,
			      trace_now_us() - (int64_t)((kit_now_ns() - req->start_ns) / 1000u));
	kit_span_tag_string(req->span, "span.kind", "server");
	kit_span_tag_string(req->span, "component", TRACE_COMPONENT);
	kit_span_tag_string(req->span, "http.method", req->method);
	kit_span_tag_string(req->span, "http.url", req->path);
	if (!continued) { /* Jaeger clients tag the root with the decision */
		kit_span_tag_string(req->span, "sampler.type", sampler_name(config->sampler));
		if (req->span != NULL && req->span->record != NULL)
			jaeger_span_tag_double(req->span->record, "sampler.param",
					       config->sampler_param);
	}
	return KIT_NEXT;
}

static void tracing_finish(struct kit_request *req, void *state)
{
	span_finish(req->span, req->status);
	req->span = NULL;
}

const struct kit_middleware kit_tracing = {
	.name = "tracing",
	.loop_safe = true,
	.init = tracing_init,
	.handle = tracing_handle,
	.finish = tracing_finish,
	.destroy = tracing_destroy,
};
