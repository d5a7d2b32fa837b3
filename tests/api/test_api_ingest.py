"""The metric ingest path over HTTP (the in-process app): read-your-writes, backpressure, Redis
outages, INGEST_MODE=direct and the Prometheus counters of GET /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from metricgate.api.app import create_app
from metricgate.config import FlushSettings, Settings
from metricgate.domain.errors import StoreUnavailable
from metricgate.ingest.flusher import Flusher
from metricgate.service import open_database, open_service, open_streams
from metricgate.stores.postgres.metrics import PgMetricWriter
from scripts import devservices

API = "/api/2.0/mlflow"


def now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------- helpers


@dataclasses.dataclass
class Reply:
    status: int
    headers: Any
    raw: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.raw)

    def ok(self) -> Any:
        assert self.status == 200, (self.status, self.raw[:500])
        return self.json

    def unavailable(self) -> str:
        """503 in MLflow's error shape with a usable Retry-After; returns the message."""
        assert self.status == 503, (self.status, self.raw[:500])
        assert int(self.headers["Retry-After"]) >= 1
        assert self.headers["Content-Type"].startswith("application/json")
        body = self.json
        assert body["error_code"] == "TEMPORARILY_UNAVAILABLE", body
        assert body["message"]
        return body["message"]


class Mlflow:
    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    async def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Reply:
        kwargs: dict[str, Any] = {"params": params}
        if body is not None:
            kwargs["data"] = orjson.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        async with self.client.request(method, API + path, **kwargs) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def new_run(self, experiment_id: str | None = None) -> str:
        if experiment_id is None:
            experiment_id = (
                await self.call(
                    "POST", "/experiments/create", {"name": f"exp-{time.monotonic_ns()}"}
                )
            ).ok()["experiment_id"]
        body = {"experiment_id": experiment_id, "start_time": now_ms(), "user_id": "tester"}
        return (await self.call("POST", "/runs/create", body)).ok()["run"]["info"]["run_id"]

    async def log_batch(self, run_id: str, metrics: list[dict[str, Any]]) -> Reply:
        return await self.call("POST", "/runs/log-batch", {"run_id": run_id, "metrics": metrics})

    async def get_run(self, run_id: str) -> Reply:
        return await self.call("GET", "/runs/get", params={"run_id": run_id})

    async def latest(self, run_id: str) -> dict[str, dict[str, Any]]:
        run = (await self.get_run(run_id)).ok()["run"]
        return {m["key"]: m for m in run["data"].get("metrics", [])}

    async def history_reply(self, run_id: str, key: str) -> Reply:
        return await self.call(
            "GET", "/metrics/get-history", params={"run_id": run_id, "metric_key": key}
        )

    async def history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token = None
        while True:
            params = {"run_id": run_id, "metric_key": key, "max_results": 25000}
            if token:
                params["page_token"] = token
            body = (await self.call("GET", "/metrics/get-history", params=params)).ok()
            out.extend(body.get("metrics", []))
            token = body.get("next_page_token")
            if not token:
                return out

    async def search(
        self, experiment_id: str, filter_string: str = "", order_by: list[str] | None = None
    ) -> Reply:
        body = {
            "experiment_ids": [experiment_id],
            "filter": filter_string,
            "order_by": order_by or [],
        }
        return await self.call("POST", "/runs/search", body)


def tuned(
    settings: Settings,
    *,
    ingest: dict[str, Any] | None = None,
    flush: dict[str, Any] | None = None,
    **overrides: Any,
) -> Settings:
    result = settings.with_overrides(**overrides) if overrides else settings
    if ingest:
        result = dataclasses.replace(result, ingest=dataclasses.replace(result.ingest, **ingest))
    if flush:
        result = dataclasses.replace(result, flush=dataclasses.replace(result.flush, **flush))
    result.validate()
    return result


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Mlflow]:
    async with TestClient(TestServer(create_app(settings))) as client:
        yield Mlflow(client)


