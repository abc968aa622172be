/*
 * kit/gateway.h - the gateway's configuration and its proxy.
 *
 * The route table comes from a JSON file (phase2-gateway/gateway.json):
 * upstreams by name (each one URL, or several instances to balance
 * between, below), connection-pool settings, named rate-limit policies,
 * and routes (path prefix -> upstream, prefix rewrite, who may call it, its
 * policy and timeout). kit_gateway_mount() turns each route into a kit
 * route ("<prefix>/...", any method) whose handler is the proxy.
 *
 * Phase 3 adds two optional parts (phase3-advanced/gateway.json):
 *   "versions": ["v1", "v2"]  the API versions. kit_gateway_mount() then
 *      adds, after every route, a catch-all "/api/..." that answers 404
 *      for /api/v3/... (detail 'unknown API version "v3"', member
 *      "supported_versions") and for a known version without that route.
 *      An unversioned /api/<path> with "API-Version: 2" (or "v2") is
 *      served by the route of /api/v2/<path>, for public routes without
 *      a rate-limit policy of their own only: auth and rate limiting have
 *      run against the catch-all, which is public; anything else answers
 *      400 naming the versioned path to call.
 *   "splits": {"<name>": {"sticky_by": "user", "variants": [{"name",
 *      "upstream", "weight"}, ...]}}  A/B tests and canaries. A route that
 *      says "split": "<name>" instead of "upstream" sends each caller to
 *      one variant's upstream, the same one every time (see
 *      kit_split_choose()).
 *
 * The proxy (proxy.c) sends the request on with its own HTTP/1.1 client
 * (upstream_http.c): each thread keeps idle keep-alive connections per
 * upstream instance (a loop thread's requests use them in turn, a civetweb
 * worker's one at a time). Pool statistics per upstream are counted where
 * that client opens and closes connections.
 *
 * Threads: the configuration is loaded by main() and read-only after; pool
 * statistics are atomics. kit_split_choose() and kit_split_cookie() are pure.
 */
#ifndef KIT_GATEWAY_H
#define KIT_GATEWAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kit/app.h"
#include "kit/cache.h"
#include "kit/rate_limit.h"

#define KIT_GATEWAY_MAX_UPSTREAMS 16
#define KIT_GATEWAY_MAX_ROUTES 48
#define KIT_GATEWAY_MAX_POLICIES 8
#define KIT_GATEWAY_MAX_VERSIONS 8
#define KIT_GATEWAY_MAX_SPLITS 8
#define KIT_SPLIT_MAX_VARIANTS 8
#define KIT_SPLIT_BUCKETS 10000  /* a caller's bucket: hash % 10000        */
#define KIT_SPLIT_COOKIE "kit_ab" /* an anonymous caller's stable key      */

/*
 * What the proxy passes on. A header line ("Name: value") longer than
 * KIT_PROXY_HEADER_LINE_MAX is refused with 431, never cut short: 16 KiB,
 * the most a request head may take on either server core (the event
 * loop's head limit, civetweb's max_request_size), so a line the core
 * accepted is passed on whole; the check guards a core whose limit is
 * raised. A request with more than
 * MAX_REQUEST_HEADERS header fields (default 48) is refused with 431: the
 * gateway adds up to KIT_PROXY_OWN_HEADERS of its own (X-Forwarded-For,
 * -Proto, -Host, X-Request-Id, X-User-Id, X-User-Tier, uber-trace-id, and
 * from the client Host and Content-Length where the client sent none), and an
 * upstream on civetweb reads 64 at most: past that X-User-Id would be lost
 * and the service would answer 401 for an authenticated caller. So
 * MAX_REQUEST_HEADERS may be at most 64 - 9 = 55.
 */
#define KIT_PROXY_HEADER_LINE_MAX 16384
#define KIT_PROXY_OWN_HEADERS 9
#define KIT_PROXY_MAX_REQUEST_HEADERS (64 - KIT_PROXY_OWN_HEADERS)

