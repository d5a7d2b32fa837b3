"""Unit tests for api/codec.py: typed request fields, doubles, and the JSON shapes we send."""

from __future__ import annotations

import asyncio
import math

import orjson
import pytest
from aiohttp import streams
from aiohttp.test_utils import make_mocked_request
from multidict import MultiDict, MultiDictProxy

from metricgate.api.codec import (
    Fields,
    decode_metric,
    decode_params,
    decode_tags,
    empty_response,
    encode_double,
    encode_experiment,
    encode_logged_model,
    encode_metric,
    encode_run,
    encode_run_info,
    json_response,
    parse_double,
    parse_int64,
    read_fields,
    read_json,
)
from metricgate.domain.errors import BadRequest, InvalidParameter
from metricgate.domain.tracking.entities import (
    Dataset,
    DatasetInput,
    Experiment,
    LoggedModel,
    Metric,
    ModelOutput,
    Param,
    Run,
    RunInfo,
    Tag,
)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def query(*pairs: tuple[str, str]) -> Fields:
    return Fields(MultiDictProxy(MultiDict(list(pairs))), query=True)


# ---------------------------------------------------------------- strings


class TestStrings:
    def test_json_string(self) -> None:
        assert Fields({"name": "x"}).str("name") == "x"
        assert Fields({"name": "x"}).req_str("name") == "x"

    def test_query_string(self) -> None:
        assert query(("experiment_id", "12")).str("experiment_id") == "12"

    def test_missing_gives_default(self) -> None:
        assert Fields({}).str("name") is None
        assert Fields({}).str("name", default="d") == "d"
        assert Fields({"name": None}).str("name", default="d") == "d"

    def test_missing_required(self) -> None:
        with pytest.raises(InvalidParameter) as info:
            Fields({}).req_str("name")
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"
        assert "Missing value for required parameter 'name'" in info.value.message

    def test_empty_required_is_missing(self) -> None:
        with pytest.raises(InvalidParameter, match="Missing value for required parameter 'name'"):
            Fields({"name": ""}).req_str("name")

    def test_empty_optional_is_kept(self) -> None:
        assert Fields({"name": ""}).str("name") == ""

    @pytest.mark.parametrize("value", [0, 12, 1.5, True, False, [], {}, ["1"]])
    def test_json_number_is_not_a_string(self, value: object) -> None:
        # proto3 JSON: string fields must be JSON strings ("experiment_id": 0 is an error).
        with pytest.raises(InvalidParameter) as info:
            Fields({"experiment_id": value}).str("experiment_id")
        assert "experiment_id" in info.value.message
        assert info.value.status == 400

    def test_has(self) -> None:
        fields = Fields({"a": "x", "b": None, "c": ""})
        assert fields.has("a")
        assert not fields.has("b")
        assert fields.has("c")
        assert not fields.has("d")

    def test_raw(self) -> None:
        data = {"a": 1}
        assert Fields(data).raw is data


# ---------------------------------------------------------------- int64


