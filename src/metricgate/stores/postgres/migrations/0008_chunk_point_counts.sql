-- Per-chunk point counts and order, so reads can locate a point by its rank without unnesting.
--
-- Why: a chart read (get-history-bulk-interval) samples ~320 points out of a series of any
-- length, and a get-history page wants the 25,000 points after a given one. Both need ranks:
-- "the k-th point of the run's key". When a run's chunks are each in strictly ascending step
-- order and their step ranges do not overlap (the shape of every training loop that logs in
-- step order, one request after the other), the k-th point is at a position computable from
-- the chunks' point counts alone: the read then opens only the chunks holding a sampled point
-- (stores/postgres/metrics.py), instead of unnesting and sorting every point of the series
-- (~1 s for 1M points). `cardinality(steps)` cannot serve as the count: it detoasts the whole
-- array (8 kB per 1,000 points) of every chunk.
--
-- Live-database safety: both columns are nullable without a default (ADD COLUMN is then a
-- catalogue change, no table rewrite). A gateway or flusher of the previous release keeps
-- writing chunks without them during a rolling upgrade: readers treat NULL as "unknown"
-- (count = cardinality(steps), not known ascending, so those runs take the general path).
ALTER TABLE metric_chunks ADD COLUMN n_points integer;
ALTER TABLE metric_chunks ADD COLUMN steps_ascending boolean;

-- Backfill existing chunks (one pass; new chunks come with both from the writer).
UPDATE metric_chunks c
SET n_points = cardinality(c.steps),
    -- unnest reads the array once (a subscript per element would detoast it per element).
    steps_ascending = (
        SELECT coalesce(bool_and(s > prev), true)
        FROM (SELECT s, lag(s) OVER (ORDER BY o) AS prev FROM unnest(c.steps) WITH ORDINALITY AS u(s, o)) AS pairs
    );

-- Chunk metadata in step order per (run, key), readable from the index alone: the sampling
-- plan and a history page's bound read it without touching the chunks' arrays.
CREATE INDEX metric_chunks_steps_idx ON metric_chunks (run_id, key, first_step)
    INCLUDE (last_step, n_points, steps_ascending);
