/*
 * http_parser.c - the HTTP/1.1 request parser (kit/http_parser.h): the
 * request head, the path a route is matched on, and chunked bodies.
 *
 * It sits under the server's read loop, before any middleware: the epoll
 * server appends what a socket gave it to the connection's buffer and asks
 * kit_http_parse_head() whether a whole head is there yet; then, for a
 * chunked body, feeds kit_http_chunked_decode() whatever arrives next. Only
 * once both say "complete" does a request reach the middleware chain.
 *
 * Every refusal is an HTTP status the server can send before closing. The
 * rules are strict where two servers could disagree about the same bytes
 * (RFC 9112 sections 2.2, 5, 6.3 and 7.1), since that disagreement is what
 * request smuggling exploits.
 *
 * Pure functions on the caller's memory: no allocation, no globals, so any
 * thread may call them; a struct kit_http_chunked belongs to one body.
 */
#include <limits.h>
#include <string.h>

#include "kit/http_parser.h"
#include "kit/text.h"

/* ---- characters ------------------------------------------------------- */

static bool is_digit(unsigned char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool is_alpha(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* A character of a token (RFC 9110 5.6.2): methods and header names. */
static bool is_token_char(unsigned char ch)
{
	if (is_alpha(ch) || is_digit(ch))
		return true;
	return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* Optional whitespace (OWS): SP or HTAB. */
static bool is_whitespace(unsigned char ch)
{
	return ch == ' ' || ch == '\t';
}

/* C0 controls and DEL. HTAB is one too: callers that allow it say so. */
static bool is_control(unsigned char ch)
{
	return ch < 0x20 || ch == 0x7f;
}

/* Visible ASCII (VCHAR), what a request-target is made of. */
static bool is_visible(unsigned char ch)
{
	return ch > 0x20 && ch < 0x7f;
}

/* ASCII only, whatever the locale: header names are not text. */
static unsigned char lower_case(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return (unsigned char)(ch - 'A' + 'a');
	return ch;
}

/* True when s[0..len) and the NUL-terminated word are equal but for case. */
static bool equal_ignoring_case(const char *s, size_t len, const char *word)
{
	if (strlen(word) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (lower_case((unsigned char)s[i]) !=
		    lower_case((unsigned char)word[i]))
			return false;
	}
	return true;
}

/* Narrows s[0..*len) to its part without the OWS around it. */
static void trim_whitespace(const char **s, size_t *len)
{
	while (*len > 0 && is_whitespace((unsigned char)**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && is_whitespace((unsigned char)(*s)[*len - 1]))
		(*len)--;
}

/* True when the comma-separated list (as in Connection) holds token,
 * compared without case; each element's surrounding OWS is ignored. */
static bool list_has_token(const char *list, const char *token)
{
	const char *p = list;

	while (*p != '\0') {
		while (*p == ',' || is_whitespace((unsigned char)*p))
			p++;
		const char *element = p;
		while (*p != '\0' && *p != ',')
			p++;
		const char *end = p;
		while (end > element && is_whitespace((unsigned char)end[-1]))
			end--;
		size_t element_len = (size_t)(end - element);

		if (element_len > 0 &&
		    equal_ignoring_case(element, element_len, token))
			return true;
	}
	return false;
}

/* ---- the field rules -------------------------------------------------- */

bool kit_http_is_token(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!is_token_char((unsigned char)s[i]))
			return false;
	}
	return true;
}

bool kit_http_is_field_value(const char *value)
{
	for (const char *p = value; *p != '\0'; p++) {
		if (is_control((unsigned char)*p) && *p != '\t')
			return false;
	}
	return true;
}

int kit_http_version(const char *text, size_t len, int *minor)
{
	if (len != 8 || memcmp(text, "HTTP/", 5) != 0 ||
	    !is_digit((unsigned char)text[5]) || text[6] != '.' ||
	    !is_digit((unsigned char)text[7]))
		return 400;
	if (text[5] != '1' || (text[7] != '0' && text[7] != '1'))
		return 505;
	*minor = text[7] - '0';
	return 0;
}

int kit_http_content_length(const char *value, long long *length)
{
	size_t len = strlen(value);
	long long n = 0;

	trim_whitespace(&value, &len);
	if (len == 0)
		return 400;
	for (size_t i = 0; i < len; i++) {
		if (!is_digit((unsigned char)value[i]))
			return 400; /* "+5", "-1", "0x10", "5, 5", "1 2" */
		int digit = value[i] - '0';
		if (n > (LLONG_MAX - digit) / 10)
			return 400;
		n = n * 10 + digit;
	}
	*length = n;
	return 0;
}

/* A character a reg-name may hold as it is (RFC 3986 3.2.2: unreserved and
 * sub-delims); '%' is checked by the caller. */
static bool is_host_char(unsigned char ch)
{
	if (is_alpha(ch) || is_digit(ch))
		return true;
	return ch != '\0' && strchr("-._~!$&'()*+,;=", ch) != NULL;
}

bool kit_http_is_host(const char *value)
{
	size_t len = strlen(value);
	size_t i = 0;

	trim_whitespace(&value, &len);
	if (len > 0 && value[0] == '[') {
		/* IP-literal: "[" IPv6address / IPvFuture "]", loosely */
		for (i = 1; i < len && value[i] != ']'; i++) {
			unsigned char ch = (unsigned char)value[i];
			if (!is_host_char(ch) && ch != ':')
				return false;
		}
		if (i == len || i == 1)
			return false; /* no "]", or "[]" */
		i++;
	} else {
		/* reg-name (an IPv4 address is one too); may be empty */
		while (i < len && value[i] != ':') {
			if (value[i] == '%') {
				if (len - i < 3 ||
				    kit_hex_digit(value[i + 1]) < 0 ||
				    kit_hex_digit(value[i + 2]) < 0)
					return false;
				i += 3;
				continue;
			}
			if (!is_host_char((unsigned char)value[i]))
				return false;
			i++;
		}
	}
	if (i == len)
		return true;
	if (value[i] != ':')
		return false; /* "[::1]x" */
	for (i++; i < len; i++) { /* port = *DIGIT */
		if (!is_digit((unsigned char)value[i]))
			return false;
	}
	return true;
}

int kit_http_read_fields(const struct kit_http_header *fields, int count,
			 int version_minor, struct kit_http_framing *framing)
{
	bool has_length = false;
	int encodings = 0;
	const char *encoding = NULL;
	int hosts = 0;
	bool host_valid = true;
	bool close = false;
	bool keep_alive = false;
	bool expect_continue = false;

	framing->content_length = -1;
	framing->chunked = false;
	framing->keep_alive = false;
	framing->expect_continue = false;
	for (int i = 0; i < count; i++) {
		const char *name = fields[i].name;
		const char *value = fields[i].value;
		size_t name_len = strlen(name);

		if (equal_ignoring_case(name, name_len, "Content-Length")) {
			long long length;
			if (kit_http_content_length(value, &length) != 0)
				return 400;
			if (has_length && length != framing->content_length)
				return 400; /* RFC 9112 6.3 item 5 */
			has_length = true;
			framing->content_length = length;
		} else if (equal_ignoring_case(name, name_len,
					       "Transfer-Encoding")) {
			encodings++;
			encoding = value;
		} else if (equal_ignoring_case(name, name_len, "Host")) {
			hosts++;
			if (!kit_http_is_host(value))
				host_valid = false;
		} else if (equal_ignoring_case(name, name_len, "Connection")) {
			if (list_has_token(value, "close"))
				close = true;
			if (list_has_token(value, "keep-alive"))
				keep_alive = true;
		} else if (equal_ignoring_case(name, name_len, "Expect")) {
			size_t value_len = strlen(value);
			trim_whitespace(&value, &value_len);
			if (equal_ignoring_case(value, value_len,
						"100-continue"))
				expect_continue = true;
		}
	}

	/* Both lengths: a front end and a back end may each pick a different
	 * one and split the stream differently (RFC 9112 6.3 item 3). */
	if (has_length && encodings > 0)
		return 400;
	/* We decode chunked and nothing else; two Transfer-Encoding lines
	 * are the list "x, y", never exactly "chunked". */
	if (encodings > 1)
		return 501;
	if (encodings == 1) {
		size_t encoding_len = strlen(encoding);
		trim_whitespace(&encoding, &encoding_len);
		if (!equal_ignoring_case(encoding, encoding_len, "chunked"))
			return 501;
		framing->chunked = true;
	}
	/* Host (RFC 9112 3.2): which site the request is for. Two of them,
	 * or none on HTTP/1.1, and servers on the way may each route it to
	 * a different one; a value that is not a host is not one either. */
	if (hosts > 1 || (hosts == 0 && version_minor == 1) || !host_valid)
		return 400;

	if (version_minor == 1)
		framing->keep_alive = !close;
	else /* Transfer-Encoding on HTTP/1.0: framing not to be trusted
	      * past this request; close after it (RFC 9112, 6.1) */
		framing->keep_alive = keep_alive && !close && !framing->chunked;
	framing->expect_continue = expect_continue && version_minor == 1;
	return 0;
}

/* ---- the request head ------------------------------------------------- */

/*
 * Looks for the empty line that ends the head in buf[0..len), checking on
 * the way that every line ends in CRLF. Empty lines before the request line
 * are skipped: *start is where the request line begins. On success
 * *head_len counts the bytes up to and including the empty line.
 * Returns 0, KIT_HTTP_INCOMPLETE, 400 (a bare LF or a CR without its LF) or
 * 431 (no end within max_head bytes). Reads buf only.
 */
static int find_head_end(const char *buf, size_t len, size_t max_head,
			 size_t *start, size_t *head_len)
{
	size_t scan = len < max_head ? len : max_head;
	size_t line_start = 0;
	size_t i = 0;
	bool seen_request_line = false;

	*start = 0;
	while (i < scan) {
		if (buf[i] == '\n')
			return 400; /* every CR's LF is stepped over below */
		if (buf[i] != '\r') {
			i++;
			continue;
		}
		if (i + 1 == scan)
			break; /* the LF has not been seen yet */
		if (buf[i + 1] != '\n')
			return 400;
		bool empty_line = (i == line_start);
		size_t next_line = i + 2;

		if (empty_line && seen_request_line) {
			*head_len = next_line;
			return 0;
		}
		if (empty_line)
			*start = next_line; /* RFC 9112 2.2: skipped */
		else
			seen_request_line = true;
		line_start = next_line;
		i = next_line;
	}
	return len > max_head ? 431 : KIT_HTTP_INCOMPLETE;
}

/*
 * Parses "method SP target SP HTTP/d.d" in line[0..cr), where cr points at
 * the CR ending it. Writes NULs after the method and the target and points
 * head at them. Returns 0, 400 or 505.
 */
static int parse_request_line(char *line, char *cr,
			      struct kit_http_head *head)
{
	char *p = line;

	/* 1. The method: a token, then exactly one SP. */
	while (p < cr && is_token_char((unsigned char)*p))
		p++;
	if (p == line || p == cr || *p != ' ')
		return 400;
	*p = '\0';
	head->method = line;
	p++;

	/* 2. The target: origin-form only, visible ASCII, then one SP. */
	char *target = p;
	while (p < cr && *p != ' ') {
		if (!is_visible((unsigned char)*p))
			return 400;
		p++;
	}
	if (p == target || *target != '/' || p == cr)
		return 400;
	*p = '\0';
	head->target = target;
	head->path_len = (size_t)(p - target);
	char *question = memchr(target, '?', head->path_len);
	if (question != NULL) {
		head->query = question + 1;
		head->path_len = (size_t)(question - target);
	}
	p++;

	/* 3. The version: "HTTP/" DIGIT "." DIGIT and nothing after it. */
	return kit_http_version(p, (size_t)(cr - p), &head->version_minor);
}

/*
 * Parses "name: value" in line[0..cr) into the next head->headers entry,
 * writing NULs after the name and after the trimmed value.
 * Returns 0, 400 or 431 (the table is full).
 */
static int parse_header_line(char *line, char *cr, struct kit_http_head *head)
{
	char *p;

	/* 1. obs-fold: a continuation of the line before. RFC 9112 5.2
	 * lets a server refuse it; joining lines is where parsers differ. */
	if (is_whitespace((unsigned char)*line))
		return 400;

	/* 2. The name: a non-empty token directly followed by ':' (no
	 * whitespace before it, RFC 9112 5.1). */
	char *colon = memchr(line, ':', (size_t)(cr - line));
	if (colon == NULL || !kit_http_is_token(line, (size_t)(colon - line)))
		return 400;

	/* 3. The value, without the OWS around it; HTAB is the only control
	 * allowed (no NUL, no escape sequences for a log to replay). */
	p = colon + 1;
	while (p < cr && is_whitespace((unsigned char)*p))
		p++;
	char *value = p;
	char *value_end = cr;
	while (value_end > value && is_whitespace((unsigned char)value_end[-1]))
		value_end--;
	*value_end = '\0';
	/* A NUL would end the check early: the length says it is there. */
	if (strlen(value) != (size_t)(value_end - value) ||
	    !kit_http_is_field_value(value))
		return 400;

	if (head->header_count == KIT_HTTP_MAX_HEADERS)
		return 431;
	*colon = '\0';
	head->headers[head->header_count].name = line;
	head->headers[head->header_count].value = value;
	head->header_count++;
	return 0;
}

int kit_http_parse_head(char *buf, size_t len, size_t max_head,
			struct kit_http_head *head)
{
	size_t start = 0;
	size_t head_len = 0;
	int status;

	head->method = NULL;
	head->target = NULL;
	head->path_len = 0;
	head->query = NULL;
	head->version_minor = 0;
	head->header_count = 0;
	head->content_length = -1;
	head->chunked = false;
	head->keep_alive = false;
	head->expect_continue = false;
	head->head_len = 0;

	/* 1. Wait for the empty line; nothing is written before it. */
	status = find_head_end(buf, len, max_head, &start, &head_len);
	if (status != 0)
		return status;

	/* 2. The request line. Every line ends in CRLF (step 1 checked), so
	 * the next CR is where it ends. */
	char *end = buf + head_len - 2; /* the CR of the empty line */
	char *line = buf + start;
	char *cr = memchr(line, '\r', (size_t)(end - line) + 1);
	status = parse_request_line(line, cr, head);
	if (status != 0)
		return status;

	/* 3. One header field per line, up to the empty line. */
	line = cr + 2;
	while (line < end) {
		cr = memchr(line, '\r', (size_t)(end - line) + 1);
		status = parse_header_line(line, cr, head);
		if (status != 0)
			return status;
		line = cr + 2;
	}

	/* 4. What the header fields say about the body, the connection and
	 * the Host (kit_http_read_fields). */
	struct kit_http_framing framing;
	status = kit_http_read_fields(head->headers, head->header_count,
				      head->version_minor, &framing);
	if (status != 0)
		return status;
	kit_http_apply_framing(head, &framing);
	head->head_len = head_len;
	return 0;
}

void kit_http_apply_framing(struct kit_http_head *head, const struct kit_http_framing *framing)
{
	head->content_length = framing->content_length;
	head->chunked = framing->chunked;
	head->keep_alive = framing->keep_alive;
	head->expect_continue = framing->expect_continue;
}

const char *kit_http_refusal_detail(int status)
{
	switch (status) {
	case 431: return "the request head is too large";
	case 501: return "only the chunked transfer coding is supported";
	case 505: return "only HTTP/1.0 and HTTP/1.1 are served";
	default: return "the request is malformed";
	}
}

const char *kit_http_header_value(const struct kit_http_head *head,
				  const char *name)
{
	for (int i = 0; i < head->header_count; i++) {
		const char *candidate = head->headers[i].name;

		if (equal_ignoring_case(candidate, strlen(candidate), name))
			return head->headers[i].value;
	}
	return NULL;
}

/* ---- the path --------------------------------------------------------- */

/*
 * Percent-decodes in[0..len) into out and NUL-terminates it; *out_len is
 * the decoded length. Returns 0, 400 (a bad escape, or a NUL, encoded or
 * not) or 414 (out has fewer than decoded length + 1 bytes).
 */
static int percent_decode(const char *in, size_t len, char *out, size_t size,
			  size_t *out_len)
{
	size_t r = 0;
	size_t w = 0;

	while (r < len) {
		unsigned char byte = (unsigned char)in[r];

		if (byte == '%') {
			if (len - r < 3)
				return 400;
			int high = kit_hex_digit(in[r + 1]);
			int low = kit_hex_digit(in[r + 2]);
			if (high < 0 || low < 0)
				return 400;
			byte = (unsigned char)(high * 16 + low);
			r += 3;
		} else {
			r++;
		}
		if (byte == '\0')
			return 400; /* would cut the string short */
		if (w + 1 >= size)
			return 414; /* no room for this byte and the NUL */
		out[w] = (char)byte;
		w++;
	}
	if (size == 0)
		return 414;
	out[w] = '\0';
	*out_len = w;
	return 0;
}

/*
 * Removes "." and ".." segments and empty ones (repeated slashes) from
 * path[0..len), which starts with '/', in place; NUL-terminates the result.
 * In place is safe: each "/name" kept is written where it was or earlier,
 * so the write index w never passes the read index r.
 */
static void remove_dot_segments(char *path, size_t len)
{
	size_t r = 0;
	size_t w = 0;
	bool ends_with_slash = true; /* the last segment was "", "." or ".." */

	while (r < len) {
		/* path[r] is a '/'; the segment runs to the next one. */
		size_t start = r + 1;
		size_t end = start;
		while (end < len && path[end] != '/')
			end++;
		size_t segment_len = end - start;

		if (segment_len == 0 ||
		    (segment_len == 1 && path[start] == '.')) {
			ends_with_slash = true; /* "//" or "/./": nothing */
		} else if (segment_len == 2 && path[start] == '.' &&
			   path[start + 1] == '.') {
			/* Drop the last "/name" written; at "/" stay there. */
			while (w > 0 && path[w - 1] != '/')
				w--;
			if (w > 0)
				w--;
			ends_with_slash = true;
		} else {
			path[w] = '/';
			memmove(path + w + 1, path + start, segment_len);
			w += 1 + segment_len;
			ends_with_slash = false;
		}
		r = end;
	}
	/* The input's last segment gave no output, so there is a byte free. */
	if (w == 0 || ends_with_slash) {
		path[w] = '/';
		w++;
	}
	path[w] = '\0';
}

int kit_http_path_normalize(const char *target, size_t len, char *out,
			    size_t size)
{
	size_t decoded_len = 0;
	int status;

	if (len == 0 || target[0] != '/')
		return 400;
	/* Decoding first: an encoded dot or slash is one for step 2 too. */
	status = percent_decode(target, len, out, size, &decoded_len);
	if (status != 0)
		return status;
	remove_dot_segments(out, decoded_len);
	return 0;
}

/* ---- chunked bodies --------------------------------------------------- */

/* Where kit_http_chunked_decode() is in the framing:
 *   size-line CRLF data CRLF ... "0" CRLF *(trailer-line CRLF) CRLF */
enum chunked_state {
	CHUNK_SIZE_FIRST = 0, /* a size line starts: a hex digit must come   */
	CHUNK_SIZE,           /* more digits, ';', SP/HTAB or the CR         */
	CHUNK_SIZE_SPACE,     /* SP/HTAB after the size: more, or ';'        */
	CHUNK_EXTENSION,      /* after ';': skipped up to the CR             */
	CHUNK_SIZE_LF,        /* the LF ending the size line                 */
	CHUNK_DATA,           /* chunk_left bytes of body                    */
	CHUNK_DATA_CR,        /* the CRLF that must follow the data          */
	CHUNK_DATA_LF,
	CHUNK_TRAILER_START,  /* a trailer line starts, or the final CR      */
	CHUNK_TRAILER,        /* inside a trailer line (skipped)             */
	CHUNK_TRAILER_LF,     /* the LF ending a trailer line                */
	CHUNK_FINAL_LF,       /* the LF of the empty line ending the body    */
	CHUNK_DONE,
	CHUNK_FAILED,
};

void kit_http_chunked_init(struct kit_http_chunked *c)
{
	c->state = CHUNK_SIZE_FIRST;
	c->chunk_left = 0;
	c->line_len = 0;
	c->trailer_len = 0;
	c->error = 0;
}

/* Counts one byte of the size line (not its CRLF) against the limit.
 * Returns KIT_HTTP_INCOMPLETE, or 400 when the line is too long. */
static int count_size_line_byte(struct kit_http_chunked *c)
{
	c->line_len++;
	return c->line_len > KIT_HTTP_CHUNK_LINE_MAX ? 400
						     : KIT_HTTP_INCOMPLETE;
}

/* The same for the trailer section, its final CRLF included. */
static int count_trailer_byte(struct kit_http_chunked *c)
{
	c->trailer_len++;
	return c->trailer_len > KIT_HTTP_CHUNK_TRAILERS_MAX
		       ? 400
		       : KIT_HTTP_INCOMPLETE;
}

/* Reads a hex digit of the chunk size. Returns KIT_HTTP_INCOMPLETE or 400
 * (the size is over the limit, or the line too long). */
static int add_size_digit(struct kit_http_chunked *c, int digit)
{
	c->chunk_left = c->chunk_left * 16 + (unsigned long long)digit;
	if (c->chunk_left > KIT_HTTP_CHUNK_SIZE_MAX)
		return 400; /* checked every digit: it never overflows */
	c->state = CHUNK_SIZE;
	return count_size_line_byte(c);
}

/*
 * Takes one framing byte (anything but chunk data) and moves c on. room is
 * how much body out can still take in this call.
 * Returns KIT_HTTP_INCOMPLETE to go on, 0 when the body is over, or 400 or
 * 413.
 */
static int chunked_step(struct kit_http_chunked *c, unsigned char byte,
			size_t room)
{
	int digit = kit_hex_digit((char)byte);

	switch (c->state) {
	case CHUNK_SIZE_FIRST:
		if (digit < 0)
			return 400; /* "", "-1", " 5", "g" */
		return add_size_digit(c, digit);
	case CHUNK_SIZE:
		if (digit >= 0)
			return add_size_digit(c, digit);
		if (byte == '\r') {
			c->state = CHUNK_SIZE_LF;
			return KIT_HTTP_INCOMPLETE;
		}
		if (byte == ';')
			c->state = CHUNK_EXTENSION;
		else if (is_whitespace(byte))
			c->state = CHUNK_SIZE_SPACE; /* BWS, RFC 9112 7.1.1 */
		else
			return 400;
		return count_size_line_byte(c);
	case CHUNK_SIZE_SPACE:
		if (byte == ';')
			c->state = CHUNK_EXTENSION;
		else if (!is_whitespace(byte))
			return 400; /* "5 \r\n", "5 6\r\n" */
		return count_size_line_byte(c);
	case CHUNK_EXTENSION:
		if (byte == '\r') {
			c->state = CHUNK_SIZE_LF;
			return KIT_HTTP_INCOMPLETE;
		}
		if (is_control(byte) && byte != '\t')
			return 400; /* a bare LF among them */
		return count_size_line_byte(c);
	case CHUNK_SIZE_LF:
		if (byte != '\n')
			return 400;
		c->line_len = 0;
		if (c->chunk_left == 0) {
			c->state = CHUNK_TRAILER_START; /* the last chunk */
			return KIT_HTTP_INCOMPLETE;
		}
		if (c->chunk_left > room)
			return 413; /* before reading a byte of it */
		c->state = CHUNK_DATA;
		return KIT_HTTP_INCOMPLETE;
	case CHUNK_DATA_CR:
		if (byte != '\r')
			return 400; /* the data was longer than its size said */
		c->state = CHUNK_DATA_LF;
		return KIT_HTTP_INCOMPLETE;
	case CHUNK_DATA_LF:
		if (byte != '\n')
			return 400;
		c->state = CHUNK_SIZE_FIRST;
		return KIT_HTTP_INCOMPLETE;
	case CHUNK_TRAILER_START:
		if (byte == '\r')
			c->state = CHUNK_FINAL_LF;
		else if (is_control(byte) && byte != '\t')
			return 400;
		else
			c->state = CHUNK_TRAILER;
		return count_trailer_byte(c);
	case CHUNK_TRAILER:
		if (byte == '\r')
			c->state = CHUNK_TRAILER_LF;
		else if (is_control(byte) && byte != '\t')
			return 400;
		return count_trailer_byte(c);
	case CHUNK_TRAILER_LF:
		if (byte != '\n')
			return 400;
		c->state = CHUNK_TRAILER_START;
		return count_trailer_byte(c);
	case CHUNK_FINAL_LF:
		if (byte != '\n' ||
		    count_trailer_byte(c) != KIT_HTTP_INCOMPLETE)
			return 400;
		c->state = CHUNK_DONE;
		return 0;
	default:
		return 400; /* CHUNK_DATA is copied by the caller, not here */
	}
}

int kit_http_chunked_decode(struct kit_http_chunked *c, const char *in,
			    size_t in_len, size_t *consumed, char *out,
			    size_t out_room, size_t *produced)
{
	size_t used = 0;
	size_t written = 0;
	int status = KIT_HTTP_INCOMPLETE;

	*consumed = 0;
	*produced = 0;
	if (c->state == CHUNK_DONE)
		return 0;
	if (c->state == CHUNK_FAILED)
		return c->error;

	while (used < in_len && status == KIT_HTTP_INCOMPLETE) {
		if (c->state != CHUNK_DATA) {
			status = chunked_step(c, (unsigned char)in[used],
					      out_room - written);
			used++;
			continue;
		}
		/* Chunk data: as much of it as this call has. */
		size_t take = in_len - used;
		if (take > c->chunk_left)
			take = (size_t)c->chunk_left;
		if (take > out_room - written) {
			/* Only a caller that lowered out_room by more than
			 * *produced gets here; out must not overflow. */
			status = 413;
			break;
		}
		memcpy(out + written, in + used, take);
		used += take;
		written += take;
		c->chunk_left -= take;
		if (c->chunk_left == 0)
			c->state = CHUNK_DATA_CR;
	}

	if (status > 0) {
		c->state = CHUNK_FAILED;
		c->error = status;
	}
	*consumed = used;
	*produced = written;
	return status;
}
