# Sourced by the tests in this directory: starts the aipbx binary given as $1 on a free loopback port with
# a fresh SQLite file in a temp dir, and stops it (and removes the dir) when the calling script exits.
# Further arguments are passed to `aipbx serve` (e.g. mock engine settings).
# Sets AIPBX_PID, AIPBX_PORT, AIPBX_URL and AIPBX_TMP. Needs bash.

# Fails unless playwright-core (npm ci in web/) and Chromium are installed; exports CHROMIUM_PATH (default
# Debian's /usr/bin/chromium) for the page tests.
need_browser() {
  local root need
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  export CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
  for need in "$root/web/node_modules/playwright-core/package.json" "$CHROMIUM_PATH"; do
    if [ ! -e "$need" ]; then
      echo "missing $need: run scripts/install-deps.sh (apt chromium, npm ci in web/)" >&2
      exit 1
    fi
  done
}

start_aipbx() {
  local binary="$1"
  shift || true
  if [ ! -x "$binary" ]; then
    echo "usage: $0 /path/to/aipbx" >&2
    exit 2
  fi
  AIPBX_TMP="$(mktemp -d "${TMPDIR:-/tmp}/aipbx-web.XXXXXX")"
  trap stop_aipbx EXIT
  "$binary" serve --host 127.0.0.1 --port 0 --db "$AIPBX_TMP/test.db" "$@" 2>"$AIPBX_TMP/server.log" &
  AIPBX_PID=$!
  AIPBX_PORT=""
  for _ in $(seq 1 100); do
    AIPBX_PORT="$(grep '"msg":"listening"' "$AIPBX_TMP/server.log" | head -n 1 | sed -n 's/.*"port":\([0-9]*\).*/\1/p' || true)"
    [ -n "$AIPBX_PORT" ] && break
    if ! kill -0 "$AIPBX_PID" 2>/dev/null; then
      echo "aipbx exited before listening:" >&2
      cat "$AIPBX_TMP/server.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  if [ -z "$AIPBX_PORT" ]; then
    echo "aipbx did not log \"listening\" within 10 s:" >&2
    cat "$AIPBX_TMP/server.log" >&2
    exit 1
  fi
  AIPBX_URL="http://127.0.0.1:$AIPBX_PORT"
  export AIPBX_PID AIPBX_PORT AIPBX_URL AIPBX_TMP
}

stop_aipbx() {
  local rc=$?
  if [ -n "${AIPBX_PID:-}" ] && kill -0 "$AIPBX_PID" 2>/dev/null; then
    kill -TERM "$AIPBX_PID" 2>/dev/null || true
    wait "$AIPBX_PID" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ] && [ -f "${AIPBX_TMP:-}/server.log" ]; then
    echo "--- server log ---" >&2
    tail -n 50 "$AIPBX_TMP/server.log" >&2
  fi
  [ -n "${AIPBX_TMP:-}" ] && rm -rf "$AIPBX_TMP"
  exit "$rc"
}
