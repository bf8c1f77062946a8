"""Requests decoded as one batch: each gets the events it gets alone (the engine's
``run_batch`` against ``run``), a row that ends or whose client leaves stops being decoded,
and a real server batches the requests that wait while it is busy."""

from __future__ import annotations

import threading

import openai
import pytest
import torch
from serving_util import LONG, expected, health, leave, make_engine, open_stream, wait_until

from scratchllm.serving.choice import Finish
from scratchllm.serving.engine import Engine, Plan
from scratchllm.serving.protocol import parse_chat, parse_completion


class Collect:
    """What the worker hands the engine, without an event loop: the group and the events."""

    def __init__(self, plans, cancel_after: int | None = None) -> None:
        self.group = plans
        self.events: list = []
        self.cancel_after = cancel_after

    @property
    def cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.events) >= self.cancel_after

    def emit(self, event, urgent: bool = False) -> None:
        self.events.append(event)


BODIES = [
    {"prompt": "The ", "max_tokens": 30, "temperature": 0},
    {"prompt": "Return ", "max_tokens": 12, "temperature": 1.0, "seed": 7},
    {"prompt": "x", "max_tokens": 40, "temperature": 0.8, "top_p": 0.9, "seed": 3},
    {"prompt": "def ", "max_tokens": 25, "top_k": 5, "seed": 11, "stop": ["e"]},  # a stop string
    {"prompt": "If", "max_tokens": 1, "temperature": 0},
    {"prompt": "A list of", "max_tokens": 35, "temperature": 1.3, "seed": 2, "stop": ["\n", "s "]},
]


def run_alone(engine, plans) -> list[list]:
    """Each request's events when the engine runs it on its own."""
    out = []
    for p in plans:
        job = Collect(p)
        engine.run(p, job)
        out.append(job.events)
    return out


def plans_of(engine, bodies):
    return [engine.plan_completion(parse_completion({"model": "tiny", **b}, 1))[0] for b in bodies]


def test_each_row_of_a_batch_gets_the_events_it_gets_alone(checkpoint):
    engine = make_engine(checkpoint)
    plans = plans_of(engine, BODIES)
    assert all(engine.batchable(p) for p in plans)
    alone = run_alone(engine, plans)
    jobs = [Collect(p) for p in plans]
    engine.run_batch(jobs)
    assert [job.events for job in jobs] == alone
    finishes = [job.events[-1][1] for job in jobs]
    assert {f.reason for f in finishes} == {"length", "stop"}  # both ways of ending are here
    assert all(isinstance(f, Finish) for f in finishes)


def test_a_chat_turn_ends_at_its_stop_token_in_a_batch(checkpoint):
    engine = make_engine(checkpoint, chat=True)
    bodies = [{"messages": [{"role": "user", "content": q}], "max_tokens": 60, "seed": s}
              for q, s in [("Return the", 1), ("What is x", 2), ("def", 3)]]  # fmt: skip
    plans = [engine.plan_chat(parse_chat({"model": "tiny", **b}, 1))[0] for b in bodies]
    alone = run_alone(engine, plans)
    jobs = [Collect(p) for p in plans]
    engine.run_batch(jobs)
    assert [job.events for job in jobs] == alone


def test_a_row_whose_client_leaves_ends_and_the_others_are_unchanged(checkpoint):
    engine = make_engine(checkpoint)
    plans = plans_of(engine, BODIES[:3])
    alone = run_alone(engine, plans)
    jobs = [Collect(plans[0]), Collect(plans[1], cancel_after=2), Collect(plans[2])]
    engine.run_batch(jobs)
    assert jobs[1].events[-1] == (0, Finish("cancelled", jobs[1].events[-1][1].completion_tokens))
    assert len(jobs[1].events) <= 3
    assert [jobs[0].events, jobs[2].events] == [alone[0], alone[2]]


def by_choice(events) -> dict[int, list]:
    """A job's events per choice index, each in its order (a batch interleaves choices)."""
    out: dict[int, list] = {}
    for index, event in events:
        out.setdefault(index, []).append(event)
    return out


def test_a_request_with_several_choices_decodes_them_as_rows(checkpoint):
    engine = make_engine(checkpoint)
    several = engine.plan_completion(
        parse_completion(
            {
                "model": "tiny",
                "prompt": ["The ", "x"],
                "n": 2,
                "max_tokens": 20,
                "temperature": 0.9,
                "seed": 5,
            },
            4,
        )  # fmt: skip
    )[0]
    assert [p.index for p in several] == [0, 1, 2, 3] and engine.batchable(several)
    one = plans_of(engine, BODIES[1:2])[0]
    alone = [by_choice(events) for events in run_alone(engine, [several, one])]
    jobs = [Collect(several), Collect(one)]
    engine.run_batch(jobs)
    assert [by_choice(job.events) for job in jobs] == alone
    assert [i for i, _ in jobs[0].events] != sorted(i for i, _ in jobs[0].events)  # interleaved


