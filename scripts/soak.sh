#!/usr/bin/env bash
# `make soak`: minutes of sustained GET load while customers are re-produced,
# updated and deleted, on the local stack (scripts/local-stack.sh). At the end
# it waits for the consumer to catch up and runs push-cache-check: the cache
# must equal the topic's last value per key, no request may fail other than
# 404 for a deleted key, and resident memory must be flat once the key set
# is stable.
# Env: SOAK_SECONDS (300) KEYS (20000) CONNS (32) SOAK_OUT (target/soak)
#      RSS_GROWTH_PCT (10): allowed growth of resident memory from the first
#      samples after warm-up to the last ones (plus 4 MiB of allocator slack).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SOAK_SECONDS:-300} keys=${KEYS:-20000} conns=${CONNS:-32}
out=${SOAK_OUT:-target/soak} growth_pct=${RSS_GROWTH_PCT:-10}
base=http://127.0.0.1:8080
mkdir -p "$out"
rm -f "$out"/*

cargo build --release --bin push-cache --bin push-cache-loadgen --bin push-cache-check --example populate_kafka
bash scripts/local-stack.sh up
if curl -s -o /dev/null "$base/health/live"; then
  echo "something already serves $base: stop it first (make stop)" >&2
  exit 1
fi

populate() { target/release/examples/populate_kafka -c config/local.yaml -m customer -n "$keys" "$@"; }
populate --seed 1 >"$out/populate.log" 2>&1

CAPTURE_LOG=warn target/release/push-cache --config config/local.yaml >"$out/server.log" 2>&1 &
server=$!
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  curl -sf "$base/health/ready" >/dev/null && break
  kill -0 "$server" || { echo "push-cache exited; see $out/server.log" >&2; exit 1; }
  sleep 0.2
done
curl -sf "$base/health/ready" >/dev/null || { echo "push-cache not ready after 120 s" >&2; exit 1; }

rss() { awk '/^VmRSS/ {print $2}' "/proc/$server/status"; }
(while kill -0 "$server" 2>/dev/null; do echo "$SECONDS $(rss)"; sleep 5; done) >"$out/rss.log" &
pids+=($!)

# Ingestion: every round re-produces every key with new values, then updates
# a quarter of them and deletes a twentieth, so the key set stays the same.
(
  round=1 end=$((SECONDS + seconds))
  while [ "$SECONDS" -lt "$end" ]; do
    populate --seed $((round + 1)) --updates $((keys / 4)) --tombstones $((keys / 20)) >>"$out/populate.log" 2>&1
    round=$((round + 1))
    sleep 1
  done
  echo $((round - 1)) >"$out/rounds"
) &
ingest=$!
pids+=("$ingest")

target/release/push-cache-loadgen --url "$base/api/customers" --keys-pattern 'acct-{:08}' --keys-count "$keys" \
  --connections "$conns" --duration "$seconds" --warmup 2 --json "$out/load.json" --hgrm "$out/load.hgrm" | tee "$out/load.txt"
wait "$ingest"

lag() { curl -sf "$base/metrics" | awk '/^push_cache_kafka_lag\{/ {s += $2} END {print s + 0}'; }
for _ in $(seq 1 300); do [ "$(lag)" = 0 ] && break; sleep 0.2; done

set +e
target/release/push-cache-check --config config/local.yaml --url "$base" | tee "$out/check.txt"
check=${PIPESTATUS[0]}
set -e

python3 - "$out" "$growth_pct" "$check" <<'PY'
import json, sys
out, growth_pct, check = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
load = json.load(open(f"{out}/load.json"))
samples = [tuple(map(int, l.split())) for l in open(f"{out}/rss.log") if len(l.split()) == 2]
rounds = open(f"{out}/rounds").read().strip()
failed = {s: n for s, n in load["statuses"].items() if s not in ("200", "404")}
warm = [kib for t, kib in samples if t >= samples[0][0] + 30] or [kib for _, kib in samples]
start, end, peak = sum(warm[:3]) / len(warm[:3]), sum(warm[-3:]) / len(warm[-3:]), max(warm)
print(f"soak: {load['requests']} requests in {load['seconds']:.0f} s ({load['throughput']:.0f} req/s), "
      f"statuses {load['statuses']}, socket errors {load['socket_errors']}, p99 {load['latency_us']['p99']} us")
print(f"soak: {rounds} ingestion rounds; RSS after warm-up {start:.0f} KiB, at the end {end:.0f} KiB, peak {peak} KiB")
problems = []
if failed or load["socket_errors"]:
    problems.append(f"requests failed: {failed}, socket errors {load['socket_errors']}")
if end > start * (1 + growth_pct / 100) + 4096:
    problems.append(f"RSS grew {100 * (end - start) / start:.1f}% after warm-up (limit {growth_pct}% + 4 MiB)")
if check != 0:
    problems.append("push-cache-check found differences (see check.txt)")
print("soak: " + ("FAILED: " + "; ".join(problems) if problems else "passed"))
sys.exit(1 if problems else 0)
PY
