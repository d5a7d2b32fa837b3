"""Flush batches (domain/metrics/chunks.py): chunks of an entry, chunk digests, MLflow's latest rule,
exact-repeat dropping, index order, model points.

A chunk's digest identifies the request it came from (``wire.request_digest``), not its points:
the same request written again must collide in the unique index, two requests must not.

Rows go through ``build_batch(chunks_from_rows(rows))``, the direct writer's path; entries go
through ``wire.encode``/``wire.decode`` so that the chunks are built from the arrays the flusher
really sees.
"""

from __future__ import annotations

import math
import random
import struct
from array import array
from collections import Counter

from metricgate.domain.metrics import chunks as batcher
from metricgate.domain.metrics import wire
from metricgate.domain.metrics.chunks import (
    ChunkRow,
    FlushBatch,
    PointRow,
    build_batch,
    chunk_digest,
    chunk_rows,
    chunks_from_entries,
    chunks_from_rows,
    chunks_of_entry,
    rows_from_metrics,
)
from metricgate.domain.metrics.wire import PointBatch
from metricgate.domain.tracking.entities import Metric

RUN_A = "a" * 32
RUN_B = "b" * 32
NAN = math.nan
INF = math.inf
# Every float the encodings must carry bit for bit.
ODD_VALUES = [NAN, INF, -INF, 0.0, -0.0, 1.0, -1.0, 2.5, 1e-300, 1.7976931348623157e308]


def row(
    key: str,
    step: int,
    ts: int,
    value: float,
    run: str = RUN_A,
    model_id: str | None = None,
    dataset_name: str | None = None,
    dataset_digest: str | None = None,
) -> PointRow:
    return (run, key, step, ts, value, model_id, dataset_name, dataset_digest)


def norm(r: PointRow) -> tuple[object, ...]:
    """Comparable form: NaN != NaN would break tuple equality; bit patterns do not."""
    return (*r[:4], struct.pack("<d", r[4]), *r[5:])


def norm_chunk(c: ChunkRow) -> tuple[object, ...]:
    run_id, key, steps, ts, values, model_id, dataset_name, dataset_digest, digest = c
    return (
        run_id,
        key,
        tuple(steps),
        tuple(ts),
        tuple(struct.pack("<d", v) for v in values),
        model_id,
        dataset_name,
        dataset_digest,
        digest,
    )


def chunk_multiset(chunks: list[ChunkRow]) -> Counter[tuple[object, ...]]:
    return Counter(norm_chunk(c) for c in chunks)


def pg_value_key(value: float) -> tuple[int, float]:
    """PostgreSQL's float8 order: NaN equals NaN and sorts above every number, +Infinity included."""
    return (1, 0.0) if math.isnan(value) else (0, value)


def mlflow_latest_key(r: PointRow) -> tuple[object, ...]:
    # MLflow: the latest metric is the one with the highest step, then timestamp, then value.
    return (r[2], r[3], pg_value_key(r[4]))


def latest_by_group(rows: list[PointRow]) -> dict[tuple[str, str], PointRow]:
    groups: dict[tuple[str, str], list[PointRow]] = {}
    for r in rows:
        groups.setdefault((r[0], r[1]), []).append(r)
    return {g: max(rs, key=mlflow_latest_key) for g, rs in groups.items()}


def batch_of(rows: list[PointRow], index_order: bool = False) -> FlushBatch:
    return build_batch(chunks_from_rows(rows), index_order=index_order)


def latest_of(rows: list[PointRow]) -> dict[tuple[str, str], PointRow]:
    batch = batch_of(rows)
    result = {(r[0], r[1]): r for r in batch.latest}
    assert len(result) == len(batch.latest), "more than one latest row for a (run, key)"
    return result


def entry(run_id: str, metrics: list[Metric], acked_at_ms: int = 1) -> PointBatch:
    return wire.decode(wire.encode(run_id, metrics, acked_at_ms))


def assert_entry_chunks_match_rows(b: PointBatch, metrics: list[Metric]) -> list[ChunkRow]:
    """The flusher's chunks of an entry equal the direct writer's chunks of the same request."""
    chunks = chunks_of_entry(b)
    assert chunk_multiset(chunks) == chunk_multiset(
        chunks_from_rows(rows_from_metrics(b.run_id, metrics))
    )
    return chunks


