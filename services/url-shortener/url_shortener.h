/*
 * services/url-shortener - short codes for http(s) URLs.
 *
 * Routes:  POST /shorten       (authenticated) {"url","alias"?} -> 201
 *          GET  /expand/:code  (public)  -> 200 {"code","url",...}
 *          GET  /r/:code       (public)  -> 302 Location, click recorded
 *
 * Links are stored as "link:<code>" -> JSON {code,url,owner,created_at}
 * and "expires_at" (epoch seconds) when made to expire (v2). API_VERSION=2
 * serves the v2 answers (docs/api.md); an expired link is 410 in both.
 * The service tells analytics about new links and clicks through a struct
 * analytics_events: direct calls in the monolith, HTTP from Phase 2 on.
 */
#ifndef SERVICES_URL_SHORTENER_H
#define SERVICES_URL_SHORTENER_H

#include <stdbool.h>
#include <stddef.h>

struct kit_app;
struct analytics_events;

/* Reads PUBLIC_BASE_URL (the prefix of short_url and of v2's links,
 * default http://localhost:<port>) and API_VERSION (1 or 2, default 1; any
 * other value fails start-up) and mounts the routes. events must outlive
 * app. */
void url_shortener_mount(struct kit_app *app,
			 const struct analytics_events *events);

/* url_validate.c. True when url is an absolute http:// or https:// URL with
 * a host, at most 2048 bytes, with no control characters, spaces or
 * backslashes. Otherwise false with the reason in why. */
bool url_is_acceptable(const char *url, char *why, size_t why_size);

/* True when alias is 3..32 characters of [A-Za-z0-9_-]. */
bool alias_is_valid(const char *alias);

#endif
