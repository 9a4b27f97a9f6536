"""Tests of nncore.datasets: generators, bundled sets, loaders, their error messages.

The course files are read in place from ``shared/data/course`` beside the repository (never
copied into it); those tests are skipped when that folder is absent.
"""

import ast
import os
import pathlib
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import nncore
from nncore import datasets
from conftest import COURSE_DIR, needs_course_files

ROOT = Path(__file__).resolve().parents[1]

# name -> (generator, n_features, n_classes, default n_train, default n_val, course file)
SETS = {
    "peaks": (datasets.make_peaks, 2, 5, 25000, 6250, "PeaksData.mat"),
    "gmm": (datasets.make_gmm, 5, 5, 25000, 6250, "GMMData.mat"),
    "swissroll": (datasets.make_swissroll, 2, 2, 20000, 5000, "SwissRollData.mat"),
}

# Facts about the course files, checked below when they are present.
COURSE_CLASS_COUNTS = {
    "PeaksData.mat": ([4992, 4978, 4977, 5019, 5034], [1250, 1244, 1253, 1250, 1253]),
    "GMMData.mat": ([5013, 4989, 5015, 4982, 5001], [1246, 1257, 1258, 1243, 1246]),
    "SwissRollData.mat": ([10011, 9989], [2552, 2448]),
}


def check_dataset(arrays, n_features, n_classes, n_train=None, n_val=None):
    """Assert the common contract of every loader and generator."""
    assert len(arrays) == 4
    X_train, y_train, X_val, y_val = arrays
    for X, y, n in ((X_train, y_train, n_train), (X_val, y_val, n_val)):
        assert X.dtype == np.float64 and y.dtype == np.int64
        assert X.ndim == 2 and y.ndim == 1
        assert X.shape[1] == n_features
        assert X.shape[0] == y.shape[0] > 0
        if n is not None:
            assert X.shape[0] == n
        assert X.flags.c_contiguous
        assert np.isfinite(X).all()
        assert y.min() >= 0 and y.max() < n_classes


def assert_balanced(y, n_classes):
    counts = np.bincount(y, minlength=n_classes)
    assert len(counts) == n_classes
    assert counts.max() - counts.min() <= 1, counts


def raises_naming(path, *fragments, exc=ValueError):
    """pytest.raises that also checks the message names the file and each fragment."""

    class _Check:
        def __enter__(self):
            self._ctx = pytest.raises(exc)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc_info):
            suppressed = self._ctx.__exit__(*exc_info)
            message = str(self.info.value)
            assert Path(path).name in message, message
            for fragment in fragments:
                assert fragment in message, f"{fragment!r} not in {message!r}"
            return suppressed

    return _Check()


# ------------------------------------------------------------------------------------------
# The module's own imports
# ------------------------------------------------------------------------------------------


def test_module_imports_only_numpy_scipy_and_stdlib():
    # ... and nncore's validation module, which sits at the bottom beside it and imports
    # nothing of nncore itself
    tree = ast.parse(Path(datasets.__file__).read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            imported = [node.module] if node.module else [alias.name for alias in node.names]
            assert imported == ["_validation"], \
                f"datasets must not import other nncore modules, imports {imported}"
        elif isinstance(node, ast.ImportFrom):
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) <= {"numpy", "scipy"}, roots


