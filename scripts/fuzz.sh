#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer) for FUZZ_SECONDS
# each, starting from its checked-in seed corpus, and fails if any crashes.
#
#   scripts/fuzz.sh                      # all targets, 60 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh http_request chunked_body
#
# Works on the stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the
# sanitizer flags). New inputs go to fuzz/corpus-work/<target>/ (ignored by
# git); copy interesting ones into fuzz/corpus/<target>/ by hand. A crash
# leaves its input in fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# The first build compiles every dependency with sanitizers, librdkafka
# included: expect several minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "fuzz.sh: building the fuzz targets" >&2
cargo fuzz build

failed=()
for target in "${targets[@]}"; do
    work="fuzz/corpus-work/$target"
    mkdir -p "$work" "fuzz/corpus/$target"
    echo "fuzz.sh: $target for ${seconds}s" >&2
    # The work directory comes first: libFuzzer writes new inputs there and
    # only reads the seeds. -timeout: one input taking over 10 s is a hang.
    if ! cargo fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: no crashes in ${targets[*]}" >&2
