#!/usr/bin/env bash
# Static checks, run by scripts/test.sh before the suite (and so by CI): ruff's lint rules, ruff's
# formatting (checked, never rewritten here) and mypy --strict over src/ (settings in pyproject.toml).
# Any finding fails. Expects the venv scripts/test.sh creates; `--fix` applies ruff's safe fixes and
# formats instead of checking.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/.venv/bin"
[[ -x "$BIN/ruff" && -x "$BIN/mypy" ]] || {
    echo "lint: error: .venv lacks ruff/mypy; run scripts/test.sh once (it installs the test extra)" >&2
    exit 1
}

if [[ "${1:-}" == "--fix" ]]; then
    "$BIN/ruff" check --fix .
    "$BIN/ruff" format .
else
    "$BIN/ruff" check .
    "$BIN/ruff" format --check .
fi
"$BIN/mypy"
echo "lint: ruff and mypy --strict found nothing"
