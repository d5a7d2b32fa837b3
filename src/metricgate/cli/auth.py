"""``metricgate users|roles|permissions|tokens ...``: access control from a shell, over the REST API
(MLflow's auth endpoints and metricgate's tokens API; docs/design-auth.md A2, B7).

Who is asking: ``--username`` with ``--password-stdin`` (or a prompt), else the mlflow client's
``$MLFLOW_TRACKING_USERNAME``/``$MLFLOW_TRACKING_PASSWORD`` or ``$MLFLOW_TRACKING_TOKEN``. A
password is never an argument (it would land in shell history and ``ps``): a new password comes
from a prompt, or from standard input's next line when it is not a terminal (after the caller's
own with ``--password-stdin``).

A role is named by its name or its numeric id. ``users create-admin`` is the exception: it writes
through the database URL with no server running, for the first admin.

Exit status: 0 done; 1 the server (or the database) refused or could not be reached; 2 bad input
caught before anything was sent, or a configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from metricgate.cli.http import (
    DEFAULT_URL,
    ClientError,
    authorization,
    env_authorization,
    request_json,
    server_url,
)
from metricgate.cli.mlflow_import import add_import_parser, run_import_mlflow
from metricgate.cli.settings import settings_or_report
from metricgate.config import Settings, mlflow_tracking_credentials

MLFLOW_V2 = "/api/2.0/mlflow"
MLFLOW_V3 = "/api/3.0/mlflow"
METRICGATE = "/api/2.0/metricgate"
TOKENS = f"{METRICGATE}/tokens"
HIDDEN_ROLE_PREFIX = "__user_"  # a per-user grant's hidden role (MLflow's __user_<id>__)
RESOURCE_TYPES = ("experiment", "registered_model")
LEVELS = ("READ", "USE", "EDIT", "MANAGE", "DENY")

COMMANDS = ("users", "roles", "permissions", "tokens")
ROLE_HELP = "a role's name, or its numeric id"


class InputError(Exception):
    """Input refused before any request (exit 2)."""


# ------------------------------------------------------------------ parsers


def add_auth_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_users(sub)
    _add_roles(sub)
    _add_permissions(sub)
    _add_tokens(sub)


class _Group:
    """A command group (``users``, ...); calling it adds a REST subcommand with the shared flags."""

    def __init__(
        self, sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
    ) -> None:
        group = sub.add_parser(name, help=help_text)
        self.subparsers = group.add_subparsers(
            dest="auth_command", required=True, metavar="SUBCOMMAND"
        )

    def __call__(self, command_name: str, command_help: str) -> argparse.ArgumentParser:
        parser = self.subparsers.add_parser(command_name, help=command_help)
        parser.add_argument(
            "--url", help=f"server URL (default: $MLFLOW_TRACKING_URI, else {DEFAULT_URL})"
        )
        parser.add_argument("--json", action="store_true", help="print the server's JSON reply")
        parser.add_argument(
            "--username",
            help="log in as this user (default: $MLFLOW_TRACKING_USERNAME with "
            "$MLFLOW_TRACKING_PASSWORD, else the token $MLFLOW_TRACKING_TOKEN)",
        )
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the login password from standard input's first line (else a prompt)",
        )
        return parser


def _resource(parser: argparse.ArgumentParser, *, workspace: bool = False) -> None:
    types = RESOURCE_TYPES + (("workspace",) if workspace else ())
    parser.add_argument("resource_type", metavar="TYPE", choices=types, help=" or ".join(types))
    parser.add_argument(
        "resource_id",
        metavar="ID",
        help="experiment id, registered model name, or * (every one)",
    )


def _level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "permission", metavar="LEVEL", type=str.upper, choices=LEVELS, help=", ".join(LEVELS)
    )


def _add_users(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = _Group(sub, "users", "user accounts (access control; METRICGATE_AUTH=on)")
    create = command("create", "create a user; the password comes from a prompt or stdin")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="make the user an admin")
    command("list", "list users (admins)")
    command("get", "show one user").add_argument("name")
    command("set-password", "change a user's password (prompt or stdin)").add_argument("name")
    set_admin = command("set-admin", "grant or take away a user's admin flag (admins)")
    set_admin.add_argument("name")
    set_admin.add_argument("admin", metavar="true|false", choices=("true", "false"))
    command("delete", "delete a user with their grants and tokens (admins)").add_argument("name")

    # Not over HTTP: straight to the database, for the first admin before any server runs.
    admin = command.subparsers.add_parser(
        "create-admin",
        help="create an admin directly in the database (no server needed; the first admin)",
    )
    admin.add_argument("name")
    admin.add_argument("--database-url", help="PostgreSQL URL (env METRICGATE_DATABASE_URL)")
    admin.add_argument(
        "--reset",
        action="store_true",
        help="if the user exists, set their password and make them an admin (a lost admin password)",
    )
    add_import_parser(command.subparsers)


def _add_roles(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = _Group(sub, "roles", "roles: named sets of grants assigned to users")
    create = command("create", "create a role")
    create.add_argument("name")
    create.add_argument("--description")
    command("list", "list roles")
    command("get", "show a role and its grants").add_argument(
        "role", metavar="ROLE", help=ROLE_HELP
    )
    update = command("update", "rename a role or change its description")
    update.add_argument("role", metavar="ROLE", help=ROLE_HELP)
    update.add_argument("--name", dest="new_name")
    update.add_argument("--description")
    command("delete", "delete a role").add_argument("role", metavar="ROLE", help=ROLE_HELP)
    grant = command("grant", "add a grant to a role")
    grant.add_argument("role", metavar="ROLE", help=ROLE_HELP)
    _resource(grant, workspace=True)
    _level(grant)
    revoke = command("revoke", "remove a role's grant")
    revoke.add_argument("role", metavar="ROLE", help=ROLE_HELP)
    _resource(revoke, workspace=True)
    for name, help_text in (("assign", "give a user a role"), ("unassign", "take a role away")):
        parser = command(name, help_text)
        parser.add_argument("user", metavar="USER")
        parser.add_argument("role", metavar="ROLE", help=ROLE_HELP)


def _add_permissions(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = _Group(sub, "permissions", "a user's own grants on experiments and models")
    grant = command("grant", "grant a user a level on an experiment or model (or *)")
    grant.add_argument("user", metavar="USER")
    _resource(grant)
    _level(grant)
    revoke = command("revoke", "remove a user's grant")
    revoke.add_argument("user", metavar="USER")
    _resource(revoke)
    command("list", "a user's grants, their own and their roles'").add_argument(
        "user", metavar="USER"
    )
    put = command(
        "set",
        "grant a user or a role a level on a resource, or change the level it holds, in place "
        "(MANAGE on the resource)",
    )
    holder = put.add_mutually_exclusive_group(required=True)
    holder.add_argument("--user", help="the user to grant to")
    holder.add_argument("--role", help=f"the role to grant to ({ROLE_HELP})")
    _resource(put, workspace=True)
    _level(put)
    who = command("who", "every user and role holding a grant on a resource (MANAGE on it)")
    _resource(who, workspace=True)


def _add_tokens(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = _Group(sub, "tokens", "API tokens (Bearer, or the password with your username)")
    create = command("create", "create a token for yourself; prints the secret once")
    create.add_argument("name")
    create.add_argument("--expires-in-days", type=int, metavar="N", help="1 to 3650; default never")
    tokens_list = command("list", "list tokens, revoked and expired ones included")
    tokens_list.add_argument("--user", help="another user's tokens (admins)")
    command("revoke", "revoke a token").add_argument("token_id", metavar="ID", type=int)


# ------------------------------------------------------------------ running


def run_auth(args: argparse.Namespace) -> int:
    if args.command == "users" and args.auth_command == "create-admin":
        return run_create_admin(args)
    if args.command == "users" and args.auth_command == "import-mlflow":
        return run_import_mlflow(args)
    return run_rest(args, _DISPATCH[args.command])


Command = Callable[["Session", argparse.Namespace], tuple[dict[str, Any], list[str]]]


def run_rest(args: argparse.Namespace, command: Command) -> int:
    """One REST command of a ``_Group``: log in, call, print the table (or ``--json``)."""
    try:
        session = Session(server_url(args.url), login_header(args))
        reply, lines = command(session, args)
    except InputError as exc:
        print(f"metricgate: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"metricgate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))
    else:
        for line in lines:
            print(line)
    return 0


class Session:
    """The server and the caller's ``Authorization`` header, for one command."""

    def __init__(self, base_url: str, header: str | None) -> None:
        self.base_url = base_url
        self.header = header

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return request_json(method, url, body, self.header)


