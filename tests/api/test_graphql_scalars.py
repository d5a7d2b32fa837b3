"""GraphQL's LongString scalar is bounded before it is parsed (issue 11 §3 follow-up).

An int64 argument (``maxResults``, ...) is range-checked by parse_int64 only after the scalar has
turned the client's text into an int. Text longer than any int64 is refused by the scalar itself,
so a literal or variable of a million digits never reaches int(), and its error quotes only a
prefix of it.
"""

from __future__ import annotations

import builtins
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from graphql import GraphQLError, GraphQLScalarType, IntValueNode, StringValueNode, Undefined

from metricgate.api.graphql import schema as schema_module
from metricgate.api.graphql.handler import SCHEMA


@pytest.fixture
def client(module_client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """One app and database for the module (tests/conftest.py ``module_client``)."""
    return module_client


INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)
HUGE = "1" * 1_000_000
# A query document is at most 100,000 characters (graphql/limits): the longest literal that fits.
LONG_LITERAL = "1" * 90_000
SEARCH = (
    "query($n: LongString) { mlflowSearchModelVersions(input: {maxResults: $n}) { nextPageToken } }"
)


def _long_string() -> GraphQLScalarType:
    scalar = SCHEMA.graphql.type_map["LongString"]
    assert isinstance(scalar, GraphQLScalarType)
    return scalar


@pytest.fixture
def int_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The text of every int() call the scalar makes: a module global ``int`` shadows the builtin,
    records what it converts and still answers isinstance() as the builtin does."""
    calls: list[str] = []

    class SpyMeta(type):
        def __instancecheck__(cls, instance: Any) -> bool:
            return isinstance(instance, builtins.int)

        def __call__(cls, value: Any, *args: Any) -> int:
            calls.append(value if isinstance(value, str) else repr(value))
            return builtins.int(value, *args)

    class SpyInt(metaclass=SpyMeta):
        pass

    monkeypatch.setattr(schema_module, "int", SpyInt, raising=False)
    return calls


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("42", 42), (" 7 ", 7), ("-3", -3), (str(INT64_MAX), INT64_MAX), (str(INT64_MIN), INT64_MIN),
     ("0" * 19 + "12", 12), (str(2**64), 2**64)],  # out of int64: parse_int64 refuses it later
)  # fmt: skip
def test_long_strings_that_fit_are_parsed(text: str, value: int) -> None:
    scalar = _long_string()
    assert scalar.parse_value(text) == value
    assert scalar.parse_literal(StringValueNode(value=text)) == value
    if text.strip().lstrip("-").isdigit():
        assert scalar.parse_literal(IntValueNode(value=text.strip())) == value


@pytest.mark.parametrize(
    "text", ["1" * 22, "-" + "9" * 21, "0" * 30 + "1", HUGE, "many", "", "1.5"]
)
def test_longer_or_malformed_text_is_refused_before_int(int_calls: list[str], text: str) -> None:
    scalar = _long_string()
    with pytest.raises(GraphQLError, match=r"^LongString cannot represent "):
        scalar.parse_value(text)
    for node in (StringValueNode(value=text), IntValueNode(value=text)):
        try:
            assert scalar.parse_literal(node) is Undefined  # graphql-core words the error
        except GraphQLError as error:  # a long one is worded here, quoting only a prefix
            assert len(text) > 40 and error.message.startswith(
                "Expected value of type 'LongString', found "
            )
            assert len(error.message) < 100
    assert all(len(seen) <= 21 for seen in int_calls), [seen[:30] for seen in int_calls]


def test_variables_beyond_64_bits_and_non_integers_are_refused() -> None:
    scalar = _long_string()
    assert scalar.parse_value(2**64 - 1) == 2**64 - 1  # orjson's largest integer
    for bad in (2**64, -(2**64), 10**4000, True, 1.0, None, [1]):
        with pytest.raises(GraphQLError, match=r"^LongString cannot represent "):
            scalar.parse_value(bad)


async def _post(
    client: TestClient[Any, Any], query: str, variables: Any = None
) -> tuple[int, bytes]:
    data = orjson.dumps({"query": query, "variables": variables})
    async with client.post(
        "/graphql", data=data, headers={"Content-Type": "application/json"}
    ) as resp:
        return resp.status, await resp.read()


async def test_huge_numbers_answer_a_short_error(client: TestClient[Any, Any]) -> None:
    literal = SEARCH.replace("query($n: LongString) ", "").replace("$n", LONG_LITERAL)
    status, raw = await _post(client, literal)
    body = orjson.loads(raw)
    assert status == 200 and body["data"] is None
    [message] = body["errors"]
    expected = "Expected value of type 'LongString', found " + "1" * 40 + "...."
    assert message == expected and len(raw) < 1000, message[:300]
    status, raw = await _post(client, SEARCH, {"n": HUGE})
    body = orjson.loads(raw)
    assert status == 200 and body["data"] is None
    [message] = body["errors"]
    assert message.startswith("Variable '$n' got invalid value '1111") and len(raw) < 1000, message[
        :300
    ]
    assert message.endswith("LongString cannot represent '" + "1" * 40 + "'...")
    # The bound does not get in the way of an ordinary value.
    status, raw = await _post(client, SEARCH, {"n": "5"})
    assert status == 200 and orjson.loads(raw)["errors"] is None
