"""Search filters are bounded (issue 11 §2): at most MAX_FILTER_CLAUSES comparisons and
MAX_FILTER_KEYS distinct metric/param/tag/dataset keys, refused with 400 INVALID_PARAMETER_VALUE
before any SQL runs; what the limits allow answers quickly (one subquery per key).

The issue's request — ``metrics.a > 1`` x300 on runs/search — used to hold a database
connection for 60 s and then answer 503. The guard runs every search endpoint that parses a
filter (runs, experiments, logged models, registered models, model versions) at, and one past,
each limit.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest
from tests.api.conftest import Api, Reply

from metricgate.domain.search.filter import MAX_FILTER_CLAUSES, MAX_FILTER_KEYS

BAD, INVALID = 400, "INVALID_PARAMETER_VALUE"
# Generous against CI noise: the point is "not tens of seconds", measured through HTTP.
QUICK_S = 2.0

Search = Callable[[Api, str], Awaitable[Reply]]


async def _runs(api: Api, filter_string: str) -> Reply:
    exp_id = await api.create_experiment()
    return await api.post("/runs/search", {"experiment_ids": [exp_id], "filter": filter_string})


async def _experiments(api: Api, filter_string: str) -> Reply:
    return await api.post("/experiments/search", {"filter": filter_string, "max_results": 10})


async def _logged_models(api: Api, filter_string: str) -> Reply:
    exp_id = await api.create_experiment()
    return await api.post(
        "/logged-models/search", {"experiment_ids": [exp_id], "filter": filter_string}
    )


async def _registered_models(api: Api, filter_string: str) -> Reply:
    return await api.get("/registered-models/search", {"filter": filter_string})


async def _model_versions(api: Api, filter_string: str) -> Reply:
    return await api.get("/model-versions/search", {"filter": filter_string})


SEARCHES: dict[str, Search] = {
    "runs": _runs,
    "experiments": _experiments,
    "logged_models": _logged_models,
    "registered_models": _registered_models,
    "model_versions": _model_versions,
}


def _same_key(n: int) -> str:
    # tags.* is the one keyed prefix every search grammar accepts.
    return " AND ".join(["tags.a = 'x'"] * n)


def _distinct_keys(n: int) -> str:
    return " AND ".join(f"tags.k{i} = 'x'" for i in range(n))


async def _timed(search: Search, api: Api, filter_string: str) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = await search(api, filter_string)
    return reply, time.monotonic() - started


@pytest.mark.parametrize("entity", list(SEARCHES))
async def test_clause_limit_on_every_search(api: Api, entity: str) -> None:
    search = SEARCHES[entity]
    (await search(api, _same_key(MAX_FILTER_CLAUSES))).ok()
    message = (await search(api, _same_key(MAX_FILTER_CLAUSES + 1))).error(BAD, INVALID)
    assert f"at most {MAX_FILTER_CLAUSES} comparisons" in message


@pytest.mark.parametrize("entity", list(SEARCHES))
async def test_distinct_key_limit_on_every_search(api: Api, entity: str) -> None:
    search = SEARCHES[entity]
    (await search(api, _distinct_keys(MAX_FILTER_KEYS))).ok()
    message = (await search(api, _distinct_keys(MAX_FILTER_KEYS + 1))).error(BAD, INVALID)
    assert f"at most {MAX_FILTER_KEYS} distinct" in message


async def test_issue_300_clause_filter_is_refused_at_once(api: Api) -> None:
    filter_string = " AND ".join(["metrics.a > 1"] * 300)
    reply, elapsed = await _timed(_runs, api, filter_string)
    reply.error(BAD, INVALID, f"at most {MAX_FILTER_CLAUSES} comparisons")
    assert elapsed < QUICK_S, elapsed


async def test_limit_counts_keys_per_entity_and_ignores_attributes(api: Api) -> None:
    # metrics.k0 and params.k0 are two keys (two tables); attributes need no subquery.
    keys = [f"{prefix}.k{i}" for prefix in ("metrics", "params") for i in range(13)]
    over = " AND ".join(f"{k} > 1" if k.startswith("metrics") else f"{k} = 'x'" for k in keys)
    (await _runs(api, over)).error(BAD, INVALID, f"at most {MAX_FILTER_KEYS} distinct")
    at_limit = " AND ".join(
        [
            *(f"metrics.k{i} > 1" for i in range(MAX_FILTER_KEYS)),
            "start_time > 0",
            "status = 'FINISHED'",
        ]
    )
    (await _runs(api, at_limit)).ok()


async def test_at_the_limits_answers_quickly_and_correctly(api: Api) -> None:
    exp_id = await api.create_experiment()
    match = await api.new_run_id(exp_id)
    miss = await api.new_run_id(exp_id)
    keys = [f"k{i}" for i in range(MAX_FILTER_KEYS - 1)]  # + metrics.a: exactly the limit
    for run_id, value in ((match, 5.0), (miss, 0.5)):
        params = [{"key": k, "value": "v"} for k in keys]
        metrics = [{"key": "a", "value": value, "timestamp": 1, "step": 0}]
        (await api.log_batch(run_id, metrics=metrics, params=params)).ok()

    async def search(filter_string: str) -> tuple[list[str], float]:
        started = time.monotonic()
        body = (
            await api.post("/runs/search", {"experiment_ids": [exp_id], "filter": filter_string})
        ).ok()
        return [r["info"]["run_id"] for r in body.get("runs", [])], time.monotonic() - started

    # 100 clauses on one key: one subquery.
    found, elapsed = await search(" AND ".join(["metrics.a > 1"] * MAX_FILTER_CLAUSES))
    assert found == [match] and elapsed < QUICK_S, elapsed
    # 100 clauses over 25 distinct keys, negative comparisons included.
    spread = " AND ".join(
        f"params.{keys[n % len(keys)]} {'!=' if n % 2 else '='} '{'w' if n % 2 else 'v'}'"
        for n in range(MAX_FILTER_CLAUSES - 1)
    )
    found, elapsed = await search(spread + " AND metrics.a > 1")
    assert found == [match] and elapsed < QUICK_S, elapsed


def test_limits_are_documented() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"{MAX_FILTER_CLAUSES} comparisons" in readme and f"{MAX_FILTER_KEYS} distinct" in readme