/* Connection-pool counters of one upstream, like the guide's agentkeepalive
 * getCurrentStatus(). open = created - closed; idle = open - in_use. */
struct kit_pool_stats {
	atomic_long created;  /* connections opened                    */
	atomic_long errors;   /* connection attempts that failed        */
	atomic_long closed;   /* connections closed (either side)       */
	atomic_long in_use;   /* requests on the wire right now         */
	atomic_long requests; /* requests sent (retries included)       */
};

/*
 * An upstream may run as several instances ("urls" in the file, or a
 * comma-separated list in its url_env variable). The balancer
 * (balancer.c) picks one per attempt: round robin, or the one with the
 * fewest requests in flight ("balance": "least_in_flight"). Each
 * instance has a circuit breaker:
 *   closed     in rotation; consecutive_failures counts failed attempts
 *              (refused, reset, no answer, timed out, or a 502/503/504
 *              answer) and any other answer sets it back to 0;
 *   open       after breaker.failures of them in a row: out of rotation
 *              for breaker.open_ms;
 *   half_open  then one request is let through as a probe: an answer
 *              closes the breaker, a failure opens it again.
 * When every instance is open, the balancer uses them anyway (Envoy's
 * "panic mode"): failing every request fast would turn a blip into an
 * outage. So an upstream of one instance is always tried; its breaker
 * still shows in /health/details and the metrics.
 */
#define KIT_UPSTREAM_MAX_INSTANCES 8

enum kit_breaker_state {
	KIT_BREAKER_CLOSED = 0,
	KIT_BREAKER_HALF_OPEN = 1,
	KIT_BREAKER_OPEN = 2,
};

struct kit_upstream_instance {
	char url[256];                /* "http://127.0.0.1:8081", no '/' at the end */
	atomic_long in_flight;        /* attempts on the wire now                  */
	atomic_long consecutive_failures;
	atomic_int state;             /* enum kit_breaker_state                    */
	atomic_ullong opened_ns;      /* when it last opened (kit_now_ns)          */
	atomic_long requests;         /* attempts sent, ever                       */
	atomic_long failures;         /* of those, failed                          */
	atomic_long ejections;        /* times the breaker opened                  */
};

enum kit_balance {
	KIT_BALANCE_ROUND_ROBIN,
	KIT_BALANCE_LEAST_IN_FLIGHT,
};

struct kit_upstream {
	char name[32];         /* "url-shortener"                          */
	struct kit_upstream_instance instances[KIT_UPSTREAM_MAX_INSTANCES];
	int instance_count;    /* 1 or more                                */
	enum kit_balance balance;
	atomic_ulong next;     /* round robin's turn                       */
	long breaker_failures; /* the file's breaker.failures (3)          */
	long breaker_open_ms;  /* the file's breaker.open_ms (5000)        */
	struct kit_pool_stats pool;
};

/* The balancer (balancer.c). kit_balancer_pick() returns the instance
 * for the next attempt at now_ns and counts the attempt in flight on it;
 * not `avoid` (the one that just failed this request) when another can
 * serve. An open instance whose open_ms have passed becomes half_open
 * and is picked as the probe (only one request gets it).
 * kit_balancer_done() reports how that attempt went and moves the
 * breaker; it returns true when the breaker changed state (to log it),
 * the new state in *state. Both are safe from any thread (atomics). */
struct kit_upstream_instance *kit_balancer_pick(struct kit_upstream *upstream,
						const struct kit_upstream_instance *avoid,
						uint64_t now_ns);
bool kit_balancer_done(struct kit_upstream *upstream, struct kit_upstream_instance *instance,
		       bool failed, uint64_t now_ns, enum kit_breaker_state *state);
/* "closed", "half_open", "open". */
const char *kit_breaker_state_name(enum kit_breaker_state state);

