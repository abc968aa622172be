#!/usr/bin/env bash
# tests/monitoring.sh - the kit's Prometheus rules and configs, offline:
#   - monitoring/rules.yml passes `promtool check rules`, and its unit tests
#     (monitoring/rules.test.yml: made-up series, the values each recording
#     rule must give and when each alert must fire) pass `promtool test
#     rules`;
#   - the config `make up PHASE=2|3` writes (scripts/prometheus-native-conf.sh)
#     and the two compose configs pass `promtool check config`, and the
#     native one names every gateway and service of its phase.
# That Prometheus really scrapes every instance of a running phase is
# tests/workshop.sh's (it runs `make up PHASE=2` and `PHASE=3`).
#
# Every check prints "ok - ..." or "not ok - ..."; the last line is "N
# passed, N failed".
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

echo "# monitoring: Prometheus rules and configs (promtool)"

section "prerequisites"
check_true "promtool is installed (scripts/deps.sh test)" command -v promtool

section "the rules"
OUT=$(promtool check rules monitoring/rules.yml 2>&1)
check_eq "promtool check rules monitoring/rules.yml" 0 "$?"
check_match "six rules: three recorded, three alerts" 'SUCCESS: 6 rules found' "$OUT"
OUT=$(cd monitoring && promtool test rules rules.test.yml 2>&1)
check_eq "promtool test rules monitoring/rules.test.yml" 0 "$?"
echo "$OUT" | grep -v '^$' | sed 's/^/#   /' | head -n 20

section "the configs"
for phase in 2 3; do
	case $phase in
	2) targets=(gateway=3000 users=8083 analytics=8082 notifications=8087 url-shortener=8081) ;;
	3) targets=(users=8083 analytics=8082 notifications=8087 url-shortener=8081 url-shortener-b=8086 url-shortener-v2=8084
		url-shortener-v2-canary=8085 api-gateway-1=3001 api-gateway-2=3002 api-gateway-3=3003) ;;
	esac
	conf="$TEST_DIR/native-phase$phase.yml"
	bash scripts/prometheus-native-conf.sh "$conf" "$PWD/monitoring/rules.yml" "${targets[@]}"
	check_eq "prometheus-native-conf.sh writes Phase $phase's config" 0 "$?"
	OUT=$(promtool check config "$conf" 2>&1)
	check_eq "promtool check config: Phase $phase natively, with the rules" 0 "$?"
	names=$(sed -n "s/.*labels: {instance: '\\([a-z0-9-]*\\)'}.*/\\1/p" "$conf" | sort | tr '\n' ' ')
	wanted=$(printf '%s\n' "${targets[@]%%=*}" | sort | tr '\n' ' ')
	check_eq "Phase $phase's native config scrapes every gateway and service by name" "$wanted" "$names"
	OUT=$(promtool check config --syntax-only "monitoring/prometheus-phase$phase.yml" 2>&1)
	check_eq "promtool check config: compose's monitoring/prometheus-phase$phase.yml" 0 "$?"
done
bash scripts/prometheus-native-conf.sh "$TEST_DIR/bad.yml" rules.yml gateway=notaport 2>/dev/null
check_eq "a target that is not NAME=PORT is refused" 2 "$?"

finish
