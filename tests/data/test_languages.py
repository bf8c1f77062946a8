"""The synthetic languages: specs, verifiers, samplers, true distributions, context needs.

Each family codes its rule twice on purpose (a direct sampler, and a rule machine from which
``verify`` and ``next_distribution`` come); these tests hold the codings against each other and
against hand-made strings.
"""

from __future__ import annotations

import doctest
import importlib
import math
import random
import re
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.data import languages as L
from scratchllm.data.languages import END, get, languages, parse_spec, split_samples

# A few settings per family, small enough to sample quickly, varied enough to hit edge cases.
SPECS = [
    "sticky",
    "sticky:k=0,classes=2,size=1",
    "sticky:k=3,strict=true",
    "sticky:k=1,strict=true,classes=2,size=2",
    "markov",
    "markov:order=1,alphabet=3,branch=2,seed=4",
    "markov:order=5,alphabet=3,branch=2,seed=7,length=8",
    "counting",
    "counting:digits=1",
    "counting:digits=3,count=3",
    "addition",
    "addition:digits=1,reverse=true",
    "addition:digits=3",
    "dyck",
    "dyck:depth=1,kinds=1,pairs=3",
    "dyck:depth=4,kinds=4,pairs=12",
    "copy",
    "copy:length=1,alphabet=2",
    "copy:length=5,alphabet=26",
]


def _valid_prefixes(lang: L.Language, maxlen: int) -> dict[str, frozenset[str]]:
    """Every valid prefix up to ``maxlen`` symbols -> the symbols allowed after it."""
    out: dict[str, frozenset[str]] = {}
    todo = [""]
    while todo:
        p = todo.pop()
        out[p] = lang.allowed_next(p)
        if len(p) < maxlen:
            todo.extend(p + ch for ch in out[p] if ch != END)
    return out


def _window_conflict(items, w: int):
    """Two (window, allowed) observations with the same last-w window but different allowed
    sets, or None. Windows shorter than w are skipped: they hold the END before the sample,
    which pins the sample down completely (END never occurs inside one)."""
    seen: dict[str, tuple[str, frozenset[str]]] = {}
    for history, allowed in items:
        if len(history) < w:
            continue
        key = history[len(history) - w :]
        first = seen.setdefault(key, (history, allowed))
        if first[1] != allowed:
            return first, (history, allowed)
    return None


# ---- the modules' own worked examples -----------------------------------------------------


@pytest.mark.parametrize(
    "module",
    ["", ".base", ".numbers", ".sticky", ".markov", ".counting", ".addition", ".dyck", ".copying"],
)
def test_docstring_examples(module):
    mod = importlib.import_module("scratchllm.data.languages" + module)
    result = doctest.testmod(mod)
    assert result.failed == 0


# ---- specs and the registry ---------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_spec_round_trips(spec):
    lang = get(spec)
    assert get(lang.spec) == lang
    assert lang.spec.startswith(lang.name + ":")
    assert str(lang) == lang.spec
    assert set(lang.params) == {p.key for p in type(lang).param_infos()}


def test_named_specs_from_the_issue():
    assert get("sticky:k=2").k == 2
    m = get("markov:order=3,alphabet=6,branch=2,seed=0")
    assert (m.order, m.alphabet_size, m.branch, m.seed) == (3, 6, 2, 0)
    assert m.alphabet == "\nabcdef"
    assert get("counting:digits=3").digits == 3
    assert get("addition:digits=2").digits == 2
    assert get("dyck:depth=4").depth == 4
    assert get("copy:length=8").length == 8


