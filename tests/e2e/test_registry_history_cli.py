"""Audit history end to end: changes made by the real mlflow client (user name sent with HTTP
Basic auth) and by raw HTTP, read back with ``metricgate registry history``."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metricgate", "registry", "history", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_history_records_the_client_user_and_the_cli_shows_it(
    mlflow_tracking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    # The mlflow client sends these as HTTP Basic credentials; nothing checks the password yet.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "carol")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-checked")
    client = MlflowClient()
    client.create_registered_model("fraud", description="v0")
    for i in range(2):
        client.create_model_version("fraud", f"s3://bucket/fraud/{i}")
    client.transition_model_version_stage("fraud", "1", "Production")
    client.transition_model_version_stage(
        "fraud", "2", "Production", archive_existing_versions=True
    )
    client.set_registered_model_alias("fraud", "champion", "2")
    # Our own callers can name themselves and say why.
    response = requests.patch(
        f"{mlflow_tracking}/api/2.0/mlflow/registered-models/update",
        json={"name": "fraud", "description": "v1", "comment": "clarify the owner"},
        headers={"X-Metricgate-User": "dave"},
        timeout=10,
    )
    assert response.status_code == 200, response.text

    listed = _cli("fraud", "--url", mlflow_tracking)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 8
    assert "registered_model.updated" in lines[0] and "by dave (unverified)" in lines[0]
    assert "description: v0 -> v1" in lines[0] and lines[0].endswith("# clarify the owner")
    assert "alias.set v2" in lines[1] and "by carol (unverified)" in lines[1]
    assert (
        "model_version.stage_changed v1" in lines[2]
        and "current_stage: Production -> Archived" in lines[2]
    )
    assert (
        "model_version.stage_changed v2" in lines[3]
        and "current_stage: None -> Production" in lines[3]
    )
    assert lines[-1].split()[1] == "registered_model.created"

    as_json = _cli("fraud", "--url", mlflow_tracking, "--json", "--version", "1")
    assert as_json.returncode == 0, as_json.stderr
    events: list[dict[str, Any]] = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [e["event_type"] for e in events] == [
        "model_version.stage_changed",  # archived when version 2 was promoted
        "model_version.stage_changed",
        "model_version.created",
    ]
    assert {(e["actor"], e["actor_verified"], e["version"]) for e in events} == {
        ("carol", False, "1")
    }
    assert events[0]["after"] == {"current_stage": "Archived", "archived_by_version": 2}

    limited = _cli("fraud", "--url", mlflow_tracking, "--limit", "2")
    assert limited.returncode == 0 and len(limited.stdout.splitlines()) == 2

    # MLFLOW_TRACKING_URI (set by the fixture) is the default server.
    assert _cli("fraud").stdout == listed.stdout

    missing = _cli("nobody", "--url", mlflow_tracking)
    assert missing.returncode == 1
    assert "RESOURCE_DOES_NOT_EXIST" in missing.stderr and "nobody" in missing.stderr
