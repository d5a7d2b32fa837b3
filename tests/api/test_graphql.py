"""POST /graphql through the app, against data logged first through the REST API.

The operations come from the web UI's bundle shipped in the installed mlflow wheel (the same
documents the browser sends); ``bundle_operations`` extracts every one of them, so an mlflow
upgrade that adds an operation the schema cannot answer fails here.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from inspect import isawaitable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from graphql import (
    ExecutionContext,
    ExecutionResult,
    OperationDefinitionNode,
    execute,
    get_named_type,
    parse,
    validate,
)
from tests.api.conftest import Api, now_ms

from metricgate.api.graphql.executor import execution_context_class
from metricgate.api.graphql.handler import SCHEMA
from metricgate.api.graphql.limits import MAX_DEPTH
from metricgate.api.graphql.schema import Schema, load_sdl

# ---------------------------------------------------------------- the UI bundle's operations


def bundle_js_files() -> list[Path]:
    spec = importlib.util.find_spec("mlflow")
    assert spec is not None and spec.origin is not None, (
        "the mlflow package (test extra) is not installed"
    )
    files = sorted(
        (Path(spec.origin).parent / "server" / "js" / "build" / "static" / "js").glob("*.js")
    )
    assert files, "the installed mlflow wheel ships no UI bundle"
    return files


# A gql`...` template literal holding an operation (the tag's minified name changes per build).
_TEMPLATE = re.compile(r"`(\s*(?:query|mutation|subscription)\s[^`]*)`")
# Every place an operation is named, however it is written: catches one the extractor misses.
_NAMED_OPERATION = re.compile(r"\b(?:query|mutation|subscription)\s+([A-Z]\w*)\s*[({@]")


def bundle_operations() -> dict[str, str]:
    """Operation name -> document, for every GraphQL operation in the installed UI bundle."""
    operations: dict[str, str] = {}
    named: set[str] = set()
    for path in bundle_js_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        named.update(_NAMED_OPERATION.findall(text))
        for match in _TEMPLATE.finditer(text):
            document = match.group(1)
            assert "${" not in document, (
                f"{path.name}: an operation interpolates a fragment; extend the extractor"
            )
            for definition in parse(document).definitions:
                assert (
                    isinstance(definition, OperationDefinitionNode) and definition.name is not None
                )
                operations[definition.name.value] = document
    assert named == set(operations), (
        f"operations named in the bundle but not extracted: {named - set(operations)}"
    )
    return operations


# ---------------------------------------------------------------- helpers


@dataclass
class Gql:
    status: int
    body: Any

    @property
    def data(self) -> Any:
        assert self.status == 200, self
        assert self.body["errors"] is None, self
        return self.body["data"]


async def gql(
    client: TestClient[Any, Any],
    query: str,
    variables: Any = None,
    operation_name: str | None = None,
    *,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> Gql:
    data = (
        raw
        if raw is not None
        else orjson.dumps({"query": query, "variables": variables, "operationName": operation_name})
    )
    async with client.post("/graphql", data=data, headers={"Content-Type": content_type}) as resp:
        return Gql(resp.status, orjson.loads(await resp.read()))


@dataclass
class World:
    experiment_id: str
    run_id: str  # finished; params, tags, metrics (a NaN, an int64 step), a dataset, a registered version
    other_run_id: str  # running; one metric, no version
    model_id: str


BIG_STEP = 2**40 + 3  # beyond 2^53 would lose precision in JavaScript; strings keep every digit
BIG_TIMESTAMP = 2**41 + 5


async def populate(api: Api) -> World:
    exp = await api.create_experiment("graphql-exp", tags=[{"key": "team", "value": "vision"}])
    run = await api.create_run(exp, run_name="first", tags=[{"key": "t1", "value": "v1"}])
    run_id = run["info"]["run_id"]
    metrics = [
        {"key": "loss", "value": 1.0 / (s + 1), "timestamp": 1000 + s, "step": s} for s in range(5)
    ]
    metrics += [
        {"key": "nanm", "value": "NaN", "timestamp": 1000, "step": 0},
        {"key": "big", "value": 1.5, "timestamp": BIG_TIMESTAMP, "step": BIG_STEP},
        {"key": "inf", "value": "Infinity", "timestamp": 1000, "step": 0},
    ]
    (await api.log_batch(run_id, metrics, params=[{"key": "lr", "value": "0.1"}])).ok()
    dataset = {
        "name": "iris",
        "digest": "abc123",
        "source_type": "local",
        "source": "/data/iris.csv",
    }
    (
        await api.post(
            "/runs/log-inputs",
            {
                "run_id": run_id,
                "datasets": [
                    {"dataset": dataset, "tags": [{"key": "mlflow.data.context", "value": "train"}]}
                ],
            },
        )
    ).ok()
    model = (
        await api.post(
            "/logged-models", {"experiment_id": exp, "name": "model", "source_run_id": run_id}
        )
    ).ok()
    model_id = model["model"]["info"]["model_id"]
    (
        await api.post(
            "/runs/outputs", {"run_id": run_id, "models": [{"model_id": model_id, "step": 3}]}
        )
    ).ok()
    (
        await api.post(
            "/runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": now_ms()}
        )
    ).ok()
    (await api.post("/registered-models/create", {"name": "gqm"})).ok()
    for _ in range(2):
        (
            await api.post(
                "/model-versions/create",
                {"name": "gqm", "source": f"runs:/{run_id}/model", "run_id": run_id},
            )
        ).ok()
    (await api.post("/registered-models/create", {"name": "other"})).ok()
    (await api.post("/model-versions/create", {"name": "other", "source": "s3://b/x"})).ok()
    other = await api.create_run(exp, run_name="second")
    other_id = other["info"]["run_id"]
    (await api.log_metric(other_id, "loss", 0.3, timestamp=5, step=0)).ok()
    return World(exp, run_id, other_id, model_id)


@pytest.fixture
async def world(api: Api) -> World:
    return await populate(api)


def by_key(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in items}


# ---------------------------------------------------------------- the bundle


def test_bundle_operations_validate_against_the_schema() -> None:
    operations = bundle_operations()
    # The ones the classic pages depend on (issue 10); more may come with an mlflow upgrade.
    assert {
        "MlflowGetExperimentQuery",
        "GetRun",
        "SearchRuns",
        "GetMetricHistoryBulkInterval",
    } <= set(operations)
    for name, document in operations.items():
        errors = validate(SCHEMA.graphql, parse(document))
        assert not errors, (name, [e.message for e in errors])


def sample_variables(document: str, world: World) -> dict[str, Any]:
    """Variables for an operation, by the input type each variable declares."""
    inputs = {
        "MlflowGetExperimentInput": {"experimentId": world.experiment_id},
        "MlflowGetRunInput": {"runId": world.run_id},
        "MlflowSearchRunsInput": {"experimentIds": [world.experiment_id]},
        "MlflowGetMetricHistoryBulkIntervalInput": {
            "runIds": [world.run_id, world.other_run_id],
            "metricKey": "loss",
        },
        "MlflowListArtifactsInput": {"runId": world.run_id},
        "MlflowSearchModelVersionsInput": {"filter": f"run_id = '{world.run_id}'"},
        "MlflowSearchDatasetsInput": {"experimentIds": [world.experiment_id]},
    }
    variables = {}
    for definition in parse(document).definitions:
        assert isinstance(definition, OperationDefinitionNode)
        for var in definition.variable_definitions:
            type_name = get_named_type(SCHEMA.graphql.get_type(_named(var.type)))  # type: ignore[arg-type]
            assert type_name is not None and type_name.name in inputs, (
                f"no sample input for {var.type}: add one"
            )
            variables[var.variable.name.value] = inputs[type_name.name]
    return variables


def _named(type_node: Any) -> str:
    while not hasattr(type_node, "name"):
        type_node = type_node.type
    return str(type_node.name.value)


def _non_empty(value: Any) -> bool:
    return value not in (None, [], {}, "")


async def test_every_bundle_operation_answers_with_real_data(
    client: TestClient[Any, Any], world: World
) -> None:
    for name, document in bundle_operations().items():
        reply = await gql(client, document, sample_variables(document, world), name)
        data = reply.data  # HTTP 200, no GraphQL error
        for field, payload in data.items():
            assert payload["apiError"] is None, (name, field, payload["apiError"])
            assert any(
                _non_empty(v) for k, v in payload.items() if k not in ("apiError", "__typename")
            ), (name, payload)


# ---------------------------------------------------------------- operations


async def test_get_experiment(client: TestClient[Any, Any], world: World) -> None:
    query = bundle_operations()["MlflowGetExperimentQuery"]
    data = (await gql(client, query, {"input": {"experimentId": world.experiment_id}})).data
    experiment = data["mlflowGetExperiment"]["experiment"]
    assert experiment["experimentId"] == world.experiment_id
    assert experiment["name"] == "graphql-exp"
    assert experiment["lifecycleStage"] == "active"
    assert experiment["artifactLocation"] == f"mlflow-artifacts:/{world.experiment_id}"
    assert experiment["tags"] == [{"key": "team", "value": "vision"}]
    assert experiment["effectiveTraceArchivalRetention"] == ""  # proto default, as stock
    for field in ("creationTime", "lastUpdateTime"):  # int64 as a decimal string
        assert isinstance(experiment[field], str) and int(experiment[field]) > 1_600_000_000_000
    typed = (
        await gql(
            client,
            'query { mlflowGetExperiment(input: {experimentId: "'
            + world.experiment_id
            + '"}) { __typename apiError { code } experiment { __typename tags { __typename } } } }',
        )
    ).data["mlflowGetExperiment"]
    assert typed == {
        "__typename": "MlflowGetExperimentResponse",
        "apiError": None,
        "experiment": {
            "__typename": "MlflowExperiment",
            "tags": [{"__typename": "MlflowExperimentTag"}],
        },
    }


async def test_get_run(client: TestClient[Any, Any], world: World) -> None:
    query = bundle_operations()["GetRun"]
    data = (await gql(client, query, {"data": {"runId": world.run_id}}, "GetRun")).data
    response = data["mlflowGetRun"]
    assert response["apiError"] is None
    run = response["run"]
    info = run["info"]
    assert info["runUuid"] == world.run_id and info["runName"] == "first"
    assert info["status"] == "FINISHED" and info["lifecycleStage"] == "active"
    assert info["experimentId"] == world.experiment_id and info["userId"] == "tester"
    assert (
        info["artifactUri"] == f"mlflow-artifacts:/{world.experiment_id}/{world.run_id}/artifacts"
    )
    assert int(info["endTime"]) >= int(info["startTime"]) > 0
    metrics = by_key(run["data"]["metrics"])
    assert metrics["loss"] == {"key": "loss", "value": 0.2, "step": "4", "timestamp": "1004"}
    assert metrics["nanm"]["value"] is None  # NaN -> null, no error
    assert metrics["big"] == {
        "key": "big",
        "value": 1.5,
        "step": str(BIG_STEP),
        "timestamp": str(BIG_TIMESTAMP),
    }
    # Stock's SQL store clamps infinity to the largest double when storing; GraphQL has no inf.
    assert metrics["inf"]["value"] == 1.7976931348623157e308
    assert run["data"]["params"] == [{"key": "lr", "value": "0.1"}]
    tags = by_key(run["data"]["tags"])
    assert tags["t1"]["value"] == "v1" and tags["mlflow.runName"]["value"] == "first"
    assert (
        run["experiment"]["experimentId"] == world.experiment_id
        and run["experiment"]["name"] == "graphql-exp"
    )
    # Only the versions registered from this run, newest first (the registry search's order).
    assert run["modelVersions"] == [
        {"status": "READY", "version": v, "name": "gqm", "source": f"runs:/{world.run_id}/model"}
        for v in ("2", "1")
    ]
    [dataset_input] = run["inputs"]["datasetInputs"]
    assert (
        dataset_input["dataset"]["name"] == "iris"
        and dataset_input["dataset"]["digest"] == "abc123"
    )
    assert (
        dataset_input["dataset"]["sourceType"] == "local"
        and dataset_input["dataset"]["source"] == "/data/iris.csv"
    )
    assert dataset_input["dataset"]["schema"] == "" and dataset_input["dataset"]["profile"] == ""
    assert dataset_input["tags"] == [{"key": "mlflow.data.context", "value": "train"}]
    assert run["outputs"]["modelOutputs"] == [{"modelId": world.model_id, "step": "3"}]

    typed = (
        await gql(
            client,
            """query($id: String) { mlflowGetRun(input: {runUuid: $id}) { __typename run {
        __typename info { __typename } data { __typename metrics { __typename } params { __typename }
        tags { __typename } } inputs { __typename } outputs { __typename } experiment { __typename }
        modelVersions { __typename } } } }""",
            {"id": world.run_id},
        )
    ).data["mlflowGetRun"]
    assert typed["__typename"] == "MlflowGetRunResponse"
    run = typed["run"]
    assert run["__typename"] == "MlflowRunExtension"
    assert {m["__typename"] for m in run["data"]["metrics"]} == {"MlflowMetricExtension"}
    assert [run[k]["__typename"] for k in ("info", "data", "inputs", "outputs", "experiment")] == [
        "MlflowRunInfo",
        "MlflowRunData",
        "MlflowRunInputs",
        "MlflowRunOutputs",
        "MlflowExperiment",
    ]
    assert {p["__typename"] for p in run["data"]["params"]} == {"MlflowParam"}
    assert {t["__typename"] for t in run["data"]["tags"]} == {"MlflowRunTag"}
    assert {v["__typename"] for v in run["modelVersions"]} == {"MlflowModelVersion"}


async def test_running_run_reads_protobuf_defaults(
    client: TestClient[Any, Any], world: World
) -> None:
    query = (
        "query($id: String) { mlflowGetRun(input: {runId: $id}) { run { info { status endTime } "
        "inputs { datasetInputs { tags { key } } modelInputs { modelId } } outputs { modelOutputs { modelId } } "
        "modelVersions { name } } } }"
    )
    run = (await gql(client, query, {"id": world.other_run_id})).data["mlflowGetRun"]["run"]
    # Stock resolves on protobuf messages: an unset end time is "0", empty lists are [].
    assert run == {
        "info": {"status": "RUNNING", "endTime": "0"},
        "inputs": {"datasetInputs": [], "modelInputs": []},
        "outputs": {"modelOutputs": []},
        "modelVersions": [],
    }


async def test_get_run_sees_metrics_acknowledged_just_before(
    client: TestClient[Any, Any], api: Api
) -> None:
    run_id = await api.new_run_id()
    query = "query($id: String) { mlflowGetRun(input: {runId: $id}) { run { data { metrics { key value step } } } } }"
    for step in range(3):
        (await api.log_metric(run_id, "acc", step / 10, step=step)).ok()
        metrics = (await gql(client, query, {"id": run_id})).data["mlflowGetRun"]["run"]["data"][
            "metrics"
        ]
        assert metrics == [{"key": "acc", "value": step / 10, "step": str(step)}]


async def test_search_runs(client: TestClient[Any, Any], world: World) -> None:
    query = bundle_operations()["SearchRuns"]
    data = (await gql(client, query, {"data": {"experimentIds": [world.experiment_id]}})).data
    runs = data["mlflowSearchRuns"]["runs"]
    # Default order: newest first. Each run has its own experiment and versions.
    assert [r["info"]["runUuid"] for r in runs] == [world.other_run_id, world.run_id]
    assert [len(r["modelVersions"]) for r in runs] == [0, 2]
    assert {r["modelVersions"][0]["creationTimestamp"].isdigit() for r in runs[1:]} == {True}
    assert [r["experiment"]["name"] for r in runs] == ["graphql-exp", "graphql-exp"]
    assert by_key(runs[1]["data"]["metrics"])["nanm"]["value"] is None

    filtered = (
        await gql(
            client,
            query,
            {"data": {"experimentIds": [world.experiment_id], "filter": "metrics.loss > 0.25"}},
        )
    ).data
    assert [r["info"]["runUuid"] for r in filtered["mlflowSearchRuns"]["runs"]] == [
        world.other_run_id
    ]

    # Paging, the view type enum, and the same field under Mutation (stock has it in both).
    paged = """mutation($ids: [String]) { mlflowSearchRuns(input: {experimentIds: $ids, maxResults: 1,
               orderBy: ["attributes.run_name ASC"], runViewType: ACTIVE_ONLY}) {
               __typename nextPageToken runs { info { runName } } } }"""
    first = (await gql(client, paged, {"ids": [world.experiment_id]})).data["mlflowSearchRuns"]
    assert first["__typename"] == "MlflowSearchRunsResponse"
    assert [r["info"]["runName"] for r in first["runs"]] == ["first"] and first["nextPageToken"]
    last = (
        await gql(
            client, paged.replace("maxResults: 1", "maxResults: 5"), {"ids": [world.experiment_id]}
        )
    ).data
    assert last["mlflowSearchRuns"]["nextPageToken"] == ""  # proto default on the last page


async def test_search_runs_batches_versions_per_run(client: TestClient[Any, Any], api: Api) -> None:
    """A page of runs gets each run's own versions (one registry search for the page)."""
    exp = await api.create_experiment()
    (await api.post("/registered-models/create", {"name": "many"})).ok()
    expected = {}
    for i in range(12):
        run_id = (await api.create_run(exp, run_name=f"r{i}"))["info"]["run_id"]
        for _ in range(i % 3):
            (
                await api.post(
                    "/model-versions/create",
                    {"name": "many", "source": "s3://b/m", "run_id": run_id},
                )
            ).ok()
        expected[run_id] = i % 3
    query = (
        "query($ids: [String]) { mlflowSearchRuns(input: {experimentIds: $ids}) "
        "{ runs { info { runId } modelVersions { runId version } experiment { experimentId } } } }"
    )
    runs = (await gql(client, query, {"ids": [exp]})).data["mlflowSearchRuns"]["runs"]
    assert {r["info"]["runId"]: len(r["modelVersions"]) for r in runs} == expected
    for run in runs:
        assert {v["runId"] for v in run["modelVersions"]} <= {run["info"]["runId"]}
        assert run["experiment"] == {"experimentId": exp}


