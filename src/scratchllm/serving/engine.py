"""The served model: prompts to ids, the token limit, and the work each request gives the worker.

Everything here that can reject a request does so before the request is queued, so a
client's mistake is always a 400 before the first byte of a stream.

* **Prompts** are encoded with special-token strings as plain text (a user cannot type
  an end-of-turn token). An empty prompt starts from a newline, the end-of-sample
  marker our corpora put between samples (or token 0 when the tokenizer has no newline).
* **The limit**: prompt tokens + ``max_tokens`` may not pass ``total_token_limit``
  (``ServerConfig``); without ``max_tokens`` a chat reply may use the rest of it and a
  completion gets ``default_max_tokens`` (16, as in the OpenAI API).
* **Seeds**: choice ``i`` of a request with ``seed`` s uses s + i, so ``n=2`` gives two
  different samples and the same request gives the same text again; without a seed
  every choice draws a fresh one.
* **Stop tokens**: the tokenizer's end of text (``<|endoftext|>`` of a BPE, ``<eos>`` of a
  word tokenizer) and, for chat, the template's end of turn.
"""

from __future__ import annotations

import collections
import dataclasses
import secrets
from dataclasses import dataclass
from typing import Any

import torch

from scratchllm.serving.backend import (
    BatchSteps,
    ChatFormat,
    LiveSteps,
    batchable,
    context_length,
    live_batches,
    share_cores,
)
from scratchllm.serving.choice import Finish, TokenTexts, choice_events, run_choice
from scratchllm.serving.config import ServerConfig
from scratchllm.serving.errors import APIError
from scratchllm.serving.protocol import ChatRequest, CompletionRequest, Sampling
from scratchllm.serving.worker import Job, Worker

END_OF_TEXT = ("<|endoftext|>", "<|end_of_text|>", "</s>")  # BPE specials that end a text
SEED_RANGE = 2**62  # seeds are folded into [0, 2**62) so seed + i stays a valid torch seed


@dataclass(frozen=True)
class Plan:
    """One choice to generate."""

    index: int  # its place in the response's choices
    prompt_ids: list[int]
    sampling: Sampling  # with max_tokens resolved
    seed: int | None
    stop_ids: frozenset[int]


# Rows of a batch at most: the requests waiting together decode as one batch of up to this
# many choices (the worker's max_group), and a running batch takes new ones up to it.
# (A GPT's request with more choices starts the rest as rows free up.)
MAX_BATCH = 8


