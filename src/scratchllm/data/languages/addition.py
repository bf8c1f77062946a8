"""addition: "a+b=c" problems, e.g. "37+45=82\\n"; a model is scored on what follows "=".

**Operands.** ``operands=uniform`` (the default) draws ``a`` and ``b`` uniformly from
0 .. 10**digits - 1, so most operands have ``digits`` digits and a 1-digit one is rare (10 in
10**digits). ``operands=balanced`` first draws each operand's length uniformly from
1 .. digits, then the number uniformly among the numbers of that length (0..9 for one digit,
10**(n-1) .. 10**n - 1 for n), so short operands are as common as long ones. Numbers are written
without leading zeros.

**Answer formats** (``format=``), shown for 37+45 and for 367+158:

- ``plain``: the sum, most significant digit first: ``37+45=82``.
- ``reverse``: least significant first, the order in which carries are computed:
  ``37+45=28`` (``reverse=true`` is an older name for this format).
- ``scratchpad``: one step per digit of the longer operand, least significant first, each
  ``<digit>c<carry>`` (the "A->d , C->c" of Lee et al. 2023, in 3 symbols), steps joined by
  ``;``, then ``|`` and the sum: ``37+45=2c1;8c0|82``, where 7+5+0 = 12 gives digit 2, carry 1
  and 3+4+1 = 8 gives digit 8, carry 0. A missing digit of the shorter operand counts as 0;
  the last carry is the sum's leading 1 when it is 1 (``99+1=0c1;0c1|100``).
- ``detailed``: each step first writes the running operands, the digits still to add (whose
  last digits it adds now; an operand that has run out is empty), then the answer so far and
  the carry: ``<a left>+<b left>,<answer so far>c<carry>``. For 367+158:
  ``367+158=367+158,5c1;36+15,25c1;3+1,525c0|525`` (7+8 = 15: answer so far 5, carry 1; then
  6+5+1 = 12: 25, carry 1; then 3+1+1 = 5: 525, carry 0). Every symbol then depends only on
  the step before it (or the prompt), never on a digit many steps back.

The prompt is everything up to and including the first "="; ``answer_mask`` covers all that
follows (steps, answer and END), ``final_answer_mask`` only the answer after the steps and its
END, and ``final_answer`` reads that answer back for exact-match scoring. ``verify`` checks
every step: a wrong symbol's reason names the step, its place and the arithmetic it should
show. ``grade`` splits a verdict into the final answer and the steps, and names the first wrong
step.

>>> lang = Addition(digits=2)
>>> lang.verify("37+45=83\\n").reason
"expected '2': 37+45=82"
>>> "".join("^" if m else " " for m in lang.answer_mask("37+45=82\\n"))
'      ^^^'
>>> pad = Addition(digits=2, format="scratchpad")
>>> pad.complete("37+45=")
'2c1;8c0|82\\n'
>>> pad.verify("37+45=2c1;8c1|92\\n").reason
"step 2 (tens): expected carry '0', got '1' (3+4+1=8)"
>>> pad.final_answer("37+45=2c1;8c1|82\\n")
'82'
>>> g = pad.grade("37+45=2c1;8c1|82\\n")
>>> g.answer_correct, g.steps_correct, g.first_wrong_step
(True, False, 2)

**Context needed** (the smallest n-gram order that can produce only valid samples; D =
``digits``). Windows that hold an END see the whole sample, so only windows inside a sample
count; an operand's start shows through its first digit when it has D digits, else only
through the separator before it. The tests hold every figure exactly by enumerating every
valid prefix for D = 1 and 2; for D = 3 they check every problem's completion (plain and
reverse), or a sampled corpus and a pair of prefixes that one symbol less cannot tell apart.

- ``plain``: ``3D + 3`` for D <= 2, ``3D + 2`` from D = 3 on. The farthest look back is the
  END after c when a window shows all of a short a but not the END before it: "0+10=10" is
  finished but "90+10=10" goes on with "0" (D = 2). Two such problems have a's that differ by
  y * 10**m (m: the digits of a shown), and for one sum to be the start of the other, 9(a + b)
  + r = y * 10**m with 0 <= r <= 9; with a D-digit b that forces a < 10**(D - 2). So the window
  spans at most max(1, D - 2) digits of a, "+", b (D), "=" and c (D): 3D + 1 symbols for D = 2,
  3D for D >= 3 ("10+1090=1100" ends, "9910+1090=1100" goes on with "0"; D = 4). Every other
  decision needs less (a window that shows a's first digit, or a whole shorter c, decides).
- ``reverse``: ``3D + 2``. Digit D-1 of c is the first that sees a's leading digit: "0+10=0"
  goes on with "1", "10+10=0" with "2"; the span is D + 1 + D + 1 + (D - 1) = 3D + 1.
- ``scratchpad``: ``max(6D - 1, 5D + 1)``. The digit of step D adds a's leading digit (or a 0
  when a is shorter): the window runs from it through "+", b (D), "=" and D - 1 steps of 4
  symbols: D + 1 + D + 1 + 4(D - 1) = 6D - 2 symbols ("0+20=0c0;" goes on with "2",
  "20+20=0c0;" with "4"). A step's carry needs no look back to a (the digit just written,
  b's digit and the carry in fix a's digit). The sum copies the steps' digits in reverse; its
  units digit, in a sum of D + 1 digits, is 4D - 1 + 1 + D = 5D symbols after step 1's digit,
  which is the farthest look back only for D = 1 ("9+9=8c1|1" goes on with "8", "9+4=3c1|1"
  with "3").
- ``detailed``: ``3D + 5`` (``6`` for D = 1). Step 2 copies the operands of step 1 without
  their last digits, and must know where a copy ends: for an a one digit shorter than it can
  be, that means seeing the separator before step 1's a, then a (D - 1), "+", b (D), ",", the
  answer so far (1), "c", the carry, ";" and the copy so far (D - 2): 3D + 4 symbols
  ("66+66=66+66,2c1;" goes on with "6", "6+66=6+66,2c1;" with "+"). Later steps copy shorter
  operands; the copy of the answer so far and the final answer look back at most 2D + 6. With
  D = 1 there is no second step, and the farthest look back is the sum's units digit, copied
  from the step: "6+6=6+6,2c1|1" goes on with "2", "6+8=6+8,4c1|1" with "4".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .base import END, Language, RandomSource, Reject, check_rng, choice, param, randbelow
from .numbers import DIGITS, next_digit_counts

PLUS, EQUALS = "+", "="
STEP, LAST, CARRY, RUN = ";", "|", "c", ","  # between steps, after the last, carry mark, a|b
FORMATS = ("plain", "reverse", "scratchpad", "detailed")
OPERANDS = ("uniform", "balanced")
PLACES = ("units", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands")


@dataclass(frozen=True)
class Grade:
    """One addition sample judged part by part (``Addition.grade``).

    >>> Addition(format="scratchpad").grade("37+45=2c1;8c0|82\\n")
    Grade(valid=True, answer_correct=True, steps_correct=True, first_wrong_step=None, \
position=None, reason='valid')
    """

    valid: bool  # every symbol after the prompt is right: steps, answer and END
    answer_correct: bool  # the final answer (up to END) is the sum, whatever the steps say
    steps_correct: bool | None  # every step is right (None: plain and reverse have no steps)
    first_wrong_step: int | None  # 1 = units; None when every step is right
    position: int | None  # the verdict's first offending index (None when valid)
    reason: str  # the verdict's reason


@dataclass(frozen=True)
class Trace:
    """What follows "=" for one problem (without END), with a label for every symbol."""

    text: str
    labels: tuple[tuple[int, str], ...]  # per symbol: (step, what); step 0 = the final answer
    answer_start: int  # where the final answer begins in ``text``
    sums: tuple[tuple[int, int, int], ...]  # per step: (a's digit, b's digit, carry in)

    @property
    def answer(self) -> str:
        return self.text[self.answer_start :]


def carries(a: int, b: int) -> int:
    """How many columns of a + b produce a carry.

    >>> carries(37, 45), carries(999, 1), carries(12, 34)
    (1, 3, 0)
    """
    n, carry = 0, 0
    while a or b:
        carry = (a % 10 + b % 10 + carry) // 10
        n += carry
        a, b = a // 10, b // 10
    return n


@functools.lru_cache(maxsize=1 << 16)
def trace(a: int, b: int, format: str) -> Trace:
    """The completion of ``a+b=`` in ``format`` (see the module docstring), labelled.

    >>> trace(37, 45, "scratchpad").text, trace(367, 158, "detailed").text
    ('2c1;8c0|82', '367+158,5c1;36+15,25c1;3+1,525c0|525')
    """
    total = str(a + b)
    if format in ("plain", "reverse"):
        text = total if format == "plain" else total[::-1]
        return Trace(text, ((0, "digit"),) * len(text), 0, ())
    sa, sb = str(a), str(b)
    steps = max(len(sa), len(sb))
    parts: list[tuple[str, int, str]] = []  # (symbols, step, what)
    sums = []
    carry = 0
    for i in range(1, steps + 1):
        da = int(sa[-i]) if i <= len(sa) else 0
        db = int(sb[-i]) if i <= len(sb) else 0
        sums.append((da, db, carry))
        carry = (da + db + carry) // 10
        if format == "detailed":
            parts += [
                (sa[: len(sa) - i + 1], i, "digits of a left"),
                (PLUS, i, "'+' (a's digits end)"),
                (sb[: len(sb) - i + 1], i, "digits of b left"),
                (RUN, i, "',' (b's digits end)"),
                (str((a + b) % 10**i).zfill(i), i, "answer so far"),
            ]
        else:
            parts.append((total[-i], i, "digit"))
        parts += [(CARRY, i, "'c' (the carry follows)"), (str(carry), i, "carry")]
        parts.append(
            (STEP, i, "';' (a step follows)") if i < steps else (LAST, i, "'|' (last step)")
        )
    parts.append((total, 0, "digit"))
    text = "".join(p for p, _, _ in parts)
    labels = tuple((step, what) for p, step, what in parts for _ in p)
    return Trace(text, labels, len(text) - len(total), tuple(sums))


@dataclass(frozen=True)
class Addition(Language):
    name = "addition"
    description = "a+b=c problems, plain, reversed or with a scratchpad; what follows '=' is scored"
    context_formula = (
        "plain: 3*digits + 3 (3*digits + 2 from digits=3); reverse: 3*digits + 2; "
        "scratchpad: max(6*digits - 1, "
        "5*digits + 1); detailed: 3*digits + 5 (6 for digits=1)"
    )

    digits: int = param(2, 1, 6, "most digits of each operand")
    format: str = choice("plain", FORMATS, "how the answer is written (see docs/languages.md)")
    operands: str = choice(
        "uniform", OPERANDS, "uniform over 0..10**digits-1, or balanced lengths 1..digits"
    )
    reverse: bool = param(False, False, True, "older name for format=reverse", alias=True)

    def _check(self) -> None:
        if self.reverse and self.format not in ("plain", "reverse"):
            raise ValueError(
                f"reverse=true is format=reverse, which conflicts with format={self.format}; "
                "give format alone"
            )
        if self.reverse:
            object.__setattr__(self, "format", "reverse")
        object.__setattr__(self, "reverse", self.format == "reverse")  # one truth, two names

    @property
    def has_steps(self) -> bool:
        return self.format in ("scratchpad", "detailed")

    @property
    def alphabet(self) -> str:
        extra = {"scratchpad": STEP + LAST + CARRY, "detailed": STEP + LAST + CARRY + RUN}
        return "".join(sorted(END + PLUS + EQUALS + DIGITS + extra.get(self.format, "")))

    @property
    def context_needed(self) -> int:
        D = self.digits
        if self.format == "scratchpad":
            return max(6 * D - 1, 5 * D + 1)
        if self.format == "detailed":
            return 3 * D + 5 if D >= 2 else 6
        if self.format == "plain" and D <= 2:
            return 3 * D + 3
        return 3 * D + 2

    # ---- sampling -----------------------------------------------------------------------

    def sample(self, rng: RandomSource) -> str:
        check_rng(rng)
        a, b = self._operand(rng), self._operand(rng)
        return f"{a}{PLUS}{b}{EQUALS}{trace(a, b, self.format).text}{END}"

    def _operand(self, rng: RandomSource) -> int:
        if self.operands == "uniform":
            return randbelow(rng, 10**self.digits)
        n = 1 + randbelow(rng, self.digits)  # the length first, uniform in 1..digits
        low = 0 if n == 1 else 10 ** (n - 1)
        return low + randbelow(rng, 10**n - low)

    # ---- prompts, answers, grades -------------------------------------------------------

    def operands_of(self, text: str) -> tuple[int, int]:
        """``(a, b)`` of a prompt ``"a+b="`` or of a sample (only the prompt is read)."""
        eq = text.find(EQUALS)
        if eq < 0:
            raise ValueError(f"{text!r} has no {EQUALS!r}: it is not an addition problem")
        part, a, b, _ = self._run(text[: eq + 1])
        return int(a), int(b)

    def complete(self, prompt: str) -> str:
        """The right completion of ``"a+b="``: steps (if any), answer and END."""
        a, b = self.operands_of(prompt)
        return trace(a, b, self.format).text + END

    def answer_mask(self, sample: str) -> list[bool]:
        """True on everything after "=" (steps, answer and END); False on the question."""
        eq = sample.find(EQUALS)
        if eq < 0:
            raise ValueError(f"{sample!r} has no {EQUALS!r}: it is not an addition problem")
        return [i > eq for i in range(len(sample))]

    def final_answer_mask(self, sample: str) -> list[bool]:
        """True only on the final answer and its END (after the steps' ``|``)."""
        start = self._answer_start(sample)
        return [i >= start for i in range(len(sample))]

    def final_answer(self, sample: str) -> str | None:
        """The final answer as written (between "=" or the steps' "|" and END); None when
        the sample has no END or, with steps, no "|"."""
        end = sample.find(END)
        if end < 0:
            return None
        try:
            start = self._answer_start(sample[:end])
        except ValueError:
            return None
        return sample[start:end]

    def _answer_start(self, sample: str) -> int:
        eq = sample.find(EQUALS)
        if eq < 0:
            raise ValueError(f"{sample!r} has no {EQUALS!r}: it is not an addition problem")
        if not self.has_steps:
            return eq + 1
        bar = sample.rfind(LAST)
        if bar < eq:
            raise ValueError(f"{sample!r} has no {LAST!r}: the steps never end")
        return bar + 1

    def grade(self, sample: str) -> Grade:
        """Judge ``sample`` (a prompt and a completion) answer and steps apart.

        The first wrong step is the step of the right trace where the text first differs
        from it (a step written wrong, missing, or one too many all count).
        """
        a, b = self.operands_of(sample)
        verdict = self.verify(sample)
        want = trace(a, b, self.format)
        answer_ok = self.final_answer(sample) == want.answer
        if not self.has_steps:
            steps_ok, first = None, None
        else:
            got = sample[sample.find(EQUALS) + 1 :]
            k = next(
                (i for i, (x, y) in enumerate(zip(got, want.text)) if x != y),
                min(len(got), len(want.text)),
            )
            first = want.labels[k][0] if k < want.answer_start else None
            steps_ok = first is None
        return Grade(verdict.valid, answer_ok, steps_ok, first, verdict.position, verdict.reason)

    def prompt_groups(self, prompt: str) -> dict[str, int | str]:
        """What a task evaluation breaks accuracy down by: the longer operand's length, the
        pair of lengths and the number of carries.

        >>> Addition(digits=3).prompt_groups("7+458=")
        {'length': 3, 'lengths': '1+3', 'carries': 1}
        """
        a, b = self.operands_of(prompt)
        la, lb = len(str(a)), len(str(b))
        return {"length": max(la, lb), "lengths": f"{la}+{lb}", "carries": carries(a, b)}

    # ---- the rule -----------------------------------------------------------------------
    # The state: (part 0/1/2 for a/b/after "=", a so far, b so far, what follows "=" so far).

    def _start(self) -> tuple[int, str, str, str]:
        return (0, "", "", "")

    def _advance(self, state: tuple[int, str, str, str], ch: str):
        part, a, b, c = state
        if part == 2:
            return self._advance_answer(a, b, c, ch)
        name, t = ("a", a) if part == 0 else ("b", b)
        mark = PLUS if part == 0 else EQUALS
        if ch not in DIGITS:
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

    def _advance_answer(self, a: str, b: str, c: str, ch: str):
        want = trace(int(a), int(b), self.format)
        k = len(c)
        if k == len(want.text):
            shown = f"{a}{PLUS}{b}{EQUALS}{want.text}"
            return Reject(f"the answer {shown} is complete; expected the end")
        if ch == want.text[k]:
            return (2, a, b, c + ch)
        if not self.has_steps:
            if ch in (PLUS, EQUALS):
                return Reject(f"{ch!r} inside the answer; expected a digit or the end")
            return Reject(f"expected {want.text[k]!r}: {a}{PLUS}{b}{EQUALS}{want.text}")
        return Reject(f"{self._where(want, k, a, b)}, got {ch!r}{self._arithmetic(want, k)}")

    def _where(self, want: Trace, k: int, a: str, b: str) -> str:
        step, what = want.labels[k]
        if step == 0:
            return f"the answer after the steps: expected {want.text[k]!r} ({a}+{b}={want.answer})"
        if what.startswith("'"):  # a fixed mark, named with its role
            return f"step {step} ({PLACES[step - 1]}): expected {what}"
        return f"step {step} ({PLACES[step - 1]}): expected {what} {want.text[k]!r}"

    @staticmethod
    def _arithmetic(want: Trace, k: int) -> str:
        step = want.labels[k][0]
        if step == 0:
            return ""
        da, db, carry = want.sums[step - 1]
        return f" ({da}+{db}+{carry}={da + db + carry})"

    def _end(self, state: tuple[int, str, str, str]) -> Reject | None:
        part, a, b, c = state
        if part < 2:
            return Reject("the problem is unfinished: expected a+b=c")
        want = trace(int(a), int(b), self.format)
        if c == want.text:
            return None
        if not self.has_steps:
            return Reject(f"the answer {c!r} is unfinished: {a}{PLUS}{b}{EQUALS}{want.text}")
        where = self._where(want, len(c), a, b)
        return Reject(f"unfinished: {where} next{self._arithmetic(want, len(c))}")

    def _next(self, state: tuple[int, str, str, str]) -> dict[str, float]:
        part, a, b, c = state
        if part == 2:
            want = trace(int(a), int(b), self.format).text
            return {want[len(c)] if len(c) < len(want) else END: 1.0}
        weights = self._digit_weights(a if part == 0 else b)
        if "" in weights:  # the operand may end here
            weights[PLUS if part == 0 else EQUALS] = weights.pop("")
        total = sum(weights.values())
        return {ch: w / total for ch, w in weights.items()}

    def _allowed(self, state: tuple[int, str, str, str]) -> frozenset[str]:
        part, a, b, c = state
        if part < 2:
            return super()._allowed(state)
        # After "=" exactly one symbol fits: the rule's own next one (a shortcut, no Rejects).
        want = trace(int(a), int(b), self.format).text
        return frozenset(want[len(c)] if len(c) < len(want) else END)

    def _digit_weights(self, t: str) -> dict[str, float]:
        """For an operand written so far as ``t``: the chance of each next digit (key ``""``:
        that it ends), up to a common factor."""
        D = self.digits
        if self.operands == "uniform":
            return dict(next_digit_counts(t, 0, 10**D - 1))
        out: dict[str, float] = {}
        for n in range(1, D + 1):  # each length has chance 1/D, spread evenly over its numbers
            low, high = (0 if n == 1 else 10 ** (n - 1)), 10**n - 1
            for ch, count in next_digit_counts(t, low, high).items():
                out[ch] = out.get(ch, 0.0) + count / (high - low + 1)
        return out
