"""The preference and RL runs on a tiny model: on-policy pairs the verifier labels, DPO that
starts at ln 2 against a frozen reference (precomputed or not, resumed exactly), a reward
model that learns held-out pairs, GRPO's group bookkeeping and accumulation, and GRPO and
PPO reaching a known optimum (a reward for one fixed continuation)."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from safetensors.torch import load_file

from scratchllm.checkpoint import load_checkpoint
from scratchllm.data.chat import ChatTemplate, Message
from scratchllm.data.languages import get
from scratchllm.data.preferences import read_pairs
from scratchllm.data.sft import in_held_out
from scratchllm.finetuning.dpo_run import dpo_run
from scratchllm.finetuning.grpo_run import GRPOLearner, grpo_run
from scratchllm.finetuning.heads import (
    VALUE_FILE,
    RewardModel,
    ValueHead,
    hidden_states,
    load_reward_model,
)
from scratchllm.finetuning.loop import run_loop
from scratchllm.finetuning.pair_data import EncodedPair, encode_pairs, pair_logprobs
from scratchllm.finetuning.pairs import pairs_from_checkpoint
from scratchllm.finetuning.policy import frozen, start_policy
from scratchllm.finetuning.ppo_run import PPOLearner, ppo_run
from scratchllm.finetuning.reward_run import reward_run, score_pairs
from scratchllm.finetuning.rl_settings import GRPO_OPTIONS, resolve_settings
from scratchllm.finetuning.rollout import task_prompts
from scratchllm.finetuning.sequences import full_sequences, prompt_ids, reply_ids
from scratchllm.finetuning.verifier import judge
from scratchllm.training.run import train_run
from scratchllm.training.settings import train_config

TASK = "addition:digits=1"
QUIET = lambda s: None  # noqa: E731
STEPS = dict(log_interval=1, device="cpu", warmup_iters=0)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny GPT pretrained on one-digit sums: right ~7 % of the time when sampled."""
    out = tmp_path_factory.mktemp("rl") / "pre"
    values = dict(
        data=TASK, samples=500, n_layer=1, n_head=2, n_embd=32, block_size=32, max_iters=60,
        lr=3e-3, eval_interval=60, eval_iters=2, quiet=True, device="cpu", batch_size=16,
    )  # fmt: skip
    train_run(out, values, say=QUIET)
    return out


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    """Right sum preferred to the right sum with a stray 0 appended (a visible difference)."""
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rng = random.Random(0)
    lines = []
    for a in range(10):
        for b in range(10):
            if rng.random() < 0.6:
                lines.append(
                    {"prompt": f"{a}+{b}=", "chosen": f"{a + b}\n", "rejected": f"{a + b}0\n"}
                )
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def weights(run_dir):
    return load_checkpoint(run_dir).model.state_dict()


def test_on_policy_pairs_are_labelled_by_the_verifier(base, tmp_path):
    out = tmp_path / "pairs.jsonl"
    lines = []
    report = pairs_from_checkpoint(base, TASK, out, n=30, k=4, seed=1, say=lines.append)
    pairs = read_pairs(out)
    lang = get(TASK)
    assert len(pairs) == report.pairs == report.prompts_with_pairs > 0
    assert report.prompts_with_pairs + report.all_right + report.all_wrong == 30
    for p in pairs:
        assert judge(lang, p.prompt_text, p.chosen).correct
        assert not judge(lang, p.prompt_text, p.rejected).correct
        assert not in_held_out(p.prompt_text)  # eval --task's tenth stays unseen
    saved = json.loads(out.with_suffix(".report.json").read_text())
    assert (
        saved["all_wrong"] == report.all_wrong
        and saved["pass_at_k"]["4"] >= saved["pass_at_k"]["1"]
    )
    assert any(
        "no pair" in line and f"{report.all_wrong} with every sample wrong" in line
        for line in lines
    )


def test_prompt_and_reply_ids_are_the_chat_templates_render(base):
    template = ChatTemplate.create(load_checkpoint(base).tokenizer)
    prompt = [Message("system", "1+1=2"), Message("user", "3+4=")]
    ids, _ = template.render([*prompt, Message("assistant", "7\n")])
    assert prompt_ids(template, prompt) + reply_ids(template, "7\n") == ids


