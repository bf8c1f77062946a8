"""Batched requests, each with its own settings: every row gets what it would alone."""

import pytest
import torch

from scratchllm.generation import (
    Completion,
    GenerationConfig,
    Request,
    generate,
    generate_batch,
    stream_batch,
    stream_generate,
)
from scratchllm.models import GPT, GPTConfig

PIECES = [
    b"a", b"b", b" ", b"\n", b"\xc3", b"\xa9", b"\xe2\x82", b"\xac", b"\xf0\x9f",
    b"\x98\x80", b"ok", b"!", b"x",
]  # fmt: skip

# One request of each kind: greedy, plain sampling, top-k, top-p with a penalty, an eos,
# a zero-length one, and two rows with equal settings but different seeds.
CONFIGS = [
    GenerationConfig(12, temperature=0),
    GenerationConfig(9, temperature=0.8, seed=5),
    GenerationConfig(7, top_k=3, seed=2),
    GenerationConfig(10, top_p=0.7, repetition_penalty=1.3, seed=11),
    GenerationConfig(14, temperature=1.2, eos_token_id=(3, 7, 9, 12), seed=4),
    GenerationConfig(0),
    GenerationConfig(8, temperature=0.9, seed=1),
    GenerationConfig(8, temperature=0.9, seed=2),
]
PROMPTS = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [2, 2], [10, 11, 12, 1], [3], [6, 1], [6, 1]]


def lively_gpt(seed=0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=40, vocab_size=13)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(6.0)
    return model


@pytest.mark.parametrize("family", ["toy", "gpt"])
def test_every_row_equals_its_request_alone(toy, family):
    model = toy(ctx=40) if family == "toy" else lively_gpt()
    requests = [Request(p, c) for p, c in zip(PROMPTS, CONFIGS)]
    out = generate_batch(model, requests)
    assert [type(c) for c in out] == [Completion] * len(requests)
    for r, c in zip(requests, out):
        alone = list(stream_generate(model, r.prompt, config=r.config))
        assert c.tokens == alone
        assert c.text is None
        ended_on_eos = len(alone) < r.config.max_new_tokens
        assert c.finish_reason == ("stop" if ended_on_eos else "length")
    assert out[6].tokens != out[7].tokens  # same settings, own seeds
    assert out[5].tokens == [] and out[5].finish_reason == "length"
    assert out[4].finish_reason == "stop" and len(out[4].tokens) < 14  # hit an eos
    # and as generate would give it, eos included
    g = generate(model, PROMPTS[4], config=CONFIGS[4])[0, len(PROMPTS[4]) :].tolist()
    assert g[: len(out[4].tokens) + 1] == out[4].tokens + [g[len(out[4].tokens)]]


def test_text_and_stop_strings_per_row(toy, byte_tokenizer):
    model, tok = toy(ctx=40), byte_tokenizer(PIECES)
    configs = [
        GenerationConfig(20, temperature=1.5, seed=3, stop=("b",)),
        GenerationConfig(20, temperature=1.5, seed=8, stop=("ok", "\n")),
        GenerationConfig(15, temperature=1.5, seed=9),
    ]
    requests = [Request([1, 2], configs[0]), Request([0], configs[1]), Request([4, 5], configs[2])]
    out = generate_batch(model, requests, tokenizer=tok)
    for r, c in zip(requests, out):
        text = "".join(stream_generate(model, r.prompt, config=r.config, tokenizer=tok))
        assert c.text == text
        if r.config.stop:
            alone = generate(model, r.prompt, config=r.config, tokenizer=tok)[0, len(r.prompt) :]
            assert c.tokens == alone.tolist()[: len(c.tokens)]
            assert not any(s in c.text for s in r.config.stop)
    assert [c.finish_reason for c in out[:2]] == ["stop", "stop"]  # both hit their stop


def test_stream_batch_yields_one_event_per_running_row_and_step(toy, byte_tokenizer):
    model, tok = toy(ctx=40), byte_tokenizer(PIECES)
    requests = [
        Request([1], GenerationConfig(3, temperature=0)),
        Request([2, 3], GenerationConfig(5, temperature=0)),
    ]
    events = list(stream_batch(model, requests, tokenizer=tok))
    assert [e.row for e in events] == [0, 1, 0, 1, 0, 1, 1, 1]
    assert [e.finish_reason for e in events if e.row == 0] == [None, None, "length"]
    assert [e.finish_reason for e in events if e.row == 1] == [None] * 4 + ["length"]
    for b, r in enumerate(requests):
        tokens = [e.token for e in events if e.row == b]
        assert tokens == list(stream_generate(model, r.prompt, config=r.config))
        text = "".join(e.text for e in events if e.row == b)
        assert text == "".join(stream_generate(model, r.prompt, config=r.config, tokenizer=tok))


def test_a_row_ended_early_stops_and_the_others_run_on_unchanged():
    model = lively_gpt()
    requests = [Request(p, c) for p, c in zip(PROMPTS, CONFIGS)]
    stream = stream_batch(model, requests)
    seen: dict[int, list[int | None]] = {b: [] for b in range(len(requests))}
    for event in stream:
        seen[event.row].append(event.token)
        if event.row == 0 and len(seen[0]) == 3:
            stream.end(0)  # after its third token: no fourth, and no finish event
        if event.row == 2 and len(seen[2]) == 1:
            stream.end(2)
    assert seen[0] == list(stream_generate(model, PROMPTS[0], config=CONFIGS[0]))[:3]
    assert seen[2] == list(stream_generate(model, PROMPTS[2], config=CONFIGS[2]))[:1]
    for b in set(seen) - {0, 2}:
        alone = list(stream_generate(model, PROMPTS[b], config=CONFIGS[b]))
        assert [t for t in seen[b] if t is not None] == alone
    stream.end(1)  # after the batch: nothing to do
    with pytest.raises(StopIteration):
        next(stream)


def test_every_row_ended_ends_the_batch_before_its_length():
    model = lively_gpt()
    stream = stream_batch(model, [Request([1, 2], GenerationConfig(1000, temperature=0))])
    first = next(stream)
    stream.end(0)
    assert first.token is not None and list(stream) == []


def test_batched_requests_errors(toy):
    model = toy()
    with pytest.raises(ValueError, match="needs beam_search"):
        Request([1], GenerationConfig(4, num_beams=2))
    with pytest.raises(TypeError, match="config must be a GenerationConfig"):
        Request([1], {"max_new_tokens": 4})
    with pytest.raises(ValueError, match="no requests"):
        generate_batch(model, [])
    with pytest.raises(TypeError, match=r"requests\[0\] must be a Request"):
        generate_batch(model, [[1, 2]])
    with pytest.raises(ValueError, match=r"requests\[1\] has stop=\['x'\], which needs tokenizer"):
        generate_batch(
            model, [Request([1], GenerationConfig(3)), Request([2], GenerationConfig(3, stop="x"))]
        )
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        generate_batch(model, [Request([99], GenerationConfig(3))])
