"""Data sets: loaders for files on disk (class labels or real-valued targets) and seeded
generators of toy classification sets.

This module knows nothing of networks. It imports only NumPy, SciPy and the standard library,
so it can be used (and tested) without the compiled kernels.

Every function returns the same four arrays::

    X_train : (n_train, n_features) float64, C-contiguous
    y_train : (n_train,) int64, class indices 0 .. k-1
    X_val   : (n_val, n_features) float64, C-contiguous
    y_val   : (n_val,) int64, class indices 0 .. k-1

The loaders take ``task="regression"`` for files whose targets are real values: then
``y_train`` and ``y_val`` are float64, ``(n,)`` for one target or ``(n, k)`` for ``k``,
taken as they are (no integer check, no renumbering).

File formats
------------
``.mat``
    The course format: ``Yt`` (features x n_train), ``Ct`` (classes x n_train, one-hot;
    for regression, targets x n_train, real), ``Yv`` and ``Cv`` the same for validation.
    Read by :func:`load_mat`, written by :func:`save_mat`.
``.npz``
    Arrays ``X_train, y_train, X_val, y_val``, or ``X, y`` split as a CSV is; labels may be
    any integers or strings (for regression, real targets, ``(n,)`` or ``(n, k)``). Read by
    :func:`load_npz` (never unpickles anything).
``.csv``
    Numeric feature columns and one target column (the last, or ``target=`` by index or
    header name): an integer or text label (for regression, the real target); any common
    delimiter (sniffed by ``csv.Sniffer``, or ``delimiter=``); an optional header line;
    quoting and CRLF as the standard ``csv`` module reads them. Read by :func:`load_csv`,
    which splits the rows into train and validation (stratified for classification).

Every classification loader takes ``return_labels=True`` to return the original labels
(the file's integers, or a CSV's text labels as a ``str`` array) instead of 0 .. k-1.

:func:`read_features` reads the samples of any of them to predict on (``nncore predict``):
a ``.csv`` of features only, or with the target as its last column (or the ``target=``
column); an ``.npz``'s ``X``.

Bundled sets
------------
``load("peaks")``, ``load("gmm")`` and ``load("swissroll")`` read the files in the package's
``data`` folder, which ``python -m nncore.datasets OUT_DIR`` regenerates from
:func:`make_peaks`, :func:`make_gmm` and :func:`make_swissroll` with their default arguments.
"""

import argparse
import contextlib
import csv
import importlib.resources
import io
import math
import operator
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import scipy.io

from . import _validation as v

__all__ = [
    "BUNDLED_FILES",
    "classification_only",
    "csv_feature_names",
    "csv_target_name",
    "load",
    "load_csv",
    "load_mat",
    "load_npz",
    "make_gmm",
    "make_peaks",
    "make_swissroll",
    "peaks",
    "read_features",
    "save_mat",
]

#: Names accepted by :func:`load` (lower case) and the bundled file each one reads.
BUNDLED_FILES = {
    "peaks": "PeaksData.mat",
    "gmm": "GMMData.mat",
    "swissroll": "SwissRollData.mat",
}

#: The tasks whose targets the loaders read: the keys of ``nncore.losses.TASKS`` (this module
#: imports no registry; a test holds the two equal).
TASKS = ("classification", "regression")

_MAT_KEYS = ("Yt", "Ct", "Yv", "Cv")
# appended to a classification loader's complaint about labels that are real numbers
_REGRESSION_HINT = "; real-valued targets need --task regression (task='regression' in Python)"
_NPZ_KEYS = ("X_train", "y_train", "X_val", "y_val")


@contextlib.contextmanager
def classification_only(who):
    """Inside this context a loader's complaint about labels that are real numbers says
    that ``who`` (a command or function that has no regression, as ``"nncore search"``)
    does classification only, instead of pointing to a ``--task regression`` it lacks."""
    try:
        yield
    except ValueError as error:
        message = str(error)
        if not message.endswith(_REGRESSION_HINT):
            raise
        raise ValueError(f"{message[:-len(_REGRESSION_HINT)]}; {who} does classification "
                         f"only (class labels): train real-valued targets with nncore train "
                         f"--task regression") from None


_LOADER_SUFFIXES = (".mat", ".npz", ".csv")


def file_kind(path):
    """The kind of data file ``path`` names, by its suffix in any case: ".csv", ".npz" or
    ".mat", else None (a bundled set's name, another file)."""
    suffix = Path(os.fspath(path)).suffix.lower()
    return suffix if suffix in _LOADER_SUFFIXES else None

# The 116-byte text at the start of a MAT 5 file. SciPy writes the current time there; a fixed
# text makes save_mat's output depend only on the data, so regenerated files are byte-identical.
_MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by nncore.datasets.save_mat"
_MAT_HEADER_TEXT_BYTES = 116

# Level-set thresholds of the peaks surface: four levels evenly spaced between its minimum
# (-6.5511 at (0.228, -1.626)) and its maximum (8.1062 at (-0.009, 1.581)) on [-3, 3]^2,
# cutting it into five bands.
_PEAKS_LEVELS = np.array([-3.6197, -0.6882, 2.2433, 5.1747])
_PEAKS_HALF_WIDTH = 3.0
# Noise of the generated sets, tuned so that a 25-nearest-neighbour classifier trained on the
# training split scores about as well on the validation split as it does on the course sets
# (93.0 % peaks, 97.4 % gmm and swissroll).
_PEAKS_POSITION_NOISE = 0.045
_PEAKS_LABEL_NOISE = 0.03
_GMM_N_FEATURES = 5
_GMM_N_CLASSES = 5
_GMM_COMPONENTS_PER_CLASS = 5
_GMM_CENTER_SPREAD = 0.7
_GMM_AXIS_STD_RANGE = (0.08, 0.25)
_GMM_LABEL_NOISE = 0.015
_SWISSROLL_GROWTH = 0.075  # radius gained per radian along an arm
_SWISSROLL_TURNS = 2.0
_SWISSROLL_POSITION_NOISE = 0.05
_SWISSROLL_LABEL_NOISE = 0.02


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


