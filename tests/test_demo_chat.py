"""The chat demo, run with tiny settings: a base run, the instruction file, a chat-tuned run
that `scratchllm chat` answers from, and replies to trained-on and held-out questions."""

from __future__ import annotations

import json

import pytest

from scratchllm.cli import main
from scratchllm.data.chat import Message
from scratchllm.data.sft import load_examples
from scratchllm.demo import QUESTIONS, run_chat_demo
from scratchllm.textgen import iter_reply, load_chat_model

pytestmark = pytest.mark.slow  # pretrains on stdlib-docs and fine-tunes: about a minute


@pytest.fixture(scope="module")
def chat_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("chat-demo") / "run"
    lines: list[str] = []
    report = run_chat_demo(out=out, quick=True, say=lines.append)
    return out, report, "\n".join(lines)


def test_chat_demo_leaves_a_base_the_instructions_and_a_chat_run(chat_demo):
    out, report, text = chat_demo
    assert (out / "base" / "last" / "model.safetensors").is_file()
    assert not (out / "base" / "last" / "chat_template.json").exists()
    assert (out / "chat" / "last" / "chat_template.json").is_file()
    rows = [json.loads(line) for line in (out / "instructions.jsonl").read_text().splitlines()]
    assert rows and all(set(r) == {"prompt", "completion"} for r in rows)
    # Only pairs that fit the base's context (128) with the template's four tokens.
    assert all(len(r["prompt"]) + len(r["completion"]) + 4 <= 129 for r in rows)
    assert len(rows) < len(load_examples("stdlib-instructions"))
    assert f"fine-tuning on the {len(rows):,} instruction pairs" in text
    assert report.seconds >= report.pretrain_seconds + report.sft_seconds > 0


def test_chat_demo_asks_trained_and_held_out_questions(chat_demo):
    out, report, text = chat_demo
    trained = {json.loads(line)["prompt"] for line in (out / "instructions.jsonl").open()}
    seen = [r for r in report.replies if r[3]]
    held = [r for r in report.replies if not r[3]]
    assert len(seen) == len(held) == QUESTIONS
    assert all(q in trained for q, *_ in seen)
    assert not any(q in trained for q, *_ in held)
    for q, reply, _, _ in report.replies:
        assert f"you> {q}" in text and f"assistant> {reply}" in text
    assert f"scratchllm chat {out / 'chat'}" in text


def test_chat_demo_run_answers_through_chat(chat_demo, capsys):
    out, _, _ = chat_demo
    question = "What does len do?"
    assert main(["chat", str(out / "chat"), "--prompt", question,
                 "--max-new-tokens", "5"]) == 0  # fmt: skip
    model, template = load_chat_model(out / "chat")
    reply = "".join(iter_reply(model, template, [Message("user", question)], max_new_tokens=5))
    assert capsys.readouterr().out == reply + "\n"


def test_chat_demo_refuses_the_text_demos_steps(capsys):
    assert main(["demo", "--chat", "--max-iters", "5"]) != 0
    assert "--max-iters sets the text demo's steps" in capsys.readouterr().err
