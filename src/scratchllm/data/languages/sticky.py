"""sticky: runs of characters from classes (lower, upper, digit) that must last k+1 symbols.

A sample is a sequence of runs; a run is consecutive symbols of one class. Every run, the last
one included, has at least k+1 symbols (strict: exactly k+1), and neighbouring runs have
different classes. The run length is the state a model must track.

The sampling process, exactly (so ``next_distribution`` is exact):

- the first symbol: a uniform class, a uniform symbol of it;
- while the run is shorter than k+1: another uniform symbol of the same class;
- once the run has k+1 symbols: END with probability ``stop``; otherwise, strict: switch to a
  uniform other class; non-strict: switch with probability ``switch``, else continue the run.

Context needed: ``k + 2``. The rule at each step depends on the current class, on whether the
run already has k+1 symbols, and on whether the sample has started. A window of the last k+1
symbols decides all three: if they are all one class, the run is long enough (in strict mode:
exactly k+1); otherwise the class change (or the END) in the window shows the run length; an
END in the window also marks the start. So an n-gram with n - 1 = k + 1 suffices. With k
symbols it fails: k symbols of one class may be a whole run of k (it must continue) or the tail
of a run of k+1 (it may switch or end); for k = 0 the unigram cannot forbid an empty sample.

>>> lang = Sticky(k=1, classes=2, size=2)
>>> lang.verify("aaBB\\n").valid, lang.verify("aB\\n").reason
(True, 'switch from lower to upper after a run of 1; runs need at least k+1 = 2 symbols')
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .base import END, Language, RandomSource, Reject, check_rng, param, randbelow

CLASS_NAMES = ("lower", "upper", "digit")
CLASS_SYMBOLS = ("abcdefghij", "ABCDEFGHIJ", "0123456789")


@dataclass(frozen=True)
class Sticky(Language):
    name = "sticky"
    description = "runs of lower/upper/digit symbols; each run lasts at least (strict: exactly) k+1"
    context_formula = "k + 2"

    k: int = param(2, 0, 16, "a run of one class lasts at least k+1 symbols")
    classes: int = param(3, 2, 3, "number of classes: lower, upper, digit")
    size: int = param(3, 1, 10, "symbols per class (a, b, c, ... / A, B, ... / 0, 1, ...)")
    strict: bool = param(False, False, True, "runs last exactly k+1 symbols")
    stop: float = param(0.2, 0.0, 1.0, "chance to end the sample once the run may end")
    switch: float = param(0.5, 0.0, 1.0, "chance to switch class once allowed (non-strict)")

    @property
    def alphabet(self) -> str:
        return "".join(sorted(END + "".join(s[: self.size] for s in self._class_symbols())))

    @property
    def context_needed(self) -> int:
        return self.k + 2

    def char_class(self, ch: str) -> str:
        """The class of a symbol: ``"lower"``, ``"upper"``, ``"digit"``, or ``"end"`` for END."""
        if ch == END:
            return "end"
        if ch in self._class_index:
            return CLASS_NAMES[self._class_index[ch]]
        raise ValueError(f"{ch!r} is not a symbol of {self.spec} (alphabet {self.alphabet!r})")

    def sample(self, rng: RandomSource) -> str:
        check_rng(rng)
        out: list[str] = []
        cls, run = randbelow(rng, self.classes), 0
        while True:
            out.append(self._class_symbols()[cls][randbelow(rng, self.size)])
            run += 1
            if run < self.k + 1:
                continue  # the run is too short to end or switch
            if rng.random() < self.stop:
                return "".join(out) + END
            if self.strict or rng.random() < self.switch:
                other = randbelow(rng, self.classes - 1)
                cls, run = other + (other >= cls), 0  # a uniform class other than cls

    # The rule's state: (class index or None before the first symbol, length of the run).

    def _start(self) -> tuple[int | None, int]:
        return (None, 0)

    def _advance(self, state: tuple[int | None, int], ch: str) -> tuple[int, int] | Reject:
        cls, run = state
        new = self._class_index[ch]
        if cls is None:
            return (new, 1)
        if new == cls:
            if self.strict and run == self.k + 1:
                return Reject(
                    f"a run of {CLASS_NAMES[cls]} already has k+1 = {self.k + 1} symbols "
                    "(strict: exactly k+1); expected a switch or the end"
                )
            return (cls, run + 1)
        if run < self.k + 1:
            return Reject(
                f"switch from {CLASS_NAMES[cls]} to {CLASS_NAMES[new]} after a run of {run}; "
                f"runs need at least k+1 = {self.k + 1} symbols"
            )
        return (new, 1)

    def _end(self, state: tuple[int | None, int]) -> Reject | None:
        cls, run = state
        if cls is None:
            return Reject("empty sample: a sample has at least one run")
        if run < self.k + 1:
            return Reject(
                f"the last run of {CLASS_NAMES[cls]} has {run} symbol{'s' * (run != 1)}; "
                f"runs need at least k+1 = {self.k + 1}"
            )
        return None

    def _next(self, state: tuple[int | None, int]) -> dict[str, float]:
        cls, run = state
        symbols = [s[: self.size] for s in self._class_symbols()]
        if cls is None:
            p = 1.0 / (self.classes * self.size)
            return {ch: p for group in symbols for ch in group}
        if run < self.k + 1:
            return {ch: 1.0 / self.size for ch in symbols[cls]}
        go = 1.0 - self.stop
        p_switch = go if self.strict else go * self.switch
        dist = {END: self.stop}
        per_other = p_switch / ((self.classes - 1) * self.size)
        for c, group in enumerate(symbols):
            for ch in group:
                if c != cls:
                    dist[ch] = per_other
                elif not self.strict:
                    dist[ch] = (go - p_switch) / self.size
        return dist

    def _class_symbols(self) -> tuple[str, ...]:
        return CLASS_SYMBOLS[: self.classes]

    @functools.cached_property
    def _class_index(self) -> dict[str, int]:
        """Symbol -> index of its class (END and foreign symbols are not in it)."""
        return {ch: c for c, s in enumerate(self._class_symbols()) for ch in s[: self.size]}
