# Dockerfile - every program of the kit in a container, from one build.
#
# One build stage compiles the kit once, with the same Makefile a native
# `make` uses. Then one small runtime image per program, each a target:
#
#   target            program            port  run by docker-compose.yml
#   monolith          monolith           8080  phase1
#   users             users              8083  phase2, phase3
#   url-shortener     url-shortener      8081  phase2; phase3 three times (v1, v2, v2's canary)
#   analytics         analytics          8082  phase2, phase3
#   notifications     notifications      8087  phase2, phase3
#   gateway           gateway            3000  phase2
#   gateway-advanced  gateway-advanced   3000  phase3 three times (api-gateway-1..3)
#
# Build one by hand from the repository root (with no --target, docker
# builds the last stage: monolith, placed last on purpose):
#   docker build --target gateway -t kit-gateway .
# or let compose build what a phase needs: make compose-up PHASE=2
# (docs/docker.md).
#
# Why one file. Compose builds one image per service: eleven in Phase 3.
# The kit used to have four Dockerfiles, each with its own copy of the build
# stage and its own `RUN make` line, so a first `--profile phase3 up --build`
# compiled the kit about seven times. Here every target starts from the
# same build stage: the same instructions on the same files.
#   - BuildKit (the builder of `docker compose` v2, and of `docker build`
#     since Docker Engine 23) caches each step by its instruction and its
#     inputs, builds only the stages a target needs, and runs a step that
#     several builds need at the same time once: the kit is compiled once,
#     and the other images reuse the result.
#   - Debian's docker-compose 1.29 uses the classic builder unless
#     DOCKER_BUILDKIT=1 and COMPOSE_DOCKER_CLI_BUILD=1 are set. It builds the
#     images one after another and runs every stage up to the target, but
#     its layer cache matches the build stage's steps as well: the first
#     image compiles the kit, the others find those layers in the cache.
#     (`docker-compose build --parallel` may compile it once per parallel
#     build before the cache has it.)
#
# Every setting comes from the environment at run time
# (docs/configuration.md); JWT_SECRET has no default, on purpose.

# --- build: compile every program once ------------------------------------
FROM debian:12-slim AS build

# What scripts/deps.sh's build set needs to compile: the compiler, make,
# pkg-config and the -dev packages (its run-time programs, redis-server and
# curl, are not needed here). tests/compose.sh checks this list against it.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev make pkg-config \
      libcivetweb-dev libhiredis-dev libjwt-dev libcjson-dev \
      libcurl4-openssl-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what the programs are compiled from, so that editing docs or tests
# does not invalidate the cached compile.
COPY Makefile ./
COPY shared/ shared/
COPY services/ services/
COPY phase1-monolith/main.c phase1-monolith/
COPY phase2-gateway/main.c phase2-gateway/
COPY phase3-advanced/main.c phase3-advanced/
RUN make -j"$(nproc)" build/bin/monolith build/bin/gateway build/bin/gateway-advanced \
      build/bin/users build/bin/url-shortener build/bin/analytics build/bin/notifications

# --- runtime: what every program's image shares ---------------------------
FROM debian:12-slim AS runtime

# The runtime halves of the -dev packages above (Debian 12 names; their own
# dependencies come with them). tests/compose.sh checks that these provide
# every library the built programs load. curl is for HEALTHCHECK below: it
# adds little, since libcurl4 is needed anyway. ca-certificates lets an
# https:// JAEGER_COLLECTOR_URL be verified.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcivetweb1 libhiredis0.14 libjwt0 libcjson1 libcurl4 libssl3 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin kit

# Not root: a program that is broken into owns nothing in the image.
USER kit
# Inside a container a server must listen on every address to be reachable
# from outside it; each target sets its PORT.
ENV BIND_ADDRESS=0.0.0.0

# /health is 200 while the program can serve (a gateway's stays 200 while an
# upstream is down: "degraded"), 503 when its store is unreachable. Compose
# waits for it (depends_on: service_healthy). Shell form, so that ${PORT} is
# the container's at run time.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${PORT}/health" >/dev/null || exit 1

# --- one target per program -------------------------------------------------
# Each program is process 1 (exec form), so `docker stop`'s SIGTERM reaches
# it and it stops cleanly.

FROM runtime AS users
COPY --from=build /src/build/bin/users /usr/local/bin/users
ENV PORT=8083
EXPOSE 8083
CMD ["/usr/local/bin/users"]

# API_VERSION (1 or 2) chooses the version at run time: Phase 3 runs this
# image three times.
FROM runtime AS url-shortener
COPY --from=build /src/build/bin/url-shortener /usr/local/bin/url-shortener
ENV PORT=8081
EXPOSE 8081
CMD ["/usr/local/bin/url-shortener"]

FROM runtime AS analytics
COPY --from=build /src/build/bin/analytics /usr/local/bin/analytics
ENV PORT=8082
EXPOSE 8082
CMD ["/usr/local/bin/analytics"]

FROM runtime AS notifications
COPY --from=build /src/build/bin/notifications /usr/local/bin/notifications
ENV PORT=8087
EXPOSE 8087
CMD ["/usr/local/bin/notifications"]

# The route file's upstream URLs are loopback ports for native runs; compose
# overrides them (USERS_URL, URL_SHORTENER_URL, ANALYTICS_URL, NOTIFICATIONS_URL) with the
# services' names.
FROM runtime AS gateway
COPY --from=build /src/build/bin/gateway /usr/local/bin/gateway
COPY phase2-gateway/gateway.json /etc/kit/gateway.json
ENV PORT=3000 \
    GATEWAY_CONFIG=/etc/kit/gateway.json
EXPOSE 3000
CMD ["/usr/local/bin/gateway"]

# The same image for the three instances; compose gives each its INSTANCE_ID.
FROM runtime AS gateway-advanced
COPY --from=build /src/build/bin/gateway-advanced /usr/local/bin/gateway-advanced
COPY phase3-advanced/gateway.json /etc/kit/gateway.json
ENV PORT=3000 \
    GATEWAY_CONFIG=/etc/kit/gateway.json
EXPOSE 3000
CMD ["/usr/local/bin/gateway-advanced"]

FROM runtime AS monolith
COPY --from=build /src/build/bin/monolith /usr/local/bin/monolith
ENV PORT=8080
EXPOSE 8080
CMD ["/usr/local/bin/monolith"]
