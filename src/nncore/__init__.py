"""nncore: a small neural-network core whose hot loops are Cython kernels checked against NumPy.

    import nncore as nc
    X, y, Xv, yv = nc.datasets.load("peaks")
    net = nc.resnet(n_in=2, width=64, depth=4, n_classes=5)
    history = net.fit(X, y, epochs=30, validation_data=(Xv, yv))

Names are imported on first use, so ``import nncore`` stays cheap and never pulls in
matplotlib.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("ops", "reference", "activations", "losses", "status", "datasets", "layers",
               "network", "optim", "train", "modelfile", "plots", "check", "parallel",
               "results", "search", "provenance", "report",
               "experiments", "cli", "sklearn", "onnx_export")
_NAMES = {
    "Network": "network", "mlp": "network", "resnet": "network",
    "softmax_regression": "network",
    "build": "network", "load": "network", "save": "network",
    "Dense": "layers", "Residual": "layers",
    "SGD": "optim", "Adam": "optim", "AdamW": "optim",
    "fit": "train", "History": "train", "Callback": "train", "EarlyStopping": "train",
    "TrainingDiverged": "train",
    "ModelFileError": "modelfile",
    "export_onnx": "onnx_export",
}

# "sklearn" and "onnx_export" need optional packages (scikit-learn, onnx), so
# `from nncore import *` leaves them out (export_onnx imports onnx only when called)
__all__ = ["__version__", *(m for m in _SUBMODULES if m not in ("sklearn", "onnx_export")),
           *_NAMES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'nncore' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
