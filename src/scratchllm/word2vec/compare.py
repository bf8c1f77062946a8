"""Ours against gensim: the same corpus, the same settings, several seeds, gensim's evaluators.

For each seed both trainers run (gensim with one worker, so both use one core), and both
sets of vectors are scored by gensim's own ``KeyedVectors`` evaluators (ours loaded into a
``KeyedVectors``): Spearman correlation on WordSim353 and SimLex-999, and accuracy on the
Google analogies (``questions-words.txt``), each restricted to the pairs or questions whose
words are all in the vocabulary (gensim's default), with that *coverage* reported beside it.
Neighbourhoods are compared directly: the top-10 neighbours of the most frequent words,
ours against gensim's, beside gensim's against gensim's own other seeds.

Needs gensim (a test dependency; nothing else in this package imports it). Used by
``benchmarks/bench_word2vec.py`` and the slow test in ``tests/word2vec``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import Word2VecConfig
from .trainer import train
from .vectors import WordVectors

SCORES = ("wordsim353", "simlex999", "analogies")


def gensim_data(name: str) -> Path:
    """A file of gensim's shipped test data (``lee_background.cor``, ``wordsim353.tsv``, ...)."""
    import gensim

    return Path(gensim.__file__).parent / "test" / "test_data" / name


def evaluate(wv: WordVectors) -> dict[str, tuple[float, float]]:
    """{score: (value, coverage)} through gensim's evaluators; coverage is the fraction of
    pairs (questions) whose words all have vectors."""
    import logging

    from gensim.models import KeyedVectors

    logging.getLogger("gensim").setLevel(logging.ERROR)  # its evaluators log every section
    kv = KeyedVectors(wv.vector_size)
    kv.add_vectors(wv.words, wv.vectors.astype(np.float32))
    out = {}
    for name, file in (("wordsim353", "wordsim353.tsv"), ("simlex999", "simlex999.txt")):
        _, spearman, oov_percent = kv.evaluate_word_pairs(str(gensim_data(file)))
        value = float(spearman.statistic) if np.isfinite(spearman.statistic) else float("nan")
        out[name] = (value, 1 - oov_percent / 100)
    accuracy, sections = kv.evaluate_word_analogies(str(gensim_data("questions-words.txt")))
    asked = sum(len(s["correct"]) + len(s["incorrect"]) for s in sections[:-1])
    out["analogies"] = (float(accuracy), asked / _analogy_count())
    return out


def _analogy_count() -> int:
    lines = gensim_data("questions-words.txt").read_text(encoding="utf-8").splitlines()
    return sum(1 for line in lines if line and not line.startswith(":"))


def neighbour_overlap(a: WordVectors, b: WordVectors, queries: Sequence[str], topn=10) -> float:
    """Mean fraction of shared words among the ``topn`` cosine neighbours of each query."""

    def top(wv: WordVectors) -> list[set[str]]:
        rows = [wv.index[q] for q in queries]
        scores = wv.unit[rows] @ wv.unit.T  # (Q, V)
        scores[np.arange(len(rows)), rows] = -np.inf  # not the query itself
        best = np.argpartition(-scores, topn, axis=1)[:, :topn]
        return [{wv.words[i] for i in r} for r in best]

    return float(np.mean([len(x & y) / topn for x, y in zip(top(a), top(b), strict=True)]))


@dataclass
class Comparison:
    config: Word2VecConfig
    seeds: list[int]
    ours: list[dict[str, tuple[float, float]]] = field(default_factory=list)
    gensim: list[dict[str, tuple[float, float]]] = field(default_factory=list)
    ours_seconds: list[float] = field(default_factory=list)
    gensim_seconds: list[float] = field(default_factory=list)
    overlap_ours_gensim: float = 0.0  # every (ours seed, other gensim seed) pair
    overlap_gensim_gensim: float = 0.0  # every pair of distinct gensim seeds
    vocab_size: int = 0

    def values(self, side: str, score: str) -> list[float]:
        return [run[score][0] for run in getattr(self, side)]

    def coverage(self, score: str) -> float:
        return self.gensim[0][score][1]

    def spread(self, score: str) -> tuple[float, float]:
        """gensim's seed-to-seed spread: its mean +- 2 standard deviations over the seeds
        (where about 95% of its own runs land)."""
        theirs = self.values("gensim", score)
        mean, sd = statistics.mean(theirs), statistics.stdev(theirs)
        return mean - 2 * sd, mean + 2 * sd

    def within_spread(self, score: str) -> bool:
        """Our mean (over the seeds) inside gensim's spread."""
        low, high = self.spread(score)
        return low <= statistics.mean(self.values("ours", score)) <= high

    @property
    def time_ratio(self) -> float:
        return sum(self.ours_seconds) / sum(self.gensim_seconds)

    @property
    def overlap_ratio(self) -> float:
        return self.overlap_ours_gensim / self.overlap_gensim_gensim


