"""STARTS STOCK MLFLOW: runs/get and runs/search answers compared with a real ``mlflow server``.

Both servers get the same data through the same unmodified mlflow client calls (runs with
every kind of data a run holds: params, tags, latest metrics with NaN, infinities, negative and
huge steps and a model id, dataset inputs with and without schema and profile, model inputs and
outputs; a deleted run; a plain run). Then the same REST reads go to both, and the answers
must be equal once server-chosen ids and times are replaced by placeholders. metricgate builds
these answers straight from rows (stores/postgres/runs.py ``RunRows``, api/codec.py
``encode_run_rows``); stock builds them from its entities and protobufs.

Known differences, evened out before comparing (the client reads both answers alike):
- stock omits empty lists (proto3 JSON), metricgate sends them (``"params": []``);
- stock's SQL store keeps +/-infinity as +/-1.7976931348623157e308, metricgate keeps infinity
  ("Infinity" in proto3 JSON);
- metricgate's latest metrics carry the ``model_id`` they were logged with; stock's latest
  metrics have no such column;
- stock 3.17.2's runs/get and runs/search leave the run's model inputs out (its ``log_inputs``
  stores them, its run reads do not find them); metricgate returns them.
"""

from __future__ import annotations

import math
from typing import Any

import requests
from tests.api.test_graphql import BIG_STEP, BIG_TIMESTAMP

API = "/api/2.0/mlflow"
START = 1_700_000_000_000


def populate(tracking_uri: str) -> dict[str, str]:
    """The same runs on either server; returns the server-chosen ids by role."""
    from mlflow import MlflowClient
    from mlflow.entities import (
        Dataset,
        DatasetInput,
        InputTag,
        LoggedModelInput,
        LoggedModelOutput,
        Metric,
        Param,
        RunTag,
    )

    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("run-reads-stock")
    run = client.create_run(
        exp, run_name="full", tags={"B": "upper", "a": "lower", "é": "accent"}, start_time=START
    )
    run_id = run.info.run_id
    early = client.create_logged_model(exp, name="early", source_run_id=run_id)
    late = client.create_logged_model(exp, name="late", source_run_id=run_id)
    metrics = [
        Metric("loss", 0.5, START + 1, 1),
        Metric("loss", 0.25, START + 2, 2),
        Metric("nanm", math.nan, START, 0),
        Metric("posinf", math.inf, START, 0),
        Metric("neginf", -math.inf, START, 0),
        Metric("neg", -1.5, START, -3),
        Metric("big", 1.5, BIG_TIMESTAMP, BIG_STEP),
        Metric("tiny", 5e-324, START, 0),
    ]
    params = [
        Param("lr", "0.1"),
        Param("B", "2"),
        Param("a", "1"),
        Param("empty", ""),
        Param("日本", "語"),
    ]
    client.log_batch(
        run_id, metrics=metrics, params=params, tags=[RunTag("note", 'multi\nline "quoted"')]
    )
    client.log_metric(run_id, "acc", 0.75, timestamp=START + 5, step=4, model_id=early.model_id)
    with_schema = Dataset(
        "iris",
        "abc123",
        "local",
        "/data/iris.csv",
        schema='{"mlflow_colspec": []}',
        profile='{"num_rows": 150}',
    )
    plain = Dataset("digits", "d2", "http", "https://example.invalid/digits")
    client.log_inputs(
        run_id,
        datasets=[
            DatasetInput(with_schema, [InputTag("mlflow.data.context", "train")]),
            DatasetInput(plain, []),
        ],
        models=[LoggedModelInput(late.model_id)],
    )
    client.log_outputs(
        run_id, [LoggedModelOutput(late.model_id, 7), LoggedModelOutput(early.model_id, 2)]
    )
    client.set_terminated(run_id, end_time=START + 10_000)

    deleted = client.create_run(exp, run_name="gone", start_time=START + 1)
    client.log_param(deleted.info.run_id, "p", "v")
    client.delete_run(deleted.info.run_id)
    plain_run = client.create_run(exp, run_name="plain", start_time=START + 2)
    return {
        "exp": exp, "run": run_id, "deleted": deleted.info.run_id, "plain": plain_run.info.run_id,
        "early": early.model_id, "late": late.model_id,
    }  # fmt: skip


