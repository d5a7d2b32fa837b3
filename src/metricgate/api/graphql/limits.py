"""Bounds on a GraphQL document, checked after parsing and before validation or execution.

Stock MLflow (mlflow/server/graphql/graphql_no_batching.py) refuses a document whose selections
nest deeper than 10 levels, that selects more than 1,000 fields in all (fragments expanded where
they are spread), that has more than 10 root fields, or more than 10 aliases on one level. The
same limits and messages here, so a hostile query (deep nesting, fragment fan-out, thousands of
aliased copies of an expensive root field) is refused for the cost of walking at most 1,000
fields. The parser's token limit (handler.py) bounds the walk's input; these bound its output.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
)

MAX_DEPTH = 10
MAX_SELECTIONS = 1000
MAX_ROOT_FIELDS = 10
MAX_ALIASES = 10


class QueryTooComplex(Exception):
    """The document exceeds a limit; the message is what the client sees (stock's wording)."""


def check_document(document: DocumentNode) -> None:
    """Raise ``QueryTooComplex`` if any operation of ``document`` exceeds a limit."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    root_fields = 0
    most_aliases = 0
    selections = 0
    for operation in document.definitions:
        if not isinstance(operation, OperationDefinitionNode):
            continue
        # A fragment spread twice on one level counts once; a fragment that spreads itself
        # further down is cut off by the depth limit, and fan-out across levels by the
        # selection limit, so the walk always ends within MAX_SELECTIONS fields.
        stack: list[tuple[SelectionSetNode, int]] = [(operation.selection_set, 1)]
        while stack:
            selection_set, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise QueryTooComplex(f"Query exceeds maximum depth of {MAX_DEPTH}")
            fields, aliases = _fields_of_level(selection_set.selections, fragments)
            most_aliases = max(most_aliases, aliases)
            for field in fields:
                selections += 1
                if selections > MAX_SELECTIONS:
                    raise QueryTooComplex(
                        f"Query exceeds maximum total selections of {MAX_SELECTIONS}"
                    )
                if depth == 1:
                    root_fields += 1
                if field.selection_set is not None:
                    stack.append((field.selection_set, depth + 1))
    if root_fields > MAX_ROOT_FIELDS:
        raise QueryTooComplex(_too_many("root fields", MAX_ROOT_FIELDS, root_fields))
    if most_aliases > MAX_ALIASES:
        raise QueryTooComplex(_too_many("aliases", MAX_ALIASES, most_aliases))


def _fields_of_level(
    selections: Iterable[SelectionNode],
    fragments: dict[str, FragmentDefinitionNode],
) -> tuple[list[FieldNode], int]:
    """The fields one level selects, inline fragments and fragment spreads merged in (aliases are
    counted per level across all of them, so spreading them over sibling fragments does not help)."""
    fields: list[FieldNode] = []
    aliases = 0
    spread: set[str] = set()
    queue: deque[SelectionNode] = deque(selections)
    while queue:
        node = queue.popleft()
        if isinstance(node, FieldNode):
            fields.append(node)
            aliases += node.alias is not None
        elif isinstance(node, InlineFragmentNode):
            queue.extend(node.selection_set.selections)
        elif isinstance(node, FragmentSpreadNode):
            name = node.name.value
            fragment = fragments.get(name)
            if name not in spread and fragment is not None:  # unknown ones: validation reports them
                spread.add(name)
                queue.extend(fragment.selection_set.selections)
    return fields, aliases


def _too_many(what: str, limit: int, got: int) -> str:
    return f"GraphQL queries should have at most {limit} {what}, got {got} {what}."
