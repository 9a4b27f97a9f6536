"""The ``nncore`` command.

    nncore train                      # default ResNet on the bundled Peaks data
    nncore train --data gmm --arch mlp --layers 64,64,64 --epochs 20
    nncore train --data path/to/PeaksData.mat --out runs --name my-run
    nncore train --resume runs/my-run [--epochs 60]   # go on after Ctrl-C, or train on
    nncore train --task regression --data curve.csv --arch mlp --layers 32,32
    nncore train --optimizer adam     # Adam at its default rate 0.001 (SGD's is 0.02)
    nncore predict runs/my-run/model.npz new.csv --out predictions.csv [--proba]
    nncore export runs/my-run/model.npz model.onnx   # for onnxruntime (extra "onnx")
    nncore gradcheck --quick          # every derivative check; exit status 1 if any fails
    nncore gradcheck --dtype float32 --out gradcheck-float32
    nncore search --grid grid.toml --data peaks --n-jobs 2   # ranked table; resumable
    nncore experiments --quick        # the study: reports/<dataset>.md with its figures
    nncore --version

Bad arguments get one line on stderr and exit status 2, never a traceback.
"""

import argparse
import datetime
import math
import os
import sys
import time
import warnings

__all__ = ["main"]

#: The documented defaults of ``nncore train`` (and what ``nncore train`` with no argument does).
#: ``lr``, ``momentum``, ``nesterov`` and ``weight_decay`` are SGD's; with another
#: ``--optimizer`` the optimizer settings not given default to that optimizer's own
#: (:data:`OPTIMIZER_FLAGS`; Adam and AdamW: lr 0.001, betas 0.9 and 0.999, eps 1e-8).
TRAIN_DEFAULTS = {
    "data": "peaks", "arch": "resnet", "width": 64, "depth": 4, "hidden": None,
    "task": "classification",
    "layers": "64,64,64", "activation": "tanh", "dtype": "float32", "epochs": 30,
    "batch_size": 64, "optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "nesterov": False,
    "weight_decay": 0.0, "schedule": "cosine", "patience": 0, "seed": 0, "verbose": 1,
    "out": "runs", "name": None, "plots": True, "standardize": True,
}
#: The optimizer options of ``nncore train``: option -> the optimizer constructor parameter
#: it sets (``--beta1``/``--beta2`` the two entries of ``betas``). An option is refused with
#: an optimizer whose constructor does not take its parameter (``--momentum`` with Adam).
OPTIMIZER_FLAGS = {"--lr": "lr", "--momentum": "momentum", "--nesterov": "nesterov",
                   "--weight-decay": "weight_decay", "--beta1": "betas", "--beta2": "betas",
                   "--eps": "eps"}
#: The model options of ``nncore train``: option -> the architecture setting it sets. An
#: option is refused with an ``--arch`` that does not take its setting (``--layers`` with
#: resnet, any of them with softmax_regression; ``network.ARCHITECTURES[...].takes``).
ARCHITECTURE_FLAGS = {"--width": "width", "--depth": "depth", "--hidden": "hidden",
                      "--layers": "layers", "--activation": "activation"}
#: The options of ``nncore train`` that say where a run goes and how it is shown; all its
#: other options are the run's settings, which the run folder's RUN_FILE keeps for --resume.
OUTPUT_OPTIONS = ("out", "name", "plots", "verbose", "resume")
#: The run's settings that ``--resume`` may change: the number of epochs to train to.
RESUME_MAY_CHANGE = ("epochs",)
#: The run's settings, kept in its folder: ``{"format": RUN_FORMAT, "nncore_version",
#: "command", "settings": {option: value}, "data_sha256"}`` (the hash of a --data file,
#: None for a bundled set), written when the run starts (and again by --resume with
#: more --epochs).
RUN_FILE, RUN_FORMAT = "run.json", "nncore-run"


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage stays under --help)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parsed(text, kind):
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def _positive_int(text):
    value = _parsed(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text):
    value = _parsed(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text):
    value = _parsed(text, float)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _non_negative_float(text):
    value = _parsed(text, float)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _unit_interval(text):
    value = _parsed(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return value


def _val_fraction(text):
    value = _parsed(text, float)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number strictly between 0 and 1, got "
                                         f"{text}")
    return value


def _delimiter(text):
    from .datasets import csv_delimiter

    try:
        return csv_delimiter(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_csv_options(group, split=True):
    """--delimiter, --target (and --val-fraction) for a .csv --data / DATA."""
    group.add_argument("--delimiter", type=_delimiter, default=None, metavar="CHAR",
                       help="the .csv column separator: a character or comma, semicolon, "
                            "tab, pipe, space/whitespace (default: sniffed)")
    group.add_argument("--target", default=None, metavar="NAME|INDEX",
                       help="the .csv target column: a header name or an index (negative "
                            "from the end) (default: the last column)")
    if split:
        group.add_argument("--val-fraction", type=_val_fraction, default=None,
                           metavar="FRACTION",
                           help="share of a .csv's rows (or of an .npz's X and y) held out for "
                                "validation, in (0, 1); stratified by class for "
                                "classification (default: 0.2)")


def _csv_options(args):
    """The keyword arguments of datasets.load for the .csv options given."""
    from . import datasets

    options = {"delimiter": args.delimiter, "target": args.target,
               "val_fraction": getattr(args, "val_fraction", None)}
    data = getattr(args, "data", None)
    kind = datasets.file_kind(data) if isinstance(data, str) else None
    # --val-fraction also splits an .npz (of X and y: datasets says if it is one)
    given = [f"--{name.replace('_', '-')}" for name, value in options.items()
             if value is not None and not (name == "val_fraction" and kind == ".npz")]
    if given and isinstance(data, str) and kind != ".csv":
        also = " (--val-fraction: or an .npz of X and y)" if "--val-fraction" in given else ""
        raise ValueError(f"{' and '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to "
                         f".csv data only{also}, not {data!r}")
    return {name: value for name, value in options.items() if value is not None}


def _momentum(text):
    """SGD's momentum: the rule is :func:`nncore._validation.momentum`'s, [0, 1)."""
    from . import _validation as v

    value = _parsed(text, float)
    try:
        return v.momentum(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}") from None


def _run_folder(out, name):
    """``OUT/NAME`` for ``nncore train``, refused (ValueError) before anything is trained
    when ``--out`` is an existing file, ``--name`` is not a plain folder name (a path
    separator, ``.`` or ``..`` would put the run outside ``--out``), or ``OUT/NAME`` is an
    existing file or a folder that is not empty (:func:`_make_run_folder` checks again as
    it creates the folder)."""
    if not out:
        raise ValueError("--out must not be empty")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} exists and is not a folder")
    if name is not None:
        separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
        if not name or name in (".", "..") or any(sep in name for sep in separators) \
                or "\0" in name:
            raise ValueError(f"--name must be a plain folder name inside --out (no path "
                             f"separator, not '.' or '..'), got {name!r}")
        _refuse_taken(os.path.join(out, name), name)
    return out


