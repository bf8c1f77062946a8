"""Response and chunk JSON in the shapes the official client parses (``openai.types``).

Completions (``object: "text_completion"``, the same shape streamed and not) carry
log-probs as four parallel lists: ``tokens``, ``token_logprobs``, ``top_logprobs`` (one
``{token: logprob}`` dict per token) and ``text_offset`` (where each token starts in the
returned text). Chat (``chat.completion`` / ``chat.completion.chunk``) carries a list of
``{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}`` under
``logprobs.content``. A stream ends with one chunk per choice holding its
``finish_reason``, then, with ``stream_options.include_usage``, a chunk with empty
``choices`` and the ``usage`` (every other chunk then says ``"usage": null``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from scratchllm import __version__
from scratchllm.serving.choice import Delta, TokenInfo

FINGERPRINT = f"scratchllm-{__version__}"


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_token_logprobs(tokens: list[TokenInfo]) -> list[dict[str, Any]]:
    return [
        {
            "token": t.text,
            "logprob": t.logprob,
            "bytes": t.bytes,
            "top_logprobs": [
                {"token": text, "logprob": lp, "bytes": data} for text, data, lp in t.top
            ],
        }
        for t in tokens
    ]


def completion_logprobs(tokens: list[TokenInfo], offset: int) -> dict[str, list]:
    """The four lists; ``offset`` is where the first token starts in the choice's text."""
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.text)
    return {
        "tokens": [t.text for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{text: lp for text, _, lp in t.top} for t in tokens],
        "text_offset": offsets,
    }


@dataclass
class ChoiceState:
    """What one choice has produced so far."""

    text: str = ""
    tokens: list[TokenInfo] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0


class Response:
    """One response's id, clock and per-choice state, and its JSON for either endpoint."""

    def __init__(self, chat: bool, model: str, n_choices: int, prompt_tokens: int) -> None:
        self.chat = chat
        self.model = model
        self.id = new_id("chatcmpl" if chat else "cmpl")
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"
        self.choices = [ChoiceState() for _ in range(n_choices)]
        self.prompt_tokens = prompt_tokens
        self.logprobs = False  # whether the request asked for them
        self.include_usage = False  # streams: a usage chunk at the end, "usage": null before

    def usage(self) -> dict[str, int]:
        return usage(self.prompt_tokens, sum(c.completion_tokens for c in self.choices))

    # -- non-streamed --------------------------------------------------------------------

    def add(self, index: int, delta: Delta) -> None:
        state = self.choices[index]
        state.text += delta.text
        state.tokens.extend(delta.tokens)

    def finish(self, index: int, reason: str, completion_tokens: int) -> None:
        self.choices[index].finish_reason = reason
        self.choices[index].completion_tokens = completion_tokens

    def body(self) -> dict[str, Any]:
        choices = []
        for i, c in enumerate(self.choices):
            if self.chat:
                logprobs = {"content": chat_token_logprobs(c.tokens), "refusal": None}
                choice = {
                    "index": i,
                    "message": {"role": "assistant", "content": c.text, "refusal": None},
                }
            else:
                logprobs = completion_logprobs(c.tokens, 0)
                choice = {"index": i, "text": c.text}
            choice["logprobs"] = logprobs if self.logprobs else None
            choice["finish_reason"] = c.finish_reason
            choices.append(choice)
        return self._envelope(self.object, choices) | {"usage": self.usage()}

    # -- streamed ----------------------------------------------------------------------------

    def first_chunk(self, index: int) -> dict[str, Any] | None:
        """Chat streams open each choice with the assistant role; completions need nothing."""
        if not self.chat:
            return None
        choice = {"index": index, "delta": {"role": "assistant", "content": ""}}
        return self._chunk(choice | {"logprobs": None, "finish_reason": None})

    def delta_chunk(self, index: int, delta: Delta) -> dict[str, Any]:
        state = self.choices[index]
        logprobs = None
        if self.chat:
            if self.logprobs:
                logprobs = {"content": chat_token_logprobs(delta.tokens), "refusal": None}
            choice = {"index": index, "delta": {"content": delta.text}}
        else:
            if self.logprobs:
                logprobs = completion_logprobs(delta.tokens, len(state.text))
            choice = {"index": index, "text": delta.text}
        self.add(index, delta)
        return self._chunk(choice | {"logprobs": logprobs, "finish_reason": None})

    def finish_chunk(self, index: int, reason: str, completion_tokens: int) -> dict[str, Any]:
        self.finish(index, reason, completion_tokens)
        choice: dict[str, Any] = {"index": index}
        choice |= {"delta": {}} if self.chat else {"text": ""}
        return self._chunk(choice | {"logprobs": None, "finish_reason": reason})

    def usage_chunk(self) -> dict[str, Any]:
        return self._envelope(self.chunk_object, []) | {"usage": self.usage()}

    @property
    def chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def _chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        chunk = self._envelope(self.chunk_object, [choice])
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _envelope(self, obj: str, choices: list) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        }
