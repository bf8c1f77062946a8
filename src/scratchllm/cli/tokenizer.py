"""`scratchllm tokenizer train|encode|decode`: build a tokenizer from a text file, use it on stdin.

    scratchllm tokenizer train --kind bpe --data input.txt --vocab-size 4096 --out tok/
    echo "To be, or not to be" | scratchllm tokenizer encode --tokenizer tok/ > ids.txt
    scratchllm tokenizer decode --tokenizer tok/ < ids.txt

Nothing this verb runs imports torch. From Python, ``train`` is
``scratchllm.tokenizers.train_tokenizer(kind, text, vocab_size, ...)`` then ``tok.save(dir)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scratchllm.cli import UserError
from scratchllm.tokenizers.factory import KINDS, OPTION_KINDS

# The flag of each kind-specific option of train_tokenizer (checked in _train).
_FLAGS = {
    "min_frequency": "--min-frequency",
    "lowercase": "--lowercase",
    "nfkc": "--nfkc",
    "pattern": "--pattern",
    "special_tokens": "--special",
    "unk": "--unk",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tokenizer",
        help="train a char/word/BPE tokenizer; encode or decode with one",
        description="Train a tokenizer on a UTF-8 text file, or encode/decode stdin with one.",
    )
    actions = p.add_subparsers(dest="action", metavar="<action>", required=True)

    t = actions.add_parser(
        "train",
        help="train a tokenizer on a text file and save it",
        description="Train a tokenizer on a UTF-8 text file; save DIR/tokenizer.json.",
    )
    t.add_argument("--kind", choices=KINDS, required=True, help="which tokenizer (required)")
    t.add_argument("--data", type=Path, required=True, help="UTF-8 training text file (required)")
    t.add_argument("--out", type=Path, required=True, help="directory to save into (required)")
    t.add_argument(
        "--force",
        action="store_true",
        help="replace a tokenizer.json already in --out (default: refuse)",
    )
    t.add_argument(
        "--vocab-size",
        type=int,
        metavar="N",
        help="vocabulary size: required for bpe; for word a cap counting the 4 special "
        "tokens; for char the N most frequent characters (needs --unk). Default: no cap",
    )
    t.add_argument(
        "--min-frequency",
        type=int,
        metavar="K",
        help="word: keep tokens seen at least K times (default: 1)",
    )
    t.add_argument("--lowercase", action="store_true", help="word: lowercase text (default: off)")
    t.add_argument("--nfkc", action="store_true", help="word: Unicode NFKC first (default: off)")
    t.add_argument(
        "--pattern",
        choices=("gpt2", "gpt4"),
        help="bpe: pre-tokenization regex, GPT-2's or GPT-4's cl100k (default: gpt2)",
    )
    t.add_argument(
        "--special",
        nargs="+",
        metavar="TOKEN",
        help="bpe: special tokens, e.g. '<|endoftext|>' (default: none)",
    )
    t.add_argument(
        "--unk", action="store_true", help="char: map unseen characters to <unk> (default: off)"
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar (default: show it)")
    t.set_defaults(func=_train)

    e = actions.add_parser(
        "encode",
        help="text on stdin -> space-separated ids on stdout",
        description="Read text from stdin; write its token ids, space-separated, to stdout.",
    )
    e.add_argument("--tokenizer", type=Path, required=True, help="saved tokenizer dir or file")
    e.add_argument("--bos", action="store_true", help="word: prepend <bos> (default: off)")
    e.add_argument("--eos", action="store_true", help="word: append <eos> (default: off)")
    e.add_argument(
        "--allow-special",
        action="store_true",
        help="bpe: encode special-token text such as <|endoftext|> as its id "
        "(default: off, special tokens in the text are an error)",
    )
    e.set_defaults(func=_encode)

    d = actions.add_parser(
        "decode",
        help="ids on stdin -> text on stdout",
        description="Read whitespace-separated token ids from stdin; write the text to stdout.",
    )
    d.add_argument("--tokenizer", type=Path, required=True, help="saved tokenizer dir or file")
    d.add_argument(
        "--keep-special",
        action="store_true",
        help="word: show <pad>/<bos>/<eos> instead of dropping them (default: off)",
    )
    d.set_defaults(func=_decode)


def _decode_utf8(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{name} is not UTF-8 text: byte 0x{raw[e.start]:02x} at byte offset {e.start} "
            "cannot be decoded; convert it first (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _train(args: argparse.Namespace) -> int:
    from scratchllm.tokenizers.factory import train_tokenizer

    options = {
        "min_frequency": args.min_frequency,
        "lowercase": args.lowercase,
        "nfkc": args.nfkc,
        "pattern": args.pattern,
        "special_tokens": args.special,
        "unk": args.unk or None,
    }
    for option, value in options.items():
        kinds = OPTION_KINDS[option]
        if value not in (None, False) and args.kind not in kinds:
            raise UserError(
                f"{_FLAGS[option]} applies to --kind {'/'.join(kinds)}, not {args.kind}"
            )
    if args.kind == "bpe" and args.vocab_size is None:
        raise UserError("--kind bpe needs --vocab-size N (e.g. 4096)")
    if args.kind == "char":
        options["unk"] = args.unk  # this verb's char tokenizer caps only with --unk
    from scratchllm.data.corpus import read_text_file
    from scratchllm.files import output_directory
    from scratchllm.tokenizers.base import TOKENIZER_FILE
    from scratchllm.tokenizers.factory import vocab_shortfall

    existing = output_directory(args.out, create=False) / TOKENIZER_FILE  # (--out a file?)
    if existing.exists() and not args.force:
        raise UserError(
            f"{existing} already exists; pass --force to replace it, or choose another --out"
        )
    text = read_text_file(args.data)  # exact text (no newline translation); named errors
    tok = train_tokenizer(args.kind, text, args.vocab_size, progress=not args.quiet, **options)
    path = tok.save(args.out)
    print(f"trained a {args.kind} tokenizer: vocab size {tok.vocab_size}, saved to {path}")
    short = vocab_shortfall(tok, args.vocab_size)
    if short:
        print(f"note: {short}", file=sys.stderr)
    return 0


def _encode(args: argparse.Namespace) -> int:
    from scratchllm.tokenizers import load

    tok = load(args.tokenizer)
    kwargs: dict = {}
    if args.bos or args.eos:
        if tok.kind != "word":
            raise UserError(f"--bos/--eos apply to word tokenizers, not {tok.kind}")
        kwargs.update(add_bos=args.bos, add_eos=args.eos)
    if args.allow_special:
        if tok.kind != "bpe":
            raise UserError(f"--allow-special applies to bpe tokenizers, not {tok.kind}")
        kwargs["allowed_special"] = "all"
    ids = tok.encode(_read_stdin(), **kwargs)
    _write(" ".join(map(str, ids)) + "\n")
    return 0


def _decode(args: argparse.Namespace) -> int:
    from scratchllm.tokenizers import load

    tok = load(args.tokenizer)
    ids = []
    for k, word in enumerate(_read_stdin().split()):
        try:
            ids.append(int(word))
        except ValueError:
            raise UserError(f"stdin item {k} is {word!r}, not an integer token id") from None
    if args.keep_special:
        if tok.kind != "word":
            raise UserError(f"--keep-special applies to word tokenizers, not {tok.kind}")
        _write(tok.decode(ids, keep_special=True))
    else:
        _write(tok.decode(ids))
    return 0


def _read_stdin() -> str:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # already text (e.g. a StringIO in tests)
        return sys.stdin.read()
    return _decode_utf8(buffer.read(), "<stdin>")


def _write(text: str) -> None:
    # Bytes, so "\r\n" and "\n" come out exactly as decoded on every platform.
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(text)
        return
    sys.stdout.flush()
    buffer.write(text.encode("utf-8"))
    buffer.flush()