async def test_metric_history_bulk_interval(client: TestClient[Any, Any], world: World) -> None:
    query = bundle_operations()["GetMetricHistoryBulkInterval"]
    variables = {"data": {"runIds": [world.run_id, world.other_run_id], "metricKey": "loss"}}
    response = (await gql(client, query, variables)).data["mlflowGetMetricHistoryBulkInterval"]
    assert response["__typename"] == "MlflowGetMetricHistoryBulkIntervalResponse"
    assert response["apiError"] is None
    assert [(m["runId"], m["step"], m["timestamp"], m["value"]) for m in response["metrics"]] == [
        (world.run_id, str(s), str(1000 + s), 1.0 / (s + 1)) for s in range(5)
    ] + [(world.other_run_id, "0", "5", 0.3)]
    assert {m["key"] for m in response["metrics"]} == {"loss"}

    # startStep/endStep and maxResults are honoured, as by the REST endpoint.
    ranged = {"data": {"runIds": [world.run_id], "metricKey": "loss", "startStep": 1, "endStep": 3}}
    metrics = (await gql(client, query, ranged)).data["mlflowGetMetricHistoryBulkInterval"][
        "metrics"
    ]
    assert [m["step"] for m in metrics] == ["1", "2", "3"]

    nan = {"data": {"runIds": [world.run_id], "metricKey": "nanm"}}
    metrics = (await gql(client, query, nan)).data["mlflowGetMetricHistoryBulkInterval"]["metrics"]
    assert [(m["step"], m["value"]) for m in metrics] == [("0", None)]
    big = {"data": {"runIds": [world.run_id], "metricKey": "big"}}
    metrics = (await gql(client, query, big)).data["mlflowGetMetricHistoryBulkInterval"]["metrics"]
    assert [(m["step"], m["timestamp"]) for m in metrics] == [(str(BIG_STEP), str(BIG_TIMESTAMP))]

    refused = {"data": {"runIds": [world.run_id], "metricKey": "loss", "startStep": 3}}
    error = (await gql(client, query, refused)).data["mlflowGetMetricHistoryBulkInterval"]
    assert error == {
        "__typename": "MlflowGetMetricHistoryBulkIntervalResponse",
        "metrics": None,
        "apiError": {
            "code": "INVALID_PARAMETER_VALUE",
            "message": "If either start step or end step are specified, both must be specified.",
        },
    }


