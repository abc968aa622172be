/*
 * kit/http_parser.h - reading an HTTP/1.1 request off a socket, for a
 * server that gets its bytes in whatever pieces epoll hands it.
 *
 * Four parts, each usable alone:
 *   - kit_http_parse_head(): the request line and the header fields, parsed
 *     in place in the caller's buffer once the empty line has arrived;
 *   - the field rules it applies, one function each (kit_http_is_token(),
 *     kit_http_version(), kit_http_content_length(), kit_http_is_host(),
 *     kit_http_read_fields() ...), so a server whose own parser has already
 *     split the head (civetweb: shared/src/server/civetweb_guard.c) refuses
 *     exactly what this one refuses;
 *   - kit_http_path_normalize(): the path part of the target, percent-decoded
 *     and with "." / ".." segments and repeated slashes removed, so that a
 *     route prefix check on the result cannot be walked around;
 *   - kit_http_chunked_*(): a "Transfer-Encoding: chunked" body decoded as
 *     its bytes arrive, split anywhere.
 *
 * The parser is strict on purpose: where a lenient server and a strict one
 * would read the same bytes differently (bare LF, obs-fold, Content-Length
 * beside Transfer-Encoding), it refuses, because that disagreement is what
 * request smuggling is built on. It returns HTTP statuses for the refusals
 * so the server can answer with them and close.
 *
 * No allocation, no I/O, no global state: every function is safe from any
 * thread on its own arguments. Only libc's string functions are used.
 */
#ifndef KIT_HTTP_PARSER_H
#define KIT_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#define KIT_HTTP_MAX_HEADERS 64

/* "Not yet": more bytes are needed. Never an HTTP status. */
enum { KIT_HTTP_INCOMPLETE = -1 };

/* One header field. Both strings are NUL-terminated and point into the
 * buffer given to kit_http_parse_head(): they live as long as it does. */
struct kit_http_header {
	const char *name;  /* as sent, case preserved: compare without case   */
	const char *value; /* leading and trailing SP/HTAB removed; may be "" */
};

/* A parsed request head. Every pointer points into the caller's buffer. */
struct kit_http_head {
	/* The method token, case kept: "GET". */
	const char *method;
	/* The request-target exactly as sent, query included: "/a?b=1". */
	const char *target;
	/* Bytes of target before the first '?' (all of it when there is
	 * none): what kit_http_path_normalize() takes. */
	size_t path_len;
	/* Inside target: what follows the first '?' ("" for "/a?"), or NULL
	 * when there is no '?'. */
	const char *query;
	/* HTTP/1.0 -> 0, HTTP/1.1 -> 1. */
	int version_minor;
	struct kit_http_header headers[KIT_HTTP_MAX_HEADERS];
	int header_count;
	/* -1 when there is no Content-Length. */
	long long content_length;
	/* Transfer-Encoding: chunked (never beside content_length). */
	bool chunked;
	/* HTTP/1.1 unless Connection has "close"; HTTP/1.0 only when it has
	 * "keep-alive" and no "close". Connection is a token list: "foo,
	 * close" counts, "closed" does not. Never on HTTP/1.0 with
	 * Transfer-Encoding (RFC 9112 6.1: serve it, then close). */
	bool keep_alive;
	/* "Expect: 100-continue" (any case) on HTTP/1.1; an HTTP/1.0
	 * request's is ignored (RFC 9110 10.1.1). */
	bool expect_continue;
	/* Bytes of buf the head took, the empty line included: the body (or
	 * the next request) starts at buf + head_len. */
	size_t head_len;
};

