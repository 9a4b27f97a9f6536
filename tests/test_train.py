"""Tests of training: nncore.fit (Network.fit), History, callbacks, faults, SGD and schedules.

1. Learning: small networks reach a high validation accuracy on small generated sets.
2. The loop: one History row per epoch, CSV export, bit-identical reruns, every sample used
   (the last partial batch too), checked against a plain re-implementation of the documented
   loop (``simulate_fit``) and against the reference backend.
3. Faults: divergence (``TrainingDiverged``), Ctrl-C (KeyboardInterrupt), EarlyStopping,
   bad arguments.
4. SGD: constructor checks, schedules, the learning rate recorded in the history.
5. Adam and AdamW: whole trajectories against PyTorch's rule written out in NumPy, the
   update count kept exact by fit (chunks, epochs, a second fit), constructor checks.
"""

import csv
import math
import time

import numpy as np
import pytest

import nncore as nc
from conftest import assert_close
from nncore import ops, reference

#: History columns that do not depend on the clock.
COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr")
BACKENDS = {"kernels": ops, "reference": reference}


# ============================================================================================
# helpers
# ============================================================================================

def blobs(n=60, n_in=3, n_classes=3, seed=0, dtype=np.float64):
    """A small, roughly separable set: Gaussian blobs around random centres."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((n_classes, n_in))
    y = rng.integers(0, n_classes, n)
    X = centres[y] + 0.7 * rng.standard_normal((n, n_in))
    return X.astype(dtype), y


def small_net(kind="mlp", dtype="float64", seed=0, backend="kernels", activation="tanh",
              n_in=3, n_classes=3):
    if kind == "mlp":
        return nc.mlp(n_in, [8], n_classes, activation=activation, dtype=dtype, seed=seed,
                      backend=backend)
    return nc.resnet(n_in, 6, 2, n_classes, activation=activation, dtype=dtype, seed=seed,
                     backend=backend)


def rows(history):
    """The history without its clock column, as a dict of lists."""
    return {column: list(history[column]) for column in COLUMNS}


def assert_same_history(a, b):
    """Bit-identical rows (NaN equal to NaN)."""
    assert len(a) == len(b)
    for column in COLUMNS:
        assert np.array_equal(np.array(a[column], dtype=float), np.array(b[column], dtype=float),
                              equal_nan=True), column


def simulate_fit(net, X, y, epochs, batch_size, lr=0.05, momentum=0.0, nesterov=False,
                 weight_decay=0.0, seed=0, shuffle=True, schedule=None, drop_last=False):
    """The loop documented in nncore.train, written out with public calls: shuffle once per
    epoch with ``default_rng(seed).permutation``, contiguous batches (the last one partial),
    ``loss_and_grad`` then ``sgd_momentum_``. Returns (losses, accuracies) per epoch."""
    backend = BACKENDS[net.backend]
    X = np.ascontiguousarray(X, dtype=net.dtype)
    y = np.asarray(y)
    n = len(y)
    rng = np.random.default_rng(seed)
    velocity = np.zeros_like(net.params)
    losses, accuracies = [], []
    for epoch in range(epochs):
        rate = lr if schedule is None else schedule(lr, epoch)
        order = rng.permutation(n) if shuffle else np.arange(n)
        Xe, ye = X[order], y[order]
        total, correct = 0.0, 0
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            Xb, yb = Xe[start:start + batch_size], ye[start:start + batch_size]
            correct += int((net.logits(Xb).argmax(axis=1) == yb).sum())
            total += net.loss_and_grad(Xb, yb) * len(yb)
            backend.sgd_momentum_(net.params, net.grads, velocity, rate, momentum, nesterov,
                                  weight_decay)
        losses.append(total / n)
        accuracies.append(correct / n)
    return losses, accuracies


class Recorder(nc.Callback):
    """Records every hook call; optionally raises or stops at a given epoch (1-based, the
    number fit passes, History's ``epoch``)."""

    def __init__(self, raise_at=None, stop_at=None, exception=KeyboardInterrupt):
        self.calls, self.params = [], []
        self.raise_at, self.stop_at, self.exception = raise_at, stop_at, exception

    def on_train_begin(self, network, history):
        self.network = network
        self.calls.append(("begin", len(history)))

    def on_epoch_end(self, network, epoch, logs):
        self.calls.append(("epoch", epoch, dict(logs)))
        self.params.append(network.params.copy())
        if epoch == self.raise_at:
            raise self.exception()
        return epoch == self.stop_at

    def on_train_end(self, network, history):
        self.calls.append(("end", len(history)))


# ============================================================================================
# 1. learning
# ============================================================================================

@pytest.fixture(scope="module")
def gmm():
    return nc.datasets.make_gmm(n_train=2000, n_val=500)


@pytest.mark.parametrize("build, dtype", [
    (lambda dtype: nc.mlp(5, [32], 5, activation="tanh", dtype=dtype, seed=0), "float32"),
    (lambda dtype: nc.resnet(5, 32, 2, 5, activation="relu", dtype=dtype, seed=0), "float64"),
], ids=["mlp-tanh-float32", "resnet-relu-float64"])
def test_a_small_network_learns_the_gmm_set(gmm, build, dtype):
    X, y, Xv, yv = gmm
    net = build(dtype)
    before = net.evaluate(Xv, yv)["accuracy"]
    history = net.fit(X, y, epochs=20, batch_size=32, optimizer=nc.SGD(lr=0.05),
                      validation_data=(Xv, yv), seed=0, verbose=0)
    # reaches about 0.94 (mlp) and 0.96 (resnet) today
    assert history["val_accuracy"][-1] > 0.9
    assert net.evaluate(Xv, yv)["accuracy"] == history["val_accuracy"][-1]
    assert before < 0.5
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize("name, n_classes, lr, epochs, bar", [
    ("peaks", 5, 0.05, 30, 0.88),      # reaches about 0.92 today
    ("swissroll", 2, 0.1, 40, 0.9),    # reaches about 0.96 today
])
def test_a_small_resnet_learns_bundled_subsets(name, n_classes, lr, epochs, bar):
    X, y, Xv, yv = nc.datasets.load(name)
    X, y, Xv, yv = X[:4000], y[:4000], Xv[:1000], yv[:1000]
    net = nc.resnet(2, 32, 3, n_classes, activation="tanh", dtype="float64", seed=0)
    history = net.fit(X, y, epochs=epochs, batch_size=32,
                      optimizer=nc.SGD(lr=lr, momentum=0.9, schedule="cosine"),
                      validation_data=(Xv, yv), seed=0, verbose=0)
    assert history["val_accuracy"][-1] > bar


# ============================================================================================
# 2. the loop
# ============================================================================================

def test_history_has_one_row_per_epoch_with_every_column():
    X, y = blobs()
    Xv, yv = blobs(30, seed=1)
    net = small_net()
    history = net.fit(X, y, epochs=4, batch_size=16, optimizer=nc.SGD(lr=0.1),
                      validation_data=(Xv, yv), verbose=0)
    assert net.history is history
    assert history.COLUMNS == nc.History.COLUMNS == COLUMNS + ("seconds",)
    assert len(history) == 4
    assert set(history.history) == set(nc.History.COLUMNS)
    assert all(len(history[column]) == 4 for column in history.COLUMNS)
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["lr"] == [0.1] * 4
    for column in ("loss", "val_loss", "seconds"):
        assert all(math.isfinite(v) and v >= 0 for v in history[column])
    for column in ("accuracy", "val_accuracy"):
        assert all(0 <= v <= 1 for v in history[column])
    # accuracies are fractions of the 60 training / 30 validation samples
    assert all(round(a * 60) == a * 60 for a in history["accuracy"])
    assert history["val_loss"][-1] == net.evaluate(Xv, yv)["loss"]
    assert history["val_accuracy"][-1] == net.evaluate(Xv, yv)["accuracy"]
    assert history.last() == {column: history[column][-1] for column in history.COLUMNS}
    assert not history.interrupted and history.stopped_early is None
    assert "4 epochs" in repr(history)


def test_history_without_validation_data_holds_nan():
    X, y = blobs()
    history = small_net().fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert all(math.isnan(v) for v in history["val_loss"] + history["val_accuracy"])
    assert all(math.isfinite(v) for v in history["loss"])


def test_history_to_csv_writes_every_row_and_column(tmp_path):
    X, y = blobs()
    Xv, yv = blobs(30, seed=1)
    history = small_net().fit(X, y, epochs=3, batch_size=16, validation_data=(Xv, yv),
                              verbose=0)
    history.to_csv(tmp_path / "h.csv")
    with open(tmp_path / "h.csv", newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == list(nc.History.COLUMNS)
    assert len(table) == 1 + 3
    for i, row in enumerate(table[1:]):
        assert [float(v) for v in row] == [float(history[c][i]) for c in nc.History.COLUMNS]
    # without validation data the NaNs survive the round trip
    history = small_net().fit(X, y, epochs=1, batch_size=16, verbose=0)
    history.to_csv(tmp_path / "n.csv")
    with open(tmp_path / "n.csv", newline="") as f:
        row = list(csv.DictReader(f))[0]
    assert math.isnan(float(row["val_loss"])) and float(row["loss"]) == history["loss"][0]


def test_an_empty_history_to_csv(tmp_path):
    X, y = blobs()
    net = small_net()
    before = net.params.copy()
    history = net.fit(X, y, epochs=0, batch_size=16, verbose=0)
    assert len(history) == 0 and history.last() == {}
    assert np.array_equal(net.params, before)
    history.to_csv(tmp_path / "h.csv")
    assert (tmp_path / "h.csv").read_text().strip() == ",".join(nc.History.COLUMNS)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["mlp", "resnet"])
def test_the_same_seeds_give_bit_identical_training(kind, dtype):
    X, y = blobs(70)
    Xv, yv = blobs(30, seed=1)

    def run(net_seed=0, fit_seed=0):
        net = small_net(kind, dtype, seed=net_seed)
        history = net.fit(X, y, epochs=3, batch_size=8, validation_data=(Xv, yv),
                          optimizer=nc.SGD(lr=0.05, momentum=0.9, nesterov=True,
                                           weight_decay=1e-3),
                          seed=fit_seed, verbose=0)
        return net.params.copy(), history

    params, history = run()
    for _ in range(2):
        again, again_history = run()
        assert np.array_equal(again, params)
        assert_same_history(again_history, history)
    other, other_history = run(fit_seed=1)
    assert not np.array_equal(other, params)
    assert other_history["loss"] != history["loss"]
    other, _ = run(net_seed=1)
    assert not np.array_equal(other, params)


def test_without_shuffling_the_fit_seed_does_not_matter():
    X, y = blobs()
    a, b = small_net(), small_net()
    a.fit(X, y, epochs=2, batch_size=16, shuffle=False, seed=0, verbose=0)
    b.fit(X, y, epochs=2, batch_size=16, shuffle=False, seed=123, verbose=0)
    assert np.array_equal(a.params, b.params)


@pytest.mark.parametrize("backend", ["kernels", "reference"])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n, batch_size", [(10, 4), (75, 2)])
def test_fit_follows_the_documented_loop_including_the_last_partial_batch(backend, shuffle,
                                                                          n, batch_size):
    """n=10, batch_size=4: batches of 4, 4 and 2; n=75, batch_size=2: 37 batches of 2 (more
    than one chunk of compiled steps) and one of 1; with the documented shuffling."""
    X, y = blobs(n)
    settings = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    net = small_net("resnet", backend=backend)
    history = net.fit(X, y, epochs=3, batch_size=batch_size, optimizer=nc.SGD(**settings),
                      seed=5, shuffle=shuffle, verbose=0)
    twin = small_net("resnet", backend=backend)
    losses, accuracies = simulate_fit(twin, X, y, 3, batch_size, seed=5, shuffle=shuffle,
                                      **settings)
    assert_close(net.params, twin.params, np.float64, rtol=1e-12, name="params")
    assert_close(history["loss"], losses, np.float64, rtol=1e-12, name="epoch losses")
    assert history["accuracy"] == accuracies
    # the checker can fail: dropping the last partial batch gives other weights
    dropped = small_net("resnet", backend=backend)
    simulate_fit(dropped, X, y, 3, batch_size, seed=5, shuffle=shuffle, drop_last=True, **settings)
    with pytest.raises(AssertionError):
        assert_close(net.params, dropped.params, np.float64, rtol=1e-12)


def test_every_sample_contributes_including_the_last_partial_batch():
    """Without shuffling, samples 8 and 9 are only in the last batch (of 2): changing one of
    them must change the weights, and each batch's loss enters the epoch loss by its size."""
    X, y = blobs(10)
    base = small_net()
    history = base.fit(X, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    for i in (8, 9):
        Xi = X.copy()
        Xi[i] += 1.0
        changed = small_net()
        changed.fit(Xi, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
        assert not np.allclose(changed.params, base.params), f"sample {i} was not used"
    # the epoch loss is the size-weighted mean of the batch losses (4 + 4 + 2 samples)
    probe = small_net()
    optimizer = nc.SGD()
    batch_losses = []
    optimizer.start(probe.params, 1)
    for start in (0, 4, 8):
        batch_losses.append(probe.loss_and_grad(X[start:start + 4], y[start:start + 4]))
        optimizer.step(probe.params, probe.grads)
    expected = (4 * batch_losses[0] + 4 * batch_losses[1] + 2 * batch_losses[2]) / 10
    assert_close(history["loss"][0], expected, np.float64, rtol=1e-12)
    assert_close(probe.params, base.params, np.float64, rtol=1e-12)


def test_kernels_and_reference_backends_train_alike_in_float64():
    X, y = blobs(90, n_in=4, n_classes=3, seed=2)
    Xv, yv = blobs(40, n_in=4, n_classes=3, seed=3)
    results = {}
    for backend in ("kernels", "reference"):
        net = nc.resnet(4, 8, 2, 3, activation="tanh", dtype="float64", seed=1,
                        backend=backend)
        optimizer = nc.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3,
                           schedule="exponential")
        history = net.fit(X, y, epochs=5, batch_size=16, optimizer=optimizer,
                          validation_data=(Xv, yv), seed=3, verbose=0)
        results[backend] = net.params.copy(), history
    (params, history), (ref_params, ref_history) = results["kernels"], results["reference"]
    assert_close(params, ref_params, np.float64, rtol=1e-10, name="params")
    for column in ("loss", "val_loss"):
        assert_close(history[column], ref_history[column], np.float64, rtol=1e-10, name=column)
    for column in ("epoch", "accuracy", "val_accuracy", "lr"):
        assert history[column] == ref_history[column], column


def test_the_optimizer_velocity_persists_across_fit_calls():
    """Documented: the optimizer's velocity persists, so 2 + 2 epochs equal 4 epochs (without
    shuffling and with a constant learning rate)."""
    X, y = blobs()
    a, b = small_net(), small_net()
    optimizer = nc.SGD(lr=0.05, momentum=0.9)
    a.fit(X, y, epochs=2, batch_size=16, optimizer=optimizer, shuffle=False, verbose=0)
    a.fit(X, y, epochs=2, batch_size=16, optimizer=optimizer, shuffle=False, verbose=0)
    b.fit(X, y, epochs=4, batch_size=16, optimizer=nc.SGD(lr=0.05, momentum=0.9),
          shuffle=False, verbose=0)
    assert np.array_equal(a.params, b.params)


def test_fit_does_not_modify_its_inputs_and_casts_them():
    X, y = blobs()
    Xv, yv = blobs(30, seed=1)
    copies = [a.copy() for a in (X, y, Xv, yv)]
    net = small_net(dtype="float32")
    X_f = np.asfortranarray(X)
    X_f.flags.writeable = False
    net.fit(X_f, y.tolist(), epochs=1, batch_size=16, validation_data=(Xv, yv), verbose=0)
    assert net.params.dtype == np.float32
    for a, b in zip((X, y, Xv, yv), copies):
        assert np.array_equal(a, b)


def test_callbacks_are_called_in_order_with_the_epoch_logs():
    X, y = blobs()
    recorder = Recorder()
    history = small_net().fit(X, y, epochs=3, batch_size=16, callbacks=[recorder], verbose=0)
    kinds = [call[0] for call in recorder.calls]
    assert kinds == ["begin", "epoch", "epoch", "epoch", "end"]
    assert recorder.calls[0] == ("begin", 0) and recorder.calls[-1] == ("end", 3)
    for i, call in enumerate(recorder.calls[1:4]):
        _, epoch, logs = call
        assert epoch == i + 1 == logs["epoch"]  # one numbering: History's, from 1
        assert set(logs) == set(nc.History.COLUMNS)
        assert logs["epoch"] == i + 1 and logs["loss"] == history["loss"][i]


def test_a_callback_returning_true_stops_training():
    X, y = blobs()
    history = small_net().fit(X, y, epochs=10, batch_size=16, callbacks=[Recorder(stop_at=2)],
                              verbose=0)
    assert len(history) == 2 and history.stopped_early == 2 and not history.interrupted


def test_verbose_2_prints_one_line_per_epoch(capsys):
    X, y = blobs()
    small_net().fit(X, y, epochs=3, batch_size=16, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3") and "loss" in lines[0]


def test_verbose_0_prints_nothing_and_verbose_1_shows_progress_on_stderr(capsys):
    X, y = blobs()
    small_net().fit(X, y, epochs=2, batch_size=16, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    small_net().fit(X, y, epochs=2, batch_size=16, verbose=1)
    captured = capsys.readouterr()
    assert captured.out == "" and "step" in captured.err


# ============================================================================================
# 3. faults
# ============================================================================================

def assert_diverged_error(error, net, n_layers):
    assert isinstance(error, FloatingPointError)
    message = str(error)
    assert f"epoch {error.epoch + 1}" in message and f"step {error.step + 1}" in message
    assert error.layer is None or 0 <= error.layer < n_layers
    if error.layer is not None:
        assert f"layer {error.layer}" in message
    assert isinstance(error.update_overflow, bool)
    # either the loss went non-finite, or it was finite and the update would overflow
    assert math.isfinite(error.loss) == error.update_overflow
    assert np.isfinite(net.params).all(), "the network must keep finite weights"
    assert len(net.history) == error.epoch  # the epochs completed before


@pytest.mark.parametrize("activation, batch_size, data_seed, must_diverge", [
    ("relu", 200, 0, True), ("identity", 200, 0, True), ("identity", 20, 0, True),
    ("relu", 20, 0, True), ("relu", 40, 3, False),
], ids=["relu-batch200", "identity-batch200", "identity-batch20", "relu-batch20",
        "relu-batch40-data3"])
def test_a_huge_learning_rate_raises_training_diverged(activation, batch_size, data_seed,
                                                       must_diverge):
    """lr=1e3 on a 3 -> 16 -> 16 -> 3 float32 MLP, 200 standard normal samples: training
    stops with TrainingDiverged and the weights stay finite.

    relu-batch40-data3 once ended with non-finite weights (the last update of an epoch
    overflowed them). With overflowing updates refused, whether this chaotic run diverges
    within 20 epochs depends on rounding (its ReLUs die and the loss can stay finite at
    ~1e3 with weights ~1e28): it must either stop with TrainingDiverged or finish with
    finite weights and a finite loss in every epoch, never with NaN.
    """
    rng = np.random.default_rng(data_seed)
    X, y = rng.standard_normal((200, 3)), rng.integers(0, 3, 200)
    net = nc.mlp(3, [16, 16], 3, activation=activation, seed=0)
    try:
        net.fit(X, y, epochs=20, batch_size=batch_size, optimizer=nc.SGD(lr=1e3), verbose=0)
    except nc.TrainingDiverged as error:
        assert_diverged_error(error, net, 3)
    else:
        assert not must_diverge, "lr=1e3 did not stop training"
        assert np.isfinite(net.params).all() and np.isfinite(net.history["loss"]).all()


@pytest.mark.parametrize("backend", ["kernels", "reference"])
@pytest.mark.parametrize("epochs_before", [0, 2])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_an_update_that_would_overflow_the_weights_is_not_applied(backend, epochs_before):
    """Softmax regression (float32), no shuffling, batches of 2: a batch of 1e36 has a
    finite loss (~1e36) but its update (lr=1e3) would overflow the weights to inf; training
    stops at that step without applying it; the network then goes back to the weights it
    started this fit with (no epoch of it finished), not those after the step before."""
    X, _ = blobs(6, n_in=2, n_classes=2)
    X, y = X.astype(np.float32), np.array([0, 1, 0, 1, 0, 1])
    X_huge = X.copy()
    X_huge[2:4] = 1e36
    net = nc.softmax_regression(2, 2, seed=0, backend=backend)
    sgd = dict(lr=0.1, momentum=0.0)
    net.fit(X, y, epochs=epochs_before, batch_size=2, shuffle=False, optimizer=nc.SGD(**sgd),
            verbose=0) if epochs_before else None
    start = net.params.copy()
    with pytest.raises(nc.TrainingDiverged) as info:
        net.fit(X_huge, y, epochs=3, batch_size=2, shuffle=False,
                optimizer=nc.SGD(lr=1e3, momentum=0.0), verbose=0)
    error = info.value
    assert (error.epoch, error.step, error.update_overflow) == (0, 1, True)
    assert "the update would make weights non-finite" in str(error)
    assert_diverged_error(error, net, 1)
    assert error.restored_epoch == 0 and "the weights it started training with" in str(error)
    assert np.array_equal(net.params, start)


def test_divergence_after_weights_overflowed_at_the_end_of_an_epoch_keeps_finite_weights():
    """Softmax regression (float32), X = 1e36 everywhere, y = [0, 1, 0, 1], batch_size = 4
    (one step per epoch), lr = 1e3, no momentum. The first step has a finite loss (~1e36)
    but its update would overflow the weights to +-inf (once, they were written and the
    error came one epoch later with ``[-inf, -inf, inf, inf, -500, 500]`` kept): now that
    update is refused and the initial weights stay."""
    X = np.full((4, 2), 1e36)
    y = np.array([0, 1, 0, 1])
    net = nc.softmax_regression(2, 2)
    initial = net.params.copy()
    with pytest.raises(nc.TrainingDiverged) as info:
        net.fit(X, y, epochs=3, batch_size=4, optimizer=nc.SGD(lr=1e3, momentum=0.0),
                verbose=0)
    assert np.isfinite(net.params).all(), f"params after TrainingDiverged: {net.params}"
    assert np.array_equal(net.params, initial)
    assert (info.value.epoch, info.value.step, info.value.update_overflow) == (0, 0, True)


@pytest.mark.parametrize("backend", ["kernels", "reference"])
@pytest.mark.parametrize("n, batch_size, row, step", [
    (12, 4, 5, 1),     # the second batch
    (10, 4, 9, 2),     # the last, partial batch
    (50, 1, 40, 40),   # past the first chunk of compiled steps
    (75, 2, 74, 37),   # the partial batch after more than one chunk
])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_huge_input_raises_training_diverged_naming_the_layer(backend, n, batch_size, row,
                                                                step):
    """One sample of 1e38 in every feature (finite in float32) with the first layer's
    weights >= 1: its batch (unshuffled) overflows layer 0."""
    X, y = blobs(n, n_in=4)
    X = X.astype(np.float32)
    X[row] = 1e38

    def make():
        net = nc.mlp(4, [8], 3, activation="relu", dtype="float32", seed=0, backend=backend)
        net.layers[0].W[...] = np.abs(net.layers[0].W) + 1.0
        return net

    net = make()
    with pytest.raises(nc.TrainingDiverged) as info:
        net.fit(X, y, epochs=2, batch_size=batch_size, shuffle=False,
                optimizer=nc.SGD(lr=0.01), verbose=0)
    error = info.value
    assert (error.epoch, error.step, error.layer, error.update_overflow) == (0, step, 0, False)
    assert f"epoch 1, step {step + 1}" in str(error) and "layer 0 output" in str(error)
    assert_diverged_error(error, net, 2)
    # no epoch finished: the network is back at its initial weights
    assert error.restored_epoch == 0
    assert np.array_equal(net.params, make().params)


def test_training_diverged_checker_can_fail():
    """assert_diverged_error rejects non-finite weights and a message without the step."""
    net = small_net()
    net.history = nc.History()
    error = nc.TrainingDiverged(0, 3, math.nan, None, False)
    assert_diverged_error(error, net, 2)
    net.params[0] = np.inf
    with pytest.raises(AssertionError):
        assert_diverged_error(error, net, 2)
    net.params[0] = 0
    error.step = 4  # the message still says step 4 (0-based 3)
    with pytest.raises(AssertionError):
        assert_diverged_error(error, net, 2)


@pytest.mark.parametrize("backend", ["kernels", "reference"])
def test_ctrl_c_in_a_callback_propagates_and_keeps_the_history_so_far(backend):
    X, y = blobs(50)
    Xv, yv = blobs(20, seed=1)
    settings = dict(batch_size=8, validation_data=(Xv, yv), seed=2, verbose=0)
    net = small_net("resnet", backend=backend)
    recorder = Recorder(raise_at=3)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=10, optimizer=nc.SGD(lr=0.05), callbacks=[recorder], **settings)
    history = net.history
    assert history.interrupted and history.stopped_early is None
    assert len(history) == 3 and history["epoch"] == [1, 2, 3]
    assert np.isfinite(net.params).all()
    assert recorder.calls[-1] == ("end", 3), "on_train_end still runs"
    twin = small_net("resnet", backend=backend)
    twin_history = twin.fit(X, y, epochs=3, optimizer=nc.SGD(lr=0.05), **settings)
    assert np.array_equal(net.params, twin.params)
    assert_same_history(history, twin_history)


class Interrupting:
    """Wraps a step function (``run`` and ``run_many``): a Ctrl-C arrives at the first call
    that starts after ``after`` steps have been taken."""

    def __init__(self, step, taken, after):
        self.step, self.taken, self.after = step, taken, after
        self.outputs, self.n = step.outputs, getattr(step, "n", None)

    def _check(self):
        if self.taken[0] >= self.after:
            raise KeyboardInterrupt

    def run(self, *args):
        self._check()
        self.taken[0] += 1
        return self.step.run(*args)

    def run_many(self, *args):
        self._check()
        done, bad = self.step.run_many(*args)
        self.taken[0] += done
        return done, bad


def test_ctrl_c_in_the_middle_of_an_epoch_keeps_the_completed_epochs():
    """80 samples in batches of 1: the interrupt comes during the third epoch, after at
    least one of its steps."""
    X, y = blobs(80)
    net = small_net()
    make_step, taken = net.train_step, [0]
    net.train_step = lambda n, state, optimizer: Interrupting(make_step(n, state, optimizer),
                                                              taken, 2 * 80 + 1)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=6, batch_size=1, optimizer=nc.SGD(lr=0.01), verbose=0)
    history = net.history
    assert history.interrupted and len(history) == 2 and history["epoch"] == [1, 2]
    assert 2 * 80 < taken[0] < 3 * 80
    assert np.isfinite(net.params).all()
    # the two complete epochs and the steps taken in the third were applied
    twin = small_net()
    twin.fit(X, y, epochs=2, batch_size=1, optimizer=nc.SGD(lr=0.01), verbose=0)
    assert not np.array_equal(net.params, twin.params)


def test_ctrl_c_message_only_when_verbose(capsys):
    X, y = blobs()
    with pytest.raises(KeyboardInterrupt):
        small_net().fit(X, y, epochs=5, batch_size=16, callbacks=[Recorder(raise_at=1)],
                        verbose=0)
    assert capsys.readouterr().err == ""
    with pytest.raises(KeyboardInterrupt):
        small_net().fit(X, y, epochs=5, batch_size=16, callbacks=[Recorder(raise_at=1)],
                        verbose=2)
    assert "interrupted after 1 complete epoch" in capsys.readouterr().err
    # a caller that reports the interruption itself (nncore train) turns the line off
    for verbose in (1, 2):
        with pytest.raises(KeyboardInterrupt):
            small_net().fit(X, y, epochs=5, batch_size=16, callbacks=[Recorder(raise_at=1)],
                            verbose=verbose, report_interrupt=False)
        assert "interrupted" not in capsys.readouterr().err


def test_other_exceptions_in_a_callback_propagate():
    X, y = blobs()
    with pytest.raises(RuntimeError):
        small_net().fit(X, y, epochs=5, batch_size=16,
                        callbacks=[Recorder(raise_at=2, exception=RuntimeError)], verbose=0)


@pytest.fixture(scope="module")
def overfitting_set():
    """A small noisy set on which a wide network overfits within a few epochs."""
    return nc.datasets.make_gmm(n_train=300, n_val=300, seed=1, label_noise=0.3)


def overfit(data, callbacks, epochs=200):
    X, y, Xv, yv = data
    net = nc.mlp(5, [64, 64], 5, activation="relu", dtype="float64", seed=0)
    history = net.fit(X, y, epochs=epochs, batch_size=16, optimizer=nc.SGD(lr=0.1),
                      validation_data=(Xv, yv), seed=0, verbose=0, callbacks=callbacks)
    return net, history


def test_early_stopping_stops_and_restores_the_best_epoch(overfitting_set):
    X, y, Xv, yv = overfitting_set
    patience = 3
    recorder = Recorder()
    net, history = overfit(overfitting_set, [nc.EarlyStopping(patience=patience), recorder])
    best = int(np.argmin(history["val_loss"]))
    assert history.stopped_early == len(history) < 200
    assert not history.interrupted
    # Keras's rule: the best, then exactly `patience` epochs without an improvement
    assert len(history) == best + 1 + patience
    assert best < len(history) - 1, "the best epoch is not the last one"
    # the restored weights are those recorded at the end of the best epoch
    assert np.array_equal(net.params, recorder.params[best])
    assert net.evaluate(Xv, yv)["loss"] == min(history["val_loss"])
    # without restore_best, the last epoch's weights stay
    net, history = overfit(overfitting_set, [nc.EarlyStopping(patience=patience,
                                                              restore_best=False)])
    assert net.evaluate(Xv, yv)["loss"] == history["val_loss"][-1] > min(history["val_loss"])


def test_early_stopping_on_val_accuracy_maximises_it(overfitting_set):
    X, y, Xv, yv = overfitting_set
    recorder = Recorder()
    net, history = overfit(overfitting_set, [nc.EarlyStopping("val_accuracy", patience=2),
                                             recorder], epochs=60)
    best = int(np.argmax(history["val_accuracy"]))  # the first of equal maxima
    assert history.stopped_early == len(history) == best + 1 + 2 < 60
    assert np.array_equal(net.params, recorder.params[best])
    assert net.evaluate(Xv, yv)["accuracy"] == max(history["val_accuracy"])


def test_early_stopping_with_min_delta_stops_after_exactly_patience_epochs(overfitting_set):
    net, history = overfit(overfitting_set, [nc.EarlyStopping(patience=2, min_delta=10.0)])
    assert len(history) == history.stopped_early == 3  # epoch 1 is the best by default
    X, y, Xv, yv = overfitting_set
    assert net.evaluate(Xv, yv)["loss"] == history["val_loss"][0]


def test_early_stopping_restores_the_best_weights_after_ctrl_c(overfitting_set):
    X, y, Xv, yv = overfitting_set
    recorder = Recorder(raise_at=5)
    with pytest.raises(KeyboardInterrupt):
        overfit(overfitting_set, [nc.EarlyStopping(patience=50), recorder])
    net = recorder.network
    history = net.history
    assert history.interrupted and len(history) == 5
    best = int(np.argmin(history["val_loss"]))
    assert np.array_equal(net.params, recorder.params[best])


def test_early_stopping_on_the_training_loss_needs_no_validation_data():
    X, y = blobs()
    history = small_net().fit(X, y, epochs=3, batch_size=16,
                              callbacks=[nc.EarlyStopping("loss", patience=1)], verbose=0)
    assert len(history) == 3


def test_early_stopping_on_val_loss_without_validation_data_raises():
    X, y = blobs()
    with pytest.raises(ValueError, match="validation_data"):
        small_net().fit(X, y, epochs=3, batch_size=16, callbacks=[nc.EarlyStopping()],
                        verbose=0)


@pytest.mark.parametrize("kwargs", [{"monitor": "lr"}, {"monitor": "val_los"},
                                    {"patience": -1}])
def test_early_stopping_checks_its_arguments(kwargs):
    with pytest.raises(ValueError):
        nc.EarlyStopping(**kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": -4}, ValueError, "batch_size"),
    ({"batch_size": 2.0}, TypeError, "batch_size"),
    ({"batch_size": True}, TypeError, "batch_size"),
    ({"epochs": -1}, ValueError, "epochs"),
    ({"epochs": 1.5}, TypeError, "epochs"),
    ({"epochs": None}, TypeError, "epochs"),
    ({"verbose": 5}, ValueError, "verbose"),
    ({"verbose": -1}, ValueError, "verbose"),
    ({"optimizer": "sgd"}, TypeError, "optimizer must be an nncore.optim.Optimizer"),
    ({"optimizer": object()}, TypeError, "optimizer"),
    ({"validation_data": (np.zeros((3, 3)),)}, ValueError, "validation_data"),
    ({"validation_data": (np.zeros((3, 2)), [0, 1, 2])}, ValueError, "X_val"),
    ({"validation_data": (np.zeros((3, 3)), [0, 1, 5])}, ValueError, "y_val"),
    ({"validation_data": (np.zeros((3, 3)), [0, 1])}, ValueError, "y_val"),
    ({"validation_data": (np.full((3, 3), np.nan), [0, 1, 2])}, ValueError, "X_val"),
])
def test_bad_fit_arguments_raise_before_training(kwargs, error, message):
    X, y = blobs()
    net = small_net()
    before = net.params.copy()
    with pytest.raises(error, match=message):
        net.fit(X, y, **{"epochs": 2, "batch_size": 16, "verbose": 0, **kwargs})
    assert np.array_equal(net.params, before)


@pytest.mark.parametrize("X, y, error, message", [
    (np.zeros((0, 3)), np.zeros(0, dtype=int), ValueError, "empty"),
    (np.zeros((5, 2)), [0, 1, 2, 0, 1], ValueError, "X has 2 features"),
    (np.zeros(5), [0, 1, 2, 0, 1], ValueError, "X must be 2-D"),
    (np.full((5, 3), np.inf), [0, 1, 2, 0, 1], ValueError, "X contains NaN or infinity"),
    # labels that are not all class indices are mapped by value (there must be n_classes)
    (np.zeros((5, 3)), [0, 1, 2, 0, 3], ValueError,
     "y has 4 distinct labels but the network has 3 classes"),
    (np.zeros((5, 3)), [0, 1, 2, 0], ValueError, "y has 4 labels for 5 samples"),
    (np.zeros((5, 3)), [0, 1, 2.5, 0, 1], ValueError, "y looks continuous.*regression"),
])
def test_bad_training_data_raises(X, y, error, message):
    with pytest.raises(error, match=message):
        small_net().fit(X, y, epochs=1, batch_size=1, verbose=0)


def test_batch_size_may_equal_the_number_of_samples_and_be_one():
    X, y = blobs(10)
    assert len(small_net().fit(X, y, epochs=2, batch_size=10, verbose=0)) == 2
    assert len(small_net().fit(X, y, epochs=1, batch_size=1, verbose=0)) == 1


# ============================================================================================
# 4. SGD and schedules
# ============================================================================================

@pytest.mark.parametrize("kwargs, error, message", [
    ({"lr": 0}, ValueError, "lr"),
    ({"lr": 0.0}, ValueError, "lr"),
    ({"lr": -0.1}, ValueError, "lr"),
    ({"lr": math.nan}, ValueError, "lr"),
    ({"lr": math.inf}, ValueError, "lr"),
    ({"lr": "0.1"}, TypeError, "lr"),
    ({"lr": None}, TypeError, "lr"),
    ({"momentum": -0.5}, ValueError, "momentum"),
    ({"momentum": math.nan}, ValueError, "momentum"),
    ({"weight_decay": -1e-4}, ValueError, "weight_decay"),
    ({"momentum": 0.0, "nesterov": True}, ValueError, "nesterov"),
    ({"nesterov": "yes"}, TypeError, "nesterov"),
    ({"nesterov": 1}, TypeError, "nesterov"),
    ({"schedule": "linear"}, ValueError, "schedule"),
    ({"schedule": 3}, ValueError, "schedule"),
])
def test_sgd_checks_its_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        nc.SGD(**kwargs)


def test_sgd_defaults_and_config():
    optimizer = nc.SGD()
    assert optimizer.config() == {"lr": 0.02, "momentum": 0.9, "nesterov": False,
                                  "weight_decay": 0.0, "schedule": None}
    assert nc.SGD(schedule=lambda lr, e: lr).config()["schedule"] == "custom"
    assert "lr=0.02" in repr(optimizer)


def started(epochs=10, **kwargs):
    optimizer = nc.SGD(**kwargs)
    optimizer.start(np.zeros(3), epochs)
    return optimizer


def test_constant_schedule():
    for schedule in (None, "constant"):
        optimizer = started(lr=0.2, schedule=schedule)
        assert [optimizer.lr_at(e) for e in (0, 5, 100)] == [0.2, 0.2, 0.2]


def test_step_schedule_halves_every_ten_epochs():
    optimizer = started(lr=0.2, schedule="step")
    assert [optimizer.lr_at(e) for e in (0, 9, 10, 19, 20, 35)] == \
        [0.2, 0.2, 0.1, 0.1, 0.05, 0.025]
    assert optimizer.current_lr == 0.025


def test_exponential_schedule():
    optimizer = started(lr=0.2, schedule="exponential")
    for epoch in (0, 1, 7, 30):
        assert optimizer.lr_at(epoch) == pytest.approx(0.2 * 0.95 ** epoch, rel=1e-15)


@pytest.mark.parametrize("epochs", [1, 4, 10, 50])
def test_cosine_schedule_starts_at_lr_and_ends_near_zero(epochs):
    optimizer = started(epochs, lr=0.2, schedule="cosine")
    rates = [optimizer.lr_at(e) for e in range(epochs + 1)]
    assert rates[0] == 0.2
    assert all(a >= b for a, b in zip(rates, rates[1:])), "non-increasing"
    assert rates[epochs] == pytest.approx(0.0, abs=1e-15)
    # the last training epoch (epochs - 1) is one step short of the end of the cosine
    assert rates[epochs - 1] == pytest.approx(0.1 * (1 + math.cos(math.pi * (epochs - 1)
                                                                  / epochs)), rel=1e-12)
    if epochs >= 10:
        assert rates[epochs - 1] < 0.03 * 0.2
    if epochs >= 4:  # halfway, half the rate
        assert optimizer.lr_at(epochs // 2) == pytest.approx(0.1 * (1 + math.cos(
            math.pi * (epochs // 2) / epochs)), rel=1e-12)


def test_callable_schedule():
    optimizer = started(lr=0.3, schedule=lambda lr0, epoch: lr0 / (1 + epoch))
    assert [optimizer.lr_at(e) for e in range(3)] == [0.3, 0.15, 0.3 / 3]


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_a_schedule_giving_an_invalid_rate_raises(bad):
    X, y = blobs()
    with pytest.raises(ValueError, match="invalid learning rate"):
        small_net().fit(X, y, epochs=2, batch_size=16, verbose=0,
                        optimizer=nc.SGD(schedule=lambda lr0, epoch: bad))


@pytest.mark.parametrize("schedule", ["step", "exponential", "cosine", "custom"])
def test_history_records_the_learning_rate_in_effect(schedule):
    X, y = blobs()
    custom = (lambda lr0, epoch: lr0 * (0.5 if epoch % 2 else 1.0))
    optimizer = nc.SGD(lr=0.1, schedule=custom if schedule == "custom" else schedule)
    history = small_net().fit(X, y, epochs=12, batch_size=32, optimizer=optimizer, verbose=0)
    expected = started(12, lr=0.1, schedule=custom if schedule == "custom" else schedule)
    assert history["lr"] == [expected.lr_at(e) for e in range(12)]
    assert history["lr"][0] == 0.1
    if schedule == "cosine":
        assert history["lr"][-1] < 0.003


def test_the_recorded_learning_rate_is_the_one_used():
    """A schedule 0.1, 0.05, 0.02 (no momentum, no shuffling) gives the weights of three
    one-epoch fits at those constant rates."""
    X, y = blobs()
    rates = [0.1, 0.05, 0.02]
    scheduled = small_net()
    history = scheduled.fit(X, y, epochs=3, batch_size=16, shuffle=False, verbose=0,
                            optimizer=nc.SGD(lr=1.0, momentum=0.0,
                                             schedule=lambda lr0, epoch: rates[epoch]))
    assert history["lr"] == rates
    stepwise = small_net()
    for rate in rates:
        stepwise.fit(X, y, epochs=1, batch_size=16, shuffle=False, verbose=0,
                     optimizer=nc.SGD(lr=rate, momentum=0.0))
    assert np.array_equal(scheduled.params, stepwise.params)
    # the checker can fail: another rate in the last epoch gives other weights
    other = small_net()
    for rate in (0.1, 0.05, 0.021):
        other.fit(X, y, epochs=1, batch_size=16, shuffle=False, verbose=0,
                  optimizer=nc.SGD(lr=rate, momentum=0.0))
    assert not np.array_equal(scheduled.params, other.params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", [ops, reference])
def test_sgd_step_applies_the_documented_rule(dtype, backend):
    rng = np.random.default_rng(0)
    params = rng.standard_normal(20).astype(dtype)
    grads = rng.standard_normal(20).astype(dtype)
    optimizer = nc.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    optimizer.start(params, 1)
    optimizer.lr_at(0)
    expected, velocity = params.astype(np.float64), np.zeros(20)
    for _ in range(3):
        optimizer.step(params, grads, backend)
        g = grads + 0.01 * expected
        velocity = 0.9 * velocity + g
        expected = expected - 0.1 * (g + 0.9 * velocity)
    assert_close(params, expected, dtype, rtol=1e-5 if dtype == np.float32 else 1e-13)
    assert optimizer.velocity.dtype == dtype


# ============================================================================================
# 5. Adam and AdamW
# ============================================================================================

def pytorch_adam_step(param, grad, exp_avg, exp_avg_sq, t, lr, beta1, beta2, eps,
                      weight_decay, decoupled):
    """One step of ``torch.optim.Adam`` / ``AdamW`` (single-tensor path, amsgrad off) in
    float64 NumPy, in PyTorch's order of operations: ``step_t += 1``, weight decay,
    ``exp_avg.lerp_(grad, 1 - beta1)``, ``exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 -
    beta2)``, ``denom = (exp_avg_sq.sqrt() / sqrt(bias_correction2)).add_(eps)``,
    ``param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)``. Returns the new
    (param, exp_avg, exp_avg_sq)."""
    if decoupled:
        param = param * (1 - lr * weight_decay)
    elif weight_decay != 0:
        grad = grad + weight_decay * param
    weight = 1 - beta1  # torch.lerp(start, end, weight), both of its formulas
    if abs(weight) < 0.5:
        exp_avg = exp_avg + weight * (grad - exp_avg)
    else:
        exp_avg = grad - (grad - exp_avg) * (1 - weight)
    exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1 ** t
    bias_correction2 = 1 - beta2 ** t
    denom = np.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + eps
    param = param + (-lr / bias_correction1) * exp_avg / denom
    return param, exp_avg, exp_avg_sq


ADAMS = pytest.mark.parametrize("optimizer_class, weight_decay, betas", [
    (nc.Adam, 0.0, (0.9, 0.999)),
    (nc.Adam, 0.01, (0.9, 0.999)),
    (nc.AdamW, 0.01, (0.9, 0.999)),
    (nc.AdamW, 0.1, (0.4, 0.99)),
], ids=["adam", "adam-l2", "adamw", "adamw-beta1-0.4"])


@ADAMS
@pytest.mark.parametrize("kind", ["mlp", "resnet"])
@pytest.mark.parametrize("backend", ["kernels", "reference"])
def test_adam_trajectory_follows_pytorch_rule(optimizer_class, weight_decay, betas, kind,
                                              backend):
    """20 full-batch steps in float64: fit with nc.Adam / nc.AdamW against a loop of
    ``loss_and_grad`` (same backend) and PyTorch's rule written out above, to 1e-10."""
    X, y = blobs()
    net, twin = small_net(kind, backend=backend), small_net(kind, backend=backend)
    optimizer = optimizer_class(lr=0.05, betas=betas, eps=1e-8, weight_decay=weight_decay)
    net.fit(X, y, epochs=20, batch_size=len(y), optimizer=optimizer, shuffle=False, verbose=0)
    param = twin.params.copy()
    exp_avg, exp_avg_sq = np.zeros_like(param), np.zeros_like(param)
    for t in range(1, 21):
        twin.params[...] = param
        twin.loss_and_grad(X, y)
        param, exp_avg, exp_avg_sq = pytorch_adam_step(
            param, twin.grads.copy(), exp_avg, exp_avg_sq, t, 0.05, *betas, 1e-8, weight_decay,
            optimizer_class is nc.AdamW)
    scale = np.abs(param).max()
    np.testing.assert_allclose(net.params, param, rtol=1e-10, atol=1e-10 * scale)
    np.testing.assert_allclose(optimizer.exp_avg, exp_avg, rtol=1e-10,
                               atol=1e-10 * np.abs(exp_avg).max())
    np.testing.assert_allclose(optimizer.exp_avg_sq, exp_avg_sq, rtol=1e-10,
                               atol=1e-10 * np.abs(exp_avg_sq).max())
    assert optimizer.step_count == 20
    # the checker can fail: the same loop without the first moment's bias correction
    wrong = small_net(kind, backend=backend)
    param = wrong.params.copy()
    exp_avg, exp_avg_sq = np.zeros_like(param), np.zeros_like(param)
    for t in range(1, 21):
        wrong.params[...] = param
        wrong.loss_and_grad(X, y)
        param, exp_avg, exp_avg_sq = pytorch_adam_step(
            param, wrong.grads.copy(), exp_avg, exp_avg_sq, t, 0.05 * (1 - betas[0] ** t),
            *betas, 1e-8, weight_decay, optimizer_class is nc.AdamW)
    assert not np.allclose(net.params, param, rtol=1e-10, atol=1e-10 * scale)


def simulate_adam_fit(net, X, y, epochs, batch_size, optimizer_class, seed=0, restart=False,
                      **settings):
    """fit's loop (see simulate_fit) with ``backend.adam_`` and the update count running on
    across batches and epochs (``restart``: a bug, the count starting afresh each epoch)."""
    backend = BACKENDS[net.backend]
    optimizer = optimizer_class(**settings)
    beta1, beta2 = optimizer.betas
    X, y, n = np.ascontiguousarray(X, dtype=net.dtype), np.asarray(y), len(y)
    rng = np.random.default_rng(seed)
    exp_avg, exp_avg_sq = np.zeros_like(net.params), np.zeros_like(net.params)
    t = 0
    for epoch in range(epochs):
        order = rng.permutation(n)
        Xe, ye = X[order], y[order]
        t = 0 if restart else t
        for start in range(0, n, batch_size):
            net.loss_and_grad(Xe[start:start + batch_size], ye[start:start + batch_size])
            t += 1
            backend.adam_(net.params, net.grads, exp_avg, exp_avg_sq, t, optimizer.lr, beta1,
                          beta2, optimizer.eps, optimizer.weight_decay, optimizer.decoupled)
    return exp_avg, exp_avg_sq


@pytest.mark.parametrize("optimizer_class", [nc.Adam, nc.AdamW])
@pytest.mark.parametrize("backend", ["kernels", "reference"])
def test_fit_keeps_adams_update_count_across_chunks_and_epochs(optimizer_class, backend):
    """100 samples in batches of 3: 34 steps an epoch, two compiled calls (32 + 1 steps)
    and a partial batch; over 3 epochs fit equals the loop with the count running on."""
    X, y = blobs(100)
    settings = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.02)
    net = small_net("resnet", backend=backend)
    optimizer = optimizer_class(**settings)
    net.fit(X, y, epochs=3, batch_size=3, optimizer=optimizer, seed=4, verbose=0)
    assert optimizer.step_count == 3 * 34
    twin = small_net("resnet", backend=backend)
    exp_avg, exp_avg_sq = simulate_adam_fit(twin, X, y, 3, 3, optimizer_class, seed=4,
                                            **settings)
    assert_close(net.params, twin.params, np.float64, rtol=1e-12, name="params")
    assert_close(optimizer.exp_avg, exp_avg, np.float64, rtol=1e-12, name="exp_avg")
    assert_close(optimizer.exp_avg_sq, exp_avg_sq, np.float64, rtol=1e-12, name="exp_avg_sq")
    # the checker can fail: a count that restarts every epoch gives other weights
    other = small_net("resnet", backend=backend)
    simulate_adam_fit(other, X, y, 3, 3, optimizer_class, seed=4, restart=True, **settings)
    with pytest.raises(AssertionError):
        assert_close(net.params, other.params, np.float64, rtol=1e-12)


@pytest.mark.parametrize("optimizer_class", [nc.Adam, nc.AdamW])
def test_adams_state_persists_across_fit_calls(optimizer_class):
    """2 + 2 epochs equal 4 epochs (no shuffling, constant rate): moments and update count
    carry on; a fresh optimizer, or a network of another size, starts from zero."""
    X, y = blobs()
    a, b = small_net(), small_net()
    optimizer = optimizer_class(lr=0.01)
    a.fit(X, y, epochs=2, batch_size=16, optimizer=optimizer, shuffle=False, verbose=0)
    assert optimizer.step_count == 2 * 4
    a.fit(X, y, epochs=2, batch_size=16, optimizer=optimizer, shuffle=False, verbose=0)
    assert optimizer.step_count == 4 * 4
    b.fit(X, y, epochs=4, batch_size=16, optimizer=optimizer_class(lr=0.01), shuffle=False,
          verbose=0)
    assert np.array_equal(a.params, b.params)
    bigger = nc.mlp(3, [9], 3, dtype="float64")
    bigger.fit(X, y, epochs=1, batch_size=16, optimizer=optimizer, shuffle=False, verbose=0)
    assert optimizer.step_count == 4 and optimizer.exp_avg.shape == bigger.params.shape


@pytest.mark.parametrize("optimizer_class", [nc.Adam, nc.AdamW])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", [ops, reference])
def test_adam_step_applies_the_documented_rule_and_counts(optimizer_class, dtype, backend):
    rng = np.random.default_rng(0)
    params = rng.standard_normal(20).astype(dtype)
    grads = rng.standard_normal(20).astype(dtype)
    optimizer = optimizer_class(lr=0.1, weight_decay=0.01)
    optimizer.start(params, 1)
    optimizer.lr_at(0)
    expected = params.astype(np.float64)
    exp_avg, exp_avg_sq = np.zeros(20), np.zeros(20)
    for t in range(1, 4):
        optimizer.step(params, grads, backend)
        expected, exp_avg, exp_avg_sq = pytorch_adam_step(
            expected, grads.astype(np.float64), exp_avg, exp_avg_sq, t, 0.1, 0.9, 0.999, 1e-8,
            0.01, optimizer_class is nc.AdamW)
    assert optimizer.step_count == 3
    assert_close(params, expected, dtype, rtol=1e-5 if dtype == np.float32 else 1e-13)
    assert optimizer.exp_avg.dtype == dtype


def test_adam_fit_diverges_cleanly_and_counts_only_applied_updates():
    """An update that would overflow is skipped: TrainingDiverged, finite weights, and the
    count holds only the updates applied before it."""
    X, y = blobs()
    net = small_net(dtype="float32")
    optimizer = nc.Adam(lr=3e38)
    with pytest.raises(nc.TrainingDiverged) as caught:
        net.fit(X, y, epochs=3, batch_size=16, optimizer=optimizer, verbose=0)
    assert caught.value.update_overflow or not math.isfinite(caught.value.loss)
    assert np.isfinite(net.params).all()
    assert optimizer.step_count == caught.value.epoch * 4 + caught.value.step


@pytest.mark.parametrize("optimizer_class", [nc.Adam, nc.AdamW])
@pytest.mark.parametrize("kwargs, error, message", [
    ({"lr": 0}, ValueError, "^lr must be > 0"),
    ({"lr": -1e-3}, ValueError, "^lr must be > 0"),
    ({"lr": "0.1"}, TypeError, "^lr must be a real number"),
    ({"betas": (1.0, 0.999)}, ValueError, r"^betas\[0\] must be < 1"),
    ({"betas": (0.9, 1.0)}, ValueError, r"^betas\[1\] must be < 1"),
    ({"betas": (-0.1, 0.999)}, ValueError, r"^betas\[0\] must be >= 0"),
    ({"betas": (0.9, 1.5)}, ValueError, r"^betas\[1\] must be < 1"),
    ({"betas": (0.9, math.nan)}, ValueError, r"^betas\[1\] must be finite"),
    ({"betas": (0.9,)}, TypeError, "^betas must be a pair"),
    ({"betas": 0.9}, TypeError, "^betas must be a pair"),
    ({"betas": "ab"}, TypeError, "^betas must be a pair"),
    ({"betas": ("0.9", 0.999)}, TypeError, r"^betas\[0\] must be a real number"),
    ({"eps": 0.0}, ValueError, "^eps must be > 0"),
    ({"eps": -1e-8}, ValueError, "^eps must be > 0"),
    ({"eps": math.inf}, ValueError, "^eps must be finite"),
    ({"weight_decay": -0.01}, ValueError, "^weight_decay must be >= 0"),
    ({"weight_decay": math.nan}, ValueError, "^weight_decay must be finite"),
    ({"schedule": "linear"}, ValueError, "^schedule must be"),
])
def test_adam_checks_its_arguments(optimizer_class, kwargs, error, message):
    with pytest.raises(error, match=message):
        optimizer_class(**kwargs)


def test_adam_defaults_config_and_registry():
    adam, adamw = nc.Adam(), nc.AdamW()
    assert adam.config() == {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8,
                             "weight_decay": 0.0, "schedule": None}
    assert adamw.config() == {**adam.config(), "weight_decay": 1e-2}
    assert not adam.decoupled and adamw.decoupled
    assert adam.state_names == ("exp_avg", "exp_avg_sq") and adam.counters() == {"step_count": 0}
    assert nc.optim.OPTIMIZERS["adam"] is nc.Adam and nc.optim.OPTIMIZERS["adamw"] is nc.AdamW
    assert "betas=[0.9, 0.999]" in repr(adamw)



# ============================================================================================
# issue "product", items 4-6: interrupts, divergence, early stopping and History
# ============================================================================================

class _SnapshotEachEpoch(nc.Callback):
    """Keeps a copy of the weights and of the optimizer's state after every epoch."""

    def __init__(self, optimizer):
        self.optimizer, self.params, self.states = optimizer, [], []

    def on_epoch_end(self, network, epoch, logs):
        self.params.append(network.params.copy())
        self.states.append({k: a.copy() for k, a in self.optimizer.state().items()})
        return False


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_restores_the_last_finite_epoch_so_predict_proba_works():
    """lr 1e6: the weights before the failing step reached ~1e22 and every later
    predict_proba overflowed; now the network is given back the weights (and the optimizer
    its state) of the last epoch with a finite loss, or of the one before when those
    overflow already, or its initial weights, and predicts finite probabilities.
    Batches of 32 diverge in epoch 1; one batch of 400 after 4 finite epochs, whose end
    weights (4.8e22) overflow: epoch 3's are restored."""
    X, y, Xv, yv = nc.datasets.make_gmm(n_train=400, n_val=100)
    for batch_size, finished, restored in ((32, 0, 0), (400, 4, 3)):
        net = nc.mlp(5, [32], 5, activation="identity", seed=0)
        start = net.params.copy()
        optimizer = nc.SGD(lr=1e6)
        snapshots = _SnapshotEachEpoch(optimizer)
        with pytest.raises(nc.TrainingDiverged) as info:
            net.fit(X, y, epochs=20, batch_size=batch_size, optimizer=optimizer,
                    callbacks=[snapshots], verbose=0)
        error = info.value
        assert len(net.history) == finished == error.epoch
        assert error.restored_epoch == restored
        expected = snapshots.params[restored - 1] if restored else start
        assert np.array_equal(net.params, expected)
        if restored:
            assert f"restored to its weights after epoch {restored}" in str(error)
            for name, array in optimizer.state().items():
                assert np.array_equal(array, snapshots.states[restored - 1][name])
        else:
            assert "started training with" in str(error)
        with np.errstate(all="raise"):
            proba = net.predict_proba(Xv)
        assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1)
        assert np.isfinite(net.predict(Xv)).all()


def test_keyboard_interrupt_propagates_after_on_train_end_with_the_history_on_the_network():
    X, y = blobs()
    net = small_net()
    recorder = Recorder(raise_at=2)
    stopper = nc.EarlyStopping("loss", patience=10)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=10, batch_size=16, callbacks=[stopper, recorder], verbose=0)
    assert net.history.interrupted and net.history["epoch"] == [1, 2]
    assert recorder.calls[-1] == ("end", 2)
    assert np.array_equal(net.params, recorder.params[stopper.best_epoch - 1])


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_early_stopping_waits_exactly_patience_epochs(patience):
    """A monitored value that improves at epoch 2 and never again: Keras stops after
    ``patience`` epochs without an improvement (at least one epoch runs after the best)."""

    class Feed(nc.Callback):  # overwrites the training loss EarlyStopping reads
        def on_epoch_end(self, network, epoch, logs):
            logs["loss"] = {1: 5.0, 2: 1.0}.get(epoch, 3.0)
            return False

    X, y = blobs()
    stopper = nc.EarlyStopping("loss", patience=patience, restore_best=False)
    history = small_net().fit(X, y, epochs=20, batch_size=16, callbacks=[Feed(), stopper],
                              verbose=0)
    assert stopper.best_epoch == 2  # History's numbering
    assert history.stopped_early == len(history) == 2 + max(patience, 1)


def test_history_is_a_mapping_of_its_columns():
    from collections.abc import Mapping

    pd = pytest.importorskip("pandas")
    X, y = blobs()
    history = small_net().fit(X, y, epochs=3, batch_size=16, verbose=0)
    assert isinstance(history, Mapping)
    assert list(history) == list(history.keys()) == list(nc.History.COLUMNS)
    assert len(history) == 3 and len(history.keys()) == len(nc.History.COLUMNS)
    assert "loss" in history and "nope" not in history
    assert dict(history) == history.history and history == history.history
    for table in (pd.DataFrame(history.history), pd.DataFrame(dict(history))):
        assert list(table.columns) == list(nc.History.COLUMNS)
        assert table["epoch"].tolist() == [1, 2, 3]
        assert table["loss"].tolist() == history["loss"]


def test_a_batch_size_larger_than_the_training_set_trains_on_one_batch_with_a_warning():
    X, y = blobs()  # 60 samples
    net, twin = small_net(), small_net()
    with pytest.warns(UserWarning, match=r"batch_size \(61\) is larger than the training set "
                                         r"\(60\).*one batch of all 60 samples"):
        history = net.fit(X, y, epochs=2, batch_size=61, optimizer=nc.SGD(lr=0.1), verbose=0)
    twin_history = twin.fit(X, y, epochs=2, batch_size=60, optimizer=nc.SGD(lr=0.1),
                            verbose=0)
    assert np.array_equal(net.params, twin.params)
    assert history["loss"] == twin_history["loss"]


# --- what a user gets told -----------------------------------------------------------------

def _two_blobs():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 2))
    return X, (X[:, 0] > 0).astype(int)


