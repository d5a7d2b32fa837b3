"""A real HTTP webhook receiver on loopback, and helpers to produce registry events.

``Receiver`` answers with a scripted list of statuses (the last one repeats), optionally after a
delay, and records every request (headers and raw body). It can be started on a fixed port
after a delivery has already failed against that port (receiver down, then up).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from scripts import devservices


async def insert_event(
    conn: asyncpg.Connection,
    event_type: str,
    model_name: str,
    version: int | None = None,
    *,
    actor: str | None = "alice",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    comment: str | None = None,
) -> asyncpg.Record:
    """Insert a registry event as the registry does (the trigger fans it out); return its row."""
    row = await conn.fetchrow(
        """INSERT INTO registry_events (event_type, model_name, version, actor, before, after, comment)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7) RETURNING *""",
        event_type,
        model_name,
        version,
        actor,
        None if before is None else orjson.dumps(before).decode(),
        None if after is None else orjson.dumps(after).decode(),
        comment,
    )
    assert row is not None
    return row


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    statuses: list[int] = field(default_factory=lambda: [200])
    delay_s: float = 0.0
    reply_text: str | None = None
    port: int = field(default_factory=devservices.find_free_port)
    requests: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        index = len(self.requests)
        self.requests.append(Received(dict(request.headers), body, time.monotonic()))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = self.statuses[min(index, len(self.statuses) - 1)]
        return web.Response(status=status, text=self.reply_text or f"receiver says {status}")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def wait_for(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout_s: float = 10.0
) -> None:
    """Poll ``predicate`` (sync or async) until true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.05)