def login_header(args: argparse.Namespace) -> str | None:
    """``--username`` (password from stdin or a prompt), ``--password-stdin`` alone (with
    ``$MLFLOW_TRACKING_USERNAME``), else the mlflow client's variables."""
    if not args.username and not args.password_stdin:
        return env_authorization()
    username = args.username or mlflow_tracking_credentials()[0]
    if not username:
        raise InputError("--password-stdin needs --username or $MLFLOW_TRACKING_USERNAME")
    password = (
        read_stdin_line("the login password")
        if args.password_stdin
        else prompt_secret(f"Password for {username}: ")
    )
    args.login = (username, password)
    return authorization(username, password)


def read_stdin_line(what: str) -> str:
    line = sys.stdin.readline()
    if not line:
        raise InputError(f"{what} was expected on standard input, which is empty")
    return line.rstrip("\r\n")


def prompt_secret(prompt: str) -> str:
    if not sys.stdin.isatty():
        raise InputError(f"no terminal to ask for it ({prompt.strip()}); use --password-stdin")
    return getpass.getpass(prompt)


def new_password(username: str) -> str:
    """A new password: a prompt asked twice on a terminal, else standard input's next line."""
    if not sys.stdin.isatty():
        password = read_stdin_line(f"the new password for {username}")
    else:
        password = getpass.getpass(f"New password for {username}: ")
        if getpass.getpass("Repeat it: ") != password:
            raise InputError("the passwords do not match")
    if not password:
        raise InputError("the password is empty")
    return password


