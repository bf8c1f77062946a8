"""Growing a trained model's vocabulary, for special tokens added to its tokenizer.

Chat fine-tuning adds role and turn-end tokens (``tokenizer.with_special_tokens``) at ids
after every existing one, so the model's rows for old ids keep their meaning and only new
rows are needed: in the input embedding, in the output head (the same matrix when tied),
and in the head's bias where there is one. ``grow_vocab`` appends them in place and sets
``config.vocab_size``, so the model saves and loads at its new size.

**How new rows start** (``init``):

- ``"mean"`` (default): the mean of the existing rows, plus ``noise`` times each
  dimension's standard deviation times N(0, 1) (seeded). The logit of a new token is
  then (with ``noise=0``) exactly the mean of the old logits, because a logit is linear
  in its head row (and bias). By Jensen, exp(mean z) <= mean exp(z), so each new token
  gets at most 1/V of the probability the old tokens had, and the old tokens' predictions
  move by at most log(1 + k/V) nats for k new tokens: the grown model is the old model,
  plus k tokens it rarely predicts until training teaches it when to. As an input, a new
  token looks like an average token, the most neutral vector the model knows. This is
  Hewitt's (2021) argument and what ``transformers``' ``resize_token_embeddings`` does by
  default (``mean_resizing=True``: it samples N(mean, 1e-9 covariance)); the tests hold
  the two equal. The small noise (1 % of a dimension's spread by default) only makes the
  new rows distinct from each other before the first step.
- ``"zeros"``: zero rows. A zero head row gives logit 0 (plus the bias mean), which can be
  far above the typical logit, so the new tokens may take much of the probability before
  any training; it is here for comparison.

The counting n-gram has no rows: growing it renumbers its sparse tables, and the new
tokens have count 0 (with add-k smoothing they get k, as a model fitted at the new size).

>>> from scratchllm.models import GPT, GPTConfig
>>> model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=5))
>>> model = grow_vocab(model, 7)
>>> model.config.vocab_size, tuple(model.transformer.wte.weight.shape)
(7, (7, 8))
>>> model.lm_head.weight is model.transformer.wte.weight   # still tied
True
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import nn

from scratchllm.models.base import LanguageModel

if TYPE_CHECKING:
    from scratchllm.tokenizers.base import Tokenizer

INITS = ("mean", "zeros")


def grow_vocab(
    model: LanguageModel,
    new_size: int | Tokenizer,
    init: str = "mean",
    noise: float = 0.01,
    seed: int = 0,
) -> LanguageModel:
    """Give ``model`` rows for ids ``vocab_size .. new_size - 1`` (in place); return it.

    ``new_size`` is a vocabulary size or the tokenizer whose ``vocab_size`` to reach. The
    same size is a no-op; a smaller one is an error (that would drop tokens). ``init`` and
    ``noise`` are described in the module docstring; ``seed`` makes the noise repeatable.
    Parameters are replaced by larger ones, so build the optimizer after growing.
    """
    target = getattr(new_size, "vocab_size", new_size)
    if isinstance(target, bool) or not isinstance(target, int):
        raise ValueError(f"new_size must be an int or a tokenizer, got {new_size!r}")
    old = model.config.vocab_size
    if target < old:
        raise ValueError(
            f"cannot shrink the vocabulary from {old} to {target}: ids {target}..{old - 1} "
            "would lose their rows; is this the tokenizer the model was trained with?"
        )
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if not noise >= 0:
        raise ValueError(f"noise ({noise}) must be >= 0")
    if target == old:
        return model
    grow = _Rows(target - old, init, noise, torch.Generator().manual_seed(seed))
    family = getattr(model, "family", None)
    with torch.no_grad():
        if family == "gpt":
            _grow_gpt(model, grow)
        elif family in ("rnn", "mlp"):
            _grow_rnn_or_mlp(model, grow)
        elif family == "ngram":
            _grow_ngram(model, target)
        else:
            raise ValueError(f"grow_vocab does not know the {family!r} model family")
    model.config = dataclasses.replace(model.config, vocab_size=target)
    return model


@dataclasses.dataclass
class _Rows:
    """How to make the new rows: ``k`` of them, by ``init``, with ``noise`` from ``gen``."""

    k: int
    init: str
    noise: float
    gen: torch.Generator

    def matrix(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows [V, C]`` followed by ``k`` new rows: ``[V + k, C]``."""
        V, C = rows.shape
        work = rows.detach().double()
        if self.init == "zeros":
            new = torch.zeros(self.k, C, dtype=torch.float64)
        else:
            mean = work.mean(0)  # (C,)
            spread = work.std(0, correction=0)  # (C,); 0 for a single row
            eps = torch.randn(self.k, C, generator=self.gen, dtype=torch.float64)
            new = mean + self.noise * spread * eps  # (k, C)
        return torch.cat([rows.detach(), new.to(rows.device, rows.dtype)])

    def vector(self, values: torch.Tensor) -> torch.Tensor:
        """A bias ``[V]`` followed by ``k`` entries: its mean (or zeros), no noise."""
        fill = 0.0 if self.init == "zeros" else float(values.detach().double().mean())
        return torch.cat([values.detach(), values.new_full((self.k,), fill)])