async def test_list_artifacts_and_search_model_versions(
    client: TestClient[Any, Any], api: Api, world: World
) -> None:
    path = f"/api/2.0/mlflow-artifacts/artifacts/{world.experiment_id}/{world.run_id}/artifacts/dir/notes.txt"
    assert (await api.request("PUT", path, data=b"hello", absolute=True)).status == 200
    query = """query($id: String, $path: String) { mlflowListArtifacts(input: {runId: $id, path: $path}) {
               __typename rootUri nextPageToken files { path isDir fileSize } apiError { code } } }"""
    top = (await gql(client, query, {"id": world.run_id})).data["mlflowListArtifacts"]
    assert top == {
        "__typename": "MlflowListArtifactsResponse",
        "apiError": None,
        "nextPageToken": "",
        "rootUri": f"mlflow-artifacts:/{world.experiment_id}/{world.run_id}/artifacts",
        "files": [{"path": "dir", "isDir": True, "fileSize": "0"}],
    }
    inner = (await gql(client, query, {"id": world.run_id, "path": "dir"})).data[
        "mlflowListArtifacts"
    ]
    assert inner["files"] == [{"path": "dir/notes.txt", "isDir": False, "fileSize": "5"}]

    versions = """query($f: String, $n: LongString) { mlflowSearchModelVersions(input: {filter: $f, maxResults: $n}) {
                  __typename nextPageToken apiError { code } modelVersions { name version runId status currentStage
                  userId description aliases tags { key } } } }"""
    found = (await gql(client, versions, {"f": "name = 'gqm'", "n": "1"})).data[
        "mlflowSearchModelVersions"
    ]
    assert found["__typename"] == "MlflowSearchModelVersionsResponse" and found["apiError"] is None
    assert found["nextPageToken"]
    assert found["modelVersions"] == [
        {
            "name": "gqm",
            "version": "2",
            "runId": world.run_id,
            "status": "READY",
            "currentStage": "None",
            "userId": "",
            "description": "",
            "aliases": [],
            "tags": [],
        }
    ]
    bad = (await gql(client, versions, {"f": "name = 'gqm'", "n": 0})).data[
        "mlflowSearchModelVersions"
    ]
    assert bad["apiError"]["code"] == "INVALID_PARAMETER_VALUE" and bad["modelVersions"] is None


