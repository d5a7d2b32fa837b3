"""The MLflow search grammar parser (pure) and page tokens: valid forms, every error path, fuzzing,
and a differential check against MLflow's own parser."""

from __future__ import annotations

import base64
import json
import math
import random
import struct

import pytest

from metricgate.domain.errors import InvalidParameter
from metricgate.domain.search.filter import (
    Clause,
    OrderKey,
    parse_experiment_filter,
    parse_experiment_order_by,
    parse_logged_model_filter,
    parse_logged_model_order_by,
    parse_order_by,
    parse_run_filter,
)
from metricgate.domain.search.paging import (
    decode_history_token,
    decode_keyset_token,
    decode_page_token,
    encode_history_token,
    encode_keyset_token,
    encode_page_token,
)

# ---------------------------------------------------------------- runs: valid filters

RUN_FILTERS: list[tuple[str, list[Clause]]] = [
    ("metrics.loss > 1", [Clause("metric", "loss", ">", 1.0)]),
    ("metric.loss>=-1.5", [Clause("metric", "loss", ">=", -1.5)]),
    ("metrics.loss < 1e3", [Clause("metric", "loss", "<", 1000.0)]),
    ("metrics.loss <= .5", [Clause("metric", "loss", "<=", 0.5)]),
    ("metrics.loss = 1.", [Clause("metric", "loss", "=", 1.0)]),
    ("metrics.loss != 2", [Clause("metric", "loss", "!=", 2.0)]),
    ("params.lr = '0.1'", [Clause("param", "lr", "=", "0.1")]),
    ('param.lr = "0.1"', [Clause("param", "lr", "=", "0.1")]),
    ("parameter.lr != 'x'", [Clause("param", "lr", "!=", "x")]),
    ("parameters.lr LIKE '0.%'", [Clause("param", "lr", "LIKE", "0.%")]),
    ("params.lr ilike '%A'", [Clause("param", "lr", "ILIKE", "%A")]),
    ("params.lr IS NULL", [Clause("param", "lr", "IS NULL", None)]),
    ("tags.t is  not\tnull", [Clause("tag", "t", "IS NOT NULL", None)]),
    ("tag.t = ''", [Clause("tag", "t", "=", "")]),
    ("tags.mlflow.runName = 'x'", [Clause("tag", "mlflow.runName", "=", "x")]),
    ("tags.`mlflow.user` = 'x'", [Clause("tag", "mlflow.user", "=", "x")]),
    ("tags.\"my key\" = 'x'", [Clause("tag", "my key", "=", "x")]),
    ("tags.'my key' = 'x'", [Clause("tag", "my key", "=", "x")]),
    ("tags.`a-b` = 'x'", [Clause("tag", "a-b", "=", "x")]),
    ("`tags`.k = 'x'", [Clause("tag", "k", "=", "x")]),
    ("tags.é = 'ü'", [Clause("tag", "é", "=", "ü")]),
    ("tags.select = 'x'", [Clause("tag", "select", "=", "x")]),
    # As in MLflow, quotes inside a value are kept verbatim (no unescaping).
    ("tags.q = 'it''s'", [Clause("tag", "q", "=", "it''s")]),
    ('tags.q = "say \\"hi\\""', [Clause("tag", "q", "=", 'say \\"hi\\"')]),
    ("attributes.status = 'FINISHED'", [Clause("attribute", "status", "=", "FINISHED")]),
    ("attribute.user_id != 'bob'", [Clause("attribute", "user_id", "!=", "bob")]),
    ("attr.artifact_uri LIKE 's3:%'", [Clause("attribute", "artifact_uri", "LIKE", "s3:%")]),
    ("run.run_name ILIKE 'a%'", [Clause("attribute", "run_name", "ILIKE", "a%")]),
    ("status = 'RUNNING'", [Clause("attribute", "status", "=", "RUNNING")]),
    ("\"run name\" = 'x'", [Clause("attribute", "run_name", "=", "x")]),
    ("`Run Name` = 'x'", [Clause("attribute", "run_name", "=", "x")]),
    ("lifecycle_stage = 'deleted'", [Clause("attribute", "lifecycle_stage", "=", "deleted")]),
    ("start_time >= 5", [Clause("attribute", "start_time", ">=", 5)]),
    ("created < 5.5", [Clause("attribute", "start_time", "<", 5.5)]),
    ("Created != 0", [Clause("attribute", "start_time", "!=", 0)]),
    ("attributes.end_time > 10", [Clause("attribute", "end_time", ">", 10)]),
    ("run_id IN ('a', 'b')", [Clause("attribute", "run_id", "IN", ("a", "b"))]),
    ('run_id in ("a",)', [Clause("attribute", "run_id", "IN", ("a",))]),
    ("run_id NOT IN ('a')", [Clause("attribute", "run_id", "NOT IN", ("a",))]),
    ("datasets.name = 'train'", [Clause("dataset", "name", "=", "train")]),
    ("dataset.digest IN ('d1','d2')", [Clause("dataset", "digest", "IN", ("d1", "d2"))]),
    ("datasets.context not in ('eval')", [Clause("dataset", "context", "NOT IN", ("eval",))]),
    ("datasets.context ILIKE 'TRAIN%'", [Clause("dataset", "context", "ILIKE", "TRAIN%")]),
    (
        "metrics.a > 1 AND params.b = 'x' and tags.c != 'y' AnD status = 'FAILED'",
        [
            Clause("metric", "a", ">", 1.0),
            Clause("param", "b", "=", "x"),
            Clause("tag", "c", "!=", "y"),
            Clause("attribute", "status", "=", "FAILED"),
        ],
    ),
    (
        "  metrics.a>1   AND\nmetrics.a<2  ",
        [Clause("metric", "a", ">", 1.0), Clause("metric", "a", "<", 2.0)],
    ),
    (
        "params.andy = 'x' AND params.b = 'y'",
        [Clause("param", "andy", "=", "x"), Clause("param", "b", "=", "y")],
    ),
]