def load(name_or_path, task="classification", *, return_labels=False, delimiter=None,
         target=None, val_fraction=None, seed=0):
    """Load a bundled data set by name, or a data file by path.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        ``"peaks"``, ``"gmm"`` or ``"swissroll"`` (any case) for a set shipped with the
        package, or the path of a ``.mat``, ``.npz`` or ``.csv`` file, which goes to
        :func:`load_mat`, :func:`load_npz` or :func:`load_csv` (with its default split).
    task : {"classification", "regression"}, default "classification"
        What the targets are (a key of ``nncore.losses.TASKS``): integer class labels, or
        real values. The bundled sets are classification sets.
    return_labels : bool, default False
        Return the ORIGINAL class labels instead of the indices 0 .. k-1: the integers (or,
        from a ``.csv``, the text labels as a ``str`` array) found in the file. For a
        ``.mat`` file (one-hot labels) and the bundled sets the originals are the indices.
        No effect for regression.
    delimiter, target, val_fraction, seed
        For a ``.csv`` file, passed to :func:`load_csv` (``val_fraction`` None: 0.2);
        ``delimiter``, ``target`` and ``val_fraction`` are refused for other files, but
        ``val_fraction`` and ``seed`` split an ``.npz`` of ``X`` and ``y`` as a CSV.

    Returns
    -------
    X_train : ndarray of float64, shape (n_train, n_features)
    y_train : ndarray of int64, shape (n_train,)
        For regression: float64, ``(n_train,)`` or ``(n_train, k)``.
    X_val : ndarray of float64, shape (n_val, n_features)
    y_val : ndarray of int64, shape (n_val,)
        For regression: float64, ``(n_val,)`` or ``(n_val, k)``.

    Raises
    ------
    ValueError
        If the name is not a bundled set and the path has none of the known suffixes, if
        the file is malformed, or if a bundled set (or a ``.mat`` file of one-hot class
        labels) is asked for with ``task="regression"``.
    FileNotFoundError
        If the path does not exist.

    Examples
    --------
    >>> X_train, y_train, X_val, y_val = load("peaks")
    >>> X_train.shape, int(y_train.max()) + 1
    ((25000, 2), 5)
    """
    task = _task(task)
    if isinstance(name_or_path, str) and name_or_path.lower() in BUNDLED_FILES:
        if task == "regression":
            raise ValueError(
                f"{name_or_path!r} is a bundled classification set (class labels); regression "
                f"needs a .mat, .npz or .csv file with real-valued targets"
            )
        filename = BUNDLED_FILES[name_or_path.lower()]
        resource = importlib.resources.files("nncore") / "data" / filename
        if not resource.is_file():
            raise FileNotFoundError(
                f"{filename}: the bundled data file is missing from the installed nncore "
                f"package (looked in {resource}); reinstall nncore, or regenerate it with "
                f"'python -m nncore.datasets OUT_DIR'"
            )
        _refuse_csv_options(name_or_path, delimiter=delimiter, target=target,
                            val_fraction=val_fraction)
        with importlib.resources.as_file(resource) as path:
            return load_mat(path)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"load() takes a data set name or a path, not {type(name_or_path).__name__}"
        )
    path = Path(name_or_path)
    if path.is_dir():
        raise ValueError(f"{os.fspath(path)!r} is a directory, not a data file: give a "
                         f"{', '.join(_LOADER_SUFFIXES)} file or one of the bundled names "
                         f"{', '.join(repr(n) for n in BUNDLED_FILES)}")
    suffix = file_kind(path)
    if suffix == ".csv":
        return load_csv(path, 0.2 if val_fraction is None else val_fraction, seed, task=task,
                        delimiter=delimiter, target=target, return_labels=return_labels)
    if suffix == ".mat":
        _refuse_csv_options(path, delimiter=delimiter, target=target,
                            val_fraction=val_fraction)
        return load_mat(path, task=task)
    if suffix == ".npz":
        _refuse_csv_options(path, delimiter=delimiter, target=target)
        return load_npz(path, task=task, return_labels=return_labels,
                        val_fraction=val_fraction, seed=seed)
    raise ValueError(
        f"unknown data set {os.fspath(name_or_path)!r}: expected one of the bundled names "
        f"{', '.join(repr(n) for n in BUNDLED_FILES)} or a path ending in "
        f"{', '.join(_LOADER_SUFFIXES)}"
    )


def load_mat(path, task="classification", *, return_labels=False):
    """Read a data set in the course ``.mat`` format.

    The file holds ``Yt`` (features x n_train), ``Ct`` (classes x n_train, one-hot columns),
    and ``Yv``, ``Cv`` the same for the validation set. For ``task="regression"``, ``Ct``
    and ``Cv`` hold the targets instead: real matrices, targets x samples (a file whose
    ``Ct`` and ``Cv`` are one-hot columns of two or more classes is a classification set,
    refused for regression).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.mat`` file (MATLAB 5 format, as written by ``scipy.io.savemat`` or MATLAB's
        ``save -v7``).
    task : {"classification", "regression"}, default "classification"
    return_labels : bool, default False
        Accepted for symmetry with the other loaders: a one-hot file's original labels
        are the indices, so the result is the same.

    Returns
    -------
    X_train : ndarray of float64, shape (n_train, n_features), C-contiguous
    y_train : ndarray of int64, shape (n_train,)
        Index of the 1 in each column of ``Ct``. For regression: ``Ct`` transposed, float64,
        ``(n_train,)`` for one target (one row), ``(n_train, k)`` for ``k``.
    X_val : ndarray of float64, shape (n_val, n_features), C-contiguous
    y_val : ndarray of int64, shape (n_val,)
        The same from ``Cv``.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the file is not a MAT file, lacks one of the four keys, holds non-numeric or
        non-2-D arrays, has an empty set, sizes that do not agree, NaN or infinite features,
        label columns that are not one-hot, or (regression) NaN or infinite targets or
        one-hot class labels. The message names the file and the problem.

    See Also
    --------
    save_mat : writes this format; ``load_mat(save_mat(path, ...))`` returns the same arrays.
    """
    task = _task(task)
    path = _existing_file(path)
    try:
        contents = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises many types for a damaged or foreign file
        raise ValueError(f"{path}: not a readable MAT file ({type(exc).__name__}: {exc})") from exc

    missing = [key for key in _MAT_KEYS if key not in contents]
    if missing:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise ValueError(
            f"{path}: missing key(s) {', '.join(missing)}; a course .mat file holds "
            f"{', '.join(_MAT_KEYS)} (found: {', '.join(found) or 'none'})"
        )
    arrays = {}
    for key in _MAT_KEYS:
        value = contents[key]
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise ValueError(f"{path}: {key} must be a real numeric matrix, got {kind}")
        if value.ndim != 2:
            raise ValueError(f"{path}: {key} must be a 2-D matrix, got shape {value.shape}")
        arrays[key] = value
    Yt, Ct, Yv, Cv = (arrays[key] for key in _MAT_KEYS)

    for features, labels, split in ((Yt, Ct, "training"), (Yv, Cv, "validation")):
        if features.shape[1] == 0:
            raise ValueError(f"{path}: the {split} set is empty (0 samples)")
    if Yt.shape[0] == 0:
        raise ValueError(f"{path}: the samples have no features (Yt has 0 rows)")
    if Yt.shape[1] != Ct.shape[1]:
        raise ValueError(
            f"{path}: size mismatch: Yt has {Yt.shape[1]} columns (samples) "
            f"but Ct has {Ct.shape[1]}"
        )
    if Yv.shape[1] != Cv.shape[1]:
        raise ValueError(
            f"{path}: size mismatch: Yv has {Yv.shape[1]} columns (samples) "
            f"but Cv has {Cv.shape[1]}"
        )
    if Yt.shape[0] != Yv.shape[0]:
        raise ValueError(
            f"{path}: feature count mismatch: Yt has {Yt.shape[0]} rows (features) "
            f"but Yv has {Yv.shape[0]}"
        )
    if Ct.shape[0] != Cv.shape[0]:
        what, rows = ("class", "classes") if task == "classification" else ("target", "targets")
        raise ValueError(
            f"{path}: {what} count mismatch: Ct has {Ct.shape[0]} rows ({rows}) "
            f"but Cv has {Cv.shape[0]}"
        )
    X_train = _feature_matrix(Yt.T, path, "Yt")  # the file's columns are the samples
    X_val = _feature_matrix(Yv.T, path, "Yv")
    not_one_hot = {key: np.flatnonzero(
        ~(((labels == 0) | (labels == 1)).all(axis=0) & (labels.sum(axis=0) == 1)))
        for key, labels in (("Ct", Ct), ("Cv", Cv))}
    if task == "regression":
        if Ct.shape[0] >= 2 and not any(bad.size for bad in not_one_hot.values()):
            raise ValueError(
                f"{path} is a classification set (Ct and Cv hold one-hot class labels, "
                f"{Ct.shape[0]} classes); regression needs real-valued targets in Ct and Cv"
            )
        return (X_train, _real_targets(Ct.T, path, "Ct", len(X_train)),
                X_val, _real_targets(Cv.T, path, "Cv", len(X_val)))
    for key, labels in (("Ct", Ct), ("Cv", Cv)):
        bad_columns = not_one_hot[key]
        if bad_columns.size:
            first = bad_columns[0]
            raise ValueError(
                f"{path}: {key} is not one-hot: {bad_columns.size} column(s) are not exactly "
                f"one 1 with zeros elsewhere, the first is column {first}: "
                f"{labels[:, first].tolist()}"
                + (_REGRESSION_HINT if ((labels != 0) & (labels != 1)).any() else "")
            )

    return (
        X_train,
        Ct.argmax(axis=0).astype(np.int64),
        X_val,
        Cv.argmax(axis=0).astype(np.int64),
    )