async def test_echo_fields(client: TestClient[Any, Any]) -> None:
    assert (await gql(client, '{ test(inputString: "hi") { output __typename } }')).data == {
        "test": {"output": "hi", "__typename": "Test"}
    }
    assert (await gql(client, 'mutation { testMutation(inputString: "x") { output } }')).data == {
        "testMutation": {"output": "x"}
    }


# ---------------------------------------------------------------- errors


async def test_missing_resources_are_api_errors(client: TestClient[Any, Any], world: World) -> None:
    operations = bundle_operations()
    reply = await gql(
        client, operations["MlflowGetExperimentQuery"], {"input": {"experimentId": "987654"}}
    )
    assert reply.status == 200 and reply.body["errors"] is None
    assert reply.body["data"]["mlflowGetExperiment"] == {
        "experiment": None,
        "apiError": {
            "code": "RESOURCE_DOES_NOT_EXIST",
            "message": "No Experiment with id=987654 exists",
        },
    }

    missing = "0" * 32
    reply = await gql(client, operations["GetRun"], {"data": {"runId": missing}})
    assert reply.status == 200 and reply.body["errors"] is None
    assert reply.body["data"]["mlflowGetRun"] == {
        "run": None,
        "apiError": {
            "helpUrl": None,
            "code": "RESOURCE_DOES_NOT_EXIST",
            "message": f"Run with id={missing} not found",
        },
    }

    reply = await gql(
        client, operations["MlflowGetExperimentQuery"], {"input": {"experimentId": "abc"}}
    )
    assert reply.body["data"]["mlflowGetExperiment"]["apiError"] == {
        "code": "INVALID_PARAMETER_VALUE",
        "message": "Invalid experiment ID 'abc'. Experiment ID must be a valid integer.",
    }

    reply = await gql(
        client,
        operations["SearchRuns"],
        {"data": {"experimentIds": [world.experiment_id], "filter": "metrics.loss <"}},
    )
    assert reply.body["errors"] is None
    assert reply.body["data"]["mlflowSearchRuns"]["runs"] is None
    assert reply.body["data"]["mlflowSearchRuns"]["apiError"]["code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(
    ("query", "variables", "message"),
    [
        ("query { mlflowGetRun(", None, "Syntax Error: Expected Name, found <EOF>."),
        ("query { nope }", None, "Cannot query field 'nope' on type 'Query'."),
        ('query Q @foo { test(inputString: "x") { output } }', None, "Unknown directive '@foo'."),
        (
            "query Q($data: MlflowGetRunInput!) { mlflowGetRun(input: $data) { apiError { code } } }",
            None,
            "Variable '$data' of required type 'MlflowGetRunInput!' was not provided.",
        ),
        (
            'query A { test(inputString: "x") { output } } query B { test(inputString: "y") { output } }',
            None,
            "Must provide operation name if query contains multiple operations.",
        ),
        (
            "query($n: LongString) { mlflowSearchModelVersions(input: {maxResults: $n}) { nextPageToken } }",
            {"n": "many"},
            "Variable '$n' got invalid value 'many'; LongString cannot represent 'many'",
        ),
    ],
)
async def test_malformed_queries_answer_200_with_error_messages(
    client: TestClient[Any, Any], query: str, variables: Any, message: str
) -> None:
    reply = await gql(client, query, variables)
    # Stock renders errors as bare message strings.
    assert reply.status == 200 and reply.body == {"data": None, "errors": [message]}


