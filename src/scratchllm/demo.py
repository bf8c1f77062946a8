"""The demo: train a small character-level GPT on this machine and watch it write.

``scratchllm demo`` (or ``make demo``) runs ``run_demo``: the built-in corpus (the
docstrings of Python's standard library: every machine with Python has it, so nothing is
downloaded), a character tokenizer, a 4-layer GPT trained for 1,000 steps on the CPU
(about two minutes on two cores), then samples at a few temperatures. It goes through
the same code as ``scratchllm train --preset demo``, so the run directory it leaves can be
sampled, evaluated and resumed like any other. Like ``train``, it refuses to replace a run
already in ``out`` unless told to (``force``), and holds the directory's lock while it works.

>>> report = run_demo(out="runs/demo")        # doctest: +SKIP
>>> report.val_loss, report.samples["greedy"] # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scratchllm.files import run_lock, write_text
from scratchllm.training.settings import SETTINGS_FILE

PROMPT = "Return the"
MARKER = "# made by `scratchllm demo`"
# (label, temperature): 0 is greedy, the most likely character every time.
TEMPERATURES = (("greedy", 0.0), ("temperature 0.5", 0.5), ("temperature 0.8", 0.8),
                ("temperature 1.2", 1.2))  # fmt: skip
QUICK = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=4, max_iters=20,
             warmup_iters=2, eval_interval=10, eval_iters=2, log_interval=5)  # fmt: skip


@dataclass
class DemoReport:
    out: Path
    val_loss: float | None
    steps: int
    seconds: float
    samples: dict[str, str] = field(default_factory=dict)  # label -> generated text


def run_demo(
    out: str | Path = "runs/demo",
    max_iters: int | None = None,
    seed: int = 1337,
    quick: bool = False,
    new_tokens: int | None = None,
    say: Callable[[str], None] = print,
    force: bool = False,
) -> DemoReport:
    """Train the demo model into ``out`` and print what happens; see the module docstring.

    ``quick`` shrinks everything (a 1-layer model, 20 steps) for tests; ``force`` replaces
    a run already in ``out`` (without it, that is an error).
    """
    with run_lock(out):  # from the first file to the marker, as one writer
        return _run_demo(Path(out), max_iters, seed, quick, new_tokens, say, force)


def _run_demo(
    out: Path,
    max_iters: int | None,
    seed: int,
    quick: bool,
    new_tokens: int | None,
    say: Callable[[str], None],
    force: bool,
) -> DemoReport:
    from scratchllm.training.run import next_commands, train_from_settings
    from scratchllm.training.settings import resolve_settings

    t0 = time.perf_counter()
    flags: dict = {"data": "stdlib-docs", "seed": seed, "device": "cpu"}
    if quick:
        flags.update(QUICK)
    if max_iters is not None:
        flags["max_iters"] = max_iters
        flags["warmup_iters"] = min(flags.get("warmup_iters", 50), max_iters)
    settings = resolve_settings(flags, preset="demo")
    new_tokens = new_tokens or (40 if quick else 240)

    say("scratchllm demo: a GPT learns to write like Python's documentation, from scratch.\n")
    say("The text is the docstrings of Python's standard library (on every machine with")
    say("Python, so nothing is downloaded). The model reads one character at a time and")
    say("learns to predict the next one.\n")
    run = train_from_settings(settings, out, force=force, say=lambda s: say("  " + s))
    _mark(out)
    r = run.result
    tok = run.data.tokenizer
    uniform = math.log(tok.vocab_size)
    say("")
    if r.final_val_loss is not None:
        say(
            f"validation loss  {r.final_val_loss:.3f} nats per character on held-out text "
            f"(perplexity {r.final_perplexity:.1f})"
        )
        say(
            f"                 guessing uniformly among the {tok.vocab_size} characters "
            f"would score {uniform:.3f}"
        )
    say(f"\nSamples, each continuing the prompt {PROMPT!r} ({new_tokens} characters):")
    say("lower temperature = safer, more repetitive; higher = more varied, more mistakes.\n")
    samples = _samples(run.model, tok, new_tokens, seed)
    for label, text in samples.items():
        say(f"--- {label} " + "-" * max(0, 60 - len(label)))
        say(PROMPT + text)
        say("")
    seconds = time.perf_counter() - t0
    say(f"The run directory {out}/ holds everything (all of this took {seconds:.0f} s):")
    for name, what in (
        ("last/", "the checkpoint: weights, tokenizer, optimizer state (for --resume)"),
        ("best/", "the weights with the lowest validation loss"),
        ("metrics.jsonl", "loss, learning rate and speed, one JSON line per logged step"),
        ("loss.png", "the training and validation loss curves"),
        ("train.toml", "the settings, reusable with scratchllm train --config"),
    ):
        if (out / name.rstrip("/")).exists():
            say(f"  {out / name!s:<24} {what}")
    say("\nWhat next:")
    further = [c for c in next_commands(run) if " train " in c[0]]
    for cmd, what in (
        (f"scratchllm sample {out} --prompt 'Return a'", "more text (--stream, --top-k ...)"),
        (f"scratchllm sample {out}", "type your own prompts"),
        *further,
        (f"scratchllm eval {out}/best --data stdlib-docs --split val", "measure perplexity"),
    ):
        say(f"  {cmd:<60} # {what}")
    return DemoReport(out, r.final_val_loss, r.steps, seconds, samples)


def _samples(model, tokenizer, new_tokens: int, seed: int) -> dict[str, str]:  # noqa: ANN001
    from scratchllm.generation import generate

    ids = tokenizer.encode(PROMPT)
    model.eval()
    texts = {}
    for label, temperature in TEMPERATURES:
        out = generate(model, [ids], new_tokens, temperature=temperature, seed=seed)
        texts[label] = tokenizer.decode(out[0, len(ids) :].tolist())
    return texts


def _mark(out: Path) -> None:
    path = out / SETTINGS_FILE
    write_text(path, MARKER + "\n" + path.read_text(encoding="utf-8"))


# -- the chat demo -------------------------------------------------------------------------

CHAT_BASE = dict(  # a GPT whose context holds most question + answer pairs (85 % fit in 128)
    model="gpt", tokenizer="char", n_layer=4, n_head=4, n_embd=128, block_size=128,
    batch_size=8, max_iters=800, dropout=0.0, lr=2e-3, min_lr=1e-4, warmup_iters=50,
    eval_interval=400, eval_iters=10,
)  # fmt: skip
CHAT_SFT = dict(batch_size=16, max_iters=500, lr=1e-3, min_lr=1e-4, warmup_iters=20,
                eval_interval=250, eval_iters=10)  # fmt: skip
CHAT_QUICK = dict(n_layer=1, n_head=2, n_embd=32, block_size=128, batch_size=4, max_iters=10,
                  warmup_iters=2, eval_interval=10, eval_iters=2)  # fmt: skip
QUESTIONS = 3  # asked from the training set, and as many held out


@dataclass
class ChatDemoReport:
    out: Path
    seconds: float
    pretrain_seconds: float
    sft_seconds: float
    replies: list[tuple[str, str, str, bool]]  # (question, reply, docstring, trained on it)


def run_chat_demo(
    out: str | Path = "runs/chat-demo",
    seed: int = 1337,
    quick: bool = False,
    say: Callable[[str], None] = print,
) -> ChatDemoReport:
    """From nothing to ``scratchllm chat`` on this machine, no download: pretrain a char GPT
    on the standard library's docstrings (``out/base``), write the instruction pairs that
    fit its context as JSONL (``out/instructions.jsonl``), fine-tune it on them in the chat
    template (``out/chat``), and ask it questions it was trained on and held-out ones."""
    import json

    from scratchllm.data.chat import Message
    from scratchllm.data.sft import load_examples
    from scratchllm.finetuning.sft import sft_run
    from scratchllm.textgen import iter_reply, load_chat_model
    from scratchllm.training.run import train_from_settings
    from scratchllm.training.settings import resolve_settings

    t0 = time.perf_counter()
    out = Path(out)
    flags: dict = {"data": "stdlib-docs", "seed": seed, "device": "cpu", "quiet": True}
    base = {**CHAT_BASE, **(CHAT_QUICK if quick else {})}
    say("scratchllm demo --chat: pretrain a GPT on Python's docstrings, then teach it to answer.")
    say("\n1. pretraining on stdlib-docs (the standard library's docstrings)")
    run = train_from_settings(
        resolve_settings({**base, **flags}), out / "base", force=True, say=lambda s: say("  " + s)
    )
    t1 = time.perf_counter()
    block = base["block_size"]
    tok = run.data.tokenizer
    pairs = [
        e
        for e in load_examples("stdlib-instructions")
        if len(tok.encode(e.prompt[0].content + e.completion)) + 4 <= block + 1
    ]
    lines = [json.dumps({"prompt": e.prompt[0].content, "completion": e.completion}) for e in pairs]
    write_text(out / "instructions.jsonl", "\n".join(lines) + "\n")
    say(f"\n2. fine-tuning on the {len(pairs):,} instruction pairs that fit {block} tokens")
    sft = {
        **CHAT_SFT,
        **({"max_iters": 10, "eval_interval": 10, "warmup_iters": 2} if quick else {}),
    }
    values = {**flags, **sft, "base": str(out / "base"), "template": "chat",
              "data": str(out / "instructions.jsonl")}  # fmt: skip
    sft_run(out / "chat", values, force=True, say=lambda s: say("  " + s))
    t2 = time.perf_counter()
    model, template = load_chat_model(out / "chat")
    trained = pairs[:QUESTIONS]
    held = load_examples("stdlib-instructions", split="test", seed=seed)[:QUESTIONS]
    say("\n3. asking it (greedy), through its chat template:")
    replies = []
    for example, seen in [(e, True) for e in trained] + [(e, False) for e in held]:
        q = example.prompt[0].content
        text = "".join(iter_reply(model, template, [Message("user", q)], max_new_tokens=120))
        replies.append((q, text, example.completion, seen))
        say(f"  you> {q}   ({'trained on' if seen else 'held out'})")
        say(f"  assistant> {text}")
        say(f"  (docstring: {example.completion})")
    seconds = time.perf_counter() - t0
    say(f"\nAll of it took {seconds:.0f} s (pretraining {t1 - t0:.0f} s, fine-tuning "
        f"{t2 - t1:.0f} s). Go on with:")  # fmt: skip
    say(f"  scratchllm chat {out / 'chat'}")
    return ChatDemoReport(out, seconds, t1 - t0, t2 - t1, replies)
