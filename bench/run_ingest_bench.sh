#!/bin/bash
# run_ingest_bench.sh: durable ingest load, aipbx against the seed's Python stack, in one run.
#
#   bench/run_ingest_bench.sh [options] [AIPBX_BINARY]
#
# For each server in turn (aipbx once per --aipbx-threads value, then the seed as published, then the seed
# with its SQL echo and access log off), on 127.0.0.1 and a fresh SQLite file in a temporary directory:
# start it, wait until it answers, run the same wrk load (bench/wrk/ingest.lua: valid packets over
# --calls calls, increasing sequences per call), stop it, then count the rows in `packets` with sqlite3.
# Every 2xx must be a stored row (durable means stored); rows beyond the 2xx count are requests that were
# in flight when wrk stopped (at most one per connection). Prints one table and the aipbx/seed ratio.
#
# With --pg-nodes "1 2", aipbx also runs on PostgreSQL (a throwaway server started with scripts/pg-cluster.sh
# on 127.0.0.1, a fresh database per run) with that many nodes, each loaded by a wrk of its own (the
# connections and calls split between them); the rate is the sum, the latencies the worst node's, the server
# CPU that of the nodes and of PostgreSQL together, and the stored rows are counted with psql. The server loads
# pg_stat_statements: after each PostgreSQL run, bench/pg_statements.sh reports where its execution time went
# (by statement, and per stored packet), and a last table gives, per run, PostgreSQL's execution time and CPU
# per packet beside aipbx's CPU per packet.
#
# With --build NAME:BINARY (repeatable), every aipbx run is made once per build, one build right after the
# other (before/after comparisons in one invocation); rows are labelled with NAME.
#
# With --subscribers "0 10", each aipbx run is made once per count, with that many Server-Sent Events
# subscribers (GET /v1/events, all read by one process, bench/event_subscribers.py, which counts each one's
# events and any slow_subscriber notice) connected before wrk starts and read until the server stops; the
# rate of each run with subscribers is given as a share of the run without, same configuration, same
# invocation, and each
# subscriber's event count is checked against the events the run committed (every one delivered, none cut).
#
# With --ceiling, aipbx first answers the same wrk load made of `GET /healthz` requests (no body, no JSON,
# no storage): the most requests per second this machine's HTTP path and wrk can exchange at all, against
# which the best ingest rate is also given as a share.
#
# Builds nothing: pass the binary (default build/release/src/app/aipbx). Needs wrk, sqlite3, curl,
# python3 and, for the seed, python3-fastapi python3-uvicorn python3-sqlalchemy python3-aiosqlite.
# Loopback only; every process it starts is stopped on exit (trap), and each step has a time limit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/aipbx_bench.sh
source "$here/lib/aipbx_bench.sh"

aipbx_bin="$root/build/release/src/app/aipbx"
duration=10s
connections=64
wrk_threads=2
calls=128
timeout=10s
aipbx_threads="2"
seed_dir="$root/../shared/peers/seed-fastapi"
seed_connections=""
run_seed=1
run_seed_quiet=1
run_aipbx=1
max_load=""
load_wait=600
keep=0
db_dir=""
extra_aipbx_args=()
variants=()
pg_nodes=""
run_ceiling=0
run_sqlite=1
builds=()
subscriber_counts="0"
subscribers_now=0

