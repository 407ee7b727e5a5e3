#!/bin/bash
# run_stream_bench.sh: how many live calls one aipbx holds per protocol, against its /healthz ceiling, in one run.
#
#   bench/run_stream_bench.sh [options] [AIPBX_BINARY]
#
# First the ceiling: aipbx answers `wrk -c64 GET /healthz` (no body, no JSON, no storage) for --ceiling-seconds,
# with its CPU per request from /proc. Then for each protocol and each number of calls, a fresh aipbx on a
# fresh SQLite file takes aipbx_stream_load's open-loop calls (one 20 ms frame every 20 ms per call, on
# schedule) for --seconds; the load generator reports the server's receive -> durable lag (from /metrics),
# the answer latency from the scheduled send where the protocol answers (http, fork-seq), the CPU per frame
# of the server and of itself, and checks that every frame sent was stored. A number of calls "holds" when
# p99 lag <= 20 ms, every frame is stored, no connection was closed and no request refused.
#
# Options:
#   --protocols "L"   (default "twilio fork fork-seq audiosocket http")
#   --calls "L"       numbers of calls to try, ascending (default "250 500 1000 1500 2000"); a protocol stops
#                     at its first number that does not hold
#   --seconds S       seconds of audio per call per run (default 10)
#   --ceiling-seconds S (default 5)
#   --aipbx-arg ARG   extra argument for aipbx serve (repeatable)
#   --db-dir DIR      put the databases in DIR (e.g. /dev/shm, to see what the disk's sync costs; then
#                     nothing is durable)
#   --keep            keep the temporary directory (databases, logs)
#   --build NAME:BIN  compare builds (repeatable): each number of calls runs on each build in turn, the
#                     same load, so that machine drift hits them alike; every listed number is run
#   --rounds N        run the builds' turns N times over (default 1)
# Builds nothing: pass the binary (default build/release/src/app/aipbx); aipbx_stream_load is taken beside
# it in build/release/bench. Needs wrk. Loopback only; every process it starts is stopped on exit.
# Besides the load generator's figures, each row has the server's mean commit time, the pages its commits
# appended to the write-ahead log per stored frame, and the WAL's restarts (the writer's own checkpoints:
# count x mean length), all from /metrics (embedded store). The disk lines give the sync of an append and the
# sync of rewritten random pages, which a checkpoint waits for.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/aipbx_bench.sh
source "$here/lib/aipbx_bench.sh"
aipbx_bin="$root/build/release/src/app/aipbx"
load_bin="$root/build/release/bench/aipbx_stream_load"
protocols="twilio fork fork-seq audiosocket http"
calls_list="250 500 1000 1500 2000"
seconds=10
ceiling_seconds=5
keep=0
db_dir=""
extra=()
builds=()
rounds=1
while [ $# -gt 0 ]; do
  case "$1" in
    --protocols) protocols=$2; shift 2 ;;
    --calls) calls_list=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --ceiling-seconds) ceiling_seconds=$2; shift 2 ;;
    --aipbx-arg) extra+=("$2"); shift 2 ;;
    --keep) keep=1; shift ;;
    --db-dir) db_dir=$2; shift 2 ;;
    --build) builds+=("$2"); shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) aipbx_bin=$1; shift ;;
  esac
