"""The permission matrix (docs/design-auth.md B8): every registered route x every persona, the
expected status computed from the route's declared access rule.

``CASES`` is the one table: each (method, path) maps to a builder of a valid request against a
seeded world (an experiment with a run, a metric and an artifact; a registered model with a
version; a webhook; a logged model; an upload session). A path under ``/ajax-api/`` is covered by
the case of its ``/api/`` twin. ``expected(persona, rule)`` derives the answer from the route's
``AccessRule``: 401 for callers without a valid credential on a non-public route, 403 below the
rule's level, otherwise anything but 401/403 (the handler's own answer: a valid request may still
be refused for state reasons, e.g. restoring an active run). A registered route without a case,
or a case without a route, fails ``test_every_route_has_a_case``: a new endpoint needs both.

Requests that destroy something act on a target made for that one request (with the persona's
grant copied onto it), so later requests still find the seeded world.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from tests.api.auth_support import (
    ADMIN,
    ADMIN_PASSWORD,
    FAST,
    PASSWORD,
    auth_settings,
    basic,
    bearer,
)

from metricgate.api.app import create_app
from metricgate.api.keys import SERVICE
from metricgate.api.routing import ACCESS_RULES, RuleKey
from metricgate.auth.tokens import new_token
from metricgate.domain.auth.access import (
    AccessRule,
    Admin,
    AllOf,
    Authenticated,
    Filtered,
    Manages,
    On,
    Public,
    RoleAdmin,
    SelfOrAdmin,
    Target,
)
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.domain.auth.rules import token_digest, token_hint
from metricgate.stores.base import AuthStore

V2 = "/api/2.0/mlflow"
V3 = "/api/3.0/mlflow"
OWN = "/api/2.0/metricgate"
ARTIFACTS = "/api/2.0/mlflow-artifacts"
EXPERIMENT_T = ResourceType.EXPERIMENT
MODEL_T = ResourceType.REGISTERED_MODEL

# ------------------------------------------------------------------ personas

NO_CREDENTIAL = ("anonymous", "wrong_password", "revoked_token", "expired_token")
# The level each user holds on the seeded experiment and model (and on targets made per case).
LEVEL = {
    "reader": Permission.READ,
    "editor": Permission.EDIT,
    "manager": Permission.MANAGE,
    "denied": Permission.DENY,  # on top of '*' EDIT: DENY wins
}
PERSONAS = (*NO_CREDENTIAL, "reader", "editor", "denied", "manager", ADMIN)
# A user the grant/role/admin-flag requests act on, so that no persona's own access changes.
TARGET_USER = "target"


def expected(persona: str, rule: AccessRule) -> int | None:
    """401 or 403 when the access check must refuse, None when it must let the request through.
    SelfOrAdmin cases name the caller; Manages cases name the seeded experiment."""
    if isinstance(rule, Public):
        return None
    if persona in NO_CREDENTIAL:
        return 401
    if persona == ADMIN or isinstance(rule, Authenticated | Filtered | SelfOrAdmin):
        return None
    if isinstance(rule, Admin | RoleAdmin):
        return 403
    held = LEVEL[persona]
    if isinstance(rule, Manages):
        return None if held is Permission.MANAGE else 403
    rules = rule.rules if isinstance(rule, AllOf) else (rule,)
    assert all(isinstance(r, On) for r in rules), rule
    needed = max((r.level for r in rules if not r.optional), key=lambda level: level.priority)
    return None if held.allows(needed) else 403


# ------------------------------------------------------------------ the app and the world


def registered_rules() -> dict[RuleKey, AccessRule]:
    """The routes and rules of an app with auth on; building it opens nothing."""
    settings = auth_settings("postgresql://unused/unused", "redis://unused", Path("/unused"))
    rules = create_app(settings)[ACCESS_RULES]
    return dict(rules)


_serial = itertools.count()


def unique(stem: str) -> str:
    return f"{stem}-{next(_serial)}-{time.monotonic_ns()}"


@dataclass
class Req:
    path: str
    params: dict[str, str] | None = None
    body: Any = None
    data: bytes | None = None


@dataclass
class Reply:
    status: int
    raw: bytes

    def json(self) -> Any:
        return orjson.loads(self.raw)


@dataclass
class World:
    client: TestClient[Any, Any]
    store: AuthStore
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    exp: str = ""
    exp_name: str = ""
    run: str = ""
    model: str = ""
    logged_model: str = ""
    webhook: str = ""
    upload: str = ""
    role: str = ""

    async def send(self, method: str, req: Req, headers: dict[str, str] | None = None) -> Reply:
        hdrs = dict(headers if headers is not None else self.headers[ADMIN])
        data = req.data
        if req.body is not None:
            data = orjson.dumps(req.body)
            hdrs["Content-Type"] = "application/json"
        async with self.client.request(
            method, req.path, params=req.params, data=data, headers=hdrs
        ) as resp:
            return Reply(resp.status, await resp.read())

    async def admin(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        reply = await self.send(method, Req(path, body=body, **kw))
        assert reply.status == 200, (method, path, reply.status, reply.raw[:500])
        return reply.json() if reply.raw else None

    async def grant_like_seed(self, persona: str, resource_type: str, resource_id: str) -> None:
        """Give ``persona`` the level it holds on the seeded resource on a new one as well."""
        if persona not in LEVEL:
            return
        body = {
            "username": persona,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "permission": LEVEL[persona].name,
        }
        await self.admin("POST", "/api/3.0/mlflow/users/permissions/grant", body)

    # targets made for one destructive request

    async def fresh_experiment(self, persona: str) -> str:
        body = {"name": unique("exp")}
        exp_id = str((await self.admin("POST", f"{V2}/experiments/create", body))["experiment_id"])
        await self.grant_like_seed(persona, "experiment", exp_id)
        return exp_id

    async def fresh_model(self, persona: str) -> str:
        name = unique("model")
        await self.admin("POST", f"{V2}/registered-models/create", {"name": name})
        await self.grant_like_seed(persona, "registered_model", name)
        return name

    async def fresh_run(self) -> str:
        body = {"experiment_id": self.exp, "start_time": int(time.time() * 1000)}
        return str((await self.admin("POST", f"{V2}/runs/create", body))["run"]["info"]["run_id"])

    async def fresh_version(self) -> str:
        body = {"name": self.model, "source": "s3://bucket/key"}
        created = await self.admin("POST", f"{V2}/model-versions/create", body)
        return str(created["model_version"]["version"])

    async def fresh_artifact(self) -> str:
        path = f"{self.exp}/{self.run}/artifacts/{unique('f')}.txt"
        await self.admin("PUT", f"{ARTIFACTS}/artifacts/{path}", data=b"bye")
        return path

    async def fresh_logged_model(self) -> str:
        body = {"experiment_id": self.exp, "name": unique("lm")}
        return str(
            (await self.admin("POST", f"{V2}/logged-models", body))["model"]["info"]["model_id"]
        )

    async def fresh_webhook(self) -> str:
        body = {
            "url": "http://127.0.0.1:9/hook",
            "events": ["model_version.created"],
            "active": False,
        }
        return str((await self.admin("POST", f"{OWN}/webhooks", body))["webhook"]["id"])

    async def fresh_upload(self) -> str:
        body = {
            "run_id": self.run,
            "path": unique("u") + ".bin",
            "part_size": 5 * 1024 * 1024,
            "files": [{"size": 4}],
        }
        return str((await self.admin("POST", f"{OWN}/uploads", body))["upload_id"])

    async def fresh_role(self) -> str:
        body = {"workspace": "default", "name": unique("role")}
        return str((await self.admin("POST", f"{V3}/roles/create", body))["role"]["id"])

    async def fresh_role_permission(self) -> str:
        body = {
            "role_id": self.role,
            "resource_type": "experiment",
            "resource_pattern": unique("p"),
            "permission": "READ",
        }
        added = await self.admin("POST", f"{V3}/roles/permissions/add", body)
        return str(added["role_permission"]["id"])

    async def fresh_user(self) -> str:
        name = unique("gone").replace("-", "_")
        await self.store.create_user(name, FAST.hash(PASSWORD), False)
        return name


async def make_token(store: AuthStore, username: str, expires_at_ms: int | None) -> tuple[str, int]:
    user = await store.get_user(username)
    secret = new_token()
    token = await store.create_token(
        user.id, unique("t"), token_digest(secret), token_hint(secret), expires_at_ms
    )
    return secret, token.id


async def seed(client: TestClient[Any, Any]) -> World:
    store = client.app[SERVICE].auth
    assert store is not None
    w = World(client, store)
    w.headers[ADMIN] = basic(ADMIN, ADMIN_PASSWORD)
    for name in (*LEVEL, TARGET_USER):
        await store.create_user(name, FAST.hash(PASSWORD), False)
        w.headers[name] = basic(name, PASSWORD)
    w.headers["anonymous"] = {}
    w.headers["wrong_password"] = basic("reader", "not-the-password-0")
    revoked, revoked_id = await make_token(store, "editor", None)
    await store.revoke_token(None, revoked_id)
    w.headers["revoked_token"] = bearer(revoked)
    expired, _ = await make_token(store, "editor", int(time.time() * 1000) - 60_000)
    w.headers["expired_token"] = bearer(expired)

    w.exp_name = unique("seeded")
    created = await w.admin("POST", f"{V2}/experiments/create", {"name": w.exp_name})
    w.exp = str(created["experiment_id"])
    w.run = await w.fresh_run()
    metric = {"run_id": w.run, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0}
    await w.admin("POST", f"{V2}/runs/log-metric", metric)
    await w.admin("PUT", f"{ARTIFACTS}/artifacts/{w.exp}/{w.run}/artifacts/a.txt", data=b"hi")
    w.model = unique("model")
    await w.admin("POST", f"{V2}/registered-models/create", {"name": w.model})
    await w.fresh_version()
    await w.admin("POST", f"{V2}/registered-models/alias", {**version_of(w), "alias": "champion"})
    w.logged_model = await w.fresh_logged_model()
    w.webhook = await w.fresh_webhook()
    w.upload = await w.fresh_upload()
    w.role = await w.fresh_role()
    await store.grant_user("denied", EXPERIMENT_T, "*", Permission.EDIT, replace=False)
    await store.grant_user("denied", MODEL_T, "*", Permission.EDIT, replace=False)
    for persona in LEVEL:
        await w.grant_like_seed(persona, "experiment", w.exp)
        await w.grant_like_seed(persona, "registered_model", w.model)
    return w


# ------------------------------------------------------------------ the table

Builder = Callable[[World, str, str], Awaitable[Req]]  # (world, persona, path) -> request


def version_of(w: World) -> dict[str, str]:
    return {"name": w.model, "version": "1"}


def own_name(persona: str) -> str:
    """The user a SelfOrAdmin request names: the caller (a persona without one names reader)."""
    return persona if persona in LEVEL or persona == ADMIN else "reader"


def own_password(persona: str) -> str:
    return ADMIN_PASSWORD if persona == ADMIN else PASSWORD


def q(**params: str) -> Callable[[World, str, str], Awaitable[Req]]:
    """A request with query parameters only; ``{exp}``-style values are world fields."""

    async def build(w: World, persona: str, path: str) -> Req:
        return Req(path, params={k: _fill(v, w, persona) for k, v in params.items()})

    return build


def b(**body: Any) -> Builder:
    """A request with a JSON body; string values may name world fields as ``{field}``."""

    async def build(w: World, persona: str, path: str) -> Req:
        return Req(path, body={k: _fill(v, w, persona) for k, v in body.items()})

    return build


def _fill(value: Any, w: World, persona: str) -> Any:
    if isinstance(value, str):
        return value.format(
            exp=w.exp,
            exp_name=w.exp_name,
            run=w.run,
            model=w.model,
            logged_model=w.logged_model,
            webhook=w.webhook,
            upload=w.upload,
            role=w.role,
            me=own_name(persona),
            password=own_password(persona),
            unique=unique("n"),
        )
    if isinstance(value, list):
        return [_fill(v, w, persona) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, w, persona) for k, v in value.items()}
    return value


def at(builder: Builder, **parts: str) -> Builder:
    """``builder`` with the path's ``{part}`` placeholders filled from world fields."""

    async def build(w: World, persona: str, path: str) -> Req:
        req = await builder(w, persona, path)
        req.path = path.format(**{k: _fill(v, w, persona) for k, v in parts.items()})
        return req

    return build


