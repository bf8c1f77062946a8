"""The NumPy GPT tests run one BLAS thread per process, as the suite runs torch with one
intra-op thread: two pytest workers on two cores would otherwise oversubscribe them, and
small matrix products then wait on each other's threads for a scheduler quantum."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def one_blas_thread():
    with threadpool_limits(1):
        yield
