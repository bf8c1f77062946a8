"""finetune sft as a library: a run directory every verb reads, the vocabulary grown for the
chat tokens, exact resume, per-token weighting in the real run, LoRA / QLoRA checkpoints
that hold the adapter alone (and reload, merge and resume), and clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from scratchllm.checkpoint import load_checkpoint
from scratchllm.data.chat import ChatTemplate, Message
from scratchllm.finetuning.sft import sft_run
from scratchllm.models import load as load_model
from scratchllm.models.lora import base_storage, lora_layers
from scratchllm.textgen import complete, iter_reply, load_chat_model
from scratchllm.training.run import train_run

TASK = "addition:digits=2"
QUICK = dict(
    max_iters=6, batch_size=8, eval_interval=3, eval_iters=2, log_interval=1, lr=3e-3,
    warmup_iters=1, quiet=True, device="cpu", samples=200,
)  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny GPT pretrained on the language's stream (char tokenizer, 13 tokens)."""
    out = tmp_path_factory.mktemp("base") / "pre"
    values = dict(
        data=TASK, samples=300, n_layer=1, n_head=2, n_embd=32, block_size=32, max_iters=8,
        eval_interval=4, eval_iters=2, quiet=True, device="cpu", batch_size=8,
    )  # fmt: skip
    train_run(out, values, say=lambda s: None)
    return out


def run(out, base, **changes):
    lines: list[str] = []
    r = sft_run(out, {"base": str(base), "data": TASK, **QUICK, **changes}, say=lines.append)
    return r, lines


def test_a_language_task_trains_in_its_plain_format(base, tmp_path):
    r, lines = run(tmp_path / "plain", base)
    last = tmp_path / "plain" / "last"
    assert r.result.status == "completed" and r.result.steps == 6
    template = ChatTemplate.load(last)
    assert template.special_tokens == []  # auto: a language task keeps its own format
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.json"} <= {
        p.name for p in last.iterdir()
    }
    data = json.loads((tmp_path / "plain" / "examples.json").read_text())
    assert data["source"] == TASK and len(data["fingerprint"]) == 64
    assert "finetune.toml" in {p.name for p in (tmp_path / "plain").iterdir()}
    assert any("180 train + 20 validation examples" in line for line in lines), lines
    # a normal run directory: sample reads it
    model, tok = (
        load_checkpoint(tmp_path / "plain").model,
        load_checkpoint(tmp_path / "plain").tokenizer,
    )
    text = complete(model.eval(), tok, "12+34=", max_new_tokens=4, temperature=0)[0]
    assert len(text) == 4 and set(text) <= set("0123456789+=\n")


def test_the_chat_template_grows_the_vocabulary_and_says_so(base, tmp_path):
    r, lines = run(tmp_path / "chat", base, template="chat")
    assert any("grown 13 -> 17" in line and "<|end|>" in line for line in lines), lines
    ckpt = load_checkpoint(tmp_path / "chat")
    assert ckpt.model.config.vocab_size == 17 == ckpt.tokenizer.vocab_size
    model, template = load_chat_model(tmp_path / "chat")
    assert template.end == "<|end|>"
    reply = "".join(iter_reply(model, template, [Message("user", "12+34=")], max_new_tokens=5))
    assert "<|" not in reply and len(reply) <= 5


