#!/usr/bin/env bash
# Side-by-side throughput against the peers in ../shared/peers (see its README):
# builds push-cache (release) and the axum + DashMap peer, starts push-cache,
# nginx (when installed) and the peer, every server pinned to SERVER_CPU and
# holding the same 100 000 customers acct-00000000.. with the same JSON bodies,
# runs the peers' compare.sh (wrk pinned to CLIENT_CPU, server CPU per request
# from each PID), then stops everything it started.
# Push Cache runs without Kafka (an unreachable broker; GETs do not wait for
# readiness) and is loaded over HTTP with pipelined POSTs.
# Env: PEERS_DIR (../shared/peers), SERVER_CPU (0), CLIENT_CPU (1), KEYS (100000),
#      PUSH_CACHE_PORT (8089), AXUM_PORT (8090), ROUNDS (5), DURATION (5s), CONNS (64),
#      SKIP_BUILD (1: use the binaries already built), NO_NGINX (1: leave nginx out),
#      BASELINE_BIN (another push-cache binary, e.g. a copy of the previous build, run as
#      push-cache-base on BASELINE_PORT (8094) in the same interleaved rounds).
# nginx's port (8091) is fixed by the peers' nginx.conf.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
peers=$(cd "${PEERS_DIR:-$repo/../shared/peers}" 2>/dev/null && pwd) \
  || { echo "bench-compare: no peers directory at ${PEERS_DIR:-$repo/../shared/peers} (set PEERS_DIR)" >&2; exit 1; }
server_cpu=${SERVER_CPU:-0}; client_cpu=${CLIENT_CPU:-1}; keys=${KEYS:-100000}
pc_port=${PUSH_CACHE_PORT:-8089}; axum_port=${AXUM_PORT:-8090}; nginx_port=8091; base_port=${BASELINE_PORT:-8094}
export ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-5s} CONNS=${CONNS:-64} CLIENT_CPU=$client_cpu KEYS=$keys

bench_name=bench-compare
# shellcheck source=scripts/bench-lib.sh
source "$repo/scripts/bench-lib.sh"
for tool in wrk taskset bc curl python3 cargo; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk util-linux bc curl python3; cargo from rustup)"
done
use_nginx=1
if [ -n "${NO_NGINX:-}" ]; then use_nginx=""
elif ! command -v nginx >/dev/null; then
  echo "bench-compare: nginx not installed (apt-get install nginx-light); comparing without it" >&2; use_nginx=""
fi

base_bin=${BASELINE_BIN:-}
[ -z "$base_bin" ] || [ -x "$base_bin" ] || die "BASELINE_BIN $base_bin is not an executable"
for p in "$pc_port" "$axum_port" ${use_nginx:+$nginx_port} ${base_bin:+$base_port}; do
  port_busy "$p" && die "port $p is already in use; stop what holds it (ss -ltnp 'sport = :$p') or pick other ports"
done

if [ -z "${SKIP_BUILD:-}" ]; then
  echo "building push-cache (release) and the axum-dashmap peer..."
  (cd "$repo" && cargo build --release --bin push-cache)
  cargo build --release --manifest-path "$peers/axum-dashmap/Cargo.toml"
fi
pc_bin=$repo/target/release/push-cache
axum_bin=$peers/axum-dashmap/target/release/axum-dashmap-peer
[ -x "$pc_bin" ] || die "$pc_bin is missing: cargo build --release"
[ -x "$axum_bin" ] || die "$axum_bin is missing: cargo build --release --manifest-path $peers/axum-dashmap/Cargo.toml"

tmp=$(mktemp -d /tmp/bench-compare.XXXXXX)
# Push Cache: one shard on SERVER_CPU, the whole process pinned there too.
start_push_cache() { # name, binary, port; sets started_pid
  cat >"$tmp/$1.yaml" <<YAML
webservice:
  address: 127.0.0.1:$3
kafka: {brokers: '127.0.0.1:1', group_id: bench-compare, topic: customers, schema_registry_url: 'http://127.0.0.1:1'}
cache:
  stores: [{name: customers, type: in_memory}]
  routes: [{path: /users, store: customers}]
runtime: {shards: 1, cores: [$server_cpu]}
YAML
  taskset -c "$server_cpu" "$2" --config "$tmp/$1.yaml" --secrets "$tmp/secrets-$1" >"$tmp/$1.log" 2>&1 &
  started_pid=$!; started+=("$started_pid")
  wait_port "$3" "$started_pid" "$1" "$tmp/$1.log"
  echo "loading $keys customers into $1 over HTTP..."
  load_customers "$3"
}

