"""The study behind nncore, reproducible in one command: ``nncore experiments``.

For each data set it writes ``OUT/<name>.md`` and the figures it links (in ``OUT/<name>/``):

1. softmax regression trained by SGD with momentum: loss and accuracy curves, final scores;
2. a grid search over learning rate x batch size for it: a table and a heatmap;
3. a standard network and a ResNet with comparable parameter counts: each at its best
   learning rate from a small grid, then trained with several seeds; curves side by side,
   parameter counts, accuracy and training time;
4. decision boundaries of the three models (2-D data only);
5. gradient tests of the three trained networks (a float64 copy of each): a Taylor test of
   the loss with respect to the parameters, with its figure, and a Jacobian-transpose test
   of the backward pass;
6. the exact command, seed, versions and machine.

``OUT/index.md`` sums up every data set of the run. :data:`FULL` and :data:`QUICK` hold the
settings; ``--quick`` trains on a subset with small networks and few epochs (a smoke run:
its numbers say nothing about the methods).

How a data set is studied: named steps (``_load_data``, ``_softmax_grid``,
``_softmax_regression``, ``_network_grid``, ``_compare_networks``, ``_gradient_tests_of``)
fill a :class:`StudyResult`; the figures are drawn from it (:mod:`nncore.plots`), and
:func:`nncore.report.render` turns it into the Markdown. Provenance comes from
:mod:`nncore.provenance`, one BLAS thread per training run from :mod:`nncore.parallel`.
"""

import dataclasses
import math
import os
import re
import time
from pathlib import Path

import numpy as np

from . import check, datasets, plots, provenance, report
from .network import Network, build, count_params
from .optim import SGD
from ._validation import choice, integer
from .parallel import checked_n_jobs, one_blas_thread
from .report import ARCHITECTURE_LABELS, pct
from .results import score
from .search import _fingerprint, grid_search
from .train import TrainingDiverged, fit

__all__ = ["FULL", "QUICK", "StudyResult", "StudySettings", "comparable_mlp_width",
           "run_study", "standard_or_resnet"]

#: Names ``--data all`` stands for (the bundled sets).
ALL_DATASETS = ("peaks", "gmm", "swissroll")


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """What the study trains. :data:`FULL` and :data:`QUICK` are the two presets.

    Attributes
    ----------
    max_train : int or None
        Train on a seeded random subset of this many samples (None: all).
    softmax_lrs, softmax_batch_sizes : tuple
        The learning rate x batch size grid for softmax regression.
    softmax_epochs : int
    width, depth : int
        The ResNet: ``depth`` residual blocks of ``width`` units; the standard network has
        ``1 + 2 * depth`` hidden layers, as wide as makes its parameter count closest.
    network_lrs : tuple
        Learning rates tried for each architecture; each is then trained at its best.
    network_epochs, network_batch_size : int
    n_seeds : int
        Seeds each architecture is trained with at its best learning rate.
    momentum : float
    schedule : str
    activation : str
    """

    max_train: object
    softmax_lrs: tuple
    softmax_batch_sizes: tuple
    softmax_epochs: int
    width: int
    depth: int
    network_lrs: tuple
    network_epochs: int
    network_batch_size: int
    n_seeds: int
    momentum: float = 0.9
    schedule: str = "cosine"
    activation: str = "tanh"


#: The full study (about 5 minutes for the three bundled sets on 2 cores).
FULL = StudySettings(max_train=None,
                     softmax_lrs=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
                     softmax_batch_sizes=(16, 32, 64, 128, 256), softmax_epochs=20,
                     width=64, depth=4, network_lrs=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
                     network_epochs=30, network_batch_size=64, n_seeds=5)
#: A smoke run: a 4,000-sample subset, small networks, few epochs (seconds per data set).
QUICK = StudySettings(max_train=4000, softmax_lrs=(0.01, 0.1, 1.0),
                      softmax_batch_sizes=(32, 128), softmax_epochs=8,
                      width=16, depth=2, network_lrs=(0.02, 0.1), network_epochs=10,
                      network_batch_size=64, n_seeds=2)