@pytest.mark.parametrize("verbose, report", [(1, True), (2, True), (0, True), (1, False)])
def test_early_stopping_says_so_when_fit_is_verbose(capsys, verbose, report):
    """Early stopping used to end a run in silence: the progress bar stopped at 12% and the
    epoch lines at epoch 6, with nothing said (the CLI and the estimators, which pass
    report_interrupt=False, say it in their own words)."""
    X, y = _two_blobs()
    net = nc.mlp(2, [16], 2)
    stopper = nc.EarlyStopping(monitor="val_accuracy", patience=1)
    history = net.fit(X, y, epochs=50, validation_data=(X[:100], y[:100]), verbose=verbose,
                      callbacks=stopper, report_interrupt=report)  # one callback, no list
    assert history.stopped_early == stopper.best_epoch + 1 < 50
    said = f"stopped early after epoch {history.stopped_early}: val_accuracy did not " \
           f"improve for 1 epoch(s) after its best, epoch {stopper.best_epoch}; the weights " \
           f"of epoch {stopper.best_epoch} are restored\n"
    assert (said in capsys.readouterr().out) == (verbose > 0 and report)


@pytest.mark.parametrize("callbacks, message", [
    (5, r"^callbacks must be a list of callbacks \(such as \[nncore\.EarlyStopping\(\)\]\), "
        r"got int$"),
    ([nc.EarlyStopping(), "stop"], r"^callbacks\[1\] \(str\) is not a callback: it has no "
                                   r"on_train_begin, on_epoch_end, on_train_end"),
    ([nc.EarlyStopping], r"^callbacks\[0\] is the class EarlyStopping; give an instance: "
                         r"EarlyStopping\(\)$"),
])
def test_callbacks_that_are_not_callbacks_are_refused_by_name(callbacks, message):
    X, y = _two_blobs()
    with pytest.raises(TypeError, match=message):
        nc.mlp(2, [4], 2).fit(X, y, epochs=1, verbose=0, callbacks=callbacks)


