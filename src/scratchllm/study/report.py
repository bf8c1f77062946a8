"""What a study writes: ``results.json``, the chart (``chart``) and ``report.md``.

The report has a table per language, the chart, and an automatic reading that holds each
result against theory. A model *sees* ``context`` symbols (a counting n-gram or MLP: n - 1;
a GPT: its window) or carries a state (RNN/GRU/LSTM: any amount of the past, in principle).
A language whose ``context_needed`` is n *needs* the last n - 1 symbols. So a window model is
expected to reach >= 99 % valid samples exactly when it sees at least what the language
needs, and a recurrent one always; the reading says, per run, whether that happened::

    bigram sees 1 symbol, sticky:k=2 needs 3: expected to fail; it reached 71.0 % valid.

Everything here is a pure function of the rows, so a report can be rebuilt from
``results.json`` alone (``outputs.write_outputs(json.load(...), out_dir, settings)``).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from typing import Any

PASS = 99.0  # valid % at which a model counts as having learned the rule
REPORT_FILE = "report.md"
RESULTS_FILE = "results.json"


# -- reading the table -------------------------------------------------------------------------


def needs(row: dict[str, Any]) -> int:
    """Symbols of context the row's language needs: ``context_needed - 1``."""
    return int(row["context_needed"]) - 1


def expected_to_pass(row: dict[str, Any]) -> bool:
    """Theory's verdict: a state can carry the past; a window must cover what is needed."""
    return row["context_kind"] == "state" or row["context"] >= needs(row)


def sees_text(row: dict[str, Any]) -> str:
    """``"sees 1 symbol"``, ``"sees 32 symbols"``, ``"carries a state (trained on 32)"``."""
    if row["context_kind"] == "state":
        return f"carries a state (trained on windows of {row['context']})"
    n = row["context"]
    return f"sees {n} symbol{'s' * (n != 1)}"


def explain(row: dict[str, Any]) -> str:
    """One sentence holding a run against theory (see the module docstring)."""
    if row.get("error"):
        return f"{row['model']} failed: {row['error']}"
    want = needs(row)
    expect = expected_to_pass(row)
    passed = row["valid"] >= PASS
    head = (
        f"{row['model']} {sees_text(row)}, {row['language']} needs {want}: "
        f"expected to {'pass' if expect else 'fail'}; it reached {row['valid']:.1f} % valid"
    )
    if expect == passed:
        return head + "."
    if expect:
        return head + ": short of what its context allows (more training or a larger budget)."
    return head + ": better than its context predicts (the windows it cannot tell apart are rare)."


def language_summary(rows: Sequence[dict[str, Any]]) -> str:
    """Which models reach >= 99 % on one language, which fall short, and whether theory
    predicted it."""
    first = rows[0]
    ok = [r for r in rows if not r.get("error")]
    reach = [r["model"] for r in ok if r["valid"] >= PASS]
    short = [f"{r['model']} ({r['valid']:.1f} %)" for r in ok if r["valid"] < PASS]
    surprises = [r["model"] for r in ok if expected_to_pass(r) != (r["valid"] >= PASS)]
    parts = [
        f"**{first['language']}** (needs {needs(first)} symbol{'s' * (needs(first) != 1)}): "
        f"reach >= {PASS:g} % valid: {', '.join(reach) or 'none'}; "
        f"fall short: {', '.join(short) or 'none'}."
    ]
    if not ok:
        parts.append("Every run failed.")
    elif surprises:
        parts.append(f"Against `context_needed`: {', '.join(surprises)} did not do as predicted.")
    else:
        parts.append("All as `context_needed` predicts.")
    failed = [r["model"] for r in rows if r.get("error")]
    if failed:
        parts.append(f"Failed to run: {', '.join(failed)}.")
    return " ".join(parts)


def by_language(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["language"], []).append(r)
    return groups


# -- the report --------------------------------------------------------------------------------


