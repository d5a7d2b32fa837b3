"""Compile registered-model and model-version searches into parameterized PostgreSQL.

Builds on search_sql's query builder (bound parameters, casts, MLflow's NULL ordering); only
the column maps and the tag semantics are registry-specific.
"""

from __future__ import annotations

from collections.abc import Sequence

from metricgate.search.filter import (
    ATTRIBUTE,
    Clause,
    OrderKey,
    parse_model_version_filter,
    parse_model_version_order_by,
    parse_registered_model_filter,
    parse_registered_model_order_by,
)
from metricgate.stores.postgres.search_sql import (
    SqlQuery,
    compare_sql,
    page_window,
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
    filter_string: str | None, order_by: Sequence[str] | None, max_results: int, offset: int
) -> tuple[str, list[object]]:
    """SQL selecting ``model_key`` of matching models (default order: name), one page plus one row."""
    clauses = parse_registered_model_filter(filter_string)
    keys = parse_registered_model_order_by(order_by) or [OrderKey(ATTRIBUTE, "name")]
    query = SqlQuery("rm.model_key", "registered_models AS rm")
    for clause in clauses:
        query.where.append(_condition(query, clause, _MODEL_COLUMNS, "x.model_key = rm.model_key", "registered_model_tags"))
    query.order.extend(sort_term(_MODEL_COLUMNS[k.key], k.ascending, k.key == "name") for k in keys)
    query.order.append("rm.model_key")  # stable pages
    return query.render(*page_window(max_results, offset))


def compile_model_version_search(
    filter_string: str | None, order_by: Sequence[str] | None, max_results: int, offset: int
) -> tuple[str, list[object]]:
    """SQL selecting ``(model_key, version)`` of matching versions (default order: name, then
    newest version first, as MLflow), one page plus one row."""
    clauses = parse_model_version_filter(filter_string)
    keys = parse_model_version_order_by(order_by) or [
        OrderKey(ATTRIBUTE, "name"),
        OrderKey(ATTRIBUTE, "version_number", ascending=False),
    ]
    query = SqlQuery("mv.model_key, mv.version", "model_versions AS mv JOIN registered_models AS rm USING (model_key)")
    link = "x.model_key = mv.model_key AND x.version = mv.version"
    for clause in clauses:
        query.where.append(_condition(query, clause, _VERSION_COLUMNS, link, "model_version_tags"))
    query.order.extend(sort_term(_VERSION_COLUMNS[k.key], k.ascending, k.key == "name") for k in keys)
    query.order.extend(["mv.model_key", "mv.version"])
    return query.render(*page_window(max_results, offset))


def _condition(query: SqlQuery, clause: Clause, columns: dict[str, str], link: str, tag_table: str) -> str:
    if clause.kind == ATTRIBUTE:
        return compare_sql(query, columns[clause.key], clause)
    key = query.bind(clause.key, "text")
    exists = f"EXISTS (SELECT 1 FROM {tag_table} AS x WHERE {link} AND x.key = {key}"
    if clause.op == "IS NULL":
        return f"NOT {exists})"
    if clause.op == "IS NOT NULL":
        return f"{exists})"
    if clause.op == "!=":
        # Unlike run tags, a registry object without the tag matches "!=": the mlflow client adds
        # tag.`mlflow.prompt.is_prompt` != 'true' to every model search and expects untagged models.
        equal = Clause(clause.kind, clause.key, "=", clause.value)
        return f"NOT {exists} AND {compare_sql(query, 'x.value', equal)})"
    return f"{exists} AND {compare_sql(query, 'x.value', clause)})"
