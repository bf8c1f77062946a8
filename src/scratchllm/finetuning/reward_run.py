"""A reward model as a run: ``scratchllm finetune reward``.

The reward model is the ``--from`` GPT with a scalar head on its last real token
(``heads.RewardModel``). For each pair it scores the whole prompt + chosen reply and the
whole prompt + rejected reply, and learns Bradley-Terry's preference likelihood
(``reward.bradley_terry_loss``)::

    loss = mean over pairs of -log sigmoid(r(x, w) - r(x, l))
           (+ center_coef * mean((r_w + r_l)^2))

Logged: the loss, ``accuracy`` (pairs scored in the right order; a tie is wrong) and
``margin`` (mean ``r_w - r_l``); at each evaluation the same on the held-out pairs
(``val_accuracy``: the held-out pair accuracy). ``best/`` is the best held-out accuracy.
A checkpoint is a GPT checkpoint plus the head (``heads``), which ``finetune ppo
--reward-model`` reads.

>>> run = reward_run("runs/rm", {"base": "runs/sft", "data": "pairs.jsonl"})   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scratchllm.configs.rl import RewardConfig
from scratchllm.data.preferences import read_pairs
from scratchllm.finetuning.heads import HEAD_FILE, RewardModel
from scratchllm.finetuning.loop import run_loop
from scratchllm.finetuning.method_run import MethodRun
from scratchllm.finetuning.pair_data import EncodedPair, encode_pairs, split_pairs
from scratchllm.finetuning.policy import run_settings, save_settings, start_policy
from scratchllm.finetuning.reward import bradley_terry_loss
from scratchllm.finetuning.rl_settings import REWARD_OPTIONS, reward_config
from scratchllm.finetuning.sequences import full_sequences
from scratchllm.training.settings import train_config

EVAL_CHUNK = 64


def score_pairs(
    model: RewardModel, pairs: Sequence[EncodedPair], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r(x, chosen) [B], r(x, rejected) [B])`` in one forward of ``2B`` sequences."""
    prompts = [p.prompt for p in pairs] * 2
    replies = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    ids, last = full_sequences(prompts, replies, max_length=model.context_length)
    r = model(ids.to(device), last.to(device))  # [2B]
    B = len(pairs)
    return r[:B], r[B:]


class RewardLearner:
    name = "reward"

    def __init__(
        self,
        model: RewardModel,
        template: Any,
        train: list[EncodedPair],
        val: list[EncodedPair],
        config: RewardConfig,
        *,
        batch_size: int,
        accumulation: int,
        seed: int,
    ) -> None:
        self.model, self.template, self.train, self.val = model, template, train, val
        self.config, self.B, self.A, self.seed = config, batch_size, accumulation, seed
        self.device = next(model.parameters()).device

    def trainable(self) -> torch.nn.Module:
        return self.model

    def save(self, directory: Path) -> None:
        self.model.save(directory)
        self.template.save(directory)  # the tokenizer and the template the pairs were read in

    def train_step(self, step: int, update: Callable[[], float | None]) -> dict[str, float]:
        rng = np.random.default_rng([self.seed, step])
        n, want = len(self.train), self.B * self.A
        index = rng.choice(n, size=want, replace=n < want).tolist()
        sums = {"loss": 0.0, "accuracy": 0.0, "margin": 0.0}
        for a in range(self.A):
            batch = [self.train[i] for i in index[a * self.B : (a + 1) * self.B]]
            r_w, r_l = score_pairs(self.model, batch, self.device)
            out = bradley_terry_loss(r_w, r_l, center_coef=self.config.center_coef)
            (out.loss / self.A).backward()
            sums["loss"] += out.loss.item() / self.A
            sums["accuracy"] += float(out.accuracy) / self.A
            sums["margin"] += float(out.margin) / self.A
        norm = update()
        if norm is not None:
            sums["grad_norm"] = norm
        return sums

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        if not self.val:
            return {}
        r_w, r_l = self.scores(self.val)
        out = bradley_terry_loss(r_w, r_l, center_coef=self.config.center_coef)
        return {
            "val_loss": float(out.loss),
            "val_accuracy": float(out.accuracy),
            "val_margin": float(out.margin),
        }

    @torch.no_grad()
    def scores(self, pairs: list[EncodedPair]) -> tuple[torch.Tensor, torch.Tensor]:
        ws, ls = [], []
        for lo in range(0, len(pairs), EVAL_CHUNK):
            w, l = score_pairs(self.model, pairs[lo : lo + EVAL_CHUNK], self.device)
            ws.append(w)
            ls.append(l)
        return torch.cat(ws), torch.cat(ls)

    def score(self, evaluation: dict[str, float]) -> float | None:
        return evaluation.get("val_accuracy")


def reward_run(
    out: str | Path,
    values: dict[str, Any],
    *,
    config: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> MethodRun:
    """Train a reward model from ``values["base"]`` on the pairs ``values["data"]`` into
    ``out`` (keys: ``rl_settings.REWARD_OPTIONS``)."""
    from safetensors.torch import load_file

    out = Path(out)
    verb = "finetune reward"
    s = run_settings(out, values, REWARD_OPTIONS, verb, config=config, resume=resume,
                     force=force, fixed=("val_fraction",))  # fmt: skip
    cfg = reward_config(s)
    pairs = read_pairs(s["data"])
    policy = start_policy(s, task_like=False, out=out, resume=resume, lora=False)
    torch.manual_seed(s["seed"])  # the head's initial weights
    model = RewardModel(policy.model).to(next(policy.model.parameters()).device)
    if resume:
        model.head.load_state_dict(load_file(str(out / "last" / HEAD_FILE)))
    model.eval()  # dropout off: a pair's two scores come from the same function
    train_i, val_i = split_pairs(pairs, s["val_fraction"])
    encoded = encode_pairs(pairs, policy.template, model.context_length - 1)
    train, val = [encoded[i] for i in train_i], [encoded[i] for i in val_i]
    lines = list(policy.lines) + [
        f"data      {s['data']}: {len(train):,} training pairs, {len(val):,} held out",
        f"model     {policy.checkpoint} with a scalar head on the last token "
        f"({sum(p.numel() for p in model.parameters()):,} parameters)",
    ]
    tcfg = train_config(s, out, True)
    learner = RewardLearner(
        model, policy.template, train, val, cfg,
        batch_size=tcfg.batch_size, accumulation=tcfg.gradient_accumulation_steps, seed=tcfg.seed,
    )  # fmt: skip
    for line in lines:
        say(line)
    save_settings(out, s, REWARD_OPTIONS, verb)
    result = run_loop(learner, tcfg, out, resume=resume, say=say)
    return MethodRun(s, out, result, lines, {"learner": learner})
