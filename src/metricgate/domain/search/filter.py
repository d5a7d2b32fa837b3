"""Pure parser for MLflow search filters and order_by clauses (runs, experiments, logged models).

MLflow parses filters with sqlparse plus ad-hoc checks (mlflow/utils/search_utils.py). This is a
small hand-written recursive-descent parser for the same grammar::

    filter     := comparison (AND comparison)*            -- AND is case-insensitive; no OR
    comparison := identifier op value | identifier IS [NOT] NULL
    identifier := part ('.' part)*                        -- "<prefix>.<key>" or a bare attribute
    part       := word | `quoted` | "quoted" | 'quoted'
    value      := 'string' | "string" | number | '(' string (',' string)* [','] ')'

Every failure is an ``InvalidParameter``; no other exception escapes for any ``str`` input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from metricgate.domain.errors import InvalidParameter

METRIC = "metric"
PARAM = "param"
TAG = "tag"
ATTRIBUTE = "attribute"
DATASET = "dataset"

ClauseValue = str | int | float | tuple[str, ...] | tuple[int, ...] | None

_NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=")
_STRING_OPS = ("=", "!=", "LIKE", "ILIKE")
_LIST_OPS = ("IN", "NOT IN")
_NULL_OPS = ("IS NULL", "IS NOT NULL")

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class Clause:
    """One comparison. ``op`` is upper-case, ``key`` has quotes and aliases resolved."""

    kind: str
    key: str
    op: str
    value: ClauseValue


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One sort key. The dataset fields only restrict logged-model metric sorts."""

    kind: str
    key: str
    ascending: bool = True
    dataset_name: str | None = None
    dataset_digest: str | None = None


@dataclass(frozen=True)
class _Grammar:
    """What one search entity accepts; the parser itself is shared."""

    prefixes: Mapping[str, str]  # spelling -> kind
    kind_ops: Mapping[str, tuple[str, ...]]  # metric/param/tag/dataset -> comparators
    string_attributes: Mapping[str, tuple[str, ...]]  # attribute -> comparators
    numeric_attributes: frozenset[str]
    order_attributes: frozenset[str]
    order_kinds: frozenset[str]
    aliases: Mapping[str, str] = field(default_factory=dict)
    dataset_keys: frozenset[str] = frozenset()
    integer_only: bool = False  # experiments reject fractional timestamps
    id_attributes: frozenset[str] = frozenset()  # quoted values that must be integer ids

    @property
    def filter_attributes(self) -> frozenset[str]:
        return frozenset(self.string_attributes) | self.numeric_attributes


_RUN_PREFIXES = {
    "metric": METRIC, "metrics": METRIC,
    "parameter": PARAM, "parameters": PARAM, "param": PARAM, "params": PARAM,
    "tag": TAG, "tags": TAG,
    "attribute": ATTRIBUTE, "attributes": ATTRIBUTE, "attr": ATTRIBUTE, "run": ATTRIBUTE,
    "dataset": DATASET, "datasets": DATASET,
}  # fmt: skip

_RUN_GRAMMAR = _Grammar(
    prefixes=_RUN_PREFIXES,
    kind_ops={
        METRIC: _NUMERIC_OPS,
        PARAM: _STRING_OPS + _NULL_OPS,
        TAG: _STRING_OPS + _NULL_OPS,
        DATASET: _STRING_OPS + _LIST_OPS,
    },
    string_attributes={
        "run_id": _STRING_OPS + _LIST_OPS,  # MLflow's LIST_SUPPORTED_KEYS
        "run_name": _STRING_OPS,
        "status": _STRING_OPS,
        "user_id": _STRING_OPS,
        "artifact_uri": _STRING_OPS,
        "lifecycle_stage": _STRING_OPS,
    },
    numeric_attributes=frozenset({"start_time", "end_time"}),
    order_attributes=frozenset(
        {"run_id", "run_name", "status", "user_id", "artifact_uri", "start_time", "end_time"}
    ),
    order_kinds=frozenset({METRIC, PARAM, TAG, ATTRIBUTE}),
    aliases={
        "created": "start_time",
        "Created": "start_time",
        "run name": "run_name",
        "Run name": "run_name",
        "Run Name": "run_name",
    },
    dataset_keys=frozenset({"name", "digest", "context"}),
)

