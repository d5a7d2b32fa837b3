"""``metricgate audit list`` and ``metricgate permissions set|who``: parsing, the request each
makes (the HTTP call replaced by a recorder), the times ``--since``/``--until`` accept, exit
codes and the tables."""

from __future__ import annotations

import io
import urllib.parse
from typing import Any

import pytest

from metricgate import cli
from metricgate.cli import audit as cli_audit
from metricgate.cli import auth as cli_auth

URL = "http://mg:5000"
OWN = f"{URL}/api/2.0/metricgate"
NOW_MS = 1_700_000_000_000


class Recorder:
    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str, dict[str, Any] | None, str | None]] = []

    def __call__(
        self, method: str, url: str, body: dict[str, Any] | None = None, auth: str | None = None
    ) -> dict[str, Any]:
        self.calls.append((method, url, body, auth))
        return self.answers.pop(0) if self.answers else {}


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "mgt_x")


def run(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], *answers: dict[str, Any]
) -> tuple[int, Recorder]:
    recorder = Recorder(*answers)
    monkeypatch.setattr(cli_auth, "request_json", recorder)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    return cli.main([*argv, "--url", URL]), recorder


def query_of(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


ENTRY = {
    "id": 7,
    "timestamp": NOW_MS,
    "actor_id": 1,
    "actor": "admin",
    "auth_method": "basic",
    "client_addr": "10.0.0.1",
    "action": "grant.set",
    "target_type": "user",
    "target_id": "bob",
    "details": {"resource_type": "experiment", "resource_id": "3", "permission": "EDIT"},
    "request_id": None,
}


# ------------------------------------------------------------------ audit list


def test_audit_list_sends_the_filters_and_prints_a_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["audit", "list", "--actor", "admin", "--action", "grant.set", "--max-results", "5"]
    argv += ["--since", "2023-11-14T22:13:20Z", "--until", "1700000001000"]
    code, rec = run(monkeypatch, argv, {"entries": [ENTRY], "next_page_token": "abc"})
    assert code == 0
    [(method, url, body, auth)] = rec.calls
    assert (method, url.split("?")[0], body, auth) == ("GET", f"{OWN}/audit", None, "Bearer mgt_x")
    assert query_of(url) == {
        "max_results": "5",
        "actor": "admin",
        "action": "grant.set",
        "since": str(NOW_MS),
        "until": "1700000001000",
    }
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "ID", "TIME", "ACTOR", "METHOD", "ADDRESS", "ACTION", "TARGET", "DETAILS",
    ]  # fmt: skip
    assert out[1].split()[:8] == [
        "7", "2023-11-14", "22:13:20Z", "admin", "basic", "10.0.0.1", "grant.set", "user:bob",
    ]  # fmt: skip
    assert '"permission":"EDIT"' in out[1]
    assert out[-1] == "more: --page-token abc"


def test_audit_list_defaults_and_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rec = run(monkeypatch, ["audit", "list", "--json"], {"entries": []})
    assert code == 0
    assert query_of(rec.calls[0][1]) == {"max_results": "100"}
    assert '"entries": []' in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["audit", "list", "--max-results", "0"],
        ["audit", "list", "--max-results", "1001"],
        ["audit", "list", "--since", "last tuesday"],
    ],
)
def test_bad_audit_input_exits_2_before_any_request(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    code, rec = run(monkeypatch, argv)
    assert code == 2 and rec.calls == []


def test_times_are_ms_iso_or_ages() -> None:
    assert cli_audit.parse_time("1700000000000") == NOW_MS
    assert cli_audit.parse_time("2023-11-14T22:13:20") == NOW_MS  # naive: UTC
    assert cli_audit.parse_time("2023-11-14T23:13:20+01:00") == NOW_MS
    assert cli_audit.parse_time("2023-11-14") == NOW_MS - 80_000_000
    assert cli_audit.parse_time("30m", now_ms=NOW_MS) == NOW_MS - 1_800_000
    assert cli_audit.parse_time("7d", now_ms=NOW_MS) == NOW_MS - 7 * 86_400_000
    with pytest.raises(cli_auth.InputError):
        cli_audit.parse_time("7 days")


def test_a_refusal_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise cli_auth.ClientError("Permission denied", status=403, error_code="PERMISSION_DENIED")

    monkeypatch.setattr(cli_auth, "request_json", refuse)
    assert cli.main(["audit", "list", "--url", URL]) == 1


# ------------------------------------------------------------------ permissions set / who


def test_permissions_set_for_a_user(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = {"permission": {}, "previous_permission": "READ"}
    argv = ["permissions", "set", "--user", "bob", "experiment", "3", "edit"]
    code, rec = run(monkeypatch, argv, answer)
    assert code == 0
    body = {"username": "bob", "resource_type": "experiment", "resource_id": "3"}
    assert rec.calls == [
        ("POST", f"{OWN}/permissions/set", {**body, "permission": "EDIT"}, "Bearer mgt_x")
    ]
    assert capsys.readouterr().out == "set bob's permission on experiment 3 to EDIT (was READ)\n"


def test_permissions_set_for_a_role_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    roles = {"roles": [{"id": 4, "name": "ops"}]}
    answer = {"permission": {}, "previous_permission": None}
    argv = ["permissions", "set", "--role", "ops", "workspace", "*", "MANAGE"]
    code, rec = run(monkeypatch, argv, roles, answer)
    assert code == 0
    assert rec.calls[1][:3] == (
        "POST",
        f"{OWN}/permissions/set",
        {"role_id": 4, "resource_type": "workspace", "resource_id": "*", "permission": "MANAGE"},
    )
    assert "(new)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["permissions", "set", "experiment", "3", "READ"],  # no holder
        ["permissions", "set", "--user", "a", "--role", "b", "experiment", "3", "READ"],
        ["permissions", "set", "--user", "a", "experiment", "3", "OWNER"],
        ["permissions", "who", "experiment"],
    ],
)
def test_bad_permission_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_permissions_who_prints_users_and_role_members(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = {
        "resource_type": "registered_model",
        "resource_id": "m",
        "users": [{"username": "ann", "resource_pattern": "m", "permission": "MANAGE"}],
        "roles": [
            {
                "role_id": 2,
                "role_name": "team",
                "resource_pattern": "*",
                "permission": "READ",
                "usernames": ["bob", "cid"],
            }
        ],
        "default_permission": "READ",
        "note": "...",
    }
    code, rec = run(monkeypatch, ["permissions", "who", "registered_model", "m"], answer)
    assert code == 0
    [(method, url, body, _)] = rec.calls
    assert (method, url.split("?")[0], body) == ("GET", f"{OWN}/permissions/who", None)
    assert query_of(url) == {"resource_type": "registered_model", "resource_id": "m"}
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[:4]] == [
        ["USER", "PERMISSION", "VIA", "RESOURCE"],
        ["ann", "MANAGE", "direct", "m"],
        ["bob", "READ", "role", "team", "*"],
        ["cid", "READ", "role", "team", "*"],
    ]
    assert lines[4].startswith("everyone else: READ")