class TestInt64:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (0, 0),
            (5, 5),
            (-3, -3),
            ("5", 5),
            ("-5", -5),
            (" 7 ", 7),
            ("1700000000000", 1_700_000_000_000),
            (1700000000000, 1_700_000_000_000),
            (3.0, 3),
            (INT64_MAX, INT64_MAX),
            (str(INT64_MAX), INT64_MAX),
            (INT64_MIN, INT64_MIN),
        ],
    )
    def test_numbers_and_numeric_strings(self, value: object, expected: int) -> None:
        assert Fields({"timestamp": value}).int("timestamp") == expected
        assert parse_int64("timestamp", value) == expected

    @pytest.mark.parametrize(
        "value", ["x", "1.5", "1e3", "", True, False, 1.5, [1], {"a": 1}, "NaN"]
    )
    def test_rejects_non_integers(self, value: object) -> None:
        if value == "":
            # An empty query parameter (``?step=``) means "not set"; in a JSON body "" is a
            # string where a number belongs (a 400, as stock MLflow's parser).
            assert query(("step", value)).int("step") is None
        with pytest.raises(InvalidParameter) as info:
            Fields({"timestamp": value}).int("timestamp")
        assert "timestamp" in info.value.message
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"

    @pytest.mark.parametrize(
        "value", [INT64_MAX + 1, str(INT64_MAX + 1), str(INT64_MIN - 1), 1e19, -1e19, 1e30]
    )
    def test_rejects_out_of_int64_range(self, value: object) -> None:
        with pytest.raises(InvalidParameter):
            parse_int64("step", value)

    @pytest.mark.parametrize("value", [INT64_MIN - 1, 10**30, -(10**30)])
    def test_huge_python_ints_raise_invalid_parameter(self, value: int) -> None:
        # The codec promises InvalidParameter for any bad input; building the message must not
        # fail on integers orjson cannot serialise (beyond 64 bits).
        with pytest.raises(InvalidParameter):
            parse_int64("step", value)

    def test_query_string_int(self) -> None:
        assert query(("max_results", "25")).int("max_results") == 25
        with pytest.raises(InvalidParameter):
            query(("max_results", "abc")).int("max_results")

    def test_default_and_required(self) -> None:
        assert Fields({}).int("step") is None
        assert Fields({}).int("step", default=0) == 0
        assert Fields({"step": None}).int("step", default=4) == 4
        with pytest.raises(
            InvalidParameter, match="Missing value for required parameter 'timestamp'"
        ):
            Fields({}).int("timestamp", required=True)
        with pytest.raises(
            InvalidParameter, match="Missing value for required parameter 'timestamp'"
        ):
            query(("timestamp", "")).int("timestamp", required=True)
        with pytest.raises(InvalidParameter, match="timestamp"):
            Fields({"timestamp": ""}).int("timestamp", required=True)

    def test_error_is_not_a_python_exception_message(self) -> None:
        with pytest.raises(InvalidParameter) as info:
            parse_int64("timestamp", "x")
        assert "Traceback" not in info.value.message
        assert "invalid literal" not in info.value.message


# ---------------------------------------------------------------- bool


class TestBool:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (True, True),
            (False, False),
            ("true", True),
            ("false", False),
            ("True", True),
            ("FALSE", False),
        ],
    )
    def test_values(self, value: object, expected: bool) -> None:
        assert Fields({"flag": value}).bool("flag") is expected

    def test_query_string_bool(self) -> None:
        assert query(("allow_deleted", "true")).bool("allow_deleted") is True
        assert query(("allow_deleted", "false")).bool("allow_deleted") is False

    @pytest.mark.parametrize("value", ["yes", "1", 1, 0, "", [True], {}])
    def test_rejects_other_values(self, value: object) -> None:
        with pytest.raises(InvalidParameter) as info:
            Fields({"flag": value}).bool("flag")
        assert "flag" in info.value.message

    def test_default_and_required(self) -> None:
        assert Fields({}).bool("flag") is None
        assert Fields({}).bool("flag", default=True) is True
        with pytest.raises(InvalidParameter, match="Missing value for required parameter 'flag'"):
            Fields({}).bool("flag", required=True)


# ---------------------------------------------------------------- lists


class TestLists:
    def test_json_list(self) -> None:
        assert Fields({"experiment_ids": ["1", "2"]}).list("experiment_ids") == ["1", "2"]
        assert Fields({"experiment_ids": ["1", "2"]}).str_list("experiment_ids") == ["1", "2"]

    def test_missing_list_is_empty(self) -> None:
        assert Fields({}).list("tags") == []
        assert Fields({"tags": None}).dict_list("tags") == []
        assert query().str_list("order_by") == []

    def test_query_repeats_the_key(self) -> None:
        fields = query(("run_ids", "a"), ("run_ids", "b"), ("metric_key", "loss"))
        assert fields.str_list("run_ids") == ["a", "b"]
        assert fields.list("metric_key") == ["loss"]

    @pytest.mark.parametrize("value", ["1", 1, {"a": 1}, True])
    def test_non_list_rejected(self, value: object) -> None:
        with pytest.raises(InvalidParameter) as info:
            Fields({"experiment_ids": value}).list("experiment_ids")
        assert "experiment_ids" in info.value.message

    def test_str_list_items_must_be_strings(self) -> None:
        with pytest.raises(InvalidParameter, match="experiment_ids"):
            Fields({"experiment_ids": ["1", 2]}).str_list("experiment_ids")

    def test_dict_list_items_must_be_objects(self) -> None:
        assert Fields({"tags": [{"key": "a"}]}).dict_list("tags") == [{"key": "a"}]
        with pytest.raises(InvalidParameter, match="tags"):
            Fields({"tags": [{"key": "a"}, "b"]}).dict_list("tags")


