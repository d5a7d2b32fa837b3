"""Liveness, readiness and the ``server-info`` probe of MLflow 3.15+ clients."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from metricgate import __version__
from metricgate.api.codec import json_response
from metricgate.api.ingest_status import refreshed_exposition
from metricgate.api.keys import SERVICE
from metricgate.api.routing import Route
from metricgate.domain.auth.access import Authenticated, Public


async def health(request: web.Request) -> web.Response:
    # Liveness only: the process answers. MLflow's server returns the same plain "OK".
    return web.Response(text="OK")


async def ready(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if await service.db.ping():
        return web.Response(text="OK")
    return web.Response(text="database unreachable", status=503, headers={"Retry-After": "2"})


async def version(request: web.Request) -> web.Response:
    return web.Response(text=__version__)


async def server_info(request: web.Request) -> web.Response:
    # Every key stock MLflow 3.17.2 sends (build_server_info_payload), with metricgate's values.
    return json_response(
        {
            "store_type": "SqlStore",
            "workspaces_enabled": False,
            "trace_archival_enabled": False,  # no traces are stored
            # MLflow 3.15+ clients then upload files >= 500 MiB with mpu/* (api/multipart.py).
            "multipart_uploads_enabled": True,
            "multipart_downloads_enabled": False,
            # Stock advertises request fields of artifacts/presigned-upload-url, which this
            # server does not route; false keeps a caller from relying on them.
            "presigned_upload_run_id_supported": False,
            "presigned_upload_model_id_supported": False,
            # No AI gateway: the UI hides its gateway pages (their calls still answer empty,
            # api/ui_genai.py).
            "features_enabled": {"gateway": False},
        }
    )


async def prometheus_metrics(request: web.Request) -> web.Response:
    body = await refreshed_exposition(request)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# Probes and the scrape stay open (stock leaves /health and server-info open too); /version
# needs a login, as stock's _allow_authenticated.
ROUTES = [
    Route("GET", "/metrics", prometheus_metrics, Public()),
    Route("GET", "/health", health, Public()),
    Route("GET", "/ready", ready, Public()),
    Route("GET", "/version", version, Authenticated()),
]
SERVER_INFO_ROUTES = [Route("GET", "/server-info", server_info, Public())]