@pytest.mark.parametrize("seed, error, message", [
    (-1, ValueError, r"^seed must be >= 0, got -1$"),
    (1.5, TypeError, r"^seed must be a non-negative integer, None or a NumPy SeedSequence "
                     r"or Generator, got 1\.5$"),
])
def test_a_bad_seed_is_refused_by_name(seed, error, message):
    """NumPy's own words were 'expected non-negative integer', naming no argument."""
    X, y = _two_blobs()
    with pytest.raises(error, match=message):
        nc.mlp(2, [4], 2).fit(X, y, epochs=1, verbose=0, seed=seed)
    with pytest.raises(error, match=message):
        nc.mlp(2, [4], 2, seed=seed)
    nc.mlp(2, [4], 2, seed=None)  # fresh entropy, as NumPy takes it
    # what numpy.random.default_rng takes besides (a review: they were refused)
    for other in (np.random.SeedSequence(5), np.random.default_rng(5)):
        nc.mlp(2, [4], 2, seed=other).fit(X, y, epochs=1, verbose=0, seed=other)
    first = nc.mlp(2, [4], 2, seed=np.int64(3))
    first.fit(X, y, epochs=1, verbose=0, seed=np.int64(4))
    second = nc.mlp(2, [4], 2, seed=3)
    second.fit(X, y, epochs=1, verbose=0, seed=4)
    np.testing.assert_array_equal(first.params, second.params)


