"""``TokenDataset``: a corpus tokenized once into a memory-mapped file, served as batches.

A dataset is a directory a person can read::

    data/
      tokens.bin      the token ids, uint16 (vocab <= 65 536) or uint32, native byte order
      mask.bin        optional, one uint8 per token: 1 where predicting that token counts
      meta.json       vocab size, dtype, token counts, where validation starts, tokenizer hash
      tokenizer.json  the tokenizer that made it

Tokens are written in pieces, so a corpus larger than RAM is tokenized and served in
constant memory: the operating system pages in the windows a batch touches.

**Split.** Validation is the last ``val_fraction`` of the tokens. When the corpus is made
of samples (a synthetic language) the split moves forward to the next sample boundary,
so no sample is cut in two or shared between training and validation.

**Batches.** ``get_batch("train", B, T, rng)`` draws B random windows of T + 1 tokens:
``x`` is the first T, ``y`` the last T (the next token at every position), and ``mask``
the loss mask aligned with ``y`` (None without a mask file).

>>> ds = TokenDataset.from_text("hello world\\n" * 50, CharTokenizer.train("helo wrd\\n"),
...                             tmp_dir)                              # doctest: +SKIP
>>> x, y, mask = ds.get_batch("train", batch_size=4, block_size=8, rng=0)  # doctest: +SKIP
>>> x.shape, bool((x[:, 1:] == y[:, :-1]).all())                      # doctest: +SKIP
(torch.Size([4, 8]), True)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from scratchllm.configs.data import DEFAULT_VAL_FRACTION
from scratchllm.files import write_json

if TYPE_CHECKING:
    import torch

    from scratchllm.data.corpus import Corpus
    from scratchllm.tokenizers.base import Tokenizer

TOKENS_FILE = "tokens.bin"
MASK_FILE = "mask.bin"
META_FILE = "meta.json"
FORMAT_VERSION = 1
SPLITS = ("train", "val")
_PIECE_CHARS = 1 << 20  # characters tokenized at a time from an in-memory text


class Batch(NamedTuple):
    x: torch.Tensor  # (B, T) int64 input ids
    y: torch.Tensor  # (B, T) int64 next-token targets
    mask: torch.Tensor | None  # (B, T) bool: which targets count; None = all


@dataclass
class DatasetMeta:
    """What ``meta.json`` says about a token file."""

    vocab_size: int
    dtype: str  # "uint16" or "uint32"
    n_tokens: int
    split_index: int  # first validation token; train = [0, split_index)
    val_fraction: float
    has_mask: bool
    n_samples: int  # number of samples (languages) or 0 for plain text
    source: str  # where the text came from
    tokenizer_kind: str
    tokenizer_sha256: str  # hash of the tokenizer.json that made the tokens
    version: int = FORMAT_VERSION

    @property
    def n_train(self) -> int:
        return self.split_index

    @property
    def n_val(self) -> int:
        return self.n_tokens - self.split_index


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id: uint16 up to 65 536 tokens."""
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    if vocab_size <= 1 << 32:
        return np.dtype(np.uint32)
    raise ValueError(f"vocab_size ({vocab_size}) is larger than a uint32 token file can hold")


