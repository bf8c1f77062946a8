"""Rule-based synthetic languages: endless samples, exact verification, known context needs.

A spec string picks a family and its parameters; omitted parameters take their defaults:

>>> from scratchllm.data.languages import get
>>> lang = get("markov:order=3,alphabet=6,branch=2,seed=0")
>>> lang.spec
'markov:order=3,alphabet=6,branch=2,seed=0,length=16'
>>> lang.context_needed
4
>>> import random
>>> text = lang.sample(random.Random(0))
>>> lang.verify(text).valid
True

Families: sticky, markov, counting, addition, dyck, copy (``languages()`` describes each).
"""

from __future__ import annotations

from dataclasses import dataclass

from .addition import Addition
from .base import END, Language, ParamInfo, RandomSource, Verdict, split_samples
from .copying import Copy
from .counting import Counting
from .dyck import Dyck
from .markov import Markov
from .sticky import Sticky

__all__ = [
    "END",
    "FAMILIES",
    "Addition",
    "Copy",
    "Counting",
    "Dyck",
    "FamilyInfo",
    "Language",
    "Markov",
    "ParamInfo",
    "RandomSource",
    "Sticky",
    "Verdict",
    "get",
    "languages",
    "parse_spec",
    "split_samples",
    "verify_text",
]

# name -> class, in the order `scratchllm data languages` lists them
FAMILIES: dict[str, type[Language]] = {
    cls.name: cls for cls in (Sticky, Markov, Counting, Addition, Dyck, Copy)
}

EXAMPLE = "markov:order=3,alphabet=6,branch=2,seed=0"


@dataclass(frozen=True)
class FamilyInfo:
    """One language family as listed by ``languages()``."""

    name: str
    description: str
    params: tuple[ParamInfo, ...]
    context_formula: str  # context_needed in terms of the parameters

    @property
    def default_spec(self) -> str:
        return FAMILIES[self.name]().spec


def languages() -> list[FamilyInfo]:
    """Every family with its parameters (defaults, ranges), context formula and description."""
    return [
        FamilyInfo(cls.name, cls.description, cls.param_infos(), cls.context_formula)
        for cls in FAMILIES.values()
    ]


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``"name:key=value,..."`` into the name and raw values, checking only the form.

    >>> parse_spec("dyck:depth=4,kinds=2")
    ('dyck', {'depth': '4', 'kinds': '2'})
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"a language spec looks like 'name:key=value,...', e.g. {EXAMPLE!r}; got {spec!r}"
        )
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    values: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise ValueError(
                f"malformed parameter {part!r} in spec {spec!r}: expected key=value, "
                f"e.g. {EXAMPLE!r}"
            )
        if key in values:
            raise ValueError(f"parameter {key!r} is given twice in spec {spec!r}")
        values[key] = value
    return name, values


def get(spec: str) -> Language:
    """The language a spec string names, e.g. ``get("sticky:k=2")`` or ``get("copy")``.

    Unknown names and parameters list the valid ones; values out of range give the range.
    """
    name, raw = parse_spec(spec)
    cls = FAMILIES.get(name)
    if cls is None:
        raise ValueError(
            f"unknown language {name!r} in spec {spec!r}; choose one of: {', '.join(FAMILIES)} "
            "(`scratchllm data languages` lists them with their parameters)"
        )
    infos = {p.key: p for p in cls.param_infos()}
    kwargs = {}
    for key, value in raw.items():
        if key not in infos:
            raise ValueError(
                f"{name} has no parameter {key!r}; its parameters are: {', '.join(infos)}"
            )
        kwargs[infos[key].attr] = infos[key].parse(value)
    return cls(**kwargs)


def verify_text(language: Language, text: str) -> tuple[int, list[tuple[int, str, Verdict]]]:
    """Verify every sample of ``text`` (split after each END): ``(number of samples, the
    invalid ones as (1-based index, sample, verdict))``. What ``scratchllm data verify`` does.

    >>> n, bad = verify_text(get("sticky:k=1"), "aaAA\\naA\\n")
    >>> n, [(i, s) for i, s, _ in bad]
    (2, [(2, 'aA\\n')])
    """
    samples = split_samples(text)
    invalid = []
    for i, sample in enumerate(samples, start=1):
        verdict = language.verify(sample)
        if not verdict.valid:
            invalid.append((i, sample, verdict))
    return len(samples), invalid
