"""The one place the server calls ``scratchllm.generation``: token steps with their log-probs.

``decode_steps(model, prompt_ids, sampling, seed)`` yields ``(token, logprobs)`` for every
token the model picks, where ``logprobs [V]`` is the log-softmax of the model's raw
next-token logits at that step (before penalties, bias, temperature, top-k and top-p, as
vLLM reports them by default), or None when the request did not ask for log-probs. The
caller stops whenever it likes (eos, a stop string, a client that left): closing the
generator ends the decode loop.

``BatchSteps(model, rows)`` decodes several choices as one batch (``stream_batch``), each
row yielding what ``decode_steps`` yields for it alone, for the choices that ``batchable``
says need nothing per request on the logits. ``LiveSteps(model, max_rows)`` does the same
for choices that join and leave a running batch (``LiveBatch``, a GPT's): there each row
can have its log-probs, penalties and logit bias.

Everything the server needs from the generation package (and the one hint it gives the
decode step, ``share_cores``) goes through this module, so a change of that API is a change
here only.

>>> steps = decode_steps(model, [5, 6], Sampling(max_tokens=3, temperature=0))  # doctest: +SKIP
>>> [token for token, _ in steps]                                              # doctest: +SKIP
[7, 7, 2]
"""

from __future__ import annotations

import collections
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from scratchllm.generation import (
    GenerationConfig,
    LiveBatch,
    PromptTruncatedWarning,
    Request,
    stream_batch,
    stream_generate,
    why_not_live,
)
from scratchllm.serving.protocol import Sampling


class _Recorder:
    """A logits processor that keeps the log-probs of the step it sees and changes nothing."""

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        self.last = torch.log_softmax(logits[0].float(), dim=-1)  # (V,)
        return logits


class _Penalties:
    """OpenAI's frequency and presence penalties and logit bias, on the generated tokens.

    ``logit[j] -= frequency * count[j] + presence * (count[j] > 0)`` where ``count`` counts
    token j among the tokens generated so far (not the prompt); then ``logit[j] += bias[j]``.
    """

    def __init__(self, sampling: Sampling, prompt_len: int, vocab_size: int) -> None:
        self.frequency = sampling.frequency_penalty
        self.presence = sampling.presence_penalty
        self.prompt_len = prompt_len
        self.bias = None
        if sampling.logit_bias:
            self.bias = torch.zeros(vocab_size)
            for token, value in sampling.logit_bias:
                self.bias[token] = value

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.frequency or self.presence:
            generated = input_ids[0, self.prompt_len :]
            if generated.numel():
                count = torch.bincount(generated, minlength=logits.shape[-1]).to(logits.dtype)
                logits = logits - self.frequency * count - self.presence * (count > 0)
        if self.bias is not None:
            logits = logits + self.bias.to(logits.device, logits.dtype)
        return logits


def context_length(model: torch.nn.Module) -> int:
    """How many past tokens the model conditions on (sys.maxsize for an unbounded RNN), as
    the decode loop reads it: the ``context_length`` of the language-model contract."""
    ctx = getattr(model, "context_length", None)
    if ctx is None or ctx == float("inf"):
        return sys.maxsize
    return max(int(ctx), 1)


def decode_steps(
    model: torch.nn.Module,
    prompt_ids: list[int],
    sampling: Sampling,
    seed: int | None = None,
) -> Iterator[tuple[int, torch.Tensor | None]]:
    """Yield ``(token id, log-probs [V] or None)`` for up to ``sampling.max_tokens`` tokens."""
    recorder = _Recorder()
    processors: list[Any] = [recorder] if sampling.logprobs is not None else []
    if sampling.frequency_penalty or sampling.presence_penalty or sampling.logit_bias:
        processors.append(_Penalties(sampling, len(prompt_ids), model.vocab_size))
    with warnings.catch_warnings():
        # A prompt longer than the context conditions on its last tokens; the client asked
        # for it, and the server has no one to show a warning to.
        warnings.simplefilter("ignore", PromptTruncatedWarning)
        steps = stream_generate(
            model,
            prompt_ids,
            sampling.max_tokens,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=None if sampling.top_p >= 1.0 else sampling.top_p,
            seed=seed,
            logits_processor=processors,
        )
        try:
            for token in steps:
                yield int(token), recorder.last
        finally:
            steps.close()


