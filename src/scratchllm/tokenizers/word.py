"""Word-level tokenizer: words, single punctuation marks and whitespace runs are the tokens.

Text is first normalised (optionally Unicode NFKC, then optionally lowercased),
then split by one regular expression into three kinds of pre-token:

- a run of word characters (letters, combining marks, digits, ``_``): ``"don"``, ``"été"``, ``"42"``
- one character that is neither a word character nor whitespace: ``","``, ``"'"``, ``"🙂"``
- a run of whitespace: ``" "``, ``"\\n\\n"``, ``"   "``

Every character belongs to exactly one pre-token, so joining them gives the
normalised text back, spacing included. Ids 0-3 are fixed special tokens
(``PAD=0``, ``UNK=1``, ``BOS=2``, ``EOS=3``); words follow from id 4, most
frequent first, ties broken by code-point order of the token. A token outside
the vocabulary encodes to ``UNK`` and decodes to ``"<unk>"``.

>>> tok = WordTokenizer.train("the cat sat on the mat.")
>>> tok.words[:4]                     # " " (5 times), "the" (2), then ties in code-point order
[' ', 'the', '.', 'cat']
>>> tok.encode("the cat", add_bos=True)
[2, 5, 4, 7]
>>> tok.decode(tok.encode("the dog sat."))
'the <unk> sat.'

Added special tokens (``with_special_tokens``) take the ids after the words. They are
matched in the raw text only when ``allowed_special`` names them, never by the
vocabulary lookup, so not even a special spelled like a word (``"USER"``) comes from text.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import regex

from .base import (
    AllowedSpecial,
    Tokenizer,
    check_header,
    check_training_text,
    encode_with_specials,
    is_token_id,
    new_special_tokens,
    read_special_list,
    read_tokenizer_json,
    resolve_allowed,
    save_json_tokenizer,
)
from .lookup import make_lookup

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<unk>", "<bos>", "<eos>")  # their ids: 0, 1, 2, 3
# Version 2 adds "special_tokens" (added ones, after the words); without any, version 1 is
# written byte for byte as before.
FORMAT_VERSION = 1
VERSIONS = (1, 2)

# The three alternatives cover disjoint character classes, so the split is unique and lossless.
# Special-token strings such as "<pad>" split into "<", "pad", ">": text can never produce them.
_WORD = r"[\p{L}\p{M}\p{N}_]"
PRE_TOKEN_PATTERN = rf"{_WORD}+|[^\p{{L}}\p{{M}}\p{{N}}_\s]|\s+"
_CHUNK = 1 << 20  # characters per progress-bar step while counting


@functools.cache
def _compiled() -> regex.Pattern:
    return regex.compile(PRE_TOKEN_PATTERN)  # on first use, not at import time


def pre_tokenize(text: str) -> list[str]:
    """Split (already normalised) text into words, single other characters and whitespace runs.

    >>> pre_tokenize("Hi,  you!\\n")
    ['Hi', ',', '  ', 'you', '!', '\\n']
    """
    return _compiled().findall(text)


class WordTokenizer(Tokenizer):
    """Maps each pre-token of its vocabulary to an id (see the module docstring)."""

    kind = "word"

    def __init__(
        self,
        words: Sequence[str],
        lowercase: bool = False,
        nfkc: bool = False,
        lookup: str = "hash",
        special_tokens: Sequence[str] = (),
    ):
        """``words`` in id order (ids 4, 5, ...); ``lookup`` picks the strategy in lookup.py;
        ``special_tokens`` are added after the words."""
        words = list(words)
        pattern = _compiled()
        for i, w in enumerate(words):
            if not isinstance(w, str) or not pattern.fullmatch(w):
                raise ValueError(
                    f"vocabulary word {i} is {w!r}: each word must be exactly one pre-token "
                    "(a run of word characters, one other character, or a run of whitespace)"
                )
        self.lowercase = lowercase
        self.nfkc = nfkc
        base = [*SPECIAL_TOKENS, *words]
        self._lookup = make_lookup(lookup, base)  # also rejects repeated words
        # Added specials stay out of the lookup: text never reaches them.
        added = new_special_tokens(special_tokens, existing=())
        self._specials = {t: len(base) + k for k, t in enumerate(added)}
        self._itos: list[str] = base + added
        # What each id decodes to, with and without PAD/BOS/EOS shown (added specials show).
        self._shown = list(self._itos)
        self._skipped = list(self._itos)
        for i in (PAD, BOS, EOS):
            self._skipped[i] = ""

    @property
    def lookup_name(self) -> str:
        return self._lookup.name

    # ---- building -------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int | None = None,
        min_frequency: int = 1,
        lowercase: bool = False,
        nfkc: bool = False,
        lookup: str = "hash",
        progress: bool = False,
    ) -> WordTokenizer:
        """Count the pre-tokens of the normalised ``text``; keep the frequent ones.

        A token is kept if it occurs at least ``min_frequency`` times; then at most
        ``vocab_size - 4`` of them (the 4 special tokens count towards ``vocab_size``),
        most frequent first, ties in code-point order. ``progress`` shows a tqdm bar.
        """
        check_training_text(text)
        _check_caps(vocab_size, min_frequency)
        counts = count_pre_tokens(normalize(text, lowercase, nfkc), progress)
        kept = [t for t, n in counts.items() if n >= min_frequency]
        if not kept:
            raise ValueError(
                f"no token occurs at least min_frequency={min_frequency} times "
                f"(the most frequent occurs {max(counts.values())} times); lower min_frequency"
            )
        kept.sort(key=lambda t: (-counts[t], t))
        if vocab_size is not None:
            kept = kept[: vocab_size - len(SPECIAL_TOKENS)]
        return cls(kept, lowercase=lowercase, nfkc=nfkc, lookup=lookup)

    # ---- the contract ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    def normalize(self, text: str) -> str:
        """The text this tokenizer actually sees (and ``decode`` gives back)."""
        return normalize(text, self.lowercase, self.nfkc)

    @property
    def special_tokens(self) -> dict[str, int]:
        """The added special tokens -> ids (a copy). PAD/UNK/BOS/EOS have their constants."""
        return dict(self._specials)

    def with_special_tokens(self, tokens: Iterable[str]) -> WordTokenizer:
        new = new_special_tokens(tokens, existing=self._specials)
        return WordTokenizer(
            self.words,
            self.lowercase,
            self.nfkc,
            self.lookup_name,
            [*self._specials, *new],
        )

    def encode(
        self,
        text: str,
        add_bos: bool = False,
        add_eos: bool = False,
        allowed_special: AllowedSpecial = (),
    ) -> list[int]:
        """Ids of the pre-tokens of the normalised ``text``; unknown ones are ``UNK`` (1).

        An added special token's string is ordinary text unless ``allowed_special`` names
        it (a set of strings, or ``"all"``); then it is found in the text before
        normalisation and becomes its id.
        """
        allowed = resolve_allowed(allowed_special, self._specials)
        ids = encode_with_specials(text, allowed, self._specials, self.encode_ordinary)
        if add_bos:
            ids.insert(0, BOS)
        if add_eos:
            ids.append(EOS)
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of the pre-tokens of the normalised ``text``, with no special token handling."""
        return self._lookup.lookup_many(pre_tokenize(self.normalize(text)), UNK)

    def decode(self, ids: Sequence[int], keep_special: bool = False) -> str:
        """Join the tokens of ``ids``. PAD, BOS and EOS are dropped unless ``keep_special``;
        ``UNK`` always shows as ``"<unk>"``. An id outside the vocabulary is a ValueError."""
        table = self._shown if keep_special else self._skipped
        ids = list(ids)
        n = len(table)
        try:
            if ids and (min(ids) < 0 or max(ids) >= n):
                raise IndexError
            return "".join([table[i] for i in ids])
        except (IndexError, TypeError):
            pos, bad = next((p, i) for p, i in enumerate(ids) if not is_token_id(i, n))
            raise ValueError(
                f"id {bad!r} at position {pos} is not a token id of this tokenizer "
                f"(valid ids are integers 0..{n - 1})"
            ) from None

    # ---- helpers --------------------------------------------------------------------------

    @property
    def words(self) -> list[str]:
        """The vocabulary's words in id order (ids 4, 5, ...), without the special tokens."""
        return self._itos[len(SPECIAL_TOKENS) : len(self._itos) - len(self._specials)]

    def token_to_id(self, token: str) -> int | None:
        """The id of a token (special tokens included), or None if it is not in the vocabulary."""
        found = self._lookup.lookup(token)
        return self._specials.get(token) if found is None else found

    def id_to_token(self, id: int) -> str:
        if not is_token_id(id, self.vocab_size):
            raise ValueError(f"id {id!r} is outside this vocabulary (0..{self.vocab_size - 1})")
        return self._itos[id]

    def __eq__(self, other: object) -> bool:
        # The lookup strategy is left out on purpose: every strategy gives the same ids.
        if not isinstance(other, WordTokenizer):
            return NotImplemented
        return (self._itos, self._specials, self.lowercase, self.nfkc) == (
            other._itos,
            other._specials,
            other.lowercase,
            other.nfkc,
        )

    def __repr__(self) -> str:
        specials = f", special_tokens={list(self._specials)}" if self._specials else ""
        return (
            f"WordTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase}, "
            f"nfkc={self.nfkc}, lookup={self.lookup_name!r}{specials})"
        )

    # ---- files ----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        n_words = len(self._itos) - len(self._specials)
        data = {
            "kind": self.kind,
            "version": FORMAT_VERSION,
            "lowercase": self.lowercase,
            "nfkc": self.nfkc,
            "vocab": self._itos[:n_words],  # position = id; the first four are PAD UNK BOS EOS
        }
        if self._specials:  # ids after the vocab, in this order
            data.update(version=2, special_tokens=list(self._specials))
        return data

    @classmethod
    def from_dict(
        cls, data: dict, source: str = "tokenizer data", lookup: str = "hash"
    ) -> WordTokenizer:
        """Rebuild from ``to_dict`` output; ``source`` names the file in error messages."""
        check_header(data, cls.kind, VERSIONS, source)
        vocab = data.get("vocab")
        flags = data.get("lowercase", False), data.get("nfkc", False)
        if not isinstance(vocab, list) or not all(isinstance(f, bool) for f in flags):
            raise ValueError(
                f"{source} is corrupt: 'vocab' must be a list of tokens and "
                "'lowercase'/'nfkc' booleans"
            )
        if tuple(vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f"{source} is corrupt: its vocabulary must start with the special tokens "
                f"{list(SPECIAL_TOKENS)}, found {vocab[: len(SPECIAL_TOKENS)]}"
            )
        specials = read_special_list(data, source)
        try:
            return cls(vocab[len(SPECIAL_TOKENS) :], *flags, lookup=lookup, special_tokens=specials)
        except ValueError as e:
            raise ValueError(f"{source} is corrupt: {e}") from None

    def save(self, directory: str | Path) -> Path:
        return save_json_tokenizer(directory, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, lookup: str = "hash") -> WordTokenizer:
        file, data = read_tokenizer_json(path)
        return cls.from_dict(data, source=str(file), lookup=lookup)


