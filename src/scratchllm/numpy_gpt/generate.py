"""Text generation in NumPy: greedy decoding and sampling, with the KV cache.

The same loop as ``scratchllm.generation.generate`` (and the same answers): each step
asks the model for the next-token logits (the prompt once, then one token at a time
through ``forward_step``; past ``block_size`` the window slides and is prefilled
afresh), then

1. the repetition penalty (HF's: a seen token's logit is divided by ``penalty`` when
   positive, multiplied when negative),
2. when sampling: ``logits / temperature``, top-k (keep the k largest and ties), top-p
   (keep the most likely tokens until the ones above hold ``top_p`` of the mass),
3. the argmax (greedy: ``temperature=0`` or ``do_sample=False``) or one draw by inverse
   CDF: ``token = first i with cdf[i] > u * cdf[-1]``.

**The random numbers are PyTorch's.** Row ``b`` draws from a Mersenne Twister seeded
``seed + b`` exactly as ``torch.Generator().manual_seed(seed + b)`` is, and turns each
32-bit output into a float as ``torch.rand`` does (its low 24 bits / 2^24), so with the
same weights both engines sample the same tokens.

>>> from scratchllm.configs import GPTConfig
>>> from scratchllm.numpy_gpt.model import NumpyGPT
>>> model = NumpyGPT(GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=8, vocab_size=5))
>>> out = generate(model, [[1, 2, 3]], max_new_tokens=4, top_k=3, seed=0)
>>> out.shape, out[0, :3].tolist()
((1, 7), [1, 2, 3])
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

# -- the logits processors ------------------------------------------------------------------


def repetition_penalty(ids: np.ndarray, logits: np.ndarray, penalty: float) -> np.ndarray:
    """Lower the logits of tokens already in ``ids [B, T]`` (CTRL; each token once)."""
    seen = np.take_along_axis(logits, ids, axis=-1)  # (B, T)
    seen = np.where(seen < 0, seen * penalty, seen / penalty)
    out = logits.copy()
    np.put_along_axis(out, ids, seen, axis=-1)  # duplicates write the same value
    return out


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """Keep the ``k`` largest logits per row (and any tied with the k-th); -inf the rest."""
    V = logits.shape[-1]
    k = min(k, V)
    kth = np.partition(logits, V - k, axis=-1)[..., V - k : V - k + 1]  # (B, 1)
    return np.where(logits < kth, -np.inf, logits)


def top_p_filter(logits: np.ndarray, top_p: float, min_tokens_to_keep: int = 1) -> np.ndarray:
    """Nucleus filtering: drop a token when the tokens ranked above it already hold
    ``top_p`` of the probability (the most likely token always stays).

    Summed from the least likely end, as the PyTorch processor does, so a ``top_p`` near
    1 does not drop tokens by rounding.

    >>> top_p_filter(np.log(np.array([[0.5, 0.3, 0.2]])), 0.7).round(2).tolist()
    [[-0.69, -1.2, -inf]]
    """
    order = np.argsort(logits, axis=-1, kind="stable")  # (B, V) ascending
    s = np.take_along_axis(logits, order, axis=-1)
    p = np.exp(s - s[..., -1:])
    mass_at_or_below = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)
    drop_sorted = mass_at_or_below <= 1.0 - top_p
    drop_sorted[..., -min_tokens_to_keep:] = False
    drop = np.empty_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, axis=-1)  # back to vocabulary order
    return np.where(drop, -np.inf, logits)


class TorchCompatibleRandom:
    """``torch.rand(1, generator=torch.Generator().manual_seed(seed))``'s stream in NumPy.

    Both are the 32-bit Mersenne Twister with ``init_genrand(seed)``; PyTorch keeps the
    low 32 bits of a seed and makes a float32 from the low 24 bits of one output.

    >>> r = TorchCompatibleRandom(0)
    >>> round(r.uniform(), 6)       # torch.rand(1, generator=...manual_seed(0)): 0.496257
    0.496257
    """

    def __init__(self, seed: int) -> None:
        self._state = np.random.RandomState(int(seed) & 0xFFFFFFFF)

    def uniform(self) -> float:
        raw = int(self._state.randint(0, 2**32, dtype=np.uint32))  # one 32-bit output
        return (raw & 0xFFFFFF) * 2.0**-24


def sample_from(logits: np.ndarray, uniforms: Sequence[float]) -> np.ndarray:
    """One token per row by inverse CDF (float32, as the PyTorch loop computes it)."""
    z = logits.astype(np.float32)
    z = z - z.max(axis=-1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=-1, keepdims=True)
    cdf = np.cumsum(probs, axis=-1, dtype=np.float32)  # (B, V)
    u = np.asarray(uniforms, dtype=np.float32)
    target = u * cdf[:, -1]  # scaled by the total to absorb rounding
    tokens = np.array([np.searchsorted(row, t, side="right") for row, t in zip(cdf, target)])
    return np.minimum(tokens, logits.shape[-1] - 1)


# -- prompts ----------------------------------------------------------------------------------


def prepare_prompts(
    idx: Any, attention_mask: np.ndarray | None, pad_token_id: int | None, vocab_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [B, T], pad_lens [B])``: the prompts left-padded into one batch."""
    if isinstance(idx, np.ndarray):
        ids = idx[None, :] if idx.ndim == 1 else idx
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"prompt ids must be integers of shape (B, T), got {idx.shape}")
        if ids.size == 0:
            raise ValueError("empty prompt: give at least one token, e.g. a BOS id")
        if attention_mask is None:
            pad_lens = np.zeros(len(ids), dtype=np.int64)
        else:
            mask = np.asarray(attention_mask).reshape(ids.shape).astype(bool)
            if (mask[:, 1:] < mask[:, :-1]).any():
                raise ValueError(
                    "attention_mask has padding after a real token; decoder-only generation "
                    "needs left padding (pad at the start of each row)"
                )
            pad_lens = (~mask).sum(axis=1)
            if (pad_lens == ids.shape[1]).any():
                raise ValueError("a prompt row is all padding; give at least one token per row")
        ids = ids.astype(np.int64)
    else:
        if attention_mask is not None:
            raise ValueError("attention_mask goes with an array of prompts; lists are padded")
        rows = list(idx)
        if rows and all(isinstance(x, int | np.integer) for x in rows):
            rows = [rows]
        if not rows or any(len(r) == 0 for r in rows):
            raise ValueError("empty prompt: give at least one token, e.g. a BOS id")
        T = max(len(r) for r in rows)
        pad_lens = np.array([T - len(r) for r in rows])
        if pad_lens.any() and pad_token_id is None:
            raise ValueError(
                "prompts of different lengths need pad_token_id (or eos_token_id) to fill the "
                "left padding of the returned array"
            )
        fill = 0 if pad_token_id is None else pad_token_id
        ids = np.array([[fill] * n + [int(x) for x in r] for n, r in zip(pad_lens, rows)])
    real = np.arange(ids.shape[1])[None, :] >= pad_lens[:, None]
    bad = ids[real][(ids[real] < 0) | (ids[real] >= vocab_size)]
    if bad.size:
        raise ValueError(
            f"prompt token id {int(bad[0])} is outside the model's vocabulary [0, {vocab_size})"
        )
    return ids, pad_lens


