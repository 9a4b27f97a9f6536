"""Tests of sample weights: the weighted losses (ops against reference, finite differences,
all-ones weights exactly unweighted), the weighted fused step and fit (the reference backend,
repeated samples, checkpoints) and the checks of bad weights. The estimators' sample_weight
and class_weight: tests/test_weights_sklearn.py.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncore as nc
from conftest import assert_close, assert_gradient_matches, dims, examples, random_array
from nncore import ops, reference

DTYPES = (np.float32, np.float64)
over_dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
over_modules = pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
seeds = st.integers(0, 2**32 - 1)


def weights_for(rng, n, dtype, zeros=True):
    w = rng.uniform(0.0, 3.0, n).astype(dtype)
    if zeros and n > 1:
        w[rng.integers(0, n)] = 0  # a sample of weight 0 among others
    return w


# ============================================================================================
# 1. the weighted losses
# ============================================================================================

@over_dtypes
@settings(max_examples=examples(30), deadline=None)
@given(n=dims(0, 6), k=dims(1, 6), scale=st.sampled_from([1.0, 30.0]), seed=seeds)
def test_weighted_softmax_cross_entropy_matches_reference(n, k, scale, seed, dtype):
    rng = np.random.default_rng(seed)
    logits = random_array(rng, (n, k), dtype, scale)
    labels = rng.integers(0, k, n)
    w = weights_for(rng, n, dtype)
    loss, grad = ops.softmax_cross_entropy(logits, labels, sample_weight=w)
    expected_loss, expected_grad = reference.softmax_cross_entropy(logits, labels,
                                                                   sample_weight=w)
    assert type(loss) is float
    assert_close(loss, expected_loss, dtype, scale=1 + np.max(np.abs(logits), initial=0))
    assert_close(grad, expected_grad, dtype, scale=1.0, name="dlogits")


@over_dtypes
@settings(max_examples=examples(30), deadline=None)
@given(n=dims(0, 6), k=dims(1, 6), seed=seeds)
def test_weighted_mean_squared_error_matches_reference(n, k, seed, dtype):
    rng = np.random.default_rng(seed)
    pred, target = random_array(rng, (n, k), dtype), random_array(rng, (n, k), dtype)
    w = weights_for(rng, n, dtype)
    loss, grad = ops.mean_squared_error(pred, target, sample_weight=w)
    expected_loss, expected_grad = reference.mean_squared_error(pred, target, sample_weight=w)
    assert type(loss) is float
    assert_close(loss, expected_loss, dtype, scale=4.0)
    assert_close(grad, expected_grad, dtype, scale=4.0, name="dpred")


@over_modules
@settings(max_examples=examples(20), deadline=None)
@given(n=dims(1, 5), k=dims(1, 5), seed=seeds)
def test_weighted_losses_gradients_match_finite_differences(n, k, seed, module):
    rng = np.random.default_rng(seed)
    w = weights_for(rng, n, np.float64)
    if not w.any():
        w[0] = 1.0
    logits, labels = random_array(rng, (n, k), scale=3.0), rng.integers(0, k, n)
    _, grad = module.softmax_cross_entropy(logits, labels, sample_weight=w)
    assert_gradient_matches(lambda: module.softmax_cross_entropy(logits, labels,
                                                                 sample_weight=w)[0],
                            dict(logits=logits), dict(logits=grad))
    pred, target = random_array(rng, (n, k)), random_array(rng, (n, k))
    _, grad = module.mean_squared_error(pred, target, sample_weight=w)
    assert_gradient_matches(lambda: module.mean_squared_error(pred, target,
                                                              sample_weight=w)[0],
                            dict(pred=pred), dict(pred=grad))


@over_modules
@over_dtypes
@pytest.mark.parametrize("n, k", [(1, 1), (1, 3), (5, 2), (7, 5), (33, 10)])
def test_all_ones_weights_give_exactly_the_unweighted_losses(n, k, dtype, module):
    rng = np.random.default_rng(n * k)
    logits, labels = random_array(rng, (n, k), dtype, 5.0), rng.integers(0, k, n)
    ones = np.ones(n)
    plain = module.softmax_cross_entropy(logits, labels)
    weighted = module.softmax_cross_entropy(logits, labels, sample_weight=ones)
    assert plain[0] == weighted[0] and np.array_equal(plain[1], weighted[1])
    target = random_array(rng, (n, k), dtype)
    plain = module.mean_squared_error(logits, target)
    weighted = module.mean_squared_error(logits, target, sample_weight=ones)
    assert plain[0] == weighted[0] and np.array_equal(plain[1], weighted[1])


@over_modules
def test_the_weighted_loss_is_the_weighted_mean_of_the_per_sample_losses(module):
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((4, 3)), np.array([0, 2, 1, 1])
    w = np.array([1.0, 0.0, 2.5, 0.5])
    per_sample = [module.softmax_cross_entropy(logits[i:i + 1], labels[i:i + 1])[0]
                  for i in range(4)]
    loss, _ = module.softmax_cross_entropy(logits, labels, sample_weight=w)
    assert loss == pytest.approx(np.dot(w, per_sample) / w.sum(), rel=1e-14)
    pred, target = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    per_sample = [np.mean((pred[i] - target[i]) ** 2) for i in range(4)]
    loss, _ = module.mean_squared_error(pred, target, sample_weight=w)
    assert loss == pytest.approx(np.dot(w, per_sample) / w.sum(), rel=1e-14)


@over_modules
def test_zero_weights_give_loss_zero_and_gradient_zero_even_at_nan(module):
    logits = np.array([[np.nan, 1.0], [0.5, 2.0]])
    loss, grad = module.softmax_cross_entropy(logits, [0, 1], sample_weight=[0.0, 0.0])
    assert loss == 0.0 and not grad.any()
    # a NaN sample of weight 0 among others is left out
    loss, grad = module.softmax_cross_entropy(logits, [0, 1], sample_weight=[0.0, 2.0])
    assert loss == pytest.approx(module.softmax_cross_entropy(logits[1:], [1])[0])
    assert not grad[0].any() and np.isfinite(grad).all()
    loss, grad = module.mean_squared_error(logits, np.zeros((2, 2)), sample_weight=[0.0, 1.0])
    assert loss == pytest.approx((0.25 + 4.0) / 2) and not grad[0].any()


BAD_WEIGHTS = [
    ([1.0, -1.0, 1.0], ValueError, ">= 0"),
    ([1.0, np.nan, 1.0], ValueError, "NaN or infinity"),
    ([1.0, np.inf, 1.0], ValueError, "NaN or infinity"),
    ([1.0, 1.0], ValueError, "2 weights for 3 samples"),
    ([[1.0, 1.0, 1.0]], ValueError, "1-D"),
    (["a", "b", "c"], TypeError, "real numbers"),
]


@over_modules
@pytest.mark.parametrize("weights, error, message", BAD_WEIGHTS)
def test_bad_weights_raise_naming_sample_weight_in_the_losses(weights, error, message, module):
    logits = np.zeros((3, 2))
    with pytest.raises(error, match=f"sample_weight.*{message}|{message}.*sample_weight"):
        module.softmax_cross_entropy(logits, [0, 1, 0], sample_weight=weights)
    with pytest.raises(error, match="sample_weight"):
        module.mean_squared_error(logits, logits, sample_weight=weights)


# ============================================================================================
# 2. the fused step and fit
# ============================================================================================

def blobs(n=60, n_in=3, n_classes=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((n_classes, n_in))
    y = rng.integers(0, n_classes, n)
    return (centres[y] + 0.7 * rng.standard_normal((n, n_in))).astype(dtype), y


@pytest.mark.parametrize("task", ["classification", "regression"])
@over_dtypes
def test_fit_with_all_ones_weights_is_bit_identical_to_fit_without(task, dtype):
    X, y = blobs(50, dtype=dtype)
    loss = "softmax_cross_entropy" if task == "classification" else "mse"
    if task == "regression":
        y = np.stack([X.sum(axis=1), X[:, 0] ** 2], axis=1)
    results = []
    for weights in (None, np.ones(50)):
        net = nc.mlp(3, [8], 3 if task == "classification" else 2, dtype=dtype, seed=1,
                     loss=loss)
        net.fit(X, y, epochs=3, batch_size=16, optimizer=nc.Adam(lr=0.01), seed=2, verbose=0,
                sample_weight=weights)
        results.append(net.params.copy())
    assert np.array_equal(*results)


@pytest.mark.parametrize("hidden", [[], [5]], ids=["linear", "mlp"])
@pytest.mark.parametrize("n", [8, 20, 64])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
def test_weight_two_is_exactly_a_duplicated_row_in_full_batch_sgd(loss, n, hidden):
    # Exact where it can be: one full batch, no shuffling, SGD without momentum, float64,
    # and the duplicate next to its original. A weight of 2 doubles the row's gradient
    # scale, 2 / W = 2 (1 / W) exactly, and the two copies' terms add to exactly that.
    rng = np.random.default_rng(n)
    X, y = rng.standard_normal((n, 3)), rng.integers(0, 3, n)
    if loss == "mse":
        y = X[:, :2] * 1.5 - 0.5
    X_dup, y_dup = np.concatenate([X[:1], X]), np.concatenate([y[:1], y])
    weights = np.ones(n)
    weights[0] = 2.0
    runs = []
    for data, w in (((X, y), weights), ((X_dup, y_dup), None)):
        net = nc.mlp(3, hidden, 3 if loss == "softmax_cross_entropy" else 2,
                     dtype="float64", seed=3, loss=loss)
        net.fit(*data, epochs=5, batch_size=len(data[0]),
                optimizer=nc.SGD(lr=0.1, momentum=0.0), shuffle=False, verbose=0,
                sample_weight=w)
        runs.append((net.params.copy(), net.history["loss"]))
    assert np.array_equal(runs[0][0], runs[1][0])
    # the loss sums its terms in another order: equal to rounding
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-13)


def test_integer_weights_approximate_repeated_samples_spread_over_the_batch():
    # Not exact (the copies are summed at other places), but close: the same objective.
    X, y = blobs(40, seed=4)
    weights = np.random.default_rng(0).integers(1, 4, 40).astype(float)
    repeated = np.repeat(np.arange(40), weights.astype(int))
    runs = []
    for data, w in (((X, y), weights), ((X[repeated], y[repeated]), None)):
        net = nc.mlp(3, [6], 3, dtype="float64", seed=3)
        net.fit(*data, epochs=1, batch_size=len(data[0]), optimizer=nc.SGD(lr=0.1),
                shuffle=False, verbose=0, sample_weight=w)
        runs.append(net.params.copy())
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
def test_weighted_fit_on_the_reference_backend_equals_the_kernels(loss):
    X, y = blobs(70, n_in=4, seed=5)
    if loss == "mse":
        y = X[:, :2]
    weights = np.random.default_rng(0).uniform(0, 2, 70)
    weights[:5] = 0
    results = {}
    for backend in ("kernels", "reference"):
        net = nc.resnet(4, 8, 2, 3 if loss != "mse" else 2, activation="tanh",
                        dtype="float64", seed=1, backend=backend, loss=loss)
        history = net.fit(X, y, epochs=4, batch_size=16, seed=3, verbose=0,
                          optimizer=nc.SGD(lr=0.05, momentum=0.9), sample_weight=weights)
        results[backend] = net.params.copy(), history["loss"]
    assert_close(results["kernels"][0], results["reference"][0], np.float64, rtol=1e-10)
    assert_close(results["kernels"][1], results["reference"][1], np.float64, rtol=1e-10)


def test_a_batch_of_zero_weights_contributes_nothing_to_the_gradient():
    X, y = blobs(8, seed=6)
    net = nc.mlp(3, [4], 3, dtype="float64", seed=0)
    before = net.params.copy()
    weights = np.array([1.0] * 4 + [0.0] * 4)
    net.fit(X, y, epochs=1, batch_size=4, shuffle=False,
            optimizer=nc.SGD(lr=0.1, momentum=0.0), verbose=0, sample_weight=weights)
    after_weighted = net.params.copy()
    net.params[...] = before
    net.fit(X[:4], y[:4], epochs=1, batch_size=4, shuffle=False,
            optimizer=nc.SGD(lr=0.1, momentum=0.0), verbose=0)
    assert np.array_equal(after_weighted, net.params)  # the second batch moved nothing


@pytest.mark.parametrize("weights, error, message", BAD_WEIGHTS[:-1] + [
    ([0.0, 0.0, 0.0], ValueError, "all zero"),
    ([1.0, 1.0, 1.0, 1.0], ValueError, "4 weights for 3 samples"),
])
def test_fit_refuses_bad_weights_naming_sample_weight(weights, error, message):
    X, y = blobs(3)
    net = nc.mlp(3, [4], 3)
    with pytest.raises(error, match="sample_weight"):
        net.fit(X, y, epochs=1, batch_size=2, verbose=0, sample_weight=weights)


def test_a_checkpoint_resumes_only_with_the_same_weights(tmp_path):
    X, y = blobs(30)
    weights = np.linspace(0.5, 2.0, 30)
    net = nc.mlp(3, [4], 3, seed=0)
    net.fit(X, y, epochs=2, batch_size=8, verbose=0, sample_weight=weights,
            checkpoint=tmp_path)
    resumed = nc.mlp(3, [4], 3, seed=0)
    resumed.fit(X, y, epochs=3, batch_size=8, verbose=0, sample_weight=weights,
                checkpoint=tmp_path)
    fresh = nc.mlp(3, [4], 3, seed=0)
    fresh.fit(X, y, epochs=3, batch_size=8, verbose=0, sample_weight=weights)
    assert np.array_equal(resumed.params, fresh.params)
    for other in (None, weights[::-1].copy()):
        with pytest.raises(ValueError, match="sample_weight"):
            nc.mlp(3, [4], 3, seed=0).fit(X, y, epochs=4, batch_size=8, verbose=0,
                                          sample_weight=other, checkpoint=tmp_path)


def test_history_loss_is_the_weighted_mean_and_validation_is_unweighted():
    X, y = blobs(40, seed=7)
    weights = np.where(y == 0, 3.0, 1.0)
    net = nc.mlp(3, [6], 3, dtype="float64", seed=0)
    # one full batch: its loss is taken before its update
    loss, _ = ops.softmax_cross_entropy(net.logits(X), y, sample_weight=weights)
    history = net.fit(X, y, epochs=1, batch_size=40, shuffle=False, verbose=0,
                      optimizer=nc.SGD(lr=0.1), sample_weight=weights,
                      validation_data=(X, y))
    assert history["loss"][0] == pytest.approx(loss, rel=1e-10)
    assert history["val_loss"][0] == pytest.approx(net.evaluate(X, y)["loss"], rel=1e-10)
    assert history["val_loss"][0] != pytest.approx(loss, rel=1e-3)

