#!/usr/bin/env bash
# Instructions per request on aipbx's threads, counted by valgrind's callgrind: a figure that does not move
# with the machine's load (the same binary and inputs give the same counts), for comparing one version of
# the request path with another, or one protocol with GET /healthz, on a shared and noisy machine.
#
#   bench/count_instructions.sh [--calls N] [--seconds S] BINARY [PROTOCOL...]
#
# For each PROTOCOL (http, twilio, fork, fork-seq, audiosocket; default: all) it starts BINARY under
# callgrind, sends N calls x S seconds of 20 ms frames with aipbx_stream_load (build/release/bench), then
# 3 s of GET /healthz with wrk, and prints the instructions per frame of the I/O threads
# (io_context::run) and of the store's writer, and per request of the I/O threads for /healthz. The server
# runs slowed down some 50x, so these are counts, not speeds: small N keeps the run short; the writer's
# count per packet is that of small batches (it falls as batches grow under load).
set -euo pipefail
cd "$(dirname "$0")/.."

calls=20
seconds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) calls=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    *) break ;;
  esac
done
bin=${1:?usage: $0 [--calls N] [--seconds S] BINARY [PROTOCOL...]}
shift
protocols=("$@")
[ ${#protocols[@]} -gt 0 ] || protocols=(http twilio fork fork-seq audiosocket)
load=build/release/bench/aipbx_stream_load
# shellcheck source=bench/lib/aipbx_bench.sh
source bench/lib/aipbx_bench.sh
need_tools valgrind callgrind_annotate callgrind_control wrk
need_built "$bin" "$load"
make_work_dir aipbx-callgrind
BENCH_READY_SECONDS=120  # the server starts slowed down too

# The inclusive instruction count of the first function whose name matches $2 in the callgrind file $1.
inclusive() {
  local v
  v=$({ callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null || true; } |
    awk -v pat="$2" 'index($0, pat) { gsub(",", "", $1); print $1; exit }')
  echo "${v:-0}"
}

for protocol in "${protocols[@]}"; do
  rm -f "$work"/aipbx.db* "$work"/callgrind.out*
  start_aipbx --audiosocket "$work/server.log" valgrind --tool=callgrind \
    --callgrind-out-file="$work/callgrind.out.%p" "$bin" serve --db "$work/aipbx.db" --workers 0 \
    --segment-packets 250 --idle-timeout 0 --log-level warning
  pid=$AIPBX_PID
  port=$AIPBX_PORT
  callgrind_control -z "$pid" >/dev/null 2>&1
  "$load" --protocol "$protocol" --calls "$calls" --seconds "$seconds" --port "$port" \
    --audiosocket-port "$AIPBX_AS_PORT" --ramp 0.5 --json >"$work/load.txt" 2>&1 || true
  frames=$(grep -o '"sent":[0-9]*' "$work/load.txt" | head -1 | cut -d: -f2)
  [ -n "$frames" ] && [ "$frames" -gt 0 ] || { echo "count_instructions: the load failed: $(head -c 300 "$work/load.txt")" >&2; exit 1; }
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 0.5
  callgrind_control -z "$pid" >/dev/null 2>&1
  requests=$(wrk -t1 -c10 -d3s "http://127.0.0.1:$port/healthz" | awk '/requests in/ {print $1}')
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 0.5
  stop_aipbx
  stream_dump=$(ls "$work"/callgrind.out.*.1)
  health_dump=$(ls "$work"/callgrind.out.*.2)
  io=$(inclusive "$stream_dump" 'io_context::run()')
  writer=$(inclusive "$stream_dump" 'writer_loop()')
  health=$(inclusive "$health_dump" 'io_context::run()')
  printf '%-12s %6s frames: I/O threads %7d instr/frame, writer %7d instr/frame | GET /healthz: %7d instr/request (%s requests)\n' \
    "$protocol" "$frames" $((io / frames)) $((writer / frames)) $((health / requests)) "$requests"
done