def test_import_pulls_in_neither_matplotlib_nor_other_nncore_modules():
    code = (
        "import sys, nncore.datasets\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'matplotlib'"
        " or (m.startswith('nncore.') and m not in ('nncore.datasets', 'nncore._validation'))]\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ)
    package_parent = str(Path(nncore.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------
# Generators
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SETS)
def test_generator_default_sizes_match_the_course_sets(name):
    make, n_features, n_classes, n_train, n_val, _ = SETS[name]
    arrays = make()
    check_dataset(arrays, n_features, n_classes, n_train, n_val)
    assert_balanced(arrays[1], n_classes)
    assert_balanced(arrays[3], n_classes)


@pytest.mark.parametrize("name", SETS)
def test_generator_small_sizes_shapes_and_balance(name):
    make, n_features, n_classes, _, _, _ = SETS[name]
    arrays = make(n_train=103, n_val=27, seed=5)
    check_dataset(arrays, n_features, n_classes, 103, 27)
    assert_balanced(arrays[1], n_classes)
    assert_balanced(arrays[3], n_classes)


@pytest.mark.parametrize("name", SETS)
def test_generator_is_deterministic_by_seed(name):
    make = SETS[name][0]
    first, again, other = make(300, 100, seed=7), make(300, 100, seed=7), make(300, 100, seed=8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("name", SETS)
def test_generator_rejects_bad_arguments(name):
    make = SETS[name][0]
    with pytest.raises(ValueError, match="n_train"):
        make(n_train=0)
    with pytest.raises(ValueError, match="n_val"):
        make(n_val=-1)
    with pytest.raises(TypeError, match="n_train"):
        make(n_train=10.5)
    with pytest.raises(ValueError, match="label_noise"):
        make(n_train=10, n_val=10, label_noise=1.5)


@pytest.mark.parametrize("name", SETS)
def test_label_noise_changes_only_labels_and_keeps_counts(name):
    make, _, n_classes, _, _, _ = SETS[name]
    clean = make(2000, 500, seed=1, label_noise=0.0)
    noisy = make(2000, 500, seed=1, label_noise=0.1)
    np.testing.assert_array_equal(clean[0], noisy[0])
    np.testing.assert_array_equal(np.bincount(clean[1]), np.bincount(noisy[1]))
    changed = np.mean(clean[1] != noisy[1])
    expected = 0.1 * (n_classes - 1) / n_classes
    assert 0.6 * expected < changed < 1.4 * expected


def test_peaks_surface_values():
    # MATLAB: peaks(0, 0) = (3 - 1/3) exp(-1)
    assert datasets.peaks(0.0, 0.0) == pytest.approx((3 - 1 / 3) * np.exp(-1))
    # its minimum and maximum on [-3, 3]^2, which set the class levels of make_peaks
    assert datasets.peaks(0.2283, -1.6255) == pytest.approx(-6.5511, abs=1e-4)
    assert datasets.peaks(-0.0093, 1.5814) == pytest.approx(8.1062, abs=1e-4)
    grid = np.linspace(-3, 3, 301)
    z = datasets.peaks(*np.meshgrid(grid, grid))
    assert -6.5512 < z.min() and z.max() < 8.1063


def test_peaks_classes_are_bands_of_the_surface():
    X, y, X_val, y_val = datasets.make_peaks(2000, 500, seed=2, label_noise=0, position_noise=0)
    assert np.abs(X).max() <= 3.0
    z = datasets.peaks(X[:, 0], X[:, 1])
    means = [z[y == c].mean() for c in range(5)]
    assert means == sorted(means)
    for c in range(4):  # the bands do not overlap: every z of class c is below class c+1's
        assert z[y == c].max() < z[y == c + 1].min()


def test_swissroll_arms_interleave():
    X, y, _, _ = datasets.make_swissroll(4000, 100, seed=3, label_noise=0, position_noise=0)
    radius = np.hypot(X[:, 0], X[:, 1])
    assert radius.max() <= 5 * np.pi * 0.075 + 1e-12
    assert radius[y == 0].min() < 0.05 and radius[y == 1].min() > 0.2
    # Along a ray from the centre the arms alternate: check the positive x axis.
    on_ray = (np.abs(X[:, 1]) < 0.01) & (X[:, 0] > 0)
    order = np.argsort(radius[on_ray])
    ray_labels = y[on_ray][order]
    assert np.count_nonzero(np.diff(ray_labels)) >= 3


def test_gmm_classes_are_separable_without_noise():
    X, y, X_val, y_val = datasets.make_gmm(2500, 500, seed=0, label_noise=0)
    # nearest class mean is a weak classifier on a mixture; it must still beat chance easily
    means = np.stack([X[y == c].mean(axis=0) for c in range(5)])
    predicted = np.argmin(((X_val[:, None, :] - means) ** 2).sum(axis=2), axis=1)
    assert np.mean(predicted == y_val) > 0.35


# ------------------------------------------------------------------------------------------
# Bundled sets
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SETS)
def test_load_bundled_set(name):
    _, n_features, n_classes, n_train, n_val, _ = SETS[name]
    arrays = datasets.load(name)
    check_dataset(arrays, n_features, n_classes, n_train, n_val)
    assert_balanced(arrays[1], n_classes)
    assert_balanced(arrays[3], n_classes)


@pytest.mark.parametrize("spelling", ["PEAKS", "Peaks", "SwissRoll", "GMM"])
def test_load_bundled_name_is_case_insensitive(spelling):
    arrays = datasets.load(spelling)
    reference = datasets.load(spelling.lower())
    for a, b in zip(arrays, reference):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", SETS)
def test_bundled_files_match_their_generator(name):
    # Fails when a generator changed but the shipped files were not regenerated.
    generated = SETS[name][0]()
    shipped = datasets.load(name)
    for g, s in zip(generated, shipped):
        if g.dtype.kind == "f":
            np.testing.assert_allclose(s, g, rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_array_equal(s, g)


def test_main_regenerates_the_bundled_files(tmp_path, capsys):
    assert datasets.main([str(tmp_path)]) == 0
    assert "PeaksData.mat" in capsys.readouterr().out
    for name, filename in datasets.BUNDLED_FILES.items():
        written = datasets.load_mat(tmp_path / filename)
        for w, s in zip(written, datasets.load(name)):
            np.testing.assert_allclose(w, s, rtol=1e-12, atol=1e-12)


def test_load_reports_a_missing_bundled_file(monkeypatch, tmp_path):
    (tmp_path / "nncore" / "data").mkdir(parents=True)
    monkeypatch.setattr(datasets.importlib.resources, "files", lambda package: tmp_path / package)
    with raises_naming("GMMData.mat", "bundled data file is missing", exc=FileNotFoundError):
        datasets.load("gmm")


def test_load_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError) as info:
        datasets.load("mnist")
    for valid in ("'peaks'", "'gmm'", "'swissroll'", ".mat", ".npz", ".csv"):
        assert valid in str(info.value)
    with pytest.raises(ValueError, match="peaks"):
        datasets.load("some/file.txt")


def test_load_dispatches_on_suffix(tmp_path):
    arrays = datasets.make_swissroll(40, 10, seed=0)
    mat = datasets.save_mat(tmp_path / "set.MAT", *arrays)
    np.savez(tmp_path / "set.npz", X_train=arrays[0], y_train=arrays[1], X_val=arrays[2],
             y_val=arrays[3])
    rows = "".join(f"{i},{i % 3},{i % 2}\n" for i in range(10))
    (tmp_path / "set.csv").write_text("a,b,label\n" + rows)
    for got, want in zip(datasets.load(mat), arrays):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(datasets.load(str(tmp_path / "set.npz")), arrays):
        np.testing.assert_array_equal(got, want)
    check_dataset(datasets.load(tmp_path / "set.csv"), 2, 2, 8, 2)


# ------------------------------------------------------------------------------------------
# save_mat / load_mat
# ------------------------------------------------------------------------------------------


def test_save_mat_load_mat_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    X_train = rng.normal(size=(57, 3)) * 10.0 ** rng.integers(-300, 300, size=(57, 3))
    X_val = np.asfortranarray(rng.normal(size=(11, 3)))
    y_train, y_val = rng.integers(0, 4, size=57), rng.integers(0, 4, size=11)
    path = datasets.save_mat(tmp_path / "set.mat", X_train, y_train, X_val, y_val)
    loaded = datasets.load_mat(path)
    check_dataset(loaded, 3, 4, 57, 11)
    for got, want in zip(loaded, (X_train, y_train, X_val, y_val)):
        np.testing.assert_array_equal(got, want)


def test_save_mat_writes_the_course_layout(tmp_path):
    X_train, X_val = np.arange(6.0).reshape(3, 2), np.array([[7.0, 8.0]])
    path = datasets.save_mat(tmp_path / "set.mat", X_train, [0, 2, 1], X_val, [1], n_classes=4)
    raw = scipy.io.loadmat(path)
    np.testing.assert_array_equal(raw["Yt"], X_train.T)
    np.testing.assert_array_equal(raw["Yv"], X_val.T)
    np.testing.assert_array_equal(raw["Ct"], np.eye(4)[:, [0, 2, 1]])
    np.testing.assert_array_equal(raw["Cv"], np.eye(4)[:, [1]])


def test_save_mat_is_byte_deterministic(tmp_path):
    arrays = datasets.make_gmm(50, 20, seed=4)
    first = datasets.save_mat(tmp_path / "a.mat", *arrays).read_bytes()
    second = datasets.save_mat(tmp_path / "b.mat", *arrays).read_bytes()
    assert first == second


def test_save_mat_rejects_bad_labels(tmp_path):
    X = np.zeros((2, 1))
    with pytest.raises(ValueError, match="labels must lie in 0 .. 1"):
        datasets.save_mat(tmp_path / "x.mat", X, [0, 2], X, [0, 1], n_classes=2)
    with pytest.raises(ValueError, match="labels must lie"):
        datasets.save_mat(tmp_path / "x.mat", X, [0, -1], X, [0, 1])
    with pytest.raises(ValueError, match="integer"):
        datasets.save_mat(tmp_path / "x.mat", X, [0, 0.5], X, [0, 1])


def write_mat(path, **overrides):
    """A valid small course file (3 features, 4 classes), with some keys replaced or removed."""
    rng = np.random.default_rng(0)
    contents = {
        "Yt": rng.normal(size=(3, 8)),
        "Ct": np.eye(4)[:, [0, 1, 2, 3, 0, 1, 2, 3]],
        "Yv": rng.normal(size=(3, 4)),
        "Cv": np.eye(4)[:, [3, 2, 1, 0]],
    }
    for key, value in overrides.items():
        if value is None:
            del contents[key]
        else:
            contents[key] = value
    scipy.io.savemat(path, contents)
    return path


def test_load_mat_reads_a_valid_file(tmp_path):
    arrays = datasets.load_mat(write_mat(tmp_path / "ok.mat"))
    check_dataset(arrays, 3, 4, 8, 4)
    np.testing.assert_array_equal(arrays[1], [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(arrays[3], [3, 2, 1, 0])


def test_load_mat_accepts_single_precision_and_integer_matrices(tmp_path):
    path = write_mat(tmp_path / "f32.mat", Yt=np.ones((3, 8), np.float32),
                     Ct=np.eye(4, dtype=np.uint8)[:, [0, 1, 2, 3, 0, 1, 2, 3]])
    X_train, y_train, _, _ = datasets.load_mat(path)
    assert X_train.dtype == np.float64 and y_train.dtype == np.int64


@pytest.mark.parametrize("key", ["Yt", "Ct", "Yv", "Cv"])
def test_load_mat_missing_key(tmp_path, key):
    path = write_mat(tmp_path / f"no_{key}.mat", **{key: None})
    with raises_naming(path, "missing key", key):
        datasets.load_mat(path)


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        ({"Ct": np.eye(4)[:, [0, 1, 2, 3, 0, 1, 2]]}, ("size mismatch", "Yt", "Ct")),
        ({"Cv": np.eye(4)[:, [0, 1, 2]]}, ("size mismatch", "Yv", "Cv")),
        ({"Yv": np.zeros((2, 4))}, ("feature count mismatch", "Yt", "Yv")),
        ({"Cv": np.eye(5)[:, [0, 1, 2, 4]]}, ("class count mismatch", "Ct", "Cv")),
    ],
    ids=["train-samples", "val-samples", "features", "classes"],
)
def test_load_mat_size_mismatch(tmp_path, overrides, fragments):
    path = write_mat(tmp_path / "mismatch.mat", **overrides)
    with raises_naming(path, *fragments):
        datasets.load_mat(path)


def _bad_onehot(column):
    labels = np.eye(4)[:, [0, 1, 2, 3, 0, 1, 2, 3]]
    labels[:, 5] = column
    return labels


@pytest.mark.parametrize(
    "column",
    [[0, 1, 1, 0], [0, 0, 0, 0], [0, 2, 0, 0], [0.5, 0.5, 0, 0], [np.nan, 1, 0, 0], [-1, 1, 1, 0]],
    ids=["two-ones", "no-one", "a-two", "halves", "nan", "negative"],
)
def test_load_mat_labels_not_one_hot(tmp_path, column):
    path = write_mat(tmp_path / "soft.mat", Ct=_bad_onehot(column))
    with raises_naming(path, "Ct is not one-hot", "column 5"):
        datasets.load_mat(path)


def test_load_mat_validation_labels_not_one_hot(tmp_path):
    path = write_mat(tmp_path / "soft_val.mat", Cv=np.ones((4, 4)))
    with raises_naming(path, "Cv is not one-hot", "4 column(s)"):
        datasets.load_mat(path)


@pytest.mark.parametrize("key", ["Yt", "Yv"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_load_mat_non_finite_features(tmp_path, key, bad):
    features = np.zeros((3, 8 if key == "Yt" else 4))
    features[1, 2] = bad
    path = write_mat(tmp_path / "nonfinite.mat", **{key: features})
    with raises_naming(path, key, "NaN or infinite", "sample 2, feature 1"):
        datasets.load_mat(path)


@pytest.mark.parametrize(
    "overrides, split",
    [
        ({"Yt": np.zeros((3, 0)), "Ct": np.zeros((4, 0))}, "training"),
        ({"Yv": np.zeros((3, 0)), "Cv": np.zeros((4, 0))}, "validation"),
    ],
)
def test_load_mat_empty_set(tmp_path, overrides, split):
    path = write_mat(tmp_path / "empty.mat", **overrides)
    with raises_naming(path, f"the {split} set is empty"):
        datasets.load_mat(path)


def test_load_mat_non_numeric_entry(tmp_path):
    path = write_mat(tmp_path / "text.mat", Yt="not numbers")
    with raises_naming(path, "Yt must be a real numeric matrix"):
        datasets.load_mat(path)


def test_load_mat_not_a_mat_file(tmp_path):
    text = tmp_path / "notes.mat"
    text.write_text("these are lecture notes, not a MAT file\n" * 5)
    with raises_naming(text, "not a readable MAT file"):
        datasets.load_mat(text)
    empty = tmp_path / "empty_file.mat"
    empty.write_bytes(b"")
    with raises_naming(empty, "not a readable MAT file"):
        datasets.load_mat(empty)
    truncated = tmp_path / "truncated.mat"
    good = datasets.save_mat(tmp_path / "good.mat", *datasets.make_peaks(500, 100))
    truncated.write_bytes(good.read_bytes()[:1000])
    with raises_naming(truncated, "not a readable MAT file"):
        datasets.load_mat(truncated)


def test_load_mat_missing_file(tmp_path):
    path = tmp_path / "absent.mat"
    with raises_naming(path, "no such file", exc=FileNotFoundError):
        datasets.load_mat(path)
    with raises_naming(path, "no such file", exc=FileNotFoundError):
        datasets.load(path)


def test_load_mat_directory(tmp_path):
    folder = tmp_path / "folder.mat"
    folder.mkdir()
    with raises_naming(folder, "not a regular file"):
        datasets.load_mat(folder)


# ------------------------------------------------------------------------------------------
# load_npz
# ------------------------------------------------------------------------------------------


def write_npz(path, **overrides):
    rng = np.random.default_rng(1)
    contents = {
        "X_train": rng.normal(size=(6, 2)),
        "y_train": np.array([10, -5, 3, 10, 3, -5]),
        "X_val": rng.normal(size=(3, 2)),
        "y_val": np.array([42, 3, -5]),
    }
    for key, value in overrides.items():
        if value is None:
            del contents[key]
        else:
            contents[key] = value
    np.savez(path, **contents)
    return path


def test_load_npz_maps_arbitrary_integer_labels(tmp_path):
    arrays = datasets.load_npz(write_npz(tmp_path / "set.npz"))
    check_dataset(arrays, 2, 4, 6, 3)
    # sorted distinct labels of both splits: -5, 3, 10, 42
    np.testing.assert_array_equal(arrays[1], [2, 0, 1, 2, 1, 0])
    np.testing.assert_array_equal(arrays[3], [3, 1, 0])


def test_load_npz_accepts_integer_valued_floats(tmp_path):
    path = write_npz(tmp_path / "floats.npz", y_train=np.array([1.0, 2, 1, 2, 1, 2]),
                     y_val=np.array([2.0, 1, 1]))
    np.testing.assert_array_equal(datasets.load_npz(path)[3], [1, 0, 0])


@pytest.mark.parametrize(
    "bad", [np.array([0, 1.5, 1, 0, 1, 0]), np.array([0, np.nan, 1, 0, 1, 0])],
    ids=["fraction", "nan"],
)
def test_load_npz_non_integer_labels(tmp_path, bad):
    path = write_npz(tmp_path / "fractional.npz", y_train=bad)
    with raises_naming(path, "y_train", "integer"):
        datasets.load_npz(path)


def test_load_npz_string_labels(tmp_path):
    """Text labels are labels (see test_an_npz_may_hold_text_labels); strings in one split
    and integers in the other are refused, not compared as text."""
    path = write_npz(tmp_path / "strings.npz", y_val=np.array(["a", "b", "c"]))
    with raises_naming(path, "y_train and y_val", "labels of two kinds"):
        datasets.load_npz(path)


class _LeavesAMark:
    """Unpickling this object creates a file: proof that something was unpickled."""

    def __init__(self, mark):
        self.mark = mark

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.mark),))


def test_load_npz_refuses_object_arrays_without_unpickling(tmp_path):
    mark = tmp_path / "unpickled"
    labels = np.empty(6, dtype=object)
    labels[:] = [_LeavesAMark(str(mark))] * 6
    path = write_npz(tmp_path / "pickled.npz", y_train=labels)
    with raises_naming(path, "y_train", "object array", "refused"):
        datasets.load_npz(path)
    assert not mark.exists()
    # The test is meaningful: unpickling that array would have left the mark.
    pickle.loads(pickle.dumps(labels[0]))
    assert mark.exists()


@pytest.mark.parametrize("key", ["X_train", "y_train", "X_val", "y_val"])
def test_load_npz_missing_key(tmp_path, key):
    path = write_npz(tmp_path / "partial.npz", **{key: None})
    with raises_naming(path, "missing array", key):
        datasets.load_npz(path)


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        ({"X_val": np.zeros((3, 5))}, ("feature count mismatch", "X_train", "X_val")),
        ({"y_train": np.arange(5)}, ("size mismatch", "X_train", "y_train")),
        ({"y_val": np.zeros((3, 1), int)}, ("y_val must be 1-D",)),
        ({"X_train": np.zeros(6)}, ("X_train must be 2-D",)),
        ({"X_val": np.zeros((0, 2)), "y_val": np.zeros(0, int)}, ("X_val is empty",)),
        ({"X_train": np.full((6, 2), np.inf)}, ("X_train", "NaN or infinite")),
    ],
    ids=["features", "samples", "labels-2d", "features-1d", "empty", "inf"],
)
def test_load_npz_bad_arrays(tmp_path, overrides, fragments):
    path = write_npz(tmp_path / "bad.npz", **overrides)
    with raises_naming(path, *fragments):
        datasets.load_npz(path)


