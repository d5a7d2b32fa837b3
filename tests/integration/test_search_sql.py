"""Compiled search SQL against a real PostgreSQL: every filter kind, ordering with missing and NaN
values, view types and paging. For runs, MLflow's own in-memory SearchUtils.filter/sort (the
reference semantics of its stores) must agree with the SQL on the same data."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest

from metricgate.domain.errors import InvalidParameter
from metricgate.domain.search.paging import decode_page_token, encode_page_token
from metricgate.stores.postgres.search_sql import (
    compile_experiment_search,
    compile_logged_model_search,
    compile_run_search,
)

NAN, INF = math.nan, math.inf


async def add_experiment(
    conn: asyncpg.Connection, experiment_id: int, name: str, **kw: Any
) -> None:
    await conn.execute(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage,"
        " creation_time, last_update_time) VALUES ($1, $2, $3, $4, $5, $6)",
        experiment_id, name, f"mlflow-artifacts:/{experiment_id}", kw.get("stage", "active"),
        kw.get("created", 0), kw.get("updated", 0),
    )  # fmt: skip
    await conn.executemany(
        "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3)",
        [(experiment_id, k, v) for k, v in kw.get("tags", {}).items()],
    )


# ---------------------------------------------------------------- runs


@dataclass
class SeedRun:
    key: str
    name: str
    user: str
    status: str
    start: int
    end: int | None = None
    stage: str = "active"
    experiment: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    inputs: list[tuple[str, str, str | None]] = field(default_factory=list)  # name, digest, context

    @property
    def run_id(self) -> str:
        # Hash-derived ids, so run_id tie-breaks do not follow the names by accident.
        return hashlib.md5(self.key.encode()).hexdigest()

    @property
    def artifact_uri(self) -> str:
        return f"mlflow-artifacts:/{self.experiment}/{self.run_id}/artifacts"


RUNS = [
    SeedRun("r1", "alpha", "alice", "FINISHED", 100, 200, metrics={"loss": 0.5, "acc": 0.9},
            params={"lr": "0.1", "opt": "adam"}, tags={"team": "Core", "note": "it's"},
            inputs=[("train", "d1", "training")]),
    SeedRun("r2", "Beta", "bob", "FAILED", 200, metrics={"loss": 0.2, "acc": NAN},
            params={"lr": "0.01"}, tags={"team": "core"}, inputs=[("eval", "d2", "eval")]),
    SeedRun("r3", "gamma", "alice", "RUNNING", 300, metrics={"loss": NAN}),
    SeedRun("r6", "epsilon", "carol", "FINISHED", 50, 60, params={"opt": "sgd"},
            tags={"team": "ml"}, inputs=[("train", "d1", None)]),
    SeedRun("r7", "zeta", "bob", "KILLED", 300, 400, metrics={"loss": INF, "acc": -1.0},
            params={"lr": "1e-3"}, inputs=[("train", "d3", "training"), ("eval", "d2", "eval")]),
    SeedRun("r4", "delta", "dave", "FINISHED", 400, stage="deleted", metrics={"loss": 0.1}),
    SeedRun("r5", "other", "erin", "FINISHED", 500, experiment=1, metrics={"loss": 0.3}),
]  # fmt: skip
KEY_BY_RUN_ID = {run.run_id: run.key for run in RUNS}
ACTIVE_IN_0 = [run for run in RUNS if run.stage == "active" and run.experiment == 0]


async def seed_runs(conn: asyncpg.Connection) -> None:
    await add_experiment(conn, 1, "other")
    dataset_ids: dict[tuple[int, str, str], str] = {}
    for run in RUNS:
        await conn.execute(
            "INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time,"
            " end_time, lifecycle_stage, artifact_uri) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            run.run_id, run.experiment, run.name, run.user, run.status, run.start, run.end,
            run.stage, run.artifact_uri,
        )  # fmt: skip
        await conn.executemany(
            "INSERT INTO latest_metrics (run_id, key, step, timestamp_ms, value) VALUES ($1, $2, 0, 0, $3)",
            [(run.run_id, k, v) for k, v in run.metrics.items()],
        )
        for table, values in (("params", run.params), ("tags", run.tags)):
            await conn.executemany(
                f"INSERT INTO {table} (run_id, key, value) VALUES ($1, $2, $3)",
                [(run.run_id, k, v) for k, v in values.items()],
            )
        for name, digest, context in run.inputs:
            identity = (run.experiment, name, digest)
            if identity not in dataset_ids:
                dataset_ids[identity] = hashlib.md5(repr(identity).encode()).hexdigest()
                await conn.execute(
                    "INSERT INTO datasets (dataset_id, experiment_id, name, digest) VALUES ($1, $2, $3, $4)",
                    dataset_ids[identity], *identity,
                )  # fmt: skip
            input_tags = [{"key": "mlflow.data.context", "value": context}] if context else []
            await conn.execute(
                "INSERT INTO run_dataset_inputs (run_id, dataset_id, tags) VALUES ($1, $2, $3::jsonb)",
                run.run_id, dataset_ids[identity], json.dumps(input_tags),
            )  # fmt: skip


async def search_runs(
    conn: asyncpg.Connection,
    filter_string: str | None = None,
    order_by: Sequence[str] = (),
    view_type: str = "ACTIVE_ONLY",
    experiment_ids: Sequence[int | str] = (0,),
    max_results: int = 1000,
    offset: int = 0,
) -> list[str]:
    sql, params = compile_run_search(
        list(experiment_ids), filter_string, list(order_by), view_type, max_results, offset
    )
    return [KEY_BY_RUN_ID[row["run_id"]] for row in await conn.fetch(sql, *params)]


# Hand-checked expectations for the subtle rules; ids listed in the default order
# (start_time DESC, then run_id).
RUN_ID_BY_KEY = {run.key: run.run_id for run in RUNS}
R3_R7 = sorted(["r3", "r7"], key=lambda k: RUN_ID_BY_KEY[k])  # both start at 300
EXPECTED_RUN_FILTERS: list[tuple[str, list[str]]] = [
    ("metrics.loss > 0.3", ["r7", "r1"]),  # inf matches; NaN never does
    ("metrics.loss < 1", ["r2", "r1"]),
    ("metrics.loss != 0.5", [*R3_R7, "r2"]),  # NaN satisfies only "!="; r6 has no loss
    ("metrics.loss = 0.2", ["r2"]),
    ("metrics.acc >= -1", ["r7", "r1"]),
    ("metrics.nope > 0", []),
    ("params.lr = '0.1'", ["r1"]),
    ("params.lr != '0.1'", ["r7", "r2"]),  # runs without the key never match "!="
    ("params.opt IS NULL", [*R3_R7, "r2"]),
    ("params.opt IS NOT NULL", ["r1", "r6"]),
    ("params.lr LIKE '0.0%'", ["r2"]),
    ("params.lr LIKE '0._'", ["r1"]),  # "_" is one character
    ("tags.team = 'core'", ["r2"]),
    ("tags.team LIKE 'c%'", ["r2"]),  # LIKE is case-sensitive
    ("tags.team ILIKE 'C%'", ["r2", "r1"]),
    ('tags.note = "it\'s"', ["r1"]),
    ("status = 'FAILED'", ["r2"]),
    ("attributes.status != 'FAILED'", [*R3_R7, "r1", "r6"]),
    ("run_name = 'alpha'", ["r1"]),
    ("run_name LIKE 'b%'", []),
    ("attributes.run_name ILIKE 'b%'", ["r2"]),
    ("`Run Name` = 'zeta'", ["r7"]),
    ("user_id = 'alice'", ["r3", "r1"]),
    (f"run_id IN ('{RUNS[0].run_id}', '{RUNS[2].run_id}')", ["r3", "r1"]),
    (f"run_id NOT IN ('{RUNS[0].run_id}')", [*R3_R7, "r2", "r6"]),
    ("start_time >= 200", [*R3_R7, "r2"]),
    ("created < 100.5", ["r1", "r6"]),
    ("end_time > 0", ["r7", "r1", "r6"]),  # a NULL end_time never matches
    ("end_time != 200", ["r7", "r6"]),
    ("artifact_uri LIKE 'mlflow-artifacts:/0/%'", [*R3_R7, "r2", "r1", "r6"]),
    ("datasets.name = 'train'", ["r7", "r1", "r6"]),
    ("datasets.name != 'train'", ["r7", "r2"]),  # r7 also has a non-train input
    ("datasets.digest IN ('d1', 'd3')", ["r7", "r1", "r6"]),
    ("datasets.name NOT IN ('train')", ["r7", "r2"]),
    ("datasets.context = 'eval'", ["r7", "r2"]),
    ("datasets.context LIKE 'train%'", ["r7", "r1"]),  # r6's input has no context tag
    ("datasets.context NOT IN ('eval')", ["r7", "r1"]),
    ("datasets.name = 'train' AND datasets.context = 'eval'", ["r7"]),  # different inputs
    ("metrics.loss < 1 AND params.lr = '0.01'", ["r2"]),
    ("metrics.loss > 0 and tags.team ilike 'CORE' AND status = 'FINISHED'", ["r1"]),
    ("lifecycle_stage = 'active'", [*R3_R7, "r2", "r1", "r6"]),
    ('tags."x\'y" = "\'; DROP TABLE runs; --"', []),
]


async def test_run_filters(conn: asyncpg.Connection) -> None:
    await seed_runs(conn)
    for filter_string, expected in EXPECTED_RUN_FILTERS:
        assert await search_runs(conn, filter_string) == expected, filter_string
    assert await conn.fetchval("SELECT count(*) FROM runs") == len(RUNS)


async def test_run_view_types_and_experiments(conn: asyncpg.Connection) -> None:
    await seed_runs(conn)
    assert await search_runs(conn) == [*R3_R7, "r2", "r1", "r6"]
    assert await search_runs(conn, view_type="DELETED_ONLY") == ["r4"]
    assert await search_runs(conn, view_type="ALL") == ["r4", *R3_R7, "r2", "r1", "r6"]
    assert await search_runs(conn, experiment_ids=["0", 1]) == ["r5", *R3_R7, "r2", "r1", "r6"]
    assert await search_runs(conn, experiment_ids=[1], order_by=["metrics.loss"]) == ["r5"]
    assert await search_runs(conn, experiment_ids=[]) == []
    assert await search_runs(conn, "lifecycle_stage = 'deleted'", view_type="ALL") == ["r4"]


EXPECTED_RUN_ORDERS: list[tuple[list[str], list[str]]] = [
    # real values, then NaN, then missing, in both directions
    (["metrics.loss"], ["r2", "r1", "r7", "r3", "r6"]),
    (["metrics.loss DESC"], ["r7", "r1", "r2", "r3", "r6"]),
    (["metrics.acc DESC"], ["r1", "r7", "r2", "r3", "r6"]),
    # params/tags: missing values last, then the default order breaks the tie
    (["params.opt"], ["r1", "r6", *R3_R7, "r2"]),
    (["params.opt DESC"], ["r6", "r1", *R3_R7, "r2"]),
    (["tags.team DESC"], ["r6", "r2", "r1", *R3_R7]),  # byte order: "Core" < "core" < "ml"
    (["attributes.run_name"], ["r2", "r1", "r6", "r3", "r7"]),  # "Beta" sorts before "alpha"
    (["end_time"], ["r6", "r1", "r7", "r3", "r2"]),  # NULL end_time last
    (["end_time DESC"], ["r7", "r1", "r6", "r3", "r2"]),
    (["created"], ["r6", "r1", "r2", *R3_R7]),
    (["user_id DESC", "metrics.loss"], ["r6", "r2", "r7", "r1", "r3"]),
    (
        ["run_id DESC"],
        sorted(["r1", "r2", "r3", "r6", "r7"], key=lambda k: RUN_ID_BY_KEY[k], reverse=True),
    ),
]


async def test_run_ordering(conn: asyncpg.Connection) -> None:
    await seed_runs(conn)
    for order_by, expected in EXPECTED_RUN_ORDERS:
        assert await search_runs(conn, order_by=order_by) == expected, order_by


async def test_text_sorts_use_byte_order_whatever_the_column_collation(
    conn: asyncpg.Connection,
) -> None:
    # A linguistic collation would sort "alpha" before "Beta"; MLflow's default backend (SQLite)
    # and this server's contract use byte order. The private test cluster is C-locale, so switch
    # the sorted columns to ICU explicitly to prove the SQL does not depend on the database.
    if await conn.fetchval("SELECT count(*) FROM pg_collation WHERE collname = 'und-x-icu'") == 0:
        pytest.skip("this PostgreSQL build has no ICU collations")
    for table, column in (("runs", "run_name"), ("tags", "value"), ("params", "value")):
        await conn.execute(
            f'ALTER TABLE {table} ALTER COLUMN {column} TYPE text COLLATE "und-x-icu"'
        )
    await seed_runs(conn)
    assert await search_runs(conn, order_by=["run_name"]) == ["r2", "r1", "r6", "r3", "r7"]
    assert await search_runs(conn, order_by=["tags.team"]) == ["r1", "r2", "r6", *R3_R7]


def _as_mlflow_run(seed: SeedRun) -> Any:
    from mlflow.entities import (
        Dataset,
        DatasetInput,
        InputTag,
        Metric,
        Param,
        Run,
        RunData,
        RunInfo,
        RunInputs,
        RunTag,
    )  # fmt: skip

    info = RunInfo(seed.run_id, str(seed.experiment), seed.user, seed.status, seed.start, seed.end,
                   seed.stage, seed.artifact_uri, seed.name)  # fmt: skip
    data = RunData(
        metrics=[Metric(k, v, 0, 0) for k, v in seed.metrics.items()],
        params=[Param(k, v) for k, v in seed.params.items()],
        tags=[RunTag(k, v) for k, v in seed.tags.items()],
    )
    inputs = [
        DatasetInput(Dataset(name, digest, "local", "src"),
                     [InputTag("mlflow.data.context", context)] if context else [])
        for name, digest, context in seed.inputs
    ]  # fmt: skip
    return Run(info, data, RunInputs(dataset_inputs=inputs))


# Filters and sorts for the differential check; lifecycle_stage is metricgate-only and view types
# are not part of MLflow's in-memory filter.
DIFFERENTIAL_FILTERS = [None] + [f for f, _ in EXPECTED_RUN_FILTERS if "lifecycle_stage" not in f]
DIFFERENTIAL_ORDERS: list[list[str]] = [[]] + [o for o, _ in EXPECTED_RUN_ORDERS] + [
    ["metrics.acc"], ["tags.team"], ["run_name DESC"], ["status DESC", "params.lr"], ["start_time"],
    ["metrics.loss DESC", "params.lr DESC"], ["artifact_uri"],
]  # fmt: skip


async def test_runs_match_mlflow_reference_semantics(conn: asyncpg.Connection) -> None:
    search_utils = pytest.importorskip("mlflow.utils.search_utils").SearchUtils
    await seed_runs(conn)
    mlflow_runs = [_as_mlflow_run(run) for run in ACTIVE_IN_0]
    for filter_string in DIFFERENTIAL_FILTERS:
        for order_by in DIFFERENTIAL_ORDERS:
            reference = search_utils.sort(search_utils.filter(mlflow_runs, filter_string), order_by)
            expected = [KEY_BY_RUN_ID[r.info.run_id] for r in reference]
            assert await search_runs(conn, filter_string, order_by) == expected, (
                filter_string,
                order_by,
            )


async def test_run_paging_is_stable_and_complete(conn: asyncpg.Connection) -> None:
    await seed_runs(conn)
    for order_by in ([], ["metrics.loss DESC"], ["params.opt"]):
        everything = await search_runs(conn, order_by=order_by, view_type="ALL")
        pages, token = [], None
        while True:
            offset = decode_page_token(token)
            rows = await search_runs(
                conn, order_by=order_by, view_type="ALL", max_results=2, offset=offset
            )
            assert len(rows) <= 3  # one page plus the look-ahead row
            pages.append(rows[:2])
            if len(rows) <= 2:
                break
            token = encode_page_token(offset + 2)
        assert [key for page in pages for key in page] == everything
        assert len(pages) == math.ceil(len(everything) / 2)


async def test_run_search_rejects_bad_arguments(conn: asyncpg.Connection) -> None:
    await seed_runs(conn)
    bad_calls: list[dict[str, Any]] = [
        {"filter_string": "metrics.a LIKE 'x'"},
        {"filter_string": "tags.t = 'a\x00b'"},
        {"filter_string": "tags.t = '\ud800'"},
        {"order_by": ["datasets.name"]},
        {"order_by": ["metrics.a", "metrics.a DESC"]},
        {"view_type": "SOME"},
        {"experiment_ids": ["abc"]},
        {"experiment_ids": [True]},
        {"max_results": -1},
        {"offset": -5},
    ]
    for kwargs in bad_calls:
        with pytest.raises(InvalidParameter):
            await search_runs(conn, **kwargs)


async def test_huge_numbers_compare_without_driver_errors(conn: asyncpg.Connection) -> None:
    await seed_runs(conn)
    assert await search_runs(conn, "start_time < 99999999999999999999999") == [
        *R3_R7,
        "r2",
        "r1",
        "r6",
    ]
    assert await search_runs(conn, "metrics.loss < 1e999") == ["r2", "r1"]
    assert await search_runs(conn, "metrics.loss >= 1e999") == ["r7"]


# ---------------------------------------------------------------- experiments


async def seed_experiments(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "UPDATE experiments SET creation_time = 0, last_update_time = 0 WHERE experiment_id = 0"
    )
    await add_experiment(conn, 1, "alpha-exp", created=100, updated=500, tags={"team": "core"})
    await add_experiment(
        conn, 2, "Beta-exp", created=200, updated=500, tags={"team": "ml", "prod": "yes"}
    )
    await add_experiment(conn, 3, "gamma", created=200, updated=100, stage="deleted")
    await add_experiment(conn, 4, "delta-exp", created=300, updated=50)


async def search_experiments(
    conn: asyncpg.Connection,
    filter_string: str | None = None,
    order_by: Sequence[str] = (),
    view_type: str = "ACTIVE_ONLY",
    max_results: int = 1000,
    offset: int = 0,
) -> list[int]:
    sql, params = compile_experiment_search(
        view_type, filter_string, list(order_by), max_results, offset
    )
    return [row["experiment_id"] for row in await conn.fetch(sql, *params)]


EXPECTED_EXPERIMENT_SEARCHES: list[tuple[str | None, list[str], str, list[int]]] = [
    (None, [], "ACTIVE_ONLY", [4, 2, 1, 0]),  # creation_time DESC, experiment_id ASC
    (None, [], "ALL", [4, 2, 3, 1, 0]),
    (None, [], "DELETED_ONLY", [3]),
    ("name LIKE '%-exp'", [], "ACTIVE_ONLY", [4, 2, 1]),
    ("name ILIKE 'b%'", [], "ACTIVE_ONLY", [2]),
    ("attribute.name = 'Default'", [], "ACTIVE_ONLY", [0]),
    ("name != 'Default'", [], "ACTIVE_ONLY", [4, 2, 1]),
    ("experiment_id IN ('1', '4')", [], "ACTIVE_ONLY", [4, 1]),
    ("experiment_id NOT IN ('0')", [], "ACTIVE_ONLY", [4, 2, 1]),
    ("experiment_id = '2'", [], "ACTIVE_ONLY", [2]),
    ("experiment_id != '2'", [], "ALL", [4, 3, 1, 0]),
    ("creation_time >= 200", [], "ACTIVE_ONLY", [4, 2]),
    ("last_update_time = 500", [], "ACTIVE_ONLY", [2, 1]),
    ("tags.team = 'core'", [], "ACTIVE_ONLY", [1]),
    ("tags.team != 'core'", [], "ACTIVE_ONLY", [2]),  # only experiments having the tag
    ("tags.team IS NULL", [], "ACTIVE_ONLY", [4, 0]),
    ("tags.prod IS NOT NULL AND tags.team LIKE 'm%'", [], "ACTIVE_ONLY", [2]),
    (
        None,
        ["name"],
        "ACTIVE_ONLY",
        [2, 0, 1, 4],
    ),  # byte order: "Beta-exp" < "Default" < "alpha-exp"
    (None, ["name DESC"], "ACTIVE_ONLY", [4, 1, 0, 2]),
    (None, ["last_update_time DESC"], "ACTIVE_ONLY", [2, 1, 4, 0]),  # MLflow's tie-break: id DESC
    (None, ["experiment_id DESC"], "ACTIVE_ONLY", [4, 2, 1, 0]),
    (None, ["creation_time", "experiment_id"], "ALL", [0, 1, 2, 3, 4]),
]


async def test_experiment_search(conn: asyncpg.Connection) -> None:
    await seed_experiments(conn)
    for filter_string, order_by, view_type, expected in EXPECTED_EXPERIMENT_SEARCHES:
        found = await search_experiments(conn, filter_string, order_by, view_type)
        assert found == expected, (filter_string, order_by, view_type)


async def test_experiment_paging(conn: asyncpg.Connection) -> None:
    await seed_experiments(conn)
    assert await search_experiments(conn, view_type="ALL", max_results=2) == [4, 2, 3]
    assert await search_experiments(conn, view_type="ALL", max_results=2, offset=2) == [3, 1, 0]
    assert await search_experiments(conn, view_type="ALL", max_results=2, offset=4) == [0]
    with pytest.raises(InvalidParameter):
        await search_experiments(conn, "experiment_id = 'x'")


# ---------------------------------------------------------------- logged models


@dataclass
class SeedModel:
    model_id: str
    name: str
    created: int
    status: str = "LOGGED_MODEL_READY"
    stage: str = "active"
    experiment: int = 0
    source_run_id: str | None = None
    model_type: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # (key, step, timestamp_ms, value, dataset_name)
    metrics: list[tuple[str, int, int, float, str | None]] = field(default_factory=list)


MODELS = [
    SeedModel("m-1", "model-a", 100, source_run_id="run1", model_type="sklearn", params={"p": "x"},
              tags={"t": "Prod"}, metrics=[("acc", 0, 10, 0.5, None), ("acc", 1, 20, 0.9, "eval")]),
    SeedModel("m-2", "model-b", 200, status="LOGGED_MODEL_PENDING", params={"p": "y"},
              tags={"t": "dev"}, metrics=[("acc", 0, 30, 0.7, "eval"), ("acc", 1, 5, 0.95, "train")]),
    SeedModel("m-3", "other", 300),
    SeedModel("m-4", "gone", 400, stage="deleted", metrics=[("acc", 0, 1, 0.99, None)]),
    SeedModel("m-5", "elsewhere", 500, experiment=1),
]  # fmt: skip


async def seed_models(conn: asyncpg.Connection) -> None:
    await add_experiment(conn, 1, "other")
    for model in MODELS:
        await conn.execute(
            "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location,"
            " creation_timestamp_ms, last_updated_timestamp_ms, status, lifecycle_stage,"
            " model_type, source_run_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            model.model_id, model.experiment, model.name, f"mlflow-artifacts:/0/models/{model.model_id}",
            model.created, model.created + 50, model.status, model.stage, model.model_type,
            model.source_run_id,
        )  # fmt: skip
        for table, values in (
            ("logged_model_params", model.params),
            ("logged_model_tags", model.tags),
        ):
            await conn.executemany(
                f"INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3)",
                [(model.model_id, k, v) for k, v in values.items()],
            )
        await conn.executemany(
            "INSERT INTO logged_model_metrics (run_id, key, step, timestamp_ms, value, model_id, dataset_name)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [("run1", *point[:4], model.model_id, point[4]) for point in model.metrics],
        )


async def search_models(
    conn: asyncpg.Connection,
    filter_string: str | None = None,
    order_by: Sequence[Mapping[str, object]] = (),
    experiment_ids: Sequence[int] = (0,),
    max_results: int = 1000,
    offset: int = 0,
) -> list[str]:
    sql, params = compile_logged_model_search(
        list(experiment_ids), filter_string, list(order_by), max_results, offset
    )
    return [row["model_id"] for row in await conn.fetch(sql, *params)]


EXPECTED_MODEL_FILTERS: list[tuple[str | None, list[str]]] = [
    (None, ["m-3", "m-2", "m-1"]),  # active only, creation DESC
    ("metrics.acc > 0.8", ["m-2", "m-1"]),  # any logged value matches, as in MLflow's store
    ("metrics.acc < 0.6", ["m-1"]),
    ("metrics.acc >= 0.99", []),  # only the deleted model has it
    ("params.p = 'x'", ["m-1"]),
    ("params.p IN ('x', 'y')", ["m-2", "m-1"]),
    ("params.p != 'x'", ["m-2"]),
    ("tags.t LIKE 'P%'", ["m-1"]),
    ("tags.t ILIKE 'p%'", ["m-1"]),
    ("tags.t NOT IN ('dev')", ["m-1"]),
    ("name LIKE 'model-%'", ["m-2", "m-1"]),
    ("model_id IN ('m-1', 'm-3', 'm-4')", ["m-3", "m-1"]),
    ("status = 'LOGGED_MODEL_READY'", ["m-3", "m-1"]),
    ("source_run_id = 'run1'", ["m-1"]),
    ("source_run_id != 'run1'", []),  # NULL source_run_id never matches
    ("creation_time > 150", ["m-3", "m-2"]),
    ("last_updated_timestamp <= 150", ["m-1"]),
    ("model_type = 'sklearn' AND metrics.acc > 0", ["m-1"]),
]


async def test_logged_model_filters(conn: asyncpg.Connection) -> None:
    await seed_models(conn)
    for filter_string, expected in EXPECTED_MODEL_FILTERS:
        assert await search_models(conn, filter_string) == expected, filter_string
    assert await search_models(conn, experiment_ids=[0, 1]) == ["m-5", "m-3", "m-2", "m-1"]


EXPECTED_MODEL_ORDERS: list[tuple[list[dict[str, object]], list[str]]] = [
    # the latest value by timestamp: m-1 0.9, m-2 0.7; m-3 has none and sorts last
    ([{"field_name": "metrics.acc", "ascending": False}], ["m-1", "m-2", "m-3"]),
    ([{"field_name": "metrics.acc", "ascending": True}], ["m-2", "m-1", "m-3"]),
    # only values logged on "train": m-2 0.95; the others tie and fall back to creation DESC
    ([{"field_name": "metrics.acc", "dataset_name": "train"}], ["m-2", "m-3", "m-1"]),
    ([{"field_name": "name"}], ["m-1", "m-2", "m-3"]),
    ([{"field_name": "creation_time", "ascending": True}], ["m-1", "m-2", "m-3"]),
    ([{"field_name": "source_run_id", "ascending": False}], ["m-1", "m-3", "m-2"]),  # NULLs last
]


async def test_logged_model_ordering_and_paging(conn: asyncpg.Connection) -> None:
    await seed_models(conn)
    for order_by, expected in EXPECTED_MODEL_ORDERS:
        assert await search_models(conn, order_by=order_by) == expected, order_by
    assert await search_models(conn, max_results=1, offset=1) == ["m-2", "m-1"]
    with pytest.raises(InvalidParameter):
        await search_models(conn, order_by=[{"field_name": "params.p"}])
