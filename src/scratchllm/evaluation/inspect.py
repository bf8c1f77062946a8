"""Looking inside a trained model: the plots that show what it learned.

``inspect_model(model, tokenizer, out_dir)`` writes the pictures that apply to the model's
family and returns them with the numbers they show:

============  =====================================================================
family        what is drawn
============  =====================================================================
ngram         ``ngram_table.png``: P(next | context), the rule's allowed cells circled
mlp           ``embeddings_pca.png``: token embeddings, first two principal components
rnn           ``embeddings_pca.png`` and ``rnn_hidden.png``: last layer's state over a text
gpt           ``embeddings_pca.png``, ``attention_layer{L}_head{H}.png`` per head,
              ``attention_grid.png``, and for a language whose rule looks a fixed distance
              back ``attention_offsets.png`` / ``.json``: each head's attention mass there
============  =====================================================================

Each piece is its own module and can be used alone: ``inspect_ngram``,
``inspect_embeddings``, ``inspect_attention``, ``inspect_rnn``. Knowing the language the
model was trained on adds the rule's allowed transitions, the classes of the symbols and
the offsets to score; ``find_language`` looks for it beside a checkpoint.
``inspect_checkpoint(path, out_dir)`` does all of it for a saved model: what
``scratchllm inspect`` runs.

>>> from scratchllm.data.languages import get
>>> lang = get("sticky:k=1")
>>> report = inspect_model(model, tokenizer, "look/", language=lang)  # doctest: +SKIP
>>> [p.name for p in report.paths][:2]                                # doctest: +SKIP
['embeddings_pca.png', 'attention_layer0_head0.png']
>>> report.attention.best_heads()                                     # doctest: +SKIP
[(0, 0, 1, 0.41), (1, 0, 0, 0.93)]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scratchllm.checkpoint import Checkpoint, load_checkpoint
from scratchllm.data.languages import Language
from scratchllm.evaluation.inspect_attention import (
    AttentionMaps,
    attention_maps,
    chance_scores,
    format_offset_table,
    lookback_offsets,
    offset_scores,
    plot_attention,
)
from scratchllm.evaluation.inspect_embeddings import (
    EMBEDDINGS_PNG,
    EmbeddingPlot,
    embedding_plot,
    pca_2d,
    plot_embeddings,
    token_embeddings,
)
from scratchllm.evaluation.inspect_ngram import NGRAM_PNG, NGramTable, ngram_table, plot_ngram_table
from scratchllm.evaluation.inspect_rnn import RNN_PNG, RNNActivity, plot_rnn_hidden, rnn_activity
from scratchllm.files import output_directory
from scratchllm.models.base import LanguageModel
from scratchllm.tokenizers.base import Tokenizer

__all__ = [
    "FAMILIES",
    "AttentionMaps",
    "EmbeddingPlot",
    "InspectReport",
    "NGramTable",
    "RNNActivity",
    "attention_maps",
    "chance_scores",
    "default_text",
    "embedding_plot",
    "find_language",
    "format_offset_table",
    "inspect_checkpoint",
    "inspect_model",
    "lookback_offsets",
    "ngram_table",
    "offset_scores",
    "pca_2d",
    "prepare_text",
    "token_embeddings",
]

FAMILIES = ("ngram", "mlp", "rnn", "gpt")  # the model families inspect knows
DEFAULT_TEXT_TOKENS = 40  # length of the text drawn when none is given (heatmaps stay legible)


@dataclass
class InspectReport:
    """Everything ``inspect_model`` wrote, and the numbers behind each picture."""

    family: str
    paths: list[Path] = field(default_factory=list)  # every file written, in order
    text: str | None = None  # the text the attention / RNN plots read (after any cut)
    notes: list[str] = field(default_factory=list)  # e.g. "the text was cut to 64 tokens"
    ngram: NGramTable | None = None
    embeddings: EmbeddingPlot | None = None
    attention: AttentionMaps | None = None
    rnn: RNNActivity | None = None


@dataclass
class CheckpointInspection:
    """What ``inspect_checkpoint`` read and wrote."""

    checkpoint: Checkpoint
    language: Language | None  # the language the plots mark (None: unknown)
    language_from: str  # where it was found: "--language", a file, a directory name, ""
    report: InspectReport


def inspect_checkpoint(
    path: str | Path,
    out_dir: str | Path,
    *,
    text: str | None = None,
    language: str | Language | None = None,
    offsets: Sequence[int] | None = None,
    seed: int = 0,
    max_rows: int = 32,
    device: str = "cpu",
) -> CheckpointInspection:
    """Read the checkpoint at ``path`` (a run directory's ``last/`` or a checkpoint
    directory), find the language it was trained on unless one is given (``find_language``),
    and write its plots into ``out_dir`` (``inspect_model``)."""
    from scratchllm.data.languages import get

    ckpt = load_checkpoint(path, device=device)
    if language is not None:
        lang, where = (get(language) if isinstance(language, str) else language), "--language"
    else:
        found = find_language(ckpt.path)
        lang, where = found if found is not None else (None, "")
    report = inspect_model(ckpt.model, ckpt.tokenizer, out_dir, text, lang, offsets, seed, max_rows)
    return CheckpointInspection(ckpt, lang, where, report)


def inspect_model(
    model: LanguageModel,
    tokenizer: Tokenizer,
    out_dir: str | Path,
    text: str | None = None,
    language: Language | None = None,
    offsets: Sequence[int] | None = None,
    seed: int = 0,
    max_rows: int = 32,
) -> InspectReport:
    """Write every plot that applies to ``model``'s family into ``out_dir``.

    ``text`` is what the attention and RNN plots read; by default a stretch of the
    language's samples (starting at an END, as in training), or the model's own sample when
    no language is known. A text longer than the model's context is cut to its first
    ``context_length`` tokens (noted in ``report.notes``). ``offsets`` overrides the
    language's ``lookback_offsets`` for the attention scores.
    """
    family = getattr(model, "family", None)
    if family not in FAMILIES:
        raise ValueError(
            f"cannot inspect a model of family {family!r} ({type(model).__name__}); "
            f"inspect knows {', '.join(FAMILIES)}"
        )
    if tokenizer.vocab_size != model.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{model.vocab_size}; pass the tokenizer the model was trained with"
        )
    out_dir = output_directory(out_dir)
    report = InspectReport(family)
    if family == "ngram":
        report.ngram = ngram_table(model, tokenizer, language, max_rows=max_rows)
        report.paths.append(plot_ngram_table(report.ngram, out_dir / NGRAM_PNG))
        if report.ngram.allowed is None and language is not None:
            report.notes.append(f"rule not drawn: {report.ngram.allowed_how}")
        return report

    report.embeddings = embedding_plot(model, tokenizer, language)
    report.paths.append(plot_embeddings(report.embeddings, out_dir / EMBEDDINGS_PNG))
    if family == "mlp":
        return report

    if text is None:
        text = default_text(model, tokenizer, language, seed)
    ids, tokens, notes = prepare_text(model, tokenizer, text)
    report.text, report.notes = "".join(tokens), report.notes + notes
    if family == "rnn":
        report.rnn = rnn_activity(model, ids, tokens)
        report.paths.append(plot_rnn_hidden(report.rnn, out_dir / RNN_PNG))
        return report

    if offsets is None:
        offsets = lookback_offsets(language) if language is not None else ()
    offsets = tuple(int(o) for o in offsets)
    if any(o < 0 for o in offsets):
        raise ValueError(f"offsets {list(offsets)} must be >= 0 (key = query - offset)")
    too_far = [o for o in offsets if o >= len(ids)]
    if too_far:
        report.notes.append(
            f"offsets {too_far} reach before the text's first token ({len(ids)} tokens): "
            "no query has such a key, so they score n/a; give a longer --text"
        )
    report.attention = attention_maps(model, ids, tokens, offsets)
    report.paths.extend(plot_attention(report.attention, out_dir))
    return report


def prepare_text(
    model: LanguageModel, tokenizer: Tokenizer, text: str
) -> tuple[list[int], list[str], list[str]]:
    """``(ids, token texts, notes)`` for ``text``, cut to the model's context if longer."""
    if not isinstance(text, str) or not text:
        raise ValueError("the text to inspect is empty; give at least one character")
    try:  # a chat-tuned model's role and end tokens, typed as their strings, are those tokens
        ids = tokenizer.encode(text, allowed_special="all")
    except ValueError as e:
        raise ValueError(f"the tokenizer cannot encode the text {text!r}: {e}") from None
    notes = []
    limit = model.context_length
    if len(ids) > limit:
        notes.append(
            f"the text has {len(ids)} tokens, more than the model's context of {limit}; "
            f"it was cut to its first {limit}"
        )
        ids = ids[:limit]
    if not ids:
        raise ValueError(f"the text {text!r} encodes to no tokens; give a longer one")
    tokens = [tokenizer.decode([i]) for i in ids]
    return ids, tokens, notes


