"""The access check (docs/design-auth.md B4): one middleware, installed only with auth on, that
authenticates every request and evaluates the access rule of the route it matched.

It sits inside ``error_middleware``, so its 401 and 403 carry MLflow's ``{"error_code",
"message"}`` body and are counted like any answer, and a failure while reading a parameter or
looking a resource up is the same 400 or 503 the handler would give.

Parameters are read as the handler reads them (``codec.read_fields``): a GET's query string,
a POST/PATCH/PUT's JSON body, parsed once and kept on the request for the handler. A DELETE's
handler reads its JSON body, stock reads the query when the body is not JSON: both are checked,
so a request cannot be authorised on one and act on the other.

A resource is found through the store only when the rule names a run, a logged model, an
experiment by name or an upload session; the run and logged-model answers are remembered (a
run's experiment never changes), so a warm ``log-batch`` touches neither PostgreSQL nor Redis.
A resource that does not exist answers 403 unless the caller would hold the level on it anyway
(through ``*`` or the default), in which case the handler's 404 goes out: nobody learns what
exists from the difference.

Authentication is api/login.py's: a caller over a failed-login limit gets 429
``REQUEST_LIMIT_EXCEEDED`` with ``Retry-After``, before any password is hashed.

Search endpoints (``Filtered``) only authenticate here; their handlers narrow the rows in the
SQL (api/search_access.py, design B5).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, assert_never

from aiohttp import web
from multidict import MultiMapping

from metricgate.api.codec import parse_int64, read_json
from metricgate.api.keys import CALLER_KEY, SERVICE, caller
from metricgate.api.login import Limited, cached_caller, log_in, request_address
from metricgate.api.middleware import Handler, error_response
from metricgate.api.routing import ACCESS_RULES, rule_key
from metricgate.api.services import AppServices
from metricgate.auth.authenticator import CallerAccess
from metricgate.config import AuthSettings
from metricgate.domain.auth.access import (
    AccessRule,
    Admin,
    AllOf,
    Authenticated,
    Filtered,
    Manages,
    On,
    Public,
    RoleAdmin,
    SelfOrAdmin,
    Target,
    Where,
)
from metricgate.domain.auth.client_address import parse_networks
from metricgate.domain.auth.entities import Credential
from metricgate.domain.auth.permissions import (
    WILDCARD,
    Permission,
    ResourceType,
    is_workspace_admin,
    parse_resource_type,
)
from metricgate.domain.errors import InvalidParameter, NotFound
from metricgate.domain.lru import Lru

UNAUTHENTICATED_MESSAGE = (
    "You are not authenticated. Please see "
    "https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow "
    "on how to authenticate."
)
CHALLENGE = {"WWW-Authenticate": 'Basic realm="mlflow"'}
DENIED_MESSAGE = "Permission denied"
LIMITED_MESSAGE = "Too many failed logins from this address or for this user; try again later."

# Routes whose rule is Public but whose openness METRICGATE_AUTH_PUBLIC_PATHS decides.
SWITCHABLE_PUBLIC_PATHS = frozenset({"/health", "/ready", "/metrics"})
# Runs and logged models remembered with their experiment, per process.
RESOLVED_ENTRIES = 100_000
# An id no grant can name (NUL is refused in every stored text): the level a caller holds on a
# resource that does not exist, i.e. through ``*`` or the default.
NO_SUCH_ID = "\x00"


class AccessState:
    """Per application: the public paths, the trusted proxies and the immutable run/model ->
    experiment answers."""

    def __init__(self, settings: AuthSettings) -> None:
        self.public_paths = frozenset(settings.public_paths)
        self.trusted_proxies = parse_networks(settings.trusted_proxies)
        self.run_experiments: Lru[str, str] = Lru(RESOLVED_ENTRIES)
        self.model_experiments: Lru[str, str] = Lru(RESOLVED_ENTRIES)
        # Each matched route's rule, found once (the routes are fixed once the app runs).
        self.route_rules: dict[web.AbstractRoute, AccessRule] = {}


ACCESS_STATE = web.AppKey("access_state", AccessState)


def install(app: web.Application, settings: AuthSettings) -> None:
    """Add the check as the innermost middleware (inside the error middleware)."""
    app[ACCESS_STATE] = AccessState(settings)
    app.middlewares.append(access_middleware)


class _Denied(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Missing:
    """The named resource does not exist."""

    resource_type: ResourceType


@dataclass(frozen=True, slots=True)
class _Unparsed:
    """A parameter that names nothing this server can attribute (an artifact path outside
    ``<experiment_id>/...``): only admins pass, as stock answers 403."""


Resolved = tuple[ResourceType, str] | _Missing | _Unparsed


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # The hot path (a cached caller logging metrics) is written to await nothing it does not
    # need: every request with auth on passes here, and each coroutine costs (design B4).
    app = request.app
    state = app[ACCESS_STATE]
    match = request.match_info
    unmatched = match.http_exception is not None
    rule: AccessRule | None = None
    if not unmatched:
        route = match.route
        rule = state.route_rules.get(route)
        if rule is None:
            # A matched route the app registered without a rule cannot exist (create_app
            # refuses); one added later (a test) is admin-only rather than open.
            rule = app[ACCESS_RULES].get(rule_key(route), Admin())
            state.route_rules[route] = rule
        if _is_public(rule, request.path, state):
            return await handler(request)
    elif request.path in state.public_paths:
        return await handler(request)
    service = app[SERVICE]
    authenticator = service.authenticator
    if authenticator is None:
        raise RuntimeError("auth is on but the service has no authenticator")
    credential: Credential | Limited | None = cached_caller(request, authenticator)
    if credential is None:
        credential = await log_in(request, service, authenticator, state.trusted_proxies)
    if credential is None:
        return error_response("UNAUTHENTICATED", UNAUTHENTICATED_MESSAGE, 401, CHALLENGE)
    if isinstance(credential, Limited):
        retry_after = {"Retry-After": str(credential.retry_after_s)}
        return error_response("REQUEST_LIMIT_EXCEEDED", LIMITED_MESSAGE, 429, retry_after)
    request[CALLER_KEY] = credential
    # Unmatched: the 404/405 only once the caller is known, so routes cannot be probed.
    if rule is not None and not credential.is_admin:
        check = _Check(request, service, authenticator.access_for(credential), state)
        try:
            await check.rule(rule)
        except _Denied:
            return error_response("PERMISSION_DENIED", DENIED_MESSAGE, 403)
    return await handler(request)


def client_addr(request: web.Request) -> str | None:
    """The request's client address behind the trusted proxies (for audit entries); the peer
    where the access check is not installed."""
    state = request.app.get(ACCESS_STATE)
    return request.remote if state is None else request_address(request, state.trusted_proxies)


def _is_public(rule: AccessRule, path: str, state: AccessState) -> bool:
    if path in state.public_paths:
        return True
    return isinstance(rule, Public) and path not in SWITCHABLE_PUBLIC_PATHS


class _Check:
    """One request's evaluation for a non-admin caller."""

    def __init__(
        self, request: web.Request, service: AppServices, access: CallerAccess, state: AccessState
    ) -> None:
        self.request = request
        self.service = service
        self.access = access
        self.credential = access.credential
        self.state = state
        self._body: Mapping[str, Any] | None = None

    async def rule(self, rule: AccessRule) -> None:
        if isinstance(rule, (On, AllOf)):
            parts = (rule,) if isinstance(rule, On) else rule.rules
            for part in parts:
                sources = self.sources_now(part.where)
                if sources is None:
                    sources = await self.sources(part.where)
                if not self.on_now(part, sources):
                    await self.on(part, sources)
            return
        if isinstance(rule, (Authenticated, Filtered, Public)):
            return
        if isinstance(rule, Admin):
            raise _Denied
        if isinstance(rule, SelfOrAdmin):
            # Absent: the handler means the caller (tokens/list) or answers its own 400.
            for value in self.values(await self.sources(rule.where), rule.param):
                if value != self.credential.username:
                    raise _Denied
        elif isinstance(rule, RoleAdmin):
            if not is_workspace_admin(await self.access.grants()):
                raise _Denied
        elif isinstance(rule, Manages):
            await self.manages()
        else:  # a rule kind this module does not know: closed, not open
            raise _Denied

    # ------------------------------------------------------------------ levels

    async def require(
        self, resource_type: ResourceType, resource_id: str, level: Permission
    ) -> None:
        if not await self.access.allows(resource_type, resource_id, level):
            raise _Denied

    async def require_resolved(self, resolved: Resolved, level: Permission) -> None:
        if isinstance(resolved, _Unparsed):
            raise _Denied
        if isinstance(resolved, _Missing):
            # Held anyway (through * or the default): the handler's 404 says no more than
            # the caller could learn. Otherwise 403, whether it exists or not.
            await self.require(resolved.resource_type, NO_SUCH_ID, level)
            return
        await self.require(resolved[0], resolved[1], level)

    def on_now(self, rule: On, sources: list[Mapping[str, Any]]) -> bool:
        """``on`` where the caches answer it without an await: True when it passed (raises
        _Denied or a 400 as ``on`` would), False when ``on`` must run."""
        if len(sources) == 1:
            # The common shapes, in one frame: a run (or model) named once, and a list whose
            # objects name nothing (log-batch's metrics without a model_id). Anything else
            # takes the general path below, which gives the same answers.
            source = sources[0]
            value = source.get(rule.param)
            item = rule.item
            if item is not None:
                if type(value) is list and all(
                    type(entry) is dict and entry.get(item) in (None, "") for entry in value
                ):
                    return True  # a list parameter (optional by construction) naming nothing
            elif not rule.each and type(value) is str and value:
                target = rule.target
                resolved: tuple[ResourceType, str] | None
                if target is Target.RUN_ID:
                    experiment_id = self.state.run_experiments.get(value)
                    if experiment_id is None:
                        return False
                    resolved = (ResourceType.EXPERIMENT, experiment_id)
                elif target is Target.MODEL_NAME:
                    resolved = (ResourceType.REGISTERED_MODEL, value)
                else:
                    resolved = None
                if resolved is not None:
                    return self.passes_now(resolved, rule.level)
        ids = self.ids(rule, sources)
        if not ids:
            self.nothing_named(rule)
            return True
        for value in ids:
            resolved = self.known(rule.target, value)
            if resolved is None or not self.passes_now(resolved, rule.level):
                return False
        return True

    def passes_now(self, resolved: tuple[ResourceType, str], level: Permission) -> bool:
        """True when the cached grants allow ``level``; False when only the awaiting path can
        tell (``require``); raises _Denied when they deny it for good."""
        allowed = self.access.cached_allows(resolved[0], resolved[1], level)
        if allowed is None:
            return False
        if not allowed:
            raise _Denied
        return True

    async def on(self, rule: On, sources: list[Mapping[str, Any]]) -> None:
        ids = self.ids(rule, sources)
        if not ids:
            self.nothing_named(rule)
            return
        for value in ids:
            resolved: Resolved | None = self.known(rule.target, value)
            if resolved is None:
                resolved = await self.resolve(rule.target, rule.param, value)
            if resolved is not None:
                await self.require_resolved(resolved, rule.level)

    @staticmethod
    def nothing_named(rule: On) -> None:
        """The parameter is absent or empty: fine where it may be, else a 400 (or 403)."""
        if rule.optional or rule.each or rule.item is not None:
            return
        if rule.target is Target.ARTIFACT_PATH:
            raise _Denied  # the artifact root itself: every experiment's directory
        raise _missing(rule.param)

    async def manages(self) -> None:
        sources = await self.sources(Where.PARAMS)
        types = self.values(sources, "resource_type")
        ids = self.values(sources, "resource_id")
        if not types:
            raise _missing("resource_type")
        if not ids:
            raise _missing("resource_id")
        for kind in types:
            resource_type = parse_resource_type(kind, workspace_allowed=True)
            for resource_id in ids:
                if not isinstance(resource_id, str):
                    raise _bad("resource_id", "a string")
                if resource_type is ResourceType.WORKSPACE or resource_id == WILDCARD:
                    if not is_workspace_admin(await self.access.grants()):
                        raise _Denied
                    continue
                if resource_type is ResourceType.EXPERIMENT:
                    resource_id = str(parse_int64("resource_id", resource_id))
                await self.require(resource_type, resource_id, Permission.MANAGE)

    # ------------------------------------------------------------------ parameters

    async def sources(self, where: Where) -> list[Mapping[str, Any]]:
        """The places a parameter is read from (``Where``), the body parsed once."""
        found = self.sources_now(where)
        if found is None:
            await self.body()
            found = self.sources_now(where)
            assert found is not None, "the body is parsed"
        return found

    def sources_now(self, where: Where) -> list[Mapping[str, Any]] | None:
        """``sources`` when no body needs reading first; None when one does."""
        request = self.request
        if where is Where.PATH:
            return [request.match_info]
        if where is Where.QUERY:
            return [request.query]
        method = request.method
        if where is Where.PARAMS and method in ("GET", "HEAD"):
            return [request.query]
        body = self._body
        if body is None:
            return None
        if where is Where.BODY:
            return [body]
        if method == "DELETE":
            return [body, request.query]
        return [body]

    async def body(self) -> Mapping[str, Any]:
        body = self._body
        if body is None:
            raw = (await read_json(self.request)).raw
            body = self._body = raw if isinstance(raw, dict) else {}
        return body

    @staticmethod
    def values(
        sources: list[Mapping[str, Any]],
        param: str,
        fallback: str | None = None,
        many: bool = False,
    ) -> list[Any]:
        """Every value the parameter has in ``sources`` (the places it is read from); a list
        parameter's elements (``many``), a query's repeated values included."""
        found: list[Any] = []
        for source in sources:
            for name in (param, fallback):
                if name is None:
                    continue
                if many and isinstance(source, MultiMapping):
                    value: Any = source.getall(name, [])
                else:
                    value = source.get(name)
                if value is None or value == "" or value == []:
                    continue
                if many:
                    if not isinstance(value, list):
                        raise _bad(name, "a list")
                    found.extend(value)
                else:
                    found.append(value)
                break
        return found

    @staticmethod
    def ids(rule: On, sources: list[Mapping[str, Any]]) -> list[str]:
        item = rule.item
        many = rule.each or item is not None
        values = _Check.values(sources, rule.param, rule.fallback, many)
        ids: dict[str, None] = {}  # each distinct resource once, in order
        for value in values:
            if item is not None:
                if type(value) is not dict:
                    raise _bad(rule.param, "a list of objects")
                value = value.get(item)
                if value is None or value == "":
                    continue
            if type(value) is str:
                ids[value] = None
            elif type(value) is int:  # not bool: type(), not isinstance()
                ids[str(value)] = None
            else:
                raise _bad(item or rule.param, "a string")
        return list(ids)

    def known(self, target: Target, value: str) -> tuple[ResourceType, str] | None:
        """``resolve``'s answer when it needs no store and no await (a run or logged model
        already remembered, an experiment id, a model name); None otherwise."""
        if target is Target.RUN_ID:
            experiment_id = self.state.run_experiments.get(value)
            return None if experiment_id is None else (ResourceType.EXPERIMENT, experiment_id)
        if target is Target.MODEL_NAME:
            return ResourceType.REGISTERED_MODEL, value
        return None

    # ------------------------------------------------------------------ resources

    async def resolve(self, target: Target, param: str, value: str) -> Resolved | None:
        """What governs the resource; None when nothing does (a source held elsewhere)."""
        experiment = ResourceType.EXPERIMENT
        if target is Target.EXPERIMENT_ID:
            return experiment, str(parse_int64(param, value))
        if target is Target.MODEL_NAME:
            return ResourceType.REGISTERED_MODEL, value
        if target is Target.RUN_ID:
            return await self.run_experiment(value)
        if target is Target.LOGGED_MODEL_ID:
            return await self.model_experiment(value)
        if target is Target.EXPERIMENT_NAME:
            try:
                found = await self.service.experiments.get_by_name(value)
            except NotFound:
                return _Missing(experiment)
            return experiment, str(found.experiment_id)
        if target is Target.ARTIFACT_PATH:
            return artifact_path_experiment(value)
        if target is Target.UPLOAD_ID:
            uploads = self.service.uploads
            if uploads is None:
                return _Missing(experiment)
            try:
                session = await uploads.get(value)
            except NotFound:
                return _Missing(experiment)
            return await self.run_experiment(session.run_id)
        if target is Target.MODEL_SOURCE:
            return await self.source(value)
        assert_never(target)

    async def run_experiment(self, run_id: str) -> Resolved:
        cache = self.state.run_experiments
        experiment_id = cache.get(run_id)
        if experiment_id is None:
            try:
                experiment_id = await self.service.runs.experiment_of(run_id)
            except NotFound:
                return _Missing(ResourceType.EXPERIMENT)
            cache.put(run_id, experiment_id)
        return ResourceType.EXPERIMENT, experiment_id

    async def model_experiment(self, model_id: str) -> Resolved:
        cache = self.state.model_experiments
        experiment_id = cache.get(model_id)
        if experiment_id is None:
            try:
                experiment_id = await self.service.logged_models.experiment_of(model_id)
            except NotFound:
                return _Missing(ResourceType.EXPERIMENT)
            cache.put(model_id, experiment_id)
        return ResourceType.EXPERIMENT, experiment_id

    async def source(self, uri: str) -> Resolved | None:
        """A model version's source (the MODEL_SOURCE docstring): what governs it, or None for
        a URI this server does not hold (nothing needed)."""
        scheme, sep, rest = uri.partition(":")
        if not sep:
            return None
        rest = rest.lstrip("/")
        if scheme == "models":
            head = rest.split("/", 1)[0]
            if "/" not in rest and head.startswith("m-"):
                return await self.model_experiment(head)
            name = head.split("@", 1)[0]
            return (ResourceType.REGISTERED_MODEL, name) if name else _Unparsed()
        if scheme == "runs":
            run_id = rest.split("/", 1)[0]
            return await self.run_experiment(run_id) if run_id else _Unparsed()
        if scheme == "mlflow-artifacts":
            return artifact_path_experiment(rest)
        return None