#: Validation samples the gradient tests of the trained networks use.
GRADIENT_TEST_SAMPLES = 128


# --------------------------------------------------------------------------------------------
# The two networks compared
# --------------------------------------------------------------------------------------------


def comparable_mlp_width(n_in, n_classes, width, depth, hidden=None):
    """The width of a standard network with ``1 + 2 * depth`` hidden layers whose parameter
    count is closest to that of ``resnet(n_in, width, depth, n_classes, hidden)``.

    Parameters
    ----------
    n_in, n_classes, width, depth : int
    hidden : int, optional
        Units inside each residual block (default ``width``).

    Returns
    -------
    int
    """
    target = count_params(n_in, n_classes, "resnet", width=width, depth=depth, hidden=hidden)
    n_layers = 1 + 2 * depth

    def distance(mlp_width):
        n_params = count_params(n_in, n_classes, "mlp", layers=[mlp_width] * n_layers)
        return abs(n_params - target), mlp_width

    return min(range(1, 4 * width + 1), key=distance)


def standard_or_resnet(n_in, n_classes, seed, architecture, width, depth, activation="tanh",
                       dtype="float32"):
    """The builder of the comparison (a grid-search ``build``).

    ``architecture="resnet"``: ``resnet(n_in, width, depth, n_classes)``.
    ``architecture="standard"``: an MLP with as many hidden layers as the ResNet has
    activated layers (``1 + 2 * depth``) and the width :func:`comparable_mlp_width` gives,
    so both have about the same number of parameters; the same layers without the skip
    connections.
    """
    common = {"activation": activation, "dtype": dtype}
    if choice("architecture", architecture, ARCHITECTURE_LABELS) == "resnet":
        return build(n_in, n_classes, seed, "resnet", width=width, depth=depth, **common)
    mlp_width = comparable_mlp_width(n_in, n_classes, width, depth)
    return build(n_in, n_classes, seed, "mlp", layers=[mlp_width] * (1 + 2 * depth), **common)


# --------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------


def _dataset_specs(data):
    """``[(name, source)]`` for ``--data`` values: 'all', bundled names, files, folders."""
    if isinstance(data, (str, os.PathLike)):
        data = [data]
    if not isinstance(data, (list, tuple)) or not data:
        raise TypeError(f"data must be a name, a path or a list of them, got {data!r}")
    specs = []
    for item in data:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"data must hold names or paths, got {item!r}")
        text = os.fspath(item)
        if text.lower() == "all":
            specs += [(name, name) for name in ALL_DATASETS]
        elif text.lower() in datasets.BUNDLED_FILES:
            specs.append((text.lower(), text.lower()))
        elif os.path.isdir(text):
            files = sorted(p for p in Path(text).iterdir()
                           if datasets.file_kind(p) is not None and p.is_file())
            if not files:
                raise ValueError(f"data folder {text!r} holds no .mat, .npz or .csv file")
            specs += [(_file_label(p), os.fspath(p)) for p in files]
        elif os.path.exists(text):
            specs.append((_file_label(Path(text)), text))
        else:
            raise FileNotFoundError(f"data {text!r} is neither 'all', a bundled set "
                                    f"({', '.join(ALL_DATASETS)}) nor an existing file or "
                                    "folder")
    names = [name for name, _ in specs]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(f"two data sets would write the same report {name}.md; "
                             "give each once")
    return specs


def _file_label(path):
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem) or "data"


def _subset(X, y, size, seed):
    if size is None or size >= len(X):
        return X, y
    rows = np.random.default_rng(seed).permutation(len(X))[:size]
    return np.ascontiguousarray(X[rows]), np.ascontiguousarray(y[rows])


# --------------------------------------------------------------------------------------------
# Gradient tests of the networks used
# --------------------------------------------------------------------------------------------


