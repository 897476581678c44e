#!/usr/bin/env bash
# Start a throw-away PostgreSQL cluster on loopback for the service tests; print its URL on stdout.
#   export PERSONALIGN_TEST_PG_URL=$(scripts/start_postgres.sh)
# Installs Debian's postgresql with apt-get when it is missing (needs root). Listens on 127.0.0.1 only, trust auth
# (loopback, test data only). Env: PG_PORT (default 55432), PG_DIR (default /tmp/personalign-pg).
# Stop it with: scripts/start_postgres.sh stop
set -euo pipefail
PG_PORT="${PG_PORT:-55432}"
PG_DIR="${PG_DIR:-/tmp/personalign-pg}"

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

BIN="$(find_bin || true)"
if [ -z "$BIN" ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "postgresql is not installed and this is not root: cannot apt-get" >&2; exit 1; fi
  echo "installing postgresql (apt-get)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  BIN="$(find_bin)"
fi

# PostgreSQL refuses to run as root: run it as the 'postgres' system user when we are root.
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$PG_DIR" postgres
  AS=(runuser -u postgres --)
else
  AS=()
fi

if [ "${1:-}" = "stop" ]; then
  "${AS[@]}" "$BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >&2 || true
  exit 0
fi

mkdir -p "$PG_DIR"
[ "$(id -u)" -eq 0 ] && chown postgres "$PG_DIR"
if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
  "${AS[@]}" "$BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
fi
if ! "${AS[@]}" "$BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
  "${AS[@]}" "$BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=200 -c fsync=on" start >&2 \
    || { tail -20 "$PG_DIR/server.log" >&2; exit 1; }
fi
echo "postgresql://postgres@127.0.0.1:${PG_PORT}/postgres"
