/*
 * rate_limit.c - what every rate limiter shares, whatever keeps its
 * counters (kit/rate_limit.h): the limits per caller class, the fixed
 * window arithmetic, the key, and the answer (headers, 429).
 *
 * The counters themselves live elsewhere: in this process's memory
 * (rate_limit_memory.c, Phase 1) or in Redis (Phase 2/3), which is the
 * point of the guide's "stateless" lesson: the decision below is the same
 * code either way; only where the count is kept changes.
 *
 * Headers: X-RateLimit-Limit/-Remaining/-Reset (the de-facto names; Reset is
 * seconds until the window ends) and the IETF httpapi draft's
 * RateLimit-Policy ("free";q=60;w=60) and RateLimit ("free";r=59;t=42).
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kit/config.h"
#include "kit/rate_limit.h"
#include "kit/request.h"
#include "kit/response.h"

int kit_rate_limit_config_from_env(struct kit_rate_limit_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->name, sizeof(cfg->name), "default");
	if (kit_env_long("RATE_LIMIT_WINDOW_SECONDS", 60, 1, 86400, &cfg->window_seconds) != 0 ||
	    kit_env_long("RATE_LIMIT_ANONYMOUS", 30, 1, 100000000, &cfg->anonymous_limit) != 0 ||
	    kit_env_long("RATE_LIMIT_FREE", 60, 1, 100000000, &cfg->free_limit) != 0 ||
	    kit_env_long("RATE_LIMIT_PREMIUM", 600, 1, 100000000, &cfg->premium_limit) != 0)
		return -1;
	return 0;
}

bool kit_rate_on_redis_failure_parse(const char *text, enum kit_rate_on_redis_failure *out)
{
	static const struct {
		const char *name;
		enum kit_rate_on_redis_failure value;
	} names[] = {
		{ "open", KIT_RATE_ON_REDIS_OPEN },
		{ "closed", KIT_RATE_ON_REDIS_CLOSED },
		{ "local", KIT_RATE_ON_REDIS_LOCAL },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(text, names[i].name) == 0) {
			*out = names[i].value;
			return true;
		}
	}
	return false;
}

const char *kit_rate_on_redis_failure_name(enum kit_rate_on_redis_failure value)
{
	switch (value) {
	case KIT_RATE_ON_REDIS_OPEN: return "open";
	case KIT_RATE_ON_REDIS_CLOSED: return "closed";
	case KIT_RATE_ON_REDIS_LOCAL: return "local";
	case KIT_RATE_ON_REDIS_DEFAULT: break;
	}
	return "default";
}

time_t kit_rate_window_start(long window_seconds, time_t now)
{
	return now - now % window_seconds;
}

struct kit_rate_decision kit_rate_decide(long count, long limit,
					 long window_seconds,
					 time_t window_start, time_t now)
{
	struct kit_rate_decision decision;
	long reset = (long)(window_start + window_seconds - now);

	decision.allowed = count <= limit;
	decision.limit = limit;
	decision.remaining = count >= limit ? 0 : limit - count;
	decision.reset_seconds = reset < 1 ? 1 : reset > window_seconds ? window_seconds : reset;
	return decision;
}

long kit_rate_limit_for(const struct kit_rate_limit_config *cfg,
			const struct kit_request *req, char *key,
			size_t key_size, const char **policy)
{
	if (req->user.authenticated) {
		bool premium = strcmp(req->user.tier, "premium") == 0;

		snprintf(key, key_size, "user:%s", req->user.subject);
		*policy = premium ? "premium" : "free";
		return premium ? cfg->premium_limit : cfg->free_limit;
	}
	snprintf(key, key_size, "ip:%s", req->client_ip);
	*policy = "anonymous";
	return cfg->anonymous_limit;
}

int kit_rate_limit_apply(struct kit_request *req, const char *policy,
			 long window_seconds,
			 const struct kit_rate_decision *decision)
{
	kit_response_headerf(req, "X-RateLimit-Limit", "%ld", decision->limit);
	kit_response_headerf(req, "X-RateLimit-Remaining", "%ld", decision->remaining);
	kit_response_headerf(req, "X-RateLimit-Reset", "%ld", decision->reset_seconds);
	kit_response_headerf(req, "RateLimit-Policy", "\"%s\";q=%ld;w=%ld", policy,
			     decision->limit, window_seconds);
	kit_response_headerf(req, "RateLimit", "\"%s\";r=%ld;t=%ld", policy,
			     decision->remaining, decision->reset_seconds);
	if (decision->allowed)
		return KIT_NEXT;

	kit_response_headerf(req, "Retry-After", "%ld", decision->reset_seconds);
	cJSON *extra = cJSON_CreateObject();
	if (extra != NULL) {
		cJSON_AddStringToObject(extra, "policy", policy);
		cJSON_AddNumberToObject(extra, "limit", (double)decision->limit);
		cJSON_AddNumberToObject(extra, "retry_after_seconds",
					(double)decision->reset_seconds);
	}
	return kit_problem_ext(req, 429, extra,
			       "the %s limit is %ld requests per %ld s; retry in %ld s",
			       policy, decision->limit, window_seconds,
			       decision->reset_seconds);
}
