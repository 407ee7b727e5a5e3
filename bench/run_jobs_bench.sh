#!/bin/bash
# run_jobs_bench.sh: how many AI jobs per second aipbx's queue completes when nothing else runs.
#
#   bench/run_jobs_bench.sh [options] [AIPBX_BINARY]
#
# 1. Fills a fresh SQLite file with a backlog: aipbx with --workers 0 (it only queues) takes wrk's ingest
#    load (bench/wrk/ingest.lua, one job per packet) for --fill seconds, then stops.
# 2. For each --workers value, on a copy of that file: starts aipbx with the mock engine at zero delay
#    (--mock-delay-ms 0:0, --mock-failure-rate F, retries after 10 ms) and times how long the workers take
#    until no job is queued or running (polled with sqlite3 every 50 ms). jobs/s = backlog / time.
#
# Prints one row per run: workers, backlog, seconds, jobs/s, attempts/s, succeeded, dead, server CPU.
# Loopback only; every process it starts is stopped on exit; each step has a time limit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/aipbx_bench.sh
source "$here/lib/aipbx_bench.sh"
aipbx_bin="$root/build/release/src/app/aipbx"
fill=4
workers_list="4 16 64"
failure_rate=0
limit=300
keep=0

usage() {
  cat <<EOF
usage: $0 [options] [AIPBX_BINARY]
  --fill S              seconds of ingest load that build the backlog (default $fill)
  --workers "L"         --workers values to run, one drain each (default "$workers_list")
  --failure-rate F      mock failure rate during the drain (default $failure_rate)
  --limit S             give up on a drain after S seconds (default $limit)
  --keep                keep the temporary directory
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --fill) fill=$2; shift 2 ;;
    --workers) workers_list=$2; shift 2 ;;
    --failure-rate) failure_rate=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) aipbx_bin=$1; shift ;;
  esac
done
need_tools wrk sqlite3
need_built "$aipbx_bin"
make_work_dir aipbx-jobs-bench

q() { sqlite3 -cmd ".timeout 10000" "$1" "$2"; }

# 1. The backlog.
start_aipbx "$work/server.log" "$aipbx_bin" serve --db "$work/backlog.db" --workers 0 --log-level warning
timeout $((fill + 40)) wrk -t2 -c64 -d"${fill}s" -s "$here/wrk/ingest.lua" "http://127.0.0.1:$AIPBX_PORT" -- \
  threads=2 calls=128 prefix="jobs$RANDOM" >"$work/fill.txt" 2>&1
stop_aipbx
backlog=$(q "$work/backlog.db" "SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
echo "backlog: $backlog queued jobs ($(grep -o 'ok_rps=[0-9.]*' "$work/fill.txt"))" >&2

printf '%-8s %8s %9s %9s %11s %10s %6s %8s\n' workers backlog seconds 'jobs/s' 'attempts/s' succeeded dead 'srv cores'
status=0
for w in $workers_list; do
  cp "$work/backlog.db" "$work/run.db"
  rm -f "$work/run.db-wal" "$work/run.db-shm"
  # The drain starts with the server, before it answers: the time and CPU count from its start.
  start_aipbx "$work/server-$w.log" "$aipbx_bin" serve --db "$work/run.db" --workers "$w" \
    --mock-delay-ms 0:0 --mock-failure-rate "$failure_rate" --retry-base-delay 10ms --retry-max-delay 10ms \
    --log-level warning
  t0=$AIPBX_STARTED
  while :; do
    left=$(q "$work/run.db" "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")
    [ "$left" = 0 ] && break
    if python3 -c "import sys, time; sys.exit(0 if time.time() - $t0 > $limit else 1)"; then
      echo "workers $w: $left jobs left after ${limit}s" >&2; status=1; break
    fi
    sleep 0.05
  done
  t1=$(date +%s.%N)
  cpu=$(cpu_seconds_of "$AIPBX_PID")
  stop_aipbx
  IFS='|' read -r ok dead attempts <<<"$(q "$work/run.db" \
    "SELECT SUM(state = 'succeeded'), SUM(state = 'dead'), SUM(attempts) FROM jobs")"
  python3 -c "
secs = $t1 - $t0
print(f'{$w:<8} {$backlog:>8} {secs:>9.2f} {$backlog / secs:>9.0f} {$attempts / secs:>11.0f} {$ok:>10} {$dead:>6} {$cpu / secs:>8.2f}')"
done
exit $status