_EXPERIMENT_GRAMMAR = _Grammar(
    # MLflow accepts only "attribute", "tag" and "tags"; the other attribute spellings are a
    # harmless superset kept for symmetry with runs.
    prefixes={
        "attribute": ATTRIBUTE,
        "attributes": ATTRIBUTE,
        "attr": ATTRIBUTE,
        "tag": TAG,
        "tags": TAG,
    },
    kind_ops={TAG: _STRING_OPS + _NULL_OPS},
    string_attributes={"name": _STRING_OPS, "experiment_id": ("=", "!=", *_LIST_OPS)},
    numeric_attributes=frozenset({"creation_time", "last_update_time"}),
    order_attributes=frozenset({"name", "experiment_id", "creation_time", "last_update_time"}),
    order_kinds=frozenset({ATTRIBUTE}),
    integer_only=True,
    id_attributes=frozenset({"experiment_id"}),
)

_MODEL_STRING_OPS = _STRING_OPS + _LIST_OPS
_LOGGED_MODEL_GRAMMAR = _Grammar(
    prefixes={k: v for k, v in _RUN_PREFIXES.items() if v != DATASET and k != "run"},
    # MLflow's SqlAlchemyStore (search_logged_model_utils) allows IN / NOT IN on every string.
    kind_ops={METRIC: _NUMERIC_OPS, PARAM: _MODEL_STRING_OPS, TAG: _MODEL_STRING_OPS},
    string_attributes=dict.fromkeys(
        ("name", "model_id", "model_type", "status", "source_run_id"), _MODEL_STRING_OPS
    ),
    numeric_attributes=frozenset({"creation_timestamp", "last_updated_timestamp"}),
    order_attributes=frozenset(
        {
            "name",
            "model_id",
            "model_type",
            "status",
            "source_run_id",
            "creation_timestamp",
            "last_updated_timestamp",
        }
    ),
    order_kinds=frozenset({METRIC, ATTRIBUTE}),
    aliases={"creation_time": "creation_timestamp", "last_updated_time": "last_updated_timestamp"},
)


# Registry searches (MLflow's model registry SearchUtils): names and tags for models; names, run
# ids, sources, version numbers and tags for versions. Timestamps can only be sorted on.
_REGISTRY_PREFIXES = {
    "tag": TAG,
    "tags": TAG,
    "attribute": ATTRIBUTE,
    "attributes": ATTRIBUTE,
    "attr": ATTRIBUTE,
}
_REGISTERED_MODEL_GRAMMAR = _Grammar(
    prefixes=_REGISTRY_PREFIXES,
    kind_ops={TAG: _STRING_OPS + _NULL_OPS},
    string_attributes={"name": _STRING_OPS},
    numeric_attributes=frozenset(),
    order_attributes=frozenset({"name", "creation_timestamp", "last_updated_timestamp"}),
    order_kinds=frozenset({ATTRIBUTE}),
    aliases={"timestamp": "creation_timestamp"},
)
_MODEL_VERSION_GRAMMAR = _Grammar(
    prefixes=_REGISTRY_PREFIXES,
    kind_ops={TAG: _STRING_OPS + _NULL_OPS},
    string_attributes={
        "name": _STRING_OPS,
        "run_id": ("=", "!=", *_LIST_OPS),
        "source_path": _STRING_OPS,
    },
    numeric_attributes=frozenset({"version_number"}),
    order_attributes=frozenset(
        {"name", "version_number", "creation_timestamp", "last_updated_timestamp"}
    ),
    order_kinds=frozenset({ATTRIBUTE}),
    aliases={"version": "version_number", "timestamp": "creation_timestamp"},
    integer_only=True,
)

