/*
 * tests/fuzz/fake_request.c - serving one request through a kit_app with
 * no socket (fake_request.h): the head parsed and the path normalized as
 * the event-loop core does, the app's serve entry, and a transport of its
 * own at the bottom of this file that hands over the body and captures the
 * response.
 *
 * Single-threaded, as libFuzzer calls a target: the capture buffer and the
 * per-thread resources are plain globals.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "app/internal.h"
#include "fake_request.h"
#include "fuzz.h"
#include "kit/http_parser.h"
#include "kit/middleware.h"
#include "kit/request.h"
#include "server/core.h"

/* What the transport's send was handed during one fuzz_serve(). */
static char *captured;
static size_t captured_len;
static int captured_writes;

/* The body fuzz_serve() hands over, and how much of it is read. */
struct fake_connection {
	const char *body;
	size_t len;
	size_t read;
};

static const struct kit_transport fake_transport;

/* One kit_thread per app (each app numbers its resources its own way). */
#define FUZZ_MAX_APPS 4
static struct {
	const struct kit_app *app;
	struct kit_thread thread;
} threads[FUZZ_MAX_APPS];

/* Makes app's kit_thread the calling thread's, its resources kept. */
static void use_thread_of(struct kit_app *app)
{
	for (int i = 0; i < FUZZ_MAX_APPS; i++) {
		void *kept[KIT_MAX_THREAD_RESOURCES];

		if (threads[i].app != NULL && threads[i].app != app)
			continue;
		/* kit_thread_begin() starts with no resources: put back
		 * the ones this app's thread already made. */
		memcpy(kept, threads[i].thread.resources, sizeof(kept));
		kit_thread_begin(&threads[i].thread, &app->server_config, &kit_blocking_waits);
		if (threads[i].app == app)
			memcpy(threads[i].thread.resources, kept, sizeof(kept));
		threads[i].app = app;
		return;
	}
	abort(); /* more apps than FUZZ_MAX_APPS: raise it */
}

void fuzz_service_environment(void)
{
	setenv("STORE", "memory", 0);
	setenv("JWT_SECRET", FUZZ_JWT_SECRET, 0);
	setenv("PASSWORD_PBKDF2_ITERATIONS", "1000", 0);
	setenv("ALLOW_INSECURE_DEV_SECRET", "true", 0); /* for the 1000 */
	setenv("API_VERSION", "2", 0);
	setenv("PUBLIC_BASE_URL", "http://localhost:3000", 0);
}

struct kit_app *fuzz_service_app(const char *name, int default_port)
{
	struct kit_app *app;

	fuzz_service_environment();
	app = kit_app_new(name, default_port);
	kit_use(app, &kit_request_id);
	kit_use(app, &kit_metrics);
	kit_use(app, &kit_identity_headers);
	return app;
}

/* Checks what every response must be, and fills *response from it. */
static void check_response(int status, struct fuzz_response *response)
{
	char expect[16];
	const char *end;

	FUZZ_CHECK(captured_writes == 1, "%d writes for one request", captured_writes);
	FUZZ_CHECK(status >= 100 && status <= 599, "status %d", status);
	snprintf(expect, sizeof(expect), "HTTP/1.1 %d ", status);
	FUZZ_CHECK(captured_len > strlen(expect) &&
		   memcmp(captured, expect, strlen(expect)) == 0,
		   "status line is not \"%s...\": %.40s", expect, captured);
	end = memmem(captured, captured_len, "\r\n\r\n", 4);
	FUZZ_CHECK(end != NULL, "no empty line ending the response head");

	response->status = status;
	response->raw = captured;
	response->raw_len = captured_len;
	response->head_len = (size_t)(end - captured) + 4;
	response->body = captured + response->head_len;
	response->body_len = captured_len - response->head_len;
	captured = NULL;
	captured_len = 0;

	/* The head: CRLF lines only, no NUL (a header value that smuggled a
	 * line break would show here). */
	for (size_t i = 0; i < response->head_len; i++) {
		FUZZ_CHECK(response->raw[i] != '\0', "NUL at byte %zu of the response head", i);
		if (response->raw[i] == '\n')
			FUZZ_CHECK(i > 0 && response->raw[i - 1] == '\r',
				   "bare LF at byte %zu of the response head", i);
		if (response->raw[i] == '\r')
			FUZZ_CHECK(response->raw[i + 1] == '\n',
				   "CR without LF at byte %zu of the response head", i);
	}

	char value[64];
	if (fuzz_response_header(response, "Content-Length", value, sizeof(value)) != NULL)
		FUZZ_CHECK(strtoull(value, NULL, 10) == response->body_len,
			   "Content-Length %s, body %zu bytes", value, response->body_len);
	if (fuzz_response_header(response, "Content-Type", value, sizeof(value)) != NULL &&
	    strstr(value, "json") != NULL && response->body_len > 0) {
		cJSON *json = cJSON_ParseWithLength(response->body, response->body_len);
		FUZZ_CHECK(json != NULL, "a %s body that is not JSON: %.*s", value,
			   (int)response->body_len, response->body);
		cJSON_Delete(json);
	}
}

