#!/usr/bin/env bash
# Software counters of a running Push Cache over one wrk run: `perf stat` of
# task-clock, context switches, CPU migrations and page faults for the server
# process while wrk (scripts/wrk/random-keys.lua, pinned to CLIENT_CPU) GETs
# random keys; then wrk's requests/s and the server's task-clock per request.
# Usage: perf/stat.sh [ROUTE]
# Env: PID (default: the only running `push-cache`), BASE_URL (http://127.0.0.1:8080),
#      ROUTE (/api/customers), DURATION (10s), CONNS (64), CLIENT_CPU (1),
#      KEYS_FILE (keys, one a line; default: sampled from the list endpoint), SAMPLE (10000).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
base=${BASE_URL:-http://127.0.0.1:8080}; route=${1:-${ROUTE:-/api/customers}}
dur=${DURATION:-10s}; conns=${CONNS:-64}; cpu=${CLIENT_CPU:-1}
events=task-clock,context-switches,cpu-migrations,page-faults

die() { echo "perf/stat.sh: $*" >&2; exit 1; }
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

tmp=$(mktemp -d); perf_pid=""
cleanup() { [ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
keys=${KEYS_FILE:-}
if [ -z "$keys" ]; then
  keys=$tmp/keys
  curl -sf "$base$route?limit=${SAMPLE:-10000}" >"$tmp/list.json" \
    || die "cannot list keys at $base$route (is the server at BASE_URL, and is ROUTE a configured route?)"
  python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))))' "$tmp/list.json" >"$keys" 2>/dev/null \
    || die "$base$route did not answer a JSON list of keys: $(head -c 200 "$tmp/list.json")"
  [ "$(grep -c . "$keys" || true)" -gt 0 ] || die "no keys under $base$route: load some data first"
fi

echo "perf stat: pid $PID ($events), wrk on CPU $cpu: $base$route, $conns connections, $dur"
# Software events only: these VMs expose no hardware counters (cycles, instructions).
taskset -c "$cpu" perf stat -x, -e "$events" -p "$PID" -o "$tmp/stat.csv" 2>"$tmp/perf.log" &
perf_pid=$!
sleep 0.3
kill -0 "$perf_pid" 2>/dev/null || { cat "$tmp/perf.log" >&2; die "perf stat did not start"; }
KEYS_FILE=$keys ROUTE=$route taskset -c "$cpu" wrk -t1 -c"$conns" -d"$dur" -s "$repo/scripts/wrk/random-keys.lua" "$base" | tee "$tmp/wrk.out"
kill -INT "$perf_pid"; wait "$perf_pid" || true; perf_pid=""

rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.out")
reqs=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
[ -n "$reqs" ] && [ "$reqs" -gt 0 ] || die "wrk reported no requests"
grep -q ',task-clock' "$tmp/stat.csv" || { cat "$tmp/stat.csv" "$tmp/perf.log" >&2; die "perf stat reported no task-clock"; }
echo "------------------------------"
echo "server pid $PID while wrk ran (perf stat spans wrk's run plus ~0.3 s of idle lead-in):"
# CSV lines: value,unit,event,run time,percent,metric,metric unit
awk -F, -v reqs="$reqs" -v rps="$rps" '
  /^#/ || NF < 3 { next }
  { v[$3] = $1; printf "  %-17s %14s %s\n", $3, $1, $2 }
  END {
    printf "wrk requests/s      %14s\n", rps
    if (v["task-clock"] != "" && v["task-clock"] !~ /not/) {
      printf "task-clock/request  %14.2f us\n", v["task-clock"] * 1000 / reqs
      printf "ctx switches/request %13.3f\n", v["context-switches"] / reqs
    }
  }' "$tmp/stat.csv"
