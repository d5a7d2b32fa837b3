"""``metricgate users|roles|permissions|tokens``: argument parsing, the requests each command
makes (the HTTP call replaced by a recorder), credentials and the human-readable output."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest

from metricgate import cli
from metricgate.cli import auth as cli_auth
from metricgate.cli.http import ClientError, authorization
from metricgate.config import mlflow_tracking_credentials

URL = "http://mg:5000"
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


class Recorder:
    """Stands in for ``request_json``: records each call, answers from a queue."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str, dict[str, Any] | None, str | None]] = []

    def __call__(
        self, method: str, url: str, body: dict[str, Any] | None = None, auth: str | None = None
    ) -> dict[str, Any]:
        self.calls.append((method, url, body, auth))
        return self.answers.pop(0) if self.answers else {}


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*CREDENTIAL_VARS, "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


def run(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    *answers: dict[str, Any],
    stdin: str = "",
) -> tuple[int, Recorder]:
    recorder = Recorder(*answers)
    monkeypatch.setattr(cli_auth, "request_json", recorder)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return cli.main([*argv, "--url", URL]), recorder


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    "argv",
    [
        ["users"],
        ["users", "set-admin", "bob", "yes"],
        ["roles", "grant", "r", "run", "1", "READ"],  # not a grantable type
        ["roles", "grant", "r", "experiment", "1", "OWNER"],
        ["permissions", "grant", "bob", "workspace", "*", "MANAGE"],  # roles only
        ["permissions", "revoke", "bob", "experiment"],
        ["tokens", "revoke", "abc"],
        ["tokens", "create", "ci", "--expires-in-days", "soon"],
        ["users", "create", "bob", "--password", "hunter2hunter2"],  # never an argument
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_levels_are_case_insensitive_and_roles_take_workspace_grants() -> None:
    args = cli.build_parser().parse_args(["roles", "grant", "ops", "workspace", "*", "manage"])
    assert (args.command, args.auth_command) == ("roles", "grant")
    assert (args.role, args.resource_type, args.resource_id, args.permission) == (
        "ops",
        "workspace",
        "*",
        "MANAGE",
    )


def test_create_admin_takes_a_database_url_and_no_server_flags() -> None:
    args = cli.build_parser().parse_args(
        ["users", "create-admin", "root", "--database-url", "postgresql://x/y"]
    )
    assert (args.name, args.database_url, args.reset) == ("root", "postgresql://x/y", False)
    assert not hasattr(args, "url")


# ------------------------------------------------------------------ credentials


def test_credentials_come_from_the_mlflow_clients_variables() -> None:
    env = {"MLFLOW_TRACKING_USERNAME": "a", "MLFLOW_TRACKING_PASSWORD": "", "X": "y"}
    assert mlflow_tracking_credentials(env) == ("a", None, None)
    assert mlflow_tracking_credentials({"MLFLOW_TRACKING_TOKEN": "t"}) == (None, None, "t")
    # As the mlflow client: Basic needs both, else the token, else nothing.
    assert authorization("a", "p", "t") == basic("a", "p")
    assert authorization("a", None, "t") == "Bearer t"
    assert authorization(None, None, None) is None


def test_the_env_token_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "mgt_x")
    code, rec = run(monkeypatch, ["users", "list"], {"users": []})
    assert code == 0
    assert rec.calls == [("GET", f"{URL}/api/2.0/mlflow/users/list", None, "Bearer mgt_x")]


def test_password_stdin_then_the_new_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    user = {"id": 7, "username": "bob", "is_admin": False}
    code, rec = run(
        monkeypatch,
        ["users", "create", "bob", "--admin", "--username", "root", "--password-stdin"],
        {"user": user},
        {},
        stdin="root-password-1\nbob-password-12\n",
    )
    assert code == 0, capsys.readouterr().err
    header = basic("root", "root-password-1")
    assert rec.calls == [
        (
            "POST",
            f"{URL}/api/2.0/mlflow/users/create",
            {"username": "bob", "password": "bob-password-12"},
            header,
        ),
        (
            "PATCH",
            f"{URL}/api/2.0/mlflow/users/update-admin",
            {"username": "bob", "is_admin": True},
            header,
        ),
    ]
    assert capsys.readouterr().out == "created user bob (id 7), admin\n"


def test_password_stdin_without_a_username_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rec = run(monkeypatch, ["users", "list", "--password-stdin"], stdin="pw\n")
    assert (code, rec.calls) == (2, [])
    assert "--username" in capsys.readouterr().err


def test_no_new_password_on_stdin_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rec = run(monkeypatch, ["users", "create", "bob"], stdin="")
    assert (code, rec.calls) == (2, [])
    assert "standard input" in capsys.readouterr().err