def gradient_tests(network, X, y, name, quick=False, seed=0):
    """Check a trained network's derivatives at its weights, in float64.

    A float64 copy of ``network`` gets a Taylor test of the mean cross-entropy on
    ``(X, y)`` with respect to all its parameters (the backward pass), and a
    Jacobian-transpose test of the backward pass against :meth:`Network.jvp`.

    Returns
    -------
    (TaylorResult, TransposeResult)
    """
    copy = Network.from_state({**network.state(), "dtype": "float64"})
    params0 = copy.params.copy()
    X = copy.check_X(X)
    y = copy.check_y(y, len(X))

    def loss(params):
        copy.params[...] = params
        return copy.loss(X, y)

    def gradient():
        copy.params[...] = params0
        copy.loss_and_grad(X, y)
        return copy.grads.copy()

    def jvp(v):
        copy.params[...] = params0
        return copy.jvp(X, v)

    def vjp(u):
        copy.params[...] = params0
        return check.network_forward_backward(copy, X, u)[1]

    settings = check.TAYLOR_SETTINGS["float64", bool(quick)]
    taylor = check.gradient_test(loss, params0, gradient(), seed=seed,
                                 name=f"{name}: loss wrt parameters", **settings)
    transpose = check.jacobian_transpose_test(jvp, vjp, params0, seed=seed,
                                              name=f"{name}: logits wrt parameters")
    copy.params[...] = params0
    return taylor, transpose


# --------------------------------------------------------------------------------------------
# What the study of one data set finds
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DatasetSummary:
    """The data set a study ran on.

    Attributes
    ----------
    name, source : str
        The report's name and what was loaded (a bundled name or a file).
    bundled : bool
        ``source`` names a set that ships with nncore.
    n_train, n_train_all : int
        Training samples trained on (a subset when :attr:`StudySettings.max_train` is
        smaller) and in the data set.
    n_val, n_in, n_classes : int
    chance : float
        Validation accuracy of always predicting the most frequent training class.
    fingerprint : str
        Of the training and validation arrays as loaded (``sha256:...``).
    """

    name: str
    source: str
    bundled: bool
    n_train: int
    n_train_all: int
    n_val: int
    n_in: int
    n_classes: int
    chance: float
    fingerprint: str


@dataclasses.dataclass(frozen=True)
class SoftmaxResult:
    """Softmax regression retrained at the best cell of its grid.

    ``train`` and ``val`` are ``{"loss", "accuracy"}``; ``reproduced`` says whether the
    retrained run's validation losses equal those of the grid's trial of that cell.
    """

    lr: float
    batch_size: int
    history: object
    train: dict
    val: dict
    seconds: float
    reproduced: bool


@dataclasses.dataclass(frozen=True)
class NetworkRun:
    """One seed's training of one architecture of the comparison.

    ``train`` and ``val`` are ``{"loss", "accuracy"}`` (NaN when its outputs overflow);
    ``diverged`` is the message of a run that diverged, else None.
    """

    seed: int
    n_params: int
    history: object
    train: dict
    val: dict
    seconds: float
    diverged: object


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """Everything the report of one data set shows (:func:`nncore.report.render`).

    Attributes
    ----------
    dataset : DatasetSummary
    settings : StudySettings
    quick : bool
    seed, n_jobs : int
    softmax_grid : SearchResults
        The learning rate x batch size grid of softmax regression (every trial with its
        curves).
    softmax_grid_seconds : float
    softmax : SoftmaxResult
        Softmax regression at the best cell.
    network_grid : SearchResults
        The learning rates tried for each architecture.
    network_grid_seconds : float
    best_lrs : dict
        Architecture (``"standard"``, ``"resnet"``) -> the learning rate it was trained at.
    mlp_width : int
        The standard network's width (:func:`comparable_mlp_width`).
    runs : dict
        Architecture -> a :class:`NetworkRun` per seed, in :attr:`seeds` order.
    checks : list
        ``(TaylorResult, TransposeResult)`` of softmax regression, the standard network
        and the ResNet (each the first seed's).
    provenance : nncore.provenance.Provenance
    seconds : float
        The study of this data set, figures included.
    """

    dataset: DatasetSummary
    settings: StudySettings
    quick: bool
    seed: int
    n_jobs: int
    softmax_grid: object
    softmax_grid_seconds: float
    softmax: SoftmaxResult
    network_grid: object
    network_grid_seconds: float
    best_lrs: dict
    mlp_width: int
    runs: dict
    checks: list
    provenance: object
    seconds: float

    @property
    def seeds(self):
        """The seeds the comparison trained each architecture with."""
        return [run.seed for run in self.runs["standard"]]


