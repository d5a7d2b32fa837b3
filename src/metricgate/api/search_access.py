"""What a search may return to its caller (docs/design-auth.md B5): the Visibility the stores
put in their SQL, from the request's caller and the authenticator's cached grants.

The search routes' rule is ``Filtered``: the access middleware only authenticates, and each
search handler asks here. Auth off or an admin: UNRESTRICTED, the SQL unchanged. Whether the
cached grants may be missing a grant the caller was just given (the creator's MANAGE) is the
authenticator's concern (``CallerAccess.visibility``).
"""

from __future__ import annotations

from aiohttp import web

from metricgate.api.access import caller_access
from metricgate.auth.authenticator import CallerAccess
from metricgate.domain.auth.permissions import ResourceType
from metricgate.domain.auth.visibility import UNRESTRICTED, Visibility


def search_access(request: web.Request) -> CallerAccess | None:
    """The request caller's view of their grants; None when nothing is filtered (auth off, an
    admin)."""
    return caller_access(request)


async def search_visibility(request: web.Request, resource_type: ResourceType) -> Visibility:
    """What a search of ``resource_type`` may return to the request's caller."""
    access = search_access(request)
    return UNRESTRICTED if access is None else await access.visibility(resource_type)