def _refuse_taken(run_dir, name):
    """ValueError if ``run_dir`` (``OUT/NAME`` of ``--name NAME``) exists and is a file or a
    folder that is not empty."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ValueError(f"{run_dir!r} exists and is not a folder: choose another --name")
    if os.path.isdir(run_dir) and os.listdir(run_dir):
        resume = (f", or continue that run with --resume {run_dir}"
                  if os.path.isfile(os.path.join(run_dir, RUN_FILE)) else "")
        raise ValueError(f"--name {name!r}: {run_dir!r} already holds a run; choose another "
                         f"--name, or leave --name out for a new folder{resume}")


def _make_run_folder(out, name, default):
    """Create the run folder of ``nncore train``: ``OUT/NAME`` for a ``--name`` (refused,
    ValueError, if it already exists and is not empty: a run never replaces or mixes with
    another's files), else ``OUT/DEFAULT``, or ``DEFAULT-2``, ``DEFAULT-3``, ... when that
    is taken. Each folder is made with one ``os.mkdir``, so two runs started at once never
    get the same one. Returns the folder and the folders this call created, deepest first
    (for :func:`_remove_if_empty`)."""
    missing = []
    head = os.path.abspath(out)
    while not os.path.exists(head) and head != os.path.dirname(head):
        missing.append(head)
        head = os.path.dirname(head)
    try:
        os.makedirs(out, exist_ok=True)
        if name is not None:
            run_dir = os.path.join(out, name)
            try:
                os.mkdir(run_dir)
                return run_dir, [run_dir, *missing]
            except FileExistsError:
                _refuse_taken(run_dir, name)
            return run_dir, missing
        for number in range(1, 10_000):
            run_dir = os.path.join(out, default if number == 1 else f"{default}-{number}")
            try:
                os.mkdir(run_dir)
                return run_dir, [run_dir, *missing]
            except FileExistsError:
                continue
        raise ValueError(f"--out {out!r}: 9,999 runs named {default!r} already; give a --name")
    except OSError as error:
        raise ValueError(f"cannot create the run folder in {out!r}: "
                         f"{error.strerror or error}") from None


def _remove_if_empty(folders):
    """Remove the ``folders`` (deepest first) that are still empty: a run that failed
    before writing anything leaves no folder behind."""
    for folder in folders:
        try:
            os.rmdir(folder)  # refuses a folder that is not empty
        except OSError:
            return


def _constructor_defaults(cls):
    """The defaults of an optimizer's constructor parameters, by name."""
    import inspect

    return {name: parameter.default
            for name, parameter in inspect.signature(cls).parameters.items()}


def _optimizer(args):
    """The optimizer of ``nncore train``'s options: ``--optimizer`` names the class in
    ``OPTIMIZERS``; the options given set its constructor parameters (OPTIMIZER_FLAGS), the
    others keep its defaults. An option the optimizer does not take is refused."""
    from .optim import OPTIMIZERS

    cls = OPTIMIZERS[args.optimizer]
    defaults = _constructor_defaults(cls)
    given = {flag: getattr(args, flag[2:].replace("-", "_")) for flag in OPTIMIZER_FLAGS}
    given = {flag: value for flag, value in given.items() if value is not None}
    settings = {"schedule": args.schedule}
    for flag, value in given.items():
        parameter = OPTIMIZER_FLAGS[flag]
        if parameter not in defaults:
            takers = [name for name, other in OPTIMIZERS.items()
                      if parameter in _constructor_defaults(other)]
            raise ValueError(f"{flag} is for --optimizer {' or '.join(takers)}, not "
                             f"{args.optimizer}")
        if parameter == "betas":
            betas = list(settings.get("betas", defaults["betas"]))
            betas[flag == "--beta2"] = value
            value = tuple(betas)
        settings[parameter] = value
    return cls(**settings)


def _architecture(args):
    """The settings of ``--arch`` from ``nncore train``'s model options: the options given,
    the others TRAIN_DEFAULTS'. An mlp has the widths of ``--layers`` (default 64,64,64),
    or ``--depth`` hidden layers of ``--width`` units (defaults: those of the default
    layers, 3 and 64). An option the architecture does not take is refused, and
    ``--width``/``--depth`` with ``--layers``."""
    from .network import ARCHITECTURES, applicable

    given = {flag: getattr(args, setting) for flag, setting in ARCHITECTURE_FLAGS.items()}
    given = {flag: value for flag, value in given.items() if value is not None}
    for flag in given:
        setting = ARCHITECTURE_FLAGS[flag]
        if setting not in ARCHITECTURES[args.arch].takes:
            takers = [name for name, entry in ARCHITECTURES.items() if setting in entry.takes]
            raise ValueError(f"{flag} is for --arch {' or '.join(takers)}, not {args.arch}")
    sizing = [flag for flag in ("--width", "--depth") if flag in given]
    if sizing and "--layers" in given:
        raise ValueError(f"{' and '.join(sizing)} cannot go with --layers, which gives every "
                         f"hidden width of the mlp: give one or the other")
    d = TRAIN_DEFAULTS
    settings = {setting: d[setting] for setting in ARCHITECTURE_FLAGS.values()}
    settings["layers"] = None
    if args.arch == "mlp" and not sizing:
        settings["layers"] = _layer_sizes(d["layers"])
    elif args.arch == "mlp":
        settings["depth"] = len(_layer_sizes(d["layers"]))
    settings.update({ARCHITECTURE_FLAGS[flag]: value for flag, value in given.items()})
    return applicable(args.arch, **settings)


def _layer_sizes(text):
    """``--layers``: comma-separated widths, or '' (none: softmax regression); an empty
    entry (``3,,2``, a trailing comma) is refused, not skipped."""
    if not text.strip():
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated widths, got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"widths must be >= 1, got {text!r}")
    return sizes


