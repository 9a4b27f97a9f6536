"""The fused training step shared by two threads (``TrainStep.run_many(..., threads=2)``,
``_team_step`` in _kernels.pyx) against the same step on one thread, which
tests/test_network.py holds to the reference.

Each thread takes half of every layer's units in the products (forward, gradient to the
layer below, weight and bias gradients), half of the batch's rows in the elementwise work
around them, and half of the parameters in the update; the halves split at multiples of 16
from 32 on, so the sizes here sit on both sides of 16 and 32 and of the odd splits. The
two threads meet at a barrier wherever one needs what the other wrote: the stop conditions
(a bad label, a loss that is not finite, an update refused in either half) must end both
at the same step, and a thread whose partner never comes must not wait for ever.
"""

import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import nncore as nc
from nncore import _kernels, ops
from nncore.layers import Dense, Residual
from conftest import assert_close

pytestmark = pytest.mark.skipif(not _kernels.TEAM_STEP,
                                reason="this build has no two-thread step (TEAM_STEP)")

SGD = {"kind": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 0.01}
ADAM = {"kind": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3,
        "weight_decay": 0.01, "decoupled": True, "step": 1}


def network(kind, width, activation, dtype, n_in=3, n_classes=4, seed=0):
    if kind == "mlp":
        return nc.mlp(n_in, [width, width + 1], n_classes, activation=activation, dtype=dtype,
                      seed=seed)
    return nc.resnet(n_in, width, 2, n_classes, activation=activation, dtype=dtype, seed=seed)


def state_for(net, update):
    rng = np.random.default_rng(1)
    first = (0.01 * rng.standard_normal(net.n_params)).astype(net.params.dtype)
    if update["kind"] == "sgd":
        return (first,)
    return (first, np.abs(first) + np.asarray(1e-3, net.params.dtype))


def run_steps(net, n, X, targets, update, threads, n_steps, weights=None):
    """``n_steps`` fused steps from the network's current parameters and a fixed optimizer
    state, on ``threads`` threads; returns everything they wrote."""
    state = state_for(net, update)
    step = net.train_step(n, state, update["kind"])
    step.threads = threads
    net.grads[:] = np.nan  # a thread that read a gradient before it was written would show
    losses, correct = np.full(n_steps, np.nan), np.zeros(n_steps, dtype=np.intp)
    with threadpool_limits(1, user_api="blas"):
        done, status = step.run_many(X, targets, n_steps, update, losses, correct, weights)
    return {"done": done, "status": status, "losses": losses, "correct": correct,
            "params": net.params.copy(), "grads": net.grads.copy(),
            **{f"state{i}": array for i, array in enumerate(state)}}


def both(net, n, X, targets, update, n_steps=3, weights=None):
    """The same steps on one thread and on two, from the same starting parameters."""
    start = net.params.copy()
    one = run_steps(net, n, X, targets, update, 1, n_steps, weights)
    net.params[:] = start
    two = run_steps(net, n, X, targets, update, 2, n_steps, weights)
    return one, two


def assert_same_steps(one, two, dtype):
    assert (two["done"], two["status"]) == (one["done"], one["status"])
    np.testing.assert_array_equal(two["correct"], one["correct"])
    # the losses are doubles (summed in double) of the dtype's rounding, inf or NaN included
    np.testing.assert_allclose(two["losses"], one["losses"],
                               rtol=1e-5 if dtype == "float32" else 1e-12)
    for name in one:
        if name not in ("done", "status", "correct", "losses"):
            # the same loops on the same operands; BLAS may round a product of fewer rows
            # differently, so not asserted bit for bit
            assert_close(two[name], one[name], dtype, name=name)


def batch(net, n, n_steps, dtype, seed=2):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n * n_steps, net.n_in)).astype(dtype)
    y = rng.integers(0, net.n_classes, n * n_steps).astype(np.intp)
    return X, y


@pytest.mark.parametrize("kind", ["mlp", "resnet"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n, width", [(1, 1), (2, 2), (15, 16), (16, 15), (17, 17),
                                      (31, 32), (33, 31), (63, 64), (64, 65), (65, 33),
                                      (128, 129), (129, 128)])
def test_two_threads_take_the_steps_of_one(kind, dtype, n, width):
    net = network(kind, width, "tanh", dtype)
    X, y = batch(net, n, 3, dtype)
    one, two = both(net, n, X, y, SGD)
    assert one["done"] == 3 and one["status"] == nc.status.OK
    assert_same_steps(one, two, dtype)


