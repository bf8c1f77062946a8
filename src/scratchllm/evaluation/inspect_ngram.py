"""The counting n-gram's table as a heatmap, with the language's rule drawn on top.

Each row is a context (the ``n - 1`` tokens before), each column a next token, and each
cell the model's ``P(next | context)``: exactly what ``NGram.forward`` predicts (add-k
smoothing included). For a bigram on a small vocabulary the rows are every context seen;
for longer contexts there are too many, so the rows are the most frequent ones.

When the model was trained on a synthetic language, a circle marks each cell the rule
allows: the next symbols some valid stream has after that window. For a window that holds
an END the current sample is fully in view and ``language.allowed_next`` answers exactly.
Without one the sample started out of view, so the allowed set is the union over every
state of the rule the stream could be in; we enumerate those states from the language's
state machine when there are few of them (sticky, markov: exact), and otherwise collect the
continuations that follow the window in a large sample of the language (marked "observed").
A perfect model puts all of its probability inside the circles.

>>> table = ngram_table(model, tokenizer, language=get("sticky:k=1"))   # doctest: +SKIP
>>> table.mass_on_allowed.min()                                         # doctest: +SKIP
0.97
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scratchllm.data.languages import Language
from scratchllm.evaluation.inspect_common import (
    label_size,
    new_figure,
    save_figure,
    show,
    token_strings,
)
from scratchllm.models.ngram import NGram
from scratchllm.tokenizers.base import Tokenizer

NGRAM_PNG = "ngram_table.png"
MAX_RULE_STATES = 5000  # enumerate the rule's states up to this many; else sample the language
RULE_SAMPLES = 3000  # samples read when the allowed sets are observed rather than enumerated


@dataclass
class NGramTable:
    """The numbers behind ``ngram_table.png`` (R rows shown, V tokens)."""

    n: int  # the model's n
    contexts: list[str]  # (R,) the text of each context row
    context_ids: np.ndarray  # (R, n-1) token ids, oldest first
    context_counts: np.ndarray  # (R,) how often each context occurred in training
    probs: np.ndarray  # (R, V) the model's P(next | context)
    counts: np.ndarray  # (R, V) raw counts of (context, next)
    tokens: list[str]  # (V,) each token's text
    columns: np.ndarray  # (C,) the token ids drawn as columns (all V when V is small)
    allowed: np.ndarray | None  # (R, V) True where the rule allows next; None: no language
    allowed_how: str  # "exact", "observed in N samples", or why the rule is not drawn
    path: Path | None = None  # the PNG, once written

    @property
    def mass_on_allowed(self) -> np.ndarray | None:
        """(R,) the probability each row puts on allowed next tokens (1.0 is perfect)."""
        if self.allowed is None:
            return None
        return (self.probs * self.allowed).sum(axis=1)


def ngram_table(
    model: NGram,
    tokenizer: Tokenizer,
    language: Language | None = None,
    max_rows: int = 32,
    max_cols: int = 64,
) -> NGramTable:
    """The table of a fitted ``NGram``: its full-length contexts (all of them if at most
    ``max_rows``, sorted by id; else the ``max_rows`` most frequent) and the next-token
    probabilities it predicts after each. Columns are every token if ``V <= max_cols``,
    else the ``max_cols`` most frequent."""
    from scratchllm.models import NGram

    if not isinstance(model, NGram):
        raise ValueError(f"ngram_table needs a counting NGram model, got {type(model).__name__}")
    if max_rows < 1 or max_cols < 1:
        raise ValueError(f"max_rows ({max_rows}) and max_cols ({max_cols}) must be at least 1")
    if model.num_contexts == 0:
        raise ValueError("the n-gram model has counted nothing yet; fit it before inspecting")
    V, n = model.config.vocab_size, model.config.n
    nodes, ctx_ids = _full_contexts(model)
    totals = model.row_total[torch.as_tensor(nodes, dtype=torch.long)].cpu().numpy()
    if len(nodes) > max_rows:  # the most frequent; ties broken by id order (stable sort)
        keep = np.argsort(-totals, kind="stable")[:max_rows]
        nodes, ctx_ids, totals = [nodes[i] for i in keep], ctx_ids[keep], totals[keep]
    probs = _row_probs(model, ctx_ids)
    counts = _row_counts(model, nodes)
    unigram = _row_counts(model, [0])[0]
    if max_cols >= V:
        columns = np.arange(V)
    else:
        columns = np.sort(np.argsort(-unigram, kind="stable")[:max_cols])
    tokens = token_strings(tokenizer, range(V))
    contexts = ["".join(tokens[i] for i in row) for row in ctx_ids]
    allowed, how = None, ""
    if language is not None:
        allowed, how = rule_allowed(language, contexts, tokens)
    return NGramTable(
        n, contexts, ctx_ids, totals, probs, counts, tokens, columns, allowed, how, None
    )


def _full_contexts(model: NGram) -> tuple[list[int], np.ndarray]:
    """Trie nodes whose context has the full n-1 tokens, and those tokens (oldest first).

    The child of node c along token a is the context "a, then c's tokens" (see
    ``NGram``), so a breadth-first walk from the root builds every context.
    """
    V, depth = model.config.vocab_size, model.context_length
    keys = model.edge_keys.cpu().numpy()
    child = model.edge_child.cpu().numpy()
    children: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for key, c in zip(keys.tolist(), child.tolist()):
        children[key // V].append((key % V, c))
    level = [(0, ())]  # (node, context tokens)
    for _ in range(depth):
        level = [(c, (a, *ctx)) for node, ctx in level for a, c in children.get(node, [])]
    level.sort(key=lambda item: item[1])
    nodes = [node for node, _ in level]
    ids = np.array([ctx for _, ctx in level], dtype=np.int64).reshape(len(level), depth)
    return nodes, ids


@torch.no_grad()
def _row_probs(model: NGram, ctx_ids: np.ndarray) -> np.ndarray:
    """``P(next | context)`` for each row, from the model's own forward pass."""
    if ctx_ids.shape[1] == 0:  # a unigram: the one empty context
        return model.probs([]).double().cpu().numpy()[None, :]
    idx = torch.as_tensor(ctx_ids, dtype=torch.long, device=model.row_ptr.device)
    logits, _ = model(idx)  # (R, n-1, V) log-probabilities
    return logits[:, -1].double().exp().cpu().numpy()  # (R, V)


