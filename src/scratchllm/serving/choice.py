"""One choice of a response: model tokens become text deltas with their log-probs.

``run_choice`` drives ``backend.decode_steps`` and yields ``Delta`` events (new text and
the tokens that made it) and one ``Finish`` (why it ended, how many tokens it took).
``choice_events`` does the same from any ``(token, log-probs)`` steps: a row of
``backend.BatchSteps`` when the choice decodes in a batch with others.

* **Stop strings** end the text just before them (the OpenAI semantics). Text that could
  be the start of a stop string is held back until it is clear, and a delta always ends
  at a token boundary, so each delta's text is exactly its tokens' texts joined.
* **Stop tokens** (the tokenizer's end of text, a chat template's end of turn) end the
  choice and are not shown.
* **Token texts join to the content.** A token's ``text`` is what it adds to the output:
  a byte-level BPE token holding half of a character adds "" and the next token adds the
  whole character (its ``bytes`` are still the token's own bytes). A token that a stop
  string cuts into shows only its part before the stop.
* **Counting.** ``Finish.completion_tokens`` counts every token the model generated,
  the stop token and the tokens of a stop string included: that is the work done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from scratchllm.generation import TextTracker
from scratchllm.serving.backend import decode_steps
from scratchllm.serving.protocol import Sampling

UNLIKELY = -9999.0  # the API's stand-in for log(0): JSON has no -Infinity


@dataclass
class TokenInfo:
    id: int
    text: str  # what this token adds to the output ("" for part of a character)
    bytes: list[int]
    logprob: float | None = None  # None when log-probs were not asked for
    top: list[tuple[str, list[int], float]] = field(default_factory=list)  # best first


@dataclass
class Delta:
    text: str
    tokens: list[TokenInfo]


@dataclass
class Finish:
    reason: str  # "stop", "length", or "cancelled" (the client left; nobody reads it)
    completion_tokens: int


class TokenTexts:
    """Each token id's own text and bytes, decoded once and kept (alternatives, bytes)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def __call__(self, token: int) -> tuple[str, list[int]]:
        if token not in self._cache:
            text = self.tokenizer.decode([token])
            raw = getattr(self.tokenizer, "token_bytes", None)
            data = raw(token) if callable(raw) else text.encode("utf-8")
            self._cache[token] = (text, list(data))
        return self._cache[token]


def run_choice(
    model: torch.nn.Module,
    texts: TokenTexts,
    prompt_ids: list[int],
    sampling: Sampling,
    seed: int | None,
    stop_ids: frozenset[int] = frozenset(),
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[Delta | Finish]:
    """Generate one choice; see the module docstring for what comes out."""
    steps = decode_steps(model, prompt_ids, sampling, seed)
    return choice_events(steps, texts, sampling, stop_ids, cancelled)


def choice_events(
    steps: Iterator[tuple[int, torch.Tensor | None]],
    texts: TokenTexts,
    sampling: Sampling,
    stop_ids: frozenset[int] = frozenset(),
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[Delta | Finish]:
    """One choice's events from its ``(token, log-probs or None)`` steps, as ``run_choice``."""
    tracker = TextTracker(texts.tokenizer.decode, sampling.stop)
    tokens: list[TokenInfo] = []
    starts: list[int] = []  # where each token's text starts in tracker.text
    sent = shown = 0  # tokens and characters already yielded
    count, reason = 0, "length"
    for token, logprobs in steps:
        count += 1
        if cancelled():
            reason = "cancelled"
            break
        if token in stop_ids:
            reason = "stop"
            break
        starts.append(len(tracker.text))
        stopped = tracker.push(token)
        tokens.append(_info(token, logprobs, sampling.logprobs, texts))
        if stopped:
            reason = "stop"
            break
        upto = _releasable(tracker, sent, tracker.safe_end())
        if upto > sent:
            yield _delta(tracker, tokens, starts, sent, upto, shown)
            sent, shown = upto, tracker.ends[upto - 1]
    if reason == "cancelled":
        yield Finish(reason, count)
        return
    end = tracker.stop_at
    if end is None:
        tracker.finish()  # show held-back text and any unfinished character
        end = len(tracker.text)
    if sent < len(tokens) and end > shown:
        yield _delta(tracker, tokens, starts, sent, len(tokens), shown, end)
    yield Finish(reason, count)


def _releasable(tracker: TextTracker, sent: int, safe: int) -> int:
    """How many tokens may be sent now: those up to the last one that ends a character at
    or before ``safe`` (text past ``safe`` might be the start of a stop string)."""
    upto = sent
    for k in range(sent, len(tracker.ends)):
        end = tracker.ends[k]
        if end < 0:  # part of a character: it goes out with the token that completes it
            continue
        if end > safe:
            break
        upto = k + 1
    return upto


def _delta(
    tracker: TextTracker,
    tokens: list[TokenInfo],
    starts: list[int],
    first: int,
    upto: int,
    shown: int,
    end: int | None = None,
) -> Delta:
    """The delta of ``tokens[first:upto]`` with their texts filled in.

    ``end`` marks the last delta: the text stops there. After a stop string, a token it
    cuts into shows its part before the stop and the tokens wholly inside it are left
    out; without one, the last token also takes the text the final flush produced.
    """
    final = end is not None
    limit = end if final else tracker.ends[upto - 1]
    stopped = final and tracker.stop_at is not None
    out = []
    for k in range(first, upto):
        start = starts[k]
        if stopped and start >= limit:
            break  # this token and the rest are the stop string
        natural = tracker.ends[k] if tracker.ends[k] >= 0 else start
        if final and not stopped and k == upto - 1:
            natural = limit
        cut = min(natural, limit)
        info = tokens[k]
        info.text = tracker.text[start:cut]
        if cut < natural:
            info.bytes = list(info.text.encode("utf-8"))
        out.append(info)
    return Delta(tracker.text[shown:limit], out)


def _info(
    token: int, logprobs: torch.Tensor | None, top_n: int | None, texts: TokenTexts
) -> TokenInfo:
    info = TokenInfo(token, "", texts(token)[1])
    if logprobs is None or top_n is None:
        return info
    info.logprob = max(float(logprobs[token]), UNLIKELY)
    if top_n:
        values, ids = torch.topk(logprobs, min(top_n, logprobs.numel()))
        info.top = [
            (*texts(int(i)), max(float(v), UNLIKELY)) for v, i in zip(values.tolist(), ids.tolist())
        ]
    return info
