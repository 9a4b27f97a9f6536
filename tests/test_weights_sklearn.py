"""Tests of the estimators' sample_weight (fit, partial_fit) and NNClassifier's
class_weight; scikit-learn's own sample-weight checks run in tests/test_sklearn.py."""

import numpy as np
import pytest

pytest.importorskip("sklearn")

from nncore.sklearn import NNClassifier, NNRegressor  # noqa: E402


def imbalanced(n=400, seed=0):
    """Two overlapping classes, 5% of the samples in class 1."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    X = rng.standard_normal((n, 2)) + 1.2 * y[:, None]
    return X, y


def recall_of_1(model, X, y):
    return float(np.mean(model.predict(X)[y == 1] == 1))


def test_class_weight_balanced_raises_the_minority_recall():
    X, y = imbalanced()
    X_test, y_test = imbalanced(2000, seed=1)
    settings = dict(hidden_layer_sizes=(8,), max_iter=60, random_state=0)
    plain = NNClassifier(**settings).fit(X, y)
    balanced = NNClassifier(class_weight="balanced", **settings).fit(X, y)
    assert recall_of_1(balanced, X_test, y_test) > recall_of_1(plain, X_test, y_test) + 0.3
    as_dict = NNClassifier(class_weight={0: 1.0, 1: 19.0}, **settings).fit(X, y)
    assert recall_of_1(as_dict, X_test, y_test) > recall_of_1(plain, X_test, y_test) + 0.3


def test_class_weight_is_sample_weight_per_class_exactly():
    X, y = imbalanced(100)
    labels = np.where(y == 1, "rare", "common")
    settings = dict(hidden_layer_sizes=(4,), max_iter=5, random_state=0, dtype="float64")
    by_class = NNClassifier(class_weight={"rare": 3.0}, **settings).fit(X, labels)
    by_sample = NNClassifier(**settings).fit(X, labels, sample_weight=np.where(y == 1, 3.0, 1))
    assert np.array_equal(by_class.predict_proba(X), by_sample.predict_proba(X))


@pytest.mark.parametrize("make", [
    lambda: NNClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0),
    lambda: NNRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0),
], ids=["classifier", "regressor"])
def test_estimators_with_all_ones_weights_predict_exactly_as_without(make):
    X, y = imbalanced(90)
    target = y if isinstance(make(), NNClassifier) else X.sum(axis=1)
    plain, ones = make().fit(X, target), make().fit(X, target, sample_weight=np.ones(90))
    assert np.array_equal(plain.predict(X), ones.predict(X))
    plain.partial_fit(X, target)
    ones.partial_fit(X, target, sample_weight=np.ones(90))
    assert np.array_equal(plain.predict(X), ones.predict(X))


@pytest.mark.parametrize("weights, message", [
    ([-1.0] + [1.0] * 29, "sample_weight"),
    ([np.nan] + [1.0] * 29, "sample_weight"),
    ([1.0] * 29, "sample_weight"),
    ([0.0] * 30, "weight.*zero"),
])
@pytest.mark.parametrize("estimator", [NNClassifier(max_iter=1), NNRegressor(max_iter=1)],
                         ids=["classifier", "regressor"])
def test_estimators_refuse_bad_weights(estimator, weights, message):
    X, y = imbalanced(30)
    with pytest.raises(ValueError, match=message):
        estimator.fit(X, y, sample_weight=weights)
    if isinstance(estimator, NNClassifier):
        with pytest.raises(ValueError, match=message):
            NNClassifier(max_iter=1).partial_fit(X, y, classes=[0, 1], sample_weight=weights)


def test_bad_class_weights_are_refused():
    X, y = imbalanced(30)
    with pytest.raises(ValueError, match="class_weight"):
        NNClassifier(max_iter=1, class_weight="heavy").fit(X, y)
    with pytest.raises(ValueError, match="class_weight"):
        NNClassifier(max_iter=1, class_weight={0: -1.0}).fit(X, y)
    with pytest.raises(ValueError, match="not supported by partial_fit"):
        NNClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    NNClassifier(class_weight={1: 5.0}).partial_fit(X, y, classes=[0, 1])


def test_early_stopping_splits_the_weights_with_the_data():
    X, y = imbalanced(200)
    weights = np.where(y == 1, 5.0, 1.0)
    model = NNClassifier(hidden_layer_sizes=(4,), max_iter=5, early_stopping=True,
                         random_state=0).fit(X, y, sample_weight=weights)
    assert model.n_iter_ >= 1 and model.validation_scores_ is not None
    regressor = NNRegressor(hidden_layer_sizes=(4,), max_iter=5, early_stopping=True,
                            random_state=0).fit(X, X.sum(axis=1), sample_weight=weights)
    assert regressor.n_iter_ >= 1