async def test_component_directive_is_declared(client: TestClient[Any, Any]) -> None:
    ok = '\nquery Q @component(name: "MLflow.X") { test(inputString: "x") { output } }'
    assert (await gql(client, ok)).data == {"test": {"output": "x"}}
    missing_name = 'query Q @component { test(inputString: "x") { output } }'
    assert (await gql(client, missing_name)).body["errors"] == [
        "Directive '@component' argument 'name' of type 'String!' is required, but it was not provided."
    ]


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code", "message"),
    [
        (
            b'[{"query": "{ __typename }"}]',
            "application/json",
            400,
            "BAD_REQUEST",
            "Batched GraphQL requests are not supported: send one operation per request.",
        ),
        (b"{not json", "application/json", 400, "BAD_REQUEST", "Malformed JSON in request body"),
        (
            b'{"variables": {}}',
            "application/json",
            400,
            "BAD_REQUEST",
            "Missing value for required parameter 'query'.",
        ),
        (
            b'{"query": "{ __typename }", "variables": [1]}',
            "application/json",
            400,
            "BAD_REQUEST",
            "'variables' must be a JSON object.",
        ),
        (
            b'{"query": "{ __typename }"}',
            "text/plain",
            400,
            "INVALID_PARAMETER_VALUE",
            "Bad Request. Content-Type must be one of ['application/json'].",
        ),
    ],
)
async def test_requests_that_are_not_one_graphql_operation_are_refused(
    client: TestClient[Any, Any],
    raw: bytes,
    content_type: str,
    status: int,
    code: str,
    message: str,
) -> None:
    reply = await gql(client, "", raw=raw, content_type=content_type)
    assert (reply.status, reply.body) == (status, {"error_code": code, "message": message})


