"""The one shape every tokenizer has.

``encode(str) -> list[int]``, ``decode(list[int]) -> str``, ``vocab_size``,
``save(directory)`` writing ``directory/tokenizer.json``, and the class method
``load(path)``. ``scratchllm.tokenizers.load(path)`` reads back whichever kind
was saved (a directory or the tokenizer.json file itself).

Decoding what was encoded gives the text back, for any string the tokenizer
accepts (after its normalisation, for the word tokenizer); what it cannot
accept is a clear ``ValueError``. Nothing here imports torch.

**Special tokens** (every kind): ``with_special_tokens(["<|user|>", ...])`` gives a copy
with those strings as reserved ids after every existing id, so the ids a model already
knows keep their meaning. Text never produces a special id: ``encode_ordinary(text)``
treats a special's string as plain text, and ``encode(text, allowed_special=...)``
turns only the specials it names (or ``"all"``) into their ids, as tiktoken does.
``special_tokens`` maps each string to its id; ``decode`` writes a special as its string.
"""

from __future__ import annotations

import json
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Literal

import regex

from scratchllm.files import output_directory, write_bytes

TOKENIZER_FILE = "tokenizer.json"


class Tokenizer(ABC):
    kind: str  # "char", "word" or "bpe": how tokenizer.json says which class reads it

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: list[int]) -> str: ...

    @abstractmethod
    def save(self, directory: str | Path) -> Path:
        """Write ``directory/tokenizer.json`` (creating the directory); return its path."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a tokenizer saved by ``save`` (a directory or its tokenizer.json)."""

    @property
    @abstractmethod
    def special_tokens(self) -> dict[str, int]:
        """Special token string -> id: the reserved ids that text never produces."""

    @abstractmethod
    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` as plain text: a special token's string is never its id."""

    @abstractmethod
    def with_special_tokens(self, tokens: Iterable[str]) -> Tokenizer:
        """A copy with ``tokens`` added as special tokens, at ids after every existing id.

        Tokens this tokenizer already has as specials keep their ids; the others get
        ``vocab_size``, ``vocab_size + 1``, ... in the order given.
        """


AllowedSpecial = Literal["all", "none_raise"] | Collection[str]


def new_special_tokens(tokens: Iterable[str], existing: Collection[str]) -> list[str]:
    """The strings of ``tokens`` that are not in ``existing``, in order, checked.

    >>> new_special_tokens(["<|user|>", "<|end|>"], existing=["<|end|>"])
    ['<|user|>']
    """
    if isinstance(tokens, str):
        raise ValueError(
            f"special tokens must be a list of strings, got the string {tokens!r} "
            f"(write [{tokens!r}])"
        )
    tokens = list(tokens)
    for t in tokens:
        if not isinstance(t, str) or not t:
            raise ValueError(f"special tokens must be non-empty strings, got {t!r}")
    dupes = sorted({t for t in tokens if tokens.count(t) > 1})
    if dupes:
        raise ValueError(f"special tokens {dupes} are listed more than once")
    return [t for t in tokens if t not in existing]


def resolve_allowed(allowed_special: AllowedSpecial, specials: Collection[str]) -> set[str]:
    """The set of special strings an ``allowed_special`` argument names (tiktoken's forms).

    ``"all"``: every special; ``"none_raise"`` or an empty collection: none; otherwise a
    collection of special strings, each of which must exist.
    """
    if allowed_special == "all":
        return set(specials)
    if allowed_special == "none_raise":
        return set()
    if isinstance(allowed_special, str):
        raise ValueError(
            f"allowed_special must be 'all', 'none_raise' or a set of special token "
            f"strings, got the string {allowed_special!r} (wrap one token in a set)"
        )
    allowed = set(allowed_special)
    unknown = allowed - set(specials)
    if unknown:
        raise ValueError(
            f"allowed_special names {sorted(unknown)}, which are not special tokens of this "
            f"tokenizer (it has {sorted(specials)})"
        )
    return allowed


def specials_regex(specials: Iterable[str]) -> regex.Pattern:
    """A regex whose ``split`` gives ``[text, special, text, ..., text]``."""
    # Longest first, so "<|end|>" never wins over "<|end|>x" when both are specials.
    alternatives = sorted(specials, key=len, reverse=True)
    return regex.compile("(" + "|".join(map(regex.escape, alternatives)) + ")")


def encode_with_specials(
    text: str,
    allowed: Collection[str],
    specials: dict[str, int],
    encode_text: Callable[[str], list[int]],
) -> list[int]:
    """Encode ``text``, turning the ``allowed`` specials' strings into their ids.

    The text between them goes through ``encode_text`` (never across a special).
    """
    if not allowed:
        return encode_text(text)
    ids: list[int] = []
    for k, piece in enumerate(specials_regex(allowed).split(text)):
        if k % 2:
            ids.append(specials[piece])
        elif piece:
            ids += encode_text(piece)
    return ids


def tokenizer_file(path: str | Path) -> Path:
    """``path`` itself if it is a file, else ``path/tokenizer.json``."""
    path = Path(path)
    return path / TOKENIZER_FILE if path.is_dir() else path


def read_tokenizer_json(path: str | Path) -> tuple[Path, dict]:
    """Read and parse a tokenizer.json, turning every way it can be broken into a clear error.

    Returns ``(file, data)``. A missing file is a ``FileNotFoundError``; an empty,
    non-UTF-8, truncated or otherwise invalid JSON file, or JSON that is not an
    object, is a ``ValueError``. Each message names the file.
    """
    file = tokenizer_file(path)
    if not file.is_file():
        where = (
            f"{path} has no {TOKENIZER_FILE}" if Path(path).is_dir() else f"{file} does not exist"
        )
        raise FileNotFoundError(
            f"no tokenizer found: {where}; pass a directory written by tok.save(dir) "
            f"(or `scratchllm tokenizer train`) or the {TOKENIZER_FILE} inside it"
        )
    raw = file.read_bytes()
    if not raw.strip():
        raise ValueError(f"{file} is empty; it is not a saved tokenizer (re-save or re-train it)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{file} is not a tokenizer.json: not UTF-8 text (bad byte at offset {e.start})"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{file} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
            "the file may be truncated or corrupt: re-save or re-train the tokenizer"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{file} holds a JSON {type(data).__name__}, not a tokenizer object; "
            "it is not a tokenizer.json"
        )
    return file, data


def check_training_text(text: str) -> None:
    """Raise a clear ``ValueError`` unless ``text`` is a str with more than whitespace in it."""
    if not isinstance(text, str):
        raise ValueError(f"training text must be a str, got {type(text).__name__}")
    if not text.strip():
        what = "empty" if not text else f"only whitespace ({len(text)} characters)"
        raise ValueError(f"training text is {what}; give the tokenizer a real corpus")


def is_token_id(i: object, n: int) -> bool:
    """Whether ``i`` is an integer id in ``0..n-1`` (NumPy integers count; bools do not)."""
    if isinstance(i, bool):
        return False
    try:
        return 0 <= operator.index(i) < n
    except TypeError:
        return False


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented UTF-8 JSON a person can read (non-ASCII kept as is).

    A lone surrogate (legal in a Python str, not in UTF-8) falls back to ``\\udXXX`` escapes.
    """
    text = json.dumps(data, ensure_ascii=False, indent=1)
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raw = json.dumps(data, indent=1).encode("ascii")
    write_bytes(path, raw + b"\n")  # a reader never sees half a tokenizer


def save_json_tokenizer(directory: str | Path, data: dict) -> Path:
    """Write ``data`` as ``directory/tokenizer.json`` (creating the directory); its path."""
    directory = output_directory(directory)
    path = directory / TOKENIZER_FILE
    write_json(path, data)
    return path


def check_header(data: dict, kind: str, versions: Collection[int], source: str) -> None:
    """Refuse a tokenizer.json of another kind or format version, naming ``source``."""
    if data.get("kind") != kind:
        raise ValueError(f"{source} holds a {data.get('kind')!r} tokenizer, not {kind!r}")
    if data.get("version") not in versions:
        raise ValueError(
            f"{source} has {kind} tokenizer format version {data.get('version')!r}; "
            f"this scratchllm reads versions {', '.join(map(str, versions))}"
        )


def read_special_list(data: dict, source: str) -> list[str]:
    """The ``"special_tokens"`` list of one of our tokenizer.json files (absent: none)."""
    specials = data.get("special_tokens", [])
    if not isinstance(specials, list) or not all(isinstance(t, str) and t for t in specials):
        raise ValueError(f"{source} is corrupt: 'special_tokens' must be a list of strings")
    return specials