@pytest.mark.parametrize("activation", ["identity", "relu", "gelu", "softplus"])
@pytest.mark.parametrize("update", [SGD, ADAM], ids=["sgd", "adamw"])
@pytest.mark.parametrize("kind", ["mlp", "resnet"])
def test_two_threads_with_every_kind_of_saved_activation_and_update(activation, update,
                                                                     kind):
    """identity (no scratch: dZ is the incoming gradient), relu (derivative from the
    output), gelu and softplus (from the kept pre-activation); SGD and AdamW (two state
    arrays, the step number counted by each thread)."""
    net = network(kind, 40, activation, "float32")
    X, y = batch(net, 48, 4, "float32")
    one, two = both(net, 48, X, y, update, n_steps=4)
    assert_same_steps(one, two, "float32")


#: Layer stacks the builders do not make: a residual block first (its input is X, no input
#: gradient) and last (its output the logits), hidden widths other than the block's, one
#: output (member 0 has no unit of the last product), identity and kinked activations.
STACKS = {
    "residual-first": lambda: [Residual(3, 40, "tanh"), Dense(3, 33, "relu"),
                               Dense(33, 4, "identity")],
    "residual-last": lambda: [Dense(3, 36, "sigmoid"), Residual(36, 50, "gelu")],
    "hidden-not-width": lambda: [Dense(3, 64, "tanh"), Residual(64, 17, "elu"),
                                 Residual(64, 96, "tanh"), Dense(64, 4, "identity")],
    "one-output": lambda: [Dense(3, 48, "softplus"), Dense(48, 1, "identity")],
}


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_threads_on_unusual_layer_stacks(stack, dtype):
    loss = "mean_squared_error" if stack == "one-output" else "softmax_cross_entropy"
    net = nc.Network(STACKS[stack](), dtype=dtype, seed=1, loss=loss)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3 * 40, net.n_in)).astype(dtype)
    targets = (rng.standard_normal((3 * 40, 1)).astype(dtype) if loss != "softmax_cross_entropy"
               else rng.integers(0, 4, 3 * 40).astype(np.intp))
    one, two = both(net, 40, X, targets, SGD)
    assert one["done"] == 3 and one["status"] == nc.status.OK
    assert_same_steps(one, two, dtype)


@pytest.mark.parametrize("stack", STACKS)
def test_two_threads_repeat_their_own_numbers_bit_for_bit(stack):
    """The same steps twice on two threads: the same bits (a read before a write would
    show here first: the comparison with one thread has to allow for rounding)."""
    loss = "mean_squared_error" if stack == "one-output" else "softmax_cross_entropy"
    net = nc.Network(STACKS[stack](), dtype="float32", seed=2, loss=loss)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4 * 48, net.n_in)).astype(np.float32)
    targets = (rng.standard_normal((4 * 48, 1)).astype(np.float32)
               if loss != "softmax_cross_entropy" else rng.integers(0, 4, 4 * 48).astype(np.intp))
    start = net.params.copy()
    runs = []
    for _ in range(3):
        net.params[:] = start
        runs.append(run_steps(net, 48, X, targets, ADAM, 2, 4))
    for other in runs[1:]:
        for name in runs[0]:
            np.testing.assert_array_equal(other[name], runs[0][name], err_msg=name)


def test_two_threads_with_sample_weights_and_squared_error():
    net = nc.mlp(3, [40], 2, loss="mean_squared_error", dtype="float64")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3 * 34, 3))
    targets = rng.standard_normal((3 * 34, 2))
    weights = rng.uniform(0, 2, 3 * 34)
    weights[34:68] = 0.0  # one batch of weight 0: loss and gradient 0
    one, two = both(net, 34, X, targets, SGD, weights=weights)
    assert one["done"] == 3 and one["losses"][1] == 0.0
    assert_same_steps(one, two, "float64")


@pytest.mark.parametrize("bad_row", [0, 20, 47])
def test_two_threads_stop_before_a_step_with_a_bad_label(bad_row):
    """A bad label in either thread's half of the second step: one step done, the row of
    the batch reported, the second step's update not applied."""
    net = network("mlp", 40, "tanh", "float64")
    X, y = batch(net, 48, 3, "float64")
    y[48 + bad_row] = net.n_classes
    one, two = both(net, 48, X, y, SGD)
    assert (one["done"], one["status"]) == (1, bad_row)
    assert_same_steps(one, two, "float64")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_two_threads_stop_after_a_loss_that_is_not_finite():
    net = network("mlp", 40, "identity", "float32", n_in=4)
    net.layers[0].W[...] = 1.0
    X, y = batch(net, 48, 3, "float32")
    X[48:96] = 1e38  # four features of 1e38 sum to inf: the second step's loss
    start = net.params.copy()
    one, two = both(net, 48, X, y, SGD)
    assert one["done"] == 2 and not np.isfinite(one["losses"][1])
    assert_same_steps(one, two, "float32")
    net.params[:] = start
    after_one = run_steps(net, 48, X[:48], y[:48], SGD, 2, 1)["params"]
    assert_close(two["params"], after_one, "float32", name="params")  # step 2 not applied


