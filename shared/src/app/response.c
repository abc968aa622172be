/*
 * response.c - sending the response: one buffer with the status line, the
 * headers and the body, handed to the server core's transport in one call
 * (kit/response.h).
 *
 * Why one write: with TCP_NODELAY on, a head and a body written separately
 * leave as two packets and two wake-ups; on a small JSON response that
 * triples the CPU per request (measured in docs/performance.md).
 *
 * Headers added by middleware live in req->extra_headers, already in wire
 * form ("Name: value\r\n"); a value with a control character is refused, so
 * nothing a client sent can split a header.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "app/internal.h"
#include "kit/http_parser.h"
#include "kit/request.h"
#include "kit/response.h"
#include "server/core.h"

#define HEAD_MAX (KIT_RESPONSE_HEADERS_MAX + 512)

const char *kit_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

static bool has_control_character(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return true;
	}
	return false;
}

void kit_response_header(struct kit_request *req, const char *name,
			 const char *value)
{
	size_t room = sizeof(req->extra_headers) - req->extra_headers_len;
	size_t name_len = strlen(name), value_len = strlen(value);
	char *end = req->extra_headers + req->extra_headers_len;

	if (has_control_character(name) || has_control_character(value) ||
	    strchr(name, ':') != NULL) {
		fprintf(stderr, "kit: header %s dropped: control character\n", name);
		return;
	}
	/* "name: value\r\n" and the NUL after it; copied, not formatted:
	 * this runs about ten times for every proxied response. */
	if (name_len + value_len + 5 > room) {
		fprintf(stderr, "kit: header %s dropped: no room\n", name);
		return;
	}
	memcpy(end, name, name_len);
	memcpy(end + name_len, ": ", 2);
	memcpy(end + name_len + 2, value, value_len);
	memcpy(end + name_len + 2 + value_len, "\r\n", 3);
	req->extra_headers_len += name_len + value_len + 4;
}

void kit_response_headerf(struct kit_request *req, const char *name,
			  const char *fmt, ...)
{
	char value[512];
	va_list args;

	va_start(args, fmt);
	vsnprintf(value, sizeof(value), fmt, args);
	va_end(args);
	kit_response_header(req, name, value);
}

/* The Date header's value, formatted once per second per thread. */
static const char *http_date(void)
{
	static __thread time_t cached_second;
	static __thread char cached[40];
	time_t now = time(NULL);

	if (now != cached_second) {
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(cached, sizeof(cached), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		cached_second = now;
	}
	return cached;
}

/* Whether the connection will close after this response, so the client is
 * told rather than surprised: the transport says whether it can carry
 * another request (the client asked to close, or the body was not read),
 * and a 401 always closes, on both cores (civetweb insists on it, and a
 * client with a bad token has no use for the connection). */
static bool closes_connection(const struct kit_request *req, int status)
{
	return status == 401 || !req->transport->keeps_alive(req);
}

/* Appends to a response head of at most HEAD_MAX bytes. The pieces are
 * bounded (extra_headers is at most KIT_RESPONSE_HEADERS_MAX), so the head
 * always fits; the check is there so a future header cannot overrun it. */
static void append(char *head, size_t *used, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void append(char *head, size_t *used, const char *fmt, ...)
{
	va_list args;
	int n;

	va_start(args, fmt);
	n = vsnprintf(head + *used, HEAD_MAX - *used, fmt, args);
	va_end(args);
	if (n > 0)
		*used += (size_t)n < HEAD_MAX - *used ? (size_t)n : HEAD_MAX - 1 - *used;
}

int kit_respond(struct kit_request *req, int status, const char *content_type,
		const void *body, size_t len)
{
	char *buffer;
	bool send_body = strcmp(req->method, "HEAD") != 0;
	bool no_length = status == 204 || status == 304 || status < 200;
	bool closing;
	size_t head_len;

	if (req->status != 0) {
		fprintf(stderr, "kit: %s %s answered twice (%d, then %d); second ignored\n",
			req->method, req->path, req->status, status);
		return req->status;
	}
	/* On the heap, not the stack: on the event-loop core a request's
	 * stack is a coroutine's, and every page of it that a request ever
	 * touches stays resident (a malloc costs far less than a page). */
	buffer = malloc(len + HEAD_MAX);
	if (buffer == NULL) {
		static const char no_memory[] =
			"HTTP/1.1 500 Internal Server Error\r\n"
			"Content-Length: 0\r\nConnection: close\r\n\r\n";
		req->transport->send(req, no_memory, sizeof(no_memory) - 1, true);
		req->status = 500;
		return 500;
	}

	head_len = 0;
	append(buffer, &head_len, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status,
	       kit_status_text(status), http_date());
	if (content_type != NULL)
		append(buffer, &head_len, "Content-Type: %s\r\n", content_type);
	if (!no_length)
		append(buffer, &head_len, "Content-Length: %zu\r\n", len);
	closing = closes_connection(req, status);
	if (closing)
		append(buffer, &head_len, "Connection: close\r\n");
	append(buffer, &head_len, "%s\r\n", req->extra_headers);
	if (send_body && len > 0 && !no_length)
		memcpy(buffer + head_len, body, len);
	else
		len = 0;

	req->transport->send(req, buffer, head_len + len, closing);
	free(buffer);
	if (req->keep_response && req->kept_body == NULL) {
		/* For a finish hook (the response cache); on failure it simply
		 * finds nothing kept. */
		req->kept_body = malloc(len > 0 ? len : 1);
		req->kept_content_type = content_type != NULL ? strdup(content_type) : NULL;
		if (req->kept_body != NULL) {
			if (len > 0)
				memcpy(req->kept_body, body, len);
			req->kept_len = len;
		}
	}
	req->status = status;
	req->bytes_sent = head_len + len;
	return status;
}

int kit_respond_json(struct kit_request *req, int status, const cJSON *json)
{
	char *text = cJSON_PrintUnformatted(json);
	int result;

	if (text == NULL)
		return kit_respond(req, 500, NULL, NULL, 0);
	result = kit_respond(req, status, "application/json", text, strlen(text));
	cJSON_free(text);
	return result;
}

int kit_respond_empty(struct kit_request *req, int status)
{
	return kit_respond(req, status, NULL, NULL, 0);
}