def dpo(out, base, pairs_file, **changes):
    values = dict(
        base=str(base),
        data=str(pairs_file),
        max_iters=4,
        batch_size=4,
        eval_interval=2,
        lr=1e-2,
        val_fraction=0.3,
        template="plain",
        **STEPS,
    )
    values.update(changes)  # fmt: skip
    return dpo_run(out, values, say=QUIET)


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_dpo_starts_at_ln2_against_a_frozen_reference(base, pairs_file, tmp_path):
    before = weights(base)
    run = dpo(tmp_path / "dpo", base, pairs_file)
    first = rows(tmp_path / "dpo")[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy = reference
    assert first["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    ref = run.extra["learner"].reference
    assert all(not p.requires_grad for p in ref.parameters())
    for k, v in ref.state_dict().items():
        assert torch.equal(v, before[k]), k  # the reference never moved
    after = weights(tmp_path / "dpo")
    assert any(not torch.equal(after[k], before[k]) for k in before)  # the policy did
    assert {"val_reward_accuracy", "val_loss"} <= set(run.result.last_eval)


def test_dpo_with_precomputed_reference_logprobs_is_the_same_run(base, pairs_file, tmp_path):
    dpo(tmp_path / "model", base, pairs_file)
    run = dpo(tmp_path / "pre", base, pairs_file, precompute_ref=True)
    assert run.extra["learner"].reference is None
    assert (tmp_path / "pre" / "reference_logprobs.safetensors").is_file()
    for a, b in zip(rows(tmp_path / "model"), rows(tmp_path / "pre"), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a.get("val_loss") == pytest.approx(b.get("val_loss"), abs=1e-5)


def test_rpo_adds_the_chosen_replies_nll_per_token(base, pairs_file, tmp_path):
    """RPO: ln 2 + alpha * nll at the first step, nll being the start model's mean negative
    log-likelihood over the tokens of the step's chosen replies, computed here row by row."""
    run = dpo(tmp_path / "rpo", base, pairs_file, rpo_alpha=0.5, max_iters=1)
    first = rows(tmp_path / "rpo")[0]
    learner = run.extra["learner"]
    model, _, _ = _encoded(base, pairs_file)
    total = count = 0.0
    with torch.no_grad():
        for i in learner.draw(0):
            p = learner.train[i]
            seq = p.prompt + p.chosen
            logp = torch.log_softmax(model(torch.tensor([seq[:-1]]))[0][0].double(), -1)
            total -= sum(float(logp[t - 1, seq[t]]) for t in range(len(p.prompt), len(seq)))
            count += len(p.chosen)
    assert first["nll"] == pytest.approx(total / count, rel=1e-5)
    assert first["loss"] == pytest.approx(math.log(2) + 0.5 * total / count, rel=1e-5)
    with pytest.raises(ValueError, match="rpo_alpha"):
        dpo(tmp_path / "bad", base, pairs_file, rpo_alpha=-1.0)


@pytest.mark.parametrize("loss_type", ["ipo", "hinge"])
def test_dpo_variants_run_and_log_their_loss(base, pairs_file, tmp_path, loss_type):
    dpo(tmp_path / loss_type, base, pairs_file, loss_type=loss_type, max_iters=2)
    first = rows(tmp_path / loss_type)[0]
    want = (1 / (2 * 0.1)) ** 2 if loss_type == "ipo" else 1.0  # h = 0 at the start
    assert first["loss"] == pytest.approx(want, rel=1e-5)


def test_dpo_resume_continues_exactly(base, pairs_file, tmp_path):
    dpo(tmp_path / "whole", base, pairs_file, lr_decay_iters=4)
    dpo(tmp_path / "split", base, pairs_file, max_iters=2, lr_decay_iters=4)
    dpo_run(tmp_path / "split", {"max_iters": 4}, resume=True, say=QUIET)
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "split")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert [r["step"] for r in rows(tmp_path / "split")] == [1, 2, 3, 4]


def test_the_reward_model_learns_held_out_pairs_and_reloads(base, pairs_file, tmp_path):
    out = tmp_path / "rm"
    values = dict(base=str(base), data=str(pairs_file), max_iters=30, batch_size=8,
                  eval_interval=15, lr=3e-3, val_fraction=0.3, **STEPS)  # fmt: skip
    run = reward_run(out, values, say=QUIET)
    assert run.result.last_eval["val_accuracy"] >= 0.9
    learner = run.extra["learner"]
    model, tok = load_reward_model(out)  # best/, what ppo --reward-model reads
    assert tok.vocab_size == learner.template.tokenizer.vocab_size
    w, l = score_pairs(model, learner.val)
    assert float((w > l).float().mean()) >= 0.9
    with pytest.raises(ValueError, match="not a reward model"):
        load_reward_model(base)


def test_grpo_counts_the_groups_that_teach_nothing(base, tmp_path):
    values = dict(base=str(base), data=TASK, max_iters=3, batch_size=6, group_size=4,
                  eval_interval=3, eval_n=10, eval_k=2, **STEPS)  # fmt: skip
    run = grpo_run(tmp_path / "g", values, say=QUIET)
    for row in rows(tmp_path / "g"):
        # a 0/1 reward: a group has zero spread exactly when all its samples agree
        assert row["zero_std_groups"] == row["all_wrong_groups"] + row["all_right_groups"]
        assert 0 <= row["all_wrong_groups"] <= 6
    assert {"accuracy", "pass@1", "pass@2"} <= set(run.result.last_eval)


@pytest.mark.parametrize("reduction", ["sequence", "token", "dr_grpo"])
def test_grpo_accumulation_gives_the_whole_batchs_gradient(base, reduction):
    s, policy = _policy(base)
    from scratchllm.finetuning.rl_settings import grpo_config

    cfg = grpo_config({**s, "group_size": 4, "partial_credit": 0.5, "reduction": reduction})
    grads = []
    for accumulation in (1, 2):
        learner = GRPOLearner(policy, get(TASK), cfg, prompts_per_step=4, accumulation=accumulation)
        caught = {}

        def catch(caught=caught):  # noqa: ANN202
            for name, p in policy.model.named_parameters():
                caught[name] = p.grad.clone()
                p.grad = None

        logs = learner.train_step(0, catch)
        assert logs["reward_std"] > 0  # some group has a spread: the gradient is not zero
        grads.append(caught)
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], rtol=1e-4, atol=1e-7), name


