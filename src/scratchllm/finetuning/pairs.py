"""On-policy preference pairs from a task: ``scratchllm finetune pairs``.

For each of ``n`` prompts (distinct, from the task's training side, so the held-out tenth
stays unseen), the model samples ``k`` completions (``rollout.sample_completions``:
temperature ``temperature``, completion j of prompt i from seed ``seed + i k + j``). The
language's verifier labels each (``verifier.judge``: the final answer is exactly right or
not) and a right completion is paired with a wrong one: up to ``pairs_per_prompt`` pairs,
each of a distinct right and a distinct wrong text (right ones repeat when there are fewer
right than wrong; duplicates of one text count once).

A prompt gives **no usable pair** when all ``k`` samples are right (nothing to prefer
against) or all are wrong (nothing to prefer): both are counted and reported, since they
say where the policy is (too easy: it has learned those; too hard: a preference method
cannot teach what it never samples). The sampled accuracy and pass@k of the same samples
come with it (the unbiased estimator, ``metrics.pass_at_k``).

The pairs are a normal preference file (``data.preferences``) for ``finetune dpo`` and
``finetune reward``; ``report.json`` beside it records how it was made.

>>> report = pairs_from_checkpoint("runs/sft", "addition:digits=2", "pairs.jsonl")  # doctest: +SKIP
>>> report.pairs, report.all_right, report.all_wrong                             # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from scratchllm.checkpoint import BEST, LAST, load_checkpoint
from scratchllm.data.chat import TEMPLATE_FILE, ChatTemplate, Message
from scratchllm.data.languages import Language, get
from scratchllm.data.preferences import PreferencePair, write_pairs
from scratchllm.files import write_json
from scratchllm.finetuning.rollout import longest_completion, sample_completions, task_prompts
from scratchllm.finetuning.verifier import judge
from scratchllm.metrics import mean_pass_at_k


@dataclass
class PairsReport:
    task: str
    prompts: int
    k: int
    temperature: float
    seed: int
    pairs: int  # pairs written
    prompts_with_pairs: int
    all_right: int  # prompts whose k samples were all right: no pair
    all_wrong: int  # prompts whose k samples were all wrong: no pair
    sample_accuracy: float  # share of the n * k samples that were right
    pass_at_k: dict[int, float]
    out: str = ""

    @property
    def no_pair(self) -> int:
        return self.all_right + self.all_wrong

    def lines(self) -> list[str]:
        shown = ", ".join(f"pass@{k} {v:.3f}" for k, v in self.pass_at_k.items())
        return [
            f"sampled   {self.prompts} prompts x {self.k} at temperature {self.temperature:g}: "
            f"{self.sample_accuracy:.1%} right ({shown})",
            f"pairs     {self.pairs:,} from {self.prompts_with_pairs} prompts -> {self.out}",
            f"no pair   {self.no_pair} prompts: {self.all_right} with every sample right, "
            f"{self.all_wrong} with every sample wrong",
        ]


def make_pairs(
    model: torch.nn.Module,
    template: ChatTemplate,
    language: Language,
    n: int,
    k: int = 8,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    pairs_per_prompt: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = 64,
) -> tuple[list[PreferencePair], PairsReport]:
    """Sample, label and pair (module docstring)."""
    if k < 2:
        raise ValueError(f"k ({k}) must be >= 2: a pair needs two samples of a prompt")
    if pairs_per_prompt < 1:
        raise ValueError(f"pairs_per_prompt ({pairs_per_prompt}) must be >= 1")
    prompts = task_prompts(language, n, seed=seed)
    if max_new_tokens is None:
        max_new_tokens = longest_completion(language, template, prompts) + 4
    comps = sample_completions(
        model, template, prompts, k, max_new_tokens,
        temperature=temperature, top_k=top_k, seed=seed, batch_size=batch_size,
    )  # fmt: skip
    pairs: list[PreferencePair] = []
    all_right = all_wrong = with_pairs = 0
    counts = []
    for i, prompt in enumerate(prompts):
        texts = comps.texts[i * k : (i + 1) * k]
        verdicts = [judge(language, prompt, t).correct for t in texts]
        counts.append((k, sum(verdicts)))
        right = list(dict.fromkeys(t for t, ok in zip(texts, verdicts) if ok))
        wrong = list(dict.fromkeys(t for t, ok in zip(texts, verdicts) if not ok))
        if not wrong:
            all_right += 1
            continue
        if not right:
            all_wrong += 1
            continue
        with_pairs += 1
        for j in range(min(pairs_per_prompt, len(wrong))):
            pairs.append(
                PreferencePair(
                    (Message("user", prompt),), right[j % len(right)], wrong[j], f"sample {i}"
                )
            )
    total = sum(c for _, c in counts)
    ks = sorted({1, *(2**e for e in range(1, k.bit_length()) if 2**e <= k), k})
    report = PairsReport(
        task=language.spec,
        prompts=len(prompts),
        k=k,
        temperature=temperature,
        seed=seed,
        pairs=len(pairs),
        prompts_with_pairs=with_pairs,
        all_right=all_right,
        all_wrong=all_wrong,
        sample_accuracy=total / (len(prompts) * k),
        pass_at_k={kk: mean_pass_at_k(counts, kk) for kk in ks},
    )
    return pairs, report


def pairs_from_checkpoint(
    checkpoint: str | Path,
    task: str,
    out: str | Path,
    n: int = 500,
    k: int = 8,
    *,
    best: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    pairs_per_prompt: int = 1,
    device: str = "cpu",
    say: Callable[[str], None] | None = None,
) -> PairsReport:
    """Pairs from the model at ``checkpoint`` on ``task``, written to ``out`` (a .jsonl),
    with ``out``'s ``.report.json`` beside it."""
    ckpt = load_checkpoint(checkpoint, device=device, which=BEST if best else LAST)
    template = (
        ChatTemplate.load(ckpt.path)
        if (ckpt.path / TEMPLATE_FILE).is_file()
        else ChatTemplate.plain(ckpt.tokenizer)
    )
    pairs, report = make_pairs(
        ckpt.model.eval(), template, get(task), n, k, temperature=temperature, top_k=top_k,
        seed=seed, pairs_per_prompt=pairs_per_prompt,
    )  # fmt: skip
    out = Path(out)
    if not pairs:
        raise ValueError(
            f"no usable pair from {n} prompts of {task}: {report.all_right} had every one of "
            f"the {k} samples right, {report.all_wrong} every one wrong; sample more (--k) or "
            "at a higher --temperature, or start from another checkpoint"
        )
    write_pairs(out, pairs)
    report.out = str(out)
    write_json(out.with_suffix(".report.json"), {**asdict(report), "checkpoint": str(ckpt.path)})
    for line in report.lines() if say else ():
        say(line)
    return report