# String extents follow sqlparse's lexer, so a filter splits exactly where MLflow splits it.
# Like MLflow, doubled or backslashed quotes are not unescaped: the text between the outer
# quotes is the value.
_SINGLE_QUOTED = r"'(?:''|\\'|[^'])*'"
_DOUBLE_QUOTED = r'"(?:""|\\"|[^"])*"'
_BACKTICKED = r"`(?:``|[^`])*`"
_PART = re.compile(rf"\w+|{_BACKTICKED}|{_DOUBLE_QUOTED}|{_SINGLE_QUOTED}")
_STRING = re.compile(rf"{_SINGLE_QUOTED}|{_DOUBLE_QUOTED}")
# sqlparse's numbers: an optional minus, no plus, no hex, no underscores.
_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?(?![\w.])")
_INTEGER = re.compile(r"\s*[-+]?[0-9]+\s*")
_SYMBOL_OP = re.compile(r"[<>=!]+")
_WORD_OP = re.compile(r"(?:IS\s+NOT\s+NULL|IS\s+NULL|NOT\s+I?LIKE|NOT\s+IN|I?LIKE|IN)(?!\w)", re.I)
_AND = re.compile(r"AND(?!\w)", re.I)
_DIRECTION = re.compile(r"(?:ASC|DESC)(?!\w)", re.I)
_WHITESPACE = re.compile(r"\s*")
_FRAGMENT = re.compile(r"\S{1,40}")
_OPEN, _CLOSE, _COMMA = re.compile(r"\("), re.compile(r"\)"), re.compile(",")
_MAX_ECHO_CHARS = 200  # error messages quote the client's input, but not all of a huge one

# Limits on one filter (metricgate's own; MLflow has none). Without them a filter of a few KB,
# such as 300 repetitions of "metrics.a > 1", kept a pooled database connection busy for a
# minute (the planner's work grew roughly cubically with the number of subqueries). The SQL now
# builds one subquery per distinct key, so these bound the work per search: 100 comparisons is
# far more than any hand-written or MLflow-client filter, and 25 distinct metric/param/tag/dataset
# keys keep the number of subqueries small. Attributes (columns of the row itself) need no
# subquery and count only towards the comparison limit.
MAX_FILTER_CLAUSES = 100
MAX_FILTER_KEYS = 25


@dataclass(frozen=True, slots=True)
class _Identifier:
    prefix: str | None  # None for a bare attribute key
    key: str  # raw text after the first dot, quotes still on
    text: str


@dataclass(frozen=True, slots=True)
class _Value:
    form: str  # "string" | "number" | "list" | "other"
    text: str
    value: str | tuple[str, ...] | None


