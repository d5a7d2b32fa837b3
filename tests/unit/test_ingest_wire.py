"""The stream entry encoding (domain/metrics/wire.py): exact round trips and refusal of corrupt entries."""

from __future__ import annotations

import itertools
import math
import random
import struct

import orjson
import pytest

from metricgate.domain.metrics import wire
from metricgate.domain.tracking.entities import Metric

RUN = "0123456789abcdef0123456789abcdef"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def bits(value: float) -> bytes:
    """The exact IEEE-754 pattern: tells -0.0 from 0.0 and compares NaN with NaN."""
    return struct.pack("<d", value)


def exact(metric: Metric) -> tuple[object, ...]:
    return (
        metric.key,
        bits(metric.value),
        metric.timestamp_ms,
        metric.step,
        metric.model_id,
        metric.dataset_name,
        metric.dataset_digest,
    )


def round_trip(
    metrics: list[Metric], run_id: str = RUN, acked_at_ms: int = 1_700_000_000_123
) -> wire.PointBatch:
    fields = wire.encode(run_id, metrics, acked_at_ms)
    # Redis hands back bytes for both names and values; make sure nothing else sneaked in.
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in fields.items())
    return wire.decode(dict(fields))


SPECIAL_VALUES = [
    0.0,
    -0.0,
    1.5,
    -2.25,
    math.nan,
    math.inf,
    -math.inf,
    5e-324,  # smallest subnormal
    -5e-324,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    2.2250738585072014e-308,
    0.1,
]


def test_round_trip_special_values_extremes_and_unicode_keys() -> None:
    keys = ["loss", "ü/ñ/μ", "损失", "emoji-🚀", "a b.c-d_e/f", "x" * 250]
    metrics = []
    for i, value in enumerate(SPECIAL_VALUES):
        metrics.append(
            Metric(
                key=keys[i % len(keys)],
                value=value,
                timestamp_ms=[0, INT64_MAX, INT64_MIN, 1_700_000_000_000, -1][i % 5],
                step=[INT64_MIN, INT64_MAX, 0, -1, 42][i % 5],
            )
        )
    batch = round_trip(metrics)
    assert batch.run_id == RUN
    assert batch.acked_at_ms == 1_700_000_000_123
    assert len(batch) == len(metrics)
    assert batch.extras is None
    assert batch.keys == [m.key for m in metrics]
    assert [bits(v) for v in batch.values] == [bits(m.value) for m in metrics]
    assert list(batch.timestamps_ms) == [m.timestamp_ms for m in metrics]
    assert list(batch.steps) == [m.step for m in metrics]
    decoded = batch.metrics()
    assert [exact(m) for m in decoded] == [exact(m) for m in metrics]
    # Spot checks that are easy to read when something breaks.
    assert math.copysign(1.0, batch.values[1]) == -1.0  # -0.0 kept its sign
    assert math.isnan(batch.values[4])
    assert batch.values[5] == math.inf and batch.values[6] == -math.inf
    assert batch.timestamps_ms[1] == INT64_MAX and batch.steps[0] == INT64_MIN


def test_int64_extremes_in_every_position() -> None:
    metrics = [
        Metric("m", float(i), ts, step)
        for i, (ts, step) in enumerate(
            [
                (INT64_MIN, INT64_MAX),
                (INT64_MAX, INT64_MIN),
                (INT64_MAX, INT64_MAX),
                (INT64_MIN, INT64_MIN),
            ]
        )
    ]
    batch = round_trip(metrics)
    assert [(m.timestamp_ms, m.step) for m in batch.metrics()] == [
        (m.timestamp_ms, m.step) for m in metrics
    ]


def test_extras_on_some_points_only() -> None:
    metrics = [
        Metric("acc", 0.5, 10, 0),
        Metric("acc", 0.6, 11, 1, model_id="m-" + "a" * 32),
        Metric("acc", 0.7, 12, 2, dataset_name="train", dataset_digest="d1g35t"),
        Metric(
            "acc", 0.8, 13, 3, model_id="m-" + "b" * 32, dataset_name="ëval", dataset_digest="x"
        ),
        Metric("loss", math.nan, 14, 4),
    ]
    fields = wire.encode(RUN, metrics, 1)
    assert b"m" in fields
    batch = wire.decode(fields)
    assert batch.extras is not None and len(batch.extras) == 5
    assert [exact(m) for m in batch.metrics()] == [exact(m) for m in metrics]
    assert batch.metrics()[0].model_id is None and batch.metrics()[4].dataset_name is None
    assert batch.metrics()[3].dataset_name == "ëval"


def test_no_extras_field_when_no_point_has_one() -> None:
    fields = wire.encode(RUN, [Metric("a", 1.0, 1, 1), Metric("b", 2.0, 2, 2)], 7)
    assert b"m" not in fields
    assert fields[b"v"] == wire.WIRE_VERSION
    assert fields[b"a"] == b"7"
    # Columnar binary layout: 8 bytes per point for each numeric column.
    assert len(fields[b"x"]) == len(fields[b"t"]) == len(fields[b"s"]) == 16
    assert fields[b"x"] == struct.pack("<2d", 1.0, 2.0)
    assert fields[b"t"] == struct.pack("<2q", 1, 2)
    batch = wire.decode(fields)
    assert [(m.model_id, m.dataset_name, m.dataset_digest) for m in batch.metrics()] == [
        (None, None, None)
    ] * 2


