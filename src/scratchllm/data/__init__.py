"""Data: synthetic languages, text corpora and memory-mapped token datasets.

- ``languages``: rule-based languages with a generator, a verifier and known context needs.
- ``corpus``: text from a file, a language spec or the built-in stdlib-docstring corpus
  (``resolve_data`` picks by what the user typed).
- ``dataset``: ``TokenDataset``, a corpus tokenized once into a memory-mapped file, served
  as random or sequential ``(x, y, mask)`` batches with a fixed train/validation split.
- ``prepare``: ``prepare_data``, a run's corpus tokenized into its ``data/`` directory once
  (with the tokenizer its ``DataConfig`` asks for) and reused after.
- ``chat``: ``Message`` and ``ChatTemplate`` (role and end-of-turn tokens; ``render`` gives
  a conversation's ids and the mask of what is learned).
- ``sft``: ``load_examples``: fine-tuning examples from JSONL (OpenAI messages, Alpaca,
  prompt/completion), a language as a task, or ``instructions``' stdlib question set.
- ``example_dataset``: ``ExampleDataset``, those examples rendered by a template into
  training rows (padded or packed, the mask on what is learned) for the ``Trainer``.
"""

from scratchllm.data.chat import ChatTemplate, Message
from scratchllm.data.corpus import (
    Corpus,
    iter_text_file,
    language_of,
    read_text_file,
    resolve_data,
    stdlib_docs,
    text_from_spec,
)
from scratchllm.data.dataset import Batch, TokenDataset
from scratchllm.data.example_dataset import ExampleDataset, PackedBatch
from scratchllm.data.sft import Example, load_examples

__all__ = [
    "Batch",
    "ChatTemplate",
    "Corpus",
    "Example",
    "ExampleDataset",
    "Message",
    "PackedBatch",
    "TokenDataset",
    "iter_text_file",
    "language_of",
    "load_examples",
    "read_text_file",
    "resolve_data",
    "stdlib_docs",
    "text_from_spec",
]
