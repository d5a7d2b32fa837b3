#!/usr/bin/env bash
# Scale-out on one machine: 2 gateways + 2 flushers running the same commands as the containers
# in deploy/compose.yaml and deploy/k8s/ (`metricgate serve --no-flusher`, `metricgate flush`),
# sharing one PostgreSQL and one Redis.
#
#   deploy/local-scaleout.sh [start]   migrate, start what is not running, wait until ready
#   deploy/local-scaleout.sh status    what runs (exit 0 when everything does, 3 otherwise)
#   deploy/local-scaleout.sh stop      SIGTERM gateways, then flushers (each drains); wait
#
# PostgreSQL and Redis: METRICGATE_DATABASE_URL / METRICGATE_REDIS_URL when set, otherwise the
# dev stack's private services (the ones scripts/up.sh starts, in the same state dir).
# Settings of this script (every other METRICGATE_* variable is passed to the processes as is):
#   METRICGATE_STATE_DIR            state dir (default .state/); pid files and logs in <state>/scaleout/
#   METRICGATE_HOST                 listen address of the gateways (default 127.0.0.1)
#   METRICGATE_SCALEOUT_PORTS       gateway ports (default "5001 5002")
#   METRICGATE_SCALEOUT_FLUSHERS    flusher processes (default 2)
#   METRICGATE_START_TIMEOUT_S      how long start waits for readiness (default 60)
# No load balancer is started: point clients at either port (or put one in front, see
# deploy/haproxy.cfg).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="${METRICGATE_STATE_DIR:-$ROOT/.state}"
mkdir -p "$STATE/scaleout"
STATE="$(cd "$STATE" && pwd)"
RUN_DIR="$STATE/scaleout"
HOST="${METRICGATE_HOST:-127.0.0.1}"
PORTS="${METRICGATE_SCALEOUT_PORTS:-5001 5002}"
FLUSHERS="${METRICGATE_SCALEOUT_FLUSHERS:-2}"
START_TIMEOUT_S="${METRICGATE_START_TIMEOUT_S:-60}"
# Long enough for a gateway's in-flight requests (SHUTDOWN_TIMEOUT_S) or a flusher's batch in
# hand (FLUSH_DRAIN_TIMEOUT_S) to finish; SIGKILL after that loses nothing acknowledged.
# (Whole seconds: the settings may be fractional, bash arithmetic is not.)
shutdown_s="${METRICGATE_SHUTDOWN_TIMEOUT_S:-30}"
drain_s="${METRICGATE_FLUSH_DRAIN_TIMEOUT_S:-20}"
STOP_TIMEOUT_S=$(( ${shutdown_s%%.*} + ${drain_s%%.*} + 6 ))
PROBE_HOST="$HOST"
case "$HOST" in 0.0.0.0 | "::" | "") PROBE_HOST=127.0.0.1 ;; esac

say() { printf 'scaleout: %s\n' "$*" >&2; }
die() { printf 'scaleout: error: %s\n' "$*" >&2; exit 1; }

if [[ -x "$ROOT/.venv/bin/metricgate" ]]; then
    METRICGATE="$ROOT/.venv/bin/metricgate"
    PY="$ROOT/.venv/bin/python"
else
    METRICGATE="$(command -v metricgate)" || die "no .venv/bin/metricgate and no metricgate on PATH; run scripts/up.sh first"
    PY="$(command -v python3)"
fi

# http_ok, port_taken, live_pid (shared with scripts/up.sh).
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
LIB_PY="$PY"

# kill -0 also succeeds on a zombie; an exited process counts as stopped.
alive() {
    kill -0 "$1" 2>/dev/null && [[ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]]
}

gateway_pidfile() { echo "$RUN_DIR/gateway-$1.pid"; }
flusher_pidfile() { echo "$RUN_DIR/flusher-$1.pid"; }

log_tail() {
    echo "--- last lines of $1 ---" >&2
    tail -n 30 "$1" >&2 || true
}

# ---------------------------------------------------------------- start

