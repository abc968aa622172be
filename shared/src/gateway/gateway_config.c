/*
 * gateway_config.c - reading the gateway's route file (kit/gateway.h).
 *
 * The file is the gateway's whole routing policy, so it is read strictly:
 * every member is checked for its type and range, an unknown member is an
 * error (a typo such as "prefx" must not silently make a route public or
 * unlimited), and every message names the file, the field and the problem:
 *
 *   phase2-gateway/gateway.json: routes[2].upstream: no upstream named "billing"
 *
 * Defaults are the safe ones: a route is authenticated unless it says
 * "access": "public"; its timeout is 5 s; it uses the RATE_LIMIT_* limits
 * unless it names a policy from "rate_limit_policies". A policy may say
 * what happens while Redis is down, "on_redis_failure": "open" (serve
 * uncounted), "closed" (503) or "local" (count in this process); without
 * it, RATE_LIMIT_ON_REDIS_ERROR decides (kit/rate_limit.h).
 *
 * An upstream gives "url" (one instance) or "urls" (several, balanced:
 * "balance" "round_robin", the default, or "least_in_flight"); its
 * "url_env" variable, when set, replaces them with one URL or a comma-
 * separated list. "breaker": {"failures": 3, "open_ms": 5000} (optional,
 * these are the defaults) sets every instance's circuit breaker
 * (kit/gateway.h).
 *
 * Phase 3 members, both optional (a Phase 2 file has neither):
 *   "versions"  ["v1", "v2"]: "v" and digits, no repeats. A route under
 *               /api/v<digits> must be of a listed version.
 *   "splits"    {"<name>": {"sticky_by": "user", "variants": [{"name",
 *               "upstream", "weight"}, ...]}}: 2 to 8 variants with
 *               distinct names, whole weights of at least 1 adding up to
 *               exactly 100 (percent, so a reader sees the shares), each
 *               naming a known upstream. A route gives "split" or
 *               "upstream", exactly one of the two.
 *
 * Called from main() before the server starts; the result is read-only
 * afterwards.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kit/config.h"
#include "kit/gateway.h"
#include "kit/text.h"

struct parser {
	const char *path;
	char *error;
	size_t error_size;
};

static int fail(struct parser *p, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct parser *p, const char *field, const char *fmt, ...)
{
	char problem[256];
	va_list args;

	va_start(args, fmt);
	vsnprintf(problem, sizeof(problem), fmt, args);
	va_end(args);
	snprintf(p->error, p->error_size, "%s: %s: %s", p->path, field, problem);
	return -1;
}

/* Refuses members of object that are not in allowed (NULL-terminated),
 * and members given twice (cJSON keeps both and finds the first, so
 * "access": "public", "access": "authenticated" would quietly be public). */
static int check_members(struct parser *p, const cJSON *object, const char *field,
			 const char *const *allowed)
{
	const cJSON *member;

	cJSON_ArrayForEach(member, object) {
		for (const cJSON *later = member->next; later != NULL; later = later->next) {
			if (strcmp(member->string, later->string) == 0)
				return fail(p, field, "\"%s\" is given twice", member->string);
		}
		bool known = false;
		for (size_t i = 0; allowed[i] != NULL; i++) {
			if (strcmp(member->string, allowed[i]) == 0)
				known = true;
		}
		if (!known)
			return fail(p, field, "unknown member \"%s\"", member->string);
	}
	return 0;
}

/* A whole number in [min, max], or fallback when absent. */
static int read_long(struct parser *p, const cJSON *object, const char *name,
		     const char *field, long fallback, long min, long max, long *out)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
	char where[192];

	snprintf(where, sizeof(where), "%s.%s", field, name);
	if (item == NULL) {
		if (fallback < min)
			return fail(p, where, "is required");
		*out = fallback;
		return 0;
	}
	if (!cJSON_IsNumber(item))
		return fail(p, where, "must be a whole number");
	/* The range first: casting 1e300 to long is undefined behaviour. */
	if (!(item->valuedouble >= (double)min && item->valuedouble <= (double)max))
		return fail(p, where, "%g is outside %ld..%ld", item->valuedouble, min, max);
	if (item->valuedouble != (double)(long)item->valuedouble)
		return fail(p, where, "must be a whole number");
	*out = (long)item->valuedouble;
	return 0;
}