def load_npz(path, task="classification", *, return_labels=False, val_fraction=None,
             seed=0):
    """Read a data set from a NumPy ``.npz`` archive.

    Parameters
    ----------
    path : str or os.PathLike
        An archive (``numpy.savez`` or ``numpy.savez_compressed``) holding ``X_train``
        (n_train, n_features), ``y_train`` (n_train,), ``X_val`` (n_val, n_features) and
        ``y_val`` (n_val,); or only ``X`` and ``y``, which are split into training and
        validation sets as :func:`load_csv` splits a file's rows. The labels may be any
        integers (integer-valued floats too) or strings (a NumPy string array, which needs
        no pickling); they are mapped to 0 .. k-1 in sorted order of the values found in
        both splits together. For ``task="regression"``, the ``y``
        arrays are real targets, ``(n,)`` or ``(n, k)``, taken as they are.
    task : {"classification", "regression"}, default "classification"
    return_labels : bool, default False
        Return the original labels (int64, or str) instead of the indices 0 .. k-1.
    val_fraction, seed
        For an archive of ``X`` and ``y``: as for :func:`load_csv` (``val_fraction`` None:
        0.2); ``val_fraction`` is refused for an archive that is split already.

    Returns
    -------
    X_train : ndarray of float64, shape (n_train, n_features), C-contiguous
    y_train : ndarray of int64, shape (n_train,)
        For regression: float64, ``(n_train,)`` for one target, else ``(n_train, k)``.
    X_val : ndarray of float64, shape (n_val, n_features), C-contiguous
    y_val : ndarray of int64, shape (n_val,)
        For regression: float64, ``(n_val,)`` or ``(n_val, k)``.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the file is not an ``.npz`` archive, holds an object (pickled) array, lacks a key,
        or has arrays of the wrong shape, empty sets, NaN or infinite features, labels
        that are not integers, or (regression) targets that are not finite real numbers.
        The archive is opened with ``allow_pickle=False``, so nothing in it is ever
        unpickled.
    """
    task = _task(task)
    path = _existing_file(path)
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise ValueError(
            f"{path}: not an .npz archive but a single .npy array; save the four arrays "
            f"{', '.join(_NPZ_KEYS)} with numpy.savez"
        )
    if not magic.startswith(b"PK"):
        raise ValueError(f"{path}: not an .npz archive (no zip signature at the start)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):  # pragma: no cover - ruled out above
        raise ValueError(f"{path}: not an .npz archive")
    arrays = {}
    with archive:
        whole = _one_table(archive.files)
        keys = ("X", "y") if whole else _NPZ_KEYS
        missing = [key for key in keys if key not in archive.files]
        if missing:
            raise ValueError(
                f"{path}: missing array(s) {', '.join(missing)}; expected "
                f"{', '.join(_NPZ_KEYS)}, or X and y to split "
                f"(found: {', '.join(archive.files) or 'none'})"
            )
        for key in keys:
            try:
                arrays[key] = archive[key]
            except ValueError as exc:
                if "pickle" in str(exc):  # numpy refuses object arrays when allow_pickle=False
                    raise ValueError(
                        f"{path}: array {key} is an object array, which would need "
                        f"unpickling; refused (store plain numeric arrays instead)"
                    ) from exc
                raise ValueError(f"{path}: array {key} could not be read ({exc})") from exc
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ValueError(f"{path}: array {key} could not be read ({exc})") from exc

    if whole:
        return _split_npz(path, arrays["X"], arrays["y"], task, val_fraction, seed,
                          return_labels)
    if val_fraction is not None:
        raise ValueError(f"{path}: val_fraction applies to an archive of X and y; this one "
                         f"is split already ({', '.join(_NPZ_KEYS)})")
    X_train = _feature_matrix(arrays["X_train"], path, "X_train")
    X_val = _feature_matrix(arrays["X_val"], path, "X_val")
    if X_train.shape[1] != X_val.shape[1]:
        raise ValueError(
            f"{path}: feature count mismatch: X_train has {X_train.shape[1]} columns "
            f"but X_val has {X_val.shape[1]}"
        )
    if task == "regression":
        y_train = _real_targets(arrays["y_train"], path, "y_train", len(X_train))
        y_val = _real_targets(arrays["y_val"], path, "y_val", len(X_val))
        if y_train[0].size != y_val[0].size:
            raise ValueError(f"{path}: target count mismatch: y_train has {y_train[0].size} "
                             f"target(s) per sample but y_val has {y_val[0].size}")
        return X_train, y_train, X_val, y_val
    labels = {}
    for key, features in (("y_train", X_train), ("y_val", X_val)):
        y = _npz_labels(arrays[key], path, key)
        if y.shape[0] != features.shape[0]:
            x_key = "X_" + key[2:]
            raise ValueError(
                f"{path}: size mismatch: {x_key} has {features.shape[0]} rows (samples) "
                f"but {key} has {y.shape[0]} labels"
            )
        labels[key] = y
    if (labels["y_train"].dtype.kind == "U") != (labels["y_val"].dtype.kind == "U"):
        raise ValueError(f"{path}: y_train and y_val hold labels of two kinds (strings and "
                         f"integer class labels); give both splits labels of one kind")
    if return_labels:
        return X_train, labels["y_train"], X_val, labels["y_val"]
    y_train, y_val = _class_indices(labels["y_train"], labels["y_val"])
    return X_train, y_train, X_val, y_val


def _one_table(files):
    """Whether an ``.npz`` archive with arrays ``files`` is one table to split (its X and
    y, nothing of a split), not a split data set (X_train, y_train, X_val, y_val)."""
    return bool({"X", "y"} & set(files)) and not set(_NPZ_KEYS) & set(files)


def npz_holds_one_table(path):
    """Whether the ``.npz`` at ``path`` holds X and y to split (see :func:`load_npz`)."""
    with np.load(path, allow_pickle=False) as archive:
        return _one_table(archive.files)


def _split_npz(path, X, y, task, val_fraction, seed, return_labels):
    """An archive's ``X`` and ``y`` split into training and validation sets (load_npz)."""
    features = _feature_matrix(X, path, "X")
    n_val = _validation_size(path, len(features), _val_fraction(0.2 if val_fraction is None
                                                                else val_fraction))
    if task == "regression":
        values = _real_targets(y, path, "y", len(features))
    else:
        values = _npz_labels(y, path, "y")
        if len(values) != len(features):
            raise ValueError(f"{path}: size mismatch: X has {len(features)} rows (samples) "
                             f"but y has {len(values)} labels")
    return _split_table(features, values, task, n_val, seed, return_labels)


def load_csv(path, val_fraction=0.2, seed=0, task="classification", *, delimiter=None,
             target=None, return_labels=False):
    """Read a CSV file and split its rows into a training and a validation set.

    Parameters
    ----------
    path : str or os.PathLike
        A delimited text file (parsed by the standard library's :mod:`csv` module, so quoted
        fields and CRLF line ends work). Every row has the same number of columns (at least
        two): the features, all numbers, and one target column, by default the last. The
        first line may be a header: it is taken as one when one of its feature cells is
        text that is not a number, or, when only its target cell is text, when
        ``csv.Sniffer().has_header`` says so. Blank lines are skipped.
    val_fraction : float, default 0.2
        Share of the rows that goes to the validation set, strictly between 0 and 1; the
        validation set gets ``round(val_fraction * n_rows)`` rows, and both sets must end up
        with at least one row.
    seed : int, default 0
        Seed of the ``numpy.random.default_rng`` shuffle that decides the split. For
        classification the split is stratified: each class gives ``val_fraction`` of its
        rows to the validation set (rounded down or up so that the total is exactly
        ``round(val_fraction * n_rows)``, the largest remainders rounded up), and every class
        with at least two rows has at least one in each split when the total allows it.
        For regression the split is a plain shuffle.
    task : {"classification", "regression"}, default "classification"
        For "regression" the target column is a real number, returned as it is.
    delimiter : str, optional
        The column separator: one character, or one of the names ``"comma"``,
        ``"semicolon"``, ``"tab"``, ``"pipe"``, ``"space"`` / ``"whitespace"`` (runs of
        spaces and tabs). Default: sniffed by ``csv.Sniffer`` among ``, ; tab | space``
        (comma when nothing can be told).
    target : int or str, optional
        The target column: an index (negative ones count from the end; a string of digits
        counts as an index) or a header name. Default: the last column.
    return_labels : bool, default False
        Return the ORIGINAL class labels instead of the indices 0 .. k-1: int64 when the
        labels are integers, strings (a NumPy ``str`` array) when they are text. No effect
        for regression.

    Returns
    -------
    X_train : ndarray of float64, shape (n_train, n_features), C-contiguous
    y_train : ndarray of int64, shape (n_train,)
    X_val : ndarray of float64, shape (n_val, n_features), C-contiguous
    y_val : ndarray of int64, shape (n_val,)
        Labels are mapped to 0 .. k-1 in sorted order of the values in the file (numbers
        numerically, text labels as strings); with ``return_labels=True`` they are the
        original values. For regression, ``y_train`` and ``y_val`` are the float64 targets.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If a feature cell is missing or not a number, rows differ in length, a feature is
        NaN or infinite, a numeric label is not an integer, labels mix numbers and text,
        (regression) a target is not a finite number, there are too few rows to split,
        `val_fraction` is not in (0, 1), or `delimiter` / `target` do not fit the file. The
        message names the file, and the line (1-based) and column where there is one.
    """
    task = _task(task)
    val_fraction = _val_fraction(val_fraction)
    path = _existing_file(path)
    table = _read_csv(path, delimiter, target, task)
    features, values = table["features"], table["targets"]
    n_val = _validation_size(path, len(features), val_fraction)
    if table["n_columns"] < 2:
        raise ValueError(
            f"{path}, line {table['first_data_line']}: a row needs at least one feature "
            f"column and a label column, found {table['n_columns']} column"
        )
    features = _feature_matrix(np.array(features, dtype=np.float64), path,
                               "the feature columns")
    target_name = f"the target column ({table['target_description']})"
    if task == "regression":
        values = _real_targets(np.array(values, dtype=np.float64), path, target_name,
                               len(features))
    elif table["text_labels"]:
        values = np.array(values, dtype=str)
    else:
        values = _integer_labels(np.array(values, dtype=np.float64), path, target_name)
    return _split_table(features, values, task, n_val, seed, return_labels)


def _validation_size(path, n_rows, val_fraction):
    """How many of ``n_rows`` samples go to the validation set, refused if either set
    would be empty."""
    n_val = int(round(val_fraction * n_rows))
    if n_val < 1 or n_rows - n_val < 1:
        raise ValueError(
            f"{path}: {n_rows} data row(s) cannot be split into non-empty training and "
            f"validation sets with val_fraction={val_fraction}"
        )
    return n_val


def _split_table(features, values, task, n_val, seed, return_labels):
    """``(X_train, y_train, X_val, y_val)`` from one table of samples (a CSV's, or an
    ``.npz``'s ``X`` and ``y``): ``n_val`` rows drawn for validation with ``seed``,
    stratified by class for classification (the labels as indices 0 .. k-1 in sorted order,
    or as they are with ``return_labels``); real targets are split as they are."""
    rng = np.random.default_rng(seed)
    if task == "regression":
        order = rng.permutation(len(features))
        val_rows, train_rows = order[:n_val], order[n_val:]
        y_train, y_val = values[train_rows], values[val_rows]
    else:
        classes, indices = np.unique(values, return_inverse=True)
        train_rows, val_rows = _stratified_split(indices.reshape(-1), len(classes), n_val, rng)
        kept = values if return_labels else indices.reshape(-1).astype(np.int64)
        y_train, y_val = kept[train_rows], kept[val_rows]
    return (
        np.ascontiguousarray(features[train_rows]),
        y_train,
        np.ascontiguousarray(features[val_rows]),
        y_val,
    )


def _val_fraction(val_fraction):
    try:
        fraction = float(val_fraction)
    except (TypeError, ValueError):
        raise ValueError(f"val_fraction must be a number strictly between 0 and 1, got "
                         f"{val_fraction!r}") from None
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    return fraction


def _stratified_split(indices, n_classes, n_val, rng):
    """Training and validation rows: each class gives its share of ``n_val`` (floor or ceil
    of ``n_val / n * count``, the largest remainders rounded up), at least one row to each
    split for classes of two or more rows when the total allows; shuffled with `rng`."""
    counts = np.bincount(indices, minlength=n_classes)
    quota = counts * (n_val / len(indices))
    take = np.floor(quota).astype(np.int64)
    low = np.where(counts >= 2, 1, 0)
    high = np.where(counts >= 2, counts - 1, counts)
    take = np.clip(take, np.minimum(low, high), high)
    remainder = quota - take
    # too few: round up the classes with the largest remainders (room below `high` first)
    for order_key in (high, counts):
        while take.sum() < n_val:
            room = np.flatnonzero(take < order_key)
            if room.size == 0:
                break
            best = room[np.argsort(-remainder[room], kind="stable")][:n_val - take.sum()]
            take[best] += 1
            remainder[best] -= 1
    # too many (the minimum of one per class): take back from the smallest remainders
    for floor_key in (low, np.zeros_like(low)):
        while take.sum() > n_val:
            room = np.flatnonzero(take > floor_key)
            if room.size == 0:
                break
            worst = room[np.argsort(remainder[room], kind="stable")][:take.sum() - n_val]
            take[worst] -= 1
            remainder[worst] += 1
    val_parts, train_parts = [], []
    for k in range(n_classes):
        rows = rng.permutation(np.flatnonzero(indices == k))
        val_parts.append(rows[:take[k]])
        train_parts.append(rows[take[k]:])
    return (rng.permutation(np.concatenate(train_parts)),
            rng.permutation(np.concatenate(val_parts)))


#: Names ``load_csv(delimiter=...)`` and ``--delimiter`` take beside a single character.
CSV_DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|",
                       "space": " ", "whitespace": " ", "\\s+": " "}
