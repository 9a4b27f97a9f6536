"""The loaders with ``task="regression"``: real-valued targets from CSV, NPZ and MAT files,
their error messages, and the hint a classification run gives on a regression file."""

import numpy as np
import pytest
import scipy.io

from nncore import datasets, losses


def message_of(call, *fragments):
    """The ValueError message of ``call()``, checked for each fragment."""
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "\n" not in message
    return message


def noisy_sine_csv(path, n=50, seed=0, header="x,y"):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n)
    table = np.column_stack([x, np.sin(x) + 0.1 * rng.standard_normal(n)])
    np.savetxt(path, table, delimiter=",", header=header or "", comments="")
    return table


def two_output_npz(path, seed=0, **overrides):
    rng = np.random.default_rng(seed)
    X, X_val = rng.standard_normal((30, 3)), rng.standard_normal((10, 3))
    contents = {"X_train": X, "y_train": np.column_stack([X.sum(1), X[:, 0] * X[:, 1]]),
                "X_val": X_val, "y_val": np.column_stack([X_val.sum(1), X_val[:, 0]])}
    contents.update(overrides)
    np.savez(path, **contents)
    return contents


def test_the_loaders_read_every_task_the_loss_registry_has():
    assert set(datasets.TASKS) == set(losses.TASKS)


def test_csv_regression_returns_the_real_last_column(tmp_path):
    table = noisy_sine_csv(tmp_path / "sine.csv")
    X, y, X_val, y_val = datasets.load(tmp_path / "sine.csv", task="regression")
    assert X.shape == (40, 1) and X_val.shape == (10, 1)
    assert y.shape == (40,) and y_val.shape == (10,) and y.dtype == y_val.dtype == np.float64
    # the same rows as the classification split would take, targets untouched
    order = np.random.default_rng(0).permutation(50)
    np.testing.assert_array_equal(X_val[:, 0], table[order[:10], 0])
    np.testing.assert_array_equal(y_val, table[order[:10], 1])
    np.testing.assert_array_equal(y, table[order[10:], 1])


def test_csv_integer_targets_are_real_values_for_regression(tmp_path):
    path = tmp_path / "counts.csv"
    path.write_text("1,10\n2,30\n3,20\n4,10\n5,40\n")
    _, y, _, y_val = datasets.load_csv(path, task="regression")
    assert sorted(np.concatenate([y, y_val])) == [10.0, 10.0, 20.0, 30.0, 40.0]  # no renumbering


@pytest.mark.parametrize("text, fragments", [
    ("1,2,0.5\n3,4,nan\n5,6,1\n", ("line 2", "target (last column) is NaN or infinite", "'nan'")),
    ("1,2,0.5\n3,4,-inf\n5,6,1\n", ("line 2", "NaN or infinite", "'-inf'")),
    ("1,2,0.5\n3,4,abc\n5,6,1\n", ("line 2", "target (last column) must be a number", "'abc'")),
    ("1,2,0.5\n3,x,1.5\n5,6,1\n", ("line 2", "'x' is not a number")),
    ("1,2,0.5\n3,nan,1.5\n5,6,1\n", ("line 2", "a feature is NaN or infinite")),
], ids=["nan-target", "inf-target", "text-target", "text-feature", "nan-feature"])
def test_csv_regression_errors_name_the_file_line_and_column(tmp_path, text, fragments):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    message_of(lambda: datasets.load_csv(path, task="regression"), "bad.csv", *fragments)


def test_a_classification_load_of_real_targets_suggests_regression(tmp_path):
    noisy_sine_csv(tmp_path / "sine.csv")
    message_of(lambda: datasets.load(tmp_path / "sine.csv"), "sine.csv", "line 2",
               "label (last column) must be an integer", "--task regression")
    two_output_npz(tmp_path / "two.npz")
    message_of(lambda: datasets.load(tmp_path / "two.npz"), "two.npz", "y_train",
               "--task regression")
    rng = np.random.default_rng(0)
    two_output_npz(tmp_path / "one.npz", y_train=rng.standard_normal(30),
                   y_val=rng.standard_normal(10))
    message_of(lambda: datasets.load(tmp_path / "one.npz"), "one.npz",
               "must hold integer class labels", "--task regression")


def test_a_nan_label_is_not_called_a_regression_target(tmp_path):
    path = tmp_path / "nan.csv"
    path.write_text("1,2,0\n3,4,nan\n5,6,1\n")
    message = message_of(lambda: datasets.load_csv(path), "must be an integer")
    assert "regression" not in message


