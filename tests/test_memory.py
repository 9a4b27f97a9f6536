"""Memory: ``fit`` never copies the training set whole, and a training step allocates
nothing (the performance issue's memory target). Measured with ``tracemalloc``, which sees
every NumPy buffer; sizes, not timings, so the numbers are the same on every machine."""

import tracemalloc

import numpy as np
import pytest

import nncore as nc
from nncore import train


def _peak_added(function):
    """Bytes ``function()`` allocates at its peak beyond what exists before it."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_fit_peaks_below_three_times_the_data(standardize, weighted):
    rng = np.random.default_rng(0)
    n = 200_000
    X = rng.standard_normal((n, 8), dtype=np.float32)
    y = rng.integers(0, 5, n)
    weights = rng.random(n, dtype=np.float32) if weighted else None
    net = nc.mlp(8, [32, 32], 5)
    data = X.nbytes + y.nbytes + (0 if weights is None else weights.nbytes)
    peak = _peak_added(lambda: net.fit(X, y, sample_weight=weights, standardize=standardize,
                                       epochs=1, batch_size=64, verbose=0))
    assert data + net.params.nbytes + peak < 3 * data + net.params.nbytes
    # a standardised fit holds one standardised copy of X; otherwise no copy of X at all
    assert peak < (1.5 if standardize else 0.6) * data


def test_fit_would_fail_the_bound_with_a_copy_per_epoch(monkeypatch):
    """The check above can fail: gathering each epoch into a whole copy (as fit once did,
    through np.take's buffered ``out``) breaks the 0.6 x data bound."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100_000, 8), dtype=np.float32)
    y = rng.integers(0, 5, 100_000)
    net = nc.mlp(8, [16], 5)
    default_rng = np.random.default_rng

    class CopyingGenerator:
        def __init__(self, seed):
            self.rng = default_rng(seed)
            self.bit_generator = self.rng.bit_generator

        def permutation(self, n):
            order = self.rng.permutation(n)
            self.copy = X[order]  # an epoch's whole copy, held for the epoch
            return order

    monkeypatch.setattr(train.np.random, "default_rng", CopyingGenerator)
    peak = _peak_added(lambda: net.fit(X, y, epochs=1, verbose=0))
    assert peak > 0.6 * (X.nbytes + y.nbytes)


@pytest.mark.parametrize("optimizer", [nc.SGD(lr=0.01, momentum=0.9), nc.Adam()])
@pytest.mark.parametrize("build", [lambda: nc.mlp(8, [64] * 3, 5),
                                   lambda: nc.resnet(8, 32, 3, 5)])
def test_training_steps_allocate_nothing(optimizer, build):
    net = build()
    rng = np.random.default_rng(1)
    batch, count = 64, 8
    X = rng.standard_normal((batch * count, 8)).astype(net.dtype)
    y = rng.integers(0, 5, batch * count).astype(np.intp)
    optimizer.start(net.params, 1)
    step = net.train_step(batch, optimizer.step_state(), optimizer.update_kind)
    losses, correct = np.empty(count), np.empty(count, dtype=np.intp)
    update = optimizer.step_update()
    step.run_many(X, y, count, update, losses, correct, None)  # warm: buffers exist now

    def steps():
        for _ in range(5):
            step.run_many(X, y, count, update, losses, correct, None)

    # a few hundred bytes of Python integers and tuples, never an array of the step's
    assert _peak_added(steps) < 1024
