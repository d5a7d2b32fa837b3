"""Issue 11 "Also": a generated family of malformed requests over every REST endpoint.

Each endpoint has a *valid* request (``Endpoint``: method, path, body or query, built against one
world of real objects: an experiment, a run with data and artifacts, a logged model, a registered
model with versions and aliases, a webhook, upload sessions). Every field it reads has a
``Kind`` that says which values are wrong for it; hypothesis replaces one field at a time with a
wrong value (wrong JSON types, out-of-range numbers, NUL, invalid UTF-8 and lone surrogates,
over-long strings, garbage ids and page tokens, bad filters), so the request gets past every
other check and reaches the field's own validation. Besides: every required field left out,
unknown fields added, non-object JSON bodies, non-JSON bodies, wrong Content-Types, and garbage
query strings on endpoints that read none.

Every such request must answer 4xx with MLflow's error body (``{"error_code": str, "message":
str}``, JSON) within a client timeout, never 5xx, and leave the stores as they were: the
``Fingerprint`` (a digest of every PostgreSQL table's rows, the Redis streams' last entry ids and
the artifact directory's files) is taken before and compared after each request.

``test_every_route_has_a_strategy`` enumerates the application's router: a new route without an
``Endpoint`` here (or an entry in ``NOT_FUZZED`` with its reason) fails it, as
tests/api/test_int64_bounds.py does for int64 fields. ``test_valid_requests_are_valid`` sends
every template unmutated (against a world of its own) and expects 2xx, so a template that rots
cannot turn the family into a test of the first check only.

Budget: the ``malformed`` hypothesis settings below are derandomized (the same examples on every
run, in CI too) with a fixed ``max_examples`` per field; METRICGATE_MALFORMED_EXAMPLES raises it
for a longer local search (with ``--timeout=0``: pytest-timeout's 120 s is per test). Regressions
found by the family are pinned as ``PINNED`` cases.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.api.conftest import API, JSON_CONTENT_TYPE, Api, Reply, now_ms
from tests.conftest import flush_redis, fresh_database
from yarl import URL

from metricgate.api.app import create_app
from metricgate.config import Settings
from metricgate.domain.search.paging import encode_history_token, encode_page_token

ARTIFACTS = "/api/2.0/mlflow-artifacts"
METRICGATE = "/api/2.0/metricgate"
AJAX3 = "/ajax-api/3.0/mlflow"

# Generous: a hang is a failure, a slow answer on a loaded CI machine is not.
REQUEST_TIMEOUT_S = 20.0
EXAMPLES = int(os.environ.get("METRICGATE_MALFORMED_EXAMPLES", "4"))

MALFORMED = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # reproducible: the same examples on every run
    database=None,  # no .hypothesis/ directory in the checkout
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    print_blob=True,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# ---------------------------------------------------------------- wire encoding


@dataclass(frozen=True)
class Raw:
    """JSON text (or, in a query string, percent-encoded text) sent verbatim: what orjson cannot
    write (lone surrogates, invalid UTF-8, integers beyond 64 bits, NaN tokens)."""

    text: bytes

    def __repr__(self) -> str:
        return f"Raw({self.text[:60]!r})"


def encode_json(value: Any) -> bytes:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return (
            b"{"
            + b",".join(orjson.dumps(str(k)) + b":" + encode_json(v) for k, v in value.items())
            + b"}"
        )
    if isinstance(value, list):
        return b"[" + b",".join(encode_json(v) for v in value) + b"]"
    return orjson.dumps(value)


def encode_query(pairs: list[tuple[str, Any]]) -> str:
    out = []
    for key, value in pairs:
        text = value.text.decode("ascii") if isinstance(value, Raw) else quote(str(value), safe="")
        out.append(f"{quote(key, safe='')}={text}")
    return "&".join(out)


# ---------------------------------------------------------------- bad values, by kind of field

_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")


def texts(min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.text(_CHARS, min_size=min_size, max_size=max_size)


NOT_STR = st.one_of(
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=2),
    st.dictionaries(texts(1, 4), st.integers(0, 9), max_size=2),
)
NOT_LIST = st.one_of(
    texts(),
    st.integers(INT64_MIN, INT64_MAX),
    st.booleans(),
    st.dictionaries(texts(1, 4), texts(0, 4), max_size=2),
)
NOT_OBJECT = st.one_of(
    texts(),
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=2),
)

# Strings no PostgreSQL text column can hold: NUL, and JSON whose bytes are not UTF-8 or whose
# escapes name a lone surrogate.
UNSTORABLE = st.one_of(
    texts().map(lambda t: t + "\x00" + t),
    st.sampled_from([
        Raw(b'"a\\ud800"'), Raw(b'"\\udfff"'), Raw(b'"x\\ud83d y"'),  # lone surrogates
        Raw(b'"a\xffb"'), Raw(b'"\xc3"'), Raw(b'"\xed\xa0\x80"'), Raw(b'"\xc0\xaf"'),  # not UTF-8
    ]),
)  # fmt: skip
Q_NUL = st.sampled_from([Raw(b"%00"), Raw(b"a%00b"), Raw(b"%00%00")])

OUT_OF_RANGE_INT = st.sampled_from([
    Raw(b"-9223372036854775809"), Raw(b"9223372036854775808"), Raw(b"18446744073709551616"),
    Raw(b"123456789012345678901234567890"), Raw(b"1e19"), Raw(b"-1e400"), Raw(b"1e400"),
    Raw(b'"9223372036854775808"'), Raw(b'"-9223372036854775809"'),
])  # fmt: skip
NON_FINITE = st.sampled_from([Raw(b"NaN"), Raw(b"Infinity"), Raw(b"-Infinity")])


def _not_int_text(t: str) -> bool:
    try:
        int(t.strip())
    except ValueError:
        return True
    return False


def _not_float_text(t: str) -> bool:
    try:
        float(t)
    except ValueError:
        return True
    return False


# "" is in Int.json(): in a JSON body it is a string where a number belongs (an empty query
# parameter is an absent one, as in MLflow's GET handlers).
NOT_INT = st.one_of(
    texts(1).filter(_not_int_text),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=2),
    st.dictionaries(texts(1, 4), st.integers(0, 9), max_size=2),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    NON_FINITE,
    OUT_OF_RANGE_INT,
)


class Kind:
    """What is wrong for one field: ``json()`` values for a JSON body, ``query()`` for a query
    string (text only there: wrong JSON types cannot be spelled); None when nothing is."""

    def json(self) -> st.SearchStrategy[Any] | None:
        raise NotImplementedError

    def query(self) -> st.SearchStrategy[Any] | None:
        return None


@dataclass(frozen=True)
class Text(Kind):
    """A string. ``max_len``: longer is refused; ``empty``: "" is refused; ``lookup``: the value
    names an existing object, so any other string is refused (404)."""

    max_len: int | None = None
    empty: bool = False
    lookup: bool = False
    query_nul: bool = True  # a NUL in the query string is refused

    def _common(self) -> list[st.SearchStrategy[Any]]:
        out: list[st.SearchStrategy[Any]] = []
        if self.max_len is not None:
            out.append(st.integers(self.max_len + 1, self.max_len + 64).map(lambda n: "x" * n))
            out.append(st.just("y" * (self.max_len * 4 + 1000)))
        if self.empty:
            out.append(st.just(""))
        if self.lookup:
            out.append(texts(0, 12).map(lambda t: "zz-missing-" + t))
        return out

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(NOT_STR, UNSTORABLE, *self._common())

    def query(self) -> st.SearchStrategy[Any] | None:
        options = self._common() + ([Q_NUL] if self.query_nul else [])
        return st.one_of(*options) if options else None


BAD_KEYS = st.one_of(
    st.sampled_from(
        [
            "",
            "a!b",
            "a\nb",
            "tab\tkey",
            "a*",
            "quote'",
            "semi;colon",
            "../up",
            "/abs",
            "a/../b",
            ".",
            "a/./b",
            "a//b",
            "trailing/",
            "#hash",
            "back\\slash",
        ]
    ),
    texts(1, 8).map(lambda t: "../" + t),
    st.integers(251, 300).map(lambda n: "k" * n),
)


@dataclass(frozen=True)
class Key(Kind):
    """A metric, param or tag key: MLflow's characters, no path tricks, at most 250 chars."""

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(NOT_STR, UNSTORABLE, BAD_KEYS)

    def query(self) -> st.SearchStrategy[Any]:
        return st.one_of(Q_NUL, BAD_KEYS.filter(lambda k: k != ""))


BAD_RUN_IDS = st.one_of(
    st.sampled_from(
        ["-abc", "_abc", "a b", "a/b", "a.b", "a:b", "'; DROP TABLE runs; --", "%", "a" * 257]
    ),
    st.uuids().map(lambda u: u.hex),  # well-formed, does not exist: 404
    st.text(st.characters(categories=("Ll", "Nd")), min_size=1, max_size=40).map(lambda t: "0" + t),
)


@dataclass(frozen=True)
class RunId(Kind):
    """A run id; ``exists``: a well-formed id of no run is refused too (404)."""

    exists: bool = True

    def _bad(self) -> st.SearchStrategy[str]:
        return (
            BAD_RUN_IDS
            if self.exists
            else BAD_RUN_IDS.filter(lambda r: not r.isalnum() or len(r) > 256)
        )

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(NOT_STR, UNSTORABLE, st.just(""), self._bad())

    def query(self) -> st.SearchStrategy[Any]:
        return st.one_of(Q_NUL, self._bad())


BAD_EXPERIMENT_IDS = st.one_of(
    st.sampled_from(
        ["abc", "1.5", "1e3", "-1", " ", "0x10", "9223372036854775808", "99999999999999999999999"]
    ),
    st.integers(INT64_MIN, -1).map(str),
    texts(1, 10).filter(_not_int_text),
)


@dataclass(frozen=True)
class ExperimentId(Kind):
    """An experiment id: a string holding a non-negative int64. ``exists``: a well-formed id
    of no experiment is refused too (404)."""

    exists: bool = True

    def _bad(self) -> st.SearchStrategy[str]:
        if self.exists:
            return st.one_of(BAD_EXPERIMENT_IDS, st.integers(10**12, INT64_MAX).map(str))
        return BAD_EXPERIMENT_IDS

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(NOT_STR, UNSTORABLE, self._bad())

    def query(self) -> st.SearchStrategy[Any]:
        return st.one_of(Q_NUL, self._bad())


@dataclass(frozen=True)
class Int(Kind):
    """An int64 field; values outside [lo, hi] are refused as well."""

    lo: int = INT64_MIN
    hi: int = INT64_MAX

    def json(self) -> st.SearchStrategy[Any]:
        out = [NOT_INT, st.just("")]
        if self.lo > INT64_MIN:
            out.append(st.integers(INT64_MIN, self.lo - 1))
        if self.hi < INT64_MAX:
            out.append(st.integers(self.hi + 1, INT64_MAX))
        return st.one_of(*out)

    def query(self) -> st.SearchStrategy[Any]:
        out: list[st.SearchStrategy[Any]] = [
            texts(1, 10).filter(_not_int_text),
            st.sampled_from(
                [str(INT64_MAX + 1), str(INT64_MIN - 1), "1e3", "1.5", "0x10", str(2**64)]
            ),
            Q_NUL,
        ]
        if self.lo > INT64_MIN:
            out.append(st.integers(INT64_MIN, self.lo - 1).map(str))
        if self.hi < INT64_MAX:
            out.append(st.integers(self.hi + 1, INT64_MAX).map(str))
        return st.one_of(*out)


@dataclass(frozen=True)
class Double(Kind):
    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            texts().filter(_not_float_text),
            st.booleans(),
            st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=2),
            st.dictionaries(texts(1, 4), st.integers(INT64_MIN, INT64_MAX), max_size=2),
            st.just(None),
            UNSTORABLE,
        )


@dataclass(frozen=True)
class Enum(Kind):
    """One of ``valid`` (compared after ``fold``, e.g. upper-casing)."""

    valid: tuple[str, ...]
    upper: bool = False

    def _bad_text(self) -> st.SearchStrategy[str]:
        fold: Callable[[str], str] = str.upper if self.upper else (lambda s: s)
        return st.one_of(
            texts(1, 12), st.sampled_from(["", "NOPE", "running ", "-1", "99"])
        ).filter(lambda s: s != "" and fold(s) not in self.valid and s not in self.valid)

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            self._bad_text(),
            UNSTORABLE,
            st.integers(50, 10**6),
            st.booleans(),
            st.floats(0.5, 9.5).filter(lambda f: not f.is_integer()),
            st.lists(st.sampled_from(self.valid), min_size=1, max_size=2),
            st.dictionaries(texts(1, 3), st.integers(INT64_MIN, INT64_MAX), min_size=1, max_size=2),
        )

    def query(self) -> st.SearchStrategy[Any]:
        return st.one_of(self._bad_text(), Q_NUL)


@dataclass(frozen=True)
class Bool(Kind):
    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            texts(0, 8).filter(lambda s: s.lower() not in ("true", "false")),
            st.integers(INT64_MIN, INT64_MAX),
            st.floats(allow_nan=False, allow_infinity=False),
            st.lists(st.booleans(), max_size=2),
            st.dictionaries(texts(1, 3), st.booleans(), max_size=1),
            UNSTORABLE,
        )

    def query(self) -> st.SearchStrategy[Any]:
        return texts(0, 8).filter(lambda s: s.lower() not in ("true", "false"))


