"""Registry searches: tag clauses share subqueries, with stock MLflow's tag semantics (issue 11 §2).

The grouped SQL (one EXISTS per key for a few keys, one aggregate over all keys beyond) must select
exactly what the former one-subquery-per-clause SQL selected: random filters (repeated keys, every
operator, missing tags, IS NULL next to comparisons on the same key, the prompt tag) run both ways
against the same PostgreSQL data and must return the same rows in the same order, for registered
models and model versions, with each grouped form. The semantics are those of stock MLflow
3.17.2's SqlAlchemyStore (checked against it with the same random filters when this was written):
``!=`` needs the tag, and prompts are hidden unless the filter asks for them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import asyncpg
import pytest

from metricgate.domain.search.filter import MAX_FILTER_CLAUSES, MAX_FILTER_KEYS
from metricgate.stores.postgres import search_sql
from metricgate.stores.postgres.registry.search import (
    compile_model_version_search,
    compile_registered_model_search,
)

PROMPT = "mlflow.prompt.is_prompt"
KEYS = ("a", "b", "c", "d", PROMPT)
VALUES = ("x", "y", "xy", "Y", "")
PROMPT_VALUES = ("true", "false", "TRUE")
TRIALS = 120


def _tags(rng: random.Random) -> list[tuple[str, str]]:
    # Each key is missing about a third of the time (the prompt tag more often), so "!=" and
    # IS NULL on a missing row, and models without the prompt tag, are covered.
    tags = [(k, rng.choice(VALUES)) for k in KEYS[:-1] if rng.random() < 0.67]
    if rng.random() < 0.4:
        tags.append((PROMPT, rng.choice(PROMPT_VALUES)))
    return tags


async def _seed(conn: asyncpg.Connection, rng: random.Random) -> None:
    for n in range(30):
        key = await conn.fetchval(
            "INSERT INTO registered_models (name, creation_timestamp, last_updated_timestamp, last_version)"
            " VALUES ($1, $2, 0, 3) RETURNING model_key",
            f"model{n}", n % 4,
        )  # fmt: skip
        await conn.executemany(
            "INSERT INTO registered_model_tags (model_key, key, value) VALUES ($1, $2, $3)",
            [(key, k, v) for k, v in _tags(rng)],
        )
        for version in range(1, rng.randint(1, 3) + 1):
            await conn.execute(
                "INSERT INTO model_versions (model_key, version, creation_timestamp, last_updated_timestamp,"
                " source, storage_location, run_id) VALUES ($1, $2, 0, 0, $3, $3, $4)",
                key, version, f"s3://bucket/{n}/{version}", f"{version:032x}",
            )  # fmt: skip
            await conn.executemany(
                "INSERT INTO model_version_tags (model_key, version, key, value) VALUES ($1, $2, $3, $4)",
                [(key, version, k, v) for k, v in _tags(rng)],
            )


def _tag_clause(rng: random.Random) -> str:
    key = rng.choice(KEYS)
    subject = f"tags.`{key}`" if key == PROMPT else f"tags.{key}"
    op = rng.choice(("=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"))
    if op in ("IS NULL", "IS NOT NULL"):
        return f"{subject} {op}"
    pool = PROMPT_VALUES if key == PROMPT else ("x", "y", "xy", "Y", "", "x%", "%y", "_")
    return f"{subject} {op} '{rng.choice(pool)}'"


def _model_clause(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return f"name {rng.choice(('=', '!=', 'LIKE', 'ILIKE'))} '{rng.choice(('model1%', 'model2', '%1'))}'"
    return _tag_clause(rng)


def _version_clause(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return f"version_number {rng.choice(('=', '!=', '<', '<=', '>', '>='))} {rng.randint(1, 3)}"
    return _tag_clause(rng)


def _random_filter(rng: random.Random, clause: Callable[[random.Random], str]) -> str:
    clauses = [clause(rng) for _ in range(rng.randint(1, 8))]
    if rng.random() < 0.3:  # repeat a clause verbatim: duplicates are folded when grouped
        clauses.append(rng.choice(clauses))
    return " AND ".join(clauses)


Compile = Callable[[str, bool], "tuple[str, list[object]]"]


def _models(filter_string: str, group: bool) -> tuple[str, list[object]]:
    return compile_registered_model_search(filter_string, [], 1000, 0, group_by_key=group)


def _versions(filter_string: str, group: bool) -> tuple[str, list[object]]:
    return compile_model_version_search(filter_string, [], 1000, 0, group_by_key=group)


CASES: list[tuple[str, Compile, Callable[[random.Random], str]]] = [
    ("registered_models", _models, _model_clause),
    ("model_versions", _versions, _version_clause),
]


# 0: every grouped filter is one aggregate; the default: one EXISTS per key for most filters here.
@pytest.mark.parametrize(
    "exists_keys", [0, search_sql._MAX_EXISTS_KEYS], ids=["aggregate", "exists"]
)
@pytest.mark.parametrize(("entity", "compile_", "clause"), CASES, ids=[c[0] for c in CASES])
async def test_grouped_sql_selects_what_per_clause_sql_selects(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, exists_keys: int,
    entity: str, compile_: Compile, clause: Callable[[random.Random], str],
) -> None:  # fmt: skip
    monkeypatch.setattr(search_sql, "_MAX_EXISTS_KEYS", exists_keys)
    rng = random.Random(f"registry-grouping-{entity}-{exists_keys}")
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


async def test_tag_semantics_follow_stock_sqlalchemy_store(conn: asyncpg.Connection) -> None:
    tagged = {
        "plain": {},
        "team-a": {"team": "a"},
        "team-b": {"team": "b"},
        "prompt": {PROMPT: "true"},
        "not-prompt": {PROMPT: "false"},
        "upper-prompt": {PROMPT: "TRUE"},  # stock hides only the exact value "true"
    }
    for name, tags in tagged.items():
        key = await conn.fetchval(
            "INSERT INTO registered_models (name, creation_timestamp, last_updated_timestamp, last_version)"
            " VALUES ($1, 0, 0, 1) RETURNING model_key",
            name,
        )
        await conn.execute(
            "INSERT INTO model_versions (model_key, version, creation_timestamp, last_updated_timestamp,"
            " source, storage_location) VALUES ($1, 1, 0, 0, 's3://b/x', 's3://b/x')",
            key,
        )
        await conn.executemany(
            "INSERT INTO registered_model_tags (model_key, key, value) VALUES ($1, $2, $3)",
            [(key, k, v) for k, v in tags.items()],
        )
        await conn.executemany(
            "INSERT INTO model_version_tags (model_key, version, key, value) VALUES ($1, 1, $2, $3)",
            [(key, k, v) for k, v in tags.items()],
        )

    async def names(filter_string: str) -> dict[str, list[str]]:
        found = {}
        for entity, compile_ in (("models", _models), ("versions", _versions)):
            ids = [r[0] for r in await conn.fetch(*_args(compile_(filter_string, True)))]
            rows = await conn.fetch(
                "SELECT name FROM registered_models WHERE model_key = ANY($1) ORDER BY name", ids
            )
            found[entity] = [r["name"] for r in rows]
        assert found["models"] == found["versions"], filter_string  # same tags on both levels
        return found["models"]

    ordinary = ["not-prompt", "plain", "team-a", "team-b", "upper-prompt"]
    # A model without the tag does not match "!=" (any tag but the prompt tag).
    assert await names("tags.team != 'a'") == ["team-b"]
    assert await names("tags.team != 'a' AND tags.team != 'b'") == []
    assert await names("tags.team = 'a' AND tags.team LIKE 'a%'") == ["team-a"]
    # Prompts are hidden by default, and by any prompt-tag clause that does not ask for them:
    # such clauses are dropped, so models without the tag match "!= 'true'" and "= 'false'".
    assert await names("") == ordinary
    assert await names(f"tags.`{PROMPT}` != 'true'") == ordinary
    assert await names(f"tags.`{PROMPT}` = 'false'") == ordinary
    assert await names(f"tags.`{PROMPT}` LIKE 'tr%'") == ordinary
    assert await names(f"tags.`{PROMPT}` != 'true' AND tags.team != 'a'") == ["team-b"]
    # "= 'true'" or "!= 'false'" (any case) asks for prompts: the tag is then an ordinary tag,
    # compared case-sensitively like any other.
    assert await names(f"tags.`{PROMPT}` = 'true'") == ["prompt"]
    assert await names(f"tags.`{PROMPT}` = 'TRUE'") == ["upper-prompt"]
    assert await names(f"tags.`{PROMPT}` != 'false'") == ["prompt", "upper-prompt"]
    assert await names(f"tags.`{PROMPT}` != 'False'") == ["not-prompt", "prompt", "upper-prompt"]
    # Only the first clause on the prompt tag decides, as in stock.
    assert await names(f"tags.`{PROMPT}` = 'true' AND tags.`{PROMPT}` != 'true'") == []
    assert await names(f"tags.`{PROMPT}` != 'true' AND tags.`{PROMPT}` = 'true'") == ordinary
    # IS [NOT] NULL (metricgate's addition; stock refuses them on registry tags) keep their meaning.
    assert await names(f"tags.`{PROMPT}` IS NULL") == ["plain", "team-a", "team-b"]
    assert await names(f"tags.`{PROMPT}` IS NOT NULL") == ["not-prompt", "upper-prompt"]
    assert await names("tags.team IS NULL AND tags.team = 'a'") == []


def _args(compiled: tuple[str, list[object]]) -> tuple[object, ...]:
    sql, params = compiled
    return (sql, *params)


def _subqueries(sql: str) -> int:
    return len(re.findall(r"EXISTS \(|IN \(SELECT ", sql))


def test_tag_clauses_share_subqueries() -> None:
    one_key = " AND ".join(["tags.k != 'v'"] * MAX_FILTER_CLAUSES)
    few_keys = " AND ".join(f"tags.k{n % 4} != 'v{n}'" for n in range(MAX_FILTER_CLAUSES))
    spread = " AND ".join(
        f"tags.k{n % MAX_FILTER_KEYS} != 'v{n}'" for n in range(MAX_FILTER_CLAUSES)
    )
    with_absent = spread.replace("tags.k0 != 'v0'", "tags.k0 IS NULL").replace(
        "tags.k1 != 'v1'", "tags.k1 IS NULL"
    )
    for compile_ in (_models, _versions):
        # Each count includes the prompt rule's NOT EXISTS.
        assert _subqueries(compile_(one_key, True)[0]) == 2
        assert _subqueries(compile_(few_keys, True)[0]) == 5  # one EXISTS per key
        assert _subqueries(compile_(spread, True)[0]) == 2  # one aggregate for all keys
        assert (
            _subqueries(compile_(with_absent, True)[0]) == 3
        )  # and one NOT EXISTS for IS NULL keys
        assert _subqueries(compile_(spread, False)[0]) == MAX_FILTER_CLAUSES + 1
