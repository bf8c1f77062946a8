"""Streaming, incremental decoding of split UTF-8 characters, and stop strings."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.generation import IncrementalDecoder, TextTracker, generate, stream_generate

# 13 tokens (ToyLM's default vocabulary): ASCII, and characters split across tokens.
PIECES = [
    b"a", b"b", b" ", b"\n", b"\xc3", b"\xa9", b"\xe2\x82", b"\xac", b"\xf0\x9f",
    b"\x98\x80", b"ok", b"!", b"x",
]  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(text=st.text(min_size=0, max_size=40), cuts=st.lists(st.integers(1, 200), max_size=20))
def test_incremental_decoder_emits_whole_characters(text, cuts):
    data = text.encode("utf-8")
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    tokens = [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    decode = lambda ids: b"".join(tokens[i] for i in ids).decode("utf-8", errors="replace")  # noqa: E731
    d = IncrementalDecoder(decode)
    pieces = [d.push(i) for i in range(len(tokens))]
    assert not d.pending
    assert "".join(pieces) == text
    if "\ufffd" not in text:
        assert all("\ufffd" not in p for p in pieces)


def test_incremental_decoder_keeps_spaces_of_a_word_tokenizer():
    words = ["the", "cat", "sat"]
    d = IncrementalDecoder(lambda ids: " ".join(words[i] for i in ids))
    assert [d.push(i) for i in range(3)] == ["the", " cat", " sat"]


def test_incremental_decoder_flushes_an_unfinished_character():
    d = IncrementalDecoder(lambda ids: b"".join(PIECES[i] for i in ids).decode(errors="replace"))
    assert d.push(0) == "a" and d.push(4) == "" and d.pending
    assert d.flush() == "\ufffd"


def test_tracker_finds_stops_across_tokens_and_holds_back_prefixes():
    t = TextTracker(lambda ids: "".join(["ab", "c", "E", "ND", "x"][i] for i in ids), ["END"])
    assert not t.push(0) and t.safe_end() == 2
    assert not t.push(1) and not t.push(2)
    assert t.safe_end() == 3  # "E" might start "END": held back
    assert t.push(3)  # "abcEND"
    assert t.stop_at == 3 and t.tokens_before_stop() == 2 and t.safe_end() == 3


def test_tracker_drops_a_token_that_straddles_the_stop():
    t = TextTracker(lambda ids: "".join(["hello", " wor", "ld!"][i] for i in ids), ["world"])
    assert not t.push(0) and not t.push(1) and t.push(2)
    assert t.text[: t.stop_at] == "hello "
    assert t.tokens_before_stop() == 1  # " wor" holds the start of the stop: dropped


def decode_pieces(ids):
    return b"".join(PIECES[i] for i in ids).decode("utf-8", errors="replace")


class Tok:
    decode = staticmethod(decode_pieces)


@pytest.mark.parametrize("kwargs", [dict(temperature=0), dict(seed=4, top_k=6)])
def test_token_stream_equals_generate(toy, kwargs):
    model = toy()
    tokens = list(stream_generate(model, [1, 2], 20, **kwargs))
    assert tokens == generate(model, [1, 2], 20, **kwargs)[0, 2:].tolist()


def test_token_stream_ends_at_eos_without_yielding_it(toy):
    model = toy()
    full = generate(model, [1, 2], 20, temperature=0)[0, 2:].tolist()
    eos = full[4]
    streamed = list(stream_generate(model, [1, 2], 20, temperature=0, eos_token_id=eos))
    assert streamed == full[: full.index(eos)]


class ScriptedLM(torch.nn.Module):
    """Emits ``script`` after a one-token prompt (greedy), whatever the prompt."""

    context_length, vocab_size = 100, len(PIECES)

    def __init__(self, script):
        super().__init__()
        self.script = script

    def forward(self, idx, targets=None, loss_mask=None):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.vocab_size)
        logits[:, -1, self.script[(T - 1) % len(self.script)]] = 1.0
        return logits, None


def test_text_stream_waits_for_characters_split_across_tokens():
    script = [0, 4, 5, 2, 6, 7, 8, 9, 11]  # a, é (2 tokens), space, € (2), 😀 (2), !
    pieces = list(stream_generate(ScriptedLM(script), [0], 9, temperature=0, tokenizer=Tok()))
    assert pieces == ["a", "é", " ", "€", "😀", "!"]


def test_text_stream_joins_to_the_decoded_tokens(toy):
    model = toy(seed=9)
    for seed in range(4):
        ids = generate(model, [0], 30, seed=seed)[0, 1:].tolist()
        pieces = list(stream_generate(model, [0], 30, seed=seed, tokenizer=Tok()))
        assert "".join(pieces) == decode_pieces(ids)
        assert all(pieces)  # no empty pieces are yielded


def test_text_stream_holds_back_a_possible_stop_then_releases_it():
    script = [0, 1, 10, 11, 0]  # "abok!a"; "ok?" never completes
    pieces = list(
        stream_generate(ScriptedLM(script), [0], 5, temperature=0, tokenizer=Tok(), stop="ok?")
    )
    assert pieces == ["a", "b", "ok!", "a"]  # "ok" waited for the next piece
    cut = list(stream_generate(ScriptedLM(script), [0], 5, temperature=0, tokenizer=Tok(),
                               stop=["k!"]))  # fmt: skip
    assert "".join(cut) == "abo"


def test_stop_strings_in_generate_and_stream(toy):
    model = toy(seed=9)
    prompt = [0]
    text = decode_pieces(generate(model, prompt, 30, seed=1)[0, 1:].tolist())
    stop = text[5:7]  # a stop string that this run does produce
    cut = text.index(stop)
    streamed = "".join(stream_generate(model, prompt, 30, seed=1, tokenizer=Tok(), stop=[stop]))
    assert streamed == text[:cut]
    out = generate(model, prompt, 30, seed=1, tokenizer=Tok(), stop=[stop])
    got = decode_pieces(out[0, 1:].tolist())
    assert text[:cut].startswith(got) and stop not in got
    assert len(got) >= cut - 4  # at most the token straddling the stop is lost


def test_stop_strings_end_each_row_of_a_batch(toy):
    model = toy(seed=9)
    prompts = [[0], [1, 2]]
    free = generate(model, prompts, 25, seed=[1, 2], pad_token_id=12)
    texts = [decode_pieces(free[b, -25:].tolist()) for b in range(2)]
    stop = texts[0][3:5]
    out = generate(model, prompts, 25, seed=[1, 2], pad_token_id=12, tokenizer=Tok(), stop=stop)
    for b in range(2):
        row = out[b, 2:].tolist()
        row = row[: len(row) - next((i for i, t in enumerate(row[::-1]) if t != 12), 0)]
        if stop in texts[b]:
            assert stop not in decode_pieces(row)
            assert texts[b][: texts[b].index(stop)].startswith(decode_pieces(row))


def test_stream_rejects_a_batch(toy):
    with pytest.raises(ValueError, match="one prompt"):
        stream_generate(toy(), [[1, 2], [3, 4]], 5)


def test_stream_does_not_touch_the_global_rng(toy):
    state = torch.random.get_rng_state()
    list(stream_generate(toy(), [1], 10, seed=0))
    assert torch.equal(torch.random.get_rng_state(), state)
