"""Model files and training checkpoints: ``.npz`` files of plain arrays plus a JSON header,
never a pickle.

This module reads and writes a network's *state*, a plain dict (``dtype``, ``layers``,
``architecture``, ``loss``, ``params``) that :meth:`nncore.Network.state` returns and
:meth:`nncore.Network.from_state` rebuilds a network from; it knows nothing of networks
itself, so the network can import it and not the other way round.

The file holds two arrays: ``header``, a 1-D uint8 array of UTF-8 JSON
(``{"format": "nncore-model", "format_version": 1, "nncore_version", "dtype",
"n_params", "layers", "architecture", "loss"}`` and, when the network has them,
``classes``, ``scaling`` and ``feature_names``; a file without ``loss``, written before
regression existed, is a classifier), and ``params``, the flat parameter vector. It is
read with ``allow_pickle=False`` and written atomically: to a temporary file in the same
folder, flushed to disk, then renamed over the target, so a crash never leaves half a file.
"""

import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from . import __version__

__all__ = ["write_model", "read_model", "save_checkpoint", "load_checkpoint",
           "ModelFileError", "FORMAT_VERSION"]

FORMAT = "nncore-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file that is missing parts, corrupted, of another format or version."""


def _file_mode():
    """The mode a plain ``open(path, "w")`` would give: 0o666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _json_default(value):
    """Let NumPy scalars and arrays in an architecture dict go into the JSON header."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a model file header")


def atomic_write(path, write):
    """Call ``write(file_object)`` on a temporary file, then rename it to ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # said here in the caller's words: the temporary file's name would be in the OS's
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise IsADirectoryError(f"cannot write {path!r}: it names a folder (give a file name, "
                                f"such as {os.path.join(path, 'model.npz')!r})")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: there is no folder {folder!r}")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".partial", dir=folder)
    try:
        os.fchmod(fd, _file_mode())  # mkstemp makes 0600 files; follow the umask instead
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _header(network_state, file_format, **extra):
    """The JSON header of a model file or checkpoint, as a uint8 array."""
    header = {
        "format": file_format,
        "format_version": FORMAT_VERSION,
        "nncore_version": __version__,
        "dtype": network_state["dtype"],
        "n_params": int(network_state["params"].size),
        "layers": network_state["layers"],
        "architecture": network_state["architecture"],
        "loss": network_state["loss"],
        **{key: network_state[key] for key in ("classes", "scaling", "feature_names")
           if network_state.get(key) is not None},
        **extra,
    }
    return np.frombuffer(json.dumps(header, default=_json_default).encode("utf-8"),
                         dtype=np.uint8)


def write_model(path, state):
    """Write a network's ``state`` (see the module docstring) to ``path``, an ``.npz``
    model file, atomically; returns the path."""
    header_bytes = _header(state, FORMAT)
    atomic_write(path, lambda f: np.savez(f, header=header_bytes, params=state["params"]))
    return path


#: What a damaged zip archive can raise while being read (zlib.error for bad deflate data,
#: NotImplementedError for a mangled compression-method field).
_CORRUPTION_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError,
                      NotImplementedError)


def _open_npz(path):
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        # np.load takes anything that is neither a zip archive nor an .npy file for a
        # pickle and refuses it as such: a CSV given as the model would read as one
        what = "an empty file" if not magic else "not an .npz (zip) archive"
        raise ModelFileError(f"{path!r} is not an nncore file: it is {what}")
    archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a .npy file holds one bare array
        raise ModelFileError(f"{path!r} is not an nncore file: it is not an .npz archive")
    return archive


def read_header_and_params(path, expected_format=FORMAT):
    """Open a model file (or a checkpoint, with ``expected_format``) and return
    ``(header, params)``, or raise ModelFileError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    if os.path.isdir(path):
        what = "model file" if expected_format == FORMAT else "checkpoint"
        raise ModelFileError(f"{path!r} is a directory, not a {what}")
    try:
        with _open_npz(path) as archive:
            missing = {"header", "params"} - set(archive.files)
            if missing:
                raise ModelFileError(
                    f"{path!r} is not an nncore model file: it lacks {sorted(missing)}")
            header_bytes = archive["header"]
            params = archive["params"]
    except ModelFileError:
        raise
    except ValueError as error:  # object arrays refused by allow_pickle=False, bad arrays
        raise ModelFileError(f"{path!r} cannot be read safely as a model file: {error}") from None
    except _CORRUPTION_ERRORS as error:
        raise ModelFileError(f"{path!r} is truncated or corrupted: {error}") from None
    if header_bytes.dtype != np.uint8 or header_bytes.ndim != 1:
        raise ModelFileError(f"{path!r}: the header is not a byte array")
    try:
        header = json.loads(header_bytes.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path!r}: the header is not valid JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != expected_format:
        what = "model file" if expected_format == FORMAT else "checkpoint"
        raise ModelFileError(f"{path!r} is not an nncore {what}")
    version = header.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} has model format version {version!r}; this "
            f"nncore ({__version__}) reads version {FORMAT_VERSION}")
    for key in ("dtype", "n_params", "layers"):
        if key not in header:
            raise ModelFileError(f"{path!r}: the header lacks {key!r}")
    if header["dtype"] not in ("float32", "float64") or params.dtype != np.dtype(header["dtype"]):
        raise ModelFileError(
            f"{path!r}: parameters are {params.dtype}, header says {header['dtype']!r}")
    if params.ndim != 1 or params.size != header["n_params"]:
        raise ModelFileError(
            f"{path!r}: expected {header['n_params']} parameters, found shape {params.shape}")
    if not np.isfinite(params).all():
        raise ModelFileError(f"{path!r}: the parameters contain NaN or infinity")
    return header, params


