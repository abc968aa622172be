/*
 * tests/fuzz/fake_request.h - one request through a real kit_app, with no
 * socket: what the service and JWT fuzz targets drive handlers with.
 *
 * fuzz_serve() does what a server core does for a request that has fully
 * arrived: parse the head with kit_http_parse_head(), normalize the path,
 * and call the app's serve entry (server/core.h), with a transport of its
 * own: read_body hands over the fuzzed body, send captures the response
 * instead of writing it to a socket. The thread is marked as a kit thread
 * that waits by blocking (one kit_thread per app: its store, its JWT
 * cache). Everything else - route matching, the middleware chain, the
 * handler, the store (STORE=memory) - is the kit's own code.
 *
 * Every response is checked on the way (FUZZ_CHECK): written exactly once,
 * a well-formed head whose status is the one the request ended with, no
 * bare LF or NUL in it, a Content-Length equal to the body's length, and a
 * JSON body that parses when the Content-Type says JSON.
 */
#ifndef KIT_FUZZ_FAKE_REQUEST_H
#define KIT_FUZZ_FAKE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

struct kit_app;

struct fuzz_response {
	int status;
	char *raw;        /* every byte written, NUL-terminated (malloc'd)  */
	size_t raw_len;
	size_t head_len;  /* the head, its empty line included              */
	const char *body; /* raw + head_len                                 */
	size_t body_len;
};

/* Sets what the fuzzed services need before they are mounted: STORE=memory,
 * a fixed JWT_SECRET (FUZZ_JWT_SECRET), the cheapest PBKDF2 the users
 * service allows, API_VERSION=2, PUBLIC_BASE_URL. Existing values win. */
#define FUZZ_JWT_SECRET "fuzz-secret-0123456789abcdef0123456789abcdef"
void fuzz_service_environment(void);

/* A service's app as its Phase 2 process builds it (services/<name>/main.c)
 * minus what writes logs (access_log) and tracing (its own target):
 * fuzz_service_environment(), then request_id, metrics and
 * identity_headers. The caller mounts the service. */
struct kit_app *fuzz_service_app(const char *name, int default_port);

/* Serves the request whose head is head[0..head_len) (request line,
 * header lines, empty line) and whose body is body[0..body_len) through
 * app. Returns the status answered, with the response in *response (free
 * it with fuzz_response_free), or -1 when the head does not parse or the
 * path does not normalize: the server core would have refused it before
 * the app saw it, and *response is then empty. */
int fuzz_serve(struct kit_app *app, const char *head, size_t head_len,
	       const void *body, size_t body_len,
	       struct fuzz_response *response);
void fuzz_response_free(struct fuzz_response *response);

/* POST path with body[0..size) as application/json, extra_headers
 * ("Name: value\r\n"..., or "") added: fuzz_serve() of that request. */
int fuzz_post_json(struct kit_app *app, const char *path, const char *extra_headers,
		   const void *body, size_t size, struct fuzz_response *response);

/* A string member of a JSON object (owned by it), or NULL. */
struct cJSON;
const char *fuzz_json_string(const struct cJSON *object, const char *name);

/* True when the head parser keeps value[0..len) as a header value as it
 * is: not empty, no control character but HTAB, no SP/HTAB at either end. */
bool fuzz_header_keeps(const char *value, size_t len);

/* The value of response header name (case-insensitive) copied into out,
 * or NULL when the response has no such header or it does not fit. */
const char *fuzz_response_header(const struct fuzz_response *response,
				 const char *name, char *out, size_t size);

#endif
