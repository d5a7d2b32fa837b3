#!/usr/bin/env python3
"""Ingest load generator against any MLflow-compatible server: the same as ``metricgate bench``.

    .venv/bin/python benchmarks/bench_ingest.py --url http://127.0.0.1:5000 --workload a,b
    .venv/bin/python benchmarks/bench_ingest.py --url http://127.0.0.1:5000 --quick
    .venv/bin/python benchmarks/bench_ingest.py --url ... --workload a -c 256 --max-send-s 60

See ``--help`` and src/metricgate/bench/loadgen.py for what is measured and how.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from metricgate.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