/* A string of at most size-1 bytes into out, or fallback when absent
 * (NULL fallback: required). */
static int read_string(struct parser *p, const cJSON *object, const char *name,
		       const char *field, const char *fallback, char *out, size_t size)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
	const char *value = fallback;
	char where[192];

	snprintf(where, sizeof(where), "%s.%s", field, name);
	if (item != NULL) {
		if (!cJSON_IsString(item))
			return fail(p, where, "must be a string");
		value = item->valuestring;
	}
	if (value == NULL)
		return fail(p, where, "is required");
	if (strlen(value) >= size)
		return fail(p, where, "is longer than %zu bytes", size - 1);
	strcpy(out, value);
	return 0;
}

static struct kit_upstream *find_upstream(struct kit_gateway_config *config,
					  const char *name)
{
	for (int i = 0; i < config->upstream_count; i++) {
		if (strcmp(config->upstreams[i].name, name) == 0)
			return &config->upstreams[i];
	}
	return NULL;
}

static const struct kit_rate_limit_config *find_policy(const struct kit_gateway_config *config,
							const char *name)
{
	for (int i = 0; i < config->policy_count; i++) {
		if (strcmp(config->policies[i].name, name) == 0)
			return &config->policies[i];
	}
	return NULL;
}

static const struct kit_split *find_split(const struct kit_gateway_config *config,
					  const char *name)
{
	for (int i = 0; i < config->split_count; i++) {
		if (strcmp(config->splits[i].name, name) == 0)
			return &config->splits[i];
	}
	return NULL;
}

/* Upstream, split and variant names become metric labels and headers:
 * 1-31 characters of a-z 0-9 - _. */
static bool is_valid_name(const char *name)
{
	size_t len = strlen(name);

	return len > 0 && len < 32 &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-_") == len;
}

/* One instance's URL, from the file or from url_env (source names which,
 * for the message): http://host[:port], the trailing '/' taken off. */
static int add_instance(struct parser *p, struct kit_upstream *upstream, const char *field,
			const char *source, const char *url, size_t len)
{
	struct kit_upstream_instance *instance;

	if (upstream->instance_count == KIT_UPSTREAM_MAX_INSTANCES)
		return fail(p, field, "%s: more than %d instances", source, KIT_UPSTREAM_MAX_INSTANCES);
	instance = &upstream->instances[upstream->instance_count];
	while (len > 0 && (*url == ' ' || *url == '\t')) {
		url++;
		len--;
	}
	while (len > 0 && (url[len - 1] == ' ' || url[len - 1] == '\t'))
		len--;
	if (len >= sizeof(instance->url))
		return fail(p, field, "%s: a URL is longer than %zu bytes", source,
			    sizeof(instance->url) - 1);
	memcpy(instance->url, url, len);
	instance->url[len] = '\0';
	if (strncmp(instance->url, "http://", 7) != 0 || instance->url[7] == '\0' ||
	    instance->url[7] == '/' || strcspn(instance->url, " \t\r\n,") != len)
		return fail(p, field, "%s \"%s\" must be http://host[:port]", source, instance->url);
	while (len > 7 && instance->url[len - 1] == '/')
		instance->url[--len] = '\0';
	for (int i = 0; i < upstream->instance_count; i++) {
		if (strcmp(upstream->instances[i].url, instance->url) == 0)
			return fail(p, field, "%s lists %s twice", source, instance->url);
	}
	upstream->instance_count++;
	return 0;
}

/* "url": "http://...", or "urls": ["http://...", ...]; the variable
 * "url_env" names, when set, replaces them: one URL or several separated
 * by commas. */
static int parse_instances(struct parser *p, const cJSON *item, const char *field,
			   struct kit_upstream *upstream)
{
	const cJSON *url = cJSON_GetObjectItemCaseSensitive(item, "url");
	const cJSON *urls = cJSON_GetObjectItemCaseSensitive(item, "urls");
	char env_name[64] = "", where[128];
	const char *override;

