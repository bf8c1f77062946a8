"""GRPO with a verifier's reward as a run: ``scratchllm finetune grpo``.

Each step draws ``batch_size`` prompts of the task (its training side, from ``(seed,
step)``), samples ``G = group_size`` completions of each (``rollout``), and scores every
completion with the language's verifier (``verifier.judge``: 1 for a right answer, 0 else,
or partial credit per digit). Then, with no value model (Shao et al. 2024)::

    A_i   = (r_i - mean_G r) / (std_G r + 1e-4)          std with ddof = 1 (sample std, as TRL)
    rho_t = pi(o_t) / pi_old(o_t)                        1 on the first update of a rollout
    L_t   = -min(rho_t A_i, clip(rho_t, 1 - eps, 1 + eps_high) A_i) + beta k3_t

reduced per sequence (GRPO), per token (DAPO) or over a constant (Dr. GRPO)
(``grpo.group_advantages``, ``grpo.grpo_loss``). ``num_iterations`` updates are taken on
each rollout; from the second, ``pi_old`` is the policy that sampled it and the clip acts.
``beta > 0`` adds the k3 KL to the frozen starting model (default 0, as TRL).
``gradient_accumulation_steps`` splits each update into micro-batches of whole groups,
weighted so the gradient is the whole batch's (tested).

A group whose rewards are all equal teaches nothing (its advantages are 0): the step logs
how many there were (``zero_std_groups``), how many of them were all wrong
(``all_wrong_groups``: the prompts too hard to sample one right answer for) and all right,
with the reward, the share of right samples, the clip ratio, the policy's entropy on its
samples (a collapse shows as entropy falling toward 0 while pass@k falls to pass@1) and, with
``beta``, the KL. Each evaluation scores ``eval_n`` held-out prompts: greedy accuracy,
pass@1 and pass@``eval_k``; ``best/`` is the best pass@1.

>>> run = grpo_run("runs/grpo", {"base": "runs/sft", "data": "addition:digits=2"})  # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from scratchllm.configs.rl import GRPOConfig
from scratchllm.data.languages import Language, get
from scratchllm.evaluation.task import split_prompt
from scratchllm.finetuning.grpo import group_advantages, grpo_loss
from scratchllm.finetuning.logprobs import entropy, token_logprobs
from scratchllm.finetuning.loop import run_loop
from scratchllm.finetuning.method_run import MethodRun, finish
from scratchllm.finetuning.policy import Policy, frozen, run_settings, save_settings, start_policy
from scratchllm.finetuning.rl_settings import GRPO_OPTIONS, grpo_config
from scratchllm.finetuning.rollout import (
    Completions,
    longest_completion,
    sample_completions,
    task_prompts,
)
from scratchllm.finetuning.sequences import Rows, make_rows
from scratchllm.finetuning.task_eval import task_figures
from scratchllm.finetuning.verifier import judge
from scratchllm.training.settings import train_config

ROLLOUT_SEED = 7_919  # rollouts' seeds: (seed, step) through this, apart from the data's


def step_seed(seed: int, step: int) -> int:
    """The seed of step ``step``'s prompts and samples: distinct for every (seed, step)."""
    return (seed * 1_000_003 + step * ROLLOUT_SEED) % (2**31)


def max_new_tokens_for(language: Language, policy: Policy, asked: int | None) -> int:
    """``asked``, or the task's longest right completion + 4 (over 200 of its prompts); a
    prompt and its completion must fit in the model's context (+ 1: the last token is only
    predicted)."""
    from scratchllm.data.chat import Message
    from scratchllm.finetuning.sequences import prompt_ids

    rng = random.Random(0)
    prompts = [split_prompt(language, language.sample(rng))[0] for _ in range(200)]
    right = longest_completion(language, policy.template, prompts)
    n = asked or right + 4
    longest = max(len(prompt_ids(policy.template, [Message("user", p)])) for p in prompts)
    room = policy.model.context_length + 1 - longest
    if asked is None:
        n = min(n, room)
    if n > room or n < right:
        raise ValueError(
            f"{language.spec}: prompts of up to {longest} tokens and completions of up to "
            f"{max(n, right)} do not fit in the model's context of "
            f"{policy.model.context_length}; give a smaller --max-new-tokens (at least {right}) "
            "or use a model with a longer context"
        )
    return n


