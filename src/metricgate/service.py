"""Opens every resource in order and closes them in reverse.

pool -> (schema check) -> [auth: store, password pool, authenticator, first admin] -> Redis ->
metric sink -> stores -> artifact store -> background workers. On close the background workers
(flusher, janitor, webhook dispatcher, upload sweeper) stop together: the flusher stops reading
and finishes (commit, ack) the batch in hand, all within ``METRICGATE_FLUSH_DRAIN_TIMEOUT_S``;
then the artifact store, the sink, Redis, the auth parts and the pool close, each step bounded
(docs/design-shutdown.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis

from metricgate.auth.authenticator import Authenticator
from metricgate.auth.bootstrap import ensure_admin
from metricgate.auth.limiter import LoginLimiter
from metricgate.auth.notices import AuthNotices
from metricgate.auth.passwords import Passwords
from metricgate.config import ENV_PREFIX, Settings
from metricgate.domain.errors import StoreUnavailable
from metricgate.ingest.flusher import Flusher
from metricgate.ingest.janitor import AbandonedRunJanitor
from metricgate.ingest.live_status import LiveStatus
from metricgate.ingest.sink import DirectMetricSink, MetricSink, StreamMetricSink
from metricgate.ingest.streams import IngestStreams
from metricgate.lifecycle import BackgroundWorkers, close_bounded
from metricgate.registry.service import RegistryService
from metricgate.stores.artifacts import ArtifactStore, open_artifact_store
from metricgate.stores.base import AuthStore
from metricgate.stores.postgres.artifact_refs import PgReferenceStore
from metricgate.stores.postgres.auth import PgAuthStore
from metricgate.stores.postgres.dataset_summaries import PgDatasetSummaries
from metricgate.stores.postgres.experiments import PgExperimentStore
from metricgate.stores.postgres.live_counts import PgLiveCounts
from metricgate.stores.postgres.logged_models import PgLoggedModelStore
from metricgate.stores.postgres.metrics import PgMetricHistory, PgMetricWriter
from metricgate.stores.postgres.migrate import apply_migrations, pending_migrations
from metricgate.stores.postgres.pool import Database
from metricgate.stores.postgres.registry import PgRegistryStore
from metricgate.stores.postgres.registry.approvals import PgApprovalStore
from metricgate.stores.postgres.runs import PgRunStore
from metricgate.stores.postgres.uploads import PgUploadStore
from metricgate.stores.postgres.webhooks import PgWebhookStore
from metricgate.uploads.references import ReferenceManager
from metricgate.uploads.sessions import UploadManager
from metricgate.uploads.sweeper import UploadSweeper
from metricgate.uploads.visible_store import VisibleArtifactStore
from metricgate.webhooks.dispatcher import WebhookDispatcher

log = logging.getLogger(__name__)

# Closing the pools with PostgreSQL gone or frozen: past this, connections are terminated.
DB_CLOSE_TIMEOUT_S = 2.0


@dataclass
class Service:
    settings: Settings
    db: Database
    experiments: PgExperimentStore
    runs: PgRunStore
    metrics: MetricSink
    history: PgMetricHistory
    logged_models: PgLoggedModelStore
    artifacts: ArtifactStore
    registry: RegistryService
    datasets: PgDatasetSummaries
    webhooks: PgWebhookStore | None = None
    uploads: UploadManager | None = None
    references: ReferenceManager | None = None
    live_status: LiveStatus | None = None
    # Access control (docs/design-auth.md): all four None when METRICGATE_AUTH is off.
    auth: PgAuthStore | None = None
    passwords: Passwords | None = None
    authenticator: Authenticator | None = None
    login_limiter: LoginLimiter | None = None


@contextlib.asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    db = await Database.open(settings.postgres)
    try:
        async with db.connection() as conn:
            if settings.postgres.migrate_on_start:
                await apply_migrations(conn)
            missing = await pending_migrations(conn)
        if missing:
            raise StoreUnavailable(
                f"database schema is missing {len(missing)} migration(s); run `metricgate migrate`"
            )
        yield db
    finally:
        await close_bounded(
            "the PostgreSQL pools", db.aclose(DB_CLOSE_TIMEOUT_S), DB_CLOSE_TIMEOUT_S + 1.0
        )


@contextlib.asynccontextmanager
async def open_streams(settings: Settings) -> AsyncIterator[IngestStreams]:
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis.url,
        max_connections=settings.redis.max_connections,
        timeout=settings.redis.connection_wait_s,
        socket_timeout=10,
        socket_connect_timeout=5,
    )
    client = aioredis.Redis(connection_pool=pool)
    streams = IngestStreams(client, settings.ingest.shards)
    try:
        yield streams
    finally:
        # Each step bounded: with Redis frozen (not refusing) a close waits for socket timeouts.
        await close_bounded("the Redis appender", streams.aclose())
        await close_bounded("the Redis client", client.aclose())
        await close_bounded("the Redis connections", pool.aclose())


@dataclass(frozen=True)
class AuthParts:
    store: PgAuthStore
    passwords: Passwords
    authenticator: Authenticator


@contextlib.asynccontextmanager
async def open_auth(settings: Settings, db: Database) -> AsyncIterator[AuthParts]:
    """The auth store, the password pool and the authenticator; the first admin is made here,
    before the server answers anything (AdminRequired, a ConfigError, when it cannot be)."""
    store = PgAuthStore(db)
    passwords = Passwords.from_settings(settings.auth)
    authenticator = Authenticator(store, settings.auth, passwords=passwords)
    try:
        await ensure_admin(store, settings.auth, passwords)
        yield AuthParts(store, passwords, authenticator)
    finally:
        authenticator.close()
        passwords.close()  # does not wait: a verification in progress ends on its own


@contextlib.asynccontextmanager
async def open_auth_store(settings: Settings) -> AsyncIterator[AuthStore]:
    """The auth store alone, for a command that writes it with no server running
    (``metricgate users create-admin``)."""
    async with open_database(settings) as db:
        yield PgAuthStore(db)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname (or "" = every interface): assume others can reach it


def warn_if_open(settings: Settings) -> None:
    """Auth off is the local quick start; say so loudly when others can reach the server."""
    if settings.auth.enabled or is_loopback(settings.http.host):
        return
    log.warning(
        "access control is OFF and the server listens on %s: anyone who can reach it may read, "
        "change and delete everything; set %sAUTH=on (docs/design-auth.md)",
        settings.http.host or "every interface",
        ENV_PREFIX,
    )


@contextlib.asynccontextmanager
async def background_workers(drain_timeout_s: float) -> AsyncIterator[BackgroundWorkers]:
    """Workers started on the yielded group stop together, under one deadline, on exit."""
    workers = BackgroundWorkers()
    try:
        yield workers
    finally:
        await workers.stop(drain_timeout_s)


@contextlib.asynccontextmanager
async def open_service(settings: Settings) -> AsyncIterator[Service]:
    async with contextlib.AsyncExitStack() as stack:
        db = await stack.enter_async_context(open_database(settings))
        auth: AuthParts | None = None
        if settings.auth.enabled:
            auth = await stack.enter_async_context(open_auth(settings, db))
        else:
            warn_if_open(settings)
        writer = PgMetricWriter(db)
        runs = PgRunStore(db)
        sink: StreamMetricSink | DirectMetricSink
        streams: IngestStreams | None = None
        if settings.ingest.mode == "stream":
            streams = await stack.enter_async_context(open_streams(settings))
            sink = StreamMetricSink(streams, settings.ingest)
        else:
            sink = DirectMetricSink(writer)
        try:
            await sink.start()
        except Exception as exc:
            raise StoreUnavailable(f"metric buffer (Redis) is unreachable: {exc}") from exc
        stack.push_async_callback(lambda: close_bounded("the metric sink", sink.aclose()))
        # Failed-login counts in the Redis the metrics go to; direct ingest opens none, and
        # then each process counts its own.
        limiter = None
        if auth is not None:
            limiter = LoginLimiter(streams.client if streams else None, settings.auth)
        artifact_store = await open_artifact_store(settings.artifacts)
        stack.push_async_callback(
            lambda: close_bounded("the artifact store", artifact_store.aclose())
        )
        # One drain deadline for all of them (lifecycle.BackgroundWorkers): what the webhook
        # dispatcher has in flight is recorded if it ends in time, else its lease brings it back.
        workers = await stack.enter_async_context(
            background_workers(settings.flush.drain_timeout_s)
        )
        if streams is not None and settings.ingest.embedded_flusher:
            workers.start("flusher", Flusher(streams, writer, settings.flush))
        if settings.flush.abandoned_after_s > 0:
            workers.start("janitor", AbandonedRunJanitor(runs, settings.flush, streams))
        if auth is not None and streams is not None:
            # Access changes reach the other processes over the metrics' Redis; direct ingest
            # opens none, and then the epoch poll alone carries them (about a second).
            notices = AuthNotices(auth.authenticator, streams.client, settings.redis.url)
            workers.start("auth-notices", notices)
        webhooks = PgWebhookStore(db)
        if settings.webhooks.enabled:
            workers.start("webhooks", WebhookDispatcher(webhooks, settings.webhooks))
        # Readers see committed artifacts and references only (uploads/visible_store.py).
        upload_store, reference_store = PgUploadStore(db), PgReferenceStore(db)
        uploads = UploadManager(artifact_store, upload_store, runs, settings.uploads)
        workers.start(
            "upload-sweeper",
            UploadSweeper(artifact_store, upload_store, uploads.committer, settings.uploads),
        )
        references = ReferenceManager(
            artifact_store, reference_store, runs, settings.uploads, settings.artifacts.uri
        )
        yield Service(
            settings=settings,
            db=db,
            experiments=PgExperimentStore(db, settings.artifacts.default_artifact_root),
            runs=runs,
            metrics=sink,
            history=PgMetricHistory(db),
            logged_models=PgLoggedModelStore(db),
            artifacts=VisibleArtifactStore(artifact_store, upload_store, reference_store),
            registry=RegistryService(
                PgRegistryStore(db, auth_on=auth is not None),
                frozenset(settings.artifacts.allowed_host_source_schemes),
                approvals=PgApprovalStore(db) if auth else None,
            ),
            datasets=PgDatasetSummaries(db),
            webhooks=webhooks,
            uploads=uploads,
            references=references,
            live_status=LiveStatus(streams, PgLiveCounts(db)),
            auth=auth.store if auth else None,
            passwords=auth.passwords if auth else None,
            authenticator=auth.authenticator if auth else None,
            login_limiter=limiter,
        )


async def run_flushers(settings: Settings, stop: asyncio.Event, count: int = 1) -> None:
    """``metricgate flush``: flusher workers alone, sharing one pool and one Redis client."""
    async with contextlib.AsyncExitStack() as stack:
        db = await stack.enter_async_context(open_database(settings))
        streams = await stack.enter_async_context(open_streams(settings))
        writer = PgMetricWriter(db)
        workers = await stack.enter_async_context(
            background_workers(settings.flush.drain_timeout_s)
        )
        for index in range(count):
            workers.start(f"flusher-{index}", Flusher(streams, writer, settings.flush))
        if settings.flush.abandoned_after_s > 0:
            workers.start("janitor", AbandonedRunJanitor(PgRunStore(db), settings.flush, streams))
        log.info("flusher process running %d worker(s)", count)
        await stop.wait()
        log.info("stopping flushers: finishing the batches in hand")
