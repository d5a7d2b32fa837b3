"""``metricgate users|roles|permissions|tokens`` as a person runs them: ``python -m metricgate``
subprocesses against a live ``metricgate serve`` with METRICGATE_AUTH=on, logged in with the mlflow
client's variables or ``--username``/``--password-stdin``, passwords only ever on standard input.

The server's only admin comes from ``metricgate users create-admin`` (straight to the database,
before the server starts): the server has no METRICGATE_AUTH_ADMIN_PASSWORD, so it would refuse
to start without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.api.auth_support import FAST_COST_ENV
from tests.conftest import _serve, _server_env

ROOT, ROOT_PASSWORD = "root", "root-password-0123"
BOB_PASSWORD = "bob-password-0123"
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def metricgate(
    *args: str,
    stdin: str = "",
    url: str | None = None,
    user: tuple[str, str] | None = None,
    token: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m metricgate ARGS`` with the credential variables set to ``user`` or ``token``
    (none otherwise) and ``$MLFLOW_TRACKING_URI`` to ``url``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CREDENTIAL_VARS
        and k != "MLFLOW_TRACKING_URI"
        and not k.startswith("METRICGATE_")
    }
    if url:
        env["MLFLOW_TRACKING_URI"] = url
    if user:
        env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = user
    if token:
        env["MLFLOW_TRACKING_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "metricgate", *args],
        input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def refused_soon(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the command until it fails: a server remembers a verified credential until its next
    look at the auth epoch (about a second), so a revocation lands within that, not at once."""
    deadline = time.monotonic() + 10
    while (done := metricgate(*args, **kwargs)).returncode == 0:
        assert time.monotonic() < deadline, f"`metricgate {' '.join(args)}` still succeeds"
        time.sleep(0.2)
    return done


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(done))


