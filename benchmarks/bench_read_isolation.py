#!/usr/bin/env python3
"""Expensive searches against the write path (issue 11 §2): how much do 32 clients looping a
heavy ``runs/search`` slow down ``runs/log-batch`` and metric flushing? metricgate vs stock
``mlflow server`` (FastTrackML on request), the same data in each, one server at a time.

What it does (reusing compare.py's machinery: the durable private PostgreSQL and Redis, the
contenders' cached venvs, starting and stopping their servers):
1. For each contender: starts its server on its own database and loads, through MLflow's REST API
   (``runs/create`` + ``runs/log-batch``, 8 requests in flight; not timed), a sweep of ``runs``
   runs (2,000; 400 with ``--quick``), each with 10 params, 5 tags and 10 metrics of 3 steps, then
   runs ``VACUUM (ANALYZE)`` on that database.
2. Times the expensive search alone (after one untimed warm-up; median): the sweep's experiment,
   ``order_by metrics.m0 DESC``, 100 runs a page, for metricgate a filter at its limits (``--filter``
   25x4: 25 distinct keys x 4 comparisons = 100, metrics, params and tags; ~70% of the runs
   match), the keys in a random order per search (another SQL text each time, so no cached plan
   helps; ``--same-filter`` keeps one order). Stock MLflow gets ``--mlflow-filter`` 10x1 (the
   same answer): it joins one subquery per comparison and its PostgreSQL backend needs ~1 GB to
   plan 25 of them, 20 GB for 100, so 32 at once would exhaust the machine. Safety nets for a
   shared machine: a statement_timeout on each contender's database (``--pg-guard-s``) and an
   address-space limit per PostgreSQL backend (``--pg-backend-gib``).
3. Phase A (baseline), ``--phase-s`` seconds: a writer logs to 4 runs of their own experiment, one
   ``runs/log-batch`` in flight per run (4 in all, closed loop, nothing retried), 100 points a
   request (10 keys x 10 steps), recording every request's latency and status. Every
   ``--sample-every-s`` a sampler takes the freshest acknowledged request and measures
   - ``flush lag`` (metricgate): time from that answer until its last step is in PostgreSQL
     (``latest_metrics``, polled on the benchmark's own connection, outside the server's pools);
   - ``read-after-ack``: the latency of a ``runs/get`` of that run sent right after the answer
     (metricgate answers it only once the run's acknowledged points are flushed; stock MLflow
     commits in the request) and whether it shows the step.
4. Phase B (pressure): ``--search-clients`` clients (32) loop the expensive search (a client that
   gets a non-200 waits 0.1 s before its next search; nothing honours Retry-After) from ~1 s
   before the writer starts until it stops; the same writer and sampler run meanwhile.
5. Prints a table per contender (log-batch median/p99 A vs B and B/A, failures by status, searches
   per second and their statuses, flush lag) and last one JSON line.

    .venv/bin/python benchmarks/bench_read_isolation.py --quick --metricgate-ref HEAD   # ~3 minutes
    .venv/bin/python benchmarks/bench_read_isolation.py --metricgate-ref HEAD           # ~6.5 minutes
    .venv/bin/python benchmarks/bench_read_isolation.py --contenders metricgate \
        --metricgate-env METRICGATE_DB_READ_POOL_MAX=2

Everything binds 127.0.0.1 only, and every process it started is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import platform
import pwd
import random
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare
from bench_reads import API, BASE_TS, JSON, Client, gather_limited, vacuum_analyze
from compare import REPO, BenchError, Context, Server, say
from metricgate.bench.stats import percentile, ratio

CONTENDERS = ("metricgate", "metricgate-split", "mlflow", "fasttrackml")
DEFAULT_CONTENDERS = ("metricgate", "mlflow")
METRIC_KEYS, PARAM_KEYS, TAG_KEYS = 10, 10, 5
MAX_KEYS = METRIC_KEYS + PARAM_KEYS + TAG_KEYS  # 25: metricgate's MAX_FILTER_KEYS
STEPS_PER_RUN = 3
WRITER_RUNS = 4
WRITER_KEYS, WRITER_STEPS = 10, 10  # 100 points per log-batch
SEARCH_PAGE = 100
LAG_KEY = "w0"
LAG_GIVE_UP_S = 60.0
FAILED_PAUSE_S = 0.1  # after a non-200: no busy loop on instant refusals


@dataclass(frozen=True)
class Scale:
    runs: int
    phase_s: float
    alone_repeat: int

    @property
    def describe(self) -> str:
        return (
            f"sweep {self.runs:,} runs x ({PARAM_KEYS} params, {TAG_KEYS} tags, {METRIC_KEYS} metrics x "
            f"{STEPS_PER_RUN} steps); phases of {self.phase_s:g} s"
        )


FULL = Scale(runs=2000, phase_s=45.0, alone_repeat=3)
QUICK = Scale(runs=400, phase_s=12.0, alone_repeat=1)


# ---------------------------------------------------------------- the expensive search


def _key_order() -> list[tuple[str, int]]:
    """The 25 keys, metrics, params and tags interleaved, so a filter on the first n keys mixes
    all three kinds (m1, whose first comparison is the selective one, comes early)."""
    out: list[tuple[str, int]] = []
    for i in range(max(METRIC_KEYS, PARAM_KEYS)):
        if i < METRIC_KEYS:
            out.append(("m", i))
        if i < PARAM_KEYS:
            out.append(("p", i))
        if i % 2 == 0 and i // 2 < TAG_KEYS:
            out.append(("t", i // 2))
    return out


def _comparisons(kind: str, k: int) -> list[str]:
    if kind == "m":
        first = f"metrics.m{k} >= 0.3" if k == 1 else f"metrics.m{k} >= 0"
        return [first, f"metrics.m{k} > -1", f"metrics.m{k} < 2", f"metrics.m{k} != {k + 3}"]
    if kind == "p":
        return [
            f"params.p{k} LIKE 'a%'",
            f"params.p{k} ILIKE 'A%'",
            f"params.p{k} != 'zz'",
            f"params.p{k} != 'a9'",
        ]
    return [
        f"tags.t{k} LIKE 'tag-%'",
        f"tags.t{k} ILIKE '%-{k}'",
        f"tags.t{k} != 'x'",
        f"tags.t{k} != 'y'",
    ]


def expensive_filter(
    keys: int = MAX_KEYS, per_key: int = 4, rng: random.Random | None = None
) -> str:
    """``per_key`` comparisons on each of ``keys`` distinct keys; at the default, 100 comparisons
    on 25 keys (metricgate's MAX_FILTER_CLAUSES / MAX_FILTER_KEYS), all distinct (metricgate folds
    repeated clauses). Every comparison is true for every run but ``metrics.m1 >= 0.3``, so the
    search must look at every key of ~70% of the runs. With ``rng`` the keys come in a random
    order: the same answer, but another SQL text, so no server can reuse a cached plan (different
    users' filters would not share one either)."""
    if not 1 <= keys <= MAX_KEYS or not 1 <= per_key <= 4:
        raise ValueError(f"keys must be within 1..{MAX_KEYS} and per_key within 1..4")
    chosen = _key_order()[:keys]
    if rng is not None:
        rng.shuffle(chosen)
    return " AND ".join(c for kind, k in chosen for c in _comparisons(kind, k)[:per_key])


def parse_filter_size(text: str) -> tuple[int, int]:
    """``KEYSxPER`` (``25x4``): distinct keys and comparisons per key."""
    keys, _, per = text.lower().partition("x")
    try:
        size = int(keys), int(per)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KEYSxPER such as 25x4, got {text!r}") from None
    if not 1 <= size[0] <= MAX_KEYS or not 1 <= size[1] <= 4:
        raise argparse.ArgumentTypeError(
            f"KEYS must be within 1..{MAX_KEYS} and PER within 1..4, got {text!r}"
        )
    return size


def search_body(
    experiment_id: str, size: tuple[int, int], rng: random.Random | None = None
) -> dict[str, Any]:
    return {
        "experiment_ids": [experiment_id],
        "filter": expensive_filter(*size, rng=rng),
        "order_by": ["metrics.m0 DESC"],
        "max_results": SEARCH_PAGE,
    }


# ---------------------------------------------------------------- data


async def load_sweep(client: Client, runs: int, concurrency: int) -> str:
    experiment_id = str(
        (await client.json("POST", "/experiments/create", {"name": "sweep"}))["experiment_id"]
    )

    async def sweep_run(i: int) -> None:
        rng = random.Random(i)  # per run: the same values in every contender whatever the order
        run = await client.json(
            "POST",
            "/runs/create",
            {"experiment_id": experiment_id, "run_name": f"trial-{i}", "start_time": BASE_TS},
        )
        params = [{"key": f"p{k}", "value": f"a{rng.randrange(5)}"} for k in range(PARAM_KEYS)]
        tags = [{"key": f"t{k}", "value": f"tag-{i % 7}-{k}"} for k in range(TAG_KEYS)]
        metrics = [
            {"key": f"m{k}", "value": rng.random(), "timestamp": BASE_TS + s, "step": s}
            for s in range(STEPS_PER_RUN)
            for k in range(METRIC_KEYS)
        ]
        body = {
            "run_id": run["run"]["info"]["run_id"],
            "params": params,
            "tags": tags,
            "metrics": metrics,
        }
        await client.call("POST", "/runs/log-batch", body)

    await gather_limited([lambda i=i: sweep_run(i) for i in range(runs)], concurrency)
    return experiment_id


async def create_writer_runs(client: Client) -> list[str]:
    experiment_id = str(
        (await client.json("POST", "/experiments/create", {"name": "writer"}))["experiment_id"]
    )
    out = []
    for i in range(WRITER_RUNS):
        body = {"experiment_id": experiment_id, "run_name": f"writer-{i}", "start_time": BASE_TS}
        out.append(str((await client.json("POST", "/runs/create", body))["run"]["info"]["run_id"]))
    return out


# ---------------------------------------------------------------- phases


def _failure_label(exc: BaseException) -> str:
    return "timeout" if isinstance(exc, asyncio.TimeoutError) else "conn"


@dataclass
class Ack:
    run_id: str
    step: int
    at: float


@dataclass
class PhaseResult:
    phase: str
    seconds: float = 0.0
    batch_latencies_s: list[float] = field(default_factory=list)  # requests answered 200
    batch_statuses: Counter[str] = field(default_factory=Counter)
    lags_s: list[float] = field(default_factory=list)  # ack -> in PostgreSQL (metricgate)
    lag_unseen: int = 0  # not in PostgreSQL within LAG_GIVE_UP_S
    read_after_ack_s: list[float] = field(default_factory=list)
    read_after_ack_stale: int = 0  # runs/get after an ack that did not show the step
    read_after_ack_failed: Counter[str] = field(default_factory=Counter)
    search_latencies_s: list[float] = field(default_factory=list)  # searches answered 200
    search_statuses: Counter[str] = field(default_factory=Counter)
    search_seconds_by_status: dict[str, list[float]] = field(
        default_factory=dict
    )  # how long until each answer
    search_unfinished: int = 0  # still waiting for an answer when the phase ended
    search_error_samples: dict[str, str] = field(default_factory=dict)
    batch_error_samples: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.batch_latencies_s)
        lags = sorted(self.lags_s)
        raa = sorted(self.read_after_ack_s)
        searches = sorted(self.search_latencies_s)

        def ms(values: list[float], q: float) -> float | None:
            p = percentile(values, q)
            return None if p is None else round(p * 1000, 1)

        failed = {k: v for k, v in self.batch_statuses.items() if k != "200"}
        return {
            "phase": self.phase,
            "seconds": round(self.seconds, 1),
            "batches_ok": self.batch_statuses.get("200", 0),
            "batches_failed": sum(failed.values()),
            "batch_failures": dict(failed),
            "batches_ok_per_s": round(self.batch_statuses.get("200", 0) / self.seconds, 1)
            if self.seconds
            else None,
            "batch_p50_ms": ms(lat, 50),
            "batch_p99_ms": ms(lat, 99),
            "batch_max_ms": ms(lat, 100),
            "flush_lag_samples": len(lags),
            "flush_lag_p50_ms": ms(lags, 50),
            "flush_lag_p99_ms": ms(lags, 99),
            "flush_lag_unseen": self.lag_unseen,
            "read_after_ack_samples": len(raa),
            "read_after_ack_p50_ms": ms(raa, 50),
            "read_after_ack_p99_ms": ms(raa, 99),
            "read_after_ack_stale": self.read_after_ack_stale,
            "read_after_ack_failed": dict(self.read_after_ack_failed),
            "searches_ok": self.search_statuses.get("200", 0),
            "searches_ok_per_s": round(self.search_statuses.get("200", 0) / self.seconds, 2)
            if self.seconds
            else None,
            "search_statuses": dict(self.search_statuses),
            "search_status_median_s": {
                k: round(statistics.median(v), 2)
                for k, v in sorted(self.search_seconds_by_status.items())
            },
            "search_unfinished": self.search_unfinished,
            "search_p50_ms": ms(searches, 50),
            "search_p99_ms": ms(searches, 99),
            "batch_error_samples": self.batch_error_samples,
            "search_error_samples": self.search_error_samples,
        }


