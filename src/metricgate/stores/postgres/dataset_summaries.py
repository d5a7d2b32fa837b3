"""The datasets logged to experiments (``runs/log-inputs``), summarised for the runs page's
dataset filter (``experiments/search-datasets``)."""

from __future__ import annotations

from collections.abc import Sequence

from metricgate.stores.base import DatasetSummary
from metricgate.stores.postgres.pool import Database

# Stock's MAX_DATASET_SUMMARIES_RESULTS: the UI shows a picker, not a listing.
MAX_SUMMARIES = 1000
# The input tag that says what a dataset was used for ("training", "eval", ...).
CONTEXT_TAG = "mlflow.data.context"


class PgDatasetSummaries:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def search(self, experiment_ids: Sequence[int]) -> list[DatasetSummary]:
        """Distinct (experiment, name, digest, context) of the datasets the experiments' runs
        logged as inputs, as stock's SqlAlchemyStore._search_datasets computes them.

        A dataset used in several contexts appears once per context; one logged without a
        context tag appears with none (stock's outer join). Like stock, runs and experiments are
        not filtered by lifecycle stage. The order, which stock leaves to the database, is fixed
        here so that the 1000-row cut is stable.
        """
        async with self._db.read_connection() as conn:
            rows = await conn.fetch(
                """SELECT DISTINCT d.experiment_id, d.name, d.digest, ctx.value AS context
                   FROM datasets AS d
                   JOIN run_dataset_inputs AS i USING (dataset_id)
                   LEFT JOIN LATERAL (
                       SELECT t ->> 'value' AS value FROM jsonb_array_elements(i.tags) AS t
                       WHERE t ->> 'key' = $2
                   ) AS ctx ON true
                   WHERE d.experiment_id = ANY($1::bigint[])
                   ORDER BY d.experiment_id, d.name, d.digest, context NULLS FIRST
                   LIMIT $3""",
                list(experiment_ids),
                CONTEXT_TAG,
                MAX_SUMMARIES,
            )
        return [
            DatasetSummary(str(r["experiment_id"]), r["name"], r["digest"], r["context"])
            for r in rows
        ]
