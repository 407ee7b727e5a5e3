#!/bin/bash
# pg_row_costs.sh: what each row and index of a batch of packets costs PostgreSQL, one at a time.
#
#   bench/pg_row_costs.sh [--batches N] [--rounds R] [--rows K] [--keep] [AIPBX_BINARY]
#
# On a throwaway PostgreSQL (scripts/pg-cluster.sh, with pg_stat_statements), aipbx creates its schema (it
# starts once, and stops), and 128 calls are made. Then pgbench commits, N times per run, the transaction
# a writer commits for a batch of K packets of kept calls, each of another call, each packet with its own
# job (one-packet segments) and segment-cut event: the statements of src/storage/postgres/pg_writer.cpp
# (update_narrow, insert_packets, insert_jobs, insert_log), prepared and planned generically, as on the
# writer's connections. The arrays are built by a SELECT of their own in each transaction, which is not
# counted. Each variant runs right after the full schema (the reference beside it), R rounds:
#
#   full            the schema as aipbx makes it
#   -jobs_call      without the jobs' (call_key, first_sequence) index
#   -jobs_due       without the due queue's (run_at, id) index
#   -packets_call   without the packets' (call_key, sequence) index
#   -checks         without the state checks of calls and jobs (the version check stays)
#   1 row           the full schema with batches of one packet: what a statement costs whatever its rows
#
# Prints, for each run, each statement's execution time per row (pg_stat_statements' mean per call, over
# K) and their sum, and under a variant its difference from the full run just before it, statement by
# statement: what that index or check costs a packet. Execution time is wall time: on a loaded machine every figure grows, the differences
# with them; compare within one invocation.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/aipbx_bench.sh
source "$here/lib/aipbx_bench.sh"
aipbx_bin="$root/build/release/src/app/aipbx"
batches=1000
rounds=2
rows=32
keep=0

usage() {
  sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --batches) batches=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; exit 2 ;;
    *) aipbx_bin=$1; shift ;;
  esac
done
need_tools psql pgbench
need_built "$aipbx_bin"
[[ "$rows" =~ ^[0-9]+$ ]] && ((rows >= 1 && rows <= 128)) || { echo "--rows: 1 to 128" >&2; exit 2; }

make_work_dir aipbx-rowcosts
pg_dir=$(mktemp -d /tmp/aipbx-rowcosts-pg.XXXXXX)  # its own: the server's user owns it
bench_cleanup() {
  "$root/scripts/pg-cluster.sh" stop "$pg_dir" >/dev/null 2>&1 || true
}

admin=$(AIPBX_PG_SETTINGS="shared_preload_libraries=pg_stat_statements" "$root/scripts/pg-cluster.sh" start "$pg_dir")
psql -q "$admin" -c "CREATE DATABASE rowcosts"
url="${admin%/*}/rowcosts"

# The schema, as aipbx makes it.
start_aipbx "$work/aipbx.log" "$aipbx_bin" serve --db "$url" --log-level warning
stop_aipbx
psql -q "$url" <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
INSERT INTO calls(id, created_at, updated_at, state_changed_at)
  SELECT 'r1765123456789pg1-b0-n0-' || lpad(c::text, 5, '0'), 1, 1, 1 FROM generate_series(0, 127) c;
CREATE SEQUENCE bench_batch;
SQL

# One batch: calls (b * K + i) % 128 for i < K, each at sequence b (so each call's sequences only grow).
script() {  # ROWS
  local k=$1
  cat <<SQL
SELECT nextval('bench_batch') AS b \gset
SELECT array_agg(c.key ORDER BY c.id) AS keys, array_agg(c.id ORDER BY c.id) AS ids, array_agg(:b::bigint) AS seqs,
       array_agg(c.version ORDER BY c.id) AS versions, array_agg(1.5::float8) AS times, array_agg(NULL::bigint) AS jobs,
       array_agg(repeat('x', 160)::bytea) AS data, array_agg(false) AS late, array_agg('segment.cut'::text) AS kinds,
       array_agg('{"first":' || :b || ',"last":' || :b || '}') AS event_data
  FROM calls c WHERE c.key IN (SELECT (:b * $k + i) % 128 + 1 FROM generate_series(0, $k - 1) i) \gset
BEGIN;
UPDATE calls SET last_sequence = u.last, expected_sequence = u.expected, packets_received = u.received, next_segment = u.next_segment, jobs_total = u.total, first_timestamp = u.first_ts, last_timestamp = u.last_ts, last_packet_at = u.last_packet_at, updated_at = 1.5, version = CASE WHEN calls.version = u.version THEN u.version + 1 ELSE -1 END FROM (SELECT unnest(:keys::bigint[]) AS key, unnest(:seqs::bigint[]) AS last, unnest(:seqs::bigint[]) AS expected, unnest(:seqs::bigint[]) AS received, unnest(:seqs::bigint[]) AS next_segment, unnest(:seqs::bigint[]) AS total, unnest(:times::float8[]) AS first_ts, unnest(:times::float8[]) AS last_ts, unnest(:times::float8[]) AS last_packet_at, unnest(:versions::bigint[]) AS version) AS u WHERE calls.key = u.key RETURNING calls.id, calls.version;
INSERT INTO packets(call_key, sequence, data, timestamp, received_at, late) SELECT c, s, d, t, 1.5, l FROM unnest(:keys::bigint[], :seqs::bigint[], :data::bytea[], :times::float8[], :late::bool[]) AS u(c, s, d, t, l);
INSERT INTO jobs(call_key, first_sequence, last_sequence, max_attempts, run_at, created_at, updated_at) SELECT c, f, l, 5, 1.5, 1.5, 1.5 FROM unnest(:keys::bigint[], :seqs::bigint[], :seqs::bigint[]) AS u(c, f, l);
WITH c AS (UPDATE event_log_state SET last_id = last_id + $k RETURNING last_id) INSERT INTO event_batches(last_id, first_id, at, ats, kinds, call_ids, job_ids, data) SELECT c.last_id, c.last_id - $k + 1, 1.5, :times::float8[], :kinds::text[], :ids::text[], :jobs::bigint[], :event_data::text[] FROM c;
COMMIT;
SQL
}
script "$rows" >"$work/batch.sql"
script 1 >"$work/batch1.sql"

