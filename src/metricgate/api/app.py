"""Builds the aiohttp application: MLflow routes under every prefix the client and UI use."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from metricgate.api import (
    access,
    artifacts,
    auth_api,
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
from metricgate.api import approvals as approval_api
from metricgate.api import multipart as multipart_api
from metricgate.api import uploads as upload_api
from metricgate.api import webhooks as webhook_api
from metricgate.api.graphql import ROUTES as GRAPHQL_ROUTES
from metricgate.api.inflight import InFlightRequests
from metricgate.api.keys import IN_FLIGHT, SERVICE, SETTINGS
from metricgate.api.middleware import (
    answer_request_id,
    error_middleware,
    metrics_middleware,
    request_id_middleware,
)
from metricgate.api.routing import ACCESS_RULES, Route, RuleKey, rule_key
from metricgate.config import Settings
from metricgate.domain.auth.access import AccessRule, Authenticated, Public
from metricgate.domain.auth.client_address import parse_networks
from metricgate.service import Service, open_service

# The Python client uses /api/2.0/mlflow; the web UI calls the same handlers under /ajax-api.
MLFLOW_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")


# Routes added without a Route (ui_static.install's add_get, which adds HEAD as well): their
# rules, keyed as app[ACCESS_RULES] is. As stock: the static bundle is public, ``/`` (the UI's
# index.html) needs a login.
UNROUTED_RULES: dict[RuleKey, AccessRule] = {
    ("GET", "/"): Authenticated(),
    ("HEAD", "/"): Authenticated(),
    ("GET", "/static-files/{path}"): Public(),
    ("HEAD", "/static-files/{path}"): Public(),
}


def _record(rules: dict[RuleKey, AccessRule], route: web.AbstractRoute, rule: AccessRule) -> None:
    key = rule_key(route)
    if key in rules:
        raise RuntimeError(f"{key[0]} {key[1]}: registered twice, so its access rule is ambiguous")
    rules[key] = rule


def _add_routes(app: web.Application, prefixes: tuple[str, ...], routes: list[Route]) -> None:
    for prefix in prefixes:
        for route in routes:
            added = app.router.add_route(
                route.method, prefix + route.path, route.registered_handler()
            )
            _record(app[ACCESS_RULES], added, route.access)


def _add_unrouted_rules(app: web.Application) -> None:
    """Rules for the routes added without a Route; a route with no rule at all fails the build,
    so no endpoint can be served without a declared access rule."""
    rules = app[ACCESS_RULES]
    for route in app.router.routes():
        key = rule_key(route)
        if key in rules:
            continue
        rule = UNROUTED_RULES.get(key)
        if rule is None:
            raise RuntimeError(f"{key[0]} {key[1]} has no access rule (api/app.py UNROUTED_RULES)")
        rules[key] = rule


def create_app(settings: Settings, service: Service | None = None) -> web.Application:
    """The application; it opens its own ``Service`` at startup unless one is given (tests)."""
    in_flight = InFlightRequests()
    app = web.Application(
        # The request id first: everything after it logs under it. in_flight next: it must
        # see every request, error responses included.
        middlewares=[
            request_id_middleware(parse_networks(settings.auth.trusted_proxies)),
            in_flight.middleware,
            metrics_middleware,
            error_middleware,
        ],
        client_max_size=settings.http.max_body_bytes,
    )
    app.on_response_prepare.append(answer_request_id)
    app[SETTINGS] = settings
    app[IN_FLIGHT] = in_flight
    app[ACCESS_RULES] = {}
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
    _add_routes(app, (approval_api.PREFIX,), approval_api.ROUTES)
    for prefixes, routes in auth_api.ROUTE_GROUPS:  # users, roles, permissions, tokens
        _add_routes(app, prefixes, routes)
    _add_routes(app, (upload_api.PREFIX,), upload_api.ROUTES)
    _add_routes(app, ("",), health.ROUTES)
    _add_routes(app, ("",), ui_endpoints.ROUTES)
    _add_routes(app, ("",), GRAPHQL_ROUTES)
    _add_routes(app, (ingest_status.PREFIX,), ingest_status.ROUTES)
    _add_routes(app, ("",), ingest_status.PAGE_ROUTES)
    ui_static.install(app)
    _add_unrouted_rules(app)
    if settings.auth.enabled:
        # Innermost: its 401/403 pass through the error and metrics middlewares.
        access.install(app, settings.auth)

    if service is not None:
        app[SERVICE] = service
    else:

        async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
            async with open_service(settings) as opened:
                app[SERVICE] = opened
                yield

        app.cleanup_ctx.append(_service_ctx)
    return app
