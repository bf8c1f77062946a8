"""Plumbing shared by the ``inspect_*`` plots: token labels, figures, atomic PNG writes.

Plots use matplotlib's object API on the Agg canvas (no pyplot, no display, no global
state), so they work on a headless machine, inside tests and in threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scratchllm.files import atomic_write
from scratchllm.tokenizers.base import Tokenizer

# How a token is shown on an axis: invisible characters get a visible stand-in.
_VISIBLE = {"\n": "\\n", "\t": "\\t", " ": "␣", "\r": "\\r", "": "∅"}


def show(token: str) -> str:
    """A token as an axis label: ``"\\n"`` for END, ``"␣"`` for a space, others as they are.

    >>> show("\\n"), show("a"), show(" x")
    ('\\\\n', 'a', '␣x')
    """
    if token in _VISIBLE:
        return _VISIBLE[token]
    return "".join(_VISIBLE.get(ch, ch) for ch in token)


def token_strings(tokenizer: Tokenizer, ids: Sequence[int]) -> list[str]:
    """The text of each id on its own (``tokenizer.decode([i])``).

    A byte-level BPE token may be part of a UTF-8 character and decode to U+FFFD; the label
    is still useful, so no error is raised for it.
    """
    return [tokenizer.decode([int(i)]) for i in ids]


def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` with an Agg canvas attached (never shown on screen)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as PNG; a half-written file never replaces a whole one."""
    # constrained layout already fits the labels: one draw
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def label_size(n: int) -> float:
    """A font size for ``n`` tick labels on one axis: smaller as they crowd."""
    return max(4.0, min(10.0, 240.0 / max(n, 1)))