def test_load_npz_not_an_archive(tmp_path):
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with raises_naming(text, "not an .npz archive"):
        datasets.load_npz(text)
    single = tmp_path / "single.npz"
    with open(single, "wb") as handle:
        np.save(handle, np.zeros(3))
    with raises_naming(single, "single .npy array"):
        datasets.load_npz(single)
    with raises_naming(tmp_path / "absent.npz", "no such file", exc=FileNotFoundError):
        datasets.load_npz(tmp_path / "absent.npz")


# ------------------------------------------------------------------------------------------
# load_csv
# ------------------------------------------------------------------------------------------


def write_csv(path, n_rows=20, header="x1,x2,label"):
    lines = [header] if header else []
    lines += [f"{i}.5,{-i},{(7, 3, 11)[i % 3]}" for i in range(n_rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("header", ["x1,x2,label", None], ids=["header", "no-header"])
def test_load_csv_splits_all_rows(tmp_path, header):
    path = write_csv(tmp_path / "set.csv", header=header)
    X_train, y_train, X_val, y_val = arrays = datasets.load_csv(path)
    check_dataset(arrays, 2, 3, 16, 4)
    rows = np.concatenate([X_train, X_val])
    np.testing.assert_array_equal(np.sort(rows[:, 1]), -np.arange(20.0)[::-1])
    # labels 3, 7, 11 map to 0, 1, 2; row i has label (7, 3, 11)[i % 3]
    labels = np.concatenate([y_train, y_val])
    row_index = -rows[:, 1].astype(int)
    np.testing.assert_array_equal(labels, np.array([1, 0, 2])[row_index % 3])


def test_load_csv_split_is_seeded(tmp_path):
    path = write_csv(tmp_path / "set.csv", n_rows=50)
    first, again = datasets.load_csv(path, seed=3), datasets.load_csv(path, seed=3)
    other = datasets.load_csv(path, seed=4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], other[2])
    assert datasets.load_csv(path, val_fraction=0.5)[2].shape == (25, 2)


def test_load_csv_tolerates_spaces_blank_lines_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "spaced.csv"
    path.write_text("\n a, b, y\n\n 1.0, 2e-3, 1\n3, 4, 2\n\n5, 6, 1\n7, 8, 2\n  \n9, 10, 1\n")
    check_dataset(datasets.load_csv(path), 2, 2, 4, 1)
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbf1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,10,0\n")
    X_train, _, X_val, _ = datasets.load_csv(bom)
    assert len(X_train) + len(X_val) == 5  # the first row is data, not a header


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("1,2,0\n3,x,1\n5,6,0\n", ("line 2", "'x' is not a number")),
        ("1,2,0\n3,4\n5,6,0\n", ("line 2", "2 columns")),
        ("1,2,0\n3,4,0.5\n5,6,1\n", ("line 2", "label (last column) must be an integer", "'0.5'")),
        ("1,2,0\n3,nan,1\n5,6,1\n", ("line 2", "NaN or infinite")),
        ("1,2,0\n3,inf,1\n5,6,1\n", ("line 2", "NaN or infinite")),
        ("1,2,0\n3,4,nan\n5,6,1\n", ("line 2", "must be an integer")),
        ("1,2,x\n3,4,0\n5,6,1\n", ("line 1", "'x' is not a number")),
        ("1\n2\n3\n", ("at least one feature column",)),
        ("a,b,label\n1,2,0\n", ("1 data row(s)", "cannot be split")),
        ("a,b,label\n", ("0 data row(s)",)),
    ],
    ids=["text-cell", "ragged", "fractional-label", "nan", "inf", "nan-label", "typo-on-line-1",
         "one-column", "one-row", "header-only"],
)
def test_load_csv_errors(tmp_path, text, fragments):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with raises_naming(path, *fragments):
        datasets.load_csv(path)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_load_csv_rejects_bad_val_fraction(tmp_path, fraction):
    path = write_csv(tmp_path / "set.csv")
    with pytest.raises(ValueError, match="val_fraction"):
        datasets.load_csv(path, val_fraction=fraction)


