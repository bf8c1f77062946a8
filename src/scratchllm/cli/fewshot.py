"""`scratchllm fewshot`: few-shot prompt an OpenAI-compatible endpoint with our languages.

    scratchllm fewshot --endpoint https://api.openai.com/v1 --endpoint-model gpt-4o-mini \\
        --api-key-env OPENAI_API_KEY --languages dyck:depth=3 markov:order=2 --out fewshot/
    scratchllm fewshot --endpoint http://127.0.0.1:8000 --endpoint-model shakespeare \\
        --api completions --languages counting      # a base model under `scratchllm serve`

It shows valid samples, asks for new ones, verifies each exactly and writes
``OUT/report.md`` and ``OUT/results.json`` (valid, unique, novel, invalid examples with
reasons). The key is read from the environment variable named by --api-key-env and is
never written anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from scratchllm.serving.fewshot import FewShotConfig

    d = FewShotConfig("http://localhost", "m")
    p = subparsers.add_parser(
        "fewshot",
        help="ask an OpenAI-compatible LLM for samples of our languages and verify them",
        description="Few-shot prompt any OpenAI-compatible endpoint with valid samples of "
        "rule-based languages, parse and verify what comes back, and report valid / unique "
        "/ novel rates beside trained checkpoints or a study's models (--compare).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add(
        "--endpoint",
        required=True,
        metavar="URL",
        help="the API's base URL, e.g. https://api.openai.com/v1 (a bare host gets /v1)",
    )
    add("--endpoint-model", required=True, metavar="NAME", help="the model name it serves")
    add(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="environment variable holding the API key (the key is never written)",
    )
    add(
        "--languages",
        nargs="+",
        required=True,
        metavar="SPEC",
        help="language specs, e.g. markov:order=2 dyck (see `scratchllm data languages`)",
    )
    add(
        "--api",
        choices=["chat", "completions"],
        default=d.api,
        help="chat (instruction models) or completions (base models: the prompt is samples)",
    )
    add("--samples", type=int, default=d.n_samples, metavar="N", help="samples per language")
    add("--shots", type=int, default=d.shots, metavar="K", help="examples shown per request")
    add(
        "--per-request",
        type=int,
        default=d.per_request,
        metavar="N",
        help="chat: new samples asked for per request",
    )
    add("--temperature", type=float, default=d.temperature, metavar="T")
    add("--max-tokens", type=int, default=d.max_tokens, metavar="N", help="per request")
    add("--timeout", type=float, default=d.timeout, metavar="S", help="seconds per attempt")
    add(
        "--retries",
        type=int,
        default=d.retries,
        metavar="N",
        help="retries of a timed-out, 429 or 5xx attempt, with exponential backoff",
    )
    add("--backoff", type=float, default=d.backoff, metavar="S", help="first retry's wait")
    add(
        "--max-requests",
        type=int,
        default=d.max_requests,
        metavar="N",
        help="cap on HTTP attempts over the whole run, retries included",
    )
    add("--seed", type=int, default=d.seed, metavar="S")
    add(
        "--compare",
        nargs="*",
        type=Path,
        default=[],
        metavar="PATH",
        help="trained checkpoints to measure on the same languages, or study directories "
        "(scratchllm study --out DIR) whose finished runs are shown as they are, side by side",
    )
    add("--out", type=Path, default=Path("fewshot"), metavar="DIR", help="report directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scratchllm.serving.fewshot import FewShotConfig, run_fewshot

    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise ValueError(
                f"--api-key-env {args.api_key_env}: that environment variable is not set "
                "(export it first; the key is never passed on the command line)"
            )
    # Checked here so that the error names the flag (the config's field is n_samples).
    for flag, value in (("--samples", args.samples), ("--shots", args.shots),
                        ("--per-request", args.per_request), ("--max-tokens", args.max_tokens),
                        ("--max-requests", args.max_requests)):  # fmt: skip
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    config = FewShotConfig(
        endpoint=args.endpoint,
        model=args.endpoint_model,
        api=args.api,
        api_key_env=args.api_key_env,
        shots=args.shots,
        n_samples=args.samples,
        per_request=args.per_request,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        timeout=args.timeout,
        retries=args.retries,
        backoff=args.backoff,
        max_requests=args.max_requests,
        seed=args.seed,
    )
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    report = run_fewshot(config, args.languages, api_key=key, compare=args.compare, say=say)
    path = report.save(args.out)
    for r in report.languages:
        valid = "-" if r.valid is None else f"{100 * r.valid:.1f} %"
        print(
            f"{r.language}: {len(r.samples)} samples, {valid} valid"
            + (f" (stopped: {r.stopped})" if r.stopped else "")
        )
    print(f"report: {path}")
    return 0
