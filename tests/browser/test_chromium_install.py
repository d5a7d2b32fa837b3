"""How ``devservices install`` provides the browser tests' Chromium: Debian's package, as root only.

apt-get itself is replaced by a recorder (installing a browser is not this test's business); the
real install is what ``scripts/test.sh`` does before the browser tests run.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from scripts import devservices


@pytest.fixture
def apt_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, ...]]:
    """No Chromium at the configured path; apt-get "installs" it by creating an executable there."""
    fake = tmp_path / "chromium"
    monkeypatch.setattr(devservices, "CHROMIUM", fake)
    calls: list[tuple[str, ...]] = []

    def apt_install(*packages: str) -> None:
        calls.append(packages)
        fake.write_text("#!/bin/sh\n")
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)

    monkeypatch.setattr(devservices, "_apt_install", apt_install)
    monkeypatch.setattr(devservices.shutil, "which", lambda name: f"/usr/bin/{name}")
    return calls


def test_root_installs_debian_chromium_with_fonts(
    apt_calls: list[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devservices, "_is_root", lambda: True)
    assert devservices.ensure_chromium(install=False) is None
    assert apt_calls == []
    assert devservices.ensure_chromium(install=True) == devservices.CHROMIUM
    assert apt_calls == [("chromium", "fonts-liberation")]
    # Installed: found without another apt-get.
    assert devservices.ensure_chromium(install=True) == devservices.CHROMIUM
    assert len(apt_calls) == 1


def test_without_root_nothing_is_installed(
    apt_calls: list[tuple[str, ...]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(devservices, "_is_root", lambda: False)
    assert devservices.ensure_chromium(install=True) is None
    assert apt_calls == []
    assert "browser tests will be skipped" in capsys.readouterr().err


def test_install_command_installs_chromium_unless_told_not_to(
    apt_calls: list[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devservices, "_is_root", lambda: True)
    assert devservices.main(["install", "--no-postgres", "--no-redis", "--no-chromium"]) == 0
    assert apt_calls == []
    assert devservices.main(["install", "--no-postgres", "--no-redis"]) == 0
    assert apt_calls == [("chromium", "fonts-liberation")]


def test_missing_chromium_skips_without_root_and_fails_as_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without root nobody could have installed it (skip, saying how); as root scripts/test.sh should have."""
    from tests.browser import conftest as browser_conftest

    monkeypatch.setattr(browser_conftest.os, "geteuid", lambda: 1000)
    with pytest.raises(
        pytest.skip.Exception,
        match=re.escape(
            "/usr/bin/chromium not found; run `python3 scripts/devservices.py install`"
        ),
    ):
        browser_conftest._unavailable("/usr/bin/chromium not found")
    monkeypatch.setattr(browser_conftest.os, "geteuid", lambda: 0)
    with pytest.raises(pytest.fail.Exception, match="/usr/bin/chromium not found"):
        browser_conftest._unavailable("/usr/bin/chromium not found")
