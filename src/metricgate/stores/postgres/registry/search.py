"""Compile registered-model and model-version searches into parameterized PostgreSQL.

Builds on search_sql's query builder (bound parameters, casts, MLflow's NULL ordering) and its
tag conditions (column_or_tag_conditions): clauses on one tag key share one EXISTS, and many keys
share one aggregate, so the SQL grows linearly with the filter (one subquery per clause took
~40 s to plan and run for 100 ``tags.k = 'v'`` clauses over 200 models).
Only the column maps and the prompt rules of stock MLflow's SqlAlchemyStore are registry-specific.
With auth on, both searches take the caller's Visibility of registered models and match it on the
model's name (a version is readable with its model).
"""

from __future__ import annotations

from collections.abc import Sequence

from metricgate.domain.auth.visibility import UNRESTRICTED, Visibility
from metricgate.domain.registry.entities import PROMPT_TAG
from metricgate.domain.search.filter import (
    ATTRIBUTE,
    TAG,
    Clause,
    OrderKey,
    parse_model_version_filter,
    parse_model_version_order_by,
    parse_registered_model_filter,
    parse_registered_model_order_by,
)
from metricgate.stores.postgres.search_sql import (
    SqlQuery,
    column_or_tag_conditions,
    page_window,
    restrict_visible,
    sort_term,
)

_MODEL_COLUMNS = {
    "name": "rm.name",
    "creation_timestamp": "rm.creation_timestamp",
    "last_updated_timestamp": "rm.last_updated_timestamp",
}
_VERSION_COLUMNS = {
    "name": "rm.name",
    "run_id": "mv.run_id",
    "source_path": "mv.source",
    "version_number": "mv.version",
    "creation_timestamp": "mv.creation_timestamp",
    "last_updated_timestamp": "mv.last_updated_timestamp",
}


def compile_registered_model_search(
    filter_string: str | None,
    order_by: Sequence[str] | None,
    max_results: int,
    offset: int,
    *,
    group_by_key: bool = True,
    visibility: Visibility = UNRESTRICTED,
) -> tuple[str, list[object]]:
    """SQL selecting ``model_key`` of matching models (default order: name), one page plus one row.
    ``group_by_key=False`` builds one subquery per tag clause (the former SQL, kept to prove the
    grouped form equivalent in tests)."""
    clauses = parse_registered_model_filter(filter_string)
    keys = parse_registered_model_order_by(order_by) or [OrderKey(ATTRIBUTE, "name")]
    query = SqlQuery("rm.model_key", "registered_models AS rm")
    restrict_visible(query, "rm.name", visibility, visibility.names(), "text")
    clauses = _apply_prompt_rule(
        query, clauses, "registered_model_tags", "p.model_key = rm.model_key"
    )
    query.where.extend(
        column_or_tag_conditions(
            query, clauses, _MODEL_COLUMNS, "registered_model_tags", [("model_key", "rm.model_key")],
            group_by_key=group_by_key,
        )
    )  # fmt: skip
    query.order.extend(sort_term(_MODEL_COLUMNS[k.key], k.ascending, k.key == "name") for k in keys)
    query.order.append("rm.model_key")  # stable pages
    return query.render(*page_window(max_results, offset))


def compile_model_version_search(
    filter_string: str | None,
    order_by: Sequence[str] | None,
    max_results: int,
    offset: int,
    *,
    group_by_key: bool = True,
    visibility: Visibility = UNRESTRICTED,
) -> tuple[str, list[object]]:
    """SQL selecting ``(model_key, version)`` of matching versions (default order: name, then
    newest version first, as MLflow), one page plus one row."""
    clauses = parse_model_version_filter(filter_string)
    keys = parse_model_version_order_by(order_by) or [
        OrderKey(ATTRIBUTE, "name"),
        OrderKey(ATTRIBUTE, "version_number", ascending=False),
    ]
    query = SqlQuery(
        "mv.model_key, mv.version",
        "model_versions AS mv JOIN registered_models AS rm USING (model_key)",
    )
    restrict_visible(query, "rm.name", visibility, visibility.names(), "text")
    # Stock joins its prompt subquery on the model name only: a version is hidden when any
    # version of its model is tagged as a prompt (in practice all of a prompt's versions are).
    clauses = _apply_prompt_rule(query, clauses, "model_version_tags", "p.model_key = mv.model_key")
    owner = [("model_key", "mv.model_key"), ("version", "mv.version")]
    query.where.extend(
        column_or_tag_conditions(
            query, clauses, _VERSION_COLUMNS, "model_version_tags", owner, group_by_key=group_by_key
        )
    )
    query.order.extend(
        sort_term(_VERSION_COLUMNS[k.key], k.ascending, k.key == "name") for k in keys
    )
    query.order.extend(["mv.model_key", "mv.version"])
    return query.render(*page_window(max_results, offset))


# Stock's tag comparators; metricgate also accepts IS [NOT] NULL on registry tags.
_STOCK_TAG_OPS = frozenset({"=", "!=", "LIKE", "ILIKE"})


def _apply_prompt_rule(
    query: SqlQuery, clauses: list[Clause], tag_table: str, link: str
) -> list[Clause]:
    """Stock MLflow's SqlAlchemyStore rule for prompts (``_is_querying_prompt`` and
    ``_update_query_to_exclude_prompts``): prompts are registry entries tagged
    ``mlflow.prompt.is_prompt = 'true'`` and a search returns them only when its first clause on
    that tag is ``= 'true'`` or ``!= 'false'`` (any case), where the tag is then an ordinary tag.
    Any other search hides prompts and drops its =, !=, LIKE, ILIKE clauses on the tag: so the
    client's ``tags.`mlflow.prompt.is_prompt` != 'true'``, added to every model search, also
    returns the models that lack the tag, although ``!=`` on any other tag needs the tag present.
    Returns the clauses left for the ordinary tag conditions."""
    prompt_clauses = [c for c in clauses if c.kind == TAG and c.key == PROMPT_TAG]
    if prompt_clauses:
        first = prompt_clauses[0]
        value = first.value.lower() if isinstance(first.value, str) else None
        if (first.op, value) in (("=", "true"), ("!=", "false")):
            return clauses
    query.where.append(
        f"NOT EXISTS (SELECT 1 FROM {tag_table} AS p WHERE {link}"
        f" AND p.key = {query.bind(PROMPT_TAG, 'text')} AND p.value = {query.bind('true', 'text')})"
    )
    return [c for c in clauses if not (c in prompt_clauses and c.op in _STOCK_TAG_OPS)]
