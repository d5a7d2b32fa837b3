"""History reads over stored chunks on a real PostgreSQL: MLflow's plot sampling located from
the chunks' point counts (migration 0008) answers exactly as the general path that folds and
sorts every point, and a long history's page reads only the chunks that can hold it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from metricgate.config import PostgresSettings
from metricgate.domain.metrics.chunks import build_batch, chunks_from_rows
from metricgate.stores.postgres import metrics as pg_metrics
from metricgate.stores.postgres.metrics import PgMetricHistory, PgMetricWriter
from metricgate.stores.postgres.pool import Database, create_pool

RUN = "a" * 32


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    pool = await create_pool(
        PostgresSettings(url=db_url, pool_min_size=1, pool_max_size=4, command_timeout_s=30)
    )
    database = Database(pool, acquire_timeout_s=5)
    try:
        yield database
    finally:
        await database.aclose()


async def write_requests(
    db: Database, run_id: str, requests: list[list[tuple[int, int, float]]]
) -> None:
    """Each list of (step, timestamp, value) as one log request of key "loss" (one chunk)."""
    writer = PgMetricWriter(db)
    for points in requests:
        rows = [(run_id, "loss", s, t, v, None, None, None) for s, t, v in points]
        await writer.write(build_batch(chunks_from_rows(rows)))


def triples(series: list[Any]) -> list[list[tuple[Any, ...]]]:
    return [[s.run_id, *zip(s.steps, s.timestamps_ms, s.values, strict=True)] for s in series]


async def test_rank_path_answers_as_the_general_path(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(5)
    runs = {}
    for r in range(3):
        run_id = f"{r:032x}"
        step, requests = rng.randint(-20, 5), []
        for _ in range(rng.randint(2, 9)):  # a training loop: requests in step order
            points = []
            for _ in range(rng.randint(1, 300)):
                step += rng.randint(1, 3)
                points.append((step, 1000 + step, rng.random()))
            requests.append(points)
        rng.shuffle(requests)  # stored in any order
        await write_requests(db, run_id, requests)
        runs[run_id] = step
    history = PgMetricHistory(db)
    asked = [*runs, "f" * 32, next(iter(runs))]
    cases = [
        (320, None, None),
        (1, None, None),
        (7, None, None),
        (2500, None, None),
        (5, 10, 200),
        (40, 150, 151),
    ]
    for max_results, start, end in cases:
        fast = await history.bulk_interval(asked, "loss", max_results, start, end)
        monkeypatch.setattr(pg_metrics, "_RANKS_FROM_COUNTS", False)
        general = await history.bulk_interval(asked, "loss", max_results, start, end)
        monkeypatch.setattr(pg_metrics, "_BULK_WHOLE_ROWS", 0)  # PostgreSQL's NTILE query
        ntile = await history.bulk_interval(asked, "loss", max_results, start, end)
        monkeypatch.undo()
        assert triples(fast) == triples(general) == triples(ntile), (max_results, start, end)
        assert [s.run_id for s in fast] == [r for r in runs if any(s.run_id == r for s in fast)]
        for s in fast:
            assert len(s) <= max(1, max_results)


async def test_overlapping_chunks_take_the_general_path(db: Database) -> None:
    # Two requests carrying the same points (stored twice, read once) and a request out of step
    # order: ranks do not follow from counts; the answer still folds and samples as MLflow.
    points = [(s, 5, s / 10) for s in range(50)]
    await write_requests(db, RUN, [points, points[10:20], [(60, 1, 1.0), (55, 1, 2.0)]])
    history = PgMetricHistory(db)
    (series,) = await history.bulk_interval([RUN], "loss", 7, None, None)
    assert len(series) == 7 and series.steps[0] == 0 and series.steps[-1] == 60
    assert len((await history.bulk_interval([RUN], "loss", 2500, None, None))[0]) == 52


async def chunks_unnested(conn: asyncpg.Connection, sql: str, *args: Any) -> int:
    """How many chunks a history page query opened (EXPLAIN ANALYZE: loops of the unnest)."""
    plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    import json

    def walk(node: dict[str, Any]) -> int:
        own = node.get("Actual Loops", 0) if node.get("Node Type") == "Function Scan" else 0
        return own + sum(walk(child) for child in node.get("Plans", []))

    return walk(json.loads(plan)[0]["Plan"])


async def test_a_late_page_opens_as_few_chunks_as_the_first(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 60 requests of 500 points: 30,000 points, paged 1,000 at a time by PostgreSQL.
    await write_requests(
        db, RUN, [[(s, s, s / 7) for s in range(i * 500, (i + 1) * 500)] for i in range(60)]
    )
    monkeypatch.setattr(pg_metrics, "_HISTORY_WHOLE_POINTS", 0)
    history = PgMetricHistory(db)
    token, pages, seen = None, 0, []
    while True:
        page = await history.history(RUN, "loss", 1000, token)
        seen += page.items[0].steps
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 30 and seen == list(range(30_000))
    async with db.connection() as conn:
        opened = {}
        for label, after in (
            ("page 2", (999, 999, 999 / 7)),
            ("page 30", (28_999, 28_999, 28_999 / 7)),
        ):
            bound, _ = await conn.fetchrow(
                pg_metrics._PAGE_BOUND_AFTER, RUN, "loss", 1001, after[0]
            )
            opened[label] = await chunks_unnested(
                conn, pg_metrics._HISTORY_PAGE_AFTER, RUN, "loss", *after, 1001, bound
            )
        bound, _ = await conn.fetchrow(pg_metrics._PAGE_BOUND_FROM_START, RUN, "loss", 1001)
        opened["page 1"] = await chunks_unnested(
            conn, pg_metrics._HISTORY_PAGE_BY_OFFSET, RUN, "loss", 1001, 0, bound
        )
    # A page of 1,000 points spans at most 4 chunks of 500 (it may start and end mid-chunk).
    assert max(opened.values()) <= 4, opened