def test_thousand_point_entry_round_trips_exactly() -> None:
    rng = random.Random(1234)
    metrics = []
    for i in range(1000):
        value = rng.choice([rng.uniform(-1e6, 1e6), math.nan, math.inf, -math.inf, -0.0, float(i)])
        extras = {}
        if i % 7 == 0:
            extras = {
                "model_id": f"m-{i:032x}",
                "dataset_name": f"ds{i}",
                "dataset_digest": f"{i:08x}",
            }
        metrics.append(
            Metric(
                key=f"key/{i % 37}/ä",
                value=value,
                timestamp_ms=rng.randint(INT64_MIN, INT64_MAX),
                step=rng.randint(INT64_MIN, INT64_MAX),
                **extras,
            )
        )
    fields = wire.encode(RUN, metrics, 99)
    assert len(fields[b"x"]) == 8000
    batch = wire.decode(fields)
    assert len(batch) == 1000
    assert [exact(m) for m in batch.metrics()] == [exact(m) for m in metrics]


def test_entry_from_redis_with_str_free_bytes_only() -> None:
    # Values arrive as bytes objects that are not the ones encode produced (copied by Redis).
    fields = {
        bytes(k): bytes(bytearray(v))
        for k, v in wire.encode(RUN, [Metric("k", 3.0, 4, 5)], 6).items()
    }
    batch = wire.decode(fields)
    assert (batch.keys, list(batch.values), list(batch.timestamps_ms), list(batch.steps)) == (
        ["k"],
        [3.0],
        [4],
        [5],
    )


def test_key_with_a_newline_is_refused_at_encode_or_round_trips() -> None:
    r"""Keys are joined with newlines. The API's key check (``^[/\w.\- :]*$``) lets a trailing
    newline through (Python's ``$`` matches before a final "\n"), so encode must either refuse
    such a key -- before the gateway acknowledges -- or carry it intact. Splitting it into an
    extra key makes the whole entry undecodable after it was acknowledged."""
    metrics = [Metric("loss\n", 1.0, 1, 0), Metric("acc", 2.0, 1, 0)]
    try:
        fields = wire.encode(RUN, metrics, 1)
    except ValueError:
        return  # refused before acknowledging: fine
    batch = wire.decode(fields)
    assert batch.keys == ["loss\n", "acc"]


# ---------------------------------------------------------------- corrupt entries


def _good_fields(n: int = 2, extras: bool = False) -> dict[bytes, bytes]:
    metrics = [
        Metric(f"k{i}", float(i), 100 + i, i, model_id=("m-1" if extras and i == 0 else None))
        for i in range(n)
    ]
    return dict(wire.encode(RUN, metrics, 1))


@pytest.mark.parametrize("missing", [b"v", b"r", b"a", b"k", b"x", b"t", b"s"])
def test_missing_field_raises_wire_error(missing: bytes) -> None:
    fields = _good_fields()
    del fields[missing]
    with pytest.raises(wire.WireError):
        wire.decode(fields)


@pytest.mark.parametrize("version", [b"0", b"2", b"", b"1.0", b"v1"])
def test_unknown_version_raises_wire_error(version: bytes) -> None:
    fields = _good_fields()
    fields[b"v"] = version
    with pytest.raises(wire.WireError, match="version"):
        wire.decode(fields)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"x", struct.pack("<1d", 1.0)),  # one value for two keys
        (b"t", struct.pack("<3q", 1, 2, 3)),  # three timestamps
        (b"s", b""),  # no steps
        (b"k", b"only-one-key"),
        (b"k", b"a\nb\nc"),
    ],
)
def test_mismatched_column_lengths_raise_wire_error(name: bytes, value: bytes) -> None:
    fields = _good_fields(2)
    fields[name] = value
    with pytest.raises(wire.WireError):
        wire.decode(fields)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"x", b"\x00" * 15),  # not a whole number of doubles
        (b"t", b"\x00" * 9),
        (b"s", b"\x01"),
        (b"a", b"not-a-number"),
        (b"k", b"\xff\xfe"),  # not UTF-8
        (b"r", b"\xc3("),
        (b"m", b"{not json"),
    ],
)
def test_corrupt_field_raises_wire_error(name: bytes, value: bytes) -> None:
    fields = _good_fields(2)
    fields[name] = value
    with pytest.raises(wire.WireError):
        wire.decode(fields)


def test_extras_length_mismatch_raises_wire_error() -> None:
    fields = _good_fields(2, extras=True)
    fields[b"m"] = orjson.dumps([["m-1", None, None]])
    with pytest.raises(wire.WireError):
        wire.decode(fields)


