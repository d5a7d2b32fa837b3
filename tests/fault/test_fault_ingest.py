"""Fault tests of the metric ingest path (gateway -> Redis streams -> flushers -> PostgreSQL).

Every test sends a known set of points (a distinct (run, key, step) each) through real
``metricgate serve`` / ``metricgate flush`` processes while a fault happens, retries whatever was
not acknowledged (as the mlflow client would), waits for the streams to drain and then requires
PostgreSQL's ``metrics`` table to hold exactly the acknowledged points: none missing, none extra,
none twice. See harness.py for the machinery.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from harness import (
    API,
    Cluster,
    LoadDriver,
    MgProcess,
    PendingSnapshot,
    PointPlan,
    RedisServer,
    assert_exact,
    check_exact,
    check_latest_metrics,
    create_migrated_database,
    create_runs,
    dead_letters,
    entries_added,
    pending_by_consumer,
    pending_snapshot,
    read_history,
    stream_state,
    wait_drained,
)

from scripts import devservices

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]


async def _verify(
    cluster: Cluster,
    driver: LoadDriver,
    *,
    finish_timeout_s: float = 45,
    drain_timeout_s: float = 30,
) -> None:
    """Finish the load (every request acknowledged), wait for the drain, check PostgreSQL exactly."""
    expected: dict = {}
    try:
        await driver.finish(finish_timeout_s)
        expected = driver.expected()
        drained = await wait_drained(
            cluster.db_url, cluster.redis_url, len(expected), timeout_s=drain_timeout_s
        )
    except AssertionError as exc:
        report = await check_exact(cluster.db_url, driver.expected())
        await asyncio.to_thread(
            cluster.close
        )  # SIGTERM: a dead flusher task logs why on its way out
        raise AssertionError(
            f"{exc}\n{report}\n{_outside(cluster)}problems: {cluster.problems()}\n{cluster.logs()}"
        ) from None
    assert not driver.bad_responses, (
        f"non-retryable answers (a 500 is a bug): {driver.bad_responses[:5]}\n{driver.summary()}"
    )
    assert driver.retry_after_missing == 0, (
        f"{driver.retry_after_missing} 429/503 answers without Retry-After"
    )
    report = await check_exact(cluster.db_url, expected)
    assert_exact(
        report,
        driver,
        cluster,
        extra=f"drain: {drained.state.describe()} history {drained.history[-5:]}",
    )
    dead = await dead_letters(cluster.redis_url)
    assert not dead, (
        f"entries were dead-lettered (their points never reach PostgreSQL): {dead}\n{cluster.problems()}"
    )
    latest = await check_latest_metrics(cluster.db_url, expected)
    assert not latest, "\n".join(latest[:10])
    assert not cluster.stopped_from_outside(), _outside(cluster)


def _outside(cluster: Cluster) -> str:
    hit = cluster.stopped_from_outside()
    if not hit:
        return ""
    return f"NOTE: {hit} got a SIGTERM/SIGINT from outside the test (not a server bug)\n"


async def _started(proc: MgProcess) -> MgProcess:
    proc.start()
    await asyncio.to_thread(proc.wait_healthy)
    return proc


async def _wait_no_pending_for(redis_url: str, consumers: set[str], timeout_s: float) -> float:
    """Wait until none of ``consumers`` (dead flushers) holds a pending entry; seconds it took."""
    started = time.monotonic()
    while True:
        held = {
            c: n for c, n in (await pending_by_consumer(redis_url)).items() if c in consumers and n
        }
        if not held:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(
                f"entries of dead flushers were never reclaimed (XAUTOCLAIM): {held}"
            )
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------- (1) flusher SIGKILL


async def _freeze_holding(flusher: MgProcess, cluster: Cluster, want: str) -> PendingSnapshot:
    """SIGSTOP the flusher at a moment it holds pending entries and return what they are.

    ``want``: "uncommitted" (caught before COMMIT), "committed" (caught between COMMIT and
    XACK: its points are already in PostgreSQL, the successor replays them) or "any". Tries a
    number of random moments; falls back to any moment with pending entries."""
    fallback = None
    for _attempt in range(150):
        flusher.freeze()
        snap = await pending_snapshot(cluster.redis_url, cluster.db_url)
        if snap.entries:
            fallback = snap
            committed = snap.committed_points > 0
            if want == "any" or committed == (want == "committed"):
                return snap
        flusher.thaw()
        await asyncio.sleep(random.uniform(0.002, 0.02))
    flusher.freeze()
    return (
        fallback
        if fallback is not None
        else await pending_snapshot(cluster.redis_url, cluster.db_url)
    )


# The successors' orphan-claim idle time in this test: long enough that a flusher started right
# after a kill does not find the orphans on its first XAUTOCLAIM, so it must come back for them.
CLAIM_IDLE_S = 2


async def test_flusher_killed_mid_batch_its_entries_are_reclaimed_exactly_once(
    cluster: Cluster,
) -> None:
    """SIGKILL three flushers in turn while they hold pending entries: one before COMMIT, one
    between COMMIT and XACK (caught by freezing it at random moments until PostgreSQL already
    holds its pending points), and one at the very end of the burst, after which no new entry
    ever arrives. Each successor must XAUTOCLAIM the dead one's entries, and the replay must
    neither lose nor duplicate a point."""
    gateway = await _started(cluster.gateway(flusher=False))
    runs = await create_runs(gateway.url, 8)

    def new_flusher(n: int) -> MgProcess:
        return cluster.flusher(f"flusher-{n}", METRICGATE_FLUSH_CLAIM_IDLE_S=CLAIM_IDLE_S)

    flusher = await _started(new_flusher(1))
    driver = LoadDriver(
        PointPlan(runs, batch_points=20),
        lambda: [gateway.url],
        concurrency=8,
        rate_per_s=70,
    )
    await driver.start()
    kills: list[tuple[str, PendingSnapshot, float]] = []
    for n, want in enumerate(("uncommitted", "committed", "end-of-burst")):
        # Some fresh load for each flusher before it is killed.
        threshold = len(driver.acked) + 50
        await driver.run_until(lambda t=threshold: len(driver.acked) >= t, timeout_s=20)
        snap = await _freeze_holding(flusher, cluster, "any" if want == "end-of-burst" else want)
        if want == "end-of-burst":
            # The load ends while the flusher is frozen (what is in flight is acknowledged);
            # after the kill the successor sees no new entries at all.
            await driver.finish()
        flusher.kill()
        flusher = await _started(new_flusher(n + 2))
        took = -1.0
        if snap.entries:
            took = await _wait_no_pending_for(
                cluster.redis_url, set(snap.by_consumer), timeout_s=CLAIM_IDLE_S + 10
            )
        kills.append((want, snap, took))
    await _verify(cluster, driver)
    summary = [(w, s.entries, s.points, s.committed_points, round(t, 1)) for w, s, t in kills]
    # Every kill must have orphaned entries; whether the "committed" one really landed between
    # COMMIT and XACK is up to timing (the summary's 4th column says), so it is not asserted.
    assert all(s.entries for _, s, _ in kills), (
        f"a kill caught a flusher holding nothing: {summary}"
    )
    print(
        "kills (kind, pending entries, points, already committed, reclaim s):",
        summary,
        driver.summary(),
    )


# ---------------------------------------------------------------- (2) gateway SIGKILL


async def test_gateway_killed_under_load_client_retries_store_everything_once(
    cluster: Cluster,
) -> None:
    """SIGKILL the gateway (and its embedded flusher) twice under load and restart it on the same
    port; requests cut off mid-flight are retried (sent twice when they had been applied)."""
    gateway = await _started(cluster.gateway())
    runs = await create_runs(gateway.url, 8)
    # Full speed with many requests in flight, so each kill cuts some off mid-request.
    driver = LoadDriver(
        PointPlan(runs, batch_points=20),
        lambda: [gateway.url],
        concurrency=16,
        max_requests=600,
    )
    await driver.start()
    for n in range(2):
        await driver.run_until(lambda n=n: len(driver.acked) >= 150 * (n + 1), timeout_s=20)
        gateway.kill()
        await asyncio.sleep(0.3)
        await _started(gateway)
    await _verify(cluster, driver)
    failures = sum(v for k, v in driver.status_counts.items() if not k.isdigit())
    assert failures > 0, f"the kills never cut off a request: {driver.summary()}"
    applied_twice = await entries_added(cluster.redis_url) - driver.status_counts["200"]
    print(
        f"{applied_twice} requests were applied without an acknowledgement and sent again;",
        driver.summary(),
    )


# ---------------------------------------------------------------- (3) Redis restart


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_redis_restart_under_load_loses_no_acknowledged_point(
    cluster: Cluster, fault_redis: RedisServer, how: str
) -> None:
    """Redis (AOF, appendfsync always) stops under load for ~1.5 s - SIGTERM, or SIGKILL with no
    shutdown work at all - and comes back on the same port. Meanwhile the gateway must answer 503
    + Retry-After (never 500, never crash); afterwards everything acknowledged is in PostgreSQL."""
    gateway = await _started(cluster.gateway())
    runs = await create_runs(gateway.url, 8)
    driver = LoadDriver(
        PointPlan(runs, batch_points=20),
        lambda: [gateway.url],
        concurrency=8,
        rate_per_s=80,
        max_requests=300,
    )
    await driver.start()
    await driver.run_until(lambda: len(driver.acked) >= 80, timeout_s=20)
    before = driver.status_counts.copy()
    await asyncio.to_thread(fault_redis.stop if how == "sigterm" else fault_redis.kill)
    await asyncio.sleep(1.5)
    during = driver.status_counts - before
    await asyncio.to_thread(fault_redis.start)
    await _verify(cluster, driver)
    assert gateway.alive(), f"gateway died with Redis:\n{gateway.log()}"
    assert during.get("503", 0) > 0, f"no 503 while Redis was down: {dict(during)}"
    not_http = {k: v for k, v in driver.status_counts.items() if not k.isdigit()}
    assert not not_http, f"connection-level failures while only Redis was down: {not_http}"
    print(how, "outcomes during the outage:", dict(during), driver.summary())


async def test_redis_losing_its_data_does_not_stall_ingest(
    cluster: Cluster, fault_redis: RedisServer
) -> None:
    """Redis comes back EMPTY (a cache-only Redis restarted, a failover to a replica that lacks
    the consumer group, a FLUSHALL). Points flushed before are safe in PostgreSQL; writes
    acknowledged after the restart must reach PostgreSQL too: gateways and flushers have to
    recreate the streams' consumer group instead of failing on NOGROUP forever."""
    gateway = await _started(cluster.gateway())
    flusher = await _started(cluster.flusher())
    runs = await create_runs(gateway.url, 4)
    first = LoadDriver(
        PointPlan(runs, batch_points=20),
        lambda: [gateway.url],
        concurrency=4,
        max_requests=60,
    )
    await first.start()
    await first.finish()
    await wait_drained(cluster.db_url, cluster.redis_url, first.acked_points(), timeout_s=20)
    await asyncio.to_thread(fault_redis.kill)
    shutil.rmtree(fault_redis.directory / "appendonlydir", ignore_errors=True)
    for leftover in fault_redis.directory.glob("*.rdb"):
        leftover.unlink()
    await asyncio.to_thread(fault_redis.start)
    # The flusher may already have recreated empty streams with their group (that is the
    # recovery under test); what must be gone is every entry.
    assert not any((await stream_state(cluster.redis_url)).streams.values()), (
        "Redis still has its entries"
    )
    second = LoadDriver(
        PointPlan(runs, batch_points=20, key_prefix="after"),
        lambda: [gateway.url],
        concurrency=4,
        max_requests=60,
    )
    await second.start()
    await second.finish(30)
    expected = {**first.expected(), **second.expected()}
    drained = await wait_drained(
        cluster.db_url, cluster.redis_url, len(expected), timeout_s=15, settle_s=3
    )
    report = await check_exact(cluster.db_url, expected)
    assert_exact(
        report,
        second,
        cluster,
        extra=f"streams after the restart: {drained.state.describe()}",
    )
    assert gateway.alive() and flusher.alive(), cluster.logs()