def plain() -> Builder:
    async def build(w: World, persona: str, path: str) -> Req:
        return Req(path)

    return build


async def _with_data(builder: Builder, w: World, persona: str, path: str, data: bytes) -> Req:
    req = await builder(w, persona, path)
    req.data = data
    return req


def custom(fn: Callable[[World, str, str], Awaitable[Req]]) -> Builder:
    """A builder written out in full (destructive requests: their target is made per call)."""
    return fn


async def _delete_experiment(w: World, persona: str, path: str) -> Req:
    return Req(path, body={"experiment_id": await w.fresh_experiment(persona)})


async def _delete_run(w: World, persona: str, path: str) -> Req:
    return Req(path, body={"run_id": await w.fresh_run()})


async def _delete_model(w: World, persona: str, path: str) -> Req:
    return Req(path, body={"name": await w.fresh_model(persona)})


async def _rename_model(w: World, persona: str, path: str) -> Req:
    return Req(path, body={"name": await w.fresh_model(persona), "new_name": unique("renamed")})


async def _delete_version(w: World, persona: str, path: str) -> Req:
    return Req(path, body={"name": w.model, "version": await w.fresh_version()})


async def _delete_artifact(w: World, persona: str, path: str) -> Req:
    return Req(path.replace("{path}", await w.fresh_artifact()))