usage() {
  cat <<EOF
usage: $0 [options] [AIPBX_BINARY]
  --duration D          wrk duration per server (default $duration)
  --connections N       wrk connections (default $connections)
  --wrk-threads N       wrk threads; N must divide the connections (default $wrk_threads)
  --calls N             calls the packets are spread over (default $calls)
  --timeout D           wrk's response timeout; slower answers count as timeouts and leave the
                        latency histogram (default $timeout)
  --aipbx-threads "L"   aipbx --threads values to run, one run each (default "$aipbx_threads"; 0 = one per core)
  --aipbx-arg ARG       extra argument for aipbx serve (repeatable)
  --variant "NAME:ARGS" run aipbx once more per --aipbx-threads value with these extra arguments
                        (space-separated; repeatable). Without --variant, aipbx runs once as
                        configured; with them, once per variant, and each variant's rate is also
                        given as a ratio of the first variant's. Every aipbx row also counts the
                        run's AI jobs by state and the jobs finished per second during the load.
  --pg-nodes "L"        also run aipbx on PostgreSQL with each listed number of nodes (e.g. "1 2"),
                        after the SQLite runs (needs Debian's postgresql: scripts/install-deps.sh)
  --pg-top N            statements listed in each PostgreSQL run's pg_stat_statements report (default 8)
  --no-sqlite           skip aipbx's SQLite runs (the PostgreSQL runs and the seed still run)
  --build NAME:BINARY   run every aipbx configuration with this binary too, labelled NAME (repeatable;
                        with --build, AIPBX_BINARY is only used when no --build is given)
  --db-dir DIR          put aipbx's database in DIR instead of the temporary directory (e.g. /dev/shm
                        to see what the disk costs; then nothing is durable)
  --seed-dir DIR        the seed peer (default ../shared/peers/seed-fastapi)
  --seed-connections N  connections for the seed runs (default: --connections)
  --no-seed             skip both seed runs
  --no-seed-quiet       skip the "seed, logging off" run (SEED_SQL_ECHO=0 SEED_ACCESS_LOG=0)
  --no-aipbx            skip aipbx
  --ceiling             first load aipbx with GET /healthz only (calls=0 in ingest.lua): the HTTP ceiling
  --subscribers "L"     run each aipbx configuration once per count of event-stream subscribers (SSE,
                        GET /v1/events) listed (default "0")
  --max-load L          before each run, wait (up to --load-wait seconds) until the 1-minute load
                        average is below L; the load is printed with every run either way
  --load-wait S         (default $load_wait)
  --keep                keep the temporary directory (databases, server logs, wrk output)
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --wrk-threads) wrk_threads=$2; shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --aipbx-threads) aipbx_threads=$2; shift 2 ;;
    --aipbx-arg) extra_aipbx_args+=("$2"); shift 2 ;;
    --variant) variants+=("$2"); shift 2 ;;
    --db-dir) db_dir=$2; shift 2 ;;
    --pg-nodes) pg_nodes=$2; shift 2 ;;
    --pg-top) pg_top=$2; shift 2 ;;
    --no-sqlite) run_sqlite=0; shift ;;
    --build) builds+=("$2"); shift 2 ;;
    --seed-dir) seed_dir=$2; shift 2 ;;
    --seed-connections) seed_connections=$2; shift 2 ;;
    --no-seed) run_seed=0; run_seed_quiet=0; shift ;;
    --no-seed-quiet) run_seed_quiet=0; shift ;;
    --no-aipbx) run_aipbx=0; shift ;;
    --ceiling) run_ceiling=1; shift ;;
    --subscribers) subscriber_counts=$2; shift 2 ;;
    --max-load) max_load=$2; shift 2 ;;
    --load-wait) load_wait=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) aipbx_bin=$1; shift ;;
  esac
