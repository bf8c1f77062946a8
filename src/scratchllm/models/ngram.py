"""The counting n-gram model: "training" is counting, prediction is a smoothed ratio of counts.

An n-gram model predicts token ``t`` from the ``n - 1`` tokens before it::

    P(t | context) = (count(context, t) + k) / (count(context) + k * V)

with add-k smoothing (``k = 1`` is Laplace's rule; ``k = 0`` is the maximum-likelihood
estimate). It follows the one language-model shape, so the same sampler, evaluator and
``save``/``load`` serve it and every later model: ``model(idx, targets)`` returns the
log-probabilities as ``logits [B, T, V]`` (softmax of a log-probability vector is itself).

**Sparse counts.** A dense table has ``V ** n`` cells (a word-level 4-gram with V = 10 000
would need 10^16); we only store contexts that occurred. Contexts form a *suffix trie*:
node 0 is the empty context, and the child of node ``c`` along token ``a`` is the context
``a`` followed by ``c``'s tokens (read right to left, newest first). So looking up the
context of a position walks back through the previous tokens one step at a time, for all
positions of a batch at once (a binary search per step). The trie and the counts are
buffers, so ``save`` writes them to ``model.safetensors``::

    edge_keys   (E,)    parent * V + token, sorted       -> binary search
    edge_child  (E,)    the child node of each edge
    row_ptr     (K+1,)  node i's counts live in [row_ptr[i], row_ptr[i+1])   (CSR)
    next_token  (nnz,)  which tokens followed the context
    counts      (nnz,)  how often

**Start rule.** Every position is counted under its context of every length
``0 .. n-1`` that exists before it, so a position with only ``j < n - 1`` tokens before it
in a window (the first tokens of a corpus or of a prompt) is predicted from the j-gram
counts: the same statistics it was counted with. A full-length context that never
occurred gets the uniform distribution (add-k with zero counts; also used when k = 0).

>>> model = NGram(NGramConfig(n=2, vocab_size=3, smoothing=0.0)).fit([0, 1, 0, 2, 0, 1])
>>> [round(p, 3) for p in model.probs([0]).tolist()]   # after 0 came 1 twice and 2 once
[0.0, 0.667, 0.333]
>>> model(torch.tensor([[0, 1]]))[0].exp().round(decimals=3)   # [B, T, V]; after 1 came 0
tensor([[[0.0000, 0.6670, 0.3330],
         [1.0000, 0.0000, 0.0000]]])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from scratchllm.configs.models import NGramConfig
from scratchllm.models.base import LanguageModel, lm_loss, register

_BUFFERS = ("edge_keys", "edge_child", "row_ptr", "next_token", "counts")
_FIT_CHUNK = 1 << 20  # tokens counted per pass, so fitting a huge corpus needs bounded memory
# A dense [contexts + 1, V] table of log-probabilities is kept for scoring when it has at most
# this many entries (32 MB of float32); larger models fill each row from the sparse counts.
DENSE_TABLE_LIMIT = 1 << 23


@register
class NGram(LanguageModel):
    """Counting n-gram language model with add-k smoothing (see the module docstring)."""

    family = "ngram"
    config_class = NGramConfig

    def __init__(self, config: NGramConfig) -> None:
        super().__init__(config)
        empty = torch.zeros(0, dtype=torch.long)
        self.register_buffer("edge_keys", empty.clone())
        self.register_buffer("edge_child", empty.clone())
        self.register_buffer("row_ptr", torch.zeros(1, dtype=torch.long))  # one node: the root
        self.register_buffer("next_token", empty.clone())
        self.register_buffer("counts", empty.clone())
        # Derived from counts and row_ptr, so not saved: how often each context occurred, and
        # (built on first use) every context's log-probabilities, unseen context last.
        self.register_buffer("row_total", empty.clone(), persistent=False)
        self.register_buffer("dense_logprobs", None, persistent=False)
        self.register_buffer("dense_child", None, persistent=False)  # see _child_table

    @property
    def context_length(self) -> int:
        return self.config.n - 1

    @property
    def num_contexts(self) -> int:
        """Distinct contexts seen (of every length 0..n-1, the empty one included)."""
        return self.row_ptr.numel() - 1

    @property
    def total_count(self) -> int:
        """Positions counted so far (each is one unigram event)."""
        return int(self.counts[: self.row_ptr[1]].sum()) if self.num_contexts else 0

    # -- counting ------------------------------------------------------------------------------

    def fit(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> NGram:
        """Count every n-gram (and every shorter one, see the start rule) in ``ids``.

        Counts add up across calls; each call starts afresh, so its first tokens are counted
        with the shorter contexts, like the first tokens of a window in ``forward``.
        A NumPy memmap works too: it is counted in chunks, with bounded extra memory.
        """
        ids = _as_id_array(ids, self.config.vocab_size)
        n_ctx = self.context_length
        for start in range(0, len(ids), _FIT_CHUNK):
            lead = min(start, n_ctx)  # tokens before the chunk that serve only as context
            chunk = np.asarray(ids[start - lead : start + _FIT_CHUNK], dtype=np.int64)
            self._count(chunk, first_target=lead)
        return self

    def _count(self, x: np.ndarray, first_target: int) -> None:
        V = self.config.vocab_size
        edge_keys = self.edge_keys.cpu().numpy()
        edge_child = self.edge_child.cpu().numpy()
        n_nodes = self.num_contexts or 1
        pos = np.arange(first_target, len(x))  # the positions whose token we count
        node = np.zeros(len(pos), dtype=np.int64)  # their context of length 0: the root
        event_keys = [node * V + x[pos]]
        for j in range(1, self.context_length + 1):
            pos = pos[pos >= j]  # positions with at least j tokens before them
            node = node[-len(pos) :] if len(pos) else node[:0]
            keys = node * V + x[pos - j]  # extend the context by the token j steps back
            found, child = _lookup(edge_keys, edge_child, keys)
            if not found.all():
                new_keys, inverse = _unique_inverse(keys[~found], bound=n_nodes * V)
                new_ids = np.arange(n_nodes, n_nodes + len(new_keys))
                child[~found] = new_ids[inverse]
                n_nodes += len(new_keys)
                order = np.argsort(np.concatenate([edge_keys, new_keys]), kind="stable")
                edge_keys = np.concatenate([edge_keys, new_keys])[order]
                edge_child = np.concatenate([edge_child, new_ids])[order]
            node = child
            event_keys.append(node * V + x[pos])
        # Merge the new (context, token) events with the old counts, as sorted CSR rows.
        old_rows = np.repeat(np.arange(self.num_contexts), np.diff(self.row_ptr.cpu().numpy()))
        old_keys = old_rows * V + self.next_token.cpu().numpy()
        new_keys, new_counts = _unique_counts(np.concatenate(event_keys), bound=n_nodes * V)
        keys, inverse = np.unique(np.concatenate([old_keys, new_keys]), return_inverse=True)
        counts = np.zeros(len(keys), dtype=np.int64)
        np.add.at(counts, inverse.ravel(), np.concatenate([self.counts.cpu().numpy(), new_counts]))
        rows = keys // V
        row_ptr = np.searchsorted(rows, np.arange(n_nodes + 1), side="left")
        device = self.row_ptr.device
        for name, value in zip(_BUFFERS, (edge_keys, edge_child, row_ptr, keys % V, counts)):
            setattr(self, name, torch.as_tensor(value, dtype=torch.long, device=device))
        self._derive_totals()

    def _derive_totals(self) -> None:
        csum = torch.cat([self.counts.new_zeros(1), self.counts.cumsum(0)])
        self.row_total = csum[self.row_ptr[1:]] - csum[self.row_ptr[:-1]]  # (K,)
        self.dense_logprobs = self.dense_child = None  # the counts changed: rebuild when used

    # -- prediction ----------------------------------------------------------------------------

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probabilities of the next token at every position: ``[B, T] -> [B, T, V]``."""
        if idx.dim() != 2:
            raise ValueError(f"idx must be [B, T] token ids, got shape {tuple(idx.shape)}")
        B, T = idx.shape
        V = self.config.vocab_size
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= V):
            raise ValueError(f"idx holds ids outside 0..{V - 1} (vocab_size {V})")
        idx = idx.to(self.row_ptr.device, torch.long)
        node = self._context_nodes(idx).reshape(-1)  # (B*T,) trie node, -1 if never seen
        table = self._dense_table()
        if table is not None:  # one row copy per position
            rows = torch.where(node < 0, table.shape[0] - 1, node)
            logits = table.index_select(0, rows).view(B, T, V)
        else:
            logits = self._logprob_rows(node).view(B, T, V)
        loss = None if targets is None else lm_loss(logits, targets, loss_mask)
        return logits, loss

    def _logprob_rows(self, node: torch.Tensor) -> torch.Tensor:
        """``[N, V]`` log-probabilities after the contexts ``node`` (``-1`` = never seen),
        each row filled from that context's sparse counts."""
        V, k = self.config.vocab_size, float(self.config.smoothing)
        N = node.numel()
        seen = torch.nonzero(node >= 0).squeeze(1)  # positions whose context was counted
        rows = node[seen]
        denom = torch.full((N,), k * V, dtype=torch.float32, device=node.device)
        denom[seen] += self.row_total[rows].float()
        # Fill each seen context's row of V with its sparse counts (+ k); others stay at k.
        # Rows are short (the tokens that followed that context), so gather them flat.
        lo = self.row_ptr[rows]
        lengths = self.row_ptr[rows + 1] - lo
        # The total is needed for arange anyway; given as output_size, repeat_interleave
        # does not sum the lengths again (on a GPU that sum is a second host sync).
        total = int(lengths.sum())
        flat_rows = seen.repeat_interleave(lengths, output_size=total)
        offsets = torch.arange(total, device=node.device)
        starts = torch.cumsum(lengths, 0) - lengths - lo
        offsets = offsets - starts.repeat_interleave(lengths, output_size=total)
        probs = torch.full((N, V), k, dtype=torch.float32, device=node.device)  # (N, V)
        probs[flat_rows, self.next_token[offsets]] = self.counts[offsets].float() + k
        unseen = denom == 0  # k = 0 and the context never occurred: fall back to uniform
        if bool(unseen.any()):
            probs[unseen] = 1.0
            denom[unseen] = V
        return probs.log_() - denom.log()[:, None]

    def _dense_table(self) -> torch.Tensor | None:
        """``[K + 1, V]``: row ``c`` the log-probabilities after context ``c``, the last row
        those after a context never seen; None when it would exceed ``DENSE_TABLE_LIMIT``."""
        K, V = self.num_contexts, self.config.vocab_size
        if (K + 1) * V > DENSE_TABLE_LIMIT:
            return None
        if self.dense_logprobs is None or self.dense_logprobs.shape[0] != K + 1:
            nodes = torch.arange(-1, K, device=self.row_ptr.device).roll(-1)  # 0..K-1, then -1
            self.dense_logprobs = self._logprob_rows(nodes)
        return self.dense_logprobs

    def _child_table(self) -> torch.Tensor | None:
        """The trie as a dense ``[(K + 1) * V]`` table: entry ``c * V + a`` is the child of
        context ``c`` along token ``a`` (an edge key), ``K`` where there is none, and row ``K``
        (an unseen context) leads to ``K`` again. None above ``DENSE_TABLE_LIMIT`` entries."""
        K, V = self.num_contexts, self.config.vocab_size
        if (K + 1) * V > DENSE_TABLE_LIMIT:
            return None
        if self.dense_child is None or self.dense_child.numel() != (K + 1) * V:
            table = torch.full(((K + 1) * V,), K, dtype=torch.long, device=self.edge_keys.device)
            table[self.edge_keys] = self.edge_child
            self.dense_child = table
        return self.dense_child

    def _context_nodes(self, idx: torch.Tensor) -> torch.Tensor:
        """The trie node of each position's context: ``[B, T] -> [B, T]`` (-1 = unseen).

        Position t uses the ``min(t, n-1)`` tokens before it and including it: ``idx[:, t]``
        is the newest context token for predicting position t + 1.
        """
        B, T = idx.shape
        V, K = self.config.vocab_size, self.num_contexts
        node = torch.zeros(B, T, dtype=torch.long, device=idx.device)
        E = self.edge_keys.numel()
        if K == 0:  # nothing counted yet: every context is unseen
            return node - 1
        child = self._child_table()
        if child is not None:  # one gather per step back; K stands for "unseen" until the end
            for j in range(1, min(self.context_length, T) + 1):
                node[:, j - 1 :] = child.take(node[:, j - 1 :] * V + idx[:, : T - j + 1])
            return node.masked_fill_(node == K, -1)
        for j in range(1, self.context_length + 1):
            if j > T:
                break
            if E == 0:  # only the empty context was ever counted (a one-token corpus)
                node[:, j - 1 :] = -1
                break
            cur = node[:, j - 1 :]  # positions with at least j tokens up to and including them
            back = idx[:, : T - j + 1]  # the token j - 1 steps back from each of them
            keys = cur.clamp(min=0) * V + back
            where = torch.searchsorted(self.edge_keys, keys).clamp(max=E - 1)
            hit = (self.edge_keys[where] == keys) & (cur >= 0)
            node[:, j - 1 :] = torch.where(hit, self.edge_child[where], -1)
        return node

    def probs(self, context: Sequence[int]) -> torch.Tensor:
        """The next-token distribution ``[V]`` after ``context`` (its last n-1 tokens count).

        An empty context gives the unigram distribution.
        """
        context = list(context)[-self.context_length :] if self.context_length else []
        if not context:
            lp = self._unigram_logprobs()
        else:
            logits, _ = self(torch.tensor([context], dtype=torch.long))
            lp = logits[0, -1]
        return lp.exp()

    def _unigram_logprobs(self) -> torch.Tensor:
        V, k = self.config.vocab_size, float(self.config.smoothing)
        dense = torch.full((V,), k, dtype=torch.float64)
        if self.num_contexts:
            lo, hi = int(self.row_ptr[0]), int(self.row_ptr[1])
            dense[self.next_token[lo:hi].cpu()] += self.counts[lo:hi].double().cpu()
        if dense.sum() == 0:
            dense[:] = 1.0
        return (dense / dense.sum()).log().float()

    # -- loading buffers whose size depends on the data ------------------------------------------

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # The counts' sizes come from the corpus, not the config, so a freshly built model has
        # empty buffers; resize them to the saved shapes before the ordinary copy.
        for name in _BUFFERS:
            saved = state_dict.get(prefix + name)
            if saved is not None:
                self._buffers[name] = torch.empty_like(saved, device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._check_consistent()
        self._derive_totals()

    def _check_consistent(self) -> None:
        """Refuse count tables that cannot have come from ``fit`` (e.g. a corrupt file)."""
        V = self.config.vocab_size
        E, K, nnz = self.edge_keys.numel(), self.num_contexts, self.counts.numel()
        problems = []
        if self.edge_child.numel() != E:
            problems.append("edge_keys and edge_child differ in length")
        if self.next_token.numel() != nnz or int(self.row_ptr[-1]) != nnz:
            problems.append("row_ptr, next_token and counts disagree")
        elif nnz and (int(self.next_token.min()) < 0 or int(self.next_token.max()) >= V):
            problems.append(f"next_token holds ids outside 0..{V - 1}")
        if E and (int(self.edge_child.max()) >= K or int(self.edge_keys.max()) >= K * V):
            problems.append("edges point past the last context")
        if problems:
            raise ValueError(f"n-gram count tables are inconsistent: {'; '.join(problems)}")


def _dense_ok(n_keys: int, bound: int) -> bool:
    """Whether a table of ``bound`` slots is cheap next to sorting ``n_keys`` keys."""
    return bound <= 4 * n_keys + (1 << 20)


def _unique_inverse(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)`` for keys in ``0..bound-1``; a presence
    table replaces the sort when the key range is small (the usual case for characters)."""
    if not _dense_ok(len(keys), bound):
        uniq, inverse = np.unique(keys, return_inverse=True)
        return uniq, inverse.ravel()
    present = np.zeros(bound, dtype=bool)
    present[keys] = True
    rank = np.cumsum(present) - 1
    return np.flatnonzero(present), rank[keys]


def _unique_counts(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) and how often each occurs, for keys in ``0..bound-1``."""
    if not _dense_ok(len(keys), bound):
        return np.unique(keys, return_counts=True)
    counts = np.bincount(keys, minlength=bound)
    uniq = np.flatnonzero(counts)
    return uniq, counts[uniq]


def _lookup(
    sorted_keys: np.ndarray, values: np.ndarray, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each key: whether it is in ``sorted_keys``, and its value there (else -1)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool), np.full(len(keys), -1, dtype=np.int64)
    where = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    found = sorted_keys[where] == keys
    return found, np.where(found, values[where], -1)


def _as_id_array(ids: Sequence[int] | np.ndarray | torch.Tensor, vocab_size: int) -> np.ndarray:
    """A 1-D integer array of ids in ``0..vocab_size-1`` (memmaps stay memmaps)."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    arr = ids if isinstance(ids, np.ndarray) else np.asarray(list(ids))
    if arr.ndim != 1:
        raise ValueError(f"ids must be a 1-D sequence of token ids, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
    for start in range(0, len(arr), _FIT_CHUNK):
        part = arr[start : start + _FIT_CHUNK]
        bad = np.flatnonzero((part < 0) | (part >= vocab_size))
        if bad.size:
            i = start + int(bad[0])
            raise ValueError(
                f"token id {int(arr[i])} at position {i} is outside 0..{vocab_size - 1}; "
                f"the model's vocab_size ({vocab_size}) must match the tokenizer's"
            )
    return arr
