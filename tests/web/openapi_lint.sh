#!/usr/bin/env bash
# Lints the OpenAPI document exactly as aipbx serves it: starts the binary ($1) on a free port with a temp
# database, fetches /openapi.json and runs Redocly CLI (web/node_modules, pinned in web/package.json) with
# web/redocly.yaml. Fails on any lint error, and on any warning too: the document is kept warning-free.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
redocly="$root/web/node_modules/.bin/redocly"
if [ ! -x "$redocly" ]; then
  echo "missing $redocly: run scripts/install-deps.sh (npm ci in web/)" >&2
  exit 1
fi

source "$here/serve_helper.sh"
start_aipbx "${1:-}"

doc="$AIPBX_TMP/openapi.json"
curl --silent --show-error --fail --max-time 10 -o "$doc" "$AIPBX_URL/openapi.json"
echo "fetched $AIPBX_URL/openapi.json ($(wc -c <"$doc") bytes)"

# The CLI prints a Node.js deprecation banner on Node 20; telemetry is off for tests.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
status=0
"$redocly" lint --config "$root/web/redocly.yaml" --max-problems 1000 --format stylish "$doc" \
  >"$AIPBX_TMP/lint.txt" 2>&1 || status=$?
grep -v '[║╔╚]' "$AIPBX_TMP/lint.txt" || true
if [ "$status" -ne 0 ]; then
  echo "FAIL: redocly lint reported errors" >&2
  exit 1
fi
if grep -Eq '^[[:space:]]*[0-9]+:[0-9]+[[:space:]]+warning' "$AIPBX_TMP/lint.txt"; then
  echo "FAIL: redocly lint reported warnings" >&2
  exit 1
fi
echo "PASS: /openapi.json is a valid OpenAPI document with no lint errors or warnings"