def share_cores() -> None:
    """Tell the decode step that, on the calling thread (the worker's), the server's event
    loop and its clients share the cores, so that a small model decodes on one thread
    there (``models.decode_kernel.share_cores``)."""
    from scratchllm.models import decode_kernel

    decode_kernel.share_cores()


def batchable(sampling: Sampling) -> bool:
    """Whether a choice can decode as a row of a fixed batch (``BatchSteps``): it asks for
    nothing the batch's shared logits processors do not do (log-probs, penalties, logit
    bias). A ``LiveSteps`` row can have all of those."""
    return sampling.logprobs is None and not _penalised(sampling)


def live_batches(model: torch.nn.Module) -> bool:
    """Whether ``model`` can decode in a ``LiveSteps`` (a GPT, with its KV cache)."""
    return why_not_live(model) is None


def _penalised(sampling: Sampling) -> bool:
    return bool(sampling.frequency_penalty or sampling.presence_penalty or sampling.logit_bias)


def _config(sampling: Sampling, seed: int | None, stop_ids: frozenset) -> GenerationConfig:
    """A choice's settings as the generation package takes them, for a batch row."""
    return GenerationConfig(
        sampling.max_tokens,
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=None if sampling.top_p >= 1.0 else sampling.top_p,
        seed=seed,
        eos_token_id=tuple(sorted(stop_ids)) or None,
    )


Row = tuple[list[int], Sampling, "int | None", frozenset]  # prompt ids, sampling, seed, stop ids


class _RowSteps:
    """What ``BatchSteps`` and ``LiveSteps`` share: the batch's events, sorted into a queue
    per row, and each row's steps read from its queue; a row's ``stop`` stands for its
    eos. ``_pull`` runs the batch on by one event or one step."""

    def __init__(self) -> None:
        self._pending: dict[int, collections.deque] = {}
        self._stop: dict[int, int | None] = {}
        self._done: set[int] = set()  # rows for which no more events will come

    def _open(self, key: int, stop_ids: frozenset) -> None:
        self._pending[key] = collections.deque()
        self._stop[key] = min(stop_ids) if stop_ids else None

    def steps(self, key: int) -> Iterator[tuple[int, torch.Tensor | None]]:
        """Row ``key``'s ``(token, log-probs or None)``, as ``decode_steps`` yields them."""
        while True:
            while not self._pending[key]:
                if key in self._done or not self._pull():
                    return
            token, logprobs = self._pending[key].popleft()
            yield (self._stop[key] if token is None else token), logprobs

    def _deliver(self, event: Any, logprobs: torch.Tensor | None = None) -> None:
        if event.token is not None or event.finish_reason == "stop":  # None, "length": 0 tokens
            self._pending[event.row].append((event.token, logprobs))
        if event.finish_reason is not None:
            self._done.add(event.row)

    def _pull(self) -> bool:
        raise NotImplementedError

    def end(self, key: int) -> None:
        """Stop row ``key`` early (a stop string, a client that left)."""
        self._done.add(key)
        self._pending[key].clear()


class BatchSteps(_RowSteps):
    """Several choices decoded together as a fixed batch, one model step per token for all.

    ``rows`` holds each choice's ``(prompt ids, sampling, seed, stop ids)``; ``steps(i)``
    yields row i's ``(token, None)`` as ``decode_steps`` yields them for it alone (the
    batch's rows are each as if alone: ``generation.batch``), for choices that
    ``batchable`` says need nothing per request on the logits. A row ends at its
    ``max_tokens`` or after one of its stop ids, which it yields as the choice's last
    token. ``end(i)`` stops row i early, so that the batch does not decode it on.
    """

    def __init__(self, model: torch.nn.Module, rows: list[Row]) -> None:
        super().__init__()
        requests = [Request(ids, _config(s, seed, stop)) for ids, s, seed, stop in rows]
        for i, row in enumerate(rows):
            self._open(i, row[3])
        with warnings.catch_warnings():  # as in decode_steps
            warnings.simplefilter("ignore", PromptTruncatedWarning)
            self._stream = stream_batch(model, requests)

    def _pull(self) -> bool:
        """The batch's next event into its row's queue; False when the batch has ended."""
        event = next(self._stream, None)
        if event is None:
            self._done.update(self._pending)
            return False
        self._deliver(event)
        return True

    def end(self, key: int) -> None:
        super().end(key)
        self._stream.end(key)

    def close(self) -> None:
        self._stream.close()


