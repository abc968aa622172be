#!/usr/bin/env bash
# tests/compose.sh - the Docker path, checked offline: there is no Docker
# engine here, so nothing is built or started; what can be known without
# one is checked instead.
#
# 1. Every compose file in the repository is valid: `docker-compose -f FILE
#    config -q` parses it, checks it against the compose schema and
#    resolves its variables without talking to an engine. Files that need
#    JWT_SECRET get a dummy one.
# 2. docker-compose.yml and the Dockerfile, read by tests/compose_check.py
#    from the resolved config: each profile's services, ports, dependencies
#    and tracing settings, who gets JWT_SECRET, the Dockerfile's targets,
#    packages and COPY sources, and a compile of the kit from exactly what
#    the build stage copies (see that file).
# 3. scripts/compose.sh (make compose-up / compose-down), run on a copy of
#    it and docker-compose.yml in a scratch directory, so no .env is ever
#    written into the repository:
#      - without a Docker engine (DOCKER_HOST names a socket that does not
#        exist), up and down stop with "no Docker engine: ..." and write
#        nothing;
#      - `env` writes .env once (mode 600, one JWT_SECRET of 64 hex digits)
#        and keeps it on later runs; a .env of yours is added to, not
#        replaced;
#      - with .env there and nothing exported, plain `docker-compose config`
#        resolves every profile with that secret; without it, it stops with
#        a message that says how to make one;
#      - with stand-ins for the clients on PATH (they record their arguments
#        and answer `docker info`): the v2 plugin is preferred and gets
#        `--profile phaseN up --build --detach`, docker-compose 1.29 is used
#        when there is no plugin, and down names every profile.
# 4. Both nginx configs of Phase 3 pass `nginx -t`: the compose one
#    (phase3-advanced/nginx.conf, with the gateways' container names
#    replaced by 127.0.0.1, since they only resolve inside compose) and the
#    native one as scripts/nginx-native-conf.sh writes it.
# The last line is "N passed, N failed".
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

DUMMY_SECRET=compose-check-dummy-secret-0123456789abcdef

if ! command -v docker-compose >/dev/null; then
	fail "docker-compose is installed" "run scripts/deps.sh"
	finish
	exit 1
fi

# --- 1. every compose file is valid ----------------------------------------
section "compose files"
mapfile -t FILES < <(find . \( -path ./.git -o -path ./build -o -path ./.run \
	-o -name node_modules \) -prune -o -type f \
	\( -name 'docker-compose*.yml' -o -name 'docker-compose*.yaml' \
	-o -name 'compose.yml' -o -name 'compose.yaml' \) -print | sort)

