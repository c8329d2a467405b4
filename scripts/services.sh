#!/usr/bin/env bash
# The project's own Redis and PostgreSQL servers, for scale-out work and its tests (DESIGN 9).
#
#   scripts/services.sh start    install (Debian packages) when missing, start on loopback,
#                                wait until both accept connections, print their URLs
#   scripts/services.sh stop     stop both and remove the data directory
#   scripts/services.sh status   print the URLs of the running ones (exit 1 if none)
#   scripts/services.sh stop-redis | stop-postgres
#                                stop one server, keeping its data (`start` restarts it):
#                                failure tests; PostgreSQL stops as if it crashed (immediate)
#
# stdout carries only the URL lines (REDIS_URL=..., POSTGRES_URL=...), so callers can
# `eval "$(scripts/services.sh start)"`; everything else goes to stderr.
#
# Throw-away data under ${LIFECYCLE_SERVICES_DIR:-/tmp/lifecycle-services}: Redis without
# persistence on ${LIFECYCLE_REDIS_PORT:-6390}; PostgreSQL on ${LIFECYCLE_PG_PORT:-5440}
# (trust auth on loopback, superuser and database "lifecycle", fsync off). As root,
# PostgreSQL runs as the "postgres" system user (created when absent).
# LIFECYCLE_REDIS_PERSIST=1: Redis keeps its data across restarts (append-only file, fsynced
# every second and on shutdown), as a production server would.
set -euo pipefail

DIR="${LIFECYCLE_SERVICES_DIR:-/tmp/lifecycle-services}"
REDIS_PORT="${LIFECYCLE_REDIS_PORT:-6390}"
PG_PORT="${LIFECYCLE_PG_PORT:-5440}"
WAIT_SECONDS="${LIFECYCLE_SERVICES_WAIT:-30}"
REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"
POSTGRES_URL="postgresql://lifecycle@127.0.0.1:${PG_PORT}/lifecycle"
PG_USER=postgres
REDIS_PERSIST=(--save "" --appendonly no)
[ "${LIFECYCLE_REDIS_PERSIST:-0}" = 1 ] && REDIS_PERSIST=(--save "" --appendonly yes --appendfsync everysec)

say() { echo "services: $*" >&2; }
die() { say "error: $*"; exit 1; }

# ---- installation -------------------------------------------------------------------------

apt_install() {  # apt_install PACKAGE...: quiet, non-interactive; refreshes the lists once if needed
    [ "$(id -u)" = 0 ] || die "$* missing and not root: install them (apt-get install $*)"
    say "installing $* (Debian packages) ..."
    local log="${TMPDIR:-/tmp}/lifecycle-services-apt.log"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1; then
        apt-get update -qq >>"$log" 2>&1 || true
        apt-get install -y -qq --no-install-recommends "$@" >>"$log" 2>&1 \
            || die "apt-get install $* failed; see $log: $(tail -3 "$log" | tr '\n' ' ')"
    fi
}

pg_bindir() {  # the newest /usr/lib/postgresql/<ver>/bin holding a server, else nothing
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
}

ensure_installed() {
    local missing=()
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)
    [ -n "$(pg_bindir)" ] || missing+=(postgresql)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
    command -v redis-server >/dev/null || die "redis-server still missing after apt-get install"
    [ -n "$(pg_bindir)" ] || die "no PostgreSQL server under /usr/lib/postgresql/*/bin after install"
}

# ---- PostgreSQL runs as a non-root user ---------------------------------------------------

as_pg() {  # run a command as the PostgreSQL user (as ourselves when not root)
    if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

ensure_pg_user() {
    [ "$(id -u)" = 0 ] || return 0
    id -u "$PG_USER" >/dev/null 2>&1 \
        || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER" \
        || die "cannot create the system user $PG_USER to run PostgreSQL"
}

# ---- probes -------------------------------------------------------------------------------

redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -qx PONG; }

pg_up() {
    local bin
    bin="$(pg_bindir)"
    [ -n "$bin" ] && "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d lifecycle -U lifecycle
}

pid_alive() { [ -f "$1" ] && kill -0 "$(head -1 "$1")" 2>/dev/null; }

ours_redis() { pid_alive "$DIR/redis.pid" && redis_up; }
ours_pg() { pid_alive "$DIR/pg/postmaster.pid" && pg_up; }