async def test_get_with_query_string(client: TestClient[Any, Any]) -> None:
    params = {
        "query": "query($s: String) { test(inputString: $s) { output } }",
        "variables": '{"s": "via get"}',
    }
    async with client.get("/graphql", params=params) as resp:
        assert resp.status == 200
        assert orjson.loads(await resp.read()) == {
            "data": {"test": {"output": "via get"}},
            "errors": None,
        }


async def test_get_refuses_malformed_variables(client: TestClient[Any, Any]) -> None:
    params = {"query": "{ __typename }", "variables": "{nope"}
    async with client.get("/graphql", params=params) as resp:
        assert resp.status == 400
        assert orjson.loads(await resp.read()) == {
            "error_code": "BAD_REQUEST",
            "message": "'variables' must be a JSON object.",
        }


async def test_nul_characters_are_refused_as_api_errors(client: TestClient[Any, Any]) -> None:
    """As the REST decoder refuses them (PostgreSQL text cannot hold NUL): in a variable, or
    written as a GraphQL escape in the document itself."""
    fields = "{ modelVersions { name } apiError { code message } }"
    replies = [
        await gql(
            client,
            f"query($f: String) {{ mlflowSearchModelVersions(input: {{filter: $f}}) {fields} }}",
            {"f": "name = 'a\x00'"},
        ),
        await gql(
            client,
            f"{{ mlflowSearchModelVersions(input: {{filter: \"name = '\\u0000'\"}}) {fields} }}",
        ),
    ]
    for reply in replies:
        assert reply.data["mlflowSearchModelVersions"] == {
            "modelVersions": None,
            "apiError": {
                "code": "INVALID_PARAMETER_VALUE",
                "message": "String values may not contain the NUL character (\\u0000).",
            },
        }


