#!/usr/bin/env bash
# tests/compose.sh - validate every compose file in the repository offline.
#
# `docker-compose -f FILE config -q` parses the file, checks it against the
# compose schema and resolves its variables without talking to a Docker
# engine, so it runs here and in CI where there is none. Files that require
# JWT_SECRET (${JWT_SECRET:?...}) get a dummy one. Each file is one check;
# the last line is "N passed, N failed".
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

finish
