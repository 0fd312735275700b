#!/usr/bin/env bash
# `make restart`: a cold start (replaying the topic) against a warm restart
# (loading the snapshot written at SIGTERM). Produces COUNT customers to a
# fresh topic on the local stack (scripts/local-stack.sh), starts a
# push-cache with snapshots on and times it to ready, stops it with SIGTERM
# (which writes the snapshot), produces DOWN records while it is down (new
# values for existing keys, updates and tombstones), starts it again and
# times it to ready, checks with push-cache-check that it serves exactly
# the topic, and prints both times, their ratio, the snapshot's size, write
# time, longest shard stall and load rate.
# Env: COUNT (1000000) DOWN (COUNT/500, at least 20) SHARDS (auto) PORT (8098)
#      RESTART_OUT (target/restart) PROFILE (release; `debug` uses target/debug without building)
#      BUILD (1; 0 uses target/release as it is) COMPRESSION (unset; `zstd`) INDEX (partitioned; `replicated`)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fresh-server.sh
count=${COUNT:-1000000} down=${DOWN:-$(( ${COUNT:-1000000} / 500 > 20 ? ${COUNT:-1000000} / 500 : 20 ))} out=${RESTART_OUT:-target/restart} port=${PORT:-8098} profile=${PROFILE:-release}
mkdir -p "$out"
rm -rf "${out:?}"/*

[ "$profile" != release ] || [ "${BUILD:-1}" = 0 ] || cargo build --release --bin push-cache --bin push-cache-check --example populate_kafka
fresh_topic restart-customers
write_config "$out/config.yaml" "$port" 20
cp "$out/config.yaml" "$out/server.yaml"
echo "snapshot: {dir: \"$out/snapshots\", interval_seconds: 3600}" >>"$out/server.yaml"
target/$profile/examples/populate_kafka -c "$out/config.yaml" -m customer -t "$topic" -n "$count" \
  >"$out/populate.log" 2>&1

server=
trap '[ -z "$server" ] || kill "$server" 2>/dev/null || true' EXIT
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Starts the server and sets $server and $ready_ms (time to /health/ready).
start_timed() { # log
  local t0
  t0=$(now_ms)
  CAPTURE_LOG=warn,push_cache::runtime::snapshot=info "target/$profile/push-cache" --config "$out/server.yaml" \
    >"$1" 2>&1 &
  server=$!
  until curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null; do
    kill -0 "$server" 2>/dev/null || { echo "push-cache exited; see $1" >&2; exit 1; }
    [ $(($(now_ms) - t0)) -lt 900000 ] || { echo "push-cache not ready after 900 s" >&2; exit 1; }
    sleep 0.02
  done
  ready_ms=$(($(now_ms) - t0))
}

entries() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^push_cache_store_entries/ {n += $2} END {print n + 0}'; }
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" 'index($0, m) == 1 {print $2}'; }

start_timed "$out/cold.log"
cold_ms=$ready_ms cold_entries=$(entries)
[ "$(metric 'push_cache_start_mode{mode="replay"}')" = 1 ] || { echo "the cold start did not replay" >&2; exit 1; }
t0=$(now_ms)
kill -TERM "$server"
wait "$server" || { echo "push-cache exited non-zero on SIGTERM; see $out/cold.log" >&2; exit 1; }
stop_ms=$(($(now_ms) - t0)) server=
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
written=$(plain "$out/cold.log" | grep 'snapshot written' | tail -1)
[ -n "$written" ] || { echo "no snapshot written at SIGTERM; see $out/cold.log" >&2; exit 1; }

# While it is down: new values for the first DOWN keys, DOWN/4 updates and DOWN/8 tombstones among them.
target/$profile/examples/populate_kafka -c "$out/config.yaml" -m customer -t "$topic" -n "$down" --seed 2 \
  --updates $((down / 4)) --tombstones $((down / 8)) >"$out/populate-down.log" 2>&1

start_timed "$out/warm.log"
warm_ms=$ready_ms warm_entries=$(entries)
fail() { echo "$1" >&2; exit 1; }
snapshot_mode=$(metric 'push_cache_start_mode{mode="snapshot"}')
[ "$snapshot_mode" = 1 ] || fail "the warm start did not use the snapshot; see $out/warm.log"
loaded=$(plain "$out/warm.log" | grep 'started from the snapshot' | tail -1)
"target/$profile/push-cache-check" --config "$out/server.yaml" --url "http://127.0.0.1:$port" \
  >"$out/check.log" 2>&1 || fail "push-cache-check found differences after the warm start; see $out/check.log"

field() { sed -n "s/.*$1=\([0-9.\"]*\).*/\1/p" <<<"$2" | tr -d '"'; }
python3 - "$count" "$cold_ms" "$warm_ms" "$stop_ms" "$cold_entries" "$down" "$warm_entries" \
  "$(field bytes "$written")" "$(field elapsed_ms "$written")" "$(field longest_stall_us "$written")" \
  "$(field pin_us "$written")" "$(field elapsed_ms "$loaded")" "$(field mb_per_s "$loaded")" <<'PY'
import sys
count, cold, warm, stop, entries, down, warm_entries, snap_bytes, write_ms, stall_us, pin_us, load_ms, mb_s = sys.argv[1:]
cold, warm = int(cold), int(warm)
print(f"restart: {count} customers ({entries} entries)")
print(f"  cold start (replay) to ready: {cold / 1000:.2f} s")
print(f"  stop with SIGTERM: {int(stop) / 1000:.2f} s, of which writing the snapshot {int(write_ms) / 1000:.2f} s "
      f"({int(snap_bytes) / 1e6:.1f} MB; longest shard stall {int(stall_us) / 1000:.2f} ms, "
      f"of which the point-in-time pin {int(pin_us) / 1000:.2f} ms)")
print(f"  while down: {down} records, {int(down) // 4} updates, {int(down) // 8} tombstones produced")
print(f"  warm start (snapshot) to ready: {warm / 1000:.2f} s (loading {int(load_ms) / 1000:.2f} s at {mb_s} MB/s); "
      f"{warm_entries} entries, push-cache-check: 0 differences")
print(f"  warm / cold = {warm / cold:.3f} (target <= 0.15)")
PY