def test_load_csv_missing_file(tmp_path):
    with raises_naming(tmp_path / "absent.csv", "no such file", exc=FileNotFoundError):
        datasets.load_csv(tmp_path / "absent.csv")


# ------------------------------------------------------------------------------------------
# The course files (read in place, never copied)
# ------------------------------------------------------------------------------------------


@needs_course_files
@pytest.mark.parametrize("name", SETS)
def test_course_file_loads(name):
    _, n_features, n_classes, n_train, n_val, filename = SETS[name]
    arrays = datasets.load_mat(COURSE_DIR / filename)
    check_dataset(arrays, n_features, n_classes, n_train, n_val)
    train_counts, val_counts = COURSE_CLASS_COUNTS[filename]
    np.testing.assert_array_equal(np.bincount(arrays[1]), train_counts)
    np.testing.assert_array_equal(np.bincount(arrays[3]), val_counts)
    for got, want in zip(datasets.load(str(COURSE_DIR / filename)), arrays):
        np.testing.assert_array_equal(got, want)


@needs_course_files
@pytest.mark.parametrize("name", SETS)
def test_course_file_values_are_the_stored_singles(name):
    filename = SETS[name][5]
    raw = scipy.io.loadmat(COURSE_DIR / filename)
    X_train, y_train, X_val, y_val = datasets.load_mat(COURSE_DIR / filename)
    np.testing.assert_array_equal(X_train, raw["Yt"].T.astype(np.float64))
    np.testing.assert_array_equal(y_val, raw["Cv"].argmax(axis=0))


