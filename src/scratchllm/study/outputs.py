"""Everything a study writes from its rows: ``results.json``, the chart and ``report.md``.

>>> rows = json.loads(Path("study/results.json").read_text())   # doctest: +SKIP
>>> write_outputs(rows, "study", settings)                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scratchllm.files import write_json, write_text
from scratchllm.study.chart import CHART_FILE, plot_valid
from scratchllm.study.report import REPORT_FILE, RESULTS_FILE, format_report


def write_outputs(
    rows: Sequence[dict[str, Any]], out_dir: str | Path, settings: dict[str, Any]
) -> tuple[Path, Path, Path | None]:
    """Write ``results.json``, the chart (None when no run succeeded) and ``report.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean = [{k: v for k, v in r.items() if k != "position"} for r in rows]
    results = write_json(out / RESULTS_FILE, clean)
    chart = plot_valid(clean, out / CHART_FILE)
    report = write_text(out / REPORT_FILE, format_report(clean, settings, chart and chart.name))
    return report, results, chart