# ---------------------------------------------------------------- run_id / run_uuid


class TestRunId:
    def test_run_id(self) -> None:
        assert Fields({"run_id": "abc"}).run_id() == "abc"

    def test_run_uuid_fallback(self) -> None:
        assert Fields({"run_uuid": "abc"}).run_id() == "abc"
        assert query(("run_uuid", "abc")).run_id() == "abc"

    def test_run_id_wins(self) -> None:
        assert Fields({"run_id": "a", "run_uuid": "b"}).run_id() == "a"

    def test_empty_run_id_falls_back(self) -> None:
        assert Fields({"run_id": "", "run_uuid": "b"}).run_id() == "b"

    def test_missing(self) -> None:
        for data in ({}, {"run_id": ""}, {"run_id": None, "run_uuid": ""}):
            with pytest.raises(
                InvalidParameter, match="Missing value for required parameter 'run_id'"
            ):
                Fields(data).run_id()

    def test_run_id_must_be_string(self) -> None:
        with pytest.raises(InvalidParameter, match="run_id"):
            Fields({"run_id": 123}).run_id()


# ---------------------------------------------------------------- doubles


class TestDoubles:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [(1, 1.0), (0, 0.0), (-2.5, -2.5), ("3.25", 3.25), ("1e3", 1000.0), (1e308, 1e308)],
    )
    def test_finite(self, value: object, expected: float) -> None:
        result = parse_double("loss", value)
        assert isinstance(result, float)
        assert result == expected

    def test_non_finite_strings(self) -> None:
        assert math.isnan(parse_double("loss", "NaN"))
        assert parse_double("loss", "Infinity") == math.inf
        assert parse_double("loss", "-Infinity") == -math.inf

    @pytest.mark.parametrize("value", ["abc", "", True, False, [1.0], {"v": 1}, "1.0.0"])
    def test_rejects_non_numbers(self, value: object) -> None:
        with pytest.raises(InvalidParameter) as info:
            parse_double("loss", value)
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"
        assert info.value.status == 400

    def test_encode_double(self) -> None:
        assert encode_double(1.5) == 1.5
        assert encode_double(0.0) == 0.0
        assert encode_double(math.nan) == "NaN"
        assert encode_double(math.inf) == "Infinity"
        assert encode_double(-math.inf) == "-Infinity"

    @pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
    def test_round_trip(self, text: str) -> None:
        assert encode_double(parse_double("m", text)) == text


# ---------------------------------------------------------------- nested records


class TestDecodeRecords:
    def test_decode_metric(self) -> None:
        metric = decode_metric(
            {
                "key": "loss",
                "value": 0.5,
                "timestamp": "1700000000000",
                "step": "3",
                "model_id": "m-1",
            }
        )
        assert metric == Metric("loss", 0.5, 1_700_000_000_000, 3, model_id="m-1")

    def test_decode_metric_defaults(self) -> None:
        metric = decode_metric({"key": "loss", "value": "NaN", "timestamp": 1})
        assert metric.step == 0
        assert math.isnan(metric.value)
        assert (
            metric.model_id is None
            and metric.dataset_name is None
            and metric.dataset_digest is None
        )

    def test_decode_metric_from_fields(self) -> None:
        metric = decode_metric(Fields({"key": "acc", "value": 1, "timestamp": 2, "step": 3}))
        assert metric == Metric("acc", 1.0, 2, 3)

    @pytest.mark.parametrize("missing", ["key", "value", "timestamp"])
    def test_decode_metric_missing(self, missing: str) -> None:
        data = {"key": "loss", "value": 1.0, "timestamp": 1}
        del data[missing]
        with pytest.raises(
            InvalidParameter, match=f"Missing value for required parameter '{missing}'"
        ):
            decode_metric(data)

    @pytest.mark.parametrize(
        ("field", "value"),
        [("value", "abc"), ("timestamp", "x"), ("step", "y"), ("key", 5), ("value", True)],
    )
    def test_decode_metric_bad_types(self, field: str, value: object) -> None:
        data: dict[str, object] = {"key": "loss", "value": 1.0, "timestamp": 1, "step": 0}
        data[field] = value
        with pytest.raises(InvalidParameter):
            decode_metric(data)

    def test_decode_params(self) -> None:
        assert decode_params([{"key": "a", "value": "1"}, {"key": "b", "value": ""}]) == [
            Param("a", "1"),
            Param("b", ""),
        ]

    @pytest.mark.parametrize(
        "item",
        [
            {"value": "1"},
            {"key": "", "value": "1"},
            {"key": "a", "value": 1},
            {"key": 3, "value": "1"},
        ],
    )
    def test_decode_params_invalid(self, item: dict[str, object]) -> None:
        with pytest.raises(InvalidParameter):
            decode_params([item])

    def test_decode_params_missing_value_is_empty(self) -> None:
        # mlflow server/handlers.py _log_batch only requires params[i].key; proto2 reads "".
        assert decode_params([{"key": "a"}, {"key": "b", "value": None}]) == [
            Param("a", ""),
            Param("b", ""),
        ]

    def test_decode_tags(self) -> None:
        assert decode_tags(
            [{"key": "a", "value": "x"}, {"key": "b"}, {"key": "c", "value": None}]
        ) == [
            Tag("a", "x"),
            Tag("b", ""),
            Tag("c", ""),
        ]

    @pytest.mark.parametrize("item", [{"value": "x"}, {"key": ""}, {"key": "a", "value": 1}])
    def test_decode_tags_invalid(self, item: dict[str, object]) -> None:
        with pytest.raises(InvalidParameter):
            decode_tags([item])