_SNIFFED_DELIMITERS = ",;\t| "
_SNIFF_CHARS = 65536


def csv_delimiter(delimiter):
    """The one-character delimiter that `delimiter` (a character or a name of
    :data:`CSV_DELIMITER_NAMES`) stands for; None stays None (sniff)."""
    if delimiter is None:
        return None
    if not isinstance(delimiter, str):
        raise TypeError(f"delimiter must be a string, got {type(delimiter).__name__}")
    character = CSV_DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    if len(character) != 1 or character in "\"\r\n" or character.isalnum() \
            or character in ".-+":
        raise ValueError(f"delimiter must be one character (not a quote, letter, digit, "
                         f"'.', '-' or '+') or one of {', '.join(CSV_DELIMITER_NAMES)}; got "
                         f"{delimiter!r}")
    return character


def _sniff_delimiter(text):
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS and "\n" in sample:
        sample = sample[:sample.rindex("\n")]
    lines = [line.strip() for line in sample.splitlines() if line.strip()]
    if not lines:
        return ","
    try:
        delimiter = csv.Sniffer().sniff("\n".join(lines), delimiters=_SNIFFED_DELIMITERS).delimiter
    except csv.Error:
        delimiter = None
    if delimiter is not None and delimiter in _SNIFFED_DELIMITERS:
        return delimiter
    # the sniffer found no consistent delimiter (ragged rows, say): the one on most lines
    present = {c: sum(c in line for line in lines) for c in ",;\t|"}
    best = max(present, key=present.get)
    if present[best]:
        return best
    if any(len(line.split()) > 1 for line in lines):
        return " "  # columns aligned with runs of spaces
    return ","


