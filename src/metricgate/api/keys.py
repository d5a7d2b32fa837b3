"""Typed application and request keys: the only way handlers reach shared resources, and what
the middlewares leave on a request for its handler."""

from __future__ import annotations

from aiohttp import web

from metricgate.api.inflight import InFlightRequests
from metricgate.api.services import AppServices
from metricgate.config import Settings
from metricgate.domain.auth.entities import Credential

SETTINGS = web.AppKey("settings", Settings)
# Subscripted, not passed as the key's type: a Protocol is not a concrete class.
SERVICE = web.AppKey[AppServices]("service")
IN_FLIGHT = web.AppKey("in_flight", InFlightRequests)

# The authenticated caller of a request, set by the access middleware when auth is on (absent
# when it is off). Handlers read it through ``caller``.
CALLER_KEY = web.RequestKey("caller", Credential)


def caller(request: web.Request) -> Credential | None:
    # Subscripted, not ``get``: aiohttp types only the subscript by the key's type.
    return request[CALLER_KEY] if CALLER_KEY in request else None
