"""The requests of the OpenAI API, read and checked: every mistake is a 400 naming its field.

``parse_completion(body)`` and ``parse_chat(body)`` turn a decoded JSON body into a
``CompletionRequest`` / ``ChatRequest`` holding plain values and one ``Sampling``. The
fields and ranges are those of the API reference and the official client's
``completion_create_params`` (``temperature`` in [0, 2], ``top_p`` in (0, 1], ``stop`` up to
4 strings, ``logprobs`` up to 5 on completions, ``top_logprobs`` up to 20 on chat, ...).

Three kinds of field besides the ones we implement:

* **ignored**: fields that do not change the generated text (``user``, ``metadata``,
  ``store``, ``service_tier``, prompt-cache hints); accepted and dropped.
* **unsupported**: fields that would change the meaning (``tools``, ``response_format``,
  ``suffix``, ``echo``, ...): a 400 that names them, never silently ignored.
* **unknown**: anything else, a 400 as the OpenAI API gives ("Unrecognized request
  argument supplied").

``top_k`` is an extension (as in vLLM): the official client sends it with
``extra_body={"top_k": 40}``.

>>> req = parse_completion({"model": "m", "prompt": "ab", "temperature": 0, "max_tokens": 5})
>>> req.prompts, req.sampling.temperature, req.sampling.max_tokens
(['ab'], 0.0, 5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scratchllm.serving.errors import APIError

MAX_STOP = 4  # the API's limit on stop sequences
MAX_COMPLETION_LOGPROBS = 5  # completions: logprobs is an integer up to 5
MAX_TOP_LOGPROBS = 20  # chat: top_logprobs up to 20

COMMON = {"model", "n", "stream", "stream_options", "temperature", "top_p", "top_k", "seed"}
COMMON |= {"stop", "max_tokens", "frequency_penalty", "presence_penalty", "logit_bias"}
IGNORED = {"user", "metadata", "store", "service_tier", "safety_identifier"}
IGNORED |= {"prompt_cache_key", "prompt_cache_retention", "prompt_cache_options"}
COMPLETION_FIELDS = COMMON | IGNORED | {"prompt", "logprobs", "best_of", "echo", "suffix"}
CHAT_FIELDS = COMMON | IGNORED | {"messages", "logprobs", "top_logprobs"}
CHAT_FIELDS |= {"max_completion_tokens", "parallel_tool_calls"}
# Fields of the chat API that change what comes back and that this server does not do.
CHAT_UNSUPPORTED = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "reasoning_effort",
    "verbosity",
    "moderation",
)
ROLES = ("system", "developer", "user", "assistant")


@dataclass(frozen=True)
class Sampling:
    """How to pick each token, for one choice; the same for every choice of a request."""

    max_tokens: int | None  # None: the endpoint's default (resolved against the limit)
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int | None = None
    seed: int | None = None  # choice i uses seed + i
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # alternatives per token; None: no logprobs at all
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias) pairs


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    prompts: list[str | list[int]]  # one string or id list per prompt
    n: int
    stream: bool
    include_usage: bool
    sampling: Sampling


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, str]]  # {"role", "content"} with content as plain text
    n: int
    stream: bool
    include_usage: bool
    sampling: Sampling


def parse_completion(body: Any, max_n: int = 16) -> CompletionRequest:
    """Check a ``/v1/completions`` body; raise ``APIError`` (400) naming the first problem."""
    body = _object(body)
    _check_fields(body, COMPLETION_FIELDS)
    bad = [k for k in ("suffix",) if body.get(k) is not None]
    if body.get("echo"):
        bad.append("echo")
    n = _integer(body, "n", 1, max_n, 1)
    best_of = _integer(body, "best_of", 1, max_n, None)
    if best_of is not None and best_of != n:
        bad.append("best_of")
    if bad:
        raise APIError.unsupported(bad)
    prompts = _prompts(body)
    if n * len(prompts) > max_n:
        raise APIError.invalid(
            f"n ({n}) x {len(prompts)} prompts asks for {n * len(prompts)} choices; this "
            f"server gives at most {max_n} per request",
            param="n",
        )
    logprobs = _integer(body, "logprobs", 0, MAX_COMPLETION_LOGPROBS, None)
    stream, include_usage = _stream(body)
    return CompletionRequest(
        model=_model(body),
        prompts=prompts,
        n=n,
        stream=stream,
        include_usage=include_usage,
        sampling=_sampling(body, _integer(body, "max_tokens", 1, None, None), logprobs),
    )


def parse_chat(body: Any, max_n: int = 16) -> ChatRequest:
    """Check a ``/v1/chat/completions`` body; raise ``APIError`` (400) naming the first problem."""
    body = _object(body)
    bad = [k for k in CHAT_UNSUPPORTED if k in body and not _harmless(k, body[k])]
    if bad:
        raise APIError.unsupported(bad)
    _check_fields(body, CHAT_FIELDS | set(CHAT_UNSUPPORTED))
    messages = _messages(body.get("messages"))
    logprobs = _boolean(body, "logprobs", False)
    top = _integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS, None)
    if top is not None and not logprobs:
        raise APIError.invalid(
            "top_logprobs needs logprobs: set logprobs to true", param="top_logprobs"
        )
    max_tokens = _integer(body, "max_tokens", 1, None, None)
    max_completion = _integer(body, "max_completion_tokens", 1, None, None)
    if max_tokens is not None and max_completion is not None and max_tokens != max_completion:
        raise APIError.invalid(
            f"max_tokens ({max_tokens}) and max_completion_tokens ({max_completion}) "
            "disagree; send one of them (max_tokens is the older name)",
            param="max_completion_tokens",
        )
    stream, include_usage = _stream(body)
    return ChatRequest(
        model=_model(body),
        messages=messages,
        n=_integer(body, "n", 1, max_n, 1),
        stream=stream,
        include_usage=include_usage,
        sampling=_sampling(
            body,
            max_completion if max_completion is not None else max_tokens,
            (top or 0) if logprobs else None,
        ),
    )


# -- the pieces ---------------------------------------------------------------------------


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise APIError.invalid(
            f"the request body must be a JSON object, got {_kind(body)}", code="invalid_json"
        )
    return body


def _check_fields(body: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(k for k in body if k not in known)
    if unknown:
        raise APIError.invalid(
            f"Unrecognized request argument supplied: {', '.join(unknown)}",
            param=unknown[0],
            code="unknown_parameter",
        )


def _harmless(name: str, value: Any) -> bool:
    """Unsupported fields sent with the value that asks for nothing (the defaults)."""
    if value is None:
        return True
    if name == "response_format":
        return isinstance(value, dict) and value.get("type") == "text"
    if name == "modalities":
        return value == ["text"]
    if name in ("tools", "functions"):
        return value == []
    if name in ("tool_choice", "function_call"):
        return value == "none"
    return False


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError.invalid(
            "model is required: the name GET /v1/models lists, as a string", param="model"
        )
    return model


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = _boolean(body, "stream", False)
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise APIError.invalid(
            "stream_options is only allowed when stream is true", param="stream_options"
        )
    if not isinstance(options, dict):
        raise APIError.invalid(
            f"stream_options must be an object, got {_kind(options)}", param="stream_options"
        )
    unknown = sorted(set(options) - {"include_usage", "include_obfuscation"})
    if unknown:
        raise APIError.invalid(
            f"Unrecognized stream_options field: {', '.join(unknown)}",
            param=f"stream_options.{unknown[0]}",
        )
    return stream, _boolean(options, "include_usage", False, prefix="stream_options.")


def _sampling(body: dict[str, Any], max_tokens: int | None, logprobs: int | None) -> Sampling:
    return Sampling(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.0, 2.0, 1.0),
        top_p=_number(body, "top_p", 0.0, 1.0, 1.0, low_open=True),
        top_k=_integer(body, "top_k", 1, None, None),
        seed=_integer(body, "seed", -(2**63), 2**64 - 1, None),
        stop=_stops(body.get("stop")),
        logprobs=logprobs,
        frequency_penalty=_number(body, "frequency_penalty", -2.0, 2.0, 0.0),
        presence_penalty=_number(body, "presence_penalty", -2.0, 2.0, 0.0),
        logit_bias=_logit_bias(body.get("logit_bias")),
    )


def _prompts(body: dict[str, Any]) -> list[str | list[int]]:
    """A string, a list of strings, a list of ids or a list of id lists, as the API allows."""
    prompt = body.get("prompt")
    if prompt is None:
        raise APIError.invalid("prompt is required (a string or a list of them)", param="prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(_is_int(p) for p in prompt):
            return [list(prompt)]
        if all(isinstance(p, list) and p and all(_is_int(t) for t in p) for p in prompt):
            return [list(p) for p in prompt]
    raise APIError.invalid(
        "prompt must be a string, a non-empty list of strings, a list of token ids or a "
        f"list of non-empty token id lists; got {_kind(prompt)}",
        param="prompt",
    )


def _messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise APIError.invalid(
            "messages must be a non-empty list of {role, content} objects", param="messages"
        )
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise APIError.invalid(f"{where} must be an object, got {_kind(m)}", param=where)
        role = m.get("role")
        if role in ("tool", "function"):
            raise APIError.unsupported([f"{where}.role={role!r} (tool calling)"])
        if role not in ROLES:
            raise APIError.invalid(
                f"{where}.role must be one of {list(ROLES)}, got {role!r}", param=f"{where}.role"
            )
        if m.get("tool_calls") or m.get("function_call"):
            raise APIError.unsupported([f"{where}.tool_calls"])
        extra = sorted(set(m) - {"role", "content", "name", "tool_calls", "function_call"})
        if extra:
            raise APIError.invalid(
                f"Unrecognized field in {where}: {', '.join(extra)}", param=f"{where}.{extra[0]}"
            )
        out.append({"role": role, "content": _content(m.get("content"), where)})
    return out


def _content(content: Any, where: str) -> str:
    """A message's text: a string, or a list of text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            at = f"{where}.content[{j}]"
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else _kind(part)
                raise APIError.invalid(
                    f"{at} is a {kind!r} part; this model reads text parts only",
                    param=at,
                )
            if not isinstance(part.get("text"), str):
                raise APIError.invalid(f"{at}.text must be a string", param=f"{at}.text")
            texts.append(part["text"])
        return "".join(texts)
    raise APIError.invalid(
        f"{where}.content must be a string or a list of text parts, got {_kind(content)}",
        param=f"{where}.content",
    )