class ResourceAccess:
    """The caller's level on one resource at a time, for a handler that decides per item rather
    than by its route's rule (GraphQL's fields: a denied one is null, as in stock). The same
    evaluation as the middleware's: a run's experiment through the same LRU, a missing
    resource held only through ``*`` or the default, a denial re-read from the store (once per
    request: CallerAccess)."""

    def __init__(self, check: _Check) -> None:
        self._check = check
        self._known: dict[tuple[ResourceType, str, Permission], bool] = {}

    async def allows(
        self, resource_type: ResourceType, resource_id: str, level: Permission
    ) -> bool:
        key = (resource_type, resource_id, level)
        known = self._known.get(key)
        if known is None:
            known = self._known[key] = await self._passes(
                self._check.require(resource_type, resource_id, level)
            )
        return known

    async def allows_run(self, run_id: str, level: Permission) -> bool:
        """``level`` on the run's experiment (a missing run: as REST's 403-or-404 rule)."""
        resolved = await self._check.run_experiment(run_id)
        if isinstance(resolved, tuple):
            return await self.allows(resolved[0], resolved[1], level)
        return await self._passes(self._check.require_resolved(resolved, level))

    @staticmethod
    async def _passes(check: Awaitable[None]) -> bool:
        try:
            await check
        except _Denied:
            return False
        return True


