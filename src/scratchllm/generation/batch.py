"""Several prompts at once, each with its own settings: what a server needs for concurrent
clients.

Each ``Request`` is a prompt and its own ``GenerationConfig`` (max_new_tokens, temperature,
top_k, top_p, repetition penalty, seed, eos ids, stop strings). The prompts are left-padded
into one batch and decoded together: one model step per token for all of them, so the
weights are read once per step instead of once per client. ``stream_batch`` yields an
``Event`` per row and step as the tokens come; ``generate_batch`` collects them into one
``Completion`` per request.

>>> from scratchllm.generation import GenerationConfig, Request, generate_batch
>>> requests = [Request([1, 2, 3], GenerationConfig(20, temperature=0.8, seed=1)),  # doctest: +SKIP
...             Request([4, 5], GenerationConfig(5, temperature=0))]
>>> [c.tokens for c in generate_batch(model, requests)]                         # doctest: +SKIP

**Each row as if alone.** A row's tokens are those ``generate`` / ``stream_generate`` give
for its prompt and config on their own: padding is masked from attention, positions and
the repetition penalty, each row draws from its own ``torch.Generator`` (its config's
``seed``), and rows with the same sampling settings share one call of the same logits
processors, which work row by row. For GPT on the C++ step (``models/decode_kernel.py``)
a row's logits are bitwise those of the row alone, so the tokens are the same exactly.

A row ends at its ``max_new_tokens`` (``finish_reason="length"``), at one of its eos ids
(not included) or at one of its stop strings (``"stop"``; the text ends before it, as
``stream_generate``'s does). Ended rows are fed a pad token until every row has ended.
Beam search takes one config for the batch: use ``beam_search``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from scratchllm.generation.config import GenerationConfig, normalise_seeds
from scratchllm.generation.inputs import model_device, prepare_prompts, warn_if_truncated
from scratchllm.generation.processors import LogitsProcessor, build_processors, sample_tokens
from scratchllm.generation.runner import StepRunner, eval_mode
from scratchllm.generation.text import TextTracker, decode_function

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Request:
    """One prompt (token ids), the settings it is generated with, and logits processors of
    its own: they run after the batch's ``logits_processor`` and before the sampling
    warpers, each seeing ``input_ids [1, n]``, the row alone without padding, so a row
    gets what ``generate(..., logits_processor=batch's + its own)`` gives it."""

    prompt: Sequence[int]
    config: GenerationConfig
    logits_processor: Sequence[LogitsProcessor] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.config, GenerationConfig):
            raise TypeError(f"config must be a GenerationConfig, got {type(self.config).__name__}")
        if self.config.num_beams > 1:
            raise ValueError(
                f"a batch request samples or decodes greedily; num_beams={self.config.num_beams} "
                "needs beam_search()"
            )


@dataclass(frozen=True)
class Event:
    """What one step produced for one row of ``stream_batch``."""

    row: int  # which request
    token: int | None  # the new token; None when the row ended on an eos (not part of the output)
    text: str  # the text this step made safe to show ("" without a tokenizer, or while held back)
    finish_reason: FinishReason | None  # set on the row's last event


@dataclass
class Completion:
    """The output of one request of ``generate_batch``."""

    tokens: list[int]  # the new tokens: no eos, and none of a stop string
    text: str | None  # their text (None without a tokenizer), ending before any stop string
    finish_reason: FinishReason


def generate_batch(
    model: torch.nn.Module,
    requests: Sequence[Request],
    *,
    tokenizer: Any = None,
    logits_processor: Sequence[LogitsProcessor] = (),
) -> list[Completion]:
    """Run ``requests`` as one batch; one ``Completion`` per request, in order."""
    tokens: list[list[int]] = [[] for _ in requests]
    texts: list[list[str]] = [[] for _ in requests]
    done: dict[int, FinishReason] = {}
    stream = BatchStream(model, requests, tokenizer, logits_processor)
    for event in stream:
        if event.token is not None:
            tokens[event.row].append(event.token)
        texts[event.row].append(event.text)
        if event.finish_reason is not None:
            done[event.row] = event.finish_reason
    out = []
    for b in range(len(requests)):
        text = "".join(texts[b]) if tokenizer is not None else None
        out.append(Completion(stream.rows[b].tokens_kept(tokens[b]), text, done[b]))
    return out