def _csv_records(path, delimiter, first_only=False):
    """The non-blank records of a CSV file as ``(line, cells)``, ``line`` the 1-based line
    where the record starts, cells stripped (with ``first_only``, only the first one); the
    delimiter used; and the file's text."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text CSV file ({exc})") from exc
    if delimiter is None:
        delimiter = _sniff_delimiter(text)
    lines = io.StringIO(text, newline="")
    if delimiter == " ":
        lines = (line if '"' in line else " ".join(line.split()) + "\n" for line in lines)
    reader = csv.reader(lines, delimiter=delimiter, skipinitialspace=True)
    records = []
    previous = 0
    try:
        for cells in reader:
            start, previous = previous + 1, reader.line_num
            if delimiter == " ":
                cells = [cell for cell in cells if cell.strip()] if cells and any(
                    cell.strip() for cell in cells) else []
            if cells and any(cell.strip() for cell in cells):
                records.append((start, [cell.strip() for cell in cells]))
                if first_only:
                    break
    except csv.Error as exc:
        raise ValueError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from exc
    return records, delimiter, text


def csv_feature_names(path, *, delimiter=None, target=None):
    """The header names of a CSV file's feature columns, in the order of the columns of
    :func:`load_csv`'s ``X`` (the target column left out), or None when the file's first
    line is not a header (the rule of :func:`load_csv`). Only the first record is parsed.

    ``delimiter`` and ``target`` are :func:`load_csv`'s. A blank header cell gives ``""``.
    """
    header = _csv_header(path, delimiter, target)
    if header is None:
        return None
    names, target_index = header
    return [name for index, name in enumerate(names) if index != target_index]


def csv_target_name(path, *, delimiter=None, target=None):
    """The header name of a CSV file's target column (as :func:`csv_feature_names` finds
    the header), or None when its first line is not a header."""
    header = _csv_header(path, delimiter, target)
    return None if header is None else header[0][header[1]]


def _csv_header(path, delimiter, target):
    """``(names, target_index)`` of a CSV file's header line, or None when its first line
    is not a header (the rule of :func:`load_csv`). Only the first record is parsed."""
    path = _existing_file(path)
    records, _, text = _csv_records(path, csv_delimiter(delimiter), first_only=True)
    if not records:
        return None
    first = records[0][1]
    target_index, is_header = _target_index(path, -1 if target is None else target, first,
                                            len(first))
    if not (is_header or _looks_like_header(first, target_index, text)):
        return None
    return first, target_index


def _target_index(path, target, first, n_columns):
    """The target column's index and whether the first record must be a header (a name)."""
    if isinstance(target, str) and target.strip().lstrip("+-").isdigit():
        target = int(target.strip())
    if isinstance(target, str):
        if target in first:
            return first.index(target), True
        raise ValueError(
            f"{path}: no column named {target!r}"
            + (f"; the first line has {', '.join(repr(c) for c in first)}"
               if not all(_parses_as_float(c) for c in first) else
               "; the file has no header line, give the column's index")
        )
    try:
        index = operator.index(target)
    except TypeError:
        raise TypeError(f"target must be a column index or a header name, got "
                        f"{type(target).__name__}") from None
    if not -n_columns <= index < n_columns:
        raise ValueError(f"{path}: target column index {index} is out of range for "
                         f"{n_columns} columns (0 .. {n_columns - 1}, or -{n_columns} .. -1)")
    return index % n_columns, False


def _looks_like_header(first, target_index, text):
    features = [c for i, c in enumerate(first) if i != target_index]
    if any(cell and not _parses_as_float(cell) for cell in features):
        return True
    if target_index is None or _parses_as_float(first[target_index]) or not first[target_index]:
        return False
    try:
        return csv.Sniffer().has_header(text[:_SNIFF_CHARS])
    except csv.Error:
        return False


def _named_columns(path, header, feature_names, target_index, target_given):
    """The indices of the columns of a CSV ``header`` named ``feature_names``, in that
    order; ValueError if one is missing (naming the missing and the header's other
    columns), is in the header twice, or is the target column given (``target_given``)."""
    columns, missing, repeated = v.find_columns(header, feature_names)
    if missing:
        others = [name for name in header if name not in feature_names]
        raise ValueError(
            f"{path}: the header lacks the model's feature column(s) {_quoted(missing)} (the "
            f"model was trained on {_quoted(feature_names)}"
            + (f"; the file's other columns: {_quoted(others)}" if others else "") + ")")
    if repeated:
        raise ValueError(f"{path}: the header names column {repeated[0]!r} "
                         f"{header.count(repeated[0])} times; which is the feature cannot "
                         f"be told")
    if target_given and target_index in columns:
        raise ValueError(f"{path}: the target column {header[target_index]!r} is one of the "
                         f"model's features")
    return columns


def _quoted(names):
    return ", ".join(map(repr, names))


def _column(names, index):
    if names is not None and index < len(names) and names[index]:
        return f"column {names[index]!r}, index {index}"
    return f"column index {index}"