@dataclass(frozen=True)
class ListOf(Kind):
    """A JSON list of ``item`` (strings by default): non-lists, and lists holding a bad item."""

    item: Kind = field(default_factory=lambda: Text())
    non_empty: bool = False

    def json(self) -> st.SearchStrategy[Any]:
        inner = self.item.json()
        bad = [NOT_LIST.filter(lambda v: v != "")]
        if inner is not None:
            bad.append(st.lists(inner, min_size=1, max_size=3))
        if self.non_empty:
            bad.append(st.just([]))
        return st.one_of(*bad)

    def query(self) -> st.SearchStrategy[Any] | None:
        return self.item.query()


@dataclass(frozen=True)
class Objects(Kind):
    """A JSON list of objects: non-lists and lists holding a non-object."""

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            NOT_LIST.filter(lambda v: v != ""), st.lists(NOT_OBJECT, min_size=1, max_size=3)
        )


@dataclass(frozen=True)
class Present(Kind):
    """Only presence is checked (any non-null value will do): nothing but removal is wrong."""

    def json(self) -> None:
        return None


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


BAD_OFFSET_TOKENS = st.one_of(
    st.sampled_from([
        "!!!", "not-base64", "====", "YQ", _b64(b"not json"), _b64(b"[]"), _b64(b'"offset"'), _b64(b"{}"),
        _b64(b'{"offset": -1}'), _b64(b'{"offset": 1.5}'), _b64(b'{"offset": "x"}'), _b64(b'{"offset": null}'),
        _b64(b'{"offset": true}'), _b64(b'{"offset": 9223372036854775807}'), _b64(b'{"offset": 1e400}'),
        _b64(b'{"offset": [1]}'), _b64(b"\xff\xfe"), _b64(b"[" * 5000), "A" * 5000, "\u00e9t\u00e9",
    ]),
    st.binary(max_size=40).map(_b64).filter(lambda t: t != ""),
    texts(1, 30),
)  # fmt: skip


@dataclass(frozen=True)
class PageToken(Kind):
    """A page token this server never issued. ``history``: get-history's keyset tokens are
    checked further (``after``); ``registry``: registry history's tokens."""

    flavour: str = "offset"

    def _bad(self) -> st.SearchStrategy[str]:
        extra: list[st.SearchStrategy[str]] = []
        if self.flavour == "history":
            extra.append(
                st.sampled_from(
                    [
                        _b64(b'{"offset": 0, "after": 1}'),
                        _b64(b'{"offset": 0, "after": [1, 2]}'),
                        _b64(b'{"offset": 0, "after": [1, -2, "0x1p+0"]}'),
                        _b64(b'{"offset": 0, "after": [1, 2, "zz"]}'),
                        _b64(b'{"offset": 0, "after": [1e400, 2, "0x1p+0"]}'),
                        _b64(b'{"offset": 0, "after": ["1", 2, "0x1p+0"]}'),
                    ]
                )
            )
        if self.flavour == "registry":
            base = st.sampled_from([
                "!!!", _b64(b"{}"), _b64(b'{"before_id": 0}'), _b64(b'{"before_id": -5}'), _b64(b'{"before_id": "1"}'),
                _b64(b'{"before_id": 9223372036854775808}'), _b64(b"[1]"), "\u00e9", "A" * 5000,
            ])  # fmt: skip
            return st.one_of(base, st.binary(min_size=1, max_size=30).map(_b64))
        return st.one_of(BAD_OFFSET_TOKENS, *extra)

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(NOT_STR.filter(lambda v: v not in (0, False)), UNSTORABLE, self._bad())

    def query(self) -> st.SearchStrategy[Any]:
        return st.one_of(Q_NUL, self._bad())


BAD_FILTERS = st.one_of(
    st.sampled_from([
        "name =", "= 'x'", "metrics.", "metrics.m >", "params.p = ", "attributes.nope = 'x'", "name = 'unterminated",
        "tags.`unterminated = 'x'", "name LIKE", "name = 'a' AND", "AND", "OR name = 'a'", "(((", "name = 'a' OR OR",
        "metrics.m > 'x'", "name IN ()", "name = 1 = 2", "\"", "`", "metrics.m = NaNx", "name ~= 'a'",
    ]),
    texts(1, 20).map(lambda t: "name = '" + t.replace("'", "")),  # never closed
)  # fmt: skip


@dataclass(frozen=True)
class Filter(Kind):
    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(NOT_STR.filter(lambda v: v not in (0, False)), UNSTORABLE, BAD_FILTERS)

    def query(self) -> st.SearchStrategy[Any]:
        return st.one_of(Q_NUL, BAD_FILTERS)


BAD_ORDER_BY = st.one_of(
    st.sampled_from(
        [
            "name DESCENDING",
            "nope.x",
            "metrics.",
            "name ASC DESC",
            "`",
            "name,",
            "1 = 1",
            "name; drop",
        ]
    ),
    texts(1, 10).map(lambda t: "metrics.`" + t.replace("`", "")),  # unterminated
)


@dataclass(frozen=True)
class OrderBy(Kind):
    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            NOT_LIST.filter(lambda v: v != ""),
            st.lists(st.one_of(NOT_STR, UNSTORABLE, BAD_ORDER_BY), min_size=1, max_size=2),
        )

    def query(self) -> st.SearchStrategy[Any]:
        return st.one_of(Q_NUL, BAD_ORDER_BY)


@dataclass(frozen=True)
class Segment(Kind):
    """A path segment naming an object: anything else is refused (400/404)."""

    def json(self) -> None:
        return None

    def segment(self) -> st.SearchStrategy[str]:
        return st.one_of(
            st.uuids().map(lambda u: u.hex),
            st.sampled_from(
                [
                    "x",
                    "0",
                    "-1",
                    "9" * 30,
                    "m-" + "0" * 32,
                    "%00",
                    "%FF",
                    "..",
                    "a%2Fb",
                    "%2e%2e",
                    "%20",
                    "%C2%B2",
                    "%D9%A3",
                ]
            ),  # '²' and '٣': str.isdigit() is true of both
            st.text(st.characters(categories=("L", "N")), min_size=1, max_size=20).map(
                lambda t: quote(t, safe="")
            ),
        )


@dataclass(frozen=True)
class IntSegment(Segment):
    """A numeric path segment (file index, part number) that names nothing: ``valid`` lists the
    spellings that do."""

    valid: tuple[int, ...] = ()

    def segment(self) -> st.SearchStrategy[str]:
        return st.one_of(
            st.sampled_from(
                [
                    "-1",
                    "x",
                    "1.0",
                    "1e0",
                    "%C2%B2",
                    "%D9%A1",
                    "%EF%BC%91",
                    "0x1",
                    "9999999999",
                    "%20",
                    "+1",
                ]
            ),
            st.integers(0, 10**9).filter(lambda n: n not in self.valid).map(str),
            st.text(st.characters(categories=("N",)), min_size=1, max_size=3)
            .filter(lambda t: not t.isascii())
            .map(lambda t: quote(t, safe="")),
        )


@dataclass(frozen=True)
class ArtifactPath(Kind):
    """The ``{path}`` tail of an artifact route: traversal, absolute, NUL; and, unless
    ``missing_ok`` (an upload names a new file, a delete of nothing is done), missing files."""

    missing_ok: bool = False

    def json(self) -> None:
        return None

    def segment(self) -> st.SearchStrategy[str]:
        bad = [
            st.sampled_from(
                [
                    "..",
                    "../etc/passwd",
                    "a/../../x",
                    "%2e%2e/x",
                    "%2E%2E%2Fx",
                    "a/%00/b",
                    "/etc/passwd",
                    "C:%5Cwindows",
                    "a%5C..%5C..%5Cb",
                    "{A}/../../..",
                    "{A}/./x",
                    "{A}//x",
                    "{A}/%2e%2e/%2e%2e/x",
                ]
            ),
            texts(1, 8).map(lambda t: "{A}/../../" + quote(t, safe="")),
        ]
        if not self.missing_ok:
            bad.append(st.sampled_from(["{A}/missing.bin", "{A}/nope/deeper/x"]))
        return st.one_of(*bad)


@dataclass(frozen=True)
class Object(Kind):
    """A JSON object field."""

    def json(self) -> st.SearchStrategy[Any]:
        return NOT_OBJECT


_TRAVERSALS = [
    "..",
    "../x",
    "a/../../x",
    "/etc/passwd",
    "a/../..",
    "./../x",
    "..\\x",
    "a\\..\\..\\b",
]


@dataclass(frozen=True)
class ArtifactPathQuery(Kind):
    """An artifact path in a query string; ``missing_ok``: a path that names nothing answers
    an empty listing (not an error), so only traversal and NUL are wrong."""

    missing_ok: bool = False

    def query(self) -> st.SearchStrategy[Any]:
        bad: list[st.SearchStrategy[Any]] = [
            st.sampled_from(_TRAVERSALS),
            Q_NUL,
            st.sampled_from([Raw(b"%2e%2e/x")]),
        ]
        if not self.missing_ok:
            bad.append(
                texts(1, 8).map(
                    lambda t: "missing-" + t.replace("/", "_").replace("\\", "_").replace(".", "_")
                )
            )
        return st.one_of(*bad)


@dataclass(frozen=True)
class ArtifactPathText(Kind):
    """An artifact path in a JSON body."""

    empty: bool = False
    lookup: bool = False

    def json(self) -> st.SearchStrategy[Any]:
        bad: list[st.SearchStrategy[Any]] = [NOT_STR, UNSTORABLE, st.sampled_from(_TRAVERSALS)]
        if self.empty:
            bad.append(st.just(""))
        if self.lookup:
            bad.append(
                texts(1, 8).map(
                    lambda t: "missing/" + t.replace("/", "_").replace("\\", "_").replace(".", "_")
                )
            )
        return st.one_of(*bad)


@dataclass(frozen=True)
class LocalPath(Kind):
    """mpu's ``path``: the client's local file, whose basename names the artifact."""

    lookup: bool = False

    def json(self) -> st.SearchStrategy[Any]:
        bad: list[st.SearchStrategy[Any]] = [
            NOT_STR,
            UNSTORABLE,
            st.sampled_from(["", "dir/", "C:\\dir\\", "/tmp/..", ".."]),
        ]
        if self.lookup:
            bad.append(
                texts(1, 8).map(
                    lambda t: (
                        "/tmp/other-" + t.replace("/", "_").replace("\\", "_").replace(".", "_")
                    )
                )
            )
        return st.one_of(*bad)


BAD_VERSIONS = st.sampled_from(
    ["abc", "-1", "0", "1.5", "1e3", "99999", "2147483648", "99999999999", " ", "v1", "0x1"]
)


@dataclass(frozen=True)
class Version(Kind):
    """A model version number ("1"); ``exists``: a number of no version is refused too (404)."""

    exists: bool = True

    def _bad(self) -> st.SearchStrategy[str]:
        return BAD_VERSIONS if self.exists else BAD_VERSIONS.filter(lambda v: v != "99999")

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.lists(st.integers(0, 9), max_size=2),
            st.dictionaries(texts(1, 4), st.integers(0, 9), max_size=2), UNSTORABLE, self._bad(), st.just(""),
        )  # fmt: skip

    def query(self) -> st.SearchStrategy[Any]:
        return st.one_of(Q_NUL, self._bad())


BAD_STAGES = texts(1, 12).filter(
    lambda s: s.lower() not in ("none", "staging", "production", "archived")
)


@dataclass(frozen=True)
class Stage(Kind):
    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(NOT_STR, UNSTORABLE, BAD_STAGES, st.just(""))

    def query(self) -> st.SearchStrategy[Any]:
        return st.one_of(Q_NUL, BAD_STAGES)


@dataclass(frozen=True)
class Alias(Kind):
    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            NOT_STR,
            UNSTORABLE,
            st.sampled_from(
                ["", "latest", "LATEST", "v1", "V22", "a b", "a/b", "a.b", "@x", "x" * 256]
            ),
        )


@dataclass(frozen=True)
class ModelName(Kind):
    """A registered model name to create: 1-256 characters without '/' or ':'."""

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(NOT_STR, UNSTORABLE, st.sampled_from(["", "a/b", "a:b", "/", "x" * 257]))


@dataclass(frozen=True)
class Source(Kind):
    """A model version's source (issue 11 §5: MLflow's rules, no traversal in any scheme)."""

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            NOT_STR, UNSTORABLE,
            st.sampled_from(["", "file:///etc", "../../../../etc/passwd", "mlflow-artifacts:/../../etc",
                             "runs:/{R}/../../../etc", "/etc/passwd", "s3://b/" + "x" * 10_001,
                             "models:/nope/1/../../x", "runs:/{R}/%2e%2e/%2e%2e/etc"]),
        )  # fmt: skip


@dataclass(frozen=True)
class Url(Kind):
    """A webhook URL: absolute http(s), a host, no credentials, no whitespace."""

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            NOT_STR, UNSTORABLE,
            st.sampled_from(["", "ftp://h/x", "http://", "http:///x", "//h/x", "h/x", "http://u:p@h/x", "http://h:0/",
                             "http://h:99999/", "http://h:x/", "http://a b/", "javascript:alert(1)",
                             "http://h/" + "x" * 5000, "http://[::1/"]),
        )  # fmt: skip


