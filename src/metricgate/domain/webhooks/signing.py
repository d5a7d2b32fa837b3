"""The signature scheme of webhook deliveries, for the sender and for receivers.

A delivery carries ``X-Metricgate-Timestamp: <unix seconds>`` and
``X-Metricgate-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``. Signing the
timestamp together with the exact body bytes means neither can be changed, and a receiver that
refuses timestamps older than a tolerance refuses a captured request replayed later.
Receivers need only this module (standard library), e.g.::

    verify_signature(secret, request.headers, await request.read(), tolerance_s=300)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Metricgate-Timestamp"
SIGNATURE_HEADER = "X-Metricgate-Signature"
EVENT_HEADER = "X-Metricgate-Event"
DELIVERY_HEADER = "X-Metricgate-Delivery"
SCHEME = "sha256"
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(ValueError):
    """The request is not a genuine, fresh delivery (the message says why)."""


def generate_secret() -> str:
    """A new per-webhook secret: 256 random bits, URL-safe; the prefix makes leaks greppable."""
    return "whsec_" + secrets.token_urlsafe(32)


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` over ``"<timestamp>.<body>"``."""
    message = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def signature_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The timestamp and signature headers of one attempt (a retry is signed afresh)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: compute_signature(secret, ts, body)}


def _header(headers: Mapping[str, str], name: str) -> str:
    # Accept any mapping: aiohttp/requests headers are case-insensitive, a plain dict may not be.
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    if not value:
        raise SignatureError(f"missing {name} header")
    return value


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a received delivery; return its timestamp or raise ``SignatureError``.

    ``body`` must be the raw bytes as received (not re-serialized JSON). A timestamp further than
    ``tolerance_s`` from ``now`` (either way) is refused: that is the replay protection.
    Deduplicate on ``X-Metricgate-Delivery`` as well: delivery is at least once.
    """
    raw_ts = _header(headers, TIMESTAMP_HEADER)
    try:
        timestamp = int(raw_ts)
    except ValueError:
        raise SignatureError(f"malformed {TIMESTAMP_HEADER} header") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError(
            f"timestamp is outside the tolerance of {tolerance_s:g} s (replayed or clock skew)"
        )
    expected = compute_signature(secret, timestamp, body)
    # Several signatures may be sent (comma-separated), e.g. while a secret is being rotated.
    offered = [s.strip() for s in _header(headers, SIGNATURE_HEADER).split(",")]
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise SignatureError("signature does not match")
    return timestamp