@pytest.fixture(scope="module")
def server(
    module_db_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    made = metricgate(
        "users", "create-admin", ROOT, "--database-url", module_db_url, stdin=ROOT_PASSWORD + "\n"
    )
    assert ok(made).startswith(f"created admin {ROOT} (id ")
    again = metricgate(
        "users", "create-admin", ROOT, "--database-url", module_db_url, stdin=ROOT_PASSWORD + "\n"
    )
    assert again.returncode == 1 and "--reset" in again.stderr
    short = metricgate(
        "users", "create-admin", "x", "--database-url", module_db_url, stdin="short\n"
    )
    assert short.returncode == 2 and "12 characters" in short.stderr
    home = tmp_path_factory.mktemp("auth-cli-server")
    env = _server_env(module_db_url, module_redis_url, home / "artifacts")
    # No admin password: create-admin's admin must be there.
    env.update(METRICGATE_AUTH="on", **FAST_COST_ENV)
    with _serve(env, home / "server.log") as base_url:
        yield base_url


def test_users_roles_permissions_as_an_admin(server: str) -> None:
    root = (ROOT, ROOT_PASSWORD)
    created = metricgate("users", "create", "bob", url=server, user=root, stdin=BOB_PASSWORD + "\n")
    assert ok(created).startswith("created user bob (id ")
    listed = ok(metricgate("users", "list", url=server, user=root)).splitlines()
    assert listed[0].split() == ["ID", "USERNAME", "ADMIN", "ROLES"]
    assert {tuple(line.split()[1:3]) for line in listed[1:]} == {(ROOT, "yes"), ("bob", "no")}
    bob = as_json(metricgate("users", "get", "bob", "--json", url=server, user=root))["user"]
    assert (bob["username"], bob["is_admin"]) == ("bob", False)

    ok(metricgate("users", "set-admin", "bob", "true", url=server, user=root))
    assert as_json(metricgate("users", "get", "bob", "--json", url=server, user=root))["user"][
        "is_admin"
    ]
    assert "no longer" in ok(
        metricgate("users", "set-admin", "bob", "false", url=server, user=root)
    )

    # A role with a grant, assigned to bob, seen in his permissions, then undone piece by piece.
    role = as_json(
        metricgate(
            "roles", "create", "ops", "--description", "on call", "--json", url=server, user=root
        )
    )["role"]
    ok(metricgate("roles", "grant", "ops", "experiment", "0", "edit", url=server, user=root))
    shown = ok(metricgate("roles", "get", "ops", url=server, user=root)).splitlines()
    assert shown[0] == f"role {role['id']} ops (workspace default): on call"
    assert shown[2].split()[1:] == ["experiment", "0", "EDIT"]
    ok(metricgate("roles", "assign", "bob", str(role["id"]), url=server, user=root))
    ok(
        metricgate(
            "permissions",
            "grant",
            "bob",
            "registered_model",
            "fraud",
            "READ",
            url=server,
            user=root,
        )
    )
    held = ok(metricgate("permissions", "list", "bob", url=server, user=root)).splitlines()
    assert sorted(line.split() for line in held[1:]) == [
        ["experiment", "0", "EDIT", "role", "ops"],
        ["registered_model", "fraud", "READ", "direct"],
    ]
    users = ok(metricgate("users", "list", url=server, user=root))
    assert any(line.split()[1:] == ["bob", "no", "ops"] for line in users.splitlines())

    taken = metricgate(
        "permissions", "grant", "bob", "registered_model", "fraud", "EDIT", url=server, user=root
    )
    assert taken.returncode == 1 and "RESOURCE_ALREADY_EXISTS" in taken.stderr
    ok(
        metricgate(
            "permissions", "revoke", "bob", "registered_model", "fraud", url=server, user=root
        )
    )
    ok(metricgate("roles", "revoke", "ops", "experiment", "0", url=server, user=root))
    missing = metricgate("roles", "revoke", "ops", "experiment", "0", url=server, user=root)
    assert missing.returncode == 1 and "has no grant on experiment 0" in missing.stderr
    ok(metricgate("roles", "unassign", "bob", "ops", url=server, user=root))
    assert (
        ok(metricgate("permissions", "list", "bob", url=server, user=root)).splitlines()[1:] == []
    )
    ok(metricgate("roles", "update", "ops", "--name", "sre", url=server, user=root))
    names = [
        r["name"]
        for r in as_json(metricgate("roles", "list", "--json", url=server, user=root))["roles"]
    ]
    assert "sre" in names and "ops" not in names
    ok(metricgate("roles", "delete", "sre", url=server, user=root))
    gone = metricgate("roles", "get", "sre", url=server, user=root)
    assert gone.returncode == 1 and "no role named 'sre'" in gone.stderr


def test_a_user_with_password_stdin_and_tokens(server: str) -> None:
    root = (ROOT, ROOT_PASSWORD)
    ok(metricgate("users", "create", "carol", url=server, user=root, stdin=BOB_PASSWORD + "\n"))

    # No credentials, wrong ones, a non-admin's admin command: the server's refusals, exit 1.
    anonymous = metricgate("users", "list", url=server)
    assert anonymous.returncode == 1 and "401 UNAUTHENTICATED" in anonymous.stderr
    wrong = metricgate("users", "list", url=server, user=("carol", "not-her-password"))
    assert wrong.returncode == 1 and "401" in wrong.stderr
    login = ["--username", "carol", "--password-stdin"]
    denied = metricgate("users", "list", *login, url=server, stdin=BOB_PASSWORD + "\n")
    assert denied.returncode == 1 and "403 PERMISSION_DENIED" in denied.stderr

    # Her own password: the login password (first line) goes along as the current one.
    new_password = "carol-password-0456"
    changed = metricgate(
        "users",
        "set-password",
        "carol",
        *login,
        url=server,
        stdin=f"{BOB_PASSWORD}\n{new_password}\n",
    )
    assert ok(changed) == "changed the password of carol\n"
    carol = ("carol", new_password)
    assert as_json(metricgate("users", "get", "carol", "--json", url=server, user=carol))

    made = ok(
        metricgate("tokens", "create", "ci", "--expires-in-days", "7", url=server, user=carol)
    )
    lines = made.splitlines()
    assert lines[0].startswith("token ") and " ci (expires " in lines[0]
    secret = lines[1].removeprefix("secret: ")
    assert (
        secret.startswith("mgt_")
        and lines[2] == "(store the secret now: it will not be shown again)"
    )
    token_id = lines[0].split()[1]

    # The token alone logs her in (Bearer, as MLFLOW_TRACKING_TOKEN does for the mlflow client).
    listed = ok(metricgate("tokens", "list", url=server, token=secret)).splitlines()
    assert listed[0].split()[:4] == ["ID", "NAME", "TOKEN", "STATE"]
    assert listed[1].split()[:4] == [token_id, "ci", secret[:10] + "...", "live"]
    assert secret not in "\n".join(listed)
    theirs = as_json(
        metricgate("tokens", "list", "--user", "carol", "--json", url=server, user=root)
    )
    assert [t["id"] for t in theirs["tokens"]] == [int(token_id)]
    others = metricgate("tokens", "list", "--user", ROOT, url=server, token=secret)
    assert others.returncode == 1 and "403" in others.stderr

    ok(metricgate("tokens", "revoke", token_id, url=server, user=carol))
    revoked = refused_soon("tokens", "list", url=server, token=secret)
    assert revoked.returncode == 1 and "401" in revoked.stderr
    assert "revoked" in ok(metricgate("tokens", "list", url=server, user=carol))

    ok(metricgate("users", "delete", "carol", url=server, user=root))
    assert metricgate("users", "get", "carol", url=server, user=root).returncode == 1


def test_create_admin_reset_recovers_a_lost_password(server: str, module_db_url: str) -> None:
    reset = metricgate(
        "users",
        "create-admin",
        ROOT,
        "--reset",
        "--database-url",
        module_db_url,
        stdin="root-password-new1\n",
    )
    assert ok(reset).startswith(f"reset admin {ROOT} (id ")
    assert ok(metricgate("users", "list", url=server, user=(ROOT, "root-password-new1")))
    old = refused_soon("users", "list", url=server, user=(ROOT, ROOT_PASSWORD))
    assert old.returncode == 1 and "401" in old.stderr
    back = metricgate(
        "users",
        "create-admin",
        ROOT,
        "--reset",
        "--database-url",
        module_db_url,
        stdin=ROOT_PASSWORD + "\n",
    )
    ok(back)