	if (read_string(p, item, "url_env", field, "", env_name, sizeof(env_name)) != 0)
		return -1;
	if ((url == NULL) == (urls == NULL))
		return fail(p, field, "give \"url\" or \"urls\", one of the two");
	override = env_name[0] != '\0' ? kit_env_string(env_name, NULL) : NULL;
	if (override != NULL) {
		for (const char *at = override;; at++) {
			size_t len = strcspn(at, ",");

			if (add_instance(p, upstream, field, env_name, at, len) != 0)
				return -1;
			at += len;
			if (*at == '\0')
				return 0;
		}
	}
	if (url != NULL) {
		snprintf(where, sizeof(where), "%s.url", field);
		if (!cJSON_IsString(url))
			return fail(p, where, "must be a string");
		return add_instance(p, upstream, field, "url", url->valuestring,
				    strlen(url->valuestring));
	}
	snprintf(where, sizeof(where), "%s.urls", field);
	if (!cJSON_IsArray(urls) || cJSON_GetArraySize(urls) == 0)
		return fail(p, where, "must be an array of at least one URL");
	cJSON_ArrayForEach(url, urls) {
		if (!cJSON_IsString(url))
			return fail(p, where, "must hold strings");
		if (add_instance(p, upstream, where, "urls", url->valuestring,
				 strlen(url->valuestring)) != 0)
			return -1;
	}
	return 0;
}

static int parse_upstreams(struct parser *p, const cJSON *upstreams,
			   struct kit_gateway_config *config)
{
	static const char *const members[] = { "url", "urls", "url_env", "balance", NULL };
	const cJSON *item;

	if (!cJSON_IsObject(upstreams) || cJSON_GetArraySize(upstreams) == 0)
		return fail(p, "upstreams", "must be an object with at least one upstream");

	cJSON_ArrayForEach(item, upstreams) {
		struct kit_upstream *upstream;
		char field[96], balance[24];

		snprintf(field, sizeof(field), "upstreams.%s", item->string);
		if (find_upstream(config, item->string) != NULL)
			return fail(p, field, "is given twice");
		if (config->upstream_count == KIT_GATEWAY_MAX_UPSTREAMS)
			return fail(p, "upstreams", "more than %d upstreams", KIT_GATEWAY_MAX_UPSTREAMS);
		if (!cJSON_IsObject(item))
			return fail(p, field, "must be an object");
		if (!is_valid_name(item->string))
			return fail(p, field, "a name is 1-31 characters of a-z 0-9 - _");
		upstream = &config->upstreams[config->upstream_count];
		memset(upstream, 0, sizeof(*upstream));
		strcpy(upstream->name, item->string);
		if (check_members(p, item, field, members) != 0 ||
		    parse_instances(p, item, field, upstream) != 0 ||
		    read_string(p, item, "balance", field, "round_robin", balance, sizeof(balance)) != 0)
			return -1;
		if (strcmp(balance, "round_robin") == 0) {
			upstream->balance = KIT_BALANCE_ROUND_ROBIN;
		} else if (strcmp(balance, "least_in_flight") == 0) {
			upstream->balance = KIT_BALANCE_LEAST_IN_FLIGHT;
		} else {
			snprintf(field + strlen(field), sizeof(field) - strlen(field), ".balance");
			return fail(p, field, "\"%s\" is not \"round_robin\" or \"least_in_flight\"",
				    balance);
		}
		config->upstream_count++;
	}
	return 0;
}

/* "breaker": {"failures": 3, "open_ms": 5000}, the same for every
 * upstream's instances (kit/gateway.h). */
static int parse_breaker(struct parser *p, const cJSON *breaker,
			 struct kit_gateway_config *config)
{
	static const char *const members[] = { "failures", "open_ms", NULL };
	long failures, open_ms;

	if (breaker != NULL && !cJSON_IsObject(breaker))
		return fail(p, "breaker", "must be an object");
	if ((breaker != NULL && check_members(p, breaker, "breaker", members) != 0) ||
	    read_long(p, breaker, "failures", "breaker", 3, 1, 1000, &failures) != 0 ||
	    read_long(p, breaker, "open_ms", "breaker", 5000, 1, 3600000, &open_ms) != 0)
		return -1;
	for (int i = 0; i < config->upstream_count; i++) {
		config->upstreams[i].breaker_failures = failures;
		config->upstreams[i].breaker_open_ms = open_ms;
	}
	return 0;
}