# --------------------------------------------------------------------------------------------
# The steps of the study of one data set
# --------------------------------------------------------------------------------------------


class _Log:
    def __init__(self, verbose, name):
        self.verbose, self.name = verbose, name

    def __call__(self, text):
        if self.verbose:
            print(f"[{self.name}] {text}", flush=True)


def _scores(network, X, y):
    """``network.evaluate``, or NaN scores when a diverged network's outputs overflow."""
    try:
        return network.evaluate(X, y)
    except ValueError:
        return {"loss": math.nan, "accuracy": math.nan}


def _train(network, X, y, X_val, y_val, settings, lr, batch_size, epochs, seed):
    """Train with the study's optimiser; returns ``(history, seconds, diverged_message)``."""
    optimizer = SGD(lr=lr, momentum=settings.momentum, schedule=settings.schedule)
    started = time.perf_counter()
    message = None
    with one_blas_thread():
        try:
            history = fit(network, X, y, epochs=epochs, batch_size=batch_size,
                          optimizer=optimizer, validation_data=(X_val, y_val), seed=seed,
                          verbose=0)
        except TrainingDiverged as error:
            history, message = network.history, str(error)
    return history, time.perf_counter() - started, message


def _load_data(name, source, settings, seed):
    """``((X, y, X_val, y_val), DatasetSummary)``: the (subset of the) training data."""
    with datasets.classification_only("the study (nncore experiments)"):
        X_all, y_all, X_val, y_val = datasets.load(source)
    X, y = _subset(X_all, y_all, settings.max_train, seed)
    dataset = DatasetSummary(
        name=name, source=source, bundled=source in datasets.BUNDLED_FILES, n_train=len(X),
        n_train_all=len(X_all), n_val=len(X_val), n_in=X.shape[1],
        n_classes=int(max(y_all.max(), y_val.max())) + 1,
        chance=float(np.mean(y_val == np.bincount(y).argmax())),
        fingerprint=_fingerprint((X_all, y_all, X_val, y_val)))
    return (X, y, X_val, y_val), dataset


def _softmax_grid(data, settings, seed, n_jobs, path, log):
    """Sections 1 and 2: softmax regression's learning rate x batch size grid."""
    path.unlink(missing_ok=True)  # a fresh study; the file records this run
    started = time.perf_counter()
    grid = grid_search(
        build, {"lr": list(settings.softmax_lrs),
                        "batch_size": list(settings.softmax_batch_sizes)},
        data, epochs=settings.softmax_epochs,
        fixed={"architecture": "softmax_regression", "momentum": settings.momentum,
               "schedule": settings.schedule},
        seed=seed, n_jobs=n_jobs, results=path)
    seconds = time.perf_counter() - started
    best = grid.best
    if best is None:
        raise ValueError(f"{log.name}: every softmax-regression trial diverged")
    log(f"softmax regression grid: {len(grid)} trials in {seconds:.1f} s, best "
        f"lr {best['params']['lr']:g}, batch {best['params']['batch_size']}: "
        f"{pct(score(best))} validation")
    return grid, seconds


