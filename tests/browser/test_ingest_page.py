"""metricgate's live ingest page in headless Chromium: the figures move while a client logs."""

from __future__ import annotations

import re
import time

import pytest
from tests.browser.uipages import UiSession

pytestmark = pytest.mark.timeout(90)


def _number(ui: UiSession, element_id: str) -> float:
    text = ui.page.locator(f"#{element_id}").inner_text()
    digits = re.sub(r"[^0-9.]", "", text.split(" ")[0])
    return float(digits) if digits else -1.0


def test_ingest_page_follows_a_logging_client(ui: UiSession, ui_mlflow: str) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(ui_mlflow)
    run_id = client.create_run(client.create_experiment("ingest-page")).info.run_id
    ui.goto("metricgate/ingest")
    ui.page.wait_for_function(
        "document.getElementById('updated').textContent.startsWith('updated')"
    )
    assert ui.page.locator("#shards tbody tr").count() == 4  # METRICGATE_INGEST_SHARDS' default

    now = int(time.time() * 1000)
    # Keep logging until two refreshes have seen points go by: a rate needs two readings.
    deadline = time.monotonic() + 30
    step = 0
    while time.monotonic() < deadline:
        client.log_batch(run_id, metrics=[Metric(f"k{k}", 0.5, now, step) for k in range(100)])
        step += 1
        if _number(ui, "accepted_rate") > 0 and _number(ui, "flushed_rate") > 0:
            break
        ui.page.wait_for_timeout(200)
    ui.shot("ingest-page")
    assert _number(ui, "accepted_rate") > 0, ui.page.locator("main").inner_text()
    assert _number(ui, "flushed_rate") > 0
    # The rate chart draws its two lines (accepted, flushed) once it has two readings of rates.
    ui.page.wait_for_function(
        "document.querySelectorAll('#rate_chart path').length === 2", timeout=10_000
    )
    ui.shot("ingest-page-chart")
    assert ui.page.locator("#errors").is_hidden()
    totals = ui.page.locator("#totals").inner_text()
    assert "points accepted" in totals and "points flushed" in totals
    assert not [str(p) for p in ui.network.problems()]
