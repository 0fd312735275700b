#!/usr/bin/env bash
# `make latency`: produce-to-visible latency. Starts a push-cache of its own
# on a fresh topic of the local stack (scripts/local-stack.sh) and runs
# examples/visible_latency against it: COUNT records produced one at a time,
# each polled over HTTP until served.
# Env: COUNT (1000) FETCH_WAIT_MS (5) SHARDS (auto) PORT (8098) LATENCY_OUT (target/latency)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fresh-server.sh
out=${LATENCY_OUT:-target/latency} port=${PORT:-8098}
mkdir -p "$out"

cargo build --release --bin push-cache --example visible_latency
fresh_topic latency
write_config "$out/config.yaml" "$port" "${FETCH_WAIT_MS:-5}"
start_server "$out/config.yaml" "$out/server.log" "$port"
target/release/examples/visible_latency --url "http://127.0.0.1:$port/api/customers" \
  --topic "$topic" --count "${COUNT:-1000}"