def compare(
    sentences,
    config: Word2VecConfig,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    queries: int = 1000,
) -> Comparison:
    """Train ours and gensim's on ``sentences`` (a re-iterable of word lists) once per seed.

    Our training runs with BLAS limited to one thread, as gensim's with ``workers=1``.
    Neighbour overlap uses the ``queries`` most frequent words.
    """
    from gensim.models import Word2Vec
    from threadpoolctl import threadpool_limits

    result = Comparison(config, list(seeds))
    ours_wv, gensim_wv = [], []
    for seed in seeds:
        cfg = Word2VecConfig(**{**config.to_dict(), "seed": seed})
        start = time.perf_counter()
        model = Word2Vec(sentences, workers=1, **_gensim_settings(cfg))
        result.gensim_seconds.append(time.perf_counter() - start)
        gensim_wv.append(WordVectors(model.wv.index_to_key, model.wv.vectors))
        with threadpool_limits(limits=1):
            start = time.perf_counter()
            ours = train(sentences, cfg)
            result.ours_seconds.append(time.perf_counter() - start)
        ours_wv.append(ours.wv)
        if ours.vocab.words != model.wv.index_to_key:
            raise ValueError("the two vocabularies differ: the comparison would be unfair")
        result.ours.append(evaluate(ours.wv))
        result.gensim.append(evaluate(gensim_wv[-1]))
    result.vocab_size = len(ours_wv[0])
    words = ours_wv[0].words[:queries]
    # same-seed pairs are left out: they start from the very same vectors (gensim's
    # initialisation, which ours reproduces), an advantage gensim's own pairs never have
    result.overlap_ours_gensim = float(
        np.mean(
            [
                neighbour_overlap(o, g, words)
                for i, o in enumerate(ours_wv)
                for j, g in enumerate(gensim_wv)
                if i != j
            ]
        )
    )
    result.overlap_gensim_gensim = float(
        np.mean(
            [
                neighbour_overlap(g, h, words)
                for i, g in enumerate(gensim_wv)
                for h in gensim_wv[i + 1 :]
            ]
        )
    )
    return result


def _gensim_settings(cfg: Word2VecConfig) -> dict:
    """Our config as gensim's keyword arguments (``batch_size`` has no gensim counterpart)."""
    settings = cfg.to_dict()
    settings.pop("batch_size")
    return {**settings, "hs": 0}


def table(rows: Sequence[tuple[str, Comparison]]) -> str:
    """A Markdown table: per corpus and model, each score's mean +- sd for both, coverage,
    whether ours is within gensim's spread, the neighbour overlaps and the time ratio."""
    head = (
        "| corpus, model | score (coverage) | gensim mean ± sd [min, max] | ours mean ± sd "
        "| ours within gensim ± 2 sd |\n|---|---|---|---|---|\n"
    )
    lines = []
    for name, c in rows:
        for score in SCORES:
            g, o = c.values("gensim", score), c.values("ours", score)
            within = "yes" if c.within_spread(score) else "NO"
            lines.append(
                f"| {name} | {score} ({c.coverage(score):.0%}) | {_ms(g)} "
                f"[{min(g):.3f}, {max(g):.3f}] | {_ms(o)} | {within} |"
            )
        lines.append(
            f"| {name} | top-10 neighbour overlap | {c.overlap_gensim_gensim:.3f} (gensim vs "
            f"gensim) | {c.overlap_ours_gensim:.3f} (ours vs gensim) | {c.overlap_ratio:.2f}x |"
        )
        lines.append(
            f"| {name} | wall time, s per run | {statistics.mean(c.gensim_seconds):.2f} "
            f"| {statistics.mean(c.ours_seconds):.2f} | {c.time_ratio:.2f}x |"
        )
    return head + "\n".join(lines)


def _ms(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"