# ---------------------------------------------------------------- limits


def _nested_introspection(depth: int) -> str:
    """``{ __schema { types { fields { type { ofType { ... } } } } } }`` nested ``depth`` levels."""
    inner = "name"
    for _ in range(depth - 5):
        inner = f"ofType {{ {inner} }}"
    return f"{{ __schema {{ types {{ fields {{ type {{ {inner} }} }} }} }} }}"


async def test_depth_limit(client: TestClient[Any, Any]) -> None:
    within = (await gql(client, _nested_introspection(MAX_DEPTH))).data
    assert within["__schema"]["types"]
    reply = await gql(client, _nested_introspection(MAX_DEPTH + 1))
    assert reply.status == 200
    assert reply.body == {"data": None, "errors": [f"Query exceeds maximum depth of {MAX_DEPTH}"]}
    # A fragment that spreads itself is stopped by the same limit before validation sees the cycle.
    cyclic = "query { __schema { types { ...F } } } fragment F on __Type { ofType { ...F } }"
    assert (await gql(client, cyclic)).body == {
        "data": None,
        "errors": [f"Query exceeds maximum depth of {MAX_DEPTH}"],
    }


async def test_selection_alias_and_root_field_limits(client: TestClient[Any, Any]) -> None:
    aliases = (
        '{ mlflowGetRun(input: {runId: "x"}) { run { info { '
        + " ".join(f"a{i}: runId" for i in range(11))
        + " } } } }"
    )
    assert (await gql(client, aliases)).body == {
        "data": None,
        "errors": ["GraphQL queries should have at most 10 aliases, got 11 aliases."],
    }
    roots = "{ " + " ".join(f'a{i}: test(inputString: "x") {{ output }}' for i in range(11)) + " }"
    assert (await gql(client, roots)).body == {
        "data": None,
        "errors": ["GraphQL queries should have at most 10 root fields, got 11 root fields."],
    }
    # Fragments tripling the fan-out per level: 3 + 9 + ... + 729 selections within the depth limit.
    fragments = (
        " ".join(
            f"fragment F{i} on __Type {{ ofType {{ ...F{i + 1} }} interfaces {{ ...F{i + 1} }} "
            f"possibleTypes {{ ...F{i + 1} }} }}"
            for i in range(6)
        )
        + " fragment F6 on __Type { name }"
    )
    fan_out = "query { __schema { types { ...F0 } } } " + fragments
    assert (await gql(client, fan_out)).body == {
        "data": None,
        "errors": ["Query exceeds maximum total selections of 1000"],
    }
    tokens = '{ test(inputString: "x") { ' + " ".join(["o"] * 12_000) + " } }"
    assert (await gql(client, tokens)).body == {
        "data": None,
        "errors": ["Syntax Error: Document contains more than 10000 tokens. Parsing aborted."],
    }
    long = "{ __typename }" + " " * 100_000
    assert (await gql(client, long)).body == {
        "data": None,
        "errors": ["Query exceeds maximum length of 100000 characters"],
    }


