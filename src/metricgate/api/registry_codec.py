"""Registry JSON: entities -> MLflow's shapes, and the one place a request's audit context is read."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from metricgate.api.access import client_addr
from metricgate.api.codec import Fields, encode_tags
from metricgate.api.keys import caller
from metricgate.domain.errors import InvalidParameter
from metricgate.domain.registry.entities import Audit, ModelVersion, RegisteredModel, RegistryEvent

USER_HEADER = "X-Metricgate-User"
COMMENT_HEADER = "X-Metricgate-Comment"
MAX_ACTOR_CHARS = 256
MAX_COMMENT_CHARS = 5000


def audit_from(request: web.Request, fields: Fields) -> Audit:
    """Who is asking and why.

    Actor: with access control on, the authenticated caller (the access middleware verified the
    credential), so events say ``actor_verified: true`` and no header can claim another name.
    With it off, what the client claims: the user of an HTTP Basic ``Authorization`` header (the
    mlflow client sends one when MLFLOW_TRACKING_USERNAME is set), else ``X-Metricgate-User``,
    else unknown; the password is never looked at, and events say ``actor_verified: false``.
    Comment: a ``comment`` field of the JSON body (the mlflow client never sends one, our own
    callers may), else ``X-Metricgate-Comment``.
    """
    credential = caller(request)
    if credential is not None:
        actor: str | None = credential.username
    else:
        actor = (
            _basic_auth_user(request.headers.get("Authorization", ""))
            or request.headers.get(USER_HEADER)
            or None
        )
    comment = fields.str("comment") or request.headers.get(COMMENT_HEADER)
    for value in (actor, comment):
        if value is not None and not _storable(value):
            raise InvalidParameter(
                "User names and comments must be valid UTF-8 text without NUL characters."
            )
    if actor is not None and len(actor) > MAX_ACTOR_CHARS:
        raise InvalidParameter(f"The user name may be at most {MAX_ACTOR_CHARS} characters long.")
    if comment is not None and len(comment) > MAX_COMMENT_CHARS:
        raise InvalidParameter(
            f"'comment' exceeds the maximum length of {MAX_COMMENT_CHARS} characters"
        )
    if credential is None:
        return Audit(actor=actor, comment=comment or None)
    return Audit(
        actor=actor,
        comment=comment or None,
        actor_verified=True,
        auth_method=credential.method,
        client_addr=client_addr(request),
    )


def _storable(text: str) -> bool:
    # Headers arrive with undecodable bytes as lone surrogates, which PostgreSQL text cannot hold.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _basic_auth_user(header: str) -> str | None:
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidParameter("Malformed Basic Authorization header.") from None
    user = decoded.partition(":")[0]
    return user or None


def encode_model_version(mv: ModelVersion) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": mv.name,
        "version": str(mv.version),  # a string on the wire: the client throws on a number
        "creation_timestamp": mv.creation_timestamp,
        "last_updated_timestamp": mv.last_updated_timestamp,
        "current_stage": mv.current_stage,
        "source": mv.source,
        "status": mv.status,  # always sent: a missing status reads as PENDING_REGISTRATION
        "tags": encode_tags(mv.tags),
        "aliases": list(mv.aliases),
    }
    optional = {
        "user_id": mv.user_id, "description": mv.description, "run_id": mv.run_id, "run_link": mv.run_link,
        "status_message": mv.status_message, "model_id": mv.model_id,
    }  # fmt: skip
    out.update({k: v for k, v in optional.items() if v is not None})
    return out


def encode_registered_model(rm: RegisteredModel) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": rm.name,
        "creation_timestamp": rm.creation_timestamp,
        "last_updated_timestamp": rm.last_updated_timestamp,
        "latest_versions": [encode_model_version(mv) for mv in rm.latest_versions],
        "tags": encode_tags(rm.tags),
        "aliases": [{"alias": alias, "version": str(version)} for alias, version in rm.aliases],
    }
    if rm.user_id is not None:
        out["user_id"] = rm.user_id
    if rm.description is not None:
        out["description"] = rm.description
    return out


def encode_event(event: RegistryEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "timestamp_ms": int(event.occurred_at.timestamp() * 1000),
        "event_type": event.event_type,
        "model_name": event.model_name,
        "version": None if event.version is None else str(event.version),
        "actor": event.actor,
        "actor_verified": event.actor_verified,
        "before": event.before,
        "after": event.after,
        "comment": event.comment,
    }
