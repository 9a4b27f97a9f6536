"""The compiled forward pass predict runs (``ops.forward_plan``) against its reference twin,
and the threads ``Network.logits`` splits rows over (``nncore.parallel``)."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import nncore as nc
import nncore.network
from nncore import activations, ops, parallel, reference
from conftest import assert_close, interruptible_child

DTYPES = (np.float32, np.float64)
BLOCK = 16
#: rows on both sides of one and two blocks
ROWS = (0, 1, 2, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 1, 5 * BLOCK + 3)


def network(kind, activation, dtype, n_in=3, wide=False):
    """A small network; ``wide``: layers of 128, where BLAS rounds a product's rows
    differently for other row counts (at 64 and below it happens not to here)."""
    sizes = (128, 128) if wide else (17, 15)
    if kind == "mlp":
        net = nc.mlp(n_in, list(sizes), 4, activation=activation, dtype=dtype, seed=1)
    else:
        net = nc.resnet(n_in, sizes[0], 2, 4, hidden=sizes[1] - 3, activation=activation,
                        dtype=dtype, seed=1)
    # biases off 0, so a plan that dropped one would show
    net.params += np.random.default_rng(2).uniform(-0.2, 0.2, net.params.size).astype(dtype)
    return net


def specs(net):
    return [layer.step_spec() for layer in net.layers]


@pytest.mark.parametrize("kind", ["mlp", "resnet"])
@pytest.mark.parametrize("activation", activations.names())
@pytest.mark.parametrize("dtype", DTYPES, ids=("float32", "float64"))
def test_the_plan_matches_the_reference_and_the_layers(kind, activation, dtype):
    net = network(kind, activation, dtype)
    plan = ops.forward_plan(specs(net), BLOCK, net.params)
    twin = reference.forward_plan(specs(net), BLOCK, net.params)
    rng = np.random.default_rng(3)
    for rows in ROWS:
        X = rng.uniform(-2, 2, (rows, 3)).astype(dtype)
        X.setflags(write=False)  # the plan only reads its input
        expected = twin.run(X)
        assert_close(plan.run(X), expected, dtype, name=f"plan, {rows} rows")
        if 0 < rows <= BLOCK:  # one block: exactly the layers' own forward pass
            assert np.array_equal(plan.run(X), net._forward(X))
        out = np.full((rows, 4), np.nan, dtype=dtype)
        assert plan.run(X, out) is out
        assert_close(out, expected, dtype, name=f"plan into out, {rows} rows")


def test_the_plan_reads_the_live_parameters():
    net = network("mlp", "tanh", np.float64)
    plan = ops.forward_plan(specs(net), BLOCK, net.params)
    X = np.random.default_rng(4).standard_normal((40, 3))
    before = plan.run(X)
    net.params *= 0.5
    after = plan.run(X)
    assert not np.allclose(before, after)
    assert_close(after, reference.forward_plan(specs(net), BLOCK, net.params).run(X),
                 np.float64)


@pytest.mark.parametrize("backend", [ops, reference])
def test_the_plan_refuses_bad_input(backend):
    net = network("resnet", "relu", np.float32)
    plan = backend.forward_plan(specs(net), BLOCK, net.params)
    with pytest.raises(TypeError, match="X must have the plan's dtype float32"):
        plan.run(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="X must have 3 columns"):
        plan.run(np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="out must have shape"):
        plan.run(np.zeros((3, 3), dtype=np.float32), out=np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="n must be"):
        backend.forward_plan(specs(net), 0, net.params)
    with pytest.raises(ValueError, match="view"):
        backend.forward_plan(specs(net), BLOCK, net.params.copy())  # not the views' buffer
    with pytest.raises(ValueError, match="layers must not be empty"):
        backend.forward_plan([], BLOCK, net.params)


@pytest.mark.parametrize("n_rows, block, workers", [
    (0, 4, 2), (1, 4, 2), (4, 4, 2), (5, 4, 2), (17, 4, 2), (17, 4, 3), (100, 8, 7),
    (10, 4, 1), (8, 4, 16)])
def test_row_parts_cover_the_rows_on_block_boundaries(n_rows, block, workers):
    parts = parallel.row_parts(n_rows, block, workers)
    assert 1 <= len(parts) <= workers
    assert parts[0].start == 0 and parts[-1].stop == n_rows
    for part, following in zip(parts, parts[1:]):
        assert part.stop == following.start and part.stop % block == 0
        assert part.stop > part.start
    sizes = [-(-(part.stop - part.start) // block) for part in parts]
    assert max(sizes) - min(sizes) <= 1  # as even as whole blocks allow


def test_threads_follow_the_blas_limit():
    with threadpool_limits(limits=1, user_api="blas"):
        assert parallel.threads_available() == 1
    assert 1 <= parallel.threads_available() <= max(1, len(__import__("os").sched_getaffinity(0)))


@pytest.mark.parametrize("kind", ["mlp", "resnet"])
@pytest.mark.parametrize("dtype", DTYPES, ids=("float32", "float64"))
def test_logits_do_not_depend_on_the_number_of_threads(kind, dtype, monkeypatch):
    net = network(kind, "gelu", dtype, wide=True)
    X = np.random.default_rng(5).uniform(-2, 2, (203, 3)).astype(dtype)
    monkeypatch.setattr(nncore.network, "PREDICT_CHUNK", BLOCK)
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(parallel, "threads_available", lambda threads=threads: threads)
        results.append(net.logits(X))
    assert all(np.array_equal(result, results[0]) for result in results)
    ref = network(kind, "gelu", dtype, wide=True)
    ref.set_backend("reference")
    assert_close(results[0], ref.logits(X), dtype)
    # one plan per thread, kept for the next call
    assert len(net._plans[BLOCK]) == 3


def test_the_invariance_check_can_fail(monkeypatch):
    """Other row counts per block change the rounding of wide products: the equality above
    would catch a split off block boundaries."""
    net = network("mlp", "tanh", np.float32, wide=True)
    X = np.random.default_rng(6).uniform(-2, 2, (2000, 3)).astype(np.float32)
    whole = ops.forward_plan(specs(net), 2000, net.params).run(X)
    pieces = ops.forward_plan(specs(net), 7, net.params).run(X)
    assert not np.array_equal(whole, pieces)
    assert_close(pieces, whole, np.float32)


def test_predict_after_training_uses_the_trained_weights():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((300, 2)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    net = nc.mlp(2, [16], 2, seed=0)
    net.predict(X)  # plans made before training
    net.fit(X, y, epochs=20, batch_size=32, optimizer=nc.SGD(lr=0.1, momentum=0.9),
            verbose=0)
    ref = nc.mlp(2, [16], 2, seed=0, backend="reference")
    ref.params[...] = net.params
    assert_close(net.logits(X), ref.logits(X), np.float32)


def test_concurrent_predictions_on_one_network_are_right():
    """Threads of a user's (a web server's) predicting with one network at once: each call
    that finds the kept plans busy runs on plans of its own, so none reads another's
    buffers."""
    import threading

    net = network("mlp", "tanh", np.float32, wide=True)
    rng = np.random.default_rng(8)
    inputs = [rng.uniform(-2, 2, (3000 + 100 * i, 3)).astype(np.float32) for i in range(6)]
    expected = [net.predict_proba(X) for X in inputs]
    results, errors = [None] * len(inputs), []

    def predict(i):
        try:
            for _ in range(5):
                results[i] = net.predict_proba(inputs[i])
                assert np.array_equal(results[i], expected[i])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=predict, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_a_plan_refuses_a_second_thread_instead_of_crashing():
    """One plan, two threads at once: the second call raises instead of writing into the
    first one's arrays (which crashed the process before the guard)."""
    import threading

    net = network("mlp", "tanh", np.float32, wide=True)
    plan = ops.forward_plan(specs(net), BLOCK, net.params)
    X = np.random.default_rng(9).uniform(-2, 2, (400_000, 3)).astype(np.float32)
    errors, started = [], threading.Event()

    def long_run():
        started.set()
        plan.run(X)

    thread = threading.Thread(target=long_run)
    thread.start()
    started.wait()
    try:
        for _ in range(200):
            try:
                plan.run(X[:10])
            except RuntimeError as error:
                errors.append(error)
                break
    finally:
        thread.join()
    assert errors and "running in another thread" in str(errors[0])
    assert np.array_equal(plan.run(X[:10]), net._forward(X[:10]))  # usable again after


