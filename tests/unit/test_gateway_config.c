/*
 * test_gateway_config.c - kit/gateway.h: kit_gateway_config_parse, the
 * gateway's route table read from JSON.
 *
 * Threat: a gateway file that is wrong but accepted. A typo ("prefx") that
 * is silently ignored, an upstream name that matches nothing, a prefix
 * without its leading '/', an access level nobody knows: each one starts a
 * gateway that routes somewhere else, or protects less, than its file says.
 * Every bad file here must be refused with a message naming the file, the
 * field and the problem, and every refusal is paired with a positive
 * control (the same file with that one field right parses).
 *
 * The shipped phase2-gateway/gateway.json and phase3-advanced/gateway.json
 * are read from the repository root (make and tests/run.sh run the tests
 * from there). The errors provoked on purpose are printed to stderr
 * (2>/dev/null hides them).
 *
 * Phase 3's parts have threats of their own: a route that names both an
 * upstream and a split (which one serves?), a split whose weights do not
 * say what the reader thinks (0, negative, not adding up to 100), two
 * variants of one name (X-Variant and the metric could not tell them
 * apart), a "versions" list the catch-all would misread.
 *
 * Run alone: make && build/tests/test_gateway_config
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kit/gateway.h"

#define SHIPPED "phase2-gateway/gateway.json"
#define SHIPPED3 "phase3-advanced/gateway.json"
#define FILE_NAME "test-gateway.json" /* the path handed to the parser */
#define ENV_URL "KIT_TEST_GATEWAY_URL"

/* A file with one upstream, "svc", and the given routes array body. */
#define UPSTREAM_SVC "\"upstreams\": {\"svc\": {\"url\": \"http://127.0.0.1:9001\"}}"

/* ---- helpers --------------------------------------------------------- */

/* printf into a malloc'd string (the test's own JSON, never user input). */
static char *fmt(const char *format, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *format, ...)
{
	char *out = NULL;
	va_list ap;
	va_start(ap, format);
	assert_true(vasprintf(&out, format, ap) >= 0);
	va_end(ap);
	return out;
}

static char *read_whole_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s (tests run from the repository root)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long size = ftell(f);
	assert_true(size > 0);
	rewind(f);
	char *text = malloc((size_t)size + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
	text[size] = '\0';
	fclose(f);
	return text;
}

/* A config filled with garbage, as malloc() would hand it to the parser:
 * a parser that relies on zeroed memory shows. */
static struct kit_gateway_config *new_config(void)
{
	struct kit_gateway_config *config = malloc(sizeof(*config));
	assert_non_null(config);
	memset(config, 0xA5, sizeof(*config));
	return config;
}

/* Parses text and fails the test, with the parser's message, unless it is
 * accepted. The caller frees the config. */
static struct kit_gateway_config *parse_ok_as(const char *path,
					      const char *text)
{
	struct kit_gateway_config *config = new_config();
	char error[512] = "";
	int rc = kit_gateway_config_parse(path, text, config, error,
					  sizeof(error));
	if (rc != 0)
		fail_msg("expected %s to parse, got %d: %s\n%s", path, rc, error,
			 text);
	return config;
}

static struct kit_gateway_config *parse_ok(const char *text)
{
	return parse_ok_as(FILE_NAME, text);
}

static void expect_accepted(const char *text)
{
	free(parse_ok(text));
}

/* Expects text to be refused (-1) with a message that contains the file
 * name and each of the given parts (NULL ends the list). */
static void expect_refused(const char *text, ...)
{
	struct kit_gateway_config *config = new_config();
	char error[512];
	memset(error, 0, sizeof(error));
	int rc = kit_gateway_config_parse(FILE_NAME, text, config, error,
					  sizeof(error));
	fprintf(stderr, "  provoked: %s\n", error);
	if (rc != -1)
		fail_msg("expected -1, got %d for:\n%s", rc, text);
	assert_non_null(memchr(error, '\0', sizeof(error)));
	if (strstr(error, FILE_NAME) == NULL)
		fail_msg("message does not name the file %s: \"%s\"", FILE_NAME,
			 error);
	va_list ap;
	va_start(ap, text);
	for (const char *part = va_arg(ap, const char *); part != NULL;
	     part = va_arg(ap, const char *)) {
		if (strstr(error, part) == NULL)
			fail_msg("message lacks \"%s\": \"%s\"", part, error);
	}
	va_end(ap);
	free(config);
}

/* A file with upstream "svc", a first route "/ok" and route as routes[1],
 * so a message has to name the right index. */
static char *with_second_route(const char *route)
{
	return fmt("{" UPSTREAM_SVC ", \"routes\": ["
		   "{\"prefix\": \"/ok\", \"upstream\": \"svc\"}, %s]}",
		   route);
}

/* The second route must be accepted as good and refused as bad, with
 * the parts in the message. */
static void check_route_field(const char *good, const char *bad,
			      const char *part1, const char *part2)
{
	char *text = with_second_route(good);
	expect_accepted(text); /* control */
	free(text);
	text = with_second_route(bad);
	expect_refused(text, part1, part2, NULL);
	free(text);
}

static const struct kit_upstream *find_upstream(
	const struct kit_gateway_config *config, const char *name)
{
	for (int i = 0; i < config->upstream_count; i++) {
		if (strcmp(config->upstreams[i].name, name) == 0)
			return &config->upstreams[i];
	}
	fail_msg("no upstream named %s", name);
	return NULL;
}

/* ---- the shipped file ------------------------------------------------ */

static void unset_shipped_env(void)
{
	unsetenv("USERS_URL");
	unsetenv("URL_SHORTENER_URL");
	unsetenv("ANALYTICS_URL");
	unsetenv("NOTIFICATIONS_URL");
}

static void test_shipped_file_upstreams_and_pool(void **state)
{
	unset_shipped_env();
	char *text = read_whole_file(SHIPPED);
	struct kit_gateway_config *config = parse_ok_as(SHIPPED, text);

	assert_string_equal(config->path, SHIPPED);
	assert_int_equal(config->upstream_count, 4);
	assert_string_equal(find_upstream(config, "notifications")->instances[0].url,
			    "http://127.0.0.1:8087");
	assert_string_equal(find_upstream(config, "users")->instances[0].url,
			    "http://127.0.0.1:8083");
	assert_string_equal(find_upstream(config, "url-shortener")->instances[0].url,
			    "http://127.0.0.1:8081");
	assert_string_equal(find_upstream(config, "analytics")->instances[0].url,
			    "http://127.0.0.1:8082");

	assert_int_equal(config->max_idle_per_thread, 4);
	assert_int_equal(config->idle_timeout_seconds, 20);
	assert_int_equal(config->connect_timeout_ms, 500);
	assert_int_equal(config->max_response_bytes, 8388608);

	assert_int_equal(config->policy_count, 1);
	assert_string_equal(config->policies[0].name, "login");
	assert_int_equal(config->policies[0].window_seconds, 60);
	assert_int_equal(config->policies[0].anonymous_limit, 20);
	assert_int_equal(config->policies[0].free_limit, 20);
	assert_int_equal(config->policies[0].premium_limit, 20);
	/* Logins and registrations keep a limit while Redis is down. */
	assert_int_equal(config->policies[0].on_redis_failure, KIT_RATE_ON_REDIS_LOCAL);
	free(config);
	free(text);
}