# The axum peer's body: serde_json of its Customer struct, fields in order, compact.
load_customers() { # port
taskset -c "$client_cpu" python3 - 127.0.0.1 "$1" /api/users "$keys" <<'PY'
import json, socket, sys
host, port, route, n = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])
def body(i):
    return json.dumps({"accountId": f"acct-{i:08d}", "name": f"Customer Name {i}",
                       "address": f"{i} Long Street, Some Town, AB1 2CD", "phone": "+44 20 7946 0000",
                       "createdAt": 1700000000000 + i, "updatedAt": 1700000500000 + i},
                      separators=(",", ":")).encode()
s = socket.create_connection((host, port))
buf, counts = b"", {}
def read_more():
    global buf
    chunk = s.recv(1 << 16)
    if not chunk:
        sys.exit("push-cache closed the connection while loading")
    buf += chunk
for start in range(0, n, 256):  # pipelined batches, answers read back in order
    batch = [body(i) for i in range(start, min(n, start + 256))]
    s.sendall(b"".join(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                       % (route, len(b), b) for b in batch))
    for _ in batch:
        while b"\r\n\r\n" not in buf:
            read_more()
        head, _, buf = buf.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode()
        length = next((int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")[1:] if l.lower().startswith(b"content-length:")), 0)
        while len(buf) < length:
            read_more()
        buf = buf[length:]
        counts[status] = counts.get(status, 0) + 1
print("push-cache POST answers: " + ", ".join(f"{k} x {v}" for k, v in sorted(counts.items())))
if set(counts) - {"201", "409"}:
    sys.exit("unexpected answers while loading")
PY
}

start_push_cache push-cache "$pc_bin" "$pc_port"
pc_pid=$started_pid
if [ -n "$base_bin" ]; then
  start_push_cache push-cache-base "$base_bin" "$base_port"
  base_pid=$started_pid
fi

# The axum + DashMap peer builds its customers itself.
taskset -c "$server_cpu" "$axum_bin" "127.0.0.1:$axum_port" "$keys" 1 >"$tmp/axum.log" 2>&1 &
axum_pid=$!; started+=("$axum_pid")
wait_port "$axum_port" "$axum_pid" axum-dashmap-peer "$tmp/axum.log"

targets=("push-cache=http://127.0.0.1:$pc_port/api/users@$pc_pid")
[ -z "$base_bin" ] || targets+=("push-cache-base=http://127.0.0.1:$base_port/api/users@$base_pid")
if [ -n "$use_nginx" ]; then
  mkdir -p "$tmp/nginx/logs"
  taskset -c "$server_cpu" nginx -c "$peers/nginx.conf" -p "$tmp/nginx/" >"$tmp/nginx.log" 2>&1 &
  nginx_pid=$!; started+=("$nginx_pid")
  wait_port "$nginx_port" "$nginx_pid" nginx "$tmp/nginx.log"
  targets+=("nginx=http://127.0.0.1:$nginx_port/api/users@$nginx_pid")
fi
targets+=("axum-dashmap=http://127.0.0.1:$axum_port/api/users@$axum_pid")

# Same bytes everywhere (nginx answers one constant body: that of acct-00000042).
probe=acct-00000042
want=$(curl -sf "http://127.0.0.1:$axum_port/api/users/$probe") || die "the axum peer does not answer $probe"
for t in "${targets[@]}"; do
  url=${t#*=}; url=${url%@*}
  got=$(curl -sf "$url/$probe") || die "${t%%=*} does not answer $url/$probe"
  [ "$got" = "$want" ] || die "${t%%=*} serves a different body for $probe: $got"
done
echo "same body for $probe from every server (${#want} bytes)"

echo "compare.sh: ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS, servers on CPU $server_cpu, wrk on CPU $client_cpu"
# In the background so that a signal stops the run at once (bash runs traps only between commands).
bash "$peers/compare.sh" "${targets[@]}" &
compare_pid=$!
wait "$compare_pid"
compare_pid=""