# ---------------------------------------------------------------- encoding


def _run() -> Run:
    info = RunInfo(
        run_id="0123456789abcdef0123456789abcdef",
        experiment_id="7",
        run_name="brave-owl-1",
        user_id="alice",
        status="RUNNING",
        start_time=1_700_000_000_000,
        end_time=None,
        artifact_uri="mlflow-artifacts:/7/0123456789abcdef0123456789abcdef/artifacts",
        lifecycle_stage="active",
    )
    return Run(
        info=info,
        metrics=(Metric("loss", math.nan, 5, 2), Metric("acc", 0.9, 6, 1, model_id="m-abc")),
        params=(Param("lr", "0.1"),),
        tags=(Tag("mlflow.runName", "brave-owl-1"),),
        dataset_inputs=(
            DatasetInput(
                Dataset("train", "d1g", "local", '{"uri": "/x"}', schema='{"a": 1}'),
                (Tag("mlflow.data.context", "training"),),
            ),
        ),
        model_inputs=("m-in",),
        model_outputs=(ModelOutput("m-abc", 3),),
    )


class TestEncoding:
    def test_encode_experiment(self) -> None:
        exp = Experiment("12", "exp", "mlflow-artifacts:/12", "active", 1, 2, (Tag("k", "v"),))
        body = encode_experiment(exp)
        assert body == {
            "experiment_id": "12",
            "name": "exp",
            "artifact_location": "mlflow-artifacts:/12",
            "lifecycle_stage": "active",
            "creation_time": 1,
            "last_update_time": 2,
            "tags": [{"key": "k", "value": "v"}],
        }
        assert isinstance(body["experiment_id"], str)

    def test_encode_run_shape(self) -> None:
        body = encode_run(_run())
        assert set(body) == {"info", "data", "inputs", "outputs"}
        info = body["info"]
        assert info["run_id"] == info["run_uuid"] == "0123456789abcdef0123456789abcdef"
        assert info["experiment_id"] == "7" and isinstance(info["experiment_id"], str)
        assert info["status"] == "RUNNING"
        assert info["lifecycle_stage"] == "active"
        assert info["start_time"] == 1_700_000_000_000
        assert "end_time" not in info  # unset, as proto JSON omits it
        assert info["artifact_uri"].endswith("/artifacts")
        assert body["data"]["params"] == [{"key": "lr", "value": "0.1"}]
        assert body["data"]["tags"] == [{"key": "mlflow.runName", "value": "brave-owl-1"}]
        assert body["data"]["metrics"] == [
            {"key": "loss", "value": "NaN", "timestamp": 5, "step": 2},
            {"key": "acc", "value": 0.9, "timestamp": 6, "step": 1, "model_id": "m-abc"},
        ]
        assert body["inputs"] == {
            "dataset_inputs": [
                {
                    "tags": [{"key": "mlflow.data.context", "value": "training"}],
                    "dataset": {
                        "name": "train",
                        "digest": "d1g",
                        "source_type": "local",
                        "source": '{"uri": "/x"}',
                        "schema": '{"a": 1}',
                    },
                }
            ],
            "model_inputs": [{"model_id": "m-in"}],
        }
        assert body["outputs"] == {"model_outputs": [{"model_id": "m-abc", "step": 3}]}

    def test_encode_run_is_valid_json(self) -> None:
        # NaN must travel as the string "NaN" (orjson would turn a float NaN into null).
        text = json_response({"run": encode_run(_run())}).body
        decoded = orjson.loads(text)
        assert decoded["run"]["data"]["metrics"][0]["value"] == "NaN"

    def test_encode_run_info_end_time(self) -> None:
        info = encode_run_info(
            RunInfo(
                "r",
                "0",
                "n",
                "u",
                "FINISHED",
                None,
                10,
                "mlflow-artifacts:/0/r/artifacts",
                "deleted",
            )
        )
        assert info["end_time"] == 10
        assert "start_time" not in info
        assert info["lifecycle_stage"] == "deleted"

    def test_encode_metric_optional_fields(self) -> None:
        m = Metric(
            "k", math.inf, 1, 2, model_id="m", dataset_name="ds", dataset_digest="dg", run_id="r"
        )
        assert encode_metric(m) == {
            "key": "k",
            "value": "Infinity",
            "timestamp": 1,
            "step": 2,
            "model_id": "m",
            "dataset_name": "ds",
            "dataset_digest": "dg",
            "run_id": "r",
        }
        assert encode_metric(Metric("k", -math.inf, 1))["value"] == "-Infinity"

    def test_encode_logged_model(self) -> None:
        model = LoggedModel(
            model_id="m-1",
            experiment_id="3",
            name="model",
            artifact_uri="mlflow-artifacts:/3/models/m-1/artifacts",
            creation_timestamp_ms=1,
            last_updated_timestamp_ms=2,
            status="LOGGED_MODEL_PENDING",
            model_type=None,
            source_run_id="r1",
            status_message=None,
            tags=(Tag("t", "v"),),
            params=(Param("p", "1"),),
        )
        body = encode_logged_model(model)
        assert body["info"]["experiment_id"] == "3"
        assert body["info"]["model_id"] == "m-1"
        assert body["info"]["source_run_id"] == "r1"
        assert "model_type" not in body["info"]
        assert body["info"]["tags"] == [{"key": "t", "value": "v"}]
        assert body["data"] == {"params": [{"key": "p", "value": "1"}], "metrics": []}

    def test_json_and_empty_response(self) -> None:
        resp = json_response({"a": 1})
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert orjson.loads(resp.body) == {"a": 1}
        empty = empty_response()
        assert empty.status == 200
        assert empty.content_type == "application/json"
        assert orjson.loads(empty.body) == {}


