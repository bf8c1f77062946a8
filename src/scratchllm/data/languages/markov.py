"""markov: a random sparse Markov chain of a given order over the letters a, b, c, ...

Each context (the last ``order`` symbols of the sample, padded on the left with END at the
start) allows ``branch`` of the ``alphabet`` letters, drawn at random from ``seed``. The process,
exactly:

- the first symbol: uniform over the letters the start context (``order`` ENDs) allows;
- after that: END with probability 1/length (so samples have ``length`` symbols on average),
  otherwise uniform over the letters the current context allows.

The table is built breadth-first over the contexts reachable from the start, and only those
are stored (``transitions``).

Context needed: ``order + 1``. What may follow depends on the last ``order`` symbols and on
whether the sample has started (END is not allowed first, so no sample is empty). A window of
``order`` symbols shows both: if it holds an END, the part after it is the padded context. So
an n-gram with n = order + 1 suffices. One symbol less must fail, and the table is made to
guarantee it: some two reachable contexts that differ only in their oldest symbol allow
different letters. A random table nearly always has such a pair; when it does not (tiny
alphabets, where the chain then acts like a shorter order), the draw is repeated from the same
seeded generator, so every seed gives a table that really has its order.

>>> lang = Markov(order=2, alphabet_size=3, branch=1, seed=0)
>>> sorted(lang.transitions.items())[0]
('\\n\\n', 'b')
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from .base import END, Language, RandomSource, Reject, check_rng, param, randbelow

LETTERS = "abcdefghijklmnopqrstuvwxyz"
MAX_CONTEXTS = 2**16  # alphabet**order above this would make the exact table slow to build
MAX_DRAWS = 100


@dataclass(frozen=True)
class Markov(Language):
    name = "markov"
    description = "random sparse order-k chain: each context allows `branch` of `alphabet` letters"
    context_formula = "order + 1"

    order: int = param(3, 1, 8, "symbols of context the chain conditions on")
    alphabet_size: int = param(6, 2, 26, "letters a, b, c, ... the chain uses", key="alphabet")
    branch: int = param(2, 1, 25, "letters each context allows (less than alphabet)")
    seed: int = param(0, 0, 2**31 - 1, "seed of the random table")
    length: int = param(16, 2, 1000, "mean sample length (END has probability 1/length)")
    _table: dict[str, str] = field(init=False, repr=False, compare=False, default_factory=dict)

    def _check(self) -> None:
        if self.branch >= self.alphabet_size:
            raise ValueError(
                f"branch={self.branch} must be less than alphabet={self.alphabet_size}: "
                "with every letter allowed the chain has no order to learn"
            )
        if self.alphabet_size**self.order > MAX_CONTEXTS:
            raise ValueError(
                f"alphabet**order = {self.alphabet_size}**{self.order} = "
                f"{self.alphabet_size**self.order} contexts is more than {MAX_CONTEXTS} "
                "for the exact table: lower the order or the alphabet"
            )
        object.__setattr__(self, "_table", self._draw_table())

    @property
    def transitions(self) -> dict[str, str]:
        """Reachable context -> the letters it allows (sorted). Contexts are padded with END."""
        return dict(self._table)

    @property
    def alphabet(self) -> str:
        return END + LETTERS[: self.alphabet_size]

    @property
    def context_needed(self) -> int:
        return self.order + 1

    def sample(self, rng: RandomSource) -> str:
        check_rng(rng)
        p_end = 1.0 / self.length
        ctx, out = END * self.order, []
        while not (out and rng.random() < p_end):
            allowed = self._table[ctx]
            ch = allowed[randbelow(rng, len(allowed))]
            out.append(ch)
            ctx = ctx[1:] + ch
        return "".join(out) + END

    # The rule's state: (context of the last `order` symbols, END-padded; started?).

    def _start(self) -> tuple[str, bool]:
        return (END * self.order, False)

    def _advance(self, state: tuple[str, bool], ch: str) -> tuple[str, bool] | Reject:
        ctx, _ = state
        allowed = self._table[ctx]
        if ch not in allowed:
            return Reject(f"{ch!r} cannot follow the context {ctx!r}; it allows {allowed!r}")
        return (ctx[1:] + ch, True)

    def _end(self, state: tuple[str, bool]) -> Reject | None:
        return None if state[1] else Reject("empty sample: a sample has at least one letter")

    def _next(self, state: tuple[str, bool]) -> dict[str, float]:
        ctx, started = state
        allowed = self._table[ctx]
        if not started:
            return {ch: 1.0 / len(allowed) for ch in allowed}
        p_end = 1.0 / self.length
        dist = {ch: (1.0 - p_end) / len(allowed) for ch in allowed}
        dist[END] = p_end
        return dist

    # ---- building the table -------------------------------------------------------------

    def _draw_table(self) -> dict[str, str]:
        rng = random.Random(self.seed)
        letters = LETTERS[: self.alphabet_size]
        for _ in range(MAX_DRAWS):
            table = self._reachable_table(rng, letters)
            if self.order == 1 or _needs_full_order(table):
                return table
        raise RuntimeError(  # not reached for any allowed parameters in practice
            f"{self.spec}: no table in {MAX_DRAWS} draws depends on its oldest symbol"
        )

    def _reachable_table(self, rng: random.Random, letters: str) -> dict[str, str]:
        """Draw allowed letters for each context reachable from the start, breadth-first."""
        start = END * self.order
        table: dict[str, str] = {}
        queue = deque([start])
        while queue:
            ctx = queue.popleft()
            if ctx in table:
                continue
            table[ctx] = "".join(sorted(rng.sample(letters, self.branch)))
            queue.extend(ctx[1:] + ch for ch in table[ctx] if ctx[1:] + ch not in table)
        return table


def _needs_full_order(table: dict[str, str]) -> bool:
    """True if two reachable contexts that share all but their oldest symbol (and hold no END
    in that shared part) allow different letters: then order - 1 symbols are not enough."""
    by_suffix: dict[str, str] = {}
    for ctx, allowed in table.items():
        suffix = ctx[1:]
        if END in suffix:
            continue  # a window holding END pins down the whole context: no ambiguity
        if by_suffix.setdefault(suffix, allowed) != allowed:
            return True
    return False