def default_text(
    model: LanguageModel, tokenizer: Tokenizer, language: Language | None, seed: int = 0
) -> str:
    """A text to look at when none is given: samples of the language after an END (the
    context a sample has in training), or else the model's own sample."""
    n = min(DEFAULT_TEXT_TOKENS, model.context_length)
    if language is not None:
        from scratchllm.data.languages import END

        text = END
        rng_seed = seed
        while len(text) < n:
            text += language.corpus(4, seed=rng_seed)
            rng_seed += 1
        text = text[:n]
        try:
            tokenizer.encode(text)
        except ValueError as e:
            raise ValueError(
                f"samples of {language.spec} hold characters the checkpoint's tokenizer "
                f"cannot encode ({e}); is that the language the model was trained on? "
                "Pass the right language, or a text"
            ) from None
        return text
    from scratchllm.evaluation.sampling import sample_tokens

    start = _start_token(tokenizer)
    ids = sample_tokens(model, [start], n=1, max_new_tokens=max(n - 1, 1), seed=seed)[0]
    return tokenizer.decode([start, *ids])


def _start_token(tokenizer: Tokenizer) -> int:
    """The END ("\\n") token if the vocabulary has one (samples follow it), else id 0."""
    try:
        ids = tokenizer.encode("\n")
    except ValueError:
        return 0
    return ids[0] if len(ids) == 1 else 0


