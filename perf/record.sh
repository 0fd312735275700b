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
command -v perf >/dev/null || die "perf is missing: apt-get install linux-perf"
perf --version >/dev/null 2>&1 || die "perf does not run here ($(perf --version 2>&1 | head -1)); install the linux-perf package matching the kernel"
command -v wrk >/dev/null || die "wrk is missing: apt-get install wrk"
command -v taskset >/dev/null || die "taskset is missing: apt-get install util-linux"

if [ -z "${PID:-}" ]; then
  pids=$(pgrep -x push-cache || true)
  [ -n "$pids" ] || die "no running push-cache found; start one (cargo build --release; target/release/push-cache --config ...) or set PID"
  [ "$(wc -w <<<"$pids")" -eq 1 ] || die "several push-cache processes run ($(echo $pids)); choose one with PID=..."
  PID=$pids
fi
[ -d "/proc/$PID" ] || die "no process with PID $PID"

mkdir -p "$out"; [ -e "$out/.gitignore" ] || echo '*' >"$out/.gitignore"
keys=${KEYS_FILE:-}
tmp=$(mktemp -d); perf_pid=""
cleanup() { [ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
if [ -z "$keys" ]; then
  keys=$tmp/keys
  curl -sf "$base$route?limit=${SAMPLE:-10000}" >"$tmp/list.json" \
    || die "cannot list keys at $base$route (is the server at BASE_URL, and is ROUTE a configured route?)"
  python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))))' "$tmp/list.json" >"$keys" 2>/dev/null \
    || die "$base$route did not answer a JSON list of keys: $(head -c 200 "$tmp/list.json")"
  [ "$(grep -c . "$keys" || true)" -gt 0 ] || die "no keys under $base$route: load some data first"
fi

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
