"""chunk_copy.py's binary COPY payload, loaded by a real PostgreSQL, equals what asyncpg's own
encoder loads for the same chunks: every column, extremes and non-finite values included."""

from __future__ import annotations

import io
import math
import struct

import asyncpg

from metricgate.stores.postgres.chunk_copy import encode_chunks
from metricgate.stores.postgres.metrics import CHUNK_COLUMNS as COLUMNS

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CHUNKS = [
    (
        "r" * 32,
        "loss",
        [0, 1, 2],
        [1000, 1001, 1002],
        [0.5, 0.25, 0.125],
        None,
        None,
        None,
        b"\x01" * 16,
    ),
    (
        "r" * 32,
        "grüße/ключ 🚀",
        [INT64_MIN, INT64_MAX],
        [0, INT64_MAX],
        [math.nan, -0.0],
        "m-1",
        "eval",
        "d1",
        b"\x02" * 16,
    ),
    ("s" * 32, "x", [5], [6], [math.inf], None, "train", None, bytes(range(16))),
    (
        "s" * 32,
        "y",
        [-1, -1, 7],
        [3, 3, 3],
        [-math.inf, 1e-308, 1.7976931348623157e308],
        None,
        None,
        "",
        b"\x03" * 16,
    ),
    (
        "t" * 32,
        "long",
        list(range(1000)),
        list(range(1000, 2000)),
        [i / 7 for i in range(1000)],
        None,
        None,
        None,
        b"\x04" * 16,
    ),
]


def _comparable(row: asyncpg.Record) -> tuple[object, ...]:
    # NaN != NaN: compare values by their bits.
    return (*row[:4], [struct.pack("<d", v) for v in row[4]], *row[5:])


async def test_binary_payload_loads_the_same_rows_as_asyncpgs_encoder(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("CREATE TEMP TABLE via_asyncpg (LIKE metric_chunks)")
    await conn.execute("CREATE TEMP TABLE via_payload (LIKE metric_chunks)")
    # The payload adds each chunk's first and last step, point count and order; asyncpg is
    # given them explicitly.
    records = [(*c, min(c[2]), max(c[2]), len(c[2]), c[2] == sorted(set(c[2]))) for c in CHUNKS]  # type: ignore[type-var]
    await conn.copy_records_to_table("via_asyncpg", records=records, columns=COLUMNS)
    await conn.copy_to_table(
        "via_payload", source=io.BytesIO(encode_chunks(CHUNKS)), columns=COLUMNS, format="binary"
    )
    query = f"SELECT {', '.join(COLUMNS)} FROM {{}} ORDER BY run_id, key"
    expected = [_comparable(r) for r in await conn.fetch(query.format("via_asyncpg"))]
    got = [_comparable(r) for r in await conn.fetch(query.format("via_payload"))]
    assert got == expected
    assert len(got) == len(CHUNKS)
    assert await conn.fetchval("SELECT sum(cardinality(steps)) FROM via_payload") == sum(
        len(c[2]) for c in CHUNKS
    )
    assert await conn.fetchval("SELECT first_step FROM via_payload WHERE key = 'y'") == -1
    assert await conn.fetchval("SELECT last_step FROM via_payload WHERE key = 'y'") == 7
    assert await conn.fetchval("SELECT n_points FROM via_payload WHERE key = 'long'") == 1000
    assert await conn.fetchval("SELECT steps_ascending FROM via_payload WHERE key = 'long'") is True
    assert await conn.fetchval("SELECT steps_ascending FROM via_payload WHERE key = 'y'") is False


async def test_empty_payload_copies_nothing(conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE empty_copy (LIKE metric_chunks)")
    await conn.copy_to_table(
        "empty_copy", source=io.BytesIO(encode_chunks([])), columns=COLUMNS, format="binary"
    )
    assert await conn.fetchval("SELECT count(*) FROM empty_copy") == 0