def test_defaults_fill_omitted_parameters():
    full = get("sticky")
    assert get("sticky:").spec == full.spec
    assert get(" Sticky : k = 2 ").spec == full.spec  # whitespace and case in the name
    assert get("sticky:strict=1").strict is True
    assert get("sticky:stop=0.5").stop == 0.5


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", ["name:key=value", "markov:order=3"]),
        ("nope", ["unknown language 'nope'", "sticky", "markov", "dyck", "copy"]),
        ("markov:order", ["malformed", "'order'", "key=value"]),
        ("markov:order=3,", []),  # a trailing comma is fine (checked below)
        ("markov:=3", ["malformed"]),
        ("markov:foo=1", ["no parameter 'foo'", "order, alphabet, branch, seed, length"]),
        ("markov:order=9", ["order=9", "1..8"]),
        ("markov:order=0", ["order=0", "1..8"]),
        ("markov:order=x", ["order must be an integer", "'x'"]),
        ("markov:order=2,order=3", ["given twice"]),
        ("sticky:stop=1", ["stop=1.0", "strictly between 0.0 and 1.0"]),
        ("sticky:switch=abc", ["switch must be a number"]),
        ("sticky:strict=maybe", ["strict must be true or false"]),
        ("markov:branch=6,alphabet=6", ["branch=6 must be less than alphabet=6"]),
        ("markov:order=8,alphabet=26", ["26**8", "lower the order or the alphabet"]),
        ("copy:length=65", ["length=65", "1..64"]),
        ("counting:count=2", ["count=2", "3..50"]),
    ],
)
def test_spec_errors_say_what_to_do(spec, words):
    if not words:
        assert get(spec).order == 3
        return
    with pytest.raises(ValueError) as err:
        get(spec)
    for word in words:
        assert word in str(err.value)


def test_direct_construction_is_validated_too():
    with pytest.raises(ValueError, match="k=-1 is out of range"):
        L.Sticky(k=-1)
    with pytest.raises(ValueError, match="strict must be bool"):
        L.Sticky(strict=1)
    assert L.Sticky(stop=1 / 3).stop == pytest.approx(1 / 3)


def test_parse_spec_only_splits():
    assert parse_spec("dyck:depth=4,kinds=2") == ("dyck", {"depth": "4", "kinds": "2"})
    assert parse_spec("copy") == ("copy", {})


def test_registry_lists_every_family_with_parameters():
    infos = languages()
    names = [f.name for f in infos]
    assert names == ["sticky", "markov", "counting", "addition", "dyck", "copy"]
    for info in infos:
        assert info.description and info.context_formula
        lang = get(info.name)  # defaults are valid
        assert info.default_spec == lang.spec
        for p in info.params:
            assert p.help
            assert p.check(p.default) == p.default  # the default is in its own range
            assert p.range_text


# ---- hand-made strings --------------------------------------------------------------------