@dataclass(frozen=True)
class Event(Kind):
    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            NOT_STR,
            UNSTORABLE,
            st.sampled_from(["", "nope", "model_version", "*.*.*", "MODEL_VERSION.CREATED"]),
        )


@dataclass(frozen=True)
class Sha256(Kind):
    """A SHA-256: 64 hex digits or base64 of 32 bytes."""

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            NOT_STR.filter(lambda v: v not in (0, False)), UNSTORABLE,
            st.sampled_from(["xyz", "0" * 63, "0" * 65, "g" * 64, _b64(b"x" * 31), _b64(b"x" * 33)]),
        )  # fmt: skip


@dataclass(frozen=True)
class RefUri(Kind):
    """An artifact reference's target: s3:// or file:// inside the allowed prefixes."""

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            NOT_STR,
            UNSTORABLE,
            st.sampled_from(
                [
                    "",
                    "http://h/x",
                    "file:///etc/passwd",
                    "s3://",
                    "s3:///key",
                    "{REF_URI}?q=1",
                    "{REF_URI}#f",
                    "{REF_URI}/../../../../etc/passwd",
                    "{REF_URI}/%2e%2e/%2e%2e/x",
                    "{REF_URI}.missing",
                ]
            ),
        )


@dataclass(frozen=True)
class GraphQLQuery(Kind):
    """GraphQL's ``query``: a request without a non-blank string query is not one GraphQL request
    (a string that does not parse is a 200 with ``errors``, GraphQL's own answer)."""

    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(NOT_STR, st.sampled_from(["", "   ", "\n\t"]))


@dataclass(frozen=True)
class GraphQLVariables(Kind):
    def json(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            texts(),
            st.integers(INT64_MIN, INT64_MAX),
            st.booleans(),
            st.lists(st.integers(INT64_MIN, INT64_MAX), max_size=2),
        )

    def query(self) -> st.SearchStrategy[Any]:
        return st.one_of(
            texts(1, 10).filter(lambda t: _not_json_object(t)),
            st.sampled_from(["[1]", "1", '"s"', "true"]),
        )


def _not_json_object(text: str) -> bool:
    try:
        return not isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return True


@dataclass(frozen=True)
class GraphQLName(Kind):
    def json(self) -> st.SearchStrategy[Any]:
        return NOT_STR


# ---------------------------------------------------------------- the world the templates refer to


@dataclass
class World:
    api: Api
    values: dict[str, str]

    def fill(self, template: Any) -> Any:
        if isinstance(template, str):
            for name, value in self.values.items():
                template = template.replace("{" + name + "}", value)
            return template
        if isinstance(template, dict):
            return {k: self.fill(v) for k, v in template.items()}
        if isinstance(template, list):
            return [self.fill(v) for v in template]
        return template


MLMODEL_JSON = orjson.dumps(
    {"artifact_path": "model", "flavors": {}, "utc_time_created": "2024-01-01", "run_id": "{R}"}
).decode()


async def build_world(api: Api, artifact_root: Path) -> dict[str, str]:
    """Creates the objects the templates name; returns the placeholder values."""
    v: dict[str, str] = {}
    suffix = uuid.uuid4().hex[:8]
    v["EN"] = f"fuzz-exp-{suffix}"
    v["E"] = await api.create_experiment(v["EN"], tags=[{"key": "k", "value": "v"}])
    v["E2"] = await api.create_experiment(f"fuzz-spare-{suffix}")
    run = await api.create_run(v["E"], run_name="fuzz-run")
    v["R"] = run["info"]["run_id"]
    v["A"] = run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
    v["R2"] = (await api.create_run(v["E"]))["info"][
        "run_id"
    ]  # deleted and restored by the templates
    (
        await api.post(
            "/runs/log-batch",
            {
                "run_id": v["R"],
                "metrics": [
                    {"key": "m", "value": float(i), "timestamp": now_ms(), "step": i}
                    for i in range(5)
                ],
                "params": [{"key": "p", "value": "v"}],
                "tags": [{"key": "t", "value": "v"}],
            },
        )
    ).ok()
    for path, data in (
        ("dir/file.txt", b"hello"),
        ("model/MLmodel", b"artifact_path: model\n"),
        ("doomed.txt", b"x"),
    ):
        reply = await api.request(
            "PUT", f"{ARTIFACTS}/artifacts/{v['A']}/{path}", data=data, absolute=True
        )
        reply.ok()
    # Logged model, with an artifact of its own.
    lm = (
        await api.post(
            "/logged-models",
            {
                "experiment_id": v["E"],
                "name": "fuzz-lm",
                "source_run_id": v["R"],
                "tags": [{"key": "t", "value": "v"}],
                "params": [{"key": "p", "value": "v"}],
            },
        )
    ).ok()
    v["LM"] = lm["model"]["info"]["model_id"]
    lm_root = lm["model"]["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
    (
        await api.request(
            "PUT", f"{ARTIFACTS}/artifacts/{lm_root}/MLmodel", data=b"x: 1\n", absolute=True
        )
    ).ok()
    v["LM2"] = (
        await api.post("/logged-models", {"experiment_id": v["E"], "name": "fuzz-lm-doomed"})
    ).ok()["model"]["info"]["model_id"]
    # Registry: a model with two versions, aliases and tags, and spares that templates rename or delete.
    v["M"] = f"fuzz-model-{suffix}"
    (
        await api.post(
            "/registered-models/create", {"name": v["M"], "tags": [{"key": "t", "value": "v"}]}
        )
    ).ok()
    for _ in range(3):
        (
            await api.post(
                "/model-versions/create",
                {"name": v["M"], "source": f"runs:/{v['R']}/model", "run_id": v["R"]},
            )
        ).ok()
    (
        await api.post(
            "/model-versions/set-tag", {"name": v["M"], "version": "1", "key": "t", "value": "v"}
        )
    ).ok()
    for alias in ("champion", "old"):
        (
            await api.post(
                "/registered-models/alias", {"name": v["M"], "alias": alias, "version": "1"}
            )
        ).ok()
    for spare in ("rename-me", "doomed"):
        v[spare] = f"fuzz-{spare}-{suffix}"
        (await api.post("/registered-models/create", {"name": v[spare]})).ok()
    # Webhooks: inactive, so that no delivery ever changes rows behind the fingerprint's back.
    for name in ("W", "W2"):
        body = {
            "url": "http://127.0.0.1:9/hook",
            "events": ["model_version.created"],
            "active": False,
        }
        v[name] = str(
            (await api.post(f"{METRICGATE}/webhooks", body, absolute=True)).ok()["webhook"]["id"]
        )
    # Upload sessions: one to complete (its one part is in), one to abort.
    for name in ("U", "U2"):
        body = {
            "run_id": v["R"],
            "path": f"up/{name}.bin",
            "part_size": 5 * 1024 * 1024,
            "files": [{"size": 10}],
        }
        v[name] = (await api.post(f"{METRICGATE}/uploads", body, absolute=True)).ok()["upload_id"]
    (
        await api.request(
            "PUT",
            f"{METRICGATE}/uploads/{v['U']}/files/0/parts/1",
            data=b"0123456789",
            absolute=True,
        )
    ).ok()
    # Proxied multipart uploads: one with a part in (to complete), one to abort.
    for name in ("MPU", "MPU2"):
        body = {"path": f"/tmp/{name}.bin", "num_parts": 1}
        v[name] = (await api.post(f"{ARTIFACTS}/mpu/create/{v['A']}", body, absolute=True)).ok()[
            "upload_id"
        ]
    reply = await api.request("PUT", f"{ARTIFACTS}/mpu/part/{v['A']}/MPU.bin?upload_id={v['MPU']}&part_number=1",
                              data=b"part", absolute=True)  # fmt: skip
    reply.ok()
    v["ETAG"] = reply.headers["ETag"].strip('"')
    # An object under the artifact root for artifact-references to point at.
    external = artifact_root / "external" / "obj.bin"
    external.parent.mkdir(parents=True, exist_ok=True)
    external.write_bytes(b"0123456789")
    v["REF_URI"] = external.as_uri()
    (
        await api.post(
            f"{METRICGATE}/artifact-references",
            {"run_id": v["R"], "path": "refs/existing.bin", "uri": v["REF_URI"], "size": 10},
            absolute=True,
        )
    ).ok()
    v["TOKEN"] = encode_page_token(1)
    v["HTOKEN"] = encode_history_token(1, (0, 0, 0.0))
    # Every acknowledged metric visible (flushed) before the first fingerprint.
    (await api.post("/runs/search", {"experiment_ids": [v["E"]]})).ok()
    return v


# ---------------------------------------------------------------- "nothing stored"


class Fingerprint:
    """A digest of everything a request could store: every row of every table, the last entry
    id of every Redis stream (trimming does not move it, an XADD does) and the artifact files."""

    def __init__(
        self, conn: asyncpg.Connection, redis: aioredis.Redis, artifact_root: Path
    ) -> None:
        self._conn, self._redis, self._root = conn, redis, artifact_root
        self._sql: str | None = None

    async def _query(self) -> str:
        if self._sql is None:
            tables = await self._conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
            )
            assert tables
            parts = [
                f"SELECT '{r['tablename']}' AS t, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS h "
                f'FROM "{r["tablename"]}" x'
                for r in tables
            ]
            self._sql = " UNION ALL ".join(parts)
        return self._sql

    async def take(self) -> dict[str, Any]:
        rows = {r["t"]: r["h"] for r in await self._conn.fetch(await self._query())}
        streams = {}
        async for key in self._redis.scan_iter(count=1000):
            if await self._redis.type(key) == b"stream":
                info = await self._redis.xinfo_stream(key)
                streams[key] = info["last-generated-id"]
        files = sorted(
            (str(p.relative_to(self._root)), p.stat().st_size)
            for p in self._root.rglob("*")
            if p.is_file()
        )
        return {
            "tables": rows,
            "streams": streams,
            "files": hashlib.sha256(repr(files).encode()).hexdigest(),
            "list": files,
        }


@dataclass
class Harness:
    world: World
    fingerprint: Fingerprint


async def _open_world(
    pg_server_url: str, template: str, redis_url: str, root: Path
) -> AsyncIterator[Harness]:
    async with fresh_database(pg_server_url, template) as db:
        await flush_redis(redis_url)
        artifacts = root / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        app_settings = Settings.from_env(
            {}, database_url=db, redis_url=redis_url, artifacts_uri=artifacts.as_uri()
        )
        async with TestClient(TestServer(create_app(app_settings))) as client:
            api = TimedApi(client)
            values = await build_world(api, artifacts)
            conn = await asyncpg.connect(db)
            redis = aioredis.Redis.from_url(redis_url)
            try:
                yield Harness(World(api, values), Fingerprint(conn, redis, artifacts))
            finally:
                await redis.aclose()
                await conn.close()


class TimedApi(Api):
    """``Api`` whose every request has a client-side deadline: a hang fails, it does not stall."""

    async def request(self, method: str, path: str, **kw: Any) -> Reply:
        async def _send() -> Reply:
            return await super(TimedApi, self).request(method, path, **kw)

        try:
            return await asyncio.wait_for(_send(), REQUEST_TIMEOUT_S)
        except TimeoutError:
            pytest.fail(
                f"{method} {path} got no answer within {REQUEST_TIMEOUT_S} s", pytrace=False
            )


@pytest.fixture(scope="module")
async def harness(
    pg_server_url: str,
    migrated_template: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Harness]:
    """One world for the whole module: a malformed request must leave it as it was, and the
    fingerprint checks exactly that after every one."""
    async for opened in _open_world(
        pg_server_url, migrated_template, redis_url, tmp_path_factory.mktemp("malformed")
    ):
        yield opened


# ---------------------------------------------------------------- the endpoints


@dataclass(frozen=True)
class Endpoint:
    """One route's valid request and the kinds of its fields.

    ``path`` is from the server root; ``{X}`` are world values (``build_world``), ``{PATH}`` etc.
    are ``pathvars`` of this endpoint, which ``segments`` may replace with garbage. ``fields``
    address the JSON body (``"tags.0.key"``) or, for GET, query parameters by name. ``order``
    sorts the unmutated sends of ``test_valid_requests_are_valid`` (destructive ones last).
    """

    id: str
    method: str
    path: str
    handler: str  # module.function under metricgate.api: the route guard's key
    body: Any = None
    query: tuple[tuple[str, str], ...] = ()
    fields: dict[str, Kind] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    pathvars: dict[str, str] = field(default_factory=dict)
    segments: dict[str, Kind] = field(default_factory=dict)
    data: bytes | None = None  # a non-JSON body (artifact and part uploads)
    order: int = 0
    json_body: bool = True  # False: the handler reads no JSON body (path-only POST/DELETE)
    headers: dict[str, st.SearchStrategy[str]] = field(
        default_factory=dict
    )  # request headers it reads

    @property
    def in_query(self) -> bool:
        return self.method == "GET" or self.data is not None


Q = API  # /api/2.0/mlflow

_TAG = {"key": "fz", "value": "v"}
_TAG_KINDS = {"tags": Objects(), "tags.0.key": Key(), "tags.0.value": Text()}
_PLAIN_TAG_KINDS = {"tags": Objects(), "tags.0.key": Text(empty=True), "tags.0.value": Text()}
_METRIC = {"key": "m", "value": 1.5, "timestamp": 1700000000000, "step": 3}
_SEARCH_VIEW = Enum(("ACTIVE_ONLY", "DELETED_ONLY", "ALL", "1", "2", "3"), upper=True)
_RUN_STATUS = Enum(
    ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED", "1", "2", "3", "4", "5")
)


