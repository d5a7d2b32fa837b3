"""The access middleware with auth on (docs/design-auth.md B4), in process over real PostgreSQL:
401 with the Basic challenge, reader/editor/DENY/admin answers, public routes, unmatched paths,
missing resources, DELETE's two parameter sources, and the body still there for the handler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.api.auth_support import (
    ADMIN_PASSWORD,
    PASSWORD,
    As,
    auth_settings,
    basic,
    store_user,
    user,
)
from tests.api.conftest import Api, Reply, now_ms

from metricgate.api.keys import SERVICE
from metricgate.config import Settings
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.stores.base import AuthStore

EXP = ResourceType.EXPERIMENT
MODEL = ResourceType.REGISTERED_MODEL
# Users are made straight in the store with cheap KDF parameters (the hash carries them, so
# verification is cheap too); the admin is made by the server at start with the real ones.


@pytest.fixture
def settings(db_url: str, redis_client_url: str, tmp_path: Path) -> Settings:
    return auth_settings(db_url, redis_client_url, tmp_path / "artifacts")


@pytest.fixture
def store(client: TestClient[Any, Any]) -> AuthStore:
    auth = client.app[SERVICE].auth
    assert auth is not None
    return auth


@pytest.fixture
def admin(client: TestClient[Any, Any]) -> As:
    return As(client, basic("admin", ADMIN_PASSWORD))


def denied(reply: Reply) -> None:
    reply.error(403, "PERMISSION_DENIED")
    assert reply.json["message"] == "Permission denied"


def metric(key: str, value: float) -> dict[str, Any]:
    return {"key": key, "value": value, "timestamp": now_ms(), "step": 0}


async def test_no_or_wrong_credentials_get_401_with_the_basic_challenge(
    api: Api, store: AuthStore
) -> None:
    await store_user(store, "alice")
    for headers in (
        {},
        basic("alice", "wrong-password-1"),
        basic("nobody", PASSWORD),
        {"Authorization": "Bearer mgt_not-a-real-token"},
        {"Authorization": "Digest whatever"},
    ):
        reply = await api.get("/experiments/search", {"max_results": "5"}, headers=headers)
        reply.error(401, "UNAUTHENTICATED")
        assert reply.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
    reply = await api.get(
        "/experiments/search", {"max_results": "5"}, headers=basic("alice", PASSWORD)
    )
    reply.ok()


async def test_reader_reads_but_cannot_log_and_an_editor_can(
    client: TestClient[Any, Any], admin: As, store: AuthStore
) -> None:
    experiment_id = await admin.create_experiment()
    run_id = await admin.new_run_id(experiment_id)
    reader = await user(client, store, "reader")  # the default permission: READ
    editor = await user(client, store, "editor")
    await store.grant_user("editor", EXP, experiment_id, Permission.EDIT, replace=False)

    assert (await reader.get_run(run_id))["info"]["experiment_id"] == experiment_id
    denied(await reader.log_batch(run_id, metrics=[metric("loss", 1.0)]))
    denied(await reader.post("/runs/set-tag", {"run_id": run_id, "key": "k", "value": "v"}))

    # The handler still reads the body the check has read: the metric lands.
    (await editor.log_batch(run_id, metrics=[metric("loss", 0.5)])).ok()
    (await editor.log_metric(run_id, "acc", 0.9)).ok()
    assert [m["value"] for m in await editor.history(run_id, "loss")] == [0.5]
    # EDIT is not MANAGE: deleting the run needs MANAGE.
    denied(await editor.post("/runs/delete", {"run_id": run_id}))


async def test_metrics_aimed_at_a_logged_model_need_edit_on_its_experiment(
    client: TestClient[Any, Any], admin: As, store: AuthStore
) -> None:
    """log-batch's second rule (stock's _validate_can_update_run_and_models): each metric's
    ``model_id`` needs EDIT on that model's experiment, however many metrics name none."""
    mine = await admin.create_experiment()
    theirs = await admin.create_experiment()
    run_id = await admin.new_run_id(mine)
    editor = await user(client, store, "editor")  # READ elsewhere (the default here)
    await store.grant_user("editor", EXP, mine, Permission.EDIT, replace=False)

    async def logged_model(experiment_id: str) -> str:
        reply = await admin.post("/logged-models", {"experiment_id": experiment_id})
        return str(reply.ok()["model"]["info"]["model_id"])

    own_model, their_model = await logged_model(mine), await logged_model(theirs)
    plain = [metric(f"k{i}", 1.0) for i in range(20)]
    (await editor.log_batch(run_id, metrics=plain)).ok()
    (await editor.log_batch(run_id, metrics=[*plain, {**plain[0], "model_id": own_model}])).ok()
    denied(await editor.log_batch(run_id, metrics=[*plain, {**plain[1], "model_id": their_model}]))
    # Not a list of objects: a 400, as stock's parser gives, before anything is logged.
    reply = await editor.post("/runs/log-batch", {"run_id": run_id, "metrics": [*plain, 7]})
    assert reply.status == 400, reply.json


