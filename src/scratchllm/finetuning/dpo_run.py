"""Direct preference optimisation as a run: ``scratchllm finetune dpo``.

For each pair, the policy's and the frozen reference's log-probabilities of the chosen
reply ``w`` and the rejected one ``l``, **summed** over the reply's tokens
(``pair_data.pair_logprobs``), go into ``preference.dpo_loss``::

    h    = (log pi(w) - log pi(l)) - (log ref(w) - log ref(l))
    loss = -log sigmoid(beta h)                                        (sigmoid)
         = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)   (cDPO, label smoothing)
         = (h - 1 / (2 beta))^2                                        (ipo)
         = max(0, 1 - beta h)                                          (hinge)

and, with ``--rpo-alpha a`` (RPO, Pang et al. 2024: DPO plus the chosen replies' negative
log-likelihood, TRL's ``rpo_alpha``), ``+ a * nll``, ``nll = -sum log pi(w) / (the chosen
replies' tokens)`` over the micro-batch. That term keeps the right replies likely: plain DPO
only widens a gap, and can do so by lowering both sides ("likelihood displacement").
The losses are averaged over the step's pairs (``batch_size`` per micro-batch,
``gradient_accumulation`` micro-batches, each weighted equally: the mean over pairs). The
reference is the starting model (or ``--reference CKPT``), frozen: its parameters never
reach the optimizer and no gradient flows into them. With ``--precompute-ref`` its
log-probs of every pair are computed once before training (``reference_logprobs.safetensors``
in the run directory) and no reference model is kept.

Logged: the loss (with the RPO term), ``nll`` (with ``--rpo-alpha``), ``chosen_reward`` /
``rejected_reward`` (``beta (log pi - log ref)``, means), ``reward_accuracy`` (pairs whose
chosen reward is higher), ``reward_margin``; at each evaluation the same on the held-out
pairs (``val_*``; ``val_reward_accuracy`` is the held-out preference accuracy) and, with
``--task``, the greedy accuracy on the task's held-out prompts. ``best/`` is the best task
accuracy (else the lowest held-out loss).

>>> run = dpo_run("runs/dpo", {"base": "runs/sft", "data": "pairs.jsonl"})   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scratchllm.configs.rl import DPOConfig
from scratchllm.data.preferences import read_pairs
from scratchllm.finetuning.loop import run_loop
from scratchllm.finetuning.method_run import MethodRun, finish
from scratchllm.finetuning.pair_data import EncodedPair, encode_pairs, pair_logprobs, split_pairs
from scratchllm.finetuning.policy import (
    Policy,
    frozen,
    load_reference,
    run_settings,
    save_settings,
    start_policy,
)
from scratchllm.finetuning.preference import dpo_loss
from scratchllm.finetuning.rl_settings import DPO_OPTIONS, dpo_config
from scratchllm.finetuning.task_eval import task_figures
from scratchllm.training.settings import train_config

REF_FILE = "reference_logprobs.safetensors"
EVAL_CHUNK = 64  # pairs per forward when scoring all pairs


class DPOLearner:
    """One step: ``batch_size x gradient_accumulation`` pairs drawn from ``(seed, step)``."""

    name = "dpo"

    def __init__(
        self,
        policy: Policy,
        train: list[EncodedPair],
        val: list[EncodedPair],
        config: DPOConfig,
        *,
        batch_size: int,
        accumulation: int,
        seed: int,
        reference: torch.nn.Module | None = None,
        ref_logprobs: dict[str, torch.Tensor] | None = None,
        task: str | None = None,
        eval_n: int = 200,
    ) -> None:
        if (reference is None) == (ref_logprobs is None):
            raise ValueError("give a reference model or precomputed reference log-probs, one")
        self.policy, self.train, self.val, self.config = policy, train, val, config
        self.B, self.A, self.seed = batch_size, accumulation, seed
        self.reference, self.ref_logprobs = reference, ref_logprobs
        self.task, self.eval_n = task, eval_n
        self.device = next(policy.model.parameters()).device

    def trainable(self) -> torch.nn.Module:
        return self.policy.model

    def save(self, directory: Path) -> None:
        self.policy.files()(directory)

    def _ref(self, split: str, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = self.train if split == "train" else self.val
        if self.ref_logprobs is not None:
            w, l = self.ref_logprobs[f"{split}.chosen"], self.ref_logprobs[f"{split}.rejected"]
            i = torch.tensor(index)
            return w[i].to(self.device), l[i].to(self.device)
        with torch.no_grad():
            return pair_logprobs(self.reference, [pairs[i] for i in index], self.device)

    def _loss(self, split: str, index: list[int]):  # noqa: ANN202
        """``(dpo_loss's output, nll)``: ``nll`` is the chosen replies' negative
        log-likelihood per token, the RPO term (module docstring)."""
        pairs = [(self.train if split == "train" else self.val)[i] for i in index]
        pi_w, pi_l = pair_logprobs(self.policy.model, pairs, self.device)
        ref_w, ref_l = self._ref(split, index)
        c = self.config
        out = dpo_loss(pi_w, pi_l, ref_w, ref_l, c.beta, c.loss_type, c.label_smoothing)
        return out, -pi_w.sum() / sum(len(p.chosen) for p in pairs)

    def draw(self, step: int) -> list[int]:
        """The step's pairs: without replacement within a step (with it when the training
        pairs are fewer than a step needs), from a generator seeded by ``(seed, step)``."""
        rng = np.random.default_rng([self.seed, step])
        n, want = len(self.train), self.B * self.A
        return rng.choice(n, size=want, replace=n < want).tolist()

    def train_step(self, step: int, update: Callable[[], float | None]) -> dict[str, float]:
        index = self.draw(step)
        keys = ("loss", "chosen_reward", "rejected_reward", "reward_accuracy", "reward_margin")
        sums = dict.fromkeys(keys + (("nll",) if self.config.rpo_alpha else ()), 0.0)
        for a in range(self.A):
            out, nll = self._loss("train", index[a * self.B : (a + 1) * self.B])
            loss = out.loss + self.config.rpo_alpha * nll if self.config.rpo_alpha else out.loss
            (loss / self.A).backward()
            if self.config.rpo_alpha:
                sums["nll"] += float(nll.detach()) / self.A
            for key, value in (
                ("loss", loss),
                ("chosen_reward", out.chosen_rewards.mean()),
                ("rejected_reward", out.rejected_rewards.mean()),
                ("reward_accuracy", out.reward_accuracy),
                ("reward_margin", out.reward_margin),
            ):
                sums[key] += float(value.detach()) / self.A
        norm = update()
        if norm is not None:
            sums["grad_norm"] = norm
        return sums

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.val:
            n = len(self.val)
            loss = acc = margin = 0.0
            prefers = 0.0
            for lo in range(0, n, EVAL_CHUNK):
                index = list(range(lo, min(n, lo + EVAL_CHUNK)))
                r, _ = self._loss("val", index)
                loss += float(r.losses.sum())
                acc += float((r.chosen_rewards > r.rejected_rewards).sum())
                margin += float((r.chosen_rewards - r.rejected_rewards).sum())
                pi_w, pi_l = pair_logprobs(
                    self.policy.model, [self.val[i] for i in index], self.device
                )
                prefers += float((pi_w > pi_l).sum())
            out |= {
                "val_loss": loss / n,
                "val_reward_accuracy": acc / n,
                "val_reward_margin": margin / n,
                "val_policy_prefers_chosen": prefers / n,
            }
        if self.task:
            out |= task_figures(self.policy.model, self.policy.template, self.task, self.eval_n)
        return out

    def score(self, evaluation: dict[str, float]) -> float | None:
        if "accuracy" in evaluation:
            return evaluation["accuracy"]
        return -evaluation["val_loss"] if "val_loss" in evaluation else None


@torch.no_grad()
def precompute_reference(
    model: torch.nn.Module, pairs: list[EncodedPair], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's summed log-probs of every pair, in chunks: ``([N], [N])``."""
    ws, ls = [], []
    for lo in range(0, len(pairs), EVAL_CHUNK):
        w, l = pair_logprobs(model, pairs[lo : lo + EVAL_CHUNK], device)
        ws.append(w.cpu())
        ls.append(l.cpu())
    return torch.cat(ws), torch.cat(ls)