# -- the loop ---------------------------------------------------------------------------------


class DecodeLoop:
    """One greedy/sampling run: the token buffer, the cache, the processors, the RNGs."""

    def __init__(
        self,
        model: Any,
        ids: np.ndarray,
        pad_lens: np.ndarray,
        max_new_tokens: int,
        *,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        repetition_penalty: float,
        do_sample: bool | None,
        eos_token_id: Sequence[int],
        fill: int | None,
        use_cache: bool,
        seed: int | Sequence[int] | None,
    ) -> None:
        B, T = ids.shape
        self.model, self.B, self.T = model, B, T
        self.prompt = ids
        self.pad_lens = pad_lens
        self.max_pad = int(pad_lens.max())
        self.real = np.arange(T)[None, :] >= pad_lens[:, None]  # (B, T)
        self.seq = np.empty((B, T + max_new_tokens), dtype=np.int64)
        first = ids[np.arange(B), pad_lens]  # each row's first real token fills its pads,
        self.seq[:, :T] = np.where(self.real, ids, first[:, None])  # which the penalty reads
        self.cur = T
        self.ctx = model.context_length
        self.capacity = min(self.ctx, T + max_new_tokens)
        self.use_cache = use_cache
        self.state, self.start, self.prefilled = None, 0, False
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.penalty = repetition_penalty
        self.sampling = temperature != 0 and (do_sample is None or do_sample)
        if self.sampling:
            seeds = _seeds(seed, B)
            self.rngs = [TorchCompatibleRandom(s) for s in seeds]
        self.eos = np.asarray(eos_token_id, dtype=np.int64)
        self.fill = fill
        self.tracks_end = self.eos.size > 0
        self.ended = np.zeros(B, dtype=bool)

    def next_logits(self) -> np.ndarray:
        """``[B, V]``: the logits of the token after ``seq[:, :cur]``."""
        cur, model = self.cur, self.model
        if not self.use_cache:
            return self._forward_window()
        if not self.prefilled:
            self.prefilled = True
            self.start = max(0, cur - self.ctx)
            self.state = model.new_state(self.B, self.capacity)
            return self._prefill()
        if cur - self.start > self.capacity:  # the cache is full: slide the window
            self.start = cur - self.ctx
            self.state = model.new_state(self.B, self.ctx)
            return self._prefill()
        return model.forward_step(self.seq[:, cur - 1 : cur], self.state)[:, -1]

    def _pad_mask(self, start: int) -> np.ndarray | None:
        if start >= self.max_pad:
            return None
        mask = self.real[:, start:]
        if self.cur > self.T:  # generated columns are real
            mask = np.concatenate([mask, np.ones((self.B, self.cur - self.T), bool)], axis=1)
        return mask

    def _prefill(self) -> np.ndarray:
        window = self.seq[:, self.start : self.cur]
        return self.model.forward_step(window, self.state, self._pad_mask(self.start))[:, -1]

    def _forward_window(self) -> np.ndarray:
        start = max(0, self.cur - self.ctx)
        if start >= self.max_pad:
            return self.model(self.seq[:, start : self.cur])[0][:, -1]
        rows = []
        for b in range(self.B):  # padding in the window: each row alone on its real tokens
            first = max(start, int(self.pad_lens[b]))
            rows.append(self.model(self.seq[b : b + 1, first : self.cur])[0][:, -1])
        return np.concatenate(rows, axis=0)

    def step(self) -> np.ndarray:
        """Choose, record and return the next token of every row, ``[B]``."""
        logits = self.next_logits()
        if self.penalty != 1.0:
            logits = repetition_penalty(self.seq[:, : self.cur], logits, self.penalty)
        if self.sampling:
            if self.temperature != 1.0:
                logits = logits / self.temperature
            if self.top_k is not None:
                logits = top_k_filter(logits, self.top_k)
            if self.top_p is not None and self.top_p < 1.0:
                logits = top_p_filter(logits, self.top_p)
            tokens = sample_from(logits, [r.uniform() for r in self.rngs])
        else:
            tokens = logits.argmax(axis=-1)
        if self.tracks_end:
            if self.fill is not None:
                tokens = np.where(self.ended, self.fill, tokens)  # ended rows are padded
            self.ended |= np.isin(tokens, self.eos)
        self.seq[:, self.cur] = tokens
        self.cur += 1
        return tokens

    def result(self) -> np.ndarray:
        out = self.seq[:, : self.cur].copy()
        out[:, : self.T] = self.prompt
        return out


