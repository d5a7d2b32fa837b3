"""How a run search joins its sort keys (stores/postgres/search_sql.py): a plain join while
PostgreSQL can estimate the filter; one primary-key lookup per passing run once the filter has
correlated counts (more than 4 keys), whose one-row estimate made it scan the whole key table for
every run (25 keys x 4 on 2,000 runs ordered by a metric: 312 ms, 45 ms with the lookup).
tests/integration/test_search_grouping.py holds both forms to the same answers."""

from __future__ import annotations

from metricgate.stores.postgres.search_sql import compile_run_search

MANY_KEYS = " AND ".join(f"params.p{k} LIKE 'a%'" for k in range(25))
FEW_KEYS = "params.p1 LIKE 'a%' AND metrics.m1 > 0.5"


def _sql(filter_string: str | None, order_by: list[str]) -> str:
    return compile_run_search([1], filter_string, order_by, "ACTIVE_ONLY", 100, 0)[0]


def test_a_misestimated_filter_looks_sort_keys_up_per_run() -> None:
    sql = _sql(MANY_KEYS, ["metrics.m0 DESC", "params.p3", "tags.t1"])
    assert sql.count("LEFT JOIN LATERAL") == 3 and sql.count("LIMIT 1) AS s") == 3


def test_an_estimable_filter_keeps_the_plain_join() -> None:
    for filter_string in (None, FEW_KEYS):
        sql = _sql(filter_string, ["metrics.m0 DESC", "tags.t1"])
        assert "LATERAL" not in sql and sql.count("LEFT JOIN ") == 2
