"""The vocabulary: which words get vectors, in which order, how often each is kept and drawn.

Everything here follows gensim 4.4 (``Word2Vec.build_vocab``) to the word and the count, so
both trainers see the same vocabulary on the same sentences (``tests/word2vec`` checks it):

1. **Count** the words, sentence by sentence, in order of first appearance. With
   ``max_vocab_size``, whenever a sentence leaves more than that many distinct words, every
   word seen fewer than ``m`` times is forgotten, with ``m`` = 1, 2, 3, ... on successive
   prunings (so the first pruning removes nothing; gensim's ``utils.prune_vocab``). A word
   forgotten and seen again starts counting afresh, as a new word.
2. **Keep** the words seen at least ``min_count`` times. ``max_final_vocab=N`` raises that
   threshold to one more than the count of the (N+1)-th most frequent word, so at most N
   words stay and a tie is never split (fewer than N may stay).
3. **Order** by count, most frequent first. Ties go to the word that first appeared *later*
   (gensim's ``sort_by_descending_frequency`` sorts with ``np.lexsort((-index, -count))``):

   >>> build_vocab([["b", "a", "c", "a", "b", "d", "c", "e"]], min_count=1).words
   ['c', 'a', 'b', 'e', 'd']

Subsampling keeps an occurrence of a word of count ``f`` with word2vec.c's probability
``(sqrt(f / t) + 1) * t / f`` (capped at 1), ``t = sample * total`` where ``total`` counts the
kept words' occurrences. Noise words are drawn in proportion to ``count ** 0.75`` through a
cumulative table scaled to ``2**31 - 1``, searched by bisection (``noise_table``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

NOISE_DOMAIN = 2**31 - 1  # gensim's make_cum_table domain


@dataclass
class Vocab:
    words: list[str]  # index order: most frequent first
    counts: np.ndarray  # (V,) int64, occurrences of each word in the corpus
    total_words: int  # all words of the corpus, dropped ones included (the lr schedule's clock)
    sentences: int  # non-empty and empty sentences alike, as gensim's corpus_count
    min_count: int = 1  # the threshold applied: min_count, or what max_final_vocab raised it to
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if len(self.words) != len(self.counts):
            raise ValueError(f"{len(self.words)} words but {len(self.counts)} counts")
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("the vocabulary repeats a word")

    def __len__(self) -> int:
        return len(self.words)

    @property
    def retained_words(self) -> int:
        """Occurrences of vocabulary words in the corpus (the words training sees)."""
        return int(self.counts.sum())


def count_words(
    sentences: Iterable[list[str]], max_vocab_size: int | None = None
) -> tuple[dict[str, int], int, int]:
    """(counts in order of first appearance, total words, sentences), pruned as gensim does."""
    counts: dict[str, int] = {}
    total = n_sentences = 0
    min_reduce = 1
    for sentence in sentences:
        n_sentences += 1
        total += len(sentence)
        for word in sentence:
            counts[word] = counts.get(word, 0) + 1
        if max_vocab_size is not None and len(counts) > max_vocab_size:
            counts = {w: n for w, n in counts.items() if n >= min_reduce}
            min_reduce += 1
    return counts, total, n_sentences


def build_vocab(
    sentences: Iterable[list[str]],
    min_count: int = 5,
    max_vocab_size: int | None = None,
    max_final_vocab: int | None = None,
) -> Vocab:
    """Count, keep and order the words of ``sentences`` (see the module docstring)."""
    raw, total, n_sentences = count_words(sentences, max_vocab_size)
    if not raw:
        raise ValueError("the corpus has no words: nothing to train on")
    threshold = effective_min_count(raw, min_count, max_final_vocab)
    kept = [(w, n) for w, n in raw.items() if n >= threshold]
    if not kept:
        raise ValueError(
            f"no word occurs at least min_count={min_count} times (the most frequent of the "
            f"{len(raw)} distinct words occurs {max(raw.values())} times); lower min_count"
        )
    counts = np.array([n for _, n in kept], dtype=np.int64)
    order = np.lexsort((-np.arange(len(kept)), -counts))  # count down, then later-first
    return Vocab([kept[i][0] for i in order], counts[order], total, n_sentences, threshold)


def effective_min_count(raw: dict[str, int], min_count: int, max_final_vocab: int | None) -> int:
    """``min_count``, raised so that at most ``max_final_vocab`` words reach it."""
    if max_final_vocab is None or max_final_vocab >= len(raw):
        return min_count
    by_count = sorted(raw.values(), reverse=True)
    return max(by_count[max_final_vocab] + 1, min_count)


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """(V,) float64: the chance that one occurrence of each word survives subsampling.

    ``sample`` < 1 is a fraction of the retained corpus; ``sample`` >= 1 (gensim's shorthand)
    downsamples every word seen more than about ``sample`` times; 0 keeps everything.

    >>> keep_probabilities(np.array([1000, 10, 1]), sample=0.01).round(4)   # t = 10.11
    array([0.1107, 1.    , 1.    ])
    """
    counts = np.asarray(counts, dtype=np.float64)
    if sample == 0:
        return np.ones_like(counts)
    t = sample * counts.sum() if sample < 1 else float(int(sample * (3 + np.sqrt(5)) / 2))
    return np.minimum((np.sqrt(counts / t) + 1) * (t / counts), 1.0)


def noise_table(counts: np.ndarray, exponent: float = 0.75) -> np.ndarray:
    """(V,) uint32 cumulative table of ``count ** exponent``, ending at ``NOISE_DOMAIN``.

    Word ``i`` is drawn when a uniform integer ``x`` in ``[0, table[-1])`` has
    ``table[i - 1] < x <= table[i]``: bisection (``np.searchsorted``) finds it.

    >>> noise_table(np.array([16, 1]), exponent=0.5)    # weights 4 : 1
    array([1717986918, 2147483647], dtype=uint32)
    """
    weights = np.asarray(counts, dtype=np.float64) ** float(exponent)
    cumulative = np.cumsum(weights)  # left to right, as gensim's Python loop adds them
    return np.round(cumulative / cumulative[-1] * NOISE_DOMAIN).astype(np.uint32)


def noise_buckets(
    table: np.ndarray, per_word: int = 64, most: int = 2**20
) -> tuple[int, np.ndarray]:
    """A lookup that turns ``draw_noise``'s bisection into a gather or two.

    The draws ``x`` with ``x >> shift == j`` form bucket ``j``; ``first[j]`` is the first word
    whose table entry is ``>= j << shift``. A draw's word lies in ``first[j] .. first[j + 1]``,
    so starting at ``first[j]`` and stepping on while the entry is below ``x`` finds the very
    word bisection finds, in as many steps as the bucket holds table entries: with about
    ``per_word`` buckets per word (at most ``most``) nearly always none or one.

    >>> table = noise_table(np.array([16, 1]), exponent=0.5)
    >>> shift, first = noise_buckets(table)
    >>> shift, first[:3], len(first)
    (24, array([0, 0, 0]), 129)
    """
    top = int(table[-1])
    buckets = min(per_word * len(table), most)
    shift = max(0, (top // buckets).bit_length())
    starts = np.arange((top >> shift) + 2, dtype=np.int64) << shift
    return shift, np.searchsorted(table, starts, side="left")


def pick_noise(x: np.ndarray, table: np.ndarray, buckets=None) -> np.ndarray:
    """The words of uniform integers ``x`` in ``[0, table[-1])``: ``np.searchsorted(table, x)``
    (gensim's ``bisect_left``), through ``noise_buckets(table)`` if given (the same words,
    ~9x faster on the Lee corpus's table)."""
    if buckets is None:
        return np.searchsorted(table, x, side="left")
    shift, first = buckets
    words = first[x >> shift]
    while True:
        below = table[words] < x  # never at the last word: its entry is table[-1] > x
        if not below.any():
            return words
        words += below


def draw_noise(
    rng: np.random.Generator, table: np.ndarray, size: int | tuple[int, ...], buckets=None
) -> np.ndarray:
    """Noise word indices of shape ``size``, drawn in proportion to the table's increments
    (``buckets`` from ``noise_buckets(table)`` makes it faster, not different)."""
    x = rng.integers(0, int(table[-1]), size=size, dtype=np.int64)
    return pick_noise(x, table, buckets)
