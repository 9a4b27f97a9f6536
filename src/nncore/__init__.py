"""nncore: a small neural-network core whose hot loops are Cython kernels checked against NumPy.

Submodules are imported on first use, so ``import nncore`` stays cheap and never pulls in
matplotlib.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("ops", "reference", "datasets")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'nncore' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