def _metric_kinds(prefix: str) -> dict[str, Kind]:
    return {
        f"{prefix}key": Key(), f"{prefix}value": Double(), f"{prefix}timestamp": Int(lo=0), f"{prefix}step": Int(),
        f"{prefix}model_id": Text(max_len=256), f"{prefix}dataset_name": Text(max_len=500),
        f"{prefix}dataset_digest": Text(max_len=256),
    }  # fmt: skip


# Headers some handlers read: who is asking and why (registry writes), checksums (upload parts),
# byte ranges (downloads). Values an HTTP client can send (no control characters).
_PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
BAD_AUTHORIZATION = st.one_of(
    # (A bare "Basic" with no credentials reads as no user: nothing is authenticated yet.)
    st.sampled_from(
        ["Basic !!!", "Basic =", "Basic YQ", "Basic " + _b64(b"\xff\xfe:pw"), "basic %%%"]
    ),
    _PRINTABLE.filter(lambda t: t.strip() != "").map(lambda t: "Basic " + t.replace("=", "") + "!"),
)
AUDIT_HEADERS = {
    "Authorization": BAD_AUTHORIZATION,
    "X-Metricgate-User": st.integers(257, 400).map(lambda n: "u" * n),
    "X-Metricgate-Comment": st.integers(5001, 5100).map(lambda n: "c" * n),
}
BAD_RANGES = st.one_of(
    st.sampled_from(["bytes=abc", "bytes=-", "bytes=5-1", "bytes=999999-", "bytes=-0", "bytes=--1", "bytes=1-2-3",
                     "bytes=" + "9" * 40 + "-", "bytes=0x1-", "bytes= -"]),
    st.integers(5, 10**12).map(lambda n: f"bytes={n}-"),  # the file has 5 bytes
)  # fmt: skip
BAD_SHA256_HEADERS = st.sampled_from(["xyz", "0" * 63, "g" * 64, _b64(b"x" * 31), "0" * 64 + "0"])
BAD_MD5_HEADERS = st.sampled_from(["xyz", _b64(b"x" * 15), _b64(b"x" * 17), "!!!!", "0" * 32])

