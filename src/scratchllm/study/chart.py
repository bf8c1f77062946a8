"""The study's picture: valid % of every model on every language, as an annotated grid.

Rows are the models (as given), columns the languages ordered by ``context_needed`` (the
context their rule needs, written under each name), each cell the model's valid % on that
language, coloured from 0 (dark) to 100 (bright) and written out. A cell outlined in red
is a run that did not do what its context predicts (``report.expected_to_pass``): a model
that should have learned the rule and fell short of 99 %, or one that beat its context.
A run that failed is grey. Nothing is joined by lines: the languages are separate
experiments, not points on a curve.

>>> plot_valid(rows, "study/valid_vs_context.png")    # doctest: +SKIP
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scratchllm.study.report import PASS, expected_to_pass, needs, sees_text

CHART_FILE = "valid_vs_context.png"  # the name it always had: links to it keep working


def plot_valid(rows: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    """Draw the grid of ``rows`` (results.json's) to a PNG at ``path``; None when no run
    succeeded (there is nothing to draw)."""
    from scratchllm.evaluation.inspect_common import save_figure

    fig = valid_figure(rows)
    return None if fig is None else save_figure(fig, path)


def valid_figure(rows: Sequence[dict[str, Any]]) -> Any:
    """The grid as a matplotlib ``Figure`` (module docstring), or None with no run."""
    if not any(not r.get("error") for r in rows):
        return None
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    from scratchllm.evaluation.inspect_common import new_figure

    models, languages, grid = valid_grid(rows)
    cell = {(r["model"], r["language"]): r for r in rows}
    first = {lang: next(r for r in rows if r["language"] == lang) for lang in languages}

    width = max(6.4, 2.4 + 1.35 * len(languages))
    height = 2.0 + 0.5 * len(models)
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for i, m in enumerate(models):
        for j, lang in enumerate(languages):
            r = cell.get((m, lang))
            if r is None:
                continue
            if r.get("error"):
                ax.text(j, i, "failed", ha="center", va="center", fontsize=8, color="black")
                continue
            v = r["valid"]
            bold = "bold" if v >= PASS else "normal"
            ax.text(
                j,
                i,
                f"{v:.1f}",
                ha="center",
                va="center",
                fontsize=9,
                fontweight=bold,
                color="black" if v > 60 else "white",
            )
            if expected_to_pass(r) != (v >= PASS):
                ax.add_patch(
                    Rectangle(
                        (j - 0.47, i - 0.47),
                        0.94,
                        0.94,
                        fill=False,
                        edgecolor="#e8000b",
                        linewidth=2.2,
                    )
                )
    ax.set_xticks(
        range(len(languages)), [_language_label(first[lang]) for lang in languages], fontsize=8
    )
    ax.set_yticks(
        range(len(models)), [_model_label(models[i], rows) for i in range(len(models))], fontsize=8
    )
    ax.tick_params(length=0)
    ax.set_xticks(np.arange(-0.5, len(languages)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(models)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel(
        f"language, ordered by the context its rule needs\nbold: >= {PASS:g} % valid;  "
        "red outline: not what the model's context predicts",
        fontsize=8,
    )
    ax.set_title("Which model learns which rule: valid samples (%)", fontsize=10)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("valid %", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return fig


def valid_grid(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[str], Any]:
    """``(models, languages, valid %)``: the models in the rows' order, the languages by
    ``context_needed`` (ties in the rows' order), and a ``[models, languages]`` array of
    valid % with NaN where a run failed or is missing.

    >>> rows = [{"model": "gpt", "language": "b", "context_needed": 5, "valid": 99.0},
    ...         {"model": "gpt", "language": "a", "context_needed": 2, "valid": 50.0}]
    >>> valid_grid(rows)[1:]
    (['a', 'b'], array([[50., 99.]]))
    """
    import numpy as np

    models = list(dict.fromkeys(r["model"] for r in rows))
    order = list(dict.fromkeys(r["language"] for r in rows))
    needed = {r["language"]: r["context_needed"] for r in rows}
    languages = sorted(order, key=lambda lang: (needed[lang], order.index(lang)))
    grid = np.full((len(models), len(languages)), np.nan)
    for r in rows:
        if not r.get("error"):
            grid[models.index(r["model"]), languages.index(r["language"])] = r["valid"]
    return models, languages, grid


def _language_label(row: dict[str, Any]) -> str:
    """The spec wrapped at its commas (so long specs stack, not overlap) and what it needs."""
    parts = row["language"].split(",")
    lines, line = [], ""
    for p in parts:
        piece = p if not line else f"{line},{p}"
        if line and len(piece) > 16:
            lines.append(line + ",")
            line = p
        else:
            line = piece
    lines.append(line)
    wrapped = "\n".join(textwrap.shorten(s, 24, placeholder="…") for s in lines)
    n = needs(row)
    return f"{wrapped}\nneeds {n} symbol{'s' * (n != 1)}"


def _model_label(model: str, rows: Sequence[dict[str, Any]]) -> str:
    """The model and what it sees (``gpt (sees 16 symbols)``, ``lstm (state)``)."""
    ok = [r for r in rows if r["model"] == model and not r.get("error")]
    if not ok:
        return model
    seen = sees_text(ok[0])
    seen = "state" if seen.startswith("carries a state") else seen
    return f"{model}\n({seen})"
