"""`scratchllm train`: text (or a language) in, a trained model in a run directory out.

    scratchllm train                                         # char GPT on the built-in corpus
    scratchllm train --data input.txt --preset shakespeare-char --out runs/shakespeare
    scratchllm train --data markov:order=3 --model mlp --n 4 --max-iters 500 --out runs/mlp
    scratchllm train --config run.toml --lr 2e-3             # a file of settings, a flag wins
    scratchllm train --out runs/shakespeare --resume --max-iters 4000   # continue, go further

**Where a setting comes from**, later ones winning: the built-in defaults (the model
family's config dataclass and ``TrainConfig``), a ``--preset``, a ``--config`` TOML file,
then the flags typed on the command line. With ``--resume`` the run's saved settings
(``DIR/train.toml``) come first and the rest override them. Every flag's default is
``argparse.SUPPRESS``, so the namespace holds only what was typed: that is how a flag
given explicitly is told apart from one left at its default.

**The run directory** holds everything of one run::

    DIR/train.toml      the resolved settings (``--config DIR/train.toml`` repeats the run)
    DIR/data/           the tokenized corpus (a TokenDataset) and its tokenizer
    DIR/last/, best/    checkpoints written by the Trainer (resume from last/)
    DIR/metrics.jsonl   one JSON object per logged step; DIR/loss.png the loss curve

The functions here (``resolve_settings``, ``train_from_settings``) are what ``scratchllm
demo`` runs too, so a demo run can be resumed and sampled like any other.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchllm.cli import UserError

FAMILIES = ("gpt", "mlp", "rnn", "gru", "lstm", "ngram")
TOKENIZERS = ("char", "word", "bpe")
SETTINGS_FILE = "train.toml"
DATA_DIR = "data"
_PREPARED = "prepared.json"  # in DATA_DIR: what the dataset was made from


@dataclass(frozen=True)
class Option:
    """One setting: its flag, its TOML key (``key``), its type and its help text."""

    key: str
    type: type
    help: str
    group: str
    default: Any = None  # the built-in default (None = the model family's own, or "none")
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


def _o(group: str, key: str, type_: type, default: Any, help_: str, **kw: Any) -> Option:
    return Option(key, type_, help_, group, default, **kw)


# The defaults written here are the dataclasses' (GPTConfig, TrainConfig, ...); a test holds
# them equal, so --help never needs torch imported to show them.
# fmt: off
OPTIONS: tuple[Option, ...] = (
    # -- data and tokenizer -----------------------------------------------------------------
    _o("data", "data", str, "stdlib-docs", "a UTF-8 text file, 'stdlib-docs' (the built-in "
       "corpus: Python's docstrings, no download) or a language spec such as markov:order=3",
       metavar="FILE|SPEC"),
    _o("data", "samples", int, 10_000, "language spec: how many samples to generate"),
    _o("data", "data_seed", int, 0, "language spec: the seed of the generated samples"),
    _o("data", "val_fraction", float, 0.1, "the last fraction of the tokens held out"),
    _o("data", "tokenizer", str, "char", "char, word or bpe (trained on the data), or a "
       "directory holding a saved tokenizer.json", metavar="{char,word,bpe,DIR}"),
    _o("data", "vocab_size", int, None, "word/bpe: vocabulary size (bpe default 512); char: "
       "keep the most frequent characters, others become <unk>", metavar="V"),
    # -- model --------------------------------------------------------------------------------
    _o("model", "model", str, "gpt", "model family", choices=FAMILIES),
    _o("model", "n", int, None, "ngram/mlp: tokens per n-gram (context n-1) [ngram 3, mlp 4]"),
    _o("model", "n_layer", int, None, "gpt/rnn: layers [gpt 6, rnn 2]"),
    _o("model", "n_head", int, 6, "gpt: attention heads"),
    _o("model", "n_embd", int, None, "embedding width [gpt 384, mlp 32, rnn 64]"),
    _o("model", "n_hidden", int, None, "mlp/rnn: hidden width [mlp 256, rnn 256]"),
    _o("model", "ffn_hidden", int, None, "gpt: feed-forward width (default: 4 * n_embd)"),
    _o("model", "block_size", int, None, "context in tokens: gpt/rnn model size and training "
       "window; mlp/ngram training window [gpt 256, rnn 128, mlp 64]"),
    _o("model", "dropout", float, 0.0, "gpt/mlp/rnn: dropout while training"),
    _o("model", "bias", bool, True, "gpt/rnn: biases in linear layers and norms"),
    _o("model", "pos", str, "learned", "gpt: positions", choices=("learned", "sinusoidal", "rope")),
    _o("model", "rope_base", float, 10000.0, "gpt, pos rope: base of the rotation frequencies"),
    _o("model", "norm", str, "layernorm", "gpt: normalisation", choices=("layernorm", "rmsnorm")),
    _o("model", "act", str, None, "activation [gpt gelu, mlp tanh]",
       choices=("gelu", "gelu_tanh", "relu", "tanh")),
    _o("model", "ffn", str, "mlp", "gpt: feed-forward kind", choices=("mlp", "moe")),
    _o("model", "n_expert", int, 4, "gpt, ffn moe: experts per block"),
    _o("model", "moe_top_k", int, 1, "gpt, ffn moe: experts per token"),
    _o("model", "tie_weights", bool, True, "gpt: lm_head shares the token embedding matrix"),
    _o("model", "smoothing", float, 1.0, "ngram: add-k smoothing pseudo-count"),
    _o("model", "direct", bool, False, "mlp: Bengio's direct embedding-to-output connections"),
    _o("model", "fast", bool, False, "rnn: run torch's fused RNN kernels (same numbers)"),
    # -- training (TrainConfig, nanoGPT's names) ----------------------------------------------
    _o("train", "max_iters", int, 2000, "optimizer steps in the whole run"),
    _o("train", "batch_size", int, 12, "windows per micro-batch"),
    _o("train", "gradient_accumulation_steps", int, 1, "micro-batches per optimizer step"),
    _o("train", "lr", float, 1e-3, "peak learning rate (after warmup)"),
    _o("train", "min_lr", float, 1e-4, "the floor the cosine decays to"),
    _o("train", "warmup_iters", int, None, "linear warmup steps (default: 5%% of the decay "
       "steps, at most 100)"),
    _o("train", "lr_decay_iters", int, None, "step where the cosine reaches min_lr "
       "(default: max_iters)"),
    _o("train", "schedule", str, "cosine", "learning-rate schedule",
       choices=("cosine", "constant")),
    _o("train", "weight_decay", float, 0.1, "AdamW decoupled weight decay (matrices only)"),
    _o("train", "beta1", float, 0.9, "AdamW beta1"),
    _o("train", "beta2", float, 0.99, "AdamW beta2"),
    _o("train", "grad_clip", float, 1.0, "clip the global gradient norm (0: off)"),
    _o("train", "label_smoothing", float, 0.0, "mix this much of the uniform distribution in"),
    _o("train", "eval_interval", int, 250, "evaluate and checkpoint every this many steps"),
    _o("train", "eval_iters", int, 20, "validation batches per evaluation"),
    _o("train", "log_interval", int, 10, "steps between metrics lines"),
    _o("train", "early_stopping", int, None, "stop after this many evaluations without a new "
       "best (default: off)"),
    _o("train", "validity_samples", int, 32, "language data: samples checked at each evaluation"),
    _o("train", "seed", int, 1337, "seed of initialisation, data order and dropout"),
    _o("train", "device", str, "auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps",
       metavar="DEVICE"),
    _o("train", "compile", bool, False, "torch.compile the model"),
    _o("train", "bf16", bool, False, "bf16 autocast (accelerators; skipped on CPU)"),
    _o("train", "quiet", bool, False, "no progress bar"),
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


# -- the parser ---------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (n-gram, MLP, RNN/GRU/LSTM or GPT) on text or a language",
        description="Train a language model and write a run directory: checkpoints (last/, "
        "best/), metrics.jsonl, loss.png and train.toml (its settings). Settings come from "
        "the defaults, then --preset, then --config FILE.toml, then the flags you type (a "
        "flag always wins). --resume continues the run in --out with its saved settings; "
        "flags override them (e.g. a larger --max-iters).",
        epilog="Example: scratchllm train --data input.txt --preset shakespeare-char "
        "--out runs/shakespeare",
        argument_default=argparse.SUPPRESS,
    )
    add_options(p)
    run = p.add_argument_group("run")
    run.add_argument(
        "--config",
        type=Path,
        metavar="FILE.toml",
        help="TOML file of settings (keys as the flags, e.g. max_iters = 500; tables such "
        "as [model] are allowed); flags given on the command line override it",
    )
    run.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="named settings: " + "; ".join(_preset_text(n) for n in sorted(PRESETS)),
    )
    run.add_argument("--out", metavar="DIR", help="run directory (default: out)")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --out exactly where it stopped, with its saved "
        "settings; flags given now override them (default: start a new run)",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="start a new run in --out even if one is there (default: refuse)",
    )
    p.set_defaults(func=run_command)


def add_options(p: argparse.ArgumentParser) -> None:
    """Add every OPTIONS flag to ``p``, grouped, each help text ending with its default."""
    groups = {
        "data": p.add_argument_group("data and tokenizer"),
        "model": p.add_argument_group("model (a value in [brackets] is the family's default)"),
        "train": p.add_argument_group("training (nanoGPT's names)"),
    }
    for o in OPTIONS:
        shown = o.help if "(default:" in o.help else f"{o.help} (default: {_show(o)})"
        kw: dict[str, Any] = {"help": shown}
        if o.type is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = o.type
            if o.choices:
                kw["choices"] = o.choices
            if not o.choices:
                kw["metavar"] = o.metavar or {int: "N", float: "X", str: "S"}[o.type]
        groups[o.group].add_argument(o.flag, **kw)


def _show(o: Option) -> str:
    if o.default is None:
        return "see brackets" if "[" in o.help else "none"
    if o.type is bool:
        return "on" if o.default else "off"
    return str(o.default)


def _preset_text(name: str) -> str:
    return f"{name} (" + ", ".join(f"{k}={v}" for k, v in PRESETS[name].items()) + ")"


# -- settings: defaults < saved < preset < config file < flags -----------------------------------


def resolve_settings(
    flags: dict[str, Any],
    *,
    preset: str | None = None,
    config: str | Path | None = None,
    saved: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's settings: every key of ``OPTIONS``, from the layers named in the module
    docstring. ``flags`` holds only the flags typed (snake_case keys)."""
    settings = {o.key: o.default for o in OPTIONS}
    for layer in (
        saved or {},
        _preset(preset),
        read_config_file(config) if config else {},
        flags,
    ):
        settings.update(check_settings(layer, where="a setting"))
    return settings


