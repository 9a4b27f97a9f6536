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
"""

import dataclasses
import datetime
import math
import os
import re
import time
from pathlib import Path

import numpy as np

from . import check, datasets, plots, provenance
from .network import from_layer_specs, mlp, resnet
from .optim import SGD
from ._validation import integer
from .parallel import checked_n_jobs, one_blas_thread
from .results import score
from .search import _fingerprint, build_network, grid_search
from .train import TrainingDiverged, fit

__all__ = ["FULL", "QUICK", "StudySettings", "comparable_mlp_width", "run_study",
           "standard_or_resnet"]

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

_ARCHITECTURE_LABELS = {"standard": "standard network", "resnet": "ResNet"}


# --------------------------------------------------------------------------------------------
# The two networks compared
# --------------------------------------------------------------------------------------------


def _mlp_params(n_in, width, n_layers, n_classes):
    return (n_in + 1) * width + (n_layers - 1) * (width + 1) * width + (width + 1) * n_classes


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
    hidden = width if hidden is None else hidden
    target = ((n_in + 1) * width + depth * (2 * width * hidden + hidden)
              + (width + 1) * n_classes)
    n_layers = 1 + 2 * depth
    return min(range(1, 4 * width + 1),
               key=lambda w: (abs(_mlp_params(n_in, w, n_layers, n_classes) - target), w))


def standard_or_resnet(n_in, n_classes, seed, architecture, width, depth, activation="tanh",
                       dtype="float32"):
    """The builder of the comparison (a grid-search ``build``).

    ``architecture="resnet"``: ``resnet(n_in, width, depth, n_classes)``.
    ``architecture="standard"``: an MLP with as many hidden layers as the ResNet has
    activated layers (``1 + 2 * depth``) and the width :func:`comparable_mlp_width` gives,
    so both have about the same number of parameters; the same layers without the skip
    connections.
    """
    if architecture == "resnet":
        return resnet(n_in, width, depth, n_classes, activation=activation, dtype=dtype,
                      seed=seed)
    if architecture == "standard":
        mlp_width = comparable_mlp_width(n_in, n_classes, width, depth)
        return mlp(n_in, [mlp_width] * (1 + 2 * depth), n_classes, activation=activation,
                   dtype=dtype, seed=seed)
    raise ValueError(f"architecture must be 'standard' or 'resnet', got {architecture!r}")


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
                           if p.suffix.lower() in (".mat", ".npz", ".csv") and p.is_file())
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
    copy = from_layer_specs(network.layer_specs(), dtype="float64",
                            architecture=network.architecture)
    copy.params[...] = network.params
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
# Markdown
# --------------------------------------------------------------------------------------------


def _md_table(header, rows, right=None):
    right = right or [False] * len(header)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(value, digits=2):
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}%"


# --------------------------------------------------------------------------------------------
# The study of one data set
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


def _study_one(name, source, out, settings, quick, seed, n_jobs, command, verbose):
    log = _Log(verbose, name)
    started = time.perf_counter()
    figures_dir = out / name
    figures_dir.mkdir(parents=True, exist_ok=True)
    X_all, y_all, X_val, y_val = datasets.load(source)
    X, y = _subset(X_all, y_all, settings.max_train, seed)
    n_in = X.shape[1]
    n_classes = int(max(y_all.max(), y_val.max())) + 1
    data = (X, y, X_val, y_val)
    two_d = n_in == 2
    log(f"{len(X):,} training / {len(X_val):,} validation samples, {n_in} features, "
        f"{n_classes} classes")
    figures = {}

    # --- 1 and 2: softmax regression and its lr x batch-size grid --------------------------
    softmax_file = figures_dir / "softmax-grid.jsonl"
    softmax_file.unlink(missing_ok=True)  # a fresh study; the file records this run
    grid_started = time.perf_counter()
    softmax_grid = grid_search(
        build_network, {"lr": list(settings.softmax_lrs),
                        "batch_size": list(settings.softmax_batch_sizes)},
        data, epochs=settings.softmax_epochs,
        fixed={"architecture": "softmax_regression", "momentum": settings.momentum,
               "schedule": settings.schedule},
        seed=seed, n_jobs=n_jobs, results=softmax_file)
    grid_seconds = time.perf_counter() - grid_started
    best_trial = softmax_grid.best
    if best_trial is None:
        raise ValueError(f"{name}: every softmax-regression trial diverged")
    best_lr, best_batch = best_trial["params"]["lr"], best_trial["params"]["batch_size"]
    log(f"softmax regression grid: {len(softmax_grid)} trials in {grid_seconds:.1f} s, best "
        f"lr {best_lr:g}, batch {best_batch}: {_pct(score(best_trial))} validation")
    # retrain the best cell with its own seeds: the same run, now with the network in hand
    softmax_net = build_network(n_in, n_classes, best_trial["init_seed"],
                                architecture="softmax_regression")
    softmax_history, softmax_seconds, _ = _train(
        softmax_net, *data, settings, best_lr, best_batch, settings.softmax_epochs,
        best_trial["shuffle_seed"])
    reproduced = softmax_history["val_loss"] == best_trial["history"]["val_loss"]
    softmax_train = softmax_net.evaluate(X, y)
    softmax_val = softmax_net.evaluate(X_val, y_val)
    figures["softmax_curves"] = plots.learning_curves(
        softmax_history, figures_dir / "softmax-curves.png",
        title=f"{name}: softmax regression by SGD (lr {best_lr:g}, batch {best_batch}, "
              f"momentum {settings.momentum:g}, {settings.schedule} schedule)",
        percent=True)
    cells = {(t["params"]["lr"], t["params"]["batch_size"]): score(t) for t in softmax_grid}
    figures["softmax_heatmap"] = plots.heatmap(
        cells, list(settings.softmax_lrs), list(settings.softmax_batch_sizes),
        figures_dir / "softmax-grid.png",
        title=f"{name}: softmax regression, final validation accuracy (%)\n"
              f"after {settings.softmax_epochs} epochs of SGD with momentum "
              f"{settings.momentum:g}",
        best=(best_lr, best_batch))

    # --- 3: a standard network vs a ResNet ---------------------------------------------------
    network_file = figures_dir / "network-grid.jsonl"
    network_file.unlink(missing_ok=True)
    grid_started = time.perf_counter()
    network_grid = grid_search(
        standard_or_resnet, {"architecture": ["standard", "resnet"],
                             "lr": list(settings.network_lrs)},
        data, epochs=settings.network_epochs,
        fixed={"width": settings.width, "depth": settings.depth,
               "activation": settings.activation, "batch_size": settings.network_batch_size,
               "momentum": settings.momentum, "schedule": settings.schedule},
        seed=seed, n_jobs=n_jobs, results=network_file)
    network_grid_seconds = time.perf_counter() - grid_started
    best_lrs = {}
    for architecture in ("standard", "resnet"):
        trials = [t for t in network_grid.ranked()
                  if t["params"]["architecture"] == architecture]
        best_lrs[architecture] = (trials[0]["params"]["lr"] if score(trials[0]) is not None
                                  else min(settings.network_lrs))
    log(f"network learning-rate grid: {len(network_grid)} trials in "
        f"{network_grid_seconds:.1f} s; best lr: standard {best_lrs['standard']:g}, "
        f"ResNet {best_lrs['resnet']:g}")

    seeds = [seed + i for i in range(settings.n_seeds)]
    runs = {}
    for architecture in ("standard", "resnet"):
        runs[architecture] = []
        for run_seed in seeds:
            network = standard_or_resnet(n_in, n_classes, run_seed, architecture,
                                         settings.width, settings.depth, settings.activation)
            history, seconds, message = _train(
                network, *data, settings, best_lrs[architecture],
                settings.network_batch_size, settings.network_epochs, run_seed)
            runs[architecture].append({"network": network, "history": history,
                                        "seconds": seconds, "diverged": message,
                                        "val": _scores(network, X_val, y_val),
                                        "train": _scores(network, X, y)})
        accuracies = [run["val"]["accuracy"] for run in runs[architecture]]
        log(f"{_ARCHITECTURE_LABELS[architecture]} at lr {best_lrs[architecture]:g}: "
            f"validation {_pct(float(np.mean(accuracies)))} mean over {len(seeds)} seed(s)")
    first = {architecture: runs[architecture][0] for architecture in runs}
    short = {"standard": f"standard network {1 + 2 * settings.depth}x"
                         f"{first['standard']['network'].layer_specs()[0]['n_out']} "
                         f"{settings.activation}",
             "resnet": f"ResNet width {settings.width} depth {settings.depth} "
                       f"{settings.activation}"}
    labels = {architecture: f"{_ARCHITECTURE_LABELS[architecture]} "
                            f"({first[architecture]['network'].n_params:,} parameters)"
              for architecture in runs}
    figures["network_curves"] = plots.comparison_curves(
        [first["standard"]["history"], first["resnet"]["history"]],
        [labels["standard"], labels["resnet"]], figures_dir / "network-curves.png",
        title=f"{name}: standard network vs ResNet, {settings.activation}, each at its best "
              f"learning rate (seed {seeds[0]})")

    # --- 4: decision boundaries ----------------------------------------------------------------
    if two_d:
        models = {"softmax": (softmax_net, "softmax regression"),
                  "standard": (first["standard"]["network"], labels["standard"]),
                  "resnet": (first["resnet"]["network"], labels["resnet"])}
        for key, (network, label) in models.items():
            accuracy = _scores(network, X_val, y_val)["accuracy"]
            figures[f"boundary_{key}"] = plots.decision_boundary(
                network, X_val, y_val, figures_dir / f"boundary-{key}.png",
                title=f"{name}: {label}\nvalidation points, accuracy {100 * accuracy:.1f}%",
                seed=seed)

    # --- 5: gradient tests of the networks used -------------------------------------------------
    batch_rows = np.random.default_rng(seed).permutation(len(X_val))[:128]
    X_check, y_check = X_val[batch_rows], y_val[batch_rows]
    checks = [gradient_tests(softmax_net, X_check, y_check, "softmax regression", quick, seed),
              gradient_tests(first["standard"]["network"], X_check, y_check,
                             short["standard"], quick, seed),
              gradient_tests(first["resnet"]["network"], X_check, y_check, short["resnet"],
                             quick, seed)]
    figures["gradient_tests"] = check.plot_results(
        [taylor for taylor, _ in checks], figures_dir / "gradient-tests.png", columns=3,
        title=f"{name}: Taylor tests of the trained networks' gradients (float64 copies, "
              f"{len(X_check)} validation samples; filled markers: fitted window)")
    seconds = time.perf_counter() - started
    log(f"done in {seconds:.1f} s")

    summary = {
        "name": name, "source": source, "n_train": len(X), "n_train_all": len(X_all),
        "n_val": len(X_val), "n_in": n_in, "n_classes": n_classes,
        "softmax": {"val": softmax_val, "train": softmax_train, "lr": best_lr,
                    "batch_size": best_batch, "seconds": softmax_seconds},
        "networks": {a: {"val_mean": float(np.mean([r["val"]["accuracy"] for r in runs[a]])),
                         "val_first": first[a]["val"]["accuracy"],
                         "n_params": first[a]["network"].n_params, "lr": best_lrs[a],
                         "seconds": float(np.mean([r["seconds"] for r in runs[a]]))}
                     for a in runs},
        "checks_passed": all(t.passed and tr.passed for t, tr in checks),
        "fingerprint": _fingerprint((X_all, y_all, X_val, y_val)),
        "chance": float(np.mean(y_val == np.bincount(y).argmax())),
        "seconds": seconds,
    }
    report = _report(name, source, summary, settings, quick, seed, n_jobs, command, figures,
                     out, softmax_grid, grid_seconds, reproduced, network_grid,
                     network_grid_seconds, best_lrs, runs, seeds, checks, X_all)
    path = out / f"{name}.md"
    path.write_text(report, encoding="utf-8")
    return path, summary


def _link(figures, key, out, alt):
    path = figures.get(key)
    if path is None:
        return ""
    return f"![{alt}]({Path(path).relative_to(out).as_posix()})"


def _report(name, source, summary, settings, quick, seed, n_jobs, command, figures, out,
            softmax_grid, grid_seconds, reproduced, network_grid, network_grid_seconds,
            best_lrs, runs, seeds, checks, X_all):
    s = settings
    lines = [f"# nncore study: {name}", ""]
    described_source = (f"the bundled `{source}` set (`nncore.datasets.load({source!r})`)"
                        if source in datasets.BUNDLED_FILES else f"the file `{source}`")
    lines.append(f"Data: {described_source}: {summary['n_train_all']:,} training and "
                 f"{summary['n_val']:,} validation samples, {summary['n_in']} features, "
                 f"{summary['n_classes']} classes.")
    if summary["n_train"] < summary["n_train_all"]:
        lines.append(f"This run trained on a random subset of {summary['n_train']:,} training "
                     f"samples (seed {seed}); validation uses all {summary['n_val']:,}.")
    if quick:
        lines += ["", "> **Quick run** (`--quick`): a training subset, small networks and few "
                  "epochs, to check that the study runs. Its numbers say nothing about the "
                  "methods; run without `--quick` for the study."]
    lines += ["", "All accuracies are on the validation set. Learning rates and batch sizes "
              "are chosen on that same set (the course data has no separate test set), so the "
              "best scores are slightly optimistic. For scale: always predicting the most "
              f"frequent class scores {_pct(summary['chance'])} there.", ""]

    # 1
    softmax = summary["softmax"]
    lines += ["## 1. Softmax regression by SGD", "",
              f"One linear layer into the softmax, trained by mini-batch SGD with momentum "
              f"{s.momentum:g} and a {s.schedule} learning-rate schedule for "
              f"{s.softmax_epochs} epochs, at the best cell of the grid in section 2 "
              f"(learning rate {softmax['lr']:g}, batch size {softmax['batch_size']}).", "",
              _md_table(["", "loss (nats)", "accuracy"],
                        [["train", f"{softmax['train']['loss']:.4f}",
                          _pct(softmax["train"]["accuracy"])],
                         ["validation", f"{softmax['val']['loss']:.4f}",
                          _pct(softmax["val"]["accuracy"])]], [False, True, True]),
              "", f"Training took {softmax['seconds']:.3g} s"
              + (" and reproduced the grid's trial of that cell exactly." if reproduced
                 else "."), "",
              _link(figures, "softmax_curves", out, "softmax regression learning curves"), ""]

    # 2
    lrs, batch_sizes = list(s.softmax_lrs), list(s.softmax_batch_sizes)
    cells = {(t["params"]["lr"], t["params"]["batch_size"]): t for t in softmax_grid}
    best = softmax_grid.best
    rows = []
    for lr in lrs:
        row = [f"{lr:g}"]
        for bs in batch_sizes:
            trial = cells[lr, bs]
            text = _pct(score(trial)) if trial["status"] == "ok" else "diverged"
            row.append(f"**{text}**" if trial is best else text)
        rows.append(row)
    n_diverged = sum(t["status"] != "ok" for t in softmax_grid)
    lines += ["## 2. Learning rate x batch size for softmax regression", "",
              f"{len(softmax_grid)} trials ({len(lrs)} learning rates x {len(batch_sizes)} "
              f"batch sizes), {s.softmax_epochs} epochs each, run by `nncore.search."
              f"grid_search` in {grid_seconds:.1f} s (n_jobs={n_jobs}). Final validation "
              f"accuracy; the best cell in bold"
              + (f"; {n_diverged} trial(s) diverged" if n_diverged else "") + ". Every trial's "
              f"per-epoch curves are in [`{name}/softmax-grid.jsonl`]({name}/softmax-grid.jsonl).",
              "",
              _md_table(["learning rate \\ batch size", *map(str, batch_sizes)], rows,
                        [False] + [True] * len(batch_sizes)), ""]
    scores = [score(t) for t in softmax_grid if score(t) is not None]
    if scores:
        lines.append(f"Across the grid the final validation accuracy ranges from "
                     f"{_pct(min(scores))} to {_pct(max(scores))} "
                     f"({100 * (max(scores) - min(scores)):.1f} percentage points)."
                     + _edge_note("learning rate", best["params"]["lr"], lrs)
                     + _edge_note("batch size", best["params"]["batch_size"], batch_sizes))
    lines += ["", _link(figures, "softmax_heatmap", out, "heatmap of the grid"), ""]

    # 3
    standard_net, resnet_net = runs["standard"][0]["network"], runs["resnet"][0]["network"]
    mlp_width = standard_net.layer_specs()[0]["n_out"]
    lines += ["## 3. A standard network vs a ResNet", "",
              f"- **ResNet**: a Dense layer lifts the input to width {s.width}, then "
              f"{s.depth} residual blocks `x + {s.activation}(x W1^T + b1) W2^T` "
              f"({s.width} units inside), then the linear softmax head: "
              f"{resnet_net.n_params:,} parameters.",
              f"- **Standard network**: the same depth without skip connections: "
              f"{1 + 2 * s.depth} Dense {s.activation} layers of width {mlp_width} "
              f"(the width whose parameter count is closest), then the head: "
              f"{standard_net.n_params:,} parameters.", "",
              f"Both train by SGD with momentum {s.momentum:g}, {s.schedule} schedule, batch "
              f"size {s.network_batch_size}, {s.network_epochs} epochs, float32. Each "
              f"architecture's learning rate is the best of "
              f"{', '.join(f'{lr:g}' for lr in s.network_lrs)} (a grid search of "
              f"{len(network_grid)} trials, {network_grid_seconds:.1f} s, final validation "
              f"accuracy below; curves in [`{name}/network-grid.jsonl`]"
              f"({name}/network-grid.jsonl)):", ""]
    lr_cells = {(t["params"]["architecture"], t["params"]["lr"]): t for t in network_grid}
    lines += [_md_table(["learning rate", "standard network", "ResNet"],
                        [[f"{lr:g}", *(_pct(score(lr_cells[a, lr])) if
                                       lr_cells[a, lr]["status"] == "ok" else "diverged"
                                       for a in ("standard", "resnet"))]
                         for lr in s.network_lrs], [False, True, True]), ""]
    notes = "".join(_edge_note(f"{_ARCHITECTURE_LABELS[a]}'s learning rate", best_lrs[a],
                               s.network_lrs) for a in ("standard", "resnet"))
    if notes:
        lines += [notes.strip(), ""]
    table_rows = []
    for architecture in ("standard", "resnet"):
        results = runs[architecture]
        accuracies = [r["val"]["accuracy"] for r in results]
        seconds = [r["seconds"] for r in results]
        epochs_run = len(results[0]["history"])
        steps = epochs_run * math.ceil(summary["n_train"] / s.network_batch_size)
        diverged = sum(r["diverged"] is not None for r in results)
        table_rows.append([
            _ARCHITECTURE_LABELS[architecture], f"{results[0]['network'].n_params:,}",
            f"{best_lrs[architecture]:g}", _pct(results[0]["train"]["accuracy"]),
            _pct(accuracies[0]),
            f"{_pct(float(np.mean(accuracies)))} ({_pct(min(accuracies))} - "
            f"{_pct(max(accuracies))})" if len(results) > 1 else _pct(accuracies[0]),
            f"{np.mean(seconds):.3g}", f"{steps / seconds[0]:,.0f}"
            + (f" ({diverged} diverged)" if diverged else "")])
    lines += [f"Trained with seeds {', '.join(map(str, seeds))} at those learning rates "
              f"(seed {seeds[0]} in the first columns and the figures):", "",
              _md_table(["model", "parameters", "learning rate",
                         f"train accuracy (seed {seeds[0]})",
                         f"validation accuracy (seed {seeds[0]})",
                         f"validation accuracy, mean (min - max) of {len(seeds)} seeds",
                         "training time (s, mean)", f"steps/s (seed {seeds[0]})"],
                        table_rows, [False] + [True] * 7),
              "", "Training time is the wall-clock time of `fit` on one BLAS thread, "
              "including the scoring of the validation set after every epoch.", "",
              _link(figures, "network_curves", out, "standard network vs ResNet curves"), ""]

    # 4
    lines += ["## 4. Decision boundaries", ""]
    if summary["n_in"] == 2:
        lines += ["The predicted class over the plane, with (a sample of) the validation "
                  "points on top.", ""]
        for key, alt in (("boundary_softmax", "softmax regression"),
                         ("boundary_standard", "standard network"),
                         ("boundary_resnet", "ResNet")):
            lines += [_link(figures, key, out, f"decision boundary of the {alt}"), ""]
    else:
        lines += [f"Not drawn: the data has {summary['n_in']} features, and a decision "
                  "boundary is drawn for 2-D data only.", ""]

    # 5
    lines += ["## 5. Gradient tests of the networks used", "",
              "Each trained network is copied to float64 and its backward pass checked at its "
              "trained weights on 128 validation samples: a Taylor test of the loss along a "
              "random unit direction in parameter space (the zero-order residual must shrink "
              "with order 1, the first-order one with order 2), and a Jacobian-transpose test "
              "of the backward pass against the Jacobian-vector product `Network.jvp`. "
              "`nncore gradcheck` checks every layer kind the same way (see "
              "docs/verification.md in nncore's repository).", ""]
    rows = []
    for taylor, transpose in checks:
        zero, first = taylor.orders
        first_text = "round-off (linear)" if taylor.exact else f"{first:.2f}"
        rows.append([taylor.name.split(":")[0], f"{taylor.size:,}", taylor.verdict,
                     f"{zero:.2f}" if math.isfinite(zero) else "-", first_text,
                     transpose.verdict, f"{transpose.discrepancy:.1e}"])
    lines += [_md_table(["network", "parameters", "Taylor test", "order (zero)",
                         "order (first)", "transpose test", "transpose discrepancy"], rows,
                        [False, True, False, True, True, False, True]), "",
              _link(figures, "gradient_tests", out, "Taylor tests of the networks' gradients"),
              ""]

    # 6
    versions = provenance.package_versions()
    machine = provenance.machine()
    lines += ["## 6. How this report was made", "",
              "```", command, "```", "",
              f"- seed: {seed} (the grids derive each trial's seeds from it and the trial's "
              f"settings; the comparison trains with seeds {', '.join(map(str, seeds))})",
              f"- settings: {'quick' if quick else 'full'} study "
              f"({_settings_text(settings)})",
              f"- data fingerprint (training and validation arrays as loaded): "
              f"`{summary['fingerprint']}`",
              f"- written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, "
              f"in {summary['seconds']:.1f} s",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
              "- machine: " + ", ".join(f"{k}: {v}" for k, v in machine.items()), ""]
    return "\n".join(lines)


def _edge_note(what, value, values):
    """A sentence warning that the best value is at the end of the range tried."""
    values = sorted(values)
    if len(values) < 3 or value not in (values[0], values[-1]):
        return ""
    end = "smallest" if value == values[0] else "largest"
    return (f" The best {what}, {value:g}, is the {end} tried: a wider grid might find "
            "a better one.")


def _settings_text(settings):
    return ", ".join(f"{field.name}={getattr(settings, field.name)!r}"
                     for field in dataclasses.fields(settings))


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
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    paths, summaries = [], []
    for name, source in specs:
        path, summary = _study_one(name, source, out, settings, bool(quick), int(seed),
                                   int(n_jobs), command, verbose)
        paths.append(path)
        summaries.append(summary)
    index = out / "index.md"
    index.write_text(_index(summaries, command, quick, time.perf_counter() - started),
                     encoding="utf-8")
    if verbose:
        print(f"reports: {', '.join(os.fspath(p) for p in paths)}; summary in {index} "
              f"({time.perf_counter() - started:.1f} s)", flush=True)
    return [*paths, index]


def _index(summaries, command, quick, seconds):
    rows = []
    for summary in summaries:
        networks = summary["networks"]
        rows.append([f"[{summary['name']}]({summary['name']}.md)",
                     f"{summary['n_train']:,} / {summary['n_val']:,}",
                     _pct(summary["softmax"]["val"]["accuracy"]),
                     f"lr {summary['softmax']['lr']:g}, batch {summary['softmax']['batch_size']}",
                     f"{_pct(networks['standard']['val_mean'])} "
                     f"({networks['standard']['n_params']:,} params)",
                     f"{_pct(networks['resnet']['val_mean'])} "
                     f"({networks['resnet']['n_params']:,} params)",
                     "pass" if summary["checks_passed"] else "**not passed**",
                     f"{summary['seconds']:.0f}"])
    lines = ["# nncore study: summary", ""]
    if quick:
        lines += ["> **Quick run**: the numbers only show that the study runs.", ""]
    lines += [_md_table(["data set", "train / validation", "softmax regression",
                         "best softmax cell", "standard network (mean over seeds)",
                         "ResNet (mean over seeds)", "gradient tests", "time (s)"], rows,
                        [False, True, True, False, True, True, False, True]),
              "", "Validation accuracy throughout.", "", "```", command, "```",
              "", f"Total time {seconds:.1f} s.", ""]
    return "\n".join(lines)
