"""The GenAI calls MLflow's web UI makes when its pages load (traces, evaluation datasets,
judges, AI gateway), answered as stock MLflow 3.17.2 answers them on an empty store.

metricgate stores no traces, evaluation datasets, scorers or gateway objects, so every one of
these is empty; without them the experiment page (whose overview tab asks for trace metrics)
and the GenAI tabs show error states instead of their empty states. The shapes were measured
against a stock server with a fresh database: proto JSON leaves empty lists out, so most of them
are ``{}``.

They are routed under /ajax-api only, i.e. for the UI: a Python client that logs or searches
traces gets an honest 404 rather than an empty result that would hide that nothing was stored.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from metricgate.api.codec import Fields, empty_response, json_response, read_fields, read_json
from metricgate.api.routing import Route
from metricgate.domain.auth.access import Authenticated
from metricgate.domain.errors import InvalidParameter


def _required(fields: Fields, name: str) -> None:
    # Present is enough: the judges page searches with "locations": [] and stock answers {}.
    if fields.raw.get(name) is None:
        raise InvalidParameter(
            f"Missing value for required parameter '{name}'. "
            "See the API docs for more information about request parameters."
        )


async def empty(request: web.Request) -> web.Response:
    """``{}``: an empty page of whatever was asked for."""
    return empty_response()


async def search_traces(request: web.Request) -> web.Response:
    """``POST traces/search`` (v3): no traces in any location."""
    _required(await read_json(request), "locations")
    return empty_response()


async def search_traces_v2(request: web.Request) -> web.Response:
    """``GET traces?experiment_ids=`` (v2)."""
    _required(await read_fields(request), "experiment_ids")
    return empty_response()


def _is_count_only(aggregations: list[dict[str, Any]]) -> bool:
    return bool(aggregations) and all(a.get("aggregation_type") == "COUNT" for a in aggregations)


async def query_trace_metrics(request: web.Request) -> web.Response:
    """``POST traces/metrics``: the experiment overview's charts.

    Over no data, stock's SQL aggregation yields one row only for an ungrouped COUNT (0) and
    nothing for time buckets, dimensions, or SUM/AVG/percentiles (NULL rows are dropped), so
    the counters read 0 and the charts show their empty state.
    """
    fields = await read_json(request)
    for name in ("experiment_ids", "view_type", "metric_name"):
        _required(fields, name)
    aggregations = fields.dict_list("aggregations")
    grouped = bool(fields.raw.get("time_interval_seconds")) or bool(fields.list("dimensions"))
    if grouped or not _is_count_only(aggregations):
        return empty_response()
    values = {a["aggregation_type"]: 0.0 for a in aggregations}
    return json_response(
        {"data_points": [{"metric_name": fields.str("metric_name"), "values": values}]}
    )


async def gateway_secrets_config(request: web.Request) -> web.Response:
    """``GET gateway/secrets/config``: there is no secret store behind a gateway here (stock
    says whether its KEK passphrase is configured); the gateway page shows its "unavailable"
    state. server-info's ``features_enabled.gateway`` is false, so the UI does not offer it."""
    return json_response({"secrets_available": False, "using_default_passphrase": False})


async def search_jobs(request: web.Request) -> web.Response:
    return json_response({"jobs": []})


_EMPTY_GETS = (
    # Evaluation datasets, judges, review queues and label schemas of the GenAI pages.
    "/datasets/search",
    "/scorers/list",
    "/review-queues/list",
    "/label-schemas/list",
    # The AI gateway's pages.
    "/gateway/endpoints/list",
    "/gateway/endpoints/bindings/list",
    "/gateway/secrets/list",
    "/gateway/model-definitions/list",
    "/gateway/budgets/list",
    "/gateway/budgets/windows",
    "/gateway/guardrails/list",
    "/prompt-optimization/jobs/search",
)

# Any user: every answer is empty, so there is nothing to read a permission for.
_USER = Authenticated()

# Under /ajax-api/3.0/mlflow.
MLFLOW_V3_ROUTES: list[Route] = [
    Route("POST", "/traces/search", search_traces, _USER),
    Route("POST", "/traces/metrics", query_trace_metrics, _USER),
    Route("POST", "/datasets/search", empty, _USER),
    Route("POST", "/prompt-optimization/jobs/search", empty, _USER),
    Route("GET", "/gateway/secrets/config", gateway_secrets_config, _USER),
    *(Route("GET", path, empty, _USER) for path in _EMPTY_GETS),
]

# Under /ajax-api/2.0/mlflow.
MLFLOW_V2_ROUTES: list[Route] = [Route("GET", "/traces", search_traces_v2, _USER)]

# Under /ajax-api/3.0 (the jobs API has no /mlflow segment).
JOBS_ROUTES: list[Route] = [Route("POST", "/jobs/search", search_jobs, _USER)]
