"""``Word2VecConfig``: every knob of a word2vec run, named and defaulted as in gensim 4.4.

>>> cfg = Word2VecConfig(sg=1, epochs=10)
>>> Word2VecConfig.from_dict(cfg.to_dict()) == cfg
True
>>> Word2VecConfig(window=0)
Traceback (most recent call last):
...
ValueError: window must be an integer >= 1, got 0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class Word2VecConfig:
    # -- the model --------------------------------------------------------------------------
    vector_size: int = 100  # dimensions of each word vector
    sg: int = 0  # 1: skip-gram (a word predicts its neighbours); 0: CBOW (neighbours predict it)
    cbow_mean: int = 1  # CBOW only: 1 averages the context vectors, 0 sums them
    window: int = 5  # largest distance between a word and a neighbour it is trained with
    shrink_windows: bool = True  # draw each word's window from 1..window, as word2vec.c does
    negative: int = 5  # noise words per positive example
    ns_exponent: float = 0.75  # noise distribution: unigram counts to this power

    # -- the vocabulary ---------------------------------------------------------------------
    min_count: int = 5  # drop words seen fewer times than this
    max_vocab_size: int | None = None  # while counting, prune rare words above this many types
    max_final_vocab: int | None = None  # keep at most this many words (raising min_count)
    sample: float = 1e-3  # subsampling threshold for frequent words (0: off)

    # -- optimisation -----------------------------------------------------------------------
    alpha: float = 0.025  # learning rate at the start
    min_alpha: float = 0.0001  # learning rate at the end (linear decay over all epochs)
    epochs: int = 5  # passes over the corpus
    seed: int = 1  # initial vectors, subsampling, windows and noise words all derive from it
    batch_size: int = 512  # at most this many centre words per vectorised update (ours; see
    #                        trainer.batch_centres for how the corpus can lower it)

    def __post_init__(self) -> None:
        for name in ("vector_size", "window", "epochs", "batch_size"):
            _check_int(self, name, 1)
        for name in ("negative", "min_count", "seed"):
            _check_int(self, name, 0)
        for name in ("max_vocab_size", "max_final_vocab"):
            if getattr(self, name) is not None:
                _check_int(self, name, 1)
        if self.sg not in (0, 1) or isinstance(self.sg, bool):
            raise ValueError(f"sg must be 0 (CBOW) or 1 (skip-gram), got {self.sg!r}")
        if self.cbow_mean not in (0, 1) or isinstance(self.cbow_mean, bool):
            raise ValueError(f"cbow_mean must be 0 (sum) or 1 (mean), got {self.cbow_mean!r}")
        if self.negative < 1:
            raise ValueError(
                "negative must be >= 1: this word2vec trains with negative sampling only "
                "(no hierarchical softmax)"
            )
        for name in ("sample", "alpha", "min_alpha", "ns_exponent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                raise ValueError(f"{name} must be a number, got {value!r}")
        if self.sample < 0:
            raise ValueError(f"sample must be >= 0 (0 turns subsampling off), got {self.sample}")
        if self.alpha <= 0 or self.min_alpha < 0 or self.min_alpha > self.alpha:
            raise ValueError(
                f"need 0 <= min_alpha <= alpha and alpha > 0, got alpha={self.alpha}, "
                f"min_alpha={self.min_alpha}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Word2VecConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown word2vec settings {unknown}; known: {sorted(names)}")
        return cls(**data)


def _check_int(cfg: Word2VecConfig, name: str, low: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
