"""The unmodified ``mlflow.server.auth.client.AuthServiceClient`` (mlflow 3.17.2) against a live
``metricgate serve`` with METRICGATE_AUTH=on: every method it has, with the admin's credentials
from MLFLOW_TRACKING_USERNAME/PASSWORD as its users set them, the errors it raises, a user's
self-service password change, and a metricgate API token in MLFLOW_TRACKING_TOKEN.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.conftest import _serve, _server_env

ADMIN = "admin"
ADMIN_PASSWORD = "admin-password-0123"


@pytest.fixture(scope="module")
def auth_server(
    module_db_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    home = tmp_path_factory.mktemp("auth-server")
    env = _server_env(module_db_url, module_redis_url, home / "artifacts")
    env.update(METRICGATE_AUTH="on", METRICGATE_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD)
    with _serve(env, home / "auth-server.log") as base_url:
        yield base_url


@pytest.fixture
def login(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``login(user, password)`` / ``login(token=...)``: the client's credential variables."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

    def set_to(username: str | None = None, password: str | None = None, token: str = "") -> None:
        for name in (
            "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD",
            "MLFLOW_TRACKING_TOKEN",
        ):
            monkeypatch.delenv(name, raising=False)
        if username is not None and password is not None:
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        if token:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)

    return set_to


def auth_service_client_class() -> Any:
    """``mlflow.server.auth.client.AuthServiceClient``, unmodified, imported as its users do.
    Importing it runs the package's ``__init__`` (MLflow's server-side auth app), which needs
    Flask-WTF: the test extra installs it."""
    from mlflow.server.auth.client import AuthServiceClient

    return AuthServiceClient


def _public_methods(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if name[0] != "_"}


def test_every_auth_service_client_method(auth_server: str, login: Any, tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import RestException

    AuthServiceClient = auth_service_client_class()  # the class, by its name

    login(ADMIN, ADMIN_PASSWORD)
    client = AuthServiceClient(auth_server)
    called: set[str] = set()

    def call(method: str, *args: Any, **kwargs: Any) -> Any:
        called.add(method)
        return getattr(client, method)(*args, **kwargs)

    first_password = "alice-password-01"
    user = call("create_user", "alice", first_password)
    assert (user.username, user.is_admin) == ("alice", False) and isinstance(user.id, int)
    with pytest.raises(RestException) as taken:
        client.create_user("alice", first_password)
    assert taken.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(RestException) as short:
        client.create_user("bob", "short")
    assert short.value.error_code == "INVALID_PARAMETER_VALUE"

    assert call("get_user", "alice").id == user.id
    with pytest.raises(RestException) as missing:
        client.get_user("nobody")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    second_password = "alice-password-02"
    call("update_user_password", "alice", second_password)  # the admin's reset
    call("update_user_admin", "alice", True)
    assert client.get_user("alice").is_admin is True
    client.update_user_admin("alice", False)

    role = call("create_role", "default", "readers", "can read")
    assert (role.name, role.workspace, role.description, role.permissions) == (
        "readers",
        "default",
        "can read",
        [],
    )
    assert call("get_role", role.id).name == "readers"
    assert [r.id for r in call("list_roles", "default")] == [role.id]
    assert role.id in [r.id for r in call("list_all_roles")]
    updated = call("update_role", role.id, name="viewers", description="views")
    assert (updated.name, updated.description) == ("viewers", "views")

    rp = call("add_role_permission", role.id, "experiment", "*", "READ")
    assert (rp.role_id, rp.resource_type, rp.resource_pattern, rp.permission) == (
        role.id,
        "experiment",
        "*",
        "READ",
    )
    assert [p.id for p in call("list_role_permissions", role.id)] == [rp.id]
    assert call("update_role_permission", rp.id, "EDIT").permission == "EDIT"

    assignment = call("assign_role", "alice", role.id)
    assert (assignment.user_id, assignment.role_id) == (user.id, role.id)
    assert [r.id for r in call("list_user_roles", "alice")] == [role.id]
    assert [a.id for a in call("list_role_users", role.id)] == [assignment.id]

    experiment_id = MlflowClient(auth_server).create_experiment(f"shared-{time.time_ns()}")
    call("grant_user_permission", "alice", "experiment", experiment_id, "MANAGE")
    held = call("get_user_permission", "alice", "experiment", experiment_id)
    assert (held.allowed, held.permission) == (True, "MANAGE")
    call("revoke_user_permission", "alice", "experiment", experiment_id)
    # The role's experiment-wide EDIT is what remains.
    held = client.get_user_permission("alice", "experiment", experiment_id)
    assert (held.allowed, held.permission) == (True, "EDIT")

    # Alice changes her own password: the current one is required, as stock requires it.
    login("alice", second_password)
    with pytest.raises(RestException) as no_current:
        client.update_user_password("alice", "alice-password-03")
    assert no_current.value.error_code == "INVALID_PARAMETER_VALUE"
    client.update_user_password("alice", "alice-password-03", current_password=second_password)
    login("alice", "alice-password-03")
    assert client.get_user("alice").username == "alice"
    with pytest.raises(RestException) as denied:
        client.get_user(ADMIN)
    assert denied.value.error_code == "PERMISSION_DENIED"

    # A metricgate API token in MLFLOW_TRACKING_TOKEN works for the same client.
    created = requests.post(
        f"{auth_server}/api/2.0/metricgate/tokens/create",
        json={"name": "ci"},
        auth=("alice", "alice-password-03"),
        timeout=20,
    )
    assert created.status_code == 200, created.text
    login(token=created.json()["secret"])
    assert client.get_user("alice").id == user.id

    login(ADMIN, ADMIN_PASSWORD)
    call("unassign_role", "alice", role.id)
    # Only her hidden per-user role (it held the revoked grant) is left.
    assert all(r.name.startswith("__user_") for r in client.list_user_roles("alice"))
    call("remove_role_permission", rp.id)
    call("delete_role", role.id)
    with pytest.raises(RestException) as gone:
        client.get_role(role.id)
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    call("delete_user", "alice")
    with pytest.raises(RestException):
        client.get_user("alice")

    assert called == _public_methods(AuthServiceClient), _public_methods(AuthServiceClient) - called


def test_wrong_credentials_get_mlflows_401(auth_server: str, login: Any) -> None:
    from mlflow.exceptions import MlflowException

    login(ADMIN, "not-the-password")
    with pytest.raises(MlflowException) as refused:
        auth_service_client_class()(auth_server).get_user(ADMIN)
    assert "401" in str(refused.value) or "UNAUTHENTICATED" in str(refused.value)
    reply = requests.get(f"{auth_server}/api/2.0/mlflow/users/current", timeout=20)
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
