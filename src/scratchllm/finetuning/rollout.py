"""Sampling completions of task prompts, as token ids: the "rollout" of the RL methods.

``sample_completions(model, template, prompts, k, ...)`` asks ``model`` for ``k``
completions of each prompt through ``generation.generate`` (batches of prompts of equal
length, so no padding; per-row seeds), and returns them **in groups**: prompt 0's ``k``
completions, then prompt 1's, ... (GRPO's layout). Completion ``j`` of prompt ``i`` is
drawn with seed ``seed + i * k + j``, as ``evaluation.task`` draws its samples, so the
batch size changes nothing and a run that resumes draws the same.

A completion ends at its first stop token, which it keeps (the model is scored on saying
it is done): the template's end-of-turn token, or for the plain template the language's
END. One that reaches ``max_new_tokens`` first is **unfinished**: it is scored as it is
(its reward is 0, it has no END). ``texts`` are what the verifier reads: the completion's
text up to and including END (a chat end token counts as END, as in ``eval --task``).

``task_prompts`` draws the prompts an RL run trains on: distinct ones, from the training
side of the held-out split (``data.sft.in_held_out``), so ``eval --task`` never scores a
prompt the policy practised on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from scratchllm.data.chat import ChatTemplate, Message
from scratchllm.data.languages import END, Language
from scratchllm.data.sft import in_held_out
from scratchllm.evaluation.task import split_prompt
from scratchllm.finetuning.sequences import prompt_ids
from scratchllm.generation import generate


@dataclass
class Completions:
    """``k`` completions per prompt, grouped: row ``i * k + j`` is completion ``j`` of
    prompt ``i``."""

    prompts: list[str]  # the prompt of each row (repeated k times)
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]  # up to and including the stop token
    texts: list[str]  # what the verifier reads (module docstring)
    finished: list[bool]
    k: int


def stop_ids(template: ChatTemplate) -> list[int]:
    """The tokens a completion ends at: the end-of-turn token, else the language's END."""
    if template.end_id is not None:
        return [template.end_id]
    end = template.tokenizer.encode_ordinary(END)
    if len(end) != 1:
        raise ValueError(
            f"the tokenizer writes END ({END!r}) as {len(end)} tokens; a completion must end at "
            "one stop token (use a chat template, or a tokenizer with END as one token)"
        )
    return end


@torch.no_grad()
def sample_completions(
    model: torch.nn.Module,
    template: ChatTemplate,
    prompts: Sequence[str],
    k: int,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> Completions:
    """``k`` sampled completions of each prompt text (a user message), grouped (see the
    module docstring); ``temperature=0`` decodes greedily (then ``k`` must be 1)."""
    if k < 1 or (temperature == 0 and k > 1):
        raise ValueError(f"k={k}: give k >= 1, and sampling (temperature > 0) for k > 1")
    stops = stop_ids(template)
    ids = [prompt_ids(template, [Message("user", p)]) for p in prompts]
    rows = [(i, j) for i in range(len(prompts)) for j in range(k)]
    order = sorted(range(len(rows)), key=lambda r: (len(ids[rows[r][0]]), r))
    out: list[list[int]] = [[] for _ in rows]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = [ids[rows[r][0]] for r in chunk]
            T = max(len(p) for p in batch)
            gen = generate(
                model,
                batch,
                max_new_tokens,
                temperature=temperature if temperature > 0 else 1.0,
                do_sample=temperature > 0,
                top_k=top_k,
                eos_token_id=stops,
                pad_token_id=stops[0],
                seed=[seed + rows[r][0] * k + rows[r][1] for r in chunk],
            )
            for r, row in zip(chunk, gen[:, T:].tolist()):
                cut = next((t for t, tok in enumerate(row) if tok in stops), None)
                out[r] = row if cut is None else row[: cut + 1]
    finally:
        model.train(was_training)
    finished = [bool(c) and c[-1] in stops for c in out]
    texts = [_text(template, c, f) for c, f in zip(out, finished)]
    return Completions(
        prompts=[prompts[i] for i, _ in rows],
        prompt_ids=[ids[i] for i, _ in rows],
        completion_ids=out,
        texts=texts,
        finished=finished,
        k=k,
    )


def _text(template: ChatTemplate, ids: list[int], finished: bool) -> str:
    if template.end_id is not None and finished:
        text = template.tokenizer.decode(ids[:-1])
        return text[: text.find(END) + 1] if END in text else text + END
    text = template.tokenizer.decode(ids)
    return text[: text.find(END) + 1] if END in text else text


def task_prompts(language: Language, n: int, seed: int, split: str = "train") -> list[str]:
    """``n`` distinct prompts of ``language`` from ``random.Random(seed)``, on the training
    side of the held-out split (``split="test"``: the held-out side)."""
    if n < 1:
        raise ValueError(f"n ({n}) must be at least 1 prompt")
    want_held_out = split == "test"
    rng = random.Random(seed)
    chosen: dict[str, None] = {}
    draws = 0
    while len(chosen) < n:
        if draws > 50 * n + 1000:
            raise ValueError(
                f"{language.spec}: only {len(chosen)} distinct {split} prompts after {draws} "
                f"draws (of {n} asked); ask for fewer or use a larger task"
            )
        draws += 1
        prompt, _ = split_prompt(language, language.sample(rng))
        if in_held_out(prompt) == want_held_out:
            chosen.setdefault(prompt)
    return list(chosen)


def longest_completion(language: Language, template: ChatTemplate, prompts: Sequence[str]) -> int:
    """Tokens in the longest right completion of ``prompts`` (with the end token)."""
    tok = template.tokenizer
    extra = 1 if template.end_id is not None else 0
    return max(len(tok.encode_ordinary(language.complete(p))) + extra for p in prompts)
