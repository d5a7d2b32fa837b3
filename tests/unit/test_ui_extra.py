"""The `ui` extra: one mlflow pin shared by the UI, the tests and the Docker image."""

from __future__ import annotations

import re
import subprocess
import sys
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


def test_docker_image_installs_the_pinned_ui() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    command = re.search(r"--no-deps \"\$\(/opt/metricgate/bin/python -c '(.+?)'\)\"", text)
    assert command, "the Dockerfile installs the ui extra's mlflow without dependencies"
    # The same one-liner, run against this environment's metadata, names the pinned mlflow.
    done = subprocess.run(
        [sys.executable, "-c", command.group(1)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == _extras()["ui"][0]


def test_docker_install_line_quotes_right_in_sh() -> None:
    # Docker runs a shell-form RUN with /bin/sh -c: the same line, its venv paths pointed at this
    # environment and pip replaced by echo, must name exactly the pinned mlflow.
    line = next(
        ln for ln in (ROOT / "deploy" / "Dockerfile").read_text().splitlines() if "--no-deps" in ln
    )
    line = line.removeprefix("RUN ").replace("/opt/metricgate/bin/pip install", "echo")
    line = line.replace("/opt/metricgate/bin/python", sys.executable)
    done = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["--no-deps", _extras()["ui"][0]]
