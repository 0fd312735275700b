#!/usr/bin/env bash
# The measurements behind docs/tuning.md: one push-cache per tuning variant,
# all running at once (an idle server sleeps), each holding the same KEYS
# customers, then
#   1. closed-loop GET throughput and server CPU per request: the peers'
#      compare.sh (wrk -t1 pinned to CLIENT_CPU), variants interleaved round
#      by round, so the machine's noise falls on all of them alike;
#   2. open-loop latency at RATE req/s (push-cache-loadgen on CLIENT_CPU,
#      corrected for coordinated omission), variants interleaved, ROUNDS each,
#      with the server's CPU use over the run.
# Variants: pinned (one shard, runtime.cores [SERVER_CPU], process on that
# CPU), unpinned (one shard, no pinning anywhere), spin (pinned +
# spin_before_park_us SPIN_US), hugepages (pinned + glibc's malloc on
# transparent huge pages).
# Env: KEYS (100000), ROUNDS (3), DURATION (5s), CONNS (64), RATE (5000),
#      SERVER_CPU (0), CLIENT_CPU (1), SPIN_US (100), BASE_PORT (8093),
#      PEERS_DIR (../shared/peers), SKIP_BUILD (1: use target/release as is).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
peers=$(cd "${PEERS_DIR:-$repo/../shared/peers}" 2>/dev/null && pwd) \
  || { echo "tuning-compare: no peers directory (set PEERS_DIR)" >&2; exit 1; }
keys=${KEYS:-100000}; rounds=${ROUNDS:-3}; rate=${RATE:-5000}
server_cpu=${SERVER_CPU:-0}; client_cpu=${CLIENT_CPU:-1}; spin_us=${SPIN_US:-100}; base=${BASE_PORT:-8093}
export ROUNDS=$rounds DURATION=${DURATION:-5s} CONNS=${CONNS:-64} CLIENT_CPU=$client_cpu KEYS=$keys
die() { echo "tuning-compare: $*" >&2; exit 1; }
for tool in wrk taskset bc curl python3; do command -v "$tool" >/dev/null || die "$tool is missing"; done
[ -n "${SKIP_BUILD:-}" ] || (cd "$repo" && cargo build --release --bin push-cache --bin push-cache-loadgen)
bin=$repo/target/release/push-cache; loadgen=$repo/target/release/push-cache-loadgen

tmp=$(mktemp -d /tmp/tuning-compare.XXXXXX)
pids=()
stop_all() { local p; for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap stop_all EXIT
trap 'exit 130' INT TERM

# name port runtime-yaml taskset-cpus env...
start() {
  local name=$1 port=$2 runtime=$3 cpus=$4; shift 4
  cat >"$tmp/$name.yaml" <<YAML
webservice: {address: 127.0.0.1:$port}
kafka: {brokers: '127.0.0.1:1', group_id: tuning, topic: customers, schema_registry_url: 'http://127.0.0.1:1'}
cache:
  stores: [{name: customers, type: in_memory}]
  routes: [{path: /users, store: customers}]
runtime: $runtime
YAML
  env "$@" taskset -c "$cpus" "$bin" --config "$tmp/$name.yaml" --secrets "$tmp/none" >"$tmp/$name.log" 2>&1 &
  pids+=($!); eval "pid_$name=$!"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/health/live" >/dev/null || { cat "$tmp/$name.log"; die "$name did not start"; }
  taskset -c "$client_cpu" python3 - "$port" "$keys" <<'PY'
import json, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
def body(i):
    return json.dumps({"accountId": f"acct-{i:08d}", "name": f"Customer Name {i}",
                       "address": f"{i} Long Street, Some Town, AB1 2CD", "phone": "+44 20 7946 0000",
                       "createdAt": 1700000000000 + i, "updatedAt": 1700000500000 + i}, separators=(",", ":")).encode()
buf = b""
for start in range(0, n, 256):
    batch = [body(i) for i in range(start, min(n, start + 256))]
    post = b"POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
    s.sendall(b"".join(post % (len(b), b) for b in batch))
    for _ in batch:
        while b"\r\n\r\n" not in buf:
            buf += s.recv(1 << 16)
        head, _, buf = buf.partition(b"\r\n\r\n")
        if head.split(b" ", 2)[1] not in (b"201", b"409"):
            sys.exit(f"unexpected answer {head!r}")
        lines = head.split(b"\r\n")[1:]
        length = next(int(l.split(b":", 1)[1]) for l in lines if l.lower().startswith(b"content-length:"))
        while len(buf) < length:
            buf += s.recv(1 << 16)
        buf = buf[length:]
PY
}

pinned="{shards: 1, cores: [$server_cpu]}"
start pinned $base "$pinned" "$server_cpu"
start unpinned $((base + 1)) "{shards: 1}" "0-$(($(nproc) - 1))"
start spin $((base + 2)) "{shards: 1, cores: [$server_cpu], spin_before_park_us: $spin_us}" "$server_cpu"
start hugepages $((base + 3)) "$pinned" "$server_cpu" GLIBC_TUNABLES=glibc.malloc.hugetlb=1
echo "4 servers, $keys customers each; thp: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
for name in pinned hugepages; do
  eval "p=\$pid_$name"
  echo "$name: $(grep -E 'AnonHugePages|Rss:' /proc/$p/smaps_rollup | tr -s ' ' | tr '\n' ' ')"
done

echo "== closed loop: wrk -t1 -c$CONNS on CPU $client_cpu, $ROUNDS rounds of $DURATION, interleaved"
bash "$peers/compare.sh" \
  "pinned=http://127.0.0.1:$base/api/users@$pid_pinned" \
  "unpinned=http://127.0.0.1:$((base + 1))/api/users@$pid_unpinned" \
  "spin=http://127.0.0.1:$((base + 2))/api/users@$pid_spin" \
  "hugepages=http://127.0.0.1:$((base + 3))/api/users@$pid_hugepages"

echo "== open loop at $rate req/s: push-cache-loadgen on CPU $client_cpu, $rounds rounds of 5 s, interleaved"
tck=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for ((r = 0; r < rounds; r++)); do
  for name in pinned unpinned spin; do
    case $name in pinned) port=$base;; unpinned) port=$((base + 1));; spin) port=$((base + 2));; esac
    eval "p=\$pid_$name"
    c0=$(ticks "$p")
    taskset -c "$client_cpu" "$loadgen" --url "http://127.0.0.1:$port/api/users" --cpus "$client_cpu" \
      --keys-count "$keys" --connections 16 --warmup 1 --duration 5 --rate "$rate" --json "$tmp/$name.json" >/dev/null
    c1=$(ticks "$p")
    python3 - "$name" "$tmp/$name.json" "$(echo "($c1 - $c0) * 100 / $tck / 6" | bc -l)" <<'PY'
import json, sys
name, path, cpu = sys.argv[1], sys.argv[2], float(sys.argv[3])
j = json.load(open(path))
lat = j["latency_us"]
print(f"{name:10} p50 {lat['p50']} us  p99 {lat['p99']} us  p99.9 {lat['p99_9']} us"
      f"  achieved {j['throughput']:.0f} req/s  server cpu {cpu:.0f}%")
PY
  done
done