def _build_parser():
    # the choices come from the registries, so a new activation, architecture, schedule or
    # backend is offered here without touching this file
    from .activations import names as activation_names
    from .losses import TASKS
    from .network import ARCHITECTURES, BACKENDS
    from .optim import OPTIMIZERS, SCHEDULES

    from . import __version__

    parser = _ArgumentParser(
        prog="nncore",
        description="Train, verify and study small neural networks on nncore's kernels.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    train = commands.add_parser(
        "train", help="train a network and save it with its history and figures",
        description="Train a network by mini-batch SGD with momentum, Adam or AdamW and write "
                    "the model, history.csv and figures into OUT/NAME/. While it trains, "
                    "the folder keeps the run's settings (run.json) and a checkpoint of its "
                    "last epoch (checkpoint.npz, kept when the run ends): after Ctrl-C or a "
                    "crash, 'nncore train --resume OUT/NAME' continues the run and ends "
                    "exactly as it would have without the interrupt; 'nncore train --resume "
                    "OUT/NAME --epochs N' trains a finished run on to N epochs.")
    train.set_defaults(command_parser=train)  # for --resume: which options were given
    d = TRAIN_DEFAULTS
    data = train.add_argument_group("data")
    data.add_argument("--data", default=d["data"],
                      help="'peaks', 'gmm', 'swissroll' (bundled) or a .mat/.npz/.csv path "
                           "(default: %(default)s)")
    data.add_argument("--task", choices=tuple(TASKS), default=d["task"],
                      help="what the targets are: class labels (cross-entropy, accuracy) or "
                           "real values (mean squared error, RMSE and R^2; the file's last "
                           "column, .npz y_train/y_val, or .mat Ct/Cv) (default: %(default)s)")
    data.add_argument("--no-standardize", dest="standardize", action="store_false",
                      default=d["standardize"],
                      help="train on the raw features (and targets); by default they are "
                           "standardised with the training set's mean and standard deviation, "
                           "which the model file keeps so predictions take raw data")
    _add_csv_options(data)
    model = train.add_argument_group("model")
    model.add_argument("--arch", choices=tuple(ARCHITECTURES), default=d["arch"],
                       help="network kind (default: %(default)s)")
    # None: not given, so TRAIN_DEFAULTS' (_architecture); refused with an --arch that does
    # not take it
    model.add_argument("--width", type=_positive_int, default=None,
                       help=f"ResNet width, or for an mlp without --layers the width of each "
                            f"hidden layer (default: {d['width']})")
    model.add_argument("--depth", type=_non_negative_int, default=None,
                       help=f"ResNet residual blocks, or for an mlp without --layers its "
                            f"number of hidden layers (default: resnet {d['depth']}, mlp "
                            f"{len(_layer_sizes(d['layers']))})")
    model.add_argument("--hidden", type=_positive_int, default=None,
                       help="units inside each residual block, resnet only (default: the "
                            "width)")
    model.add_argument("--layers", type=_layer_sizes, default=None,
                       help=f"MLP hidden widths, comma-separated; '' for softmax regression "
                            f"(default: {d['layers']})")
    model.add_argument("--activation", choices=activation_names(), default=None,
                       help=f"resnet and mlp only (default: {d['activation']})")
    model.add_argument("--dtype", choices=("float32", "float64"), default=d["dtype"],
                       help="(default: %(default)s)")
    model.add_argument("--seed", type=_non_negative_int, default=d["seed"],
                       help="seeds initialisation and shuffling (default: %(default)s)")
    opt = train.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=_positive_int, default=d["epochs"],
                     help="at least 1 (default: %(default)s)")
    opt.add_argument("--batch-size", type=_positive_int, default=d["batch_size"],
                     help="(default: %(default)s)")
    opt.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=d["optimizer"],
                     help="(default: %(default)s)")
    # None: not given, so the optimizer's own default (SGD's are TRAIN_DEFAULTS')
    defaults = {name: _constructor_defaults(cls) for name, cls in OPTIMIZERS.items()}

    def takers(parameter):
        return [name for name, values in defaults.items() if parameter in values]

    def default(parameter, index=None):
        """The optimizers' defaults of ``parameter`` ("sgd 0.02, adam 0.001, ...")."""
        values = {name: defaults[name][parameter] for name in takers(parameter)}
        values = {name: value if index is None else value[index]
                  for name, value in values.items()}
        if len(set(values.values())) == 1:
            return f"{next(iter(values.values())):g}"
        return ", ".join(f"{name} {value:g}" for name, value in values.items())

    opt.add_argument("--lr", type=_positive_float, default=None,
                     help=f"learning rate (default: the optimizer's: {default('lr')})")
    opt.add_argument("--momentum", type=_momentum, default=None,
                     help=f"in [0, 1), for {'/'.join(takers('momentum'))} (default: "
                          f"{default('momentum')})")
    opt.add_argument("--nesterov", action="store_true", default=None,
                     help=f"Nesterov momentum, for {'/'.join(takers('nesterov'))}")
    opt.add_argument("--weight-decay", type=_non_negative_float, default=None,
                     help="L2 penalty; decoupled weight decay for AdamW (default: the "
                          f"optimizer's: {default('weight_decay')})")
    opt.add_argument("--beta1", type=_unit_interval, default=None,
                     help=f"first-moment decay in [0, 1), for {'/'.join(takers('betas'))} "
                          f"(default: {default('betas', 0)})")
    opt.add_argument("--beta2", type=_unit_interval, default=None,
                     help=f"second-moment decay in [0, 1), for {'/'.join(takers('betas'))} "
                          f"(default: {default('betas', 1)})")
    opt.add_argument("--eps", type=_positive_float, default=None,
                     help=f"denominator term, for {'/'.join(takers('eps'))} (default: "
                          f"{default('eps')})")
    opt.add_argument("--schedule", choices=tuple(SCHEDULES),
                     default=d["schedule"], help="learning-rate schedule (default: %(default)s)")
    opt.add_argument("--patience", type=_non_negative_int, default=d["patience"],
                     help="stop after this many epochs without a better validation loss and "
                          "keep the best weights; 0 = train all epochs (default: %(default)s)")
    output = train.add_argument_group("output")
    output.add_argument("--out", default=d["out"], help="output folder (default: %(default)s)")
    output.add_argument("--name", default=d["name"],
                        help="run name; a folder of that name in --out that is not empty "
                             "is refused, never overwritten (default: DATA-ARCH-YYYYmmdd-HHMMSS, "
                             "with -2, -3, ... added when taken)")
    output.add_argument("--no-plots", dest="plots", action="store_false",
                        help="do not write figures")
    output.add_argument("--verbose", type=int, choices=(0, 1, 2), default=d["verbose"],
                        help="0 quiet, 1 progress bar, 2 a line per epoch (default: %(default)s)")
    output.add_argument("--resume", metavar="RUN", default=None,
                        help="continue the run in folder RUN (OUT/NAME) from its last "
                             "checkpointed epoch with the settings it was started with: it "
                             "ends as it would have without the interrupt, and its model, "
                             "history and figures cover every epoch. Give --epochs to train "
                             "on to more epochs (also after a run that finished). Only "
                             "--epochs, --verbose and --no-plots go with it; another option "
                             "is refused unless it has the run's own value")
    _add_predict_parser(commands)
    _add_export_parser(commands)
    _add_gradcheck_parser(commands, tuple(BACKENDS))
    _add_search_parser(commands)
    _add_experiments_parser(commands)
    return parser


def _add_predict_parser(commands):
    predict = commands.add_parser(
        "predict", help="predict with a saved model: one CSV row per sample",
        description="Load a model file (written by 'nncore train' or Network.save), read "
                    "the samples of DATA and write one CSV row per sample, in the file's "
                    "order: the predicted class label (header 'class'), with --proba the "
                    "class probabilities (proba_LABEL, one column per class of the model: proba_0, "
                    "proba_1, ... for class indices), or for a regression model "
                    "the predicted values (prediction, or prediction_0, prediction_1, ...).")
    predict.add_argument("model", metavar="MODEL", help="a model file (model.npz)")
    predict.add_argument("data", metavar="DATA",
                         help="a .csv of the features (n_in columns, or n_in + 1 with the "
                              "target last, which is ignored; an optional header line: for "
                              "a model trained on a .csv with a header, the columns of its "
                              "feature names, in any order, the others ignored), an .npz "
                              "(its X, else X_train then X_val) or a .mat (Yt then Yv)")
    _add_csv_options(predict, split=False)
    predict.add_argument("--out", default=None, metavar="PREDICTIONS.csv",
                         help="write the predictions there (default: standard output)")
    predict.add_argument("--proba", action="store_true",
                         help="the class probabilities instead of the class (classification "
                              "models only)")


def _add_export_parser(commands):
    export = commands.add_parser(
        "export", help="write a saved model as an ONNX file (extra \"onnx\")",
        description="Load a model file (written by 'nncore train' or Network.save) and write "
                    "it as an ONNX graph for onnxruntime and other runtimes: input X (raw "
                    "features: the standardisation is in the graph), output 'probabilities' "
                    "(classification) or 'predictions' (regression, in the targets' units); "
                    "the class labels are in the model's metadata ('classes'). Needs "
                    "pip install \"nncore[onnx]\".")
    export.add_argument("model", metavar="MODEL", help="a model file (model.npz)")
    export.add_argument("out", metavar="MODEL.onnx", help="the ONNX file to write")


