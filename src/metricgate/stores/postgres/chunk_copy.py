"""metric_chunks rows in PostgreSQL's binary COPY format, built with C-speed ``struct`` packing.

asyncpg's ``copy_records_to_table`` encodes an array element by element and checks every element
against the ``collections.abc`` ABCs (to detect nested arrays): measured at more than half of a
flusher's CPU on 1,000-metric requests. A chunk's arrays are flat int64/float64 lists, so each
one packs in a single ``struct`` call here (one cached ``Struct`` per array length).

Format (PostgreSQL docs, "COPY ... BINARY"): signature, flags and extension length, then per row
a 16-bit field count and per field a 32-bit length (-1 = NULL) followed by the value in its type's
binary send format; a -1 field count ends the data. A one-dimensional array is ndim, has-null
flag, element type oid, length, lower bound 1, then each element as length + value.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)
_INT8_OID = 20
_FLOAT8_OID = 701
_FIELDS = struct.pack(">h", 13)  # metric_chunks' thirteen COPY columns (metrics.py CHUNK_COLUMNS)
# first_step and last_step (int8), n_points (int4) and steps_ascending (bool), each with its length
_CHUNK_SHAPE = struct.Struct(">iqiqiii?")
_EMPTY_ARRAY = {
    oid: struct.pack(">iiii", 12, 0, 0, oid) for oid in (_INT8_OID, _FLOAT8_OID)
}  # ndim 0


@lru_cache(maxsize=4096)
def _array_struct(code: str, n: int) -> struct.Struct:
    # Field length, then the array header, then n x (element length 8, element).
    return struct.Struct(">iiiiii" + ("i" + code) * n)


def _array(values: Sequence[float], code: str, oid: int) -> bytes:
    n = len(values)
    if n == 0:
        return _EMPTY_ARRAY[oid]
    args: list[float] = [8] * (2 * n)
    args[1::2] = values
    return _array_struct(code, n).pack(20 + 12 * n, 1, 0, oid, n, 1, *args)


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    raw = value.encode()
    return struct.pack(">i", len(raw)) + raw


def copy_record(chunk: Sequence[Any]) -> tuple[Any, ...]:
    """A batcher.ChunkRow as the row metric_chunks stores (metrics.py CHUNK_COLUMNS): the chunk,
    then its first and last step, its point count and whether its steps strictly ascend (what
    lets reads find a point by rank without opening the chunk, migration 0007)."""
    steps = chunk[2]
    return (*chunk, min(steps), max(steps), len(steps), all(map(operator.lt, steps, steps[1:])))


def encode_chunks(chunks: Sequence[Sequence[Any]]) -> bytes:
    """The whole COPY payload for ``chunks`` (batcher.ChunkRow tuples), as ``copy_record`` rows."""
    parts = [_SIGNATURE]
    append = parts.append
    for record in map(copy_record, chunks):
        (
            run_id,
            key,
            steps,
            timestamps,
            values,
            model_id,
            dataset_name,
            dataset_digest,
            digest,
            *shape,
        ) = record
        append(_FIELDS)
        append(_text(run_id))
        append(_text(key))
        append(_array(steps, "q", _INT8_OID))
        append(_array(timestamps, "q", _INT8_OID))
        append(_array(values, "d", _FLOAT8_OID))
        append(_text(model_id))
        append(_text(dataset_name))
        append(_text(dataset_digest))
        append(struct.pack(">i", len(digest)) + digest)
        first, last, n_points, ascending = shape
        append(_CHUNK_SHAPE.pack(8, first, 8, last, 4, n_points, 1, ascending))
    append(_TRAILER)
    return b"".join(parts)
