"""A saved model measured on text or a language: what ``scratchllm eval`` does.

``evaluate_checkpoint(path, data)`` reads the checkpoint (``scratchllm.checkpoint``: a run
directory's ``last/``, or ``best/``, or a checkpoint directory) and measures it on ``data``:

- a text file or ``stdlib-docs``: loss, perplexity, bits per token / character / byte
  (``evaluate_text``), over all of it or (``split="val"``) over its last fraction of
  tokens, the fraction the run's own dataset held out (its ``meta.json``; 0.1 when the
  checkpoint has no dataset beside it);
- a language spec: the same on fresh held-out samples, plus valid / unique / novel / KL
  (``evaluate_language``).

``evaluate_task_checkpoint(path, task)`` scores it on held-out prompts of a task
(``evaluation.task.evaluate_task``): through the checkpoint's chat template when it was
chat-tuned (``task_prompts``), and only on prompts in the held-out tenth of
``data.sft.in_held_out``, which fine-tuning on the same task never trains on.

>>> evaluate_checkpoint("runs/trigram", "markov:order=2", samples=200)["valid"]  # doctest: +SKIP
0.995
>>> evaluate_task_checkpoint("runs/add-sft", "addition:digits=3").accuracy  # doctest: +SKIP
0.91
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from scratchllm.checkpoint import BEST, DATA_DIR, LAST, load_checkpoint, run_directory
from scratchllm.configs.data import DEFAULT_VAL_FRACTION
from scratchllm.data.chat import TEMPLATE_FILE, ChatTemplate
from scratchllm.data.corpus import Corpus, resolve_data
from scratchllm.data.dataset import TokenDataset, validation_start
from scratchllm.data.languages import Language, split_samples
from scratchllm.data.sft import in_held_out
from scratchllm.evaluation.perplexity import evaluate_text
from scratchllm.evaluation.task import EVAL_SEED, PromptRenderer, TaskResult, evaluate_task
from scratchllm.evaluation.validity import evaluate_language
from scratchllm.models.base import LanguageModel
from scratchllm.tokenizers.base import Tokenizer
from scratchllm.tokenizers.char import UnknownCharacterError

SPLITS = ("all", "val")


class LanguageMismatchWarning(UserWarning):
    """The model was not trained on the language it is measured on."""


# The order a language result lists its main figures in (the rest follow).
_LANGUAGE_ORDER = ("val_loss", "perplexity", "bits_per_char", "valid", "unique", "novel", "kl")


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str,
    *,
    best: bool = False,
    split: str = "all",
    samples: int = 1000,
    temperature: float = 1.0,
    seed: int = 0,
    heldout: int = 200,
    train_data: str | None = None,
    train_samples: int = 10_000,
    train_seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """The measurements of the checkpoint at ``checkpoint`` on ``data`` (module docstring),
    as one flat dict that starts with ``checkpoint`` and ``data``.

    For a language: ``samples`` strings are sampled at ``temperature`` with ``seed``, and
    ``heldout`` fresh samples (seed + 1) give the loss and the KL; ``train_data`` (a file
    of samples or the spec with ``train_samples`` and ``train_seed``) gives the novelty.
    """
    for name, value in (
        ("samples", samples),
        ("heldout", heldout),
        ("train_samples", train_samples),
    ):
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    ckpt = load_checkpoint(checkpoint, device=device, which=BEST if best else LAST)
    model, tokenizer = ckpt.model.eval(), ckpt.tokenizer
    corpus = resolve_data(data, n_samples=heldout, seed=seed + 1)
    if corpus.language is not None:
        problem = language_mismatch(tokenizer, corpus.language, trained_language(ckpt.path))
        if problem:  # said before the sampling, which takes minutes
            warnings.warn(problem, LanguageMismatchWarning, stacklevel=2)
        train = None
        if train_data is not None:
            given = resolve_data(train_data, n_samples=train_samples, seed=train_seed)
            train = given.samples if given.samples is not None else split_samples(given.text)
        result = _on_language(model, tokenizer, corpus, samples, temperature, seed, train)
    else:
        fraction = val_fraction_of(ckpt.path) if split == "val" else None
        result = _on_text(model, tokenizer, corpus.text, fraction)
    return {"checkpoint": str(checkpoint), "data": data, **result}


def val_fraction_of(checkpoint: str | Path) -> float:
    """The validation fraction of the dataset a checkpoint was trained on: its run
    directory's ``data/meta.json``, or ``DEFAULT_VAL_FRACTION`` when there is none."""
    directory = run_directory(checkpoint) / DATA_DIR
    if not (directory / "meta.json").is_file():
        return DEFAULT_VAL_FRACTION
    return TokenDataset(directory).meta.val_fraction