def test_changing_your_own_password_sends_the_login_one_as_current(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "old-password-1")
    code, rec = run(monkeypatch, ["users", "set-password", "bob"], stdin="new-password-12\n")
    assert code == 0
    assert rec.calls[0][2] == {
        "username": "bob",
        "password": "new-password-12",
        "current_password": "old-password-1",
    }
    code, rec = run(monkeypatch, ["users", "set-password", "eve"], stdin="new-password-12\n")
    assert rec.calls[0][2] == {"username": "eve", "password": "new-password-12"}


# ------------------------------------------------------------------ requests


ROLE = {
    "id": 3,
    "name": "ops",
    "workspace": "default",
    "description": "on call",
    "permissions": [
        {
            "id": 11,
            "role_id": 3,
            "resource_type": "experiment",
            "resource_pattern": "5",
            "permission": "EDIT",
        }
    ],
}
HIDDEN = {**ROLE, "id": 4, "name": "__user_9__", "permissions": []}


@pytest.mark.parametrize(
    ("argv", "answers", "expected"),
    [
        (
            ["users", "set-admin", "bob", "false"],
            [],
            [
                (
                    "PATCH",
                    "/api/2.0/mlflow/users/update-admin",
                    {"username": "bob", "is_admin": False},
                )
            ],
        ),
        (
            ["users", "delete", "bob"],
            [],
            [("DELETE", "/api/2.0/mlflow/users/delete", {"username": "bob"})],
        ),
        (
            ["users", "get", "b&b"],
            [{"user": {"id": 1, "username": "b&b", "is_admin": False}}],
            [("GET", "/api/2.0/mlflow/users/get?username=b%26b", None)],
        ),
        (
            ["roles", "create", "ops", "--description", "on call"],
            [{"role": ROLE}],
            [
                (
                    "POST",
                    "/api/3.0/mlflow/roles/create",
                    {"name": "ops", "workspace": "default", "description": "on call"},
                )
            ],
        ),
        (
            ["roles", "get", "3"],
            [{"role": ROLE}],
            [("GET", "/api/3.0/mlflow/roles/get?role_id=3", None)],
        ),
        (
            ["roles", "update", "ops", "--name", "sre"],
            [{"roles": [HIDDEN, ROLE]}, {"role": {**ROLE, "name": "sre"}}],
            [
                ("GET", "/api/3.0/mlflow/roles/list", None),
                ("PATCH", "/api/3.0/mlflow/roles/update", {"role_id": 3, "name": "sre"}),
            ],
        ),
        (
            ["roles", "delete", "3"],
            [],
            [("DELETE", "/api/3.0/mlflow/roles/delete", {"role_id": 3})],
        ),
        (
            ["roles", "grant", "3", "registered_model", "fraud", "read"],
            [{"role_permission": {}}],
            [
                (
                    "POST",
                    "/api/3.0/mlflow/roles/permissions/add",
                    {
                        "role_id": 3,
                        "resource_type": "registered_model",
                        "resource_pattern": "fraud",
                        "permission": "READ",
                    },
                )
            ],
        ),
        (
            ["roles", "revoke", "ops", "experiment", "5"],
            [{"roles": [ROLE]}, {"role_permissions": ROLE["permissions"]}],
            [
                ("GET", "/api/3.0/mlflow/roles/list", None),
                ("GET", "/api/3.0/mlflow/roles/permissions/list?role_id=3", None),
                ("DELETE", "/api/3.0/mlflow/roles/permissions/remove", {"role_permission_id": 11}),
            ],
        ),
        (
            ["roles", "assign", "bob", "3"],
            [{"assignment": {}}],
            [("POST", "/api/3.0/mlflow/roles/assign", {"username": "bob", "role_id": 3})],
        ),
        (
            ["roles", "unassign", "bob", "3"],
            [],
            [("DELETE", "/api/3.0/mlflow/roles/unassign", {"username": "bob", "role_id": 3})],
        ),
        (
            ["permissions", "grant", "bob", "experiment", "*", "DENY"],
            [],
            [
                (
                    "POST",
                    "/api/3.0/mlflow/users/permissions/grant",
                    {
                        "username": "bob",
                        "resource_type": "experiment",
                        "resource_id": "*",
                        "permission": "DENY",
                    },
                )
            ],
        ),
        (
            ["permissions", "revoke", "bob", "registered_model", "fraud"],
            [],
            [
                (
                    "POST",
                    "/api/3.0/mlflow/users/permissions/revoke",
                    {
                        "username": "bob",
                        "resource_type": "registered_model",
                        "resource_id": "fraud",
                    },
                )
            ],
        ),
        (
            ["permissions", "list", "bob"],
            [{"is_admin": False, "permissions": []}],
            [("GET", "/api/3.0/mlflow/users/permissions/list?username=bob", None)],
        ),
        (
            ["tokens", "list", "--user", "bob"],
            [{"tokens": []}],
            [("GET", "/api/2.0/metricgate/tokens/list?username=bob", None)],
        ),
        (
            ["tokens", "revoke", "12"],
            [{"token": {}}],
            [("POST", "/api/2.0/metricgate/tokens/revoke", {"token_id": 12})],
        ),
    ],
)
def test_each_command_calls_its_endpoint(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    answers: list[dict[str, Any]],
    expected: list[tuple[str, str, dict[str, Any] | None]],
) -> None:
    code, rec = run(monkeypatch, argv, *answers)
    assert code == 0
    assert [(m, u.removeprefix(URL), b) for m, u, b, _ in rec.calls] == expected