@pytest.mark.parametrize(("text", "expected"), RUN_FILTERS, ids=[t for t, _ in RUN_FILTERS])
def test_run_filter_parses(text: str, expected: list[Clause]) -> None:
    assert parse_run_filter(text) == expected


@pytest.mark.parametrize("empty", [None, ""])
def test_empty_filter_means_no_clauses(empty: str | None) -> None:
    assert parse_run_filter(empty) == []
    assert parse_experiment_filter(empty) == []
    assert parse_logged_model_filter(empty) == []


def test_numeric_literals_keep_int_when_they_fit_int64() -> None:
    assert parse_run_filter("start_time = 9223372036854775807")[0].value == 2**63 - 1
    huge = parse_run_filter("start_time < 9223372036854775808")[0].value
    assert isinstance(huge, float) and huge == 2.0**63
    assert parse_run_filter("metrics.m > 1e999")[0].value == math.inf
    assert parse_run_filter("start_time > " + "9" * 5000)[0].value == math.inf


# ---------------------------------------------------------------- runs: errors

RUN_FILTER_ERRORS: list[tuple[str, str]] = [
    ("   ", "Could not be parsed"),
    ("metrics.a > 1 OR metrics.b > 2", "only be joined with AND"),
    ("metrics.a > 1 metrics.b > 2", "only be joined with AND"),
    ("metrics.a > 1 AND", "expected an identifier"),
    ("AND metrics.a > 1", "Invalid attribute key 'AND'"),
    ("metrics.a > 1 AND AND metrics.b > 1", "Invalid attribute key 'AND'"),
    ("metrics.a > 1;", "only be joined with AND"),
    ("(metrics.a > 1)", "expected an identifier"),
    ("metrics.a", "expected a comparison operator"),
    ("metrics.a BETWEEN 1", "expected a comparison operator"),
    ("= 1", "expected an identifier"),
    ("metrics.", "Invalid identifier"),
    ("metrics.a.", "Invalid identifier"),
    ("METRICS.a > 1", "Invalid entity type 'METRICS'"),
    ('"metrics".a > 1', "Invalid entity type '\"metrics\"'"),
    ("model.a > 1", "Invalid entity type 'model'"),
    ("loss > 1", "Invalid attribute key 'loss'"),
    ("attributes.name = 'x'", "Invalid attribute key 'name'"),
    ("datasets.foo = 'x'", "Invalid dataset key 'foo'"),
    ("metrics.a == 1", "Invalid comparator '=='"),
    ("metrics.a <> 1", "Invalid comparator '<>'"),
    ("metrics.a ! 1", "Invalid comparator '!'"),
    ("metrics.a LIKE '1'", "Invalid comparator 'LIKE' not one of"),
    ("metrics.a IS NULL", "Invalid comparator 'IS NULL'"),
    ("params.a > 'x'", "Invalid comparator '>' not one of '['=', '!=', 'LIKE', 'ILIKE'"),
    ("params.a NOT LIKE 'x'", "Invalid comparator 'NOT LIKE'"),
    ("params.a IN ('x')", "Invalid comparator 'IN'"),
    ("status IN ('x')", "Invalid comparator 'IN'"),
    ("start_time LIKE '1'", "Invalid comparator 'LIKE'"),
    ("end_time IS NULL", "Invalid comparator 'IS NULL'"),
    ("datasets.name > 'x'", "Invalid comparator '>'"),
    ("metrics.a > 'x'", "Expected numeric value type for metric. Found 'x'"),
    ("metrics.a > +1", "Expected numeric value type for metric"),
    ("metrics.a > 1e", "Expected numeric value type for metric. Found 1e"),
    ("metrics.a > 1_000", "Expected numeric value type for metric"),
    ("metrics.a > 0x10", "Expected numeric value type for metric"),
    ("metrics.a > NaN", "Expected numeric value type for metric"),
    ("metrics.a >", "Found nothing"),
    ("start_time > '5'", "Expected numeric value type for numeric attribute: start_time"),
    ("params.a = 1", "Expected a quoted string value for param 'a'"),
    ("params.a = x", "Expected a quoted string value"),
    ("params.a = NULL", "Expected a quoted string value"),
    ("params.a = 'x", "Expected a quoted string value"),
    ("status = FINISHED", "Expected a quoted string value"),
    ("run_id = ('a')", "Only IN and NOT IN accept a list"),
    ("run_id IN 'a'", "Expected a list of quoted string values after 'IN'"),
    ("run_id IN ()", "but got empty list"),
    ("run_id IN (1, 2)", "expected a quoted string value"),
    ("run_id IN ('a' 'b')", "expected ',' or ')'"),
    ("run_id IN ('a',,)", "expected a quoted string value"),
    ("run_id IN ('a'", "expected ',' or ')'"),
    ("params.a IS 'x'", "expected a comparison operator"),
    ("params.a = 'x' -- comment", "only be joined with AND"),
]


