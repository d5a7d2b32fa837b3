"""Offset page tokens in MLflow's format: base64 of the JSON ``{"offset": N}``.

Clients treat tokens as opaque, but using MLflow's format keeps tokens interchangeable with a
real MLflow server's (SearchUtils.create_page_token / parse_start_offset_from_page_token).
"""

from __future__ import annotations

import base64
import binascii
import json

from metricgate.domain.errors import InvalidParameter

# A real token is ~20 characters; refusing long ones bounds the decoding work for hostile input.
MAX_TOKEN_CHARS = 1024
# OFFSET is bound as a PostgreSQL bigint.
_MAX_OFFSET = 2**63 - 2


def encode_page_token(offset: int) -> str:
    """The token that makes the next search start at ``offset``."""
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= _MAX_OFFSET:
        raise ValueError(f"offset must be a non-negative int64, got {offset!r}")
    return base64.b64encode(json.dumps({"offset": offset}).encode("utf-8")).decode("ascii")


def decode_page_token(token: str | None) -> int:
    """The offset a token stands for; no token (``None`` or ``""``) is the first page."""
    if token is None or token == "":
        return 0
    return _offset_from(_parse(token)["offset"])


# A metric history page token also says where the page ended, (step, timestamp, value) of its
# last point, so that the next page starts there (keyset) instead of skipping OFFSET points. It
# keeps the "offset" of MLflow's format, which alone (a token from elsewhere) still works.
def encode_history_token(offset: int, after: tuple[int, int, float]) -> str:
    step, timestamp_ms, value = after
    payload = {"offset": offset, "after": [step, timestamp_ms, float(value).hex()]}
    return base64.b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")


def decode_history_token(token: str | None) -> tuple[int, tuple[int, int, float] | None]:
    """(offset, the last point of the previous page or None)."""
    if token is None or token == "":
        return 0, None
    parsed = _parse(token)
    offset = _offset_from(parsed["offset"])
    after = parsed.get("after")
    if after is None:
        return offset, None
    try:
        if not isinstance(after, list):
            raise TypeError(after)
        step, timestamp_ms, value = after
        if not (
            type(step) is int
            and type(timestamp_ms) is int
            and -(2**63) <= step < 2**63
            and 0 <= timestamp_ms < 2**63
        ):
            raise ValueError(after)
        return offset, (step, timestamp_ms, float.fromhex(value))
    except (TypeError, ValueError, OverflowError):
        raise InvalidParameter(f"Invalid page token, after={after!r}") from None


def _parse(token: str) -> dict[str, object]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise InvalidParameter("Invalid page token, could not base64-decode")
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        raise InvalidParameter("Invalid page token, could not base64-decode") from None
    try:
        parsed = json.loads(decoded)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise InvalidParameter(f"Invalid page token, decoded value={decoded!r}") from None
    if not isinstance(parsed, dict) or "offset" not in parsed:
        raise InvalidParameter(f"Invalid page token, parsed value={parsed}")
    return parsed


def _offset_from(raw: object) -> int:
    # MLflow applies int() to the field, so a numeric string is accepted as well.
    digits = raw.strip() if isinstance(raw, str) else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= 19:
        raw = int(digits)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= _MAX_OFFSET:
        raise InvalidParameter(f"Invalid page token, offset={raw!r} is not a non-negative integer")
    return raw


# Keyset tokens, for lists read newest first while new rows keep arriving (registry history,
# approval requests, the audit log): an offset would repeat rows on the next page, "the rows
# with an id below this one" does not. Base64url of ``{"before_id": N}``; opaque to clients.
_MAX_KEYSET_TOKEN_CHARS = 200


def encode_keyset_token(before_id: int) -> str:
    """The token of the page that starts below row id ``before_id``."""
    return base64.urlsafe_b64encode(json.dumps({"before_id": before_id}).encode()).decode("ascii")


def decode_keyset_token(token: str | None) -> int | None:
    """The row id the page starts below; None (no token) for the first page."""
    if not token:
        return None
    try:
        if len(token) > _MAX_KEYSET_TOKEN_CHARS:
            raise ValueError(token)
        value = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))["before_id"]
        if type(value) is not int or not 0 < value < 2**63:
            raise ValueError(value)
    except (ValueError, TypeError, KeyError, RecursionError):  # binascii.Error is a ValueError
        raise InvalidParameter("Invalid page token.") from None
    return value