def _stops(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise APIError.invalid(
            f"stop must be a string or a list of strings, got {_kind(stop)}", param="stop"
        )
    if len(stops) > MAX_STOP:
        raise APIError.invalid(
            f"stop has {len(stops)} sequences; at most {MAX_STOP} are allowed", param="stop"
        )
    if any(not s for s in stops):
        raise APIError.invalid("stop sequences must not be empty strings", param="stop")
    return tuple(stops)


def _logit_bias(bias: Any) -> tuple[tuple[int, float], ...]:
    if bias is None:
        return ()
    if not isinstance(bias, dict):
        raise APIError.invalid(
            f"logit_bias must map token ids to numbers, got {_kind(bias)}", param="logit_bias"
        )
    out = []
    for key, value in bias.items():
        try:
            token = int(key)
        except ValueError:
            token = -1
        if token < 0:
            raise APIError.invalid(
                f"logit_bias key {key!r} is not a token id", param=f"logit_bias.{key}"
            )
        if not _is_number(value) or not -100 <= value <= 100:
            raise APIError.invalid(
                f"logit_bias[{key!r}] must be a number in [-100, 100], got {value!r}",
                param=f"logit_bias.{key}",
            )
        out.append((token, float(value)))
    return tuple(out)


# -- typed reads ---------------------------------------------------------------------------


def _number(
    body: dict, name: str, low: float, high: float, default: float, low_open: bool = False
) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not _is_number(value):
        raise APIError.invalid(f"{name} must be a number, got {_kind(value)}", param=name)
    if value > high or value < low or (low_open and value == low):
        left = "(" if low_open else "["
        raise APIError.invalid(
            f"{name} must be in {left}{low:g}, {high:g}], got {value!r}", param=name
        )
    return float(value)


def _integer(body: dict, name: str, low: int, high: int | None, default: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON writers may send 5.0
    if not _is_int(value):
        raise APIError.invalid(f"{name} must be an integer, got {_kind(value)}", param=name)
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise APIError.invalid(f"{name} must be {bound}, got {value}", param=name)
    return value


def _boolean(body: dict, name: str, default: bool, prefix: str = "") -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise APIError.invalid(
            f"{prefix}{name} must be true or false, got {_kind(value)}", param=prefix + name
        )
    return value


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x == x  # not NaN


def _kind(value: Any) -> str:
    """How a JSON value reads in an error message: its JSON type and a short repr."""
    names = {str: "string", bool: "boolean", int: "integer", float: "number"}
    names |= {list: "array", dict: "object", type(None): "null"}
    text = repr(value)
    return f"{names.get(type(value), type(value).__name__)} {text[:40]}"