@contextlib.asynccontextmanager
async def external_flusher(settings: Settings) -> AsyncIterator[Flusher]:
    """A `metricgate flush` worker in this process, over the same Redis and PostgreSQL."""
    async with open_database(settings) as db, open_streams(settings) as streams:
        flusher = Flusher(
            streams, PgMetricWriter(db), FlushSettings(max_delay_ms=20, trim_interval_s=0.05)
        )
        task = asyncio.create_task(flusher.run())
        try:
            yield flusher
        finally:
            flusher.stop()
            await asyncio.wait_for(task, 10)


def points(keys: int, steps: range, base: float = 0.0) -> list[dict[str, Any]]:
    return [
        {
            "key": f"k{k}",
            "value": base + k + s / 1000,
            "timestamp": 1_700_000_000_000 + s,
            "step": s,
        }
        for s in steps
        for k in range(keys)
    ]


async def scrape(
    client: TestClient[Any, Any],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with client.get("/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def mlflow(client: TestClient[Any, Any]) -> Mlflow:
    return Mlflow(client)


# ---------------------------------------------------------------- read-your-writes


async def test_read_your_writes_get_run_and_history_many_times_concurrently(mlflow: Mlflow) -> None:
    runs = [await mlflow.new_run() for _ in range(8)]

    async def writer_reader(run_id: str) -> None:
        for i in range(12):
            steps = range(i * 4, i * 4 + 4)
            (await mlflow.log_batch(run_id, points(3, steps))).ok()
            latest = await mlflow.latest(run_id)  # immediately after the 200
            assert sorted(latest) == ["k0", "k1", "k2"]
            for k in range(3):
                assert latest[f"k{k}"]["step"] == steps[-1], (run_id, i, latest)
                assert latest[f"k{k}"]["value"] == k + steps[-1] / 1000
            history = await mlflow.history(run_id, f"k{i % 3}")
            assert [m["step"] for m in history] == list(range(i * 4 + 4)), (run_id, i)

    await asyncio.gather(*(writer_reader(r) for r in runs))


async def test_read_your_writes_single_log_metric_and_special_values(mlflow: Mlflow) -> None:
    run_id = await mlflow.new_run()
    for i, value in enumerate([1.5, "NaN", "Infinity", "-Infinity", -0.0, 1e308]):
        body = {"run_id": run_id, "key": f"m{i}", "value": value, "timestamp": 1000 + i, "step": i}
        (await mlflow.call("POST", "/runs/log-metric", body)).ok()
        history = await mlflow.history(run_id, f"m{i}")
        assert len(history) == 1 and history[0]["step"] == i
        assert history[0]["value"] == value
    latest = await mlflow.latest(run_id)
    assert latest["m1"]["value"] == "NaN" and latest["m2"]["value"] == "Infinity"
    assert latest["m3"]["value"] == "-Infinity"


async def test_search_sees_just_logged_metrics_in_filter_and_order(mlflow: Mlflow) -> None:
    experiment_id = (await mlflow.call("POST", "/experiments/create", {"name": "search-ryw"})).ok()[
        "experiment_id"
    ]
    runs = [await mlflow.new_run(experiment_id) for _ in range(5)]
    for round_ in range(4):
        values = {run: ((i + round_) % 5) / 4 for i, run in enumerate(runs)}  # 0, .25, .5, .75, 1
        await asyncio.gather(
            *(
                mlflow.log_batch(
                    run, [{"key": "acc", "value": v, "timestamp": now_ms(), "step": round_}]
                )
                for run, v in values.items()
            )
        )
        reply = (await mlflow.search(experiment_id, "metrics.acc > 0.3", ["metrics.acc DESC"])).ok()
        got = [r["info"]["run_id"] for r in reply.get("runs", [])]
        expected = [run for run, v in sorted(values.items(), key=lambda kv: -kv[1]) if v > 0.3]
        assert got == expected, round_


async def test_acknowledged_points_with_a_trailing_newline_key_are_not_lost(mlflow: Mlflow) -> None:
    r"""MLflow's key pattern ``^[/\w.\- :]*$`` accepts "loss\n" ($ matches before a final newline).
    Either the request is refused (4xx) or, once it is acknowledged, all its points are stored --
    including the points with ordinary keys that travel in the same stream entry."""
    run_id = await mlflow.new_run()
    batch = [
        {"key": "loss\n", "value": 1.0, "timestamp": 1000, "step": 0},
        {"key": "acc", "value": 2.0, "timestamp": 1000, "step": 0},
    ]
    reply = await mlflow.log_batch(run_id, batch)
    if 400 <= reply.status < 500:
        assert reply.json["error_code"] == "INVALID_PARAMETER_VALUE"
        return
    reply.ok()
    latest = await mlflow.latest(run_id)
    assert [m["value"] for m in await mlflow.history(run_id, "acc")] == [2.0], (
        "log-batch answered 200 but its points never reached PostgreSQL (entry dead-lettered)"
    )
    assert set(latest) == {"loss\n", "acc"}


async def test_acknowledged_points_with_an_oversized_model_id_are_not_lost(mlflow: Mlflow) -> None:
    """Nothing bounds a metric's model_id before the 200. A random 8000-character model_id cannot
    go into logged_model_metrics' unique index (PostgreSQL's btree row limit is ~2.7 kB), so the
    flusher dead-letters the entry -- the request's other points with it -- after the client was
    told they are stored. Refuse it up front (4xx) or store everything."""
    run_id = await mlflow.new_run()
    model_id = "m-" + os.urandom(4000).hex()
    batch = [
        {"key": "acc", "value": 0.5, "timestamp": 1000, "step": 0, "model_id": model_id},
        {"key": "loss", "value": 2.0, "timestamp": 1000, "step": 0},
    ]
    reply = await mlflow.log_batch(run_id, batch)
    if 400 <= reply.status < 500:
        assert reply.json["error_code"] == "INVALID_PARAMETER_VALUE"
        return
    reply.ok()
    latest = await mlflow.latest(run_id)
    assert set(latest) == {"acc", "loss"}, (
        f"log-batch answered 200 but stored only {sorted(latest)} (entry dead-lettered)"
    )


# ---------------------------------------------------------------- backpressure and no flusher


async def test_backlog_limit_answers_503_and_loses_nothing_acknowledged(settings: Settings) -> None:
    limited = tuned(
        settings, ingest={"max_backlog_entries": 5, "embedded_flusher": False, "read_wait_s": 0.3}
    )
    async with serve(limited) as mlflow:
        run_id = await mlflow.new_run()
        acked: list[dict[str, Any]] = []
        refused: list[Reply] = []
        step = 0
        deadline = time.monotonic() + 5
        while len(refused) < 3 and time.monotonic() < deadline:
            batch = points(2, range(step, step + 3))
            step += 3
            reply = await mlflow.log_batch(run_id, batch)
            if reply.status == 200:
                acked.extend(batch)
            else:
                refused.append(reply)
            await asyncio.sleep(0.02)
        assert len(refused) == 3, "the backlog limit never refused a write"
        for reply in refused:
            assert "backlog" in reply.unavailable()
        # Bounded: at most one poll interval (~100 ms) of intake past the limit.
        assert 5 <= len(acked) // 6 <= 5 + 8
        # Without a flusher, reads of the run answer 503 after read_wait_s instead of stale data.
        started = time.monotonic()
        (await mlflow.get_run(run_id)).unavailable()
        assert 0.25 <= time.monotonic() - started < 3
        (await mlflow.history_reply(run_id, "k0")).unavailable()
        # A run with nothing in flight is readable at once.
        other = await mlflow.new_run()
        (await mlflow.get_run(other)).ok()

        async with external_flusher(limited):
            # Everything acknowledged becomes readable, exactly once; nothing refused slipped in.
            deadline = time.monotonic() + 10
            while (reply := await mlflow.get_run(run_id)).status != 200:
                assert time.monotonic() < deadline, reply.raw
            for k in range(2):
                history = await mlflow.history(run_id, f"k{k}")
                expected = sorted(p["step"] for p in acked if p["key"] == f"k{k}")
                assert [m["step"] for m in history] == expected
            # Once the backlog is flushed and trimmed, writes are accepted again.
            deadline = time.monotonic() + 5
            while (
                reply := await mlflow.log_batch(run_id, points(2, range(10_000, 10_001)))
            ).status != 200:
                reply.unavailable()
                assert time.monotonic() < deadline, "writes still refused after the backlog drained"
                await asyncio.sleep(0.05)
            assert (await mlflow.latest(run_id))["k0"]["step"] == 10_000


async def test_reads_without_a_flusher_answer_503_after_read_wait(settings: Settings) -> None:
    no_flusher = tuned(settings, ingest={"embedded_flusher": False, "read_wait_s": 0.4})
    async with serve(no_flusher) as mlflow:
        experiment_id = (await mlflow.call("POST", "/experiments/create", {"name": "nf"})).ok()[
            "experiment_id"
        ]
        run_id = await mlflow.new_run(experiment_id)
        (await mlflow.log_batch(run_id, points(1, range(3)))).ok()
        for call in (
            mlflow.get_run(run_id),
            mlflow.history_reply(run_id, "k0"),
            mlflow.search(experiment_id),
        ):
            started = time.monotonic()
            message = (await call).unavailable()
            elapsed = time.monotonic() - started
            assert 0.35 <= elapsed < 3, elapsed
            assert "flusher" in message or "not yet" in message


async def test_inflight_limit_answers_503_and_acknowledged_points_are_stored(
    settings: Settings,
) -> None:
    limited = tuned(settings, ingest={"max_inflight_requests": 1})
    async with serve(limited) as mlflow:
        run_id = await mlflow.new_run()
        replies = await asyncio.gather(
            *(mlflow.log_batch(run_id, points(1, range(i, i + 1))) for i in range(100))
        )
        acked = [i for i, reply in enumerate(replies) if reply.status == 200]
        refused = [reply for reply in replies if reply.status != 200]
        assert refused, "100 simultaneous writes never exceeded an in-flight limit of 1"
        assert acked, "no write got through"
        for reply in refused:
            assert "concurrent" in reply.unavailable()
        assert [m["step"] for m in await mlflow.history(run_id, "k0")] == acked


async def test_bulk_interval_history_sees_just_logged_points(mlflow: Mlflow) -> None:
    runs = [await mlflow.new_run() for _ in range(3)]
    for round_ in range(3):
        await asyncio.gather(
            *(
                mlflow.log_batch(run, points(1, range(round_ * 10, round_ * 10 + 10)))
                for run in runs
            )
        )
        body = (
            await mlflow.call(
                "GET",
                "/metrics/get-history-bulk-interval",
                params=[("run_ids", r) for r in runs]
                + [("metric_key", "k0"), ("max_results", "100")],
            )
        ).ok()
        for run in runs:
            steps = [m["step"] for m in body["metrics"] if m["run_id"] == run]
            assert steps == list(range(round_ * 10 + 10)), (round_, run)


async def test_abandoned_run_janitor_in_the_app(settings: Settings) -> None:
    janitor_on = tuned(settings, flush={"abandoned_after_s": 1.0, "abandoned_fail": True})
    async with serve(janitor_on) as mlflow:
        experiment_id = (await mlflow.call("POST", "/experiments/create", {"name": "jan"})).ok()[
            "experiment_id"
        ]
        old_start = now_ms() - 60_000
        create = {"experiment_id": experiment_id, "start_time": old_start, "user_id": "tester"}
        abandoned = (await mlflow.call("POST", "/runs/create", create)).ok()["run"]["info"][
            "run_id"
        ]
        busy = (await mlflow.call("POST", "/runs/create", create)).ok()["run"]["info"]["run_id"]
        finished = (await mlflow.call("POST", "/runs/create", create)).ok()["run"]["info"]["run_id"]
        end = {"run_id": finished, "status": "FINISHED", "end_time": old_start + 5}
        (await mlflow.call("POST", "/runs/update", end)).ok()
        deadline = time.monotonic() + 6
        step = 0
        while True:
            # The busy run logs every 0.2 s (timestamps from its own, old, clock: only the
            # server-side write time counts as activity).
            (
                await mlflow.log_batch(
                    busy, [{"key": "loss", "value": 1.0, "timestamp": old_start, "step": step}]
                )
            ).ok()
            step += 1
            info = (await mlflow.get_run(abandoned)).ok()["run"]
            if info["info"]["status"] == "FAILED":
                break
            assert time.monotonic() < deadline, "the idle run was never marked abandoned"
            await asyncio.sleep(0.2)
        tags = {t["key"]: t["value"] for t in info["data"]["tags"]}
        assert tags.get("metricgate.abandoned") == "true"
        assert int(info["info"]["end_time"]) == old_start
        for _ in range(8):  # keep the busy run busy over more than one janitor interval
            (
                await mlflow.log_batch(
                    busy, [{"key": "loss", "value": 1.0, "timestamp": old_start, "step": step}]
                )
            ).ok()
            step += 1
            await asyncio.sleep(0.2)
        busy_run = (await mlflow.get_run(busy)).ok()["run"]
        assert busy_run["info"]["status"] == "RUNNING"
        assert "metricgate.abandoned" not in {t["key"] for t in busy_run["data"]["tags"]}
        finished_run = (await mlflow.get_run(finished)).ok()["run"]
        assert (finished_run["info"]["status"], int(finished_run["info"]["end_time"])) == (
            "FINISHED",
            old_start + 5,
        )
        assert "metricgate.abandoned" not in {t["key"] for t in finished_run["data"]["tags"]}


# ---------------------------------------------------------------- Redis outages


async def test_startup_fails_clearly_when_redis_is_unreachable(settings: Settings) -> None:
    port = devservices.find_free_port()
    broken = tuned(settings, redis_url=f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="Redis"):
        async with open_service(broken):
            pass
    server = TestServer(create_app(broken))
    try:
        with pytest.raises(Exception) as info:
            await server.start_server()
    finally:
        await server.close()
    assert "Redis" in str(info.value)
    assert time.monotonic() - started < 15


@pytest.fixture
def private_redis() -> AsyncIterator[devservices.RedisInstance]:
    with devservices.temporary_redis() as instance:
        yield instance


async def test_redis_dying_after_startup_gives_503_never_500_then_recovers(
    settings: Settings, private_redis: devservices.RedisInstance
) -> None:
    app_settings = tuned(
        settings,
        redis_url=private_redis.url,
        ingest={"read_wait_s": 0.5},
        flush={"drain_timeout_s": 2.0, "max_delay_ms": 20},
    )
    async with serve(app_settings) as mlflow:
        run_id = await mlflow.new_run()
        (await mlflow.log_batch(run_id, points(1, range(2)))).ok()
        assert (await mlflow.latest(run_id))["k0"]["step"] == 1  # flushed before the outage
        devservices.stop_redis(private_redis.directory)
        statuses = []
        for i in range(3):
            reply = await mlflow.log_batch(run_id, points(1, range(100 + i, 101 + i)))
            statuses.append(reply.status)
            assert "Redis" in reply.unavailable()
        body = {"run_id": run_id, "key": "k0", "value": 1.0, "timestamp": now_ms(), "step": 7}
        (await mlflow.call("POST", "/runs/log-metric", body)).unavailable()
        (await mlflow.get_run(run_id)).unavailable()
        (await mlflow.history_reply(run_id, "k0")).unavailable()
        # Metadata that does not touch the metric buffer keeps working.
        (
            await mlflow.call("POST", "/runs/set-tag", {"run_id": run_id, "key": "t", "value": "v"})
        ).ok()
        async with mlflow.client.get("/health") as resp:
            assert resp.status == 200
        # Redis comes back empty (no persistence): the pipeline recovers by itself.
        devservices.start_redis(private_redis.directory, durable=False, port=private_redis.port)
        deadline = time.monotonic() + 10
        while (reply := await mlflow.log_batch(run_id, points(1, range(200, 201)))).status != 200:
            reply.unavailable()
            assert time.monotonic() < deadline, "writes never recovered after Redis came back"
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 10
        while (reply := await mlflow.get_run(run_id)).status != 200:
            reply.unavailable()
            assert time.monotonic() < deadline, "reads never recovered after Redis came back"
        assert {m["step"] for m in await mlflow.history(run_id, "k0")} == {0, 1, 200}


async def test_direct_mode_works_end_to_end_without_redis(settings: Settings) -> None:
    port = devservices.find_free_port()  # nothing listens there
    direct = tuned(settings, ingest_mode="direct", redis_url=f"redis://127.0.0.1:{port}/0")
    async with serve(direct) as mlflow:
        experiment_id = (await mlflow.call("POST", "/experiments/create", {"name": "direct"})).ok()[
            "experiment_id"
        ]
        run_id = await mlflow.new_run(experiment_id)
        batch = [
            *points(2, range(5)),
            {"key": "special", "value": "NaN", "timestamp": 5, "step": 0},
            {"key": "special", "value": "-Infinity", "timestamp": 5, "step": 1},
        ]
        (await mlflow.log_batch(run_id, batch)).ok()
        (await mlflow.log_batch(run_id, batch)).ok()  # a retry stores nothing twice
        body = {"run_id": run_id, "key": "k0", "value": 9.0, "timestamp": 1, "step": 99}
        (await mlflow.call("POST", "/runs/log-metric", body)).ok()
        latest = await mlflow.latest(run_id)
        assert latest["k0"]["step"] == 99 and latest["k0"]["value"] == 9.0
        assert latest["k1"]["step"] == 4
        assert latest["special"]["value"] == "-Infinity"
        assert [m["step"] for m in await mlflow.history(run_id, "k0")] == [0, 1, 2, 3, 4, 99]
        assert [m["value"] for m in await mlflow.history(run_id, "special")] == ["NaN", "-Infinity"]
        found = (await mlflow.search(experiment_id, "metrics.k1 > 1")).ok()
        assert [r["info"]["run_id"] for r in found["runs"]] == [run_id]


async def test_direct_mode_refuses_an_oversized_model_id_with_4xx_not_500(
    settings: Settings,
) -> None:
    direct = tuned(settings, ingest_mode="direct")
    async with serve(direct) as mlflow:
        run_id = await mlflow.new_run()
        batch = [
            {
                "key": "acc",
                "value": 0.5,
                "timestamp": 1000,
                "step": 0,
                "model_id": "m-" + os.urandom(4000).hex(),
            }
        ]
        reply = await mlflow.log_batch(run_id, batch)
        assert 400 <= reply.status < 500, (reply.status, reply.raw[:300])
        assert reply.json["error_code"] == "INVALID_PARAMETER_VALUE"


async def test_direct_mode_counts_committed_points_as_flushed(settings: Settings) -> None:
    """metricgate_points_flushed is "points committed to PostgreSQL". In direct mode every
    acknowledged point is committed in the request; the counter must say so, or dashboards that
    compare accepted with flushed show a backlog that never drains."""
    direct = tuned(settings, ingest_mode="direct")
    async with serve(direct) as mlflow:
        run_id = await mlflow.new_run()
        before = await scrape(mlflow.client)
        (await mlflow.log_batch(run_id, points(3, range(10)))).ok()
        after = await scrape(mlflow.client)
    accepted = sample(after, "metricgate_points_accepted_total") - sample(
        before, "metricgate_points_accepted_total"
    )
    flushed = sample(after, "metricgate_points_flushed_total") - sample(
        before, "metricgate_points_flushed_total"
    )
    assert (accepted, flushed) == (30, 30)


async def test_many_concurrent_writes_are_all_accepted(client: TestClient[Any, Any]) -> None:
    """Far below the in-flight limit (1024): hundreds of simultaneous log-batch requests must all
    be acknowledged, not refused because the gateway ran out of Redis connections."""
    mlflow = Mlflow(client)
    runs = [await mlflow.new_run() for _ in range(10)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> int:
            body = {"run_id": runs[i % 10], "metrics": points(2, range(i, i + 1))}
            async with session.post(
                client.make_url(API + "/runs/log-batch"),
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json"},
            ) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one(i) for i in range(300)))
    assert statuses.count(200) == 300, {s: statuses.count(s) for s in set(statuses)}
    for r, run_id in enumerate(runs):
        history = await mlflow.history(run_id, "k1")
        assert [m["step"] for m in history] == list(range(r, 300, 10))


# ---------------------------------------------------------------- /metrics


async def test_prometheus_metrics_count_ingest_and_requests(client: TestClient[Any, Any]) -> None:
    mlflow = Mlflow(client)
    run_id = await mlflow.new_run()
    before = await scrape(client)
    for name in (
        "metricgate_points_accepted_total",
        "metricgate_points_flushed_total",
        "metricgate_ingest_backlog_entries",
        "metricgate_flush_seconds_count",
        "metricgate_flush_batch_points_count",
        "metricgate_ack_to_visible_seconds_count",
    ):
        assert any(key[0] == name for key in before), name
    for i in range(4):
        (
            await mlflow.log_batch(run_id, points(5, range(i * 10, i * 10 + 10)))
        ).ok()  # 50 points each
    (await mlflow.get_run(run_id)).ok()  # waits until flushed
    assert (await mlflow.get_run("f" * 32)).status == 404
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("metricgate_points_accepted_total") == 200
    assert delta("metricgate_points_flushed_total") == 200
    assert delta("metricgate_flush_batch_points_sum") == 200
    assert delta("metricgate_flush_seconds_count") >= 1
    assert delta("metricgate_flush_seconds_count") == delta("metricgate_flush_batch_points_count")
    assert delta("metricgate_ack_to_visible_seconds_count") == 4  # one per request
    assert (
        delta(
            "metricgate_http_requests_total", route="/api/2.0/mlflow/runs/log-batch", status="200"
        )
        == 4
    )
    assert (
        delta("metricgate_http_requests_total", route="/api/2.0/mlflow/runs/get", status="200") == 1
    )
    assert (
        delta("metricgate_http_requests_total", route="/api/2.0/mlflow/runs/get", status="404") == 1
    )
    # Buckets are cumulative and end with +Inf = count.
    count = sample(after, "metricgate_flush_seconds_count")
    assert sample(after, "metricgate_flush_seconds_bucket", le="+Inf") == count
    assert 0 <= sample(after, "metricgate_ingest_backlog_entries") < 1000


async def test_prometheus_backlog_gauge_and_rejections_follow_the_stream(
    settings: Settings,
) -> None:
    limited = tuned(settings, ingest={"max_backlog_entries": 3, "embedded_flusher": False})
    async with serve(limited) as mlflow:
        run_id = await mlflow.new_run()
        before = await scrape(mlflow.client)
        for i in range(3):
            (await mlflow.log_batch(run_id, points(1, range(i, i + 1)))).ok()
        await asyncio.sleep(0.3)  # a few backlog polls
        mid = await scrape(mlflow.client)
        assert sample(mid, "metricgate_ingest_backlog_entries") == 3
        (await mlflow.log_batch(run_id, points(1, range(50, 51)))).unavailable()
        after = await scrape(mlflow.client)
        assert (
            sample(after, "metricgate_backpressure_rejections_total", reason="backlog")
            - sample(before, "metricgate_backpressure_rejections_total", reason="backlog")
        ) == 1
        assert (
            sample(
                after,
                "metricgate_http_requests_total",
                route="/api/2.0/mlflow/runs/log-batch",
                status="503",
            )
            - sample(
                before,
                "metricgate_http_requests_total",
                route="/api/2.0/mlflow/runs/log-batch",
                status="503",
            )
        ) == 1
        async with external_flusher(limited):
            deadline = time.monotonic() + 10
            while sample(await scrape(mlflow.client), "metricgate_ingest_backlog_entries") != 0:
                assert time.monotonic() < deadline, "the backlog gauge never went back to 0"
                await asyncio.sleep(0.05)
