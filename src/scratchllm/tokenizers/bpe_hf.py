"""Byte-level BPE in the files other tools use: HF ``tokenizer.json`` and GPT-2's vocab/merges.

Both formats write a token as its byte-level string (``bpe_bytes``) and a merge as its two
parts. Here they are converted to and from plain data, so ``BPETokenizer`` stays about
encoding; every way a file can be wrong becomes a ``ValueError`` that names the file.

Plain data means:

- ``vocab``: ``{id: token bytes}`` for the ordinary (mergeable) tokens,
- ``merges``: ``[(left id, right id), ...]`` in priority order,
- ``pattern``: the pre-tokenization regex,
- ``specials``: ``{special token string: id}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import regex

from scratchllm.tokenizers.bpe_bytes import is_byte_level, str_to_token, token_to_str
from scratchllm.tokenizers.bpe_pattern import GPT2_PATTERN

Vocab = dict[int, bytes]
Merges = list[tuple[int, int]]


def _byte_level(use_regex: bool) -> dict[str, Any]:
    return {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": True,
        "use_regex": use_regex,
    }


def to_tokenizer_json(
    vocab: Mapping[int, bytes],
    merges: Sequence[tuple[int, int]],
    pattern: str,
    specials: Mapping[str, int],
) -> dict[str, Any]:
    """The Hugging Face ``tokenizer.json`` object for a byte-level BPE.

    The GPT-2 pattern is HF's own ``ByteLevel`` pre-tokenizer (which is how GPT-2's file says
    it); any other pattern is a ``Split`` on that regex followed by ``ByteLevel`` without its
    regex. The pattern is thereby stored in the file in a form HF runs, and read back from it.
    """
    if pattern == GPT2_PATTERN:
        pre_tokenizer = _byte_level(use_regex=True)
    else:
        split = {
            "type": "Split",
            "pattern": {"Regex": pattern},
            "behavior": "Isolated",
            "invert": False,
        }
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [split, _byte_level(False)]}
    model_vocab = {token_to_str(t): i for i, t in sorted(vocab.items())}
    for content, i in sorted(specials.items(), key=lambda kv: kv[1]):
        model_vocab.setdefault(content, i)  # HF's own trainer lists specials in the vocab too
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for content, i in sorted(specials.items(), key=lambda kv: kv[1])
        ],
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": {**_byte_level(True), "add_prefix_space": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": model_vocab,
            # "left right" strings (GPT-2's own style) read in every tokenizers version;
            # byte-level strings never hold a space, so the split is unambiguous.
            "merges": [f"{token_to_str(vocab[a])} {token_to_str(vocab[b])}" for a, b in merges],
        },
    }


def from_tokenizer_json(
    data: Mapping[str, Any], file: Path
) -> tuple[Vocab, Merges, str, dict[str, int], bool]:
    """Read a byte-level BPE ``tokenizer.json`` (ours or one HF wrote, like GPT-2's).

    Returns ``(vocab, merges, pattern, specials, ignore_merges)``. Parts this tokenizer
    cannot reproduce (a normalizer, a prefix space, dropout, a non-byte-level model) are
    refused with an error rather than silently giving different ids.
    """
    model = data.get("model")
    if not isinstance(model, dict) or model.get("type", "BPE") != "BPE" or "vocab" not in model:
        kind = model.get("type") if isinstance(model, dict) else None
        raise ValueError(
            f"{file} is not a BPE tokenizer.json (its model is {kind!r}, expected a 'BPE' model "
            "with a vocab and merges); load it with the tokenizer class that wrote it"
        )
    bad = _unsupported(data, model)
    if bad:
        raise ValueError(f"{file}: {bad}, which scratchllm's byte-level BPE does not support")
    pattern = _pattern_of(data.get("pre_tokenizer"), file)

    added = data.get("added_tokens") or []
    try:
        specials = {t["content"]: int(t["id"]) for t in added}
    except (TypeError, KeyError, ValueError):
        raise ValueError(
            f"{file}: 'added_tokens' must be a list of {{id, content}} objects"
        ) from None
    special_ids = set(specials.values())
    if not isinstance(model["vocab"], dict):
        raise ValueError(f"{file}: model 'vocab' must be an object mapping tokens to ids")
    strings = {s: i for s, i in model["vocab"].items() if i not in special_ids}
    merges = model.get("merges") or []
    return (
        *_from_strings(strings, merges, file),
        pattern,
        specials,
        bool(model.get("ignore_merges")),
    )


def _unsupported(data: Mapping[str, Any], model: Mapping[str, Any]) -> str | None:
    if data.get("normalizer") is not None:
        return f"it has a normalizer ({_type(data['normalizer'])})"
    if model.get("dropout") not in (None, 0, 0.0):
        return f"it has BPE dropout {model['dropout']}"
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return "its BPE model marks word pieces (continuing_subword_prefix / end_of_word_suffix)"
    if model.get("byte_fallback"):
        return "its BPE model uses byte_fallback (a SentencePiece-style vocabulary)"
    decoder = data.get("decoder")
    if decoder is not None and _type(decoder) != "ByteLevel":
        return f"its decoder is {_type(decoder)!r}, not ByteLevel"
    return None


def _type(part: Any) -> Any:
    return part.get("type") if isinstance(part, dict) else part


def _pattern_of(pre: Any, file: Path) -> str:
    """The pre-tokenization regex a tokenizer.json's ``pre_tokenizer`` describes."""
    try:
        pattern = _pattern_or_none(pre, file)
    except (AttributeError, TypeError, KeyError, ValueError) as e:
        if isinstance(e, ValueError) and str(e).startswith(str(file)):
            raise
        pattern = None
    if pattern is None:
        raise ValueError(
            f"{file}: pre_tokenizer {json.dumps(pre)[:200]} is not byte-level BPE's (expected "
            "ByteLevel, or Sequence[Split(regex), ByteLevel(use_regex=false)])"
        )
    return pattern


def _pattern_or_none(pre: Any, file: Path) -> str | None:
    if pre.get("type") == "Sequence" and len(pre["pretokenizers"]) == 1:
        pre = pre["pretokenizers"][0]
    if pre.get("type") == "ByteLevel":
        _check_byte_level(pre, file, use_regex=True)
        return GPT2_PATTERN
    if pre.get("type") != "Sequence" or len(pre["pretokenizers"]) != 2:
        return None
    split, byte_level = pre["pretokenizers"]
    if split.get("type") != "Split" or byte_level.get("type") != "ByteLevel":
        return None
    _check_byte_level(byte_level, file, use_regex=False)
    if split.get("behavior") != "Isolated" or split.get("invert"):
        raise ValueError(
            f"{file}: its Split pre-tokenizer has behavior {split.get('behavior')!r} "
            f"(invert={split.get('invert')}); only 'Isolated' without invert is supported"
        )
    pat = split["pattern"]
    if "Regex" in pat:
        return str(pat["Regex"])
    if "String" in pat:
        return regex.escape(pat["String"])
    return None


def _check_byte_level(pre: Mapping[str, Any], file: Path, use_regex: bool) -> None:
    if pre.get("add_prefix_space"):
        raise ValueError(
            f"{file}: its ByteLevel pre-tokenizer has add_prefix_space=true, which scratchllm's "
            "BPE does not support (set it to false: GPT-2 itself uses false)"
        )
    if pre.get("use_regex", True) != use_regex:
        raise ValueError(f"{file}: its ByteLevel pre-tokenizer has use_regex={not use_regex}")


def _from_strings(
    strings: Mapping[str, int], merges: Iterable[str | Sequence[str]], file: Path
) -> tuple[Vocab, Merges]:
    """Byte-level token strings and merge lines -> ``(vocab, merges)`` over ids."""
    vocab: Vocab = {}
    for s, i in strings.items():
        if not isinstance(s, str) or not is_byte_level(s) or isinstance(i, bool):
            raise ValueError(
                f"{file}: vocab entry {s!r} is not a byte-level token (its characters must come "
                "from GPT-2's byte alphabet); is this a byte-level BPE vocabulary?"
            )
        if not isinstance(i, int) or i < 0:
            raise ValueError(f"{file}: vocab entry {s!r} has id {i!r}, not a non-negative int")
        vocab[i] = str_to_token(s)
    pairs: Merges = []
    for n, line in enumerate(merges, 1):
        parts = line.split(" ") if isinstance(line, str) else list(line)
        if len(parts) != 2 or any(p not in strings for p in parts):
            raise ValueError(
                f"{file}: merge #{n} {line!r} is not two tokens of the vocabulary separated by "
                "a space"
            )
        pairs.append((strings[parts[0]], strings[parts[1]]))
    return vocab, pairs


GPT2_END = "<|endoftext|>"
# What transformers' GPT2Tokenizer makes <|endoftext|> when no file names these tokens.
_GPT2_DEFAULTS = ("bos_token", "eos_token", "unk_token")
_NAMED = (*_GPT2_DEFAULTS, "sep_token", "pad_token", "cls_token", "mask_token")
_LISTS = ("additional_special_tokens", "extra_special_tokens")


def read_gpt2_files(
    vocab_json: str | Path, merges_txt: str | Path, special_tokens: Iterable[str] | None = None
) -> tuple[Vocab, Merges, dict[str, int]]:
    """Read GPT-2's ``vocab.json`` + ``merges.txt`` pair into ``(vocab, merges, specials)``.

    Every vocab.json entry is an ordinary byte-level token unless it is declared special:
    by ``special_tokens`` when given, else by the Hugging Face files beside vocab.json
    (``declared_specials``). An entry that no merge makes is still ordinary, as in HF:
    ``"Ġb"`` decodes to ``" b"``.
    """
    vocab_json, merges_txt = Path(vocab_json), Path(merges_txt)
    for path in (vocab_json, merges_txt):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist; pass GPT-2's vocab.json and merges.txt"
            )
    strings = _read_json_object(vocab_json, "a JSON vocab.json")
    try:
        lines = merges_txt.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{merges_txt} is not UTF-8 text ({e})") from None
    # The first line may be a "#version: 0.2" header; blank lines carry nothing.
    lines = [ln for ln in lines if ln.strip() and not ln.startswith("#version")]
    if special_tokens is None:
        specials = declared_specials(vocab_json.parent, strings)
    else:
        specials = {}
        for s in special_tokens:
            if s not in strings:
                raise ValueError(f"special token {s!r} is not in {vocab_json}")
            specials[s] = strings[s]
    ordinary = {s: i for s, i in strings.items() if s not in specials}
    vocab, merges = _from_strings(ordinary, lines, merges_txt)
    return vocab, merges, specials