def _add_gradcheck_parser(commands, backends):
    gradcheck = commands.add_parser(
        "gradcheck", help="run every gradient, Jacobian and Jacobian-transpose check",
        description="Run the ready-made derivative checks of every part of nncore (Taylor "
                    "tests with fitted orders, Jacobian-transpose tests, SGD and Adam on least "
                    "squares against numpy.linalg.lstsq), print one table per check and a "
                    "summary, write figures into OUT. Exit status 1 if any check fails or "
                    "errs, 0 otherwise: an inconclusive check (the test could not judge, "
                    "as often in float32) is listed but fails the run only with --strict.")
    gradcheck.add_argument("--quick", action="store_true",
                           help="fewer Taylor steps (float64: 12 quarterings of eps instead "
                                "of 20 halvings) and only the overview and least-squares "
                                "figures: a few seconds, run in CI")
    gradcheck.add_argument("--dtype", choices=("float64", "float32"),
                           default="float64",
                           help="float64 verifies; float32 shows how far its precision lets "
                                "the tests see (default: %(default)s)")
    gradcheck.add_argument("--backend", choices=backends, default="kernels",
                           help="the Cython kernels or the NumPy reference (default: %(default)s)")
    gradcheck.add_argument("--seed", type=_non_negative_int, default=0,
                           help="seeds the points and directions (default: %(default)s)")
    gradcheck.add_argument("--only", metavar="TEXT", default=None,
                           help="run only the checks whose name contains TEXT (any case)")
    gradcheck.add_argument("--out", default="gradcheck",
                           help="folder for the figures (default: %(default)s)")
    gradcheck.add_argument("--no-plots", dest="plots", action="store_false",
                           help="do not write figures")
    gradcheck.add_argument("--brief", action="store_true",
                           help="one line per check instead of its table")
    gradcheck.add_argument("--strict", action="store_true",
                           help="exit status 1 unless every check passes (inconclusive ones "
                                "included)")


def _n_jobs(text):
    value = _parsed(text, int)
    if value == 0:
        raise argparse.ArgumentTypeError("must be a nonzero integer (-1 for all cores), got 0")
    return value


def _add_search_parser(commands):
    search = commands.add_parser(
        "search", help="grid search from a TOML file, resumable, with a ranked table",
        description="Train every combination of the grid in a TOML file, score it on the "
                    "validation set, append each trial (with its per-epoch curves) to a "
                    "JSON-lines file as it finishes, and print the trials ranked. Run it "
                    "again with the same file to resume: finished trials are not run twice. "
                    "The grid format is in docs/study.md.")
    search.add_argument("--grid", required=True, metavar="GRID.toml",
                        help="the grid: a [grid] table of lists, an optional [fixed] table, "
                             "optional epochs, seed and metric")
    search.add_argument("--data", default="peaks",
                        help="'peaks', 'gmm', 'swissroll' (bundled) or a .mat/.npz/.csv path "
                             "(default: %(default)s)")
    _add_csv_options(search)
    search.add_argument("--epochs", type=_positive_int, default=None,
                        help="epochs per trial (default: the file's epochs, else 20)")
    search.add_argument("--seed", type=_non_negative_int, default=None,
                        help="base seed (default: the file's seed, else 0)")
    search.add_argument("--metric", choices=("val_accuracy", "val_loss", "accuracy", "loss",
                                             "best_val_accuracy"), default=None,
                        help="rank by this, at the last epoch (default: the file's metric, "
                             "else val_accuracy)")
    search.add_argument("--results", default="results.jsonl",
                        help="JSON-lines results file, appended to and resumed from; an "
                             "existing file that holds no trial record is refused "
                             "(default: %(default)s)")
    search.add_argument("--n-jobs", type=_n_jobs, default=1,
                        help="trials at once, -1 for all cores (default: %(default)s)")
    search.add_argument("--backend", choices=("loky", "threading", "multiprocessing", "dask"),
                        default=None,
                        help="joblib backend (default: joblib's, loky processes; 'dask' "
                             "needs --scheduler)")
    search.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="run the trials on this Dask scheduler (e.g. tcp://host:8786; "
                             "needs the 'distributed' extra); implies --backend dask")
    search.add_argument("--top", type=_positive_int, default=None,
                        help="show only the best N trials (default: all)")
    search.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="0 quiet, 1 progress bar across trials, 2 a line per trial "
                             "(default: %(default)s)")


def _add_experiments_parser(commands):
    experiments = commands.add_parser(
        "experiments", help="run the study and write a Markdown report per data set",
        description="Run the study for each data set: softmax regression by SGD, its "
                    "learning rate x batch size grid, a standard network vs a ResNet with "
                    "comparable parameter counts, decision boundaries (2-D data), gradient "
                    "tests of the networks used; write OUT/<dataset>.md with its figures, "
                    "and OUT/index.md. See docs/study.md.")
    experiments.add_argument("--data", action="append", default=None,
                             help="'all' (the bundled peaks, gmm and swissroll), one of "
                                  "them, a .mat/.npz/.csv file or a folder of them; "
                                  "repeat for several (default: all)")
    experiments.add_argument("--quick", action="store_true",
                             help="a training subset, small networks, few epochs: seconds, "
                                  "run in CI; its numbers only show that the study runs")
    experiments.add_argument("--out", default="reports",
                             help="output folder (default: %(default)s)")
    experiments.add_argument("--seed", type=_non_negative_int, default=0,
                             help="base seed (default: %(default)s)")
    experiments.add_argument("--n-jobs", type=_n_jobs, default=1,
                             help="grid-search trials at once, -1 for all cores; the results "
                                  "do not depend on it (default: %(default)s)")
    experiments.add_argument("--quiet", action="store_true", help="no progress lines")


def _dataset_label(data):
    return os.path.splitext(os.path.basename(data))[0] if os.sep in data or "." in data else data


#: How the table heads a score column.
_SCORE_HEADERS = {"rmse": "RMSE", "r2": "R^2"}


def _load_with_labels(datasets, data, task, csv_options):
    """``(X, y, X_val, y_val, original)``: the data set, for classification with its
    ORIGINAL class labels (``original`` True: the network keeps them, and predictions give
    them back), for regression with its values."""
    classification = task == "classification"
    return (*datasets.load(data, task=task, return_labels=classification, **csv_options),
            classification)


def _label_names(args):
    """How ``nncore train`` names the training and the validation labels of ``--data``."""
    from . import datasets

    data = args.data
    if datasets.file_kind(data) == ".csv":
        column = ("its last column" if args.target is None
                  else f"column {args.target!r}")
        return (f"the label column of {data} ({column}, training rows)",
                f"the label column of {data} ({column}, validation rows)")
    if datasets.file_kind(data) == ".npz":
        if datasets.npz_holds_one_table(data):
            return f"y of {data} (training rows)", f"y of {data} (validation rows)"
        return f"y_train of {data}", f"y_val of {data}"
    return f"Ct of {data}", f"Cv of {data}"


def _options(parser):
    """``{dest: action}`` of the options of a command's ``parser`` (but --help)."""
    return {action.dest: action for action in parser._actions
            if action.option_strings and action.dest != "help"}


def _given_options(parser, argv):
    """``{dest: action}`` of the options that the command line ``argv`` (the arguments of
    ``parser``'s command) gives: what the user typed, told apart from the defaults."""
    options = _options(parser)
    not_given = object()
    parsed, _ = parser.parse_known_args(
        argv, argparse.Namespace(**dict.fromkeys(options, not_given)))
    return {dest: action for dest, action in options.items()
            if getattr(parsed, dest) is not not_given}


