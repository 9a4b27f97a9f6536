"""An estimator's ``network_`` is the whole model: it predicts what the estimator predicts
(the class labels, the targets' units), and so do its model file, ``nncore predict`` and
its ONNX export.

Skipped as a whole when scikit-learn (the ``sklearn`` extra) is not installed.
"""

import csv
import io
import json
import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402

import nncore as nc  # noqa: E402
from nncore import cli  # noqa: E402
from nncore.sklearn import NNClassifier, NNRegressor  # noqa: E402


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) * 100 + rng.standard_normal(120)
    return X, y


def _three_classes(y):
    return np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))  # 0, 1, 2


def _same_predictions(est, network, X):
    """``network`` predicts what ``est`` does: labels (and probabilities), or values."""
    expected = est.predict(X)
    if isinstance(est, NNClassifier):
        predicted, expected = network.predict(X).tolist(), expected.tolist()
        assert predicted == expected
        # the labels themselves: 0 == False, so the values alone cannot tell
        assert {type(label) for label in predicted} == {type(label) for label in expected}
        np.testing.assert_array_equal(network.predict_proba(X), est.predict_proba(X))
        return
    predicted = network.predict(X)
    # the network's convention: (n, n_outputs) also for one output
    assert predicted.shape == (len(X), est.n_outputs_)
    np.testing.assert_array_equal(predicted.reshape(expected.shape), expected)


def _saved_and_loaded(est, path):
    est.network_.save(path)
    return nc.load(path)


LABELS = {"strings": np.array(["down", "flat", "up"]), "negative ints": np.array([-7, -1, 3]),
          "strings as objects": np.array(["a", "b", "c"], dtype=object),
          "bools": np.array([False, True, True])}


@pytest.mark.parametrize("kind", list(LABELS))
def test_a_saved_classifier_network_predicts_the_estimators_labels(data, tmp_path, kind):
    X, y = data
    labels = LABELS[kind][_three_classes(y)]
    clf = NNClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, labels)
    _same_predictions(clf, clf.network_, X)
    _same_predictions(clf, _saved_and_loaded(clf, tmp_path / "clf.npz"), X)
    assert set(clf.predict(X)) <= set(clf.classes_.tolist())
    assert clf.predict(X).dtype == clf.classes_.dtype


def test_a_classifier_partial_fit_keeps_the_labels_of_its_first_call(data, tmp_path):
    X, y = data
    labels = np.array(["a", "b", "c"])[_three_classes(y)]
    clf = NNClassifier(hidden_layer_sizes=(8,), random_state=0)
    first = labels != "c"
    clf.partial_fit(X[first], labels[first], classes=["c", "b", "a"])
    for _ in range(3):
        clf.partial_fit(X, labels)
    np.testing.assert_array_equal(clf.network_.classes, ["a", "b", "c"])
    _same_predictions(clf, _saved_and_loaded(clf, tmp_path / "clf.npz"), X)


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_a_saved_regressor_network_predicts_in_the_targets_units(data, tmp_path, n_outputs):
    X, y = data
    Y = y + 1000 if n_outputs == 1 else np.c_[y + 1000, -0.01 * y]
    reg = NNRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, Y)
    assert abs(reg.predict(X).mean() - Y.mean()) < 0.1 * Y.std()  # the targets' units
    _same_predictions(reg, reg.network_, X)
    _same_predictions(reg, _saved_and_loaded(reg, tmp_path / "reg.npz"), X)


def test_a_regressor_without_target_scaling_saves_none(data, tmp_path):
    X, y = data
    reg = NNRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                      standardize_target=False).fit(X, y / 100)
    assert reg.network_.state()["scaling"] is None
    _same_predictions(reg, _saved_and_loaded(reg, tmp_path / "reg.npz"), X)


def test_a_regressor_partial_fit_keeps_the_scaling_of_its_first_call(data, tmp_path):
    X, y = data
    reg = NNRegressor(hidden_layer_sizes=(8,), random_state=0)
    reg.partial_fit(X[:60], y[:60] + 1000)
    mean = reg.network_.target_mean.copy()
    reg.partial_fit(X[60:], y[60:] - 1000)
    np.testing.assert_array_equal(reg.network_.target_mean, mean)
    np.testing.assert_array_equal(reg.network_.target_mean, reg.target_mean_)
    _same_predictions(reg, _saved_and_loaded(reg, tmp_path / "reg.npz"), X)