ENDPOINTS: list[Endpoint] = [
    # ------------------------------------------------------------ experiments
    Endpoint(
        "experiments-create",
        "POST",
        f"{Q}/experiments/create",
        "experiments.create_experiment",
        body={"name": "fuzz-new-{R}", "artifact_location": "", "tags": [_TAG]},
        fields={
            "name": Text(max_len=500, empty=True),
            "artifact_location": Text(),
            **_TAG_KINDS,
            "tags.0.value": Text(max_len=20000),
        },
        required=("name",),
    ),
    Endpoint(
        "experiments-get",
        "GET",
        f"{Q}/experiments/get",
        "experiments.get_experiment",
        query=(("experiment_id", "{E}"),),
        fields={"experiment_id": ExperimentId()},
        required=("experiment_id",),
    ),
    Endpoint(
        "experiments-get-by-name",
        "GET",
        f"{Q}/experiments/get-by-name",
        "experiments.get_experiment_by_name",
        query=(("experiment_name", "{EN}"),),
        fields={"experiment_name": Text(empty=True, lookup=True)},
        required=("experiment_name",),
    ),
    Endpoint(
        "experiments-search",
        "POST",
        f"{Q}/experiments/search",
        "experiments.search_experiments",
        body={
            "max_results": 10,
            "filter": "name = '{EN}'",
            "order_by": ["name"],
            "view_type": "ACTIVE_ONLY",
            "page_token": "{TOKEN}",
        },
        fields={
            "max_results": Int(1, 50000),
            "filter": Filter(),
            "order_by": OrderBy(),
            "view_type": _SEARCH_VIEW,
            "page_token": PageToken(),
        },
    ),
    Endpoint(
        "experiments-search-get",
        "GET",
        f"{Q}/experiments/search",
        "experiments.search_experiments",
        query=(
            ("max_results", "10"),
            ("filter", "name = '{EN}'"),
            ("order_by", "name"),
            ("view_type", "ALL"),
            ("page_token", "{TOKEN}"),
        ),
        fields={
            "max_results": Int(1, 50000),
            "filter": Filter(),
            "order_by": OrderBy(),
            "view_type": _SEARCH_VIEW,
            "page_token": PageToken(),
        },
    ),
    Endpoint(
        "experiments-update",
        "POST",
        f"{Q}/experiments/update",
        "experiments.update_experiment",
        body={"experiment_id": "{E2}", "new_name": "fuzz-renamed-{R}"},
        fields={"experiment_id": ExperimentId(), "new_name": Text(max_len=500, empty=True)},
        required=("experiment_id",),
    ),
    Endpoint(
        "experiments-delete",
        "POST",
        f"{Q}/experiments/delete",
        "experiments.delete_experiment",
        body={"experiment_id": "{E2}"},
        fields={"experiment_id": ExperimentId()},
        required=("experiment_id",),
        order=90,
    ),
    Endpoint(
        "experiments-restore",
        "POST",
        f"{Q}/experiments/restore",
        "experiments.restore_experiment",
        body={"experiment_id": "{E2}"},
        fields={"experiment_id": ExperimentId()},
        required=("experiment_id",),
        order=91,
    ),
    Endpoint(
        "experiments-set-tag",
        "POST",
        f"{Q}/experiments/set-experiment-tag",
        "experiments.set_experiment_tag",
        body={"experiment_id": "{E}", "key": "k2", "value": "v"},
        fields={"experiment_id": ExperimentId(), "key": Key(), "value": Text(max_len=20000)},
        required=("experiment_id", "key"),
    ),
    Endpoint(
        "experiments-delete-tag",
        "POST",
        f"{Q}/experiments/delete-experiment-tag",
        "experiments.delete_experiment_tag",
        body={"experiment_id": "{E}", "key": "k"},
        fields={"experiment_id": ExperimentId(), "key": Text(empty=True, lookup=True)},
        required=("experiment_id", "key"),
        order=50,
    ),
    # ------------------------------------------------------------ runs
    Endpoint(
        "runs-create",
        "POST",
        f"{Q}/runs/create",
        "runs.create_run",
        body={
            "experiment_id": "{E}",
            "start_time": 1700000000000,
            "user_id": "u",
            "run_name": "n",
            "tags": [_TAG],
        },
        fields={
            "experiment_id": ExperimentId(),
            "start_time": Int(),
            "user_id": Text(),
            "run_name": Text(),
            **_TAG_KINDS,
        },
        required=("experiment_id",),
    ),
    Endpoint(
        "runs-get",
        "GET",
        f"{Q}/runs/get",
        "runs.get_run",
        query=(("run_id", "{R}"),),
        fields={"run_id": RunId()},
        required=("run_id",),
    ),
    Endpoint(
        "runs-update",
        "POST",
        f"{Q}/runs/update",
        "runs.update_run",
        body={
            "run_id": "{R}",
            "status": "RUNNING",
            "end_time": 1700000000001,
            "run_name": "fuzz-run",
        },
        fields={"run_id": RunId(), "status": _RUN_STATUS, "end_time": Int(), "run_name": Text()},
        required=("run_id",),
    ),
    Endpoint(
        "runs-delete",
        "POST",
        f"{Q}/runs/delete",
        "runs.delete_run",
        body={"run_id": "{R2}"},
        fields={"run_id": RunId()},
        required=("run_id",),
        order=80,
    ),
    Endpoint(
        "runs-restore",
        "POST",
        f"{Q}/runs/restore",
        "runs.restore_run",
        body={"run_id": "{R2}"},
        fields={"run_id": RunId()},
        required=("run_id",),
        order=81,
    ),
    Endpoint(
        "runs-set-tag",
        "POST",
        f"{Q}/runs/set-tag",
        "runs.set_tag",
        body={"run_id": "{R}", "key": "t2", "value": "v"},
        fields={"run_id": RunId(), "key": Key(), "value": Text()},
        required=("run_id", "key"),
    ),
    Endpoint(
        "runs-delete-tag",
        "POST",
        f"{Q}/runs/delete-tag",
        "runs.delete_tag",
        body={"run_id": "{R}", "key": "t"},
        fields={"run_id": RunId(), "key": Text(empty=True, lookup=True)},
        required=("run_id", "key"),
        order=50,
    ),
    Endpoint(
        "runs-log-parameter",
        "POST",
        f"{Q}/runs/log-parameter",
        "runs.log_parameter",
        body={"run_id": "{R}", "key": "p", "value": "v"},
        fields={"run_id": RunId(), "key": Key(), "value": Text()},
        required=("run_id", "key"),
    ),
    Endpoint(
        "runs-log-metric",
        "POST",
        f"{Q}/runs/log-metric",
        "runs.log_metric",
        body={
            "run_id": "{R}",
            **_METRIC,
            "model_id": "{LM}",
            "dataset_name": "ds",
            "dataset_digest": "dg",
        },
        fields={"run_id": RunId(), **_metric_kinds("")},
        required=("run_id", "key", "value", "timestamp"),
    ),
    # Metrics only: log-batch's columnar fast path sees these first.
    Endpoint(
        "runs-log-batch-metrics",
        "POST",
        f"{Q}/runs/log-batch",
        "runs.log_batch",
        body={"run_id": "{R}", "metrics": [_METRIC, {**_METRIC, "step": 4}]},
        fields={"run_id": RunId(), "metrics": Objects(), **_metric_kinds("metrics.1.")},
        required=("run_id", "metrics.1.key", "metrics.1.value", "metrics.1.timestamp"),
    ),
    Endpoint(
        "runs-log-batch",
        "POST",
        f"{Q}/runs/log-batch",
        "runs.log_batch",
        body={
            "run_id": "{R}",
            "metrics": [{**_METRIC, "model_id": "{LM}"}],
            "params": [{"key": "p", "value": "v"}],
            "tags": [_TAG],
        },
        fields={
            "run_id": RunId(),
            "metrics": Objects(),
            **_metric_kinds("metrics.0."),
            "params": Objects(),
            "params.0.key": Key(),
            "params.0.value": Text(),
            **_TAG_KINDS,
        },
        required=(
            "run_id",
            "metrics.0.key",
            "metrics.0.value",
            "metrics.0.timestamp",
            "params.0.key",
            "tags.0.key",
        ),
    ),
    Endpoint(
        "runs-log-inputs",
        "POST",
        f"{Q}/runs/log-inputs",
        "runs.log_inputs",
        body={
            "run_id": "{R}",
            "datasets": [
                {
                    "dataset": {
                        "name": "ds",
                        "digest": "dg",
                        "source_type": "local",
                        "source": "{}",
                        "schema": "{}",
                        "profile": "{}",
                    },
                    "tags": [{"key": "mlflow.data.context", "value": "train"}],
                }
            ],
            "models": [{"model_id": "{LM}"}],
        },
        fields={
            "run_id": RunId(),
            "datasets": Objects(),
            "datasets.0.dataset": Object(),
            "datasets.0.dataset.name": Text(empty=True),
            "datasets.0.dataset.digest": Text(empty=True),
            "datasets.0.dataset.source_type": Text(),
            "datasets.0.dataset.source": Text(),
            "datasets.0.dataset.schema": Text(),
            "datasets.0.dataset.profile": Text(),
            "datasets.0.tags": Objects(),
            "datasets.0.tags.0.key": Text(empty=True),
            "datasets.0.tags.0.value": Text(),
            "models": Objects(),
            "models.0.model_id": Text(empty=True),
        },
        required=(
            "run_id",
            "datasets.0.dataset",
            "datasets.0.dataset.name",
            "datasets.0.dataset.digest",
            "models.0.model_id",
        ),
    ),
    Endpoint(
        "runs-outputs",
        "POST",
        f"{Q}/runs/outputs",
        "runs.log_outputs",
        body={"run_id": "{R}", "models": [{"model_id": "{LM}", "step": 2}]},
        fields={
            "run_id": RunId(),
            "models": Objects(),
            "models.0.model_id": Text(empty=True),
            "models.0.step": Int(),
        },
        required=("run_id", "models.0.model_id"),
    ),
    Endpoint(
        "runs-log-model",
        "POST",
        f"{Q}/runs/log-model",
        "runs.log_model",
        body={"run_id": "{R}", "model_json": MLMODEL_JSON},
        fields={"run_id": RunId(), "model_json": Text(empty=True)},
        required=("run_id", "model_json"),
    ),
    Endpoint(
        "runs-search",
        "POST",
        f"{Q}/runs/search",
        "runs.search_runs",
        body={
            "experiment_ids": ["{E}"],
            "filter": "metrics.m > 0",
            "run_view_type": "ACTIVE_ONLY",
            "max_results": 10,
            "order_by": ["metrics.m DESC"],
            "page_token": "{TOKEN}",
        },
        fields={
            "experiment_ids": ListOf(ExperimentId(exists=False)),
            "filter": Filter(),
            "run_view_type": _SEARCH_VIEW,
            "max_results": Int(1, 50000),
            "order_by": OrderBy(),
            "page_token": PageToken(),
        },
    ),
    Endpoint(
        "runs-search-get",
        "GET",
        f"{Q}/runs/search",
        "runs.search_runs",
        query=(
            ("experiment_ids", "{E}"),
            ("filter", "metrics.m > 0"),
            ("run_view_type", "ALL"),
            ("max_results", "10"),
            ("order_by", "metrics.m DESC"),
            ("page_token", "{TOKEN}"),
        ),
        fields={
            "experiment_ids": ListOf(ExperimentId(exists=False)),
            "filter": Filter(),
            "run_view_type": _SEARCH_VIEW,
            "max_results": Int(1, 50000),
            "order_by": OrderBy(),
            "page_token": PageToken(),
        },
    ),
    # ------------------------------------------------------------ metric reads
    Endpoint(
        "get-history",
        "GET",
        f"{Q}/metrics/get-history",
        "metrics.get_history",
        query=(
            ("run_id", "{R}"),
            ("metric_key", "m"),
            ("max_results", "2"),
            ("page_token", "{HTOKEN}"),
        ),
        fields={
            "run_id": RunId(),
            "metric_key": Text(empty=True),
            "max_results": Int(1, 25000),
            "page_token": PageToken("history"),
        },
        required=("run_id", "metric_key"),
    ),
    Endpoint(
        "get-history-bulk-interval",
        "GET",
        f"{Q}/metrics/get-history-bulk-interval",
        "metrics.get_history_bulk_interval",
        query=(
            ("run_ids", "{R}"),
            ("metric_key", "m"),
            ("max_results", "10"),
            ("start_step", "0"),
            ("end_step", "10"),
        ),
        fields={
            "run_ids": ListOf(RunId(exists=False)),
            "metric_key": Text(empty=True),
            "max_results": Int(1, 2500),
            "start_step": Int(INT64_MIN, 10),
            "end_step": Int(0, INT64_MAX),
        },
        required=("run_ids", "metric_key", "start_step", "end_step"),
    ),
    # ------------------------------------------------------------ logged models
    Endpoint(
        "logged-models-create",
        "POST",
        f"{Q}/logged-models",
        "logged_models.create_logged_model",
        body={
            "experiment_id": "{E}",
            "name": "fuzz-lm-new",
            "model_type": "t",
            "source_run_id": "{R}",
            "params": [{"key": "p", "value": "v"}],
            "tags": [_TAG],
        },
        fields={
            "experiment_id": ExperimentId(),
            "name": Text(),
            "model_type": Text(),
            "source_run_id": Text(),
            "params": Objects(),
            "params.0.key": Text(empty=True),
            "params.0.value": Text(),
            **_PLAIN_TAG_KINDS,
        },
        required=("experiment_id", "params.0.key", "tags.0.key"),
    ),
    Endpoint(
        "logged-models-search",
        "POST",
        f"{Q}/logged-models/search",
        "logged_models.search_logged_models",
        body={
            "experiment_ids": ["{E}"],
            "filter": "name = 'fuzz-lm'",
            "max_results": 10,
            "page_token": "{TOKEN}",
            "order_by": [{"field_name": "creation_timestamp", "ascending": False}],
        },
        fields={
            "experiment_ids": ListOf(ExperimentId(exists=False), non_empty=True),
            "filter": Filter(),
            "max_results": Int(1, 1000),
            "page_token": PageToken(),
            "order_by": Objects(),
            "order_by.0.field_name": Text(empty=True),
            "order_by.0.ascending": Bool(),
        },
        required=("experiment_ids", "order_by.0.field_name"),
    ),
    Endpoint(
        "logged-models-get",
        "GET",
        f"{Q}/logged-models/{{LMX}}",
        "logged_models.get_logged_model",
        pathvars={"LMX": "{LM}"},
        segments={"LMX": Segment()},
    ),
    Endpoint(
        "logged-models-finalize",
        "PATCH",
        f"{Q}/logged-models/{{LMX}}",
        "logged_models.finalize_logged_model",
        body={"status": "LOGGED_MODEL_READY"},
        pathvars={"LMX": "{LM}"},
        segments={"LMX": Segment()},
        fields={
            "status": Enum(
                (
                    "LOGGED_MODEL_STATUS_UNSPECIFIED",
                    "LOGGED_MODEL_PENDING",
                    "LOGGED_MODEL_READY",
                    "LOGGED_MODEL_UPLOAD_FAILED",
                    "0",
                    "1",
                    "2",
                    "3",
                )
            )
        },
        required=("status",),
    ),
    Endpoint(
        "logged-models-delete",
        "DELETE",
        f"{Q}/logged-models/{{LMX}}",
        "logged_models.delete_logged_model",
        pathvars={"LMX": "{LM2}"},
        segments={"LMX": Segment()},
        order=90,
        json_body=False,
    ),
    Endpoint(
        "logged-models-set-tags",
        "PATCH",
        f"{Q}/logged-models/{{LMX}}/tags",
        "logged_models.set_logged_model_tags",
        body={"tags": [_TAG]},
        pathvars={"LMX": "{LM}"},
        segments={"LMX": Segment()},
        fields=_PLAIN_TAG_KINDS,
        required=("tags.0.key",),
    ),
    Endpoint(
        "logged-models-delete-tag",
        "DELETE",
        f"{Q}/logged-models/{{LMX}}/tags/{{KEY}}",
        "logged_models.delete_logged_model_tag",
        pathvars={"LMX": "{LM}", "KEY": "t"},
        segments={"LMX": Segment()},
        order=50,
        json_body=False,
    ),
    Endpoint(
        "logged-models-log-params",
        "POST",
        f"{Q}/logged-models/{{LMX}}/params",
        "logged_models.log_logged_model_params",
        body={"params": [{"key": "p2", "value": "v"}]},
        pathvars={"LMX": "{LM}"},
        segments={"LMX": Segment()},
        fields={"params": Objects(), "params.0.key": Text(empty=True), "params.0.value": Text()},
        required=("params.0.key",),
    ),
    Endpoint(
        "logged-models-artifact-file",
        "GET",
        f"{Q}/logged-models/{{LMX}}/artifacts/files",
        "ui_artifacts.logged_model_artifact",
        headers={"Range": BAD_RANGES},
        query=(("artifact_file_path", "MLmodel"),),
        pathvars={"LMX": "{LM}"},
        segments={"LMX": Segment()},
        fields={"artifact_file_path": ArtifactPathQuery()},
        required=("artifact_file_path",),
    ),
    Endpoint(
        "logged-models-artifact-directory",
        "GET",
        f"{Q}/logged-models/{{LMX}}/artifacts/directories",
        "ui_artifacts.logged_model_directory",
        query=(("artifact_directory_path", ""),),
        pathvars={"LMX": "{LM}"},
        segments={"LMX": Segment()},
        fields={"artifact_directory_path": ArtifactPathQuery(missing_ok=True)},
    ),
    # ------------------------------------------------------------ artifacts (tracking API and UI)
    Endpoint(
        "artifacts-list-run",
        "GET",
        f"{Q}/artifacts/list",
        "artifacts.list_run_artifacts",
        query=(("run_id", "{R}"), ("path", "dir")),
        fields={"run_id": RunId(), "path": ArtifactPathQuery(missing_ok=True)},
        required=("run_id",),
    ),
    Endpoint(
        "get-artifact",
        "GET",
        "/get-artifact",
        "ui_artifacts.run_artifact",
        headers={"Range": BAD_RANGES},
        query=(("run_uuid", "{R}"), ("path", "dir/file.txt")),
        fields={"run_uuid": RunId(), "path": ArtifactPathQuery()},
        required=("run_uuid", "path"),
    ),
    Endpoint(
        "model-version-get-artifact",
        "GET",
        "/model-versions/get-artifact",
        "ui_artifacts.model_version_artifact",
        headers={"Range": BAD_RANGES},
        query=(("name", "{M}"), ("version", "1"), ("path", "MLmodel")),
        fields={
            "name": Text(empty=True, lookup=True),
            "version": Version(),
            "path": ArtifactPathQuery(),
        },
        required=("name", "version", "path"),
    ),
    Endpoint(
        "proxied-list",
        "GET",
        f"{ARTIFACTS}/artifacts",
        "artifacts.list_artifacts",
        query=(("path", "{A}/dir"),),
        fields={"path": ArtifactPathQuery(missing_ok=True)},
    ),
    Endpoint(
        "proxied-download",
        "GET",
        f"{ARTIFACTS}/artifacts/{{PATH}}",
        "artifacts.download_artifact",
        headers={"Range": BAD_RANGES},
        pathvars={"PATH": "{A}/dir/file.txt"},
        segments={"PATH": ArtifactPath()},
    ),
    Endpoint(
        "proxied-upload",
        "PUT",
        f"{ARTIFACTS}/artifacts/{{PATH}}",
        "artifacts.upload_artifact",
        pathvars={"PATH": "{A}/dir/new.txt"},
        segments={"PATH": ArtifactPath(missing_ok=True)},
        data=b"new bytes",
    ),
    Endpoint(
        "proxied-delete",
        "DELETE",
        f"{ARTIFACTS}/artifacts/{{PATH}}",
        "artifacts.delete_artifact",
        pathvars={"PATH": "{A}/doomed.txt"},
        segments={"PATH": ArtifactPath(missing_ok=True)},
        order=90,
        json_body=False,
    ),
    Endpoint(
        "proxied-presigned",
        "GET",
        f"{ARTIFACTS}/presigned/{{PATH}}",
        "artifacts.presigned_download",
        pathvars={"PATH": "{A}/dir/file.txt"},
        segments={"PATH": ArtifactPath()},
    ),
    Endpoint(
        "mpu-create",
        "POST",
        f"{ARTIFACTS}/mpu/create/{{PATH}}",
        "multipart.create_multipart_upload",
        body={"path": "/tmp/fresh.bin", "num_parts": 2},
        pathvars={"PATH": "{A}"},
        segments={"PATH": ArtifactPath(missing_ok=True)},
        fields={"path": LocalPath(), "num_parts": Int(1, 10000)},
        required=("path",),
    ),
    Endpoint(
        "mpu-complete",
        "POST",
        f"{ARTIFACTS}/mpu/complete/{{PATH}}",
        "multipart.complete_multipart_upload",
        body={
            "path": "/tmp/MPU.bin",
            "upload_id": "{MPU}",
            "parts": [{"part_number": 1, "etag": "{ETAG}"}],
        },
        pathvars={"PATH": "{A}"},
        segments={"PATH": ArtifactPath()},
        fields={
            "path": LocalPath(lookup=True),
            "upload_id": Text(empty=True, lookup=True),
            "parts": Objects(),
            "parts.0.part_number": Int(1, 1),
            "parts.0.etag": Text(empty=True, lookup=True),
        },
        required=("path", "upload_id", "parts", "parts.0.part_number"),
        order=60,
    ),
    Endpoint(
        "mpu-abort",
        "POST",
        f"{ARTIFACTS}/mpu/abort/{{PATH}}",
        "multipart.abort_multipart_upload",
        body={"path": "/tmp/MPU2.bin", "upload_id": "{MPU2}"},
        pathvars={"PATH": "{A}"},
        segments={"PATH": ArtifactPath()},
        fields={"path": LocalPath(lookup=True), "upload_id": Text(empty=True, lookup=True)},
        required=("path", "upload_id"),
        order=60,
    ),
    Endpoint(
        "mpu-part",
        "PUT",
        f"{ARTIFACTS}/mpu/part/{{PATH}}",
        "multipart.upload_part",
        query=(("upload_id", "{MPU}"), ("part_number", "1")),
        pathvars={"PATH": "{A}/MPU.bin"},
        segments={"PATH": ArtifactPath()},
        data=b"part",
        fields={"upload_id": Text(empty=True, lookup=True), "part_number": Int(1, 10000)},
        required=("upload_id", "part_number"),
    ),
    # ------------------------------------------------------------ registry
    Endpoint(
        "registered-models-create",
        "POST",
        f"{Q}/registered-models/create",
        "registry.create_registered_model",
        headers=AUDIT_HEADERS,
        body={"name": "fuzz-new-model-{R}", "tags": [_TAG], "description": "d"},
        fields={
            "name": ModelName(),
            **_TAG_KINDS,
            "description": Text(),
            "comment": Text(max_len=5000),
        },
        required=("name",),
    ),
    Endpoint(
        "registered-models-get",
        "GET",
        f"{Q}/registered-models/get",
        "registry.get_registered_model",
        query=(("name", "{M}"),),
        fields={"name": Text(empty=True, lookup=True)},
        required=("name",),
    ),
    Endpoint(
        "registered-models-rename",
        "POST",
        f"{Q}/registered-models/rename",
        "registry.rename_registered_model",
        headers=AUDIT_HEADERS,
        body={"name": "{rename-me}", "new_name": "fuzz-renamed-{R}"},
        fields={"name": Text(empty=True, lookup=True), "new_name": ModelName()},
        required=("name", "new_name"),
    ),
    Endpoint(
        "registered-models-update",
        "PATCH",
        f"{Q}/registered-models/update",
        "registry.update_registered_model",
        headers=AUDIT_HEADERS,
        body={"name": "{M}", "description": "d2"},
        fields={"name": Text(empty=True, lookup=True), "description": Text()},
        required=("name",),
    ),
    Endpoint(
        "registered-models-delete",
        "DELETE",
        f"{Q}/registered-models/delete",
        "registry.delete_registered_model",
        headers=AUDIT_HEADERS,
        body={"name": "{doomed}"},
        fields={"name": Text(empty=True, lookup=True)},
        required=("name",),
        order=90,
    ),
    Endpoint(
        "registered-models-search",
        "GET",
        f"{Q}/registered-models/search",
        "registry.search_registered_models",
        query=(
            ("filter", "name = '{M}'"),
            ("max_results", "10"),
            ("order_by", "name ASC"),
            ("page_token", "{TOKEN}"),
        ),
        fields={
            "filter": Filter(),
            "max_results": Int(1, 1000),
            "order_by": OrderBy(),
            "page_token": PageToken(),
        },
    ),
    Endpoint(
        "registered-models-set-tag",
        "POST",
        f"{Q}/registered-models/set-tag",
        "registry.set_registered_model_tag",
        headers=AUDIT_HEADERS,
        body={"name": "{M}", "key": "t2", "value": "v"},
        fields={"name": Text(empty=True, lookup=True), "key": Key(), "value": Text()},
        required=("name", "key"),
    ),
    Endpoint(
        "registered-models-delete-tag",
        "DELETE",
        f"{Q}/registered-models/delete-tag",
        "registry.delete_registered_model_tag",
        headers=AUDIT_HEADERS,
        body={"name": "{M}", "key": "t"},
        fields={"name": Text(empty=True, lookup=True), "key": Text(empty=True, lookup=True)},
        required=("name", "key"),
        order=50,
    ),
    Endpoint(
        "get-latest-versions",
        "POST",
        f"{Q}/registered-models/get-latest-versions",
        "registry.get_latest_versions",
        body={"name": "{M}", "stages": ["None"]},
        fields={"name": Text(empty=True, lookup=True), "stages": ListOf(Stage())},
        required=("name",),
    ),
    Endpoint(
        "get-latest-versions-get",
        "GET",
        f"{Q}/registered-models/get-latest-versions",
        "registry.get_latest_versions",
        query=(("name", "{M}"), ("stages", "None")),
        fields={"name": Text(empty=True, lookup=True), "stages": ListOf(Stage())},
        required=("name",),
    ),
    Endpoint(
        "alias-set",
        "POST",
        f"{Q}/registered-models/alias",
        "registry.set_alias",
        headers=AUDIT_HEADERS,
        body={"name": "{M}", "alias": "challenger", "version": "2"},
        fields={"name": Text(empty=True, lookup=True), "alias": Alias(), "version": Version()},
        required=("name", "alias", "version"),
    ),
    Endpoint(
        "alias-delete",
        "DELETE",
        f"{Q}/registered-models/alias",
        "registry.delete_alias",
        headers=AUDIT_HEADERS,
        body={"name": "{M}", "alias": "old"},
        # Deleting an alias that is not set is done (idempotent, as stock MLflow).
        fields={"name": Text(empty=True, lookup=True), "alias": Text(empty=True)},
        required=("name", "alias"),
        order=50,
    ),
    Endpoint(
        "alias-get",
        "GET",
        f"{Q}/registered-models/alias",
        "registry.get_version_by_alias",
        query=(("name", "{M}"), ("alias", "champion")),
        fields={"name": Text(empty=True, lookup=True), "alias": Text(empty=True, lookup=True)},
        required=("name", "alias"),
    ),
    Endpoint(
        "model-versions-create",
        "POST",
        f"{Q}/model-versions/create",
        "registry.create_model_version",
        headers=AUDIT_HEADERS,
        body={
            "name": "{M}",
            "source": "runs:/{R}/model",
            "run_id": "{R}",
            "tags": [_TAG],
            "run_link": "l",
            "description": "d",
        },
        fields={
            "name": Text(empty=True, lookup=True),
            "source": Source(),
            "run_id": Text(lookup=True),
            **_TAG_KINDS,
            "run_link": Text(),
            "description": Text(),
            "model_id": Text(lookup=True),
        },
        required=("name", "source"),
    ),
    Endpoint(
        "model-versions-get",
        "GET",
        f"{Q}/model-versions/get",
        "registry.get_model_version",
        query=(("name", "{M}"), ("version", "1")),
        fields={"name": Text(empty=True, lookup=True), "version": Version()},
        required=("name", "version"),
    ),
    Endpoint(
        "model-versions-update",
        "PATCH",
        f"{Q}/model-versions/update",
        "registry.update_model_version",
        headers=AUDIT_HEADERS,
        body={"name": "{M}", "version": "1", "description": "d"},
        fields={"name": Text(empty=True, lookup=True), "version": Version(), "description": Text()},
        required=("name", "version"),
    ),
    Endpoint(
        "model-versions-delete",
        "DELETE",
        f"{Q}/model-versions/delete",
        "registry.delete_model_version",
        headers=AUDIT_HEADERS,
        body={"name": "{M}", "version": "3"},
        fields={"name": Text(empty=True, lookup=True), "version": Version()},
        required=("name", "version"),
        order=90,
    ),
    Endpoint(
        "model-versions-search",
        "GET",
        f"{Q}/model-versions/search",
        "registry.search_model_versions",
        query=(
            ("filter", "name = '{M}'"),
            ("max_results", "10"),
            ("order_by", "version_number DESC"),
            ("page_token", "{TOKEN}"),
        ),
        fields={
            "filter": Filter(),
            "max_results": Int(1, 200_000),
            "order_by": OrderBy(),
            "page_token": PageToken(),
        },
    ),
    Endpoint(
        "transition-stage",
        "POST",
        f"{Q}/model-versions/transition-stage",
        "registry.transition_stage",
        headers=AUDIT_HEADERS,
        body={
            "name": "{M}",
            "version": "2",
            "stage": "Staging",
            "archive_existing_versions": False,
        },
        fields={
            "name": Text(empty=True, lookup=True),
            "version": Version(),
            "stage": Stage(),
            "archive_existing_versions": Bool(),
        },
        required=("name", "version", "stage"),
    ),
    Endpoint(
        "get-download-uri",
        "GET",
        f"{Q}/model-versions/get-download-uri",
        "registry.get_download_uri",
        query=(("name", "{M}"), ("version", "1")),
        fields={"name": Text(empty=True, lookup=True), "version": Version()},
        required=("name", "version"),
    ),
    Endpoint(
        "model-versions-set-tag",
        "POST",
        f"{Q}/model-versions/set-tag",
        "registry.set_model_version_tag",
        headers=AUDIT_HEADERS,
        body={"name": "{M}", "version": "1", "key": "t2", "value": "v"},
        fields={
            "name": Text(empty=True, lookup=True),
            "version": Version(),
            "key": Key(),
            "value": Text(),
        },
        required=("name", "version", "key"),
    ),
    Endpoint(
        "model-versions-delete-tag",
        "DELETE",
        f"{Q}/model-versions/delete-tag",
        "registry.delete_model_version_tag",
        headers=AUDIT_HEADERS,
        body={"name": "{M}", "version": "1", "key": "t"},
        fields={
            "name": Text(empty=True, lookup=True),
            "version": Version(),
            "key": Text(empty=True, lookup=True),
        },
        required=("name", "version", "key"),
        order=50,
    ),
    Endpoint(
        "registry-history",
        "GET",
        f"{METRICGATE}/registry/history",
        "registry_history.registry_history",
        query=(("name", "{M}"), ("version", "1"), ("max_results", "10")),
        # A name of no model is an empty history, not an error: events outlive deleted models.
        fields={
            "name": Text(empty=True),
            "version": Version(exists=False),
            "max_results": Int(1, 1000),
            "page_token": PageToken("registry"),
        },
        required=("name",),
    ),
    # ------------------------------------------------------------ webhooks
    Endpoint(
        "webhooks-create",
        "POST",
        f"{METRICGATE}/webhooks",
        "webhooks.create_webhook",
        body={
            "url": "http://127.0.0.1:9/new",
            "events": ["model_version.created"],
            "model_name": "m",
            "description": "d",
            "active": False,
        },
        fields={
            "url": Url(),
            "events": ListOf(Event(), non_empty=True),
            "model_name": Text(max_len=500),
            "description": Text(max_len=1000),
            "active": Bool(),
        },
        required=("url", "events"),
    ),
    Endpoint(
        "webhooks-list",
        "GET",
        f"{METRICGATE}/webhooks",
        "webhooks.list_webhooks",
        query=(("model_name", "m"),),
        fields={"model_name": Text()},
    ),
    Endpoint(
        "webhooks-get",
        "GET",
        f"{METRICGATE}/webhooks/{{WX}}",
        "webhooks.get_webhook",
        pathvars={"WX": "{W}"},
        segments={"WX": Segment()},
    ),
    Endpoint(
        "webhooks-update",
        "PATCH",
        f"{METRICGATE}/webhooks/{{WX}}",
        "webhooks.update_webhook",
        body={
            "url": "http://127.0.0.1:9/other",
            "events": ["model_version.created"],
            "active": False,
            "model_name": "m",
            "description": "d",
        },
        pathvars={"WX": "{W}"},
        segments={"WX": Segment()},
        fields={
            "url": Url(),
            "events": ListOf(Event(), non_empty=True),
            "active": Bool(),
            "model_name": Text(max_len=500),
            "description": Text(max_len=1000),
        },
    ),
    Endpoint(
        "webhooks-delete",
        "DELETE",
        f"{METRICGATE}/webhooks/{{WX}}",
        "webhooks.delete_webhook",
        pathvars={"WX": "{W2}"},
        segments={"WX": Segment()},
        order=90,
        json_body=False,
    ),
    Endpoint(
        "webhooks-rotate-secret",
        "POST",
        f"{METRICGATE}/webhooks/{{WX}}/rotate-secret",
        "webhooks.rotate_secret",
        pathvars={"WX": "{W}"},
        segments={"WX": Segment()},
        json_body=False,
    ),
    Endpoint(
        "webhooks-deliveries",
        "GET",
        f"{METRICGATE}/webhooks/{{WX}}/deliveries",
        "webhooks.list_deliveries",
        query=(("max_results", "10"), ("state", "failed")),
        pathvars={"WX": "{W}"},
        segments={"WX": Segment()},
        fields={"max_results": Int(1, 1000), "state": Enum(("pending", "delivered", "failed"))},
    ),
    Endpoint(
        "webhooks-test",
        "POST",
        f"{METRICGATE}/webhooks/{{WX}}/test",
        "webhooks.test_webhook",
        pathvars={"WX": "{W}"},
        segments={"WX": Segment()},
        json_body=False,
    ),
    # ------------------------------------------------------------ uploads and references
    Endpoint(
        "uploads-create",
        "POST",
        f"{METRICGATE}/uploads",
        "uploads.create_upload",
        body={
            "run_id": "{R}",
            "path": "up/new.bin",
            "directory": False,
            "part_size": 5 * 1024 * 1024,
            "files": [{"size": 10, "sha256": "0" * 64}],
            "actor": "a",
        },
        fields={
            "run_id": RunId(),
            "path": ArtifactPathText(),
            "directory": Bool(),
            "part_size": Int(5 * 1024 * 1024, 512 * 1024 * 1024),
            "files": Objects(),
            "files.0.size": Int(0, 5 * 1024 * 1024 * 10000),
            "files.0.sha256": Sha256(),
            "actor": Text(),
        },
        required=("run_id", "part_size", "files", "files.0.size"),
    ),
    Endpoint(
        "uploads-get",
        "GET",
        f"{METRICGATE}/uploads/{{UX}}",
        "uploads.get_upload",
        pathvars={"UX": "{U}"},
        segments={"UX": Segment()},
    ),
    Endpoint(
        "uploads-part",
        "PUT",
        f"{METRICGATE}/uploads/{{UX}}/files/{{FILE}}/parts/{{PART}}",
        "uploads.upload_part",
        headers={"X-Checksum-SHA256": BAD_SHA256_HEADERS, "Content-MD5": BAD_MD5_HEADERS},
        pathvars={"UX": "{U2}", "FILE": "0", "PART": "1"},
        data=b"0123456789",
        segments={"UX": Segment(), "FILE": IntSegment(valid=(0,)), "PART": IntSegment(valid=(1,))},
    ),
    Endpoint(
        "uploads-complete",
        "POST",
        f"{METRICGATE}/uploads/{{UX}}/complete",
        "uploads.complete_upload",
        pathvars={"UX": "{U}"},
        segments={"UX": Segment()},
        order=60,
        json_body=False,
    ),
    Endpoint(
        "uploads-abort",
        "DELETE",
        f"{METRICGATE}/uploads/{{UX}}",
        "uploads.abort_upload",
        pathvars={"UX": "{U2}"},
        segments={"UX": Segment()},
        order=70,
        json_body=False,
    ),
    Endpoint(
        "references-create",
        "POST",
        f"{METRICGATE}/artifact-references",
        "uploads.create_reference",
        body={
            "run_id": "{R}",
            "path": "refs/new.bin",
            "uri": "{REF_URI}",
            "size": 10,
            "sha256": None,
            "etag": None,
        },
        fields={
            "run_id": RunId(),
            "path": ArtifactPathText(empty=True),
            "uri": RefUri(),
            "size": Int(10, 10),
            "sha256": Sha256(),
            "etag": Text(),
        },
        required=("run_id", "path", "uri", "size"),
    ),
    Endpoint(
        "references-list",
        "GET",
        f"{METRICGATE}/artifact-references",
        "uploads.list_references",
        query=(("run_id", "{R}"),),
        fields={"run_id": RunId()},
        required=("run_id",),
    ),
    Endpoint(
        "references-delete",
        "DELETE",
        f"{METRICGATE}/artifact-references",
        "uploads.delete_reference",
        body={"run_id": "{R}", "path": "refs/existing.bin"},
        fields={"run_id": RunId(), "path": ArtifactPathText(empty=True, lookup=True)},
        required=("run_id", "path"),
        order=90,
    ),
    # ------------------------------------------------------------ the web UI's extras
    Endpoint(
        "search-datasets",
        "POST",
        f"{Q}/experiments/search-datasets",
        "ui_support.search_datasets",
        body={"experiment_ids": ["{E}"]},
        fields={"experiment_ids": ListOf(ExperimentId(exists=False), non_empty=True)},
        required=("experiment_ids",),
    ),
    Endpoint(
        "traces-search",
        "POST",
        f"{AJAX3}/traces/search",
        "ui_genai.search_traces",
        body={"locations": []},
        fields={"locations": Present()},
        required=("locations",),
    ),
    Endpoint(
        "traces-metrics",
        "POST",
        f"{AJAX3}/traces/metrics",
        "ui_genai.query_trace_metrics",
        body={
            "experiment_ids": ["{E}"],
            "view_type": "TRACES",
            "metric_name": "trace_count",
            "aggregations": [{"aggregation_type": "COUNT"}],
            "dimensions": [],
        },
        fields={"aggregations": Objects(), "dimensions": ListOf(Present())},
        required=("experiment_ids", "view_type", "metric_name"),
    ),
    Endpoint(
        "traces-v2",
        "GET",
        "/ajax-api/2.0/mlflow/traces",
        "ui_genai.search_traces_v2",
        query=(("experiment_ids", "{E}"),),
        fields={"experiment_ids": Present()},
        required=("experiment_ids",),
    ),
    # ------------------------------------------------------------ GraphQL: only the envelope is REST-shaped
    Endpoint(
        "graphql",
        "POST",
        "/graphql",
        "graphql.handler.graphql",
        body={"query": "query { __typename }", "variables": {}, "operationName": None},
        fields={
            "query": GraphQLQuery(),
            "variables": GraphQLVariables(),
            "operationName": GraphQLName(),
        },
        required=("query",),
    ),
    Endpoint(
        "graphql-get",
        "GET",
        "/graphql",
        "graphql.handler.graphql",
        query=(("query", "query { __typename }"), ("variables", "{}")),
        fields={"variables": GraphQLVariables()},
        required=("query",),
    ),
]

