"""Shared test setup: a headless plotting backend and the repo paths tests use."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def pytest_configure(config):
    # Tests run two workers on two cores (pytest -n 2): one torch thread each avoids
    # oversubscription, which makes small ops many times slower.
    import torch

    torch.set_num_threads(1)
