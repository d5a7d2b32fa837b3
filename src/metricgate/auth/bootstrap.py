"""The first admin (docs/design-auth.md B1): with auth on, ``serve`` makes sure one exists before
it answers anything. There is no built-in password: without an admin and without
``METRICGATE_AUTH_ADMIN_PASSWORD`` the server refuses to start."""

from __future__ import annotations

import logging
import os
import socket

from metricgate.auth.passwords import Passwords
from metricgate.config import ENV_PREFIX, AuthSettings, ConfigError
from metricgate.domain.auth.rules import check_password, check_username
from metricgate.domain.errors import AlreadyExists, InvalidParameter
from metricgate.stores.base import AuditContext, AuthStore

log = logging.getLogger(__name__)


# The server itself, not a person: no user, no client address. Which process did it goes in the
# entry's details (``process_details``), since ``client_addr`` holds only an IP address.
SYSTEM = AuditContext(None, None, "system", None)


def process_details(via: str) -> dict[str, object]:
    """Where a system-made change came from: the path taken, the host and process."""
    return {"via": via, "host": socket.gethostname(), "pid": os.getpid()}


class AdminRequired(ConfigError):
    """Auth is on, the database has no admin, and nothing says how to create one."""


async def ensure_admin(
    store: AuthStore, settings: AuthSettings, passwords: Passwords | None = None
) -> bool:
    """Create the configured admin when auth is on and no admin exists; True when this call
    created it. Safe under concurrent starts: the store creates at most one."""
    if not settings.enabled or await store.any_admin():
        return False
    username = settings.admin_username
    if not settings.admin_password:
        raise AdminRequired(
            f"{ENV_PREFIX}AUTH is on but the database has no admin: set {ENV_PREFIX}AUTH_ADMIN_PASSWORD "
            f"(at least 12 characters; the admin is {ENV_PREFIX}AUTH_ADMIN_USERNAME, {username!r}) "
            "or run `metricgate users create-admin`"
        )
    try:
        check_username(username)
        check_password(settings.admin_password)
    except InvalidParameter as exc:  # never quotes the password
        raise ConfigError(f"{ENV_PREFIX}AUTH_ADMIN_USERNAME/PASSWORD: {exc}") from None
    own = passwords is None
    hasher = passwords or Passwords.from_settings(settings)
    try:
        password_hash = await hasher.hash(settings.admin_password)
    finally:
        if own:
            hasher.close()
    try:
        created = await store.create_admin_if_none(
            username, password_hash, audit=SYSTEM, details=process_details("bootstrap")
        )
    except AlreadyExists:
        raise AdminRequired(
            f"The database has no admin and {ENV_PREFIX}AUTH_ADMIN_USERNAME {username!r} names an "
            "existing user who is not one: choose another name or run `metricgate users create-admin`"
        ) from None
    if created:
        log.warning("auth: created the admin %r (no admin existed)", username)
    return created
