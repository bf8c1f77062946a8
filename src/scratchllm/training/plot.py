"""The loss curve: ``metrics.jsonl`` in, a PNG of training and validation loss out.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global
state), so it works on a headless machine and inside tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from scratchllm.files import atomic_write


def read_metrics(path: str | Path) -> list[dict]:
    """Every JSON object in a ``metrics.jsonl`` file, in order. A line cut short by a crash
    (the last one, unterminated) is skipped; any other bad line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics file")
    rows = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):  # the unterminated last line: a write that was cut off
                continue
            raise ValueError(f"{path}, line {i}: not a JSON object ({e})") from None
    return rows


def plot_metrics(metrics: str | Path | list[dict], png: str | Path, title: str = "") -> Path:
    """Draw training loss (line) and validation loss (markers) against the step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_metrics(metrics) if isinstance(metrics, str | Path) else metrics
    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), label="train", color="tab:blue", linewidth=1.2)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", color="tab:orange", markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title or "loss")
    ax.grid(True, alpha=0.3)
    if train or val:
        ax.legend()
    # a half-written plot never replaces a whole one
    return atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