def _read_csv(path, delimiter, target, task, n_features=None, feature_names=None):
    """Parse a CSV file: the feature rows (lists of floats), the target cells (floats, or
    strings for text labels), and what was found. With ``n_features`` (``read_features``)
    the file has that many feature columns and maybe one target column (the last, or
    `target`), which is dropped unchecked (``task`` None); or, with ``feature_names`` and a
    header line, the columns of those names, in that order, whatever the others."""
    delimiter = csv_delimiter(delimiter)
    records, delimiter, text = _csv_records(path, delimiter)
    result = {"features": [], "targets": [], "text_labels": False, "n_columns": 0,
              "first_data_line": 1, "target_description": "last column", "names": None,
              "delimiter": delimiter}
    if not records:
        return result
    first_line, first = records[0]
    n_columns = len(first)
    if n_features is not None and target is None:
        target_index, is_header = (n_columns - 1 if n_columns == n_features + 1 else None), False
    else:
        target_index, is_header = _target_index(path, -1 if target is None else target,
                                                first, n_columns)
    if not is_header:
        is_header = _looks_like_header(first, target_index, text)
    names = first if is_header else None
    data = records[1:] if is_header else records
    columns = [index for index in range(n_columns) if index != target_index]
    if feature_names is not None and is_header:
        columns = _named_columns(path, first, feature_names, target_index, target is not None)
        target_index = None  # the target, like any other column not named, is not read
    elif n_features is not None and target is None and n_columns not in (n_features,
                                                                          n_features + 1):
        raise ValueError(
            f"{path}, line {first_line}: {n_columns} columns, but the model expects "
            f"{n_features} features ({n_features} columns, or {n_features + 1} "
            f"with the target last)")
    elif n_features is not None and target is not None and n_columns != n_features + 1:
        raise ValueError(
            f"{path}, line {first_line}: {n_columns} columns, but the model expects "
            f"{n_features} features and a target column: {n_features + 1} columns")
    if target_index is not None:
        described = ("last column" if target_index == n_columns - 1
                     else _column(names, target_index))
        result["target_description"] = described
    result.update(n_columns=n_columns, names=names,
                  first_data_line=data[0][0] if data else first_line)
    what = "target" if task == "regression" else "label"
    text_line = None  # the first line with a text label, and with a numeric one
    number_line = None
    features, targets = result["features"], result["targets"]
    for line, cells in data:
        if len(cells) != n_columns:
            reference = "the header line" if is_header else "the first data row"
            raise ValueError(f"{path}, line {line}: {len(cells)} columns, but {reference} "
                             f"has {n_columns}")
        row = []
        for index in columns:
            cell = cells[index]
            if not cell:
                raise ValueError(f"{path}, line {line}: missing value "
                                 f"({_column(names, index)})")
            try:
                value = float(cell)
            except ValueError:
                raise ValueError(f"{path}, line {line}: {cell!r} is not a number "
                                 f"({_column(names, index)})") from None
            if not math.isfinite(value):
                raise ValueError(f"{path}, line {line}: a feature is NaN or infinite "
                                 f"({_column(names, index)}: {cell!r})")
            row.append(value)
        features.append(row)
        if task is None or target_index is None:
            continue
        cell = cells[target_index]
        if not cell:
            raise ValueError(f"{path}, line {line}: the {what} ({described}) is missing")
        try:
            value = float(cell)
        except ValueError:
            if task == "regression":
                raise ValueError(f"{path}, line {line}: the target ({described}) must be a "
                                 f"number, got {cell!r}") from None
            text_line = text_line or (line, cell)
            targets.append(cell)
            continue
        number_line = number_line or line
        if task == "regression":
            if not math.isfinite(value):
                raise ValueError(f"{path}, line {line}: the target ({described}) is NaN or "
                                 f"infinite, got {cell!r}")
        elif not (math.isfinite(value) and value == round(value) and abs(value) < 2.0**62):
            raise ValueError(
                f"{path}, line {line}: the label ({described}) must be an integer, got "
                f"{cell!r}" + (_REGRESSION_HINT if math.isfinite(value) else ""))
        targets.append(value)
    if text_line is not None:
        if number_line is not None:
            line, cell = text_line
            raise ValueError(
                f"{path}, line {line}: the label ({described}) {cell!r} is not a number, "
                f"but the label on line {number_line} is; labels are all numbers or all "
                f"text")
        result["text_labels"] = True
    return result


def read_features(path, n_features, task="classification", *, delimiter=None, target=None,
                  feature_names=None):
    """The feature matrix of a data file, to predict on (``nncore predict``).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` file: numeric rows, an optional header line (as in :func:`load_csv`),
        either ``n_features`` columns (features only) or ``n_features + 1`` (the features,
        then the target in the last column, which is dropped). An ``.npz`` archive: its
        array ``X`` (n_samples, n_features) if it has one, else ``X_train`` followed by
        ``X_val``. A ``.mat`` file in the course format: ``Yt`` followed by ``Yv``. Rows
        keep their order in the file; nothing is shuffled. A ``.csv`` is parsed as in
        :func:`load_csv` (sniffed delimiter, quoting, header rule).
    n_features : int
        The number of features the model expects.
    task : {"classification", "regression"}, default "classification"
        How the labels of an ``.npz`` without ``X`` or of a ``.mat`` file are read (they
        are checked, then dropped).
    delimiter : str, optional
        For a ``.csv``: as in :func:`load_csv` (default: sniffed).
    target : int or str, optional
        For a ``.csv`` with the target in another column than the last: its index or header
        name (as in :func:`load_csv`); the file must then have ``n_features + 1`` columns
        and that column is dropped.
    feature_names : list of str, optional
        The names of the model's features (``Network.feature_names``). A ``.csv`` with a
        header line then gives the columns of those names, in that order, wherever they
        are (the other columns, a target among them, are not read); a header that lacks
        one of them is refused, naming the missing and the other columns. A ``.csv``
        without a header is read by position, as without names.

    Returns
    -------
    X : ndarray of float64, shape (n_samples, n_features), C-contiguous

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If it is a folder, has an unknown suffix, is malformed, has no rows, a feature
        that is not a finite number, or a column count that fits neither ``n_features``
        nor ``n_features + 1`` (.csv) or ``n_features`` (.npz, .mat).
    """
    n_features = v.integer("n_features", n_features, minimum=1)
    task = _task(task)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a file path, got {type(path).__name__}")
    if Path(path).is_dir():
        raise ValueError(f"{os.fspath(path)!r} is a directory, not a data file")
    path = _existing_file(path)
    suffix = file_kind(path)
    if suffix != ".csv":
        _refuse_csv_options(path, delimiter=delimiter, target=target)
    if suffix == ".csv":
        table = _read_csv(path, delimiter, target, None, n_features=n_features,
                          feature_names=feature_names)
        if not table["features"]:
            raise ValueError(f"{path}: no data rows")
        X = np.array(table["features"], dtype=np.float64)
    elif suffix == ".npz":
        X = _npz_features(path)
        if X is None:
            X_train, _, X_val, _ = load_npz(path, task=task)
            X = np.concatenate([X_train, X_val])
    elif suffix == ".mat":
        X_train, _, X_val, _ = load_mat(path, task=task)
        X = np.concatenate([X_train, X_val])
    else:
        raise ValueError(f"{path}: unknown kind of file; expected a path ending in "
                         f"{', '.join(_LOADER_SUFFIXES)}")
    return v.features(X, n_features=n_features, dtype=np.float64, name="the features",
                      source=path, allow_empty=False, expected_by="the model")


