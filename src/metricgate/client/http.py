"""HTTP calls to a metricgate (or MLflow) server with retries.

Connection errors, timeouts, 5xx and 429 are retried with exponential backoff and jitter,
honouring ``Retry-After``; every other 4xx is the caller's mistake and raises at once with the
server's MLflow-style ``error_code`` and ``message``. Bodies are bytes the caller already holds
(one part at a time), so a retry can send them again.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from metricgate.client.errors import ClientError, ServerUnavailable

T = TypeVar("T")
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRY_EXCEPTIONS = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    asyncio.TimeoutError,
)


@dataclass(frozen=True)
class RetryPolicy:
    # The defaults ride out a gateway restart (seconds) but give up on a server that is gone.
    attempts: int = 10
    initial_s: float = 0.25
    max_s: float = 10.0
    deadline_s: float = 180.0  # per call, all attempts together

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_s * 3)
        base = min(self.max_s, self.initial_s * (2.0**attempt))
        return base * (0.5 + random.random() / 2)  # jitter: parallel workers do not retry in step


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _error_from(status: int, body: bytes, what: str) -> ClientError:
    code, message = None, body[:500].decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            code, message = parsed.get("error_code"), str(parsed.get("message") or message)
    except ValueError:
        pass
    prefix = f"{what}: HTTP {status}" + (f" {code}" if code else "")
    return ClientError(f"{prefix}: {message or 'no message'}", status=status, error_code=code)


class Api:
    """One aiohttp session against ``base_url``; every call is retried by ``policy``."""

    def __init__(self, base_url: str, *, policy: RetryPolicy | None = None, connections: int = 16,
                 read_timeout_s: float = 300.0,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.policy = policy or RetryPolicy()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=read_timeout_s)
        self.session = aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=connections),
            raise_for_status=False,
            headers=headers,  # sent with every request (``Authorization``)
        )
        self.retries = 0  # how many attempts failed and were retried (reported by the CLI)

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, path: str) -> str:
        return self.base_url + path

    async def retrying(self, what: str, attempt_once: Callable[[], Awaitable[T]]) -> T:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return await attempt_once()
            except (_Retryable, *_RETRY_EXCEPTIONS) as exc:
                attempt += 1
                retry_after = exc.retry_after if isinstance(exc, _Retryable) else None
                delay = self.policy.delay(attempt - 1, retry_after)
                if (
                    attempt >= self.policy.attempts
                    or time.monotonic() - started + delay > self.policy.deadline_s
                ):
                    detail = str(exc) or type(exc).__name__
                    raise ServerUnavailable(
                        f"{what}: gave up after {attempt} attempts: {detail}"
                    ) from exc
                self.retries += 1
                await asyncio.sleep(delay)

    async def json(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None,
                   what: str | None = None) -> Any:  # fmt: skip
        label = what or f"{method} {path}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}

        async def once() -> Any:
            async with self.session.request(
                method, self.url(path), data=data, params=params, headers=headers
            ) as resp:
                raw = await resp.read()
                self._check(resp, raw, label)
                return json.loads(raw) if raw else {}

        return await self.retrying(label, once)

    async def put_bytes(self, path: str, data: bytes, headers: dict[str, str], what: str) -> Any:
        async def once() -> Any:
            async with self.session.put(self.url(path), data=data, headers=headers) as resp:
                raw = await resp.read()
                self._check(resp, raw, what)
                return json.loads(raw) if raw else {}

        return await self.retrying(what, once)

    async def get_range(
        self,
        path: str,
        start: int,
        end: int | None,
        new_sink: Callable[[], Callable[[bytes], Awaitable[None]]],
        what: str,
    ) -> int | None:
        """GET bytes ``[start, end)`` (``end`` None: to the end of the file) into a sink, chunk by
        chunk; returns the file's total size as the server reported it. Every attempt gets a fresh
        sink from ``new_sink`` (a retry restarts the range from ``start``)."""

        async def once() -> int | None:
            headers = {"Range": f"bytes={start}-{'' if end is None else end - 1}"}
            sink = new_sink()
            async with self.session.get(self.url(path), headers=headers) as resp:
                if (
                    resp.status == 416
                    and resp.headers.get("Content-Range", "").strip() == "bytes */0"
                ):
                    return 0  # an empty file has no byte to ask for
                if resp.status not in (200, 206):
                    self._check(resp, await resp.read(), what)
                    raise ClientError(f"{what}: unexpected HTTP {resp.status}", status=resp.status)
                if resp.status == 200:
                    # A server that ignores Range sends the whole file; usable only from offset 0.
                    if start != 0:
                        raise ClientError(
                            f"{what}: the server does not support Range requests", status=200
                        )
                    total = resp.content_length
                else:
                    total = _content_range_total(resp.headers.get("Content-Range"))
                # The server clamps a range that runs past the end (a first probe of a small file).
                last = end if total is None or end is None else min(end, total)
                want = None if last is None else last - start
                received = 0
                async for chunk in resp.content.iter_chunked(1024 * 1024):
                    if want is not None and received + len(chunk) > want:
                        chunk = chunk[: want - received]
                    await sink(chunk)
                    received += len(chunk)
                    if want is not None and received >= want:
                        break
                if want is not None and received < want:
                    raise aiohttp.ClientPayloadError(
                        f"{what}: connection ended after {received} of {want} bytes"
                    )
                return total

        return await self.retrying(what, once)

    def _check(self, resp: aiohttp.ClientResponse, raw: bytes, what: str) -> None:
        if resp.status < 400:
            return
        if resp.status in _RETRY_STATUSES:
            raise _Retryable(f"HTTP {resp.status}", _retry_after(resp.headers))
        raise _error_from(resp.status, raw, what)


def _content_range_total(value: str | None) -> int | None:
    # "bytes 0-99/1234"
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isascii() and total.isdigit() else None
