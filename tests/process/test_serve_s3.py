"""`metricgate serve` with an s3:// artifact root: a misconfigured bucket stops start-up with a clear
message (never a traceback, never the secret), against a real SeaweedFS that checks credentials."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from s3_services import S3Endpoint
from scripts import devservices

START_TIMEOUT_S = 40.0


def _serve_until_exit(env: dict[str, str], log_path: Path) -> tuple[int, str]:
    port = devservices.find_free_port()
    cmd = [sys.executable, "-m", "metricgate", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        code = proc.wait(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(
            f"serve did not exit on a bad artifact root:\n{log_path.read_text(errors='replace')[-3000:]}"
        )
    return code, log_path.read_text(errors="replace")


def _env(
    db_url: str, redis_url: str, endpoint: S3Endpoint, uri: str, secret: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METRICGATE_", "AWS_"))}
    env.update(endpoint.env())
    env.update(
        METRICGATE_DATABASE_URL=db_url,
        METRICGATE_REDIS_URL=redis_url,
        METRICGATE_ARTIFACTS_URI=uri,
        AWS_SECRET_ACCESS_KEY=secret,
    )
    return env


@pytest.mark.parametrize("problem", ["wrong-secret", "missing-bucket"])
def test_serve_refuses_an_unusable_s3_root(
    db_url: str, redis_client_url: str, s3_seaweed: S3Endpoint, tmp_path: Path, problem: str
) -> None:
    if problem == "wrong-secret":
        secret, uri, expected = (
            "wrong-" + s3_seaweed.secret_key[:6],
            f"s3://{s3_seaweed.bucket}/x",
            "refused access",
        )
    else:
        secret, uri, expected = s3_seaweed.secret_key, "s3://no-such-bucket-mg/x", "not usable"
    code, log = _serve_until_exit(
        _env(db_url, redis_client_url, s3_seaweed, uri, secret), tmp_path / "serve.log"
    )
    assert code != 0
    assert "METRICGATE_ARTIFACTS_URI" in log and expected in log, log
    assert "Traceback" not in log
    assert secret not in log
