/*
 * proxy.c - the gateway's last step: send the request to its upstream and
 * the answer back (kit/gateway.h).
 *
 * Position: the handler of every route kit_gateway_mount() adds, so it runs
 * after the whole chain (auth has filled req->user, the rate limit passed).
 *
 * Connection pool (upstream_http.c, the proxy's own HTTP/1.1 client; it
 * replaced libcurl, which cost more than half of a proxied request's CPU:
 * docs/performance.md). Each thread - a civetweb worker, or a loop thread
 * whose requests take turns - keeps idle keep-alive connections per
 * upstream instance, closes those idle longer than
 * pool.idle_timeout_seconds (shorter than the services' own keep-alive,
 * 30 s, so we close first and rarely send on a connection the upstream
 * has just dropped) and peeks at one before reusing it, so a connection
 * the upstream closed is never sent on. Across all threads, once an
 * upstream has pool.max_idle_per_upstream connections open, a request's
 * connection is closed after use instead of kept (agentkeepalive's
 * maxFreeSockets): a civetweb upstream spends one worker thread on every
 * open connection, idle or not, so an unbounded pool from several
 * gateways would starve it. Statistics per upstream (created, closed,
 * errors, in use, requests) are counted where connections open and close,
 * so they are exact.
 *
 * Per request:
 *   1. pick the upstream: the route's, or for a split route the caller's
 *      variant (gateway_split.c; X-Variant on the answer)
 *   2. build the upstream URL: upstream + rewrite + the rest of the path
 *      (percent-encoded again) + the raw query
 *   3. refuse (431) a request with more than MAX_REQUEST_HEADERS fields;
 *      copy the request headers but hop-by-hop ones (and those any
 *      Connection line names), Host, Content-Length and anything a client
 *      must not set (X-User-*, X-Forwarded-*, trace context; names
 *      compared without case and with '_' as '-'); add
 *      X-Forwarded-For/-Proto/-Host, X-Request-Id, for a verified caller
 *      X-User-Id/X-User-Tier, and with tracing on the uber-trace-id of a
 *      client span opened for this attempt; nothing else (no Content-Type
 *      or Accept of the gateway's own), so the upstream gets what the
 *      client sent. Every line goes through add_header(): a control byte is 400,
 *      a line over KIT_PROXY_HEADER_LINE_MAX is 431, never cut short
 *   4. perform with a connect timeout and a total timeout (the route's),
 *      each attempt on the instance the balancer picks (balancer.c: round
 *      robin or least in flight, and a circuit breaker per instance). Try
 *      again, within what is left of the same timeout: on another
 *      instance when one refused the connection (nothing was sent, so for
 *      any method) or, for idempotent methods only, dropped it without an
 *      answer; and once on a reused connection the upstream had closed
 *      (each attempt is a client span of its own; nothing is ever sent
 *      twice by the client underneath: upstream_http.c never re-sends)
 *   5. answer: the upstream's status, headers (minus hop-by-hop) and body,
 *      or a problem: 502 refused/reset/too large, 504 timed out, naming the
 *      upstream
 *
 * API versions: with "versions" in the file, a catch-all "/api/..." comes
 * after every route (gateway_version_handler, gateway_versions.c): 404 for
 * an unknown version, listing
 * the supported ones, and the API-Version header for unversioned paths.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "kit/config.h"
#include "kit/gateway.h"
#include "kit/metrics.h"
#include "kit/request.h"
#include "kit/response.h"
#include "kit/router.h"
#include "kit/tracing.h"
#include "gateway/gateway_internal.h"

#define KIT_MAX_PROXIED_HEADERS 64 /* response headers passed back, at most */

static struct {
	struct kit_gateway_config *config;
	int thread_slot;                      /* this thread's upstream_pool:
	                                       * one request at a time on a
	                                       * civetweb worker, a loop
	                                       * thread's requests in turn */
	struct kit_metric *duration;          /* per upstream          */
	struct kit_metric *requests;
	struct kit_metric *created;
	struct kit_metric *closed;
	struct kit_metric *errors;
	struct kit_metric *connections;       /* {upstream,state}      */
	struct kit_metric *split_requests;    /* {split,variant}       */
	struct kit_metric *instance_state;    /* {upstream,url}:       */
	struct kit_metric *instance_in_flight; /* the balancer's view  */
	struct kit_metric *instance_requests;
	struct kit_metric *instance_failures;
	struct kit_metric *instance_ejections;
	long max_request_headers;             /* MAX_REQUEST_HEADERS   */
} proxy;

/* ---- header filters ---- */

