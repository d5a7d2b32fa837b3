"""``metricgate bench``: the ingest load generator against any MLflow-compatible server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from metricgate.bench.loadgen import BenchError, Options, run_ingest
from metricgate.bench.report import IngestResult, ingest_table, json_line
from metricgate.bench.workload import (
    PRESET_CONCURRENCY,
    PRESETS,
    QUICK,
    QUICK_CONCURRENCY,
    Workload,
    WorkloadError,
    parse_concurrency,
)
from metricgate.cli.auth import InputError, read_stdin_line
from metricgate.cli.auth import login_header as auth_login_header
from metricgate.cli.http import authorization

HELP = "ingest benchmark against any MLflow-compatible server (REST API only)"
DESCRIPTION = """\
Load generator speaking only MLflow's REST API. For each workload and concurrency it creates an
experiment and R runs (not timed), sends runs/log-batch requests (B steps x K keys of one run each,
one request in flight per run, C in flight overall), then polls metrics/get-history until every
accepted point is readable. Prints a table and, last on stdout, one JSON line.

Workloads (--workload, comma-separated or repeated):
  a  200 runs x 100 steps x 10 keys, 1 step/request (10 metrics/request), concurrency 64 and 256
  b  50 runs x 200 steps x 100 keys, 10 steps/request (1000 metrics/request), concurrency 50
--quick scales both down to a few seconds; --runs/--steps/--keys/--steps-per-request override.

Nothing is retried: errors are counted by HTTP status, "conn" (connection failed or dropped) and
"timeout". With fewer runs than the concurrency, only <runs> requests are in flight ("eff").

