"""Files written whole or not at all, and JSON without NaN.

Everything scratchllm writes for a person or a later run (settings, results, configs,
metrics snapshots, plots) is first written in full to a temporary sibling, then renamed
over its name: a rename is atomic, so a reader (or a run resumed after a crash) sees the
old file or the new one, never half of one. The temporary name carries the process id,
so two processes writing the same file do not write into each other's temporary.

JSON has no NaN or infinity; ``finite`` turns them into ``null`` (a diverged loss is
written as "no value", not as the non-standard ``NaN`` most readers reject).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_json(d / "row.json", {"loss": float("nan"), "step": 3}).read_text()
'{\\n  "loss": null,\\n  "step": 3\\n}\\n'
>>> read_json(d / "missing.json") is None
True

Nothing here imports anything beyond the standard library.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to fill a temporary sibling of ``path``, then rename it to
    ``path``. The parent directory is created; on an error the temporary is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` as UTF-8 (no newline translation), atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    """Write ``value`` as JSON (NaN and infinity as null) and a final newline, atomically.

    Non-ASCII text is kept as is, so a person can read it; a lone surrogate (legal in a
    Python str, not in UTF-8) makes the whole file fall back to ``\\uXXXX`` escapes."""
    text = json.dumps(finite(value), indent=indent, ensure_ascii=False) + "\n"
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = (json.dumps(finite(value), indent=indent) + "\n").encode("ascii")
    return write_bytes(path, data)


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``, or None when it is missing, unreadable or not JSON
    (for caches and stamps, where any of those means "not there")."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in nested dicts and lists) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
