"""The one shape every synthetic language has.

A language is a frozen dataclass whose fields are its parameters. It can

- ``sample(rng)``: draw one sample (a ``random.Random`` or a NumPy ``Generator``);
- ``verify(text)``: say whether ``text`` is one valid sample, and if not, where and why;
- ``next_distribution(prefix)``: the true probabilities of the next symbol;
- ``context_needed``: the smallest n for which a counting n-gram model (conditioning on the
  n - 1 previous symbols of the corpus stream) can produce only valid samples.

Every sample ends with exactly one ``END`` ("\\n"), and a corpus is samples concatenated, so at
the start of a sample the previous sample's tail and its END are in an n-gram's window. END never
occurs inside a sample, which makes it an anchor: a window that contains an END shows the whole
current sample so far. The rule only has to be decidable from windows without one.

Each family writes its rule once, as a small state machine (``_start``, ``_advance``, ``_end``),
and the base class derives ``verify``, ``allowed_next`` and ``next_distribution`` from it. The
sampler is written separately, as the natural generating process, so tests can hold the two
against each other.

``Verdict.position`` has one precise meaning: the length of the longest prefix of the text that
is still the start of some valid sample. So the character at ``position`` is the first one that
no valid sample could have there (or, when the text is a valid but unfinished sample,
``position == len(text)``).
"""

from __future__ import annotations

import dataclasses
import functools
import random
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

END = "\n"  # the end-of-sample marker


class RandomSource(Protocol):
    """Anything with ``random() -> float`` in [0, 1): ``random.Random``, a NumPy Generator."""

    def random(self) -> float: ...


@dataclass(frozen=True)
class Verdict:
    """Whether a text is one valid sample; if not, the first offending index and why.

    >>> Verdict(False, 3, "')' closes '[' opened at position 1")
    Verdict(valid=False, position=3, reason="')' closes '[' opened at position 1")
    """

    valid: bool
    position: int | None = None  # first offending index; None when valid
    reason: str = "valid"

    def __bool__(self) -> bool:
        return self.valid


VALID = Verdict(True, None, "valid")


@dataclass(frozen=True)
class Reject:
    """What a rule returns instead of a new state when a symbol cannot come next."""

    reason: str


def param(
    default: Any, low: Any, high: Any, help: str, key: str | None = None, alias: bool = False
) -> Any:
    """A language parameter: a dataclass field with its range and a one-line help.

    Integers are checked against the closed range ``low..high``; floats against the open
    interval ``low < x < high`` (probabilities of 0 or 1 would make some valid strings
    impossible to sample, so the sampler and the rule would disagree). ``key`` is the name in
    spec strings when it differs from the attribute (``alphabet`` is also the symbol string).
    ``alias``: an old way to say what another parameter says (``addition``'s ``reverse=true``
    is ``format=reverse``); it is still read, but the canonical spec leaves it out.
    """
    meta = {"low": low, "high": high, "help": help, "key": key, "alias": alias}
    return dataclasses.field(default=default, metadata=meta)


