#!/usr/bin/env bash
# scripts/compose.sh - run one phase of the kit in containers, with a JWT
# secret made once and kept.
#
#   scripts/compose.sh up 1|2|3   `make compose-up PHASE=N`: builds the images
#                                 (one Dockerfile, the kit compiled once) and
#                                 starts profile phaseN in the background
#   scripts/compose.sh down       `make compose-down`: stops and removes the
#                                 containers of whichever phase runs; Redis's
#                                 data volume is kept (`down -v` deletes it)
#   scripts/compose.sh env        only makes sure .env holds a JWT_SECRET, for
#                                 running `docker compose` by hand
#
# The secret. docker-compose.yml requires JWT_SECRET and ships no default.
# The first run writes `.env` at the repository root (git-ignored, readable
# by you only) with JWT_SECRET=<openssl rand -hex 32>; every later run keeps
# it. Compose reads .env by itself for every command, so plain `docker
# compose --profile phase2 up` and `... down` work too with nothing exported,
# and tokens issued before a restart stay valid. Deleting .env makes a new
# secret next time, which invalidates every token issued so far. A
# JWT_SECRET exported in your shell wins over .env (compose's rule); this
# script says so when it sees one.
#
# The client. Either `docker compose` (the v2 plugin) or Debian 12's
# `docker-compose` 1.29, whichever is installed (the plugin first); both take
# the same arguments here. Both need a running Docker engine: without one
# this script stops before doing anything, and says how to run the same
# phase natively (`make up PHASE=N`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ENV_FILE=.env
ALL_PROFILES=(--profile phase1 --profile phase2 --profile phase3)

die() {
	echo "compose: $*" >&2
	exit 1
}

usage() {
	echo "usage: scripts/compose.sh up 1|2|3 | down | env" >&2
	exit 2
}

