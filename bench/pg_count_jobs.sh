#!/bin/bash
# pg_count_jobs.sh: what count_jobs (GET /v1/queue, the dashboard's queue view, /metrics' job gauges) costs
# PostgreSQL as the jobs table grows, before and after the job tallies; and what the tallies cost a writer.
#
#   bench/pg_count_jobs.sh [--jobs N,N,...] [--seconds S] [--keep] [AIPBX_BINARY]
#
# On a throwaway PostgreSQL (scripts/pg-cluster.sh, with pg_stat_statements), aipbx creates its schema (it
# starts once, and stops). For each N (default 20000,200000) the jobs table holds N succeeded jobs, and
# beside them 100 queued (20 of them retrying), 10 running and 10 dead; then VACUUM ANALYZE (what autovacuum
# does), and the tallies are counted again from the table (the rebuild docs/operations.md gives). Then
# pgbench runs each of these for S seconds (default 5) on one connection:
#
#   before   the three statements count_jobs sent before the tallies (counts by state over the whole table,
#            the oldest due job, the queued jobs retrying), as the reader sent them (parameters, custom plans)
#   after    the one statement it sends now (the tallies' sum and the oldest due job)
#   tally    the statement a writer adds to each transaction that changes jobs (the upsert into its shard),
#            prepared and planned generically as on a writer's connection, each in a transaction of its own
#            (synchronous_commit off: the commit's flush is the writer's anyway); it runs first, so that the
#            reads find the tallies' table as a writer leaves it (a row updated thousands of times)
#
# Prints, for each N, the client's latency per count_jobs (pgbench's average: round trips included) and the
# server's execution time of its statements (pg_stat_statements), before and after, their ratio, and the
# tally's execution time; then EXPLAIN (ANALYZE, BUFFERS) of the statements at the largest N.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
aipbx_bin="$root/build/release/src/app/aipbx"
sizes=20000,200000
seconds=5
keep=0

usage() {
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) sizes=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; exit 2 ;;
    *) aipbx_bin=$1; shift ;;
  esac
