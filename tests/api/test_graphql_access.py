"""``/graphql`` with auth on: each root field needs READ, as stock's
GraphQLAuthorizationMiddleware decides (docs/design-auth.md A4): a field the caller may not read
is null, searches keep only what the caller may read, admins see everything. Auth off is
tests/api/test_graphql.py, unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from tests.api.auth_support import ADMIN_PASSWORD, PASSWORD, As, auth_settings, basic, store_user
from tests.api.conftest import Api

from metricgate.api.keys import SERVICE
from metricgate.config import Settings
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.stores.base import AuthStore

EXP = ResourceType.EXPERIMENT
MODEL = ResourceType.REGISTERED_MODEL
MISSING_RUN = "0" * 32

GET_EXPERIMENT = """query($id: String) {
  mlflowGetExperiment(input: {experimentId: $id}) { experiment { experimentId } apiError { code } }
}"""
GET_RUN = """query($id: String) {
  mlflowGetRun(input: {runId: $id}) {
    run { info { runId } experiment { experimentId } modelVersions { name } }
    apiError { code }
  }
}"""
LIST_ARTIFACTS = """query($id: String) {
  mlflowListArtifacts(input: {runId: $id}) { rootUri files { path } apiError { code } }
}"""
BULK_INTERVAL = """query($ids: [String]) {
  mlflowGetMetricHistoryBulkInterval(input: {runIds: $ids, metricKey: "loss"}) {
    metrics { runId value } apiError { code }
  }
}"""
SEARCH_RUNS = """query($ids: [String]) {
  mlflowSearchRuns(input: {experimentIds: $ids}) {
    runs { info { runId } modelVersions { name } } apiError { code }
  }
}"""
SEARCH_RUNS_MUTATION = """mutation($ids: [String]) {
  mlflowSearchRuns(input: {experimentIds: $ids}) { runs { info { runId } } apiError { code } }
}"""
SEARCH_DATASETS = """mutation($ids: [String]) {
  mlflowSearchDatasets(input: {experimentIds: $ids}) {
    datasetSummaries { experimentId name } apiError { code }
  }
}"""
SEARCH_VERSIONS = """query {
  mlflowSearchModelVersions(input: {filter: "name LIKE 'gqa-%'"}) {
    modelVersions { name } apiError { code }
  }
}"""


@pytest.fixture
def default_permission() -> str:
    return "READ"


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


class Caller:
    """GraphQL requests with one user's credentials."""

    def __init__(self, client: TestClient[Any, Any], headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        """The one root field's value (``data`` has no other key)."""
        body = orjson.dumps({"query": query, "variables": variables})
        headers = {**self.headers, "Content-Type": "application/json"}
        async with self.client.post("/graphql", data=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            answer = orjson.loads(await resp.read())
        assert answer["errors"] is None, answer
        (value,) = answer["data"].values()
        assert value is None or value.get("apiError") is None, value
        return value  # type: ignore[no-any-return]  # JSON


async def caller(client: TestClient[Any, Any], store: AuthStore, name: str) -> Caller:
    await store_user(store, name)
    return Caller(client, basic(name, PASSWORD))


@dataclass
class World:
    open_id: str  # experiment
    closed_id: str
    open_run: str
    closed_run: str


async def populate(api: Api) -> World:
    """Two experiments with a run each (a loss metric, a dataset); registered models gqa-open
    and gqa-closed, each with a version of the open run."""
    ids = [await api.create_experiment(name) for name in ("gqa-open", "gqa-closed")]
    runs = [await api.new_run_id(i) for i in ids]
    for run_id in runs:
        (await api.log_metric(run_id, "loss", 0.5)).ok()
        dataset = {"name": f"ds-{run_id}", "digest": "d", "source_type": "local", "source": "/x"}
        (
            await api.post(
                "/runs/log-inputs", {"run_id": run_id, "datasets": [{"dataset": dataset}]}
            )
        ).ok()
    for name in ("gqa-open", "gqa-closed"):
        await api.create_registered_model(name)
        await api.create_model_version(name, f"runs:/{runs[0]}/model", run_id=runs[0])
    return World(ids[0], ids[1], runs[0], runs[1])


@pytest.fixture
async def world(client: TestClient[Any, Any]) -> World:
    return await populate(As(client, basic("admin", ADMIN_PASSWORD)))


@pytest.fixture
def admin(client: TestClient[Any, Any]) -> Caller:
    return Caller(client, basic("admin", ADMIN_PASSWORD))


async def sees_everything(who: Caller, world: World) -> None:
    for experiment_id in (world.open_id, world.closed_id):
        found = await who.data(GET_EXPERIMENT, id=experiment_id)
        assert found["experiment"]["experimentId"] == experiment_id
    for run_id in (world.open_run, world.closed_run):
        assert (await who.data(GET_RUN, id=run_id))["run"]["info"]["runId"] == run_id
        assert (await who.data(LIST_ARTIFACTS, id=run_id))["rootUri"]
    both = [world.open_run, world.closed_run]
    metrics = (await who.data(BULK_INTERVAL, ids=both))["metrics"]
    assert {m["runId"] for m in metrics} == set(both)
    runs = (await who.data(SEARCH_RUNS, ids=[world.open_id, world.closed_id]))["runs"]
    assert {r["info"]["runId"] for r in runs} == set(both)
    summaries = await who.data(SEARCH_DATASETS, ids=[world.open_id, world.closed_id])
    assert {s["experimentId"] for s in summaries["datasetSummaries"]} == {
        world.open_id,
        world.closed_id,
    }
    versions = (await who.data(SEARCH_VERSIONS))["modelVersions"]
    assert {v["name"] for v in versions} == {"gqa-open", "gqa-closed"}
    nested = (await who.data(GET_RUN, id=world.open_run))["run"]["modelVersions"]
    assert {v["name"] for v in nested} == {"gqa-open", "gqa-closed"}


async def test_admin_and_a_reader_by_default_see_everything(
    client: TestClient[Any, Any], store: AuthStore, admin: Caller, world: World
) -> None:
    await sees_everything(admin, world)
    await sees_everything(await caller(client, store, "reader"), world)


async def test_under_a_deny_each_field_is_null_and_searches_keep_what_is_readable(
    client: TestClient[Any, Any], store: AuthStore, admin: Caller, world: World
) -> None:
    mallory = await caller(client, store, "mallory")
    await store.grant_user("mallory", EXP, world.closed_id, Permission.DENY, replace=False)
    await store.grant_user("mallory", MODEL, "gqa-closed", Permission.DENY, replace=False)

    assert await mallory.data(GET_EXPERIMENT, id=world.closed_id) is None
    assert await mallory.data(GET_RUN, id=world.closed_run) is None
    assert await mallory.data(LIST_ARTIFACTS, id=world.closed_run) is None
    # One unreadable run nulls the whole chart read, as stock (REST answers 403).
    assert await mallory.data(BULK_INTERVAL, ids=[world.open_run, world.closed_run]) is None
    assert await mallory.data(SEARCH_RUNS, ids=[world.closed_id]) is None
    assert await mallory.data(SEARCH_RUNS_MUTATION, ids=[world.closed_id]) is None
    assert await mallory.data(SEARCH_DATASETS, ids=[world.closed_id]) is None

    found = await mallory.data(GET_EXPERIMENT, id=world.open_id)
    assert found["experiment"]["experimentId"] == world.open_id
    run = (await mallory.data(GET_RUN, id=world.open_run))["run"]
    assert run["experiment"]["experimentId"] == world.open_id
    # The open run's versions of a model mallory may not read are left out.
    assert [v["name"] for v in run["modelVersions"]] == ["gqa-open"]
    metrics = (await mallory.data(BULK_INTERVAL, ids=[world.open_run]))["metrics"]
    assert [m["runId"] for m in metrics] == [world.open_run]
    both = [world.open_id, world.closed_id]
    runs = (await mallory.data(SEARCH_RUNS, ids=both))["runs"]
    assert [(r["info"]["runId"], [v["name"] for v in r["modelVersions"]]) for r in runs] == [
        (world.open_run, ["gqa-open"])
    ]
    runs = (await mallory.data(SEARCH_RUNS_MUTATION, ids=both))["runs"]
    assert [r["info"]["runId"] for r in runs] == [world.open_run]
    summaries = (await mallory.data(SEARCH_DATASETS, ids=both))["datasetSummaries"]
    assert [s["experimentId"] for s in summaries] == [world.open_id]
    versions = (await mallory.data(SEARCH_VERSIONS))["modelVersions"]
    assert [v["name"] for v in versions] == ["gqa-open"]

    # The admin is not narrowed by anyone's grants.
    await sees_everything(admin, world)


@pytest.mark.parametrize("default_permission", ["NO_PERMISSIONS"])
async def test_without_read_everything_is_null_until_granted(
    client: TestClient[Any, Any], store: AuthStore, admin: Caller, world: World
) -> None:
    stranger = await caller(client, store, "stranger")
    both = [world.open_id, world.closed_id]
    for run_id in (world.open_run, world.closed_run):
        assert await stranger.data(GET_RUN, id=run_id) is None
        assert await stranger.data(LIST_ARTIFACTS, id=run_id) is None
    assert await stranger.data(GET_EXPERIMENT, id=world.open_id) is None
    assert await stranger.data(BULK_INTERVAL, ids=[world.open_run]) is None
    assert await stranger.data(SEARCH_RUNS, ids=both) is None
    assert await stranger.data(SEARCH_DATASETS, ids=both) is None
    assert (await stranger.data(SEARCH_VERSIONS))["modelVersions"] == []
    # A missing run is null too: nobody learns what exists (REST: 403).
    assert await stranger.data(GET_RUN, id=MISSING_RUN) is None

    await store.grant_user("stranger", EXP, world.open_id, Permission.READ, replace=False)
    await store.grant_user("stranger", MODEL, "gqa-closed", Permission.READ, replace=False)
    run = (await stranger.data(GET_RUN, id=world.open_run))["run"]
    assert [v["name"] for v in run["modelVersions"]] == ["gqa-closed"]
    runs = (await stranger.data(SEARCH_RUNS, ids=both))["runs"]
    assert [r["info"]["runId"] for r in runs] == [world.open_run]
    assert await stranger.data(GET_RUN, id=world.closed_run) is None
    versions = (await stranger.data(SEARCH_VERSIONS))["modelVersions"]
    assert [v["name"] for v in versions] == ["gqa-closed"]

    await sees_everything(admin, world)


async def test_a_missing_run_is_an_api_error_when_read_is_held_anyway(
    client: TestClient[Any, Any], store: AuthStore, world: World
) -> None:
    reader = await caller(client, store, "reader")  # READ through the default, as REST's 404
    body = orjson.dumps({"query": GET_RUN, "variables": {"id": MISSING_RUN}})
    headers = {**reader.headers, "Content-Type": "application/json"}
    async with client.post("/graphql", data=body, headers=headers) as resp:
        answer = orjson.loads(await resp.read())
    assert answer["data"]["mlflowGetRun"] == {
        "run": None,
        "apiError": {"code": "RESOURCE_DOES_NOT_EXIST"},
    }


async def test_graphql_needs_a_login(client: TestClient[Any, Any], world: World) -> None:
    body = orjson.dumps({"query": GET_EXPERIMENT, "variables": {"id": world.open_id}})
    async with client.post(
        "/graphql", data=body, headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 401