class GRPOLearner:
    name = "grpo"

    def __init__(
        self,
        policy: Policy,
        language: Language,
        config: GRPOConfig,
        *,
        prompts_per_step: int,
        accumulation: int = 1,
        seed: int = 0,
        reference: torch.nn.Module | None = None,
        eval_n: int = 200,
        eval_k: int = 8,
        reward: Callable[[str, str], float] | None = None,
    ) -> None:
        if config.beta > 0 and reference is None:
            raise ValueError("beta > 0 needs the reference model")
        if prompts_per_step % accumulation:
            raise ValueError(
                f"--batch-size ({prompts_per_step} prompts) must split into "
                f"--gradient-accumulation-steps ({accumulation}) micro-batches of whole groups"
            )
        self.policy, self.language, self.config = policy, language, config
        self.P, self.A, self.seed = prompts_per_step, accumulation, seed
        self.reference, self.eval_n, self.eval_k = reference, eval_n, eval_k
        self.device = next(policy.model.parameters()).device
        self.context = policy.model.context_length
        self.max_new = max_new_tokens_for(language, policy, config.max_new_tokens)
        c = config
        self.reward = reward or (lambda p, t: judge(language, p, t, c.partial_credit).reward)

    def trainable(self) -> torch.nn.Module:
        return self.policy.model

    def save(self, directory: Path) -> None:
        self.policy.files()(directory)

    def rollout(self, step: int) -> tuple[Completions, torch.Tensor]:
        """The step's prompts, their G completions each, and the rewards ``[P * G]``."""
        c = self.config
        seed = step_seed(self.seed, step)
        prompts = task_prompts(self.language, self.P, seed=seed)
        comps = sample_completions(
            self.policy.model, self.policy.template, prompts, c.group_size, self.max_new,
            temperature=c.temperature, top_k=c.top_k, seed=seed,
        )  # fmt: skip
        rewards = torch.tensor([self.reward(p, t) for p, t in zip(comps.prompts, comps.texts)])
        return comps, rewards

    def train_step(self, step: int, update: Callable[[], float | None]) -> dict[str, float]:
        c, G = self.config, self.config.group_size
        comps, rewards = self.rollout(step)
        adv = group_advantages(rewards, G, scale=c.scale_rewards, ddof=c.ddof)
        rows = make_rows(comps.prompt_ids, comps.completion_ids, max_length=self.context)
        N = len(comps.texts)
        per = N // self.A  # rows per micro-batch: whole groups
        micro = [list(range(a * per, (a + 1) * per)) for a in range(self.A)]
        subs = [rows.select(m).to(self.device) for m in micro]
        total_tokens = float(rows.mask.sum())
        refs = [self._ref(s) for s in subs] if c.beta > 0 else [None] * self.A
        old: list[torch.Tensor | None] = [None] * self.A
        logs = {"loss": 0.0, "clip_ratio": 0.0, "entropy": 0.0}
        if c.beta > 0:
            logs["kl"] = 0.0
        for it in range(c.num_iterations):
            for a, (m, sub) in enumerate(zip(micro, subs)):
                logits, _ = self.policy.model(sub.x)  # [b, T, V]
                lp = token_logprobs(logits, sub.y, sub.mask)
                out = grpo_loss(
                    lp, adv.advantages[m].to(self.device), sub.mask,
                    old_logprobs=old[a], ref_logprobs=refs[a], beta=c.beta,
                    clip_eps=c.clip_eps, clip_eps_high=c.clip_eps_high, reduction=c.reduction,
                    max_completion_length=self.max_new,
                    num_tokens=total_tokens if c.reduction == "token" else None,
                )  # fmt: skip
                weight = 1.0 if c.reduction == "token" else len(m) / N
                (out.loss * weight).backward()
                if it == 0:
                    if c.num_iterations > 1:
                        old[a] = lp.detach()
                    with torch.no_grad():
                        h = (entropy(logits) * sub.mask).sum() / sub.mask.sum().clamp(min=1)
                    logs["entropy"] += float(h) / self.A
                if it == c.num_iterations - 1:
                    logs["loss"] += float(out.loss.detach()) * weight
                    logs["clip_ratio"] += float(out.clip_ratio) / self.A
                    if out.kl is not None:
                        logs["kl"] += float(out.kl) / self.A
            update()
        groups = rewards.view(-1, G)
        correct = torch.tensor(
            [judge(self.language, p, t).correct for p, t in zip(comps.prompts, comps.texts)]
        ).view(-1, G)
        logs |= {
            "reward": float(rewards.mean()),
            "sample_accuracy": float(correct.float().mean()),
            "zero_std_groups": adv.num_zero_std_groups,
            "all_wrong_groups": int((~correct.any(1)).sum()),
            "all_right_groups": int(correct.all(1).sum()),
            "reward_std": float(groups.std(dim=1, correction=c.ddof).mean()),
            "completion_tokens": float(rows.mask.sum()) / N,
            "unfinished": float(1 - sum(comps.finished) / N),
        }
        return logs

    @torch.no_grad()
    def _ref(self, sub: Rows) -> torch.Tensor:
        logits, _ = self.reference(sub.x)
        return token_logprobs(logits, sub.y, sub.mask)

    def evaluate(self, step: int) -> dict[str, float]:
        return task_figures(
            self.policy.model, self.policy.template, self.language.spec, self.eval_n, self.eval_k
        )

    def score(self, evaluation: dict[str, float]) -> float | None:
        return evaluation.get("pass@1", evaluation.get("accuracy"))