def _softmax_regression(grid, data, dataset, settings):
    """Section 1: the best cell retrained with its own seeds: the same run as the grid's
    trial, now with the network in hand. Returns ``(SoftmaxResult, network)``."""
    X, y, X_val, y_val = data
    best = grid.best
    lr, batch_size = best["params"]["lr"], best["params"]["batch_size"]
    network = build(dataset.n_in, dataset.n_classes, best["init_seed"],
                            architecture="softmax_regression")
    history, seconds, _ = _train(network, *data, settings, lr, batch_size,
                                 settings.softmax_epochs, best["shuffle_seed"])
    result = SoftmaxResult(
        lr=lr, batch_size=batch_size, history=history, train=network.evaluate(X, y),
        val=network.evaluate(X_val, y_val), seconds=seconds,
        reproduced=history["val_loss"] == best["history"]["val_loss"])
    return result, network


def _network_grid(data, settings, seed, n_jobs, path, log):
    """Section 3: the learning rates tried for each architecture. Returns the grid, its
    time, and each architecture's best learning rate (the smallest if all diverged)."""
    path.unlink(missing_ok=True)
    started = time.perf_counter()
    grid = grid_search(
        standard_or_resnet, {"architecture": ["standard", "resnet"],
                             "lr": list(settings.network_lrs)},
        data, epochs=settings.network_epochs,
        fixed={"width": settings.width, "depth": settings.depth,
               "activation": settings.activation, "batch_size": settings.network_batch_size,
               "momentum": settings.momentum, "schedule": settings.schedule},
        seed=seed, n_jobs=n_jobs, results=path)
    seconds = time.perf_counter() - started
    best_lrs = {}
    for architecture in ("standard", "resnet"):
        trials = [t for t in grid.ranked() if t["params"]["architecture"] == architecture]
        best_lrs[architecture] = (trials[0]["params"]["lr"] if score(trials[0]) is not None
                                  else min(settings.network_lrs))
    log(f"network learning-rate grid: {len(grid)} trials in {seconds:.1f} s; best lr: "
        f"standard {best_lrs['standard']:g}, ResNet {best_lrs['resnet']:g}")
    return grid, seconds, best_lrs


def _compare_networks(data, dataset, settings, seed, best_lrs, log):
    """Section 3: each architecture trained at its best learning rate with ``n_seeds``
    seeds. Returns ``{architecture: [NetworkRun]}`` and the first seed's networks."""
    X, y, X_val, y_val = data
    seeds = [seed + i for i in range(settings.n_seeds)]
    runs, networks = {}, {}
    for architecture in ("standard", "resnet"):
        runs[architecture] = []
        for run_seed in seeds:
            network = standard_or_resnet(dataset.n_in, dataset.n_classes, run_seed,
                                         architecture, settings.width, settings.depth,
                                         settings.activation)
            history, seconds, message = _train(
                network, *data, settings, best_lrs[architecture],
                settings.network_batch_size, settings.network_epochs, run_seed)
            runs[architecture].append(NetworkRun(
                seed=run_seed, n_params=network.n_params, history=history, seconds=seconds,
                diverged=message, val=_scores(network, X_val, y_val),
                train=_scores(network, X, y)))
            networks.setdefault(architecture, network)
        accuracies = [run.val["accuracy"] for run in runs[architecture]]
        log(f"{ARCHITECTURE_LABELS[architecture]} at lr {best_lrs[architecture]:g}: "
            f"validation {pct(float(np.mean(accuracies)))} mean over {len(seeds)} seed(s)")
    return runs, networks


def _gradient_tests_of(networks, data, settings, mlp_width, quick, seed):
    """Section 5: :func:`gradient_tests` of each network on 128 validation samples."""
    _, _, X_val, y_val = data
    X_check, y_check = _check_batch(X_val, y_val, seed)
    names = {"softmax": "softmax regression",
             "standard": f"standard network {1 + 2 * settings.depth}x{mlp_width} "
                         f"{settings.activation}",
             "resnet": f"ResNet width {settings.width} depth {settings.depth} "
                       f"{settings.activation}"}
    return [gradient_tests(networks[key], X_check, y_check, names[key], quick, seed)
            for key in ("softmax", "standard", "resnet")]


def _check_batch(X_val, y_val, seed):
    rows = np.random.default_rng(seed).permutation(len(X_val))[:GRADIENT_TEST_SAMPLES]
    return X_val[rows], y_val[rows]


