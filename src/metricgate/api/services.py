"""What the handlers reach through ``request.app[SERVICE]``: stores by their Protocols, features
by their classes.

The assembly layer (service.Service) is what the app holds; typing the handlers with this
Protocol instead keeps api/ from importing the layer above it and from knowing which store class
sits behind each seam. Read-only properties, so a service whose fields are concrete classes
satisfies it.
"""

from __future__ import annotations

from typing import Protocol

from metricgate.auth.authenticator import Authenticator
from metricgate.auth.limiter import LoginLimiter
from metricgate.auth.passwords import Passwords
from metricgate.ingest.live_status import LiveStatus
from metricgate.ingest.sink import MetricSink
from metricgate.registry.service import RegistryService
from metricgate.stores.artifacts.base import ArtifactStore
from metricgate.stores.base import (
    AuthStore,
    DatabaseHealth,
    DatasetSummaries,
    ExperimentStore,
    LoggedModelStore,
    MetricHistory,
    RunStore,
    WebhookStore,
)
from metricgate.uploads.references import ReferenceManager
from metricgate.uploads.sessions import UploadManager


class AppServices(Protocol):
    @property
    def db(self) -> DatabaseHealth: ...

    @property
    def experiments(self) -> ExperimentStore: ...

    @property
    def runs(self) -> RunStore: ...

    @property
    def metrics(self) -> MetricSink: ...

    @property
    def history(self) -> MetricHistory: ...

    @property
    def logged_models(self) -> LoggedModelStore: ...

    @property
    def artifacts(self) -> ArtifactStore: ...

    @property
    def registry(self) -> RegistryService: ...

    @property
    def datasets(self) -> DatasetSummaries: ...

    @property
    def webhooks(self) -> WebhookStore | None: ...

    @property
    def uploads(self) -> UploadManager | None: ...

    @property
    def references(self) -> ReferenceManager | None: ...

    @property
    def live_status(self) -> LiveStatus | None: ...

    # Access control: all four None when METRICGATE_AUTH is off.
    @property
    def auth(self) -> AuthStore | None: ...

    @property
    def passwords(self) -> Passwords | None: ...

    @property
    def authenticator(self) -> Authenticator | None: ...

    @property
    def login_limiter(self) -> LoginLimiter | None: ...
