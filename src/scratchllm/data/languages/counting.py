"""counting: comma-separated consecutive integers of a fixed width, e.g. "532,533,534\\n".

All numbers have exactly ``digits`` digits (for one digit: 0..9). The process, exactly:

- the first number: uniform over the ``digits``-digit numbers except the largest (99...9), so a
  second number always fits;
- then the next integer, and again, until the sample ends: after the second number or later,
  END with probability 1/(count-1) (so ``count`` numbers on average, a little fewer when a
  sample runs into 99...9, after which it must end). ``count`` is at least 3: with 2, the
  sampler would never write a third number that the rule allows, and a model trained on it
  would learn a different language.

Context needed: ``digits + 2``. Numbers and separators alternate with period digits+1, so a
window of digits+1 symbols always holds the separator before the current number, which says
which digit comes next and whether the current number is the first (an END separator). Digit j
of m+1 depends only on digits j.. of m (the carry comes from below), and exactly those are in
the window together with the j digits already written. So an n-gram with n - 1 = digits + 1
suffices. With one symbol less, right after a comma the window misses the first digit of the
previous number, which the first digit of the next one copies: "…,34," and "…,44," look alike.

>>> Counting(digits=2).verify("98,99,100\\n").reason
'99 is the largest 2-digit number: the sample ends here'
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import END, Language, RandomSource, Reject, check_rng, param, randbelow
from .numbers import next_digit_counts

SEP = ","


@dataclass(frozen=True)
class Counting(Language):
    name = "counting"
    description = "comma-separated consecutive integers of fixed width: 532,533,534"
    context_formula = "digits + 2"

    digits: int = param(2, 1, 6, "digits of every number")
    count: int = param(4, 3, 50, "mean count of numbers in a sample (at least 2 each)")

    @property
    def lo(self) -> int:
        """The smallest number (10**(digits-1), or 0 for one digit)."""
        return 10 ** (self.digits - 1) if self.digits > 1 else 0

    @property
    def hi(self) -> int:
        """The largest number (99...9); it has no successor, so a sample must end there."""
        return 10**self.digits - 1

    @property
    def alphabet(self) -> str:
        return "".join(sorted(END + SEP + "0123456789"))

    @property
    def context_needed(self) -> int:
        return self.digits + 2

    def sample(self, rng: RandomSource) -> str:
        check_rng(rng)
        p_end = 1.0 / (self.count - 1)
        numbers = [self.lo + randbelow(rng, self.hi - self.lo)]  # lo..hi-1
        while True:
            numbers.append(numbers[-1] + 1)
            if numbers[-1] == self.hi or rng.random() < p_end:
                return SEP.join(map(str, numbers)) + END

    # The rule's state: (how many numbers were completed, the last completed one, digits of the
    # current number so far).

    def _start(self) -> tuple[int, int | None, str]:
        return (0, None, "")

    def _advance(self, state: tuple[int, int | None, str], ch: str):
        done, prev, t = state
        if ch == SEP:
            if not t:
                return Reject(f"expected a digit, not {SEP!r}")
            if len(t) < self.digits:
                return Reject(f"the number {t!r} is unfinished: numbers have {self.digits} digits")
            if int(t) == self.hi:
                return Reject(
                    f"{t} is the largest {self.digits}-digit number: the sample ends here"
                )
            return (done + 1, int(t), "")
        if len(t) == self.digits:
            after = "a comma" if done == 0 else "a comma or the end of the sample"
            if done > 0 and int(t) == self.hi:
                after = "the end of the sample"
            return Reject(f"numbers have exactly {self.digits} digits; expected {after}")
        t += ch
        if prev is None:
            if t[0] == "0" and self.digits > 1:
                return Reject(f"a {self.digits}-digit number does not start with 0")
            if t == str(self.hi):
                return Reject(
                    f"the first number cannot be {self.hi}: a sample has at least two numbers "
                    f"and {self.hi} has no {self.digits}-digit successor"
                )
            return (done, prev, t)
        want = str(prev + 1)
        if want[len(t) - 1] != ch:
            return Reject(f"expected {want[len(t) - 1]!r}: after {prev} comes {want}")
        return (done, prev, t)

    def _end(self, state: tuple[int, int | None, str]) -> Reject | None:
        done, _, t = state
        if t == "" and done == 0:
            return Reject("empty sample: a sample has at least two numbers")
        if len(t) < self.digits:
            return Reject(f"the number {t!r} is unfinished: numbers have {self.digits} digits")
        if done == 0:
            return Reject("a sample has at least two numbers")
        return None

    def _next(self, state: tuple[int, int | None, str]) -> dict[str, float]:
        done, prev, t = state
        if prev is None and len(t) < self.digits:  # inside the first number: count the starts
            counts = next_digit_counts(t, self.lo, self.hi - 1)
            counts.pop("", None)  # a first number is never shorter than `digits`
            total = sum(counts.values())
            return {d: n / total for d, n in counts.items()}
        if len(t) < self.digits:
            return {str(prev + 1)[len(t)]: 1.0}
        if done == 0:
            return {SEP: 1.0}
        if int(t) == self.hi:
            return {END: 1.0}
        p_end = 1.0 / (self.count - 1)
        return {END: p_end, SEP: 1.0 - p_end}
