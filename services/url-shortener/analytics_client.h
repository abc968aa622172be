/*
 * services/url-shortener/analytics_client.h - Phase 2: telling the analytics
 * service about new links and clicks over HTTP, off the request path.
 *
 * The monolith hands url_shortener_mount() analytics_in_process (direct
 * calls into analytics.c). The url-shortener process hands it
 * analytics_over_http(app) instead: the same struct analytics_events, whose
 * calls put the event on a bounded in-memory queue and return at once; one
 * background thread posts the queue, in order, to the analytics service's
 * POST /internal/links and /internal/clicks (analytics_client.c).
 *
 * Configuration (docs/configuration.md):
 *   ANALYTICS_URL            where analytics listens (http://127.0.0.1:8082)
 *   ANALYTICS_QUEUE_SIZE     events waiting at most (10000, 1..1000000)
 *   ANALYTICS_DRAIN_SECONDS  delivery time left at a clean stop (2, 0..60);
 *                            what is left then waits in Redis
 */
#ifndef SERVICES_URL_SHORTENER_ANALYTICS_CLIENT_H
#define SERVICES_URL_SHORTENER_ANALYTICS_CLIENT_H

struct kit_app;
struct analytics_events;

/*
 * Reads the configuration, registers the client's metrics, calls
 * curl_global_init(), takes into its queue the events a previous stop left
 * undelivered in Redis ("analytics:undelivered", REDIS_URL; when Redis
 * cannot be reached they stay there, for the next start) and starts the
 * sender thread. Call it from main()'s
 * thread before kit_app_run(): curl_global_init() is not thread-safe, so it
 * must run while no other thread uses libcurl.
 *
 * Returns the events to give url_shortener_mount(); never NULL. On a bad
 * setting (or no memory, or no thread) it calls kit_app_fail(), so
 * kit_app_run() refuses to start, and the events it returns refuse every
 * event (-1). One client per process: a second call returns the same events.
 */
const struct analytics_events *analytics_over_http(struct kit_app *app);

/*
 * Call after kit_app_run() has returned (no worker thread is left to queue
 * events). Stops taking events, lets the sender deliver what is queued for
 * at most ANALYTICS_DRAIN_SECONDS, appends what is still queued to the
 * Redis list "analytics:undelivered" for the next start, says on stderr how
 * many were delivered, kept and (when Redis cannot be reached either) lost,
 * joins the thread and frees the client. Harmless when
 * analytics_over_http() was never called or failed.
 */
void analytics_client_stop(void);

#endif
