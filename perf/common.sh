# Shared by perf/record.sh and perf/stat.sh (sourced, not run): checks the
# tools, finds the server's PID, and gets the keys wrk will request.
# Expects `die`, `base`, `route` and `tmp` to be set by the caller; sets `PID`
# and `keys`.

command -v perf >/dev/null || die "perf is missing: apt-get install linux-perf"
perf --version >/dev/null 2>&1 || die "perf does not run here ($(perf --version 2>&1 | head -1)); install the linux-perf package matching the kernel"
command -v wrk >/dev/null || die "wrk is missing: apt-get install wrk"
command -v taskset >/dev/null || die "taskset is missing: apt-get install util-linux"

if [ -z "${PID:-}" ]; then
  pids=$(pgrep -x push-cache || true)
  [ -n "$pids" ] || die "no running push-cache found; start one (cargo build --release; target/release/push-cache --config ...) or set PID"
  [ "$(wc -w <<<"$pids")" -eq 1 ] || die "several push-cache processes run ($(echo $pids)); choose one with PID=..."
  PID=$pids
fi
[ -d "/proc/$PID" ] || die "no process with PID $PID"

keys=${KEYS_FILE:-}
if [ -z "$keys" ]; then
  keys=$tmp/keys
  curl -sf "$base$route?limit=${SAMPLE:-10000}" >"$tmp/list.json" \
    || die "cannot list keys at $base$route (is the server at BASE_URL, and is ROUTE a configured route?)"
  python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))))' "$tmp/list.json" >"$keys" 2>/dev/null \
    || die "$base$route did not answer a JSON list of keys: $(head -c 200 "$tmp/list.json")"
  [ "$(grep -c . "$keys" || true)" -gt 0 ] || die "no keys under $base$route: load some data first"
fi
