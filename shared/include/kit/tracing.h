/*
 * kit/tracing.h - distributed tracing in Jaeger's format.
 *
 * The tracing middleware (tracing.c) opens a server span for every request,
 * continuing the caller's trace when the request carries one
 * (uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}, or W3C
 * traceparent), starting a new one otherwise, and answers with X-Trace-ID.
 * Code that calls another service (the gateway's proxy, the url-shortener's
 * analytics client) opens a client span and sends its context on in an
 * uber-trace-id header, so gateway -> url-shortener -> analytics is one
 * trace.
 *
 * Finished spans go to a reporter thread (trace_reporter.c) through a
 * bounded queue, never on the request path; it sends them in batches as
 * Jaeger Thrift: emitBatch over UDP to an agent (binary protocol, port
 * 6832, or compact, 6831) or a Batch over HTTP to a collector
 * (POST /api/traces, port 14268). jaeger_thrift.c writes both protocols.
 *
 * Config: TRACE_SAMPLER (off | const | probabilistic; default off),
 * TRACE_SAMPLER_PARAM (probability for probabilistic, default 1),
 * TRACE_REPORTER (udp-binary | udp-compact | http; default udp-binary),
 * JAEGER_AGENT_HOST (127.0.0.1), JAEGER_AGENT_PORT (6832 binary, 6831
 * compact), JAEGER_COLLECTOR_URL (http://127.0.0.1:14268/api/traces),
 * INSTANCE_ID (the process tag "instance", default <hostname>:<port>).
 * An unsampled request still gets a trace id (X-Trace-ID) and propagates
 * its context with the sampled flag off, as Jaeger clients do.
 *
 * Threads: spans belong to the request (or the thread) that opened them;
 * the reporter is one thread behind a mutex-protected queue.
 */
#ifndef KIT_TRACING_H
#define KIT_TRACING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kit_request;

#define KIT_TRACE_HEADER_MAX 80 /* "32 hex:16 hex:16 hex:2 hex" and a NUL */

struct kit_trace_context {
	uint64_t trace_id_high;  /* 0 for 64-bit trace ids            */
	uint64_t trace_id_low;
	uint64_t span_id;
	uint64_t parent_id;      /* 0 for a root span                 */
	uint8_t flags;           /* bit 0: sampled; bit 1: debug      */
};

/* Parses an uber-trace-id value ("{trace}:{span}:{parent}:{flags}", hex,
 * trace id up to 32 digits, span ids up to 16, not all zero). Also accepts
 * the URL-encoded form ("%3A" for ':'), as Jaeger clients send in some
 * carriers. False for anything malformed. */
bool kit_trace_parse_uber(const char *value, struct kit_trace_context *out);

/* Parses a W3C traceparent ("00-{32 hex trace}-{16 hex parent}-{2 hex
 * flags}"): the parent becomes span_id of *out (the caller's span). */
bool kit_trace_parse_traceparent(const char *value, struct kit_trace_context *out);

/* Formats ctx as an uber-trace-id value into out (KIT_TRACE_HEADER_MAX). */
void kit_trace_format_uber(const struct kit_trace_context *ctx, char *out);

/* The trace id as Jaeger shows it (16 or 32 lower-case hex digits). */
void kit_trace_format_id(const struct kit_trace_context *ctx, char out[33]);

struct kit_span;

/* The request's server span, or NULL when tracing is off for this process
 * (the middleware is not in the chain). Its context is valid even when the
 * trace is not sampled. */
struct kit_span *kit_request_span(struct kit_request *req);

/* Opens a client span, child of the request's server span, for a call to
 * peer_service, tagged span.kind=client, http.method, http.url,
 * peer.service and component; writes the uber-trace-id value to send in
 * header_out (KIT_TRACE_HEADER_MAX). Returns NULL (and writes "") when the
 * request has no span. */
struct kit_span *kit_trace_client_start(struct kit_request *req,
					const char *operation,
					const char *peer_service,
					const char *method, const char *url,
					char *header_out);

/* The same from a context rather than a request: for a background thread
 * that carries a request's context with an event (analytics client). */
struct kit_span *kit_trace_client_start_from(const struct kit_trace_context *parent,
					     const char *operation,
					     const char *peer_service,
					     const char *method, const char *url,
					     char *header_out);

/* Tags; a NULL span is ignored, so callers need no checks. */
void kit_span_tag_string(struct kit_span *span, const char *key, const char *value);
void kit_span_tag_int(struct kit_span *span, const char *key, long long value);
void kit_span_tag_bool(struct kit_span *span, const char *key, bool value);
/* A log entry (event=error, message=...), as the guide's span.log(). */
void kit_span_log_error(struct kit_span *span, const char *message);

/* The span's context (for propagation); false for a NULL span. */
bool kit_span_context(const struct kit_span *span, struct kit_trace_context *out);

/* Sets http.status_code (and error=true with a log entry when status >=
 * 500 or the call failed: status 0), ends the span and hands it to the
 * reporter when sampled; frees it. NULL is ignored. */
void kit_trace_client_finish(struct kit_span *span, int status);

#endif
