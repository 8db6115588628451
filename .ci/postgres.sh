#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 and print its URL (for the tests).
#   eval "$(.ci/postgres.sh start)"   -> exports SWEEP_TEST_POSTGRES_URL and PG_TEST_DIR
#   .ci/postgres.sh stop "$PG_TEST_DIR"
#   .ci/postgres.sh restart "$PG_TEST_DIR"   (the fault tests restart the server mid-study)
# Installs Debian's postgresql package when the server binaries are missing.
set -euo pipefail

bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    if [ -z "$(bin_dir)" ]; then
      echo "installing PostgreSQL (Debian package)" >&2
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    fi
    BIN=$(bin_dir)
    DIR=$(mktemp -d /tmp/sweep-pg.XXXXXX)
    # A free port, so that a server already running here does not get in the way.
    PORT=${PG_TEST_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    as_postgres "$BIN/initdb" -D "$DIR/data" -A trust -U postgres >/dev/null
    as_postgres "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c max_connections=200 -c fsync=off" \
      start >/dev/null || { cat "$DIR/log" >&2; rm -rf "$DIR"; exit 1; }
    as_postgres "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres sweep_test
    echo "export SWEEP_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$PORT/sweep_test"
    echo "export PG_TEST_DIR=$DIR"
    ;;
  restart)
    DIR=${2:?usage: postgres.sh restart DIR}
    as_postgres "$(bin_dir)/pg_ctl" -D "$DIR/data" -m fast -w restart >/dev/null
    ;;
  stop)
    DIR=${2:?usage: postgres.sh stop DIR}
    as_postgres "$(bin_dir)/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null || true
    rm -rf "$DIR"
    ;;
  *)
    echo "usage: $0 start | stop DIR | restart DIR" >&2
    exit 2
    ;;
esac