def family(name: str, vocab_size: int):
    from scratchllm.models import (
        GPT,
        MLPLM,
        RNNLM,
        GPTConfig,
        MLPConfig,
        NGram,
        NGramConfig,
        RNNConfig,
    )

    torch.manual_seed(0)
    if name == "ngram":
        return NGram(NGramConfig(n=3, vocab_size=vocab_size)).fit([1, 2, 3, 1, 2, 4, 5, 6, 1])
    if name == "mlp":
        return MLPLM(MLPConfig(vocab_size=vocab_size, n=4))
    if name in ("lstm", "gru"):
        config = RNNConfig(cell=name, vocab_size=vocab_size, block_size=16, n_layer=1,
                           n_embd=16, n_hidden=32)  # fmt: skip
        return RNNLM(config)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=32))


@pytest.mark.parametrize("name", ["ngram", "mlp", "lstm", "gru", "gpt"])
def test_every_model_family_batches_as_it_runs_alone(name):
    from scratchllm.serving import ServerConfig
    from scratchllm.tokenizers import CharTokenizer

    tok = CharTokenizer.train("abcdefgh \n")
    engine = Engine(family(name, tok.vocab_size).eval(), tok, "m", ServerConfig())
    bodies = [
        {"prompt": "ab", "max_tokens": 10, "temperature": 0},
        {"prompt": "h", "max_tokens": 6, "seed": 3},
        {"prompt": "abc d", "max_tokens": 30, "temperature": 0.7, "seed": 1, "stop": ["g"]},
    ]  # the last outgrows the GPT's 16-token context: the window slides alike
    plans = [engine.plan_completion(parse_completion({"model": "m", **b}, 1))[0] for b in bodies]
    alone = run_alone(engine, plans)
    jobs = [Collect(p) for p in plans]
    engine.run_batch(jobs)
    assert [job.events for job in jobs] == alone


@pytest.mark.parametrize("name", ["lstm", "gpt"])
def test_what_cannot_batch_is_said_so(name):
    """A fixed batch (every family but the GPT) keeps requests with log-probs, penalties,
    logit bias or more choices than it holds on their own; a GPT's running batch takes
    them all, each as its rows' own."""
    from scratchllm.serving import ServerConfig
    from scratchllm.tokenizers import CharTokenizer

    tok = CharTokenizer.train("abcdefgh \n")
    engine = Engine(family(name, tok.vocab_size).eval(), tok, "m", ServerConfig())
    live = name == "gpt"
    cases = [
        ({"logprobs": 2}, live), ({"frequency_penalty": 0.5}, live),
        ({"presence_penalty": 0.5}, live), ({"logit_bias": {"3": 1.0}}, live),
        ({"n": 9}, live), ({"n": 8}, True), ({"temperature": 0.5, "stop": ["a"], "seed": 1}, True),
    ]  # fmt: skip
    for extra, ok in cases:
        req = parse_completion({"model": "m", "prompt": [1, 2], "max_tokens": 3, **extra}, 16)
        plans = [Plan(i, [1, 2], req.sampling, i, frozenset()) for i in range(req.n)]
        assert engine.batchable(plans) is ok, extra
        assert engine.joins(plans) is live, extra


# What only a running batch's rows can have: log-probs, penalties, logit bias, and a prompt
# past the model's 32-token context (the window slides).
OWN = [
    {"prompt": "The ", "max_tokens": 20, "temperature": 0, "logprobs": 3},
    {"prompt": "Return ", "max_tokens": 25, "seed": 4, "frequency_penalty": 1.5, "logprobs": 0},
    {"prompt": "x", "max_tokens": 18, "seed": 9, "presence_penalty": 2.0, "top_p": 0.9},
    {"prompt": "def ", "max_tokens": 15, "temperature": 0, "logit_bias": {"5": 8.0, "9": -100}},
    {"prompt": "A list of " * 4, "max_tokens": 30, "seed": 1, "logprobs": 1, "stop": ["s "]},
]


def test_more_choices_than_rows_start_as_rows_free_up(checkpoint):
    engine = make_engine(checkpoint)
    body = {"model": "tiny", "prompt": ["The ", "x", "def "], "n": 4, "temperature": 0.9,
            "seed": 5}  # fmt: skip
    many = engine.plan_completion(parse_completion({**body, "max_tokens": 12}, 16))[0]
    short = engine.plan_completion(parse_completion({**body, "max_tokens": 3, "n": 1}, 16))[0]
    assert len(many) == 12 and engine.joins(many)
    alone = [by_choice(events) for events in run_alone(engine, [short, many])]
    jobs = [Collect(short), Collect(many)]
    engine.run_batch(jobs)
    assert [by_choice(job.events) for job in jobs] == alone


