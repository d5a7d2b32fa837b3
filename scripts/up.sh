#!/usr/bin/env bash
# Quick start, command 1: virtualenv + package, private PostgreSQL and Redis (unless
# METRICGATE_DATABASE_URL / METRICGATE_REDIS_URL are set), migrations, then the server in the
# background on http://127.0.0.1:5000 (METRICGATE_HOST / METRICGATE_PORT change that).
# Safe to re-run: whatever is already running is reused. Stop everything with scripts/down.sh.
#
# State (data, logs, pid file) lives in $METRICGATE_STATE_DIR, default .state/ in the repo.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="${METRICGATE_STATE_DIR:-$ROOT/.state}"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
PIDFILE="$STATE/metricgate.pid"
LOG="$STATE/metricgate.log"
HOST="${METRICGATE_HOST:-127.0.0.1}"
PORT="${METRICGATE_PORT:-5000}"
PROBE_HOST="$HOST"
case "$HOST" in 0.0.0.0 | "::" | "") PROBE_HOST=127.0.0.1 ;; esac
BASE_URL="http://$PROBE_HOST:$PORT"
START_TIMEOUT_S="${METRICGATE_START_TIMEOUT_S:-60}"

say() { printf 'up: %s\n' "$*" >&2; }
die() { printf 'up: error: %s\n' "$*" >&2; exit 1; }

find_python() {
    local candidate
    for candidate in python3.11 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# http_ok, port_taken, live_pid; their probes run in the venv's python.
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

show_log_tail() {
    echo "--- last lines of $LOG ---" >&2
    tail -n 40 "$LOG" >&2 || true
}

PY="$(find_python)" || die "Python >= 3.11 not found (tried python3.11, python3, python); on Debian 12: apt-get install python3 python3-venv"

# 1. virtualenv and package with MLflow's web UI (scripts/devservices.py is stdlib-only, so the
#    system Python can run it).
"$PY" scripts/devservices.py venv --venv "$ROOT/.venv" --project "$ROOT" --extras ui
VPY="$ROOT/.venv/bin/python"
LIB_PY="$VPY"  # scripts/lib.sh probes run here

# 2. private PostgreSQL / Redis, unless URLs are configured.
flags=()
[[ -n "${METRICGATE_DATABASE_URL:-}" ]] && flags+=(--no-postgres) && say "using METRICGATE_DATABASE_URL"
[[ -n "${METRICGATE_REDIS_URL:-}" ]] && flags+=(--no-redis) && say "using METRICGATE_REDIS_URL"
exports="$("$VPY" scripts/devservices.py up --state-dir "$STATE" "${flags[@]}")" || die "could not start PostgreSQL/Redis (see above)"
eval "$exports"
export METRICGATE_ARTIFACTS_URI="${METRICGATE_ARTIFACTS_URI:-file://$STATE/artifacts}"
export METRICGATE_DATABASE_URL METRICGATE_REDIS_URL

# 3. schema.
"$VPY" -m metricgate migrate >&2 || die "metricgate migrate failed (see above)"

# 4. the server, in the background.
pid="$(live_pid "$PIDFILE" serve)"
if [[ -n "$pid" ]] && ! http_ok "$BASE_URL/ready"; then
    say "server (pid $pid) is running but not ready; restarting it"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
    pid=""
fi
if [[ -n "$pid" ]]; then
    say "metricgate is already running (pid $pid)"
else
    if port_taken "$PROBE_HOST" "$PORT"; then
        die "port $PORT on $PROBE_HOST is used by another program; set METRICGATE_PORT to another port"
    fi
    say "starting metricgate serve on $HOST:$PORT (log: $LOG)"
    nohup "$VPY" -m metricgate serve --host "$HOST" --port "$PORT" >>"$LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDFILE"
    deadline=$((SECONDS + START_TIMEOUT_S))
    until http_ok "$BASE_URL/ready"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PIDFILE"
            show_log_tail
            die "metricgate serve exited during start-up"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail
            die "metricgate did not answer GET $BASE_URL/ready with 200 within ${START_TIMEOUT_S} s (pid $pid still running; scripts/down.sh stops it)"
        fi
        sleep 0.3
    done
fi

cat <<EOF

metricgate is running at $BASE_URL (pid $pid)
  web UI:    $BASE_URL/   (MLflow's own; live ingest page: $BASE_URL/metricgate/ingest)
  log:       $LOG
  database:  $(printf '%s' "$METRICGATE_DATABASE_URL" | sed -E 's#(://[^:/@]+:)[^@]*@#\1***@#')
  redis:     $(printf '%s' "$METRICGATE_REDIS_URL" | sed -E 's#(://[^:/@]*:)[^@]*@#\1***@#')
  artifacts: $METRICGATE_ARTIFACTS_URI

Use it from mlflow:
  export MLFLOW_TRACKING_URI=$BASE_URL
  python -c 'import mlflow; mlflow.set_experiment("demo"); mlflow.start_run(); mlflow.log_metric("loss", 0.5); mlflow.end_run()'

Stop it (server, PostgreSQL and Redis): scripts/down.sh
EOF
