#!/bin/bash
# pg_statements.sh: where PostgreSQL's time goes during an ingest load, from pg_stat_statements.
#
#   bench/pg_statements.sh reset URL             zero the statistics (creates the extension if needed)
#   bench/pg_statements.sh report URL PACKETS [TOP]
#                                                print the statements that ran in URL's database since the
#                                                reset, by total execution time: calls, rows, total ms, µs
#                                                per call, µs per packet (PACKETS: the packets stored in
#                                                the meantime), and the sum over all of them
#   bench/pg_statements.sh run [OPTIONS] [AIPBX_BINARY]
#                                                the same through bench/run_ingest_bench.sh: aipbx on a
#                                                throwaway PostgreSQL (--pg-nodes, default "1"), no SQLite
#                                                and no seed runs; every other option is passed on
#
# The server must load the module (shared_preload_libraries = pg_stat_statements; run_ingest_bench.sh starts
# its throwaway server so, through scripts/pg-cluster.sh's AIPBX_PG_SETTINGS). Execution time is what the
# server spent executing each statement (wall time, so lock waits count; parsing, planning, the protocol and
# the commit's WAL flush do not): the figure to compare between two builds under the same load. For the
# server's whole CPU per packet, run_ingest_bench.sh also reads the PostgreSQL processes' /proc times.
# BEGIN and COMMIT sent as prepared statements in a pipeline are not counted by pg_stat_statements.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

cmd=${1:-}
case "$cmd" in
  reset)
    url=${2:?usage: pg_statements.sh reset URL}
    psql -qAt "$url" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" \
      >/dev/null
    ;;
  report)
    url=${2:?usage: pg_statements.sh report URL PACKETS [TOP]}
    packets=${3:?usage: pg_statements.sh report URL PACKETS [TOP]}
    top=${4:-12}
    [[ "$packets" =~ ^[0-9]+$ ]] && (( packets > 0 )) || { echo "PACKETS must be a positive count" >&2; exit 2; }
    # The statements of this database only, without the bench's own (the reset, the row count).
    local_statements="SELECT calls, rows, total_exec_time AS ms, regexp_replace(query, '\\s+', ' ', 'g') AS query
      FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE 'SELECT COUNT(*) FROM packets%'"
    psql -qX "$url" -v packets="$packets" -v top="$top" <<SQL
\\pset footer off
WITH s AS ($local_statements)
SELECT calls, rows, round(ms::numeric, 1) AS "total ms", round((ms * 1000 / calls)::numeric, 1) AS "us/call",
       round((ms * 1000 / :packets)::numeric, 2) AS "us/packet",
       round((100 * ms / NULLIF(SUM(ms) OVER (), 0))::numeric, 1) AS "%", left(query, 90) AS statement
  FROM s ORDER BY ms DESC LIMIT :top;
SQL
    # The sum, also as one line to parse (PG_STATEMENTS_RESULT).
    psql -qXAt "$url" -v packets="$packets" <<SQL
WITH s AS ($local_statements)
SELECT 'all statements: ' || SUM(calls) || ' calls, ' || round(SUM(ms)::numeric, 1) || ' ms, ' ||
       round((SUM(ms) * 1000 / :packets)::numeric, 2) || ' us per packet, ' ||
       round(SUM(calls)::numeric / :packets, 3) || ' statements per packet' || chr(10) ||
       'PG_STATEMENTS_RESULT packets=' || :packets || ' calls=' || SUM(calls) || ' ms=' || round(SUM(ms)::numeric, 1) ||
       ' us_per_packet=' || round((SUM(ms) * 1000 / :packets)::numeric, 2)
  FROM s;
SQL
    ;;
  run)
    shift
    nodes_given=0
    for a in "$@"; do [ "$a" = --pg-nodes ] && nodes_given=1; done
    extra=()
    [ "$nodes_given" = 1 ] || extra=(--pg-nodes 1)
    exec "$here/run_ingest_bench.sh" --no-seed --no-sqlite "${extra[@]}" "$@"
    ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
