#!/usr/bin/env bash
# CI: the newcomer path. `make run` in the background on this clean clone,
# wait for readiness, read a customer, then `make stop`.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
COUNT=100 make run >"$log" 2>&1 &
runner=$!
cleanup() { make stop >/dev/null 2>&1 || true; }
trap cleanup EXIT
for _ in $(seq 1 600); do
  if curl -sf http://127.0.0.1:8080/health/ready >/dev/null 2>&1; then break; fi
  if ! kill -0 $runner 2>/dev/null; then echo "make run exited early:"; tail -50 "$log"; exit 1; fi
  sleep 1
done
body=$(curl -sf http://127.0.0.1:8080/api/customers/acct-00000042) || { echo "no customer served"; tail -50 "$log"; exit 1; }
echo "make run serves: $body"
grep -q '"accountId":"acct-00000042"' <<<"$body"
curl -sf http://127.0.0.1:8080/api/tickets/tkt-00000042 | grep -q '"ticketId":"tkt-00000042"'
make stop
for _ in $(seq 1 30); do kill -0 $runner 2>/dev/null || break; sleep 1; done
if kill -0 $runner 2>/dev/null; then echo "make run did not stop"; exit 1; fi
echo "make run / make stop: ok"