def _preset(name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return dict(PRESETS[name])


def check_settings(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Check keys and value types; ints are accepted where floats are wanted."""
    out = {}
    for key, value in values.items():
        if key not in BY_KEY:
            raise ValueError(f"{where}: unknown setting {key!r}; known: {', '.join(BY_KEY)}")
        o = BY_KEY[key]
        if value is None:
            out[key] = None
            continue
        if o.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, o.type) and (o.type is bool or not isinstance(value, bool))
        if not ok:
            raise ValueError(
                f"{where}: {key} = {value!r} must be of type {o.type.__name__} "
                f"(e.g. {key} = {o.default if o.default is not None else _example(o)!r})"
            )
        if o.choices and value not in o.choices:
            raise ValueError(f"{where}: {key} = {value!r}; choose one of {list(o.choices)}")
        out[key] = value
    return out


def _example(o: Option) -> Any:
    return {int: 1, float: 0.5, str: "text", bool: True}[o.type]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML file: top-level keys and keys one table deep ([model], ...).

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
    for key, value in raw.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for k, v in items:
            k = k.replace("-", "_")
            if k in flat:
                raise ValueError(f"--config {path}: {k} is set twice")
            flat[k] = v
    return check_settings(flat, where=f"--config {path}")


def write_settings(path: Path, settings: dict[str, Any]) -> None:
    """Write the settings as TOML, grouped as in ``--help`` (unset ones left out)."""
    lines = [
        "# The settings of this run, written by `scratchllm train`.",
        "# `scratchllm train --config THIS_FILE --out NEW_DIR` trains the same model again.",
    ]
    for group in ("data", "model", "train"):
        lines.append(f"\n[{group}]")
        for o in OPTIONS:
            value = settings.get(o.key)
            if o.group != group or value is None:
                continue
            family = settings["model"]
            own = o.key not in MODEL_KEYS or o.key == "block_size" or _family_has(family, o.key)
            if not own:
                continue  # another family's setting: leave it out of this run's file
            lines.append(f"{o.key} = {_toml_value(value)}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


# -- settings -> library objects -------------------------------------------------------------------


def model_config(settings: dict[str, Any], vocab_size: int) -> tuple[type, Any]:
    """The model class and its config dataclass, filled from ``settings``.

    A model setting that the chosen family does not have is an error, unless it is at its
    built-in default (so a config file or preset for another family never half-applies).
    """
    import dataclasses

    from scratchllm.models import GPT, MLPLM, RNNLM, NGram

    family = settings["model"]
    cls = {"gpt": GPT, "mlp": MLPLM, "ngram": NGram}.get(family, RNNLM)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    values: dict[str, Any] = {"vocab_size": vocab_size}
    if cls is RNNLM:
        values["cell"] = family
    for key in MODEL_KEYS:
        value = settings.get(key)
        if key in fields:
            if value is not None:
                values[key] = value
        elif key == "block_size":
            continue  # a training window for families without a model block size
        elif value is not None and value != BY_KEY[key].default:
            users = [f for f in FAMILIES if _family_has(f, key)]
            raise ValueError(
                f"--{key.replace('_', '-')} does not apply to --model {family} "
                f"(it is a setting of: {', '.join(users)})"
            )
    try:
        return cls, cls.config_class(**values)
    except TypeError as e:
        raise ValueError(f"bad model settings for {family}: {e}") from None


def _family_has(family: str, key: str) -> bool:
    import dataclasses

    from scratchllm.models import GPTConfig, MLPConfig, NGramConfig, RNNConfig

    cfg = {"gpt": GPTConfig, "mlp": MLPConfig, "ngram": NGramConfig}.get(family, RNNConfig)
    return key in {f.name for f in dataclasses.fields(cfg)}


def train_config(settings: dict[str, Any], out: Path, has_model_block: bool):  # noqa: ANN201
    """The ``TrainConfig`` for ``settings``, writing to ``out``."""
    import dataclasses

    from scratchllm.training import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in settings.items() if k in fields and k != "block_size"}
    if not has_model_block and settings.get("block_size") is not None:
        values["block_size"] = settings["block_size"]
    if values.get("grad_clip") == 0:
        values["grad_clip"] = None
    values["dtype"] = "bfloat16" if settings.get("bf16") else "float32"
    values["progress"] = not settings.get("quiet")
    values["out_dir"] = str(out)
    return TrainConfig(**values)


# -- data ---------------------------------------------------------------------------------------


@dataclass
class PreparedData:
    dataset: Any  # TokenDataset
    tokenizer: Any
    language: Any | None  # the Language of a spec, for validity at evaluation
    n_chars: int | None  # characters of the corpus (None when reused without reading it)


def prepare_data(settings: dict[str, Any], out: Path, tokenizer: Any = None) -> PreparedData:
    """Tokenize the corpus into ``out/data`` (a TokenDataset), or reuse it when it was made
    from the same data and tokenizer settings. ``tokenizer`` (on resume: the checkpoint's)
    is used instead of training one, and must be the one a reused dataset was made with.

    Under torchrun only rank 0 builds; the other processes wait for it and open the result.
    """
    from scratchllm.data import TokenDataset, resolve_data
    from scratchllm.training.distributed import detect

    directory = out / DATA_DIR
    language = _language(settings["data"])
    key = _data_key(settings)
    if detect().rank != 0:
        dataset = _wait_for(directory, key)
        return PreparedData(dataset, tokenizer or dataset.tokenizer(), language, None)
    dataset = _reuse(directory, key, tokenizer)
    if dataset is not None:
        return PreparedData(dataset, tokenizer or dataset.tokenizer(), language, None)
    corpus = resolve_data(
        settings["data"], n_samples=settings["samples"], seed=settings["data_seed"]
    )
    if tokenizer is None:
        tokenizer = make_tokenizer(settings["tokenizer"], settings["vocab_size"], corpus.text)
    _check_encodable(tokenizer, corpus.text, settings)
    (directory / _PREPARED).unlink(missing_ok=True)
    dataset = TokenDataset.from_corpus(corpus, tokenizer, directory, settings["val_fraction"])
    stamp = directory / (_PREPARED + ".tmp")
    stamp.write_text(json.dumps({**key, "sha256": _tokenizer_hash(tokenizer)}), encoding="utf-8")
    stamp.replace(directory / _PREPARED)
    return PreparedData(dataset, tokenizer, language, len(corpus.text))


def _data_key(settings: dict[str, Any]) -> dict[str, Any]:
    """What a prepared dataset depends on: the data, how it is split, the tokenizer asked for."""
    key = {k: settings[k] for k in ("data", "samples", "data_seed", "val_fraction")}
    key["tokenizer"] = [settings["tokenizer"], settings["vocab_size"]]
    for name, arg in (("data_file", settings["data"]), ("tokenizer_file", settings["tokenizer"])):
        path = Path(arg).expanduser()
        if path.is_dir():
            path = path / "tokenizer.json"
        if path.is_file():  # a file that changed since is a different corpus / tokenizer
            st = path.stat()
            key[name] = [str(path.resolve()), st.st_size, st.st_mtime_ns]
    return key


def make_tokenizer(kind: str, vocab_size: int | None, text: str):  # noqa: ANN201
    """A tokenizer trained on ``text`` (char, word, bpe), or loaded from a directory."""
    from scratchllm import tokenizers

    if kind == "char":
        return tokenizers.CharTokenizer.train(
            text, vocab_size=vocab_size, unk=vocab_size is not None
        )
    if kind == "word":
        return tokenizers.WordTokenizer.train(text, vocab_size=vocab_size)
    if kind == "bpe":
        return tokenizers.BPETokenizer.train(text, vocab_size=vocab_size or 512)
    path = Path(kind).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"--tokenizer {kind!r}: not char, word or bpe, and no such directory or file; "
            "pass one of those kinds or a directory holding a saved tokenizer.json"
        )
    return tokenizers.load(path)


def _check_encodable(tokenizer: Any, text: str, settings: dict[str, Any]) -> None:
    """A loaded tokenizer must cover the corpus; say so before tokenizing half of it."""
    if settings["tokenizer"] in TOKENIZERS:
        return
    sample = text[: 1 << 16]
    try:
        tokenizer.encode(sample)
    except ValueError as e:
        raise ValueError(
            f"--tokenizer {settings['tokenizer']} cannot encode --data {settings['data']}: {e}"
        ) from None


def _tokenizer_hash(tokenizer: Any) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return hashlib.sha256(Path(tokenizer.save(d)).read_bytes()).hexdigest()


def _reuse(directory: Path, key: dict[str, Any], tokenizer: Any = None):  # noqa: ANN202
    """The dataset in ``directory`` if its stamp matches ``key`` (and ``tokenizer``), else None."""
    from scratchllm.data import TokenDataset

    try:
        stamp = json.loads((directory / _PREPARED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sha = stamp.pop("sha256", None) if isinstance(stamp, dict) else None
    if stamp != json.loads(json.dumps(key)):
        return None
    if tokenizer is not None and sha != _tokenizer_hash(tokenizer):
        return None
    return TokenDataset(directory)


def _wait_for(directory: Path, key: dict[str, Any], timeout_s: float = 1800.0):  # noqa: ANN202
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dataset = _reuse(directory, key)
        if dataset is not None:
            return dataset
        time.sleep(0.5)
    raise TimeoutError(f"{directory}: rank 0 did not finish preparing the data in {timeout_s} s")


def _language(data: str):  # noqa: ANN202
    """The language a spec names (None for a file or the built-in corpus)."""
    from scratchllm.data.corpus import DEFAULT_NAMES
    from scratchllm.data.languages import FAMILIES as LANGS
    from scratchllm.data.languages import get

    if data in DEFAULT_NAMES or Path(data).expanduser().is_file():
        return None
    if data.split(":", 1)[0].strip().lower() in LANGS:
        return get(data)
    return None


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """What ``train_from_settings`` did: the settings, the data, the model and the result."""

    settings: dict[str, Any]
    out: Path
    data: PreparedData
    model: Any
    result: Any  # TrainResult


def train_from_settings(
    settings: dict[str, Any],
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    say=print,  # noqa: ANN001
) -> Run:
    """Prepare the data, build (or restore) the model and train it into ``out``."""
    from scratchllm.training import Trainer

    out = Path(out)
    _check_out_dir(out, resume, force)
    ckpt_tokenizer = None
    if resume:
        from scratchllm.training.checkpoint import load_checkpoint

        ckpt_tokenizer = load_checkpoint(out, require_tokenizer=True).tokenizer
    t0 = time.perf_counter()
    data = prepare_data(settings, out, ckpt_tokenizer)
    tok = data.tokenizer
    cls, mcfg = model_config(settings, tok.vocab_size)
    has_block = hasattr(mcfg, "block_size")
    tcfg = train_config(settings, out, has_block)
    ds = data.dataset
    m = ds.meta
    corpus = f"{data.n_chars:,} characters -> " if data.n_chars else ""
    say(
        f"data      {settings['data']}: {corpus}{m.n_tokens:,} tokens "
        f"({m.n_train:,} train, {m.n_val:,} validation) in {time.perf_counter() - t0:.1f} s"
    )
    say(f"tokenizer {tok.kind}, {tok.vocab_size:,} tokens")
    if resume:
        trainer = Trainer.resume(out, ds, tcfg, data.language, log=say)
        if trainer.model.config != mcfg:
            raise ValueError(_arch_change(trainer.model.config, mcfg, out))
        model = trainer.model
    else:
        import torch

        torch.manual_seed(tcfg.seed)  # the initial weights, before the Trainer reseeds
        model = cls(mcfg)
        trainer = Trainer(model, ds, tcfg, tok, data.language, log=say)
    if trainer.counting:
        say(f"model     {cls.__name__} ({_describe(mcfg)}): counts, no training steps")
    else:
        n = sum({id(p): p.numel() for p in model.parameters()}.values())
        say(f"model     {cls.__name__} ({_describe(mcfg)}), {n:,} parameters")
        tokens = tcfg.batch_size * tcfg.gradient_accumulation_steps * trainer.block_size
        warmup = getattr(tcfg, "warmup_steps", tcfg.warmup_iters)
        say(
            f"training  {tcfg.max_iters:,} steps x {tokens:,} tokens, lr {tcfg.lr:g} "
            f"(warmup {warmup}, {tcfg.schedule} to {tcfg.min_lr:g}), device {tcfg.device}"
        )
    write_settings(_mkdir(out) / SETTINGS_FILE, settings)
    result = trainer.train()
    return Run(settings, out, data, model, result)


def _check_out_dir(out: Path, resume: bool, force: bool) -> None:
    from scratchllm.training.checkpoint import LAST

    has_run = (out / LAST).exists() or (out / f".{LAST}.old").exists()
    if resume and not has_run:
        raise FileNotFoundError(
            f"--resume: {out} holds no run to continue (no {out / LAST}); "
            "start one without --resume"
        )
    if not resume and has_run and not force:
        raise UserError(
            f"{out} already holds a run; continue it with --resume, start over in it with "
            "--force, or choose another --out"
        )


def _arch_change(saved: Any, new: Any, out: Path) -> str:
    import dataclasses

    a, b = dataclasses.asdict(saved), dataclasses.asdict(new)
    diff = [f"{k}: {a[k]!r} -> {b.get(k)!r}" for k in a if a[k] != b.get(k)]
    return (
        f"--resume: the model in {out} cannot change ({'; '.join(diff)}); drop those flags, "
        "or start a new run with --out elsewhere"
    )


def _describe(cfg: Any) -> str:
    import dataclasses

    keys = ("cell", "n", "n_layer", "n_head", "n_embd", "n_hidden", "block_size", "pos", "norm")
    d = dataclasses.asdict(cfg)
    return ", ".join(f"{k}={d[k]}" for k in keys if k in d)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def saved_settings(out: Path) -> dict[str, Any]:
    """The settings a run directory was trained with (``out/train.toml``)."""
    path = out / SETTINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"--resume: {path} is missing; it records the run's data, tokenizer and model "
            "(was the run made by `scratchllm train`?)"
        )
    return read_config_file(path)


def summary_lines(run: Run) -> list[str]:
    """What a finished run prints: the losses, where its files are, what to do next."""
    r = run.result
    lines = []
    status = {"completed": "done", "early_stopped": "stopped early", "interrupted": "interrupted"}
    rate = f", {r.tokens_per_s:,.0f} tokens/s" if r.tokens_per_s else ""
    done = status.get(r.status, r.status)
    lines.append(f"\n{done}: {r.steps:,} steps in {r.elapsed_s:.0f} s{rate}")
    if r.final_train_loss is not None:
        lines.append(f"  train loss       {r.final_train_loss:.4f}")
    if r.final_val_loss is not None:
        lines.append(
            f"  validation loss  {r.final_val_loss:.4f}  (perplexity {r.final_perplexity:.2f})"
        )
    if r.best_val_loss is not None and r.best_step is not None:
        lines.append(f"  best validation  {r.best_val_loss:.4f}  at step {r.best_step}")
    for key in ("valid", "unique"):
        if key in r.last_eval:
            lines.append(f"  {key:<16} {r.last_eval[key]:.1%} of sampled strings")
    lines.append("files")
    for label, path in (
        ("checkpoint", r.checkpoint),
        ("best", r.best_checkpoint),
        ("metrics", r.metrics_file),
        ("loss plot", r.plot_file),
        ("settings", run.out / SETTINGS_FILE),
    ):
        if path is not None:
            lines.append(f"  {label:<16} {path}")
    lines.append("next")
    if run.data.language is not None:  # samples start from the separator; measure them
        lines.append(f"  scratchllm sample {run.out} --prompt '' --num-samples 5")
        lines.append(f"  scratchllm eval {run.out} --data {shlex.quote(run.settings['data'])}")
    else:
        lines.append(f"  scratchllm sample {run.out} --prompt 'The '")
    lines.append(f"  scratchllm train --out {run.out} --resume --max-iters {2 * r.steps}")
    return lines


def run_command(args: argparse.Namespace) -> int:
    flags = {
        k: v
        for k, v in vars(args).items()
        if k in BY_KEY  # only what was typed: every default is SUPPRESS
    }
    out = Path(getattr(args, "out", "out"))
    resume = getattr(args, "resume", False)
    saved = saved_settings(out) if resume else None
    if resume:  # (a changed model flag is caught against the checkpoint's model config)
        for key in ("tokenizer", "vocab_size"):
            if key in flags and flags[key] != saved.get(key, BY_KEY[key].default):
                raise UserError(
                    f"--resume: --{key.replace('_', '-')} cannot change (the run in {out} used "
                    f"{saved.get(key)!r}); the checkpoint's tokenizer is used"
                )
    settings = resolve_settings(
        flags,
        preset=getattr(args, "preset", None),
        config=getattr(args, "config", None),
        saved=saved,
    )
    run = train_from_settings(settings, out, resume=resume, force=getattr(args, "force", False))
    print("\n".join(summary_lines(run)))
    return 130 if run.result.status == "interrupted" else 0