static void test_shipped_file_routes(void **state)
{
	static const struct {
		const char *prefix, *pattern, *rewrite, *upstream;
		enum kit_access access;
		bool login_policy;
		long timeout_ms;
	} expected[] = {
		{ "/api/v1/auth", "/api/v1/auth/...", "/auth", "users",
		  KIT_PUBLIC, true, 5000 },
		{ "/api/v1/users", "/api/v1/users/...", "/users", "users",
		  KIT_AUTHENTICATED, false, 2000 },
		{ "/api/v1/shorten", "/api/v1/shorten/...", "/shorten",
		  "url-shortener", KIT_AUTHENTICATED, false, 2000 },
		{ "/api/v1/expand", "/api/v1/expand/...", "/expand",
		  "url-shortener", KIT_PUBLIC, false, 2000 },
		{ "/api/v1/analytics", "/api/v1/analytics/...", "/analytics",
		  "analytics", KIT_AUTHENTICATED, false, 2000 },
		{ "/api/v1/notifications", "/api/v1/notifications/...", "/notifications",
		  "notifications", KIT_AUTHENTICATED, false, 2000 },
		{ "/r", "/r/...", "/r", "url-shortener", KIT_PUBLIC, false, 2000 },
	};
	unset_shipped_env();
	char *text = read_whole_file(SHIPPED);
	struct kit_gateway_config *config = parse_ok_as(SHIPPED, text);

	assert_int_equal(config->route_count, 7);
	for (int i = 0; i < 7; i++) {
		const struct kit_gateway_route *r = &config->routes[i];
		assert_string_equal(r->prefix, expected[i].prefix);
		assert_string_equal(r->pattern, expected[i].pattern);
		assert_string_equal(r->rewrite, expected[i].rewrite);
		/* The route points at the config's own upstream. */
		assert_non_null(r->upstream);
		assert_true(r->upstream >= config->upstreams &&
			    r->upstream < config->upstreams + config->upstream_count);
		assert_string_equal(r->upstream->name, expected[i].upstream);
		assert_int_equal(r->access, expected[i].access);
		assert_int_equal(r->timeout_ms, expected[i].timeout_ms);
		if (expected[i].login_policy) {
			assert_ptr_equal(r->rate_limit, &config->policies[0]);
			assert_string_equal(r->rate_limit->name, "login");
		} else {
			assert_null(r->rate_limit);
		}
	}
	free(config);
	free(text);
}

/* Phase 2's file has neither versions nor splits: no catch-all, and every
 * route has its upstream. */
static void test_shipped_file_has_no_phase3_parts(void **state)
{
	unset_shipped_env();
	char *text = read_whole_file(SHIPPED);
	struct kit_gateway_config *config = parse_ok_as(SHIPPED, text);

	assert_int_equal(config->version_count, 0);
	assert_int_equal(config->split_count, 0);
	for (int i = 0; i < config->route_count; i++) {
		assert_non_null(config->routes[i].upstream);
		assert_null(config->routes[i].split);
	}
	free(config);
	free(text);
}

static void unset_shipped3_env(void)
{
	unsetenv("USERS_URL");
	unsetenv("ANALYTICS_URL");
	unsetenv("URL_SHORTENER_V1_URL");
	unsetenv("URL_SHORTENER_V2_URL");
	unsetenv("URL_SHORTENER_V2_CANARY_URL");
	unsetenv("NOTIFICATIONS_URL");
}

static void test_shipped3_file(void **state)
{
	static const struct {
		const char *prefix, *upstream, *split;
		enum kit_access access;
	} expected[] = {
		{ "/api/v1/auth", "users", NULL, KIT_PUBLIC },
		{ "/api/v1/users", "users", NULL, KIT_AUTHENTICATED },
		{ "/api/v1/shorten", "url-shortener-v1", NULL, KIT_AUTHENTICATED },
		{ "/api/v1/expand", "url-shortener-v1", NULL, KIT_PUBLIC },
		{ "/api/v1/analytics", "analytics", NULL, KIT_AUTHENTICATED },
		{ "/api/v1/notifications", "notifications", NULL, KIT_AUTHENTICATED },
		{ "/api/v2/auth", "users", NULL, KIT_PUBLIC },
		{ "/api/v2/users", "users", NULL, KIT_AUTHENTICATED },
		{ "/api/v2/shorten", NULL, "shortener-v2", KIT_AUTHENTICATED },
		{ "/api/v2/expand", NULL, "shortener-v2", KIT_PUBLIC },
		{ "/api/v2/analytics", "analytics", NULL, KIT_AUTHENTICATED },
		{ "/api/v2/notifications", "notifications", NULL, KIT_AUTHENTICATED },
		{ "/r", "url-shortener-v1", NULL, KIT_PUBLIC },
	};
	unset_shipped3_env();
	char *text = read_whole_file(SHIPPED3);
	struct kit_gateway_config *config = parse_ok_as(SHIPPED3, text);

	assert_int_equal(config->upstream_count, 6);
	assert_string_equal(find_upstream(config, "url-shortener-v2")->instances[0].url,
			    "http://127.0.0.1:8084");
	assert_string_equal(find_upstream(config, "url-shortener-v2-canary")->instances[0].url,
			    "http://127.0.0.1:8085");
	/* API v1 as two instances (make up PHASE=3: url-shortener-b). */
	assert_int_equal(find_upstream(config, "url-shortener-v1")->instance_count, 2);
	assert_string_equal(find_upstream(config, "url-shortener-v1")->instances[1].url,
			    "http://127.0.0.1:8086");

	assert_int_equal(config->version_count, 2);
	assert_string_equal(config->versions[0], "v1");
	assert_string_equal(config->versions[1], "v2");

	assert_int_equal(config->split_count, 1);
	const struct kit_split *split = &config->splits[0];
	assert_string_equal(split->name, "shortener-v2");
	assert_int_equal(split->sticky_by, KIT_SPLIT_STICKY_USER);
	assert_int_equal(split->variant_count, 2);
	assert_string_equal(split->variants[0].name, "stable");
	assert_int_equal(split->variants[0].weight, 90);
	assert_ptr_equal(split->variants[0].upstream,
			 find_upstream(config, "url-shortener-v2"));
	assert_string_equal(split->variants[1].name, "canary");
	assert_int_equal(split->variants[1].weight, 10);
	assert_ptr_equal(split->variants[1].upstream,
			 find_upstream(config, "url-shortener-v2-canary"));

	assert_int_equal(config->route_count, 13);
	for (int i = 0; i < 13; i++) {
		const struct kit_gateway_route *r = &config->routes[i];
		assert_string_equal(r->prefix, expected[i].prefix);
		assert_int_equal(r->access, expected[i].access);
		if (expected[i].split != NULL) {
			assert_null(r->upstream);
			assert_ptr_equal(r->split, split);
		} else {
			assert_null(r->split);
			assert_non_null(r->upstream);
			assert_string_equal(r->upstream->name, expected[i].upstream);
		}
	}
	assert_ptr_equal(config->routes[6].rate_limit, &config->policies[0]);
	free(config);
	free(text);
}