if [ ${#FILES[@]} -eq 0 ]; then
	fail "the repository has a compose file" "none found"
fi

for file in "${FILES[@]}"; do
	file=${file#./}
	if JWT_SECRET=$DUMMY_SECRET docker-compose -f "$file" config -q >"$TEST_DIR/compose.out" 2>&1; then
		pass "$file is valid (docker-compose config)"
	else
		fail "$file is valid (docker-compose config)" "$(head -c 600 "$TEST_DIR/compose.out")"
	fi
done

# --- 2. docker-compose.yml's shape and the Dockerfile ------------------------
section "docker-compose.yml and the Dockerfile (tests/compose_check.py)"
# The resolved config is YAML; the Python that docker-compose runs on has a
# YAML parser (docker-compose needs it), so use that one.
COMPOSE_PYTHON=$(head -n 1 "$(command -v docker-compose)" | sed -n 's/^#! *//p')
COMPOSE_PYTHON=${COMPOSE_PYTHON:-python3}
if JWT_SECRET=$DUMMY_SECRET docker-compose -f docker-compose.yml config >"$TEST_DIR/resolved.yml" 2>&1; then
	$COMPOSE_PYTHON tests/compose_check.py "$TEST_DIR/resolved.yml" "$DUMMY_SECRET" \
		>"$TEST_DIR/shape.txt" 2>&1
	# A crash of the checker leaves no "ok" line, or a traceback after them.
	if ! grep -q '^ok ' "$TEST_DIR/shape.txt" || grep -q '^Traceback' "$TEST_DIR/shape.txt"; then
		fail "tests/compose_check.py runs" "$(tail -c 800 "$TEST_DIR/shape.txt")"
	fi
	while IFS= read -r line; do
		case $line in
		"ok "*) pass "${line#ok }" ;;
		"not ok "*) fail "${line#not ok }" ;;
		esac
	done <"$TEST_DIR/shape.txt"
else
	fail "docker-compose.yml resolves" "$(head -c 600 "$TEST_DIR/resolved.yml")"
fi

# --- 3. scripts/compose.sh ---------------------------------------------------
section "scripts/compose.sh, on a copy in $TEST_DIR/repo"
REPO="$TEST_DIR/repo"
mkdir -p "$REPO/scripts" "$REPO/phase3-advanced"
cp scripts/compose.sh "$REPO/scripts/"
cp docker-compose.yml "$REPO/"
cp phase3-advanced/nginx.conf "$REPO/phase3-advanced/"

# compose_sh [VAR=VALUE...] -- ARGS...: runs the copy with JWT_SECRET unset
# and the given variables; keeps its exit status in RC, stdout and stderr
# together in OUT.
compose_sh() {
	local assignments=()
	while [ "$1" != "--" ]; do
		assignments+=("$1")
		shift
	done
	shift
	OUT=$(env -u JWT_SECRET "${assignments[@]}" bash "$REPO/scripts/compose.sh" "$@" 2>&1)
	RC=$?
}

# env_secret: the JWT_SECRET value(s) in the copy's .env, one per line.
env_secret() {
	sed -n 's/^JWT_SECRET=//p' "$REPO/.env" 2>/dev/null
}

step "no Docker engine"
NO_ENGINE="DOCKER_HOST=unix://$TEST_DIR/no-such-docker.sock"
compose_sh "$NO_ENGINE" -- up 1
check_eq "up 1 exits 1" 1 "$RC"
check_match "up 1 says there is no engine and what to run instead" \
	'^compose: no Docker engine: use make up PHASE=1' "$OUT"
compose_sh "$NO_ENGINE" -- down
check_eq "down exits 1" 1 "$RC"
check_match "down says there is no engine" '^compose: no Docker engine: nothing runs in containers' "$OUT"
check_true "nothing wrote a .env" test ! -e "$REPO/.env"

step "usage"
compose_sh -- up 4
check_eq "up 4 exits 2" 2 "$RC"
check_match "up 4 prints the usage" '^usage: scripts/compose.sh up 1\|2\|3' "$OUT"

step ".env"
compose_sh -- env
check_eq "env exits 0" 0 "$RC"
check_match "env says it wrote a new secret" 'wrote a new random JWT_SECRET' "$OUT"
FIRST_SECRET=$(env_secret)
check_match ".env has one JWT_SECRET of 64 hex digits" '^[0-9a-f]{64}$' "$FIRST_SECRET"
check_eq ".env is readable by its owner only" 600 "$(stat -c %a "$REPO/.env" 2>/dev/null)"
check_match ".env says what it is" '^# Made by scripts/compose.sh' "$(head -n 1 "$REPO/.env")"
FIRST_TOKEN=$(sed -n 's/^OPERATOR_TOKEN=//p' "$REPO/.env")
check_match ".env has one OPERATOR_TOKEN of 64 hex digits" '^[0-9a-f]{64}$' "$FIRST_TOKEN"
compose_sh -- env
check_match "a second run keeps it" 'using the JWT_SECRET in .env' "$OUT"
check_eq "the secret is the same" "$FIRST_SECRET" "$(env_secret)"
check_eq "and the operator token" "$FIRST_TOKEN" "$(sed -n 's/^OPERATOR_TOKEN=//p' "$REPO/.env")"
compose_sh JWT_SECRET=from-the-shell -- env
check_match "an exported JWT_SECRET is pointed out" 'JWT_SECRET is set in your environment' "$OUT"

step "plain docker-compose reads .env"
for phase in 1 2 3; do
	if (cd "$REPO" && env -u JWT_SECRET docker-compose --profile "phase$phase" config \
		>"$TEST_DIR/env-phase$phase.yml" 2>"$TEST_DIR/env-phase$phase.err"); then
		check_eq "--profile phase$phase config resolves JWT_SECRET from .env, nothing exported" \
			"$FIRST_SECRET" "$("$COMPOSE_PYTHON" -c 'import sys, yaml
services = yaml.safe_load(open(sys.argv[1]))["services"]
print(services["monolith"]["environment"]["JWT_SECRET"])' "$TEST_DIR/env-phase$phase.yml" 2>&1)"
	else
		fail "--profile phase$phase config resolves JWT_SECRET from .env, nothing exported" \
			"$(head -c 600 "$TEST_DIR/env-phase$phase.err")"
	fi
done
mv "$REPO/.env" "$REPO/.env.kept"
if (cd "$REPO" && env -u JWT_SECRET docker-compose config -q >"$TEST_DIR/no-env.out" 2>&1); then
	fail "without .env, config stops" "it succeeded"
else
	check_match "without .env, config stops and says how to make one" \
		'JWT_SECRET.*is not set: run make compose-up' "$(tr '\n' ' ' <"$TEST_DIR/no-env.out")"
fi

step "a .env of yours"
printf 'COMPOSE_PROJECT_NAME=kit\n' >"$REPO/.env"
compose_sh -- env
check_eq "env exits 0" 0 "$RC"
check_eq "your line stays" "COMPOSE_PROJECT_NAME=kit" "$(head -n 1 "$REPO/.env")"
check_match "a JWT_SECRET is added" '^[0-9a-f]{64}$' "$(env_secret)"
printf 'JWT_SECRET=\n' >"$REPO/.env"
compose_sh -- env
check_eq "an empty JWT_SECRET= line: env exits 1" 1 "$RC"
check_match "... and says which line to fix" 'has a JWT_SECRET line, but not as JWT_SECRET=<value>' "$OUT"
check_eq "... and adds no second line" 1 "$(grep -c JWT_SECRET "$REPO/.env")"
mv "$REPO/.env.kept" "$REPO/.env"

# Stand-ins for the clients: `docker` answers `info` (an engine is there),
# answers `compose version` only when FAKE_PLUGIN=1, and records what else
# it is asked, as `docker-compose` does.
FAKES="$TEST_DIR/fakes"
mkdir -p "$FAKES"
cat >"$FAKES/docker" <<'EOF'
#!/bin/sh
case "$1 ${2:-}" in
"info "*) exit 0 ;;
"compose version") [ "${FAKE_PLUGIN:-0}" = 1 ]; exit $? ;;
esac
echo "docker $*" >>"$FAKE_LOG"
EOF
cat >"$FAKES/docker-compose" <<'EOF'
#!/bin/sh
echo "docker-compose $*" >>"$FAKE_LOG"
EOF
chmod +x "$FAKES/docker" "$FAKES/docker-compose"
FAKE_LOG="$TEST_DIR/fake-clients.log"