done
for tool in psql pgbench curl python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (scripts/install-deps.sh)" >&2; exit 2; }
done
[ -x "$aipbx_bin" ] || { echo "no aipbx binary at $aipbx_bin" >&2; exit 2; }
[[ "$sizes" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "--jobs: numbers separated by commas" >&2; exit 2; }

work=$(mktemp -d /tmp/aipbx-countjobs.XXXXXX)
pg_dir=$(mktemp -d /tmp/aipbx-countjobs-pg.XXXXXX)  # its own: the server's user owns it
aipbx_pid=""
cleanup() {
  [ -n "$aipbx_pid" ] && kill "$aipbx_pid" 2>/dev/null || true
  "$root/scripts/pg-cluster.sh" stop "$pg_dir" >/dev/null 2>&1 || true
  if [ "$keep" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

admin=$(AIPBX_PG_SETTINGS="shared_preload_libraries=pg_stat_statements" "$root/scripts/pg-cluster.sh" start "$pg_dir")
psql -q "$admin" -c "CREATE DATABASE countjobs"
url="${admin%/*}/countjobs"

# The schema, as aipbx makes it.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
"$aipbx_bin" serve --host 127.0.0.1 --port "$port" --db "$url" --log-level warning >"$work/aipbx.log" 2>&1 &
aipbx_pid=$!
for _ in $(seq 300); do
  curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz" 2>/dev/null && break
  kill -0 "$aipbx_pid" 2>/dev/null || { echo "aipbx exited; see $work/aipbx.log" >&2; exit 1; }
  sleep 0.1
done
kill "$aipbx_pid"
wait "$aipbx_pid" 2>/dev/null || true
aipbx_pid=""
psql -q "$url" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
  -c "INSERT INTO calls(id, created_at, updated_at, state_changed_at) VALUES ('bench', 1, 1, 1)"

# The statements of src/storage/postgres/pg_call_store.cpp (count_jobs) and pg_writer.cpp (add_to_tallies).
cat >"$work/before.sql" <<'SQL'
\set now 1500
SELECT state, COUNT(*) FROM jobs GROUP BY state;
SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND run_at <= :now;
SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND attempts > 0;
SQL
cat >"$work/after.sql" <<'SQL'
\set now 1500
SELECT COALESCE(SUM(queued), 0)::bigint, COALESCE(SUM(retrying), 0)::bigint, COALESCE(SUM(running), 0)::bigint, COALESCE(SUM(succeeded), 0)::bigint, COALESCE(SUM(dead), 0)::bigint, (SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND run_at <= :now) FROM job_tallies;
SQL
cat >"$work/tally.sql" <<'SQL'
INSERT INTO job_tallies(shard, queued, retrying, running, succeeded, dead) VALUES (1::int, -1, 0, 0, 1, 0) ON CONFLICT (shard) DO UPDATE SET queued = job_tallies.queued + excluded.queued, retrying = job_tallies.retrying + excluded.retrying, running = job_tallies.running + excluded.running, succeeded = job_tallies.succeeded + excluded.succeeded, dead = job_tallies.dead + excluded.dead;
SQL

# Fills the jobs table with N succeeded jobs and the few others; counts the tallies again.
fill() {  # N
  psql -q "$url" <<SQL
TRUNCATE jobs;
INSERT INTO jobs(call_key, first_sequence, last_sequence, state, attempts, max_attempts, run_at, created_at,
                 updated_at, started_at, finished_at)
  SELECT (SELECT key FROM calls WHERE id = 'bench'), s, s, 'succeeded', 1, 5, s * 0.001, 1, 1, 1, 1
  FROM generate_series(1, $1) s;
INSERT INTO jobs(call_key, first_sequence, last_sequence, state, attempts, max_attempts, run_at, created_at,
                 updated_at, lease_owner, lease_expires_at)
  SELECT (SELECT key FROM calls WHERE id = 'bench'), $1 + s, $1 + s,
         CASE WHEN s <= 100 THEN 'queued' WHEN s <= 110 THEN 'running' ELSE 'dead' END,
         CASE WHEN s <= 80 THEN 0 ELSE 2 END, 5, 1000 + s, 1, 1,
         CASE WHEN s BETWEEN 101 AND 110 THEN 'node' END, CASE WHEN s BETWEEN 101 AND 110 THEN 2000 END
  FROM generate_series(1, 120) s;
BEGIN;
LOCK TABLE jobs IN SHARE MODE;
DELETE FROM job_tallies;
INSERT INTO job_tallies(shard, queued, retrying, running, succeeded, dead)
  SELECT 0, COUNT(*) FILTER (WHERE state = 'queued'), COUNT(*) FILTER (WHERE state = 'queued' AND attempts > 0),
         COUNT(*) FILTER (WHERE state = 'running'), COUNT(*) FILTER (WHERE state = 'succeeded'),
         COUNT(*) FILTER (WHERE state = 'dead')
  FROM jobs;
COMMIT;
VACUUM ANALYZE jobs;
VACUUM ANALYZE job_tallies;
SQL
}

# Runs SCRIPT for the given seconds; prints pgbench's average latency (ms) and the server's execution time
# of the script's statements per run (ms, pg_stat_statements).
run() {  # SCRIPT MODE [PGOPTIONS]
  psql -qAt "$url" -c "SELECT pg_stat_statements_reset()" >/dev/null
  PGOPTIONS="${3:-}" pgbench -n -M "$2" -c 1 -T "$seconds" -f "$1" "$url" >"$work/pgbench.out" 2>&1 ||
    { cat "$work/pgbench.out" >&2; exit 1; }
  local latency runs
  latency=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$work/pgbench.out")
  runs=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgbench.out")
  psql -qAt "$url" -c "SELECT to_char($latency, 'FM9990.000'), to_char(SUM(total_exec_time) / $runs, 'FM9990.000')
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND query ~* '^(SELECT (state|MIN|COUNT|COALESCE)|INSERT INTO job_tallies)'" | tr '|' ' '
}

echo "$(date -u +%Y-%m-%dT%H:%M:%SZ)  $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg); $seconds s per run, one connection"
printf '%-10s %-8s %14s %14s\n' 'jobs' 'run' 'latency ms' 'execution ms'
for n in ${sizes//,/ }; do
  fill "$n"
  read -r tl te <<<"$(run "$work/tally.sql" prepared \
    "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c jit=off -c synchronous_commit=off")"
  read -r bl be <<<"$(run "$work/before.sql" extended)"
  read -r al ae <<<"$(run "$work/after.sql" extended)"
  total=$((n + 120))
  printf '%-10s %-8s %14s %14s\n' "$total" before "$bl" "$be"
  printf '%-10s %-8s %14s %14s\n' "" after "$al" "$ae"
  printf '%-10s %-8s %14s %14s\n' "" ratio "$(python3 -c "print(f'{$bl / $al:.0f}x')")" \
    "$(python3 -c "print(f'{$be / $ae:.0f}x')")"
  printf '%-10s %-8s %14s %14s   (a writer transaction'"'"'s upsert)\n' "" tally "$tl" "$te"
done

echo
echo "EXPLAIN (ANALYZE, BUFFERS) at $total jobs"
for q in "SELECT state, COUNT(*) FROM jobs GROUP BY state" \
  "SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND run_at <= 1500" \
  "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND attempts > 0" \
  "$(sed -n 2p "$work/after.sql" | sed 's/:now/1500/; s/;$//')"; do
  echo "-- $q"
  psql -qAt "$url" -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) $q" | grep -v '^Planning:$'
done
