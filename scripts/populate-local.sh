#!/usr/bin/env bash
# Loads sample records into the local stack.
# Env: MESSAGE_TYPE (customer|bill|usage|ticket, default customer),
#      COUNT (default 1000), TOPIC (default: the config's topic for the type),
#      CONFIG (default config/local.yaml), SEED (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
args=(-c "${CONFIG:-config/local.yaml}" -m "${MESSAGE_TYPE:-customer}" -n "${COUNT:-1000}" --seed "${SEED:-1}")
[ -n "${TOPIC:-}" ] && args+=(-t "$TOPIC")
if [ ! -x target/release/examples/populate_kafka ]; then cargo build --release --example populate_kafka; fi
exec target/release/examples/populate_kafka "${args[@]}"
