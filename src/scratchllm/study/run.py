"""The language-modeling study: every model family on every verifiable language, by numbers.

Which family learns which rule, and with how much context? ``run_study`` trains each model
on each language (a character tokenizer over the language's alphabet, samples from the
language as training text), samples from every trained model, verifies the samples, and
writes ``report.md``, ``results.json`` and ``valid_vs_context.png`` (``report``, ``chart``)::

    DIR/
      report.md                     a table per language, the chart, an automatic reading
      results.json                  one row per (language, model)
      valid_vs_context.png          valid % of each model on each language (a grid)
      study.json                    the settings the study ran with
      sticky:k=2/                   one directory per language spec (``specs.dir_name``)
        data/                       the training samples as a TokenDataset (+ tokenizer)
        bigram/  gpt/ ...           one Trainer run directory per model: last/, best/,
                                    metrics.jsonl, loss.png, plus run.json and result.json

>>> from scratchllm.study import StudyConfig, run_study                  # doctest: +SKIP
>>> result = run_study(StudyConfig(["sticky:k=2", "markov:order=2"],
...                                ["bigram", "trigram", "gpt"], budget="tiny", out_dir="st"))
>>> [(r["language"], r["model"], r["valid"]) for r in result.rows]      # doctest: +SKIP

Models are named by specs (``specs``) and sized by a budget (``budgets``). Every model is
sampled at temperature 1 through ``generation.generate`` (``evaluation.evaluate_language``,
the same sampler ``scratchllm sample`` runs), from the end-of-sample marker, and each
sample is verified.

**Parallel runs and resuming.** Runs go to ``jobs`` worker processes (the spawn context;
each gets ``cores // jobs`` torch threads), longest first, each with its own progress bar
(``tqdm(position=i)``). A run whose checkpoint and ``result.json`` exist, made with the same
language, model, budget and seed, is skipped; a run cut off mid-training continues from its
``last/`` checkpoint (``Trainer.resume``). So re-running a stopped study finishes it.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scratchllm.checkpoint import LAST, STATE_JSON
from scratchllm.configs.data import DEFAULT_VAL_FRACTION
from scratchllm.data.languages import Language
from scratchllm.device import resolve_device
from scratchllm.files import output_directory, read_json, write_json
from scratchllm.models.base import LanguageModel
from scratchllm.study.budgets import Budget, get_budget
from scratchllm.study.specs import build_model, dir_name, parse_model_spec

STUDY_FORMAT = 1
RUN_FILE = "run.json"  # what a run is: specs, resolved model config, budget, seed
RESULT_FILE = "result.json"  # its measured row, written last
DATA_DIR = "data"
SETTINGS_FILE = "study.json"
HELDOUT_SEED_OFFSET = 1_000_003  # held-out samples come from their own generator

# -- the study ---------------------------------------------------------------------------------


@dataclass
class StudyConfig:
    """What to study: languages x models under one budget, written to ``out_dir``."""

    languages: Sequence[str]  # language specs, e.g. "sticky:k=2"
    models: Sequence[str]  # model specs, e.g. "bigram", "gpt:n_layer=1"
    budget: str = "tiny"  # a key of BUDGETS
    out_dir: str | Path = "study"
    seed: int = 0  # seeds the samples, initialisation, data order and sampling
    jobs: int | None = None  # worker processes; None: min(cores, runs); 1: in this process
    threads: int | None = None  # torch threads per worker; None: cores // jobs
    progress: bool = True  # one tqdm bar per run
    device: str = "cpu"  # where models train ("auto" picks cuda / mps when present)

    def __post_init__(self) -> None:
        for name in ("languages", "models"):
            value = getattr(self, name)
            if isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty list of specs, got {value!r}")
        get_budget(self.budget)
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed ({self.seed!r}) must be an integer >= 0")
        for name in ("jobs", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} ({value!r}) must be a positive integer (or None: auto)")
        resolve_device(self.device)  # up front, not run by run


@dataclass(frozen=True)
class RunTask:
    """One (language, model) run, everything a worker process needs (picklable)."""

    position: int  # its progress bar's line
    language: str  # spec as typed
    model: str  # spec as typed
    run_dir: str
    data_dir: str
    budget: Budget
    seed: int
    key: dict[str, Any]  # what makes a result reusable (run.json)
    progress: bool
    device: str


@dataclass
class StudyResult:
    rows: list[dict[str, Any]]  # one per run, in (language, model) order
    out_dir: Path
    report: Path
    results: Path
    chart: Path | None
    skipped: list[str] = field(default_factory=list)  # "language / model" reused from disk
    failed: list[str] = field(default_factory=list)


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def plan_study(config: StudyConfig) -> list[RunTask]:
    """Check every spec and lay out the runs; build each language's training data once.

    Raises ValueError for a bad spec before anything is trained.
    """
    from scratchllm.data.languages import get

    budget = get_budget(config.budget)
    out = Path(config.out_dir)
    languages = [(spec.strip(), get(spec)) for spec in config.languages]
    models = [parse_model_spec(m) for m in config.models]
    _no_duplicates([lang.spec for _, lang in languages], [s for s, _ in languages], "language")
    _no_duplicates([(m.family, m.values) for m in models], [m.text for m in models], "model")
    tasks = []
    for typed, lang in languages:
        lang_dir = out / dir_name(typed)
        data_dir = prepare_language_data(lang, lang_dir / DATA_DIR, budget, config.seed)
        for spec in models:
            model = build_model(spec, len(lang.alphabet), budget)  # fails early on bad settings
            key = {
                "format": STUDY_FORMAT,
                "language": lang.spec,
                "model": {"family": model.family, "config": dataclasses.asdict(model.config)},
                "budget": dataclasses.asdict(budget),
                "seed": config.seed,
            }
            tasks.append(
                RunTask(
                    position=len(tasks),
                    language=typed,
                    model=spec.text,
                    run_dir=str(lang_dir / dir_name(spec.text)),
                    data_dir=str(data_dir),
                    budget=budget,
                    seed=config.seed,
                    key=key,
                    progress=config.progress,
                    device=config.device,
                )
            )
    return tasks


def _no_duplicates(keys: list[Any], texts: list[str], what: str) -> None:
    seen: dict[Any, str] = {}
    for key, text in zip(keys, texts):
        if key in seen:
            raise ValueError(
                f"{what} specs {seen[key]!r} and {text!r} name the same {what}; give it once"
            )
        seen[key] = text


def prepare_language_data(lang: Language, directory: Path, budget: Budget, seed: int) -> Path:
    """The language's training samples as a TokenDataset in ``directory`` (reused when it
    was made from the same language, sample count and seed)."""
    from scratchllm.data import TokenDataset
    from scratchllm.tokenizers import CharTokenizer

    key = {"language": lang.spec, "samples": budget.train_samples, "seed": seed}
    stamp = directory / "study_data.json"
    if stamp.is_file() and read_json(stamp) == key and (directory / "meta.json").is_file():
        return directory
    tokenizer = CharTokenizer(lang.alphabet)  # every symbol, END included
    samples = lang.samples(budget.train_samples, seed=seed)
    TokenDataset.from_samples(
        samples, tokenizer, directory, val_fraction=DEFAULT_VAL_FRACTION, source=lang.spec
    )
    write_json(stamp, key)
    return directory


def run_study(config: StudyConfig, log: Callable[[str], None] | None = None) -> StudyResult:
    """Train, sample and verify every (language, model) pair; write the report.

    ``log`` receives one line per finished or skipped run (default: print to stderr).
    """
    from scratchllm.study.outputs import write_outputs

    say = log or _stderr
    out = output_directory(config.out_dir)
    tasks = plan_study(config)
    write_json(out / SETTINGS_FILE, _settings(config))
    rows: dict[int, dict[str, Any]] = {}
    skipped, todo = [], []
    for task in tasks:
        done = finished_row(task)
        if done is not None:
            rows[task.position] = done
            skipped.append(f"{task.language} / {task.model}")
            say(f"{task.language} / {task.model}: done earlier, kept ({RESULT_FILE})")
        else:
            todo.append(task)
    todo.sort(key=_expected_cost, reverse=True)  # longest first: better packing on the workers
    n_cpu = cores()
    jobs = max(1, min(config.jobs or n_cpu, len(todo) or 1))
    threads = config.threads or max(1, n_cpu // jobs)
    for row in _execute(todo, jobs, threads, config.threads):
        rows[row["position"]] = row
        say(_one_line(row))
    ordered = [rows[t.position] for t in tasks]
    paths = write_outputs(ordered, out, _settings(config))
    failed = [f"{r['language']} / {r['model']}: {r['error']}" for r in ordered if r.get("error")]
    return StudyResult(ordered, out, *paths, skipped=skipped, failed=failed)


def _execute(tasks: list[RunTask], jobs: int, threads: int, local_threads: int | None):  # noqa: ANN202
    """Yield each task's row as it finishes: in this process for one job (with
    ``local_threads`` torch threads if given, else as set), else in a pool of workers with
    ``threads`` each."""
    if not tasks:
        return
    if jobs == 1:
        import torch

        before = torch.get_num_threads()
        if local_threads:
            torch.set_num_threads(local_threads)
        try:
            for task in tasks:
                yield run_one(task)
        finally:
            torch.set_num_threads(before)
        return
    context = multiprocessing.get_context("spawn")  # fork + torch threads can deadlock
    with futures.ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_init_worker, initargs=(threads,)
    ) as pool:
        pending = [pool.submit(run_one, task) for task in tasks]
        try:
            for done in futures.as_completed(pending):
                yield done.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _expected_cost(task: RunTask) -> int:
    family = task.key["model"]["family"]
    return 0 if family == "ngram" else task.budget.max_iters


def finished_row(task: RunTask) -> dict[str, Any] | None:
    """The saved row of a run finished earlier with the same settings, else None."""
    run_dir = Path(task.run_dir)
    saved = read_json(run_dir / RESULT_FILE)
    last = run_dir / LAST
    if not isinstance(saved, dict) or saved.get("key") != task.key:
        return None
    if not ((last / "config.json").is_file() and (last / "model.safetensors").is_file()):
        return None
    row = dict(saved["row"])
    row["position"] = task.position
    row["language"], row["model"] = task.language, task.model  # as typed this time
    return row


# -- one run (in a worker process) -------------------------------------------------------------


def run_one(task: RunTask) -> dict[str, Any]:
    """Train (or resume), sample, verify and measure one model on one language.

    Returns its row (also written to ``run_dir/result.json``). An error in training or
    measuring is returned as a row with ``error`` set, so one bad run does not stop a study.
    """
    try:
        return _run_one(task)
    except Exception as e:  # noqa: BLE001 (reported in the row and the report)
        row = _base_row(task, None)
        row["error"] = f"{type(e).__name__}: {e}"
        return row


def _run_one(task: RunTask) -> dict[str, Any]:
    import torch

    from scratchllm.data import TokenDataset
    from scratchllm.data.languages import get, split_samples
    from scratchllm.evaluation.validity import evaluate_language
    from scratchllm.training import TrainConfig, Trainer

    budget, run_dir = task.budget, Path(task.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lang = get(task.language)
    data = TokenDataset(task.data_dir)
    tokenizer = data.tokenizer()
    model_block = task.key["model"]["config"].get("block_size", budget.block_size)
    cfg = TrainConfig(
        max_iters=budget.max_iters,
        batch_size=budget.batch_size,
        block_size=min(budget.block_size, model_block),  # a GPT may be given a shorter one
        lr=budget.lr,
        min_lr=budget.min_lr,
        warmup_iters=budget.warmup_iters,
        weight_decay=budget.weight_decay,
        eval_interval=max(1, budget.max_iters // 4),  # a checkpoint each quarter: resumable
        eval_iters=10,
        log_interval=25,
        validity_samples=0,  # measured once, thoroughly, after training
        seed=task.seed,
        device=task.device,
        out_dir=str(run_dir),
        progress=False,  # our own bar, on its own line
    )
    notes: list[str] = []
    bar = _progress_bar(task, budget.max_iters)
    callbacks = [] if bar is None else [_bar_callback(bar)]
    resumable = (run_dir / LAST / STATE_JSON).is_file() and read_json(run_dir / RUN_FILE) == {
        "key": task.key
    }
    if resumable:
        trainer = Trainer.resume(run_dir, data, cfg, callbacks=callbacks, log=notes.append)
    else:
        write_json(run_dir / RUN_FILE, {"key": task.key})
        model = build_model(parse_model_spec(task.model), tokenizer.vocab_size, budget)
        torch.manual_seed(task.seed)  # the width search drew weights; initialise afresh
        model = type(model)(model.config)
        trainer = Trainer(model, data, cfg, tokenizer, callbacks=callbacks, log=notes.append)
    if bar is not None:
        bar.n = trainer.step if resumable else 0
    try:
        result = trainer.train()
    finally:
        if bar is not None:
            bar.close()
    if result.status == "interrupted":
        # last/ holds the run so far and there is no result.json: running again resumes it
        raise KeyboardInterrupt(f"{task.language} / {task.model} stopped at step {result.steps}")
    model = trainer.model
    t0 = time.perf_counter()
    train_text = tokenizer.decode(data.split_tokens("train").tolist())
    heldout = lang.samples(budget.heldout_samples, seed=task.seed + HELDOUT_SEED_OFFSET)
    report = evaluate_language(
        model,
        tokenizer,
        lang,
        n_samples=budget.eval_samples,
        temperature=1.0,
        seed=task.seed,
        train_samples=split_samples(train_text),
        heldout=heldout,
    )
    row = _base_row(task, model)
    row.update(
        train_s=round(result.elapsed_s, 3),
        eval_s=round(time.perf_counter() - t0, 3),
        steps=result.steps,
        resumed=resumable,
        val_loss=report.val_loss,
        perplexity=report.perplexity,
        samples=report.n_samples,
        valid=100.0 * report.valid,
        unique=100.0 * report.unique,
        novel=None if report.novel is None else 100.0 * report.novel,
        kl=report.kl,
        mean_length=report.mean_length,
        invalid_examples=report.invalid_examples[:3],
        notes=notes,
    )
    write_json(run_dir / RESULT_FILE, {"key": task.key, "row": row})
    return row


def _base_row(task: RunTask, model: LanguageModel | None) -> dict[str, Any]:
    from scratchllm.data.languages import get

    lang = get(task.language)
    row: dict[str, Any] = {
        "position": task.position,
        "language": task.language,
        "language_spec": lang.spec,
        "context_needed": lang.context_needed,
        "model": task.model,
        "family": task.key["model"]["family"],
        "checkpoint": str(Path(task.run_dir) / LAST),
        "budget": task.budget.name,
        "seed": task.seed,
        "error": None,
    }
    if model is not None:
        counting = model.family == "ngram"
        row.update(
            params=int(model.counts.numel()) if counting else model.num_parameters(),
            params_kind="counts" if counting else "weights",
            context=model.context_length,
            # a recurrent state can carry any amount of the past; its window is only how
            # far back training taught it to look
            context_kind="state" if model.family == "rnn" else "window",
            config=dataclasses.asdict(model.config),
        )
    return row


def _progress_bar(task: RunTask, total: int):  # noqa: ANN202
    if not task.progress:
        return None
    import sys

    from tqdm import tqdm

    return tqdm(
        total=total,
        position=task.position,
        desc=f"{task.language} {task.model}",
        unit="step",
        leave=True,
        dynamic_ncols=True,
        file=sys.stderr,
    )


def _bar_callback(bar: Any) -> Callable[[Any], None]:
    def update(trainer: Any) -> None:
        bar.update(trainer.step - bar.n)
        if trainer.step % 50 == 0 and trainer.last_loss is not None:
            bar.set_postfix(loss=f"{float(trainer.last_loss):.3f}", refresh=False)

    return update


def _one_line(row: dict[str, Any]) -> str:
    name = f"{row['language']} / {row['model']}"
    if row.get("error"):
        return f"{name}: FAILED: {row['error']}"
    kl = "-" if row["kl"] is None else f"{row['kl']:.4f}"
    return (
        f"{name}: {row['valid']:.1f} % valid, val loss {row['val_loss']:.4f}, KL {kl}, "
        f"{row['train_s']:.1f} s"
    )


def _settings(config: StudyConfig) -> dict[str, Any]:
    return {
        "languages": list(config.languages),
        "models": list(config.models),
        "budget": dataclasses.asdict(get_budget(config.budget)),
        "seed": config.seed,
        "device": config.device,
        "out_dir": str(config.out_dir),
    }


def _stderr(line: str) -> None:
    import sys

    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)