@needs_course_files
@pytest.mark.parametrize("name", SETS)
def test_generated_set_resembles_the_course_set(name):
    course = datasets.load_mat(COURSE_DIR / SETS[name][5])
    ours = datasets.load(name)
    for c, o in zip(course, ours):
        assert c.shape == o.shape and c.dtype == o.dtype
    assert course[1].max() == ours[1].max()
    course_extent = np.abs(np.concatenate([course[0], course[2]])).max()
    our_extent = np.abs(np.concatenate([ours[0], ours[2]])).max()
    assert 0.8 < our_extent / course_extent < 1.25


# --- an .npz of X and y is split as a CSV is ------------------------------------------------

def _xy_archive(tmp_path, y, name="xy.npz"):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((len(y), 3))
    np.savez(tmp_path / name, X=X, y=y)
    return tmp_path / name, X


def test_an_npz_of_X_and_y_is_split_like_a_csv(tmp_path):
    """The trial's .npz holding X and y was refused ("missing array(s) X_train, y_train,
    X_val, y_val") while a CSV of the same samples is split automatically."""
    y = np.repeat([10, 20, 30], [40, 40, 20])
    path, X = _xy_archive(tmp_path, y)
    X_train, y_train, X_val, y_val = datasets.load(path)
    assert len(X_val) == 20 and len(X_train) == 80
    np.testing.assert_array_equal(np.bincount(y_val), [8, 8, 4])  # stratified, 20% each
    rows = {tuple(row) for row in X}
    assert {tuple(row) for row in np.vstack([X_train, X_val])} == rows
    _, labels, _, _ = datasets.load(path, return_labels=True, val_fraction=0.5, seed=1)
    assert set(labels) == {10, 20, 30} and len(labels) == 50
    again = datasets.load(path)
    for a, b in zip(again, (X_train, y_train, X_val, y_val)):
        np.testing.assert_array_equal(a, b)


