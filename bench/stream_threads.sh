#!/bin/bash
# stream_threads.sh: one stream load against a fresh aipbx, and where the server's CPU went, thread by thread.
#
#   bench/stream_threads.sh [--binary BIN] PROTOCOL CALLS SECONDS [aipbx serve arguments...]
#
# Starts BIN (default build/release/src/app/aipbx) on a fresh SQLite file (--workers 0 --segment-packets 250,
# then the arguments given), runs aipbx_stream_load (PROTOCOL: twilio, fork, fork-seq, audiosocket, http) with
# CALLS open-loop calls for SECONDS, and prints one line of the load's figures (receive -> durable lag, CPU per
# frame of the server and of the generator, the WAL's restarts, frames per commit, WAL pages per frame) and
# one line of the server's CPU per stored frame by thread name (/proc/PID/task: the I/O threads are the
# process's own name and aipbx-http, then aipbx-writer, aipbx-syncer, aipbx-checkpt). Loopback only; the
# server is stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/aipbx_bench.sh
source "$here/lib/aipbx_bench.sh"
bin="$root/build/release/src/app/aipbx"
if [ "${1:-}" = "--binary" ]; then bin=$2; shift 2; fi
[ $# -ge 3 ] || { sed -n '2,12p' "$0"; exit 2; }
protocol=$1 calls=$2 seconds=$3; shift 3
load_bin="$root/build/release/bench/aipbx_stream_load"
need_built "$bin"
need_built "$load_bin"
work=$(mktemp -d)
start_aipbx --audiosocket "$work/aipbx.log" "$bin" serve --db "$work/aipbx.db" --log-level warn \
  --max-streams 100000 --shutdown-timeout 5s --workers 0 --segment-packets 250 "$@"
threads() { for t in /proc/"$AIPBX_PID"/task/*; do echo "$(cat "$t/comm")|$(awk '{ print $14 + $15 }' "$t/stat")"; done; }
threads >"$work/before"
ramp=$(awk -v n="$calls" 'BEGIN { printf "%.1f", n / 250 }')
"$load_bin" --protocol "$protocol" --calls "$calls" --seconds "$seconds" --ramp "$ramp" --port "$AIPBX_PORT" \
  --audiosocket-port "$AIPBX_AS_PORT" --server-pid "$AIPBX_PID" --prefix t --json >"$work/load.json" 2>"$work/load.err" ||
  { cat "$work/load.err" >&2; exit 1; }
threads >"$work/after"
curl -s "http://127.0.0.1:$AIPBX_PORT/metrics" >"$work/metrics.txt"
python3 - "$work" "$(getconf CLK_TCK)" <<'PY'
import collections, json, re, sys
work, hz = sys.argv[1], float(sys.argv[2])
r = json.load(open(work + "/load.json"))
m = open(work + "/metrics.txt").read()
def metric(name):
    found = re.search(r"^" + name + r" (\S+)", m, re.M)
    return float(found.group(1)) if found else 0.0
def ticks(path):
    out = collections.Counter()
    for line in open(path):
        name, value = line.rstrip("\n").rsplit("|", 1)
        out[name] += int(value)
    return out
before, after = ticks(work + "/before"), ticks(work + "/after")
stored = r["stored"] or 1
restarts = metric(r'aipbx_checkpoint_seconds_count\{by="writer"\}')
restart_s = metric(r'aipbx_checkpoint_seconds_sum\{by="writer"\}')
commits = metric("aipbx_commit_seconds_count")
print("%s, %d calls: %d of %d frames stored, lag p50 <= %g ms, p99 <= %g ms, %.1f%% within 20 ms; server %.1f µs/frame, "
      "generator %.1f; WAL restarts %d x %.0f ms; %.0f frames per commit; %.2f WAL pages per frame" % (
      r["protocol"], r["calls"], r["stored"], r["sent"], r["lag_p50_ms"], r["lag_p99_ms"], 100 * r["lag_within_20ms"],
      r["server_us_per_frame"], r["load_us_per_frame"], restarts, restart_s / restarts * 1000 if restarts else 0,
      stored / commits if commits else 0, metric("aipbx_log_pages_total") / stored))
per = {k: (after[k] - before.get(k, 0)) / hz * 1e6 / stored for k in after}
print("  server µs/frame by thread: " + ", ".join("%s %.1f" % kv for kv in sorted(per.items(), key=lambda kv: -kv[1]) if kv[1] >= 0.05))
PY
