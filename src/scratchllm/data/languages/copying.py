"""copy: a random string, a separator, and the same string again, e.g. "cabd|cabd\\n".

The string has exactly ``length`` symbols, uniform over the first ``alphabet`` letters; the
copy is scored (``answer_mask``), the random half cannot be predicted.

Context needed: ``length + 2``. Copying symbol i, the source is exactly length+1 symbols
back, so a window of length+1 symbols holds it, and the separator inside the window says which
position is next. In the first half, a window of length+1 holds the END before the sample, so
the model knows how many symbols are written and when the separator is due. With a window of
only ``length`` symbols, right after the separator the first symbol to copy is out of view.

>>> Copy(length=3, alphabet_size=3).verify("abc|abb\\n").reason
"expected 'c', the copy of position 2"
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import END, Language, RandomSource, Reject, check_rng, param, randbelow

LETTERS = "abcdefghijklmnopqrstuvwxyz"
SEP = "|"


@dataclass(frozen=True)
class Copy(Language):
    name = "copy"
    description = "a random string, '|', the same string again: abcd|abcd"
    context_formula = "length + 2"

    length: int = param(8, 1, 64, "symbols in the string to copy")
    alphabet_size: int = param(4, 2, 26, "letters a, b, c, ... the string uses", key="alphabet")

    @property
    def alphabet(self) -> str:
        return "".join(sorted(END + SEP + LETTERS[: self.alphabet_size]))

    @property
    def context_needed(self) -> int:
        return self.length + 2

    def sample(self, rng: RandomSource) -> str:
        check_rng(rng)
        letters = LETTERS[: self.alphabet_size]
        s = "".join(letters[randbelow(rng, self.alphabet_size)] for _ in range(self.length))
        return f"{s}{SEP}{s}{END}"

    def answer_mask(self, sample: str) -> list[bool]:
        """True on the copy after the separator and on its END; False on the random string."""
        sep = sample.find(SEP)
        if sep < 0:
            raise ValueError(f"{sample!r} has no separator {SEP!r}: it is not a copy sample")
        return [i > sep for i in range(len(sample))]

    # The rule's state: (the string so far, symbols of the copy written so far, or -1 before
    # the separator).

    def _start(self) -> tuple[str, int]:
        return ("", -1)

    def _advance(self, state: tuple[str, int], ch: str):
        s, copied = state
        if copied < 0:
            if ch == SEP:
                if len(s) < self.length:
                    return Reject(f"separator after {len(s)} symbols; the string has {self.length}")
                return (s, 0)
            if len(s) == self.length:
                return Reject(f"the string has {self.length} symbols; expected {SEP!r}")
            return (s + ch, -1)
        if copied == self.length:
            return Reject("the copy is complete; expected the end of the sample")
        if ch != s[copied]:
            return Reject(f"expected {s[copied]!r}, the copy of position {copied}")
        return (s, copied + 1)

    def _end(self, state: tuple[str, int]) -> Reject | None:
        s, copied = state
        if copied < 0:
            return Reject(f"the sample ends before the separator {SEP!r} and the copy")
        if copied < self.length:
            return Reject(f"the copy has {copied} of {self.length} symbols")
        return None

    def _next(self, state: tuple[str, int]) -> dict[str, float]:
        s, copied = state
        if copied < 0:
            if len(s) == self.length:
                return {SEP: 1.0}
            return {ch: 1.0 / self.alphabet_size for ch in LETTERS[: self.alphabet_size]}
        return {s[copied] if copied < self.length else END: 1.0}
