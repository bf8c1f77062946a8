"""The study's chart: a models x languages grid of valid %, readable from 2 to 8 languages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratchllm.study.chart import plot_valid, valid_figure, valid_grid

LANGUAGES = [  # (spec, context_needed), deliberately not in context order, some long
    ("sticky:k=2,stop=0.3", 4),
    ("markov:order=2,length=8", 3),
    ("sticky:k=3,classes=3,size=3,strict=false", 5),
    ("markov:order=3,alphabet=6,branch=2,seed=0,length=16", 4),
    ("dyck:depth=4,kinds=2", 9),
    ("counting:digits=2", 3),
    ("copy:length=5", 7),
    ("sticky:k=1", 3),
]
MODELS = [("bigram", "window", 1), ("trigram", "window", 2), ("lstm", "state", 16),
          ("gpt:n_layer=1,n_head=1", "window", 16)]  # fmt: skip


def _rows(n_languages: int) -> list[dict]:
    rng = np.random.default_rng(n_languages)
    rows = []
    for spec, needed in LANGUAGES[:n_languages]:
        for model, kind, context in MODELS:
            rows.append(dict(language=spec, context_needed=needed, model=model, valid=float(
                rng.uniform(0, 100)), context=context, context_kind=kind, error=None))  # fmt: skip
    return rows


def test_the_grid_orders_languages_by_the_context_they_need():
    rows = _rows(8)
    rows[3]["error"] = "RuntimeError: boom"
    models, languages, grid = valid_grid(rows)
    assert models == [m for m, _, _ in MODELS]
    needed = dict(LANGUAGES)
    assert [needed[lang] for lang in languages] == sorted(needed.values())
    # ties keep the order the study ran them in
    assert languages[:3] == ["markov:order=2,length=8", "counting:digits=2", "sticky:k=1"]
    assert grid.shape == (4, 8)
    r = rows[3]
    assert math.isnan(grid[models.index(r["model"]), languages.index(r["language"])])
    r = rows[5]
    assert grid[models.index(r["model"]), languages.index(r["language"])] == r["valid"]


def _boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    texts = [ax.title, ax.xaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]
    return fig.bbox, ticks, [t.get_window_extent(renderer) for t in texts if t.get_text()]


@pytest.mark.parametrize("n_languages", [2, 5, 8])
def test_every_label_is_inside_the_picture_and_no_two_overlap(n_languages, tmp_path):
    fig = valid_figure(_rows(n_languages))
    page, ticks, texts = _boxes(fig)
    for box in texts:  # nothing cut off at the edges (the title, the long specs)
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1, box
        assert page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, box
    for a, b in zip(ticks, ticks[1:]):  # neighbouring language labels stay apart
        assert a.x1 < b.x0, (a, b)
    path = plot_valid(_rows(n_languages), tmp_path / "valid_vs_context.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_cells_are_coloured_by_their_valid_percentage(tmp_path):

    rows = _rows(2)
    for r, v in zip(rows, [0.0, 100.0, 0.0, 100.0, 100.0, 0.0, 100.0, 0.0]):
        r["valid"] = v
    fig = valid_figure(rows)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    ax = fig.axes[0]
    models, languages, grid = valid_grid(rows)
    height = image.shape[0]
    lum = []
    for i in range(len(models)):
        for j in range(len(languages)):
            # a point inside the cell, off its centred number
            x, y = ax.transData.transform((j - 0.35, i - 0.35))
            lum.append((grid[i, j], image[int(height - y), int(x)].mean()))
    bright = [v for g, v in lum if g == 100.0]
    dark = [v for g, v in lum if g == 0.0]
    assert min(bright) > max(dark) + 100  # viridis: 100 % is yellow, 0 % dark purple
    assert plot_valid([{**rows[0], "error": "x"}], tmp_path / "none.png") is None