def test_resume_continues_exactly(base, tmp_path):
    # the same schedule either way (lr_decay_iters), so only the stop and restart differ
    straight, _ = run(tmp_path / "a", base, template="chat", max_iters=6, lr_decay_iters=6)
    run(tmp_path / "b", base, template="chat", max_iters=3, lr_decay_iters=6)
    resumed = sft_run(tmp_path / "b", {"max_iters": 6}, resume=True, say=lambda s: None)
    assert resumed.result.steps == 6
    a, b = load_model(tmp_path / "a" / "last"), load_model(tmp_path / "b" / "last")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def test_accumulation_in_the_run_equals_one_big_batch(base, tmp_path):
    """2 micro-batches of 4 examples of unequal lengths = one batch of 8, step for step."""
    run(tmp_path / "big", base, template="chat", batch_size=8, gradient_accumulation_steps=1)
    run(tmp_path / "acc", base, template="chat", batch_size=4, gradient_accumulation_steps=2)
    rows = [
        [json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").open()]
        for d in ("big", "acc")
    ]
    assert len(rows[0]) == 6 and rows[0] == pytest.approx(rows[1], rel=1e-6)
    a, b = load_model(tmp_path / "big" / "last"), load_model(tmp_path / "acc" / "last")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        # The two runs add the same terms in a different order, so gradients agree to float32
        # rounding, and AdamW, which divides a gradient by its own size, turns the rounding
        # of a gradient near zero into a step of either sign. The key bias has a zero
        # gradient in exact arithmetic, so it agrees to 1e-5; everything else to 1e-6. (Each
        # micro-batch weighted 1 / 2 instead of by its tokens moves the losses by 3e-3.)
        atol = 1e-5 if name.endswith("c_attn.bias") else 1e-6
        torch.testing.assert_close(p, q, rtol=0, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


def test_a_packed_run_trains(base, tmp_path):
    r, lines = run(tmp_path / "pack", base, template="chat", pack=True, batch_size=2)
    assert any("packed" in line for line in lines)
    assert r.result.best_val_loss < 10


def test_a_fresh_model_learns_from_scratch(tmp_path):
    r, lines = run(tmp_path / "fresh", "gpt", n_layer=1, n_head=2, n_embd=16, block_size=16)
    assert any("a fresh GPT" in line for line in lines)
    assert load_checkpoint(tmp_path / "fresh").tokenizer.vocab_size == 13


def test_lora_checkpoints_hold_the_adapter_and_reload_onto_the_base(base, tmp_path):
    r, lines = run(tmp_path / "lora", base, template="chat", lora_r=4, lora_alpha=8.0, merge=True)
    last = tmp_path / "lora" / "last"
    names = {p.name for p in last.iterdir()}
    assert "model.safetensors" not in names
    assert {"adapter_config.json", "adapter_model.safetensors", "base.json"} <= names
    assert "added_tokens.safetensors" in names  # the chat tokens' rows train
    # adapters r (in + out) on c_attn (32, 96), attn.c_proj (32, 32), c_fc (32, 128) and
    # mlp.c_proj (128, 32): 2,048; plus the 4 chat tokens' rows of 32: 2,176 of 14,336 + 2,048
    assert any("LoRA r=4" in line and "2,176 of 16,384 parameters" in line for line in lines)
    # the in-memory model and the one load_checkpoint rebuilds compute the same logits
    x = torch.randint(0, 17, (2, 12), generator=torch.Generator().manual_seed(0))
    reloaded = load_checkpoint(tmp_path / "lora").model
    with torch.no_grad():
        mine = r.model.eval()(x)[0]
        torch.testing.assert_close(reloaded(x)[0], mine, rtol=1e-6, atol=1e-6)
        merged = load_model(tmp_path / "lora" / "merged")
        torch.testing.assert_close(merged(x)[0], mine, rtol=1e-5, atol=1e-5)
    # the base stayed frozen; of the vocabulary rows only the added tokens' moved
    pre = load_model(base / "last")
    wte = reloaded.transformer.wte.weight
    torch.testing.assert_close(wte[:13], pre.transformer.wte.weight, rtol=0, atol=0)
    grown = load_model(base / "last")
    from scratchllm.models.vocab import grow_vocab

    grow_vocab(grown, 17)
    assert not torch.allclose(wte[13:], grown.transformer.wte.weight[13:])
    for name, layer in lora_layers(reloaded).items():
        dense = pre.get_submodule(name)
        torch.testing.assert_close(layer.base_layer.weight, dense.weight, rtol=0, atol=0)
    # sample and chat read it: base + adapter
    model, template = load_chat_model(tmp_path / "lora")
    assert lora_layers(model)
    "".join(iter_reply(model, template, [Message("user", "1+1=")], max_new_tokens=3))


def test_lora_resume_is_exact(base, tmp_path):
    run(tmp_path / "a", base, template="chat", lora_r=4, max_iters=6, lr_decay_iters=6)
    run(tmp_path / "b", base, template="chat", lora_r=4, max_iters=3, lr_decay_iters=6)
    sft_run(tmp_path / "b", {"max_iters": 6}, resume=True, say=lambda s: None)
    a, b = load_checkpoint(tmp_path / "a").model, load_checkpoint(tmp_path / "b").model
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def test_qlora_holds_the_base_in_four_bits_and_merges(base, tmp_path):
    r, lines = run(
        tmp_path / "q", base, template="chat", lora_r=4, quantize="nf4", double_quant=True,
        merge=True,
    )  # fmt: skip
    assert any("base in NF4 + double quant" in line for line in lines)
    model = load_checkpoint(tmp_path / "q").model
    n_bytes, n_params = base_storage(model)
    assert n_bytes / n_params < 4  # a tiny model: its fp32 embeddings weigh; see docs
    x = torch.randint(0, 17, (1, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        merged = load_model(tmp_path / "q" / "merged")
        torch.testing.assert_close(merged(x)[0], model(x)[0], rtol=1e-5, atol=1e-5)


def test_an_adapter_refuses_a_changed_or_missing_base(base, tmp_path):
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    run(tmp_path / "lora", copy, template="chat", lora_r=2, max_iters=2, eval_interval=2)
    state = load_model(copy / "last")
    with torch.no_grad():
        state.transformer.wte.weight.add_(1.0)
    state.save(copy / "last")
    with pytest.raises(ValueError, match="has changed since the adapter was trained"):
        load_checkpoint(tmp_path / "lora")
    shutil.rmtree(copy)
    with pytest.raises(FileNotFoundError, match="is gone"):
        load_checkpoint(tmp_path / "lora")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"base": "gpt", "lora_r": 4}, "LoRA adapts a trained model"),
        ({"quantize": "nf4"}, "needs LoRA adapters"),
        ({"lora_alpha": 4.0}, "--lora-alpha need --lora-r"),
        ({"double_quant": True, "lora_r": 2}, "--double-quant needs --quantize nf4"),
        ({"n_layer": 3}, "size a fresh model"),
        ({"base": "lstm", "pack": True}, "--pack needs GPT"),
        ({"lora_r": 2, "lora_targets": "q_proj"}, "unknown LoRA target 'q_proj'"),
        ({"data": "nothing-here"}, "is not a file"),
    ],
)
def test_bad_settings_are_clear_errors(base, tmp_path, changes, match):
    values = {"base": str(base), "data": TASK, **QUICK, **changes}
    with pytest.raises(ValueError, match=match):
        sft_run(tmp_path / "bad", values, say=lambda s: None)


def test_resume_cannot_change_the_base_or_the_data(base, tmp_path):
    run(tmp_path / "r", base, max_iters=2, eval_interval=2)
    with pytest.raises(ValueError, match="--from cannot change"):
        sft_run(tmp_path / "r", {"base": "gpt"}, resume=True, say=lambda s: None)
    with pytest.raises(ValueError, match="examples of"):
        sft_run(tmp_path / "r", {"samples": 100}, resume=True, say=lambda s: None)


_HOLDER = """
import sys, time
from scratchllm.files import run_lock
run_lock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_writer_of_a_finetune_run_is_refused(base, tmp_path):
    """finetune runs hold the run directory's lock as train does: while another process
    holds it, a run into the same --out is refused by the holder's pid and writes nothing."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from scratchllm.files import RunInUseError

    out = tmp_path / "held"
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(RunInUseError, match=f"run in use by pid {proc.pid} "):
            run(out, base)
        assert sorted(p.name for p in out.iterdir()) == before  # nothing written
    finally:
        proc.kill()
        proc.wait()
    r, _ = run(out, base)  # once the holder is gone, the run goes ahead
    assert r.result.status == "completed"
