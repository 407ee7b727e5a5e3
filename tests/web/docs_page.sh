#!/usr/bin/env bash
# Real-browser test of /docs: starts the aipbx binary ($1) on a free port with a temp database and runs
# web/tests/docs_page.mjs (playwright-core driving Debian's /usr/bin/chromium, headless). The screenshot
# goes to $2/docs_page.png (default: the current directory, the build's test dir under CTest).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$(cd "${2:-.}" && pwd)"
source "$here/serve_helper.sh"
need_browser
start_aipbx "${1:-}"

node "$root/web/tests/docs_page.mjs" "$AIPBX_URL" "$out/docs_page.png"
