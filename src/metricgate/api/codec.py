"""MLflow JSON <-> entities. Pure: decoding raises ``InvalidParameter``, never touches a store."""

from __future__ import annotations

import builtins  # Fields' methods str, int, bool and list shadow the types in its body
import json
import math
from array import array
from collections.abc import Iterable
from typing import Any, cast

import orjson
from aiohttp import web
from multidict import MultiMapping

from metricgate.domain.errors import BadRequest, InvalidParameter
from metricgate.domain.tracking.entities import (
    NO_EXTRAS,
    DatasetInput,
    Experiment,
    LoggedModel,
    Metric,
    MetricColumns,
    MetricPoint,
    MetricSeries,
    Param,
    Run,
    RunInfo,
    Tag,
)
from metricgate.domain.tracking.rules import is_valid_key
from metricgate.stores.base import RunRows, dataset_input_tags

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _missing(name: str) -> InvalidParameter:
    return InvalidParameter(
        f"Missing value for required parameter '{name}'. "
        "See the API docs for more information about request parameters."
    )


def _show(value: Any) -> str:
    """A short JSON-ish rendering for messages; never fails (ints beyond 64 bits included)."""
    try:
        return orjson.dumps(value).decode()[:200]
    except TypeError:
        return repr(value)[:200]


def _bad_type(name: str, value: Any, expected: str) -> InvalidParameter:
    shown = _show(value)
    return InvalidParameter(
        f"Invalid value {shown} for parameter '{name}' supplied: expected {expected}."
    )


class Fields:
    """Typed access to request fields from a JSON body or a query string.

    Query strings carry every value as a string, so numbers and booleans are parsed from text
    there; JSON bodies must use the proto3-JSON types the MLflow client sends.
    """

    __slots__ = ("_data", "_query")

    def __init__(self, data: dict[str, Any] | MultiMapping[str], *, query: bool = False) -> None:
        self._data = data
        self._query = query

    @property
    def raw(self) -> dict[str, Any] | MultiMapping[str]:
        return self._data

    def has(self, name: builtins.str) -> builtins.bool:
        return self._data.get(name) is not None

    def str(
        self,
        name: builtins.str,
        *,
        required: builtins.bool = False,
        default: builtins.str | None = None,
    ) -> builtins.str | None:
        value = self._data.get(name)
        if value is None:
            if required:
                raise _missing(name)
            return default
        if not isinstance(value, str):
            raise _bad_type(name, value, "a string")
        if required and value == "":
            raise _missing(name)
        return value

    def req_str(self, name: builtins.str) -> builtins.str:
        value = self.str(name, required=True)
        assert value is not None
        return value

    def int(
        self,
        name: builtins.str,
        *,
        required: builtins.bool = False,
        default: builtins.int | None = None,
    ) -> builtins.int | None:
        value = self._data.get(name)
        # An empty query parameter (``?max_results=``) is an absent one; in a JSON body "" is a
        # string where a number belongs, which stock MLflow refuses too (its protobuf parser).
        if value is None or (value == "" and self._query):
            if required:
                raise _missing(name)
            return default
        return parse_int64(name, value)

    def bool(
        self,
        name: builtins.str,
        *,
        required: builtins.bool = False,
        default: builtins.bool | None = None,
    ) -> builtins.bool | None:
        value = self._data.get(name)
        if value is None:
            if required:
                raise _missing(name)
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _bad_type(name, value, "a boolean")

    def list(self, name: builtins.str) -> builtins.list[Any]:
        """A repeated field; a query string repeats the key (``stages=A&stages=B``)."""
        if self._query:
            # query=True comes only with request.query, a MultiMapping.
            return list(cast("MultiMapping[builtins.str]", self._data).getall(name, []))
        value = self._data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise _bad_type(name, value, "a list")
        return value

    def str_list(self, name: builtins.str) -> builtins.list[builtins.str]:
        values = self.list(name)
        for item in values:
            if not isinstance(item, str):
                raise _bad_type(name, item, "a list of strings")
        return values

    def dict_list(self, name: builtins.str) -> builtins.list[dict[builtins.str, Any]]:
        values = self.list(name)
        for item in values:
            if not isinstance(item, dict):
                raise _bad_type(name, item, "a list of objects")
        return values

    def run_id(self) -> builtins.str:
        """``run_id``, or the legacy ``run_uuid`` the client still sends."""
        value = self.str("run_id") or self.str("run_uuid")
        if not value:
            raise _missing("run_id")
        return value


