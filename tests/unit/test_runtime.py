"""Interpreter tuning of the long-running processes (runtime.py)."""

from __future__ import annotations

import gc

from metricgate.runtime import GC_THRESHOLDS, tune_gc


def test_tune_gc_freezes_startup_objects_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        # What was alive at startup is out of the collector's view: full passes skip it.
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()  # cycles are still collected, only less often
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
