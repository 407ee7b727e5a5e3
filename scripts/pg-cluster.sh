#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: `start DIR` creates a cluster in DIR (initdb), starts it on a
# free port of 127.0.0.1 only (no Unix socket outside DIR), and writes its URL to DIR/url; `stop DIR` stops
# it and removes DIR. `url DIR` prints the URL. `restart DIR` stops and starts the same cluster on the same
# port (the database-restart test uses `stop-server` and `start-server` to keep the data in between).
#
# initdb and postgres refuse to run as root: as root, they run as the `postgres` system user (created by
# Debian's postgresql package), which owns DIR. Trust authentication, loopback only: the cluster is for one
# test run and holds test data. Uses Debian's PostgreSQL (scripts/install-deps.sh installs it).
#
# AIPBX_PG_SETTINGS (at `start`): more server settings, space-separated name=value pairs, kept in DIR/settings
# for every later start of the same cluster (the benchmarks load pg_stat_statements this way).
set -euo pipefail

cmd=${1:?usage: pg-cluster.sh start|stop|url|stop-server|start-server DIR}
dir=${2:?usage: pg-cluster.sh start|stop|url|stop-server|start-server DIR}

bindir=""
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && bindir=$d
done
if [ -z "$bindir" ]; then
  echo "pg-cluster: PostgreSQL server binaries not found (install the postgresql package: scripts/install-deps.sh)" >&2
  exit 1
fi

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    # From /: the caller's directory (a clone under /root, say) may be closed to the postgres user.
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start_server() {
  local port extra="" setting
  port=$(cat "$dir/port")
  for setting in $(cat "$dir/settings" 2>/dev/null); do extra+=" -c $setting"; done
  as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -s \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=300$extra" start
}

# `fast` (what an operator's stop does: a shutdown checkpoint) or `immediate` (a crash: no checkpoint; for a
# cluster about to be deleted, whose checkpoint would only flush data nobody reads again).
stop_server() {
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_owner "$bindir/pg_ctl" -D "$dir/data" -w -t 120 -s -m "${1:-fast}" stop || true
}

case "$cmd" in
  start)
    stop_server immediate 2>/dev/null || true
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
    free_port >"$dir/port"
    echo "${AIPBX_PG_SETTINGS:-}" >"$dir/settings"
    start_server || {
      cat "$dir/server.log" >&2
      exit 1
    }
    echo "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/postgres" >"$dir/url"
    cat "$dir/url"
    ;;
  stop)
    stop_server immediate
    rm -rf "$dir"
    ;;
  url) cat "$dir/url" ;;
  stop-server) stop_server ;;
  start-server) start_server ;;
  *)
    echo "usage: pg-cluster.sh start|stop|url|stop-server|start-server DIR" >&2
    exit 2
    ;;
esac
