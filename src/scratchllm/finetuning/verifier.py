"""Rewards from a language's verifier: 1 for a right answer, optional partial credit.

A task's completion is **right** when its final answer is exactly the right one
(``Addition.grade(...).answer_correct``: the sum after any scratchpad steps, then END;
for a language without ``grade``, the whole completion). This is what ``eval --task``
counts as accurate and what pass@k counts as a success, so the reward, the pairs and the
report agree. An unfinished completion (no END) is wrong.

``partial_credit = w`` (default 0: a pure 0/1 reward) gives a wrong answer ``w`` times the
share of the right answer's digits it has in place, aligned at the least significant
digit (the end of a plain sum, the start of a reversed one) and divided by the longer of
the two, so an extra or a missing digit costs too. With ``w < 1`` a right answer is always
worth strictly more than any wrong one::

    reward = 1                                  if the answer is right
           = w * (digits in place) / max(len)   otherwise

>>> from scratchllm.data.languages import get
>>> lang = get("addition:digits=2")
>>> judge(lang, "37+45=", "82\\n"), judge(lang, "37+45=", "83\\n", partial_credit=0.5)
(Judgement(correct=True, reward=1.0), Judgement(correct=False, reward=0.25))
"""

from __future__ import annotations

from dataclasses import dataclass

from scratchllm.data.languages import END, Language


@dataclass(frozen=True)
class Judgement:
    correct: bool
    reward: float


def digit_credit(got: str | None, want: str, lsb_first: bool = False) -> float:
    """Share of ``want``'s symbols that ``got`` has in place, aligned at the least
    significant end; ``max(len)`` in the denominator.

    >>> digit_credit("125", "135"), digit_credit("25", "125"), digit_credit("52", "521", True)
    (0.6666666666666666, 0.6666666666666666, 0.6666666666666666)
    """
    if not got or not want:
        return 0.0
    if not lsb_first:
        got, want = got[::-1], want[::-1]
    hits = sum(a == b for a, b in zip(got, want))
    return hits / max(len(got), len(want))


def judge(
    language: Language, prompt: str, completion: str, partial_credit: float = 0.0
) -> Judgement:
    """Whether ``completion`` answers ``prompt`` right, and its reward (module docstring)."""
    if not 0.0 <= partial_credit < 1.0:
        raise ValueError(
            f"partial_credit ({partial_credit!r}) must be in [0, 1): a wrong answer must be "
            "worth less than a right one"
        )
    want = language.complete(prompt)  # the right completion, END included
    grade = getattr(language, "grade", None)
    if grade is not None:
        correct = bool(grade(prompt + completion).answer_correct)
    else:
        correct = completion == want
    if correct:
        return Judgement(True, 1.0)
    if partial_credit == 0.0:
        return Judgement(False, 0.0)
    final = getattr(language, "final_answer", None)
    if final is not None:
        got, right = final(prompt + completion), final(prompt + want)
    else:
        got = completion[: completion.find(END)] if END in completion else None
        right = want[: want.find(END)]
    if right is None:
        return Judgement(False, 0.0)
    lsb_first = getattr(language, "format", "plain") == "reverse"
    return Judgement(False, partial_credit * digit_credit(got, right, lsb_first))