def _seeds(seed: int | Sequence[int] | None, B: int) -> list[int]:
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**62))  # fresh, local to this call
    if isinstance(seed, int | np.integer):
        return [int(seed) + b for b in range(B)]
    seeds = [int(s) for s in seed]
    if len(seeds) != B:
        raise ValueError(f"seed has {len(seeds)} entries for {B} prompts; give one each")
    return seeds


def _check(max_new_tokens, temperature, top_k, top_p, repetition_penalty, eos_token_id, pad):
    n = max_new_tokens
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if temperature is None or not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if not repetition_penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0 (1.0 = off), got {repetition_penalty}")
    eos = () if eos_token_id is None else (
        (eos_token_id,) if isinstance(eos_token_id, int) else tuple(eos_token_id)
    )  # fmt: skip
    if any(not isinstance(e, int | np.integer) or e < 0 for e in eos):
        raise ValueError(f"eos_token_id must be ids >= 0, got {eos_token_id!r}")
    if pad is not None and (not isinstance(pad, int | np.integer) or pad < 0):
        raise ValueError(f"pad_token_id must be an id >= 0, got {pad!r}")
    return eos


def _loop(model, idx, max_new_tokens, **kw) -> DecodeLoop:
    eos = _check(
        max_new_tokens, kw["temperature"], kw["top_k"], kw["top_p"],
        kw["repetition_penalty"], kw.pop("eos_token_id"), kw["pad_token_id"],
    )  # fmt: skip
    pad = kw.pop("pad_token_id")
    fill = pad if pad is not None else (eos[0] if eos else None)
    if fill is not None and fill >= model.vocab_size:
        raise ValueError(
            f"pad/eos id {fill} is outside the model's vocabulary [0, {model.vocab_size}); "
            "ended rows are fed it, so it must be a real token id"
        )
    ids, pad_lens = prepare_prompts(idx, kw.pop("attention_mask"), fill, model.vocab_size)
    longest = ids.shape[1] - int(pad_lens.min())
    if longest > model.context_length:
        warnings.warn(
            f"prompt of {longest} tokens is longer than the model's context_length "
            f"{model.context_length}; only its last {model.context_length} tokens condition "
            "the output",
            stacklevel=3,
        )
    was_training = model.training
    model.eval()
    try:
        return DecodeLoop(model, ids, pad_lens, max_new_tokens, eos_token_id=eos, fill=fill, **kw)
    finally:
        model.train(was_training)


