"""Regression: the mean-squared-error kernel against its reference twin and finite
differences, the fused step with the MSE loss, and networks that predict values."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncore as nc
from conftest import DTYPES, MODULES, assert_close, examples, random_array
from nncore import ops, reference

over_dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=("float32", "float64"))
over_modules = pytest.mark.parametrize("module", MODULES, ids=("ops", "reference"))


# --- the kernel ------------------------------------------------------------------------------

@over_dtypes
@settings(max_examples=examples(25), deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 40), k=st.integers(1, 7),
       read_only=st.booleans(), give_out=st.booleans())
def test_mean_squared_error_matches_the_reference(dtype, seed, n, k, read_only, give_out):
    rng = np.random.default_rng(seed)
    pred, target = random_array(rng, (n, k), dtype), random_array(rng, (n, k), dtype)
    if read_only:
        pred.flags.writeable = target.flags.writeable = False
    out = np.empty((n, k), dtype=dtype) if give_out else None
    loss, grad = ops.mean_squared_error(pred, target, out=out)
    expected_loss, expected_grad = reference.mean_squared_error(pred, target)
    assert type(loss) is float and grad.dtype == dtype and grad.shape == (n, k)
    if give_out:
        assert grad is out
    diff = pred.astype(np.float64) - target
    assert loss == pytest.approx(float(np.mean(diff * diff)) if n else 0.0, rel=1e-12)
    assert_close(loss, expected_loss, np.float64, scale=max(expected_loss, 1e-300), name="loss")
    assert_close(grad, expected_grad, dtype, scale=2 * np.abs(diff).max() / max(diff.size, 1)
                 if n else 1.0, name="dpred")


def test_mean_squared_error_gradient_matches_central_differences():
    rng = np.random.default_rng(3)
    pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    _, grad = ops.mean_squared_error(pred, target)
    h = 1e-6
    numeric = np.empty_like(pred)
    for index in np.ndindex(pred.shape):
        up, down = pred.copy(), pred.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (ops.mean_squared_error(up, target)[0]
                          - ops.mean_squared_error(down, target)[0]) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-10)


def test_the_float32_difference_is_taken_in_double():
    # 1 + 2^-23 and 1 differ by one float32 ulp: the loss must be exactly that squared
    pred = np.array([[1 + 2.0**-23]], dtype=np.float32)
    target = np.array([[1.0]], dtype=np.float32)
    assert ops.mean_squared_error(pred, target)[0] == 2.0**-46


@over_modules
@pytest.mark.parametrize("pred, target, error, message", [
    (np.zeros((2, 3)), np.zeros((3, 2)), ValueError, "^target must have shape"),
    (np.zeros((2, 3)), np.zeros((2, 3), np.float32), TypeError, "share one dtype"),
    (np.zeros(3), np.zeros(3), ValueError, "^pred must be 2-D"),
    (np.zeros((2, 3), complex), np.zeros((2, 3)), TypeError, "^pred must have dtype"),
])
def test_mean_squared_error_refuses_bad_arguments(module, pred, target, error, message):
    with pytest.raises(error, match=message):
        module.mean_squared_error(pred, target)


# --- the fused step --------------------------------------------------------------------------

@over_dtypes
@pytest.mark.parametrize("kind", ["mlp", "resnet"])
def test_the_fused_step_with_squared_error_matches_the_reference(dtype, kind):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((24, 3))
    Y = rng.standard_normal((24, 2))
    params = {}
    for backend in ("kernels", "reference"):
        net = (nc.mlp(3, [8, 8], 2, loss="mse", dtype=dtype, seed=1, backend=backend)
               if kind == "mlp" else
               nc.resnet(3, 6, 2, 2, loss="mse", dtype=dtype, seed=1, backend=backend))
        history = net.fit(X, Y, epochs=4, batch_size=8, verbose=0, seed=2,
                          optimizer=nc.SGD(lr=0.05, momentum=0.9))
        params[backend] = (net.params.copy(), history["loss"])
    rtol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(params["kernels"][0], params["reference"][0], rtol=rtol,
                               atol=rtol)
    np.testing.assert_allclose(params["kernels"][1], params["reference"][1], rtol=rtol)


# --- networks that predict values ------------------------------------------------------------

def _curve(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 1))
    return X, np.sin(2 * X[:, 0]) + 0.05 * rng.standard_normal(n)


def test_a_regression_mlp_learns_a_curve_and_reports_rmse_and_r2():
    X, y = _curve()
    net = nc.mlp(1, [32, 32], 1, loss="mse", dtype="float64", seed=0)
    history = net.fit(X, y, epochs=40, batch_size=32, optimizer=nc.SGD(lr=0.05), verbose=0,
                      validation_data=_curve(200, seed=1))
    assert history.columns == ("epoch", "loss", "rmse", "r2", "val_loss", "val_rmse", "val_r2",
                               "lr", "seconds")
    assert history["val_r2"][-1] > 0.95 and history["loss"][-1] < history["loss"][0]
    scores = net.evaluate(X, y)
    prediction = net.predict(X)
    assert prediction.shape == (len(X), 1)
    residual = prediction[:, 0] - y
    assert scores["loss"] == pytest.approx(np.mean(residual ** 2), rel=1e-12)
    assert scores["rmse"] == pytest.approx(np.sqrt(np.mean(residual ** 2)), rel=1e-12)
    assert scores["r2"] == pytest.approx(1 - np.sum(residual ** 2) / np.sum((y - y.mean()) ** 2),
                                         rel=1e-12)
    # one output: the epoch's R^2 from the running loss is the same formula
    assert history["r2"][-1] == pytest.approx(1 - history["loss"][-1] / np.var(y), rel=1e-12)


def test_r2_averages_over_outputs_like_scikit_learn():
    r2_score = pytest.importorskip("sklearn.metrics").r2_score
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((50, 3)), rng.standard_normal((50, 2)) * [1.0, 10.0]
    net = nc.mlp(3, [4], 2, loss="mse", dtype="float64")
    assert net.evaluate(X, Y)["r2"] == pytest.approx(r2_score(Y, net.predict(X)), rel=1e-12)


def test_regression_model_files_keep_the_loss(tmp_path):
    X, y = _curve(100)
    net = nc.resnet(1, 8, 2, 1, loss="mse", seed=3)
    net.fit(X, y, epochs=2, verbose=0)
    net.save(tmp_path / "model.npz")
    loaded = nc.load(tmp_path / "model.npz")
    assert loaded.task == "regression" and loaded.loss_function.name == "mean_squared_error"
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


def test_a_regression_checkpoint_resumes_exactly(tmp_path):
    X, y = _curve(200)

    def train(**kwargs):
        net = nc.mlp(1, [8], 1, loss="mse", dtype="float64", seed=1)
        net.fit(X, y, epochs=6, batch_size=16, verbose=0, seed=2, **kwargs)
        return net

    class Stop(nc.Callback):
        def on_epoch_end(self, network, epoch, logs):
            if epoch == 3:  # 1-based, as fit numbers the epochs
                raise KeyboardInterrupt

    full = train()
    with pytest.raises(KeyboardInterrupt):  # fit raises it again after keeping the weights
        train(checkpoint=tmp_path, callbacks=[Stop()])
    resumed = train(checkpoint=tmp_path)
    np.testing.assert_array_equal(resumed.params, full.params)


def test_the_older_n_classes_name_still_builds_a_classifier():
    net = nc.mlp(2, [4], n_classes=3)
    assert net.task == "classification" and net.n_outputs == net.n_classes == 3
    assert nc.resnet(2, 4, 1, n_classes=3).architecture["n_classes"] == 3
    with pytest.raises(TypeError, match="n_outputs"):
        nc.mlp(2, [4], 3, n_classes=3)
    with pytest.raises(ValueError, match="logits"):
        nc.mlp(2, [4], 1)  # one output cannot be a softmax classifier
    assert nc.mlp(2, [4], 1, loss="mse").n_outputs == 1


@pytest.mark.parametrize("y, error, message", [
    (np.zeros(20), ValueError, "1-D but the network has 2 outputs"),
    (np.zeros((20, 3)), ValueError, "3 outputs per sample but the network has 2"),
    (np.zeros((19, 2)), ValueError, "19 targets for 20 samples"),
    (np.full((20, 2), np.inf), ValueError, "y contains NaN or infinity"),
    (np.array([["a", "b"]] * 20), TypeError, "class labels go to a classifier"),
    (np.zeros((20, 2), dtype=bool), TypeError, "y must hold real numbers"),
])
def test_bad_regression_targets_are_refused(y, error, message):
    net = nc.mlp(3, [4], 2, loss="mse")
    with pytest.raises(error, match=message):
        net.fit(np.zeros((20, 3)), y, epochs=1, verbose=0)


def test_a_regression_network_has_no_probabilities_and_an_unknown_loss_is_named():
    net = nc.mlp(3, [4], 1, loss="mse")
    with pytest.raises(ValueError, match="predict_proba needs a classifier"):
        net.predict_proba(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="^loss must be one of"):
        nc.mlp(3, [4], 1, loss="huber")


def test_early_stopping_monitors_regression_scores():
    X, y = _curve(300)
    net = nc.mlp(1, [8], 1, loss="mse", dtype="float64")
    stopper = nc.EarlyStopping(monitor="val_r2", patience=1)
    history = net.fit(X, y, epochs=3, verbose=0, validation_data=_curve(50, 1),
                      callbacks=[stopper])
    assert stopper.sign == -1.0  # R^2 is maximised
    assert stopper.best == -max(history["val_r2"]) and math.isfinite(history["rmse"][0])
    with pytest.raises(ValueError, match="does not record"):
        net.fit(X, y, epochs=1, verbose=0, callbacks=[nc.EarlyStopping(monitor="accuracy")])


@pytest.mark.parametrize("architecture, settings", [
    ("resnet", {"width": 5, "depth": 2}), ("mlp", {"layers": [6, 4]}),
    ("softmax_regression", {}),
])
def test_build_threads_the_loss_to_every_architecture(architecture, settings):
    from nncore import network

    net = network.build(3, 2, seed=1, architecture=architecture, loss="mse", **settings)
    assert net.task == "regression" and net.n_outputs == 2
    assert net.loss_function.name == "mean_squared_error"
    assert network.count_params(3, 2, architecture, **settings) == net.n_params
    classifier = network.build(3, 2, seed=1, architecture=architecture, **settings)
    assert classifier.task == "classification"
    np.testing.assert_array_equal(classifier.params, net.params)  # same layers, same start
    with pytest.raises(ValueError, match="^loss must be one of"):
        network.build(3, 2, architecture=architecture, loss="huber", **settings)


def test_one_linear_layer_with_a_regression_loss_is_called_linear_regression():
    from nncore import network

    assert network.describe("softmax_regression") == "softmax regression"
    assert network.describe("softmax_regression", loss="mse") == "linear regression"
    assert network.describe("mlp", layers=[], loss="mse") == "mlp linear regression tanh"
    assert network.describe("mlp", layers=[8], loss="mse") == "mlp 8 tanh"