# ------------------------------------------------------------------ users


def _users(s: Session, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    command = args.auth_command
    name: str = getattr(args, "name", "")  # every users subcommand but list has one
    if command == "create":
        password = new_password(name)
        reply = s.call(
            "POST", f"{MLFLOW_V2}/users/create", {"username": name, "password": password}
        )
        if args.admin:
            s.call("PATCH", f"{MLFLOW_V2}/users/update-admin", {"username": name, "is_admin": True})
            reply["user"]["is_admin"] = True
        user = reply["user"]
        return reply, [f"created user {user['username']} (id {user['id']}){_admin(user)}"]
    if command == "list":
        reply = s.call("GET", f"{MLFLOW_V2}/users/list")
        return reply, user_table(reply["users"])
    if command == "get":
        reply = s.call("GET", f"{MLFLOW_V2}/users/get", query={"username": name})
        return reply, user_table([reply["user"]])
    if command == "set-password":
        body = {"username": name, "password": new_password(name)}
        current = _own_current_password(s, args, name)
        if current is not None:
            body["current_password"] = current
        return s.call("PATCH", f"{MLFLOW_V2}/users/update-password", body), [
            f"changed the password of {name}"
        ]
    if command == "set-admin":
        is_admin = args.admin == "true"
        reply = s.call(
            "PATCH", f"{MLFLOW_V2}/users/update-admin", {"username": name, "is_admin": is_admin}
        )
        return reply, [f"{name} is {'now' if is_admin else 'no longer'} an admin"]
    reply = s.call("DELETE", f"{MLFLOW_V2}/users/delete", {"username": name})
    return reply, [f"deleted user {name}"]


def _own_current_password(s: Session, args: argparse.Namespace, name: str) -> str | None:
    """Changing your own password needs the current one (MLflow's rule): the login password when
    logged in with it, else asked for."""
    login: tuple[str, str] | None = getattr(args, "login", None)
    if login is None:
        username, password, _ = mlflow_tracking_credentials()
        login = (username, password) if username and password else None
    if login is not None:
        return login[1] if login[0] == name else None
    me = s.call("GET", f"{MLFLOW_V2}/users/current")["user"]
    if me["username"] != name:
        return None
    if sys.stdin.isatty():
        return getpass.getpass(f"Current password for {name}: ")
    return read_stdin_line(f"the current password of {name}")


def _admin(user: dict[str, Any]) -> str:
    return ", admin" if user.get("is_admin") else ""


def user_table(users: Sequence[dict[str, Any]]) -> list[str]:
    rows = [
        [
            str(u["id"]),
            u["username"],
            "yes" if u["is_admin"] else "no",
            ",".join(visible_role_names(u.get("roles", []))) or "-",
        ]
        for u in users
    ]
    return table(["ID", "USERNAME", "ADMIN", "ROLES"], rows)


def visible_role_names(roles: Sequence[dict[str, Any]]) -> list[str]:
    return [r["name"] for r in roles if not r["name"].startswith(HIDDEN_ROLE_PREFIX)]


# ------------------------------------------------------------------ roles


def role_id(s: Session, role: str) -> int:
    """A role named by its numeric id, or by its name (looked up in ``roles/list``)."""
    if role.isascii() and role.isdigit():
        return int(role)
    for found in s.call("GET", f"{MLFLOW_V3}/roles/list")["roles"]:
        if found["name"] == role:
            return int(found["id"])
    raise ClientError(f"no role named {role!r}", status=404, error_code="RESOURCE_DOES_NOT_EXIST")


def _roles(s: Session, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    command = args.auth_command
    if command == "create":
        body = {"name": args.name, "workspace": "default"}
        if args.description is not None:
            body["description"] = args.description
        reply = s.call("POST", f"{MLFLOW_V3}/roles/create", body)
        return reply, [f"created role {reply['role']['name']} (id {reply['role']['id']})"]
    if command == "list":
        reply = s.call("GET", f"{MLFLOW_V3}/roles/list")
        shown = [r for r in reply["roles"] if not r["name"].startswith(HIDDEN_ROLE_PREFIX)]
        return reply, role_table(shown)
    if command in ("assign", "unassign"):
        body = {"username": args.user, "role_id": role_id(s, args.role)}
        if command == "assign":
            reply = s.call("POST", f"{MLFLOW_V3}/roles/assign", body)
            return reply, [f"assigned role {args.role} to {args.user}"]
        reply = s.call("DELETE", f"{MLFLOW_V3}/roles/unassign", body)
        return reply, [f"took role {args.role} away from {args.user}"]
    rid = role_id(s, args.role)
    if command == "get":
        reply = s.call("GET", f"{MLFLOW_V3}/roles/get", query={"role_id": str(rid)})
        role = reply["role"]
        header = f"role {role['id']} {role['name']} (workspace {role['workspace']})"
        if role.get("description"):
            header += f": {role['description']}"
        return reply, [header, *grant_table(role["permissions"])]
    if command == "update":
        body = {"role_id": rid}
        if args.new_name is not None:
            body["name"] = args.new_name
        if args.description is not None:
            body["description"] = args.description
        if len(body) == 1:
            raise InputError("roles update needs --name or --description")
        reply = s.call("PATCH", f"{MLFLOW_V3}/roles/update", body)
        return reply, [f"updated role {reply['role']['name']} (id {reply['role']['id']})"]
    if command == "delete":
        return s.call("DELETE", f"{MLFLOW_V3}/roles/delete", {"role_id": rid}), [
            f"deleted role {args.role}"
        ]
    what = f"{args.resource_type} {args.resource_id}"
    if command == "grant":
        body = {
            "role_id": rid,
            "resource_type": args.resource_type,
            "resource_pattern": args.resource_id,
            "permission": args.permission,
        }
        reply = s.call("POST", f"{MLFLOW_V3}/roles/permissions/add", body)
        return reply, [f"granted {args.permission} on {what} to role {args.role}"]
    listed = s.call("GET", f"{MLFLOW_V3}/roles/permissions/list", query={"role_id": str(rid)})
    for rp in listed["role_permissions"]:
        if (rp["resource_type"], rp["resource_pattern"]) == (args.resource_type, args.resource_id):
            reply = s.call(
                "DELETE", f"{MLFLOW_V3}/roles/permissions/remove", {"role_permission_id": rp["id"]}
            )
            return reply, [f"revoked {rp['permission']} on {what} from role {args.role}"]
    raise ClientError(
        f"role {args.role} has no grant on {what}", status=404, error_code="RESOURCE_DOES_NOT_EXIST"
    )


def role_table(roles: Sequence[dict[str, Any]]) -> list[str]:
    rows = [
        [
            str(r["id"]),
            r["name"],
            r.get("workspace") or "default",
            ", ".join(
                f"{p['resource_type']}:{p['resource_pattern']}={p['permission']}"
                for p in r.get("permissions", [])
            )
            or "-",
            r.get("description") or "",
        ]
        for r in roles
    ]
    return table(["ID", "NAME", "WORKSPACE", "GRANTS", "DESCRIPTION"], rows)


def grant_table(permissions: Sequence[dict[str, Any]]) -> list[str]:
    rows = [
        [str(p["id"]), p["resource_type"], p["resource_pattern"], p["permission"]]
        for p in permissions
    ]
    return table(["ID", "TYPE", "RESOURCE", "PERMISSION"], rows)


# ------------------------------------------------------------------ permissions


def _permissions(s: Session, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    command = args.auth_command
    if command == "set":
        return _set_permission(s, args)
    if command == "who":
        query = {"resource_type": args.resource_type, "resource_id": args.resource_id}
        reply = s.call("GET", f"{METRICGATE}/permissions/who", query=query)
        return reply, who_table(reply)
    if command == "list":
        reply = s.call("GET", f"{MLFLOW_V3}/users/permissions/list", query={"username": args.user})
        lines = [f"{args.user} is an admin: every check passes"] if reply.get("is_admin") else []
        return reply, lines + permission_table(reply["permissions"])
    what = f"{args.resource_type} {args.resource_id}"
    body = {
        "username": args.user,
        "resource_type": args.resource_type,
        "resource_id": args.resource_id,
    }
    if command == "grant":
        body["permission"] = args.permission
        reply = s.call("POST", f"{MLFLOW_V3}/users/permissions/grant", body)
        return reply, [f"granted {args.permission} on {what} to {args.user}"]
    reply = s.call("POST", f"{MLFLOW_V3}/users/permissions/revoke", body)
    return reply, [f"revoked {args.user}'s grant on {what}"]


def _set_permission(s: Session, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    body: dict[str, Any] = {
        "resource_type": args.resource_type,
        "resource_id": args.resource_id,
        "permission": args.permission,
    }
    if args.user is not None:
        body["username"] = args.user
        holder = args.user
    else:
        body["role_id"] = role_id(s, args.role)
        holder = f"role {args.role}"
    reply = s.call("POST", f"{METRICGATE}/permissions/set", body)
    what = f"{args.resource_type} {args.resource_id}"
    previous = reply.get("previous_permission")
    change = f"(was {previous})" if previous else "(new)"
    return reply, [f"set {holder}'s permission on {what} to {args.permission} {change}"]


def who_table(reply: dict[str, Any]) -> list[str]:
    rows = [
        [u["username"], u["permission"], "direct", u["resource_pattern"]]
        for u in reply.get("users", [])
    ]
    for r in reply.get("roles", []):
        members = r.get("usernames") or ["-"]
        rows.extend(
            [name, r["permission"], f"role {r['role_name']}", r["resource_pattern"]]
            for name in members
        )
    return [
        *table(["USER", "PERMISSION", "VIA", "RESOURCE"], rows),
        f"everyone else: {reply.get('default_permission', '?')} (the server's default); "
        "admins and workspace admins: every permission, without a grant",
    ]


def permission_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    cells = [
        [
            r["resource_type"],
            r["resource_pattern"],
            r["permission"],
            "direct" if r["role_name"].startswith(HIDDEN_ROLE_PREFIX) else f"role {r['role_name']}",
        ]
        for r in rows
    ]
    return table(["TYPE", "RESOURCE", "PERMISSION", "VIA"], cells)


# ------------------------------------------------------------------ tokens


def _tokens(s: Session, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    command = args.auth_command
    if command == "create":
        body: dict[str, Any] = {"name": args.name}
        if args.expires_in_days is not None:
            body["expires_in_days"] = args.expires_in_days
        reply = s.call("POST", f"{TOKENS}/create", body)
        token = reply["token"]
        expires = when(token.get("expires_at")) if token.get("expires_at") else "never"
        return reply, [
            f"token {token['id']} {token['name']} (expires {expires})",
            f"secret: {reply['secret']}",
            "(store the secret now: it will not be shown again)",
        ]
    if command == "list":
        query = {"username": args.user} if args.user else None
        reply = s.call("GET", f"{TOKENS}/list", query=query)
        return reply, token_table(reply["tokens"])
    reply = s.call("POST", f"{TOKENS}/revoke", {"token_id": args.token_id})
    return reply, [f"revoked token {args.token_id}"]


def token_state(token: dict[str, Any], now_ms: int) -> str:
    if token.get("revoked_at"):
        return "revoked"
    expires = token.get("expires_at")
    if expires is not None and expires <= now_ms:
        return "expired"
    return "live"


def token_table(tokens: Sequence[dict[str, Any]], now_ms: int | None = None) -> list[str]:
    now = int(datetime.now(UTC).timestamp() * 1000) if now_ms is None else now_ms
    rows = [
        [
            str(t["id"]),
            t["name"],
            t["hint"] + "...",
            token_state(t, now),
            when(t.get("created_at")),
            when(t.get("expires_at")) if t.get("expires_at") else "never",
            when(t.get("last_used_at")) if t.get("last_used_at") else "-",
        ]
        for t in tokens
    ]
    return table(["ID", "NAME", "TOKEN", "STATE", "CREATED", "EXPIRES", "LAST USED"], rows)


# ------------------------------------------------------------------ output


def when(ms: int | None) -> str:
    """Milliseconds since the epoch as UTC, to the second."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart; the last column unpadded."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths, strict=False)]
        return "  ".join([*padded, cells[-1]]).rstrip()

    return [line(headers), *(line(r) for r in rows)]


_DISPATCH: dict[str, Command] = {
    "users": _users,
    "roles": _roles,
    "permissions": _permissions,
    "tokens": _tokens,
}


# ------------------------------------------------------------------ create-admin (no server)


def run_create_admin(args: argparse.Namespace) -> int:
    """The first admin, written through the database URL (``serve`` need not be up)."""
    from metricgate.domain.auth.rules import check_password, check_username
    from metricgate.domain.errors import InvalidParameter

    settings = settings_or_report(database_url=args.database_url)
    if settings is None:
        return 2
    try:
        username = check_username(args.name)
        password = check_password(new_password(username))
    except (InputError, InvalidParameter) as exc:
        print(f"metricgate: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_create_admin(settings, username, password, reset=args.reset))


async def _create_admin(settings: Settings, username: str, password: str, *, reset: bool) -> int:
    import asyncpg

    from metricgate.auth.bootstrap import SYSTEM, process_details
    from metricgate.auth.passwords import Passwords
    from metricgate.domain.errors import AlreadyExists, MetricgateError
    from metricgate.service import open_auth_store

    hasher = Passwords.from_settings(settings.auth)
    try:
        password_hash = await hasher.hash(password)
    finally:
        hasher.close()
    details = process_details("metricgate users create-admin")
    try:
        async with open_auth_store(settings) as store:
            # Each change commits with its audit entry: no admin without its record.
            try:
                user = await store.create_user(
                    username, password_hash, True, audit=SYSTEM, details=details
                )
                action = "user.created"
            except AlreadyExists:
                if not reset:
                    print(
                        f"metricgate: user {username!r} exists; --reset sets their password "
                        "and makes them an admin",
                        file=sys.stderr,
                    )
                    return 1
                user = await store.reset_admin(
                    username, password_hash, audit=SYSTEM, details=details
                )
                action = "user.admin_reset"
    except (OSError, MetricgateError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"metricgate: cannot write to {settings.postgres}: {exc}", file=sys.stderr)
        return 1
    done = "created" if action == "user.created" else "reset"
    print(f"{done} admin {user.username} (id {user.id})")
    return 0
