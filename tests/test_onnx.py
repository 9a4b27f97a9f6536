"""ONNX export: the exported graph, run in onnxruntime, agrees with the network."""

import json
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import nncore  # noqa: E402
from nncore import activations  # noqa: E402
from nncore.cli import main  # noqa: E402

#: float32 networks: the exported graph's outputs agree with nncore's to this, relative and
#: absolute (np.testing.assert_allclose(rtol=RTOL, atol=ATOL)); the differences seen are a
#: few float32 ulps (about 3e-7)
RTOL = ATOL = 1e-5


def _run(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})[0]


def _metadata(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _features(n=300, n_in=3, seed=0, scale=3.0, shift=0.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, n_in)) * scale + shift).astype(np.float32)


def _network(arch, activation, n_outputs=4, loss="softmax_cross_entropy"):
    if arch == "mlp":
        return nncore.mlp(3, [16, 8], n_outputs=n_outputs, activation=activation, loss=loss)
    return nncore.resnet(3, 16, 2, n_outputs=n_outputs, hidden=12, activation=activation,
                         loss=loss)


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
@pytest.mark.parametrize("activation", activations.names())
def test_classifier_matches_predict_proba(tmp_path, arch, activation):
    net = _network(arch, activation)
    X = _features()
    path = nncore.export_onnx(net, tmp_path / "model.onnx")
    probabilities = _run(path, X)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, net.predict_proba(X), rtol=RTOL, atol=ATOL)
    metadata = _metadata(path)
    assert metadata["task"] == "classification"
    assert json.loads(metadata["activations"]) == [layer.activation for layer in net.layers]
    assert metadata["nncore_version"] == nncore.__version__
    assert json.loads(metadata["classes"]) == {"kind": "int", "values": [0, 1, 2, 3]}


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
@pytest.mark.parametrize("activation", activations.names())
def test_standardised_classifier_with_labels(tmp_path, arch, activation):
    # the standardisation is in the graph: the raw features go in
    X = _features(scale=5.0, shift=10.0)
    labels = np.array(["ant", "bee", "cat", "dog"])
    y = labels[2 * (X[:, 0] > 10) + (X[:, 1] > 10)]
    net = _network(arch, activation)
    net.fit(X, y, standardize=True, epochs=2, verbose=0)
    assert net.standardized
    path = nncore.export_onnx(net, tmp_path / "model.onnx")
    np.testing.assert_allclose(_run(path, X), net.predict_proba(X), rtol=RTOL, atol=ATOL)
    classes = json.loads(_metadata(path)["classes"])
    assert classes == {"kind": "str", "values": net.classes.tolist()}
    assert np.array_equal(np.array(classes["values"]), net.classes)
    # the labels from the metadata give predict's answer
    predicted = np.array(classes["values"])[np.argmax(_run(path, X), axis=1)]
    assert (predicted == net.predict(X)).mean() > 0.99


@pytest.mark.parametrize("activation", ["tanh", "gelu", "softplus"])
def test_integer_labels_round_trip(tmp_path, activation):
    X = _features()
    y = np.where(X[:, 0] > 0, 7, -3)
    net = nncore.mlp(3, [8], n_outputs=2, activation=activation)
    net.fit(X, y, epochs=1, verbose=0)
    path = nncore.export_onnx(net, tmp_path / "model.onnx")
    classes = json.loads(_metadata(path)["classes"])
    assert classes == {"kind": "int", "values": [-3, 7]}
    assert np.array_equal(np.array(classes["values"]), net.classes)


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
@pytest.mark.parametrize("activation", activations.names())
def test_regression_with_target_scaling(tmp_path, arch, activation):
    X = _features(scale=2.0, shift=-4.0)
    Y = np.stack([100 + 20 * np.sin(X[:, 0]), -5 + 0.1 * X[:, 1] * X[:, 2]], axis=1)
    net = _network(arch, activation, n_outputs=2, loss="mse")
    net.fit(X, Y.astype(np.float32), standardize=True, epochs=2, verbose=0)
    assert net.target_mean is not None
    path = nncore.export_onnx(net, tmp_path / "model.onnx")
    predictions = _run(path, X)
    np.testing.assert_allclose(predictions, net.predict(X), rtol=RTOL, atol=ATOL)
    metadata = _metadata(path)
    assert metadata["task"] == "regression" and "classes" not in metadata


def test_regression_without_scaling(tmp_path):
    net = _network("mlp", "tanh", n_outputs=1, loss="mse")
    X = _features()
    path = nncore.export_onnx(net, tmp_path / "model.onnx")
    np.testing.assert_allclose(_run(path, X), net.predict(X), rtol=RTOL, atol=ATOL)


