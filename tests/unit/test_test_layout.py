"""Test modules are imported by basename (the test folders are not packages), so two files of
one name in different tiers make pytest refuse to collect the second: the whole run stops."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_names_are_unique_across_tiers() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert not [name for name, count in names.items() if count > 1]


def _bash_array(script: str, name: str) -> list[str]:
    import re
    import shlex

    found = re.search(rf"^{name}=\((.*)\)$", script, re.MULTILINE)
    assert found, f"scripts/test.sh has no {name}=(...)"
    return shlex.split(found.group(1))


def test_every_tier_runs_in_exactly_one_phase_of_the_full_suite() -> None:
    # scripts/test.sh without arguments (CI) runs the tiers it lists, not `pytest tests`: a new
    # tier directory left out of both lists would silently never run.
    script = (TESTS.parent / "scripts" / "test.sh").read_text()
    parallel = _bash_array(script, "PARALLEL_TIERS")
    serial = _bash_array(script, "SERIAL_TIERS")
    tiers = sorted(
        f"tests/{d.name}" for d in TESTS.iterdir() if d.is_dir() and any(d.rglob("test_*.py"))
    )
    assert sorted(parallel + serial) == tiers
    assert not set(parallel) & set(serial)