def generate(
    model: Any,
    idx: np.ndarray | Sequence[int] | Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    do_sample: bool | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    attention_mask: np.ndarray | None = None,
    use_cache: bool = True,
    seed: int | Sequence[int] | None = None,
) -> np.ndarray:
    """Continue each prompt by up to ``max_new_tokens`` tokens; return ids ``[B, T + n]``.

    ``idx``: an int array ``[B, T]`` (``attention_mask`` 0 marks left padding), one list of
    ids, or a list of id lists of any lengths (left-padded with ``pad_token_id``, default
    the eos id). ``temperature=0`` or ``do_sample=False`` is greedy. A row that emits an
    eos id keeps it and is padded after it; the loop ends when every row has ended.
    """
    loop = _loop(
        model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        repetition_penalty=repetition_penalty, do_sample=do_sample, eos_token_id=eos_token_id,
        pad_token_id=pad_token_id, attention_mask=attention_mask, use_cache=use_cache, seed=seed,
    )  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            loop.step()
            if loop.tracks_end and loop.ended.all():
                break
    finally:
        model.train(was_training)
    return loop.result()


def stream_tokens(
    model: Any,
    prompt: Sequence[int],
    max_new_tokens: int,
    **kwargs: Any,
) -> Iterator[int]:
    """Generate for one prompt, yielding each new token id as it is chosen; an eos id
    ends the stream and is not yielded. Takes ``generate``'s keyword arguments."""
    kw = dict(
        temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.0, do_sample=None,
        eos_token_id=None, pad_token_id=None, attention_mask=None, use_cache=True, seed=None,
    )  # fmt: skip
    unknown = sorted(set(kwargs) - set(kw))
    if unknown:
        raise TypeError(f"stream_tokens() got unexpected keyword arguments {unknown}")
    kw.update(kwargs)
    loop = _loop(model, prompt, max_new_tokens, **kw)
    if loop.B != 1:
        raise ValueError(f"stream_tokens takes one prompt, got {loop.B}; use generate() for many")
    eos = set(loop.eos.tolist())
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            token = int(loop.step()[0])
            if token in eos:
                return
            yield token
    finally:
        model.train(was_training)
