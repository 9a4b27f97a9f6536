"""CSV files as users have them: any common delimiter (sniffed or given), a header or none,
the target in any column (by name or index), text labels kept with ``return_labels``,
quoting and CRLF, errors naming file, line and column, a stratified split, and the
``nncore train/predict/search`` options ``--delimiter``, ``--target``, ``--val-fraction``."""

import csv

import numpy as np
import pytest

import nncore as nc
from nncore import datasets
from conftest import run_cli

NAMES = ["x1", "x2", "label"]


def rows(n=30, labels=(7, 3, 11)):
    """Row i: features i + 0.5 and -i, label labels[i % len(labels)]."""
    return [[f"{i}.5", f"{-i}", f"{labels[i % len(labels)]}"] for i in range(n)]


def write(path, table, delimiter=",", header=NAMES, line_end="\n", quote=csv.QUOTE_MINIMAL):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator=line_end,
                            quoting=quote)
        if header:
            writer.writerow(header)
        writer.writerows(table)
    return path


def all_rows(arrays):
    X, y, X_val, y_val = arrays
    return np.concatenate([X, X_val]), np.concatenate([y, y_val])


def check_rows(arrays, table, label_column=-1):
    """Every row of `table` is in the split, features in order, with its original label."""
    X, y = all_rows(arrays)
    order = np.argsort(X[:, 1])[::-1]  # row i has -i in its second feature
    assert len(X) == len(table)
    features = [[float(c) for k, c in enumerate(r) if k != label_column % len(r)]
                for r in table]
    np.testing.assert_array_equal(X[order], np.array(features))
    return y[order]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|", " "],
                         ids=["comma", "semicolon", "tab", "pipe", "space"])
@pytest.mark.parametrize("header", [NAMES, None], ids=["header", "no-header"])
def test_every_common_delimiter_is_sniffed(tmp_path, delimiter, header):
    table = rows()
    path = write(tmp_path / "set.csv", table, delimiter=delimiter, header=header)
    arrays = datasets.load(path, return_labels=True)
    np.testing.assert_array_equal(check_rows(arrays, table), [int(r[-1]) for r in table])
    given = datasets.load_csv(path, delimiter={"\t": "tab", " ": "whitespace"}.get(
        delimiter, delimiter), return_labels=True)
    for a, b in zip(arrays, given):
        np.testing.assert_array_equal(a, b)


def test_whitespace_aligned_columns(tmp_path):
    path = tmp_path / "aligned.csv"
    path.write_text("".join(f"  {i:6.2f}   {-i:4d}  {i % 2}\n" for i in range(20)))
    X, y = all_rows(datasets.load_csv(path, return_labels=True))
    assert X.shape == (20, 2) and sorted(set(y.tolist())) == [0, 1]
    mixed = tmp_path / "mixed.csv"  # runs of spaces and tabs
    mixed.write_text("".join(f"  {i:6.2f} \t  {-i:4d}\t {i % 2}\n" for i in range(20)))
    X2, _ = all_rows(datasets.load_csv(mixed, delimiter="whitespace"))
    np.testing.assert_array_equal(np.sort(X[:, 1]), np.sort(X2[:, 1]))


@pytest.mark.parametrize("target", ["label", 1, "1", -2], ids=["name", "index", "digits",
                                                                 "negative"])
def test_the_target_column_by_name_or_index(tmp_path, target):
    table = [[r[0], r[2], r[1]] for r in rows()]  # the label in the middle
    path = write(tmp_path / "middle.csv", table, delimiter=";", header=["x1", "label", "x2"])
    X, y = all_rows(datasets.load_csv(path, target=target, return_labels=True))
    order = np.argsort(X[:, 1])[::-1]
    np.testing.assert_array_equal(X[order][:, 1], -np.arange(30.0))
    np.testing.assert_array_equal(y[order], [int(r[1]) for r in table])


def test_target_0_without_a_header(tmp_path):
    table = [[r[2], r[0], r[1]] for r in rows()]
    path = write(tmp_path / "first.csv", table, header=None)
    X, y = all_rows(datasets.load(path, target=0, return_labels=True))
    assert X.shape == (30, 2)
    assert sorted(set(y.tolist())) == [3, 7, 11]