# ---------------------------------------------------------------- the executor's shortcut


async def test_flat_list_shortcut_matches_the_general_executor() -> None:
    """The projection of flat lists answers exactly as graphql-core's executor (values, aliases,
    __typename, @skip, NaN/inf), and leaves what it cannot handle (a bad enum) to it."""
    points = [
        {"key": "loss", "value": v, "timestamp": 2**45 + i, "step": i, "run_id": "r"}
        for i, v in enumerate([0.5, math.nan, math.inf, -math.inf, "NaN", "Infinity", 3])
    ]
    versions = [
        {"name": "m", "version": "1", "status": "READY"},
        {"name": "m", "version": "2", "status": "BOGUS"},
    ]

    async def metrics(_root: Any, _info: Any, input: Any = None) -> Any:
        return {"metrics": points}

    async def model_versions(_root: Any, _info: Any, input: Any = None) -> Any:
        return {"model_versions": versions}

    schema = Schema(
        load_sdl(),
        {
            ("Query", "mlflowGetMetricHistoryBulkInterval"): metrics,
            ("Query", "mlflowSearchModelVersions"): model_versions,
        },
    )
    query = parse("""query($skip: Boolean!) {
        a: mlflowGetMetricHistoryBulkInterval { metrics { __typename k: key value step ts: timestamp
            runId @skip(if: $skip) } }
        mlflowSearchModelVersions { modelVersions { name version status } } }""")

    async def run(context_class: type[ExecutionContext], skip: bool) -> ExecutionResult:
        result = execute(
            schema.graphql,
            query,
            variable_values={"skip": skip},
            execution_context_class=context_class,
        )
        assert isawaitable(result)
        return await result

    for skip in (True, False):
        general = await run(ExecutionContext, skip)
        fast = await run(execution_context_class(schema), skip)
        assert fast.data == general.data
        assert [e.message for e in fast.errors or []] == [e.message for e in general.errors or []]
        values = [m["value"] for m in fast.data["a"]["metrics"]]
        assert values == [
            0.5,
            None,
            1.7976931348623157e308,
            -1.7976931348623157e308,
            None,
            1.7976931348623157e308,
            3.0,
        ]
        assert fast.data["a"]["metrics"][0]["ts"] == str(2**45)
        assert ("runId" in fast.data["a"]["metrics"][0]) is not skip
        # The bogus enum fails that one item's field, worded by the general path.
        assert [e.message for e in fast.errors or []] == [
            "Enum 'MlflowModelVersionStatus' cannot represent value: 'BOGUS'"
        ]


async def test_search_datasets_answers_as_the_rest_endpoint(
    client: TestClient[Any, Any], api: Api, world: World
) -> None:
    document = """mutation D($input: MlflowSearchDatasetsInput) { mlflowSearchDatasets(input: $input) {
        datasetSummaries { experimentId name digest context } apiError { code message } } }"""
    reply = await gql(client, document, {"input": {"experimentIds": [world.experiment_id]}})
    payload = reply.data["mlflowSearchDatasets"]
    assert payload["apiError"] is None
    rest = (
        await api.post("/experiments/search-datasets", {"experiment_ids": [world.experiment_id]})
    ).ok()
    assert rest["dataset_summaries"]  # the world's run logged a dataset
    assert payload["datasetSummaries"] == [
        {
            "experimentId": s["experiment_id"],
            "name": s["name"],
            "digest": s["digest"],
            "context": s.get("context"),
        }
        for s in rest["dataset_summaries"]
    ]
    refused = await gql(client, document, {"input": {"experimentIds": []}})
    assert refused.data["mlflowSearchDatasets"]["apiError"]["code"] == "INVALID_PARAMETER_VALUE"
