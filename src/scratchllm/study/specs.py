"""What the study trains: model specs, sized by a budget, and the directories they go in.

**Model specs** follow the language specs' form, ``family:key=value,...``: ``bigram``
(= ``ngram:n=2``), ``trigram`` (= ``ngram:n=3``), ``ngram:n=K``, ``mlp[:n=K]``, ``rnn``,
``gru``, ``lstm``, ``gpt[:n_layer=...]``; any field of the family's config may be set
(``gpt:n_layer=1,n_head=1``). ``build_model`` makes one through ``models.build``, with
the widths a spec does not set solved so its parameter count lands near the budget's
target (``fit_width``). Counting n-grams have no trained weights; their "parameters" are
the counts they store. They get a tiny add-k (``Budget.smoothing``) so that a context seen
many times is not blurred toward invalid symbols by Laplace's pseudo-counts.

**Directory names.** A spec becomes a directory name as typed, with any character other
than letters, digits and ``:=,._+-`` percent-encoded (``urllib.parse.quote``), so the name
reads like the spec and ``spec_from_dir_name`` gives it back; on Windows ``:`` is encoded
too.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scratchllm.configs.models import MODEL_NAMES, config_defaults
from scratchllm.study.budgets import Budget

FAMILIES = MODEL_NAMES  # gpt, mlp, rnn, gru, lstm, ngram (the cells name the rnn family)
ALIASES = {"bigram": ("ngram", {"n": 2}), "trigram": ("ngram", {"n": 3})}
MODEL_EXAMPLE = "gpt:n_layer=1,n_head=2"


@dataclass(frozen=True)
class ModelSpec:
    """A model as the user named it: ``text`` as typed, the family and the values set."""

    text: str
    family: str  # one of FAMILIES (rnn, gru and lstm are cells of the "rnn" model family)
    values: tuple[tuple[str, Any], ...] = ()

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.values)


def parse_model_spec(text: str) -> ModelSpec:
    """Read ``bigram``, ``ngram:n=5``, ``mlp:n=4``, ``lstm``, ``gpt:n_layer=1``, ...

    >>> parse_model_spec("trigram")
    ModelSpec(text='trigram', family='ngram', values=(('n', 3),))
    >>> parse_model_spec("gpt:n_layer=1,dropout=0.1").overrides
    {'n_layer': 1, 'dropout': 0.1}
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"a model spec looks like 'family:key=value,...'; got {text!r}")
    text = text.strip()
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    values: dict[str, Any] = {}
    if name in ALIASES:
        name, preset = ALIASES[name]
        values.update(preset)
    if name not in FAMILIES:
        choices = ", ".join([*ALIASES, *FAMILIES])
        raise ValueError(
            f"unknown model {name!r} in {text!r}; choose one of: {choices} "
            f"(with settings, e.g. {MODEL_EXAMPLE!r})"
        )
    fields = config_defaults(name)  # settable fields -> default (the type a value parses to)
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = (s.strip() for s in part.partition("="))
        if not eq or not key or not raw:
            raise ValueError(
                f"malformed setting {part!r} in model spec {text!r}: expected key=value, "
                f"e.g. {MODEL_EXAMPLE!r}"
            )
        if key not in fields:
            raise ValueError(
                f"{name} has no setting {key!r} (in {text!r}); its settings are: "
                f"{', '.join(sorted(fields))}"
            )
        values[key] = _parse_value(key, raw, fields[key], text)
    return ModelSpec(text, name, tuple(sorted(values.items())))


def _parse_value(key: str, raw: str, default: Any, spec: str) -> Any:
    kind = type(default)
    if kind is bool:
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{key} must be true or false in {spec!r}, got {raw!r}")
    if kind is str:
        return raw
    kind = int if default is None else kind  # ffn_hidden: None means 4 * n_embd
    try:
        return kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{key} must be {what} in {spec!r}, got {raw!r}") from None


# The widths the budget solves for, and the budget's sizes for the rest, per family.
def _sized(spec: ModelSpec, budget: Budget) -> tuple[str | None, dict[str, Any], int]:
    """``(width field to solve or None, base values, width step)`` of a spec."""
    o = spec.overrides
    if spec.family == "ngram":
        return None, {"smoothing": budget.smoothing, **o}, 1
    if spec.family == "mlp":
        return "n_hidden", {"n_embd": budget.mlp_embd, **o}, 1
    if spec.family in ("rnn", "gru", "lstm"):
        base = {
            "n_layer": budget.rnn_layers,
            "n_embd": budget.rnn_embd,
            "block_size": budget.block_size,
            "fast": True,  # torch's fused kernels: the same numbers, faster
            **o,
        }
        return "n_hidden", base, 1
    heads = o.get("n_head", budget.gpt_heads)
    base = {"n_layer": budget.gpt_layers, "n_head": heads, "block_size": budget.block_size, **o}
    # n_embd must split evenly into heads, of an even size for rotary positions (pairs)
    return "n_embd", base, heads * (2 if o.get("pos") == "rope" else 1)


def build_model(spec: ModelSpec, vocab_size: int, budget: Budget) -> Any:
    """The model a spec names, for ``vocab_size`` symbols, sized by ``budget``
    (``models.build``).

    Widths the spec does not set are solved so the parameter count lands near
    ``budget.target_params`` (``fit_width``).
    """
    from scratchllm import models

    width, base, step = _sized(spec, budget)
    base["vocab_size"] = vocab_size
    if width is None:
        return models.build(spec.family, **base)

    def make(w: int) -> Any:
        return models.build(spec.family, **{width: w, **base})

    return _solved(make, width in spec.overrides, budget.target_params, step)


def _solved(make: Callable[[int], Any], fixed: bool, target: int, step: int) -> Any:
    if fixed:
        return make(step)  # the spec sets the width; `make` ignores this one
    return make(fit_width(lambda w: make(w).num_parameters(), target, step))


def fit_width(count: Callable[[int], int], target: int, step: int = 1) -> int:
    """The multiple of ``step`` whose ``count(width)`` is nearest ``target``.

    ``count`` must grow with the width (parameter counts do), so a binary search finds it.

    >>> fit_width(lambda w: w * w, 50)      # 7 * 7 = 49 is nearest 50
    7
    >>> fit_width(lambda w: 10 * w, 55, step=4)   # 4 -> 40, 8 -> 80: 40 is nearer
    4
    """
    lo, hi = 1, 1  # in units of step
    while count(hi * step) < target:
        lo, hi = hi, hi * 2
        if hi > 1 << 20:
            raise ValueError(f"no width reaches {target} parameters")
    while hi - lo > 1:  # count(lo * step) < target <= count(hi * step), or lo == hi == 1
        mid = (lo + hi) // 2
        if count(mid * step) < target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda u: (abs(count(u * step) - target), u))
    return best * step


# -- directory names ---------------------------------------------------------------------------

_SAFE = "=,._+-" + ("" if os.name == "nt" else ":")


def dir_name(spec: str) -> str:
    """A directory name for a spec: the spec itself, odd characters percent-encoded.

    >>> dir_name("sticky:k=2"), dir_name("my lang/1")
    ('sticky:k=2', 'my%20lang%2F1')
    """
    name = urllib.parse.quote(spec.strip(), safe=_SAFE)
    if name in ("", ".", ".."):
        raise ValueError(f"spec {spec!r} cannot name a directory")
    return name


def spec_from_dir_name(name: str) -> str:
    """The spec a ``dir_name`` came from.

    >>> spec_from_dir_name(dir_name("a b:c=1"))
    'a b:c=1'
    """
    return urllib.parse.unquote(name)