# ensure_env: .env holds a non-empty JWT_SECRET: kept when it does, added
# (to a new file, or at the end of yours) when it does not.
ensure_env() {
	local secret
	if [ -f "$ENV_FILE" ] && grep -Eq '^JWT_SECRET=.+' "$ENV_FILE"; then
		echo "compose: using the JWT_SECRET in $ENV_FILE (made once; delete the file for a new one)"
	elif [ -f "$ENV_FILE" ] && grep -Eq '^[[:space:]]*(export[[:space:]]+)?JWT_SECRET[[:space:]]*=' "$ENV_FILE"; then
		# Appending a second line would leave two answers in one file.
		die "$ENV_FILE has a JWT_SECRET line, but not as JWT_SECRET=<value> with a value: fix or delete that line"
	else
		secret=$(openssl rand -hex 32) || die "openssl rand failed: cannot make a JWT secret"
		[ ${#secret} -eq 64 ] || die "openssl rand gave '$secret', not 64 hex digits"
		# Asked before the redirection below, which creates the file.
		local header=""
		if [ ! -f "$ENV_FILE" ]; then
			header="# Made by scripts/compose.sh: docker compose reads it for every command.
# Keep it secret (git ignores it); deleting it invalidates every token issued so far.
"
		fi
		# The umask inside the subshell, where the file is opened: a new
		# .env is readable by its owner only.
		(
			umask 077
			printf '%sJWT_SECRET=%s\n' "$header" "$secret" >>"$ENV_FILE"
		)
		echo "compose: wrote a new random JWT_SECRET to $ENV_FILE"
	fi
	if [ -n "${JWT_SECRET:-}" ]; then
		echo "compose: note: JWT_SECRET is set in your environment; compose uses it instead of $ENV_FILE's" >&2
	fi
	ensure_operator_token
}

# ensure_operator_token: .env holds an OPERATOR_TOKEN (the credential for
# the gateways' and the monolith's /health/details): kept when it does,
# added once when it does not. Optional in docker-compose.yml: without it
# the detailed report is off (403); a line of yours is never replaced.
ensure_operator_token() {
	local token
	if grep -Eq '^[[:space:]]*(export[[:space:]]+)?OPERATOR_TOKEN[[:space:]]*=' "$ENV_FILE"; then
		return 0
	fi
	token=$(openssl rand -hex 32) || die "openssl rand failed: cannot make an operator token"
	(
		umask 077
		printf 'OPERATOR_TOKEN=%s\n' "$token" >>"$ENV_FILE"
	)
	echo "compose: wrote a new random OPERATOR_TOKEN to $ENV_FILE (GET /health/details with it as a Bearer token)"
}

# find_compose: sets COMPOSE to the command to run, the v2 plugin first.
find_compose() {
	if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
		COMPOSE=(docker compose)
	elif command -v docker-compose >/dev/null 2>&1; then
		COMPOSE=(docker-compose)
	else
		die "neither \`docker compose\` (the v2 plugin) nor \`docker-compose\` (Debian: apt-get install docker-compose) is installed; $1"
	fi
}

# engine_running: a Docker engine answers. `docker info` asks it (and
# ENGINE_ERROR keeps the first line of what it said). Without the docker
# client (docker-compose 1.29 talks to the engine itself) the best cheap
# guess is the engine's socket: DOCKER_HOST's when it names one, else
# /var/run/docker.sock; a tcp:// DOCKER_HOST is left for compose to try.
ENGINE_ERROR=""
engine_running() {
	local said host
	if command -v docker >/dev/null 2>&1; then
		said=$(docker info 2>&1 >/dev/null) && return 0
		ENGINE_ERROR=$(head -n 1 <<<"$said")
		return 1
	fi
	host=${DOCKER_HOST:-unix:///var/run/docker.sock}
	case $host in
	unix://*) [ -S "${host#unix://}" ] ;;
	*) return 0 ;;
	esac
}

command=${1:-}
case $command in
up)
	[ $# -eq 2 ] || usage
	phase=$2
	[[ $phase =~ ^[123]$ ]] || usage
	find_compose "run the same phase natively: make up PHASE=$phase"
	engine_running ||
		die "no Docker engine: use make up PHASE=$phase (the same phase, natively, no containers)${ENGINE_ERROR:+; docker info said: $ENGINE_ERROR}"
	ensure_env
	echo "compose: ${COMPOSE[*]} --profile phase$phase up --build --detach"
	"${COMPOSE[@]}" --profile "phase$phase" up --build --detach
	jaeger=""
	case $phase in
	1) url=http://localhost:8080 api=http://localhost:8080 ;;
	2) url=http://localhost:3000 api=http://localhost:3000/api/v1 ;;
	3) url=http://localhost:8000 api=http://localhost:8000/api/v1
	   jaeger=" Jaeger's UI: http://localhost:16686 (service \"gateway\")." ;;
	esac
	cat <<EOF

Phase $phase is starting in containers: $url (the API under $api).$jaeger
  state:   ${COMPOSE[*]} --profile phase$phase ps
  logs:    ${COMPOSE[*]} --profile phase$phase logs -f
  a check: BASE_URL=$url tests/journey.sh
  stop:    make compose-down
EOF
	;;
down)
	[ $# -eq 1 ] || usage
	find_compose "natively, make down stops what make up started"
	engine_running ||
		die "no Docker engine: nothing runs in containers here (natively: make down)${ENGINE_ERROR:+; docker info said: $ENGINE_ERROR}"
	# down reads the compose file, and so needs JWT_SECRET resolved too.
	ensure_env
	# Every profile: whichever phase was started, its containers go.
	echo "compose: ${COMPOSE[*]} ${ALL_PROFILES[*]} down --remove-orphans"
	"${COMPOSE[@]}" "${ALL_PROFILES[@]}" down --remove-orphans
	;;
env)
	[ $# -eq 1 ] || usage
	ensure_env
	;;
*)
	usage
	;;
esac