@pytest.mark.parametrize(
    ("text", "message"), RUN_FILTER_ERRORS, ids=[t for t, _ in RUN_FILTER_ERRORS]
)
def test_run_filter_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_run_filter(text)
    assert message in info.value.message
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize("not_a_string", [1, b"metrics.a > 1", ["x"]])
def test_filter_of_wrong_type_is_invalid(not_a_string: object) -> None:
    with pytest.raises(InvalidParameter):
        parse_run_filter(not_a_string)  # type: ignore[arg-type]


# ---------------------------------------------------------------- runs: order_by

RUN_ORDER_BY: list[tuple[str, OrderKey]] = [
    ("metrics.loss", OrderKey("metric", "loss", True)),
    ("metrics.loss DESC", OrderKey("metric", "loss", False)),
    ("metric.loss  asc", OrderKey("metric", "loss", True)),
    ("metrics.`my loss` desc", OrderKey("metric", "my loss", False)),
    ('metrics."a.b" DESC', OrderKey("metric", "a.b", False)),
    ("params.lr.x DESC", OrderKey("param", "lr.x", False)),
    ("tags.`mlflow.runName`", OrderKey("tag", "mlflow.runName", True)),
    ("start_time", OrderKey("attribute", "start_time", True)),
    ("attributes.start_time DESC", OrderKey("attribute", "start_time", False)),
    ("created DESC", OrderKey("attribute", "start_time", False)),
    ("Created", OrderKey("attribute", "start_time", True)),
    ("attributes.run_name", OrderKey("attribute", "run_name", True)),
    ("run_id DESC", OrderKey("attribute", "run_id", False)),
    ("end_time", OrderKey("attribute", "end_time", True)),
    ("  status  ", OrderKey("attribute", "status", True)),
]


@pytest.mark.parametrize(("text", "expected"), RUN_ORDER_BY, ids=[t for t, _ in RUN_ORDER_BY])
def test_run_order_by_parses(text: str, expected: OrderKey) -> None:
    assert parse_order_by([text]) == [expected]


def test_order_by_keeps_the_given_order() -> None:
    assert parse_order_by(["metrics.a DESC", "params.b", "start_time"]) == [
        OrderKey("metric", "a", False),
        OrderKey("param", "b", True),
        OrderKey("attribute", "start_time", True),
    ]
    assert parse_order_by([]) == [] and parse_order_by(None) == []