async def _delete_logged_model(w: World, persona: str, path: str) -> Req:
    return Req(path.replace("{model_id}", await w.fresh_logged_model()))


async def _delete_webhook(w: World, persona: str, path: str) -> Req:
    return Req(path.replace("{webhook_id}", await w.fresh_webhook()))


async def _delete_upload(w: World, persona: str, path: str) -> Req:
    return Req(path.replace("{upload_id}", await w.fresh_upload()))


async def _delete_role(w: World, persona: str, path: str) -> Req:
    return Req(path, params={"role_id": await w.fresh_role()})


async def _update_role_permission(w: World, persona: str, path: str) -> Req:
    body = {"role_permission_id": await w.fresh_role_permission(), "permission": "EDIT"}
    return Req(path, body=body)


async def _remove_role_permission(w: World, persona: str, path: str) -> Req:
    return Req(path, params={"role_permission_id": await w.fresh_role_permission()})


async def _delete_user(w: World, persona: str, path: str) -> Req:
    return Req(path, body={"username": await w.fresh_user()})


async def _revoke_token(w: World, persona: str, path: str) -> Req:
    _, token_id = await make_token(w.store, own_name(persona), None)
    return Req(path, body={"token_id": token_id})


def artifact(sub: str = "a.txt") -> Builder:
    return at(plain(), path="{exp}/{run}/artifacts/" + sub)


