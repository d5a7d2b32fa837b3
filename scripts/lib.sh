# Shell helpers shared by scripts/up.sh and deploy/local-scaleout.sh (sourced, not run).
# Each probe runs a short Python in "$LIB_PY" (the caller sets it: the venv's python).

# 0 when GET $1 answers HTTP 200 within 2 s.
http_ok() {
    "$LIB_PY" - "$1" <<'PYEOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception:
    sys.exit(1)
PYEOF
}

# 0 when something accepts TCP connections on host $1, port $2.
port_taken() {
    "$LIB_PY" -c 'import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)' "$1" "$2"
}

# The pid in pid file $1 if that process is alive and still runs "metricgate $2" (a pid file
# left by a crash may name a recycled pid: never signal anything else).
live_pid() {
    local pid
    pid="$(cat "$1" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "metricgate $2"; then
        echo "$pid"
    fi
}
