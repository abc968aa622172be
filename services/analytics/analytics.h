/*
 * services/analytics - click counts per short link: total, per day (UTC),
 * last referrer and last user-agent family.
 *
 * Route:   GET /analytics/:code (authenticated; the link's owner only, 403
 *          for anyone else) -> 200 {"code","clicks","clicks_by_day",...}
 *          Phase 2's process adds POST /internal/links and /internal/clicks
 *          (analytics_mount_internal).
 *
 * Data: "analytics:<code>" hash with fields owner, total, day:<YYYY-MM-DD>,
 * last_referrer, last_user_agent_family.
 */
#ifndef SERVICES_ANALYTICS_H
#define SERVICES_ANALYTICS_H

#include <stddef.h>

struct kit_app;
struct kit_request;
struct kit_store;

/* How the url-shortener tells analytics what happened. Each returns 0 when
 * the event was stored (or handed on), -1 when it was lost; the caller
 * counts losses in a metric. */
struct analytics_events {
	int (*link_created)(struct kit_request *req, const char *code,
			    const char *owner);
	int (*clicked)(struct kit_request *req, const char *code,
		       const char *referrer, const char *user_agent);
};

/* The monolith's events: straight into the store, in the same process. */
extern const struct analytics_events analytics_in_process;

void analytics_mount(struct kit_app *app);

/* Phase 2's analytics process only (services/analytics/main.c), never the
 * monolith: the endpoints the url-shortener's analytics client posts to,
 *   POST /internal/links   {"code","owner"}                        -> 204
 *   POST /internal/clicks  {"code","referrer"?,"user_agent"?,"at"?} -> 204
 * ("at": unix seconds, default now). 400 for a bad event, 503 when the
 * store fails. Unauthenticated: reachable only on the internal network,
 * because the gateway has no route to /internal. */
void analytics_mount_internal(struct kit_app *app);

/* Milestones (milestones.c): after a click is stored, tells the link's
 * owner through the notifications service (NOTIFICATIONS_URL) when the
 * link has passed one of CLICK_MILESTONES. init fails start-up (and
 * returns -1) on a bad setting. analytics_milestone_reached() is the
 * largest milestone at or below total, 0 for none. */
int analytics_milestones_init(struct kit_app *app);

/* "analytics:<code>", a link's hash, into key. Returns 0, or -1 when it
 * does not fit. */
int analytics_key(char *key, size_t key_size, const char *code);
void analytics_milestones_check(struct kit_request *req, struct kit_store *store,
				const char *code);
long analytics_milestone_reached(long long total);

/* The storage side, shared by analytics_in_process and (Phase 2) the
 * service's own HTTP endpoint. Return 0 or -1 (store error). */
int analytics_store_link(struct kit_store *store, const char *code,
			 const char *owner);
int analytics_store_click(struct kit_store *store, const char *code,
			  const char *referrer, const char *user_agent,
			  long long now);

/* "Chrome", "Firefox", "Safari", "Edge", "curl", "bot", "other". */
const char *analytics_user_agent_family(const char *user_agent);

#endif