/* Whether header name a is b, as many servers read names: without case,
 * and with '_' the same as '-' (nginx with underscores_in_headers, CGI
 * and PHP's HTTP_X_USER_ID, Python's WSGI...). A filter that compared
 * names exactly would let "X_User_Id" through to an upstream that reads
 * it as X-User-Id. */
static bool name_is(const char *a, size_t a_len, const char *b)
{
	size_t i;

	for (i = 0; i < a_len && b[i] != '\0'; i++) {
		char x = a[i] == '_' ? '-' : (char)tolower((unsigned char)a[i]);
		char y = b[i] == '_' ? '-' : (char)tolower((unsigned char)b[i]);

		if (x != y)
			return false;
	}
	return i == a_len && b[i] == '\0';
}

static bool in_list(const char *name, const char *const *list)
{
	for (size_t i = 0; list[i] != NULL; i++) {
		if (name_is(name, strlen(name), list[i]))
			return true;
	}
	return false;
}

/* True when name is one of the comma-separated tokens of connection. */
static bool named_by_connection(const char *name, const char *connection)
{
	const char *p = connection;

	while (p != NULL && *p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		size_t token = strcspn(p, ", \t");
		if (token > 0 && name_is(p, token, name))
			return true;
		p += token;
	}
	return false;
}

static const char *const hop_by_hop[] = {
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"TE", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Connection", NULL,
};

bool kit_proxy_drop_request_header(const char *name, const char *connection)
{
	static const char *const set_by_gateway[] = {
		"Host", "Content-Length", "Expect",
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
		"X-Request-Id", "Forwarded",
		/* The trace context: the gateway continues the caller's trace
		 * in its server span and sends its own client span's context
		 * on, so the upstream's parent is the gateway, not the client.
		 * tracestate belongs to the traceparent it came with. */
		"uber-trace-id", "traceparent", "tracestate", NULL,
	};

	/* X-User-* is the gateway's to say, all of it: a client's
	 * X-User-Role must not reach a service that one day reads it. */
	return (strlen(name) >= 7 && name_is(name, 7, "X-User-")) ||
	       in_list(name, hop_by_hop) || in_list(name, set_by_gateway) ||
	       named_by_connection(name, connection);
}

bool kit_proxy_drop_response_header(const char *name, const char *connection)
{
	static const char *const set_by_gateway[] = {
		"Content-Length", "Date", "X-Request-Id", "X-Trace-ID", "Server", NULL,
	};

	return in_list(name, hop_by_hop) || in_list(name, set_by_gateway) ||
	       named_by_connection(name, connection);
}

/* Appends ", value" (or value, first) to *joined, a malloc'd list: every
 * Connection line of a message is one token list (RFC 9110 5.3), and a
 * filter that read only the first would forward what a second one names.
 * Returns false when out of memory (*joined is then freed and NULL). */
static bool join_list(char **joined, size_t *used, const char *value)
{
	size_t len = strlen(value);
	char *longer = realloc(*joined, *used + len + 3);

	if (longer == NULL) {
		free(*joined);
		*joined = NULL;
		return false;
	}
	if (*used > 0) {
		memcpy(longer + *used, ", ", 2);
		*used += 2;
	}
	memcpy(longer + *used, value, len);
	*used += len;
	longer[*used] = '\0';
	*joined = longer;
	return true;
}

/* ---- the per-thread connections ---- */

static void *pool_create(void *arg)
{
	return upstream_pool_new();
}

/* Closes the idle connections: counted against their upstreams. */
static void pool_destroy(void *resource)
{
	upstream_pool_free(resource);
}

/* ---- one exchange ---- */

/* Appends s to url, percent-encoding what is not safe in a path: civetweb
 * hands us the decoded path, so it is encoded again on the way out. */
static bool append_encoded_path(char *url, size_t size, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t used = strlen(url);

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		bool safe = isalnum(c) || strchr("/-._~!$&'()*+,;=:@", c) != NULL;

		if (used + 4 >= size)
			return false;
		if (safe) {
			url[used++] = (char)c;
		} else {
			url[used++] = '%';
			url[used++] = hex[c >> 4];
			url[used++] = hex[c & 15];
		}
	}
	url[used] = '\0';
	return true;
}

/* Why a header could not go upstream (upstream_headers). */
enum header_refusal {
	HEADER_OK = 0,
	HEADER_TOO_LONG,     /* over KIT_PROXY_HEADER_LINE_MAX: 431           */
	HEADER_CONTROL_BYTE, /* a control byte (not HTAB) in name or value: 400 */
	HEADER_NO_MEMORY,    /* 500                                            */
};

