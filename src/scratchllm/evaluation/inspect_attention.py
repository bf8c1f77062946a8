"""Where a GPT looks: attention heatmaps per layer and head, and a score per head for the
distances a language's rule looks back.

The weights come from the model's reference attention path (``GPT.attention_weights``: the
explicit ``softmax(Q K^T / sqrt(d))``, which keeps its weights), so row ``i`` of a head's
map is how much the token at position ``i`` (the *query*) takes from each earlier position
(the *keys*); each row sums to 1.

**Offsets.** Offset ``o`` is the key ``o`` positions before the query: ``key = query - o``.
The query at position ``i`` makes the prediction for position ``i + 1``, so the symbol ``d``
back from the predicted one is offset ``d - 1``. A head's score at offset ``o`` is its
weight on that key averaged over the queries that have one (``i >= o``)::

    score(o) = mean over i = o .. T-1 of  W[i, i - o]

A head that always attends to the previous token scores 1.0 at offset 1. For comparison,
``chance(o)`` is the score of a head that spreads its attention evenly over the past
(``1 / (i + 1)`` at every key).

``lookback_offsets(language)`` names the offsets a rule needs: markov of order k predicts
from the last k symbols (offsets ``0 .. k-1``); sticky with k must see the last k+1 symbols
to know whether a run may end (``0 .. k``); copy takes each symbol of the copy from
``length + 1`` symbols back (offset ``length``).

>>> import numpy as np
>>> w = np.eye(3)[[0, 0, 1]][None, None]       # 1 layer, 1 head: each query looks one back
>>> offset_scores(w, [0, 1]).round(3).tolist()  # query 0 has no key one back: self
[[[0.333, 1.0]]]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scratchllm.evaluation.inspect_common import label_size, new_figure, save_figure, show

HEAD_PNG = "attention_layer{layer}_head{head}.png"
GRID_PNG = "attention_grid.png"
OFFSETS_PNG = "attention_offsets.png"
OFFSETS_JSON = "attention_offsets.json"


def lookback_offsets(language: Any) -> tuple[int, ...]:
    """The attention offsets (``key = query - o``) a language's rule reads, or ``()`` when
    its rule does not look a fixed distance back (dyck, counting, addition)."""
    name = getattr(language, "name", None)
    if name == "markov":
        return tuple(range(language.order))
    if name == "sticky":
        return tuple(range(language.k + 1))
    if name == "copy":
        return (language.length,)
    return ()


def offset_scores(weights: np.ndarray, offsets: Sequence[int]) -> np.ndarray:
    """``scores[l, h, j]``: head (l, h)'s mean weight at ``key = query - offsets[j]``.

    ``weights`` is ``(L, H, T, T)`` (one text) or ``(L, B, H, T, T)`` (averaged over the
    batch too). An offset no query can reach (``o >= T``) scores NaN.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 5:
        w = w.mean(axis=1)  # (L, H, T, T)
    if w.ndim != 4 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"weights must be (L, H, T, T) or (L, B, H, T, T), got {w.shape}")
    T = w.shape[-1]
    out = np.full(w.shape[:2] + (len(offsets),), np.nan)
    for j, o in enumerate(offsets):
        if o < 0:
            raise ValueError(f"offset {o} is negative; offsets count back from the query")
        if o < T:
            # The o-th subdiagonal: W[i, i - o] for i = o .. T-1.
            out[:, :, j] = np.diagonal(w, offset=-o, axis1=-2, axis2=-1).mean(axis=-1)
    return out


def chance_scores(T: int, offsets: Sequence[int]) -> np.ndarray:
    """The score of a head that spreads each query's weight evenly over its ``i + 1`` keys."""
    return np.array([np.mean(1.0 / np.arange(o + 1, T + 1)) if o < T else np.nan for o in offsets])