# (spec, text, valid, position, words that must be in the reason)
CASES = [
    # sticky, k=1: runs of at least 2 (the alphabet is abc ABC 012)
    ("sticky:k=1", "aaBB\n", True, None, []),
    ("sticky:k=1", "abcAAA00\n", True, None, []),
    ("sticky:k=1", "aB\n", False, 1, ["switch from lower to upper", "run of 1", "k+1 = 2"]),
    ("sticky:k=1", "aaB\n", False, 3, ["last run of upper has 1 symbol", "k+1 = 2"]),
    ("sticky:k=1", "aax\n", False, 2, ["'x' is not a symbol"]),
    ("sticky:k=1", "aa", False, 2, ["without the end-of-sample marker"]),
    ("sticky:k=1", "\n", False, 0, ["empty sample"]),
    ("sticky:k=1", "aa\nbb\n", False, 3, ["goes on after the end-of-sample marker"]),
    ("sticky:k=1,strict=true", "aaBB00\n", True, None, []),
    ("sticky:k=1,strict=true", "aaaBB\n", False, 2, ["exactly k+1"]),
    ("sticky:k=1,classes=2", "aa00\n", False, 2, ["'0' is not a symbol"]),
    # markov (more in test_markov_verifier_follows_its_table)
    ("markov:order=3,alphabet=6,branch=2,seed=0", "g\n", False, 0, ["'g' is not a symbol"]),
    ("markov:order=3,alphabet=6,branch=2,seed=0", "\n", False, 0, ["empty sample"]),
    # counting, 2 digits
    ("counting", "32,33,34\n", True, None, []),
    ("counting", "98,99\n", True, None, []),
    ("counting", "32,34\n", False, 4, ["expected '3'", "after 32 comes 33"]),
    ("counting", "39,30\n", False, 3, ["expected '4'", "after 39 comes 40"]),
    ("counting", "32\n", False, 2, ["at least two numbers"]),
    ("counting", "32,3\n", False, 4, ["'3' is unfinished", "have 2 digits"]),
    ("counting", "3,4\n", False, 1, ["'3' is unfinished"]),
    ("counting", "03,04\n", False, 0, ["does not start with 0"]),
    ("counting", "99,100\n", False, 1, ["first number cannot be 99"]),
    ("counting", "98,99,100\n", False, 5, ["99 is the largest 2-digit number"]),
    ("counting", "32,331\n", False, 5, ["exactly 2 digits", "comma or the end"]),
    ("counting", "32,,33\n", False, 3, ["expected a digit"]),
    ("counting:digits=1", "0,1,2\n", True, None, []),
    ("counting:digits=1", "8,9,10\n", False, 3, ["9 is the largest"]),
    # addition, 2 digits
    ("addition", "37+45=82\n", True, None, []),
    ("addition", "0+0=0\n", True, None, []),
    ("addition", "99+99=198\n", True, None, []),
    ("addition", "37+45=83\n", False, 7, ["expected '2'", "37+45=82"]),
    ("addition", "37+45=8\n", False, 7, ["unfinished", "37+45=82"]),
    ("addition", "37+45=820\n", False, 8, ["complete", "expected the end"]),
    ("addition", "07+45=52\n", False, 1, ["no leading zeros"]),
    ("addition", "370+45=415\n", False, 2, ["at most 2 digits"]),
    ("addition", "+45=45\n", False, 0, ["a is empty"]),
    ("addition", "37=45\n", False, 2, ["expected a digit or '+'"]),
    ("addition", "37+45\n", False, 5, ["unfinished"]),
    ("addition", "37+45=+\n", False, 6, ["inside the answer"]),
    ("addition:reverse=true", "37+45=28\n", True, None, []),
    ("addition:reverse=true", "99+99=891\n", True, None, []),
    ("addition:reverse=true", "37+45=82\n", False, 6, ["expected '2'"]),
    # dyck, depth 2, kinds 2, at most 3 pairs
    ("dyck:depth=2,kinds=2,pairs=3", "([])\n", True, None, []),
    ("dyck:depth=2,kinds=2,pairs=3", "()[]()\n", True, None, []),
    ("dyck:depth=2,kinds=2,pairs=3", "([)]\n", False, 2, ["')' does not match '['", "position 1"]),
    ("dyck:depth=2,kinds=2,pairs=3", "())\n", False, 2, ["closes nothing"]),
    ("dyck:depth=2,kinds=2,pairs=3", "(([]))\n", False, 2, ["deeper than depth=2"]),
    ("dyck:depth=2,kinds=2,pairs=3", "([]\n", False, 3, ["'(' opened at position 0", "never"]),
    ("dyck:depth=2,kinds=2,pairs=3", "()()()()\n", False, 6, ["at most pairs=3"]),
    ("dyck:depth=2,kinds=2,pairs=3", "({})\n", False, 1, ["'{' is not a symbol"]),
    ("dyck:depth=2,kinds=2,pairs=3", "\n", False, 0, ["empty sample"]),
    # copy, length 3 over abc
    ("copy:length=3,alphabet=3", "abc|abc\n", True, None, []),
    ("copy:length=3,alphabet=3", "abc|abb\n", False, 6, ["expected 'c'", "position 2"]),
    ("copy:length=3,alphabet=3", "ab|ab\n", False, 2, ["separator after 2 symbols"]),
    ("copy:length=3,alphabet=3", "abca|abca\n", False, 3, ["expected '|'"]),
    ("copy:length=3,alphabet=3", "abc|ab\n", False, 6, ["copy has 2 of 3"]),
    ("copy:length=3,alphabet=3", "abc|abca\n", False, 7, ["copy is complete"]),
    ("copy:length=3,alphabet=3", "abc\n", False, 3, ["before the separator"]),
    ("copy:length=3,alphabet=3", "abd|abd\n", False, 2, ["'d' is not a symbol"]),
]