# ---------------------------------------------------------------- request bodies


def _request(method: str, body: bytes, path: str = "/api/2.0/mlflow/runs/log-batch"):
    loop = asyncio.get_running_loop()

    class _Protocol:
        _reading_paused = False

        def pause_reading(self, *args: object, **kwargs: object) -> None: ...

        def resume_reading(self, *args: object, **kwargs: object) -> None: ...

    reader = streams.StreamReader(_Protocol(), 2**16, loop=loop)  # type: ignore[arg-type]
    reader.feed_data(body)
    reader.feed_eof()
    return make_mocked_request(
        method, path, headers={"Content-Type": "application/json"}, payload=reader, loop=loop
    )


class TestReadJson:
    async def test_object(self) -> None:
        fields = await read_json(_request("POST", b'{"run_id": "abc", "n": 1}'))
        assert fields.str("run_id") == "abc"

    @pytest.mark.parametrize("body", [b"", b"  ", b"\n"])
    async def test_empty_body_is_empty_object(self, body: bytes) -> None:
        fields = await read_json(_request("POST", body))
        assert fields.raw == {}

    @pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"not json", b'{"a": }', b"\xff\xfe"])
    async def test_malformed(self, body: bytes) -> None:
        with pytest.raises(BadRequest) as info:
            await read_json(_request("POST", body))
        assert info.value.error_code == "BAD_REQUEST"
        assert info.value.status == 400

    @pytest.mark.parametrize("body", [b"[]", b"[1, 2]", b"1", b'"x"', b"null", b"true"])
    async def test_non_object(self, body: bytes) -> None:
        with pytest.raises(BadRequest):
            await read_json(_request("POST", body))

    async def test_bare_non_finite_tokens(self) -> None:
        # Python's json.dumps writes bare NaN/Infinity and MLflow's Flask server accepts them.
        fields = await read_json(_request("POST", b'{"value": NaN, "a": Infinity, "b": -Infinity}'))
        assert math.isnan(parse_double("value", fields.raw["value"]))
        assert fields.raw["a"] == math.inf and fields.raw["b"] == -math.inf

    @pytest.mark.parametrize(
        "body",
        [
            b'{"name": "a\\u0000b"}',
            b'{"tags": [{"key": "k", "value": "\\u0000"}]}',
            b'{"k\\u0000": "v"}',
        ],
    )
    async def test_nul_refused(self, body: bytes) -> None:
        # PostgreSQL text cannot hold NUL: refuse it as a bad parameter (400), not a 500 later.
        with pytest.raises(InvalidParameter) as info:
            await read_json(_request("POST", body))
        assert info.value.status == 400

    async def test_escaped_backslash_u0000_is_not_nul(self) -> None:
        fields = await read_json(_request("POST", b'{"name": "a\\\\u0000"}'))
        assert fields.str("name") == "a\\u0000"

    async def test_nul_refused_in_query_string(self) -> None:
        loop = asyncio.get_running_loop()
        request = make_mocked_request(
            "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=a%00b", loop=loop
        )
        with pytest.raises(InvalidParameter):
            await read_fields(request)

    async def test_get_reads_the_query_string(self) -> None:
        loop = asyncio.get_running_loop()
        request = make_mocked_request(
            "GET", "/api/2.0/mlflow/runs/get?run_id=abc&x=1&x=2", loop=loop
        )
        fields = await read_fields(request)
        assert fields.str("run_id") == "abc"
        assert fields.str_list("x") == ["1", "2"]
        assert fields.int("x") == 1


