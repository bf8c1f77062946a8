"""Fixtures for the server tests: a tiny trained checkpoint, real uvicorn servers on free
loopback ports, and the official ``openai`` client (helpers: serving_util.py)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from serving_util import make_engine, train_tiny_gpt, training_text

from scratchllm.checkpoint import load_checkpoint, save_checkpoint
from scratchllm.serving import Server


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A run directory with a trained tiny character GPT in ``last/``."""
    model, tok = train_tiny_gpt(training_text())
    run = tmp_path_factory.mktemp("runs") / "tiny"
    save_checkpoint(run / "last", model, tok)
    return run


@pytest.fixture
def serve(checkpoint):
    """``with serve(chat=True, max_queue=1) as server:`` a real uvicorn on a free port."""

    @contextlib.contextmanager
    def start(chat: bool = False, **config):
        with Server(make_engine(checkpoint, chat=chat, **config)) as server:
            yield server

    return start


@pytest.fixture(scope="module")
def server(checkpoint):
    """One shared server with the chat template, for the tests that only send requests."""
    with Server(make_engine(checkpoint, chat=True)) as s:
        yield s


@pytest.fixture
def client(server):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="session")
def reference(checkpoint):
    """The same checkpoint loaded again: expected outputs from the library itself."""
    return load_checkpoint(checkpoint)
