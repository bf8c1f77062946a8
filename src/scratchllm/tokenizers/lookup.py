"""Three ways to find a token's id in a vocabulary, one protocol: ``lookup(token) -> id | None``.

They give identical answers and differ only in cost per lookup for a vocabulary of ``n``
tokens, which ``benchmarks/bench_vocab_lookup.py`` measures:

- ``"linear"``: scan the token list front to back: O(n).
- ``"binary"``: bisect the sorted tokens, then read the id from a parallel array: O(log n).
- ``"hash"``: a dict (hash table) from token to id: O(1) on average.

>>> vocab = ["the", "cat", "sat"]                  # id = position
>>> [make_lookup(name, vocab).lookup("sat") for name in LOOKUPS]
[2, 2, 2]
>>> make_lookup("binary", vocab).lookup("dog") is None
True

All three do their inner loop in C (``list.index``, ``bisect``, ``dict``), so the benchmark
compares the algorithms rather than Python's interpreter overhead.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence


class VocabLookup:
    """Token -> id over a fixed vocabulary, where ``tokens[i]`` has id ``i``."""

    name: str

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if len(set(tokens)) != len(tokens):
            dupes = sorted(t for t, n in Counter(tokens).items() if n > 1)
            raise ValueError(f"vocabulary lists {dupes!r} more than once; each token needs one id")
        self._build(tokens)

    def _build(self, tokens: list[str]) -> None:
        raise NotImplementedError

    def lookup(self, token: str) -> int | None:
        """The id of ``token``, or None if it is not in the vocabulary."""
        raise NotImplementedError

    def lookup_many(self, tokens: Iterable[str], default: int) -> list[int]:
        """Ids of ``tokens``, with ``default`` for those not in the vocabulary."""
        ids = []
        for token in tokens:
            i = self.lookup(token)
            ids.append(default if i is None else i)
        return ids


class LinearScanLookup(VocabLookup):
    """Compare ``token`` with each vocabulary entry in id order until one matches: O(n)."""

    name = "linear"

    def _build(self, tokens: list[str]) -> None:
        self._tokens = tokens  # position is the id

    def lookup(self, token: str) -> int | None:
        try:
            return self._tokens.index(token)  # a scan from the front, in C
        except ValueError:
            return None


class BinarySearchLookup(VocabLookup):
    """Bisect the code-point-sorted tokens, then read the id from a parallel array: O(log n).

    >>> lk = BinarySearchLookup(["the", "cat", "sat"])
    >>> lk._sorted, lk._ids          # sorted tokens and, beside each, its id
    (['cat', 'sat', 'the'], [1, 2, 0])
    """

    name = "binary"

    def _build(self, tokens: list[str]) -> None:
        order = sorted(range(len(tokens)), key=tokens.__getitem__)
        self._sorted = [tokens[i] for i in order]
        self._ids = order

    def lookup(self, token: str) -> int | None:
        k = bisect_left(self._sorted, token)
        if k < len(self._sorted) and self._sorted[k] == token:
            return self._ids[k]
        return None


class HashLookup(VocabLookup):
    """A dict from token to id: one hash and (on average) one comparison, O(1)."""

    name = "hash"

    def _build(self, tokens: list[str]) -> None:
        self._ids = {t: i for i, t in enumerate(tokens)}

    def lookup(self, token: str) -> int | None:
        return self._ids.get(token)

    def lookup_many(self, tokens: Iterable[str], default: int) -> list[int]:
        get = self._ids.get  # the hot loop of WordTokenizer.encode: one C call per token
        return [get(t, default) for t in tokens]


LOOKUPS: dict[str, type[VocabLookup]] = {
    cls.name: cls for cls in (LinearScanLookup, BinarySearchLookup, HashLookup)
}


def make_lookup(name: str, tokens: Sequence[str]) -> VocabLookup:
    """Build the strategy called ``name`` ("linear", "binary" or "hash") over ``tokens``."""
    try:
        cls = LOOKUPS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown vocabulary lookup {name!r}; choose one of {', '.join(LOOKUPS)}"
        ) from None
    return cls(tokens)
