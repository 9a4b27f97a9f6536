"""Labels are data (any class labels, kept in model files) and standardisation that travels
with the model (Network.fit(standardize=True), nncore train's default)."""

import json

import numpy as np
import pytest

import nncore as nc
from nncore import cli


def blobs(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)


def trained(labels, epochs=20, **fit):
    X, index = blobs()
    y = np.asarray(labels)[index]
    net = nc.mlp(2, [16], len(labels), seed=0)
    net.fit(X, y, epochs=epochs, verbose=0, optimizer=nc.Adam(lr=0.01),
            validation_data=(X[:50], y[:50]), **fit)
    return net, X, y


@pytest.mark.parametrize("labels", [[3, 7, 100, 1000], ["cat", "dog", "eel", "fox"],
                                    [-5, 2, 9, 11], [0.0, 1.5e3, 2e3, 7e3]])
def test_any_labels_are_predicted_back(labels, tmp_path):
    net, X, y = trained(labels)
    np.testing.assert_array_equal(net.classes, np.sort(labels))
    assert np.mean(net.predict(X) == y) > 0.95
    assert net.evaluate(X, y)["accuracy"] > 0.95
    proba = net.predict_proba(X)
    np.testing.assert_array_equal(net.classes[proba.argmax(axis=1)], net.predict(X))
    loaded = nc.load(net.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(loaded.classes, net.classes)
    assert type(loaded.classes.tolist()[0]) is type(np.asarray(labels).tolist()[0])
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


def test_booleans_and_their_type_in_the_file(tmp_path):
    X, index = blobs()
    y = index >= 2
    net = nc.mlp(2, [8], 2, seed=0)
    net.fit(X, y, epochs=10, verbose=0, optimizer=nc.Adam(lr=0.01))
    assert net.predict(X).dtype == bool and np.mean(net.predict(X) == y) > 0.95
    loaded = nc.load(net.save(tmp_path / "m.npz"))
    assert loaded.classes.tolist() == [False, True]
    assert loaded.predict(X[:3]).dtype == bool


def test_indices_behave_as_before():
    net, X, y = trained([0, 1, 2, 3], epochs=2)
    np.testing.assert_array_equal(net.classes, np.arange(4))
    assert net.predict(X).dtype.kind == "i"
    assert net.state()["classes"]["values"] == [0, 1, 2, 3]
    fresh = nc.mlp(2, [4], 3)
    np.testing.assert_array_equal(fresh.classes, np.arange(3))
    assert fresh.state()["classes"] is None


def test_later_fits_and_evaluate_check_the_labels():
    net, X, y = trained([3, 7, 100, 1000], epochs=1)
    net.fit(X, y, epochs=1, verbose=0)  # the same labels again: fine
    with pytest.raises(ValueError, match="does not know, the first 5"):
        net.evaluate(X[:2], [3, 5])
    with pytest.raises(ValueError, match="does not know"):
        net.fit(X[:2], [3, 4], epochs=1, verbose=0)
    fresh = nc.mlp(2, [4], 4)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 4\)"):
        fresh.evaluate(X[:2], [3, 1000])


def test_the_number_of_labels_must_match():
    X, index = blobs()
    with pytest.raises(ValueError, match="y has 4 distinct labels but the network has 3 "
                                         "classes"):
        nc.mlp(2, [4], 3).fit(X, np.array([3, 7, 100, 1000])[index], epochs=1, verbose=0)


def test_continuous_targets_are_refused_with_a_suggestion():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    with pytest.raises(ValueError, match="looks continuous.*--task regression.*mse"):
        nc.mlp(2, [4], 3).fit(X, X[:, 0] * 3.3, epochs=1, verbose=0)
    many = rng.permutation(200) * 7 + 1  # 200 distinct integers
    with pytest.raises(ValueError, match="looks continuous: 200 distinct values"):
        nc.mlp(2, [4], 200).fit(X, many, epochs=1, verbose=0)


def test_the_continuous_rule_does_not_depend_on_where_labels_start():
    """A user trial: labels 1 .. 100 were refused but 0 .. 99 (class indices) trained a
    100-class model on 100 samples. Both are refused now, as the README's rule says."""
    X = np.random.default_rng(0).normal(size=(100, 2))
    for start in (0, 1):
        with pytest.raises(ValueError, match="y looks continuous: 100 distinct values"):
            nc.mlp(2, [4], 100).fit(X, np.arange(start, start + 100), epochs=1, verbose=0)
    nc.mlp(2, [4], 50).fit(X, np.arange(100) % 50, epochs=1, verbose=0)  # 50: allowed


