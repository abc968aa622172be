/*
 * civetweb_guard.h - the civetweb core's second look at a request, with the
 * strict parser's rules (kit/http_parser.h), before the kit serves it; and
 * the status for the requests civetweb refuses itself.
 *
 * Internal to the server cores: civetweb.c calls kit_civetweb_check() on
 * every request civetweb parsed, and kit_civetweb_strict_status() from
 * civetweb's http_error callback. What the check can and cannot see in
 * civetweb's buffer is explained in civetweb_guard.c and docs/security.md.
 */
#ifndef KIT_CIVETWEB_GUARD_H
#define KIT_CIVETWEB_GUARD_H

struct mg_request_info;
struct kit_http_framing;

/*
 * Decides whether the request civetweb has just parsed into info is one the
 * event-loop core's strict parser would refuse. Returns 0 when it is not,
 * with *framing holding what its fields say (Content-Length, chunked,
 * keep-alive, Expect) by the strict rules. Otherwise returns the strict
 * parser's status (400, 431, 501, 505; 500 when civetweb's buffer is not
 * laid out as civetweb 1.15 lays it out) with *detail, a static string, to
 * answer it with; the caller answers and closes the connection.
 * Reads only info's buffer; keeps no state.
 */
int kit_civetweb_check(const struct mg_request_info *info,
		       struct kit_http_framing *framing, const char **detail);

/*
 * civetweb refused a request with status before the kit saw it (a malformed
 * head, a head over its buffer, an unknown method, an unsupported version
 * or Transfer-Encoding). Returns the status the strict parser gives the
 * same bytes where civetweb's differs (413 -> 431, 411 -> 400, 400 -> 501
 * for an unknown Transfer-Encoding, 505 -> 400 for a version that is not
 * "HTTP/d.d").
 */
int kit_civetweb_strict_status(const struct mg_request_info *info, int status);

#endif
