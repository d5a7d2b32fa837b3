"""Opens every resource in order and closes them in reverse: pool -> stores -> artifact store."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from metricgate.config import Settings
from metricgate.errors import StoreUnavailable
from metricgate.stores.artifacts import ArtifactStore, open_artifact_store
from metricgate.stores.postgres.experiments import PgExperimentStore
from metricgate.stores.postgres.logged_models import PgLoggedModelStore
from metricgate.stores.postgres.metrics import PgMetricHistory, PgMetricSink
from metricgate.stores.postgres.migrate import apply_migrations, pending_migrations
from metricgate.stores.postgres.pool import Database, create_pool
from metricgate.stores.postgres.runs import PgRunStore

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    db: Database
    experiments: PgExperimentStore
    runs: PgRunStore
    metrics: PgMetricSink
    history: PgMetricHistory
    logged_models: PgLoggedModelStore
    artifacts: ArtifactStore


@contextlib.asynccontextmanager
async def open_service(settings: Settings) -> AsyncIterator[Service]:
    pool = await create_pool(settings.postgres)
    db = Database(pool, settings.postgres.acquire_timeout_s)
    try:
        async with db.connection() as conn:
            if settings.postgres.migrate_on_start:
                await apply_migrations(conn)
            missing = await pending_migrations(conn)
            if missing:
                raise StoreUnavailable(
                    f"database schema is missing {len(missing)} migration(s); run `metricgate migrate`"
                )
        artifacts = await open_artifact_store(settings.artifacts)
        try:
            yield Service(
                settings=settings,
                db=db,
                experiments=PgExperimentStore(db, settings.artifacts.default_artifact_root),
                runs=PgRunStore(db),
                metrics=PgMetricSink(db),
                history=PgMetricHistory(db),
                logged_models=PgLoggedModelStore(db),
                artifacts=artifacts,
            )
        finally:
            await artifacts.aclose()
    finally:
        await db.aclose()
