"""``DataConfig``: where a run's text comes from and how it becomes tokens.

>>> DataConfig(data="markov:order=2", samples=500).val_fraction
0.1
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_VAL_FRACTION = 0.1  # the last tenth of the tokens is held out for validation


@dataclass
class DataConfig:
    data: str = "stdlib-docs"  # a UTF-8 text file, "stdlib-docs" (built in) or a language spec
    samples: int = 10_000  # language spec: how many samples to generate
    data_seed: int = 0  # language spec: the seed of the generated samples
    val_fraction: float = DEFAULT_VAL_FRACTION  # the last fraction of the tokens held out
    tokenizer: str = "char"  # "char", "word", "bpe" (trained on the data) or a saved one's dir
    vocab_size: int | None = None  # word/bpe vocabulary (bpe: 512); char: keep the most frequent

    def __post_init__(self) -> None:
        if not isinstance(self.data, str) or not self.data.strip():
            raise ValueError(f"data ({self.data!r}) must name a file, a language or stdlib-docs")
        for name in ("samples", "data_seed"):
            value, least = getattr(self, name), 1 if name == "samples" else 0
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} ({value!r}) must be an integer >= {least}")
        v = self.val_fraction
        if not isinstance(v, int | float) or isinstance(v, bool) or not 0.0 <= v < 1.0:
            raise ValueError(f"val_fraction ({v!r}) must be in [0, 1)")
        if not isinstance(self.tokenizer, str) or not self.tokenizer:
            raise ValueError(f"tokenizer ({self.tokenizer!r}) must be char, word, bpe or a dir")
        s = self.vocab_size
        if s is not None and (not isinstance(s, int) or isinstance(s, bool) or s < 1):
            raise ValueError(f"vocab_size ({s!r}) must be a positive integer (or None)")
