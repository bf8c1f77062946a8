"""A fine-tuning run's data: examples (the usual case) or a corpus, as the Trainer's batches.

``--data`` names one of two kinds of source:

- **examples** (``data.sft.load_examples``): a ``.jsonl`` / ``.json`` file, the
  ``stdlib-instructions`` set, or a language with answers (``addition:digits=3``). Each is
  rendered by the run's chat template into an ``ExampleDataset``: whole examples, the loss
  on the replies (or on everything with ``train_on_prompt``), padded or packed.
- **a corpus** (``data.prepare``): any other text file, ``stdlib-docs``, or a language
  without answers (``markov:order=3``, whose every symbol is scored): a ``TokenDataset`` of
  windows with every token trained, prepared into ``OUT/data`` with the model's tokenizer.
  Distillation on a language's stream is this case.

>>> is_example_source("addition:digits=3"), is_example_source("markov:order=3")
(True, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchllm.data.chat import ChatTemplate
from scratchllm.data.example_dataset import ExampleDataset
from scratchllm.data.languages import END
from scratchllm.data.sft import INSTRUCTIONS, Example, load_examples, task_families

EXAMPLE_SUFFIXES = (".jsonl", ".json")
DEFAULT_TASK_SAMPLES = 10_000  # examples a language generates unless told (as load_examples)


def is_example_source(source: str) -> bool:
    """Whether ``source`` is read as fine-tuning examples (else as a corpus)."""
    path = Path(source).expanduser()
    if path.is_file():
        return path.suffix.lower() in EXAMPLE_SUFFIXES
    if source == INSTRUCTIONS:
        return True
    return source.split(":", 1)[0].strip().lower() in task_families()


def is_language_task(source: str) -> bool:
    """A language with answers: its examples are prompt + answer + END, no turns."""
    return (
        not Path(source).expanduser().is_file()
        and source != INSTRUCTIONS
        and (is_example_source(source))
    )


def read_examples(settings: dict[str, Any]) -> list[Example]:
    """The training examples ``settings`` name (``data``, ``samples``, ``data_seed``)."""
    return load_examples(settings["data"], n=settings["samples"], seed=settings["data_seed"])


def examples_text(examples: list[Example], template: ChatTemplate | None = None) -> str:
    """Every example's text, for training a fresh model's tokenizer (the template's tokens
    are special tokens added after, so plain text suffices)."""
    return END + END.join(
        "".join(m.content for m in e.messages) if template is None else template.text(e.messages)
        for e in examples
    )


def plain_prefix(template: ChatTemplate) -> list[int]:
    """What goes before each example: for the plain template, the END (newline) after
    which every sample of a language's stream starts (so the model is asked exactly as it
    was pretrained, and as ``eval --task`` asks); a chat template starts with its role
    token and needs none."""
    if template.special_tokens:
        return []
    try:
        return template.tokenizer.encode_ordinary(END)
    except ValueError:
        return []  # a tokenizer without a newline: the example starts cold


@dataclass
class RunData:
    """The batch source of a run and the line that describes it."""

    dataset: Any  # ExampleDataset or TokenDataset
    line: str
    fingerprint: str | None  # examples: what a resumed run must find again


def example_data(
    examples: list[Example],
    template: ChatTemplate,
    settings: dict[str, Any],
    block_size: int,
) -> RunData:
    """The examples rendered into an ``ExampleDataset`` (module docstring)."""
    ds = ExampleDataset.from_examples(
        examples,
        template,
        max_length=block_size + 1,
        val_fraction=settings["val_fraction"],
        train_on_prompt=settings["train_on_prompt"],
        prefix=plain_prefix(template),
        pack=settings["pack"],
        seed=settings["data_seed"],
        source=settings["data"],
    )
    s = ds.stats
    learned = "every token" if settings["train_on_prompt"] else "the replies"
    cut = ""
    if s.truncated or s.dropped:
        cut = (
            f"; {s.truncated} longer than {block_size + 1} tokens cut, {s.dropped} of them "
            "left out (nothing to learn in the cut)"
        )
    rows = "packed" if settings["pack"] else "one per row, padded"
    line = (
        f"data      {settings['data']}: {s.n_train:,} train + {s.n_val:,} validation examples, "
        f"{s.tokens:,} tokens of which {s.learned:,} learned ({learned}), longest "
        f"{s.longest}, {rows}{cut}"
    )
    return RunData(ds, line, ds.fingerprint())
