#!/usr/bin/env bash
# A pgbouncer in transaction mode in front of the local PostgreSQL, for the pooled test pass
# (docs/pooling.md).
#
#   .ci/pgbouncer.sh PORT        start it on 127.0.0.1:PORT (nothing to do if it already answers)
#   .ci/pgbouncer.sh stop PORT   stop it
#
# Every database name is forwarded to PostgreSQL (PGBOUNCER_UPSTREAM_HOST:PORT, default
# 127.0.0.1:5432) as PGBOUNCER_UPSTREAM_USER (default root), so the Django test runner can create
# its test database through it. Its files (config, user list, pid, log) live in PGBOUNCER_DIR,
# default var/pgbouncer-PORT in this repository.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 PORT | $0 stop PORT" >&2; exit 2; }

action=start
if [ "${1:-}" = stop ]; then action=stop; shift; fi
port="${1:-}"
[[ "$port" =~ ^[0-9]+$ ]] || usage

dir="${PGBOUNCER_DIR:-$PWD/var/pgbouncer-$port}"
upstream_host="${PGBOUNCER_UPSTREAM_HOST:-127.0.0.1}"
upstream_port="${PGBOUNCER_UPSTREAM_PORT:-5432}"
upstream_user="${PGBOUNCER_UPSTREAM_USER:-root}"
pidfile="$dir/pgbouncer.pid"

running_pid() {
  local pid
  [ -s "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  # A stale pid file may name another process by now.
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pgbouncer ] || return 1
  echo "$pid"
}

answers() {
  # The admin console answers only once pgbouncer has loaded its config and listens.
  psql -X -q -h 127.0.0.1 -p "$port" -U "$upstream_user" -d pgbouncer -c "SHOW VERSION" \
    >/dev/null 2>&1
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    echo "pgbouncer on port $port is not running"
    return 0
  fi
  kill -TERM "$pid"  # immediate shutdown: clients and server connections are closed
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || { echo "pgbouncer on port $port stopped"; return 0; }
    sleep 0.1
  done
  echo "pgbouncer (pid $pid) did not stop" >&2
  exit 1
}

start() {
  if running_pid >/dev/null && answers; then
    echo "pgbouncer already answers on port $port"
    return 0
  fi
  command -v pgbouncer >/dev/null 2>&1 || PATH="$PATH:/usr/sbin"
  if ! command -v pgbouncer >/dev/null 2>&1; then
    echo "installing pgbouncer"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
  fi

  # pgbouncer refuses to run as root: it switches to this user (-u), which must write its pid and
  # log files.
  local run_as=""
  if [ "$(id -u)" = 0 ]; then
    run_as=postgres
    id "$run_as" >/dev/null 2>&1 || run_as=nobody
  fi
  mkdir -p "$dir"
  if [ -n "$run_as" ]; then
    chown "$run_as" "$dir"
    if ! runuser -u "$run_as" -- test -w "$dir"; then
      echo "user $run_as cannot write $dir (a parent directory is closed to it): set PGBOUNCER_DIR" >&2
      exit 1
    fi
  fi
  chmod 700 "$dir"

  # auth_type trust still wants every user named in the auth file.
  printf '"%s" ""\n' "$upstream_user" >"$dir/userlist.txt"
  cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=$upstream_host port=$upstream_port user=$upstream_user

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = $upstream_user
pidfile = $pidfile
logfile = $dir/pgbouncer.log

pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
max_db_connections = 40
; A check, not a need: after every transaction the server connection forgets all session state
; (DISCARD ALL), so code that leans on a SET, a session advisory lock, a temporary table or a
; held cursor fails on every run here rather than now and then in production.
server_reset_query = DISCARD ALL
server_reset_query_always = 1
; Idle server connections close within about a second: the test runner drops its test database
; at the end, and PostgreSQL waits up to 5 seconds for other sessions to leave one it drops.
server_idle_timeout = 1
; psycopg and Django send nothing pgbouncer does not know; JDBC-style clients send this one.
ignore_startup_parameters = extra_float_digits
EOF
  if [ -n "$run_as" ]; then
    chown "$run_as" "$dir/pgbouncer.ini" "$dir/userlist.txt"
  fi

  rm -f "$pidfile"
  pgbouncer -d ${run_as:+-u "$run_as"} "$dir/pgbouncer.ini"
  for _ in $(seq 1 50); do
    if running_pid >/dev/null && answers; then
      echo "pgbouncer answers on 127.0.0.1:$port (transaction mode, to $upstream_host:$upstream_port)"
      return 0
    fi
    sleep 0.1
  done
  echo "pgbouncer did not answer on port $port; its log:" >&2
  tail -n 20 "$dir/pgbouncer.log" >&2 || true
  exit 1
}

"$action"
