"""`scratchllm data`: the synthetic languages from the command line.

scratchllm data languages                      # families, parameters, context needed
scratchllm data sample sticky:k=2 -n 10        # samples, one per line
scratchllm data verify sticky:k=2 < file.txt   # a verdict per invalid sample; exit 1 if any

From Python: ``scratchllm.data.languages.languages()``, ``get(spec).samples(n, seed)`` and
``verify_text(get(spec), text)``.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = subparsers.add_parser(
        "data",
        help="list, sample and verify the synthetic languages",
        description="List, sample and verify the rule-based synthetic languages. A SPEC is "
        "'name:key=value,...', e.g. 'markov:order=3,alphabet=6,branch=2,seed=0'; omitted "
        "parameters take their defaults.",
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="data_command", metavar="<command>", required=True)

    p = sub.add_parser(
        "languages",
        help="list the language families with their parameters",
        description="List each language family: its parameters (default and range), the "
        "context an n-gram model needs (n), and what its samples look like.",
        formatter_class=fmt,
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=_languages)

    p = sub.add_parser(
        "sample",
        help="print samples of a language, one per line",
        description="Print samples of a language; each ends with the end-of-sample marker "
        "(a newline), so the output is a corpus and can be piped into `data verify`.",
        formatter_class=fmt,
    )
    p.add_argument("spec", metavar="SPEC", help="language spec, e.g. sticky:k=2")
    p.add_argument("-n", "--num", type=int, default=10, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=_sample)

    p = sub.add_parser(
        "verify",
        help="verify samples (one per line) from a file or stdin",
        description="Verify each sample (each line, ending with its newline) against a "
        "language. Prints where and why each invalid sample breaks the rule, then "
        "'N of M valid'. Exit status 0 if all are valid, 1 if any is not.",
        formatter_class=fmt,
    )
    p.add_argument("spec", metavar="SPEC", help="language spec, e.g. sticky:k=2")
    p.add_argument("file", nargs="?", default="-", help="file of samples; '-' reads stdin")
    p.add_argument(
        "--show", type=int, default=20, help="print at most this many invalid ones (0: none)"
    )
    p.set_defaults(func=_verify)


def _languages(args: argparse.Namespace) -> int:
    from scratchllm.data.languages import languages

    families = languages()
    if args.json:
        out = [
            {
                "name": f.name,
                "description": f.description,
                "context_needed": f.context_formula,
                "default_spec": f.default_spec,
                "params": [
                    {
                        "name": p.key,
                        "type": p.type.__name__,
                        "default": p.default,
                        "range": p.range_text,
                        "help": p.help,
                    }
                    for p in f.params
                ],
            }
            for f in families
        ]
        print(json.dumps(out, indent=2))
        return 0
    for f in families:
        print(f"{f.name}: {f.description}")
        print(f"  context needed: n = {f.context_formula}    (default spec: {f.default_spec})")
        print(f"  {'parameter':<10} {'default':<8} {'range':<14} meaning")
        for p in f.params:
            print(f"  {p.key:<10} {p.format(p.default):<8} {p.range_text:<14} {p.help}")
        print()
    print("A SPEC picks one: name:key=value,... (e.g. sticky:k=2). n is the smallest n-gram order")
    print("(context of n-1 symbols) that can produce only valid samples.")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from scratchllm.data.languages import get

    if args.num < 0:
        raise ValueError(f"-n must be 0 or more, got {args.num}")
    for sample in get(args.spec).samples(args.num, seed=args.seed):
        sys.stdout.write(sample)
    return 0


def _stdin_text() -> str:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # already text (a StringIO in tests)
        return sys.stdin.read()
    raw = buffer.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"<stdin>: not UTF-8 text: byte 0x{raw[e.start]:02x} at byte offset {e.start}; "
            "pipe in a text file of samples"
        ) from None


def excerpt(sample: str, position: int, width: int = 60) -> tuple[str, int]:
    """At most ``2 * width`` characters of ``sample`` around ``position`` (a cut marked
    "..."), and where the position falls in them: a huge sample prints as one short line.

    >>> excerpt("0123456789" * 10, 55, width=5)
    ('...0123456789...', 8)
    >>> excerpt("abc", 1)
    ('abc', 1)
    """
    if len(sample) <= 2 * width:
        return sample, position
    lo, hi = max(0, position - width), min(len(sample), position + width)
    head = ("..." if lo else "") + sample[lo:position]
    return head + sample[position:hi] + ("..." if hi < len(sample) else ""), len(head)


def _verify(args: argparse.Namespace) -> int:
    from scratchllm.data.corpus import read_text_file
    from scratchllm.data.languages import END, get, verify_text

    if args.show < 0:
        raise ValueError(f"--show must be 0 or more, got {args.show}")
    lang = get(args.spec)  # a bad spec fails before reading a large input
    text = _stdin_text() if args.file == "-" else read_text_file(args.file)
    n, invalid = verify_text(lang, text)
    for i, sample, verdict in invalid[: args.show]:
        sample = sample.removesuffix(END)
        size = f" of {len(sample):,} characters" if len(sample) > 120 else ""
        print(f"sample {i}: invalid at position {verdict.position}{size}: {verdict.reason}")
        shown, caret = excerpt(sample, verdict.position or 0)
        print(f"    {shown}")
        print(f"    {' ' * caret}^")
    bad = len(invalid)
    if bad > args.show:
        print(f"... and {bad - args.show} more invalid samples")
    print(f"{n - bad} of {n} valid ({lang.spec})")
    return 1 if bad else 0