def _policy(base):
    s = resolve_settings({"base": str(base), "data": TASK, "device": "cpu"}, options=GRPO_OPTIONS)
    return s, start_policy(s, task_like=True, lora=False)


def _p_first(policy, prompt: str, char: str) -> float:
    """The policy's probability that its completion of ``prompt`` starts with ``char``."""
    ids = torch.tensor([prompt_ids(policy.template, [Message("user", prompt)])])
    with torch.no_grad():
        logits, _ = policy.model(ids)
    tok = policy.tokenizer.encode_ordinary(char)[0]
    return float(torch.softmax(logits[0, -1], -1)[tok])


def _prompts():
    return task_prompts(get(TASK), 4, seed=0)


def test_grpo_reaches_a_fixed_continuation(base, tmp_path):
    s, policy = _policy(base)
    cfg_values = {
        **s,
        "group_size": 8,
        "lr": 3e-3,
        "min_lr": 3e-4,
        "max_iters": 50,
        "eval_interval": 50,
        **STEPS,
    }
    from scratchllm.finetuning.rl_settings import grpo_config

    learner = GRPOLearner(
        policy, get(TASK), grpo_config(cfg_values), prompts_per_step=4, seed=0,
        eval_n=2, eval_k=1, reward=lambda p, t: float(t.startswith("7")),
    )  # fmt: skip
    before = _p_first(policy, _prompts()[0], "7")
    run_loop(learner, train_config(cfg_values, tmp_path / "g", True), tmp_path / "g", say=QUIET)
    after = _p_first(policy, _prompts()[0], "7")
    assert before < 0.2 and after > 0.7, (before, after)


def test_ppo_reaches_a_fixed_continuation(base, tmp_path):
    s, policy = _policy(base)
    from scratchllm.configs.rl import PPOConfig

    head = ValueHead(policy.model.config.n_embd)
    learner = PPOLearner(
        policy, head, lambda step: task_prompts(get(TASK), 8, seed=step),
        lambda comps: torch.tensor([float(t.startswith("7")) for t in comps.texts]),
        PPOConfig(samples_per_prompt=2, kl_coef=0.0, ppo_epochs=2, num_minibatches=2),
        reference=frozen(policy.start), max_new_tokens=4, seed=0,
    )  # fmt: skip
    before = _p_first(policy, _prompts()[0], "7")
    # At lr 3e-3 the policy reached the continuation and then, with every reward 1 and
    # no KL term, one late update could undo it (the last of 30 steps, in 1 of 6 seeds on
    # one thread); at 1e-3 every seed of 0-9 ends at 0.97-0.985.
    values = {**s, **STEPS, "lr": 1e-3, "min_lr": 3e-4, "max_iters": 40, "eval_interval": 40,
              "schedule": "constant"}  # fmt: skip
    cfg = train_config(values, tmp_path / "p", True)
    run_loop(learner, cfg, tmp_path / "p", say=QUIET)
    after = _p_first(policy, _prompts()[0], "7")
    assert before < 0.2 and after > 0.7, (before, after)


