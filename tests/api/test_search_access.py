"""The search endpoints with auth on (docs/design-auth.md B5): each returns only what the caller
may READ, filtered in the SQL, so pages stay full and page tokens keep working; an admin sees
everything; unreadable experiments asked for in runs/search are dropped silently, as stock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.api.auth_support import ADMIN_PASSWORD, As, auth_settings, basic, user
from tests.api.conftest import AJAX, Reply

from metricgate.api.keys import SERVICE
from metricgate.config import Settings
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.stores.base import AuthStore

EXP = ResourceType.EXPERIMENT
MODEL = ResourceType.REGISTERED_MODEL
COUNT = 5  # experiments and registered models
READABLE = (0, 2, 3)  # the reader's indexes of both
DENIED = (1, 4)


@pytest.fixture
def default_permission() -> str:
    return "NO_PERMISSIONS"


@pytest.fixture
def settings(
    db_url: str, redis_client_url: str, tmp_path: Path, default_permission: str
) -> Settings:
    return auth_settings(
        db_url,
        redis_client_url,
        tmp_path / "artifacts",
        METRICGATE_AUTH_DEFAULT_PERMISSION=default_permission,
    )


@pytest.fixture
def store(client: TestClient[Any, Any]) -> AuthStore:
    auth = client.app[SERVICE].auth
    assert auth is not None
    return auth


@pytest.fixture
def admin(client: TestClient[Any, Any]) -> As:
    return As(client, basic("admin", ADMIN_PASSWORD))


@dataclass
class World:
    experiments: list[str]
    runs: list[list[str]]  # two per experiment
    logged_models: list[str]  # one per experiment
    models: list[str]  # registered models, each with two versions


async def populate(admin: As) -> World:
    experiments = [await admin.create_experiment(f"sa-exp-{i}") for i in range(COUNT)]
    runs = [[await admin.new_run_id(e) for _ in range(2)] for e in experiments]
    logged = []
    for e in experiments:
        reply = (await admin.post("/logged-models", {"experiment_id": e, "name": "lm"})).ok()
        logged.append(reply["model"]["info"]["model_id"])
    models = [f"sa-model-{i}" for i in range(COUNT)]
    for i, name in enumerate(models):
        await admin.create_registered_model(name)
        for run_id in runs[i]:
            await admin.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    return World(experiments, runs, logged, models)


@pytest.fixture
async def world(admin: As) -> World:
    return await populate(admin)


# ---------------------------------------------------------------- one search, every page


async def _pages(
    call: Callable[[str | None], Any], items: str, key: Callable[[dict[str, Any]], Any], size: int
) -> list[Any]:
    """Every page of one search (max_results ``size``): all but the last are full."""
    found: list[Any] = []
    token: str | None = None
    pages = 0
    while True:
        reply: Reply = await call(token)
        body = reply.ok()
        page = body.get(items, [])
        token = body.get("next_page_token") or None
        pages += 1
        if token:
            assert len(page) == size, (items, pages, page)
        found.extend(key(item) for item in page)
        if not token:
            assert len(found) == len(set(found)), found
            return found
        assert pages < 100


async def searches(who: As, world: World, size: int = 2) -> dict[str, set[Any]]:
    """What each search endpoint returns to ``who`` over all its pages."""
    all_experiments = world.experiments

    async def experiments(token: str | None) -> Reply:
        body: dict[str, Any] = {"max_results": size, "filter": "name LIKE 'sa-exp-%'"}
        return await who.post("/experiments/search", {**body, "page_token": token})

    async def runs(token: str | None) -> Reply:
        body = {"experiment_ids": all_experiments, "max_results": size, "page_token": token}
        return await who.post("/runs/search", body)

    async def logged_models(token: str | None) -> Reply:
        body = {"experiment_ids": all_experiments, "max_results": size, "page_token": token}
        return await who.post("/logged-models/search", body)

    async def models(token: str | None) -> Reply:
        params = {"max_results": str(size), "filter": "name LIKE 'sa-model-%'"}
        return await who.get("/registered-models/search", {**params, "page_token": token or ""})

    async def versions(token: str | None) -> Reply:
        params = {"max_results": str(size), "filter": "name LIKE 'sa-model-%'"}
        return await who.get("/model-versions/search", {**params, "page_token": token or ""})

    return {
        "experiments": set(
            await _pages(experiments, "experiments", lambda e: e["experiment_id"], size)
        ),
        "runs": set(await _pages(runs, "runs", lambda r: r["info"]["run_id"], size)),
        "logged_models": set(
            await _pages(logged_models, "models", lambda m: m["info"]["model_id"], size)
        ),
        "models": set(await _pages(models, "registered_models", lambda m: m["name"], size)),
        "versions": set(
            await _pages(versions, "model_versions", lambda v: (v["name"], v["version"]), size)
        ),
    }


def expected(world: World, indexes: tuple[int, ...]) -> dict[str, set[Any]]:
    return {
        "experiments": {world.experiments[i] for i in indexes},
        "runs": {r for i in indexes for r in world.runs[i]},
        "logged_models": {world.logged_models[i] for i in indexes},
        "models": {world.models[i] for i in indexes},
        "versions": {(world.models[i], v) for i in indexes for v in ("1", "2")},
    }


# ---------------------------------------------------------------- callers


async def test_a_reader_of_some_gets_full_pages_of_exactly_those(
    client: TestClient[Any, Any], store: AuthStore, world: World
) -> None:
    reader = await user(client, store, "reader")
    assert await searches(reader, world) == expected(world, ())
    for i in READABLE:
        await store.grant_user("reader", EXP, world.experiments[i], Permission.READ, replace=False)
        await store.grant_user("reader", MODEL, world.models[i], Permission.READ, replace=False)
    # Written past the API: tell the app as the grant routes do after their commit (else the
    # epoch poll brings them within a second).
    authenticator = client.app[SERVICE].authenticator
    assert authenticator is not None
    await authenticator.changed(credentials=False)
    assert await searches(reader, world) == expected(world, READABLE)
    assert await searches(reader, world, size=1) == expected(world, READABLE)
    # The ajax-api paths are the same handlers.
    reader.prefix = AJAX
    assert await searches(reader, world, size=3) == expected(world, READABLE)


@pytest.mark.parametrize("default_permission", ["READ"])
async def test_a_denied_caller_gets_everything_else(
    client: TestClient[Any, Any], store: AuthStore, world: World
) -> None:
    mallory = await user(client, store, "mallory")
    for i in DENIED:
        await store.grant_user("mallory", EXP, world.experiments[i], Permission.DENY, replace=False)
        await store.grant_user("mallory", MODEL, world.models[i], Permission.DENY, replace=False)
    others = tuple(i for i in range(COUNT) if i not in DENIED)
    assert await searches(mallory, world) == expected(world, others)
    # Asking only for denied experiments: an empty page, not an error (stock drops them).
    denied_ids = [world.experiments[i] for i in DENIED]
    for path, items in (("/runs/search", "runs"), ("/logged-models/search", "models")):
        body = (await mallory.post(path, {"experiment_ids": denied_ids})).ok()
        assert body.get(items, []) == [] and not body.get("next_page_token")


@pytest.mark.parametrize("default_permission", ["READ", "NO_PERMISSIONS"])
async def test_an_admin_sees_everything(admin: As, world: World) -> None:
    assert await searches(admin, world) == expected(world, tuple(range(COUNT)))


async def test_a_workspace_manager_sees_everything(
    client: TestClient[Any, Any], store: AuthStore, world: World
) -> None:
    boss = await user(client, store, "boss")
    await store.grant_user("boss", ResourceType.WORKSPACE, "*", Permission.MANAGE, replace=False)
    assert await searches(boss, world) == expected(world, tuple(range(COUNT)))


async def test_a_creator_finds_what_it_just_made(
    client: TestClient[Any, Any], store: AuthStore, world: World
) -> None:
    maker = await user(client, store, "maker")
    # Its (empty) grants are cached by this search, before it creates anything.
    assert (await maker.post("/experiments/search", {})).ok().get("experiments", []) == []
    experiment_id = await maker.create_experiment("sa-mine")
    run_id = await maker.new_run_id(experiment_id)
    await maker.create_registered_model("sa-model-mine")
    found = (await maker.post("/experiments/search", {})).ok()["experiments"]
    assert [e["experiment_id"] for e in found] == [experiment_id]
    runs = (
        await maker.post("/runs/search", {"experiment_ids": [*world.experiments, experiment_id]})
    ).ok()
    assert [r["info"]["run_id"] for r in runs["runs"]] == [run_id]
    models = (await maker.get("/registered-models/search")).ok()["registered_models"]
    assert [m["name"] for m in models] == ["sa-model-mine"]


async def test_a_bad_filter_is_still_an_error_for_a_caller_who_reads_nothing(
    client: TestClient[Any, Any], store: AuthStore, world: World
) -> None:
    nobody = await user(client, store, "nobody")
    reply = await nobody.post("/experiments/search", {"filter": "nonsense = = 1"})
    reply.error(400, "INVALID_PARAMETER_VALUE")
    reply = await nobody.get("/model-versions/search", {"filter": "bogus.x = 1"})
    reply.error(400, "INVALID_PARAMETER_VALUE")


async def test_a_creator_with_other_grants_finds_its_new_experiment(
    client: TestClient[Any, Any], store: AuthStore, world: World
) -> None:
    maker = await user(client, store, "maker2")
    await store.grant_user("maker2", EXP, world.experiments[0], Permission.READ, replace=False)
    found = (await maker.post("/experiments/search", {})).ok()["experiments"]
    assert len(found) == 1
    # Its cached grants predate the creator's MANAGE, which moves no epoch (nor would it reach
    # another worker's cache): the search reads them afresh where only grants show rows.
    experiment_id = await maker.create_experiment("sa-mine2")
    found = (await maker.post("/experiments/search", {})).ok()["experiments"]
    assert {e["experiment_id"] for e in found} == {experiment_id, world.experiments[0]}
