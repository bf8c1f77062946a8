"""The engine's worker thread sets up what the model's calls on it need: torch's thread count
(per thread) and the C++ decode step's knowledge that the server's event loop shares the
cores, so that a small model decodes on one thread there."""

from __future__ import annotations

import threading

import torch

from scratchllm.configs import GPTConfig
from scratchllm.models import GPT, decode_kernel
from scratchllm.models.gpt_decode import build_plan
from scratchllm.serving.config import ServerConfig
from scratchllm.serving.engine import Engine
from scratchllm.tokenizers import CharTokenizer


def test_the_worker_thread_decodes_a_small_model_on_one_thread(monkeypatch):
    monkeypatch.setattr(decode_kernel, "l2_cache_bytes", lambda: 2 << 20)
    tokenizer = CharTokenizer.train("abcdefgh ")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=4, n_head=4,
                       n_embd=128)  # fmt: skip
    model = GPT(config)
    engine = Engine(model, tokenizer, "m", ServerConfig())
    engine.threads = 2  # as if made where torch had two threads
    plan = build_plan(model, 1)  # 3.0 MB of weights: two threads outside a server
    seen = {}

    def bare():
        torch.set_num_threads(2)
        seen["bare"] = decode_kernel.threads_for(plan, 1)

    def worker():
        engine.thread_setup()
        seen["threads"] = torch.get_num_threads()
        seen["worker"] = decode_kernel.threads_for(plan, 1)

    for target in (bare, worker):
        t = threading.Thread(target=target)
        t.start()
        t.join()
    assert seen == {"bare": 2, "threads": 2, "worker": 1}
