"""The access middleware's login step (docs/design-auth.md B7): the ``Authorization`` header to
a verified caller, under the failed-login limits, with every failure in the audit log.

A cached credential costs nothing more: the limiter is asked only when the authenticator has
to verify (its ``before_verify`` hook), before any password is hashed, so a caller over the
limit is refused without the KDF and a cached one makes no Redis round trip. A failure is
counted (per client address, and per username when the header names one) and leaves one
``login.failed`` audit row: the username as given, the client address, the reason, never the
secret. The failure that fills a window also leaves one ``login.locked`` row (which key, after
how many failures, for how long); the refusals during the lockout leave none, only a count in
``metricgate_login_refusals``, so a flood cannot grow the audit table at request rate: per key
and window, at most the limit's failures and one lockout. A verified login clears its
username's count. A request without the header is not a failed login (a browser's first
request, before the challenge) and counts nothing; nor does the web UI's logout, which sends a
reserved throwaway name (``rules.UI_LOGOUT_PREFIX``) to get its 401.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from aiohttp import web

from metricgate.api.services import AppServices
from metricgate.auth.authenticator import (
    MALFORMED,
    Authenticator,
    BasicLogin,
    Refused,
    parse_authorization,
)
from metricgate.domain.auth.client_address import Network, client_address
from metricgate.domain.auth.entities import Credential
from metricgate.domain.auth.rules import is_ui_logout
from metricgate.health_log import ThrottledLog
from metricgate.observability import METRICS

log = logging.getLogger(__name__)
_AUDIT_LOG = ThrottledLog(log, 60.0)


@dataclass(frozen=True, slots=True)
class Limited:
    """Over a failed-login limit: try again in ``retry_after_s`` (whole seconds, at least 1)."""

    retry_after_s: int


class _OverLimit(Exception):
    def __init__(self, wait_s: float) -> None:
        super().__init__(wait_s)
        self.retry_after_s = max(1, math.ceil(wait_s))


def request_address(request: web.Request, trusted_proxies: tuple[Network, ...]) -> str:
    """The client address a request's failed logins (and audit entries) go under."""
    return client_address(
        request.remote, request.headers.getall("X-Forwarded-For", []), trusted_proxies
    )


def cached_caller(request: web.Request, authenticator: Authenticator) -> Credential | None:
    """The hot path: the caller's credential when the authenticator's cache answers it now
    (nothing is verified, so nothing is counted or audited); None sends the request to
    ``log_in``."""
    header = request.headers.get("Authorization")
    if not header:
        return None
    presented = parse_authorization(header)
    if presented is None or (
        isinstance(presented, BasicLogin) and is_ui_logout(presented.username, presented.password)
    ):
        return None
    return authenticator.cached(presented)


async def log_in(
    request: web.Request,
    service: AppServices,
    authenticator: Authenticator,
    trusted_proxies: tuple[Network, ...],
) -> Credential | Limited | None:
    """The caller's verified credential; ``Limited`` when over a limit; None for a missing or
    failed credential (the same 401 for every reason)."""
    header = request.headers.get("Authorization")
    if not header:
        return None
    presented = parse_authorization(header)
    if isinstance(presented, BasicLogin) and is_ui_logout(presented.username, presented.password):
        return None  # the web UI's logout (rules.UI_LOGOUT_PREFIX): a 401, nothing counted
    limiter = service.login_limiter
    username = presented.username if isinstance(presented, BasicLogin) else None
    method = None if presented is None else "basic" if username is not None else "token"
    verified = False

    # The client address is only needed when a credential is verified or fails (a cached caller,
    # the hot path, never needs it): parsing X-Forwarded-For was ~1% of an ingest server's CPU.
    def address() -> str:
        return request_address(request, trusted_proxies)

    async def before_verify() -> None:
        nonlocal verified
        verified = True
        if limiter is not None:
            wait = await limiter.check(address(), username)
            if wait is not None:
                raise _OverLimit(wait)

    try:
        if presented is None:
            await before_verify()
            found: Credential | Refused = Refused(MALFORMED)
        else:
            found = await authenticator.login(presented, before_verify=before_verify)
    except _OverLimit as over:
        # Its lockout was audited when it began (``login.locked``): no row per refusal.
        METRICS.login_refusals.inc()
        return Limited(over.retry_after_s)
    if isinstance(found, Credential):
        if verified and username is not None and limiter is not None:
            await limiter.succeeded(username)
        return found
    client = address()
    lockouts = [] if limiter is None else await limiter.failed(client, username)
    await _audit(service, username, method, client, "login.failed", {"reason": found.reason})
    for lockout in lockouts:
        details = {
            "scope": lockout.scope,
            "failures": lockout.failures,
            "retry_after_s": math.ceil(lockout.retry_after_s),
        }
        await _audit(service, username, method, client, "login.locked", details)
    return None


async def _audit(
    service: AppServices,
    username: str | None,
    method: str | None,
    address: str,
    action: str,
    details: dict[str, object],
) -> None:
    """One ``login.failed`` or ``login.locked`` row. The 401 goes out whether or not it could
    be written: a database outage must not turn refusals into 503s, and is logged (throttled)
    instead."""
    store = service.auth
    if store is None:
        return
    try:
        await store.append_audit(
            actor_id=None,  # nobody was verified: ``actor`` is the name as given
            actor=username,
            auth_method=method,
            client_addr=address,
            action=action,
            target_type=None,
            target_id=None,
            details=details,
        )
    except Exception as exc:  # the refusal stands without its audit row
        _AUDIT_LOG.warning("login-audit", "could not record a failed login: %s", exc)
