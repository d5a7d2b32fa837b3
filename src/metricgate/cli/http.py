"""The admin commands' HTTP to a running server (`registry history`, `webhooks ...`).

The same stack and error type as the artifact client (``metricgate.client.http``): one request
at a time from a terminal, each in its own short event loop. No retries: a command that creates
something must not create it twice after a 5xx; the person at the terminal re-runs it.
Failures come back as ``ClientError`` worded from MLflow's error body (``error_code: message``).

Credentials are the mlflow client's: ``$MLFLOW_TRACKING_USERNAME``/``$MLFLOW_TRACKING_PASSWORD``
(HTTP Basic), else ``$MLFLOW_TRACKING_TOKEN`` (Bearer), sent by every command, so a shell set up
for mlflow needs no flag; a command may pass its own (``metricgate users --username``).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from metricgate.client.errors import ClientError
from metricgate.client.http import Api, RetryPolicy
from metricgate.config import mlflow_tracking_credentials, mlflow_tracking_uri

DEFAULT_URL = "http://127.0.0.1:5000"
TIMEOUT_S = 30.0
_ONCE = RetryPolicy(attempts=1)

__all__ = [
    "DEFAULT_URL",
    "ClientError",
    "authorization",
    "env_authorization",
    "request_json",
    "server_url",
]


def server_url(flag: str | None) -> str:
    """``--url``, else ``$MLFLOW_TRACKING_URI`` (the variable the mlflow client uses, so a shell
    set up for mlflow needs no flag), else the dev stack's address."""
    return (flag or mlflow_tracking_uri() or DEFAULT_URL).rstrip("/")


def authorization(
    username: str | None, password: str | None, token: str | None = None
) -> str | None:
    """An ``Authorization`` header value as the mlflow client builds it: Basic when both a
    username and a password are given, else Bearer with the token, else None."""
    if username and password:
        pair = f"{username}:{password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    if token:
        return f"Bearer {token}"
    return None


def env_authorization() -> str | None:
    """The ``Authorization`` header of the mlflow client's credential variables, if any."""
    return authorization(*mlflow_tracking_credentials())


def request_json(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    auth_header: str | None = None,
) -> dict[str, Any]:
    """``method url`` with a JSON body; the decoded JSON answer, or ClientError.
    ``auth_header`` (an ``Authorization`` value) defaults to the mlflow client's variables'."""
    header = auth_header or env_authorization()
    headers = {"Authorization": header} if header else None

    async def call() -> Any:
        async with Api(
            "", policy=_ONCE, connections=1, read_timeout_s=TIMEOUT_S, headers=headers
        ) as api:
            return await api.json(method, url, body=body, what=f"{method} {url.split('?')[0]}")

    answer = asyncio.run(call())
    if not isinstance(answer, dict):
        raise ClientError(f"{method} {url.split('?')[0]}: the answer is not a JSON object")
    return answer
