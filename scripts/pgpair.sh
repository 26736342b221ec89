#!/usr/bin/env bash
# A PostgreSQL 15 primary and a streaming standby of its own, for the replica tests and the
# failover bench: two Debian clusters, NAME-primary and NAME-standby, on ports of their own. It
# never touches any other cluster (the machine's own on 5432 included).
#
#   scripts/pgpair.sh up NAME PRIMARY_PORT STANDBY_PORT [--sync]
#       Create (or reuse) and start both; idempotent. The standby is a pg_basebackup -R of the
#       primary streaming through a replication slot. --sync makes it synchronous: a commit
#       returns once the standby has flushed it to disk (synchronous_commit=on), so a promotion
#       loses no acknowledged commit; without it (again on a later `up`), replication is
#       asynchronous. A pair whose standby was promoted is dropped and made afresh.
#   scripts/pgpair.sh down NAME           Stop and drop both clusters.
#   scripts/pgpair.sh kill-primary NAME   SIGKILL the primary's postmaster (a crash, not a stop).
#   scripts/pgpair.sh promote NAME        Promote the standby; returns once it takes writes.
#   scripts/pgpair.sh status NAME         Each cluster's state and role, and the replication.
#
# Both listen on 127.0.0.1 only, where the role root (a superuser) connects without a password:
#   postgres://root@127.0.0.1:PRIMARY_PORT/DB, postgres://root@127.0.0.1:STANDBY_PORT/DB
# Run as root on Debian with postgresql-15 (pg_createcluster, pg_ctlcluster, pg_basebackup).
set -euo pipefail

VERSION=15
BIN=/usr/lib/postgresql/$VERSION/bin

die() {
    echo "pgpair: $*" >&2
    exit 1
}

usage() {
    sed -n '2,19p' "$0" >&2
    exit 2
}