static int parse_policies(struct parser *p, const cJSON *policies,
			  struct kit_gateway_config *config)
{
	static const char *const members[] = {
		"window_seconds", "anonymous", "free", "premium", "on_redis_failure", NULL,
	};
	const cJSON *item;

	if (policies == NULL)
		return 0;
	if (!cJSON_IsObject(policies))
		return fail(p, "rate_limit_policies", "must be an object");
	cJSON_ArrayForEach(item, policies) {
		struct kit_rate_limit_config *policy;
		const cJSON *on_failure;
		char field[96];

		snprintf(field, sizeof(field), "rate_limit_policies.%s", item->string);
		if (find_policy(config, item->string) != NULL)
			return fail(p, field, "is given twice");
		if (config->policy_count == KIT_GATEWAY_MAX_POLICIES)
			return fail(p, "rate_limit_policies", "more than %d policies",
				    KIT_GATEWAY_MAX_POLICIES);
		if (!cJSON_IsObject(item))
			return fail(p, field, "must be an object");
		policy = &config->policies[config->policy_count];
		memset(policy, 0, sizeof(*policy));
		if (strlen(item->string) == 0 || strlen(item->string) >= sizeof(policy->name))
			return fail(p, field, "a name is 1-31 characters");
		strcpy(policy->name, item->string);
		if (check_members(p, item, field, members) != 0 ||
		    read_long(p, item, "window_seconds", field, -1, 1, 86400, &policy->window_seconds) != 0 ||
		    read_long(p, item, "anonymous", field, -1, 1, 100000000, &policy->anonymous_limit) != 0 ||
		    read_long(p, item, "free", field, -1, 1, 100000000, &policy->free_limit) != 0 ||
		    read_long(p, item, "premium", field, -1, 1, 100000000, &policy->premium_limit) != 0)
			return -1;
		policy->on_redis_failure = KIT_RATE_ON_REDIS_DEFAULT;
		on_failure = cJSON_GetObjectItemCaseSensitive(item, "on_redis_failure");
		if (on_failure != NULL &&
		    !(cJSON_IsString(on_failure) &&
		      kit_rate_on_redis_failure_parse(on_failure->valuestring,
						      &policy->on_redis_failure))) {
			char where[160];

			snprintf(where, sizeof(where), "%s.on_redis_failure", field);
			return fail(p, where, "must be \"open\", \"closed\" or \"local\"");
		}
		config->policy_count++;
	}
	return 0;
}

/* True when s is "v" and 1-9 digits ("v1", "v2", "v10"). */
static bool is_version_name(const char *s, size_t len)
{
	return len >= 2 && len <= 10 && s[0] == 'v' &&
	       strspn(s + 1, "0123456789") >= len - 1;
}

static bool has_version(const struct kit_gateway_config *config, const char *s,
			size_t len)
{
	for (int i = 0; i < config->version_count; i++) {
		if (strlen(config->versions[i]) == len &&
		    strncmp(config->versions[i], s, len) == 0)
			return true;
	}
	return false;
}

static int parse_versions(struct parser *p, const cJSON *versions,
			  struct kit_gateway_config *config)
{
	const cJSON *item;
	int index = 0;

	if (versions == NULL)
		return 0;
	if (!cJSON_IsArray(versions) || cJSON_GetArraySize(versions) == 0)
		return fail(p, "versions", "must be an array of at least one version, like [\"v1\", \"v2\"]");
	if (cJSON_GetArraySize(versions) > KIT_GATEWAY_MAX_VERSIONS)
		return fail(p, "versions", "more than %d versions", KIT_GATEWAY_MAX_VERSIONS);
	cJSON_ArrayForEach(item, versions) {
		char field[32];

		snprintf(field, sizeof(field), "versions[%d]", index);
		if (!cJSON_IsString(item) ||
		    !is_version_name(item->valuestring, strlen(item->valuestring)))
			return fail(p, field, "must be a string of \"v\" and 1-9 digits, like \"v2\"");
		if (has_version(config, item->valuestring, strlen(item->valuestring)))
			return fail(p, field, "\"%s\" is given twice", item->valuestring);
		strcpy(config->versions[config->version_count++], item->valuestring);
		index++;
	}
	return 0;
}