# ---------------------------------------------------------------- (4) PostgreSQL outage


@pytest.fixture
async def durable_pg(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A private durable PostgreSQL cluster that the test may stop and restart on the same port."""
    wanted = Path(tempfile.mkdtemp(prefix="metricgate-fault-pg-"))
    try:
        instance = await asyncio.to_thread(devservices.start_postgres, wanted, durable=True)
        try:
            url = await create_migrated_database(instance.url(), "metricgate")
            yield instance, url
        finally:
            await asyncio.to_thread(devservices.stop_postgres, wanted)
    finally:
        devservices.remove_dir(wanted)


async def test_postgres_outage_backlog_then_drain(
    durable_pg, fault_redis: RedisServer, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL stops for ~8 s under load. The gateway answers 503 + Retry-After (never 500);
    flushers retry; when PostgreSQL returns the backlog drains and PostgreSQL holds exactly the
    acknowledged points."""
    instance, db_url = durable_pg
    from harness import FAST_INGEST_ENV

    cluster = Cluster(
        db_url,
        fault_redis.url,
        tmp_path,
        **{**FAST_INGEST_ENV, "METRICGATE_INGEST_MAX_BACKLOG": 150},
    )
    try:
        gateway = await _started(cluster.gateway())
        runs = await create_runs(gateway.url, 8)
        driver = LoadDriver(
            PointPlan(runs, batch_points=20),
            lambda: [gateway.url],
            concurrency=8,
            rate_per_s=60,
        )
        await driver.start()
        await driver.run_until(lambda: len(driver.acked) >= 60, timeout_s=20)
        acked_before = len(driver.acked)
        await asyncio.to_thread(devservices.stop_postgres, instance.cluster_dir)
        down_at = time.monotonic()
        before = driver.status_counts.copy()
        await asyncio.sleep(8)
        during = driver.status_counts - before
        up_at = time.monotonic()
        # Acknowledged while PostgreSQL was fully down (not requests that were already in flight).
        acked_during = sum(
            1 for r in driver.acked if r.acked_at is not None and down_at + 0.5 < r.acked_at < up_at
        )
        state = await stream_state(cluster.redis_url)
        backlog_during = sum(n for k, n in state.streams.items() if "dead" not in k)
        await asyncio.to_thread(
            devservices.start_postgres,
            instance.cluster_dir,
            durable=True,
            port=instance.port,
        )
        await asyncio.sleep(1.0)
        driver.stop_new()
        await _verify(cluster, driver, finish_timeout_s=45, drain_timeout_s=40)
        summary = (
            f"acked before the outage {acked_before}, acked during it {acked_during}, backlog at its end "
            f"{backlog_during} entries (limit 150), outcomes during it {dict(during)}; {driver.summary()}"
        )
        print(summary)
        assert gateway.alive(), f"gateway died with PostgreSQL:\n{gateway.log()}"
        assert during.get("503", 0) > 0, f"no 503 while PostgreSQL was down: {summary}"
        # The stream is the write-ahead buffer: metric writes keep being acknowledged while
        # PostgreSQL is away, until the backlog limit; only then 503. (Without the buffer this is
        # 0; the driver aims at ~60/s, but a loaded machine sends fewer, so the bar is low.)
        assert acked_during >= 20, f"writes were not buffered in Redis during the outage: {summary}"
        assert backlog_during <= 150 + 20, (
            f"backlog grew past its limit during the outage: {summary}"
        )
    finally:
        cluster.close()


# ---------------------------------------------------------------- backlog limit


async def test_backlog_limit_refuses_with_503_and_nothing_is_lost(
    fault_db_url: str, fault_redis: RedisServer, tmp_path: Path
) -> None:
    """With no flusher running the backlog fills up: past METRICGATE_INGEST_MAX_BACKLOG the
    gateway answers 503 + Retry-After instead of queueing. A flusher then drains it and the
    retried requests go through: exactly the acknowledged points end up in PostgreSQL."""
    from harness import FAST_INGEST_ENV

    cluster = Cluster(
        fault_db_url,
        fault_redis.url,
        tmp_path,
        **{**FAST_INGEST_ENV, "METRICGATE_INGEST_MAX_BACKLOG": 40},
    )
    try:
        gateway = await _started(cluster.gateway(flusher=False))
        runs = await create_runs(gateway.url, 4)
        driver = LoadDriver(
            PointPlan(runs, batch_points=10),
            lambda: [gateway.url],
            concurrency=4,
            rate_per_s=100,
            max_requests=120,
        )
        await driver.start()
        await driver.run_until(lambda: driver.status_counts.get("503", 0) >= 20, timeout_s=20)
        state = await stream_state(cluster.redis_url)
        backlog = sum(n for k, n in state.streams.items() if "dead" not in k)
        # The gateway polls the backlog every 0.1 s, so it may overshoot by one interval of intake
        # (~10 requests at 100/s); a larger overshoot means the limit does not hold.
        assert backlog <= 40 + 20, f"backlog of {backlog} entries with a limit of 40"
        assert 40 <= len(driver.acked) <= 40 + 20, (
            f"{len(driver.acked)} acknowledged with a backlog limit of 40"
        )
        await _started(cluster.flusher())
        await _verify(cluster, driver)
        print(driver.summary())
    finally:
        cluster.close()


# ---------------------------------------------------------------- (5) two gateways, two flushers


async def test_two_gateways_two_flushers_exact_and_read_your_writes(
    cluster: Cluster,
) -> None:
    """Two gateways and two flushers on one Redis and one PostgreSQL. Requests alternate between
    the gateways; reads through either gateway see every point acknowledged before the read."""
    gateways = [await _started(cluster.gateway(f"gateway-{i}", flusher=False)) for i in (1, 2)]
    flushers = [await _started(cluster.flusher(f"flusher-{i}")) for i in (1, 2)]
    urls = [g.url for g in gateways]
    runs = await create_runs(urls[0], 8)
    driver = LoadDriver(
        PointPlan(runs, batch_points=20, single_every=5),
        lambda: urls,
        concurrency=10,
        rate_per_s=150,
        max_requests=300,
    )
    await driver.start()
    await driver.run_until(lambda: len(driver.acked) >= 150, timeout_s=30)
    # Read-your-writes under load: every m0 point acknowledged before the read must be visible.
    for i, run_id in enumerate(runs):
        acked_before = {r.points[0][1] for r in driver.acked if r.run_id == run_id}
        status, history = await read_history(urls[i % 2], run_id, "m0")
        assert status == 200, f"get-history answered {status}"
        seen = {int(m["step"]) for m in history}
        assert acked_before <= seen, (
            f"run {run_id}: acknowledged steps not visible {sorted(acked_before - seen)[:10]}"
        )
    await _verify(cluster, driver)
    state = await stream_state(cluster.redis_url, with_consumers=True)
    active = {c["name"] for rows in state.consumers.values() for c in rows}
    assert len(active) >= 2, f"only one flusher ever consumed: {active}"
    assert all(f.alive() for f in flushers) and all(g.alive() for g in gateways), cluster.logs()
    print(driver.summary())


# ---------------------------------------------------------------- (6) the same request many times


async def test_same_request_twice_and_concurrently_is_stored_once(
    cluster: Cluster,
) -> None:
    """Retries are the client's only tool after a timeout, so a request sent again - right away,
    N times at once, or after its first copy was already flushed - must leave each point stored
    once. A request that overlaps another request's points (or repeats a point inside itself)
    is a different request: its copies are stored with it and folded by every read, as MLflow
    folds identical points, and the new half must not be lost with the old."""
    gateway = await _started(cluster.gateway())
    runs = await create_runs(gateway.url, 3)
    plan = PointPlan(runs, batch_points=50, single_every=0)
    expected: dict[tuple[str, str, int], tuple[int, float]] = {}

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:

        async def send(path: str, body: bytes) -> int:
            async with session.post(
                gateway.url + path,
                data=body,
                headers={"Content-Type": "application/json"},
            ) as resp:
                await resp.read()
                return resp.status

        # (a) one log-batch twice in a row
        a = plan.next()
        assert [await send(a.path, a.body()) for _ in range(2)] == [200, 200]
        expected.update(a.expected())
        # (b) one log-batch 20 times concurrently
        b = plan.next()
        statuses = await asyncio.gather(*(send(b.path, b.body()) for _ in range(20)))
        assert statuses == [200] * 20, statuses
        expected.update(b.expected())
        # (c) log-metric: one point twice, and 10 times concurrently
        c_run = runs[0]
        c_body = orjson.dumps(
            {
                "run_id": c_run,
                "key": "single",
                "value": 1.5,
                "timestamp": 1_700_000_000_001,
                "step": 7,
            }
        )
        assert await send(API + "/runs/log-metric", c_body) == 200
        assert (
            await asyncio.gather(*(send(API + "/runs/log-metric", c_body) for _ in range(10)))
            == [200] * 10
        )
        expected[(c_run, "single", 7)] = (1_700_000_000_001, 1.5)
        # (d) many requests, each sent 3 times concurrently (copies land in the same flush batch)
        d = [plan.next() for _ in range(30)]
        statuses = await asyncio.gather(*(send(r.path, r.body()) for r in d for _ in range(3)))
        assert set(statuses) == {200}, statuses
        for r in d:
            expected.update(r.expected())

        drained = await wait_drained(cluster.db_url, cluster.redis_url, len(expected), timeout_s=20)
        assert drained.count == len(expected), f"{drained.count} rows, expected {len(expected)}"
        # (e) replay after the first copy was flushed (COPY meets the unique index)
        assert await send(a.path, a.body()) == 200
        assert await asyncio.gather(*(send(r.path, r.body()) for r in d[:10])) == [200] * 10
        # (f) a request half already stored, half new: the new half must not be lost with the old
        fresh = [(f"x{j}", j, 1_700_000_100_000 + j, j + 0.5) for j in range(25)]
        mixed_points = a.points[:25] + fresh
        mixed = orjson.dumps(
            {
                "run_id": a.run_id,
                "metrics": [
                    {"key": k, "value": v, "timestamp": ts, "step": s}
                    for k, s, ts, v in mixed_points
                ],
            }
        )
        assert await send(API + "/runs/log-batch", mixed) == 200
        expected.update({(a.run_id, k, s): (ts, v) for k, s, ts, v in fresh})
        carried_twice = {(a.run_id, k, s) for k, s, _, _ in a.points[:25]}
        # (g) the same point twice inside one request
        dup_body = orjson.dumps(
            {
                "run_id": runs[1],
                "metrics": [
                    {
                        "key": "dup",
                        "value": 2.5,
                        "timestamp": 1_700_000_000_002,
                        "step": 3,
                    }
                ]
                * 2,
            }
        )
        dup_status = await send(API + "/runs/log-batch", dup_body)
        assert dup_status in (200, 400), dup_status
        if dup_status == 200:
            expected[(runs[1], "dup", 3)] = (1_700_000_000_002, 2.5)
            carried_twice.add((runs[1], "dup", 3))

    drained = await wait_drained(
        cluster.db_url, cluster.redis_url, len(expected) + len(carried_twice), timeout_s=20
    )
    report = await check_exact(cluster.db_url, expected, carried_twice)
    assert_exact(report, None, cluster, extra=f"drain history {drained.history[-5:]}")
    # What a client reads: each of those points once.
    async with aiohttp.ClientSession() as session:
        for run_id, key in {(run_id, key) for run_id, key, _ in carried_twice}:
            async with session.get(
                gateway.url + API + "/metrics/get-history",
                params={"run_id": run_id, "metric_key": key},
            ) as resp:
                history = (await resp.json())["metrics"]
            assert (
                len(history) == len({(m["step"], m["timestamp"], m["value"]) for m in history}) >= 1
            ), history
    assert not await dead_letters(cluster.redis_url), cluster.problems()
    problems = await check_latest_metrics(cluster.db_url, expected)
    assert not problems, problems[:10]