def assert_points_once_in_logged_order(chunks: list[ChunkRow], logged: list[PointRow]) -> None:
    flat = [r for c in chunks for r in chunk_rows(c)]
    assert Counter(norm(r) for r in flat) == Counter(norm(r) for r in logged)
    # One entry holds one chunk per (run, key, extras), so that chunk is the group's points in
    # the order they were logged.
    groups = [(c[0], c[1], c[5], c[6], c[7]) for c in chunks]
    assert len(groups) == len(set(groups))
    for c in chunks:
        group = (c[0], c[1], c[5], c[6], c[7])
        assert [norm(r) for r in chunk_rows(c)] == [
            norm(r) for r in logged if (r[0], r[1], r[5], r[6], r[7]) == group
        ]


# --- MLflow's latest rule -----------------------------------------------------------------


def test_highest_step_wins_even_with_older_timestamp_and_smaller_value() -> None:
    rows = [row("k", 5, 1000, 9.0), row("k", 7, 1, -1.0), row("k", 6, 2000, 100.0)]
    assert latest_of(rows)[(RUN_A, "k")] == row("k", 7, 1, -1.0)


def test_same_step_highest_timestamp_wins() -> None:
    rows = [row("k", 3, 50, 9.0), row("k", 3, 70, 1.0), row("k", 3, 60, 100.0)]
    assert latest_of(rows)[(RUN_A, "k")] == row("k", 3, 70, 1.0)


def test_same_step_and_timestamp_highest_value_wins() -> None:
    rows = [row("k", 3, 70, 1.0), row("k", 3, 70, 2.5), row("k", 3, 70, -7.0)]
    assert latest_of(rows)[(RUN_A, "k")] == row("k", 3, 70, 2.5)


def test_nan_ranks_above_infinity_like_postgresql() -> None:
    rows = [row("k", 1, 1, INF), row("k", 1, 1, NAN), row("k", 1, 1, 1e308)]
    winner = latest_of(rows)[(RUN_A, "k")]
    assert math.isnan(winner[4])
    # ... but never above a higher step or timestamp.
    rows = [row("k", 1, 1, NAN), row("k", 1, 2, -INF)]
    assert latest_of(rows)[(RUN_A, "k")] == row("k", 1, 2, -INF)
    rows = [row("k", 1, 9, NAN), row("k", 2, 0, 0.0)]
    assert latest_of(rows)[(RUN_A, "k")] == row("k", 2, 0, 0.0)


def test_negative_infinity_ranks_below_every_number() -> None:
    rows = [row("k", 0, 0, -INF), row("k", 0, 0, -1.7976931348623157e308)]
    assert latest_of(rows)[(RUN_A, "k")][4] == -1.7976931348623157e308


def test_latest_across_chunks_of_one_key() -> None:
    # The same key with other extras is another chunk; the latest compares across them.
    rows = [
        row("k", 1, 0, 1.0),
        row("k", 3, 0, 2.0, model_id="m"),
        row("k", 2, 0, 3.0, dataset_name="d"),
    ]
    assert len(chunks_from_rows(rows)) == 3
    assert latest_of(rows)[(RUN_A, "k")] == rows[1]


def test_input_order_does_not_matter_for_latest() -> None:
    rows = [
        row("k", 1, 1, 1.0),
        row("k", 1, 1, NAN),
        row("k", 2, 0, -5.0),
        row("k", 2, 0, -6.0),
        row("j", 0, 0, 3.0),
    ]
    expected = {g: norm(r) for g, r in latest_by_group(rows).items()}
    rng = random.Random(7)
    for _ in range(50):
        shuffled = rows[:]
        rng.shuffle(shuffled)
        assert {g: norm(r) for g, r in latest_of(shuffled).items()} == expected


def test_latest_per_run_and_key_matches_reference_on_random_rows() -> None:
    rng = random.Random(20240601)
    values = [NAN, INF, -INF, 0.0, 1.0, -1.0, 2.5, 1e-300]
    for _ in range(200):
        rows = [
            row(
                rng.choice(["loss", "acc", "ключ"]),
                rng.randint(-2, 2),
                rng.randint(0, 2),
                rng.choice(values),
                run=rng.choice([RUN_A, RUN_B]),
                model_id=rng.choice([None, None, "m-1"]),
            )
            for _ in range(rng.randint(1, 40))
        ]
        # Equal points with other extras tie: either one's extras may win, but the winner must be
        # one of the logged rows.
        expected = {g: norm(r)[:5] for g, r in latest_by_group(rows).items()}
        latest = latest_of(rows)
        assert {g: norm(r)[:5] for g, r in latest.items()} == expected, rows
        assert {norm(r) for r in latest.values()} <= {norm(r) for r in rows}


