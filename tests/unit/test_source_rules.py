"""Rules over the source text of src/metricgate for classes of defects found once and fixed.

- ``str.isdigit()`` is true of superscripts and other scripts' digits ('\u00b2', '\u0663'), which
  ``int()`` refuses or reads as another number: every check that precedes an ``int()`` was a way to
  a 500 (found by tests/api/test_generated_malformed.py in upload part numbers, webhook ids, model
  versions and page tokens). A digits check must say ``x.isascii() and x.isdigit()``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "metricgate"


def bare_isdigit_calls(source: str) -> list[int]:
    """Lines calling ``x.isdigit()`` where the same line does not also call ``x.isascii()``."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "isdigit"
        ):
            subject = ast.unparse(node.func.value)
            if f"{subject}.isascii()" not in lines[node.lineno - 1].replace(" ", ""):
                found.append(node.lineno)
    return found


def test_digit_checks_are_ascii_only() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        for line in bare_isdigit_calls(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "use `x.isascii() and x.isdigit()`: " + ", ".join(offenders)


def test_the_rule_sees_a_bare_isdigit() -> None:
    code = (
        'ok = v.isascii() and v.isdigit()\nbad = w.strip().isdigit()\n"""x.isdigit() in prose"""\n'
    )
    assert bare_isdigit_calls(code) == [2]


# `# type: ignore[code]  # why`: the code keeps the ignore from hiding a second, different error
# on the same line, and the reason lets a reader judge whether it still holds.
_TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<rest>.*)$")
_EXPLAINED = re.compile(r"^\[[a-z0-9-]+(,\s*[a-z0-9-]+)*\]\s+#\s*\S")


def unexplained_type_ignores(source: str) -> list[int]:
    return [
        number
        for number, line in enumerate(source.splitlines(), 1)
        if (found := _TYPE_IGNORE.search(line)) and not _EXPLAINED.match(found["rest"])
    ]


def test_every_type_ignore_names_its_code_and_reason() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        for line in unexplained_type_ignores(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "write `# type: ignore[code]  # why`: " + ", ".join(offenders)


def test_the_rule_sees_an_unexplained_ignore() -> None:
    code = (
        "a = f()  # type: ignore[no-untyped-call]  # untyped upstream\n"
        "b = g()  # type: ignore\n"
        "c = h()  # type: ignore[attr-defined]\n"
        "d = i()  # type: ignore  # reason without a code\n"
    )
    assert unexplained_type_ignores(code) == [2, 3, 4]