resolve_services() {
    local flags=() exports
    [[ -n "${METRICGATE_DATABASE_URL:-}" ]] && flags+=(--no-postgres)
    [[ -n "${METRICGATE_REDIS_URL:-}" ]] && flags+=(--no-redis)
    if ((${#flags[@]} < 2)); then
        say "starting (or reusing) the dev stack's private services in $STATE"
        exports="$("$PY" "$ROOT/scripts/devservices.py" up --state-dir "$STATE" "${flags[@]}")" ||
            die "could not start PostgreSQL/Redis (see above)"
        eval "$exports"
    fi
    # Every gateway must see the same artifact root (a client may upload through one gateway
    # and download through the other).
    export METRICGATE_ARTIFACTS_URI="${METRICGATE_ARTIFACTS_URI:-file://$STATE/artifacts}"
    export METRICGATE_DATABASE_URL METRICGATE_REDIS_URL
}

start_gateway() {
    local port="$1" pidfile log pid
    pidfile="$(gateway_pidfile "$port")"
    log="$RUN_DIR/gateway-$port.log"
    pid="$(live_pid "$pidfile" serve)"
    if [[ -n "$pid" ]]; then
        say "gateway on port $port already running (pid $pid)"
        return
    fi
    port_taken "$PROBE_HOST" "$port" && die "port $port on $PROBE_HOST is used by another program; set METRICGATE_SCALEOUT_PORTS"
    nohup "$METRICGATE" serve --no-flusher --host "$HOST" --port "$port" >"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    say "gateway: metricgate serve --no-flusher --port $port (pid $!, log $log)"
}

start_flusher() {
    local index="$1" pidfile log pid
    pidfile="$(flusher_pidfile "$index")"
    log="$RUN_DIR/flusher-$index.log"
    pid="$(live_pid "$pidfile" flush)"
    if [[ -n "$pid" ]]; then
        say "flusher $index already running (pid $pid)"
        return
    fi
    nohup "$METRICGATE" flush >"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    say "flusher $index: metricgate flush (pid $!, log $log)"
}

# Gateways are ready when GET /ready answers 200; a flusher has no HTTP port, so it is ready
# once it logged that its workers run (it has connected to PostgreSQL and Redis by then).
wait_ready() {
    local deadline=$((SECONDS + START_TIMEOUT_S)) port index pending
    while :; do
        pending=0
        for port in $PORTS; do
            [[ -n "$(live_pid "$(gateway_pidfile "$port")" serve)" ]] ||
                { log_tail "$RUN_DIR/gateway-$port.log"; return 1; }
            http_ok "http://$PROBE_HOST:$port/ready" || pending=1
        done
        for index in $(seq 1 "$FLUSHERS"); do
            [[ -n "$(live_pid "$(flusher_pidfile "$index")" flush)" ]] ||
                { log_tail "$RUN_DIR/flusher-$index.log"; return 1; }
            grep -q "flusher process running" "$RUN_DIR/flusher-$index.log" 2>/dev/null || pending=1
        done
        ((pending == 0)) && return 0
        if ((SECONDS >= deadline)); then
            say "not ready within $START_TIMEOUT_S s"
            return 1
        fi
        sleep 0.2
    done
}

cmd_start() {
    resolve_services
    # One schema migration before any process starts, as the compose `migrate` service and the
    # Kubernetes Job do (serve refuses an outdated schema).
    "$METRICGATE" migrate >&2 || die "metricgate migrate failed (see above)"
    local port index
    for port in $PORTS; do start_gateway "$port"; done
    for index in $(seq 1 "$FLUSHERS"); do start_flusher "$index"; done
    if ! wait_ready; then
        say "start-up failed; stopping what was started"
        cmd_stop >/dev/null || true
        exit 1
    fi
    echo
    echo "metricgate scale-out is running ($(wc -w <<<"$PORTS") gateways, $FLUSHERS flushers)"
    for port in $PORTS; do echo "  gateway  http://$PROBE_HOST:$port"; done
    echo "  state    $RUN_DIR"
    echo "Stop it: deploy/local-scaleout.sh stop"
}

# ---------------------------------------------------------------- status and stop

# Reads the pid files, so it reports what `start` started whatever the settings are now.
cmd_status() {
    shopt -s nullglob
    local missing=0 found=0 file name pid ready port
    for file in "$RUN_DIR"/gateway-*.pid; do
        found=1
        port="${file##*/gateway-}"; port="${port%.pid}"
        pid="$(live_pid "$file" serve)"
        if [[ -z "$pid" ]]; then
            echo "gateway $port: not running"; missing=1; continue
        fi
        ready="not ready"
        http_ok "http://$PROBE_HOST:$port/ready" && ready="ready"
        [[ "$ready" == ready ]] || missing=1
        echo "gateway $port: running (pid $pid), $ready"
    done
    for file in "$RUN_DIR"/flusher-*.pid; do
        found=1
        name="${file##*/}"; name="${name%.pid}"
        pid="$(live_pid "$file" flush)"
        if [[ -z "$pid" ]]; then
            echo "${name/-/ }: not running"; missing=1
        else
            echo "${name/-/ }: running (pid $pid)"
        fi
    done
    ((found)) || { echo "nothing started (no pid files in $RUN_DIR)"; missing=1; }
    return $((missing ? 3 : 0))
}

# SIGTERM every live process named by the given pid files, wait for all, SIGKILL stragglers.
stop_group() {
    local role="$1" file pid pids=() deadline
    shift
    for file in "$@"; do
        pid="$(live_pid "$file" "$role")"
        [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    done
    deadline=$((SECONDS + STOP_TIMEOUT_S))
    for pid in "${pids[@]}"; do
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if alive "$pid"; then
            say "$role pid $pid did not stop within $STOP_TIMEOUT_S s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -f "$@"
    echo "${#pids[@]}"
}

cmd_stop() {
    shopt -s nullglob
    # Gateways first: intake stops and in-flight requests finish; then the flushers write and
    # acknowledge the batch in hand. Anything still in Redis is flushed on the next start.
    local gateways flushers
    gateways="$(stop_group serve "$RUN_DIR"/gateway-*.pid)"
    flushers="$(stop_group flush "$RUN_DIR"/flusher-*.pid)"
    echo "stopped $gateways gateway(s) and $flushers flusher(s); PostgreSQL and Redis keep running (scripts/down.sh stops the dev stack)"
}

case "${1:-start}" in
    start) cmd_start ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    *) die "usage: $0 [start|status|stop]" ;;
esac
