#!/usr/bin/env bash
# What cross-shard forwarding costs: one Push Cache with two shards (one per
# CPU, each owning half the keys and forwarding the rest over the mesh), one
# with two shards and `runtime.index: replicated` (each indexing every key,
# nothing forwarded), against two independent single-shard Push Caches holding every key, each
# pinned to one of the same CPUs and listening on one port together
# (SO_REUSEPORT spreads connections over them as over the two shards).
# Both hold the same KEYS customers; the peers' compare.sh runs wrk (on
# CLIENT_CPUS, beside the servers) against each in turn, interleaved, and
# prints req/s and server CPU per GET (the replicas' CPU is summed).
# Env: PEERS_DIR (../shared/peers), CPUS (0,1), CLIENT_CPUS (0-1), KEYS (100000),
#      SHARDS_PORT (8092), REPLICAS_PORT (8093), REPLICATED_PORT (8094), ROUNDS (5), DURATION (5s), CONNS (64),
#      SCRIPT (compare.sh's), SKIP_BUILD (1: use the binary already built),
#      PUSH_CACHE_BIN (target/release/push-cache).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
peers=$(cd "${PEERS_DIR:-$repo/../shared/peers}" 2>/dev/null && pwd) \
  || { echo "bench-shards: no peers directory at ${PEERS_DIR:-$repo/../shared/peers} (set PEERS_DIR)" >&2; exit 1; }
IFS=, read -r cpu0 cpu1 <<<"${CPUS:-0,1}"
keys=${KEYS:-100000}; shards_port=${SHARDS_PORT:-8092}; replicas_port=${REPLICAS_PORT:-8093}
replicated_port=${REPLICATED_PORT:-8094}
export ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-5s} CONNS=${CONNS:-64} CLIENT_CPU=${CLIENT_CPUS:-0-1} KEYS=$keys

bench_name=bench-shards
# shellcheck source=scripts/bench-lib.sh
source "$repo/scripts/bench-lib.sh"
for tool in wrk taskset bc python3 cargo; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk util-linux bc python3; cargo from rustup)"
done
for p in "$shards_port" "$replicas_port" "$replicated_port"; do
  port_busy "$p" && die "port $p is already in use; stop what holds it or pick other ports"
done
[ -n "${SKIP_BUILD:-}" ] || (cd "$repo" && cargo build --release --bin push-cache)
pc_bin=${PUSH_CACHE_BIN:-$repo/target/release/push-cache}
[ -x "$pc_bin" ] || die "$pc_bin is missing: cargo build --release"

tmp=$(mktemp -d /tmp/bench-shards.XXXXXX)
config() { # name, port, runtime
  cat >"$tmp/$1.yaml" <<YAML
webservice:
  address: 127.0.0.1:$2
kafka: {brokers: '127.0.0.1:1', group_id: bench-shards, topic: customers, schema_registry_url: 'http://127.0.0.1:1'}
cache:
  stores: [{name: customers, type: in_memory}]
  routes: [{path: /users, store: customers}]
runtime: $3
YAML
}

# Loads every customer over connections to PORT until COPIES servers behind
# it answered 201 for all of them (a server already loaded answers 409, and
# the loader opens another connection, which the kernel may give the other).
load() { # port, copies
  taskset -c "$cpu1" python3 - 127.0.0.1 "$1" /api/users "$keys" "$2" <<'PY'
import json, socket, sys
host, port, route, n, copies = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4]), int(sys.argv[5])
def body(i):
    return json.dumps({"accountId": f"acct-{i:08d}", "name": f"Customer Name {i}",
                       "address": f"{i} Long Street, Some Town, AB1 2CD", "phone": "+44 20 7946 0000",
                       "createdAt": 1700000000000 + i, "updatedAt": 1700000500000 + i},
                      separators=(",", ":")).encode()