def resource_access(
    request: web.Request, access: CallerAccess | None = None
) -> ResourceAccess | None:
    """The request caller's ResourceAccess; None when nothing is checked (auth off, an admin).
    ``access``: the request's CallerAccess where it has one already (its re-read is shared)."""
    if access is None:
        access = caller_access(request)
    if access is None:
        return None
    service = request.app[SERVICE]
    return ResourceAccess(_Check(request, service, access, request.app[ACCESS_STATE]))


def caller_access(request: web.Request) -> CallerAccess | None:
    """The request caller's view of their grants; None when nothing is checked (auth off, an
    admin)."""
    credential = caller(request)
    if credential is None or credential.is_admin:
        return None
    authenticator = request.app[SERVICE].authenticator
    if authenticator is None:
        raise RuntimeError("auth is on but the service has no authenticator")
    return authenticator.access_for(credential)


def artifact_path_experiment(path: str) -> Resolved:
    """The experiment of ``<experiment_id>/<run_id>/artifacts/...`` (or ``<experiment_id>/
    models/...``). Empty and ``.`` segments are skipped; a path with a ``..`` segment, or not
    starting with an experiment id, is unparsed (admins only), so no spelling of a path can
    be checked against one experiment and reach another's files."""
    parts = [part for part in path.replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return _Unparsed()
    head = parts[0]
    if not head.isascii() or not head.isdigit():
        return _Unparsed()
    return ResourceType.EXPERIMENT, str(int(head))


def creator_of(request: web.Request) -> int | None:
    """The user id that gets MANAGE on the experiment or registered model this request creates,
    written by the store in the create's own transaction (design B2; stock grants it in an
    after-request hook). None for an admin, who holds everything already, and with auth off,
    where there is nobody to grant to."""
    credential = caller(request)
    if credential is None or credential.is_admin or request.app[SERVICE].auth is None:
        return None
    return credential.user_id


def creator_granted(request: web.Request, creator: int | None) -> None:
    """The create that gave ``creator`` (``creator_of``) MANAGE has committed: that grant moves
    no epoch, so the user's cached grants are dropped here now and in the other processes by
    a notice (Authenticator.user_grants_changed), and their next search shows what they made."""
    authenticator = request.app[SERVICE].authenticator
    if creator is not None and authenticator is not None:
        authenticator.user_grants_changed(creator)


def _missing(name: str) -> InvalidParameter:
    return InvalidParameter(
        f"Missing value for required parameter '{name}'. "
        "See the API docs for more information about request parameters."
    )


def _bad(name: str, expected: str) -> InvalidParameter:
    return InvalidParameter(f"Invalid value for parameter '{name}' supplied: expected {expected}.")
