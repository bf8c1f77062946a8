"""Tokenizers: text <-> ids, three ways, behind one contract (see ``base.Tokenizer``).

- ``CharTokenizer``: one id per character of the training corpus.
- ``WordTokenizer``: words, punctuation and whitespace runs; PAD/UNK/BOS/EOS at ids 0-3;
  a pluggable vocabulary lookup (``lookup.LOOKUPS``: linear scan, binary search, hash).
- ``BPETokenizer``: byte-level BPE with GPT-2 / GPT-4 pre-tokenization, saved in the
  Hugging Face ``tokenizer.json`` format.

Every kind takes special tokens (chat roles, turn ends) with ``with_special_tokens``:
reserved ids after the existing ones that text reaches only through ``allowed_special``.

``load(path)`` reads back whichever of them was saved at ``path``:

>>> import tempfile
>>> tok = WordTokenizer.train("hello world")
>>> with tempfile.TemporaryDirectory() as d:
...     path = tok.save(d)                          # d/tokenizer.json
...     load(d) == tok
True

Nothing in this package imports torch.
"""

from __future__ import annotations

from pathlib import Path

from .base import TOKENIZER_FILE, Tokenizer, read_tokenizer_json
from .bpe import BPETokenizer
from .char import CharTokenizer, UnknownCharacterError
from .factory import KINDS, train_tokenizer
from .lookup import LOOKUPS, BinarySearchLookup, HashLookup, LinearScanLookup, make_lookup
from .word import WordTokenizer

__all__ = [
    "TOKENIZER_FILE",
    "BPETokenizer",
    "BinarySearchLookup",
    "CharTokenizer",
    "UnknownCharacterError",
    "HashLookup",
    "KINDS",
    "LOOKUPS",
    "LinearScanLookup",
    "Tokenizer",
    "WordTokenizer",
    "load",
    "make_lookup",
    "train_tokenizer",
]

_OURS = {"char": CharTokenizer, "word": WordTokenizer}


def load(path: str | Path) -> Tokenizer:
    """The tokenizer saved at ``path`` (a directory or its tokenizer.json), whatever its kind.

    Our own files say ``"kind": "char"`` or ``"word"``; a Hugging Face-format file
    whose ``"model"`` is ``{"type": "BPE", ...}`` is read by ``BPETokenizer.load``, and
    a directory holding GPT-2's ``vocab.json`` + ``merges.txt`` (and no tokenizer.json)
    by ``BPETokenizer.from_gpt2_files``. A missing file is a ``FileNotFoundError``; an
    empty, truncated, corrupt or foreign one a ``ValueError`` naming the file.
    """
    path = Path(path)
    gpt2 = path / "vocab.json", path / "merges.txt"
    if path.is_dir() and not (path / TOKENIZER_FILE).exists() and all(p.is_file() for p in gpt2):
        return BPETokenizer.from_gpt2_files(*gpt2)
    file, data = read_tokenizer_json(path)
    kind = data.get("kind")
    if kind in _OURS:
        return _OURS[kind].from_dict(data, source=str(file))
    model = data.get("model")
    if isinstance(model, dict):
        if model.get("type", "BPE") == "BPE":  # older HF files may leave the type out
            return BPETokenizer.load(file)
        raise ValueError(
            f"{file} is a Hugging Face tokenizer with a {model.get('type')!r} model; "
            "scratchllm reads BPE models (and its own char and word tokenizers)"
        )
    if kind is not None:
        raise ValueError(
            f"{file} holds a tokenizer of kind {kind!r}; scratchllm knows "
            f"{', '.join(sorted(_OURS))} and Hugging Face BPE"
        )
    raise ValueError(
        f"{file} is not a tokenizer.json: it has neither a 'kind' (scratchllm char/word) "
        "nor a 'model' (Hugging Face BPE) entry"
    )
