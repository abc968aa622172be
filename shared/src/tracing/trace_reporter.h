/*
 * trace_reporter.h - the thread that sends finished spans to Jaeger
 * (internal to the library; tracing.c is its only user).
 *
 * One reporter per process. tracing.c's init() reads its configuration and
 * starts it on main()'s thread; request threads (and the url-shortener's
 * analytics sender) hand it finished spans, which it queues without
 * blocking on the network; its own thread sends them in batches: emitBatch
 * over UDP (binary or compact Thrift) or a Batch over HTTP. tracing.c's
 * destroy() stops it after the server has stopped, sending what is left.
 *
 * Configuration (the environment, read once):
 *   TRACE_REPORTER        udp-binary | udp-compact | http (udp-binary)
 *   JAEGER_AGENT_HOST     the agent's host name or address (127.0.0.1)
 *   JAEGER_AGENT_PORT     6832 for udp-binary, 6831 for udp-compact
 *   JAEGER_COLLECTOR_URL  http://127.0.0.1:14268/api/traces (http only)
 */
#ifndef KIT_TRACE_REPORTER_H
#define KIT_TRACE_REPORTER_H

#include <stdbool.h>

#include "tracing/jaeger_thrift.h"

enum trace_reporter_kind {
	TRACE_REPORTER_UDP_BINARY,
	TRACE_REPORTER_UDP_COMPACT,
	TRACE_REPORTER_HTTP,
};

struct trace_reporter_config {
	enum trace_reporter_kind kind; /* TRACE_REPORTER                      */
	char agent_host[256];          /* JAEGER_AGENT_HOST                   */
	long agent_port;               /* JAEGER_AGENT_PORT                   */
	char collector_url[512];       /* JAEGER_COLLECTOR_URL                */
};

/* Reads the variables above into *config. Returns 0, or -1 after printing
 * "<VARIABLE>: <what is wrong>" on stderr. */
int trace_reporter_config_from_env(struct trace_reporter_config *config);

/* Registers the kit_trace_* metrics and starts the thread. process
 * becomes the reporter's (freed by trace_reporter_stop, or here on
 * failure). For TRACE_REPORTER=http, curl_global_init() must have run.
 * Returns 0, or -1 after printing why. Call from main()'s thread before
 * the server starts. */
int trace_reporter_start(const struct trace_reporter_config *config,
			 struct jaeger_process *process);

/* True between a successful start and stop: spans are worth recording. */
bool trace_reporter_running(void);

/* Queues a finished span, taking it: the reporter frees it once sent. When
 * the queue is full (or the reporter is not running) the span is freed at
 * once and counted in kit_trace_spans_dropped_total. Never blocks on I/O. */
void trace_reporter_submit(struct jaeger_span *span);

/* Sends what is queued (at most about a second more), stops the thread
 * and frees the reporter. Harmless when it never started. */
void trace_reporter_stop(void);

#endif
