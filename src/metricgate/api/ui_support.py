"""Small endpoints the web UI calls on every page or on the runs page, answered as stock MLflow
3.17.2 answers them when the feature behind them is off (measured against a stock server).

None of them exists for the Python client; a 404 here would put a red toast or an error state
on pages that otherwise work.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from metricgate.api.codec import Fields, empty_response, json_response, read_json
from metricgate.api.keys import SERVICE
from metricgate.api.routing import Route
from metricgate.api.services import AppServices
from metricgate.domain.auth.access import Authenticated, On, Target
from metricgate.domain.auth.permissions import Permission
from metricgate.domain.errors import InvalidParameter
from metricgate.domain.tracking.rules import parse_experiment_id

# Stock's limit on one search-datasets request.
MAX_DATASET_EXPERIMENTS = 20


async def gateway_proxy(request: web.Request) -> web.Response:
    """``GET|POST gateway-proxy``: no MLflow deployments gateway is configured (stock without
    MLFLOW_DEPLOYMENTS_TARGET pretends an empty one, whatever the request asks)."""
    return json_response({"endpoints": []})


async def ui_telemetry_config(request: web.Request) -> web.Response:
    """``GET ui-telemetry``: telemetry off (stock's FALLBACK_UI_CONFIG); the UI then sends nothing."""
    return json_response(
        {"disable_ui_events": [], "disable_ui_telemetry": True, "ui_rollout_percentage": 0}
    )


async def ui_telemetry_records(request: web.Request) -> web.Response:
    """``POST ui-telemetry``: records are dropped unread, as stock does with telemetry off."""
    return json_response({"status": "disabled"})


async def assistant_config(request: web.Request) -> web.Response:
    """``GET assistant/config``: no assistant provider configured, so nothing selected."""
    return json_response({"providers": {}, "projects": {}, "remote_access_allowed": False})


async def assistant_providers(request: web.Request) -> web.Response:
    """``GET assistant/providers``: metricgate runs no assistant, so it offers no provider (stock
    lists the CLIs and servers it could drive on its own host, which are not ours to offer)."""
    return json_response({"providers": [], "resolved": None, "gateway_vendor_options": {}})


def _summary(item: Any) -> dict[str, Any]:
    out = {"experiment_id": item.experiment_id, "name": item.name, "digest": item.digest}
    if item.context is not None:  # proto2: an unset field is left out
        out["context"] = item.context
    return out


async def dataset_summaries(service: AppServices, fields: Fields) -> list[dict[str, Any]]:
    """The checks and the read of ``experiments/search-datasets``, shared with GraphQL's
    ``mlflowSearchDatasets``."""
    raw_ids = fields.str_list("experiment_ids")
    if not raw_ids:
        raise InvalidParameter("SearchDatasets request must specify at least one experiment_id.")
    if len(raw_ids) > MAX_DATASET_EXPERIMENTS:
        raise InvalidParameter(
            f"SearchDatasets request cannot specify more than {MAX_DATASET_EXPERIMENTS} experiment_ids. "
            f"Received {len(raw_ids)} experiment_ids."
        )
    ids = [parse_experiment_id(e, "experiment_ids") for e in raw_ids]
    return [_summary(s) for s in await service.datasets.search(ids)]


async def search_datasets(request: web.Request) -> web.Response:
    """``POST experiments/search-datasets {experiment_ids}``: the runs page's dataset filter."""
    summaries = await dataset_summaries(request.app[SERVICE], await read_json(request))
    if not summaries:
        return empty_response()  # proto2 JSON omits an empty repeated field: stock sends {}
    return json_response({"dataset_summaries": summaries})


# Under /api/2.0/mlflow and /ajax-api/2.0/mlflow (stock: /ajax-api only; one table is simpler
# and these answer nothing a client could misread).
MLFLOW_ROUTES: list[Route] = [
    Route("GET", "/gateway-proxy", gateway_proxy, Authenticated()),
    Route("POST", "/gateway-proxy", gateway_proxy, Authenticated()),
    Route(
        "POST",
        "/experiments/search-datasets",
        search_datasets,
        On(Target.EXPERIMENT_ID, "experiment_ids", Permission.READ, each=True),
        abandon_on_disconnect=True,
    ),
]

# Under /ajax-api/3.0/mlflow.
MLFLOW_V3_ROUTES: list[Route] = [
    Route("GET", "/ui-telemetry", ui_telemetry_config, Authenticated()),
    Route("POST", "/ui-telemetry", ui_telemetry_records, Authenticated()),
    Route("GET", "/assistant/config", assistant_config, Authenticated()),
    Route("GET", "/assistant/providers", assistant_providers, Authenticated()),
]
