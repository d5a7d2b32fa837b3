"""Search SQL groups the clauses on one-row-per-key tables (issue 11 §2): one EXISTS per key for a
few keys, one correlated count per table (params, tags, latest metrics...) beyond; clauses on
logged-model metrics (several values per key) one EXISTS each while few, one aggregate beyond.

The grouped SQL must select exactly what the former one-subquery-per-clause SQL selected. Random
filters (repeated keys, every operator, NaN and infinite metric values, missing keys, IS NULL next
to comparisons on the same key, attribute clauses) with random sort keys (metrics, params, tags,
attributes) run both ways against the same PostgreSQL data and must return the same ids in the same
order, for runs, experiments and logged models, with each grouped form.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from metricgate.domain.search.filter import MAX_FILTER_CLAUSES
from metricgate.stores.postgres import search_sql
from metricgate.stores.postgres.search_sql import (
    compile_experiment_search,
    compile_logged_model_search,
    compile_run_search,
)

KEYS = ("a", "b", "c", "d", "e")
NUMBERS = (-1.0, 0.0, 0.5, 1.0, 2.0, math.inf, -math.inf, math.nan)
STRINGS = ("x", "y", "xy", "Y", "")
TRIALS = 200


def _maybe_values(rng: random.Random, pool: tuple[object, ...]) -> dict[str, object]:
    # Each key is missing about a fifth of the time, so IS NULL / != on a missing row is covered,
    # while filters over all five keys (the counts of the default form) still match something.
    return {k: rng.choice(pool) for k in KEYS if rng.random() < 0.8}


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
        # Several values per key: each metric clause on a model may be met by a different value.
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
        if rng.random() < 0.5:
            return f"run_name {rng.choice(('LIKE', '!=', 'ILIKE'))} '{rng.choice(('run1%', 'RUN2', '%3'))}'"
        return f"start_time {rng.choice(_NUMERIC_OPS)} {rng.randrange(7)}"
    return _string_clause(rng, f"{kind}.{key}", _RUN_STRING_OPS)


def _run_order(rng: random.Random) -> list[str]:
    subjects = [f"{kind}.{key}" for kind in ("metrics", "params", "tags") for key in KEYS]
    subjects += ["start_time", "run_name"]
    return [f"{s} {rng.choice(('ASC', 'DESC'))}" for s in rng.sample(subjects, rng.randrange(3))]


def _model_order(rng: random.Random) -> list[dict[str, object]]:
    subjects = [f"metrics.{key}" for key in KEYS] + ["creation_timestamp", "name"]
    return [
        {"field_name": s, "ascending": rng.random() < 0.5}
        for s in rng.sample(subjects, rng.randrange(3))
    ]


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
    clauses = [clause(rng) for _ in range(rng.randint(1, 10))]
    if rng.random() < 0.3:  # repeat a clause verbatim: duplicates are folded when grouped
        clauses.append(rng.choice(clauses))
    return " AND ".join(clauses)


Compile = Callable[[str, bool, Any], "tuple[str, list[object]]"]


def _runs(filter_string: str, group: bool, order: Any = ()) -> tuple[str, list[object]]:
    return compile_run_search([0], filter_string, order, "ACTIVE_ONLY", 1000, 0, group_by_key=group)


def _experiments(filter_string: str, group: bool, order: Any = ()) -> tuple[str, list[object]]:
    return compile_experiment_search(
        "ACTIVE_ONLY", filter_string, order, 1000, 0, group_by_key=group
    )


def _models(filter_string: str, group: bool, order: Any = ()) -> tuple[str, list[object]]:
    return compile_logged_model_search([0], filter_string, order, 1000, 0, group_by_key=group)


def _no_order(rng: random.Random) -> list[str]:
    return []


CASES: list[tuple[str, Compile, Callable[[random.Random], str], Callable[[random.Random], Any]]] = [
    ("runs", _runs, _run_clause, _run_order),
    ("experiments", _experiments, _experiment_clause, _no_order),
    ("logged_models", _models, _logged_model_clause, _model_order),
]


# 0: every grouped filter is one correlated count per table; the default: one EXISTS per key for
# filters over at most _MAX_EXISTS_KEYS keys, counts for the longer ones.
@pytest.mark.parametrize("exists_keys", [0, search_sql._MAX_EXISTS_KEYS], ids=["counts", "default"])
@pytest.mark.parametrize(
    ("entity", "compile_", "clause", "order"), CASES, ids=[c[0] for c in CASES]
)
async def test_grouped_sql_selects_what_per_clause_sql_selects(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, exists_keys: int, entity: str,
    compile_: Compile, clause: Callable[[random.Random], str], order: Callable[[random.Random], Any],
) -> None:  # fmt: skip
    monkeypatch.setattr(search_sql, "_MAX_EXISTS_KEYS", exists_keys)
    rng = random.Random(f"grouping-{entity}-{exists_keys}")
    await _seed(conn, rng)
    nonempty = counted = 0
    for _ in range(TRIALS):
        filter_string, order_by = _random_filter(rng, clause), order(rng)
        grouped_sql = compile_(filter_string, True, order_by)
        counted += "SELECT count(*)" in grouped_sql[0] or "bool_or(" in grouped_sql[0]
        grouped = [tuple(r) for r in await conn.fetch(*_args(grouped_sql))]
        separate = [
            tuple(r) for r in await conn.fetch(*_args(compile_(filter_string, False, order_by)))
        ]
        assert grouped == separate, (filter_string, order_by)
        nonempty += bool(grouped)
    # The data and filters are not degenerate: a good share of filters match something, and
    # both grouped forms are exercised.
    assert nonempty > TRIALS // 10
    assert counted > TRIALS // 25


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
    assert (
        _subqueries(_experiments("tags.a != 'x' AND tags.a != 'y' AND tags.b IS NULL", True)[0])
        == 2
    )
    # Model metrics keep every logged value: one subquery per clause; params and tags group.
    model_filter = "metrics.a > 1 AND metrics.a < 3 AND params.a = 'x' AND params.a LIKE 'x%'"
    assert _subqueries(_models(model_filter, True)[0]) == 3
    # Beyond _MAX_EXISTS_KEYS keys: one count per table, one NOT EXISTS per table with IS NULL keys.
    wide = (
        " AND ".join(
            f"{kind}.k{n} {op}"
            for n in range(7)
            for kind, op in (("metrics", "> 1"), ("params", "!= 'x'"), ("tags", "LIKE 'y%'"))
        )
        + " AND params.z IS NULL AND tags.z IS NULL AND tags.y IS NULL"
    )
    sql = _runs(wide, True)[0]
    assert (_subqueries(sql), sql.count("SELECT count(*)")) == (2, 3)
    tags = " AND ".join(f"tags.k{n} != 'x' AND tags.k{n} != 'y'" for n in range(25))
    assert _experiments(tags, True)[0].count("SELECT count(*)") == 1
    metrics = " AND ".join(f"metrics.k{n} > {n} AND metrics.k{n} < 100" for n in range(24))
    sql = _models(metrics + " AND params.p = 'x'", True)[0]
    assert (_subqueries(sql), sql.count("SELECT count(*)"), sql.count("bool_or(")) == (0, 1, 48)


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
