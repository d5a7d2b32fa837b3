"""Registry records shared by the API and the store: frozen, slotted, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from metricgate.domain.tracking.entities import Tag

# Stock's IS_PROMPT_TAG_KEY: a registered model or version tagged with it ("true") is a prompt,
# which searches hide unless asked for and which cannot be the source of a model version.
PROMPT_TAG = "mlflow.prompt.is_prompt"


@dataclass(frozen=True, slots=True)
class Audit:
    """Who asked for a change and why. ``actor`` is the authenticated caller when access control
    is on (``actor_verified``); with it off, what the client claims, never trusted for decisions,
    only recorded."""

    actor: str | None = None
    comment: str | None = None
    actor_verified: bool = False
    # For the audit log's entries (approvals), not the registry events: how the verified actor
    # authenticated ("basic" or "token") and from which address.
    auth_method: str | None = None
    client_addr: str | None = None


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: int
    creation_timestamp: int
    last_updated_timestamp: int
    user_id: str | None
    current_stage: str
    description: str | None
    source: str
    storage_location: str
    run_id: str | None
    run_link: str | None
    model_id: str | None
    status: str
    status_message: str | None
    tags: tuple[Tag, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    name: str
    creation_timestamp: int
    last_updated_timestamp: int
    user_id: str | None
    description: str | None
    tags: tuple[Tag, ...] = ()
    aliases: tuple[tuple[str, int], ...] = ()  # (alias, version)
    latest_versions: tuple[ModelVersion, ...] = ()


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    id: int
    occurred_at: datetime
    event_type: str
    model_name: str
    version: int | None
    actor: str | None
    actor_verified: bool
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    comment: str | None
