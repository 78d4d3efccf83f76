#!/usr/bin/env bash
# Runs envsnap's whole test suite on a fresh machine of this project's kind: installs
# what the tests need and is missing, starts the database servers that are down, then
# runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v git >/dev/null || missing+=(git)
command -v mount >/dev/null || missing+=(mount)
command -v tar >/dev/null || missing+=(tar)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
command -v fusermount3 >/dev/null || missing+=(fuse3)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v mariadb >/dev/null || missing+=(mariadb-client)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# Start a server that is down, then wait until it answers (at most 30 s each).
wait_for() {  # wait_for NAME COMMAND...
  local name=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "$name does not answer; the tests that need it will fail" >&2
}
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
fi
if ! mariadb -uroot -h127.0.0.1 -e 'select 1' >/dev/null 2>&1; then
  echo "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  wait_for MariaDB mariadb -uroot -h127.0.0.1 -e 'select 1'
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
fi

cargo test --locked
