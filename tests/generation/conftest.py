"""Test models for generation: a tiny causal attention model with a KV-like state.

``ToyLM`` implements the language-model contract on its own (forward, and when
``incremental`` the new_state/forward_step path with left-padding masks and a state that
can be reordered for beam search), so the decode loop is tested apart from the real GPT.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn


class ToyState:
    def __init__(self, B: int, L: int, C: int) -> None:
        self.k = torch.zeros(B, L, C)
        self.v = torch.zeros(B, L, C)
        self.real = torch.zeros(B, L, dtype=torch.bool)
        self.pos = torch.zeros(B, dtype=torch.long)  # next position (real tokens so far)
        self.n = 0  # slots used

    def reorder(self, index: torch.Tensor) -> None:
        for name in ("k", "v", "real", "pos"):
            setattr(self, name, getattr(self, name).index_select(0, index))


class ToyLM(nn.Module):
    """One attention layer with learned positions; logits spread enough to be decisive."""

    def __init__(
        self, vocab_size: int = 13, ctx: int = 8, C: int = 16, seed: int = 0, incremental=True
    ):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.vocab_size, self.context_length, self.C = vocab_size, ctx, C
        self.incremental = incremental
        self.emb = nn.Parameter(torch.randn(vocab_size, C, generator=g))
        self.pos = nn.Parameter(torch.randn(ctx, C, generator=g))
        self.qkv = nn.Parameter(torch.randn(C, 3 * C, generator=g) / math.sqrt(C))
        self.head = nn.Parameter(torch.randn(C, vocab_size, generator=g) * 2 / math.sqrt(C))
        self.calls = 0

    def _out(self, x, q, k, v, allowed):
        att = (q @ k.transpose(1, 2)) / math.sqrt(self.C)  # (B, Tq, Tk)
        att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
        return torch.tanh(x + att @ v) @ self.head

    def forward(self, idx, targets=None, loss_mask=None):
        self.calls += 1
        B, T = idx.shape
        if self.context_length < T:
            raise ValueError(f"T={T} > context {self.context_length}")
        x = self.emb[idx] + self.pos[:T]
        q, k, v = (x @ self.qkv).split(self.C, dim=-1)
        allowed = torch.ones(T, T, dtype=torch.bool).tril()[None]
        return self._out(x, q, k, v, allowed), None

    def new_state(self, batch_size, max_length):
        if not self.incremental:
            return None
        if max_length > self.context_length:
            raise ValueError("state longer than the context")
        return ToyState(batch_size, max_length, self.C)

    def forward_step(self, idx, state, pad_mask=None):
        self.calls += 1
        B, T = idx.shape
        real = torch.ones(B, T, dtype=torch.bool) if pad_mask is None else pad_mask.bool()
        positions = (state.pos[:, None] + real.cumsum(1) - 1).clamp(min=0)  # (B, T)
        if int(positions.max()) >= self.context_length:
            raise ValueError("position past the context")
        state.pos = state.pos + real.sum(1)
        x = self.emb[idx] + self.pos[positions]
        q, k, v = (x @ self.qkv).split(self.C, dim=-1)
        s, e = state.n, state.n + T
        state.k[:, s:e], state.v[:, s:e], state.real[:, s:e] = k, v, real
        state.n = e
        slot_q = torch.arange(s, e)[:, None]
        slot_k = torch.arange(e)[None, :]
        allowed = (state.real[:, None, :e] & (slot_k <= slot_q)) | (slot_k == slot_q)
        return self._out(x, q, state.k[:, :e], state.v[:, :e], allowed)


def reference_greedy(model, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding the obvious way: forward on the last context_length tokens."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            window = torch.tensor([seq[-model.context_length :]])
            seq.append(int(model(window)[0][0, -1].argmax()))
    return seq


class ByteTokenizer:
    """Token i decodes to ``pieces[i]`` (bytes); text is their UTF-8 decoding."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.pieces[i] for i in ids).decode("utf-8", errors="replace")


@pytest.fixture
def toy():
    return ToyLM


@pytest.fixture
def greedy_ref():
    return reference_greedy


@pytest.fixture
def byte_tokenizer():
    return ByteTokenizer
