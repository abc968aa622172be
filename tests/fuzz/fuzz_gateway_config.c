/*
 * fuzz_gateway_config.c - libFuzzer target: the gateway's route file
 * (shared/src/gateway/gateway_config.c). Input: the file's bytes.
 *
 * Both entry points, unchanged: kit_gateway_config_parse() on the text,
 * and kit_gateway_config_load() on a file holding the same bytes (an
 * in-memory file, memfd_create, read through /proc/self/fd/N).
 *
 * Properties, beyond "no crash, no sanitizer report":
 *   - a refused file gets a message naming the file ("<path>: field:
 *     problem"), NUL-terminated in the buffer;
 *   - an accepted one is what docs/configuration.md promises: 1..48
 *     routes, each with a prefix that starts with '/', does not end with
 *     one and has no ':', '*', '?' or '#', the kit pattern "<prefix>/...",
 *     a rewrite starting with '/', exactly one of upstream and split (each
 *     pointing into the config's own tables), a known access, a timeout in
 *     1..600000 ms, a prefix no other route has and that no earlier route
 *     covers (checked here with kit_route_match(): the earlier route's
 *     pattern must not match this prefix), a listed version when it is
 *     under /api/v<digits> and "versions" is given; upstream URLs of
 *     "http://" and no trailing '/'; splits of 2..8 distinctly named
 *     variants whose weights (1..100 each) add up to 100; versions "v"
 *     and digits, distinct; pool values in their ranges;
 *   - loading the same bytes from a file gives the same verdict and the
 *     same routes.
 */
#include <stdbool.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "kit/app.h"
#include "kit/gateway.h"
#include "kit/router.h"

static struct kit_gateway_config parsed;
static struct kit_app *app;
static int file_fd = -1;
static char file_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	app = kit_app_new("fuzz-gateway-config", 0);
	file_fd = memfd_create("gateway.json", 0);
	if (file_fd < 0) {
		perror("memfd_create");
		exit(1);
	}
	snprintf(file_path, sizeof(file_path), "/proc/self/fd/%d", file_fd);
	return 0;
}

static bool pointer_in(const void *p, const void *array, size_t element, int count)
{
	const char *c = p, *a = array;

	return c >= a && c < a + element * (size_t)count && (size_t)(c - a) % element == 0;
}