class Phase:
    """One phase's writer, sampler and (phase B) searchers against one server."""

    def __init__(
        self, url: str, writer_runs: list[str], steps: dict[str, int], result: PhaseResult
    ) -> None:
        self.url = url
        self.writer_runs = writer_runs
        self.steps = steps  # next step per writer run, carried over from phase A to B
        self.result = result
        self.last_ack: Ack | None = None
        self.stop = asyncio.Event()

    async def writer(self, session: aiohttp.ClientSession, run_id: str) -> None:
        rng = random.Random(run_id)
        while not self.stop.is_set():
            first = self.steps[run_id]
            self.steps[run_id] = first + WRITER_STEPS
            metrics = [
                {"key": f"w{k}", "value": rng.random(), "timestamp": BASE_TS + step, "step": step}
                for step in range(first, first + WRITER_STEPS)
                for k in range(WRITER_KEYS)
            ]
            body = orjson.dumps({"run_id": run_id, "metrics": metrics})
            started = time.perf_counter()
            try:
                async with session.post(
                    self.url + API + "/runs/log-batch", data=body, headers=JSON
                ) as response:
                    raw = await response.read()
                    status = str(response.status)
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, raw = _failure_label(exc), repr(exc).encode()
            self.result.batch_statuses[status] += 1
            if status == "200":
                now = time.perf_counter()
                self.result.batch_latencies_s.append(now - started)
                self.last_ack = Ack(run_id, first + WRITER_STEPS - 1, now)
            else:
                self.result.batch_error_samples.setdefault(
                    status, raw[:300].decode(errors="replace")
                )
                await asyncio.sleep(FAILED_PAUSE_S)

    async def sampler(
        self, session: aiohttp.ClientSession, dsn: str | None, every_s: float
    ) -> None:
        conn = await asyncpg.connect(dsn) if dsn else None
        try:
            while not self.stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), every_s)
                ack = self.last_ack
                if self.stop.is_set() or ack is None:
                    continue
                probes = [self._read_after_ack(session, ack)]
                if conn is not None:
                    probes.append(self._flush_lag(conn, ack))
                await asyncio.gather(*probes)
        finally:
            if conn is not None:
                await conn.close()

    async def _flush_lag(self, conn: asyncpg.Connection, ack: Ack) -> None:
        """Until the acknowledged step is in PostgreSQL. The flusher commits a batch's chunks and
        its latest values in one transaction, so ``latest_metrics`` reaching the step is the
        moment every read can see it."""
        while True:
            step = await conn.fetchval(
                "SELECT step FROM latest_metrics WHERE run_id = $1 AND key = $2",
                ack.run_id,
                LAG_KEY,
            )
            now = time.perf_counter()
            if step is not None and step >= ack.step:
                self.result.lags_s.append(now - ack.at)
                return
            if now - ack.at > LAG_GIVE_UP_S:
                self.result.lag_unseen += 1
                return
            await asyncio.sleep(0.005)

    async def _read_after_ack(self, session: aiohttp.ClientSession, ack: Ack) -> None:
        try:
            async with session.get(
                self.url + API + "/runs/get", params={"run_id": ack.run_id}
            ) as response:
                raw = await response.read()
                status = str(response.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.result.read_after_ack_failed[_failure_label(exc)] += 1
            return
        if status != "200":
            self.result.read_after_ack_failed[status] += 1
            return
        self.result.read_after_ack_s.append(time.perf_counter() - ack.at)
        metrics = orjson.loads(raw).get("run", {}).get("data", {}).get("metrics", [])
        step = next((int(m.get("step", 0)) for m in metrics if m.get("key") == LAG_KEY), None)
        if step is None or step < ack.step:
            self.result.read_after_ack_stale += 1

    async def searcher(
        self, session: aiohttp.ClientSession, make_body: Callable[[], bytes]
    ) -> None:
        while not self.stop.is_set():
            body = make_body()
            started = time.perf_counter()
            try:
                async with session.post(
                    self.url + API + "/runs/search", data=body, headers=JSON
                ) as response:
                    raw = await response.read()
                    status = str(response.status)
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, raw = _failure_label(exc), repr(exc).encode()
            elapsed = time.perf_counter() - started
            self.result.search_statuses[status] += 1
            self.result.search_seconds_by_status.setdefault(status, []).append(elapsed)
            if status == "200":
                self.result.search_latencies_s.append(elapsed)
            else:
                self.result.search_error_samples.setdefault(
                    status, raw[:300].decode(errors="replace")
                )
                await asyncio.sleep(FAILED_PAUSE_S)


async def run_phase(
    name: str,
    url: str,
    writer_runs: list[str],
    steps: dict[str, int],
    seconds: float,
    dsn: str | None,
    args: argparse.Namespace,
    search: Callable[[], dict[str, Any]] | None,
) -> PhaseResult:
    result = PhaseResult(name)
    phase = Phase(url, writer_runs, steps, result)
    request_timeout = aiohttp.ClientTimeout(total=args.request_timeout_s)
    async with (
        aiohttp.ClientSession(
            timeout=request_timeout, connector=aiohttp.TCPConnector(limit=WRITER_RUNS + 2)
        ) as writes,
        aiohttp.ClientSession(
            timeout=request_timeout, connector=aiohttp.TCPConnector(limit=4)
        ) as samples,
        aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=args.search_timeout_s),
            connector=aiohttp.TCPConnector(limit=args.search_clients + 1),
        ) as searches,
    ):
        searchers: list[asyncio.Task[None]] = []
        if search is not None:
            next_search = search

            def make_body() -> bytes:
                return orjson.dumps(next_search())

            searchers = [
                asyncio.create_task(phase.searcher(searches, make_body))
                for _ in range(args.search_clients)
            ]
            await asyncio.sleep(1.0)  # the pressure is on before the first write
        started = time.perf_counter()
        tasks = [asyncio.create_task(phase.writer(writes, run_id)) for run_id in writer_runs]
        tasks.append(asyncio.create_task(phase.sampler(samples, dsn, args.sample_every_s)))
        await asyncio.sleep(seconds)
        phase.stop.set()
        # The writer's last requests finish (they are part of the phase); searches still waiting
        # for an answer are abandoned: the client leaves, as a real one would.
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - started
        result.search_unfinished = sum(1 for task in searchers if not task.done())
        for task in searchers:
            task.cancel()
        await asyncio.gather(*searchers, return_exceptions=True)
    say(f"{url}: phase {name}: {_phase_line(result.summary())}")
    return result