def test_cli_names_the_label_column_that_looks_continuous(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(100, 2))
    for start in (0, 1):
        data = tmp_path / f"from{start}.csv"
        write_csv(data, X, np.arange(start, start + 100))
        assert cli.main(["train", "--data", str(data), "--epochs", "1", "--verbose", "0",
                         "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"nncore train: error: the label column of {data} (its last "
                              "column, training rows) looks continuous: 80 distinct values")
        assert len(err.splitlines()) == 1 and " y " not in err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_labels_of_one_class_in_one_line(tmp_path, capsys):
    """Every label 'cat': the banner said '2 classes', then fit said 'y has 1 distinct
    labels but the network has 2 classes (integer labels in range(2) ...)'."""
    data = tmp_path / "cats.csv"
    data.write_text("x0,x1,label\n" + "".join(f"{i},{i % 7},cat\n" for i in range(50)))
    assert cli.main(["train", "--data", str(data), "--epochs", "1", "--verbose", "0",
                     "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no banner
    assert captured.err == (f"nncore train: error: the labels of {data} have 1 class "
                            f"('cat'); a classifier needs at least 2 classes\n")
    assert not (tmp_path / "out").exists()


def test_unstorable_labels_are_refused():
    X, index = blobs(40)
    labels = np.empty(4, dtype=object)
    labels[:] = [(1,), (2,), (3,), (4,)]
    with pytest.raises(ValueError, match="cannot store"):
        nc.mlp(2, [4], 4).fit(X, labels[index], epochs=1, verbose=0)


def test_an_old_model_file_without_classes_or_scaling_loads(tmp_path):
    net = nc.mlp(2, [4], 3, seed=0)
    state = net.state()
    del state["classes"], state["scaling"]
    path = nc.modelfile.write_model(tmp_path / "old.npz", state)
    with np.load(path) as archive:
        header = json.loads(archive["header"].tobytes())
    assert "classes" not in header and "scaling" not in header
    loaded = nc.load(path)
    np.testing.assert_array_equal(loaded.classes, np.arange(3))
    assert not loaded.standardized
    X = np.random.default_rng(0).normal(size=(5, 2))
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


# --- standardisation ----------------------------------------------------------------------

def badly_scaled(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)
    raw = X.copy()
    raw[:, 0] = raw[:, 0] * 1000 + 50000
    return X, raw, y


def test_standardize_rescues_a_badly_scaled_feature(tmp_path):
    X, raw, y = badly_scaled()
    fit = dict(epochs=20, verbose=0, validation_data=(raw[500:], y[500:]))
    plain = nc.mlp(2, [16], 4, seed=0)
    plain.fit(raw[:500], y[:500], optimizer=nc.Adam(lr=0.01), **fit)
    scaled = nc.mlp(2, [16], 4, seed=0)
    history = scaled.fit(raw[:500], y[:500], optimizer=nc.Adam(lr=0.01), standardize=True,
                         **fit)
    reference = nc.mlp(2, [16], 4, seed=0)
    reference.fit(X[:500], y[:500], epochs=20, verbose=0, optimizer=nc.Adam(lr=0.01))
    good = reference.evaluate(X[500:], y[500:])["accuracy"]
    assert plain.evaluate(raw[500:], y[500:])["accuracy"] < good - 0.2
    assert scaled.evaluate(raw[500:], y[500:])["accuracy"] > good - 0.05
    assert history["val_accuracy"][-1] == pytest.approx(
        scaled.evaluate(raw[500:], y[500:])["accuracy"])
    assert scaled.input_mean[0] == pytest.approx(50000, abs=200)
    loaded = nc.load(scaled.save(tmp_path / "m.npz"))
    assert loaded.standardized
    np.testing.assert_array_equal(loaded.predict(raw), scaled.predict(raw))


def test_standardize_regression_targets(tmp_path):
    X, raw, _ = badly_scaled()
    y = 1e4 * np.sin(X[:, 1]) + 3e4
    net = nc.mlp(2, [16], 1, seed=0, loss="mse")
    net.fit(raw, y, epochs=40, verbose=0, optimizer=nc.Adam(lr=0.01), standardize=True)
    assert net.target_scale[0] > 1000
    scores = net.evaluate(raw, y)
    assert scores["r2"] > 0.95 and scores["rmse"] < 2500
    loaded = nc.load(net.save(tmp_path / "m.npz"))
    np.testing.assert_allclose(loaded.predict(raw), net.predict(raw))
    assert abs(float(loaded.predict(raw).mean()) - 3e4) < 2e3


def test_a_target_scaling_alone_travels_with_the_model(tmp_path):
    """A network may scale its targets without scaling its inputs (what the scikit-learn
    regressor gives its network); model files keep it, and fit(standardize=True) keeps
    it rather than refitting over trained weights."""
    X, _ = blobs(100)
    net = nc.mlp(2, [4], 2, seed=0, loss="mse")
    net.target_mean, net.target_scale = np.array([1000.0, -5.0]), np.array([10.0, 0.5])
    assert net.state()["scaling"] == {"target_mean": [1000.0, -5.0],
                                      "target_scale": [10.0, 0.5]}
    loaded = nc.load(net.save(tmp_path / "m.npz"))
    assert not loaded.standardized
    np.testing.assert_array_equal(loaded.target_mean, net.target_mean)
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    np.testing.assert_allclose(net.predict(X), net.logits(X) * [10.0, 0.5] + [1000.0, -5.0],
                               rtol=1e-6)
    net.fit(X, net.predict(X), epochs=1, verbose=0, standardize=True)
    assert not net.standardized and net.target_mean[0] == 1000.0


def test_a_half_scaling_in_a_state_is_refused():
    state = {**nc.mlp(2, [4], 1, loss="mse").state(),
             "scaling": {"input_mean": [0.0, 0.0], "target_mean": [3.0]}}
    with pytest.raises(ValueError, match="scaling lacks input_scale"):
        nc.Network.from_state(state)


def test_classes_can_be_set_as_a_model_file_stores_them():
    net = nc.mlp(2, [4], 3, seed=0)
    net.classes = np.array(["a", "b", "c"], dtype=object)  # pandas' strings
    assert net.classes.dtype.kind == "U"
    for labels, message in (([3, 1, 2], "sorted and distinct"), ([1, 1, 2], "sorted"),
                            ([1, 2], "3 classes, got 2 labels"),
                            (np.array(["2020", "2021", "2022"], dtype="datetime64[Y]"),
                             "cannot store")):
        with pytest.raises(ValueError, match=message):
            net.classes = labels
    net.classes = None
    np.testing.assert_array_equal(net.classes, [0, 1, 2])
    with pytest.raises(ValueError, match="for a classifier"):
        nc.mlp(2, [4], 3, loss="mse").classes = [0, 1, 2]


def test_standardize_defaults_off_and_constant_features_keep_scale_one():
    X, index = blobs(100)
    net = nc.mlp(3, [4], 4, seed=0)
    Xc = np.c_[X, np.full(len(X), 7.0)]
    net.fit(Xc, index, epochs=1, verbose=0)
    assert not net.standardized and net.state()["scaling"] is None
    net = nc.mlp(3, [4], 4, seed=0)
    net.fit(Xc, index, epochs=1, verbose=0, standardize=True)
    assert net.input_scale[2] == 1.0 and net.input_mean[2] == 7.0


# --- the command line ----------------------------------------------------------------------

def write_csv(path, X, y):
    header = ",".join([f"x{i}" for i in range(X.shape[1])] + ["label"])
    np.savetxt(path, np.c_[X, y], delimiter=",", header=header, comments="")


def test_cli_train_keeps_the_original_labels(tmp_path, capsys):
    X, _, index = badly_scaled(400)
    y = np.array([3, 7, 100, 1000])[index]
    data = tmp_path / "train.csv"
    write_csv(data, X, y)
    assert cli.main(["train", "--data", str(data), "--arch", "mlp", "--layers", "16",
                     "--epochs", "20", "--verbose", "0", "--no-plots", "--optimizer", "adam",
                     "--lr", "0.01", "--out", str(tmp_path), "--name", "run"]) == 0
    model = tmp_path / "run" / "model.npz"
    net = nc.load(model)
    np.testing.assert_array_equal(net.classes, [3, 7, 100, 1000])
    assert np.mean(net.predict(X) == y) > 0.9
    capsys.readouterr()
    assert cli.main(["predict", str(model), str(data), "--proba"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "proba_3,proba_7,proba_100,proba_1000"
    assert cli.main(["predict", str(model), str(data)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "class" and set(rows[1:]) <= {"3", "7", "100", "1000"}


def test_cli_standardizes_by_default(tmp_path, capsys):
    X, raw, y = badly_scaled(600)
    data = tmp_path / "train.csv"
    write_csv(data, raw, y)
    accuracy = {}
    for flags, name in (([], "scaled"), (["--no-standardize"], "raw")):
        assert cli.main(["train", "--data", str(data), "--arch", "mlp", "--layers", "16",
                         "--epochs", "20", "--verbose", "0", "--no-plots", "--optimizer",
                         "adam", "--lr", "0.01", "--out", str(tmp_path), "--name", name,
                         *flags]) == 0
        net = nc.load(tmp_path / name / "model.npz")
        assert net.standardized == (name == "scaled")
        accuracy[name] = np.mean(net.predict(raw) == y)
    assert accuracy["scaled"] > 0.95 and accuracy["raw"] < 0.8


def test_cli_trains_and_draws_text_labels(tmp_path):
    """Text labels through nncore train with its figures (the decision boundary colours by
    class index, its legend names the labels)."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 2))
    labels = np.where(X[:, 0] * X[:, 1] > 0, "same", "diff")
    data = tmp_path / "text.csv"
    with open(data, "w") as f:
        f.write("a;b;kind\n")
        f.writelines(f"{x0};{x1};{label}\n" for (x0, x1), label in zip(X, labels))
    assert cli.main(["train", "--data", str(data), "--arch", "mlp", "--layers", "8",
                     "--epochs", "2", "--verbose", "0", "--out", str(tmp_path),
                     "--name", "run"]) == 0
    assert (tmp_path / "run" / "decision_boundary.png").stat().st_size > 0
    net = nc.load(tmp_path / "run" / "model.npz")
    assert net.classes.tolist() == ["diff", "same"]
    assert set(net.predict(X).tolist()) <= {"diff", "same"}


def test_feature_names_are_checked_when_set_not_only_when_loaded(tmp_path):
    """A review: names of the wrong count were saved, and the file then failed to load."""
    net = nc.mlp(3, [4], 2)
    for bad in (["a", "b"], [1, 2, 3], "abc"):
        with pytest.raises(ValueError, match=r"^feature_names must be a list of 3 strings"):
            net.feature_names = bad
    net.feature_names = np.array(["a", "b", "c"])
    assert net.feature_names == ["a", "b", "c"]
    assert nc.load(net.save(tmp_path / "m.npz")).feature_names == ["a", "b", "c"]


def test_standardisation_happens_in_float64_before_the_cast():
    """A user trial: a float32 network standardised a timestamp feature (1.7e9 + [0, 100))
    after casting it to float32, where it moves in steps of 128: validation accuracy 0.60
    against 0.995 in float64. Inputs and targets are now standardised in float64 first."""
    rng = np.random.default_rng(0)
    X = np.c_[1.7e9 + rng.uniform(0, 100, 400), rng.standard_normal(400)]
    net = nc.mlp(2, [8], 2)
    net.fit(X, (X[:, 1] > 0).astype(int), epochs=1, verbose=0, standardize=True)
    plain = nc.Network.from_state({**net.state(), "scaling": None})
    by_hand = ((X - net.input_mean) / net.input_scale).astype(np.float32)
    np.testing.assert_array_equal(net.logits(X), plain.logits(by_hand))
    # targets far from 0: predicted in float64 in their units, not in steps of 64
    y = 1e9 + 100 * X[:, 1]
    reg = nc.mlp(2, [8], 1, loss="mse")
    reg.fit(X, y, epochs=5, verbose=0, standardize=True)
    predicted = reg.predict(X)
    assert predicted.dtype == np.float64 and np.unique(predicted).size > 300
    assert reg.evaluate(X, y)["r2"] > 0.5


def test_a_dataframe_is_read_by_the_networks_feature_names():
    """A second user trial: network_.predict(df[['c', 'b', 'a']]) of a network fitted on
    df[['a', 'b', 'c']] read the columns by position (43% agreement with the estimator),
    while nncore predict picks a CSV's by name. A Network fitted on a DataFrame now names
    its features, and a DataFrame is read by those names."""
    pandas = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pandas.DataFrame(rng.standard_normal((200, 3)), columns=["a", "b", "c"])
    y = (frame["a"] > 0).astype(int).to_numpy()
    net = nc.mlp(3, [8], 2)
    net.fit(frame, y, epochs=3, verbose=0, standardize=True)
    assert net.feature_names == ["a", "b", "c"]
    expected = net.predict_proba(frame.to_numpy())
    np.testing.assert_array_equal(net.predict_proba(frame[["c", "b", "a"]]), expected)
    np.testing.assert_array_equal(net.predict_proba(frame.assign(extra=1.0)), expected)
    with pytest.raises(ValueError, match=r"^X's columns must include the network's features "
                                         r"\['a', 'b', 'c'\]: missing \['c'\]"):
        net.predict(frame[["a", "b"]].assign(z=0.0))
    with pytest.raises(ValueError, match=r"named twice \['b'\]"):
        net.predict(pandas.concat([frame, frame[["b"]]], axis=1))
    np.testing.assert_array_equal(net.predict_proba(frame.to_numpy()), expected)  # by position