def test_a_ctrl_c_on_the_calling_thread_stops_the_others(monkeypatch):
    """The stop mechanism, deterministically: the calling thread's second call raises
    KeyboardInterrupt (as a Ctrl-C would); the other thread, held in its first call until
    the stop is signalled, makes no further call. Afterwards the network's plans are free,
    BLAS has its threads back and the next predict is right."""
    import threading

    net = network("mlp", "tanh", np.float32)
    X = np.random.default_rng(10).uniform(-2, 2, (4000, 3)).astype(np.float32)
    expected = net.predict_proba(X)
    threads_before = parallel.threads_available()
    monkeypatch.setattr(nncore.network, "PREDICT_CHUNK", BLOCK)
    monkeypatch.setattr(nncore.network, "BLOCKS_PER_CALL", 2)
    monkeypatch.setattr(parallel, "threads_available", lambda: 2)
    events = []

    class RecordedEvent(threading.Event):
        def __init__(self):
            super().__init__()
            events.append(self)

    monkeypatch.setattr(nncore.network.threading, "Event", RecordedEvent)
    caller, calls, softmax = threading.get_ident(), {"caller": 0, "other": 0}, ops.softmax

    def interrupted_softmax(logits, out=None):
        if threading.get_ident() == caller:
            calls["caller"] += 1
            if calls["caller"] == 2:
                raise KeyboardInterrupt
        else:
            calls["other"] += 1
            # the first Event made after the patch is predict's stop (the pool's threads
            # make their own later)
            assert events[0].wait(10), "the stop was never signalled"
        return softmax(logits, out=out)

    monkeypatch.setattr(ops, "softmax", interrupted_softmax)
    with pytest.raises(KeyboardInterrupt):
        net.predict_proba(X)
    assert calls == {"caller": 2, "other": 1}  # of about 63 calls each
    monkeypatch.undo()
    assert net._plans_lock.acquire(blocking=False)
    net._plans_lock.release()
    assert parallel.threads_available() == threads_before
    assert np.array_equal(net.predict_proba(X), expected)