def test_target_errors(tmp_path):
    path = write(tmp_path / "set.csv", rows())
    with pytest.raises(ValueError, match="set.csv: no column named 'y'.*'label'"):
        datasets.load_csv(path, target="y")
    with pytest.raises(ValueError, match="index 3 is out of range for 3 columns"):
        datasets.load_csv(path, target=3)
    bare = write(tmp_path / "bare.csv", rows(), header=None)
    with pytest.raises(ValueError, match="no header line"):
        datasets.load_csv(bare, target="label")
    with pytest.raises(ValueError, match="delimiter must be one character"):
        datasets.load_csv(path, delimiter="::")
    with pytest.raises(ValueError, match="applies to .csv files only"):
        datasets.load("peaks", target=0)


def test_quoted_fields_and_crlf(tmp_path):
    labels = ["red, dark", 'say "hi"', "plain"]
    table = rows(labels=labels)
    path = write(tmp_path / "quoted.csv", table, line_end="\r\n", quote=csv.QUOTE_NONNUMERIC
                 if False else csv.QUOTE_ALL)
    assert b"\r\n" in path.read_bytes() and b'"red, dark"' in path.read_bytes()
    arrays = datasets.load(path, return_labels=True)
    assert check_rows(arrays, table).tolist() == [r[-1] for r in table]
    indices = datasets.load(path)
    assert indices[1].dtype == np.int64
    # sorted order of the text: 'plain' < 'red, dark' < 'say "hi"'
    np.testing.assert_array_equal(np.array(sorted(labels))[indices[1]], arrays[1])


def test_string_labels_round_trip(tmp_path):
    species = ["setosa", "versicolor", "virginica"]
    table = rows(labels=species)
    path = write(tmp_path / "iris.csv", table, header=None)  # no header: data from line 1
    X, y, X_val, y_val = datasets.load(path, return_labels=True)
    assert y.dtype.kind == "U" and set(y) == set(y_val) == set(species)
    assert check_rows((X, y, X_val, y_val), table).tolist() == [r[-1] for r in table]
    _, yi, _, yi_val = datasets.load(path)
    np.testing.assert_array_equal(np.array(species)[yi], y)
    np.testing.assert_array_equal(np.array(species)[yi_val], y_val)


def test_return_labels_for_npz_and_mat(tmp_path):
    X, y, X_val, y_val = nc.datasets.make_gmm(n_train=30, n_val=10, seed=1)
    np.savez(tmp_path / "set.npz", X_train=X, y_train=y * 10 - 5, X_val=X_val,
             y_val=y_val * 10 - 5)
    got = datasets.load(tmp_path / "set.npz", return_labels=True)
    np.testing.assert_array_equal(got[1], y * 10 - 5)
    np.testing.assert_array_equal(datasets.load(tmp_path / "set.npz")[1], y)
    nc.datasets.save_mat(tmp_path / "set.mat", X, y, X_val, y_val)
    np.testing.assert_array_equal(datasets.load_mat(tmp_path / "set.mat",
                                                    return_labels=True)[1], y)


@pytest.mark.parametrize("text, fragments", [
    ("x1,x2,label\n1,2,a\n3,,b\n5,6,a\n", ("line 3", "missing value", "column 'x2', index 1")),
    ("1;2;a\n3;4;b\n5;six;a\n", ("line 3", "'six' is not a number", "column index 1")),
    ("x1,x2,label\r\n1,2,a\r\n3,4,b\r\n\"5\",\"6,5\",a\r\n",
     ("line 4", "'6,5' is not a number", "column 'x2', index 1")),
    ("x1,label,x2\n1,a,2\n3,b,\n", ("line 3", "missing value", "column 'x2', index 2")),
    ("1,2,0\n3,4,\n5,6,1\n", ("line 2", "label (last column) is missing")),
    ("1,2,0\n3,4,b\n5,6,1\n", ("line 2", "'b' is not a number", "labels are all numbers")),
], ids=["missing", "text", "quoted-crlf", "missing-last", "missing-label", "mixed-labels"])
def test_bad_cells_name_the_file_line_and_column(tmp_path, text, fragments):
    path = tmp_path / "bad.csv"
    path.write_bytes(text.encode())
    with pytest.raises(ValueError) as info:
        datasets.load_csv(path, target="label" if "x1,label" in text else None)
    message = str(info.value)
    assert "bad.csv" in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("fraction", [0.2, 0.3, 0.5])
