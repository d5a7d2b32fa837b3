"""Table and JSON formatting of benchmark results, the progress line, the COPY DDL extraction and
the comparison summary."""

from __future__ import annotations

import io
import json

from metricgate.bench.compare_report import summary_rows, summary_table
from metricgate.bench.copy_baseline import CopyResult, metricgate_ddl, statements_for_table
from metricgate.bench.progress import Progress, render_bar
from metricgate.bench.report import IngestResult, fmt_errors, format_table, ingest_table, json_line


def _result(label: str = "", **changes: object) -> IngestResult:
    result = IngestResult(
        workload="a",
        url="http://127.0.0.1:1",
        runs=200,
        steps=100,
        keys=10,
        steps_per_request=1,
        metrics_per_request=10,
        concurrency=256,
        effective_concurrency=200,
        requests_planned=20000,
        points_planned=200000,
        requests_sent=20000,
        requests_ok=20000,
        points_accepted=200000,
        send_s=8.0,
        accepted_pts_s=25000.0,
        p50_ms=10.04,
        p95_ms=55.5,
        p99_ms=1234.0,
        errors={},
        visible_checked=True,
        visible_complete=True,
        visible_pts_s=20000.0,
        wall_s=12.34,
        label=label,
    )
    for key, value in changes.items():
        setattr(result, key, value)
    return result


def test_format_table_aligns_columns() -> None:
    text = format_table(["name", "n"], [["x", "1"], ["longer", "1,000"]])
    lines = text.splitlines()
    assert lines[0] == "name        n"
    assert lines[1] == "------  -----"
    assert lines[2] == "x           1"
    assert lines[3] == "longer  1,000"


def test_fmt_errors() -> None:
    assert fmt_errors({}) == "0"
    assert fmt_errors({"conn": 2, "503": 10, "429": 1, "timeout": 0}) == "429:1 503:10 conn:2"


def test_ingest_table_and_json_line() -> None:
    capped = _result(
        label="mlflow",
        capped=True,
        requests_sent=500,
        points_accepted=4900,
        errors={"400": 10},
        visible_complete=False,
        missing_points=7,
    )
    text = ingest_table([_result(), capped])
    header, _, row, row2, *notes = text.splitlines()
    assert header.split()[:4] == ["workload", "conc", "requests", "points"]
    assert (
        "256 (eff 200)" in row
        and "25,000" in row
        and "10.0" in row
        and "1,234" in row
        and "20,000" in row
    )
    assert "a [mlflow]" in row2 and "500/20,000" in row2 and "CAPPED" in row2 and "400:10" in row2
    assert "INCOMPLETE (7 missing)" in row2
    assert any("CAPPED" in n for n in notes) and any("eff" in n for n in notes)
    line = json_line("ingest", [_result()], url="u")
    assert "\n" not in line
    data = json.loads(line)
    assert data["bench"] == "ingest" and data["url"] == "u"
    assert (
        data["results"][0]["accepted_pts_s"] == 25000.0 and data["results"][0]["error_count"] == 0
    )


def test_progress_tty_and_log_modes() -> None:
    assert render_bar(5, 10, width=10) == "[#####-----]  50%"
    assert render_bar(20, 10, width=4) == "[####] 100%"

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = Progress("x", 100, stream=tty, tty_interval_s=0.0)
    bar.update(50)
    bar.close()
    assert tty.getvalue().startswith("\r\x1b[2Kx [") and tty.getvalue().endswith("\n")

    log = io.StringIO()
    bar = Progress("x", 100, stream=log, log_interval_s=3600)
    for i in range(1000):
        bar.update(i)
    bar.close("done")
    assert log.getvalue().count("\n") == 1 and "done" in log.getvalue()


SQL = """
-- a comment; with a semicolon
CREATE TABLE runs (run_id text PRIMARY KEY);
CREATE TABLE metrics (
    run_id text NOT NULL, -- trailing comment
    key text NOT NULL
);
CREATE UNIQUE INDEX metrics_point_idx ON metrics (run_id, key);
CREATE TABLE latest_metrics (run_id text, key text, PRIMARY KEY (run_id, key));
CREATE INDEX latest_metrics_key_idx ON latest_metrics (key);
CREATE TABLE logged_model_metrics (model_id text);
CREATE INDEX lmm_idx ON logged_model_metrics (model_id);
ALTER TABLE metrics SET (fillfactor = 100);
DROP INDEX IF EXISTS latest_metrics_key_idx;
DROP INDEX lmm_idx;
"""