class Engine:
    """The model, its tokenizer and chat format, and the server's limits."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        name: str,
        config: ServerConfig,
        chat_format: ChatFormat | None = None,
        chat_error: str | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.config = config
        self.chat_format = chat_format
        self.chat_error = chat_error  # why there is no chat format, for the 400
        self.texts = TokenTexts(tokenizer)
        self.context_length = context_length(model)
        self.limit = config.total_token_limit(self.context_length)
        self.vocab_size = int(model.vocab_size)
        self.end_ids = frozenset(_end_of_text_ids(tokenizer))
        self._encode = getattr(tokenizer, "encode_ordinary", tokenizer.encode)
        self.threads = torch.get_num_threads()  # as set where the engine was made
        self.live = live_batches(model)  # requests can join a running batch (a GPT)

    def thread_setup(self) -> None:
        """Run on the worker thread before any model call. torch's CPU thread count is
        per thread: a new thread would use every core whatever ``set_num_threads`` said
        elsewhere, and a small model runs 1.5x slower oversubscribed (measured). The C++
        decode step is told that the server's event loop shares the cores, so a small
        model decodes on one thread (``backend.share_cores``)."""
        torch.set_num_threads(self.threads)
        share_cores()

    # -- prompts ---------------------------------------------------------------------------

    def encode(self, prompt: str | list[int], param: str = "prompt") -> list[int]:
        if isinstance(prompt, list):
            bad = [t for t in prompt if not 0 <= t < self.vocab_size]
            if bad:
                raise APIError.invalid(
                    f"{param} holds token id {bad[0]}, outside this model's vocabulary "
                    f"[0, {self.vocab_size})",
                    param=param,
                )
            return list(prompt)
        if not prompt:
            return self.start_ids()
        try:
            return self._encode(prompt)
        except ValueError as e:
            raise APIError.invalid(
                f"{param} cannot be encoded by this model's tokenizer: {e}", param=param
            ) from None

    def start_ids(self) -> list[int]:
        try:
            return self._encode("\n") or [0]
        except ValueError:
            return [0]

    def chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        template = self._chat()
        try:
            return template.prompt_ids(messages)
        except ValueError as e:
            raise APIError.invalid(
                f"messages cannot be encoded by this model's chat template: {e}", param="messages"
            ) from None

    def chat_text(self, messages: list[dict[str, str]]) -> str:
        template = self._chat()
        try:
            return template.prompt_text(messages)
        except ValueError as e:
            raise APIError.invalid(f"messages cannot be rendered: {e}", param="messages") from None

    def _chat(self) -> ChatFormat:
        if self.chat_format is None:
            raise APIError.invalid(
                f"model {self.name!r} has no chat template"
                + (f" ({self.chat_error})" if self.chat_error else "")
                + ": it is a base model, so use /v1/completions, or fine-tune it with a "
                "chat template (`scratchllm finetune sft`), which saves chat_template.json "
                "beside tokenizer.json",
                param="messages",
                code="chat_template_missing",
            )
        return self.chat_format

    # -- limits and plans --------------------------------------------------------------------

    def resolve_max_tokens(self, prompt_len: int, requested: int | None, default: int) -> int:
        """``max_tokens`` for a prompt of ``prompt_len`` tokens, or a 400 over the limit."""
        room = self.limit - prompt_len
        if requested is None:
            if room < 1:
                raise self._too_long(prompt_len, 1)
            return min(default, room)
        if requested > room:
            raise self._too_long(prompt_len, requested)
        return requested

    def _too_long(self, prompt_len: int, max_tokens: int) -> APIError:
        return APIError.invalid(
            f"this server's limit is {self.limit} tokens per request (prompt + max_tokens); "
            f"you asked for {prompt_len + max_tokens} ({prompt_len} in the prompt, "
            f"{max_tokens} to generate): shorten the prompt or lower max_tokens",
            param="max_tokens" if prompt_len < self.limit else "prompt",
            code="context_length_exceeded",
        )

    def check_sampling(self, sampling: Sampling) -> None:
        """What only the model can check: logit_bias keys are ids of its vocabulary."""
        for token, _ in sampling.logit_bias:
            if token >= self.vocab_size:
                raise APIError.invalid(
                    f"logit_bias names token {token}, outside this model's vocabulary "
                    f"[0, {self.vocab_size})",
                    param=f"logit_bias.{token}",
                )

    def plan_completion(self, req: CompletionRequest) -> tuple[list[Plan], int]:
        """The choices of a completion request and its prompt token count."""
        self.check_sampling(req.sampling)
        prompts = [self.encode(p) for p in req.prompts]
        seeds = self._seeds(req.sampling.seed, req.n * len(prompts))
        plans = []
        for p, ids in enumerate(prompts):
            max_tokens = self.resolve_max_tokens(
                len(ids), req.sampling.max_tokens, self.config.default_max_tokens
            )
            sampling = dataclasses.replace(req.sampling, max_tokens=max_tokens)
            for j in range(req.n):
                i = p * req.n + j
                plans.append(Plan(i, ids, sampling, seeds[i], self.end_ids))
        return plans, sum(len(ids) for ids in prompts)

    def plan_chat(self, req: ChatRequest) -> tuple[list[Plan], int]:
        self.check_sampling(req.sampling)
        ids = self.chat_ids(req.messages)
        max_tokens = self.resolve_max_tokens(len(ids), req.sampling.max_tokens, self.limit)
        sampling = dataclasses.replace(req.sampling, max_tokens=max_tokens)
        stop_ids = self.end_ids | frozenset(self._chat().stop_token_ids)
        seeds = self._seeds(req.sampling.seed, req.n)
        return [Plan(i, ids, sampling, seeds[i], stop_ids) for i in range(req.n)], len(ids)

    @staticmethod
    def _seeds(seed: int | None, n: int) -> list[int | None]:
        if seed is None:
            return [secrets.randbelow(SEED_RANGE) for _ in range(n)]
        base = seed % (SEED_RANGE - n)
        return [base + i for i in range(n)]

    # -- on the worker thread -----------------------------------------------------------------

    def run(self, plans: list[Plan], job: Job) -> None:
        """Generate the plans one after another, sending ``(index, Delta | Finish)`` events."""
        for plan in plans:
            steps = run_choice(
                self.model,
                self.texts,
                plan.prompt_ids,
                plan.sampling,
                plan.seed,
                plan.stop_ids,
                lambda: job.cancelled,
            )
            for event in steps:
                job.emit((plan.index, event), urgent=isinstance(event, Finish))
                if isinstance(event, Finish) and event.reason == "cancelled":
                    return

    def joins(self, plans: list[Plan]) -> bool:
        """Whether a request can join a running batch (``LiveSteps``): the model can (a
        GPT). Log-probs, penalties and logit bias are a row's own there, a row past the
        context slides its window, and a request with more choices than the batch has
        rows free starts the others as rows free up."""
        return self.live

    def batchable(self, plans: list[Plan]) -> bool:
        """Whether a request can decode in a batch with others (``run_batch``): it ``joins``
        a running batch, or it has at most ``MAX_BATCH`` choices, none needing anything per
        request on the logits (``backend.batchable``), for a fixed batch."""
        if self.joins(plans):
            return True
        return len(plans) <= MAX_BATCH and all(batchable(p.sampling) for p in plans)

    def run_batch(self, jobs: list[Job], worker: Worker | None = None) -> None:
        """Generate the plans of every job (``job.group``, of ``batchable`` requests) in
        batches, one model step per token for all rows, sending each job the events ``run``
        would, its choices' events interleaved: each row's tokens are those it gets alone.

        A GPT's jobs run as a live batch: with ``worker``, the requests waiting at the head
        of its queue join it between two steps while their rows fit in ``MAX_BATCH``
        (``Worker.more``), and each job is over (``Worker.done``) as soon as its choices
        are. The other families' run as one fixed batch. A row that ends (its stop, a
        client that left) stops being decoded."""
        if self.live:  # every request joins (``joins``)
            self._run_live(jobs, worker)
        elif len(jobs) == 1:
            self.run(jobs[0].group, jobs[0])
        else:
            self._run_fixed(jobs)

    def _run_fixed(self, jobs: list[Job]) -> None:
        owned = [(job, plan) for job in jobs for plan in job.group]
        batch = BatchSteps(self.model, [self._row(p) for _, p in owned])
        try:
            rows = {i: self._choice(batch, i, job, plan) for i, (job, plan) in enumerate(owned)}
            self._drive(batch, rows)
        finally:
            batch.close()

    def _run_live(self, jobs: list[Job], worker: Worker | None) -> None:
        batch = LiveSteps(self.model, MAX_BATCH)
        rows: dict[int, tuple] = {}
        left: dict[Job, int] = {}  # each job's choices not yet over
        backlog: collections.deque = collections.deque()  # (job, plan) not yet started

        def start() -> None:
            """Choices into free rows, in their order."""
            while backlog and len(batch) < MAX_BATCH:
                job, plan = backlog.popleft()
                key = batch.add(*self._row(plan))
                rows[key] = self._choice(batch, key, job, plan)

        def admit(new: list[Job]) -> None:
            for job in new:
                left[job] = len(job.group)
                backlog.extend((job, plan) for plan in job.group)
            start()

        def before_step() -> None:
            start()
            if not backlog and worker is not None:  # first come, first served
                admit(worker.more(MAX_BATCH - len(batch), lambda job: self.joins(job.group)))

        def over(job: Job) -> None:
            left[job] -= 1
            if not left[job]:
                del left[job]  # a batch may run for hours: keep only what still runs
                if worker is not None:
                    worker.done(job)
            start()  # a row is free

        admit(jobs)
        batch.before_step = before_step
        self._drive(batch, rows, over)

    @staticmethod
    def _row(plan: Plan) -> tuple:
        return plan.prompt_ids, plan.sampling, plan.seed, plan.stop_ids

    def _choice(self, batch, key: int, job: Job, plan: Plan) -> tuple:  # noqa: ANN001
        events = choice_events(
            batch.steps(key), self.texts, plan.sampling, plan.stop_ids, lambda: job.cancelled
        )
        return job, plan, events

    @staticmethod
    def _drive(batch, rows: dict[int, tuple], over=None) -> None:  # noqa: ANN001
        """Send each row's events to its job, a row at a time, until every row has ended
        (``rows`` may grow meanwhile: rows that join); ``over(job)`` after each choice."""
        while rows:
            for key in list(rows):
                job, plan, events = rows[key]
                event = next(events, None)
                if event is None:
                    del rows[key]
                    batch.end(key)
                    if over is not None:
                        over(job)
                    continue
                job.emit((plan.index, event), urgent=isinstance(event, Finish))

    def attention(self, ids: list[int]) -> torch.Tensor:
        """``[n_layer, n_head, T, T]`` attention weights for ``ids`` (run on the worker)."""
        weights = self.model.attention_weights(torch.tensor([ids], dtype=torch.long))
        return weights[:, 0]


def _end_of_text_ids(tokenizer: Any) -> list[int]:
    """The ids that end a text: a word tokenizer's ``<eos>``, and an end-of-text special
    token of any tokenizer (``<|endoftext|>``)."""
    ids = []
    if getattr(tokenizer, "kind", None) == "word":
        from scratchllm.tokenizers.word import EOS

        ids.append(EOS)
    specials = getattr(tokenizer, "special_tokens", None) or {}
    return ids + [specials[s] for s in END_OF_TEXT if s in specials]
