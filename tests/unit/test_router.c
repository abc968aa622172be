/*
 * test_router.c - kit/router.h: kit_route_match, the route-table matcher.
 *
 * Literal segments match themselves; ":name" matches one non-empty segment
 * of at most 127 bytes; a trailing slash is a different path; a pattern
 * never matches a prefix or an extension of a path. A last segment "..."
 * makes a prefix route (the gateway's): it matches the prefix itself and
 * every path below it, and *rest is what follows the prefix ("" or "/...").
 *
 * Run alone: make && build/tests/test_router
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "kit/router.h"

/* Matches with a fresh parameter array; *count is -1 beforehand so a match
 * that forgets to set it shows. */
static bool match(const char *pattern, const char *path,
		  struct kit_param *params, int *count)
{
	memset(params, 0, sizeof(struct kit_param) * KIT_MAX_PARAMS);
	*count = -1;
	return kit_route_match(pattern, path, params, count, NULL);
}

static void test_literal_match(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	assert_true(match("/health", "/health", params, &count));
	assert_int_equal(count, 0);
	assert_true(match("/auth/login", "/auth/login", params, &count));
	assert_int_equal(count, 0);
}

static void test_no_match(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	assert_true(match("/health", "/health", params, &count)); /* control */
	assert_false(match("/health", "/metrics", params, &count));
	assert_false(match("/health", "/healthz", params, &count));
	assert_false(match("/health", "/healt", params, &count));
	assert_false(match("/health", "/Health", params, &count));
	assert_false(match("/auth/login", "/auth/register", params, &count));
	assert_false(match("/health", "", params, &count));
}

static void test_parameter_capture(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	assert_true(match("/expand/:code", "/expand/abc", params, &count));
	assert_int_equal(count, 1);
	assert_string_equal(params[0].name, "code");
	assert_string_equal(params[0].value, "abc");

	assert_true(match("/r/:code", "/r/Ab_9-x", params, &count));
	assert_int_equal(count, 1);
	assert_string_equal(params[0].value, "Ab_9-x");
}

static void test_two_parameters(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	assert_true(match("/users/:user/links/:code", "/users/alice/links/xyz",
			  params, &count));
	assert_int_equal(count, 2);
	assert_string_equal(params[0].name, "user");
	assert_string_equal(params[0].value, "alice");
	assert_string_equal(params[1].name, "code");
	assert_string_equal(params[1].value, "xyz");

	/* The literal between them still has to match. */
	assert_false(match("/users/:user/links/:code", "/users/alice/posts/xyz",
			   params, &count));
}

static void test_trailing_slash_is_another_path(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	assert_true(match("/shorten", "/shorten", params, &count)); /* control */
	assert_false(match("/shorten", "/shorten/", params, &count));
	assert_false(match("/shorten/", "/shorten", params, &count));
	assert_false(match("/expand/:code", "/expand/abc/", params, &count));
}

static void test_empty_segment_is_not_a_parameter(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	assert_true(match("/expand/:code", "/expand/a", params, &count)); /* control */
	assert_false(match("/expand/:code", "/expand/", params, &count));
	assert_false(match("/expand/:code", "/expand//", params, &count));
	assert_false(match("/users/:user/links/:code", "/users//links/xyz",
			   params, &count));
}

/* Threat: a long segment overflowing kit_param.value (128 bytes), or being
 * truncated into another resource's code. */
static void test_segment_length_limit(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	char path[8 + 200];

	strcpy(path, "/expand/");
	memset(path + 8, 'x', 127);
	path[8 + 127] = '\0';
	assert_true(match("/expand/:code", path, params, &count));
	assert_int_equal(count, 1);
	assert_int_equal(strlen(params[0].value), 127);

	memset(path + 8, 'x', 128);
	path[8 + 128] = '\0';
	assert_false(match("/expand/:code", path, params, &count));

	memset(path + 8, 'x', 199);
	path[8 + 199] = '\0';
	assert_false(match("/expand/:code", path, params, &count));
}

static void test_prefix_paths_do_not_match(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	assert_true(match("/expand/:code", "/expand/abc", params, &count)); /* control */
	assert_false(match("/expand/:code", "/expand", params, &count));
	assert_false(match("/expand/:code", "/expand/abc/def", params, &count));
	assert_false(match("/expand/:code", "/expandx/abc", params, &count));
	assert_false(match("/expand", "/expand/abc", params, &count));
	assert_false(match("/users/:user/links/:code", "/users/alice/links",
			   params, &count));
}

/* ---- prefix routes: a last segment "..." ------------------------------ */

/* Matches with a rest pointer set to a sentinel beforehand, so a match that
 * forgets to write *rest shows. */
static const char SENTINEL[] = "(rest not written)";

static bool match_rest(const char *pattern, const char *path,
		       struct kit_param *params, int *count, const char **rest)
{
	memset(params, 0, sizeof(struct kit_param) * KIT_MAX_PARAMS);
	*count = -1;
	*rest = SENTINEL;
	return kit_route_match(pattern, path, params, count, rest);
}

