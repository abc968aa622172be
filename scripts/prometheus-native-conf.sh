#!/usr/bin/env bash
# scripts/prometheus-native-conf.sh OUT RULES NAME=PORT... - the config of
# the Prometheus `make up PHASE=2|3` runs (scripts/lib/processes.sh,
# start_prometheus): every NAME=PORT is a kit process on 127.0.0.1 whose
# /metrics is scraped every 5 s, its "instance" label its name (so a graph
# says "api-gateway-2", not a port), its "job" label "gateway" for the
# gateways and "services" for the rest; RULES is monitoring/rules.yml.
# Writes OUT; prints nothing. The compose profiles have configs of their
# own (monitoring/prometheus-phase2.yml, -phase3.yml), with the same rules.
set -euo pipefail

if [ $# -lt 3 ]; then
	echo "usage: scripts/prometheus-native-conf.sh OUT RULES NAME=PORT..." >&2
	exit 2
fi
out=$1 rules=$2
shift 2

{
	echo "# Written by scripts/prometheus-native-conf.sh for \`make up\`; changes are lost."
	echo "global:"
	echo "  scrape_interval: 5s"
	echo "  evaluation_interval: 5s"
	echo "rule_files:"
	echo "  - $rules"
	echo "scrape_configs:"
	for job in gateway services; do
		echo "  - job_name: $job"
		echo "    static_configs:"
		for pair in "$@"; do
			name=${pair%%=*} port=${pair#*=}
			if ! [[ $port =~ ^[0-9]+$ ]]; then
				echo "prometheus-native-conf.sh: '$pair' is not NAME=PORT" >&2
				exit 2
			fi
			case $name in gateway | api-gateway-*) this=gateway ;; *) this=services ;; esac
			[ "$this" = "$job" ] || continue
			echo "      - targets: ['127.0.0.1:$port']"
			echo "        labels: {instance: '$name'}"
		done
	done
} >"$out.new"
mv "$out.new" "$out"
