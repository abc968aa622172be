#!/usr/bin/env bash
# tests/compose.sh - validate every compose file in the repository offline.
#
# `docker-compose -f FILE config -q` parses the file, checks it against the
# compose schema and resolves its variables without talking to a Docker
# engine, so it runs here and in CI where there is none. Files that require
# JWT_SECRET (${JWT_SECRET:?...}) get a dummy one. Each file is one check.
#
# Then docker-compose.yml's shape, read from that resolved config: every
# service names a profile (docker-compose 1.29 starts a service without one
# in every profile), each phase's profile has the services it needs, in
# Phase 2 only the gateway publishes a port (the services trust X-User-*
# headers, so they must not be reachable from outside) and in Phase 3 only
# nginx and Jaeger's UI do, every gateway of Phase 3 trusts nginx's fixed
# address (TRUSTED_PROXIES), and every Dockerfile a build names and every
# file a volume mounts exists.
#
# Last, both nginx configs of Phase 3 pass `nginx -t`: the compose one
# (phase3-advanced/nginx.conf, with the gateways' container names replaced
# by 127.0.0.1, since they only resolve inside compose) and the native one
# as scripts/nginx-native-conf.sh writes it. The last line is "N passed, N
# failed".
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

if ! command -v docker-compose >/dev/null; then
	fail "docker-compose is installed" "run scripts/deps.sh"
	finish
	exit 1
fi

mapfile -t FILES < <(find . \( -path ./.git -o -path ./build -o -path ./.run \
	-o -name node_modules \) -prune -o -type f \
	\( -name 'docker-compose*.yml' -o -name 'docker-compose*.yaml' \
	-o -name 'compose.yml' -o -name 'compose.yaml' \) -print | sort)