/* The one place an upstream header line is made: "name: value" appended
 * to *list. Every line goes through it, the client's and the gateway's own
 * alike, so no value - a token's sub, a client's Host - can end a line
 * early and start another (CR LF), and nothing is cut short: a line over
 * KIT_PROXY_HEADER_LINE_MAX is refused whole, never truncated. */
static enum header_refusal add_header(struct curl_slist **list, const char *name,
				      const char *value)
{
	size_t name_len = strlen(name), value_len = strlen(value);
	struct curl_slist *longer;
	char *line;

	for (const char *p = name; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == ':')
			return HEADER_CONTROL_BYTE;
	}
	for (const char *p = value; *p != '\0'; p++) {
		if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
			return HEADER_CONTROL_BYTE;
	}
	if (name_len + 2 + value_len > KIT_PROXY_HEADER_LINE_MAX)
		return HEADER_TOO_LONG;
	/* On the heap, not the stack: a coroutine's stack is small. */
	line = malloc(name_len + 2 + value_len + 1);
	if (line == NULL)
		return HEADER_NO_MEMORY;
	memcpy(line, name, name_len);
	memcpy(line + name_len, ": ", 2);
	memcpy(line + name_len + 2, value, value_len + 1);
	longer = curl_slist_append(*list, line); /* copies it */
	free(line);
	if (longer == NULL)
		return HEADER_NO_MEMORY;
	*list = longer;
	return HEADER_OK;
}

/* Answers for a header add_header() refused. */
static int header_problem(struct kit_request *req, enum header_refusal refusal,
			  const char *name)
{
	switch (refusal) {
	case HEADER_TOO_LONG:
		return kit_problem(req, 431, "the header %.64s is longer than %d bytes",
				   name, KIT_PROXY_HEADER_LINE_MAX);
	case HEADER_CONTROL_BYTE:
		return kit_problem(req, 400, "the header %.64s has a control character", name);
	default:
		return kit_problem(req, 500, "out of memory building the upstream request");
	}
}

/* The headers to send upstream into *out; trace_header is the client
 * span's uber-trace-id value ("" when tracing is off). Returns KIT_NEXT,
 * the caller then frees *out with curl_slist_free_all(); or answers (431,
 * 400, 500) and returns that status, with nothing to free. */
static int upstream_headers(struct kit_request *req, const char *trace_header,
			    struct curl_slist **out)
{
	const char *host = kit_request_header(req, "Host");
	struct curl_slist *list = NULL;
	char *connection = NULL;
	size_t connection_len = 0;
	int count = kit_request_header_count(req);
	enum header_refusal refusal = HEADER_OK;
	const char *refused = "";

	/* 1. Every Connection line, as one list. */
	for (int i = 0; i < count; i++) {
		const char *name, *value;

		kit_request_header_at(req, i, &name, &value);
		if (strcasecmp(name, "Connection") == 0 &&
		    !join_list(&connection, &connection_len, value))
			return kit_problem(req, 500, "out of memory building the upstream request");
	}

	/* 2. The client's headers the filter keeps, as sent. */
	for (int i = 0; i < count && refusal == HEADER_OK; i++) {
		const char *name, *value;

		kit_request_header_at(req, i, &name, &value);
		if (kit_proxy_drop_request_header(name, connection))
			continue;
		refusal = add_header(&list, name, value);
		refused = name;
	}
	free(connection);

	/* 3. The gateway's own. The client as the gateway sees it:
	 * req->client_ip is the socket peer, or (behind a trusted proxy) the
	 * address that proxy reported (client_address.c). */
	const struct { const char *name, *value; bool send; } own[] = {
		{ "X-Forwarded-For", req->client_ip, true },
		{ "X-Forwarded-Proto", "http", true },
		{ "X-Forwarded-Host", host != NULL ? host : "", host != NULL },
		{ "X-Request-Id", req->request_id, true },
		{ "X-User-Id", req->user.subject, req->user.authenticated },
		{ "X-User-Tier", req->user.tier, req->user.authenticated },
		{ "uber-trace-id", trace_header, trace_header[0] != '\0' },
	};
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]) && refusal == HEADER_OK; i++) {
		if (!own[i].send)
			continue;
		refusal = add_header(&list, own[i].name, own[i].value);
		refused = own[i].name;
	}

	if (refusal != HEADER_OK) {
		curl_slist_free_all(list);
		return header_problem(req, refusal, refused);
	}
	*out = list;
	return KIT_NEXT;
}

static bool is_idempotent(const char *method)
{
	static const char *const idempotent[] = {
		"GET", "HEAD", "OPTIONS", "PUT", "DELETE", NULL,
	};
	return in_list(method, idempotent);
}