static int parse_variant(struct parser *p, const cJSON *item, const char *field,
			 struct kit_split *split, struct kit_gateway_config *config)
{
	static const char *const members[] = { "name", "upstream", "weight", NULL };
	struct kit_split_variant *variant = &split->variants[split->variant_count];
	char upstream[32], where[160];

	memset(variant, 0, sizeof(*variant));
	if (!cJSON_IsObject(item))
		return fail(p, field, "must be an object");
	if (check_members(p, item, field, members) != 0 ||
	    read_string(p, item, "name", field, NULL, variant->name, sizeof(variant->name)) != 0 ||
	    read_string(p, item, "upstream", field, NULL, upstream, sizeof(upstream)) != 0 ||
	    read_long(p, item, "weight", field, -1, 1, 100, &variant->weight) != 0)
		return -1;

	snprintf(where, sizeof(where), "%s.name", field);
	if (!is_valid_name(variant->name))
		return fail(p, where, "\"%s\": a name is 1-31 characters of a-z 0-9 - _",
			    variant->name);
	for (int i = 0; i < split->variant_count; i++) {
		if (strcmp(split->variants[i].name, variant->name) == 0)
			return fail(p, where, "\"%s\" is also variants[%d]'s name",
				    variant->name, i);
	}
	snprintf(where, sizeof(where), "%s.upstream", field);
	variant->upstream = find_upstream(config, upstream);
	if (variant->upstream == NULL)
		return fail(p, where, "no upstream named \"%s\"", upstream);
	split->variant_count++;
	return 0;
}

static int parse_splits(struct parser *p, const cJSON *splits,
			struct kit_gateway_config *config)
{
	static const char *const members[] = { "sticky_by", "variants", NULL };
	const cJSON *item;

	if (splits == NULL)
		return 0;
	if (!cJSON_IsObject(splits))
		return fail(p, "splits", "must be an object");
	cJSON_ArrayForEach(item, splits) {
		struct kit_split *split;
		const cJSON *variants, *variant;
		char field[96], where[160], sticky_by[16];
		long total = 0;

		snprintf(field, sizeof(field), "splits.%s", item->string);
		if (find_split(config, item->string) != NULL)
			return fail(p, field, "is given twice");
		if (config->split_count == KIT_GATEWAY_MAX_SPLITS)
			return fail(p, "splits", "more than %d splits", KIT_GATEWAY_MAX_SPLITS);
		if (!cJSON_IsObject(item))
			return fail(p, field, "must be an object");
		if (!is_valid_name(item->string))
			return fail(p, field, "a name is 1-31 characters of a-z 0-9 - _");
		split = &config->splits[config->split_count];
		memset(split, 0, sizeof(*split));
		strcpy(split->name, item->string);
		if (check_members(p, item, field, members) != 0 ||
		    read_string(p, item, "sticky_by", field, "user", sticky_by, sizeof(sticky_by)) != 0)
			return -1;
		if (strcmp(sticky_by, "user") != 0) {
			snprintf(where, sizeof(where), "%s.sticky_by", field);
			return fail(p, where, "\"%s\" is not \"user\"", sticky_by);
		}
		split->sticky_by = KIT_SPLIT_STICKY_USER;

		snprintf(where, sizeof(where), "%s.variants", field);
		variants = cJSON_GetObjectItemCaseSensitive(item, "variants");
		if (!cJSON_IsArray(variants) || cJSON_GetArraySize(variants) < 2)
			return fail(p, where, "must be an array of at least two variants");
		if (cJSON_GetArraySize(variants) > KIT_SPLIT_MAX_VARIANTS)
			return fail(p, where, "more than %d variants", KIT_SPLIT_MAX_VARIANTS);
		cJSON_ArrayForEach(variant, variants) {
			char variant_field[160];

			snprintf(variant_field, sizeof(variant_field), "%s.variants[%d]",
				 field, split->variant_count);
			if (parse_variant(p, variant, variant_field, split, config) != 0)
				return -1;
			total += split->variants[split->variant_count - 1].weight;
		}
		/* Percentages: a reader of the file sees each share as it is. */
		if (total != 100)
			return fail(p, where, "the weights add up to %ld; they must add up to 100", total);
		config->split_count++;
	}
	return 0;
}

