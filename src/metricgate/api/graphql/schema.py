"""The executable schema: schema.graphql plus how each field reads its value.

Resolvers of the root fields (resolvers.py) return the REST API's JSON (snake_case dicts from
api/codec.py and friends); every other field reads its snake_case key from its parent dict. A
key the REST JSON leaves out reads as stock's protobuf default, since stock resolves fields on
protobuf messages: "" for strings, "0" for int64s (a running run's ``endTime``), [] for lists,
false, 0. Nested objects and enums read as null (stock fails with an error on an unset enum).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from importlib import resources
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    IntValueNode,
    StringValueNode,
    ValueNode,
    build_schema,
    get_named_type,
)
from graphql.pyutils import Undefined

Getter = Callable[[dict[str, Any]], Any]

# MLflow's SQL store clamps +-inf to the largest double when it stores a metric, so stock serves
# that; metricgate keeps the infinity (REST says "Infinity"), and GraphQL's Float cannot carry it.
_DOUBLE_MAX = sys.float_info.max
_NON_FINITE = {"NaN": None, "Infinity": _DOUBLE_MAX, "-Infinity": -_DOUBLE_MAX}

# Object types whose ``value`` is a metric value (REST spells NaN and the infinities as strings).
_METRIC_TYPES = ("MlflowMetricExtension", "MlflowMetricWithRunId", "MlflowModelMetric")

_DEFAULTS: dict[str, Any] = {
    "String": "",
    "LongString": 0,
    "Float": 0.0,
    "Int": 0,
    "Boolean": False,
}

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake_case(name: str) -> str:
    """``runUuid`` -> ``run_uuid``, ``apiError`` -> ``api_error``: the REST JSON's key."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


# ---------------------------------------------------------------- LongString


def _serialize_long(value: Any) -> str:
    return str(int(value))


# A sign and 20 digits: every int64 (19 digits) with room for a few leading zeros. Longer text is
# refused before int() sees it: the argument's bound (parse_int64) runs only after the scalar is
# parsed, and int() is quadratic in the digits (a 4 MiB body holds millions; Python's own
# 4300-digit cap can be switched off with PYTHONINTMAXSTRDIGITS=0).
_MAX_LONG_TEXT = 21
_MAX_ECHO = 40  # an error quotes at most this much of the client's value


def _long_from_text(text: str) -> int | None:
    text = text.strip()
    if len(text) > _MAX_LONG_TEXT:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _parse_long(value: Any) -> int:
    """A variable: an integer or its decimal string, as JavaScript clients send int64s."""
    if isinstance(value, int) and not isinstance(value, bool):
        # orjson decodes integer literals beyond 64 bits as floats; any other decoder could hand
        # over an integer of any size, which need not travel as far as parse_int64.
        if value.bit_length() <= 64:
            return value
    elif isinstance(value, str):
        parsed = _long_from_text(value)
        if parsed is not None:
            return parsed
    shown = (
        repr(value[:_MAX_ECHO]) + "..."
        if isinstance(value, str) and len(value) > _MAX_ECHO
        else repr(value)
    )
    raise GraphQLError(f"LongString cannot represent {shown}")


def _parse_long_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
    if isinstance(node, (IntValueNode, StringValueNode)):
        parsed = _long_from_text(node.value)
        if parsed is not None:
            return parsed
        if len(node.value) > _MAX_ECHO:
            # graphql-core's own message would quote the whole literal (up to the 100,000
            # characters a document may hold).
            shown = node.value[:_MAX_ECHO] + "..."
            if isinstance(node, StringValueNode):
                shown = f'"{shown}"'
            raise GraphQLError(f"Expected value of type 'LongString', found {shown}.", node)
    return Undefined  # graphql-core words the error


# ---------------------------------------------------------------- field getters


def _getter(key: str, default: Any) -> Getter:
    def get(source: dict[str, Any]) -> Any:
        return source.get(key, default)

    return get


def _metric_value(source: dict[str, Any]) -> float | None:
    value: float | str | None = source.get("value", 0.0)
    if isinstance(value, str):  # "NaN", "Infinity", "-Infinity" (codec.encode_double)
        return _NON_FINITE.get(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else math.copysign(_DOUBLE_MAX, value)
    return value


def _default_for(field_type: GraphQLOutputType) -> Any:
    # get_nullable_type's overloads do not take the GraphQLWrappingType in GraphQLOutputType.
    nullable = field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type
    if isinstance(nullable, GraphQLList):
        return []
    return _DEFAULTS.get(get_named_type(field_type).name)


def _resolver(get: Getter) -> Callable[..., Any]:
    def resolve(source: dict[str, Any], _info: GraphQLResolveInfo, **_args: Any) -> Any:
        return get(source)

    return resolve


class Schema:
    """The schema, its resolvers wired in, and each plain field's getter (the executor's fast
    path for lists of flat objects reads values through them without a resolver call each)."""

    def __init__(self, sdl: str, resolvers: dict[tuple[str, str], Callable[..., Any]]) -> None:
        """``resolvers``: (type name, field name) -> resolver, for fields not read from a dict."""
        self.graphql: GraphQLSchema = build_schema(sdl)
        long_string = self.graphql.type_map["LongString"]
        assert isinstance(long_string, GraphQLScalarType)
        # build_schema gives a custom scalar no functions; graphql-core's own constructor sets
        # them the same way, as instance attributes over the methods.
        long_string.serialize = _serialize_long  # type: ignore[method-assign]  # as graphql-core sets them
        long_string.parse_value = _parse_long  # type: ignore[method-assign]  # as graphql-core sets them
        long_string.parse_literal = _parse_long_literal  # type: ignore[method-assign]  # as graphql-core sets them
        self.getters: dict[tuple[str, str], Getter] = {}
        unused = set(resolvers)
        for type_ in self.graphql.type_map.values():
            if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
                continue
            for name, field in type_.fields.items():
                custom = resolvers.get((type_.name, name))
                if custom is not None:
                    field.resolve = custom
                    unused.discard((type_.name, name))
                else:
                    get = (
                        _metric_value
                        if name == "value" and type_.name in _METRIC_TYPES
                        else (_getter(snake_case(name), _default_for(field.type)))
                    )
                    self.getters[(type_.name, name)] = get
                    field.resolve = _resolver(get)
        if unused:
            raise ValueError(f"resolvers for fields the schema lacks: {sorted(unused)}")

    def leaf(
        self, type_: GraphQLObjectType, field_name: str
    ) -> tuple[Getter, Callable[[Any], Any]] | None:
        """(getter, serializer) of a plain field of scalar or enum type; None for anything else
        (lists, objects, custom resolvers, fields with arguments)."""
        get = self.getters.get((type_.name, field_name))
        field = type_.fields.get(field_name)
        if get is None or field is None or field.args:
            return None
        if isinstance(field.type, (GraphQLScalarType, GraphQLEnumType)):  # nullable leaves only
            return get, field.type.serialize
        return None


def load_sdl() -> str:
    return resources.files(__package__).joinpath("schema.graphql").read_text(encoding="utf-8")