def _as_option(action, value):
    """How the option of ``action`` with ``value`` is typed: ``--lr 0.1``, ``--nesterov``,
    ``no --lr`` (None: not given)."""
    import shlex

    option = action.option_strings[-1]
    if action.nargs == 0:  # a flag: --nesterov, --no-standardize
        return option if value == action.const else f"no {option}"
    if value is None:
        return f"no {option}"
    if isinstance(value, list):  # --layers
        value = ",".join(map(str, value))
    return f"{option} {shlex.quote(str(value))}"


def _run_settings(args):
    """The run's settings: ``nncore train``'s options but OUTPUT_OPTIONS, a --data file by
    its absolute path (a bundled set by its name), so --resume finds it from any folder."""
    from .datasets import BUNDLED_FILES

    settings = {dest: getattr(args, dest) for dest in _options(args.command_parser)
                if dest not in OUTPUT_OPTIONS}
    if settings["data"].lower() not in BUNDLED_FILES:
        settings["data"] = os.path.abspath(settings["data"])
    return settings


def _data_digest(data):
    """The SHA-256 of the --data file ``data`` (hex), None for a bundled set."""
    import hashlib

    from .datasets import BUNDLED_FILES

    if data.lower() in BUNDLED_FILES:
        return None
    digest = hashlib.sha256()
    with open(data, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_run_file(run_dir, run):
    """Write the run's record ``run`` (RUN_FILE) into ``run_dir``, atomically."""
    import json

    from .modelfile import atomic_write

    text = json.dumps(run, indent=2) + "\n"
    atomic_write(os.path.join(run_dir, RUN_FILE), lambda f: f.write(text.encode("utf-8")))


def _read_run_file(run_dir, defaults):
    """The record (RUN_FILE) of the run in ``run_dir``, its settings completed with the
    ``defaults`` of those it lacks (options added since it was written); ValueError for a
    folder without one, or one this nncore cannot read."""
    import json

    path = os.path.join(run_dir, RUN_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"--resume {run_dir!r} holds no {RUN_FILE}: it is not a run folder "
                         f"of nncore train, or its run was started before runs could be "
                         f"resumed") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"--resume: cannot read {path!r}: {error}") from None
    if not isinstance(run, dict) or run.get("format") != RUN_FORMAT \
            or not isinstance(run.get("settings"), dict) or set(run["settings"]) - set(defaults):
        raise ValueError(f"--resume: {path!r} is not the record of a run of this version of "
                         f"nncore train")
    run["settings"] = {**defaults, **run["settings"]}
    return run


def _resumed(args):
    """For ``nncore train --resume RUN``: ``(args, run, done)``, the options of the run to
    continue (its settings from RUN_FILE, with the --epochs given; the output options of
    this command line), its record (to write back) and the epochs its checkpoint holds.
    Refused (ValueError), before anything is written: a folder without a resumable run,
    --out or --name, an option whose value is not the run's, a --data file that changed
    since the run started, a run whose checkpoint holds every epoch asked for (give more
    --epochs) or that early stopping ended."""
    from . import modelfile

    run_dir = args.resume
    if not os.path.isdir(run_dir):
        raise ValueError(f"--resume {run_dir!r}: " + ("not a folder" if os.path.exists(run_dir)
                                                      else "no such run folder"))
    given = _given_options(args.command_parser, args.argv[1:])
    # --out and --name may repeat the folder's own (the run's command with --resume added)
    parent, name = os.path.split(os.path.abspath(run_dir))
    placed = [f"{given[dest].option_strings[-1]} {getattr(args, dest)}"
              for dest, own in (("out", parent), ("name", name))
              if dest in given and os.path.abspath(os.path.join(parent, getattr(args, dest)))
              != os.path.join(parent, own)]
    if placed:
        raise ValueError(f"--resume {run_dir!r} names the run's folder: {' and '.join(placed)} "
                         f"would name another")
    current = _run_settings(args)
    run = _read_run_file(run_dir, _run_settings(args.command_parser.parse_args([])))
    settings = run["settings"]
    verified = False  # whether the data file was found to be the run's (by its SHA-256)
    if "data" in given and current["data"] != settings["data"] \
            and run.get("data_sha256") is not None and os.path.isfile(current["data"]) \
            and _data_digest(current["data"]) == run["data_sha256"]:
        settings["data"] = current["data"]  # the same data, moved: the run goes on from here
        verified = True
    changed = [f"{_as_option(action, current[dest])} (the run has "
               f"{_as_option(action, settings[dest])})" for dest, action in given.items()
               if dest in settings and dest not in RESUME_MAY_CHANGE
               and current[dest] != settings[dest]]
    if changed:
        raise ValueError(f"--resume continues the run with its own settings: "
                         f"{'; '.join(changed)} would change it; start a new run for other "
                         f"settings")
    data = settings["data"]
    if run.get("data_sha256") is not None and not verified:
        if not os.path.isfile(data):
            raise FileNotFoundError(f"--resume {run_dir!r}: the run's data {data!r} is not "
                                    f"there any more; the run needs the data it was trained on")
        if _data_digest(data) != run["data_sha256"]:
            raise ValueError(f"--resume {run_dir!r}: the run's data {data!r} changed since "
                             f"the run started; it needs the data it was trained on (start "
                             f"a new run for the new data)")
    checkpoint = os.path.join(run_dir, modelfile.CHECKPOINT_FILE)
    state = {"epochs_done": 0, "history": {"val_loss": []}}  # cut before its first epoch
    if os.path.isfile(checkpoint):
        _, _, state = modelfile.load_checkpoint(checkpoint)
    elif _history_epochs(run_dir):  # trained, and its checkpoint deleted since
        raise ValueError(f"--resume {run_dir!r} has trained epochs but no checkpoint "
                         f"({modelfile.CHECKPOINT_FILE}) to go on from, so it cannot be "
                         f"continued; its model.npz and history.csv stay as they are (train "
                         f"again under another --name)")
    # else: cut before its first epoch ended: the run starts again from its first epoch
    done = int(state["epochs_done"])
    epochs = args.epochs if "epochs" in given else settings["epochs"]
    if done >= epochs:
        raise ValueError(f"--epochs {epochs}: the run in {run_dir!r} has trained {done} epochs "
                         f"already; give more to train on" if "epochs" in given else
                         f"--resume {run_dir!r}: the run has trained its {done} epochs; give "
                         f"more --epochs to train on")
    if settings["patience"] and _RunEarlyStopping(settings["patience"]).replay(
            state["history"]["val_loss"]):
        raise ValueError(f"--resume {run_dir!r}: early stopping ended the run after epoch "
                         f"{done} (--patience {settings['patience']}); there is nothing to "
                         f"continue")
    run["settings"] = dict(settings, epochs=epochs)
    resumed = argparse.Namespace(**run["settings"], **{
        name: getattr(args, name) for name in (*OUTPUT_OPTIONS, "command_parser", "argv")})
    return resumed, run, done


def _history_epochs(run_dir):
    """How many epochs the run's history.csv records (0 without one)."""
    try:
        with open(os.path.join(run_dir, "history.csv"), encoding="utf-8") as f:
            return max(sum(1 for line in f if line.strip()) - 1, 0)
    except FileNotFoundError:
        return 0


