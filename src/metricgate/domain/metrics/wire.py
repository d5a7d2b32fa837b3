"""Versioned, compact encoding of one log request's metric points as a Redis stream entry. Pure.

Columnar: keys joined by newlines (validated keys cannot contain one), values/timestamps/steps as
little-endian float64/int64 arrays. Binary doubles keep NaN and +-Infinity exact, and encoding a
1000-point request is three ``array`` copies instead of a JSON walk.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, overload

import orjson

from metricgate.domain.tracking.entities import NO_EXTRAS, Metric, MetricColumns

WIRE_VERSION = b"1"
_BIG_ENDIAN = sys.byteorder == "big"


class WireError(ValueError):
    """An entry this version cannot decode (corrupt, or written by an unknown version)."""


@dataclass(frozen=True, slots=True)
class PointBatch:
    """One decoded stream entry: the points of one request for one run."""

    run_id: str
    keys: list[str]
    values: array[float]  # 'd'
    timestamps_ms: array[int]  # 'q'
    steps: array[int]  # 'q'
    # Per point (model_id, dataset_name, dataset_digest), or None when no point has any.
    extras: list[tuple[str | None, str | None, str | None]] | None
    acked_at_ms: int
    # Identity of the request's points (``request_digest``): the same for a replay of this
    # entry and for a client's retry of the same request, which is what makes writes idempotent.
    digest: bytes = b""

    def __len__(self) -> int:
        return len(self.keys)

    def metrics(self) -> list[Metric]:
        extras = self.extras or [NO_EXTRAS] * len(self.keys)
        return [
            Metric(k, v, t, s, model_id=e[0], dataset_name=e[1], dataset_digest=e[2])
            for k, v, t, s, e in zip(
                self.keys, self.values, self.timestamps_ms, self.steps, extras, strict=True
            )
        ]


def _to_bytes(values: array[int] | array[float]) -> bytes:
    if _BIG_ENDIAN:
        values = values[:]
        values.byteswap()
    return values.tobytes()


@overload
def _from_bytes(typecode: Literal["d"], raw: bytes) -> array[float]: ...
@overload
def _from_bytes(typecode: Literal["q"], raw: bytes) -> array[int]: ...
def _from_bytes(typecode: Literal["d", "q"], raw: bytes) -> array[int] | array[float]:
    values = array(typecode)
    values.frombytes(raw)
    if _BIG_ENDIAN:
        values.byteswap()
    return values


def encode(run_id: str, metrics: Sequence[Metric], acked_at_ms: int) -> dict[bytes, bytes]:
    # Keys are newline-joined; validation already refuses newlines, this keeps the format safe.
    if any("\n" in m.key for m in metrics):
        raise WireError("metric keys may not contain a newline")
    columns = MetricColumns(
        [m.key for m in metrics],
        array("d", (m.value for m in metrics)),
        array("q", (m.timestamp_ms for m in metrics)),
        array("q", (m.step for m in metrics)),
    )
    fields = encode_columns(run_id, columns, acked_at_ms)
    if any(m.model_id or m.dataset_name or m.dataset_digest for m in metrics):
        fields[b"m"] = orjson.dumps(
            [[m.model_id, m.dataset_name, m.dataset_digest] for m in metrics]
        )
    return fields


def encode_columns(run_id: str, columns: MetricColumns, acked_at_ms: int) -> dict[bytes, bytes]:
    """The entry of plain points already in columns (log-batch's fast path decodes straight into
    them; ``encode`` builds them from ``Metric``s). Keys are valid metric keys: no newline."""
    return {
        b"v": WIRE_VERSION,
        b"r": run_id.encode(),
        b"a": str(acked_at_ms).encode(),
        b"k": "\n".join(columns.keys).encode(),
        b"x": _to_bytes(columns.values),
        b"t": _to_bytes(columns.timestamps_ms),
        b"s": _to_bytes(columns.steps),
    }


# The fields that carry points; the acknowledgement time and the version do not change what
# was logged, so a client's retry (acknowledged later) has the same digest.
_POINT_FIELDS = (b"r", b"k", b"x", b"t", b"s", b"m")


def request_digest(fields: Mapping[bytes, bytes]) -> bytes:
    """16 bytes identifying the points of an entry: one SHA-256 pass over its point fields, each
    length-prefixed so that no two different entries can be spelled the same."""
    h = hashlib.sha256()
    for name in _POINT_FIELDS:
        value = fields.get(name, b"")
        h.update(len(value).to_bytes(8, "big"))
        h.update(value)
    return h.digest()[:16]


def _decode_extras(raw: bytes) -> list[tuple[str | None, str | None, str | None]]:
    items = orjson.loads(raw)
    if not isinstance(items, list):
        raise WireError("extras must be a list")
    extras = []
    for item in items:
        if not (
            isinstance(item, list)
            and len(item) == 3
            and all(v is None or isinstance(v, str) for v in item)
        ):
            raise WireError("each extra must be [model_id, dataset_name, dataset_digest]")
        extras.append((item[0], item[1], item[2]))
    return extras


def decode(fields: Mapping[bytes, bytes]) -> PointBatch:
    try:
        if fields[b"v"] != WIRE_VERSION:
            raise WireError(f"unknown wire version {fields[b'v']!r}")
        keys = fields[b"k"].decode().split("\n")
        values = _from_bytes("d", fields[b"x"])
        timestamps = _from_bytes("q", fields[b"t"])
        steps = _from_bytes("q", fields[b"s"])
        extras = None
        if b"m" in fields:
            extras = _decode_extras(fields[b"m"])
        batch = PointBatch(
            run_id=fields[b"r"].decode(),
            keys=keys,
            values=values,
            timestamps_ms=timestamps,
            steps=steps,
            extras=extras,
            acked_at_ms=int(fields[b"a"]),
            digest=request_digest(fields),
        )
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise WireError(f"undecodable stream entry: {exc}") from exc
    n = len(keys)
    if not (len(values) == len(timestamps) == len(steps) == n) or (
        extras is not None and len(extras) != n
    ):
        raise WireError("stream entry columns differ in length")
    return batch