def test_an_npz_of_X_and_y_for_regression_and_its_refusals(tmp_path):
    path, _ = _xy_archive(tmp_path, np.linspace(0, 1, 30).reshape(15, 2), "reg.npz")
    X_train, y_train, X_val, y_val = datasets.load(path, task="regression", val_fraction=0.2)
    assert y_train.shape == (12, 2) and y_val.shape == (3, 2)
    with pytest.raises(ValueError, match=r"cannot be split into non-empty training and "):
        datasets.load(_xy_archive(tmp_path, np.array([0]), "one.npz")[0])
    with pytest.raises(ValueError, match=r"size mismatch: X has 4 rows"):
        np.savez(tmp_path / "odd.npz", X=np.zeros((4, 2)), y=np.arange(3))
        datasets.load(tmp_path / "odd.npz")
    np.savez(tmp_path / "scalar.npz", X=np.float64(3.0), y=np.arange(3))
    with pytest.raises(ValueError, match=r"scalar\.npz"):  # it said "len() of unsized object"
        datasets.load(tmp_path / "scalar.npz")
    split = tmp_path / "split.npz"
    np.savez(split, X_train=np.zeros((4, 2)), y_train=np.arange(4) % 2,
             X_val=np.zeros((2, 2)), y_val=np.arange(2))
    with pytest.raises(ValueError, match=r"val_fraction applies to an archive of X and y; "
                                         r"this one is split already"):
        datasets.load(split, val_fraction=0.3)
    with pytest.raises(ValueError, match=r"missing array\(s\) y; expected X_train, y_train, "
                                         r"X_val, y_val, or X and y to split"):
        np.savez(tmp_path / "x.npz", X=np.zeros((4, 2)))
        datasets.load(tmp_path / "x.npz")


def test_an_npz_may_hold_text_labels(tmp_path):
    """A second user trial: CSV files take text labels, an .npz refused them ("y must hold
    integer class labels, got dtype <U1") though a string array needs no pickling."""
    y = np.array(["cat", "dog", "emu"])[np.arange(60) % 3]
    path, _ = _xy_archive(tmp_path, y)
    X_train, y_train, X_val, y_val = datasets.load(path)
    assert sorted(set(y_train.tolist())) == [0, 1, 2] and y_train.dtype == np.int64
    _, labels, _, val_labels = datasets.load(path, return_labels=True)
    assert set(labels.tolist()) == {"cat", "dog", "emu"} and val_labels.dtype.kind == "U"
    split = tmp_path / "split.npz"
    np.savez(split, X_train=np.zeros((4, 2)), y_train=np.array(["b", "a", "b", "a"]),
             X_val=np.zeros((2, 2)), y_val=np.array(["c", "a"]))
    _, y_train, _, y_val = datasets.load(split)
    assert y_train.tolist() == [1, 0, 1, 0] and y_val.tolist() == [2, 0]
