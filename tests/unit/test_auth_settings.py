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
