"""The access rule every route declares (docs/design-auth.md B4): who may call it, and for a
route on one resource, which request parameter names the resource and what level it needs.

Rules are data: api/access.py evaluates them (reading the parameter, looking a run up to its
experiment) and the permission-matrix test derives each route's expected answer from them. A
route cannot be registered without one, so a new endpoint cannot slip past the check.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from metricgate.domain.auth.permissions import Permission, ResourceType


class Target(enum.Enum):
    """What a request parameter identifies, and so how its governing resource is found."""

    EXPERIMENT_ID = "experiment_id"  # the experiment itself
    EXPERIMENT_NAME = "experiment_name"  # an experiment by name (get-by-name)
    RUN_ID = "run_id"  # a run: its experiment governs
    LOGGED_MODEL_ID = "logged_model_id"  # a logged model: its experiment governs
    MODEL_NAME = "model_name"  # a registered model, by name
    ARTIFACT_PATH = "artifact_path"  # <experiment_id>/<run_id>/artifacts/... under the proxy root
    UPLOAD_ID = "upload_id"  # a resumable upload session: its run's experiment governs
    # A model version's source URI: ``models:/<name>/<version>`` is that registered model,
    # ``models:/<model_id>`` that logged model's experiment, ``runs:/<run_id>/...`` and a proxied
    # artifact location the run's experiment; a URI this server does not hold needs nothing.
    MODEL_SOURCE = "model_source"

    @property
    def resource_type(self) -> ResourceType:
        """The type whose grants decide. MODEL_SOURCE's depends on the URI (a ``models:/<name>/``
        source is a registered model): the evaluator asks the URI, not this."""
        if self is Target.MODEL_NAME:
            return ResourceType.REGISTERED_MODEL
        return ResourceType.EXPERIMENT


class Where(enum.Enum):
    """Where the parameter is read, as MLflow's ``_get_request_param`` does for PARAMS: the query
    string of a GET, the JSON body of a POST/PATCH, a DELETE's body when JSON else its query."""

    PARAMS = "params"
    QUERY = "query"
    BODY = "body"
    PATH = "path"  # a match_info part of the route's path


@dataclass(frozen=True, slots=True)
class Public:
    """No authentication (health, readiness, metrics scrape, static UI files, server-info)."""


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Any valid credential."""


@dataclass(frozen=True, slots=True)
class Admin:
    """Admins only."""


@dataclass(frozen=True, slots=True)
class SelfOrAdmin:
    """The user named by ``param`` must be the caller, unless the caller is an admin."""

    param: str = "username"
    where: Where = Where.PARAMS


@dataclass(frozen=True, slots=True)
class RoleAdmin:
    """Admins and workspace admins (a role holding workspace ``*`` MANAGE)."""


@dataclass(frozen=True, slots=True)
class On:
    """``level`` on the resource that ``param`` identifies. ``each``: the parameter is a list
    and every element needs the level (bulk metric reads, dataset searches). ``item``: the
    parameter is a list of objects and each object's ``item`` field names a resource (log-batch's
    ``metrics[].model_id``); implies ``each``. ``optional``: an absent (or empty) parameter
    needs nothing; for a second resource a request may name (a version's run, a metric's logged
    model), never for the one the route acts on."""

    target: Target
    param: str
    level: Permission
    where: Where = Where.PARAMS
    each: bool = False
    fallback: str | None = None  # a second name for the same parameter (run_uuid for run_id)
    item: str | None = None
    optional: bool = False


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every rule holds: a route acting on one resource that also names others (a run's metrics
    aimed at logged models, a model version made from a run). The first is the resource the
    route acts on."""

    rules: tuple[On, ...]


@dataclass(frozen=True, slots=True)
class Filtered:
    """Any valid credential; the handler returns only rows the caller may read (searches)."""

    resource_type: ResourceType


@dataclass(frozen=True, slots=True)
class Manages:
    """MANAGE on the resource the body names (``resource_type`` + ``resource_id``); a ``*``
    resource needs an admin. Granting and revoking permissions."""


AccessRule = (
    Public | Authenticated | Admin | SelfOrAdmin | RoleAdmin | On | AllOf | Filtered | Manages
)


def needs_login(rule: AccessRule) -> bool:
    return not isinstance(rule, Public)