/*
 * A/B test or canary: callers spread over variants by weight, each caller
 * always on the same variant.
 *
 * Assignment (kit_split_choose): bucket = a stable 64-bit hash (FNV-1a,
 * then MurmurHash3's fmix64 finalizer so every input bit reaches the low
 * ones) of "<split name>:<key>", modulo KIT_SPLIT_BUCKETS (10000). The
 * variants own consecutive bucket ranges in the order the file lists them,
 * each as wide as its share of the total weight: with 90/10, "stable" owns
 * 0..8999 and "canary" 9000..9999. Two consequences to rely on:
 *   - raising the LAST variant's weight at the expense of the one before
 *     it (a canary going 10 -> 20 -> 50) only moves callers from that
 *     variant to the last one, never back: the boundary between them
 *     moves down and nothing else does. (Taking weight from a variant
 *     further up shifts the ranges between them too.)
 *   - the split's name salts the hash, so two splits assign independently:
 *     being in one canary says nothing about being in another.
 * The file's weights are whole percentages adding up to 100.
 */
enum kit_split_sticky {
	KIT_SPLIT_STICKY_USER, /* the verified user (JWT sub); else the kit_ab
	                        * cookie; else the client IP               */
};

struct kit_split_variant {
	char name[32];                 /* "canary": X-Variant, metric label */
	struct kit_upstream *upstream; /* where its callers go              */
	long weight;                   /* > 0; the file's add up to 100     */
};

struct kit_split {
	char name[32];                 /* "shortener-v2": salts the hash    */
	enum kit_split_sticky sticky_by;
	struct kit_split_variant variants[KIT_SPLIT_MAX_VARIANTS];
	int variant_count;             /* 2 or more in a parsed file        */
};

/* A route from the file. Defaults: "access" authenticated (a route is
 * protected unless it says "public"), "rewrite" = the prefix (the path goes
 * upstream unchanged), "timeout_ms" 5000. Routes match in file order, so a
 * prefix may not come after a shorter one that covers it (refused). */
struct kit_gateway_route {
	char prefix[128];      /* "/api/v1/shorten"                        */
	char pattern[136];     /* "/api/v1/shorten/..." (the kit route)   */
	char rewrite[128];     /* "/shorten": replaces the prefix upstream */
	/* Exactly one of the two is set: */
	struct kit_upstream *upstream;   /* "upstream": always this one    */
	const struct kit_split *split;   /* "split": a variant's upstream  */
	enum kit_access access;
	const struct kit_rate_limit_config *rate_limit; /* NULL: RATE_LIMIT_* */
	long timeout_ms;       /* whole exchange, retry included (5000)     */
	/* "cache": {"ttl_seconds": N}: answers kept in Redis (kit/cache.h) */
	bool cached;
	struct kit_cache_policy cache;
};

struct kit_gateway_config {
	char path[256];                       /* the file, for messages */
	struct kit_upstream upstreams[KIT_GATEWAY_MAX_UPSTREAMS];
	int upstream_count;
	struct kit_rate_limit_config policies[KIT_GATEWAY_MAX_POLICIES];
	int policy_count;
	struct kit_gateway_route routes[KIT_GATEWAY_MAX_ROUTES];
	int route_count;
	/* "versions": ["v1", "v2"]; version_count 0 when absent (Phase 2):
	 * then no "/api/..." catch-all is mounted. */
	char versions[KIT_GATEWAY_MAX_VERSIONS][12];
	int version_count;
	struct kit_split splits[KIT_GATEWAY_MAX_SPLITS];
	int split_count;