/* ---- splits ---------------------------------------------------------- */

/* Two upstreams, a split "ab" with the given variants array, a first
 * route "/ok" and route as routes[1]. */
static char *split_file(const char *variants, const char *route)
{
	return fmt("{\"upstreams\": {\"svc\": {\"url\": \"http://127.0.0.1:9001\"}, "
		   "\"svc2\": {\"url\": \"http://127.0.0.1:9002\"}}, "
		   "\"splits\": {\"ab\": {\"sticky_by\": \"user\", \"variants\": %s}}, "
		   "\"routes\": [{\"prefix\": \"/ok\", \"upstream\": \"svc\"}, %s]}",
		   variants, route);
}

#define GOOD_VARIANTS \
	"[{\"name\": \"stable\", \"upstream\": \"svc\", \"weight\": 90}," \
	" {\"name\": \"canary\", \"upstream\": \"svc2\", \"weight\": 10}]"
#define SPLIT_ROUTE "{\"prefix\": \"/s\", \"split\": \"ab\"}"

static void expect_split_file_accepted(const char *variants, const char *route)
{
	char *text = split_file(variants, route);
	expect_accepted(text);
	free(text);
}

static void expect_split_file_refused(const char *variants, const char *route,
				      const char *part1, const char *part2)
{
	char *text = split_file(variants, route);
	expect_refused(text, part1, part2, NULL);
	free(text);
}

static void test_split_route_parses(void **state)
{
	char *text = split_file(GOOD_VARIANTS, SPLIT_ROUTE);
	struct kit_gateway_config *config = parse_ok(text);

	assert_int_equal(config->split_count, 1);
	assert_int_equal(config->splits[0].variant_count, 2);
	assert_null(config->routes[1].upstream);
	assert_ptr_equal(config->routes[1].split, &config->splits[0]);
	assert_ptr_equal(config->splits[0].variants[1].upstream, &config->upstreams[1]);
	free(config);
	free(text);

	/* sticky_by may be left out: "user" is the only kind. */
	text = fmt("{" UPSTREAM_SVC ", \"splits\": {\"ab\": {\"variants\": "
		   "[{\"name\": \"a\", \"upstream\": \"svc\", \"weight\": 50},"
		   " {\"name\": \"b\", \"upstream\": \"svc\", \"weight\": 50}]}}, "
		   "\"routes\": [" SPLIT_ROUTE "]}");
	config = parse_ok(text);
	assert_int_equal(config->splits[0].sticky_by, KIT_SPLIT_STICKY_USER);
	free(config);
	free(text);
}

/* Threat: a route whose file says two things; which one serves? */
static void test_split_and_upstream_both(void **state)
{
	expect_split_file_accepted(GOOD_VARIANTS, SPLIT_ROUTE); /* control */
	expect_split_file_refused(GOOD_VARIANTS,
				  "{\"prefix\": \"/s\", \"split\": \"ab\", \"upstream\": \"svc\"}",
				  "routes[1]", "exactly one");
}

static void test_split_and_upstream_neither(void **state)
{
	expect_split_file_accepted(GOOD_VARIANTS, SPLIT_ROUTE); /* control */
	expect_split_file_refused(GOOD_VARIANTS, "{\"prefix\": \"/s\"}",
				  "routes[1]", "\"split\"");
}

static void test_unknown_split_name(void **state)
{
	expect_split_file_accepted(GOOD_VARIANTS, SPLIT_ROUTE); /* control */
	expect_split_file_refused(GOOD_VARIANTS, "{\"prefix\": \"/s\", \"split\": \"abc\"}",
				  "routes[1].split", "\"abc\"");
	expect_split_file_refused(GOOD_VARIANTS, "{\"prefix\": \"/s\", \"split\": 1}",
				  "routes[1].split", "string");
}

static void test_split_needs_two_variants(void **state)
{
	expect_split_file_accepted(GOOD_VARIANTS, SPLIT_ROUTE); /* control */
	expect_split_file_refused("[{\"name\": \"stable\", \"upstream\": \"svc\", \"weight\": 100}]",
				  SPLIT_ROUTE, "splits.ab.variants", "two");
	expect_split_file_refused("[]", SPLIT_ROUTE, "splits.ab.variants", "two");
	expect_split_file_refused("{\"name\": \"stable\"}", SPLIT_ROUTE,
				  "splits.ab.variants", NULL);
}