# ---------------------------------------------------------------- log-batch's columnar fast path


def test_plain_metric_columns_equal_the_general_decode() -> None:
    from metricgate.api.codec import decode_plain_metric_columns
    from metricgate.domain.metrics import wire

    items = [
        {"key": "loss", "value": 0.25, "timestamp": 1_700_000_000_000, "step": 3},
        {"key": "acc/top-1", "value": 1, "timestamp": 0},  # int value, step absent -> 0
        {"key": "x y.z:w", "value": -1.5e300, "timestamp": 2**63 - 1, "step": -(2**63)},
    ]
    columns = decode_plain_metric_columns(items)
    assert columns is not None and len(columns) == 3
    general = [decode_metric(dict(i)) for i in items]
    assert columns.metrics() == general
    # The stream entry is byte for byte the one the general path writes.
    assert wire.encode_columns("r" * 32, columns, 7) == wire.encode("r" * 32, general, 7)
    assert decode_plain_metric_columns([]) is not None


@pytest.mark.parametrize(
    "item",
    [
        {"key": "m", "value": True, "timestamp": 1},  # bool is not a number here
        {"key": "m", "value": "NaN", "timestamp": 1},  # strings: the general path parses them
        {"key": "m", "value": 1.0, "timestamp": -1},  # refused by validation, with its message
        {"key": "m", "value": 1.0, "timestamp": 1.5},
        {"key": "m", "value": 1.0, "timestamp": 1, "step": 2**63},
        {"key": "../m", "value": 1.0, "timestamp": 1},  # invalid key
        {"key": "", "value": 1.0, "timestamp": 1},
        {"key": 3, "value": 1.0, "timestamp": 1},
        {"key": "m", "value": 1.0, "timestamp": 1, "model_id": "m-1"},
        {"key": "m", "value": 10**400, "timestamp": 1},  # beyond a double
        {"key": "m", "timestamp": 1},
    ],
)
def test_anything_but_a_plain_valid_metric_leaves_the_fast_path(item: dict[str, object]) -> None:
    from metricgate.api.codec import decode_plain_metric_columns

    assert decode_plain_metric_columns([{"key": "ok", "value": 1.0, "timestamp": 1}, item]) is None
