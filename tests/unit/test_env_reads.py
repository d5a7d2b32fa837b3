"""config.py is the one module of src/metricgate that touches the process environment (issue 12).

Every setting is declared there, so a variable read anywhere else would be a setting with no
README row, no range check and no place to find it. Checked from the source: any ``os.environ``,
``os.environb``, ``os.getenv``, ``os.putenv`` or ``os.unsetenv`` (and the same names imported from
``os``) outside config.py fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

from metricgate import config

SRC = Path(__file__).resolve().parents[2] / "src" / "metricgate"
CONFIG = SRC / "config.py"
ENV_NAMES = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})


def _env_uses(tree: ast.AST) -> list[int]:
    """Lines that reach the environment through ``os``: ``os.<name>`` or ``from os import <name>``."""
    os_aliases = {"os"}
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_aliases.update(a.asname or a.name for a in node.names if a.name == "os")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            lines += [node.lineno for a in node.names if a.name in ENV_NAMES]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in ENV_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id in os_aliases
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_only_config_reads_the_environment() -> None:
    found = [
        f"{path.relative_to(SRC.parent)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        if path != CONFIG
        for line in _env_uses(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    ]
    assert not found, "read the environment through metricgate.config instead:\n" + "\n".join(found)


def test_the_scan_sees_every_form() -> None:
    source = (
        "import os\nimport os as o\nfrom os import getenv\n"
        "os.environ.get('A')\no.environ['B'] = '1'\nos.getenv('C')\n"
    )
    assert _env_uses(ast.parse(source)) == [3, 4, 5, 6]
    assert _env_uses(ast.parse(CONFIG.read_text(encoding="utf-8")))  # the scan finds config's


def test_other_programs_variables() -> None:
    assert config.mlflow_tracking_uri({"MLFLOW_TRACKING_URI": "http://h:1"}) == "http://h:1"
    assert config.mlflow_tracking_uri({"MLFLOW_TRACKING_URI": ""}) is None
    assert config.mlflow_tracking_uri({}) is None
    assert config.cache_home({"XDG_CACHE_HOME": "/c"}) == Path("/c")
    assert config.cache_home({"XDG_CACHE_HOME": ""}) == Path.home() / ".cache"
