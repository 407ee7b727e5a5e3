#!/usr/bin/env bash
# Checks the running server against the OpenAPI document it serves: starts the aipbx binary ($1) on a free
# port with a temp database and a fast mock engine that fails half of its attempts (seeded, one attempt per
# job, so the run holds both succeeded and dead jobs), and runs web/tests/api_conformance.mjs (Node.js only,
# no browser).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if ! command -v node >/dev/null; then
  echo "missing node: run scripts/install-deps.sh" >&2
  exit 1
fi

source "$here/serve_helper.sh"
export AIPBX_BODY_LIMIT=4096
start_aipbx "${1:-}" --body-limit "$AIPBX_BODY_LIMIT" --mock-delay-ms 0:5 --mock-failure-rate 0.5 --mock-seed 7 \
  --retry-max-attempts 1 --segment-packets 2 --segment-idle 200ms --workers 2

node "$root/web/tests/api_conformance.mjs" "$AIPBX_URL"