/* Copies the upstream's headers to the response, but those the filter
 * drops (and those every Connection line names); returns the Content-Type
 * (pointing into exchange->headers) or NULL. The raw lines are split in
 * place into name and value. */
static const char *pass_headers(struct kit_request *req, char *headers)
{
	const char *content_type = NULL;
	char *connection = NULL;
	size_t connection_len = 0;
	char *names[KIT_MAX_PROXIED_HEADERS], *values[KIT_MAX_PROXIED_HEADERS];
	int count = 0;
	char *line = headers;

	if (line == NULL)
		return NULL;
	/* 1. Split "Name: value\r\n" lines (the status line has no ':'
	 *    before its first space and is skipped). */
	while (*line != '\0' && count < KIT_MAX_PROXIED_HEADERS) {
		char *end = line + strcspn(line, "\r\n");
		char *next = end + strspn(end, "\r\n");
		char *colon = memchr(line, ':', (size_t)(end - line));

		*end = '\0';
		if (colon != NULL && strncmp(line, "HTTP/", 5) != 0) {
			char *value = colon + 1;
			*colon = '\0';
			while (*value == ' ' || *value == '\t')
				value++;
			names[count] = line;
			values[count] = value;
			if (strcasecmp(line, "Connection") == 0 &&
			    !join_list(&connection, &connection_len, value))
				return NULL; /* out of memory: no header passed */
			count++;
		}
		line = next;
	}
	/* 2. Pass on what the filter keeps (Connection may name more). */
	for (int i = 0; i < count; i++) {
		if (strcasecmp(names[i], "Content-Type") == 0)
			content_type = values[i];
		else if (!kit_proxy_drop_response_header(names[i], connection))
			kit_response_header(req, names[i], values[i]);
	}
	free(connection);
	return content_type;
}

static int upstream_problem(struct kit_request *req, int status,
			    const struct kit_upstream *upstream, const char *what,
			    const char *why)
{
	cJSON *extra = cJSON_CreateObject();

	fprintf(stderr, "gateway: request %s: upstream %s: %s (%s)\n",
		req->request_id, upstream->name, what, why);
	if (extra != NULL)
		cJSON_AddStringToObject(extra, "upstream", upstream->name);
	return kit_problem_ext(req, status, extra, "upstream %s %s", upstream->name, what);
}

/* ---- splits ---- */

/* The caller's key for a split (sticky_by "user"): the verified user; on a
 * public route (the token is not read there) or without one, the kit_ab
 * cookie, so a browser or a test stays on its variant; else the IP. */
static void split_key(struct kit_request *req, char *key, size_t size)
{
	if (req->user.authenticated) {
		snprintf(key, size, "%s", req->user.subject);
		return;
	}
	if (kit_split_cookie(kit_request_header(req, "Cookie"), key, size))
		return;
	snprintf(key, size, "%s", req->client_ip);
}

/* The variant this request goes to: the one X-Variant names (for testers;
 * a name the split does not have is ignored), else the caller's. */
static const struct kit_split_variant *split_variant(struct kit_request *req,
						      const struct kit_split *split)
{
	const char *forced = kit_request_header(req, "X-Variant");
	char key[256];
	int index = -1;

	for (int i = 0; forced != NULL && i < split->variant_count; i++) {
		if (strcmp(forced, split->variants[i].name) == 0)
			index = i;
	}
	if (index < 0) {
		split_key(req, key, sizeof(key));
		index = kit_split_choose(split, key);
	}
	if (index < 0)
		index = 0; /* not reached: a parsed split has positive weights */
	return &split->variants[index];
}

/* ---- the proxy ---- */

/* The instance's URL for req: instance + rewrite + the rest of the path
 * (encoded again) + the raw query. False when it does not fit. */
static bool upstream_url(char *url, size_t size, const struct kit_upstream_instance *instance,
			 const struct kit_gateway_route *route, const struct kit_request *req)
{
	snprintf(url, size, "%s%s", instance->url, route->rewrite);
	if (!append_encoded_path(url, size, req->path_rest != NULL ? req->path_rest : "") ||
	    (req->query != NULL && strlen(url) + strlen(req->query) + 2 > size))
		return false;
	if (req->query != NULL) {
		strcat(url, "?");
		strcat(url, req->query);
	}
	return true;
}

/* Tells the balancer how an attempt went; logs a breaker that moved. */
static void attempt_done(struct kit_request *req, struct kit_upstream *upstream,
			 struct kit_upstream_instance *instance, bool failed)
{
	enum kit_breaker_state state;

