"""Grid search: every combination of a grid trained, scored, and kept with its full curves.

    from nncore.search import grid_search
    results = grid_search("auto", {"lr": [0.01, 0.05], "width": [16, 32]}, "peaks",
                          epochs=10, fixed={"architecture": "resnet", "depth": 2},
                          n_jobs=2, results="peaks-search.jsonl")
    print(results.table())
    results.best["params"], results.best["history"]["val_accuracy"]

How it works
------------
- A *trial* is one combination of the grid's values, completed by ``fixed`` and by the
  defaults (:func:`training_defaults`). Keys in :data:`TRAINING_KEYS` set the optimiser
  (``optimizer``, a name in :data:`nncore.optim.OPTIMIZERS`, default "sgd", and its
  settings), the batch size and the number of epochs; ``repeat`` only changes the seed (for
  replicas); every other key goes to ``build``, which makes the network.
- Each trial's seeds come from the base ``seed`` and the trial's resolved settings (a hash of
  their canonical JSON), never from its position in the grid or the worker that runs it. With
  BLAS limited to one thread inside each trial, the same search gives the same trials, bit
  for bit, whatever ``n_jobs`` or the joblib backend (only the timings differ).
- Each finished trial is appended to a JSON-lines file as soon as it finishes (one object a
  line: settings, seeds, status, final scores and the whole per-epoch history). A search
  started again with the same file skips every trial already in it, so an interrupted search
  resumes where it stopped. Ctrl-C stops the search: the trial it cuts short is not written
  (fit raises KeyboardInterrupt again), so resuming reruns it. A trial is identified by a key over its settings, the base seed,
  the builder and a fingerprint of the data, so a file can hold several searches.
- Trials run through joblib (``n_jobs``, ``backend``); on a Dask cluster choose joblib's
  ``"dask"`` backend with a ``dask.distributed.Client`` open (see docs/study.md).

The results file, :class:`SearchResults` and :func:`read_results` live in
:mod:`nncore.results`; the BLAS and joblib helpers in :mod:`nncore.parallel`.
"""

import hashlib
import inspect
import itertools
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from . import _validation as v
from ._validation import integer
from .network import build
from .optim import OPTIMIZERS, SCHEDULES
from .parallel import checked_n_jobs, one_blas_thread, run_unordered
from .results import (METRICS, RECORD_FORMAT, ResultsWriter, SearchResults, canonical,
                      read_results, score, value_text)
from .train import TrainingDiverged, fit

__all__ = [
    "METRICS",
    "TRAINING_DEFAULTS",
    "TRAINING_KEYS",
    "training_defaults",
    "SearchResults",
    "build_network",
    "grid_search",
    "load_grid",
    "read_results",
    "trial_seeds",
]

#: Grid keys that set training rather than the network, and their defaults (those of
#: ``nncore train``, whose optimizer is SGD). ``epochs`` defaults to the ``epochs`` argument
#: of :func:`grid_search`; a trial with another ``optimizer`` takes that optimizer's own
#: defaults for the settings not given (:func:`training_defaults`).
TRAINING_DEFAULTS = {"lr": 0.02, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0,
                     "schedule": "cosine", "batch_size": 64}
#: The optimizer of a trial that names none. Its trials' keys and seeds leave the
#: ``optimizer`` key out, so results files written before it existed keep resuming.
DEFAULT_OPTIMIZER = "sgd"
TRAINING_KEYS = (*TRAINING_DEFAULTS, "epochs", "optimizer", "betas", "eps")
#: A grid key that changes only the trial's seed: ``repeat = [0, 1, 2]`` runs three replicas.
REPEAT_KEY = "repeat"

_FLOAT_KEYS = ("lr", "momentum", "weight_decay", "eps")
_POSITIVE_KEYS = ("lr", "eps")
_INT_KEYS = {"batch_size": 1, "epochs": 1, "width": 1, "depth": 0, "hidden": 1,
             REPEAT_KEY: 0}