GRANT = {
    "username": TARGET_USER,
    "resource_type": "experiment",
    "resource_id": "{exp}",
    "permission": "READ",
}
ROLE_GRANT = {
    "role_id": "{role}",
    "resource_type": "experiment",
    "resource_pattern": "{unique}",
    "permission": "READ",
}
RUN = {"run_id": "{run}"}
MODEL = {"name": "{model}"}
VERSION = {"name": "{model}", "version": "1"}
LM = at(plain(), model_id="{logged_model}")
UPLOAD = at(plain(), upload_id="{upload}", file_index="0", part_number="1")
HOOK = at(plain(), webhook_id="{webhook}")
NO_SUCH = at(plain(), request_id="999999", policy_id="999999")

# (method, path under /api/): the builder of a valid request. Grouped by endpoint family.
CASES: dict[RuleKey, Builder] = {
    # experiments
    ("POST", f"{V2}/experiments/create"): b(name="{unique}"),
    ("POST", f"{V2}/experiments/delete"): custom(_delete_experiment),
    ("POST", f"{V2}/experiments/restore"): b(experiment_id="{exp}"),
    ("POST", f"{V2}/experiments/update"): b(experiment_id="{exp}", new_name="{exp_name}"),
    ("GET", f"{V2}/experiments/get"): q(experiment_id="{exp}"),
    ("GET", f"{V2}/experiments/get-by-name"): q(experiment_name="{exp_name}"),
    ("GET", f"{V2}/experiments/search"): q(max_results="5"),
    ("POST", f"{V2}/experiments/search"): b(max_results=5),
    ("POST", f"{V2}/experiments/search-datasets"): b(experiment_ids=["{exp}"]),
    ("POST", f"{V2}/experiments/set-experiment-tag"): b(experiment_id="{exp}", key="k", value="v"),
    ("POST", f"{V2}/experiments/delete-experiment-tag"): b(experiment_id="{exp}", key="k"),
    # runs
    ("POST", f"{V2}/runs/create"): b(experiment_id="{exp}", start_time=1),
    ("POST", f"{V2}/runs/delete"): custom(_delete_run),
    ("POST", f"{V2}/runs/restore"): b(**RUN),
    ("POST", f"{V2}/runs/update"): b(**RUN, status="RUNNING"),
    ("GET", f"{V2}/runs/get"): q(**RUN),
    ("GET", f"{V2}/runs/search"): q(experiment_ids="{exp}"),
    ("POST", f"{V2}/runs/search"): b(experiment_ids=["{exp}"]),
    ("POST", f"{V2}/runs/set-tag"): b(**RUN, key="k", value="v"),
    ("POST", f"{V2}/runs/delete-tag"): b(**RUN, key="k"),
    ("POST", f"{V2}/runs/log-metric"): b(**RUN, key="loss", value=0.1, timestamp=2, step=1),
    ("POST", f"{V2}/runs/log-batch"): b(**RUN, metrics=[], params=[], tags=[]),
    ("POST", f"{V2}/runs/log-parameter"): b(**RUN, key="{unique}", value="1"),
    ("POST", f"{V2}/runs/log-inputs"): b(**RUN, datasets=[]),
    ("POST", f"{V2}/runs/log-model"): b(**RUN, model_json="{{}}"),
    ("POST", f"{V2}/runs/outputs"): b(**RUN, models=[]),
    # metrics
    ("GET", f"{V2}/metrics/get-history"): q(**RUN, metric_key="loss"),
    ("GET", f"{V2}/metrics/get-history-bulk-interval"): q(run_ids="{run}", metric_key="loss"),
    # logged models
    ("POST", f"{V2}/logged-models"): b(experiment_id="{exp}", name="{unique}"),
    ("POST", f"{V2}/logged-models/search"): b(experiment_ids=["{exp}"]),
    ("GET", f"{V2}/logged-models/{{model_id}}"): LM,
    ("PATCH", f"{V2}/logged-models/{{model_id}}"): at(
        b(status="LOGGED_MODEL_READY"), model_id="{logged_model}"
    ),
    ("DELETE", f"{V2}/logged-models/{{model_id}}"): custom(_delete_logged_model),
    ("GET", f"{V2}/logged-models/{{model_id}}/artifacts/directories"): LM,
    ("GET", f"{V2}/logged-models/{{model_id}}/artifacts/files"): at(
        q(artifact_file_path="x"), model_id="{logged_model}"
    ),
    ("POST", f"{V2}/logged-models/{{model_id}}/params"): at(
        b(params=[{"key": "p", "value": "1"}]), model_id="{logged_model}"
    ),
    ("PATCH", f"{V2}/logged-models/{{model_id}}/tags"): at(
        b(tags=[{"key": "k", "value": "v"}]), model_id="{logged_model}"
    ),
    ("DELETE", f"{V2}/logged-models/{{model_id}}/tags/{{key}}"): at(
        plain(), model_id="{logged_model}", key="k"
    ),
    # run artifacts through the tracking API
    ("GET", f"{V2}/artifacts/list"): q(**RUN),
    ("GET", f"{V2}/get-artifact"): q(**RUN, path="a.txt"),
    ("GET", "/get-artifact"): q(**RUN, path="a.txt"),
    ("GET", "/model-versions/get-artifact"): q(**VERSION, path="x"),
    # the artifact proxy
    ("GET", f"{ARTIFACTS}/artifacts"): q(path="{exp}/{run}/artifacts"),
    ("GET", f"{ARTIFACTS}/artifacts/{{path}}"): artifact(),
    ("PUT", f"{ARTIFACTS}/artifacts/{{path}}"): custom(
        lambda w, p, path: _with_data(artifact("{unique}.txt"), w, p, path, b"x")
    ),
    ("DELETE", f"{ARTIFACTS}/artifacts/{{path}}"): custom(_delete_artifact),
    ("GET", f"{ARTIFACTS}/presigned/{{path}}"): artifact(),
    ("POST", f"{ARTIFACTS}/mpu/create/{{path}}"): at(
        b(path="m.bin", num_parts=1), path="{exp}/{run}/artifacts/m.bin"
    ),
    ("PUT", f"{ARTIFACTS}/mpu/part/{{path}}"): artifact("m.bin"),
    ("POST", f"{ARTIFACTS}/mpu/complete/{{path}}"): at(
        b(path="m.bin", upload_id="u", parts=[]), path="{exp}/{run}/artifacts/m.bin"
    ),
    ("POST", f"{ARTIFACTS}/mpu/abort/{{path}}"): at(
        b(path="m.bin", upload_id="u"), path="{exp}/{run}/artifacts/m.bin"
    ),
    # resumable uploads and artifact references
    ("POST", f"{OWN}/uploads"): b(
        **RUN, part_size=5 * 1024 * 1024, path="{unique}.bin", files=[{"size": 1}]
    ),
    ("GET", f"{OWN}/uploads/{{upload_id}}"): UPLOAD,
    ("DELETE", f"{OWN}/uploads/{{upload_id}}"): custom(_delete_upload),
    ("POST", f"{OWN}/uploads/{{upload_id}}/complete"): UPLOAD,
    ("PUT", f"{OWN}/uploads/{{upload_id}}/files/{{file_index}}/parts/{{part_number}}"): custom(
        lambda w, p, path: _with_data(UPLOAD, w, p, path, b"abcd")
    ),
    ("GET", f"{OWN}/artifact-references"): q(**RUN),
    ("POST", f"{OWN}/artifact-references"): b(
        **RUN, path="ref.bin", uri="s3://bucket/ref.bin", size=1
    ),
    ("DELETE", f"{OWN}/artifact-references"): b(**RUN, path="ref.bin"),
    # registered models
    ("POST", f"{V2}/registered-models/create"): b(name="{unique}"),
    ("GET", f"{V2}/registered-models/get"): q(**MODEL),
    ("GET", f"{V2}/registered-models/search"): q(max_results="5"),
    ("PATCH", f"{V2}/registered-models/update"): b(**MODEL, description="d"),
    ("POST", f"{V2}/registered-models/rename"): custom(_rename_model),
    ("DELETE", f"{V2}/registered-models/delete"): custom(_delete_model),
    ("POST", f"{V2}/registered-models/set-tag"): b(**MODEL, key="k", value="v"),
    ("DELETE", f"{V2}/registered-models/delete-tag"): b(**MODEL, key="k"),
    ("GET", f"{V2}/registered-models/get-latest-versions"): q(**MODEL),
    ("POST", f"{V2}/registered-models/get-latest-versions"): b(**MODEL),
    ("GET", f"{V2}/registered-models/alias"): q(**MODEL, alias="champion"),
    ("POST", f"{V2}/registered-models/alias"): b(**VERSION, alias="champion"),
    ("DELETE", f"{V2}/registered-models/alias"): b(**MODEL, alias="champion"),
    ("GET", f"{OWN}/registry/history"): q(**MODEL),
    # model versions
    ("POST", f"{V2}/model-versions/create"): b(**MODEL, source="s3://bucket/key"),
    ("GET", f"{V2}/model-versions/get"): q(**VERSION),
    ("GET", f"{V2}/model-versions/get-download-uri"): q(**VERSION),
    ("GET", f"{V2}/model-versions/search"): q(filter="name='{model}'"),
    ("PATCH", f"{V2}/model-versions/update"): b(**VERSION, description="d"),
    ("DELETE", f"{V2}/model-versions/delete"): custom(_delete_version),
    ("POST", f"{V2}/model-versions/set-tag"): b(**VERSION, key="k", value="v"),
    ("DELETE", f"{V2}/model-versions/delete-tag"): b(**VERSION, key="k"),
    ("POST", f"{V2}/model-versions/transition-stage"): b(
        **VERSION, stage="Staging", archive_existing_versions=False
    ),
    # approvals (no request exists: the handler's 404 once the check lets a caller through)
    ("GET", f"{OWN}/approvals"): plain(),
    ("GET", f"{OWN}/approvals/{{request_id}}"): NO_SUCH,
    ("POST", f"{OWN}/approvals/{{request_id}}/approve"): NO_SUCH,
    ("POST", f"{OWN}/approvals/{{request_id}}/reject"): NO_SUCH,
    ("POST", f"{OWN}/approvals/{{request_id}}/cancel"): NO_SUCH,
    ("GET", f"{OWN}/approval-policies"): plain(),
    # a policy on a model nobody uses, so that no later transition is gated
    ("POST", f"{OWN}/approval-policies"): b(
        model_pattern="{unique}", kind="stage", target="Production", approvals=1
    ),
    ("DELETE", f"{OWN}/approval-policies/{{policy_id}}"): NO_SUCH,
    # webhooks
    ("GET", f"{OWN}/webhooks"): plain(),
    ("POST", f"{OWN}/webhooks"): b(
        url="http://127.0.0.1:9/hook", events=["model_version.created"], active=False
    ),
    ("GET", f"{OWN}/webhooks/{{webhook_id}}"): HOOK,
    ("PATCH", f"{OWN}/webhooks/{{webhook_id}}"): at(b(description="d"), webhook_id="{webhook}"),
    ("DELETE", f"{OWN}/webhooks/{{webhook_id}}"): custom(_delete_webhook),
    ("GET", f"{OWN}/webhooks/{{webhook_id}}/deliveries"): HOOK,
    ("POST", f"{OWN}/webhooks/{{webhook_id}}/rotate-secret"): HOOK,
    ("POST", f"{OWN}/webhooks/{{webhook_id}}/test"): HOOK,
    # users (MLflow's auth API)
    ("POST", f"{V2}/users/create"): b(username="{unique}", password=PASSWORD),
    ("GET", f"{V2}/users/current"): plain(),
    ("GET", f"{V2}/users/get"): q(username="{me}"),
    ("GET", f"{V2}/users/list"): plain(),
    ("PATCH", f"{V2}/users/update-password"): b(
        username="{me}", password="{password}", current_password="{password}"
    ),
    ("PATCH", f"{V2}/users/update-admin"): b(username=TARGET_USER, is_admin=False),
    ("DELETE", f"{V2}/users/delete"): custom(_delete_user),
    ("GET", f"{V3}/users/current/permissions"): plain(),
    ("GET", f"{V3}/users/permissions/get"): q(
        username="{me}", resource_type="experiment", resource_id="{exp}"
    ),
    ("GET", f"{V3}/users/permissions/list"): q(username="{me}"),
    ("POST", f"{V3}/users/permissions/grant"): b(**GRANT),
    ("POST", f"{V3}/users/permissions/revoke"): b(
        username=TARGET_USER, resource_type="experiment", resource_id="{exp}"
    ),
    ("GET", f"{V3}/users/roles/list"): q(username="{me}"),
    ("POST", f"{OWN}/permissions/set"): b(**GRANT),
    ("GET", f"{OWN}/permissions/who"): q(resource_type="experiment", resource_id="{exp}"),
    # roles
    ("POST", f"{V3}/roles/create"): b(workspace="default", name="{unique}"),
    ("GET", f"{V3}/roles/get"): q(role_id="{role}"),
    ("GET", f"{V3}/roles/list"): q(workspace="default"),
    ("PATCH", f"{V3}/roles/update"): b(role_id="{role}", description="d"),
    ("DELETE", f"{V3}/roles/delete"): custom(_delete_role),
    ("POST", f"{V3}/roles/permissions/add"): b(**ROLE_GRANT),
    ("GET", f"{V3}/roles/permissions/list"): q(role_id="{role}"),
    ("PATCH", f"{V3}/roles/permissions/update"): custom(_update_role_permission),
    ("DELETE", f"{V3}/roles/permissions/remove"): custom(_remove_role_permission),
    ("POST", f"{V3}/roles/assign"): b(username=TARGET_USER, role_id="{role}"),
    ("DELETE", f"{V3}/roles/unassign"): b(username=TARGET_USER, role_id="{role}"),
    ("GET", f"{V3}/roles/users/list"): q(role_id="{role}"),
    # tokens and the audit log
    ("POST", f"{OWN}/tokens/create"): b(name="{unique}"),
    ("GET", f"{OWN}/tokens/list"): q(username="{me}"),
    ("POST", f"{OWN}/tokens/revoke"): custom(_revoke_token),
    ("GET", f"{OWN}/audit"): q(max_results="5"),
    # the server, the UI's own endpoints, GraphQL, ingest status
    ("GET", "/health"): plain(),
    ("GET", "/ready"): plain(),
    ("GET", "/metrics"): plain(),
    ("GET", "/version"): plain(),
    ("GET", f"{V3}/server-info"): plain(),
    ("GET", "/"): plain(),
    ("HEAD", "/"): plain(),
    ("GET", "/static-files/{path}"): at(plain(), path="no-such-file.js"),
    ("HEAD", "/static-files/{path}"): at(plain(), path="no-such-file.js"),
    ("GET", "/graphql"): q(query="{{ __typename }}"),
    ("POST", "/graphql"): b(query="{{ __typename }}"),
    ("GET", f"{OWN}/ingest/status"): plain(),
    ("GET", f"{OWN}/openapi.json"): plain(),
    ("GET", "/metricgate/ingest"): plain(),
    ("GET", f"{V2}/gateway-proxy"): plain(),
    ("POST", f"{V2}/gateway-proxy"): b(),
    ("GET", f"{V2}/traces"): q(experiment_ids="{exp}"),
    ("POST", "/api/3.0/jobs/search"): b(),
    ("GET", f"{V3}/assistant/config"): plain(),
    ("GET", f"{V3}/assistant/providers"): plain(),
    ("GET", f"{V3}/datasets/search"): plain(),
    ("POST", f"{V3}/datasets/search"): b(),
    ("GET", f"{V3}/gateway/budgets/list"): plain(),
    ("GET", f"{V3}/gateway/budgets/windows"): plain(),
    ("GET", f"{V3}/gateway/endpoints/bindings/list"): plain(),
    ("GET", f"{V3}/gateway/endpoints/list"): plain(),
    ("GET", f"{V3}/gateway/guardrails/list"): plain(),
    ("GET", f"{V3}/gateway/model-definitions/list"): plain(),
    ("GET", f"{V3}/gateway/secrets/config"): plain(),
    ("GET", f"{V3}/gateway/secrets/list"): plain(),
    ("GET", f"{V3}/label-schemas/list"): plain(),
    ("GET", f"{V3}/prompt-optimization/jobs/search"): plain(),
    ("POST", f"{V3}/prompt-optimization/jobs/search"): b(),
    ("GET", f"{V3}/review-queues/list"): plain(),
    ("GET", f"{V3}/scorers/list"): plain(),
    ("POST", f"{V3}/traces/metrics"): b(),
    ("POST", f"{V3}/traces/search"): b(),
    ("GET", f"{V3}/ui-telemetry"): plain(),
    ("POST", f"{V3}/ui-telemetry"): b(),
}

