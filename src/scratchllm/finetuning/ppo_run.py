"""PPO, classic RLHF, as a run: ``scratchllm finetune ppo``.

The policy has a value head on its own body (``heads.ValueHead``). Each step:

1. **rollout**: ``batch_size`` prompts of the task's training side, ``samples_per_prompt``
   completions each (``rollout``), scored by a reward model (``--reward-model``, trained
   by ``finetune reward``) or by the task's verifier (1 for a right answer, else 0 or
   partial credit). Kept from the rollout: the policy's log-probs ``log pi_old``, the
   values ``V_old`` and the frozen reference's log-probs ``log ref``.
2. **rewards** per token (``kl.shaped_rewards``): ``-kl_coef * KL_t`` on every completion
   token, plus the score on the last one.
3. **GAE** (``advantages.gae``): ``delta_t = r_t + gamma V_{t+1} - V_t``,
   ``A_t = delta_t + gamma lam A_{t+1}``, returns ``R_t = A_t + V_t``; the advantages
   whitened over the rollout (``whiten``).
4. **updates**: ``ppo_epochs`` passes, each in ``num_minibatches`` minibatches (order from
   ``(seed, step)``), each one optimizer step on
   ``L = L_clip(pi) + vf_coef L_clip(V) - ent_coef H`` (``ppo``).

Logged per step: the score (what the reward model or verifier gave), ``sample_accuracy``
(the verifier's verdict on the same samples, whatever scored them: a policy that learns to
please a reward model without being right shows a rising score over a flat or falling
accuracy), the KL to the reference (summed over a completion's tokens, mean), the losses,
clip fractions, entropy. Each evaluation scores the task's held-out prompts (greedy accuracy,
pass@1, pass@k). A checkpoint holds the policy and ``value_head.safetensors``.

>>> run = ppo_run("runs/ppo", {"base": "runs/sft", "data": "addition:digits=2",
...                            "reward_model": "runs/rm"})                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scratchllm.configs.rl import PPOConfig
from scratchllm.data.languages import Language, get
from scratchllm.finetuning.advantages import gae, whiten
from scratchllm.finetuning.grpo_run import max_new_tokens_for, step_seed
from scratchllm.finetuning.heads import VALUE_FILE, ValueHead, hidden_states, load_reward_model
from scratchllm.finetuning.kl import shaped_rewards
from scratchllm.finetuning.logprobs import token_logprobs
from scratchllm.finetuning.loop import run_loop
from scratchllm.finetuning.method_run import MethodRun, finish
from scratchllm.finetuning.policy import Policy, frozen, run_settings, save_settings, start_policy
from scratchllm.finetuning.ppo import entropy_bonus, ppo_policy_loss, ppo_value_loss
from scratchllm.finetuning.rl_settings import PPO_OPTIONS, ppo_config
from scratchllm.finetuning.rollout import Completions, sample_completions, task_prompts
from scratchllm.finetuning.sequences import full_sequences, make_rows
from scratchllm.finetuning.start import same_tokenizer
from scratchllm.finetuning.task_eval import task_figures
from scratchllm.finetuning.verifier import judge

Scorer = Callable[[Completions], torch.Tensor]  # completions -> one score each [N]


class VerifierScorer:
    """The task's verifier: 1 for a right answer, else ``partial_credit`` per digit."""

    def __init__(self, language: Language, partial_credit: float = 0.0) -> None:
        self.language, self.partial = language, partial_credit

    def __call__(self, comps: Completions) -> torch.Tensor:
        return torch.tensor(
            [
                judge(self.language, p, t, self.partial).reward
                for p, t in zip(comps.prompts, comps.texts)
            ]
        )