def declared_specials(directory: Path, strings: Mapping[str, int]) -> dict[str, int]:
    """The special tokens that the HF files beside a vocab.json declare, with their ids.

    Read as ``transformers`` reads them: ``tokenizer_config.json`` and
    ``special_tokens_map.json`` name tokens (``bos_token``, ..., ``additional_special_tokens``),
    the config's ``added_tokens_decoder`` gives ``{id: {"content", "special"}}``, and
    ``added_tokens.json`` maps tokens added beyond the vocabulary to ids. A named token
    takes its vocab.json id. An added token outside vocab.json is special whatever its
    flag (scratchllm's BPE has no other kind of token that merges cannot make). GPT-2's
    ``<|endoftext|>`` is special unless the files set all of bos, eos and unk (it is
    ``transformers.GPT2Tokenizer``'s default for each).
    """
    named: dict[str, Path] = {}  # token -> the file that names it
    with_id: dict[str, tuple[object, Path]] = {}  # token -> (its id, the file)
    set_defaults: set[str] = set()
    for file in (directory / "tokenizer_config.json", directory / "special_tokens_map.json"):
        if not file.is_file():
            continue
        data = _read_json_object(file, "a JSON object")
        set_defaults.update(k for k in _GPT2_DEFAULTS if k in data)
        values = [data.get(k) for k in _NAMED]
        for k in _LISTS:
            values += data.get(k) or []
        for v in values:
            content = v.get("content") if isinstance(v, dict) else v
            if isinstance(content, str) and content:
                named.setdefault(content, file)
        decoder = data.get("added_tokens_decoder")
        decoder = {} if decoder is None else decoder
        if not isinstance(decoder, dict):
            raise ValueError(f"{file}: 'added_tokens_decoder' must map ids to token objects")
        for key, entry in decoder.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
                raise ValueError(f"{file}: added_tokens_decoder[{key!r}] has no 'content'")
            if entry.get("special") or entry["content"] not in strings:
                with_id[entry["content"]] = (int(key) if key.isdigit() else key, file)
    added = directory / "added_tokens.json"
    if added.is_file():
        for token, i in _read_json_object(added, "a JSON object").items():
            if token not in strings:
                with_id.setdefault(token, (i, added))
    if set(_GPT2_DEFAULTS) - set_defaults and GPT2_END in strings:
        named.setdefault(GPT2_END, directory / "vocab.json")

    owner = {i: s for s, i in strings.items()}
    found: dict[str, int] = {}
    for token, (i, file) in with_id.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise ValueError(f"{file}: added token {token!r} has id {i!r}, not a non-negative int")
        other = owner.get(i, token)
        if other != token:
            raise ValueError(
                f"{file}: added token {token!r} has id {i}, which vocab.json gives to {other!r}"
            )
        owner[i] = token
        found[token] = i
    for token, file in named.items():
        if token in found:
            continue
        if token not in strings:
            raise ValueError(
                f"{file} names the special token {token!r}, which is neither in vocab.json nor "
                "given an id (in added_tokens_decoder or added_tokens.json)"
            )
        found[token] = strings[token]
    return found


