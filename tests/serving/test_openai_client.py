"""The official ``openai`` client against our server: what it sends, we read; what we send,
it parses into its own types. Texts are held equal to the library's ``generate``."""

from __future__ import annotations

import math

import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from serving_util import RoleTemplate

from scratchllm.generation import generate

PROMPT = "Return the"


def expected(reference, prompt: str, max_tokens: int, **kw) -> str:
    """What the library gives for this prompt (the server must give the same)."""
    tok = reference.tokenizer
    ids = tok.encode(prompt)
    out = generate(reference.model, [ids], max_tokens, tokenizer=tok, **kw)
    return tok.decode(out[0, len(ids) :].tolist())


def test_models_list(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert models.data[0].object == "model" and models.data[0].created > 0
    assert client.models.retrieve("tiny").id == "tiny"


def test_completion_greedy_equals_the_library(client, reference):
    r = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=24, temperature=0)
    assert isinstance(r, Completion) and r.object == "text_completion"
    assert r.id.startswith("cmpl-") and r.created > 0 and r.model == "tiny"
    (choice,) = r.choices
    assert choice.index == 0 and choice.finish_reason == "length"
    assert choice.text == expected(reference, PROMPT, 24, temperature=0)
    assert r.usage.prompt_tokens == len(reference.tokenizer.encode(PROMPT))
    assert r.usage.completion_tokens == 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + 24


def test_streamed_equals_non_streamed_at_temperature_0(client):
    kw = dict(model="tiny", prompt=PROMPT, max_tokens=30, temperature=0)
    whole = client.completions.create(**kw).choices[0].text
    chunks = list(client.completions.create(**kw, stream=True))
    assert len({c.id for c in chunks}) == 1, "one id per response"
    assert len({c.created for c in chunks}) == 1
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == whole
    assert [c.choices[0].finish_reason for c in chunks][-1] == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)


def test_chat_streamed_equals_non_streamed(client):
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Return"}], temperature=0)
    whole = client.chat.completions.create(**kw, max_tokens=20)
    assert isinstance(whole, ChatCompletion) and whole.object == "chat.completion"
    assert whole.id.startswith("chatcmpl-")
    assert whole.choices[0].message.role == "assistant"
    chunks = list(client.chat.completions.create(**kw, max_completion_tokens=20, stream=True))
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant", "the role comes in the first delta"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_chat_prompt_is_the_template_and_stops_at_end_of_turn(client, reference):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    template = RoleTemplate(reference.tokenizer)
    r = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    assert r.usage.prompt_tokens == len(template.prompt_ids(messages))
    # Push the end-of-turn token to the top: the reply ends at once, without showing it.
    end = template.stop_token_ids[0]
    r = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=8, temperature=0, logit_bias={str(end): 100}
    )
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == ""
    assert r.usage.completion_tokens == 1  # the end-of-turn token was generated


def test_include_usage_gives_a_final_chunk_with_empty_choices(client):
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in body)
    assert last.usage.completion_tokens == 6
    assert last.usage.total_tokens == last.usage.prompt_tokens + 6
    completion = list(
        client.completions.create(
            model="tiny",
            prompt="a",
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert completion[-1].choices == [] and completion[-1].usage.completion_tokens == 3


def test_same_seed_same_text_different_seeds_differ(client, reference):
    kw = dict(model="tiny", prompt=PROMPT, max_tokens=40, temperature=1.0)
    a = client.completions.create(**kw, seed=7).choices[0].text
    b = client.completions.create(**kw, seed=7).choices[0].text
    c = client.completions.create(**kw, seed=8).choices[0].text
    assert a == b != c
    assert a == expected(reference, PROMPT, 40, temperature=1.0, seed=7)


def test_n_gives_distinct_indexed_choices(client, reference):
    r = client.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=30, n=2, seed=3, temperature=1.0
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].text != r.choices[1].text
    for i, c in enumerate(r.choices):  # choice i is the library's sample with seed 3 + i
        assert c.text == expected(reference, PROMPT, 30, temperature=1.0, seed=3 + i)
    assert r.usage.completion_tokens == 60
    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "x"}], n=2, max_tokens=5, seed=1
    )
    assert [c.index for c in chat.choices] == [0, 1]
    streamed = list(
        client.completions.create(
            model="tiny", prompt=PROMPT, max_tokens=30, n=2, seed=3, temperature=1.0, stream=True
        )
    )
    for i in (0, 1):
        text = "".join(ch.choices[0].text for ch in streamed if ch.choices[0].index == i)
        assert text == r.choices[i].text


def test_a_batch_of_prompts(client, reference):
    r = client.completions.create(
        model="tiny", prompt=["The", "Return a"], max_tokens=5, temperature=0
    )
    assert [c.text for c in r.choices] == [
        expected(reference, "The", 5, temperature=0),
        expected(reference, "Return a", 5, temperature=0),
    ]
    ids = reference.tokenizer.encode("The")
    by_ids = client.completions.create(model="tiny", prompt=ids, max_tokens=5, temperature=0)
    assert by_ids.choices[0].text == r.choices[0].text


