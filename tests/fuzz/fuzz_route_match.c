/*
 * fuzz_route_match.c - libFuzzer target: kit_route_match()
 * (shared/src/app/router.c) against the kit's real route patterns. Input:
 * a request path (up to its first NUL), matched against every pattern.
 *
 * The patterns are read at start-up from the code and files that define
 * them, so this target follows them as they change: the routes the three
 * services and the operations endpoints mount (users_mount,
 * url_shortener_mount, analytics_mount, analytics_mount_internal,
 * kit_mount_operations, into one kit_app as the monolith does, plus the
 * Phase 2 analytics endpoints), every route of phase2-gateway/gateway.json
 * and phase3-advanced/gateway.json (through kit_gateway_config_parse, so
 * "<prefix>/..."), and the Phase 3 catch-all "/api/...". Run it from the
 * repository root (tests/fuzz.sh does).
 *
 * Properties, beyond "no crash, no sanitizer report":
 *   - the answer, the parameters and *rest are exactly those of an
 *     independent reading of kit/router.h, written here with the path and
 *     the pattern split on '/': literal segments equal, a ":name" segment
 *     taking one non-empty path segment of at most 127 bytes (name under
 *     32, at most KIT_MAX_PARAMS of them), and a last "..." taking the
 *     rest of the path ("" or from a '/' on), *rest pointing into the path;
 *   - so every parameter value is a whole segment of the path, and a
 *     pattern without "..." leaves *rest NULL.
 */
#include <stdbool.h>
#include <string.h>

#include "analytics/analytics.h"
#include "app/internal.h"
#include "fake_request.h"
#include "fuzz.h"
#include "kit/gateway.h"
#include "kit/middleware.h"
#include "kit/router.h"
#include "url-shortener/url_shortener.h"
#include "users/users.h"

#define MAX_PATTERNS 128
static const char *patterns[MAX_PATTERNS];
static int pattern_count;

static void add_pattern(const char *pattern)
{
	if (pattern_count == MAX_PATTERNS)
		abort();
	patterns[pattern_count++] = pattern;
}

static void add_gateway_file(const char *path)
{
	static struct kit_gateway_config configs[2];
	static int used;
	char error[512];
	FILE *file = fopen(path, "rb");
	char *text = malloc(1 << 20);
	size_t n;

	if (file == NULL || text == NULL || used == 2) {
		fprintf(stderr, "fuzz_route_match: cannot read %s (run from the repository root)\n", path);
		exit(1);
	}
	n = fread(text, 1, (1 << 20) - 1, file);
	text[n] = '\0';
	fclose(file);
	if (kit_gateway_config_parse(path, text, &configs[used], error, sizeof(error)) != 0) {
		fprintf(stderr, "fuzz_route_match: %s\n", error);
		exit(1);
	}
	for (int i = 0; i < configs[used].route_count; i++)
		add_pattern(configs[used].routes[i].pattern);
	used++;
	free(text);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct kit_app *app;

	fuzz_service_environment();
	app = kit_app_new("fuzz-routes", 0);
	kit_mount_operations(app);
	users_mount(app);
	analytics_mount(app);
	analytics_mount_internal(app);
	url_shortener_mount(app, &analytics_in_process);
	if (app->failed)
		exit(1);
	for (int i = 0; i < app->route_count; i++)
		add_pattern(app->routes[i].pattern);
	add_gateway_file("phase2-gateway/gateway.json");
	add_gateway_file("phase3-advanced/gateway.json");
	add_pattern("/api/...");
	return 0;
}

struct segment {
	const char *start;
	size_t len;
};

/* s split on '/': "/a/b" gives "", "a", "b". Returns how many (at most
 * max; more gives max + 1). */
static int split(const char *s, size_t len, struct segment *out, int max)
{
	int n = 0;
	const char *start = s;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '/')
			continue;
		if (n == max)
			return max + 1;
		out[n].start = start;
		out[n].len = (size_t)(s + i - start);
		n++;
		start = s + i + 1;
	}
	return n;
}

static bool reference_match(const char *pattern, const char *path, struct kit_param *params,
			    int *count, const char **rest)
{
	struct segment want[32], have[512];
	size_t plen = strlen(pattern);
	bool prefix = plen >= 4 && strcmp(pattern + plen - 4, "/...") == 0;
	int k = split(pattern, prefix ? plen - 4 : plen, want, 32);
	int n = split(path, strlen(path), have, 511);
	int found = 0;

	*count = 0;
	*rest = NULL;
	if (prefix ? n < k : n != k)
		return false;
	for (int i = 0; i < k; i++) {
		if (want[i].len > 0 && want[i].start[0] == ':') {
			if (found == KIT_MAX_PARAMS || have[i].len == 0 ||
			    have[i].len >= sizeof(params[0].value) ||
			    want[i].len - 1 >= sizeof(params[0].name))
				return false;
			memcpy(params[found].name, want[i].start + 1, want[i].len - 1);
			params[found].name[want[i].len - 1] = '\0';
			memcpy(params[found].value, have[i].start, have[i].len);
			params[found].value[have[i].len] = '\0';
			found++;
		} else if (want[i].len != have[i].len ||
			   memcmp(want[i].start, have[i].start, want[i].len) != 0) {
			return false;
		}
	}
	if (prefix)
		*rest = have[k - 1].start + have[k - 1].len;
	*count = found;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *path = fuzz_string(data, size);
	struct kit_param params[KIT_MAX_PARAMS], expect[KIT_MAX_PARAMS];
	int count, expect_count;
	const char *rest, *expect_rest;

	if (strlen(path) > 4000) { /* the reference splits into at most 512 */
		free(path);
		return 0;
	}
	for (int i = 0; i < pattern_count; i++) {
		const char *pattern = patterns[i];
		bool matched = kit_route_match(pattern, path, params, &count, &rest);
		bool want = reference_match(pattern, path, expect, &expect_count, &expect_rest);

		FUZZ_CHECK(matched == want, "\"%s\" against \"%s\": %d, the rules say %d",
			   path, pattern, matched, want);
		if (!matched)
			continue;
		FUZZ_CHECK(count == expect_count && rest == expect_rest,
			   "\"%s\" against \"%s\": %d parameters, rest %s; the rules say %d, %s",
			   path, pattern, count, rest ? rest : "NULL", expect_count,
			   expect_rest ? expect_rest : "NULL");
		for (int j = 0; j < count; j++) {
			FUZZ_CHECK(strcmp(params[j].name, expect[j].name) == 0 &&
				   strcmp(params[j].value, expect[j].value) == 0,
				   "\"%s\" against \"%s\": parameter %s=%s; the rules say %s=%s", path,
				   pattern, params[j].name, params[j].value, expect[j].name,
				   expect[j].value);
			FUZZ_CHECK(params[j].value[0] != '\0' && strchr(params[j].value, '/') == NULL,
				   "parameter %s=\"%s\" is not one segment", params[j].name,
				   params[j].value);
		}
		if (rest != NULL)
			FUZZ_CHECK(rest >= path && rest <= path + strlen(path) &&
				   (rest[0] == '\0' || rest[0] == '/'),
				   "\"%s\" against \"%s\": rest \"%s\"", path, pattern, rest);
	}
	free(path);
	return 0;
}
