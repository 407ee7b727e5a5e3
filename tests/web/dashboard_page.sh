#!/usr/bin/env bash
# Real-browser test of the dashboard (/): starts the aipbx binary ($1) on a free port with a temp database,
# an API token, one AI worker and the mock engine seeded so that its attempts go: three successes, two
# failures, one success (the test's fourth job fails twice and dies with --retry-max-attempts 2; its replay
# succeeds). Runs web/tests/dashboard_page.mjs (playwright-core driving Debian's /usr/bin/chromium,
# headless); the screenshots of each step go to $2 (default: the current directory, the build's test dir
# under CTest), dashboard-NN-*.png.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$(cd "${2:-.}" && pwd)"
source "$here/serve_helper.sh"
need_browser
token="dashboard-test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
# Segments of 4 packets, never cut by time (--segment-idle) nor lost (--reorder-window: the test fills
# its gap); attempts one at a time, 0.6-0.8 s each, a failed one retried after 1 s.
start_aipbx "${1:-}" --api-token "$token" --workers 1 --mock-delay-ms 600:800 --mock-failure-rate 0.5 \
  --mock-seed 12 --retry-max-attempts 2 --retry-base-delay 1s --retry-jitter 0 --segment-packets 4 \
  --segment-idle 60s --reorder-window 50,60s --idle-timeout 0

node "$root/web/tests/dashboard_page.mjs" "$AIPBX_URL" "$token" "$out"
