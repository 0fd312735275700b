#!/usr/bin/env bash
# CPU profile of a running Push Cache under load: wrk (scripts/wrk/random-keys.lua,
# pinned to CLIENT_CPU) GETs random keys for DURATION while `perf record` samples
# the server process on the software cpu-clock event (these VMs expose no
# hardware counters). Writes perf/out/perf.data, and perf/out/flamegraph.svg
# when inferno is installed; otherwise prints the top of `perf report`.
# Usage: perf/record.sh [ROUTE]
# Env: PID (default: the only running `push-cache`), BASE_URL (http://127.0.0.1:8080),
#      ROUTE (/api/customers), DURATION (10s), CONNS (64), CLIENT_CPU (1), FREQ (999),
#      CALL_GRAPH (fp; `dwarf` for better stacks, bigger files), KEYS_FILE (keys, one
#      a line; default: sampled from the list endpoint), SAMPLE (10000), TOP (40), OUT (perf/out).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
base=${BASE_URL:-http://127.0.0.1:8080}; route=${1:-${ROUTE:-/api/customers}}
dur=${DURATION:-10s}; conns=${CONNS:-64}; cpu=${CLIENT_CPU:-1}; freq=${FREQ:-999}
out=${OUT:-$here/out}

die() { echo "perf/record.sh: $*" >&2; exit 1; }
mkdir -p "$out"; [ -e "$out/.gitignore" ] || echo '*' >"$out/.gitignore"
tmp=$(mktemp -d); perf_pid=""
cleanup() { [ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
. "$here/common.sh"

graph=(-g); [ -n "${CALL_GRAPH:-}" ] && graph=(--call-graph "$CALL_GRAPH")
echo "perf record: pid $PID (cpu-clock, ${freq} Hz, ${graph[*]}), wrk on CPU $cpu: $base$route, $conns connections, $dur"
# perf's own user-space work stays on the client CPU, away from the server's.
taskset -c "$cpu" perf record -e cpu-clock -F "$freq" "${graph[@]}" -p "$PID" -o "$out/perf.data" 2>"$tmp/perf.log" &
perf_pid=$!
sleep 0.5
kill -0 "$perf_pid" 2>/dev/null || { cat "$tmp/perf.log" >&2; die "perf record did not start"; }
KEYS_FILE=$keys ROUTE=$route taskset -c "$cpu" wrk -t1 -c"$conns" -d"$dur" -s "$repo/scripts/wrk/random-keys.lua" "$base"
kill -INT "$perf_pid"; wait "$perf_pid" || true; perf_pid=""
grep -v '^\[ perf record: Woken up' "$tmp/perf.log" >&2 || true
[ -s "$out/perf.data" ] || die "perf wrote no samples to $out/perf.data"

if command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; then
  perf script -i "$out/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph --title "push-cache $route (pid $PID)" >"$out/flamegraph.svg"
  echo "flame graph: $out/flamegraph.svg (raw samples: $out/perf.data)"
else
  perf report -i "$out/perf.data" --stdio --no-children -g none --sort dso,symbol 2>/dev/null \
    | awk -v top="${TOP:-40}" '/^ +[0-9.]+%/ && n++ < top { sub(/[ -]+$/, ""); print substr($0, 1, 150) }'
  echo
  echo "for a flame graph install inferno (cargo install inferno) and run again;"
  echo "full report: perf report -i $out/perf.data"
fi
