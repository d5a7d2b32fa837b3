"""Builds the aiohttp application: MLflow routes under every prefix the client and UI use."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from metricgate.api import (
    artifacts,
    experiments,
    health,
    ingest_status,
    logged_models,
    metrics,
    registry,
    registry_history,
    runs,
    ui_endpoints,
    ui_static,
)
from metricgate.api import multipart as multipart_api
from metricgate.api import uploads as upload_api
from metricgate.api import webhooks as webhook_api
from metricgate.api.graphql import ROUTES as GRAPHQL_ROUTES
from metricgate.api.inflight import InFlightRequests
from metricgate.api.keys import IN_FLIGHT, SERVICE, SETTINGS
from metricgate.api.middleware import error_middleware, metrics_middleware
from metricgate.api.routing import Route
from metricgate.config import Settings
from metricgate.service import Service, open_service

# The Python client uses /api/2.0/mlflow; the web UI calls the same handlers under /ajax-api.
MLFLOW_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")


def _add_routes(app: web.Application, prefixes: tuple[str, ...], routes: list[Route]) -> None:
    for prefix in prefixes:
        for route in routes:
            app.router.add_route(route.method, prefix + route.path, route.registered_handler())


def create_app(settings: Settings, service: Service | None = None) -> web.Application:
    """The application; it opens its own ``Service`` at startup unless one is given (tests)."""
    in_flight = InFlightRequests()
    app = web.Application(
        # in_flight first: it must see every request, error responses included.
        middlewares=[in_flight.middleware, metrics_middleware, error_middleware],
        client_max_size=settings.http.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[IN_FLIGHT] = in_flight
    tracking_routes = (
        experiments.ROUTES
        + runs.ROUTES
        + metrics.ROUTES
        + logged_models.ROUTES
        + artifacts.TRACKING_ROUTES
        + registry.ROUTES
    )
    _add_routes(app, MLFLOW_PREFIXES, tracking_routes)
    _add_routes(app, ARTIFACT_PREFIXES, artifacts.ROUTES + multipart_api.ROUTES)
    _add_routes(app, registry_history.PREFIXES, registry_history.ROUTES)
    _add_routes(app, ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow"), health.SERVER_INFO_ROUTES)
    _add_routes(app, (webhook_api.PREFIX,), webhook_api.ROUTES)
    _add_routes(app, (upload_api.PREFIX,), upload_api.ROUTES)
    _add_routes(app, ("",), health.ROUTES)
    _add_routes(app, ("",), ui_endpoints.ROUTES)
    _add_routes(app, ("",), GRAPHQL_ROUTES)
    _add_routes(app, (ingest_status.PREFIX,), ingest_status.ROUTES)
    _add_routes(app, ("",), ingest_status.PAGE_ROUTES)
    ui_static.install(app)

    if service is not None:
        app[SERVICE] = service
    else:

        async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
            async with open_service(settings) as opened:
                app[SERVICE] = opened
                yield

        app.cleanup_ctx.append(_service_ctx)
    return app
