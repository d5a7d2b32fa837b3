"""metricgate's chart sampling against the installed MLflow's own SQL store (on SQLite).

Not a unit test: it drives MLflow's SqlAlchemyStore, which creates a database and runs its
migrations (tens of seconds on a loaded machine); the pure sampling tests are in
tests/unit/test_metric_series.py.
"""

from __future__ import annotations

import random

import pytest
from tests.unit.test_metric_series import chunk, triples

from metricgate.stores.postgres.metric_series import merge_chunks, sample_series


def _mlflow_store(tmp_path):
    sqlalchemy_store = pytest.importorskip("mlflow.store.tracking.sqlalchemy_store")
    return sqlalchemy_store.SqlAlchemyStore(
        f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "artifacts")
    )


def test_sampling_matches_mlflow_sqlalchemy_store(tmp_path):
    # The oracle is the installed MLflow's own SQL store (its NTILE query, on SQLite): random
    # histories with several points per step, identical points logged twice, negative steps,
    # step ranges and every max_results edge. NaN is left out: MLflow orders a NaN as 0.
    entities = pytest.importorskip("mlflow.entities")
    store = _mlflow_store(tmp_path)
    experiment_id = store.create_experiment("sampling")
    rng = random.Random(2024)
    for case in range(60):
        run_id = store.create_run(experiment_id, "u", 0, [], f"r{case}").info.run_id
        n = rng.choice([1, 5, 30, 200, 1000])
        step_span = rng.choice([3, n, 5 * n])
        pts = [
            (rng.randint(-5, step_span), rng.randint(0, 4), float(rng.randint(0, 50)))
            for _ in range(n)
        ]
        pts += rng.sample(pts, k=min(len(pts), 5))  # logged twice
        for i in range(0, len(pts), 900):
            batch = [entities.Metric("k", v, t, s) for s, t, v in pts[i : i + 900]]
            store.log_batch(run_id, metrics=batch, params=[], tags=[])
        ours = merge_chunks(
            run_id, "k", [chunk([p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts])]
        )
        for max_results in (1, 2, 7, 320, 2500):
            for start, end in (
                (None, None),
                tuple(sorted(rng.sample(range(-6, step_span + 2), 2))),
            ):
                theirs = store.get_metric_history_bulk_interval(
                    [run_id], "k", max_results, start, end
                )
                got = sample_series(ours, max_results, start, end)
                assert triples(got) == [(m.step, m.timestamp, m.value) for m in theirs], (
                    case,
                    max_results,
                    start,
                    end,
                )