@pytest.mark.parametrize(
    "extras",
    [
        b"5",  # not a list
        b"[1, 2]",  # items not lists
        b'[["m-1"], ["m-2"]]',  # items of the wrong width
        b"[[1, 2, 3], [4, 5, 6]]",  # not strings
    ],
)
def test_malformed_extras_raise_wire_error(extras: bytes) -> None:
    """Any corrupt entry must surface as WireError: the flusher dead-letters WireError and
    nothing else, so another exception type escapes its loop (see test_flusher.py)."""
    fields = _good_fields(2, extras=True)
    fields[b"m"] = extras
    with pytest.raises(wire.WireError):
        wire.decode(fields)


def test_decode_does_not_mutate_or_depend_on_field_order() -> None:
    fields = _good_fields(3, extras=True)
    snapshot = dict(fields)
    reordered = dict(reversed(list(fields.items())))
    a, b = wire.decode(fields), wire.decode(reordered)
    assert fields == snapshot
    assert [exact(m) for m in a.metrics()] == [exact(m) for m in b.metrics()]


# ---------------------------------------------------------------- request_digest


def _digest_of(metrics: list[Metric], run_id: str = RUN, acked_at_ms: int = 1) -> bytes:
    return wire.request_digest(wire.encode(run_id, metrics, acked_at_ms))


def _base_metrics() -> list[Metric]:
    return [
        Metric("loss", 0.0, 1000, 0),
        Metric("acc", 1.0, 1001, 1),
        Metric("loss", 2.5, 1002, 2),
    ]


def test_decode_sets_the_request_digest() -> None:
    fields = wire.encode(RUN, _base_metrics(), 1)
    batch = wire.decode(fields)
    assert type(batch.digest) is bytes and len(batch.digest) == 16
    assert batch.digest == wire.request_digest(fields)


def test_request_digest_ignores_ack_time_and_version() -> None:
    # A client's retry is acknowledged later; it must still collide with the first write.
    metrics = _base_metrics()
    assert _digest_of(metrics, acked_at_ms=1) == _digest_of(metrics, acked_at_ms=1_700_000_000_000)
    assert (
        wire.decode(wire.encode(RUN, metrics, 5)).digest
        == wire.decode(wire.encode(RUN, metrics, 6)).digest
    )
    fields = wire.encode(RUN, metrics, 1)
    assert wire.request_digest({**fields, b"v": b"2"}) == wire.request_digest(fields)


def _replace(metrics: list[Metric], i: int, **changes: object) -> list[Metric]:
    m = metrics[i]
    current = {
        "key": m.key,
        "value": m.value,
        "timestamp_ms": m.timestamp_ms,
        "step": m.step,
        "model_id": m.model_id,
        "dataset_name": m.dataset_name,
        "dataset_digest": m.dataset_digest,
    }
    return [*metrics[:i], Metric(**{**current, **changes}), *metrics[i + 1 :]]  # type: ignore[arg-type]


def test_request_digest_differs_for_any_other_point_field() -> None:
    # Two requests that differ in anything that was logged must both be stored.
    base = _base_metrics()
    variants = {
        "run": _digest_of(base, run_id="f" * 32),
        "first key": _digest_of(_replace(base, 0, key="lost")),
        "middle key": _digest_of(_replace(base, 1, key="acc2")),
        "last key": _digest_of(_replace(base, 2, key="acc")),
        "value": _digest_of(_replace(base, 1, value=1.5)),
        "-0.0": _digest_of(_replace(base, 0, value=-0.0)),  # equal as floats, not as logged
        "nan": _digest_of(_replace(base, 2, value=math.nan)),
        "timestamp": _digest_of(_replace(base, 2, timestamp_ms=1003)),
        "step": _digest_of(_replace(base, 0, step=-1)),
        "order": _digest_of([base[1], base[0], base[2]]),
        "point fewer": _digest_of(base[:2]),
        "model id": _digest_of(_replace(base, 0, model_id="m-1")),
        "other model id": _digest_of(_replace(base, 0, model_id="m-2")),
        "model id elsewhere": _digest_of(_replace(base, 1, model_id="m-1")),
        "dataset name": _digest_of(_replace(base, 0, dataset_name="eval")),
        "dataset digest": _digest_of(_replace(base, 0, dataset_name="eval", dataset_digest="d")),
    }
    digests = [_digest_of(base), *variants.values()]
    assert len(set(digests)) == len(digests), variants


def test_request_digest_length_prefixes_each_field() -> None:
    # Without the prefixes, moving a byte from one field into the next would spell the same
    # input: run "ab" with key "c" would be run "a" with key "bc".
    fields = wire.encode(RUN, [Metric("ab", 1.0, 1, 1, model_id="m-1")], 1)
    names = (b"r", b"k", b"x", b"t", b"s", b"m")
    for left, right in itertools.pairwise(names):
        shifted = {**fields, left: fields[left][:-1], right: fields[left][-1:] + fields[right]}
        assert b"".join(shifted[n] for n in names) == b"".join(fields[n] for n in names)
        assert wire.request_digest(shifted) != wire.request_digest(fields), (left, right)