def test_completion_logprobs(client, reference):
    r = client.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=12, temperature=0, logprobs=5
    )
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 12
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(12)]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert logprob <= 0 and len(top) == 5
        values = list(top.values())
        assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        assert top[token] == pytest.approx(logprob)  # greedy: the chosen one is the best
        assert max(values) == pytest.approx(logprob)
    # the log-probs are the model's: recompute the first one from its logits
    ids = reference.tokenizer.encode(PROMPT)
    import torch

    with torch.no_grad():
        logits = reference.model(torch.tensor([ids]))[0][0, -1]
    first = torch.log_softmax(logits, -1)[reference.tokenizer.encode(lp.tokens[0])[0]]
    assert lp.token_logprobs[0] == pytest.approx(float(first), abs=1e-5)


def test_chat_logprobs_join_to_the_content(client):
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Tell me"}],
        max_tokens=15,
        temperature=0.9,
        seed=0,
        logprobs=True,
        top_logprobs=20,
    )
    choice = r.choices[0]
    content = choice.logprobs.content
    assert "".join(t.token for t in content) == choice.message.content
    assert bytes(b for t in content for b in t.bytes) == choice.message.content.encode()
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 20
        tops = [x.logprob for x in t.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        assert sum(math.exp(x) for x in tops) <= 1 + 1e-5
        listed = {x.token: x.logprob for x in t.top_logprobs}
        if t.token in listed:  # sampled: the chosen token is in the top list or below it
            assert listed[t.token] == pytest.approx(t.logprob)
        else:
            assert t.logprob <= tops[-1]
    plain = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=3
    )
    assert plain.choices[0].logprobs is None
    streamed = list(
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Tell me"}],
            max_tokens=15,
            temperature=0.9,
            seed=0,
            logprobs=True,
            top_logprobs=2,
            stream=True,
        )
    )
    tokens = [t for c in streamed if c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in tokens] == [t.token for t in content]
    assert [t.logprob for t in tokens] == pytest.approx([t.logprob for t in content])


def test_stop_strings_end_before_them(client, reference):
    free = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=40, temperature=0)
    text = free.choices[0].text
    stop = text[10:12]  # two characters the greedy text holds: it must end before them
    r = client.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=40, temperature=0, stop=[stop, "zzzz"], logprobs=1
    )
    cut = text.index(stop)
    assert r.choices[0].text == text[:cut] and r.choices[0].finish_reason == "stop"
    assert "".join(r.choices[0].logprobs.tokens) == text[:cut]
    assert r.usage.completion_tokens == cut + len(stop)  # the stop's tokens were generated
    streamed = list(
        client.completions.create(
            model="tiny", prompt=PROMPT, max_tokens=40, temperature=0, stop=stop, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed) == text[:cut]
    assert expected(reference, PROMPT, 40, temperature=0, stop=[stop]) == text[:cut]


def test_top_k_and_top_p_through_extra_body(client, reference):
    kw = dict(model="tiny", prompt=PROMPT, max_tokens=30, temperature=1.0, seed=5)
    r = client.completions.create(**kw, top_p=0.5, extra_body={"top_k": 3})
    assert r.choices[0].text == expected(
        reference, PROMPT, 30, temperature=1.0, seed=5, top_p=0.5, top_k=3
    )
    greedy = expected(reference, PROMPT, 30, temperature=0)
    assert client.completions.create(**kw, extra_body={"top_k": 1}).choices[0].text == greedy


def test_penalties_follow_the_openai_formula(client, reference):
    """logit[j] -= frequency * count[j] + presence * (count[j] > 0), counting the tokens
    generated so far; written out here on its own and run through the library."""
    import collections

    ids = reference.tokenizer.encode(PROMPT)

    def penalise(input_ids, logits):
        counts = collections.Counter(input_ids[0, len(ids) :].tolist())
        logits = logits.clone()
        for token, count in counts.items():
            logits[0, token] -= 0.7 * count + 0.4
        return logits

    out = generate(reference.model, [ids], 40, temperature=0, logits_processor=[penalise])
    want = reference.tokenizer.decode(out[0, len(ids) :].tolist())
    r = client.completions.create(
        model="tiny",
        prompt=PROMPT,
        max_tokens=40,
        temperature=0,
        frequency_penalty=0.7,
        presence_penalty=0.4,
    )
    assert r.choices[0].text == want
    assert want != expected(reference, PROMPT, 40, temperature=0)


def test_client_errors_are_not_retried(server):
    import time

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=3)
    t0 = time.perf_counter()
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="a", temperature=5)
    assert time.perf_counter() - t0 < 0.5, "a 400 comes back at once, never retried"
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-4", prompt="a")
    assert e.value.body["code"] == "model_not_found"