async def test_a_body_the_check_has_parsed_still_meets_the_handlers_size_limit(
    client: TestClient[Any, Any], admin: As, store: AuthStore
) -> None:
    """Regression: the check parses log-batch's body first; the handler's 1 MB limit (MLflow's)
    must still apply to it rather than being skipped as "parsed already"."""
    experiment_id = await admin.create_experiment()
    run_id = await admin.new_run_id(experiment_id)
    editor = await user(client, store, "editor")
    await store.grant_user("editor", EXP, experiment_id, Permission.EDIT, replace=False)
    too_big = [{**metric("k" * 200, 1.0), "step": step} for step in range(5_000)]
    reply = await editor.log_batch(run_id, metrics=too_big)
    reply.error(400, "INVALID_PARAMETER_VALUE")
    assert "must be at most 1000000 bytes" in reply.json["message"]
    assert await editor.history(run_id, "k" * 200) == []


async def test_deny_beats_a_wildcard_grant_and_admins_bypass_everything(
    client: TestClient[Any, Any], admin: As, store: AuthStore
) -> None:
    open_id = await admin.create_experiment()
    closed_id = await admin.create_experiment()
    open_run, closed_run = await admin.new_run_id(open_id), await admin.new_run_id(closed_id)
    mallory = await user(client, store, "mallory")
    await store.grant_user("mallory", EXP, "*", Permission.EDIT, replace=False)
    await store.grant_user("mallory", EXP, closed_id, Permission.DENY, replace=False)

    (await mallory.log_metric(open_run, "m", 1.0)).ok()
    denied(await mallory.get("/runs/get", {"run_id": closed_run}))
    denied(await mallory.log_metric(closed_run, "m", 1.0))
    denied(await mallory.get("/experiments/get", {"experiment_id": closed_id}))
    # The same id spelt otherwise is the same experiment.
    denied(await mallory.get("/experiments/get", {"experiment_id": f"00{closed_id}"}))

    (await admin.log_metric(closed_run, "m", 2.0)).ok()
    (await admin.post("/runs/delete", {"run_id": closed_run})).ok()
    webhooks = await admin.request("GET", "/api/2.0/metricgate/webhooks", absolute=True)
    assert webhooks.status == 200, webhooks
    denied(await mallory.request("GET", "/api/2.0/metricgate/webhooks", absolute=True))


async def test_public_routes_answer_anonymously_and_unmatched_paths_need_a_login(
    api: Api, admin: As
) -> None:
    for path in ("/health", "/metrics", "/api/3.0/mlflow/server-info"):
        reply = await api.request("GET", path, absolute=True)
        assert reply.status == 200, reply
    reply = await api.request("GET", "/version", absolute=True)
    reply.error(401, "UNAUTHENTICATED")
    # No probing for routes: an unknown path is 401 first, 404 once logged in.
    (await api.request("GET", "/no/such/route", absolute=True)).error(401, "UNAUTHENTICATED")
    (await api.post("/runs/no-such-endpoint", {})).error(401, "UNAUTHENTICATED")
    reply = await admin.request("GET", "/no/such/route", absolute=True)
    reply.error(404, "ENDPOINT_NOT_FOUND")


async def test_a_missing_run_is_403_unless_the_level_is_held_anyway(
    client: TestClient[Any, Any], store: AuthStore
) -> None:
    reader = await user(client, store, "reader")
    missing = "0" * 32
    # READ through the default: the handler's 404 tells nothing a reader could not learn.
    (await reader.get("/runs/get", {"run_id": missing})).error(404, "RESOURCE_DOES_NOT_EXIST")
    # EDIT is held nowhere: 403 whether the run exists or not.
    denied(await reader.log_metric(missing, "m", 1.0))


async def test_delete_is_checked_on_both_the_body_and_the_query(
    client: TestClient[Any, Any], admin: As, store: AuthStore
) -> None:
    await admin.create_registered_model("theirs")
    await admin.create_registered_model("mine")
    bob = await user(client, store, "bob")
    await store.grant_user("bob", MODEL, "mine", Permission.MANAGE, replace=False)
    # Authorised on the query's model, acting on the body's: refused.
    reply = await bob.delete(
        "/registered-models/delete", {"name": "theirs"}, params={"name": "mine"}
    )
    denied(reply)
    (await admin.get("/registered-models/get", {"name": "theirs"})).ok()
    (await bob.delete("/registered-models/delete", {"name": "mine"})).ok()


