"""Imported MLflow password hashes and the re-hash at login (docs/design-auth.md B3, B9), without a
database: werkzeug's ``scrypt:`` and ``pbkdf2:`` hashes, made by werkzeug itself here, verified
by metricgate's ``hashlib`` code (werkzeug is not a runtime dependency); ``Passwords.upgrade``
storing argon2id through a compare-and-set that a concurrent password change wins, and never
failing the login. tests/integration/test_mlflow_import.py does it against PostgreSQL."""

from __future__ import annotations

import logging
from typing import cast

import argon2
import pytest
from werkzeug.security import generate_password_hash

from metricgate.auth.passwords import Passwords, is_werkzeug_hash, verify_werkzeug
from metricgate.stores.base import AuthStore

PASSWORD = "s3cret-password-1"
FAST = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

# werkzeug's defaults (scrypt:32768:8:1, pbkdf2:sha256:1000000) and cheaper variants of both.
METHODS = (
    "scrypt",
    "scrypt:1024:8:1",
    "scrypt:2048:4:2",
    "pbkdf2:sha256:1000",
    "pbkdf2:sha512:1000",
    "pbkdf2:sha1:1000",
)


@pytest.mark.parametrize("method", METHODS)
def test_werkzeug_hashes_verify_as_werkzeug_decides(method: str) -> None:
    made = generate_password_hash(PASSWORD, method=method)
    assert is_werkzeug_hash(made)
    assert verify_werkzeug(made, PASSWORD)
    if method != "scrypt":  # the default costs ~0.3 s a verification: once is enough
        assert not verify_werkzeug(made, PASSWORD + "x")
        assert not verify_werkzeug(made, PASSWORD.upper())


def test_non_ascii_passwords_and_salts() -> None:
    password = "pässwörd-日本語-0123"
    assert verify_werkzeug(generate_password_hash(password, method="scrypt:1024:8:1"), password)
    # A salt is text to werkzeug (utf-8 encoded); MLflow's are ASCII, but nothing requires it.
    salt = "sältig"
    import hashlib

    derived = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 1000).hex()
    assert verify_werkzeug(f"pbkdf2:sha256:1000${salt}${derived}", password)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "scrypt:1024:8:1",  # no salt, no digest
        "scrypt:1024:8:1$salt",  # no digest
        "scrypt:1024:8$salt$00",  # two parameters
        "scrypt:1000:8:1$salt$00",  # n not a power of two
        "scrypt:x:8:1$salt$00",
        "pbkdf2:nosuchhash:1000$salt$00",
        "pbkdf2:sha256:0$salt$00",
        "pbkdf2:sha256:1000:7$salt$00",
        "sha256$salt$00",  # werkzeug's plain hashes, gone since werkzeug 3
        "bcrypt:12$salt$00",
        "pbkdf2:sha256:1000$salt$ünicode",
    ],
)
def test_malformed_or_unknown_hashes_are_false(bad: str) -> None:
    assert not verify_werkzeug(bad, PASSWORD)


def test_costs_beyond_the_caps_are_refused_before_any_work() -> None:
    # 2**24 * 8 * 132 bytes: 17 GiB would be asked of scrypt; refused at once, not attempted.
    assert not verify_werkzeug("scrypt:16777216:8:1$salt$00", PASSWORD)
    assert not verify_werkzeug("pbkdf2:sha256:100000000$salt$00", PASSWORD)


async def test_passwords_verify_imported_hashes_and_want_them_replaced() -> None:
    passwords = Passwords(FAST)
    try:
        imported = generate_password_hash(PASSWORD, method="scrypt:1024:8:1")
        assert await passwords.verify(imported, PASSWORD)
        assert not await passwords.verify(imported, "wrong-password-1")
        assert passwords.needs_rehash(imported)
        today = await passwords.hash(PASSWORD)
        assert not passwords.needs_rehash(today)
        # Raised parameters reach hashes made before them.
        assert Passwords(
            argon2.PasswordHasher(time_cost=2, memory_cost=8, parallelism=1)
        ).needs_rehash(today)
    finally:
        passwords.close()


class CasStore:
    """``rehash_password`` alone, as PgAuthStore does it: the swap happens only if the stored
    hash is still the one verified. ``before_swap`` runs first (a concurrent change)."""

    def __init__(self, stored: str) -> None:
        self.stored = stored
        self.calls = 0
        self.before_swap: str | None = None
        self.fail: Exception | None = None

    async def rehash_password(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        if self.before_swap is not None:
            self.stored = self.before_swap
        if self.stored != old_hash:
            return False
        self.stored = new_hash
        return True


async def test_upgrade_stores_argon2id_once() -> None:
    passwords = Passwords(FAST)
    try:
        old = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
        store = CasStore(old)
        assert await passwords.upgrade(cast(AuthStore, store), 7, old, PASSWORD)
        assert store.stored.startswith("$argon2id$")
        assert await passwords.verify(store.stored, PASSWORD)
        # Today's hash: nothing to do, the store is not asked.
        assert not await passwords.upgrade(cast(AuthStore, store), 7, store.stored, PASSWORD)
        assert store.calls == 1
    finally:
        passwords.close()


async def test_upgrade_loses_to_a_concurrent_password_change() -> None:
    passwords = Passwords(FAST)
    try:
        old = generate_password_hash(PASSWORD, method="scrypt:1024:8:1")
        store = CasStore(old)
        changed = await passwords.hash("the-new-password-2")
        store.before_swap = changed  # set-password commits between the verify and the swap
        assert not await passwords.upgrade(cast(AuthStore, store), 7, old, PASSWORD)
        assert store.stored == changed  # the new password stands
    finally:
        passwords.close()


async def test_upgrade_failure_never_fails_the_login_nor_logs_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    passwords = Passwords(FAST)
    try:
        old = generate_password_hash(PASSWORD, method="scrypt:1024:8:1")
        store = CasStore(old)
        store.fail = ConnectionResetError("database went away")
        with caplog.at_level(logging.DEBUG, logger="metricgate.auth.passwords"):
            assert not await passwords.upgrade(cast(AuthStore, store), 7, old, PASSWORD)
        assert store.stored == old
        assert "re-hash" in caplog.text
        assert PASSWORD not in caplog.text and old not in caplog.text
    finally:
        passwords.close()