def test_early_stopping_still_watches_the_standardised_loss(data):
    """The validation loss early stopping compares with ``tol`` stays that of the
    standardised targets (as the training loss): the network gets the targets' scaling
    only once training ends."""
    X, y = data
    reg = NNRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                      early_stopping=True).fit(X, y + 1000)
    assert max(reg.history_["val_loss"]) < 10  # y's variance is about 5e4
    _same_predictions(reg, reg.network_, X)


@pytest.mark.parametrize("Estimator", [NNClassifier, NNRegressor])
def test_pickled_and_cloned_estimators_keep_a_whole_network(data, Estimator):
    X, y = data
    target = np.array(["a", "b", "c"])[_three_classes(y)] if Estimator is NNClassifier \
        else y + 1000
    est = Estimator(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, target)
    again = pickle.loads(pickle.dumps(est))
    _same_predictions(again, again.network_, X)
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    refitted = clone(est).fit(X, target)
    np.testing.assert_array_equal(refitted.predict(X), est.predict(X))


@pytest.mark.parametrize("Estimator", [NNClassifier, NNRegressor])
def test_a_pickle_whose_network_lacks_labels_or_scaling_gets_them(data, Estimator):
    """Estimators pickled before the network carried the labels and the target scaling
    (the network predicted class indices and standardised values) are completed when
    loaded."""
    X, y = data
    target = np.array(["a", "b", "c"])[_three_classes(y)] if Estimator is NNClassifier \
        else y + 1000
    est = Estimator(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, target)
    expected = est.predict(X)
    if Estimator is NNClassifier:
        est.network_.classes = None
    else:
        est.network_.target_mean = est.network_.target_scale = None
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X), expected)
    _same_predictions(again, again.network_, X)


def test_labels_a_model_file_cannot_store_stay_with_the_estimator(data):
    """Datetime labels (scikit-learn takes them) cannot go into a model file: the network
    keeps class indices and the estimator still predicts the labels."""
    X, y = data
    days = np.array(["2020-01-01", "2021-01-01", "2022-01-01"], dtype="datetime64[D]")
    labels = days[_three_classes(y)]
    clf = NNClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, labels)
    assert clf.predict(X).dtype == labels.dtype
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[clf.network_.predict(X)])
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(X), clf.predict(X))


def test_nncore_predict_on_a_saved_classifier_writes_its_labels(data, tmp_path, capsys):
    X, y = data
    labels = np.array(["down", "flat", "up"])[_three_classes(y)]
    clf = NNClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, labels)
    clf.network_.save(tmp_path / "clf.npz")
    np.savetxt(tmp_path / "X.csv", X, delimiter=",")
    assert cli.main(["predict", str(tmp_path / "clf.npz"), str(tmp_path / "X.csv")]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert [row[0] for row in rows[1:]] == clf.predict(X).tolist()


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_the_ctrl_c_warning_points_at_the_users_call(data, monkeypatch, method):
    """As scikit-learn's warnings: the file and line of the user's fit call, not
    "sys:1" (a stacklevel one frame too high) or a line inside nncore."""
    import nncore.sklearn

    X, y = data
    real_fit = nncore.sklearn.train_fit

    class Interrupt(nc.train.Callback):
        def on_epoch_end(self, network, epoch, logs):
            raise KeyboardInterrupt

    def interrupted_fit(*args, callbacks=(), **kwargs):
        return real_fit(*args, callbacks=[*callbacks, Interrupt()], **kwargs)

    monkeypatch.setattr(nncore.sklearn, "train_fit", interrupted_fit)
    reg = NNRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with pytest.warns(UserWarning, match="Training interrupted by user") as caught:
        getattr(reg, method)(X, y)
    assert caught[0].filename == __file__
    _same_predictions(reg, reg.network_, X)


# --- ONNX ----------------------------------------------------------------------------------

def _onnx_metadata(path):
    onnx = pytest.importorskip("onnx")
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _onnx_predictions(path, X):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X.astype(np.float32)})[0]


def _fitted_pair(data):
    X, y = data
    labels = np.array(["a", "b", "c"])[_three_classes(y)]
    clf = NNClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, labels)
    reg = NNRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y + 1000)
    return clf, reg