def test_latest_is_in_run_key_order_and_unique_per_group() -> None:
    # Concurrent flushes upsert the same latest rows: one global order keeps their row locks
    # from deadlocking.
    rng = random.Random(7)
    rows = [
        row(
            rng.choice("xyz"),
            rng.randint(0, 5),
            rng.randint(0, 5),
            rng.choice([NAN, INF, -INF, 0.5, -0.5]),
            run=rng.choice([RUN_A, RUN_B]),
        )
        for _ in range(300)
    ]
    batch = batch_of(rows)
    groups = [(r[0], r[1]) for r in batch.latest]
    assert groups == sorted(groups) and len(groups) == len(set(groups))
    assert {g: norm(r) for g, r in zip(groups, batch.latest, strict=True)} == {
        g: norm(r) for g, r in latest_by_group(rows).items()
    }


# --- Model points, empty batch --------------------------------------------------------------


def test_model_points_are_exactly_the_points_with_a_model_id() -> None:
    rows = [
        row("k", 0, 0, 1.0),
        row("k", 1, 0, 2.0, model_id="m-1"),
        row(
            "k", 2, 0, 3.0, dataset_name="train", dataset_digest="abc"
        ),  # dataset alone: not a model point
        row("j", 0, 0, 4.0, model_id="m-2", dataset_name="eval", dataset_digest="def"),
        row("j", 1, 0, 5.0, model_id="m-2", dataset_name="eval", dataset_digest="def"),
    ]
    batch = batch_of(rows)
    assert sorted(batch.model_points) == sorted([rows[1], rows[3], rows[4]])
    # The latest row keeps the winning point's model id.
    latest = {(r[0], r[1]): r for r in batch.latest}
    assert latest[(RUN_A, "k")] == rows[2]
    assert latest[(RUN_A, "j")] == rows[4]


def test_no_model_points_when_none_has_a_model_id() -> None:
    batch = batch_of(
        [row("k", 0, 0, 1.0), row("k", 1, 0, 2.0, dataset_name="d", dataset_digest="x")]
    )
    assert batch.model_points == []


def test_empty_batch() -> None:
    batch = build_batch([])
    assert (batch.chunks, batch.latest, batch.model_points, batch.points, len(batch)) == (
        [],
        [],
        [],
        0,
        0,
    )
    assert (
        chunks_from_rows([]) == []
        and chunks_from_entries([]) == []
        and rows_from_metrics(RUN_A, []) == []
    )


# --- Chunks of an entry ---------------------------------------------------------------------


def _sample_metrics() -> list[Metric]:
    return [
        Metric("loss", 0.5, 1000, 0),
        Metric("loss", NAN, 1001, 1),
        Metric("acc", -0.0, 1002, 2, model_id="m-" + "c" * 32),
        Metric("acc", INF, 2**63 - 1, -(2**63), dataset_name="eval", dataset_digest="d"),
        Metric(
            "ü", -INF, -(2**63), 2**63 - 1, model_id="m-x", dataset_name="t", dataset_digest="e"
        ),
    ]


def test_rows_from_metrics_shape() -> None:
    rows = rows_from_metrics(RUN_A, _sample_metrics())
    # (run_id, key, step, timestamp_ms, value, model_id, dataset_name, dataset_digest)
    assert norm(rows[3]) == norm((RUN_A, "acc", -(2**63), 2**63 - 1, INF, None, "eval", "d"))