PREDICT_UNTIL_CTRL_C = """
import sys
import numpy as np
from threadpoolctl import threadpool_limits
import nncore as nc
threadpool_limits(limits=1)  # one thread: the whole predict takes tens of seconds
net = nc.mlp(2, [512] * 4, 5)
X = np.random.default_rng(0).uniform(-2, 2, (3_000_000, 2)).astype(np.float32)
print("ready", flush=True)
try:
    net.predict_proba(X)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_stops_a_long_predict_soon():
    """End to end, a real SIGINT: a predict of tens of seconds (3,000,000 rows through four
    layers of 512 on one thread) ends within one compiled call (16,384 rows, a quarter of a
    second here) and raises KeyboardInterrupt. One call for the whole predict ignored the
    Ctrl-C until the end (6.8 s measured on a shorter one)."""
    import signal
    import subprocess
    import sys
    import time

    child = interruptible_child([sys.executable, "-c", PREDICT_UNTIL_CTRL_C],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        signalled = time.perf_counter()
        child.send_signal(signal.SIGINT)
        output, _ = child.communicate(timeout=60)
        waited = time.perf_counter() - signalled
    finally:
        child.kill()
    assert output.strip() == "interrupted" and child.returncode == 130
    assert waited < 5.0, f"predict went on for {waited:.1f} s after the Ctrl-C"


def test_overlapping_predicts_give_blas_its_threads_back():
    """Two predicts on two threads, the first ending first: threadpoolctl's own limits
    would leave BLAS at one thread for good (each restores what it saw when it began;
    shown first), the shared limit gives the original count back."""
    controller = parallel._blas_controller()
    original = parallel.threads_available()
    try:
        with threadpool_limits(limits=2, user_api="blas"):
            first, second = controller.limit(limits=1), controller.limit(limits=1)
            first.restore_original_limits()
            second.restore_original_limits()
            assert parallel.threads_available() == 1  # the hazard
        with threadpool_limits(limits=2, user_api="blas"):
            expected = parallel.threads_available()
            first = parallel.one_blas_thread_while_splitting()
            second = parallel.one_blas_thread_while_splitting()
            first.__enter__()
            second.__enter__()
            assert parallel.threads_available() == 1
            first.__exit__(None, None, None)
            assert parallel.threads_available() == 1  # the second is still running
            second.__exit__(None, None, None)
            assert parallel.threads_available() == expected
    finally:
        threadpool_limits(limits=original, user_api="blas")