def _phase_line(s: dict[str, Any]) -> str:
    line = (
        f"log-batch ok {s['batches_ok']} p50 {s['batch_p50_ms']} ms p99 {s['batch_p99_ms']} ms "
        f"failed {s['batch_failures']}"
    )
    if s["flush_lag_samples"]:
        line += f"; flush lag p50 {s['flush_lag_p50_ms']} ms"
    if s["search_statuses"]:
        line += f"; searches {s['search_statuses']} ({s['searches_ok_per_s']}/s)"
    return line


# ---------------------------------------------------------------- one contender


async def guard_database(dsn: str, database: str, seconds: float) -> None:
    """A database-wide statement_timeout as a safety net for the benchmark machine, set before the
    server connects. Stock MLflow's search with 100 comparisons made one PostgreSQL backend grow
    to 20 GB in 5 minutes here, until the kernel's OOM killer ended it; nothing that takes this
    long could finish inside a phase anyway. metricgate's read pool sets its own, shorter limit
    on its sessions, which overrides this one."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"ALTER DATABASE {database} SET statement_timeout = '{round(seconds * 1000)}ms'"
        )
    finally:
        await conn.close()


def cap_backend_memory(pg: compare.devservices.PostgresInstance, gib: float) -> None:
    """An address-space limit on the private PostgreSQL's postmaster, inherited by every backend
    it starts from now on: a backend whose query needs more gets PostgreSQL's own "out of memory"
    error instead of the kernel's OOM killer picking a process anywhere on the machine. The
    planner's memory is what grows here: one stock-MLflow search with 25 comparisons peaked at
    ~1 GB in its backend (20 GB with 100), and 32 of them at once emptied a 23 GB machine."""
    pid = int((pg.cluster_dir / "data" / "postmaster.pid").read_text().split()[0])
    limit = int(gib * 2**30)
    try:
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
        return
    except PermissionError:
        pass  # root without CAP_SYS_RESOURCE: the process's own user may still lower its limit
    owner = pwd.getpwuid((pg.cluster_dir / "data").stat().st_uid).pw_name
    cmd = ["prlimit", "--pid", str(pid), f"--as={limit}"]
    if owner != pwd.getpwuid(os.getuid()).pw_name:
        cmd = ["runuser", "-u", owner, "--", *cmd]
    try:
        compare.run_checked(cmd, what="limiting PostgreSQL's backends")
    except (BenchError, OSError) as exc:
        say(f"WARNING: no memory limit on PostgreSQL's backends ({exc})")


async def end_backends(dsn: str, database: str) -> int:
    """Terminate what still runs in ``database`` once its server is gone: a server that does not
    cancel abandoned queries leaves them running, and they would load the next contender's run."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        return len(rows)
    finally:
        await conn.close()


