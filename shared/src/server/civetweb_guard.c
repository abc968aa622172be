/*
 * civetweb_guard.c - makes the civetweb core refuse what the event-loop
 * core's strict parser refuses (civetweb_guard.h).
 *
 * civetweb 1.15 parses a request head itself, leniently, before the kit
 * sees it: it takes the first of two Content-Lengths, reads
 * "Content-Length: 0x2f" as 0, drops the spaces in "Transfer-Encoding :",
 * accepts bare LF line ends, stops parsing at an obs-fold line. Where a
 * proxy in front reads the same bytes strictly, that disagreement is
 * request smuggling. The kit cannot run its parser on the raw bytes
 * instead: civetweb has parsed them in place, in one buffer, and hands
 * the handler pointers into it (struct mg_request_info). But the buffer
 * still shows most of what the bytes were:
 *
 *   "GET" \0 "/path" \0 "HTTP/1.1" \0\0 "Host" \0 " " "a.example" \0\0 ...
 *
 * every SP, CR or LF civetweb stepped over became a NUL, so the number of
 * NULs between two pieces says what separated them: one between the
 * method and the target (one SP); two after the version and after each
 * field value (CR LF; a bare LF leaves one); one between a field name and
 * its value's spaces (the colon; "Name :" leaves two). The field rules
 * themselves (token, Content-Length, Transfer-Encoding, Host) are the
 * strict parser's own functions (kit/http_parser.h), so the two cores
 * cannot drift apart.
 *
 * What the buffer no longer shows (docs/security.md lists each case):
 *   - anything after the last field civetweb parsed. civetweb stops at an
 *     obs-fold line, at a line starting with ':' and after 64 fields, and
 *     leaves the rest of the head unparsed; but the two NULs that end the
 *     last field's line are the same for "...CR LF <more head>" and for
 *     "... LF LF" (the head ends there), so the guard cannot know whether
 *     the bytes after them belong to the head at all, and when a head
 *     fills civetweb's buffer they lie past its end. The guard never reads
 *     them; with 64 fields it refuses (431), since more may follow;
 *   - which two bytes ended the request line: CR LF, CR CR, CR SP, LF SP
 *     and LF CR all leave two NULs;
 *   - whitespace before the request line (civetweb skips it);
 *   - a malformed %-escape in the path: civetweb has decoded the path in
 *     place before the handler runs, and "%zz" and "%25zz" leave the same
 *     bytes. A %00 is still found (the decoded path holds a NUL before its
 *     end: see path_has_nul()).
 *
 * A refusal is answered by civetweb.c like any other: it reaches the app
 * as req->refusal, passes the chain's outer middleware (request id, log,
 * metrics) and the connection closes after it, so a request pipelined
 * behind a refused one is never served.
 *
 * Threads: called on the civetweb worker that owns the connection; keeps no
 * state of its own.
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include <civetweb.h>

#include "kit/http_parser.h"
#include "server/civetweb_guard.h"

/* The fields civetweb keeps (MG_MAX_HEADERS in civetweb.h). */
#define CIVETWEB_MAX_FIELDS 64

/* The refusal of a request: a status and what to say. */
struct refusal {
	int status;
	const char *detail;
};

static struct refusal refuse(int status)
{
	return (struct refusal){ status, kit_http_refusal_detail(status) };
}

static const struct refusal ACCEPTED = { 0, NULL };

/* The number of NULs at p, p+1, ... before end (at most end - p). */
static size_t nuls_between(const char *p, const char *end)
{
	size_t n = 0;

	while (p + n < end && p[n] == '\0')
		n++;
	return n;
}

/*
 * True when the pointers of info are where civetweb 1.15 puts them: one
 * buffer, in order, method < target < "HTTP/" version < each field's name
 * < its value < the next name. Everything below counts bytes between
 * them, so if a civetweb release laid the buffer out otherwise, the guard
 * must stop (500) rather than count nonsense.
 */
static bool layout_is_civetweb_1_15(const struct mg_request_info *info)
{
	const char *m = info->request_method;
	const char *u = info->request_uri;
	const char *v = info->http_version;
	const char *after;

	if (strncmp(mg_version(), "1.15", 4) != 0 || m == NULL || u == NULL ||
	    v == NULL || info->num_headers < 0 ||
	    info->num_headers > CIVETWEB_MAX_FIELDS)
		return false;
	if (!(m < u && u + 1 < v - 5) || memcmp(v - 5, "HTTP/", 5) != 0)
		return false;
	after = v + strlen(v);
	for (int i = 0; i < info->num_headers; i++) {
		const char *name = info->http_headers[i].name;
		const char *value = info->http_headers[i].value;

		if (name == NULL || value == NULL || name <= after ||
		    value <= name + strlen(name))
			return false;
		after = value + strlen(value);
	}
	return true;
}

/*
 * Where the target as the client sent it ends, target (the query
 * included): civetweb wrote a NUL over the '?' and decoded the path in
 * place, but the query is untouched (decode_query_string is off) and the
 * path's last byte is too (decoding only shrinks it, so the bytes behind
 * the decoded path are the original's tail). version_start is "HTTP/".
 */
static const char *target_end(const struct mg_request_info *info,
			      const char *version_start)
{
	const char *end = version_start;

	if (info->query_string != NULL)
		return info->query_string + strlen(info->query_string);
	while (end > info->request_uri && end[-1] == '\0')
		end--;
	return end;
}

