"""Batching per request: a search's N runs ask for their experiment and registered versions in
one query each, not N (stock MLflow runs one search per run)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BatchLoader(Generic[K, V]):
    """``load(key)`` returns a future; the keys asked for before the event loop next runs are
    fetched together with one ``fetch(keys)`` call.

    The executor resolves the fields of every item of a list before it awaits any of them, so
    one level of a query (all runs of a page) becomes one batch. Each key is fetched at most
    once per loader, i.e. per request.
    """

    def __init__(
        self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]], missing: Callable[[], V]
    ) -> None:
        self._fetch = fetch
        self._missing = missing  # the value of a key ``fetch`` did not return
        self._futures: dict[K, asyncio.Future[V]] = {}
        self._pending: list[K] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def load(self, key: K) -> asyncio.Future[V]:
        future = self._futures.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._futures[key] = loop.create_future()
            if not self._pending:
                loop.call_soon(self._dispatch)
            self._pending.append(key)
        return future

    def _dispatch(self) -> None:
        keys, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._run(keys))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, keys: list[K]) -> None:
        try:
            found = await self._fetch(keys)
        except Exception as exc:
            for key in keys:
                self._fail(key, exc)
            return
        except asyncio.CancelledError:
            for key in keys:
                self._futures[key].cancel()
            raise
        for key in keys:
            self._settle(key, found[key] if key in found else self._missing())

    def _settle(self, key: K, value: V) -> None:
        future = self._futures[key]
        if not future.done():
            future.set_result(value)

    def _fail(self, key: K, exc: Exception) -> None:
        future = self._futures[key]
        if not future.done():
            future.set_exception(exc)

    def close(self) -> None:
        """Cancel fetches still running (the request is over, e.g. its client went away)."""
        for task in list(self._tasks):
            task.cancel()