def test_statements_for_table() -> None:
    metrics = statements_for_table(SQL, "metrics")
    assert len(metrics) == 3
    assert metrics[0].startswith("CREATE TABLE metrics") and "trailing" not in metrics[0]
    assert metrics[1].startswith("CREATE UNIQUE INDEX metrics_point_idx")
    assert metrics[2].startswith("ALTER TABLE metrics")
    latest = statements_for_table(SQL, "latest_metrics")
    assert [s.split()[2] for s in latest] == ["latest_metrics", "latest_metrics_key_idx", "IF"]
    assert (
        latest[-1] == "DROP INDEX IF EXISTS latest_metrics_key_idx"
    )  # a later migration's drop follows


def test_metricgate_ddl_comes_from_the_migrations() -> None:
    metrics, latest = metricgate_ddl()
    assert "CREATE TABLE metric_chunks" in metrics and "metric_chunks_digest_idx" in metrics
    assert "latest_metrics" in latest
    # The baseline table is the table as all migrations leave it (0005 dropped the value index).
    assert "DROP INDEX IF EXISTS latest_metrics_key_value_idx" in latest and "fillfactor" in latest


def test_summary_ratios() -> None:
    ours = _result(label="metricgate", accepted_pts_s=30000.0, visible_pts_s=24000.0, p99_ms=50.0)
    stock = _result(
        label="mlflow", accepted_pts_s=1000.0, visible_pts_s=800.0, p99_ms=500.0, capped=True
    )
    fml = _result(label="fasttrackml", accepted_pts_s=3000.0, visible_complete=False, p99_ms=100.0)
    copies = [
        CopyResult("mlflow", False, 1, 10, 100, 1.0, 20000.0),
        CopyResult("mlflow", False, 2, 10, 100, 1.0, 24000.0),
        CopyResult("mlflow", True, 2, 10, 100, 1.0, 99999.0),
        CopyResult("metricgate", False, 1, 10, 100, 1.0, 48000.0),
    ]
    labels = ["metricgate", "mlflow", "fasttrackml"]
    rows = summary_rows([ours, stock, fml], copies, labels)
    by_figure = {r["figure"]: r for r in rows}
    accepted = by_figure["accepted pts/s"]["ratios"]
    assert accepted["metricgate/mlflow"] == 30.0 and accepted["metricgate/fasttrackml"] == 10.0
    assert (
        accepted["metricgate/copy-mlflow"] == 1.25
        and accepted["metricgate/copy-metricgate"] == 0.625
    )
    visible = by_figure["visible pts/s"]["ratios"]
    assert visible["metricgate/fasttrackml"] is None  # incomplete read-back: no rate
    assert by_figure["p99 ms"]["ratios"]["metricgate/mlflow"] == 10.0
    table = summary_table(rows, labels)
    assert "30.00x" in table and "1,000*" in table and "time cap" in table


def test_summary_ratios_for_every_metricgate_variant() -> None:
    # The comparison runs metricgate as one process and split (gateway + flusher process).
    one = _result(label="metricgate", accepted_pts_s=30000.0, visible_pts_s=24000.0, p99_ms=50.0)
    split = _result(
        label="metricgate-split", accepted_pts_s=45000.0, visible_pts_s=36000.0, p99_ms=25.0
    )
    stock = _result(label="mlflow", accepted_pts_s=1000.0, visible_pts_s=800.0, p99_ms=500.0)
    labels = ["metricgate", "metricgate-split", "mlflow"]
    rows = summary_rows([one, split, stock], [], labels)
    accepted = next(r for r in rows if r["figure"] == "accepted pts/s")["ratios"]
    assert accepted == {"metricgate/mlflow": 30.0, "metricgate-split/mlflow": 45.0}
    p99 = next(r for r in rows if r["figure"] == "p99 ms")["ratios"]
    assert p99["metricgate-split/mlflow"] == 20.0
    assert "metricgate-split/mlflow" in summary_table(rows, labels)