# Floats at or beyond this magnitude are never taken as an int64, even when integral (see
# ``parse_int64``). 2**63 is exact as a float, so the comparison itself does not round.
_FLOAT_INT64_LIMIT = float(2**63)


def parse_int64(name: str, value: Any) -> int:
    """An int64 field (step, timestamp, start/end time, max_results, ...) from a JSON body or a
    query string: a JSON integer, an integral JSON number (``1.0``, ``1e3``: the mlflow server
    takes them too) or a decimal string; anything outside [-2**63, 2**63 - 1] is refused.

    Integral floats need care. orjson decodes an integer literal outside [-2**63, 2**64 - 1] to
    a float, and the float can land back inside the range: ``-9223372036854775809`` becomes
    ``-9.223372036854775808e18`` == -2**63 exactly, which a value check alone would store as
    INT64_MIN. Rounding is monotonic and -2**63 is representable, so every such literal gives a
    float of magnitude >= 2**63 (below INT64_MIN: <= -2**63; beyond 2**64 - 1: >= 2**64), and
    the JSON text need not be looked at again: refusing every float with ``abs(v) >= 2**63``
    closes the whole class. The price is a float *literal* that is exactly -2**63
    (``-9.223372036854775808e18``), also refused; stock MLflow would take it, no client sends it.
    Integers (orjson's up to 2**64 - 1, Python json's of any size) are exact and range-checked."""
    if isinstance(value, bool):
        raise _bad_type(name, value, "an integer")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str):
        try:
            result = int(value.strip())
        except ValueError:
            raise _bad_type(name, value, "an integer") from None
    elif isinstance(value, float) and value.is_integer():
        if not -_FLOAT_INT64_LIMIT < value < _FLOAT_INT64_LIMIT:
            raise _bad_type(name, value, _INT64_RANGE)
        result = int(value)
    else:
        raise _bad_type(name, value, "an integer")
    if not _INT64_MIN <= result <= _INT64_MAX:
        raise _bad_type(name, value, _INT64_RANGE)
    return result


_INT64_RANGE = f"a 64-bit integer (from {_INT64_MIN} to {_INT64_MAX})"


def parse_double(name: str, value: Any) -> float:
    """A proto double: a JSON number or one of the strings proto3 JSON uses for non-finite values."""
    if isinstance(value, bool):
        raise _bad_type(name, value, "a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # accepts "NaN", "Infinity", "-Infinity" and numeric strings
        except ValueError:
            pass
    raise InvalidParameter(
        f"Got invalid value {str(value)[:200]!r} for metric '{name}' (value must be a number)."
    )


def decode_json_body(raw: bytes) -> Fields:
    """Decode a JSON object body; an empty body counts as ``{}`` (DELETE and some POSTs)."""
    if not raw.strip():
        return Fields({})
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = _decode_lenient(raw)
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    # PostgreSQL text cannot hold NUL; refuse it here with a clear 400 instead of failing later.
    if b"\\u0000" in raw and _has_nul(data):
        raise InvalidParameter("String values may not contain the NUL character (\\u0000).")
    return Fields(data)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _decode_lenient(raw: bytes) -> Any:
    """Python's json (what MLflow's Flask server uses) also takes bare NaN/Infinity tokens,
    which json.dumps in a hand-written client produces; accept them too."""
    try:
        data = json.loads(raw)
        # json accepts lone surrogates ("\\ud800") that no UTF-8 store can hold; orjson does not.
        orjson.dumps(data)
    except (ValueError, RecursionError, TypeError):
        raise BadRequest("Malformed JSON in request body") from None
    return data


def check_json_content_type(request: web.Request) -> None:
    """MLflow's server refuses non-JSON POST/PUT bodies. Besides matching it, this stops a web page
    on another origin from writing here with a form post (no CORS preflight for form types)."""
    if request.method not in ("POST", "PUT"):
        return
    if not request.headers.get("Content-Type"):
        raise InvalidParameter("Bad Request. Content-Type header is missing.")
    if request.content_type != "application/json":
        raise InvalidParameter("Bad Request. Content-Type must be one of ['application/json'].")


# The decoded body, kept on the request: the access check reads it before the handler does.
PARSED_BODY_KEY = web.RequestKey("parsed_body", Fields)


async def read_json(request: web.Request, max_bytes: int | None = None) -> Fields:
    if max_bytes is None and PARSED_BODY_KEY in request:
        return request[PARSED_BODY_KEY]  # checked and parsed already (the access check's)
    check_json_content_type(request)
    raw = await request.read()  # aiohttp keeps the bytes: a second read costs nothing
    if max_bytes is not None and len(raw) > max_bytes:
        raise InvalidParameter(
            f"Batched logging API requests must be at most {max_bytes} bytes, got payload of size {len(raw)}."
        )
    if PARSED_BODY_KEY in request:
        return request[PARSED_BODY_KEY]
    fields = decode_json_body(raw)
    request[PARSED_BODY_KEY] = fields
    return fields


async def read_fields(request: web.Request) -> Fields:
    """GET requests carry fields in the query string, the rest in a JSON body."""
    if request.method == "GET":
        if any("\x00" in k or "\x00" in v for k, v in request.query.items()):
            raise InvalidParameter("Query parameters may not contain the NUL character.")
        return Fields(request.query, query=True)
    return await read_json(request)


def json_response(payload: dict[str, Any]) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        content_type="application/json",
    )


