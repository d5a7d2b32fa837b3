"""Pure: turn decoded stream entries (or one request's metrics) into the rows one flush writes.

Points are stored as chunks (migration 0006): one row per (run, key) of one log request — one
stream entry — holding that key's points as arrays. A chunk is never merged with another
entry's: its digest must be the same whenever the same request is written again (a replayed
entry, a client's retry), which is what makes the write idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter

from metricgate.domain.metrics import wire
from metricgate.domain.metrics.wire import PointBatch
from metricgate.domain.tracking.entities import NO_EXTRAS, Metric, value_rank

# (run_id, key, step, timestamp_ms, value, model_id, dataset_name, dataset_digest)
PointRow = tuple[str, str, int, int, float, str | None, str | None, str | None]
# (run_id, key, steps, timestamps_ms, values, model_id, dataset_name, dataset_digest, digest):
# metric_chunks' columns in COPY order.
ChunkRow = tuple[
    str, str, list[int], list[int], list[float], str | None, str | None, str | None, bytes
]


@dataclass
class FlushBatch:
    chunks: list[ChunkRow] = field(default_factory=list)
    # One row per (run, key): the point that wins MLflow's latest rule within this batch.
    latest: list[PointRow] = field(default_factory=list)
    # Points logged with a model id, which also belong to that logged model.
    model_points: list[PointRow] = field(default_factory=list)
    points: int = 0

    def __len__(self) -> int:
        return self.points


def chunk_digest(entry_digest: bytes, ordinal: int) -> bytes:
    """The digest of an entry's ``ordinal``-th chunk of one key. Chunks of one entry share the
    entry's digest (the unique index holds the key too); only a key split over several chunks
    (different model or dataset) needs the ordinal mixed in, which is rare and costs one hash."""
    if ordinal == 0:
        return entry_digest
    return hashlib.sha256(entry_digest + ordinal.to_bytes(4, "big")).digest()[:16]


def rank(row: PointRow) -> tuple[int, int, tuple[bool, float]]:
    """MLflow's latest order: step, then timestamp, then value (in PostgreSQL's float8 order)."""
    return (row[2], row[3], value_rank(row[4]))


def _period(keys: list[str]) -> int:
    """The p for which ``keys`` is ``keys[:p]`` repeated (the mlflow client's and most loggers'
    layout: every key of step s, then every key of step s+1, ...), or 0. Found with C-speed list
    operations; each of the first p keys then owns the points ``i::p``."""
    n = len(keys)
    try:
        p = keys.index(keys[0], 1)
    except ValueError:
        p = n
    # Distinct keys in a period, so that each key is one chunk, as chunks_from_rows makes it.
    if n % p == 0 and len(set(keys[:p])) == p and (p == n or keys == keys[:p] * (n // p)):
        return p
    return 0


def chunks_of_entry(b: PointBatch) -> list[ChunkRow]:
    """The chunks of one entry: its points grouped by (key, model, dataset), logged order kept.
    Columns become lists: asyncpg encodes those fastest."""
    keys = b.keys
    if not keys:
        return []
    run_id, digest = b.run_id, b.digest
    steps, ts, values = b.steps.tolist(), b.timestamps_ms.tolist(), b.values.tolist()
    if b.extras is None:
        p = _period(keys)
        if p:
            return [
                (run_id, keys[k], steps[k::p], ts[k::p], values[k::p], None, None, None, digest)
                for k in range(p)
            ]
        groups: dict[tuple[str, tuple[str | None, str | None, str | None]], list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault((key, NO_EXTRAS), []).append(i)
    else:
        groups = {}
        for i, (key, extras) in enumerate(zip(keys, b.extras, strict=True)):
            groups.setdefault((key, extras), []).append(i)
    out: list[ChunkRow] = []
    ordinals: dict[str, int] = {}
    for (key, extras), idx in groups.items():
        ordinal = ordinals.get(key, 0)
        ordinals[key] = ordinal + 1
        out.append(
            (
                run_id,
                key,
                [steps[i] for i in idx],
                [ts[i] for i in idx],
                [values[i] for i in idx],
                extras[0],
                extras[1],
                extras[2],
                chunk_digest(digest, ordinal),
            )
        )
    return out


def chunks_from_rows(rows: Iterable[PointRow]) -> list[ChunkRow]:
    """The chunks the flusher would write for these rows sent as one request per run (the
    direct writer's one request; tests): encoded as that request's entry and cut from it, so
    both paths give the same chunks and digests."""
    by_run: dict[str, list[Metric]] = {}
    for r in rows:
        by_run.setdefault(r[0], []).append(
            Metric(r[1], r[4], r[3], r[2], model_id=r[5], dataset_name=r[6], dataset_digest=r[7])
        )
    return [c for run_id, metrics in by_run.items() for c in chunks_from_metrics(run_id, metrics)]


def chunks_from_metrics(run_id: str, metrics: Sequence[Metric]) -> list[ChunkRow]:
    """One request's chunks, cut from its stream entry as the flusher would."""
    return chunks_of_entry(wire.decode(wire.encode(run_id, metrics, 0)))


def rows_from_metrics(run_id: str, metrics: Sequence[Metric]) -> list[PointRow]:
    return [
        (
            run_id,
            m.key,
            m.step,
            m.timestamp_ms,
            m.value,
            m.model_id,
            m.dataset_name,
            m.dataset_digest,
        )
        for m in metrics
    ]


def chunk_rows(chunk: ChunkRow) -> list[PointRow]:
    run_id, key, steps, ts, values, model_id, dataset_name, dataset_digest, _ = chunk
    return [
        (run_id, key, s, t, v, model_id, dataset_name, dataset_digest)
        for s, t, v in zip(steps, ts, values, strict=True)
    ]


def _chunk_latest(chunk: ChunkRow) -> PointRow:
    """The chunk's point that wins MLflow's latest rule. The highest step is usually unique
    (one step per point of a key), found with C-speed max/count/index; ties are ranked in full."""
    run_id, key, steps, ts, values, model_id, dataset_name, dataset_digest, _ = chunk
    top = max(steps)
    if steps.count(top) == 1:
        i = steps.index(top)
    else:
        i = max(
            (j for j in range(len(steps)) if steps[j] == top),
            key=lambda j: (ts[j], value_rank(values[j])),
        )
    return (run_id, key, steps[i], ts[i], values[i], model_id, dataset_name, dataset_digest)


_RUN_ID = attrgetter("run_id")
_CHUNK_ORDER = itemgetter(0, 1, 8)
_GROUP = itemgetter(0, 1)


def chunks_from_entries(batches: Iterable[PointBatch]) -> list[ChunkRow]:
    """Every entry's chunks, entries grouped by run (a sort of a few hundred entries): a run's
    chunks then land next to each other in metric_chunks' index."""
    out: list[ChunkRow] = []
    for b in sorted(batches, key=_RUN_ID):
        out.extend(chunks_of_entry(b))
    return out


def build_batch(chunks: list[ChunkRow], index_order: bool = False) -> FlushBatch:
    """The flush of ``chunks``: exact repeats dropped (a client's retry in the same flush, which
    would make the COPY fail), the latest point of every (run, key), the model points.

    ``index_order`` sorts the chunks as the unique index does, for writers without a retry
    (the one-request direct writer): concurrent inserts then queue instead of deadlocking. The
    flusher does not need it (see the deadlock note in flusher.py). ``latest`` is always in
    (run, key) order, so that concurrent upserts of the same latest rows take their row locks in
    one order.
    """
    seen: set[tuple[str, str, bytes]] = set()
    seen_models: set[tuple[str, str, bytes, str | None, str | None, str | None]] = set()
    unique: list[ChunkRow] = []
    latest: dict[tuple[str, str], PointRow] = {}
    points = 0
    model_points: list[PointRow] = []
    for chunk in chunks:
        # A model's points count even when the same points are stored already (without that
        # model, or with another): log_model re-sends a run's metrics with each model's id.
        if chunk[5] is not None:
            model_ident = (chunk[0], chunk[1], chunk[8], chunk[5], chunk[6], chunk[7])
            if model_ident not in seen_models:
                seen_models.add(model_ident)
                model_points.extend(chunk_rows(chunk))
        ident = (chunk[0], chunk[1], chunk[8])
        if ident in seen:
            continue
        seen.add(ident)
        unique.append(chunk)
        points += len(chunk[2])
        row = _chunk_latest(chunk)
        group = (row[0], row[1])
        current = latest.get(group)
        if current is None or rank(row) > rank(current):
            latest[group] = row
    if index_order:
        unique.sort(key=_CHUNK_ORDER)
    return FlushBatch(
        chunks=unique,
        latest=sorted(latest.values(), key=_GROUP),
        model_points=model_points,
        points=points,
    )
