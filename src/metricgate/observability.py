"""Prometheus metrics (``GET /metrics``), structured (JSON) logging and the request id.

``serve --workers N`` runs N processes behind one port, and a scrape reaches whichever one the
kernel picks. So that every scrape shows the whole server, the workers run prometheus-client's
multiprocess mode: each writes its values to files in a shared directory
(``PROMETHEUS_MULTIPROC_DIR``, set by the parent before it spawns them) and any of them renders
the sum over all. One process alone keeps the plain in-memory registry.

Every request gets an id (api/middleware.py's ``request_id_middleware``): the ``X-Request-Id``
its trusted proxy sent, else a new one. It is answered in the response's ``X-Request-Id``, added
to each JSON log line and stored in each audit entry written while the request runs, so one
id ties a client's report, the logs and the audit log together. It lives in a context variable:
aiohttp runs each request in its own task, which copies the context, so the id stays with its
request (and the tasks it starts) and never leaks into another.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from metricgate.config import export_prometheus_multiproc_dir, prometheus_multiproc_dir

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True)
class _Metrics:
    registry: CollectorRegistry
    points_accepted: Counter
    requests: Counter
    rejections: Counter
    backlog_entries: Gauge
    flush_batch_points: Histogram
    flush_seconds: Histogram
    points_flushed: Counter
    ack_to_visible_seconds: Histogram
    dead_lettered: Counter
    stream_entries: Gauge
    pending_entries: Gauge
    undelivered_entries: Gauge
    flush_lag_seconds: Gauge
    dead_letter_entries: Gauge
    abandoned_runs: Gauge
    upload_sessions: Gauge
    webhook_deliveries: Gauge
    login_refusals: Counter


def _state_gauge(
    name: str, doc: str, registry: CollectorRegistry, labels: tuple[str, ...] = ()
) -> Gauge:
    # Read from Redis/PostgreSQL by whichever worker refreshes (ingest/live_status.py): every worker
    # sees the same state, so the freshest value of a live worker is the server's value.
    return Gauge(name, doc, list(labels), registry=registry, multiprocess_mode="livemostrecent")


def _create() -> _Metrics:
    registry = CollectorRegistry(auto_describe=True)
    return _Metrics(
        registry=registry,
        points_accepted=Counter(
            "metricgate_points_accepted", "Metric points acknowledged to clients", registry=registry
        ),
        requests=Counter(
            "metricgate_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=registry,
        ),
        rejections=Counter(
            "metricgate_backpressure_rejections",
            "Requests refused with 503 to protect the pipeline, by reason",
            ["reason"],
            registry=registry,
        ),
        backlog_entries=Gauge(
            "metricgate_ingest_backlog_entries",
            "Stream entries not yet trimmed (un-flushed)",
            registry=registry,
            # Every worker polls the same streams: across workers the value is the same, not a sum.
            multiprocess_mode="max",
        ),
        flush_batch_points=Histogram(
            "metricgate_flush_batch_points",
            "Points per flushed batch",
            buckets=(10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000),
            registry=registry,
        ),
        flush_seconds=Histogram(
            "metricgate_flush_seconds",
            "Time to write and commit one batch",
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        ),
        points_flushed=Counter(
            "metricgate_points_flushed", "Points committed to PostgreSQL", registry=registry
        ),
        ack_to_visible_seconds=Histogram(
            "metricgate_ack_to_visible_seconds",
            "From the acknowledgement of a request to the commit of its points",
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        ),
        dead_lettered=Counter(
            "metricgate_dead_lettered_entries",
            "Stream entries no flush could apply",
            registry=registry,
        ),
        stream_entries=_state_gauge(
            "metricgate_ingest_stream_entries",
            "Entries in each shard's stream (un-flushed + not yet trimmed)",
            registry,
            ("shard",),
        ),
        pending_entries=_state_gauge(
            "metricgate_ingest_pending_entries",
            "Entries a flusher has read but not yet acknowledged",
            registry,
            ("shard",),
        ),
        undelivered_entries=_state_gauge(
            "metricgate_ingest_undelivered_entries",
            "Entries no flusher has read yet",
            registry,
            ("shard",),
        ),
        flush_lag_seconds=_state_gauge(
            "metricgate_ingest_flush_lag_seconds",
            "Age of the oldest acknowledged entry not yet flushed (0: none)",
            registry,
        ),
        dead_letter_entries=_state_gauge(
            "metricgate_ingest_dead_letter_entries",
            "Entries parked in the dead-letter stream",
            registry,
        ),
        abandoned_runs=_state_gauge(
            "metricgate_abandoned_runs",
            "Active runs the janitor tagged metricgate.abandoned",
            registry,
        ),
        upload_sessions=_state_gauge(
            "metricgate_upload_sessions",
            "Upload sessions in progress, by state (open, committing)",
            registry,
            ("state",),
        ),
        webhook_deliveries=_state_gauge(
            "metricgate_webhook_deliveries",
            "Webhook deliveries waiting or given up, by state (pending, failed)",
            registry,
            ("state",),
        ),
        # The audit log records a lockout once, not each refusal during it: this counts them.
        login_refusals=Counter(
            "metricgate_login_refusals",
            "Login attempts refused by the failed-login limits (429)",
            registry=registry,
        ),
    )


METRICS = _create()


def render_metrics() -> bytes:
    """The exposition of ``GET /metrics``: this process's registry, or in multiprocess mode the
    aggregate of every worker's files."""
    if prometheus_multiproc_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated upstream
        return generate_latest(registry)
    return generate_latest(METRICS.registry)


@contextlib.contextmanager
def multiprocess_metrics_dir() -> Iterator[str]:
    """A fresh directory for the workers' metric files, exported in the environment for the
    processes started inside the block and removed afterwards. A directory the operator set
    already is used as it is (and kept)."""
    given = prometheus_multiproc_dir()
    if given:
        os.makedirs(given, exist_ok=True)
        yield given
        return
    path = tempfile.mkdtemp(prefix="metricgate-prometheus-")
    export_prometheus_multiproc_dir(path)
    try:
        yield path
    finally:
        export_prometheus_multiproc_dir(None)
        shutil.rmtree(path, ignore_errors=True)


REQUEST_ID_HEADER = "X-Request-Id"
# What a proxy's id may look like (nginx's $request_id, a UUID, a trace id): it goes into logs
# and the audit log as it is, so nothing that could forge a line or hide in one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_current_request_id: ContextVar[str | None] = ContextVar("metricgate_request_id", default=None)


def valid_request_id(text: str | None) -> bool:
    return text is not None and _REQUEST_ID.fullmatch(text) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def set_request_id(request_id: str | None) -> None:
    """The id of the request the current task serves (set once, at its start)."""
    _current_request_id.set(request_id)


def current_request_id() -> str | None:
    """The id of the request being served; None outside one (start-up, background loops)."""
    return _current_request_id.get()


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: easy to ship and query, no multi-line tracebacks to reassemble."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            payload["request_id"] = request_id
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload).decode()