def stream_batch(
    model: torch.nn.Module,
    requests: Sequence[Request],
    *,
    tokenizer: Any = None,
    logits_processor: Sequence[LogitsProcessor] = (),
) -> BatchStream:
    """Run ``requests`` as one batch, yielding each row's ``Event`` as its tokens come.

    Every step yields one event for each row still running, in row order; a row's last
    event has its ``finish_reason``. With ``tokenizer``, ``text`` holds whole characters,
    and text that might begin one of the row's stop strings is held back until it is clear.
    The ``BatchStream`` it returns can also ``end(row)`` a row early (a client that left).
    """
    return BatchStream(model, requests, tokenizer, logits_processor)


class BatchStream:
    """``stream_batch``'s iterator of ``Event``; ``end(row)`` stops a row before its end."""

    def __init__(self, model, requests, tokenizer, extra) -> None:
        requests = list(requests)
        if not requests:
            raise ValueError("no requests: give at least one Request")
        for i, r in enumerate(requests):
            if not isinstance(r, Request):
                raise TypeError(f"requests[{i}] must be a Request, got {type(r).__name__}")
            if r.config.stop and tokenizer is None:
                raise ValueError(
                    f"requests[{i}] has stop={list(r.config.stop)}, which needs tokenizer= "
                    "(an object with decode(ids) -> str)"
                )
        self.model, self.requests, self.extra = model, requests, extra
        self.decode = decode_function(tokenizer) if tokenizer is not None else None
        self.rows: list[RowText] = []  # each row's progress, once generation has begun
        vocab = getattr(model, "vocab_size", None)
        for i, r in enumerate(requests):
            fill = r.config.fill_token_id
            if fill is not None and vocab is not None and fill >= vocab:
                raise ValueError(
                    f"requests[{i}]: pad/eos id {fill} is outside the model's vocabulary "
                    f"[0, {vocab})"
                )
        self.prompts = prepare_prompts(
            [list(r.prompt) for r in requests],
            pad_token_id=0,  # any id: padding is masked, and the ids are not returned
            vocab_size=vocab,
            device=model_device(model),
        )
        warn_if_truncated(model, self.prompts, stacklevel=3)
        self._ended: set[int] = set()
        self._events: Iterator[Event] | None = None

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Event:
        if self._events is None:
            self._events = self._generate()
        return next(self._events)

    def end(self, row: int) -> None:
        """Stop generating for ``row`` from the next step on; it yields no more events (no
        finish event either). The batch ends when every row has ended one way or another."""
        self._ended.add(row)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()

    def _generate(self) -> Iterator[Event]:
        with eval_mode(self.model), torch.inference_mode():
            yield from self._run()

    def _run(self) -> Iterator[Event]:
        reqs, prompts = self.requests, self.prompts
        B, T = prompts.shape
        device = prompts.ids.device
        limits = [r.config.max_new_tokens for r in reqs]
        N = max(limits)
        self.rows = [RowText.of(r.config, self.decode) for r in reqs]
        active = [n > 0 for n in limits]
        for b in range(B):
            if not active[b]:
                yield Event(b, None, "", "length")
        if not any(active):
            return
        seq = torch.empty(B, T + N, dtype=torch.long, device=device)
        seq[:, :T] = prompts.ids
        if prompts.padded:  # the repetition penalty reads seq: see DecodeLoop
            first = prompts.ids.gather(1, torch.tensor(prompts.pad_lens, device=device)[:, None])
            seq[:, :T] = torch.where(prompts.real_mask(), prompts.ids, first)
        runner = StepRunner(self.model, prompts, N, all(r.config.use_cache for r in reqs))
        groups = self._groups()
        sampling = [r.config.sampling for r in reqs]
        generators = [
            torch.Generator().manual_seed(normalise_seeds(r.config.seed, 1)[0]) if s else None
            for r, s in zip(reqs, sampling)
        ]
        fill = torch.tensor([r.config.fill_token_id or 0 for r in reqs], device=device)
        greedy_rows = torch.tensor([b for b in range(B) if not sampling[b]], dtype=torch.long)
        cur = T
        while True:
            for b in self._ended:
                active[b] = False
            if not any(active):
                return
            logits = runner.next_logits(seq, cur)  # (B, V)
            logits = self._process(groups, seq, cur, logits)
            live = [b for b in range(B) if sampling[b] and active[b]]  # ended rows draw no more
            if len(live) == B:  # every row samples: no picking
                tokens = sample_tokens(logits, generators)
            else:
                tokens = fill.clone()
                if len(greedy_rows):
                    tokens[greedy_rows] = logits[greedy_rows].argmax(-1)
                if live:
                    tokens[live] = sample_tokens(logits[live], [generators[b] for b in live])
            if not all(active):
                tokens = torch.where(torch.tensor(active, device=device), tokens, fill)
            seq[:, cur] = tokens
            cur += 1
            for b, token in enumerate(tokens.tolist()):
                if active[b]:
                    event = self.rows[b].advance(b, token)
                    if event.finish_reason is not None:
                        active[b] = False
                    yield event

    def _groups(self) -> list[tuple[list[int] | None, Any]]:
        """Rows with the same processor settings, and the chain they share (rows None: all);
        a row with processors of its own is a group of its own."""
        by_key: dict[tuple, list[int]] = {}
        groups = []
        for b, r in enumerate(self.requests):
            if r.logits_processor:
                groups.append(
                    ([b], chain_for(processor_key(r.config), (*self.extra, *r.logits_processor)))
                )
            else:
                by_key.setdefault(processor_key(r.config), []).append(b)
        for key, rows in by_key.items():
            chain = chain_for(key, self.extra)
            if chain:
                groups.append((None if len(by_key) == 1 and not groups else rows, chain))
        return groups

    def _process(self, groups, seq: torch.Tensor, cur: int, logits: torch.Tensor) -> torch.Tensor:
        """The groups' chains on their rows; a row with its own processors reads its ids
        without the padding (``Request``)."""
        shared = [(rows, chain) for rows, chain in groups if not self._own(rows)]
        out = process_groups(shared, seq[:, :cur], logits) if shared else logits
        for rows, chain in groups:
            if self._own(rows):
                b = rows[0]
                if out is logits:
                    out = logits.clone()
                ids = seq[b : b + 1, self.prompts.pad_lens[b] : cur]
                out[b : b + 1] = chain(ids, logits[b : b + 1])
        return out

    def _own(self, rows: list[int] | None) -> bool:
        return rows is not None and len(rows) == 1 and bool(self.requests[rows[0]].logits_processor)


