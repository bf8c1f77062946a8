"""A trained word2vec model on disk: a directory a person (and gensim) can read.

- ``vectors.txt``: the word vectors in the word2vec text format (``vectors.py``);
- ``vocab.txt``: ``word count`` per line, word2vec.c's ``-save-vocab`` format;
- ``word2vec.json``: the settings, how the text was split into words, and the run's
  numbers (corpus size, loss per epoch, seconds).

gensim reads the first two as they are::

    KeyedVectors.load_word2vec_format("DIR/vectors.txt", fvocab="DIR/vocab.txt")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import Word2VecConfig
from .trainer import Word2VecModel
from .vectors import WordVectors

VECTORS_FILE, VOCAB_FILE, META_FILE = "vectors.txt", "vocab.txt", "word2vec.json"
FORMAT = "scratchllm-word2vec"
FORMAT_VERSION = 1


@dataclass
class SavedWord2Vec:
    vectors: WordVectors
    config: Word2VecConfig
    lowercase: bool  # how the training text was split into words (corpus.tokenize)
    nfkc: bool
    meta: dict[str, Any]  # everything word2vec.json holds

    def normalize(self, word: str) -> str:
        """A query word as training saw words (lowercased if training lowercased)."""
        from scratchllm.tokenizers.word import normalize

        return normalize(word, self.lowercase, self.nfkc)


def save(
    model: Word2VecModel,
    directory: str | Path,
    lowercase: bool = True,
    nfkc: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` into ``directory`` (created if need be); ``extra`` goes into the JSON."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.wv.save_word2vec_format(directory / VECTORS_FILE)
    with (directory / VOCAB_FILE).open("w", encoding="utf-8", newline="\n") as f:
        for word, count in zip(model.vocab.words, model.vocab.counts.tolist(), strict=True):
            f.write(f"{word} {count}\n")
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "tokenize": {"lowercase": lowercase, "nfkc": nfkc},
        "vocab_size": len(model.vocab),
        "corpus": {
            "sentences": model.vocab.sentences,
            "words": model.vocab.total_words,
            "vocab_words": model.vocab.retained_words,
        },
        "trained_words_per_epoch": model.trained_words,
        "loss_per_epoch": model.epoch_losses,
        "seconds": round(model.seconds, 3),
        **(extra or {}),
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return directory


def load(directory: str | Path) -> SavedWord2Vec:
    """Read what ``save`` wrote; clear errors for a missing, foreign or corrupt directory."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{directory} holds no {META_FILE}: not a directory made by "
            "`scratchllm word2vec train --out DIR`"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{meta_path} is corrupt: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path} is not a scratchllm word2vec file")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_path} has format version {meta.get('version')!r}; this scratchllm reads "
            f"version {FORMAT_VERSION}"
        )
    config = Word2VecConfig.from_dict(meta["config"])
    counts = _read_counts(directory / VOCAB_FILE)
    vectors = WordVectors.load_word2vec_format(directory / VECTORS_FILE)
    if counts is not None:
        if list(counts) != vectors.words:
            raise ValueError(f"{directory / VOCAB_FILE} does not list the words of {VECTORS_FILE}")
        vectors.counts = np.array(list(counts.values()), dtype=np.int64)
    tok = meta.get("tokenize", {})
    return SavedWord2Vec(
        vectors, config, bool(tok.get("lowercase", True)), bool(tok.get("nfkc", False)), meta
    )


def _read_counts(path: Path) -> dict[str, int] | None:
    if not path.is_file():
        return None  # the counts are a convenience; the vectors are what matters
    counts: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split(" ")
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"{path}, line {number}: expected 'word count', got {line[:60]!r}")
        counts[parts[0]] = int(parts[1])
    return counts
