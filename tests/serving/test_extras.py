"""The learner's endpoints: tokens and their texts, the rendered chat prompt, attention
weights; the health report; and the page, whose files carry no external address."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import torch
from serving_util import END, RoleTemplate, health, raw


def test_health_describes_the_model(server, reference):
    info = health(server)
    assert info["status"] == "ok" and info["model"] == "tiny" and info["family"] == "gpt"
    assert info["vocab_size"] == reference.tokenizer.vocab_size
    assert info["context_length"] == reference.model.context_length
    assert info["parameters"] == sum(p.numel() for p in reference.model.parameters())
    assert info["chat"] is True
    config = reference.model.config
    assert info["attention"] == {"n_layer": config.n_layer, "n_head": config.n_head}
    queue = {"running", "waiting", "max_queue", "served", "cancelled", "batches", "joined"}
    assert set(info["queue"]) == queue


def test_tokenize_and_detokenize_round_trip(server, reference):
    text = "Return the value."
    status, _, out = raw(server, "POST", "/tokenize", {"text": text})
    assert status == 200
    assert out["ids"] == reference.tokenizer.encode(text)
    assert out["tokens"] == list(text) and out["count"] == len(text)  # a character tokenizer
    status, _, back = raw(server, "POST", "/detokenize", {"ids": out["ids"]})
    assert status == 200 and back["text"] == text


def test_tokenize_errors(server):
    assert raw(server, "POST", "/tokenize", {"text": 5})[0] == 400
    assert raw(server, "POST", "/tokenize", {"text": "\u4e2d"})[2]["error"]["param"] == "text"
    status, _, body = raw(server, "POST", "/detokenize", {"ids": [10**9]})
    assert status == 400 and "vocabulary" in body["error"]["message"]
    assert raw(server, "POST", "/detokenize", {"ids": "abc"})[0] == 400
    assert raw(server, "POST", "/tokenize", {"words": "a"})[2]["error"]["param"] == "words"


def test_the_rendered_chat_prompt(server, reference):
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    status, _, out = raw(server, "POST", "/chat/render", {"messages": messages})
    template = RoleTemplate(reference.tokenizer)
    assert status == 200
    assert out["prompt"] == template.prompt_text(messages)
    assert out["ids"] == template.prompt_ids(messages)
    assert END in out["prompt"]
    status, _, tokens = raw(server, "POST", "/tokenize", {"messages": messages})
    assert tokens["ids"] == out["ids"] and tokens["prompt"] == out["prompt"]
    assert raw(server, "POST", "/chat/render", {"messages": []})[0] == 400


def test_attention_equals_the_models_weights(server, reference):
    text = "Return the"
    status, _, out = raw(server, "POST", "/attention", {"text": text})
    assert status == 200
    config = reference.model.config
    assert (out["n_layer"], out["n_head"]) == (config.n_layer, config.n_head)
    T = len(text)
    weights = torch.tensor(out["attention"])
    assert weights.shape == (config.n_layer, config.n_head, T, T)
    ids = torch.tensor([reference.tokenizer.encode(text)])
    want = reference.model.attention_weights(ids)[:, 0]
    torch.testing.assert_close(weights, want, atol=1e-4, rtol=0)
    assert torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-3)  # rows sum to 1
    assert torch.all(weights.triu(1) == 0)  # causal: nothing from later tokens
    assert out["tokens"] == list(text) and out["dropped"] == 0


def test_attention_keeps_the_last_tokens_of_a_long_text(server, reference):
    ctx = reference.model.context_length
    text = "abc " * 40
    out = raw(server, "POST", "/attention", {"text": text})[2]
    assert out["count"] == ctx and out["dropped"] == len(text) - ctx
    assert "".join(out["tokens"]) == text[-ctx:]


def test_attention_of_a_model_without_it(tmp_path):
    from scratchllm.models import load as load_model  # noqa: F401  (registers families)
    from scratchllm.models.ngram import NGram, NGramConfig
    from scratchllm.serving import Server, ServerConfig
    from scratchllm.serving.engine import Engine
    from scratchllm.tokenizers import CharTokenizer

    tok = CharTokenizer.train("abc")
    model = NGram(NGramConfig(n=2, vocab_size=tok.vocab_size))
    with Server(Engine(model, tok, "bigram", ServerConfig(port=0))) as s:
        status, _, body = raw(s, "POST", "/attention", {"text": "ab"})
        assert status == 400 and body["error"]["code"] == "no_attention"
        assert health(s)["attention"] is None
        r = raw(s, "POST", "/v1/completions", {"model": "bigram", "prompt": "a", "max_tokens": 3})
        assert r[0] == 200 and r[2]["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/", "text/html"), ("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")],
)
def test_the_page_and_its_files(server, path, kind):
    status, headers, text = raw(server, "GET", path)
    assert status == 200 and headers["content-type"].startswith(kind)
    assert len(text) > 500
    assert raw(server, "GET", "/static/secret.py")[0] == 404


def test_the_page_needs_nothing_from_the_network():
    folder = resources.files("scratchllm.serving").joinpath("static")
    for name in ("index.html", "app.js", "style.css"):
        text = folder.joinpath(name).read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.I), name
        assert "@import" not in text