@dataclass
class AttentionMaps:
    """The numbers behind the attention PNGs."""

    tokens: list[str]  # (T,) the text, token by token
    weights: np.ndarray  # (L, H, T, T) attention weights; rows are queries, sum to 1
    offsets: tuple[int, ...] = ()  # the offsets scored
    scores: np.ndarray | None = None  # (L, H, len(offsets)) from offset_scores
    chance: np.ndarray | None = None  # (len(offsets),) a uniform head's score
    paths: list[Path] = field(default_factory=list)

    def best_heads(self) -> list[tuple[int, int, int, float]]:
        """For each offset: ``(offset, layer, head, score)`` of the head that scores highest."""
        if self.scores is None:
            return []
        out = []
        for j, o in enumerate(self.offsets):
            col = self.scores[:, :, j]
            if np.all(np.isnan(col)):
                continue
            layer, head = np.unravel_index(np.nanargmax(col), col.shape)
            out.append((o, int(layer), int(head), float(col[layer, head])))
        return out

    def to_json(self) -> dict:
        """What ``attention_offsets.json`` holds."""

        def clean(a: np.ndarray) -> list:
            return [clean(x) for x in a] if a.ndim > 1 else [_num(v) for v in a]

        return {
            "offsets": list(self.offsets),
            "definition": "score = mean over queries i >= offset of weight[i, i - offset]",
            "tokens": self.tokens,
            "scores": clean(self.scores) if self.scores is not None else None,
            "chance": clean(self.chance) if self.chance is not None else None,
            "best": [
                {"offset": o, "layer": l, "head": h, "score": s} for o, l, h, s in self.best_heads()
            ],
        }


def _num(v: float) -> float | None:
    return None if np.isnan(v) else round(float(v), 6)


def attention_maps(
    model: Any, ids: Sequence[int], tokens: Sequence[str], offsets: Sequence[int] = ()
) -> AttentionMaps:
    """Run ``ids`` through the GPT's reference attention path and score ``offsets``."""
    from scratchllm.models import GPT

    if not isinstance(model, GPT):
        raise ValueError(f"attention maps need a GPT model, got {type(model).__name__}")
    if not 1 <= len(ids) <= model.context_length:
        raise ValueError(
            f"the text has {len(ids)} tokens; attention maps need 1..{model.context_length} "
            "(the model's block_size)"
        )
    device = model.transformer.wte.weight.device
    idx = torch.tensor([list(ids)], dtype=torch.long, device=device)  # (1, T)
    was_training = model.training
    model.eval()  # dropout off: the weights the model uses to predict
    try:
        w = model.attention_weights(idx)  # (L, 1, H, T, T)
    finally:
        model.train(was_training)
    weights = w[:, 0].double().cpu().numpy()  # (L, H, T, T)
    maps = AttentionMaps(list(tokens), weights, tuple(offsets))
    if offsets:
        maps.scores = offset_scores(weights, offsets)
        maps.chance = chance_scores(len(ids), offsets)
    return maps


def format_offset_table(maps: AttentionMaps) -> str:
    """A text table: one row per head, one column per offset, best head per offset starred.

    ::

        head      o=0     o=1
        L0.H0    0.12   *0.95
        L0.H1   *0.40    0.31
        chance   0.24    0.15
    """
    if maps.scores is None:
        return ""
    L, H, _ = maps.scores.shape
    best = {(o, l, h) for o, l, h, _ in maps.best_heads()}
    head = ["head".ljust(7)] + [f"o={o}".rjust(7) for o in maps.offsets]
    lines = ["".join(head)]
    for layer in range(L):
        for h in range(H):
            cells = [f"L{layer}.H{h}".ljust(7)]
            for j, o in enumerate(maps.offsets):
                v = maps.scores[layer, h, j]
                mark = "*" if (o, layer, h) in best else " "
                cells.append("    n/a" if np.isnan(v) else f"{mark}{v:.2f}".rjust(7))
            lines.append("".join(cells))
    chance = ["chance".ljust(7)] + [
        "    n/a" if np.isnan(v) else f"{v:.2f}".rjust(7) for v in maps.chance
    ]
    lines.append("".join(chance))
    return "\n".join(lines)


# -- pictures ------------------------------------------------------------------------------------


