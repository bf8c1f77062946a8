"""metrics.jsonl reading and the loss-curve PNG."""

from __future__ import annotations

import pytest

from scratchllm.training import plot_metrics, read_metrics


def test_plot_writes_a_png_with_both_curves(tmp_path):
    rows = [{"step": s, "loss": 3.0 / s, "lr": 1e-3, "tokens_per_s": 1.0} for s in range(1, 21)]
    rows[9]["val_loss"], rows[19]["val_loss"] = 0.5, 0.3
    path = tmp_path / "m.jsonl"
    path.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    png = plot_metrics(path, tmp_path / "sub" / "loss.png", title="tiny")
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    assert not (tmp_path / "sub" / "loss.png.tmp").exists()


def test_read_metrics_skips_a_cut_last_line_but_not_a_bad_middle_one(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}]
    path.write_text('{"step": 1, "loss": 2.0}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_metrics(path)
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        read_metrics(tmp_path / "missing.jsonl")