async def search_alone(
    client: Client, next_body: Callable[[], dict[str, Any]], repeat: int
) -> tuple[list[float], list[str], str]:
    """Latencies of the search alone (the first answer is a warm-up), the run names it answers,
    and the error that stopped it ('' when none)."""
    out: list[float] = []
    names: list[str] = []
    for i in range(repeat + 1):
        started = time.perf_counter()
        try:
            answer = await client.json("POST", "/runs/search", next_body())
        except (TimeoutError, BenchError, aiohttp.ClientError) as exc:
            return (
                out,
                names,
                f"after {time.perf_counter() - started:.1f} s: {str(exc)[:300] or repr(exc)}",
            )
        if i == 0:
            names = [str(r["info"].get("run_name", "")) for r in answer.get("runs", [])]
        else:
            out.append(time.perf_counter() - started)
    return out, names, ""


async def bench_contender(
    server: Server, scale: Scale, args: argparse.Namespace, dsn: str
) -> dict[str, Any]:
    name = server.name
    timeout = aiohttp.ClientTimeout(total=args.search_timeout_s)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=args.load_concurrency)
    ) as s:
        client = Client(s, server.url)
        started = time.perf_counter()
        experiment_id = await load_sweep(client, scale.runs, args.load_concurrency)
        writer_runs = await create_writer_runs(client)
        load_s = time.perf_counter() - started
        say(f"{name}: loaded in {load_s:.1f} s")
        await vacuum_analyze(dsn)
        size = args.mlflow_filter if name == "mlflow" else args.filter
        rng = None if args.same_filter else random.Random(11)

        def next_body() -> dict[str, Any]:
            return search_body(experiment_id, size, rng)

        alone, names, alone_error = await search_alone(client, next_body, scale.alone_repeat)
        if alone_error:
            say(f"{name}: the expensive search alone FAILED {alone_error}")
        else:
            say(
                f"{name}: the expensive search alone: "
                f"median {statistics.median(alone) * 1000:.0f} ms, {len(names)} runs"
            )
    flush_dsn = dsn if name.startswith("metricgate") else None
    steps = dict.fromkeys(writer_runs, 0)
    phase_a = await run_phase(
        "A", server.url, writer_runs, steps, scale.phase_s, flush_dsn, args, None
    )
    phase_b = await run_phase(
        "B", server.url, writer_runs, steps, scale.phase_s, flush_dsn, args, next_body
    )
    a, b = phase_a.summary(), phase_b.summary()
    return {
        "load_s": round(load_s, 1),
        "filter": {"keys": size[0], "per_key": size[1], "comparisons": size[0] * size[1]},
        "search_alone_ms": [round(x * 1000, 1) for x in alone],
        "search_alone_median_ms": round(statistics.median(alone) * 1000, 1) if alone else None,
        "search_alone_error": alone_error,
        "search_runs": len(names),
        "search_run_names": names,
        "A": a,
        "B": b,
        "batch_p50_ratio": _round(ratio(b["batch_p50_ms"], a["batch_p50_ms"])),
        "batch_p99_ratio": _round(ratio(b["batch_p99_ms"], a["batch_p99_ms"])),
        "flush_lag_p50_ratio": _round(ratio(b["flush_lag_p50_ms"], a["flush_lag_p50_ms"])),
        "read_after_ack_p50_ratio": _round(
            ratio(b["read_after_ack_p50_ms"], a["read_after_ack_p50_ms"])
        ),
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# ---------------------------------------------------------------- report


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}{suffix}" if value < 100 else f"{value:,.0f}{suffix}"
    return f"{value}{suffix}"


