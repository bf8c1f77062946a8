"""A batch that rows join and leave while it runs: every row still gets what it gets alone."""

import pytest
import torch
from test_batch import CONFIGS, PIECES, PROMPTS, lively_gpt

from scratchllm.generation import (
    GenerationConfig,
    LiveBatch,
    PromptTruncatedWarning,
    Request,
    generate_batch,
    stream_batch,
    stream_generate,
)
from scratchllm.models import decode_kernel, gpt_decode

# Beside CONFIGS' rows (greedy, sampling, top-k, top-p with a penalty, an eos, zero tokens):
# a prompt past the 40-token context, a row that outgrows it, and a penalty over a prompt
# that the window cuts.
LONG = [
    Request([1] * 45 + [2], GenerationConfig(30, temperature=0.9, seed=3)),
    Request([3, 4], GenerationConfig(60, temperature=0)),
    Request(list(range(13)) * 3, GenerationConfig(20, top_k=4, seed=9, repetition_penalty=1.2)),
]
REQUESTS = [Request(p, c) for p, c in zip(PROMPTS, CONFIGS)] + LONG


def model_on(path: str):
    """The lively GPT on the C++ decode step, or on its modules (a hook declines the fast
    path, which then runs what the modules compute)."""
    model = lively_gpt()
    if path == "modules":
        model.transformer.h[0].register_forward_hook(lambda *args: None)
        assert gpt_decode.why_not(model) is not None
    else:
        assert gpt_decode.why_not(model) is None and decode_kernel.load() is not None
    return model


def run_live(live: LiveBatch, requests, every: int = 2, on_step=None) -> dict[int, list]:
    """Add a request every ``every`` steps while there is room, until all have run; each
    request's events by its index. ``on_step(live, keys)`` runs after each step."""
    events: dict[int, list] = {i: [] for i in range(len(requests))}
    keys: dict[int, int] = {}
    waiting, step = list(range(len(requests))), 0
    while waiting or len(live):
        if waiting and step % every == 0 and len(live) < live.max_rows:
            i = waiting.pop(0)
            keys[live.add(requests[i])] = i
        for event in live.step():
            events[keys[event.row]].append(event)
        if on_step is not None:
            on_step(live, keys)
        step += 1
    return events


@pytest.mark.filterwarnings("ignore::scratchllm.generation.PromptTruncatedWarning")
@pytest.mark.parametrize("path", ["kernel", "modules"])
def test_rows_that_join_at_any_step_get_what_they_get_alone(path):
    model = model_on(path)
    with pytest.warns(PromptTruncatedWarning):
        got = run_live(LiveBatch(model, max_rows=4), REQUESTS)
    for i, r in enumerate(REQUESTS):
        alone = list(stream_generate(model, r.prompt, config=r.config))
        tokens = [e.token for e in got[i] if e.token is not None]
        assert tokens == alone, i
        assert [e.finish_reason is not None for e in got[i]] == [False] * (len(got[i]) - 1) + [True]
        ended_on_eos = len(alone) < r.config.max_new_tokens
        assert got[i][-1].finish_reason == ("stop" if ended_on_eos else "length")
    assert len(got[1 + len(CONFIGS)]) == 60  # outgrew the context: the window slid


@pytest.mark.filterwarnings("ignore::scratchllm.generation.PromptTruncatedWarning")
@pytest.mark.parametrize("path", ["kernel", "modules"])
def test_each_rows_raw_logits_are_those_it_has_alone(path):
    """On the C++ step bitwise (the kernel computes each row by itself); on the modules
    to float rounding (a batched product may add in another order)."""
    model = model_on(path)
    # (a repetition penalty comes before a user's processor: alone, it would see it applied)
    requests = [r for r in REQUESTS if r.config.max_new_tokens and r.config.repetition_penalty == 1]
    seen: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(requests))}

    def keep(live, keys):
        for key, logits in live.last_logits.items():
            seen[keys[key]].append(logits.clone())

    run_live(LiveBatch(model, max_rows=5), requests, every=3, on_step=keep)
    for i, r in enumerate(requests):
        alone: list[torch.Tensor] = []

        def record(input_ids, logits, alone=alone):
            alone.append(logits[0].clone())
            return logits

        list(stream_generate(model, r.prompt, config=r.config, logits_processor=[record]))
        assert len(seen[i]) == len(alone)
        for a, b in zip(seen[i], alone):
            if path == "kernel":
                assert torch.equal(a, b), i
            else:
                torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


class ByLength:
    """Lifts the token ``len(input_ids) % V``: wrong whenever a row's ids carry padding."""

    def __call__(self, input_ids, logits):
        out = logits.clone()
        out[:, input_ids.shape[1] % out.shape[1]] += 4.0
        return out


