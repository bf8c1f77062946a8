"""dyck: balanced brackets of several kinds, nested at most ``depth`` deep, e.g. "([]){}\\n".

At most ``pairs`` bracket pairs make a sample. The process, exactly (d is the current depth,
u the pairs opened so far):

- d = 0: the first symbol opens a uniform kind; later, END once u = pairs, otherwise END with
  probability ``stop`` or else open a uniform kind;
- 0 < d < depth and u < pairs: open a uniform kind or close the innermost bracket, 1/2 each;
- d = depth or u = pairs: close the innermost bracket.

Context needed: ``2*pairs`` (depth and kinds do not enter). A counting n-gram has no stack:
it must read the state (the open brackets and the pairs used) from its window. Without a cap on
the pairs no window would do: "(()()()…" and "()()()…" share every window of "()" pairs, yet
only the second may end. With the cap, the farthest look back is to count the pairs: "(()())"
(3 pairs, may go on) and "()(()())" (4 pairs, must end when pairs=4) share their last 2*pairs-2
symbols, so n - 1 = 2*pairs - 2 fails. A window of 2*pairs - 1 symbols always suffices: it holds
the END before the sample unless at least 2*pairs - 1 symbols are written, and then the only
symbol out of view is the first opener, whose pair is already closed or is the one bracket
still open (whose closer is then visible as the only unmatched one). Depth makes the language
hard for a model with a small state, not for the n-gram's window.

>>> Dyck(depth=2, kinds=2).verify("([)]\\n").reason
"')' does not match '[' opened at position 1; expected ']'"
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import END, Language, RandomSource, Reject, check_rng, param, randbelow

OPENERS, CLOSERS = "([{<", ")]}>"


@dataclass(frozen=True)
class Dyck(Language):
    name = "dyck"
    description = "balanced brackets of `kinds` kinds, at most `depth` deep and `pairs` pairs"
    context_formula = "2*pairs"

    depth: int = param(3, 1, 16, "deepest nesting")
    kinds: int = param(2, 1, 4, "bracket kinds: () [] {} <>")
    pairs: int = param(8, 1, 64, "most bracket pairs in a sample")
    stop: float = param(0.3, 0.0, 1.0, "chance to end at depth 0 (when not forced)")

    @property
    def alphabet(self) -> str:
        return "".join(sorted(END + OPENERS[: self.kinds] + CLOSERS[: self.kinds]))

    @property
    def context_needed(self) -> int:
        return 2 * self.pairs

    def sample(self, rng: RandomSource) -> str:
        check_rng(rng)
        out: list[str] = []
        stack: list[int] = []
        used = 0
        while True:
            d = len(stack)
            if d == 0 and (used == self.pairs or (used and rng.random() < self.stop)):
                return "".join(out) + END
            can_open = d < self.depth and used < self.pairs
            if d > 0 and (not can_open or rng.random() < 0.5):
                out.append(CLOSERS[stack.pop()])
            else:
                kind = randbelow(rng, self.kinds)
                stack.append(kind)
                out.append(OPENERS[kind])
                used += 1

    # The rule's state: (open brackets as (kind, position) pairs, pairs opened, symbols read).

    def _start(self) -> tuple[tuple[tuple[int, int], ...], int, int]:
        return ((), 0, 0)

    def _advance(self, state, ch: str):
        stack, used, pos = state
        if ch in OPENERS:
            if len(stack) == self.depth:
                return Reject(f"{ch!r} would nest deeper than depth={self.depth}")
            if used == self.pairs:
                return Reject(f"a sample has at most pairs={self.pairs} bracket pairs")
            return (stack + ((OPENERS.index(ch), pos),), used + 1, pos + 1)
        if not stack:
            return Reject(f"{ch!r} closes nothing: no bracket is open")
        kind, opened = stack[-1]
        if CLOSERS.index(ch) != kind:
            return Reject(
                f"{ch!r} does not match {OPENERS[kind]!r} opened at position {opened}; "
                f"expected {CLOSERS[kind]!r}"
            )
        return (stack[:-1], used, pos + 1)

    def _end(self, state) -> Reject | None:
        stack, used, _ = state
        if used == 0:
            return Reject("empty sample: a sample has at least one bracket pair")
        if stack:
            kind, opened = stack[-1]
            return Reject(f"{OPENERS[kind]!r} opened at position {opened} is never closed")
        return None

    def _next(self, state) -> dict[str, float]:
        stack, used, _ = state
        opens = OPENERS[: self.kinds]
        if not stack:
            if used == self.pairs:
                return {END: 1.0}
            p_open = 1.0 if used == 0 else 1.0 - self.stop
            dist = {ch: p_open / self.kinds for ch in opens}
            if used:
                dist[END] = self.stop
            return dist
        close = CLOSERS[stack[-1][0]]
        if len(stack) == self.depth or used == self.pairs:
            return {close: 1.0}
        dist = {ch: 0.5 / self.kinds for ch in opens}
        dist[close] = 0.5
        return dist
