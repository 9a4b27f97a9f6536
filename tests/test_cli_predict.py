"""`nncore predict MODEL DATA [--out FILE] [--proba]`: one CSV row per sample, in the file's
order; bad input is one line on stderr and exit status 2, and leaves no output file."""

import csv
import io

import numpy as np
import pytest

import nncore as nc
from nncore import cli
from conftest import run_cli


run = run_cli  # (status, stdout, stderr)


def read_csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], np.array(rows[1:], dtype=np.float64)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A model trained by `nncore train` on a small CSV with a header, and the CSV."""
    folder = tmp_path_factory.mktemp("classifier")
    X, y, X_val, y_val = nc.datasets.make_gmm(n_train=240, n_val=60, seed=2)
    X, y = np.concatenate([X, X_val]), np.concatenate([y, y_val]) + 10  # labels 10..14
    data = folder / "train.csv"
    header = ",".join([f"x{i}" for i in range(X.shape[1])] + ["label"])
    np.savetxt(data, np.c_[X, y], delimiter=",", header=header, comments="")
    assert cli.main(["train", "--data", str(data), "--arch", "mlp", "--layers", "8",
                     "--epochs", "2", "--verbose", "0", "--no-plots", "--out", str(folder),
                     "--name", "run"]) == 0
    return folder / "run" / "model.npz", data, X


def test_round_trip_train_then_predict_a_csv_with_the_target(classifier, tmp_path, capsys):
    model, data, X = classifier
    out = tmp_path / "predictions.csv"
    status, stdout, err = run(["predict", str(model), str(data), "--out", str(out)], capsys)
    assert status == 0 and err == ""
    assert f"{len(X)} rows of classes (class) written to {out}" in stdout
    header, values = read_csv(out.read_text())
    assert header == ["class"]
    net = nc.load(model)
    np.testing.assert_array_equal(values[:, 0], net.predict(X))  # file order, the labels


def test_features_only_to_stdout_and_probabilities(classifier, tmp_path, capsys):
    model, _, X = classifier
    features = tmp_path / "features.csv"
    np.savetxt(features, X[:7], delimiter=",")  # no header, no target
    status, stdout, err = run(["predict", str(model), str(features)], capsys)
    assert status == 0 and err == ""
    header, values = read_csv(stdout)
    net = nc.load(model)
    assert header == ["class"]
    np.testing.assert_array_equal(values[:, 0], net.predict(X[:7]))

    status, stdout, _ = run(["predict", str(model), str(features), "--proba"], capsys)
    assert status == 0
    header, values = read_csv(stdout)
    assert header == [f"proba_{label}" for label in net.classes.tolist()]  # labels 10..14
    np.testing.assert_allclose(values, net.predict_proba(X[:7]), rtol=1e-6)
    np.testing.assert_allclose(values.sum(axis=1), 1, rtol=1e-5)


def test_an_npz_with_X(classifier, tmp_path, capsys):
    model, _, X = classifier
    path = tmp_path / "new.npz"
    np.savez(path, X=X[:4])
    status, stdout, _ = run(["predict", str(model), str(path)], capsys)
    assert status == 0
    np.testing.assert_array_equal(read_csv(stdout)[1][:, 0], nc.load(model).predict(X[:4]))


@pytest.mark.parametrize("n_targets, header", [
    (1, ["prediction"]), (2, ["prediction_0", "prediction_1"])])
def test_a_regression_model(n_targets, header, tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(40, 3))
    Y = np.c_[np.sin(X[:, 0]), X[:, 1] * X[:, 2]][:, :n_targets]
    net = nc.mlp(n_in=3, hidden=[6], n_outputs=n_targets, loss="mse", seed=0)
    net.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    model = net.save(tmp_path / "model.npz")
    data = tmp_path / "data.csv"
    np.savetxt(data, np.c_[X, Y[:, 0]] if n_targets == 1 else X, delimiter=",")
    status, stdout, err = run(["predict", str(model), str(data)], capsys)
    assert status == 0 and err == ""
    got_header, values = read_csv(stdout)
    assert got_header == header
    np.testing.assert_allclose(values, net.predict(X).reshape(len(X), -1), rtol=1e-6)

    status, stdout, err = run(["predict", str(model), str(data), "--proba",
                               "--out", str(tmp_path / "p.csv")], capsys)
    assert status == 2 and stdout == ""
    assert err.strip() == (f"nncore predict: error: --proba needs a classification model; "
                           f"{model} is a regression model")
    assert not (tmp_path / "p.csv").exists()


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """A model trained by `nncore train` on a CSV with the header age_years,income_k,
    segment (segment the label), and its features."""
    folder = tmp_path_factory.mktemp("named")
    rng = np.random.default_rng(3)
    X = np.c_[rng.uniform(20, 70, 200), rng.uniform(10, 100, 200)].round(2)
    segment = np.where(X[:, 1] > 50, "hi", "lo")
    data = folder / "train.csv"
    data.write_text("age_years,income_k,segment\n" + "".join(
        f"{a},{b},{s}\n" for (a, b), s in zip(X, segment)))
    assert cli.main(["train", "--data", str(data), "--arch", "mlp", "--layers", "8",
                     "--epochs", "2", "--verbose", "0", "--no-plots", "--out", str(folder),
                     "--name", "run"]) == 0
    return folder / "run" / "model.npz", X


def test_a_csv_header_picks_the_models_features_by_name(named, tmp_path, capsys):
    """A model trained on age_years,income_k given zip,age_years,income_k took zip and
    age_years for its features, exit 0: a silent wrong answer."""
    model, X = named
    net = nc.load(model)
    assert net.feature_names == ["age_years", "income_k"]  # kept in the model file
    new = tmp_path / "new.csv"
    new.write_text("zip,age_years,income_k\n" + "".join(
        f"{10000 + i},{a},{b}\n" for i, (a, b) in enumerate(X[:6])))
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("income_k,age_years\n" + "".join(f"{b},{a}\n" for a, b in X[:6]))
    headerless = tmp_path / "headerless.csv"
    headerless.write_text("".join(f"{a},{b}\n" for a, b in X[:6]))  # by position, as ever
    for path in (new, swapped, headerless):
        status, stdout, err = run(["predict", str(model), str(path)], capsys)
        assert status == 0 and err == "", (path, err)
        assert stdout.split() == ["class", *net.predict(X[:6]).tolist()], path

    renamed = tmp_path / "renamed.csv"
    renamed.write_text("zip,age_years,salary\n1,30,40\n")
    out = tmp_path / "p.csv"
    status, stdout, err = run(["predict", str(model), str(renamed), "--out", str(out)], capsys)
    assert status == 2 and stdout == "" and not out.exists()
    assert err.strip() == (f"nncore predict: error: {renamed}: the header lacks the model's "
                           f"feature column(s) 'income_k' (the model was trained on "
                           f"'age_years', 'income_k'; the file's other columns: 'zip', "
                           f"'salary')")


def test_a_model_file_without_feature_names_loads_and_reads_by_position(named, tmp_path,
                                                                         capsys):
    model, X = named
    state = nc.load(model).state()
    del state["feature_names"]  # as written before names were kept
    old = nc.modelfile.write_model(tmp_path / "old.npz", state)
    net = nc.load(old)
    assert net.feature_names is None
    path = tmp_path / "new.csv"
    path.write_text("b,a\n" + "".join(f"{a},{b}\n" for a, b in X[:3]))
    status, stdout, stderr = run(["predict", str(old), str(path)], capsys)
    assert status == 0 and stdout.split()[1:] == net.predict(X[:3]).tolist()
    # said, as scikit-learn says it (a second user trial: the header was ignored silently)
    assert stderr == (f"nncore predict: note: {old} has no feature names (it was not trained "
                      f"on a .csv with a header), so the columns of {path} are read by "
                      f"position, whatever its header says\n")
    np.savetxt(tmp_path / "plain.csv", X[:3], delimiter=",")
    assert run(["predict", str(old), str(tmp_path / "plain.csv")], capsys)[2] == ""


def bad_cases(tmp_path, model, X):
    missing = tmp_path / "missing.npz"
    wide = tmp_path / "wide.csv"
    np.savetxt(wide, np.c_[X[:3], X[:3]], delimiter=",")
    narrow = tmp_path / "narrow.csv"
    np.savetxt(narrow, X[:3, :-1], delimiter=",")
    text = tmp_path / "text.csv"
    text.write_text("1,2,3,4,5\n1,2,x,4,5\n")
    not_a_model = tmp_path / "not_a_model.npz"
    np.savez(not_a_model, X=X)
    n = X.shape[1]
    return [
        ([str(missing), str(wide)], f"{missing}: no such model file"),
        ([str(not_a_model), str(wide)], f"{str(not_a_model)!r}"),
        ([str(model), str(tmp_path / "none.csv")], "none.csv: no such file"),
        ([str(model), str(wide)], f"{wide}, line 1: {2 * n} columns, but the model expects "
                                  f"{n} features ({n} columns, or {n + 1} with the target "
                                  f"last)"),
        ([str(model), str(narrow)], f"{n - 1} columns, but the model expects {n} features"),
        ([str(model), str(text)], f"{text}, line 2: 'x' is not a number"),
        ([str(model), str(tmp_path)], f"{str(tmp_path)!r} is a directory, not a data file"),
        ([str(model), str(tmp_path / "data.txt")], "unknown kind of file"),
    ]


def test_bad_input_is_one_line_exit_2_and_no_file(classifier, tmp_path, capsys):
    model, _, X = classifier
    (tmp_path / "data.txt").write_text("1,2\n")
    out = tmp_path / "predictions.csv"
    for argv, message in bad_cases(tmp_path, model, X):
        status, stdout, err = run(["predict", *argv, "--out", str(out)], capsys)
        assert status == 2, argv
        lines = err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, (argv, err)
        assert lines[0].startswith("nncore predict: error: ")
        assert not out.exists() and stdout == ""
    status, _, err = run(["predict", str(model), str(tmp_path / "wide.csv"), "--out",
                          str(tmp_path)], capsys)
    assert status == 2 and "is a folder; give a file name" in err
    status, _, err = run(["predict", str(model)], capsys)
    assert status == 2 and "required: DATA" in err and len(err.strip().splitlines()) == 1


def test_read_features_of_each_kind_of_file(tmp_path):
    X, y, X_val, y_val = nc.datasets.make_gmm(n_train=30, n_val=10, seed=1)
    both = np.concatenate([X, X_val])
    np.savez(tmp_path / "split.npz", X_train=X, y_train=y, X_val=X_val, y_val=y_val)
    nc.datasets.save_mat(tmp_path / "split.mat", X, y, X_val, y_val)
    for name in ("split.npz", "split.mat"):
        got = nc.datasets.read_features(tmp_path / name, X.shape[1])
        np.testing.assert_allclose(got, both)
    with pytest.raises(ValueError, match="the features has 5 features but the model "
                                         "expects 4"):
        nc.datasets.read_features(tmp_path / "split.npz", 4)
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    with pytest.raises(ValueError, match="no data rows"):
        nc.datasets.read_features(empty, 2)


def test_a_closed_pipe_is_not_a_traceback(classifier, tmp_path):
    """``nncore predict MODEL DATA | head -1``: the reader leaves early, nncore stops
    quietly. The output (100,000 rows) is larger than a pipe's buffer, so the writer does
    meet the closed pipe."""
    import os
    import subprocess
    import sys

    model, _, X = classifier
    features = tmp_path / "many.csv"
    np.savetxt(features, np.repeat(X[:1], 100_000, axis=0), delimiter=",", fmt="%.3f")
    code = "from nncore.cli import main; import sys; sys.exit(main())"
    producer = subprocess.Popen([sys.executable, "-c", code, "predict", str(model),
                                 str(features)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert producer.stdout.readline().strip() == b"class"
    producer.stdout.close()  # as head does after its line
    _, err = producer.communicate(timeout=120)
    assert b"Traceback" not in err, err.decode()
    assert producer.returncode == 1
