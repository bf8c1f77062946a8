"""Serving: an OpenAI-compatible HTTP API and a playground page for any scratchllm checkpoint.

``scratchllm serve CKPT`` is ``Server(load_engine(CKPT, ServerConfig(...))).run()``. The
layers, outermost first:

- ``app``: FastAPI routes, body reading, errors in OpenAI's shape; ``sse``: streams and
  clients that leave;
- ``protocol``: every request field checked (400 naming it); ``responses``: the JSON out;
- ``engine``: prompts to ids, limits, seeds, the job each request gives the worker;
- ``worker``: one model thread behind a bounded queue, cancellation;
- ``choice``: one choice's tokens to text deltas with log-probs, stop strings, stop tokens;
- ``backend``: the only module that calls ``scratchllm.generation``;
- ``fewshot``: the other side: prompting any OpenAI-compatible endpoint with a language.

See docs/serving.md.
"""

from __future__ import annotations

import importlib

# Everything is loaded on first use: `scratchllm --help` reads ServerConfig's defaults
# without importing torch, FastAPI or uvicorn.
_WHERE = {
    "APIError": "errors",
    "Engine": "engine",
    "Server": "server",
    "ServerConfig": "config",
    "create_app": "app",
    "load_engine": "server",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'scratchllm.serving' has no attribute {name!r}")
    return getattr(importlib.import_module(f"scratchllm.serving.{_WHERE[name]}"), name)
