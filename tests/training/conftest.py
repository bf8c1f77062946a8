"""Shared fixtures for the training tests: a tiny character dataset and tiny models."""

from __future__ import annotations

import pytest
import torch

from scratchllm.data import TokenDataset
from scratchllm.models import GPT, GPTConfig
from scratchllm.tokenizers import CharTokenizer
from scratchllm.training import TrainConfig

TEXT = "the quick brown fox jumps over the lazy dog. " * 40 + "pack my box with jugs.\n" * 40


@pytest.fixture(scope="session")
def char_data(tmp_path_factory) -> TokenDataset:
    tok = CharTokenizer.train(TEXT)
    return TokenDataset.from_text(TEXT, tok, tmp_path_factory.mktemp("chardata"))


def tiny_gpt(vocab_size: int, seed: int = 0, dropout: float = 0.0, block_size: int = 16) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(
        vocab_size=vocab_size,
        n_layer=1,
        n_head=2,
        n_embd=16,
        block_size=block_size,
        dropout=dropout,
    )
    return GPT(cfg)


def tiny_config(out_dir, **changes) -> TrainConfig:
    values = dict(
        max_iters=6,
        batch_size=4,
        block_size=8,
        lr=3e-3,
        min_lr=3e-4,
        eval_interval=3,
        eval_iters=2,
        log_interval=1,
        device="cpu",
        progress=False,
        out_dir=str(out_dir),
    )
    values.update(changes)
    return TrainConfig(**values)