def _read_json_object(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not {what} ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object mapping tokens to ids")
    return data


def write_gpt2_files(
    directory: str | Path,
    vocab: Mapping[int, bytes],
    merges: Sequence[tuple[int, int]],
    specials: Mapping[str, int],
) -> tuple[Path, Path]:
    """Write ``directory/vocab.json`` and ``directory/merges.txt`` in GPT-2's format.

    A ``tokenizer_config.json`` beside them declares the special tokens (in
    ``added_tokens_decoder``, as transformers writes it), so that ``read_gpt2_files`` and
    ``transformers.AutoTokenizer`` both read back exactly these specials. It sets bos, eos
    and unk to null: otherwise transformers would add GPT-2's ``<|endoftext|>``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    strings = {token_to_str(t): i for i, t in sorted(vocab.items())}
    strings.update(specials)
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    vocab_path.write_text(json.dumps(strings, ensure_ascii=False), encoding="utf-8")
    lines = [f"{token_to_str(vocab[a])} {token_to_str(vocab[b])}" for a, b in merges]
    merges_path.write_text("#version: 0.2\n" + "".join(f"{ln}\n" for ln in lines), encoding="utf-8")
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_prefix_space": False,
        **dict.fromkeys(_GPT2_DEFAULTS),
        "added_tokens_decoder": {
            str(i): {
                "content": s,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for s, i in sorted(specials.items(), key=lambda kv: kv[1])
        },
    }
    text = json.dumps(config, ensure_ascii=False, indent=2) + "\n"
    (directory / "tokenizer_config.json").write_text(text, encoding="utf-8")
    return vocab_path, merges_path
