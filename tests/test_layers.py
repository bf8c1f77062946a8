"""Imports follow the layer order written in docs/design.md, and no modules import each
other in a circle.

Every module under src/scratchllm is parsed with ``ast``; every ``import`` and ``from ...
import`` in it counts, at the top, inside functions and under ``TYPE_CHECKING`` alike
(relative imports resolved). ``from pkg import sub`` where ``sub`` is a module is an edge
to ``pkg.sub`` only: the package is imported on the way, as a parent always is.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DESIGN = ROOT / "docs" / "design.md"

# Edges that may close a cycle for now, each with who removes it. Nothing else may be
# listed here; an entry that closes no cycle any more fails the test.
ALLOWED_CYCLE_EDGES: set[tuple[str, str]] = set()  # none: every import follows the order


# -- reading the code and the map ---------------------------------------------------------


def modules(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under ``src``."""
    out = {}
    for f in sorted(src.rglob("*.py")):
        parts = f.relative_to(src).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(name: str, file: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every import of a known module in ``file``."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x / from ..pkg import y
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = subs if len(subs) == len(node.names) else [base, *subs]
        else:
            continue
        for target in targets:
            while target not in known and "." in target:  # `import a.b.c` names module a.b.c
                target = target.rpartition(".")[0]
            if target in known and target != name:
                yield target, node.lineno


def layer_table(text: str) -> dict[str, int]:
    """The units of the "Layer order" table of design.md -> their layer number."""
    section = text.split("## Layer order", 1)[1].split("\n## ", 1)[0]
    layers = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|(.*)\|\s*$", line)
        if m:
            for unit in re.findall(r"`([A-Za-z_][\w.]*)`", m.group(2)):
                if unit != "__version__":
                    layers[unit] = int(m.group(1))
    return layers


def unit(module: str) -> str:
    """The table entry a module belongs to: ``scratchllm.data.corpus`` -> ``data``."""
    parts = module.split(".")
    return parts[0] if len(parts) == 1 else parts[1]


def check(src: Path, layers: dict[str, int], allowed: set[tuple[str, str]]) -> list[str]:
    """Every problem, one line each: unplaced packages, imports against the order, cycles."""
    known = modules(src)
    edges: dict[str, set[str]] = {m: set() for m in known}
    problems = []
    for name, file in known.items():
        if unit(name) not in layers:
            problems.append(f"{name}: {unit(name)!r} is not in the layer order of docs/design.md")
            continue
        for target, line in imports(name, file, known):
            edges[name].add(target)
            a, b = unit(name), unit(target)
            if a != b and b in layers and layers[b] >= layers[a]:
                problems.append(
                    f"{file.relative_to(src)}:{line}: {name} imports {target}, but {b!r} "
                    f"(layer {layers[b]}) is not below {a!r} (layer {layers[a]})"
                )
    kept = {m: {t for t in ts if (m, t) not in allowed} for m, ts in edges.items()}
    for cycle in cycles(kept):
        problems.append("import cycle: " + " -> ".join([*cycle, cycle[0]]))
    for a, b in sorted(allowed):
        if b not in edges.get(a, ()) or not any({a, b} <= set(c) for c in cycles(edges)):
            problems.append(f"allowed edge {a} -> {b} closes no cycle any more: remove it")
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each in a
    walkable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component[::-1])

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


# -- the tests ----------------------------------------------------------------------------


def test_the_package_follows_the_layer_order_and_has_no_cycles():
    layers = layer_table(DESIGN.read_text(encoding="utf-8"))
    assert {"models", "training", "evaluation", "cli"} <= set(layers)
    problems = check(SRC, layers, ALLOWED_CYCLE_EDGES)
    assert not problems, "\n".join(problems)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    "files, expected",
    [
        (  # an upward import hidden inside a function
            {"__init__.py": "", "low/__init__.py": "", "high.py": "import pkg.low\n",
             "low/a.py": "def f():\n    from pkg.high import x\n"},
            "pkg.low.a imports pkg.high",
        ),
        (  # peers of one layer do not import each other
            {"__init__.py": "", "low/__init__.py": "", "side.py": "from pkg import low\n"},
            "pkg.side imports pkg.low",
        ),
        (  # a relative import in a cycle
            {"__init__.py": "", "low/__init__.py": "", "low/a.py": "from . import b\n",
             "low/b.py": "from .a import x\n"},
            "import cycle: pkg.low.a -> pkg.low.b -> pkg.low.a",
        ),
        (  # a package the map does not place
            {"__init__.py": "", "new/__init__.py": ""},
            "'new' is not in the layer order",
        ),
    ],
)  # fmt: skip
def test_the_checker_finds_each_kind_of_problem(tmp_path, files, expected):
    src = _tree(tmp_path, files)
    problems = check(src, {"pkg": 1, "low": 2, "side": 2, "high": 3}, set())
    assert any(expected in p for p in problems), problems


def test_a_stale_allowlist_entry_is_reported(tmp_path):
    src = _tree(tmp_path, {"__init__.py": "", "low/__init__.py": "", "low/a.py": "",
                           "low/b.py": "from pkg.low import a\n"})  # fmt: skip
    problems = check(src, {"pkg": 1, "low": 2}, {("pkg.low.b", "pkg.low.a")})
    assert problems == ["allowed edge pkg.low.b -> pkg.low.a closes no cycle any more: remove it"]
