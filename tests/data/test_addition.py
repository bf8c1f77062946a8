"""addition's answer formats (plain, reverse, scratchpad, detailed), its operand draws
(uniform, balanced), the step-checking verifier, the grades and the context each format needs.

The rule (a state machine) and the sampler are separate codings; these tests hold them against
each other, against hand-written traces, and against a column-by-column addition written here.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.data.languages import END, Addition, get
from scratchllm.data.languages.addition import FORMATS, carries, trace

SPECS = [
    f"addition:digits={d},format={f},operands={o}"
    for d in (1, 3)
    for f in FORMATS
    for o in ("uniform", "balanced")
]


def _valid_prefixes(lang, maxlen: int = 10**6) -> dict[str, frozenset[str]]:
    """Every valid prefix -> the symbols allowed after it."""
    out: dict[str, frozenset[str]] = {}
    todo = [""]
    while todo:
        p = todo.pop()
        out[p] = lang.allowed_next(p)
        if len(p) < maxlen:
            todo.extend(p + ch for ch in out[p] if ch != END)
    return out


def _window_conflict(items, w: int):
    """Two (history, allowed) with the same last-w window but different allowed sets, or None
    (histories shorter than w hold the END before the sample, which shows it all)."""
    seen: dict[str, tuple[str, frozenset[str]]] = {}
    for history, allowed in items:
        if len(history) < w:
            continue
        first = seen.setdefault(history[len(history) - w :], (history, allowed))
        if first[1] != allowed:
            return first, (history, allowed)
    return None


def _columns(a: int, b: int) -> list[tuple[int, int, int, int, int]]:
    """Schoolbook addition, one column at a time: (a digit, b digit, carry in, digit, carry)."""
    out, carry = [], 0
    sa, sb = str(a)[::-1], str(b)[::-1]
    for i in range(max(len(sa), len(sb))):
        da = int(sa[i]) if i < len(sa) else 0
        db = int(sb[i]) if i < len(sb) else 0
        s = da + db + carry
        out.append((da, db, carry, s % 10, s // 10))
        carry = s // 10
    return out


# ---- the formats, written out ----------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, format, completion",
    [
        (37, 45, "plain", "82"),
        (37, 45, "reverse", "28"),
        (37, 45, "scratchpad", "2c1;8c0|82"),
        (37, 45, "detailed", "37+45,2c1;3+4,82c0|82"),
        (367, 158, "scratchpad", "5c1;2c1;5c0|525"),
        (367, 158, "detailed", "367+158,5c1;36+15,25c1;3+1,525c0|525"),
        (99, 1, "scratchpad", "0c1;0c1|100"),
        (99, 1, "detailed", "99+1,0c1;9+,00c1|100"),
        (5, 123, "scratchpad", "8c0;2c0;1c0|128"),
        (5, 123, "detailed", "5+123,8c0;+12,28c0;+1,128c0|128"),
        (0, 0, "scratchpad", "0c0|0"),
        (0, 0, "detailed", "0+0,0c0|0"),
        (5, 5, "scratchpad", "0c1|10"),
    ],
)
def test_traces_by_hand(a, b, format, completion):
    lang = Addition(digits=3, format=format)
    assert trace(a, b, format).text == completion
    assert lang.complete(f"{a}+{b}=") == completion + END
    sample = f"{a}+{b}={completion}{END}"
    assert lang.verify(sample).valid
    assert lang.final_answer(sample) == (str(a + b)[::-1] if format == "reverse" else str(a + b))


@settings(max_examples=200, deadline=None)
@given(a=st.integers(0, 999_999), b=st.integers(0, 999_999))
def test_scratchpad_steps_are_the_schoolbook_columns(a, b):
    """Each step of both scratchpads is one column of schoolbook addition, in order."""
    cols = _columns(a, b)
    steps = trace(a, b, "scratchpad").text.split("|")[0].split(";")
    assert steps == [f"{d}c{c}" for _, _, _, d, c in cols]
    detailed = trace(a, b, "detailed").text.split("|")[0].split(";")
    sa, sb, total = str(a), str(b), str(a + b)
    for i, (step, (_, _, _, _, c)) in enumerate(zip(detailed, cols, strict=True)):
        left = f"{sa[: len(sa) - i]}+{sb[: len(sb) - i]}"  # digits still to add
        so_far = total[-(i + 1) :].rjust(i + 1, "0")
        assert step == f"{left},{so_far}c{c}"
    assert carries(a, b) == sum(c for *_, c in cols)
    assert trace(a, b, "scratchpad").answer == str(a + b)


def test_carries_by_hand():
    assert [carries(*p) for p in [(0, 0), (5, 5), (37, 45), (999, 1), (12, 34), (95, 5)]] == [
        0,
        1,
        1,
        3,
        0,
        2,
    ]


# ---- specs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_spec_round_trips(spec):
    lang = get(spec)
    assert get(lang.spec) == lang
    assert "reverse=" not in lang.spec  # an alias stays out of the canonical spec


def test_reverse_is_an_alias_of_format_reverse():
    old, new = get("addition:digits=2,reverse=true"), get("addition:digits=2,format=reverse")
    assert old == new and old.format == "reverse" and new.reverse is True
    assert old.spec == "addition:digits=2,format=reverse,operands=uniform"
    assert Addition(reverse=True) == Addition(format="reverse")
    assert get("addition:format=scratchpad").reverse is False
    assert old.samples(20, seed=1) == new.samples(20, seed=1)


@pytest.mark.parametrize(
    "spec, words",
    [
        (
            "addition:format=steps",
            ["format must be one of", "plain, reverse, scratchpad, detailed"],
        ),
        ("addition:format=", ["malformed"]),
        ("addition:operands=short", ["operands must be one of", "uniform, balanced", "'short'"]),
        ("addition:format=scratchpad,reverse=true", ["conflicts with format=scratchpad"]),
        ("addition:digits=7", ["digits=7", "1..6"]),
        ("addition:style=plain", ["no parameter 'style'", "digits, format, operands, reverse"]),
    ],
)
def test_spec_errors_list_the_valid_values(spec, words):
    with pytest.raises(ValueError) as err:
        get(spec)
    for word in words:
        assert word in str(err.value)


def test_direct_construction_checks_choices():
    with pytest.raises(ValueError, match="format must be one of"):
        Addition(format="Plain")
    assert get("addition:format=Scratchpad").format == "scratchpad"  # specs ignore case


def test_alphabets():
    assert get("addition").alphabet == "\n+0123456789="
    assert get("addition:format=scratchpad").alphabet == "\n+0123456789;=c|"
    assert get("addition:format=detailed").alphabet == "\n+,0123456789;=c|"


# ---- sampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_samples_are_valid(spec):
    lang = get(spec)
    for s in lang.samples(300, seed=1):
        assert s.endswith(END) and s.count(END) == 1 and set(s) <= set(lang.alphabet)
        assert lang.verify(s).valid, s
        g = lang.grade(s)
        assert (g.valid, g.answer_correct, g.first_wrong_step) == (True, True, None)
        assert g.steps_correct is (True if lang.has_steps else None)


def test_uniform_draws_are_those_of_before():
    """operands=uniform spends the RNG exactly as the language always did: two draws."""
    rng = random.Random(3)
    want = []
    for _ in range(20):
        a, b = int(rng.random() * 1000), int(rng.random() * 1000)
        want.append(f"{a}+{b}={a + b}\n")
    assert get("addition:digits=3").samples(20, seed=3) == want


def test_balanced_operand_lengths_are_uniform():
    lang = get("addition:digits=4,operands=balanced")
    n = 4000
    lengths = Counter()
    for s in lang.samples(n // 2, seed=0):
        a, b = lang.operands_of(s)
        lengths.update([len(str(a)), len(str(b))])
    stat = sum((lengths[k] - n / 4) ** 2 / (n / 4) for k in range(1, 5))
    assert stat < 16.3  # chi-square, 3 degrees of freedom, p = 0.001
    uniform = get("addition:digits=4")
    short = sum(len(str(x)) == 1 for s in uniform.samples(2000, 0) for x in uniform.operands_of(s))
    assert short < 20  # about 4 in 4000 under uniform draws: why balanced exists


def test_balanced_distribution_by_hand():
    lang = get("addition:digits=2,operands=balanced")
    one, two = Fraction(1, 2 * 10), Fraction(1, 2 * 90)  # each 1-digit / 2-digit number
    first = lang.next_distribution("")
    assert first["0"] == pytest.approx(float(one))
    assert first["7"] == pytest.approx(float(one + 10 * two))
    after = lang.next_distribution("7")  # 7 itself, or 70..79
    assert after["+"] == pytest.approx(float(one / (one + 10 * two)))
    assert after["3"] == pytest.approx(float(two / (one + 10 * two)))
    assert lang.next_distribution("0") == {"+": 1.0}
    assert lang.next_distribution("7+") == first | {}  # b is drawn the same way
    assert lang.next_distribution("77") == {"+": 1.0}


def _prefixes_of(samples):
    for s in samples:
        for i in range(len(s)):
            yield s[:i], s[i]


def _chi2_bound(df: int, z: float = 4.0) -> float:
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


@pytest.mark.parametrize(
    "spec",
    ["addition:digits=2,operands=balanced", "addition:digits=3,format=detailed,operands=balanced"],
)
def test_next_distribution_matches_sampling_frequencies(spec):
    lang = get(spec)
    pools: dict[tuple, Counter] = defaultdict(Counter)
    for prefix, ch in _prefixes_of(lang.samples(2000, seed=7)):
        pools[tuple(sorted(lang.next_distribution(prefix).items()))][ch] += 1
    tested = 0
    for key, observed in pools.items():
        n = sum(observed.values())
        if len(key) < 2 or n < 200:
            continue
        stat = sum((observed[ch] - n * p) ** 2 / (n * p) for ch, p in key)
        assert stat < _chi2_bound(len(key) - 1), (key, observed)
        tested += 1
    assert tested >= 2


@pytest.mark.parametrize("spec", SPECS)
def test_next_distribution_is_exact_after_the_prompt(spec):
    lang = get(spec)
    for s in lang.samples(40, seed=2):
        eq = s.index("=")
        for i in range(len(s)):
            dist = lang.next_distribution(s[:i])
            assert math.isclose(sum(dist.values()), 1.0, abs_tol=1e-12)
            assert set(dist) == lang.allowed_next(s[:i])
            if i > eq:
                assert dist == {s[i]: 1.0}


# ---- the verifier: every step is checked --------------------------------------------------------

# (spec, text, position, words in the reason)
CASES = [
    ("scratchpad", "37+45=2c1;8c1|82\n", 12, ["step 2 (tens)", "expected carry '0'", "3+4+1=8"]),
    ("scratchpad", "37+45=3c1;8c0|82\n", 6, ["step 1 (units)", "expected digit '2'", "7+5+0=12"]),
    ("scratchpad", "37+45=2c0;8c0|82\n", 8, ["step 1 (units)", "expected carry '1'"]),
    ("scratchpad", "37+45=2c1|82\n", 9, ["step 1 (units)", "expected ';' (a step follows)"]),
    ("scratchpad", "37+45=2c1;8c0;0c0|82\n", 13, ["step 2 (tens)", "expected '|' (last step)"]),
    ("scratchpad", "37+45=2c1;8c0|83\n", 15, ["the answer after the steps", "37+45=82"]),
    ("scratchpad", "37+45=2c1;8c0|820\n", 16, ["complete", "expected the end"]),
    ("scratchpad", "37+45=2c1;8c0|8\n", 15, ["unfinished", "the answer after the steps"]),
    ("scratchpad", "37+45=2c1;8\n", 11, ["unfinished", "step 2 (tens)", "expected 'c'"]),
    ("scratchpad", "37+45=21;80|82\n", 7, ["step 1 (units)", "expected 'c'"]),
    ("scratchpad", "999+1=0c1;0c1;0c1|1000\n", None, []),
    ("detailed", "37+45=37+45,2c1;3+4,82c0|82\n", None, []),
    ("detailed", "37+45=37+45,2c1;3+4,92c0|92\n", 20, ["step 2 (tens)", "answer so far '8'"]),
    (
        "detailed",
        "37+45=37+45,2c1;37+4,82c0|82\n",
        17,
        ["step 2 (tens)", "expected '+' (a's digits end), got '7'"],
    ),
    (
        "detailed",
        "37+45=37+45,2c1;3+45,82c0|82\n",
        19,
        ["step 2 (tens)", "expected ',' (b's digits end), got '5'"],
    ),
    ("detailed", "37+45=37+4,2c1;3+4,82c0|82\n", 10, ["step 1 (units)", "digits of b left '5'"]),
    ("detailed", "37+45=37+45,2c0;3+4,82c0|82\n", 14, ["step 1", "expected carry '1'", "7+5+0=12"]),
    ("plain", "37+45=83\n", 7, ["expected '2'", "37+45=82"]),
    ("reverse", "37+45=82\n", 6, ["expected '2'", "37+45=28"]),
]


@pytest.mark.parametrize("format, text, position, words", CASES)
def test_verifier_names_the_wrong_step(format, text, position, words):
    verdict = get(f"addition:digits=3,format={format}").verify(text)
    assert verdict.valid is (position is None)
    assert verdict.position == position, verdict
    for word in words:
        assert word in verdict.reason, verdict.reason


@settings(max_examples=150, deadline=None)
@given(
    format=st.sampled_from(["scratchpad", "detailed"]),
    seed=st.integers(0, 10**6),
    cut=st.floats(0, 1, exclude_max=True),
    pick=st.integers(0, 100),
)
def test_a_changed_symbol_is_caught_where_it_breaks_and_graded(format, seed, cut, pick):
    """Change one symbol after "=": the verdict points at it exactly, and the grade's first
    wrong step is the step its reason names (or none, when it is in the final answer)."""
    lang = get(f"addition:digits=3,format={format},operands=balanced")
    s = lang.sample(random.Random(seed))
    eq = s.index("=")
    j = eq + 1 + int(cut * (len(s) - eq - 1))
    ch = lang.alphabet[pick % len(lang.alphabet)]
    if ch == s[j]:
        return
    text = s[:j] + ch + s[j + 1 :]
    verdict, grade = lang.verify(text), lang.grade(text)
    assert (verdict.valid, verdict.position) == (False, j)
    assert (grade.valid, grade.position, grade.reason) == (False, j, verdict.reason)
    named = re.match(r"(?:unfinished: )?step (\d+) ", verdict.reason)
    assert grade.first_wrong_step == (int(named.group(1)) if named else None)
    assert grade.steps_correct is (named is None)
    a, b = lang.operands_of(s)
    assert grade.answer_correct is (lang.final_answer(text) == str(a + b))


# ---- masks, answers and grades -----------------------------------------------------------------


def test_masks():
    lang = get("addition:format=scratchpad")
    s = "37+45=2c1;8c0|82\n"
    show = "".join("^" if m else " " for m in lang.answer_mask(s))
    assert show == "      ^^^^^^^^^^^"  # the steps, the answer and END: all a model writes
    show = "".join("^" if m else " " for m in lang.final_answer_mask(s))
    assert show == "              ^^^"
    plain = get("addition")
    assert plain.final_answer_mask("37+45=82\n") == plain.answer_mask("37+45=82\n")
    with pytest.raises(ValueError, match="no '|'"):
        lang.final_answer_mask("37+45=2c1;8c0\n")


@pytest.mark.parametrize(
    "format, text, answer",
    [
        ("scratchpad", "37+45=2c1;8c1|82\n", "82"),
        ("scratchpad", "37+45=2c1;8c1|82", None),  # no END: unfinished
        ("scratchpad", "37+45=2c1;8c1\n", None),  # the steps never end
        ("scratchpad", "37+45=|\n", ""),
        ("detailed", "37+45=37+45,2c1;3+4,82c0|82\n", "82"),
        ("plain", "37+45=81\n", "81"),
        ("reverse", "37+45=28\n", "28"),
        ("plain", "37+45", None),
    ],
)
def test_final_answer(format, text, answer):
    assert get(f"addition:format={format}").final_answer(text) == answer


@pytest.mark.parametrize(
    "format, text, grade",
    [
        # (valid, answer_correct, steps_correct, first_wrong_step)
        ("scratchpad", "37+45=2c1;8c0|82\n", (True, True, True, None)),
        ("scratchpad", "37+45=2c1;8c1|82\n", (False, True, False, 2)),  # right answer, wrong step
        ("scratchpad", "37+45=2c1;8c0|92\n", (False, False, True, None)),  # right steps only
        ("scratchpad", "37+45=2c1|82\n", (False, True, False, 1)),  # a step missing
        ("scratchpad", "37+45=2c1;8c0;0c0|82\n", (False, True, False, 2)),  # one too many
        ("scratchpad", "37+45=2c1;8c0|82", (False, False, True, None)),  # no END
        ("scratchpad", "37+45=2c1;8c0|82\n\n", (False, True, True, None)),  # text after END
        ("scratchpad", "37+45=\n", (False, False, False, 1)),
        ("detailed", "37+45=37+45,2c1;3+4,82c0|82\n", (True, True, True, None)),
        ("detailed", "37+45=37+45,2c1;3+5,92c0|82\n", (False, True, False, 2)),
        ("plain", "37+45=82\n", (True, True, None, None)),
        ("plain", "37+45=28\n", (False, False, None, None)),
        ("reverse", "37+45=28\n", (True, True, None, None)),
    ],
)
def test_grades(format, text, grade):
    g = get(f"addition:format={format}").grade(text)
    assert (g.valid, g.answer_correct, g.steps_correct, g.first_wrong_step) == grade


def test_prompts_and_groups():
    lang = get("addition:digits=3,format=scratchpad")
    assert lang.operands_of("7+458=") == (7, 458)
    assert lang.operands_of("7+458=8c1;6c0;4c0|465\n") == (7, 458)
    assert lang.prompt_groups("7+458=") == {"length": 3, "lengths": "1+3", "carries": 1}
    assert lang.prompt_groups("999+1=") == {"length": 3, "lengths": "3+1", "carries": 3}
    with pytest.raises(ValueError, match="not the start of a valid addition sample"):
        lang.operands_of("7+4589=")
    with pytest.raises(ValueError, match="no '='"):
        lang.operands_of("7+45")


# ---- context_needed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        f"addition:digits=1,format={f},operands={o}"
        for f in FORMATS
        for o in ("uniform", "balanced")
    ],
)
def test_context_needed_is_exact_for_one_digit(spec):
    lang = get(spec)
    prefixes = _valid_prefixes(lang)
    w = lang.context_needed - 1
    assert _window_conflict(prefixes.items(), w) is None
    assert _window_conflict(prefixes.items(), w - 1) is not None


@pytest.mark.slow
@pytest.mark.parametrize("format", ["scratchpad", "detailed"])
def test_context_needed_is_exact_for_two_digits(format):
    lang = get(f"addition:digits=2,format={format}")
    prefixes = _valid_prefixes(lang)
    w = lang.context_needed - 1
    assert _window_conflict(prefixes.items(), w) is None
    assert _window_conflict(prefixes.items(), w - 1) is not None


# Per format, D = 3: two valid prefixes that share their last context_needed - 2 symbols but
# not what may follow (found by the brute force below; the docstring's pairs, grown).
WITNESSES = {
    "plain": ("0+100=100", "900+100=100"),
    "reverse": ("10+100=01", "110+100=01"),
    "scratchpad": ("10+100=0c0;1c0;", "110+100=0c0;1c0;"),
    "detailed": ("10+100=10+100,0c0;1", "110+100=110+100,0c0;1"),
}


@pytest.mark.parametrize("format", FORMATS)
def test_context_needed_for_three_digits(format):
    """One symbol less is not enough (the witness pair); the claimed window is enough on a
    sampled corpus, windows crossing from one sample into the next included."""
    lang = get(f"addition:digits=3,format={format},operands=balanced")
    w = lang.context_needed - 1
    first, second = WITNESSES[format]
    assert _window_conflict([(p, lang.allowed_next(p)) for p in (first, second)], w - 1)
    corpus = lang.corpus(300, seed=11)
    observations, start = [], 0
    for i in range(len(corpus)):
        if i > 0 and corpus[i - 1] == END:
            start = i
        observations.append((corpus[max(0, i - 60) : i], lang.allowed_next(corpus[start:i])))
    assert _window_conflict(observations[100:], w) is None


def _completion_conflict(digits: int, w: int, reverse: bool):
    """Over every problem with ``digits``-digit operands, written here without the language:
    two prefixes that end after "=", share their last w symbols and differ in the symbol that
    comes next (after "=" there is always exactly one), or None. Windows that end inside the
    prompt need far less (at most digits + 2)."""
    seen: dict[str, tuple[str, str]] = {}
    for a in range(10**digits):
        for b in range(10**digits):
            c = str(a + b)
            s = f"{a}+{b}={c[::-1] if reverse else c}{END}"
            for i in range(max(w, len(s) - len(c) - 1), len(s)):
                first = seen.setdefault(s[i - w : i], (s[i], s[:i]))
                if first[0] != s[i]:
                    return first[1], s[:i]
    return None


@pytest.mark.slow
@pytest.mark.parametrize("format", ["plain", "reverse"])
def test_context_needed_is_exact_for_three_digits(format):
    """Every one of the 10**6 problems: plain needs 3D + 2 from D = 3 on (3D + 3 below); one
    symbol less is not enough by the witness pair of test_context_needed_for_three_digits."""
    lang = get(f"addition:digits=3,format={format}")
    assert lang.context_needed == 11
    assert _completion_conflict(3, lang.context_needed - 1, format == "reverse") is None
