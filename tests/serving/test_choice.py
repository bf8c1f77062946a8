"""One choice's tokens to text: with a byte-level BPE whose tokens split characters, and stop
strings that start inside tokens, the deltas still join to exactly the library's text, and
every delta's tokens join to its text."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.generation import stream_generate
from scratchllm.models import GPT, GPTConfig
from scratchllm.serving.choice import Delta, Finish, TokenTexts, run_choice
from scratchllm.serving.protocol import Sampling
from scratchllm.tokenizers import BPETokenizer

TEXT = "café crème, naïve façade 🙂 déjà vu — über straße. " * 20


@pytest.fixture(scope="module")
def bpe_model():
    tok = BPETokenizer.train(TEXT, 300, special_tokens=["<|endoftext|>"])
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)
    ).eval()
    return model, tok


def run(model, tok, prompt, sampling, seed, stop_ids=frozenset()):
    events = list(run_choice(model, TokenTexts(tok), prompt, sampling, seed, stop_ids))
    *deltas, finish = events
    assert isinstance(finish, Finish) and all(isinstance(d, Delta) for d in deltas)
    return deltas, finish


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(0, 30), width=st.integers(1, 3))
def test_deltas_join_to_the_librarys_text(bpe_model, seed, cut, width):
    model, tok = bpe_model
    prompt = tok.encode("café")
    free = Sampling(max_tokens=30, temperature=1.0, logprobs=0)
    deltas, finish = run(model, tok, prompt, free, seed)
    text = "".join(d.text for d in deltas)
    # a stop string taken from the text itself: it often starts inside a token
    stop = text[cut : cut + width] if cut < len(text) else "zz"
    sampling = Sampling(max_tokens=30, temperature=1.0, logprobs=0, stop=(stop,))
    deltas, finish = run(model, tok, prompt, sampling, seed)
    content = "".join(d.text for d in deltas)
    library = "".join(
        stream_generate(model, prompt, 30, tokenizer=tok, temperature=1.0, seed=seed, stop=[stop])
    )
    assert content == library
    if stop in text and "\ufffd" not in stop:  # (U+FFFD: bytes still pending may come out
        # as one character or two, depending on where the stream ends)
        assert content == text[: text.index(stop)] and finish.reason == "stop"
    for d in deltas:
        assert "".join(t.text for t in d.tokens) == d.text
        assert all(t.logprob is not None and t.logprob <= 0 for t in d.tokens)


def test_bytes_join_to_the_text_when_nothing_is_cut(bpe_model):
    model, tok = bpe_model
    deltas, finish = run(model, tok, tok.encode("naïve"), Sampling(max_tokens=40, logprobs=0), 3)
    tokens = [t for d in deltas for t in d.tokens]
    assert finish.reason == "length" and finish.completion_tokens == 40 == len(tokens)
    content = "".join(d.text for d in deltas)
    raw = b"".join(bytes(t.bytes) for t in tokens)
    assert raw.decode("utf-8", errors="replace") == content
    assert [t.id for t in tokens] == list(
        stream_generate(model, tok.encode("naïve"), 40, temperature=1.0, seed=3)
    )


def test_a_stop_token_ends_the_choice_unseen(bpe_model):
    model, tok = bpe_model
    eot = tok.special_tokens["<|endoftext|>"]
    bias = Sampling(max_tokens=10, logit_bias=((eot, 100.0),), logprobs=None)
    deltas, finish = run(model, tok, tok.encode("vu"), bias, 0, frozenset({eot}))
    assert deltas == [] and finish.reason == "stop" and finish.completion_tokens == 1


def test_cancel_stops_at_the_next_token(bpe_model):
    model, tok = bpe_model
    seen = []

    def cancelled():
        seen.append(1)
        return len(seen) > 3

    events = list(
        run_choice(
            model,
            TokenTexts(tok),
            tok.encode("a"),
            Sampling(max_tokens=500),
            0,
            frozenset(),
            cancelled,
        )
    )
    assert events[-1] == Finish("cancelled", 4)


def test_the_end_of_text_tokens_an_engine_stops_at(bpe_model):
    from scratchllm.models.ngram import NGram, NGramConfig
    from scratchllm.serving import ServerConfig
    from scratchllm.serving.engine import Engine
    from scratchllm.tokenizers import CharTokenizer, WordTokenizer
    from scratchllm.tokenizers.word import EOS

    model, bpe = bpe_model
    assert Engine(model, bpe, "m", ServerConfig()).end_ids == {bpe.special_tokens["<|endoftext|>"]}
    word = WordTokenizer.train("the cat sat on the mat")
    ngram = NGram(NGramConfig(n=2, vocab_size=word.vocab_size))
    assert Engine(ngram, word, "m", ServerConfig()).end_ids == {EOS}
    char = CharTokenizer.train("abc")
    ngram = NGram(NGramConfig(n=2, vocab_size=char.vocab_size))
    assert Engine(ngram, char, "m", ServerConfig()).end_ids == set()