# -- which language a checkpoint was trained on -------------------------------------------------


def find_language(checkpoint: str | Path) -> tuple[Language, str] | None:
    """The language a checkpoint was trained on, and where that was read, if it is recorded.

    Looked for, in order: a ``"language"`` spec in the checkpoint's ``trainer_state.json``
    or ``config.json`` (or in ``last/trainer_state.json`` beside a ``best/``
    checkpoint); in the study's ``run.json`` beside it or one level up (the study
    keeps each run as ``DIR/<language>/<model>/`` with its checkpoint in ``last/``); then the
    name of the checkpoint directory or one of its two parents, when that name is a full
    spec (percent-encoded as the study writes it). Only names with a ``:`` count, so a
    folder that happens to be called ``copy`` is not mistaken for the copy language with its
    defaults. Returns None when nothing is recorded.
    """
    import urllib.parse

    from scratchllm.data.languages import get

    path = Path(checkpoint)
    files = [path / "trainer_state.json", path / "config.json"]
    files += [path.parent / "last" / "trainer_state.json"]  # best/ sits beside last/
    files += [path / "run.json", path.parent / "run.json"]
    for file in files:
        spec = _recorded_language(file)
        if spec is not None:
            try:
                return get(spec), f"{file}"
            except ValueError as e:
                raise ValueError(f"{file}: bad language spec {spec!r} ({e})") from None
    resolved = path.resolve()
    for parent in [resolved, *list(resolved.parents)[:2]]:
        name = urllib.parse.unquote(parent.name)
        if ":" in name:
            try:
                return get(name), f"the directory name {parent}"
            except ValueError:
                continue
    return None


def _recorded_language(file: Path) -> str | None:
    """A ``"language"`` spec at the top of a JSON file or under its ``"key"`` (run.json)."""
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    if not isinstance(data, dict):
        return None
    for holder in (data, data.get("key")):
        if isinstance(holder, dict) and isinstance(holder.get("language"), str):
            return holder["language"] or None
    return None
