/*
 * test_proxy_headers.c - kit/gateway.h: kit_proxy_drop_request_header and
 * kit_proxy_drop_response_header, the filter between a client and an
 * upstream.
 *
 * Threat: request smuggling and identity spoofing through forwarded
 * headers. A client's Transfer-Encoding or Content-Length passed on beside
 * the gateway's own lets the client and the upstream disagree on where a
 * request ends; a client's X-User-Id passed on makes it whoever it says;
 * its X-Forwarded-For makes it any IP; a header named in Connection
 * ("Connection: close, X-Secret") is hop-by-hop by RFC 9110 7.6.1 and must
 * stop at the gateway; its uber-trace-id or traceparent would put the
 * upstream's span under the client's instead of the gateway's. Each case is paired with a positive control: an
 * end-to-end header that must still go through.
 *
 * Run alone: make && build/tests/test_proxy_headers
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "kit/gateway.h"

/* RFC 9110 7.6.1 and RFC 7230 6.1: never forwarded, either way. */
static const char *const HOP_BY_HOP[] = {
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"TE", "Trailer", "Transfer-Encoding", "Upgrade",
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

typedef bool (*drop_fn)(const char *name, const char *connection);

/* Fails naming the header, so a failing case says which one. */
static void expect_drop(drop_fn drop, const char *name, const char *connection)
{
	if (!drop(name, connection))
		fail_msg("\"%s\" (Connection: %s) was kept, must be dropped", name,
			 connection != NULL ? connection : "(none)");
}

static void expect_keep(drop_fn drop, const char *name, const char *connection)
{
	if (drop(name, connection))
		fail_msg("\"%s\" (Connection: %s) was dropped, must be kept", name,
			 connection != NULL ? connection : "(none)");
}

/* "Transfer-Encoding" -> "transfer-encoding" and "TRANSFER-ENCODING". */
static void case_variants(const char *name, char *lower, char *upper,
			  size_t size)
{
	snprintf(lower, size, "%s", name);
	snprintf(upper, size, "%s", name);
	for (size_t i = 0; lower[i] != '\0'; i++) {
		if (lower[i] >= 'A' && lower[i] <= 'Z')
			lower[i] = (char)(lower[i] - 'A' + 'a');
		if (upper[i] >= 'a' && upper[i] <= 'z')
			upper[i] = (char)(upper[i] - 'a' + 'A');
	}
}

/* Drops name in its own spelling, lower case and upper case. */
static void expect_drop_any_case(drop_fn drop, const char *name)
{
	char lower[64], upper[64];
	case_variants(name, lower, upper, sizeof(lower));
	expect_drop(drop, name, NULL);
	expect_drop(drop, lower, NULL);
	expect_drop(drop, upper, NULL);
}

static void expect_keep_any_case(drop_fn drop, const char *name)
{
	char lower[64], upper[64];
	case_variants(name, lower, upper, sizeof(lower));
	expect_keep(drop, name, NULL);
	expect_keep(drop, lower, NULL);
	expect_keep(drop, upper, NULL);
}

/* ---- hop-by-hop, both ways ------------------------------------------- */

static void test_request_drops_hop_by_hop(void **state)
{
	expect_keep(kit_proxy_drop_request_header, "Content-Type", NULL); /* control */
	for (size_t i = 0; i < COUNT(HOP_BY_HOP); i++)
		expect_drop_any_case(kit_proxy_drop_request_header, HOP_BY_HOP[i]);
	expect_drop(kit_proxy_drop_request_header, "connection", "close");
	expect_drop(kit_proxy_drop_request_header, "KEEP-ALIVE", "keep-alive");
}

static void test_response_drops_hop_by_hop(void **state)
{
	expect_keep(kit_proxy_drop_response_header, "Location", NULL); /* control */
	for (size_t i = 0; i < COUNT(HOP_BY_HOP); i++)
		expect_drop_any_case(kit_proxy_drop_response_header, HOP_BY_HOP[i]);
	expect_drop(kit_proxy_drop_response_header, "connection", "keep-alive");
	expect_drop(kit_proxy_drop_response_header, "KEEP-ALIVE", "keep-alive");
}

/* A name that only starts or ends like a hop-by-hop header is not one. */
static void test_hop_by_hop_matched_whole(void **state)
{
	static const char *const lookalikes[] = {
		"Connections", "X-Connection", "Upgrade-Insecure-Requests",
		"TE-Extra", "Transfer-Encodings", "Trailers", "Keep-Alive-X",
	};
	expect_drop(kit_proxy_drop_request_header, "Upgrade", NULL); /* control */
	for (size_t i = 0; i < COUNT(lookalikes); i++) {
		expect_keep(kit_proxy_drop_request_header, lookalikes[i], NULL);
		expect_keep(kit_proxy_drop_response_header, lookalikes[i], NULL);
	}
}

/* ---- tokens of the Connection header --------------------------------- */

static void check_connection_tokens(drop_fn drop)
{
	/* Control: without the Connection header, X-Secret is end to end. */
	expect_keep(drop, "X-Secret", NULL);
	expect_keep(drop, "X-Secret", "close");
	expect_keep(drop, "X-Secret", "");

	expect_drop(drop, "X-Secret", "close, X-Secret");
	expect_drop(drop, "x-secret", "close, X-Secret");
	expect_drop(drop, "X-SECRET", "close, x-secret");
	expect_drop(drop, "X-Secret", "X-Secret");
	expect_drop(drop, "X-Secret", "X-Secret, close");
	expect_drop(drop, "X-Secret", "close,X-Secret");
	expect_drop(drop, "X-Secret", "close ,\tX-Secret ");
	expect_drop(drop, "X-Other", "X-Secret, X-Other, keep-alive");

	/* Whole tokens only. */
	expect_keep(drop, "X-Secret-2", "close, X-Secret");
	expect_keep(drop, "X-Secre", "close, X-Secret");
	expect_keep(drop, "Secret", "close, X-Secret");
	expect_keep(drop, "X-Secret", "close, X-Secret-2");
	expect_keep(drop, "X-Secret", "close, X-X-Secret");
}

static void test_request_drops_connection_tokens(void **state)
{
	check_connection_tokens(kit_proxy_drop_request_header);
}

static void test_response_drops_connection_tokens(void **state)
{
	check_connection_tokens(kit_proxy_drop_response_header);
}

/* ---- request only: what the gateway sets itself ---------------------- */

/* Threat: a client sending X-User-Id: admin. Only the gateway, after
 * verifying the token, may say who the caller is. */
static void test_request_drops_identity(void **state)
{
	expect_keep(kit_proxy_drop_request_header, "Authorization", NULL); /* control */
	expect_drop_any_case(kit_proxy_drop_request_header, "X-User-Id");
	expect_drop_any_case(kit_proxy_drop_request_header, "X-User-Tier");
}

/* services' identity_headers.c says the gateway "removed any X-User-*
 * headers the client sent": a service that one day reads X-User-Email
 * must not get the client's. */
static void test_request_drops_any_x_user_header(void **state)
{
	expect_keep(kit_proxy_drop_request_header, "X-Username-Hint", NULL); /* control */
	expect_drop_any_case(kit_proxy_drop_request_header, "X-User-Email");
	expect_drop_any_case(kit_proxy_drop_request_header, "X-User-Role");
}

/* Threat: a client choosing its own IP (rate limits, logs) or the scheme
 * and host the upstream builds links from. */
static void test_request_drops_forwarding(void **state)
{
	expect_keep(kit_proxy_drop_request_header, "Accept", NULL); /* control */
	expect_drop_any_case(kit_proxy_drop_request_header, "X-Forwarded-For");
	expect_drop_any_case(kit_proxy_drop_request_header, "X-Forwarded-Proto");
	expect_drop_any_case(kit_proxy_drop_request_header, "X-Forwarded-Host");
}

/* Threat: request smuggling. libcurl writes the upstream's Host and the
 * body's length itself; a client's must not be sent beside them. */
static void test_request_drops_host_and_length(void **state)
{
	expect_keep(kit_proxy_drop_request_header, "Content-Type", NULL); /* control */
	expect_drop_any_case(kit_proxy_drop_request_header, "Host");
	expect_drop_any_case(kit_proxy_drop_request_header, "Content-Length");
}

/* The gateway passes its own request id on (req->request_id: the client's
 * when it was sane, else a fresh UUID). The client's raw X-Request-Id
 * forwarded as well would reach the upstream beside it, unchecked. */
static void test_request_drops_client_request_id(void **state)
{
	expect_keep(kit_proxy_drop_request_header, "X-Requested-With", NULL); /* control */
	expect_drop_any_case(kit_proxy_drop_request_header, "X-Request-Id");
}

static void test_request_keeps_end_to_end(void **state)
{
	static const char *const kept[] = {
		"Authorization", "Content-Type", "Accept", "Accept-Encoding",
		"Accept-Language", "Cookie", "User-Agent", "If-None-Match",
		"Cache-Control", "Origin", "X-Custom", "X-Forwarded",
	};
	expect_drop(kit_proxy_drop_request_header, "Host", NULL); /* control */
	for (size_t i = 0; i < COUNT(kept); i++)
		expect_keep_any_case(kit_proxy_drop_request_header, kept[i]);
	/* A Connection header naming none of them changes nothing. */
	for (size_t i = 0; i < COUNT(kept); i++)
		expect_keep(kit_proxy_drop_request_header, kept[i],
			    "keep-alive, X-Secret");
}

/* Threat: a client choosing its place in a trace. The gateway continues
 * the caller's trace in its own server span and sends the upstream its
 * client span's context (uber-trace-id) instead; the client's own
 * uber-trace-id or W3C traceparent/tracestate passed on beside it would
 * give the upstream two parents, or make it a child of the client and
 * hide the gateway's span. Baggage (uberctx-*) is end to end. */
static void test_request_drops_trace_context(void **state)
{
	expect_keep(kit_proxy_drop_request_header, "uberctx-tenant", NULL); /* control */
	expect_keep(kit_proxy_drop_request_header, "X-Trace-Id-Hint", NULL); /* control */
	expect_drop_any_case(kit_proxy_drop_request_header, "uber-trace-id");
	expect_drop_any_case(kit_proxy_drop_request_header, "traceparent");
	expect_drop_any_case(kit_proxy_drop_request_header, "tracestate");
}

/* ---- response only --------------------------------------------------- */

/* The gateway writes its own Content-Length (it may have cut or re-read
 * the body) and Date. */
static void test_response_drops_length_and_date(void **state)
{
	expect_keep(kit_proxy_drop_response_header, "Location", NULL); /* control */
	expect_drop_any_case(kit_proxy_drop_response_header, "Content-Length");
	expect_drop_any_case(kit_proxy_drop_response_header, "Date");
}

/* The gateway's own X-Trace-ID and X-Request-Id describe the whole
 * exchange; the service's copies would only duplicate or contradict them.
 * X-Instance is kept: it says which service copy answered. */
static void test_response_drops_gateway_owned_ids(void **state)
{
	expect_drop_any_case(kit_proxy_drop_response_header, "X-Trace-ID");
	expect_drop_any_case(kit_proxy_drop_response_header, "X-Request-Id");
	expect_keep(kit_proxy_drop_response_header, "X-Instance", NULL); /* control */
}

static void test_response_keeps_end_to_end(void **state)
{
	static const char *const kept[] = {
		"Content-Type", "Location", "Set-Cookie", "Cache-Control",
		"ETag", "Last-Modified", "Vary", "WWW-Authenticate",
		"Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
		"X-RateLimit-Reset", "X-Custom",
	};
	expect_drop(kit_proxy_drop_response_header, "Content-Length", NULL); /* control */
	for (size_t i = 0; i < COUNT(kept); i++)
		expect_keep_any_case(kit_proxy_drop_response_header, kept[i]);
}

/* An optional argument runs only the tests whose names match it
 * (cmocka's pattern: '*' and '?' wildcards). */
/* Threat: many servers read '_' as '-' (nginx with underscores_in_headers,
 * CGI's HTTP_X_USER_ID, WSGI), so "X_User_Id: mallory" would reach a
 * service as X-User-Id. Every name the filter drops is dropped in its
 * underscore spelling too. Positive control: an ordinary header with an
 * underscore still goes through. */
static void test_request_drops_underscore_spellings(void **state)
{
	static const char *const names[] = {
		"X_User_Id", "x_user_tier", "X-User_Role", "X_USER-ID",
		"X_Forwarded_For", "x_forwarded_host", "X_Request_Id",
		"Transfer_Encoding", "Content_Length", "Proxy_Authorization",
		"uber_trace_id", "Keep_Alive",
	};

	for (size_t i = 0; i < COUNT(names); i++)
		expect_drop(kit_proxy_drop_request_header, names[i], NULL);
	expect_keep(kit_proxy_drop_request_header, "X_Custom_Thing", NULL);
	expect_keep(kit_proxy_drop_request_header, "X-Userid", NULL);
	/* A Connection token in either spelling names the same header. */
	expect_drop(kit_proxy_drop_request_header, "X-Secret", "x_secret");
	expect_drop(kit_proxy_drop_request_header, "X_Secret", "X-Secret");
}

/* Threat: a second Connection line ("Connection: keep-alive" then
 * "Connection: X-Secret"). The proxy joins every line into one list
 * before asking the filter; a token from any line is dropped. */
static void test_connection_lines_joined(void **state)
{
	const char *joined = "keep-alive, X-Secret";

	expect_drop(kit_proxy_drop_request_header, "X-Secret", joined);
	expect_drop(kit_proxy_drop_response_header, "X-Secret", joined);
	expect_keep(kit_proxy_drop_request_header, "X-Other", joined);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_drops_hop_by_hop),
		cmocka_unit_test(test_response_drops_hop_by_hop),
		cmocka_unit_test(test_hop_by_hop_matched_whole),
		cmocka_unit_test(test_request_drops_connection_tokens),
		cmocka_unit_test(test_response_drops_connection_tokens),
		cmocka_unit_test(test_request_drops_identity),
		cmocka_unit_test(test_request_drops_any_x_user_header),
		cmocka_unit_test(test_request_drops_forwarding),
		cmocka_unit_test(test_request_drops_host_and_length),
		cmocka_unit_test(test_request_drops_client_request_id),
		cmocka_unit_test(test_request_drops_trace_context),
		cmocka_unit_test(test_request_keeps_end_to_end),
		cmocka_unit_test(test_response_drops_length_and_date),
		cmocka_unit_test(test_response_drops_gateway_owned_ids),
		cmocka_unit_test(test_response_keeps_end_to_end),
		cmocka_unit_test(test_request_drops_underscore_spellings),
		cmocka_unit_test(test_connection_lines_joined),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
