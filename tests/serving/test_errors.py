"""Abusive requests, sent byte for byte: each gets a 4xx in OpenAI's error shape naming the
problem (never a 500, which the official client would retry), and the next request works."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_util import raw

GOOD = {"model": "tiny", "prompt": "Return", "max_tokens": 2, "temperature": 0}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def assert_error(status, body, want_status, param=None, code=None, says=None):
    assert status == want_status, body
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    if says is not None:
        assert says in error["message"], error


def assert_next_request_works(server):
    status, _, body = raw(server, "POST", "/v1/completions", GOOD)
    assert status == 200 and body["choices"][0]["finish_reason"] == "length"


BAD_COMPLETIONS = [
    # (changes to GOOD, the param the error must name, a phrase of the message)
    ({"temperature": -0.1}, "temperature", "[0, 2]"),
    ({"temperature": 2.5}, "temperature", "[0, 2]"),
    ({"temperature": "hot"}, "temperature", "number"),
    ({"top_p": 0}, "top_p", "(0, 1]"),
    ({"top_p": 1.01}, "top_p", "(0, 1]"),
    ({"top_k": 0}, "top_k", "at least 1"),
    ({"n": 0}, "n", "between 1 and 16"),
    ({"n": 17}, "n", "between 1 and 16"),
    ({"n": True}, "n", "integer"),
    ({"max_tokens": 0}, "max_tokens", "at least 1"),
    ({"max_tokens": "5"}, "max_tokens", "integer"),
    ({"max_tokens": 2.5}, "max_tokens", "integer"),
    ({"logprobs": 6}, "logprobs", "between 0 and 5"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ({"stop": [""]}, "stop", "empty"),
    ({"stop": 5}, "stop", "string"),
    ({"seed": "a"}, "seed", "integer"),
    ({"stream": "yes"}, "stream", "true or false"),
    ({"frequency_penalty": 2.5}, "frequency_penalty", "[-2, 2]"),
    ({"logit_bias": {"x": 1}}, "logit_bias.x", "token id"),
    ({"logit_bias": {"5": 200}}, "logit_bias.5", "[-100, 100]"),
    ({"logit_bias": {"100000": 1}}, "logit_bias.100000", "vocabulary"),
    ({"prompt": 5}, "prompt", "prompt must be"),
    ({"prompt": []}, "prompt", "prompt must be"),
    ({"prompt": [[1, 2], []]}, "prompt", "prompt must be"),
    ({"prompt": [10**6]}, "prompt", "vocabulary"),
    ({"prompt": None}, "prompt", "required"),
    ({"model": 3}, "model", "required"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "stream is true"),
    ({"foo": 1}, "foo", "Unrecognized request argument"),
    ({"n": 9, "prompt": ["a", "b"]}, "n", "at most 16"),
]


@pytest.mark.parametrize(("change", "param", "says"), BAD_COMPLETIONS)
def test_bad_completion_fields_are_400s_naming_them(server, change, param, says):
    status, _, body = raw(server, "POST", "/v1/completions", GOOD | change)
    assert_error(status, body, 400, param=param, says=says)
    assert body["error"]["type"] == "invalid_request_error"


BAD_CHATS = [
    ({"messages": []}, "messages", "non-empty"),
    ({"messages": "hi"}, "messages", "non-empty"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "one of"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "string"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "string"),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        "messages[0].content[0]",
        "text parts only",
    ),
    ({"top_logprobs": 21, "logprobs": True}, "top_logprobs", "between 0 and 20"),
    ({"top_logprobs": 2}, "top_logprobs", "logprobs"),
    ({"logprobs": 1}, "logprobs", "true or false"),
    ({"messages": [{"role": "user", "content": "\u4e2d"}]}, "messages", "cannot be encoded"),
    ({"max_tokens": 3, "max_completion_tokens": 4}, "max_completion_tokens", "disagree"),
    ({"max_completion_tokens": -1}, "max_completion_tokens", "at least 1"),
]


@pytest.mark.parametrize(("change", "param", "says"), BAD_CHATS)
def test_bad_chat_fields_are_400s_naming_them(server, change, param, says):
    status, _, body = raw(server, "POST", "/v1/chat/completions", CHAT | change)
    assert_error(status, body, 400, param=param, says=says)


UNSUPPORTED = [
    ("/v1/chat/completions", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ("/v1/chat/completions", {"tool_choice": "auto"}, "tool_choice"),
    ("/v1/chat/completions", {"response_format": {"type": "json_object"}}, "response_format"),
    ("/v1/chat/completions", {"modalities": ["text", "audio"]}, "modalities"),
    ("/v1/chat/completions", {"reasoning_effort": "high"}, "reasoning_effort"),
    ("/v1/completions", {"suffix": "end"}, "suffix"),
    ("/v1/completions", {"echo": True}, "echo"),
    ("/v1/completions", {"best_of": 3}, "best_of"),
]


@pytest.mark.parametrize(("path", "change", "name"), UNSUPPORTED)
def test_unsupported_parameters_are_named_not_ignored(server, path, change, name):
    base = CHAT if "chat" in path else GOOD
    status, _, body = raw(server, "POST", path, base | change)
    assert_error(status, body, 400, param=name, code="unsupported_parameter", says=repr(name))


def test_harmless_fields_are_accepted(server):
    fine = {
        "user": "me",
        "metadata": {"a": "b"},
        "store": False,
        "response_format": {"type": "text"},
    }
    status, _, body = raw(server, "POST", "/v1/chat/completions", CHAT | fine)
    assert status == 200, body


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"{not json", "could not parse"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'{"model": "tiny", "prompt": "a", "temperature": NaN}', "NaN"),
        (b'{"model": "tiny", "prompt": "a", "max_tokens": Infinity}', "Infinity"),
        (b"\xff\xfe\x00garbage", "could not parse"),
    ],
)
def test_malformed_bodies(server, payload, says):
    status, _, body = raw(server, "POST", "/v1/completions", payload)
    assert_error(status, body, 400, says=says)
    assert_next_request_works(server)


def test_unknown_model_is_404(server):
    status, _, body = raw(server, "POST", "/v1/completions", GOOD | {"model": "gpt-4o"})
    assert_error(status, body, 404, param="model", code="model_not_found", says="tiny")
    status, _, body = raw(server, "GET", "/v1/models/gpt-4o")
    assert_error(status, body, 404, code="model_not_found")


def test_unknown_routes_and_methods_are_json_errors(server):
    status, _, body = raw(server, "GET", "/v1/nothing")
    assert_error(status, body, 404, says="/v1/nothing")
    status, _, body = raw(server, "GET", "/v1/completions")
    assert_error(status, body, 405)


def test_too_long_is_a_400_before_any_stream_byte(server):
    limit = raw(server, "GET", "/health")[2]["max_total_tokens"]
    ask = GOOD | {"max_tokens": limit, "stream": True}
    status, headers, body = raw(server, "POST", "/v1/completions", ask)
    assert headers["content-type"].startswith("application/json")
    assert_error(status, body, 400, param="max_tokens", code="context_length_exceeded")
    long_prompt = GOOD | {"prompt": "a" * (limit + 1)}
    status, _, body = raw(server, "POST", "/v1/completions", long_prompt)
    assert_error(status, body, 400, param="prompt", code="context_length_exceeded")


def test_chat_without_a_template_names_it(serve):
    with serve(chat=False) as plain:
        status, _, body = raw(plain, "POST", "/v1/chat/completions", CHAT)
        assert_error(status, body, 400, code="chat_template_missing", says="chat template")
        assert_next_request_works(plain)


def test_oversized_body_is_413(serve):
    with serve(max_body_bytes=2000) as small:
        big = GOOD | {"prompt": "x" * 5000}
        status, _, body = raw(small, "POST", "/v1/completions", big)
        assert_error(status, body, 413, code="request_too_large", says="2000 bytes")
        # without a Content-Length (chunked), the limit holds while reading
        chunks = (json.dumps(big).encode()[i : i + 500] for i in range(0, 6000, 500))
        status, _, body = raw(small, "POST", "/v1/completions", chunks)
        assert_error(status, body, 413)
        assert_next_request_works(small)


def test_api_key(serve):
    with serve(api_key="sesame") as locked:
        status, _, body = raw(locked, "POST", "/v1/completions", GOOD)
        assert_error(status, body, 401, code="invalid_api_key")
        wrong = {"Authorization": "Bearer nope"}
        assert raw(locked, "POST", "/v1/completions", GOOD, headers=wrong)[0] == 401
        assert raw(locked, "POST", "/tokenize", {"text": "a"}, headers=wrong)[0] == 401
        right = {"Authorization": "Bearer sesame"}
        assert raw(locked, "POST", "/v1/completions", GOOD, headers=right)[0] == 200
        assert raw(locked, "GET", "/health")[0] == 200  # the page and health stay open
        assert raw(locked, "GET", "/")[0] == 200

        import openai

        client = openai.OpenAI(base_url=locked.url + "/v1", api_key="sesame")
        assert client.completions.create(**GOOD).choices[0].finish_reason == "length"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=locked.url + "/v1", api_key="x").models.list()


@pytest.fixture(scope="module")
def small_server(checkpoint):
    """A server whose valid requests are short (64 tokens at most), for the fuzzing."""
    from serving_util import make_engine

    from scratchllm.serving import Server

    with Server(make_engine(checkpoint, chat=True, max_total_tokens=64)) as s:
        yield s


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=8,
)
FIELDS = ["model", "prompt", "messages", "max_tokens", "temperature", "top_p", "n", "stop"]
FIELDS += ["logprobs", "top_logprobs", "seed", "stream", "top_k", "stream_options", "echo"]
# Values near what the fields take, so the fuzzing gets past the first type check too.
NEAR = {
    "logit_bias": st.dictionaries(
        st.integers(-3, 10**6).map(str), st.integers(-300, 300) | st.floats(), max_size=3
    ),
    "messages": st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"])},
            optional={"content": JSON_VALUES, "name": st.text(max_size=3)},
        ),
        max_size=3,
    ),
    "prompt": st.text(max_size=10) | st.lists(st.integers(-5, 200), max_size=5),
}
BODIES = st.fixed_dictionaries(
    {}, optional={f: JSON_VALUES | NEAR.get(f, JSON_VALUES) for f in [*FIELDS, "logit_bias"]}
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/v1/completions", "/v1/chat/completions"]),
    body=BODIES,
    model=st.booleans(),
)
def test_no_request_body_gives_a_500(small_server, path, body, model):
    if model:
        body["model"] = "tiny"
    if body.get("stream") is True:
        body["stream"] = False  # a stream's errors come in the body; checked elsewhere
    payload = json.dumps(body, allow_nan=True)
    status, _, answer = raw(small_server, "POST", path, payload)
    assert status < 500, answer
    if status != 200:
        assert set(answer["error"]) == {"message", "type", "param", "code"}