def _npz_features(path):
    """The array ``X`` of an ``.npz`` archive, or None if it has none."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not an .npz archive but a single .npy array")
    with archive:
        if "X" not in archive.files:
            return None
        try:
            return archive["X"]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: cannot read the array X ({exc})") from exc


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def save_mat(path, X_train, y_train, X_val, y_val, n_classes=None):
    """Write a data set in the course ``.mat`` format.

    Features are stored transposed (``Yt``, ``Yv``: features x samples) and labels one-hot
    (``Ct``, ``Cv``: classes x samples), all as float64 so that :func:`load_mat` returns
    exactly the arrays given. The file is zlib-compressed, and its header carries a fixed
    text instead of a time stamp, so the same arrays always give the same bytes.

    Parameters
    ----------
    path : str or os.PathLike
        File to write (overwritten if it exists).
    X_train : array_like, shape (n_train, n_features)
        Finite real features.
    y_train : array_like of int, shape (n_train,)
        Class indices in 0 .. n_classes-1.
    X_val : array_like, shape (n_val, n_features)
    y_val : array_like of int, shape (n_val,)
    n_classes : int, optional
        Number of one-hot rows. Defaults to the largest label plus one.

    Returns
    -------
    pathlib.Path
        `path`, so that ``load_mat(save_mat(path, ...))`` reads it back.

    Raises
    ------
    ValueError
        If the arrays do not describe a valid data set (shapes, empty sets, non-finite
        features, labels that are not integers in range).
    """
    path = Path(path)
    X_train = _feature_matrix(np.asarray(X_train), "save_mat", "X_train")
    X_val = _feature_matrix(np.asarray(X_val), "save_mat", "X_val")
    if X_train.shape[1] != X_val.shape[1]:
        raise ValueError(
            f"save_mat: X_train has {X_train.shape[1]} features but X_val has {X_val.shape[1]}"
        )
    y_train = _integer_labels(np.asarray(y_train), "save_mat", "y_train")
    y_val = _integer_labels(np.asarray(y_val), "save_mat", "y_val")
    for name, X, y in (("train", X_train, y_train), ("val", X_val, y_val)):
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"save_mat: X_{name} has {X.shape[0]} rows but y_{name} has {y.shape[0]}"
            )
    largest = int(max(y_train.max(), y_val.max()))
    if n_classes is None:
        n_classes = largest + 1
    n_classes = operator.index(n_classes)
    if min(y_train.min(), y_val.min()) < 0 or largest >= n_classes:
        raise ValueError(f"save_mat: labels must lie in 0 .. {n_classes - 1}")

    buffer = io.BytesIO()
    scipy.io.savemat(
        buffer,
        {
            "Yt": X_train.T,
            "Ct": _one_hot(y_train, n_classes),
            "Yv": X_val.T,
            "Cv": _one_hot(y_val, n_classes),
        },
        format="5",
        do_compression=True,
        oned_as="column",
    )
    data = bytearray(buffer.getvalue())
    data[:_MAT_HEADER_TEXT_BYTES] = _MAT_HEADER_TEXT.ljust(_MAT_HEADER_TEXT_BYTES, b" ")
    path.write_bytes(bytes(data))
    return path


# --------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------


def peaks(x, y):
    """Evaluate MATLAB's ``peaks`` surface.

    Parameters
    ----------
    x, y : array_like
        Coordinates (broadcast together).

    Returns
    -------
    ndarray
        ``3(1-x)^2 exp(-x^2-(y+1)^2) - 10(x/5 - x^3 - y^5) exp(-x^2-y^2)
        - 1/3 exp(-(x+1)^2-y^2)``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return (
        3.0 * (1.0 - x) ** 2 * np.exp(-(x**2) - (y + 1.0) ** 2)
        - 10.0 * (x / 5.0 - x**3 - y**5) * np.exp(-(x**2) - y**2)
        - np.exp(-((x + 1.0) ** 2) - y**2) / 3.0
    )


def make_peaks(n_train=25000, n_val=6250, seed=0, label_noise=_PEAKS_LABEL_NOISE,
               position_noise=_PEAKS_POSITION_NOISE):
    """Generate the 2-D, 5-class "peaks" set: bands of the ``peaks`` surface.

    The surface ``z = peaks(x, y)`` on [-3, 3]^2 is cut into five bands by four levels evenly
    spaced between its minimum (-6.55) and its maximum (8.11); class c is band c, from the
    lowest (the pit) to the highest (the summit). Each class gets the same number of points,
    drawn uniformly inside its band, so small bands are dense and the large middle band
    (the flat plain around the hills) is sparse. Then every point is moved by Gaussian noise
    (which blurs the borders and lets a few points leave the square), and a fraction of the
    labels is shuffled.

    Parameters
    ----------
    n_train : int, default 25000
        Training samples (as in the course set).
    n_val : int, default 6250
        Validation samples.
    seed : int, default 0
        Seed of ``numpy.random.default_rng``; the same seed gives the same arrays.
    label_noise : float, default 0.03
        Fraction of samples in each split whose labels are randomly permuted among
        themselves (class counts stay exact; about 4 in 5 of them change class).
    position_noise : float, default 0.045
        Standard deviation of the Gaussian noise added to each coordinate.

    Returns
    -------
    X_train : ndarray of float64, shape (n_train, 2)
    y_train : ndarray of int64, shape (n_train,)
        Labels 0 .. 4, each class ``n_train // 5`` or one more times.
    X_val : ndarray of float64, shape (n_val, 2)
    y_val : ndarray of int64, shape (n_val,)

    Notes
    -----
    The bands are fixed levels, not quantiles of ``z`` under uniform sampling: with
    quantile levels the three middle classes would be thin slivers of the nearly flat plain
    (``z`` between -0.31 and 1.31), unlike the course set. Balance comes from sampling each
    band equally instead. With the defaults a 25-nearest-neighbour classifier scores about
    93 % on the validation split, as on the course set.
    """
    n_train, n_val = _sample_counts(n_train, n_val)
    label_noise = v.real_number("label_noise", label_noise, 0.0, 1.0)
    position_noise = v.real_number("position_noise", position_noise, minimum=0.0)
    n_classes = len(_PEAKS_LEVELS) + 1
    rng = np.random.default_rng(seed)

    def sample(n):
        counts = _balanced_counts(n, n_classes)
        points = [np.empty((0, 2)) for _ in range(n_classes)]
        # Rejection sampling: draw uniform points, keep each band's first `count` hits.
        while any(len(p) < c for p, c in zip(points, counts)):
            candidates = rng.uniform(-_PEAKS_HALF_WIDTH, _PEAKS_HALF_WIDTH, size=(8 * n + 1024, 2))
            band = np.searchsorted(_PEAKS_LEVELS, peaks(candidates[:, 0], candidates[:, 1]))
            for c in range(n_classes):
                need = counts[c] - len(points[c])
                if need > 0:
                    points[c] = np.concatenate([points[c], candidates[band == c][:need]])
        X = np.concatenate(points)
        y = np.repeat(np.arange(n_classes, dtype=np.int64), counts)
        X = X + rng.normal(0.0, position_noise, size=X.shape)
        return _shuffle_with_label_noise(rng, X, y, label_noise)

    return (*sample(n_train), *sample(n_val))


