# shellcheck shell=bash
# Sourced by the benchmark scripts in bench/: the steps they share to run `aipbx serve` (or another HTTP
# server) on loopback for a measurement, and to stop it. Needs bash, curl and python3 (checked on sourcing).
#
#   root                        the checkout (the scripts' default paths start there)
#   need_tools TOOL...          exits 2 naming the first TOOL that is not installed
#   need_built FILE...          exits 2 naming the first FILE that is not an executable (build it first)
#   make_work_dir NAME          creates the run's temporary directory as $work
#   free_port [N]               prints N (default 1) free TCP ports of 127.0.0.1, all different
#   start_aipbx [--audiosocket] LOG COMMAND...
#                               runs COMMAND (`"$aipbx_bin" serve ARGS...`, or it behind a wrapper such as
#                               valgrind) with `--host 127.0.0.1 --port P` added (and `--audiosocket-port A`),
#                               its stdout and stderr in LOG; sets AIPBX_PID, AIPBX_PORT (and AIPBX_AS_PORT),
#                               AIPBX_STARTED (when it was started, seconds since the epoch) and returns once
#                               GET /healthz answers
#   start_server LOG URL COMMAND...
#                               the same for any server, whose port the caller chose: returns once URL answers
#   stop_aipbx [PID...]         SIGTERM, then SIGKILL after $BENCH_STOP_SECONDS; waits for each to be gone
#                               (default: the last server started)
#   cpu_seconds_of PID...       user + system CPU seconds of the processes so far, all their threads, summed;
#                               fails if one of them is gone
#   load1                       the 1-minute load average
#
# A server that exits or does not answer within $BENCH_READY_SECONDS (default 30) is stopped, the end of
# its log printed, and start_aipbx / start_server return 1 (under `set -e`, the script ends).
#
# On exit (EXIT trap, installed here; SIGINT and SIGTERM exit 130 through it): every server still running
# is stopped, then the script's own bench_cleanup function runs if it defines one, then $work is removed,
# or kept and named when $keep is 1.

# shellcheck disable=SC2034  # read by the scripts
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_READY_SECONDS=${BENCH_READY_SECONDS:-30}
BENCH_STOP_SECONDS=${BENCH_STOP_SECONDS:-30}
AIPBX_PID=""
AIPBX_PORT=""
AIPBX_AS_PORT=""
AIPBX_STARTED=""
work=""
bench_pids=()

need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null ||
      { echo "$(basename "$0"): $tool is missing (run scripts/install-deps.sh)" >&2; exit 2; }
  done
}

need_built() {
  local file
  for file in "$@"; do
    [ -x "$file" ] ||
      { echo "$(basename "$0"): no executable at $file (build it first: cmake --build --preset release)" >&2; exit 2; }
  done
}

make_work_dir() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
}

free_port() {
  python3 - "${1:-1}" <<'PY'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in sockets))
PY
}

start_aipbx() {
  local ports=()
  if [ "$1" = --audiosocket ]; then
    shift
    mapfile -t ports < <(free_port 2)
    AIPBX_AS_PORT=${ports[1]}
  else
    ports=("$(free_port)")
    AIPBX_AS_PORT=""
  fi
  AIPBX_PORT=${ports[0]}
  local log=$1
  shift
  local listen=(--host 127.0.0.1 --port "$AIPBX_PORT")
  [ -n "$AIPBX_AS_PORT" ] && listen+=(--audiosocket-port "$AIPBX_AS_PORT")
  start_server "$log" "http://127.0.0.1:$AIPBX_PORT/healthz" "$@" "${listen[@]}"
}

start_server() {
  local log=$1 url=$2
  shift 2
  "$@" >"$log" 2>&1 &
  AIPBX_PID=$!
  # shellcheck disable=SC2034  # read by the scripts
  AIPBX_STARTED=$(date +%s.%N)
  bench_pids+=("$AIPBX_PID")
  wait_answer "$url" "$log" && return 0
  stop_aipbx "$AIPBX_PID"
  return 1
}

# wait_answer URL LOG: until URL answers (0), or the server $AIPBX_PID exits or the time is up (1, with the
# end of LOG).
wait_answer() {
  local url=$1 log=$2 i
  for ((i = 0; i < BENCH_READY_SECONDS * 10; i++)); do
    if ! kill -0 "$AIPBX_PID" 2>/dev/null; then
      echo "$(basename "$0"): the server exited before answering $url; the end of its log:" >&2
      tail -n 50 "$log" >&2
      return 1
    fi
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): the server did not answer $url within ${BENCH_READY_SECONDS} s; the end of its log:" >&2
  tail -n 50 "$log" >&2
  return 1
}

stop_aipbx() {
  if (($# == 0)); then
    [ -n "$AIPBX_PID" ] || return 0
    set -- "$AIPBX_PID"
  fi
  local pid
  for pid in "$@"; do stop_one "$pid"; done
}

stop_one() {
  local pid=$1 i
  if kill -TERM "$pid" 2>/dev/null; then
    for ((i = 0; i < BENCH_STOP_SECONDS * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "  (pid $pid ignored SIGTERM for ${BENCH_STOP_SECONDS} s: SIGKILL)" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

forget_pid() {
  local i
  for i in "${!bench_pids[@]}"; do
    [ "${bench_pids[$i]}" = "$1" ] && unset 'bench_pids[i]'
  done
  [ "$AIPBX_PID" = "$1" ] && AIPBX_PID=""
  return 0
}

cpu_seconds_of() {
  (($#)) || return 1
  local pid stats=()
  for pid in "$@"; do stats+=("/proc/$pid/stat"); done
  awk -v tck="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); s += $12 + $13 } END { printf "%.2f\n", s / tck }' "${stats[@]}"
}

load1() { cut -d' ' -f1 /proc/loadavg; }

bench_exit() {
  ((${#bench_pids[@]} == 0)) || stop_aipbx "${bench_pids[@]}"
  if declare -F bench_cleanup >/dev/null; then bench_cleanup || true; fi
  [ -n "$work" ] || return 0
  if [ "${keep:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}

need_tools curl python3
trap bench_exit EXIT
trap 'exit 130' INT TERM
