"""The live ingest page (``GET /metricgate/ingest``) and its data (``GET /api/2.0/metricgate/ingest/status``).

The JSON is read back from the Prometheus exposition ``/metrics`` serves (after the same refresh
of the live state), so the page and a Prometheus dashboard can never disagree. Rates (points/s)
are derived by the page from two successive totals, as Prometheus' ``rate()`` would.
"""

from __future__ import annotations

import importlib.resources
import time
from typing import Any

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from metricgate.api.codec import json_response
from metricgate.api.keys import SERVICE
from metricgate.api.routing import Route
from metricgate.domain.auth.access import Authenticated
from metricgate.observability import render_metrics

PREFIX = "/api/2.0/metricgate/ingest"
PAGE_PATH = "/metricgate/ingest"


async def refreshed_exposition(request: web.Request) -> bytes:
    """``/metrics``' body with the live state (streams, counts) freshly read."""
    status = request.app[SERVICE].live_status
    if status is not None:
        await status.refresh()
    return render_metrics()


def _samples(exposition: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(exposition.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def _total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(value for _, value in samples.get(name, []))


def _by_label(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, label: str
) -> dict[str, float]:
    return {labels[label]: value for labels, value in samples.get(name, []) if label in labels}


def status_from_exposition(exposition: bytes) -> dict[str, Any]:
    s = _samples(exposition)
    entries = _by_label(s, "metricgate_ingest_stream_entries", "shard")
    pending = _by_label(s, "metricgate_ingest_pending_entries", "shard")
    undelivered = _by_label(s, "metricgate_ingest_undelivered_entries", "shard")
    shards = [
        {
            "shard": int(shard),
            "entries": int(entries[shard]),
            "pending": int(pending.get(shard, 0)),
            "undelivered": int(undelivered[shard]) if shard in undelivered else None,
        }
        for shard in sorted(entries, key=int)
    ]
    visible_count = _total(s, "metricgate_ack_to_visible_seconds_count")
    return {
        "time_ms": int(time.time() * 1000),
        "points_accepted_total": int(_total(s, "metricgate_points_accepted_total")),
        "points_flushed_total": int(_total(s, "metricgate_points_flushed_total")),
        "dead_lettered_total": int(_total(s, "metricgate_dead_lettered_entries_total")),
        "backpressure_rejections_total": {
            k: int(v)
            for k, v in _by_label(s, "metricgate_backpressure_rejections_total", "reason").items()
        },
        "backlog_entries": int(_total(s, "metricgate_ingest_backlog_entries")),
        "shards": shards,
        "flush_lag_s": _total(s, "metricgate_ingest_flush_lag_seconds"),
        "flush_batches_total": int(_total(s, "metricgate_flush_seconds_count")),
        "ack_to_visible_mean_s": (
            _total(s, "metricgate_ack_to_visible_seconds_sum") / visible_count
            if visible_count
            else None
        ),
        "dead_letter_entries": int(_total(s, "metricgate_ingest_dead_letter_entries")),
        "abandoned_runs": int(_total(s, "metricgate_abandoned_runs")),
        "upload_sessions": {
            k: int(v) for k, v in _by_label(s, "metricgate_upload_sessions", "state").items()
        },
        "webhook_deliveries": {
            k: int(v) for k, v in _by_label(s, "metricgate_webhook_deliveries", "state").items()
        },
    }


async def ingest_status(request: web.Request) -> web.Response:
    body = status_from_exposition(await refreshed_exposition(request))
    live = request.app[SERVICE].live_status
    body["errors"] = sorted(live.errors.values()) if live is not None else []
    response = json_response(body)
    response.headers["Cache-Control"] = "no-store"
    return response


# Read once: a static page of the package, polled by open browser tabs.
_PAGE = importlib.resources.files("metricgate.api").joinpath("ingest_page.html").read_bytes()


async def ingest_page(request: web.Request) -> web.Response:
    return web.Response(
        body=_PAGE,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


ROUTES = [Route("GET", "/status", ingest_status, Authenticated())]
PAGE_ROUTES = [Route("GET", PAGE_PATH, ingest_page, Authenticated())]
