#!/usr/bin/env python3
"""Reads at sweep scale, side by side on one PostgreSQL: metricgate vs stock ``mlflow server`` vs
FastTrackML, the same data in each, one server at a time.

What it does (reusing compare.py's machinery: the durable private PostgreSQL and Redis, the
contenders' cached venvs, starting and stopping their servers):
1. For each contender: starts its server on its own database and loads, through MLflow's REST
   API (``runs/create`` + ``runs/log-batch``, a few requests in flight; not timed), then runs
   ``VACUUM (ANALYZE)`` on that database (what autovacuum would soon do):
   - a sweep: ``--runs`` runs (5,000) with 10 params, 5 tags and 5 metrics of 3 steps each;
   - curves: 10 runs x 20,000 points and 1 run x 200,000 points of one key, logged 1,000 points
     per request (MLflow's log-batch limit), step by step, as a training loop with batching does;
   - metricgate only (``--million-contenders``): 1 run x 1,000,000 points.
2. Times each read ``--repeat`` times (after one untimed warm-up), one request at a time, from
   sending to the last byte of the answer, and takes the median:
   ``runs/search`` (100 runs, default order; and filtered on a param and a metric, ordered by a
   metric), ``runs/get``, ``get-history`` (20k points, one page), ``get-history`` of 200k points
   (every 25,000-point page), ``get-history-bulk-interval`` (10 runs x 20k and 1 run x 200k at
   max_results 320), exporting the sweep (``runs/search``, 1,000 runs a page, following the
   tokens), and for the 1M series the chart read and history page 1 vs page 40.
3. Checks that metricgate's bulk-interval answers equal stock MLflow's (the same points, in order).
4. Prints a table of medians with each contender's time divided by metricgate's, and last one
   JSON line.

    .venv/bin/python benchmarks/bench_reads.py --quick          # smoke run, ~2 minutes
    .venv/bin/python benchmarks/bench_reads.py                  # the issue's scale, ~10 minutes
    .venv/bin/python benchmarks/bench_reads.py --contenders metricgate,mlflow

Everything binds 127.0.0.1 only, and every process it started is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shlex
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare
from compare import REPO, BenchError, Context, Server, say

API = "/api/2.0/mlflow"
JSON = {"Content-Type": "application/json"}
BATCH_POINTS = 1000  # MLflow's log-batch limit of metrics per request
BULK_SAMPLES = 320  # what the UI's charts ask for
HISTORY_PAGE = 25000  # MLflow's get-history page
EXPORT_PAGE = 1000
CONTENDERS = ("metricgate", "mlflow", "fasttrackml")
BASE_TS = 1_700_000_000_000


@dataclass(frozen=True)
class Scale:
    sweep_runs: int
    curve_runs: int
    curve_points: int
    long_points: int
    million_points: int

    @property
    def describe(self) -> str:
        return (
            f"sweep {self.sweep_runs:,} runs; {self.curve_runs} x {self.curve_points:,} points; "
            f"1 x {self.long_points:,}; 1 x {self.million_points:,}"
        )


FULL = Scale(
    sweep_runs=5000,
    curve_runs=10,
    curve_points=20_000,
    long_points=200_000,
    million_points=1_000_000,
)
QUICK = Scale(
    sweep_runs=500, curve_runs=10, curve_points=2_000, long_points=20_000, million_points=100_000
)


# ---------------------------------------------------------------- HTTP


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def call(self, method: str, path: str, body: Any = None, params: Any = None) -> bytes:
        """One request; the raw answer (timing includes reading it, not decoding it)."""
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(
            method,
            self.url + API + path,
            data=data,
            params=params,
            headers=JSON if data is not None else None,
        ) as response:
            raw = await response.read()
            if response.status != 200:
                raise BenchError(f"{method} {path} -> {response.status}: {raw[:300]!r}")
            return raw

    async def json(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        return orjson.loads(await self.call(method, path, body, params))

    async def supports(self, method: str, path: str, body: Any = None, params: Any = None) -> bool:
        """False when the server lacks the endpoint (FastTrackML lacks some of MLflow's)."""
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(
            method,
            self.url + API + path,
            data=data,
            params=params,
            headers=JSON if data is not None else None,
        ) as response:
            raw = await response.read()
            return response.status == 200 or not (
                response.status in (404, 405, 501) or b"NOT_FOUND" in raw[:200]
            )


async def gather_limited(jobs: Iterable[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    queue = list(jobs)
    results: list[Any] = [None] * len(queue)
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(queue):
            index = position
            position += 1
            results[index] = await queue[index]()

    await asyncio.gather(*(worker() for _ in range(limit)))
    return results


# ---------------------------------------------------------------- data


def series_points(key: str, n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"key": key, "value": rng.random(), "timestamp": BASE_TS + step, "step": step}
        for step in range(n)
    ]


@dataclass
class Loaded:
    sweep_experiment: str = ""
    sweep_run: str = ""
    curve_runs: list[str] = field(default_factory=list)
    long_run: str = ""
    million_run: str = ""


async def create_run(client: Client, experiment_id: str, name: str) -> str:
    body = {"experiment_id": experiment_id, "run_name": name, "start_time": BASE_TS, "tags": []}
    return str((await client.json("POST", "/runs/create", body))["run"]["info"]["run_id"])


async def log_series(client: Client, run_id: str, n: int, seed: int, concurrency: int) -> None:
    points = series_points("loss", n, seed)
    batches = [points[i : i + BATCH_POINTS] for i in range(0, n, BATCH_POINTS)]
    jobs = [
        lambda b=b: client.call("POST", "/runs/log-batch", {"run_id": run_id, "metrics": b})
        for b in batches
    ]
    await gather_limited(jobs, concurrency)


async def load(client: Client, scale: Scale, million: bool, concurrency: int) -> Loaded:
    out = Loaded()
    out.sweep_experiment = str(
        (await client.json("POST", "/experiments/create", {"name": "sweep"}))["experiment_id"]
    )
    rng = random.Random(7)

    async def sweep_run(i: int) -> str:
        run_id = await create_run(client, out.sweep_experiment, f"trial-{i}")
        params = [{"key": f"p{k}", "value": f"a{rng.randrange(5)}"} for k in range(10)]
        tags = [{"key": f"t{k}", "value": f"tag-{i % 7}-{k}"} for k in range(5)]
        metrics = [
            {"key": f"m{k}", "value": rng.random(), "timestamp": BASE_TS + s, "step": s}
            for s in range(3)
            for k in range(5)
        ]
        body = {"run_id": run_id, "params": params, "tags": tags, "metrics": metrics}
        await client.call("POST", "/runs/log-batch", body)
        return run_id

    runs = await gather_limited(
        [lambda i=i: sweep_run(i) for i in range(scale.sweep_runs)], concurrency
    )
    out.sweep_run = runs[len(runs) // 2]
    curves = str(
        (await client.json("POST", "/experiments/create", {"name": "curves"}))["experiment_id"]
    )
    for i in range(scale.curve_runs):
        run_id = await create_run(client, curves, f"curve-{i}")
        await log_series(client, run_id, scale.curve_points, seed=100 + i, concurrency=concurrency)
        out.curve_runs.append(run_id)
    out.long_run = await create_run(client, curves, "long")
    await log_series(client, out.long_run, scale.long_points, seed=1, concurrency=concurrency)
    if million:
        out.million_run = await create_run(client, curves, "million")
        await log_series(
            client, out.million_run, scale.million_points, seed=2, concurrency=concurrency
        )
    return out


# ---------------------------------------------------------------- reads


@dataclass
class Timing:
    name: str
    contender: str
    median_ms: float | None  # None: the server has no such endpoint
    samples_ms: list[float] = field(default_factory=list)
    note: str = ""


async def timed(repeat: int, action: Callable[[], Awaitable[Any]]) -> list[float]:
    await action()  # warm-up: plan caches, connection pools
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        await action()
        out.append((time.perf_counter() - started) * 1000)
    return out


def bulk_params(run_ids: list[str], max_results: int = BULK_SAMPLES) -> list[tuple[str, str]]:
    return [
        *(("run_ids", r) for r in run_ids),
        ("metric_key", "loss"),
        ("max_results", str(max_results)),
    ]


async def history_pages(client: Client, run_id: str) -> list[str | None]:
    """Every page token of a history (None = the first page)."""
    tokens: list[str | None] = [None]
    while True:
        params = {"run_id": run_id, "metric_key": "loss", "max_results": str(HISTORY_PAGE)}
        if tokens[-1]:
            params["page_token"] = tokens[-1]
        answer = await client.json("GET", "/metrics/get-history", params=params)
        token = answer.get("next_page_token")
        if not token:
            return tokens
        tokens.append(token)


def read_plan(
    client: Client, data: Loaded, scale: Scale
) -> list[tuple[str, str, Callable[[], Awaitable[Any]]]]:
    """(name, (method, path) probed for support, action) of every timed read."""
    c = client

    def search(body: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
        return lambda: c.call("POST", "/runs/search", body)

    async def export() -> int:
        token, runs = None, 0
        while True:
            body: dict[str, Any] = {
                "experiment_ids": [data.sweep_experiment],
                "max_results": EXPORT_PAGE,
            }
            if token:
                body["page_token"] = token
            answer = await c.json("POST", "/runs/search", body)
            runs += len(answer.get("runs", []))
            token = answer.get("next_page_token")
            if not token:
                if runs != scale.sweep_runs:
                    raise BenchError(f"export found {runs} runs, expected {scale.sweep_runs}")
                return runs

    async def all_pages() -> None:
        await history_pages(c, data.long_run)

    filtered = {
        "experiment_ids": [data.sweep_experiment],
        "filter": "params.p0 = 'a1' and metrics.m1 > 0.5",
        "order_by": ["metrics.m0 DESC"],
        "max_results": 100,
    }
    return [
        (
            "runs/search 100",
            "search",
            search({"experiment_ids": [data.sweep_experiment], "max_results": 100}),
        ),
        ("runs/search filtered+sorted", "search", search(filtered)),
        ("runs/get", "get", lambda: c.call("GET", "/runs/get", params={"run_id": data.sweep_run})),
        (
            f"get-history {scale.curve_points // 1000}k",
            "history",
            lambda: c.call(
                "GET",
                "/metrics/get-history",
                params={"run_id": data.curve_runs[0], "metric_key": "loss"},
            ),
        ),
        (f"get-history {scale.long_points // 1000}k, all pages", "history", all_pages),
        (
            f"bulk-interval {scale.curve_runs}x{scale.curve_points // 1000}k",
            "bulk",
            lambda: c.call(
                "GET", "/metrics/get-history-bulk-interval", params=bulk_params(data.curve_runs)
            ),
        ),
        (
            f"bulk-interval 1x{scale.long_points // 1000}k",
            "bulk",
            lambda: c.call(
                "GET", "/metrics/get-history-bulk-interval", params=bulk_params([data.long_run])
            ),
        ),
        (f"export {scale.sweep_runs:,} runs by {EXPORT_PAGE}", "search", export),
    ]


async def probe(client: Client, data: Loaded) -> dict[str, bool]:
    return {
        "search": await client.supports(
            "POST", "/runs/search", {"experiment_ids": [data.sweep_experiment], "max_results": 1}
        ),
        "get": await client.supports("GET", "/runs/get", params={"run_id": data.sweep_run}),
        "history": await client.supports(
            "GET",
            "/metrics/get-history",
            params={"run_id": data.long_run, "metric_key": "loss", "max_results": "1"},
        ),
        "bulk": await client.supports(
            "GET", "/metrics/get-history-bulk-interval", params=bulk_params([data.long_run], 1)
        ),
    }


async def million_reads(
    client: Client, data: Loaded, scale: Scale, repeat: int, name: str
) -> list[Timing]:
    tokens = await history_pages(client, data.million_run)
    label = f"{scale.million_points // 1000}k"
    out = [
        Timing(
            f"bulk-interval 1x{label}",
            name,
            None,
            await timed(
                repeat,
                lambda: client.call(
                    "GET",
                    "/metrics/get-history-bulk-interval",
                    params=bulk_params([data.million_run]),
                ),
            ),
        )
    ]
    for page in (1, len(tokens)):
        token = tokens[page - 1]
        params = {
            "run_id": data.million_run,
            "metric_key": "loss",
            "max_results": str(HISTORY_PAGE),
        }
        if token:
            params["page_token"] = token
        samples = await timed(
            repeat, lambda params=params: client.call("GET", "/metrics/get-history", params=params)
        )
        out.append(Timing(f"get-history {label} page {page}", name, None, samples))
    for t in out:
        t.median_ms = statistics.median(t.samples_ms)
    return out


async def bulk_answers(client: Client, data: Loaded) -> dict[str, list[tuple[Any, ...]]]:
    """The bulk-interval answers the sampling check compares, as (run, step, timestamp, value)."""
    out = {}
    for label, runs in (("curves", data.curve_runs), ("long", [data.long_run])):
        for max_results in (BULK_SAMPLES, 1, 7):
            answer = await client.json(
                "GET", "/metrics/get-history-bulk-interval", params=bulk_params(runs, max_results)
            )
            out[f"{label}/{max_results}"] = [
                (runs.index(m["run_id"]), int(m["step"]), int(m["timestamp"]), float(m["value"]))
                for m in answer.get("metrics", [])
            ]
    return out


async def vacuum_analyze(dsn: str) -> None:
    """What autovacuum does to freshly loaded tables a little later: planner statistics and the
    visibility map. Every contender's database gets it before its reads are timed."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()


async def bench_contender(
    server: Server, scale: Scale, args: argparse.Namespace, dsn: str
) -> tuple[list[Timing], dict[str, Any]]:
    name = server.name
    timeout = aiohttp.ClientTimeout(total=600)
    connector = aiohttp.TCPConnector(limit=args.load_concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        client = Client(session, server.url)
        started = time.perf_counter()
        million = name in args.million_contenders.split(",")
        data = await load(client, scale, million, args.load_concurrency)
        say(f"{name}: loaded in {time.perf_counter() - started:.1f} s")
        await client.call(
            "GET",
            "/metrics/get-history",
            params={"run_id": data.long_run, "metric_key": "loss", "max_results": "1"},
        )
        await vacuum_analyze(dsn)
        supported = await probe(client, data)
        timings = []
        for read, endpoint, action in read_plan(client, data, scale):
            if not supported[endpoint]:
                timings.append(Timing(read, name, None, note="no endpoint"))
                continue
            samples = await timed(args.repeat, action)
            timings.append(Timing(read, name, statistics.median(samples), samples))
            say(f"{name}: {read}: median {timings[-1].median_ms:.1f} ms")
        if million:
            timings.extend(await million_reads(client, data, scale, args.repeat, name))
        extra: dict[str, Any] = {"load_s": round(time.perf_counter() - started, 1)}
        if supported["bulk"]:
            extra["bulk_answers"] = await bulk_answers(client, data)
        return timings, extra


# ---------------------------------------------------------------- report


def table(timings: list[Timing], contenders: list[str]) -> str:
    names = list(dict.fromkeys(t.name for t in timings))
    by = {(t.name, t.contender): t for t in timings}
    others = [c for c in contenders if c != "metricgate"]
    header = ["read", *(f"{c} ms" for c in contenders), *(f"{c}/mg" for c in others)]
    rows = [header]
    for name in names:
        mg = by.get((name, "metricgate"))
        row = [name]
        for c in contenders:
            t = by.get((name, c))
            row.append(
                "-" if t is None else ("n/a" if t.median_ms is None else f"{t.median_ms:.1f}")
            )
        for c in others:
            t = by.get((name, c))
            if t is None or t.median_ms is None or mg is None or not mg.median_ms:
                row.append("-")
            else:
                row.append(f"{t.median_ms / mg.median_ms:.1f}x")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        " | ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def sampling_check(answers: dict[str, dict[str, list[tuple[Any, ...]]]]) -> dict[str, Any]:
    mine, stock = answers.get("metricgate"), answers.get("mlflow")
    if mine is None or stock is None:
        return {}
    out = {}
    for case, points in stock.items():
        got = mine.get(case, [])
        out[case] = {
            "identical": got == points,
            "mlflow_points": len(points),
            "metricgate_points": len(got),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma-separated, from: " + ", ".join(CONTENDERS),
    )
    parser.add_argument(
        "--million-contenders", default="metricgate", help="who also gets the 1M-point series"
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the data: a smoke run")
    parser.add_argument(
        "--repeat", type=int, default=7, help="timed repetitions of each read (median)"
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
        "--keep", action="store_true", help="keep the temp dir (logs, PostgreSQL data)"
    )
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    for name in contenders:
        if name not in CONTENDERS:
            parser.error(f"unknown contender {name!r}")
    scale = QUICK if args.quick else FULL

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    info: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "metricgate": compare.git_describe(REPO / "src"),
        "scale": scale.describe,
        "repeat": args.repeat,
    }
    timings: list[Timing] = []
    answers: dict[str, Any] = {}
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
                metricgate_src=None,
                metricgate_args=shlex.split(args.metricgate_args),
                mlflow_workers=args.mlflow_workers,
                info=info,
            )
            info["postgres"] = asyncio.run(compare.pg_version(pg.url()))
            versions = {}
            for name in contenders:
                server = None
                try:
                    server = compare.STARTERS[name](ctx)
                    compare.wait_ready(server)
                    versions[name] = compare.version_of(name, ctx)
                    say(
                        f"{name} is up at {server.url} ({versions[name]}); loading {scale.describe}"
                    )
                    found, extra = asyncio.run(
                        bench_contender(server, scale, args, pg.url(f"bench_{name}"))
                    )
                    timings.extend(found)
                    answers[name] = extra.pop("bulk_answers", None)
                    info.setdefault("load_s", {})[name] = extra["load_s"]
                except (
                    BenchError,
                    OSError,
                    aiohttp.ClientError,
                    compare.devservices.DevServiceError,
                ) as exc:
                    failures[name] = str(exc)
                    say(f"{name} FAILED: {exc}")
                finally:
                    if server is not None:
                        for proc in (server.proc, *server.helpers):
                            compare._stop(proc)
                    asyncio.run(compare.checkpoint(pg.url()))
            info["versions"] = versions
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        compare.stop_all()
        return 130
    finally:
        compare.stop_all()
    info["elapsed_s"] = round(time.time() - started, 1)
    sampling = sampling_check({k: v for k, v in answers.items() if v})
    print()
    print(
        f"metricgate {info['metricgate']}  |  {info.get('postgres', '')}  |  {os.cpu_count()} CPUs  |  {scale.describe}"
    )
    print(
        f"medians of {args.repeat}, ms from sending to the last byte of the answer; <c>/mg = <c>'s time / metricgate's"
    )
    print()
    print(table(timings, contenders))
    if sampling:
        print()
        for case, result in sampling.items():
            verdict = "identical" if result["identical"] else "DIFFERENT"
            print(
                f"bulk-interval sampling {case}: {verdict} (mlflow {result['mlflow_points']} points, "
                f"metricgate {result['metricgate_points']})"
            )
    for name, error in failures.items():
        print(f"\n{name} FAILED: {error}")
    payload = {
        "bench": "reads",
        **info,
        "contenders": contenders,
        "failures": failures,
        "reads": [
            {
                "read": t.name,
                "contender": t.contender,
                "median_ms": t.median_ms,
                "samples_ms": [round(s, 2) for s in t.samples_ms],
                "note": t.note,
            }
            for t in timings
        ],
        "sampling": sampling,
    }
    compare.print_json_line(payload, args.json_out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