	/* "pool": {...} */
	long max_idle_per_thread;   /* (4) read and checked, no longer used:
	                             * a thread's idle connections are bounded
	                             * by the requests it serves at once (one
	                             * on a civetweb worker) and by
	                             * max_idle_per_upstream below            */
	long max_idle_per_upstream; /* open connections to one upstream, all
	                             * workers together, above which a used
	                             * connection is closed, not kept (8);
	                             * 0 turns pooling off: a new connection
	                             * for every request (benchmarks)         */
	long idle_timeout_seconds;  /* closed after idling this long (20);
	                             * shorter than the upstream's keep-alive */
	long connect_timeout_ms;    /* (500)                                  */
	long max_response_bytes;    /* larger upstream bodies: 502 (8 MiB)    */
};

/*
 * Parses the JSON text of a gateway file. Upstream URLs may be overridden
 * by environment variables named in the file ("url_env"), so one file
 * serves compose (service names) and native runs (loopback ports).
 * Returns 0, or -1 with a message naming the file, the field and the
 * problem in error ("gateway.json: routes[2].upstream: no upstream named
 * \"billing\"").
 */
int kit_gateway_config_parse(const char *path, const char *text,
			     struct kit_gateway_config *config, char *error,
			     size_t error_size);

/* Reads and parses the file; on failure prints the message and calls
 * kit_app_fail(). Returns the config (malloc'd, lives as long as the
 * process) or NULL. */
struct kit_gateway_config *kit_gateway_config_load(struct kit_app *app,
						   const char *path);

/* Adds every route of config to app as a proxy route, registers the curl
 * handle per worker thread, the pool and split metrics and a health report
 * per upstream for /health/details (its /health and its pool statistics),
 * and reads MAX_REQUEST_HEADERS (48; 1..KIT_PROXY_MAX_REQUEST_HEADERS, a
 * bad value fails start-up); with "versions", then
 * the "/api/..." catch-all (public, any method) that answers for unknown
 * versions and serves API-Version. A split route answers with
 * "X-Variant: <name>" and counts gateway_split_requests_total{split,
 * variant}; a client's "X-Variant: <name>" naming one of the split's
 * variants picks that variant (for testers; any other value is ignored). */
void kit_gateway_mount(struct kit_app *app, struct kit_gateway_config *config);

/*
 * The variant of split for key (a user id, a cookie value, an IP): an
 * index into split->variants, the same for the same name and key every
 * time and in every process (see struct kit_split for the rule). Returns
 * -1 when split has no variant of positive weight (a parsed file never
 * does). Pure; any thread.
 */
int kit_split_choose(const struct kit_split *split, const char *key);

/* The bucket kit_split_choose() uses: 0..KIT_SPLIT_BUCKETS-1. */
unsigned kit_split_bucket(const char *split_name, const char *key);

/* The value of the KIT_SPLIT_COOKIE ("kit_ab") cookie in a Cookie header
 * ("a=1; kit_ab=xyz"), copied to out. Returns false, and writes "", when
 * cookie_header is NULL, has no such cookie, its value is empty, or it
 * does not fit out. */
bool kit_split_cookie(const char *cookie_header, char *out, size_t size);

/* The header filter, exposed for unit tests: true when a request header
 * must not be forwarded upstream (hop-by-hop, Host, Content-Length, Expect,
 * any X-User-*, the forwarding and request-id headers the gateway sets
 * itself, and the trace context: uber-trace-id, traceparent, tracestate,
 * because the upstream's parent is the gateway's client span, which the
 * proxy sends instead), or a response header not passed back (hop-by-hop,
 * Content-Length, Date, Server, X-Request-Id, X-Trace-ID: the gateway writes
 * its own; X-Instance is kept, so a response names the gateway instance
 * and then the service instance that answered). connection is the
 * message's Connection list, every Connection line joined with ", " (its
 * tokens are hop-by-hop too), or NULL. Names are compared as many servers
 * read them: without case and with '_' the same as '-', so "X_User_Id" is
 * dropped like X-User-Id. */
bool kit_proxy_drop_request_header(const char *name, const char *connection);
bool kit_proxy_drop_response_header(const char *name, const char *connection);

#endif
