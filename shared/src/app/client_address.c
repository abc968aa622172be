/*
 * client_address.c - who the client is: req->client_ip, the address the
 * per-IP rate limits count, the access log records and the proxy passes
 * upstream as X-Forwarded-For.
 *
 * Position: the first thing serve() (app.c) does to a request,
 * before the route and the chain; every middleware reads the result.
 * Reads:    the socket peer, every X-Forwarded-For line of the request,
 *           TRUSTED_PROXIES (read once by kit_client_address_config()).
 * Writes:   req->client_ip, always a canonical IPv4 or IPv6 text
 *           (inet_ntop), or the peer's own text when it is neither.
 *
 * The rule (the one nginx's realip module with real_ip_recursive applies):
 *
 *   1. The peer is the client unless it is a trusted proxy.
 *   2. Behind a trusted proxy, read X-Forwarded-For: every line of it,
 *      joined in order with ',' (RFC 9110 5.3: several lines of a list
 *      header are one list). A proxy that appends a line of its own
 *      instead of extending the client's makes two lines; reading only the
 *      first would read the client's own words.
 *   3. Walk the entries from the right. Each is what the hop to its right
 *      saw as its peer; an entry that is not a trusted proxy is the client,
 *      and the walk stops there. Entries further left were written by the
 *      client itself and prove nothing.
 *   4. Every entry must be an IP address (inet_pton, IPv4 or IPv6; no
 *      port, no brackets, no name). An entry that is not ends the walk, and
 *      the address used is the last trusted one the walk reached (the peer,
 *      or a trusted entry): the nearest point the chain still vouches for.
 *      Never the bad entry itself ("deadbeef" would otherwise be a fresh
 *      rate-limit key per request), and never anything left of it. A
 *      trusted proxy that passes such an entry on is misconfigured; its
 *      clients then share that proxy's per-IP limit, which shows in the
 *      access log's client_ip and is the proxy's to fix.
 *   5. When every entry is a trusted proxy, the left-most one is used.
 *
 * Addresses are compared as bytes, not text, so "::ffff:10.0.0.1" and
 * "::FFFF:10.0.0.1" are one address, and the text written to client_ip is
 * inet_ntop's, so one client is one rate-limit key however a proxy spells
 * it.
 *
 * Threads: the trusted list is written by kit_app_new() before the server
 * starts and only read after; everything else works on its arguments.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/internal.h"
#include "kit/config.h"
#include "kit/request.h"

/* The longest X-Forwarded-For entry we look at: an IPv6 address in text
 * is at most 45 characters (INET6_ADDRSTRLEN - 1). */
#define ENTRY_MAX 48

bool kit_ip_parse(const char *text, size_t len, struct kit_ip *out)
{
	char copy[ENTRY_MAX];

	if (len == 0 || len >= sizeof(copy))
		return false;
	memcpy(copy, text, len);
	copy[len] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, copy, out->bytes) == 1) {
		out->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, copy, out->bytes) == 1) {
		out->family = AF_INET6;
		return true;
	}
	return false;
}

static bool ip_is_trusted(const struct kit_trusted_proxies *trusted,
			  const struct kit_ip *ip)
{
	size_t len = ip->family == AF_INET ? 4 : 16;

	for (int i = 0; i < trusted->count; i++) {
		if (trusted->list[i].family == ip->family &&
		    memcmp(trusted->list[i].bytes, ip->bytes, len) == 0)
			return true;
	}
	return false;
}

static void ip_format(const struct kit_ip *ip, char *out, size_t size)
{
	if (inet_ntop(ip->family, ip->bytes, out, (socklen_t)size) == NULL && size > 0)
		out[0] = '\0';
}

