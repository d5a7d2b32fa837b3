"""Ingest load generator that speaks only MLflow's REST API, so it measures any MLflow-compatible
server (metricgate, stock ``mlflow server``, FastTrackML, ...).

Phases, per workload and concurrency:

1. Setup (not timed): one experiment and R runs through ``experiments/create`` and ``runs/create``;
   every request body is encoded up front so the client spends no CPU on it while timing.
2. Send (timed): ``runs/log-batch`` requests, each carrying B steps x K keys of one run. A run's
   requests go strictly in step order with one in flight at a time (a training process logs that
   way); ``min(R, C)`` workers take the next waiting run round-robin, so C requests are in flight
   overall when R >= C, and only R when R < C. Nothing is retried and nothing the server says
   (Retry-After included) is obeyed: every non-200 answer is counted by status, connection
   failures as ``conn`` and client-side timeouts as ``timeout``. Latency is measured per request
   with ``time.perf_counter`` from just before sending to the last byte of the answer, for every
   request that got an HTTP answer. A time cap can stop sending early; the result says so.
3. Visible (timed from the start of sending): polls ``metrics/get-history`` until, for every run
   and key, the history holds every point of the requests that were answered 200 (exact count,
   following page tokens). Per run, one key is polled first (a cheap "has it landed yet"), then
   every other key is read once and polled again only while still short. A failed read (e.g. a
   503 while the server is catching up) counts as "not yet" and is polled again; the check runs
   with its own, bounded concurrency and gives up after a timeout (reported as INCOMPLETE).
   Visible points/s = accepted points / (time from the first request sent to the last history
   read that completed the picture), so the read-back time counts in it.
   Where the server has MLflow's ``metrics/get-history-bulk-interval`` (stock MLflow does) and
   every run has at most 2500 steps (below that, the endpoint returns every step, so the count
   stays exact), the same check reads one key of up to 100 runs per request instead of one
   (run, key) per request: 100x fewer requests to read back, so the figure measures ingest more
   than per-request overhead. A server without it (404/405/501, ENDPOINT_NOT_FOUND) gets the
   get-history check; ``--visible-read history`` forces it. The result says which was used.

Credentials (``Options.authorization``, an ``Authorization`` header value, Basic or Bearer) go with
every request of every phase, so a server with access control on is measured doing its checks.
``Options.experiment_id`` puts the runs in an existing experiment instead of a new one: a user who
holds EDIT on an experiment someone else created (and may not create one of their own) logs there.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
import uuid
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson

from metricgate.bench.progress import Progress
from metricgate.bench.report import IngestResult
from metricgate.bench.stats import latency_summary_ms, rate
from metricgate.bench.workload import Workload, batch_metrics

API = "/api/2.0/mlflow"
HISTORY_PAGE = 25000  # MLflow's own page limit for get-history
BULK_MAX_RUNS = 100  # mlflow/server/handlers.py: MAX_RUNS_GET_METRIC_HISTORY_BULK
BULK_MAX_RESULTS = 2500  # ... MAX_RESULTS_PER_RUN: up to this many steps, every step comes back
MAX_POLL_PAUSE_S = 0.25
JSON_HEADERS = {"Content-Type": "application/json"}
REFUSED = ("401", "403")  # a read refused for its credentials: polling again cannot help


class BenchError(RuntimeError):
    """The benchmark could not run (server unreachable, setup request refused)."""


@dataclass
class Options:
    max_send_s: float | None = None  # stop starting new requests after this long (None: no cap)
    request_timeout_s: float = 60.0
    visible: bool = True
    visible_timeout_s: float = 300.0  # give up the visibility check after this long past send end
    check_concurrency: int = 16
    visible_read: str = "auto"  # auto (bulk-interval where it is served and exact), bulk or history
    setup_concurrency: int = 16
    progress: bool = True
    label: str = ""
    experiment_prefix: str = "metricgate-bench"
    authorization: str | None = None  # the Authorization header of every request, if any
    experiment_id: str | None = None  # create the runs here rather than in a new experiment


def _error_text(status: int, body: bytes) -> str:
    return f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}"


async def _post_json(
    session: aiohttp.ClientSession, url: str, payload: dict[str, object]
) -> dict[str, Any]:
    async with session.post(url, data=orjson.dumps(payload), headers=JSON_HEADERS) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise BenchError(f"POST {url} -> {_error_text(resp.status, body)}")
        reply: dict[str, Any] = orjson.loads(body) if body else {}
        return reply


_T = TypeVar("_T")


async def _gather_bounded(limit: int, factories: list[Callable[[], Awaitable[_T]]]) -> list[_T]:
    semaphore = asyncio.Semaphore(limit)

    async def one(factory: Callable[[], Awaitable[_T]]) -> _T:
        async with semaphore:
            return await factory()

    return list(await asyncio.gather(*(one(f) for f in factories)))


async def setup_runs(
    session: aiohttp.ClientSession,
    base: str,
    workload: Workload,
    name: str,
    limit: int,
    experiment_id: str | None = None,
) -> list[str]:
    """Create ``workload.runs`` runs in experiment ``experiment_id``, else in a new experiment named
    ``name``; returns the run ids."""
    if experiment_id is None:
        created = await _post_json(session, f"{base}{API}/experiments/create", {"name": name})
        experiment_id = str(created["experiment_id"])
    start = int(time.time() * 1000)

    async def create(i: int) -> str:
        payload = {
            "experiment_id": experiment_id,
            "start_time": start,
            "run_name": f"bench-{i:04d}",
        }
        reply = await _post_json(session, f"{base}{API}/runs/create", payload)
        return str(reply["run"]["info"]["run_id"])

    return await _gather_bounded(
        limit, [functools.partial(create, i) for i in range(workload.runs)]
    )


def encode_bodies(workload: Workload, run_ids: list[str]) -> list[list[bytes]]:
    """Every log-batch body, per run, in send order."""
    names = workload.key_names()
    return [
        [
            orjson.dumps({"run_id": run_id, "metrics": batch_metrics(workload, run, i, names)})
            for i in range(workload.requests_per_run)
        ]
        for run, run_id in enumerate(run_ids)
    ]


@dataclass
class SendOutcome:
    started: float
    ended: float
    latencies: array[float]  # seconds, every request answered with an HTTP status
    errors: dict[str, int]
    error_samples: dict[str, str]  # status -> the first answer (or exception) of that kind
    requests_sent: int
    requests_ok: int
    acked_steps: list[int]  # per run: steps in requests answered 200
    capped: bool


async def send_phase(
    session: aiohttp.ClientSession,
    base: str,
    workload: Workload,
    bodies: list[list[bytes]],
    concurrency: int,
    options: Options,
    progress: Progress | None,
) -> SendOutcome:
    url = f"{base}{API}/runs/log-batch"
    ready: collections.deque[int] = collections.deque(range(workload.runs))
    next_index = [0] * workload.runs
    acked_steps = [0] * workload.runs
    latencies = array("d")
    errors: collections.Counter[str] = collections.Counter()
    samples: dict[str, str] = {}
    counters = {"sent": 0, "ok": 0, "points": 0, "errors": 0}
    requests_per_run = workload.requests_per_run
    started = time.perf_counter()
    deadline = None if options.max_send_s is None else started + options.max_send_s
    last_response = started
    capped = False

    async def worker() -> None:
        nonlocal last_response, capped
        while ready:
            if deadline is not None and time.perf_counter() >= deadline:
                capped = True
                return
            run = ready.popleft()
            index = next_index[run]
            steps = len(workload.request_steps(index))
            counters["sent"] += 1
            t0 = time.perf_counter()
            status: str
            try:
                async with session.post(url, data=bodies[run][index], headers=JSON_HEADERS) as resp:
                    answer = await resp.read()
                    code = resp.status
                t1 = time.perf_counter()
                latencies.append(t1 - t0)
                status = str(code)
                if code != 200 and status not in samples:
                    samples[status] = answer[:300].decode("utf-8", "replace")
            except TimeoutError:
                t1 = time.perf_counter()
                status = "timeout"
                samples.setdefault(status, f"no answer within {options.request_timeout_s:g} s")
            except aiohttp.ClientError as exc:
                t1 = time.perf_counter()
                status = "conn"
                samples.setdefault(status, f"{type(exc).__name__}: {exc}"[:300])
            last_response = max(last_response, t1)
            if status == "200":
                counters["ok"] += 1
                counters["points"] += steps * workload.keys
                acked_steps[run] += steps
            else:
                errors[status] += 1
                counters["errors"] += 1
            # Failed or not, the run moves on to its next request: a training loop would too.
            next_index[run] = index + 1
            if index + 1 < requests_per_run:
                ready.append(run)
            if progress is not None:
                progress.update(counters["points"], counters["errors"])

    workers = min(workload.runs, concurrency)
    await asyncio.gather(*(worker() for _ in range(workers)))
    if ready:
        capped = True
    return SendOutcome(
        started=started,
        ended=last_response,
        latencies=latencies,
        errors=dict(errors),
        error_samples=samples,
        requests_sent=counters["sent"],
        requests_ok=counters["ok"],
        acked_steps=acked_steps,
        capped=capped,
    )


async def history_count(
    session: aiohttp.ClientSession, base: str, run_id: str, key: str
) -> int | str:
    """Points in the metric history of (run, key), following page tokens; on a failed read, the
    status (``"503"``, ``"conn"``, ``"timeout"``) instead, and the caller polls again."""
    url = f"{base}{API}/metrics/get-history"
    count = 0
    token: str | None = None
    while True:
        params = {"run_id": run_id, "metric_key": key, "max_results": str(HISTORY_PAGE)}
        if token:
            params["page_token"] = token
        try:
            async with session.get(url, params=params) as resp:
                body = await resp.read()
                if resp.status != 200:
                    return str(resp.status)
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError:
            return "conn"
        data = orjson.loads(body) if body else {}
        count += len(data.get("metrics") or ())
        token = data.get("next_page_token") or None
        if not token:
            return count


class BulkUnsupported(Exception):
    """The server does not serve get-history-bulk-interval (or refuses our use of it)."""


async def bulk_counts(
    session: aiohttp.ClientSession, base: str, run_ids: list[str], key: str
) -> dict[str, int] | str:
    """Points of ``key`` per run for up to 100 runs in one read; on a failed read the status,
    and the caller polls again. ``BulkUnsupported`` when the endpoint is not there."""
    url = f"{base}{API}/metrics/get-history-bulk-interval"
    params = [("run_ids", r) for r in run_ids] + [
        ("metric_key", key),
        ("max_results", str(BULK_MAX_RESULTS)),
    ]
    try:
        async with session.get(url, params=params) as resp:
            body = await resp.read()
            status = resp.status
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError:
        return "conn"
    if status in (400, 404, 405, 501) or b"ENDPOINT_NOT_FOUND" in body[:200]:
        raise BulkUnsupported(f"{status}: {body[:200]!r}")
    if status != 200:
        return str(status)
    counts = dict.fromkeys(run_ids, 0)
    for point in (orjson.loads(body) if body else {}).get("metrics") or ():
        run_id = point.get("run_id")
        if run_id in counts:
            counts[run_id] += 1
    return counts


@dataclass
class VisibleOutcome:
    complete: bool
    confirmed_at: float | None  # perf_counter when the last (run, key) was confirmed complete
    first_key_at: float | None  # ... when the first-polled key of every run was complete
    missing: int
    extra: int
    reads: int  # get-history requests (pages not counted separately)
    read_errors: dict[str, int]  # failed reads by status; each is polled again
    via: str = "history"  # which endpoint the check read: history or bulk


Counts = Callable[[list[str], str], Awaitable["dict[str, int] | str"]]


async def _read_back(
    workload: Workload,
    run_ids: list[str],
    acked_steps: list[int],
    options: Options,
    deadline: float,
    counts: Counts,
    group_size: int,
    via: str,
) -> VisibleOutcome:
    """Poll ``counts`` (points of one key for a group of runs, or the failed read's status)
    until every run of every group holds all its acknowledged points, or the deadline passes.
    Per group one key first (while the server catches up only that key is polled), then every
    other key, read once and polled again only while short."""
    names = workload.key_names()
    semaphore = asyncio.Semaphore(options.check_concurrency)
    state = {
        "confirmed_at": 0.0,
        "first_key_at": 0.0,
        "missing": 0,
        "extra": 0,
        "reads": 0,
        "complete": True,
    }
    read_errors: collections.Counter[str] = collections.Counter()
    runs = [r for r in range(workload.runs) if acked_steps[r] > 0]
    groups = [runs[i : i + group_size] for i in range(0, len(runs), group_size)]

    async def settle(group: list[int], key: str, first: bool = False) -> None:
        waiting = {run_ids[r]: acked_steps[r] for r in group}  # one point per key and acked step
        pause = 0.02
        while True:
            async with semaphore:
                got = await counts(list(waiting), key)
                now = time.perf_counter()
            state["reads"] += 1
            if isinstance(got, str):
                read_errors[got] += 1
            else:
                for run_id, count in got.items():
                    if run_id in waiting and count >= waiting[run_id]:
                        state["extra"] += count - waiting.pop(run_id)
                if not waiting:
                    state["confirmed_at"] = max(state["confirmed_at"], now)
                    if first:
                        state["first_key_at"] = max(state["first_key_at"], now)
                    return
            if now >= deadline:
                state["complete"] = False
                short = got if isinstance(got, dict) else {}
                state["missing"] += sum(n - short.get(run_id, 0) for run_id, n in waiting.items())
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_POLL_PAUSE_S)

    async def settle_group(group: list[int]) -> None:
        await settle(group, names[-1], first=True)
        await asyncio.gather(*(settle(group, k) for k in names[:-1]))

    await asyncio.gather(*(settle_group(g) for g in groups))
    return VisibleOutcome(
        complete=bool(state["complete"]),
        confirmed_at=float(state["confirmed_at"]) or None,
        first_key_at=float(state["first_key_at"]) or None,
        missing=int(state["missing"]),
        extra=int(state["extra"]),
        reads=int(state["reads"]),
        read_errors=dict(read_errors),
        via=via,
    )


async def visible_phase(
    session: aiohttp.ClientSession,
    base: str,
    workload: Workload,
    run_ids: list[str],
    acked_steps: list[int],
    options: Options,
    deadline: float,
) -> VisibleOutcome:
    """The read-back: bulk-interval reads where they are exact and served, else get-history."""
    args = (workload, run_ids, acked_steps, options, deadline)
    exact = max(acked_steps, default=0) <= BULK_MAX_RESULTS
    if options.visible_read == "bulk" and not exact:
        raise BenchError(f"--visible-read bulk needs at most {BULK_MAX_RESULTS} steps per run")
    if options.visible_read in ("auto", "bulk") and exact:
        try:
            # One probe first, so that a server without the endpoint is found before dozens of
            # concurrent pollers are started against it.
            first = next(r for r, steps in enumerate(acked_steps) if steps > 0)
            probe = await bulk_counts(session, base, [run_ids[first]], workload.key_names()[-1])
            if probe in REFUSED:
                # Polling would not change the answer: say so now, not at the timeout.
                raise BenchError(f"the read-back was refused: HTTP {probe} (credentials?)")
        except BulkUnsupported as exc:
            if options.visible_read == "bulk":
                raise BenchError(
                    f"the server does not serve get-history-bulk-interval: {exc}"
                ) from exc
        else:
            try:
                return await _read_back(
                    *args,
                    lambda ids, key: bulk_counts(session, base, ids, key),
                    BULK_MAX_RUNS,
                    "bulk",
                )
            except BulkUnsupported as exc:
                raise BenchError(
                    f"get-history-bulk-interval failed during the read-back: {exc}"
                ) from exc

    async def one_run(ids: list[str], key: str) -> dict[str, int] | str:
        got = await history_count(session, base, ids[0], key)
        return got if isinstance(got, str) else {ids[0]: got}

    first = next(r for r, steps in enumerate(acked_steps) if steps > 0)
    read = await history_count(session, base, run_ids[first], workload.key_names()[-1])
    if read in REFUSED:
        raise BenchError(f"the read-back was refused: HTTP {read} (credentials?)")

    return await _read_back(*args, one_run, 1, "history")


def _session(
    limit: int, timeout_s: float, authorization: str | None = None
) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=None)
    headers = {"User-Agent": "metricgate-bench"}
    if authorization:
        headers["Authorization"] = authorization
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        skip_auto_headers=("User-Agent",),
        headers=headers,
    )


async def run_ingest(
    url: str, workload: Workload, concurrency: int, options: Options | None = None
) -> IngestResult:
    """Run one workload at one concurrency against the server at ``url``; see the module docstring."""
    options = options or Options()
    base = url.rstrip("/")
    wall_start = time.perf_counter()
    result = IngestResult(
        workload=workload.name,
        url=base,
        runs=workload.runs,
        steps=workload.steps,
        keys=workload.keys,
        steps_per_request=workload.steps_per_request,
        metrics_per_request=workload.metrics_per_request,
        concurrency=concurrency,
        effective_concurrency=min(concurrency, workload.runs),
        requests_planned=workload.total_requests,
        points_planned=workload.total_points,
        cap_s=options.max_send_s,
        label=options.label,
    )
    name = f"{options.experiment_prefix}-{workload.name}-c{concurrency}-{uuid.uuid4().hex[:10]}"
    try:
        async with _session(
            options.setup_concurrency, options.request_timeout_s, options.authorization
        ) as session:
            run_ids = await setup_runs(
                session, base, workload, name, options.setup_concurrency, options.experiment_id
            )
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise BenchError(f"setup against {base} failed: {type(exc).__name__}: {exc}") from exc
    bodies = encode_bodies(workload, run_ids)
    result.setup_s = time.perf_counter() - wall_start

    progress = None
    if options.progress:
        tag = f"{options.label + ' ' if options.label else ''}{workload.name} c={concurrency}"
        progress = Progress(tag, workload.total_points)
    cpu_before = time.process_time()
    async with _session(concurrency, options.request_timeout_s, options.authorization) as session:
        sent = await send_phase(session, base, workload, bodies, concurrency, options, progress)
    client_cpu_s = time.process_time() - cpu_before
    del bodies
    if progress is not None:
        progress.close("capped" if sent.capped else "sent")

    result.requests_sent = sent.requests_sent
    result.requests_ok = sent.requests_ok
    result.points_accepted = sum(sent.acked_steps) * workload.keys
    result.errors = sent.errors
    result.error_samples = sent.error_samples
    result.capped = sent.capped
    result.send_s = sent.ended - sent.started
    result.accepted_pts_s = rate(result.points_accepted, result.send_s)
    # The load generator shares the machine with the server: how much of a core it used itself.
    result.client_cpu_pct = 100.0 * client_cpu_s / result.send_s if result.send_s else None
    summary = latency_summary_ms(sent.latencies)
    result.p50_ms, result.p95_ms, result.p99_ms, result.max_ms = (
        summary["p50"],
        summary["p95"],
        summary["p99"],
        summary["max"],
    )
    if sent.capped:
        result.notes.append(f"sending stopped at the {options.max_send_s:g} s cap")

    if options.visible and result.points_accepted > 0:
        result.visible_checked = True
        deadline = time.perf_counter() + options.visible_timeout_s
        async with _session(
            options.check_concurrency, options.request_timeout_s, options.authorization
        ) as session:
            seen = await visible_phase(
                session, base, workload, run_ids, sent.acked_steps, options, deadline
            )
        result.visible_complete = seen.complete
        result.missing_points = seen.missing
        result.extra_points = seen.extra
        result.visible_reads = seen.reads
        result.visible_read_errors = seen.read_errors
        result.visible_via = seen.via
        if seen.complete and seen.confirmed_at is not None:
            confirmed = max(seen.confirmed_at, sent.ended)
            result.visible_s = confirmed - sent.started
            result.verify_s = confirmed - sent.ended
            result.visible_pts_s = rate(result.points_accepted, result.visible_s)
        if seen.first_key_at is not None:
            result.first_key_visible_s = max(seen.first_key_at, sent.ended) - sent.started
        elif not seen.complete:
            result.notes.append(
                f"{seen.missing} accepted points still not readable {options.visible_timeout_s:g} s after sending"
            )
    result.wall_s = time.perf_counter() - wall_start
    return result