def test_ppo_with_the_verifier_writes_a_normal_checkpoint(base, tmp_path):
    values = dict(base=str(base), data=TASK, max_iters=2, batch_size=4, eval_interval=2,
                  eval_n=4, eval_k=2, ppo_epochs=1, **STEPS)  # fmt: skip
    run = ppo_run(tmp_path / "ppo", values, say=QUIET)
    last = tmp_path / "ppo" / "last"
    assert set(load_file(str(last / VALUE_FILE))) == {"linear.weight", "linear.bias"}
    assert load_checkpoint(tmp_path / "ppo").model.config.vocab_size == 13
    first = rows(tmp_path / "ppo")[0]
    assert 0.0 <= first["sample_accuracy"] <= 1.0 and "kl" in first
    assert run.result.steps == 2


def _encoded(base, pairs_file):
    ckpt = load_checkpoint(base)
    template = ChatTemplate.plain(ckpt.tokenizer)
    return ckpt.model.eval(), template, encode_pairs(read_pairs(pairs_file), template, 31)


def test_a_pairs_scores_are_its_rows_scored_alone_at_their_last_real_token(base, pairs_file):
    """What a reward model scores below chance with if it is wrong: a row's score must not
    depend on its batch, its padding (id or amount), or the order chosen/rejected go in."""
    body, _, pairs = _encoded(base, pairs_file)
    torch.manual_seed(0)
    model = RewardModel(body).eval()
    batch = pairs[:12]  # replies of 2 and 3 tokens: the shorter rows are padded
    assert len({len(p.chosen) for p in batch} | {len(p.rejected) for p in batch}) > 1
    with torch.no_grad():
        w, l = score_pairs(model, batch)
        for i, p in enumerate(batch):
            for reply, score in ((p.chosen, w[i]), (p.rejected, l[i])):
                ids = torch.tensor([p.prompt + reply])  # the row alone, no padding
                _, h = hidden_states(body, ids)
                alone = model.head(h[0, -1]).squeeze(-1)
                assert torch.allclose(score, alone, atol=1e-5), (i, reply)
        for pad in (0, 5):
            ids, last = full_sequences(
                [p.prompt for p in batch] * 2,
                [p.chosen for p in batch] + [p.rejected for p in batch],
                pad_id=pad,
            )
            r = model(ids, last)
            assert torch.allclose(r[:12], w, atol=1e-5) and torch.allclose(r[12:], l, atol=1e-5)
        swapped = [EncodedPair(p.prompt, p.rejected, p.chosen, p.source) for p in batch]
        sw, sl = score_pairs(model, swapped)
    assert torch.allclose(sw, l, atol=1e-5) and torch.allclose(sl, w, atol=1e-5)


def test_dpo_log_probs_sum_the_completion_tokens_of_each_row_alone(base, pairs_file):
    """``pair_logprobs``: per row, sum_t log p(reply_t | prompt, reply_<t) over the reply's
    tokens only (its END included, the prompt and the padding not), whatever the batch."""
    model, _, pairs = _encoded(base, pairs_file)
    batch = pairs[:12]
    with torch.no_grad():
        w, l = pair_logprobs(model, batch)
        for i, p in enumerate(batch):
            for reply, got in ((p.chosen, w[i]), (p.rejected, l[i])):
                seq = p.prompt + reply
                logits, _ = model(torch.tensor([seq[:-1]]))
                logp = torch.log_softmax(logits[0].double(), -1)
                want = sum(float(logp[t - 1, seq[t]]) for t in range(len(p.prompt), len(seq)))
                assert float(got) == pytest.approx(want, abs=1e-4), (i, reply)


def test_the_reward_model_reads_a_difference_inside_the_reply(base, tmp_path):
    """Replies of equal length that differ before their last token (a right sum, or a sum
    with a digit replaced by '+'): separable only if the head's token has read the reply,
    and measured on held-out prompts."""
    path = tmp_path / "pairs.jsonl"
    lines = [
        {"prompt": f"{a}+{b}=", "chosen": f"{a + b}\n", "rejected": "+" + f"{a + b}\n"[1:]}
        for a in range(10)
        for b in range(10)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    values = dict(base=str(base), data=str(path), max_iters=30, batch_size=8,
                  eval_interval=30, lr=3e-3, val_fraction=0.3, **STEPS)  # fmt: skip
    run = reward_run(tmp_path / "rm", values, say=QUIET)
    learner = run.extra["learner"]
    assert len(learner.val) >= 20
    assert run.result.last_eval["val_accuracy"] >= 0.9
    with torch.no_grad():  # the logged figure is the held-out pairs scored one by one
        alone = [score_pairs(learner.model, [p]) for p in learner.val]
    acc = sum(float(w[0] > l[0]) for w, l in alone) / len(alone)
    assert acc == pytest.approx(run.result.last_eval["val_accuracy"])