@pytest.mark.parametrize("spec, text, valid, position, words", CASES)
def test_verifier_on_hand_made_strings(spec, text, valid, position, words):
    verdict = get(spec).verify(text)
    assert verdict.valid is valid
    assert bool(verdict) is valid
    if valid:
        assert verdict.position is None
    else:
        if position is not None:
            assert verdict.position == position, verdict
        assert isinstance(verdict.position, int)
    for word in words:
        assert word in verdict.reason, verdict.reason


def test_markov_verifier_follows_its_table():
    lang = get("markov:order=2,alphabet=3,branch=1,seed=0")
    table = lang.transitions
    # Walk the table by hand: it allows exactly one letter per context.
    ctx, text = END * 2, ""
    for _ in range(5):
        (ch,) = table[ctx]
        text += ch
        ctx = ctx[1:] + ch
    assert lang.verify(text + END).valid
    wrong = next(c for c in "abc" if c != table[END * 2])
    bad = lang.verify(wrong + END)
    assert (bad.valid, bad.position) == (False, 0)
    assert "cannot follow the context" in bad.reason


# Regular expressions as an independent verifier where the language is regular: sticky runs
# (a lookahead keeps strict runs from touching a run of the same class) and copy (a
# backreference).
PEER_REGEX = {
    "sticky:k=2": r"(?:[a-c]{3,}|[A-C]{3,}|[0-2]{3,})+\n",
    "sticky:k=1,strict=true": r"(?:[a-c]{2}(?![a-c])|[A-C]{2}(?![A-C])|[0-2]{2}(?![0-2]))+\n",
    "sticky:k=0,classes=2,size=2,strict=true": r"(?:[ab](?![ab])|[AB](?![AB]))+\n",
    "copy:length=4,alphabet=3": r"([abc]{4})\|\1\n",
}


@settings(max_examples=300, deadline=None)
@given(
    spec=st.sampled_from(sorted(PEER_REGEX)),
    seed=st.integers(0, 10**6),
    edits=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 99), st.integers(0, 99)), max_size=3
    ),
)
def test_verifier_agrees_with_a_regex_peer(spec, seed, edits):
    """Valid samples with a few random edits (replace, insert, delete): our verdict on each
    string must be the regex's."""
    lang = get(spec)
    chars = list(lang.sample(random.Random(seed)))
    for op, where, what in edits:
        i, ch = where % (len(chars) + 1), lang.alphabet[what % len(lang.alphabet)]
        if op == 0 and i < len(chars):
            chars[i] = ch
        elif op == 1:
            chars.insert(i, ch)
        elif chars and i < len(chars):
            del chars[i]
    text = "".join(chars)
    expected = re.fullmatch(PEER_REGEX[spec], text) is not None
    assert lang.verify(text).valid is expected, text


def test_verify_rejects_non_strings():
    with pytest.raises(TypeError, match="takes a str"):
        get("copy").verify(b"ab|ab\n")


# ---- samples ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_samples_are_valid_and_well_formed(spec):
    lang = get(spec)
    assert lang.alphabet == "".join(sorted(set(lang.alphabet))) and END in lang.alphabet
    rng = random.Random(1)
    for _ in range(300):
        s = lang.sample(rng)
        assert s.endswith(END) and s.count(END) == 1 and len(s) > 1
        assert set(s) <= set(lang.alphabet)
        verdict = lang.verify(s)
        assert verdict.valid, (s, verdict)
        assert len(lang.answer_mask(s)) == len(s)


