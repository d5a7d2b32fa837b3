"""STARTS STOCK MLFLOW: /graphql answers compared with a real ``mlflow server`` (~15 s).

Both servers get the same data through the same unmodified mlflow client calls; then the same
GraphQL documents (every operation of the installed UI bundle, plus the other root fields)
go to both, and the answers must be equal once ids and server-chosen timestamps are replaced by
placeholders. Stock runs on SQLite in a temp dir, offline.

Not compared, because metricgate differs on purpose (see api/graphql/handler.py, resolvers.py):
MLflow errors (stock: ``errors: ["<message>"]`` with the field null; metricgate: the field's
``apiError``), the chart operation's ``maxResults``/``startStep``/``endStep`` (stock's GraphQL
path reads them from the URL's query string, so ignores them; metricgate honours them), unset
enums (stock: an error), and malformed requests (stock: a bare 500).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from graphql import build_schema, lexicographic_sort_schema, print_schema
from tests.api.test_graphql import BIG_STEP, BIG_TIMESTAMP, bundle_operations

from metricgate.api.graphql.schema import load_sdl


def test_schema_is_stocks() -> None:
    """Type for type, field for field, the schema stock MLflow serves (graphene's, printed)."""
    from mlflow.server.graphql.graphql_schema_extensions import schema as stock

    ours = print_schema(lexicographic_sort_schema(build_schema(load_sdl())))
    assert ours == print_schema(lexicographic_sort_schema(stock.graphql_schema))


def populate(tracking_uri: str) -> dict[str, str]:
    """The same data on either server; returns the server-chosen ids by role."""
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput, Metric, Param

    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("graphql-stock", tags={"team": "vision"})
    run = client.create_run(exp, run_name="first", tags={"t1": "v1"}, start_time=1_700_000_000_000)
    run_id = run.info.run_id
    metrics = [Metric("loss", 1.0 / (s + 1), 1000 + s, s) for s in range(5)]
    metrics += [Metric("nanm", float("nan"), 1000, 0), Metric("big", 1.5, BIG_TIMESTAMP, BIG_STEP)]
    client.log_batch(run_id, metrics=metrics, params=[Param("lr", "0.1")])
    dataset = Dataset("iris", "abc123", "local", "/data/iris.csv")
    client.log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "train")])])
    model = client.create_logged_model(exp, name="model", source_run_id=run_id)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, 3)])
    client.log_text(run_id, "hello", "dir/notes.txt")
    client.set_terminated(run_id, end_time=1_700_000_001_000)
    client.create_registered_model("gqm")
    for _ in range(2):
        client.create_model_version("gqm", source=f"runs:/{run_id}/model", run_id=run_id)
    other = client.create_run(exp, run_name="second", start_time=1_700_000_002_000)
    client.log_metric(other.info.run_id, "loss", 0.3, timestamp=5, step=0)
    return {"exp": exp, "run": run_id, "other": other.info.run_id, "model": model.model_id}