# --------------------------------------------------------------------------------------------
# The default builder
# --------------------------------------------------------------------------------------------


def build_network(n_in, n_classes, seed, architecture="resnet", width=64, depth=4, hidden=None,
                  layers=None, activation="tanh", dtype="float32"):
    """The builder ``grid_search("auto", ...)`` uses: :func:`nncore.network.build`, whose
    settings are the grid keys ``architecture``, ``width``, ``depth``, ``hidden``,
    ``layers``, ``activation`` and ``dtype``.

    A function of its own because a trial's key records its builder by name
    (``nncore.search.build_network``): results files written earlier keep resuming.
    """
    return build(n_in, n_classes, seed, architecture, width=width, depth=depth, hidden=hidden,
                 layers=layers, activation=activation, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Settings, seeds and keys
# --------------------------------------------------------------------------------------------


def _digest(value):
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def _normalise(where, key, value):
    """A grid or fixed value checked and in canonical form (floats for rates, ints for
    sizes), so that ``lr = 1`` and ``lr = 1.0`` are the same trial."""
    if not isinstance(key, str) or not key:
        raise TypeError(f"{where} keys must be non-empty strings, got {key!r}")
    label = f"{where}[{key!r}]"
    if key == "momentum":  # SGD's rule, [0, 1), from nncore._validation
        try:
            return v.momentum(value, name=label)
        except TypeError:
            raise TypeError(f"{label} must be a number, got {value!r}") from None
    if key in _FLOAT_KEYS:
        exclusive = key in _POSITIVE_KEYS
        try:
            return v.real_number(label, value, minimum=0.0, exclusive_minimum=exclusive)
        except TypeError:  # said as a grid file's author reads it
            raise TypeError(f"{label} must be a number, got {value!r}") from None
        except ValueError:
            raise ValueError(f"{label} must be a finite number {'>' if exclusive else '>='} 0, "
                             f"got {value}") from None
    if key in _INT_KEYS:
        if key == "hidden" and value is None:
            return None
        return v.integer(label, value, minimum=_INT_KEYS[key])
    if key == "nesterov":
        return v.boolean(label, value)
    if key == "schedule":
        return "constant" if value is None else v.choice(label, value, SCHEDULES)
    if key == "optimizer":
        return v.choice(label, value, OPTIMIZERS)
    if key == "betas":
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) \
                or len(value) != 2:
            raise TypeError(f"{label} must be a pair [beta1, beta2], got {value!r} (in a grid, "
                            "a list of pairs)")
        return [v.real_number(f"{label}[{i}]", beta, minimum=0.0, maximum=1.0,
                              exclusive_maximum=True) for i, beta in enumerate(value)]
    try:
        canonical(value)
    except (TypeError, ValueError):
        raise TypeError(f"{label} must be a string, number, boolean or list of them (JSON), "
                        f"got {value!r}") from None
    return value


def _checked_grid(grid):
    if not isinstance(grid, dict):
        raise TypeError(f"grid must be a dict of key -> list of values, got {type(grid).__name__}")
    if not grid:
        raise ValueError("grid is empty: give at least one key with a list of values")
    checked = {}
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)):
            values = [values]
        if len(values) == 0:
            raise ValueError(f"grid[{key!r}] is an empty list; give at least one value")
        values = [_normalise("grid", key, value) for value in values]
        texts = [canonical(value) for value in values]
        for i, text in enumerate(texts):
            if text in texts[:i]:
                raise ValueError(f"grid[{key!r}] lists the value {values[i]!r} twice")
        checked[key] = values
    return checked


def _checked_fixed(fixed, grid):
    if fixed is None:
        return {}
    if not isinstance(fixed, dict):
        raise TypeError(f"fixed must be a dict of key -> value, got {type(fixed).__name__}")
    both = sorted(set(fixed) & set(grid))
    if both:
        raise ValueError(f"{', '.join(map(repr, both))} given both in grid and in fixed; "
                         "keep each key in one of them")
    return {key: _normalise("fixed", key, value) for key, value in fixed.items()}