@pytest.mark.parametrize("spec", ["sticky", "markov", "counting", "addition", "dyck", "copy"])
def test_numpy_generator_and_determinism(spec):
    lang = get(spec)
    a = [lang.sample(np.random.default_rng(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2]  # same generator state, same sample
    rng = np.random.default_rng(5)
    many = [lang.sample(rng) for _ in range(50)]
    assert all(lang.verify(s).valid for s in many)
    assert len(set(many)) > 1
    assert lang.samples(20, seed=3) == lang.samples(20, seed=3)
    assert lang.samples(20, seed=3) != lang.samples(20, seed=4)
    assert lang.corpus(20, seed=3) == "".join(lang.samples(20, seed=3))


def test_sample_rejects_a_non_rng():
    with pytest.raises(TypeError, match="random.Random"):
        get("sticky").sample(42)


def test_every_sample_is_used_in_full_by_the_sampler():
    """The samplers reach every option the rule allows (no valid string is impossible)."""
    lang = get("dyck:depth=2,kinds=2,pairs=2")
    seen = set(lang.samples(3000, seed=0))
    every = {p + END for p, allowed in _valid_prefixes(lang, 4).items() if END in allowed}
    assert seen == every  # 12 strings: ()  []  ()()  ([]) ... all of them appear


def test_markov_table_is_a_function_of_the_seed():
    a = get("markov:seed=1").transitions
    assert a == get("markov:seed=1").transitions
    assert a != get("markov:seed=2").transitions
    for ctx, allowed in a.items():
        assert len(ctx) == 3 and len(allowed) == 2 and allowed == "".join(sorted(allowed))
        assert END not in ctx.lstrip(END)  # END only as the padding at the start


def test_sticky_char_class():
    lang = get("sticky:classes=3,size=2")
    assert [lang.char_class(c) for c in "aB1\n"] == ["lower", "upper", "digit", "end"]
    with pytest.raises(ValueError, match="'c' is not a symbol"):
        lang.char_class("c")


# ---- next_distribution ------------------------------------------------------------------


def _prefixes_of(samples):
    for s in samples:
        body = s[:-1]
        for i in range(len(s)):
            yield body[:i], s[i]


@pytest.mark.parametrize("spec", SPECS)
def test_next_distribution_is_a_distribution_over_exactly_the_allowed_symbols(spec):
    lang = get(spec)
    checked = set()
    for prefix, _ in _prefixes_of(lang.samples(60, seed=2)):
        if prefix in checked:
            continue
        checked.add(prefix)
        dist = lang.next_distribution(prefix)
        assert math.isclose(sum(dist.values()), 1.0, abs_tol=1e-12)
        assert all(p > 0 for p in dist.values())
        assert set(dist) == lang.allowed_next(prefix)


def _chi2_bound(df: int, z: float = 4.0) -> float:
    """An upper quantile of chi-square(df) (Wilson-Hilferty), z standard deviations out."""
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


@pytest.mark.parametrize(
    "spec",
    [
        "sticky:k=1",
        "sticky:k=1,strict=true",
        "markov:order=2,alphabet=4,branch=2,length=6",
        "counting:digits=2,count=3",
        "addition:digits=2",
        "dyck:depth=2,pairs=4",
        "copy:length=2,alphabet=3",
    ],
)
def test_next_distribution_matches_sampling_frequencies(spec):
    """Pool every position by its predicted distribution; in each pool with enough data the
    observed next symbols must pass a chi-square test against the prediction."""
    lang = get(spec)
    pools: dict[tuple, Counter] = defaultdict(Counter)
    for prefix, ch in _prefixes_of(lang.samples(2000, seed=7)):
        dist = lang.next_distribution(prefix)
        pools[tuple(sorted(dist.items()))][ch] += 1
    tested = 0
    for key, observed in pools.items():
        n = sum(observed.values())
        if len(key) < 2 or n < 200:
            continue
        stat = sum((observed[ch] - n * p) ** 2 / (n * p) for ch, p in key)
        assert stat < _chi2_bound(len(key) - 1), (key, observed)
        tested += 1
    assert tested >= 1


# ---- verdict positions agree with the distribution ---------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    spec=st.sampled_from(SPECS),
    seed=st.integers(0, 10**6),
    cut=st.floats(0, 1, exclude_max=True),
    pick=st.integers(0, 100),
)
def test_a_changed_symbol_is_caught_exactly_where_it_breaks_the_rule(spec, seed, cut, pick):
    lang = get(spec)
    s = lang.sample(random.Random(seed))
    j = int(cut * len(s))
    ch = lang.alphabet[pick % len(lang.alphabet)]
    text = s[:j] + ch + s[j + 1 :]
    verdict = lang.verify(text)
    p_ch = lang.next_distribution(s[:j]).get(ch, 0.0)
    if p_ch == 0:
        assert (verdict.valid, verdict.position) == (False, j)
    else:
        assert verdict.valid or verdict.position > j
    # position is the length of the longest prefix that is still the start of a valid sample
    if not verdict.valid:
        head = text[: verdict.position]
        if END in head:  # the text went on after a complete sample
            assert head.endswith(END) and lang.verify(head).valid
        else:
            allowed = lang.allowed_next(head)  # raises if head is not a valid start
            if verdict.position < len(text):
                assert text[verdict.position] not in allowed


def test_next_distribution_errors():
    lang = get("copy:length=2,alphabet=2")
    assert lang.next_distribution("ab|") == {"a": 1.0}
    assert lang.next_distribution("") == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="not the start of a valid copy sample"):
        lang.next_distribution("ab|b")
    with pytest.raises(ValueError, match="contains the end-of-sample marker"):
        lang.next_distribution("ab|ab\nab")
    with pytest.raises(ValueError, match="'z' at position 0 is not a symbol"):
        lang.next_distribution("z")