# Routes that read no request input (nothing to get wrong): probed with garbage query strings
# and bodies by ``test_inputless_routes_ignore_garbage`` (never a 5xx, nothing stored).
INPUTLESS: list[tuple[str, str, str]] = [
    ("GET", "/health", "health.health"),
    ("GET", "/ready", "health.ready"),
    ("GET", "/version", "health.version"),
    ("GET", "/metrics", "health.prometheus_metrics"),
    ("GET", "/api/3.0/mlflow/server-info", "health.server_info"),
    ("GET", f"{METRICGATE}/ingest/status", "ingest_status.ingest_status"),
    ("GET", "/metricgate/ingest", "ingest_status.ingest_page"),
    ("GET", f"{METRICGATE}/openapi.json", "uploads.openapi_document"),
    ("GET", f"{Q}/users/current", "auth_users.get_current_user"),  # auth off: 404, no accounts
    ("GET", f"{Q}/gateway-proxy", "ui_support.gateway_proxy"),
    ("POST", f"{Q}/gateway-proxy", "ui_support.gateway_proxy"),
    ("GET", f"{AJAX3}/ui-telemetry", "ui_support.ui_telemetry_config"),
    ("POST", f"{AJAX3}/ui-telemetry", "ui_support.ui_telemetry_records"),
    ("GET", f"{AJAX3}/assistant/config", "ui_support.assistant_config"),
    ("GET", f"{AJAX3}/assistant/providers", "ui_support.assistant_providers"),
    ("GET", f"{AJAX3}/gateway/secrets/config", "ui_genai.gateway_secrets_config"),
    ("GET", f"{AJAX3}/scorers/list", "ui_genai.empty"),
    ("POST", f"{AJAX3}/datasets/search", "ui_genai.empty"),
    ("POST", "/ajax-api/3.0/jobs/search", "ui_genai.search_jobs"),
]