static void test_split_weights(void **state)
{
	static const char *const bad[] = { "0", "-10", "1.5", "\"10\"", "true", "null", "101" };

	expect_split_file_accepted( /* control: another pair adding up to 100 */
		"[{\"name\": \"stable\", \"upstream\": \"svc\", \"weight\": 1},"
		" {\"name\": \"canary\", \"upstream\": \"svc2\", \"weight\": 99}]",
		SPLIT_ROUTE);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *variants = fmt("[{\"name\": \"stable\", \"upstream\": \"svc\", \"weight\": 90},"
				     " {\"name\": \"canary\", \"upstream\": \"svc2\", \"weight\": %s}]",
				     bad[i]);
		expect_split_file_refused(variants, SPLIT_ROUTE,
					  "splits.ab.variants[1].weight", NULL);
		free(variants);
	}
	/* A missing weight is not 0 or 50: it is an error. */
	expect_split_file_refused("[{\"name\": \"stable\", \"upstream\": \"svc\", \"weight\": 90},"
				  " {\"name\": \"canary\", \"upstream\": \"svc2\"}]",
				  SPLIT_ROUTE, "splits.ab.variants[1].weight", "required");
	/* Percentages: 90 + 20 is not what the reader thinks. */
	expect_split_file_refused("[{\"name\": \"stable\", \"upstream\": \"svc\", \"weight\": 90},"
				  " {\"name\": \"canary\", \"upstream\": \"svc2\", \"weight\": 20}]",
				  SPLIT_ROUTE, "splits.ab.variants", "110");
	expect_split_file_refused("[{\"name\": \"stable\", \"upstream\": \"svc\", \"weight\": 45},"
				  " {\"name\": \"canary\", \"upstream\": \"svc2\", \"weight\": 45}]",
				  SPLIT_ROUTE, "splits.ab.variants", "90");
}

/* Threat: two variants X-Variant, the response header and the metric
 * cannot tell apart. */
static void test_split_duplicate_variant_names(void **state)
{
	expect_split_file_accepted(GOOD_VARIANTS, SPLIT_ROUTE); /* control */
	expect_split_file_refused("[{\"name\": \"stable\", \"upstream\": \"svc\", \"weight\": 90},"
				  " {\"name\": \"stable\", \"upstream\": \"svc2\", \"weight\": 10}]",
				  SPLIT_ROUTE, "splits.ab.variants[1].name", "stable");
	/* A name that is not a label: upper case, empty, a space. */
	expect_split_file_refused("[{\"name\": \"Stable\", \"upstream\": \"svc\", \"weight\": 90},"
				  " {\"name\": \"canary\", \"upstream\": \"svc2\", \"weight\": 10}]",
				  SPLIT_ROUTE, "splits.ab.variants[0].name", NULL);
	expect_split_file_refused("[{\"name\": \"\", \"upstream\": \"svc\", \"weight\": 90},"
				  " {\"name\": \"canary\", \"upstream\": \"svc2\", \"weight\": 10}]",
				  SPLIT_ROUTE, "splits.ab.variants[0].name", NULL);
}

static void test_split_variant_unknown_upstream(void **state)
{
	expect_split_file_accepted(GOOD_VARIANTS, SPLIT_ROUTE); /* control */
	expect_split_file_refused("[{\"name\": \"stable\", \"upstream\": \"svc\", \"weight\": 90},"
				  " {\"name\": \"canary\", \"upstream\": \"svc3\", \"weight\": 10}]",
				  SPLIT_ROUTE, "splits.ab.variants[1].upstream", "svc3");
}

/* Threat: a typo silently ignored ("wieght" leaving a variant without
 * its share, "stiky_by" a split without its key). */
static void test_split_unknown_members(void **state)
{
	char *text;

	expect_split_file_accepted(GOOD_VARIANTS, SPLIT_ROUTE); /* control */
	expect_split_file_refused("[{\"name\": \"stable\", \"upstream\": \"svc\", \"weight\": 90},"
				  " {\"name\": \"canary\", \"upstream\": \"svc2\", \"weight\": 10, "
				  "\"wieght\": 20}]",
				  SPLIT_ROUTE, "splits.ab.variants[1]", "wieght");
	text = fmt("{" UPSTREAM_SVC ", \"splits\": {\"ab\": {\"stiky_by\": \"user\", "
		   "\"variants\": [{\"name\": \"a\", \"upstream\": \"svc\", \"weight\": 50},"
		   " {\"name\": \"b\", \"upstream\": \"svc\", \"weight\": 50}]}}, "
		   "\"routes\": [" SPLIT_ROUTE "]}");
	expect_refused(text, "splits.ab", "stiky_by", NULL);
	free(text);
	/* sticky_by knows one kind. */
	text = fmt("{" UPSTREAM_SVC ", \"splits\": {\"ab\": {\"sticky_by\": \"session\", "
		   "\"variants\": [{\"name\": \"a\", \"upstream\": \"svc\", \"weight\": 50},"
		   " {\"name\": \"b\", \"upstream\": \"svc\", \"weight\": 50}]}}, "
		   "\"routes\": [" SPLIT_ROUTE "]}");
	expect_refused(text, "splits.ab.sticky_by", "session", NULL);
	free(text);
	/* Not an object. */
	text = fmt("{" UPSTREAM_SVC ", \"splits\": [], \"routes\": [{\"prefix\": \"/a\", "
		   "\"upstream\": \"svc\"}]}");
	expect_refused(text, "splits", NULL);
	free(text);
}

/* ---- versions -------------------------------------------------------- */

static char *versions_file(const char *versions, const char *prefix)
{
	return fmt("{\"versions\": %s, " UPSTREAM_SVC ", \"routes\": "
		   "[{\"prefix\": \"%s\", \"upstream\": \"svc\"}]}", versions, prefix);
}

static void test_versions_parse(void **state)
{
	char *text = versions_file("[\"v1\", \"v2\", \"v10\"]", "/api/v10/things");
	struct kit_gateway_config *config = parse_ok(text);

	assert_int_equal(config->version_count, 3);
	assert_string_equal(config->versions[0], "v1");
	assert_string_equal(config->versions[1], "v2");
	assert_string_equal(config->versions[2], "v10");
	free(config);
	free(text);
}

/* "versions" must be a non-empty array of distinct "v<digits>" strings. */
static void test_versions_bad(void **state)
{
	static const char *const bad[] = {
		"\"v1\"", "{}", "[]", "[1]", "[\"1\"]", "[\"v\"]", "[\"v1x\"]", "[\"V1\"]",
		"[\"v1\", \"v1\"]", "[\"v1\", null]", "[\" v1\"]", "[\"v1234567890\"]",
	};
	/* The route is under no version, so only the list can be refused. */
	char *text = versions_file("[\"v1\"]", "/things");
	expect_accepted(text); /* control */
	free(text);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		text = versions_file(bad[i], "/things");
		expect_refused(text, "versions", NULL);
		free(text);
	}
}

/* A route under a version the list does not have would be served while
 * the catch-all calls that version unknown. */
static void test_route_under_unlisted_version(void **state)
{
	char *text = versions_file("[\"v1\", \"v2\"]", "/api/v2/things");
	expect_accepted(text); /* control */
	free(text);
	text = versions_file("[\"v1\", \"v2\"]", "/api/v3/things");
	expect_refused(text, "routes[0].prefix", "v3", NULL);
	free(text);
	/* Not a version segment at all: fine. */
	text = versions_file("[\"v1\"]", "/api/status");
	expect_accepted(text);
	free(text);
	/* Without "versions" nothing is checked (Phase 2). */
	expect_accepted("{" UPSTREAM_SVC ", \"routes\": "
			"[{\"prefix\": \"/api/v3/things\", \"upstream\": \"svc\"}]}");
}

