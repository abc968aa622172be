/*
 * services/url-shortener/url_validate.c - what the shortener accepts as a
 * URL to redirect to, and as an alias.
 *
 * A short link sends browsers wherever its URL says, so the URL is checked
 * before it is stored: absolute http:// or https:// with a host, at most
 * 2048 bytes, and none of the bytes that split a Location header or that
 * browsers read differently from servers (control characters, spaces,
 * backslashes). A user name before the host ("http://bank.com@evil.com")
 * is refused too: it is how a link pretends to go somewhere it does not.
 *
 * An alias becomes part of a path and of a store key ("link:<alias>"), so it
 * is a short run of [A-Za-z0-9_-]; generated codes (7 base62 characters)
 * pass the same check. Pure functions, no state: safe from any thread.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "url-shortener/url_shortener.h"

#define URL_MAX_BYTES 2048
#define ALIAS_MIN_LENGTH 3
#define ALIAS_MAX_LENGTH 32

/* Writes reason into why (when the caller gave room) and returns false, so
 * every check below reads `return url_refuse(why, why_size, "...")`. */
static bool url_refuse(char *why, size_t why_size, const char *reason)
{
	if (why != NULL && why_size > 0)
		snprintf(why, why_size, "%s", reason);
	return false;
}

static bool url_is_ascii_letter_or_digit(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

static bool url_is_hex_digit(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	       (c >= 'A' && c <= 'F');
}

/* A registered name or IPv4 address: letters, digits, '.', '-', '_', '~',
 * percent-escapes, and bytes of 0x80 and up (internationalised names sent
 * as UTF-8). Anything else (quotes, '<', '!', ...) has no business in a
 * host and is more likely an attack than a typo. */
static bool url_host_name_is_valid(const char *host, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)host[i];

		if (url_is_ascii_letter_or_digit(c) || c >= 0x80)
			continue;
		if (c == '.' || c == '-' || c == '_' || c == '~' || c == '%')
			continue;
		return false;
	}
	return true;
}

/* The inside of "[...]": an IPv6 literal (hex digits, ':' and '.' for an
 * embedded IPv4 address). */
static bool url_host_ipv6_is_valid(const char *host, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)host[i];

		if (!url_is_hex_digit(c) && c != ':' && c != '.')
			return false;
	}
	return true;
}

/* An optional port after the host: empty (RFC 3986 allows "host:") or
 * 1-5 digits up to 65535. */
static bool url_port_is_valid(const char *port, size_t len)
{
	long value = 0;

	if (len > 5)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (port[i] < '0' || port[i] > '9')
			return false;
		value = value * 10 + (port[i] - '0');
	}
	return value <= 65535;
}

bool url_is_acceptable(const char *url, char *why, size_t why_size)
{
	const char *authority;
	size_t url_len;
	size_t authority_len;
	const char *host;
	size_t host_len;
	const char *port = NULL;
	size_t port_len = 0;

	/* 1. Size and bytes: nothing that could end a header line or that
	 *    servers and browsers parse differently. */
	if (url == NULL || url[0] == '\0')
		return url_refuse(why, why_size, "url must not be empty");
	url_len = strnlen(url, URL_MAX_BYTES + 1);
	if (url_len > URL_MAX_BYTES)
		return url_refuse(why, why_size,
				  "url must be at most 2048 bytes");
	for (size_t i = 0; i < url_len; i++) {
		unsigned char c = (unsigned char)url[i];

		if (c < 0x21 || c == 0x7f)
			return url_refuse(why, why_size,
					  "url must not contain spaces or control characters");
		if (c == '\\')
			return url_refuse(why, why_size,
					  "url must not contain backslashes");
	}

	/* 2. The scheme, in any case. */
	if (strncasecmp(url, "http://", 7) == 0)
		authority = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		authority = url + 8;
	else
		return url_refuse(why, why_size,
				  "url must start with http:// or https://");

	/* 3. The authority runs to the first '/', '?' or '#'. A '@' in it
	 *    means a user name, which only serves to disguise the host. */
	authority_len = strcspn(authority, "/?#");
	if (memchr(authority, '@', authority_len) != NULL)
		return url_refuse(why, why_size,
				  "url must not contain a user name or password (@) before the host");

	/* 4. Host and optional port: "[v6]:port" or "name:port". */
	if (authority_len > 0 && authority[0] == '[') {
		const char *close = memchr(authority, ']', authority_len);

		if (close == NULL)
			return url_refuse(why, why_size,
					  "url has an unterminated [IPv6] host");
		host = authority + 1;
		host_len = (size_t)(close - host);
		if (host_len == 0 || !url_host_ipv6_is_valid(host, host_len))
			return url_refuse(why, why_size,
					  "url has an invalid [IPv6] host");
		if (close + 1 < authority + authority_len) {
			if (close[1] != ':')
				return url_refuse(why, why_size,
						  "url has characters after the [IPv6] host");
			port = close + 2;
			port_len = (size_t)(authority + authority_len - port);
		}
	} else {
		const char *colon = memchr(authority, ':', authority_len);

		host = authority;
		host_len = colon != NULL ? (size_t)(colon - authority)
					 : authority_len;
		if (host_len == 0)
			return url_refuse(why, why_size, "url must have a host");
		if (!url_host_name_is_valid(host, host_len))
			return url_refuse(why, why_size,
					  "url host contains characters a host name cannot have");
		if (colon != NULL) {
			port = colon + 1;
			port_len = authority_len - host_len - 1;
		}
	}
	if (port != NULL && !url_port_is_valid(port, port_len))
		return url_refuse(why, why_size,
				  "url port must be a number up to 65535");
	return true;
}

bool alias_is_valid(const char *alias)
{
	size_t len;

	if (alias == NULL)
		return false;
	len = strnlen(alias, ALIAS_MAX_LENGTH + 1);
	if (len < ALIAS_MIN_LENGTH || len > ALIAS_MAX_LENGTH)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)alias[i];

		if (!url_is_ascii_letter_or_digit(c) && c != '_' && c != '-')
			return false;
	}
	return true;
}
