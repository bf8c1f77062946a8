"""The NumPy GPT tests run one BLAS thread and one elementwise thread per process, as the
suite runs torch with one intra-op thread: two pytest workers on two cores would otherwise
oversubscribe them, and small products then wait on each other's threads for a scheduler
quantum. ``test_np_threads.py`` checks that more threads give the same numbers."""

import pytest
from threadpoolctl import threadpool_limits

from scratchllm.numpy_gpt import parallel


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    parallel.set_num_threads(1)
    with threadpool_limits(1):
        yield
    parallel.set_num_threads(None)