class TokenDataset:
    """A tokenized corpus on disk (see the module docstring); open one with ``TokenDataset(dir)``.

    Build one with ``from_text``, ``from_file``, ``from_samples``, ``from_corpus`` or
    ``from_token_chunks``.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{meta_path}: not a token dataset (build one with TokenDataset.from_text, "
                "from_file or from_corpus)"
            )
        try:
            raw = json.loads(meta_path.read_text(encoding="utf-8"))
            self.meta = DatasetMeta(**raw)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as e:
            raise ValueError(f"{meta_path}: not a token dataset meta file ({e})") from None
        if self.meta.version != FORMAT_VERSION:
            raise ValueError(
                f"{meta_path}: dataset format {self.meta.version}, this scratchllm reads "
                f"{FORMAT_VERSION}; rebuild the dataset"
            )
        self.tokens = _open_memmap(self.directory / TOKENS_FILE, self.meta.dtype, self.meta)
        self.mask = (
            _open_memmap(self.directory / MASK_FILE, "uint8", self.meta)
            if self.meta.has_mask
            else None
        )

    def __len__(self) -> int:
        return self.meta.n_tokens

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"TokenDataset({str(self.directory)!r}, tokens={m.n_tokens}, train={m.n_train}, "
            f"val={m.n_val}, vocab_size={m.vocab_size}, mask={m.has_mask})"
        )

    @property
    def vocab_size(self) -> int:
        return self.meta.vocab_size

    def tokenizer(self) -> Tokenizer:
        """The tokenizer saved with the dataset."""
        from scratchllm.tokenizers import load

        return load(self.directory)

    # -- reading -------------------------------------------------------------------------------

    def split_range(self, split: str) -> tuple[int, int]:
        """``(start, stop)`` token indices of ``"train"`` or ``"val"``."""
        if split == "train":
            return 0, self.meta.split_index
        if split == "val":
            return self.meta.split_index, self.meta.n_tokens
        raise ValueError(f"split {split!r} is not one of {SPLITS}")

    def split_tokens(self, split: str) -> np.ndarray:
        """The tokens of a split as a memory-mapped view (nothing is read yet)."""
        lo, hi = self.split_range(split)
        return self.tokens[lo:hi]

    def get_batch(
        self,
        split: str,
        batch_size: int,
        block_size: int,
        rng: np.random.Generator | int | None = None,
    ) -> Batch:
        """``batch_size`` random windows of ``block_size`` tokens from ``split``.

        ``rng`` is a NumPy generator or a seed; the same seed gives the same batch.
        """
        _check_positive(batch_size=batch_size, block_size=block_size)
        lo, hi = self._window_range(split, block_size)
        rng = np.random.default_rng(rng)
        starts = rng.integers(lo, hi - block_size, size=batch_size)  # last start: hi - T - 1
        return self._batch_at(starts[:, None] + np.arange(block_size + 1))  # (B, T+1)

    def batches(
        self,
        split: str,
        batch_size: int,
        block_size: int,
        seed: int | None = 0,
    ) -> Iterator[Batch]:
        """An endless stream of random batches from one seeded generator."""
        _check_positive(batch_size=batch_size, block_size=block_size)
        self._window_range(split, block_size)  # fail now, not at the first next()
        rng = np.random.default_rng(seed)
        return (self.get_batch(split, batch_size, block_size, rng) for _ in itertools.count())

    def sequential(self, split: str, block_size: int, batch_size: int = 32) -> Iterator[Batch]:
        """Consecutive windows covering ``split`` once: every token after the first is a
        target exactly once (the last window may be shorter). For exact perplexity."""
        _check_positive(batch_size=batch_size, block_size=block_size)
        lo, hi = self.split_range(split)
        n_targets = hi - lo - 1
        if n_targets < 1:
            raise ValueError(
                f"the {split} split has {hi - lo} tokens; it needs at least 2 to predict one"
            )
        full = n_targets // block_size
        starts = lo + np.arange(full) * block_size
        for b in range(0, full, batch_size):
            s = starts[b : b + batch_size]
            idx = s[:, None] + np.arange(block_size + 1)  # (b, T+1)
            yield self._batch_at(idx)
        rest = n_targets - full * block_size
        if rest:
            idx = (lo + full * block_size + np.arange(rest + 1))[None, :]  # (1, rest+1)
            yield self._batch_at(idx)

    def _batch_at(self, idx: np.ndarray) -> Batch:
        """The windows whose token indices are the rows of ``idx`` (B, T+1)."""
        import torch

        # One fancy index gathers every window at once: no Python loop per token.
        chunk = torch.from_numpy(self.tokens[idx].astype(np.int64))  # (B, T+1)
        mask = None
        if self.mask is not None:
            mask = torch.from_numpy(self.mask[idx[:, 1:]].astype(bool))  # (B, T), aligned to y
        return Batch(chunk[:, :-1], chunk[:, 1:], mask)

    def _window_range(self, split: str, block_size: int) -> tuple[int, int]:
        lo, hi = self.split_range(split)
        if hi - lo < block_size + 1:
            raise ValueError(
                f"the {split} split of {self.directory} has {hi - lo} tokens, but block_size "
                f"{block_size} needs at least {block_size + 1} (a window plus its next token); "
                "use more text or a smaller block size"
            )
        return lo, hi

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def from_text(
        cls,
        text: str,
        tokenizer: Tokenizer,
        directory: str | Path,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        mask: Sequence[bool] | None = None,
        source: str = "text",
    ) -> TokenDataset:
        """Tokenize ``text`` (in pieces that end at line breaks) into ``directory``.

        ``mask`` (one bool per character) marks the characters whose prediction counts.
        """
        if mask is not None and len(mask) != len(text):
            raise ValueError(f"mask has {len(mask)} entries but the text {len(text)} characters")
        pieces = (
            (piece, None if mask is None else mask[start : start + len(piece)])
            for start, piece in _split_lines(text, _PIECE_CHARS)
        )
        return cls._build(
            _encode_pieces(pieces, tokenizer),
            tokenizer,
            directory,
            val_fraction,
            has_mask=mask is not None,
            source=source,
            sample_bounds=False,
        )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        tokenizer: Tokenizer,
        directory: str | Path,
        val_fraction: float = DEFAULT_VAL_FRACTION,
    ) -> TokenDataset:
        """Stream a UTF-8 file through the tokenizer into ``directory``, in constant memory."""
        from scratchllm.data.corpus import iter_text_file

        pieces = ((piece, None) for piece in iter_text_file(path))
        return cls._build(
            _encode_pieces(pieces, tokenizer),
            tokenizer,
            directory,
            val_fraction,
            has_mask=False,
            source=str(path),
            sample_bounds=False,
        )

    @classmethod
    def from_samples(
        cls,
        samples: Iterable[str],
        tokenizer: Tokenizer,
        directory: str | Path,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        masks: Iterable[Sequence[bool]] | None = None,
        source: str = "samples",
    ) -> TokenDataset:
        """Tokenize samples one by one; the split falls on a sample boundary.

        ``masks`` gives one bool per character of each sample. Each run of equal mask
        values is tokenized on its own, so no token straddles a counted and an uncounted
        character and the mask carries over to tokens exactly.
        """
        if masks is None:
            pieces: Iterable = ((s, None) for s in samples)
        else:
            pieces = _zip_masks(samples, masks)
        return cls._build(
            _encode_pieces(pieces, tokenizer),
            tokenizer,
            directory,
            val_fraction,
            has_mask=masks is not None,
            source=source,
            sample_bounds=True,
        )

    @classmethod
    def from_corpus(
        cls,
        corpus: Corpus,
        tokenizer: Tokenizer,
        directory: str | Path,
        val_fraction: float = DEFAULT_VAL_FRACTION,
    ) -> TokenDataset:
        """A ``Corpus`` from ``resolve_data``: per sample for a language, else as text."""
        if corpus.samples is not None:
            masks = None
            if corpus.mask is not None:
                masks, at = [], 0
                for s in corpus.samples:
                    masks.append(corpus.mask[at : at + len(s)])
                    at += len(s)
            return cls.from_samples(
                corpus.samples, tokenizer, directory, val_fraction, masks, corpus.source
            )
        return cls.from_text(
            corpus.text, tokenizer, directory, val_fraction, corpus.mask, corpus.source
        )

    @classmethod
    def from_token_chunks(
        cls,
        chunks: Iterable[np.ndarray],
        tokenizer: Tokenizer,
        directory: str | Path,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        source: str = "tokens",
    ) -> TokenDataset:
        """Write already-tokenized id arrays (e.g. from another pipeline) as a dataset."""
        return cls._build(
            ((np.asarray(c), None) for c in chunks),
            tokenizer,
            directory,
            val_fraction,
            has_mask=False,
            source=source,
            sample_bounds=False,
        )

    @classmethod
    def _build(
        cls,
        pieces: Iterable[tuple[np.ndarray, np.ndarray | None]],
        tokenizer: Tokenizer,
        directory: str | Path,
        val_fraction: float,
        *,
        has_mask: bool,
        source: str,
        sample_bounds: bool,
    ) -> TokenDataset:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction ({val_fraction!r}) must be in [0, 1)")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        V = tokenizer.vocab_size
        dtype = token_dtype(V)
        bounds: list[int] = []  # token index where each sample ends
        n = 0
        tmp_tokens = directory / (TOKENS_FILE + ".tmp")
        tmp_mask = directory / (MASK_FILE + ".tmp")
        with (
            open(tmp_tokens, "wb") as ft,
            open(tmp_mask, "wb") if has_mask else nullcontext() as fm,
        ):
            for ids, mask in pieces:
                if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= V):
                    raise ValueError(f"token ids outside 0..{V - 1} (the tokenizer's vocab_size)")
                ft.write(ids.astype(dtype, copy=False).tobytes())
                if has_mask:
                    fm.write(np.asarray(mask, dtype=np.uint8).tobytes())
                n += len(ids)
                if sample_bounds:
                    bounds.append(n)
        if n == 0:
            for tmp in (tmp_tokens, tmp_mask):
                tmp.unlink(missing_ok=True)
            raise ValueError(f"the corpus ({source}) is empty: it produced no tokens")
        split = validation_start(n, val_fraction, bounds)
        tok_path = tokenizer.save(directory)
        meta = DatasetMeta(
            vocab_size=V,
            dtype=dtype.name,
            n_tokens=n,
            split_index=split,
            val_fraction=val_fraction,
            has_mask=has_mask,
            n_samples=len(bounds),
            source=source,
            tokenizer_kind=getattr(tokenizer, "kind", type(tokenizer).__name__),
            tokenizer_sha256=hashlib.sha256(Path(tok_path).read_bytes()).hexdigest(),
        )
        tmp_tokens.replace(directory / TOKENS_FILE)
        if has_mask:
            tmp_mask.replace(directory / MASK_FILE)
        else:
            (directory / MASK_FILE).unlink(missing_ok=True)  # a stale mask from an old build
        write_json(directory / META_FILE, asdict(meta))
        return cls(directory)


# -- helpers ----------------------------------------------------------------------------------


def validation_start(n: int, val_fraction: float, bounds: list[int]) -> int:
    """First validation token: ``n * (1 - val_fraction)``, moved to a sample boundary."""
    target = n - int(round(n * val_fraction))
    if not bounds or val_fraction == 0:
        return target
    i = int(np.searchsorted(np.asarray(bounds), target))
    return bounds[i] if i < len(bounds) else n


def _split_lines(text: str, size: int) -> Iterator[tuple[int, str]]:
    """``(start, piece)`` slices of about ``size`` characters that end after a newline."""
    start = 0
    while start < len(text):
        stop = min(start + size, len(text))
        if stop < len(text):
            nl = text.rfind("\n", start, stop)
            if nl >= 0:
                stop = nl + 1
        yield start, text[start:stop]
        start = stop


def _runs(text: str, mask: Sequence[bool]) -> Iterator[tuple[str, bool]]:
    """Maximal runs of equal mask value: ``("12+3=", False), ("15\\n", True)``."""
    flags = np.asarray(mask, dtype=bool)
    cuts = [0, *(np.flatnonzero(flags[1:] != flags[:-1]) + 1).tolist(), len(text)]
    for start, stop in zip(cuts[:-1], cuts[1:]):
        if stop > start:
            yield text[start:stop], bool(flags[start])


def _encode_pieces(
    pieces: Iterable[tuple[str, Sequence[bool] | None]], tokenizer: Tokenizer
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Token ids (and token mask) of each text piece. With a mask, each run of equal mask
    values is encoded on its own, so no token straddles a counted and an uncounted character."""
    for text, mask in pieces:
        if mask is None:
            yield np.asarray(tokenizer.encode(text), dtype=np.int64), None
            continue
        if len(mask) != len(text):
            raise ValueError(f"a mask of {len(mask)} entries for {len(text)} characters")
        ids: list[int] = []
        flags: list[bool] = []
        for run, flag in _runs(text, mask):
            run_ids = tokenizer.encode(run)
            ids.extend(run_ids)
            flags.extend([flag] * len(run_ids))
        yield np.asarray(ids, dtype=np.int64), np.asarray(flags, dtype=np.uint8)


def _zip_masks(
    samples: Iterable[str], masks: Iterable[Sequence[bool]]
) -> Iterator[tuple[str, Sequence[bool]]]:
    sentinel = object()
    mask_iter = iter(masks)
    for i, s in enumerate(samples):
        m = next(mask_iter, sentinel)
        if m is sentinel:
            raise ValueError(f"masks ran out at sample {i}; give one mask per sample")
        yield s, m  # type: ignore[misc]


def _open_memmap(path: Path, dtype: str, meta: DatasetMeta) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (the dataset is incomplete; rebuild it)")
    itemsize = np.dtype(dtype).itemsize
    expected = meta.n_tokens * itemsize
    size = os.path.getsize(path)
    if size != expected:
        raise ValueError(
            f"{path} holds {size} bytes, but meta.json says {meta.n_tokens} tokens of "
            f"{dtype} ({expected} bytes); the dataset is corrupt: rebuild it"
        )
    return np.memmap(path, dtype=dtype, mode="r", shape=(meta.n_tokens,))


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} ({v!r}) must be a positive integer")
