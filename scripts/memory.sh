#!/usr/bin/env bash
# `make memory`: resident memory per million customers. Produces COUNT
# customers to a fresh topic on the local stack (scripts/local-stack.sh),
# replays them into a push-cache with one in-memory store, and once it is
# ready prints the raw bytes of the cached keys and JSON bodies, the
# server's RSS and their ratio.
# Env: COUNT (1000000) SHARDS (auto) MEMORY_OUT (target/memory)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-1000000} shards=${SHARDS:-auto} out=${MEMORY_OUT:-target/memory}
topic="memory-customers-$(date +%s)" port=${PORT:-8097}
mkdir -p "$out"
rm -f "$out"/*

cargo build --release --bin push-cache --example populate_kafka
bash scripts/local-stack.sh up
TOPICS=$topic bash scripts/local-stack.sh up
cat >"$out/config.yaml" <<YAML
webservice: {address: "127.0.0.1:$port", prefix: /api}
kafka:
  brokers: localhost:9092
  group_id: push-cache-memory
  topic: [$topic]
  schema_registry_url: http://localhost:8081
cache:
  stores: [{name: customers, type: in_memory, schemas: [customer]}]
  routes: [{path: /customers, store: customers}]
runtime: {shards: $shards}
YAML
target/release/examples/populate_kafka -c "$out/config.yaml" -m customer -t "$topic" -n "$count" \
  --expect "$out/expected.jsonl" >"$out/populate.log" 2>&1

start=$SECONDS
CAPTURE_LOG=warn target/release/push-cache --config "$out/config.yaml" >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null; do
  kill -0 "$server" || { echo "push-cache exited; see $out/server.log" >&2; exit 1; }
  [ $((SECONDS - start)) -lt 600 ] || { echo "push-cache not ready after 600 s" >&2; exit 1; }
  sleep 0.2
done
ready=$((SECONDS - start))
sleep 2 # let the post-catch-up trim run
rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$server/status")
curl -s "http://127.0.0.1:$port/metrics" >"$out/metrics.txt"
python3 - "$out/expected.jsonl" "$rss_kib" "$count" "$ready" "$out/metrics.txt" <<'PY'
import json, sys
path, rss_kib, count, ready, metrics = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
raw = entries = 0
for line in open(path):
    rec = json.loads(line)
    if rec.get("body") is None:
        continue
    body = json.dumps(rec["body"], separators=(",", ":"), ensure_ascii=False)
    raw += len(rec["key"].encode()) + len(body.encode())
    entries += 1
held = sum(float(l.split()[-1]) for l in open(metrics) if l.startswith("push_cache_store_bytes"))
rss = rss_kib * 1024
print(f"memory: {entries} customers ready in {ready} s; keys + bodies {raw / 1e6:.1f} MB raw, "
      f"entries {held / 1e6:.1f} MB, RSS {rss / 1e6:.1f} MB = {rss / raw:.2f}x raw "
      f"({(rss - raw) / max(entries, 1):.0f} bytes per entry above raw)")
PY