def test_npz_regression_keeps_two_outputs_and_refuses_bad_targets(tmp_path):
    contents = two_output_npz(tmp_path / "two.npz")
    X, y, X_val, y_val = datasets.load_npz(tmp_path / "two.npz", task="regression")
    assert y.shape == (30, 2) and y_val.shape == (10, 2) and y.dtype == np.float64
    np.testing.assert_array_equal(y, contents["y_train"])
    np.testing.assert_array_equal(X, contents["X_train"])
    np.testing.assert_array_equal(X_val, contents["X_val"])

    bad = contents["y_val"].copy()
    bad[3, 1] = np.nan
    two_output_npz(tmp_path / "nan.npz", y_val=bad)
    message_of(lambda: datasets.load(tmp_path / "nan.npz", task="regression"), "nan.npz",
               "y_val contains NaN or infinity", "sample 3, output 1")
    two_output_npz(tmp_path / "text.npz", y_train=np.array(["a"] * 30))
    message_of(lambda: datasets.load(tmp_path / "text.npz", task="regression"), "text.npz",
               "y_train must hold real numbers")
    two_output_npz(tmp_path / "short.npz", y_train=contents["y_train"][:-1])
    message_of(lambda: datasets.load(tmp_path / "short.npz", task="regression"), "short.npz",
               "y_train has 29 targets for 30 samples")
    two_output_npz(tmp_path / "mismatch.npz", y_val=contents["y_val"][:, 0])
    message_of(lambda: datasets.load(tmp_path / "mismatch.npz", task="regression"),
               "mismatch.npz", "target count mismatch", "y_train has 2", "y_val has 1")
    two_output_npz(tmp_path / "none.npz", y_train=np.zeros((30, 0)))
    message_of(lambda: datasets.load(tmp_path / "none.npz", task="regression"), "none.npz",
               "y_train has no targets")


def test_npz_one_target_as_a_column_comes_back_one_dimensional(tmp_path):
    contents = two_output_npz(tmp_path / "col.npz")
    two_output_npz(tmp_path / "col.npz", y_train=contents["y_train"][:, :1],
                   y_val=contents["y_val"][:, :1])
    _, y, _, y_val = datasets.load_npz(tmp_path / "col.npz", task="regression")
    assert y.shape == (30,) and y_val.shape == (10,)


def write_real_mat(path, n_targets=2, **overrides):
    rng = np.random.default_rng(2)
    contents = {"Yt": rng.standard_normal((3, 40)), "Ct": rng.standard_normal((n_targets, 40)),
                "Yv": rng.standard_normal((3, 12)), "Cv": rng.standard_normal((n_targets, 12))}
    contents.update(overrides)
    scipy.io.savemat(path, contents)
    return contents


@pytest.mark.parametrize("n_targets", [1, 2])
def test_mat_regression_reads_real_ct_and_cv(tmp_path, n_targets):
    contents = write_real_mat(tmp_path / "real.mat", n_targets)
    X, y, X_val, y_val = datasets.load(tmp_path / "real.mat", task="regression")
    expected_shape = (40,) if n_targets == 1 else (40, n_targets)
    assert y.shape == expected_shape and y.dtype == np.float64
    np.testing.assert_array_equal(y.reshape(40, -1), contents["Ct"].T)
    np.testing.assert_array_equal(y_val.reshape(12, -1), contents["Cv"].T)
    np.testing.assert_array_equal(X, contents["Yt"].T)
    np.testing.assert_array_equal(X_val, contents["Yv"].T)


def test_mat_regression_errors(tmp_path):
    bad = np.ones((2, 12))
    bad[1, 5] = np.inf
    write_real_mat(tmp_path / "inf.mat", Cv=bad)
    message_of(lambda: datasets.load_mat(tmp_path / "inf.mat", task="regression"), "inf.mat",
               "Cv contains NaN or infinity", "sample 5, output 1")
    write_real_mat(tmp_path / "rows.mat", Cv=np.ones((3, 12)))
    message_of(lambda: datasets.load_mat(tmp_path / "rows.mat", task="regression"), "rows.mat",
               "target count mismatch: Ct has 2 rows (targets) but Cv has 3")
    write_real_mat(tmp_path / "real.mat")
    message_of(lambda: datasets.load_mat(tmp_path / "real.mat"), "real.mat",
               "Ct is not one-hot", "--task regression")


def test_the_bundled_sets_are_classification_sets():
    message_of(lambda: datasets.load("peaks", task="regression"),
               "'peaks' is a bundled classification set")
    message_of(lambda: datasets.load("peaks", task="ranking"), "task must be one of")