class _RunEarlyStopping:
    """``nncore train --patience``: an :class:`nncore.EarlyStopping` on the validation loss
    (whose attributes it shows) that ``--resume`` carries on exactly. Each better epoch's
    weights are written to ``model_path`` (the run's model.npz: the best weights so far),
    and a resumed run counts its earlier epochs again from its history and takes the best
    weights from that file (or from the checkpoint, when its last epoch is the best)."""

    def __init__(self, patience, model_path=None):
        from .train import EarlyStopping

        self.stopping = EarlyStopping(patience=patience)
        self.model_path = model_path

    def __getattr__(self, name):  # monitor, best_epoch, ...
        return getattr(self.stopping, name)

    def replay(self, values):
        """Count the epochs a run has done, by their monitored ``values``, as they were
        counted while they ran; True if they stopped the run."""
        stopping = self.stopping
        stopping.best, stopping.best_epoch, stopping.wait = math.inf, None, 0
        for epoch, value in enumerate(values, 1):
            stopping.judge(epoch, value)
        return stopping.wait >= stopping.patience

    def on_train_begin(self, network, history):
        from .network import load

        self.stopping.on_train_begin(network, history)
        self.replay(history[self.stopping.monitor])
        best = self.stopping.best_epoch
        if best is not None:  # a resumed run
            self.stopping.best_params = (network.params.copy() if best == len(history)
                                         else load(self.model_path).params)

    def on_epoch_end(self, network, epoch, logs):
        stop = self.stopping.on_epoch_end(network, epoch, logs)
        if self.stopping.best_epoch == epoch:
            network.save(self.model_path)
        return stop

    def on_train_end(self, network, history):
        self.stopping.on_train_end(network, history)

    def stop_note(self):
        return self.stopping.stop_note()


def _train(args):
    held = []  # the run folder's lock, while this command trains in it
    try:
        return _train_run(args, held)
    finally:
        for folder in filter(None, held):
            os.close(folder)


def _hold(run_dir):
    """A lock on the run folder (flock on the folder itself; the OS drops it when the
    process ends, however it ends): a second nncore train in the same run, a --resume
    started twice say, is refused while this one trains. Returns the descriptor to close,
    or None where there are no such locks (Windows: not guarded)."""
    try:
        import fcntl
    except ImportError:
        return None
    folder = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(folder)
        raise ValueError(f"{run_dir!r} is in use: another nncore train is training this run "
                         f"now; wait for it to end") from None
    return folder