done
need_tools wrk
comparing=1
if ((${#builds[@]} == 0)); then
  builds=("aipbx:$aipbx_bin")
  comparing=0
fi
((rounds > 1)) && comparing=1
for b in "${builds[@]}"; do need_built "${b#*:}"; done
aipbx_bin=${builds[0]#*:}
need_built "$load_bin"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

make_work_dir aipbx-stream-bench
bench_cleanup() {
  [ -z "$db_dir" ] || rm -rf "$db_dir/aipbx-stream-bench-$$"
}

# Starts aipbx on a fresh database (start_aipbx: AIPBX_PID, AIPBX_PORT, AIPBX_AS_PORT).
start_run() {
  local name=$1
  mkdir -p "$work/$name"
  local db="$work/$name/aipbx.db"
  if [ -n "$db_dir" ]; then
    mkdir -p "$db_dir/aipbx-stream-bench-$$"
    rm -f "$db_dir/aipbx-stream-bench-$$"/aipbx.db*
    db="$db_dir/aipbx-stream-bench-$$/aipbx.db"
  fi
  start_aipbx --audiosocket "$work/$name/aipbx.log" "${2:-$aipbx_bin}" serve --db "$db" --log-level warn \
    --max-streams 100000 --shutdown-timeout 5s "${extra[@]}"
}

echo "machine: $(nproc) cores, $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
for b in "${builds[@]}"; do echo "build ${b%%:*}: ${b#*:}"; done
echo "aipbx: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || true) ${extra[*]}"

# The disk's sync time, which every durable answer waits for: 8 KiB appended and fdatasync'd, 100 times.
disk_sync=$(python3 - "${db_dir:-$work}" <<'PY'
import os, sys, time
fd = os.open(os.path.join(sys.argv[1], "sync-probe"), os.O_WRONLY | os.O_CREAT)
t = []
for _ in range(100):
    os.write(fd, b"x" * 8192)
    s = time.perf_counter(); os.fdatasync(fd); t.append((time.perf_counter() - s) * 1000)
t.sort()
print("p50 %.2f ms, p99 %.2f ms" % (t[50], t[98]))
PY
)
echo "disk: fdatasync of an 8 KiB append in the database's directory: $disk_sync"
# What a checkpoint's sync of the database file costs: N random 4 KiB pages of a 64 MiB file rewritten, then
# fdatasync (the median of 5 for each N). The WAL's restart waits for one such sync with the writer paused.
page_sync=$(python3 - "${db_dir:-$work}" <<'PY'
import os, random, sys, time
path = os.path.join(sys.argv[1], "page-probe")
fd = os.open(path, os.O_RDWR | os.O_CREAT)
size = 64 << 20
for at in range(0, size, 1 << 20):
    os.pwrite(fd, os.urandom(1 << 20), at)
os.fsync(fd)
page, rng, out = os.urandom(4096), random.Random(1), []
for n in (250, 1000, 4000):
    t = []
    for _ in range(5):
        for p in rng.sample(range(size // 4096), n):
            os.pwrite(fd, page, p * 4096)
        s = time.perf_counter(); os.fdatasync(fd); t.append((time.perf_counter() - s) * 1000)
    out.append("%d pages %.1f ms" % (n, sorted(t)[2]))
os.close(fd); os.unlink(path)
print(", ".join(out))
PY
)
echo "disk: fdatasync after rewriting random 4 KiB pages of a 64 MiB file: $page_sync"

start_run ceiling
before=$(cpu_seconds_of "$AIPBX_PID")
wrk -t2 -c64 -d"${ceiling_seconds}s" "http://127.0.0.1:$AIPBX_PORT/healthz" >"$work/ceiling.txt"
after=$(cpu_seconds_of "$AIPBX_PID")
stop_aipbx
ceiling_rps=$(awk '/Requests\/sec/ { print $2 }' "$work/ceiling.txt")
ceiling_requests=$(awk '/requests in/ { print $1 }' "$work/ceiling.txt")
healthz_us=$(awk -v a="$after" -v b="$before" -v n="$ceiling_requests" 'BEGIN { printf "%.1f", (a - b) * 1e6 / n }')
echo "ceiling: GET /healthz at $ceiling_rps requests/s (wrk -t2 -c64, ${ceiling_seconds}s), server CPU $healthz_us µs per request"
echo
printf '%-8s %-12s %6s %9s %9s %9s %8s %8s %9s %9s %9s %9s %7s %9s %8s %11s %s\n' build protocol calls frames/s \
  sent stored lag_p50 lag_p99 within20 answer99 server_us load_us x_healthz commit_ms wal_pf restarts verdict
declare -A held
# One run: a fresh aipbx of build $1 (name:binary) takes $3 calls over protocol $2 (round $4); prints its row.
run_one() {
  local build=${1%%:*} bin=${1#*:} protocol=$2 calls=$3
  local name="$build-$protocol-$calls-$4" ramp out metrics
  start_run "$name" "$bin"
  ramp=$(awk -v n="$calls" 'BEGIN { printf "%.1f", n / 250 }')
  set +e
  out=$("$load_bin" --protocol "$protocol" --calls "$calls" --seconds "$seconds" --ramp "$ramp" --port "$AIPBX_PORT" \
    --audiosocket-port "$AIPBX_AS_PORT" --server-pid "$AIPBX_PID" --prefix "b$calls" --json 2>"$work/$name/load.err")
  set -e
  metrics=$(curl -s "http://127.0.0.1:$AIPBX_PORT/metrics" || true)
  stop_aipbx
  if [ -z "$out" ]; then
    printf '%-8s %-12s %6s  load generator failed: %s\n' "$build" "$protocol" "$calls" "$(head -c 200 "$work/$name/load.err")"
    return 1
  fi
  echo "$out" >>"$work/results.jsonl"
  python3 - "$out" "$healthz_us" "$build" "$metrics" <<'EOF'
import json, re, sys
r = json.loads(sys.argv[1]); h = float(sys.argv[2]); m = sys.argv[4]
def metric(name):
    found = re.search(r"^" + name + r" (\S+)", m, re.M)
    return float(found.group(1)) if found else None
commits, commit_s = metric("aipbx_commit_seconds_count"), metric("aipbx_commit_seconds_sum")
pages = metric("aipbx_log_pages_total")
commit_ms = "%.2f" % (commit_s / commits * 1000) if commits else "-"
wal = "%.2f" % (pages / r["stored"]) if pages is not None and r["stored"] else "-"
# The writer's own checkpoints: each is the pause that lets the WAL start over (the writer copies what the
# checkpointer left and syncs the file while the next batch waits): how many, and their mean length.
restarts = metric(r'aipbx_checkpoint_seconds_count\{by="writer"\}')
restart_s = metric(r'aipbx_checkpoint_seconds_sum\{by="writer"\}')
restart = "%dx%.0fms" % (restarts, restart_s / restarts * 1000) if restarts else "0"
holds = r["ok"] and r["lag_p99_ms"] <= 20
ans = "%.1f" % r["answer_p99_ms"] if r["protocol"] in ("http", "fork-seq") else "-"
print("%-8s %-12s %6d %9.0f %9d %9d %8.2f %8.2f %8.1f%% %9s %9.1f %9.1f %7.1fx %9s %8s %11s %s" % (
    sys.argv[3], r["protocol"], r["calls"], r["frames_per_s"], r["sent"], r["stored"], r["lag_p50_ms"], r["lag_p99_ms"],
    100 * r["lag_within_20ms"], ans, r["server_us_per_frame"], r["load_us_per_frame"],
    r["server_us_per_frame"] / h if h > 0 else 0, commit_ms, wal, restart, "holds" if holds else "does not hold"))
EOF
}
for protocol in $protocols; do
  held[$protocol]=0
  for calls in $calls_list; do
    verdict=""
    for ((round = 1; round <= rounds; round++)); do
      for b in "${builds[@]}"; do
        # In this shell, not a command substitution's: the servers it starts are this script's to stop on exit.
        if ! run_one "$b" "$protocol" "$calls" "$round" >"$work/row"; then
          cat "$work/row"
          break 3
        fi
        verdict=$(cat "$work/row")
        echo "$verdict"
      done
    done
    ((comparing)) && continue
    case "$verdict" in
      *"does not hold") break ;;
      *) held[$protocol]=$calls ;;
    esac
  done
done
echo
((comparing)) && exit 0
for protocol in $protocols; do
  echo "$protocol: holds ${held[$protocol]} calls ($((held[$protocol] * 50)) frames/s) with p99 receive->durable lag <= 20 ms"
done