def grpo_run(
    out: str | Path,
    values: dict[str, Any],
    *,
    config: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> MethodRun:
    """GRPO from ``values["base"]`` on the task ``values["data"]`` into ``out`` (keys:
    ``rl_settings.GRPO_OPTIONS``)."""
    out = Path(out)
    verb = "finetune grpo"
    s = run_settings(out, values, GRPO_OPTIONS, verb, config=config, resume=resume,
                     force=force, fixed=("group_size",))  # fmt: skip
    cfg = grpo_config(s)
    language = get(s["data"])
    policy = start_policy(s, task_like=True, out=out, resume=resume)
    reference = frozen(policy.start) if cfg.beta > 0 else None
    tcfg = train_config(s, out, True)
    learner = GRPOLearner(
        policy, language, cfg, prompts_per_step=tcfg.batch_size,
        accumulation=tcfg.gradient_accumulation_steps, seed=tcfg.seed, reference=reference,
        eval_n=s["eval_n"], eval_k=s["eval_k"],
    )  # fmt: skip
    lines = list(policy.lines) + [
        f"task      {language.spec}: {tcfg.batch_size} prompts x G={cfg.group_size} samples "
        f"per step (temperature {cfg.temperature:g}, up to {learner.max_new} tokens), "
        f"{cfg.num_iterations} update(s) each, reduction {cfg.reduction}",
        "reward    the verifier: 1 for a right answer"
        + (f", else {cfg.partial_credit:g} x digits in place" if cfg.partial_credit else ", else 0")
        + (f"; k3 KL to the reference x {cfg.beta:g}" if cfg.beta else "; no KL penalty"),
    ]
    for line in lines:
        say(line)
    save_settings(out, s, GRPO_OPTIONS, verb)
    result = run_loop(learner, tcfg, out, resume=resume, say=say, after_update=policy.rows)
    return finish(s, out, result, lines, learner=learner)
