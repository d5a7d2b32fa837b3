"""What a search may return to its caller (docs/design-auth.md B5): the Visibility the stores
put in their SQL, from the request's caller and the authenticator's cached grants.

The search routes' rule is ``Filtered``: the access middleware only authenticates, and each
search handler asks here. Auth off or an admin: UNRESTRICTED, the SQL unchanged.
"""

from __future__ import annotations

from aiohttp import web

from metricgate.api.keys import SERVICE, caller
from metricgate.auth.authenticator import Authenticator
from metricgate.domain.auth.entities import Credential
from metricgate.domain.auth.permissions import ResourceType
from metricgate.domain.auth.visibility import UNRESTRICTED, Mode, Visibility, visibility

# Modes in which only per-id grants make rows visible.
_ONLY_GRANTED = frozenset({Mode.ONLY, Mode.NONE})


class SearchAccess:
    """One caller's visibility per resource type, folded once per request."""

    def __init__(self, authenticator: Authenticator, credential: Credential) -> None:
        self._authenticator = authenticator
        self._credential = credential
        self._known: dict[ResourceType, Visibility] = {}
        self._reloaded = False

    async def visibility(self, resource_type: ResourceType) -> Visibility:
        known = self._known.get(resource_type)
        if known is not None:
            return known
        authenticator, credential = self._authenticator, self._credential
        default = authenticator.default_permission
        grants = await authenticator.grants_for(credential)
        seen = visibility(grants, resource_type, default, is_admin=credential.is_admin)
        if seen.mode in _ONLY_GRANTED and not self._reloaded:
            # A grant no epoch announced (the creator's MANAGE on what the caller just made, in
            # this or another process) may not be cached yet, and where neither ``*`` nor the
            # default reads, only such a grant shows the new row: as a denial does, read the
            # grants afresh (once per request; reload_grants keeps them). Where the default
            # reads (ALL_EXCEPT) the new row shows anyway and the cache is enough.
            self._reloaded = True
            grants = await authenticator.reload_grants(credential)
            seen = visibility(grants, resource_type, default, is_admin=credential.is_admin)
        self._known[resource_type] = seen
        return seen


def search_access(request: web.Request) -> SearchAccess | None:
    """The request caller's SearchAccess; None when nothing is filtered (auth off, an admin)."""
    credential = caller(request)
    if credential is None or credential.is_admin:
        return None
    authenticator = request.app[SERVICE].authenticator
    if authenticator is None:
        raise RuntimeError("auth is on but the service has no authenticator")
    return SearchAccess(authenticator, credential)


async def search_visibility(request: web.Request, resource_type: ResourceType) -> Visibility:
    """What a search of ``resource_type`` may return to the request's caller."""
    access = search_access(request)
    return UNRESTRICTED if access is None else await access.visibility(resource_type)