/* ---- defaults -------------------------------------------------------- */

static void test_minimal_file_defaults(void **state)
{
	struct kit_gateway_config *config = parse_ok(
		"{" UPSTREAM_SVC ", \"routes\": "
		"[{\"prefix\": \"/api/v1/things\", \"upstream\": \"svc\"}]}");

	assert_string_equal(config->path, FILE_NAME);
	assert_int_equal(config->upstream_count, 1);
	assert_string_equal(config->upstreams[0].name, "svc");
	assert_string_equal(config->upstreams[0].instances[0].url, "http://127.0.0.1:9001");
	assert_int_equal(config->policy_count, 0);
	assert_int_equal(config->route_count, 1);

	const struct kit_gateway_route *r = &config->routes[0];
	assert_string_equal(r->prefix, "/api/v1/things");
	assert_string_equal(r->pattern, "/api/v1/things/...");
	assert_string_equal(r->rewrite, "/api/v1/things"); /* no rewrite */
	assert_ptr_equal(r->upstream, &config->upstreams[0]);
	assert_null(r->rate_limit);
	assert_int_equal(r->timeout_ms, 5000);

	assert_int_equal(config->max_idle_per_thread, 4);
	assert_int_equal(config->idle_timeout_seconds, 20);
	assert_int_equal(config->connect_timeout_ms, 500);
	assert_int_equal(config->max_response_bytes, 8 * 1024 * 1024);
	free(config);
}

/* Threat: a route that forgot "access" being public. A route is protected
 * unless its file says "public". */
static void test_access_defaults_to_authenticated(void **state)
{
	struct kit_gateway_config *config = parse_ok(
		"{" UPSTREAM_SVC ", \"routes\": ["
		"{\"prefix\": \"/open\", \"upstream\": \"svc\", \"access\": \"public\"},"
		"{\"prefix\": \"/closed\", \"upstream\": \"svc\"}]}");

	assert_int_equal(config->route_count, 2);
	assert_int_equal(config->routes[0].access, KIT_PUBLIC); /* control */
	assert_int_equal(config->routes[1].access, KIT_AUTHENTICATED);
	free(config);
}

/* ---- url_env and the URL's trailing slash ---------------------------- */

static const char URL_ENV_FILE[] =
	"{\"upstreams\": {\"svc\": {\"url\": \"http://127.0.0.1:9001\", "
	"\"url_env\": \"" ENV_URL "\"}}, "
	"\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}";

static void test_url_env_overrides_file_url(void **state)
{
	unsetenv(ENV_URL);
	struct kit_gateway_config *config = parse_ok(URL_ENV_FILE);
	assert_string_equal(config->upstreams[0].instances[0].url, "http://127.0.0.1:9001");
	free(config);

	setenv(ENV_URL, "http://svc.internal:8081", 1);
	config = parse_ok(URL_ENV_FILE);
	assert_string_equal(config->upstreams[0].instances[0].url, "http://svc.internal:8081");
	free(config);
	unsetenv(ENV_URL);
}

static void test_url_trailing_slash_removed(void **state)
{
	struct kit_gateway_config *config = parse_ok(
		"{\"upstreams\": {\"svc\": {\"url\": \"http://127.0.0.1:9001/\"}}, "
		"\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}");
	assert_string_equal(config->upstreams[0].instances[0].url, "http://127.0.0.1:9001");
	free(config);

	setenv(ENV_URL, "http://svc.internal:8081/", 1);
	config = parse_ok(URL_ENV_FILE);
	assert_string_equal(config->upstreams[0].instances[0].url, "http://svc.internal:8081");
	free(config);
	unsetenv(ENV_URL);
}

/* An override is checked like the file's own URL: a compose file with a
 * bad USERS_URL must not start a gateway that proxies nowhere. */
static void test_url_env_value_is_checked(void **state)
{
	setenv(ENV_URL, "http://svc.internal:8081", 1);
	expect_accepted(URL_ENV_FILE); /* control */
	setenv(ENV_URL, "ftp://svc.internal", 1);
	expect_refused(URL_ENV_FILE, "svc", NULL);
	unsetenv(ENV_URL);
}

/* ---- several instances of one upstream, balance, breaker ------------- */

static const char INSTANCES_FILE[] =
	"{\"upstreams\": {\"svc\": {\"urls\": [\"http://127.0.0.1:9001\", "
	"\"http://127.0.0.1:9002/\"], \"url_env\": \"" ENV_URL "\", "
	"\"balance\": \"least_in_flight\"}}, "
	"\"breaker\": {\"failures\": 5, \"open_ms\": 250}, "
	"\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}";

static void test_urls_list_the_instances(void **state)
{
	unsetenv(ENV_URL);
	struct kit_gateway_config *config = parse_ok(INSTANCES_FILE);
	const struct kit_upstream *svc = &config->upstreams[0];

	assert_int_equal(svc->instance_count, 2);
	assert_string_equal(svc->instances[0].url, "http://127.0.0.1:9001");
	assert_string_equal(svc->instances[1].url, "http://127.0.0.1:9002");
	assert_int_equal(svc->balance, KIT_BALANCE_LEAST_IN_FLIGHT);
	assert_int_equal(svc->breaker_failures, 5);
	assert_int_equal(svc->breaker_open_ms, 250);
	free(config);
}

static void test_one_url_and_breaker_defaults(void **state)
{
	struct kit_gateway_config *config = parse_ok(
		"{" UPSTREAM_SVC ", \"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}");
	const struct kit_upstream *svc = &config->upstreams[0];

	assert_int_equal(svc->instance_count, 1);
	assert_int_equal(svc->balance, KIT_BALANCE_ROUND_ROBIN);
	assert_int_equal(svc->breaker_failures, 3);
	assert_int_equal(svc->breaker_open_ms, 5000);
	free(config);
}

/* The compose file and make up give the instances in one variable. */
static void test_url_env_lists_instances(void **state)
{
	setenv(ENV_URL, "http://a:8081, http://b:8081/,http://c:8081", 1);
	struct kit_gateway_config *config = parse_ok(INSTANCES_FILE);
	const struct kit_upstream *svc = &config->upstreams[0];

	assert_int_equal(svc->instance_count, 3);
	assert_string_equal(svc->instances[0].url, "http://a:8081");
	assert_string_equal(svc->instances[1].url, "http://b:8081");
	assert_string_equal(svc->instances[2].url, "http://c:8081");
	free(config);
	unsetenv(ENV_URL);
}