def test_known_distributions_by_hand():
    sticky = get("sticky:k=1,classes=2,size=2,stop=0.2,switch=0.5")
    assert sticky.next_distribution("a") == {"a": 0.5, "b": 0.5}  # run of 1: must go on
    dist = sticky.next_distribution("ab")  # run of 2: end 0.2, switch 0.4, stay 0.4
    assert dist == pytest.approx({END: 0.2, "A": 0.2, "B": 0.2, "a": 0.2, "b": 0.2})
    counting = get("counting:digits=2,count=3")
    assert counting.next_distribution("") == pytest.approx(
        {str(d): (10 if d < 9 else 9) / 89 for d in range(1, 10)}
    )
    assert counting.next_distribution("98,99") == {END: 1.0}
    assert counting.next_distribution("12,13") == {END: 0.5, ",": 0.5}
    addition = get("addition:digits=1")
    assert addition.next_distribution("7") == {"+": 1.0}
    assert addition.next_distribution("7+8=") == {"1": 1.0}
    dyck = get("dyck:depth=1,kinds=2,pairs=2,stop=0.25")
    assert dyck.next_distribution("") == {"(": 0.5, "[": 0.5}
    assert dyck.next_distribution("[") == {"]": 1.0}
    assert dyck.next_distribution("[]") == {"(": 0.375, "[": 0.375, END: 0.25}
    assert dyck.next_distribution("[]()") == {END: 1.0}


# ---- context_needed ------------------------------------------------------------------------

EXHAUSTIVE = [
    # (spec, maxlen of the enumeration; None: every valid sample is shorter)
    ("sticky:k=0,size=1", 7),
    ("sticky:k=1,size=1", 9),
    ("sticky:k=2,classes=2,size=1", 12),
    ("sticky:k=3,classes=2,size=1,strict=true", 16),
    ("sticky:k=0,classes=2,size=1,strict=true", 8),
    ("markov:order=1,alphabet=3,branch=1", 8),
    ("markov:order=2,alphabet=4,branch=2", 9),
    ("markov:order=3,alphabet=3,branch=2,seed=3", 10),
    ("markov:order=4,alphabet=2,branch=1,seed=9", 16),
    ("counting:digits=1", None),
    ("addition:digits=1", None),
    ("addition:digits=1,reverse=true", None),
    ("dyck:depth=1,kinds=1,pairs=3", None),
    ("dyck:depth=2,kinds=2,pairs=3", None),
    ("dyck:depth=3,kinds=1,pairs=5", None),
    ("copy:length=1,alphabet=3", None),
    ("copy:length=3,alphabet=2", None),
]