	if (kit_balancer_done(upstream, instance, failed, kit_now_ns(), &state))
		fprintf(stderr, "gateway: request %s: upstream %s instance %s: circuit %s%s\n",
			req->request_id, upstream->name, instance->url, kit_breaker_state_name(state),
			state == KIT_BREAKER_OPEN ? " (out of rotation)" : " (back in rotation)");
}

/* Sends req on through route and answers with what comes back. */
int gateway_proxy_route(struct kit_request *req, const struct kit_gateway_route *route)
{
	struct kit_upstream *upstream = route->upstream;
	const struct kit_split_variant *variant = NULL;
	struct kit_upstream_instance *instance = NULL;
	struct upstream_pool *pool = kit_thread_resource(req, proxy.thread_slot);
	struct curl_slist *headers = NULL;
	char url[2048], operation[160];
	uint64_t started = kit_now_ns();
	long status = 0;
	int result;

	/* 1. The upstream: the route's, or the caller's variant of a split. */
	if (route->split != NULL) {
		variant = split_variant(req, route->split);
		upstream = variant->upstream;
		kit_response_header(req, "X-Variant", variant->name);
		kit_metric_add(proxy.split_requests,
			       (const char *[]){ route->split->name, variant->name }, 1);
	}
	const char *labels[] = { upstream->name };

	req->service = upstream->name;
	if (pool == NULL)
		return kit_problem(req, 503, "the gateway could not create an HTTP client");

	/* 2. The URL fits (checked with the longest instance URL: each
	 *    attempt builds its own, for the instance it goes to). The
	 *    span's name: few distinct values, as Jaeger wants ("GET
	 *    /expand/..."), not the raw path. */
	for (int i = 0; i < upstream->instance_count; i++) {
		if (!upstream_url(url, sizeof(url), &upstream->instances[i], route, req))
			return kit_problem(req, 414, "the URI is too long");
	}
	snprintf(operation, sizeof(operation), "%s %s/...", req->method, route->rewrite);

	/* 3. The body (size-limited); the headers are built per attempt,
	 *    since each attempt has a span (and a trace header) of its own.
	 *    A client's headers are counted first: with too many, the ones
	 *    the gateway adds (X-User-Id among them) would be past what the
	 *    upstream reads (civetweb: 64), and a service would answer 401
	 *    for a request the gateway had authenticated. */
	if (kit_request_header_count(req) > proxy.max_request_headers)
		return kit_problem(req, 431, "the request has %d header fields; the gateway passes on at most %ld",
				   kit_request_header_count(req), proxy.max_request_headers);
	result = kit_request_body(req);
	if (result != KIT_NEXT)
		return result;

	/* 4. The exchange: each attempt on the instance the balancer picks.
	 *    Again, within the same timeout, on another instance when one
	 *    refused the connection (nothing was sent: safe for any method)
	 *    or, for idempotent methods, dropped it without an answer; and
	 *    once on a reused connection the upstream had closed. */
	struct upstream_result answer = { .body_limit = (size_t)proxy.config->max_response_bytes };
	bool pooling = proxy.config->max_idle_per_upstream > 0;
	bool send_body = req->body_len > 0 || strcmp(req->method, "POST") == 0 ||
			 strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0;
	static const char *const outcome_names[] = {
		[UPSTREAM_OK] = "answered", [UPSTREAM_REFUSED] = "connection refused",
		[UPSTREAM_TIMED_OUT] = "timed out", [UPSTREAM_DROPPED] = "closed before an answer",
		[UPSTREAM_BROKEN] = "a broken answer", [UPSTREAM_TOO_LARGE] = "an answer over the limit",
	};

	atomic_fetch_add(&upstream->pool.in_use, 1);
	for (int tries = 0;; tries++) {
		char trace_header[KIT_TRACE_HEADER_MAX];
		struct kit_span *span;

		instance = kit_balancer_pick(upstream, instance, kit_now_ns());
		upstream_url(url, sizeof(url), instance, route, req);
		span = kit_trace_client_start(req, operation, upstream->name, req->method,
					      url, trace_header);
		if (variant != NULL) {
			kit_span_tag_string(span, "split", route->split->name);
			kit_span_tag_string(span, "split.variant", variant->name);
		}
		headers = NULL;
		result = upstream_headers(req, trace_header, &headers);
		if (result != KIT_NEXT) {
			/* Refused before anything was sent (431, 400). */
			kit_trace_client_finish(span, 0);
			attempt_done(req, upstream, instance, false);
			atomic_fetch_sub(&upstream->pool.in_use, 1);
			free(answer.head);
			free(answer.body);
			return result;
		}
		/* Pooling off: a handshake per request, as the guide's "without
		 * connection pooling" picture (benchmarks). Above
		 * max_idle_per_upstream open connections, one is closed after
		 * use instead of kept. */
		struct upstream_request request = {
			.config = proxy.config,
			.method = req->method,
			.target = url + strlen(instance->url),
			.headers = headers,
			.body = req->body,
			.body_len = req->body_len,
			.send_body = send_body,
			.head_only = strcmp(req->method, "HEAD") == 0,
			.fresh_connection = !pooling,
			.close_after = !pooling || atomic_load(&upstream->pool.created) -
							   atomic_load(&upstream->pool.closed) >
						   proxy.config->max_idle_per_upstream,
			.deadline_ns = started + (uint64_t)route->timeout_ms * 1000000u,
		};
		atomic_fetch_add(&upstream->pool.requests, 1);
		kit_metric_add(proxy.requests, labels, 1);
		upstream_exchange(pool, upstream, instance, &request, &answer);
		status = answer.outcome == UPSTREAM_OK ? answer.status : 0;
		if (answer.outcome != UPSTREAM_OK)
			kit_span_log_error(span, outcome_names[answer.outcome]);
		kit_trace_client_finish(span, (int)status);
		curl_slist_free_all(headers);

		bool refused = answer.outcome == UPSTREAM_REFUSED;
		bool dropped = answer.outcome == UPSTREAM_DROPPED;
		bool stale = dropped && answer.reused; /* an idle connection closed:
		                                        * no fault of the instance's */
		/* The breaker counts what says the instance is unwell: no
		 * connection, no answer, too slow, or a gateway-class status
		 * (502/503/504: it is failing its own upstreams). */
		attempt_done(req, upstream, instance,
			     (answer.outcome != UPSTREAM_OK && !stale &&
			      answer.outcome != UPSTREAM_TOO_LARGE) ||
				     status == 502 || status == 503 || status == 504);
		bool time_left = route->timeout_ms - (long)((kit_now_ns() - started) / 1000000) > 0;
		bool another = tries + 1 < upstream->instance_count;
		if (time_left &&
		    ((refused && another) ||
		     (dropped && is_idempotent(req->method) && (another || (tries == 0 && answer.reused)))))
			continue;
		break;
	}
	atomic_fetch_sub(&upstream->pool.in_use, 1);
	kit_metric_observe(proxy.duration, labels, (double)(kit_now_ns() - started) / 1e9);

	/* 5. The answer. */
	switch (answer.outcome) {
	case UPSTREAM_OK: {
		const char *content_type = pass_headers(req, answer.head);

		result = kit_respond(req, (int)status, content_type, answer.body, answer.body_len);
		break;
	}
	case UPSTREAM_TIMED_OUT:
		result = upstream_problem(req, 504, upstream, "did not answer in time",
					  outcome_names[answer.outcome]);
		break;
	case UPSTREAM_REFUSED:
		result = upstream_problem(req, 502, upstream, "refused the connection",
					  outcome_names[answer.outcome]);
		break;
	case UPSTREAM_TOO_LARGE:
		result = upstream_problem(req, 502, upstream, "sent a response over the size limit",
					  outcome_names[answer.outcome]);
		break;
	default:
		result = upstream_problem(req, 502, upstream, "closed the connection without an answer",
					  outcome_names[answer.outcome]);
		break;
	}
	free(answer.head);
	free(answer.body);
	return result;
}