@pytest.mark.parametrize("where", ["first half", "second half"])
def test_two_threads_refuse_an_update_that_would_not_be_finite_in_either_half(where):
    """A parameter at the largest float, its velocity pushing it further, in one thread's
    half of the parameters: the update overflows there only, and neither thread applies
    its half."""
    net = network("mlp", 40, "tanh", "float32")
    X, y = batch(net, 48, 1, "float32")
    state = (np.zeros(net.n_params, np.float32),)
    where = 0 if where == "first half" else -1
    net.params[where], state[0][where] = np.finfo(np.float32).max, -np.finfo(np.float32).max
    before = (net.params.copy(), state[0].copy())
    step = net.train_step(48, state)
    step.threads = 2
    with threadpool_limits(1, user_api="blas"):
        _, _, status = step.run(X, y, SGD)
    assert status == nc.status.UPDATE_NOT_FINITE
    np.testing.assert_array_equal(net.params, before[0])
    np.testing.assert_array_equal(state[0], before[1])


class _InterruptedAfterStart(threading.Thread):
    """A thread whose start() is followed, in the caller, by a Ctrl-C: what happens when
    the signal arrives after the step's second thread started but before this one joined
    it at the barrier."""

    def start(self):
        super().start()
        raise KeyboardInterrupt


def test_an_interrupt_before_the_barrier_does_not_leave_a_thread_waiting(monkeypatch):
    net = network("mlp", 40, "tanh", "float64")
    X, y = batch(net, 48, 2, "float64")
    before = net.params.copy()
    step = net.train_step(48, (np.zeros(net.n_params),))
    step.threads = 2
    monkeypatch.setattr(_kernels, "Thread", _InterruptedAfterStart)
    outcome = []

    def call():
        try:
            step.run_many(X, y, 2, SGD, np.zeros(2), np.zeros(2, np.intp))
        except KeyboardInterrupt:
            outcome.append("interrupted")

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(timeout=30)
    assert not caller.is_alive(), "the step's second thread waited for ever"
    assert outcome == ["interrupted"]
    np.testing.assert_array_equal(net.params, before)  # the partner did nothing alone
    monkeypatch.undo()
    _, _, status = step.run(X[:48], y[:48], SGD)  # and the step still works
    assert status == nc.status.OK


def test_two_threads_are_used_for_a_large_step_when_two_are_free(monkeypatch):
    net = nc.mlp(2, [512, 512], 5, dtype="float32")
    large = net.train_step(256, (np.zeros(net.n_params, np.float32),))
    small = net.train_step(2, (np.zeros(net.n_params, np.float32),))
    assert large.flops >= ops.TWO_THREAD_STEP_FLOPS > small.flops
    assert large.worth_two and not small.worth_two
    step_threads = ops.parallel.step_threads  # what each call of a step runs on
    monkeypatch.setattr(ops.parallel, "threads_available", lambda: 2)
    with step_threads(None, large.worth_two) as threads:
        assert threads == 2
        with step_threads(None, True) as others:  # another network on another Python thread
            assert others == 1
    with step_threads(None, small.worth_two) as threads:
        assert threads == 1
    monkeypatch.setattr(ops.parallel, "threads_available", lambda: 1)
    with step_threads(None, True) as threads:  # a user's threadpool_limits(1), or a joblib worker
        assert threads == 1
    with step_threads(2, True) as threads, step_threads(2, False) as forced:
        assert threads == forced == 2
    with step_threads(1, True) as threads:
        assert threads == 1