class _Scanner:
    """A cursor over the filter text; every method skips leading whitespace."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_whitespace(self) -> None:
        match = _WHITESPACE.match(self.text, self.pos)
        self.pos = match.end() if match else self.pos

    def at_end(self) -> bool:
        self.skip_whitespace()
        return self.pos >= len(self.text)

    def take(self, pattern: re.Pattern[str]) -> str | None:
        self.skip_whitespace()
        match = pattern.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group(0)

    def upcoming(self) -> str:
        """A short excerpt of what comes next, for error messages."""
        self.skip_whitespace()
        match = _FRAGMENT.match(self.text, self.pos)
        return f"'{match.group(0)}'" if match else "the end of the filter"

    def identifier(self) -> _Identifier:
        first = self.take(_PART)
        if first is None:
            raise InvalidParameter(
                f"Invalid clause: expected an identifier, found {self.upcoming()}"
            )
        start, first_end = self.pos - len(first), self.pos
        # Dotted parts must touch: "tags.a.b" is one identifier, "tags. a" is not.
        while self.text.startswith(".", self.pos):
            match = _PART.match(self.text, self.pos + 1)
            if match is None:
                bad = _shorten(self.text[start : self.pos + 1])
                raise InvalidParameter(f"Invalid identifier '{bad}'")
            self.pos = match.end()
        if self.pos == first_end:
            return _Identifier(None, first, first)
        key = self.text[first_end + 1 : self.pos]
        return _Identifier(first, key, self.text[start : self.pos])

    def operator(self, subject: str) -> str:
        op = self.take(_SYMBOL_OP) or self.take(_WORD_OP)
        if op is None:
            raise InvalidParameter(
                f"Invalid clause: expected a comparison operator after '{_shorten(subject)}', "
                f"found {self.upcoming()}"
            )
        return " ".join(op.upper().split())

    def value(self) -> _Value:
        self.skip_whitespace()
        start = self.pos
        if (text := self.take(_STRING)) is not None:
            return _Value("string", text, text[1:-1])
        if (text := self.take(_NUMBER)) is not None:
            return _Value("number", text, text)
        if self.take(_OPEN) is not None:
            items = self._list_items()
            return _Value("list", self.text[start : self.pos], items)
        return _Value("other", self.take(_FRAGMENT) or "", None)

    def _list_items(self) -> tuple[str, ...]:
        if self.take(_CLOSE) is not None:
            raise InvalidParameter(
                "While parsing a list in the query, expected a non-empty list of string values, "
                "but got empty list"
            )
        items: list[str] = []
        while True:
            item = self.take(_STRING)
            if item is None:
                raise InvalidParameter(
                    "While parsing a list in the query, expected a quoted string value, "
                    f"found {self.upcoming()}"
                )
            items.append(item[1:-1])
            if self.take(_CLOSE) is not None:
                return tuple(items)
            if self.take(_COMMA) is None:
                raise InvalidParameter(
                    "While parsing a list in the query, expected ',' or ')', "
                    f"found {self.upcoming()}"
                )
            if self.take(_CLOSE) is not None:  # a trailing comma, as Python tuples allow
                return tuple(items)


def parse_run_filter(filter_string: str | None) -> list[Clause]:
    """Parse a runs/search ``filter``; ``None`` or ``""`` means no filter."""
    return _parse_filter(filter_string, _RUN_GRAMMAR)


def parse_experiment_filter(filter_string: str | None) -> list[Clause]:
    """Parse an experiments/search ``filter``; ``experiment_id`` values become ints."""
    return _parse_filter(filter_string, _EXPERIMENT_GRAMMAR)


def parse_logged_model_filter(filter_string: str | None) -> list[Clause]:
    """Parse a logged-models/search ``filter``."""
    return _parse_filter(filter_string, _LOGGED_MODEL_GRAMMAR)


def parse_registered_model_filter(filter_string: str | None) -> list[Clause]:
    """Parse a registered-models/search ``filter`` (``name``, ``tags.*``)."""
    return _parse_filter(filter_string, _REGISTERED_MODEL_GRAMMAR)


def parse_model_version_filter(filter_string: str | None) -> list[Clause]:
    """Parse a model-versions/search ``filter`` (``name``, ``run_id``, ``source_path``,
    ``version_number``, ``tags.*``)."""
    return _parse_filter(filter_string, _MODEL_VERSION_GRAMMAR)


def parse_registered_model_order_by(order_by: Sequence[str] | None) -> list[OrderKey]:
    """Parse registered-models/search ``order_by`` strings such as ``name DESC``."""
    return _parse_order_strings(order_by, _REGISTERED_MODEL_GRAMMAR)


def parse_model_version_order_by(order_by: Sequence[str] | None) -> list[OrderKey]:
    """Parse model-versions/search ``order_by`` strings such as ``version_number DESC``."""
    return _parse_order_strings(order_by, _MODEL_VERSION_GRAMMAR)


def parse_order_by(order_by: Sequence[str] | None) -> list[OrderKey]:
    """Parse runs/search ``order_by`` strings such as ``metrics.loss DESC``."""
    keys = _parse_order_strings(order_by, _RUN_GRAMMAR)
    # MLflow's SqlAlchemyStore rejects a repeated sort key for runs (not for other entities).
    if len({(k.kind, k.key) for k in keys}) != len(keys):
        raise InvalidParameter(f"`order_by` contains duplicate fields: {order_by}")
    return keys


def parse_experiment_order_by(order_by: Sequence[str] | None) -> list[OrderKey]:
    """Parse experiments/search ``order_by`` strings; only attributes can be sorted on."""
    return _parse_order_strings(order_by, _EXPERIMENT_GRAMMAR)


def parse_logged_model_order_by(
    order_by: Sequence[Mapping[str, object]] | None,
) -> list[OrderKey]:
    """Parse logged-models/search ``order_by`` dicts ``{field_name, ascending, dataset_*}``."""
    if order_by is None:
        return []
    if not isinstance(order_by, (list, tuple)):
        raise InvalidParameter("`order_by` must be a list of dictionaries.")
    return [_parse_logged_model_order_item(item) for item in order_by]


def _parse_filter(filter_string: object, grammar: _Grammar) -> list[Clause]:
    if filter_string is None or filter_string == "":
        return []
    if not isinstance(filter_string, str):
        shown = _shorten(repr(filter_string))
        raise InvalidParameter(f"Invalid filter {shown}: expected a string.")
    if not filter_string.strip():
        raise InvalidParameter(f"Invalid filter '{_shorten(filter_string)}'. Could not be parsed.")
    scanner = _Scanner(filter_string)
    clauses = [_parse_comparison(scanner, grammar)]
    keys: set[tuple[str, str]] = set()
    while True:
        # Checked while parsing, so an oversized filter is refused before the rest is read.
        _check_limits(clauses, keys)
        if scanner.at_end():
            return clauses
        if scanner.take(_AND) is None:
            raise InvalidParameter(
                f"Invalid clause(s) in filter string: {scanner.upcoming()}. "
                "Comparisons can only be joined with AND."
            )
        clauses.append(_parse_comparison(scanner, grammar))


def _check_limits(clauses: list[Clause], keys: set[tuple[str, str]]) -> None:
    """Refuse a filter over MAX_FILTER_CLAUSES or MAX_FILTER_KEYS; ``keys`` accumulates the
    distinct (entity, key) pairs of the clauses seen so far (the newest is ``clauses[-1]``)."""
    if len(clauses) > MAX_FILTER_CLAUSES:
        raise InvalidParameter(
            f"Invalid filter: more than {MAX_FILTER_CLAUSES} comparisons. A search filter may hold "
            f"at most {MAX_FILTER_CLAUSES} comparisons joined with AND."
        )
    last = clauses[-1]
    if last.kind != ATTRIBUTE:
        keys.add((last.kind, last.key))
        if len(keys) > MAX_FILTER_KEYS:
            raise InvalidParameter(
                f"Invalid filter: more than {MAX_FILTER_KEYS} distinct keys. A search filter may "
                f"compare at most {MAX_FILTER_KEYS} distinct metric, param, tag or dataset keys."
            )


def _parse_comparison(scanner: _Scanner, grammar: _Grammar) -> Clause:
    identifier = scanner.identifier()
    kind, key = _resolve(identifier, grammar, grammar.filter_attributes)
    op = scanner.operator(identifier.text)
    allowed = _allowed_ops(grammar, kind, key)
    if op not in allowed:
        raise InvalidParameter(f"Invalid comparator '{_shorten(op)}' not one of '{list(allowed)}'")
    if op in _NULL_OPS:
        return Clause(kind, key, op, None)
    return Clause(kind, key, op, _typed_value(grammar, kind, key, op, scanner.value()))


def _resolve(
    identifier: _Identifier, grammar: _Grammar, attributes: frozenset[str]
) -> tuple[str, str]:
    """Map ``<prefix>.<key>`` to (kind, canonical key), validating both."""
    key = _unquote(identifier.key)
    kind = ATTRIBUTE if identifier.prefix is None else _kind_of(identifier.prefix, grammar)
    if kind == ATTRIBUTE:
        canonical = grammar.aliases.get(key, key)
        if canonical not in attributes:
            aliases = (alias for alias, target in grammar.aliases.items() if target in attributes)
            valid = sorted({*attributes, *aliases})
            raise InvalidParameter(
                f"Invalid attribute key '{_shorten(key)}' specified. Valid keys are '{valid}'"
            )
        return kind, canonical
    if kind == DATASET and key not in grammar.dataset_keys:
        raise InvalidParameter(
            f"Invalid dataset key '{_shorten(key)}' specified. "
            f"Valid keys are '{sorted(grammar.dataset_keys)}'"
        )
    return kind, key


def _kind_of(prefix: str, grammar: _Grammar) -> str:
    # Prefixes are case-sensitive in MLflow ("METRICS.x" is an error); only backticks come off.
    kind = grammar.prefixes.get(_trim_backticks(prefix))
    if kind is None:
        raise InvalidParameter(
            f"Invalid entity type '{_shorten(_trim_backticks(prefix))}'. "
            f"Valid values are {sorted(grammar.prefixes)}"
        )
    return kind


def _allowed_ops(grammar: _Grammar, kind: str, key: str) -> tuple[str, ...]:
    if kind != ATTRIBUTE:
        return grammar.kind_ops[kind]
    if key in grammar.numeric_attributes:
        return _NUMERIC_OPS
    return grammar.string_attributes[key]


def _typed_value(grammar: _Grammar, kind: str, key: str, op: str, value: _Value) -> ClauseValue:
    """Check the value's form against the key's type and convert it."""
    shown = _shorten(value.text) or "nothing"
    if op in _LIST_OPS:
        if not isinstance(value.value, tuple):
            raise InvalidParameter(
                f"Expected a list of quoted string values after '{op}', got {shown}"
            )
        if kind == ATTRIBUTE and key in grammar.id_attributes:
            return tuple(_integer_id(item) for item in value.value)
        return value.value
    if value.form == "list":
        raise InvalidParameter(f"Only IN and NOT IN accept a list of values; got '{op} {shown}'")
    if kind == METRIC:
        if value.form != "number":
            raise InvalidParameter(f"Expected numeric value type for metric. Found {shown}")
        return float(value.text)
    if kind == ATTRIBUTE and key in grammar.numeric_attributes:
        return _numeric_attribute(grammar, key, value)
    if value.form != "string" or not isinstance(value.value, str):
        raise InvalidParameter(
            f"Expected a quoted string value for {kind} '{_shorten(key)}' (e.g. 'my-value'). "
            f"Got value {shown}"
        )
    if kind == ATTRIBUTE and key in grammar.id_attributes:
        return _integer_id(value.value)
    return value.value


def _numeric_attribute(grammar: _Grammar, key: str, value: _Value) -> int | float:
    if value.form != "number":
        raise InvalidParameter(
            f"Expected numeric value type for numeric attribute: {key}. "
            f"Found {_shorten(value.text) or 'nothing'}"
        )
    number = _to_number(value.text)
    if grammar.integer_only and isinstance(number, float):
        raise InvalidParameter(
            f"Invalid value for numeric attribute '{key}': '{_shorten(value.text)}'"
        )
    return number


def _to_number(text: str) -> int | float:
    """An int when the literal is an integer that fits int64 (a bigint column); else a float."""
    # The length check comes first: int() refuses literals over 4300 digits.
    if _INTEGER.fullmatch(text) and len(text.lstrip("-")) <= 19:
        number = int(text)
        if _INT64_MIN <= number <= _INT64_MAX:
            return number
    return float(text)


def _integer_id(text: str) -> int:
    # Same contract as MLflow's _parse_experiment_id: int() or INVALID_PARAMETER_VALUE.
    if _INTEGER.fullmatch(text) and len(text.strip().lstrip("+-")) <= 19:
        number = int(text)
        if _INT64_MIN <= number <= _INT64_MAX:
            return number
    raise InvalidParameter(
        f"Invalid experiment ID '{_shorten(text)}'. Experiment ID must be a valid integer."
    )


def _unquote(text: str) -> str:
    """Strip one pair of quotes, then one pair of backticks, as MLflow's _strip_quotes and
    _trim_backticks do."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return _trim_backticks(text)


