"""A fine-tuning run from settings: what every ``scratchllm finetune METHOD`` does.

``finetune_run(out, values, method=...)`` resolves the settings (``finetuning.settings``:
defaults, ``--config FILE.toml``, the flags; on resume the run's ``finetune.toml`` first),
finds where the run starts (``start``: a checkpoint or a fresh model, its template, the
vocabulary grown for missing chat tokens), reads the data (``data``: examples into an
``ExampleDataset``, or a corpus into a ``TokenDataset``), puts LoRA / QLoRA on when asked
(``adapters``), and trains with the ``Trainer``: its one step (per-token weighting across
micro-batches), evaluation, checkpoints and exact resume. A method adds what is its own
through a ``Method``: the table of its settings, and the loss (distillation's teacher);
supervised fine-tuning is the model's own masked loss.

The run directory is a normal one (``sample``, ``eval``, ``inspect``, ``chat`` read it)::

    out/finetune.toml     the resolved settings (--config out/finetune.toml repeats the run)
    out/examples.json     what the examples were (source, counts, a fingerprint for resume)
    out/last/, best/      checkpoints: weights (or the adapter and its base.json), the
                          tokenizer, chat_template.json
    out/merged/           with --merge: the adapters folded into a plain checkpoint
    out/metrics.jsonl, loss.png, data/ (a corpus only)

>>> run = finetune_run("runs/sft", {"base": "runs/pre", "data": "x.jsonl"})  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scratchllm.checkpoint import (
    BASE_FILE,
    DATA_DIR,
    LAST,
    BaseReference,
    read_base_reference,
    recover,
)
from scratchllm.configs.data import DataConfig
from scratchllm.data.chat import TEMPLATE_FILE, ChatTemplate
from scratchllm.data.corpus import language_of
from scratchllm.data.prepare import prepare_data
from scratchllm.data.sft import in_held_out
from scratchllm.evaluation.run import task_prompts
from scratchllm.evaluation.task import evaluate_task
from scratchllm.files import read_json, write_json
from scratchllm.finetuning import adapters
from scratchllm.finetuning.data import (
    DEFAULT_TASK_SAMPLES,
    RunData,
    example_data,
    examples_text,
    is_example_source,
    is_language_task,
    read_examples,
)
from scratchllm.finetuning.settings import (
    LORA,
    SETTINGS_FILE,
    SFT_OPTIONS,
    lora_config,
    nf4_config,
    sft_config,
)
from scratchllm.finetuning.start import (
    Source,
    Start,
    check_model_flags,
    choose_template,
    fresh_start,
    fresh_tokenizer,
    is_family,
    load_source,
    start_from_checkpoint,
)
from scratchllm.models.base import LanguageModel, read_config
from scratchllm.models.nf4 import NF4Linear
from scratchllm.tokenizers import load as load_tokenizer
from scratchllm.training.run import check_out_dir, locked
from scratchllm.training.settings import (
    Option,
    resolve_settings,
    saved_settings,
    train_config,
    write_settings,
)
from scratchllm.training.step import LossFn
from scratchllm.training.trainer import Evaluator, Trainer, TrainResult

EXAMPLES_FILE = "examples.json"  # in the run directory: what the examples were
MERGED = "merged"  # in the run directory, with --merge
# Settings a resumed run keeps (the fingerprint of examples.json checks the data itself).
FIXED = ("base", "data", "template", "train_on_prompt", "teacher", *(o.key for o in LORA[:-1]))


@dataclass
class Method:
    """What a fine-tuning method adds to the common run.

    ``teacher(settings)`` names a model the run learns from (distillation), whose
    tokenizer and template the student takes; ``loss(settings, teacher)`` the training
    loss (``step.LossFn``; None: the model's own masked cross-entropy).
    """

    name: str
    options: tuple[Option, ...] = SFT_OPTIONS
    teacher: Callable[[dict[str, Any]], Source] | None = None
    loss: Callable[[dict[str, Any], Source | None], LossFn | None] | None = None


SFT = Method("sft")


@dataclass
class FinetuneRun:
    """What a run did: its settings, the model trained, its template and the result."""

    settings: dict[str, Any]
    out: Path
    model: LanguageModel
    template: ChatTemplate | None
    result: TrainResult
    merged: Path | None = None
    lines: list[str] = field(default_factory=list)


def finetune_run(
    out: str | Path,
    values: dict[str, Any],
    *,
    method: Method = SFT,
    config: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
    evaluators: list[Evaluator] | None = None,
) -> FinetuneRun:
    """Fine-tune into ``out`` with the settings ``values`` (keys as the flags, snake_case)
    over the TOML file ``config``; ``resume`` continues the run in ``out``. ``evaluators``
    (the Trainer's hooks) replace the default ones. The run holds ``out``'s writer lock
    (``files.run_lock``) from its first file to its last, as ``scratchllm train`` does."""
    out = Path(out)
    verb = f"finetune {method.name}"
    settings = _settings(out, values, method, config, resume, verb)
    with locked(out, say):
        return _finetune_locked(out, settings, method, resume, force, say, evaluators)


def _finetune_locked(
    out: Path,
    settings: dict[str, Any],
    method: Method,
    resume: bool,
    force: bool,
    say: Callable[[str], None],
    evaluators: list[Evaluator] | None,
) -> FinetuneRun:
    check_out_dir(out, resume, force)
    lora, nf4 = lora_config(settings), nf4_config(settings)
    teacher = method.teacher(settings) if method.teacher else None
    lines = [f"teacher   {teacher.path}: {_count(teacher.model)} parameters"] if teacher else []
    examples = is_example_source(settings["data"])
    if resume:
        start, base_ref = _resumed(out)
        data = _data(settings, start, out, _block(settings, start.config, teacher))
        _check_same_examples(out, data)
    else:
        start, data = _start_and_data(settings, out, teacher, examples)
        base_ref = _base_reference(start, lora, nf4)
    lines += start.lines
    families = {start.family, teacher.model.family if teacher else start.family}
    if settings["pack"] and families != {"gpt"}:
        raise ValueError("--pack needs GPT models (their attention is what keeps examples apart)")
    tcfg = train_config(settings, out, hasattr(start.config, "block_size"))
    tcfg = tcfg.replace(block_size=_block(settings, start.config, teacher))
    kw: dict[str, Any] = dict(
        evaluators=evaluators
        if evaluators is not None
        else _evaluators(settings, examples, start.template),
        language=language_of(settings["data"]),  # recorded, so eval and inspect know it
        log=say,
        loss_fn=method.loss(settings, teacher) if method.loss else None,
    )
    rows = None
    if resume:
        found: dict[str, Any] = {}

        def prepare(m: LanguageModel) -> LanguageModel:  # the adapter run's rows train again
            if base_ref is not None:
                found["rows"] = adapters.trainable_rows(m, base_ref.vocab_size)
            return m

        trainer = Trainer.resume(out, data.dataset, tcfg, prepare=prepare, **kw)
        model, rows = trainer.model, found.get("rows")
    else:
        model = start.model
        if lora is not None:
            torch.manual_seed(settings["seed"])  # the adapters' initial A, the same every run
            model, rows = adapters.prepare_lora(model, lora, nf4, start.base_vocab)
        trainer = Trainer(model, data.dataset, tcfg, start.tokenizer, **kw)
    trainer.checkpoint_files = adapters.checkpoint_files(
        model, start.tokenizer, start.template, base_ref
    )
    if rows is not None:
        trainer.callbacks.append(rows)
    lines += [data.line, _training_line(model, lora, nf4, rows, tcfg)]
    for line in lines:
        say(line)
    out.mkdir(parents=True, exist_ok=True)
    write_settings(out / SETTINGS_FILE, settings, method.options, f"finetune {method.name}")
    if data.fingerprint is not None and not resume:
        record = {"source": settings["data"], "fingerprint": data.fingerprint}
        write_json(out / EXAMPLES_FILE, record)
    result = trainer.train()
    merged = None
    if settings["merge"] and result.checkpoint is not None:
        merged = adapters.merge_checkpoint(result.checkpoint, out / MERGED)
    return FinetuneRun(settings, out, model, start.template, result, merged, lines)


def _settings(
    out: Path,
    values: dict[str, Any],
    method: Method,
    config: str | Path | None,
    resume: bool,
    verb: str,
) -> dict[str, Any]:
    """The resolved settings, checked: required keys, what a resume cannot change."""
    saved = saved_settings(out, SETTINGS_FILE, method.options, verb) if resume else None
    if saved is not None:
        changed = [k for k in FIXED if k in values and values[k] != saved.get(k)]
        if changed:
            by_key = {o.key: o for o in method.options}
            flags = ", ".join(by_key[k].flag for k in changed)
            was = ", ".join(repr(saved.get(k)) for k in changed)
            raise ValueError(f"--resume: {flags} cannot change (the run in {out} used {was})")
    settings = resolve_settings(values, config=config, saved=saved, options=method.options)
    for key, flag in (("base", "--from"), ("data", "--data")):
        if not settings.get(key):
            raise ValueError(f"{verb} needs {flag}")
    settings["model"] = settings["base"] if is_family(settings["base"]) else None
    sft_config(settings)  # the row settings, checked now
    if nf4_config(settings) is not None and lora_config(settings) is None:
        raise ValueError("--quantize nf4 holds a frozen base: it needs LoRA adapters (--lora-r)")
    return settings


class TaskAccuracy:
    """An evaluator (``Trainer(evaluators=...)``): exact-match accuracy on ``n`` held-out
    prompts of the run's task, asked through its template (``evaluation.task``)."""

    def __init__(self, task: str, n: int, template: ChatTemplate | None) -> None:
        self.task, self.n = task, n
        self.render, self.stops = task_prompts(template)

    def __call__(self, model: LanguageModel, tokenizer: Any) -> dict[str, float]:
        result = evaluate_task(
            model, tokenizer, self.task, self.n, keep=in_held_out, render=self.render,
            stop_ids=self.stops,
        )  # fmt: skip
        return {"accuracy": result.accuracy}


def _evaluators(
    settings: dict[str, Any], examples: bool, template: ChatTemplate | None
) -> list[Evaluator] | None:
    """At each evaluation, besides the validation loss: for a language task, the accuracy
    on ``validity_samples`` held-out prompts; for a corpus of a language, validity (the
    Trainer's default); for other examples, nothing."""
    if not examples:
        return None
    n = settings["validity_samples"]
    if is_language_task(settings["data"]) and n:
        return [TaskAccuracy(settings["data"], n, template)]
    return []


def _base_reference(start: Start, lora: Any, nf4: Any) -> BaseReference | None:
    """For LoRA: the dense checkpoint the adapters are trained on."""
    if lora is None:
        return None
    if start.checkpoint is None:
        raise ValueError(
            "LoRA adapts a trained model: --from must be a checkpoint (a fresh model's "
            "frozen random weights would be all it could adapt)"
        )
    return BaseReference.of(start.checkpoint, dataclasses.asdict(nf4) if nf4 else None)


# -- pieces ----------------------------------------------------------------------------------


def _start_and_data(
    settings: dict[str, Any], out: Path, teacher: Source | None, examples: bool
) -> tuple[Start, RunData]:
    """The starting model and the run's data, for a new run."""
    base, kind = settings["base"], settings["template"]
    language = is_language_task(settings["data"])
    if examples:
        exs = read_examples(settings)
        if is_family(base):
            if teacher is not None:
                tok, own = teacher.tokenizer, teacher.template
            else:
                tok, own = fresh_tokenizer(settings, examples_text(exs)), None
            template = _template(kind, tok, own, language, teacher)
            start = fresh_start(settings, base, tok, template, settings["seed"])
        else:
            check_model_flags(settings, base)
            source = load_source(base)
            tok = teacher.tokenizer if teacher is not None else source.tokenizer
            own = teacher.template if teacher is not None else source.template
            template = _template(kind, tok, own, language, teacher)
            start = start_from_checkpoint(source, template, student=teacher is not None)
        block = _block(settings, start.config, teacher)
        return start, example_data(exs, template, settings, block)
    # a corpus: the tokenizer is the teacher's, the checkpoint's, or trained on it
    source = None if is_family(base) else load_source(base)
    if source is not None:
        check_model_flags(settings, base)
    given = teacher.tokenizer if teacher is not None else (source and source.tokenizer)
    prepared = _prepare(settings, out, given)
    if source is None:
        start = fresh_start(settings, base, prepared.tokenizer, None, settings["seed"])
    else:
        start = start_from_checkpoint(
            source, None, student=teacher is not None, tokenizer=prepared.tokenizer
        )
    return start, _corpus_data(settings, prepared)


def _template(
    kind: str, tok: Any, own: ChatTemplate | None, language: bool, teacher: Source | None
) -> ChatTemplate:
    if teacher is not None and kind == "chat" and not (own and own.special_tokens):
        raise ValueError(
            "--template chat: the teacher has no chat template, so it never read chat tokens; "
            "distill in its own format (--template auto or plain)"
        )
    return choose_template(kind, tok, own, language)


def _resumed(out: Path) -> tuple[Start, BaseReference | None]:
    """What a resumed run needs before the Trainer loads the model: the tokenizer, the
    template, the model's config, and for an adapter run its base (no weights read)."""
    last = recover(out / LAST)
    template = ChatTemplate.load(last) if (last / TEMPLATE_FILE).is_file() else None
    base_ref = read_base_reference(last) if (last / BASE_FILE).is_file() else None
    cls, config = read_config(last if base_ref is None else base_ref.path)
    tokenizer = load_tokenizer(last)
    config = dataclasses.replace(config, vocab_size=tokenizer.vocab_size)
    start = Start(None, tokenizer, template, None, config.vocab_size, config=config)
    start.family = cls.family
    return start, base_ref


def _data(settings: dict[str, Any], start: Start, out: Path, block_size: int) -> RunData:
    if start.template is not None:
        return example_data(read_examples(settings), start.template, settings, block_size)
    return _corpus_data(settings, _prepare(settings, out, start.tokenizer))


def _prepare(settings: dict[str, Any], out: Path, tokenizer: Any) -> Any:
    dcfg = DataConfig(
        data=settings["data"],
        samples=settings["samples"] or DEFAULT_TASK_SAMPLES,
        data_seed=settings["data_seed"],
        val_fraction=settings["val_fraction"],
        tokenizer=settings["tokenizer"],
        vocab_size=settings["vocab_size"],
    )
    return prepare_data(dcfg, out / DATA_DIR, tokenizer)


def _corpus_data(settings: dict[str, Any], prepared: Any) -> RunData:
    m = prepared.dataset.meta
    line = (
        f"data      {settings['data']} (a corpus: every token trained): {m.n_tokens:,} tokens "
        f"({m.n_train:,} train, {m.n_val:,} validation)"
    )
    return RunData(prepared.dataset, line, None)


def _check_same_examples(out: Path, data: RunData) -> None:
    recorded = read_json(out / EXAMPLES_FILE)
    if data.fingerprint is None or not isinstance(recorded, dict):
        return
    if recorded.get("fingerprint") != data.fingerprint:
        raise ValueError(
            f"--resume: the examples of {recorded.get('source')!r} are not those the run in "
            f"{out} started with (the file or the settings that draw them changed); resuming "
            "would train on other data: start a new run with --out elsewhere"
        )


def _block(settings: dict[str, Any], model_config: Any, teacher: Source | None) -> int:
    """The row length: the training window the settings give (the model's context by
    default), no longer than the teacher's context."""
    tcfg = train_config(settings, "out", hasattr(model_config, "block_size"))
    block = tcfg.resolve_block_size(getattr(model_config, "block_size", None))
    if teacher is not None:
        block = min(block, teacher.model.context_length)
    return block


def _count(model: LanguageModel) -> str:
    return f"{sum(p.numel() for p in model.parameters()):,}"


def _training_line(model, lora, nf4, rows, tcfg) -> str:  # noqa: ANN001
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if rows is not None:  # of the vocabulary rows, only the added tokens' train
        trainable += rows.count - sum(p.numel() for p in rows.params)
    total = sum(p.numel() for p in model.parameters()) + sum(
        m.in_features * m.out_features for m in model.modules() if isinstance(m, NF4Linear)
    )
    what = "full fine-tuning"
    if lora is not None:
        what = f"LoRA r={lora.r}, alpha={lora.alpha:g} on {','.join(lora.targets)}"
        if nf4 is not None:
            what += f", base in NF4{' + double quant' if nf4.double_quant else ''}"
        if rows is not None:
            what += f", plus the {rows.count:,} numbers of the added tokens' rows"
    steps = tcfg.batch_size * tcfg.gradient_accumulation_steps
    return (
        f"training  {what}: {trainable:,} of {total:,} parameters trainable "
        f"({trainable / max(total, 1):.2%}); {tcfg.max_iters:,} steps x {steps} rows, lr "
        f"{tcfg.lr:g}, device {tcfg.device}"
    )


def summary_lines(run: FinetuneRun, verb: str = "sft") -> list[str]:
    """What a finished run prints: the losses, its files, what to do next."""
    r, out = run.result, run.out
    done = {"completed": "done", "early_stopped": "stopped early"}.get(r.status, r.status)
    lines = [f"\n{done}: {r.steps:,} steps in {r.elapsed_s:.0f} s"]
    if r.final_train_loss is not None:
        lines.append(f"  train loss       {r.final_train_loss:.4f}  (per counted token)")
    if r.best_val_loss is not None:
        lines.append(f"  best validation  {r.best_val_loss:.4f}  at step {r.best_step}")
    for key, value in r.last_eval.items():
        if key not in ("val_loss", "val_perplexity") and isinstance(value, float):
            lines.append(f"  {key:<16} {value:.4f}")
    lines.append("files")
    for label, path in (
        ("checkpoint", r.checkpoint),
        ("best", r.best_checkpoint),
        ("merged", run.merged),
        ("metrics", r.metrics_file),
        ("settings", out / SETTINGS_FILE),
    ):
        if path is not None:
            lines.append(f"  {label:<16} {path}")
    lines.append("next")
    data = run.settings["data"]
    if run.template is not None and run.template.special_tokens:
        lines.append(f"  scratchllm chat {out} --prompt 'Hello'")
    if is_language_task(data):
        lines.append(f"  scratchllm eval {out} --task {data}")
    lines.append(f"  scratchllm finetune {verb} --out {out} --resume --max-iters {2 * r.steps}")
    return lines
