"""The import structure of src/metricgate, checked from its source (issue 12).

Rules, from the bottom layer up:

    0 domain     pure values and rules (metricgate/domain/): no I/O, imports only the domain
    1 support    settings, logging and metrics, process lifecycle (the package's top-level modules)
    2 stores     PostgreSQL and artifact stores, behind the Protocols of stores/base.py
    3 features   ingest, uploads, registry, webhooks delivery; and the client and bench libraries
    4 api        HTTP handlers
    5 assembly   service.py (opens the stores), the app factory, the server runner
    6 commands   every command-line front end (metricgate/cli/)

1. An import may only point to the same layer or a lower one (TYPE_CHECKING and function-local
   imports count: they are dependencies all the same).
2. No cycle between modules.
3. Features and handlers reach the stores through their seams only: from ``stores/`` they import
   ``stores/base.py`` and ``stores/artifacts/base.py`` (the Protocols and the values that cross
   them), never a module of an implementation.
4. A concrete store class (``Pg*``, ``LocalArtifactStore``, ``S3ArtifactStore``) is named only in
   ``stores/`` and ``service.py``: everything else depends on what a store does, not which it is.

There is no list of tolerated breaches: a new module must find its layer, and an import that
breaks a rule is fixed by moving code down (or behind a Protocol of stores/base.py), not excused.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "metricgate"

LAYER_NAMES = ("domain", "support", "stores", "features", "api", "assembly", "commands")

# Module -> layer, by the longest matching prefix (a package name covers its modules).
LAYERS: dict[str, int] = {
    "metricgate": 1,  # the package's __init__ and its top-level modules not listed below
    "metricgate.domain": 0,
    "metricgate.stores": 2,
    "metricgate.ingest": 3,
    "metricgate.uploads": 3,
    "metricgate.registry": 3,
    "metricgate.webhooks": 3,
    "metricgate.auth": 3,
    "metricgate.client": 3,
    "metricgate.bench": 3,
    "metricgate.api": 4,
    "metricgate.api.app": 5,
    "metricgate.service": 5,
    "metricgate.server": 5,
    "metricgate.cli": 6,
    "metricgate.__main__": 6,
}

CONCRETE_STORE = re.compile(r"^(Pg[A-Z]\w*|LocalArtifactStore|S3ArtifactStore)$")
CONCRETE_ALLOWED = ("metricgate.stores", "metricgate.service")

SEAMS = ("metricgate.stores.base", "metricgate.stores.artifacts.base")
# The raw COPY baseline measures the PostgreSQL store's own row format and COPY path: it is a
# benchmark of that implementation, not a user of the store.
SEAM_EXEMPT = {"metricgate.bench.copy_baseline"}


# ---------------------------------------------------------------- the import graph


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, str]]:
    """(imported module, imported name or '') for every import of a project module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield _owning_module(alias.name, modules), ""
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, is_package, node)
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                # "from metricgate.api import runs" imports a module; "from x import Name" a name.
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    yield sub, ""
                else:
                    yield _owning_module(target, modules), alias.name


def _owning_module(dotted: str, modules: dict[str, Path]) -> str:
    while dotted not in modules and "." in dotted:
        dotted = dotted.rsplit(".", 1)[0]
    return dotted


def layer_of(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


@functools.cache
def _graph() -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    names: set[tuple[str, str]] = set()
    for module, path in modules.items():
        for target, imported in _imports(module, path, modules):
            if target != module and target in modules:
                edges[module].add(target)
            if imported:
                names.add((module, imported))
    return edges, names


def _cycles(edges: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def upward_imports() -> set[tuple[str, str]]:
    edges, _ = _graph()
    return {(a, b) for a, targets in edges.items() for b in targets if layer_of(b) > layer_of(a)}


def concrete_store_names() -> set[tuple[str, str]]:
    _, names = _graph()
    return {
        (module, name)
        for module, name in names
        if CONCRETE_STORE.match(name) and not module.startswith(CONCRETE_ALLOWED)
    }


def _describe(pairs: set[tuple[str, str]]) -> str:
    return "\n".join(f"  {a} -> {b}" for a, b in sorted(pairs))


# ---------------------------------------------------------------- the tests


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        assert 0 <= layer_of(module) < len(LAYER_NAMES), module


def test_imports_point_down() -> None:
    found = upward_imports()
    assert not found, "imports pointing up a layer (see this module's docstring):\n" + _describe(
        {
            (f"{a} [{LAYER_NAMES[layer_of(a)]}]", f"{b} [{LAYER_NAMES[layer_of(b)]}]")
            for a, b in found
        }
    )


def test_no_import_cycles() -> None:
    edges, _ = _graph()
    found = _cycles(edges)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def test_features_and_handlers_use_only_the_store_seams() -> None:
    edges, _ = _graph()
    found = {
        (a, b)
        for a, targets in edges.items()
        for b in targets
        if layer_of(a) in (LAYER_NAMES.index("features"), LAYER_NAMES.index("api"))
        and a not in SEAM_EXEMPT
        and b.startswith("metricgate.stores.")
        and b not in SEAMS
    }
    assert not found, "imports of a store implementation above the stores:\n" + _describe(found)


def test_concrete_stores_are_named_only_where_they_are_assembled() -> None:
    found = concrete_store_names()
    assert not found, "concrete store classes named outside stores/ and service.py:\n" + _describe(
        found
    )


def test_the_checks_see_what_they_look_for() -> None:
    """The rules above pass on the tree; these prove they would fail on a breach."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}
    assert _cycles({"a": {"b"}, "b": set()}) == set()
    assert layer_of("metricgate.domain.tracking.rules") < layer_of("metricgate.config")
    assert layer_of("metricgate.config") < layer_of("metricgate.stores.postgres.runs")
    assert layer_of("metricgate.stores.base") < layer_of("metricgate.ingest.flusher")
    assert layer_of("metricgate.ingest.flusher") < layer_of("metricgate.api.runs")
    assert (
        layer_of("metricgate.api.runs")
        < layer_of("metricgate.api.app")
        == layer_of("metricgate.service")
    )
    assert layer_of("metricgate.service") < layer_of("metricgate.cli.bench")
    assert CONCRETE_STORE.match("PgRunStore") and not CONCRETE_STORE.match("RunStore")


@pytest.mark.parametrize(
    "source, expected",
    [
        (
            "from metricgate.stores.postgres.runs import PgRunStore",
            [("metricgate.stores.postgres.runs", "PgRunStore")],
        ),
        ("from metricgate.api import runs", [("metricgate.api.runs", "")]),
        ("import metricgate.service", [("metricgate.service", "")]),
        ("from . import codec", [("metricgate.api.codec", "")]),
        ("from ..domain.errors import NotFound", [("metricgate.domain.errors", "NotFound")]),
        ("import os\nfrom aiohttp import web", []),
    ],
)
def test_the_import_reader(source: str, expected: list[tuple[str, str]], tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert list(_imports("metricgate.api.probe", path, _modules())) == expected