def trained_language(checkpoint: str | Path) -> str | None:
    """The language spec a checkpoint was trained on, as its trainer state records it
    (``best/`` has none: its run's ``last/`` is read); "" for text, None when unknown."""
    import json

    for directory in (Path(checkpoint), run_directory(checkpoint) / LAST):
        try:
            state = json.loads((directory / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and "language" in state:
            return state["language"] or ""
    return None


def language_mismatch(tokenizer: Tokenizer, language: Language, trained: str | None) -> str | None:
    """Why measuring a model with ``tokenizer`` (trained on the language spec ``trained``:
    "" for text, None unknown) on ``language`` measures a mismatch, or None.

    The tokenizer's alphabet against the language's: tokens that write symbols outside it
    mean the model learned something else (a text model has a hundred such tokens)."""
    alphabet = set(language.alphabet)
    specials = set(getattr(tokenizer, "special_tokens", {}).values())
    unk = getattr(tokenizer, "unk_id", None)
    outside, written = [], set()
    for i in range(tokenizer.vocab_size):
        if i in specials or i == unk:
            continue
        piece = tokenizer.decode([i])
        written.update(piece)
        if piece and not set(piece) <= alphabet:
            outside.append(piece)
    if trained:
        was = f"was trained on {trained}"
    elif trained == "":
        was = "was trained on text, not a language"
    else:
        was = "was not trained on it"
    unwritable = sorted(alphabet - written)
    if unwritable and unk is None:
        raise ValueError(
            f"the model's tokenizer has no token for {', '.join(map(repr, unwritable))} of "
            f"{language.spec}'s alphabet {language.alphabet!r}, so it cannot be measured on "
            f"it: the model {was}. Pass the language the model learned"
        )
    if trained and get_spec(trained) == language.spec:
        return None
    if trained is None and not outside:
        return None
    shown = ", ".join(repr(p) for p in outside[:5]) + (" ..." if len(outside) > 5 else "")
    extra = (
        f"; {len(outside)} of its tokenizer's {tokenizer.vocab_size} tokens ({shown}) write "
        f"symbols outside {language.spec}'s alphabet {language.alphabet!r}"
        if outside
        else ""
    )
    return (
        f"the model {was}{extra}: its samples will mostly be invalid, and the figures "
        f"measure that mismatch. Pass the language the model learned, or a model trained "
        f"on {language.spec}"
    )


def get_spec(spec: str) -> str | None:
    """The canonical form of a language spec, or None when it is no valid spec."""
    from scratchllm.data.languages import get

    try:
        return get(spec).spec
    except ValueError:
        return None


def _on_text(
    model: LanguageModel, tokenizer: Tokenizer, text: str, val_fraction: float | None
) -> dict[str, Any]:
    head: dict[str, Any] = {}
    if val_fraction is not None:
        ids = tokenizer.encode(text)
        text = tokenizer.decode(ids[validation_start(len(ids), val_fraction, []) :])
        head["val_fraction"] = val_fraction
    try:
        report = evaluate_text(model, tokenizer, text).to_dict()
    except UnknownCharacterError as e:
        raise ValueError(
            f"the text's {e.what} is not one of the {e.vocab_size} tokens of the model's "
            "tokenizer: measure the model on text like what it was trained on"
        ) from None
    return {"val_loss": report.pop("loss"), **report, **head}


def _on_language(
    model: LanguageModel,
    tokenizer: Tokenizer,
    corpus: Corpus,
    samples: int,
    temperature: float,
    seed: int,
    train: list[str] | None,
) -> dict[str, Any]:
    report = evaluate_language(
        model,
        tokenizer,
        corpus.language,
        n_samples=samples,
        temperature=temperature,
        seed=seed,
        train_samples=train,
        heldout=corpus.samples,
    ).to_dict()
    return {k: report.pop(k) for k in _LANGUAGE_ORDER} | report


def task_prompts(template: ChatTemplate | None) -> tuple[PromptRenderer | None, list[int]]:
    """``(render, stop_ids)`` for ``evaluate_task`` on a model with ``template``: a chat
    template renders the prompt as a user turn and stops at its end token; a plain template
    (or none) keeps the task's own default (END, then the prompt)."""
    if template is None or not template.special_tokens:
        return None, []
    return (lambda p: template.render_prompt([{"role": "user", "content": p}])), [template.end_id]


def evaluate_task_checkpoint(
    checkpoint: str | Path,
    task: str,
    n: int = 200,
    *,
    best: bool = False,
    temperature: float = 0.0,
    k: int = 1,
    seed: int = EVAL_SEED,
    sample_seed: int = 0,
    device: str = "cpu",
) -> TaskResult:
    """The checkpoint at ``checkpoint`` scored on ``n`` held-out prompts of ``task`` (greedy
    unless ``temperature`` > 0; ``k`` completions per prompt for pass@k): see the module
    docstring."""
    ckpt = load_checkpoint(checkpoint, device=device, which=BEST if best else LAST)
    template = None
    if (ckpt.path / TEMPLATE_FILE).is_file():
        template = ChatTemplate.load(ckpt.path)
    render, stops = task_prompts(template)
    return evaluate_task(
        ckpt.model.eval(),
        ckpt.tokenizer,
        task,
        n,
        seed=seed,
        keep=in_held_out,
        temperature=temperature,
        sample_seed=sample_seed,
        k=k,
        render=render,
        stop_ids=stops,
    )
