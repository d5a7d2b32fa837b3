"""The unmodified mlflow client against a live server with METRICGATE_AUTH=on: Basic login with
MLFLOW_TRACKING_USERNAME/PASSWORD, a user's API token as MLFLOW_TRACKING_TOKEN (Bearer), and a
user without EDIT refused with PERMISSION_DENIED (docs/design-auth.md B3, B4)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from tests.api.auth_support import FAST_COST_ENV
from tests.conftest import LiveServer, _mlflow_pointed_at, _serve, _server_env

ADMIN = ("admin", "admin-password-1")
WRITER = ("writer", "writer-password-1")
VIEWER = ("viewer", "viewer-password-1")
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@pytest.fixture(scope="module")
def auth_server(
    module_db_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("auth-server")
    env = _server_env(module_db_url, module_redis_url, home / "artifacts")
    env.update(METRICGATE_AUTH="on", METRICGATE_AUTH_ADMIN_PASSWORD=ADMIN[1], **FAST_COST_ENV)
    with _serve(env, home / "server.log") as url:
        for username, password in (WRITER, VIEWER):
            reply = requests.post(
                f"{url}/api/2.0/mlflow/users/create",
                json={"username": username, "password": password},
                auth=ADMIN,
                timeout=10,
            )
            assert reply.status_code == 200, reply.text
        yield LiveServer(url, home / "artifacts")


@pytest.fixture
def tracking(auth_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    with _mlflow_pointed_at(auth_server.url, monkeypatch) as url:
        yield url


def _login(monkeypatch: pytest.MonkeyPatch, user: tuple[str, str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])


def _log_and_read_back(name: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment_id = client.create_experiment(name)
    run = client.create_run(experiment_id)
    now = int(time.time() * 1000)
    for step in range(3):
        client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), timestamp=now, step=step)
    client.set_terminated(run.info.run_id)
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    assert client.get_run(run.info.run_id).info.experiment_id == experiment_id


def test_basic_login_with_the_tracking_username_and_password(
    tracking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _login(monkeypatch, ADMIN)
    _log_and_read_back("auth-basic-admin")


def test_no_credentials_is_refused(tracking: str) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    with pytest.raises(MlflowException) as caught:
        MlflowClient().search_experiments()
    assert "401" in str(caught.value) or "UNAUTHENTICATED" in str(caught.value)


def test_a_users_api_token_as_mlflow_tracking_token(
    tracking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = requests.post(
        f"{tracking}/api/2.0/metricgate/tokens/create",
        json={"name": "ci"},
        auth=WRITER,
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    secret = reply.json()["secret"]
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", secret)
    # The writer holds only the default READ: EDIT on its own experiment comes from creating it.
    _log_and_read_back("auth-token-writer")


def test_a_user_without_edit_gets_permission_denied(
    tracking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import RestException
    from mlflow.tracking import MlflowClient

    _login(monkeypatch, ADMIN)
    client = MlflowClient()
    experiment_id = client.create_experiment("auth-admin-only")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "loss", 0.25)

    _login(monkeypatch, VIEWER)
    assert client.get_run(run_id).data.metrics == {"loss": 0.25}  # READ by default
    with pytest.raises(RestException) as caught:
        client.log_metric(run_id, "loss", 0.5)
    assert caught.value.error_code == "PERMISSION_DENIED"


def test_refused_credentials_leave_no_trace_in_the_server_log(auth_server: LiveServer) -> None:
    reply = requests.get(
        f"{auth_server.url}/api/2.0/mlflow/experiments/search",
        params={"max_results": "1"},
        auth=(VIEWER[0], "not-the-password-1"),
        timeout=10,
    )
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
    log = (auth_server.artifacts.parent / "server.log").read_text(errors="replace")
    assert ADMIN[1] not in log and VIEWER[1] not in log and "not-the-password-1" not in log