def _constructor_defaults(cls):
    return {name: parameter.default
            for name, parameter in inspect.signature(cls).parameters.items()}


def training_defaults(optimizer=DEFAULT_OPTIMIZER):
    """The training settings of a trial with ``optimizer`` that the grid does not set: the
    optimizer's constructor defaults (for SGD, :data:`TRAINING_DEFAULTS`; Adam: lr 0.001,
    betas [0.9, 0.999], eps 1e-8, weight_decay 0) with ``nncore train``'s cosine schedule
    and batch size 64. ``epochs`` is the search's."""
    defaults = _constructor_defaults(OPTIMIZERS[optimizer])
    if "betas" in defaults:
        defaults["betas"] = list(defaults["betas"])
    return {**defaults, "schedule": TRAINING_DEFAULTS["schedule"],
            "batch_size": TRAINING_DEFAULTS["batch_size"]}


def _training(settings, epochs):
    """A trial's resolved training settings: the optimizer's defaults completed by the
    training keys given. A key the optimizer does not take is refused."""
    name = settings.get("optimizer", DEFAULT_OPTIMIZER)
    defaults = training_defaults(name)
    for key in settings:
        if key in TRAINING_KEYS and key not in (*defaults, "epochs", "optimizer"):
            takers = [other for other in OPTIMIZERS if key in training_defaults(other)]
            raise ValueError(f"{key!r} is a setting of optimizer {' or '.join(map(repr, takers))}"
                             f"; a trial with optimizer {name!r} does not take it (search the "
                             "optimizers in separate grids)")
    return {**defaults, "epochs": epochs, "optimizer": name,
            **{k: value for k, value in settings.items() if k in TRAINING_KEYS}}


def _identity(training):
    """The training settings that identify a trial (its key and seeds): all of them, but
    the default optimizer's name, which trials recorded before there was a choice lack."""
    return {k: value for k, value in training.items()
            if not (k == "optimizer" and value == DEFAULT_OPTIMIZER)}


def _optimizer(training):
    """The optimizer of a trial's resolved training settings (checks them)."""
    name = training.get("optimizer", DEFAULT_OPTIMIZER)
    cls = OPTIMIZERS[name]
    parameters = _constructor_defaults(cls)
    return cls(**{k: value for k, value in training.items() if k in parameters})


def trial_seeds(seed, settings):
    """The two seeds of a trial: ``(init_seed, shuffle_seed)``.

    Derived from the base ``seed`` and the trial's resolved ``settings`` (a dict of the
    model and training settings; ``epochs`` is left out, so a longer run of the same trial
    starts the same way) through SHA-256 and ``numpy.random.SeedSequence``, so they depend
    on nothing else: not the trial's position in the grid, not the worker, not ``n_jobs``.

    Parameters
    ----------
    seed : int >= 0
    settings : dict
        JSON-serialisable.

    Returns
    -------
    tuple of int
        Two integers in ``[0, 2**32)``.
    """
    seed = integer("seed", seed, minimum=0)
    settings = {key: value for key, value in settings.items() if key != "epochs"}
    words = np.frombuffer(hashlib.sha256(canonical(settings).encode()).digest(), dtype="<u4")
    state = np.random.SeedSequence([seed, *map(int, words)]).generate_state(2)
    return int(state[0]), int(state[1])


def _build_name(build):
    module = getattr(build, "__module__", None) or "?"
    return f"{module}.{getattr(build, '__qualname__', type(build).__name__)}"