/*
 * Parses the request head at the start of buf[0..len). Call it again with
 * the same buf and a larger len each time more bytes arrive; it rereads
 * from the start (a head is at most max_head bytes, so that stays cheap).
 *
 * Returns:
 *   0   the head is complete and valid; *head is filled. buf[0..head_len)
 *       has been modified in place (NULs written after the tokens), so the
 *       head's pointers are valid for as long as buf is. The bytes after
 *       head_len are not touched.
 *   KIT_HTTP_INCOMPLETE  the empty line has not arrived and len <= max_head;
 *       buf is untouched: call again with more bytes.
 *   400 malformed: a bad request line (anything but exactly
 *       "token SP target SP HTTP/d.d CRLF"), a target not starting with '/'
 *       ("*" and absolute-form included) or holding a byte that is not
 *       visible ASCII, a header line without ':' or with whitespace before
 *       it, an empty or non-token header name, obs-fold (a line starting
 *       with SP or HTAB), a bare LF or a CR not followed by LF anywhere, a
 *       control character other than HTAB in a header value, both
 *       Content-Length and Transfer-Encoding, a Content-Length that is not
 *       only digits, too large for long long, or sent twice with different
 *       values; no Host on HTTP/1.1, more than one Host, or a Host that is
 *       not uri-host [":" port] (RFC 9112 3.2). A bare LF or lone CR is
 *       refused as soon as it is seen, even before the head is complete.
 *   431 no empty line within max_head bytes (the head, empty line included,
 *       must fit in max_head), or more than KIT_HTTP_MAX_HEADERS fields.
 *   501 a Transfer-Encoding other than exactly "chunked" (any case; several
 *       Transfer-Encoding lines make a list, which is then not "chunked").
 *   505 a well-formed version other than HTTP/1.0 and HTTP/1.1.
 * After 400/431/501/505, buf's contents and *head are unspecified: answer
 * with the status and close the connection.
 *
 * Empty lines (CRLF) before the request line are skipped (RFC 9112 2.2) and
 * counted in head_len. The header fields go through kit_http_read_fields().
 */
int kit_http_parse_head(char *buf, size_t len, size_t max_head,
			struct kit_http_head *head);

/* ---- the field rules, one by one --------------------------------------
 * What kit_http_parse_head() checks, as functions of their own. Values may
 * come with OWS around them (civetweb keeps a value's trailing spaces):
 * the functions that read a value ignore it. */

/* s[0..len) is a token (RFC 9110 5.6.2): non-empty, and only letters,
 * digits and !#$%&'*+-.^_`|~. What a method and a field name must be. */
bool kit_http_is_token(const char *s, size_t len);

/* value (NUL-terminated) holds no control character but HTAB: no CR, LF
 * or escape sequence for a log to replay (obs-text, 0x80-0xff, is kept). */
bool kit_http_is_field_value(const char *value);

/* The version text[0..len), as sent ("HTTP/1.1"). Returns 0 with *minor
 * set for HTTP/1.0 (0) and HTTP/1.1 (1); 505 for another well-formed
 * "HTTP/" DIGIT "." DIGIT; 400 for anything else ("HTTP/1.10", "HTTP/1",
 * "http/1.1"). */
int kit_http_version(const char *text, size_t len, int *minor);

/* A Content-Length value: digits only (no sign, no "0x", no list), fitting
 * a long long. Returns 0 with *length set, or 400. */
int kit_http_content_length(const char *value, long long *length);

/* A Host value is uri-host [":" port] (RFC 9112 3.2, RFC 3986 3.2.2): a
 * reg-name or IPv4 address (letters, digits, -._~!$&'()*+,;= and %XX), or
 * an IP-literal in brackets, then optionally ':' and digits. Empty is
 * valid (a target without an authority). */
bool kit_http_is_host(const char *value);

/* What the header fields say about the body and the connection. */
struct kit_http_framing {
	long long content_length; /* -1 when there is none             */
	bool chunked;             /* Transfer-Encoding: chunked        */
	bool keep_alive;          /* as struct kit_http_head's         */
	bool expect_continue;     /* as struct kit_http_head's         */
};

/*
 * Applies the rules for the fields that frame a request to
 * fields[0..count) of an HTTP/1.<version_minor> request, and fills
 * *framing. Returns 0; 400 for a Content-Length that is not
 * kit_http_content_length()'s, two different ones, Content-Length beside
 * Transfer-Encoding, two Host fields, none on HTTP/1.1, or one that is
 * not kit_http_is_host()'s; 501 for a Transfer-Encoding other than one
 * "chunked". The same order as kit_http_parse_head() reports them.
 */
int kit_http_read_fields(const struct kit_http_header *fields, int count,
			 int version_minor, struct kit_http_framing *framing);

/* Copies what framing says (length, chunked, keep-alive, Expect) into the
 * head, where the rest of the kit reads it. */
void kit_http_apply_framing(struct kit_http_head *head, const struct kit_http_framing *framing);

/* The detail a server sends with a refusal of kit_http_parse_head() or of
 * the field rules (400, 431, 501, 505), the same on every server core:
 * "the request is malformed", "the request head is too large", ... Never
 * NULL; a static string. */
const char *kit_http_refusal_detail(int status);

