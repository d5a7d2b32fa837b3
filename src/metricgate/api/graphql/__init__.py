"""MLflow's GraphQL API (``/graphql``), as the web UI calls it.

schema.graphql  the types, names as stock MLflow's (the UI reads ``__typename``)
schema.py       builds it with graphql-core; plain fields read the REST JSON's snake_case keys
resolvers.py    root fields: the REST endpoints' checks, stores and encoders; errors -> apiError
loaders.py      per-request batching of nested lookups (a page of runs' experiments, versions)
executor.py     graphql-core's executor with a shortcut for long lists of flat objects
limits.py       depth / selection / root-field / alias limits (stock's), before validation
handler.py      the HTTP side: request forms, caching of parsed documents, stock's response shape
"""

from metricgate.api.graphql.handler import ROUTES

__all__ = ["ROUTES"]
