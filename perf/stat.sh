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
tmp=$(mktemp -d); perf_pid=""
cleanup() { [ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
. "$here/common.sh"

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
