"""addition: "a+b=c" problems, e.g. "37+45=82\\n"; a model is scored on the answer c.

``a`` and ``b`` are uniform over 0 .. 10**digits - 1, written without leading zeros; ``c`` is
their sum, written most significant digit first, or least significant first with
``reverse=true`` (the order in which carries are computed, which is easier to learn).

Context needed: ``3*digits + 3`` (``3*digits + 2`` with ``reverse=true``). Before the answer
every step is decided by a short look back (a number has at most ``digits`` digits, a leading 0
ends it). The answer needs the operands, and the farthest look back is to the first digit of a
(or to the END before a shorter a), since the answer may depend on it:

- forward, the END after c: "0+10=10" is finished but "90+10=10" goes on with "0" (digits=2);
  the window spans a (D symbols, counting the END before a short a), "+", b (D), "=" and c so
  far (D): 3D + 2 symbols, so n = 3D + 3;
- reversed, digit D-1 of c (the first that sees a's leading digit): "0+10=0" goes on with "1",
  "10+10=0" with "2"; the span is D + 1 + D + 1 + (D - 1) = 3D + 1, so n = 3D + 2.

No step needs more, since the answer's own digits tell the rest (c has at most D + 1 digits and
a longer c than the operands reveals the carry). The tests hold these figures exactly by
enumerating every valid prefix for digits = 1 and 2.

>>> lang = Addition(digits=2)
>>> lang.verify("37+45=83\\n").reason
"expected '2': 37+45=82"
>>> "".join("^" if m else " " for m in lang.answer_mask("37+45=82\\n"))
'      ^^^'
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import END, Language, RandomSource, Reject, check_rng, param, randbelow
from .numbers import next_digit_counts

PLUS, EQUALS = "+", "="


@dataclass(frozen=True)
class Addition(Language):
    name = "addition"
    description = "a+b=c problems; only the answer c (and its END) is scored"
    context_formula = "3*digits + 3 (reverse: 3*digits + 2)"

    digits: int = param(2, 1, 6, "most digits of each operand")
    reverse: bool = param(False, False, True, "write the answer least significant digit first")

    @property
    def alphabet(self) -> str:
        return "".join(sorted(END + PLUS + EQUALS + "0123456789"))

    @property
    def context_needed(self) -> int:
        return 3 * self.digits + (2 if self.reverse else 3)

    def sample(self, rng: RandomSource) -> str:
        check_rng(rng)
        a, b = randbelow(rng, 10**self.digits), randbelow(rng, 10**self.digits)
        return f"{a}{PLUS}{b}{EQUALS}{self._answer(a, b)}{END}"

    def answer_mask(self, sample: str) -> list[bool]:
        """True on the answer after "=" and on its END; False on the question."""
        eq = sample.find(EQUALS)
        if eq < 0:
            raise ValueError(f"{sample!r} has no {EQUALS!r}: it is not an addition problem")
        return [i > eq for i in range(len(sample))]

    def _answer(self, a: int, b: int) -> str:
        c = str(a + b)
        return c[::-1] if self.reverse else c

    # The rule's state: (part 0/1/2 for a/b/c, a so far, b so far, c so far).

    def _start(self) -> tuple[int, str, str, str]:
        return (0, "", "", "")

    def _advance(self, state: tuple[int, str, str, str], ch: str):
        part, a, b, c = state
        if part == 2:
            if ch in (PLUS, EQUALS):
                return Reject(f"{ch!r} inside the answer; expected a digit or the end")
            want = self._answer(int(a), int(b))
            if len(c) == len(want):
                return Reject(f"the answer {a}+{b}={want} is complete; expected the end")
            if ch != want[len(c)]:
                return Reject(f"expected {want[len(c)]!r}: {a}{PLUS}{b}{EQUALS}{want}")
            return (part, a, b, c + ch)
        name, t = ("a", a) if part == 0 else ("b", b)
        mark = PLUS if part == 0 else EQUALS
        if ch in (PLUS, EQUALS):
            if ch != mark:
                return Reject(f"expected a digit or {mark!r} in {name}, got {ch!r}")
            if not t:
                return Reject(f"{name} is empty: expected a digit before {ch!r}")
            return (part + 1, a, b, c)
        if t == "0":
            return Reject(f"no leading zeros: after {name} = 0 comes {mark!r}")
        if len(t) == self.digits:
            return Reject(f"{name} has at most {self.digits} digits; expected {mark!r}")
        return (0, a + ch, b, c) if part == 0 else (1, a, b + ch, c)

    def _end(self, state: tuple[int, str, str, str]) -> Reject | None:
        part, a, b, c = state
        if part < 2:
            return Reject("the problem is unfinished: expected a+b=c")
        want = self._answer(int(a), int(b))
        if c != want:
            return Reject(f"the answer {c!r} is unfinished: {a}{PLUS}{b}{EQUALS}{want}")
        return None

    def _next(self, state: tuple[int, str, str, str]) -> dict[str, float]:
        part, a, b, c = state
        if part == 2:
            want = self._answer(int(a), int(b))
            return {want[len(c)] if len(c) < len(want) else END: 1.0}
        counts = next_digit_counts(a if part == 0 else b, 0, 10**self.digits - 1)
        if "" in counts:  # the operand may end here
            counts[PLUS if part == 0 else EQUALS] = counts.pop("")
        total = sum(counts.values())
        return {ch: n / total for ch, n in counts.items()}