# Routes with no case, and why. Checked against the routes, so it cannot grow silently.
SKIPPED: dict[RuleKey, str] = {}


def case_key(key: RuleKey) -> RuleKey:
    """A UI twin (``/ajax-api/...``) shares the case of its ``/api/...`` path."""
    method, path = key
    if path.startswith("/ajax-api/"):
        path = "/api/" + path.removeprefix("/ajax-api/")
    return method, path


ROUTES = registered_rules()


def family(key: RuleKey) -> str:
    method, path = key
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    tail = [p for p in parts if p not in ("api", "ajax-api", "2.0", "3.0", "mlflow", "metricgate")]
    return f"{tail[0] if tail else 'root'}:{method} {path}"


# ------------------------------------------------------------------ the tests


def test_every_route_has_a_case_and_every_case_a_route() -> None:
    covered = {case_key(key) for key in ROUTES}
    uncased = sorted(k for k in covered if k not in CASES and k not in SKIPPED)
    assert not uncased, f"registered routes without a case (add one to CASES): {uncased}"
    stale = sorted((set(CASES) | set(SKIPPED)) - covered)
    assert not stale, f"cases or skips without a registered route: {stale}"
    assert not set(CASES) & set(SKIPPED), "a route is both cased and skipped"


def test_expected_follows_the_levels() -> None:
    on_edit = On(target=Target.RUN_ID, param="run_id", level=Permission.EDIT)
    assert [expected(p, on_edit) for p in PERSONAS] == [
        401, 401, 401, 401, 403, None, 403, None, None
    ]  # fmt: skip
    assert [expected(p, Public()) for p in PERSONAS] == [None] * len(PERSONAS)
    assert [expected(p, Admin()) for p in PERSONAS][4:] == [403, 403, 403, 403, None]
    assert [expected(p, Manages()) for p in PERSONAS][4:] == [403, 403, 403, None, None]