/* A path prefix: starts with '/', no trailing '/', no '?', '#', '*' or
 * "...", at most 127 bytes ("/" alone is refused: a catch-all route is
 * better written out). */
static bool is_valid_prefix(const char *prefix)
{
	size_t len = strlen(prefix);

	return len >= 2 && prefix[0] == '/' && prefix[len - 1] != '/' &&
	       strpbrk(prefix, "?#*: \t") == NULL && strstr(prefix, "..") == NULL &&
	       strstr(prefix, "//") == NULL; /* ':' would make a parameter */
}

static int parse_route(struct parser *p, const cJSON *item, int index,
		       struct kit_gateway_config *config)
{
	static const char *const members[] = {
		"prefix", "upstream", "split", "rewrite", "access", "rate_limit", "timeout_ms",
		"cache", NULL,
	};
	static const char *const cache_members[] = { "ttl_seconds", NULL };
	const cJSON *cache = cJSON_GetObjectItemCaseSensitive(item, "cache");
	struct kit_gateway_route *route = &config->routes[index];
	char field[32], upstream[32] = "", split[32] = "", access[32], policy[32] = "";
	bool has_upstream = cJSON_GetObjectItemCaseSensitive(item, "upstream") != NULL;
	bool has_split = cJSON_GetObjectItemCaseSensitive(item, "split") != NULL;

	snprintf(field, sizeof(field), "routes[%d]", index);
	memset(route, 0, sizeof(*route));
	if (!cJSON_IsObject(item))
		return fail(p, field, "must be an object");
	if (check_members(p, item, field, members) != 0)
		return -1;
	/* Where the route goes: one upstream, or a split between several. */
	if (has_upstream && has_split)
		return fail(p, field, "gives both \"upstream\" and \"split\"; give exactly one");
	if (!has_upstream && !has_split)
		return fail(p, field, "needs \"upstream\" (or \"split\")");
	if (read_string(p, item, "prefix", field, NULL, route->prefix, sizeof(route->prefix)) != 0 ||
	    (has_upstream &&
	     read_string(p, item, "upstream", field, NULL, upstream, sizeof(upstream)) != 0) ||
	    (has_split &&
	     read_string(p, item, "split", field, NULL, split, sizeof(split)) != 0) ||
	    read_string(p, item, "rewrite", field, route->prefix, route->rewrite, sizeof(route->rewrite)) != 0 ||
	    read_string(p, item, "access", field, "authenticated", access, sizeof(access)) != 0 ||
	    read_string(p, item, "rate_limit", field, "", policy, sizeof(policy)) != 0 ||
	    read_long(p, item, "timeout_ms", field, 5000, 1, 600000, &route->timeout_ms) != 0)
		return -1;

	snprintf(field, sizeof(field), "routes[%d].prefix", index);
	if (!is_valid_prefix(route->prefix))
		return fail(p, field, "\"%s\" must start with '/', not end with one, and have no ':', '*', '?' or '#'",
			    route->prefix);
	for (int i = 0; i < index; i++) {
		const char *earlier = config->routes[i].prefix;
		size_t len = strlen(earlier);

		if (strcmp(earlier, route->prefix) == 0)
			return fail(p, field, "\"%s\" is also routes[%d]'s prefix", route->prefix, i);
		/* Routes match in order: an earlier "/api" would take every
		 * request meant for a later "/api/v1/users" (and its access). */
		if (strncmp(earlier, route->prefix, len) == 0 && route->prefix[len] == '/')
			return fail(p, field, "\"%s\" can never match: routes[%d] (\"%s\") comes first and covers it; list the longer prefix first",
				    route->prefix, i, earlier);
	}
	/* With "versions", /api/v7/... must be a listed version: otherwise the
	 * catch-all would call v7 unknown while a route serves it. */
	if (config->version_count > 0 && strncmp(route->prefix, "/api/", 5) == 0) {
		const char *segment = route->prefix + 5;
		size_t len = strcspn(segment, "/");

		if (is_version_name(segment, len) && !has_version(config, segment, len))
			return fail(p, field, "\"%s\" is under %.*s, which \"versions\" does not list",
				    route->prefix, (int)len, segment);
	}
	/* prefix is at most 127 bytes, pattern has room for it and "/...". */
	strcpy(route->pattern, route->prefix);
	strcat(route->pattern, "/...");

