"""A stock ``mlflow server`` from this virtualenv (SQLite, proxied local artifacts): the oracle the
GraphQL comparison test and the UI survey hold metricgate against, plus the process helper both use."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from scripts import devservices

# Stock MLflow takes ~9 s to start here (it imports most of the ML stack).
START_TIMEOUT_S = 60
# No telemetry from a test server, whatever the machine allows.
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)


@contextlib.contextmanager
def running_process(cmd: list[str], env: dict[str, str], log: Path, ready_url: str,
                    timeout_s: float = START_TIMEOUT_S) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """``cmd`` running (output in ``log``) once ``ready_url`` answers 200; stopped at the end."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=log.parent)  # fmt: skip
    try:
        _wait_ready(ready_url, proc, log, timeout_s)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def stock_mlflow_server(root: Path) -> Iterator[str]:
    """Base URL of a stock ``mlflow server`` keeping everything under ``root``."""
    port = devservices.find_free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running_process(
        cmd, {**os.environ, **QUIET_ENV}, root / "stock-mlflow.log", url + "/health"
    ):
        yield url