RUN_ORDER_BY_ERRORS: list[tuple[object, str]] = [
    ("", "Could not be parsed"),
    ("metrics.loss DESC ASC", "Could not be parsed"),
    ("metrics.loss DESC NULLS LAST", "Could not be parsed"),
    ("metrics.a, metrics.b", "Could not be parsed"),
    ("metrics.loss DSC", "Invalid ordering key"),
    ("loss", "Invalid attribute key 'loss'"),
    ("lifecycle_stage", "Invalid attribute key 'lifecycle_stage'"),
    ("datasets.name", "Invalid order_by entity type 'dataset'"),
    ("foo.bar", "Invalid entity type 'foo'"),
    (42, "Could not be parsed"),
]


@pytest.mark.parametrize(
    ("text", "message"), RUN_ORDER_BY_ERRORS, ids=[str(t) for t, _ in RUN_ORDER_BY_ERRORS]
)
def test_run_order_by_errors(text: object, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse_order_by([text])  # type: ignore[list-item]


def test_run_order_by_rejects_duplicates_like_mlflow() -> None:
    with pytest.raises(InvalidParameter, match="duplicate fields"):
        parse_order_by(["created DESC", "start_time"])


def test_order_by_must_be_a_list() -> None:
    with pytest.raises(InvalidParameter, match="list of strings"):
        parse_order_by("metrics.a")  # a str is a Sequence[str] to the type checker, not to us


# ---------------------------------------------------------------- experiments


def test_experiment_filter_forms() -> None:
    text = (
        "name LIKE 'exp%' AND attribute.name != 'x' AND experiment_id IN ('1', ' 2') AND "
        "experiment_id = '3' AND creation_time >= 10 AND last_update_time < 20 AND "
        "tags.team = 'core' AND tag.`k.x` IS NULL AND tags.o IS NOT NULL"
    )
    assert parse_experiment_filter(text) == [
        Clause("attribute", "name", "LIKE", "exp%"),
        Clause("attribute", "name", "!=", "x"),
        Clause("attribute", "experiment_id", "IN", (1, 2)),
        Clause("attribute", "experiment_id", "=", 3),
        Clause("attribute", "creation_time", ">=", 10),
        Clause("attribute", "last_update_time", "<", 20),
        Clause("tag", "team", "=", "core"),
        Clause("tag", "k.x", "IS NULL", None),
        Clause("tag", "o", "IS NOT NULL", None),
    ]


EXPERIMENT_FILTER_ERRORS: list[tuple[str, str]] = [
    ("metrics.a > 1", "Invalid entity type 'metrics'"),
    ("run_name = 'x'", "Invalid attribute key 'run_name'"),
    ("name > 'x'", "Invalid comparator '>'"),
    ("name IN ('x')", "Invalid comparator 'IN'"),
    ("name IS NULL", "Invalid comparator 'IS NULL'"),
    ("experiment_id LIKE '1'", "Invalid comparator 'LIKE'"),
    ("experiment_id = 'abc'", "Invalid experiment ID 'abc'"),
    ("experiment_id IN ('1', 'x')", "Invalid experiment ID 'x'"),
    ("experiment_id = '99999999999999999999'", "Invalid experiment ID"),
    ("experiment_id = 1", "Expected a quoted string value"),
    ("creation_time > 1.5", "Invalid value for numeric attribute 'creation_time'"),
    ("creation_time > 'x'", "Expected numeric value type"),
    ("tags.t > 'x'", "Invalid comparator '>'"),
]


@pytest.mark.parametrize(
    ("text", "message"), EXPERIMENT_FILTER_ERRORS, ids=[t for t, _ in EXPERIMENT_FILTER_ERRORS]
)
def test_experiment_filter_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse_experiment_filter(text)


def test_experiment_order_by() -> None:
    assert parse_experiment_order_by(
        ["name", "attribute.creation_time DESC", "experiment_id ASC"]
    ) == [
        OrderKey("attribute", "name", True),
        OrderKey("attribute", "creation_time", False),
        OrderKey("attribute", "experiment_id", True),
    ]
    for bad, message in [
        ("tags.a", "Invalid order_by entity type 'tag'"),
        ("run_id", "Invalid attribute key"),
    ]:
        with pytest.raises(InvalidParameter, match=message):
            parse_experiment_order_by([bad])


# ---------------------------------------------------------------- logged models


def test_logged_model_filter_forms() -> None:
    text = (
        "name = 'm' AND model_id IN ('m-1') AND status != 'LOGGED_MODEL_FAILED' AND "
        "source_run_id LIKE 'ab%' AND model_type = 'agent' AND creation_time > 5 AND "
        "creation_timestamp <= 6 AND last_updated_timestamp != 7 AND last_updated_time = 8 AND "
        "metrics.acc >= 0.5 AND params.p NOT IN ('a', 'b') AND tags.t ILIKE 'x%'"
    )
    assert parse_logged_model_filter(text) == [
        Clause("attribute", "name", "=", "m"),
        Clause("attribute", "model_id", "IN", ("m-1",)),
        Clause("attribute", "status", "!=", "LOGGED_MODEL_FAILED"),
        Clause("attribute", "source_run_id", "LIKE", "ab%"),
        Clause("attribute", "model_type", "=", "agent"),
        Clause("attribute", "creation_timestamp", ">", 5),
        Clause("attribute", "creation_timestamp", "<=", 6),
        Clause("attribute", "last_updated_timestamp", "!=", 7),
        Clause("attribute", "last_updated_timestamp", "=", 8),
        Clause("metric", "acc", ">=", 0.5),
        Clause("param", "p", "NOT IN", ("a", "b")),
        Clause("tag", "t", "ILIKE", "x%"),
    ]


LOGGED_MODEL_FILTER_ERRORS: list[tuple[str, str]] = [
    ("datasets.name = 'x'", "Invalid entity type 'datasets'"),
    ("run.name = 'x'", "Invalid entity type 'run'"),
    ("start_time > 1", "Invalid attribute key 'start_time'"),
    ("params.p IS NULL", "Invalid comparator 'IS NULL'"),
    ("metrics.acc LIKE '1'", "Invalid comparator 'LIKE'"),
    ("creation_time LIKE '1'", "Invalid comparator 'LIKE'"),
]


@pytest.mark.parametrize(
    ("text", "message"), LOGGED_MODEL_FILTER_ERRORS, ids=[t for t, _ in LOGGED_MODEL_FILTER_ERRORS]
)
def test_logged_model_filter_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse_logged_model_filter(text)


def test_logged_model_order_by_dicts() -> None:
    parsed = parse_logged_model_order_by(
        [
            {
                "field_name": "metrics.acc",
                "ascending": False,
                "dataset_name": "d",
                "dataset_digest": "x",
            },
            {"field_name": "creation_time"},
            {"field_name": "name", "ascending": None, "dataset_name": "ignored"},
            {"field_name": "metrics.`a b`", "ascending": True, "dataset_name": ""},
        ]
    )
    assert parsed == [
        OrderKey("metric", "acc", False, "d", "x"),
        OrderKey("attribute", "creation_timestamp", True),
        OrderKey("attribute", "name", True),
        OrderKey("metric", "a b", True),
    ]


LOGGED_MODEL_ORDER_ERRORS: list[tuple[object, str]] = [
    ("name", "list of dictionaries"),
    ({"ascending": True}, "`field_name`"),
    ({"field_name": ""}, "`field_name`"),
    ({"field_name": "params.x"}, "only `metrics.<name>` is allowed"),
    ({"field_name": "start_time"}, "Invalid order by field name: start_time"),
    ({"field_name": "name", "ascending": "yes"}, "must be a boolean"),
    ({"field_name": "metrics.a", "dataset_digest": "x"}, "`dataset_digest` can only be specified"),
    ({"field_name": "metrics.a", "dataset_name": 3}, "must be a string"),
]


@pytest.mark.parametrize(
    ("item", "message"),
    LOGGED_MODEL_ORDER_ERRORS,
    ids=[str(i) for i, _ in LOGGED_MODEL_ORDER_ERRORS],
)
def test_logged_model_order_by_errors(item: object, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse_logged_model_order_by([item])  # type: ignore[list-item]


# ---------------------------------------------------------------- page tokens


@pytest.mark.parametrize("offset", [0, 1, 1000, 2**40])
def test_page_token_round_trip(offset: int) -> None:
    token = encode_page_token(offset)
    assert json.loads(base64.b64decode(token)) == {"offset": offset}
    assert decode_page_token(token) == offset


def test_page_token_absent_means_first_page() -> None:
    assert decode_page_token(None) == 0
    assert decode_page_token("") == 0


def test_page_token_is_interchangeable_with_mlflow() -> None:
    search_utils = pytest.importorskip("mlflow.utils.search_utils")
    mlflow_token = search_utils.SearchUtils.create_page_token(250).decode()
    assert decode_page_token(mlflow_token) == 250
    assert (
        search_utils.SearchUtils.parse_start_offset_from_page_token(encode_page_token(250)) == 250
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


BAD_TOKENS: list[tuple[object, str]] = [
    ("not base64!", "could not base64-decode"),
    ("abc", "could not base64-decode"),
    ("é", "could not base64-decode"),
    (_b64(b"\xff\xfe"), "Invalid page token"),
    (_b64(b"not json"), "Invalid page token"),
    (_b64(b"[1]"), "Invalid page token"),
    (_b64(b"{}"), "Invalid page token"),
    (_b64(b'{"offset": -1}'), "Invalid page token"),
    (_b64(b'{"offset": 1.5}'), "Invalid page token"),
    (_b64(b'{"offset": true}'), "Invalid page token"),
    (_b64(b'{"offset": "x"}'), "Invalid page token"),
    (_b64(b'{"offset": 99999999999999999999}'), "Invalid page token"),
    (_b64(b"[" * 100_000), "Invalid page token"),
    ("A" * 10_000, "Invalid page token"),
    (5, "Invalid page token"),
]


@pytest.mark.parametrize(("token", "message"), BAD_TOKENS, ids=[str(t)[:30] for t, _ in BAD_TOKENS])
def test_bad_page_tokens(token: object, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        decode_page_token(token)  # type: ignore[arg-type]


def test_keyset_tokens_round_trip_and_refuse_anything_else() -> None:
    assert decode_keyset_token(None) is None and decode_keyset_token("") is None
    for before_id in (1, 12345, 2**63 - 1):
        assert decode_keyset_token(encode_keyset_token(before_id)) == before_id

    def b64url(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode()

    for bad in (
        "not base64!",
        "é",
        b64url(b"\xff\xfe"),
        b64url(b"[1]"),
        b64url(b"{}"),
        b64url(b'{"before_id": 0}'),
        b64url(b'{"before_id": -3}'),
        b64url(b'{"before_id": 1.5}'),
        b64url(b'{"before_id": true}'),
        b64url(b'{"before_id": "7"}'),
        b64url(b'{"before_id": 9223372036854775808}'),
        b64url(b"[" * 140),
        "A" * 10_000,
    ):
        with pytest.raises(InvalidParameter, match="Invalid page token"):
            decode_keyset_token(bad)


def test_page_token_accepts_a_numeric_string_offset_like_mlflow() -> None:
    assert decode_page_token(_b64(b'{"offset": "7"}')) == 7


@pytest.mark.parametrize(
    "after",
    [
        (0, 0, 0.5),
        (-(2**63), 2**63 - 1, -0.0),
        (3, 9, math.nan),
        (1, 1, math.inf),
        (1, 1, -math.inf),
        (7, 1, 5e-324),
        (7, 1, 1.7976931348623157e308),
    ],
)
def test_history_token_round_trip_keeps_the_exact_last_point(after: tuple[int, int, float]) -> None:
    offset, decoded = decode_history_token(encode_history_token(25, after))
    assert offset == 25 and decoded is not None
    assert decoded[:2] == after[:2]
    assert struct.pack("<d", decoded[2]) == struct.pack("<d", after[2]) or (
        math.isnan(decoded[2]) and math.isnan(after[2])
    )


def test_history_token_is_still_an_mlflow_offset_token() -> None:
    # Whoever reads only the offset (MLflow, or decode_page_token) gets the right one; a plain
    # offset token (MLflow's own) pages by offset.
    token = encode_history_token(40, (3, 4, 0.5))
    assert decode_page_token(token) == 40
    assert decode_history_token(encode_page_token(40)) == (40, None)
    assert decode_history_token(None) == decode_history_token("") == (0, None)


@pytest.mark.parametrize(
    "after",
    [
        [1, 2],
        [1, 2, 3],
        ["1", 2, "0x1p-1"],
        [1, -1, "0x1p-1"],
        [2**63, 1, "0x1p-1"],
        [1, 2, "zz"],
        "x",
        5,
    ],
)
def test_bad_history_tokens(after: object) -> None:
    token = _b64(json.dumps({"offset": 1, "after": after}).encode())
    with pytest.raises(InvalidParameter, match="Invalid page token"):
        decode_history_token(token)


# ---------------------------------------------------------------- fuzzing

_FUZZ_ATOMS = [
    "metrics", "metric", "params", "tags", "attributes", "attr", "datasets", "run", ".", "a", "b.c",
    "`x y`", '"q"', "'s'", "''", "'", '"', "`", "=", "!=", "<", "<=", ">", ">=", "==", "<>", "!",
    "LIKE", "ilike", "IN", "NOT", "IS", "NULL", "AND", "and", "OR", "(", ")", ",", "1", "-1",
    "1.5", "1e3", ".5", "1e", "9" * 25, "-", "+", "run_id", "start_time", "created", "status",
    "name", "context", "digest", "experiment_id", "creation_time", "model_id", "ASC", "DESC",
    "\\", "é", "\x00", "\ud800", "%", "_", ";", "--", "/*", "\n", "\t",
]  # fmt: skip


def _random_filter(rng: random.Random) -> str:
    """Atom soup, arbitrary code points, or a randomly edited valid filter (near the boundary)."""
    roll = rng.random()
    if roll < 0.3:
        atoms = (
            rng.choice(_FUZZ_ATOMS) + rng.choice(["", " ", "  "]) for _ in range(rng.randint(0, 14))
        )
        return "".join(atoms)
    if roll < 0.5:
        code_points = (
            rng.choice([rng.randint(0, 127), rng.randint(0, 0x10FFFF)])
            for _ in range(rng.randint(0, 24))
        )
        return "".join(map(chr, code_points))
    return _mutate(rng, rng.choice(_VALID_FILTERS))


_VALID_FILTERS = [text for text, _ in RUN_FILTERS] + [
    "name LIKE 'a%' AND experiment_id IN ('1') AND creation_time > 5 AND tags.t IS NULL",
    "metrics.acc >= 0.5 AND params.p IN ('a') AND creation_time > 3 AND status = 'x'",
]


def _mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(0, 3)):
        at = rng.randint(0, len(chars))
        action = rng.random()
        if action < 0.4 and chars:
            del chars[min(at, len(chars) - 1)]
        elif action < 0.8:
            chars[at:at] = list(rng.choice(_FUZZ_ATOMS))
        else:
            chars[at:at] = list(" AND " + rng.choice(_VALID_FILTERS))
    return "".join(chars)


PARSERS = [parse_run_filter, parse_experiment_filter, parse_logged_model_filter]


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_filters_raise_only_invalid_parameter(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = {"parsed": 0, "rejected": 0}
    for _ in range(5000):
        text = _random_filter(rng)
        for parse in PARSERS:
            try:
                clauses = parse(text)
            except InvalidParameter as exc:
                assert exc.message  # a reason always reaches the client
                outcomes["rejected"] += 1
                continue
            assert all(isinstance(c, Clause) for c in clauses)
            outcomes["parsed"] += 1
    # The generator reaches both sides of the grammar's boundary.
    assert outcomes["parsed"] > 500 and outcomes["rejected"] > 500, outcomes


@pytest.mark.parametrize("seed", range(2))
def test_fuzz_order_by_and_tokens_raise_only_invalid_parameter(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(5000):
        text = _random_filter(rng)
        for attempt in (
            lambda text=text: parse_order_by([text]),
            lambda text=text: parse_experiment_order_by([text]),
            lambda text=text: parse_logged_model_order_by(
                [{"field_name": text, "ascending": rng.random() < 0.5}]
            ),
            lambda text=text: decode_page_token(text),
        ):
            try:
                attempt()
            except InvalidParameter:
                pass


def test_large_inputs_parse_quickly() -> None:
    # Over the clause limit (issue 11 §2): refused after the 101st comparison, the rest unread.
    many = " AND ".join(f"metrics.m{i % 25} > {i}" for i in range(20_000))
    with pytest.raises(InvalidParameter, match="at most 100 comparisons"):
        parse_run_filter(many)
    long_list = "run_id IN (" + "'a'," * 50_000 + ")"
    assert len(parse_run_filter(long_list)[0].value) == 50_000  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter):
        parse_run_filter("params.a = '" + "\\" * 100_000)


# ---------------------------------------------------------------- differential check against MLflow

# Filters MLflow 3.x accepts; its SqlAlchemyStore then validates comparators per type. Each must
# give the same clauses here.
DIFFERENTIAL_CORPUS = [
    "metrics.loss > 1",
    "metrics.loss >= -1.5 AND metrics.acc < 1e3",
    "metric.a <= .5 and metrics.b = 1. AND metrics.c != 2",
    "params.lr = '0.1' AND param.x != \"y\" AND parameters.z LIKE 'a%' AND parameter.w ILIKE '%B'",
    "params.a IS NULL AND tags.b is not null",
    "tags.mlflow.runName = 'x' AND tags.`a b` = 'y' AND tags.\"c d\" = 'z' AND tags.'e f' = 'w'",
    "tags.q = 'it''s' AND tags.r = ''",
    "`metrics`.m > 0",
    "attributes.status = 'FINISHED' AND attribute.user_id != 'bob' AND attr.artifact_uri LIKE 's3%'",
    "run.run_name ILIKE 'a%' AND run_name = 'b' AND \"run name\" = 'c'",
    "start_time >= 5 AND created < 5.5 AND Created != 0 AND attributes.end_time > 10",
    "run_id IN ('a', 'b') AND run_id NOT IN ('c',)",
    "datasets.name = 'train' AND dataset.digest IN ('d1','d2') AND datasets.context NOT IN ('e')",
    "datasets.context LIKE 'tr%' AND datasets.name != 'x'",
    "metrics.é > 1 AND params.and = 'x' AND tags.select = 'y'",
]


def _mlflow_clauses(text: str) -> list[Clause]:
    search_utils = pytest.importorskip("mlflow.utils.search_utils")
    utils = search_utils.SearchUtils
    clauses = []
    for parsed in utils.parse_search_filter(text):
        kind, op, value = parsed["type"], parsed["comparator"].upper(), parsed["value"]
        key = utils.translate_key_alias(parsed["key"]) if kind == "attribute" else parsed["key"]
        # The per-type comparator checks SqlAlchemyStore applies after parsing; each raises on a
        # comparator its type does not support.
        assert (
            utils.is_string_attribute(kind, key, op)
            or utils.is_numeric_attribute(kind, key, op)
            or utils.is_metric(kind, op)
            or utils.is_param(kind, op)
            or utils.is_tag(kind, op)
            or utils.is_dataset(kind, op)
        )
        if kind == "metric":
            value = float(value)
        clauses.append(Clause("param" if kind == "parameter" else kind, key, op, value))
    return clauses


@pytest.mark.parametrize("text", DIFFERENTIAL_CORPUS)
def test_same_clauses_as_mlflow(text: str) -> None:
    assert parse_run_filter(text) == _mlflow_clauses(text)


# Malformed filters that MLflow's sqlparse-based parser happens to accept (a stray or missing AND,
# a one-element tuple compared with "=", adjacent string literals concatenated inside a list).
# Rejecting them is deliberate.
LENIENT_IN_MLFLOW = [
    "AND metrics.a > 1",
    "metrics.a > 1 AND",
    "metrics.a > 1 metrics.b > 2",
    "metrics.a > 1 AND AND metrics.b > 1",
    "run_id = ('a')",
    "run_id IN ('a' 'b')",
]


@pytest.mark.parametrize(
    "text", [t for t, _ in RUN_FILTER_ERRORS if t.strip() and t not in LENIENT_IN_MLFLOW]
)
def test_mlflow_rejects_our_error_cases_too(text: str) -> None:
    with pytest.raises(Exception) as info:
        _mlflow_clauses(text)
    # MlflowException from its parser, AssertionError from the comparator checks above.
    assert type(info.value).__name__ in {"MlflowException", "AssertionError"}


@pytest.mark.parametrize("text", LENIENT_IN_MLFLOW)
def test_known_mlflow_leniencies_are_rejected_here(text: str) -> None:
    assert _mlflow_clauses(text)  # MLflow accepts...
    with pytest.raises(InvalidParameter):  # ...we do not
        parse_run_filter(text)


def test_mlflow_order_by_agrees() -> None:
    search_utils = pytest.importorskip("mlflow.utils.search_utils")
    kinds = {"parameter": "param"}
    for text, expected in RUN_ORDER_BY:
        if text != text.strip():
            continue  # MLflow rejects surrounding whitespace; we strip it
        kind, key, ascending = search_utils.SearchUtils.parse_order_by_for_search_runs(text)
        key = search_utils.SearchUtils.translate_key_alias(key)
        assert OrderKey(kinds.get(kind, kind), key, ascending) == expected, text