def test_the_split_is_stratified(tmp_path, fraction):
    # unbalanced: 50, 13 and 3 rows
    labels = ["a"] * 50 + ["b"] * 13 + ["c"] * 3
    table = [[f"{i}.5", f"{-i}", label] for i, label in enumerate(labels)]
    path = write(tmp_path / "unbalanced.csv", table)
    X, y, X_val, y_val = datasets.load_csv(path, val_fraction=fraction, return_labels=True)
    assert len(X_val) == round(fraction * 66) and len(X) == 66 - len(X_val)
    assert set(y) == set(y_val) == {"a", "b", "c"}
    for label, count in (("a", 50), ("b", 13)):
        assert abs((y_val == label).sum() - fraction * count) < 1 + 1e-9
    again = datasets.load_csv(path, val_fraction=fraction, return_labels=True)
    np.testing.assert_array_equal(again[2], X_val)


@pytest.mark.parametrize("fraction", [0, 1, -0.5, 2, "x"])
def test_a_bad_val_fraction_is_refused(tmp_path, fraction):
    path = write(tmp_path / "set.csv", rows())
    with pytest.raises(ValueError, match="val_fraction .*between 0 and 1"):
        datasets.load_csv(path, val_fraction=fraction)


def test_read_features_drops_the_target_column_by_name_or_index(tmp_path):
    table = [[r[0], r[2], r[1]] for r in rows()]
    path = write(tmp_path / "middle.csv", table, delimiter="\t", header=["x1", "label", "x2"])
    expected = np.array([[float(r[0]), float(r[2])] for r in table])
    for target in ("label", 1, -2):
        np.testing.assert_array_equal(datasets.read_features(path, 2, target=target),
                                      expected)
    with pytest.raises(ValueError, match="expects 3 features and a target column"):
        datasets.read_features(path, 3, target="label")


# --- the command line --------------------------------------------------------------------


run = run_cli  # (status, stdout, stderr)


def test_train_then_predict_with_the_csv_options(tmp_path, capsys):
    X, y, X_val, y_val = nc.datasets.make_gmm(n_train=160, n_val=40, seed=2)
    X, y = np.concatenate([X, X_val]), np.concatenate([y, y_val])
    names = np.array(["ant", "bee", "cat", "dog", "eel"])
    header = ["x0", "x1", "label", "x2", "x3", "x4"]
    table = [[*map(str, r[:2].tolist()), names[c], *map(str, r[2:].tolist())]
             for r, c in zip(X, y)]
    data = write(tmp_path / "animals.csv", table, delimiter=";", header=header)
    status, out, err = run(["train", "--data", str(data), "--delimiter", ";", "--target",
                            "label", "--val-fraction", "0.3", "--epochs", "1", "--arch",
                            "mlp", "--layers", "8", "--verbose", "0", "--no-plots", "--out",
                            str(tmp_path), "--name", "run"], capsys)
    assert status == 0, err
    assert "60" in out  # 30 % of 200 rows held out
    model = tmp_path / "run" / "model.npz"
    status, out, err = run(["predict", str(model), str(data), "--target", "label"], capsys)
    assert status == 0, err
    assert len(out.strip().splitlines()) == 1 + len(table)
    status, _, err = run(["predict", str(model), str(data), "--target", "2", "--delimiter",
                          "semicolon"], capsys)
    assert status == 0, err


def test_csv_feature_names_follow_the_header_and_the_target(tmp_path):
    data = write(tmp_path / "h.csv", rows(), delimiter=";")
    assert datasets.csv_feature_names(data) == ["x1", "x2"]
    assert datasets.csv_feature_names(data, target="x1") == ["x2", "label"]
    assert datasets.csv_feature_names(data, target=0, delimiter="semicolon") == ["x2", "label"]
    assert datasets.csv_feature_names(write(tmp_path / "n.csv", rows(), header=None)) is None