def test_the_graph_is_valid_and_documented(tmp_path):
    from nncore import onnx_export

    net = _network("resnet", "gelu")
    path = nncore.export_onnx(net, tmp_path / "model.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == onnx_export.OPSET
    assert model.ir_version == onnx_export.IR_VERSION
    assert [i.name for i in model.graph.input] == ["X"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == 3


def test_export_refuses_what_is_no_network(tmp_path):
    with pytest.raises(TypeError, match="nncore Network"):
        nncore.export_onnx("model.npz", tmp_path / "model.onnx")


def test_cli_export(tmp_path, capsys):
    net = _network("mlp", "relu")
    net.save(tmp_path / "model.npz")
    out = tmp_path / "model.onnx"
    assert main(["export", str(tmp_path / "model.npz"), str(out)]) == 0
    assert out.exists()
    X = _features()
    np.testing.assert_allclose(_run(out, X), net.predict_proba(X), rtol=RTOL, atol=ATOL)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["export", "{tmp}/missing.npz", "{tmp}/m.onnx"], "no such model file"),
    (["export", "{tmp}", "{tmp}/m.onnx"], "directory"),
    (["export", "{tmp}/model.npz", "{tmp}"], "folder"),
    (["export", "{tmp}/not-a-model.npz", "{tmp}/m.onnx"], "error"),
    (["export", "{tmp}/model.npz"], "error"),
    # as nncore predict words it (it said "[Errno 2] No such file or directory: ...")
    (["export", "{tmp}/model.npz", "{tmp}/nodir/m.onnx"],
     "nncore export: error: cannot write '{tmp}/nodir/m.onnx': No such file or directory"),
])
def test_cli_export_bad_arguments_exit_2(tmp_path, capsys, argv, message):
    _network("mlp", "tanh").save(tmp_path / "model.npz")
    (tmp_path / "not-a-model.npz").write_bytes(b"not a zip file")
    argv = [a.format(tmp=tmp_path) for a in argv]
    message = message.format(tmp=tmp_path)
    with pytest.raises(SystemExit) if len(argv) < 3 else _no_exit() as raised:
        code = main(argv)
    code = raised.value.code if len(argv) < 3 else code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_without_onnx_the_error_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "nncore\[onnx\]"'):
        nncore.export_onnx(_network("mlp", "tanh"), tmp_path / "model.onnx")
    net = _network("mlp", "tanh")
    net.save(tmp_path / "model.npz")
    assert main(["export", str(tmp_path / "model.npz"), str(tmp_path / "m.onnx")]) == 2
    assert not (tmp_path / "m.onnx").exists()


def test_the_readme_serving_example(tmp_path):
    X = _features(scale=5.0, shift=10.0)
    y = np.array(["no", "yes"])[(X[:, 0] > 10).astype(int)]
    net = nncore.mlp(3, [8], n_outputs=2)
    net.fit(X, y, standardize=True, epochs=2, verbose=0)
    nncore.export_onnx(net, tmp_path / "model.onnx")
    X_raw = X.astype(np.float64)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {"X": X_raw.astype(np.float32)})[0]
    classes = json.loads(session.get_modelmeta().custom_metadata_map["classes"])["values"]
    labels = np.array(classes)[probabilities.argmax(axis=1)]
    assert (labels == net.predict(X)).mean() > 0.99


@pytest.mark.parametrize("activation", activations.names())
def test_float64_exports_warn_when_onnxruntime_cannot_load_them(tmp_path, activation):
    """A float64 network with GELU, ELU or softplus exported silently to a file that
    onnxruntime refuses (no float64 Erf/Elu/Softplus); export now warns and names it."""
    net = nncore.mlp(3, [4], n_outputs=2, activation=activation, dtype="float64")
    path = tmp_path / "model.onnx"
    if activation in ("elu", "gelu", "softplus"):
        with pytest.warns(UserWarning, match=f"a float64 network with {activation} exports "
                                             "to a graph onnxruntime cannot load.*float32"):
            nncore.export_onnx(net, path)
        with pytest.raises(Exception):  # what the warning says: onnxruntime refuses it
            _run(path, _features().astype(np.float64))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            nncore.export_onnx(net, path)
        _run(path, _features().astype(np.float64))
    with warnings.catch_warnings():  # float32: no warning, whatever the activation
        warnings.simplefilter("error")
        nncore.export_onnx(nncore.mlp(3, [4], n_outputs=2, activation=activation), path)


def test_cli_export_warns_in_one_line(tmp_path, capsys):
    net = nncore.mlp(3, [4], n_outputs=2, activation="gelu", dtype="float64")
    model = net.save(tmp_path / "model.npz")
    assert main(["export", str(model), str(tmp_path / "model.onnx")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("nncore export: warning: a float64 network with gelu exports")
    assert len(err.splitlines()) == 1