class LiveSteps(_RowSteps):
    """Choices that join and leave one running batch (``generation.LiveBatch``).

    ``add(prompt ids, sampling, seed, stop ids)`` makes a choice a row and returns its key;
    ``steps(key)`` yields what ``decode_steps`` yields for it alone, log-probs included
    (from the row's raw logits), and its penalties and logit bias apply to it alone (the
    row's own processors). Before each model step ``before_step()`` is called, where the
    caller may ``add`` more rows. ``len()`` is the rows running.
    """

    def __init__(self, model: torch.nn.Module, max_rows: int) -> None:
        super().__init__()
        self._batch = LiveBatch(model, max_rows=max_rows)
        self._vocab_size = int(model.vocab_size)
        self._logprobs: set[int] = set()
        self.before_step: Any = None

    def __len__(self) -> int:
        return len(self._batch)

    def add(self, ids: list[int], sampling: Sampling, seed: int | None, stop_ids: frozenset) -> int:
        own = [_Penalties(sampling, len(ids), self._vocab_size)] if _penalised(sampling) else []
        with warnings.catch_warnings():  # as in decode_steps
            warnings.simplefilter("ignore", PromptTruncatedWarning)
            key = self._batch.add(Request(ids, _config(sampling, seed, stop_ids), own))
        self._open(key, stop_ids)
        if sampling.logprobs is not None:
            self._logprobs.add(key)
        return key

    def _pull(self) -> bool:
        """One step of the batch, after ``before_step``; False when no row is running."""
        if self.before_step is not None:
            self.before_step()
        if not len(self._batch):
            return False
        events = self._batch.step()
        raw = self._batch.last_logits if self._logprobs else {}
        for event in events:
            logprobs = None
            if event.row in self._logprobs and event.row in raw:
                logprobs = torch.log_softmax(raw[event.row].float(), dim=-1)  # as _Recorder
            self._deliver(event, logprobs)
        return True

    def end(self, key: int) -> None:
        """Stop row ``key`` and forget it (a running batch may take rows for hours): its
        events all came with the step that ended it, or it gets no more."""
        self._batch.end(key)
        for table in (self._pending, self._stop):
            table.pop(key, None)
        self._done.discard(key)
        self._logprobs.discard(key)


# -- chat templates ------------------------------------------------------------------------


class ChatFormat(Protocol):
    """What the chat endpoint needs from a checkpoint's chat template."""

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The ids of the conversation so far, ending where the assistant's reply begins."""
        ...

    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        """The same prompt as text, to show a learner what the model reads."""
        ...

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        """The ids that end the assistant's turn."""
        ...


CHAT_TEMPLATE_FILE = "chat_template.json"


class TemplateChatFormat:
    """A ``ChatFormat`` over the chat template training uses (``scratchllm.data.chat``):
    ``render_prompt(messages) -> ids`` ending with the assistant token, ``text(messages,
    prompt=True)``, ``end_id``. The API's ``developer`` role is its ``system`` role, and
    only ``role`` and ``content`` are passed on."""

    def __init__(self, template: Any) -> None:
        self.template = template

    @staticmethod
    def _messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
        roles = {"developer": "system"}
        return [
            {"role": roles.get(m["role"], m["role"]), "content": m["content"]} for m in messages
        ]

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return list(self.template.render_prompt(self._messages(messages)))

    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        return self.template.text(self._messages(messages), prompt=True)

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        end = self.template.end_id
        return () if end is None else (end,)


def load_chat_format(directory: str | Path, tokenizer: Any) -> tuple[ChatFormat | None, str]:
    """The checkpoint's chat template as a ``ChatFormat``, or ``(None, why not)``.

    A template file that is there but broken is an error (naming the file), not a server
    that quietly refuses chat.
    """
    file = Path(directory) / CHAT_TEMPLATE_FILE
    if not file.is_file():
        return None, f"no {CHAT_TEMPLATE_FILE} in {directory}"
    try:
        from scratchllm.data.chat import ChatTemplate
    except ImportError:
        return (
            None,
            f"{file} exists but this scratchllm has no chat templates (scratchllm.data.chat)",
        )
    template = ChatTemplate.load(directory)
    if template.tokenizer.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"{file}: its tokenizer has {template.tokenizer.vocab_size} tokens, the model's "
            f"{tokenizer.vocab_size}; the template does not belong to this checkpoint"
        )
    return TemplateChatFormat(template), ""