	snprintf(field, sizeof(field), "routes[%d].rewrite", index);
	if (route->rewrite[0] != '/' || strpbrk(route->rewrite, "?# \t") != NULL)
		return fail(p, field, "\"%s\" must be a path starting with '/'", route->rewrite);
	if (strcmp(route->rewrite, "/") == 0)
		route->rewrite[0] = '\0'; /* "/" + "/login" must not give "//login" */

	if (has_upstream) {
		snprintf(field, sizeof(field), "routes[%d].upstream", index);
		route->upstream = find_upstream(config, upstream);
		if (route->upstream == NULL)
			return fail(p, field, "no upstream named \"%s\"", upstream);
	} else {
		snprintf(field, sizeof(field), "routes[%d].split", index);
		route->split = find_split(config, split);
		if (route->split == NULL)
			return fail(p, field, "no split named \"%s\" in splits", split);
	}

	snprintf(field, sizeof(field), "routes[%d].access", index);
	if (strcmp(access, "public") == 0)
		route->access = KIT_PUBLIC;
	else if (strcmp(access, "authenticated") == 0)
		route->access = KIT_AUTHENTICATED;
	else
		return fail(p, field, "\"%s\" is not \"public\" or \"authenticated\"", access);

	if (policy[0] != '\0') {
		snprintf(field, sizeof(field), "routes[%d].rate_limit", index);
		route->rate_limit = find_policy(config, policy);
		if (route->rate_limit == NULL)
			return fail(p, field, "no policy named \"%s\" in rate_limit_policies", policy);
	}

	/* "cache": {"ttl_seconds": N} (kit/cache.h). Not on a split: one
	 * variant's answer would be served to the other's callers. */
	if (cache != NULL) {
		snprintf(field, sizeof(field), "routes[%d].cache", index);
		if (!cJSON_IsObject(cache))
			return fail(p, field, "must be an object");
		if (has_split)
			return fail(p, field, "a split route is not cached: one variant's answers would reach the other's callers");
		if (check_members(p, cache, field, cache_members) != 0 ||
		    read_long(p, cache, "ttl_seconds", field, 0, 1, 86400, &route->cache.ttl_seconds) != 0)
			return -1;
		strcpy(route->cache.route, route->prefix);
		route->cache.service = route->upstream->name;
		route->cached = true;
	}
	return 0;
}