def test_networks_trained_on_two_python_threads_at_once_share_the_cpus():
    """Each step takes two threads only if no other splitting computation runs: two fits
    at once, each of steps above the threshold, give the results each gives alone."""
    def fit(seed, out):
        net = nc.mlp(2, [256, 256], 5, seed=seed)
        X = np.random.default_rng(seed).standard_normal((512, 2)).astype(np.float32)
        y = np.arange(512) % 5
        net.fit(X, y, epochs=2, batch_size=256, verbose=0)
        out[seed] = net.params.copy()

    alone, together = {}, {}
    for seed in (0, 1):
        fit(seed, alone)
    threads = [threading.Thread(target=fit, args=(seed, together)) for seed in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for seed in (0, 1):
        assert_close(together[seed], alone[seed], "float32", name=f"network {seed}")


@pytest.mark.parametrize("threads", [0, 3])
def test_a_thread_count_other_than_one_or_two_is_refused(threads):
    net = network("mlp", 8, "tanh", "float64")
    X, y = batch(net, 4, 1, "float64")
    step = net.train_step(4, (np.zeros(net.n_params),))
    step.threads = threads
    with pytest.raises(ValueError, match=f"threads must be 1 or 2, got {threads}"):
        step.run(X, y, SGD)


def test_the_comparison_above_can_fail():
    """assert_same_steps tells a step with a learning rate 1% off from the right one."""
    net = network("mlp", 40, "tanh", "float32")
    X, y = batch(net, 48, 2, "float32")
    start = net.params.copy()
    one = run_steps(net, 48, X, y, SGD, 1, 2)
    net.params[:] = start
    two = run_steps(net, 48, X, y, {**SGD, "lr": SGD["lr"] * 1.01}, 2, 2)
    with pytest.raises(AssertionError):
        assert_same_steps(one, two, "float32")


def test_a_started_thread_joins_only_the_open_call_it_was_started_for():
    """Alone, member 1 would wait at the barrier for ever: a call of _member_1 for a call
    that is not open (none yet, or an earlier one) does nothing."""
    net = network("mlp", 8, "tanh", "float64")
    step = net.train_step(4, (np.zeros(net.n_params),))
    before = net.params.copy()
    assert step.step._member_1(0) is None  # no call opened yet
    X, y = batch(net, 4, 1, "float64")
    step.threads = 2
    step.run(X, y, SGD)  # call 1, done
    after = net.params.copy()
    assert step.step._member_1(1) is None and step.step._member_1(0) is None
    np.testing.assert_array_equal(net.params, after)
    assert not np.array_equal(after, before)


class _StartsLateAndInterrupted(threading.Thread):
    """A thread that starts running only after a while, and whose start() is followed by a
    Ctrl-C: the caller gives up on the call before the thread could claim it."""

    def run(self):
        time.sleep(0.02)  # into the next calls (400 of them take longer here)
        super().run()

    def start(self):
        super().start()
        raise KeyboardInterrupt


class _SecondThreadFails(_kernels.TrainStep):
    """A step whose second thread raises before its first step (as a MemoryError could)."""

    def _take_part(self):
        raise MemoryError("no memory for member 1")


@pytest.mark.parametrize("fails", [False, True])
def test_a_failing_second_thread_is_an_error_of_the_call_not_a_status(monkeypatch, fails):
    """Member 0 stops at the barrier member 1 aborted; the call must raise member 1's error
    (it used to return the abort's status, which fit would have taken for a step done) and
    leave no thread behind. On a sound step the same call runs its four steps."""
    net = network("mlp", 40, "tanh", "float64")
    X, y = batch(net, 48, 4, "float64")
    if fails:
        monkeypatch.setattr(ops._kernels, "TrainStep", _SecondThreadFails)
    step = net.train_step(48, state_for(net, SGD))
    step.threads = 2
    losses = np.zeros(4)
    if not fails:  # the check can fail: a sound step runs its four steps
        assert step.run_many(X, y, 4, SGD, losses, np.zeros(4, np.intp)) == (4, nc.status.OK)
        return
    with pytest.raises(RuntimeError, match="second thread failed") as raised:
        step.run_many(X, y, 4, SGD, losses, np.zeros(4, np.intp))
    assert isinstance(raised.value.__cause__, MemoryError)
    assert not [t for t in threading.enumerate() if t.name == "nncore training step"]


def test_a_thread_started_for_an_interrupted_call_stays_out_of_the_next(monkeypatch):
    """The thread of an interrupted call wakes up during later calls on the same step: it
    must not join them (three threads at a two-thread barrier left one spinning for ever),
    nor change what they compute."""
    net = network("mlp", 40, "tanh", "float64")
    X, y = batch(net, 48, 4, "float64")
    start, state = net.params.copy(), state_for(net, SGD)
    state_start = state[0].copy()
    step = net.train_step(48, state)
    step.threads = 2
    monkeypatch.setattr(_kernels, "Thread", _StartsLateAndInterrupted)
    with pytest.raises(KeyboardInterrupt):
        step.run_many(X, y, 4, SGD, np.zeros(4), np.zeros(4, np.intp))
    monkeypatch.undo()
    np.testing.assert_array_equal(net.params, start)  # nothing ran
    late = [t for t in threading.enumerate() if t.name == "nncore training step"]
    results = {}

    def calls(threads, count):
        """``count`` calls from the same start (the late thread wakes during them)."""
        net.params[:], state[0][:] = start, state_start
        step.threads = threads
        with threadpool_limits(1, user_api="blas"):
            for _ in range(count):
                assert step.run_many(X, y, 4, SGD, np.zeros(4), np.zeros(4, np.intp)) == (
                    4, nc.status.OK)
        results[threads] = net.params.copy()

    caller = threading.Thread(target=lambda: calls(2, 400), daemon=True)
    caller.start()
    caller.join(timeout=60)
    assert not caller.is_alive(), "a call waited for ever"
    for thread in late:
        thread.join(timeout=10)
        assert not thread.is_alive()
    calls(1, 400)
    assert_close(results[2], results[1], "float64", name="params")
