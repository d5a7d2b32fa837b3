#!/usr/bin/env python3
"""One comparison run on one PostgreSQL: metricgate vs stock ``mlflow server`` vs FastTrackML vs the
raw COPY limit of that PostgreSQL, on the same workloads, one server at a time.

What it does:
1. Starts a private, durable PostgreSQL (fsync on) and Redis on free ports on 127.0.0.1, in a temp
   dir (``scripts/devservices.py``), with one database per contender.
2. Installs stock mlflow (``mlflow==VERSION psycopg2-binary``) and ``fasttrackml`` into their own
   venvs under the cache dir (once; later runs reuse them).
3. For each contender: starts its server on a free 127.0.0.1 port, runs every workload with the
   load generator (``metricgate.bench.loadgen``), stops it, and CHECKPOINTs PostgreSQL. Sending
   stops at ``--cap-s`` seconds per workload (stock MLflow is slow); a capped result is labelled.
4. Runs the raw COPY baselines (``metricgate.bench.copy_baseline``) in their own database.
5. Prints every result, a side-by-side table with the ratios, and last one JSON line.

    .venv/bin/python benchmarks/compare.py --quick                  # smoke run, a few minutes
    .venv/bin/python benchmarks/compare.py                          # workloads a and b
    .venv/bin/python benchmarks/compare.py --contenders metricgate,fasttrackml --workloads b
    .venv/bin/python benchmarks/compare.py --metricgate-src /path/to/checkout/src  # another tree

Everything binds 127.0.0.1 only, and every process it started is stopped on exit (Ctrl-C too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# src/ for metricgate, the repository root for scripts/devservices.py (the dev-stack tool).
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from metricgate.bench.compare_report import summary_rows, summary_table  # noqa: E402
from metricgate.bench.copy_baseline import copy_table, run_copy_baselines  # noqa: E402
from metricgate.bench.loadgen import BenchError, Options, run_ingest  # noqa: E402
from metricgate.bench.report import IngestResult, ingest_table  # noqa: E402
from metricgate.bench.workload import (  # noqa: E402
    PRESET_CONCURRENCY,
    PRESETS,
    QUICK,
    QUICK_CONCURRENCY,
    Workload,
    parse_concurrency,
)
from metricgate.cli.bench import run_event_loop  # noqa: E402
from scripts import devservices  # noqa: E402

# metricgate: plain `metricgate serve` (one process, the flusher embedded in it).
# metricgate-split: `serve --no-flusher` plus one `metricgate flush` process, the scale-out layout
# (docs/design-ingest.md): HTTP and flushing no longer share one Python process and its GIL.
CONTENDERS = ("metricgate", "metricgate-split", "mlflow", "fasttrackml")
DEFAULT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "metricgate-bench"
)
START_TIMEOUT_S = 180.0


def say(message: str) -> None:
    print(f"compare: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)  # e.g. flusher processes


_STARTED: list[subprocess.Popen[bytes]] = []


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM the process group we created for it (the server and its workers), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # Workers of a server whose parent already exited still belong to its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def stop_all() -> None:
    while _STARTED:
        _stop(_STARTED.pop())


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    say(f"$ {shlex.join(cmd)}  (log {log})")
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _STARTED.append(proc)
    return proc


def http_status(url: str, timeout_s: float = 3.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def wait_ready(server: Server, timeout_s: float = START_TIMEOUT_S) -> None:
    """Until the MLflow API answers (experiment 0 exists on every MLflow-compatible server)."""
    probe = f"{server.url}/api/2.0/mlflow/experiments/get?experiment_id=0"
    deadline = time.monotonic() + timeout_s
    while http_status(probe) != 200:
        if server.proc.poll() is not None or time.monotonic() > deadline:
            what = (
                f"exited with {server.proc.returncode}"
                if server.proc.poll() is not None
                else "did not answer"
            )
            tail = server.log.read_text(errors="replace")[-3000:]
            raise BenchError(f"{server.name} {what} on {probe}:\n{tail}")
        time.sleep(0.25)


def run_checked(cmd: list[str], env: dict[str, str] | None = None, what: str = "") -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(
            f"{what or shlex.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        )
    return done.stdout


def ensure_venv(path: Path, packages: list[str]) -> Path:
    """A venv at ``path`` with ``packages`` installed (reused when its marker matches)."""
    marker = path / ".metricgate-bench"
    wanted = " ".join(packages)
    if (
        marker.exists()
        and marker.read_text().strip() == wanted
        and (path / "bin" / "python").exists()
    ):
        return path
    say(f"installing {wanted} into {path} (once; a few minutes)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path / "bin" / "python").exists():
        base = getattr(sys, "_base_executable", None) or sys.executable
        run_checked([base, "-m", "venv", str(path)], what=f"creating {path}")
    run_checked(
        [str(path / "bin" / "python"), "-m", "pip", "install", "-q", *packages],
        what=f"pip install {wanted}",
    )
    marker.write_text(wanted + "\n")
    return path


def git_describe(src: Path) -> dict[str, object]:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(src), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


# ---------------------------------------------------------------- contenders


@dataclass
class Context:
    tmp: Path
    pg: devservices.PostgresInstance
    redis: devservices.RedisInstance
    cache: Path
    mlflow_version: str
    metricgate_src: Path | None
    metricgate_args: list[str]
    mlflow_workers: int
    info: dict[str, object] = field(default_factory=dict)
    # Extra METRICGATE_* settings for metricgate's processes (bench_read_isolation's --metricgate-env).
    metricgate_env: dict[str, str] = field(default_factory=dict)


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METRICGATE_", "MLFLOW_"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    return env


def _metricgate_env(ctx: Context, database: str) -> dict[str, str]:
    devservices.create_database(ctx.pg, database)
    env = _base_env()
    env.update(
        METRICGATE_DATABASE_URL=ctx.pg.url(database),
        METRICGATE_REDIS_URL=ctx.redis.url,
        METRICGATE_ARTIFACTS_URI="file://" + str(ctx.tmp / f"artifacts-{database}"),
        METRICGATE_LOG_LEVEL="WARNING",
    )
    env.update(ctx.metricgate_env)
    if ctx.metricgate_src is not None:
        env["PYTHONPATH"] = str(ctx.metricgate_src) + os.pathsep + env.get("PYTHONPATH", "")
    run_checked([sys.executable, "-m", "metricgate", "migrate"], env=env, what="metricgate migrate")
    return env


def start_metricgate(ctx: Context) -> Server:
    env = _metricgate_env(ctx, "bench_metricgate")
    port = devservices.find_free_port()
    cmd = [sys.executable, "-m", "metricgate", "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = ctx.tmp / "metricgate.log"
    return Server(
        "metricgate", spawn(cmd + ctx.metricgate_args, env, log), f"http://127.0.0.1:{port}", log
    )


def start_metricgate_split(ctx: Context) -> Server:
    # Its own database and a Redis emptied of the previous contender's streams: a clean start.
    env = _metricgate_env(ctx, "bench_metricgate_split")
    import redis

    with redis.Redis.from_url(ctx.redis.url) as client:
        client.flushall()
    port = devservices.find_free_port()
    log = ctx.tmp / "metricgate-split.log"
    flusher = spawn(
        [sys.executable, "-m", "metricgate", "flush"], env, ctx.tmp / "metricgate-split-flusher.log"
    )
    cmd = [
        sys.executable,
        "-m",
        "metricgate",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-flusher",
    ]
    server = spawn(cmd + ctx.metricgate_args, env, log)
    return Server("metricgate-split", server, f"http://127.0.0.1:{port}", log, helpers=[flusher])


def start_mlflow(ctx: Context) -> Server:
    venv = ensure_venv(
        ctx.cache / "mlflow-venv", [f"mlflow=={ctx.mlflow_version}", "psycopg2-binary"]
    )
    devservices.create_database(ctx.pg, "bench_mlflow")
    port = devservices.find_free_port()
    artifacts = ctx.tmp / "artifacts-mlflow"
    artifacts.mkdir(exist_ok=True)
    cmd = [
        str(venv / "bin" / "mlflow"),
        "server",
        "--backend-store-uri",
        # psycopg2 explicitly: SQLAlchemy 2.1 defaults postgresql:// to psycopg 3, not installed here.
        ctx.pg.url("bench_mlflow").replace("postgresql://", "postgresql+psycopg2://", 1),
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(ctx.mlflow_workers),
    ]
    log = ctx.tmp / "mlflow.log"
    return Server("mlflow", spawn(cmd, _base_env(), log), f"http://127.0.0.1:{port}", log)


def start_fasttrackml(ctx: Context) -> Server:
    venv = ensure_venv(ctx.cache / "fasttrackml-venv", ["fasttrackml"])
    devservices.create_database(ctx.pg, "bench_fasttrackml")
    port = devservices.find_free_port()
    artifacts = ctx.tmp / "artifacts-fasttrackml"
    artifacts.mkdir(exist_ok=True)
    database = (
        ctx.pg.url("bench_fasttrackml").replace("postgresql://", "postgres://", 1)
        + "?sslmode=disable"
    )
    cmd = [
        str(venv / "bin" / "fml"),
        "server",
        "--listen-address",
        f"127.0.0.1:{port}",
        "--database-uri",
        database,
        "--default-artifact-root",
        str(artifacts),
        "--log-level",
        "warn",
    ]
    log = ctx.tmp / "fasttrackml.log"
    return Server("fasttrackml", spawn(cmd, _base_env(), log), f"http://127.0.0.1:{port}", log)


STARTERS = {
    "metricgate": start_metricgate,
    "metricgate-split": start_metricgate_split,
    "mlflow": start_mlflow,
    "fasttrackml": start_fasttrackml,
}


def version_of(name: str, ctx: Context) -> str:
    with contextlib.suppress(Exception):
        if name == "mlflow":
            return run_checked(
                [str(ctx.cache / "mlflow-venv" / "bin" / "mlflow"), "--version"]
            ).strip()
        if name == "fasttrackml":
            return run_checked(
                [str(ctx.cache / "fasttrackml-venv" / "bin" / "fml"), "--version"]
            ).strip()
        if name.startswith("metricgate"):
            return json.dumps(ctx.info.get("metricgate"))
    return "?"


async def checkpoint(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def pg_version(dsn: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        settings = await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('fsync','synchronous_commit','full_page_writes','shared_buffers','max_wal_size')"
        )
        version = await conn.fetchval("SHOW server_version")
        return f"PostgreSQL {version} " + " ".join(f"{r['name']}={r['setting']}" for r in settings)
    finally:
        await conn.close()


# ---------------------------------------------------------------- main


def plan(args: argparse.Namespace) -> list[tuple[Workload, tuple[int, ...]]]:
    out = []
    for name in [w.strip() for w in args.workloads.split(",") if w.strip()]:
        if name not in PRESETS:
            raise SystemExit(f"unknown workload {name!r}; choose from {', '.join(PRESETS)}")
        workload = (QUICK if args.quick else PRESETS)[name]
        concurrency = (QUICK_CONCURRENCY if args.quick else PRESET_CONCURRENCY)[name]
        if name == "a" and args.concurrency_a:
            concurrency = parse_concurrency([args.concurrency_a])
        out.append((workload, concurrency))
    return out


@contextlib.contextmanager
def services(
    keep: bool, pg_settings: Sequence[str] = ()
) -> Iterator[tuple[Path, devservices.PostgresInstance, devservices.RedisInstance]]:
    devservices.ensure_postgres(install=False)
    devservices.ensure_redis(install=False)
    tmp = Path(tempfile.mkdtemp(prefix="metricgate-compare-"))
    tmp.chmod(0o755)  # PostgreSQL runs as its own OS user when we are root
    pg_dir, redis_dir = tmp / "postgres", tmp / "redis"
    try:
        say(f"starting a durable PostgreSQL and Redis under {tmp}")
        pg = devservices.start_postgres(pg_dir, durable=True, settings=pg_settings)
        redis = devservices.start_redis(redis_dir, durable=True)
        yield tmp, pg, redis
    finally:
        with contextlib.suppress(Exception):
            devservices.stop_redis(redis_dir)
        with contextlib.suppress(Exception):
            devservices.stop_postgres(pg_dir)
        if keep:
            say(f"kept {tmp}")
        else:
            devservices.remove_dir(pg_dir)
            devservices.remove_dir(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma-separated, from: " + ", ".join(CONTENDERS),
    )
    parser.add_argument("--workloads", default="a,b", help="comma-separated: a, b")
    parser.add_argument("--concurrency-a", help="concurrencies for workload a (default 64,256)")
    parser.add_argument(
        "--quick", action="store_true", help="scaled-down workloads and COPY rows: a smoke run"
    )
    parser.add_argument(
        "--cap-s",
        type=float,
        help="stop sending after this many seconds per workload (default 60, quick 20)",
    )
    parser.add_argument(
        "--visible-timeout-s",
        type=float,
        default=300.0,
        help="give up the read-back after this long",
    )
    parser.add_argument("--no-copy", action="store_true", help="skip the raw COPY baselines")
    parser.add_argument(
        "--copy-connections", default="1,2", help="connections for the COPY baseline (1,2)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"venvs for the contenders ({DEFAULT_CACHE})",
    )
    parser.add_argument("--mlflow-version", default="3.17.2")
    parser.add_argument(
        "--mlflow-workers", type=int, default=4, help="stock mlflow server --workers (4)"
    )
    parser.add_argument(
        "--metricgate-src", type=Path, help="run metricgate from this src/ dir (PYTHONPATH)"
    )
    parser.add_argument(
        "--metricgate-ref",
        help="run metricgate as committed at this git ref (e.g. HEAD): a clean copy of its src/, so "
        "uncommitted edits in the work tree are not measured",
    )
    parser.add_argument(
        "--metricgate-args", default="", help="extra `metricgate serve` flags, e.g. '--workers 2'"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (server logs, PostgreSQL data)"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json-out", type=Path, help="also write the final JSON to this file")
    args = parser.parse_args(argv)

    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    for name in contenders:
        if name not in CONTENDERS:
            parser.error(f"unknown contender {name!r}")
    pairs = plan(args)
    cap_s = args.cap_s if args.cap_s is not None else (20.0 if args.quick else 60.0)
    metricgate_src = args.metricgate_src.resolve() if args.metricgate_src else None
    described = git_describe(metricgate_src or REPO / "src")
    exported: Path | None = None
    if args.metricgate_ref:
        commit = run_checked(
            ["git", "-C", str(REPO), "rev-parse", "--verify", args.metricgate_ref + "^{commit}"]
        ).strip()
        exported = Path(tempfile.mkdtemp(prefix="metricgate-src-"))
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "src"], capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(exported, filter="data")
        metricgate_src = exported / "src"
        described = {"commit": commit, "ref": args.metricgate_ref, "dirty": False}

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    results: list[IngestResult] = []
    copies = []
    failures: dict[str, str] = {}
    info: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "metricgate": described,
        "cap_s": cap_s,
        "quick": args.quick,
    }
    started = time.time()
    try:
        with services(args.keep) as (tmp, pg, redis):
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
            )
            info["postgres"] = asyncio.run(pg_version(pg.url()))
            say(str(info["postgres"]))
            versions: dict[str, str] = {}
            for name in contenders:
                server = None
                try:
                    server = STARTERS[name](ctx)
                    wait_ready(server)
                    versions[name] = version_of(name, ctx)
                    say(f"{name} is up at {server.url} ({versions[name]})")
                    options = Options(
                        max_send_s=cap_s,
                        visible_timeout_s=args.visible_timeout_s,
                        progress=not args.no_progress,
                        label=name,
                    )
                    for workload, concurrencies in pairs:
                        for concurrency in concurrencies:
                            say(
                                f"{name}: {workload.name} ({workload.describe()}), concurrency {concurrency}"
                            )
                            results.append(
                                run_event_loop(
                                    run_ingest(server.url, workload, concurrency, options)
                                )
                            )
                            for proc in (server.proc, *server.helpers):
                                if proc.poll() is not None:
                                    raise BenchError(
                                        f"{name}: {proc.args} exited with {proc.returncode} during the run"
                                    )
                except (BenchError, OSError, devservices.DevServiceError) as exc:
                    failures[name] = str(exc)
                    say(f"{name} FAILED: {exc}")
                finally:
                    if server is not None:
                        for proc in (server.proc, *server.helpers):
                            _stop(proc)
                            with contextlib.suppress(ValueError):
                                _STARTED.remove(proc)
                    asyncio.run(checkpoint(pg.url()))
            info["versions"] = versions
            if not args.no_copy and any(w.name.startswith("b") for w, _ in pairs):
                workload = next(w for w, _ in pairs if w.name.startswith("b"))
                devservices.create_database(pg, "bench_copy")
                say(
                    f"raw COPY baselines: {workload.total_points:,} rows shaped like {workload.name}"
                )
                copies = asyncio.run(
                    run_copy_baselines(
                        pg.url("bench_copy"),
                        workload,
                        connections=parse_concurrency([args.copy_connections]),
                        batch_rows=(workload.metrics_per_request,),
                        progress=not args.no_progress,
                    )
                )
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        stop_all()
        return 130
    finally:
        stop_all()
        if exported is not None:
            shutil.rmtree(exported, ignore_errors=True)

    info["elapsed_s"] = round(time.time() - started, 1)
    print()
    print(
        f"metricgate {info['metricgate']}  |  {info.get('postgres', '')}  |  {os.cpu_count()} CPUs"
    )
    if results:
        print()
        print(ingest_table(results))
    if copies:
        print()
        print(copy_table(copies))
    rows = summary_rows(results, copies, contenders)
    if rows:
        print()
        print(summary_table(rows, contenders))
    for name, error in failures.items():
        print(f"\n{name} FAILED: {error}")
    payload = {
        "bench": "compare",
        **info,
        "contenders": contenders,
        "failures": failures,
        "results": [r.to_json() for r in results],
        "copy": [c.to_json() for c in copies],
        "summary": rows,
    }
    print_json_line(payload, args.json_out)
    return 1 if failures else 0


def print_json_line(payload: dict[str, object], json_out: Path | None) -> None:
    """The last line on stdout: every figure as one JSON object (also written to ``json_out``)."""
    line = json.dumps(payload, separators=(",", ":"), default=str)
    if json_out:
        json_out.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    sys.exit(main())
