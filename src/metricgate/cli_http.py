"""The admin CLI commands' HTTP to a running server (`registry history`, `webhooks ...`).

Blocking urllib on purpose: one request at a time from a terminal needs no event loop. Server
errors come back as ``ServerError`` worded from MLflow's error body (``error_code: message``).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:5000"
TIMEOUT_S = 30


class ServerError(Exception):
    """The server refused the request, or could not be reached."""


def server_url(flag: str | None) -> str:
    """``--url``, else ``$MLFLOW_TRACKING_URI`` (the variable the mlflow client uses, so a shell
    set up for mlflow needs no flag), else the dev stack's address."""
    return (flag or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URL).rstrip("/")


def request_json(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read() or b"{}")  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())
            message = f"{error['error_code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        raise ServerError(message) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ServerError(f"cannot reach {url.split('?')[0]}: {exc}") from None