def read_model(path):
    """Read a model file written by :func:`write_model`: returns the network's state, a
    dict with ``dtype``, ``layers``, ``architecture`` and ``params``. Raises
    ModelFileError for anything that is not a valid model file."""
    header, params = read_header_and_params(path)
    return _state(header, params)


def _state(header, params):
    # files written before regression existed have no "loss": they are classifiers
    return {"dtype": header["dtype"], "layers": header["layers"],
            "architecture": header.get("architecture"),
            "loss": header.get("loss", "softmax_cross_entropy"), "params": params,
            # files written before labels, scaling and feature names travelled with the
            # model have none of them: class indices, no standardisation, no names
            "classes": header.get("classes"), "scaling": header.get("scaling"),
            "feature_names": header.get("feature_names")}


# --- training checkpoints ----------------------------------------------------------------------

CHECKPOINT_FORMAT = "nncore-checkpoint"
CHECKPOINT_FILE = "checkpoint.npz"


#: Archive entries that are not optimizer state arrays.
_RESERVED = ("header", "params")


def save_checkpoint(path, network_state, optimizer_state, state):
    """Write a training checkpoint atomically: the network's state, the optimizer's state
    and ``state`` (a JSON-able dict: epochs done, shuffling RNG state, history, settings).

    ``optimizer_state`` is ``{"name": str, "arrays": {name: array like the parameters},
    "counters": {name: int}}``: each array is stored under its own name (SGD's under
    ``velocity``, as checkpoints have always held it), the name and counters in the
    header."""
    arrays = dict(optimizer_state["arrays"])
    for name, array in arrays.items():
        if name in _RESERVED or not isinstance(array, np.ndarray) \
                or array.shape != network_state["params"].shape:
            raise ValueError(f"optimizer state array {name!r} cannot be checkpointed")
    header_bytes = _header(network_state, CHECKPOINT_FORMAT, state=state,
                           optimizer={"name": optimizer_state["name"], "arrays": list(arrays),
                                      "counters": dict(optimizer_state["counters"])})
    atomic_write(path, lambda f: np.savez(f, header=header_bytes,
                                          params=network_state["params"], **arrays))
    return path


def load_checkpoint(path):
    """Read a checkpoint: returns ``(network_state, optimizer_state, state)``, with
    ``optimizer_state`` as :func:`save_checkpoint` takes it and ``state`` the training
    state. A checkpoint written before optimizers other than SGD existed holds only
    ``velocity``: it reads as SGD's state. Raises ModelFileError for anything that is not a
    valid checkpoint."""
    path = os.fspath(path)
    header, params = read_header_and_params(path, expected_format=CHECKPOINT_FORMAT)
    saved = header.get("optimizer", {"name": "sgd", "arrays": ["velocity"], "counters": {}})
    if not isinstance(saved, dict) or not isinstance(saved.get("name"), str) \
            or not isinstance(saved.get("arrays"), list) \
            or not isinstance(saved.get("counters"), dict) \
            or not all(isinstance(name, str) and name not in _RESERVED
                       for name in saved["arrays"]) \
            or not all(type(value) is int and value >= 0
                       for value in saved["counters"].values()):
        raise ModelFileError(f"{path!r}: the checkpoint's optimizer entry is invalid")
    arrays = {}
    try:
        with _open_npz(path) as archive:
            for name in saved["arrays"]:
                if name not in archive.files:
                    raise ModelFileError(f"{path!r} is not an nncore checkpoint: it lacks "
                                         f"{name!r}")
                arrays[name] = archive[name]
    except ModelFileError:
        raise
    except ValueError as error:
        raise ModelFileError(f"{path!r} cannot be read safely as a checkpoint: {error}") from None
    except _CORRUPTION_ERRORS as error:
        raise ModelFileError(f"{path!r} is truncated or corrupted: {error}") from None
    for name, array in arrays.items():
        if array.shape != params.shape or array.dtype != params.dtype:
            raise ModelFileError(f"{path!r}: {name} does not match the parameters")
        if not np.isfinite(array).all():
            raise ModelFileError(f"{path!r}: {name} contains NaN or infinity")
    if not isinstance(header.get("state"), dict):
        raise ModelFileError(f"{path!r}: the checkpoint has no training state")
    optimizer_state = {"name": saved["name"], "arrays": arrays,
                       "counters": dict(saved["counters"])}
    return _state(header, params), optimizer_state, header["state"]
