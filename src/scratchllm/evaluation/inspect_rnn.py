"""What an RNN carries: its last layer's hidden state (and an LSTM's cell state) over a text.

The state is the RNN's whole memory, so its units are where a rule has to live: in sticky,
a unit that counts the length of the current run ramps up within a run and resets at a class
change; in copy, units hold the string until it is written out. The heatmap shows one row
per hidden unit and one column per token (the state *after* reading that token, the state
the next prediction is made from).

The states come from ``RNNLM.forward_step``, fed one token at a time from the zero state,
so they are exactly the ones ``forward`` computes (``tests/evaluation/test_inspect.py``
checks them against ``torch.nn.LSTM`` run step by step).

>>> act = rnn_activity(model, tokenizer.encode("aaBB"), list("aaBB"))   # doctest: +SKIP
>>> act.hidden.shape, act.cell is None                                  # doctest: +SKIP
((4, 64), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scratchllm.evaluation.inspect_common import label_size, new_figure, save_figure, show
from scratchllm.models.rnn import RNNLM

RNN_PNG = "rnn_hidden.png"


@dataclass
class RNNActivity:
    """The numbers behind ``rnn_hidden.png``."""

    tokens: list[str]  # (T,) the text, token by token
    hidden: np.ndarray  # (T, n_hidden) last layer's h after each token
    cell: np.ndarray | None  # (T, n_hidden) last layer's LSTM cell state c; None otherwise
    kind: str  # "rnn", "gru" or "lstm"
    path: Path | None = None


@torch.no_grad()
def rnn_activity(model: RNNLM, ids: Sequence[int], tokens: Sequence[str]) -> RNNActivity:
    """Feed ``ids`` to an ``RNNLM`` one token at a time; keep the top layer's state."""
    from scratchllm.models import RNNLM

    if not isinstance(model, RNNLM):
        raise ValueError(f"rnn_activity needs an RNN model, got {type(model).__name__}")
    if not ids:
        raise ValueError("the text is empty: give at least one token")
    device = model.lm_head.weight.device
    was_training = model.training
    model.eval()  # no dropout: the states the model predicts from
    try:
        state = model.new_state(1, len(ids))
        hs, cs = [], []
        for i in ids:
            model.forward_step(torch.tensor([[int(i)]], device=device), state)
            hs.append(state.hx[0][-1, 0].double().cpu())  # (H,) top layer, the one row
            if len(state.hx) > 1:
                cs.append(state.hx[1][-1, 0].double().cpu())
    finally:
        model.train(was_training)
    hidden = torch.stack(hs).numpy()  # (T, H)
    cell = torch.stack(cs).numpy() if cs else None
    return RNNActivity(list(tokens), hidden, cell, model.config.cell)


def plot_rnn_hidden(act: RNNActivity, path: str | Path, title: str = "") -> Path:
    """Heatmap of unit activity over time: units down, tokens across (LSTM: h and c)."""
    T, H = act.hidden.shape
    panels = [("hidden state h", act.hidden)]
    if act.cell is not None:
        panels.append(("cell state c", act.cell))
    width = min(3.0 + 0.25 * T, 24.0)
    height = min(1.2 + 0.06 * H, 10.0)
    fig = new_figure(width, 0.6 + height * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    labels = [show(t) for t in act.tokens]
    for ax, (name, values) in zip(axes, panels):
        bound = max(float(np.abs(values).max()), 1e-6)  # symmetric: 0 is white
        im = ax.imshow(values.T, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
        ax.set_xticks(range(T), labels, fontsize=label_size(T), family="monospace")
        ax.set_ylabel("unit")
        ax.set_title(f"{act.kind.upper()} last layer: {name} after each token", fontsize=10)
    axes[-1].set_xlabel("token read")
    if title:
        fig.suptitle(title)
    act.path = save_figure(fig, path)
    return act.path
