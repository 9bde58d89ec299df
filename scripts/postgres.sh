# Sourced by scripts/test and bench/run: starts a throwaway PostgreSQL server on loopback
# (installing it on a fresh Debian machine) and exports STRATA_TEST_PG. Root only; the
# server stops and its directory goes when the calling shell exits.
start_test_postgres() {
  [ "$(id -u)" = 0 ] && [ -z "${STRATA_TEST_PG:-}" ] || return 0
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  pgdir=$(mktemp -d /tmp/strata-pg.XXXXXX)
  chown postgres "$pgdir"
  port=$((20000 + RANDOM % 20000))
  su postgres -s /bin/sh -c "$pgbin/initdb -D $pgdir/data -A trust -U strata" >/dev/null
  su postgres -s /bin/sh -c "$pgbin/pg_ctl -D $pgdir/data -l $pgdir/log -w start \
    -o '-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=200'" >/dev/null
  trap 'su postgres -s /bin/sh -c "$pgbin/pg_ctl -D $pgdir/data -m immediate stop" >/dev/null 2>&1; rm -rf "$pgdir"' EXIT
  export STRATA_TEST_PG="postgres://strata@127.0.0.1:$port/postgres"
}
