"""A checkpoint as a Hugging Face directory: ``GPT2LMHeadModel`` weights and a fast tokenizer.

``export_hf(model, tokenizer, DIR)`` writes what ``transformers`` reads::

    DIR/config.json              GPT-2's config (export_gpt2)
    DIR/model.safetensors        the weights, Conv1D layouts (export_gpt2)
    DIR/tokenizer.json           our byte-level BPE, already in HF's format
    DIR/vocab.json, merges.txt   the same BPE as GPT-2's files (GPT-2's own pattern only)
    DIR/tokenizer_config.json    which tokenizer class to build, the special tokens

so that ``GPT2LMHeadModel.from_pretrained(DIR)`` gives our logits and
``AutoTokenizer.from_pretrained(DIR)`` our ids. Only GPT-2's architecture has a GPT-2
equivalent: rope or sinusoidal positions, RMSNorm, mixture of experts, Linear layers
without biases, and the other model families are refused, each named. A character or
word tokenizer has no Hugging Face equivalent (``tokenizers`` has no model that reads
ours id for id), so it is refused too unless ``with_tokenizer=False`` (weights only).

Nothing is written unless everything can be: the files go to a temporary sibling first.

>>> ckpt = load_checkpoint("runs/bpe-gpt")                     # doctest: +SKIP
>>> export_hf(ckpt.model, ckpt.tokenizer, "hf-out")            # doctest: +SKIP
>>> from transformers import GPT2LMHeadModel, AutoTokenizer
>>> model = GPT2LMHeadModel.from_pretrained("hf-out")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from scratchllm.interop.gpt2 import export_gpt2

END_OF_TEXT = "<|endoftext|>"


def export_hf(
    model: Any, tokenizer: Any, out: str | Path, with_tokenizer: bool = True, source: str = ""
) -> Path:
    """Write ``model`` (and ``tokenizer``) as a HF directory ``out``; see the module doc.

    ``source`` names where the model came from, for the error messages.
    """
    problems = []
    family = getattr(model, "family", type(model).__name__)
    if family != "gpt":
        problems.append(
            f"a {family!r} model has no Hugging Face GPT-2 equivalent (only GPT models export)"
        )
    if with_tokenizer:
        problems += _tokenizer_problems(tokenizer, source or "the checkpoint")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if family == "gpt":
            try:
                export_gpt2(model, tmp)
            except ValueError as e:
                problems.append(str(e))
        if problems:
            where = f" {source}" if source else ""
            raise ValueError(f"cannot export{where} to Hugging Face: " + "; ".join(problems))
        if with_tokenizer:
            _write_tokenizer(tokenizer, tmp, model.config.block_size)
        _mark_special_ids(tmp / "config.json", tokenizer if with_tokenizer else None)
        if out.exists():
            if any(out.iterdir()) and not (out / "config.json").is_file():
                raise ValueError(
                    f"{out} exists and is not a model directory; pick a new or empty directory"
                )
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _tokenizer_problems(tok: Any, where: str) -> list[str]:
    if tok is None:
        return [f"{where} has no tokenizer.json (export the weights alone with --no-tokenizer)"]
    kind = getattr(tok, "kind", type(tok).__name__)
    if kind != "bpe":
        return [
            f"a {kind} tokenizer has no Hugging Face equivalent (only byte-level BPE "
            "exports; --no-tokenizer writes the weights alone)"
        ]
    return []


def _write_tokenizer(tok: Any, directory: Path, max_length: int) -> None:
    tok.save(directory)  # HF tokenizer.json: the fast tokenizer reads it as it is
    gpt2_pattern = tok.pattern_name == "gpt2"
    if gpt2_pattern:  # GPT-2's slow tokenizer hard-codes GPT-2's split pattern
        tok.save_gpt2_files(directory)
    specials = tok.special_tokens
    config: dict[str, Any] = {
        "tokenizer_class": "GPT2Tokenizer" if gpt2_pattern else "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
    }
    if END_OF_TEXT in specials:
        config |= {"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT}
    extra = sorted(s for s in specials if s != END_OF_TEXT)
    if extra:
        config["additional_special_tokens"] = extra
    text = json.dumps(config, indent=2) + "\n"
    (directory / "tokenizer_config.json").write_text(text, encoding="utf-8")


def _mark_special_ids(config_file: Path, tok: Any) -> None:
    """Put the end-of-text id in config.json, where ``generate`` looks for eos."""
    if tok is None or END_OF_TEXT not in getattr(tok, "special_tokens", {}):
        return
    config = json.loads(config_file.read_text(encoding="utf-8"))
    eot = tok.special_tokens[END_OF_TEXT]
    config |= {"bos_token_id": eot, "eos_token_id": eot}
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
