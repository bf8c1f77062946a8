"""The settings of a training run: one flat table of keys, layered, saved as ``train.toml``.

**Where a setting comes from**, later ones winning: the built-in defaults, a preset
(``PRESETS``), a TOML file, then the values typed (on the command line: the flags). With
``--resume`` the run's saved settings (``DIR/train.toml``) come first and the rest override
them. ``resolve_settings`` applies the layers; ``write_settings`` / ``read_config_file``
write and read the file.

**The defaults are the dataclasses'**: a data setting's is ``DataConfig``'s, a training
setting's ``TrainConfig``'s, a model setting's its family's config (``GPTConfig``, ...).
Where the families disagree (``n_layer``: gpt 6, rnn 2) the default is the family's own,
shown in brackets in ``--help`` (``family_defaults``). Nothing is copied by hand, and
nothing here imports torch, so ``scratchllm train --help`` stays fast.

**Other verbs' tables.** The layers take the table of options as an argument
(``options=``, ``OPTIONS`` by default), so a verb with settings of its own (``scratchllm
finetune``: ``finetuning.settings``) composes its table from these options and its own and
gets the same layers, checks and TOML file.

>>> s = resolve_settings({"max_iters": 900}, preset="demo")
>>> s["max_iters"], s["n_layer"], s["lr"]
(900, 4, 0.002)
>>> train_config(s, "runs/x", has_model_block=True).max_iters
900
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchllm.configs.data import DataConfig
from scratchllm.configs.models import (
    ACTIVATIONS,
    CONFIGS,
    FFNS,
    MLP_ACTIVATIONS,
    MODEL_NAMES,
    NORMS,
    POSITIONS,
    config_class,
    make_config,
)
from scratchllm.configs.train import DEFAULT_BLOCK_SIZE, SCHEDULES, TrainConfig
from scratchllm.files import write_text

SETTINGS_FILE = "train.toml"  # in the run directory: the resolved settings
TABLES = ("data", "model", "train")  # the TOML tables settings may sit in (Option.group)
DEFAULT_MODEL = "gpt"
ENGINES = ("torch", "numpy")  # torch: training.run; numpy: numpy_gpt.run (GPT only)
DEFAULT_ENGINE = "torch"
_DATA = {f.name: f.default for f in dataclasses.fields(DataConfig)}
_TRAIN = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
_UNSET = object()  # an Option whose default is looked up in the dataclasses


@dataclass(frozen=True)
class Option:
    """One setting: its key (TOML key, and ``--key-with-dashes`` as a flag), type and help."""

    key: str
    type: type
    help: str
    group: str  # "data", "model" or "train"
    default: Any = None  # None: the model family's own (``family_defaults``), or unset
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    flag_name: str | None = None  # the flag when it is not --key-with-dashes (--from)

    @property
    def flag(self) -> str:
        return self.flag_name or "--" + self.key.replace("_", "-")


def family_defaults(key: str) -> dict[str, Any]:
    """The default of a model setting in each family that has it (the training window
    ``block_size`` of a family without one is ``DEFAULT_BLOCK_SIZE``).

    >>> family_defaults("n_layer")
    {'gpt': 6, 'rnn': 2}
    """
    out = {}
    for family, cls in CONFIGS.items():
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        if key in fields:
            out[family] = fields[key]
        elif key == "block_size":
            out[family] = DEFAULT_BLOCK_SIZE
    return out


def help_text(o: Option) -> str:
    """The option's help, with each family's default in brackets where they differ
    (``[gpt 6, rnn 2]``), read from the config dataclasses.

    >>> help_text(BY_KEY["n_layer"])
    'gpt/rnn: layers [gpt 6, rnn 2]'
    """
    if o.group != "model" or o.default is not None or o.key == "model":
        return o.help
    per_value: dict[Any, list[str]] = {}
    for family, value in family_defaults(o.key).items():
        per_value.setdefault(value, []).append(family)
    if len(per_value) < 2:  # one default for all (ffn_hidden: None means 4 * n_embd)
        return o.help
    shown = ", ".join(f"{'/'.join(names)} {value}" for value, names in per_value.items())
    return f"{o.help} [{shown}]"


def _model_default(key: str) -> Any:
    """One default if every family that has ``key`` agrees on it, else None (bracketed)."""
    values = list(family_defaults(key).values())
    return values[0] if values and all(v == values[0] for v in values) else None


def _o(group: str, key: str, type_: type, help_: str, default: Any = _UNSET, **kw: Any) -> Option:
    if default is _UNSET:
        default = {"data": _DATA, "train": _TRAIN}.get(group, {}).get(key)
        if group == "model":
            default = _model_default(key)
    return Option(key, type_, help_, group, default, **kw)


# fmt: off
OPTIONS: tuple[Option, ...] = (
    # -- data and tokenizer (DataConfig) --------------------------------------------------
    _o("data", "data", str, "a UTF-8 text file, 'stdlib-docs' (the built-in corpus: Python's "
       "docstrings, no download) or a language spec such as markov:order=3",
       metavar="FILE|SPEC"),
    _o("data", "samples", int, "language spec: how many samples to generate"),
    _o("data", "data_seed", int, "language spec: the seed of the generated samples"),
    _o("data", "val_fraction", float, "the last fraction of the tokens held out"),
    _o("data", "tokenizer", str, "char, word or bpe (trained on the data), or a directory "
       "holding a saved tokenizer.json", metavar="{char,word,bpe,DIR}"),
    _o("data", "vocab_size", int, "word/bpe: vocabulary size (bpe default 512); char: keep "
       "the most frequent characters, others become <unk>", metavar="V"),
    # -- model (the family's config) ----------------------------------------------------------
    _o("model", "model", str, "model family", DEFAULT_MODEL, choices=MODEL_NAMES),
    _o("model", "n", int, "ngram/mlp: tokens per n-gram (context n-1)"),
    _o("model", "n_layer", int, "gpt/rnn: layers"),
    _o("model", "n_head", int, "gpt: attention heads"),
    _o("model", "n_embd", int, "embedding width"),
    _o("model", "n_hidden", int, "mlp/rnn: hidden width"),
    _o("model", "ffn_hidden", int, "gpt: feed-forward width (default: 4 * n_embd)"),
    _o("model", "block_size", int, "context in tokens: gpt/rnn model size and training "
       "window; mlp/ngram training window"),
    _o("model", "dropout", float, "gpt/mlp/rnn: dropout while training"),
    _o("model", "bias", bool, "gpt/rnn: biases in linear layers and norms"),
    _o("model", "pos", str, "gpt: positions", choices=POSITIONS),
    _o("model", "rope_base", float, "gpt, pos rope: base of the rotation frequencies"),
    _o("model", "norm", str, "gpt: normalisation", choices=NORMS),
    _o("model", "act", str, "activation", choices=tuple(dict.fromkeys(ACTIVATIONS
       + MLP_ACTIVATIONS))),
    _o("model", "ffn", str, "gpt: feed-forward kind", choices=FFNS),
    _o("model", "n_expert", int, "gpt, ffn moe: experts per block"),
    _o("model", "moe_top_k", int, "gpt, ffn moe: experts per token"),
    _o("model", "tie_weights", bool, "gpt: lm_head shares the token embedding matrix"),
    _o("model", "smoothing", float, "ngram: add-k smoothing pseudo-count"),
    _o("model", "direct", bool, "mlp: Bengio's direct embedding-to-output connections"),
    _o("model", "fast", bool, "rnn: run torch's fused RNN kernels (same numbers)"),
    # -- training (TrainConfig, nanoGPT's names) ----------------------------------------------
    _o("train", "max_iters", int, "optimizer steps in the whole run"),
    _o("train", "batch_size", int, "windows per micro-batch"),
    _o("train", "gradient_accumulation_steps", int, "micro-batches per optimizer step"),
    _o("train", "lr", float, "peak learning rate (after warmup)"),
    _o("train", "min_lr", float, "the floor the cosine decays to"),
    _o("train", "warmup_iters", int, "linear warmup steps (default: 5%% of the decay steps, at "
       "most 100)"),
    _o("train", "lr_decay_iters", int, "step where the cosine reaches min_lr (default: "
       "max_iters)"),
    _o("train", "schedule", str, "learning-rate schedule", choices=SCHEDULES),
    _o("train", "weight_decay", float, "AdamW decoupled weight decay (matrices only)"),
    _o("train", "beta1", float, "AdamW beta1"),
    _o("train", "beta2", float, "AdamW beta2"),
    _o("train", "grad_clip", float, "clip the global gradient norm (0: off)"),
    _o("train", "label_smoothing", float, "mix this much of the uniform distribution in"),
    _o("train", "eval_interval", int, "evaluate and checkpoint every this many steps"),
    _o("train", "eval_iters", int, "validation batches per evaluation"),
    _o("train", "log_interval", int, "steps between metrics lines"),
    _o("train", "early_stopping", int, "stop after this many evaluations without a new best "
       "(default: off)"),
    _o("train", "validity_samples", int, "language data: samples checked at each evaluation"),
    _o("train", "seed", int, "seed of initialisation, data order and dropout"),
    _o("train", "device", str, "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps",
       metavar="DEVICE"),
    _o("train", "compile", bool, "torch.compile the model"),
    _o("train", "bf16", bool, "bf16 autocast (accelerators; skipped on CPU)",
       _TRAIN["dtype"] == "bfloat16"),
    _o("train", "quiet", bool, "no progress bar", not _TRAIN["progress"]),
    # -- the run (not TrainConfig fields: what trains, and from which weights) ------------------
    _o("train", "engine", str, "torch (PyTorch, every family) or numpy (the NumPy GPT: "
       "no torch needed)", DEFAULT_ENGINE, choices=ENGINES),
    _o("train", "init_from", str, "start from the weights of this checkpoint (or run "
       "directory: its last/); the model and tokenizer are its, the optimizer starts afresh",
       metavar="CKPT"),
    _o("train", "init_embeddings", str, "gpt, --tokenizer word: start the token embeddings "
       "from the word2vec vectors in DIR (`scratchllm word2vec train --out DIR`), centred, "
       "projected to n_embd and scaled to the initial ones", metavar="DIR"),
)
# fmt: on
BY_KEY = {o.key: o for o in OPTIONS}
MODEL_KEYS = tuple(o.key for o in OPTIONS if o.group == "model" and o.key != "model")

# Named settings: a preset is applied over the defaults, under --config and the flags.
# fmt: off
PRESETS: dict[str, dict[str, Any]] = {
    # nanoGPT's CPU shakespeare_char size (4 x 4 x 128, block 64, batch 12, 2000 steps,
    # dropout 0) with the schedule and architecture options that beat its validation loss
    # (1.8857) in as many steps: see benchmarks/bench_train_shakespeare.py.
    "shakespeare-char": dict(
        model="gpt", tokenizer="char", n_layer=4, n_head=4, n_embd=128, block_size=64,
        batch_size=12, max_iters=2000, dropout=0.0, lr=2e-3, min_lr=1e-4, warmup_iters=100,
        eval_interval=250, eval_iters=20,
    ),
    # What `scratchllm demo` trains: small enough for 2 CPU cores in about two minutes.
    "demo": dict(
        model="gpt", tokenizer="char", n_layer=4, n_head=4, n_embd=128, block_size=64,
        batch_size=12, max_iters=1000, dropout=0.0, lr=2e-3, min_lr=1e-4, warmup_iters=50,
        eval_interval=250, eval_iters=10,
    ),
}
# fmt: on


# -- the layers ---------------------------------------------------------------------------------


def resolve_settings(
    values: dict[str, Any],
    *,
    preset: str | None = None,
    config: str | Path | None = None,
    saved: dict[str, Any] | None = None,
    options: tuple[Option, ...] = OPTIONS,
) -> dict[str, Any]:
    """The run's settings: every key of ``options``, from the layers named in the module
    docstring. ``values`` holds only what was given (snake_case keys)."""
    settings = {o.key: o.default for o in options}
    file = read_config_file(config, options) if config else {}
    for layer in (saved or {}, _preset(preset), file, values):
        settings.update(check_settings(layer, where="a setting", options=options))
    return settings


def _preset(name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return dict(PRESETS[name])


def check_settings(
    values: dict[str, Any], where: str, options: tuple[Option, ...] = OPTIONS
) -> dict[str, Any]:
    """Check keys and value types; ints are accepted where floats are wanted."""
    by_key = {o.key: o for o in options}
    out = {}
    for key, value in values.items():
        if key not in by_key:
            raise ValueError(f"{where}: unknown setting {key!r}; known: {', '.join(by_key)}")
        o = by_key[key]
        if value is None:
            out[key] = None
            continue
        if o.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, o.type) and (o.type is bool or not isinstance(value, bool))
        if not ok:
            example = o.default if o.default is not None else _example(o)
            raise ValueError(
                f"{where}: {key} = {value!r} must be of type {o.type.__name__} "
                f"(e.g. {key} = {example!r})"
            )
        if o.choices and value not in o.choices:
            raise ValueError(f"{where}: {key} = {value!r}; choose one of {list(o.choices)}")
        out[key] = value
    return out


def _example(o: Option) -> Any:
    return {int: 1, float: 0.5, str: "text", bool: True}[o.type]


# -- train.toml ---------------------------------------------------------------------------------


def read_config_file(path: str | Path, options: tuple[Option, ...] = OPTIONS) -> dict[str, Any]:
    """Settings from a TOML file: top-level keys and keys one table deep in ``TABLES``
    ([data], [model], [train]); another table is an error, not silently read.

    Keys may be written as the flags (``max-iters``) or as Python names (``max_iters``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--config {path}: not valid TOML ({e})") from None
    flat: dict[str, Any] = {}
    tables = tuple(dict.fromkeys([*TABLES, *(o.group for o in options)]))
    for key, value in raw.items():
        if isinstance(value, dict) and key not in tables:
            raise ValueError(
                f"--config {path}: unknown table [{key}]; settings go at the top level or in "
                f"{', '.join(f'[{t}]' for t in tables)}"
            )
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for k, v in items:
            k = k.replace("-", "_")
            if k in flat:
                raise ValueError(f"--config {path}: {k} is set twice")
            flat[k] = v
    return check_settings(flat, where=f"--config {path}", options=options)


def write_settings(
    path: str | Path,
    settings: dict[str, Any],
    options: tuple[Option, ...] = OPTIONS,
    verb: str = "train",
) -> Path:
    """Write the settings as TOML, grouped as in ``--help`` (unset ones and other families'
    settings left out); ``verb`` is the command the header names."""
    lines = [
        f"# The settings of this run, written by `scratchllm {verb}`.",
        f"# `scratchllm {verb} --config THIS_FILE --out NEW_DIR` trains the same model again.",
    ]
    family = settings.get("model") or DEFAULT_MODEL
    for group in dict.fromkeys(o.group for o in options):
        entries = []
        for o in options:
            value = settings.get(o.key)
            if o.group != group or value is None:
                continue
            own = o.key not in MODEL_KEYS or o.key == "block_size" or family_has(family, o.key)
            if own:
                entries.append(f"{o.key} = {_toml_value(value)}")
        if entries:
            lines += [f"\n[{group}]", *entries]
    return write_text(path, "\n".join(lines) + "\n")


def saved_settings(
    out: str | Path,
    file: str = SETTINGS_FILE,
    options: tuple[Option, ...] = OPTIONS,
    verb: str = "train",
) -> dict[str, Any]:
    """The settings a run directory was trained with (``out/train.toml``, or ``file``)."""
    path = Path(out) / file
    if not path.is_file():
        raise FileNotFoundError(
            f"--resume: {path} is missing; it records the run's data, tokenizer and model "
            f"(was the run made by `scratchllm {verb}`?)"
        )
    return read_config_file(path, options)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


# -- settings -> configs --------------------------------------------------------------------------


def family_has(name: str, key: str) -> bool:
    """Whether the model ``name`` (a family or an rnn cell) has the setting ``key``."""
    return key in {f.name for f in dataclasses.fields(config_class(name))}


def data_config(settings: dict[str, Any]) -> DataConfig:
    """The ``DataConfig`` of ``settings``."""
    return DataConfig(**{k: settings[k] for k in _DATA})


def model_config(settings: dict[str, Any], vocab_size: int) -> Any:
    """The model's config dataclass, filled from ``settings`` (``settings["model"]`` names
    the family; ``models.build(settings["model"], **asdict(config))`` makes it).

    A model setting that the chosen family does not have is an error, unless it is at its
    built-in default (so a config file or preset for another family never half-applies).
    """
    name = settings["model"]
    values: dict[str, Any] = {"vocab_size": vocab_size}
    for key in MODEL_KEYS:
        value = settings.get(key)
        if family_has(name, key):
            if value is not None:
                values[key] = value
        elif key == "block_size":
            continue  # a training window for families without a model block size
        elif value is not None and value != BY_KEY[key].default:
            users = [f for f in MODEL_NAMES if family_has(f, key)]
            raise ValueError(
                f"--{key.replace('_', '-')} does not apply to --model {name} "
                f"(it is a setting of: {', '.join(users)})"
            )
    try:
        return make_config(name, **values)
    except TypeError as e:
        raise ValueError(f"bad model settings for {name}: {e}") from None


def train_config(settings: dict[str, Any], out: str | Path, has_model_block: bool) -> TrainConfig:
    """The ``TrainConfig`` for ``settings``, writing to ``out``. ``block_size`` is the
    model's when it has one (GPT, RNN), else the training window."""
    values = {k: v for k, v in settings.items() if k in _TRAIN and k != "block_size"}
    if not has_model_block and settings.get("block_size") is not None:
        values["block_size"] = settings["block_size"]
    if values.get("grad_clip") == 0:
        values["grad_clip"] = None
    values["dtype"] = "bfloat16" if settings.get("bf16") else "float32"
    values["progress"] = not settings.get("quiet")
    values["out_dir"] = str(out)
    return TrainConfig(**values)
