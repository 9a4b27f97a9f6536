"""Running independent jobs at once: BLAS held to one thread, joblib's workers, ``n_jobs``.

The grid search and the study train many small networks side by side. Each job limits BLAS
(NumPy's and SciPy's OpenBLAS) to one thread, so that jobs running at once do not compete
for cores and a job's result does not depend on how many run beside it.
"""

import numbers
from contextlib import nullcontext

__all__ = ["checked_n_jobs", "one_blas_thread", "run_unordered"]


def one_blas_thread():
    """A context limiting BLAS (NumPy's and SciPy's OpenBLAS) to one thread, if threadpoolctl
    is installed. Without it, joblib's process workers and Dask's still start with one BLAS
    thread (both set OPENBLAS_NUM_THREADS and friends in their workers)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the environment
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def checked_n_jobs(n_jobs):
    """``n_jobs`` as an int (joblib's meaning: -1 for all cores), or None (the value of an
    enclosing ``joblib.parallel_config``); ValueError for anything else, 0 included."""
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a nonzero integer (-1 for all cores) or None, "
                         f"got {n_jobs!r}")
    return int(n_jobs)


def run_unordered(function, calls, n_jobs=1, backend=None):
    """Yield ``function(*args)`` for each ``args`` of ``calls`` as each finishes (in any order).

    ``n_jobs=1`` without a ``backend`` runs the calls one after the other in this process,
    with no joblib machinery; otherwise joblib runs them (``n_jobs`` and ``backend`` have
    joblib's meaning; ``backend`` goes through ``joblib.parallel_config``, which also
    registers the external backends joblib knows by name, such as ``"dask"``).

    The limit of one BLAS thread is set once here too: threadpoolctl's limits are global to
    a process, so with the threading backend the jobs' own limits would otherwise be
    entered and undone out of order and leave the process's thread count changed.
    """
    with one_blas_thread():
        if n_jobs == 1 and backend is None:
            for args in calls:  # no joblib machinery for the plain case
                yield function(*args)
            return
        from joblib import Parallel, delayed, parallel_config

        with parallel_config(backend=backend) if backend is not None else nullcontext():
            parallel = Parallel(n_jobs=n_jobs, batch_size=1, return_as="generator_unordered")
            yield from parallel(delayed(function)(*args) for args in calls)