async def test_the_creator_of_an_experiment_or_model_manages_it(
    client: TestClient[Any, Any], store: AuthStore
) -> None:
    carol = await user(client, store, "carol")  # READ by default, so EDIT must come from a grant
    experiment_id = await carol.create_experiment()
    run_id = (await carol.create_run(experiment_id))["info"]["run_id"]
    (await carol.log_metric(run_id, "m", 1.0)).ok()
    (await carol.post("/runs/delete", {"run_id": run_id})).ok()
    model = await carol.create_registered_model("carols-model")
    rows = await store.user_permission_rows("carol")
    held = {(row.resource_type, row.resource_pattern, row.permission) for row in rows}
    assert (EXP, experiment_id, Permission.MANAGE) in held
    assert (MODEL, "carols-model", Permission.MANAGE) in held
    (await carol.delete("/registered-models/delete", {"name": model["name"]})).ok()
    # The model's grants go with it (design-auth B2), the creator's MANAGE included.
    rows = await store.user_permission_rows("carol")
    held = {(row.resource_type, row.resource_pattern, row.permission) for row in rows}
    assert (MODEL, "carols-model", Permission.MANAGE) not in held


async def test_artifact_paths_are_checked_on_their_experiment(
    client: TestClient[Any, Any], admin: As, store: AuthStore
) -> None:
    experiment_id = await admin.create_experiment()
    run_id = await admin.new_run_id(experiment_id)
    dave = await user(client, store, "dave")
    await store.grant_user("dave", EXP, experiment_id, Permission.DENY, replace=False)
    base = "/api/2.0/mlflow-artifacts/artifacts"
    path = f"{experiment_id}/{run_id}/artifacts/a.txt"
    (await admin.request("PUT", f"{base}/{path}", data=b"hello", absolute=True)).ok()
    denied(await dave.request("GET", f"{base}/{path}", absolute=True))
    denied(await dave.request("GET", base, params={"path": path}, absolute=True))
    # Another experiment's id in front of a climb out of it: not attributable, admins only.
    denied(await dave.request("GET", base, params={"path": f"999/../{path}"}, absolute=True))
    reply = await admin.request("GET", f"{base}/{path}", absolute=True)
    assert reply.status == 200 and reply.raw == b"hello", reply


async def test_granting_needs_manage_and_another_users_record_needs_an_admin(
    client: TestClient[Any, Any], admin: As, store: AuthStore
) -> None:
    experiment_id = await admin.create_experiment()
    owner = await user(client, store, "owner")
    other = await user(client, store, "other")
    await store.grant_user("owner", EXP, experiment_id, Permission.MANAGE, replace=False)
    grant = {
        "username": "other",
        "resource_type": "experiment",
        "resource_id": experiment_id,
        "permission": "EDIT",
    }
    v3 = "/api/3.0/mlflow/users/permissions/grant"
    denied(await other.request("POST", v3, body=grant, absolute=True))
    reply = await owner.request("POST", v3, body=grant, absolute=True)
    assert reply.status == 200, reply
    # A '*' grant is for admins (and workspace admins) only, whatever one holds on ids.
    denied(await owner.request("POST", v3, body={**grant, "resource_id": "*"}, absolute=True))
    (await other.get("/users/get", {"username": "other"})).ok()
    denied(await other.get("/users/get", {"username": "owner"}))
    (await admin.get("/users/get", {"username": "owner"})).ok()


async def test_a_model_version_needs_read_on_the_run_it_is_made_from(
    client: TestClient[Any, Any], admin: As, store: AuthStore
) -> None:
    experiment_id = await admin.create_experiment()
    run_id = await admin.new_run_id(experiment_id)
    erin = await user(client, store, "erin")
    await store.grant_user("erin", EXP, experiment_id, Permission.DENY, replace=False)
    model = (await erin.create_registered_model("erins-model"))["name"]
    body = {"name": model, "source": f"runs:/{run_id}/model"}
    denied(await erin.post("/model-versions/create", body))
    denied(await erin.post("/model-versions/create", {**body, "source": "x", "run_id": run_id}))
    (await erin.post("/model-versions/create", {"name": model, "source": "s3://b/k"})).ok()


async def test_the_public_paths_are_configurable(
    db_url: str, redis_client_url: str, tmp_path: Path
) -> None:
    from aiohttp.test_utils import TestServer

    from metricgate.api.app import create_app

    settings = auth_settings(
        db_url, redis_client_url, tmp_path / "artifacts", METRICGATE_AUTH_PUBLIC_PATHS="/health"
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        api = Api(client)
        assert (await api.request("GET", "/health", absolute=True)).status == 200
        (await api.request("GET", "/metrics", absolute=True)).error(401, "UNAUTHENTICATED")
        admin = As(client, basic("admin", ADMIN_PASSWORD))
        assert (await admin.request("GET", "/metrics", absolute=True)).status == 200
