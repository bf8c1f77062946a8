"""Fixtures of the post-training loss tests: TRL, imported once per session through the
shim in ``trl_peer`` (why it is needed is written there)."""

import pytest
from trl_peer import import_trl


@pytest.fixture(scope="session")
def trl():
    """TRL's trainers and helpers."""
    return import_trl()
