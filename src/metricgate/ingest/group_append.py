"""Group commit for stream appends: concurrent requests share one Redis round trip.

Each request still waits for its own reply from Redis before it is acknowledged; what is shared
is the pipeline, the connection checkout and the system calls. While one pipeline is in flight,
new appends queue (bounded by the gateway's in-flight limit) and go out together in the next.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from redis.asyncio.client import Pipeline

# Queued-up appends sent in one pipeline at most; more wait for the next one.
MAX_PIPELINE_COMMANDS = 512
# Pipelines in flight at once: one more overlaps a round trip with building the next batch.
MAX_PIPELINES_IN_FLIGHT = 2

Command = Callable[[Pipeline], None]


class GroupAppender:
    def __init__(self, open_pipeline: Callable[[], Pipeline]) -> None:
        self._open_pipeline = open_pipeline
        self._queue: list[tuple[Command, asyncio.Future[object]]] = []
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_PIPELINES_IN_FLIGHT)
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    async def submit(self, command: Command) -> object:
        """Queue a command (it adds itself to a pipeline); return its reply or raise its error."""
        if self._task is None:
            self._task = asyncio.create_task(self._dispatch(), name="group-append")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        self._wakeup.set()
        return await future

    async def _dispatch(self) -> None:
        while True:
            await self._wakeup.wait()
            await self._slots.acquire()
            batch = self._queue[:MAX_PIPELINE_COMMANDS]
            del self._queue[: len(batch)]
            if not self._queue:
                self._wakeup.clear()
            if not batch:
                self._slots.release()
                continue
            send = asyncio.create_task(self._send(batch))
            self._sends.add(send)
            send.add_done_callback(self._sends.discard)

    async def _send(self, batch: list[tuple[Command, asyncio.Future[object]]]) -> None:
        try:
            async with self._open_pipeline() as pipe:
                for command, _ in batch:
                    command(pipe)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every command of the batch failed
            for _, future in batch:
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, Exception) else ConnectionError(str(exc))
                    )
            if not isinstance(exc, Exception):
                raise
        else:
            # One reply per command: each command adds exactly one to the pipeline.
            for (_, future), reply in zip(batch, replies, strict=False):
                if future.done():  # the request was cancelled (client went away)
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for send in list(self._sends):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await send