int fuzz_serve(struct kit_app *app, const char *head_text, size_t head_len,
	       const void *body, size_t body_len, struct fuzz_response *response)
{
	struct kit_http_head head;
	struct kit_request req;
	struct fake_connection connection;
	char path[4096];
	char *buffer;
	int status;

	memset(response, 0, sizeof(*response));
	/* The loop parses its connection's buffer in place: a copy of the
	 * exact size, so ASan sees any read past it. */
	buffer = malloc(head_len + 1);
	if (buffer == NULL)
		abort();
	memcpy(buffer, head_text, head_len);
	buffer[head_len] = '\0';
	if (kit_http_parse_head(buffer, head_len, head_len, &head) != 0 ||
	    head.head_len != head_len ||
	    kit_http_path_normalize(head.target, head.path_len, path, sizeof(path)) != 0) {
		free(buffer);
		return -1;
	}

	memset(&req, 0, sizeof(req));
	connection = (struct fake_connection){ .body = body, .len = body_len };
	req.transport = &fake_transport;
	req.conn = &connection;
	req.http = &head;
	req.start_ns = kit_now_ns();
	req.method = head.method;
	req.query = head.query;
	req.path = path;
	snprintf(req.peer, sizeof(req.peer), "127.0.0.1");

	captured_writes = 0;
	free(captured);
	captured = NULL;
	captured_len = 0;
	use_thread_of(app);
	app->server_config.serve(app, &req);
	status = req.status;
	check_response(status, response);
	free(buffer);
	return status;
}

int fuzz_post_json(struct kit_app *app, const char *path, const char *extra_headers,
		   const void *body, size_t size, struct fuzz_response *response)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
			 "POST %s HTTP/1.1\r\nHost: kit\r\nContent-Type: application/json\r\n"
			 "%sContent-Length: %zu\r\n\r\n", path, extra_headers, size);

	if (n < 0 || (size_t)n >= sizeof(head))
		abort();
	return fuzz_serve(app, head, (size_t)n, body, size, response);
}

const char *fuzz_json_string(const cJSON *object, const char *name)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);

	return cJSON_IsString(item) ? item->valuestring : NULL;
}

bool fuzz_header_keeps(const char *value, size_t len)
{
	if (len == 0 || value[0] == ' ' || value[0] == '\t' ||
	    value[len - 1] == ' ' || value[len - 1] == '\t')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

void fuzz_response_free(struct fuzz_response *response)
{
	free(response->raw);
	memset(response, 0, sizeof(*response));
}

const char *fuzz_response_header(const struct fuzz_response *response,
				 const char *name, char *out, size_t size)
{
	size_t name_len = strlen(name);
	const char *line = memchr(response->raw, '\n', response->head_len);

	/* Skip the status line; stop at the empty line. */
	while (line != NULL && (size_t)(line + 1 - response->raw) < response->head_len) {
		const char *start = line + 1;
		const char *eol = memchr(start, '\r', response->head_len - (size_t)(start - response->raw));

		if (eol == NULL || eol == start)
			break;
		if ((size_t)(eol - start) > name_len + 1 && start[name_len] == ':' &&
		    strncasecmp(start, name, name_len) == 0) {
			const char *value = start + name_len + 1;
			while (*value == ' ')
				value++;
			size_t len = (size_t)(eol - value);
			if (len >= size)
				return NULL;
			memcpy(out, value, len);
			out[len] = '\0';
			return out;
		}
		line = eol + 1;
	}
	return NULL;
}

/* ---- the transport: the body from memory, the response captured ---- */

static long fake_read_body(struct kit_request *req, char *buf, size_t size, int *status)
{
	struct fake_connection *connection = req->conn;
	size_t n = connection->len - connection->read;

	if (n > size)
		n = size;
	memcpy(buf, connection->body + connection->read, n);
	connection->read += n;
	return (long)n;
}

static bool fake_keeps_alive(const struct kit_request *req)
{
	const struct fake_connection *connection = req->conn;

	return req->http->keep_alive && connection->read == connection->len;
}

static void fake_send(struct kit_request *req, const char *data, size_t len, bool close_after)
{
	char *bigger = realloc(captured, captured_len + len + 1);

	if (bigger == NULL)
		abort();
	captured = bigger;
	memcpy(captured + captured_len, data, len);
	captured_len += len;
	captured[captured_len] = '\0';
	captured_writes++;
}

static const struct kit_transport fake_transport = {
	.read_body = fake_read_body,
	.keeps_alive = fake_keeps_alive,
	.send = fake_send,
};
