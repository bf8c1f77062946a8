"""Token embeddings in two dimensions: principal component analysis by SVD.

A model that has learned a language places tokens that behave alike near each other: in
sticky, the letters of one class are interchangeable, so their embeddings cluster. PCA finds
the two directions along which the embeddings vary most; projecting onto them gives a 2-D
picture that keeps as much of the spread as any linear 2-D view can.

With ``X`` the ``(V, C)`` embedding matrix and ``Xc = X - mean(X)`` (each column
centred), the SVD ``Xc = U S V^T`` gives the principal directions as the rows of ``V^T``
and the coordinates as ``Xc V[:, :2] = U[:, :2] S[:2]``; component ``j`` explains
``S_j^2 / sum(S^2)`` of the variance. (For a tall matrix the same ``V`` and ``S^2`` come
from the eigendecomposition of the small ``C x C`` matrix ``Xc^T Xc``.) A direction's sign
is arbitrary, so we fix it: the point farthest along each component gets a positive
coordinate.

>>> import numpy as np
>>> pca = pca_2d(np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]]))   # points on a line
>>> pca.coords[:, 0].round(6).tolist(), pca.explained.round(6).tolist()
([-2.0, -1.0, 3.0], [1.0, 0.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scratchllm.data.languages import Language
from scratchllm.evaluation.inspect_common import new_figure, save_figure, show, token_strings
from scratchllm.models.base import LanguageModel
from scratchllm.tokenizers.base import Tokenizer

EMBEDDINGS_PNG = "embeddings_pca.png"


@dataclass
class PCA2D:
    coords: np.ndarray  # (N, 2) each row projected onto the two principal components
    components: np.ndarray  # (2, C) the principal directions (unit rows)
    explained: np.ndarray  # (2,) fraction of the total variance along each
    mean: np.ndarray  # (C,) the mean that was subtracted


def pca_2d(x: np.ndarray) -> PCA2D:
    """Project the rows of ``x`` (N, C) onto their first two principal components.

    Fewer than two directions (one feature, or all rows equal) leave zero columns.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"pca_2d needs a non-empty (N, C) matrix, got shape {x.shape}")
    mean = x.mean(axis=0)
    xc = x - mean  # (N, C)
    if xc.shape[0] > 2 * xc.shape[1]:
        # Many more rows than features (GPT-2: 50257 x 768): the eigenvectors of the small
        # (C, C) Gram matrix Xc^T Xc = V S^2 V^T are the same directions, found much faster.
        evals, evecs = np.linalg.eigh(xc.T @ xc)  # ascending
        s = np.sqrt(np.clip(evals[::-1], 0.0, None))
        vt = evecs[:, ::-1].T  # (C, C), rows in order of decreasing variance
    else:
        _, s, vt = np.linalg.svd(xc, full_matrices=False)  # s: (k,), vt: (k, C), k = min(N, C)
    k = min(2, len(s))
    components = np.zeros((2, x.shape[1]))
    components[:k] = vt[:k]
    coords = xc @ components.T  # (N, 2)
    # Fix each direction's sign: the point farthest along it has a positive coordinate.
    far = np.abs(coords).argmax(axis=0)
    signs = np.where(coords[far, [0, 1]] < 0, -1.0, 1.0)
    coords, components = coords * signs, components * signs[:, None]
    var = s**2
    explained = np.zeros(2)
    if var.sum() > 0:
        explained[:k] = var[:k] / var.sum()
    return PCA2D(coords, components, explained, mean)


def token_embeddings(model: LanguageModel) -> np.ndarray:
    """The ``(V, C)`` input embedding of every token of a GPT, MLP or RNN model.

    The MLP's extra row (its learned start-of-text slot, id ``vocab_size``) is left out:
    it is not a token the tokenizer produces.
    """
    from scratchllm.models import GPT, MLPLM, RNNLM

    if isinstance(model, GPT):
        weight = model.transformer.wte.weight
    elif isinstance(model, MLPLM | RNNLM):
        weight = model.wte.weight
    else:
        raise ValueError(
            f"{type(model).__name__} has no token embeddings to project; the GPT, MLP and "
            "RNN families do (a counting n-gram has a table: see ngram_table)"
        )
    return weight.detach()[: model.vocab_size].double().cpu().numpy()


@dataclass
class EmbeddingPlot:
    """The numbers behind ``embeddings_pca.png``."""

    tokens: list[str]  # (V,) each token's text
    pca: PCA2D  # coords (V, 2), components, explained variance
    classes: list[str] | None  # (V,) each token's class in the language, if it has classes
    path: Path | None = None


def token_classes(language: Language, tokens: Sequence[str]) -> list[str] | None:
    """Each token's class (``language.char_class``), "other" where it has none; None for a
    language without classes."""
    char_class = getattr(language, "char_class", None)
    if language is None or char_class is None:
        return None
    out = []
    for t in tokens:
        try:
            out.append(char_class(t))
        except ValueError:  # not a symbol of the language (another tokenizer's extra char)
            out.append("other")
    return out


def embedding_plot(
    model: LanguageModel, tokenizer: Tokenizer, language: Language | None = None
) -> EmbeddingPlot:
    """PCA of the model's token embeddings, each token labelled (and classed if it can be)."""
    tokens = token_strings(tokenizer, range(model.vocab_size))
    return EmbeddingPlot(tokens, pca_2d(token_embeddings(model)), token_classes(language, tokens))


def plot_embeddings(plot: EmbeddingPlot, path: str | Path, title: str = "") -> Path:
    """Scatter the 2-D projection, each point labelled with its token, coloured by class."""
    import matplotlib

    xy, ex = plot.pca.coords, plot.pca.explained
    fig = new_figure(7.0, 6.0)
    ax = fig.add_subplot()
    if plot.classes is None:
        groups = {"tokens": np.arange(len(plot.tokens))}
    else:
        names = sorted(set(plot.classes), key=plot.classes.index)
        groups = {c: np.array([i for i, k in enumerate(plot.classes) if k == c]) for c in names}
    palette = matplotlib.colormaps["tab10"]
    for g, (name, index) in enumerate(groups.items()):
        ax.scatter(xy[index, 0], xy[index, 1], s=30, color=palette(g % 10), label=name)
    for i, token in enumerate(plot.tokens):
        ax.annotate(show(token), xy[i], xytext=(3, 3), textcoords="offset points", fontsize=8)
    ax.set_xlabel(f"PC 1 ({100 * ex[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * ex[1]:.0f}% of variance)")
    ax.set_title(title or "token embeddings, first two principal components", fontsize=10)
    ax.grid(True, alpha=0.3)
    if plot.classes is not None:
        ax.legend(fontsize=8, title="class")
    plot.path = save_figure(fig, path)
    return plot.path
