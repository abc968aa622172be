#!/usr/bin/env bash
# tests/exercises/check-10.sh - exercise 10: an alert of your own,
# KitUpstreamInstanceOut (docs/workshop/exercise-10-an-alert.md).
# `make check N=10`. Needs promtool (Debian's prometheus package), no
# running Prometheus: the alert is tested on made-up series.
set -u
# shellcheck source=tests/exercises/lib.sh
source "$(dirname "$0")/lib.sh"
exercise 10 "KitUpstreamInstanceOut: a breaker open for a minute"

step "promtool check rules monitoring/rules.yml"
OUT=$(promtool check rules monitoring/rules.yml 2>&1)
check_eq "the rules file is valid" 0 "$?"
check_match "it has an alert named KitUpstreamInstanceOut" 'KitUpstreamInstanceOut' \
	"$(grep -E '^\s*- alert:' monitoring/rules.yml)"

# Two gateways' view of url-shortener-v1's second instance, every 15 s:
# api-gateway-1 sees it open from 30 s on; api-gateway-2 sees it open for
# 30 s only (a probe put it back), which must not page anyone.
cat >"$TEST_DIR/instance-out.test.yml" <<TEST
rule_files:
  - $PWD/monitoring/rules.yml
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'gateway_upstream_instance_circuit_state{job="gateway",instance="api-gateway-1",upstream="url-shortener-v1",url="http://url-shortener-v1-b:8081"}'
        values: '0 0 2 2 2 2 2 2 2 2 2 2 2'
      - series: 'gateway_upstream_instance_circuit_state{job="gateway",instance="api-gateway-2",upstream="url-shortener-v1",url="http://url-shortener-v1-b:8081"}'
        values: '0 0 2 2 0 0 0 0 0 0 0 0 0'
      - series: 'gateway_upstream_instance_circuit_state{job="gateway",instance="api-gateway-3",upstream="url-shortener-v1",url="http://url-shortener-v1:8081"}'
        values: '0 0 1 1 1 1 1 1 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 1m
        alertname: KitUpstreamInstanceOut
        exp_alerts: []
      - eval_time: 2m30s
        alertname: KitUpstreamInstanceOut
        exp_alerts:
          - exp_labels:
              severity: ticket
              job: gateway
              instance: api-gateway-1
              upstream: url-shortener-v1
              url: http://url-shortener-v1-b:8081
            exp_annotations:
              summary: "api-gateway-1: url-shortener-v1 at http://url-shortener-v1-b:8081 is out of rotation"
TEST
step "promtool test rules: open for 2 min fires, 30 s or half open does not"
OUT=$(promtool test rules "$TEST_DIR/instance-out.test.yml" 2>&1)
STATUS=$?
printf '%s\n' "$OUT" | grep -v '^$' | sed 's/^/#   /' | head -n 30
check_eq "promtool test rules passes (severity ticket; the summary names the gateway, the upstream and the url)" 0 "$STATUS"
step "the kit's own rule tests still pass (monitoring/rules.test.yml)"
check_true "promtool test rules monitoring/rules.test.yml" \
	bash -c 'cd monitoring && promtool test rules rules.test.yml >/dev/null 2>&1'

verdict