# The auth API answers 404 with auth off (this module's world); its bad-input family runs with
# auth on in tests/api/test_auth_api.py.
_AUTH_API = "needs METRICGATE_AUTH=on; malformed input: tests/api/test_auth_api.py"
_APPROVALS_API = "needs METRICGATE_AUTH=on; malformed input: tests/api/test_approvals_api.py"

# Routes outside this family, and why.
NOT_FUZZED = {
    ("POST", "auth_users.create_user"): _AUTH_API,
    ("GET", "auth_users.get_user"): _AUTH_API,
    ("GET", "auth_users.list_users"): _AUTH_API,
    ("PATCH", "auth_users.update_user_password"): _AUTH_API,
    ("PATCH", "auth_users.update_user_admin"): _AUTH_API,
    ("DELETE", "auth_users.delete_user"): _AUTH_API,
    ("GET", "auth_users.list_current_user_permissions"): _AUTH_API,
    ("GET", "auth_users.list_user_permissions"): _AUTH_API,
    ("POST", "auth_users.grant_user_permission"): _AUTH_API,
    ("POST", "auth_users.revoke_user_permission"): _AUTH_API,
    ("GET", "auth_users.get_user_permission"): _AUTH_API,
    ("GET", "auth_users.list_user_roles"): _AUTH_API,
    ("POST", "auth_roles.create_role"): _AUTH_API,
    ("GET", "auth_roles.get_role"): _AUTH_API,
    ("GET", "auth_roles.list_roles"): _AUTH_API,
    ("PATCH", "auth_roles.update_role"): _AUTH_API,
    ("DELETE", "auth_roles.delete_role"): _AUTH_API,
    ("POST", "auth_roles.add_role_permission"): _AUTH_API,
    ("DELETE", "auth_roles.remove_role_permission"): _AUTH_API,
    ("GET", "auth_roles.list_role_permissions"): _AUTH_API,
    ("PATCH", "auth_roles.update_role_permission"): _AUTH_API,
    ("POST", "auth_roles.assign_role"): _AUTH_API,
    ("DELETE", "auth_roles.unassign_role"): _AUTH_API,
    ("GET", "auth_roles.list_role_users"): _AUTH_API,
    ("POST", "tokens.create_token"): _AUTH_API,
    ("GET", "tokens.list_tokens"): _AUTH_API,
    ("POST", "tokens.revoke_token"): _AUTH_API,
    ("POST", "permissions_admin.set_permission"): _AUTH_API,
    ("GET", "permissions_admin.who_holds"): _AUTH_API,
    ("GET", "audit.list_audit"): _AUTH_API,
    ("GET", "approvals.list_requests"): _APPROVALS_API,
    ("GET", "approvals.get_request"): _APPROVALS_API,
    ("POST", "approvals.approve"): _APPROVALS_API,
    ("POST", "approvals.reject"): _APPROVALS_API,
    ("POST", "approvals.cancel"): _APPROVALS_API,
    ("POST", "approvals.create_policy"): _APPROVALS_API,
    ("GET", "approvals.list_policies"): _APPROVALS_API,
    ("DELETE", "approvals.delete_policy"): _APPROVALS_API,
    ("GET", "ui_static.index"): "the web UI's HTML (no input); tests/api/test_ui_static.py",
    ("HEAD", "ui_static.index"): "the web UI's HTML (no input); tests/api/test_ui_static.py",
    (
        "GET",
        "ui_static.static_file",
    ): "the UI bundle's files; traversal is tests/api/test_ui_static.py's",
    (
        "HEAD",
        "ui_static.static_file",
    ): "the UI bundle's files; traversal is tests/api/test_ui_static.py's",
}


def _route_key(method: str, handler: Any) -> tuple[str, str]:
    module = handler.__module__.removeprefix("metricgate.api.")
    return method, f"{module}.{handler.__name__}"


def _routed() -> dict[tuple[str, str], set[str]]:
    """Every (method, handler) the application routes, with the paths it is routed at."""
    placeholder = Settings.from_env({}, database_url="postgresql://unused/x", redis_url="redis://unused",
                                    artifacts_uri="file:///nonexistent")  # fmt: skip
    app = create_app(placeholder)  # nothing is opened before startup
    found: dict[tuple[str, str], set[str]] = {}
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        found.setdefault(_route_key(route.method, route.handler), set()).add(canonical)
    return found


def test_every_route_has_a_strategy() -> None:
    """A route added without an ``Endpoint`` (or an INPUTLESS / NOT_FUZZED entry) fails here."""
    routed = _routed()
    covered = (
        {(e.method, e.handler) for e in ENDPOINTS}
        | {(m, h) for m, _, h in INPUTLESS}
        | set(NOT_FUZZED)
    )
    missing = sorted(set(routed) - covered)
    assert not missing, f"routes without a malformed-input strategy: {missing}"
    stale = sorted(covered - set(routed))
    assert not stale, f"strategies for routes that no longer exist: {stale}"
    # Each template's path is one the route is served at (so the family reaches that handler).
    for e in ENDPOINTS:
        canonical = e.path
        for name in e.pathvars:
            canonical = canonical.replace(
                "{" + name + "}", "{" + _PATH_PARAM_NAMES.get((e.handler, name), name) + "}"
            )
        assert canonical in routed[(e.method, e.handler)], (
            e.id,
            canonical,
            routed[(e.method, e.handler)],
        )
    for method, path, handler in INPUTLESS:
        assert path in routed[(method, handler)], (path, handler)


# Template placeholder -> aiohttp's name for that path parameter.
_PATH_PARAM_NAMES = {
    **{
        (h, "LMX"): "model_id"
        for h in (
            "logged_models.get_logged_model",
            "logged_models.finalize_logged_model",
            "logged_models.delete_logged_model",
            "logged_models.set_logged_model_tags",
            "logged_models.delete_logged_model_tag",
            "logged_models.log_logged_model_params",
            "ui_artifacts.logged_model_artifact",
            "ui_artifacts.logged_model_directory",
        )
    },
    ("logged_models.delete_logged_model_tag", "KEY"): "key",
    **{
        (h, "PATH"): "path"
        for h in (
            "artifacts.download_artifact",
            "artifacts.upload_artifact",
            "artifacts.delete_artifact",
            "artifacts.presigned_download",
            "multipart.create_multipart_upload",
            "multipart.complete_multipart_upload",
            "multipart.abort_multipart_upload",
            "multipart.upload_part",
        )
    },
    **{
        (h, "WX"): "webhook_id"
        for h in (
            "webhooks.get_webhook",
            "webhooks.update_webhook",
            "webhooks.delete_webhook",
            "webhooks.rotate_secret",
            "webhooks.list_deliveries",
            "webhooks.test_webhook",
        )
    },
    **{
        (h, "UX"): "upload_id"
        for h in (
            "uploads.get_upload",
            "uploads.upload_part",
            "uploads.complete_upload",
            "uploads.abort_upload",
        )
    },
    ("uploads.upload_part", "FILE"): "file_index",
    ("uploads.upload_part", "PART"): "part_number",
}


# ---------------------------------------------------------------- building and checking requests

_DELETE = object()


