"""Shared helpers for API tests with auth on: credentials headers, cheap password hashes, and
settings that turn auth on. The older auth tests keep their own copies; new ones use these."""

from __future__ import annotations

import base64
from pathlib import Path

import argon2

from metricgate.config import Settings

ADMIN = "admin"
ADMIN_PASSWORD = "admin-password-0123"
PASSWORD = "user-password-0123"
# Users made straight in the store get cheap KDF parameters (the hash carries them, so checking
# them is cheap too); the admin is made by the server at start with the real ones.
FAST = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def basic(username: str, password: str) -> dict[str, str]:
    raw = f"{username}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def auth_settings(db_url: str, redis_url: str, artifacts: Path, **env: str) -> Settings:
    """Auth on, the admin's password set; ``env`` adds METRICGATE_* variables."""
    return Settings.from_env(
        {"METRICGATE_AUTH": "on", "METRICGATE_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD, **env},
        database_url=db_url,
        redis_url=redis_url,
        artifacts_uri="file://" + str(artifacts),
    )
