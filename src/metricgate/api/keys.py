"""Typed application keys: the only way handlers reach shared resources."""

from __future__ import annotations

from aiohttp import web

from metricgate.api.inflight import InFlightRequests
from metricgate.config import Settings
from metricgate.service import Service

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", Service)
IN_FLIGHT = web.AppKey("in_flight", InFlightRequests)
