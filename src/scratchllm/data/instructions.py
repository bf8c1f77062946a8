"""An instruction set every machine has: questions about the standard library, answered by
its own docstrings.

For each public module, class and function of the installed standard library (the
files ``corpus.stdlib_docs`` reads, the same parts skipped), one question and its answer,
the docstring's summary (its first paragraph, on one line)::

    What does json.dumps do?       ->  Serialize ``obj`` to a JSON formatted ``str``.
    What is collections.Counter?   ->  Dict subclass for counting hashable items. ...
    What is the json module for?   ->  JSON (JavaScript Object Notation) <https://json.org> ...

So a chat demo needs no download: pretrain on ``stdlib-docs`` (which holds these answers
among the rest of the docstrings), fine-tune on these pairs, and ask. The set is the same
on every run with the same Python (sorted by name; extracted once, then cached beside the
docstring corpus). Names that start with ``_`` anywhere in their path are left out, and so
are summaries shorter than 10 or longer than ``MAX_ANSWER`` characters.

>>> pairs = stdlib_instructions()                                   # doctest: +SKIP
>>> pairs["json.dumps"]                                             # doctest: +SKIP
('What does json.dumps do?', 'Serialize ``obj`` to a JSON formatted ``str``.')
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from scratchllm.data.corpus import _SKIP_DIRS, _clean, default_cache_dir

MAX_ANSWER = 200  # characters; longer summaries are paragraphs, not one-line answers
_EXTRACT_VERSION = 1  # bump when the extraction changes, so old caches are not reused


def stdlib_instructions(
    cache_dir: str | Path | None = None, stdlib_dir: str | Path | None = None
) -> dict[str, tuple[str, str]]:
    """``{qualified name: (question, answer)}`` for the installed standard library.

    The first call parses the library (a few seconds) and caches the pairs as JSON in
    ``cache_dir`` (default: ``corpus.default_cache_dir()``); later calls read the file.
    """
    root = Path(stdlib_dir) if stdlib_dir is not None else Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: standard library directory not found")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(
        f"{_EXTRACT_VERSION}|{platform.python_implementation()}|{sys.version}|{root}".encode()
    ).hexdigest()[:16]
    path = cache / f"stdlib-instructions-{sys.version_info[0]}.{sys.version_info[1]}-{key}.json"
    if path.is_file():
        try:
            return {k: (q, a) for k, (q, a) in json.loads(path.read_text("utf-8")).items()}
        except (OSError, UnicodeDecodeError, ValueError, TypeError):
            pass  # a damaged cache is rebuilt below
    pairs = extract_instructions(root)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    except OSError:
        pass  # an unwritable cache only costs the next call another extraction
    return pairs


def extract_instructions(root: str | Path) -> dict[str, tuple[str, str]]:
    """The pairs for the library under ``root``, sorted by qualified name."""
    root = Path(root)
    pairs: dict[str, tuple[str, str]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if _SKIP_DIRS.intersection(parts[:-1]) or path.name.startswith("_sysconfigdata"):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or any(p.startswith("_") or not p.isidentifier() for p in parts):
            continue
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # e.g. a file for another Python version
        module = ".".join(parts)
        for name, kind, doc in _documented(tree, module):
            answer = summary(doc, name.rsplit(".", 1)[-1])
            if 10 <= len(answer) <= MAX_ANSWER:
                pairs[name] = (question(name, kind), answer)
    return dict(sorted(pairs.items()))


def question(name: str, kind: str) -> str:
    """The question asked about ``name``, by what it is.

    >>> question("json.dumps", "function"), question("json", "module")
    ('What does json.dumps do?', 'What is the json module for?')
    """
    if kind == "module":
        return f"What is the {name} module for?"
    if kind == "class":
        return f"What is {name}?"
    return f"What does {name} do?"


def summary(doc: str, name: str = "") -> str:
    """A docstring's first paragraph on one line (PEP 257's summary, wrapped lines joined).

    A first paragraph that is only the call signature (``makedirs(name [, mode])``, a
    habit of modules that mirror C functions) is skipped for the one after it (or gives
    "" when there is none).

    >>> summary("Return the sum\\n    of a and b.\\n\\nMore detail.")
    'Return the sum of a and b.'
    >>> summary("add(a, b)\\n\\nReturn a + b.", name="add")
    'Return a + b.'
    """
    paragraphs = [" ".join(p.split()) for p in _clean(doc).split("\n\n")]
    if name and paragraphs[0].startswith(f"{name}("):
        paragraphs = paragraphs[1:] or [""]
    return paragraphs[0]


def _documented(tree: ast.Module, module: str) -> Iterator[tuple[str, str, str]]:
    """``(qualified name, kind, docstring)`` of the module, its public classes and
    functions, and the public methods of those classes."""
    doc = ast.get_docstring(tree, clean=True)
    if doc:
        yield module, "module", doc
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if node.name.startswith("_"):
            continue
        name = f"{module}.{node.name}"
        kind = "class" if isinstance(node, ast.ClassDef) else "function"
        if doc := ast.get_docstring(node, clean=True):
            yield name, kind, doc
        if isinstance(node, ast.ClassDef):
            for child in node.body:
                is_def = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                if not is_def or child.name.startswith("_"):
                    continue
                if doc := ast.get_docstring(child, clean=True):
                    yield f"{name}.{child.name}", "function", doc
