"""The web UI's non-GraphQL endpoints beyond MLflow's REST API, as one route table with full
paths (api/app.py registers it under the root).

Which prefix each group lives under follows stock MLflow 3.17.2; see the modules for why a few
differ.
"""

from __future__ import annotations

import dataclasses

from metricgate.api import ui_artifacts, ui_genai, ui_support
from metricgate.api.routing import Route

MLFLOW_V2 = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
AJAX_V2 = "/ajax-api/2.0/mlflow"
AJAX_V3 = "/ajax-api/3.0/mlflow"
AJAX_JOBS = "/ajax-api/3.0"


def _under(prefixes: tuple[str, ...], routes: list[Route]) -> list[Route]:
    return [dataclasses.replace(r, path=prefix + r.path) for prefix in prefixes for r in routes]


ROUTES: list[Route] = [
    *ui_artifacts.ROOT_ROUTES,
    *_under(MLFLOW_V2, ui_artifacts.MLFLOW_ROUTES + ui_support.MLFLOW_ROUTES),
    *_under((AJAX_V3,), ui_support.MLFLOW_V3_ROUTES + ui_genai.MLFLOW_V3_ROUTES),
    *_under((AJAX_V2,), ui_genai.MLFLOW_V2_ROUTES),
    *_under((AJAX_JOBS,), ui_genai.JOBS_ROUTES),
]