static void test_bad_instances_refused(void **state)
{
	setenv(ENV_URL, "http://a:8081,", 1); /* an empty item */
	expect_refused(INSTANCES_FILE, "upstreams.svc", ENV_URL, NULL);
	setenv(ENV_URL, "http://a:8081,http://a:8081/", 1);
	expect_refused(INSTANCES_FILE, "upstreams.svc", "twice", NULL);
	setenv(ENV_URL, "http://a:1,http://a:2,http://a:3,http://a:4,http://a:5,"
			"http://a:6,http://a:7,http://a:8,http://a:9", 1);
	expect_refused(INSTANCES_FILE, "upstreams.svc", "more than 8", NULL);
	unsetenv(ENV_URL);
	expect_refused("{\"upstreams\": {\"svc\": {\"url\": \"http://a:1\", \"urls\": [\"http://a:2\"]}}, "
		       "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
		       "upstreams.svc", "one of the two", NULL);
	expect_refused("{\"upstreams\": {\"svc\": {\"urls\": []}}, "
		       "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
		       "upstreams.svc.urls", "at least one", NULL);
	expect_refused("{\"upstreams\": {\"svc\": {\"urls\": [\"http://a:1\", \"ftp://b\"]}}, "
		       "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
		       "upstreams.svc.urls", "ftp://b", NULL);
	expect_refused("{\"upstreams\": {\"svc\": {\"url\": \"http://a:1\", \"balance\": \"random\"}}, "
		       "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
		       "upstreams.svc.balance", "random", NULL);
	expect_refused("{" UPSTREAM_SVC ", \"breaker\": {\"failures\": 0}, "
		       "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
		       "breaker.failures", NULL);
	expect_refused("{" UPSTREAM_SVC ", \"breaker\": {\"open_seconds\": 5}, "
		       "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
		       "breaker", "open_seconds", NULL);
}

/* ---- bad files ------------------------------------------------------- */

static void test_not_json(void **state)
{
	expect_accepted("{" UPSTREAM_SVC ", \"routes\": "
			"[{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}"); /* control */
	expect_refused("{" UPSTREAM_SVC ", \"routes\": "
		       "[{\"prefix\": \"/a\", \"upstream\": \"svc\"}]", NULL);
	expect_refused("not json at all", NULL);
	expect_refused("", NULL);
}

static void test_top_level_not_object(void **state)
{
	expect_refused("[]", NULL);
	expect_refused("[{\"routes\": []}]", NULL);
	expect_refused("\"routes\"", NULL);
	expect_refused("42", NULL);
}

static void test_routes_missing_or_not_array(void **state)
{
	expect_refused("{" UPSTREAM_SVC "}", "routes", NULL);
	expect_refused("{" UPSTREAM_SVC ", \"routes\": "
		       "{\"prefix\": \"/a\", \"upstream\": \"svc\"}}",
		       "routes", NULL);
	expect_refused("{" UPSTREAM_SVC ", \"routes\": \"/a\"}", "routes", NULL);
}

static void test_route_unknown_upstream(void **state)
{
	check_route_field("{\"prefix\": \"/b\", \"upstream\": \"svc\"}",
			  "{\"prefix\": \"/b\", \"upstream\": \"billing\"}",
			  "routes[1].upstream", "billing");
	/* A route without an upstream at all. */
	char *text = with_second_route("{\"prefix\": \"/b\"}");
	expect_refused(text, "routes[1]", "upstream", NULL);
	free(text);
}

static void test_prefix_must_start_with_slash(void **state)
{
	check_route_field("{\"prefix\": \"/b\", \"upstream\": \"svc\"}",
			  "{\"prefix\": \"b\", \"upstream\": \"svc\"}",
			  "routes[1].prefix", NULL);
	check_route_field("{\"prefix\": \"/api/v1/b\", \"upstream\": \"svc\"}",
			  "{\"prefix\": \"api/v1/b\", \"upstream\": \"svc\"}",
			  "routes[1].prefix", NULL);
	/* Missing, empty and not a string. */
	char *text = with_second_route("{\"upstream\": \"svc\"}");
	expect_refused(text, "routes[1]", "prefix", NULL);
	free(text);
	text = with_second_route("{\"prefix\": \"\", \"upstream\": \"svc\"}");
	expect_refused(text, "routes[1].prefix", NULL);
	free(text);
	text = with_second_route("{\"prefix\": 7, \"upstream\": \"svc\"}");
	expect_refused(text, "routes[1].prefix", NULL);
	free(text);
}

static void test_prefix_must_not_end_with_slash(void **state)
{
	check_route_field("{\"prefix\": \"/api/v1/b\", \"upstream\": \"svc\"}",
			  "{\"prefix\": \"/api/v1/b/\", \"upstream\": \"svc\"}",
			  "routes[1].prefix", NULL);
}

/* Threat: two routes for one prefix, the second (perhaps public) silently
 * shadowed by or shadowing the first. */
static void test_duplicate_prefixes(void **state)
{
	check_route_field("{\"prefix\": \"/other\", \"upstream\": \"svc\"}",
			  "{\"prefix\": \"/ok\", \"upstream\": \"svc\", "
			  "\"access\": \"public\"}",
			  "routes[1].prefix", "/ok");
}

static void test_upstream_url_must_be_http(void **state)
{
	static const char *const bad[] = {
		"ftp://x", "localhost:80", "127.0.0.1:8081", "",
	};
	char *text = fmt("{\"upstreams\": {\"svc\": {\"url\": \"%s\"}}, "
			 "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
			 "http://localhost:80");
	expect_accepted(text); /* control */
	free(text);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		text = fmt("{\"upstreams\": {\"svc\": {\"url\": \"%s\"}}, "
			   "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
			   bad[i]);
		expect_refused(text, "svc", "url", NULL);
		free(text);
	}
	/* No url at all, and not a string. */
	expect_refused("{\"upstreams\": {\"svc\": {}}, "
		       "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
		       "svc", "url", NULL);
	expect_refused("{\"upstreams\": {\"svc\": {\"url\": 8081}}, "
		       "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
		       "svc", "url", NULL);
}

static void test_unknown_access(void **state)
{
	check_route_field("{\"prefix\": \"/b\", \"upstream\": \"svc\", "
			  "\"access\": \"authenticated\"}",
			  "{\"prefix\": \"/b\", \"upstream\": \"svc\", "
			  "\"access\": \"admin\"}",
			  "routes[1].access", "admin");
}

