"""`scratchllm train`: text (or a language) in, a trained model in a run directory out.

    scratchllm train                                         # char GPT on the built-in corpus
    scratchllm train --data input.txt --preset shakespeare-char --out runs/shakespeare
    scratchllm train --data markov:order=3 --model mlp --n 4 --max-iters 500 --out runs/mlp
    scratchllm train --config run.toml --lr 2e-3             # a file of settings, a flag wins
    scratchllm train --out runs/shakespeare --resume --max-iters 4000   # continue, go further
    scratchllm train --engine numpy --init-from runs/shakespeare --out runs/np   # in NumPy

The work is ``scratchllm.training.run.train_run`` (with ``--engine numpy``,
``scratchllm.numpy_gpt.run.train_run``: the NumPy GPT, no torch imported); the settings
(their layers, defaults and the TOML file) are ``scratchllm.training.settings``. Every
flag's default is ``argparse.SUPPRESS``, so the namespace holds only what was typed: that
is how a flag given explicitly is told apart from one left at its default.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scratchllm.training.settings import (
    BY_KEY,
    OPTIONS,
    PRESETS,
    SETTINGS_FILE,
    Option,
    help_text,
)

if TYPE_CHECKING:
    from scratchllm.training.run import Run


# -- the parser ---------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (n-gram, MLP, RNN/GRU/LSTM or GPT) on text or a language",
        description="Train a language model and write a run directory: checkpoints (last/, "
        "best/), metrics.jsonl, loss.png and train.toml (its settings). Settings come from "
        "the defaults, then --preset, then --config FILE.toml, then the flags you type (a "
        "flag always wins). --resume continues the run in --out with its saved settings; "
        "flags override them (e.g. a larger --max-iters). --engine numpy trains the GPT "
        "in NumPy alone (no torch); --init-from CKPT starts from a checkpoint's weights "
        "(of either engine).",
        epilog="Example: scratchllm train --data input.txt --preset shakespeare-char "
        "--out runs/shakespeare",
        argument_default=argparse.SUPPRESS,
    )
    add_options(p)
    run = p.add_argument_group("run")
    run.add_argument(
        "--config",
        type=Path,
        metavar="FILE.toml",
        help="TOML file of settings (keys as the flags, e.g. max_iters = 500; tables such "
        "as [model] are allowed); flags given on the command line override it",
    )
    run.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="named settings: " + "; ".join(_preset_text(n) for n in sorted(PRESETS)),
    )
    run.add_argument("--out", metavar="DIR", help="run directory (default: out)")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --out exactly where it stopped, with its saved "
        "settings; flags given now override them (default: start a new run)",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="start a new run in --out even if one is there (default: refuse)",
    )
    p.set_defaults(func=run_command)


GROUP_TITLES = {
    "data": "data and tokenizer",
    "model": "model (a value in [brackets] is the family's default)",
    "train": "training (nanoGPT's names)",
}


def add_options(
    p: argparse.ArgumentParser,
    options: tuple[Option, ...] = OPTIONS,
    titles: dict[str, str] | None = None,
    hidden: tuple[str, ...] = (),
) -> None:
    """Add a flag to ``p`` for every option (but the ``hidden`` keys), grouped under
    ``titles`` (``GROUP_TITLES`` by default), each help text ending with its default."""
    titles = {**GROUP_TITLES, **(titles or {})}
    groups: dict[str, Any] = {}
    for o in options:
        if o.key in hidden:
            continue
        if o.group not in groups:
            groups[o.group] = p.add_argument_group(titles.get(o.group, o.group))
        text = help_text(o)
        shown = text if "(default:" in text else f"{text} (default: {_show(o)})"
        kw: dict[str, Any] = {"help": shown, "dest": o.key}
        if o.type is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = o.type
            if o.choices:
                kw["choices"] = o.choices
            if not o.choices:
                kw["metavar"] = o.metavar or {int: "N", float: "X", str: "S"}[o.type]
        groups[o.group].add_argument(o.flag, **kw)


def _show(o: Option) -> str:
    if o.default is None:
        return "see brackets" if "[" in help_text(o) else "none"
    if o.type is bool:
        return "on" if o.default else "off"
    return str(o.default)


def _preset_text(name: str) -> str:
    return f"{name} (" + ", ".join(f"{k}={v}" for k, v in PRESETS[name].items()) + ")"


def summary_lines(run: Run) -> list[str]:
    """What a finished run prints: the losses, where its files are, what to do next."""
    from scratchllm.training.run import next_commands

    r = run.result
    lines = []
    status = {"completed": "done", "early_stopped": "stopped early", "interrupted": "interrupted"}
    rate = f", {r.tokens_per_s:,.0f} tokens/s" if r.tokens_per_s else ""
    done = status.get(r.status, r.status)
    lines.append(f"\n{done}: {r.steps:,} steps in {r.elapsed_s:.0f} s{rate}")
    if r.final_train_loss is not None:
        lines.append(f"  train loss       {r.final_train_loss:.4f}")
    if r.final_val_loss is not None:
        lines.append(
            f"  validation loss  {r.final_val_loss:.4f}  (perplexity {r.final_perplexity:.2f})"
        )
    if r.best_val_loss is not None and r.best_step is not None:
        lines.append(f"  best validation  {r.best_val_loss:.4f}  at step {r.best_step}")
    for key in ("valid", "unique"):
        if key in r.last_eval:
            lines.append(f"  {key:<16} {r.last_eval[key]:.1%} of sampled strings")
    lines.append("files")
    for label, path in (
        ("checkpoint", r.checkpoint),
        ("best", r.best_checkpoint),
        ("metrics", r.metrics_file),
        ("loss plot", r.plot_file),
        ("settings", run.out / SETTINGS_FILE),
    ):
        if path is not None:
            lines.append(f"  {label:<16} {path}")
    lines.append("next")
    commands = next_commands(run)
    width = max(len(cmd) for cmd, _ in commands)
    lines.extend(f"  {cmd:<{width}}  # {what}" for cmd, what in commands)
    return lines


def run_command(args: argparse.Namespace) -> int:
    from scratchllm.training.run import resolve_run_settings

    out = Path(getattr(args, "out", "out"))
    resume = getattr(args, "resume", False)
    values = {k: v for k, v in vars(args).items() if k in BY_KEY}  # only what was typed
    settings = resolve_run_settings(
        out, values, preset=getattr(args, "preset", None),
        config=getattr(args, "config", None), resume=resume,
    )  # fmt: skip
    if settings["engine"] == "numpy":  # no torch on this path
        from scratchllm.numpy_gpt.run import train_from_settings
    else:
        from scratchllm.training.run import train_from_settings
    run = train_from_settings(settings, out, resume=resume, force=getattr(args, "force", False))
    print("\n".join(summary_lines(run)))
    return 130 if run.result.status == "interrupted" else 0