# Runs SCRIPT; prints the four statements' µs per row and their sum.
run() {  # SCRIPT ROWS
  psql -qAt "$url" -c "SELECT pg_stat_statements_reset()" >/dev/null
  PGOPTIONS="-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c jit=off" \
    pgbench -n -M prepared -c 1 -t "$batches" -f "$1" "$url" >"$work/pgbench.out" 2>&1 ||
    { cat "$work/pgbench.out" >&2; exit 1; }
  psql -qAt -F ' ' "$url" <<SQL
WITH s AS (SELECT mean_exec_time * 1000 / $2 AS us, query FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))
SELECT to_char(MAX(us) FILTER (WHERE query LIKE 'UPDATE calls%'), 'FM990.00'),
       to_char(MAX(us) FILTER (WHERE query LIKE 'INSERT INTO packets%'), 'FM990.00'),
       to_char(MAX(us) FILTER (WHERE query LIKE 'INSERT INTO jobs%'), 'FM990.00'),
       to_char(MAX(us) FILTER (WHERE query LIKE 'WITH c AS (UPDATE event_log_state%'), 'FM990.00'),
       to_char(SUM(us) FILTER (WHERE query ~ '^(UPDATE calls|INSERT INTO (packets|jobs)|WITH c AS)'), 'FM990.00')
  FROM s;
SQL
}
sql() { psql -q "$url" -c "$1" >/dev/null; }

declare -A drop=(
  [-jobs_call]="ALTER TABLE jobs DROP CONSTRAINT jobs_call_segment"
  [-jobs_due]="DROP INDEX jobs_queued_due"
  [-packets_call]="ALTER TABLE packets DROP CONSTRAINT packets_call_sequence"
  [-checks]="ALTER TABLE jobs DROP CONSTRAINT jobs_state_check; ALTER TABLE calls DROP CONSTRAINT calls_state_check"
)
declare -A restore=(
  [-jobs_call]="ALTER TABLE jobs ADD CONSTRAINT jobs_call_segment UNIQUE (call_key, first_sequence)"
  [-jobs_due]="CREATE INDEX jobs_queued_due ON jobs(run_at, id) WHERE state = 'queued'"
  [-packets_call]="ALTER TABLE packets ADD CONSTRAINT packets_call_sequence UNIQUE (call_key, sequence)"
  [-checks]="ALTER TABLE jobs ADD CONSTRAINT jobs_state_check CHECK (state IN ('queued','running','succeeded','dead')); ALTER TABLE calls ADD CONSTRAINT calls_state_check CHECK (state IN ('IN_PROGRESS','PROCESSING_AI','COMPLETED','FAILED','ARCHIVED'))"
)
variants=(-jobs_call -jobs_due -packets_call -checks)

echo "$(date -u +%Y-%m-%dT%H:%M:%SZ)  $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg); $batches batches of $rows packets per run;"
echo "µs of execution per packet (per row of each statement); under each variant, its difference from the full"
echo "schema's run just before it"
printf '%-14s %9s %9s %9s %9s %9s\n' run 'calls' 'packets' 'jobs' 'events' 'sum'
run "$work/batch.sql" "$rows" >/dev/null  # warm-up: the tables and indexes grow past their first pages
for ((r = 1; r <= rounds; r++)); do
  for v in "${variants[@]}" "1 row"; do
    full_row=$(run "$work/batch.sql" "$rows")
    echo "full $full_row" >>"$work/differences"
    read -r c p j e sum <<<"$full_row"
    printf '%-14s %9s %9s %9s %9s %9s\n' full "$c" "$p" "$j" "$e" "$sum"
    if [ "$v" = "1 row" ]; then
      read -r c p j e sum <<<"$(run "$work/batch1.sql" 1)"
      printf '%-14s %9s %9s %9s %9s %9s   (µs per statement)\n' "1 row" "$c" "$p" "$j" "$e" "$sum"
      continue
    fi
    sql "${drop[$v]}"
    read -r c p j e sum <<<"$(run "$work/batch.sql" "$rows")"
    sql "${restore[$v]}"
    printf '%-14s %9s %9s %9s %9s %9s\n' "$v" "$c" "$p" "$j" "$e" "$sum"
    diff=$(python3 -c "
full = '$full_row'.split(); now = '$c $p $j $e $sum'.split()
print(' '.join(f'{float(b) - float(a):+.2f}' for a, b in zip(full, now)))")
    echo "$v $diff" >>"$work/differences"
    # shellcheck disable=SC2086
    printf '%-14s %9s %9s %9s %9s %9s\n' "  difference" $diff
  done
done
echo
echo "means over the rounds: the full schema, then each variant's difference from it"
python3 - "$work/differences" <<'EOF'
import sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    name, *values = line.split()
    rows[name].append([float(v) for v in values])
for name, runs in rows.items():
    means = [sum(col) / len(col) for col in zip(*runs)]
    fmt = "{:9.2f}" if name == "full" else "{:+9.2f}"
    print(f"{name:<14} " + " ".join(fmt.format(m) for m in means) + f"   ({len(runs)} runs)")
EOF
