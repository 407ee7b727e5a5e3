#!/bin/bash
# run_dashboard_bench.sh: the dashboard's frame time in Chromium with 1,000 live calls, against the same
# page idle (no calls), in one run.
#
#   bench/run_dashboard_bench.sh [--calls N] [--phase-seconds S] [--screenshot FILE] [AIPBX_BINARY]
#
# Starts aipbx on a fresh SQLite file (AudioSocket listener on; mock engine with 8 workers at 50-150 ms per
# attempt, one job per second of audio: a steady stream of job events), opens the dashboard in headless
# Chromium (web/bench/dashboard_frames.mjs, playwright-core), measures it idle for --phase-seconds, then
# starts aipbx_stream_load (N AudioSocket calls, one 20 ms frame every 20 ms each) and measures the calls
# list as it updates, the list while it is scrolled, and a call's page. Prints one line per phase: frames
# per second, requestAnimationFrame delta p50/p95/p99/max, frames over 50 ms, long tasks, and the page's
# main-thread time (script, style and layout) per second of wall time. The server, its load and the browser
# share the machine's cores: the main-thread figures say what the page itself costs.
#
# Options: --calls N (1000), --phase-seconds S (15), --screenshot FILE (a PNG of the list under load; the
# README's is docs/dashboard.png), --keep (the temporary directory). Builds nothing: pass the binary (default
# build/release/src/app/aipbx); aipbx_stream_load is taken from build/release/bench. Loopback only; every
# process it starts is stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/aipbx_bench.sh
source "$here/lib/aipbx_bench.sh"
aipbx_bin="$root/build/release/src/app/aipbx"
load_bin="$root/build/release/bench/aipbx_stream_load"
calls=1000
phase=15
keep=0
make_work_dir aipbx-dashboard
screenshot="$work/dashboard.png"
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) calls=$2; shift 2 ;;
    --phase-seconds) phase=$2; shift 2 ;;
    --screenshot) screenshot=$(realpath -m "$2"); shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) aipbx_bin=$1; shift ;;
  esac
done
need_built "$aipbx_bin" "$load_bin"
need_tools node
[ -e "$root/web/node_modules/playwright-core/package.json" ] || { echo "run_dashboard_bench: run scripts/install-deps.sh" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

start_aipbx --audiosocket "$work/aipbx.log" "$aipbx_bin" serve --db "$work/aipbx.db" --log-level warn \
  --max-streams 100000 --shutdown-timeout 5s --segment-packets 50 --workers 8 --mock-delay-ms 50:150
port=$AIPBX_PORT

echo "machine: $(nproc) cores, $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "aipbx: $aipbx_bin $(git -C "$root" rev-parse --short HEAD 2>/dev/null || true); chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
# The calls last long enough for the loaded phases: ramp, settling, three phases, margin.
ramp=$(awk -v n="$calls" 'BEGIN { printf "%.1f", n / 250 }')
seconds=$(awk -v r="$ramp" -v p="$phase" 'BEGIN { printf "%d", r + 3 * p + 25 }')
echo "load: $calls AudioSocket calls for ${seconds}s (ramp ${ramp}s); phases of ${phase}s"
node "$root/web/bench/dashboard_frames.mjs" "http://127.0.0.1:$port" "$phase" "$calls" "$work/frames.json" "$screenshot" -- \
  "$load_bin" --protocol audiosocket --calls "$calls" --seconds "$seconds" --ramp "$ramp" --port "$port" \
  --audiosocket-port "$AIPBX_AS_PORT" --server-pid "$AIPBX_PID" --prefix dash
echo "screenshot: $screenshot"