def _row_counts(model: NGram, nodes: Sequence[int]) -> np.ndarray:
    V = model.config.vocab_size
    ptr = model.row_ptr.cpu().numpy()
    nxt, cnt = model.next_token.cpu().numpy(), model.counts.cpu().numpy()
    out = np.zeros((len(nodes), V), dtype=np.int64)
    for r, node in enumerate(nodes):
        lo, hi = ptr[node], ptr[node + 1]
        out[r, nxt[lo:hi]] = cnt[lo:hi]
    return out


# -- what the rule allows after a window -----------------------------------------------------


def rule_allowed(
    language: Language, windows: Sequence[str], tokens: Sequence[str]
) -> tuple[np.ndarray | None, str]:
    """``allowed[r, t]``: may token ``t`` follow the stream window ``windows[r]``?

    Returns ``(None, reason)`` when the tokens are not single symbols of the language (a
    BPE tokenizer, say), since the rule speaks about symbols.
    """
    symbols = set(language.alphabet)
    if any(len(t) != 1 for t in tokens) or not symbols & set(tokens):
        return None, "the tokens are not symbols of the language"
    sets = _enumerated_allowed(language, windows)
    how = "exact"
    if sets is None:
        sets = _observed_allowed(language, windows, RULE_SAMPLES)
        how = f"observed in {RULE_SAMPLES} samples"
    allowed = np.array([[t in s for t in tokens] for s in sets], dtype=bool)
    return allowed.reshape(len(windows), len(tokens)), how


def _enumerated_allowed(language: Language, windows: Sequence[str]) -> list[set[str]] | None:
    """Exact allowed sets from the language's state machine, or None if it has too many
    states to enumerate. Uses the rule hooks every ``Language`` implements (``_start``,
    ``_advance``, ``_end``, ``_allowed``), the one description of the rule there is."""
    states = _reachable_states(language, MAX_RULE_STATES)
    if states is None:
        return None
    out = []
    for window in windows:
        allowed: set[str] = set()
        for state in states:
            end_state = _read(language, state, window)
            if end_state is not None:
                allowed |= language._allowed(end_state)
        out.append(allowed)
    return out


