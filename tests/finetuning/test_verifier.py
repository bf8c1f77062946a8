"""The verifier's reward: exact answers score 1, a wrong one at most partial credit below 1,
an unfinished one 0, and reversed answers are aligned at their least significant digit."""

from __future__ import annotations

import pytest

from scratchllm.data.languages import get
from scratchllm.finetuning.verifier import judge


@pytest.mark.parametrize(
    ("spec", "prompt", "completion", "correct", "reward"),
    [
        ("addition:digits=2", "37+45=", "82\n", True, 1.0),
        ("addition:digits=2", "37+45=", "82", False, 0.0),  # no END: unfinished
        ("addition:digits=2", "37+45=", "83\n", False, 0.25),  # 1 of 2 digits, w = 0.5
        ("addition:digits=2", "37+45=", "182\n", False, 0.5 * 2 / 3),  # extra digit costs
        ("addition:digits=2,format=reverse", "37+45=", "28\n", True, 1.0),
        ("addition:digits=2,format=reverse", "37+45=", "29\n", False, 0.25),
    ],
)
def test_judge(spec, prompt, completion, correct, reward):
    got = judge(get(spec), prompt, completion, partial_credit=0.5)
    assert got.correct is correct and got.reward == pytest.approx(reward)
    assert judge(get(spec), prompt, completion).reward == float(correct)  # 0/1 by default


def test_a_scratchpad_is_judged_by_its_final_answer():
    lang = get("addition:digits=2,format=scratchpad")
    right = lang.complete("37+45=")
    assert judge(lang, "37+45=", right).correct
    wrong = right.replace("82", "83")
    assert not judge(lang, "37+45=", wrong).correct


def test_partial_credit_must_stay_below_a_right_answer():
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        judge(get("addition:digits=2"), "1+1=", "2\n", partial_credit=1.0)