step "with the v2 plugin"
: >"$FAKE_LOG"
compose_sh PATH="$FAKES:$PATH" FAKE_PLUGIN=1 FAKE_LOG="$FAKE_LOG" -- up 2
check_eq "up 2 exits 0" 0 "$RC"
check_eq "it runs docker compose --profile phase2 up --build --detach" \
	"docker compose --profile phase2 up --build --detach" "$(cat "$FAKE_LOG")"
check_match "it says where phase 2 answers" 'http://localhost:3000/api/v1' "$OUT"
check_eq "it keeps the secret in .env" "$FIRST_SECRET" "$(env_secret)"
: >"$FAKE_LOG"
compose_sh PATH="$FAKES:$PATH" FAKE_PLUGIN=1 FAKE_LOG="$FAKE_LOG" -- down
check_eq "down exits 0" 0 "$RC"
check_eq "down names every profile" \
	"docker compose --profile phase1 --profile phase2 --profile phase3 down --remove-orphans" \
	"$(cat "$FAKE_LOG")"

step "with docker-compose 1.29 only"
: >"$FAKE_LOG"
compose_sh PATH="$FAKES:$PATH" FAKE_PLUGIN=0 FAKE_LOG="$FAKE_LOG" -- up 3
check_eq "up 3 exits 0" 0 "$RC"
check_eq "it runs docker-compose --profile phase3 up --build --detach" \
	"docker-compose --profile phase3 up --build --detach" "$(cat "$FAKE_LOG")"
check_match "it names Jaeger's UI" 'http://localhost:16686' "$OUT"
step ""

# --- 4. Phase 3's nginx configs ---------------------------------------------
section "nginx configs"
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