def test_chunk_shape_is_metric_chunks_copy_columns() -> None:
    metrics = _sample_metrics()
    b = entry(RUN_A, metrics)
    # "acc" is split over two chunks by its extras, so the entry holds ordinals 0 and 1.
    entry_digests = {b.digest, chunk_digest(b.digest, 1)}
    for c in chunks_of_entry(b) + chunks_from_rows(rows_from_metrics(RUN_A, metrics)):
        _, _, steps, ts, values, _, _, _, digest = c
        # Plain lists: asyncpg's COPY encodes them fastest, and array.array would not compare equal.
        assert (type(steps), type(ts), type(values)) == (list, list, list)
        assert all(type(s) is int for s in steps) and all(type(t) is int for t in ts)
        assert all(type(v) is float for v in values)
        assert len(steps) == len(ts) == len(values) > 0
        assert type(digest) is bytes and len(digest) == 16
        assert digest in entry_digests
        assert all(
            type(r[2]) is int and type(r[3]) is int and type(r[4]) is float for r in chunk_rows(c)
        )


def test_regular_layout_gives_one_chunk_per_key() -> None:
    # The mlflow client's layout (every key of step s, then of step s+1): the _period fast path.
    rng = random.Random(11)
    keys = ["loss", "acc", "lr", "ключ"]
    metrics = [Metric(k, rng.choice(ODD_VALUES), 1000 + s, s) for s in range(10) for k in keys]
    b = entry(RUN_A, metrics)
    assert batcher._period(b.keys) == len(keys)  # this layout does take the fast path
    chunks = assert_entry_chunks_match_rows(b, metrics)
    assert [c[1] for c in chunks] == keys
    assert all(list(c[2]) == list(range(10)) for c in chunks)
    assert_points_once_in_logged_order(chunks, rows_from_metrics(RUN_A, metrics))


