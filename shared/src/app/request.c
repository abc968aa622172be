/*
 * request.c - reading the request: headers, route parameters, the body and
 * the body as JSON (kit/request.h).
 *
 * The body is read only when a handler asks for it, at most MAX_BODY_BYTES;
 * a larger one is refused with 413 before it is read. Everything read is
 * owned by the request and freed by the dispatcher when the response has
 * gone out.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "kit/http_parser.h"
#include "kit/text.h"
#include "kit/request.h"
#include "kit/response.h"
#include "server/core.h"

/* Both server cores give every request a parsed head (server/core.h), so
 * the headers are read the same way whichever core parsed them. */
const char *kit_request_header(const struct kit_request *req, const char *name)
{
	return kit_http_header_value(req->http, name);
}

int kit_request_header_count(const struct kit_request *req)
{
	return req->http->header_count;
}

void kit_request_header_at(const struct kit_request *req, int i,
			   const char **name, const char **value)
{
	*name = req->http->headers[i].name;
	*value = req->http->headers[i].value;
}

const char *kit_request_param(const struct kit_request *req, const char *name)
{
	for (int i = 0; i < req->param_count; i++) {
		if (strcmp(req->params[i].name, name) == 0)
			return req->params[i].value;
	}
	return NULL;
}

/* What to tell the client when the transport cannot go on reading. */
static int body_problem(struct kit_request *req, int status, size_t limit)
{
	switch (status) {
	case 408:
		return kit_problem(req, 408, "the body did not arrive in time");
	case 413:
		return kit_problem(req, 413, "the body is over the %zu byte limit", limit);
	default:
		return kit_problem(req, 400, "the chunked body is malformed");
	}
}

int kit_request_body(struct kit_request *req)
{
	size_t limit = kit_app_max_body(req->app);
	long long declared = req->http->content_length;
	size_t capacity;

	if (req->body_read)
		return KIT_NEXT;
	if (declared > (long long)limit)
		return kit_problem(req, 413, "the body is %lld bytes; the limit is %zu",
				   declared, limit);
	/* Neither Content-Length nor Transfer-Encoding: the request has no
	 * body (RFC 9112, 6.3), so nothing is read or allocated. Most GETs. */
	if (declared < 0 && !req->http->chunked) {
		req->body_read = true;
		return KIT_NEXT;
	}

	/* A declared length is allocated once. A chunked body grows its
	 * buffer as it arrives, up to one byte past the limit to tell
	 * "exactly the limit" from "too large": a small upload never costs
	 * a buffer of the whole limit. */
	capacity = declared >= 0 ? (size_t)declared : (limit < 4096 ? limit + 1 : 4096);
	req->body = malloc(capacity + 1);
	if (req->body == NULL)
		return kit_problem(req, 500, "out of memory reading the body");
	for (;;) {
		int status = 0;
		long n;

		if (req->body_len == capacity) {
			char *bigger;

			if (declared >= 0 || capacity > limit)
				break;
			capacity = capacity * 2 > limit + 1 ? limit + 1 : capacity * 2;
			bigger = realloc(req->body, capacity + 1);
			if (bigger == NULL)
				return kit_problem(req, 500, "out of memory reading the body");
			req->body = bigger;
		}
		n = req->transport->read_body(req, req->body + req->body_len,
					      capacity - req->body_len, &status);
		if (n < 0)
			return body_problem(req, status, limit);
		if (n == 0)
			break;
		req->body_len += (size_t)n;
	}
	req->body[req->body_len] = '\0';
	req->body_read = true;
	if (declared < 0 && req->body_len > limit)
		return kit_problem(req, 413, "the body is over the %zu byte limit", limit);
	if (declared >= 0 && req->body_len != (size_t)declared)
		return kit_problem(req, 400, "the body ended after %zu of %lld bytes",
				   req->body_len, declared);
	return KIT_NEXT;
}

/* application/json, or any application/<something>+json. */
static bool is_json_media_type(const char *content_type)
{
	size_t len = strcspn(content_type, ";");

	while (len > 0 && content_type[len - 1] == ' ')
		len--;
	if (len == strlen("application/json") &&
	    strncasecmp(content_type, "application/json", len) == 0)
		return true;
	return len > strlen("application/+json") &&
	       strncasecmp(content_type, "application/", 12) == 0 &&
	       strncasecmp(content_type + len - 5, "+json", 5) == 0;
}

int kit_request_json(struct kit_request *req, cJSON **out)
{
	const char *content_type = kit_request_header(req, "Content-Type");
	const char *end = NULL;
	int status;

	*out = NULL;
	if (content_type != NULL && !is_json_media_type(content_type))
		return kit_problem(req, 415, "Content-Type must be application/json");
	status = kit_request_body(req);
	if (status != KIT_NEXT)
		return status;
	if (req->body_len == 0)
		return kit_problem(req, 400, "the body must be a JSON object");

	if (!kit_json_escapes_are_sound(req->body, req->body_len))
		return kit_problem(req, 400, "the body has a \\u escape that is not four hex digits, or stands for NUL");
	req->json = cJSON_ParseWithLengthOpts(req->body, req->body_len, &end, false);
	if (req->json == NULL)
		return kit_problem(req, 400, "the body is not valid JSON");
	while (end < req->body + req->body_len && strchr(" \t\r\n", *end) != NULL)
		end++;
	if (end != req->body + req->body_len)
		return kit_problem(req, 400, "the body has data after its JSON value");
	if (!cJSON_IsObject(req->json))
		return kit_problem(req, 400, "the body must be a JSON object");
	*out = req->json;
	return KIT_NEXT;
}

int kit_json_string(struct kit_request *req, const cJSON *object,
		    const char *name, bool required, const char **value)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);

	*value = NULL;
	if (item == NULL || cJSON_IsNull(item)) {
		if (required)
			return kit_problem(req, 400, "%s is required", name);
		return KIT_NEXT;
	}
	if (!cJSON_IsString(item))
		return kit_problem(req, 400, "%s must be a string", name);
	*value = item->valuestring;
	return KIT_NEXT;
}
