"""One way to make a tokenizer from a kind and a text: what ``scratchllm tokenizer train``
and ``scratchllm train --tokenizer`` both call.

>>> tok = train_tokenizer("char", "abcabc")
>>> tok.kind, tok.vocab_size
('char', 3)
>>> train_tokenizer("word", "a b", pattern="gpt4")
Traceback (most recent call last):
...
ValueError: pattern applies to bpe tokenizers, not word

Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Tokenizer
from .bpe import BPETokenizer
from .char import CharTokenizer
from .word import WordTokenizer

KINDS = ("char", "word", "bpe")
DEFAULT_BPE_VOCAB = 512  # bytes + 256 merges: small enough to train in seconds on a corpus

# Which kinds each kind-specific option applies to.
OPTION_KINDS: dict[str, tuple[str, ...]] = {
    "min_frequency": ("word",),
    "lowercase": ("word",),
    "nfkc": ("word",),
    "pattern": ("bpe",),
    "special_tokens": ("bpe",),
    "unk": ("char",),
}


def train_tokenizer(
    kind: str,
    text: str,
    vocab_size: int | None = None,
    *,
    unk: bool | None = None,
    min_frequency: int | None = None,
    lowercase: bool = False,
    nfkc: bool = False,
    pattern: str | None = None,
    special_tokens: Sequence[str] | None = None,
    progress: bool = False,
) -> Tokenizer:
    """A ``kind`` tokenizer ("char", "word" or "bpe") trained on ``text``.

    ``vocab_size``: for char, the most frequent characters kept (the others become
    ``<unk>``; ``unk`` defaults to "exactly when capped"); for word, a cap counting its four
    special tokens; for bpe, the size including the 256 bytes (default
    ``DEFAULT_BPE_VOCAB``). The other options apply to one kind each (``OPTION_KINDS``);
    giving one to another kind is a ``ValueError``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
    given = {
        "min_frequency": min_frequency is not None,
        "lowercase": lowercase,
        "nfkc": nfkc,
        "pattern": pattern is not None,
        "special_tokens": bool(special_tokens),
        "unk": unk is not None,
    }
    for option, kinds in OPTION_KINDS.items():
        if given[option] and kind not in kinds:
            raise ValueError(f"{option} applies to {'/'.join(kinds)} tokenizers, not {kind}")
    if kind == "char":
        unk = vocab_size is not None if unk is None else unk
        return CharTokenizer.train(text, unk=unk, vocab_size=vocab_size, progress=progress)
    if kind == "word":
        return WordTokenizer.train(
            text,
            vocab_size=vocab_size,
            min_frequency=1 if min_frequency is None else min_frequency,
            lowercase=lowercase,
            nfkc=nfkc,
            progress=progress,
        )
    return BPETokenizer.train(
        text,
        vocab_size=DEFAULT_BPE_VOCAB if vocab_size is None else vocab_size,
        pattern=pattern or "gpt2",
        special_tokens=special_tokens or (),
        progress=progress,
    )


def vocab_shortfall(tokenizer: Tokenizer, vocab_size: int | None) -> str | None:
    """Why a BPE tokenizer trained for ``vocab_size`` tokens has fewer, or None: training
    stops when no pair of tokens is left to merge, which a small text reaches early.

    >>> vocab_shortfall(train_tokenizer("bpe", "abab", 300), 300)
    'asked for 300 tokens, made 258: the text has no more pairs of tokens to merge'
    """
    if tokenizer.kind != "bpe" or vocab_size is None or tokenizer.vocab_size >= vocab_size:
        return None
    return (
        f"asked for {vocab_size:,} tokens, made {tokenizer.vocab_size:,}: the text has no more "
        "pairs of tokens to merge"
    )


def tokenizer_sha256(tokenizer: Tokenizer) -> str:
    """The SHA-256 of the ``tokenizer.json`` that ``tokenizer.save`` writes: what a token
    dataset records (``meta.tokenizer_sha256``) to say which tokenizer made it."""
    import hashlib
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        return hashlib.sha256(Path(tokenizer.save(d)).read_bytes()).hexdigest()