@pytest.fixture(scope="module")
async def world(
    module_db_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    # Wrong passwords and dead tokens are sent for every route: no login limit may cut in.
    settings = auth_settings(
        module_db_url,
        module_redis_url,
        tmp_path_factory.mktemp("matrix") / "artifacts",
        METRICGATE_AUTH_LOGIN_LIMIT_PER_USER="1000000",
        METRICGATE_AUTH_LOGIN_LIMIT_PER_ADDRESS="1000000",
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        assert client.app[ACCESS_RULES] == ROUTES
        yield await seed(client)


@pytest.mark.parametrize("key", sorted(k for k in ROUTES if case_key(k) not in SKIPPED), ids=family)
async def test_route_answers_each_persona_as_its_rule_says(world: World, key: RuleKey) -> None:
    method, path = key
    rule = ROUTES[key]
    build = CASES[case_key(key)]
    wrong: list[str] = []
    for persona in PERSONAS:
        req = await build(world, persona, path)
        reply = await world.send(method, req, world.headers[persona])
        want = expected(persona, rule)
        got_refused = reply.status in (401, 403)
        if (want is None and got_refused) or (want is not None and reply.status != want):
            wrong.append(
                f"{persona}: {reply.status} (want {want or 'not 401/403'}) {reply.raw[:200]!r}"
            )
        if reply.status == 500:
            wrong.append(f"{persona}: {reply.status} {reply.raw[:200]!r}")
    assert not wrong, f"{method} {path} {rule}:\n" + "\n".join(wrong)
