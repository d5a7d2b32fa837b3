"""Where the auth API's routes live: MLflow's 2.0 user routes and 3.0 permission and role
routes under the prefixes the client (``/api``) and the web UI (``/ajax-api``) use, and
metricgate's token, permission and audit routes. api/app.py registers each group."""

from __future__ import annotations

from metricgate.api import audit, auth_roles, auth_users, permissions_admin, tokens
from metricgate.api.routing import Route

MLFLOW_V2_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
MLFLOW_V3_PREFIXES = ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")

ROUTE_GROUPS: list[tuple[tuple[str, ...], list[Route]]] = [
    (MLFLOW_V2_PREFIXES, auth_users.V2_ROUTES),
    (MLFLOW_V3_PREFIXES, auth_users.V3_ROUTES + auth_roles.ROUTES),
    (tokens.PREFIXES, tokens.ROUTES),
    (permissions_admin.PREFIXES, permissions_admin.ROUTES),
    (audit.PREFIXES, audit.ROUTES),
]
