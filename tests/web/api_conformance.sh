#!/usr/bin/env bash
# Checks the running server against the OpenAPI document it serves: starts the aipbx binary ($1) on a free
# port with a temp database and a fast mock engine that fails half of its attempts (seeded, one attempt per
# job, so the run holds both succeeded and dead jobs), and runs web/tests/api_conformance.mjs (Node.js only,
# no browser).
# Calls end by request (the test's POST .../end cuts their last segment: --segment-idle is long), except one
# left to end by --idle-timeout; gaps are given up by the packet bound of --reorder-window (its time bound is
# long, so nothing depends on timing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if ! command -v node >/dev/null; then
  echo "missing node: run scripts/install-deps.sh" >&2
  exit 1
fi

source "$here/serve_helper.sh"
export AIPBX_BODY_LIMIT=4096 AIPBX_REORDER_PACKETS=3 AIPBX_IDLE_TIMEOUT=3
start_aipbx "${1:-}" --body-limit "$AIPBX_BODY_LIMIT" --mock-delay-ms 0:5 --mock-failure-rate 0.5 --mock-seed 7 \
  --retry-max-attempts 1 --segment-packets 2 --segment-idle 60s --workers 2 \
  --reorder-window "$AIPBX_REORDER_PACKETS,60s" --idle-timeout "${AIPBX_IDLE_TIMEOUT}s"

node "$root/web/tests/api_conformance.mjs" "$AIPBX_URL"