def page_response(
    field: str, items: list[dict[str, Any]], next_page_token: str | None
) -> web.Response:
    """A search/list page: MLflow omits ``next_page_token`` on the last page."""
    body: dict[str, Any] = {field: items}
    if next_page_token:
        body["next_page_token"] = next_page_token
    return json_response(body)


EMPTY = b"{}"


def empty_response() -> web.Response:
    return web.Response(body=EMPTY, content_type="application/json")


# ---------------------------------------------------------------- decoding nested records


def decode_tags(items: Iterable[dict[str, Any]], field: str = "tags") -> list[Tag]:
    tags = []
    for item in items:
        key = item.get("key")
        value = item.get("value", "")
        if not isinstance(key, str) or key == "":
            raise _missing(f"{field}.key")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise _bad_type(f"{field}.value", value, "a string")
        tags.append(Tag(key, value))
    return tags


def decode_params(items: Iterable[dict[str, Any]]) -> list[Param]:
    params = []
    for item in items:
        key = item.get("key")
        # proto2 semantics: an absent value is the empty string, as MLflow stores it.
        value = item.get("value", "")
        if not isinstance(key, str) or key == "":
            raise _missing("params.key")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise _bad_type("params.value", value, "a string")
        params.append(Param(key, value))
    return params


def decode_metric(item: dict[str, Any] | Fields) -> Metric:
    if isinstance(item, dict):
        fast = _decode_plain_metric(item)
        if fast is not None:
            return fast
    fields = item if isinstance(item, Fields) else Fields(item)
    key = fields.str("key", required=True)
    raw_value = fields.raw.get("value")
    if raw_value is None:
        raise _missing("value")
    timestamp = fields.int("timestamp", required=True)
    assert key is not None and timestamp is not None
    return Metric(
        key=key,
        value=parse_double(key, raw_value),
        timestamp_ms=timestamp,
        step=fields.int("step", default=0) or 0,
        model_id=fields.str("model_id") or None,
        dataset_name=fields.str("dataset_name") or None,
        dataset_digest=fields.str("dataset_digest") or None,
    )


def _decode_plain_metric(item: dict[str, Any]) -> Metric | None:
    """Hot path of log-batch: the shape the mlflow client sends (str key, number value, int
    timestamp and step, no extras). Anything else returns None and takes the general path,
    which also produces the error messages. Only exact ints pass here: a float timestamp or step
    (what orjson makes of an integer literal beyond 64 bits) always reaches ``parse_int64``."""
    key = item.get("key")
    value = item.get("value")
    timestamp = item.get("timestamp")
    step = item.get("step", 0)
    if (
        type(key) is str
        and key
        and (type(value) is float or type(value) is int)
        and type(timestamp) is int
        and type(step) is int
        and _INT64_MIN <= timestamp <= _INT64_MAX
        and _INT64_MIN <= step <= _INT64_MAX
        and "model_id" not in item
        and "dataset_name" not in item
        and "dataset_digest" not in item
    ):
        return Metric(key, float(value), timestamp, step)
    return None


