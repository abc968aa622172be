#!/usr/bin/env bash
# scripts/nginx-native-conf.sh PREFIX_DIR LISTEN_PORT GATEWAY_PORT... - write
# the native nginx config for Phase 3 into PREFIX_DIR/nginx.conf.
#
# It fills in phase3-advanced/nginx.native.conf.template: nginx listens on
# 127.0.0.1:LISTEN_PORT and balances over 127.0.0.1:GATEWAY_PORT for each
# port given. It also makes the directories the config names inside
# PREFIX_DIR (logs/, temp/). Then start nginx with
#
#   nginx -p PREFIX_DIR -c nginx.conf -e logs/error.log -g 'daemon off;'
#
# scripts/up.sh (PHASE=3: .run/nginx, port 8000, gateways 3001-3003) and
# tests/lib.sh's start_nginx (a temporary directory, free ports) both use
# it, so there is one native config. Exits 2 on bad arguments.
set -euo pipefail

if [ $# -lt 3 ]; then
	echo "usage: $0 PREFIX_DIR LISTEN_PORT GATEWAY_PORT..." >&2
	exit 2
fi
PREFIX_DIR=$1
LISTEN_PORT=$2
shift 2
for port in "$LISTEN_PORT" "$@"; do
	if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
		echo "$0: '$port' is not a port" >&2
		exit 2
	fi
done
TEMPLATE="$(cd "$(dirname "$0")/.." && pwd)/phase3-advanced/nginx.native.conf.template"

# The gateways, one `server` line each (nginx indentation).
servers=""
for port in "$@"; do
	servers+="        server 127.0.0.1:$port max_fails=2 fail_timeout=5s;"$'\n'
done
servers=${servers%$'\n'}

# Only a root master switches its workers to another user; then make it
# this user, who owns the prefix directory. Otherwise no line at all.
user_line="# (not root: nginx runs as $(id -un), no \`user\` directive)"
if [ "$(id -u)" -eq 0 ]; then
	user_line="user $(id -un) $(id -gn);"
fi

mkdir -p "$PREFIX_DIR/logs" "$PREFIX_DIR/temp"
# awk, not sed: the values are inserted literally, whatever they contain.
awk -v listen="$LISTEN_PORT" -v servers="$servers" -v user_line="$user_line" '
	$0 == "@USER_LINE@"       { print user_line; next }
	$0 == "@GATEWAY_SERVERS@" { print servers; next }
	{ gsub(/@LISTEN_PORT@/, listen); print }' \
	"$TEMPLATE" >"$PREFIX_DIR/nginx.conf"
