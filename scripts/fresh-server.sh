# Sourced by scripts/memory.sh, scripts/latency.sh and scripts/restart.sh: a
# push-cache of its own on a fresh topic of the local stack (scripts/local-stack.sh).
# Env for its configuration: SHARDS (auto), COMPRESSION (unset; `zstd` keeps
# the store's bodies compressed), INDEX (partitioned; or `replicated`).
# Why a fresh topic: tansu's memory storage answers fetches more slowly the
# longer a partition's log, so a topic reused across runs measures the broker.
# After `fresh_server NAME PORT [fetch.wait.max.ms]`: $topic, $config, $server
# (pid, stopped on exit) and the server is ready on 127.0.0.1:PORT.

fresh_topic() { # prefix
  topic="$1-$(date +%s%N)"
  EXTRA_TOPICS=$topic bash scripts/local-stack.sh up | grep -v "already on" || true
}

write_config() { # file port fetch-wait-ms
  cat >"$1" <<YAML
webservice: {address: "127.0.0.1:$2", prefix: /api}
kafka:
  brokers: localhost:9092
  group_id: push-cache-$topic
  topic: [$topic]
  schema_registry_url: http://localhost:8081
  properties: {fetch.wait.max.ms: "$3"}
cache:
  stores: [{name: customers, type: in_memory, schemas: [customer]${COMPRESSION:+, compression: $COMPRESSION}}]
  routes: [{path: /customers, store: customers}]
runtime: {shards: ${SHARDS:-auto}, index: ${INDEX:-partitioned}}
YAML
}

start_server() { # config log port
  local start=$SECONDS
  CAPTURE_LOG=warn target/release/push-cache --config "$1" >"$2" 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
  until curl -sf "http://127.0.0.1:$3/health/ready" >/dev/null; do
    kill -0 "$server" || { echo "push-cache exited; see $2" >&2; exit 1; }
    [ $((SECONDS - start)) -lt 600 ] || { echo "push-cache not ready after 600 s" >&2; exit 1; }
    sleep 0.2
  done
  ready_seconds=$((SECONDS - start))
}
