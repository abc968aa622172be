/*
 * gateway_internal.h - what the gateway's own files share: the proxy step
 * (proxy.c) and the version catch-all (gateway_versions.c), which proxies
 * an API-Version request as the route of that version.
 */
#ifndef KIT_GATEWAY_INTERNAL_H
#define KIT_GATEWAY_INTERNAL_H

#include "kit/gateway.h"
#include "kit/request.h"

/* Sends req to route's upstream (or split variant) and answers with what
 * comes back, or with a 502/504 problem. Returns the status sent. */
int gateway_proxy_route(struct kit_request *req, const struct kit_gateway_route *route);

/* The handler of the "/api/..." catch-all; req->route_data is the config. */
int gateway_version_handler(struct kit_request *req);

#endif
