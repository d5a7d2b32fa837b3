"""metricgate's own registry audit endpoint: ``GET /api/2.0/metricgate/registry/history``."""

from __future__ import annotations

from aiohttp import web

from metricgate.api.codec import page_response, read_fields
from metricgate.api.keys import SERVICE
from metricgate.api.registry_codec import encode_event
from metricgate.api.routing import Route
from metricgate.domain.auth.access import On, Target
from metricgate.domain.auth.permissions import Permission
from metricgate.domain.tracking.rules import validate_max_results

MAX_EVENTS_PER_PAGE = 1000
DEFAULT_EVENTS_PER_PAGE = 100
PREFIXES = ("/api/2.0/metricgate", "/ajax-api/2.0/metricgate")


async def registry_history(request: web.Request) -> web.Response:
    """Events of one model (following renames), optionally of one version, newest first."""
    fields = await read_fields(request)
    max_results = validate_max_results(
        fields.int("max_results"), MAX_EVENTS_PER_PAGE, DEFAULT_EVENTS_PER_PAGE
    )
    events, token = await request.app[SERVICE].registry.history(
        fields.str("name"),
        fields.str("version") or None,
        max_results,
        fields.str("page_token") or None,
    )
    return page_response("events", [encode_event(e) for e in events], token)


ROUTES = [
    Route(
        "GET",
        "/registry/history",
        registry_history,
        On(Target.MODEL_NAME, "name", Permission.READ),
        abandon_on_disconnect=True,
    )
]