static void test_bad_timeout(void **state)
{
	static const char *const bad[] = { "0", "-1", "-5000", "\"5000\"",
					   "true", "1.5", "1e300", "-1e300" };
	check_route_field("{\"prefix\": \"/b\", \"upstream\": \"svc\", "
			  "\"timeout_ms\": 1}",
			  "{\"prefix\": \"/b\", \"upstream\": \"svc\", "
			  "\"timeout_ms\": 0}",
			  "routes[1].timeout_ms", NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *route = fmt("{\"prefix\": \"/b\", \"upstream\": \"svc\", "
				  "\"timeout_ms\": %s}", bad[i]);
		char *text = with_second_route(route);
		expect_refused(text, "routes[1].timeout_ms", NULL);
		free(text);
		free(route);
	}
}

static const char POLICY_FILE[] =
	"{" UPSTREAM_SVC ", \"rate_limit_policies\": {\"login\": %s}, "
	"\"routes\": [{\"prefix\": \"/ok\", \"upstream\": \"svc\"}, "
	"{\"prefix\": \"/auth\", \"upstream\": \"svc\", \"rate_limit\": \"%s\"}]}";
#define GOOD_POLICY \
	"{\"window_seconds\": 60, \"anonymous\": 20, \"free\": 30, \"premium\": 40}"

static void test_unknown_rate_limit_policy(void **state)
{
	char *text = fmt(POLICY_FILE, GOOD_POLICY, "login");
	struct kit_gateway_config *config = parse_ok(text); /* control */
	assert_int_equal(config->policy_count, 1);
	assert_null(config->routes[0].rate_limit);
	assert_ptr_equal(config->routes[1].rate_limit, &config->policies[0]);
	assert_int_equal(config->policies[0].window_seconds, 60);
	assert_int_equal(config->policies[0].anonymous_limit, 20);
	assert_int_equal(config->policies[0].free_limit, 30);
	assert_int_equal(config->policies[0].premium_limit, 40);
	free(config);
	free(text);

	text = fmt(POLICY_FILE, GOOD_POLICY, "logon");
	expect_refused(text, "routes[1].rate_limit", "logon", NULL);
	free(text);
}

static void test_bad_policy(void **state)
{
	char *text = fmt(POLICY_FILE,
			 "{\"window_seconds\": 60, \"anonymous\": 0, "
			 "\"free\": 20, \"premium\": 20}", "login");
	expect_refused(text, "login", "anonymous", NULL);
	free(text);

	text = fmt(POLICY_FILE,
		   "{\"anonymous\": 20, \"free\": 20, \"premium\": 20}", "login");
	expect_refused(text, "login", "window_seconds", NULL);
	free(text);

	text = fmt(POLICY_FILE,
		   "{\"window_seconds\": 60, \"anonymous\": 20, "
		   "\"free\": -1, \"premium\": 20}", "login");
	expect_refused(text, "login", "free", NULL);
	free(text);
}

/* "on_redis_failure": open, closed or local; absent: the process default
 * (RATE_LIMIT_ON_REDIS_ERROR). A typo must stop start-up, not quietly
 * fall back to failing open. */
static void test_policy_on_redis_failure(void **state)
{
	static const struct {
		const char *text;
		enum kit_rate_on_redis_failure value;
	} good[] = {
		{ "", KIT_RATE_ON_REDIS_DEFAULT },
		{ ", \"on_redis_failure\": \"open\"", KIT_RATE_ON_REDIS_OPEN },
		{ ", \"on_redis_failure\": \"closed\"", KIT_RATE_ON_REDIS_CLOSED },
		{ ", \"on_redis_failure\": \"local\"", KIT_RATE_ON_REDIS_LOCAL },
	};
	static const char *const bad[] = {
		"\"Local\"", "\"fail-closed\"", "\"\"", "true", "1", "null",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char *policy = fmt("{\"window_seconds\": 60, \"anonymous\": 20, \"free\": 30, "
				   "\"premium\": 40%s}", good[i].text);
		char *text = fmt(POLICY_FILE, policy, "login");
		struct kit_gateway_config *config = parse_ok(text);
		assert_int_equal(config->policies[0].on_redis_failure, good[i].value);
		free(config);
		free(text);
		free(policy);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *policy = fmt("{\"window_seconds\": 60, \"anonymous\": 20, \"free\": 30, "
				   "\"premium\": 40, \"on_redis_failure\": %s}", bad[i]);
		char *text = fmt(POLICY_FILE, policy, "login");
		expect_refused(text, "rate_limit_policies.login.on_redis_failure", NULL);
		free(text);
		free(policy);
	}
}

/* One more than KIT_GATEWAY_MAX_ROUTES is refused, not truncated; exactly
 * the maximum is fine. */
static char *routes_file(int count)
{
	size_t size = 256 + (size_t)count * 64;
	char *text = malloc(size);
	assert_non_null(text);
	int len = snprintf(text, size, "{" UPSTREAM_SVC ", \"routes\": [");
	for (int i = 0; i < count; i++)
		len += snprintf(text + len, size - (size_t)len,
				"%s{\"prefix\": \"/r%d\", \"upstream\": \"svc\"}",
				i == 0 ? "" : ",", i);
	snprintf(text + len, size - (size_t)len, "]}");
	return text;
}

static void test_too_many_routes(void **state)
{
	char *text = routes_file(KIT_GATEWAY_MAX_ROUTES);
	struct kit_gateway_config *config = parse_ok(text); /* control */
	assert_int_equal(config->route_count, KIT_GATEWAY_MAX_ROUTES);
	assert_string_equal(config->routes[KIT_GATEWAY_MAX_ROUTES - 1].prefix,
			    "/r47");
	free(config);
	free(text);

	text = routes_file(KIT_GATEWAY_MAX_ROUTES + 1);
	expect_refused(text, "routes", NULL);
	free(text);
}

/* Threat: a typo silently ignored. "prefx" must not leave a route whose
 * other members still parse; "acess": "public" must not leave it at the
 * default. */
static void test_unknown_member_in_route(void **state)
{
	check_route_field("{\"prefix\": \"/b\", \"upstream\": \"svc\"}",
			  "{\"prefx\": \"/c\", \"prefix\": \"/b\", \"upstream\": \"svc\"}",
			  "routes[1]", "prefx");
	check_route_field("{\"prefix\": \"/b\", \"upstream\": \"svc\", "
			  "\"access\": \"public\"}",
			  "{\"prefix\": \"/b\", \"upstream\": \"svc\", "
			  "\"acess\": \"public\"}",
			  "routes[1]", "acess");
}

