"""``serve`` and access control (docs/design-auth.md B1): with auth on and no admin in the
database and no METRICGATE_AUTH_ADMIN_PASSWORD it refuses to start (exit 2, one clear line);
with auth off on a non-loopback address it warns at start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from scripts import devservices

START_TIMEOUT_S = 20.0


def _env(db_url: str, redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICGATE_")}
    env.update(
        METRICGATE_DATABASE_URL=db_url,
        METRICGATE_REDIS_URL=redis_url,
        METRICGATE_ARTIFACTS_URI=(tmp_path / "artifacts").as_uri(),
        METRICGATE_SHUTDOWN_TIMEOUT_S="5",
        **extra,
    )
    return env


def _serve_cmd(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "metricgate", "serve", "--host", host, "--port", str(port)]


@pytest.mark.parametrize("workers", [1, 2])
def test_auth_on_without_an_admin_refuses_to_start(
    db_url: str, redis_client_url: str, tmp_path: Path, workers: int
) -> None:
    # With --workers the parent checks once before any worker starts.
    env = _env(db_url, redis_client_url, tmp_path, METRICGATE_AUTH="on")
    port = devservices.find_free_port()
    command = [*_serve_cmd("127.0.0.1", port), "--workers", str(workers)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("metricgate:")]
    assert len(errors) == 1, done.stderr
    assert "METRICGATE_AUTH_ADMIN_PASSWORD" in errors[0], errors
    assert "Traceback" not in done.stderr


def test_auth_off_on_every_interface_warns_at_start(
    db_url: str, redis_client_url: str, tmp_path: Path
) -> None:
    port = devservices.find_free_port()
    log_path = tmp_path / "server.log"
    env = _env(db_url, redis_client_url, tmp_path)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            _serve_cmd("0.0.0.0", port), env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        output = log_path.read_text(errors="replace")
        assert "access control is OFF" in output and "METRICGATE_AUTH=on" in output, output
    finally:
        proc.kill()
        proc.wait()