/* The value of the first header field called name (compared without case,
 * ASCII only), or NULL when there is none. Points into the parsed buffer. */
const char *kit_http_header_value(const struct kit_http_head *head,
				  const char *name);

/*
 * Writes the path part of a target, target[0..len) (len = head.path_len:
 * up to the '?' or the end), percent-decoded and normalized, into out as a
 * NUL-terminated string of at most size bytes, NUL included:
 *   1. %XX is decoded (hex digits of either case), before anything else;
 *   2. "." and ".." segments are removed (RFC 3986 5.2.4), never climbing
 *      above "/": "/a/./b/../c" -> "/a/c", "/.." -> "/";
 *   3. runs of '/' become one (nginx's merge_slashes): "//a///b" -> "/a/b".
 * Because decoding comes first, "/api/v1/%2e%2e/admin" becomes "/api/admin"
 * and "%2F" is a slash like any other: a prefix check on out is safe. A
 * trailing slash is kept ("/a/b/" stays "/a/b/"; "/a/b/.." is "/a/").
 * Decoded bytes other than NUL are kept as they are ("%C3%A9" gives the two
 * bytes of "é", "%0A" a newline): out is for matching routes, never to be
 * written unescaped into a request line or a header.
 *
 * Returns 0; 400 when the path does not start with '/', a '%' is not
 * followed by two hex digits, or the path holds a NUL (a %00, or a raw
 * one); 414 when out is too small: it needs room for the decoded path
 * before step 2 shortens it, plus the NUL. out's contents are
 * unspecified unless 0 is returned.
 */
int kit_http_path_normalize(const char *target, size_t len, char *out,
			    size_t size);

/* Longest chunk-size line (size, extensions; CRLF not counted), and the
 * most trailer bytes (every trailer line and the final CRLF) accepted. */
#define KIT_HTTP_CHUNK_LINE_MAX 1024
#define KIT_HTTP_CHUNK_TRAILERS_MAX 8192
/* Largest chunk size accepted: 2^40 (a terabyte, far past any body limit,
 * yet never near overflowing the arithmetic). */
#define KIT_HTTP_CHUNK_SIZE_MAX (1ULL << 40)

/* The decoder's state between calls. Private: set it up with
 * kit_http_chunked_init() and never look inside. One per request body;
 * it owns nothing, so there is nothing to free. */
struct kit_http_chunked {
	int state;                     /* where in the framing we are       */
	unsigned long long chunk_left; /* size being read, then data bytes
					  of the current chunk still due    */
	size_t line_len;               /* bytes of the current size line    */
	size_t trailer_len;            /* bytes of the trailer section      */
	int error;                     /* the status once it has failed     */
};

/* Prepares c for a new body. */
void kit_http_chunked_init(struct kit_http_chunked *c);

/*
 * Decodes a chunked body (RFC 9112 7.1) from in[0..in_len), bytes that may
 * end anywhere: mid size line, mid chunk, mid CRLF. Decoded body bytes are
 * written to out; *produced says how many, *consumed how many of in were
 * used. out_room is the budget: the caller's body limit minus what it
 * already holds, and out must have that much room.
 *
 * Returns:
 *   KIT_HTTP_INCOMPLETE  all of in was used and the body is not over: call
 *       again with the next bytes (and out_room lowered by *produced).
 *   0   the body is complete: the last chunk ("0"), any trailer lines (read
 *       and dropped) and the final CRLF were used. *consumed may be less
 *       than in_len: the rest is the next request's. Further calls return 0
 *       and use nothing.
 *   400 malformed framing: a size that is not hex or over
 *       KIT_HTTP_CHUNK_SIZE_MAX, a chunk's data not followed by CRLF, a bare
 *       LF or lone CR, a control character in an extension or trailer, a
 *       size line over KIT_HTTP_CHUNK_LINE_MAX or trailers over
 *       KIT_HTTP_CHUNK_TRAILERS_MAX bytes.
 *   413 a chunk would take the body past out_room; refused as soon as its
 *       size line ends, before its data is read.
 * Chunk extensions (";name=value", optionally after SP/HTAB) are skipped.
 * After 400 or 413 every further call returns the same status; *consumed
 * and *produced are then not meaningful: answer and close.
 */
int kit_http_chunked_decode(struct kit_http_chunked *c, const char *in,
			    size_t in_len, size_t *consumed, char *out,
			    size_t out_room, size_t *produced);

#endif
