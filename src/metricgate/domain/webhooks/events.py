"""Event types a webhook can subscribe to, and validation of subscriptions. Pure."""

from __future__ import annotations

from urllib.parse import urlsplit

from metricgate.domain.errors import InvalidParameter

# The registry writes these into registry_events (0002_registry.sql).
EVENT_TYPES = (
    "registered_model.created",
    "registered_model.renamed",
    "registered_model.updated",
    "registered_model.deleted",
    "registered_model.tag_set",
    "registered_model.tag_deleted",
    "model_version.created",
    "model_version.updated",
    "model_version.stage_changed",
    "model_version.deleted",
    "model_version.tag_set",
    "model_version.tag_deleted",
    "alias.set",
    "alias.deleted",
    # Approval requests (domain/registry/approvals.py, docs/design-auth.md B6).
    "model_version.approval_requested",
    "model_version.approval_voted",
    "model_version.approval_rejected",
    "model_version.approval_applied",
    "model_version.approval_cancelled",
    "model_version.approval_superseded",
)
PING_EVENT = "webhook.ping"
FAMILIES = tuple(sorted({t.split(".", 1)[0] for t in EVENT_TYPES}))
# What the trigger in 0003_webhooks.sql matches: an exact type, "<family>.*" or "*".
PATTERNS = ("*", *(f"{family}.*" for family in FAMILIES))

MAX_URL_CHARS = 2048
MAX_EVENTS = 64


def validate_events(events: list[str]) -> list[str]:
    """Known types and patterns, duplicates removed, order kept; at least one."""
    if not events:
        raise InvalidParameter(
            f"A webhook needs at least one event. Use event types such as {EVENT_TYPES[6]!r}, "
            f"or patterns: {', '.join(PATTERNS)}."
        )
    if len(events) > MAX_EVENTS:
        raise InvalidParameter(
            f"A webhook can list at most {MAX_EVENTS} events, got {len(events)}."
        )
    for event in events:
        if event not in EVENT_TYPES and event not in PATTERNS:
            raise InvalidParameter(
                f"Invalid event {event[:100]!r}. Known events: {', '.join(EVENT_TYPES)}; "
                f"patterns: {', '.join(PATTERNS)}."
            )
    return list(dict.fromkeys(events))


def event_matches(event_type: str, events: list[str]) -> bool:
    """The trigger's rule in Python (for tests and the CLI)."""
    return event_type in events or "*" in events or f"{event_type.split('.', 1)[0]}.*" in events


def validate_url(url: str) -> str:
    """An absolute http(s) URL with a host; no credentials in it (they would show in listings)."""
    if len(url) > MAX_URL_CHARS:
        raise InvalidParameter(f"Webhook URL is longer than {MAX_URL_CHARS} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError:
        raise InvalidParameter(f"Invalid webhook URL {url[:200]!r}.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidParameter(
            f"Invalid webhook URL {url[:200]!r}: it must be an absolute http:// or https:// URL."
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidParameter(
            "Webhook URLs may not contain credentials; receivers verify the signature instead."
        )
    if port == 0 or any(c.isspace() for c in url):
        raise InvalidParameter(f"Invalid webhook URL {url[:200]!r}.")
    return url
