"""Search SQL groups clauses on one key of a one-row-per-key table into one EXISTS (issue 11 §2).

The grouped SQL must select exactly what the former one-subquery-per-clause SQL selected. Random
filters (repeated keys, every operator, NaN, missing keys, IS NULL next to comparisons on the same
key) run both ways against the same PostgreSQL data and must return the same ids in the same order,
for runs, experiments and logged models.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from metricgate.search.filter import MAX_FILTER_CLAUSES
from metricgate.stores.postgres.search_sql import (
    compile_experiment_search,
    compile_logged_model_search,
    compile_run_search,
)

KEYS = ("a", "b", "c")
NUMBERS = (-1.0, 0.0, 0.5, 1.0, 2.0, math.inf, math.nan)
STRINGS = ("x", "y", "xy", "Y", "")
TRIALS = 400


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(db_url)
    try:
        yield connection
    finally:
        await connection.close()


def _maybe_values(rng: random.Random, pool: tuple[object, ...]) -> dict[str, object]:
    # Each key is missing about a third of the time, so IS NULL / != on a missing row is covered.
    return {k: rng.choice(pool) for k in KEYS if rng.random() < 0.67}


async def _seed(conn: asyncpg.Connection, rng: random.Random) -> None:
    for n in range(40):
        run_id = f"{n:032x}"
        await conn.execute(
            "INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time,"
            " lifecycle_stage, artifact_uri) VALUES ($1, 0, $2, 'u', 'FINISHED', $3, 'active', $4)",
            run_id, f"run{n}", n % 7, f"mlflow-artifacts:/0/{run_id}/artifacts",
        )  # fmt: skip
        await conn.executemany(
            "INSERT INTO latest_metrics (run_id, key, step, timestamp_ms, value) VALUES ($1, $2, 0, 0, $3)",
            [(run_id, k, v) for k, v in _maybe_values(rng, NUMBERS).items()],
        )
        for table in ("params", "tags"):
            await conn.executemany(
                f"INSERT INTO {table} (run_id, key, value) VALUES ($1, $2, $3)",
                [(run_id, k, v) for k, v in _maybe_values(rng, STRINGS).items()],
            )
    for n in range(1, 31):
        await conn.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage,"
            " creation_time, last_update_time) VALUES ($1, $2, $3, 'active', $4, 0)",
            n, f"exp{n}", f"mlflow-artifacts:/{n}", n % 5,
        )  # fmt: skip
        await conn.executemany(
            "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3)",
            [(n, k, v) for k, v in _maybe_values(rng, STRINGS).items()],
        )
    for n in range(30):
        model_id = f"m-{n:032x}"
        await conn.execute(
            "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location,"
            " creation_timestamp_ms, last_updated_timestamp_ms, lifecycle_stage)"
            " VALUES ($1, 0, $2, $3, $4, 0, 'active')",
            model_id, f"model{n}", f"mlflow-artifacts:/0/models/{model_id}", n % 4,
        )  # fmt: skip
        for table in ("logged_model_params", "logged_model_tags"):
            await conn.executemany(
                f"INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3)",
                [(model_id, k, v) for k, v in _maybe_values(rng, STRINGS).items()],
            )
        # Several values per key: metric clauses on models are never grouped.
        for step in range(rng.randrange(3)):
            await conn.executemany(
                "INSERT INTO logged_model_metrics (model_id, run_id, key, step, timestamp_ms, value)"
                " VALUES ($1, 'r', $2, $3, 0, $4)",
                [(model_id, k, step, v) for k, v in _maybe_values(rng, NUMBERS).items()],
            )


def _number(rng: random.Random) -> str:
    return rng.choice(("-1", "0", "0.5", "1", "2", "1e308"))


def _string(rng: random.Random) -> str:
    return "'" + rng.choice(("x", "y", "xy", "Y", "", "x%", "%y", "_")) + "'"


def _string_clause(rng: random.Random, subject: str, ops: tuple[str, ...]) -> str:
    op = rng.choice(ops)
    if op in ("IS NULL", "IS NOT NULL"):
        return f"{subject} {op}"
    if op in ("IN", "NOT IN"):
        items = ", ".join(_string(rng) for _ in range(rng.randint(1, 3)))
        return f"{subject} {op} ({items})"
    return f"{subject} {op} {_string(rng)}"


_RUN_STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL")
_NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=")


def _run_clause(rng: random.Random) -> str:
    kind, key = rng.choice(("metrics", "params", "tags", "attr")), rng.choice(KEYS)
    if kind == "metrics":
        return f"metrics.{key} {rng.choice(_NUMERIC_OPS)} {_number(rng)}"
    if kind == "attr":
        return f"start_time {rng.choice(_NUMERIC_OPS)} {rng.randrange(7)}"
    return _string_clause(rng, f"{kind}.{key}", _RUN_STRING_OPS)


def _experiment_clause(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return f"creation_time {rng.choice(_NUMERIC_OPS)} {rng.randrange(5)}"
    return _string_clause(rng, f"tags.{rng.choice(KEYS)}", _RUN_STRING_OPS)


def _logged_model_clause(rng: random.Random) -> str:
    kind, key = rng.choice(("metrics", "params", "tags", "attr")), rng.choice(KEYS)
    if kind == "metrics":
        return f"metrics.{key} {rng.choice(_NUMERIC_OPS)} {_number(rng)}"
    if kind == "attr":
        return f"creation_timestamp {rng.choice(_NUMERIC_OPS)} {rng.randrange(4)}"
    return _string_clause(rng, f"{kind}.{key}", ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"))


def _random_filter(rng: random.Random, clause: Callable[[random.Random], str]) -> str:
    clauses = [clause(rng) for _ in range(rng.randint(1, 8))]
    if rng.random() < 0.3:  # repeat a clause verbatim: duplicates are folded when grouped
        clauses.append(rng.choice(clauses))
    return " AND ".join(clauses)


Compile = Callable[[str, bool], "tuple[str, list[object]]"]


def _runs(filter_string: str, group: bool) -> tuple[str, list[object]]:
    return compile_run_search([0], filter_string, [], "ACTIVE_ONLY", 1000, 0, group_by_key=group)


def _experiments(filter_string: str, group: bool) -> tuple[str, list[object]]:
    return compile_experiment_search("ACTIVE_ONLY", filter_string, [], 1000, 0, group_by_key=group)


def _models(filter_string: str, group: bool) -> tuple[str, list[object]]:
    return compile_logged_model_search([0], filter_string, [], 1000, 0, group_by_key=group)


CASES: list[tuple[str, Compile, Callable[[random.Random], str]]] = [
    ("runs", _runs, _run_clause),
    ("experiments", _experiments, _experiment_clause),
    ("logged_models", _models, _logged_model_clause),
]


@pytest.mark.parametrize(("entity", "compile_", "clause"), CASES, ids=[c[0] for c in CASES])
async def test_grouped_sql_selects_what_per_clause_sql_selects(
    conn: asyncpg.Connection, entity: str, compile_: Compile, clause: Callable[[random.Random], str]
) -> None:
    rng = random.Random(f"grouping-{entity}")
    await _seed(conn, rng)
    nonempty = 0
    for _ in range(TRIALS):
        filter_string = _random_filter(rng, clause)
        grouped = [tuple(r) for r in await conn.fetch(*_args(compile_(filter_string, True)))]
        separate = [tuple(r) for r in await conn.fetch(*_args(compile_(filter_string, False)))]
        assert grouped == separate, filter_string
        nonempty += bool(grouped)
    # The data and filters are not degenerate: a good share of filters match something.
    assert nonempty > TRIALS // 10


def _args(compiled: tuple[str, list[object]]) -> tuple[object, ...]:
    sql, params = compiled
    return (sql, *params)


def _subqueries(sql: str) -> int:
    return len(re.findall(r"EXISTS \(", sql))


def test_one_subquery_per_key_and_condition() -> None:
    many = " AND ".join(["metrics.a > 1"] * MAX_FILTER_CLAUSES)
    assert _subqueries(_runs(many, True)[0]) == 1
    assert _subqueries(_runs(many, False)[0]) == MAX_FILTER_CLAUSES
    mixed = (
        "metrics.a > 1 AND metrics.a < 3 AND params.a != 'x' AND params.a LIKE 'y%'"
        " AND params.a IS NULL AND params.a IS NULL AND tags.a IS NOT NULL AND tags.a = 'x'"
    )
    # metrics.a, params.a (present), params.a (absent), tags.a
    assert _subqueries(_runs(mixed, True)[0]) == 4
    assert _subqueries(_experiments("tags.a != 'x' AND tags.a != 'y' AND tags.b IS NULL", True)[0]) == 2
    # Model metrics keep every logged value: one subquery per clause; params and tags group.
    model_filter = "metrics.a > 1 AND metrics.a < 3 AND params.a = 'x' AND params.a LIKE 'x%'"
    assert _subqueries(_models(model_filter, True)[0]) == 3


async def test_grouped_at_the_limit_is_quick(conn: asyncpg.Connection) -> None:
    # 100 clauses on one key and 100 clauses over 25 keys: one subquery per key keeps planning
    # cheap (the per-clause form took seconds at this size).
    import time

    rng = random.Random("limit")
    await _seed(conn, rng)
    one_key = " AND ".join(["metrics.a > 1"] * MAX_FILTER_CLAUSES)
    spread = " AND ".join(f"params.k{n % 25} != 'v{n}'" for n in range(MAX_FILTER_CLAUSES))
    for filter_string in (one_key, spread):
        started = time.monotonic()
        await conn.fetch(*_args(_runs(filter_string, True)))
        assert time.monotonic() - started < 2.0, filter_string[:60]