/* Threat: a file that reads one way to its reviewer and another to the
 * gateway. JSON leaves duplicate names undefined: cJSON takes the first,
 * jq and Python the last, so {"access": "public", "access": "authenticated"}
 * is reviewed as authenticated and served as public. */
static void test_duplicate_member_in_route(void **state)
{
	check_route_field("{\"prefix\": \"/b\", \"upstream\": \"svc\", "
			  "\"access\": \"authenticated\"}",
			  "{\"prefix\": \"/b\", \"upstream\": \"svc\", "
			  "\"access\": \"public\", \"access\": \"authenticated\"}",
			  "routes[1]", "access");
}

/* Routes match in file order: a shorter prefix listed first would take
 * the requests (and impose its access) meant for a longer one after it. */
static void test_shadowed_route_refused(void **state)
{
	check_route_field("{\"prefix\": \"/apiary\", \"upstream\": \"svc\"}",
			  "{\"prefix\": \"/ok/deeper\", \"upstream\": \"svc\"}",
			  "routes[1]", "never match");
}

/* A ':' in a prefix would turn a literal segment into a parameter that
 * matches anything. */
static void test_colon_in_prefix_refused(void **state)
{
	check_route_field("{\"prefix\": \"/users/id\", \"upstream\": \"svc\"}",
			  "{\"prefix\": \"/users/:id\", \"upstream\": \"svc\"}",
			  "routes[1].prefix", "':'");
}

/* A number far outside a long is refused by range, before any cast (a
 * cast first would be undefined behaviour). */
static void test_huge_number_refused(void **state)
{
	check_route_field("{\"prefix\": \"/b\", \"upstream\": \"svc\", \"timeout_ms\": 1000}",
			  "{\"prefix\": \"/b\", \"upstream\": \"svc\", \"timeout_ms\": 1e300}",
			  "routes[1].timeout_ms", "outside");
}

/* The same rule elsewhere in the file: a mistyped "url_env" would quietly
 * send a compose gateway to loopback. */
static void test_unknown_member_elsewhere(void **state)
{
	expect_refused("{\"upstreams\": {\"svc\": {\"url\": \"http://127.0.0.1:9001\", "
		       "\"url_evn\": \"USERS_URL\"}}, "
		       "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
		       "svc", "url_evn", NULL);
	expect_refused("{" UPSTREAM_SVC ", \"pool\": {\"max_idle\": 4}, "
		       "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
		       "pool", "max_idle", NULL);
	expect_refused("{" UPSTREAM_SVC ", \"rate_limit_policies\": {\"login\": "
		       "{\"window_seconds\": 60, \"anonymous\": 20, \"free\": 20, "
		       "\"premium\": 20, \"premum\": 5}}, "
		       "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
		       "login", "premum", NULL);
	expect_refused("{" UPSTREAM_SVC ", \"rate_limit_policy\": {}, "
		       "\"routes\": [{\"prefix\": \"/a\", \"upstream\": \"svc\"}]}",
		       "rate_limit_policy", NULL);
}

/* The message is cut to error_size, NUL-terminated, never written past. */
static void test_error_buffer_is_bounded(void **state)
{
	struct kit_gateway_config *config = new_config();
	char error[32];
	memset(error, 'Z', sizeof(error));
	char *text = with_second_route("{\"prefix\": \"/b\", \"upstream\": \"billing\"}");
	assert_int_equal(kit_gateway_config_parse(FILE_NAME, text, config,
						  error, 8), -1);
	assert_non_null(memchr(error, '\0', 8));
	for (size_t i = 8; i < sizeof(error); i++)
		assert_int_equal(error[i], 'Z');
	free(text);
	free(config);
}

/* An optional argument runs only the tests whose names match it
 * (cmocka's pattern: '*' and '?' wildcards). */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shipped_file_upstreams_and_pool),
		cmocka_unit_test(test_shipped_file_routes),
		cmocka_unit_test(test_shipped_file_has_no_phase3_parts),
		cmocka_unit_test(test_shipped3_file),
		cmocka_unit_test(test_split_route_parses),
		cmocka_unit_test(test_split_and_upstream_both),
		cmocka_unit_test(test_split_and_upstream_neither),
		cmocka_unit_test(test_unknown_split_name),
		cmocka_unit_test(test_split_needs_two_variants),
		cmocka_unit_test(test_split_weights),
		cmocka_unit_test(test_split_duplicate_variant_names),
		cmocka_unit_test(test_split_variant_unknown_upstream),
		cmocka_unit_test(test_split_unknown_members),
		cmocka_unit_test(test_versions_parse),
		cmocka_unit_test(test_versions_bad),
		cmocka_unit_test(test_route_under_unlisted_version),
		cmocka_unit_test(test_minimal_file_defaults),
		cmocka_unit_test(test_access_defaults_to_authenticated),
		cmocka_unit_test(test_url_env_overrides_file_url),
		cmocka_unit_test(test_url_trailing_slash_removed),
		cmocka_unit_test(test_url_env_value_is_checked),
		cmocka_unit_test(test_urls_list_the_instances),
		cmocka_unit_test(test_one_url_and_breaker_defaults),
		cmocka_unit_test(test_url_env_lists_instances),
		cmocka_unit_test(test_bad_instances_refused),
		cmocka_unit_test(test_not_json),
		cmocka_unit_test(test_top_level_not_object),
		cmocka_unit_test(test_routes_missing_or_not_array),
		cmocka_unit_test(test_route_unknown_upstream),
		cmocka_unit_test(test_prefix_must_start_with_slash),
		cmocka_unit_test(test_prefix_must_not_end_with_slash),
		cmocka_unit_test(test_duplicate_prefixes),
		cmocka_unit_test(test_upstream_url_must_be_http),
		cmocka_unit_test(test_unknown_access),
		cmocka_unit_test(test_bad_timeout),
		cmocka_unit_test(test_unknown_rate_limit_policy),
		cmocka_unit_test(test_bad_policy),
		cmocka_unit_test(test_policy_on_redis_failure),
		cmocka_unit_test(test_too_many_routes),
		cmocka_unit_test(test_unknown_member_in_route),
		cmocka_unit_test(test_duplicate_member_in_route),
		cmocka_unit_test(test_shadowed_route_refused),
		cmocka_unit_test(test_colon_in_prefix_refused),
		cmocka_unit_test(test_huge_number_refused),
		cmocka_unit_test(test_unknown_member_elsewhere),
		cmocka_unit_test(test_error_buffer_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