def _parameter(like: nn.Parameter, data: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(data.contiguous(), requires_grad=like.requires_grad)


def _grow_linear_out(linear: nn.Linear, grow: _Rows) -> None:
    """More output rows for ``linear`` (``[V, in]`` -> ``[V + k, in]``, bias too)."""
    linear.weight = _parameter(linear.weight, grow.matrix(linear.weight))
    if linear.bias is not None:
        linear.bias = _parameter(linear.bias, grow.vector(linear.bias))
    linear.out_features = linear.weight.shape[0]


def _grow_embedding(emb: nn.Embedding, grow: _Rows, keep_last: int = 0) -> None:
    """More rows for ``emb``; the last ``keep_last`` rows (not tokens) stay last."""
    w = emb.weight
    tokens, tail = (w[:-keep_last], w[-keep_last:]) if keep_last else (w, w[:0])
    emb.weight = _parameter(w, torch.cat([grow.matrix(tokens), tail.detach()]))
    emb.num_embeddings = emb.weight.shape[0]


def _grow_gpt(model: LanguageModel, grow: _Rows) -> None:
    wte, head = model.transformer.wte, model.lm_head
    tied = head.weight is wte.weight
    _grow_embedding(wte, grow)
    if tied:  # one matrix serves both ends: grow it once and tie again
        head.weight = wte.weight
        head.out_features = wte.num_embeddings
    else:
        _grow_linear_out(head, grow)


def _grow_rnn_or_mlp(model: LanguageModel, grow: _Rows) -> None:
    # The MLP's wte has one extra row after the tokens: its learned start embedding.
    _grow_embedding(model.wte, grow, keep_last=1 if model.family == "mlp" else 0)
    _grow_linear_out(model.lm_head, grow)
    if getattr(model, "direct", None) is not None:
        _grow_linear_out(model.direct, grow)


def _grow_ngram(model: LanguageModel, target: int) -> None:
    # Trie edges are keyed node * V + token: renumber them for the new V. The map is
    # increasing (token < V <= target), so the sorted order the lookups rely on holds.
    V = model.config.vocab_size
    keys = model.edge_keys
    model.edge_keys = (keys // V) * target + keys % V


# Per family, the modules whose rows are indexed by token id (what grow_vocab grows).
_VOCAB_MODULES = {
    "gpt": ("transformer.wte", "lm_head"),
    "rnn": ("wte", "lm_head"),
    "mlp": ("wte", "lm_head", "direct"),
}


def vocab_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters whose first dimension is indexed by token id, by name: the token
    embedding, the output head and its bias (and the MLP's direct connections), each
    shared tensor once. A layer wrapped by LoRA is looked through (its ``base_layer``).

    Row ``i`` of each belongs to token ``i`` (the MLP's embedding has one more row, after
    the tokens), so the rows of tokens added by ``grow_vocab`` are ``[old_size, new_size)``
    of every one.
    """
    family = getattr(model, "family", None)
    if family not in _VOCAB_MODULES:
        raise ValueError(f"the {family!r} model family has no vocabulary parameters")
    out: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for name in _VOCAB_MODULES[family]:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue  # e.g. an MLP without direct connections
        if module is None:
            continue
        if hasattr(module, "base_layer"):  # LoRALinear: the rows live in the wrapped layer
            module, name = module.base_layer, f"{name}.base_layer"
        for pname, p in module.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                out[f"{name}.{pname}"] = p
    return out