def _check_caps(vocab_size: int | None, min_frequency: int) -> None:
    def is_int(x: object) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    if not is_int(min_frequency) or min_frequency < 1:
        raise ValueError(f"min_frequency must be an integer >= 1, got {min_frequency!r}")
    if vocab_size is not None and (not is_int(vocab_size) or vocab_size < 5):
        raise ValueError(
            f"vocab_size must be an integer >= 5 (the 4 special tokens "
            f"{', '.join(SPECIAL_TOKENS)} plus one word) or None for no cap, got {vocab_size!r}"
        )


def normalize(text: str, lowercase: bool = False, nfkc: bool = False) -> str:
    """NFKC first (it can produce capitals, e.g. "Ⓐ" -> "A"), then lowercase."""
    if nfkc:
        text = unicodedata.normalize("NFKC", text)
    if lowercase:
        text = text.lower()
    return text


def count_pre_tokens(text: str, progress: bool = False) -> Counter[str]:
    """How often each pre-token occurs in ``text`` (counted chunk by chunk behind a tqdm bar)."""
    from tqdm.auto import tqdm

    counts: Counter[str] = Counter()
    with tqdm(
        total=len(text), unit="char", unit_scale=True, desc="counting", disable=not progress
    ) as bar:
        for chunk in _chunks(text):
            counts.update(pre_tokenize(chunk))
            bar.update(len(chunk))
    return counts


def _chunks(text: str) -> Iterator[str]:
    """Slices of ``text`` cut only between a non-space and a space character.

    Every pre-token is all whitespace or all non-whitespace, so such a cut is always a
    pre-token boundary, and counting chunk by chunk equals counting the whole text.
    """
    boundary = regex.compile(r"\S(?=\s)")
    start = 0
    while start < len(text):
        m = boundary.search(text, start + _CHUNK)
        end = m.end() if m else len(text)
        yield text[start:end]
        start = end