def test_the_onnx_export_of_an_estimators_network_is_the_whole_model(data, tmp_path):
    pytest.importorskip("onnx")
    X, _ = data
    clf, reg = _fitted_pair(data)
    path = nc.export_onnx(clf.network_, tmp_path / "clf.onnx")
    assert json.loads(_onnx_metadata(path)["classes"]) == {"kind": "str",
                                                            "values": ["a", "b", "c"]}
    path = nc.export_onnx(reg.network_, tmp_path / "reg.onnx")
    np.testing.assert_allclose(_onnx_predictions(path, X)[:, 0], reg.predict(X), rtol=1e-5)


def test_export_onnx_takes_a_fitted_estimator(data, tmp_path):
    """``export_onnx(est)`` writes ``export_onnx(est.network_)``; an unfitted estimator
    is refused."""
    pytest.importorskip("onnx")
    for est in _fitted_pair(data):
        of_network = nc.export_onnx(est.network_, tmp_path / "network.onnx").read_bytes()
        assert nc.export_onnx(est, tmp_path / "estimator.onnx").read_bytes() == of_network
    with pytest.raises(TypeError, match="nncore Network .*got NNClassifier"):
        nc.export_onnx(NNClassifier(), tmp_path / "model.onnx")


def test_a_dataframes_column_names_travel_with_the_saved_network(data, tmp_path, capsys):
    """Fitted on a DataFrame, the estimator knows feature_names_in_; its network_ (and so
    its model file) now names the features too, so `nncore predict` picks a CSV's columns
    by name, in any order (it read them by position, whatever the header said)."""
    pandas = pytest.importorskip("pandas")
    X, y = data
    names = ["age", "income", "height", "weight"]
    frame = pandas.DataFrame(X, columns=names)
    reg = NNRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(frame, y)
    assert reg.network_.feature_names == names
    reg.network_.save(tmp_path / "reg.npz")
    assert nc.load(tmp_path / "reg.npz").feature_names == names
    shuffled = frame[["weight", "income", "age", "height"]]
    shuffled.to_csv(tmp_path / "X.csv", index=False)
    assert cli.main(["predict", str(tmp_path / "reg.npz"), str(tmp_path / "X.csv")]) == 0
    values = [float(row[0]) for row in csv.reader(io.StringIO(capsys.readouterr().out))
              if row and row[0][0] in "-0123456789"]
    np.testing.assert_allclose(values, reg.predict(frame), rtol=1e-6)
    plain = NNRegressor(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)
    assert plain.network_.feature_names is None


def test_predict_log_proba_is_the_log_softmax_of_the_logits(data):
    X, y = data
    clf = NNClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0,
                       activation="relu", dtype="float64").fit(X, _three_classes(y))
    log_proba = clf.predict_log_proba(X)
    np.testing.assert_allclose(log_proba, np.log(clf.predict_proba(X)), rtol=1e-9, atol=1e-12)
    far = X * 1e4  # ReLU's logits grow with X: probabilities underflow to 0, logs stay finite
    assert (clf.predict_proba(far) == 0).any() and np.isfinite(clf.predict_log_proba(far)).all()


def test_the_regressor_predicts_targets_far_from_zero_in_float64(data):
    """A review: predict had come to round the unscaled values to the float32 network's
    dtype: targets of 1e8 +- 3 came back as 1e8 everywhere (R^2 0.17 against 0.89). The
    network's own predict gives them in float64 too."""
    X, _ = data
    rng = np.random.default_rng(1)
    y = 1e8 + 3 * X[:, 0] + 0.1 * rng.standard_normal(len(X))
    reg = NNRegressor(hidden_layer_sizes=(16,), max_iter=30, random_state=0).fit(X, y)
    predicted = reg.predict(X)
    assert predicted.dtype == np.float64 and np.unique(predicted).size > len(X) // 2
    rounded = predicted.astype(np.float32).astype(np.float64)  # what predict had come to
    assert np.unique(rounded).size < 10
    assert reg.score(X, y) > r2_score(y, rounded) + 0.3
    # the saved network rounds to its dtype, as its model file and ONNX export must
    _same_predictions(reg, reg.network_, X)


def test_labels_beyond_int64_stay_with_the_estimator(data):
    """A review: uint64 labels >= 2**63 went into network_, which then could neither be
    pickled back nor loaded (int64 labels in the file): they stay with the estimator."""
    X, y = data
    labels = np.array([2**63, 2**63 + 1], dtype=np.uint64)[(y > np.median(y)).astype(int)]
    clf = NNClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, labels)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(X), clf.predict(X))
    assert set(clf.predict(X).tolist()) <= set(labels.tolist())
    assert clf.network_.classes.tolist() == [0, 1]  # class indices, as for dates
