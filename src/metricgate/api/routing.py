"""A route table entry; each API module exports ``ROUTES: list[Route]``.

Every entry declares its access rule (docs/design-auth.md B4): ``access`` has no default, so a
route without one does not construct. api/app.py collects the rules of everything it registers
into ``app[ACCESS_RULES]``, keyed by ``rule_key``, which the access check reads for the route a
request matched.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from metricgate.domain.auth.access import AccessRule

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# How often a read whose client may have left looks at its connection. aiohttp (set not to cancel
# handlers, so that no write is cut halfway) offers no event for a lost connection; a timer per
# running read is cheap next to the query it guards.
DISCONNECT_POLL_S = 0.1


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    access: AccessRule
    # A read whose cost the client's input decides (a search, a metric history): abandoned, with
    # its PostgreSQL statement cancelled, when the client goes away. Writes never are: a write
    # runs to its end (commit or rollback) whatever the client does.
    abandon_on_disconnect: bool = False

    def registered_handler(self) -> Handler:
        if not self.abandon_on_disconnect:
            return self.handler
        return _abandoned_on_disconnect(self.handler)


# (method, canonical path): ``/runs/get``, ``/logged-models/{model_id}``, one per added route.
RuleKey = tuple[str, str]
ACCESS_RULES = web.AppKey[dict[RuleKey, AccessRule]]("access_rules")


def rule_key(route: web.AbstractRoute) -> RuleKey:
    """The key of an added aiohttp route in ``app[ACCESS_RULES]``."""
    resource = route.resource
    assert resource is not None, "every route this app adds belongs to a resource"
    return route.method, resource.canonical


class ClientLeft(ConnectionResetError):
    """The client closed its connection while its read ran; the read was cancelled. A
    ConnectionError, so the error middleware counts it as a disconnect (499), not a failure."""


def client_gone(request: web.Request) -> bool:
    """True once the connection of ``request`` is closed (aiohttp drops the transport then)."""
    transport = request.transport
    return transport is None or transport.is_closing()


@contextlib.asynccontextmanager
async def cancelled_when_client_leaves(request: web.Request) -> AsyncIterator[None]:
    """Cancel the current task once ``request``'s connection closes. asyncpg answers the
    cancellation of a running query by sending PostgreSQL a cancel request, so the statement
    stops instead of running on for nobody while it holds a read connection."""
    task = asyncio.current_task()
    assert task is not None
    left = False

    async def watch() -> None:
        nonlocal left
        while not client_gone(request):
            await asyncio.sleep(DISCONNECT_POLL_S)
        left = True
        task.cancel()

    watcher = asyncio.create_task(watch(), name="disconnect-watch")
    try:
        yield
    except asyncio.CancelledError:
        # Only our own cancellation becomes ClientLeft; a shutdown's goes on as it came.
        if left and task.uncancel() == 0:
            raise ClientLeft("client closed the connection; read cancelled") from None
        raise
    finally:
        watcher.cancel()


def _abandoned_on_disconnect(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        async with cancelled_when_client_leaves(request):
            return await handler(request)

    return run
