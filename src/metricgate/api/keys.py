"""Typed application keys: the only way handlers reach shared resources."""

from __future__ import annotations

from aiohttp import web

from metricgate.api.inflight import InFlightRequests
from metricgate.api.services import AppServices
from metricgate.config import Settings

SETTINGS = web.AppKey("settings", Settings)
# Subscripted, not passed as the key's type: a Protocol is not a concrete class.
SERVICE = web.AppKey[AppServices]("service")
IN_FLIGHT = web.AppKey("in_flight", InFlightRequests)