wait_for() {  # wait_for NAME PROBE LOG: poll PROBE until it succeeds or WAIT_SECONDS pass
    local name="$1" probe="$2" log="$3" i
    for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
        if "$probe"; then return 0; fi
        sleep 0.1
    done
    die "$name did not accept connections within ${WAIT_SECONDS}s; last log lines: $(tail -5 "$log" 2>/dev/null | tr '\n' ' ')"
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- start / stop -------------------------------------------------------------------------

start_redis() {
    if ours_redis; then say "redis already running on port $REDIS_PORT"; return 0; fi
    port_taken "$REDIS_PORT" && die "port $REDIS_PORT is taken by another program (set LIFECYCLE_REDIS_PORT)"
    mkdir -p "$DIR/redis"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        "${REDIS_PERSIST[@]}" --dir "$DIR/redis" \
        --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >&2 9>&- \
        || die "redis-server failed to start; see $DIR/redis.log"
    wait_for redis redis_up "$DIR/redis.log"
    say "redis started on 127.0.0.1:$REDIS_PORT"
}

init_pg() {  # a fresh cluster: trust auth, superuser "lifecycle", then the database "lifecycle"
    local bin="$1"
    rm -rf "$DIR/pg"
    mkdir -p "$DIR/pg" "$DIR/pgsock"
    [ "$(id -u)" = 0 ] && chown "$PG_USER" "$DIR/pg" "$DIR/pgsock"
    chmod 700 "$DIR/pg"
    as_pg "$bin/initdb" -D "$DIR/pg" -U lifecycle --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$DIR/initdb.log" 2>&1 || die "initdb failed; see $DIR/initdb.log: $(tail -3 "$DIR/initdb.log" | tr '\n' ' ')"
}

start_pg() {
    if ours_pg; then say "postgresql already running on port $PG_PORT"; return 0; fi
    port_taken "$PG_PORT" && die "port $PG_PORT is taken by another program (set LIFECYCLE_PG_PORT)"
    local bin
    bin="$(pg_bindir)"
    ensure_pg_user
    chmod 755 "$DIR"
    [ -f "$DIR/pg/PG_VERSION" ] || init_pg "$bin"
    touch "$DIR/postgres.log"
    [ "$(id -u)" = 0 ] && chown "$PG_USER" "$DIR/postgres.log"
    as_pg "$bin/pg_ctl" start -D "$DIR/pg" -l "$DIR/postgres.log" -w -t "$WAIT_SECONDS" -o \
        "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$DIR/pgsock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        >&2 9>&- || die "postgresql failed to start; see $DIR/postgres.log: $(tail -3 "$DIR/postgres.log" | tr '\n' ' ')"
    wait_for postgresql pg_up_any "$DIR/postgres.log"
    "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U lifecycle -d postgres -qtAc \
        "SELECT 1 FROM pg_database WHERE datname = 'lifecycle'" | grep -q 1 \
        || "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U lifecycle lifecycle \
        || die "cannot create the database lifecycle"
    say "postgresql started on 127.0.0.1:$PG_PORT"
}

pg_up_any() {  # the server answers (the database "lifecycle" may not exist yet)
    "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -U lifecycle
}

stop_redis() {  # SIGTERM: Redis closes its clients (and, persisting, fsyncs its file)
    if pid_alive "$DIR/redis.pid"; then
        local pid
        pid="$(head -1 "$DIR/redis.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        say "redis stopped"
    fi
}

stop_pg() {  # immediate: no checkpoint, the next start recovers from the WAL (as after a crash)
    if pid_alive "$DIR/pg/postmaster.pid"; then
        as_pg "$(pg_bindir)/pg_ctl" stop -D "$DIR/pg" -m immediate -w >&2 || true
        say "postgresql stopped"
    fi
}

stop_all() {
    stop_redis
    stop_pg
    rm -rf "$DIR"
}

status() {
    local any=1
    if ours_redis; then echo "REDIS_URL=$REDIS_URL"; any=0; fi
    if ours_pg; then echo "POSTGRES_URL=$POSTGRES_URL"; any=0; fi
    [ $any = 0 ] || say "no server running under $DIR"
    return $any
}

with_lock() {  # one start/stop at a time per data directory (parallel test sessions);
    # the servers are started with fd 9 closed, so they never hold the lock
    mkdir -p "$DIR"
    exec 9>"$DIR.lock"
    flock -w 120 9 || die "another services.sh holds $DIR.lock for over 120s"
    "$@"
}

start() {
    ensure_installed
    start_redis
    start_pg
    echo "REDIS_URL=$REDIS_URL"
    echo "POSTGRES_URL=$POSTGRES_URL"
}

case "${1:-}" in
    start) with_lock start ;;
    stop) with_lock stop_all ;;
    stop-redis) with_lock stop_redis ;;
    stop-postgres) with_lock stop_pg ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status|stop-redis|stop-postgres" >&2; exit 2 ;;
esac