def test_regular_layout_edge_periods() -> None:
    # One key repeated (period 1), every key once (period n), a single step of several keys.
    for keys in (["k"] * 7, ["a", "b", "c"], ["a", "b"] * 5):
        metrics = [Metric(k, float(i), i, i // 2) for i, k in enumerate(keys)]
        chunks = assert_entry_chunks_match_rows(entry(RUN_A, metrics), metrics)
        assert len(chunks) == len(set(keys))
        assert_points_once_in_logged_order(chunks, rows_from_metrics(RUN_A, metrics))


def test_irregular_layouts_that_look_almost_periodic() -> None:
    # Layouts the period check must reject: a later key repeated while the first key is not,
    # a truncated repetition, a repetition with a different tail.
    for keys in (
        ["a", "b", "b"],
        ["a", "b", "c", "c"],
        ["a", "b", "a"],
        ["a", "b", "a", "c"],
        ["a", "b", "b", "a"],
        ["a", "b", "a", "b", "b", "a"],
    ):
        metrics = [Metric(k, float(i), i, i) for i, k in enumerate(keys)]
        chunks = assert_entry_chunks_match_rows(entry(RUN_A, metrics), metrics)
        assert_points_once_in_logged_order(chunks, rows_from_metrics(RUN_A, metrics))


def test_irregular_layouts_match_rows_on_random_entries() -> None:
    rng = random.Random(5)
    for _ in range(300):
        metrics = [
            Metric(
                rng.choice("abcd"), rng.choice(ODD_VALUES), rng.randint(0, 3), rng.randint(-2, 2)
            )
            for _ in range(rng.randint(1, 30))
        ]
        chunks = assert_entry_chunks_match_rows(entry(RUN_B, metrics), metrics)
        assert_points_once_in_logged_order(chunks, rows_from_metrics(RUN_B, metrics))


def test_same_key_with_different_extras_is_separate_chunks() -> None:
    extras = [
        (None, None, None),
        ("m-1", None, None),
        (None, "eval", "d1"),
        ("m-1", "eval", "d1"),
        ("m-2", None, None),
    ]
    rng = random.Random(13)
    for _ in range(100):
        metrics = []
        for i in range(rng.randint(1, 25)):
            model_id, dataset_name, dataset_digest = rng.choice(extras)
            metrics.append(
                Metric(
                    rng.choice(["acc", "loss"]),
                    rng.choice(ODD_VALUES),
                    i,
                    rng.randint(0, 3),
                    model_id=model_id,
                    dataset_name=dataset_name,
                    dataset_digest=dataset_digest,
                )
            )
        b = entry(RUN_A, metrics)
        chunks = assert_entry_chunks_match_rows(b, metrics)
        logged_groups = {(m.key, m.model_id, m.dataset_name, m.dataset_digest) for m in metrics}
        assert {(c[1], c[5], c[6], c[7]) for c in chunks} == logged_groups
        assert len(chunks) == len(logged_groups)
        assert_points_once_in_logged_order(chunks, rows_from_metrics(RUN_A, metrics))


def test_sample_entry_with_extras_gives_the_same_batch_as_its_rows() -> None:
    metrics = _sample_metrics()
    b = entry(RUN_A, metrics)
    assert b.extras is not None
    chunks = assert_entry_chunks_match_rows(b, metrics)
    assert_points_once_in_logged_order(chunks, rows_from_metrics(RUN_A, metrics))
    x, y = build_batch(chunks), batch_of(rows_from_metrics(RUN_A, metrics))
    assert chunk_multiset(x.chunks) == chunk_multiset(y.chunks)
    assert [norm(r) for r in x.latest] == [norm(r) for r in y.latest]
    assert Counter(norm(r) for r in x.model_points) == Counter(norm(r) for r in y.model_points)
    assert x.points == y.points == len(metrics)


def test_single_point_entry() -> None:
    metrics = [Metric("loss", -0.0, 2**63 - 1, -(2**63))]
    fields = wire.encode(RUN_A, metrics, 1)
    chunks = assert_entry_chunks_match_rows(wire.decode(fields), metrics)
    assert len(chunks) == 1
    assert norm_chunk(chunks[0]) == norm_chunk(
        (
            RUN_A,
            "loss",
            [-(2**63)],
            [2**63 - 1],
            [-0.0],
            None,
            None,
            None,
            wire.request_digest(fields),
        )
    )


def test_empty_entry_has_no_chunks() -> None:
    # Built directly: the wire format cannot carry an empty key list (it would decode to [""]).
    b = PointBatch(RUN_A, [], array("d"), array("q"), array("q"), None, 1)
    assert chunks_of_entry(b) == []
    assert chunks_of_entry(PointBatch(RUN_A, [], array("d"), array("q"), array("q"), [], 1)) == []


# --- chunk_digest ---------------------------------------------------------------------------


def test_chunk_digest_ordinal_zero_is_the_entry_digest() -> None:
    # Ordinal 0 is every unsplit chunk: it must cost nothing and be the entry's own digest.
    d = bytes(range(16))
    assert chunk_digest(d, 0) is d


def test_chunk_digest_ordinals_are_distinct_stable_and_entry_bound() -> None:
    d, other = bytes(range(16)), bytes(range(1, 17))
    digests = [chunk_digest(d, i) for i in range(50)]
    assert len(set(digests)) == 50
    assert all(type(x) is bytes and len(x) == 16 for x in digests)
    # Deterministic: a replay of the entry must land on the same rows of the unique index.
    assert digests == [chunk_digest(d, i) for i in range(50)]
    # Bound to the entry: another request's split key must not collide with this one's.
    assert not set(digests[1:]) & {chunk_digest(other, i) for i in range(50)}


def test_chunks_of_one_entry_share_the_entry_digest() -> None:
    # The unique index holds (run, key, digest): the key tells an entry's chunks apart already.
    for metrics in (
        [
            Metric(k, float(s), s, s) for s in range(5) for k in ("loss", "acc", "lr")
        ],  # _period path
        [Metric(k, float(i), i, i) for i, k in enumerate("abbacb")],  # grouping path
        [Metric(k, 1.0, 1, 1, model_id="m-1") for k in ("a", "b")],  # extras path
    ):
        fields = wire.encode(RUN_A, metrics, 1)
        b = wire.decode(fields)
        chunks = chunks_of_entry(b)
        assert {c[8] for c in chunks} == {b.digest} == {wire.request_digest(fields)}


def test_key_split_by_extras_gets_distinct_digests_within_the_entry() -> None:
    metrics = [
        Metric("acc", 0.1, 1, 0),
        Metric("loss", 0.2, 1, 0),
        Metric("acc", 0.3, 2, 1, model_id="m-1"),
        Metric("acc", 0.4, 3, 2, dataset_name="eval", dataset_digest="d"),
        Metric("acc", 0.5, 4, 3),  # joins the first "acc" chunk
    ]
    b = entry(RUN_A, metrics)
    chunks = chunks_of_entry(b)
    acc = [c for c in chunks if c[1] == "acc"]
    # Ordinals follow first appearance in the request, which a replay reproduces exactly.
    assert [(c[5], c[6], c[8]) for c in acc] == [
        (None, None, b.digest),
        ("m-1", None, chunk_digest(b.digest, 1)),
        (None, "eval", chunk_digest(b.digest, 2)),
    ]
    assert [c[8] for c in chunks if c[1] == "loss"] == [b.digest]
    # Otherwise the split chunks would collide in the unique index and all but one be lost.
    assert len(build_batch(chunks).chunks) == len(chunks) == 4


def test_split_key_digests_are_stable_across_re_decoding() -> None:
    # A replayed entry (and a client's retry, acknowledged later) must give the same rows.
    metrics = [
        Metric("acc", float(i), i, i, model_id=(None, "m-1", "m-2")[i % 3]) for i in range(9)
    ]
    fields = wire.encode(RUN_A, metrics, 1)
    first = chunks_of_entry(wire.decode(fields))
    replayed = chunks_of_entry(
        wire.decode({bytes(k): bytes(bytearray(v)) for k, v in fields.items()})
    )
    retried = chunks_of_entry(entry(RUN_A, metrics, acked_at_ms=99))
    assert len({c[8] for c in first}) == 3
    assert (
        [norm_chunk(c) for c in first]
        == [norm_chunk(c) for c in replayed]
        == [norm_chunk(c) for c in retried]
    )
    batch = build_batch(first + replayed + retried)
    assert chunk_multiset(batch.chunks) == chunk_multiset(first)
    assert batch.points == len(metrics)
    assert len(batch.model_points) == 6


# --- build_batch ----------------------------------------------------------------------------


def test_build_batch_drops_exact_repeats_of_an_entry() -> None:
    # A client's retry inside one flush: the same request twice gives the same chunks twice,
    # which COPY into the unique index would refuse.
    metrics = [Metric(k, float(s), s, s) for s in range(4) for k in ("a", "b")]
    chunks = chunks_of_entry(entry(RUN_A, metrics))
    once = build_batch(chunks)
    twice = build_batch(chunks + chunks_of_entry(entry(RUN_A, metrics, acked_at_ms=2)))
    assert chunk_multiset(twice.chunks) == chunk_multiset(chunks)
    assert twice.points == len(twice) == once.points == len(metrics)
    assert [norm(r) for r in twice.latest] == [norm(r) for r in once.latest]


def test_build_batch_drops_repeated_model_points_once() -> None:
    metrics = [Metric("acc", 0.9, 1, 1, model_id="m-1")]
    chunks = chunks_of_entry(entry(RUN_A, metrics))
    batch = build_batch(chunks * 3)
    assert batch.model_points == rows_from_metrics(RUN_A, metrics)
    assert batch.points == 1


def test_model_points_survive_when_the_same_points_are_stored_without_the_model() -> None:
    # log_model re-sends a run's metrics with the new model's id: another request, so another
    # chunk kept beside the plain one (reads fold the equal points), and its points belong to
    # the model.
    plain = chunks_from_rows([row("acc", 1, 1, 0.9)])
    with_model = chunks_from_rows([row("acc", 1, 1, 0.9, model_id="m-1")])
    assert plain[0][8] != with_model[0][8]
    batch = build_batch(plain + with_model)
    assert batch.points == 2 and len(batch.chunks) == 2
    assert batch.model_points == [row("acc", 1, 1, 0.9, model_id="m-1")]


def test_same_points_in_two_different_requests_are_kept_twice() -> None:
    # Telling a retry from a second request that happens to repeat points is impossible from
    # the points alone; only the request's identity is, so both are stored.
    loss = [Metric("loss", float(s), 1000 + s, s) for s in range(4)]
    first = chunks_of_entry(entry(RUN_A, loss))
    second = chunks_of_entry(entry(RUN_A, [*loss, Metric("acc", 0.5, 1000, 0)]))
    loss_first = [c for c in first if c[1] == "loss"]
    loss_second = [c for c in second if c[1] == "loss"]
    assert [norm_chunk(c)[:8] for c in loss_first] == [norm_chunk(c)[:8] for c in loss_second]
    assert loss_first[0][8] != loss_second[0][8]
    batch = build_batch(first + second)
    assert chunk_multiset(batch.chunks) == chunk_multiset(first + second)
    assert batch.points == 2 * len(loss) + 1


def test_build_batch_keeps_same_points_under_another_run_or_key() -> None:
    points = [(0, 1, 0.5), (1, 2, NAN)]
    rows = [
        row(key, s, t, v, run=run)
        for run, key in [(RUN_A, "k"), (RUN_B, "k"), (RUN_A, "j")]
        for s, t, v in points
    ]
    chunks = chunks_from_rows(rows)
    # One request per run: RUN_A's "k" and "j" share its digest, only the key tells them apart.
    digests = {(c[0], c[1]): c[8] for c in chunks}
    assert digests[(RUN_A, "k")] == digests[(RUN_A, "j")] != digests[(RUN_B, "k")]
    batch = build_batch(chunks)
    assert chunk_multiset(batch.chunks) == chunk_multiset(chunks)
    assert batch.points == len(batch) == len(rows)


def test_build_batch_keeps_other_points_of_the_same_key() -> None:
    first = chunks_from_rows([row("k", 0, 0, 1.0)])
    second = chunks_from_rows([row("k", 0, 0, 1.0), row("k", 1, 0, 2.0)])
    batch = build_batch(first + second)
    assert len(batch.chunks) == 2 and batch.points == 3


def test_build_batch_index_order_sorts_by_run_key_digest() -> None:
    rng = random.Random(17)
    entries = [
        entry(
            rng.choice([RUN_B, RUN_A]),
            [
                Metric(
                    rng.choice(["z", "y", "B", "a"]), rng.choice(ODD_VALUES), i, rng.randint(0, 3)
                )
                for i in range(rng.randint(1, 12))
            ],
            i,
        )
        for i in range(30)
    ]
    chunks = [c for b in entries for c in chunks_of_entry(b)]
    unique = build_batch(chunks).chunks
    ordered = build_batch(chunks, index_order=True).chunks
    assert [(c[0], c[1], c[8]) for c in ordered] == sorted((c[0], c[1], c[8]) for c in unique)
    assert chunk_multiset(ordered) == chunk_multiset(unique)
    # Without index_order the chunks keep their given order (the flusher's path: no sort).
    seen: set[tuple[str, str, bytes]] = set()
    first_of_each = []
    for c in chunks:
        if (c[0], c[1], c[8]) not in seen:
            seen.add((c[0], c[1], c[8]))
            first_of_each.append(c)
    assert [norm_chunk(c) for c in unique] == [norm_chunk(c) for c in first_of_each]


def test_points_count_the_points_of_the_kept_chunks() -> None:
    rng = random.Random(23)
    for _ in range(50):
        rows = [
            row(
                rng.choice("xy"),
                rng.randint(0, 3),
                rng.randint(0, 3),
                rng.choice(ODD_VALUES),
                run=rng.choice([RUN_A, RUN_B]),
            )
            for _ in range(rng.randint(1, 20))
        ]
        chunks = chunks_from_rows(rows)
        batch = build_batch(chunks + chunks[: rng.randint(0, len(chunks))])
        assert batch.points == len(batch) == sum(len(c[2]) for c in batch.chunks) == len(rows)


# --- chunks_from_entries --------------------------------------------------------------------


def test_chunks_from_entries_holds_every_entrys_chunks_runs_grouped() -> None:
    rng = random.Random(3)
    entries = []
    for i in range(40):
        run = rng.choice([RUN_B, RUN_A])
        metrics = [
            Metric(
                rng.choice("zyx"),
                float(j),
                i,
                rng.randint(0, 9),
                model_id=rng.choice([None, None, "m-1"]),
            )
            for j in range(rng.randint(1, 6))
        ]
        entries.append(entry(run, metrics, i))
    assert any(b.extras is None for b in entries) and any(b.extras is not None for b in entries)
    chunks = chunks_from_entries(entries)
    assert chunk_multiset(chunks) == chunk_multiset(
        [c for b in entries for c in chunks_of_entry(b)]
    )
    runs = [c[0] for c in chunks]
    # Each run's chunks form one block: they land next to each other in the index.
    blocks = [r for i, r in enumerate(runs) if i == 0 or runs[i - 1] != r]
    assert sorted(blocks) == sorted(set(runs)) == [RUN_A, RUN_B]