/* The handler of every route from the file: req->route_data is the route. */
static int proxy_handler(struct kit_request *req)
{
	return gateway_proxy_route(req, req->route_data);
}

/* ---- health and metrics ---- */

static void add_pool_stats(cJSON *object, const struct kit_pool_stats *pool)
{
	long created = atomic_load(&pool->created);
	long closed = atomic_load(&pool->closed);
	long in_use = atomic_load(&pool->in_use);
	long idle = created - closed - in_use;

	cJSON_AddNumberToObject(object, "created", (double)created);
	cJSON_AddNumberToObject(object, "errors", (double)atomic_load(&pool->errors));
	cJSON_AddNumberToObject(object, "closed", (double)closed);
	cJSON_AddNumberToObject(object, "idle", (double)(idle > 0 ? idle : 0));
	cJSON_AddNumberToObject(object, "in_use", (double)in_use);
	cJSON_AddNumberToObject(object, "requests", (double)atomic_load(&pool->requests));
}

/* One instance's own /health, through this thread's pool: NULL when it
 * answered 200, else what went wrong. */
static const char *instance_health(struct upstream_pool *pool, struct kit_upstream *upstream,
				   const struct kit_upstream_instance *instance)
{
	struct upstream_result answer = { .body_limit = 65536 };
	const struct upstream_request request = {
		.config = proxy.config, .method = "GET", .target = "/health",
		.deadline_ns = kit_now_ns() + 1000 * 1000000ULL,
	};
	const char *problem = NULL;

	if (pool == NULL)
		return "the gateway could not make a connection pool";
	upstream_exchange(pool, upstream, instance, &request, &answer);
	if (answer.outcome == UPSTREAM_REFUSED)
		problem = "the connection was refused";
	else if (answer.outcome == UPSTREAM_TIMED_OUT)
		problem = "no answer within 1 s";
	else if (answer.outcome != UPSTREAM_OK)
		problem = "no whole answer";
	else if (answer.status != 200)
		problem = "its /health did not answer 200";
	free(answer.head);
	free(answer.body);
	return problem;
}

