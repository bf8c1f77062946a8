"""Decimal numbers written digit by digit: which next digits are possible, and how often.

The counting and addition languages draw integers uniformly from a range and write them in
decimal without leading zeros. Their exact next-symbol distribution needs, for a partly written
number ``t``, how many integers of the range start with ``t`` followed by each digit.

>>> next_digit_counts("1", 0, 123)   # 1, 10..19, 100..123
{'': 1, '0': 11, '1': 11, '2': 5, '3': 1, '4': 1, '5': 1, '6': 1, '7': 1, '8': 1, '9': 1}
"""

from __future__ import annotations

DIGITS = "0123456789"


def count_with_prefix(t: str, lo: int, hi: int) -> int:
    """How many integers in ``lo..hi`` (``lo >= 0``) are written starting with ``t``."""
    if t == "":
        return max(0, hi - lo + 1)
    if t[0] == "0":
        return int(t == "0" and lo <= 0 <= hi)
    total = 0
    base = int(t)
    for extra in range(len(str(hi)) - len(t) + 1):
        scale = 10**extra
        first, last = base * scale, (base + 1) * scale - 1
        total += max(0, min(last, hi) - max(first, lo) + 1)
    return total


def next_digit_counts(t: str, lo: int, hi: int) -> dict[str, int]:
    """For integers in ``lo..hi`` starting with ``t``: how many continue with each digit, and
    (key ``""``) how many are ``t`` itself. Zero counts are left out."""
    out: dict[str, int] = {}
    if t and (t[0] != "0" or t == "0") and lo <= int(t) <= hi:
        out[""] = 1
    for d in DIGITS:
        n = count_with_prefix(t + d, lo, hi)
        if n:
            out[d] = n
    return out