int kit_gateway_config_parse(const char *path, const char *text,
			     struct kit_gateway_config *config, char *error,
			     size_t error_size)
{
	static const char *const top_members[] = {
		"versions", "upstreams", "breaker", "pool", "rate_limit_policies", "splits", "routes",
		NULL,
	};
	static const char *const pool_members[] = {
		"max_idle_per_thread", "max_idle_per_upstream", "idle_timeout_seconds",
		"connect_timeout_ms",
		"max_response_bytes", NULL,
	};
	struct parser p = { .path = path, .error = error, .error_size = error_size };
	const cJSON *pool, *routes, *item;
	cJSON *root;
	int result = -1, index = 0;

	memset(config, 0, sizeof(*config));
	snprintf(config->path, sizeof(config->path), "%s", path);
	if (!kit_json_escapes_are_sound(text, strlen(text))) {
		fail(&p, "(file)", "a \\u escape that is not four hex digits, or stands for NUL");
		return -1;
	}
	root = cJSON_Parse(text);
	if (root == NULL) {
		fail(&p, "(file)", "not valid JSON (near byte %ld)",
		     cJSON_GetErrorPtr() != NULL ? (long)(cJSON_GetErrorPtr() - text) : 0L);
		return -1;
	}
	if (!cJSON_IsObject(root)) {
		fail(&p, "(file)", "the top level must be a JSON object");
		goto out;
	}
	if (check_members(&p, root, "(top level)", top_members) != 0 ||
	    parse_upstreams(&p, cJSON_GetObjectItemCaseSensitive(root, "upstreams"), config) != 0 ||
	    parse_breaker(&p, cJSON_GetObjectItemCaseSensitive(root, "breaker"), config) != 0 ||
	    parse_policies(&p, cJSON_GetObjectItemCaseSensitive(root, "rate_limit_policies"), config) != 0 ||
	    parse_versions(&p, cJSON_GetObjectItemCaseSensitive(root, "versions"), config) != 0 ||
	    parse_splits(&p, cJSON_GetObjectItemCaseSensitive(root, "splits"), config) != 0)
		goto out;

	pool = cJSON_GetObjectItemCaseSensitive(root, "pool");
	if (pool != NULL && !cJSON_IsObject(pool)) {
		fail(&p, "pool", "must be an object");
		goto out;
	}
	if ((pool != NULL && check_members(&p, pool, "pool", pool_members) != 0) ||
	    read_long(&p, pool, "max_idle_per_thread", "pool", 4, 1, 64, &config->max_idle_per_thread) != 0 ||
	    read_long(&p, pool, "max_idle_per_upstream", "pool", 8, 0, 1024, &config->max_idle_per_upstream) != 0 ||
	    read_long(&p, pool, "idle_timeout_seconds", "pool", 20, 1, 3600, &config->idle_timeout_seconds) != 0 ||
	    read_long(&p, pool, "connect_timeout_ms", "pool", 500, 1, 60000, &config->connect_timeout_ms) != 0 ||
	    read_long(&p, pool, "max_response_bytes", "pool", 8L << 20, 1024, 1L << 30, &config->max_response_bytes) != 0)
		goto out;

	routes = cJSON_GetObjectItemCaseSensitive(root, "routes");
	if (!cJSON_IsArray(routes) || cJSON_GetArraySize(routes) == 0) {
		fail(&p, "routes", "must be an array with at least one route");
		goto out;
	}
	if (cJSON_GetArraySize(routes) > KIT_GATEWAY_MAX_ROUTES) {
		fail(&p, "routes", "more than %d routes", KIT_GATEWAY_MAX_ROUTES);
		goto out;
	}
	cJSON_ArrayForEach(item, routes) {
		if (parse_route(&p, item, index, config) != 0)
			goto out;
		index++;
	}
	config->route_count = index;
	result = 0;
out:
	cJSON_Delete(root);
	return result;
}

struct kit_gateway_config *kit_gateway_config_load(struct kit_app *app,
						   const char *path)
{
	struct kit_gateway_config *config = calloc(1, sizeof(*config));
	char error[512];
	char *text = NULL;
	long size;
	FILE *file = fopen(path, "rb");

	if (config == NULL || file == NULL) {
		kit_app_fail(app, "%s: cannot open: %m (set GATEWAY_CONFIG)", path);
		goto fail;
	}
	size = fseek(file, 0, SEEK_END) == 0 ? ftell(file) : -1;
	if (size < 0 || size > (1 << 20) || fseek(file, 0, SEEK_SET) != 0) {
		kit_app_fail(app, "%s: cannot read, or larger than 1 MiB", path);
		goto fail;
	}
	text = malloc((size_t)size + 1);
	if (text == NULL || fread(text, 1, (size_t)size, file) != (size_t)size) {
		kit_app_fail(app, "%s: cannot read", path);
		goto fail;
	}
	text[size] = '\0';
	fclose(file);
	file = NULL;
	if (kit_gateway_config_parse(path, text, config, error, sizeof(error)) != 0) {
		kit_app_fail(app, "%s", error);
		goto fail;
	}
	free(text);
	return config;
fail:
	if (file != NULL)
		fclose(file);
	free(text);
	free(config);
	return NULL;
}