if [ ${#FILES[@]} -eq 0 ]; then
	fail "the repository has a compose file" "none found"
fi

for file in "${FILES[@]}"; do
	file=${file#./}
	if JWT_SECRET=compose-check-dummy-secret-0123456789abcdef \
		docker-compose -f "$file" config -q >"$TEST_DIR/compose.out" 2>&1; then
		pass "$file is valid (docker-compose config)"
	else
		fail "$file is valid (docker-compose config)" "$(head -c 600 "$TEST_DIR/compose.out")"
	fi
done

# --- docker-compose.yml's shape -----------------------------------------
# The resolved config is YAML; the Python that docker-compose runs on has
# a YAML parser (docker-compose needs it), so use that one.
COMPOSE_PYTHON=$(head -n 1 "$(command -v docker-compose)" | sed -n 's/^#! *//p')
COMPOSE_PYTHON=${COMPOSE_PYTHON:-python3}
if ! JWT_SECRET=compose-check-dummy-secret-0123456789abcdef \
	docker-compose -f docker-compose.yml config >"$TEST_DIR/resolved.yml" 2>&1; then
	fail "docker-compose.yml resolves" "$(head -c 600 "$TEST_DIR/resolved.yml")"
	finish
	exit 1
fi

# Prints one line per finding: "ok <what>" or "not ok <what>: <why>".
$COMPOSE_PYTHON - "$TEST_DIR/resolved.yml" >"$TEST_DIR/shape.txt" 2>&1 <<'PYTHON'
import os
import sys

import yaml

services = yaml.safe_load(open(sys.argv[1]))["services"]
phases = {
    "phase1": {"redis", "monolith"},
    "phase2": {"redis", "users", "url-shortener", "analytics", "gateway"},
    "phase3": {"redis", "users", "analytics", "url-shortener-v1", "url-shortener-v2",
               "url-shortener-v2-canary", "api-gateway-1", "api-gateway-2",
               "api-gateway-3", "nginx", "jaeger"},
}
published = {"phase1": {"monolith"}, "phase2": {"gateway"}, "phase3": {"nginx", "jaeger"}}


def report(ok, what, why=""):
    print(("ok " if ok else "not ok ") + what + ("" if ok else ": " + why))


for name, service in sorted(services.items()):
    report(bool(service.get("profiles")), f"service {name} names a profile", "it has no profiles")
    build = service.get("build")
    if build:
        dockerfile = os.path.join(build["context"], build.get("dockerfile", "Dockerfile"))
        report(os.path.isfile(dockerfile), f"service {name}'s Dockerfile exists", dockerfile)
    for volume in service.get("volumes", []):
        # Bind mounts resolve to absolute paths; named volumes do not.
        source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
        if source.startswith("/"):
            report(os.path.exists(source), f"service {name} mounts an existing {os.path.basename(source)}",
                   f"{source} does not exist")

for phase, wanted in phases.items():
    members = {n for n, s in services.items() if phase in s.get("profiles", [])}
    report(members == wanted, f"profile {phase} is {', '.join(sorted(wanted))}",
           f"it is {', '.join(sorted(members))}")
    with_ports = {n for n in members if n != "redis" and services[n].get("ports")}
    report(with_ports == published[phase],
           f"in {phase} only {', '.join(sorted(published[phase]))} publishes a port",
           f"these do: {', '.join(sorted(with_ports))}")

# Phase 3: the gateways believe X-Forwarded-For from nginx alone, so
# TRUSTED_PROXIES must be nginx's fixed address on the network they share.
nginx_networks = services.get("nginx", {}).get("networks") or {}
nginx_addresses = {(n or {}).get("ipv4_address") for n in nginx_networks.values()} - {None}
for name in ("api-gateway-1", "api-gateway-2", "api-gateway-3"):
    environment = services.get(name, {}).get("environment") or {}
    trusted = environment.get("TRUSTED_PROXIES", "")
    report(trusted != "" and set(trusted.split(",")) <= nginx_addresses,
           f"{name} trusts nginx's address ({', '.join(sorted(nginx_addresses))})",
           f"TRUSTED_PROXIES is '{trusted}'")
    report(environment.get("INSTANCE_ID") == name, f"{name} has INSTANCE_ID={name}",
           f"it is '{environment.get('INSTANCE_ID')}'")
PYTHON
if ! grep -q '^ok ' "$TEST_DIR/shape.txt"; then
	fail "docker-compose.yml's shape can be checked" "$(head -c 600 "$TEST_DIR/shape.txt")"
fi
while IFS= read -r line; do
	case $line in
	"ok "*) pass "${line#ok }" ;;
	"not ok "*) fail "${line#not ok }" ;;
	esac
done <"$TEST_DIR/shape.txt"

# --- Phase 3's nginx configs ---------------------------------------------
# nginx_t DESCRIPTION FILE [PREFIX_DIR]: `nginx -t` accepts FILE (relative
# paths in it are relative to PREFIX_DIR, as when nginx runs with -p). -e
# keeps the error log of the test itself out of /var/log/nginx.
nginx_t() {
	local prefix=()
	[ -n "${3:-}" ] && prefix=(-p "$3")
	if nginx -t -q "${prefix[@]}" -c "$2" -e "$TEST_DIR/nginx-t.log" \
		>"$TEST_DIR/nginx-t.out" 2>&1; then
		pass "$1"
	else
		fail "$1" "$(head -c 600 "$TEST_DIR/nginx-t.out")"
	fi
}
if ! command -v nginx >/dev/null; then
	fail "nginx is installed (to check phase3-advanced's configs)" "run scripts/deps.sh"
else
	sed -E 's/api-gateway-[0-9]+:3000/127.0.0.1:3000/' phase3-advanced/nginx.conf \
		>"$TEST_DIR/nginx-compose.conf"
	nginx_t "phase3-advanced/nginx.conf passes nginx -t" "$TEST_DIR/nginx-compose.conf"
	if bash scripts/nginx-native-conf.sh "$TEST_DIR/nginx-native" 8000 3001 3002 3003 \
		>"$TEST_DIR/nginx-native.out" 2>&1; then
		nginx_t "the native config (scripts/nginx-native-conf.sh) passes nginx -t" \
			"$TEST_DIR/nginx-native/nginx.conf" "$TEST_DIR/nginx-native"
	else
		fail "scripts/nginx-native-conf.sh writes a config" "$(head -c 600 "$TEST_DIR/nginx-native.out")"
	fi
fi

finish
