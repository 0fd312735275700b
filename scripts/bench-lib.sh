# Shared by the bench scripts (bench-compare.sh, bench-shards.sh): sourced,
# never run. The sourcing script sets `bench_name` (for messages) before
# sourcing and `tmp` (its scratch directory) after; it appends the PIDs of
# what it starts to `started`, and sets `compare_pid` while compare.sh runs.
# Everything started is stopped, and `tmp` removed, on exit or interrupt.

started=(); compare_pid=""; tmp=""

die() { echo "$bench_name: $*" >&2; exit 1; }

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

kill_tree() { local c; for c in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$c"; done; kill -TERM "$1" 2>/dev/null || true; }

stop_all() {
  local p
  [ -n "$compare_pid" ] && kill_tree "$compare_pid" # interrupted mid-run: compare.sh and its wrk
  for p in "${started[@]}"; do kill_tree "$p"; done
  for p in "${started[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -z "$tmp" ] || rm -rf "$tmp"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

wait_port() { # port, pid, name, log
  local i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$2" 2>/dev/null || { cat "$4" >&2; die "$3 exited during start-up (log above)"; }
    port_busy "$1" && return 0
    sleep 0.1
  done
  die "$3 did not listen on port $1 within 60 s (log: $4)"
}