def process_groups(groups, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Apply each group's chain to its rows of ``logits`` (rows None: every row)."""
    if len(groups) == 1 and groups[0][0] is None:  # one setting for every row
        return groups[0][1](input_ids, logits)
    out = logits.clone()
    for rows, chain in groups:
        out[rows] = chain(input_ids[rows], logits[rows])
    return out


def processor_key(config: GenerationConfig) -> tuple:
    """What a row's logits processors depend on: rows with the same key share one chain."""
    c = config
    return (c.sampling, c.temperature, c.top_k, c.top_p, c.repetition_penalty)


def chain_for(key: tuple, extra: Sequence[LogitsProcessor]) -> Any:
    """The processor chain of a ``processor_key`` (empty: nothing to do), then ``extra``."""
    sampling, temperature, top_k, top_p, penalty = key
    return build_processors(
        do_sample=sampling,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=penalty,
        extra=extra,
    )


@dataclass
class RowText:
    """One row's progress towards its end: its token count and the text shown so far."""

    limit: int  # max_new_tokens
    eos: frozenset[int]
    tracker: TextTracker | None  # None without a tokenizer
    count: int = 0  # tokens generated (no eos)
    shown: int = 0  # characters of tracker.text already in events

    @classmethod
    def of(cls, config: GenerationConfig, decode: Any) -> RowText:
        tracker = TextTracker(decode, config.stop) if decode is not None else None
        return cls(config.max_new_tokens, frozenset(config.eos_token_id or ()), tracker)

    def advance(self, row: int, token: int) -> Event:
        """The event of ``row`` for its new ``token``."""
        tracker = self.tracker
        if token in self.eos:
            text = ""
            if tracker is not None:
                tracker.finish()
                text = tracker.text[self.shown :]
            return Event(row, None, text, "stop")
        self.count += 1
        if tracker is None:
            return Event(row, token, "", "length" if self.count == self.limit else None)
        stopped = tracker.push(token)
        end = tracker.safe_end()
        text = tracker.text[self.shown : end]
        self.shown = max(self.shown, end)
        if stopped:
            return Event(row, token, text, "stop")
        if self.count == self.limit:
            tracker.finish()  # no more tokens: show what was held back
            text += tracker.text[self.shown :]
            self.shown = len(tracker.text)
            return Event(row, token, text, "length")
        return Event(row, token, text, None)

    def tokens_kept(self, tokens: list[int]) -> list[int]:
        """``tokens`` (the row's, eos left out) without those of a stop string."""
        if self.tracker is not None and self.tracker.stop_at is not None:
            return tokens[: self.tracker.tokens_before_stop()]
        return tokens
