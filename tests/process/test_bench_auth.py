"""Ingest with access control on: ``benchmarks/bench_auth.py --quick`` runs every variant side by
side with auth off and reads every accepted point back under auth; ``metricgate bench`` sends the
credentials it is given on every request and stops at once when they are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from tests.conftest import LiveServer, _serve, _server_env

REPO = Path(__file__).resolve().parents[2]
ADMIN = ("admin", "admin-password-1")
WRITER = ("writer", "writer-password-1")
# Both personas and both schemes, with a server each (bench_auth starts one per variant).
VARIANTS = ("off", "admin-token", "user-basic")
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env.update(extra)
    return env


def _all_read_back(result: dict[str, object]) -> None:
    assert result["error_count"] == 0 and result["errors"] == {}, result
    assert result["requests_sent"] == result["requests_ok"] == result["requests_planned"], result
    assert result["points_accepted"] == result["points_planned"], result
    assert result["visible_checked"] and result["visible_complete"], result
    assert result["missing_points"] == 0 and result["extra_points"] == 0, result


def test_bench_auth_quick_reads_every_point_back_under_auth() -> None:
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_auth.py"), "--quick", "--rounds", "1"]
    cmd += ["--variants", ",".join(VARIANTS), "--no-progress", "--visible-timeout-s", "30"]
    done = subprocess.run(
        cmd, cwd=REPO, env=_clean_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["bench"] == "auth" and report["failure"] is None and report["problems"] == []
    figures = [("a-quick", 8), ("a-quick", 32), ("b-quick", 5)]
    results = report["results"]
    assert sorted((r["variant"], r["workload"], r["concurrency"]) for r in results) == sorted(
        (v, w, c) for v in VARIANTS for w, c in figures
    )
    for result in results:
        _all_read_back(result)
    # One server per variant, so every server holds the same data when it is measured.
    servers = {r["variant"]: r["url"] for r in results}
    assert len(set(servers.values())) == len(VARIANTS)
    assert all(r["url"] == servers[r["variant"]] for r in results)
    assert all(r["server_cpu_s"] is not None and r["server_cpu_s"] >= 0 for r in results)
    summary = report["summary"]
    assert len(summary) == len(VARIANTS) * len(figures)
    for row in summary:
        assert row["accepted_ratio"] > 0 and row["visible_ratio"] > 0, row
        if row["variant"] == "off":
            assert row["accepted_ratio"] == 1.0
    assert "auth on / off" in done.stdout


@pytest.fixture(scope="module")
def auth_server(
    module_db_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("bench-auth-server")
    env = _server_env(module_db_url, module_redis_url, home / "artifacts")
    env.update(METRICGATE_AUTH="on", METRICGATE_AUTH_ADMIN_PASSWORD=ADMIN[1])
    with _serve(env, home / "server.log") as url:
        reply = requests.post(
            f"{url}/api/2.0/mlflow/users/create",
            json={"username": WRITER[0], "password": WRITER[1]},
            auth=ADMIN,
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        yield LiveServer(url, home / "artifacts")


def _bench(url: str, *extra: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "metricgate", "bench", "--url", url, "--quick", "--workload", "b"]
    cmd += ["--no-progress", "--visible-timeout-s", "30", *extra]
    return subprocess.run(
        cmd, input=stdin, env=_clean_env(**env), capture_output=True, text=True, timeout=60
    )


def test_metricgate_bench_with_a_password_from_stdin(auth_server: LiveServer) -> None:
    done = _bench(
        auth_server.url, "--username", ADMIN[0], "--password-stdin", stdin=ADMIN[1] + "\n"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["auth"] == "basic"
    (result,) = report["results"]
    _all_read_back(result)


def test_metricgate_bench_as_a_user_with_edit_and_a_token(auth_server: LiveServer) -> None:
    # The writer is no admin: it logs into an experiment the admin granted it EDIT on.
    url = auth_server.url
    experiment = requests.post(
        f"{url}/api/2.0/mlflow/experiments/create",
        json={"name": "bench-auth-cli"},
        auth=ADMIN,
        timeout=10,
    ).json()["experiment_id"]
    grant = {
        "username": WRITER[0],
        "resource_type": "experiment",
        "resource_id": experiment,
        "permission": "EDIT",
    }
    reply = requests.post(
        f"{url}/api/3.0/mlflow/users/permissions/grant", json=grant, auth=ADMIN, timeout=10
    )
    assert reply.status_code == 200, reply.text
    secret = requests.post(
        f"{url}/api/2.0/metricgate/tokens/create", json={"name": "bench"}, auth=WRITER, timeout=10
    ).json()["secret"]
    for extra, stdin, env in (
        (("--token-stdin",), secret + "\n", {}),
        ((), "", {"MLFLOW_TRACKING_TOKEN": secret}),
        ((), "", {"MLFLOW_TRACKING_USERNAME": WRITER[0], "MLFLOW_TRACKING_PASSWORD": WRITER[1]}),
    ):
        done = _bench(url, "--experiment-id", str(experiment), *extra, stdin=stdin, **env)
        assert done.returncode == 0, (extra, env.keys(), done.stderr[-3000:])
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["auth"] == ("bearer" if "MLFLOW_TRACKING_USERNAME" not in env else "basic")
        (result,) = report["results"]
        _all_read_back(result)


def test_metricgate_bench_refused_credentials_stop_it_at_once(auth_server: LiveServer) -> None:
    done = _bench(auth_server.url)  # no credentials
    assert done.returncode == 1 and "HTTP 401" in done.stderr, done.stderr[-3000:]
    done = _bench(auth_server.url, "--token-stdin", "--username", "x", stdin="t\n")
    assert done.returncode == 2 and "--token-stdin" in done.stderr, done.stderr[-3000:]
