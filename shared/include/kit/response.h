/*
 * kit/response.h - every response leaves through kit_respond(): status line,
 * headers and body built in one buffer and written with one send, because on
 * small responses two sends (mg_send_http_ok + mg_write) cost about three
 * times the CPU (see docs/performance.md).
 *
 * Middleware add headers to the response before the handler answers with
 * kit_response_header() (CORS, rate-limit, request id); kit_respond() writes
 * them with its own.
 *
 * Errors to clients go through kit_problem(): RFC 9457
 * application/problem+json built with cJSON, never by formatting user input
 * into JSON text.
 */
#ifndef KIT_RESPONSE_H
#define KIT_RESPONSE_H

#include <stddef.h>

struct kit_request;
struct cJSON;

/* Adds "name: value" to the response. A value with a control character, or
 * one that no longer fits the header buffer, is dropped (and says so on
 * stderr): a header is never split or injected. */
void kit_response_header(struct kit_request *req, const char *name,
			 const char *value);
void kit_response_headerf(struct kit_request *req, const char *name,
			  const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sends status, the added headers, Content-Type (none when content_type is
 * NULL, for an empty body) and Content-Length, and the body (omitted for
 * HEAD; never sent with 204/304), in one write. Returns status. A second call for
 * the same request is a bug: it is ignored and logged. */
int kit_respond(struct kit_request *req, int status, const char *content_type,
		const void *body, size_t len);

/* Serializes json (not freed) and sends it as application/json. */
int kit_respond_json(struct kit_request *req, int status,
		     const struct cJSON *json);

/* 204 No Content. */
int kit_respond_empty(struct kit_request *req, int status);

/* The reason phrase for status ("Not Found"), "Unknown" for others. */
const char *kit_status_text(int status);

/* Answers with an RFC 9457 problem:
 *   {"type": "/problems/<slug>", "title": <reason phrase>, "status": status,
 *    "detail": <formatted>, "request_id": ..., "instance": <path>}
 * The type slug comes from the status (docs/errors.md lists them). Returns
 * status so callers can write `return kit_problem(req, 400, "...");`. */
int kit_problem(struct kit_request *req, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The same with extra members merged into the object (extra is consumed:
 * ownership passes to kit_problem_ext, which frees it). */
int kit_problem_ext(struct kit_request *req, int status, struct cJSON *extra,
		    const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A store call failed: logs kit_store_error() with the service and the
 * request id on stderr, and answers 503 "storage unavailable" (the client
 * is not told the internal reason). Returns 503. */
struct kit_store;
int kit_problem_store(struct kit_request *req, const struct kit_store *store);

#endif