def dpo_run(
    out: str | Path,
    values: dict[str, Any],
    *,
    config: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> MethodRun:
    """Train ``values["base"]`` with DPO on the pairs file ``values["data"]`` into ``out``
    (keys: ``rl_settings.DPO_OPTIONS``, the flags in snake_case)."""
    from safetensors.torch import load_file, save_file

    out = Path(out)
    verb = "finetune dpo"
    s = run_settings(
        out, values, DPO_OPTIONS, verb, config=config, resume=resume, force=force,
        fixed=("reference", "precompute_ref", "val_fraction", "beta", "loss_type"),
    )  # fmt: skip
    cfg = dpo_config(s)
    pairs = read_pairs(s["data"])
    policy = start_policy(s, task_like=bool(s.get("task")), out=out, resume=resume)
    lines = list(policy.lines)
    train_i, val_i = split_pairs(pairs, s["val_fraction"])
    context = policy.model.context_length
    encoded = encode_pairs(pairs, policy.template, context)
    train, val = [encoded[i] for i in train_i], [encoded[i] for i in val_i]
    lines.append(
        f"data      {s['data']}: {len(train):,} training pairs, {len(val):,} held out "
        f"({len({pairs[i].prompt_text for i in val_i})} prompts)"
    )
    device = next(policy.model.parameters()).device
    if s.get("reference"):
        reference, line = load_reference(s["reference"], policy.template, device)
        lines.append(line)
    else:
        reference = frozen(policy.start)
        lines.append(f"reference {policy.checkpoint} (the starting model), frozen")
    ref_logprobs = None
    if cfg.precompute_ref:
        file = out / REF_FILE
        if resume and file.is_file():
            ref_logprobs = load_file(str(file))
        else:
            tw, tl = precompute_reference(reference, train, device)
            vw, vl = precompute_reference(reference, val, device) if val else (tw[:0], tl[:0])
            ref_logprobs = {"train.chosen": tw, "train.rejected": tl, "val.chosen": vw,
                            "val.rejected": vl}  # fmt: skip
            out.mkdir(parents=True, exist_ok=True)
            save_file(ref_logprobs, str(file))
        lines.append(f"reference log-probs of all {len(encoded):,} pairs precomputed ({REF_FILE})")
        reference = None
    tcfg = train_config(s, out, True)
    learner = DPOLearner(
        policy, train, val, cfg,
        batch_size=tcfg.batch_size, accumulation=tcfg.gradient_accumulation_steps,
        seed=tcfg.seed, reference=reference, ref_logprobs=ref_logprobs,
        task=s.get("task"), eval_n=s["eval_n"],
    )  # fmt: skip
    for line in lines:
        say(line)
    save_settings(out, s, DPO_OPTIONS, verb)
    result = run_loop(learner, tcfg, out, resume=resume, say=say, after_update=policy.rows)
    return finish(s, out, result, lines, learner=learner)