def test_a_checkpointed_fit_needs_an_integer_seed(tmp_path):
    """The checkpoint records the seed (JSON): a Generator cannot be written there."""
    X, y = _two_blobs()
    with pytest.raises(ValueError, match=r"^a checkpointed fit takes an integer seed \(or "
                                         r"None\), got Generator$"):
        nc.mlp(2, [4], 2).fit(X, y, epochs=1, verbose=0, checkpoint=tmp_path,
                              seed=np.random.default_rng(0))
    nc.mlp(2, [4], 2).fit(X, y, epochs=1, verbose=0, checkpoint=tmp_path, seed=np.int64(2))


@pytest.mark.parametrize("hidden", [None, "32", 3.5])
def test_hidden_widths_that_are_not_a_list_are_refused_by_name(hidden):
    """mlp(2, None, 5) said "'NoneType' object is not iterable"."""
    with pytest.raises(TypeError, match=r"^hidden must be"):
        nc.mlp(2, hidden, 5)


def test_missing_labels_are_called_missing_not_continuous():
    """NaN labels said "y looks continuous ... train a regression network"."""
    X, y = _two_blobs()
    labels = y.astype(float)
    labels[[7, 9]] = np.nan
    with pytest.raises(ValueError, match=r"^y has 2 missing label\(s\) \(NaN\), the first at "
                                         r"index 7$"):
        nc.mlp(2, [4], 2).fit(X, labels, epochs=1, verbose=0)


def test_train_seconds_leave_out_the_validation_scores(monkeypatch):
    """The CLI's steps/s divided by History's seconds, which include scoring the validation
    data (the first time with one-time costs): 25-30k steps/s reported for a network that
    trains at 98k. ``history.train_seconds`` is the steps' time alone."""
    X, y = _two_blobs()
    net = nc.mlp(2, [8], 2)
    scoring = net._prepared_evaluate

    def slow_scoring(*args):
        time.sleep(0.05)
        return scoring(*args)

    monkeypatch.setattr(net, "_prepared_evaluate", slow_scoring)
    history = net.fit(X, y, epochs=3, validation_data=(X[:50], y[:50]), verbose=0)
    assert len(history.train_seconds) == 3
    for whole, steps in zip(history["seconds"], history.train_seconds):
        assert 0 < steps <= whole - 0.05