def test_a_running_batch_gives_each_row_its_own_logprobs_penalties_and_window(checkpoint):
    engine = make_engine(checkpoint)
    plans = plans_of(engine, OWN)
    assert all(engine.joins(p) for p in plans) and len(plans[4][0].prompt_ids) > 32
    alone = run_alone(engine, plans)
    jobs = [Collect(p) for p in plans]
    engine.run_batch(jobs)
    assert [job.events for job in jobs] == alone
    tokens = [t for _, e in jobs[0].events if not isinstance(e, Finish) for t in e.tokens]
    assert tokens[0].logprob is not None and len(tokens[0].top) == 3


# A request that fills the batch: 8 of its 9 choices run for ever and the ninth waits for a
# row, so the requests behind it wait too (first come, first served).
BUSY = {"model": "tiny", "max_tokens": LONG, "stream": True, "n": 9}


def start_clients(server, bodies) -> tuple[list, list, list]:
    """One official client per body in a thread, streamed for odd ones: ``(threads, texts,
    errors)``, filled in as they finish."""
    got: list = [None] * len(bodies)
    errors: list = []

    def client_thread(i: int) -> None:
        body = dict(bodies[i])
        if "top_k" in body:  # not an OpenAI parameter: the client sends it as extra body
            body["extra_body"] = {"top_k": body.pop("top_k")}
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        try:
            if i % 2:
                chunks = client.completions.create(model="tiny", stream=True, **body)
                got[i] = "".join(c.choices[0].text for c in chunks)
            else:
                got[i] = client.completions.create(model="tiny", **body).choices[0].text
        except Exception as e:  # collected: a thread's assert would be lost
            errors.append(e)

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    return threads, got, errors


def library_texts(reference, bodies) -> list[str]:
    want = []
    for b in bodies:
        kw = {k: b[k] for k in ("temperature", "top_k", "top_p", "seed") if k in b}
        text = expected(reference, b["prompt"], b["max_tokens"], **kw)
        for stop in b.get("stop", ()):
            text = text.split(stop)[0]
        want.append(text)
    return want


def test_the_server_batches_the_requests_that_wait_while_it_is_busy(serve, reference):
    with serve(max_total_tokens=10**6) as s:
        busy, response = open_stream(s, {**BUSY, "prompt": "The"})
        assert response.status == 200
        wait_until(lambda: health(s)["queue"]["running"], 5)
        bodies = BODIES[:4]
        threads, got, errors = start_clients(s, bodies)
        wait_until(lambda: health(s)["queue"]["waiting"] == 4 or errors, 10)
        assert not errors, errors
        leave(busy)  # the busy request's client leaves: the four waiting ones go together
        for t in threads:
            t.join(60)
        assert not errors, errors
        # into the busy request's batch as its rows end, or as a new batch once it has
        queue = health(s)["queue"]
        assert queue["joined"] == 4 or queue["batches"] == 1, queue
    assert got == library_texts(reference, bodies)


def test_requests_join_the_batch_that_is_running(serve, reference):
    with serve(max_total_tokens=10**6) as s:
        busy, response = open_stream(s, {"model": "tiny", "prompt": "The", "max_tokens": LONG,
                                         "stream": True})  # fmt: skip
        assert response.status == 200
        wait_until(lambda: health(s)["queue"]["running"], 5)
        bodies = [*BODIES[:4], {**BODIES[1], "logprobs": 2}]  # log-probs join too
        threads, got, errors = start_clients(s, bodies)
        for t in threads:
            t.join(60)
        assert not errors, errors
        queue = health(s)["queue"]
        # all done while the busy request, which never ends, still runs: they joined it
        assert queue["running"] and queue["joined"] == 5 and queue["served"] == 5
        leave(busy)
    assert got == library_texts(reference, bodies)


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_leaves_a_batch_stops_its_row(serve, stream):
    with serve(max_total_tokens=10**6) as s:
        busy, _ = open_stream(s, {**BUSY, "prompt": "a"})
        wait_until(lambda: health(s)["queue"]["running"], 5)
        body = {"model": "tiny", "prompt": "The", "max_tokens": LONG, "stream": stream}
        first, _ = open_stream(s, body, wait=False)
        second, _ = open_stream(s, body, wait=False)
        wait_until(lambda: health(s)["queue"]["waiting"] == 2, 5)
        leave(busy)
        wait_until(lambda: health(s)["queue"]["joined"] == 2 or health(s)["queue"]["batches"], 5)
        leave(first)
        leave(second)
        seconds = wait_until(lambda: not health(s)["queue"]["running"], 5)
        assert seconds < 1.5, f"the batch ran on for {seconds:.2f} s after its clients left"
        assert health(s)["queue"]["cancelled"] == 3