/*
 * True when the path, as civetweb decoded it in place, holds a NUL (a %00
 * in the request; a raw NUL civetweb refuses itself). The path was
 * path[0..len) on the wire; each %XX decoded shortened it by two, and
 * civetweb ended the decoded path with a NUL, so from the end backwards
 * come the original's last bytes (no NUL among them), then that NUL, then
 * the decoded path: any NUL before it is a decoded %00.
 */
static bool path_has_nul(const char *path, size_t len)
{
	size_t end = len;

	while (end > 0 && path[end - 1] != '\0')
		end--;
	if (end == 0)
		return false; /* no escape was decoded: path is as sent */
	return memchr(path, '\0', end - 1) != NULL;
}

/*
 * The strict parser's verdict on the request civetweb parsed into info,
 * as far as civetweb's buffer still shows it (see the top of the file).
 * Reads only bytes between the pointers civetweb gave, all inside the
 * head. On acceptance *framing holds what the fields say.
 */
static struct refusal check_request(const struct mg_request_info *info,
				    struct kit_http_framing *framing)
{
	const char *method = info->request_method;
	const char *target = info->request_uri;
	const char *version, *line_end, *end;
	int fields = info->num_headers;
	int minor = 0;
	int status;
	struct kit_http_header copied[CIVETWEB_MAX_FIELDS];

	if (!layout_is_civetweb_1_15(info))
		return (struct refusal){ 500, "the civetweb core cannot check this "
					      "request: civetweb is not 1.15" };
	version = info->http_version - 5; /* "HTTP/1.1", as sent */
	line_end = info->http_version + strlen(info->http_version);

	/* 1. The request line: "method SP /target SP HTTP/d.d CRLF". */
	if (!kit_http_is_token(method, strlen(method)) ||
	    target != method + strlen(method) + 1 || target[0] != '/')
		return refuse(400); /* two SPs, absolute-form, ... */
	end = target_end(info, version);
	if (nuls_between(end, version) != 1 || end + 1 != version)
		return refuse(400);
	status = kit_http_version(version, (size_t)(line_end - version), &minor);
	if (status != 0)
		return refuse(status);
	if (fields > 0 && nuls_between(line_end, info->http_headers[0].name) != 2)
		return refuse(400); /* a bare LF or CR; CR LF SP (obs-fold) */

	/* 2. Each field line: "token:" OWS value CRLF. */
	for (int i = 0; i < fields; i++) {
		const char *name = info->http_headers[i].name;
		const char *value = info->http_headers[i].value;
		const char *name_end = name + strlen(name);
		const char *value_end = value + strlen(value);

		if (!kit_http_is_token(name, strlen(name)) ||
		    nuls_between(name_end, value) != 1 ||
		    !kit_http_is_field_value(value))
			return refuse(400); /* "Name :" leaves two NULs */
		if (i + 1 < fields &&
		    nuls_between(value_end, info->http_headers[i + 1].name) != 2)
			return refuse(400); /* a bare LF */
		/* The last line's end: its first byte is a NUL, and so is the
		 * second after CR LF; a CR there means "LF CR": refused. The
		 * two bytes are always inside the head (the head's last byte
		 * is an LF, which cannot end a value). */
		if (i + 1 == fields && value_end[1] != '\0')
			return refuse(400);
		copied[i] = (struct kit_http_header){ name, value };
	}
	if (fields == CIVETWEB_MAX_FIELDS)
		return refuse(431); /* civetweb stops at 64: more may follow */

	/* 3. What the fields say: Content-Length, Transfer-Encoding, Host. */
	status = kit_http_read_fields(copied, fields, minor, framing);
	if (status != 0)
		return refuse(status);

	/* 4. The path, last, as the event-loop core normalizes it after the
	 * head: a %00 ends it early for C code (GET /a%00b). */
	if (path_has_nul(target, (size_t)((info->query_string != NULL
						   ? info->query_string - 1
						   : end) -
					  target)))
		return (struct refusal){ 400, "the request path is malformed" };
	return ACCEPTED;
}

int kit_civetweb_check(const struct mg_request_info *info,
		       struct kit_http_framing *framing, const char **detail)
{
	struct refusal refusal = check_request(info, framing);

	*detail = refusal.detail;
	return refusal.status;
}

/* The strict parser's status for what civetweb refused with status. */
int kit_civetweb_strict_status(const struct mg_request_info *info, int status)
{
	const char *version = info->http_version;
	struct kit_http_framing framing;
	int minor = 1;

	switch (status) {
	case 413: /* "Message too large": no head end within its buffer */
		return 431;
	case 411: /* a Content-Length strtoll could not read, or negative */
		return 400;
	case 505: /* civetweb: not "1.0" or "1.1"; the strict parser says
		   * 400 unless it is "HTTP/" DIGIT "." DIGIT */
		if (version == NULL)
			return 400;
		return kit_http_version(version - 5, strlen(version) + 5, &minor) == 505
			       ? 505 : 400;
	case 400:
		/* The head parsed (its fields are there) but civetweb refused
		 * its Transfer-Encoding: the strict parser says 501. */
		if (info->num_headers > 0 && info->request_uri != NULL &&
		    info->request_uri[0] == '/') {
			struct kit_http_header copied[CIVETWEB_MAX_FIELDS];
			int fields = info->num_headers;

			for (int i = 0; i < fields; i++)
				copied[i] = (struct kit_http_header){
					info->http_headers[i].name,
					info->http_headers[i].value };
			if (version != NULL && strcmp(version, "1.0") == 0)
				minor = 0;
			if (kit_http_read_fields(copied, fields, minor, &framing) == 501)
				return 501;
		}
		return 400;
	default:
		return status;
	}
}
