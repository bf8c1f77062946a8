"""Learning BPE merges over bytes, with pair counts updated incrementally.

The textbook loop (count every adjacent pair in the corpus, merge the most
frequent, repeat) recounts the whole corpus once per merge. Two observations
make it fast:

1. Text repeats. The corpus is first cut into pre-token chunks; we keep each
   *distinct* chunk once, with the number of times it occurs, and weight its
   pairs by that count. Tinyshakespeare has 298k chunks but only 15k distinct.
2. A merge only touches the chunks that contain its pair. We keep an index
   pair -> chunks that contain it, and after merging (a, b) we update the
   counts of the pairs in those chunks alone. The best pair comes from a heap
   whose stale entries are fixed lazily when they surface.

Ties. Among pairs with the same count we take the smallest (left, right),
comparing token ids where the 256 bytes are ordered as Hugging Face's
``BpeTrainer`` orders its initial alphabet (by the code point of their GPT-2
character, see ``bpe_bytes.HF_BYTE_ORDER``) and merged tokens by creation.
That is HF's own rule, so both learn the same merges from the same chunks.

If a merge makes a byte string that is already a token (``ab`` + ``c`` and
later ``a`` + ``bc``), the merge is recorded with the existing token's id and
no new token is made; HF does the same.

>>> merges, vocab = learn_merges({b"aaabdaaabac": 1}, n_tokens=3)
>>> merges
[(97, 97, 256), (97, 98, 257), (256, 257, 258)]
>>> vocab[258]
b'aaab'
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from tqdm.auto import tqdm

from scratchllm.tokenizers.bpe_bytes import HF_BYTE_ORDER

_SHIFT = 32  # a pair (a, b) is the int a << 32 | b: hashes and compares faster than a tuple
_LOW = (1 << _SHIFT) - 1


def learn_merges(
    chunk_counts: Mapping[bytes, int], n_tokens: int, progress: bool = False
) -> tuple[list[tuple[int, int, int]], dict[int, bytes]]:
    """Learn merges until ``n_tokens`` new tokens exist or no pair is left.

    ``chunk_counts`` maps each distinct pre-token chunk (its UTF-8 bytes) to how
    often it occurs. Returns ``(merges, vocab)``: ``merges`` lists ``(left,
    right, new_id)`` in the order learned; ``vocab`` maps every id to its bytes,
    where ids 0..255 are the bytes themselves and new tokens get 256, 257, ...
    """
    # Internally the 256 bytes are renumbered into HF's alphabet order so that comparing
    # pair ints directly gives HF's tie-break; merged tokens (>= 256) keep their ids.
    to_internal = [0] * 256
    for rank, byte in enumerate(HF_BYTE_ORDER):
        to_internal[byte] = rank
    words = [[to_internal[b] for b in chunk] for chunk in chunk_counts]
    counts = list(chunk_counts.values())
    token_bytes = [bytes([b]) for b in HF_BYTE_ORDER]  # internal id -> bytes
    id_of = {t: i for i, t in enumerate(token_bytes)}

    pair_counts: dict[int, int] = {}
    where: dict[int, set[int]] = {}  # pair -> indices of words that contain (or once did) it
    for wi, (word, c) in enumerate(zip(words, counts)):
        for x, y in zip(word, word[1:]):
            p = x << _SHIFT | y
            pair_counts[p] = pair_counts.get(p, 0) + c
            where.setdefault(p, set()).add(wi)
    # Heap entries are -count << 64 | pair: one int sorts by count (descending), then pair.
    heap = [-c << 64 | p for p, c in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int, int]] = []
    bar = tqdm(total=n_tokens, desc="BPE merges", unit="tok", disable=not progress)
    made = 0
    while made < n_tokens and heap:
        entry = heapq.heappop(heap)
        pair = entry & ((1 << 64) - 1)
        count = -(entry >> 64)
        actual = pair_counts.get(pair, 0)
        if actual != count:  # stale: the count changed since this entry was pushed
            if actual > 0:
                heapq.heappush(heap, -actual << 64 | pair)
            continue
        a, b = pair >> _SHIFT, pair & _LOW
        merged = token_bytes[a] + token_bytes[b]
        new = id_of.get(merged)
        if new is None:
            new = len(token_bytes)
            token_bytes.append(merged)
            id_of[merged] = new
            made += 1
            bar.update(1)
        merges.append((a, b, new))
        touched = _apply_merge(words, counts, where.pop(pair), a, b, new, pair_counts, where)
        for p in touched:
            c = pair_counts[p]
            if c > 0:
                heapq.heappush(heap, -c << 64 | p)
    bar.close()

    def public(i: int) -> int:
        return HF_BYTE_ORDER[i] if i < 256 else i

    vocab = {public(i): t for i, t in enumerate(token_bytes)}
    return [(public(a), public(b), public(n)) for a, b, n in merges], vocab


def _apply_merge(
    words: list[list[int]],
    counts: list[int],
    word_ids: set[int],
    a: int,
    b: int,
    new: int,
    pair_counts: dict[int, int],
    where: dict[int, set[int]],
) -> set[int]:
    """Replace (a, b) by ``new`` in the given words, keeping the pair counts and index exact.

    Each occurrence ``l a b r`` becomes ``l new r``: the pairs (l, a), (a, b), (b, r) lose the
    word's count and (l, new), (new, r) gain it. When two occurrences touch (``a b a b``) the
    left one's (new, a) is taken back by the right one, which is what makes it exact.
    Returns the pairs that gained (they need a fresh heap entry); pairs that lost are left
    to the heap's lazy check.
    """
    grown: set[int] = set()
    pair = a << _SHIFT | b
    for wi in word_ids:
        word = words[wi]
        n = len(word)
        if n < 2 or a not in word:
            continue
        c = counts[wi]
        out: list[int] = []
        i = 0
        # Merge left to right, non-overlapping ("a a a" -> "aa a"), as BPE encoding will.
        while i < n:
            x = word[i]
            if x == a and i + 1 < n and word[i + 1] == b:
                pair_counts[pair] -= c
                if out:
                    left = out[-1]
                    pair_counts[left << _SHIFT | a] -= c
                    p = left << _SHIFT | new
                    pair_counts[p] = pair_counts.get(p, 0) + c
                    grown.add(p)
                    where.setdefault(p, set()).add(wi)
                if i + 2 < n:
                    right = word[i + 2]
                    pair_counts[b << _SHIFT | right] -= c
                    p = new << _SHIFT | right
                    pair_counts[p] = pair_counts.get(p, 0) + c
                    grown.add(p)
                    where.setdefault(p, set()).add(wi)
                out.append(new)
                i += 2
            else:
                out.append(x)
                i += 1
        words[wi] = out
    return grown