def _trim_backticks(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == "`":
        return text[1:-1]
    return text


def _parse_order_strings(order_by: object, grammar: _Grammar) -> list[OrderKey]:
    if order_by is None:
        return []
    if not isinstance(order_by, (list, tuple)):
        raise InvalidParameter("`order_by` must be a list of strings.")
    return [_parse_order_string(item, grammar) for item in order_by]


def _parse_order_string(text: object, grammar: _Grammar) -> OrderKey:
    shown = _shorten(str(text))
    unparsable = InvalidParameter(f"Invalid order_by clause '{shown}'. Could not be parsed.")
    if not isinstance(text, str):
        raise unparsable
    scanner = _Scanner(text)
    try:
        identifier = scanner.identifier()
    except InvalidParameter as exc:
        raise unparsable from exc
    direction = scanner.take(_DIRECTION)
    if not scanner.at_end():
        if direction is None and len(text[scanner.pos :].split()) == 1:
            raise InvalidParameter(f"Invalid ordering key in order_by clause '{_shorten(text)}'.")
        raise unparsable
    kind, key = _resolve(identifier, grammar, grammar.order_attributes)
    if kind not in grammar.order_kinds:
        raise InvalidParameter(f"Invalid order_by entity type '{kind}' in '{_shorten(text)}'")
    return OrderKey(kind, key, direction is None or direction.upper() == "ASC")


def _parse_logged_model_order_item(item: object) -> OrderKey:
    if not isinstance(item, Mapping):
        raise InvalidParameter("`order_by` must be a list of dictionaries.")
    field_name = item.get("field_name")
    if not isinstance(field_name, str) or not field_name.strip():
        raise InvalidParameter("`field_name` in the `order_by` clause must be specified.")
    ascending = item.get("ascending", True)
    ascending = True if ascending is None else ascending  # JSON null = unset proto field
    if not isinstance(ascending, bool):
        raise InvalidParameter(
            "Value of `ascending` in the `order_by` clause must be a boolean, got "
            f"{type(ascending).__name__} for field {field_name}."
        )
    if "." not in field_name:
        name = field_name.strip()
        canonical = _LOGGED_MODEL_GRAMMAR.aliases.get(name, name)
        if canonical not in _LOGGED_MODEL_GRAMMAR.order_attributes:
            raise InvalidParameter(f"Invalid order by field name: {_shorten(field_name)}.")
        return OrderKey(ATTRIBUTE, canonical, ascending)
    prefix, key = field_name.split(".", 1)
    if prefix != "metrics":
        raise InvalidParameter(
            f"Invalid order by field name: {_shorten(prefix)}, only `metrics.<name>` is allowed."
        )
    dataset_name = _optional_str(item, "dataset_name")
    dataset_digest = _optional_str(item, "dataset_digest")
    if dataset_digest and not dataset_name:
        raise InvalidParameter(
            "`dataset_digest` can only be specified if `dataset_name` is also specified."
        )
    return OrderKey(METRIC, _unquote(key), ascending, dataset_name, dataset_digest)


def _optional_str(item: Mapping[str, object], name: str) -> str | None:
    value = item.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidParameter(f"`{name}` in the `order_by` clause must be a string.")
    return value


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_ECHO_CHARS else text[:_MAX_ECHO_CHARS] + "..."
