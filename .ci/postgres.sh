#!/usr/bin/env bash
# Start a private PostgreSQL server on localhost for the sweep tests and print its URL.
#
#   bash .ci/postgres.sh [start]     install PostgreSQL if missing (apt-get; skipped when
#                                    ECLAB_PG_NO_INSTALL=1), initdb a private cluster, start it,
#                                    create the database; the LAST line of stdout is the URL
#   bash .ci/postgres.sh stop        stop that server
#   source .ci/postgres.sh           as start, and also exports ECLAB_TEST_PG_URL
#
# Settings (environment): ECLAB_PG_PORT (default 55432), ECLAB_PG_DIR (default /tmp/eclab-pg-$PORT:
# data folder, socket and log), ECLAB_PG_DB (default eclab_test). The server trusts local
# connections only (listen_addresses=127.0.0.1), runs as the `postgres` system user when this script
# runs as root (PostgreSQL refuses to run as root) and as the current user otherwise. Starting a
# server that is already up is a no-op. All progress goes to stderr.

_pg_main() {
    local action="${1:-start}"
    local port="${ECLAB_PG_PORT:-55432}"
    local dir="${ECLAB_PG_DIR:-/tmp/eclab-pg-$port}"
    local db="${ECLAB_PG_DB:-eclab_test}"
    local data="$dir/data"
    local url="postgresql://postgres@127.0.0.1:$port/$db"

    _pg_bindir() {
        local d
        for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
            [ -x "$d/initdb" ] && { echo "$d"; return 0; }
        done
        command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
        return 1
    }

    local bindir
    if ! bindir="$(_pg_bindir)"; then
        if [ "$action" = stop ]; then return 0; fi
        if [ "${ECLAB_PG_NO_INSTALL:-0}" = 1 ]; then
            echo "postgres.sh: PostgreSQL is not installed (and ECLAB_PG_NO_INSTALL=1)" >&2
            return 1
        fi
        if [ "$(id -u)" != 0 ]; then
            echo "postgres.sh: PostgreSQL is not installed and this is not root: apt-get install postgresql" >&2
            return 1
        fi
        echo "postgres.sh: installing PostgreSQL (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q postgresql >&2 || { apt-get update -q >&2 && apt-get install -y -q postgresql >&2; }
        bindir="$(_pg_bindir)" || { echo "postgres.sh: PostgreSQL install failed" >&2; return 1; }
    fi

    # run a command as the server's user
    local as_user=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
        if command -v runuser >/dev/null 2>&1; then as_user=(runuser -u postgres --); else as_user=(su postgres -s /bin/sh -c); fi
    fi
    _as() {
        if [ "${#as_user[@]}" -eq 0 ]; then "$@";
        elif [ "${as_user[0]}" = runuser ]; then "${as_user[@]}" "$@";
        else "${as_user[@]}" "$(printf '%q ' "$@")"; fi
    }

    if [ "$action" = stop ]; then
        if [ -f "$data/postmaster.pid" ]; then
            _as "$bindir/pg_ctl" -D "$data" -m fast -w stop >&2 || true
        fi
        return 0
    fi

    if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
        echo "postgres.sh: a server already answers on port $port" >&2
    else
        mkdir -p "$dir"
        [ "$(id -u)" = 0 ] && chown postgres: "$dir"
        chmod 700 "$dir"
        if [ ! -f "$data/PG_VERSION" ]; then
            echo "postgres.sh: initdb $data" >&2
            _as "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
                || { cat "$dir/initdb.log" >&2; return 1; }
        fi
        rm -f "$data/postmaster.pid.stale"
        echo "postgres.sh: starting the server on 127.0.0.1:$port (log $dir/server.log)" >&2
        _as "$bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
            -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=100 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >&2 || { tail -20 "$dir/server.log" >&2; return 1; }
    fi
    local i
    for i in $(seq 1 30); do
        "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" && break
        sleep 1
    done
    if ! "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
        "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db" >&2
    fi
    export ECLAB_TEST_PG_URL="$url"
    echo "$url"
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # sourced: run in a child bash (the caller's shell options stay as they are), export the URL
    if _eclab_pg_url="$(bash "${BASH_SOURCE[0]}" start | tail -n 1)" && [ -n "$_eclab_pg_url" ]; then
        export ECLAB_TEST_PG_URL="$_eclab_pg_url"
        echo "ECLAB_TEST_PG_URL=$ECLAB_TEST_PG_URL" >&2
    else
        echo "postgres.sh: no PostgreSQL server; ECLAB_TEST_PG_URL stays unset" >&2
    fi
    unset _eclab_pg_url
else
    set -euo pipefail
    _pg_main "${1:-start}"
fi