def test_an_unknown_role_name_or_grant_fails_with_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(monkeypatch, ["roles", "get", "nope"], {"roles": [ROLE]})
    assert code == 1
    assert "no role named 'nope'" in capsys.readouterr().err
    code, rec = run(
        monkeypatch,
        ["roles", "revoke", "3", "experiment", "6"],
        {"role_permissions": ROLE["permissions"]},
    )
    assert code == 1 and len(rec.calls) == 1
    assert "role 3 has no grant on experiment 6" in capsys.readouterr().err


def test_server_errors_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*_: Any) -> dict[str, Any]:
        raise ClientError("GET /x: HTTP 403 PERMISSION_DENIED: Permission denied")

    monkeypatch.setattr(cli_auth, "request_json", refuse)
    assert cli.main(["users", "list", "--url", URL]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err


# ------------------------------------------------------------------ output


def test_token_create_prints_the_secret_once_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = {"id": 5, "name": "ci", "hint": "mgt_abcdef", "expires_at": 86_400_000}
    code, rec = run(
        monkeypatch,
        ["tokens", "create", "ci", "--expires-in-days", "30"],
        {"token": token, "secret": "mgt_SECRET"},
    )
    assert code == 0
    assert rec.calls[0][2] == {"name": "ci", "expires_in_days": 30}
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "token 5 ci (expires 1970-01-02 00:00:00Z)",
        "secret: mgt_SECRET",
        "(store the secret now: it will not be shown again)",
    ]


def test_json_prints_the_reply(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reply = {"users": [{"id": 1, "username": "admin", "is_admin": True, "roles": []}]}
    code, _ = run(monkeypatch, ["users", "list", "--json"], reply)
    assert code == 0
    assert json.loads(capsys.readouterr().out) == reply


def test_tables() -> None:
    users = [
        {"id": 1, "username": "admin", "is_admin": True, "roles": [HIDDEN]},
        {"id": 22, "username": "bob", "is_admin": False, "roles": [ROLE, HIDDEN]},
    ]
    assert cli_auth.user_table(users) == [
        "ID  USERNAME  ADMIN  ROLES",
        "1   admin     yes    -",
        "22  bob       no     ops",
    ]
    assert cli_auth.role_table([ROLE]) == [
        "ID  NAME  WORKSPACE  GRANTS             DESCRIPTION",
        "3   ops   default    experiment:5=EDIT  on call",
    ]
    rows = [
        {
            "role_id": 4,
            "role_name": "__user_9__",
            "workspace": "default",
            "resource_type": "experiment",
            "resource_pattern": "*",
            "permission": "READ",
        },
        {
            "role_id": 3,
            "role_name": "ops",
            "workspace": "default",
            "resource_type": "experiment",
            "resource_pattern": "5",
            "permission": "EDIT",
        },
    ]
    assert cli_auth.permission_table(rows) == [
        "TYPE        RESOURCE  PERMISSION  VIA",
        "experiment  *         READ        direct",
        "experiment  5         EDIT        role ops",
    ]


def test_token_states() -> None:
    base = {"id": 1, "name": "ci", "hint": "mgt_abcdef", "created_at": 0}
    now = 10_000
    assert cli_auth.token_state({**base, "expires_at": None, "revoked_at": None}, now) == "live"
    assert cli_auth.token_state({**base, "expires_at": now, "revoked_at": None}, now) == "expired"
    assert cli_auth.token_state({**base, "expires_at": None, "revoked_at": 5}, now) == "revoked"
    lines = cli_auth.token_table([{**base, "expires_at": None, "last_used_at": None}], now)
    assert lines[1].split() == [
        "1",
        "ci",
        "mgt_abcdef...",
        "live",
        "1970-01-01",
        "00:00:00Z",
        "never",
        "-",
    ]
