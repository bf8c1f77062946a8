"""`scratchllm study`: every model family on every language, a report of who learned what.

    scratchllm study --languages sticky:k=2 markov:order=2 --models bigram trigram gpt \\
        --budget tiny --out study/
    scratchllm study --languages sticky:k=1 sticky:k=3 markov:order=2,alphabet=6 \\
        --models bigram trigram ngram:n=5 mlp rnn gru lstm gpt --budget small --out big/

Writes ``DIR/report.md``, ``DIR/results.json`` and ``DIR/valid_vs_context.png`` (valid %
per model and language), and keeps each trained model under ``DIR/<language>/<model>/``.
Running the same command again skips the runs already finished, so a stopped study
resumes. From Python: ``scratchllm.study.run_study(StudyConfig(...))``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

BUDGET_HELP = {
    "tiny": "CI-sized: two languages x three models in under two minutes on two cores",
    "small": "minutes per model on a laptop CPU",
    "medium": "larger models, longer training",
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where there is none to show (required, or worked out)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.required or action.default is False:
            return action.help
        return super()._get_help_string(action)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "study",
        help="train every model family on verifiable languages and report which learns what",
        description=(
            "Train each model on each language (a character tokenizer over the language's "
            "alphabet), sample from it, verify the samples and write DIR/report.md (a table "
            "per language, a grid of valid % per model and language, and "
            "an automatic reading), DIR/results.json and DIR/valid_vs_context.png. Neural "
            "models are sized to about the same parameter count per budget. Runs go in "
            "parallel; re-running the command skips finished runs (resume)."
        ),
        epilog="Example: scratchllm study --languages sticky:k=2 markov:order=2 "
        "--models bigram trigram gpt --budget tiny --out study",
        formatter_class=_Formatter,
    )
    add = p.add_argument
    add(
        "--languages",
        nargs="+",
        required=True,
        metavar="SPEC",
        help="language specs, space-separated, e.g. sticky:k=1 markov:order=2,alphabet=6 "
        "(`scratchllm data languages` lists the families)",
    )
    add(
        "--models",
        nargs="+",
        default=["bigram", "trigram", "mlp", "lstm", "gpt"],
        metavar="SPEC",
        help="model specs: bigram, trigram, ngram:n=K, mlp[:n=K], rnn, gru, lstm, "
        "gpt[:n_layer=..]; any config field can be set, e.g. gpt:n_layer=1,n_head=2",
    )
    add(
        "--budget",
        default="tiny",
        choices=("tiny", "small", "medium"),
        help="training steps and model size: "
        + "; ".join(f"{k}: {v}" for k, v in BUDGET_HELP.items()),
    )
    add("--out", type=Path, required=True, metavar="DIR", help="study directory")
    add(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="runs trained at once, in worker processes (default: min(cores, runs); 1: in "
        "this process)",
    )
    add(
        "--threads",
        type=int,
        default=None,
        metavar="T",
        help="torch threads per worker (default: cores // jobs)",
    )
    add("--seed", type=int, default=0, help="seed of the samples, initialisation and sampling")
    add("--device", default="cpu", help="torch device: cpu, cuda, mps or auto")
    add("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scratchllm.study import StudyConfig, run_study
    from scratchllm.study.report import explain, language_summary

    config = StudyConfig(
        languages=args.languages,
        models=args.models,
        budget=args.budget,
        out_dir=args.out,
        seed=args.seed,
        jobs=args.jobs,
        threads=args.threads,
        progress=not args.quiet,
        device=args.device,
    )
    result = run_study(config)
    groups: dict[str, list[dict]] = {}
    for row in result.rows:
        groups.setdefault(row["language"], []).append(row)
    print()
    for rows in groups.values():
        print(language_summary(rows).replace("**", ""))
        for row in rows:
            print(f"  {explain(row)}")
    print(f"\nreport:  {result.report}")
    print(f"results: {result.results}")
    if result.chart is not None:
        print(f"chart:   {result.chart}")
    if result.skipped:
        print(f"kept {len(result.skipped)} run(s) finished earlier")
    if result.failed:
        print(f"{len(result.failed)} run(s) failed; see the report")
        return 1
    return 0
