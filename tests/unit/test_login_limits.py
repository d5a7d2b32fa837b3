"""Failed-login counting in process memory (domain/auth/failure_windows.py) and the login
limiter without Redis (auth/limiter.py with no client), on a fake clock."""

from __future__ import annotations

import pytest
from tests.fake_clock import FakeClock

from metricgate.auth.limiter import LoginLimiter
from metricgate.config import AuthSettings, ConfigError, Settings
from metricgate.domain.auth.failure_windows import FailureWindows, Limit


def test_window_opens_at_the_first_failure_and_refuses_at_the_limit() -> None:
    windows = FailureWindows(Limit(3, 60))
    assert windows.wait_s("a", 0) is None
    assert [windows.fail("a", t) for t in (0, 10, 20)] == [1, 2, 3]
    assert windows.wait_s("a", 20) == 40  # the window opened at 0
    assert windows.wait_s("b", 20) is None  # keys are counted apart
    assert windows.wait_s("a", 59.5) == 0.5
    assert windows.wait_s("a", 60) is None  # closed: a fresh start
    assert windows.count("a", 60) == 0
    assert windows.fail("a", 61) == 1
    assert windows.wait_s("a", 62) is None


def test_failures_past_the_limit_do_not_extend_the_window() -> None:
    windows = FailureWindows(Limit(2, 10))
    for t in (0, 1, 2, 9):
        windows.fail("a", t)
    assert windows.count("a", 9) == 4
    assert windows.wait_s("a", 9) == 1


def test_clear_and_no_limit() -> None:
    windows = FailureWindows(Limit(1, 10))
    windows.fail("a", 0)
    windows.clear("a")
    windows.clear("never-seen")
    assert windows.wait_s("a", 0) is None
    off = FailureWindows(Limit(0, 10))
    assert off.fail("a", 0) == 0
    assert off.wait_s("a", 0) is None
    assert len(off) == 0


def test_memory_is_bounded_oldest_window_dropped_first() -> None:
    windows = FailureWindows(Limit(1, 100), max_keys=3)
    for t, key in enumerate("abc"):
        windows.fail(key, t)
    windows.fail("a", 3)  # a second failure keeps the key's place (and its window end)
    windows.fail("d", 4)
    assert len(windows) == 3
    assert windows.count("a", 4) == 0  # the oldest window went
    assert [windows.count(k, 4) for k in "bcd"] == [1, 1, 1]
    # Closed windows go before any live one.
    windows.fail("e", 101.5)  # b (ends 101) has closed; c (ends 102) and d stay
    assert [windows.count(k, 101.5) for k in "cde"] == [1, 1, 1]
    with pytest.raises(ValueError):
        FailureWindows(Limit(1, 1), max_keys=0)


def _limiter(clock: FakeClock, **limits: int) -> LoginLimiter:
    settings = AuthSettings(
        login_limit_per_address=limits.get("address", 5),
        login_address_window_s=60,
        login_limit_per_user=limits.get("user", 3),
        login_user_window_s=900,
    )
    return LoginLimiter(None, settings, clock=clock)


async def test_limiter_without_redis_per_user_from_any_address() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    for address in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        assert await limiter.check(address, "alice") is None
        await limiter.failed(address, "alice")
    clock.t += 100
    assert await limiter.check("4.4.4.4", "alice") == 800  # 900 s from the first failure
    assert await limiter.check("4.4.4.4", "bob") is None
    assert await limiter.check("4.4.4.4", None) is None
    clock.t += 800
    assert await limiter.check("4.4.4.4", "alice") is None


async def test_limiter_without_redis_per_address_whatever_the_name() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    for i in range(5):
        await limiter.failed("1.1.1.1", f"user{i}")  # unknown names count like known ones
    clock.t += 15
    assert await limiter.check("1.1.1.1", "someone-else") == 45
    assert await limiter.check("1.1.1.1", None) == 45  # a Bearer token from there too
    assert await limiter.check("2.2.2.2", "someone-else") is None


async def test_limiter_both_over_waits_for_the_later() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, address=3, user=3)
    for _ in range(3):
        await limiter.failed("1.1.1.1", "alice")
    assert await limiter.check("1.1.1.1", "alice") == 900


async def test_limiter_success_clears_the_user_not_the_address() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, address=4, user=3)
    for _ in range(3):
        await limiter.failed("1.1.1.1", "alice")
    assert await limiter.check("2.2.2.2", "alice") == 900
    await limiter.succeeded("alice")
    assert await limiter.check("2.2.2.2", "alice") is None
    await limiter.failed("1.1.1.1", "alice")
    assert await limiter.check("1.1.1.1", "carol") == 60  # the address's count stayed


async def test_limiter_with_limits_off() -> None:
    limiter = _limiter(FakeClock(), address=0, user=0)
    for _ in range(100):
        await limiter.failed("1.1.1.1", "alice")
    assert await limiter.check("1.1.1.1", "alice") is None


def test_settings_defaults_and_trusted_proxies() -> None:
    auth = Settings.from_env({}).auth
    assert (auth.login_limit_per_address, auth.login_address_window_s) == (30, 60)
    assert (auth.login_limit_per_user, auth.login_user_window_s) == (10, 900)
    assert auth.trusted_proxies == ()
    env = {"METRICGATE_TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8,192.168.1.7"}
    assert Settings.from_env(env).auth.trusted_proxies == ("10.0.0.0/8", "fd00::/8", "192.168.1.7")
    with pytest.raises(ConfigError, match="METRICGATE_TRUSTED_PROXIES: not an IP network: 'proxy'"):
        Settings.from_env({"METRICGATE_TRUSTED_PROXIES": "10.0.0.0/8,proxy"})
    with pytest.raises(ConfigError, match="METRICGATE_AUTH_LOGIN_USER_WINDOW_S"):
        Settings.from_env({"METRICGATE_AUTH_LOGIN_USER_WINDOW_S": "0"})
