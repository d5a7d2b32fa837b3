"""Searches filtered in the SQL by the caller's Visibility (docs/design-auth.md B5), against a real
PostgreSQL: full pages, stable offset tokens, exactly the readable rows, and a plan that does not
read the rows of unreadable experiments."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from metricgate.domain.auth.permissions import Grant, Permission, ResourceType
from metricgate.domain.auth.visibility import (
    NOTHING,
    UNRESTRICTED,
    Mode,
    Visibility,
    visibility,
)
from metricgate.domain.registry.entities import Audit
from metricgate.domain.tracking.entities import Page
from metricgate.registry.service import RegistryService
from metricgate.stores.postgres.experiments import PgExperimentStore
from metricgate.stores.postgres.logged_models import PgLoggedModelStore
from metricgate.stores.postgres.pool import Database
from metricgate.stores.postgres.registry.search import (
    compile_model_version_search,
    compile_registered_model_search,
)
from metricgate.stores.postgres.registry.store import PgRegistryStore
from metricgate.stores.postgres.runs import PgRunStore
from metricgate.stores.postgres.search_sql import (
    compile_experiment_search,
    compile_run_search,
)

EXPERIMENTS = list(range(1, 21))
RUNS_PER_EXPERIMENT = 100
READABLE = EXPERIMENTS[::2]  # 10 of the 20
EXP = ResourceType.EXPERIMENT
MODEL = ResourceType.REGISTERED_MODEL
PAGE = 7

# A reader of the 10 experiments, as the grants fold: per-id READ with no default (ONLY), and the
# same ids through the default with the other 10 denied (ALL_EXCEPT).
ONLY_READER = visibility(
    [Grant(EXP, str(e), Permission.READ) for e in READABLE], EXP, Permission.NO_PERMISSIONS
)
EXCEPT_READER = visibility(
    [Grant(EXP, str(e), Permission.DENY) for e in EXPERIMENTS if e not in READABLE],
    EXP,
    Permission.READ,
)


def test_the_readers_fold_as_expected() -> None:
    assert ONLY_READER.mode is Mode.ONLY
    assert EXCEPT_READER.mode is Mode.ALL_EXCEPT


async def _seed_tracking(conn: asyncpg.Connection) -> None:
    await conn.executemany(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage,"
        " creation_time, last_update_time) VALUES ($1, $2, $3, 'active', $4, $4)",
        [(e, f"exp-{e:02d}", f"mlflow-artifacts:/{e}", 1000 + e) for e in EXPERIMENTS],
    )
    await conn.executemany(
        "INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time,"
        " end_time, lifecycle_stage, artifact_uri) VALUES ($1, $2, $3, 'u', 'FINISHED', $4, NULL,"
        " 'active', $5)",
        [
            (f"{e:04d}{i:028d}", e, f"run-{e}-{i}", (i * 37) % 500, f"mlflow-artifacts:/{e}/x")
            for e in EXPERIMENTS
            for i in range(RUNS_PER_EXPERIMENT)
        ],
    )
    await conn.executemany(
        "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location,"
        " creation_timestamp_ms, last_updated_timestamp_ms, status, lifecycle_stage)"
        " VALUES ($1, $2, $3, 'mlflow-artifacts:/m', $4, $4, 'READY', 'active')",
        [
            (f"m-{e:02d}{i:02d}", e, f"lm-{e}-{i}", e * 10 + i)
            for e in EXPERIMENTS
            for i in range(3)
        ],
    )
    await conn.execute("ANALYZE")


async def _all_pages(
    search: Callable[[str | None], Awaitable[tuple[list[Any], str | None]]],
) -> list[list[Any]]:
    pages: list[list[Any]] = []
    token: str | None = None
    while True:
        items, token = await search(token)
        pages.append(items)
        if not token:
            return pages
        assert len(pages) < 1000, "paging does not end"


def _check_full_pages(pages: list[list[Any]], expected_total: int) -> list[Any]:
    flat = [item for page in pages for item in page]
    assert len(flat) == expected_total
    assert len(set(flat)) == len(flat), "a row came twice"
    # Every page but the last is full, and the last is not empty unless nothing matched.
    assert all(len(page) == PAGE for page in pages[:-1])
    assert 0 < len(pages[-1]) <= PAGE or expected_total == 0
    return flat


@pytest.mark.parametrize("seen", [ONLY_READER, EXCEPT_READER], ids=["only", "all_except"])
async def test_run_pages_are_full_and_hold_exactly_the_readable_runs(
    db: Database, conn: asyncpg.Connection, seen: Visibility
) -> None:
    await _seed_tracking(conn)
    store = PgRunStore(db)

    async def page(token: str | None) -> tuple[list[str], str | None]:
        rows, next_token = await store.search_rows(
            EXPERIMENTS, None, "ACTIVE_ONLY", PAGE, [], token, visibility=seen
        )
        return rows.ids, next_token

    flat = _check_full_pages(await _all_pages(page), len(READABLE) * RUNS_PER_EXPERIMENT)
    assert {int(run_id[:4]) for run_id in flat} == set(READABLE)
    # The same order as an unrestricted search over only the readable experiments.
    rows, _ = await store.search_rows(READABLE, None, "ACTIVE_ONLY", 5000, [], None)
    assert flat == rows.ids


async def test_runs_of_no_readable_experiment_are_an_empty_page(
    db: Database, conn: asyncpg.Connection
) -> None:
    await _seed_tracking(conn)
    store = PgRunStore(db)
    unreadable = [e for e in EXPERIMENTS if e not in READABLE]
    for seen in (ONLY_READER, EXCEPT_READER, NOTHING):
        rows, token = await store.search_rows(
            unreadable, None, "ACTIVE_ONLY", PAGE, [], None, visibility=seen
        )
        assert (rows.ids, token) == ([], None)
    # Unrestricted: everything, as before.
    rows, _ = await store.search_rows(unreadable, None, "ACTIVE_ONLY", 5000, [], None)
    assert len(rows.ids) == len(unreadable) * RUNS_PER_EXPERIMENT


@pytest.mark.parametrize("seen", [ONLY_READER, EXCEPT_READER], ids=["only", "all_except"])
async def test_experiment_and_logged_model_pages(
    db: Database, conn: asyncpg.Connection, seen: Visibility
) -> None:
    await _seed_tracking(conn)
    experiments = PgExperimentStore(db, "mlflow-artifacts:/")

    async def experiment_page(token: str | None) -> tuple[list[str], str | None]:
        found = await experiments.search("ACTIVE_ONLY", None, [], PAGE, token, visibility=seen)
        return [e.experiment_id for e in found.items], found.next_page_token

    # The Default experiment (0) is readable through the default permission (ALL_EXCEPT).
    readable = [e for e in [0, *EXPERIMENTS] if seen.allows(str(e))]
    flat = _check_full_pages(await _all_pages(experiment_page), len(readable))
    assert sorted(int(e) for e in flat) == readable

    models = PgLoggedModelStore(db)

    async def model_page(token: str | None) -> tuple[list[str], str | None]:
        found = await models.search(EXPERIMENTS, None, [], PAGE, token, visibility=seen)
        return [m.model_id for m in found.items], found.next_page_token

    flat = _check_full_pages(await _all_pages(model_page), len(READABLE) * 3)
    assert {int(m[2:4]) for m in flat} == set(READABLE)


async def test_experiments_hidden_from_everyone_and_shown_to_admins(
    db: Database, conn: asyncpg.Connection
) -> None:
    await _seed_tracking(conn)
    experiments = PgExperimentStore(db, "mlflow-artifacts:/")
    assert await experiments.search("ACTIVE_ONLY", None, [], 50, None, visibility=NOTHING) == Page(
        [], None
    )
    everyone = await experiments.search("ACTIVE_ONLY", None, [], 50, None)
    admin = visibility(
        [Grant(EXP, "*", Permission.DENY)], EXP, Permission.NO_PERMISSIONS, is_admin=True
    )
    assert await experiments.search("ACTIVE_ONLY", None, [], 50, None, visibility=admin) == everyone
    assert len(everyone.items) == len(EXPERIMENTS) + 1  # and the Default experiment


def test_unrestricted_sql_is_unchanged() -> None:
    assert compile_run_search([1, 2], "metrics.a > 1", ["params.p"], "ALL", 10, 0) == (
        compile_run_search(
            [1, 2], "metrics.a > 1", ["params.p"], "ALL", 10, 0, visibility=UNRESTRICTED
        )
    )
    plain = compile_experiment_search("ALL", "name LIKE 'a%'", [], 10, 0)
    assert plain == compile_experiment_search(
        "ALL", "name LIKE 'a%'", [], 10, 0, visibility=UNRESTRICTED
    )
    assert "ANY" not in plain[0]
    assert compile_registered_model_search(None, [], 5, 0) == compile_registered_model_search(
        None, [], 5, 0, visibility=UNRESTRICTED
    )


def test_the_predicates() -> None:
    sql, args = compile_experiment_search("ALL", None, [], 10, 0, visibility=ONLY_READER)
    assert "e.experiment_id = ANY($1::bigint[])" in sql and args[0] == READABLE
    sql, args = compile_experiment_search("ALL", None, [], 10, 0, visibility=EXCEPT_READER)
    assert "NOT (e.experiment_id = ANY($1::bigint[]))" in sql
    assert args[0] == [e for e in EXPERIMENTS if e not in READABLE]
    names = Visibility(Mode.ONLY, frozenset({"b", "a"}))
    sql, args = compile_registered_model_search(None, [], 10, 0, visibility=names)
    assert "rm.name = ANY($1::text[])" in sql and args[0] == ["a", "b"]
    sql, args = compile_model_version_search(None, [], 10, 0, visibility=names)
    assert "rm.name = ANY($1::text[])" in sql and args[0] == ["a", "b"]
    # Runs: the requested experiments cut to the readable; one left is an "=" (its index).
    sql, args = compile_run_search([1, 2, 3], None, [], "ALL", 10, 0, visibility=ONLY_READER)
    assert "r.experiment_id = ANY($1::bigint[])" in sql and args[0] == [1, 3]
    sql, args = compile_run_search([1, 2], None, [], "ALL", 10, 0, visibility=EXCEPT_READER)
    assert "r.experiment_id = $1::bigint" in sql and args[0] == 1


def _scans(plan: dict[str, Any], relation: str) -> list[dict[str, Any]]:
    found = [plan] if plan.get("Relation Name") == relation else []
    for child in plan.get("Plans", []):
        found.extend(_scans(child, relation))
    return found


@pytest.mark.parametrize("seen", [ONLY_READER, EXCEPT_READER], ids=["only", "all_except"])
async def test_the_plan_reads_no_run_of_an_unreadable_experiment(
    conn: asyncpg.Connection, seen: Visibility
) -> None:
    await _seed_tracking(conn)
    # Unreadable experiments 20 times larger: at 2,000 runs a sequential scan is cheaper than
    # any index, whatever the predicate; here the cost must not follow the unreadable rows.
    await conn.execute(
        "INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time,"
        " lifecycle_stage, artifact_uri)"
        " SELECT 'x' || e || '-' || i, e, 'r', 'u', 'FINISHED', i, 'active', 'a'"
        " FROM unnest($1::bigint[]) AS e, generate_series(1, 2000) AS i",
        [e for e in EXPERIMENTS if e not in READABLE],
    )
    await conn.execute("ANALYZE runs")
    sql, args = compile_run_search(
        EXPERIMENTS, "attributes.status = 'FINISHED'", [], "ACTIVE_ONLY", PAGE, 0, visibility=seen
    )
    raw = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    scans = _scans(plan, "runs")
    assert scans, plan
    # The cut is the index's condition: only the readable experiments' runs are read.
    assert any("experiment_id" in node.get("Index Cond", "") for node in _all_nodes(plan)), plan
    read = sum(
        node["Actual Rows"] * node["Actual Loops"] + node.get("Rows Removed by Filter", 0)
        for node in scans
    )
    assert read <= len(READABLE) * RUNS_PER_EXPERIMENT, plan


def _all_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _all_nodes(child))]


async def test_experiment_plan_shows_the_predicate(conn: asyncpg.Connection) -> None:
    await _seed_tracking(conn)
    for seen, shown in ((ONLY_READER, "= ANY"), (EXCEPT_READER, "<> ALL")):
        sql, args = compile_experiment_search("ACTIVE_ONLY", None, [], PAGE, 0, visibility=seen)
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *args))
        assert "experiment_id" in plan and (shown in plan or "ANY" in plan), plan


# ---------------------------------------------------------------- registry

ACTOR = Audit(actor="alice")
MODELS = [f"model-{i:02d}" for i in range(30)]
READABLE_MODELS = MODELS[::3]


@pytest.fixture
async def registry(db: Database) -> RegistryService:
    service = RegistryService(PgRegistryStore(db))
    for name in MODELS:
        await service.create_registered_model(ACTOR, name, [], None)
        for i in range(3):
            await service.create_model_version(
                ACTOR, name, f"s3://b/{name}/{i}", None, [], None, None, None
            )
    return service


async def test_registry_pages_match_on_the_model_name(registry: RegistryService) -> None:
    only = visibility(
        [Grant(MODEL, n, Permission.READ) for n in READABLE_MODELS],
        MODEL,
        Permission.NO_PERMISSIONS,
    )
    except_ = visibility(
        [Grant(MODEL, n, Permission.DENY) for n in MODELS if n not in READABLE_MODELS],
        MODEL,
        Permission.READ,
    )
    for seen in (only, except_):

        async def model_page(
            token: str | None, seen: Visibility = seen
        ) -> tuple[list[str], str | None]:
            page = await registry.search_registered_models(None, [], PAGE, token, visibility=seen)
            return [m.name for m in page.items], page.next_page_token

        flat = _check_full_pages(await _all_pages(model_page), len(READABLE_MODELS))
        assert flat == READABLE_MODELS

        async def version_page(
            token: str | None, seen: Visibility = seen
        ) -> tuple[list[tuple[str, int]], str | None]:
            page = await registry.search_model_versions(None, [], PAGE, token, visibility=seen)
            return [(v.name, v.version) for v in page.items], page.next_page_token

        versions = _check_full_pages(await _all_pages(version_page), len(READABLE_MODELS) * 3)
        assert {name for name, _ in versions} == set(READABLE_MODELS)

    page = await registry.search_model_versions(None, [], 100, None, visibility=NOTHING)
    assert (page.items, page.next_page_token) == ([], None)
    assert len((await registry.search_registered_models(None, [], 100, None)).items) == len(MODELS)