def test_a_rows_own_processors_see_its_ids_alone_in_either_batch():
    model = lively_gpt()
    requests = [
        Request([1, 2, 3], GenerationConfig(10, seed=1), [ByLength()]),
        Request([4], GenerationConfig(12, temperature=0)),
        Request([5, 6, 7, 8, 9], GenerationConfig(9, temperature=0), [ByLength()]),
        Request([2], GenerationConfig(8, top_k=3, seed=4, repetition_penalty=1.3), [ByLength()]),
    ]
    alone = [
        list(stream_generate(model, r.prompt, config=r.config, logits_processor=r.logits_processor))
        for r in requests
    ]
    assert alone[0] != list(stream_generate(model, [1, 2, 3], config=requests[0].config))
    fixed = generate_batch(model, requests)
    assert [c.tokens for c in fixed] == alone
    live = run_live(LiveBatch(model), requests, every=1)
    assert [[e.token for e in live[i] if e.token is not None] for i in range(4)] == alone


def test_text_and_stop_strings_per_row(byte_tokenizer):
    model, tok = lively_gpt(), byte_tokenizer(PIECES)
    requests = [
        Request([1, 2], GenerationConfig(20, temperature=1.5, seed=3, stop=("b",))),
        Request([0], GenerationConfig(20, temperature=1.5, seed=8, stop=("ok", "\n"))),
        Request([4, 5], GenerationConfig(15, temperature=1.5, seed=9)),
    ]
    got = run_live(LiveBatch(model, tokenizer=tok), requests)
    fixed = list(stream_batch(model, requests, tokenizer=tok))
    for i, r in enumerate(requests):
        text = "".join(stream_generate(model, r.prompt, config=r.config, tokenizer=tok))
        assert "".join(e.text for e in got[i]) == text
        assert got[i] == [e for e in fixed if e.row == i]  # keys 0, 1, 2 in the order added
    assert [got[i][-1].finish_reason for i in range(2)] == ["stop", "stop"]


def test_a_row_ended_early_stops_and_the_others_run_on_unchanged():
    model = lively_gpt()
    requests = [Request(p, c) for p, c in zip(PROMPTS, CONFIGS)]

    def cut(live, keys):
        key_of = {i: k for k, i in keys.items()}
        if 0 in key_of:
            live.end(key_of[0])  # after its first step: nothing more
        live.end(10**6)  # a key never given: ignored

    got = run_live(LiveBatch(model), requests, on_step=cut)
    assert [e.token for e in got[0]] == list(stream_generate(model, PROMPTS[0], config=CONFIGS[0]))[
        :1
    ]
    for i in range(1, len(requests)):
        alone = list(stream_generate(model, PROMPTS[i], config=CONFIGS[i]))
        assert [e.token for e in got[i] if e.token is not None] == alone


def test_what_a_live_batch_refuses_is_said_so(toy):
    with pytest.raises(ValueError, match="KVCache.*stream_batch"):
        LiveBatch(toy())
    model = lively_gpt()
    with pytest.raises(ValueError, match="max_rows"):
        LiveBatch(model, max_rows=0)
    live = LiveBatch(model, max_rows=2)
    with pytest.raises(ValueError, match="needs tokenizer="):
        live.add(Request([1], GenerationConfig(3, stop=("a",))))
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        live.add(Request([1], GenerationConfig(3, eos_token_id=99)))
    with pytest.raises(ValueError, match="outside"):
        live.add(Request([1, 50], GenerationConfig(3)))
    live.add(Request([1], GenerationConfig(3)))
    live.add(Request([2], GenerationConfig(3)))
    assert live.why_not(Request([3], GenerationConfig(3))) is not None
    with pytest.raises(ValueError, match="max_rows \\(2\\)"):
        live.add(Request([3], GenerationConfig(3)))
    assert len(live.step()) == 2


def test_len_counts_the_rows_added_and_not_yet_ended():
    live = LiveBatch(lively_gpt(), max_rows=3)
    a = live.add(Request([1], GenerationConfig(2)))
    live.add(Request([2], GenerationConfig(0)))  # asked for no tokens: over at once
    with pytest.raises(ValueError, match="outside"):
        live.add(Request([1, 50], GenerationConfig(3)))  # refused: not a row
    c = live.add(Request([3], GenerationConfig(5)))
    assert len(live) == 2
    live.end(c)
    live.end(c)  # a second end of the same row changes nothing
    live.end(99)  # nor does a key never given
    assert len(live) == 1
    events = live.step() + live.step()
    assert [e.row for e in events if e.token is not None] == [a, a]
    assert events[-1].finish_reason == "length" and len(live) == 0
