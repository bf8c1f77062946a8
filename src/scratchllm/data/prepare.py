"""A run's data, prepared once: the corpus tokenized into a ``TokenDataset`` directory.

``prepare_data(DataConfig(...), "runs/x/data")`` resolves the data (a file, the built-in
corpus or a language spec: ``resolve_data``), trains the tokenizer the config asks for
(or loads a saved one), checks that it covers the corpus, and writes the dataset. Run it
again with the same config and the dataset is reused without reading the corpus::

    runs/x/data/
      tokens.bin, mask.bin, meta.json, tokenizer.json     the TokenDataset
      prepared.json                                       what it was made from

``prepared.json`` records the config (and the size and mtime of a data file or tokenizer
file, so an edited file is a new corpus); the tokenizer's hash is the one the dataset
already records (``meta.tokenizer_sha256``). Under torchrun only rank 0 builds; the other
ranks wait for it and open the result.

>>> prepared = prepare_data(DataConfig(data="markov:order=2", samples=200), "d")  # doctest: +SKIP
>>> prepared.dataset.meta.n_tokens, prepared.language.spec                        # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchllm.configs.data import DataConfig
from scratchllm.data.corpus import language_of, resolve_data
from scratchllm.data.dataset import TokenDataset
from scratchllm.data.languages import Language
from scratchllm.files import read_json, write_json
from scratchllm.tokenizers import KINDS, Tokenizer, UnknownCharacterError, load, train_tokenizer
from scratchllm.tokenizers.factory import tokenizer_sha256

PREPARED = "prepared.json"  # in the dataset directory: what it was made from


@dataclass
class PreparedData:
    dataset: TokenDataset
    tokenizer: Tokenizer
    language: Language | None  # the Language of a spec, for validity at evaluation
    n_chars: int | None  # characters of the corpus (None when reused without reading it)


def prepare_data(
    config: DataConfig,
    directory: str | Path,
    tokenizer: Tokenizer | None = None,
    rank: int = 0,
) -> PreparedData:
    """Tokenize the corpus ``config`` names into ``directory``, or reuse the dataset there
    when it was made from the same config (see the module docstring).

    ``tokenizer`` (on resume: the checkpoint's) is used instead of making one, and must be
    the one a reused dataset was made with. ``rank`` is this process's torchrun rank.
    """
    directory = Path(directory)
    language = language_of(config.data)
    key = _data_key(config)
    if rank != 0:
        dataset = _wait_for(directory, key)
        return PreparedData(dataset, tokenizer or dataset.tokenizer(), language, None)
    dataset = _reuse(directory, key, tokenizer)
    if dataset is not None:
        return PreparedData(dataset, tokenizer or dataset.tokenizer(), language, None)
    corpus = resolve_data(config.data, n_samples=config.samples, seed=config.data_seed)
    if tokenizer is None:
        tokenizer = make_tokenizer(config.tokenizer, config.vocab_size, corpus.text)
    _check_encodable(tokenizer, corpus.text[: 1 << 16], config)
    (directory / PREPARED).unlink(missing_ok=True)
    try:
        dataset = TokenDataset.from_corpus(corpus, tokenizer, directory, config.val_fraction)
    except UnknownCharacterError as e:  # past the part checked above
        raise ValueError(_cannot_encode(config, e)) from None
    write_json(directory / PREPARED, key)
    return PreparedData(dataset, tokenizer, language, len(corpus.text))


def make_tokenizer(kind: str, vocab_size: int | None, text: str) -> Tokenizer:
    """A tokenizer of ``kind`` (char, word, bpe) trained on ``text`` (``train_tokenizer``),
    or, when ``kind`` is a path, the tokenizer saved there."""
    if kind in KINDS:
        return train_tokenizer(kind, text, vocab_size)
    path = Path(kind).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"--tokenizer {kind!r}: not char, word or bpe, and no such directory or file; "
            "pass one of those kinds or a directory holding a saved tokenizer.json"
        )
    return load(path)


def _check_encodable(tokenizer: Tokenizer, text: str, config: DataConfig) -> None:
    """A loaded tokenizer must cover the corpus; say so before tokenizing half of it."""
    if config.tokenizer in KINDS:
        return
    try:
        tokenizer.encode(text)
    except UnknownCharacterError as e:
        raise ValueError(_cannot_encode(config, e)) from None
    except ValueError as e:
        raise ValueError(
            f"--tokenizer {config.tokenizer} cannot encode --data {config.data}: {e}"
        ) from None


def _cannot_encode(config: DataConfig, e: UnknownCharacterError) -> str:
    """The way out for a train user (the tokenizer's own message gives Python's)."""
    tok = config.tokenizer
    if tok in KINDS:  # (a character tokenizer trained here covers its text)
        return f"--data {config.data}: {e}"
    return (
        f"--tokenizer {tok} cannot encode --data {config.data}: its {e.what} is not one of "
        f"the tokenizer's {e.vocab_size} tokens. Use a tokenizer made from this data "
        "(--tokenizer char), or one that reads unseen characters as <unk>: scratchllm "
        f"tokenizer train --kind char --unk --data {config.data} --out DIR"
    )


def _data_key(config: DataConfig) -> dict[str, Any]:
    """What a prepared dataset depends on: the data, how it is split, the tokenizer asked for."""
    values = dataclasses.asdict(config)
    key = {k: values[k] for k in ("data", "samples", "data_seed", "val_fraction")}
    key["tokenizer"] = [config.tokenizer, config.vocab_size]
    for name, arg in (("data_file", config.data), ("tokenizer_file", config.tokenizer)):
        path = Path(arg).expanduser()
        if path.is_dir():
            path = path / "tokenizer.json"
        if path.is_file():  # a file that changed since is a different corpus / tokenizer
            st = path.stat()
            key[name] = [str(path.resolve()), st.st_size, st.st_mtime_ns]
    return key


def _reuse(directory: Path, key: dict[str, Any], tokenizer: Tokenizer | None) -> Any:
    """The dataset in ``directory`` if its stamp matches ``key`` (and ``tokenizer``), else None."""
    stamp = read_json(directory / PREPARED)
    if not isinstance(stamp, dict):
        return None
    stamp.pop("sha256", None)  # written by earlier versions; the dataset's meta holds it
    if stamp != json.loads(json.dumps(key)):
        return None
    try:
        dataset = TokenDataset(directory)
    except (OSError, ValueError):
        return None  # damaged: make it again
    if tokenizer is not None and dataset.meta.tokenizer_sha256 != tokenizer_sha256(tokenizer):
        return None
    return dataset


def _wait_for(directory: Path, key: dict[str, Any], timeout_s: float = 1800.0) -> TokenDataset:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dataset = _reuse(directory, key, None)
        if dataset is not None:
            return dataset
        time.sleep(0.5)
    raise TimeoutError(f"{directory}: rank 0 did not finish preparing the data in {timeout_s} s")
