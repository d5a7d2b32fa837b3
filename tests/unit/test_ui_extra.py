"""The `ui` extra: one mlflow pin shared by the UI and the tests (the Docker image's install line is
run in tests/process/test_deploy_tools.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_ui_extra_pins_the_mlflow_the_tests_run_against() -> None:
    extras = _extras()
    ui = [r for r in extras["ui"] if r.startswith("mlflow")]
    test = [r for r in extras["test"] if r.startswith("mlflow")]
    assert ui == test and len(ui) == 1
    assert re.fullmatch(r"mlflow==\d+\.\d+\.\d+", ui[0])
