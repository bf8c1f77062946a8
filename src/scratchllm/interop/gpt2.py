"""Hugging Face GPT-2 <-> scratchllm GPT.

A Hugging Face GPT-2 directory holds ``config.json``, the weights (``model.safetensors``,
possibly sharded with ``model.safetensors.index.json``, or the older
``pytorch_model.bin``) and the tokenizer (``vocab.json`` + ``merges.txt``, and/or
``tokenizer.json``). Our GPT keeps GPT-2's parameter names, so the import is a checked
one-to-one copy with two differences:

* HF's GPT-2 uses ``Conv1D`` layers, whose weights are stored ``[in, out]``, the
  transpose of ``nn.Linear``'s ``[out, in]``: ``c_attn``, ``c_proj`` and ``c_fc`` are
  transposed on the way in (and out).
* Older checkpoints name keys without the ``transformer.`` prefix (they were saved
  from ``GPT2Model``) and carry the causal-mask buffers ``attn.bias`` /
  ``attn.masked_bias``; the prefix is added and the buffers are dropped.

``pytorch_model.bin`` is read with ``torch.load(weights_only=True)``, which refuses to
run code hidden in a pickle.

>>> model, tokenizer = load_gpt2("~/gpt2")           # doctest: +SKIP
>>> convert_gpt2("~/gpt2", "gpt2-ckpt")              # doctest: +SKIP
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from scratchllm.models.gpt import GPT, GPTConfig

# HF's activation_function values that GPT-2 configs use, and ours for each.
ACTIVATIONS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
}
# Conv1D layers: HF stores their weight [in, out].
_CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
_BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal masks some checkpoints carry


def _directory(directory: str | Path) -> Path:
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: no such directory (pass the folder holding a Hugging Face GPT-2 "
            "model's config.json and model.safetensors)"
        )
    return path


def read_hf_config(directory: str | Path) -> GPTConfig:
    """Our ``GPTConfig`` for the GPT-2 ``config.json`` in ``directory``."""
    path = _directory(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (a Hugging Face model directory has one)")
    try:
        hf: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    model_type = hf.get("model_type")
    if model_type != "gpt2":
        raise ValueError(
            f"{path}: model_type {model_type!r} is not GPT-2; only 'gpt2' models can be imported"
        )
    act = hf.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise ValueError(
            f"{path}: activation_function {act!r} unsupported; known: {list(ACTIVATIONS)}"
        )
    # Options that change the architecture away from what GPT does.
    for key, plain in (
        ("scale_attn_weights", True),
        ("scale_attn_by_inverse_layer_idx", False),
        ("add_cross_attention", False),
    ):
        if hf.get(key, plain) != plain:
            raise ValueError(f"{path}: {key}={hf[key]!r} is not supported (only {plain!r})")
    try:
        return GPTConfig(
            block_size=hf.get("n_positions", 1024),
            vocab_size=hf.get("vocab_size", 50257),
            n_layer=hf.get("n_layer", 12),
            n_head=hf.get("n_head", 12),
            n_embd=hf.get("n_embd", 768),
            ffn_hidden=hf.get("n_inner"),
            dropout=0.0,  # an imported model is for inference; set it to fine-tune
            bias=True,
            pos="learned",
            norm="layernorm",
            layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-5),
            act=ACTIVATIONS[act],
            ffn="mlp",
            tie_weights=hf.get("tie_word_embeddings", True),
        )
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def read_hf_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The raw tensors of a HF model directory (safetensors first, else pytorch_model.bin)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = _directory(directory)
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    binary = path / "pytorch_model.bin"
    try:
        if single.is_file():
            return load_file(single)
        if index.is_file():  # sharded: the index maps each tensor to its shard file
            shards = sorted(
                set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            )
            weights: dict[str, torch.Tensor] = {}
            for shard in shards:
                weights.update(load_file(path / shard))
            return weights
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the safetensors weights ({e})") from None
    if binary.is_file():
        try:
            state = torch.load(binary, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:  # a pickle that would run code or build objects
            found = re.search(r"GLOBAL (\S+)", str(e))
            what = f" ({found.group(1)})" if found else ""
            raise ValueError(
                f"{binary}: cannot read the weights: the pickle holds more than tensors"
                f"{what}, and scratchllm never runs a pickle's code. Get the model as "
                "model.safetensors instead"
            ) from None
        except Exception as e:  # torch raises several types for a bad or truncated file
            raise ValueError(
                f"{binary}: cannot read the weights ({type(e).__name__}: {e})"
            ) from None
        if not isinstance(state, dict):
            raise ValueError(f"{binary}: holds a {type(state).__name__}, not a state dict")
        return state
    raise FileNotFoundError(
        f"{path}: no weights found (expected model.safetensors, model.safetensors.index.json "
        "or pytorch_model.bin)"
    )


def hf_to_gpt_state_dict(hf: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Rename and transpose HF GPT-2 tensors into our GPT's ``state_dict`` keys."""
    out: dict[str, torch.Tensor] = {}
    for key, value in hf.items():
        if key.endswith(_BUFFERS):
            continue
        if not key.startswith(("transformer.", "lm_head.")):
            key = "transformer." + key  # saved from GPT2Model, not GPT2LMHeadModel
        if key.endswith(_CONV1D):
            value = value.t()
        out[key] = value.contiguous()
    if config.tie_weights:
        out["lm_head.weight"] = out.get("transformer.wte.weight", out.get("lm_head.weight"))
    return out


