"""Metric history reads: the full paged history and the downsampled form the UI plots."""

from __future__ import annotations

from aiohttp import web

from metricgate.api.codec import (
    Fields,
    encode_metric_series,
    json_response,
    page_response,
    read_fields,
)
from metricgate.api.keys import SERVICE
from metricgate.api.routing import Route
from metricgate.api.services import AppServices
from metricgate.domain.auth.access import On, Target, Where
from metricgate.domain.auth.permissions import Permission
from metricgate.domain.errors import InvalidParameter
from metricgate.domain.tracking.entities import MetricSeries
from metricgate.domain.tracking.rules import (
    MAX_METRIC_HISTORY_PAGE,
    validate_max_results,
    validate_run_id,
)

# mlflow/server/handlers.py: MAX_RUNS_GET_METRIC_HISTORY_BULK, MAX_RESULTS_PER_RUN
MAX_BULK_RUNS = 100
MAX_BULK_RESULTS_PER_RUN = 2500


async def get_history(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    run_id = fields.run_id()
    validate_run_id(run_id)
    key = fields.req_str("metric_key")
    max_results = validate_max_results(
        fields.int("max_results"), MAX_METRIC_HISTORY_PAGE, MAX_METRIC_HISTORY_PAGE
    )
    service = request.app[SERVICE]
    await service.metrics.wait_visible(run_id)
    page = await service.history.history(run_id, key, max_results, fields.str("page_token") or None)
    if not page.items:
        # Points exist only for existing runs, so only an empty page needs the run looked up
        # (MLflow answers 404 for an unknown run): one query less on every non-empty read.
        await service.runs.require_exists(run_id)
    return page_response(
        "metrics", encode_metric_series(page.items, with_run_id=False), page.next_page_token
    )


async def get_history_bulk_interval(request: web.Request) -> web.Response:
    series = await bulk_interval_series(request.app[SERVICE], await read_fields(request))
    return json_response({"metrics": encode_metric_series(series)})


async def bulk_interval_series(service: AppServices, fields: Fields) -> list[MetricSeries]:
    """Checks a get-history-bulk-interval request and reads it (REST and GraphQL share it)."""
    run_ids = fields.str_list("run_ids")
    if not run_ids:
        raise InvalidParameter("Missing value for required parameter 'run_ids'.")
    if len(run_ids) > MAX_BULK_RUNS:
        raise InvalidParameter(
            f"GetMetricHistoryBulkInterval request must specify at most {MAX_BULK_RUNS} run_ids. "
            f"Received {len(run_ids)} run_ids."
        )
    for run_id in run_ids:
        validate_run_id(run_id)
    key = fields.req_str("metric_key")
    max_results = fields.int("max_results", default=MAX_BULK_RESULTS_PER_RUN)
    assert max_results is not None
    if not 1 <= max_results <= MAX_BULK_RESULTS_PER_RUN:
        raise InvalidParameter(f"max_results must be between 1 and {MAX_BULK_RESULTS_PER_RUN}.")
    start_step, end_step = fields.int("start_step"), fields.int("end_step")
    if (start_step is None) != (end_step is None):
        raise InvalidParameter(
            "If either start step or end step are specified, both must be specified."
        )
    if start_step is not None and end_step is not None and start_step > end_step:
        raise InvalidParameter(
            "end_step must be greater than start_step. "
            f"Found start_step={start_step} and end_step={end_step}."
        )
    await service.metrics.wait_runs_visible(run_ids)
    return await service.history.bulk_interval(run_ids, key, max_results, start_step, end_step)


ROUTES = [
    Route(
        "GET",
        "/metrics/get-history",
        get_history,
        On(Target.RUN_ID, "run_id", Permission.READ, fallback="run_uuid"),
        abandon_on_disconnect=True,
    ),
    Route(
        "GET",
        "/metrics/get-history-bulk-interval",
        get_history_bulk_interval,
        On(Target.RUN_ID, "run_ids", Permission.READ, where=Where.QUERY, each=True),
        abandon_on_disconnect=True,
    ),
]
