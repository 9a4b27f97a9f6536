"""Benchmarks run BLAS on one thread, for nncore and NumPy alike.

NumPy and SciPy each bundle their own OpenBLAS; on a small shared machine their thread
pools fight each other and timings swing by 10x. One thread each makes kernel-vs-reference
ratios comparable run to run (and matches the one-thread PyTorch peer). threadpoolctl is in
the ``bench`` extra; without it a warning says the BLAS thread count was left alone.
"""

import warnings

import pytest

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - depends on the environment
    threadpool_limits = None


@pytest.fixture(scope="session", autouse=True)
def single_threaded_blas():
    if threadpool_limits is None:
        warnings.warn("threadpoolctl is not installed: BLAS thread counts left as they are")
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
