#!/usr/bin/env bash
# The local stack without Docker: a tansu Kafka broker (memory storage) on
# :9092, the bundled schema registry on :8081 and redis-server on :6379.
#   scripts/local-stack.sh up     start what is not running (idempotent);
#                                 creates the four topics plus EXTRA_TOPICS
#   scripts/local-stack.sh down   stop what `up` started
#   scripts/local-stack.sh status
# State (pids, logs, registry data) lives in .stack/.
set -euo pipefail
cd "$(dirname "$0")/.."
state=.stack
mkdir -p "$state"
KAFKA_PORT=${KAFKA_PORT:-9092} REGISTRY_PORT=${REGISTRY_PORT:-8081} REDIS_PORT=${REDIS_PORT:-6379}
TOPICS="customers bills usage tickets ${EXTRA_TOPICS:-}"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 200); do listening "$1" && return 0; sleep 0.1; done
  echo "nothing listens on :$1; see $state/$2.log" >&2
  return 1
}

start() { # name port command...
  local name=$1 port=$2; shift 2
  if listening "$port"; then echo "$name: already on :$port"; return; fi
  nohup "$@" >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
  wait_port "$port" "$name"
  echo "$name: started on :$port (pid $(cat "$state/$name.pid"))"
}

up() {
  bash scripts/install-deps.sh >/dev/null
  [ -x target/release/push-cache ] || cargo build --release
  start kafka "$KAFKA_PORT" "$(scripts/tansu-path.sh)" broker \
    --listener-url "tcp://0.0.0.0:$KAFKA_PORT" --advertised-listener-url "tcp://localhost:$KAFKA_PORT" \
    --storage-engine memory://tansu/
  start registry "$REGISTRY_PORT" target/release/push-cache schema-registry \
    --listen "127.0.0.1:$REGISTRY_PORT" --data "$state/registry.json"
  start redis "$REDIS_PORT" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
  python3 - "$KAFKA_PORT" $TOPICS <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
port, topics = sys.argv[1], sys.argv[2:]
admin = AdminClient({"bootstrap.servers": f"localhost:{port}"})
existing = admin.list_topics(timeout=10).topics
new = [NewTopic(t, num_partitions=3, replication_factor=1, config={"cleanup.policy": "compact"}) for t in topics if t not in existing]
for t, f in admin.create_topics(new).items() if new else []:
    f.result()
    print(f"topic {t}: created")
PY
}

down() {
  for name in kafka registry redis; do
    pidfile="$state/$name.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill "$(cat "$pidfile")" && echo "$name: stopped"
    fi
    rm -f "$pidfile"
  done
}

status() {
  for pair in kafka:$KAFKA_PORT registry:$REGISTRY_PORT redis:$REDIS_PORT; do
    name=${pair%%:*} port=${pair##*:}
    if listening "$port"; then echo "$name: up on :$port"; else echo "$name: down"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
