"""Applying learned merges to one chunk: the lowest-ranked pair first, leftmost among equals.

Two implementations of that one rule, held equal by the tests (and to tiktoken and HF):

- ``merge_scan`` keeps the ranks of all adjacent pairs in a list and per step takes its
  ``min`` and ``index`` (C loops), splices, and recomputes the two neighbours. A step
  costs O(n), so a chunk of n bytes costs O(n^2); for the short chunks of ordinary text
  (a word, a number) nothing in Python is faster.
- ``merge_long`` handles long chunks (a base64 blob, a minified file, a million ``x`` in a
  hostile prompt) in O(n log n). Tokens form a doubly linked list over the positions where
  they start, and each rank has a bucket of the positions where its pair occurs. The lowest
  rank with a bucket comes off a heap; its positions are visited left to right, each merged
  if its pair is still there (an earlier merge may have taken a part, as in ``a a a``). A
  merge files the two new pairs beside it under their ranks. Those ranks are higher in any
  tokenizer whose tokens are only used by later merges (every trained one: a token exists
  before a merge can use it), so a rank's bucket is finished in one sweep. If a new pair
  ranks lower, the sweep stops and the rest of the bucket goes back on the heap, so the
  result is the same for any merge list.

``made[r]`` is the token merge ``r`` makes; ``rank`` gives a pair's rank, keyed by the tuple
``(a, b)`` in ``merge_scan`` (``map`` over ``zip`` builds its list without a Python loop) and
by the int ``a << 32 | b`` in ``merge_long`` (faster to hash; ``int_ranks`` converts).

>>> rank, made = {(97, 97): 0, (256, 256): 1}, [256, 257]   # a a -> 256, 256 256 -> 257
>>> merge_scan([97] * 5, rank, made), merge_long([97] * 5, int_ranks(rank), made)
([257, 97], [257, 97])
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from itertools import groupby, repeat
from operator import lshift, or_

_SHIFT = 32  # token ids stay below 2**32, so a << 32 | b names the pair (a, b)


def int_ranks(rank: dict[tuple[int, int], int]) -> dict[int, int]:
    """The same ranks keyed by ``a << 32 | b``, as ``merge_long`` reads them."""
    return {a << _SHIFT | b: r for (a, b), r in rank.items()}


def merge_scan(ids: list[int], rank: dict[tuple[int, int], int], made: list[int]) -> list[int]:
    """Merge ``ids`` (in place) by rescanning the pair ranks every step: O(n^2), fast when short."""
    none = len(made)  # the rank of a pair no merge joins: above every real rank
    get = rank.get
    ranks = list(map(get, zip(ids, ids[1:]), repeat(none)))
    while ranks:
        r = min(ranks)
        if r == none:
            break
        i = ranks.index(r)
        new = made[r]
        ids[i : i + 2] = (new,)
        del ranks[i]
        if i > 0:
            ranks[i - 1] = get((ids[i - 1], new), none)
        if i < len(ranks):
            ranks[i] = get((new, ids[i + 1]), none)
    return ids


def merge_long(ids: list[int], rank: dict[int, int], made: list[int]) -> list[int]:
    """Merge ``ids`` rank by rank over a linked list: O(n log n) for any chunk.

    ``tok[i]`` is the token starting at byte position ``i`` (-1 once merged into its left
    neighbour), ``nxt[i]`` the next live position (``n`` past the end), ``prv[i]`` the
    previous one (-1 before the start). A merge keeps the left position, so positions stay
    in text order and sorting a bucket is "leftmost first".
    """
    n = len(ids)
    tok = list(ids)
    nxt = list(range(1, n + 1))
    prv = list(range(-1, n - 1))
    get, none = rank.get, len(made)
    # Every pair's rank, then the positions grouped by rank: all C loops (map, sort, groupby).
    ranks = list(map(get, map(or_, map(lshift, tok, repeat(_SHIFT)), tok[1:]), repeat(none)))
    by_rank = sorted(range(n - 1), key=ranks.__getitem__)  # stable: positions stay in order
    buckets = {r: list(g) for r, g in groupby(by_rank, ranks.__getitem__) if r != none}
    todo = list(buckets)  # the ranks that have a bucket, lowest first
    heapify(todo)
    while todo:
        r = heappop(todo)
        positions = buckets.pop(r)
        positions.sort()  # appended in runs of increasing position: timsort merges them fast
        new = made[r]
        for at, i in enumerate(positions):
            a = tok[i]
            if a < 0:
                continue  # merged into its left neighbour since it was filed
            j = nxt[i]
            # A rank names one pair, and merges only lengthen tokens, so the pair at i has
            # rank r now exactly when it is the pair that was filed here.
            if j == n or get(a << _SHIFT | tok[j]) != r:
                continue
            tok[i], tok[j] = new, -1
            k = nxt[i] = nxt[j]
            lower = False
            if k < n:
                prv[k] = i
                if (rk := get(new << _SHIFT | tok[k])) is not None:
                    if (bucket := buckets.get(rk)) is None:
                        buckets[rk] = [i]
                        heappush(todo, rk)
                    else:
                        bucket.append(i)
                    lower = rk < r
            if (h := prv[i]) >= 0 and (rh := get(tok[h] << _SHIFT | new)) is not None:
                if (bucket := buckets.get(rh)) is None:
                    buckets[rh] = [h]
                    heappush(todo, rh)
                else:
                    bucket.append(h)
                lower = lower or rh < r
            if lower:  # a lower rank now applies first: finish this bucket after it
                if rest := positions[at + 1 :]:
                    buckets[r] = rest
                    heappush(todo, r)
                break
    return [t for t in tok if t >= 0]