static void check_accepted(const struct kit_gateway_config *c)
{
	FUZZ_CHECK(c->route_count >= 1 && c->route_count <= KIT_GATEWAY_MAX_ROUTES,
		   "%d routes", c->route_count);
	FUZZ_CHECK(c->upstream_count >= 1 && c->upstream_count <= KIT_GATEWAY_MAX_UPSTREAMS,
		   "%d upstreams", c->upstream_count);
	FUZZ_CHECK(c->max_idle_per_thread >= 1 && c->max_idle_per_thread <= 64 &&
		   c->max_idle_per_upstream >= 0 && c->max_idle_per_upstream <= 1024 &&
		   c->idle_timeout_seconds >= 1 && c->idle_timeout_seconds <= 3600 &&
		   c->connect_timeout_ms >= 1 && c->connect_timeout_ms <= 60000 &&
		   c->max_response_bytes >= 1024 && c->max_response_bytes <= (1L << 30),
		   "a pool value out of range");

	for (int i = 0; i < c->upstream_count; i++) {
		const struct kit_upstream *u = &c->upstreams[i];

		FUZZ_CHECK(u->instance_count >= 1 && u->instance_count <= KIT_UPSTREAM_MAX_INSTANCES,
			   "upstream %s: %d instances", u->name, u->instance_count);
		FUZZ_CHECK(u->breaker_failures >= 1 && u->breaker_open_ms >= 1,
			   "upstream %s: breaker %ld/%ld", u->name, u->breaker_failures,
			   u->breaker_open_ms);
		for (int j = 0; j < u->instance_count; j++) {
			const char *url = u->instances[j].url;
			size_t len = strlen(url);
			FUZZ_CHECK(strncmp(url, "http://", 7) == 0 && len > 7 && url[len - 1] != '/' &&
					   strcspn(url, " \t\r\n,") == len,
				   "upstream %s url \"%s\"", u->name, url);
			for (int k = 0; k < j; k++)
				FUZZ_CHECK(strcmp(u->instances[k].url, url) != 0,
					   "upstream %s lists %s twice", u->name, url);
		}
		FUZZ_CHECK(u->name[0] != '\0', "upstream %d has no name", i);
	}
	for (int i = 0; i < c->version_count; i++) {
		const char *v = c->versions[i];
		FUZZ_CHECK(v[0] == 'v' && v[1] != '\0' && strspn(v + 1, "0123456789") == strlen(v + 1),
			   "version \"%s\"", v);
		for (int j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(c->versions[j], v) != 0, "version %s twice", v);
	}
	for (int i = 0; i < c->split_count; i++) {
		const struct kit_split *s = &c->splits[i];
		long total = 0;
		FUZZ_CHECK(s->variant_count >= 2 && s->variant_count <= KIT_SPLIT_MAX_VARIANTS,
			   "split %s: %d variants", s->name, s->variant_count);
		for (int j = 0; j < s->variant_count; j++) {
			FUZZ_CHECK(s->variants[j].weight >= 1 && s->variants[j].weight <= 100,
				   "split %s weight %ld", s->name, s->variants[j].weight);
			FUZZ_CHECK(pointer_in(s->variants[j].upstream, c->upstreams,
					      sizeof(c->upstreams[0]), c->upstream_count),
				   "split %s variant %d: upstream outside the table", s->name, j);
			for (int k = 0; k < j; k++)
				FUZZ_CHECK(strcmp(s->variants[k].name, s->variants[j].name) != 0,
					   "split %s: variant %s twice", s->name, s->variants[j].name);
			total += s->variants[j].weight;
		}
		FUZZ_CHECK(total == 100, "split %s: weights add up to %ld", s->name, total);
	}

	for (int i = 0; i < c->route_count; i++) {
		const struct kit_gateway_route *r = &c->routes[i];
		size_t len = strlen(r->prefix);
		char pattern[sizeof(r->pattern)];
		struct kit_param params[KIT_MAX_PARAMS];
		int count;
		const char *rest;

		FUZZ_CHECK(r->prefix[0] == '/' && r->prefix[len - 1] != '/' &&
			   strpbrk(r->prefix, ":*?#") == NULL, "route prefix \"%s\"", r->prefix);
		snprintf(pattern, sizeof(pattern), "%s/...", r->prefix);
		FUZZ_CHECK(strcmp(r->pattern, pattern) == 0, "route %s pattern \"%s\"", r->prefix,
			   r->pattern);
		/* A rewrite is a path; "/" is kept as "" (so that "/" + "/login"
		 * does not give "//login"). */
		FUZZ_CHECK(r->rewrite[0] == '/' || r->rewrite[0] == '\0', "route %s rewrite \"%s\"",
			   r->prefix, r->rewrite);
		FUZZ_CHECK((r->upstream != NULL) != (r->split != NULL),
			   "route %s: upstream and split both or neither", r->prefix);
		if (r->upstream != NULL)
			FUZZ_CHECK(pointer_in(r->upstream, c->upstreams, sizeof(c->upstreams[0]),
					      c->upstream_count),
				   "route %s: upstream outside the table", r->prefix);
		else
			FUZZ_CHECK(pointer_in(r->split, c->splits, sizeof(c->splits[0]), c->split_count),
				   "route %s: split outside the table", r->prefix);
		if (r->rate_limit != NULL)
			FUZZ_CHECK(pointer_in(r->rate_limit, c->policies, sizeof(c->policies[0]),
					      c->policy_count),
				   "route %s: policy outside the table", r->prefix);
		FUZZ_CHECK(r->access == KIT_PUBLIC || r->access == KIT_AUTHENTICATED,
			   "route %s: access %d", r->prefix, r->access);
		FUZZ_CHECK(r->timeout_ms >= 1 && r->timeout_ms <= 600000, "route %s: timeout %ld",
			   r->prefix, r->timeout_ms);
		for (int j = 0; j < i; j++) {
			FUZZ_CHECK(strcmp(c->routes[j].prefix, r->prefix) != 0, "prefix %s twice",
				   r->prefix);
			FUZZ_CHECK(!kit_route_match(c->routes[j].pattern, r->prefix, params, &count,
						    &rest),
				   "route %s can never match: %s comes first", r->prefix,
				   c->routes[j].pattern);
		}
		if (c->version_count > 0 && strncmp(r->prefix, "/api/v", 6) == 0) {
			size_t digits = strspn(r->prefix + 6, "0123456789");
			char end = r->prefix[6 + digits];
			if (digits > 0 && (end == '\0' || end == '/')) {
				bool listed = false;
				for (int k = 0; k < c->version_count; k++)
					listed |= strlen(c->versions[k]) == digits + 1 &&
						  strncmp(c->versions[k], r->prefix + 5, digits + 1) == 0;
				FUZZ_CHECK(listed, "route %s: version not listed", r->prefix);
			}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_string(data, size);
	char error[512];
	int result;

	memset(error, 'Z', sizeof(error));
	result = kit_gateway_config_parse(file_path, text, &parsed, error, sizeof(error));
	FUZZ_CHECK(result == 0 || result == -1, "result %d", result);
	if (result == 0) {
		check_accepted(&parsed);
	} else {
		FUZZ_CHECK(memchr(error, '\0', sizeof(error)) != NULL, "error not NUL-terminated");
		FUZZ_CHECK(strncmp(error, file_path, strlen(file_path)) == 0 &&
			   strncmp(error + strlen(file_path), ": ", 2) == 0,
			   "error \"%s\" does not name the file", error);
	}

	/* The same bytes through the file loader. Its refusals go to stderr
	 * (kit_app_fail); that is silenced while it runs on a refused file. */
	if (ftruncate(file_fd, 0) != 0 || pwrite(file_fd, data, size, 0) != (ssize_t)size)
		abort();
	int saved = -1;
	if (result != 0) {
		fflush(stderr);
		saved = dup(2);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		close(null);
	}
	struct kit_gateway_config *loaded = kit_gateway_config_load(app, file_path);
	if (saved >= 0) {
		fflush(stderr);
		dup2(saved, 2);
		close(saved);
	}
	FUZZ_CHECK((loaded != NULL) == (result == 0), "parse says %d, the loader %s", result,
		   loaded != NULL ? "accepts" : "refuses");
	if (loaded != NULL) {
		FUZZ_CHECK(loaded->route_count == parsed.route_count &&
			   loaded->upstream_count == parsed.upstream_count &&
			   loaded->split_count == parsed.split_count &&
			   loaded->version_count == parsed.version_count,
			   "the loader read a different file");
		for (int i = 0; i < parsed.route_count; i++)
			FUZZ_CHECK(strcmp(loaded->routes[i].pattern, parsed.routes[i].pattern) == 0 &&
				   strcmp(loaded->routes[i].rewrite, parsed.routes[i].rewrite) == 0 &&
				   loaded->routes[i].access == parsed.routes[i].access &&
				   loaded->routes[i].timeout_ms == parsed.routes[i].timeout_ms,
				   "route %d differs when loaded from a file", i);
		free(loaded);
	}
	free(text);
	return 0;
}