def decode_plain_metric_columns(items: list[dict[str, Any]]) -> MetricColumns | None:
    """log-batch's hot path: metrics the way the mlflow client sends them (see
    ``_decode_plain_metric``), already valid (key rules, timestamp >= 0), straight into
    columns, with no object per point. ``None`` as soon as one is anything else: the general
    path then decodes and validates the request and words the error."""
    keys: list[str] = []
    values: list[float] = []
    timestamps: list[int] = []
    steps: list[int] = []
    valid_key = is_valid_key
    for item in items:
        key = item.get("key")
        value = item.get("value")
        timestamp = item.get("timestamp")
        step = item.get("step", 0)
        if not (
            type(key) is str
            and (type(value) is float or type(value) is int)
            and type(timestamp) is int
            and type(step) is int
            and 0 <= timestamp <= _INT64_MAX
            and _INT64_MIN <= step <= _INT64_MAX
            and "model_id" not in item
            and "dataset_name" not in item
            and "dataset_digest" not in item
            and valid_key(key)
        ):
            return None
        keys.append(key)
        values.append(value)
        timestamps.append(timestamp)
        steps.append(step)
    try:
        return MetricColumns(keys, array("d", values), array("q", timestamps), array("q", steps))
    except OverflowError:  # an int value beyond a double's range: the general path refuses it
        return None


# ---------------------------------------------------------------- encoding