Against a server with access control on, every request (setup, sending and the read-back) carries
the mlflow client's credentials: $MLFLOW_TRACKING_USERNAME/$MLFLOW_TRACKING_PASSWORD (Basic), else
$MLFLOW_TRACKING_TOKEN (Bearer); or --username with --password-stdin, or --token-stdin. A user who
may not create experiments logs into one they hold EDIT on with --experiment-id.
"""

_T = TypeVar("_T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--workload", action="append", help="a, b or a,b (default: a)")
    parser.add_argument(
        "--quick", action="store_true", help="scaled-down workloads for a smoke run"
    )
    parser.add_argument(
        "--concurrency",
        "-c",
        action="append",
        help="requests in flight, e.g. 64,256 (default: per workload)",
    )
    parser.add_argument("--runs", type=int, help="R: runs (overrides the workload)")
    parser.add_argument("--steps", type=int, help="S: steps per run")
    parser.add_argument("--keys", type=int, help="K: metric keys per step")
    parser.add_argument("--steps-per-request", type=int, help="B: steps per log-batch request")
    parser.add_argument("--seed", type=int, help="seed of the metric values")
    parser.add_argument(
        "--max-send-s", type=float, help="stop sending after this many seconds (reported as CAPPED)"
    )
    parser.add_argument(
        "--request-timeout-s", type=float, default=60.0, help="per-request timeout (default 60)"
    )
    parser.add_argument(
        "--no-visible", action="store_true", help="skip the read-back (visible points/s)"
    )
    parser.add_argument(
        "--visible-timeout-s",
        type=float,
        default=300.0,
        help="give up the read-back this long after sending",
    )
    parser.add_argument(
        "--check-concurrency", type=int, default=16, help="read-back requests in flight (16)"
    )
    parser.add_argument(
        "--visible-read",
        choices=("auto", "bulk", "history"),
        default="auto",
        help="read-back through get-history-bulk-interval (bulk), get-history (history), or bulk where "
        "the server serves it and the count stays exact (auto, default)",
    )
    parser.add_argument("--label", default="", help="a name for the server in the output")
    parser.add_argument(
        "--username",
        help="log in as this user, password from --password-stdin or a prompt (default: "
        "$MLFLOW_TRACKING_USERNAME with $MLFLOW_TRACKING_PASSWORD, else $MLFLOW_TRACKING_TOKEN)",
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the login password from standard input's first line",
    )
    parser.add_argument(
        "--token-stdin",
        action="store_true",
        help="read an API token (sent as Bearer) from standard input's first line",
    )
    parser.add_argument(
        "--experiment-id", help="create the runs in this experiment rather than a new one"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def add_bench_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``bench`` on the ``metricgate`` command's subparsers."""
    parser = subparsers.add_parser(
        "bench",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def plan(args: argparse.Namespace) -> list[tuple[Workload, tuple[int, ...]]]:
    """The (workload, concurrencies) pairs the arguments ask for."""
    names: list[str] = []
    for value in args.workload or ["a"]:
        names += [n.strip().lower() for n in value.split(",") if n.strip()]
    out: list[tuple[Workload, tuple[int, ...]]] = []
    for name in names:
        if name not in PRESETS:
            raise WorkloadError(f"unknown workload {name!r}; choose from {', '.join(PRESETS)}")
        workload = (QUICK if args.quick else PRESETS)[name]
        changes = {
            field: getattr(args, field)
            for field in ("runs", "steps", "keys", "steps_per_request", "seed")
            if getattr(args, field, None) is not None
        }
        if changes:
            workload = workload.scaled(**changes)
        concurrency = (
            parse_concurrency(args.concurrency)
            or (QUICK_CONCURRENCY if args.quick else PRESET_CONCURRENCY)[name]
        )
        out.append((workload, concurrency))
    return out


def login_header(args: argparse.Namespace) -> str | None:
    """The ``Authorization`` value every request carries: ``--token-stdin``'s Bearer, else what
    the auth commands would send (``--username``/``--password-stdin``, else the mlflow client's
    variables), else None."""
    if not args.token_stdin:
        return auth_login_header(args)
    if args.username or args.password_stdin:
        raise InputError("--token-stdin goes without --username and --password-stdin")
    token = read_stdin_line("the API token")
    if not token:
        raise InputError("the API token on standard input is empty")
    return authorization(None, None, token)


def options_from(args: argparse.Namespace, auth_header: str | None = None) -> Options:
    return Options(
        max_send_s=args.max_send_s,
        request_timeout_s=args.request_timeout_s,
        visible=not args.no_visible,
        visible_timeout_s=args.visible_timeout_s,
        check_concurrency=max(1, args.check_concurrency),
        visible_read=args.visible_read,
        progress=not args.no_progress,
        label=args.label,
        authorization=auth_header,
        experiment_id=args.experiment_id,
    )


async def run_plan(
    url: str, pairs: list[tuple[Workload, tuple[int, ...]]], options: Options
) -> list[IngestResult]:
    results = []
    for workload, concurrencies in pairs:
        for concurrency in concurrencies:
            if options.progress:
                print(
                    f"bench: {workload.name}: {workload.describe()}, concurrency {concurrency}",
                    file=sys.stderr,
                )
            results.append(await run_ingest(url, workload, concurrency, options))
    return results


def run_event_loop(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run on uvloop, the event loop the server runs on (a dependency of the package)."""
    import uvloop  # here, not at the top: only ``bench`` needs it among the CLI's light commands

    return uvloop.run(coro)


def run_bench(args: argparse.Namespace) -> int:
    try:
        pairs = plan(args)
        auth_header = login_header(args)
    except (WorkloadError, InputError) as exc:
        print(f"metricgate bench: {exc}", file=sys.stderr)
        return 2
    try:
        results = run_event_loop(run_plan(args.url, pairs, options_from(args, auth_header)))
    except BenchError as exc:
        print(f"metricgate bench: {exc}", file=sys.stderr)
        return 1
    print(ingest_table(results))
    scheme = auth_header.split(" ", 1)[0].lower() if auth_header else None
    print(json_line("ingest", results, url=args.url, auth=scheme))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench_ingest",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run_bench(parser.parse_args(argv))
