"""`scratchllm <verb>`: thin argument parsing over the library.

Each verb lives in its own module here and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (called with the parsed namespace,
returning an exit code). Verb modules import heavy libraries (torch,
matplotlib) inside their handlers, so ``--help`` stays fast and
``scratchllm tokenizer ...`` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from scratchllm import __version__

# Module names under scratchllm.cli, in the order --help lists them.
VERBS: tuple[str, ...] = (
    "demo",
    "train",
    "sample",
    "finetune",
    "chat",
    "eval",
    "data",
    "tokenizer",
    "convert",
    "inspect",
    "experiment",
    "study",
    "serve",
    "export",
    "fewshot",
    "word2vec",
)


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scratchllm",
        description="Build, train, sample, measure and inspect a language model from scratch.",
    )
    parser.add_argument("--version", action="version", version=f"scratchllm {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    for name in VERBS:
        importlib.import_module(f"scratchllm.cli.{name}").register(sub)
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Let each (sub)parser put itself in the namespace, so an unknown flag is reported
    with the usage of the verb it was given to (the innermost parser sets it last)."""
    parser.set_defaults(_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _remember_parsers(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    with warnings.catch_warnings():
        # A warning is one line, like an error: no source file, line number or code.
        warnings.showwarning = _one_line_warning(args.verb)
        try:
            return int(args.func(args) or 0)
        except (UserError, ValueError, OSError) as e:
            # Library errors are written to be read by people (they name the value and the
            # fix), so the CLI shows them as one line rather than a traceback.
            print(f"scratchllm {args.verb}: error: {e}", file=sys.stderr)
            return 2
        except ModuleNotFoundError as e:
            if e.name != "torch":
                raise
            print(
                f"scratchllm {args.verb}: error: PyTorch is not installed (or not importable) "
                "here; `train` and `sample` run without it with --engine numpy (GPT models)",
                file=sys.stderr,
            )
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


def _one_line_warning(verb: str):  # noqa: ANN202
    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        sys.stdout.flush()
        print(f"scratchllm {verb}: warning: {message}", file=file or sys.stderr)

    return show