def _draw_map(ax: Any, w: np.ndarray, labels: list[str], ticks: bool) -> Any:
    T = w.shape[0]
    masked = np.ma.masked_where(np.triu(np.ones((T, T), dtype=bool), 1), w)  # future: blank
    im = ax.imshow(masked, cmap="viridis", vmin=0.0, vmax=1.0)
    if ticks:
        size = label_size(T)
        ax.set_xticks(range(T), labels, fontsize=size, family="monospace")
        ax.set_yticks(range(T), labels, fontsize=size, family="monospace")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    return im


def plot_attention(maps: AttentionMaps, out_dir: str | Path) -> list[Path]:
    """One heatmap per head, a grid of them all, and (with offsets) the score chart + JSON."""
    out_dir = Path(out_dir)
    L, H, T, _ = maps.weights.shape
    labels = [show(t) for t in maps.tokens]
    paths = []
    side = min(3.0 + 0.22 * T, 18.0)
    for layer in range(L):
        for h in range(H):
            fig = new_figure(side + 1.0, side)
            ax = fig.add_subplot()
            im = _draw_map(ax, maps.weights[layer, h], labels, ticks=True)
            fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="attention weight")
            ax.set_xlabel("key (attended to)")
            ax.set_ylabel("query (attending)")
            ax.set_title(f"layer {layer}, head {h}", fontsize=10)
            paths.append(save_figure(fig, out_dir / HEAD_PNG.format(layer=layer, head=h)))
    fig = grid_figure(maps, labels)
    paths.append(save_figure(fig, out_dir / GRID_PNG))
    if maps.scores is not None:
        paths.extend(_plot_offsets(maps, out_dir))
    maps.paths = paths
    return paths


def _wrap(text: str, width_inches: float, fontsize: float) -> str:
    """``text`` broken into lines that fit a figure ``width_inches`` wide (a character of a
    ``fontsize``-point sans font is about 0.55 em wide)."""
    import textwrap

    per_line = max(12, int(width_inches * 72 / (0.55 * fontsize)) - 2)
    return "\n".join(textwrap.wrap(text, per_line))


def grid_figure(maps: AttentionMaps, labels: list[str]) -> Any:
    """Every head's map in one figure: layers down, heads across."""
    L, H, T, _ = maps.weights.shape
    width = max(1.0 + 2.4 * H, 4.0)  # wide enough for the title on two lines
    title = _wrap(
        "attention per layer (rows) and head (columns): query down, key across", width, 10
    )
    fig = new_figure(width, 0.3 * title.count("\n") + 0.9 + 2.4 * L)
    axes = fig.subplots(L, H, squeeze=False)
    for layer in range(L):
        for h in range(H):
            ax = axes[layer][h]
            _draw_map(ax, maps.weights[layer, h], labels, ticks=T <= 24)
            ax.set_title(f"L{layer} H{h}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def _plot_offsets(maps: AttentionMaps, out_dir: Path) -> list[Path]:
    L, H, K = maps.scores.shape
    # One row per head, and a last row for a head that attends uniformly: the baseline.
    grid = np.vstack([maps.scores.reshape(L * H, K), maps.chance[None, :]])  # (L*H + 1, K)
    names = [f"L{r // H}.H{r % H}" for r in range(L * H)] + ["uniform"]
    fig = new_figure(3.5 + 0.8 * K, 1.5 + 0.35 * len(names))
    ax = fig.add_subplot()
    im = ax.imshow(np.nan_to_num(grid, nan=0.0), cmap="magma", vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03, label="mean attention weight")
    for r in range(len(names)):
        for j in range(K):
            v = grid[r, j]
            text = "n/a" if np.isnan(v) else f"{v:.2f}"
            ax.text(j, r, text, ha="center", va="center", fontsize=7,
                    color="black" if v > 0.6 else "white")  # fmt: skip
    ax.axhline(L * H - 0.5, color="white", linewidth=2)
    ax.set_xticks(range(K), [str(o) for o in maps.offsets])
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("offset o (key = query - o)")
    ax.set_title("attention mass at the offsets the rule reads", fontsize=10)
    png = save_figure(fig, out_dir / OFFSETS_PNG)
    js = out_dir / OFFSETS_JSON
    tmp = js.with_name(js.name + ".tmp")
    tmp.write_text(json.dumps(maps.to_json(), indent=1) + "\n", encoding="utf-8")
    tmp.replace(js)
    return [png, js]