def test_the_decision_boundary_axes_take_the_header_names(tmp_path, monkeypatch, capsys):
    """decision_boundary.png said "feature 1" and "feature 2" even when the CSV header
    named the columns."""
    from nncore import plots

    X, y, X_val, y_val = nc.datasets.make_gmm(n_train=160, n_val=40, seed=2)
    X, y = np.concatenate([X, X_val])[:, :2], np.concatenate([y, y_val])
    table = [[f"class {c}", *map(str, r.tolist())] for r, c in zip(X, y)]
    plt = plots.pyplot()
    seen = []
    monkeypatch.setattr(plt, "close", seen.append)
    for name, header, axes in [("named", ["kind", "petal length (cm)", "petal width"],
                                ("petal length (cm)", "petal width")),
                               ("bare", None, ("feature 1", "feature 2"))]:
        data = write(tmp_path / f"{name}.csv", table, header=header)
        seen.clear()
        status, _, err = run(["train", "--data", str(data), "--target", "0", "--epochs", "1",
                              "--arch", "mlp", "--layers", "4", "--verbose", "0", "--out",
                              str(tmp_path), "--name", name], capsys)
        assert status == 0, err
        ax = seen[-1].axes[0]  # decision_boundary.png, drawn last
        assert (ax.get_xlabel(), ax.get_ylabel()) == axes
    monkeypatch.undo()
    plt.close("all")


@pytest.mark.parametrize("argv, message", [
    (["--val-fraction", "1.5"], "--val-fraction: must be a number strictly between 0 and 1"),
    (["--val-fraction", "0"], "strictly between 0 and 1"),
    (["--val-fraction", "abc"], "must be a number"),
    (["--delimiter", "ab"], "delimiter must be one character"),
    (["--target", "nope"], "no column named 'nope'"),
    (["--target", "9"], "index 9 is out of range"),
], ids=["fraction-high", "fraction-zero", "fraction-text", "delimiter", "target-name",
        "target-index"])
def test_bad_csv_options_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    data = write(tmp_path / "set.csv", rows())
    status, out, err = run(["train", "--data", str(data), "--epochs", "1", "--verbose", "0",
                            "--out", str(tmp_path / "runs"), *argv], capsys)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


def test_csv_options_are_refused_for_other_data(capsys, tmp_path):
    status, _, err = run(["train", "--data", "peaks", "--val-fraction", "0.3", "--out",
                          str(tmp_path)], capsys)
    assert status == 2 and "--val-fraction applies to .csv data only" in err


def test_regression_target_in_the_middle(tmp_path):
    x = np.linspace(-1, 1, 40)
    table = [[f"{a}", f"{3 * a + 1}", f"{a * a}"] for a in x]
    path = write(tmp_path / "curve.csv", table, delimiter="\t", header=["x", "y", "x2"])
    X, y, X_val, y_val = datasets.load(path, task="regression", target="y", val_fraction=0.25)
    assert X.shape == (30, 2) and X_val.shape == (10, 2) and y.dtype == np.float64
    np.testing.assert_allclose(np.concatenate([y, y_val]),
                               3 * np.concatenate([X, X_val])[:, 0] + 1)
    with pytest.raises(ValueError, match=r"line 3: the target \(column 'x', index 0\) must "
                                         r"be a number, got 'abc'"):
        bad = tmp_path / "bad.csv"
        bad.write_text("x,y\n1,2\nabc,3\n4,5\n")
        datasets.load_csv(bad, task="regression", target=0)


def test_search_takes_the_csv_options(tmp_path, capsys):
    X, y, X_val, y_val = nc.datasets.make_gmm(n_train=80, n_val=20, seed=3)
    X, y = np.concatenate([X, X_val]), np.concatenate([y, y_val])
    table = [[str(c), *map(str, r.tolist())] for r, c in zip(X, y)]
    data = write(tmp_path / "set.csv", table, delimiter="|", header=None)
    grid = tmp_path / "grid.toml"
    grid.write_text('[grid]\nlr = [0.05]\n[fixed]\narchitecture = "mlp"\nlayers = [8]\n')
    status, out, err = run(["search", "--grid", str(grid), "--data", str(data), "--target",
                            "0", "--val-fraction", "0.25", "--epochs", "1", "--verbose", "0",
                            "--results", str(tmp_path / "r.jsonl")], capsys)
    assert status == 0, err
    assert "75 train / 25 validation" in out


def test_csv_target_name_is_the_header_cell_of_the_target(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,price,b\n1,2,3\n4,5,6\n")
    assert datasets.csv_target_name(path) == "b"
    assert datasets.csv_target_name(path, target="price") == "price"
    assert datasets.csv_target_name(path, target=1) == "price"
    assert datasets.csv_target_name(path, target=-3) == "a"
    assert datasets.csv_feature_names(path, target=1) == ["a", "b"]
    path.write_text("1,2,3\n4,5,6\n")
    assert datasets.csv_target_name(path) is None