def documents(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, document, variables) sent to both servers."""
    ops = bundle_operations()
    run_fields = """info { runId runUuid runName experimentId userId status startTime endTime artifactUri
        lifecycleStage } data { metrics { __typename key value timestamp step } params { key value }
        tags { key value } } inputs { datasetInputs { tags { key value } dataset { name digest sourceType
        source schema profile } } modelInputs { modelId } } outputs { modelOutputs { modelId step } }
        experiment { __typename experimentId name artifactLocation lifecycleStage creationTime
        lastUpdateTime tags { key value } } modelVersions { __typename name version creationTimestamp
        lastUpdatedTimestamp userId currentStage description source runId status statusMessage
        tags { key value } runLink aliases modelId }"""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for name, document in ops.items():
        out.append((name, document, _bundle_variables(name, ids)))
    out += [
        (
            "run, every field",
            "query($id: String) { mlflowGetRun(input: {runId: $id}) { __typename "
            f"apiError {{ code }} run {{ __typename {run_fields} }} }} }}",
            {"id": ids["run"]},
        ),
        (
            "running run",
            "query($id: String) { mlflowGetRun(input: {runId: $id}) "
            f"{{ run {{ {run_fields} }} }} }}",
            {"id": ids["other"]},
        ),
        (
            "search runs as a mutation",
            "mutation($e: [String]) { mlflowSearchRuns(input: {experimentIds: $e, "
            'orderBy: ["metrics.loss DESC"]}) { __typename nextPageToken runs { info { runName } } } }',
            {"e": [ids["exp"]]},
        ),
        (
            "artifacts",
            "query($id: String, $p: String) { mlflowListArtifacts(input: {runId: $id, path: $p}) "
            "{ __typename rootUri nextPageToken files { path isDir fileSize } apiError { code } } }",
            {"id": ids["run"], "p": "dir"},
        ),
        (
            "model versions",
            "query { mlflowSearchModelVersions(input: {filter: \"name = 'gqm'\", maxResults: 1}) "
            "{ __typename nextPageToken modelVersions { name version runId status currentStage aliases } } }",
            {},
        ),
        (
            "bulk interval, nan and int64",
            "query($id: String) { n: mlflowGetMetricHistoryBulkInterval(input: "
            '{runIds: [$id], metricKey: "big"}) { metrics { key value step timestamp runId } } }',
            {"id": ids["run"]},
        ),
        ("echo", '{ test(inputString: "hi") { __typename output } __typename }', {}),
        ("unknown field", "{ nope }", {}),
        (
            "too deep",
            "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType "
            "{ ofType { name } } } } } } } } } } }",
            {},
        ),
    ]
    return out


def _bundle_variables(name: str, ids: dict[str, str]) -> dict[str, Any]:
    return {
        "MlflowGetExperimentQuery": {"input": {"experimentId": ids["exp"]}},
        "GetRun": {"data": {"runId": ids["run"]}},
        "SearchRuns": {"data": {"experimentIds": [ids["exp"]]}},
        # No maxResults/startStep/endStep: stock's GraphQL path ignores them (see the docstring).
        "GetMetricHistoryBulkInterval": {
            "data": {"runIds": [ids["run"], ids["other"]], "metricKey": "loss"}
        },
    }.get(name) or pytest.fail(f"bundle operation {name} has no variables here: add them")  # type: ignore[return-value]


_SERVER_TIMES = {"creationTime", "lastUpdateTime", "creationTimestamp", "lastUpdatedTimestamp"}


def normalized(value: Any, ids: dict[str, str], key: str | None = None) -> Any:
    """Ids by role, server-chosen times as "<time>", lists of keyed items in key order."""
    if isinstance(value, dict):
        return {k: normalized(v, ids, k) for k, v in value.items()}
    if isinstance(value, list):
        items = [normalized(v, ids) for v in value]
        if items and all(isinstance(i, dict) and "key" in i for i in items):
            items.sort(key=lambda i: (i["key"], str(i.get("runId", ""))))
        return items
    if isinstance(value, str):
        if key in _SERVER_TIMES and value.isdigit():
            return "<time>"
        for role, id_ in ids.items():
            if value == id_:
                return f"<{role}>"
            if role != "exp":
                value = value.replace(id_, f"<{role}>")
        value = re.sub(
            rf"^mlflow-artifacts:/{re.escape(ids['exp'])}(?=/|$)", "mlflow-artifacts:/<exp>", value
        )
    return value


def test_graphql_answers_match_stock_mlflow(stock_mlflow: str, mlflow_tracking: str) -> None:
    stock_ids = populate(stock_mlflow)
    our_ids = populate(mlflow_tracking)
    pairs = list(zip(documents(stock_ids), documents(our_ids), strict=True))
    for (name, document, stock_variables), (_, _, our_variables) in pairs:
        stock = requests.post(
            f"{stock_mlflow}/graphql", json={"query": document, "variables": stock_variables}
        )
        ours = requests.post(
            f"{mlflow_tracking}/graphql", json={"query": document, "variables": our_variables}
        )
        assert (stock.status_code, ours.status_code) == (200, 200), name
        want, got = normalized(stock.json(), stock_ids), normalized(ours.json(), our_ids)
        # Stock's limit messages add how to raise the limit with its environment variable.
        want["errors"] = [
            re.sub(r" To increase the limit, .*", "", e) for e in want["errors"] or []
        ] or None
        assert got == want, name
        if name not in ("unknown field", "too deep"):  # the rest must have compared real data
            assert want["errors"] is None and all(v is not None for v in want["data"].values()), (
                name,
                want,
            )
    assert len(pairs) >= len(bundle_operations()) + 9