static void test_prefix_route_matches_prefix_and_below(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	const char *rest;

	assert_true(match_rest("/api/v1/auth/...", "/api/v1/auth", params,
			       &count, &rest));
	assert_int_equal(count, 0);
	assert_non_null(rest);
	assert_string_equal(rest, "");

	assert_true(match_rest("/api/v1/auth/...", "/api/v1/auth/", params,
			       &count, &rest));
	assert_int_equal(count, 0);
	assert_string_equal(rest, "/");

	assert_true(match_rest("/api/v1/auth/...", "/api/v1/auth/login", params,
			       &count, &rest));
	assert_int_equal(count, 0);
	assert_string_equal(rest, "/login");

	assert_true(match_rest("/api/v1/auth/...", "/api/v1/auth/a/b", params,
			       &count, &rest));
	assert_int_equal(count, 0);
	assert_string_equal(rest, "/a/b");

	assert_true(match_rest("/r/...", "/r/abc", params, &count, &rest));
	assert_int_equal(count, 0);
	assert_string_equal(rest, "/abc");
}

/* *rest points into the path (the proxy appends it to the rewrite), not at
 * a copy. */
static void test_prefix_rest_points_into_path(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	const char *rest;
	const char path[] = "/api/v1/auth/login";

	assert_true(match_rest("/api/v1/auth/...", path, params, &count, &rest));
	assert_ptr_equal(rest, path + strlen("/api/v1/auth"));

	const char bare[] = "/api/v1/auth";
	assert_true(match_rest("/api/v1/auth/...", bare, params, &count, &rest));
	assert_ptr_equal(rest, bare + strlen(bare));
}

/* Threat: a prefix matched by bytes instead of by segments, so
 * "/api/v1/authx" (another service's path) is sent to the auth upstream
 * under the auth route's access and rate limit. */
static void test_prefix_route_is_segment_bounded(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	const char *rest;

	assert_true(match_rest("/api/v1/auth/...", "/api/v1/auth/x", params,
			       &count, &rest)); /* control */
	assert_false(match_rest("/api/v1/auth/...", "/api/v1/authx", params,
				&count, &rest));
	assert_false(match_rest("/api/v1/auth/...", "/api/v1/authx/login",
				params, &count, &rest));
	assert_false(match_rest("/api/v1/auth/...", "/api/v1", params, &count,
				&rest));
	assert_false(match_rest("/api/v1/auth/...", "/api/v1/", params, &count,
				&rest));
	assert_false(match_rest("/api/v1/auth/...", "/api/v1/aut", params,
				&count, &rest));
	assert_false(match_rest("/api/v1/auth/...", "/api/v2/auth/login",
				params, &count, &rest));
	assert_false(match_rest("/api/v1/auth/...", "", params, &count, &rest));
	assert_false(match_rest("/r/...", "/rx", params, &count, &rest));
	assert_false(match_rest("/r/...", "/", params, &count, &rest));
}

static void test_rest_is_null_without_prefix(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	const char *rest;

	assert_true(match_rest("/health", "/health", params, &count, &rest));
	assert_null(rest);
	assert_true(match_rest("/expand/:code", "/expand/abc", params, &count,
			       &rest));
	assert_null(rest);
	assert_true(match_rest("/r/...", "/r/abc", params, &count,
			       &rest)); /* control: the same call writes it */
	assert_non_null(rest);
	assert_ptr_not_equal(rest, SENTINEL);
}

static void test_prefix_route_with_parameter(void **state)
{
	struct kit_param params[KIT_MAX_PARAMS];
	int count;
	const char *rest;

	assert_true(match_rest("/v/:version/...", "/v/2/x", params, &count,
			       &rest));
	assert_int_equal(count, 1);
	assert_string_equal(params[0].name, "version");
	assert_string_equal(params[0].value, "2");
	assert_string_equal(rest, "/x");

	assert_true(match_rest("/v/:version/...", "/v/2", params, &count,
			       &rest));
	assert_int_equal(count, 1);
	assert_string_equal(params[0].value, "2");
	assert_string_equal(rest, "");

	/* The parameter still needs a non-empty segment. */
	assert_false(match_rest("/v/:version/...", "/v//x", params, &count,
				&rest));
	assert_false(match_rest("/v/:version/...", "/v", params, &count,
				&rest));
}

/* An optional argument runs only the tests whose names match it
 * (cmocka's pattern: '*' and '?' wildcards). */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literal_match),
		cmocka_unit_test(test_no_match),
		cmocka_unit_test(test_parameter_capture),
		cmocka_unit_test(test_two_parameters),
		cmocka_unit_test(test_trailing_slash_is_another_path),
		cmocka_unit_test(test_empty_segment_is_not_a_parameter),
		cmocka_unit_test(test_segment_length_limit),
		cmocka_unit_test(test_prefix_paths_do_not_match),
		cmocka_unit_test(test_prefix_route_matches_prefix_and_below),
		cmocka_unit_test(test_prefix_rest_points_into_path),
		cmocka_unit_test(test_prefix_route_is_segment_bounded),
		cmocka_unit_test(test_rest_is_null_without_prefix),
		cmocka_unit_test(test_prefix_route_with_parameter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