def _fingerprint(arrays):
    """``sha256:...`` over the shapes, dtypes and bytes of the four data arrays."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return "sha256:" + digest.hexdigest()[:32]


def _checked_data(data):
    """``(X, y, X_val, y_val)`` from a name, a path or four arrays."""
    from . import datasets

    if isinstance(data, (str, os.PathLike)):
        X, y, X_val, y_val = datasets.load(data)
    elif isinstance(data, (tuple, list)) and len(data) == 4:
        X, y, X_val, y_val = data
    else:
        raise TypeError("data must be a data set name, a path, or a tuple "
                        f"(X_train, y_train, X_val, y_val), got {type(data).__name__}")
    X = v.features(X, name="X_train", source="data", allow_empty=False)
    X_val = v.features(X_val, X.shape[1], name="X_val", source="data", allow_empty=False,
                       expected_by="X_train")
    y = v.class_labels(y, X.shape[0], name="y_train", source="data")
    y_val = v.class_labels(y_val, X_val.shape[0], name="y_val", source="data")
    return X, y, X_val, y_val


# --------------------------------------------------------------------------------------------
# One trial (runs in a worker)
# --------------------------------------------------------------------------------------------


def _json_number(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _run_trial(spec, data, build):
    """Train one trial; returns its record (a JSON-serialisable dict)."""
    X, y, X_val, y_val = data
    training = spec["training"]
    with one_blas_thread():
        network = build(X.shape[1], spec["n_classes"], spec["init_seed"], **spec["model"])
        optimizer = _optimizer(training)
        status, message = "ok", None
        started = time.perf_counter()
        try:
            history = fit(network, X, y, epochs=training["epochs"],
                          batch_size=training["batch_size"], optimizer=optimizer,
                          validation_data=(X_val, y_val), seed=spec["shuffle_seed"], verbose=0)
        except TrainingDiverged as error:
            history, status, message = network.history, "diverged", str(error)
        seconds = time.perf_counter() - started
    columns = {column: [_json_number(value) if column != "epoch" else int(value)
                        for value in history[column]] for column in history.columns}
    final = {column: columns[column][-1] if len(history) else None
             for column in ("loss", "accuracy", "val_loss", "val_accuracy")}
    val_accuracy = [value for value in columns["val_accuracy"] if value is not None]
    best = None
    if val_accuracy:
        best_index = int(np.argmax(val_accuracy))
        best = {"val_accuracy": val_accuracy[best_index], "epoch": best_index + 1}
    if status != "ok":
        final = {column: None for column in final}
    return {
        "format": RECORD_FORMAT,
        "key": spec["key"],
        "params": spec["params"],
        "model": spec["model"],
        "training": training,
        "build": spec["build"],
        "seed": spec["seed"],
        "init_seed": spec["init_seed"],
        "shuffle_seed": spec["shuffle_seed"],
        "data": spec["data"],
        "status": status,
        "message": message,
        "architecture": network.architecture,
        "n_params": int(network.n_params),
        "epochs_run": len(history),
        "final": final,
        "best": best,
        "seconds": seconds,
        "history": columns,
        "nncore_version": __version__,
    }


# --------------------------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------------------------


def _checked_build(build):
    if isinstance(build, str):
        if build != "auto":
            raise ValueError(f"build must be a callable or 'auto', got {build!r}")
        return build_network
    if not callable(build):
        raise TypeError(f"build must be a callable (n_in, n_classes, seed, **params) -> "
                        f"Network, or 'auto'; got {build!r}")
    return build


def _check_build_accepts(build, model_keys):
    """Reject grid keys the builder does not take, before any trial runs."""
    try:
        signature = inspect.signature(build)
    except (TypeError, ValueError):  # some callables have no signature: let them fail late
        return
    parameters = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    accepted = {p.name for p in parameters if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                         inspect.Parameter.POSITIONAL_OR_KEYWORD)}
    unknown = sorted(set(model_keys) - accepted - {"n_in", "n_classes", "seed"})
    if unknown:
        known = sorted(accepted - {"n_in", "n_classes", "seed"}) + list(TRAINING_KEYS)
        raise ValueError(f"unknown grid key(s) {', '.join(map(repr, unknown))} for "
                         f"{_build_name(build)}; known keys: {', '.join(known)}, {REPEAT_KEY}")


def grid_search(build, grid, data, epochs=20, *, fixed=None, seed=0, metric="val_accuracy",
                n_jobs=1, backend=None, results="results.jsonl", verbose=0, on_start=None):
    """Train every combination of ``grid`` and score it on the validation set.

    Parameters
    ----------
    build : callable or "auto"
        ``build(n_in, n_classes, seed, **model_settings) -> Network``, called in the worker
        with the data's feature and class counts, the trial's initialisation seed, and every
        grid or fixed key that is not a training key. ``"auto"`` is
        :func:`build_network` (keys ``architecture``, ``width``, ``depth``, ``hidden``,
        ``layers``, ``activation``, ``dtype``). For process or Dask workers it must be
        picklable (joblib and Dask use cloudpickle, so a lambda works).
    grid : dict
        Key -> list of values (a single value counts as a one-value list). Training keys
        (:data:`TRAINING_KEYS`): ``optimizer`` ("sgd", "adam", "adamw"; default "sgd"),
        its settings (SGD: ``lr``, ``momentum``, ``nesterov``, ``weight_decay``; Adam and
        AdamW: ``lr``, ``betas`` as ``[beta1, beta2]``, ``eps``, ``weight_decay``; a key
        the trial's optimizer does not take is refused), ``schedule``, ``batch_size``,
        ``epochs``; ``repeat`` changes only the seed; the rest go to ``build``. Trials run
        over the Cartesian product, in the order of the keys and values given.
    data : str, os.PathLike or tuple
        A data set name or path (read by :func:`nncore.datasets.load`) or
        ``(X_train, y_train, X_val, y_val)``.
    epochs : int >= 1
        Epochs per trial, unless ``epochs`` is a grid or fixed key.
    fixed : dict, optional
        Settings shared by every trial (same keys as the grid); they override the
        defaults (:func:`training_defaults`).
    seed : int >= 0
        The base seed; each trial's seeds derive from it and the trial's settings
        (:func:`trial_seeds`).
    metric : str
        What the results are ranked by: a key of :data:`METRICS`, read at the last epoch
        (``best_val_accuracy``: the best epoch).
    n_jobs : int or None
        Trials run at once (joblib's meaning: -1 for all cores; None for the value of an
        enclosing ``joblib.parallel_config``).
    backend : str, optional
        A joblib backend: ``"loky"`` (processes, joblib's default), ``"threading"`` (the
        kernels release the GIL), ``"dask"`` (needs a ``dask.distributed.Client``), or None
        for the enclosing ``joblib.parallel_config``.
    results : str or os.PathLike
        The JSON-lines file. Trials already in it (same key) are not run again; each new one
        is appended as soon as it finishes. An existing file with lines but no trial record
        (not a results file) is refused, ValueError, and left as it is.
    verbose : {0, 1, 2}
        0 silent; 1 a progress bar across trials (stderr); 2 one line per finished trial.
    on_start : callable, optional
        Called with no argument once every argument is checked and the grid is accepted,
        before the results file is read and any trial runs (``nncore search`` prints its
        header then, so that a refused grid prints only its error).

    Returns
    -------
    SearchResults
        The trials in grid order. Each record holds ``key``, ``params`` (the grid values),
        ``model`` and ``training`` (resolved settings), ``seed``, ``init_seed``,
        ``shuffle_seed``, ``data`` (fingerprint), ``status`` (``"ok"`` or
        ``"diverged"``), ``message``, ``architecture``, ``n_params``, ``epochs_run``,
        ``final`` (loss, accuracy, val_loss, val_accuracy at the last epoch; None if
        diverged), ``best`` (best validation accuracy and its epoch), ``seconds`` and
        ``history`` (every epoch's loss, accuracy, val_loss, val_accuracy, lr and seconds).
        Everything but the timings is the same for any ``n_jobs`` and backend.

    Raises
    ------
    ValueError, TypeError
        For a bad argument or grid value, naming it, before any trial runs.
    """
    build = _checked_build(build)
    grid = _checked_grid(grid)
    fixed = _checked_fixed(fixed, grid)
    epochs = integer("epochs", epochs)
    seed = integer("seed", seed, minimum=0)
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {tuple(METRICS)}, got {metric!r}")
    n_jobs = checked_n_jobs(n_jobs)
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend must be a joblib backend name or None, got {backend!r}")
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    if not isinstance(results, (str, os.PathLike)):
        raise TypeError(f"results must be a file path, got {type(results).__name__}")
    X, y, X_val, y_val = _checked_data(data)
    n_classes = int(max(y.max(), y_val.max())) + 1
    fingerprint = _fingerprint((X, y, X_val, y_val))

    model_keys = [k for k in [*fixed, *grid] if k not in TRAINING_KEYS and k != REPEAT_KEY]
    _check_build_accepts(build, model_keys)
    build_label = _build_name(build)

    specs, probed = [], set()
    keys = list(grid)
    for values in itertools.product(*(grid[key] for key in keys)):
        params = dict(zip(keys, values))
        settings = {**fixed, **params}
        training = _training(settings, epochs)
        model = {k: v for k, v in settings.items() if k not in TRAINING_KEYS and k != REPEAT_KEY}
        if training["batch_size"] > len(X):
            raise ValueError(f"batch_size {training['batch_size']} is larger than the "
                             f"training set ({len(X)} samples)")
        # what the optimizer requires of its settings (SGD's Nesterov needs momentum),
        # before any trial runs
        try:
            _optimizer(training)
        except (TypeError, ValueError) as error:
            raise type(error)(f"trial {params}: {error}") from None
        # the seeds ignore the number of epochs, so a longer run of a trial starts the same way
        seed_settings = {"model": model,
                         "training": {k: v for k, v in _identity(training).items()
                                      if k != "epochs"},
                         REPEAT_KEY: settings.get(REPEAT_KEY, 0)}
        init_seed, shuffle_seed = trial_seeds(seed, seed_settings)
        model_text = canonical(model)
        if model_text not in probed:  # build once in the parent: bad settings fail now
            probed.add(model_text)
            try:
                network = build(X.shape[1], n_classes, 0, **model)
            except (TypeError, ValueError) as error:
                raise type(error)(f"cannot build a network from {model}: {error}") from None
            if getattr(network, "n_classes", n_classes) < n_classes:
                raise ValueError(f"the network built from {model} has {network.n_classes} "
                                 f"outputs but the data has {n_classes} classes")
        key = _digest({"build": build_label, "model": model, "training": _identity(training),
                       "seed": seed, REPEAT_KEY: settings.get(REPEAT_KEY, 0),
                       "data": fingerprint})[:24]
        specs.append({"key": key, "params": params, "model": model, "training": training,
                      "build": build_label, "seed": seed, "init_seed": init_seed,
                      "shuffle_seed": shuffle_seed, "data": fingerprint,
                      "n_classes": n_classes})

    if on_start is not None:
        on_start()
    done = {}
    for record in read_results(results):
        done.setdefault(record["key"], record)
    wanted = {spec["key"] for spec in specs}
    finished = {key: record for key, record in done.items() if key in wanted}
    todo = [spec for spec in specs if spec["key"] not in finished]
    varying = [key for key in keys if len(grid[key]) > 1] or keys

    if verbose and finished:
        print(f"resuming: {len(finished)} of {len(specs)} trials already in {results}",
              file=sys.stderr, flush=True)
    progress = _Progress(len(specs), len(finished), varying, metric, verbose)
    if todo:
        writer = ResultsWriter(results)
        try:
            calls = ((spec, (X, y, X_val, y_val), build) for spec in todo)
            for record in run_unordered(_run_trial, calls, n_jobs, backend):
                writer.write(record)
                finished[record["key"]] = record
                progress.update(record)
        finally:
            writer.close()
            progress.close()
    else:
        progress.close()
    trials = [finished[spec["key"]] for spec in specs]
    for spec, trial in zip(specs, trials):
        trial["params"] = spec["params"]  # the grid's view of a record written by another grid
    return SearchResults(trials, metric, varying, Path(results),
                         n_resumed=len(specs) - len(todo))


class _Progress:
    """Progress across trials: a tqdm bar (verbose=1) or a line per trial (verbose=2)."""

    def __init__(self, total, already, keys, metric, verbose):
        self.total, self.count, self.keys, self.metric = total, already, keys, metric
        self.verbose, self.best, self.bar = verbose, None, None
        if verbose == 1:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=already, unit="trial", file=sys.stderr,
                            dynamic_ncols=True, desc="grid search")

    def update(self, record):
        self.count += 1
        value = score(record, self.metric)
        better = METRICS[self.metric]
        if value is not None and (self.best is None or
                                  (value > self.best if better else value < self.best)):
            self.best = value
        if self.bar is not None:
            if self.best is not None:
                self.bar.set_postfix_str(f"best {self.metric} {self.best:.4f}", refresh=False)
            self.bar.update(1)
        elif self.verbose == 2:
            described = " ".join(f"{k}={value_text(record['params'].get(k))}" for k in self.keys)
            outcome = (f"{self.metric} {value:.4f}" if value is not None
                       else record["status"])
            print(f"[{self.count}/{self.total}] {described}: {outcome} "
                  f"({record['seconds']:.1f} s)", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------
# Grid files
# --------------------------------------------------------------------------------------------


def _toml_module():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


#: Top-level keys a grid file may hold besides the [grid] and [fixed] tables.
GRID_FILE_KEYS = ("epochs", "seed", "metric")


def load_grid(path):
    """Read a search from a TOML file.

    The file holds a ``[grid]`` table (key = list of values), an optional ``[fixed]`` table
    (key = value, shared by every trial) and optional top-level ``epochs``, ``seed`` and
    ``metric``::

        epochs = 20
        seed = 0

        [fixed]
        architecture = "resnet"
        depth = 2

        [grid]
        lr = [0.01, 0.02, 0.05]
        batch_size = [32, 64]
        width = [16, 32]

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``{"grid": dict, "fixed": dict, "epochs": int or None, "seed": int or None,
        "metric": str or None}``, checked as :func:`grid_search` checks them.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not valid TOML or holds unknown or bad keys (the message names them).
    """
    tomllib = _toml_module()
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"grid file {os.fspath(path)!r} is a directory, not a TOML file")
    if not path.is_file():
        raise FileNotFoundError(f"grid file {os.fspath(path)!r} not found")
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from None
    unknown = sorted(set(document) - {"grid", "fixed", *GRID_FILE_KEYS})
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                         f"a grid file holds [grid], [fixed], {', '.join(GRID_FILE_KEYS)}")
    if "grid" not in document or not isinstance(document["grid"], dict):
        raise ValueError(f"{path}: no [grid] table (e.g. '[grid]' then 'lr = [0.01, 0.1]')")
    fixed = document.get("fixed", {})
    if not isinstance(fixed, dict):
        raise ValueError(f"{path}: fixed must be a table ([fixed])")
    try:
        grid = _checked_grid(document["grid"])
        fixed = _checked_fixed(fixed, grid)
        epochs = document.get("epochs")
        if epochs is not None:
            epochs = integer("epochs", epochs)
        seed = document.get("seed")
        if seed is not None:
            seed = integer("seed", seed, minimum=0)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
    metric = document.get("metric")
    if metric is not None and metric not in METRICS:
        raise ValueError(f"{path}: metric must be one of {tuple(METRICS)}, got {metric!r}")
    return {"grid": grid, "fixed": fixed, "epochs": epochs, "seed": seed, "metric": metric}