def _counts(counts: dict[str, int], median_s: dict[str, float] | None = None) -> str:
    """``status:count``, with the median time to that answer when given (``503:40@10.0s``)."""
    median_s = median_s or {}
    parts = [
        f"{k}:{v}" + (f"@{median_s[k]:.1f}s" if k in median_s else "")
        for k, v in sorted(counts.items())
    ]
    return " ".join(parts) or "-"


def table(results: dict[str, dict[str, Any]]) -> str:
    header = [
        "contender",
        "phase",
        "log-batch ok",
        "ok/s",
        "p50 ms",
        "p99 ms",
        "failed (status:n)",
        "searches 200/s",
        "search statuses",
        "search p50 ms",
        "flush lag p50/p99 ms",
        "runs/get after ack p50 ms",
    ]
    rows = [header]
    for name, r in results.items():
        for key in ("A", "B"):
            s = r[key]
            searches = _counts(s["search_statuses"], s["search_status_median_s"])
            if s["search_unfinished"]:
                searches += f" unfinished:{s['search_unfinished']}"
            lag = (
                "-"
                if not s["flush_lag_samples"]
                else f"{_fmt(s['flush_lag_p50_ms'])}/{_fmt(s['flush_lag_p99_ms'])}"
            )
            if s["flush_lag_unseen"]:
                lag += f" (unseen {s['flush_lag_unseen']})"
            raa = _fmt(s["read_after_ack_p50_ms"])
            if s["read_after_ack_stale"] or s["read_after_ack_failed"]:
                raa += f" (stale {s['read_after_ack_stale']}, failed {_counts(s['read_after_ack_failed'])})"
            rows.append(
                [
                    name if key == "A" else "",
                    "A alone" if key == "A" else "B +searches",
                    str(s["batches_ok"]),
                    _fmt(s["batches_ok_per_s"]),
                    _fmt(s["batch_p50_ms"]),
                    _fmt(s["batch_p99_ms"]),
                    _counts(s["batch_failures"]) if s["batches_failed"] else "0",
                    "-" if key == "A" else _fmt(s["searches_ok_per_s"]),
                    "-" if key == "A" else searches,
                    "-" if key == "A" else _fmt(s["search_p50_ms"]),
                    lag,
                    raa,
                ]
            )
        rows.append(
            [
                "",
                "B/A",
                "",
                "",
                _fmt(r["batch_p50_ratio"], "x"),
                _fmt(r["batch_p99_ratio"], "x"),
                "",
                "",
                "",
                "",
                _fmt(r["flush_lag_p50_ratio"], "x"),
                _fmt(r["read_after_ack_p50_ratio"], "x"),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        " | ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def export_src(ref: str) -> tuple[Path, str]:
    """A clean copy of ``src/`` as committed at ``ref`` (as compare.py's --metricgate-ref)."""
    commit = compare.run_checked(
        ["git", "-C", str(REPO), "rev-parse", "--verify", ref + "^{commit}"]
    ).strip()
    out = Path(tempfile.mkdtemp(prefix="metricgate-src-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "src"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(out, filter="data")
    return out, commit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--contenders",
        default=",".join(DEFAULT_CONTENDERS),
        help="comma-separated, from: " + ", ".join(CONTENDERS),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK.runs} runs, {QUICK.phase_s:g} s phases: ~3 minutes",
    )
    parser.add_argument(
        "--runs", type=int, help=f"runs in the sweep ({FULL.runs}; quick {QUICK.runs})"
    )
    parser.add_argument(
        "--phase-s",
        type=float,
        help=f"seconds of each phase ({FULL.phase_s:g}; quick {QUICK.phase_s:g})",
    )
    parser.add_argument(
        "--filter",
        type=parse_filter_size,
        default=(MAX_KEYS, 4),
        help="the search's filter as KEYSxPER: distinct keys x comparisons per key (25x4 = 100, metricgate's limits)",
    )
    parser.add_argument(
        "--mlflow-filter",
        type=parse_filter_size,
        default=(10, 1),
        help="stock MLflow's filter (10x1: ~80 MB of planner memory per search; 25x1 ~1 GB, 25x4 20 GB: "
        "32 of those at once exhaust a small machine's memory)",
    )
    parser.add_argument(
        "--pg-backend-gib",
        type=float,
        default=2.0,
        help="address-space limit of each PostgreSQL backend (a query needing more fails alone)",
    )
    parser.add_argument(
        "--same-filter",
        action="store_true",
        help="send the filter's keys in one order every time (by default each search orders them at random: "
        "another SQL text, no cached plan; metricgate's prepared statements turn generic after 5 uses)",
    )
    parser.add_argument(
        "--pg-guard-s",
        type=float,
        default=120.0,
        help="statement_timeout set on each contender's database",
    )
    parser.add_argument(
        "--search-clients", type=int, default=32, help="clients looping the search in phase B (32)"
    )
    parser.add_argument(
        "--sample-every-s",
        type=float,
        default=0.5,
        help="flush-lag / read-after-ack sampling period",
    )
    parser.add_argument(
        "--search-timeout-s", type=float, default=180.0, help="client-side limit of one search"
    )
    parser.add_argument(
        "--request-timeout-s",
        type=float,
        default=60.0,
        help="client-side limit of a log-batch / runs/get",
    )
    parser.add_argument(
        "--load-concurrency", type=int, default=8, help="requests in flight while loading"
    )
    parser.add_argument("--cache-dir", type=Path, default=compare.DEFAULT_CACHE)
    parser.add_argument("--mlflow-version", default="3.17.2")
    parser.add_argument(
        "--mlflow-workers", type=int, default=4, help="stock mlflow server --workers (4)"
    )
    parser.add_argument("--metricgate-args", default="", help="extra `metricgate serve` flags")
    parser.add_argument(
        "--metricgate-ref",
        help="run metricgate as committed at this git ref (e.g. HEAD): a clean copy of its src/, so "
        "uncommitted edits in the work tree are neither measured nor able to break the run",
    )
    parser.add_argument(
        "--metricgate-src", type=Path, help="run metricgate from this src/ dir (PYTHONPATH)"
    )
    parser.add_argument(
        "--metricgate-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a METRICGATE_* setting for metricgate's processes, e.g. METRICGATE_DB_READ_POOL_MAX=2 (repeatable)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (logs, PostgreSQL data)"
    )
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    for name in contenders:
        if name not in CONTENDERS:
            parser.error(f"unknown contender {name!r}")
    metricgate_env: dict[str, str] = {}
    for item in args.metricgate_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("METRICGATE_"):
            parser.error(f"--metricgate-env expects METRICGATE_NAME=VALUE, got {item!r}")
        metricgate_env[key] = value
    base = QUICK if args.quick else FULL
    scale = Scale(
        runs=args.runs or base.runs,
        phase_s=args.phase_s or base.phase_s,
        alone_repeat=base.alone_repeat,
    )

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    metricgate_src = args.metricgate_src.resolve() if args.metricgate_src else None
    described = compare.git_describe(metricgate_src or REPO / "src")
    exported: Path | None = None
    if args.metricgate_ref:
        exported, commit = export_src(args.metricgate_ref)
        metricgate_src = exported / "src"
        described = {"commit": commit, "ref": args.metricgate_ref, "dirty": False}
    info: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "metricgate": described,
        "scale": scale.describe,
        "search_clients": args.search_clients,
        "writer": f"{WRITER_RUNS} runs, 1 log-batch of {WRITER_KEYS * WRITER_STEPS} points in flight per run",
        "pg_guard_s": args.pg_guard_s,
        "filter_order": "the same every time"
        if args.same_filter
        else "keys in a random order per search",
        "pg_backend_gib": args.pg_backend_gib,
        "metricgate_env": metricgate_env,
    }
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    started = time.time()
    try:
        with compare.services(args.keep) as (tmp, pg, redis):
            ctx = Context(
                tmp=tmp,
                pg=pg,
                redis=redis,
                cache=args.cache_dir.expanduser(),
                mlflow_version=args.mlflow_version,
                metricgate_src=metricgate_src,
                metricgate_args=shlex.split(args.metricgate_args),
                mlflow_workers=args.mlflow_workers,
                info=info,
                metricgate_env=metricgate_env,
            )
            info["postgres"] = asyncio.run(compare.pg_version(pg.url()))
            cap_backend_memory(pg, args.pg_backend_gib)
            versions = {}
            for name in contenders:
                server = None
                try:
                    database = "bench_" + name.replace("-", "_")  # as compare.py's starters name it
                    compare.devservices.create_database(pg, database)
                    asyncio.run(guard_database(pg.url(), database, args.pg_guard_s))
                    server = compare.STARTERS[name](ctx)
                    compare.wait_ready(server)
                    versions[name] = compare.version_of(name, ctx)
                    say(
                        f"{name} is up at {server.url} ({versions[name]}); loading {scale.describe}"
                    )
                    dsn = pg.url(database)
                    results[name] = asyncio.run(bench_contender(server, scale, args, dsn))
                    for proc in (server.proc, *server.helpers):
                        if proc.poll() is not None:
                            raise BenchError(
                                f"{name}: {proc.args} exited with {proc.returncode} during the run"
                            )
                except (
                    TimeoutError,
                    BenchError,
                    OSError,
                    aiohttp.ClientError,
                    compare.devservices.DevServiceError,
                ) as exc:
                    failures[name] = str(exc) or repr(exc)
                    say(f"{name} FAILED: {failures[name]}")
                finally:
                    if server is not None:
                        for proc in (server.proc, *server.helpers):
                            compare._stop(proc)
                        ended = asyncio.run(end_backends(pg.url(), database))
                        if ended:
                            say(
                                f"{name}: terminated {ended} PostgreSQL sessions still running after the server stopped"
                            )
                            info.setdefault("sessions_left_running", {})[name] = ended
                    asyncio.run(compare.checkpoint(pg.url()))
            info["versions"] = versions
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        compare.stop_all()
        return 130
    finally:
        compare.stop_all()
        if exported is not None:
            shutil.rmtree(exported, ignore_errors=True)
    info["elapsed_s"] = round(time.time() - started, 1)
    print()
    print(
        f"metricgate {info['metricgate']}  |  {info.get('postgres', '')}  |  {os.cpu_count()} CPUs"
    )
    print(
        f"{scale.describe}; writer: {info['writer']}; phase B: {args.search_clients} clients looping the search"
    )
    if metricgate_env:
        print("metricgate settings: " + " ".join(f"{k}={v}" for k, v in metricgate_env.items()))
    print(
        f"search: the sweep, order_by metrics.m0 DESC, {SEARCH_PAGE} runs a page, filter KEYSxPER (distinct keys x "
        f"comparisons per key), {info['filter_order']}; safety nets: database statement_timeout {args.pg_guard_s:g} s, "
        f"{args.pg_backend_gib:g} GiB per PostgreSQL backend"
    )
    print()
    for name, r in results.items():
        f = r["filter"]
        alone = (
            f"FAILED {r['search_alone_error']}"
            if r["search_alone_error"]
            else f"median {r['search_alone_median_ms']:,.0f} ms of {len(r['search_alone_ms'])}"
        )
        print(
            f"{name}: filter {f['keys']}x{f['per_key']} ({f['comparisons']} comparisons); the search alone: {alone}, "
            f"{r['search_runs']} runs answered; loaded in {r['load_s']} s"
        )
    names = {name: r["search_run_names"] for name, r in results.items()}
    if "metricgate" in names and "mlflow" in names:
        verdict = "identical" if names["metricgate"] == names["mlflow"] else "DIFFERENT"
        print(f"search answer (run names in order), metricgate vs mlflow: {verdict}")
        info["search_answer_identical"] = names["metricgate"] == names["mlflow"]
    print()
    print(table(results))
    print()
    print(
        "latencies: send to last byte, requests answered 200; failed: non-200 by status, conn, timeout (not retried);"
    )
    print(
        "search statuses: status:count@median seconds to that answer; unfinished: no answer when the phase ended;"
    )
    print(
        "flush lag: ack -> step in PostgreSQL (metricgate); runs/get after ack: a runs/get sent right after an ack"
    )
    for name, error in failures.items():
        print(f"\n{name} FAILED: {error}")
    for r in results.values():
        r.pop("search_run_names", None)
    payload = {
        "bench": "read_isolation",
        **info,
        "contenders": contenders,
        "failures": failures,
        "results": results,
    }
    compare.print_json_line(payload, args.json_out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
