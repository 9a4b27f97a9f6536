"""Running work at once: BLAS held to one thread, joblib's workers, ``n_jobs``, and the
threads one large computation splits its work over: ``predict``'s rows (:func:`row_parts`,
:func:`run_threads`) and a training step's (:func:`step_threads`).

The grid search and the study train many small networks side by side. Each job limits BLAS
(NumPy's and SciPy's OpenBLAS) to one thread, so that jobs running at once do not compete
for cores and a job's result does not depend on how many run beside it. A computation that
splits its work over threads takes as many as BLAS is allowed (so it never oversubscribes
joblib's workers, nor a user's ``threadpool_limits``) and no more than the CPUs the process
may run on, and holds BLAS to one thread in each while it runs. A training step takes two
only when no other splitting computation of the process runs, so that networks trained on
several Python threads at once do not each take both CPUs.
"""

import numbers
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

__all__ = ["checked_n_jobs", "one_blas_thread", "one_blas_thread_while_splitting",
           "two_threads_if_free", "step_threads", "run_unordered", "threads_available",
           "row_parts", "run_threads"]

_CONTROLLER = None


def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries (found once they are loaded: a few
    ms; reading or limiting their threads afterwards takes microseconds). Looked for again
    while none is found, so that a first call before SciPy's BLAS is loaded does not leave
    every later limit without effect."""
    global _CONTROLLER
    if _CONTROLLER is None or not _CONTROLLER.lib_controllers:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController().select(user_api="blas")
    return _CONTROLLER


_SHARED_LIMIT_LOCK = threading.Lock()
_shared_limit = {"users": 0, "limiter": None}


def _hold_one_blas_thread():
    """Count one more splitting computation, the first setting BLAS to one thread (call
    with _SHARED_LIMIT_LOCK held)."""
    if _shared_limit["users"] == 0:
        _shared_limit["limiter"] = _blas_controller().limit(limits=1)
    _shared_limit["users"] += 1


def _release_one_blas_thread():
    """Count one splitting computation fewer, the last restoring BLAS's threads."""
    with _SHARED_LIMIT_LOCK:
        _shared_limit["users"] -= 1
        if _shared_limit["users"] == 0:
            _shared_limit["limiter"].restore_original_limits()
            _shared_limit["limiter"] = None


@contextmanager
def one_blas_thread_while_splitting():
    """BLAS held to one thread while any splitting computation runs, from whichever
    threads: the first to start sets the limit, the last to end restores it. (A
    threadpoolctl limit restores what it saw when it began, so two overlapping ones from
    two threads, ended in the order they began, would leave BLAS at one thread for good.)"""
    with _SHARED_LIMIT_LOCK:
        _hold_one_blas_thread()
    try:
        yield
    finally:
        _release_one_blas_thread()


@contextmanager
def two_threads_if_free():
    """Whether a computation may take two threads now (True or False, as the context's
    value): when :func:`threads_available` gives two or more and no other splitting
    computation of this process runs. While it is True, BLAS is held to one thread and
    other callers get False: the check and the claim are one step, so networks trained on
    several Python threads at once do not each take both CPUs (they ran 10-40 times slower
    so, two spinning threads each)."""
    with _SHARED_LIMIT_LOCK:
        granted = _shared_limit["users"] == 0 and threads_available() >= 2
        if granted:
            _hold_one_blas_thread()
    try:
        yield granted
    finally:
        if granted:
            _release_one_blas_thread()


#: The context of a call on one thread, made once: a small step's call allocates nothing.
_ONE_THREAD = nullcontext(1)


def step_threads(forced, worth_two):
    """A context whose value is the threads one training step's call runs on: 1, or 2 with
    BLAS held to one thread in each while the call runs.

    ``forced`` is None to choose, or the count the caller fixed (the step's ``threads``),
    passed on as it is: 2 whatever the machine's state, and anything but 1 and 2 for the
    kernels to refuse. ``worth_two`` is whether the step would gain from two threads (the
    caller knows: :mod:`nncore.ops` says so for a large step the kernels can share).
    Choosing, a step worth two takes two when :func:`two_threads_if_free` grants them, any
    other takes one, and BLAS then uses what it may (OpenBLAS splits large products itself).
    """
    if forced == 2 or forced is None and worth_two:
        return _two_threads(forced == 2)
    return _ONE_THREAD if forced is None else nullcontext(forced)


@contextmanager
def _two_threads(forced):
    """2 when ``forced`` or when :func:`two_threads_if_free` grants two, else 1; BLAS held
    to one thread while it is 2."""
    if forced:
        with one_blas_thread_while_splitting():
            yield 2
    else:
        with two_threads_if_free() as free:
            yield 2 if free else 1


#: [a container's CPU quota as joblib reads it (a cgroup's cpu.max), or None when it does
#: not lower the CPU count], read once (empty: not yet).
_CPU_QUOTA = []


def _cpu_quota():
    if not _CPU_QUOTA:
        try:
            from joblib import cpu_count

            counted, affinity = cpu_count(), len(os.sched_getaffinity(0))
            _CPU_QUOTA.append(counted if counted < affinity else None)
        except Exception:  # pragma: no cover - no joblib or no affinity: no quota known
            _CPU_QUOTA.append(None)
    return _CPU_QUOTA[0]


def threads_available():
    """The threads a computation may split its work over: the CPUs this process may run on
    (its affinity: ``taskset``, a container's CPU set; and a container's CPU quota, read
    once through joblib), and no more than BLAS is allowed to use right now (its default is
    the cores; joblib's workers, :func:`one_blas_thread` and a user's
    ``threadpoolctl.threadpool_limits`` lower it)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    quota = _cpu_quota() if hasattr(os, "sched_getaffinity") else None
    blas = [info["num_threads"] for info in _blas_controller().info()]
    return max(1, min([cpus, *([quota] if quota else []), *blas]))


def row_parts(n_rows, block, workers):
    """At most ``workers`` contiguous row ranges (slices) covering ``range(n_rows)``, each
    a whole number of ``block``-row blocks but the last, as even as blocks allow (one range
    when there is only one block). Splitting on block boundaries keeps every block's
    numbers the same however many workers there are."""
    blocks = max(1, -(-n_rows // block))
    parts = max(1, min(workers, blocks))
    bounds = [min(n_rows, (blocks * i // parts) * block) for i in range(parts + 1)]
    return [slice(start, stop) for start, stop in zip(bounds, bounds[1:])]


def run_threads(calls, stop=None):
    """Run the zero-argument ``calls`` on threads at once (the last on this one), BLAS held
    to one thread meanwhile; they must release the GIL to gain anything (the compiled
    kernels do). Returns their results in order; re-raises the first error.

    ``stop``: a ``threading.Event`` set when anything is raised while the calls run on
    several threads (a Ctrl-C reaches only this thread), which the calls should check
    between pieces of their work so that they end soon after; the error is raised once
    they have."""
    if len(calls) == 1:
        return [calls[0]()]
    with one_blas_thread_while_splitting(), \
            ThreadPoolExecutor(max_workers=len(calls) - 1) as pool:
        try:
            futures = [pool.submit(call) for call in calls[:-1]]
            last = calls[-1]()
            return [future.result() for future in futures] + [last]
        except BaseException:
            if stop is not None:
                stop.set()  # before the pool waits for the others
            raise


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
