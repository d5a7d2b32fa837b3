#!/usr/bin/env python3
"""Ingest with access control on vs off (issue 13's target: auth on >= 0.9x auth off), measured
side by side in one run with the load generator of ``metricgate bench`` (workloads a and b).

What it does:
1. Starts one private, durable PostgreSQL and Redis on free 127.0.0.1 ports in a temp dir
   (compare.py's ``services``), then one ``metricgate serve`` process per variant on the same
   machine, each on its own database and Redis database (so each holds the same data when it is
   measured): ``METRICGATE_AUTH=off`` for ``off``, ``METRICGATE_AUTH=on`` with a generated
   first-admin password for the others.
2. On each auth-on server, as the admin (not timed): creates a non-admin user, an experiment the
   admin owns, grants the user EDIT on it (the user's requests go through the grant check, not the
   admin bypass), and an API token for the user and one for the admin.
3. Variants (``--variants``): ``off`` (no credentials), ``admin-basic``, ``admin-token``,
   ``user-basic``, ``user-token`` (Basic = username and password, token = ``Authorization:
   Bearer``; the credentials go with every request, setup and read-back included). Users log into
   the granted experiment; the others let the load generator create one per figure.
4. For each of ``--rounds`` rounds, each workload and concurrency, runs every variant, the order
   reversed every other round (so drift on a shared machine hits both sides alike), with a
   CHECKPOINT before each measurement.
5. Prints every result, then per figure and variant the medians (accepted and visible points/s,
   p50 and p99) and their ratio to ``off``, the lowest throughput ratio against the 0.9 target,
   and last one JSON line. Exit 1 when a measurement failed, an answer was not 200, or an
   accepted point was not read back.

    .venv/bin/python benchmarks/bench_auth.py --quick                    # smoke run, ~1-2 minutes
    .venv/bin/python benchmarks/bench_auth.py --metricgate-ref HEAD      # workloads a and b, 3 rounds
    .venv/bin/python benchmarks/bench_auth.py --variants off,user-token --workloads b --rounds 5

Everything binds 127.0.0.1 only, and every process it started is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import platform
import secrets
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare
from compare import REPO, Server
from metricgate.bench.loadgen import BenchError, Options, run_ingest
from metricgate.bench.report import IngestResult, ingest_table
from metricgate.bench.side_by_side import Measured, side_by_side_table, summarize, worst_ratio
from metricgate.bench.workload import (
    PRESET_CONCURRENCY,
    PRESETS,
    QUICK,
    QUICK_CONCURRENCY,
    Workload,
    parse_concurrency,
)
from metricgate.cli.bench import run_event_loop
from scripts import devservices

API = "/api/2.0/mlflow"
ADMIN_NAME = "bench-admin"
USER_NAME = "bench-user"
BASELINE = "off"
TARGET = 0.9


@dataclass(frozen=True)
class Variant:
    name: str
    auth: bool  # against the auth-on server
    who: str = ""  # admin or user
    scheme: str = ""  # basic or token


VARIANTS = {
    v.name: v
    for v in (
        Variant("off", auth=False),
        Variant("admin-basic", auth=True, who="admin", scheme="basic"),
        Variant("admin-token", auth=True, who="admin", scheme="token"),
        Variant("user-basic", auth=True, who="user", scheme="basic"),
        Variant("user-token", auth=True, who="user", scheme="token"),
    )
}
DEFAULT_VARIANTS = ("off", "admin-basic", "user-basic", "user-token")


def say(message: str) -> None:
    print(f"bench_auth: {message}", file=sys.stderr, flush=True)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def bearer(token: str) -> str:
    return f"Bearer {token}"


# ---------------------------------------------------------------- servers


def export_src(ref: str) -> tuple[Path, dict[str, object]]:
    """A clean copy of ``ref``'s ``src/`` (uncommitted edits in a shared tree are not measured)."""
    commit = compare.run_checked(
        ["git", "-C", str(REPO), "rev-parse", "--verify", ref + "^{commit}"]
    ).strip()
    exported = Path(tempfile.mkdtemp(prefix="metricgate-src-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "src"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(exported, filter="data")
    return exported, {"commit": commit, "ref": ref, "dirty": False}


def start_server(
    name: str,
    tmp: Path,
    pg: devservices.PostgresInstance,
    redis_url: str,
    src: Path | None,
    extra_env: dict[str, str],
    serve_args: list[str],
) -> Server:
    database = f"bench_auth_{name}"
    devservices.create_database(pg, database)
    env = compare._base_env()
    env.update(
        METRICGATE_DATABASE_URL=pg.url(database),
        METRICGATE_REDIS_URL=redis_url,
        METRICGATE_ARTIFACTS_URI="file://" + str(tmp / f"artifacts-{name}"),
        METRICGATE_LOG_LEVEL="WARNING",
        **extra_env,
    )
    if src is not None:
        env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    compare.run_checked(
        [sys.executable, "-m", "metricgate", "migrate"], env=env, what="metricgate migrate"
    )
    port = devservices.find_free_port()
    cmd = [sys.executable, "-m", "metricgate", "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp / f"metricgate-{name}.log"
    return Server(
        f"metricgate-auth-{name}",
        compare.spawn(cmd + serve_args, env, log),
        f"http://127.0.0.1:{port}",
        log,
    )


def call(
    url: str, method: str, path: str, body: dict[str, Any] | None, header: str | None
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if header:
        request.add_header("Authorization", header)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return int(response.status), json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else {}
        except ValueError:
            return exc.code, {"body": raw[:300].decode("utf-8", "replace")}


def call_ok(
    url: str, method: str, path: str, body: dict[str, Any] | None, header: str | None
) -> dict[str, Any]:
    status, reply = call(url, method, path, body, header)
    if status != 200:
        raise BenchError(f"{method} {path} -> HTTP {status}: {str(reply)[:300]}")
    return reply


def wait_ready(
    server: Server, header: str | None, timeout_s: float = compare.START_TIMEOUT_S
) -> None:
    """Until the MLflow API answers 200 with these credentials."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError):
            status, _ = call(
                server.url, "GET", f"{API}/experiments/get?experiment_id=0", None, header
            )
            if status == 200:
                return
        if server.proc.poll() is not None or time.monotonic() > deadline:
            what = (
                f"exited with {server.proc.returncode}"
                if server.proc.poll() is not None
                else "did not answer"
            )
            tail = server.log.read_text(errors="replace")[-3000:]
            raise BenchError(f"{server.name} {what}:\n{tail}")
        time.sleep(0.25)


@dataclass
class Access:
    """The auth-on server's credentials and the user's experiment."""

    admin_basic: str
    admin_token: str
    user_basic: str
    user_token: str
    user_experiment: str

    def header(self, variant: Variant) -> str:
        return {
            ("admin", "basic"): self.admin_basic,
            ("admin", "token"): self.admin_token,
            ("user", "basic"): self.user_basic,
            ("user", "token"): self.user_token,
        }[(variant.who, variant.scheme)]


def set_up_access(url: str, admin_password: str) -> Access:
    admin = basic(ADMIN_NAME, admin_password)
    user_password = secrets.token_urlsafe(18)
    user = basic(USER_NAME, user_password)
    call_ok(
        url,
        "POST",
        f"{API}/users/create",
        {"username": USER_NAME, "password": user_password},
        admin,
    )
    experiment = str(
        call_ok(url, "POST", f"{API}/experiments/create", {"name": "bench-auth-user"}, admin)[
            "experiment_id"
        ]
    )
    grant = {
        "username": USER_NAME,
        "resource_type": "experiment",
        "resource_id": experiment,
        "permission": "EDIT",
    }
    call_ok(url, "POST", "/api/3.0/mlflow/users/permissions/grant", grant, admin)
    me = call_ok(url, "GET", f"{API}/users/get?username={USER_NAME}", None, user)["user"]
    if me.get("is_admin"):
        raise BenchError(f"{USER_NAME} must not be an admin: {me}")
    tokens = "/api/2.0/metricgate/tokens/create"
    user_token = call_ok(url, "POST", tokens, {"name": "bench"}, user)["secret"]
    admin_token = call_ok(url, "POST", tokens, {"name": "bench"}, admin)["secret"]
    return Access(admin, bearer(admin_token), user, bearer(user_token), experiment)


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


def group_cpu_s(pgid: int) -> float | None:
    """CPU seconds (user + system) used so far by the live processes of one process group: the
    server and any workers it forked (compare.spawn puts each server in its own group). None where
    /proc cannot tell (not Linux)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("ascii", "replace")
        except OSError:
            continue  # exited meanwhile, or not ours to read
        # The command name (field 2) may hold spaces and parentheses: split after its last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5, pgrp
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15, utime and stime
    return total / ticks


def check_alive(*servers: Server) -> None:
    for server in servers:
        if server.proc.poll() is not None:
            raise BenchError(f"{server.name} exited with {server.proc.returncode} during the run")


def problems_of(result: IngestResult) -> list[str]:
    out = []
    if result.error_count:
        out.append(f"errors {result.errors} (first: {result.error_samples})")
    if result.visible_checked and not result.visible_complete:
        out.append(f"{result.missing_points} accepted points not read back")
    if result.capped:
        out.append("capped")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", default="a,b", help="comma-separated: a, b")
    parser.add_argument("--concurrency-a", help="concurrencies for workload a (default 64,256)")
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated, from: {', '.join(VARIANTS)} (default {','.join(DEFAULT_VARIANTS)})",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds, order alternating (3)")
    parser.add_argument("--quick", action="store_true", help="scaled-down workloads: a smoke run")
    parser.add_argument(
        "--cap-s", type=float, help="stop sending after this many seconds per measurement (none)"
    )
    parser.add_argument(
        "--visible-timeout-s",
        type=float,
        default=300.0,
        help="give up the read-back after this long",
    )
    parser.add_argument(
        "--metricgate-ref",
        help="run metricgate as committed at this git ref (e.g. HEAD): a clean copy of its src/",
    )
    parser.add_argument(
        "--metricgate-args", default="", help="extra `metricgate serve` flags, e.g. '--workers 2'"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server logs)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json-out", type=Path, help="also write the final JSON to this file")
    args = parser.parse_args(argv)

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for name in variants:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    if BASELINE not in variants:
        parser.error(f"--variants must include {BASELINE!r}, the baseline of every ratio")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    pairs = plan(args)

    src: Path | None = None
    exported: Path | None = None
    described: dict[str, object] = compare.git_describe(REPO / "src")
    if args.metricgate_ref:
        exported, described = export_src(args.metricgate_ref)
        src = exported / "src"

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
        "metricgate": described,
        "quick": args.quick,
        "rounds": args.rounds,
        "variants": variants,
        "cap_s": args.cap_s,
    }
    measured: list[Measured] = []
    failure = ""
    started = time.time()
    try:
        # A server per variant, each with its pools (DB_POOL_MAX 16 + DB_READ_POOL_MAX 8 and
        # its flusher's): PostgreSQL's default 100 connections ran out with five.
        with compare.services(args.keep, ["max_connections=400"]) as (tmp, pg, redis):
            info["postgres"] = asyncio.run(compare.pg_version(pg.url()))
            say(str(info["postgres"]))
            serve_args = shlex.split(args.metricgate_args)
            redis_base = redis.url.rsplit("/", 1)[0]
            # One server, database and Redis database per variant: each then holds the same data
            # when it is measured. With one auth-on server for every auth variant, that server
            # held three times the data of the auth-off one by the last round, and its flushing
            # and read-back costs grew with it (CPU per point rose with each variant measured on
            # it in a round, whatever its auth) -- a bias against auth on, not a cost of it.
            servers: dict[str, Server] = {}
            accesses: dict[str, Access] = {}
            admin_password = secrets.token_urlsafe(18)
            for index, name in enumerate(variants):
                extra = {}
                if VARIANTS[name].auth:
                    extra = {
                        "METRICGATE_AUTH": "on",
                        "METRICGATE_AUTH_ADMIN_USERNAME": ADMIN_NAME,
                        "METRICGATE_AUTH_ADMIN_PASSWORD": admin_password,
                    }
                db_name = name.replace("-", "_")
                servers[name] = start_server(
                    db_name, tmp, pg, f"{redis_base}/{index}", src, extra, serve_args
                )
            for name, server in servers.items():
                if not VARIANTS[name].auth:
                    wait_ready(server, None)
                    continue
                wait_ready(server, basic(ADMIN_NAME, admin_password))
                accesses[name] = set_up_access(server.url, admin_password)
                say(
                    f"{name} at {server.url} (auth on): {USER_NAME} holds EDIT on experiment "
                    f"{accesses[name].user_experiment}"
                )
            try:
                for round_index in range(args.rounds):
                    order = variants if round_index % 2 == 0 else variants[::-1]
                    for workload, concurrencies in pairs:
                        for concurrency in concurrencies:
                            for name in order:
                                variant = VARIANTS[name]
                                server = servers[name]
                                access = accesses.get(name)
                                options = Options(
                                    max_send_s=args.cap_s,
                                    visible_timeout_s=args.visible_timeout_s,
                                    progress=not args.no_progress,
                                    label=name,
                                    authorization=None
                                    if access is None
                                    else access.header(variant),
                                    experiment_id=access.user_experiment
                                    if access is not None and variant.who == "user"
                                    else None,
                                )
                                asyncio.run(compare.checkpoint(pg.url()))
                                say(
                                    f"round {round_index + 1}/{args.rounds}: {name}: "
                                    f"{workload.name} c={concurrency}"
                                )
                                cpu_before = group_cpu_s(server.proc.pid)
                                result = run_event_loop(
                                    run_ingest(server.url, workload, concurrency, options)
                                )
                                cpu_after = group_cpu_s(server.proc.pid)
                                cpu = (
                                    None
                                    if cpu_before is None or cpu_after is None
                                    else cpu_after - cpu_before
                                )
                                measured.append(Measured(name, round_index + 1, result, cpu))
                                check_alive(*servers.values())
            except BenchError as exc:
                failure = str(exc)
                say(f"FAILED: {exc}")
            finally:
                for server in servers.values():
                    compare._stop(server.proc)
                    with contextlib.suppress(ValueError):
                        compare._STARTED.remove(server.proc)
    except (BenchError, OSError, devservices.DevServiceError) as exc:
        failure = failure or str(exc)
        say(f"FAILED: {exc}")
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        compare.stop_all()
        return 130
    finally:
        compare.stop_all()
        if exported is not None:
            shutil.rmtree(exported, ignore_errors=True)

    info["elapsed_s"] = round(time.time() - started, 1)
    results = [m.result for m in measured]
    rows = summarize(measured, variants, BASELINE)
    worst = {
        "accepted": worst_ratio(rows, BASELINE, "accepted_ratio"),
        "visible": worst_ratio(rows, BASELINE, "visible_ratio"),
    }
    problems = [
        f"{m.variant} round {m.round} {m.figure}: {p}"
        for m in measured
        for p in problems_of(m.result)
    ]
    print()
    print(
        f"metricgate {info['metricgate']}  |  {info.get('postgres', '')}  |  {os.cpu_count()} CPUs"
    )
    if results:
        print()
        print(ingest_table(results))
        print()
        print(side_by_side_table(rows))
        print()
        for what, value in worst.items():
            verdict = "-" if value is None else ("met" if value >= TARGET else "NOT met")
            shown = "-" if value is None else f"{value:.2f}x"
            print(f"lowest {what} pts/s, auth on / off: {shown} (target >= {TARGET}x: {verdict})")
    for line in problems:
        print(f"PROBLEM {line}")
    if failure:
        print(f"\nFAILED: {failure}")
    payload = {
        "bench": "auth",
        **info,
        "baseline": BASELINE,
        "target": TARGET,
        "worst_ratio": worst,
        "failure": failure or None,
        "problems": problems,
        "summary": [r.to_json() for r in rows],
        "results": [
            {
                "variant": m.variant,
                "round": m.round,
                "server_cpu_s": m.server_cpu_s,
                **m.result.to_json(),
            }
            for m in measured
        ],
    }
    compare.print_json_line(payload, args.json_out)
    return 1 if failure or problems else 0


if __name__ == "__main__":
    sys.exit(main())
