#!/usr/bin/env python3
"""Raw COPY baseline of a PostgreSQL server, shaped like the ingest benchmark's workload (b).

Copies the workload's rows with asyncpg ``copy_records_to_table`` (one transaction per batch) into
a table shaped like MLflow's ``metrics`` table and into metricgate's own ``metric_chunks`` table (DDL
from src/metricgate/stores/postgres/migrations), each in a scratch schema that is dropped after,
with 1 and 2 connections; the "+latest" variants also upsert a latest-value table per batch.

    .venv/bin/python benchmarks/bench_copy.py --dsn postgresql://postgres@127.0.0.1:5432/bench
    .venv/bin/python benchmarks/bench_copy.py --dsn ... --quick --connections 1 --no-latest

Quote only figures taken on a durable cluster (fsync on). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from metricgate.bench.copy_baseline import copy_table, run_copy_baselines
from metricgate.bench.workload import PRESETS, QUICK, parse_concurrency


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dsn", required=True, help="PostgreSQL URL of a database to make scratch schemas in"
    )
    parser.add_argument(
        "--workload", default="b", choices=sorted(PRESETS), help="row shape (default b)"
    )
    parser.add_argument("--quick", action="store_true", help="the scaled-down workload")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--keys", type=int)
    parser.add_argument("--connections", default="1,2", help="comma-separated (default 1,2)")
    parser.add_argument(
        "--batch-rows", default=None, help="rows per COPY (default: metrics per request)"
    )
    parser.add_argument("--targets", default="mlflow,metricgate", help="mlflow, metricgate or both")
    parser.add_argument("--no-latest", action="store_true", help="skip the +latest variants")
    args = parser.parse_args(argv)

    workload = (QUICK if args.quick else PRESETS)[args.workload]
    changes = {
        f: getattr(args, f) for f in ("runs", "steps", "keys") if getattr(args, f) is not None
    }
    if changes:
        workload = workload.scaled(**changes)
    batch_rows = (
        parse_concurrency([args.batch_rows]) if args.batch_rows else (workload.metrics_per_request,)
    )
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    print(f"copy: {workload.total_points:,} rows ({workload.describe()})", file=sys.stderr)
    results = asyncio.run(
        run_copy_baselines(
            args.dsn,
            workload,
            targets=targets,
            connections=parse_concurrency([args.connections]),
            batch_rows=batch_rows,
            latest=(False,) if args.no_latest else (False, True),
        )
    )
    print(copy_table(results))
    print(
        json.dumps(
            {"bench": "copy", "workload": workload.name, "results": [r.to_json() for r in results]}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
