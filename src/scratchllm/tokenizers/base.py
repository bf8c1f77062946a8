"""The one shape every tokenizer has.

``encode(str) -> list[int]``, ``decode(list[int]) -> str``, ``vocab_size``,
``save(directory)`` writing ``directory/tokenizer.json``, and the class method
``load(path)``. ``scratchllm.tokenizers.load(path)`` reads back whichever kind
was saved (a directory or the tokenizer.json file itself).

Decoding what was encoded gives the text back, for any string the tokenizer
accepts (after its normalisation, for the word tokenizer); what it cannot
accept is a clear ``ValueError``. Nothing here imports torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

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


def tokenizer_file(path: str | Path) -> Path:
    """``path`` itself if it is a file, else ``path/tokenizer.json``."""
    path = Path(path)
    return path / TOKENIZER_FILE if path.is_dir() else path
