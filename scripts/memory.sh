#!/usr/bin/env bash
# `make memory`: resident memory per million customers. Produces COUNT
# customers to a fresh topic on the local stack (scripts/local-stack.sh),
# replays them into a push-cache with one in-memory store, and once it is
# ready prints the raw bytes of the cached keys and JSON bodies, the
# server's RSS and their ratio; then runs GET_SECONDS of closed-loop GETs of
# random keys and prints the server's CPU time per GET (user + system, from
# /proc), to compare a plain store with a compressed one.
# Env: COUNT (1000000) SHARDS (auto) PORT (8097) MEMORY_OUT (target/memory)
#      COMPRESSION (unset; `zstd` keeps the store's bodies zstd-compressed)
#      GET_SECONDS (10; 0 skips the GETs) BUILD (1; 0 uses target/release as it is)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fresh-server.sh
count=${COUNT:-1000000} out=${MEMORY_OUT:-target/memory} port=${PORT:-8097}
mkdir -p "$out"
rm -f "$out"/*

[ "${BUILD:-1}" = 0 ] || cargo build --release --bin push-cache --bin push-cache-loadgen --example populate_kafka
fresh_topic memory-customers
write_config "$out/config.yaml" "$port" 20
target/release/examples/populate_kafka -c "$out/config.yaml" -m customer -t "$topic" -n "$count" \
  --expect "$out/expected.jsonl" >"$out/populate.log" 2>&1
start_server "$out/config.yaml" "$out/server.log" "$port"
sleep 2 # let the post-catch-up trim run
rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$server/status")
curl -s "http://127.0.0.1:$port/metrics" >"$out/metrics.txt"
python3 - "$out/expected.jsonl" "$rss_kib" "$ready_seconds" "$out/metrics.txt" <<'PY'
import json, sys
path, rss_kib, ready, metrics = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
raw = entries = 0
for line in open(path):
    rec = json.loads(line)
    if rec.get("body") is None:
        continue
    body = json.dumps(rec["body"], separators=(",", ":"), ensure_ascii=False)
    raw += len(rec["key"].encode()) + len(body.encode())
    entries += 1
held = sum(float(l.split()[-1]) for l in open(metrics) if l.startswith("push_cache_store_bytes{"))
rss = rss_kib * 1024
print(f"memory: {entries} customers ready in {ready} s; keys + bodies {raw / 1e6:.1f} MB raw, "
      f"entries {held / 1e6:.1f} MB, RSS {rss / 1e6:.1f} MB = {rss / raw:.2f}x raw "
      f"({(rss - raw) / max(entries, 1):.0f} bytes per entry above raw)")
PY

get_seconds=${GET_SECONDS:-10}
[ "$get_seconds" != 0 ] || exit 0
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
before=$(cpu_ticks)
target/release/push-cache-loadgen --url "http://127.0.0.1:$port/api/customers" --keys-pattern 'acct-{:08}' \
  --keys-count "$count" --connections 32 --duration "$get_seconds" --warmup 0 --json "$out/get.json" >"$out/get.log"
after=$(cpu_ticks)
python3 - "$out/get.json" "$before" "$after" "$(getconf CLK_TCK)" <<'PY'
import json, sys
summary, before, after, tick = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ok = summary["statuses"].get("200", 0)
cpu = (after - before) / tick
print(f"GET: {summary['requests']} requests ({ok} answered 200) in {summary['seconds']:.1f} s; "
      f"server CPU {cpu:.2f} s = {cpu / max(summary['requests'], 1) * 1e6:.2f} us per GET")
PY