def _reachable_states(language: Language, limit: int) -> list[Any] | None:
    """Every state the rule reaches from the start, or None past ``limit`` states."""
    from scratchllm.data.languages.base import END, Reject

    start = language._start()
    seen, frontier = {start}, [start]
    symbols = [ch for ch in language.alphabet if ch != END]
    while frontier:
        nxt = []
        for state in frontier:
            for ch in symbols:
                new = language._advance(state, ch)
                if isinstance(new, Reject) or new in seen:
                    continue
                seen.add(new)
                nxt.append(new)
                if len(seen) > limit:
                    return None
        frontier = nxt
    return list(seen)


def _read(language: Language, state: Any, window: str) -> Any | None:
    """The state after reading ``window`` from ``state`` in a stream of samples (END
    closes a sample and starts the next), or None if no valid stream reads it."""
    from scratchllm.data.languages.base import END, Reject

    for ch in window:
        if ch == END:
            if language._end(state) is not None:
                return None
            state = language._start()
            continue
        if ch not in language.alphabet:
            return None
        state = language._advance(state, ch)
        if isinstance(state, Reject):
            return None
    return state


def _observed_allowed(language: Language, windows: Sequence[str], n_samples: int) -> list[set[str]]:
    """The symbols seen after each window in a stream of ``n_samples`` samples. Windows that
    hold an END are answered exactly by ``language.allowed_next``."""
    from scratchllm.data.languages.base import END

    out: list[set[str] | None] = []
    todo: dict[int, set[str]] = {}
    for w in windows:
        if END in w:
            try:
                out.append(set(language.allowed_next(w.rsplit(END, 1)[1])))
            except ValueError:  # the part after the END is no valid start
                out.append(set())
        else:
            out.append(None)
            todo.setdefault(len(w), set()).add(w)
    if todo:
        stream = END + language.corpus(n_samples, seed=0)
        seen: dict[str, set[str]] = defaultdict(set)
        for m, wanted in todo.items():
            for i in range(max(len(stream) - m, 0)):
                w = stream[i : i + m]
                if w in wanted:
                    seen[w].add(stream[i + m])
        out = [s if s is not None else seen.get(w, set()) for s, w in zip(out, windows)]
    return out  # type: ignore[return-value]


# -- the picture --------------------------------------------------------------------------------


def plot_ngram_table(table: NGramTable, path: str | Path, title: str = "") -> Path:
    """Draw ``table`` as a heatmap of P(next | context), circles on the allowed cells."""
    cols = table.columns
    probs = table.probs[:, cols]  # (R, C)
    R, C = probs.shape
    fig = new_figure(min(2.5 + 0.32 * C, 24), min(1.8 + 0.3 * R, 24))
    ax = fig.add_subplot()
    im = ax.imshow(probs, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="P(next | context)")
    if table.allowed is not None:
        rr, cc = np.nonzero(table.allowed[:, cols])
        size = max(6.0, min(60.0, 900.0 / max(R, C)))
        ax.scatter(cc, rr, s=size, facecolors="none", edgecolors="tab:red", linewidths=0.9)
    ax.set_xticks(range(C), [show(table.tokens[c]) for c in cols], fontsize=label_size(C))
    ylabels = [f"{show(ctx)}  ({int(k)})" for ctx, k in zip(table.contexts, table.context_counts)]
    ax.set_yticks(range(R), ylabels, fontsize=label_size(R), family="monospace")
    ax.set_xlabel("next token")
    ax.set_ylabel("context (times seen)")
    names = {1: "unigram", 2: "bigram", 3: "trigram"}
    head = title or f"{names.get(table.n, f'{table.n}-gram')}: P(next | context)"
    if table.allowed is not None:
        head += f"\ncircles: allowed by the rule ({table.allowed_how})"
    ax.set_title(head, fontsize=10)
    table.path = save_figure(fig, path)
    return table.path
