#!/usr/bin/env bash
# A throwaway PostgreSQL on loopback for the tests: `scripts/pg.sh start|stop`. Prints the URL on start.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${EMPLIFAI_PG_PORT:-55432}
DATA="$PWD/.pg/data"
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$BIN" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "${1:-start}" in
  start)
    if [ ! -s "$DATA/PG_VERSION" ]; then
      mkdir -p "$DATA"
      [ "$(id -u)" = 0 ] && chown -R postgres "$PWD/.pg"
      as_pg "$BIN/initdb" -D "$DATA" -A trust -U postgres --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi
    # already running (an earlier run, or one whose stop was skipped): reuse it rather than fail
    as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 ||
      as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/../server.log" -w -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
    echo "postgresql://postgres@127.0.0.1:$PORT/postgres"
    ;;
  stop)
    as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true
    ;;
esac
