/*
 * kit/middleware.h - the middleware the kit ships, one per file in
 * shared/src. A phase's main.c kit_use()s them in the order of the chain:
 *
 *   request id -> [tracing] -> access log -> metrics -> CORS -> auth
 *   -> rate limit -> [response cache]
 *
 * Each file's opening comment says what it reads and writes on the request
 * context and which environment variables configure it.
 *
 * Writing one of your own: fill a struct kit_middleware (kit/app.h) with
 * handle() and, if it must see the answer, finish(). It runs under the
 * contract at the top of kit/app.h: on civetweb it may block; on the event
 * loop it runs on a 128 KiB coroutine stack, may wait only through
 * kit/wait.h, and must say so with .loop_safe = true, or an app on the loop
 * refuses to start. Every middleware below is loop_safe.
 */
#ifndef KIT_MIDDLEWARE_H
#define KIT_MIDDLEWARE_H

#include "kit/app.h"

/* request_id.c: X-Request-Id honoured when sane, else generated; echoed. */
extern const struct kit_middleware kit_request_id;
/* tracing.c: a Jaeger server span per request, uber-trace-id in and out,
 * X-Trace-ID on every response (kit/tracing.h). */
extern const struct kit_middleware kit_tracing;
/* access_log.c: one JSON line per request on stdout, written last. */
extern const struct kit_middleware kit_access_log;
/* metrics.c: http_requests_total, http_request_duration_seconds, in-flight. */
extern const struct kit_middleware kit_metrics;
/* cors.c: preflight answered, allowed origins from CORS_ALLOWED_ORIGINS. */
extern const struct kit_middleware kit_cors;
/* auth_jwt.c: Bearer JWT verified for KIT_AUTHENTICATED routes. */
extern const struct kit_middleware kit_auth_jwt;
/* identity_headers.c (services behind a gateway): X-User-Id/-Tier trusted
 * when they follow the rules of a token's claims (kit/jwt.h). */
extern const struct kit_middleware kit_identity_headers;
/* rate_limit_memory.c: fixed window counted in this process's memory. */
extern const struct kit_middleware kit_rate_limit_memory;
/* rate_limit_redis.c: the same window counted in Redis, shared by every
 * instance (one atomic round trip); while Redis is down each policy fails
 * open, closed or local (its own count in memory) by config. */
extern const struct kit_middleware kit_rate_limit_redis;
/* The gateway's response cache, in Redis: on a route whose gateway.json
 * entry says "cache", a GET answered from Redis (X-Cache: HIT) or stored
 * for the next caller; a write drops the path's entries (kit/cache.h). */
extern const struct kit_middleware kit_response_cache;

/* The operations endpoints, mounted by every process (operations.c):
 * GET /health (liveness: 200 {"status":"ok","service"}, constant, asks
 * nothing), GET /health/details (the operator's report, with
 * OPERATOR_TOKEN: uptime, memory, every kit_app_health_check() and
 * kit_app_health_report(), run at most once per HEALTH_CHECK_INTERVAL_MS)
 * and GET /metrics. A bad OPERATOR_TOKEN or HEALTH_CHECK_INTERVAL_MS
 * fails start-up. */
void kit_mount_operations(struct kit_app *app);

#endif
