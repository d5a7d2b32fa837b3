"""New API tokens (docs/design-auth.md B3); their format and digest are domain rules."""

from __future__ import annotations

import base64
import secrets

from metricgate.domain.auth.rules import TOKEN_BYTES, TOKEN_PREFIX


def new_token() -> str:
    """``mgt_`` + 256 random bits, base64url without padding (47 characters). Shown once; the
    store keeps only ``token_digest`` of it."""
    raw = secrets.token_bytes(TOKEN_BYTES)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
