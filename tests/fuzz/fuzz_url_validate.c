/*
 * fuzz_url_validate.c - libFuzzer target: url_is_acceptable() and
 * alias_is_valid() (services/url-shortener/url_validate.c), which decide
 * what a short link may redirect to and what a custom code may be. Input:
 * byte 0 sets the size of the "why" buffer (0..255); the rest, up to its
 * first NUL, is both the URL and the alias.
 *
 * Properties, beyond "no crash, no sanitizer report":
 *   - an accepted URL is what the header promises: 1..2048 bytes, no
 *     control character, space or backslash (nothing that could split the
 *     Location header it becomes), "http://" or "https://" in any case,
 *     then an authority (up to '/', '?' or '#') with no '@', a non-empty
 *     host, and a port, if any, of at most 5 digits up to 65535;
 *   - libcurl, which the kit uses to call services, reads the same host
 *     from it (CURLUPART_HOST) whenever it parses it at all: the same name
 *     (case aside, percent-escapes decoded), or the same IPv6 address (curl shortens the literal);
 *     numeric IPv4 forms, which curl rewrites ("0x7f.1"), are left out;
 *   - a refused URL says why: a NUL-terminated reason within the buffer it
 *     was given (untouched when that buffer has no room);
 *   - alias_is_valid() is exactly "3..32 bytes of [A-Za-z0-9_-]".
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <curl/curl.h>

#include "fuzz.h"
#include "url-shortener/url_shortener.h"

static bool alias_rule(const char *s)
{
	size_t len = strlen(s);

	if (len < 3 || len > 32)
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == len;
}

static void check_accepted(const char *url)
{
	size_t len = strlen(url);
	const char *authority;

	FUZZ_CHECK(len >= 1 && len <= 2048, "accepted a %zu-byte URL", len);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)url[i];
		FUZZ_CHECK(c > 0x20 && c != 0x7f && c != '\\', "accepted byte 0x%02x at %zu", c, i);
	}
	if (strncasecmp(url, "http://", 7) == 0)
		authority = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		authority = url + 8;
	else
		fuzz_fail(__FILE__, __LINE__, "scheme", "accepted \"%.40s\"", url);

	size_t authority_len = strcspn(authority, "/?#");
	FUZZ_CHECK(memchr(authority, '@', authority_len) == NULL, "accepted a user name: %s", url);

	/* Host and port, read here the simple way. */
	const char *host = authority, *port = NULL;
	size_t host_len;
	if (authority_len > 0 && authority[0] == '[') {
		const char *close = memchr(authority, ']', authority_len);
		FUZZ_CHECK(close != NULL, "accepted an open '[': %s", url);
		host = authority + 1;
		host_len = (size_t)(close - host);
		if (close + 1 < authority + authority_len)
			port = close + 2;
	} else {
		const char *colon = memchr(authority, ':', authority_len);
		host_len = colon != NULL ? (size_t)(colon - authority) : authority_len;
		if (colon != NULL)
			port = colon + 1;
	}
	FUZZ_CHECK(host_len > 0, "accepted an empty host: %s", url);
	if (port != NULL) {
		size_t port_len = (size_t)(authority + authority_len - port);
		FUZZ_CHECK(port_len <= 5 && strspn(port, "0123456789") >= port_len &&
			   (port_len == 0 || strtol(port, NULL, 10) <= 65535),
			   "accepted port \"%.*s\"", (int)port_len, port);
	}

	/* libcurl's reading of the same URL. */
	CURLU *u = curl_url();
	char *curl_host = NULL;
	if (u == NULL)
		abort();
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &curl_host, 0) == CURLUE_OK) {
		const char *h = curl_host;
		size_t h_len = strlen(h);
		bool numeric = strspn(host, "0123456789abcdefABCDEFxX.") >= host_len;

		if (h[0] == '[' && h_len >= 2) {
			/* An IPv6 literal, which curl writes in its shortest form:
			 * the same address. */
			char ours[64], theirs[64];
			unsigned char a[16], b[16];
			FUZZ_CHECK(authority[0] == '[' && host_len < sizeof(ours) &&
				   h_len - 2 < sizeof(theirs),
				   "%s: libcurl reads an IPv6 host \"%s\"", url, curl_host);
			memcpy(ours, host, host_len);
			ours[host_len] = '\0';
			memcpy(theirs, h + 1, h_len - 2);
			theirs[h_len - 2] = '\0';
			FUZZ_CHECK(inet_pton(AF_INET6, ours, a) == 1 &&
				   inet_pton(AF_INET6, theirs, b) == 1 && memcmp(a, b, 16) == 0,
				   "%s: host [%s], libcurl reads %s", url, ours, curl_host);
		} else if (!numeric) {
			/* A name, percent-escapes decoded as curl does (curl
			 * rewrites numeric IPv4 forms such as "0x7f.1" as dotted
			 * quads: those are left out). */
			char *decoded = malloc(host_len + 1);
			size_t n = 0;
			if (decoded == NULL)
				abort();
			for (size_t i = 0; i < host_len; i++) {
				unsigned int byte;
				if (host[i] == '%' && i + 2 < host_len &&
				    sscanf(host + i + 1, "%2x", &byte) == 1 &&
				    strspn(host + i + 1, "0123456789abcdefABCDEF") >= 2) {
					decoded[n++] = (char)byte;
					i += 2;
				} else {
					decoded[n++] = host[i];
				}
			}
			FUZZ_CHECK(h_len == n && strncasecmp(h, decoded, n) == 0,
				   "%s: host \"%.*s\", libcurl reads \"%s\"", url, (int)host_len,
				   host, curl_host);
			free(decoded);
		}
	}
	curl_free(curl_host);
	curl_url_cleanup(u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t why_size = data[0];
	char *text = fuzz_string(data + 1, size - 1);
	char *why = malloc(why_size + 1);

	if (why == NULL)
		abort();
	memset(why, 'Z', why_size + 1);
	if (url_is_acceptable(text, why, why_size)) {
		check_accepted(text);
		for (size_t i = 0; i <= why_size; i++)
			FUZZ_CHECK(why[i] == 'Z', "accepted, yet wrote a reason");
	} else {
		FUZZ_CHECK(why[why_size] == 'Z', "wrote past the %zu-byte reason buffer", why_size);
		if (why_size > 0)
			FUZZ_CHECK(memchr(why, '\0', why_size) != NULL &&
				   (why_size == 1 || why[0] != '\0'),
				   "no reason in a %zu-byte buffer", why_size);
	}
	FUZZ_CHECK(alias_is_valid(text) == alias_rule(text), "alias_is_valid(\"%s\") is %d", text,
		   alias_is_valid(text));
	free(why);
	free(text);
	return 0;
}
