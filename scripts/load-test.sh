#!/usr/bin/env bash
# Load test a running Push Cache with wrk: samples real keys from the list
# endpoint, then GETs random ones and prints percentiles.
# Env: BASE_URL (default http://127.0.0.1:8080), ROUTE (/api/customers),
#      DURATION (10s), CONNS (64), THREADS (1), SCRIPT (random-keys|conditional|pipelined),
#      SAMPLE (keys to sample, 10000), CLIENT_CPU (pin wrk with taskset when set).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
base=${BASE_URL:-http://127.0.0.1:8080}; route=${ROUTE:-/api/customers}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
keys=$(mktemp); trap 'rm -f "$keys"' EXIT
curl -sf "$base$route?limit=${SAMPLE:-10000}" | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)))' >"$keys"
n=$(grep -c . "$keys" || true)
[ "$n" -gt 0 ] || { echo "no keys under $base$route: load some data first (make populate-customers)" >&2; exit 1; }
echo "load test: $base$route, $n sampled keys, ${CONNS:-64} connections, ${DURATION:-10s}"
pin=(); [ -n "${CLIENT_CPU:-}" ] && pin=(taskset -c "$CLIENT_CPU")
KEYS_FILE=$keys ROUTE=$route "${pin[@]}" wrk -t"${THREADS:-1}" -c"${CONNS:-64}" -d"${DURATION:-10s}" \
  -s "$here/wrk/${SCRIPT:-random-keys}.lua" "$base"