def _draw_figures(result, networks, X_val, y_val, folder):
    """Every figure of a report, drawn from ``result`` (and the trained ``networks`` for the
    decision boundaries) into ``folder``. Returns figure key -> path."""
    name, s = result.dataset.name, result.settings
    softmax, seeds = result.softmax, result.seeds
    figures = {"softmax_curves": plots.learning_curves(
        softmax.history, folder / "softmax-curves.png",
        title=f"{name}: softmax regression by SGD (lr {softmax.lr:g}, batch "
              f"{softmax.batch_size}, momentum {s.momentum:g}, {s.schedule} schedule)",
        percent=True)}
    cells = {(t["params"]["lr"], t["params"]["batch_size"]): score(t)
             for t in result.softmax_grid}
    figures["softmax_heatmap"] = plots.heatmap(
        cells, list(s.softmax_lrs), list(s.softmax_batch_sizes), folder / "softmax-grid.png",
        title=f"{name}: softmax regression, final validation accuracy (%)\n"
              f"after {s.softmax_epochs} epochs of SGD with momentum {s.momentum:g}",
        best=(softmax.lr, softmax.batch_size))
    first = {architecture: runs[0] for architecture, runs in result.runs.items()}
    labels = {architecture: f"{ARCHITECTURE_LABELS[architecture]} "
                            f"({first[architecture].n_params:,} parameters)"
              for architecture in first}
    figures["network_curves"] = plots.comparison_curves(
        [first["standard"].history, first["resnet"].history],
        [labels["standard"], labels["resnet"]], folder / "network-curves.png",
        title=f"{name}: standard network vs ResNet, {s.activation}, each at its best "
              f"learning rate (seed {seeds[0]})")
    if result.dataset.n_in == 2:
        source = str(result.dataset.source)  # a CSV's header names the axes
        feature_names = (datasets.csv_feature_names(source)
                         if datasets.file_kind(source) == ".csv" else None)
        models = {"softmax": ("softmax regression", softmax.val),
                  "standard": (labels["standard"], first["standard"].val),
                  "resnet": (labels["resnet"], first["resnet"].val)}
        for key, (label, scores) in models.items():
            figures[f"boundary_{key}"] = plots.decision_boundary(
                networks[key], X_val, y_val, folder / f"boundary-{key}.png",
                title=f"{name}: {label}\nvalidation points, accuracy "
                      f"{100 * scores['accuracy']:.1f}%",
                seed=result.seed, feature_names=feature_names)
    n_checked = min(GRADIENT_TEST_SAMPLES, len(X_val))
    figures["gradient_tests"] = check.plot_results(
        [taylor for taylor, _ in result.checks], folder / "gradient-tests.png", columns=3,
        title=f"{name}: Taylor tests of the trained networks' gradients (float64 copies, "
              f"{n_checked} validation samples; filled markers: fitted window)")
    return figures


def _study_one(name, loaded, out, settings, quick, seed, n_jobs, command, verbose):
    """Study one data set, ``loaded`` by _load_data: compute, draw, write ``OUT/<name>.md``.

    Returns ``(path of the report, StudyResult)``.
    """
    log = _Log(verbose, name)
    started = time.perf_counter()
    data, dataset = loaded
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    log(f"{dataset.n_train:,} training / {dataset.n_val:,} validation samples, "
        f"{dataset.n_in} features, {dataset.n_classes} classes")
    softmax_grid, softmax_grid_seconds = _softmax_grid(
        data, settings, seed, n_jobs, folder / "softmax-grid.jsonl", log)
    softmax, softmax_network = _softmax_regression(softmax_grid, data, dataset, settings)
    network_grid, network_grid_seconds, best_lrs = _network_grid(
        data, settings, seed, n_jobs, folder / "network-grid.jsonl", log)
    runs, compared = _compare_networks(data, dataset, settings, seed, best_lrs, log)
    networks = {"softmax": softmax_network, **compared}
    mlp_width = networks["standard"].layer_specs()[0]["n_out"]
    checks = _gradient_tests_of(networks, data, settings, mlp_width, quick, seed)
    result = StudyResult(
        dataset=dataset, settings=settings, quick=quick, seed=seed, n_jobs=n_jobs,
        softmax_grid=softmax_grid, softmax_grid_seconds=softmax_grid_seconds,
        softmax=softmax, network_grid=network_grid,
        network_grid_seconds=network_grid_seconds, best_lrs=best_lrs,
        mlp_width=mlp_width, runs=runs, checks=checks, provenance=provenance.collect(command),
        seconds=time.perf_counter() - started)
    figures = _draw_figures(result, networks, data[2], data[3], folder)
    # the time a report gives is that of the whole data set, figures included
    result = dataclasses.replace(result, seconds=time.perf_counter() - started)
    log(f"done in {result.seconds:.1f} s")
    path = out / f"{name}.md"
    path.write_text(report.render(result, {key: Path(figure).relative_to(out)
                                           for key, figure in figures.items()}),
                    encoding="utf-8")
    return path, result