def make_gmm(n_train=25000, n_val=6250, seed=0, label_noise=_GMM_LABEL_NOISE):
    """Generate the 5-D, 5-class "gmm" set: each class a mixture of five Gaussians.

    The seed first fixes the mixture: 25 component centres drawn from
    ``N(0, 0.7^2 I)`` in 5-D, five per class, each component with its own randomly rotated
    covariance whose axis standard deviations are uniform in [0.08, 0.25]. Then each class
    gets the same number of samples, spread evenly at random over its five components, and
    a fraction of the labels is shuffled. Train and validation come from the same mixture.

    Parameters
    ----------
    n_train : int, default 25000
        Training samples (as in the course set).
    n_val : int, default 6250
        Validation samples.
    seed : int, default 0
        Seed of ``numpy.random.default_rng``; it fixes both the mixture and the samples.
    label_noise : float, default 0.015
        Fraction of samples in each split whose labels are randomly permuted among
        themselves (class counts stay exact; about 4 in 5 of them change class).

    Returns
    -------
    X_train : ndarray of float64, shape (n_train, 5)
    y_train : ndarray of int64, shape (n_train,)
        Labels 0 .. 4, each class ``n_train // 5`` or one more times.
    X_val : ndarray of float64, shape (n_val, 5)
    y_val : ndarray of int64, shape (n_val,)
    """
    n_train, n_val = _sample_counts(n_train, n_val)
    label_noise = v.real_number("label_noise", label_noise, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    d, k, m = _GMM_N_FEATURES, _GMM_N_CLASSES, _GMM_COMPONENTS_PER_CLASS
    centers = rng.normal(0.0, _GMM_CENTER_SPREAD, size=(k, m, d))
    # Each component's samples are  center + z @ (diag(stds) @ Q.T), z ~ N(0, I).
    transforms = np.empty((k, m, d, d))
    for c in range(k):
        for j in range(m):
            q, r = np.linalg.qr(rng.normal(size=(d, d)))
            q *= np.sign(np.diag(r))  # a uniformly random rotation
            stds = rng.uniform(*_GMM_AXIS_STD_RANGE, size=d)
            transforms[c, j] = stds[:, None] * q.T

    def sample(n):
        y = np.repeat(np.arange(k, dtype=np.int64), _balanced_counts(n, k))
        component = rng.integers(0, m, size=n)
        z = rng.normal(size=(n, d))
        X = centers[y, component] + np.einsum("ni,nij->nj", z, transforms[y, component])
        return _shuffle_with_label_noise(rng, X, y, label_noise)

    return (*sample(n_train), *sample(n_val))


def make_swissroll(n_train=20000, n_val=5000, seed=0, label_noise=_SWISSROLL_LABEL_NOISE,
                   position_noise=_SWISSROLL_POSITION_NOISE):
    """Generate the 2-D, 2-class "swissroll" set: two interleaved spiral arms.

    Arm 0 is the Archimedean spiral ``r = 0.075 t`` at angle ``t`` for ``t`` uniform in
    [0, 4 pi] (two turns out from the centre); arm 1 is the same curve turned by half a
    turn, ``-0.075 t (cos t, sin t)`` for ``t`` in [pi, 5 pi], so it lies midway between the
    turns of arm 0. Points are spread evenly in ``t`` (denser near the centre), moved by
    Gaussian noise, and a fraction of the labels is shuffled. Coordinates stay within about
    [-1.3, 1.3].

    Parameters
    ----------
    n_train : int, default 20000
        Training samples (as in the course set).
    n_val : int, default 5000
        Validation samples.
    seed : int, default 0
        Seed of ``numpy.random.default_rng``; the same seed gives the same arrays.
    label_noise : float, default 0.02
        Fraction of samples in each split whose labels are randomly permuted among
        themselves (class counts stay exact; about half of them change class).
    position_noise : float, default 0.05
        Standard deviation of the Gaussian noise added to each coordinate.

    Returns
    -------
    X_train : ndarray of float64, shape (n_train, 2)
    y_train : ndarray of int64, shape (n_train,)
        Labels 0 and 1, each ``n_train // 2`` or one more times.
    X_val : ndarray of float64, shape (n_val, 2)
    y_val : ndarray of int64, shape (n_val,)
    """
    n_train, n_val = _sample_counts(n_train, n_val)
    label_noise = v.real_number("label_noise", label_noise, 0.0, 1.0)
    position_noise = v.real_number("position_noise", position_noise, minimum=0.0)
    rng = np.random.default_rng(seed)
    span = 2.0 * math.pi * _SWISSROLL_TURNS

    def sample(n):
        y = np.repeat(np.arange(2, dtype=np.int64), _balanced_counts(n, 2))
        t = rng.uniform(0.0, span, size=n) + math.pi * y
        sign = np.where(y == 0, 1.0, -1.0)
        X = (sign * _SWISSROLL_GROWTH * t)[:, None] * np.column_stack([np.cos(t), np.sin(t)])
        X = X + rng.normal(0.0, position_noise, size=X.shape)
        return _shuffle_with_label_noise(rng, X, y, label_noise)

    return (*sample(n_train), *sample(n_val))


_GENERATORS = {"peaks": make_peaks, "gmm": make_gmm, "swissroll": make_swissroll}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _refuse_csv_options(path, **options):
    given = [name for name, value in options.items() if value is not None]
    if given:
        also = " (val_fraction: or an .npz of X and y)" if "val_fraction" in given else ""
        raise ValueError(f"{path}: {', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} "
                         f"to .csv files only{also}")


def _existing_file(path):
    """Return `path` as a Path, raising FileNotFoundError / ValueError if it is no file."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a file path, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    return path


def _feature_matrix(values, source, name):
    """A non-empty (samples, features) array of finite reals, as C-contiguous float64."""
    return v.features(values, dtype=np.float64, name=name, source=source, allow_empty=False)


def _task(task):
    return v.choice("task", task, TASKS)


def _npz_labels(values, source, name):
    """An archive's class labels: text (a NumPy string array, stored without pickling; as
    str) or integers (_integer_labels, suggesting regression for real numbers)."""
    values = np.asarray(values)
    if values.dtype.kind in "US":
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"{source}: {name} must be a non-empty 1-D array of labels, got "
                             f"shape {values.shape}")
        return values.astype(str)
    return _integer_labels(values, source, name, hint=True)


def _integer_labels(values, source, name, hint=False):
    """A non-empty 1-D array of integer-valued labels, as int64. With ``hint``, a complaint
    about finite real numbers that are not integers suggests regression."""
    try:
        labels = v.class_labels(values, name=name, source=source)
    except ValueError as error:
        values = np.asarray(values)
        if hint and values.dtype.kind == "f":
            finite = values[np.isfinite(values)]
            if (finite != np.round(finite)).any():
                raise ValueError(f"{error}{_REGRESSION_HINT}") from None
        raise
    if labels.size == 0:
        raise ValueError(f"{source}: {name} is empty (0 labels)")
    return labels.astype(np.int64)


def _real_targets(values, source, name, n_samples):
    """Real-valued targets of ``n_samples`` samples as float64: ``(n,)`` for one target,
    ``(n, k)`` for several (checked by :func:`nncore._validation.regression_targets`)."""
    targets = v.regression_targets(values, n_samples, name=name, source=source)
    if targets.shape[1] == 0:
        raise ValueError(f"{source}: {name} has no targets (0 columns)")
    return np.ascontiguousarray(targets[:, 0]) if targets.shape[1] == 1 else targets


def _class_indices(y_train, y_val):
    """Map the labels of both splits to 0 .. k-1 in sorted order of their distinct values."""
    classes = np.unique(np.concatenate([y_train, y_val]))
    return (
        np.searchsorted(classes, y_train).astype(np.int64),
        np.searchsorted(classes, y_val).astype(np.int64),
    )


def _one_hot(y, n_classes):
    onehot = np.zeros((n_classes, y.shape[0]), dtype=np.float64)
    onehot[y, np.arange(y.shape[0])] = 1.0
    return onehot


def _parses_as_float(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sample_counts(n_train, n_val):
    return v.integer("n_train", n_train), v.integer("n_val", n_val)


def _balanced_counts(n, n_classes):
    """Split n samples over the classes as evenly as possible (the first ones get the rest)."""
    counts = np.full(n_classes, n // n_classes)
    counts[: n % n_classes] += 1
    return counts


def _shuffle_with_label_noise(rng, X, y, label_noise):
    """Shuffle the samples, then permute the labels of a random `label_noise` share of them."""
    order = rng.permutation(len(y))
    X, y = np.ascontiguousarray(X[order], dtype=np.float64), y[order]
    noisy = rng.choice(len(y), size=int(round(label_noise * len(y))), replace=False)
    y[noisy] = y[rng.permutation(noisy)]
    return X, y


# --------------------------------------------------------------------------------------------
# Command line: regenerate the bundled files
# --------------------------------------------------------------------------------------------


def main(argv=None):
    """Regenerate the bundled ``.mat`` files: ``python -m nncore.datasets OUT_DIR``.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status, 0 on success.
    """
    parser = argparse.ArgumentParser(
        prog="python -m nncore.datasets",
        description=(
            "Write PeaksData.mat, GMMData.mat and SwissRollData.mat, generated with the "
            "default arguments (seed 0) of make_peaks, make_gmm and make_swissroll. The "
            "output is byte-for-byte deterministic."
        ),
    )
    parser.add_argument("out_dir", type=Path, help="folder to write into (e.g. data)")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, filename in BUNDLED_FILES.items():
        arrays = _GENERATORS[name]()
        n_classes = int(max(arrays[1].max(), arrays[3].max())) + 1
        path = save_mat(args.out_dir / filename, *arrays, n_classes=n_classes)
        print(
            f"{path}: {arrays[0].shape[0]} train + {arrays[2].shape[0]} val samples, "
            f"{arrays[0].shape[1]} features, {n_classes} classes"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