/* /health/details: each instance's /health and breaker, and the pool.
 * Healthy while one instance is: the balancer sends around the others. */
static bool upstream_health(struct kit_request *req, void *arg, cJSON *check)
{
	struct kit_upstream *upstream = arg;
	struct upstream_pool *pool = kit_thread_resource(req, proxy.thread_slot);
	cJSON *instances = cJSON_AddArrayToObject(check, "instances");
	const char *problem = NULL;
	int up = 0;

	for (int i = 0; i < upstream->instance_count; i++) {
		const struct kit_upstream_instance *instance = &upstream->instances[i];
		const char *detail = instance_health(pool, upstream, instance);
		cJSON *entry = cJSON_CreateObject();

		if (entry == NULL)
			continue;
		cJSON_AddStringToObject(entry, "url", instance->url);
		cJSON_AddBoolToObject(entry, "healthy", detail == NULL);
		if (detail != NULL) {
			cJSON_AddStringToObject(entry, "detail", detail);
			problem = detail;
		} else {
			up++;
		}
		cJSON_AddStringToObject(entry, "circuit",
					kit_breaker_state_name(atomic_load(&instance->state)));
		cJSON_AddNumberToObject(entry, "consecutive_failures",
					(double)atomic_load(&instance->consecutive_failures));
		cJSON_AddNumberToObject(entry, "in_flight", (double)atomic_load(&instance->in_flight));
		cJSON_AddItemToArray(instances, entry);
	}
	add_pool_stats(cJSON_AddObjectToObject(check, "pool"), &upstream->pool);
	if (up == 0) {
		cJSON_AddStringToObject(check, "detail", problem != NULL ? problem : "no instance");
		return false;
	}
	return true;
}

static void collect_pool_metrics(void *arg)
{
	const struct kit_gateway_config *config = arg;

	for (int i = 0; i < config->upstream_count; i++) {
		const struct kit_upstream *upstream = &config->upstreams[i];
		const struct kit_pool_stats *pool = &upstream->pool;
		const char *name[] = { upstream->name };
		long open = atomic_load(&pool->created) - atomic_load(&pool->closed);
		long in_use = atomic_load(&pool->in_use);

		kit_metric_set(proxy.created, name, (double)atomic_load(&pool->created));
		kit_metric_set(proxy.closed, name, (double)atomic_load(&pool->closed));
		kit_metric_set(proxy.errors, name, (double)atomic_load(&pool->errors));
		kit_metric_set(proxy.connections, (const char *[]){ upstream->name, "in_use" },
			       (double)in_use);
		kit_metric_set(proxy.connections, (const char *[]){ upstream->name, "idle" },
			       (double)(open - in_use > 0 ? open - in_use : 0));
		for (int j = 0; j < upstream->instance_count; j++) {
			const struct kit_upstream_instance *instance = &upstream->instances[j];
			const char *labels[] = { upstream->name, instance->url };

			kit_metric_set(proxy.instance_state, labels,
				       (double)atomic_load(&instance->state));
			kit_metric_set(proxy.instance_in_flight, labels,
				       (double)atomic_load(&instance->in_flight));
			kit_metric_set(proxy.instance_requests, labels,
				       (double)atomic_load(&instance->requests));
			kit_metric_set(proxy.instance_failures, labels,
				       (double)atomic_load(&instance->failures));
			kit_metric_set(proxy.instance_ejections, labels,
				       (double)atomic_load(&instance->ejections));
		}
	}
}

