"""scratchllm finetune (sft, distill, merge) and scratchllm chat, from the command line:
every training flag of train, a run directory the other verbs read, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scratchllm.cli import main
from scratchllm.finetuning.settings import DISTILL_OPTIONS, SFT_OPTIONS
from scratchllm.training.settings import OPTIONS

TINY = ["--max-iters", "4", "--batch-size", "8", "--eval-interval", "2", "--eval-iters", "1",
        "--quiet", "--device", "cpu", "--samples", "120"]  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "pre"
    code = main(
        [
            "train",
            "--data",
            "addition:digits=2",
            "--samples",
            "200",
            "--n-layer",
            "1",
            "--n-head",
            "2",
            "--n-embd",
            "16",
            "--block-size",
            "32",
            "--max-iters",
            "4",
            "--eval-interval",
            "2",
            "--eval-iters",
            "1",
            "--quiet",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]  # fmt: skip
    )
    assert code == 0
    return out


@pytest.mark.parametrize(
    ("method", "options"), [("sft", SFT_OPTIONS), ("distill", DISTILL_OPTIONS)]
)
def test_every_training_flag_of_train_is_a_flag_of_each_method(method, options, capsys):
    with pytest.raises(SystemExit):
        main(["finetune", method, "--help"])
    out = capsys.readouterr().out
    for o in OPTIONS:
        if o.group == "train":
            assert o.flag in out, o.flag
    for o in options:
        if o.key != "model":
            assert o.flag in out, o.flag
    assert "--from" in out and "--resume" in out


def test_help_does_not_import_torch():
    code = (
        "import sys; from scratchllm.cli import main\n"
        "try: main(['finetune', 'sft', '--help'])\n"
        "except SystemExit: pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_sft_chat_merge_and_the_other_verbs(base, tmp_path, capsys):
    run = tmp_path / "chat"
    args = ["finetune", "sft", "--from", str(base), "--data", "addition:digits=2",
            "--template", "chat", "--lora-r", "2", "--out", str(run)]  # fmt: skip
    assert main(args + TINY) == 0
    out = capsys.readouterr().out
    assert "grown 13 -> 17" in out and "LoRA r=2" in out
    assert f"scratchllm chat {run}" in out and f"scratchllm eval {run} --task" in out
    assert main(["finetune", "sft", "--out", str(run), "--resume", "--max-iters", "6"]) == 0
    assert "done: 6 steps" in capsys.readouterr().out
    assert main(["chat", str(run), "--prompt", "12+34=", "--max-new-tokens", "4"]) == 0
    assert len(capsys.readouterr().out) <= 4 * len("<|user|>") + 1
    assert main(["finetune", "merge", str(run), "--out", str(tmp_path / "merged")]) == 0
    assert "plain checkpoint" in capsys.readouterr().out
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert (tmp_path / "merged" / "chat_template.json").is_file()
    assert main(["sample", str(run), "--prompt", "1+", "--max-new-tokens", "3"]) == 0
    assert main(["eval", str(run), "--data", "addition:digits=2", "--samples", "5"]) == 0
    assert main(["inspect", str(run), "--out", str(tmp_path / "look")]) == 0
    capsys.readouterr()


def test_chat_on_a_base_model_says_what_to_do(base, capsys):
    assert main(["chat", str(base), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert "no chat template" in err and "finetune sft" in err and "scratchllm sample" in err


def test_chat_reads_a_message_from_stdin(base, tmp_path, capsys, monkeypatch):
    import io

    run = tmp_path / "c"
    assert main(["finetune", "sft", "--from", str(base), "--data", "addition:digits=2",
                 "--template", "chat", "--out", str(run)] + TINY) == 0  # fmt: skip
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO("3+4=\n"))
    assert main(["chat", str(run), "--system", "1+1=2", "--max-new-tokens", "3"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["chat", str(run)]) == 2
    assert "no message" in capsys.readouterr().err


def test_distill_from_the_command_line(base, tmp_path, capsys):
    args = ["finetune", "distill", "--teacher", str(base), "--from", "gpt", "--n-layer", "1",
            "--n-head", "1", "--n-embd", "8", "--data", "addition:digits=2", "--alpha", "0.2",
            "--temperature", "2", "--divergence", "jsd", "--beta", "0.3",
            "--out", str(tmp_path / "s")]  # fmt: skip
    assert main(args + TINY) == 0
    out = capsys.readouterr().out
    assert "teacher " in out and "a fresh GPT" in out
    text = (tmp_path / "s" / "finetune.toml").read_text()
    assert 'divergence = "jsd"' in text and "beta = 0.3" in text


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["finetune", "sft", "--data", "addition:digits=2"], "needs --from"),
        (["finetune", "sft", "--from", "nowhere", "--data", "addition:digits=2"], "nowhere"),
        (["finetune", "merge", "BASE", "--out", "m"], "holds no LoRA adapters"),
    ],
)
def test_errors_are_one_line(base, tmp_path, capsys, args, match):
    args = [str(base) if a == "BASE" else a for a in args]
    assert main(args + ["--out", str(tmp_path / "o")] if "merge" not in args else args) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_eval_task_through_the_chat_template(base, tmp_path, capsys):
    import json

    from scratchllm.checkpoint import load_checkpoint
    from scratchllm.data.chat import ChatTemplate
    from scratchllm.data.sft import in_held_out
    from scratchllm.evaluation.task import evaluate_task

    run = tmp_path / "t"
    assert main(["finetune", "sft", "--from", str(base), "--data", "addition:digits=2",
                 "--template", "chat", "--out", str(run)] + TINY) == 0  # fmt: skip
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert "accuracy" in rows[-1]  # the task's accuracy at every evaluation
    capsys.readouterr()
    assert main(["eval", str(run), "--task", "addition:digits=2", "--n", "30", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["n"] == 30 and {"length", "carries"} <= set(got["by"])
    # the same as evaluate_task given the template's rendering and its end token
    ckpt = load_checkpoint(run)
    chat = ChatTemplate.load(ckpt.path)
    ref = evaluate_task(
        ckpt.model.eval(), ckpt.tokenizer, "addition:digits=2", 30, keep=in_held_out,
        render=lambda p: chat.render_prompt([{"role": "user", "content": p}]),
        stop_ids=[chat.end_id],
    )  # fmt: skip
    assert got["accuracy"] == ref.accuracy
    assert all(in_held_out(it.prompt) for it in ref.items)
    assert main(["eval", str(run), "--task", "addition:digits=2", "--n", "10"]) == 0
    assert "by carries" in capsys.readouterr().out
    assert main(["eval", str(run), "--task", "markov:order=2", "--n", "5"]) == 2
    assert "no answer" in capsys.readouterr().err
