"""Helpers for the server tests: a tiny trained GPT, a chat template of the server's
``ChatFormat`` shape, a raw HTTP helper for what the official client would never send, and
the pieces of the many-clients tests (a request left open, a client that hangs up, waiting
for the server's state, the library's own answer)."""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import torch

from scratchllm.checkpoint import load_checkpoint
from scratchllm.generation import generate
from scratchllm.models import GPT, GPTConfig
from scratchllm.serving import ServerConfig
from scratchllm.serving.engine import Engine
from scratchllm.tokenizers import CharTokenizer

LONG = 200_000  # tokens: a request that would run for minutes if nobody stopped it

# Role marks of the test chat template: characters no training text holds.
USER, ASSISTANT, END = "\x01", "\x02", "\x03"


def training_text() -> str:
    """About 30 KB of English: docstrings of a few standard modules (no files, no download)."""
    import collections
    import functools
    import itertools
    import json as json_module
    import textwrap

    docs = [json_module.__doc__, textwrap.__doc__, collections.__doc__, functools.__doc__]
    for module in (json_module, textwrap, functools, itertools, collections):
        for name in sorted(dir(module)):
            doc = getattr(getattr(module, name), "__doc__", None)
            if isinstance(doc, str) and not name.startswith("_"):
                docs.append(doc)
    text = "\n\n".join(d.strip() for d in docs if d)
    return "".join(c for c in text if c.isascii() and (c.isprintable() or c == "\n"))[:30000]


def train_tiny_gpt(text: str, steps: int = 200, seed: int = 0) -> tuple[GPT, CharTokenizer]:
    """A 2-layer, 4-head character GPT trained for a few seconds on ``text``: it has learned
    which characters are common, not words, which is all these tests need."""
    torch.manual_seed(seed)
    tok = CharTokenizer.train(text + USER + ASSISTANT + END)
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    T = 32
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=2, n_head=4, n_embd=64)
    model = GPT(config)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, len(data) - T - 1, (8,), generator=g)
        x = torch.stack([data[s : s + T] for s in starts])  # (B, T)
        y = torch.stack([data[s + 1 : s + T + 1] for s in starts])
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval(), tok


class RoleTemplate:
    """A chat template of the shape the server's ``ChatFormat`` asks for: each message is
    its role mark, its text and END; the prompt ends with the assistant mark."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        self.tokenizer = tokenizer

    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        marks = {"system": USER, "developer": USER, "user": USER, "assistant": ASSISTANT}
        return "".join(marks[m["role"]] + m["content"] + END for m in messages) + ASSISTANT

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tokenizer.encode(self.prompt_text(messages))

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        return (self.tokenizer.encode(END)[0],)


def make_engine(checkpoint: Path, chat: bool = False, **config) -> Engine:
    ckpt = load_checkpoint(checkpoint)
    template = RoleTemplate(ckpt.tokenizer) if chat else None
    return Engine(ckpt.model, ckpt.tokenizer, "tiny", ServerConfig(port=0, **config), template)


def raw(server, method: str, path: str, body=None, headers=None, timeout: float = 30):
    """``(status, headers, parsed JSON or text)`` for one request sent byte for byte."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    if isinstance(body, dict | list):
        body = json.dumps(body)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read().decode("utf-8")
        content_type = response.getheader("content-type", "")
        parsed = json.loads(data) if content_type.startswith("application/json") else data
        return response.status, dict(response.getheaders()), parsed
    finally:
        conn.close()


def health(server) -> dict:
    return raw(server, "GET", "/health")[2]


def expected(reference, prompt, max_tokens, **kw):
    tok = reference.tokenizer
    ids = tok.encode(prompt)
    out = generate(reference.model, [ids], max_tokens, **kw)
    return tok.decode(out[0, len(ids) :].tolist())


def open_stream(server, body, path="/v1/completions", wait=True):
    """Send a request and return ``(connection, response)`` without reading the body
    (``wait=False``: without waiting for the headers either; response is None)."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return conn, conn.getresponse() if wait else None


def leave(conn):
    """Hang up the way a killed client does."""
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()


def wait_until(predicate, timeout: float) -> float:
    """Seconds until ``predicate()`` held; fails after ``timeout``."""
    t0 = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t0 > timeout:
            raise AssertionError(f"still not true after {timeout} s")
        time.sleep(0.02)
    return time.perf_counter() - t0
