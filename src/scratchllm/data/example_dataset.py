"""Fine-tuning examples as training rows: whole examples, padded or packed, with their masks.

A ``TokenDataset`` cuts windows out of one long token stream, and every target of a
window counts. Fine-tuning trains on whole examples instead: each is rendered by a chat
template into ``(ids, mask)`` (``data.chat``), where ``mask[i]`` says whether predicting
``ids[i]`` counts (the reply and its end token, not the prompt). ``ExampleDataset`` holds
the rendered examples, a train/validation split, and draws batches the ``Trainer`` takes
the way it takes a ``TokenDataset``'s: ``get_batch(split, n, block_size, rng)``.

**Rows.** An example of ``L + 1`` tokens gives ``L`` (input, target) pairs::

    ids   <|user|> 2 + 2 = <|end|> <|assistant|> 4 <|end|>
    x     ids[:-1]
    y     ids[1:]             mask[1:]: True on "4" and the last <|end|> only

- **padded** (the default): each row holds one example, right-padded to the longest of
  the batch; padding has target ``-1`` and mask False, so it is never trained on (and a
  causal model never attends to it: it comes after every real token).
- **packed** (``pack=True``): each row of ``block_size`` positions holds as many examples
  as fit, one after another, and ``documents [B, T]`` says which example each position
  belongs to, so the model attends only within an example and restarts its positions
  (``models.layers.documents``); each example is scored exactly as if alone.

**Draws.** Every example is drawn independently and uniformly from its split by the
``rng`` given (with replacement), so a run's data position is the generator's state and
resuming is exact. A packed row takes the next draws while they fit; the first one that
does not starts the next row.

**Length.** Examples longer than ``max_length`` tokens are cut to it (a row holds at most
``block_size = max_length - 1`` pairs); one whose learned tokens all fall beyond the cut is
left out. Both are counted in ``stats`` for the run to report.

>>> from scratchllm.data.chat import ChatTemplate, Message
>>> from scratchllm.tokenizers import CharTokenizer
>>> chat = ChatTemplate.create(CharTokenizer.train("0123456789+="))
>>> talk = [[Message("user", f"{a}+{a}="), Message("assistant", str(2 * a))] for a in range(6)]
>>> ds = ExampleDataset.from_examples(talk, chat, max_length=16, val_fraction=0.2)
>>> ds.stats.n_train, ds.stats.n_val
(5, 1)
>>> x, y, mask = ds.get_batch("train", 2, 15, rng=0)
>>> x.shape[0], [int(m.sum()) for m in mask]         # a one-digit answer and its <|end|>
(2, [2, 2])
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from scratchllm.data.chat import ChatTemplate, Message
from scratchllm.data.dataset import Batch
from scratchllm.data.sft import Example

if TYPE_CHECKING:
    import torch

    from scratchllm.tokenizers import Tokenizer

IGNORE = -1  # the target of a padded position (models.base.lm_loss's ignore_index)
SPLITS = ("train", "val")


class PackedBatch(NamedTuple):
    x: torch.Tensor  # (B, T) int64 input ids
    y: torch.Tensor  # (B, T) int64 targets, -1 on padding
    mask: torch.Tensor  # (B, T) bool: which targets count
    documents: torch.Tensor  # (B, T) int64: the example each position belongs to


@dataclass(frozen=True)
class ExampleStats:
    """What building the dataset did, for a run to report."""

    n_train: int
    n_val: int
    tokens: int  # tokens of every example kept (after cutting)
    learned: int  # of which count in the loss
    longest: int  # tokens of the longest example kept
    truncated: int  # examples cut to max_length
    dropped: int  # examples left out: nothing to learn within max_length


class ExampleDataset:
    """Rendered examples (``ids``, ``mask`` arrays of equal length each) split into
    ``n_train`` training and ``n_val`` validation examples; see the module docstring.

    ``from_examples`` renders through a chat template; the constructor takes the arrays.
    """

    def __init__(
        self,
        ids: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        tokenizer: Tokenizer,
        *,
        n_val: int,
        pack: bool = False,
        source: str = "",
        stats: ExampleStats | None = None,
    ) -> None:
        if len(ids) != len(masks):
            raise ValueError(f"{len(ids)} id arrays but {len(masks)} masks")
        if not 1 <= n_val < len(ids):
            raise ValueError(
                f"need at least one training and one validation example; got {len(ids)} "
                f"examples with {n_val} for validation"
            )
        for i, (a, m) in enumerate(zip(ids, masks)):
            if len(a) != len(m) or len(a) < 2 or not m[1:].any():
                raise ValueError(f"example {i}: needs >= 2 ids and a learned token after the first")
        self.ids = [np.asarray(a, dtype=np.int64) for a in ids]
        self.masks = [np.asarray(m, dtype=bool) for m in masks]
        self._tokenizer = tokenizer
        self.n_val = n_val
        self.pack = pack
        self.source = source
        self.stats = stats or _stats(self.ids, self.masks, n_val, 0, 0)
        self.directory = None  # nothing on disk: the run re-renders its source on resume

    @classmethod
    def from_examples(
        cls,
        examples: Iterable[Example | Sequence[Message | Mapping[str, Any]]],
        template: ChatTemplate,
        *,
        max_length: int,
        val_fraction: float = 0.1,
        train_on_prompt: bool = False,
        prefix: Sequence[int] = (),
        pack: bool = False,
        seed: int = 0,
        source: str = "",
    ) -> ExampleDataset:
        """Render ``examples`` (``Example`` objects or message lists) with ``template``.

        ``train_on_prompt`` counts every token but the first (the prompt too, role tokens
        included) instead of the replies only. ``prefix`` ids go before every example,
        never learned (a language's END, after which every sample of its stream starts).
        The examples are shuffled by ``seed``, then the last ``val_fraction`` of them (at
        least one) is the validation split.
        """
        if max_length < 2:
            raise ValueError(f"max_length ({max_length}) must be at least 2")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction ({val_fraction}) must be in (0, 1)")
        ids, masks = [], []
        truncated = dropped = 0
        for k, example in enumerate(examples):
            messages = example.messages if isinstance(example, Example) else example
            where = example.source if isinstance(example, Example) else f"example {k}"
            try:
                row, mask = template.render(messages)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            row, mask = list(prefix) + row, [False] * len(prefix) + mask
            if train_on_prompt:
                mask = [False] + [True] * (len(row) - 1)
            if len(row) > max_length:
                truncated += 1
                row, mask = row[:max_length], mask[:max_length]
            if not any(mask[1:]):
                dropped += 1
                continue
            ids.append(np.asarray(row, dtype=np.int64))
            masks.append(np.asarray(mask, dtype=bool))
        n = len(ids)
        if n < 2:
            cut = f"; {dropped} had nothing to learn within {max_length} tokens" if dropped else ""
            raise ValueError(
                f"{source or 'the data'}: {n} usable example(s) (of {n + dropped}); "
                f"fine-tuning needs at least 2 (one to train on, one to validate){cut}"
            )
        order = np.random.default_rng(seed).permutation(n)
        ids, masks = [ids[i] for i in order], [masks[i] for i in order]
        n_val = min(n - 1, max(1, round(val_fraction * n)))
        stats = _stats(ids, masks, n_val, truncated, dropped)
        return cls(
            ids, masks, template.tokenizer, n_val=n_val, pack=pack, source=source, stats=stats
        )

    # -- what the Trainer reads ---------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.vocab_size

    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    def split(self, split: str) -> range:
        """The indices of ``split``'s examples: train first, validation last."""
        n_train = len(self.ids) - self.n_val
        if split == "train":
            return range(0, n_train)
        if split == "val":
            return range(n_train, len(self.ids))
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")

    def get_batch(
        self,
        split: str,
        batch_size: int,
        block_size: int,
        rng: np.random.Generator | int | None = None,
    ) -> Batch | PackedBatch:
        """``batch_size`` rows of ``split``'s examples, drawn by ``rng`` (a generator or a
        seed); padded ``Batch`` or, with ``pack``, a ``PackedBatch`` of ``block_size``
        positions per row. Examples are cut to ``block_size`` pairs."""
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size ({batch_size}) and block_size ({block_size}) must be > 0")
        rng = np.random.default_rng(rng)
        span = self.split(split)
        draw = lambda: span[int(rng.integers(len(span)))]  # noqa: E731
        if self.pack:
            return self._packed(batch_size, block_size, draw)
        rows = [self._pairs(draw(), block_size) for _ in range(batch_size)]
        return _to_batch(rows, max(len(r[0]) for r in rows))

    def fingerprint(self) -> str:
        """A hash of every example's ids and mask in order (a resumed run checks it)."""
        h = hashlib.sha256()
        for a, m in zip(self.ids, self.masks):
            h.update(a.tobytes())
            h.update(m.tobytes())
            h.update(b"|")
        return h.hexdigest()

    # -- rows -----------------------------------------------------------------------------

    def _pairs(self, i: int, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, mask)`` of example ``i``, at most ``block_size`` long."""
        a, m = self.ids[i][: block_size + 1], self.masks[i][: block_size + 1]
        return a[:-1], a[1:], m[1:]

    def _packed(self, batch_size: int, block_size: int, draw: Any) -> PackedBatch:
        import torch

        T = block_size
        x = np.zeros((batch_size, T), np.int64)
        y = np.full((batch_size, T), IGNORE, np.int64)
        m = np.zeros((batch_size, T), bool)
        documents = np.zeros((batch_size, T), np.int64)
        pending = None
        for r in range(batch_size):
            pos, doc = 0, 0
            while pos < T:
                if pending is None:
                    pending = self._pairs(draw(), T)
                n = len(pending[0])
                if pos + n > T:  # it starts the next row
                    break
                for out, part in zip((x, y, m), pending):
                    out[r, pos : pos + n] = part
                documents[r, pos : pos + n] = doc
                pos, doc, pending = pos + n, doc + 1, None
            documents[r, pos:] = doc  # the padding: one more document, never learned
        t = [torch.from_numpy(a) for a in (x, y, m, documents)]
        return PackedBatch(*t)


def _to_batch(rows: list[tuple[np.ndarray, ...]], T: int) -> Batch:
    import torch

    B = len(rows)
    x = np.zeros((B, T), np.int64)
    y = np.full((B, T), IGNORE, np.int64)
    m = np.zeros((B, T), bool)
    for r, (xi, yi, mi) in enumerate(rows):
        x[r, : len(xi)], y[r, : len(yi)], m[r, : len(mi)] = xi, yi, mi
    return Batch(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m))


def _stats(
    ids: list[np.ndarray], masks: list[np.ndarray], n_val: int, truncated: int, dropped: int
) -> ExampleStats:
    return ExampleStats(
        n_train=len(ids) - n_val,
        n_val=n_val,
        tokens=int(sum(len(a) for a in ids)),
        learned=int(sum(m[1:].sum() for m in masks)),
        longest=max(len(a) for a in ids),
        truncated=truncated,
        dropped=dropped,
    )