int kit_trusted_proxies_parse(const char *text, struct kit_trusted_proxies *out,
			      char *error, size_t error_size)
{
	const char *p = text;

	memset(out, 0, sizeof(*out));
	while (*p != '\0') {
		size_t len = strcspn(p, ",");
		const char *entry = p;
		size_t entry_len = len;

		while (entry_len > 0 && (entry[0] == ' ' || entry[0] == '\t')) {
			entry++;
			entry_len--;
		}
		while (entry_len > 0 && (entry[entry_len - 1] == ' ' || entry[entry_len - 1] == '\t'))
			entry_len--;
		if (entry_len > 0) {
			if (out->count == KIT_MAX_TRUSTED_PROXIES) {
				snprintf(error, error_size, "TRUSTED_PROXIES: more than %d addresses",
					 KIT_MAX_TRUSTED_PROXIES);
				return -1;
			}
			if (!kit_ip_parse(entry, entry_len, &out->list[out->count])) {
				snprintf(error, error_size,
					 "TRUSTED_PROXIES: \"%.*s\" is not an IPv4 or IPv6 address",
					 (int)(entry_len < 64 ? entry_len : 64), entry);
				return -1;
			}
			out->count++;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

void kit_client_address_pick(const struct kit_trusted_proxies *trusted,
			     const char *peer, const char *forwarded_for,
			     char *out, size_t out_size)
{
	struct kit_ip current;
	const char *end;

	/* 1. The peer: the client, unless it is a trusted proxy. A peer that
	 * is not an address at all (a Unix socket) is taken as it is. */
	if (!kit_ip_parse(peer, strlen(peer), &current)) {
		snprintf(out, out_size, "%s", peer);
		return;
	}
	if (forwarded_for == NULL || !ip_is_trusted(trusted, &current)) {
		ip_format(&current, out, out_size);
		return;
	}

	/* 2-5. The entries, right to left: [start, end) is one. */
	end = forwarded_for + strlen(forwarded_for);
	for (;;) {
		const char *start = end;
		const char *entry_start;
		struct kit_ip entry;
		size_t len;

		while (start > forwarded_for && start[-1] != ',')
			start--;
		entry_start = start;
		len = (size_t)(end - start);
		while (len > 0 && (*entry_start == ' ' || *entry_start == '\t')) {
			entry_start++;
			len--;
		}
		while (len > 0 && (entry_start[len - 1] == ' ' || entry_start[len - 1] == '\t'))
			len--;
		if (!kit_ip_parse(entry_start, len, &entry))
			break; /* not an address (or empty): the walk ends at current */
		current = entry;
		if (!ip_is_trusted(trusted, &current))
			break; /* the client */
		if (start == forwarded_for)
			break; /* the left-most entry, trusted too */
		end = start - 1; /* before its comma */
	}
	ip_format(&current, out, out_size);
}

int kit_client_address_config(struct kit_app *app)
{
	char error[160];

	if (kit_trusted_proxies_parse(kit_env_string("TRUSTED_PROXIES", ""),
				      &app->trusted_proxies, error, sizeof(error)) != 0) {
		fprintf(stderr, "%s\n", error);
		return -1;
	}
	return 0;
}

void kit_client_address_resolve(struct kit_request *req, const char *peer)
{
	const struct kit_trusted_proxies *trusted = &req->app->trusted_proxies;
	char *joined = NULL;
	size_t used = 0;
	int count = kit_request_header_count(req);

	/* Only a trusted peer's X-Forwarded-For is read, so only then is it
	 * joined (an allocation per request otherwise wasted). */
	if (trusted->count > 0) {
		struct kit_ip peer_ip;

		if (kit_ip_parse(peer, strlen(peer), &peer_ip) && ip_is_trusted(trusted, &peer_ip)) {
			for (int i = 0; i < count; i++) {
				const char *name, *value;
				size_t len;
				char *longer;

				kit_request_header_at(req, i, &name, &value);
				if (strcasecmp(name, "X-Forwarded-For") != 0)
					continue;
				len = strlen(value);
				longer = realloc(joined, used + len + 2);
				if (longer == NULL)
					break; /* out of memory: what was joined so far */
				joined = longer;
				if (used > 0)
					joined[used++] = ',';
				memcpy(joined + used, value, len);
				used += len;
				joined[used] = '\0';
			}
		}
	}
	kit_client_address_pick(trusted, peer, joined, req->client_ip, sizeof(req->client_ip));
	free(joined);
}
