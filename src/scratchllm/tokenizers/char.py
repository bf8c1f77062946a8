"""Character-level tokenizer: one id per Unicode code point.

The vocabulary is the sorted set of characters seen in a training corpus, so
ids are stable and predictable: character ``c`` gets its rank among the
vocabulary's code points. A tokenizer built with ``unk=True`` has one more id,
``vocab_size - 1``, for ``<unk>``; every character outside the vocabulary
encodes to it and it decodes to U+FFFD (the Unicode replacement character).
Without ``unk`` an unknown character is a ``ValueError`` naming it and its
position.

>>> tok = CharTokenizer.train("hello")
>>> tok.encode("hello")          # vocabulary: e=0, h=1, l=2, o=3
[1, 0, 2, 2, 3]
>>> tok.decode([3, 2, 0])
'ole'
>>> CharTokenizer.train("hello", unk=True).encode("hex")   # <unk> is id 4
[1, 0, 4]

Special tokens come after every other id (``<unk>`` included) and only from
``allowed_special``; typed as text they are just their characters:

>>> chat = CharTokenizer.train("hello<|>").with_special_tokens(["<|h|>"])
>>> chat.encode("<|h|>"), chat.encode("<|h|>", allowed_special="all")
([0, 6, 3, 6, 1], [7])
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

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

UNK_TOKEN = "<unk>"
UNK_TEXT = "\ufffd"  # what <unk> decodes to
# Version 2 adds "special_tokens"; a tokenizer without them is still written as version 1,
# byte for byte as before, so the hashes of datasets made with it stay valid.
FORMAT_VERSION = 1
VERSIONS = (1, 2)

_UTF32 = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"  # native order for cast("I")
_CHUNK = 1 << 20  # characters per progress-bar step while training


class UnknownCharacterError(ValueError):
    """A character the vocabulary lacks (and no ``<unk>`` to read it as): ``char`` at
    ``position``. Callers that know the user's way out (a flag, a command) say it instead
    of the Python advice in the message."""

    def __init__(self, message: str, char: str, position: int, vocab_size: int) -> None:
        super().__init__(message)
        self.char, self.position, self.vocab_size = char, position, vocab_size

    @property
    def what(self) -> str:
        """The problem without the advice: "character 'Z' (U+005A) at position 3"."""
        return f"character {self.char!r} (U+{ord(self.char):04X}) at position {self.position}"


class CharTokenizer(Tokenizer):
    """Maps each character of its vocabulary to an id (see the module docstring)."""

    kind = "char"

    def __init__(self, chars: Iterable[str], unk: bool = False, special_tokens: Iterable[str] = ()):
        """``chars`` in id order; ``special_tokens`` get the ids after them (and ``<unk>``)."""
        chars = list(chars)
        for i, c in enumerate(chars):
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(
                    f"vocabulary entry {i} is {c!r}: a character vocabulary holds single "
                    "characters (strings of length 1)"
                )
        if len(set(chars)) != len(chars):
            dupes = sorted(c for c, n in Counter(chars).items() if n > 1)
            raise ValueError(f"vocabulary repeats characters {dupes!r}; each must appear once")
        if not chars:
            raise ValueError("a character vocabulary needs at least one character")
        self.unk = unk
        specials = new_special_tokens(special_tokens, existing=())
        self._itos: list[str] = chars + ([UNK_TOKEN] if unk else []) + specials
        self._stoi: dict[str, int] = {c: i for i, c in enumerate(chars)}
        first = len(chars) + unk
        self._specials: dict[str, int] = {t: first + k for k, t in enumerate(specials)}
        # str.translate does the per-character dictionary lookup in C: each character becomes
        # the code point equal to its id, and the UTF-32 bytes of that string *are* the ids.
        self._table: dict[int, str] = {ord(c): chr(i) for i, c in enumerate(chars)}
        # Decoding indexes this list; <unk> shows as the replacement character.
        self._decode_list: list[str] = chars + ([UNK_TEXT] if unk else []) + specials

    # ---- building -------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str,
        unk: bool = False,
        vocab_size: int | None = None,
        progress: bool = False,
    ) -> CharTokenizer:
        """Build the vocabulary from ``text``: its distinct characters, sorted by code point.

        ``vocab_size`` (counting ``<unk>``) keeps only the most frequent characters (ties go
        to the smaller code point); dropping any needs ``unk=True`` so they still encode.
        ``progress`` shows a tqdm bar over the corpus.
        """
        check_training_text(text)
        if vocab_size is None:
            chars: set[str] = set()
            for chunk in _chunks(text, progress):
                chars.update(chunk)
            return cls(sorted(chars), unk=unk)

        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise ValueError(f"vocab_size must be an integer or None, got {vocab_size!r}")
        room = vocab_size - (1 if unk else 0)
        if room < 1:
            raise ValueError(
                f"vocab_size ({vocab_size}) leaves no room for characters"
                f"{' after <unk>' if unk else ''}; use at least {2 if unk else 1}"
            )
        counts: Counter[str] = Counter()
        for chunk in _chunks(text, progress):
            counts.update(chunk)
        if len(counts) > room and not unk:
            raise ValueError(
                f"the text has {len(counts)} distinct characters but vocab_size is {vocab_size}; "
                "pass unk=True (CLI: --unk) to map the rarest to <unk>, or raise vocab_size"
            )
        ranked = sorted(counts, key=lambda c: (-counts[c], c))[:room]
        return cls(sorted(ranked), unk=unk)

    # ---- the contract ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    @property
    def unk_id(self) -> int | None:
        """The id of ``<unk>`` (right after the characters), or None when there is none."""
        return len(self._stoi) if self.unk else None

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token string -> id (a copy); ``<unk>`` is not one (text produces it)."""
        return dict(self._specials)

    def with_special_tokens(self, tokens: Iterable[str]) -> CharTokenizer:
        new = new_special_tokens(tokens, existing=self._specials)
        return CharTokenizer(self.chars, self.unk, [*self._specials, *new])

    def encode(self, text: str, allowed_special: AllowedSpecial = ()) -> list[int]:
        """Ids of the characters of ``text``; unknown ones are ``<unk>`` or a ValueError.

        A special token's string is ordinary text unless ``allowed_special`` names it
        (a set of strings, or ``"all"``): then it becomes its id, never split.
        """
        allowed = resolve_allowed(allowed_special, self._specials)
        return encode_with_specials(text, allowed, self._specials, self.encode_ordinary)

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of the characters of ``text``, with no special token handling."""
        table = self._table
        unknown = set(text).difference(self._stoi)
        if unknown:
            if not self.unk:
                pos, ch = next((i, c) for i, c in enumerate(text) if c in unknown)
                raise UnknownCharacterError(
                    f"character {ch!r} (U+{ord(ch):04X}) at position {pos} is not in the "
                    f"vocabulary of {self.vocab_size} characters; retrain on text that "
                    "contains it, or build the tokenizer with unk=True to map it to <unk>",
                    ch,
                    pos,
                    self.vocab_size,
                )
            table = {**table, **dict.fromkeys(map(ord, unknown), chr(self.unk_id))}
        return list(memoryview(text.translate(table).encode(_UTF32, "surrogatepass")).cast("I"))

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (``<unk>`` becomes U+FFFD); an unknown id is a ValueError."""
        ids = list(ids)
        n = len(self._decode_list)
        try:
            if ids and (min(ids) < 0 or max(ids) >= n):
                raise IndexError
            return "".join([self._decode_list[i] for i in ids])
        except (IndexError, TypeError):
            pos, bad = next((p, i) for p, i in enumerate(ids) if not is_token_id(i, n))
            raise ValueError(
                f"id {bad!r} at position {pos} is not a token id of this tokenizer "
                f"(valid ids are integers 0..{n - 1})"
            ) from None

    # ---- helpers --------------------------------------------------------------------------

    def token_to_id(self, token: str) -> int | None:
        """The id of a character, ``"<unk>"`` or a special token; None if there is none."""
        if token == UNK_TOKEN and self.unk:
            return self.unk_id
        return self._stoi.get(token, self._specials.get(token))

    def id_to_token(self, id: int) -> str:
        """The character (or ``"<unk>"``, or the special token) with this id."""
        if not is_token_id(id, self.vocab_size):
            raise ValueError(f"id {id!r} is outside this vocabulary (0..{self.vocab_size - 1})")
        return self._itos[id]

    @property
    def chars(self) -> list[str]:
        """The vocabulary's characters in id order (without ``<unk>``)."""
        return self._itos[: len(self._stoi)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CharTokenizer):
            return NotImplemented
        return self._itos == other._itos and self.unk == other.unk

    def __repr__(self) -> str:
        specials = f", special_tokens={list(self._specials)}" if self._specials else ""
        return f"CharTokenizer(vocab_size={self.vocab_size}, unk={self.unk}{specials})"

    # ---- files ----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        data = {"kind": self.kind, "version": FORMAT_VERSION, "unk": self.unk, "vocab": self.chars}
        if self._specials:  # ids after the characters and <unk>, in this order
            data.update(version=2, special_tokens=list(self._specials))
        return data

    @classmethod
    def from_dict(cls, data: dict, source: str = "tokenizer data") -> CharTokenizer:
        """Rebuild from ``to_dict`` output; ``source`` names the file in error messages."""
        check_header(data, cls.kind, VERSIONS, source)
        vocab, unk = data.get("vocab"), data.get("unk", False)
        if not isinstance(vocab, list) or not isinstance(unk, bool):
            raise ValueError(
                f"{source} is corrupt: 'vocab' must be a list of characters and 'unk' a boolean"
            )
        specials = read_special_list(data, source)
        try:
            return cls(vocab, unk=unk, special_tokens=specials)
        except ValueError as e:
            raise ValueError(f"{source} is corrupt: {e}") from None

    def save(self, directory: str | Path) -> Path:
        return save_json_tokenizer(directory, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        file, data = read_tokenizer_json(path)
        return cls.from_dict(data, source=str(file))


def _chunks(text: str, progress: bool) -> Iterator[str]:
    """``text`` in slices, behind a tqdm bar (in characters) when ``progress`` is set."""
    from tqdm.auto import tqdm

    with tqdm(
        total=len(text), unit="char", unit_scale=True, desc="counting", disable=not progress
    ) as bar:
        for start in range(0, len(text), _CHUNK):
            chunk = text[start : start + _CHUNK]
            yield chunk
            bar.update(len(chunk))