def answers(s, buf, count):
    statuses = []
    for _ in range(count):
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(1 << 16)
            if not chunk:
                sys.exit("push-cache closed the connection while loading")
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = next((int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")[1:]
                       if l.lower().startswith(b"content-length:")), 0)
        while len(buf) < length:
            buf += s.recv(1 << 16)
        buf = buf[length:]
        statuses.append(head.split(b" ", 2)[1].decode())
    return statuses, buf
loaded = 0
for attempt in range(64):
    s = socket.create_connection((host, port))
    s.sendall(b"GET %s/acct-00000000 HTTP/1.1\r\nHost: x\r\n\r\n" % route)
    (probe,), buf = answers(s, b"", 1)
    if probe == "200":
        s.close()
        continue
    for start in range(0, n, 256):
        batch = [body(i) for i in range(start, min(n, start + 256))]
        s.sendall(b"".join(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                           % (route, len(b), b) for b in batch))
        statuses, buf = answers(s, buf, len(batch))
        if set(statuses) != {"201"}:
            sys.exit(f"unexpected answers while loading: {sorted(set(statuses))}")
    s.close()
    loaded += 1
    if loaded == copies:
        print(f"loaded {n} customers into {copies} server(s) on port {port}")
        sys.exit(0)
sys.exit(f"only {loaded} of {copies} servers on port {port} were reached in 64 connections")
PY
}

config two-shards "$shards_port" "{shards: 2, cores: [$cpu0, $cpu1]}"
taskset -c "$cpu0,$cpu1" "$pc_bin" --config "$tmp/two-shards.yaml" --secrets "$tmp/s0" >"$tmp/two-shards.log" 2>&1 &
shards_pid=$!; started+=("$shards_pid")
wait_port "$shards_port" "$shards_pid" "two-shard push-cache" "$tmp/two-shards.log"
load "$shards_port" 1

config replicated "$replicated_port" "{shards: 2, cores: [$cpu0, $cpu1], index: replicated}"
taskset -c "$cpu0,$cpu1" "$pc_bin" --config "$tmp/replicated.yaml" --secrets "$tmp/s3" >"$tmp/replicated.log" 2>&1 &
replicated_pid=$!; started+=("$replicated_pid")
wait_port "$replicated_port" "$replicated_pid" "replicated two-shard push-cache" "$tmp/replicated.log"
load "$replicated_port" 1

# The replicas run under one parent, so that compare.sh sums their CPU time.
config replica0 "$replicas_port" "{shards: 1, cores: [$cpu0]}"
config replica1 "$replicas_port" "{shards: 1, cores: [$cpu1]}"
(
  taskset -c "$cpu0" "$pc_bin" --config "$tmp/replica0.yaml" --secrets "$tmp/s1" >"$tmp/replica0.log" 2>&1 &
  taskset -c "$cpu1" "$pc_bin" --config "$tmp/replica1.yaml" --secrets "$tmp/s2" >"$tmp/replica1.log" 2>&1 &
  trap 'kill -TERM $(jobs -p) 2>/dev/null; wait' TERM
  wait
) &
replicas_pid=$!; started+=("$replicas_pid")
wait_port "$replicas_port" "$replicas_pid" "push-cache replicas" "$tmp/replica0.log"
sleep 1
[ "$(pgrep -c -P "$replicas_pid")" = 2 ] || die "both replicas must be running: $(cat "$tmp"/replica*.log)"
load "$replicas_port" 2

echo "compare.sh: ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS SCRIPT=${SCRIPT:-random-key.lua}," \
  "servers on CPUs $cpu0 and $cpu1, wrk on CPUs $CLIENT_CPU"
bash "$peers/compare.sh" "two-shards=http://127.0.0.1:$shards_port/api/users@$shards_pid" \
  "replicated=http://127.0.0.1:$replicated_port/api/users@$replicated_pid" \
  "two-replicas=http://127.0.0.1:$replicas_port/api/users@$replicas_pid" &
compare_pid=$!
wait "$compare_pid"
compare_pid=""