# --------------------------------------------------------------------------------------------
# The whole study
# --------------------------------------------------------------------------------------------


def run_study(data="all", out="reports", quick=False, seed=0, n_jobs=1, command=None,
              verbose=1, settings=None):
    """Run the study on each data set and write its Markdown report and figures.

    Parameters
    ----------
    data : str, os.PathLike or list of them
        ``"all"`` (the three bundled sets), a bundled name (``"peaks"``, ``"gmm"``,
        ``"swissroll"``), a ``.mat``/``.npz``/``.csv`` file, or a folder (every such file in
        it). Each data set's report is named after it (a file's stem).
    out : str or os.PathLike
        Folder for ``<name>.md``, ``<name>/`` (figures and the grids' JSON-lines results)
        and ``index.md``.
    quick : bool
        Use :data:`QUICK` instead of :data:`FULL`.
    seed : int >= 0
    n_jobs : int
        Trials of the grid searches run at once (joblib; -1 for all cores). The results do
        not depend on it.
    command : str, optional
        The command line recorded in the reports (default: this call).
    verbose : {0, 1}
        1 prints a line per stage.
    settings : StudySettings, optional
        Overrides the preset chosen by ``quick``.

    Returns
    -------
    list of pathlib.Path
        The reports written, then ``index.md``.
    """
    if not isinstance(quick, (bool, np.bool_)):
        raise TypeError(f"quick must be True or False, got {quick!r}")
    seed = integer("seed", seed, minimum=0)
    if n_jobs is None or checked_n_jobs(n_jobs) is None:
        raise ValueError("n_jobs must be a nonzero integer (-1 for all cores), got None")
    if verbose not in (0, 1):
        raise ValueError(f"verbose must be 0 or 1, got {verbose!r}")
    if settings is None:
        settings = QUICK if quick else FULL
    elif not isinstance(settings, StudySettings):
        raise TypeError(f"settings must be a StudySettings, got {type(settings).__name__}")
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a folder path, got {type(out).__name__}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {os.fspath(out)!r} exists and is not a folder")
    specs = _dataset_specs(data)
    if command is None:
        command = provenance.python_command(data, out, quick, seed, n_jobs)
    started = time.perf_counter()
    # every data set loaded first: data the study refuses stop it before anything is
    # written (no folder, not even OUT if new; no report of the sets before it)
    loaded = [(name, _load_data(name, source, settings, int(seed))) for name, source in specs]
    paths, results = [], []
    for name, data in loaded:
        path, result = _study_one(name, data, out, settings, bool(quick), int(seed),
                                  int(n_jobs), command, verbose)
        paths.append(path)
        results.append(result)
    index = out / "index.md"
    index.write_text(report.render_index(results, command, quick,
                                         time.perf_counter() - started), encoding="utf-8")
    if verbose:
        print(f"reports: {', '.join(os.fspath(p) for p in paths)}; summary in {index} "
              f"({time.perf_counter() - started:.1f} s)", flush=True)
    return [*paths, index]