def gpt_to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our GPT's tensors under HF GPT-2's names and layouts (``GPT2LMHeadModel``)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.endswith(_CONV1D):
            value = value.t()
        out[key] = value.detach().contiguous()
    if model.config.tie_weights:
        out.pop("lm_head.weight")  # HF re-ties it from wte on load
    return out


def copy_gpt2_weights(hf_model: torch.nn.Module, model: GPT) -> GPT:
    """Copy an in-memory HF ``GPT2LMHeadModel``'s weights into our ``model`` (same sizes)."""
    state = hf_to_gpt_state_dict(hf_model.state_dict(), model.config)
    _copy_checked(model, state, "the Hugging Face model")
    return model


def _copy_checked(model: GPT, state: dict[str, torch.Tensor], source: object) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source}: weights do not match its config (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(
                f"{source}: {key} has shape {tuple(value.shape)}, the config implies "
                f"{tuple(expected[key].shape)}"
            )
    with torch.no_grad():
        for key, param in expected.items():
            param.copy_(state[key])  # copy_ casts fp16/bf16 checkpoints to our fp32


def load_gpt2_model(directory: str | Path) -> GPT:
    """A GPT holding the weights of the HF GPT-2 model in ``directory`` (eval mode)."""
    config = read_hf_config(directory)
    state = hf_to_gpt_state_dict(read_hf_weights(directory), config)
    model = GPT(config)
    _copy_checked(model, state, directory)
    return model.eval()


def load_gpt2_tokenizer(directory: str | Path):
    """The directory's tokenizer as our ``BPETokenizer``, or None when it has none.

    ``vocab.json`` + ``merges.txt`` are preferred (GPT-2's own files); a ``tokenizer.json``
    alone works too.
    """
    from scratchllm.tokenizers.bpe import BPETokenizer

    path = _directory(directory)
    vocab, merges, tok_json = path / "vocab.json", path / "merges.txt", path / "tokenizer.json"
    if vocab.is_file() and merges.is_file():
        return BPETokenizer.from_gpt2_files(vocab, merges)
    if tok_json.is_file():
        return BPETokenizer.load(tok_json)
    return None


def load_gpt2(directory: str | Path):
    """``(model, tokenizer or None)`` from a Hugging Face GPT-2 directory."""
    return load_gpt2_model(directory), load_gpt2_tokenizer(directory)


def convert_gpt2(directory: str | Path, out: str | Path):
    """Write a scratchllm model directory (``config.json``, ``model.safetensors`` and, when
    the source has one, ``tokenizer.json``) from a HF GPT-2 directory. Returns
    ``(model, tokenizer or None)``."""
    model, tokenizer = load_gpt2(directory)
    out = Path(out).expanduser()
    model.save(out)
    if tokenizer is not None:
        tokenizer.save(out)
    return model, tokenizer


def export_gpt2(model: GPT, directory: str | Path) -> Path:
    """Write ``model`` as a HF GPT-2 directory that ``GPT2LMHeadModel.from_pretrained`` reads.

    Only GPT-2's architecture can be exported: learned positions, LayerNorm with bias,
    a dense MLP with biases and a GELU/ReLU.
    """
    from safetensors.torch import save_file

    c = model.config
    reasons = [
        f"{name}={getattr(c, name)!r} (GPT-2 has {want!r})"
        for name, want in (
            ("pos", "learned"),
            ("norm", "layernorm"),
            ("ffn", "mlp"),
            ("bias", True),
        )
        if getattr(c, name) != want
    ]
    if reasons:
        raise ValueError(f"cannot export as GPT-2: {', '.join(reasons)}")
    act = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}[c.act]
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    hf_config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_embd": c.n_embd,
        "n_positions": c.block_size,
        "n_inner": c.ffn_hidden,
        "vocab_size": c.vocab_size,
        "layer_norm_epsilon": c.layer_norm_epsilon,
        "activation_function": act,
        "tie_word_embeddings": c.tie_weights,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "bos_token_id": None,
        "eos_token_id": None,
    }
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
    save_file(gpt_to_hf_state_dict(model), directory / "model.safetensors", {"format": "pt"})
    return directory