def encode_double(value: float) -> float | str:
    """proto3 JSON spells non-finite doubles as strings; the client parses them back."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def encode_tags(tags: Iterable[Tag | Param]) -> list[dict[str, str]]:
    return [{"key": t.key, "value": t.value} for t in tags]


def encode_experiment(exp: Experiment) -> dict[str, Any]:
    return {
        "experiment_id": exp.experiment_id,
        "name": exp.name,
        "artifact_location": exp.artifact_location,
        "lifecycle_stage": exp.lifecycle_stage,
        "creation_time": exp.creation_time,
        "last_update_time": exp.last_update_time,
        "tags": encode_tags(exp.tags),
    }


def encode_metric(metric: Metric) -> dict[str, Any]:
    point = (
        metric.key,
        metric.value,
        metric.timestamp_ms,
        metric.step,
        metric.model_id,
        metric.dataset_name,
        metric.dataset_digest,
    )
    return encode_metric_points([(*point, metric.run_id) if metric.run_id else point])[0]


def encode_metric_points(points: Iterable[MetricPoint]) -> list[dict[str, Any]]:
    """A history page (with ``run_id`` where a point carries one, as bulk reads do). Its hot
    path: most points carry no model or dataset and most values are finite, so those take one
    dict literal and a single ``isfinite`` check each."""
    isfinite = math.isfinite
    out = []
    for point in points:
        key, value, timestamp_ms, step, model_id, dataset_name, dataset_digest = point[:7]
        item = {
            "key": key,
            "value": value if isfinite(value) else encode_double(value),
            "timestamp": timestamp_ms,
            "step": step,
        }
        if model_id or dataset_name or dataset_digest:
            if model_id:
                item["model_id"] = model_id
            if dataset_name:
                item["dataset_name"] = dataset_name
            if dataset_digest:
                item["dataset_digest"] = dataset_digest
        if len(point) > 7:
            item["run_id"] = point[7]
        out.append(item)
    return out


def encode_metric_series(
    series: Iterable[MetricSeries], with_run_id: bool = True
) -> list[dict[str, Any]]:
    """Every point of each series (bulk reads add its ``run_id``, get-history does not, as
    MLflow). A series of plain, finite points (nearly all) is one comprehension over its
    columns; anything else goes point by point through ``encode_metric_points``, so both spell
    a point the same."""
    isfinite = math.isfinite
    out: list[dict[str, Any]] = []
    for s in series:
        key, run_id = s.key, s.run_id
        if s.extras is None and all(map(isfinite, s.values)):
            if with_run_id:
                out.extend(
                    [
                        {"key": key, "value": v, "timestamp": t, "step": step, "run_id": run_id}
                        for step, t, v in zip(s.steps, s.timestamps_ms, s.values, strict=True)
                    ]
                )
            else:
                out.extend(
                    [
                        {"key": key, "value": v, "timestamp": t, "step": step}
                        for step, t, v in zip(s.steps, s.timestamps_ms, s.values, strict=True)
                    ]
                )
        else:
            extras = s.extras or [NO_EXTRAS] * len(s)
            tail = (run_id,) if with_run_id else ()
            out.extend(
                encode_metric_points(
                    (key, v, t, step, e[0], e[1], e[2], *tail)
                    for step, t, v, e in zip(
                        s.steps, s.timestamps_ms, s.values, extras, strict=True
                    )
                )
            )
    return out


def encode_run_info(info: RunInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_id": info.run_id,
        "run_uuid": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "user_id": info.user_id,
        "status": info.status,
        "artifact_uri": info.artifact_uri,
        "lifecycle_stage": info.lifecycle_stage,
    }
    if info.start_time is not None:
        out["start_time"] = info.start_time
    if info.end_time is not None:
        out["end_time"] = info.end_time
    return out


def _encode_dataset_input(item: DatasetInput) -> dict[str, Any]:
    ds = item.dataset
    dataset: dict[str, Any] = {
        "name": ds.name,
        "digest": ds.digest,
        "source_type": ds.source_type,
        "source": ds.source,
    }
    if ds.schema is not None:
        dataset["schema"] = ds.schema
    if ds.profile is not None:
        dataset["profile"] = ds.profile
    return {"tags": encode_tags(item.tags), "dataset": dataset}


def encode_run(run: Run) -> dict[str, Any]:
    return {
        "info": encode_run_info(run.info),
        "data": {
            "metrics": [encode_metric(m) for m in run.metrics],
            "params": encode_tags(run.params),
            "tags": encode_tags(run.tags),
        },
        "inputs": {
            "dataset_inputs": [_encode_dataset_input(d) for d in run.dataset_inputs],
            "model_inputs": [{"model_id": m} for m in run.model_inputs],
        },
        "outputs": {
            "model_outputs": [{"model_id": o.model_id, "step": o.step} for o in run.model_outputs]
        },
    }


def encode_run_rows(rows: RunRows) -> list[dict[str, Any]]:
    """``encode_run`` of each run, built straight from the store's rows (layout: ``RunRows``)
    with no entity in between: the hot path of runs/get, runs/search and exports. Same keys, in
    the same order, as ``encode_run``; tests hold the two equal."""
    isfinite = math.isfinite
    params, tags, metrics = rows.params, rows.tags, rows.metrics
    datasets, model_inputs, model_outputs = (
        rows.dataset_inputs,
        rows.model_inputs,
        rows.model_outputs,
    )
    no_rows: list[Any] = []
    out = []
    for run_id in rows.ids:
        row = rows.info[run_id]
        info: dict[str, Any] = {
            "run_id": run_id,
            "run_uuid": run_id,
            "run_name": row[2],
            "experiment_id": str(row[9]),
            "user_id": row[3],
            "status": row[4],
            "artifact_uri": row[5],
            "lifecycle_stage": row[6],
        }
        if row[10] is not None:
            info["start_time"] = row[10]
        if row[11] is not None:
            info["end_time"] = row[11]
        run_metrics = []
        for m in metrics.get(run_id, no_rows):
            value = m[12]
            metric = {"key": m[2], "value": value if isfinite(value) else encode_double(value),
                      "timestamp": m[9], "step": m[10]}  # fmt: skip
            if m[3]:
                metric["model_id"] = m[3]
            run_metrics.append(metric)
        out.append({
            "info": info,
            "data": {
                "metrics": run_metrics,
                "params": [{"key": p[2], "value": p[3]} for p in params.get(run_id, no_rows)],
                "tags": [{"key": t[2], "value": t[3]} for t in tags.get(run_id, no_rows)],
            },
            "inputs": {
                "dataset_inputs": [_encode_dataset_row(d) for d in datasets.get(run_id, no_rows)],
                "model_inputs": [{"model_id": m[2]} for m in model_inputs.get(run_id, no_rows)],
            },
            "outputs": {"model_outputs": [{"model_id": o[2], "step": o[9]}
                                          for o in model_outputs.get(run_id, no_rows)]},
        })  # fmt: skip
    return out


def _encode_dataset_row(row: Any) -> dict[str, Any]:
    dataset: dict[str, Any] = {
        "name": row[2],
        "digest": row[3],
        "source_type": row[4],
        "source": row[5],
    }
    if row[6] is not None:
        dataset["schema"] = row[6]
    if row[7] is not None:
        dataset["profile"] = row[7]
    tags = [{"key": t["key"], "value": t["value"]} for t in dataset_input_tags(row[8])]
    return {"tags": tags, "dataset": dataset}


def encode_logged_model(model: LoggedModel) -> dict[str, Any]:
    info: dict[str, Any] = {
        "model_id": model.model_id,
        "experiment_id": model.experiment_id,
        "name": model.name,
        "creation_timestamp_ms": model.creation_timestamp_ms,
        "last_updated_timestamp_ms": model.last_updated_timestamp_ms,
        "artifact_uri": model.artifact_uri,
        "status": model.status,
        "tags": encode_tags(model.tags),
    }
    for attr in ("model_type", "source_run_id", "status_message"):
        value = getattr(model, attr)
        if value is not None:
            info[attr] = value
    return {
        "info": info,
        "data": {
            "params": encode_tags(model.params),
            "metrics": [encode_metric(m) for m in model.metrics],
        },
    }
