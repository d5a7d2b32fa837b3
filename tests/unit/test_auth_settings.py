"""METRICGATE_AUTH_*: defaults, the admin password's rules, and that it never shows in a repr or
an error message."""

from __future__ import annotations

import pytest

from metricgate.config import ConfigError, Settings

SECRET = "correct-horse-battery"


def test_defaults() -> None:
    auth = Settings.from_env({}).auth
    assert auth.mode == "off" and auth.enabled is False
    assert auth.admin_username == "admin"
    assert auth.admin_password == ""
    assert auth.default_permission == "READ"
    assert auth.cache_entries == 10_000
    assert auth.public_paths == ("/health", "/ready", "/metrics")


def test_values_are_read_and_normalized() -> None:
    auth = Settings.from_env(
        {
            "METRICGATE_AUTH": "ON",
            "METRICGATE_AUTH_ADMIN_USERNAME": "root",
            "METRICGATE_AUTH_ADMIN_PASSWORD": SECRET,
            "METRICGATE_AUTH_DEFAULT_PERMISSION": "no_permissions",
            "METRICGATE_AUTH_CACHE_ENTRIES": "0",
            "METRICGATE_AUTH_PUBLIC_PATHS": "/health, /ready",
        }
    ).auth
    assert auth.enabled is True
    assert (auth.admin_username, auth.admin_password) == ("root", SECRET)
    assert auth.default_permission == "NO_PERMISSIONS"
    assert auth.cache_entries == 0
    assert auth.public_paths == ("/health", "/ready")


def test_short_admin_password_with_auth_on_is_refused_without_quoting_it() -> None:
    env = {"METRICGATE_AUTH": "on", "METRICGATE_AUTH_ADMIN_PASSWORD": "short-pw"}
    with pytest.raises(ConfigError, match="METRICGATE_AUTH_ADMIN_PASSWORD") as excinfo:
        Settings.from_env(env)
    assert "short-pw" not in str(excinfo.value)
    assert "12" in str(excinfo.value)


def test_auth_on_without_a_password_is_valid_configuration() -> None:
    # Whether an admin already exists is the database's to say: serve checks at start.
    assert Settings.from_env({"METRICGATE_AUTH": "on"}).auth.enabled


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("METRICGATE_AUTH", "maybe"),
        ("METRICGATE_AUTH_DEFAULT_PERMISSION", "DENY"),
        ("METRICGATE_AUTH_ADMIN_USERNAME", "a:b"),
        ("METRICGATE_AUTH_PUBLIC_PATHS", "/health,metrics"),
        ("METRICGATE_AUTH_CACHE_ENTRIES", "-1"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_reprs_hide_the_admin_password() -> None:
    settings = Settings.from_env(
        {"METRICGATE_AUTH": "on", "METRICGATE_AUTH_ADMIN_PASSWORD": SECRET}
    )
    for text in (repr(settings), str(settings), repr(settings.auth)):
        assert SECRET not in text
    assert "admin_password='***'" in repr(settings.auth)


def test_password_cost_defaults_to_argon2_cffi_and_reaches_the_hashes() -> None:
    import argon2

    from metricgate.auth.passwords import Passwords

    default = argon2.PasswordHasher()
    auth = Settings.from_env({}).auth
    assert (auth.password_time_cost, auth.password_memory_kib, auth.password_parallelism) == (
        default.time_cost,
        default.memory_cost,
        default.parallelism,
    )
    cheap = Settings.from_env(
        {
            "METRICGATE_AUTH_PASSWORD_TIME_COST": "1",
            "METRICGATE_AUTH_PASSWORD_MEMORY_KIB": "1024",
            "METRICGATE_AUTH_PASSWORD_PARALLELISM": "2",
        }
    ).auth
    passwords = Passwords.from_settings(cheap)
    try:
        made = passwords._hasher.hash("x" * 12)
        assert made.startswith("$argon2id$v=19$m=1024,t=1,p=2$")
        # A hash of the default cost is re-made under the configured one, and the reverse.
        assert passwords.needs_rehash(default.hash("x" * 12))
        assert Passwords(default).needs_rehash(made)
    finally:
        passwords.close()


def test_password_memory_must_cover_the_lanes() -> None:
    env = {"METRICGATE_AUTH_PASSWORD_MEMORY_KIB": "16", "METRICGATE_AUTH_PASSWORD_PARALLELISM": "4"}
    with pytest.raises(ConfigError, match="AUTH_PASSWORD_MEMORY_KIB must be at least 8 x"):
        Settings.from_env(env)