@pytest.mark.parametrize("spec, maxlen", EXHAUSTIVE)
def test_context_needed_is_exact_over_every_valid_prefix(spec, maxlen):
    """A window of context_needed - 1 symbols determines the allowed next symbols for every
    valid prefix; one symbol less does not (two prefixes share a window but not the rule)."""
    lang = get(spec)
    prefixes = _valid_prefixes(lang, maxlen if maxlen is not None else 10**6)
    w = lang.context_needed - 1
    assert _window_conflict(prefixes.items(), w) is None
    assert _window_conflict(prefixes.items(), w - 1) is not None


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec", ["addition:digits=2", "addition:digits=2,reverse=true", "counting:digits=2,count=9"]
)
def test_context_needed_is_exact_for_two_digit_arithmetic(spec):
    lang = get(spec)
    prefixes = _valid_prefixes(lang, 10**6)
    w = lang.context_needed - 1
    assert _window_conflict(prefixes.items(), w) is None
    assert _window_conflict(prefixes.items(), w - 1) is not None


@pytest.mark.parametrize("seed", range(25))
def test_every_markov_table_really_has_its_order(seed):
    lang = get(f"markov:order=2,alphabet=2,branch=1,seed={seed}")  # tiny: often degenerate
    prefixes = _valid_prefixes(lang, 12)
    assert _window_conflict(prefixes.items(), 2) is None
    assert _window_conflict(prefixes.items(), 1) is not None


@pytest.mark.parametrize(
    "spec, n_samples",
    [
        ("markov:order=3,alphabet=4,branch=2,seed=0", 400),
        ("markov:order=2,alphabet=6,branch=3,seed=1", 400),
        ("sticky:k=2,size=2", 400),
        ("sticky:k=1,strict=true", 300),
        ("counting:digits=2", 400),
        ("copy:length=3,alphabet=2", 300),
    ],
)
def test_context_needed_holds_on_a_sampled_corpus(spec, n_samples):
    """In a corpus stream (samples concatenated, so windows cross into the previous sample),
    the allowed next symbols are a function of the last context_needed - 1 symbols, and the
    corpus itself shows that one symbol fewer is not enough."""
    lang = get(spec)
    corpus = lang.corpus(n_samples, seed=11)
    observations, start = [], 0
    for i in range(len(corpus)):
        if i > 0 and corpus[i - 1] == END:
            start = i
        # the whole stream so far as history, the current sample's part for the rule
        observations.append((corpus[max(0, i - 40) : i], lang.allowed_next(corpus[start:i])))
    w = lang.context_needed - 1
    with_first = observations[len(corpus) // n_samples * 2 :]  # skip the stream's first samples
    assert _window_conflict(with_first, w) is None
    assert _window_conflict(with_first, w - 1) is not None


# ---- masks and corpora ---------------------------------------------------------------------


def test_answer_masks():
    mask = get("addition").answer_mask("37+45=82\n")
    assert mask == [False] * 6 + [True] * 3
    assert get("copy:length=2").answer_mask("ab|ab\n") == [False] * 3 + [True] * 3
    assert get("sticky").answer_mask("aaa\n") == [True] * 4
    with pytest.raises(ValueError, match="no '='"):
        get("addition").answer_mask("37+45\n")


def test_split_samples_and_verify_corpus():
    assert split_samples("ab\ncd\nef") == ["ab\n", "cd\n", "ef"]
    assert split_samples("ab\n\n") == ["ab\n", "\n"]
    assert split_samples("") == []
    lang = get("copy:length=1,alphabet=2")
    corpus = lang.corpus(30, seed=0)
    assert split_samples(corpus) == lang.samples(30, seed=0)
    verdicts = lang.verify_corpus(corpus + "a|b\na|")
    assert [v.valid for v in verdicts] == [True] * 30 + [False, False]
    assert verdicts[-1].position == 2 and "without the end-of-sample marker" in verdicts[-1].reason