def choice(default: str, choices: tuple[str, ...], help: str, key: str | None = None) -> Any:
    """A language parameter that takes one of a few names, e.g. ``format=plain|reverse``."""
    if default not in choices:
        raise ValueError(f"default {default!r} is not one of the choices {choices}")
    meta = {"low": None, "high": None, "help": help, "key": key, "choices": tuple(choices)}
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of a language family, as ``scratchllm data languages`` lists it."""

    key: str  # the name in a spec string
    attr: str  # the dataclass field
    type: type
    default: Any
    low: Any
    high: Any
    help: str
    choices: tuple[str, ...] = ()  # the names a choice parameter takes (empty otherwise)
    alias: bool = False  # read from specs, left out of the canonical one

    @property
    def range_text(self) -> str:
        if self.choices:
            return "|".join(self.choices)
        if self.type is bool:
            return "true|false"
        if self.type is float:
            return f"{self.low}<x<{self.high}"
        return f"{self.low}..{self.high}"

    def format(self, value: Any) -> str:
        """The value as a spec string writes it (``true``, ``3``, ``0.25``)."""
        if self.type is bool:
            return "true" if value else "false"
        return repr(value) if self.type is float else str(value)

    def parse(self, text: str) -> Any:
        """Read a value from a spec string, with an error that names the parameter."""
        text = text.strip()
        if self.choices:
            return self._check_choice(text.lower())
        if self.type is bool:
            low = text.lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise ValueError(f"{self.key} must be true or false, got {text!r}")
        try:
            return self.type(text)
        except ValueError:
            kind = "an integer" if self.type is int else "a number"
            raise ValueError(f"{self.key} must be {kind}, got {text!r}") from None

    def check(self, value: Any) -> Any:
        """Check type and range; return the value (ints are accepted for floats)."""
        if self.choices:
            return self._check_choice(value)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is bool:
            ok_type = isinstance(value, bool)
        else:
            ok_type = isinstance(value, self.type) and not isinstance(value, bool)
        if not ok_type:
            raise ValueError(f"{self.key} must be {self.type.__name__}, got {value!r}")
        if self.type is int and not self.low <= value <= self.high:
            raise ValueError(f"{self.key}={value} is out of range: use {self.low}..{self.high}")
        if self.type is float and not self.low < value < self.high:
            raise ValueError(
                f"{self.key}={value} is out of range: use a value strictly between "
                f"{self.low} and {self.high}"
            )
        return value

    def _check_choice(self, value: Any) -> str:
        if value not in self.choices:
            raise ValueError(f"{self.key} must be one of {', '.join(self.choices)}; got {value!r}")
        return value


def randbelow(rng: RandomSource, n: int) -> int:
    """A uniform integer in ``0..n-1`` from ``rng.random()`` (works for both RNG kinds)."""
    return min(int(rng.random() * n), n - 1)


def check_rng(rng: Any) -> RandomSource:
    if not callable(getattr(rng, "random", None)):
        raise TypeError(
            f"sample() needs a random.Random or numpy.random.Generator, got {type(rng).__name__}"
            " (make one with random.Random(seed) or numpy.random.default_rng(seed))"
        )
    return rng


class Language(ABC):
    """Base class of the language families; subclasses are frozen dataclasses.

    Subclasses set ``name``, ``description`` and ``context_formula``, declare their parameters
    with :func:`param`, and implement ``alphabet``, ``context_needed``, ``sample`` and the rule
    (``_start``, ``_advance``, ``_end`` and, where known, ``_next``).
    """

    name: ClassVar[str]
    description: ClassVar[str]  # one line, for `scratchllm data languages`
    context_formula: ClassVar[str]  # how context_needed follows from the parameters
    END: ClassVar[str] = END

    # ---- parameters -------------------------------------------------------------------

    def __post_init__(self) -> None:
        for info in self.param_infos():
            object.__setattr__(self, info.attr, info.check(getattr(self, info.attr)))
        self._check()

    def _check(self) -> None:  # noqa: B027 (a hook: most families have nothing to add)
        """Cross-parameter rules and derived state (set with ``object.__setattr__``)."""

    @classmethod
    def param_infos(cls) -> tuple[ParamInfo, ...]:
        infos = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if "help" not in f.metadata:
                continue  # derived state, not a parameter
            m = f.metadata
            infos.append(
                ParamInfo(
                    key=m["key"] or f.name,
                    attr=f.name,
                    type=type(f.default),
                    default=f.default,
                    low=m["low"],
                    high=m["high"],
                    help=m["help"],
                    choices=m.get("choices", ()),
                    alias=m.get("alias", False),
                )
            )
        return tuple(infos)

    @property
    def params(self) -> dict[str, Any]:
        """Parameter values by their spec names, e.g. ``{"k": 2, "classes": 3, ...}``."""
        return {p.key: getattr(self, p.attr) for p in self.param_infos()}

    @property
    def spec(self) -> str:
        """The canonical spec string, with every parameter but aliases: ``get(lang.spec) ==
        lang``."""
        infos = [p for p in self.param_infos() if not p.alias]
        parts = [f"{p.key}={p.format(getattr(self, p.attr))}" for p in infos]
        return f"{self.name}:{','.join(parts)}"

    def __str__(self) -> str:
        return self.spec

    # ---- what each family provides ----------------------------------------------------

    @property
    @abstractmethod
    def alphabet(self) -> str:
        """Every symbol a sample can contain, END included, sorted."""

    @property
    @abstractmethod
    def context_needed(self) -> int:
        """The smallest n for which a counting n-gram model can produce only valid samples."""

    @abstractmethod
    def sample(self, rng: RandomSource) -> str:
        """One sample, ending with END; deterministic for a given RNG state."""

    @abstractmethod
    def _start(self) -> Hashable:
        """The rule's state before the first symbol (an immutable value)."""

    @abstractmethod
    def _advance(self, state: Any, ch: str) -> Any:
        """The state after ``ch`` (a symbol of the alphabet, never END), or a ``Reject``."""

    @abstractmethod
    def _end(self, state: Any) -> Reject | None:
        """A ``Reject`` if the sample cannot end in ``state``, else None."""

    def _next(self, state: Any) -> dict[str, float] | None:
        """The true next-symbol distribution in a reachable state, or None if unknown."""
        return None

    # ---- derived from the rule ----------------------------------------------------------

    def verify(self, text: str) -> Verdict:
        """Is ``text`` exactly one valid sample (ending with END)?

        ``position`` is the first index at which no valid sample could continue like the text.
        """
        if not isinstance(text, str):
            raise TypeError(f"verify() takes a str, got {type(text).__name__}")
        symbols = self._symbols()
        state = self._start()
        for i, ch in enumerate(text):
            if ch not in symbols:
                return Verdict(False, i, f"{ch!r} is not a symbol of {self.name} ({self._abc()})")
            if ch == END:
                bad = self._end(state)
                if bad is not None:
                    return Verdict(False, i, bad.reason)
                if i + 1 < len(text):
                    return Verdict(
                        False,
                        i + 1,
                        f"text goes on after the end-of-sample marker at position {i}; "
                        "split a corpus into samples with split_samples() or verify_corpus()",
                    )
                return VALID
            state = self._advance(state, ch)
            if isinstance(state, Reject):
                return Verdict(False, i, state.reason)
        allowed = self._allowed(state)
        hint = "".join(sorted(allowed - {END}))
        more = f" (it could go on with one of {hint!r})" if hint else ""
        return Verdict(
            False, len(text), f"the sample ends without the end-of-sample marker {END!r}{more}"
        )

    def verify_corpus(self, text: str) -> list[Verdict]:
        """One verdict per sample of a concatenated corpus (see :func:`split_samples`)."""
        return [self.verify(s) for s in split_samples(text)]

    def allowed_next(self, prefix: str) -> frozenset[str]:
        """The symbols (END included) that keep ``prefix`` the start of a valid sample."""
        return self._allowed(self._run(prefix))

    def next_distribution(self, prefix: str) -> dict[str, float] | None:
        """True probabilities of the symbol after ``prefix`` (the current sample so far).

        >>> from scratchllm.data.languages import get
        >>> get("copy:length=2,alphabet=2").next_distribution("ab|")
        {'a': 1.0}
        """
        return self._next(self._run(prefix))

    def answer_mask(self, sample: str) -> list[bool]:
        """One flag per character: True where a model should be scored (all, by default)."""
        return [True] * len(sample)

    def samples(self, n: int, seed: int = 0) -> list[str]:
        """``n`` samples from ``random.Random(seed)``."""
        rng = random.Random(seed)
        return [self.sample(rng) for _ in range(n)]

    def corpus(self, n: int, seed: int = 0) -> str:
        """``n`` samples concatenated: the text a model trains on."""
        return "".join(self.samples(n, seed))

    # ---- helpers ----------------------------------------------------------------------

    @functools.cached_property
    def _symbol_set(self) -> frozenset[str]:
        # cached_property writes the instance __dict__ directly, which a frozen dataclass allows
        return frozenset(self.alphabet)

    def _symbols(self) -> frozenset[str]:
        return self._symbol_set

    def _abc(self) -> str:
        return f"alphabet {self.alphabet!r}"

    def _allowed(self, state: Any) -> frozenset[str]:
        out = {
            ch
            for ch in self.alphabet
            if ch != END and not isinstance(self._advance(state, ch), Reject)
        }
        if self._end(state) is None:
            out.add(END)
        return frozenset(out)

    def _run(self, prefix: str) -> Any:
        """The rule's state after ``prefix``; a clear ValueError if it is not a valid start."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        if END in prefix:
            raise ValueError(
                f"prefix {prefix!r} contains the end-of-sample marker; pass only the current "
                "sample so far (the text after the last END)"
            )
        symbols = self._symbols()
        state = self._start()
        for i, ch in enumerate(prefix):
            if ch not in symbols:
                raise ValueError(
                    f"prefix {prefix!r}: {ch!r} at position {i} is not a symbol of {self.name} "
                    f"({self._abc()})"
                )
            state = self._advance(state, ch)
            if isinstance(state, Reject):
                raise ValueError(
                    f"prefix {prefix!r} is not the start of a valid {self.name} sample: "
                    f"at position {i}: {state.reason}"
                )
        return state


def split_samples(text: str) -> list[str]:
    """Split a corpus (or a generated stream) into samples, each keeping its END.

    A trailing piece without END (a stream cut off mid-sample) is kept as the last element, so
    it verifies as invalid rather than vanishing.

    >>> split_samples("ab\\ncd\\nef")
    ['ab\\n', 'cd\\n', 'ef']
    """
    parts = text.split(END)
    out = [p + END for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out
