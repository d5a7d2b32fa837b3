#!/usr/bin/env bash
# Stops what scripts/up.sh started: the server, then the private PostgreSQL and Redis.
# Data stays in the state dir; `scripts/down.sh --purge` deletes it too (databases, streams,
# artifacts, logs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="${METRICGATE_STATE_DIR:-$ROOT/.state}"
PIDFILE="$STATE/metricgate.pid"
PURGE=0
for arg in "$@"; do
    case "$arg" in
        --purge) PURGE=1 ;;
        -h | --help) sed -n '2,4p' "$0"; exit 0 ;;
        *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
    esac
done

say() { printf 'down: %s\n' "$*" >&2; }

if [[ ! -d "$STATE" ]]; then
    say "nothing to stop ($STATE does not exist)"
    exit 0
fi

# 1. the server: SIGTERM lets it finish in-flight requests (METRICGATE_SHUTDOWN_TIMEOUT_S, 30 s).
pid="$(cat "$PIDFILE" 2>/dev/null || true)"
if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'metricgate serve'; then
    say "stopping metricgate (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 90); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "still running after 45 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
else
    say "metricgate server is not running"
fi
rm -f "$PIDFILE"

# 2. PostgreSQL and Redis (scripts/devservices.py is stdlib-only: works without the virtualenv too).
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || PY="$(command -v python3)"
args=(down --state-dir "$STATE")
((PURGE)) && args+=(--purge)
"$PY" scripts/devservices.py "${args[@]}"

if ((PURGE)); then
    rm -rf "$STATE"
    say "deleted $STATE"
fi