done
seed_connections=${seed_connections:-$connections}
pg_top=${pg_top:-8}
# Each build as NAME|BINARY; without --build, the one binary, unlabelled.
((${#builds[@]})) || builds=("|$aipbx_bin")
for i in "${!builds[@]}"; do
  b=${builds[$i]}
  if [[ "$b" != *"|"* ]]; then
    [[ "$b" == *:* ]] || { echo "--build wants NAME:BINARY, not $b" >&2; exit 2; }
    builds[$i]="${b%%:*}|${b#*:}"
  fi
done
load_calls=$calls  # what wrk is told; 0 for the ceiling run (GET /healthz only)

need_tools wrk sqlite3 timeout /usr/bin/time
if [ "$run_aipbx" = 1 ]; then
  for b in "${builds[@]}"; do need_built "${b#*|}"; done
fi
if [ "$run_seed" = 1 ] && [ ! -x "$seed_dir/run.sh" ]; then
  echo "no seed peer at $seed_dir/run.sh (use --seed-dir or --no-seed)" >&2
  exit 2
fi
if (( connections % wrk_threads != 0 || seed_connections % wrk_threads != 0 )); then
  echo "--wrk-threads ($wrk_threads) must divide the connections" >&2
  exit 2
fi

seconds_of() {  # 10s / 500ms / 2m / 10 -> whole seconds (rounded up)
  python3 -c '
import re, sys, math
m = re.fullmatch(r"([0-9.]+)(ms|s|m|h)?", sys.argv[1])
if not m: sys.exit(1)
v = float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]
print(max(1, math.ceil(v)))' "$1"
}
duration_s=$(seconds_of "$duration") || { echo "bad --duration $duration" >&2; exit 2; }
timeout_s=$(seconds_of "$timeout") || { echo "bad --timeout $timeout" >&2; exit 2; }

make_work_dir aipbx-bench
db_dirs=()
pg_dir=""
bench_cleanup() {
  [ -z "$pg_dir" ] || "$root/scripts/pg-cluster.sh" stop "$pg_dir" >/dev/null 2>&1 || true
  ((${#db_dirs[@]})) || return 0
  if [ "$keep" = 1 ]; then echo "kept ${db_dirs[*]}" >&2; else rm -rf "${db_dirs[@]}"; fi
}

wait_quiet() {
  [ -n "$max_load" ] || return 0
  local waited=0
  while python3 -c "import sys; sys.exit(0 if float('$(load1)') >= float('$max_load') else 1)"; do
    if (( waited >= load_wait )); then
      echo "  load $(load1) still >= $max_load after ${load_wait}s: measuring anyway" >&2
      return 0
    fi
    sleep 10
    waited=$((waited + 10))
  done
}

declare -a rows=()
declare -a jobrows=()
declare -a variant_rates=()
declare -a pg_rates=()
declare -a pg_reports=()
declare -a pg_costs=()
declare -a subrows=()
status=0
best_aipbx=""
seed_rate=""
seed_quiet_rate=""

# run_one NAME CONNS DB -- COMMAND...: starts COMMAND (a server on $port), loads it, stops it, checks DB.
run_one() {
  local name=$1 conns=$2 db=$3 ready_path=$4
  shift 5
  local tag=${name//[^a-zA-Z0-9]/}
  local log="$work/$tag.server.log" out="$work/$tag.wrk.txt"
  wait_quiet
  local load_before
  load_before=$(load1)
  echo "== $name: load $load_before, $(nproc) cores; wrk -t$wrk_threads -c$conns -d$duration --timeout $timeout, $calls calls" >&2
  start_server "$log" "http://127.0.0.1:$port$ready_path" "$@" || { status=1; return 0; }
  local pid=$AIPBX_PID
  local sub_pids=()
  start_subscribers "$tag" "$subscribers_now" sub_pids || { status=1; stop_aipbx "$pid"; return 0; }
  local prefix="r$(date +%s)$RANDOM$tag"
  local cpu_before t_start t_end
  cpu_before=$(cpu_seconds_of "$pid") || cpu_before="?"
  t_start=$(date +%s.%N)
  timeout $((duration_s + timeout_s + 30)) /usr/bin/time -f '%U %S' -o "$out.time" \
    wrk -t"$wrk_threads" -c"$conns" -d"$duration" --timeout "$timeout" --latency \
      -s "$here/wrk/ingest.lua" "http://127.0.0.1:$port" -- \
      threads="$wrk_threads" calls="$load_calls" prefix="$prefix" >"$out" 2>&1 || {
    echo "wrk failed:" >&2; cat "$out" >&2; status=1
  }
  local load_after cpu_after
  t_end=$(date +%s.%N)
  load_after=$(load1)
  cpu_after=$(cpu_seconds_of "$pid") || cpu_after="?"
  # The subscribers are given what the last requests committed, then end with the server (its resume
  # notice, reason shutdown).
  local committed_before=""
  if ((${#sub_pids[@]})); then
    sleep 1
    committed_before=$(sqlite3 -cmd ".timeout 10000" "$db" "SELECT last_id FROM event_log_state" 2>/dev/null) || committed_before="?"
  fi
  stop_aipbx "$pid"
  local sp
  for sp in "${sub_pids[@]}"; do wait "$sp" 2>/dev/null || true; done
  local line
  line=$(grep '^INGEST_RESULT' "$out" || true)
  if [ -z "$line" ]; then
    echo "no result from wrk for $name:" >&2; cat "$out" >&2; status=1; return 0
  fi
  sed -n '/^-----/,/^socket errors/p' "$out" | sed 's/^/   /' >&2
  declare -A r=()
  local kv
  for kv in ${line#INGEST_RESULT }; do r[${kv%%=*}]=${kv#*=}; done
  local stored
  stored=$(sqlite3 -cmd ".timeout 10000" "$db" "SELECT COUNT(*) FROM packets WHERE call_id LIKE '$prefix-%'" 2>&1) || stored="?"
  local check
  if [ "$load_calls" = 0 ]; then
    check="n/a (GET /healthz, nothing stored)"
  elif ! [[ "$stored" =~ ^[0-9]+$ ]]; then
    check="sqlite3 failed: $stored"; status=1
  elif (( stored < r[ok] )); then
    check="LOST $((r[ok] - stored)) acknowledged"; status=1
  elif (( stored - r[ok] > conns )); then
    check="$((stored - r[ok])) unacknowledged rows > connections"; status=1
  else
    check="ok (+$((stored - r[ok])) in flight at stop)"
  fi
  local sock_err=$(( r[connect_err] + r[read_err] + r[write_err] ))
  # CPU: the server's (from /proc, over the load only) as cores busy and microseconds per response, and
  # wrk's own, which shares the same cores.
  local cpu
  cpu=$(python3 -c '
import sys
b, a, secs, n, wrk = sys.argv[1:]
nan = float("nan")
try:
    srv = float(a) - float(b)
except ValueError:
    srv = nan
try:
    w = sum(float(x) for x in wrk.split())
except ValueError:
    w = nan
secs, n = float(secs), int(n)
per = srv * 1e6 / n if n else nan
print(f"{srv / secs:.2f} {per:.0f} {w / secs:.2f}")' \
    "$cpu_before" "$cpu_after" "${r[seconds]}" "${r[responses]}" "$(tail -1 "$out.time" 2>/dev/null)")
  local srv_cores srv_us wrk_cores
  read -r srv_cores srv_us wrk_cores <<<"$cpu"
  rows+=("$(printf '%-22s %5s %8.0f %8.2f %8.2f %8.2f %7s %7s %8s %8s %8s %5s %6s %5s  %s' \
    "$name" "$conns" "${r[ok_rps]}" "${r[p50_ms]}" "${r[p99_ms]}" "${r[p999_ms]}" "${r[non2xx]}" \
    "$sock_err" "${r[timeouts]}" "${r[ok]}" "$stored" "$srv_cores" "$srv_us" "$wrk_cores" \
    "$load_before/$load_after  $check")")
  last_rate=${r[ok_rps]}
  [ "$load_calls" = 0 ] && return 0
  ((${#sub_pids[@]})) && count_subscribers "$name" "$tag" "$subscribers_now" "$db" "${r[ok_rps]}" "$committed_before"
  # The AI jobs of this run's calls, when the server keeps a jobs table (aipbx): by state now, and how
  # many finished (succeeded or dead) while the load ran.
  local jobs
  jobs=$(sqlite3 -cmd ".timeout 10000" "$db" "SELECT
      COUNT(*), SUM(state = 'succeeded'), SUM(state = 'dead'), SUM(state IN ('queued', 'running')),
      SUM(finished_at IS NOT NULL AND finished_at <= $t_end) FROM jobs WHERE call_id LIKE '$prefix-%'" 2>/dev/null) || jobs=""
  if [ -n "$jobs" ]; then
    local total ok dead waiting done_in_load
    IFS='|' read -r total ok dead waiting done_in_load <<<"$jobs"
    jobrows+=("$(printf '%-34s %8s %9s %6s %8s %10s' "$name" "${total:-0}" "${ok:-0}" "${dead:-0}" "${waiting:-0}" \
      "$(python3 -c "print(f'{${done_in_load:-0} / ($t_end - $t_start):.0f}')")")")
  fi
}

# start_subscribers TAG N ARRAY: N SSE subscribers of the server on $port, all read by one process
# (bench/event_subscribers.py; its pid appended to ARRAY), which writes each one's count to $work/TAG.subs
# once the server closes them; returns once the server counts them all.
start_subscribers() {
  local tag=$1 n=$2 i
  local -n into=$3
  (( n > 0 )) || return 0
  python3 "$here/event_subscribers.py" "$port" "$n" "$work/$tag.subs" >"$work/$tag.subs.log" 2>&1 &
  into+=("$!")
  for i in $(seq 100); do
    curl -s "http://127.0.0.1:$port/metrics" | grep -q "^aipbx_event_subscribers{transport=\"sse\"} $n\$" && return 0
    sleep 0.1
  done
  echo "the $n subscribers did not all connect:" >&2
  cat "$work/$tag.subs.log" >&2
  return 1
}

# count_subscribers NAME TAG N DB RATE BEFORE: what each subscriber got. Subscribed before the load to a
# fresh log, each must have had every event up to the id its resume notice names (the server's stop), none
# missed, none twice; and that id at least what was committed before the stop (BEFORE: the 1 s after the
# load lets them catch up).
count_subscribers() {
  local name=$1 tag=$2 db=$4 rate=$5 before=$6
  local committed summary
  committed=$(sqlite3 -cmd ".timeout 10000" "$db" "SELECT last_id FROM event_log_state" 2>/dev/null) || committed="?"
  summary=$(python3 - "$work/$tag.subs" "$3" "$before" <<'PY'
import sys
try:
    rows = [tuple(int(x) for x in l.split()) for l in open(sys.argv[1]) if l.strip()]
except OSError:
    rows = []
n, before = int(sys.argv[2]), sys.argv[3]
if len(rows) != n:
    print(f"-1 -1 {n} MISSED: {len(rows)} of {n} subscribers reported")
else:
    lo, hi, cut = min(r[0] for r in rows), max(r[0] for r in rows), sum(r[1] for r in rows)
    bad = [r for r in rows if r[0] != r[2]]
    behind = [r for r in rows if before.isdigit() and r[2] < int(before)]
    if bad or cut:
        check = f"MISSED: {len(bad)} subscribers' counts differ from their resume id, {cut} cut"
    elif behind:
        check = f"BEHIND: {len(behind)} stopped before id {before} (complete up to their resume id)"
    else:
        check = "every event to every subscriber"
    print(lo, hi, cut, check)
PY
)
  local min max cut check
  read -r min max cut check <<<"$summary"
  [[ "$check" == MISSED* ]] && status=1
  subrows+=("$name|$3|$rate|$committed|$min|$max|$cut|$check")
}

ceiling_rate=""
if [ "$run_aipbx" = 1 ] && [ "$run_ceiling" = 1 ]; then
  t=${aipbx_threads%% *}
  port=$(free_port)
  load_calls=0
  run_one "aipbx GET /healthz -t$t" "$connections" "$work/ceiling.db" /healthz -- \
    "${builds[0]#*|}" serve --host 127.0.0.1 --port "$port" --db "$work/ceiling.db" --threads "$t" --log-level warning \
    --workers 0 "${extra_aipbx_args[@]}"
  load_calls=$calls
  ceiling_rate=$last_rate
fi
if [ "$run_aipbx" = 1 ] && [ "$run_sqlite" = 1 ]; then
  ((${#variants[@]})) || variants=(":")
  vi=0
  for variant in "${variants[@]}"; do
    vname=${variant%%:*}
    read -r -a vargs <<<"${variant#*:}"
    for t in $aipbx_threads; do
      for bi in "${!builds[@]}"; do
        bname=${builds[$bi]%%|*}
        if [ -n "$db_dir" ]; then
          db_sub=$(mktemp -d "$db_dir/aipbx-bench-db.XXXXXX")
          db_dirs+=("$db_sub")
          db_base="$db_sub/aipbx-v$vi-t$t-b$bi"
        else
          db_base="$work/aipbx-v$vi-t$t-b$bi"
        fi
        ri=0
        for subscribers_now in $subscriber_counts; do
        port=$(free_port)
        db="$db_base-r$ri-s$subscribers_now.db"
        ri=$((ri + 1))
        label="aipbx --threads $t"
        [ -n "$vname" ] && label="aipbx $vname -t$t"
        [ -n "$bname" ] && label="$bname $label"
        (( subscribers_now > 0 )) && label="$label +${subscribers_now}sub"
        run_one "$label" "$connections" "$db" /healthz -- \
          "${builds[$bi]#*|}" serve --host 127.0.0.1 --port "$port" --db "$db" --threads "$t" --log-level warning \
          "${extra_aipbx_args[@]}" "${vargs[@]}"
        if [ -z "$best_aipbx" ] || python3 -c "import sys; sys.exit(0 if $last_rate > $best_aipbx else 1)"; then
          best_aipbx=$last_rate
        fi
        [ -n "$vname" ] && variant_rates+=("$label|$last_rate")
        (( subscribers_now == 0 )) && subrows+=("$label|0|$last_rate")
        done
        subscribers_now=0
      done
    done
    vi=$((vi + 1))
  done
fi
# run_pg N BUILD: aipbx (the build with that index) with N nodes on one fresh PostgreSQL database, one wrk per
# node; afterwards pg_stat_statements' figures for the run.
pg_ticks() {  # CPU ticks of the postmaster and its children (the backends, and those that ended)
  local postmaster total=0 p
  postmaster=$(head -1 "$pg_dir/data/postmaster.pid")
  total=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$postmaster/stat" 2>/dev/null || echo 0)
  for p in $(pgrep -P "$postmaster"); do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
# "TABLE t ... WHERE <call id>", for a condition on the call id of TABLE's rows (packets or jobs): the
# schema from version 11 on keys them by calls.key, earlier ones by the call's id (a "before" build).
rows_of_calls() {
  local keyed
  keyed=$(psql -At "$1" -c "SELECT 1 FROM information_schema.columns WHERE table_name = '$2' AND column_name = 'call_key'")
  if [ "$keyed" = 1 ]; then echo "$2 t JOIN calls c ON c.key = t.call_key WHERE c.id"; else echo "$2 t WHERE t.call_id"; fi
}
run_pg() {
  local n=$1 bi=$2 t=${aipbx_threads%% *}
  local bname=${builds[$bi]%%|*} bin=${builds[$bi]#*|}
  local name="aipbx pg ${n} node(s) -t$t"
  [ -n "$bname" ] && name="$bname $name"
  local tag="pg$n-b$bi"
  local conns=$((connections / n)) node_calls=$((calls / n)) wt=$((wrk_threads > n ? wrk_threads / n : 1))
  (( conns % wt == 0 )) || wt=1
  wait_quiet
  local load_before
  load_before=$(load1)
  echo "== $name: load $load_before, $(nproc) cores; $n x wrk -t$wt -c$conns -d$duration --timeout $timeout, $calls calls" >&2
  local dbname="bench_${n}_$RANDOM"
  psql -q "$pg_url" -c "CREATE DATABASE $dbname" >/dev/null || { status=1; return 0; }
  local url="${pg_url%/*}/$dbname"
  local node_pids=() ports=() i
  for ((i = 0; i < n; i++)); do
    start_aipbx "$work/$tag-$i.server.log" "$bin" serve --db "$url" --threads "$t" --log-level warning \
      --node-name "bench-$i" "${extra_aipbx_args[@]}" || { status=1; stop_aipbx "${node_pids[@]}"; return 0; }
    node_pids+=("$AIPBX_PID")
    ports+=("$AIPBX_PORT")
  done
  "$here/pg_statements.sh" reset "$url" || { echo "cannot reset pg_stat_statements" >&2; status=1; }
  local nodes_before pg_before p t_start t_end
  nodes_before=$(cpu_seconds_of "${node_pids[@]}")
  pg_before=$(pg_ticks)
  t_start=$(date +%s.%N)
  local prefix="r$(date +%s)$RANDOM$tag" wrk_pids=()
  for ((i = 0; i < n; i++)); do
    timeout $((duration_s + timeout_s + 30)) /usr/bin/time -f '%U %S' -o "$work/$tag-$i.wrk.time" \
      wrk -t"$wt" -c"$conns" -d"$duration" --timeout "$timeout" --latency \
        -s "$here/wrk/ingest.lua" "http://127.0.0.1:${ports[$i]}" -- \
        threads="$wt" calls="$node_calls" prefix="$prefix-n$i" >"$work/$tag-$i.wrk.txt" 2>&1 &
    wrk_pids+=("$!")
  done
  for p in "${wrk_pids[@]}"; do wait "$p" || { echo "wrk failed" >&2; status=1; }; done
  t_end=$(date +%s.%N)
  local nodes_after pg_after load_after
  nodes_after=$(cpu_seconds_of "${node_pids[@]}")
  pg_after=$(pg_ticks)
  load_after=$(load1)
  stop_aipbx "${node_pids[@]}"
  # Sum of the nodes' rates and counts; the worst node's latencies.
  local sum
  sum=$(python3 - "$work" "$tag" "$n" <<'PY'
import sys, glob
work, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
agg = {"ok": 0, "ok_rps": 0.0, "non2xx": 0, "responses": 0, "seconds": 0.0, "sockerr": 0, "timeouts": 0,
       "p50_ms": 0.0, "p99_ms": 0.0, "p999_ms": 0.0, "wrk_cpu": 0.0}
for i in range(n):
    line = next((l for l in open(f"{work}/{tag}-{i}.wrk.txt") if l.startswith("INGEST_RESULT")), None)
    if line is None:
        print("missing"); sys.exit(0)
    r = dict(kv.split("=", 1) for kv in line.split()[1:])
    agg["ok"] += int(r["ok"]); agg["ok_rps"] += float(r["ok_rps"]); agg["non2xx"] += int(r["non2xx"])
    agg["responses"] += int(r["responses"]); agg["seconds"] = max(agg["seconds"], float(r["seconds"]))
    agg["sockerr"] += int(r["connect_err"]) + int(r["read_err"]) + int(r["write_err"])
    agg["timeouts"] += int(r["timeouts"])
    for k in ("p50_ms", "p99_ms", "p999_ms"):
        agg[k] = max(agg[k], float(r[k]))
    try:
        agg["wrk_cpu"] += sum(float(x) for x in open(f"{work}/{tag}-{i}.wrk.time").read().split()[-2:])
    except (OSError, ValueError):
        pass
print(" ".join(f"{k}={v}" for k, v in agg.items()))
PY
)
  if [ "$sum" = missing ]; then echo "no result from wrk for $name" >&2; status=1; return 0; fi
  declare -A r=()
  local kv
  for kv in $sum; do r[${kv%%=*}]=${kv#*=}; done
  local stored check
  stored=$(psql -At "$url" -c "SELECT COUNT(*) FROM $(rows_of_calls "$url" packets) LIKE '$prefix-%'" 2>&1) || stored="?"
  if ! [[ "$stored" =~ ^[0-9]+$ ]]; then
    check="psql failed: $stored"; status=1
  elif (( stored < r[ok] )); then
    check="LOST $((r[ok] - stored)) acknowledged"; status=1
  elif (( stored - r[ok] > connections )); then
    check="$((stored - r[ok])) unacknowledged rows > connections"; status=1
  else
    check="ok (+$((stored - r[ok])) in flight at stop)"
  fi
  # The nodes' and PostgreSQL's CPU together (the table's srv and us/req, as for SQLite), and apart.
  local cpu
  cpu=$(python3 -c '
import sys
nb, na, pb, pa, secs, n, wrk, tick = sys.argv[1:]
nodes, pg = float(na) - float(nb), (int(pa) - int(pb)) / float(tick)
secs, n, wrk = float(secs), int(n), float(wrk)
per = lambda cpu: cpu * 1e6 / n if n else float("nan")
print(f"{(nodes + pg) / secs:.2f} {per(nodes + pg):.0f} {wrk / secs:.2f} {per(nodes):.0f} {per(pg):.0f} {pg / secs:.2f}")' \
    "$nodes_before" "$nodes_after" "$pg_before" "$pg_after" "${r[seconds]}" "${r[responses]}" "${r[wrk_cpu]}" \
    "$(getconf CLK_TCK)")
  local srv_cores srv_us wrk_cores nodes_us pg_us pg_cores
  read -r srv_cores srv_us wrk_cores nodes_us pg_us pg_cores <<<"$cpu"
  rows+=("$(printf '%-22s %5s %8.0f %8.2f %8.2f %8.2f %7s %7s %8s %8s %8s %5s %6s %5s  %s' \
    "$name" "$connections" "${r[ok_rps]}" "${r[p50_ms]}" "${r[p99_ms]}" "${r[p999_ms]}" "${r[non2xx]}" \
    "${r[sockerr]}" "${r[timeouts]}" "${r[ok]}" "$stored" "$srv_cores" "$srv_us" "$wrk_cores" \
    "$load_before/$load_after  $check")")
  pg_rates+=("$name|${r[ok_rps]}")
  # Where PostgreSQL's execution time went; every statement of the database counts, over every packet it
  # stored during the load (the rows beyond the prefix are none: the database is the run's own).
  local report exec_us="?"
  if [[ "$stored" =~ ^[0-9]+$ ]] && (( stored > 0 )); then
    report=$("$here/pg_statements.sh" report "$url" "$stored" "$pg_top" 2>&1) || status=1
    pg_reports+=("== $name: pg_stat_statements over the load ($stored packets)"$'\n'"$report")
    exec_us=$(sed -n 's/^PG_STATEMENTS_RESULT .*us_per_packet=\([0-9.]*\).*/\1/p' <<<"$report")
  fi
  pg_costs+=("$(printf '%-34s %8.0f %10s %10s %10s %10s %10s' "$name" "${r[ok_rps]}" "$exec_us" "$pg_us" "$pg_cores" \
    "$nodes_us" "$srv_us")")
  local jobs
  jobs=$(psql -At -F '|' "$url" -c "SELECT COUNT(*), COUNT(*) FILTER (WHERE t.state = 'succeeded'),
      COUNT(*) FILTER (WHERE t.state = 'dead'), COUNT(*) FILTER (WHERE t.state IN ('queued', 'running')),
      COUNT(*) FILTER (WHERE t.finished_at IS NOT NULL AND t.finished_at <= $t_end) FROM $(rows_of_calls "$url" jobs)
      LIKE '$prefix-%'" 2>/dev/null) || jobs=""
  if [ -n "$jobs" ]; then
    local total ok dead waiting done_in_load
    IFS='|' read -r total ok dead waiting done_in_load <<<"$jobs"
    jobrows+=("$(printf '%-34s %8s %9s %6s %8s %10s' "$name" "$total" "$ok" "$dead" "$waiting" \
      "$(python3 -c "print(f'{$done_in_load / ($t_end - $t_start):.0f}')")")")
  fi
}

if [ "$run_aipbx" = 1 ] && [ -n "$pg_nodes" ]; then
  command -v psql >/dev/null || { echo "missing: psql (run scripts/install-deps.sh)" >&2; exit 2; }
  pg_dir=$(mktemp -d /tmp/aipbx-bench-pg.XXXXXX)
  pg_url=$(AIPBX_PG_SETTINGS="shared_preload_libraries=pg_stat_statements" \
    "$root/scripts/pg-cluster.sh" start "$pg_dir") || { echo "cannot start PostgreSQL" >&2; exit 1; }
  for n in $pg_nodes; do
    for bi in "${!builds[@]}"; do run_pg "$n" "$bi"; done
  done
fi
if [ "$run_seed" = 1 ]; then
  port=$(free_port)
  run_one "seed (as published)" "$seed_connections" "$work/seed.db" /openapi.json -- \
    "$seed_dir/run.sh" "$port" "$work/seed.db"
  seed_rate=$last_rate
fi
if [ "$run_seed_quiet" = 1 ]; then
  port=$(free_port)
  run_one "seed (logging off)" "$seed_connections" "$work/seed-quiet.db" /openapi.json -- \
    env SEED_SQL_ECHO=0 SEED_ACCESS_LOG=0 "$seed_dir/run.sh" "$port" "$work/seed-quiet.db"
  seed_quiet_rate=$last_rate
fi

echo
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ)  $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "wrk -t$wrk_threads, $duration per run, $calls calls, 160-byte data, timeout $timeout; rate = 2xx responses/s"
echo "srv / wrk: CPU cores busy during the load (server from /proc, wrk from time(1)); us/req: server CPU per response"
printf '%-22s %5s %8s %8s %8s %8s %7s %7s %8s %8s %8s %5s %6s %5s  %s\n' \
  server conns 'rate/s' 'p50 ms' 'p99 ms' 'p99.9 ms' non-2xx sockerr timeouts acked stored \
  'srv' 'us/req' 'wrk' 'load before/after  durability'
for row in "${rows[@]}"; do echo "$row"; done
ratio() { python3 -c "print(f'{$1 / $2:.0f}x' if $2 > 0 else 'n/a')"; }
if ((${#jobrows[@]})); then
  echo
  echo "AI jobs of each aipbx run's calls (counted after the server stopped; done/s: finished while the load ran)"
  printf '%-34s %8s %9s %6s %8s %10s\n' server jobs succeeded dead waiting 'done/s'
  for row in "${jobrows[@]}"; do echo "$row"; done
fi
if ((${#pg_reports[@]})); then
  echo
  for report in "${pg_reports[@]}"; do echo "$report"; echo; done
  echo "PostgreSQL per packet: exec = pg_stat_statements' execution time; pg CPU, nodes CPU = /proc of the"
  echo "PostgreSQL processes and of the aipbx nodes during the load; both = the table's us/req"
  printf '%-34s %8s %10s %10s %10s %10s %10s\n' server 'rate/s' 'exec us' 'pg CPU us' 'pg cores' 'nodes us' 'both us'
  for row in "${pg_costs[@]}"; do echo "$row"; done
fi
if ((${#variant_rates[@]} > 1)); then
  echo
  base_rate=${variant_rates[0]#*|}
  for vr in "${variant_rates[@]}"; do
    python3 -c "print(f'{\"${vr%%|*}\":<34} {${vr#*|} / $base_rate * 100:5.0f} % of the first variant')"
  done
fi
if [[ "$subscriber_counts" != "0" ]] && ((${#subrows[@]})); then
  echo
  echo "Event-stream subscribers (SSE, live from before the load): rate against the run without, same configuration"
  printf '%-34s %5s %8s %8s %10s %14s  %s\n' server subs 'rate/s' 'vs none' committed 'per sub' check
  base=""
  for sr in "${subrows[@]}"; do
    IFS='|' read -r sname subs srate committed smin smax scut scheck <<<"$sr"
    if [ "$subs" = 0 ]; then
      base=$srate
      printf '%-34s %5s %8.0f %8s\n' "$sname" 0 "$srate" "-"
    else
      printf '%-34s %5s %8.0f %7.1f%% %10s %14s  %s\n' "$sname" "$subs" "$srate" \
        "$(python3 -c "print($srate / $base * 100 if '$base' else float('nan'))")" "$committed" "$smin..$smax" "$scheck"
    fi
  done
fi
if [ -n "$ceiling_rate" ] && [ -n "$best_aipbx" ]; then
  echo
  echo "best aipbx ingest: $(python3 -c "print(f'{$best_aipbx / $ceiling_rate * 100:.0f}')") % of GET /healthz on the same server (the HTTP ceiling)"
fi
if ((${#pg_rates[@]})) && [ -n "$best_aipbx" ]; then
  echo
  for pr in "${pg_rates[@]}"; do
    python3 -c "print(f'{\"${pr%%|*}\":<34} {${pr#*|} / $best_aipbx * 100:5.0f} % of the best SQLite run')"
  done
fi
if [ -n "$best_aipbx" ] && [ -n "$seed_rate" ]; then
  echo "aipbx / seed (as published): $(ratio "$best_aipbx" "$seed_rate")"
fi
if [ -n "$best_aipbx" ] && [ -n "$seed_quiet_rate" ]; then
  echo "aipbx / seed (logging off):  $(ratio "$best_aipbx" "$seed_quiet_rate")"
fi
exit $status
