/*
 * problem.c - the one error format: RFC 9457 application/problem+json
 * (kit/response.h). Every failure the kit answers, from any layer, goes
 * through kit_problem(), so a client parses one shape everywhere:
 *
 *   {"type":"/problems/not-found","title":"Not Found","status":404,
 *    "detail":"no route for GET /nope","instance":"/nope",
 *    "request_id":"5f0c..."}
 *
 * The object is built with cJSON: the detail and the path may contain what a
 * client sent, and cJSON escapes it; nothing is formatted into JSON text.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "app/internal.h"
#include "kit/request.h"
#include "kit/response.h"
#include "kit/store.h"

const char *kit_problem_slug(int status)
{
	switch (status) {
	case 400: return "bad-request";
	case 401: return "unauthorized";
	case 403: return "forbidden";
	case 404: return "not-found";
	case 405: return "method-not-allowed";
	case 408: return "request-timeout";
	case 409: return "conflict";
	case 410: return "gone";
	case 413: return "payload-too-large";
	case 415: return "unsupported-media-type";
	case 429: return "rate-limited";
	case 431: return "request-header-fields-too-large";
	case 501: return "not-implemented";
	case 502: return "bad-gateway";
	case 503: return "unavailable";
	case 504: return "gateway-timeout";
	case 505: return "http-version-not-supported";
	default: return status >= 500 ? "internal-error" : "bad-request";
	}
}

static int send_problem(struct kit_request *req, int status, cJSON *extra,
			const char *fmt, va_list args)
{
	char detail[512], type[64];
	cJSON *problem = cJSON_CreateObject();
	char *text;
	int result;

	vsnprintf(detail, sizeof(detail), fmt, args);
	snprintf(type, sizeof(type), "/problems/%s", kit_problem_slug(status));
	if (problem == NULL) {
		cJSON_Delete(extra);
		return kit_respond(req, status, NULL, NULL, 0);
	}
	cJSON_AddStringToObject(problem, "type", type);
	cJSON_AddStringToObject(problem, "title", kit_status_text(status));
	cJSON_AddNumberToObject(problem, "status", status);
	cJSON_AddStringToObject(problem, "detail", detail);
	if (req->path[0] != '\0') /* a request refused before its path was read has none */
		cJSON_AddStringToObject(problem, "instance", req->path);
	cJSON_AddStringToObject(problem, "request_id", req->request_id);
	if (extra != NULL) {
		cJSON *member = extra->child;
		while (member != NULL) {
			cJSON *next = member->next;
			cJSON_AddItemToObject(problem, member->string,
					      cJSON_DetachItemViaPointer(extra, member));
			member = next;
		}
		cJSON_Delete(extra);
	}

	text = cJSON_PrintUnformatted(problem);
	cJSON_Delete(problem);
	if (text == NULL)
		return kit_respond(req, status, NULL, NULL, 0);
	result = kit_respond(req, status, "application/problem+json", text,
			     strlen(text));
	cJSON_free(text);
	return result;
}

int kit_problem(struct kit_request *req, int status, const char *fmt, ...)
{
	va_list args;
	int result;

	va_start(args, fmt);
	result = send_problem(req, status, NULL, fmt, args);
	va_end(args);
	return result;
}

int kit_problem_ext(struct kit_request *req, int status, cJSON *extra,
		    const char *fmt, ...)
{
	va_list args;
	int result;

	va_start(args, fmt);
	result = send_problem(req, status, extra, fmt, args);
	va_end(args);
	return result;
}

int kit_problem_store(struct kit_request *req, const struct kit_store *store)
{
	fprintf(stderr, "%s: request %s: storage error: %s\n",
		kit_app_name(req->app), req->request_id, kit_store_error(store));
	return kit_problem(req, 503, "storage unavailable");
}