void kit_gateway_mount(struct kit_app *app, struct kit_gateway_config *config)
{
	static const char *const upstream_label[] = { "upstream", NULL };
	static const char *const instance_labels[] = { "upstream", "url", NULL };

	if (config == NULL)
		return; /* kit_gateway_config_load has already failed start-up */
	if (curl_global_init(CURL_GLOBAL_NOTHING) != CURLE_OK) {
		kit_app_fail(app, "curl_global_init failed");
		return;
	}
	/* Room for the gateway's own: the upstream (civetweb) reads 64. */
	if (kit_env_long("MAX_REQUEST_HEADERS", 48, 1, KIT_PROXY_MAX_REQUEST_HEADERS,
			 &proxy.max_request_headers) != 0) {
		kit_app_fail(app, "MAX_REQUEST_HEADERS: at most %d, so that the %d the gateway adds still fit in an upstream's 64",
			     KIT_PROXY_MAX_REQUEST_HEADERS, KIT_PROXY_OWN_HEADERS);
		return;
	}
	proxy.config = config;
	proxy.thread_slot = kit_app_thread_resource(app, pool_create, pool_destroy, NULL);
	proxy.duration = kit_metric_register(KIT_HISTOGRAM, "gateway_upstream_request_duration_seconds",
		"Time from sending a request upstream to its last byte back, retry included.",
		upstream_label, NULL, 0);
	proxy.requests = kit_metric_register(KIT_COUNTER, "gateway_upstream_requests_total",
		"Requests sent to an upstream (a retry counts again).", upstream_label, NULL, 0);
	proxy.created = kit_metric_register(KIT_COUNTER, "gateway_upstream_connections_created_total",
		"Connections opened to an upstream.", upstream_label, NULL, 0);
	proxy.closed = kit_metric_register(KIT_COUNTER, "gateway_upstream_connections_closed_total",
		"Connections to an upstream closed by either side.", upstream_label, NULL, 0);
	proxy.errors = kit_metric_register(KIT_COUNTER, "gateway_upstream_connection_errors_total",
		"Connection attempts to an upstream that failed.", upstream_label, NULL, 0);
	proxy.connections = kit_metric_register(KIT_GAUGE, "gateway_upstream_connections",
		"Pooled connections to an upstream, idle or carrying a request.",
		(const char *const[]){ "upstream", "state", NULL }, NULL, 0);
	proxy.split_requests = kit_metric_register(KIT_COUNTER, "gateway_split_requests_total",
		"Requests a split route sent to each of its variants.",
		(const char *const[]){ "split", "variant", NULL }, NULL, 0);
	proxy.instance_state = kit_metric_register(KIT_GAUGE, "gateway_upstream_instance_circuit_state",
		"An upstream instance's circuit breaker: 0 closed (in rotation), 1 half open (a probe is out), 2 open (out of rotation).",
		instance_labels, NULL, 0);
	proxy.instance_in_flight = kit_metric_register(KIT_GAUGE, "gateway_upstream_instance_in_flight",
		"Attempts on the wire to an upstream instance.", instance_labels, NULL, 0);
	proxy.instance_requests = kit_metric_register(KIT_COUNTER, "gateway_upstream_instance_requests_total",
		"Attempts sent to an upstream instance (a retry counts on the instance it went to).",
		instance_labels, NULL, 0);
	proxy.instance_failures = kit_metric_register(KIT_COUNTER, "gateway_upstream_instance_failures_total",
		"Attempts to an upstream instance that failed: no connection, no answer, timed out, or 502/503/504.",
		instance_labels, NULL, 0);
	proxy.instance_ejections = kit_metric_register(KIT_COUNTER, "gateway_upstream_instance_ejections_total",
		"Times an upstream instance's circuit breaker opened (took it out of rotation).",
		instance_labels, NULL, 0);
	kit_metrics_on_render(collect_pool_metrics, config);

	for (int i = 0; i < config->upstream_count; i++)
		kit_app_health_report(app, config->upstreams[i].name, upstream_health,
				      &config->upstreams[i]);
	for (int i = 0; i < config->route_count; i++) {
		const struct kit_gateway_route *route = &config->routes[i];

		kit_route_add(app, &(struct kit_route_spec){
			.method = "*",
			.pattern = route->pattern,
			.handler = proxy_handler,
			.access = route->access,
			.rate_limit = route->rate_limit,
			.cache = route->cached ? &route->cache : NULL,
			.data = (void *)route,
			.loop_safe = true, /* it waits in kit_wait_fd only (upstream_http.c) */
		});
	}
	/* Last, so every route of the file matches first: what is left under
	 * /api is an unknown version or a path no version has. */
	if (config->version_count > 0)
		kit_route_add(app, &(struct kit_route_spec){
			.method = "*",
			.pattern = "/api/...",
			.handler = gateway_version_handler,
			.access = KIT_PUBLIC,
			.data = config,
			.loop_safe = true,
		});
}
