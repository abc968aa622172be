/*
 * civetweb_guard.h - the civetweb core's second look at a request, with the
 * strict parser's rules (kit/http_parser.h), before the kit serves it; and
 * the page for the requests civetweb refuses itself.
 *
 * Internal to the server cores: civetweb.c calls kit_civetweb_guard() first
 * thing in dispatch() and registers kit_civetweb_error_page() as civetweb's
 * http_error callback. What the guard can and cannot see in civetweb's
 * buffer is explained in civetweb_guard.c and docs/security.md.
 */
#ifndef KIT_CIVETWEB_GUARD_H
#define KIT_CIVETWEB_GUARD_H

struct mg_connection;
struct kit_app;

/*
 * Decides whether the request civetweb has just parsed on conn is one the
 * event-loop core's strict parser would refuse. Returns 0 when it is not
 * (the request goes on; the connection is still told to close after it
 * when the strict rules say so, e.g. HTTP/1.0 with Transfer-Encoding).
 * Otherwise it has answered the request itself - the strict parser's
 * status (400, 431, 501, 505; 500 when civetweb's buffer is not laid out
 * as civetweb 1.15 lays it out) as application/problem+json - and made
 * civetweb close the connection without reading another byte of it, and
 * returns that status, which dispatch() returns to civetweb.
 * Runs on the civetweb worker that owns conn; keeps no state.
 */
int kit_civetweb_guard(struct mg_connection *conn, struct kit_app *app);

/*
 * civetweb's http_error callback: civetweb refused a request before the kit
 * saw it (a malformed head, a head over its buffer, an unknown method, an
 * unsupported version or Transfer-Encoding) and would send a text/plain
 * page. This sends the problem+json refusal instead, with the status the
 * strict parser gives the same bytes where civetweb's differs (413 -> 431,
 * 411 -> 400, 400 -> 501 for an unknown Transfer-Encoding, 505 -> 400 for
 * a version that is not "HTTP/d.d"), and closes the connection. Returns 0:
 * handled.
 */
int kit_civetweb_error_page(struct mg_connection *conn, int status,
			    const char *message);

#endif
