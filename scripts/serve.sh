#!/usr/bin/env bash
# Installs what is missing, builds the release preset and runs `aipbx serve` on the embedded SQLite store.
# Extra arguments go to `aipbx serve`, e.g. scripts/serve.sh --port 9000 --db sqlite:///var/lib/aipbx/aipbx.db
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target aipbx
exec build/release/src/app/aipbx serve "$@"