def format_report(
    rows: Sequence[dict[str, Any]], settings: dict[str, Any], chart: str | None
) -> str:
    """``report.md``: settings, the reading, a table per language, the chart."""
    b = settings["budget"]
    command = (
        "scratchllm study --languages "
        + " ".join(settings["languages"])
        + " --models "
        + " ".join(settings["models"])
        + f" --budget {b['name']} --seed {settings['seed']}"
        + (f" --out {shlex.quote(settings['out_dir'])}" if settings.get("out_dir") else "")
    )
    lines = [
        "# Language-modeling study",
        "",
        f"Budget `{b['name']}`: {b['max_iters']} steps of {b['batch_size']} windows of "
        f"{b['block_size']} symbols, peak lr {b['lr']:g}; neural models sized near "
        f"{b['target_params']:,} parameters; {b['train_samples']:,} training samples per "
        f"language; {b['eval_samples']:,} samples drawn from each model at temperature 1 and "
        f"verified; counting models use add-{b['smoothing']:g} smoothing. Seed "
        f"{settings['seed']}.",
        "",
        "```bash",
        command,
        "```",
        "",
        "## Reading",
        "",
    ]
    groups = by_language(rows)
    for group in groups.values():
        lines.append(f"- {language_summary(group)}")
        lines.extend(f"  - {explain(r)}" for r in group)
    lines += ["", _family_line(rows), ""]
    for language, group in groups.items():
        lines += _language_section(language, group)
    if chart:
        lines += [
            "## Valid samples against the context each language needs",
            "",
            f"![valid % against context_needed]({chart})",
            "",
            "One row per model, one column per language, ordered by the symbols of context "
            "its rule needs; each cell is the model's valid %. Bold: at least "
            f"{PASS:g} %. Outlined in red: not what the model's context predicts (it sees "
            "enough and fell short, or sees too little and passed anyway). A counting "
            "n-gram should pass up to the languages that need fewer symbols than it sees "
            "and fail after; models with a long window or a state should pass everywhere.",
            "",
        ]
    return "\n".join(lines)


def _family_line(rows: Sequence[dict[str, Any]]) -> str:
    tally: dict[str, list[int]] = {}
    for r in rows:
        if not r.get("error"):
            t = tally.setdefault(r["model"], [0, 0])
            t[0] += r["valid"] >= PASS
            t[1] += 1
    parts = [f"{m} {a}/{n}" for m, (a, n) in tally.items()]
    return f"Languages learned (>= {PASS:g} % valid), per model: " + ", ".join(parts) + "."


def _language_section(language: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    first = rows[0]
    lines = [
        f"## {language}",
        "",
        f"`{first['language_spec']}`: context_needed {first['context_needed']} "
        f"(the rule is decided by the last {needs(first)} symbols).",
        "",
        "| model | parameters | context | train time | val perplexity | valid % | unique % "
        "| novel % | KL (nats/symbol) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    examples = []
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['model']} | failed: {r['error']} |  |  |  |  |  |  |  |")
            continue
        params = f"{r['params']:,}" + (" counts" if r["params_kind"] == "counts" else "")
        context = f"state ({r['context']})" if r["context_kind"] == "state" else str(r["context"])
        lines.append(
            f"| {r['model']} | {params} | {context} | {r['train_s']:.1f} s "
            f"| {_num(r['perplexity'], '.3f')} | {r['valid']:.1f} | {r['unique']:.1f} "
            f"| {_num(r['novel'], '.1f')} | {_num(r['kl'], '.4f')} |"
        )
        if r.get("invalid_examples"):
            e = r["invalid_examples"][0]
            examples.append(f"- {r['model']}: `{e['sample']!r}`: {e['reason']}")
    lines.append("")
    if examples:
        lines += ["An invalid sample per model that made any:", "", *examples, ""]
    return lines


def _num(value: float | None, fmt: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return format(value, fmt)