def _split(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def _set(body: Any, path: str, value: Any) -> None:
    *parents, last = _split(path)
    node = body
    for step in parents:
        node = node[step]
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value


@dataclass
class Sent:
    method: str
    url: str
    data: bytes | None
    headers: dict[str, str]

    def __repr__(self) -> str:
        shown = self.data[:300] if self.data is not None else None
        extra = {k: v[:80] for k, v in self.headers.items() if k != "Content-Type"}
        return f"{self.method} {self.url[:400]} body={shown!r}" + (
            f" headers={extra}" if extra else ""
        )


def render(
    e: Endpoint,
    world: World,
    *,
    field_path: str | None = None,
    value: Any = _DELETE,
    segment: tuple[str, str] | None = None,
    extras: dict[str, Any] | None = None,
    header: tuple[str, str] | None = None,
) -> Sent:
    """The endpoint's valid request with at most one field (or path segment) changed."""
    path = e.path
    for name, default in e.pathvars.items():
        path = path.replace(
            "{" + name + "}", segment[1] if segment and segment[0] == name else default
        )
    path = world.fill(path)
    headers: dict[str, str] = {}
    data: bytes | None = None
    if e.in_query:
        pairs = [(k, world.fill(v)) for k, v in e.query]
        if field_path is not None:
            pairs = [(k, v) for k, v in pairs if k != field_path]
            if value is not _DELETE:
                pairs.append((field_path, world.fill(value) if isinstance(value, str) else value))
        for k, v in (extras or {}).items():
            pairs.append((k, v))
        query = encode_query(pairs)
        url = path + ("?" + query if query else "")
        if e.data is not None:
            data = e.data
            headers["Content-Type"] = "application/octet-stream"
    else:
        url = path
        if e.json_body:
            body = orjson.loads(orjson.dumps(world.fill(e.body if e.body is not None else {})))
            if field_path is not None:
                _set(body, field_path, world.fill(value) if isinstance(value, str) else value)
            body.update(extras or {})
            data = encode_json(body)
            headers["Content-Type"] = JSON_CONTENT_TYPE
    if header is not None:
        headers[header[0]] = header[1]
    return Sent(e.method, url, data, headers)


async def send(world: World, sent: Sent) -> Reply:
    """Sends ``sent.url`` byte for byte: the test client would resolve '..' segments (RFC 3986)
    before the server ever saw them, and re-encode what is encoded on purpose."""
    client = world.api.client
    url = URL(f"http://{client.host}:{client.port}{sent.url}", encoded=True)

    async def _send() -> Reply:
        async with client.session.request(
            sent.method, url, data=sent.data, headers=sent.headers
        ) as resp:
            return Reply(sent.method, sent.url, resp.status, resp.headers, await resp.read())

    try:
        return await asyncio.wait_for(_send(), REQUEST_TIMEOUT_S)
    except TimeoutError:
        pytest.fail(f"{sent!r} got no answer within {REQUEST_TIMEOUT_S} s", pytrace=False)


def check_refused(reply: Reply, sent: Sent, *, route_may_miss: bool = False) -> dict[str, Any]:
    """4xx with MLflow's error body; ``route_may_miss``: a garbage path segment may leave the
    route table (404 ENDPOINT_NOT_FOUND) rather than reach the handler."""
    context = f"{sent!r} -> {reply!r}"
    assert 400 <= reply.status < 500, context
    assert reply.content_type == JSON_CONTENT_TYPE, context
    assert "Traceback" not in reply.text, context
    body = reply.json
    assert isinstance(body, dict), context
    assert isinstance(body.get("error_code"), str) and body["error_code"], context
    assert isinstance(body.get("message"), str) and body["message"], context
    if not route_may_miss:
        # The request reached its handler: the family tests validation, not the router.
        assert body["error_code"] != "ENDPOINT_NOT_FOUND", context
    return body


class Baseline:
    """The fingerprint every malformed request must leave in place (one take per request: the
    state after one is the state before the next)."""

    def __init__(self, fingerprint: Fingerprint) -> None:
        self._fingerprint = fingerprint
        self._last: dict[str, Any] | None = None

    async def unchanged(self, sent: Sent) -> None:
        if self._last is None:
            self._last = await self._fingerprint.take()
            return
        now = await self._fingerprint.take()
        before, self._last = self._last, now  # one failure must not fail every later request
        if now != before:
            changed = [t for t in now["tables"] if now["tables"][t] != before["tables"].get(t)]
            files = sorted(set(now["list"]) ^ set(before["list"]))
            raise AssertionError(
                f"{sent!r} changed stored state: tables {changed}, streams {now['streams'] != before['streams']}, "
                f"files {files}"
            )


@pytest.fixture(scope="module")
async def baseline(harness: Harness) -> Baseline:
    base = Baseline(harness.fingerprint)
    await base.unchanged(Sent("-", "-", None, {}))
    return base


async def refused_and_nothing_stored(
    harness: Harness, baseline: Baseline, sent: Sent, *, route_may_miss: bool = False
) -> None:
    reply = await send(harness.world, sent)
    try:
        check_refused(reply, sent, route_may_miss=route_may_miss)
    finally:
        # Even when the answer is wrong: the next request is judged against the state after this one.
        await baseline.unchanged(sent)


# ---------------------------------------------------------------- the family

FIELD_CASES = [
    pytest.param(e, name, id=f"{e.id}:{name}")
    for e in ENDPOINTS
    for name, kind in e.fields.items()
    if (kind.query() if e.in_query else kind.json()) is not None
]
HEADER_CASES = [
    pytest.param(e, name, id=f"{e.id}:<{name}>") for e in ENDPOINTS for name in e.headers
]
SEGMENT_CASES = [
    pytest.param(e, name, id=f"{e.id}:{{{name}}}") for e in ENDPOINTS for name in e.segments
]
REQUIRED_CASES = [
    pytest.param(e, name, id=f"{e.id}:-{name}") for e in ENDPOINTS for name in e.required
]
JSON_ENDPOINTS = [pytest.param(e, id=e.id) for e in ENDPOINTS if not e.in_query and e.json_body]
# MLflow checks the Content-Type of POST and PUT bodies only (PATCH and DELETE bodies are read as JSON).
CONTENT_TYPED = [p for p in JSON_ENDPOINTS if p.values[0].method in ("POST", "PUT")]

_EXTRA_FIELDS = st.dictionaries(
    texts(1, 10).map(lambda t: "zz_unknown_" + t),
    st.one_of(
        st.none(),
        texts(),
        st.integers(INT64_MIN, INT64_MAX),
        st.lists(st.integers(0, 9), max_size=2),
    ),
    max_size=2,
)


@pytest.mark.parametrize(("endpoint", "name"), FIELD_CASES)
@MALFORMED
@given(data=st.data())
async def test_malformed_field(
    harness: Harness, baseline: Baseline, endpoint: Endpoint, name: str, data: st.DataObject
) -> None:
    kind = endpoint.fields[name]
    strategy = kind.query() if endpoint.in_query else kind.json()
    assert strategy is not None
    value = data.draw(strategy, label=name)
    # Unknown fields are ignored (as stock MLflow does): beside a bad one they change nothing.
    extras = data.draw(_EXTRA_FIELDS, label="extras")
    if endpoint.in_query:
        extras = {
            k: (v if isinstance(v, str) else orjson.dumps(v).decode()) for k, v in extras.items()
        }
    sent = render(endpoint, harness.world, field_path=name, value=value, extras=extras)
    await refused_and_nothing_stored(harness, baseline, sent)


@pytest.mark.parametrize(("endpoint", "name"), SEGMENT_CASES)
@MALFORMED
@given(data=st.data())
async def test_malformed_path_segment(
    harness: Harness, baseline: Baseline, endpoint: Endpoint, name: str, data: st.DataObject
) -> None:
    kind = endpoint.segments[name]
    assert isinstance(kind, (Segment, ArtifactPath))
    garbage = data.draw(kind.segment(), label=name)
    sent = render(endpoint, harness.world, segment=(name, garbage))
    await refused_and_nothing_stored(harness, baseline, sent, route_may_miss=True)


@pytest.mark.parametrize(("endpoint", "name"), HEADER_CASES)
@MALFORMED
@given(data=st.data())
async def test_malformed_header(
    harness: Harness, baseline: Baseline, endpoint: Endpoint, name: str, data: st.DataObject
) -> None:
    value = data.draw(endpoint.headers[name], label=name)
    sent = render(endpoint, harness.world, header=(name, value))
    await refused_and_nothing_stored(harness, baseline, sent)


@pytest.mark.parametrize(("endpoint", "name"), REQUIRED_CASES)
async def test_missing_required_field(
    harness: Harness, baseline: Baseline, endpoint: Endpoint, name: str
) -> None:
    presence_only = isinstance(endpoint.fields.get(name), Present)
    for value in (
        (_DELETE, None) if not endpoint.in_query else (_DELETE,) if presence_only else (_DELETE, "")
    ):
        sent = render(endpoint, harness.world, field_path=name, value=value)
        await refused_and_nothing_stored(harness, baseline, sent)


# Whole bodies that are not one JSON object, or not JSON at all.
BAD_BODIES: list[tuple[str, bytes]] = [
    ("list", b"[]"),
    ("list-of-object", b'[{"a": 1}]'),
    ("string", b'"x"'),
    ("number", b"1"),
    ("null", b"null"),
    ("true", b"true"),
    ("truncated", b'{"a": '),
    ("trailing", b'{"a": 1} x'),
    ("single-quotes", b"{'a': 1}"),
    # Python's json (the lenient fallback, as Flask's) detects UTF-16/32 and a BOM: only their content matters.
    ("invalid-utf8", b'{"a": "\xff"}'),
    ("utf16", '"x"'.encode("utf-16")),
    ("bom", b"\xef\xbb\xbf[]"),
    ("lone-surrogate-key", b'{"\\ud800": 1}'),
    ("nul-key", b'{"a\\u0000": 1}'),
    ("deep", b"[" * 100_000 + b"]" * 100_000),
    ("deep-object", b'{"a":' * 5000 + b"1" + b"}" * 5000),
    ("nan-top", b"NaN"),
    ("garbage", bytes(range(256))),
]


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS)
async def test_bad_json_bodies(harness: Harness, baseline: Baseline, endpoint: Endpoint) -> None:
    url = render(endpoint, harness.world).url
    for label, raw in BAD_BODIES:
        if label == "deep-object" and endpoint.body is None:
            continue
        sent = Sent(endpoint.method, url, raw, {"Content-Type": JSON_CONTENT_TYPE})
        reply = await send(harness.world, sent)
        if label in ("deep-object",) and reply.status == 200:
            continue  # {"a": {...}}: a deeply nested *unknown* field, ignored like any other
        check_refused(reply, sent)
        await baseline.unchanged(sent)


@pytest.mark.parametrize("endpoint", CONTENT_TYPED)
async def test_bad_content_types(harness: Harness, baseline: Baseline, endpoint: Endpoint) -> None:
    valid = render(endpoint, harness.world)
    for content_type in (
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ):
        headers = {} if content_type is None else {"Content-Type": content_type}
        sent = Sent(endpoint.method, valid.url, valid.data, headers)
        await refused_and_nothing_stored(harness, baseline, sent)


@pytest.mark.parametrize(
    ("method", "path", "handler"), INPUTLESS, ids=[f"{m} {p}" for m, p, _ in INPUTLESS]
)
async def test_inputless_routes_ignore_garbage(
    harness: Harness, baseline: Baseline, method: str, path: str, handler: str
) -> None:
    garbage_queries = ["a=%00", "a=%FF%FE", "%00=%00", "a=" + "x" * 4000, "&&&==&", "a[]=1&a[]=2"]
    for query in garbage_queries:
        for data in (None,) if method == "GET" else (b"\x00\xff", b"[]", b"{"):
            sent = Sent(
                method, f"{path}?{query}", data, {"Content-Type": JSON_CONTENT_TYPE} if data else {}
            )
            reply = await send(harness.world, sent)
            assert reply.status < 500, f"{sent!r} -> {reply!r}"
            if reply.status >= 400:
                check_refused(reply, sent, route_may_miss=True)
            await baseline.unchanged(sent)


def _next_redis_db(url: str) -> str:
    parts = urlsplit(url)
    db = parts.path.strip("/")
    number = int(db) if db.isascii() and db.isdigit() else 0
    return urlunsplit(parts._replace(path=f"/{(number + 1) % 16}"))


async def test_valid_requests_are_valid(
    pg_server_url: str, migrated_template: str, redis_url: str, tmp_path: Path
) -> None:
    """Every template unmutated answers 2xx (in its own world, in ``order``): the mutations are
    one field away from a request that works, so they test that field's validation."""
    # Another Redis database: the module's world keeps its streams (and its flusher its entries).
    async for opened in _open_world(
        pg_server_url, migrated_template, _next_redis_db(redis_url), tmp_path
    ):
        failures = []
        for e in sorted(ENDPOINTS, key=lambda e: e.order):
            sent = render(e, opened.world)
            reply = await send(opened.world, sent)
            if not 200 <= reply.status < 300:
                failures.append(f"{e.id}: {sent!r} -> {reply!r}")
        assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- regressions the family found

# (endpoint id, field or {segment}, value). Each was a 500: str.isdigit() is also true of '\u00b2',
# which int() refuses (tests/unit/test_source_rules.py now refuses a bare isdigit() in src/).
PINNED = [
    # api/uploads.py: part number and file index segments of superscript digits.
    pytest.param("uploads-part", "{PART}", "%C2%B2", id="upload-part-number-superscript"),
    pytest.param("uploads-part", "{FILE}", "%C2%B9", id="upload-file-index-superscript"),
    # api/webhooks.py and the store's id parser (stores/postgres/webhooks.py).
    pytest.param("webhooks-get", "{WX}", "%C2%B2", id="webhook-id-superscript"),
    pytest.param("webhooks-deliveries", "{WX}", "%C2%B3", id="webhook-deliveries-id-superscript"),
    # domain/registry/rules.py parse_version.
    pytest.param("model-versions-get", "version", "\u00b2", id="version-superscript"),
    pytest.param("model-versions-update", "version", "\u00b9", id="version-superscript-json"),
    # api/codec.py Fields.int: "" in a JSON body was read as absent (end_time unchanged, step 0).
    pytest.param("runs-update", "end_time", "", id="empty-string-end-time"),
    pytest.param("runs-outputs", "models.0.step", "", id="empty-string-output-step"),
    # domain/search/paging.py _offset_from.
    pytest.param("runs-search", "page_token", _b64(b'{"offset": "\\u00b2"}'), id="page-token-offset-superscript"),
]  # fmt: skip


@pytest.mark.parametrize(("endpoint_id", "name", "value"), PINNED)
async def test_pinned_regressions(
    harness: Harness, baseline: Baseline, endpoint_id: str, name: str, value: str
) -> None:
    endpoint = next(e for e in ENDPOINTS if e.id == endpoint_id)
    if name.startswith("{"):
        sent = render(endpoint, harness.world, segment=(name.strip("{}"), value))
        await refused_and_nothing_stored(harness, baseline, sent, route_may_miss=True)
    else:
        sent = render(endpoint, harness.world, field_path=name, value=value)
        await refused_and_nothing_stored(harness, baseline, sent)