exists() { [ -f "/etc/postgresql/$VERSION/$1/postgresql.conf" ]; }
datadir() { echo "/var/lib/postgresql/$VERSION/$1"; }
running() { pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$1" status >/dev/null 2>&1; }
# Slot and application names allow [a-z0-9_] only.
ident() { echo "$1" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9_\n' '_'; }

psql_on() {  # PORT SQL: one value, as the superuser postgres through the Unix socket
    runuser -u postgres -- psql -X -q -At -p "$1" -d postgres -c "$2"
}

wait_ready() {  # PORT
    for _ in $(seq 1 120); do
        if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$1"; then return 0; fi
        sleep 0.5
    done
    die "nothing answers on port $1"
}

start() {  # CLUSTER PORT
    if ! running "$1"; then
        pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$1" start
    fi
    wait_ready "$2"
}

trust_root() {  # CLUSTER: root (and its replication) from 127.0.0.1 without a password, first rule
    local hba="/etc/postgresql/$VERSION/$1/pg_hba.conf"
    if ! grep -q '^# pgpair$' "$hba"; then
        {
            echo "# pgpair"
            echo "host all root 127.0.0.1/32 trust"
            echo "host replication root 127.0.0.1/32 trust"
            cat "$hba"
        } >"$hba.new"
        chown postgres:postgres "$hba.new"
        mv "$hba.new" "$hba"
    fi
}

configure() {  # CLUSTER SYNC_NAMES
    # conf.d in /etc is the cluster's own: a base backup copies neither it nor pg_hba.conf.
    cat >"/etc/postgresql/$VERSION/$1/conf.d/pgpair.conf" <<EOF
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
# The standby tells the primary what its queries still read, so vacuum keeps it for them and
# replay seldom cancels a consumer's read.
hot_standby_feedback = on
synchronous_standby_names = '$2'
synchronous_commit = on
EOF
    chown postgres:postgres "/etc/postgresql/$VERSION/$1/conf.d/pgpair.conf"
}

create_primary() {  # NAME PORT
    local cluster="$1-primary"
    pg_createcluster "$VERSION" "$cluster" -p "$2" >/dev/null
    trust_root "$cluster"
    configure "$cluster" ""
}

root_role() {  # PORT
    psql_on "$1" "DO \$\$BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'root') THEN
            CREATE ROLE root SUPERUSER LOGIN;
        END IF;
    END\$\$" >/dev/null
}

create_standby() {  # NAME PRIMARY_PORT STANDBY_PORT
    local cluster="$1-standby" slot app
    slot="pgpair_$(ident "$1")"
    app="$(ident "$1")_standby"
    pg_createcluster "$VERSION" "$cluster" -p "$3" >/dev/null
    trust_root "$cluster"
    configure "$cluster" ""
    # The slot keeps the primary's WAL until the standby has it, however far it falls behind.
    if [ "$(psql_on "$2" "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot'")" != 0 ]; then
        psql_on "$2" "SELECT pg_drop_replication_slot('$slot')" >/dev/null
    fi
    find "$(datadir "$cluster")" -mindepth 1 -delete
    # -R writes standby.signal and primary_conninfo (with this application_name, which
    # synchronous_standby_names names) and primary_slot_name.
    runuser -u postgres -- "$BIN/pg_basebackup" \
        -d "host=127.0.0.1 port=$2 user=root application_name=$app" \
        -D "$(datadir "$cluster")" -R -X stream -S "$slot" -C -c fast
    start "$cluster" "$3"
}

promoted() {  # NAME: the standby exists but is no longer one
    exists "$1-standby" && [ -f "$(datadir "$1-standby")/PG_VERSION" ] &&
        [ ! -f "$(datadir "$1-standby")/standby.signal" ]
}

drop() {  # CLUSTER
    pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$1" stop -m immediate 2>/dev/null || true
    pg_dropcluster "$VERSION" "$1" 2>/dev/null || true
    # What pg_dropcluster leaves of a cluster it calls corrupted (a base backup that failed).
    rm -rf "/etc/postgresql/$VERSION/$1" "$(datadir "$1")"
}

cmd_up() {
    [ $# -ge 3 ] || usage
    local name="$1" primary_port="$2" standby_port="$3" sync="${4:-}"
    [ -z "$sync" ] || [ "$sync" = "--sync" ] || usage
    [ "$primary_port" != 5432 ] && [ "$standby_port" != 5432 ] || die "5432 is the machine's own cluster"
    if promoted "$name"; then
        echo "pgpair: $name-standby was promoted; making the pair afresh" >&2
        cmd_down "$name"
    fi
    for cluster in "$name-primary" "$name-standby"; do
        if exists "$cluster"; then
            local port
            port=$(pg_lsclusters -h "$VERSION" "$cluster" | awk '{print $3}')
            local want=$primary_port
            [ "$cluster" = "$name-standby" ] && want=$standby_port
            [ "$port" = "$want" ] || die "$cluster exists on port $port, not $want: pgpair.sh down $name first"
        fi
    done
    exists "$name-primary" || create_primary "$name" "$primary_port"
    start "$name-primary" "$primary_port"
    root_role "$primary_port"
    if exists "$name-standby" && [ ! -f "$(datadir "$name-standby")/PG_VERSION" ]; then
        drop "$name-standby"  # its base backup failed part-way
    fi
    if exists "$name-standby"; then
        start "$name-standby" "$standby_port"
    else
        create_standby "$name" "$primary_port" "$standby_port"
    fi
    local names=""
    [ "$sync" = "--sync" ] && names="$(ident "$name")_standby"
    configure "$name-primary" "$names"
    psql_on "$primary_port" "SELECT pg_reload_conf()" >/dev/null
    # Ready when the standby streams (and, synchronous, is the primary's sync standby).
    local app want_state="async"
    app="$(ident "$name")_standby"
    [ -n "$names" ] && want_state="sync"
    for _ in $(seq 1 120); do
        if [ "$(psql_on "$primary_port" "SELECT sync_state FROM pg_stat_replication WHERE application_name = '$app' AND state = 'streaming'")" = "$want_state" ]; then
            echo "pgpair: $name up: primary 127.0.0.1:$primary_port, standby 127.0.0.1:$standby_port ($want_state)"
            return 0
        fi
        sleep 0.5
    done
    die "the standby does not stream ($want_state) from the primary"
}

cmd_down() {
    [ $# -eq 1 ] || usage
    local cluster
    for cluster in "$1-standby" "$1-primary"; do
        if exists "$cluster" || [ -d "/etc/postgresql/$VERSION/$cluster" ]; then
            drop "$cluster"
        fi
    done
}

cmd_kill_primary() {
    [ $# -eq 1 ] || usage
    local pidfile pid
    pidfile="$(datadir "$1-primary")/postmaster.pid"
    [ -f "$pidfile" ] || die "$1-primary is not running"
    pid=$(head -n 1 "$pidfile")
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    echo "pgpair: killed $1-primary (postmaster $pid)"
}

cmd_promote() {
    [ $# -eq 1 ] || usage
    local port
    exists "$1-standby" || die "no $1-standby"
    port=$(pg_lsclusters -h "$VERSION" "$1-standby" | awk '{print $3}')
    if [ "$(psql_on "$port" "SELECT pg_is_in_recovery()")" = t ]; then
        pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$1-standby" promote
    fi
    for _ in $(seq 1 240); do
        if [ "$(psql_on "$port" "SELECT pg_is_in_recovery()")" = f ]; then
            echo "pgpair: $1-standby promoted, writable on 127.0.0.1:$port"
            return 0
        fi
        sleep 0.25
    done
    die "$1-standby did not become writable"
}

cmd_status() {
    [ $# -eq 1 ] || usage
    local cluster port found=1
    for cluster in "$1-primary" "$1-standby"; do
        exists "$cluster" || continue
        found=0
        port=$(pg_lsclusters -h "$VERSION" "$cluster" | awk '{print $3}')
        if running "$cluster"; then
            echo "$cluster 127.0.0.1:$port running, in recovery: $(psql_on "$port" "SELECT pg_is_in_recovery()")"
            psql_on "$port" "SELECT '  streams to ' || application_name || ' ' || state || ' ' || sync_state || ', replay lag ' || coalesce(replay_lag::text, '0') FROM pg_stat_replication"
            psql_on "$port" "SELECT '  replayed to ' || pg_last_wal_replay_lsn() || ' of ' || pg_last_wal_receive_lsn() || ', last transaction at ' || coalesce(pg_last_xact_replay_timestamp()::text, 'none') WHERE pg_is_in_recovery()"
        else
            echo "$cluster 127.0.0.1:$port down"
        fi
    done
    [ "$found" = 0 ] || die "no pair named $1"
}

[ "$(id -u)" = 0 ] || die "run as root"
[ $# -ge 2 ] || usage
command=$1
shift
case "$command" in
up) cmd_up "$@" ;;
down) cmd_down "$@" ;;
kill-primary) cmd_kill_primary "$@" ;;
promote) cmd_promote "$@" ;;
status) cmd_status "$@" ;;
*) usage ;;
esac
