#!/usr/bin/env bash
# `make run`: installs what is missing, starts the local stack (tansu,
# schema registry, redis), builds the service, loads sample data of all four
# types and runs Push Cache in the foreground with config/local.yaml.
# Ctrl-C stops the service and everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --bin push-cache --example populate_kafka
stop_stack() { bash scripts/local-stack.sh down; }
trap stop_stack EXIT
bash scripts/local-stack.sh up
for t in customer bill usage ticket; do
  MESSAGE_TYPE=$t COUNT=${COUNT:-1000} bash scripts/populate-local.sh | sed "s/^/[$t] /"
done
cat <<MSG

Push Cache is starting on http://localhost:8080 — try:
  curl -i localhost:8080/api/customers/acct-00000042
  curl -i localhost:8080/api/bills/acct-00000042
  curl -i localhost:8080/api/usage/acct-00000042
  curl -i localhost:8080/api/tickets/tkt-00000042      (served from Redis)
  curl 'localhost:8080/api/customers?limit=5'
  curl localhost:8080/health/ready
  curl localhost:8080/metrics
Ctrl-C stops it and the local stack.
MSG
CAPTURE_LOG=${CAPTURE_LOG:-info} target/release/push-cache --config config/local.yaml &
server=$!
# Ctrl-C (or `make stop`) stops the service; the EXIT trap then stops the stack.
trap 'kill -TERM $server 2>/dev/null || true' INT TERM
wait $server || true
wait $server 2>/dev/null || true