class RewardModelScorer:
    """A reward model's score of each whole prompt + completion (its last token)."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device

    @torch.no_grad()
    def __call__(self, comps: Completions) -> torch.Tensor:
        ids, last = full_sequences(
            comps.prompt_ids, comps.completion_ids, max_length=self.model.context_length
        )
        return self.model(ids.to(self.device), last.to(self.device)).float().cpu()


class PPOLearner:
    name = "ppo"

    def __init__(
        self,
        policy: Policy,
        value_head: ValueHead,
        prompts: Callable[[int], list[str]],
        scorer: Scorer,
        config: PPOConfig,
        *,
        reference: nn.Module,
        max_new_tokens: int,
        seed: int = 0,
        correct: Callable[[str, str], bool] | None = None,
        evaluate: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.policy, self.value_head, self.prompts, self.scorer = (
            policy,
            value_head,
            prompts,
            scorer,
        )
        self.config, self.reference, self.max_new, self.seed = (
            config,
            reference,
            max_new_tokens,
            seed,
        )
        self.correct, self._evaluate = correct, evaluate
        self.modules = nn.ModuleDict({"policy": policy.model, "value": value_head})
        self.device = next(policy.model.parameters()).device

    def trainable(self) -> nn.Module:
        return self.modules

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        self.policy.files()(directory)
        state = {k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()}
        save_file(state, str(directory / VALUE_FILE))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [B, T, V], values [B, T])`` in one pass of the shared body."""
        logits, h = hidden_states(self.policy.model, x)
        return logits, self.value_head(h)

    def train_step(self, step: int, update: Callable[[], float | None]) -> dict[str, float]:
        c = self.config
        seed = step_seed(self.seed, step)
        comps = sample_completions(
            self.policy.model, self.policy.template, self.prompts(step), c.samples_per_prompt,
            self.max_new, temperature=c.temperature, top_k=c.top_k, seed=seed,
        )  # fmt: skip
        rows = make_rows(comps.prompt_ids, comps.completion_ids).to(self.device)
        m = rows.mask
        scores = self.scorer(comps).to(self.device)  # [N]
        with torch.no_grad():
            logits, values = self.forward(rows.x)
            old_lp = token_logprobs(logits, rows.y, m)
            old_v = values.masked_fill(~m, 0.0)
            ref_logits, _ = self.reference(rows.x)
            ref_lp = token_logprobs(ref_logits, rows.y, m)
            shaped = shaped_rewards(scores, old_lp, ref_lp, m, c.kl_coef, c.kl_estimator)
            g = gae(shaped.rewards, old_v, c.gamma, c.lam, mask=m)
            adv = (
                whiten(g.advantages, m)
                if c.whiten_advantages and int(m.sum()) > 1
                else g.advantages
            )
        N = rows.x.shape[0]
        rng = np.random.default_rng([self.seed, step, 1])
        sums = dict.fromkeys(("loss", "policy_loss", "value_loss", "entropy", "clip_fraction",
                              "value_clip_fraction", "approx_kl"), 0.0)  # fmt: skip
        updates = 0
        for _ in range(c.ppo_epochs):
            order = rng.permutation(N)
            for idx in np.array_split(order, c.num_minibatches):
                if len(idx) == 0:
                    continue
                i = torch.as_tensor(idx, device=self.device)
                logits, values = self.forward(rows.x[i])
                mi = m[i]
                lp = token_logprobs(logits, rows.y[i], mi)
                pl = ppo_policy_loss(lp, old_lp[i], adv[i], mi, c.clip_eps)
                vl = ppo_value_loss(values, old_v[i], g.returns[i], mi, c.value_clip)
                ent = entropy_bonus(logits, mi)
                loss = pl.loss + c.vf_coef * vl.loss - c.ent_coef * ent
                loss.backward()
                update()
                updates += 1
                parts = {
                    "loss": loss, "policy_loss": pl.loss, "value_loss": vl.loss, "entropy": ent,
                    "clip_fraction": pl.clip_fraction, "value_clip_fraction": vl.clip_fraction,
                    "approx_kl": pl.approx_kl,
                }  # fmt: skip
                for key, value in parts.items():
                    sums[key] += float(value.detach())
        logs = {k: v / max(updates, 1) for k, v in sums.items()}
        logs["score"] = float(scores.mean())
        logs["kl"] = float(shaped.kl.sum(-1).mean())  # per completion, summed over its tokens
        if self.correct is not None:
            right = [self.correct(p, t) for p, t in zip(comps.prompts, comps.texts)]
            logs["sample_accuracy"] = sum(right) / len(right)
        logs["completion_tokens"] = float(m.sum()) / N
        return logs

    def evaluate(self, step: int) -> dict[str, float]:
        return self._evaluate() if self._evaluate is not None else {}

    def score(self, evaluation: dict[str, float]) -> float | None:
        return evaluation.get("pass@1", evaluation.get("accuracy"))


def ppo_run(
    out: str | Path,
    values: dict[str, Any],
    *,
    config: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> MethodRun:
    """PPO from ``values["base"]`` on the task ``values["data"]`` into ``out`` (keys:
    ``rl_settings.PPO_OPTIONS``); the reward is ``values["reward_model"]``'s or the verifier's."""
    from safetensors.torch import load_file

    from scratchllm.training.settings import train_config

    out = Path(out)
    verb = "finetune ppo"
    s = run_settings(out, values, PPO_OPTIONS, verb, config=config, resume=resume,
                     force=force, fixed=("reward_model",))  # fmt: skip
    cfg = ppo_config(s)
    language = get(s["data"])
    policy = start_policy(s, task_like=True, out=out, resume=resume)
    device = next(policy.model.parameters()).device
    reference = frozen(policy.start)
    head = ValueHead(int(policy.model.config.n_embd)).to(device)
    if resume:
        head.load_state_dict(load_file(str(out / "last" / VALUE_FILE)))
    lines = list(policy.lines)
    if s.get("reward_model"):
        rm, rm_tok = load_reward_model(s["reward_model"], device)
        if not same_tokenizer(rm_tok, policy.tokenizer):
            raise ValueError(
                f"--reward-model {s['reward_model']}: its tokenizer ({rm_tok.vocab_size} tokens) "
                f"is not the policy's ({policy.tokenizer.vocab_size}); train the reward model from "
                "the same checkpoint (finetune reward --from the policy's start)"
            )
        for p in rm.parameters():
            p.requires_grad_(False)
        scorer: Scorer = RewardModelScorer(rm, device)
        lines.append(f"reward    the reward model {s['reward_model']} (frozen)")
    else:
        scorer = VerifierScorer(language, cfg.partial_credit)
        lines.append("reward    the task's verifier (1 for a right answer)")
    tcfg = train_config(s, out, True)
    P = tcfg.batch_size
    max_new = max_new_tokens_for(language, policy, cfg.max_new_tokens)

    def prompts(step: int) -> list[str]:
        return task_prompts(language, P, seed=step_seed(tcfg.seed, step))

    learner = PPOLearner(
        policy, head, prompts, scorer, cfg, reference=reference, max_new_tokens=max_new,
        seed=tcfg.seed, correct=lambda p, t: judge(language, p, t).correct,
        evaluate=lambda: task_figures(policy.model, policy.template, language.spec,
                                      s["eval_n"], s["eval_k"]),
    )  # fmt: skip
    lines.append(
        f"rollout   {P} prompts x {cfg.samples_per_prompt} per step, up to {max_new} tokens; "
        f"{cfg.ppo_epochs} epochs x {cfg.num_minibatches} minibatch(es); KL coef {cfg.kl_coef:g}"
    )
    for line in lines:
        say(line)
    save_settings(out, s, PPO_OPTIONS, verb)
    result = run_loop(learner, tcfg, out, resume=resume, say=say, after_update=policy.rows)
    return finish(s, out, result, lines, learner=learner)
