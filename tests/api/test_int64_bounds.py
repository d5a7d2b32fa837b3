"""Issue 11 §3 and §6: int64 fields refuse every value outside [-2**63, 2**63 - 1], at every place
an int64 is parsed, and runs/create refuses an empty or missing ``experiment_id``.

The defect behind §3: orjson decodes an integer literal beyond [-2**63, 2**64 - 1] to a float,
and ``-9223372036854775809`` becomes the float -2**63, which used to pass the range check and be
stored as INT64_MIN. The guard is ``SITES`` + ``QUERY_SITES``: every int64 field of every endpoint,
each sent every out-of-range spelling through HTTP; ``test_every_int64_field_is_covered`` fails
when a new ``.int("field")`` appears in the API layer without being added here.

Stock MLflow 3.17.2 (SQLite) answers 200 to every out-of-range literal in log-metric, log-batch,
runs/create and runs/update (its proto parse fails and the schema check takes any Python int);
here they are 400 INVALID_PARAMETER_VALUE, as for the positive side before.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from tests.api.conftest import JSON_CONTENT_TYPE, Api, Reply

from metricgate.api.codec import Fields, parse_int64
from metricgate.domain.errors import InvalidParameter

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

ARTIFACTS = "/api/2.0/mlflow-artifacts"
METRICGATE = "/api/2.0/metricgate"

# Raw JSON literals (not Python values: orjson.dumps cannot write integers beyond 64 bits, and
# the point is what the server's decoder makes of the text).
OUT_OF_RANGE_JSON = [
    "-9223372036854775809",  # INT64_MIN - 1: orjson -> float -2**63 (the reported bug)
    "-9223372036854776832",  # -2**63 - 1024: the last literal that still rounds to -2**63
    "9223372036854775808",  # INT64_MAX + 1: still an int in orjson
    "18446744073709551615",  # 2**64 - 1: orjson's last int
    "18446744073709551616",  # 2**64: a float
    "-18446744073709551616",  # -2**64
    "123456789012345678901234567890",
    "1e19",
    "-1e19",
    "-9.223372036854775809e18",  # a float literal that rounds to -2**63
    "9.223372036854775807e18",  # rounds to 2**63
    '"1e19"',
    '"-9223372036854775809"',
    '"9223372036854775808"',
    '"18446744073709551616"',
]

# Query strings carry text; every spelling is a string there.
OUT_OF_RANGE_QUERY = [
    str(INT64_MIN - 1),
    str(INT64_MAX + 1),
    str(2**64),
    str(-(2**64)),
    "1e19",
    "-9.223372036854775809e18",
]


def _check_refused(reply: Reply, field: str) -> None:
    message = reply.error(400, "INVALID_PARAMETER_VALUE")
    # The int64 parser's own refusal, not a later check that happened to catch the value.
    assert f"'{field}'" in message, reply
    assert "integer" in message, reply


# ---------------------------------------------------------------- the state a site may write


@dataclass
class Ctx:
    api: Api
    experiment_id: str
    run_id: str


async def _nothing_logged(ctx: Ctx) -> None:
    run = await ctx.api.get_run(ctx.run_id)
    assert run["data"].get("metrics", []) == [], run
    assert run["data"].get("params", []) == [], run
    assert await ctx.api.history(ctx.run_id, "m") == []


async def _no_run_created(ctx: Ctx) -> None:
    body = (await ctx.api.post("/runs/search", {"experiment_ids": [ctx.experiment_id]})).ok()
    assert [r["info"]["run_id"] for r in body.get("runs", [])] == [ctx.run_id], body


async def _run_not_updated(ctx: Ctx) -> None:
    info = (await ctx.api.get_run(ctx.run_id))["info"]
    assert info["status"] == "RUNNING" and "end_time" not in info, info


async def _no_outputs(ctx: Ctx) -> None:
    run = await ctx.api.get_run(ctx.run_id)
    assert run.get("outputs", {}).get("model_outputs", []) == [], run


async def _read_only(ctx: Ctx) -> None:
    return None


@dataclass(frozen=True)
class Site:
    """One int64 field in a JSON body: ``body`` is a template; ``{V}`` is the raw literal."""

    id: str
    module: str  # the src/metricgate/api module that parses it (for the coverage guard)
    field: str
    method: str
    path: str  # relative to /api/2.0/mlflow unless absolute
    body: str
    stored: Callable[[Ctx], Awaitable[None]]

    def render(self, ctx: Ctx, literal: str) -> tuple[str, bytes]:
        text = (
            self.body.replace("{R}", ctx.run_id)
            .replace("{E}", ctx.experiment_id)
            .replace("{V}", literal)
        )
        return self.path.replace("{R}", ctx.run_id).replace("{E}", ctx.experiment_id), text.encode()


_GOOD = '{"key": "m", "value": 1.5, "timestamp": 1, "step": 0}'

SITES = [
    Site("log-metric.step", "codec", "step", "POST", "/runs/log-metric",
         '{"run_id": "{R}", "key": "m", "value": 1, "timestamp": 1, "step": {V}}', _nothing_logged),
    Site("log-metric.timestamp", "codec", "timestamp", "POST", "/runs/log-metric",
         '{"run_id": "{R}", "key": "m", "value": 1, "timestamp": {V}, "step": 0}', _nothing_logged),
    # Metrics only: the columnar fast path sees the batch first; a good point before the bad one
    # must not be stored either.
    Site("log-batch.columnar.step", "codec", "step", "POST", "/runs/log-batch",
         '{"run_id": "{R}", "metrics": [' + _GOOD + ', {"key": "m", "value": 1, "timestamp": 1, "step": {V}}]}',
         _nothing_logged),
    Site("log-batch.columnar.timestamp", "codec", "timestamp", "POST", "/runs/log-batch",
         '{"run_id": "{R}", "metrics": [' + _GOOD + ', {"key": "m", "value": 1, "timestamp": {V}}]}',
         _nothing_logged),
    # With params: the general path (per-metric fast decode, then Fields).
    Site("log-batch.general.step", "codec", "step", "POST", "/runs/log-batch",
         '{"run_id": "{R}", "params": [{"key": "p", "value": "v"}], "metrics": [' + _GOOD
         + ', {"key": "m", "value": 1, "timestamp": 1, "step": {V}}]}', _nothing_logged),
    Site("log-batch.general.timestamp", "codec", "timestamp", "POST", "/runs/log-batch",
         '{"run_id": "{R}", "params": [{"key": "p", "value": "v"}], "metrics": [' + _GOOD
         + ', {"key": "m", "value": 1, "timestamp": {V}, "step": 0}]}', _nothing_logged),
    Site("runs-create.start_time", "runs", "start_time", "POST", "/runs/create",
         '{"experiment_id": "{E}", "start_time": {V}}', _no_run_created),
    Site("runs-update.end_time", "runs", "end_time", "POST", "/runs/update",
         '{"run_id": "{R}", "status": "FINISHED", "end_time": {V}}', _run_not_updated),
    Site("runs-outputs.step", "runs", "step", "POST", "/runs/outputs",
         '{"run_id": "{R}", "models": [{"model_id": "m-0123", "step": {V}}]}', _no_outputs),
    Site("runs-search.max_results", "runs", "max_results", "POST", "/runs/search",
         '{"experiment_ids": ["{E}"], "max_results": {V}}', _read_only),
    Site("experiments-search.max_results", "experiments", "max_results", "POST", "/experiments/search",
         '{"max_results": {V}}', _read_only),
    Site("logged-models-search.max_results", "logged_models", "max_results", "POST", "/logged-models/search",
         '{"experiment_ids": ["{E}"], "max_results": {V}}', _read_only),
    Site("mpu-create.num_parts", "multipart", "num_parts", "POST", ARTIFACTS + "/mpu/create/{E}/{R}/artifacts",
         '{"path": "/tmp/big.bin", "num_parts": {V}}', _read_only),
    Site("mpu-complete.part_number", "multipart", "part_number", "POST",
         ARTIFACTS + "/mpu/complete/{E}/{R}/artifacts/big.bin",
         '{"path": "/tmp/big.bin", "upload_id": "0123456789abcdef", "parts": [{"part_number": {V}, "etag": "x"}]}',
         _read_only),
]  # fmt: skip


@dataclass(frozen=True)
class QuerySite:
    """One int64 field in a query string; ``params`` hold the other fields, ``{R}`` the run."""

    id: str
    module: str
    field: str
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()


QUERY_SITES = [
    QuerySite("runs-search.max_results", "runs", "max_results", "GET", "/runs/search", (("experiment_ids", "0"),)),
    QuerySite("experiments-search.max_results", "experiments", "max_results", "GET", "/experiments/search"),
    QuerySite("get-history.max_results", "metrics", "max_results", "GET", "/metrics/get-history",
              (("run_id", "{R}"), ("metric_key", "m"))),
    QuerySite("bulk-interval.max_results", "metrics", "max_results", "GET", "/metrics/get-history-bulk-interval",
              (("run_ids", "{R}"), ("metric_key", "m"))),
    QuerySite("bulk-interval.start_step", "metrics", "start_step", "GET", "/metrics/get-history-bulk-interval",
              (("run_ids", "{R}"), ("metric_key", "m"), ("end_step", "10"))),
    QuerySite("bulk-interval.end_step", "metrics", "end_step", "GET", "/metrics/get-history-bulk-interval",
              (("run_ids", "{R}"), ("metric_key", "m"), ("start_step", "0"))),
    QuerySite("registered-models-search.max_results", "registry", "max_results", "GET",
              "/registered-models/search"),
    QuerySite("model-versions-search.max_results", "registry", "max_results", "GET", "/model-versions/search"),
    QuerySite("registry-history.max_results", "registry_history", "max_results", "GET",
              METRICGATE + "/registry/history", (("name", "some-model"),)),
    QuerySite("webhook-deliveries.max_results", "webhooks", "max_results", "GET",
              METRICGATE + "/webhooks/1/deliveries"),
    QuerySite("mpu-part.part_number", "multipart", "part_number", "PUT",
              ARTIFACTS + "/mpu/part/{E}/{R}/artifacts/big.bin", (("upload_id", "0123456789abcdef"),)),
]  # fmt: skip

# Parsed somewhere other than a REST body or query string: covered by their own tests below.
OTHER_SITES = {
    ("graphql/resolvers", "max_results"),
    # Routes that answer only with auth on (this module's app has it off): refused out of range
    # in tests/api/test_auth_api.py::test_int64_fields_of_auth_routes_refuse_out_of_range.
    ("approvals", "max_results"),
    ("audit", "max_results"),
    ("audit", "since"),
    ("audit", "until"),
    ("tokens", "expires_in_days"),
}


@pytest.fixture
def client(module_client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """One app for the module: every case makes its own experiment and run and checks only
    those, so the ~340 cases need not each open pools and a fresh database."""
    return module_client


@pytest.fixture
async def ctx(api: Api) -> Ctx:
    experiment_id = await api.create_experiment(f"int64-{uuid.uuid4().hex[:8]}")
    run_id = (await api.create_run(experiment_id))["info"]["run_id"]
    return Ctx(api, experiment_id, run_id)


async def _send(api: Api, method: str, path: str, body: bytes) -> Reply:
    absolute = path.startswith("/api/")
    return await api.request(
        method, path, data=body, headers={"Content-Type": JSON_CONTENT_TYPE}, absolute=absolute
    )


@pytest.mark.parametrize("literal", OUT_OF_RANGE_JSON)
@pytest.mark.parametrize("site", SITES, ids=[s.id for s in SITES])
async def test_json_body_refuses_out_of_range(ctx: Ctx, site: Site, literal: str) -> None:
    path, body = site.render(ctx, literal)
    _check_refused(await _send(ctx.api, site.method, path, body), site.field)
    await site.stored(ctx)


@pytest.mark.parametrize("text", OUT_OF_RANGE_QUERY)
@pytest.mark.parametrize("site", QUERY_SITES, ids=[s.id for s in QUERY_SITES])
async def test_query_string_refuses_out_of_range(ctx: Ctx, site: QuerySite, text: str) -> None:
    path = site.path.replace("{R}", ctx.run_id).replace("{E}", ctx.experiment_id)
    params = [(k, v.replace("{R}", ctx.run_id)) for k, v in site.params] + [(site.field, text)]
    absolute = path.startswith("/api/")
    reply = await ctx.api.request(site.method, path, params=params, data=b"x" if site.method == "PUT" else None,
                                  absolute=absolute)  # fmt: skip
    _check_refused(reply, site.field)


def test_every_int64_field_is_covered() -> None:
    """Every ``.int("name")`` in the API layer has a site above: a new int64 field cannot slip in
    untested."""
    api_dir = Path(__file__).resolve().parents[2] / "src" / "metricgate" / "api"
    found: set[tuple[str, str]] = set()
    for source in api_dir.rglob("*.py"):
        module = source.relative_to(api_dir).with_suffix("").as_posix()
        for name in re.findall(r"\.int\(\s*\"(\w+)\"", source.read_text()):
            found.add((module, name))
    covered = (
        {(s.module, s.field) for s in SITES}
        | {(s.module, s.field) for s in QUERY_SITES}
        | OTHER_SITES
    )
    assert found, "the pattern found no int field at all"
    assert found <= covered, f"int64 fields without an out-of-range test: {sorted(found - covered)}"


# ---------------------------------------------------------------- GraphQL


@pytest.mark.parametrize("literal", ["-9223372036854775809", "9223372036854775808", "18446744073709551616", "1e19",
                                     '"9223372036854775808"', '"-9223372036854775809"', '"1e19"'])  # fmt: skip
async def test_graphql_long_string_refuses_out_of_range(api: Api, literal: str) -> None:
    query = (
        "query q($n: LongString) {"
        " mlflowSearchModelVersions(input: {maxResults: $n}) { apiError { code message } } }"
    )
    body = b'{"query": ' + orjson.dumps(query) + b', "variables": {"n": ' + literal.encode() + b"}}"
    reply = await api.request(
        "POST", "/graphql", data=body, headers={"Content-Type": JSON_CONTENT_TYPE}, absolute=True
    )
    assert reply.status in (200, 400), reply
    payload = reply.json
    api_error = ((payload.get("data") or {}).get("mlflowSearchModelVersions") or {}).get("apiError")
    # Either graphql-core refuses the variable, or the resolver answers INVALID_PARAMETER_VALUE.
    assert payload.get("errors") or (
        api_error and api_error["code"] == "INVALID_PARAMETER_VALUE"
    ), reply


# ---------------------------------------------------------------- in range still works


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("-9223372036854775808", INT64_MIN),  # an int in orjson: exact
        ("9223372036854775807", INT64_MAX),
        ("3.0", 3),  # integral floats, as stock MLflow takes them
        ("1e3", 1000),
        ('"42"', 42),
        ("-9.2e18", -9_200_000_000_000_000_000),
    ],
)
@pytest.mark.parametrize("batch", [False, True], ids=["log-metric", "log-batch"])
async def test_in_range_steps_are_stored_exactly(
    ctx: Ctx, literal: str, expected: int, batch: bool
) -> None:
    if batch:
        body = '{"run_id": "%s", "metrics": [{"key": "m", "value": 1, "timestamp": 5, "step": %s}]}'
        reply = await _send(
            ctx.api, "POST", "/runs/log-batch", (body % (ctx.run_id, literal)).encode()
        )
    else:
        body = '{"run_id": "%s", "key": "m", "value": 1, "timestamp": 5, "step": %s}'
        reply = await _send(
            ctx.api, "POST", "/runs/log-metric", (body % (ctx.run_id, literal)).encode()
        )
    reply.ok()
    assert [p["step"] for p in await ctx.api.history(ctx.run_id, "m")] == [expected]


@pytest.mark.parametrize("field", ["start_time", "end_time"])
@pytest.mark.parametrize("value", [INT64_MIN, INT64_MAX])
async def test_run_times_at_the_bounds(api: Api, field: str, value: int) -> None:
    experiment_id = await api.create_experiment(f"int64-{uuid.uuid4().hex[:8]}")
    if field == "start_time":
        info = (
            await api.post("/runs/create", {"experiment_id": experiment_id, "start_time": value})
        ).ok()["run"]["info"]
    else:
        run_id = (await api.create_run(experiment_id))["info"]["run_id"]
        (await api.post("/runs/update", {"run_id": run_id, "end_time": value})).ok()
        info = (await api.get_run(run_id))["info"]
    assert info[field] == value


# ---------------------------------------------------------------- the parser itself


class TestParseInt64:
    @pytest.mark.parametrize("raw", OUT_OF_RANGE_JSON)
    def test_refuses_what_orjson_makes_of_out_of_range_literals(self, raw: str) -> None:
        value = orjson.loads(raw)
        with pytest.raises(InvalidParameter, match="'step'"):
            parse_int64("step", value)
        with pytest.raises(InvalidParameter):
            Fields({"step": value}).int("step")

    def test_the_reported_value_is_a_float_equal_to_int64_min(self) -> None:
        # Why a value check alone cannot work: the literal is gone by the time the codec looks.
        value = orjson.loads(b"-9223372036854775809")
        assert isinstance(value, float) and value == INT64_MIN

    @pytest.mark.parametrize(
        "value", [float(INT64_MIN), -float(2**63), float(2**63), float("inf"), float("nan")]
    )
    def test_floats_at_or_beyond_2_63_are_refused(self, value: float) -> None:
        # -2**63 as a float is refused too: it is what INT64_MIN - 1 decodes to (documented).
        with pytest.raises(InvalidParameter):
            parse_int64("step", value)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [(INT64_MIN, INT64_MIN), (INT64_MAX, INT64_MAX), (1.0, 1), (-4.0, -4), (9.2e18, 9_200_000_000_000_000_000),
         (str(INT64_MIN), INT64_MIN), (" 12 ", 12)],
    )  # fmt: skip
    def test_accepts_in_range(self, value: Any, expected: int) -> None:
        assert parse_int64("step", value) == expected


# ---------------------------------------------------------------- §6: runs/create experiment_id


@pytest.mark.parametrize(
    "body",
    [{}, {"experiment_id": ""}, {"experiment_id": None}, {"start_time": 1, "user_id": "u"}],
    ids=["no-fields", "empty", "null", "missing"],
)
async def test_create_run_requires_experiment_id(api: Api, body: dict[str, Any]) -> None:
    before = (
        (await api.post("/runs/search", {"experiment_ids": ["0"], "max_results": 1000}))
        .ok()
        .get("runs", [])
    )
    message = (await api.post("/runs/create", body)).error(400, "INVALID_PARAMETER_VALUE")
    assert message.startswith("Missing value for required parameter 'experiment_id'."), message
    after = (
        (await api.post("/runs/search", {"experiment_ids": ["0"], "max_results": 1000}))
        .ok()
        .get("runs", [])
    )
    assert len(after) == len(before)


@pytest.mark.parametrize("value", [" ", "abc", "1.5", "-1", "9223372036854775808", 0, ["0"]])
async def test_create_run_refuses_bad_experiment_ids(api: Api, value: Any) -> None:
    (await api.post("/runs/create", {"experiment_id": value})).error(400, "INVALID_PARAMETER_VALUE")


async def test_create_run_in_default_when_named(api: Api) -> None:
    # What the mlflow client sends with no experiment set: the Default, spelled "0".
    run = (await api.post("/runs/create", {"experiment_id": "0"})).ok()["run"]
    assert run["info"]["experiment_id"] == "0"