MAX_DOUBLE = 1.7976931348623157e308


def normalized(value: Any, ids: dict[str, str]) -> Any:
    """Ids by role, and the known differences of the module docstring evened out."""
    if isinstance(value, dict):
        out = {k: normalized(v, ids) for k, v in value.items() if v != [] and k != "model_inputs"}
        if "timestamp" in out and "step" in out:  # a metric
            out.pop("model_id", None)
            if out["value"] in ("Infinity", "-Infinity"):
                out["value"] = MAX_DOUBLE if out["value"] == "Infinity" else -MAX_DOUBLE
        return out
    if isinstance(value, list):
        return [normalized(v, ids) for v in value]
    if isinstance(value, str):
        for role, id_ in ids.items():
            if value == id_:
                return f"<{role}>"
            if role != "exp":
                value = value.replace(id_, f"<{role}>")
        if value.startswith(f"mlflow-artifacts:/{ids['exp']}/"):
            value = "mlflow-artifacts:/<exp>/" + value.split("/", 2)[2]
    return value


def in_key_order(run: dict[str, Any]) -> dict[str, Any]:
    """Lists of a run whose order MLflow leaves to the store, in one order for comparing."""
    data = run.get("data", {})
    for field in ("params", "tags", "metrics"):
        if field in data:
            data[field] = sorted(data[field], key=lambda item: item["key"])
    inputs = run.get("inputs", {})
    if "dataset_inputs" in inputs:
        inputs["dataset_inputs"] = sorted(
            inputs["dataset_inputs"], key=lambda d: d["dataset"]["name"]
        )
    outputs = run.get("outputs", {})
    if "model_outputs" in outputs:
        outputs["model_outputs"] = sorted(outputs["model_outputs"], key=lambda o: o["step"])
    return run


def reads(base_url: str, ids: dict[str, str]) -> dict[str, Any]:
    """The answers compared, by name."""
    out: dict[str, Any] = {}
    for role in ("run", "deleted", "plain"):
        reply = requests.get(f"{base_url}{API}/runs/get", params={"run_id": ids[role]}, timeout=30)
        assert reply.status_code == 200, reply.text
        out[f"get {role}"] = in_key_order(reply.json()["run"])
    for view in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL"):
        reply = requests.post(
            f"{base_url}{API}/runs/search",
            json={"experiment_ids": [ids["exp"]], "run_view_type": view},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        body["runs"] = [in_key_order(run) for run in body.get("runs", [])]
        out[f"search {view}"] = body
    # Paging: one run a page, following the tokens (the tokens themselves are opaque).
    pages, token = [], None
    for _ in range(10):
        request: dict[str, Any] = {
            "experiment_ids": [ids["exp"]],
            "max_results": 1,
            "run_view_type": "ALL",
        }
        if token:
            request["page_token"] = token
        body = requests.post(f"{base_url}{API}/runs/search", json=request, timeout=30).json()
        pages.append([run["info"]["run_id"] for run in body.get("runs", [])])
        token = body.get("next_page_token")
        if not token:
            break
    out["paged ids"] = pages
    return out


def test_run_reads_match_stock_mlflow(stock_mlflow: str, mlflow_tracking: str) -> None:
    stock_ids, our_ids = populate(stock_mlflow), populate(mlflow_tracking)
    want, got = (
        normalized(reads(stock_mlflow, stock_ids), stock_ids),
        normalized(reads(mlflow_tracking, our_ids), our_ids),
    )
    assert set(got) == set(want)
    for name in want:
        assert got[name] == want[name], name
    # The comparison saw real data, not two empty answers.
    full = want["get run"]
    assert len(full["data"]["metrics"]) == 8 and len(full["inputs"]["dataset_inputs"]) == 2
    assert [o["step"] for o in full["outputs"]["model_outputs"]] == [2, 7]
    ours = requests.get(
        f"{mlflow_tracking}{API}/runs/get", params={"run_id": our_ids["run"]}, timeout=30
    ).json()
    assert ours["run"]["inputs"]["model_inputs"] == [{"model_id": our_ids["late"]}]
    assert [len(page) for page in want["paged ids"]] == [1, 1, 1]