def _train_run(args, held):
    """``nncore train``: ``held`` receives the run folder's lock (_hold), which the caller
    releases."""
    import shlex

    from . import __version__, datasets, losses, modelfile
    from .network import build, describe, refuse_continuous
    from .train import TrainingDiverged

    done = 0
    if args.resume is not None:
        args, run, done = _resumed(args)  # refused before the data are read
    else:
        _run_folder(args.out, args.name)  # before the data are read: a bad --out fails fast
    settings = _architecture(args)
    X, y, X_val, y_val, original = _load_with_labels(datasets, args.data, args.task,
                                                     _csv_options(args))
    loss = losses.for_task(args.task)
    regression = loss.task == "regression"
    if not regression:  # as fit would, but naming the file, and before the run folder
        for labels, name in zip((y, y_val), _label_names(args)):
            refuse_continuous(labels, name)
    if regression:
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        outputs = f"{n_outputs} target{'s' if n_outputs > 1 else ''} (regression)"
    elif original:
        import numpy as np

        # one output per distinct label (fit maps them to classes by their sorted values)
        classes = np.unique(np.concatenate([np.asarray(y), np.asarray(y_val)])).tolist()
        if len(classes) < 2:
            raise ValueError(f"the labels of {args.data} have {len(classes)} class "
                             f"({', '.join(map(repr, classes))}); a classifier needs at least "
                             f"2 classes")
        n_outputs = len(classes)
        outputs = f"{n_outputs} classes"
    else:
        n_outputs = int(max(y.max(), y_val.max())) + 1
        outputs = f"{n_outputs} classes"
    settings["loss"] = loss.name  # build and describe take it beside the architecture's own
    net = build(X.shape[1], n_outputs, args.seed, args.arch, dtype=args.dtype, **settings)
    # a .csv header names the features: the model keeps the names (nncore predict picks a
    # file's columns by them) and the figures drawn over the features name their axes
    feature_names = (datasets.csv_feature_names(args.data, delimiter=args.delimiter,
                                                target=args.target)
                     if datasets.file_kind(args.data) == ".csv" else None)
    if feature_names and all(feature_names) and len(set(feature_names)) == len(feature_names):
        net.feature_names = feature_names
    described = describe(args.arch, **settings)
    optimizer = _optimizer(args)

    label = _dataset_label(args.data)
    if args.resume is not None:
        run_dir, created = args.resume, []
        held.append(_hold(run_dir))
    else:
        run = {"format": RUN_FORMAT, "nncore_version": __version__,
               "command": "nncore " + shlex.join(args.argv), "settings": _run_settings(args),
               "data_sha256": _data_digest(args.data)}
        run_dir, created = _make_run_folder(
            args.out, args.name, f"{label}-{args.arch}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
        held.append(_hold(run_dir))
    model_path = os.path.join(run_dir, "model.npz")
    checkpoint_path = os.path.join(run_dir, modelfile.CHECKPOINT_FILE)
    callbacks = [_RunEarlyStopping(args.patience, model_path)] if args.patience else []

    print(("" if args.resume is None else
           f"resuming {run_dir} after epoch {done} of {args.epochs}: ")
          + f"training {described} ({net.n_params:,} parameters, {net.dtype.name}) on {label}: "
          f"{len(X):,} train / {len(X_val):,} validation samples, {X.shape[1]} "
          f"feature{'s' if X.shape[1] != 1 else ''}, "
          f"{outputs}; {optimizer!r}", flush=True)
    started = time.perf_counter()
    try:
        _write_run_file(run_dir, run)
        # the checkpoint of every epoch (one small atomic write) is what --resume goes on from
        history = net.fit(X, y, epochs=args.epochs, batch_size=args.batch_size,
                          optimizer=optimizer, validation_data=(X_val, y_val), seed=args.seed,
                          verbose=args.verbose, callbacks=callbacks,
                          standardize=args.standardize, report_interrupt=False,
                          checkpoint=run_dir, checkpoint_every=1)
    except TrainingDiverged as error:
        # keep what there is: the weights of the last finite epoch and the epochs completed
        net.save(model_path)
        net.history.to_csv(os.path.join(run_dir, "history.csv"))
        print(f"nncore train: error: {error}", file=sys.stderr)
        print(f"nncore train: those weights and the history of the "
              f"{len(net.history)} completed epoch(s) are in {model_path} and "
              f"{os.path.join(run_dir, 'history.csv')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # fit kept the weights and the history so far (and early stopping its best weights)
        net.save(model_path)
        net.history.to_csv(os.path.join(run_dir, "history.csv"))
        best = getattr(callbacks[0], "best_epoch", None) if callbacks else None  # None: no epoch
        weights = (f"the weights of epoch {best}, the best {callbacks[0].monitor}" if best
                   else "the weights as they were at the interrupt, which may be partway "
                        "through an epoch")
        resume = ""
        if os.path.isfile(checkpoint_path):  # which may be an epoch behind the history
            saved = modelfile.load_checkpoint(checkpoint_path)[2]["epochs_done"]
            resume = (f"; continue the run with: nncore train --resume "
                      f"{shlex.quote(run_dir)} (from its checkpoint after epoch {saved})")
        print(f"nncore train: interrupted after {len(net.history)} complete epoch(s); the "
              f"model ({weights}) and the history of the complete epochs are in "
              f"{model_path} and {os.path.join(run_dir, 'history.csv')}{resume}",
              file=sys.stderr)
        return 130
    except BaseException:
        if args.resume is None and not os.path.exists(checkpoint_path):
            # refused before any epoch (labels, say): nothing written
            if os.path.exists(os.path.join(run_dir, RUN_FILE)):
                os.unlink(os.path.join(run_dir, RUN_FILE))
            _remove_if_empty(created)
        raise
    elapsed = time.perf_counter() - started

    net.save(model_path)
    history.to_csv(os.path.join(run_dir, "history.csv"))
    # early stopping gives the network its best epoch's weights back, stopped early or not
    kept = callbacks[0].best_epoch if callbacks else None
    figures = []
    if args.plots and len(history):
        from . import plots

        figures.append(plots.learning_curves(
            history, os.path.join(run_dir, "learning_curves.png"),
            title=f"{described} on {label}", kept_epoch=kept,
            **({"score": "r2", "loss_label": "mean squared error"} if regression else {})))
        if regression:
            target_name = (datasets.csv_target_name(args.data, delimiter=args.delimiter,
                                                    target=args.target)
                           if feature_names is not None else None)
            figures += _regression_figures(plots, net, X, y, X_val, y_val, run_dir,
                                           f"{described} on {label}", feature_names,
                                           [target_name] if target_name else None)
        elif X.shape[1] == 2:
            figures.append(plots.decision_boundary(
                net, X_val, y_val, os.path.join(run_dir, "decision_boundary.png"),
                title=f"{described} on {label} (validation points)",
                feature_names=feature_names))

    train_scores = net.evaluate(X, y)
    val_scores = net.evaluate(X_val, y_val)
    steps = len(history.train_seconds) * math.ceil(len(X) / args.batch_size)
    train_seconds = sum(history.train_seconds) or float("nan")
    columns = ("loss", *loss.score_names)
    rows = [
        ("", *(_SCORE_HEADERS.get(column, column) for column in columns)),
        ("train", *(f"{train_scores[column]:.4f}" for column in columns)),
        ("validation", *(f"{val_scores[column]:.4f}" for column in columns)),
    ]
    print()
    for row in rows:
        print(f"  {row[0]:<12}" + "".join(f"{cell:>10}" for cell in row[1:]))
    print(f"  parameters  {net.n_params:,}")
    notes = [f"resumed after epoch {done}"] if done else []
    notes += ["early stop"] if history.stopped_early else []
    if kept and (history.stopped_early or kept != len(history)):
        notes.append(f"kept the weights of epoch {kept}, the best {callbacks[0].monitor}")
    print(f"  epochs      {len(history)}" + (f" ({'; '.join(notes)})" if notes else ""))
    # fit's own time (validation, standardising, the loop) and, of it, the training steps'
    # (without the validation scores); the same precision for both, so that the part never
    # reads larger than the whole; after --resume, those of the epochs it trained
    print(f"  time        {elapsed:.2f} s{' since the resume' if done else ''}, of which "
          f"{train_seconds:.2f} s in {steps:,} "
          f"training steps ({steps / train_seconds:,.0f} steps/s)")
    print(f"  saved       {model_path}, {os.path.join(run_dir, 'history.csv')}"
          + "".join(f", {figure}" for figure in figures))
    return 0


def _predict(args):
    """``nncore predict``: everything is read and computed before the output is opened, so
    a bad input leaves no file behind."""
    import csv

    from . import datasets
    from .network import load

    if args.out is not None and os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a folder; give a file name")
    if not os.path.exists(args.model):
        raise FileNotFoundError(f"{args.model}: no such model file")
    net = load(args.model)
    if args.proba and net.task != "classification":
        raise ValueError(f"--proba needs a classification model; {args.model} is a "
                         f"{net.task} model")
    X = datasets.read_features(args.data, net.n_in, task=net.task,
                               feature_names=net.feature_names, **_csv_options(args))
    if net.feature_names is None and datasets.file_kind(args.data) == ".csv" and \
            datasets.csv_feature_names(args.data, delimiter=args.delimiter) is not None:
        # as scikit-learn warns "X has feature names, but ... was fitted without"
        print(f"nncore predict: note: {args.model} has no feature names (it was not trained "
              f"on a .csv with a header), so the columns of {args.data} are read by "
              f"position, whatever its header says", file=sys.stderr)
    if args.proba:
        header = [f"proba_{label}" for label in net.classes.tolist()]
        rows = net.predict_proba(X)
    elif net.task == "classification":
        header, rows = ["class"], net.predict(X).reshape(-1, 1)
    else:
        rows = net.predict(X).reshape(len(X), -1)
        header = (["prediction"] if rows.shape[1] == 1
                  else [f"prediction_{k}" for k in range(rows.shape[1])])

    def write(handle):
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([str(value) for value in row] for row in rows)

    if args.out is None:
        write(sys.stdout)
        sys.stdout.flush()
        return 0
    try:
        with open(args.out, "w", newline="", encoding="utf-8") as handle:
            write(handle)
    except OSError as error:
        raise _cannot_write(args.out, error) from None
    what = "class probabilities" if args.proba else (
        "classes" if net.task == "classification" else "predictions")
    print(f"{len(rows):,} rows of {what} ({', '.join(header[:3])}"
          f"{', ...' if len(header) > 3 else ''}) written to {args.out}")
    return 0


def _cannot_write(path, error):
    """The one-line error of an output file that could not be written (an OSError)."""
    return ValueError(f"cannot write {path!r}: {error.strerror or error}")


def _regression_figures(plots, net, X, y, X_val, y_val, run_dir, title, feature_names=None,
                        target_names=None):
    """predicted_vs_true.png and residuals.png on the validation set and, for 1-D input
    and one output, fitted_curve.png; their axes named by ``feature_names`` and
    ``target_names`` (a CSV header's). Returns their paths."""
    predicted = net.predict(X_val)
    figures = [
        plots.predicted_vs_true(y_val, predicted, os.path.join(run_dir, "predicted_vs_true.png"),
                                title=f"{title}: predicted vs true (validation)",
                                target_names=target_names),
        plots.residuals(y_val, predicted, os.path.join(run_dir, "residuals.png"),
                        title=f"{title}: residuals (validation)", target_names=target_names)]
    if X.shape[1] == 1 and net.n_outputs == 1:
        figures.append(plots.fitted_curve(net, X, y, os.path.join(run_dir, "fitted_curve.png"),
                                          title=f"{title}: the fitted curve", X_val=X_val,
                                          y_val=y_val, feature_names=feature_names,
                                          target_names=target_names))
    return figures


def _representative(results):
    """The result of a group to show in the overview: its first Taylor test with a fitted
    first-order window (the most telling picture), else its first Taylor test."""
    taylor = [r for r in results if getattr(r, "kind", None) in ("gradient", "jacobian")]
    curved = [r for r in taylor if len(r.window_first)]
    return (curved or taylor or [None])[0]


def _counted(n, noun):
    """``n`` and the ``noun``, plural unless ``n`` is 1: "1 figure", "3 figures"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _gradcheck(args):
    from . import check

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} exists and is not a folder")
    checks = check.ready_made_checks(dtype=args.dtype, quick=args.quick, seed=args.seed,
                                     backend=args.backend)
    if args.only is not None:
        wanted = args.only.lower()
        checks = [c for c in checks if wanted in c.name.lower() or wanted in c.group.lower()]
        if not checks:
            raise ValueError(f"--only {args.only!r} matches no check")
    mode = ", quick" if args.quick else ""
    print(f"nncore gradcheck: {_counted(len(checks), 'check')} ({args.dtype}, {args.backend} "
          f"backend{mode}); orders must be 1 +- {check.ORDER_TOLERANCE} and >= "
          f"{2 - check.ORDER_TOLERANCE}", flush=True)
    started = time.perf_counter()
    results = []
    for number, item in enumerate(checks, 1):
        result = item.run()
        results.append(result)
        if args.brief:
            print(f"  {result.summary()}", flush=True)
        else:
            print(f"\n[{number}/{len(checks)}] {result}", flush=True)
    figures = []
    if args.plots:
        os.makedirs(args.out, exist_ok=True)
        groups = {}
        for item, result in zip(checks, results):
            groups.setdefault(item.group, []).append(result)
        shown = [r for r in map(_representative, groups.values()) if r is not None]
        overview = check.plot_results(
            shown, os.path.join(args.out, "overview.png"),
            title=f"nncore gradcheck ({args.dtype}): one Taylor test of each part "
                  f"(filled markers: fitted window; dotted: slopes 1 and 2)")
        figures += [overview] if overview else []
        for item, result in zip(checks, results):
            if isinstance(result, check.LeastSquaresResult):
                figures.append(result.plot(os.path.join(args.out, "least_squares.png")))
            elif isinstance(result, check.AdamLeastSquaresResult):
                figures.append(result.plot(os.path.join(args.out, "least_squares_adam.png")))
        if not args.quick:
            for group, members in groups.items():
                path = check.plot_results(members, os.path.join(args.out, f"{group}.png"),
                                          title=f"{group} ({args.dtype})")
                figures += [path] if path else []

    elapsed = time.perf_counter() - started
    counts = {verdict: sum(r.verdict == verdict for r in results)
              for verdict in ("PASS", "FAIL", "INCONCLUSIVE", "ERROR")}
    not_passed = [r for r in results if not r.passed]
    print()
    if not_passed:
        print("not passed:")
        for result in not_passed:
            print(f"  {result.summary()}")
    print(f"gradcheck: {_counted(len(results), 'check')}, {counts['PASS']} passed, "
          f"{counts['FAIL']} failed, {counts['INCONCLUSIVE']} inconclusive, "
          f"{_counted(counts['ERROR'], 'error')} ({args.dtype}, {args.backend}{mode}) in "
          f"{elapsed:.1f} s"
          + (f"; {_counted(len(figures), 'figure')} in {args.out}{os.sep}" if figures else ""))
    failed = counts["FAIL"] + counts["ERROR"]
    return 1 if failed or (args.strict and not_passed) else 0


def _export(args):
    """``nncore export``: the model is read and converted before the file is written."""
    from .network import load
    from .onnx_export import export_onnx

    if not os.path.exists(args.model):
        raise FileNotFoundError(f"{args.model}: no such model file")
    if os.path.isdir(args.out):
        raise ValueError(f"{args.out!r} is a folder; give a file name (MODEL.onnx)")
    net = load(args.model)
    try:
        export_onnx(net, args.out)
    except ImportError as error:  # without the onnx extra: the message names it
        raise ValueError(str(error)) from None
    except OSError as error:
        raise _cannot_write(args.out, error) from None
    print(f"wrote {args.out} ({net.task}, {len(net.layers)} layers, input X with {net.n_in} "
          f"features, output {'probabilities' if net.task == 'classification' else 'predictions'})")
    return 0


def _search(args):
    from . import datasets, search

    spec = search.load_grid(args.grid)
    with warnings.catch_warnings():  # its damaged lines are reported when the search reads it
        warnings.simplefilter("ignore")
        search.read_results(args.results, "--results")  # never append to a user's other file
    epochs = args.epochs or spec["epochs"] or 20
    seed = args.seed if args.seed is not None else (spec["seed"] or 0)
    metric = args.metric or spec["metric"] or "val_accuracy"
    backend = args.backend
    if args.scheduler is not None:
        if backend not in (None, "dask"):
            raise ValueError(f"--scheduler runs on Dask; it cannot go with --backend {backend}")
        backend = "dask"
    elif backend == "dask":
        raise ValueError("--backend dask needs --scheduler ADDRESS (a running Dask scheduler)")
    with datasets.classification_only("nncore search"):
        data = datasets.load(args.data, **_csv_options(args))
    n_trials = math.prod(len(values) for values in spec["grid"].values())
    described = " x ".join(f"{key} ({len(values)})" for key, values in spec["grid"].items())

    def header():  # once grid_search has accepted the grid: a refused one prints no header
        print(f"grid search: {n_trials} trial(s) over {described}, {epochs} epochs each, on "
              f"{_dataset_label(args.data)} ({len(data[0]):,} train / {len(data[2]):,} "
              f"validation samples); results in {args.results}", flush=True)

    client = None
    if args.scheduler is not None:
        try:
            from dask.distributed import Client
        except ImportError:
            raise ValueError("--scheduler needs Dask: pip install 'nncore[distributed]'") \
                from None
        try:
            client = Client(args.scheduler, timeout="10s")
        except OSError as error:
            raise ValueError(f"cannot reach the Dask scheduler at {args.scheduler}: "
                             f"{error}") from None
    started = time.perf_counter()
    try:
        results = search.grid_search("auto", spec["grid"], data, epochs=epochs,
                                     fixed=spec["fixed"], seed=seed, metric=metric,
                                     n_jobs=-1 if client is not None else args.n_jobs,
                                     backend=backend, results=args.results,
                                     verbose=args.verbose, on_start=header)
    except KeyboardInterrupt:
        print(f"nncore search: interrupted; the finished trials are in {args.results}: run "
              "the same command again to resume", file=sys.stderr)
        return 130
    finally:
        if client is not None:
            client.close()
    elapsed = time.perf_counter() - started
    print()
    print(results.table(top=args.top))
    ran = len(results) - results.n_resumed
    print(f"\n{len(results)} trials ({ran} run in {elapsed:.1f} s, {results.n_resumed} "
          f"resumed from {args.results}), ranked by {metric}")
    best = results.best
    if best is None:
        print("every trial diverged: try smaller learning rates", file=sys.stderr)
        return 1
    settings = ", ".join(f"{key}={value}" for key, value in best["params"].items())
    print(f"best: {settings}: {metric} {results.score(best):.4f}")
    return 0


def _experiments(args):
    import shlex

    from . import experiments

    command = "nncore " + shlex.join(args.argv)
    experiments.run_study(args.data or ["all"], out=args.out, quick=args.quick,
                          seed=args.seed, n_jobs=args.n_jobs, command=command,
                          verbose=0 if args.quiet else 1)
    return 0


_COMMANDS = {"train": _train, "predict": _predict, "export": _export, "gradcheck": _gradcheck, "search": _search,
             "experiments": _experiments}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before a command runs (while the parser imports its registries): one line,
        # as within a command
        command = f"nncore {argv[0]}" if argv and argv[0] in _COMMANDS else "nncore"
        print(f"{command}: interrupted", file=sys.stderr)
        return 130


def _main(argv):
    """:func:`main` without its outer Ctrl-C handler: parse ``argv``, run the command."""
    parser = _build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # named after the command they were given to, as its other usage errors are
        prog = f"{parser.prog} {args.command}" if args.command else parser.prog
        parser.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extras)}\n")
    args.argv = argv
    if args.command is None:
        parser.print_help()
        return 2

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        # a warning is advice to the user: one line, not a source location and a code line
        print(f"nncore {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warning
            return _COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, PermissionError) as error:
        print(f"nncore {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nncore {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of the output went away (``nncore predict ... | head``): stop quietly,
        # as Unix tools do, with stdout pointed at devnull so Python's exit flush is silent
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
